//! The exit codes of `phalanx` (DESIGN.md), in one place: the run's report and the command
//! line both map to these.

/// Every suite passed (or there was nothing to do).
pub const PASSED: u8 = 0;
/// A suite failed or timed out.
pub const FAILED: u8 = 1;
/// A usage or configuration error, or a selected suite file is invalid.
pub const USAGE: u8 = 2;
/// An infrastructure or suite error: a verdict could not be reached.
pub const INFRA: u8 = 3;
/// Interrupted by SIGINT (128 + 2).
pub const SIGINT: u8 = 130;
/// Interrupted by SIGTERM (128 + 15).
pub const SIGTERM: u8 = 143;
