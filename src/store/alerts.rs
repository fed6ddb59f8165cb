//! The alert tables (schema 3): deliveries, their attempts, and what each channel was
//! told about each target. `crate::alerts` decides what to send; this module only keeps
//! it. No URL is ever written here: a delivery has its channel's name and the URL's
//! redacted form (`endpoint`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, Transaction, TransactionBehavior, params};
use serde::Serialize;

use super::query::{RunSummary, secs, time};
use super::{Store, StoreError};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryStatus {
    /// Queued or being sent; a server sends it again after a restart.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: the receiver refused it (4xx), retries ran out, or the channel is not
    /// configured here. What it was about is owed to the channel: the next run alerts it.
    Failed,
    /// Not sent by the deadline (`alerts_deadline`); owed like a failed one.
    Abandoned,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
        DeliveryStatus::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Abandoned => "abandoned",
        }
    }

    pub fn from_name(name: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One thing a channel can be told about a target: a finding (`scope` its suite, `key`
/// its fingerprint) or an accepted risk (`key` its scope and end date).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey {
    pub kind: String,
    pub scope: String,
    pub key: String,
}

/// What the channel knows of a [`StateKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// A delivery that told it is delivered or still pending: do not tell it again.
    Told,
    /// The delivery that should have told it failed or was abandoned: tell it again.
    Owed,
}

/// A digest to be sent, as it is recorded before the first attempt.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    /// `None` for a test message (`phalanx alerts test`).
    pub run_id: Option<&'a str>,
    pub channel: &'a str,
    /// The redacted URL.
    pub endpoint: &'a str,
    pub format: &'a str,
    pub events: &'a [&'a str],
    pub summary: &'a str,
    pub body: &'a [u8],
    /// Sent as `X-Phalanx-Delivery`, the same on every attempt.
    pub key: &'a str,
}

/// One request made for a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRow {
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// `delivered`, `rejected`, `server-error`, `rate-limited`, `timeout`, `connection`,
    /// `not-configured`, `failed`.
    pub result: String,
    pub http_status: Option<u16>,
    /// What went wrong, in one line (never the URL).
    pub detail: Option<String>,
}

/// A delivery with its attempts, for `phalanx alerts log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub run_id: Option<String>,
    pub channel: String,
    pub endpoint: String,
    pub format: String,
    pub events: Vec<String>,
    pub summary: String,
    pub status: DeliveryStatus,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempts: Vec<AttemptRow>,
}

/// A delivery still pending, with what it takes to send it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    pub id: i64,
    pub run_id: Option<String>,
    pub channel: String,
    pub format: String,
    pub summary: String,
    pub body: Vec<u8>,
    pub key: String,
    /// The number of the next attempt (after those recorded).
    pub next_attempt: u32,
}

/// Deliveries per channel and status, for metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryCount {
    pub channel: String,
    pub status: DeliveryStatus,
    pub count: u64,
}

/// The run before this one whose findings of one suite are known, for "new against the
/// previous run of the target".
#[derive(Debug, Clone, Copy)]
pub struct PreviousOf<'a> {
    pub target: &'a str,
    /// Only runs on the same branch (`None`: runs without one) are compared.
    pub branch: Option<&'a str>,
    pub run_id: &'a str,
    pub started_at: DateTime<Utc>,
}

impl Store {
    /// What `channel` was told about `target`. A delivery still pending from before
    /// `pending_since` counts as not sent: the process sending it was killed and no server
    /// took it over.
    pub fn alert_known(
        &self,
        channel: &str,
        target: &str,
        pending_since: DateTime<Utc>,
    ) -> Result<HashMap<StateKey, Known>, StoreError> {
        let since = pending_since.timestamp_millis();
        let rows = self.collect(
            "SELECT s.kind, s.scope, s.key, d.status, d.created_at FROM alert_state s
             JOIN alert_deliveries d ON d.id = s.delivery
             WHERE s.channel = ?1 AND s.target = ?2",
            params![channel, target],
            |r| {
                let key = StateKey {
                    kind: r.get(0)?,
                    scope: r.get(1)?,
                    key: r.get(2)?,
                };
                let status: String = r.get(3)?;
                let created: i64 = r.get(4)?;
                let told = match DeliveryStatus::from_name(&status) {
                    Some(DeliveryStatus::Delivered) => true,
                    Some(DeliveryStatus::Pending) => created >= since,
                    _ => false,
                };
                Ok((key, if told { Known::Told } else { Known::Owed }))
            },
        )?;
        Ok(rows.into_iter().collect())
    }

