//! `grpc` targets → what proxyless gRPC clients fetch (gRFC A27, A28).
//!
//! A gRPC client dialling `xds:///greeter` asks LDS for `greeter`, then
//! the route configuration that names, then the clusters its routes use,
//! then their load assignments. Each target becomes:
//!
//! - a Listener named after the target holding only an `api_listener`:
//!   an HTTP connection manager fetching its routes over RDS (ADS), with
//!   the router as its last HTTP filter, as gRPC requires, after the
//!   fault filter when a route injects faults (gRFC A33);
//! - a RouteConfiguration named after the target, one virtual host whose
//!   one domain is the target, the rules' routes in order; a route's
//!   `timeout` is `max_stream_duration`, which gRPC reads (not `timeout`),
//!   a `retry` is the route's retry policy (gRFC A44: status codes,
//!   retries, backoff), and `hash` its hash policies (A42: headers);
//! - the clusters of every service its routes reach, as for Envoys (the
//!   service and each subset), round robin or ring hash, with the
//!   service's outlier detection (A50) and nothing gRPC does not take (no
//!   connect timeout, circuit breakers, health checks, TLS);
//! - their load assignments, which gRPC reads differently from Envoy: it
//!   skips a locality without a weight, refuses one without a `locality`,
//!   and refuses gaps between priorities. Every group of endpoints
//!   therefore carries a locality (empty when the endpoints have none),
//!   a weight (the rules' `locality_weights` when set, which leave out
//!   the localities they do not list, as Envoy does; otherwise the sum of
//!   its endpoints' weights, so that a client spreads RPCs over endpoints
//!   as an Envoy's round robin does), and its priority renumbered densely.
//!
//! gRPC clients get their own snapshots, keyed `grpc:<group>` and
//! `grpc:*` in [`Snapshots::groups`](crate::xds::Snapshots) (see
//! [`crate::xds::resource::GRPC_GROUP_PREFIX`]); an Envoy never receives
//! them. The same invariant checks as an Envoy group's run on them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::Locality;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    retry_policy::RetryBackOff, route, route_action, RetryPolicy, Route, RouteAction,
    RouteConfiguration, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::util::pack_any;
use prost::Message;

use super::cluster::{backends_of, endpoint_groups, lb_endpoint, locality_weight};
use super::listener::ROUTER_FILTER;
use super::route::{cluster_specifier, route_match, BuiltRoutes};
use super::route_policy::FAULT_FILTER;
use super::{ads_config_source, check, encode_all, pb_duration, CompileError, GroupResources};
use crate::model;
use crate::xds::resource::{grpc_group_key, GRPC_FALLBACK_GROUP};
use crate::xds::{Resource, Snapshot};

/// The gRPC clients' snapshots of `config`, by their keys in
/// `Snapshots::groups`: one per node group a target names, and the
/// fallback (the targets without `groups`). None without targets.
pub(super) fn snapshots(
    config: &model::Config,
) -> Result<BTreeMap<String, Arc<Snapshot>>, CompileError> {
    let mut out = BTreeMap::new();
    if config.grpc.is_empty() {
        return Ok(out);
    }
    let groups: BTreeSet<&str> = config
        .grpc
        .iter()
        .flat_map(|t| t.groups.iter().flatten())
        .map(String::as_str)
        .collect();
    for group in groups {
        let key = grpc_group_key(group);
        let targets: Vec<&model::GrpcTarget> = config
            .grpc
            .iter()
            .filter(|t| t.serves_group(group))
            .collect();
        let snapshot = snapshot(config, &key, &targets)?;
        out.insert(key, Arc::new(snapshot));
    }
    let fallback: Vec<&model::GrpcTarget> =
        config.grpc.iter().filter(|t| t.groups.is_none()).collect();
    let snapshot = snapshot(config, GRPC_FALLBACK_GROUP, &fallback)?;
    out.insert(GRPC_FALLBACK_GROUP.to_owned(), Arc::new(snapshot));
    Ok(out)
}

