//! What the release manager's reports (`report.html`, `report.md`) are made of: the run
//! itself plus facts from outside it — git, the run store (baseline changes, trend) and
//! the suppressions file (accepted risk). Everything from outside is optional, and the
//! reports say plainly when it is not available rather than leaving a gap.
//!
//! The writers ([`super::html`], [`super::markdown`]) are pure functions of a
//! [`ReportInput`], so they can be tested byte for byte and fed by any source.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};

use crate::findings::SeverityCounts;
use crate::outcome::{Outcome, RunReport, SuiteReport};

/// Everything the HTML and Markdown reports show.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    pub run: &'a RunReport,
    /// What was scanned, as given on the command line (made absolute).
    pub target: String,
    pub git: Option<GitFacts>,
    /// The command that reproduces the run, shell-quoted.
    pub command_line: String,
    /// Where the full merged SARIF is, named when the findings list is cut.
    pub sarif_path: Option<String>,
    /// What changed since the baseline (from the run store).
    pub comparison: Comparison,
    /// Entries of the suppressions file and whether they applied. `None`: no suppressions
    /// file is in use, so only the tools' in-source suppressions are shown.
    pub accepted_risk: Option<Vec<AcceptedRisk>>,
    /// Earlier runs of this target, oldest first (from the run store); the current run is
    /// added at the end when it is not there yet.
    pub trend: Trend,
    /// Where `report.html` will be published (`PHALANX_REPORT_URL`): linked from the
    /// Markdown report.
    pub report_url: Option<String>,
    /// Where the run comes from: the pages say what a stored run cannot show.
    pub provenance: Provenance,
}

impl<'a> ReportInput<'a> {
    /// The input for a run with nothing known from outside it.
    pub fn new(run: &'a RunReport, target: impl Into<String>) -> Self {
        ReportInput {
            run,
            target: target.into(),
            git: None,
            command_line: String::new(),
            sarif_path: None,
            comparison: Comparison::NoStore,
            accepted_risk: None,
            trend: Trend::NoStore,
            report_url: None,
            provenance: Provenance::ThisRun,
        }
    }

    /// The input for the run this process just made: the git facts the run store read
    /// of `target` ([`crate::store::RunFacts::gather`]), this process's command line,
    /// `PHALANX_REPORT_URL`, and the accepted risk of the run's suppressions file. The
    /// run store fills in `comparison` and `trend` ([`Self::with_history`]).
    pub fn for_run(
        run: &'a RunReport,
        target: &Path,
        git: Option<&crate::store::GitInfo>,
        sarif: Option<&Path>,
    ) -> Self {
        ReportInput {
            git: git.map(GitFacts::of),
            accepted_risk: AcceptedRisk::from_suppressions(
                run.suppressions.report(&run.suites).as_ref(),
            ),
            comparison: Changes::from_baseline(run)
                .map_or(Comparison::NoStore, Comparison::Against),
            command_line: shell_command(std::env::args()),
            sarif_path: sarif.map(|p| p.display().to_string()),
            report_url: report_url_from_env(),
            ..ReportInput::new(run, target.display().to_string())
        }
    }

    /// Adds what the store says around the run. A `--baseline` comparison, made during
    /// the run, is kept: the store's previous run is only the fallback.
    pub fn with_history(mut self, history: super::from_store::RunHistory) -> Self {
        if !matches!(self.comparison, Comparison::Against(_)) {
            self.comparison = history.comparison;
        }
        self.trend = history.trend;
        self
    }
}

/// `PHALANX_REPORT_URL`, where `report.html` will be published, when set.
pub fn report_url_from_env() -> Option<String> {
    std::env::var("PHALANX_REPORT_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// Where a report's run comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// The run this process made: everything about it is known.
    ThisRun,
    /// Rebuilt from the run store (`phalanx report`), which keeps less than a run has.
    Stored,
}

impl Provenance {
    /// What the pages cannot show, said under what was scanned.
    pub fn note(self) -> Option<&'static str> {
        match self {
            Provenance::ThisRun => None,
            Provenance::Stored => Some(
                "Rebuilt from the run store, which keeps suites, causes and findings but not \
                 the tools' captured output, logs, JUnit test counts, SARIF snippets, rule \
                 descriptions, retried attempts or the suppressions file's entries.",
            ),
        }
    }
}

/// The commit that was scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitFacts {
    pub commit: String,
    /// `None` for a detached HEAD.
    pub branch: Option<String>,
    /// Uncommitted changes to tracked files; `None` when git could not tell.
    pub dirty: Option<bool>,
}

