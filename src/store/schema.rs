//! The store's schema, as a list of migrations numbered by SQLite's `user_version`.
//!
//! Migration `i` (0-based) takes a database from version `i` to `i + 1`. A database is
//! only ever moved forward, in one `BEGIN IMMEDIATE` transaction, so two processes opening
//! a fresh store at once cannot both apply a step. Never edit a released step: append one.

use rusqlite::{Connection, TransactionBehavior};

/// Every step, in order. `MIGRATIONS.len()` is the version this Phalanx writes.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The schema version this Phalanx knows.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

/// Version 1: runs, their suites and their findings, expected durations, and meta facts.
///
/// Times are milliseconds since the Unix epoch (UTC): compact and sortable. `cause` is the
/// machine-readable cause of a suite's outcome as JSON; it stays NULL until the typed
/// cause exists, while `reason` keeps the human sentence.
const V1: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE runs (
    seq             INTEGER PRIMARY KEY,
    run_id          TEXT NOT NULL UNIQUE,
    phalanx_version TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER NOT NULL,
    exit_code       INTEGER NOT NULL,
    interrupted     TEXT,
    passed          INTEGER NOT NULL,
    failed          INTEGER NOT NULL,
    timed_out       INTEGER NOT NULL,
    errored         INTEGER NOT NULL,
    skipped         INTEGER NOT NULL,
    cancelled       INTEGER NOT NULL,
    invalid         INTEGER NOT NULL,
    critical        INTEGER NOT NULL,
    high            INTEGER NOT NULL,
    medium          INTEGER NOT NULL,
    low             INTEGER NOT NULL,
    info            INTEGER NOT NULL,
    suppressed      INTEGER NOT NULL,
    selection       TEXT NOT NULL,
    partition       TEXT,
    target          TEXT NOT NULL,
    git_commit      TEXT,
    git_branch      TEXT,
    git_dirty       INTEGER
);
CREATE INDEX runs_by_time ON runs (started_at, seq);
CREATE INDEX runs_by_target ON runs (target, started_at, seq);

CREATE TABLE suites (
    id            INTEGER PRIMARY KEY,
    run           INTEGER NOT NULL REFERENCES runs (seq) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    name          TEXT NOT NULL,
    image         TEXT NOT NULL,
    image_digest  TEXT,
    outcome       TEXT NOT NULL,
    reason        TEXT,
    cause         TEXT,
    exit_code     INTEGER,
    started_at    INTEGER,
    finished_at   INTEGER,
    duration_ms   INTEGER NOT NULL,
    attempts      INTEGER NOT NULL,
    flaky         INTEGER NOT NULL,
    has_findings  INTEGER NOT NULL,
    fail_on       TEXT,
    blocking      INTEGER,
    tests         INTEGER,
    test_failures INTEGER,
    test_errors   INTEGER,
    test_skipped  INTEGER
);
CREATE INDEX suites_by_run ON suites (run, position);

CREATE TABLE findings (
    id            INTEGER PRIMARY KEY,
    suite         INTEGER NOT NULL REFERENCES suites (id) ON DELETE CASCADE,
    tool          TEXT NOT NULL,
    rule          TEXT NOT NULL,
    severity      TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    path          TEXT,
    line          INTEGER,
    message       TEXT NOT NULL,
    suppressed    INTEGER NOT NULL,
    justification TEXT
);
CREATE INDEX findings_by_suite ON findings (suite);

CREATE TABLE durations (
    name          TEXT NOT NULL,
    image         TEXT NOT NULL,
    expected_secs REAL NOT NULL,
    last_secs     REAL NOT NULL,
    runs          INTEGER NOT NULL,
    updated       INTEGER NOT NULL,
    PRIMARY KEY (name, image)
) WITHOUT ROWID;
";

/// Version 2: what a run was compared with (`--baseline`), and how many of its findings
/// were new, unchanged and absent, for `phalanx show`.
const V2: &str = "
CREATE TABLE baselines (
    run       INTEGER PRIMARY KEY REFERENCES runs (seq) ON DELETE CASCADE,
    source    TEXT NOT NULL,
    findings  INTEGER NOT NULL,
    new       INTEGER NOT NULL,
    unchanged INTEGER NOT NULL,
    absent    INTEGER NOT NULL
);
";

/// Version 3: runs of `[projects.NAME]` (`phalanx serve`, `run --project`) name their
/// project, and the server keeps the runs it has queued or is running (`live_runs`) with
/// their events (`run_events`, one JSON line each as the event log writes it), so that a
/// client resumes a stream from the store and a restart shows what a crash cut off.
/// `live_runs` holds a run only until it is recorded in `runs`; `run_events` keeps the
/// events of recorded runs too, until the run is pruned.
const V3: &str = "
ALTER TABLE runs ADD COLUMN project TEXT;
CREATE INDEX runs_by_project ON runs (project, started_at, seq);

CREATE TABLE live_runs (
    run_id       TEXT PRIMARY KEY,
    project      TEXT NOT NULL,
    state        TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    started_at   INTEGER,
    selection    TEXT NOT NULL,
    target       TEXT NOT NULL,
    requested_by TEXT
);

CREATE TABLE run_events (
    run_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    body   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
";

/// Version 4: alerts (`crate::alerts`). `alert_deliveries` holds one digest message per run
/// and channel, with the body it sends (so a restarted server can send it again) and the
/// URL only in its redacted form (`endpoint`: scheme and host); `alert_attempts` every
/// request made for it; `alert_state` what each channel was told about each target's
/// findings and accepted risks, pointing at the delivery that told it, so a finding is
/// alerted once while it stays and again once it was fixed and came back.
const V4: &str = "
CREATE TABLE alert_deliveries (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT REFERENCES runs (run_id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    format      TEXT NOT NULL,
    events      TEXT NOT NULL,
    summary     TEXT NOT NULL,
    body        BLOB NOT NULL,
    key         TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX alert_deliveries_by_run ON alert_deliveries (run_id, id);
CREATE INDEX alert_deliveries_pending ON alert_deliveries (status, created_at);

CREATE TABLE alert_attempts (
    delivery    INTEGER NOT NULL REFERENCES alert_deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    result      TEXT NOT NULL,
    http_status INTEGER,
    detail      TEXT,
    PRIMARY KEY (delivery, attempt)
) WITHOUT ROWID;

CREATE TABLE alert_state (
    channel  TEXT NOT NULL,
    target   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    scope    TEXT NOT NULL,
    key      TEXT NOT NULL,
    delivery INTEGER NOT NULL REFERENCES alert_deliveries (id) ON DELETE CASCADE,
    PRIMARY KEY (channel, target, kind, scope, key)
) WITHOUT ROWID;
CREATE INDEX alert_state_by_delivery ON alert_state (delivery);
";

/// Version 5: each finding's baseline state (`new`, `unchanged`; NULL when its run had no
/// baseline), so the API can list a run's new findings without comparing runs again.
const V5: &str = "
ALTER TABLE findings ADD COLUMN baseline TEXT;
";

/// The database's schema version, as stored.
pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies the migrations the database lacks. The caller has checked that the version is
/// not newer than [`VERSION`]. Returns the version found before migrating.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<u32> {
    if version(conn)? == VERSION {
        return Ok(VERSION);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read again under the write lock: another process may have migrated meanwhile.
    let found = version(&tx)?;
    for step in MIGRATIONS.iter().skip(found as usize) {
        tx.execute_batch(step)?;
    }
    if found < VERSION {
        tx.pragma_update(None, "user_version", VERSION)?;
    }
    tx.commit()?;
    Ok(found)
}
