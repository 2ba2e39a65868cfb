//! The persisted set of drains: a small JSON state file, loaded at start and
//! rewritten atomically (temp file, fsync, rename, fsync of the directory)
//! on every change, so a crash leaves either the old set or the new one.
//!
//! A change is written to disk before it is published: a drain that sluice
//! acknowledged is one it will still apply after a restart. Changes are
//! serialized by a mutex held across the write; the file is tiny and
//! changes are rare (an operator's command), so blocking on it is fine.
//!
//! With several replicas (`crate::ha`) the set lives in etcd instead: a
//! change goes through [`SharedDrains`] (a conditioned read-modify-write
//! of one document), and every replica's watch of the store hands what it
//! sees to [`DrainStore::offer`]; a set is published only when it is newer
//! (by the store's revision) than the one already published, so a replica
//! sees its own change at once and never goes back to an older one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Drain, DrainError, Drains};

/// File name of the state file inside the state directory.
pub const STATE_FILE: &str = "sluice-drains.json";

/// On-disk format, versioned so that a later format can tell it apart.
#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    drains: Vec<Drain>,
}

pub struct DrainStore {
    backend: Backend,
    tx: watch::Sender<Arc<Drains>>,
    /// The shared store's revision of the published set (0: a file).
    revision: Mutex<i64>,
}

enum Backend {
    /// The state file, and the lock that serializes its writers.
    File {
        path: PathBuf,
        write: Mutex<()>,
    },
    Shared(Arc<dyn SharedDrains>),
}

/// A change to the set: `Ok(true)` when it changed it.
pub type Edit<'a> = &'a (dyn Fn(&mut Drains) -> bool + Send + Sync);

/// A set of drains shared by several replicas (etcd).
#[tonic::async_trait]
pub trait SharedDrains: Send + Sync {
    /// Applies `edit` to the stored set, conditioned on the set not
    /// changing meanwhile; the new set and its revision, or `None` when
    /// `edit` changed nothing.
    async fn change(&self, edit: Edit<'_>) -> Result<Option<(Drains, i64)>, DrainError>;
    /// Where the set lives, for logs.
    fn describe(&self) -> String;
}

impl DrainStore {
    /// Loads `dir/sluice-drains.json`; a missing file is an empty set. A
    /// file that cannot be read or parsed is an error, not an empty set:
    /// starting without the drains would send traffic to hosts under
    /// maintenance.
    pub fn open(dir: &Path) -> Result<DrainStore, DrainError> {
        let path = dir.join(STATE_FILE);
        let drains = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|reason| state_error(&path, reason))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Drains::default(),
            Err(e) => return Err(state_error(&path, e.to_string())),
        };
        let (tx, _) = watch::channel(Arc::new(drains));
        Ok(DrainStore {
            backend: Backend::File {
                path,
                write: Mutex::new(()),
            },
            tx,
            revision: Mutex::new(0),
        })
    }

    /// A set kept in a shared store, loaded as `drains` at `revision`.
    pub fn shared(backend: Arc<dyn SharedDrains>, drains: Drains, revision: i64) -> DrainStore {
        let (tx, _) = watch::channel(Arc::new(drains));
        DrainStore {
            backend: Backend::Shared(backend),
            tx,
            revision: Mutex::new(revision),
        }
    }

    /// Where the drains live, for logs.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::File { path, .. } => path.display().to_string(),
            Backend::Shared(s) => s.describe(),
        }
    }

    /// Publishes `drains`, the shared store's set at `revision`, unless a
    /// newer one is published already.
    pub fn offer(&self, drains: Drains, revision: i64) {
        let mut at = self.revision.lock();
        if revision <= *at {
            return;
        }
        *at = revision;
        self.tx.send_if_modified(|cur| {
            let changed = **cur != drains;
            if changed {
                *cur = Arc::new(drains);
            }
            changed
        });
    }

    pub fn current(&self) -> Arc<Drains> {
        self.tx.borrow().clone()
    }

    /// Follows every published change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Drains>> {
        self.tx.subscribe()
    }

    /// Adds `d`, persists, publishes. Ok(false): it was already there.
    pub async fn add(&self, d: Drain) -> Result<bool, DrainError> {
        self.change(&|set: &mut Drains| set.add(d.clone())).await
    }

    /// Removes `d`, persists, publishes. Ok(false): it was not there.
    pub async fn remove(&self, d: &Drain) -> Result<bool, DrainError> {
        self.change(&|set: &mut Drains| set.remove(d)).await
    }

    async fn change(&self, edit: Edit<'_>) -> Result<bool, DrainError> {
        let (path, write) = match &self.backend {
            Backend::File { path, write } => (path, write),
            Backend::Shared(store) => {
                return Ok(match store.change(edit).await? {
                    Some((set, revision)) => {
                        self.offer(set, revision);
                        true
                    }
                    None => false,
                });
            }
        };
        let _guard = write.lock();
        let mut next = (*self.current()).clone();
        if !edit(&mut next) {
            return Ok(false);
        }
        crate::state_file::write_atomically(path, render(&next).as_bytes())
            .map_err(|e| state_error(path, e.to_string()))?;
        self.tx.send_replace(Arc::new(next));
        Ok(true)
    }
}

/// The shared store's document: the same versioned format as the file.
pub fn parse_document(text: &str) -> Result<Drains, String> {
    parse(text)
}

pub fn render_document(drains: &Drains) -> String {
    render(drains)
}

fn parse(text: &str) -> Result<Drains, String> {
    let file: StateFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.version != 1 {
        return Err(format!("unsupported version {}", file.version));
    }
    let mut drains = Drains::default();
    for d in file.drains {
        drains.add(d);
    }
    Ok(drains)
}

fn render(drains: &Drains) -> String {
    let file = StateFile {
        version: 1,
        drains: drains.iter().cloned().collect(),
    };
    // Serializing plain strings and numbers cannot fail.
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    text
}

fn state_error(path: &Path, reason: String) -> DrainError {
    DrainError::State {
        path: path.display().to_string(),
        reason,
    }
}
