//! Encoded Envoy resources and per-node-group snapshots.
//!
//! `compile` produces a [`Snapshot`] per node group. Each resource is encoded
//! to protobuf bytes once, here, and every stream that sends it clones the
//! `Arc`/`Bytes`, never the payload. Versions are content hashes, so the same
//! input gives the same version strings in any process.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

use crate::digest::content_hash;

/// The six resource types sluice serves, in the order pushes follow:
/// the RTDS runtime layer, then make-before-break SDS, CDS, EDS, LDS, RDS.
/// Runtime comes first because Envoy asks for its RTDS layers before it
/// initialises clusters; it is outside the ordering (see
/// [`TypeUrl::ordered`]). Secrets come before clusters (upstream TLS) and
/// listeners (TLS termination), which reference them by name; a proxy asks
/// for a secret only once it holds what references it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TypeUrl {
    Runtime,
    Secret,
    Cluster,
    Endpoint,
    Listener,
    Route,
}

impl TypeUrl {
    /// All types in the order pushes must follow.
    pub const ALL: [TypeUrl; TypeUrl::COUNT] = [
        TypeUrl::Runtime,
        TypeUrl::Secret,
        TypeUrl::Cluster,
        TypeUrl::Endpoint,
        TypeUrl::Listener,
        TypeUrl::Route,
    ];

    /// How many types there are.
    pub const COUNT: usize = 6;

    pub const fn as_str(self) -> &'static str {
        match self {
            TypeUrl::Runtime => "type.googleapis.com/envoy.service.runtime.v3.Runtime",
            TypeUrl::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
            TypeUrl::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            TypeUrl::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            TypeUrl::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            TypeUrl::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        }
    }

    pub fn parse(url: &str) -> Option<TypeUrl> {
        TypeUrl::ALL.into_iter().find(|t| t.as_str() == url)
    }

    /// Short name used in logs, metrics and status (`cds`, `eds`, ...).
    pub const fn short(self) -> &'static str {
        match self {
            TypeUrl::Runtime => "rtds",
            TypeUrl::Secret => "sds",
            TypeUrl::Cluster => "cds",
            TypeUrl::Endpoint => "eds",
            TypeUrl::Listener => "lds",
            TypeUrl::Route => "rds",
        }
    }

    /// LDS and CDS may be subscribed to as a wildcard; RTDS, SDS, EDS and
    /// RDS are always requested by name.
    pub const fn wildcard_capable(self) -> bool {
        matches!(self, TypeUrl::Cluster | TypeUrl::Listener)
    }

    /// Whether the type takes part in make-before-break ordering: while
    /// it waits for an ACK with more to send, later types wait too. The
    /// runtime layer does not: its keys reference nothing, and a route
    /// that reads a key the proxy does not hold yet uses its own weight,
    /// so a runtime step need not wait for routes nor routes for it.
    pub const fn ordered(self) -> bool {
        !matches!(self, TypeUrl::Runtime)
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TypeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// One encoded resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    /// `name` again, shared: every session keys what it knows about this
    /// resource by this `Arc` instead of a copy of the name.
    pub key: Arc<str>,
    /// Content hash of `body`.
    pub version: String,
    /// The protobuf encoding of the Envoy message.
    pub body: Bytes,
}

impl Resource {
    pub fn encode<M: prost::Message>(name: impl Into<String>, msg: &M) -> Resource {
        Resource::from_bytes(name, msg.encode_to_vec())
    }

    /// A resource from an encoding made elsewhere (e.g. a canonical encoder
    /// for messages with map fields).
    pub fn from_bytes(name: impl Into<String>, body: impl Into<Bytes>) -> Resource {
        let body = body.into();
        let name = name.into();
        Resource {
            key: Arc::from(name.as_str()),
            name,
            version: content_hash(&[&body]),
            body,
        }
    }
}

