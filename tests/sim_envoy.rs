//! Differential fidelity: the same requests to real Envoy 1.40 and to the
//! simulator, both configured by the same sluice. Deterministic cases (path,
//! exact, regex, header, inverted header, query, virtual host, no route)
//! must give the same status and the same backend; a weighted split must
//! agree within statistical bounds (two-proportion z-test, |z| < 4, i.e. a
//! false alarm about once in 16,000 runs).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use sluice::sim::dataplane::{DataPlane, Decision};
use sluice::sim::route::Request;

fn rules(a: u16, b: u16, c: u16) -> String {
    let web = common::rules::web_v1_v2(b, c);
    format!(
        r#"services:
  - name: api
    endpoints:
      - {{address: 127.0.0.1, port: {a}}}
{web}listeners:
  - name: http
    address: 127.0.0.1
    port: 0
    virtual_hosts:
      - name: api
        domains: ["api.example.com", "*.api.test"]
        routes:
          - match: {{prefix: /v1}}
            to: {{service: api}}
      - name: web
        domains: ["*"]
        routes:
          - match: {{path: /exact}}
            to: {{service: api}}
          - match: {{regex: "/users/[0-9]+"}}
            to: {{service: web, subset: canary}}
          - match: {{prefix: /h, headers: [{{name: x-canary, exact: "1"}}]}}
            to: {{service: web, subset: canary}}
          - match: {{prefix: /h, headers: [{{name: x-debug, present: true, invert: true}}]}}
            to: {{service: web, subset: stable}}
          - match: {{prefix: /q, query: [{{name: mode, exact: debug}}]}}
            to: {{service: api}}
          - match: {{prefix: /split}}
            split:
              - {{service: web, subset: stable, weight: 70}}
              - {{service: web, subset: canary, weight: 30}}
          - match: {{prefix: /s/}}
            to: {{service: web, subset: stable}}
"#
    )
}

/// (host, path, headers) → the cases both must agree on.
fn cases() -> Vec<Request> {
    let r = |host: &str, path: &str| Request::get(host, path);
    vec![
        r("x", "/exact"),
        r("x", "/exact?x=1"),
        r("x", "/exact/more"),
        r("x", "/users/42"),
        r("x", "/users/42/x"),
        r("x", "/users/abc"),
        r("x", "/h").header("x-canary", "1"),
        r("x", "/h").header("x-canary", "2"),
        r("x", "/h").header("x-canary", "2").header("x-debug", "1"),
        r("x", "/hello"),
        r("x", "/q?mode=debug"),
        r("x", "/q?mode=other"),
        r("x", "/q?a=1&mode=debug"),
        r("x", "/s/1"),
        r("x", "/S/1"),
        r("x", "/nothing"),
        r("api.example.com", "/v1/x"),
        r("API.example.com", "/v1/x"),
        r("api.example.com", "/exact"),
        r("a.b.api.test", "/v1"),
        r(".api.test", "/exact"),
    ]
}

async fn envoy_answer(listen: u16, req: &Request) -> (u16, String) {
    let mut b = http()
        .get(format!("http://127.0.0.1:{listen}{}", req.path))
        .header("host", &req.authority);
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    match b.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let backend = r
                .headers()
                .get("x-backend")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            (status, backend)
        }
        Err(e) => panic!("request to envoy failed: {e}"),
    }
}

fn sim_answer(
    dp: &mut DataPlane,
    view: &sluice::sim::state::View,
    names: &HashMap<SocketAddr, String>,
    req: &Request,
) -> (u16, String) {
    match dp.decide(view, Some("http"), req, Duration::ZERO) {
        Decision::Upstream(u) => {
            // The request is over at once: nothing stays in flight.
            dp.finish(&view.clusters[&u.cluster], u.host, 200, Duration::ZERO);
            (
                200,
                names
                    .get(&u.host)
                    .cloned()
                    .unwrap_or_else(|| u.host.to_string()),
            )
        }
        Decision::Local { status, .. } => (status, "-".into()),
        Decision::Overflow { .. } => (503, "-".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_routes_like_envoy() {
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let names: HashMap<SocketAddr, String> = [(a.addr, "a"), (b.addr, "b"), (c.addr, "c")]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    // `_sluice` and `_rules` keep sluice and its rules file alive.
    let SideBySide {
        fleet,
        envoy,
        listen,
        sluice: _sluice,
        rules: _rules,
    } = side_by_side(
        &rules(a.addr.port(), b.addr.port(), c.addr.port()),
        "diff",
        ("/exact", 200),
    )
    .await;
    let view = fleet.reports()[0].view.clone();
    let mut dp = DataPlane::new(7);

    for req in cases() {
        let want = envoy_answer(listen, &req).await;
        let got = sim_answer(&mut dp, &view, &names, &req);
        assert_eq!(
            got,
            want,
            "{} {} {:?}: simulator vs envoy (log: {})",
            req.authority,
            req.path,
            req.headers,
            envoy.log()
        );
    }

    // Split: 2,000 requests to Envoy, 20,000 to the simulator.
    let req = Request::get("x", "/split");
    let (n1, n2) = (2000.0, 20000.0);
    let mut envoy_canary = 0.0;
    for _ in 0..n1 as usize {
        let (status, backend) = envoy_answer(listen, &req).await;
        assert_eq!(status, 200);
        envoy_canary += f64::from(u8::from(backend == "c"));
    }
    let mut sim_canary = 0.0;
    for _ in 0..n2 as usize {
        let (status, backend) = sim_answer(&mut dp, &view, &names, &req);
        assert_eq!(status, 200);
        sim_canary += f64::from(u8::from(backend == "c"));
    }
    let (p1, p2) = (envoy_canary / n1, sim_canary / n2);
    let z = two_proportion_z(envoy_canary, n1, sim_canary, n2);
    assert!(
        z.abs() < 4.0,
        "canary share: envoy {p1:.3}, simulator {p2:.3}, z = {z:.2}"
    );
    assert!(
        (0.27..=0.33).contains(&p2),
        "simulator canary share {p2:.3}, configured 0.30"
    );
    fleet.stop().await;
}
