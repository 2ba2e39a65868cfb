//! The sans-io xDS client of one simulated proxy: responses in, requests
//! (ACK/NACK and subscription changes) out, and the accepted configuration
//! as Envoy would hold it. No sockets, no clocks.
//!
//! Envoy's rules it follows:
//! - ADS start: CDS (wildcard) first; LDS once the first CDS update is
//!   applied and no cluster is warming (Envoy's cluster manager
//!   initialization), EDS and RDS by name as clusters and listeners ask.
//! - A response is checked whole (decode, Envoy's validation, duplicate
//!   names); any error rejects all of it: NACK with the last accepted version
//!   and `error_detail` (code INTERNAL), nothing applied.
//! - SotW CDS and LDS carry the full state (missing names are deleted);
//!   SotW EDS and RDS never delete implicitly. Delta deletes only what
//!   `removed_resources` names.
//! - A new or changed EDS cluster warms until a `ClusterLoadAssignment` for
//!   it arrives; until then the previous version (if any) keeps serving. A
//!   listener serves once its route configuration has arrived.
//! - Reconnect: SotW re-sends every subscription with its last version;
//!   delta sends `initial_resource_versions`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use sluice_core::xds::TypeUrl;

use super::resources::{Decoded, Decoder, SimCluster, SimEndpoints, SimListener, SimRuntime};
use super::route::RouteTable;

/// gRPC INTERNAL: the code Envoy puts in a NACK's `error_detail`.
const INTERNAL: i32 = 13;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Sotw,
    Delta,
}

/// A request to write to the stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Outbound {
    Sotw(DiscoveryRequest),
    Delta(DeltaDiscoveryRequest),
}

/// What happened to one response.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub ty: TypeUrl,
    pub version: String,
    /// `None`: accepted (ACK). `Some`: the NACK's error detail.
    pub error: Option<String>,
}

/// The accepted configuration, as the data plane uses it: only active
/// clusters and listeners. Values are shared `Arc`s, but a clone still
/// copies every key: to keep a copy current, use [`View::update_from`] with
/// [`ClientState::take_touched`] instead of cloning after each response.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub clusters: BTreeMap<String, Arc<SimCluster>>,
    /// By EDS name.
    pub endpoints: BTreeMap<String, Arc<SimEndpoints>>,
    pub listeners: BTreeMap<String, Arc<SimListener>>,
    pub routes: BTreeMap<String, Arc<RouteTable>>,
    /// RTDS runtime layers by name (the simulator subscribes to one at
    /// most).
    pub runtime: BTreeMap<String, Arc<SimRuntime>>,
}

/// One of the [`View`]'s maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Clusters,
    Endpoints,
    Listeners,
    Routes,
    Runtime,
}

/// The entries of the [`View`] changed since it was last taken.
#[derive(Clone, Debug, PartialEq)]
pub enum Touched {
    /// These entries were inserted, replaced or removed.
    Some(Vec<(Part, String)>),
    /// Too many to list (nobody took them for a while): copy the whole view.
    All,
}

/// The latest changes to a published [`View`], numbered, so a watcher that
/// remembers the last number it saw can look at only what changed since
/// (a benchmark tracker watching 1,000 proxies would otherwise compare
/// every entry it waits for on every response). Bounded: a watcher that
/// falls further behind is told to look at everything.
#[derive(Clone, Debug, Default)]
pub struct ChangeLog {
    /// Number of the last change logged (0: none yet).
    last: u64,
    /// Every change numbered above this one is in `entries`.
    complete_after: u64,
    /// (number, part, name), oldest first.
    entries: std::collections::VecDeque<(u64, Part, String)>,
}

impl ChangeLog {
    /// How many changes are kept.
    pub const KEEP: usize = 256;

    /// Logs what one update of the view touched.
    pub fn push(&mut self, touched: &Touched) {
        match touched {
            Touched::Some(list) if list.len() < ChangeLog::KEEP => {
                for (part, name) in list {
                    self.last += 1;
                    if self.entries.len() == ChangeLog::KEEP {
                        if let Some((n, _, _)) = self.entries.pop_front() {
                            self.complete_after = n;
                        }
                    }
                    self.entries.push_back((self.last, *part, name.clone()));
                }
            }
            // Too much at once to list: the whole view counts as changed.
            _ => {
                self.last += 1;
                self.complete_after = self.last;
                self.entries.clear();
            }
        }
    }

