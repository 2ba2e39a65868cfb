//! The Lua filters in a real Envoy (1.40): API-key auth with consumer and
//! plan passed upstream, plan-based routing that cannot be spoofed, JSON
//! body and response header edits, and a key change that reaches Envoy
//! over RDS without a restart or a listener drain. Header templates still
//! work once the filter has read the body (Envoy invalidates a headers
//! object across the wait), and a key looked for in a body that is not a
//! JSON object is a 400. `validate` checks the type and size of bodies
//! sent without `content-length` (HTTP/1.1 chunked, HTTP/2), also past
//! Envoy's default buffer when the route's `max_body_bytes` allows it; a
//! request JSON edit's `max_bytes` past that buffer holds as written too.

mod common;

use common::*;
use serde_json::Value;

fn rules(free: u16, pro: u16, alice_key: &str) -> String {
    let pem: String = common::jwt::PUBLIC
        .lines()
        .map(|l| format!("                      {l}\n"))
        .collect();
    let head = common::rules::api_key_gateway(free, pro, alice_key);
    format!(
        r#"{head}          - match: {{prefix: /jwt}}
            to: {{service: free}}
            auth:
              jwt:
                issuer: https://issuer.example
                audiences: [api]
                plan_claim: plan
                keys:
                  - kid: k1
                    pem: |
{pem}          - match: {{prefix: /internal}}
            to: {{service: free}}
            auth: {{ip: {{allow: [10.0.0.0/8]}}}}
          - match: {{prefix: /local}}
            to: {{service: free}}
            auth: {{ip: {{allow: ["127.0.0.0/8", "::1"], deny: [192.0.2.1]}}}}
          - match: {{prefix: /own-lua}}
            to: {{service: free}}
            lua:
              source: |
                function envoy_on_request(h)
                  h:headers():add("x-own-lua", h:headers():get("x-sluice-consumer") or "none")
                end
          - match: {{prefix: /limited}}
            to: {{service: free}}
            rate_limit: {{key: plan, requests: 3, per: 1m, overrides: {{pro: 6}}}}
          - match: {{prefix: /, headers: [{{name: x-sluice-plan, exact: pro}}]}}
            to: {{service: pro}}
          - to: {{service: free}}
            transform:
              request:
                json: {{set: {{injected_by: sluice}}, remove: [secret]}}
"#
    )
}

