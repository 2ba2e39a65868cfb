//! Traffic policy end to end with a real Envoy: one sluice, one Envoy, one
//! rules file with a route per behaviour, checked one after another —
//! active health checks take a failing backend out and back, priority
//! failover moves to the second tier and back, a circuit breaker answers 503
//! at once when its limit is hit, a cookie hash keeps a client on one
//! backend, mirroring copies every request to a shadow without changing
//! answers, and fault injection aborts its configured share of requests.

mod common;

use std::collections::BTreeMap;

use common::*;

const HC: &str = "    health_check: {type: http, path: /healthz, interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1}";

fn ep(b: &Backend) -> String {
    format!("{{address: 127.0.0.1, port: {}}}", b.addr.port())
}

struct Backends {
    hc_a: Backend,
    hc_b: Backend,
    tier0: Backend,
    tier1: Backend,
    slow: Backend,
    sticky: Vec<Backend>,
    plain: Backend,
    shadow: Backend,
}

fn rules(b: &Backends) -> String {
    let sticky: Vec<String> = b
        .sticky
        .iter()
        .map(|s| format!("      - {}", ep(s)))
        .collect();
    let listener = common::rules::http_listener(0, "all");
    format!(
        r#"services:
  - name: hc
    panic_threshold: 0
{HC}
    endpoints: [{hc_a}, {hc_b}]
  - name: tiers
    panic_threshold: 0
{HC}
    endpoints:
      - {{address: 127.0.0.1, port: {t0}, priority: 0}}
      - {{address: 127.0.0.1, port: {t1}, priority: 1}}
  - name: slow
    circuit_breakers: {{max_connections: 1, max_pending_requests: 1, max_requests: 1}}
    endpoints: [{slow}]
  - name: sticky
    lb_policy: ring_hash
    endpoints:
{sticky}
  - name: plain
    endpoints: [{plain}]
  - name: shadow
    endpoints: [{shadow}]
{listener}          - {{match: {{prefix: /hc}}, to: {{service: hc}}}}
          - {{match: {{prefix: /tiers}}, to: {{service: tiers}}}}
          - {{match: {{prefix: /slow}}, to: {{service: slow}}}}
          - match: {{prefix: /sticky}}
            to: {{service: sticky}}
            hash: [{{cookie: {{name: sluice-sticky, ttl: 1h}}}}]
          - match: {{prefix: /mirror}}
            to: {{service: plain}}
            mirror: {{service: shadow}}
          - match: {{prefix: /fault}}
            to: {{service: plain}}
            fault: {{abort: {{status: 503, percent: 30}}}}
"#,
        hc_a = ep(&b.hc_a),
        hc_b = ep(&b.hc_b),
        t0 = b.tier0.addr.port(),
        t1 = b.tier1.addr.port(),
        slow = ep(&b.slow),
        sticky = sticky.join("\n"),
        plain = ep(&b.plain),
        shadow = ep(&b.shadow),
    )
}

/// Answers of `n` GETs to `url`, by backend name (`error` for non-200).
async fn answers(url: &str, n: usize) -> BTreeMap<String, usize> {
    distribution(url, n).await
}

