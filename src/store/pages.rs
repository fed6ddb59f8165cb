//! Reading the store a page at a time, for the server's API: runs newest first and a run's
//! findings most severe first, each page ending with the cursor of the next. A cursor is
//! the sort key of the last row given, so a page never repeats or skips a row when runs
//! are recorded between two requests (as an offset would).

use std::fmt;
use std::str::FromStr;

use rusqlite::params;

use super::live::{LIVE_COLUMNS, LiveRun, live_of_row};
use super::query::{RUN_COLUMNS, RunSummary, StoredFinding, finding_of_row, run_of_row};
use super::{Store, StoreError};
use crate::findings::Severity;

/// Where the next page of runs starts: after the run with this time, row and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCursor {
    at: i64,
    seq: i64,
    run_id: String,
}

impl fmt::Display for RunCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}.{}.{}", self.at, self.seq, self.run_id)
    }
}

/// A cursor that is not one this store gave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a cursor of this list: pass on the `next_cursor` of the page before")]
pub struct BadCursor(pub String);

impl FromStr for RunCursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let bad = || BadCursor(s.chars().take(64).collect());
        let mut parts = s.strip_prefix('r').ok_or_else(bad)?.splitn(3, '.');
        let (Some(at), Some(seq), Some(run_id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let id_ok = run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(bad());
        }
        Ok(RunCursor {
            at: at.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
            run_id: run_id.to_string(),
        })
    }
}

/// Which projects' runs a list may hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Projects {
    /// Every run, those made without a project too.
    #[default]
    All,
    /// Runs of these projects only.
    Only(Vec<String>),
}

/// Which runs a page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// At most this many (at least 1).
    pub limit: usize,
    pub after: Option<RunCursor>,
    pub projects: Projects,
}

/// One page and the cursor of the next, if there are more.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// A run of a list: recorded whole, or still live on the server (queued, running, or cut
/// off by the server stopping before it could be recorded).
#[derive(Debug, Clone, PartialEq)]
pub enum Listed {
    Recorded(Box<RunSummary>),
    Live(LiveRun),
}

impl Listed {
    fn key(&self) -> (i64, i64, &str) {
        match self {
            Listed::Recorded(r) => (r.started_at.timestamp_millis(), r.seq, &r.run_id),
            Listed::Live(l) => (
                l.started_at.unwrap_or(l.requested_at).timestamp_millis(),
                0,
                &l.run_id,
            ),
        }
    }
}

impl Store {
    /// Runs newest first (by start, or request for a run not started), recorded and live
    /// alike, `query.limit` of them after `query.after`. Each kind is read through its
    /// own index with the limit, so a page costs the same in a store of any size.
    pub fn runs_page(&self, query: &RunQuery) -> Result<Page<Listed, RunCursor>, StoreError> {
        let limit = query.limit.max(1);
        let (at, seq, id) = query.after.as_ref().map_or((i64::MAX, i64::MAX, ""), |c| {
            (c.at, c.seq, c.run_id.as_str())
        });
        let projects = match &query.projects {
            Projects::All => None,
            Projects::Only(names) => Some(serde_json::to_string(names).expect("names serialise")),
        };
        // One more than asked says whether there is a next page.
        let take = limit as i64 + 1;
        // (started_at, seq) is unique: the run id only orders live runs among themselves.
        let which = match projects {
            None => "?1 IS NULL",
            Some(_) => "project IN (SELECT value FROM json_each(?1))",
        };
        let recorded = self.collect(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE {which} AND (started_at, seq) < (?2, ?3)
                 ORDER BY started_at DESC, seq DESC LIMIT ?4"
            ),
            params![projects, at, seq, take],
            run_of_row,
        )?;
        let live = self.collect(
            &format!(
                "SELECT {LIVE_COLUMNS} FROM live_runs
                 WHERE (?1 IS NULL OR project IN (SELECT value FROM json_each(?1)))
                   AND (coalesce(started_at, requested_at), 0, run_id) < (?2, ?3, ?4)
                 ORDER BY coalesce(started_at, requested_at) DESC, run_id DESC LIMIT ?5"
            ),
            params![projects, at, seq, id, take],
            live_of_row,
        )?;
        let mut items: Vec<Listed> = recorded
            .into_iter()
            .map(|r| Listed::Recorded(Box::new(r)))
            .chain(live.into_iter().map(Listed::Live))
            .collect();
        items.sort_by(|a, b| b.key().cmp(&a.key()));
        let more = items.len() > limit;
        items.truncate(limit);
        let next = more.then(|| items.last()).flatten().map(|last| {
            let (at, seq, run_id) = last.key();
            RunCursor {
                at,
                seq,
                run_id: run_id.to_string(),
            }
        });
        Ok(Page { items, next })
    }

    /// The newest recorded run of each of `projects` (those with none left out).
    pub fn latest_runs(&self, projects: &[String]) -> Result<Vec<RunSummary>, StoreError> {
        let mut latest = Vec::new();
        for project in projects {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE project = ?1
                 ORDER BY started_at DESC, seq DESC LIMIT 1"
            );
            latest.extend(self.first(&sql, params![project], run_of_row)?);
        }
        Ok(latest)
    }

    /// The findings of each project's newest recorded run, counted by severity and state:
    /// `(project, severity, state, count)` (combinations without findings left out).
    pub fn latest_findings(
        &self,
    ) -> Result<Vec<(String, Severity, FindingState, u64)>, StoreError> {
        let sql = format!(
            "WITH latest AS (
                 SELECT p.project, (SELECT seq FROM runs r WHERE r.project = p.project
                                    ORDER BY started_at DESC, seq DESC LIMIT 1) AS seq
                 FROM (SELECT DISTINCT project FROM runs WHERE project IS NOT NULL) p)
             SELECT latest.project, f.severity, {STATE}, count(*)
             FROM latest JOIN suites s ON s.run = latest.seq JOIN findings f ON f.suite = s.id
             GROUP BY 1, 2, 3"
        );
        self.collect(&sql, [], |r| {
            let severity: String = r.get(1)?;
            let state: String = r.get(2)?;
            Ok((
                r.get(0)?,
                severity.parse().unwrap_or(Severity::Info),
                state.parse().unwrap_or(FindingState::New),
                r.get::<_, i64>(3)?.max(0) as u64,
            ))
        })
    }
}