/// New, fixed and unchanged findings against a baseline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// What the run was compared with: `run 20260430-…`, `tag v1.2`.
    pub baseline_label: String,
    pub new: SeverityCounts,
    pub fixed: SeverityCounts,
    pub unchanged: SeverityCounts,
    /// The new findings, most severe first (the reports cap the list).
    pub new_findings: Vec<ChangedFinding>,
    /// The fixed findings, most severe first.
    pub fixed_findings: Vec<ChangedFinding>,
}

/// One finding in a [`Changes`] list: owned strings, as the store gives them back.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedFinding {
    pub suite: String,
    pub rule: String,
    pub severity: crate::findings::Severity,
    /// `path:line`.
    pub location: Option<String>,
    pub message: String,
    pub fingerprint: String,
}

/// Whether the run could be compared with a baseline.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Comparison {
    /// No run store is in use, so there is nothing to compare with.
    #[default]
    NoStore,
    /// The store has no earlier run of this target (and no baseline was named).
    FirstRun,
    Against(Changes),
}

/// Where a suppression stands on the day of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskState {
    InForce,
    /// Expires within the warning window (the suppressions file decides how long).
    Expiring,
    /// Past its expiry date: it no longer applies.
    Expired,
    /// Matched nothing in this run: the finding is gone, or the entry is wrong.
    Stale,
}

impl RiskState {
    pub fn label(self) -> &'static str {
        match self {
            RiskState::InForce => "in force",
            RiskState::Expiring => "expiring",
            RiskState::Expired => "expired",
            RiskState::Stale => "stale",
        }
    }
}

/// One entry of the suppressions file.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedRisk {
    /// What it matches: a rule id, a fingerprint, a path pattern, as written.
    pub selector: String,
    pub owner: String,
    pub reason: String,
    pub ticket: Option<String>,
    pub expires: Option<NaiveDate>,
    pub state: RiskState,
    /// Findings of this run it covered.
    pub matched: usize,
}

/// One run of the target, for the trend charts.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendPoint {
    pub run_id: String,
    pub when: DateTime<Utc>,
    /// Unsuppressed findings per severity.
    pub counts: SeverityCounts,
    /// Suites that did not pass.
    pub suites_failing: usize,
}

impl TrendPoint {
    /// The point the current run adds.
    pub fn of(run: &RunReport) -> Self {
        TrendPoint {
            run_id: run.run_id.clone(),
            when: run.started_at,
            counts: finding_counts(run),
            suites_failing: run
                .suites
                .iter()
                .filter(|s| s.outcome != Outcome::Passed)
                .count()
                + run.invalid_suites.len(),
        }
    }
}

/// The history behind the trend charts.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Trend {
    /// No run store is in use.
    #[default]
    NoStore,
    /// Earlier runs of the target, oldest first (possibly none).
    Runs(Vec<TrendPoint>),
}

impl Trend {
    /// How many runs the charts show at most (the issue's default).
    pub const DEFAULT_RUNS: usize = 20;

    /// The points to draw, the current run last; `None` without a store.
    pub fn points(&self, run: &RunReport) -> Option<Vec<TrendPoint>> {
        let Trend::Runs(earlier) = self else {
            return None;
        };
        let mut points: Vec<TrendPoint> = earlier
            .iter()
            .filter(|p| p.run_id != run.run_id)
            .cloned()
            .collect();
        points.push(TrendPoint::of(run));
        let skip = points.len().saturating_sub(Self::DEFAULT_RUNS);
        Some(points.split_off(skip))
    }
}

/// How the run as a whole is to be read. Anything that did not run to the end makes it
/// not trustworthy, whatever the rest found: a scan that did not run is never clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    NotTrustworthy,
}

impl Verdict {
    pub fn of(run: &RunReport) -> Verdict {
        let incomplete = run.interrupted.is_some()
            || !run.invalid_suites.is_empty()
            || run.suites.is_empty()
            || run.suites.iter().any(|s| !ran_to_the_end(s.outcome));
        if incomplete {
            Verdict::NotTrustworthy
        } else if run.suites.iter().any(|s| s.outcome == Outcome::Failed) {
            Verdict::Failed
        } else {
            Verdict::Passed
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::NotTrustworthy => "not trustworthy",
        }
    }

    /// The CSS class of the banner.
    pub fn class(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::NotTrustworthy => "untrusted",
        }
    }
}

fn ran_to_the_end(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Passed | Outcome::Failed)
}

