//! `serve --xds-max-connection-age`: each xDS connection is drained after
//! its age (a GOAWAY, then its streams end with OK), the proxy reconnects
//! on a new connection, and nothing it serves changes: a real Envoy keeps
//! routing without re-warming anything, simulated proxies stay configured.

mod common;

use std::time::Duration;

use common::*;

fn rules(port: u16) -> String {
    format!(
        "services:\n  - name: web\n    endpoints: [{{address: 127.0.0.1, port: {port}}}]\n{}          - {{match: {{prefix: /}}, to: {{service: web}}}}\n",
        rules::http_listener(0, "all")
    )
}

/// `proxies` delta proxies in group `default` on `xds` (one address, or
/// several replicas).
fn fleet(xds: &str, proxies: usize) -> sluice::sim::fleet::Fleet {
    sluice::sim::fleet::Fleet::start(&sluice::sim::fleet::FleetConfig {
        xds: xds.to_string(),
        proxies,
        mode: sluice::sim::state::Mode::Delta,
        group: "default".into(),
        node_prefix: "sim".into(),
        faults: Default::default(),
        runtime_layer: None,
        security: Default::default(),
    })
}

#[tokio::test]
async fn an_envoy_reconnects_at_the_connection_age_and_keeps_routing_without_rewarming() {
    let backend = backend("web").await;
    let rules = RulesFile::new(&rules(backend.addr.port()));
    let (sluice, envoy, port) = sluice_and_envoy_with(
        &rules.path,
        "edge-1",
        "http",
        &["--xds-max-connection-age", "2s"],
    )
    .await;
    routes_to(port, "web").await;
    let url = format!("http://127.0.0.1:{port}/");
    let (listeners, clusters) = (
        envoy.stat("listener_manager.listener_modified").await,
        envoy.stat("cluster_manager.cluster_modified").await,
    );
    // Requests all along, across at least three connection ages.
    let client = http();
    let mut sent = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sluice.metric("sluice_xds_connections_aged_total").await < 3.0 {
        assert!(tokio::time::Instant::now() < deadline, "no connection aged");
        let status = client.get(&url).send().await.map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(200), "request {sent} failed");
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sent > 0);
    // Envoy opened a new connection to sluice each time...
    assert!(envoy.stat("cluster.sluice_xds.upstream_cx_total").await >= 3.0);
    // ...is connected now, and re-warmed nothing: the same resources came
    // back with the same versions.
    eventually("Envoy is connected to sluice", || async {
        envoy.stat("control_plane.connected_state").await == 1.0
    })
    .await;
    assert_eq!(
        envoy.stat("listener_manager.listener_modified").await,
        listeners
    );
    assert_eq!(
        envoy.stat("cluster_manager.cluster_modified").await,
        clusters
    );
    assert_eq!(envoy.stat("cluster_manager.cds.update_rejected").await, 0.0);
}

#[tokio::test]
async fn simulated_proxies_reconnect_at_the_connection_age_and_stay_configured() {
    let backend = backend("web").await;
    let rules = RulesFile::new(&rules(backend.addr.port()));
    let sluice = Sluice::start_with(
        &rules.path,
        "127.0.0.1:0",
        &["--xds-max-connection-age", "1s"],
    );
    sluice.wait_ready("sluice ready").await;
    let proxies = 20;
    let fleet = fleet(&sluice.xds.to_string(), proxies);
    fleet
        .wait_all(WAIT, |r| r.view.listeners.contains_key("http"))
        .await
        .expect("every simulated proxy configured");
    eventually("every proxy reconnected at least twice", || async {
        fleet.reports().iter().all(|r| r.streams >= 3)
    })
    .await;
    assert!(sluice.metric("sluice_xds_connections_aged_total").await >= (2 * proxies) as f64);
    eventually(
        "all connected, holding the listener, nothing NACKed",
        || async {
            fleet
                .reports()
                .iter()
                .all(|r| r.connected && r.view.listeners.contains_key("http") && r.nacks == 0)
        },
    )
    .await;
    fleet.stop().await;
}

#[test]
fn the_connection_age_flag_is_checked() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--rules",
            "x.yaml",
            "--xds-max-connection-age",
            "10ms",
        ])
        .output()
        .expect("run sluice");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too short"), "{err}");
}

/// The spreading check: 300 proxies all on one replica, a second
/// replica starts, and after two connection ages neither holds more than
/// 60 % of them. Each reconnect picks a replica at random, as `sluice
/// bootstrap`'s cluster of replicas does for Envoy.
#[tokio::test]
async fn after_a_replica_returns_streams_spread_back_at_the_connection_age() {
    let backend = backend("web").await;
    let rules = RulesFile::new(&rules(backend.addr.port()));
    let age = ["--xds-max-connection-age", "2s"];
    let a = Sluice::start_with(&rules.path, "127.0.0.1:0", &age);
    a.wait_ready("replica a ready").await;
    let b_addr = format!("127.0.0.1:{}", free_port());
    let proxies = 300;
    let fleet = fleet(&format!("{},{b_addr}", a.xds), proxies);
    fleet
        .wait_all(WAIT, |r| r.view.listeners.contains_key("http"))
        .await
        .expect("every simulated proxy configured by replica a");
    let count = |s: serde_json::Value| s["proxies"].as_array().map_or(0, Vec::len);

    let b = Sluice::start_with(&rules.path, &b_addr, &age);
    b.wait_ready("replica b ready").await;
    // Two ages: every connection has been drained at least once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Connections keep ageing, so a few proxies are between two streams
    // at any moment: nine in ten connected is the fleet.
    eventually("the fleet spread over both replicas", || async {
        let (on_a, on_b) = (count(a.status().await), count(b.status().await));
        (on_a + on_b) * 10 >= proxies * 9 && on_a * 10 <= proxies * 6 && on_b * 10 <= proxies * 6
    })
    .await;
    fleet.stop().await;
}