/// Waits until Envoy answers `GET url` with `status` (401 where a key is
/// needed): the listener and its routes have arrived.
async fn serving(url: &str, status: u16) {
    eventually(&format!("envoy answers {url} with {status}"), || async {
        http()
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == status)
    })
    .await;
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn call(url: &str, key: Option<&str>, extra: &[(&str, &str)], body: Option<&str>) -> Reply {
    let client = http();
    let mut req = match body {
        Some(b) => client
            .post(url)
            .header("content-type", "application/json")
            .body(b.to_string()),
        None => client.get(url),
    };
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_auth_routing_and_transforms_in_real_envoy() {
    let free = echo_backend("free").await;
    let pro = echo_backend("pro").await;
    let rules_file = RulesFile::new(&rules(free.addr.port(), pro.addr.port(), "alice-key"));
    let (sluice, envoy, listen) = sluice_and_envoy(&rules_file.path, "envoy-lua", "http").await;
    let url = format!("http://127.0.0.1:{listen}/orders");

    serving(&url, 401).await;

    // No key → 401; wrong key → 403; both with a JSON error body.
    let r = call(&url, None, &[], None).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let r = call(&url, Some("wrong"), &[], None).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("forbidden"))
    );

    // bob (free): reaches `free`, which sees the identity headers and the
    // edited JSON body; the response header is rewritten on the way back.
    let r = call(
        &url,
        Some("bob-key"),
        &[],
        Some(r#"{"item":1,"secret":"x"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["backend"], "free");
    assert_eq!(r.body["headers"]["x-sluice-consumer"], "bob");
    assert_eq!(r.body["headers"]["x-sluice-plan"], "free");
    let sent: Value =
        serde_json::from_str(r.body["body"].as_str().unwrap_or("")).expect("json body");
    assert_eq!(
        sent,
        serde_json::json!({"item": 1, "injected_by": "sluice"})
    );
    assert_eq!(
        r.headers
            .get("x-served-for")
            .map(|v| v.to_str().unwrap_or("")),
        Some("bob")
    );
    assert!(
        r.headers.get("x-backend-secret").is_none(),
        "response header removed"
    );

    // alice (pro) is routed to `pro` by her plan.
    let r = call(&url, Some("alice-key"), &[], None).await;
    assert_eq!((r.status, r.body["backend"].as_str()), (200, Some("pro")));
    assert_eq!(r.body["headers"]["x-sluice-consumer"], "alice");

    // A free consumer claiming the pro plan still lands on `free`.
    let r = call(&url, Some("bob-key"), &[("x-sluice-plan", "pro")], None).await;
    assert_eq!((r.status, r.body["backend"].as_str()), (200, Some("free")));
    assert_eq!(r.body["headers"]["x-sluice-plan"], "free");

    // JWT (RS256, verified by Envoy's verifySignature in the Lua filter).
    let jwt_url = format!("http://127.0.0.1:{listen}/jwt");
    let claims = serde_json::json!({
        "iss": "https://issuer.example", "aud": "api", "sub": "carol", "plan": "pro",
        "exp": common::jwt::now() + 300
    });
    let header = serde_json::json!({"alg": "RS256", "kid": "k1"});
    let good = common::jwt::token(common::jwt::PRIVATE, &header, &claims);
    let r = call(
        &jwt_url,
        None,
        &[("authorization", &format!("Bearer {good}"))],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["headers"]["x-sluice-consumer"], "carol",
        "{}",
        r.body
    );
    let forged = common::jwt::token(common::jwt::OTHER_PRIVATE, &header, &claims);
    let r = call(
        &jwt_url,
        None,
        &[("authorization", &format!("Bearer {forged}"))],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (403, Some("invalid token signature"))
    );
    assert_eq!(call(&jwt_url, None, &[], None).await.status, 401);

    // Client address rules, enforced by native RBAC: loopback is not in
    // 10/8, and is in 127/8 (no key needed on those routes).
    assert_eq!(
        call(
            &format!("http://127.0.0.1:{listen}/internal"),
            None,
            &[],
            None
        )
        .await
        .status,
        403
    );
    assert_eq!(
        call(&format!("http://127.0.0.1:{listen}/local"), None, &[], None)
            .await
            .status,
        200
    );

    // A user's own snippet runs after sluice's filter (it sees the consumer).
    let r = call(
        &format!("http://127.0.0.1:{listen}/own-lua"),
        Some("bob-key"),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.body["headers"]["x-own-lua"].as_str()),
        (200, Some("bob"))
    );

    // Local rate limit per plan: free gets 3 per minute, pro 6.
    let limited = format!("http://127.0.0.1:{listen}/limited");
    for (key, budget) in [("bob-key", 3), ("alice-key", 6)] {
        for i in 0..budget {
            assert_eq!(
                call(&limited, Some(key), &[], None).await.status,
                200,
                "{key} #{i}"
            );
        }
        assert_eq!(
            call(&limited, Some(key), &[], None).await.status,
            429,
            "{key} over budget"
        );
    }
    assert!(
        envoy
            .stat("sluice_rate_limit.http_local_rate_limit.rate_limited")
            .await
            >= 2.0
    );

    // Rotate alice's key: RDS only — no restart, no listener change.
    let modified = envoy.stat("listener_manager.listener_modified").await;
    let lds_updates = envoy.stat("listener_manager.lds.update_success").await;
    rules_file.write(&rules(free.addr.port(), pro.addr.port(), "alice-key-2"));
    eventually("the new key works", || async {
        call(&url, Some("alice-key-2"), &[], None).await.status == 200
    })
    .await;
    assert_eq!(
        call(&url, Some("alice-key"), &[], None).await.status,
        403,
        "old key revoked"
    );
    assert_eq!(
        envoy.stat("listener_manager.listener_modified").await,
        modified
    );
    assert_eq!(
        envoy.stat("listener_manager.lds.update_success").await,
        lds_updates
    );
    assert_eq!(
        envoy
            .stat("listener_manager.total_listeners_draining")
            .await,
        0.0
    );
    drop(sluice);
}

