//! Differential fidelity of the Lua filters: the same requests to real Envoy
//! 1.40 and to the simulator, both configured over xDS by the same sluice.
//! API-key auth (no, wrong, good key; a key in a JSON body, and a body that
//! is not an object), plan-based routing (and a spoofed plan header),
//! validation (405, 400; 415 and 413 for chunked bodies, which carry no
//! `content-length` and whose `transfer-encoding` Envoy keeps from the Lua),
//! request header templates (also after the body was read), a response
//! header edit and user snippets (one keeps a headers object across
//! `body()`, which Envoy invalidates when it waits for a body) must give
//! the same status, the same backend, the same headers upstream and
//! downstream, and the same error body; and Envoy's
//! `http.<listener>.downstream_rq_<N>xx` counters must move as the
//! simulator counts.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
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

fn rules(free: u16, pro: u16) -> String {
    let head = common::rules::api_key_gateway(free, pro, "alice-key");
    format!(
        r#"{head}          - match: {{prefix: /orders}}
            to: {{service: free}}
            validate: {{methods: [GET, POST], required_headers: [x-tag]}}
            transform: {{request: {{set_headers: {{x-tag-copy: "t-${{header.x-tag}}"}}}}}}
          - match: {{prefix: /strict}}
            to: {{service: free}}
            validate: {{content_types: [application/json], max_body_bytes: 100}}
          - match: {{prefix: /body-key}}
            to: {{service: free}}
            auth: {{api_key: {{json_field: apiKey, keys: [{{key: k1, consumer: c1}}]}}}}
            transform: {{request: {{set_headers: {{x-tag-copy: "b-${{header.x-tag}}"}}}}}}
          - match: {{prefix: /scope}}
            to: {{service: free}}
            lua:
              source: |
                function envoy_on_request(h)
                  local early = h:headers()
                  local te = early:get("transfer-encoding") or "nil"
                  local body = h:body()
                  h:headers():add("x-te", te)
                  h:headers():add("x-body-len", body and tostring(body:length()) or "nil")
                  local live = pcall(function() return early:get("x-tag") end)
                  h:headers():add("x-early-live", tostring(live))
                end
          - match: {{prefix: /own-lua}}
            to: {{service: free}}
            lua:
              source: |
                function envoy_on_request(h)
                  h:headers():add("x-own-lua", h:headers():get("x-sluice-consumer") or "none")
                end
                function envoy_on_response(h)
                  h:headers():add("x-own-lua-status", h:headers():get(":status"))
                end
          - match: {{prefix: /, headers: [{{name: x-sluice-plan, exact: pro}}]}}
            to: {{service: pro}}
          - to: {{service: free}}
"#
    )
}

