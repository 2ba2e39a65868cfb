//! The simulated proxies' fault knobs and the `sluice sim` command, against
//! the sluice binary on loopback.
//!
//! Misbehaving proxies next to healthy ones on one server: a forced NACK is
//! recorded by sluice with the proxy's error while the proxy keeps no
//! routes; a stalled proxy never ACKs (sluice shows its first response in
//! flight) while the healthy ones converge; a slow ACK still converges; a
//! dropped stream and a reconnect storm reconnect and end configured.
//! `sluice sim` prints a line per second and writes a JSON summary whose
//! counts add up.

mod common;

use std::time::Duration;

use common::*;
use sluice::sim::client::{Faults, Report};
use sluice::sim::fleet::{Fleet, FleetConfig};
use sluice::sim::state::Mode;
use sluice::xds::TypeUrl;

const RULES: &str = r#"services:
  - name: web
    endpoints: [{address: 127.0.0.1, port: 8081}]
listeners:
  - name: http
    address: 127.0.0.1
    port: 10000
    virtual_hosts:
      - name: web
        domains: ["*"]
        routes:
          - to: {service: web}
"#;

fn fleet(sluice: &Sluice, name: &str, proxies: usize, faults: Faults) -> Fleet {
    Fleet::start(&FleetConfig {
        xds: sluice.xds.to_string(),
        proxies,
        mode: Mode::Sotw,
        group: "default".into(),
        node_prefix: name.into(),
        faults,
        runtime_layer: None,
        security: Default::default(),
    })
}

fn configured(r: &Report) -> bool {
    r.view.listeners.contains_key("http") && r.view.routes.contains_key("http")
}

/// sluice's `/status` entry for node `id`.
async fn proxy_status(sluice: &Sluice, id: &str) -> serde_json::Value {
    let status = sluice.status().await;
    status["proxies"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["node"]["id"] == id)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_knobs_misbehave_without_holding_back_healthy_proxies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, RULES).expect("write");
    let sluice = Sluice::start(&path, "127.0.0.1:0");
    let stall = fleet(
        &sluice,
        "stall",
        1,
        Faults {
            stall: true,
            ..Faults::default()
        },
    );
    let nack = fleet(
        &sluice,
        "nack",
        1,
        Faults {
            nack: vec![TypeUrl::Route],
            ..Faults::default()
        },
    );
    let slow = fleet(
        &sluice,
        "slow",
        1,
        Faults {
            ack_delay: Duration::from_millis(300),
            ..Faults::default()
        },
    );
    let storm = fleet(
        &sluice,
        "storm",
        1,
        Faults {
            reconnect_storm: 3,
            ..Faults::default()
        },
    );
    let dropper = fleet(
        &sluice,
        "drop",
        1,
        Faults {
            disconnect_after: Some(Duration::from_millis(300)),
            ..Faults::default()
        },
    );
    let healthy = fleet(&sluice, "healthy", 3, Faults::default());

    healthy
        .wait_all(WAIT, configured)
        .await
        .expect("healthy proxies configured next to a stalled one");
    slow.wait_all(WAIT, configured)
        .await
        .expect("a slow ACK still converges");
    storm
        .wait_all(WAIT, |r| configured(r) && r.streams >= 4)
        .await
        .expect("three forced reconnects, then configured");
    dropper
        .wait_all(WAIT, |r| configured(r) && r.streams >= 3)
        .await
        .expect("dropped streams reconnect");

    nack.wait_all(WAIT, |r| r.nacks >= 1)
        .await
        .expect("the route configuration is NACKed");
    let r = &nack.reports()[0];
    assert!(
        r.last_nack
            .as_deref()
            .is_some_and(|e| e.contains("forced NACK")),
        "{:?}",
        r.last_nack
    );
    // The listener waits for routes it never accepts, as Envoy's would.
    assert!(!r.view.routes.contains_key("http"));
    assert!(!r.view.listeners.contains_key("http"));
    eventually("sluice records the proxy's NACK", || async {
        let p = proxy_status(&sluice, "nack-0").await;
        p["types"]["rds"]["nack"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("forced NACK"))
    })
    .await;

    // The stalled proxy read its first response and never answered it.
    let s = &stall.reports()[0];
    assert_eq!((s.acks, s.nacks), (0, 0));
    assert!(s.view.clusters.is_empty());
    eventually("sluice waits for the stalled proxy's ACK", || async {
        let p = proxy_status(&sluice, "stall-0").await;
        p["types"]["cds"]["in_flight"] == true && p["types"]["cds"]["acked"].is_null()
    })
    .await;

    for f in [stall, nack, slow, storm, dropper, healthy] {
        f.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_sim_prints_each_second_and_writes_a_json_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, RULES).expect("write");
    let sluice = Sluice::start(&path, "127.0.0.1:0");
    let json = dir.path().join("summary.json");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["sim", "--xds", &sluice.xds.to_string()])
        .args(["--proxies", "3", "--rps", "60", "--duration", "2s"])
        .args(["--host", "example.com", "--path", "/a", "--path", "/b"])
        .arg("--json")
        .arg(&json);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run sluice sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sim: 3 proxies connected"), "{stdout}");
    for second in [
        "t=  1s codes 200=60 | split web=100.0%",
        "t=  2s codes 200=60",
    ] {
        assert!(stdout.contains(second), "{second:?} in\n{stdout}");
    }
    assert!(
        stdout.contains("cluster.web.upstream_rq_2xx: 120"),
        "{stdout}"
    );
    assert!(
        stdout.contains("http.http.downstream_rq_2xx: 120"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    assert_eq!(summary["proxies"], 3);
    assert_eq!(summary["connected"], 3);
    assert_eq!(summary["requests"], 120);
    assert_eq!(summary["stats"]["downstream"]["200"], 120);
    // Every proxy holds the same version of each type.
    for ty in ["cds", "eds", "lds", "rds"] {
        let held = summary["versions"][ty].as_object().expect("versions");
        assert_eq!(held.len(), 1, "{ty}: {held:?}");
        assert_eq!(held.values().next(), Some(&serde_json::json!(3)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_sim_stages_faulty_proxies_next_to_healthy_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, RULES).expect("write");
    let sluice = Sluice::start(&path, "127.0.0.1:0");
    let json = dir.path().join("summary.json");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["sim", "--xds", &sluice.xds.to_string()])
        .args(["--proxies", "3", "--faulty", "1", "--nack", "rds"])
        .args(["--rps", "30", "--duration", "1s", "--json"])
        .arg(&json);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run sluice sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("sim: 2 proxies connected and configured") && stdout.contains("1 faulty"),
        "{stdout}"
    );
    // The faulty proxy NACKs its routes, so it has no listener to serve
    // (404) while the healthy ones route (200); requests alternate.
    assert!(stdout.contains("t=  1s codes 200=20 404=10"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    assert_eq!(
        (summary["proxies"].clone(), summary["faulty"].clone()),
        (3.into(), 1.into())
    );
    assert_eq!(
        summary["versions"]["rds"].as_object().map(|m| m.len()),
        Some(2)
    );
}
