//! From what a suite's container did, and the result files it left, to the suite's outcome.
//!
//! Order of the rules (DESIGN.md, "Outcomes"): an OOM kill is an error; an exit code outside
//! `ok_exit_codes` fails the suite before any result is read; a SARIF or JUnit suite whose
//! results are missing or unreadable is an error, never a pass; then the results decide —
//! unsuppressed findings at or above `fail_on` (only new ones under `gate = "new"`), or
//! failed/errored test cases, fail it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cause::{Cause, WorstFinding};
use crate::config::{ResultFormat, Suite};
use crate::engine::ExitStatus;
use crate::outcome::{Outcome, SuiteReport};
use crate::verdict::{Baseline, Suppressions};

use super::model::{FindingRecord, FindingsSummary, JunitResults, SuiteFindings, SuiteResults};
use super::{junit, sarif};

/// What came back from a container that ran to its end.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub status: ExitStatus,
    /// Where the result path was extracted to (`None` if nothing was extracted).
    pub results_dir: Option<PathBuf>,
    /// Result files extracted from the suite's result path, relative to `results_dir`.
    pub result_files: Vec<PathBuf>,
    /// False when the result path did not exist in the container at all.
    pub result_path_found: bool,
}

/// A suite's outcome, why, and what its results said.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub outcome: Outcome,
    /// Why, for anything but a pass.
    pub cause: Option<Cause>,
    /// What was read from the result files; `None` when they were not read or unreadable.
    pub results: Option<SuiteResults>,
    /// A SARIF suite's counts for `run.json`, computed with the verdict (on the blocking
    /// thread: it walks every finding).
    pub findings: Option<FindingsSummary>,
}

impl Verdict {
    fn without_results(outcome: Outcome, cause: Cause) -> Self {
        Verdict {
            outcome,
            cause: Some(cause),
            results: None,
            findings: None,
        }
    }

    /// Records the verdict in the suite's report: outcome, reason, the counts `run.json`
    /// shows, and the results themselves for the JUnit and SARIF writers.
    pub fn apply(self, report: &mut SuiteReport) {
        report.outcome = self.outcome;
        report.cause = self.cause;
        report.findings = self.findings;
        if let Some(SuiteResults::Junit(j)) = &self.results {
            report.tests = Some(j.counts);
        }
        report.results = self.results.map(Arc::new);
    }
}

/// [`decide`] on a blocking thread: result files can be tens of megabytes, and parsing
/// them must not stall the runtime that drives the other suites.
pub async fn judge(
    suite: &Suite,
    evidence: Evidence,
    suppressions: Arc<Suppressions>,
    baseline: Option<Arc<Baseline>>,
) -> Verdict {
    let owned = suite.clone();
    let decided = tokio::task::spawn_blocking(move || {
        decide_with(&owned, &evidence, &suppressions, baseline.as_deref())
    });
    match decided.await {
        Ok(verdict) => verdict,
        Err(e) => Verdict::without_results(
            Outcome::Error,
            Cause::internal(format!("reading the results failed unexpectedly: {e}")),
        ),
    }
}

/// Decides a suite's outcome and, for anything but a pass, says why. Reads the result
/// files, so it blocks: prefer [`judge`] from async code.
pub fn decide(suite: &Suite, evidence: &Evidence) -> Verdict {
    decide_with(suite, evidence, &Suppressions::default(), None)
}

/// [`decide`], with the run's suppressions applied to a SARIF suite's findings, and each
/// finding compared with the run's baseline, before they are judged.
pub fn decide_with(
    suite: &Suite,
    evidence: &Evidence,
    suppressions: &Suppressions,
    baseline: Option<&Baseline>,
) -> Verdict {
    let results = &suite.results;
    let code = evidence.status.code;
    if evidence.status.oom_killed {
        return Verdict::without_results(
            Outcome::Error,
            Cause::OutOfMemory {
                limit_bytes: suite.policy.memory,
                exit_code: code,
            },
        );
    }
    if !results.ok_exit_codes.contains(&code) {
        return Verdict::without_results(
            Outcome::Failed,
            Cause::ExitCode {
                code,
                expected: results.ok_exit_codes.clone(),
            },
        );
    }
    if results.format == ResultFormat::ExitCode {
        return Verdict {
            outcome: Outcome::Passed,
            cause: None,
            results: None,
            findings: None,
        };
    }
    let files = match files_to_read(suite, evidence) {
        Ok(files) => files,
        Err(cause) => return Verdict::without_results(Outcome::Error, cause),
    };
    // Only SARIF and JUnit get here: exit-code suites returned above.
    let read: Result<Verdict, String> = if results.format == ResultFormat::Sarif {
        sarif::read_files(&suite.name, &files)
            .map(|mut f| {
                suppressions.apply(&mut f);
                let absent = baseline.map(|b| b.compare(&mut f));
                sarif_verdict(suite, f, absent)
            })
            .map_err(|e| e.to_string())
    } else {
        junit::read_files(&files)
            .map(junit_verdict)
            .map_err(|e| e.to_string())
    };
    read.unwrap_or_else(|message| {
        Verdict::without_results(Outcome::Error, Cause::ResultInvalid { message })
    })
}