/// The resources one node group gets, per type, with a version per type.
///
/// Each type's map is shared (`Arc`): a compile that changes only
/// endpoints reuses the previous snapshot's other maps, and comparing or
/// diffing two snapshots skips a shared map by pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    resources: [Arc<BTreeMap<String, Arc<Resource>>>; TypeUrl::COUNT],
    versions: [String; TypeUrl::COUNT],
}

impl Snapshot {
    /// Resources per type, in [`TypeUrl::ALL`] order.
    pub fn new(by_type: [Vec<Resource>; TypeUrl::COUNT]) -> Snapshot {
        let mut snap = Snapshot::default();
        for (i, list) in by_type.into_iter().enumerate() {
            let map: BTreeMap<String, Arc<Resource>> = list
                .into_iter()
                .map(|r| (r.name.clone(), Arc::new(r)))
                .collect();
            snap.versions[i] = version_of(&map);
            snap.resources[i] = Arc::new(map);
        }
        snap
    }

    /// This snapshot with the resources of `ty` that `updates` names
    /// replaced by the new ones; names it does not hold are ignored. `None`
    /// when that changes no resource's version. Every other type's map is
    /// shared with `self`, and so is every resource not replaced.
    pub fn with_replaced(
        &self,
        ty: TypeUrl,
        updates: &BTreeMap<String, Arc<Resource>>,
    ) -> Option<Snapshot> {
        let held = &self.resources[ty.index()];
        let differs = |(name, new): (&String, &Arc<Resource>)| {
            held.get(name).is_some_and(|old| old.version != new.version)
        };
        if !updates.iter().any(differs) {
            return None;
        }
        let mut next = self.clone();
        let map = Arc::make_mut(&mut next.resources[ty.index()]);
        for (name, new) in updates {
            if let Some(old) = map.get_mut(name) {
                if old.version != new.version {
                    *old = new.clone();
                }
            }
        }
        next.versions[ty.index()] = version_of(map);
        Some(next)
    }

    /// This snapshot without any resource of `ty`; every other type's map
    /// is shared with `self`.
    pub fn without(&self, ty: TypeUrl) -> Snapshot {
        let mut next = self.clone();
        next.resources[ty.index()] = Arc::default();
        next.versions[ty.index()] = version_of(&BTreeMap::new());
        next
    }

    /// Whether `self` and `other` hold the very same map of `ty` (then
    /// they hold the same resources of it).
    pub fn shares(&self, other: &Snapshot, ty: TypeUrl) -> bool {
        Arc::ptr_eq(&self.resources[ty.index()], &other.resources[ty.index()])
    }

    pub fn resources(&self, ty: TypeUrl) -> &BTreeMap<String, Arc<Resource>> {
        &self.resources[ty.index()]
    }

    pub fn version(&self, ty: TypeUrl) -> &str {
        &self.versions[ty.index()]
    }

    pub fn get(&self, ty: TypeUrl, name: &str) -> Option<&Arc<Resource>> {
        self.resources[ty.index()].get(name)
    }
}

fn version_of(map: &BTreeMap<String, Arc<Resource>>) -> String {
    set_version(map.values().map(|r| (r.name.as_str(), r.version.as_str())))
}

/// The version of a set of resources: a hash over their names and versions
/// (callers pass them in name order). Deterministic across processes.
pub fn set_version<'a>(resources: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut hasher = Xxh3::new();
    for (name, version) in resources {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(version.as_bytes());
        hasher.update(&[0]);
    }
    format!("{:016x}", hasher.digest())
}

/// Snapshots for every node group, as published to the xDS server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshots {
    /// Snapshots of groups named in the rules.
    pub groups: BTreeMap<String, Arc<Snapshot>>,
    /// What a proxy whose group the rules never name receives: the
    /// listeners that apply to every group.
    pub fallback: Arc<Snapshot>,
}

