//! Durable rollout records behind a small trait: the single-node default
//! ([`FileStore`]) and, with several replicas, the leader's fenced etcd
//! store (`crate::ha::fenced`). The default, [`FileStore`], keeps every
//! record in one JSON file in `--state-dir`, replaced atomically: written
//! to a temporary file, fsynced, renamed over the old one, and the
//! directory fsynced, so a crash leaves either the old or the new file.
//!
//! The driver saves a record *before* publishing the weights it implies,
//! so after a crash the weights come back from the record: never a step
//! beyond the one saved, never a reset.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::Rollout;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a rollout state file: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// The shared store refused the write: this replica no longer leads
    /// (its election key is gone or belongs to a newer term).
    #[error("write refused: this replica is no longer the leader")]
    Fenced,
    /// Another writer (an operator's command on any replica) changed the
    /// record since this store read it; the newer record wins.
    #[error("rollout {0:?} was changed by another writer; taking the newer record")]
    Conflict(String),
    /// The shared store could not be reached or answered with an error.
    #[error("state store: {0}")]
    Remote(String),
}

/// A record as a shared store holds it: the rollout and the store's
/// revision of it (etcd's `mod_revision`), which orders the writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned {
    pub rollout: Rollout,
    pub revision: i64,
}

/// Every record of a shared store, as a replica last saw them.
pub type Shared = Arc<BTreeMap<String, Versioned>>;

/// Where rollout records live, one per service.
#[tonic::async_trait]
pub trait StateStore: Send + Sync {
    async fn load(&self) -> Result<BTreeMap<String, Rollout>, StoreError>;
    /// Saves the record of `service`; `all` holds every record after the
    /// change (a store that keeps one document writes them all).
    async fn save(&self, service: &str, all: &BTreeMap<String, Rollout>) -> Result<(), StoreError>;
    /// A shared store's records as other writers change them; `None` for
    /// a store only this process writes.
    fn shared(&self) -> Option<watch::Receiver<Shared>> {
        None
    }
    /// Of `seen`, the records newer than the ones this store last read or
    /// wrote, which it now takes as current.
    fn newer(&self, _seen: &Shared) -> Vec<(String, Rollout)> {
        Vec::new()
    }
}

/// `rollouts.json` in a directory.
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub const FILE: &'static str = "rollouts.json";

    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(Self::FILE)
    }
}

#[tonic::async_trait]
impl StateStore for FileStore {
    async fn load(&self) -> Result<BTreeMap<String, Rollout>, StoreError> {
        self.read()
    }

    async fn save(
        &self,
        _service: &str,
        all: &BTreeMap<String, Rollout>,
    ) -> Result<(), StoreError> {
        self.write(all)
    }
}

impl FileStore {
    pub fn read(&self) -> Result<BTreeMap<String, Rollout>, StoreError> {
        let path = self.path();
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => {
                return Err(StoreError::Io {
                    path: shown,
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|source| StoreError::Corrupt {
            path: shown,
            source,
        })
    }

    pub fn write(&self, all: &BTreeMap<String, Rollout>) -> Result<(), StoreError> {
        let path = self.path();
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let body = serde_json::to_vec_pretty(all).map_err(|e| io(std::io::Error::other(e)))?;
        crate::state_file::write_atomically(&path, &body).map_err(io)
    }
}

/// Keeps records in memory only (tests, and `serve` without a state dir).
#[derive(Default)]
pub struct MemoryStore(parking_lot::Mutex<BTreeMap<String, Rollout>>);

#[tonic::async_trait]
impl StateStore for MemoryStore {
    async fn load(&self) -> Result<BTreeMap<String, Rollout>, StoreError> {
        Ok(self.0.lock().clone())
    }

    async fn save(
        &self,
        _service: &str,
        all: &BTreeMap<String, Rollout>,
    ) -> Result<(), StoreError> {
        *self.0.lock() = all.clone();
        Ok(())
    }
}