    /// The fingerprints of `suite` in the newest earlier run of the same target and branch
    /// that read its findings; `None` when there is no such run.
    pub fn previous_fingerprints(
        &self,
        of: &PreviousOf,
        suite: &str,
    ) -> Result<Option<HashSet<String>>, StoreError> {
        let found: Option<i64> = self.first(
            "SELECT s.id FROM runs r JOIN suites s ON s.run = r.seq
             WHERE r.target = ?1 AND r.git_branch IS ?2 AND r.run_id != ?3
               AND r.started_at <= ?4 AND s.name = ?5 AND s.has_findings
             ORDER BY r.started_at DESC, r.seq DESC LIMIT 1",
            params![
                of.target,
                of.branch,
                of.run_id,
                of.started_at.timestamp_millis(),
                suite
            ],
            |r| r.get(0),
        )?;
        let Some(id) = found else {
            return Ok(None);
        };
        let prints = self.collect(
            "SELECT fingerprint FROM findings WHERE suite = ?1",
            params![id],
            |r| r.get::<_, String>(0),
        )?;
        Ok(Some(prints.into_iter().collect()))
    }

    /// Records a delivery as pending, marks what it tells `channel` about `target` as
    /// told by it, and forgets `forget` (findings that are gone), in one transaction.
    pub fn queue_delivery(
        &self,
        delivery: &NewDelivery,
        target: &str,
        mark: &[StateKey],
        forget: &[StateKey],
    ) -> Result<i64, StoreError> {
        self.alert_tx(|tx| {
            let id = insert_delivery(tx, delivery)?;
            let mut upsert = tx.prepare_cached(
                "INSERT OR REPLACE INTO alert_state (channel, target, kind, scope, key, delivery)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for k in mark {
                upsert.execute(params![
                    delivery.channel,
                    target,
                    k.kind,
                    k.scope,
                    k.key,
                    id
                ])?;
            }
            forget_keys(tx, delivery.channel, target, forget)?;
            Ok(id)
        })
    }

    /// Records a test message as pending: it tells nothing and is never owed.
    pub fn queue_test_delivery(&self, delivery: &NewDelivery) -> Result<i64, StoreError> {
        self.alert_tx(|tx| insert_delivery(tx, delivery))
    }

    /// Forgets what `channel` was told about `target` for `keys` (findings that are gone,
    /// accepted risks no longer expiring), when no delivery is due.
    pub fn forget_alert_state(
        &self,
        channel: &str,
        target: &str,
        keys: &[StateKey],
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.alert_tx(|tx| forget_keys(tx, channel, target, keys))
    }

