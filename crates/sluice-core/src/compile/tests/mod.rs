use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, ApiVersion, ConfigSource,
};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener as EnvoyListener};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, query_parameter_matcher::QueryParameterMatchSpecifier,
    route, route_action, route_match::PathSpecifier, RouteAction as EnvoyRouteAction,
    RouteConfiguration,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::{CodecType, RouteSpecifier},
    http_filter, HttpConnectionManager,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use prost::Message;

use super::*;
use crate::model::*;

mod checks;
mod eds;
mod grpc;
mod incremental;
mod lua;
mod policy;
mod routes;
mod tls;

// ---- fixtures ----

fn mk_endpoint(last_octet: u8, port: u16, labels: &[(&str, &str)], weight: u32) -> Endpoint {
    Endpoint {
        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)),
        port,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        weight,
        health: Health::Healthy,
        locality: None,
        priority: 0,
    }
}

type Selector<'a> = (&'a str, &'a [(&'a str, &'a str)]);

fn mk_service(name: &str, endpoints: Vec<Endpoint>, subsets: &[Selector<'_>]) -> Service {
    Service {
        name: name.to_owned(),
        connect_timeout: Duration::from_millis(250),
        lb_policy: LbPolicy::RoundRobin,
        endpoints: Arc::new(endpoints),
        discovery: Vec::new(),
        subsets: subsets
            .iter()
            .map(|(subset, sel)| {
                let sel = sel.iter().map(|(k, v)| (k.to_string(), v.to_string()));
                (subset.to_string(), sel.collect())
            })
            .collect(),
        policy: ServicePolicy::default().into(),
    }
}

fn mk_backend(service: &str, subset: Option<&str>) -> Backend {
    Backend {
        service: service.to_owned(),
        subset: subset.map(str::to_owned),
    }
}

fn mk_route(name: &str, path: PathMatch, action: RouteAction) -> Route {
    Route {
        name: name.to_owned(),
        matcher: RouteMatch {
            path,
            headers: vec![],
            query: vec![],
        },
        action,
        timeout: None,
        retry: None,
        filters: Default::default(),
        policy: RoutePolicy::default(),
    }
}

fn mk_to(service: &str) -> RouteAction {
    RouteAction::Backend(mk_backend(service, None))
}

fn mk_listener(name: &str, port: u16, groups: Option<&[&str]>, routes: Vec<Route>) -> Listener {
    Listener {
        name: name.to_owned(),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        groups: groups.map(|g| g.iter().map(|s| s.to_string()).collect()),
        virtual_hosts: vec![VirtualHost {
            name: "default".to_owned(),
            domains: vec!["*".to_owned()],
            routes,
            filters: Default::default(),
        }],
        access_log: AccessLog::default(),
        tls: None,
    }
}

fn mk_config(services: Vec<Service>, listeners: Vec<Listener>) -> Config {
    Config {
        services: services
            .into_iter()
            .map(|s| (s.name.clone(), Arc::new(s)))
            .collect(),
        listeners: Arc::new(listeners),
        sources: Default::default(),
        runtime: Default::default(),
        xds_access: Default::default(),
        grpc: Default::default(),
    }
}

/// One listener on every group, routing `/` to `api`, which has a `v2`
/// subset selecting one of its two endpoints.
fn mk_simple() -> Config {
    let api = mk_service(
        "api",
        vec![
            mk_endpoint(1, 8080, &[("version", "v1")], 1),
            mk_endpoint(2, 8080, &[("version", "v2")], 3),
        ],
        &[("v2", &[("version", "v2")])],
    );
    let l = mk_listener(
        "http",
        10000,
        None,
        vec![mk_route("all", PathMatch::Prefix("/".into()), mk_to("api"))],
    );
    mk_config(vec![api], vec![l])
}

// ---- decoding helpers ----

fn decode<M: Message + Default>(snap: &Snapshot, ty: TypeUrl, name: &str) -> M {
    let res = snap
        .get(ty, name)
        .unwrap_or_else(|| panic!("no {ty} resource {name:?}"));
    M::decode(res.body.clone()).expect("decodes")
}

fn names(snap: &Snapshot, ty: TypeUrl) -> Vec<&str> {
    snap.resources(ty).keys().map(String::as_str).collect()
}

fn first_route_action(rc: &RouteConfiguration, index: usize) -> &EnvoyRouteAction {
    match &rc.virtual_hosts[0].routes[index].action {
        Some(route::Action::Route(a)) => a,
        other => panic!("not a route action: {other:?}"),
    }
}

fn hcm_of(l: &EnvoyListener) -> HttpConnectionManager {
    let f = &l.filter_chains[0].filters[0];
    assert_eq!(f.name, "envoy.filters.network.http_connection_manager");
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("no typed_config");
    };
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
    HttpConnectionManager::decode(any.value.as_slice()).expect("hcm decodes")
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(
            config_source::ConfigSourceSpecifier::Ads(Default::default()),
        ),
        ..Default::default()
    }
}

