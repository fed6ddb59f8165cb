//! Reading the store back: the list of runs, one run in full, which run a reference such
//! as `last~2` or `3f2a` names, the expected durations, and pruning old runs.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::error::QueryError;
use super::git::GitInfo;
use super::record::{Selection, entry_of_row, outcome_from_name};
use super::{Store, StoreError};
use crate::findings::{Severity, SeverityCounts};
use crate::history::History;
use crate::outcome::Outcome;

/// Entries not refreshed for this long no longer order runs (as `history.json` did).
const FORGET_AFTER: chrono::Duration = chrono::Duration::days(90);

/// Counts of suites per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub passed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub error: u64,
    pub skipped: u64,
    pub cancelled: u64,
    /// Selected suite files that could not be read.
    pub invalid: u64,
}

/// One run as `phalanx runs` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    #[serde(skip)]
    pub seq: i64,
    pub phalanx_version: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub exit_code: i32,
    pub interrupted: Option<String>,
    pub outcomes: OutcomeCounts,
    /// Unsuppressed findings per severity.
    pub findings: SeverityCounts,
    pub suppressed: u64,
    pub selection: Selection,
    pub partition: Option<String>,
    pub target: PathBuf,
    pub git: Option<GitInfo>,
    /// The `[projects.NAME]` the run was of, if any.
    pub project: Option<String>,
}

/// One suite of a stored run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredSuite {
    #[serde(skip)]
    pub id: i64,
    pub name: String,
    pub image: String,
    pub image_digest: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// Machine-readable cause (JSON), when the recording Phalanx wrote one.
    pub cause: Option<serde_json::Value>,
    pub exit_code: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub attempts: u32,
    pub flaky: bool,
    /// SARIF results were read: its findings below are complete.
    pub has_findings: bool,
    pub fail_on: Option<Severity>,
    pub blocking: Option<u64>,
}

/// One stored finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredFinding {
    pub suite: String,
    pub tool: String,
    pub rule: String,
    pub severity: Severity,
    pub fingerprint: String,
    pub path: Option<String>,
    pub line: Option<u64>,
    pub message: String,
    pub suppressed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

/// One run with its suites and findings, for `phalanx show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunSummary,
    pub suites: Vec<StoredSuite>,
    /// Most severe first, then by suite, path and line.
    pub findings: Vec<StoredFinding>,
    /// What the run was compared with (`--baseline`), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<StoredBaseline>,
}

/// A run's comparison with its baseline, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredBaseline {
    pub source: String,
    /// Findings the baseline held.
    pub findings: u64,
    pub new: u64,
    pub unchanged: u64,
    /// Baseline findings the run did not find (fixed).
    pub absent: u64,
}

/// Which runs `phalanx runs` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub limit: Option<usize>,
    /// Only runs of this target (absolute).
    pub target: Option<PathBuf>,
}

pub(super) const RUN_COLUMNS: &str =
    "seq, run_id, phalanx_version, started_at, finished_at, exit_code,
    interrupted, passed, failed, timed_out, errored, skipped, cancelled, invalid, critical,
    high, medium, low, info, suppressed, selection, partition, target, git_commit,
    git_branch, git_dirty, project";

/// Newest first everywhere: by start time, then by recording order.
const NEWEST_FIRST: &str = "ORDER BY started_at DESC, seq DESC";