/// Which kind of xDS client a stream is: what it is served is compiled
/// for it alone (see [`Snapshots::select`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataPlane {
    /// An Envoy proxy: the rules' listeners.
    #[default]
    Envoy,
    /// A proxyless gRPC client (gRPC's own xDS client): the rules'
    /// `grpc` targets.
    Grpc,
}

impl DataPlane {
    pub fn is_envoy(&self) -> bool {
        *self == DataPlane::Envoy
    }
}

/// Keys of [`Snapshots::groups`] that hold what gRPC clients of a group
/// receive start with this (`grpc:edge`); node group names cannot hold a
/// `:`, so these never clash with an Envoy group.
pub const GRPC_GROUP_PREFIX: &str = "grpc:";

/// The key of what gRPC clients of a group no `grpc` target names
/// receive: the targets that apply to every group.
pub const GRPC_FALLBACK_GROUP: &str = "grpc:*";

/// The [`Snapshots::groups`] key of gRPC clients of `group`.
pub fn grpc_group_key(group: &str) -> String {
    format!("{GRPC_GROUP_PREFIX}{group}")
}

/// Whether a [`Snapshots::groups`] key holds a gRPC clients' snapshot.
pub fn is_grpc_group_key(key: &str) -> bool {
    key.starts_with(GRPC_GROUP_PREFIX)
}

impl Snapshots {
    pub fn for_group(&self, group: &str) -> &Arc<Snapshot> {
        self.groups.get(group).unwrap_or(&self.fallback)
    }

    /// What is served under the [`Snapshots::groups`] key `key`, whether
    /// or not this set holds it: for a gRPC key (`grpc:edge`), what gRPC
    /// clients of that group receive ([`Snapshots::select`]); for any
    /// other, what Envoys of that group receive. Comparing two sets key by
    /// key (history, the mass-removal guard) must not compare a gRPC key
    /// one set lacks with the Envoys' fallback.
    pub fn for_key(&self, key: &str) -> &Arc<Snapshot> {
        match key.strip_prefix(GRPC_GROUP_PREFIX) {
            Some(group) => self.select(DataPlane::Grpc, group).1,
            None => self.for_group(key),
        }
    }

    /// What a client of `plane` that claims `group` receives, and the key
    /// of the lineage its changes are diffed in (`History::diff`; `""`,
    /// which names no group, is the fallback's). An Envoy never gets a
    /// gRPC snapshot, whatever group it claims, and a gRPC client never
    /// an Envoy one: without `grpc` targets it gets an empty snapshot.
    pub fn select(&self, plane: DataPlane, group: &str) -> (&str, &Arc<Snapshot>) {
        match plane {
            DataPlane::Envoy => match self.groups.get_key_value(group) {
                Some((key, snap)) if !is_grpc_group_key(key) => (key.as_str(), snap),
                _ => ("", &self.fallback),
            },
            DataPlane::Grpc => {
                let found = self
                    .groups
                    .get_key_value(grpc_group_key(group).as_str())
                    .or_else(|| self.groups.get_key_value(GRPC_FALLBACK_GROUP));
                match found {
                    Some((key, snap)) => (key.as_str(), snap),
                    None => (GRPC_FALLBACK_GROUP, empty()),
                }
            }
        }
    }
}

/// One empty snapshot, shared (so a stream holding it skips republishes
/// by pointer).
fn empty() -> &'static Arc<Snapshot> {
    static EMPTY: OnceLock<Arc<Snapshot>> = OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(Snapshot::new(Default::default())))
}

