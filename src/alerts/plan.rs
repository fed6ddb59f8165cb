//! Which events of a finished run go to which channel, as one [`Digest`] per channel.
//!
//! [`RunEvents::of`] reads the run once: its findings (each marked new against the run's
//! baseline, or, without one, against the newest earlier run of the same target and
//! branch that read that suite's findings), the suites that could not be trusted, the
//! exit code, and the accepted risks that expire soon or expired (judged against the
//! suppressions' own "today", which `PHALANX_TODAY` sets: see `crate::verdict`).
//! [`plan_channel`] then cuts one channel's digest from them, given what the channel was
//! already told ([`Known`]): a finding is alerted once while it stays, and again once it
//! was gone from a run that read its suite and came back; what a failed or abandoned
//! delivery should have said is owed, and goes into the next digest.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::config::{AlertSpec, EventKind};
use crate::findings::{BaselineState, Severity, SeverityCounts, SuiteResults};
use crate::outcome::{Counts, Outcome, RunReport};
use crate::report::one_line;
use crate::store::GitInfo;
use crate::store::alerts::{Known, StateKey};
use crate::verdict::EntryReport;

/// Longest message, rule id or path carried per finding.
const MAX_TEXT: usize = 200;

/// What the run is, as every alert names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subject {
    pub project: Option<String>,
    /// The project, else the target folder's name: what the summary says the run was of.
    pub name: String,
    pub target: PathBuf,
    pub git: Option<GitInfo>,
    /// The branch the run is on: git's, else, on a detached HEAD (as CI checkouts often
    /// are), the one the CI says it builds ([`ci_branch`]).
    pub branch: Option<String>,
    pub run_id: String,
    /// The run's page when a server is configured.
    pub run_url: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub exit_code: u8,
    pub counts: Counts,
}

impl Subject {
    /// `shop@a1b2c3d`: the name and the short commit.
    pub fn label(&self) -> String {
        match self.git.as_ref().and_then(|g| g.commit.as_deref()) {
            Some(commit) => format!("{}@{}", self.name, &commit[..commit.len().min(7)]),
            None => self.name.clone(),
        }
    }

    pub fn branch(&self) -> Option<&str> {
        self.branch.as_deref()
    }
}

/// One finding as an alert lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertFinding {
    pub suite: String,
    pub severity: Severity,
    pub rule: String,
    /// `path:line`, or `None` when the tool gave no location.
    pub location: Option<String>,
    pub path: Option<String>,
    pub line: Option<u64>,
    pub fingerprint: String,
    /// One line, at most 200 characters.
    pub message: String,
}

/// A suite whose result cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuiteProblem {
    pub suite: String,
    /// `error`, `timed-out`, or `invalid` (its file could not be read).
    pub outcome: &'static str,
    pub reason: String,
}

/// The run's exit code, when it is not 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunFailure {
    pub exit_code: u8,
    pub meaning: &'static str,
}

/// A finding of the run with what the alert stage needs to know about it.
#[derive(Debug, Clone)]
struct Candidate {
    finding: AlertFinding,
    suppressed: bool,
    new: bool,
}

/// Everything in a run an alert could be about, read once for all channels.
#[derive(Debug, Clone)]
pub struct RunEvents {
    pub subject: Subject,
    /// Per suite whose findings were read (so a finding missing there is gone).
    findings: Vec<(String, Vec<Candidate>)>,
    pub suite_errors: Vec<SuiteProblem>,
    pub run_failed: Option<RunFailure>,
    pub expiring: Vec<EntryReport>,
    pub expired: Vec<EntryReport>,
}

/// One channel's message for one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    pub channel: String,
    /// The kinds it is about, in [`EventKind`] order.
    pub events: Vec<EventKind>,
    /// Most severe first.
    pub new_findings: Vec<AlertFinding>,
    pub suite_errors: Vec<SuiteProblem>,
    pub run_failed: Option<RunFailure>,
    pub expiring: Vec<EntryReport>,
    pub expired: Vec<EntryReport>,
}

