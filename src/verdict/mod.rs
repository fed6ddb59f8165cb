//! What a run decides about findings beyond their severity: [`suppressions`] (accepted
//! risks from `suppressions.toml`) and [`baseline`] (new, unchanged and absent findings
//! against an earlier run, for `gate = "new"`).
//!
//! The outcome of a suite is still decided in `crate::findings::verdict`, which applies the
//! run's [`suppressions::Suppressions`] to a suite's findings before judging them.

pub mod accept;
pub mod baseline;
pub mod suppressions;

pub use baseline::{Baseline, BaselineError, BaselineRef, BaselineStore, StoreRef};
pub use suppressions::{EntryReport, EntryState, Suppressions, SuppressionsReport};
