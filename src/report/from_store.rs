//! The outside facts of a [`ReportInput`](super::ReportInput), converted from where they
//! live: accepted risk from the run's suppressions report, what changed from the
//! findings' baseline states or from the run store's diff, the trend from the store's
//! earlier runs of the target. And, for `phalanx report`, a stored run rebuilt as a
//! [`RunReport`] the writers can read.

use std::sync::Arc;

use crate::cause::Cause;
use crate::findings::model::Origin;
use crate::findings::{
    BaselineState, Finding, FindingRecord, Fingerprint, Gate, Location, Rule, Severity,
    SuiteFindings, SuiteResults, Suppression, Tool,
};
use crate::outcome::{InvalidSuite, Outcome, RunReport, SuiteReport};
use crate::stop::Signal;
use crate::store::{
    Diff, GitInfo, RunDetail, RunFilter, RunSummary, Store, StoreError, StoredFinding, StoredSuite,
};
use crate::verdict::{EntryReport, EntryState, SuppressionsReport};

use super::input::{
    AcceptedRisk, ChangedFinding, Changes, Comparison, GitFacts, RiskState, Trend, TrendPoint,
};

impl AcceptedRisk {
    /// Every entry of the suppressions file the run judged (applied, expired, expiring,
    /// stale), once each, in file order; `None` when the run used no suppressions file.
    pub fn from_suppressions(report: Option<&SuppressionsReport>) -> Option<Vec<AcceptedRisk>> {
        let report = report?;
        // An expiring entry is also applied or stale; a stale one says more (remove it).
        let lists = [
            (&report.expired, Some(RiskState::Expired)),
            (&report.stale, Some(RiskState::Stale)),
            (&report.applied, None),
            (&report.expiring, None),
        ];
        let mut risks: Vec<(u32, AcceptedRisk)> = Vec::new();
        for (entries, forced) in lists {
            for entry in entries {
                if risks.iter().all(|(line, _)| *line != entry.line) {
                    let state = forced.unwrap_or(risk_state(entry.state));
                    risks.push((entry.line, accepted(entry, state)));
                }
            }
        }
        risks.sort_by_key(|(line, _)| *line);
        Some(risks.into_iter().map(|(_, r)| r).collect())
    }
}

fn risk_state(state: EntryState) -> RiskState {
    match state {
        EntryState::InForce => RiskState::InForce,
        EntryState::Expiring { .. } => RiskState::Expiring,
        EntryState::Expired => RiskState::Expired,
    }
}

fn accepted(entry: &EntryReport, state: RiskState) -> AcceptedRisk {
    AcceptedRisk {
        selector: entry.scope.clone(),
        owner: entry.owner.clone(),
        reason: entry.reason.clone(),
        ticket: entry.ticket.clone(),
        expires: Some(entry.expires),
        state,
        matched: entry.findings,
    }
}

impl Changes {
    /// What changed against the run's `--baseline`, from each finding's baseline state
    /// and the baseline findings no suite found again (fixed); `None` without a baseline.
    /// Only suites whose SARIF was read compare anything.
    pub fn from_baseline(run: &RunReport) -> Option<Changes> {
        let baseline = run.baseline.as_ref()?;
        let mut changes = Changes {
            baseline_label: baseline.source.clone(),
            ..Changes::default()
        };
        for suite in &run.suites {
            if let Some(SuiteResults::Sarif(found)) = suite.results.as_deref() {
                changes.add_states(found);
            }
            for record in suite.findings.iter().flat_map(|f| &f.absent) {
                changes.fixed.add(record.severity);
                changes
                    .fixed_findings
                    .push(from_record(&suite.name, record));
            }
        }
        changes.sort();
        Some(changes)
    }

    fn add_states(&mut self, found: &SuiteFindings) {
        for f in &found.findings {
            match f.baseline {
                Some(BaselineState::New) => {
                    self.new.add(f.severity);
                    self.new_findings.push(from_finding(found, f));
                }
                Some(BaselineState::Unchanged) => self.unchanged.add(f.severity),
                None => {}
            }
        }
    }

    /// What changed between two stored runs.
    pub fn from_diff(diff: &Diff) -> Changes {
        let mut changes = Changes {
            baseline_label: run_label(&diff.base),
            new: diff.counts.new,
            fixed: diff.counts.fixed,
            unchanged: diff.counts.unchanged,
            new_findings: diff.new.iter().map(|d| from_stored(&d.finding)).collect(),
            fixed_findings: diff.fixed.iter().map(|d| from_stored(&d.finding)).collect(),
        };
        changes.sort();
        changes
    }

    /// Most severe first; the sort is stable, so ties keep the recorded order.
    fn sort(&mut self) {
        let key = |f: &ChangedFinding| std::cmp::Reverse(f.severity);
        self.new_findings.sort_by_key(key);
        self.fixed_findings.sort_by_key(key);
    }
}

