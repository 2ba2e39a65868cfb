//! The static bootstrap built from compiled snapshots, and how Envoy's
//! refusal is read. Envoy itself runs in `tests/envoy_check.rs`.

use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;

use super::parts::{batches, Item, Parts};
use super::*;
use crate::xds::{Resource, Snapshot, TypeUrl};

const QUICKSTART: &str = include_str!("../../examples/quickstart.yaml");

fn mk_snapshots(rules: &str) -> Snapshots {
    let config = crate::rules::parse("rules.yaml", rules).expect("valid rules");
    crate::compile::compile(&config).expect("compiles")
}

fn mk_parts(rules: &str) -> Parts {
    let all = batches(&mk_snapshots(rules));
    assert_eq!(all.len(), 1, "one batch");
    Parts::decode(&all[0]).expect("decodes")
}

/// The route configuration inlined in the bootstrap's listener `name`.
fn inline_routes(b: &Bootstrap, name: &str) -> RouteConfiguration {
    let resources = b.static_resources.as_ref().expect("static resources");
    let listener = resources
        .listeners
        .iter()
        .find(|l| l.name == name)
        .expect("listener");
    let Some(ConfigType::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type
    else {
        panic!("no typed config");
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("hcm");
    match hcm.route_specifier {
        Some(RouteSpecifier::RouteConfig(rc)) => rc,
        other => panic!("routes not inline: {other:?}"),
    }
}

#[test]
fn the_whole_config_becomes_one_static_bootstrap() {
    let parts = mk_parts(QUICKSTART);
    let b = parts.bootstrap(&parts.all());
    let resources = b.static_resources.as_ref().expect("static resources");
    let clusters: Vec<&str> = resources.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(clusters, ["web", "web~canary", "web~stable"]);
    for c in &resources.clusters {
        assert_eq!(
            c.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
            "{}",
            c.name
        );
        assert_eq!(c.eds_cluster_config, None);
        let cla = c.load_assignment.as_ref().expect("load assignment");
        assert_eq!(cla.cluster_name, c.name);
    }
    // The canary subset's one endpoint came along from EDS.
    let canary = &resources.clusters[1].load_assignment.as_ref().expect("cla");
    assert_eq!(canary.endpoints[0].lb_endpoints.len(), 1);
    let routes = inline_routes(&b, "http");
    assert_eq!(routes.name, "http");
    assert_eq!(routes.virtual_hosts[0].routes.len(), 2);
    let layers = &b.layered_runtime.as_ref().expect("runtime").layers;
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].name, crate::model::RUNTIME_LAYER);
}

#[test]
fn a_cut_keeps_only_the_routes_asked_for() {
    let parts = mk_parts(QUICKSTART);
    let mut items = parts.foundation();
    items.extend([Item::Listener(0), Item::Route(0, 0, 1)]);
    let routes = inline_routes(&parts.bootstrap(&items), "http");
    assert_eq!(routes.virtual_hosts.len(), 1);
    let names: Vec<&str> = routes.virtual_hosts[0]
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["default"]);
    // Without virtual host items the listener has an empty table.
    let bare = parts.bootstrap(&[Item::Listener(0)]);
    assert!(inline_routes(&bare, "http").virtual_hosts.is_empty());
    assert!(bare.static_resources.expect("static").clusters.is_empty());
}

#[test]
fn tls_listeners_name_static_secrets() {
    let rules = "services:
  - name: web
    endpoints: [{address: 127.0.0.1, port: 8081}]
listeners:
  - name: https
    port: 0
    tls: {cert_file: a.pem, key_file: a.key}
    virtual_hosts:
      - name: web
        domains: [\"*\"]
        routes:
          - to: {service: web}
";
    let mut config = crate::rules::parse("rules.yaml", rules).expect("valid");
    let dir = tempfile::tempdir().expect("tempdir");
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    std::fs::write(dir.path().join("a.pem"), cert.pem()).expect("write");
    std::fs::write(dir.path().join("a.key"), signing_key.serialize_pem()).expect("write");
    crate::tls::load(&mut config, dir.path()).expect("certificates");
    let all = batches(&crate::compile::compile(&config).expect("compiles"));
    let parts = Parts::decode(&all[0]).expect("decodes");
    let b = parts.bootstrap(&parts.all());
    let resources = b.static_resources.expect("static");
    assert_eq!(
        resources.secrets[0].name,
        crate::compile::secret_name("https")
    );
    let socket = resources.listeners[0].filter_chains[0]
        .transport_socket
        .as_ref()
        .expect("tls");
    let Some(envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
        any,
    )) = &socket.config_type
    else {
        panic!("no typed config");
    };
    let ctx = DownstreamTlsContext::decode(any.value.as_slice()).expect("tls context");
    let sds = &ctx
        .common_tls_context
        .expect("common")
        .tls_certificate_sds_secret_configs;
    assert_eq!(sds[0].name, crate::compile::secret_name("https"));
    assert_eq!(sds[0].sds_config, None, "a static secret, not ADS");
}

#[test]
fn groups_merge_unless_a_name_means_two_things() {
    let shared = Resource::from_bytes("web", vec![1]);
    let mk = |cluster: Resource| {
        let mut by_type: [Vec<Resource>; TypeUrl::COUNT] = Default::default();
        by_type[TypeUrl::Cluster.index()] = vec![shared.clone(), cluster];
        Arc::new(Snapshot::new(by_type))
    };
    let mut snapshots = Snapshots::default();
    snapshots
        .groups
        .insert("a".into(), mk(Resource::from_bytes("api", vec![2])));
    snapshots
        .groups
        .insert("b".into(), mk(Resource::from_bytes("db", vec![3])));
    let merged = batches(&snapshots);
    assert_eq!(merged.len(), 1, "no clash: one Envoy run");
    assert_eq!(merged[0][TypeUrl::Cluster.index()].len(), 3);
    snapshots
        .groups
        .insert("c".into(), mk(Resource::from_bytes("api", vec![9])));
    let split = batches(&snapshots);
    assert_eq!(split.len(), 2, "`api` differs in group c");
    assert_eq!(split[1][TypeUrl::Cluster.index()]["api"].body[..], [9]);
}

#[test]
fn a_refusal_is_read_without_log_prefix_or_file_name() {
    let file = Path::new("/tmp/sluice-envoy-check-x.pb");
    let stderr = "[2026-01-01 00:00:00.000][1][critical][main] [source/server/config_validation/server.cc:76] \
                  error initializing configuration '/tmp/sluice-envoy-check-x.pb': regex 'a{1,64}' RE2 program size of 277 > max\n";
    assert_eq!(
        refusal(stderr, file).as_deref(),
        Some("regex 'a{1,64}' RE2 program size of 277 > max")
    );
    let multi = "error initializing configuration '/tmp/sluice-envoy-check-x.pb': goo.gle/debugstr name: \"b\"\n virtual_hosts { } : Proto constraint validation failed (A:\n  caused by B)\n";
    assert_eq!(
        refusal(multi, file).as_deref(),
        Some("Proto constraint validation failed (A: caused by B)")
    );
    assert_eq!(refusal("Segmentation fault", file), None);
}

#[test]
fn a_refusal_without_a_rule_names_the_resource() {
    let d = diagnostic(
        "rules.yaml",
        &Origins::default(),
        &Culprit::Cluster("ghost".into()),
        "bad",
    );
    assert_eq!(
        d.to_string(),
        "rules.yaml:1:1: <root>: envoy refused cluster \"ghost\": bad"
    );
}
