//! The dashboard of `phalanx serve` in a real browser: Debian's headless chromium, driven
//! over the DevTools protocol ([`cdp`]), against the real server ([`harness`], shared with
//! the `server` tests) running real scans of probe-image suites on the Docker engine.
//!
//! Its own test binary: each test starts a browser and a server, the heaviest processes
//! of the suite, and `cargo test --test browser` runs just this. Skipped, saying so, when
//! chromium is not installed (`.ci/run` installs it).

#[path = "../findings_common/mod.rs"]
mod findings_common;
#[path = "../server/harness.rs"]
mod harness;
#[path = "../runs/mod.rs"]
mod runs;
#[path = "../support/mod.rs"]
mod support;

/// chromium over `--remote-debugging-pipe`.
mod cdp;

mod dashboard;
