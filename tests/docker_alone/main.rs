//! Docker tests that must be alone on the engine, in a test binary of their own: cargo runs
//! test binaries one after another, so nothing in `tests/docker/` runs while these do.
//!
//! `faults_orphans` kills runs with SIGKILL and checks that the *next* run's orphan sweep
//! removes and reports what they left; every `phalanx run` sweeps orphans at its start, so
//! any concurrent run elsewhere in the process could take the orphan first. Put a test here
//! only when it observes or changes engine-wide state that other tests' runs also touch.

#[path = "../runs/mod.rs"]
mod runs;
#[path = "../support/mod.rs"]
mod support;

mod faults_orphans;
