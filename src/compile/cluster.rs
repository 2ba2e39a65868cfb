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
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::{ads_config_source, pb_duration, socket_address, CompileError};
use crate::model;

/// The services reached by any route of `listeners`, in name order.
pub(super) fn referenced_services<'a>(
    config: &'a model::Config,
    listeners: &[&model::Listener],
) -> Result<Vec<&'a model::Service>, CompileError> {
    let mut found: BTreeMap<&str, &model::Service> = BTreeMap::new();
    for l in listeners {
        for route in l.virtual_hosts.iter().flat_map(|vh| &vh.routes) {
            for backend in route_backends(&route.action) {
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

fn route_backends(action: &model::RouteAction) -> Vec<&model::Backend> {
    match action {
        model::RouteAction::Backend(b) => vec![b],
        model::RouteAction::Split(split) => split.iter().map(|wb| &wb.backend).collect(),
    }
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
    Ok(Cluster {
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
    })
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

pub(super) fn load_assignment(
    service: &model::Service,
    backend: &model::Backend,
) -> ClusterLoadAssignment {
    let lb_endpoints = service
        .endpoints_for(backend.subset.as_deref())
        .into_iter()
        .map(|ep| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket_address(ep.address, ep.port)),
                ..Default::default()
            })),
            load_balancing_weight: Some(UInt32Value { value: ep.weight }),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: backend.cluster_name(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}
