//! Reading the store a page at a time, for the server's API: runs newest first and a run's
//! findings most severe first, each page ending with the cursor of the next. A cursor is
//! the sort key of the last row given, so a page never repeats or skips a row when runs
//! are recorded between two requests (as an offset would).

use std::fmt;
use std::str::FromStr;

use rusqlite::params;

use super::query::{RUN_COLUMNS, RunSummary, StoredFinding, finding_of_row, run_of_row};
use super::{Store, StoreError};
use crate::findings::Severity;

/// Where the next page of runs starts: after the run with this start time and row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCursor {
    started_at: i64,
    seq: i64,
}

impl fmt::Display for RunCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}.{}", self.started_at, self.seq)
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
        let (started_at, seq) = s
            .strip_prefix('r')
            .and_then(|r| r.split_once('.'))
            .ok_or_else(bad)?;
        Ok(RunCursor {
            started_at: started_at.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// Which runs a page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// At most this many (at least 1).
    pub limit: usize,
    pub after: Option<RunCursor>,
}

/// One page of runs and the cursor of the next, if there are more.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

impl Store {
    /// Runs newest first, `query.limit` of them after `query.after`.
    pub fn runs_page(&self, query: &RunQuery) -> Result<Page<RunSummary, RunCursor>, StoreError> {
        let limit = query.limit.max(1);
        let (at, seq) = query
            .after
            .map_or((i64::MAX, i64::MAX), |c| (c.started_at, c.seq));
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE (started_at, seq) < (?1, ?2)
             ORDER BY started_at DESC, seq DESC LIMIT ?3"
        );
        // One more than asked says whether there is a next page.
        let mut runs = self.collect(&sql, params![at, seq, limit as i64 + 1], run_of_row)?;
        let more = runs.len() > limit;
        runs.truncate(limit);
        let next = more.then(|| runs.last()).flatten().map(|r| RunCursor {
            started_at: r.started_at.timestamp_millis(),
            seq: r.seq,
        });
        Ok(Page { items: runs, next })
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
