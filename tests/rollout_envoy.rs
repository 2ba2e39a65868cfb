//! A rollout against a real Envoy (1.40) and two real HTTP backends: the
//! controller reads Envoy's admin `/stats`, each step waits for Envoy's
//! ACK, and the split measured through Envoy follows the steps; `abort`
//! sends everything back to stable. Twice: with the weights in the routes,
//! and with `--rollout-weights runtime`, where the routes keep sending
//! everything to stable unless Envoy reads the weights from sluice's RTDS
//! layer, so the split itself shows Envoy took them from there.
//!
//! A simulated proxy (subscribed to the same layer) rides along: at each
//! paused step its split must agree with Envoy's (two-proportion z-test,
//! |z| < 4 over Envoy's 400 and the simulator's 4,000 requests), so the
//! simulator's weighted and runtime-weighted routing is checked against
//! the real thing.
//!
//! Bounds: each step's canary share is measured over 400 requests while
//! the rollout is paused at that step (so the weights cannot move during
//! the measurement) and must be within ±10 points of the step's weight
//! (binomial sd ≤ 2.5 points: a false alarm is a 4-sigma event). The ends,
//! 100 % and 0 %, must be exact.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::rollout::*;
use common::*;
use sluice::sim::dataplane::{DataPlane, Decision};
use sluice::sim::fleet::{Fleet, FleetConfig};
use sluice::sim::route::Request;

fn rules(v1: u16, v2: u16) -> String {
    let web = common::rules::web_v1_v2(v1, v2);
    let listener = common::rules::http_listener(0, "web");
    format!(
        r#"services:
{web}{listener}          - match: {{prefix: /}}
            to: {{service: web, subset: stable}}
"#
    )
}

