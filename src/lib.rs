//! Phalanx: a parallel security test orchestrator.
//!
//! Data moves through one module per stage, left to right:
//! `config` → `plan` → `schedule` → `engine` → `collect` → `findings` → `report`,
//! with `event` carrying what happens to `progress` and the report writers.

pub mod collect;
pub mod config;
pub mod engine;
pub mod event;
pub mod findings;
pub mod history;
pub mod images;
pub mod outcome;
pub mod plan;
pub mod progress;
pub mod report;
pub mod retries;
pub mod run;
pub mod runner;
pub mod schedule;
pub mod secrets;
pub mod store;