    /// Number of the last change: pass it to [`ChangeLog::since`] next.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// What changed after change `seen` (a name may repeat), or `None`
    /// when the log no longer reaches back that far: then anything may
    /// have changed.
    pub fn since(&self, seen: u64) -> Option<impl Iterator<Item = (Part, &str)>> {
        (seen >= self.complete_after).then(|| {
            self.entries
                .iter()
                .filter(move |(n, _, _)| *n > seen)
                .map(|(_, part, name)| (*part, name.as_str()))
        })
    }
}

/// Past this many untaken changes, [`Touched::All`] replaces the list.
const TOUCHED_CAP: usize = 16_384;

impl View {
    /// The integer a runtime key holds in the RTDS layers, if any
    /// (Envoy's `Snapshot::getInteger` without its default).
    pub fn runtime_integer(&self, key: &str) -> Option<u64> {
        self.runtime
            .values()
            .find_map(|layer| layer.integers.get(key).copied())
    }

    /// Brings `self`, a copy of `src` as it was when the changes in
    /// `touched` began, up to date with `src`: work in proportion to the
    /// changes, not to the view.
    pub fn update_from(&mut self, src: &View, touched: &Touched) {
        let list = match touched {
            Touched::All => return *self = src.clone(),
            Touched::Some(list) => list,
        };
        fn copy<V: Clone>(to: &mut BTreeMap<String, V>, from: &BTreeMap<String, V>, k: &str) {
            match from.get(k) {
                Some(v) => match to.get_mut(k) {
                    Some(slot) => *slot = v.clone(),
                    None => {
                        to.insert(k.to_string(), v.clone());
                    }
                },
                None => {
                    to.remove(k);
                }
            }
        }
        for (part, k) in list {
            match part {
                Part::Clusters => copy(&mut self.clusters, &src.clusters, k),
                Part::Endpoints => copy(&mut self.endpoints, &src.endpoints, k),
                Part::Listeners => copy(&mut self.listeners, &src.listeners, k),
                Part::Routes => copy(&mut self.routes, &src.routes, k),
                Part::Runtime => copy(&mut self.runtime, &src.runtime, k),
            }
        }
    }
}

#[derive(Debug, Default)]
struct TypeState {
    /// Last accepted version (SotW `version_info`, delta `system_version_info`).
    version: String,
    nonce: String,
    /// Requested names (EDS/RDS); empty for the wildcard types.
    names: BTreeSet<String>,
    started: bool,
    /// Delta: what the proxy holds, name → version.
    held: BTreeMap<String, String>,
}

pub struct ClientState {
    mode: Mode,
    node: Node,
    decoder: Arc<Decoder>,
    types: [TypeState; TypeUrl::COUNT],
    /// Every accepted cluster, latest version (active or warming).
    clusters: BTreeMap<String, Arc<SimCluster>>,
    /// Warming clusters: name → the EDS name they wait for.
    warming: BTreeMap<String, String>,
    /// The same, by EDS name, so an assignment finds what it ends at once.
    warming_by_eds: BTreeMap<String, BTreeSet<String>>,
    view: View,
    /// What changed in `view` since [`ClientState::take_touched`].
    touched: Touched,
    listeners: BTreeMap<String, Arc<SimListener>>,
    /// Clusters or listeners changed since the last `follow_ups`: the EDS
    /// and RDS subscriptions may have to change.
    subs_dirty: bool,
    node_sent: bool,
    /// LDS waits for the first CDS update (Envoy's cluster manager init).
    cds_applied: bool,
    /// The RTDS layer this proxy's bootstrap names, if any.
    runtime_layer: Option<String>,
    /// CDS waits for the first RTDS answer, accepted or not (Envoy loads
    /// its RTDS layers before it initialises clusters).
    runtime_applied: bool,
}

