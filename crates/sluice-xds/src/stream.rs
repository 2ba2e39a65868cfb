//! The task that owns one ADS stream: it moves requests and published
//! snapshots into its [`Session`] and the session's responses to the
//! client, and records what happened (metrics, the registry entry). It
//! computes nothing itself.
//!
//! Every push runs this once per stream, so the bookkeeping around the
//! session is kept small: metric series are pre-created handles (an
//! atomic add per event), the registry reads the session's status when it
//! is listed instead of being sent a copy after every delivery (the
//! session sits behind a mutex that only this task and the registry take),
//! and the publication time of an in-flight response is kept per type (at
//! most one response per type is in flight) instead of in a map keyed by
//! nonce.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{debug, error, info, warn};

use super::access::{self, Credentials, DenyReason, Grant};
use super::admission::Limits;
use super::grpc_body::Requests;
use super::metrics::XdsMetrics;
use super::published::{FanOut, Published, SnapshotRx};
use super::registry::{now_secs, Denial, Registry};
use super::resource::{Snapshot, TypeUrl};
use super::session::{Event, Mode, NodeInfo, Output, ProtocolError, Response, Session};
use super::wire;
use sluice_core::rules::shown;

/// What every stream task shares: the published snapshots, the registry
/// of connected proxies, the metrics, the shutdown token and the limits.
pub struct Shared {
    pub snapshots: SnapshotRx,
    pub registry: Arc<Registry>,
    pub metrics: XdsMetrics,
    /// Cancelled on shutdown: every stream ends, then the server returns.
    pub shutdown: CancellationToken,
    pub limits: Limits,
    pub security: StreamSecurity,
}

/// How the server authenticates streams (see `xds::access`).
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamSecurity {
    /// Client certificates are verified against a CA (`--xds-client-ca`):
    /// access control is in force even without `xds_access` entries.
    pub client_ca: bool,
    /// Serve secrets to unauthenticated streams too (`--xds-insecure`).
    pub insecure: bool,
}

/// Who a stream's peer is, as the transport and its headers say.
#[derive(Clone, Debug, Default)]
pub struct PeerCredentials {
    pub creds: Credentials,
    pub remote: Option<std::net::SocketAddr>,
}

/// Glue between one protocol variant's message types and the session.
pub(super) trait Variant: Send + 'static {
    type Resp: Send + prost::Message + 'static;
    fn node(&self) -> Option<&Node>;
    fn handle(session: &mut Session, req: Self) -> Result<Output, ProtocolError>;
    fn unwrap(resp: Response) -> Option<Self::Resp>;
    /// Type, nonce and number of resources (upserts and removals).
    fn summary(resp: &Self::Resp) -> (&str, &str, usize);
}

impl Variant for DiscoveryRequest {
    type Resp = wire::DiscoveryResponse;
    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }
    fn handle(session: &mut Session, req: Self) -> Result<Output, ProtocolError> {
        session.on_sotw_request(req)
    }
    fn unwrap(resp: Response) -> Option<Self::Resp> {
        match resp {
            Response::Sotw(r) => Some(r),
            Response::Delta(_) => None,
        }
    }
    fn summary(r: &Self::Resp) -> (&str, &str, usize) {
        (&r.type_url, &r.nonce, r.resources.len())
    }
}

impl Variant for DeltaDiscoveryRequest {
    type Resp = wire::DeltaDiscoveryResponse;
    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }
    fn handle(session: &mut Session, req: Self) -> Result<Output, ProtocolError> {
        session.on_delta_request(req)
    }
    fn unwrap(resp: Response) -> Option<Self::Resp> {
        match resp {
            Response::Delta(r) => Some(r),
            Response::Sotw(_) => None,
        }
    }
    fn summary(r: &Self::Resp) -> (&str, &str, usize) {
        (
            &r.type_url,
            &r.nonce,
            r.resources.len() + r.removed_resources.len(),
        )
    }
}

/// What a stream task queues for its client. Boxed: tokio's channel
/// allocates its slots 32 at a time, and a `Status` makes the unboxed item
/// ~180 bytes, 4.6 KB per idle stream (docs/benchmarks.md, B4).
pub(super) type Outgoing<T> = Box<Result<T, Status>>;

