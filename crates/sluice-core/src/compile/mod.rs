//! Compile a validated [`model::Config`] into Envoy resources per node group.
//!
//! This is a pure function: no I/O, no clocks, no async. Data flows
//! `Config` → typed Envoy protos (`cluster`, `listener`, `route`, and `tls`
//! for the SDS secrets of TLS listeners, whose certificate bytes the caller
//! has already read into the model) → an
//! invariant check on those protos (`check`) → [`Resource::encode`] →
//! [`Snapshot`]s, one per node group named in the rules plus a fallback for
//! proxies whose group the rules never name. A [`Compiler`] that compiled
//! the previous config re-encodes only changed load assignments when
//! nothing but endpoints changed, and rebuilds only the changed route
//! configurations when nothing but routes changed (a canary weight step),
//! or both (`incremental`).
//!
//! Node groups are the names that appear in any listener's `groups`. A group
//! receives every listener that [`model::Listener::serves_group`] says it
//! should, the route configuration of each (named after the listener), and the
//! clusters (and their `ClusterLoadAssignment`s) of every service those routes
//! reach: the service cluster plus one per declared subset. The fallback
//! receives only the listeners with `groups: None`.
//!
//! # Determinism
//!
//! The same `Config` must give byte-identical snapshots in any process, since
//! versions are content hashes. Everything here iterates `Vec`s in file order
//! or `BTreeMap`/`BTreeSet`s in key order. prost encodes protobuf `map` fields
//! (`HashMap`s such as `Metadata.filter_metadata`, `Struct.fields`,
//! `typed_per_filter_config`) in the `HashMap`'s random iteration order, so
//! messages with map fields are encoded by `canonical`, which writes map
//! entries in key order: route configurations (`typed_per_filter_config`)
//! and the RTDS runtime layer (a `Struct`). Whoever adds another map field
//! must encode it there too. `tests/determinism.rs` checks this across
//! processes.
//!
//! Every snapshot holds the one RTDS runtime layer
//! ([`model::RUNTIME_LAYER`], from [`model::Config::runtime`]), empty when
//! no rollout moves weights through the runtime: Envoy waits for its RTDS
//! layers before it initialises clusters, so the layer `sluice bootstrap`
//! names must always exist.

mod access_log;
mod canonical;
mod check;
mod cluster;
mod cluster_policy;
pub mod eds;
mod grpc;
mod incremental;
mod listener;
mod lua;
mod ratelimit;
mod rbac;
mod route;
mod route_policy;
mod tls;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, Address, AggregatedConfigSource, ApiVersion,
    ConfigSource, SocketAddress,
};
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
use envoy_types::pb::google::protobuf::Duration as PbDuration;

use crate::model;
use crate::xds::{Resource, Snapshot, Snapshots, TypeUrl};

/// Why a `Config` could not be compiled. The validator in `rules` should
/// reject every such config first; these are a safety net so that nothing
/// Envoy would reject is ever published (DESIGN.md invariant 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("route {route:?} of listener {listener:?} references unknown service {service:?}")]
    UnknownService {
        listener: String,
        route: String,
        service: String,
    },
    #[error("{context}: duration of {seconds}s is beyond protobuf's range")]
    DurationOutOfRange { context: String, seconds: u64 },
    #[error("group {group}: duplicate {kind} resource {name:?}")]
    DuplicateName {
        group: String,
        kind: TypeUrl,
        name: String,
    },
    #[error("group {group}: listener {listener:?} references missing route configuration {route_config:?}")]
    MissingRouteConfig {
        group: String,
        listener: String,
        route_config: String,
    },
    #[error("group {group}: route configuration {route_config:?} references cluster {cluster:?}, which is not in the group's CDS")]
    MissingCluster {
        group: String,
        route_config: String,
        cluster: String,
    },
    #[error("group {group}: route configuration {route_config:?} has domain {domain:?} in more than one virtual host")]
    DuplicateDomain {
        group: String,
        route_config: String,
        domain: String,
    },
    #[error("group {group}: EDS cluster {cluster:?} has no ClusterLoadAssignment")]
    MissingEndpoints { group: String, cluster: String },
    #[error("group {group}: listener {listener:?} has an HttpConnectionManager or TLS context that does not decode: {reason}")]
    BadFilter {
        group: String,
        listener: String,
        reason: String,
    },
    #[error("listener {listener:?} has TLS but its certificate was not loaded")]
    MissingCertificate { listener: String },
    #[error("group {group}: listener {listener:?} references missing secret {secret:?}")]
    MissingSecret {
        group: String,
        listener: String,
        secret: String,
    },
}

pub use tls::secret_name;

/// The label used for the fallback snapshot in errors.
const FALLBACK: &str = "(fallback)";

/// Compile `config` into one snapshot per node group plus the fallback.
pub fn compile(config: &model::Config) -> Result<Snapshots, CompileError> {
    compile_with(
        config,
        &mut eds::EndpointCache::one_shot(),
        &mut route::RouteCache::one_shot(),
    )
}

/// [`compile`] with memory, for a publisher that compiles on every
/// change. Encoded endpoints are kept from one compile to the next
/// ([`eds::EndpointCache`]), so only endpoints that changed are encoded
/// again; and when a config differs from the last one in endpoints and
/// routes alone, the last snapshots are reused and only the changed load
/// assignments and route configurations are built (`incremental`). The
/// output does not depend on what was kept: the same config gives the
/// same bytes as [`compile`].
#[derive(Debug, Default)]
pub struct Compiler {
    endpoints: eds::EndpointCache,
    /// Compiled routes, so that a rules edit compiles the routes it
    /// changed alone.
    routes: route::RouteCache,
    /// The last config compiled and its snapshots.
    last: Option<(Arc<model::Config>, Snapshots)>,
}

