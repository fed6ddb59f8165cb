//! The integration tests that need the Docker engine, in one test binary: one module per
//! former `tests/*.rs` file, so the crate and its dependencies are linked once, not once
//! per file. `cargo test --test docker MODULE::` runs one module's tests.
//!
//! A new Docker test file goes in this directory and is declared below. All modules share
//! one process: never change process-wide state (`std::env::set_var`, the working
//! directory) — give child processes their environment with `Command::env` — and give
//! everything a test creates on the engine a name or label of its own (`support::unique`).

#[path = "../engine_proxy/mod.rs"]
mod engine_proxy;
#[path = "../findings_common/mod.rs"]
mod findings_common;
#[path = "../junit_schema/mod.rs"]
mod junit_schema;
#[path = "../receiver/mod.rs"]
mod receiver;
#[path = "../runs/mod.rs"]
mod runs;
#[path = "../support/mod.rs"]
mod support;

mod alerts;
mod base_image;
mod baselines;
mod bundled_suites;
mod dast;
mod doctor;
mod dry_run;
mod e2e_scanners;
mod faults_engine;
mod faults_load;
mod faults_suites;
mod findings_docker;
mod hostile_probe;
mod hostile_secrets;
mod perf_partition;
mod perf_prepare;
mod perf_results_dir;
mod phalanx_image;
mod projects;
mod remote_engine;
mod report_history;
mod run_docker;
mod scans;
mod store;
mod support_smoke;
mod suppressions;
mod swarm;
mod swarm_two_node;
