//! The store connections the handlers read through. A SQLite connection serves one thread
//! at a time, and opening one costs a few pragmas, so a few are kept and lent out: each
//! read runs on tokio's blocking pool with a connection of its own (WAL lets readers go
//! on while a run is being recorded).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::store::{QueryError, Store, StoreError};

/// Connections kept for reuse; more may be open at once under load, the rest are closed.
const KEEP: usize = 8;

/// Why a read found no answer, as the handlers need to tell it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The question named nothing (no such run).
    #[error("{0}")]
    NotFound(String),
    /// The store itself failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<QueryError> for ReadError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Store(e) => ReadError::Store(e),
            other => ReadError::NotFound(other.to_string()),
        }
    }
}

pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Store>>,
    /// Called with every store failure (the metrics count them).
    on_error: Box<dyn Fn(&StoreError) + Send + Sync>,
}

impl Readers {
    /// Readers of the store at `path`, which is opened (created and migrated if needed)
    /// once here, so that a store that cannot be used stops the server at its start.
    pub fn open(
        path: &Path,
        on_error: impl Fn(&StoreError) + Send + Sync + 'static,
    ) -> Result<Arc<Readers>, StoreError> {
        let first = Store::open(path)?;
        Ok(Arc::new(Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(vec![first]),
            on_error: Box::new(on_error),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `read` with a connection, on the blocking pool.
    pub async fn read<T, F>(self: &Arc<Self>, read: F) -> Result<T, ReadError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ReadError> + Send + 'static,
    {
        let readers = Arc::clone(self);
        let joined = tokio::task::spawn_blocking(move || {
            let store = readers.take()?;
            let answer = read(&store);
            readers.give_back(store);
            answer
        })
        .await;
        let answer = joined.unwrap_or_else(|e| {
            Err(ReadError::Store(StoreError::Io {
                path: self.path.clone(),
                detail: format!("a read of the store failed: {e}"),
            }))
        });
        if let Err(ReadError::Store(e)) = &answer {
            (self.on_error)(e);
        }
        answer
    }

    fn take(&self) -> Result<Store, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(store) => Ok(store),
            None => Store::open(&self.path),
        }
    }

    fn give_back(&self, store: Store) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < KEEP
        {
            idle.push(store);
        }
    }
}
