//! The Consul source against an in-process Consul that implements the
//! blocking-query behaviour of `/v1/health/service` (`tests/common/consul.rs`),
//! with sluice as a child process and an xDS client reading EDS:
//! registrations, deregistrations and check changes reach the client; an
//! outage (500s, garbage, answers slower than the timeout) removes nothing
//! and shows in metrics and status; recovery converges; an index that goes
//! backwards is followed without missing a change; idle watching, the
//! "index 0" bug and 500s cost a bounded number of requests. An opt-in test
//! runs against a real Consul when `SLUICE_TEST_CONSUL_ADDR` is set.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::consul::{mk_instance, FakeConsul, DC};
use common::eds::{eds_is, last, set};
use common::*;

const TOKEN_ENV: &str = "SLUICE_TEST_CONSUL_TOKEN";
/// The blocking-query wait the tests configure.
const WAIT: Duration = Duration::from_secs(1);

fn rules(consul_url: &str, listen: u16, token: bool) -> String {
    let token = if token {
        format!(", token_env: {TOKEN_ENV}")
    } else {
        String::new()
    };
    let listener = common::rules::http_listener(listen, "web");
    format!(
        r#"sources:
  consul: {{address: "{consul_url}", datacenter: {DC}, wait: 1s{token}}}
services:
  - name: web
    discovery: {{consul: {{service: web}}}}
  - name: canary
    discovery: {{consul: {{service: web, tag: canary}}}}
{listener}          - match: {{prefix: /canary}}
            to: {{service: canary}}
          - match: {{prefix: /}}
            to: {{service: web}}
"#
    )
}

fn start(consul: &FakeConsul, dir: &Path) -> Sluice {
    let path = dir.join("rules.yaml");
    let token = consul.token.clone();
    std::fs::write(&path, rules(&consul.url, free_port(), token.is_some())).expect("rules");
    let env: Vec<(&str, &str)> = token.iter().map(|t| (TOKEN_ENV, t.as_str())).collect();
    Sluice::start_with_env(&path, "127.0.0.1:0", &env)
}

async fn up(sluice: &Sluice) -> f64 {
    sluice.metric("sluice_source_up{source=\"consul\"}").await
}

