//! ACKs across replicas (`sluice serve --state-etcd`): each replica
//! publishes a summary of its proxies under a lease of its own, so the
//! leader gates every rollout step on the whole fleet, every replica
//! answers `sluice rollout status` with the same ACK counts, a NACK on any
//! replica pauses the rollout, and a dead replica's proxies stop counting
//! when its lease ends instead of holding the step until its ACK timeout.
//! Real etcd, real replicas, simulated proxies; waits on states, never on
//! durations.

mod common;

use common::ha::{name, Replicas};
use common::rollout::{done, sim_fleet, start_command};
use serde_json::json;
use sluice::sim::client::Faults;
use sluice::xds::TypeUrl;

/// The rollout's steps, with an ACK timeout no test waits for: a step
/// that proceeds did so because its proxies ACKed, not because it timed
/// out.
fn steps() -> Vec<&'static str> {
    start_command(&[
        "--steps",
        "20,50,100",
        "--interval",
        "300ms",
        "--ack-timeout",
        "10m",
    ])
}

/// Waits until replica `i`'s `/status` says how many proxies each replica
/// serves, as `want` (replica index → count).
async fn counts(r: &Replicas, i: usize, want: &[(usize, u64)]) {
    let want: serde_json::Map<String, serde_json::Value> =
        want.iter().map(|(j, n)| (name(*j), json!(n))).collect();
    let want = serde_json::Value::Object(want);
    common::eventually(
        &format!("replica {i} counts the proxies per replica as {want}"),
        || async { r.ha(i).await["proxies"] == want },
    )
    .await;
}

/// The "N/M proxies ACKed" messages of the rollout's history, read
/// through replica `i`.
fn ack_messages(r: &Replicas, i: usize) -> Vec<String> {
    let history = r.cli(i, &["history", "web", "--output", "json"]).json();
    history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("proxies ACKed"))
        .map(str::to_string)
        .collect()
}

fn xds_of(r: &Replicas, i: usize) -> String {
    r.get(i).xds.to_string()
}

/// A proxy on replica `i` that reads its responses and never answers:
/// it holds no step.
fn stalled_on(r: &Replicas, i: usize) -> sluice::sim::fleet::Fleet {
    let faults = Faults {
        stall: true,
        ..Faults::default()
    };
    sim_fleet(&xds_of(r, i), "stall", 1, faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_waits_for_the_proxies_of_every_replica_and_every_replica_counts_them() {
    let r = Replicas::start(2).await;
    let leader = r.leader().await;
    let follower = 1 - leader;
    for i in 0..2 {
        counts(&r, i, &[(0, 2), (1, 2)]).await;
    }
    let text = r.get(leader).status_text().await;
    assert!(text.contains("proxies per replica: r0=2 r1=2"), "{text}");
    let stalled = stalled_on(&r, follower);
    counts(&r, leader, &[(leader, 2), (follower, 3)]).await;

    let run = r.cli(follower, &steps());
    assert_eq!(run.code, 0, "{run:?}");
    // The leader's own two proxies ACKed, and so did the follower's two;
    // the step waits for the fifth, and both replicas say so.
    for i in [leader, follower] {
        let v = r
            .wait(i, "4 of 5 proxies ACKed at the first step", |v| {
                v["acked"] == 4 && v["targeted"] == 5
            })
            .await;
        assert_eq!(
            (v["phase"].clone(), v["step"].clone()),
            ("waiting_for_ack".into(), 0.into()),
            "replica {i}: {v}"
        );
    }
    assert_eq!(r.steps_applied(leader), ["20"]);

    // The stalled proxy leaves: the other four hold the step, and the
    // rollout goes on to the end, each step ACKed by the whole fleet.
    stalled.stop().await;
    let last = r.wait(follower, "promotion", done).await;
    assert_eq!(last["phase"], "promoted", "{last}");
    assert_eq!(r.steps_applied(leader), ["20", "50", "100"]);
    let messages = ack_messages(&r, follower);
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(
        messages.iter().all(|m| m.starts_with("4/4 proxies ACKed")),
        "{messages:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_on_a_follower_pauses_the_leaders_rollout_with_that_proxys_error() {
    let r = Replicas::start(2).await;
    let leader = r.leader().await;
    let follower = 1 - leader;
    let _nacking = sim_fleet(
        &xds_of(&r, follower),
        "nack",
        1,
        Faults {
            nack: vec![TypeUrl::Route],
            ..Faults::default()
        },
    );
    counts(&r, leader, &[(leader, 2), (follower, 3)]).await;

    let run = r.cli(leader, &steps());
    assert_eq!(run.code, 0, "{run:?}");
    let v = r
        .wait(leader, "a pause", |v| v["phase"] == "paused" || done(v))
        .await;
    assert_eq!(
        (v["phase"].clone(), v["step"].clone()),
        ("paused".into(), 0.into()),
        "{v}"
    );
    let reason = v["reason"].as_str().expect("a reason").to_string();
    assert!(
        reason.starts_with("a proxy rejected (NACK) canary 20%: nack-0: "),
        "{reason}"
    );
    // Every replica reads the same record.
    let seen = r
        .wait(follower, "the pause on the follower", |v| {
            v["phase"] == "paused"
        })
        .await;
    assert_eq!(seen["reason"], v["reason"]);
    assert_eq!(r.steps_applied(follower), ["20"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_proxies_stop_counting_when_its_lease_ends_and_the_step_proceeds() {
    let mut r = Replicas::start(2).await;
    let leader = r.leader().await;
    let follower = 1 - leader;
    // On the follower: a proxy that never answers, and two that know both
    // replicas (they reconnect to the leader when the follower dies).
    let _stalled = stalled_on(&r, follower);
    let movers = sim_fleet(
        &format!("{},{}", xds_of(&r, follower), xds_of(&r, leader)),
        "mover",
        2,
        Faults::default(),
    );
    common::eventually("the two movers configured", || async {
        movers
            .reports()
            .iter()
            .all(|p| p.view.listeners.contains_key("http"))
    })
    .await;
    common::eventually("every proxy known to the leader", || async {
        let proxies = r.ha(leader).await["proxies"].clone();
        let n = |i: usize| proxies[name(i)].as_u64().unwrap_or(0);
        n(leader) + n(follower) == 7 && n(follower) >= 3
    })
    .await;

    let run = r.cli(leader, &steps());
    assert_eq!(run.code, 0, "{run:?}");
    r.wait(leader, "6 of 7 proxies ACKed at the first step", |v| {
        v["phase"] == "waiting_for_ack" && v["acked"] == 6 && v["targeted"] == 7
    })
    .await;

    // The follower dies with the stalled proxy on it: once its lease
    // ends, the leader no longer counts it, and the step proceeds long
    // before the 10-minute ACK timeout.
    r.kill(follower);
    let last = r.wait(leader, "promotion", done).await;
    assert_eq!(last["phase"], "promoted", "{last}");
    assert_eq!(r.steps_applied(leader), ["20", "50", "100"]);
    let messages = ack_messages(&r, leader);
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(
        messages.iter().all(|m| !m.contains("ACK timeout")),
        "{messages:#?}"
    );
    // The movers reconnected to the leader and count there.
    counts(&r, leader, &[(leader, 4)]).await;
    let ha = r.ha(leader).await;
    assert_eq!(ha["replicas"], json!([name(leader)]), "{ha}");
}
