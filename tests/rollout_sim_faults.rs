//! Rollouts with misbehaving proxies among the targeted ones, end to end
//! with the simulator's fault knobs and the `sluice` binary: a proxy that
//! NACKs the step's routes or never answers pauses the rollout at that
//! step with the reason in `sluice rollout status`; the healthy proxies
//! keep serving the step's split; `resume` re-checks the same step and
//! `abort` returns everyone to stable. With runtime weights, a proxy
//! without sluice's RTDS layer stays on stable and the pause names it.
//! Asserts on states, weights, reasons and where simulated requests go,
//! never on speed.

mod common;

use common::rollout::*;
use common::*;
use sluice::sim::client::Faults;
use sluice::sim::route::Clusters;
use sluice::xds::TypeUrl;

const STABLE: &str = "web~stable";
const CANARY_CLUSTER: &str = "web~canary";

fn canary_steps() -> Vec<&'static str> {
    start_command(&[
        "--steps",
        "20,50,100",
        "--interval",
        "300ms",
        "--failure-threshold",
        "3",
    ])
}

/// The healthy proxies run the step's 20 % split and answer every request.
fn healthy_at_20_percent(s: &Setup) {
    let users = s.send(3000, plain);
    assert!(all_ok(&users, 3000), "{:?}", users.downstream);
    let canary = share(&users, CANARY_CLUSTER, 3000);
    assert!((0.14..=0.26).contains(&canary), "canary share {canary}");
}

/// Waits for the rollout to pause and checks it held the first step:
/// nothing judged, nothing moved on, the healthy proxies serving its split.
/// Returns the status and the reason.
async fn paused_at_first_step(s: &Setup) -> (serde_json::Value, String) {
    let v = s
        .wait("a pause", |v| v["phase"] == "paused" || done(v))
        .await;
    assert_eq!(
        (
            v["phase"].clone(),
            v["step"].clone(),
            v["canary_weight"].clone()
        ),
        ("paused".into(), 0.into(), 20.into())
    );
    assert_eq!(v["checks"].as_array().map(Vec::len), Some(0), "{v}");
    healthy_at_20_percent(s);
    let reason = v["reason"].as_str().expect("a reason").to_string();
    (v, reason)
}

async fn in_registry(s: &Setup, id: &str) -> bool {
    let status = s.sluice.status().await;
    status["proxies"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["node"]["id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacking_proxy_pauses_the_rollout_until_resumed_without_it() {
    let s = Setup::start(0.0, None).await;
    let nacking = s.extra_fleet(
        "nack",
        1,
        Faults {
            nack: vec![TypeUrl::Route],
            ..Faults::default()
        },
    );
    // It has rejected the rules' routes already (so sluice knows it).
    nacking
        .wait_all(WAIT, |r| r.nacks > 0)
        .await
        .expect("NACKed");
    let run = s.cli(&canary_steps());
    assert_eq!(run.code, 0, "{run:?}");

    let (_, reason) = paused_at_first_step(&s).await;
    assert!(
        reason.contains("NACK") && reason.contains("nack-0") && reason.contains("forced NACK"),
        "{reason}"
    );

    // Resume re-checks the same step: the proxy still rejects it.
    let run = s.cli(&["resume", "web", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["canary_weight"], 20);
    let (_, reason) = paused_at_first_step(&s).await;
    assert!(reason.contains("NACK"), "{reason}");

    // Without the faulty proxy a resume goes on from the same step.
    nacking.stop().await;
    eventually("nack-0 gone from sluice", || async {
        !in_registry(&s, "nack-0").await
    })
    .await;
    assert_eq!(s.cli(&["resume", "web"]).code, 0);
    let v = s.wait("promotion", done).await;
    assert_eq!(v["phase"], "promoted", "{v}");
    assert_eq!(
        s.steps_applied(),
        ["20", "50", "100"],
        "each step once: {}",
        s.history()
    );
    s.all_to(CANARY_CLUSTER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_proxy_pauses_on_ack_timeout_and_abort_returns_to_stable() {
    let s = Setup::start(0.0, None).await;
    let _stalled = s.extra_fleet(
        "stall",
        1,
        Faults {
            stall: true,
            ..Faults::default()
        },
    );
    eventually("stall-0 known to sluice", || async {
        in_registry(&s, "stall-0").await
    })
    .await;
    let mut start = canary_steps();
    start.extend(["--ack-timeout", "3s"]);
    let run = s.cli(&start);
    assert_eq!(run.code, 0, "{run:?}");

    let (v, reason) = paused_at_first_step(&s).await;
    assert!(
        reason.starts_with("ACK timeout: 3/4 proxies ACKed canary 20%"),
        "{reason}"
    );
    assert_eq!(
        (v["acked"].clone(), v["targeted"].clone()),
        (3.into(), 4.into())
    );

    let run = s.cli(&["abort", "web", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        (
            run.json()["phase"].clone(),
            run.json()["canary_weight"].clone()
        ),
        ("aborted".into(), 0.into())
    );
    s.all_to(STABLE).await;
    assert!(all_ok(&s.send(600, plain), 600));

    // A rollout that needs only 3 of 4 ACKs is not held back by it.
    let mut start = canary_steps();
    start.extend(["--ack-timeout", "3s", "--ack-share", "75%"]);
    assert_eq!(s.cli(&start).code, 0);
    let v = s.wait("promotion", done).await;
    assert_eq!(v["phase"], "promoted", "{v}");
    s.all_to(CANARY_CLUSTER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_runtime_weights_a_proxy_without_the_layer_stays_on_stable_and_is_named() {
    let s = Setup::start_runtime(0.0).await;
    let plain_envoy = s.extra_fleet_without_rtds("plain", 1);
    eventually("plain-0 configured", || async {
        plain_envoy.reports()[0].view.listeners.contains_key("http")
    })
    .await;
    let mut start = canary_steps();
    start.extend(["--ack-timeout", "2s"]);
    let run = s.cli(&start);
    assert_eq!(run.code, 0, "{run:?}");

    // The proxies with the layer serve the step; the pause names the one
    // without it.
    let (_, reason) = paused_at_first_step(&s).await;
    assert!(
        reason.starts_with("ACK timeout: 3/4 proxies ACKed canary 20%")
            && reason.contains("plain-0 has not asked for sluice's RTDS layer sluice"),
        "{reason}"
    );
    // It holds the routes of the step, which read the runtime keys it
    // does not have: everything stays on stable, nothing fails.
    let alone = route(&plain_envoy, backends(canary_addr(), 0.0), 400, 3);
    assert_eq!(
        alone.by_cluster.get(STABLE),
        Some(&400),
        "{:?}",
        alone.by_cluster
    );
    let reads_runtime = matches!(
        plain_clusters(&plain_envoy),
        Some(Clusters::Weighted { runtime_key_prefix: Some(p), .. }) if p == "sluice.rollout.web.from.stable"
    );
    assert!(reads_runtime, "it holds the step's routes");
}
