//! `grpc` targets: what gRPC clients are served, in the forms gRPC's xDS
//! client accepts, apart from what Envoys are served.

use envoy_types::pb::envoy::config::core::v3::Locality as EnvoyLocality;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;

use super::*;
use crate::xds::resource::{DataPlane, GRPC_FALLBACK_GROUP};

const EXAMPLE: &str = include_str!("../../../../../examples/grpc.yaml");

fn mk_grpc(yaml: &str) -> Snapshots {
    let config = crate::rules::parse("grpc.yaml", yaml).expect("valid rules");
    compile(&config).expect("compiles")
}

fn grpc_fallback(snaps: &Snapshots) -> &Arc<Snapshot> {
    &snaps.groups[GRPC_FALLBACK_GROUP]
}

#[test]
fn a_target_is_an_api_listener_with_rds_over_ads_and_the_router_last() {
    let snaps = mk_grpc(EXAMPLE);
    let snap = grpc_fallback(&snaps);
    assert_eq!(names(snap, TypeUrl::Listener), ["greeter"]);
    let l: EnvoyListener = decode(snap, TypeUrl::Listener, "greeter");
    assert!(l.address.is_none() && l.filter_chains.is_empty());
    let any = l
        .api_listener
        .and_then(|a| a.api_listener)
        .expect("an api_listener");
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("decodes");
    match hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            assert_eq!(rds.route_config_name, "greeter");
            assert_eq!(rds.config_source, Some(ads()));
        }
        other => panic!("not RDS: {other:?}"),
    }
    let last = hcm.http_filters.last().expect("a filter");
    let Some(http_filter::ConfigType::TypedConfig(router)) = &last.config_type else {
        panic!("no typed config");
    };
    assert_eq!(
        router.type_url,
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    );
    assert_eq!(hcm.http_filters.len(), 1);
}

#[test]
fn the_route_configuration_matches_the_target_and_keeps_the_rules_routes() {
    let snaps = mk_grpc(EXAMPLE);
    let rc: RouteConfiguration = decode(grpc_fallback(&snaps), TypeUrl::Route, "greeter");
    assert_eq!(rc.virtual_hosts.len(), 1);
    assert_eq!(rc.virtual_hosts[0].domains, ["greeter"]);
    let routes = &rc.virtual_hosts[0].routes;
    assert_eq!(routes[0].name, "tagged");
    let m = routes[0].r#match.as_ref().expect("match");
    assert_eq!(m.path_specifier, Some(PathSpecifier::Prefix("/".into())));
    assert_eq!(m.headers[0].name, "x-canary");
    assert!(matches!(
        &m.headers[0].header_match_specifier,
        Some(HeaderMatchSpecifier::StringMatch(s))
            if s.match_pattern == Some(MatchPattern::Exact("1".into()))
    ));
    assert_eq!(
        first_route_action(&rc, 0).cluster_specifier,
        Some(ClusterSpecifier::Cluster("greeter~canary".into()))
    );
    let Some(ClusterSpecifier::WeightedClusters(wc)) =
        &first_route_action(&rc, 1).cluster_specifier
    else {
        panic!("not a split");
    };
    let split: Vec<(&str, u32)> = wc
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().map_or(0, |w| w.value)))
        .collect();
    assert_eq!(split, [("greeter~stable", 80), ("greeter~canary", 20)]);
}

#[test]
fn clusters_are_round_robin_eds_and_every_locality_has_a_locality_and_a_weight() {
    let snaps = mk_grpc(EXAMPLE);
    let snap = grpc_fallback(&snaps);
    assert_eq!(
        names(snap, TypeUrl::Cluster),
        ["greeter", "greeter~canary", "greeter~stable"]
    );
    let c: Cluster = decode(snap, TypeUrl::Cluster, "greeter~canary");
    assert_eq!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32
        ))
    );
    assert_eq!(c.lb_policy, cluster::LbPolicy::RoundRobin as i32);
    assert!(c.connect_timeout.is_none() && c.transport_socket.is_none());
    let cla: ClusterLoadAssignment = decode(snap, TypeUrl::Endpoint, "greeter");
    assert_eq!(cla.endpoints.len(), 1);
    let group = &cla.endpoints[0];
    assert_eq!(group.locality, Some(EnvoyLocality::default()));
    // Two endpoints of weight 1.
    assert_eq!(
        group.load_balancing_weight.as_ref().map(|w| w.value),
        Some(2)
    );
    assert_eq!(group.lb_endpoints.len(), 2);
}