fn snapshot(
    config: &model::Config,
    key: &str,
    targets: &[&model::GrpcTarget],
) -> Result<Snapshot, CompileError> {
    let mut res = GroupResources::default();
    for service in referenced_services(config, targets)? {
        for backend in backends_of(service) {
            res.clusters.push(grpc_cluster(service, &backend)?);
            let cla = load_assignment(service, &backend);
            res.endpoints
                .push(Resource::encode(cla.cluster_name.clone(), &cla));
        }
    }
    for t in targets {
        res.listeners.push(listener(t));
        let rc = route_configuration(t)?;
        // No map fields (no per-filter configs): prost's encoding is
        // deterministic.
        let body = rc.encode_to_vec();
        res.routes.push(BuiltRoutes::of(&rc, body));
    }
    check::invariants(key, &res)?;
    let cds = encode_all(&res.clusters, |c| &c.name);
    let lds = encode_all(&res.listeners, |l| &l.name);
    let rds = res
        .routes
        .into_iter()
        .map(|r| Resource::from_bytes(r.name, r.body))
        .collect();
    Ok(Snapshot::new([
        Vec::new(),
        Vec::new(),
        cds,
        res.endpoints,
        lds,
        rds,
    ]))
}

/// The services `targets`' routes reach, in name order.
fn referenced_services<'a>(
    config: &'a model::Config,
    targets: &[&model::GrpcTarget],
) -> Result<Vec<&'a model::Service>, CompileError> {
    let mut found = BTreeMap::new();
    for t in targets {
        for r in &t.routes {
            for backend in r.action.backends() {
                let service = config.services.get(&backend.service).ok_or_else(|| {
                    CompileError::UnknownService {
                        listener: t.name.clone(),
                        route: r.name.clone(),
                        service: backend.service.clone(),
                    }
                })?;
                found.insert(service.name.as_str(), service.as_ref());
            }
        }
    }
    Ok(found.into_values().collect())
}

fn listener(t: &model::GrpcTarget) -> Listener {
    let filter = |name: &str, config| HttpFilter {
        name: name.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    };
    // The fault filter only where a route injects faults (each route
    // carries its own settings), before the router, which comes last.
    let mut http_filters = Vec::new();
    if t.routes.iter().any(|r| r.fault.is_some()) {
        http_filters.push(filter(FAULT_FILTER, pack_any(HttpFault::default())));
    }
    http_filters.push(filter(ROUTER_FILTER, pack_any(Router::default())));
    let hcm = HttpConnectionManager {
        stat_prefix: t.name.clone(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: t.name.clone(),
        })),
        http_filters,
        ..Default::default()
    };
    Listener {
        name: t.name.clone(),
        api_listener: Some(ApiListener {
            api_listener: Some(pack_any(hcm)),
        }),
        ..Default::default()
    }
}

