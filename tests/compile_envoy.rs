//! Real Envoy accepts what `compile` produces (DESIGN.md invariant 1).
//!
//! Envoy's `--mode validate` checks a bootstrap, not an xDS stream, so each
//! group's decoded resources are placed in a binary-proto bootstrap (`.pb`)
//! twice over:
//! - as sent: the EDS clusters and RDS listeners unchanged, with an ADS
//!   config pointing at a static `sluice_xds` cluster;
//! - inlined: each cluster made STATIC with its `ClusterLoadAssignment` as
//!   `load_assignment`, and each listener's route configuration inlined into
//!   its HTTP connection manager, so Envoy validates endpoints and routes too
//!   (including that every routed cluster exists).

use envoy_types::pb::envoy::config::bootstrap::v3::{bootstrap, Bootstrap};
use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions;
use envoy_types::pb::envoy::config::core::v3::{
    address, api_config_source::ApiType, grpc_service, socket_address, Address, ApiConfigSource,
    ApiVersion, GrpcService, Node, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options::{
        explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
    },
    HttpProtocolOptions,
};
use envoy_types::util::pack_any;
use prost::Message;
use sluice::compile::compile;
use sluice::xds::{Snapshot, TypeUrl};

mod fixtures;
mod real_envoy;

fn decoded<M: Message + Default>(snap: &Snapshot, ty: TypeUrl) -> Vec<M> {
    snap.resources(ty)
        .values()
        .map(|r| M::decode(r.body.clone()).expect("decodes"))
        .collect()
}

fn xds_cluster() -> Cluster {
    let endpoint = LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: "127.0.0.1".into(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(18000)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let http2 = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    Cluster {
        name: "sluice_xds".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        typed_extension_protocol_options: [(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
            pack_any(http2),
        )]
        .into(),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: "sluice_xds".into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![endpoint],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node() -> Node {
    Node {
        id: "validate".into(),
        cluster: "validate".into(),
        ..Default::default()
    }
}

fn as_sent(snap: &Snapshot) -> Bootstrap {
    let mut clusters: Vec<Cluster> = decoded(snap, TypeUrl::Cluster);
    clusters.push(xds_cluster());
    Bootstrap {
        node: Some(node()),
        static_resources: Some(bootstrap::StaticResources {
            clusters,
            listeners: decoded(snap, TypeUrl::Listener),
            ..Default::default()
        }),
        dynamic_resources: Some(bootstrap::DynamicResources {
            ads_config: Some(ApiConfigSource {
                api_type: ApiType::Grpc as i32,
                transport_api_version: ApiVersion::V3 as i32,
                grpc_services: vec![GrpcService {
                    target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                        grpc_service::EnvoyGrpc {
                            cluster_name: "sluice_xds".into(),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn inlined(snap: &Snapshot) -> Bootstrap {
    let clusters = decoded::<Cluster>(snap, TypeUrl::Cluster)
        .into_iter()
        .map(|mut c| {
            let cla: ClusterLoadAssignment = Message::decode(
                snap.get(TypeUrl::Endpoint, &c.name)
                    .expect("cla")
                    .body
                    .clone(),
            )
            .expect("decodes");
            c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Static as i32,
            ));
            c.eds_cluster_config = None;
            c.load_assignment = Some(cla);
            c
        })
        .collect();
    let listeners = decoded::<Listener>(snap, TypeUrl::Listener)
        .into_iter()
        .map(|mut l| {
            let f = &mut l.filter_chains[0].filters[0];
            let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
                panic!("no typed_config");
            };
            let mut hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("hcm");
            let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier else {
                panic!("not RDS");
            };
            let rc: RouteConfiguration = Message::decode(
                snap.get(TypeUrl::Route, &rds.route_config_name)
                    .expect("route config")
                    .body
                    .clone(),
            )
            .expect("decodes");
            hcm.route_specifier = Some(RouteSpecifier::RouteConfig(rc));
            *any = pack_any(hcm);
            l
        })
        .collect();
    Bootstrap {
        node: Some(node()),
        static_resources: Some(bootstrap::StaticResources {
            clusters,
            listeners,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn envoy_accepts_every_compiled_group() {
    let snaps = compile(&fixtures::mk_rich_config()).expect("compiles");
    let dir = tempfile::tempdir().expect("tempdir");
    for (group, snap) in fixtures::each_snapshot(&snaps) {
        for (kind, b) in [("as-sent", as_sent(snap)), ("inlined", inlined(snap))] {
            let path = dir
                .path()
                .join(format!("{}-{kind}.pb", group.trim_matches(['(', ')'])));
            std::fs::write(&path, b.encode_to_vec()).expect("write");
            real_envoy::assert_envoy_accepts(&path);
        }
    }
}

/// `examples/policy.yaml` uses every traffic-policy option (health checks,
/// outlier detection, circuit breakers, balancing options, hash policies,
/// mirroring, faults, header edits, rewrites, redirects, direct responses,
/// CORS, WebSocket, HTTP/2 and TLS upstreams, access logs); Envoy must
/// accept what it compiles to.
#[test]
fn envoy_accepts_every_traffic_policy_option() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy.yaml");
    let config = sluice::rules::load_file(&path).expect("policy example is valid");
    let snaps = compile(&config).expect("compiles");
    let dir = tempfile::tempdir().expect("tempdir");
    for (kind, b) in [
        ("as-sent", as_sent(&snaps.fallback)),
        ("inlined", inlined(&snaps.fallback)),
    ] {
        let path = dir.path().join(format!("policy-{kind}.pb"));
        std::fs::write(&path, b.encode_to_vec()).expect("write");
        real_envoy::assert_envoy_accepts(&path);
    }
}