pub(super) struct StreamTask<Resp> {
    shared: Arc<Shared>,
    id: u64,
    mode: Mode,
    /// Shared with the registry, which reads its status when listed.
    session: Arc<Mutex<Session>>,
    tx: mpsc::Sender<Outgoing<Resp>>,
    /// The group snapshot the session has, to skip no-op republishes.
    current: Option<Arc<Snapshot>>,
    /// Per type: the nonce in flight and the publication time of the
    /// snapshot it carries (for the publication → ACK latency).
    sent_at: [Option<(String, Instant)>; TypeUrl::COUNT],
    published_at: Option<Instant>,
    /// The proxy, once its first request named it (it is then in the
    /// registry).
    node: Option<NodeInfo>,
    /// The admission slot, until the proxy is configured or the hold
    /// time is up (see `admission`).
    slot: Option<OwnedSemaphorePermit>,
    peer: PeerCredentials,
    /// Whether this stream was told (logged, counted) that its group's
    /// secrets are withheld.
    secrets_withheld: bool,
    /// The publishes' fan-out this stream counts itself in, once its node
    /// is known and something was published.
    fanout: Option<Arc<FanOut>>,
    /// What access control last decided (`None` before the node and the
    /// first snapshot are known).
    grant: Option<Grant>,
}