    pub fn record_attempt(&self, delivery: i64, a: &AttemptRow) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO alert_attempts
                   (delivery, attempt, started_at, duration_ms, result, http_status, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    delivery,
                    a.attempt,
                    a.started_at.timestamp_millis(),
                    a.duration.as_millis().min(i64::MAX as u128) as i64,
                    a.result,
                    a.http_status,
                    a.detail,
                ],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    pub fn finish_delivery(&self, delivery: i64, status: DeliveryStatus) -> Result<(), StoreError> {
        let finished = (status != DeliveryStatus::Pending).then(|| Utc::now().timestamp_millis());
        self.conn
            .execute(
                "UPDATE alert_deliveries SET status = ?2, finished_at = ?3 WHERE id = ?1",
                params![delivery, status.as_str(), finished],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Pending deliveries of `channels` queued after `since`, oldest first. Older pending
    /// ones are marked abandoned first: news that old is better in the next digest.
    pub fn pending_deliveries(
        &self,
        channels: &[&str],
        since: DateTime<Utc>,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        self.conn
            .execute(
                "UPDATE alert_deliveries SET status = 'abandoned', finished_at = ?2
                 WHERE status = 'pending' AND created_at < ?1",
                params![since.timestamp_millis(), Utc::now().timestamp_millis()],
            )
            .map_err(|e| self.error(e))?;
        let all = self.collect(
            "SELECT d.id, d.run_id, d.channel, d.format, d.summary, d.body, d.key,
                    (SELECT coalesce(max(attempt), 0) + 1 FROM alert_attempts WHERE delivery = d.id)
             FROM alert_deliveries d WHERE d.status = 'pending' ORDER BY d.id",
            [],
            |r| {
                Ok(PendingDelivery {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    channel: r.get(2)?,
                    format: r.get(3)?,
                    summary: r.get(4)?,
                    body: r.get(5)?,
                    key: r.get(6)?,
                    next_attempt: r.get(7)?,
                })
            },
        )?;
        Ok(all
            .into_iter()
            .filter(|p| channels.contains(&p.channel.as_str()))
            .collect())
    }

    /// Deliveries, newest first: of one run, or of all (`limit` of them).
    pub fn alert_log(
        &self,
        run: Option<&RunSummary>,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let run_id = run.map(|r| r.run_id.as_str());
        let mut rows = self.collect(
            "SELECT id, run_id, channel, endpoint, format, events, summary, status, created_at,
                    finished_at
             FROM alert_deliveries WHERE (?1 IS NULL OR run_id = ?1)
             ORDER BY created_at DESC, id DESC LIMIT ?2",
            params![run_id, limit],
            delivery_of_row,
        )?;
        for row in &mut rows {
            row.attempts = self.collect(
                "SELECT attempt, started_at, duration_ms, result, http_status, detail
                 FROM alert_attempts WHERE delivery = ?1 ORDER BY attempt",
                params![row.id],
                attempt_of_row,
            )?;
        }
        Ok(rows)
    }

    /// How many deliveries each channel has per status (for `/metrics`).
    pub fn alert_counts(&self) -> Result<Vec<DeliveryCount>, StoreError> {
        self.collect(
            "SELECT channel, status, count(*) FROM alert_deliveries
             GROUP BY channel, status ORDER BY channel, status",
            [],
            |r| {
                let status: String = r.get(1)?;
                Ok(DeliveryCount {
                    channel: r.get(0)?,
                    status: DeliveryStatus::from_name(&status).unwrap_or(DeliveryStatus::Failed),
                    count: r.get::<_, i64>(2)?.max(0) as u64,
                })
            },
        )
    }

    /// Runs `f` in a write transaction on the shared connection (`&self`, as the alert
    /// stage is handed the store after the run was recorded), taking the lock at once.
    fn alert_tx<T>(
        &self,
        f: impl FnOnce(&Transaction) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let run = |conn: &Connection| {
            let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run(&self.conn).map_err(|e| self.error(e))
    }
}

fn insert_delivery(tx: &Transaction, d: &NewDelivery) -> rusqlite::Result<i64> {
    let events = serde_json::to_string(d.events).expect("a list of words serialises");
    tx.execute(
        "INSERT INTO alert_deliveries
           (run_id, channel, endpoint, format, events, summary, body, key, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9)",
        params![
            d.run_id,
            d.channel,
            d.endpoint,
            d.format,
            events,
            d.summary,
            d.body,
            d.key,
            Utc::now().timestamp_millis(),
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

fn forget_keys(
    tx: &Transaction,
    channel: &str,
    target: &str,
    keys: &[StateKey],
) -> rusqlite::Result<()> {
    let mut delete = tx.prepare_cached(
        "DELETE FROM alert_state
         WHERE channel = ?1 AND target = ?2 AND kind = ?3 AND scope = ?4 AND key = ?5",
    )?;
    for k in keys {
        delete.execute(params![channel, target, k.kind, k.scope, k.key])?;
    }
    Ok(())
}

fn delivery_of_row(r: &Row) -> rusqlite::Result<DeliveryRow> {
    let events: String = r.get(5)?;
    let status: String = r.get(7)?;
    Ok(DeliveryRow {
        id: r.get(0)?,
        run_id: r.get(1)?,
        channel: r.get(2)?,
        endpoint: r.get(3)?,
        format: r.get(4)?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        summary: r.get(6)?,
        // A word a newer Phalanx wrote reads as failed: never as delivered.
        status: DeliveryStatus::from_name(&status).unwrap_or(DeliveryStatus::Failed),
        created_at: time(r.get(8)?),
        finished_at: r.get::<_, Option<i64>>(9)?.map(time),
        attempts: Vec::new(),
    })
}

fn attempt_of_row(r: &Row) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        attempt: r.get(0)?,
        started_at: time(r.get(1)?),
        duration: Duration::from_millis(r.get::<_, i64>(2)?.max(0) as u64),
        result: r.get(3)?,
        http_status: r.get(4)?,
        detail: r.get(5)?,
    })
}
