//! Rollouts end to end with the simulator: the `sluice` binary with its
//! rollout controller, a fleet of simulated proxies on real ADS streams,
//! simulated traffic whose canary backend has a chosen error rate, and the
//! `sluice rollout` CLI. Asserts on states and weights, never on speed.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::rollout::*;
use common::*;
use sluice::sim::fleet::{Fleet, FleetConfig};
use sluice::sim::state::Mode;

const CANARY: &str = "127.0.0.1:8082";

struct Setup {
    files: ControllerFiles,
    rules: std::path::PathBuf,
    sluice: Sluice,
    fleet: Arc<Fleet>,
    traffic: Traffic,
}

fn canary_addr() -> SocketAddr {
    CANARY.parse().expect("addr")
}

/// sluice + 3 simulated proxies + traffic; `stats` overrides where the
/// controller reads metrics (default: the simulated traffic's).
async fn setup(error_rate: f64, stats: Option<SocketAddr>) -> Setup {
    let files = ControllerFiles::new();
    let rules = files.dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("rules");
    // The fleet needs sluice's address and the traffic needs the fleet,
    // while sluice needs the traffic's stats address: bind the stats
    // server first through a fleet that connects once sluice is up.
    let xds = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let fleet = Arc::new(Fleet::start(&FleetConfig {
        xds: xds.to_string(),
        proxies: 3,
        mode: Mode::Sotw,
        group: "default".into(),
        node_prefix: "sim".into(),
        faults: Default::default(),
    }));
    let traffic = Traffic::start(fleet.clone(), canary_addr(), error_rate).await;
    let sluice = files.sluice(
        &rules,
        &xds.to_string(),
        &[stats.unwrap_or(traffic.stats_addr)],
    );
    fleet
        .wait_all(WAIT, |r| r.view.listeners.contains_key("http"))
        .await
        .expect("fleet configured");
    Setup {
        files,
        rules,
        sluice,
        fleet,
        traffic,
    }
}

impl Setup {
    fn cli(&self, args: &[&str]) -> Run {
        cli(&self.sluice, Some(&self.files.token_file), args)
    }

    async fn wait(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_status(&self.sluice, &self.files.token_file, "web", what, done).await
    }

    /// Waits until every proxy routes all traffic to `cluster`.
    async fn all_to(&self, cluster: &str) {
        eventually(&format!("all traffic on {cluster}"), || async {
            let s = route(&self.fleet, backends(canary_addr(), 0.0), 600, 7);
            s.by_cluster.len() == 1 && s.by_cluster.get(cluster) == Some(&600)
        })
        .await;
    }
}

fn start_args(interval: &str) -> Vec<&str> {
    vec![
        "start",
        "web",
        "--to",
        "canary",
        "--steps",
        "20,50,100",
        "--interval",
        interval,
        "--max-error-rate",
        "1%",
        "--max-p99",
        "500ms",
        "--failure-threshold",
        "3",
        "--output",
        "json",
    ]
}