// ---- clusters and endpoints ----

#[test]
fn service_and_subset_clusters_are_eds_over_ads() {
    let snaps = compile(&mk_simple()).expect("compiles");
    let snap = &snaps.fallback;
    assert_eq!(names(snap, TypeUrl::Cluster), ["api", "api~v2"]);
    assert_eq!(names(snap, TypeUrl::Endpoint), ["api", "api~v2"]);
    for name in ["api", "api~v2"] {
        let c: Cluster = decode(snap, TypeUrl::Cluster, name);
        assert_eq!(c.name, name);
        assert_eq!(
            c.cluster_discovery_type,
            Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32
            ))
        );
        let eds = c.eds_cluster_config.expect("eds config");
        assert_eq!(eds.eds_config, Some(ads()));
        assert_eq!(eds.service_name, "");
        assert_eq!(
            c.connect_timeout,
            Some(PbDuration {
                seconds: 0,
                nanos: 250_000_000
            })
        );
        assert_eq!(c.lb_policy, cluster::LbPolicy::RoundRobin as i32);
    }
}

#[test]
fn lb_policies_map_to_the_enum() {
    let cases = [
        (LbPolicy::RoundRobin, cluster::LbPolicy::RoundRobin),
        (LbPolicy::LeastRequest, cluster::LbPolicy::LeastRequest),
        (LbPolicy::Random, cluster::LbPolicy::Random),
        (LbPolicy::RingHash, cluster::LbPolicy::RingHash),
        (LbPolicy::Maglev, cluster::LbPolicy::Maglev),
    ];
    for (model, envoy) in cases {
        let mut config = mk_simple();
        config.service_mut("api").expect("api").lb_policy = model;
        let snaps = compile(&config).expect("compiles");
        let c: Cluster = decode(&snaps.fallback, TypeUrl::Cluster, "api");
        assert_eq!(c.lb_policy, envoy as i32, "{model:?}");
    }
}

fn endpoints_of(cla: &ClusterLoadAssignment) -> Vec<(String, u32, u32)> {
    assert!(
        cla.endpoints.len() <= 1,
        "one LocalityLbEndpoints without localities"
    );
    cla.endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .map(|lb| {
            let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &lb.host_identifier else {
                panic!("no endpoint");
            };
            let Some(address::Address::SocketAddress(sa)) =
                ep.address.as_ref().and_then(|a| a.address.clone())
            else {
                panic!("no socket address");
            };
            let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier else {
                panic!("no port");
            };
            let weight = lb.load_balancing_weight.as_ref().expect("weight").value;
            (sa.address, port, weight)
        })
        .collect()
}

