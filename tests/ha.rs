//! Several replicas on one real etcd (`sluice serve --state-etcd`): one
//! leader drives the rollouts, any replica takes commands, every replica
//! serves the same versions, a killed leader is replaced and its rollout
//! continues at its step, and a paused ex-leader is fenced. Each replica
//! has its own simulated proxies; the simulated traffic through all of
//! them is what the rollout analysis reads. Asserts on states, never on
//! speed: the waits are generous.

mod common;

use std::time::Duration;

use common::ha::{name, Replicas};
use common::rollout::{done, start_command};
use serde_json::json;

/// What `sluice rollout status` says, without the ACK counts (each replica
/// reads them at its own moment; tests/ha_acks.rs compares them).
fn shared_part(v: &serde_json::Value) -> serde_json::Value {
    json!({
        "phase": v["phase"],
        "step": v["step"],
        "canary_weight": v["canary_weight"],
        "failures": v["failures"],
        "checks": v["checks"],
    })
}

/// The step indexes of every status read, in order, never decrease; the
/// rollout is never reset to no step (pending) once it had one.
fn monotonic(seen: &[serde_json::Value]) -> bool {
    let steps: Vec<i64> = seen
        .iter()
        .map(|v| match v["phase"].as_str() {
            Some("promoted") => 99,
            _ => v["step"].as_i64().unwrap_or(-1),
        })
        .collect();
    steps.windows(2).all(|w| w[0] <= w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_drives_a_rollout_started_on_a_follower_and_every_replica_agrees() {
    let r = Replicas::start(3).await;
    let leader = r.leader().await;
    for i in 0..3 {
        common::eventually(&format!("replica {i} sees all three"), || async {
            r.ha(i).await["replicas"].as_array().map(Vec::len) == Some(3)
        })
        .await;
        let ha = r.ha(i).await;
        assert_eq!(ha["replica"], name(i), "{ha}");
        assert_eq!(ha["replicas"], json!(["r0", "r1", "r2"]), "{ha}");
        assert_eq!(ha["lease_ttl_ms"], 2000, "{ha}");
        assert_eq!(ha["store_up"], true, "{ha}");
        let gauge = r.get(i).metric("sluice_leader").await;
        assert_eq!(gauge, if i == leader { 1.0 } else { 0.0 }, "replica {i}");
    }
    let follower = (leader + 1) % 3;
    let text = r.get(leader).status_text().await;
    assert!(
        text.contains(&format!("replica: {} (LEADER)", name(leader))),
        "{text}"
    );
    let text = r.get(follower).status_text().await;
    assert!(
        text.contains(&format!(
            "replica: {} (follower, leader: {})",
            name(follower),
            name(leader)
        )),
        "{text}"
    );
    assert!(text.contains("replicas: r0, r1, r2"), "{text}");
    r.same_versions("the same versions before any rollout")
        .await;

    // Started through a follower, driven by the leader to the end.
    let run = r.cli(
        follower,
        &start_command(&["--steps", "20,50,100", "--interval", "300ms"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["canary_weight"], 20);
    let last = r.wait(follower, "promotion", done).await;
    assert_eq!(last["phase"], "promoted", "{last}");
    assert_eq!(r.steps_applied(follower), ["20", "50", "100"]);
    // The same answer on every replica, and the same versions served.
    let mut answers = vec![];
    for i in 0..3 {
        let v = r.wait(i, "the promotion seen by every replica", done).await;
        answers.push(shared_part(&v));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:#?}");
    let history = r
        .cli(leader, &["history", "web", "--output", "json"])
        .json();
    for i in 0..3 {
        assert_eq!(
            r.cli(i, &["history", "web", "--output", "json"]).json(),
            history,
            "replica {i}"
        );
    }
    let promoted = r.same_versions("the same versions after promotion").await;

    // A drain through another follower reaches every replica.
    let other = (leader + 2) % 3;
    let admin = r.get(other).admin.to_string();
    let out = std::process::Command::new(common::sluice_bin())
        .args(["drain", "add", "--service", "web", "--endpoint"])
        .arg(common::rollout::CANARY)
        .args(["--admin", &admin, "--admin-token-file"])
        .arg(&r.files.token_file)
        .output()
        .expect("run sluice drain");
    assert!(out.status.success(), "{out:?}");
    for i in 0..3 {
        let url = format!("http://{}/drains", r.get(i).admin);
        common::eventually(&format!("the drain on replica {i}"), || {
            let url = url.clone();
            async move {
                let list = common::get_json(&url).await;
                list.as_array()
                    .is_some_and(|l| l.len() == 1 && l[0]["endpoint"] == common::rollout::CANARY)
            }
        })
        .await;
    }
    let drained = r.same_versions("the same versions with the drain").await;
    assert_ne!(drained, promoted, "the drain changed what is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_its_rollout_continues_at_the_same_step() {
    let mut r = Replicas::start(3).await;
    let old = r.leader().await;
    let via = (old + 1) % 3;
    // Long windows: the rollout is still at its first step when the
    // leader dies.
    let run = r.cli(
        via,
        &start_command(&["--steps", "20,50,100", "--interval", "4s"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let before = r
        .wait(via, "analysis of step 1", |v| v["phase"] == "analysing")
        .await;
    assert_eq!(
        (before["step"].clone(), before["canary_weight"].clone()),
        (0.into(), 20.into())
    );

    r.kill(old);
    let survivors = r.running();
    let new = r.leader_among(&survivors).await;
    assert_ne!(new, old);
    for &i in &survivors {
        let ha = r.ha(i).await;
        assert_eq!(ha["leader"], name(new), "{ha}");
        assert!(
            !ha["replicas"]
                .as_array()
                .expect("replicas")
                .contains(&json!(name(old))),
            "the dead replica left the election: {ha}"
        );
    }
    // Where the new leader took over: the step the old one was at (or,
    // at most, the next one it had already saved), never reset.
    let mut seen = vec![before];
    let last = r.follow(via, &mut seen).await;
    assert_eq!(last["phase"], "promoted", "{last}");
    assert!(monotonic(&seen), "a step went back: {seen:#?}");
    assert_eq!(
        r.steps_applied(via),
        ["20", "50", "100"],
        "each step applied once, in order, across the failover"
    );
    let history = r.cli(via, &["history", "web"]).stdout;
    assert!(
        history.contains("controller restarted at step"),
        "{history}"
    );
    r.same_versions("the survivors serve the same versions")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_fenced_when_it_wakes_and_becomes_a_follower() {
    let r = Replicas::start(2).await;
    let old = r.leader().await;
    let other = 1 - old;
    let run = r.cli(
        other,
        &start_command(&["--steps", "20,50,100", "--interval", "1s"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let before = r
        .wait(other, "analysis of step 1", |v| v["phase"] == "analysing")
        .await;

    // Paused past its lease: the other replica takes over and steps on.
    r.signal(old, "STOP");
    let new = r.leader_among(&[other]).await;
    assert_eq!(new, other);
    let mut seen = vec![before];
    let stepped = r
        .wait(other, "a step by the new leader", |v| {
            v["step"].as_i64() >= Some(1) || done(v)
        })
        .await;
    seen.push(stepped);

    // Woken: its due steps are refused, it stops leading and follows.
    r.signal(old, "CONT");
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        let ha = r.ha(old).await;
        seen.push(r.status(other));
        if ha["is_leader"] == false && ha["leader"] == name(other) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old leader still leads: {ha}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(r.get(old).metric("sluice_leader").await, 0.0);
    assert_eq!(
        r.get(old).metric("sluice_leadership_lost_total").await,
        1.0,
        "the lost term is counted"
    );
    assert_eq!(r.leader_among(&[old, other]).await, other);
    let last = r.follow(other, &mut seen).await;
    assert_eq!(last["phase"], "promoted", "{last}");
    assert!(monotonic(&seen), "no state regressed: {seen:#?}");
    assert_eq!(r.steps_applied(old), ["20", "50", "100"]);
    assert_eq!(
        shared_part(&r.wait(old, "the end seen by the old leader", done).await),
        shared_part(&last)
    );
    r.same_versions("both replicas serve the same versions")
        .await;
}

/// The transaction itself, on a real etcd: a leader writes while its term
/// holds; once another replica won the election, the old leader's write
/// is refused and changes nothing; and a leader never overwrites a record
/// an operator changed since it last read it, until it takes that record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_a_leader_whose_term_ended_are_refused_and_change_nothing() {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use sluice::canary::store::{Shared, StateStore, StoreError, Versioned};
    use sluice::canary::{Rollout, Spec, State, Strategy};
    use sluice::ha::fenced::{FencedStore, Term};

    let etcd = common::etcd::Etcd::start().await;
    let mut c = etcd.client().await.expect("client");
    let prefix = "/fence/";
    let key = "/fence/rollouts/web";
    let (_, records) = tokio::sync::watch::channel(Shared::default());
    let term = |c: etcd_client::Client, who: &'static str| {
        let records = records.clone();
        async move {
            let mut c2 = c.clone();
            let lease = c2.lease_grant(60, None).await.expect("lease").id();
            let won = c2
                .campaign("/fence/leader", who, lease)
                .await
                .expect("campaign");
            let k = won.leader().expect("leader key");
            let t = Term {
                key: k.key().to_vec(),
                revision: k.rev(),
            };
            (lease, FencedStore::new(c, prefix, t, records))
        }
    };
    let spec = Spec {
        service: "web".into(),
        from: "stable".into(),
        to: "canary".into(),
        steps: vec![20, 50, 100],
        interval_ms: 1000,
        max_error_rate: 0.01,
        max_p99_ms: 0,
        failure_threshold: 1,
        header: None,
        strategy: Strategy::Canary,
        ack_share: 1.0,
        ack_timeout_ms: 1000,
    };
    let at = |step: usize| {
        let mut r = Rollout::new(spec.clone(), 1);
        r.state = State::Analysing { step, since_ms: 1 };
        r
    };
    let stored = |c: &mut etcd_client::Client| {
        let mut c = c.clone();
        async move {
            let resp = c.get(key, None).await.expect("get");
            let kv = resp.kvs().first().expect("the record").clone();
            let r: Rollout = serde_json::from_slice(kv.value()).expect("json");
            (r, kv.mod_revision())
        }
    };

    let (old_lease, old) = term(c.clone(), "a").await;
    old.save("web", &BTreeMap::from([("web".to_string(), at(0))]))
        .await
        .expect("the leader writes");
    // Its lease ends (as when it expires); another replica is elected.
    c.lease_revoke(old_lease).await.expect("revoke");
    let (_, new) = term(c.clone(), "b").await;
    assert_eq!(new.load().await.expect("load")["web"], at(0));
    new.save("web", &BTreeMap::from([("web".to_string(), at(1))]))
        .await
        .expect("the new leader writes");

    // The old leader wakes and writes what it had computed: refused.
    let refused = old
        .save("web", &BTreeMap::from([("web".to_string(), at(2))]))
        .await;
    assert!(matches!(refused, Err(StoreError::Fenced)), "{refused:?}");
    assert_eq!(stored(&mut c).await.0, at(1), "nothing changed");

    // An operator's command lands between two of the leader's writes: the
    // leader's next write is a conflict, not an overwrite…
    let mut paused = at(1);
    paused.state = State::Paused {
        step: 1,
        reason: "paused by operator".into(),
    };
    c.put(key, serde_json::to_vec(&paused).expect("json"), None)
        .await
        .expect("put");
    let conflict = new
        .save("web", &BTreeMap::from([("web".to_string(), at(2))]))
        .await;
    assert!(
        matches!(conflict, Err(StoreError::Conflict(_))),
        "{conflict:?}"
    );
    let (now, revision) = stored(&mut c).await;
    assert_eq!(now, paused);
    // …until it takes the operator's record (as its watch hands it over).
    let seen: Shared = Arc::new(BTreeMap::from([(
        "web".to_string(),
        Versioned {
            rollout: paused.clone(),
            revision,
        },
    )]));
    assert_eq!(new.newer(&seen), vec![("web".to_string(), paused.clone())]);
    assert!(new.newer(&seen).is_empty(), "taken once");
    let mut resumed = paused.clone();
    resumed.state = State::WaitingForAck {
        step: 1,
        since_ms: 2,
    };
    new.save(
        "web",
        &BTreeMap::from([("web".to_string(), resumed.clone())]),
    )
    .await
    .expect("written on the record it read");
    assert_eq!(stored(&mut c).await.0, resumed);
}

/// etcd down: every replica keeps serving what it has (ready, the same
/// versions), none leads, the rollout takes no step and commands fail;
/// etcd back: a leader is elected and the rollout resumes where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_keeps_replicas_serving_and_pauses_the_rollout_until_it_returns() {
    let mut r = Replicas::start(2).await;
    let leader = r.leader().await;
    let run = r.cli(
        1 - leader,
        &start_command(&["--steps", "20,50,100", "--interval", "2s"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    r.wait(0, "analysis of step 1", |v| v["phase"] == "analysing")
        .await;

    r.etcd.kill();
    for i in 0..2 {
        common::eventually(&format!("replica {i} sees the outage"), || async {
            let ha = r.ha(i).await;
            ha["store_up"] == false && ha["is_leader"] == false
        })
        .await;
        assert_eq!(r.get(i).metric("sluice_leader").await, 0.0);
    }
    let served = r.same_versions("the same versions during the outage").await;
    let held = r.status(0);
    // Longer than a window: without durable state no step is taken.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..2 {
        r.get(i).wait_ready("still ready during the outage").await;
        assert_eq!(
            r.versions(i).await,
            served,
            "replica {i} serves what it had"
        );
        assert_eq!(shared_part(&r.status(i)), shared_part(&held), "replica {i}");
    }
    let pause = r.cli(0, &["pause", "web"]);
    assert_ne!(pause.code, 0, "a command cannot be stored: {pause:?}");

    r.etcd.restart().await;
    for i in 0..2 {
        common::eventually(&format!("replica {i} reloads"), || async {
            r.ha(i).await["store_up"] == true
        })
        .await;
    }
    r.leader().await;
    let last = r.wait(0, "promotion after the outage", done).await;
    assert_eq!(last["phase"], "promoted", "{last}");
    assert_eq!(r.steps_applied(0), ["20", "50", "100"]);
    r.same_versions("the same versions after the outage").await;
}

/// While no replica leads (here: an outside candidate holds the election),
/// any replica takes commands: the rollout starts, every replica serves its
/// first weights, pause and resume work on either replica; once the
/// election is free a replica leads and carries the rollout to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_work_while_no_replica_leads_and_the_next_leader_carries_them_out() {
    use sluice::sim::route::Clusters;

    let etcd = common::etcd::Etcd::start().await;
    let mut c = etcd.client().await.expect("client");
    let outsider = c.lease_grant(60, None).await.expect("lease").id();
    c.campaign("/sluice/leader", "outsider", outsider)
        .await
        .expect("the outsider leads");
    let r = Replicas::start_on(etcd, 2).await;
    for i in 0..2 {
        common::eventually(&format!("replica {i} follows the outsider"), || async {
            let ha = r.ha(i).await;
            ha["leader"] == "outsider" && ha["is_leader"] == false
        })
        .await;
        assert_eq!(r.get(i).metric("sluice_leader").await, 0.0);
    }

    let run = r.cli(
        0,
        &start_command(&["--steps", "20,50,100", "--interval", "300ms"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        (
            run.json()["phase"].clone(),
            run.json()["canary_weight"].clone()
        ),
        ("waiting_for_ack".into(), 20.into())
    );
    // Every replica serves the first step's weights, with no leader.
    for (i, fleet) in r.fleets.iter().enumerate() {
        common::eventually(&format!("20 % on the proxies of replica {i}"), || async {
            matches!(
                common::rollout::plain_clusters(fleet),
                Some(Clusters::Weighted { clusters, .. })
                    if clusters.contains(&("web~canary".to_string(), 20))
            )
        })
        .await;
    }
    r.same_versions("the same versions with no leader").await;
    let paused = r.cli(1, &["pause", "web", "--output", "json"]);
    assert_eq!(paused.code, 0, "{paused:?}");
    assert_eq!(paused.json()["phase"], "paused");
    r.wait(0, "the pause seen by the other replica", |v| {
        v["phase"] == "paused"
    })
    .await;
    let resumed = r.cli(0, &["resume", "web", "--output", "json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert_eq!(resumed.json()["phase"], "waiting_for_ack");

    // The election is free: a replica leads and finishes the rollout.
    c.lease_revoke(outsider).await.expect("revoke");
    let leader = r.leader().await;
    let last = r.wait(1 - leader, "promotion", done).await;
    assert_eq!(last["phase"], "promoted", "{last}");
    assert_eq!(r.steps_applied(1 - leader), ["20", "50", "100"]);
}

/// Which running replica (index into `replicas`) has `node` connected.
async fn serving(replicas: &[Option<common::Sluice>], node: &str) -> Option<usize> {
    for (i, s) in replicas.iter().enumerate() {
        let Some(s) = s else { continue };
        let status = s.status().await;
        let proxies = status["proxies"].as_array().cloned().unwrap_or_default();
        if proxies.iter().any(|p| p["node"]["id"] == node) {
            return Some(i);
        }
    }
    None
}

/// Whether the running replicas serve `proxies` proxies in all, each
/// having ACKed what it was sent, and all of them the same version per
/// type.
async fn same_versions_everywhere(replicas: &[Option<common::Sluice>], proxies: usize) -> bool {
    let mut seen = 0;
    let mut versions =
        std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for s in replicas.iter().flatten() {
        let status = s.status().await;
        for p in status["proxies"].as_array().into_iter().flatten() {
            seen += 1;
            for (ty, st) in p["types"].as_object().into_iter().flatten() {
                if st["acked"].is_null() || st["acked"] != st["sent"] {
                    return false;
                }
                versions
                    .entry(ty.clone())
                    .or_default()
                    .insert(st["acked"].to_string());
            }
        }
    }
    seen == proxies && !versions.is_empty() && versions.values().all(|v| v.len() == 1)
}

/// Waits until a running replica lists `node`; its index.
async fn wait_serving(replicas: &[Option<common::Sluice>], node: &str) -> usize {
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        if let Some(i) = serving(replicas, node).await {
            return i;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no replica lists {node}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A real Envoy bootstrapped with all three replicas (`sluice bootstrap
/// --xds A,B,C`) and simulated proxies spread over them all hold the same
/// versions. Envoy carries ~200 requests a second while the replica it
/// streams from is killed: no request fails, Envoy reconnects to another
/// replica, and since every replica serves the same versions nothing is
/// re-warmed (no listener or cluster modified, nothing rejected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_replica_an_envoy_streams_from_fails_no_request_and_rewarms_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    let etcd = common::etcd::Etcd::start().await;
    let backend = common::backend("web").await;
    let rules = common::RulesFile::new(&format!(
        "services:\n  - name: web\n    endpoints: [{{address: 127.0.0.1, port: {}}}]\n{}          - {{match: {{prefix: /}}, to: {{service: web}}}}\n",
        backend.addr.port(),
        common::rules::http_listener(0, "all")
    ));
    let mut replicas: Vec<Option<common::Sluice>> = (0..3)
        .map(|i| {
            let replica = name(i);
            Some(common::Sluice::start_with(
                &rules.path,
                "127.0.0.1:0",
                &[
                    "--state-etcd",
                    etcd.url.as_str(),
                    "--state-lease-ttl",
                    common::ha::TTL,
                    "--replica-name",
                    replica.as_str(),
                ],
            ))
        })
        .collect();
    let mut xds = vec![];
    for s in replicas.iter().flatten() {
        s.wait_ready("replica ready").await;
        xds.push(s.xds.to_string());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bootstrap = dir.path().join("bootstrap.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bootstrap", "--node-id", "edge-1", "--xds", &xds.join(",")])
        .args(["--admin-port", "0", "--out"])
        .arg(&bootstrap)
        .status()
        .expect("run sluice bootstrap");
    assert!(status.success());
    let envoy = common::Envoy::start_static(dir, &bootstrap).await;
    let port = envoy.listener_port("http").await;
    common::routes_to(port, "web").await;
    let first = wait_serving(&replicas, "edge-1").await;
    // Simulated proxies in Envoy's group, each on a replica of its own
    // choosing: every proxy on every replica holds the same versions.
    let status = replicas[first].as_ref().expect("running").status().await;
    let group = status["proxies"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["node"]["id"] == "edge-1"))
        .and_then(|p| p["node"]["group"].as_str())
        .expect("Envoy's group")
        .to_string();
    let sims = sluice::sim::fleet::Fleet::start(&sluice::sim::fleet::FleetConfig {
        xds: xds.join(","),
        proxies: 6,
        mode: sluice::sim::state::Mode::Delta,
        group,
        node_prefix: "sim".into(),
        faults: Default::default(),
        runtime_layer: None,
        security: Default::default(),
    });
    common::eventually(
        "every proxy on every replica holds the same versions",
        || async { same_versions_everywhere(&replicas, 7).await },
    )
    .await;
    let (listeners, clusters) = (
        envoy.stat("listener_manager.listener_modified").await,
        envoy.stat("cluster_manager.cluster_modified").await,
    );

    // Four clients, each a request every 20 ms: about 200 a second.
    let url = format!("http://127.0.0.1:{port}/");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let client = common::http();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failed
                            .lock()
                            .expect("lock")
                            .push(format!("status {}", r.status())),
                        Err(e) => failed.lock().expect("lock").push(e.to_string()),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    common::eventually("traffic flows", || async {
        ok.load(Ordering::Relaxed) >= 200
    })
    .await;

    replicas[first].take().expect("running").kill();
    let before = ok.load(Ordering::Relaxed);
    let now = wait_serving(&replicas, "edge-1").await;
    common::eventually("Envoy is connected again", || async {
        envoy.stat("control_plane.connected_state").await == 1.0
    })
    .await;
    assert_ne!(now, first);
    // The new replica's versions are ACKed (it sent what Envoy had)...
    common::eventually("Envoy ACKed the new replica's versions", || async {
        let status = replicas[now].as_ref().expect("running").status().await;
        let proxies = status["proxies"].as_array().cloned().unwrap_or_default();
        let envoy = proxies.iter().find(|p| p["node"]["id"] == "edge-1");
        envoy.is_some_and(|p| {
            let types = p["types"].as_object().cloned().unwrap_or_default();
            !types.is_empty()
                && types
                    .values()
                    .all(|s| !s["acked"].is_null() && s["acked"] == s["sent"])
        })
    })
    .await;
    // ...and traffic kept flowing through and after the failover.
    common::eventually("more traffic after the failover", || async {
        ok.load(Ordering::Relaxed) >= before + 400
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let failed = failed.lock().expect("lock").clone();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    common::eventually(
        "the same versions everywhere after the failover",
        || async { same_versions_everywhere(&replicas, 7).await },
    )
    .await;
    sims.stop().await;
    assert_eq!(
        envoy.stat("listener_manager.listener_modified").await,
        listeners,
        "a listener was re-warmed"
    );
    assert_eq!(
        envoy.stat("cluster_manager.cluster_modified").await,
        clusters,
        "a cluster was re-warmed"
    );
    for s in [
        "cluster_manager.cds.update_rejected",
        "listener_manager.lds.update_rejected",
    ] {
        assert_eq!(envoy.stat(s).await, 0.0, "{s}");
    }
}
