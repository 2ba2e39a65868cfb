//! Which proxies are connected and where each stands, per type: the data
//! behind `sluice status` and the admin `/status` page.
//!
//! An entry holds the stream's session itself (behind a mutex only its
//! stream task and [`Registry::list`] take), and the status is built from
//! it when listed. Streams therefore do nothing per push to keep the
//! registry current: building the status (a map of cloned version
//! strings) on every delivery, under one process-wide lock, cost ~18 % of
//! the stream tasks' CPU in B1. The process-wide map is locked only to
//! add or remove a stream and to list.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

use super::session::{Mode, NodeInfo, Session, TypeStatus, TypeStatusRef};
use super::TypeUrl;

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
    proxies: Mutex<BTreeMap<u64, Entry>>,
    /// The last [`MAX_DENIALS`] streams refused by access control.
    denials: Mutex<VecDeque<Denial>>,
}

/// Seconds since the Unix epoch, as the registry records times.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// How many refused streams `/status` lists.
pub const MAX_DENIALS: usize = 32;

/// A stream refused by access control, as `/status` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub node_id: String,
    pub group: String,
    /// The certificate's first SAN, "token", or "none".
    pub identity: String,
    pub reason: &'static str,
    /// The peer's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// A connected stream: who it is, and its session, which is asked for
/// its status only when someone lists the proxies.
#[derive(Clone)]
struct Entry {
    node: NodeInfo,
    mode: Mode,
    connected_at: u64,
    session: Arc<Mutex<Session>>,
}

// `Session` has no `Debug`; who the stream is says enough.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("node", &self.node)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Records a refused stream; the oldest is forgotten past
    /// [`MAX_DENIALS`].
    pub fn deny(&self, denial: Denial) {
        let mut denials = self.denials.lock();
        if denials.len() == MAX_DENIALS {
            denials.pop_front();
        }
        denials.push_back(denial);
    }

    /// The refused streams remembered, newest first.
    pub fn denials(&self) -> Vec<Denial> {
        self.denials.lock().iter().rev().cloned().collect()
    }

    pub fn next_stream_id(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds a stream; its status is read from `session` when listed.
    pub fn connect(&self, stream: u64, node: NodeInfo, session: Arc<Mutex<Session>>) {
        let connected_at = now_secs();
        let mode = session.lock().mode();
        let entry = Entry {
            node,
            mode,
            connected_at,
            session,
        };
        self.proxies.lock().insert(stream, entry);
    }

    pub fn disconnect(&self, stream: u64) {
        self.proxies.lock().remove(&stream);
    }

    /// Every connected proxy, ordered by node id then stream.
    pub fn list(&self) -> Vec<ProxyStatus> {
        let entries = self.entries();
        let mut all: Vec<ProxyStatus> = entries
            .into_iter()
            .map(|(stream, e)| ProxyStatus {
                stream,
                types: e.session.lock().status(),
                node: e.node,
                mode: e.mode,
                connected_at: e.connected_at,
            })
            .collect();
        all.sort_by(|a, b| (&a.node.id, a.stream).cmp(&(&b.node.id, b.stream)));
        all
    }
}

impl Registry {
    /// Calls `f` with each connected proxy's node and a look-up of its
    /// status of a type (`None` until it asks for the type), in stream
    /// order. A rollout checks the route (and runtime) ACKs of every proxy
    /// this way every 100 ms while a step spreads; building every type's
    /// status for every proxy ([`Registry::list`]) was ~12 % of sluice's
    /// CPU in B5.
    pub fn visit(
        &self,
        mut f: impl for<'s> FnMut(&'s NodeInfo, &'s dyn Fn(TypeUrl) -> Option<TypeStatusRef<'s>>),
    ) {
        // Only the sessions are copied out (a reference count each), not
        // the entries' node strings: the session has its node.
        let sessions: Vec<Arc<Mutex<Session>>> = self
            .proxies
            .lock()
            .values()
            .map(|e| e.session.clone())
            .collect();
        for session in sessions {
            let session = session.lock();
            if let Some(node) = session.node() {
                f(node, &|ty| session.type_status(ty));
            }
        }
    }

    /// The entries, copied out so that no stream waits on the
    /// process-wide lock while sessions are read.
    fn entries(&self) -> Vec<(u64, Entry)> {
        self.proxies
            .lock()
            .iter()
            .map(|(id, e)| (*id, e.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

    use super::*;
    use crate::TypeUrl;

    fn session(id: &str) -> (NodeInfo, Arc<Mutex<Session>>) {
        let mut session = Session::new(Mode::Sotw);
        let req = DiscoveryRequest {
            node: Some(Node {
                id: id.into(),
                cluster: "c".into(),
                ..Node::default()
            }),
            type_url: TypeUrl::Cluster.as_str().into(),
            ..DiscoveryRequest::default()
        };
        session.on_sotw_request(req).expect("valid request");
        let node = session.node().cloned().expect("node");
        (node, Arc::new(Mutex::new(session)))
    }

    #[test]
    fn list_shows_each_sessions_current_status_until_it_disconnects() {
        let registry = Registry::default();
        let (b, sb) = session("b");
        let (a, sa) = session("a");
        registry.connect(1, b, sb.clone());
        registry.connect(2, a, sa.clone());
        let all = registry.list();
        let ids: Vec<&str> = all.iter().map(|p| p.node.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(all[0].types.keys().copied().collect::<Vec<_>>(), ["cds"]);
        assert_eq!(all[0].mode, Mode::Sotw);

        // What the session does later shows in the next listing.
        let lds = DiscoveryRequest {
            type_url: TypeUrl::Listener.as_str().into(),
            ..DiscoveryRequest::default()
        };
        sb.lock().on_sotw_request(lds).expect("valid request");
        registry.disconnect(2);
        let all = registry.list();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].stream, 1);
        assert_eq!(
            all[0].types.keys().copied().collect::<Vec<_>>(),
            ["cds", "lds"]
        );
    }

    #[test]
    fn visit_reads_the_types_of_every_session_as_they_are_now() {
        let registry = Registry::default();
        let (a, sa) = session("a");
        let (b, sb) = session("b");
        registry.connect(1, a, sa);
        registry.connect(2, b, sb.clone());
        let seen = |ty| {
            let mut v = Vec::new();
            registry.visit(|node, st| {
                v.push((node.id.clone(), st(ty).map(|s| s.in_flight)));
            });
            v
        };
        // Both asked for clusters and are waiting for their first answer
        // (no snapshot yet): asked, nothing in flight. Nobody asked for
        // listeners.
        let none_in_flight = vec![
            ("a".to_string(), Some(false)),
            ("b".to_string(), Some(false)),
        ];
        assert_eq!(seen(TypeUrl::Cluster), none_in_flight);
        assert_eq!(
            seen(TypeUrl::Listener),
            [("a".to_string(), None), ("b".to_string(), None)]
        );
        let lds = DiscoveryRequest {
            type_url: TypeUrl::Listener.as_str().into(),
            ..DiscoveryRequest::default()
        };
        sb.lock().on_sotw_request(lds).expect("valid request");
        assert_eq!(
            seen(TypeUrl::Listener),
            [("a".to_string(), None), ("b".to_string(), Some(false))]
        );
    }
}
