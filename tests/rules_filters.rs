//! Rules → model for `auth`, `validate` and `transform`, and their errors
//! with exact positions; users' Lua compiled as the edges do (the check
//! `sluice` injects into `sluice_core::rules`).

use sluice::model::Config;
use sluice::model::{AuthMethod, Filters};
use sluice::rules::{Diagnostic, Options, RulesError};

/// Parses as the edges do: users' Lua compiled in LuaJIT.
fn parse(name: &str, text: &str) -> Result<Config, RulesError> {
    Options::with_lua(&sluice::lua::check).parse(name, text)
}

/// One listener, one virtual host (with `vhost` lines at 10-space indent
/// after `domains`), one route (with `route` lines at 12-space indent).
fn mk(vhost: &str, route: &str) -> String {
    format!(
        "services:
  - name: web
    endpoints: [{{address: 127.0.0.1, port: 8081}}]
listeners:
  - name: http
    port: 10000
    virtual_hosts:
      - name: api
        domains: [\"*\"]
{vhost}        routes:
          - to: {{service: web}}
{route}"
    )
}

fn filters(vhost: &str, route: &str) -> (Filters, Filters) {
    let config = parse("r.yaml", &mk(vhost, route)).expect("valid");
    let vh = &config.listeners[0].virtual_hosts[0];
    (vh.filters.clone(), vh.routes[0].filters.clone())
}

fn errors(vhost: &str, route: &str) -> Vec<Diagnostic> {
    parse("r.yaml", &mk(vhost, route))
        .expect_err("invalid")
        .diagnostics
}

fn hex_sha(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn api_keys_are_hashed_and_sorted() {
    let hashed = hex_sha("second");
    let vhost = format!(
        "        auth:
          api_key:
            header: X-Api-Key
            keys:
              - {{key: first, consumer: alice, plan: pro}}
              - {{key_sha256: \"{}\", consumer: bob}}
",
        hashed.to_uppercase()
    );
    let (vh, route) = filters(&vhost, "");
    assert!(route.is_empty());
    let auth = vh.auth.expect("auth");
    assert_eq!(
        (auth.consumer_header.as_str(), auth.plan_header.as_str()),
        ("x-sluice-consumer", "x-sluice-plan")
    );
    let Some(AuthMethod::ApiKey(k)) = auth.method else {
        panic!("api key")
    };
    assert_eq!(k.header.as_deref(), Some("x-api-key"));
    let mut want = vec![
        (hex_sha("first"), "alice", Some("pro")),
        (hashed, "bob", None),
    ];
    want.sort();
    let got: Vec<_> = k
        .keys
        .iter()
        .map(|c| (c.sha256.clone(), c.consumer.as_str(), c.plan.as_deref()))
        .collect();
    assert_eq!(got, want);
    let dump = format!("{:?}", k.keys);
    assert!(!dump.contains("first"), "the plain key must not be kept");
}

#[test]
fn basic_users_validate_and_transforms_parse() {
    let route = "            auth:
              basic:
                users: [{user: ann, password: pw, plan: gold}]
              ip: {allow: [10.0.0.0/8, \"::1\"]}
            validate: {methods: [get, POST], required_headers: [X-Id], max_body_bytes: 1024}
            transform:
              request:
                set_headers: {x-who: \"${consumer}/${plan}\"}
                rename_headers: {x-old: x-new}
                query_to_header: {page: x-page}
                rewrite_path: \"/v2${path}\"
                json: {set: {meta.by: sluice}, remove: [password]}
              response:
                remove_headers: [Server]
";
    let (_, f) = filters("", route);
    let auth = f.auth.expect("auth");
    let Some(AuthMethod::Basic(b)) = &auth.method else {
        panic!("basic")
    };
    assert_eq!(b.users[0].0, "ann");
    assert_eq!(b.users[0].1.sha256, hex_sha("pw"));
    assert_eq!(
        b.users[0].1.consumer, "ann",
        "consumer defaults to the user name"
    );
    assert_eq!(auth.ip.expect("ip").allow, ["10.0.0.0/8", "::1"]);
    let v = f.validate.expect("validate");
    assert_eq!(v.methods, ["GET", "POST"]);
    assert_eq!(v.required_headers, ["x-id"]);
    assert_eq!(v.max_body_bytes, Some(1024));
    let req = f.request.expect("request");
    assert_eq!(
        req.set_headers,
        [("x-who".to_string(), "${consumer}/${plan}".to_string())]
    );
    assert_eq!(
        req.rename_headers,
        [("x-old".to_string(), "x-new".to_string())]
    );
    assert_eq!(
        req.query_to_header,
        [("page".to_string(), "x-page".to_string())]
    );
    assert_eq!(req.rewrite_path.as_deref(), Some("/v2${path}"));
    let json = req.json.expect("json");
    assert_eq!(json.set, [("meta.by".to_string(), "sluice".to_string())]);
    assert_eq!(json.max_bytes, 1 << 20, "default limit");
    assert_eq!(f.response.expect("response").remove_headers, ["server"]);
}

#[test]
fn errors_point_at_the_offending_field() {
    let cases: &[(&str, usize, usize, &str, &str)] = &[
        (
            "            transform: {request: {set_headers: {x-a: \"${cookie.id}\"}}}\n",
            12,
            49,
            "listeners[0].virtual_hosts[0].routes[0].transform.request.set_headers.x-a",
            "unknown placeholder `${cookie.id}`",
        ),
        (
            "            transform: {request: {remove_headers: [\"bad header\"]}}\n",
            12,
            52,
            "listeners[0].virtual_hosts[0].routes[0].transform.request.remove_headers[0]",
            "not a valid HTTP header name",
        ),
        (
            "            transform: {response: {rewrite_path: /x}}\n",
            12,
            35,
            "listeners[0].virtual_hosts[0].routes[0].transform.response.rewrite_path",
            "applies to requests only",
        ),
        (
            "            auth: {api_key: {header: x-k, keys: [{key: a}]}}\n",
            12,
            50,
            "listeners[0].virtual_hosts[0].routes[0].auth.api_key.keys[0].consumer",
            "`consumer` is required",
        ),
        (
            "            auth: {api_key: {header: x-k, keys: [{key_sha256: abc, consumer: c}]}}\n",
            12,
            63,
            "listeners[0].virtual_hosts[0].routes[0].auth.api_key.keys[0].key_sha256",
            "64 hex digits",
        ),
        (
            "            auth: {ip: {deny: [10.0.0.0/33]}}\n",
            12,
            32,
            "listeners[0].virtual_hosts[0].routes[0].auth.ip.deny[0]",
            "is not an IP address or CIDR",
        ),
        (
            "            auth: {api_key: {keys: [{key: a, consumer: c}]}}\n",
            12,
            29,
            "listeners[0].virtual_hosts[0].routes[0].auth.api_key",
            "at least one of `header`, `query`, `json_field`",
        ),
        (
            "            validate: {methods: [FETCH]}\n",
            12,
            34,
            "listeners[0].virtual_hosts[0].routes[0].validate.methods[0]",
            "unknown method `FETCH`",
        ),
        (
            "            auth: {colour: red}\n",
            12,
            20,
            "listeners[0].virtual_hosts[0].routes[0].auth.colour",
            "colour",
        ),
    ];
    for (route, line, col, path, text) in cases {
        let diags = errors("", route);
        assert_eq!(diags.len(), 1, "{route}: {diags:#?}");
        let d = &diags[0];
        assert_eq!(
            (d.line, d.column, d.path.as_str()),
            (*line, *col, *path),
            "{route}: {d}"
        );
        assert!(d.message.contains(text), "{route}: {d}");
    }
}

#[test]
fn identity_header_routes_need_auth() {
    let text = "services:
  - name: web
    endpoints: [{address: 127.0.0.1, port: 8081}]
listeners:
  - name: http
    port: 10000
    virtual_hosts:
      - name: api
        domains: [\"*\"]
        routes:
          - match: {prefix: /, headers: [{name: X-Sluice-Plan, exact: pro}]}
            to: {service: web}
          - to: {service: web}
";
    let diags = parse("r.yaml", text).expect_err("spoofable").diagnostics;
    assert_eq!(diags.len(), 1);
    assert_eq!((diags[0].line, diags[0].column), (11, 13));
    assert!(
        diags[0].message.contains("could send the header itself"),
        "{}",
        diags[0]
    );
    // With auth on the virtual host it is fine.
    let with_auth = text.replace(
        "        routes:",
        "        auth: {api_key: {header: x-k, keys: [{key: a, consumer: c, plan: pro}]}}\n        routes:",
    );
    parse("r.yaml", &with_auth).expect("valid with auth");
}

#[test]
fn rate_limits_parse_and_need_auth_when_keyed() {
    let route = "            rate_limit: {key: plan, requests: 5, per: 1m, overrides: {pro: 50}}\n";
    let vhost =
        "        auth: {api_key: {header: x-k, keys: [{key: a, consumer: c, plan: pro}]}}\n";
    let (_, f) = filters(vhost, route);
    let rl = f.rate_limit.expect("rate limit");
    assert_eq!(rl.key, sluice::model::RateLimitKey::Plan);
    assert_eq!(
        (rl.requests, rl.per),
        (5, std::time::Duration::from_secs(60))
    );
    assert_eq!(rl.overrides, [("pro".to_string(), 50)]);

    let diags = errors("", route);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(
        diags[0].path,
        "listeners[0].virtual_hosts[0].routes[0].rate_limit"
    );
    assert!(diags[0].message.contains("needs `auth`"), "{}", diags[0]);

    let diags = errors("", "            rate_limit: {requests: 0, per: 10ms}\n");
    let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listeners[0].virtual_hosts[0].routes[0].rate_limit.requests",
            "listeners[0].virtual_hosts[0].routes[0].rate_limit.per"
        ]
    );
}

#[test]
fn jwt_keys_are_checked_and_stored_as_der() {
    let pem: String = include_str!("fixtures/jwt/test-public.pem")
        .lines()
        .map(|l| format!("                      {l}\n"))
        .collect();
    let route = format!(
        "            auth:
              jwt:
                issuer: https://issuer.example
                audiences: [api]
                keys:
                  - kid: k1
                    pem: |
{pem}"
    );
    let (_, f) = filters("", &route);
    let Some(AuthMethod::Jwt(j)) = f.auth.expect("auth").method else {
        panic!("jwt")
    };
    assert_eq!(j.header, "authorization");
    assert_eq!(j.consumer_claim, "sub");
    assert_eq!(j.keys.len(), 1);
    assert_eq!(j.keys[0].0, "k1");
    assert!(
        j.keys[0].1.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"),
        "{}",
        j.keys[0].1
    );

    let diags = errors("", "            auth: {jwt: {keys: [{pem: \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"}]}}\n");
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(
        diags[0].path,
        "listeners[0].virtual_hosts[0].routes[0].auth.jwt.keys[0].pem"
    );
    assert!(
        diags[0].message.contains("not a valid RSA public key"),
        "{}",
        diags[0]
    );

    let diags = errors(
        "",
        "            auth: {basic: {users: [{user: a, password: b}]}, jwt: {keys: []}}\n",
    );
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains("not basic and jwt")),
        "{diags:#?}"
    );
}

#[test]
fn user_lua_is_compiled_and_linted_at_load() {
    let ok = "            lua: {source: \"function envoy_on_request(h) end\"}\n";
    let (_, f) = filters("", ok);
    assert!(f.lua.is_some());
    let bad = "            lua:\n              source: |\n                function envoy_on_request(h)\n                  os.execute('rm -rf /')\n                end\n";
    let diags = errors("", bad);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(
        diags[0].path,
        "listeners[0].virtual_hosts[0].routes[0].lua.source"
    );
    assert!(
        diags[0]
            .message
            .contains("lua.source:2: `os` is not allowed"),
        "{}",
        diags[0]
    );
    let syntax = "            lua: {source: \"function envoy_on_request(h\"}\n";
    let diags = errors("", syntax);
    assert!(
        diags[0].message.contains("does not compile"),
        "{}",
        diags[0]
    );
}

/// A pure caller (no compile check given) still gets every other check,
/// the Lua lint included; only LuaJIT's compile is the edge's.
#[test]
fn without_a_lua_check_user_lua_is_linted_but_not_compiled() {
    let syntax = mk(
        "",
        "            lua: {source: \"function envoy_on_request(h\"}\n",
    );
    let config = sluice::rules::parse("r.yaml", &syntax).expect("not compiled");
    assert!(config.listeners[0].virtual_hosts[0].routes[0]
        .filters
        .lua
        .is_some());

    let forbidden = mk("", "            lua: {source: \"os.exit()\"}\n");
    let diags = sluice::rules::parse("r.yaml", &forbidden)
        .expect_err("linted")
        .diagnostics;
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert!(
        diags[0].message.contains("`os` is not allowed"),
        "{}",
        diags[0]
    );
}