/// Routes on the shared API-key gateway (both services on `port`) whose
/// key is looked for in the JSON body (`json_field`), so the filter waits
/// for the body before their templates are filled; `/strict` also takes
/// only JSON bodies of at most 100 bytes.
fn body_key_rules(port: u16) -> String {
    let head = common::rules::api_key_gateway(port, port, "alice-key");
    let auth =
        "{api_key: {header: x-api-key, json_field: apiKey, keys: [{key: k1, consumer: c1}]}}";
    format!(
        r#"{head}          - match: {{prefix: /copy}}
            to: {{service: free}}
            auth: {auth}
            transform: {{request: {{set_headers: {{x-copy: "${{header.x-src}}"}}}}}}
          - match: {{prefix: /resp}}
            to: {{service: free}}
            auth: {auth}
            transform: {{response: {{json: {{set: {{secret_seen: "${{header.x-backend-secret}}"}}}}}}}}
          - match: {{prefix: /strict}}
            to: {{service: free}}
            auth: {auth}
            validate: {{content_types: [application/json], max_body_bytes: 100}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_templates_after_a_body_read_in_real_envoy() {
    let echo = echo_backend("echo").await;
    let rules_file = RulesFile::new(&body_key_rules(echo.addr.port()));
    let (_sluice, envoy, listen) = sluice_and_envoy(&rules_file.path, "envoy-body", "http").await;
    let url = |path: &str| format!("http://127.0.0.1:{listen}{path}");
    serving(&url("/copy"), 401).await;
    let key_body = Some(r#"{"apiKey":"k1"}"#);

    // The issue's case: key in the body, then a request header template.
    let r = call(&url("/copy"), None, &[("x-src", "v")], key_body).await;
    assert_eq!(r.status, 200, "{:?}\n{}", r.body, envoy.log());
    assert_eq!(r.body["headers"]["x-copy"], "v");
    assert_eq!(r.body["headers"]["x-sluice-consumer"], "c1");

    // A response JSON edit filled from a response header, after the
    // response body was read.
    let r = call(&url("/resp"), None, &[], key_body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["secret_seen"], "s", "{}\n{}", r.body, envoy.log());

    // A body that is valid JSON but not an object: 400, not "missing key".
    for body in ["[1,2]", "null"] {
        let r = call(&url("/copy"), None, &[], Some(body)).await;
        assert_eq!(
            (r.status, r.body["message"].as_str()),
            (400, Some("request body is not a JSON object")),
            "{body}"
        );
    }
}

/// The `error` of a local answer's JSON body.
fn error_of(r: &hyper::Response<String>) -> String {
    let doc: Value = serde_json::from_str(r.body()).unwrap_or(Value::Null);
    doc["error"].as_str().unwrap_or_default().to_string()
}

/// A body without `content-length` — HTTP/1.1 chunked (Envoy keeps
/// `transfer-encoding` from the Lua) or HTTP/2 DATA frames — is checked for
/// type and size like one that declares its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_checks_bodies_without_content_length_in_real_envoy() {
    let echo = echo_backend("echo").await;
    let rules_file = RulesFile::new(&body_key_rules(echo.addr.port()));
    let (_sluice, envoy, listen) =
        sluice_and_envoy(&rules_file.path, "envoy-chunked", "http").await;
    let url = format!("http://127.0.0.1:{listen}/strict");
    serving(&url, 401).await;
    let padded = format!(r#"{{"apiKey":"k1","pad":"{}"}}"#, "x".repeat(200));

    for h2 in [false, true] {
        let proto = if h2 { "HTTP/2" } else { "HTTP/1.1 chunked" };
        let send = |ctype: &'static str, chunks: Vec<&[u8]>| {
            let chunks = chunks.into_iter().map(<[u8]>::to_vec).collect();
            async move {
                let headers = [("content-type", ctype)];
                send_streamed(listen, h2, "POST", "/strict", &headers, chunks).await
            }
        };
        // The issue's case: XML is refused before auth looks for the key.
        let r = send("text/xml", vec![b"<a/>"]).await;
        assert_eq!(
            (r.status().as_u16(), error_of(&r)),
            (415, "unsupported_media_type".into()),
            "{proto}: {}\n{}",
            r.body(),
            envoy.log()
        );
        // A body must say what it is.
        let r = send("", vec![br#"{"apiKey":"k1"}"#]).await;
        assert_eq!(r.status().as_u16(), 415, "{proto}: {}", r.body());
        // Over max_body_bytes (100), in two chunks.
        let (a, b) = padded.as_bytes().split_at(20);
        let r = send("application/json", vec![a, b]).await;
        assert_eq!(
            (r.status().as_u16(), error_of(&r)),
            (413, "payload_too_large".into()),
            "{proto}: {}",
            r.body()
        );
        // Within the limit, in two chunks: on to auth, and upstream whole.
        let r = send("application/json", vec![br#"{"apiKey":"#, br#""k1"}"#]).await;
        assert_eq!(r.status().as_u16(), 200, "{proto}: {}", r.body());
        let echoed: Value = serde_json::from_str(r.body()).expect("echo");
        assert_eq!(echoed["headers"]["x-sluice-consumer"], "c1", "{proto}");
        assert_eq!(echoed["body"], r#"{"apiKey":"k1"}"#, "{proto}");
    }

    // Far past Envoy's buffer limit (1 MiB by default): Envoy stops
    // buffering for the script and answers 413 itself.
    let chunk = vec![b'x'; 64 * 1024];
    let r = send_streamed(
        listen,
        false,
        "POST",
        "/strict",
        &[("content-type", "application/json")],
        vec![chunk; 32],
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), r.body().as_str()),
        (413, "Payload Too Large")
    );

    // A request without a body is not held to the body rules.
    let r = http()
        .get(&url)
        .header("content-type", "text/xml")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 401, "auth, not validate, answers");
}

/// Rules with service `echo` (on `port`) and a plain-HTTP listener whose
/// one route sends `prefix` to it, with `settings` (one line of route
/// fields, e.g. `validate: {...}`).
fn echo_route(port: u16, prefix: &str, settings: &str) -> String {
    let listener = common::rules::http_listener(0, "echo");
    format!(
        r#"services:
  - name: echo
    endpoints: [{{address: 127.0.0.1, port: {port}}}]
{listener}          - match: {{prefix: {prefix}}}
            to: {{service: echo}}
            {settings}
"#
    )
}

/// A `max_body_bytes` above Envoy's buffer limit (1 MiB by default) holds
/// as written for bodies without `content-length`: Envoy buffers up to the
/// route's limit for the script, so a body the user allowed reaches the
/// backend whole, and a longer one is refused with 413 without reaching it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_buffers_up_to_a_max_body_bytes_above_envoys_limit_in_real_envoy() {
    const MAX: usize = 2 << 20;
    let echo = echo_backend("echo").await;
    let route = format!("validate: {{max_body_bytes: {MAX}}}");
    let rules_file = RulesFile::new(&echo_route(echo.addr.port(), "/upload", &route));
    let (_sluice, envoy, listen) = sluice_and_envoy(&rules_file.path, "envoy-large", "http").await;
    serving(&format!("http://127.0.0.1:{listen}/upload"), 200).await;

    // `len` bytes in 64 KiB chunks, without content-length.
    let send = |h2: bool, len: usize| async move {
        let body = vec![b'x'; len];
        let chunks = body.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
        send_streamed(listen, h2, "POST", "/upload", &[], chunks).await
    };
    for h2 in [false, true] {
        let proto = if h2 { "HTTP/2" } else { "HTTP/1.1 chunked" };
        // Past Envoy's default buffer, up to the limit itself: upstream whole.
        for len in [3 << 19, MAX] {
            let r = send(h2, len).await;
            assert_eq!(
                r.status().as_u16(),
                200,
                "{proto}, {len} bytes: {}\n{}",
                r.body(),
                envoy.log()
            );
            let echoed: Value = serde_json::from_str(r.body()).expect("echo");
            let got = echoed["body"].as_str().map(str::len);
            assert_eq!(got, Some(len), "{proto}: the backend got the whole body");
        }
        // Past the limit: refused before the backend sees it.
        let before = echo.hits();
        for len in [MAX + 1, 3 << 20] {
            let r = send(h2, len).await;
            assert_eq!(
                r.status().as_u16(),
                413,
                "{proto}, {len} bytes: {}",
                r.body()
            );
        }
        assert_eq!(
            echo.hits(),
            before,
            "{proto}: nothing over the limit went upstream"
        );
    }
}

/// A request JSON edit whose `max_bytes` is above Envoy's buffer limit
/// (1 MiB by default) edits every body up to it, with `content-length` or
/// without: Envoy buffers up to the route's limit for the script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_edits_buffer_up_to_a_max_bytes_above_envoys_limit_in_real_envoy() {
    const MAX: usize = 2 << 20;
    let echo = echo_backend("echo").await;
    let route = format!(
        r#"transform: {{request: {{json: {{set: {{edited: "yes"}}, max_bytes: {MAX}}}}}}}"#
    );
    let rules_file = RulesFile::new(&echo_route(echo.addr.port(), "/edit", &route));
    let (_sluice, envoy, listen) = sluice_and_envoy(&rules_file.path, "envoy-edit", "http").await;
    let url = format!("http://127.0.0.1:{listen}/edit");
    serving(&url, 200).await;
    // A JSON object of `len` bytes.
    let object = |len: usize| format!(r#"{{"pad":"{}"}}"#, "x".repeat(len - 10));

    // 1.5 MiB, declared length: edited and sent on.
    let r = call(&url, None, &[], Some(&object(3 << 19))).await;
    assert_eq!(r.status, 200, "{:?}\n{}", r.headers, envoy.log());
    let edited: Value = serde_json::from_str(r.body["body"].as_str().unwrap_or_default())
        .expect("the backend got JSON");
    assert_eq!(edited["edited"], "yes");
    assert_eq!(edited["pad"].as_str().map(str::len), Some((3 << 19) - 10));

    // The same in chunks, over HTTP/1.1 and HTTP/2.
    for h2 in [false, true] {
        let body = object(3 << 19).into_bytes();
        let chunks = body.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
        let headers = [("content-type", "application/json")];
        let r = send_streamed(listen, h2, "POST", "/edit", &headers, chunks).await;
        assert_eq!(r.status().as_u16(), 200, "h2 {h2}: {}", r.body());
        let echoed: Value = serde_json::from_str(r.body()).expect("echo");
        let edited: Value =
            serde_json::from_str(echoed["body"].as_str().unwrap_or_default()).expect("JSON");
        assert_eq!(edited["edited"], "yes", "h2 {h2}");
    }

    // Past max_bytes: 413, the backend never sees it.
    let before = echo.hits();
    let r = call(&url, None, &[], Some(&object(MAX + 1))).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    assert_eq!(echo.hits(), before);
}