/// `run 20260430-… of 2026-04-30 (main)`: how a stored base run is named in the reports.
fn run_label(run: &RunSummary) -> String {
    let branch = run
        .git
        .as_ref()
        .and_then(|g| g.branch.as_deref())
        .map(|b| format!(", {b}"))
        .unwrap_or_default();
    format!(
        "run {} ({}{branch})",
        run.run_id,
        run.started_at.format("%Y-%m-%d %H:%M UTC")
    )
}

fn from_finding(found: &SuiteFindings, f: &Finding) -> ChangedFinding {
    ChangedFinding {
        suite: found.suite.clone(),
        rule: found.rule_of(f).id.clone(),
        severity: f.severity,
        location: f.location.as_ref().map(ToString::to_string),
        message: f.message.clone(),
        fingerprint: f.fingerprint.to_string(),
    }
}

fn from_record(suite: &str, r: &FindingRecord) -> ChangedFinding {
    ChangedFinding {
        suite: suite.to_string(),
        rule: r.rule.clone(),
        severity: r.severity,
        location: r.path.as_ref().map(|_| r.place()),
        message: r.message.clone(),
        fingerprint: r.fingerprint.to_string(),
    }
}

fn from_stored(f: &StoredFinding) -> ChangedFinding {
    let location = f.path.as_ref().map(|p| match f.line {
        Some(line) => format!("{p}:{line}"),
        None => p.clone(),
    });
    ChangedFinding {
        suite: f.suite.clone(),
        rule: f.rule.clone(),
        severity: f.severity,
        location,
        message: f.message.clone(),
        fingerprint: f.fingerprint.clone(),
    }
}

impl TrendPoint {
    /// A stored run as a point of the trend charts.
    pub fn of_stored(run: &RunSummary) -> TrendPoint {
        let o = &run.outcomes;
        let failing = o.failed + o.timed_out + o.error + o.skipped + o.cancelled + o.invalid;
        TrendPoint {
            run_id: run.run_id.clone(),
            when: run.started_at,
            counts: run.findings,
            suites_failing: failing as usize,
        }
    }
}

/// What the store says around one of its runs: what changed and the trend.
#[derive(Debug, Clone, PartialEq)]
pub struct RunHistory {
    pub comparison: Comparison,
    pub trend: Trend,
}

impl RunHistory {
    /// The history of `head`, a run the store holds: compared with `base`, or without one
    /// with the previous run of the same target, selection and partition; the trend is
    /// the last [`Trend::DEFAULT_RUNS`] runs of the target up to `head`, oldest first.
    pub fn of(
        store: &Store,
        head: &RunSummary,
        base: Option<RunSummary>,
    ) -> Result<RunHistory, StoreError> {
        let base = match base {
            Some(base) => Some(base),
            None => store.previous_like(head)?,
        };
        let comparison = match base {
            Some(base) => Comparison::Against(Changes::from_diff(&store.diff(base, head.clone())?)),
            None => Comparison::FirstRun,
        };
        Ok(RunHistory {
            comparison,
            trend: trend(store, head)?,
        })
    }
}

fn trend(store: &Store, head: &RunSummary) -> Result<Trend, StoreError> {
    let filter = RunFilter {
        limit: None,
        target: Some(head.target.clone()),
    };
    // Newest first; runs after `head` are left out, so an old run's page shows the trend
    // as it was then.
    let mut points: Vec<TrendPoint> = store
        .runs(&filter)?
        .iter()
        .filter(|r| (r.started_at, r.seq) <= (head.started_at, head.seq))
        .take(Trend::DEFAULT_RUNS)
        .map(TrendPoint::of_stored)
        .collect();
    points.reverse();
    Ok(Trend::Runs(points))
}

impl GitFacts {
    /// The page's commit line from what the store read of `.git`.
    pub fn of(info: &GitInfo) -> GitFacts {
        GitFacts {
            commit: info
                .commit
                .clone()
                .unwrap_or_else(|| "no commit yet".into()),
            branch: info.branch.clone(),
            dirty: info.dirty,
        }
    }
}

/// A stored run as a [`RunReport`]: suites with their recorded outcome, cause (as the
/// sentence that was recorded) and findings, so the writers can draw its pages.
pub fn run_report(detail: &RunDetail) -> RunReport {
    let run = &detail.run;
    let suites = detail
        .suites
        .iter()
        .map(|stored| {
            let mut suite = stored_suite(stored);
            if stored.has_findings {
                attach_findings(&mut suite, stored, &detail.findings);
            }
            suite
        })
        .collect();
    RunReport {
        run_id: run.run_id.clone(),
        phalanx_version: run.phalanx_version.clone(),
        started_at: run.started_at,
        finished_at: run.finished_at,
        interrupted: run.interrupted.as_deref().and_then(signal),
        suites,
        invalid_suites: invalid_suites(run.outcomes.invalid),
        partition: run.partition.clone(),
        suppressions: Default::default(),
        target: None,
        baseline: None,
    }
}

