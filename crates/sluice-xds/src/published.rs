//! What the publisher hands the xDS server: each snapshot set as
//! [`Published`], on a watch channel ([`SnapshotRx`]) that every stream
//! reads.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::history::History;
use super::resource::Snapshots;
use sluice_core::model::AccessEntry;

/// A snapshot set as published, with the time it was published (for the
/// publication → ACK latency metric) and the diffs from the last few
/// publishes, so that each stream only looks at what changed.
#[derive(Debug)]
pub struct Published {
    pub snapshots: Arc<Snapshots>,
    pub at: Instant,
    pub history: History,
    /// Who may be served (the rules' `xds_access`): each stream checks
    /// its credentials against it when its node is known and again on
    /// every publish, so a revoked entry ends the streams it allowed.
    pub access: Arc<Vec<AccessEntry>>,
}

impl Published {
    /// `snapshots` published after `prev`: diffs each group against it
    /// (once, here, for all streams) and keeps `prev`'s `Arc` for groups
    /// whose content did not change.
    pub fn after(prev: Option<&Published>, mut snapshots: Snapshots, at: Instant) -> Published {
        let history = match prev {
            Some(p) => p.history.advance(&p.snapshots, &mut snapshots),
            None => History::default(),
        };
        Published {
            snapshots: Arc::new(snapshots),
            at,
            history,
            access: Arc::default(),
        }
    }

    /// The same, allowing the streams `access` allows.
    pub fn with_access(mut self, access: Arc<Vec<AccessEntry>>) -> Published {
        self.access = access;
        self
    }
}

/// `None` until the first complete snapshot: until then streams are held
/// and nothing is sent (no partial or empty first push).
pub type SnapshotRx = watch::Receiver<Option<Arc<Published>>>;
