//! Blue/green and A/B rollouts end to end with the simulator and the
//! `sluice` binary, with traffic in which testers carry a header: the
//! preview by header, the switch of everyone in one step (and back in one
//! push when the new version fails under user traffic), `promote` moving
//! everyone, and `status --watch` following a rollout to its end. Asserts
//! on states, weights and where simulated requests go, never on speed.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::rollout::*;
use common::*;
use sluice::sim::fleet::Fleet;
use sluice::sim::route::{Action, Clusters, Request};
use sluice::sim::state::View;
use sluice::sim::stats::Stats;

const STABLE: &str = "web~stable";
const CANARY_CLUSTER: &str = "web~canary";

/// A tester's request: it carries the rollout's header.
fn tester() -> Request {
    Request::get("x", "/").header("x-canary", "1")
}

/// A batch of one plain request in four and the rest with the tester's
/// header. With `breaks_under_load`, the canary answers half its requests
/// with 503 once plain (user) traffic reaches it: a green version that
/// passes its preview and fails in production.
fn ab_traffic(breaks_under_load: bool) -> impl Fn(&Fleet, u64) -> Stats + Send + 'static {
    move |f, seed| {
        let users_on_canary = route(f, backends(canary_addr(), 0.0), 30, seed)
            .by_cluster
            .contains_key(CANARY_CLUSTER);
        let rate = if breaks_under_load && users_on_canary {
            0.5
        } else {
            0.0
        };
        route_requests(f, backends(canary_addr(), rate), 200, seed, |i| {
            if i % 4 == 0 {
                plain()
            } else {
                tester()
            }
        })
    }
}

/// Where `view` sends `req`: a cluster, or `cluster weight, ...`.
fn target(view: &View, req: &Request) -> String {
    let Some(table) = view.routes.get("http") else {
        return "no routes".into();
    };
    match table.route(req).map(|r| &r.action) {
        Ok(Action::Forward(f)) => match &f.clusters {
            Clusters::One(c) => c.clone(),
            Clusters::Weighted { clusters, .. } => clusters
                .iter()
                .map(|(c, w)| format!("{c} {w}"))
                .collect::<Vec<_>>()
                .join(", "),
        },
        other => format!("{other:?}"),
    }
}

/// Where a proxy sends (a plain request, a tester's request).
type Pair = (String, String);

/// Every pair of targets each proxy's routes went through, in order,
/// recorded by a task that polls the fleet's views.
struct Targets(Arc<Mutex<BTreeMap<usize, Vec<Pair>>>>);

