//! The sans-io xDS session: one ADS stream's protocol state.
//!
//! A [`Session`] takes requests (`on_sotw_request` / `on_delta_request`) and
//! snapshots (`on_snapshot`) and returns the responses to send plus events
//! for metrics and status. It does no I/O and reads no clock; the tonic task
//! in `server` only moves messages. The rules it follows are those of
//! Envoy's xDS protocol doc:
//!
//! - the node comes from the first request; every request names its type
//!   (ADS has no implied one: a request without `type_url` is an error
//!   that ends the stream); nonces are per stream;
//! - a request echoing the nonce of the response in flight is an ACK, or a
//!   NACK when it carries `error_detail`; a request with an older nonce is
//!   stale and ignored (SotW) or only its subscription changes are taken
//!   (delta, where every request is incremental);
//! - at most one response per type is in flight: while a type waits for its
//!   ACK, newer changes coalesce into the next response;
//! - a NACKed resource version is never sent again; the proxy keeps its last
//!   accepted version and the next push happens when the config changes;
//! - pushes go SDS → CDS → EDS → LDS → RDS; a type that must wait holds
//!   back the types after it (the RTDS runtime layer goes first and
//!   neither waits nor holds back: [`TypeUrl::ordered`]); clusters (and their endpoints) that left the snapshot
//!   are removed only once LDS and RDS are up to date and ACKed, and a
//!   cluster that changed has its endpoints sent again.

#[cfg(test)]
mod diff_tests;
mod emit;
mod held;
#[cfg(test)]
mod held_tests;
mod plan;
#[cfg(test)]
mod sds_tests;
mod subscribe;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use serde::Serialize;

use self::held::{Held, Scope};
use super::history::SnapshotDiff;
use super::resource::{DataPlane, Resource, Snapshot, TypeUrl};
use super::wire;

/// Which protocol variant a stream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Sotw,
    Delta,
}

/// NACK error details longer than this are cut (Envoy can send whole
/// exception texts; status and metrics must stay bounded). The first and
/// the last half are kept: Envoy often echoes the offending value first
/// and states the reason last.
pub const MAX_ERROR_DETAIL: usize = 1024;

/// Node metadata key that picks the node group; `node.cluster` otherwise.
pub const GROUP_METADATA_KEY: &str = "sluice_group";

/// Node metadata key that says which kind of client a node is: `grpc`
/// or `envoy` (`sluice bootstrap --grpc` writes `grpc`); without it, the
/// node's `user_agent_name` decides (see [`data_plane_of`]).
pub const CLIENT_METADATA_KEY: &str = "sluice_client";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub id: String,
    pub cluster: String,
    /// The node group whose snapshot this proxy receives.
    pub group: String,
    /// An Envoy or a proxyless gRPC client; shown only for gRPC.
    #[serde(rename = "client", skip_serializing_if = "DataPlane::is_envoy")]
    pub data_plane: DataPlane,
}

/// A response ready to be written to the stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    Sotw(wire::DiscoveryResponse),
    Delta(wire::DeltaDiscoveryResponse),
}

/// Something the driver should count or show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Sent {
        ty: TypeUrl,
        version: String,
        nonce: String,
        resources: usize,
    },
    Acked {
        ty: TypeUrl,
        version: String,
        nonce: String,
    },
    Nacked {
        ty: TypeUrl,
        version: String,
        nonce: String,
        error: String,
    },
    /// A response the server could not send (it is larger than the
    /// stream's message limit). Treated as a NACK of its resources: they
    /// are not offered again until the config changes, the proxy keeps
    /// what it has, and `error` is shown in status.
    Withheld {
        ty: TypeUrl,
        version: String,
        nonce: String,
        error: String,
    },
    /// A request for a type sluice does not serve; it is answered with
    /// nothing, as the protocol allows.
    UnknownType { type_url: String },
}

#[derive(Debug, Default, PartialEq)]
pub struct Output {
    pub responses: Vec<Response>,
    pub events: Vec<Event>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("the first request on a stream must carry a node")]
    MissingNode,
    #[error("node id must not be empty")]
    EmptyNodeId,
    /// ADS carries every type on one stream, so each request must say
    /// which it is about (only the singleton xDS services imply it).
    #[error("an ADS request must set type_url")]
    MissingTypeUrl,
}

