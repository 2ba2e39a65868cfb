//! The discovery supervisor as `serve` wires it: the index every feed
//! writes to, its view, and the [`Supervisor`] that starts one feed per
//! (service, registry) the rules name. The publisher owns the supervisor
//! and reconciles it when the rules change; feeds stop when the token they
//! were handed is cancelled.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::discovery::{Index, SourceOptions, Supervisor, View};

pub(super) struct Discovery {
    /// Starts and stops feeds; no feed runs until it first reconciles.
    pub supervisor: Supervisor,
    /// The merged view of every feed, for the publisher and `/status`.
    pub view: watch::Receiver<Arc<View>>,
}

impl Discovery {
    /// Relative endpoints-file paths resolve against `base_dir`; the file
    /// source polls every `file_interval`.
    pub fn new(base_dir: PathBuf, file_interval: Duration, stop: CancellationToken) -> Discovery {
        let (index, view) = Index::new();
        let sources = SourceOptions {
            file_interval,
            ..Default::default()
        };
        let supervisor = Supervisor::new(Arc::new(Mutex::new(index)), base_dir, sources, stop);
        Discovery { supervisor, view }
    }
}
