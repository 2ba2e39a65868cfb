//! Unit tests of the simulator's pieces, on Envoy protos built by `mk_*`
//! fixtures (not sluice's compiler, so the simulator is checked against
//! what Envoy's API says, not against sluice's own output) — except
//! `lua`, which decodes what sluice compiles from a rules file.

mod engine;
mod lb;
mod lua;
mod policy;
mod routing;

use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, Address, HealthStatus, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::route::v3::{
    route as pb_route, route_action, route_match, Route, RouteAction, RouteConfiguration,
    RouteMatch, VirtualHost,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use sluice_core::xds::TypeUrl;

use super::resources::{decode, Decoded, SimCluster, SimEndpoints};
use super::route::RouteTable;

pub(crate) fn mk_addr(port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: "127.0.0.1".into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// An RTDS layer `name` holding `keys` as numbers.
pub(crate) fn mk_runtime_pb(
    name: &str,
    keys: &[(&str, f64)],
) -> envoy_types::pb::envoy::service::runtime::v3::Runtime {
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    envoy_types::pb::envoy::service::runtime::v3::Runtime {
        name: name.into(),
        layer: Some(Struct {
            fields: keys
                .iter()
                .map(|(k, v)| {
                    let value = Value {
                        kind: Some(Kind::NumberValue(*v)),
                    };
                    (k.to_string(), value)
                })
                .collect(),
        }),
    }
}

pub(crate) fn mk_cluster_pb(name: &str, lb: cluster::LbPolicy) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(Default::default()),
        lb_policy: lb as i32,
        ..Default::default()
    }
}

pub(crate) fn mk_cluster(name: &str, lb: cluster::LbPolicy) -> Arc<SimCluster> {
    match decode(
        TypeUrl::Cluster,
        &prost::Message::encode_to_vec(&mk_cluster_pb(name, lb)),
    ) {
        Ok(Decoded::Cluster(c)) => c,
        other => panic!("{other:?}"),
    }
}

/// Hosts as (port, weight, health, priority).
pub(crate) fn mk_cla_pb(
    name: &str,
    hosts: &[(u16, u32, HealthStatus, u32)],
) -> ClusterLoadAssignment {
    let mut endpoints: Vec<LocalityLbEndpoints> = Vec::new();
    for (port, weight, health, priority) in hosts {
        let ep = LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(mk_addr(*port)),
                ..Default::default()
            })),
            health_status: *health as i32,
            load_balancing_weight: Some(UInt32Value { value: *weight }),
            ..Default::default()
        };
        match endpoints.iter_mut().find(|l| l.priority == *priority) {
            Some(l) => l.lb_endpoints.push(ep),
            None => endpoints.push(LocalityLbEndpoints {
                lb_endpoints: vec![ep],
                priority: *priority,
                ..Default::default()
            }),
        }
    }
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints,
        ..Default::default()
    }
}

pub(crate) fn mk_endpoints(
    name: &str,
    hosts: &[(u16, u32, HealthStatus, u32)],
) -> Arc<SimEndpoints> {
    match decode(
        TypeUrl::Endpoint,
        &prost::Message::encode_to_vec(&mk_cla_pb(name, hosts)),
    ) {
        Ok(Decoded::Endpoints(e)) => e,
        other => panic!("{other:?}"),
    }
}

pub(crate) fn healthy(ports: &[u16]) -> Vec<(u16, u32, HealthStatus, u32)> {
    ports
        .iter()
        .map(|p| (*p, 1, HealthStatus::Healthy, 0))
        .collect()
}

pub(crate) fn mk_route_to(name: &str, m: route_match::PathSpecifier, cluster: &str) -> Route {
    Route {
        name: name.into(),
        r#match: Some(RouteMatch {
            path_specifier: Some(m),
            ..Default::default()
        }),
        action: Some(pb_route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub(crate) fn mk_vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
        ..Default::default()
    }
}

pub(crate) fn mk_route_config(name: &str, vhosts: Vec<VirtualHost>) -> RouteConfiguration {
    RouteConfiguration {
        name: name.into(),
        virtual_hosts: vhosts,
        ..Default::default()
    }
}

pub(crate) fn mk_table(vhosts: Vec<VirtualHost>) -> RouteTable {
    RouteTable::compile(&mk_route_config("rc", vhosts)).expect("compiles")
}