impl ClientState {
    pub fn new(mode: Mode, node: Node, decoder: Arc<Decoder>) -> ClientState {
        ClientState {
            mode,
            node,
            decoder,
            types: Default::default(),
            clusters: BTreeMap::new(),
            warming: BTreeMap::new(),
            warming_by_eds: BTreeMap::new(),
            view: View::default(),
            touched: Touched::Some(Vec::new()),
            listeners: BTreeMap::new(),
            subs_dirty: false,
            node_sent: false,
            cds_applied: false,
            runtime_layer: None,
            runtime_applied: false,
        }
    }

    /// Subscribes to the RTDS layer `name` when the stream opens, as an
    /// Envoy whose bootstrap has an `rtds_layer` of that name; clusters
    /// are asked for once the layer arrived.
    pub fn with_runtime_layer(mut self, name: Option<String>) -> ClientState {
        self.runtime_layer = name;
        self
    }

    pub fn view(&self) -> &View {
        &self.view
    }

    /// The view's entries changed since the last call (see
    /// [`View::update_from`]).
    pub fn take_touched(&mut self) -> Touched {
        std::mem::replace(&mut self.touched, Touched::Some(Vec::new()))
    }

    fn touch(&mut self, part: Part, name: &str) {
        touch(&mut self.touched, part, name);
    }

    /// Last accepted version per type.
    pub fn version(&self, ty: TypeUrl) -> &str {
        &self.types[ty.index()].version
    }

    /// Warming clusters, each with the EDS name it waits for.
    pub fn warming(&self) -> &BTreeMap<String, String> {
        &self.warming
    }

    /// The requests that open a stream: CDS, and every other type already
    /// started, with what the proxy holds (reconnect).
    pub fn start(&mut self) -> Vec<Outbound> {
        self.node_sent = false;
        for t in &mut self.types {
            t.nonce.clear();
        }
        let mut out = Vec::new();
        if let Some(layer) = &self.runtime_layer {
            let t = &mut self.types[TypeUrl::Runtime.index()];
            t.names = BTreeSet::from([layer.clone()]);
            t.started = true;
        }
        if self.runtime_layer.is_none() || self.runtime_applied {
            self.types[TypeUrl::Cluster.index()].started = true;
        }
        // The RTDS layer, when there is one, is asked for first.
        for ty in std::iter::once(TypeUrl::Runtime).chain(crate::SIM_TYPES) {
            if self.types[ty.index()].started {
                out.push(self.subscribe(ty, true));
            }
        }
        out
    }

    /// Handle a SotW response. `reject` forces a NACK with that text (fault
    /// injection); otherwise the response is validated as Envoy would.
    pub fn on_sotw(
        &mut self,
        resp: &DiscoveryResponse,
        reject: Option<String>,
    ) -> (Vec<Outbound>, Option<Applied>) {
        let Some(ty) = TypeUrl::parse(&resp.type_url) else {
            return (vec![], None);
        };
        self.types[ty.index()].nonce = resp.nonce.clone();
        let decoded = resp
            .resources
            .iter()
            .map(|any| self.decode(ty, &any.type_url, &any.value))
            .collect::<Result<Vec<_>, _>>();
        let result = decoded
            .and_then(|d| no_duplicates(ty, d))
            .and_then(|d| match reject {
                Some(why) => Err(why),
                None => Ok(d),
            });
        match result {
            Err(error) => {
                let nack = self.sotw_request(ty, Some(error.clone()));
                let version = resp.version_info.clone();
                let mut out = vec![nack];
                out.extend(self.after_nack(ty));
                (
                    out,
                    Some(Applied {
                        ty,
                        version,
                        error: Some(error),
                    }),
                )
            }
            Ok(resources) => {
                let full_state = ty.wildcard_capable();
                let removed = if full_state {
                    let keep: BTreeSet<&str> = resources.iter().map(Decoded::name).collect();
                    self.names_held(ty)
                        .into_iter()
                        .filter(|n| !keep.contains(n.as_str()))
                        .collect()
                } else {
                    vec![]
                };
                self.apply(ty, resources, &removed);
                self.types[ty.index()].version = resp.version_info.clone();
                let mut out = vec![self.sotw_request(ty, None)];
                out.extend(self.follow_ups());
                let version = resp.version_info.clone();
                (
                    out,
                    Some(Applied {
                        ty,
                        version,
                        error: None,
                    }),
                )
            }
        }
    }

