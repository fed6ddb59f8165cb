//! The run store: every `phalanx run`, its suites and its findings, in an embedded SQLite
//! database (`.phalanx/phalanx.db` by default), so runs can be listed, shown and compared
//! later (`phalanx runs`, `show`, `diff`), and the next run can start the longest suites
//! first.
//!
//! - [`Store`] opens (and migrates, see [`schema`]) the database: WAL mode so readers never
//!   wait for a writer, a busy timeout so parallel CI jobs take turns, foreign keys on so a
//!   pruned run takes its suites and findings with it;
//! - [`record`] writes a finished run in one transaction;
//! - [`query`] reads runs back, resolves `last~2` and id prefixes, and [`diff`] compares
//!   two runs' findings by fingerprint;
//! - [`view`] renders those answers as text;
//! - [`git`] reads the target's commit, branch and dirty flag from its `.git`;
//! - [`alerts`] keeps the alerts' deliveries, attempts and state (`crate::alerts`).
//!
//! A store that cannot be used is a [`StoreError`] whose one-line `Display` says what to
//! do; `phalanx run` prints it and goes on without the store.

pub mod alerts;
pub mod baseline;
pub mod diff;
pub mod error;
pub mod for_run;
pub mod git;
pub mod live;
pub mod pages;
pub mod query;
pub mod record;
pub mod schema;
pub mod view;

pub use diff::{Diff, DiffCounts, DiffFinding, NotCompared};
pub use error::{QueryError, StoreError};
pub use for_run::{Opened, RunRecorder};
pub use git::GitInfo;
pub use query::{RunDetail, RunFilter, RunSummary, StoredFinding, StoredSuite};
pub use record::{RunFacts, Selection, SuiteRow, suite_row};

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::history::History;

/// Where the store lives unless told otherwise, relative to the working directory.
pub const DEFAULT_PATH: &str = ".phalanx/phalanx.db";

/// Runs kept unless `phalanx.toml` says otherwise (`[store] keep_runs`).
pub const DEFAULT_KEEP_RUNS: usize = 500;

/// How long a writer waits for another one before giving up. Recording a run takes well
/// under a second even with tens of thousands of findings, so this covers many queued
/// parallel jobs.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `meta` key recording that a `history.json` was imported.
const HISTORY_IMPORTED: &str = "history_imported";

/// An open run store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    timeout: Duration,
}

/// What [`Store::check`] found: a store that opens, with a schema this Phalanx knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    pub path: PathBuf,
    /// The schema version in the file (0 for an empty file, migrated on first write).
    pub schema: u32,
    /// The schema version this Phalanx writes ([`schema::VERSION`]).
    pub known: u32,
    /// Runs recorded (0 for a store not yet migrated).
    pub runs: u64,
}