impl Compiler {
    pub fn compile(&mut self, config: &Arc<model::Config>) -> Result<Snapshots, CompileError> {
        let reused = match &self.last {
            Some((prev, out)) if Arc::ptr_eq(prev, config) => Some(out.clone()),
            Some((prev, out)) => {
                incremental::recompile(prev, out, config, &mut self.endpoints, &mut self.routes)?
            }
            None => None,
        };
        let snapshots = match reused {
            Some(snapshots) => snapshots,
            None => {
                self.endpoints.start();
                self.routes.retain(config);
                compile_with(config, &mut self.endpoints, &mut self.routes)?
            }
        };
        self.last = Some((config.clone(), snapshots.clone()));
        Ok(snapshots)
    }
}

fn compile_with(
    config: &model::Config,
    cache: &mut eds::EndpointCache,
    routes: &mut route::RouteCache,
) -> Result<Snapshots, CompileError> {
    let groups: BTreeSet<&str> = config
        .listeners
        .iter()
        .flat_map(|l| l.groups.iter().flatten())
        .map(String::as_str)
        .collect();

    let runtime = runtime_layer(config);
    let mut out = BTreeMap::new();
    for group in groups {
        let listeners: Vec<&model::Listener> = config
            .listeners
            .iter()
            .filter(|l| l.serves_group(group))
            .collect();
        let snapshot = compile_group(config, group, &listeners, &runtime, cache, routes)?;
        out.insert(group.to_owned(), Arc::new(snapshot));
    }

    let fallback: Vec<&model::Listener> = config
        .listeners
        .iter()
        .filter(|l| l.groups.is_none())
        .collect();
    let fallback = compile_group(config, FALLBACK, &fallback, &runtime, cache, routes)?;
    out.extend(grpc::snapshots(config)?);

    Ok(Snapshots {
        groups: out,
        fallback: Arc::new(fallback),
    })
}

/// Typed resources for one group, before encoding.
#[derive(Debug, Default)]
struct GroupResources {
    clusters: Vec<envoy_types::pb::envoy::config::cluster::v3::Cluster>,
    /// Already encoded (see [`eds`]).
    endpoints: Vec<Resource>,
    listeners: Vec<envoy_types::pb::envoy::config::listener::v3::Listener>,
    routes: Vec<route::BuiltRoutes>,
    secrets: Vec<envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret>,
}

fn compile_group(
    config: &model::Config,
    group: &str,
    listeners: &[&model::Listener],
    runtime: &Resource,
    cache: &mut eds::EndpointCache,
    routes: &mut route::RouteCache,
) -> Result<Snapshot, CompileError> {
    let mut res = GroupResources::default();
    for service in cluster::referenced_services(config, listeners)? {
        for backend in cluster::backends_of(service) {
            res.clusters.push(cluster::cluster(service, &backend)?);
            res.endpoints
                .push(eds::load_assignment(service, &backend, cache));
        }
    }
    for l in listeners {
        let filters = route::EffectiveFilters::of(l);
        res.listeners.push(listener::listener(l, &filters)?);
        if let Some(t) = &l.tls {
            res.secrets.push(tls::secret(&l.name, t)?);
        }
        res.routes
            .push(route::route_configuration(l, &filters, routes)?);
    }
    check::invariants(group, &res)?;

    let sds = encode_all(&res.secrets, |s| &s.name);
    let cds = encode_all(&res.clusters, |c| &c.name);

    let lds = encode_all(&res.listeners, |l| &l.name);
    let rds = res
        .routes
        .into_iter()
        .map(|r| Resource::from_bytes(r.name, r.body))
        .collect();
    let rtds = vec![runtime.clone()];
    Ok(Snapshot::new([rtds, sds, cds, res.endpoints, lds, rds]))
}

/// The RTDS runtime layer of `config`.
fn runtime_layer(config: &model::Config) -> Resource {
    Resource::from_bytes(
        model::RUNTIME_LAYER,
        canonical::runtime(model::RUNTIME_LAYER, &config.runtime),
    )
}

fn encode_all<M: prost::Message>(msgs: &[M], name: impl Fn(&M) -> &String) -> Vec<Resource> {
    msgs.iter()
        .map(|m| Resource::encode(name(m).clone(), m))
        .collect()
}

/// The config source every dynamic resource uses: the ADS stream itself.
fn ads_config_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

fn socket_address(ip: IpAddr, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// A regex for Envoy's default engine (RE2).
fn regex(re: &str) -> RegexMatcher {
    RegexMatcher {
        regex: re.to_owned(),
        engine_type: None,
    }
}

/// Largest duration `google.protobuf.Duration` may hold (10,000 years).
const MAX_PB_SECONDS: u64 = 315_576_000_000;

fn pb_duration(d: Duration, context: impl FnOnce() -> String) -> Result<PbDuration, CompileError> {
    if d.as_secs() > MAX_PB_SECONDS {
        return Err(CompileError::DurationOutOfRange {
            context: context(),
            seconds: d.as_secs(),
        });
    }
    Ok(PbDuration {
        // Both conversions are lossless after the range check above:
        // seconds <= MAX_PB_SECONDS < i64::MAX and subsec_nanos() < 1e9.
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    })
}
