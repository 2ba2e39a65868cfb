//! The shipped Lua filters, run in LuaJIT (mlua) behind the Envoy-like
//! handle: every module and error path, with the filter context in the
//! shape sluice compiles from the rules.

mod common;

use proptest::prelude::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sluice::lua::bundle;
use sluice::lua::runner::{FilterVm, Message, Outcome};

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn vm() -> FilterVm {
    FilterVm::new().expect("bundle loads")
}

fn req(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Message {
    let mut h = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "example.com".to_string()),
    ];
    h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Message {
        headers: h,
        body: body.map(str::to_string),
    }
}

fn ctx(cfg: Value) -> Value {
    json!({ "sluice": cfg })
}

fn status(out: &Outcome) -> u16 {
    out.response.as_ref().map(|r| r.status()).unwrap_or(0)
}

fn error_body(out: &Outcome) -> Value {
    let r = out.response.as_ref().expect("local response");
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_str(&r.body).expect("JSON error body")
}

fn api_key_auth() -> Value {
    json!({ "auth": {
        "api_key": {
            "header": "x-api-key",
            "query": "api_key",
            "keys": {
                sha("alice-key"): { "consumer": "alice", "plan": "pro" },
                sha("bob-key"): { "consumer": "bob", "plan": "free" }
            }
        }
    }})
}

#[test]
fn no_filter_context_means_untouched() {
    let r = req("GET", "/x", &[("x-a", "1")], None);
    let out = vm()
        .on_request(&r, &json!({}), "10.0.0.1:1234")
        .expect("run");
    assert_eq!(out.response, None);
    assert_eq!(out.headers, r.headers);
}

#[test]
fn api_key_missing_wrong_and_good() {
    let vm = vm();
    let c = ctx(api_key_auth());
    let out = vm
        .on_request(&req("GET", "/", &[], None), &c, "1.2.3.4:5")
        .expect("run");
    assert_eq!(status(&out), 401);
    assert_eq!(error_body(&out)["error"], "unauthorized");

    let out = vm.on_request(
        &req("GET", "/", &[("x-api-key", "nope")], None),
        &c,
        "1.2.3.4:5",
    );
    let out = out.expect("run");
    assert_eq!(status(&out), 403);
    assert_eq!(error_body(&out)["message"], "invalid API key");

    // Good key; a client-sent identity header is replaced, not trusted.
    let r = req(
        "GET",
        "/",
        &[("x-api-key", "alice-key"), ("x-sluice-plan", "enterprise")],
        None,
    );
    let out = vm.on_request(&r, &c, "1.2.3.4:5").expect("run");
    assert_eq!(out.response, None, "{:?}", out.error);
    assert_eq!(out.header("x-sluice-consumer"), Some("alice"));
    assert_eq!(out.header("x-sluice-plan"), Some("pro"));
    assert_eq!(
        out.headers
            .iter()
            .filter(|(k, _)| k == "x-sluice-plan")
            .count(),
        1
    );
    assert_eq!(out.metadata["sluice"]["consumer"], "alice");
    assert_eq!(out.metadata["sluice"]["plan"], "pro");

    // From the query string too.
    let out = vm.on_request(&req("GET", "/?api_key=bob-key", &[], None), &c, "1.2.3.4:5");
    assert_eq!(out.expect("run").header("x-sluice-consumer"), Some("bob"));
}

