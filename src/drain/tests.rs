use super::store::{DrainStore, STATE_FILE};
use super::*;
use crate::model::{Config, Health};
use crate::xds::TypeUrl;

const RULES: &str = r#"
services:
  - name: web
    endpoints:
      - {address: 10.0.0.1, port: 80, locality: {region: eu, zone: eu-1a}}
      - {address: 10.0.0.2, port: 80, locality: {region: eu, zone: eu-1b}}
      - {address: 10.0.0.3, port: 80, locality: {region: us, zone: us-1a}}
      - {address: 10.0.0.4, port: 80, health: unhealthy, locality: {region: eu, zone: eu-1a}}
  - name: api
    endpoints:
      - {address: 10.0.0.1, port: 80, locality: {region: eu, zone: eu-1a}}
listeners:
  - name: http
    port: 8080
    virtual_hosts:
      - {name: all, domains: ["*"], routes: [{to: {service: web}}]}
"#;

fn mk_config() -> Config {
    crate::rules::parse("rules.yaml", RULES).expect("rules parse")
}

fn mk_endpoint(service: &str, addr: &str) -> Drain {
    Drain {
        service: service.to_string(),
        target: Target::Endpoint(addr.parse().expect("addr")),
    }
}

fn mk_locality(service: &str, loc: &str) -> Drain {
    Drain {
        service: service.to_string(),
        target: Target::Locality(loc.parse().expect("locality")),
    }
}

fn health(config: &Config, service: &str) -> Vec<Health> {
    config.services[service]
        .endpoints
        .iter()
        .map(|e| e.health)
        .collect()
}

use Health::{Draining as D, Healthy as H, Unhealthy as U};

#[test]
fn an_endpoint_drain_marks_that_endpoint_of_that_service_only() {
    let mut drains = Drains::default();
    assert!(drains.add(mk_endpoint("web", "10.0.0.2:80")));
    let mut config = mk_config();
    drains.apply(&mut config);
    assert_eq!(health(&config, "web"), [H, D, H, U]);
    assert_eq!(health(&config, "api"), [H], "other services untouched");
}

#[test]
fn a_zone_drain_marks_the_zone_and_a_region_drain_the_region() {
    let mut config = mk_config();
    let mut drains = Drains::default();
    drains.add(mk_locality("web", "eu/eu-1a"));
    drains.apply(&mut config);
    // 10.0.0.4 is unhealthy already and stays so.
    assert_eq!(health(&config, "web"), [D, H, H, U]);

    let mut config = mk_config();
    let mut drains = Drains::default();
    drains.add(mk_locality("web", "eu"));
    drains.apply(&mut config);
    assert_eq!(health(&config, "web"), [D, D, H, U]);
}

#[test]
fn undoing_a_drain_gives_back_the_same_compiled_bytes() {
    let plain = crate::compile::compile(&mk_config()).expect("compile");
    let mut drains = Drains::default();
    let d = mk_locality("web", "eu/eu-1b");
    drains.add(d.clone());
    let mut drained = mk_config();
    drains.apply(&mut drained);
    let drained = crate::compile::compile(&drained).expect("compile");
    let eds = |s: &crate::xds::Snapshots| s.fallback.version(TypeUrl::Endpoint).to_string();
    assert_ne!(eds(&plain), eds(&drained), "the drain reaches EDS");
    assert!(drains.remove(&d));
    assert!(!drains.remove(&d), "removing twice reports it");
    let mut undone = mk_config();
    drains.apply(&mut undone);
    assert_eq!(crate::compile::compile(&undone).expect("compile"), plain);
}

#[test]
fn drained_endpoints_reach_eds_as_draining() {
    use envoy_types::pb::envoy::config::core::v3::HealthStatus;
    use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
    use prost::Message;
    let mut config = mk_config();
    let mut drains = Drains::default();
    drains.add(mk_endpoint("web", "10.0.0.3:80"));
    drains.apply(&mut config);
    let snaps = crate::compile::compile(&config).expect("compile");
    let r = snaps
        .fallback
        .get(TypeUrl::Endpoint, "web")
        .expect("web CLA");
    let cla = ClusterLoadAssignment::decode(r.body.clone()).expect("decode");
    let mut draining = Vec::new();
    for loc in &cla.endpoints {
        for e in &loc.lb_endpoints {
            if e.health_status == HealthStatus::Draining as i32 {
                if let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &e.host_identifier {
                    draining.push(format!("{:?}", ep.address));
                }
            }
        }
    }
    assert_eq!(draining.len(), 1, "{draining:?}");
    assert!(draining[0].contains("10.0.0.3"), "{draining:?}");
}

