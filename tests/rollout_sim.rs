//! Rollouts end to end with the simulator: the `sluice` binary with its
//! rollout controller, a fleet of simulated proxies on real ADS streams,
//! simulated traffic whose canary backend has a chosen error rate, and the
//! `sluice rollout` CLI. Asserts on states and weights, never on speed.

mod common;

use common::rollout::*;

fn start_args(interval: &str) -> Vec<&str> {
    start_command(&[
        "--steps",
        "20,50,100",
        "--interval",
        interval,
        "--failure-threshold",
        "3",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_canary_walks_every_step_and_is_promoted() {
    promoted(Setup::start(0.0, None).await).await;
}

/// The same through sluice's RTDS layer: the proxies' routes keep their
/// all-stable weights, so the split each step shows comes from the layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_canary_is_promoted_with_runtime_weights() {
    promoted(Setup::start_runtime(0.0).await).await;
}

async fn promoted(s: Setup) {
    let run = s.cli(&start_args("300ms"));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["canary_weight"], 20);

    let last = s.wait("promotion", done).await;
    assert_eq!(last["phase"], "promoted", "{last}");
    // Every weight seen is a step, in order, never skipping back.
    assert_eq!(
        s.steps_applied(),
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
    rolled_back(Setup::start(0.05, None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_canary_is_rolled_back_with_runtime_weights() {
    rolled_back(Setup::start_runtime(0.05).await).await;
}

async fn rolled_back(s: Setup) {
    // Windows of 1 s: traffic arrives in batches every 40 ms of wall
    // time, and on a loaded machine a 300 ms window once held a single
    // batch (38 canary requests) — too few to measure a 5 % error rate
    // (a window without an error passes and restarts the count).
    let run = s.cli(&start_args("1s"));
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
    let s = Setup::start(0.0, Some(dead)).await;
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
    let mut s = Setup::start(0.0, None).await;
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
    // snapshot after it carries them), and status counts them while the
    // step is still analysed (it showed 0/0 until the next step, as the
    // counts were remembered from before the restart's first ACK wait).
    s.wait("all 3 proxies counted as holding step 1", |v| {
        v["phase"] == "analysing" && v["step"] == 0 && v["acked"] == 3 && v["targeted"] == 3
    })
    .await;
    // 20 % ± 6 points on the canary.
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

/// With runtime weights sluice arms the plain route to `stable` before any
/// rollout (so starting one pushes no route); a sluice without a rollout
/// controller (no `--state-dir`) has nothing to arm it for and serves the
/// plain route as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_weights_arm_the_stable_route_only_under_a_rollout_controller() {
    use common::{eventually, RulesFile, Sluice};
    use sluice::sim::fleet::{Fleet, FleetConfig};
    use sluice::sim::route::Clusters;

    let armed = Setup::start_runtime(0.0).await;
    eventually("the armed route", || async {
        matches!(
            plain_clusters(&armed.fleet),
            Some(Clusters::Weighted { runtime_key_prefix: Some(p), clusters, .. })
                if p == "sluice.rollout.web.from.stable"
                    && clusters == [("web~stable".to_string(), 100), ("web~canary".to_string(), 0)]
        )
    })
    .await;

    let rules = RulesFile::new(RULES);
    let plain_serve = Sluice::start_with(
        &rules.path,
        "127.0.0.1:0",
        &["--rollout-weights", "runtime"],
    );
    let fleet = Fleet::start(&FleetConfig {
        xds: plain_serve.xds.to_string(),
        proxies: 1,
        mode: sluice::sim::state::Mode::Delta,
        group: "default".into(),
        node_prefix: "no-controller".into(),
        faults: Default::default(),
        runtime_layer: Some(sluice::model::RUNTIME_LAYER.to_string()),
        security: Default::default(),
    });
    eventually("the plain route", || async {
        matches!(plain_clusters(&fleet), Some(Clusters::One(c)) if c == "web~stable")
    })
    .await;
}