fn route_configuration(t: &model::GrpcTarget) -> Result<RouteConfiguration, CompileError> {
    let routes = t
        .routes
        .iter()
        .map(|r| grpc_route(t, r))
        .collect::<Result<_, _>>()?;
    Ok(RouteConfiguration {
        name: t.name.clone(),
        virtual_hosts: vec![VirtualHost {
            name: t.name.clone(),
            domains: vec![t.name.clone()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn grpc_route(t: &model::GrpcTarget, r: &model::GrpcRoute) -> Result<Route, CompileError> {
    let max_stream_duration = r
        .timeout
        .map(|d| {
            pb_duration(d, || {
                format!("gRPC target {:?} route {:?} timeout", t.name, r.name)
            })
        })
        .transpose()?
        .map(|d| route_action::MaxStreamDuration {
            max_stream_duration: Some(d),
            ..Default::default()
        });
    let retry_policy = r
        .retry
        .as_ref()
        .map(|retry| {
            let context = || format!("gRPC target {:?} route {:?} retry backoff", t.name, r.name);
            let retry_back_off = retry
                .backoff
                .map(|(base, max)| {
                    Ok::<_, CompileError>(RetryBackOff {
                        base_interval: Some(pb_duration(base, context)?),
                        max_interval: Some(pb_duration(max, context)?),
                    })
                })
                .transpose()?;
            Ok::<_, CompileError>(RetryPolicy {
                retry_on: retry.on.join(","),
                num_retries: Some(UInt32Value {
                    value: retry.attempts,
                }),
                retry_back_off,
                ..Default::default()
            })
        })
        .transpose()?;
    let ctx = |field: &str| format!("gRPC target {:?} route {:?} {field}", t.name, r.name);
    let hash_policy = r
        .hash
        .iter()
        .map(|h| super::route_policy::hash_policy(h, &ctx))
        .collect::<Result<Vec<_>, _>>()?;
    let typed_per_filter_config = match &r.fault {
        Some(f) => [(
            FAULT_FILTER.to_owned(),
            pack_any(super::route_policy::fault(f, &ctx)?),
        )]
        .into(),
        None => Default::default(),
    };
    Ok(Route {
        name: r.name.clone(),
        r#match: Some(route_match(&r.matcher)),
        typed_per_filter_config,
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(cluster_specifier(&r.action)),
            max_stream_duration,
            retry_policy,
            hash_policy,
            ..Default::default()
        })),
        ..Default::default()
    })
}

/// Round robin, or ring hash (gRFC A42; gRPC hashes with xxHash, Envoy's
/// default, and takes its own ring sizes): the rules refuse other
/// policies on services gRPC routes reach. The service's outlier
/// detection goes as an Envoy's (gRFC A50): gRPC applies its success-rate
/// and failure-percentage detectors and ignores the consecutive-error
/// ones, which the same proto switches off for it when the rules name
/// only those.
fn grpc_cluster(
    service: &model::Service,
    backend: &model::Backend,
) -> Result<Cluster, CompileError> {
    let lb_policy = match service.lb_policy {
        model::LbPolicy::RingHash => cluster::LbPolicy::RingHash,
        _ => cluster::LbPolicy::RoundRobin,
    };
    let outlier_detection = service
        .policy
        .outlier_detection
        .as_ref()
        .map(|o| {
            super::cluster_policy::outlier_detection(
                o,
                &format!("service {:?} outlier_detection", service.name),
            )
        })
        .transpose()?;
    Ok(Cluster {
        name: backend.cluster_name(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads_config_source()),
            service_name: String::new(),
        }),
        lb_policy: lb_policy as i32,
        outlier_detection,
        ..Default::default()
    })
}

/// The load assignment as gRPC reads it (see the module doc).
fn load_assignment(service: &model::Service, backend: &model::Backend) -> ClusterLoadAssignment {
    let weighted = matches!(
        service.policy.locality_lb.as_deref(),
        Some(model::LocalityLb::Weighted(_))
    );
    let mut groups = Vec::new();
    for ((priority, locality), eps) in endpoint_groups(service, backend) {
        let weight = if weighted {
            match locality_weight(service, locality) {
                Some(w) => w.value,
                // Not listed: no traffic, as in Envoy.
                None => continue,
            }
        } else {
            eps.iter()
                .fold(0u32, |sum, ep| sum.saturating_add(ep.weight))
                .max(1)
        };
        groups.push((priority, locality, weight, eps));
    }
    let priorities: BTreeSet<u32> = groups.iter().map(|g| g.0).collect();
    let dense = |p: u32| {
        let rank = priorities.iter().take_while(|&&q| q < p).count();
        u32::try_from(rank).unwrap_or(u32::MAX)
    };
    let endpoints = groups
        .into_iter()
        .map(|(priority, locality, weight, eps)| LocalityLbEndpoints {
            locality: Some(locality.map_or_else(Locality::default, |l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                sub_zone: l.sub_zone.clone(),
            })),
            lb_endpoints: eps.into_iter().map(lb_endpoint).collect(),
            load_balancing_weight: Some(UInt32Value { value: weight }),
            priority: dense(priority),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: backend.cluster_name(),
        endpoints,
        ..Default::default()
    }
}
