//! Durable rollout records behind a small trait, so an HA store (etcd) can
//! replace the default later. The default, [`FileStore`], keeps every
//! record in one JSON file in `--state-dir`, replaced atomically: written
//! to a temporary file, fsynced, renamed over the old one, and the
//! directory fsynced, so a crash leaves either the old or the new file.
//!
//! The driver saves a record *before* publishing the weights it implies,
//! so after a crash the weights come back from the record: never a step
//! beyond the one saved, never a reset.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

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
}

/// Where rollout records live, one per service.
pub trait StateStore: Send + Sync {
    fn load(&self) -> Result<BTreeMap<String, Rollout>, StoreError>;
    fn save(&self, all: &BTreeMap<String, Rollout>) -> Result<(), StoreError>;
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

impl StateStore for FileStore {
    fn load(&self) -> Result<BTreeMap<String, Rollout>, StoreError> {
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

    fn save(&self, all: &BTreeMap<String, Rollout>) -> Result<(), StoreError> {
        let path = self.path();
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let body = serde_json::to_vec_pretty(all).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = self.dir.join(format!("{}.tmp", Self::FILE));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io)?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

/// Keeps records in memory only (tests, and `serve` without a state dir).
#[derive(Default)]
pub struct MemoryStore(parking_lot::Mutex<BTreeMap<String, Rollout>>);

impl StateStore for MemoryStore {
    fn load(&self) -> Result<BTreeMap<String, Rollout>, StoreError> {
        Ok(self.0.lock().clone())
    }

    fn save(&self, all: &BTreeMap<String, Rollout>) -> Result<(), StoreError> {
        *self.0.lock() = all.clone();
        Ok(())
    }
}
