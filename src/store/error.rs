//! What can go wrong with the store, each with one line saying what happened and what to do.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// A store failure. `Display` is one line: what happened to the store at `path`, and how
/// to fix it. During `phalanx run` it is a warning: the run and its reports go on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "run store {} is locked by another process and stayed locked past the {}s timeout: \
         wait for the other phalanx to finish or point --store elsewhere",
        path.display(), timeout_secs
    )]
    Locked { path: PathBuf, timeout_secs: u64 },

    #[error(
        "run store {} is not a SQLite database or is damaged ({detail}): move it aside \
         (phalanx then starts a new one) or point --store elsewhere",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },

    #[error(
        "run store {} cannot be written ({detail}): make the file and its folder writable \
         or point --store elsewhere",
        path.display()
    )]
    ReadOnly { path: PathBuf, detail: String },

    #[error(
        "run store {} was written by a newer phalanx (schema {found}, this one knows \
         {known}): upgrade phalanx or point --store elsewhere",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        known: u32,
    },

    #[error(
        "there is no run store at {} yet: `phalanx run` records one there, or --store PATH \
         / PHALANX_STORE names another",
        path.display()
    )]
    Missing { path: PathBuf },

    #[error("cannot use run store {}: {detail}: check the path or point --store elsewhere", path.display())]
    Io { path: PathBuf, detail: String },
}

impl StoreError {
    /// Sorts a SQLite or OS failure on the store at `path` into what the user can act on.
    pub fn classify(path: &Path, error: rusqlite::Error, timeout_secs: u64) -> StoreError {
        let path = path.to_path_buf();
        let detail = error.to_string();
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Locked { path, timeout_secs }
            }
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt { path, detail }
            }
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
                StoreError::ReadOnly { path, detail }
            }
            _ => StoreError::Io { path, detail },
        }
    }

    pub(crate) fn io(path: &Path, error: &std::io::Error) -> StoreError {
        let detail = error.to_string();
        let path = path.to_path_buf();
        if error.kind() == std::io::ErrorKind::ReadOnlyFilesystem
            || error.kind() == std::io::ErrorKind::PermissionDenied
        {
            StoreError::ReadOnly { path, detail }
        } else {
            StoreError::Io { path, detail }
        }
    }
}

/// Why a `runs` / `show` / `diff` question has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("the run store {} holds no runs yet", path.display())]
    NoRuns { path: PathBuf },

    #[error("no run matches `{reference}` ({looked_for})")]
    NotFound {
        reference: String,
        looked_for: String,
    },

    #[error("`{prefix}` is the start of several run ids: {}; give more of the id", candidates.join(", "))]
    Ambiguous {
        prefix: String,
        candidates: Vec<String>,
    },

    #[error(
        "no earlier run of {target} with the same selection to compare run {head} with: \
         name the base run (phalanx diff BASE [HEAD])"
    )]
    NoBase { head: String, target: String },
}

impl QueryError {
    /// DESIGN.md's codes: a question that names nothing is a usage error (2); a store that
    /// cannot be read is an infrastructure error (3), except when there is none at all.
    pub fn exit_code(&self) -> u8 {
        match self {
            QueryError::Store(StoreError::Missing { .. }) => 2,
            QueryError::Store(_) => 3,
            _ => 2,
        }
    }
}