impl Store {
    /// Opens the store at `path`, creating it (and its folder) if needed, and migrates it
    /// to this Phalanx's schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with_timeout(path, BUSY_TIMEOUT)
    }

    /// [`Store::open`] with another busy timeout (tests use a short one).
    pub fn open_with_timeout(path: &Path, timeout: Duration) -> Result<Store, StoreError> {
        Self::open_inner(path, timeout).map_err(|e| explain_cannot_open(path, e))
    }

    fn open_inner(path: &Path, timeout: Duration) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(path, &e))?;
        }
        refuse_unwritable(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut store = Self::connect(path, flags, timeout)?;
        store.configure()?;
        let migrated = schema::migrate(&mut store.conn);
        migrated.map_err(|e| store.error(e))?;
        Ok(store)
    }

    /// Opens a store that must exist already (for `runs`, `show`, `diff`, `prune`): a
    /// missing file is [`StoreError::Missing`], not a new empty store.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Self::open(path)
    }

    /// A cheap look at the store without changing it (for `phalanx doctor`): it opens, is
    /// a SQLite database, and its schema is one this Phalanx knows.
    pub fn check(path: &Path) -> Result<StoreStatus, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let store = Self::connect(path, flags, BUSY_TIMEOUT)?;
        let found = store.schema_version()?;
        let runs = if found == 0 {
            0
        } else {
            let count = store
                .conn
                .query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0));
            count.map_err(|e| store.error(e))? as u64
        };
        Ok(StoreStatus {
            path: path.to_path_buf(),
            schema: found,
            known: schema::VERSION,
            runs,
        })
    }

    fn connect(path: &Path, flags: OpenFlags, timeout: Duration) -> Result<Store, StoreError> {
        let classify = |e| StoreError::classify(path, e, timeout.as_secs());
        let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
        conn.busy_timeout(timeout).map_err(classify)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            timeout,
        })
    }

    /// Reads the schema version, which is also the first read of the file: garbage shows
    /// here as "not a database".
    fn schema_version(&self) -> Result<u32, StoreError> {
        let found = schema::version(&self.conn).map_err(|e| self.error(e))?;
        if found > schema::VERSION {
            return Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found,
                known: schema::VERSION,
            });
        }
        Ok(found)
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        let fresh = self.schema_version()? == 0;
        let conn = &self.conn;
        // Only takes effect before the file has any page, so before WAL mode writes one;
        // lets pruning hand pages back to the file system.
        let setup = if fresh {
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        } else {
            Ok(())
        };
        let setup = setup
            .and_then(|()| conn.pragma_update(None, "foreign_keys", true))
            .and_then(|()| {
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            })
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            // After a big run's checkpoint, the WAL file shrinks back to this size.
            .and_then(|()| conn.pragma_update(None, "journal_size_limit", 8 << 20));
        setup.map_err(|e| self.error(e))
    }

    pub(crate) fn error(&self, e: rusqlite::Error) -> StoreError {
        StoreError::classify(&self.path, e, self.timeout.as_secs())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for tests and tools that read the tables directly.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Imports the durations of a `history.json` written by earlier Phalanx versions, once
    /// per store: later calls do nothing, and the file is left as it is. Durations the
    /// store already knows win. A file that cannot be read counts as imported, with the
    /// warning that says why, so the warning is given once. Returns how many entries were imported (`None` when the
    /// store had imported a file before or there is no file).
    pub fn import_history_once(
        &mut self,
        file: &Path,
    ) -> Result<Option<(usize, Option<String>)>, StoreError> {
        if self.meta(HISTORY_IMPORTED)?.is_some() || !file.exists() {
            return Ok(None);
        }
        let (history, warning) = History::load(file);
        let path = self.path.clone();
        let tx = self.write_tx()?;
        let imported = record::import_durations(&tx, &history, file)
            .map_err(|e| StoreError::classify(&path, e, BUSY_TIMEOUT.as_secs()))?;
        tx.commit().map_err(|e| self.error(e))?;
        Ok(Some((imported, warning)))
    }

    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.error(e))
    }

    /// A write transaction that takes the write lock at once, so that a read-modify-write
    /// (the duration estimates) never interleaves with another process's.
    pub(crate) fn write_tx(&mut self) -> Result<rusqlite::Transaction<'_>, StoreError> {
        let path = self.path.clone();
        let secs = self.timeout.as_secs();
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| StoreError::classify(&path, e, secs))
    }
}

/// SQLite opens a file it may not write read-only and fails later, or cannot create its
/// WAL files and says only "unable to open database file": asking the OS first gives the
/// user the real reason (read-only file system, permission, immutable file).
fn refuse_unwritable(path: &Path) -> Result<(), StoreError> {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, &e)),
    }
}

/// SQLite says only "unable to open database file" when it cannot create the `-wal` and
/// `-shm` files beside the database; when the folder refuses a new file, say that.
fn explain_cannot_open(path: &Path, error: StoreError) -> StoreError {
    let StoreError::Io { .. } = error else {
        return error;
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match tempfile::tempfile_in(dir) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            StoreError::ReadOnly {
                path: path.to_path_buf(),
                detail: format!("its folder {}: {e}", dir.display()),
            }
        }
        _ => error,
    }
}

/// Where the store is and how much of it to keep: from `--store` / `PHALANX_STORE`, else
/// `phalanx.toml`'s `[store]`, else the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub path: PathBuf,
    pub keep_runs: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            path: PathBuf::from(DEFAULT_PATH),
            keep_runs: DEFAULT_KEEP_RUNS,
        }
    }
}

#[cfg(test)]
mod tests;
