//! The integration tests that need no Docker engine (readers, report writers, the scheduler
//! on the in-memory engine, fuzz regressions), in one test binary: one module per former
//! `tests/*.rs` file. `cargo test --lib --test offline` runs everything that works without
//! an engine; `cargo test --test offline MODULE::` runs one module's tests.
//!
//! A new test file that needs no engine goes in this directory and is declared below; one
//! that does goes in `tests/docker/`. All modules share one process: never change
//! process-wide state (`std::env::set_var`, the working directory).

#[path = "../browser/cdp.rs"]
mod cdp;
#[path = "../findings_common/mod.rs"]
mod findings_common;
#[path = "../junit_schema/mod.rs"]
mod junit_schema;
#[path = "../receiver/mod.rs"]
mod receiver;
#[path = "../report_common/mod.rs"]
mod report_common;

mod alerts_cli;
mod bad_input;
mod ci_templates;
mod findings_junit;
mod findings_large;
mod findings_reports;
mod findings_sarif;
mod perf_schedule;
mod report_browser;
mod report_golden;
mod report_history;
mod report_junit_schema;
mod report_large;
mod report_pages;
mod swarm_cli;