#[test]
fn priorities_are_renumbered_without_gaps() {
    let yaml = "services:
  - name: api
    endpoints:
      - {address: 127.0.0.1, port: 9001, priority: 2}
      - {address: 127.0.0.1, port: 9002, priority: 5, locality: {zone: b}}
grpc:
  - target: api
    routes: [{to: {service: api}}]
";
    let snaps = mk_grpc(yaml);
    let cla: ClusterLoadAssignment = decode(grpc_fallback(&snaps), TypeUrl::Endpoint, "api");
    let got: Vec<(u32, String)> = cla
        .endpoints
        .iter()
        .map(|g| (g.priority, g.locality.clone().unwrap_or_default().zone))
        .collect();
    assert_eq!(got, [(0, String::new()), (1, "b".into())]);
}

#[test]
fn envoys_never_get_what_grpc_clients_get_and_the_reverse() {
    let snaps = mk_grpc(EXAMPLE);
    // No listener: Envoys of any group get nothing of the target.
    for group in ["default", GRPC_FALLBACK_GROUP, "grpc:default"] {
        let (_, snap) = snaps.select(DataPlane::Envoy, group);
        assert!(Arc::ptr_eq(snap, &snaps.fallback), "{group}");
        assert!(snap.resources(TypeUrl::Listener).is_empty());
    }
    let (key, snap) = snaps.select(DataPlane::Grpc, "default");
    assert_eq!(key, GRPC_FALLBACK_GROUP);
    assert!(snap.get(TypeUrl::Listener, "greeter").is_some());
    // Without targets a gRPC client gets an empty snapshot, never an
    // Envoy's listeners.
    let envoy_only = compile(&mk_simple()).expect("compiles");
    assert!(envoy_only.groups.is_empty(), "no gRPC snapshot is added");
    let (_, snap) = envoy_only.select(DataPlane::Grpc, "default");
    assert!(snap.resources(TypeUrl::Listener).is_empty());
    assert!(snap.resources(TypeUrl::Cluster).is_empty());
}

#[test]
fn targets_with_groups_go_to_those_groups_grpc_clients_only() {
    let yaml = "services:
  - name: api
    endpoints: [{address: 127.0.0.1, port: 9001}]
grpc:
  - target: api
    groups: [edge]
    routes: [{to: {service: api}}]
  - target: all
    routes: [{to: {service: api}}]
";
    let snaps = mk_grpc(yaml);
    let (key, edge) = snaps.select(DataPlane::Grpc, "edge");
    assert_eq!(key, "grpc:edge");
    assert_eq!(names(edge, TypeUrl::Listener), ["all", "api"]);
    let (key, other) = snaps.select(DataPlane::Grpc, "batch");
    assert_eq!(key, GRPC_FALLBACK_GROUP);
    assert_eq!(names(other, TypeUrl::Listener), ["all"]);
}

#[test]
fn a_timeout_is_max_stream_duration() {
    let yaml = "services:
  - name: api
    endpoints: [{address: 127.0.0.1, port: 9001}]
grpc:
  - target: api
    routes: [{match: {path: /pkg.Api/Get}, to: {service: api}, timeout: 1.5s}]
";
    let snaps = mk_grpc(yaml);
    let rc: RouteConfiguration = decode(grpc_fallback(&snaps), TypeUrl::Route, "api");
    let action = first_route_action(&rc, 0);
    assert!(action.timeout.is_none());
    let msd = action.max_stream_duration.expect("set");
    assert_eq!(
        msd.max_stream_duration,
        Some(PbDuration {
            seconds: 1,
            nanos: 500_000_000
        })
    );
}

#[test]
fn envoys_are_served_the_same_with_or_without_grpc_targets() {
    let yaml = format!(
        "{EXAMPLE}
listeners:
  - name: http
    port: 10000
    groups: [edge]
    virtual_hosts:
      - name: greeter
        domains: [\"*\"]
        routes: [{{to: {{service: greeter, subset: stable}}}}]
"
    );
    let with = crate::rules::parse("grpc.yaml", &yaml).expect("valid rules");
    let mut without = with.clone();
    without.grpc = Arc::default();
    let (with, without) = (
        compile(&with).expect("compiles"),
        compile(&without).expect("compiles"),
    );
    assert_eq!(with.fallback, without.fallback);
    let envoy_groups = |s: &Snapshots| -> Vec<(String, Arc<Snapshot>)> {
        s.groups
            .iter()
            .filter(|(k, _)| !crate::xds::resource::is_grpc_group_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(envoy_groups(&with), envoy_groups(&without));
    assert_eq!(envoy_groups(&with).len(), 1, "the edge group");
    // The gRPC clients of `edge` get the target without `groups`.
    let (key, snap) = with.select(DataPlane::Grpc, "edge");
    assert_eq!(key, GRPC_FALLBACK_GROUP);
    assert_eq!(names(snap, TypeUrl::Listener), ["greeter"]);
}