#[test]
fn match_counts_show_drains_that_match_nothing() {
    let config = mk_config();
    let mut drains = Drains::default();
    drains.add(mk_locality("web", "eu"));
    drains.add(mk_endpoint("web", "10.9.9.9:80"));
    let counts: Vec<usize> = drains
        .matches(&config)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    // Ordered: endpoint targets sort before locality targets.
    assert_eq!(counts, [0, 3]);
}

#[test]
fn unknown_services_are_refused_with_the_known_ones() {
    let config = mk_config();
    assert_eq!(mk_endpoint("web", "10.0.0.1:80").check(&config), Ok(()));
    let err = mk_endpoint("wbe", "10.0.0.1:80")
        .check(&config)
        .expect_err("typo refused");
    assert_eq!(
        err.to_string(),
        "unknown service \"wbe\"; services: api, web"
    );
}

#[test]
fn localities_parse_as_region_or_region_slash_zone() {
    let l: LocalityRef = "eu/eu-1a".parse().expect("zone");
    assert_eq!(
        (l.region.as_str(), l.zone.as_deref()),
        ("eu", Some("eu-1a"))
    );
    assert_eq!(l.to_string(), "eu/eu-1a");
    let l: LocalityRef = "eu".parse().expect("region");
    assert_eq!(l.zone, None);
    for bad in ["", "/", "eu/", "/eu-1a", "eu/a/b", " eu"] {
        assert!(bad.parse::<LocalityRef>().is_err(), "{bad:?} refused");
    }
}

#[test]
fn drains_are_flat_json() {
    let d = mk_locality("web", "eu/eu-1a");
    let json = serde_json::to_value(&d).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"service": "web", "locality": "eu/eu-1a"})
    );
    let back: Drain =
        serde_json::from_value(serde_json::json!({"service": "web", "endpoint": "10.0.0.1:80"}))
            .expect("parse");
    assert_eq!(back, mk_endpoint("web", "10.0.0.1:80"));
    let bad =
        serde_json::from_value::<Drain>(serde_json::json!({"service": "web", "locality": "a/b/c"}));
    assert!(bad.is_err());
}

#[tokio::test]
async fn the_store_persists_across_opens_and_publishes_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DrainStore::open(dir.path()).expect("open empty");
    assert!(store.current().is_empty());
    let mut rx = store.subscribe();
    let d = mk_locality("web", "eu/eu-1a");
    assert_eq!(store.add(d.clone()).await, Ok(true));
    assert_eq!(store.add(d.clone()).await, Ok(false), "already there");
    assert!(rx.has_changed().expect("sender alive"));
    assert_eq!(rx.borrow_and_update().iter().count(), 1);
    store
        .add(mk_endpoint("api", "10.0.0.1:80"))
        .await
        .expect("second drain");

    let reopened = DrainStore::open(dir.path()).expect("reopen");
    assert_eq!(*reopened.current(), *store.current());
    assert_eq!(reopened.remove(&d).await, Ok(true));
    let again = DrainStore::open(dir.path()).expect("reopen");
    assert_eq!(again.current().iter().count(), 1);
    assert!(
        !dir.path().join(format!("{STATE_FILE}.tmp")).exists(),
        "no temp file left behind"
    );
}

#[test]
fn a_corrupt_state_file_is_an_error_not_an_empty_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(STATE_FILE),
        "{\"version\": 1, \"drains\": [",
    )
    .expect("write");
    let err = DrainStore::open(dir.path()).err().expect("refused");
    assert!(err.to_string().contains(STATE_FILE), "{err}");
    std::fs::write(
        dir.path().join(STATE_FILE),
        "{\"version\": 2, \"drains\": []}",
    )
    .expect("write");
    let err = DrainStore::open(dir.path()).err().expect("refused");
    assert!(err.to_string().contains("unsupported version 2"), "{err}");
}

/// `--state-dir` that does not exist yet: the first drain creates it
/// (it used to fail until a rollout had saved state there).
#[tokio::test]
async fn a_drain_creates_a_missing_state_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let store = DrainStore::open(&state).expect("open");
    assert!(store
        .add(mk_endpoint("web", "10.0.0.2:80"))
        .await
        .expect("add"));
    let reopened = DrainStore::open(&state).expect("reopen");
    assert_eq!(*reopened.current(), *store.current());
    assert!(!store.current().is_empty());
}
