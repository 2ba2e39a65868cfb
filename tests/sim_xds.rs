//! The simulator against a running sluice (the binary, on loopback): a
//! fleet of simulated proxies over SotW and delta ADS converges to the very
//! versions sluice reports as ACKed in `/status`, follows a rules edit, and
//! routes the split it was sent.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use sluice::sim::client::Report;
use sluice::sim::engine::{Engine, SimProxy};
use sluice::sim::fleet::{Fleet, FleetConfig};
use sluice::sim::route::Request;
use sluice::sim::state::Mode;
use sluice::xds::TypeUrl;

fn rules(stable: u32, canary: u32) -> String {
    format!(
        r#"services:
  - name: web
    endpoints:
      - {{address: 127.0.0.1, port: 8081, labels: {{version: v1}}}}
      - {{address: 127.0.0.1, port: 8082, labels: {{version: v2}}}}
    subsets:
      stable: {{version: v1}}
      canary: {{version: v2}}
listeners:
  - name: http
    address: 127.0.0.1
    port: 10000
    virtual_hosts:
      - name: web
        domains: ["*"]
        routes:
          - match: {{prefix: /}}
            split:
              - {{service: web, subset: stable, weight: {stable}}}
              - {{service: web, subset: canary, weight: {canary}}}
"#
    )
}

/// Node id → acked version per type, from sluice's `/status`.
async fn acked(sluice: &Sluice) -> BTreeMap<String, [String; TypeUrl::COUNT]> {
    let status = sluice.status().await;
    let mut out = BTreeMap::new();
    for p in status["proxies"].as_array().cloned().unwrap_or_default() {
        let id = p["node"]["id"].as_str().unwrap_or_default().to_string();
        let v = |ty: TypeUrl| {
            p["types"][ty.short()]["acked"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        out.insert(id, TypeUrl::ALL.map(v));
    }
    out
}

fn configured(r: &Report) -> bool {
    r.view.listeners.contains_key("http")
        && sluice::sim::SIM_TYPES
            .iter()
            .all(|t| !r.versions[t.index()].is_empty())
}

async fn converge(mode: Mode, proxies: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, rules(80, 20)).expect("write");
    let sluice = Sluice::start(&path, "127.0.0.1:0");
    let fleet = Fleet::start(&FleetConfig {
        xds: sluice.xds.to_string(),
        proxies,
        mode,
        group: "default".into(),
        node_prefix: format!("sim-{mode:?}"),
        faults: Default::default(),
        runtime_layer: None,
        security: Default::default(),
    });
    fleet
        .wait_all(WAIT, configured)
        .await
        .expect("every proxy configured");

    // The versions each proxy holds are the ones sluice saw it ACK.
    let check = |want_rds: Option<String>| {
        let fleet = &fleet;
        let sluice = &sluice;
        async move {
            let reports = fleet.reports();
            let acked = acked(sluice).await;
            reports.iter().enumerate().all(|(i, r)| {
                let id = format!("sim-{mode:?}-{i}");
                acked.get(&id) == Some(&r.versions)
                    && want_rds
                        .as_ref()
                        .is_none_or(|w| *w != r.versions[TypeUrl::Route.index()])
            })
        }
    };
    eventually("sluice's /status matches every proxy", || check(None)).await;
    let before = fleet.reports()[0].versions[TypeUrl::Route.index()].clone();

    // A rules edit reaches every proxy, and /status agrees again.
    std::fs::write(&path, rules(50, 50)).expect("write");
    eventually("the edit reaches every proxy", || {
        check(Some(before.clone()))
    })
    .await;
    let reports = fleet.reports();
    assert!(reports.iter().all(|r| r.nacks == 0 && r.connected));

    // And they route what they were sent: 50/50 within ±3 points.
    let proxies = reports
        .iter()
        .enumerate()
        .map(|(i, r)| SimProxy::new(r.view.clone(), i as u64))
        .collect();
    let mut engine = Engine::new(proxies, Default::default(), 1);
    for i in 0..4000usize {
        engine.submit(
            i % reports.len(),
            Request::get("x", "/"),
            Duration::from_millis(i as u64),
        );
    }
    engine.run();
    let stable = engine.stats.counter("web~stable", "upstream_rq_2xx") as f64 / 4000.0;
    assert!((0.47..=0.53).contains(&stable), "stable share {stable}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_fleet_converges_to_the_versions_sluice_reports() {
    converge(Mode::Sotw, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_fleet_converges_to_the_versions_sluice_reports() {
    converge(Mode::Delta, 50).await;
}

/// `Fleet::watch` hands out proxy i's report receiver, woken by each
/// response it handles (the scenario runner timestamps ACKs with it), and
/// nothing past the fleet's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_watch_wakes_on_a_proxys_new_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, rules(80, 20)).expect("write");
    let sluice = Sluice::start(&path, "127.0.0.1:0");
    let fleet = Fleet::start(&FleetConfig {
        xds: sluice.xds.to_string(),
        proxies: 3,
        mode: Mode::Delta,
        group: "default".into(),
        node_prefix: "watch".into(),
        faults: Default::default(),
        runtime_layer: None,
        security: Default::default(),
    });
    assert!(fleet.watch(3).is_none());
    let mut rx = fleet.watch(2).expect("proxy 2");
    fleet
        .wait_all(WAIT, configured)
        .await
        .expect("every proxy configured");
    let before = rx.borrow_and_update().versions[TypeUrl::Route.index()].clone();
    std::fs::write(&path, rules(50, 50)).expect("write");
    let route = TypeUrl::Route.index();
    let seen = tokio::time::timeout(WAIT, rx.wait_for(|r| r.versions[route] != before))
        .await
        .expect("woken within WAIT")
        .expect("fleet still running")
        .clone();
    assert!(seen.acked_at[route].is_some());
    assert_eq!(seen.nacks, 0);
    fleet.stop().await;
}
