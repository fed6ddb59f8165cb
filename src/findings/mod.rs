//! Findings: what a suite's results say, normalised.
//!
//! - [`sarif`] reads SARIF 2.1.0 logs into [`SuiteFindings`] (one severity scale, repo-relative
//!   paths, stable [`Fingerprint`]s, suppression state);
//! - [`junit`] reads the JUnit XML a test-style suite writes, to carry its cases over;
//! - [`verdict`] turns a finished container and its result files into the suite's outcome;
//! - [`model`] is the data the report writers use.
//!
//! The severity scale here is what the suite file's `fail_on` and `--fail-on` refer to.

pub mod fingerprint;
pub mod junit;
pub mod model;
pub mod path;
pub mod sarif;
pub mod verdict;

pub use fingerprint::Fingerprint;
pub use model::{
    BaselineCounts, BaselineState, EntryUse, Finding, FindingRecord, FindingsSummary, JunitResults,
    Location, Rule, RuleSummary, SeverityCounts, SuiteFindings, SuiteResults, Suppression,
    TestCounts, Tool,
};

use serde::{Deserialize, Serialize};

/// Severity of a finding, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, most severe first: the order reports list them in.
    pub const DESCENDING: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// A CVSS-like `security-severity` score (GitHub code scanning's scale): 9.0 and up is
    /// critical (CVSS counts 9.0 as critical, where GitHub's docs say "over 9.0"), 7.0 high,
    /// 4.0 medium, anything above zero low, zero info.
    pub fn from_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Info,
        }
    }
}

/// Which findings can fail a suite: every one at or above `fail_on` (`all`, the default),
/// or only those a baseline does not hold (`new`). Without a baseline every finding is new,
/// so `new` then gates like `all`: a missing baseline never lets a finding through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    #[default]
    All,
    New,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::All => "all",
            Gate::New => "new",
        }
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--gate new`.
impl std::str::FromStr for Gate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" => Ok(Gate::All),
            "new" => Ok(Gate::New),
            _ => Err(format!("unknown gate `{s}`: expected `all` or `new`")),
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--fail-on high` and friends.
impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::DESCENDING
            .into_iter()
            .find(|sev| sev.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown severity `{s}`: expected one of critical, high, medium, low, info")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_map_to_the_github_scale() {
        let cases = [
            (10.0, Severity::Critical),
            (9.0, Severity::Critical),
            (8.9, Severity::High),
            (7.0, Severity::High),
            (6.9, Severity::Medium),
            (4.0, Severity::Medium),
            (3.9, Severity::Low),
            (0.1, Severity::Low),
            (0.0, Severity::Info),
            (-1.0, Severity::Info),
        ];
        for (score, sev) in cases {
            assert_eq!(Severity::from_score(score), sev, "{score}");
        }
    }

    #[test]
    fn severities_parse_case_insensitively_and_say_what_is_expected() {
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert_eq!("info".parse::<Severity>(), Ok(Severity::Info));
        let err = "severe".parse::<Severity>().unwrap_err();
        assert!(err.contains("critical, high, medium, low, info"), "{err}");
    }
}
