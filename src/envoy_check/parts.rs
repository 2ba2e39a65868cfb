//! Compiled snapshots → static Envoy bootstraps that `envoy --mode
//! validate` can check without an xDS server.
//!
//! Every group's resources are merged into as few sets as their names
//! allow ([`batches`]): compile builds a listener, route configuration,
//! cluster or secret the same way in every group that has it, so the
//! union of all groups is normally one set and one Envoy run checks the
//! whole config. A name whose bytes differ between groups starts another
//! set, so nothing is ever checked in a combination no proxy receives.
//!
//! A set is decoded once into [`Parts`], made static on the way — what a
//! proxy fetches over ADS is put where a bootstrap holds it:
//! - an EDS cluster becomes a `STATIC` one carrying its
//!   `ClusterLoadAssignment` (an empty one if the set has none);
//! - an HTTP connection manager's RDS reference becomes its route
//!   configuration, inline;
//! - a TLS context's SDS secret references lose their config source, so
//!   they name the bootstrap's static secrets;
//! - the RTDS layer becomes a static runtime layer;
//! - an upstream CA file (`ca_file`, a path on the proxy's host) is left
//!   out: it need not exist where the check runs.
//!
//! [`Parts::bootstrap`] then builds a bootstrap from any subset of the
//! parts ([`Item`]s), which is how a refusal is narrowed down to one
//! resource or route (`super::culprit`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::bootstrap::v3::{
    bootstrap::StaticResources, runtime_layer::LayerSpecifier, Bootstrap, LayeredRuntime,
    RuntimeLayer,
};
use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{data_source, transport_socket, TransportSocket};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, CommonTlsContext, DownstreamTlsContext, Secret,
    UpstreamTlsContext,
};
use envoy_types::pb::envoy::service::runtime::v3::Runtime;
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use envoy_types::util::pack_any;
use prost::{Message, Name};

use crate::xds::resource::is_grpc_group_key;
use crate::xds::{Resource, Snapshots, TypeUrl};

/// One set of resources whose names do not clash: per type, by name.
pub(super) type Batch = [BTreeMap<String, Arc<Resource>>; TypeUrl::COUNT];

/// A part of a [`Parts`] a bootstrap may hold; indices into its lists.
/// A virtual host or route brings its listener's route configuration
/// along only when that listener is in the bootstrap too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Item {
    Runtime(usize),
    Secret(usize),
    Cluster(usize),
    Listener(usize),
    /// Route configuration, virtual host (without its routes).
    VirtualHost(usize, usize),
    /// Route configuration, virtual host, route.
    Route(usize, usize, usize),
}

/// A batch decoded and made static (see the module doc).
#[derive(Debug, Default)]
pub(super) struct Parts {
    pub runtime: Vec<Runtime>,
    pub secrets: Vec<Secret>,
    pub clusters: Vec<Cluster>,
    pub listeners: Vec<Listener>,
    pub route_configs: Vec<RouteParts>,
    /// Per listener, its HTTP connection managers.
    hcms: Vec<Vec<Hcm>>,
}

/// [`Item`]s sorted by kind.
#[derive(Default)]
struct Selection {
    runtime: BTreeSet<usize>,
    secrets: BTreeSet<usize>,
    clusters: BTreeSet<usize>,
    listeners: BTreeSet<usize>,
    /// Route configuration → virtual host → routes kept.
    kept: BTreeMap<usize, BTreeMap<usize, BTreeSet<usize>>>,
}

/// A route configuration taken apart, so that a cut of it clones only
/// what it keeps.
#[derive(Debug)]
pub(super) struct RouteParts {
    /// The configuration without its virtual hosts.
    pub head: RouteConfiguration,
    /// Each virtual host without its routes, and its routes.
    pub hosts: Vec<(VirtualHost, Vec<Route>)>,
}

/// An HTTP connection manager in a listener, and the route configuration
/// (index into `route_configs`) it would fetch over RDS.
#[derive(Debug)]
struct Hcm {
    chain: usize,
    filter: usize,
    config: HttpConnectionManager,
    route_config: Option<usize>,
}

/// A resource that does not decode as its type: compile wrote it, so this
/// is a bug, reported rather than hidden.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {name:?} does not decode: {reason}")]
pub(super) struct DecodeError {
    kind: &'static str,
    name: String,
    reason: prost::DecodeError,
}

