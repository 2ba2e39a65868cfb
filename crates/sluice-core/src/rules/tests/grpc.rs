//! `grpc`: what it parses to, and each error at its position.

use super::*;
use crate::model::{GrpcRoute, GrpcTarget, RouteMatch, ValueMatch};

const EXAMPLE: &str = include_str!("../../../../../examples/grpc.yaml");

/// `SVC` then a `grpc` list with one target `web` whose routes are
/// `routes` (from line 10).
fn mk_grpc(routes: &str) -> String {
    format!("{SVC}grpc:\n  - target: web\n    routes:\n{routes}")
}

/// The line and column (1-based) of the first `needle` in `yaml`.
fn pos(yaml: &str, needle: &str) -> (usize, usize) {
    let at = yaml.find(needle).expect("needle in yaml");
    let before = &yaml[..at];
    let line = before.matches('\n').count() + 1;
    let column = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn assert_grpc_error(routes: &str, needle: &str, path: &str, text: &str) {
    let yaml = mk_grpc(routes);
    let (line, column) = pos(&yaml, needle);
    assert_error(&yaml, line, column, path, text);
}

#[test]
fn the_example_parses_to_its_target() {
    let config = parse("grpc.yaml", EXAMPLE).expect("valid");
    let canary = backend("greeter", Some("canary"));
    assert_eq!(
        *config.grpc,
        vec![GrpcTarget {
            name: "greeter".into(),
            groups: None,
            routes: vec![
                GrpcRoute {
                    name: "tagged".into(),
                    matcher: RouteMatch {
                        path: PathMatch::Prefix("/".into()),
                        headers: vec![crate::model::HeaderMatch {
                            name: "x-canary".into(),
                            value: ValueMatch::Exact("1".into()),
                            invert: false,
                        }],
                        query: Vec::new(),
                    },
                    action: RouteAction::Backend(canary.clone()),
                    timeout: None,
                    retry: None,
                    hash: Vec::new(),
                    fault: None,
                },
                GrpcRoute {
                    name: "default".into(),
                    matcher: RouteMatch {
                        path: PathMatch::Prefix("/".into()),
                        headers: Vec::new(),
                        query: Vec::new(),
                    },
                    action: RouteAction::Split(vec![
                        WeightedBackend {
                            backend: backend("greeter", Some("stable")),
                            weight: 80,
                        },
                        WeightedBackend {
                            backend: canary,
                            weight: 20,
                        },
                    ]),
                    timeout: None,
                    retry: None,
                    hash: Vec::new(),
                    fault: None,
                },
            ],
        }]
    );
    assert!(config.listeners.is_empty());
}

#[test]
fn absent_section_is_empty() {
    assert!(parse("rules.yaml", SVC).expect("valid").grpc.is_empty());
}

#[test]
fn a_target_is_what_clients_dial() {
    for bad in [
        "\"xds:///web\"",
        "\"web/x\"",
        "\"*.web\"",
        "\"web:0\"",
        "\"\"",
    ] {
        let yaml =
            format!("{SVC}grpc:\n  - target: {bad}\n    routes: [{{to: {{service: web}}}}]\n");
        let (line, column) = pos(&yaml, bad);
        assert_error(&yaml, line, column, "grpc[0].target", "invalid gRPC target");
    }
    let ok =
        format!("{SVC}grpc:\n  - target: web.shop:50051\n    routes: [{{to: {{service: web}}}}]\n");
    parse("rules.yaml", &ok).expect("host and port");
}

#[test]
fn duplicate_targets_point_at_the_second() {
    let yaml = format!(
        "{SVC}grpc:\n  - target: web\n    routes: [{{to: {{service: web}}}}]\n  - target: WEB\n    routes: [{{to: {{service: web}}}}]\n"
    );
    let (line, column) = pos(&yaml, "WEB");
    assert_error(
        &yaml,
        line,
        column,
        "grpc[1].target",
        "duplicate gRPC target",
    );
}

#[test]
fn paths_grpc_would_skip_are_refused() {
    assert_grpc_error(
        "      - {match: {prefix: /a/b/c}, to: {service: web}}\n",
        "/a/b/c",
        "grpc[0].routes[0].match.prefix",
        "cannot match a method path",
    );
    assert_grpc_error(
        "      - {match: {path: /pkg.Svc}, to: {service: web}}\n",
        "/pkg.Svc",
        "grpc[0].routes[0].match.path",
        "/package.Service/Method",
    );
    assert_grpc_error(
        "      - {match: {query: [{name: q, present: true}]}, to: {service: web}}\n",
        "{name: q",
        "grpc[0].routes[0].match.query",
        "query parameters",
    );
    assert_grpc_error(
        "      - {match: {headers: [{name: X-Canary, exact: \"1\"}]}, to: {service: web}}\n",
        "X-Canary",
        "grpc[0].routes[0].match.headers[0].name",
        "write `x-canary`",
    );
    let ok = mk_grpc(
        "      - {match: {prefix: /pkg.Svc/}, to: {service: web}}\n      - {match: {path: /pkg.Svc/Get}, to: {service: web}}\n",
    );
    parse("rules.yaml", &ok).expect("method paths");
}

#[test]
fn fields_grpc_clients_do_not_take_are_unknown() {
    let yaml = mk_grpc("      - to: {service: web}\n        mirror: {service: web}\n");
    let diags = mk_errors(&yaml);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert!(diags[0].message.contains("mirror"), "{}", diags[0]);
    assert!(diags[0].message.contains("retry"), "{}", diags[0]);
    assert!(diags[0].message.contains("timeout"), "{}", diags[0]);
}

#[test]
fn retries_are_what_grpc_clients_retry() {
    let yaml = mk_grpc(
        "      - to: {service: web}\n        retry: {on: [unavailable, internal], attempts: 3, backoff: {base: 10ms, max: 1s}}\n      - to: {service: web}\n        retry: {on: [cancelled]}\n",
    );
    let config = parse("rules.yaml", &yaml).expect("valid");
    let retries: Vec<_> = config.grpc[0]
        .routes
        .iter()
        .map(|r| r.retry.clone().expect("retry"))
        .collect();
    assert_eq!(
        retries,
        vec![
            crate::model::GrpcRetry {
                on: vec!["unavailable".into(), "internal".into()],
                attempts: 3,
                backoff: Some((Duration::from_millis(10), Duration::from_secs(1))),
            },
            crate::model::GrpcRetry {
                on: vec!["cancelled".into()],
                attempts: 1,
                backoff: None,
            },
        ]
    );
    assert_grpc_error(
        "      - to: {service: web}\n        retry: {on: [5xx]}\n",
        "5xx",
        "grpc[0].routes[0].retry.on[0]",
        "do not retry on `5xx`",
    );
    assert_grpc_error(
        "      - to: {service: web}\n        retry: {on: [unavailable], attempts: 5}\n",
        "5}",
        "grpc[0].routes[0].retry.attempts",
        "from 1 to 4",
    );
    assert_grpc_error(
        "      - to: {service: web}\n        retry: {on: [unavailable], backoff: {base: 1s, max: 10ms}}\n",
        "10ms",
        "grpc[0].routes[0].retry.backoff.max",
        "not be below its base",
    );
    assert_grpc_error(
        "      - to: {service: web}\n        retry: {on: [unavailable], per_try_timeout: 1s}\n",
        "per_try_timeout",
        "grpc[0].routes[0].retry.per_try_timeout",
        "valid fields are `on`, `attempts`, `backoff`",
    );
}

#[test]
fn routes_reach_known_round_robin_plaintext_services() {
    assert_grpc_error(
        "      - to: {service: nope}\n",
        "nope",
        "grpc[0].routes[0].to.service",
        "unknown service `nope`",
    );
    assert_grpc_error("      - {}\n", "{}", "grpc[0].routes[0]", "needs `to");
    let ring = "services:
  - name: web
    lb_policy: maglev
    endpoints: [{address: 127.0.0.1, port: 8081}]
grpc:
  - target: web
    routes:
      - split: [{service: web, weight: 100}]
";
    let (line, column) = pos(ring, "web, weight");
    assert_error(
        ring,
        line,
        column,
        "grpc[0].routes[0].split[0].service",
        "round_robin",
    );
}

#[test]
fn ring_hash_routes_hash_on_metadata_only() {
    let ring = "services:
  - name: web
    lb_policy: ring_hash
    endpoints: [{address: 127.0.0.1, port: 8081}]
grpc:
  - target: web
    routes:
";
    let config = parse(
        "rules.yaml",
        &format!("{ring}      - to: {{service: web}}\n        hash: [{{header: x-user}}]\n"),
    )
    .expect("valid");
    assert_eq!(
        config.grpc[0].routes[0].hash,
        vec![crate::model::HashPolicy::Header("x-user".into())]
    );
    for (entry, needle, path, text) in [
        (
            "{cookie: {name: s}}",
            "{name: s}",
            ".cookie",
            "not `cookie`",
        ),
        ("{source_ip: true}", "true", ".source_ip", "not `source_ip`"),
        ("{query: u}", "u}", ".query", "not `query`"),
        ("{header: X-User}", "X-User", ".header", "write `x-user`"),
        (
            "{header: x-id-bin}",
            "x-id-bin",
            ".header",
            "binary metadata",
        ),
    ] {
        let yaml = format!("{ring}      - to: {{service: web}}\n        hash: [{entry}]\n");
        let at = yaml.rfind(needle).expect("needle");
        let before = &yaml[..at];
        let line = before.matches('\n').count() + 1;
        let column = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        let p = format!("grpc[0].routes[0].hash[0]{path}");
        assert_error(&yaml, line, column, &p, text);
    }
    // Hashing needs a ring hash service, as a listener route's does.
    assert_grpc_error(
        "      - to: {service: web}\n        hash: [{header: x-user}]\n",
        "[{header",
        "grpc[0].routes[0].hash",
        "ring_hash",
    );
}