/// Requests made while `during` runs, with its wall time.
async fn count<F: std::future::Future<Output = ()>>(consul: &FakeConsul, during: F) -> (u64, f64) {
    let (n0, t0) = (consul.requests(), Instant::now());
    during.await;
    (consul.requests() - n0, t0.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_changes_outage_and_recovery() {
    let consul = FakeConsul::start(Some("s3cr3t")).await;
    consul.register(mk_instance("a", 8081));
    let dir = tempfile::tempdir().expect("tempdir");
    let sluice = start(&consul, dir.path());
    let web = eds::subscribe(sluice.xds, "web");
    let canary = eds::subscribe(sluice.xds, "canary");
    // Sent with the ACL token from the environment: the fake refuses
    // queries without it, so EDS only fills if the token was sent.
    eds_is(&web, &["127.0.0.1:8081 HEALTHY"]).await;
    eds_is(&canary, &[]).await;

    // Register with a warning check, a tag; then critical; maintenance.
    let mut b = mk_instance("b", 8082);
    b.tags = vec!["canary".into()];
    b.checks.push(("service:b".into(), "warning".into()));
    consul.register(b);
    eds_is(&web, &["127.0.0.1:8081 HEALTHY", "127.0.0.1:8082 DEGRADED"]).await;
    eds_is(&canary, &["127.0.0.1:8082 DEGRADED"]).await;
    consul.set_check("web", "b", "service:b", "critical");
    eds_is(
        &web,
        &["127.0.0.1:8081 HEALTHY", "127.0.0.1:8082 UNHEALTHY"],
    )
    .await;
    consul.set_check("web", "b", "_service_maintenance:b", "critical");
    eds_is(&web, &["127.0.0.1:8081 HEALTHY", "127.0.0.1:8082 DRAINING"]).await;
    consul.deregister("web", "b");
    eds_is(&web, &["127.0.0.1:8081 HEALTHY"]).await;
    eds_is(&canary, &[]).await;

    // A bad instance (host name as address) is skipped and counted once.
    let mut bad = mk_instance("bad", 8089);
    bad.address = "web.local".into();
    consul.register(bad);
    consul.register(mk_instance("c", 8083));
    eds_is(&web, &["127.0.0.1:8081 HEALTHY", "127.0.0.1:8083 HEALTHY"]).await;
    eventually("bad entry counted", || async {
        sluice
            .metric("sluice_source_rejected_entries{source=\"consul\"}")
            .await
            >= 1.0
    })
    .await;
    assert_eq!(up(&sluice).await, 1.0);

    // Outage: 500s. Nothing removed, shown in metrics and status; the
    // retries back off (doubling from 100 ms), so they stay few.
    consul.faults.http_500.store(true, SeqCst);
    let (n, secs) = count(&consul, async {
        eventually("source_up drops to 0", || async {
            up(&sluice).await == 0.0
        })
        .await;
        eventually("last sync age grows", || async {
            sluice
                .metric("sluice_source_last_sync_age_seconds{source=\"consul\"}")
                .await
                > 2.0
        })
        .await;
    })
    .await;
    // Per feed, k retries take at least 0.1·(2^k − 1) s; two feeds; plus
    // the queries held when the 500s started.
    let bound = 2.0 * ((secs / 0.1 + 1.0).log2() + 1.0) + 2.0;
    assert!(
        (n as f64) <= bound,
        "{n} requests in {secs:.1}s of 500s (bound {bound:.1})"
    );
    let status = sluice.status().await;
    let src = &status["sources"][0];
    assert_eq!(src["source"], "consul");
    assert_eq!(src["up"], false);
    assert_eq!(src["feeds"][1]["state"], "failing", "{status}");
    let err = src["feeds"][1]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("HTTP 500"), "{status}");
    assert_eq!(
        last(&web),
        set(&["127.0.0.1:8081 HEALTHY", "127.0.0.1:8083 HEALTHY"]),
        "fail-static"
    );

    // Recovery converges on what changed meanwhile.
    consul.deregister("web", "a");
    consul.register(mk_instance("d", 8084));
    consul.faults.http_500.store(false, SeqCst);
    eds_is(&web, &["127.0.0.1:8083 HEALTHY", "127.0.0.1:8084 HEALTHY"]).await;
    eventually("source_up back to 1", || async { up(&sluice).await == 1.0 }).await;

    // Garbage answers fail the feed and keep the endpoints.
    consul.faults.garbage.store(true, SeqCst);
    consul.deregister("web", "c");
    eventually("garbage → source down", || async {
        up(&sluice).await == 0.0
    })
    .await;
    assert_eq!(
        last(&web),
        set(&["127.0.0.1:8083 HEALTHY", "127.0.0.1:8084 HEALTHY"])
    );
    consul.faults.garbage.store(false, SeqCst);
    eds_is(&web, &["127.0.0.1:8084 HEALTHY"]).await;
    eventually("source_up back to 1", || async { up(&sluice).await == 1.0 }).await;

    // Answers slower than the request timeout (wait + wait/16 + 5 s).
    consul.faults.slow_ms.store(8_000, SeqCst);
    eventually("slow → source down", || async {
        up(&sluice).await == 0.0
    })
    .await;
    assert_eq!(last(&web), set(&["127.0.0.1:8084 HEALTHY"]));
    consul.faults.slow_ms.store(0, SeqCst);
    consul.register(mk_instance("e", 8085));
    eds_is(&web, &["127.0.0.1:8084 HEALTHY", "127.0.0.1:8085 HEALTHY"]).await;
    eventually("source_up back to 1", || async { up(&sluice).await == 1.0 }).await;

    // Scale to zero: a healthy answer with no instances empties it.
    consul.deregister("web", "d");
    consul.deregister("web", "e");
    consul.deregister("web", "bad");
    eds_is(&web, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_index_going_back_and_request_rate() {
    let consul = FakeConsul::start(None).await;
    consul.register(mk_instance("a", 9001));
    consul.register(mk_instance("b", 9002));
    let dir = tempfile::tempdir().expect("tempdir");
    let sluice = start(&consul, dir.path());
    let web = eds::subscribe(sluice.xds, "web");
    eds_is(&web, &["127.0.0.1:9001 HEALTHY", "127.0.0.1:9002 HEALTHY"]).await;
    let snapshot = consul.catalog();

    // Idle: each of the two feeds holds one query per wait (+ jitter).
    let (n, secs) = count(&consul, tokio::time::sleep(Duration::from_secs(3))).await;
    let bound = 2.0 * (secs / WAIT.as_secs_f64() + 1.0);
    assert!(
        (n as f64) <= bound,
        "{n} requests in {secs:.1}s idle (bound {bound:.1})"
    );

    // Move the index well ahead, then restore the older snapshot: the
    // index goes backwards and held queries return.
    for _ in 0..20 {
        consul.bump_raft();
    }
    consul.register(mk_instance("c", 9003));
    eds_is(
        &web,
        &[
            "127.0.0.1:9001 HEALTHY",
            "127.0.0.1:9002 HEALTHY",
            "127.0.0.1:9003 HEALTHY",
        ],
    )
    .await;
    consul.restore(snapshot);
    eds_is(&web, &["127.0.0.1:9001 HEALTHY", "127.0.0.1:9002 HEALTHY"]).await;
    // A change at an index still below the one sluice saw before the
    // restore: only a client that reset its index sees it.
    consul.deregister("web", "b");
    eds_is(&web, &["127.0.0.1:9001 HEALTHY"]).await;
    let history = web.borrow().clone();
    assert!(
        history.iter().all(|s| s.contains("127.0.0.1:9001 HEALTHY")),
        "9001 was never removed: {history:?}"
    );

    // The "index 0" bug: answers come at once; sluice spaces its queries
    // (one a second per feed) instead of looping.
    consul.faults.zero_index.store(true, SeqCst);
    let (n, secs) = count(&consul, tokio::time::sleep(Duration::from_secs(3))).await;
    let bound = 2.0 * (secs + 2.0);
    assert!(
        (n as f64) <= bound,
        "{n} requests in {secs:.1}s of index 0 (bound {bound:.1})"
    );
    // …and still follows changes.
    consul.register(mk_instance("f", 9006));
    eds_is(&web, &["127.0.0.1:9001 HEALTHY", "127.0.0.1:9006 HEALTHY"]).await;
    consul.faults.zero_index.store(false, SeqCst);
    assert_eq!(up(&sluice).await, 1.0);
}

/// Opt-in: a real Consul agent at `SLUICE_TEST_CONSUL_ADDR` (e.g.
/// `http://127.0.0.1:8500`, started with `consul agent -dev`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_consul_when_configured() {
    let Ok(addr) = std::env::var("SLUICE_TEST_CONSUL_ADDR") else {
        println!("skipped: set SLUICE_TEST_CONSUL_ADDR=http://127.0.0.1:8500 to run against a real Consul");
        return;
    };
    let svc = format!("sluice-test-{}", std::process::id());
    let register = |id: &str, port: u16| {
        serde_json::json!({"ID": id, "Name": svc, "Address": "127.0.0.1", "Port": port,
                           "Meta": {"version": "v1"}})
    };
    let put = |path: String, body: Option<serde_json::Value>| {
        let req = http().put(format!("{addr}{path}"));
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        async move { assert!(req.send().await.expect("consul").status().is_success()) }
    };
    put(
        "/v1/agent/service/register".into(),
        Some(register("t1", 7001)),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rules.yaml");
    let text = rules(&addr, free_port(), false)
        .replace(&format!("datacenter: {DC}, "), "")
        .replace("service: web", &format!("service: {svc}"));
    std::fs::write(&path, text).expect("rules");
    let sluice = Sluice::start(&path, "127.0.0.1:0");
    let web = eds::subscribe(sluice.xds, "web");
    eds_is(&web, &["127.0.0.1:7001 HEALTHY"]).await;
    put(
        "/v1/agent/service/register".into(),
        Some(register("t2", 7002)),
    )
    .await;
    eds_is(&web, &["127.0.0.1:7001 HEALTHY", "127.0.0.1:7002 HEALTHY"]).await;
    put("/v1/agent/service/maintenance/t2?enable=true".into(), None).await;
    eds_is(&web, &["127.0.0.1:7001 HEALTHY", "127.0.0.1:7002 DRAINING"]).await;
    put("/v1/agent/service/deregister/t2".into(), None).await;
    put("/v1/agent/service/deregister/t1".into(), None).await;
    eds_is(&web, &[]).await;
}
