//! Writing a finished run into the store: one transaction for the run, its suites, every
//! finding and the updated duration estimates, so a reader sees all of it or nothing.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Transaction, params};
use serde::{Deserialize, Serialize};

use super::git::GitInfo;
use super::{Store, StoreError};
use crate::findings::{SeverityCounts, SuiteFindings, SuiteResults, TestCounts};
use crate::history::{Entry, History};
use crate::outcome::{Outcome, RunReport, SuiteReport};

/// What the run was asked to run: `--suite` names and `--tag`s, sorted, without repeats.
/// Both empty means every suite.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub suites: Vec<String>,
    pub tags: Vec<String>,
}

impl Selection {
    pub fn new(suites: &[String], tags: &[String]) -> Selection {
        let sorted = |items: &[String]| {
            let mut v = items.to_vec();
            v.sort();
            v.dedup();
            v
        };
        Selection {
            suites: sorted(suites),
            tags: sorted(tags),
        }
    }

    /// The stored form; equal selections have equal text, which `diff` compares.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a selection serialises")
    }

    pub fn from_json(text: &str) -> Selection {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// What the store records about a run besides its report.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFacts {
    /// The target, absolute.
    pub target: PathBuf,
    pub selection: Selection,
    /// `None` when the target is not in a git work tree.
    pub git: Option<GitInfo>,
    /// The `[projects.NAME]` run, if any.
    pub project: Option<String>,
}

impl RunFacts {
    /// The facts of a run of `target` (absolute), reading its git state.
    pub fn gather(target: &Path, selection: Selection) -> RunFacts {
        RunFacts {
            target: target.to_path_buf(),
            selection,
            git: super::git::read(target),
            project: None,
        }
    }
}

/// One suite as the `suites` table holds it. Built by [`suite_row`] only, so that when
/// `SuiteReport` changes there is one place to follow.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteRow {
    pub name: String,
    pub image: String,
    pub image_digest: Option<String>,
    pub outcome: Outcome,
    /// The human sentence saying why.
    pub reason: Option<String>,
    /// The machine-readable cause as JSON (kind plus fields), as run.json writes it.
    pub cause: Option<String>,
    pub exit_code: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: i64,
    pub attempts: u32,
    pub flaky: bool,
    /// SARIF results were read, so the findings rows are the suite's whole answer (a suite
    /// without them is left out of `diff`, rather than having all its findings "fixed").
    pub has_findings: bool,
    pub fail_on: Option<&'static str>,
    pub blocking: Option<usize>,
    pub tests: Option<TestCounts>,
}

/// The row of one suite's report.
pub fn suite_row(report: &SuiteReport) -> SuiteRow {
    SuiteRow {
        name: report.name.clone(),
        image: report.image.clone(),
        image_digest: report.image_digest.clone(),
        outcome: report.outcome,
        reason: report.cause.as_ref().map(ToString::to_string),
        cause: report
            .cause
            .as_ref()
            .and_then(|c| serde_json::to_string(c).ok()),
        exit_code: report.exit_code,
        started_at: report.started_at.map(|t| t.timestamp_millis()),
        finished_at: report.finished_at.map(|t| t.timestamp_millis()),
        duration_ms: report.duration.as_millis().try_into().unwrap_or(i64::MAX),
        attempts: report.attempts,
        flaky: report.flaky,
        has_findings: sarif_of(report).is_some(),
        fail_on: report.findings.as_ref().map(|f| f.fail_on.as_str()),
        blocking: report.findings.as_ref().map(|f| f.blocking),
        tests: report.tests,
    }
}

/// The stored name of an outcome: run.json's kebab-case word.
pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::TimedOut => "timed-out",
        Outcome::Error => "error",
        Outcome::Skipped => "skipped",
        Outcome::Cancelled => "cancelled",
    }
}

pub fn outcome_from_name(name: &str) -> Option<Outcome> {
    const ALL: [Outcome; 6] = [
        Outcome::Passed,
        Outcome::Failed,
        Outcome::TimedOut,
        Outcome::Error,
        Outcome::Skipped,
        Outcome::Cancelled,
    ];
    ALL.into_iter().find(|o| outcome_name(*o) == name)
}

fn sarif_of(report: &SuiteReport) -> Option<&SuiteFindings> {
    match report.results.as_deref() {
        Some(SuiteResults::Sarif(f)) => Some(f),
        _ => None,
    }
}