    pub(super) fn decode(
        &self,
        ty: TypeUrl,
        type_url: &str,
        bytes: &[u8],
    ) -> Result<Decoded, String> {
        if type_url != ty.as_str() {
            return Err(format!("type URL {type_url} in a {} response", ty.as_str()));
        }
        self.decoder.decode(ty, bytes).map_err(|e| e.to_string())
    }

    fn names_held(&self, ty: TypeUrl) -> Vec<String> {
        match ty {
            TypeUrl::Cluster => self.clusters.keys().cloned().collect(),
            TypeUrl::Listener => self.listeners.keys().cloned().collect(),
            TypeUrl::Endpoint => self.view.endpoints.keys().cloned().collect(),
            TypeUrl::Route => self.view.routes.keys().cloned().collect(),
            TypeUrl::Runtime => self.view.runtime.keys().cloned().collect(),
            TypeUrl::Secret => Vec::new(),
        }
    }

    /// Apply accepted resources and removals of one type.
    pub(super) fn apply(&mut self, ty: TypeUrl, resources: Vec<Decoded>, removed: &[String]) {
        self.cds_applied |= ty == TypeUrl::Cluster;
        self.runtime_applied |= ty == TypeUrl::Runtime;
        self.subs_dirty |= matches!(ty, TypeUrl::Cluster | TypeUrl::Listener);
        for name in removed {
            match ty {
                TypeUrl::Cluster => {
                    self.clusters.remove(name);
                    self.unwarm(name);
                    if self.view.clusters.remove(name).is_some() {
                        self.touch(Part::Clusters, name);
                    }
                }
                TypeUrl::Listener => {
                    self.listeners.remove(name);
                }
                // Envoy treats a removed assignment as an empty one, which
                // also ends warming.
                TypeUrl::Endpoint => self.set_endpoints(Arc::new(SimEndpoints {
                    cluster_name: name.clone(),
                    overprovisioning: 1.4,
                    ..Default::default()
                })),
                TypeUrl::Route => {
                    if self.view.routes.remove(name).is_some() {
                        self.touch(Part::Routes, name);
                    }
                }
                TypeUrl::Runtime => {
                    if self.view.runtime.remove(name).is_some() {
                        self.touch(Part::Runtime, name);
                    }
                }
                TypeUrl::Secret => {}
            }
        }
        for d in resources {
            match d {
                Decoded::Cluster(c) => {
                    let unchanged = self.clusters.get(&c.name).is_some_and(|old| **old == *c);
                    if unchanged {
                        continue;
                    }
                    self.clusters.insert(c.name.clone(), c.clone());
                    if c.inline_endpoints.is_some() {
                        self.unwarm(&c.name);
                        self.touch(Part::Clusters, &c.name);
                        self.view.clusters.insert(c.name.clone(), c);
                    } else {
                        self.unwarm(&c.name);
                        self.warming.insert(c.name.clone(), c.eds_name.clone());
                        self.warming_by_eds
                            .entry(c.eds_name.clone())
                            .or_default()
                            .insert(c.name.clone());
                    }
                }
                Decoded::Endpoints(e) => self.set_endpoints(e),
                Decoded::Listener(l) => {
                    self.listeners.insert(l.name.clone(), l);
                }
                Decoded::Routes(r) => {
                    self.touch(Part::Routes, &r.name);
                    self.view.routes.insert(r.name.clone(), r);
                }
                Decoded::Runtime(r) => {
                    if !self.types[TypeUrl::Runtime.index()].names.contains(&r.name) {
                        continue; // not asked for: Envoy ignores it
                    }
                    self.touch(Part::Runtime, &r.name);
                    self.view.runtime.insert(r.name.clone(), r);
                }
            }
        }
        // Listeners serve once their routes are there: only listeners and
        // routes change which ones do.
        if matches!(ty, TypeUrl::Listener | TypeUrl::Route) {
            self.serve_listeners();
        }
    }