impl<Resp: Send + prost::Message + 'static> StreamTask<Resp> {
    pub(super) fn new(
        shared: Arc<Shared>,
        mode: Mode,
        tx: mpsc::Sender<Outgoing<Resp>>,
        slot: OwnedSemaphorePermit,
        peer: PeerCredentials,
    ) -> Self {
        let id = shared.registry.next_stream_id();
        StreamTask {
            shared,
            id,
            mode,
            session: Arc::new(Mutex::new(Session::new(mode))),
            tx,
            current: None,
            sent_at: Default::default(),
            published_at: None,
            node: None,
            slot: Some(slot),
            peer,
            secrets_withheld: false,
            fanout: None,
            grant: None,
        }
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock()
    }

    /// Runs the stream until the client ends it, or `end` (its connection
    /// drains: the connection's age, or shutdown), which ends it with OK.
    pub(super) async fn run<Req>(mut self, mut incoming: Requests<Req>, end: CancellationToken)
    where
        Req: Variant<Resp = Resp> + prost::Message + Default,
    {
        let mut snapshots = self.shared.snapshots.clone();
        let shutdown = end;
        let hold_until = tokio::time::Instant::now() + self.shared.limits.admission_hold;
        loop {
            let keep_going = tokio::select! {
                _ = shutdown.cancelled() => false,
                _ = tokio::time::sleep_until(hold_until), if self.slot.is_some() => {
                    self.slot = None;
                    true
                }
                msg = incoming.message() => match msg {
                    Ok(Some(req)) => self.on_request(req, &mut snapshots).await,
                    Ok(None) => false,
                    Err(status) => {
                        debug!(stream = self.id, %status, "stream ended with error");
                        false
                    }
                },
                changed = snapshots.changed() => match changed {
                    Ok(()) => self.on_publish::<Req>(&mut snapshots).await,
                    Err(_) => false,
                },
            };
            if !keep_going {
                break;
            }
        }
        self.close();
    }

    async fn on_request<Req>(&mut self, req: Req, snapshots: &mut SnapshotRx) -> bool
    where
        Req: Variant<Resp = Resp>,
    {
        if self.node.is_none() {
            // The first request names the proxy: it is authorized, listed
            // and given its group's snapshot before the request is read,
            // so a reconnecting delta proxy's announcements are compared
            // with the snapshot at once (not stored name by name first).
            let identified = self.session().take_node(req.node());
            if let Err(e) = identified {
                return self.protocol_error(e).await;
            }
            if !self.on_identified::<Req>(snapshots).await {
                return false;
            }
        }
        let handled = Req::handle(&mut self.session(), req);
        let out = match handled {
            Ok(out) => out,
            Err(e) => return self.protocol_error(e).await,
        };
        if !self.deliver::<Req>(out).await {
            return false;
        }
        if self.current.is_none() {
            // Nothing was published when the node came: now there may be.
            return self.on_publish::<Req>(snapshots).await;
        }
        true
    }

    /// Ends the stream on a request that breaks the protocol.
    async fn protocol_error(&mut self, e: ProtocolError) -> bool {
        warn!(stream = self.id, error = %e, "closing stream");
        let _ = self
            .tx
            .send(Box::new(Err(Status::invalid_argument(e.to_string()))))
            .await;
        false
    }

    /// The session knows its node now: refused (before anything is sent
    /// or listed), or listed and given its group's snapshot.
    async fn on_identified<Req>(&mut self, snapshots: &mut SnapshotRx) -> bool
    where
        Req: Variant<Resp = Resp>,
    {
        let Some(node) = self.session().node().cloned() else {
            return true;
        };
        let published = snapshots.borrow().clone();
        if let Some(published) = published {
            match self.decide(&node, &published) {
                Ok(grant) => self.grant = Some(grant),
                Err(reason) => return self.refuse(reason, &node).await,
            }
        }
        info!(stream = self.id, node = %node.id, group = %node.group,
              mode = ?self.mode, client = ?node.data_plane, identity = self.peer.creds.shown(),
              "proxy connected");
        self.shared
            .registry
            .connect(self.id, node.clone(), self.session.clone());
        self.node = Some(node);
        self.shared.metrics.connected(self.mode).inc();
        self.on_publish::<Req>(snapshots).await
    }

    async fn on_publish<Req>(&mut self, snapshots: &mut SnapshotRx) -> bool
    where
        Req: Variant<Resp = Resp>,
    {
        let published = snapshots.borrow_and_update().clone();
        let Some(published) = published else {
            return true;
        };
        let Some(node) = &self.node else {
            return true;
        };
        // Again on every publish: an edit of `xds_access` can revoke.
        match self.decide(node, &published) {
            Ok(grant) => self.grant = Some(grant),
            Err(reason) => {
                let node = node.clone();
                return self.refuse(reason, &node).await;
            }
        }
        let (lineage, snap) = published.snapshots.select(node.data_plane, &node.group);
        let snap = snap.clone();
        // The publisher keeps the `Arc` of an unchanged group, and a diff
        // says what changed since the snapshot this stream has.
        if self.fanout.is_none() {
            published.fanout.joined();
            self.fanout = Some(published.fanout.clone());
        }
        let diff = match &self.current {
            Some(c) if Arc::ptr_eq(c, &snap) => {
                published.fanout.took(published.seq);
                return true;
            }
            Some(c) => published.history.diff(lineage, c, &snap),
            None => None,
        };
        self.current = Some(snap.clone());
        self.published_at = Some(published.at);
        let out = match self.without_secrets(&snap) {
            // Its own snapshot never connects to the history's diffs:
            // every resource is compared (unauthenticated streams only).
            Some(stripped) => self.session().on_snapshot(stripped),
            None => match diff {
                Some(diff) => self.session().on_snapshot_diff(snap, &diff),
                None => self.session().on_snapshot(snap),
            },
        };
        // Taken: what is left is writing, which a slow client may hold up.
        published.fanout.took(published.seq);
        self.deliver::<Req>(out).await
    }

    /// The stream's credentials against `published.access` for `node`.
    fn decide(&self, node: &NodeInfo, published: &Published) -> Result<Grant, DenyReason> {
        access::authorize(
            &published.access,
            self.shared.security.client_ca,
            &self.peer.creds,
            &node.id,
            &node.group,
        )
    }

    /// Refuses the stream: tells the client PERMISSION_DENIED, records and
    /// counts the refusal; returns false (the stream ends).
    async fn refuse(&mut self, reason: DenyReason, node: &NodeInfo) -> bool {
        // What the client claims is theirs: cut, and logged escaped.
        let identity = shown(self.peer.creds.shown()).into_owned();
        let (node_id, group) = (
            shown(&node.id).into_owned(),
            shown(&node.group).into_owned(),
        );
        let remote = self.peer.remote.map(|r| r.to_string());
        warn!(stream = self.id, node = ?node_id, group = ?group, identity = ?identity,
              remote = remote.as_deref().unwrap_or(""), %reason, "xDS stream refused");
        self.shared.metrics.deny(reason);
        self.shared.registry.deny(Denial {
            at: now_secs(),
            node_id,
            group,
            identity: identity.clone(),
            reason: reason.as_str(),
            remote,
        });
        let status = Status::permission_denied(denied_message(reason, &identity, node));
        let _ = self.tx.send(Box::new(Err(status))).await;
        false
    }

    /// `snap` without its secrets when this stream may not have them (not
    /// authenticated, and `--xds-insecure` not given); `None` when it may
    /// have `snap` as it is.
    fn without_secrets(&mut self, snap: &Arc<Snapshot>) -> Option<Arc<Snapshot>> {
        let open = self.grant != Some(Grant::Authenticated) && !self.shared.security.insecure;
        if !open || snap.resources(TypeUrl::Secret).is_empty() {
            return None;
        }
        if !self.secrets_withheld {
            self.secrets_withheld = true;
            warn!(stream = self.id, "not sending secrets to an unauthenticated stream; authenticate it (docs/security.md) or serve with --xds-insecure");
            self.shared.metrics.secrets_withheld.inc();
        }
        Some(Arc::new(snap.without(TypeUrl::Secret)))
    }

    /// Sends the responses, records events; false once the client is gone.
    /// A response larger than the message limit is withheld instead (the
    /// session settles it like a NACK, which may free later types).
    async fn deliver<Req>(&mut self, out: Output) -> bool
    where
        Req: Variant<Resp = Resp>,
    {
        // Empty unless a response is withheld: no allocation per push.
        let mut withheld = VecDeque::new();
        let mut next = Some(out);
        while let Some(Output { responses, events }) = next.take().or_else(|| withheld.pop_front())
        {
            for event in events {
                self.record(event);
            }
            for resp in responses {
                let Some(resp) = Req::unwrap(resp) else {
                    continue;
                };
                let size = resp.encoded_len();
                let limit = self.shared.limits.max_message_bytes;
                if size > limit {
                    withheld.push_back(self.withhold::<Req>(&resp, size, limit));
                    continue;
                }
                if self.tx.send(Box::new(Ok(resp))).await.is_err() {
                    return false;
                }
            }
        }
        if self.node.is_some() && self.slot.is_some() && self.session().configured() {
            // The initial configuration is done: let the next stream in.
            self.slot = None;
        }
        true
    }

    /// Settles a response too large to send; see [`Session::withhold`].
    fn withhold<Req>(&mut self, resp: &Resp, size: usize, limit: usize) -> Output
    where
        Req: Variant<Resp = Resp>,
    {
        let (type_url, nonce, count) = Req::summary(resp);
        let Some(ty) = TypeUrl::parse(type_url) else {
            return Output::default();
        };
        let error = format!(
            "sluice: {count} {ty} resources encode to {size} bytes, over the {limit}-byte gRPC message limit; not sent"
        );
        self.session().withhold(ty, nonce, error)
    }

    fn record(&mut self, event: Event) {
        let metrics = &self.shared.metrics;
        let node = self.node.as_ref().map(|n| n.id.as_str()).unwrap_or("");
        match event {
            Event::Sent { ty, nonce, .. } => {
                metrics.of(ty).pushes.inc();
                self.sent_at[ty.index()] = self.published_at.map(|at| (nonce, at));
            }
            Event::Acked { ty, nonce, .. } => {
                let m = metrics.of(ty);
                m.acks.inc();
                if let Some(at) = take_sent(&mut self.sent_at, ty, &nonce) {
                    m.push_latency.observe(at.elapsed().as_secs_f64());
                }
            }
            Event::Nacked {
                ty,
                version,
                nonce,
                error,
            } => {
                metrics.of(ty).nacks.inc();
                take_sent(&mut self.sent_at, ty, &nonce);
                warn!(stream = self.id, node, r#type = %ty, version, error, "proxy rejected config");
            }
            Event::Withheld {
                ty,
                version,
                nonce,
                error,
            } => {
                metrics.of(ty).oversized_responses.inc();
                take_sent(&mut self.sent_at, ty, &nonce);
                error!(stream = self.id, node, r#type = %ty, version, error, "response withheld; the proxy keeps its config");
            }
            Event::UnknownType { type_url } => {
                debug!(
                    stream = self.id,
                    type_url, "request for a type sluice does not serve"
                );
            }
        }
    }

    fn close(&mut self) {
        if let Some(node) = &self.node {
            self.shared.registry.disconnect(self.id);
            self.shared.metrics.connected(self.mode).dec();
            info!(stream = self.id, node = %node.id, "proxy disconnected");
        }
    }
}

impl<Resp> Drop for StreamTask<Resp> {
    fn drop(&mut self) {
        // However the task ends (closed, or dropped with its connection).
        if let Some(fanout) = self.fanout.take() {
            fanout.left();
        }
    }
}

/// What a refused client is told: the reason and what it presented, never
/// what it would have needed.
fn denied_message(reason: DenyReason, identity: &str, node: &NodeInfo) -> String {
    let what = match reason {
        DenyReason::NoCredentials => {
            "no client certificate or bearer token was presented".to_string()
        }
        DenyReason::UnknownIdentity => format!("identity {identity:?} is not allowed"),
        DenyReason::UnknownToken => "the bearer token is not allowed".to_string(),
        DenyReason::GroupNotAllowed => format!("{identity:?} may not join group {:?}", node.group),
        DenyReason::NodeIdNotAllowed => format!("{identity:?} may not claim node id {:?}", node.id),
    };
    format!("sluice: xDS access denied ({reason}): {what}")
}

/// Takes the publication time recorded for `nonce` of `ty`, if that is the
/// response in flight.
fn take_sent(
    sent_at: &mut [Option<(String, Instant)>; TypeUrl::COUNT],
    ty: TypeUrl,
    nonce: &str,
) -> Option<Instant> {
    let slot = &mut sent_at[ty.index()];
    match slot {
        Some((n, _)) if n == nonce => slot.take().map(|(_, at)| at),
        _ => None,
    }
}
