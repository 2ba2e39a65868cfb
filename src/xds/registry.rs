//! Which proxies are connected and where each stands, per type: the data
//! behind `sluice status` and the admin `/status` page.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::session::{Mode, NodeInfo, TypeStatus};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxyStatus {
    pub stream: u64,
    pub node: NodeInfo,
    pub mode: Mode,
    /// Seconds since the Unix epoch.
    pub connected_at: u64,
    /// Keyed by `cds`, `eds`, `lds`, `rds`.
    pub types: BTreeMap<&'static str, TypeStatus>,
}

#[derive(Debug, Default)]
pub struct Registry {
    next_stream: AtomicU64,
    proxies: Mutex<BTreeMap<u64, ProxyStatus>>,
}

impl Registry {
    pub fn next_stream_id(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn connect(&self, stream: u64, node: NodeInfo, mode: Mode) {
        let connected_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let status = ProxyStatus {
            stream,
            node,
            mode,
            connected_at,
            types: BTreeMap::new(),
        };
        self.lock().insert(stream, status);
    }

    pub fn update(&self, stream: u64, types: BTreeMap<&'static str, TypeStatus>) {
        if let Some(p) = self.lock().get_mut(&stream) {
            p.types = types;
        }
    }

    pub fn disconnect(&self, stream: u64) {
        self.lock().remove(&stream);
    }

    /// Every connected proxy, ordered by node id then stream.
    pub fn list(&self) -> Vec<ProxyStatus> {
        let mut all: Vec<ProxyStatus> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| (&a.node.id, a.stream).cmp(&(&b.node.id, b.stream)));
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ProxyStatus>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (each operation is one insert/remove), so poisoning is ignored.
        self.proxies.lock().unwrap_or_else(|e| e.into_inner())
    }
}