/// Every group's resources (the fallback's too) merged into as few
/// batches as names allow, in group order. What gRPC clients are served
/// is not Envoy's to check.
pub(super) fn batches(snapshots: &Snapshots) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    let all = snapshots
        .groups
        .iter()
        .filter(|(key, _)| !is_grpc_group_key(key))
        .map(|(_, snapshot)| snapshot)
        .chain(std::iter::once(&snapshots.fallback));
    for snapshot in all {
        let fits = |batch: &Batch| {
            TypeUrl::ALL.iter().all(|ty| {
                snapshot.resources(*ty).iter().all(|(name, r)| {
                    batch[ty.index()]
                        .get(name)
                        .is_none_or(|have| have.version == r.version)
                })
            })
        };
        let index = match out.iter().position(fits) {
            Some(i) => i,
            None => {
                out.push(Batch::default());
                out.len() - 1
            }
        };
        for ty in TypeUrl::ALL {
            for (name, r) in snapshot.resources(ty) {
                out[index][ty.index()].insert(name.clone(), r.clone());
            }
        }
    }
    out
}

impl Parts {
    pub fn decode(batch: &Batch) -> Result<Parts, DecodeError> {
        let of = |ty: TypeUrl| batch[ty.index()].values();
        let mut parts = Parts {
            runtime: of(TypeUrl::Runtime)
                .map(|r| decode("runtime layer", r))
                .collect::<Result<_, _>>()?,
            secrets: of(TypeUrl::Secret)
                .map(|r| decode("secret", r))
                .collect::<Result<_, _>>()?,
            route_configs: of(TypeUrl::Route)
                .map(|r| decode("route configuration", r).map(RouteParts::new))
                .collect::<Result<_, _>>()?,
            ..Default::default()
        };
        for r in of(TypeUrl::Cluster) {
            let cluster = decode("cluster", r)?;
            parts
                .clusters
                .push(static_cluster(cluster, &batch[TypeUrl::Endpoint.index()])?);
        }
        for r in of(TypeUrl::Listener) {
            let mut listener: Listener = decode("listener", r)?;
            let hcms = parts.connection_managers(&mut listener)?;
            parts.listeners.push(listener);
            parts.hcms.push(hcms);
        }
        Ok(parts)
    }

    /// Every part: a bootstrap of these is the whole batch.
    pub fn all(&self) -> Vec<Item> {
        let mut items = self.foundation();
        items.extend(self.listener_units().into_iter().flatten());
        items.extend(self.route_units().into_iter().flatten());
        items
    }

    /// What listeners stand on: the runtime layers, secrets and clusters.
    pub fn foundation(&self) -> Vec<Item> {
        (0..self.runtime.len())
            .map(Item::Runtime)
            .chain((0..self.secrets.len()).map(Item::Secret))
            .chain((0..self.clusters.len()).map(Item::Cluster))
            .collect()
    }

    /// Each listener with its virtual hosts (none of their routes).
    pub fn listener_units(&self) -> Vec<Vec<Item>> {
        (0..self.listeners.len())
            .map(|l| {
                let mut unit = vec![Item::Listener(l)];
                unit.extend(self.virtual_hosts_of(l).into_iter().flatten());
                unit
            })
            .collect()
    }

    /// Listener `l`'s virtual hosts, one unit each.
    pub fn virtual_hosts_of(&self, l: usize) -> Vec<Vec<Item>> {
        let mut units = Vec::new();
        for rc in self.hcms[l].iter().filter_map(|h| h.route_config) {
            for vh in 0..self.route_configs[rc].hosts.len() {
                units.push(vec![Item::VirtualHost(rc, vh)]);
            }
        }
        units
    }

    /// Every route, one unit each.
    pub fn route_units(&self) -> Vec<Vec<Item>> {
        let mut units = Vec::new();
        for (rc, config) in self.route_configs.iter().enumerate() {
            for (vh, (_, routes)) in config.hosts.iter().enumerate() {
                for r in 0..routes.len() {
                    units.push(vec![Item::Route(rc, vh, r)]);
                }
            }
        }
        units
    }