/// Share of answers from `v2`, in percent; no errors allowed.
fn v2_share(counts: &std::collections::BTreeMap<String, usize>) -> f64 {
    assert_eq!(counts.get("error"), None, "errors in {counts:?}");
    let total: usize = counts.values().sum();
    100.0 * *counts.get("v2").unwrap_or(&0) as f64 / total as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_steps_real_envoy_and_abort_returns_to_stable() {
    rollout_steps(Weights::Routes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_steps_real_envoy_through_rtds_runtime_weights() {
    rollout_steps(Weights::Runtime).await;
}

#[derive(Clone, Copy, PartialEq)]
enum Weights {
    Routes,
    Runtime,
}

/// Canary answers of `n` requests routed by the simulated proxy.
fn sim_canary(fleet: &Fleet, n: usize) -> usize {
    let view = fleet.reports()[0].view.clone();
    let mut dp = DataPlane::new(11);
    let req = Request::get("x", "/");
    (0..n)
        .filter(
            |_| match dp.decide(&view, Some("http"), &req, std::time::Duration::ZERO) {
                Decision::Upstream(u) => {
                    dp.finish(
                        &view.clusters[&u.cluster],
                        u.host,
                        200,
                        std::time::Duration::ZERO,
                    );
                    u.cluster == "web~canary"
                }
                other => panic!("simulator: {other:?}"),
            },
        )
        .count()
}

/// The route configurations Envoy holds: (name, version) pairs.
async fn route_versions(admin: std::net::SocketAddr) -> Vec<(String, String)> {
    let v: serde_json::Value = http()
        .get(format!(
            "http://{admin}/config_dump?resource=dynamic_route_configs"
        ))
        .send()
        .await
        .expect("config_dump")
        .json()
        .await
        .expect("config_dump json");
    let mut out: Vec<(String, String)> = v["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .map(|c| {
            (
                c["route_config"]["name"].as_str().unwrap_or("").to_string(),
                c["version_info"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The number Envoy's runtime holds for `key` (admin `/runtime`), if any.
async fn runtime_value(admin: std::net::SocketAddr, key: &str) -> Option<f64> {
    let v: serde_json::Value = http()
        .get(format!("http://{admin}/runtime"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["entries"][key]["final_value"].as_str()?.parse().ok()
}

async fn rollout_steps(weights: Weights) {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let files = ControllerFiles::new();
    let rules_path = files.dir.path().join("rules.yaml");
    std::fs::write(&rules_path, rules(v1.addr.port(), v2.addr.port())).expect("rules");
    // Envoy first (it retries until sluice listens), so sluice can be told
    // where Envoy's admin stats are.
    let xds = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let envoy = Envoy::start("envoy-rollout", "default", xds, &[]).await;
    let extra: &[&str] = match weights {
        Weights::Routes => &[],
        Weights::Runtime => &["--rollout-weights", "runtime"],
    };
    let sluice = files.sluice_with(&rules_path, &xds.to_string(), &[envoy.admin], extra);
    let key = "sluice.rollout.web.from.stable.web~canary";
    let sim = Fleet::start(&FleetConfig {
        xds: xds.to_string(),
        proxies: 1,
        mode: sluice::sim::state::Mode::Delta,
        group: "default".into(),
        node_prefix: "sim-rollout".into(),
        faults: Default::default(),
        runtime_layer: Some(sluice::model::RUNTIME_LAYER.to_string()),
        security: Default::default(),
    });
    let port = envoy.listener_port("http").await;
    let url = format!("http://127.0.0.1:{port}/");
    eventually("envoy routes", || async {
        http()
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // Steady background traffic, so every window has canary requests.
    let stop = Arc::new(AtomicBool::new(false));
    let (u, st) = (url.clone(), stop.clone());
    let load = tokio::spawn(async move {
        let client = http();
        while !st.load(Ordering::Relaxed) {
            let _ = client.get(&u).send().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    let token = files.token_file.clone();
    let run = |args: &[&str]| cli(&sluice, Some(&token), args);
    // With runtime weights the plain route to stable is armed before any
    // rollout: starting one, and every step, pushes no route.
    let routes_before = route_versions(envoy.admin).await;
    assert!(
        !routes_before.is_empty(),
        "envoy holds no route configuration"
    );

    let start = [
        "start",
        "web",
        "--to",
        "canary",
        "--steps",
        "20,50,100",
        "--interval",
        "1s",
        "--max-p99",
        "0",
        "--failure-threshold",
        "3",
        "--output",
        "json",
    ];
    let r = run(&start);
    assert_eq!(r.code, 0, "{r:?}");
    for (step, weight) in [(0, 20.0), (1, 50.0)] {
        wait_status(&sluice, &token, "web", "step analysis", |v| {
            v["phase"] == "analysing" && v["step"] == step
        })
        .await;
        assert_eq!(run(&["pause", "web"]).code, 0);
        if weights == Weights::Runtime {
            // The step counted as reached only once Envoy ACKed the layer.
            assert_eq!(runtime_value(envoy.admin, key).await, Some(weight));
            assert_eq!(route_versions(envoy.admin).await, routes_before);
        }
        let share = v2_share(&distribution(&url, 400).await);
        assert!(
            (share - weight).abs() <= 10.0,
            "step {step}: canary {share}% for {weight}%"
        );
        // The simulated proxy holds the step too (the controller counted
        // its ACK), and splits as Envoy does.
        let sim_hits = sim_canary(&sim, 4000) as f64;
        let z = two_proportion_z(share * 4.0, 400.0, sim_hits, 4000.0);
        assert!(
            z.abs() < 4.0,
            "step {step}: envoy {share}%, simulator {}%, z = {z:.2}",
            sim_hits / 40.0
        );
        assert_eq!(run(&["resume", "web"]).code, 0);
    }
    let last = wait_status(&sluice, &token, "web", "promotion", |v| v["done"] == true).await;
    assert_eq!(last["phase"], "promoted", "{last}");
    assert!(last["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .all(|c| c["passed"] == true));
    assert_eq!(v2_share(&distribution(&url, 200).await), 100.0);

    // After a promotion the rules still say stable; a new rollout starts
    // from them again. Aborted at its first step, one push returns
    // everything to the stable subset.
    let mut again = start;
    again[7] = "30s";
    let r = run(&again);
    assert_eq!(r.code, 0, "{r:?}");
    wait_status(&sluice, &token, "web", "first step", |v| {
        v["phase"] == "analysing" && v["canary_weight"] == 20
    })
    .await;
    let share = v2_share(&distribution(&url, 400).await);
    assert!(
        (share - 20.0).abs() <= 10.0,
        "second rollout: canary {share}% for 20%"
    );
    let r = run(&["abort", "web", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["phase"], "aborted");
    eventually("everything back on stable", || async {
        v2_share(&distribution(&url, 50).await) == 0.0
    })
    .await;
    assert_eq!(v2_share(&distribution(&url, 400).await), 0.0);
    let expected = match weights {
        Weights::Routes => None,
        Weights::Runtime => Some(0.0),
    };
    assert_eq!(runtime_value(envoy.admin, key).await, expected);
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
}