fn done(v: &serde_json::Value) -> bool {
    v["done"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_canary_walks_every_step_and_is_promoted() {
    let s = setup(0.0, None).await;
    let run = s.cli(&start_args("300ms"));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["canary_weight"], 20);

    // Every weight seen is a step, in order, never skipping back.
    let mut seen = vec![];
    let last = s.wait("promotion", done).await;
    assert_eq!(last["phase"], "promoted", "{last}");
    let history = s.cli(&["history", "web", "--output", "json"]).json();
    for e in history["events"].as_array().expect("events") {
        let m = e["message"].as_str().unwrap_or_default();
        if let Some(rest) = m.split("canary ").nth(1).filter(|_| m.starts_with("step ")) {
            seen.push(rest.trim_end_matches('%').to_string());
        }
    }
    assert_eq!(
        seen,
        ["20", "50", "100"],
        "each step applied once, in order"
    );
    let checks = last["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 3);
    assert!(checks
        .iter()
        .all(|c| c["passed"] == true && c["requests"].as_u64() > Some(0)));
    s.all_to("web~canary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_canary_is_rolled_back_and_traffic_returns_to_stable() {
    let s = setup(0.05, None).await;
    let run = s.cli(&start_args("300ms"));
    assert_eq!(run.code, 0, "{run:?}");
    let last = s.wait("rollback", done).await;
    assert_eq!(last["phase"], "rolled_back", "{last}");
    // Rolled back after exactly failure-threshold windows (each one
    // interval long) of the first step: within interval × threshold of
    // the analysis start, counted in windows rather than wall time.
    assert_eq!(last["failures"], 3);
    let checks = last["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 3, "{last}");
    for c in checks {
        // Measured, not missing: about the 5 % the canary answers with.
        let rate = c["error_rate"].as_f64().expect("a measured error rate");
        assert!(c["passed"] == false && (0.02..=0.09).contains(&rate), "{c}");
        assert!(c["requests"].as_u64() > Some(50), "{c}");
    }
    assert_eq!(last["canary_weight"], 0);
    s.all_to("web~stable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_metrics_roll_back_and_never_promote() {
    // A port that nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let s = setup(0.0, Some(dead)).await;
    assert_eq!(s.cli(&start_args("300ms")).code, 0);
    let last = s.wait("rollback", done).await;
    assert_eq!(last["phase"], "rolled_back", "{last}");
    for c in last["checks"].as_array().expect("checks") {
        assert_eq!(c["passed"], false);
        assert!(c["error_rate"].is_null(), "no number was invented: {c}");
    }
    s.all_to("web~stable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sluice_resumes_at_the_same_step_and_abort_survives_restarts() {
    let mut s = setup(0.0, None).await;
    // Long windows: the rollout is still at its first step when killed.
    let run = s.cli(&start_args("20s"));
    assert_eq!(run.code, 0, "{run:?}");
    let before = s
        .wait("analysis of step 1", |v| v["phase"] == "analysing")
        .await;
    assert_eq!(
        (before["step"].clone(), before["canary_weight"].clone()),
        (0.into(), 20.into())
    );

    let xds = s.sluice.xds.to_string();
    s.sluice.kill();
    assert_eq!(s.files.saved()["web"]["state"]["step"], 0);
    s.sluice = s.files.sluice(&s.rules, &xds, &[s.traffic.stats_addr]);
    let after = s.cli(&["status", "web", "--output", "json"]).json();
    assert_eq!(after["step"], 0, "{after}");
    assert_eq!(after["canary_weight"], 20, "no reset to 0%, no jump");
    assert_eq!(after["failures"], before["failures"]);
    // The proxies hold the same weights through the restart (the first
    // snapshot after it carries them): 20 % ± 6 points on the canary.
    s.wait("ACKs after restart", |v| v["phase"] == "analysing")
        .await;
    let split = route(&s.fleet, backends(canary_addr(), 0.0), 3000, 11);
    let canary = *split.by_cluster.get("web~canary").unwrap_or(&0) as f64 / 3000.0;
    assert!((0.14..=0.26).contains(&canary), "canary share {canary}");

    // Pause, abort: final, and still final after another restart.
    assert_eq!(s.cli(&["pause", "web"]).code, 0);
    let aborted = s.cli(&["abort", "web", "--output", "json"]);
    assert_eq!(aborted.code, 0, "{aborted:?}");
    assert_eq!(aborted.json()["phase"], "aborted");
    s.all_to("web~stable").await;
    s.sluice.kill();
    s.sluice = s.files.sluice(&s.rules, &xds, &[s.traffic.stats_addr]);
    let v = s.cli(&["status", "web", "--output", "json"]).json();
    assert_eq!(
        (v["phase"].clone(), v["canary_weight"].clone()),
        ("aborted".into(), 0.into())
    );
    let resume = s.cli(&["resume", "web"]);
    assert_eq!(resume.code, 3, "an ended rollout refuses: {resume:?}");
    s.all_to("web~stable").await;
    let history = s.cli(&["history", "web"]).stdout;
    assert_eq!(
        history.matches("step 1/3").count(),
        1,
        "step applied once:\n{history}"
    );
}
