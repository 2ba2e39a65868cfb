//! Differential fidelity of the native HTTP filters sluice compiles — local
//! rate limit, RBAC, CORS and fault injection — and of the Lua response
//! phase on local replies: the same requests to real Envoy 1.40 and to the
//! simulator, both configured over xDS by the same sluice.
//!
//! Deterministic cases must give the same status, the same local-reply
//! body and the same headers (`access-control-*`, `x-envoy-ratelimited`,
//! `content-type`, a header set by Lua's `envoy_on_response`); a burst of 8
//! requests on a bucket of 5 gives 5×200 then 3×429 on both; the filters'
//! counters (`sluice_rate_limit.http_local_rate_limit.*`,
//! `http.http.{rbac,cors,fault}.*`) move by the same amounts in Envoy and
//! in the engine. A 30 % abort fault is compared with a two-proportion
//! z-test: |z| < 4 (a false alarm about once in 16,000 runs).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use sluice::sim::backend::{BackendSpec, Backends};
use sluice::sim::chain::serve;
use sluice::sim::dataplane::DataPlane;
use sluice::sim::engine::{Engine, SimProxy};
use sluice::sim::http::Response;
use sluice::sim::route::Request;
use sluice::sim::state::View;

fn rules(api: u16) -> String {
    format!(
        r#"services:
  - name: api
    endpoints: [{{address: 127.0.0.1, port: {api}}}]
listeners:
  - name: http
    address: 127.0.0.1
    port: 0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{prefix: /limited}}
            to: {{service: api}}
            rate_limit: {{requests: 5, per: 1h}}
            lua:
              source: |
                function envoy_on_response(h)
                  h:headers():add("x-lua-status", h:headers():get(":status"))
                end
          - match: {{prefix: /denied}}
            to: {{service: api}}
            auth: {{ip: {{deny: [127.0.0.1]}}}}
          - match: {{prefix: /allowed}}
            to: {{service: api}}
            auth: {{ip: {{allow: [127.0.0.0/8], deny: [10.9.0.0/16]}}}}
          - match: {{prefix: /cors}}
            to: {{service: api}}
            cors:
              allow_origins: ["https://app.example.com"]
              allow_methods: [GET, POST]
              allow_headers: [x-token]
              expose_headers: [x-trace]
              max_age: 1h
              allow_credentials: true
            response_headers: {{set: {{x-served-by: sluice}}}}
          - match: {{prefix: /any-origin}}
            to: {{service: api}}
            cors: {{allow_origins: ["*"]}}
          - match: {{prefix: /abort}}
            to: {{service: api}}
            fault: {{abort: {{status: 503, percent: 100}}}}
          - match: {{prefix: /edited-abort}}
            to: {{service: api}}
            fault: {{abort: {{status: 503, percent: 100}}}}
            response_headers: {{set: {{x-served-by: sluice}}}}
          - match: {{prefix: /edited}}
            to: {{service: api}}
            request_headers: {{set: {{x-from: sluice}}, remove: [x-debug]}}
            response_headers: {{set: {{x-served-by: sluice}}, remove: [x-backend-secret]}}
          - match: {{prefix: /delay}}
            to: {{service: api}}
            fault: {{delay: {{duration: 100ms, percent: 100}}}}
          - match: {{prefix: /flaky}}
            to: {{service: api}}
            fault: {{abort: {{status: 503, percent: 30}}}}
          - to: {{service: api}}
"#
    )
}

fn cases() -> Vec<Request> {
    let get = |path: &str| Request::get("x", path);
    let options = |path: &str, origin: &str| {
        let mut r = get(path)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-token");
        r.method = "OPTIONS".into();
        r
    };
    let mut v: Vec<Request> = (0..8).map(|_| get("/limited")).collect();
    v.extend([
        get("/denied"),
        get("/denied").header("x-forwarded-for", "10.1.2.3"),
        get("/allowed"),
        get("/allowed").header("x-forwarded-for", "10.9.0.1"),
        options("/cors", "https://app.example.com"),
        options("/cors", "https://evil.example"),
        get("/cors").header("origin", "https://app.example.com"),
        get("/cors").header("origin", "https://evil.example"),
        get("/cors"),
        options("/any-origin", "https://anywhere.example"),
        get("/any-origin").header("origin", "https://anywhere.example"),
        get("/abort"),
        get("/abort").header("origin", "https://app.example.com"),
        get("/delay"),
        get("/edited")
            .header("x-debug", "1")
            .header("x-from", "client"),
        get("/edited-abort"),
        get("/other"),
    ]);
    v
}

/// The headers both must agree on.
const HEADERS: [&str; 11] = [
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "x-envoy-ratelimited",
    "content-type",
    "x-lua-status",
    "x-backend-secret",
    "x-served-by",
];

/// Status, the chosen backend (or a local reply's body) and the headers.
fn summary(status: u16, headers: &HashMap<String, String>, body: &str) -> Value {
    let doc: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let answered_by = if doc.is_null() {
        json!({"local": body})
    } else {
        let up = |h: &str| doc["headers"][h].clone();
        json!({"backend": doc["backend"], "method": doc["method"],
               "upstream": [up("x-from"), up("x-debug")]})
    };
    let h: serde_json::Map<String, Value> = HEADERS
        .iter()
        .map(|k| (k.to_string(), json!(headers.get(*k))))
        .collect();
    json!({"status": status, "answered_by": answered_by, "headers": h})
}

