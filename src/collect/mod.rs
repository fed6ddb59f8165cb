//! What a suite leaves behind: its console output ([`OutputCapture`]) and its result files
//! ([`extract_results`]).
//!
//! Both are fed by untrusted containers, so both are bounded: output is spooled to disk up to
//! a cap with only a head and a tail kept in memory, and result archives are size-checked on
//! disk before a single entry is unpacked, refusing anything that could write outside the
//! destination.

mod capture;
pub mod chunked;
mod extract;
pub mod pump;

pub use capture::{CaptureLimits, OutputCapture, log_path};
pub use extract::{CollectError, ExtractLimits, Extracted, extract_results};