fn cases() -> Vec<Request> {
    let get = |path: &str| Request::get("x", path);
    // As an HTTP/1.1 client sends a body it does not know the length of.
    let chunked = |path: &str, ctype: &str, body: &str| {
        get(path)
            .header("x-api-key", "bob-key")
            .header("content-type", ctype)
            .header("transfer-encoding", "chunked")
            .with_body("POST", body)
    };
    let padded = format!(r#"{{"pad":"{}"}}"#, "x".repeat(200));
    vec![
        chunked("/strict", "text/xml", "<a/>"),
        chunked("/strict", "application/json", &padded),
        chunked("/strict", "application/json", r#"{"n":1}"#),
        chunked("/scope", "application/json", r#"{"n":1}"#),
        get("/a"),
        get("/a").header("x-api-key", "wrong"),
        get("/a").header("x-api-key", "bob-key"),
        get("/a").header("x-api-key", "alice-key"),
        get("/a")
            .header("x-api-key", "bob-key")
            .header("x-sluice-plan", "pro"),
        get("/a")
            .header("x-api-key", "alice-key")
            .with_body("POST", r#"{"n":1}"#),
        get("/orders").with_body("DELETE", ""),
        get("/orders").header("x-api-key", "bob-key"),
        get("/orders")
            .header("x-api-key", "bob-key")
            .header("x-tag", "7"),
        get("/own-lua").header("x-api-key", "bob-key"),
        get("/own-lua"),
        get("/body-key")
            .header("x-tag", "7")
            .with_body("POST", r#"{"apiKey":"k1"}"#),
        get("/body-key").with_body("POST", "[1]"),
        get("/scope").header("x-api-key", "bob-key"),
        get("/scope")
            .header("x-api-key", "bob-key")
            .with_body("POST", r#"{"n":1}"#),
        get("/scope")
            .header("x-api-key", "bob-key")
            .with_body("POST", ""),
    ]
}

/// What both must agree on: status, backend, identity and template headers
/// seen upstream, edited response headers, the error of a local answer.
fn summary(status: u16, headers: &HashMap<String, String>, body: &str) -> Value {
    let doc: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let up = |h: &str| doc["headers"][h].clone();
    let down = |h: &str| headers.get(h).cloned();
    json!({
        "status": status,
        "backend": doc["backend"],
        "error": doc["error"],
        "upstream": [up("x-sluice-consumer"), up("x-sluice-plan"), up("x-tag-copy"), up("x-own-lua"),
                     up("x-body-len"), up("x-early-live"), up("x-te")],
        "downstream": [down("x-served-for"), down("x-backend-secret"), down("allow"),
                       down("www-authenticate"), down("x-own-lua-status")],
    })
}

/// `req` with a `content-type` for its body when it names none.
fn typed(req: &Request) -> Request {
    let mut req = req.clone();
    if req.body.is_some() && req.header_value("content-type").is_none() {
        req = req.header("content-type", "application/json");
    }
    req
}

async fn envoy_answer(listen: u16, req: &Request) -> Value {
    let req = &typed(req);
    if req.header_value("transfer-encoding").is_some() {
        return envoy_answer_chunked(listen, req).await;
    }
    let url = format!("http://127.0.0.1:{listen}{}", req.path);
    let method = reqwest::Method::from_bytes(req.method().as_bytes()).expect("method");
    let mut b = http().request(method, url).header("host", &req.authority);
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    if let Some(body) = &req.body {
        b = b.body(body.clone());
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

/// Envoy's answer to `req` sent with chunked transfer encoding (the body
/// in two chunks), as hyper frames it: no `content-length`.
async fn envoy_answer_chunked(listen: u16, req: &Request) -> Value {
    let mut headers = vec![("host", req.authority.as_str())];
    headers.extend(
        req.headers
            .iter()
            .filter(|(k, _)| k != "transfer-encoding")
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let body = req.body.as_deref().unwrap_or_default().as_bytes();
    let (a, b) = body.split_at(body.len() / 2);
    let r = send_streamed(
        listen,
        false,
        req.method(),
        &req.path,
        &headers,
        vec![a.to_vec(), b.to_vec()],
    )
    .await;
    let down = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    summary(r.status().as_u16(), &down, r.body())
}

/// The simulator's answer; its upstream echoes like `echo_backend`.
fn sim_answer(
    dp: &mut DataPlane,
    view: &View,
    names: &HashMap<SocketAddr, String>,
    req: &Request,
) -> Value {
    let req = typed(req);
    let served = serve(dp, view, Some("http"), req, Duration::ZERO, |u, r| {
        let echoed: serde_json::Map<String, Value> = r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-backend-secret".into(), "s".into()),
            ],
            body: json!({"backend": names.get(&u.host), "headers": echoed}).to_string(),
        }
    });
    assert!(served.phase.errors.is_empty(), "{:?}", served.phase.errors);
    let headers = served.response.headers.iter().cloned().collect();
    summary(served.response.status, &headers, &served.response.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_runs_the_lua_filters_like_envoy() {
    let (free, pro) = (echo_backend("free").await, echo_backend("pro").await);
    let names: HashMap<SocketAddr, String> = [(free.addr, "free"), (pro.addr, "pro")]
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
        &rules(free.addr.port(), pro.addr.port()),
        "lua-diff",
        ("/a", 401),
    )
    .await;
    let view = fleet.reports()[0].view.clone();
    let mut dp = DataPlane::new(7);

    let stat = |class: u16| format!("http.http.downstream_rq_{class}xx");
    let mut before = Vec::new();
    for class in 2..=4 {
        before.push(envoy.stat(&stat(class)).await);
    }
    for req in cases() {
        let want = envoy_answer(listen, &req).await;
        let got = sim_answer(&mut dp, &view, &names, &req);
        assert_eq!(
            got,
            want,
            "{} {} {:?}: simulator vs envoy",
            req.method(),
            req.path,
            req.headers
        );
    }

    // The engine (what `sluice sim` runs) counts the same answers the way
    // Envoy's connection manager does.
    let mut engine = Engine::new(
        vec![SimProxy::new(view, 1)],
        Backends::new(BackendSpec::default()),
        1,
    );
    for req in cases() {
        engine.submit(0, req, Duration::ZERO);
    }
    engine.run();
    for (i, class) in (2..=4).enumerate() {
        let envoy_delta = envoy.stat(&stat(class)).await - before[i];
        assert_eq!(
            engine
                .stats
                .http_counter("http", &format!("downstream_rq_{class}xx")) as f64,
            envoy_delta,
            "{}",
            stat(class)
        );
    }
    fleet.stop().await;
}