/// What one channel gets from a run: its digest (if anything is due) and how its state
/// moves: `mark` is what the digest tells, `forget` what is gone.
#[derive(Debug, Clone, Default)]
pub struct ChannelPlan {
    pub digest: Option<Digest>,
    pub mark: Vec<StateKey>,
    pub forget: Vec<StateKey>,
}

impl RunEvents {
    /// The events of `report`, a run of `target`. `previous(suite)` gives the fingerprints
    /// of that suite in the run to compare with when the run has no baseline (`None`: no
    /// earlier run read it, so all its findings are new).
    pub fn of(
        report: &RunReport,
        subject: Subject,
        previous: &mut dyn FnMut(&str) -> Option<HashSet<String>>,
    ) -> RunEvents {
        let mut findings = Vec::new();
        for suite in &report.suites {
            let Some(SuiteResults::Sarif(sarif)) = suite.results.as_deref() else {
                continue;
            };
            let before = match report.baseline {
                Some(_) => None,
                None => previous(&suite.name),
            };
            let candidates = sarif
                .findings
                .iter()
                .map(|f| {
                    let location = f.location.as_ref();
                    let fingerprint = f.fingerprint.to_string();
                    let new = match (&report.baseline, &before) {
                        (Some(_), _) => f.baseline != Some(BaselineState::Unchanged),
                        (None, Some(before)) => !before.contains(&fingerprint),
                        (None, None) => true,
                    };
                    Candidate {
                        finding: AlertFinding {
                            suite: suite.name.clone(),
                            severity: f.severity,
                            rule: one_line(&sarif.rule_of(f).id, MAX_TEXT),
                            location: location.map(|l| one_line(&l.to_string(), MAX_TEXT)),
                            path: location.map(|l| one_line(&l.path, MAX_TEXT)),
                            line: location.and_then(|l| l.start_line),
                            fingerprint,
                            message: one_line(&f.message, MAX_TEXT),
                        },
                        suppressed: f.is_suppressed(),
                        new,
                    }
                })
                .collect();
            findings.push((suite.name.clone(), candidates));
        }
        let suppressions = report.suppressions.report(&report.suites);
        let (expiring, expired) =
            suppressions.map_or_else(Default::default, |s| (s.expiring, s.expired));
        RunEvents {
            subject,
            findings,
            suite_errors: suite_errors(report),
            run_failed: run_failure(report),
            expiring,
            expired,
        }
    }
}

/// What `spec` gets from `events`, given what it was told before (`known`).
pub fn plan_channel(
    spec: &AlertSpec,
    events: &RunEvents,
    known: &HashMap<StateKey, Known>,
) -> ChannelPlan {
    if !spec.applies_to(events.subject.branch()) {
        return ChannelPlan::default();
    }
    let mut plan = ChannelPlan {
        forget: gone(events, known),
        ..ChannelPlan::default()
    };
    let mut digest = Digest {
        channel: spec.name.clone(),
        events: Vec::new(),
        new_findings: Vec::new(),
        suite_errors: Vec::new(),
        run_failed: None,
        expiring: Vec::new(),
        expired: Vec::new(),
    };
    if spec.wants(EventKind::NewFinding) {
        for (_, candidates) in &events.findings {
            for c in candidates {
                let key = finding_key(&c.finding);
                let due = match known.get(&key) {
                    Some(Known::Told) => false,
                    Some(Known::Owed) => true,
                    None => c.new,
                };
                if due && !c.suppressed && c.finding.severity >= spec.min_severity {
                    digest.new_findings.push(c.finding.clone());
                    plan.mark.push(key);
                }
            }
        }
        digest.new_findings.sort_by(|a, b| {
            (b.severity, &a.suite, &a.path, a.line).cmp(&(a.severity, &b.suite, &b.path, b.line))
        });
    }
    if spec.wants(EventKind::SuiteError) {
        digest.suite_errors = events.suite_errors.clone();
    }
    if spec.wants(EventKind::RunFailed) {
        digest.run_failed = events.run_failed.clone();
    }
    for (kind, all, due) in [
        (
            EventKind::SuppressionExpiring,
            &events.expiring,
            &mut digest.expiring,
        ),
        (
            EventKind::SuppressionExpired,
            &events.expired,
            &mut digest.expired,
        ),
    ] {
        if !spec.wants(kind) {
            continue;
        }
        for entry in all {
            let key = entry_key(kind, entry);
            if known.get(&key) != Some(&Known::Told) {
                due.push(entry.clone());
                plan.mark.push(key);
            }
        }
    }
    digest.events = EventKind::ALL
        .into_iter()
        .filter(|k| match k {
            EventKind::NewFinding => !digest.new_findings.is_empty(),
            EventKind::SuiteError => !digest.suite_errors.is_empty(),
            EventKind::RunFailed => digest.run_failed.is_some(),
            EventKind::SuppressionExpiring => !digest.expiring.is_empty(),
            EventKind::SuppressionExpired => !digest.expired.is_empty(),
        })
        .collect();
    if !digest.events.is_empty() {
        plan.digest = Some(digest);
    }
    plan
}