#[test]
fn api_key_in_a_json_body_field() {
    let c = ctx(json!({ "auth": { "api_key": {
        "json_field": "token",
        "keys": { sha("k1"): { "consumer": "c1", "plan": "p1" } }
    }}}));
    let vm = vm();
    let good = req(
        "POST",
        "/",
        &[("content-type", "application/json")],
        Some(r#"{"token":"k1"}"#),
    );
    let out = vm.on_request(&good, &c, "1.2.3.4:5").expect("run");
    assert_eq!(out.header("x-sluice-consumer"), Some("c1"));
    let bad = req("POST", "/", &[], Some("{not json"));
    assert_eq!(
        status(&vm.on_request(&bad, &c, "1.2.3.4:5").expect("run")),
        400
    );
    let none = req("POST", "/", &[], Some(r#"{"other":1}"#));
    assert_eq!(
        status(&vm.on_request(&none, &c, "1.2.3.4:5").expect("run")),
        401
    );
    // Valid JSON that is not an object is malformed, not a missing key.
    for body in ["[1,2]", "[]", "null", r#""k1""#, "7"] {
        let out = vm
            .on_request(&req("POST", "/", &[], Some(body)), &c, "1.2.3.4:5")
            .expect("run");
        assert_eq!(status(&out), 400, "{body}");
        assert_eq!(
            error_body(&out)["message"],
            "request body is not a JSON object",
            "{body}"
        );
    }
}

#[test]
fn basic_auth() {
    use base64_encode as b64;
    let c = ctx(json!({ "auth": { "basic": { "realm": "api", "users": {
        "alice": { "password_sha256": sha("s3cret"), "consumer": "alice", "plan": "pro" }
    }}}}));
    let vm = vm();
    let out = vm
        .on_request(&req("GET", "/", &[], None), &c, "1.2.3.4:5")
        .expect("run");
    assert_eq!(status(&out), 401);
    let r = out.response.as_ref().expect("resp");
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"api\""));

    let auth = format!("Basic {}", b64("alice:s3cret"));
    let out = vm.on_request(
        &req("GET", "/", &[("authorization", &auth)], None),
        &c,
        "1.2.3.4:5",
    );
    assert_eq!(out.expect("run").header("x-sluice-consumer"), Some("alice"));

    let wrong = format!("Basic {}", b64("alice:nope"));
    let out = vm.on_request(
        &req("GET", "/", &[("authorization", &wrong)], None),
        &c,
        "1.2.3.4:5",
    );
    assert_eq!(status(&out.expect("run")), 403);

    for malformed in ["Basic !!!!", "Basic YWxpY2U=", "Bearer abc"] {
        let out = vm.on_request(
            &req("GET", "/", &[("authorization", malformed)], None),
            &c,
            "1.2.3.4:5",
        );
        assert_eq!(status(&out.expect("run")), 400, "{malformed}");
    }
}

#[test]
fn validation_errors() {
    let c = ctx(json!({ "validate": {
        "methods": ["GET", "POST"],
        "required_headers": ["x-request-id"],
        "required_query": ["page"],
        "content_types": ["application/json"],
        "max_body_bytes": 10
    }}));
    let vm = vm();
    let ok_headers: &[(&str, &str)] = &[("x-request-id", "1")];
    let out = vm
        .on_request(
            &req("DELETE", "/?page=1", ok_headers, None),
            &c,
            "1.2.3.4:5",
        )
        .expect("run");
    assert_eq!(status(&out), 405);
    assert_eq!(
        out.response.as_ref().and_then(|r| r.header("allow")),
        Some("GET, POST")
    );

    let out = vm
        .on_request(&req("GET", "/?page=1", &[], None), &c, "1.2.3.4:5")
        .expect("run");
    assert_eq!(status(&out), 400);
    assert!(error_body(&out)["message"]
        .as_str()
        .unwrap_or("")
        .contains("x-request-id"));

    let out = vm
        .on_request(&req("GET", "/", ok_headers, None), &c, "1.2.3.4:5")
        .expect("run");
    assert_eq!(status(&out), 400);

    let big = req(
        "POST",
        "/?page=1",
        &[
            ("x-request-id", "1"),
            ("content-length", "11"),
            ("content-type", "application/json"),
        ],
        Some("12345678901"),
    );
    assert_eq!(
        status(&vm.on_request(&big, &c, "1.2.3.4:5").expect("run")),
        413
    );

    let xml = req(
        "POST",
        "/?page=1",
        &[
            ("x-request-id", "1"),
            ("content-length", "2"),
            ("content-type", "text/xml"),
        ],
        Some("<a"),
    );
    assert_eq!(
        status(&vm.on_request(&xml, &c, "1.2.3.4:5").expect("run")),
        415
    );

    let good = req(
        "POST",
        "/?page=1",
        &[
            ("x-request-id", "1"),
            ("content-length", "2"),
            ("content-type", "application/json; charset=utf-8"),
        ],
        Some("{}"),
    );
    assert_eq!(
        vm.on_request(&good, &c, "1.2.3.4:5").expect("run").response,
        None
    );
}

#[test]
fn request_transform_headers_path_query_and_json() {
    let c = ctx(json!({ "transform_request": {
        "remove": ["x-debug"],
        "rename": [["x-old", "x-new"]],
        "set": [["x-route", "${method} ${path}"], ["x-user", "${header.x-user-id}"]],
        "add": [["x-tag", "a"]],
        "query_to_header": [["page", "x-page"]],
        "rewrite_path": "/v2${path}",
        "json": { "set": [["meta.source", "sluice"]], "remove": ["password"], "rename": [["name", "full_name"]], "max_bytes": 1000 }
    }}));
    let body = r#"{"name":"Ann","password":"x","meta":{"a":1}}"#;
    let r = req(
        "POST",
        "/users?page=3",
        &[
            ("x-debug", "1"),
            ("x-old", "o"),
            ("x-user-id", "42"),
            ("content-length", "44"),
        ],
        Some(body),
    );
    let out = vm().on_request(&r, &c, "1.2.3.4:5").expect("run");
    assert_eq!(out.error, None);
    assert_eq!(out.header("x-debug"), None);
    assert_eq!(out.header("x-old"), None);
    assert_eq!(out.header("x-new"), Some("o"));
    assert_eq!(out.header("x-route"), Some("POST /users"));
    assert_eq!(out.header("x-user"), Some("42"));
    assert_eq!(out.header("x-tag"), Some("a"));
    assert_eq!(out.header("x-page"), Some("3"));
    assert_eq!(out.header(":path"), Some("/v2/users?page=3"));
    let new_body = out.body.clone().expect("body");
    let doc: Value = serde_json::from_str(&new_body).expect("json");
    assert_eq!(
        doc,
        json!({"full_name": "Ann", "meta": {"a": 1, "source": "sluice"}})
    );
    assert_eq!(
        out.header("content-length"),
        Some(new_body.len().to_string().as_str())
    );

    // Too large, or not JSON: rejected rather than forwarded half-edited.
    let huge = format!(r#"{{"x":"{}"}}"#, "a".repeat(2000));
    let out = vm()
        .on_request(&req("POST", "/", &[], Some(&huge)), &c, "1.2.3.4:5")
        .expect("run");
    assert_eq!(status(&out), 413);
    for not_object in ["[1,2]", "null"] {
        let out = vm()
            .on_request(&req("POST", "/", &[], Some(not_object)), &c, "1.2.3.4:5")
            .expect("run");
        assert_eq!(status(&out), 400, "{not_object}");
    }
}

#[test]
fn response_transform_uses_request_identity() {
    let c = ctx(json!({ "transform_response": {
        "remove": ["server"],
        "set": [["x-served-for", "${consumer}/${plan} ${path}"]],
        "json": { "set": [["served_by", "sluice"]] }
    }}));
    let meta = json!({ "sluice": { "consumer": "alice", "plan": "pro", "path": "/a" } });
    let resp = Message {
        headers: vec![
            (":status".into(), "200".into()),
            ("server".into(), "backend".into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: Some(r#"{"ok":true}"#.into()),
    };
    let out = vm()
        .on_response(&resp, &c, meta.as_object().expect("obj"))
        .expect("run");
    assert_eq!(out.header("server"), None);
    assert_eq!(out.header("x-served-for"), Some("alice/pro /a"));
    let doc: Value = serde_json::from_str(out.body.as_deref().expect("body")).expect("json");
    assert_eq!(doc, json!({"ok": true, "served_by": "sluice"}));
}

/// Calls a function defined after the bundle, so its modules are in scope.
fn call(extra: &str, f: &str, arg: &str) -> String {
    let vm = mlua::Lua::new();
    vm.load(format!("{}\n{extra}", bundle()))
        .exec()
        .expect("load");
    let func: mlua::Function = vm.globals().get(f).expect("fn");
    func.call::<String>(arg).expect("call")
}

#[test]
fn json_codec_round_trips_and_rejects_garbage() {
    let extra = r#"function rt(s)
        local v, err = json.decode(s)
        if v == nil then return "ERR " .. err end
        return json.encode(v)
    end"#;
    let cases = [
        (
            r#"{"b":1,"a":[true,false,null],"c":"x\"y\\z\u00e9\n"}"#,
            r#"{"a":[true,false,null],"b":1,"c":"x\"y\\zé\n"}"#,
        ),
        ("[]", "[]"),
        ("{}", "{}"),
        (
            r#"{"n":-1.5e3,"big":12345678901}"#,
            r#"{"big":12345678901,"n":-1500}"#,
        ),
        (r#""\ud83d\ude00""#, "\"😀\""),
    ];
    for (input, want) in cases {
        assert_eq!(call(extra, "rt", input), want, "{input}");
    }
    for bad in [
        "{",
        "[1,]",
        "01",
        r#"{"a" 1}"#,
        "nul",
        "\"\\ud800\"",
        "[1] x",
        &"[".repeat(100),
    ] {
        assert!(
            call(extra, "rt", bad).starts_with("ERR"),
            "{bad} should fail"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sha256_matches_the_reference(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text: String = input.iter().map(|&b| char::from(b % 128)).collect();
        let lua = call("function h(s) return sha256.hex(s) end", "h", &text);
        prop_assert_eq!(lua, sha(&text));
    }

    #[test]
    fn hostile_header_values_stay_data(value in "[ -~]{0,64}") {
        // A template placeholder value full of Lua and pattern syntax is
        // copied, never evaluated.
        let c = ctx(json!({ "transform_request": { "set": [["x-echo", "<${header.x-in}>"]] } }));
        let r = req("GET", "/", &[("x-in", &value)], None);
        let out = vm().on_request(&r, &c, "1.2.3.4:5").expect("run");
        prop_assert_eq!(&out.error, &None);
        let want = format!("<{value}>");
        prop_assert_eq!(out.header("x-echo"), Some(want.as_str()));
    }
}

fn base64_encode(s: &str) -> String {
    base64_encode_bytes(s.as_bytes())
}

mod jwt {
    use super::*;
    use common::jwt::{b64url, now, OTHER_PRIVATE, PRIVATE, PUBLIC};

    fn token(private_pem: &str, header: Value, claims: Value) -> String {
        common::jwt::token(private_pem, &header, &claims)
    }

    fn der_b64(pem: &str) -> String {
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    }

    fn cfg() -> Value {
        ctx(json!({ "auth": { "jwt": {
            "header": "authorization",
            "issuer": "https://issuer.example",
            "audiences": ["api"],
            "keys": { "k1": der_b64(PUBLIC) },
            "consumer_claim": "sub",
            "plan_claim": "plan",
            "skew_seconds": 60
        }}}))
    }

    fn good_claims() -> Value {
        json!({"iss": "https://issuer.example", "aud": "api", "sub": "carol", "plan": "pro", "exp": now() + 300})
    }

    fn bearer(vm: &FilterVm, token: &str) -> Outcome {
        let auth = format!("Bearer {token}");
        vm.on_request(
            &req("GET", "/", &[("authorization", &auth)], None),
            &cfg(),
            "1.2.3.4:5",
        )
        .expect("run")
    }

    #[test]
    fn valid_tokens_pass_with_their_claims() {
        let vm = vm();
        let t = token(PRIVATE, json!({"alg": "RS256", "kid": "k1"}), good_claims());
        let out = bearer(&vm, &t);
        assert_eq!(out.response, None, "{:?} {:?}", out.response, out.error);
        assert_eq!(out.header("x-sluice-consumer"), Some("carol"));
        assert_eq!(out.header("x-sluice-plan"), Some("pro"));
        // aud as a list works too.
        let mut claims = good_claims();
        claims["aud"] = json!(["other", "api"]);
        let out = bearer(
            &vm,
            &token(PRIVATE, json!({"alg": "RS256", "kid": "k1"}), claims),
        );
        assert_eq!(out.response, None);
    }

    #[test]
    fn bad_tokens_are_refused() {
        let vm = vm();
        let out = vm
            .on_request(&req("GET", "/", &[], None), &cfg(), "1.2.3.4:5")
            .expect("run");
        assert_eq!(status(&out), 401);
        assert_eq!(
            out.response
                .as_ref()
                .and_then(|r| r.header("www-authenticate")),
            Some("Bearer")
        );
        assert_eq!(status(&bearer(&vm, "not-a-jwt")), 400);

        let hdr = json!({"alg": "RS256", "kid": "k1"});
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = good_claims();
            f(&mut c);
            token(PRIVATE, hdr.clone(), c)
        };
        let cases = [
            (
                "signed by another key",
                token(OTHER_PRIVATE, hdr.clone(), good_claims()),
                "invalid token signature",
            ),
            (
                "expired",
                with(&|c| c["exp"] = json!(now() - 3600)),
                "token expired",
            ),
            (
                "not yet valid",
                with(&|c| c["nbf"] = json!(now() + 3600)),
                "token not yet valid",
            ),
            (
                "wrong issuer",
                with(&|c| c["iss"] = json!("https://evil.example")),
                "wrong token issuer",
            ),
            (
                "wrong audience",
                with(&|c| c["aud"] = json!("other")),
                "wrong token audience",
            ),
            (
                "no subject",
                with(&|c| {
                    c.as_object_mut().map(|m| m.remove("sub"));
                }),
                "token has no consumer claim",
            ),
            (
                "unknown kid",
                token(PRIVATE, json!({"alg": "RS256", "kid": "k9"}), good_claims()),
                "unknown signing key",
            ),
            (
                "alg none",
                token(PRIVATE, json!({"alg": "none", "kid": "k1"}), good_claims()),
                "unsupported token algorithm",
            ),
            (
                "alg HS256",
                token(PRIVATE, json!({"alg": "HS256", "kid": "k1"}), good_claims()),
                "unsupported token algorithm",
            ),
        ];
        for (what, t, why) in cases {
            let out = bearer(&vm, &t);
            assert_eq!(status(&out), 403, "{what}");
            assert_eq!(error_body(&out)["message"], why, "{what}");
        }
        // A valid signature over other content does not transfer.
        let good = token(PRIVATE, hdr.clone(), good_claims());
        let forged_claims = b64url(json!({"sub": "mallory", "exp": now() + 300, "iss": "https://issuer.example", "aud": "api"}).to_string().as_bytes());
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(status(&bearer(&vm, &forged)), 403);
    }
}

fn base64_encode_bytes(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_filter_error_fails_closed_with_500() {
    // A malformed context (a number where a list belongs) makes the script
    // raise; Envoy would let such a request through, so the bundle catches
    // the error and answers 500 itself.
    let c = ctx(json!({ "validate": { "methods": 5 } }));
    let out = vm()
        .on_request(&req("GET", "/", &[], None), &c, "1.2.3.4:5")
        .expect("run");
    assert_eq!(status(&out), 500);
    assert_eq!(error_body(&out)["error"], "internal");
    assert!(
        out.log.iter().any(|l| l.contains("sluice: filter error")),
        "{:?}",
        out.log
    );
}

#[test]
fn key_digest_cache_stays_correct_past_its_bound() {
    // More distinct wrong keys than the per-VM digest cache holds (1,024):
    // the cache is dropped and refilled, and answers never change.
    let vm = vm();
    let c = ctx(api_key_auth());
    let good = req("GET", "/", &[("x-api-key", "alice-key")], None);
    assert_eq!(
        vm.on_request(&good, &c, "1.2.3.4:5").expect("run").response,
        None
    );
    for i in 0..1100 {
        let key = format!("wrong-{i}");
        let bad = req("GET", "/", &[("x-api-key", key.as_str())], None);
        assert_eq!(
            status(&vm.on_request(&bad, &c, "1.2.3.4:5").expect("run")),
            403
        );
    }
    let out = vm.on_request(&good, &c, "1.2.3.4:5").expect("run");
    assert_eq!(out.header("x-sluice-consumer"), Some("alice"));
}

/// Envoy invalidates a headers object when the script waits for the body
/// (the shim does too): templates and checks that run after the body was
/// read must still see the headers. The issue's case: the API key in the
/// body, then a header template.
#[test]
fn request_header_templates_work_after_the_body_was_read() {
    let c = ctx(json!({
        "auth": { "api_key": {
            "header": "x-api-key",
            "json_field": "apiKey",
            "keys": { sha("k1"): { "consumer": "c1" } }
        }},
        "transform_request": {
            "set": [["x-copy", "${header.x-src}"]],
            "json": { "set": [["src", "${header.x-src}"]] }
        }
    }));
    let r = req(
        "POST",
        "/",
        &[("x-src", "v"), ("content-type", "application/json")],
        Some(r#"{"apiKey":"k1"}"#),
    );
    let out = vm().on_request(&r, &c, "1.2.3.4:5").expect("run");
    assert_eq!(out.response, None, "{:?} {:?}", out.error, out.log);
    assert_eq!(out.header("x-copy"), Some("v"));
    assert_eq!(out.header("x-sluice-consumer"), Some("c1"));
    let doc: Value = serde_json::from_str(out.body.as_deref().expect("body")).expect("json");
    assert_eq!(doc, json!({"apiKey": "k1", "src": "v"}));
}

#[test]
fn response_json_templates_read_headers_after_the_body() {
    let c = ctx(json!({ "transform_response": {
        "json": { "set": [["served_by", "${header.x-up}"]] }
    }}));
    let resp = Message {
        headers: [
            (":status", "200"),
            ("x-up", "u1"),
            ("content-type", "application/json"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec(),
        body: Some(r#"{"ok":true}"#.into()),
    };
    let out = vm()
        .on_response(&resp, &c, &serde_json::Map::new())
        .expect("run");
    assert_eq!(out.error, None);
    assert!(out.log.is_empty(), "{:?}", out.log);
    let doc: Value = serde_json::from_str(out.body.as_deref().expect("body")).expect("json");
    assert_eq!(doc, json!({"ok": true, "served_by": "u1"}));
}

#[test]
fn validate_checks_the_content_type_after_measuring_a_chunked_body() {
    let c = ctx(json!({ "validate": {
        "content_types": ["application/json"],
        "max_body_bytes": 100
    }}));
    for (ctype, want) in [("application/json", None), ("text/xml", Some(415))] {
        let r = req(
            "POST",
            "/",
            &[("transfer-encoding", "chunked"), ("content-type", ctype)],
            Some("{}"),
        );
        let out = vm().on_request(&r, &c, "1.2.3.4:5").expect("run");
        assert_eq!(out.response.as_ref().map(|r| r.status()), want, "{ctype}");
    }
}

#[test]
fn validate_checks_bodies_without_content_length() {
    // An HTTP/2 request need not declare its length, and a chunked HTTP/1
    // one cannot (Envoy keeps its `transfer-encoding` from the script).
    let c = ctx(json!({ "validate": {
        "content_types": ["application/json"],
        "max_body_bytes": 10
    }}));
    let vm = vm();
    let padded = r#"{"pad":"xxxxxxxx"}"#;
    for (ctype, body, want) in [
        ("text/xml", Some("<a/>"), Some(415)),
        ("", Some("{}"), Some(415)),
        ("application/json", Some(padded), Some(413)),
        ("application/json", Some("{}"), None),
        // No body: the body rules do not apply.
        ("text/xml", None, None),
    ] {
        for te in [&[][..], &[("transfer-encoding", "chunked")][..]] {
            let mut headers = vec![("content-type", ctype)];
            headers.extend_from_slice(te);
            let method = if body.is_some() { "POST" } else { "GET" };
            let out = vm
                .on_request(&req(method, "/", &headers, body), &c, "1.2.3.4:5")
                .expect("run");
            assert_eq!(
                out.response.as_ref().map(|r| r.status()),
                want,
                "{ctype} {body:?} {te:?}"
            );
        }
    }
}

#[test]
fn a_script_never_sees_a_requests_transfer_encoding() {
    // Envoy's HTTP/1 codec takes it off before any filter runs.
    let vm = FilterVm::with_script(
        r#"function envoy_on_request(h)
             h:headers():add("x-te", h:headers():get("transfer-encoding") or "nil")
           end"#,
    )
    .expect("script loads");
    let r = req("POST", "/", &[("transfer-encoding", "chunked")], Some("{}"));
    let out = vm.on_request(&r, &json!({}), "1.2.3.4:5").expect("run");
    assert_eq!(out.header("x-te"), Some("nil"));
}