async fn envoy_answer(listen: u16, req: &Request) -> Value {
    let url = format!("http://127.0.0.1:{listen}{}", req.path);
    let method = reqwest::Method::from_bytes(req.method().as_bytes()).expect("method");
    let mut b = http().request(method, url).header("host", &req.authority);
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    let r = b.send().await.expect("request to envoy");
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    summary(status, &headers, &r.text().await.expect("body"))
}

fn echoed(r: &Request) -> serde_json::Map<String, Value> {
    r.headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect()
}

/// The simulator's answer; its upstream answers like `echo_backend`.
fn sim_answer(dp: &mut DataPlane, view: &View, req: &Request) -> Value {
    let served = serve(
        dp,
        view,
        Some("http"),
        req.clone(),
        Duration::ZERO,
        |_, r| Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-backend-secret".into(), "s".into()),
            ],
            body: json!({"backend": "api", "method": r.method(), "headers": echoed(r)}).to_string(),
        },
    );
    assert!(served.phase.errors.is_empty(), "{:?}", served.phase.errors);
    let headers = served.response.headers.iter().cloned().collect();
    summary(served.response.status, &headers, &served.response.body)
}

const STATS: [&str; 10] = [
    "sluice_rate_limit.http_local_rate_limit.enabled",
    "sluice_rate_limit.http_local_rate_limit.ok",
    "sluice_rate_limit.http_local_rate_limit.rate_limited",
    "sluice_rate_limit.http_local_rate_limit.enforced",
    "http.http.rbac.allowed",
    "http.http.rbac.denied",
    "http.http.cors.origin_valid",
    "http.http.cors.origin_invalid",
    "http.http.fault.aborts_injected",
    "http.http.fault.delays_injected",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_runs_rate_limit_rbac_cors_and_fault_like_envoy() {
    let api = echo_backend("api").await;
    // `_sluice` and `_rules` keep sluice and its rules file alive.
    let SideBySide {
        fleet,
        envoy,
        listen,
        sluice: _sluice,
        rules: _rules,
    } = side_by_side(&rules(api.addr.port()), "policy-diff", ("/other", 200)).await;
    let view = fleet.reports()[0].view.clone();

    let mut before = Vec::new();
    for s in STATS {
        before.push(envoy.stat(s).await);
    }
    let mut dp = DataPlane::new(7);
    let mut limited = (Vec::new(), Vec::new());
    for req in cases() {
        let want = envoy_answer(listen, &req).await;
        let got = sim_answer(&mut dp, &view, &req);
        if req.path == "/limited" {
            limited.0.push(want["status"].clone());
            limited.1.push(got["status"].clone());
        }
        assert_eq!(
            got,
            want,
            "{} {} {:?}: simulator vs envoy",
            req.method(),
            req.path,
            req.headers
        );
    }
    let burst = json!([200, 200, 200, 200, 200, 429, 429, 429]);
    assert_eq!((json!(limited.0), json!(limited.1)), (burst.clone(), burst));

    // The engine (what `sluice sim` runs) moves the filters' counters as
    // Envoy does.
    let mut engine = Engine::new(
        vec![SimProxy::new(view.clone(), 1)],
        Backends::new(BackendSpec::default()),
        1,
    );
    for (i, req) in cases().into_iter().enumerate() {
        engine.submit(0, req, Duration::from_millis(i as u64));
    }
    engine.run();
    for (i, s) in STATS.iter().enumerate() {
        let envoy_delta = envoy.stat(s).await - before[i];
        assert_eq!(engine.stats.named(s) as f64, envoy_delta, "{s}");
    }

    // `auth.ip` judges the connection's peer: a client cannot talk its way
    // past a deny (or, in the simulator, from outside into an allow) with a
    // forged x-forwarded-for. (The cases above compare both on it too.)
    let forged = Request::get("x", "/denied").header("x-forwarded-for", "10.1.2.3");
    assert_eq!(envoy_answer(listen, &forged).await["status"], 403);
    let mut from_outside = Request::get("x", "/allowed").header("x-forwarded-for", "127.0.0.9");
    from_outside.source = Some("192.0.2.1".parse().expect("ip"));
    assert_eq!(sim_answer(&mut dp, &view, &from_outside)["status"], 403);

    // A 30 % abort: Envoy's and the simulator's proportions agree.
    let n_envoy = 2_000u32;
    let mut envoy_aborts = 0u32;
    for _ in 0..n_envoy {
        let r = http()
            .get(format!("http://127.0.0.1:{listen}/flaky"))
            .send()
            .await
            .expect("request");
        envoy_aborts += u32::from(r.status() == 503);
    }
    let n_sim = 20_000u32;
    let mut sim_aborts = 0u32;
    for _ in 0..n_sim {
        let served = serve(
            &mut dp,
            &view,
            Some("http"),
            Request::get("x", "/flaky"),
            Duration::ZERO,
            |_, _| Response::new(200),
        );
        sim_aborts += u32::from(served.response.status == 503);
    }
    let z = two_proportion_z(
        f64::from(envoy_aborts),
        f64::from(n_envoy),
        f64::from(sim_aborts),
        f64::from(n_sim),
    );
    assert!(
        z.abs() < 4.0,
        "aborts: envoy {envoy_aborts}/{n_envoy}, sim {sim_aborts}/{n_sim}, z = {z:.2}"
    );
    fleet.stop().await;
}