/// What recording a run wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The run's row number (`runs.seq`).
    pub seq: i64,
    pub suites: usize,
    pub findings: usize,
}

impl Store {
    /// Records a finished run with its suites and findings, and folds its suite durations
    /// into the estimates, all in one transaction.
    pub fn record(&mut self, report: &RunReport, facts: &RunFacts) -> Result<Recorded, StoreError> {
        let path = self.path.clone();
        let secs = self.timeout.as_secs();
        let tx = self.write_tx()?;
        let recorded = write_run(&tx, report, facts)
            .and_then(|r| update_durations(&tx, &report.suites, Utc::now()).map(|()| r))
            .and_then(|r| tx.commit().map(|()| r));
        recorded.map_err(|e| StoreError::classify(&path, e, secs))
    }
}

fn write_run(tx: &Transaction, report: &RunReport, facts: &RunFacts) -> rusqlite::Result<Recorded> {
    let count = |o| report.count(o) as i64;
    let (unsuppressed, suppressed) = severity_totals(report);
    let sev = |s| unsuppressed.get(s) as i64;
    use crate::findings::Severity::*;
    let git = facts.git.as_ref();
    tx.execute(
        "INSERT INTO runs (run_id, phalanx_version, started_at, finished_at, exit_code,
            interrupted, passed, failed, timed_out, errored, skipped, cancelled, invalid,
            critical, high, medium, low, info, suppressed, selection, partition, target,
            git_commit, git_branch, git_dirty, project)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
            ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)",
        params![
            report.run_id,
            report.phalanx_version,
            report.started_at.timestamp_millis(),
            report.finished_at.timestamp_millis(),
            report.exit_code(),
            report.interrupted.map(|s| s.name()),
            count(Outcome::Passed),
            count(Outcome::Failed),
            count(Outcome::TimedOut),
            count(Outcome::Error),
            count(Outcome::Skipped),
            count(Outcome::Cancelled),
            report.invalid_suites.len() as i64,
            sev(Critical),
            sev(High),
            sev(Medium),
            sev(Low),
            sev(Info),
            suppressed.total() as i64,
            facts.selection.to_json(),
            report.partition,
            facts.target.to_string_lossy(),
            git.and_then(|g| g.commit.clone()),
            git.and_then(|g| g.branch.clone()),
            git.and_then(|g| g.dirty),
            facts.project,
        ],
    )?;
    let seq = tx.last_insert_rowid();
    // Recorded whole now: the server's live row of it has done its job.
    tx.execute("DELETE FROM live_runs WHERE run_id = ?1", [&report.run_id])?;
    insert_baseline(tx, seq, report)?;
    let mut findings = 0;
    for (position, suite) in report.suites.iter().enumerate() {
        let id = insert_suite(tx, seq, position, &suite_row(suite))?;
        if let Some(f) = sarif_of(suite) {
            findings += insert_findings(tx, id, f)?;
        }
    }
    Ok(Recorded {
        seq,
        suites: report.suites.len(),
        findings,
    })
}

fn severity_totals(report: &RunReport) -> (SeverityCounts, SeverityCounts) {
    let mut unsuppressed = SeverityCounts::default();
    let mut suppressed = SeverityCounts::default();
    for f in report.suites.iter().filter_map(|s| s.findings.as_ref()) {
        unsuppressed.merge(&f.counts);
        suppressed.merge(&f.suppressed);
    }
    (unsuppressed, suppressed)
}

fn insert_suite(
    tx: &Transaction,
    run: i64,
    position: usize,
    row: &SuiteRow,
) -> rusqlite::Result<i64> {
    let tests = row.tests.as_ref();
    tx.prepare_cached(
        "INSERT INTO suites (run, position, name, image, image_digest, outcome, reason, cause,
            exit_code, started_at, finished_at, duration_ms, attempts, flaky, has_findings,
            fail_on, blocking, tests, test_failures, test_errors, test_skipped)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
            ?18, ?19, ?20, ?21)",
    )?
    .execute(params![
        run,
        position as i64,
        row.name,
        row.image,
        row.image_digest,
        outcome_name(row.outcome),
        row.reason,
        row.cause,
        row.exit_code,
        row.started_at,
        row.finished_at,
        row.duration_ms,
        row.attempts,
        row.flaky,
        row.has_findings,
        row.fail_on,
        row.blocking.map(|b| b as i64),
        tests.map(|t| t.tests as i64),
        tests.map(|t| t.failures as i64),
        tests.map(|t| t.errors as i64),
        tests.map(|t| t.skipped as i64),
    ])?;
    Ok(tx.last_insert_rowid())
}