/// The files to read: the result path itself when it named a file, else every file in
/// it with an extension of the format (`*.sarif`/`*.json`, `*.xml`), sorted so runs and
/// cases come out in the same order every time.
fn files_to_read(suite: &Suite, evidence: &Evidence) -> Result<Vec<PathBuf>, Cause> {
    let results = &suite.results;
    let code = evidence.status.code;
    let dir = match &evidence.results_dir {
        Some(dir) if evidence.result_path_found && !evidence.result_files.is_empty() => dir,
        _ => {
            return Err(Cause::ResultMissing {
                exit_code: code,
                path: results.path.clone(),
            });
        }
    };
    // Docker names a single file's archive entry after the file (see collect::extract).
    let basename = Path::new(&results.path).file_name();
    if let ([only], Some(name)) = (evidence.result_files.as_slice(), basename)
        && only.as_os_str() == name
    {
        return Ok(vec![dir.join(only)]);
    }
    let extensions = extensions(results.format);
    let mut chosen: Vec<PathBuf> = evidence
        .result_files
        .iter()
        .filter(|f| has_extension(f, extensions))
        .map(|f| dir.join(f))
        .collect();
    chosen.sort();
    if chosen.is_empty() {
        let found: Vec<String> = evidence
            .result_files
            .iter()
            .take(5)
            .map(|f| f.display().to_string())
            .collect();
        let wanted: Vec<String> = extensions.iter().map(|e| format!("*.{e}")).collect();
        return Err(Cause::ResultOfFormatMissing {
            exit_code: code,
            path: results.path.clone(),
            wanted,
            found,
        });
    }
    Ok(chosen)
}

fn extensions(format: ResultFormat) -> &'static [&'static str] {
    match format {
        ResultFormat::Sarif => &["sarif", "json"],
        ResultFormat::Junit => &["xml"],
        ResultFormat::ExitCode => &[],
    }
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Failed when an unsuppressed finding is at or above `fail_on` (and new, under
/// `gate = "new"`); the reason names the worst one (the first of the highest severity),
/// which is where a reader should start. `absent` is the baseline's findings of this suite
/// that are gone, `None` without a baseline.
fn sarif_verdict(
    suite: &Suite,
    findings: SuiteFindings,
    absent: Option<Vec<FindingRecord>>,
) -> Verdict {
    let fail_on = suite.results.fail_on;
    let gate = suite.results.gate;
    let worst = findings
        .blocking(fail_on, gate)
        .min_by_key(|f| std::cmp::Reverse(f.severity));
    let cause = worst.map(|worst| Cause::Findings {
        count: findings.blocking(fail_on, gate).count(),
        fail_on,
        gate,
        worst: WorstFinding {
            rule: findings.rule_of(worst).id.clone(),
            severity: worst.severity,
            location: worst.location.as_ref().map(ToString::to_string),
        },
    });
    Verdict {
        outcome: if cause.is_some() {
            Outcome::Failed
        } else {
            Outcome::Passed
        },
        cause,
        findings: Some(findings.summary(fail_on, gate, absent)),
        results: Some(SuiteResults::Sarif(findings)),
    }
}

fn junit_verdict(results: JunitResults) -> Verdict {
    let c = results.counts;
    let bad = c.failures + c.errors;
    let cause = (bad > 0).then(|| {
        let first = results
            .cases
            .iter()
            .find(|t| matches!(t.status, quick_junit::TestCaseStatus::NonSuccess { .. }))
            .map(|t| match &t.classname {
                Some(class) => format!("{}.{}", class.as_str(), t.name.as_str()),
                None => t.name.as_str().to_string(),
            })
            .unwrap_or_default();
        Cause::TestsFailed {
            tests: c.tests,
            failures: c.failures,
            errors: c.errors,
            first,
        }
    });
    Verdict {
        outcome: if bad > 0 {
            Outcome::Failed
        } else {
            Outcome::Passed
        },
        cause,
        results: Some(SuiteResults::Junit(results)),
        findings: None,
    }
}

/// `1073741824` → `1 GiB`, for messages.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