/// What the channel was told that this run shows is over: findings missing from a suite
/// whose findings were read, accepted risks no longer expiring or expired.
fn gone(events: &RunEvents, known: &HashMap<StateKey, Known>) -> Vec<StateKey> {
    let present: HashSet<StateKey> = events
        .findings
        .iter()
        .flat_map(|(_, c)| c.iter().map(|c| finding_key(&c.finding)))
        .chain(
            events
                .expiring
                .iter()
                .map(|e| entry_key(EventKind::SuppressionExpiring, e)),
        )
        .chain(
            events
                .expired
                .iter()
                .map(|e| entry_key(EventKind::SuppressionExpired, e)),
        )
        .collect();
    let read: BTreeSet<&str> = events.findings.iter().map(|(s, _)| s.as_str()).collect();
    let finding_kind = EventKind::NewFinding.as_str();
    let mut gone: Vec<StateKey> = known
        .keys()
        .filter(|k| !present.contains(*k))
        .filter(|k| k.kind != finding_kind || read.contains(k.scope.as_str()))
        .cloned()
        .collect();
    gone.sort();
    gone
}

fn finding_key(f: &AlertFinding) -> StateKey {
    StateKey {
        kind: EventKind::NewFinding.as_str().into(),
        scope: f.suite.clone(),
        key: f.fingerprint.clone(),
    }
}

/// An accepted risk is the same one while its scope and end date are: a renewed entry
/// (a later date) can expire again.
fn entry_key(kind: EventKind, entry: &EntryReport) -> StateKey {
    StateKey {
        kind: kind.as_str().into(),
        scope: String::new(),
        key: format!("{} until {}", entry.scope, entry.expires),
    }
}

fn suite_errors(report: &RunReport) -> Vec<SuiteProblem> {
    let broken = report.suites.iter().filter_map(|s| {
        let outcome = match s.outcome {
            Outcome::Error => "error",
            Outcome::TimedOut => "timed-out",
            _ => return None,
        };
        let reason = s
            .cause
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        Some(SuiteProblem {
            suite: s.name.clone(),
            outcome,
            reason: one_line(&reason, MAX_TEXT),
        })
    });
    let invalid = report.invalid_suites.iter().map(|i| SuiteProblem {
        suite: i.name.clone(),
        outcome: "invalid",
        reason: one_line(i.errors.first().map_or("", String::as_str), MAX_TEXT),
    });
    broken.chain(invalid).collect()
}

fn run_failure(report: &RunReport) -> Option<RunFailure> {
    use crate::exit;
    let exit_code = report.exit_code();
    let meaning = match exit_code {
        exit::PASSED => return None,
        exit::FAILED => "some suite failed or timed out",
        exit::USAGE => "a selected suite file is invalid",
        exit::INFRA => "some suite ended in error: its results cannot be trusted",
        _ => "the run was interrupted",
    };
    Some(RunFailure { exit_code, meaning })
}