fn signal(name: &str) -> Option<Signal> {
    [Signal::Interrupt, Signal::Terminate]
        .into_iter()
        .find(|s| s.name() == name)
}

/// The store counts invalid suite files but keeps nothing else of them; they are listed
/// so the run still reads as not trustworthy.
fn invalid_suites(count: u64) -> Vec<InvalidSuite> {
    (0..count)
        .map(|i| InvalidSuite {
            name: format!("invalid suite file {}", i + 1),
            file: Default::default(),
            errors: vec!["the run store keeps no details of invalid suite files".into()],
        })
        .collect()
}

fn stored_suite(s: &StoredSuite) -> SuiteReport {
    // The store keeps the cause's sentence; its typed form is only for reading back the
    // sentence here, so an internal cause that prints it verbatim is honest.
    let cause = match (s.outcome, &s.reason) {
        (Outcome::Passed, _) => None,
        (_, Some(reason)) => Some(Cause::internal(reason.clone())),
        (_, None) => None,
    };
    let mut suite = SuiteReport::not_run(&s.name, &s.image, s.outcome, cause);
    suite.image_digest = s.image_digest.clone();
    suite.exit_code = s.exit_code;
    suite.started_at = s.started_at;
    suite.finished_at = s
        .started_at
        .and_then(|t| chrono::Duration::from_std(s.duration).ok().map(|d| t + d));
    suite.duration = s.duration;
    suite.attempts = s.attempts;
    suite.flaky = s.flaky;
    suite
}

fn attach_findings(suite: &mut SuiteReport, stored: &StoredSuite, all: &[StoredFinding]) {
    let mut found = SuiteFindings {
        suite: suite.name.clone(),
        ..SuiteFindings::default()
    };
    for f in all.iter().filter(|f| f.suite == suite.name) {
        let rule = rule_index(&mut found, &f.tool, &f.rule);
        found.findings.push(stored_finding(f, rule));
    }
    let fail_on = stored.fail_on.unwrap_or(Severity::Info);
    let mut summary = found.summary(fail_on, Gate::All, None);
    // The gate is not stored; the recorded count of blocking findings is the one to show.
    if let Some(blocking) = stored.blocking {
        summary.blocking = blocking as usize;
    }
    suite.findings = Some(summary);
    suite.results = Some(Arc::new(SuiteResults::Sarif(found)));
}

fn rule_index(found: &mut SuiteFindings, tool: &str, rule: &str) -> usize {
    let tool = match found.tools.iter().position(|t| t.name == tool) {
        Some(i) => i,
        None => {
            found.tools.push(Tool {
                name: tool.to_string(),
                version: None,
            });
            found.tools.len() - 1
        }
    };
    match found
        .rules
        .iter()
        .position(|r| r.tool == tool && r.id == rule)
    {
        Some(i) => i,
        None => {
            found.rules.push(Rule {
                id: rule.to_string(),
                tool,
                name: None,
                short_description: None,
                declared: false,
                not_applicable: 0,
            });
            found.rules.len() - 1
        }
    }
}

fn stored_finding(f: &StoredFinding, rule: usize) -> Finding {
    let suppression = if f.suppressed {
        Suppression::InSource {
            justification: f.justification.clone(),
        }
    } else {
        Suppression::None
    };
    Finding {
        rule,
        severity: f.severity,
        message: f.message.clone(),
        location: f.path.as_ref().map(|path| Location {
            path: path.clone(),
            start_line: f.line,
            start_column: None,
        }),
        // The store holds what Phalanx wrote; a damaged one still shows as a finding.
        fingerprint: f.fingerprint.parse().unwrap_or(Fingerprint {
            hash: 0,
            occurrence: 1,
        }),
        suppression,
        baseline: None,
        origin: Origin {
            file: 0,
            run: 0,
            result: 0,
        },
    }
}

/// The command that runs a stored run's selection again.
pub fn rerun_command(run: &RunSummary) -> String {
    let mut args: Vec<String> = vec!["phalanx".into(), "run".into(), "--target".into()];
    args.push(run.target.display().to_string());
    for name in &run.selection.suites {
        args.extend(["--suite".into(), name.clone()]);
    }
    for tag in &run.selection.tags {
        args.extend(["--tag".into(), tag.clone()]);
    }
    if let Some(p) = &run.partition {
        args.extend(["--partition".into(), p.clone()]);
    }
    super::input::shell_command(args)
}