impl Store {
    /// Runs, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        let limit = filter.limit.map_or(-1, |l| l.min(i64::MAX as usize) as i64);
        let target = filter
            .target
            .as_ref()
            .map(|t| t.to_string_lossy().into_owned());
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR target = ?1) {NEWEST_FIRST} LIMIT ?2"
        );
        self.collect(&sql, params![target, limit], run_of_row)
    }

    /// Which run `reference` names: `last`, `last~N` (N runs before the newest), a full
    /// run id, or a unique start of one.
    pub fn resolve(&self, reference: &str) -> Result<RunSummary, QueryError> {
        let reference = reference.trim();
        if let Some(back) = parse_last(reference) {
            let sql = format!("SELECT {RUN_COLUMNS} FROM runs {NEWEST_FIRST} LIMIT 1 OFFSET ?1");
            let found = self.first(&sql, params![back as i64], run_of_row)?;
            return found.ok_or_else(|| self.nothing_at(reference, back));
        }
        let exact = format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1");
        if let Some(run) = self.first(&exact, params![reference], run_of_row)? {
            return Ok(run);
        }
        let prefixed = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE substr(run_id, 1, length(?1)) = ?1 \
             {NEWEST_FIRST} LIMIT 11"
        );
        let mut matches = if reference.is_empty() {
            Vec::new()
        } else {
            self.collect(&prefixed, params![reference], run_of_row)?
        };
        match matches.len() {
            0 => Err(QueryError::NotFound {
                reference: reference.to_string(),
                looked_for: "a run id or the start of one, `last` or `last~N`".into(),
            }),
            1 => Ok(matches.remove(0)),
            _ => Err(QueryError::Ambiguous {
                prefix: reference.to_string(),
                candidates: candidates(&matches),
            }),
        }
    }

    fn nothing_at(&self, reference: &str, back: u64) -> QueryError {
        match self.count_runs() {
            Ok(0) => QueryError::NoRuns {
                path: self.path.clone(),
            },
            Ok(n) => QueryError::NotFound {
                reference: reference.to_string(),
                looked_for: format!("the run {back} before the newest, but the store holds {n}"),
            },
            Err(e) => e.into(),
        }
    }

    pub fn count_runs(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .map_err(|e| self.error(e))?;
        Ok(n as u64)
    }

    /// The newest run before `run` of the same target, selection and partition.
    pub fn previous_like(&self, run: &RunSummary) -> Result<Option<RunSummary>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE target = ?1 AND selection = ?2
               AND partition IS ?3 AND (started_at, seq) < (?4, ?5) {NEWEST_FIRST} LIMIT 1"
        );
        self.first(
            &sql,
            params![
                run.target.to_string_lossy(),
                run.selection.to_json(),
                run.partition,
                run.started_at.timestamp_millis(),
                run.seq
            ],
            run_of_row,
        )
    }

    /// One run with its suites and findings.
    pub fn detail(&self, run: RunSummary) -> Result<RunDetail, StoreError> {
        let suites = self.collect(
            "SELECT id, name, image, image_digest, outcome, reason, cause, exit_code, started_at,
                duration_ms, attempts, flaky, has_findings, fail_on, blocking
             FROM suites WHERE run = ?1 ORDER BY position",
            params![run.seq],
            suite_of_row,
        )?;
        let mut findings = self.findings_of(run.seq)?;
        findings.sort_by(|a, b| {
            (b.severity, &a.suite, &a.path, a.line).cmp(&(a.severity, &b.suite, &b.path, b.line))
        });
        let baseline = self.first(
            "SELECT source, findings, new, unchanged, absent FROM baselines WHERE run = ?1",
            params![run.seq],
            |r| {
                Ok(StoredBaseline {
                    source: r.get(0)?,
                    findings: count(r, 1)?,
                    new: count(r, 2)?,
                    unchanged: count(r, 3)?,
                    absent: count(r, 4)?,
                })
            },
        )?;
        Ok(RunDetail {
            run,
            suites,
            findings,
            baseline,
        })
    }

    /// Every finding of a run, in recording order.
    pub fn findings_of(&self, seq: i64) -> Result<Vec<StoredFinding>, StoreError> {
        self.collect(
            "SELECT s.name, f.tool, f.rule, f.severity, f.fingerprint, f.path, f.line, f.message,
                f.suppressed, f.justification
             FROM findings f JOIN suites s ON f.suite = s.id
             WHERE s.run = ?1 ORDER BY f.id",
            params![seq],
            finding_of_row,
        )
    }

    /// The names of a run's suites whose findings are complete (SARIF was read).
    pub(crate) fn suites_with_findings(&self, seq: i64) -> Result<Vec<String>, StoreError> {
        self.collect(
            "SELECT name FROM suites WHERE run = ?1 AND has_findings ORDER BY position",
            params![seq],
            |r| r.get(0),
        )
    }

    /// The expected duration of every suite (per name and image) that ran to its end in
    /// the last 90 days, for [`crate::plan::longest_first`].
    pub fn expected_durations(&self) -> Result<History, StoreError> {
        let since = (Utc::now() - FORGET_AFTER).timestamp_millis();
        let entries = self.collect(
            "SELECT name, image, expected_secs, last_secs, runs, updated FROM durations
             WHERE updated >= ?1",
            params![since],
            entry_of_row,
        )?;
        Ok(History::from_entries(entries))
    }

    /// Deletes all but the newest `keep` runs, with their suites and findings, forgets
    /// stale durations, and hands the freed pages back to the file system. Returns how
    /// many runs were deleted.
    pub fn prune(&mut self, keep: usize) -> Result<usize, StoreError> {
        let keep = keep.min(i64::MAX as usize) as i64;
        let stale = (Utc::now() - FORGET_AFTER).timestamp_millis();
        let path = self.path.clone();
        let secs = self.timeout.as_secs();
        let tx = self.write_tx()?;
        let deleted = tx
            .execute(
                &format!(
                    "DELETE FROM runs WHERE seq IN
                       (SELECT seq FROM runs {NEWEST_FIRST} LIMIT -1 OFFSET ?1)"
                ),
                params![keep],
            )
            .and_then(|n| {
                tx.execute("DELETE FROM durations WHERE updated < ?1", params![stale])?;
                // Events go with their run; a live run's stay.
                tx.execute(
                    "DELETE FROM run_events WHERE run_id NOT IN (SELECT run_id FROM runs)
                       AND run_id NOT IN (SELECT run_id FROM live_runs)",
                    [],
                )?;
                tx.commit().map(|()| n)
            })
            .map_err(|e| StoreError::classify(&path, e, secs))?;
        if deleted > 0 {
            self.conn
                .execute_batch("PRAGMA incremental_vacuum")
                .map_err(|e| self.error(e))?;
        }
        Ok(deleted)
    }

    pub(super) fn collect<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnMut(&Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let run = || -> rusqlite::Result<Vec<T>> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            stmt.query_map(params, map)?.collect()
        };
        run().map_err(|e| self.error(e))
    }

    pub(super) fn first<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnOnce(&Row) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        let run = || -> rusqlite::Result<Option<T>> {
            self.conn
                .prepare_cached(sql)?
                .query_row(params, map)
                .optional()
        };
        run().map_err(|e| self.error(e))
    }
}