#[test]
fn load_assignments_select_subset_endpoints_with_weights() {
    let snaps = compile(&mk_simple()).expect("compiles");
    let all: ClusterLoadAssignment = decode(&snaps.fallback, TypeUrl::Endpoint, "api");
    assert_eq!(all.cluster_name, "api");
    assert_eq!(
        endpoints_of(&all),
        [("10.0.0.1".into(), 8080, 1), ("10.0.0.2".into(), 8080, 3)]
    );
    let v2: ClusterLoadAssignment = decode(&snaps.fallback, TypeUrl::Endpoint, "api~v2");
    assert_eq!(v2.cluster_name, "api~v2");
    assert_eq!(endpoints_of(&v2), [("10.0.0.2".into(), 8080, 3)]);
}

#[test]
fn clusters_without_endpoints_still_get_an_empty_load_assignment() {
    let mut config = mk_simple();
    let api = config.service_mut("api").expect("api");
    api.subsets.insert(
        "canary".into(),
        BTreeMap::from([("version".into(), "v3".into())]),
    );
    config
        .services
        .insert("idle".into(), Arc::new(mk_service("idle", vec![], &[])));
    config.listeners_mut()[0].virtual_hosts[0]
        .routes
        .push(mk_route(
            "idle",
            PathMatch::Exact("/idle".into()),
            mk_to("idle"),
        ));
    let snaps = compile(&config).expect("compiles");
    for name in ["api~canary", "idle"] {
        let cla: ClusterLoadAssignment = decode(&snaps.fallback, TypeUrl::Endpoint, name);
        assert_eq!(cla.cluster_name, name);
        assert_eq!(endpoints_of(&cla), []);
    }
}

#[test]
fn unreferenced_services_get_no_cluster() {
    let mut config = mk_simple();
    config
        .services
        .insert("unused".into(), Arc::new(mk_service("unused", vec![], &[])));
    let snaps = compile(&config).expect("compiles");
    assert_eq!(names(&snaps.fallback, TypeUrl::Cluster), ["api", "api~v2"]);
}

// ---- listeners ----

#[test]
fn listener_uses_hcm_with_rds_over_ads_and_the_router() {
    let snaps = compile(&mk_simple()).expect("compiles");
    let l: EnvoyListener = decode(&snaps.fallback, TypeUrl::Listener, "http");
    let Some(address::Address::SocketAddress(sa)) = l.address.clone().and_then(|a| a.address)
    else {
        panic!("no socket address");
    };
    assert_eq!(sa.address, "127.0.0.1");
    assert_eq!(
        sa.port_specifier,
        Some(socket_address::PortSpecifier::PortValue(10000))
    );
    assert_eq!(l.filter_chains.len(), 1);
    let hcm = hcm_of(&l);
    assert_eq!(hcm.stat_prefix, "http");
    assert_eq!(hcm.codec_type, CodecType::Auto as i32);
    let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier else {
        panic!("not RDS");
    };
    assert_eq!(rds.route_config_name, "http");
    assert_eq!(rds.config_source, Some(ads()));
    assert_eq!(hcm.http_filters.len(), 1);
    let router = &hcm.http_filters[0];
    assert_eq!(router.name, "envoy.filters.http.router");
    let Some(http_filter::ConfigType::TypedConfig(any)) = &router.config_type else {
        panic!("router has no typed_config");
    };
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    );
    assert_eq!(
        Router::decode(any.value.as_slice()).expect("router"),
        Router::default()
    );
}

// ---- groups ----

