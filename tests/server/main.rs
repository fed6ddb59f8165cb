//! The tests of `phalanx serve`, in one test binary: each starts the real binary on a free
//! loopback port (`--listen 127.0.0.1:0`, the address read from the line it prints) in a
//! workspace of its own, and talks to it over real HTTP (ureq). Runs it triggers are real
//! runs of the probe image on the Docker engine.
//!
//! `cargo test --test server MODULE::` runs one module. As in the other binaries, modules
//! share one process: environment only through `Command::env`, unique names for
//! everything created on the engine (`support::unique`).

#[path = "../findings_common/mod.rs"]
mod findings_common;
#[path = "../runs/mod.rs"]
mod runs;
#[path = "../support/mod.rs"]
mod support;

/// Starting a server, tokens of each role, requests, SSE streams.
mod harness;

mod access;
mod bad_requests;
mod openapi;
mod reads;
mod runs_api;
mod shutdown;
mod web;