    /// Puts in the view exactly the listeners whose routes are there.
    fn serve_listeners(&mut self) {
        let stale: Vec<String> = self
            .view
            .listeners
            .keys()
            .filter(|n| !self.listeners.contains_key(*n))
            .cloned()
            .collect();
        for n in stale {
            self.view.listeners.remove(&n);
            self.touch(Part::Listeners, &n);
        }
        for (n, l) in &self.listeners {
            let serves = self.view.routes.contains_key(&l.rds);
            let current = self.view.listeners.get(n);
            let changed = match (serves, current) {
                (true, Some(c)) => !Arc::ptr_eq(c, l),
                (true, None) => true,
                (false, c) => c.is_some(),
            };
            if !changed {
                continue;
            }
            if serves {
                self.view.listeners.insert(n.clone(), l.clone());
            } else {
                self.view.listeners.remove(n);
            }
            touch(&mut self.touched, Part::Listeners, n);
        }
    }

    /// Ends `cluster`'s warming, if it was warming.
    fn unwarm(&mut self, cluster: &str) {
        let Some(eds) = self.warming.remove(cluster) else {
            return;
        };
        if let Some(set) = self.warming_by_eds.get_mut(&eds) {
            set.remove(cluster);
            if set.is_empty() {
                self.warming_by_eds.remove(&eds);
            }
        }
    }

    fn set_endpoints(&mut self, e: Arc<SimEndpoints>) {
        let name = e.cluster_name.clone();
        if !self.types[TypeUrl::Endpoint.index()].names.contains(&name) {
            return; // not asked for: Envoy ignores it
        }
        let done = self.warming_by_eds.remove(&name).unwrap_or_default();
        for c in done {
            self.warming.remove(&c);
            if let Some(cl) = self.clusters.get(&c) {
                touch(&mut self.touched, Part::Clusters, &c);
                self.view.clusters.insert(c, cl.clone());
            }
        }
        self.touch(Part::Endpoints, &name);
        self.view.endpoints.insert(name, e);
    }

    /// What follows a rejected response: a rejected RTDS layer still ends
    /// Envoy's wait for it, so clusters are asked for.
    pub(super) fn after_nack(&mut self, ty: TypeUrl) -> Vec<Outbound> {
        if ty != TypeUrl::Runtime || self.runtime_applied {
            return Vec::new();
        }
        self.runtime_applied = true;
        self.follow_ups()
    }

    /// Subscription changes that follow from what was just applied.
    pub(super) fn follow_ups(&mut self) -> Vec<Outbound> {
        let mut out = Vec::new();
        let cds = &self.types[TypeUrl::Cluster.index()];
        if !cds.started && self.runtime_applied {
            self.types[TypeUrl::Cluster.index()].started = true;
            out.push(self.subscribe(TypeUrl::Cluster, true));
        }
        if std::mem::take(&mut self.subs_dirty) {
            self.resubscribe(&mut out);
        }
        let lds = &self.types[TypeUrl::Listener.index()];
        if !lds.started && self.cds_applied && self.warming.is_empty() {
            self.types[TypeUrl::Listener.index()].started = true;
            out.push(self.subscribe(TypeUrl::Listener, true));
        }
        out
    }

