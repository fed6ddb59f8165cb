//! The server's runs before they are recorded whole: queued and running runs of
//! `phalanx serve` (`live_runs`), and every event of a served run (`run_events`), so that a
//! client that reconnects is replayed what it missed and a restart shows what a crash or
//! a kill cut off.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::record::Selection;
use super::{Store, StoreError};

/// Where a live run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiveState {
    Queued,
    Running,
    /// The server stopped (a crash, a kill, a shutdown) before the run could be recorded;
    /// its events so far are kept.
    Interrupted,
}

impl LiveState {
    fn as_str(self) -> &'static str {
        match self {
            LiveState::Queued => "queued",
            LiveState::Running => "running",
            LiveState::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> LiveState {
        match text {
            "queued" => LiveState::Queued,
            "running" => LiveState::Running,
            _ => LiveState::Interrupted,
        }
    }
}

/// One row of `live_runs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveRun {
    pub run_id: String,
    pub project: String,
    pub state: LiveState,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub selection: Selection,
    pub target: PathBuf,
    /// The token that asked for it, by name.
    pub requested_by: Option<String>,
}

/// One stored event of a run: its number, and the JSON line `phalanx::event_log` writes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub kind: String,
    pub body: String,
}

pub(super) const LIVE_COLUMNS: &str =
    "run_id, project, state, requested_at, started_at, selection, target, requested_by";

impl Store {
    /// Adds a run the server has just queued.
    pub fn insert_live(&self, run: &LiveRun) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO live_runs ({LIVE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    run.run_id,
                    run.project,
                    run.state.as_str(),
                    run.requested_at.timestamp_millis(),
                    run.started_at.map(|t| t.timestamp_millis()),
                    run.selection.to_json(),
                    run.target.to_string_lossy(),
                    run.requested_by,
                ],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Moves a live run to `state`; `started_at` is set when given.
    pub fn set_live_state(
        &self,
        run_id: &str,
        state: LiveState,
        started_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE live_runs SET state = ?2, started_at = coalesce(?3, started_at)
                 WHERE run_id = ?1",
                params![
                    run_id,
                    state.as_str(),
                    started_at.map(|t| t.timestamp_millis())
                ],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Live runs, newest request first.
    pub fn live_runs(&self) -> Result<Vec<LiveRun>, StoreError> {
        let sql =
            format!("SELECT {LIVE_COLUMNS} FROM live_runs ORDER BY requested_at DESC, run_id DESC");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([], live_of_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        rows.map_err(|e| self.error(e))
    }

    pub fn live_run(&self, run_id: &str) -> Result<Option<LiveRun>, StoreError> {
        let sql = format!("SELECT {LIVE_COLUMNS} FROM live_runs WHERE run_id = ?1");
        self.conn
            .query_row(&sql, [run_id], live_of_row)
            .optional()
            .map_err(|e| self.error(e))
    }

    /// Marks every run still queued or running as interrupted: called by a server as it
    /// starts, when no run of this store can be going on. Returns how many there were.
    pub fn interrupt_live_runs(&self) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE live_runs SET state = 'interrupted' WHERE state IN ('queued', 'running')",
                [],
            )
            .map_err(|e| self.error(e))
    }

    /// Appends events of a run, in one transaction.
    pub fn append_events(
        &mut self,
        run_id: &str,
        events: &[StoredEvent],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let secs = self.timeout.as_secs();
        let tx = self.write_tx()?;
        let written = (|| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO run_events (run_id, seq, at, kind, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let now = Utc::now().timestamp_millis();
            for event in events {
                stmt.execute(params![
                    run_id,
                    event.seq as i64,
                    now,
                    event.kind,
                    event.body
                ])?;
            }
            Ok(())
        })();
        written
            .and_then(|()| tx.commit())
            .map_err(|e| StoreError::classify(&path, e, secs))
    }

    /// A run's events numbered after `after` (all of them for `None`), in order.
    pub fn events_after(
        &self,
        run_id: &str,
        after: Option<u64>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, kind, body FROM run_events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq",
            )
            .map_err(|e| self.error(e))?;
        let after = after.map_or(0, |n| n.min(i64::MAX as u64) as i64);
        let rows = stmt
            .query_map(params![run_id, after], |r| {
                Ok(StoredEvent {
                    seq: r.get::<_, i64>(0)?.max(0) as u64,
                    kind: r.get(1)?,
                    body: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        rows.map_err(|e| self.error(e))
    }
}

pub(super) fn live_of_row(r: &Row) -> rusqlite::Result<LiveRun> {
    let time = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
    Ok(LiveRun {
        run_id: r.get(0)?,
        project: r.get(1)?,
        state: LiveState::parse(&r.get::<_, String>(2)?),
        requested_at: time(r.get(3)?),
        started_at: r.get::<_, Option<i64>>(4)?.map(time),
        selection: Selection::from_json(&r.get::<_, String>(5)?),
        target: PathBuf::from(r.get::<_, String>(6)?),
        requested_by: r.get(7)?,
    })
}