fn only(counts: &BTreeMap<String, usize>, name: &str) -> bool {
    counts.len() == 1 && counts.contains_key(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_policy_on_real_envoy() {
    let b = Backends {
        hc_a: backend("hc-a").await,
        hc_b: backend("hc-b").await,
        tier0: backend("tier0").await,
        tier1: backend("tier1").await,
        slow: backend("slow").await,
        sticky: vec![
            backend("sticky-0").await,
            backend("sticky-1").await,
            backend("sticky-2").await,
        ],
        plain: backend("plain").await,
        shadow: backend("shadow").await,
    };
    let rules = RulesFile::new(&rules(&b));
    let (_sluice, envoy, listen) = sluice_and_envoy(&rules.path, "envoy-policy", "http").await;
    let url = |path: &str| format!("http://127.0.0.1:{listen}{path}");
    let client = http();

    // Active health checks: both backends serve; a failing check takes
    // hc-b out, a passing one brings it back.
    eventually("both hc backends serve", || async {
        answers(&url("/hc"), 20).await.len() == 2
    })
    .await;
    b.hc_b.set_health(503);
    eventually("hc-b out after failing its check", || async {
        only(&answers(&url("/hc"), 20).await, "hc-a")
    })
    .await;
    b.hc_b.set_health(200);
    eventually("hc-b back after passing its check", || async {
        answers(&url("/hc"), 20).await.contains_key("hc-b")
    })
    .await;

    // Priority failover: tier 1 only while tier 0 is down.
    eventually("tier 0 serves everything", || async {
        only(&answers(&url("/tiers"), 10).await, "tier0")
    })
    .await;
    b.tier0.set_health(503);
    eventually("failover to tier 1", || async {
        only(&answers(&url("/tiers"), 10).await, "tier1")
    })
    .await;
    b.tier0.set_health(200);
    eventually("back to tier 0", || async {
        only(&answers(&url("/tiers"), 10).await, "tier0")
    })
    .await;

    // Circuit breaker (one connection, one pending request): with one
    // request in flight (held 3s by the backend) and one queued, the next
    // is refused by Envoy itself.
    // The queued request waits out the held one's 3s: a client timeout of
    // WAIT, not http()'s 5s, so a loaded machine cannot make it fail.
    let patient = reqwest::Client::builder()
        .timeout(WAIT)
        .no_proxy()
        .build()
        .expect("client");
    let send = |delay: &'static str| {
        let (client, u) = (patient.clone(), url("/slow"));
        tokio::spawn(async move { client.get(u).header("x-delay-ms", delay).send().await })
    };
    let held = send("3000");
    let slow_hits = &b.slow;
    eventually("slow request in flight", || async { slow_hits.hits() == 1 }).await;
    let queued = send("0");
    let envoy_ref = &envoy;
    eventually("second request queued", || async {
        envoy_ref
            .stat("cluster.slow.upstream_rq_pending_active")
            .await
            == 1.0
    })
    .await;
    let refused = client.get(url("/slow")).send().await.expect("answer");
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("x-envoy-overloaded")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..]),
        "refused by the circuit breaker, not the backend"
    );
    assert_eq!(
        envoy
            .stat("cluster.slow.upstream_rq_pending_overflow")
            .await,
        1.0
    );
    for r in [held, queued] {
        let r = r.await.expect("join").expect("answer");
        assert_eq!(r.status(), 200, "requests within the limits complete");
    }
    assert_eq!(b.slow.hits(), 2, "the refused request never reached it");

    // Cookie hash: Envoy sets the cookie, and a client sending it back
    // always reaches the same backend.
    let first = client.get(url("/sticky")).send().await.expect("answer");
    let cookie = first
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("envoy sets the hash cookie")
        .to_owned();
    assert!(cookie.starts_with("sluice-sticky="), "{cookie}");
    let mut seen = BTreeMap::new();
    for _ in 0..30 {
        let r = client
            .get(url("/sticky"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("answer");
        *seen.entry(r.text().await.expect("body")).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 1, "one backend for one cookie: {seen:?}");

    // Mirroring: the shadow sees every request, its 500s change nothing.
    b.shadow.set_status(500);
    let counts = answers(&url("/mirror"), 50).await;
    assert_eq!(counts.get("plain"), Some(&50), "{counts:?}");
    let shadow = &b.shadow;
    eventually("shadow got all 50 copies", || async { shadow.hits() == 50 }).await;

    // Fault injection: 30% aborts. Over n = 400 requests the count is
    // Binomial(400, 0.3): mean 120, sd 9.2; accept mean ± 5 sd (74..=166),
    // a false failure about once in 3.5 million runs.
    let counts = answers(&url("/fault"), 400).await;
    let aborted = counts.get("error").copied().unwrap_or(0);
    assert!((74..=166).contains(&aborted), "aborted {aborted} of 400");
    assert_eq!(counts.get("plain").copied().unwrap_or(0) + aborted, 400);

    drop(envoy);
}