impl Digest {
    /// One line for a person: `3 new high findings in shop@a1b2c3d; 1 suite could not
    /// run (zap)`.
    pub fn summary(&self, subject: &Subject) -> String {
        let mut parts = Vec::new();
        if !self.new_findings.is_empty() {
            parts.push(findings_phrase(&self.new_findings));
        }
        if !self.suite_errors.is_empty() {
            let names: Vec<&str> = self.suite_errors.iter().map(|p| p.suite.as_str()).collect();
            parts.push(format!(
                "{} could not run ({})",
                count(names.len(), "suite", "suites"),
                short_list(&names)
            ));
        }
        if let Some(failure) = &self.run_failed {
            parts.push(format!("run failed (exit {})", failure.exit_code));
        }
        if !self.expiring.is_empty() {
            parts.push(match self.expiring.as_slice() {
                [one] => format!("1 accepted risk expires {}", days_phrase(one)),
                many => format!("{} accepted risks expire soon", many.len()),
            });
        }
        if !self.expired.is_empty() {
            let n = self.expired.len();
            parts.push(format!(
                "{} expired",
                count(n, "accepted risk", "accepted risks")
            ));
        }
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_else(|| "nothing to report".into());
        let line = std::iter::once(format!("{first} in {}", subject.label()))
            .chain(parts)
            .collect::<Vec<_>>()
            .join("; ");
        one_line(&line, 300)
    }

    pub fn new_counts(&self) -> SeverityCounts {
        let mut counts = SeverityCounts::default();
        for f in &self.new_findings {
            counts.add(f.severity);
        }
        counts
    }
}

/// `3 new high findings`, or `5 new findings (2 critical, 3 high)` when they differ.
fn findings_phrase(findings: &[AlertFinding]) -> String {
    let mut counts = SeverityCounts::default();
    for f in findings {
        counts.add(f.severity);
    }
    let n = findings.len();
    let word = if n == 1 { "finding" } else { "findings" };
    let severities: Vec<Severity> = Severity::DESCENDING
        .into_iter()
        .filter(|s| counts.get(*s) > 0)
        .collect();
    match severities.as_slice() {
        [one] => format!("{n} new {one} {word}"),
        _ => format!("{n} new {word} ({counts})"),
    }
}

fn days_phrase(entry: &EntryReport) -> String {
    match entry.state {
        crate::verdict::EntryState::Expiring { days_left: 0 } => "today".into(),
        crate::verdict::EntryState::Expiring { days_left: 1 } => "tomorrow".into(),
        crate::verdict::EntryState::Expiring { days_left } => format!("in {days_left} days"),
        _ => format!("on {}", entry.expires),
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The first three names, then `…`.
fn short_list(names: &[&str]) -> String {
    let mut shown: Vec<&str> = names.iter().copied().take(3).collect();
    if names.len() > 3 {
        shown.push("…");
    }
    shown.join(", ")
}

/// The subject of a run of `target` (absolute).
pub fn subject(
    report: &RunReport,
    target: &Path,
    git: Option<&GitInfo>,
    project: Option<&str>,
    server_url: Option<&str>,
) -> Subject {
    let name = project.map(str::to_string).unwrap_or_else(|| {
        target.file_name().map_or_else(
            || target.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    });
    Subject {
        project: project.map(str::to_string),
        name: one_line(&name, 100),
        target: target.to_path_buf(),
        git: git.cloned(),
        branch: git
            .and_then(|g| g.branch.clone())
            .or_else(|| ci_branch(|name| std::env::var(name).ok())),
        run_id: report.run_id.clone(),
        run_url: server_url.map(|u| format!("{}/runs/{}", u.trim_end_matches('/'), report.run_id)),
        started_at: report.started_at,
        finished_at: report.finished_at,
        exit_code: report.exit_code(),
        counts: Counts::of(report),
    }
}

/// The branch a CI job builds, from its variables (`var` reads one): GitLab's
/// `CI_COMMIT_BRANCH` (set in branch pipelines only), GitHub's `GITHUB_REF_NAME` when
/// `GITHUB_REF_TYPE` is `branch`, Jenkins' `BRANCH_NAME` (multibranch pipelines).
pub fn ci_branch(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    set("CI_COMMIT_BRANCH")
        .or_else(|| {
            (set("GITHUB_REF_TYPE").as_deref() == Some("branch"))
                .then(|| set("GITHUB_REF_NAME"))
                .flatten()
        })
        .or_else(|| set("BRANCH_NAME"))
}

#[cfg(test)]
mod tests;