impl Targets {
    /// Starts once every proxy has its first routes.
    async fn watch(fleet: Arc<Fleet>) -> Targets {
        fleet
            .wait_all(WAIT, |r| r.view.routes.contains_key("http"))
            .await
            .expect("routes");
        let seen = Arc::new(Mutex::new(BTreeMap::<usize, Vec<Pair>>::new()));
        let s = seen.clone();
        tokio::spawn(async move {
            loop {
                for (i, r) in fleet.reports().iter().enumerate() {
                    let now = (target(&r.view, &plain()), target(&r.view, &tester()));
                    let mut seen = s.lock().unwrap_or_else(|e| e.into_inner());
                    let list = seen.entry(i).or_default();
                    if list.last() != Some(&now) {
                        list.push(now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Targets(seen)
    }

    fn each_proxy_went(&self, expected: &[Pair]) {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(seen.len(), 3, "{seen:?}");
        for (proxy, went) in seen.iter() {
            assert_eq!(went, expected, "proxy {proxy}");
        }
    }
}

fn pair(plain: &str, tester: &str) -> Pair {
    (plain.to_string(), tester.to_string())
}

/// Runs `sluice rollout status web --watch ARGS` until it exits.
async fn watch(s: &Setup, extra: &[&str]) -> Run {
    let grpc = s.sluice.admin_grpc.expect("admin grpc").to_string();
    let mut child = Command::new(common::sluice_bin())
        .args(["rollout", "--admin-grpc", &grpc, "status", "web", "--watch"])
        .args(extra)
        .arg("--admin-token-file")
        .arg(&s.files.token_file)
        .env_remove("SLUICE_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice rollout status --watch");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("status --watch did not end: {:?}", child.wait_with_output());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().expect("output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Users and testers alike end up on `cluster`.
async fn everyone_on(s: &Setup, cluster: &str) {
    s.all_to(cluster).await;
    let testers = s.send(300, tester);
    assert_eq!(
        share(&testers, cluster, 300),
        1.0,
        "{:?}",
        testers.by_cluster
    );
}

/// A blue/green rollout previewed by the testers' header, judged every
/// `interval`, rolled back at the first failed check.
fn start_blue_green(s: &Setup, interval: &str) -> Run {
    let run = s.cli(&start_command(&[
        "--strategy",
        "bluegreen",
        "--header",
        "x-canary=1",
        "--interval",
        interval,
        "--failure-threshold",
        "1",
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    run
}

/// Asserts the rollout ended in `phase` with `weight` after applying the
/// preview and the switch, each once; returns its status and checks.
fn blue_green_ended(
    s: &Setup,
    phase: &str,
    weight: u32,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let v = s.status();
    assert_eq!(
        (v["phase"].clone(), v["canary_weight"].clone()),
        (phase.into(), weight.into())
    );
    assert_eq!(s.steps_applied(), ["0", "100"], "{}", s.history());
    let checks = v["checks"].as_array().cloned().expect("checks");
    assert_eq!(checks.len(), 2, "{v}");
    (v, checks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_previews_by_header_then_switches_everyone_in_one_step() {
    let s = Setup::start_with(None, ab_traffic(false)).await;
    let targets = Targets::watch(s.fleet.clone()).await;
    let run = start_blue_green(&s, "300ms");
    assert_eq!(run.json()["spec"]["steps"], serde_json::json!([0, 100]));
    // A CI job follows it to the end.
    let followed = watch(&s, &["--output", "json"]).await;
    assert_eq!(followed.code, 0, "promoted: {followed:?}");
    let last = followed.stdout.lines().last().expect("a line");
    let last: serde_json::Value = serde_json::from_str(last).expect("json line");
    assert_eq!(last["phase"], "promoted", "{followed:?}");

    let (v, checks) = blue_green_ended(&s, "promoted", 100);
    // The preview at 0 % was judged on the testers' requests, which only
    // the header route sends to the canary.
    assert!(
        checks
            .iter()
            .all(|c| c["passed"] == true && c["requests"].as_u64() > Some(0)),
        "{v}"
    );
    everyone_on(&s, CANARY_CLUSTER).await;

    // Each proxy: everyone on stable; testers on the canary while users
    // stay on stable; everyone on the canary — never a split.
    let expected = [
        pair(STABLE, STABLE),
        pair(STABLE, CANARY_CLUSTER),
        pair(CANARY_CLUSTER, CANARY_CLUSTER),
    ];
    targets.each_proxy_went(&expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_failing_after_the_switch_flips_back_in_one_push() {
    let s = Setup::start_with(None, ab_traffic(true)).await;
    let targets = Targets::watch(s.fleet.clone()).await;
    start_blue_green(&s, "300ms");
    let followed = watch(&s, &[]).await;
    assert_eq!(followed.code, 5, "rolled back: {followed:?}");
    assert!(
        followed.stdout.lines().last().is_some_and(
            |l| l.starts_with("web: rolled back, canary canary 0% / stable stable 100%")
        ),
        "{followed:?}"
    );

    let (v, checks) = blue_green_ended(&s, "rolled_back", 0);
    assert_eq!(checks[0]["passed"], true, "the preview passed: {v}");
    let rate = checks[1]["error_rate"].as_f64().expect("measured");
    assert!(checks[1]["passed"] == false && rate > 0.2, "{v}");
    // The header route ended with the rollout.
    everyone_on(&s, STABLE).await;

    let expected = [
        pair(STABLE, STABLE),
        pair(STABLE, CANARY_CLUSTER),
        pair(CANARY_CLUSTER, CANARY_CLUSTER),
        pair(STABLE, STABLE),
    ];
    targets.each_proxy_went(&expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_sends_testers_to_the_canary_first_and_promotion_moves_everyone() {
    let s = Setup::start(0.0, None).await;
    // Long windows: nothing moves on its own while the test looks.
    start_blue_green(&s, "60s");
    s.wait("preview analysis", |v| v["phase"] == "analysing")
        .await;
    let (testers, users) = (s.send(600, tester), s.send(600, plain));
    assert!(all_ok(&testers, 600) && all_ok(&users, 600));
    assert_eq!(
        share(&testers, CANARY_CLUSTER, 600),
        1.0,
        "{:?}",
        testers.by_cluster
    );
    assert_eq!(share(&users, STABLE, 600), 1.0, "{:?}", users.by_cluster);

    // Skip the preview's analysis: the switch, header route still on.
    let run = s.cli(&["promote", "web", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["canary_weight"], 100);
    s.wait("the switch ACKed", |v| {
        v["phase"] == "analysing" && v["step"] == 1
    })
    .await;
    s.all_to(CANARY_CLUSTER).await;
    assert_eq!(share(&s.send(600, tester), CANARY_CLUSTER, 600), 1.0);

    // And promote the last step: final, everyone on the canary.
    let run = s.cli(&["promote", "web", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["phase"], "promoted");
    eventually("the header route gone", || async {
        s.fleet.reports().iter().all(|r| {
            let t = r.view.routes.get("http");
            t.and_then(|t| t.route(&tester()).ok())
                .is_some_and(|r| !r.name.ends_with("~canary-header"))
        })
    })
    .await;
    let (testers, users) = (s.send(600, tester), s.send(600, plain));
    assert!(all_ok(&testers, 600) && all_ok(&users, 600));
    assert_eq!(share(&testers, CANARY_CLUSTER, 600), 1.0);
    assert_eq!(share(&users, CANARY_CLUSTER, 600), 1.0);
    let h = s.history();
    assert!(
        h.contains("operator skipped step 1") && h.contains("promoted by operator"),
        "{h}"
    );
}
