//! What a run decides about findings beyond their severity: [`suppressions`] (accepted
//! risks from `suppressions.toml`); baselines and gates belong here too, next to it.
//!
//! The outcome of a suite is still decided in `crate::findings::verdict`, which applies the
//! run's [`suppressions::Suppressions`] to a suite's findings before judging them.

pub mod accept;
pub mod suppressions;

pub use suppressions::{EntryReport, EntryState, Suppressions, SuppressionsReport};