    /// Whether `item`'s encoding holds `needle` (a value Envoy quoted).
    pub fn holds(&self, item: Item, needle: &[u8]) -> bool {
        let bytes = match item {
            Item::Runtime(i) => self.runtime[i].encode_to_vec(),
            Item::Secret(i) => self.secrets[i].encode_to_vec(),
            Item::Cluster(i) => self.clusters[i].encode_to_vec(),
            Item::Listener(i) => self.listeners[i].encode_to_vec(),
            Item::VirtualHost(rc, vh) => self.route_configs[rc].hosts[vh].0.encode_to_vec(),
            Item::Route(rc, vh, r) => self.route_configs[rc].hosts[vh].1[r].encode_to_vec(),
        };
        !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle)
    }

    /// A static bootstrap holding exactly `items`.
    pub fn bootstrap(&self, items: &[Item]) -> Bootstrap {
        let Selection {
            runtime,
            secrets,
            clusters,
            listeners,
            kept,
        } = Selection::of(items);
        // Without clusters, route → cluster references cannot be checked
        // (compile has: `compile::check`); the rest of a route can.
        let check_clusters = !clusters.is_empty();
        let listeners = listeners
            .into_iter()
            .map(|l| self.static_listener(l, &kept, check_clusters))
            .collect();
        let layers = runtime
            .into_iter()
            .map(|i| RuntimeLayer {
                name: self.runtime[i].name.clone(),
                layer_specifier: Some(LayerSpecifier::StaticLayer(
                    self.runtime[i].layer.clone().unwrap_or_default(),
                )),
            })
            .collect();
        Bootstrap {
            static_resources: Some(StaticResources {
                listeners,
                clusters: clusters
                    .into_iter()
                    .map(|i| self.clusters[i].clone())
                    .collect(),
                secrets: secrets
                    .into_iter()
                    .map(|i| self.secrets[i].clone())
                    .collect(),
            }),
            layered_runtime: Some(LayeredRuntime { layers }),
            ..Default::default()
        }
    }

    /// Listener `l` with its route configurations inline, cut to `kept`.
    fn static_listener(
        &self,
        l: usize,
        kept: &BTreeMap<usize, BTreeMap<usize, BTreeSet<usize>>>,
        check_clusters: bool,
    ) -> Listener {
        let mut listener = self.listeners[l].clone();
        for hcm in &self.hcms[l] {
            let Some(rc) = hcm.route_config else {
                continue;
            };
            let none = BTreeMap::new();
            let mut routes = self.route_config(rc, kept.get(&rc).unwrap_or(&none));
            if !check_clusters {
                routes.validate_clusters = Some(BoolValue { value: false });
            }
            let mut config = hcm.config.clone();
            config.route_specifier = Some(RouteSpecifier::RouteConfig(routes));
            let filter = listener
                .filter_chains
                .get_mut(hcm.chain)
                .and_then(|c| c.filters.get_mut(hcm.filter));
            if let Some(filter) = filter {
                filter.config_type = Some(filter::ConfigType::TypedConfig(pack_any(config)));
            }
        }
        listener
    }

    /// Route configuration `rc` with only the virtual hosts and routes in
    /// `kept`.
    fn route_config(
        &self,
        rc: usize,
        kept: &BTreeMap<usize, BTreeSet<usize>>,
    ) -> RouteConfiguration {
        let parts = &self.route_configs[rc];
        let virtual_hosts = kept
            .iter()
            .filter_map(|(vh, keep)| {
                let (host, routes) = parts.hosts.get(*vh)?;
                let routes = routes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| keep.contains(i))
                    .map(|(_, r)| r.clone())
                    .collect();
                Some(VirtualHost {
                    routes,
                    ..host.clone()
                })
            })
            .collect();
        RouteConfiguration {
            virtual_hosts,
            ..parts.head.clone()
        }
    }

    /// Finds `listener`'s HTTP connection managers and makes its TLS
    /// contexts name static secrets.
    fn connection_managers(&self, listener: &mut Listener) -> Result<Vec<Hcm>, DecodeError> {
        let mut found = Vec::new();
        for (c, chain) in listener.filter_chains.iter_mut().enumerate() {
            if let Some(socket) = chain.transport_socket.as_mut() {
                static_tls::<DownstreamTlsContext>(socket, &listener.name, |ctx| {
                    ctx.common_tls_context.as_mut()
                })?;
            }
            for (f, filter) in chain.filters.iter().enumerate() {
                let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
                    continue;
                };
                if any.type_url != HttpConnectionManager::type_url() {
                    continue;
                }
                let config = decode_any::<HttpConnectionManager>(any, "listener", &listener.name)?;
                let route_config = match &config.route_specifier {
                    Some(RouteSpecifier::Rds(rds)) => self
                        .route_configs
                        .iter()
                        .position(|rc| rc.head.name == rds.route_config_name),
                    _ => None,
                };
                found.push(Hcm {
                    chain: c,
                    filter: f,
                    config,
                    route_config,
                });
            }
        }
        Ok(found)
    }
}