#[test]
fn groups_get_their_listeners_and_fallback_gets_ungrouped_ones() {
    let services = vec![
        mk_service("a", vec![], &[]),
        mk_service("b", vec![], &[]),
        mk_service("c", vec![], &[]),
    ];
    let prefix = || PathMatch::Prefix("/".into());
    let listeners = vec![
        mk_listener("all", 1, None, vec![mk_route("r", prefix(), mk_to("a"))]),
        mk_listener(
            "edge",
            2,
            Some(&["edge"]),
            vec![mk_route("r", prefix(), mk_to("b"))],
        ),
        mk_listener(
            "both",
            3,
            Some(&["edge", "mesh"]),
            vec![mk_route("r", prefix(), mk_to("c"))],
        ),
    ];
    let snaps = compile(&mk_config(services, listeners)).expect("compiles");
    assert_eq!(
        snaps.groups.keys().map(String::as_str).collect::<Vec<_>>(),
        ["edge", "mesh"]
    );
    let edge = &snaps.groups["edge"];
    assert_eq!(names(edge, TypeUrl::Listener), ["all", "both", "edge"]);
    assert_eq!(names(edge, TypeUrl::Route), ["all", "both", "edge"]);
    assert_eq!(names(edge, TypeUrl::Cluster), ["a", "b", "c"]);
    let mesh = &snaps.groups["mesh"];
    assert_eq!(names(mesh, TypeUrl::Listener), ["all", "both"]);
    assert_eq!(names(mesh, TypeUrl::Cluster), ["a", "c"]);
    assert_eq!(names(mesh, TypeUrl::Endpoint), ["a", "c"]);
    assert_eq!(names(&snaps.fallback, TypeUrl::Listener), ["all"]);
    assert_eq!(names(&snaps.fallback, TypeUrl::Cluster), ["a"]);
    assert!(Arc::ptr_eq(snaps.for_group("unknown"), &snaps.fallback));
}

#[test]
fn empty_config_gives_an_empty_fallback() {
    let snaps = compile(&mk_config(vec![], vec![])).expect("compiles");
    assert!(snaps.groups.is_empty());
    for ty in TypeUrl::ALL {
        if ty == TypeUrl::Runtime {
            continue;
        }
        assert!(snaps.fallback.resources(ty).is_empty());
    }
    // The RTDS layer bootstraps name is always there, empty: Envoy waits
    // for it before it asks for clusters.
    let rtds = snaps.fallback.resources(TypeUrl::Runtime);
    let layer = rtds
        .get(crate::model::RUNTIME_LAYER)
        .expect("runtime layer");
    let decoded =
        <envoy_types::pb::envoy::service::runtime::v3::Runtime as prost::Message>::decode(
            layer.body.clone(),
        )
        .expect("decodes");
    assert_eq!(decoded.name, crate::model::RUNTIME_LAYER);
    assert_eq!(decoded.layer.map(|l| l.fields.len()), Some(0));
}

#[test]
fn endpoints_group_by_priority_and_locality_with_health() {
    let mut config = mk_simple();
    let api = config.service_mut("api").expect("api");
    let zone = |z: &str| {
        Some(Locality {
            region: "r".into(),
            zone: z.into(),
            sub_zone: String::new(),
        })
    };
    api.endpoints = Arc::new(vec![
        Endpoint {
            locality: zone("b").map(Box::new),
            priority: 1,
            ..mk_endpoint(1, 80, &[], 1)
        },
        Endpoint {
            locality: zone("a").map(Box::new),
            health: Health::Draining,
            ..mk_endpoint(2, 80, &[], 1)
        },
        Endpoint {
            locality: zone("a").map(Box::new),
            health: Health::Degraded,
            ..mk_endpoint(3, 80, &[], 1)
        },
    ]);
    let snaps = compile(&config).expect("compiles");
    let cla: ClusterLoadAssignment = decode(&snaps.fallback, TypeUrl::Endpoint, "api");
    let groups: Vec<(u32, String, Vec<i32>)> = cla
        .endpoints
        .iter()
        .map(|l| {
            let zone = l
                .locality
                .as_ref()
                .map(|l| l.zone.clone())
                .unwrap_or_default();
            (
                l.priority,
                zone,
                l.lb_endpoints.iter().map(|e| e.health_status).collect(),
            )
        })
        .collect();
    use envoy_types::pb::envoy::config::core::v3::HealthStatus as H;
    assert_eq!(
        groups,
        [
            (
                0,
                "a".to_string(),
                vec![H::Draining as i32, H::Degraded as i32]
            ),
            (1, "b".to_string(), vec![H::Healthy as i32]),
        ]
    );
}
