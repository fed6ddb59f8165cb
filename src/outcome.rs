//! What happened to each suite and to the run as a whole: the data the reports are made of.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cause::{self, Cause};
use crate::exit;
use crate::findings::{FindingsSummary, SuiteResults, TestCounts};
use crate::stop::Signal;

/// How a suite ended. Every suite ends in exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    /// Findings at or above the threshold, or an exit code outside `ok_exit_codes`.
    Failed,
    TimedOut,
    /// The tool could not run, or its results are missing or unparsable. Never clean.
    Error,
    /// Not started, because `--fail-fast` stopped the run first.
    Skipped,
    /// Not finished, because the run was interrupted (SIGINT/SIGTERM).
    Cancelled,
}

impl Outcome {
    /// The word shown in progress lines and summaries.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Passed => "PASS",
            Outcome::Failed => "FAIL",
            Outcome::TimedOut => "TIMEOUT",
            Outcome::Error => "ERROR",
            Outcome::Skipped => "SKIP",
            Outcome::Cancelled => "CANCEL",
        }
    }

    /// Whether this outcome makes `--fail-fast` stop the run.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::TimedOut | Outcome::Error)
    }
}

/// The captured console output of a suite: capped head and tail of each stream, as text.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CapturedOutput {
    pub stdout: String,
    pub stderr: String,
    /// True when the middle of either stream was dropped to respect the cap.
    pub truncated: bool,
}

/// Everything known about one suite after it ended.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub name: String,
    pub image: String,
    pub image_digest: Option<String>,
    pub outcome: Outcome,
    /// Why, for anything but a pass. run.json has it twice: `reason`, the sentence, and
    /// `cause`, the object.
    #[serde(flatten, serialize_with = "cause::serialize_reason_and_cause")]
    pub cause: Option<Cause>,
    pub exit_code: Option<i64>,
    pub container_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "serialize_secs")]
    pub duration: Duration,
    pub attempts: u32,
    /// An earlier attempt ended in an infrastructure error and a later one passed.
    /// Written to run.json only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub flaky: bool,
    /// The attempts that were retried, in order (written only when there were any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<RetriedAttempt>,
    /// Full log on disk (stdout and stderr interleaved).
    pub log_path: Option<PathBuf>,
    /// Where the result files were extracted.
    pub results_dir: Option<PathBuf>,
    /// Result files, relative to `results_dir`.
    pub result_files: Vec<PathBuf>,
    /// What result extraction refused (paths escaping the folder, links, devices).
    pub result_warnings: Vec<String>,
    /// A SARIF suite's findings: counts per severity, tools, rules. Absent when no SARIF
    /// was read (other formats, or the suite did not get that far).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<FindingsSummary>,
    /// A JUnit suite's test counts. Absent when no JUnit was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestCounts>,
    /// Everything read from the result files, for the JUnit and SARIF writers: too bulky
    /// for run.json, and shared rather than copied when the report is cloned for events.
    #[serde(skip)]
    pub results: Option<Arc<SuiteResults>>,
    #[serde(skip)]
    pub output: CapturedOutput,
}

impl SuiteReport {
    /// A suite that never ran (skipped or cancelled before it started, or failed early).
    pub fn not_run(name: &str, image: &str, outcome: Outcome, cause: Option<Cause>) -> Self {
        SuiteReport {
            name: name.to_string(),
            image: image.to_string(),
            image_digest: None,
            outcome,
            cause,
            exit_code: None,
            container_id: None,
            started_at: None,
            finished_at: None,
            duration: Duration::ZERO,
            attempts: 0,
            flaky: false,
            retried: Vec::new(),
            log_path: None,
            results_dir: None,
            result_files: Vec::new(),
            result_warnings: Vec::new(),
            findings: None,
            tests: None,
            results: None,
            output: CapturedOutput::default(),
        }
    }
}

/// An attempt that ended in an infrastructure error and was tried again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetriedAttempt {
    pub attempt: u32,
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "serialize_secs")]
    pub duration: Duration,
    /// The infrastructure error that ended it.
    #[serde(flatten, serialize_with = "cause::serialize_retried_cause")]
    pub cause: Cause,
}

/// A selected suite whose file could not be read: reported, never run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvalidSuite {
    /// The `name` key if it could be read, else the file stem.
    pub name: String,
    pub file: PathBuf,
    /// Every error found in the file, each naming file, line and key.
    pub errors: Vec<String>,
}

/// The whole run, in the order the suites were planned.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub phalanx_version: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `SIGINT` or `SIGTERM` when the run was interrupted.
    pub interrupted: Option<Signal>,
    pub suites: Vec<SuiteReport>,
    /// Selected suite files that could not be read; they make the run exit 2.
    pub invalid_suites: Vec<InvalidSuite>,
    /// `hash:M/N` when the run was one shard of the selection (`--partition`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The suppressions the run applied; reports derive what expired or went stale.
    #[serde(skip)]
    pub suppressions: Arc<crate::verdict::Suppressions>,
    /// How the suites saw the target (bind or copy, and why); absent when no engine was
    /// reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::target::TargetChoice>,
    /// The baseline the findings were compared with (`--baseline`); the suites' findings
    /// carry the counts and absent findings, reports add them up.
    #[serde(skip)]
    pub baseline: Option<Arc<crate::verdict::Baseline>>,
}

impl RunReport {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.suites.iter().filter(|s| s.outcome == outcome).count()
    }

    /// Exit code per DESIGN.md: 0 all passed, 1 some failed or timed out, 2 a selected suite
    /// file is invalid, 3 some error; the highest applies. An interrupted run exits 130
    /// (SIGINT) or 143 (SIGTERM).
    pub fn exit_code(&self) -> u8 {
        exit_code(
            &Counts::of(self),
            !self.invalid_suites.is_empty(),
            self.interrupted,
        )
    }
}

/// [`RunReport::exit_code`] from what decides it.
pub fn exit_code(counts: &Counts, any_invalid: bool, interrupted: Option<Signal>) -> u8 {
    if let Some(signal) = interrupted {
        return signal.exit_code();
    }
    // A suite cancelled through the server did not scan: the run cannot be trusted.
    if counts.error + counts.cancelled > 0 {
        exit::INFRA
    } else if any_invalid {
        exit::USAGE
    } else if counts.failed + counts.timed_out > 0 {
        exit::FAILED
    } else {
        exit::PASSED
    }
}

/// Suites per outcome. Keys are spelled like the `outcome` values in `suites`, so
/// `.counts[.suites[0].outcome]` works in jq.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Counts {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub timed_out: usize,
    pub error: usize,
    pub skipped: usize,
    pub cancelled: usize,
}

impl Counts {
    pub fn of(run: &RunReport) -> Self {
        Self::of_outcomes(run.suites.iter().map(|s| s.outcome))
    }

    pub fn of_outcomes(outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        let mut c = Counts::default();
        for outcome in outcomes {
            c.total += 1;
            *match outcome {
                Outcome::Passed => &mut c.passed,
                Outcome::Failed => &mut c.failed,
                Outcome::TimedOut => &mut c.timed_out,
                Outcome::Error => &mut c.error,
                Outcome::Skipped => &mut c.skipped,
                Outcome::Cancelled => &mut c.cancelled,
            } += 1;
        }
        c
    }
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}