/// What the run was compared with, when it had a baseline.
fn insert_baseline(tx: &Transaction, seq: i64, report: &RunReport) -> rusqlite::Result<()> {
    let Some(baseline) = &report.baseline else {
        return Ok(());
    };
    let summary = baseline.report(&report.suites);
    let count = |n: usize| n.min(i64::MAX as usize) as i64;
    tx.execute(
        "INSERT INTO baselines (run, source, findings, new, unchanged, absent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            seq,
            summary.source,
            count(summary.findings),
            count(summary.counts.new),
            count(summary.counts.unchanged),
            count(summary.counts.absent),
        ],
    )?;
    Ok(())
}

/// Every finding of a suite through one prepared statement: the bulk of a big run's rows.
fn insert_findings(tx: &Transaction, suite: i64, f: &SuiteFindings) -> rusqlite::Result<usize> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO findings (suite, tool, rule, severity, fingerprint, path, line, message,
            suppressed, justification, baseline)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut fingerprint = String::with_capacity(24);
    for finding in &f.findings {
        use std::fmt::Write as _;
        fingerprint.clear();
        let _ = write!(fingerprint, "{}", finding.fingerprint);
        let rule = f.rule_of(finding);
        let location = finding.location.as_ref();
        insert.execute(params![
            suite,
            f.tool_of(rule).name,
            rule.id,
            finding.severity.as_str(),
            fingerprint,
            location.map(|l| l.path.as_str()),
            location
                .and_then(|l| l.start_line)
                .map(|l| l.min(i64::MAX as u64) as i64),
            finding.message,
            finding.is_suppressed(),
            finding.justification(),
            finding.baseline.map(|b| b.as_str()),
        ])?;
    }
    Ok(f.findings.len())
}

/// The estimates of this run's suites, moved by this run's durations as [`History`] does.
fn update_durations(
    tx: &Transaction,
    reports: &[SuiteReport],
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let mut known = Vec::new();
    for r in reports {
        if let Some(entry) = duration_of(tx, &r.name, &r.image)? {
            known.push(entry);
        }
    }
    let mut history = History::from_entries(known);
    history.record(reports, now);
    for entry in history.entries() {
        upsert_duration(tx, entry, true)?;
    }
    Ok(())
}

fn duration_of(tx: &Transaction, name: &str, image: &str) -> rusqlite::Result<Option<Entry>> {
    use rusqlite::OptionalExtension;
    tx.prepare_cached(
        "SELECT name, image, expected_secs, last_secs, runs, updated FROM durations
         WHERE name = ?1 AND image = ?2",
    )?
    .query_row([name, image], entry_of_row)
    .optional()
}

pub(crate) fn entry_of_row(r: &rusqlite::Row) -> rusqlite::Result<Entry> {
    Ok(Entry {
        name: r.get(0)?,
        image: r.get(1)?,
        expected_secs: r.get(2)?,
        last_secs: r.get(3)?,
        runs: r.get(4)?,
        updated: DateTime::from_timestamp_millis(r.get(5)?).unwrap_or_default(),
    })
}

fn upsert_duration(tx: &Transaction, e: &Entry, replace: bool) -> rusqlite::Result<()> {
    let verb = if replace {
        "INSERT OR REPLACE"
    } else {
        "INSERT OR IGNORE"
    };
    tx.prepare_cached(&format!(
        "{verb} INTO durations (name, image, expected_secs, last_secs, runs, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    ))?
    .execute(params![
        e.name,
        e.image,
        e.expected_secs,
        e.last_secs,
        e.runs,
        e.updated.timestamp_millis()
    ])?;
    Ok(())
}

/// Adds a history file's entries the store does not know yet, and notes the import.
pub(crate) fn import_durations(
    tx: &Transaction,
    history: &History,
    file: &Path,
) -> rusqlite::Result<usize> {
    let mut imported = 0;
    for entry in history.entries() {
        upsert_duration(tx, entry, false)?;
        imported += tx.changes() as usize;
    }
    let note = format!("{} at {}", file.display(), Utc::now().to_rfc3339());
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        [super::HISTORY_IMPORTED, note.as_str()],
    )?;
    Ok(imported)
}
