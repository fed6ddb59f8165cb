//! Phalanx: a parallel security test orchestrator.
//!
//! Data moves through one module per stage, left to right:
//! `config` → `plan` → `schedule` → `engine` → `collect` → `findings` → `report`,
//! with `event` carrying what happens, numbered and in order, to its subscribers:
//! `progress`, the `event_log` (`--events`) and the `recorder` that builds the run's report
//! for the report writers. `launch` takes one run from its plan to its reports and its
//! record, for `phalanx run` and `phalanx serve` alike; `scans` is the server's queue of
//! such runs. What ended a suite badly is a typed `cause::Cause`; why a run stops early is
//! a `stop::StopReason`. After the reports, `alerts` sends the run's webhooks, one digest
//! per channel, from the run and the `store`.
//!
//! `phalanx serve` is `server`, a thin HTTP layer over `scans`, the `store` (reads) and
//! `access` (who may do what).

pub mod access;
pub mod alerts;
pub mod builds;
pub mod cause;
pub mod collect;
pub mod config;
pub mod doctor;
pub mod dry_run;
pub mod engine;
pub mod event;
pub mod event_log;
pub mod exit;
pub mod findings;
pub mod history;
pub mod images;
pub mod launch;
pub mod outcome;
pub mod plan;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod retries;
pub mod run;
pub mod runner;
pub mod scans;
pub mod schedule;
pub mod secrets;
pub mod self_image;
pub mod server;
pub mod services;
pub mod stop;
pub mod store;
pub mod target;
pub mod verdict;
