//! Services → EDS clusters and their `ClusterLoadAssignment`s.
//!
//! Each service a group's routes reach becomes one cluster named after the
//! service, plus one per declared subset (`service~subset`, see
//! [`model::Backend::cluster_name`]), whether or not a route names that
//! subset, so that a canary can move weight onto a subset without first
//! waiting for a new cluster to warm. Every cluster is EDS over ADS and gets
//! a load assignment, even an empty one, so Envoy's cluster warming finishes.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{HealthStatus, Locality};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::{ads_config_source, cluster_policy, pb_duration, socket_address, CompileError};
use crate::model;

/// The services reached by any route of `listeners`, in name order.
pub(super) fn referenced_services<'a>(
    config: &'a model::Config,
    listeners: &[&model::Listener],
) -> Result<Vec<&'a model::Service>, CompileError> {
    let mut found: BTreeMap<&str, &model::Service> = BTreeMap::new();
    for l in listeners {
        for route in l.virtual_hosts.iter().flat_map(|vh| &vh.routes) {
            for backend in route.all_backends() {
                let service = config.services.get(&backend.service).ok_or_else(|| {
                    CompileError::UnknownService {
                        listener: l.name.clone(),
                        route: route.name.clone(),
                        service: backend.service.clone(),
                    }
                })?;
                found.insert(&service.name, service);
            }
        }
    }
    Ok(found.into_values().collect())
}

/// The backends a service is published as: the whole service, then each
/// subset in name order.
pub(super) fn backends_of(service: &model::Service) -> Vec<model::Backend> {
    std::iter::once(None)
        .chain(service.subsets.keys().map(|s| Some(s.clone())))
        .map(|subset| model::Backend {
            service: service.name.clone(),
            subset,
        })
        .collect()
}

pub(super) fn cluster(
    service: &model::Service,
    backend: &model::Backend,
) -> Result<Cluster, CompileError> {
    let name = backend.cluster_name();
    let connect_timeout = pb_duration(service.connect_timeout, || {
        format!("service {:?} connect_timeout", service.name)
    })?;
    let mut c = Cluster {
        name,
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads_config_source()),
            // Empty: Envoy asks EDS for the cluster's own name.
            service_name: String::new(),
        }),
        connect_timeout: Some(connect_timeout),
        lb_policy: lb_policy(service.lb_policy) as i32,
        ..Default::default()
    };
    cluster_policy::apply(service, &mut c)?;
    Ok(c)
}

fn lb_policy(policy: model::LbPolicy) -> cluster::LbPolicy {
    match policy {
        model::LbPolicy::RoundRobin => cluster::LbPolicy::RoundRobin,
        model::LbPolicy::LeastRequest => cluster::LbPolicy::LeastRequest,
        model::LbPolicy::Random => cluster::LbPolicy::Random,
        model::LbPolicy::RingHash => cluster::LbPolicy::RingHash,
        model::LbPolicy::Maglev => cluster::LbPolicy::Maglev,
    }
}

/// A service's endpoints for `backend`, grouped by (priority, locality) in
/// that order, each group's endpoints in the order the service lists them.
pub(super) type Groups<'a> = BTreeMap<(u32, Option<&'a model::Locality>), Vec<&'a model::Endpoint>>;

pub(super) fn endpoint_groups<'a>(
    service: &'a model::Service,
    backend: &model::Backend,
) -> Groups<'a> {
    type Key<'a> = (u32, Option<&'a model::Locality>);
    let mut groups: Groups<'a> = BTreeMap::new();
    // Registries list endpoints of one locality together: collect runs
    // of the same key and touch the map once per run.
    let mut run: Option<(Key<'a>, Vec<&'a model::Endpoint>)> = None;
    for ep in service.endpoints_for(backend.subset.as_deref()) {
        let key = (ep.priority, ep.locality.as_deref());
        match &mut run {
            Some((k, eps)) if *k == key => eps.push(ep),
            _ => {
                if let Some((k, eps)) = run.replace((key, vec![ep])) {
                    groups.entry(k).or_default().extend(eps);
                }
            }
        }
    }
    if let Some((k, eps)) = run {
        groups.entry(k).or_default().extend(eps);
    }
    groups
}

pub(super) fn lb_endpoint(ep: &model::Endpoint) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(socket_address(ep.address, ep.port)),
            ..Default::default()
        })),
        health_status: health_status(ep.health) as i32,
        load_balancing_weight: Some(UInt32Value { value: ep.weight }),
        ..Default::default()
    }
}

/// One (priority, locality) group without its endpoints.
pub(super) fn locality_group(
    service: &model::Service,
    priority: u32,
    locality: Option<&model::Locality>,
) -> LocalityLbEndpoints {
    LocalityLbEndpoints {
        locality: locality.map(|l| Locality {
            region: l.region.clone(),
            zone: l.zone.clone(),
            sub_zone: l.sub_zone.clone(),
        }),
        load_balancing_weight: locality_weight(service, locality),
        priority,
        ..Default::default()
    }
}

/// The load assignment as a prost message. `compile` encodes it faster
/// from cached endpoint bytes (`eds`); this is the reference that
/// encoding is tested against.
#[cfg(test)]
pub(super) fn load_assignment(
    service: &model::Service,
    backend: &model::Backend,
) -> envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment {
    let endpoints = endpoint_groups(service, backend)
        .into_iter()
        .map(|((priority, locality), eps)| LocalityLbEndpoints {
            lb_endpoints: eps.into_iter().map(lb_endpoint).collect(),
            ..locality_group(service, priority, locality)
        })
        .collect();
    envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment {
        cluster_name: backend.cluster_name(),
        endpoints,
        ..Default::default()
    }
}

/// With locality-weighted balancing, the weight the rules give this
/// locality; Envoy sends nothing to a locality without one.
pub(super) fn locality_weight(
    service: &model::Service,
    locality: Option<&model::Locality>,
) -> Option<UInt32Value> {
    let Some(model::LocalityLb::Weighted(weights)) = service.policy.locality_lb.as_deref() else {
        return None;
    };
    let here = locality.cloned().unwrap_or_default();
    weights
        .iter()
        .find(|w| w.locality == here)
        .map(|w| UInt32Value { value: w.weight })
}

fn health_status(h: model::Health) -> HealthStatus {
    match h {
        model::Health::Unknown => HealthStatus::Unknown,
        model::Health::Healthy => HealthStatus::Healthy,
        model::Health::Degraded => HealthStatus::Degraded,
        model::Health::Unhealthy => HealthStatus::Unhealthy,
        model::Health::Draining => HealthStatus::Draining,
    }
}