/// The sentence under the verdict: what makes it so, in numbers.
pub fn verdict_detail(run: &RunReport) -> String {
    let mut parts = Vec::new();
    let not_run = [
        (Outcome::Error, "errored"),
        (Outcome::TimedOut, "timed out"),
        (Outcome::Skipped, "skipped"),
        (Outcome::Cancelled, "cancelled"),
    ];
    for (outcome, word) in not_run {
        match run.count(outcome) {
            0 => {}
            n => parts.push(format!("{n} {} {word}", suites(n))),
        }
    }
    match run.invalid_suites.len() {
        0 => {}
        1 => parts.push("1 suite file is invalid".into()),
        n => parts.push(format!("{n} suite files are invalid")),
    }
    if let Some(signal) = &run.interrupted {
        parts.push(format!("the run was interrupted by {signal}"));
    }
    if run.suites.is_empty() && run.invalid_suites.is_empty() {
        parts.push("no suite ran".into());
    }
    let failed = run.count(Outcome::Failed);
    let passed = run.count(Outcome::Passed);
    let incomplete = !parts.is_empty();
    if failed > 0 {
        parts.push(format!("{failed} {} failed", suites(failed)));
    }
    if passed > 0 {
        parts.push(format!("{passed} passed"));
    }
    let mut detail = parts.join(", ");
    if incomplete {
        detail.push_str(": what did not run to the end was not checked");
    }
    detail
}

fn suites(n: usize) -> &'static str {
    if n == 1 { "suite" } else { "suites" }
}

/// The one place the reports read why a suite did not pass: its cause, in words.
pub fn cause(suite: &SuiteReport) -> Option<String> {
    suite.cause.as_ref().map(ToString::to_string)
}

/// Unsuppressed findings per severity over the whole run.
pub fn finding_counts(run: &RunReport) -> SeverityCounts {
    let mut total = SeverityCounts::default();
    for f in run.suites.iter().filter_map(|s| s.findings.as_ref()) {
        total.merge(&f.counts);
    }
    total
}

/// `args` as a command a POSIX shell runs as given: words with anything but safe
/// characters are single-quoted.
pub fn shell_command(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|a| {
            let safe = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if safe {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcomes: &[Outcome]) -> RunReport {
        let now = Utc::now();
        RunReport {
            run_id: "r".into(),
            phalanx_version: "0".into(),
            started_at: now,
            finished_at: now,
            interrupted: None,
            suites: outcomes
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let why = Some(crate::cause::Cause::internal("why"));
                    SuiteReport::not_run(&format!("s{i}"), "img", *o, why)
                })
                .collect(),
            invalid_suites: Vec::new(),
            partition: None,
            suppressions: Default::default(),
            target: None,
            baseline: None,
        }
    }

    #[test]
    fn anything_that_did_not_run_makes_the_run_not_trustworthy() {
        use Outcome::*;
        assert_eq!(Verdict::of(&run(&[Passed])), Verdict::Passed);
        assert_eq!(Verdict::of(&run(&[Passed, Failed])), Verdict::Failed);
        for bad in [Error, TimedOut, Skipped, Cancelled] {
            assert_eq!(
                Verdict::of(&run(&[Passed, Failed, bad])),
                Verdict::NotTrustworthy
            );
        }
        assert_eq!(Verdict::of(&run(&[])), Verdict::NotTrustworthy);
        let mut interrupted = run(&[Passed]);
        interrupted.interrupted = Some(crate::stop::Signal::Interrupt);
        assert_eq!(Verdict::of(&interrupted), Verdict::NotTrustworthy);
    }

    #[test]
    fn verdict_detail_counts_what_did_not_run_first() {
        use Outcome::*;
        let detail = verdict_detail(&run(&[Passed, Failed, Error, Error]));
        assert_eq!(
            detail,
            "2 suites errored, 1 suite failed, 1 passed: what did not run to the end was not checked"
        );
        assert_eq!(verdict_detail(&run(&[Passed])), "1 passed");
    }

    #[test]
    fn trend_adds_the_current_run_once_and_keeps_the_last_twenty() {
        let current = run(&[Outcome::Passed]);
        assert_eq!(Trend::NoStore.points(&current), None);
        let earlier: Vec<TrendPoint> = (0..30)
            .map(|i| TrendPoint {
                run_id: format!("old{i}"),
                ..TrendPoint::of(&current)
            })
            .chain([TrendPoint::of(&current)])
            .collect();
        let points = Trend::Runs(earlier).points(&current).unwrap();
        assert_eq!(points.len(), Trend::DEFAULT_RUNS);
        assert_eq!(points.last().unwrap().run_id, "r");
        assert_eq!(points[0].run_id, "old11");
    }

    #[test]
    fn shell_command_quotes_what_a_shell_would_split_or_expand() {
        let args = [
            "phalanx", "run", "--target", "my dir", "--tag", "it's", "$HOME",
        ];
        assert_eq!(
            shell_command(args.map(String::from)),
            r"phalanx run --target 'my dir' --tag 'it'\''s' '$HOME'"
        );
    }
}