/// The rules' entity a resource comes from, in the rules' words:
/// `listener `http``, `service `web`, subset `canary``, ….
pub fn rule_of(ty: TypeUrl, plane: DataPlane, name: &str) -> String {
    let grpc = plane == DataPlane::Grpc;
    match ty {
        TypeUrl::Listener if grpc => format!("gRPC target `{name}`"),
        TypeUrl::Listener => format!("listener `{name}`"),
        TypeUrl::Route if grpc => format!("routes of gRPC target `{name}`"),
        TypeUrl::Route => format!("routes of listener `{name}`"),
        TypeUrl::Cluster | TypeUrl::Endpoint => match name.split_once('~') {
            Some((service, subset)) => format!("service `{service}`, subset `{subset}`"),
            None => format!("service `{name}`"),
        },
        TypeUrl::Secret => match name
            .strip_prefix("listener/")
            .and_then(|n| n.strip_suffix("/cert"))
        {
            Some(listener) => format!("TLS certificate of listener `{listener}`"),
            None => format!("secret `{name}`"),
        },
        TypeUrl::Runtime => "rollout weights (sluice's runtime layer)".to_string(),
    }
}

/// Where a NACK came from in the rules: the resources of the rejected
/// response whose names the error mentions (Envoy names the listener,
/// cluster or route configuration it refused), or the one resource the
/// response carried; at most three. `None` when neither tells.
pub fn nack_rule<'a>(
    ty: TypeUrl,
    plane: DataPlane,
    error: &str,
    sent: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    const MAX: usize = 3;
    let sent: Vec<&str> = sent.into_iter().collect();
    let mut named: Vec<&str> = sent
        .iter()
        .copied()
        .filter(|n| !n.is_empty() && mentions(error, n))
        .collect();
    // A name inside a longer one that is also named (`web` in `web~v2`)
    // is not a separate mention.
    let all = named.clone();
    named.retain(|n| !all.iter().any(|m| m != n && m.contains(n)));
    named.sort_unstable();
    if named.is_empty() {
        if let [only] = sent[..] {
            named.push(only);
        }
    }
    if named.is_empty() {
        return None;
    }
    let mut rules: Vec<String> = named
        .iter()
        .take(MAX)
        .map(|n| rule_of(ty, plane, n))
        .collect();
    if named.len() > MAX {
        rules.push(format!("{} more", named.len() - MAX));
    }
    Some(rules.join("; "))
}

/// Whether `error` names `name` as a whole word (not inside a longer name).
fn mentions(error: &str, name: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '~' | '.' | '/');
    error.match_indices(name).any(|(at, _)| {
        let before = error[..at].chars().next_back();
        let after = error[at + name.len()..].chars().next();
        !before.is_some_and(part) && !after.is_some_and(part)
    })
}

#[cfg(test)]
mod nack_rule_tests {
    use super::*;

    #[test]
    fn the_rule_named_by_envoys_error() {
        let error = "Error adding/updating listener(s) http: unknown cluster 'web~v3'";
        assert_eq!(
            nack_rule(
                TypeUrl::Listener,
                DataPlane::Envoy,
                error,
                ["admin", "http", "https"]
            ),
            Some("listener `http`".into())
        );
        let error = "cluster 'web~canary' has no healthy upstream; web~stable fine";
        assert_eq!(
            nack_rule(
                TypeUrl::Cluster,
                DataPlane::Envoy,
                error,
                ["web", "web~canary", "web~stable", "api"]
            ),
            Some("service `web`, subset `canary`; service `web`, subset `stable`".into())
        );
        // One resource in the response: that one, whatever the error says.
        assert_eq!(
            nack_rule(
                TypeUrl::Route,
                DataPlane::Grpc,
                "bad retry policy",
                ["greeter"]
            ),
            Some("routes of gRPC target `greeter`".into())
        );
        // Several, none named: no guess.
        assert_eq!(
            nack_rule(
                TypeUrl::Route,
                DataPlane::Envoy,
                "proto invalid",
                ["a", "b"]
            ),
            None
        );
        // A name inside a longer word is not a mention.
        assert_eq!(
            nack_rule(
                TypeUrl::Listener,
                DataPlane::Envoy,
                "httpx: bad",
                ["http", "https"]
            ),
            None
        );
        assert_eq!(
            rule_of(TypeUrl::Secret, DataPlane::Envoy, "listener/https/cert"),
            "TLS certificate of listener `https`"
        );
    }
}