/// A finding's place against its run's baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingState {
    /// Unsuppressed and not in the baseline (or the run had none).
    New,
    /// Unsuppressed and in the baseline too.
    Unchanged,
    Suppressed,
}

impl FindingState {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingState::New => "new",
            FindingState::Unchanged => "unchanged",
            FindingState::Suppressed => "suppressed",
        }
    }

    pub const ALL: [FindingState; 3] = [
        FindingState::New,
        FindingState::Unchanged,
        FindingState::Suppressed,
    ];
}

impl FromStr for FindingState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        FindingState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("expected new, unchanged or suppressed, found {s:?}"))
    }
}

/// Where the next page of findings starts: after this severity rank and row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FindingCursor {
    rank: i64,
    id: i64,
}

impl fmt::Display for FindingCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f{}.{}", self.rank, self.id)
    }
}

impl FromStr for FindingCursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let bad = || BadCursor(s.chars().take(64).collect());
        let (rank, id) = s
            .strip_prefix('f')
            .and_then(|r| r.split_once('.'))
            .ok_or_else(bad)?;
        Ok(FindingCursor {
            rank: rank.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// Which findings of a run a page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingQuery {
    /// Only these severities (empty: all).
    pub severities: Vec<Severity>,
    pub suite: Option<String>,
    pub state: Option<FindingState>,
    pub limit: usize,
    pub after: Option<FindingCursor>,
}

/// Severity as a number that sorts most severe first in SQL.
const RANK: &str = "CASE f.severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3
    WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END";

/// A finding's state in SQL, from its suppression and its recorded baseline state.
const STATE: &str = "CASE WHEN f.suppressed THEN 'suppressed'
    WHEN f.baseline = 'unchanged' THEN 'unchanged' ELSE 'new' END";

impl Store {
    /// The findings of run `seq` that `query` selects, most severe first, then in
    /// recording order.
    pub fn findings_page(
        &self,
        seq: i64,
        query: &FindingQuery,
    ) -> Result<Page<(StoredFinding, FindingState), FindingCursor>, StoreError> {
        let limit = query.limit.max(1);
        let severities: Vec<&str> = query.severities.iter().map(|s| s.as_str()).collect();
        let severities = serde_json::to_string(&severities).expect("strings serialise");
        let (rank, id) = query.after.map_or((i64::MAX, -1), |c| (c.rank, c.id));
        let sql = format!(
            "SELECT s.name, f.tool, f.rule, f.severity, f.fingerprint, f.path, f.line, f.message,
                f.suppressed, f.justification, {STATE}, {RANK}, f.id
             FROM findings f JOIN suites s ON f.suite = s.id
             WHERE s.run = ?1
               AND (?2 = '[]' OR f.severity IN (SELECT value FROM json_each(?2)))
               AND (?3 IS NULL OR s.name = ?3)
               AND (?4 IS NULL OR {STATE} = ?4)
               AND ({RANK} < ?5 OR ({RANK} = ?5 AND f.id > ?6))
             ORDER BY {RANK} DESC, f.id LIMIT ?7"
        );
        let rows = self.collect(
            &sql,
            params![
                seq,
                severities,
                query.suite,
                query.state.map(FindingState::as_str),
                rank,
                id,
                limit as i64 + 1
            ],
            |r| {
                let state: String = r.get(10)?;
                let cursor = FindingCursor {
                    rank: r.get(11)?,
                    id: r.get(12)?,
                };
                let state = state.parse().unwrap_or(FindingState::New);
                Ok((finding_of_row(r)?, state, cursor))
            },
        )?;
        let more = rows.len() > limit;
        let next = more.then(|| rows.get(limit - 1).map(|r| r.2)).flatten();
        let items = rows
            .into_iter()
            .take(limit)
            .map(|(f, state, _)| (f, state))
            .collect();
        Ok(Page { items, next })
    }
}

impl Store {
    /// The recorded run of exactly this id (no prefixes, no `last`: the CLI's shorthands).
    pub fn run_by_id(&self, run_id: &str) -> Result<Option<RunSummary>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1");
        self.first(&sql, params![run_id], run_of_row)
    }
}