/// Per-type state shown by `sluice status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TypeStatus {
    pub sent: Option<String>,
    pub acked: Option<String>,
    pub nack: Option<NackInfo>,
    /// Whether a response is waiting for its ACK.
    pub in_flight: bool,
}

/// One type's status read in place from the session, without copying its
/// version strings (see [`Session::type_status`]); [`TypeStatus`] is the
/// owned form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeStatusRef<'a> {
    pub sent: Option<&'a str>,
    pub acked: Option<&'a str>,
    pub nack: Option<&'a NackInfo>,
    /// Whether a response is waiting for its ACK.
    pub in_flight: bool,
}

impl TypeStatusRef<'_> {
    pub fn to_status(self) -> TypeStatus {
        TypeStatus {
            sent: self.sent.map(str::to_string),
            acked: self.acked.map(str::to_string),
            nack: self.nack.cloned(),
            in_flight: self.in_flight,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NackInfo {
    pub version: String,
    pub error: String,
    /// The rules' entities the rejected resources come from, when the
    /// error names them or the response carried one resource
    /// ([`nack_rule`](crate::xds::resource::nack_rule)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// What the proxy holds of one resource, as far as this stream knows,
/// where it differs from the snapshot (see [`held`]): the snapshot's
/// resource (name and version) shared, not copied.
#[derive(Clone, Debug)]
enum Known {
    /// Sent on this stream.
    Sent(Arc<Resource>),
    /// Only announced by the client (`initial_resource_versions`).
    Announced(Box<Announced>),
}

#[derive(Clone, Debug)]
struct Announced {
    name: Name,
    version: Box<str>,
}

impl Known {
    fn announced(name: Name, version: Box<str>) -> Known {
        Known::Announced(Box::new(Announced { name, version }))
    }
}

/// Per-resource maps are keyed by shared names (see [`Resource::key`]).
type Name = Arc<str>;

#[derive(Debug)]
struct Pending {
    nonce: String,
    version: String,
    /// `known` entries before this response, restored on NACK: the first
    /// entry of a name is what it held before (restored last).
    previous: Vec<(Name, Option<Known>)>,
    /// Every resource in the response.
    sent: Vec<Arc<Resource>>,
}

/// Where one type of a stream stands in the exchange of responses and
/// ACKs. Each variant carries only what that stage needs, so "a response
/// in flight" and "the nonce it was sent with" cannot disagree, and a type
/// that was never asked for has nothing to be in flight.
#[derive(Debug, Default)]
enum Phase {
    /// The proxy has not asked for this type on this stream: it holds
    /// nothing of it from this stream, and sluice sends it nothing.
    #[default]
    Unrequested,
    /// Asked for, nothing sent on this stream yet: the proxy holds what it
    /// announced (delta reconnect) or nothing; sluice sends as soon as the
    /// plan has something (a snapshot, a resource the proxy lacks).
    Requested,
    /// Asked for by a first wildcard request, nothing sent yet: the proxy
    /// waits for an answer to finish initialising, so sluice sends one even
    /// when it is empty.
    MustReply,
    /// A response is on its way: the proxy may be applying it, and sluice
    /// waits for its ACK or NACK before sending this type again (newer
    /// changes coalesce into the next response).
    InFlight(Pending),
    /// Every response sent was answered: the proxy holds what it accepted,
    /// and sluice sends again when the config or the subscription changes.
    /// `last_nonce` is the nonce of the last response: a SotW request
    /// echoing an older one is stale.
    Settled { last_nonce: String },
}

impl Phase {
    fn requested(&self) -> bool {
        !matches!(self, Phase::Unrequested)
    }

    fn in_flight(&self) -> bool {
        matches!(self, Phase::InFlight(_))
    }

    fn must_reply(&self) -> bool {
        matches!(self, Phase::MustReply)
    }

    /// Whether `nonce` is that of the response in flight.
    fn awaits(&self, nonce: &str) -> bool {
        matches!(self, Phase::InFlight(p) if p.nonce == nonce)
    }

    /// The nonce of the last response sent on this stream ("" before any).
    fn last_nonce(&self) -> &str {
        match self {
            Phase::InFlight(p) => &p.nonce,
            Phase::Settled { last_nonce } => last_nonce,
            Phase::Unrequested | Phase::Requested | Phase::MustReply => "",
        }
    }

    /// The response in flight, now answered; the phase becomes `Settled`.
    fn settle(&mut self) -> Option<Pending> {
        match std::mem::take(self) {
            Phase::InFlight(p) => {
                let last_nonce = p.nonce.clone();
                *self = Phase::Settled { last_nonce };
                Some(p)
            }
            other => {
                *self = other;
                None
            }
        }
    }
}

/// The versions of one type the proxy was sent, accepted and rejected, for
/// `sluice status` (whether one is in flight is the [`Phase`]).
#[derive(Debug, Default)]
struct Versions {
    sent: Option<String>,
    acked: Option<String>,
    nack: Option<NackInfo>,
}

#[derive(Debug, Default)]
struct TypeState {
    /// Asked for, awaiting an ACK, …: see [`Phase`].
    phase: Phase,
    wildcard: bool,
    /// A SotW client has named resources at least once (ends legacy
    /// wildcard semantics of an empty list).
    ever_named: bool,
    /// Explicitly subscribed names; streams that subscribe to the same set
    /// share one copy (see `subscribe::share`).
    names: Arc<BTreeSet<Name>>,
    /// What the proxy holds, by name (see [`held`]).
    known: Held,
    /// Resources to send again even if the client has this version (EDS
    /// after a cluster changed).
    force: BTreeSet<String>,
    /// (name, version) pairs the client rejected; never sent again.
    rejected: BTreeSet<(String, String)>,
    /// Delta: explicitly subscribed names already reported as absent.
    told_missing: BTreeSet<String>,
    /// What the next plan must look at.
    dirty: Dirty,
    versions: Versions,
}

/// The names whose plan may have changed since the type was last planned:
/// what a snapshot diff, a subscription change, a NACK or a changed
/// cluster touched. Every other name would plan to nothing, so a plan
/// looks only at these, and per-stream work follows what changed rather
/// than what the proxy holds. `All` after anything that is not tracked by
/// name (a snapshot without a diff, a wildcard change, the first request).
#[derive(Debug, Default)]
enum Dirty {
    #[default]
    All,
    Names(BTreeSet<String>),
}

impl Dirty {
    /// Beyond this many names, one full plan is cheaper to keep than the set.
    const MAX_NAMES: usize = 4096;

    fn insert(&mut self, name: &str) {
        if let Dirty::Names(set) = self {
            if set.len() >= Dirty::MAX_NAMES {
                *self = Dirty::All;
            } else if !set.contains(name) {
                set.insert(name.to_string());
            }
        }
    }

    /// Inserts every name of `names`, which are in order (a response's
    /// resources): into an empty set they are laid down at once, without a
    /// search per name (a stream's first clusters make every endpoint
    /// name dirty).
    fn extend_sorted(&mut self, names: &[String]) {
        match self {
            Dirty::All => {}
            Dirty::Names(set) if set.is_empty() && names.len() < Dirty::MAX_NAMES => {
                // `collect` sorts (a no-op on sorted input), then builds
                // the tree in one pass.
                *set = names.iter().cloned().collect();
            }
            Dirty::Names(_) => names.iter().for_each(|n| self.insert(n)),
        }
    }

    /// After a plan: only the names it had to hold back stay dirty.
    fn settle(&mut self, held: Vec<String>) {
        *self = Dirty::Names(held.into_iter().collect());
    }
}

impl TypeState {
    /// What `sluice status` shows of this type, if the proxy asked for it.
    fn status(&self) -> Option<TypeStatusRef<'_>> {
        self.phase.requested().then(|| TypeStatusRef {
            sent: self.versions.sent.as_deref(),
            acked: self.versions.acked.as_deref(),
            nack: self.versions.nack.as_ref(),
            in_flight: self.phase.in_flight(),
        })
    }

    fn in_scope(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// The names a base of `known` covers: what `in_scope` says.
    fn scope(&self) -> Scope {
        if self.wildcard {
            Scope::All
        } else {
            Scope::Names(self.names.clone())
        }
    }
}

pub struct Session {
    mode: Mode,
    node: Option<NodeInfo>,
    snapshot: Option<Arc<Snapshot>>,
    types: [TypeState; TypeUrl::COUNT],
    next_nonce: u64,
}

impl Session {
    pub fn new(mode: Mode) -> Session {
        Session {
            mode,
            node: None,
            snapshot: None,
            types: Default::default(),
            next_nonce: 1,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn node(&self) -> Option<&NodeInfo> {
        self.node.as_ref()
    }

    pub fn snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.snapshot.as_ref()
    }

    /// The status of one type, if the proxy has asked for it.
    pub fn type_status(&self, ty: TypeUrl) -> Option<TypeStatusRef<'_>> {
        self.types[ty.index()].status()
    }

    pub fn status(&self) -> BTreeMap<&'static str, TypeStatus> {
        TypeUrl::ALL
            .iter()
            .filter_map(|ty| Some((ty.short(), self.type_status(*ty)?.to_status())))
            .collect()
    }

    /// A new snapshot for this proxy's group: every resource is compared
    /// with what the proxy holds.
    pub fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output {
        for st in &mut self.types {
            st.dirty = Dirty::All;
        }
        self.take_snapshot(snapshot, None)
    }

    /// A new snapshot with the diff from the one this session has: only the
    /// names in the diff (and what was already pending) are compared, so
    /// the work follows the size of the change, not of the config. A diff
    /// that does not lead from this session's snapshot to `snapshot` (the
    /// stream lagged, or it is the first snapshot) is ignored and every
    /// resource is compared, as in [`Session::on_snapshot`].
    pub fn on_snapshot_diff(&mut self, snapshot: Arc<Snapshot>, diff: &SnapshotDiff) -> Output {
        let connected = self
            .snapshot
            .as_ref()
            .is_some_and(|cur| diff.connects(cur, &snapshot));
        for ty in TypeUrl::ALL {
            let st = &mut self.types[ty.index()];
            if !connected {
                st.dirty = Dirty::All;
                continue;
            }
            for name in diff.changed(ty) {
                st.dirty.insert(name);
            }
        }
        self.take_snapshot(snapshot, connected.then_some(diff))
    }

    /// `diff`, when given, leads from this session's snapshot to `snapshot`.
    fn take_snapshot(&mut self, snapshot: Arc<Snapshot>, diff: Option<&SnapshotDiff>) -> Output {
        for ty in TypeUrl::ALL {
            let st = &mut self.types[ty.index()];
            st.known.advance(&snapshot, diff.map(|d| d.changed(ty)));
            let res = snapshot.resources(ty);
            // A rejected version stays rejected only while it is current;
            // a later config that returns to it is a new push.
            st.rejected
                .retain(|(name, v)| res.get(name).is_some_and(|r| &r.version == v));
            st.force.retain(|name| res.contains_key(name));
        }
        self.snapshot = Some(snapshot);
        let mut out = Output::default();
        self.flush(&mut out);
        self.compact();
        out
    }

    /// Folds what each type holds back into a base where it has piled up
    /// as exceptions (see [`held`]); changes only memory.
    fn compact(&mut self) {
        let Some(snap) = &self.snapshot else {
            return;
        };
        for ty in TypeUrl::ALL {
            let st = &mut self.types[ty.index()];
            let scope = st.scope();
            st.known.compact(ty, snap, scope);
        }
    }

    pub fn on_sotw_request(&mut self, req: DiscoveryRequest) -> Result<Output, ProtocolError> {
        require_type_url(&req.type_url)?;
        self.take_node(req.node.as_ref())?;
        let mut out = Output::default();
        let Some(ty) = TypeUrl::parse(&req.type_url) else {
            out.events.push(Event::UnknownType {
                type_url: req.type_url,
            });
            return Ok(out);
        };
        let nonce = req.response_nonce.as_str();
        let st = &self.types[ty.index()];
        if !nonce.is_empty() {
            if st.phase.awaits(nonce) {
                let error = req.error_detail.as_ref().map(|e| e.message.clone());
                out.events.extend(self.settle(ty, error));
            } else if nonce != st.phase.last_nonce() {
                // Stale: a newer response is already on its way.
                return Ok(out);
            }
        }
        self.sotw_subscribe(ty, req.resource_names);
        self.flush(&mut out);
        self.compact();
        Ok(out)
    }

    pub fn on_delta_request(
        &mut self,
        req: DeltaDiscoveryRequest,
    ) -> Result<Output, ProtocolError> {
        require_type_url(&req.type_url)?;
        self.take_node(req.node.as_ref())?;
        let mut out = Output::default();
        let Some(ty) = TypeUrl::parse(&req.type_url) else {
            out.events.push(Event::UnknownType {
                type_url: req.type_url,
            });
            return Ok(out);
        };
        let st = &self.types[ty.index()];
        if !req.response_nonce.is_empty() && st.phase.awaits(&req.response_nonce) {
            let error = req.error_detail.as_ref().map(|e| e.message.clone());
            out.events.extend(self.settle(ty, error));
        }
        self.delta_subscribe(
            ty,
            req.resource_names_subscribe,
            req.resource_names_unsubscribe,
            req.initial_resource_versions,
        );
        self.flush(&mut out);
        self.compact();
        Ok(out)
    }

    /// Takes the proxy's identity from the `node` of its first request
    /// (later ones may omit it). A driver can call this before handing the
    /// request over, to give the session its group's snapshot first:
    /// what a reconnecting delta proxy announces is then compared with the
    /// snapshot as it is read. The request handlers call it too.
    pub fn take_node(&mut self, node: Option<&Node>) -> Result<(), ProtocolError> {
        if self.node.is_some() {
            return Ok(());
        }
        let node = node.ok_or(ProtocolError::MissingNode)?;
        if node.id.is_empty() {
            return Err(ProtocolError::EmptyNodeId);
        }
        self.node = Some(NodeInfo {
            id: node.id.clone(),
            cluster: node.cluster.clone(),
            group: group_of(node),
            data_plane: data_plane_of(node),
        });
        Ok(())
    }

    /// The response `nonce` of `ty` (the one in flight) was not sent: the
    /// driver found it too large for the stream. It is settled like a NACK
    /// with `error`, so the proxy stays on what it has and the same
    /// resources are not offered again until the config changes; what the
    /// later types need is sent.
    pub fn withhold(&mut self, ty: TypeUrl, nonce: &str, error: String) -> Output {
        let mut out = Output::default();
        let st = &self.types[ty.index()];
        if !st.phase.awaits(nonce) {
            return out;
        }
        let event = self.settle(ty, Some(error)).map(|e| match e {
            Event::Nacked {
                ty,
                version,
                nonce,
                error,
            } => Event::Withheld {
                ty,
                version,
                nonce,
                error,
            },
            other => other,
        });
        out.events.extend(event);
        self.flush(&mut out);
        self.compact();
        out
    }

    /// Whether the proxy holds its configuration: it asked for listeners
    /// (Envoy does, after clusters and endpoints) and every type it asked
    /// for has been answered (ACK or NACK) with nothing in flight.
    pub fn configured(&self) -> bool {
        self.types[TypeUrl::Listener.index()].phase.requested()
            && self.types.iter().all(|st| match st.phase {
                Phase::Unrequested => true,
                Phase::InFlight(_) => false,
                Phase::Requested | Phase::MustReply | Phase::Settled { .. } => {
                    st.versions.acked.is_some() || st.versions.nack.is_some()
                }
            })
    }

    /// ACK (no error) or NACK of the response in flight for `ty`.
    fn settle(&mut self, ty: TypeUrl, error: Option<String>) -> Option<Event> {
        let plane = self.node.as_ref().map(|n| n.data_plane).unwrap_or_default();
        let st = &mut self.types[ty.index()];
        let p = st.phase.settle()?;
        let event = match error {
            None => {
                st.versions.acked = Some(p.version.clone());
                if st.versions.nack.is_some() && st.versions.sent.as_deref() == Some(&p.version) {
                    st.versions.nack = None;
                }
                Event::Acked {
                    ty,
                    version: p.version,
                    nonce: p.nonce,
                }
            }
            Some(message) => {
                let error = cut_middle(&message, MAX_ERROR_DETAIL);
                for (name, _) in &p.previous {
                    st.dirty.insert(name);
                }
                for r in &p.sent {
                    st.dirty.insert(&r.name);
                }
                for (name, prev) in p.previous.into_iter().rev() {
                    st.known.set(&name, prev);
                }
                st.rejected
                    .extend(p.sent.iter().map(|r| (r.name.clone(), r.version.clone())));
                let rule = crate::xds::resource::nack_rule(
                    ty,
                    plane,
                    &error,
                    p.sent.iter().map(|r| r.name.as_str()),
                );
                st.versions.nack = Some(NackInfo {
                    version: p.version.clone(),
                    error: error.clone(),
                    rule,
                });
                Event::Nacked {
                    ty,
                    version: p.version,
                    nonce: p.nonce,
                    error,
                }
            }
        };
        Some(event)
    }

    /// Sends what each type needs, in make-before-break order.
    fn flush(&mut self, out: &mut Output) {
        let (Some(snap), Some(_)) = (self.snapshot.clone(), self.node.as_ref()) else {
            return;
        };
        // Stale clusters go only once listeners and routes are settled.
        // Their plans depend neither on `hold` nor on what the earlier
        // types send below, so each is made once and used twice. One
        // awaiting its ACK is busy whatever it would send.
        let mut early = [TypeUrl::Listener, TypeUrl::Route].map(|ty| {
            if self.types[ty.index()].phase.in_flight() {
                return (None, true);
            }
            let planned = self.plan(ty, &snap, false);
            let busy = !planned.plan.is_empty();
            (Some(planned), busy)
        });
        let hold = early.iter().any(|(_, busy)| *busy);
        let mut blocked = false;
        for ty in TypeUrl::ALL {
            let st = &self.types[ty.index()];
            if !st.phase.requested() {
                // Its first request plans everything anyway.
                self.types[ty.index()].dirty = Dirty::All;
                continue;
            }
            if blocked || st.phase.in_flight() {
                // It cannot be sent now; what is dirty stays dirty until
                // it can, and is planned then. Later types must not
                // overtake it if it has something to send.
                if !blocked
                    && ty.ordered()
                    && (st.phase.must_reply() || self.would_send(ty, &snap, hold))
                {
                    blocked = true;
                }
                continue;
            }
            let precomputed = match ty {
                TypeUrl::Listener => early[0].0.take(),
                TypeUrl::Route => early[1].0.take(),
                _ => None,
            };
            let planned = precomputed.unwrap_or_else(|| self.plan(ty, &snap, hold));
            let st = &mut self.types[ty.index()];
            if planned.plan.is_empty() && !st.phase.must_reply() {
                st.dirty.settle(planned.held);
                if self.mode == Mode::Delta && st.rejected.is_empty() {
                    // The proxy holds exactly this snapshot's resources (e.g.
                    // it reconnected announcing current versions): it is at
                    // this version without any response.
                    let version = snap.version(ty);
                    if st.versions.acked.as_deref() != Some(version) {
                        st.versions.sent.get_or_insert_with(|| version.to_string());
                        st.versions.acked = Some(version.to_string());
                    }
                }
                continue;
            }
            st.dirty.settle(planned.held);
            self.emit(ty, &snap, planned.plan, out);
        }
    }
}

fn require_type_url(type_url: &str) -> Result<(), ProtocolError> {
    if type_url.is_empty() {
        return Err(ProtocolError::MissingTypeUrl);
    }
    Ok(())
}

/// The node group of a proxy: node metadata `sluice_group` if it is a
/// string, else `node.cluster`, else `default`.
pub fn group_of(node: &Node) -> String {
    use envoy_types::pb::google::protobuf::value::Kind;
    let from_meta = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(GROUP_METADATA_KEY))
        .and_then(|v| match &v.kind {
            Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        });
    from_meta
        .or_else(|| (!node.cluster.is_empty()).then(|| node.cluster.clone()))
        .unwrap_or_else(|| "default".to_string())
}

/// Whether a node is a proxyless gRPC client: node metadata
/// `sluice_client` if it is `grpc` or `envoy`, else its
/// `user_agent_name`, which gRPC's xDS clients start with `gRPC` ("gRPC
/// C-core …", "gRPC Go", "gRPC Java", …) and Envoy sets to `envoy`.
pub fn data_plane_of(node: &Node) -> DataPlane {
    use envoy_types::pb::google::protobuf::value::Kind;
    let declared = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(CLIENT_METADATA_KEY))
        .and_then(|v| match &v.kind {
            Some(Kind::StringValue(s)) => match s.as_str() {
                "grpc" => Some(DataPlane::Grpc),
                "envoy" => Some(DataPlane::Envoy),
                _ => None,
            },
            _ => None,
        });
    declared.unwrap_or_else(|| {
        let agent = node.user_agent_name.as_bytes();
        if agent.len() >= 4 && agent[..4].eq_ignore_ascii_case(b"grpc") {
            DataPlane::Grpc
        } else {
            DataPlane::Envoy
        }
    })
}

/// `s` if it is at most `max` bytes, else its first and last `max / 2`
/// bytes (at char boundaries) around a marker that says how much was cut.
fn cut_middle(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut head = max / 2;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - max / 2;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} … [{} bytes cut] … {}",
        &s[..head],
        tail - head,
        &s[tail..]
    )
}