/// `last` → 0, `last~3` → 3; anything else is not a relative reference.
fn parse_last(reference: &str) -> Option<u64> {
    let rest = reference.strip_prefix("last")?;
    if rest.is_empty() {
        return Some(0);
    }
    rest.strip_prefix('~')?.parse().ok()
}

fn candidates(matches: &[RunSummary]) -> Vec<String> {
    let mut names: Vec<String> = matches
        .iter()
        .take(10)
        .map(|r| {
            format!(
                "{} ({})",
                r.run_id,
                r.started_at.format("%Y-%m-%d %H:%M:%S")
            )
        })
        .collect();
    if matches.len() > 10 {
        names.push("…".into());
    }
    names
}

pub(super) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn count(r: &Row, i: usize) -> rusqlite::Result<u64> {
    Ok(r.get::<_, i64>(i)?.max(0) as u64)
}

pub(super) fn run_of_row(r: &Row) -> rusqlite::Result<RunSummary> {
    let started_at = time(r.get(3)?);
    let finished_at = time(r.get(4)?);
    let commit: Option<String> = r.get(23)?;
    let branch: Option<String> = r.get(24)?;
    let dirty: Option<bool> = r.get(25)?;
    let git = (commit.is_some() || branch.is_some() || dirty.is_some()).then_some(GitInfo {
        commit,
        branch,
        dirty,
    });
    let sev = |i| count(r, i).map(|n| n as usize);
    Ok(RunSummary {
        seq: r.get(0)?,
        run_id: r.get(1)?,
        phalanx_version: r.get(2)?,
        started_at,
        finished_at,
        duration: (finished_at - started_at).to_std().unwrap_or_default(),
        exit_code: r.get(5)?,
        interrupted: r.get(6)?,
        outcomes: OutcomeCounts {
            passed: count(r, 7)?,
            failed: count(r, 8)?,
            timed_out: count(r, 9)?,
            error: count(r, 10)?,
            skipped: count(r, 11)?,
            cancelled: count(r, 12)?,
            invalid: count(r, 13)?,
        },
        findings: SeverityCounts {
            critical: sev(14)?,
            high: sev(15)?,
            medium: sev(16)?,
            low: sev(17)?,
            info: sev(18)?,
        },
        suppressed: count(r, 19)?,
        selection: Selection::from_json(&r.get::<_, String>(20)?),
        partition: r.get(21)?,
        target: PathBuf::from(r.get::<_, String>(22)?),
        git,
        project: r.get(26)?,
    })
}

fn suite_of_row(r: &Row) -> rusqlite::Result<StoredSuite> {
    let outcome: String = r.get(4)?;
    let cause: Option<String> = r.get(6)?;
    let fail_on: Option<String> = r.get(13)?;
    Ok(StoredSuite {
        id: r.get(0)?,
        name: r.get(1)?,
        image: r.get(2)?,
        image_digest: r.get(3)?,
        // A word a newer Phalanx wrote reads as an error: never as a pass.
        outcome: outcome_from_name(&outcome).unwrap_or(Outcome::Error),
        reason: r.get(5)?,
        cause: cause.and_then(|c| serde_json::from_str(&c).ok()),
        exit_code: r.get(7)?,
        started_at: r.get::<_, Option<i64>>(8)?.map(time),
        duration: Duration::from_millis(count(r, 9)?),
        attempts: r.get(10)?,
        flaky: r.get(11)?,
        has_findings: r.get(12)?,
        fail_on: fail_on.and_then(|s| s.parse().ok()),
        blocking: r.get::<_, Option<i64>>(14)?.map(|b| b.max(0) as u64),
    })
}

pub(super) fn finding_of_row(r: &Row) -> rusqlite::Result<StoredFinding> {
    let severity: String = r.get(3)?;
    Ok(StoredFinding {
        suite: r.get(0)?,
        tool: r.get(1)?,
        rule: r.get(2)?,
        severity: severity.parse().unwrap_or(Severity::Info),
        fingerprint: r.get(4)?,
        path: r.get(5)?,
        line: r.get::<_, Option<i64>>(6)?.map(|l| l.max(0) as u64),
        message: r.get(7)?,
        suppressed: r.get(8)?,
        justification: r.get(9)?,
    })
}

pub(super) fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}