impl Selection {
    fn of(items: &[Item]) -> Selection {
        let mut s = Selection::default();
        for item in items {
            match *item {
                Item::Runtime(i) => {
                    s.runtime.insert(i);
                }
                Item::Secret(i) => {
                    s.secrets.insert(i);
                }
                Item::Cluster(i) => {
                    s.clusters.insert(i);
                }
                Item::Listener(i) => {
                    s.listeners.insert(i);
                }
                Item::VirtualHost(rc, vh) => {
                    s.kept.entry(rc).or_default().entry(vh).or_default();
                }
                Item::Route(rc, vh, r) => {
                    s.kept
                        .entry(rc)
                        .or_default()
                        .entry(vh)
                        .or_default()
                        .insert(r);
                }
            }
        }
        s
    }
}

impl RouteParts {
    fn new(mut config: RouteConfiguration) -> RouteParts {
        let hosts = std::mem::take(&mut config.virtual_hosts)
            .into_iter()
            .map(|mut host| {
                let routes = std::mem::take(&mut host.routes);
                (host, routes)
            })
            .collect();
        RouteParts {
            head: config,
            hosts,
        }
    }
}

/// `cluster` as a static one (see the module doc).
fn static_cluster(
    mut cluster: Cluster,
    endpoints: &BTreeMap<String, Arc<Resource>>,
) -> Result<Cluster, DecodeError> {
    let eds = cluster::DiscoveryType::Eds as i32;
    if cluster.cluster_discovery_type == Some(cluster::ClusterDiscoveryType::Type(eds)) {
        let service = cluster
            .eds_cluster_config
            .take()
            .map(|e| e.service_name)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| cluster.name.clone());
        let assignment = match endpoints.get(&service) {
            Some(r) => decode("load assignment", r)?,
            None => ClusterLoadAssignment {
                cluster_name: service,
                ..Default::default()
            },
        };
        cluster.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        ));
        cluster.load_assignment = Some(assignment);
    }
    if let Some(socket) = cluster.transport_socket.as_mut() {
        static_tls::<UpstreamTlsContext>(socket, &cluster.name, |ctx| {
            ctx.common_tls_context.as_mut()
        })?;
    }
    Ok(cluster)
}

/// Rewrites a TLS transport socket's context `C`: SDS references name
/// static secrets, and a CA file on the proxy's host is left out.
fn static_tls<C: Message + Name + Default>(
    socket: &mut TransportSocket,
    owner: &str,
    common: impl FnOnce(&mut C) -> Option<&mut CommonTlsContext>,
) -> Result<(), DecodeError> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
        return Ok(());
    };
    if any.type_url != C::type_url() {
        return Ok(());
    }
    let mut context = decode_any::<C>(any, "TLS context of", owner)?;
    if let Some(common) = common(&mut context) {
        for sds in &mut common.tls_certificate_sds_secret_configs {
            sds.sds_config = None;
        }
        match &mut common.validation_context_type {
            Some(ValidationContextType::ValidationContextSdsSecretConfig(sds)) => {
                sds.sds_config = None;
            }
            Some(ValidationContextType::ValidationContext(v)) => {
                let on_proxy = v.trusted_ca.as_ref().is_some_and(|ca| {
                    matches!(ca.specifier, Some(data_source::Specifier::Filename(_)))
                });
                if on_proxy {
                    v.trusted_ca = None;
                }
            }
            _ => {}
        }
    }
    socket.config_type = Some(transport_socket::ConfigType::TypedConfig(pack_any(context)));
    Ok(())
}

fn decode<M: Message + Default>(kind: &'static str, r: &Resource) -> Result<M, DecodeError> {
    M::decode(r.body.clone()).map_err(|reason| DecodeError {
        kind,
        name: r.name.clone(),
        reason,
    })
}

fn decode_any<M: Message + Default>(
    any: &Any,
    kind: &'static str,
    name: &str,
) -> Result<M, DecodeError> {
    M::decode(any.value.as_slice()).map_err(|reason| DecodeError {
        kind,
        name: name.to_owned(),
        reason,
    })
}