    /// The EDS and RDS subscriptions the clusters and listeners held ask
    /// for, where they differ from the current ones.
    fn resubscribe(&mut self, out: &mut Vec<Outbound>) {
        let eds: BTreeSet<String> = self
            .clusters
            .values()
            .filter(|c| c.inline_endpoints.is_none())
            .map(|c| c.eds_name.clone())
            .collect();
        let rds: BTreeSet<String> = self.listeners.values().map(|l| l.rds.clone()).collect();
        for (ty, want) in [(TypeUrl::Endpoint, eds), (TypeUrl::Route, rds)] {
            let t = &mut self.types[ty.index()];
            if t.names == want && (t.started || want.is_empty()) {
                continue;
            }
            let old = std::mem::replace(&mut t.names, want.clone());
            t.started = true;
            // Drop what nothing refers to any more.
            let touched = &mut self.touched;
            let mut keep = |part, n: &String| {
                let k = want.contains(n);
                if !k {
                    touch(touched, part, n);
                }
                k
            };
            match ty {
                TypeUrl::Endpoint => self.view.endpoints.retain(|n, _| keep(Part::Endpoints, n)),
                _ => self.view.routes.retain(|n, _| keep(Part::Routes, n)),
            }
            out.push(match self.mode {
                Mode::Sotw => self.sotw_request(ty, None),
                Mode::Delta => {
                    let t = &mut self.types[ty.index()];
                    t.held.retain(|n, _| want.contains(n));
                    Outbound::Delta(DeltaDiscoveryRequest {
                        type_url: ty.as_str().into(),
                        resource_names_subscribe: want.difference(&old).cloned().collect(),
                        resource_names_unsubscribe: old.difference(&want).cloned().collect(),
                        ..Default::default()
                    })
                }
            });
        }
    }

    /// The request that (re)opens a subscription of one type.
    fn subscribe(&mut self, ty: TypeUrl, initial: bool) -> Outbound {
        let node = (!self.node_sent).then(|| self.node.clone());
        self.node_sent = true;
        let t = &self.types[ty.index()];
        match self.mode {
            Mode::Sotw => {
                let mut req = self.sotw_inner(ty, None);
                req.node = node;
                Outbound::Sotw(req)
            }
            Mode::Delta => Outbound::Delta(DeltaDiscoveryRequest {
                node,
                type_url: ty.as_str().into(),
                resource_names_subscribe: t.names.iter().cloned().collect(),
                initial_resource_versions: if initial {
                    t.held.clone().into_iter().collect()
                } else {
                    Default::default()
                },
                ..Default::default()
            }),
        }
    }

    fn sotw_request(&mut self, ty: TypeUrl, error: Option<String>) -> Outbound {
        let node = (!self.node_sent).then(|| self.node.clone());
        self.node_sent = true;
        let mut req = self.sotw_inner(ty, error);
        req.node = node;
        Outbound::Sotw(req)
    }

    fn sotw_inner(&self, ty: TypeUrl, error: Option<String>) -> DiscoveryRequest {
        let t = &self.types[ty.index()];
        DiscoveryRequest {
            version_info: t.version.clone(),
            type_url: ty.as_str().into(),
            resource_names: t.names.iter().cloned().collect(),
            response_nonce: t.nonce.clone(),
            error_detail: error.as_deref().map(status),
            ..Default::default()
        }
    }
}

fn touch(touched: &mut Touched, part: Part, name: &str) {
    if let Touched::Some(list) = touched {
        if list.len() >= TOUCHED_CAP {
            *touched = Touched::All;
        } else {
            list.push((part, name.to_string()));
        }
    }
}

pub(super) fn status(message: &str) -> RpcStatus {
    RpcStatus {
        code: INTERNAL,
        message: message.to_string(),
        details: vec![],
    }
}

/// Envoy rejects a response that names a resource twice.
pub(super) fn no_duplicates(ty: TypeUrl, resources: Vec<Decoded>) -> Result<Vec<Decoded>, String> {
    // Names in strictly increasing order (as sluice sends them) cannot
    // repeat: one comparison per neighbour instead of a set.
    if resources.windows(2).all(|w| w[0].name() < w[1].name()) {
        return Ok(resources);
    }
    let mut seen = BTreeSet::new();
    for d in &resources {
        if !seen.insert(d.name()) {
            let kind = match ty {
                TypeUrl::Cluster => "cluster",
                TypeUrl::Endpoint => "cluster load assignment",
                TypeUrl::Listener => "listener",
                TypeUrl::Route => "route configuration",
                TypeUrl::Runtime => "runtime",
                TypeUrl::Secret => "secret",
            };
            return Err(format!("duplicate {kind} {} found", d.name()));
        }
    }
    Ok(resources)
}

mod delta;

#[cfg(test)]
mod tests;
