//! Unit tests for the rules loader: the quickstart's model, then one test
//! per kind of error with its exact position, path and message.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::model::{Backend, LbPolicy, PathMatch, RouteAction, WeightedBackend};

mod diagnostics;
mod endpoints;
mod envoy_refusals;
mod grpc;
mod policy;
mod tls;
mod xds_access;

const QUICKSTART: &str = include_str!("../../../../examples/quickstart.yaml");

/// A valid service block; lines 1–6.
const SVC: &str = "services:
  - name: web
    endpoints:
      - {address: 127.0.0.1, port: 8081, labels: {version: v1}}
    subsets:
      stable: {version: v1}
";

/// A file whose only route is `route` (which starts on line 14).
fn mk_route(route: &str) -> String {
    mk_vhost(&format!(
        "        domains: [\"*\"]\n        routes:\n{route}"
    ))
}

/// A file whose only virtual host is `web` followed by `body` (line 12 on).
fn mk_vhost(body: &str) -> String {
    format!(
        "{SVC}listeners:
  - name: http
    port: 10000
    virtual_hosts:
      - name: web
{body}"
    )
}

fn mk_errors(yaml: &str) -> Vec<Diagnostic> {
    match parse("rules.yaml", yaml) {
        Ok(config) => panic!("expected diagnostics, got {config:#?}"),
        Err(err) => err.diagnostics,
    }
}

/// Asserts the file fails with exactly one diagnostic, at `line:column` on
/// `path`, whose message contains `text`.
fn assert_error(yaml: &str, line: usize, column: usize, path: &str, text: &str) {
    let diags = mk_errors(yaml);
    assert_eq!(diags.len(), 1, "expected one diagnostic, got {diags:#?}");
    assert_diag(&diags[0], line, column, path, text);
}

fn assert_diag(d: &Diagnostic, line: usize, column: usize, path: &str, text: &str) {
    assert_eq!(
        (d.line, d.column, d.path.as_str()),
        (line, column, path),
        "{d}"
    );
    assert!(
        d.message.contains(text),
        "message {:?} lacks {text:?}",
        d.message
    );
    assert_eq!(d.file, "rules.yaml");
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

fn backend(service: &str, subset: Option<&str>) -> Backend {
    Backend {
        service: service.to_string(),
        subset: subset.map(str::to_string),
    }
}

#[test]
fn quickstart_builds_the_expected_config() {
    let config = parse("quickstart.yaml", QUICKSTART).expect("quickstart is valid");
    let web = &config.services["web"];
    assert_eq!(config.services.len(), 1);
    assert_eq!(web.connect_timeout, Duration::from_secs(1));
    assert_eq!(web.lb_policy, LbPolicy::RoundRobin);
    let eps: Vec<_> = web
        .endpoints
        .iter()
        .map(|e| (e.address, e.port, e.weight))
        .collect();
    assert_eq!(
        eps,
        [(ip("127.0.0.1"), 8081, 1), (ip("127.0.0.1"), 8082, 1)]
    );
    assert_eq!(
        web.endpoints[1].labels,
        BTreeMap::from([("version".into(), "v2".into())])
    );
    assert_eq!(
        web.subsets["canary"],
        BTreeMap::from([("version".into(), "v2".into())])
    );
    assert_eq!(web.endpoints_for(Some("stable"))[0].port, 8081);

    let [http] = config.listeners.as_slice() else {
        panic!("one listener")
    };
    assert_eq!(
        (http.name.as_str(), http.address, http.port),
        ("http", ip("127.0.0.1"), 10000)
    );
    assert_eq!(http.groups, None);
    let vh = &http.virtual_hosts[0];
    assert_eq!(vh.domains, ["*"]);
    let [v2, default] = vh.routes.as_slice() else {
        panic!("two routes")
    };
    assert_eq!(v2.matcher.path, PathMatch::Prefix("/v2".into()));
    assert_eq!(
        v2.action,
        RouteAction::Backend(backend("web", Some("canary")))
    );
    assert_eq!(default.matcher.path, PathMatch::Prefix("/".into()));
    let split = |subset, weight| WeightedBackend {
        backend: backend("web", Some(subset)),
        weight,
    };
    assert_eq!(
        default.action,
        RouteAction::Split(vec![split("stable", 80), split("canary", 20)])
    );
    assert_eq!((default.timeout, default.retry.as_ref()), (None, None));
}

#[test]
fn defaults_fill_omitted_fields() {
    let config = parse("rules.yaml", &mk_route("          - to: {service: web}\n")).expect("valid");
    let listener = &config.listeners[0];
    assert_eq!(listener.address, ip("0.0.0.0"));
    let route = &listener.virtual_hosts[0].routes[0];
    assert_eq!(route.name, "route-0");
    assert_eq!(route.matcher.path, PathMatch::Prefix("/".into()));
    assert_eq!(route.action, RouteAction::Backend(backend("web", None)));
}

#[test]
fn malformed_yaml_points_at_the_parser_mark() {
    // The bracket left open, not the end of the file.
    assert_error(
        "services: [\n",
        1,
        11,
        "<root>",
        "invalid YAML: unclosed bracket '['",
    );
    assert_error(
        "services:\n  - name: a\n    name: b\n",
        3,
        5,
        "services[0].name",
        "duplicate key `name` (first at line 2)",
    );
    assert_error("- 1\n", 1, 1, "<root>", "must be a mapping");
}

#[test]
fn second_document_is_rejected_not_ignored() {
    let yaml = format!("{SVC}---\nlisteners: []\n");
    assert_error(&yaml, 7, 1, "<root>", "exactly one YAML document");
}

#[test]
fn unknown_fields_are_named_with_the_valid_ones() {
    assert_error(
        "servics: []\n",
        1,
        1,
        "servics",
        "unknown field `servics`; valid fields are `services`, `listeners`",
    );
    let yaml =
        mk_route("          - match: {prefix: /a, bogus: 1}\n            to: {service: web}\n");
    let path = "listeners[0].virtual_hosts[0].routes[0].match.bogus";
    assert_error(
        &yaml,
        14,
        33,
        path,
        "unknown field `bogus`; valid fields are `prefix`, `path`, `regex`, `headers`, `query`",
    );
}

#[test]
fn wrong_types_and_missing_fields() {
    assert_error(
        &format!("{SVC}  - name: x\n    endpoints: 3\n"),
        8,
        16,
        "services[1].endpoints",
        "expected a list, found string \"3\"",
    );
    assert_error(
        &format!("{SVC}  - lb_policy: random\n"),
        7,
        5,
        "services[1]",
        "missing field `name`",
    );
    let yaml = mk_route("          - match: {prefix: /, headers: [{name: x, present: maybe}]}\n            to: {service: web}\n");
    assert_error(
        &yaml,
        14,
        61,
        "listeners[0].virtual_hosts[0].routes[0].match.headers[0].present",
        "expected `true` or `false`",
    );
}

#[test]
fn every_repeat_of_a_service_name_names_the_first() {
    let long = "x".repeat(5000);
    let text = format!(
        "services:\n  - name: web\n  - name: {long}\n  - name: web\n  - name: web\n  - name: {long}\n"
    );
    let diags = mk_errors(&text);
    let dups: Vec<(usize, &str)> = diags
        .iter()
        .filter(|d| d.message.starts_with("duplicate"))
        .map(|d| (d.line, d.message.as_str()))
        .collect();
    assert_eq!(dups.len(), 3, "{diags:#?}");
    let web = "duplicate service name `web` (first defined at line 2)";
    assert_eq!(&dups[..2], &[(4, web), (5, web)]);
    // A long name is quoted cut, as every echoed value.
    assert_eq!(dups[2].0, 6);
    assert!(
        dups[2].1.ends_with("(first defined at line 3)"),
        "{}",
        dups[2].1
    );
    assert!(dups[2].1.len() < 400, "{}", dups[2].1);
}

/// A repeated name that is also invalid: reported invalid, then
/// repeated, at the same position, on each repeat; the same whether the
/// caller keeps the text (`parse`) or gives it up (`parse_owned`).
#[test]
fn a_repeated_invalid_name_reports_both_in_order() {
    let text = format!(
        "{SVC}  - name: Web~1\n    endpoints: [{{address: 127.0.0.1, port: 0}}]\n  - name: Web~1\n"
    );
    let diags = mk_errors(&text);
    let got: Vec<(usize, usize, &str, &str)> = diags
        .iter()
        .map(|d| {
            let head = d.message.split(':').next().unwrap_or_default();
            (d.line, d.column, d.path.as_str(), head)
        })
        .collect();
    assert_eq!(
        got,
        [
            (7, 11, "services[1].name", "invalid name `Web~1`"),
            (
                8,
                44,
                "services[1].endpoints[0].port",
                "expected an integer from 1 to 65535, found `0`"
            ),
            (9, 11, "services[2].name", "invalid name `Web~1`"),
            (
                9,
                11,
                "services[2].name",
                "duplicate service name `Web~1` (first defined at line 7)"
            ),
        ],
        "{diags:#?}"
    );
    for text in [text, QUICKSTART.to_string()] {
        let kept = parse("rules.yaml", &text).map_err(|e| e.diagnostics);
        let given_up = Options::default()
            .parse_owned("rules.yaml", text)
            .map_err(|e| e.diagnostics);
        assert_eq!(given_up, kept);
    }
}

#[test]
fn duplicate_names_point_at_the_second() {
    assert_error(
        &format!("{SVC}  - name: web\n"),
        7,
        11,
        "services[1].name",
        "duplicate service name `web` (first defined at line 2)",
    );
    let yaml = mk_route(
        "          - {name: a, to: {service: web}}\n          - {name: a, to: {service: web}}\n",
    );
    assert_error(
        &yaml,
        15,
        20,
        "listeners[0].virtual_hosts[0].routes[1].name",
        "duplicate route name `a` (first defined at line 14)",
    );
}

#[test]
fn invalid_names_are_rejected() {
    let yaml = format!("{SVC}  - name: Web~1\n");
    assert_error(&yaml, 7, 11, "services[1].name", "invalid name `Web~1`");
}

#[test]
fn dangling_references() {
    let yaml = mk_route("          - to: {service: nope}\n");
    assert_error(
        &yaml,
        14,
        27,
        "listeners[0].virtual_hosts[0].routes[0].to.service",
        "unknown service `nope`; defined services: web",
    );
    let yaml = mk_route("          - to: {service: web, subset: canary}\n");
    assert_error(
        &yaml,
        14,
        40,
        "listeners[0].virtual_hosts[0].routes[0].to.subset",
        "service `web` has no subset `canary`; its subsets: stable",
    );
}

#[test]
fn subsets_need_a_selector_but_not_endpoints() {
    let ok = format!("{SVC}  - name: x\n    subsets:\n      lonely: {{zone: nowhere}}\n");
    assert!(parse("rules.yaml", &ok).is_ok());
    let yaml = format!("{SVC}  - name: x\n    subsets:\n      empty: {{}}\n");
    assert_error(
        &yaml,
        9,
        7,
        "services[1].subsets.empty",
        "needs a non-empty label selector",
    );
}

#[test]
fn split_weights_must_sum_to_100() {
    let yaml = mk_route("          - split:\n              - {service: web, weight: 70}\n              - {service: web, subset: stable, weight: 20}\n");
    assert_error(
        &yaml,
        15,
        15,
        "listeners[0].virtual_hosts[0].routes[0].split",
        "sum to 100, but they sum to 90",
    );
    let yaml =
        mk_route("          - split: [{service: web, weight: 50}, {service: web, weight: 50}]\n");
    assert_error(
        &yaml,
        14,
        49,
        "listeners[0].virtual_hosts[0].routes[0].split[1]",
        "backend `web` appears twice",
    );
    let yaml = mk_route("          - split: [{service: web, weight: 101}]\n");
    assert_error(
        &yaml,
        14,
        44,
        "listeners[0].virtual_hosts[0].routes[0].split[0].weight",
        "from 0 to 100, found `101`",
    );
}

#[test]
fn a_route_takes_exactly_one_action() {
    let yaml = mk_route(
        "          - to: {service: web}\n            split: [{service: web, weight: 100}]\n",
    );
    assert_error(
        &yaml,
        15,
        20,
        "listeners[0].virtual_hosts[0].routes[0].split",
        "exactly one of `to` or `split`, not both",
    );
    let yaml = mk_route("          - name: lost\n");
    assert_error(
        &yaml,
        14,
        13,
        "listeners[0].virtual_hosts[0].routes[0]",
        "needs `to: {service: ...}`, a `split` list",
    );
}

#[test]
fn regexes_are_checked_like_re2() {
    let yaml = mk_route("          - match: {regex: '(?=x)'}\n            to: {service: web}\n");
    assert_error(
        &yaml,
        14,
        28,
        "listeners[0].virtual_hosts[0].routes[0].match.regex",
        "look-around",
    );
    let yaml = mk_route("          - match: {headers: [{name: x, regex: '(a)\\1'}]}\n            to: {service: web}\n");
    assert_error(
        &yaml,
        14,
        48,
        "listeners[0].virtual_hosts[0].routes[0].match.headers[0].regex",
        "backreferences are not supported",
    );
}

#[test]
fn matchers_take_exactly_one_kind() {
    let yaml =
        mk_route("          - match: {prefix: /a, path: /b}\n            to: {service: web}\n");
    assert_error(
        &yaml,
        14,
        39,
        "listeners[0].virtual_hosts[0].routes[0].match.path",
        "at most one of `prefix`, `path` or `regex`",
    );
    let yaml = mk_route("          - match: {prefix: api}\n            to: {service: web}\n");
    assert_error(
        &yaml,
        14,
        29,
        "listeners[0].virtual_hosts[0].routes[0].match.prefix",
        "must start with `/`",
    );
    let yaml =
        mk_route("          - match: {query: [{name: q}]}\n            to: {service: web}\n");
    assert_error(
        &yaml,
        14,
        36,
        "listeners[0].virtual_hosts[0].routes[0].match.query[0]",
        "`q` needs one of `exact`, `prefix`, `regex` or `present: true`",
    );
}

#[test]
fn bad_durations() {
    let yaml = mk_route("          - to: {service: web}\n            timeout: 1x\n");
    assert_error(
        &yaml,
        15,
        22,
        "listeners[0].virtual_hosts[0].routes[0].timeout",
        "invalid duration `1x`: unknown unit",
    );
    let yaml = format!("{SVC}  - name: x\n    connect_timeout: 0s\n");
    assert_error(
        &yaml,
        8,
        22,
        "services[1].connect_timeout",
        "must be greater than 0",
    );
}

#[test]
fn bad_addresses_and_ports() {
    let yaml = format!(
        "{SVC}  - name: x\n    endpoints:\n      - address: 300.0.0.1\n        port: 65536\n"
    );
    let diags = mk_errors(&yaml);
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert_diag(
        &diags[0],
        9,
        18,
        "services[1].endpoints[0].address",
        "invalid IP address `300.0.0.1`",
    );
    assert_diag(
        &diags[1],
        10,
        15,
        "services[1].endpoints[0].port",
        "from 1 to 65535, found `65536`",
    );
}

#[test]
fn listeners_are_unique_per_address_and_port() {
    let yaml = format!("{}  - name: http2\n    port: 10000\n    virtual_hosts: [{{name: a, domains: [a], routes: [{{to: {{service: web}}}}]}}]\n", mk_route("          - to: {service: web}\n"));
    assert_error(
        &yaml,
        16,
        11,
        "listeners[1].port",
        "duplicate listener address `0.0.0.0:10000` (first defined at line 9)",
    );
}

#[test]
fn retry_conditions_and_attempts() {
    let yaml = mk_route(
        "          - retry: {on: [5xx, sometimes], attempts: 11}\n            to: {service: web}\n",
    );
    let diags = mk_errors(&yaml);
    assert_eq!(diags.len(), 2, "{diags:#?}");
    let path = "listeners[0].virtual_hosts[0].routes[0].retry";
    assert_diag(
        &diags[0],
        14,
        31,
        &format!("{path}.on[1]"),
        "unknown retry condition `sometimes`; valid conditions are 5xx,",
    );
    assert_diag(
        &diags[1],
        14,
        53,
        &format!("{path}.attempts"),
        "from 1 to 10, found `11`",
    );
}

#[test]
fn domains_must_be_present_and_unique() {
    let yaml = mk_vhost("        domains: []\n        routes: [{to: {service: web}}]\n");
    assert_error(
        &yaml,
        12,
        18,
        "listeners[0].virtual_hosts[0].domains",
        "domains must not be empty",
    );
    let yaml = format!(
        "{}      - name: other\n        domains: [a.com, \"*\"]\n        routes: [{{to: {{service: web}}}}]\n",
        mk_route("          - to: {service: web}\n")
    );
    assert_error(
        &yaml,
        16,
        26,
        "listeners[0].virtual_hosts[1].domains[1]",
        "domain `*` is already used in this listener (line 12)",
    );
}

#[test]
fn every_error_is_reported_in_file_order() {
    let yaml = format!(
        "{SVC}  - name: web\n    lb_policy: fastest\n  - {{name: z, bogus: 1}}\n{}",
        &mk_route("          - to: {service: nope}\n")[SVC.len()..]
    );
    let diags = mk_errors(&yaml);
    let got: Vec<_> = diags
        .iter()
        .map(|d| (d.line, d.column, d.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (7, 11, "services[1].name"),
            (8, 16, "services[1].lb_policy"),
            (9, 15, "services[2].bogus"),
            (17, 27, "listeners[0].virtual_hosts[0].routes[0].to.service"),
        ]
    );
    assert!(diags[1]
        .message
        .contains("valid values are round_robin, least_request, random, ring_hash, maglev"));
}

#[test]
fn display_is_one_line_per_diagnostic() {
    let err = parse("r.yaml", "servics: 1\nlistners: 2\n").expect_err("invalid");
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("r.yaml:1:1: servics: unknown field `servics`"),
        "{text}"
    );
}

#[test]
fn unreadable_file_is_a_diagnostic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing.yaml");
    let err = load_file(&path).expect_err("missing file");
    let d = &err.diagnostics[0];
    assert_eq!(
        (d.file.as_str(), d.line, d.column),
        (path.display().to_string().as_str(), 1, 1)
    );
    assert!(
        d.message.starts_with("cannot read rules file"),
        "{}",
        d.message
    );
}

/// Every diagnostic points somewhere real.
fn check_positions(text: &str) {
    if let Err(err) = parse("fuzz.yaml", text) {
        assert!(!err.diagnostics.is_empty());
        for d in &err.diagnostics {
            assert!(d.line >= 1 && d.column >= 1, "{d}");
            assert!(
                d.line <= text.lines().count() + 2,
                "{d} is past the end of the file"
            );
        }
    }
}

proptest! {
    #[test]
    fn garbage_never_panics(text in any::<String>()) {
        check_positions(&text);
    }

    #[test]
    fn yamlish_garbage_never_panics(text in "[a-z:{}\\[\\],\\- \n\"'*&!#.0-9]{0,80}") {
        check_positions(&text);
    }

    #[test]
    fn mutated_quickstart_never_panics(at in 0usize..2000, cut in 0usize..8, insert in "[ -~\n\t]{0,6}") {
        let mut text: Vec<char> = QUICKSTART.chars().collect();
        let at = at % (text.len() + 1);
        let end = (at + cut).min(text.len());
        text.splice(at..end, insert.chars());
        check_positions(&text.into_iter().collect::<String>());
    }
}

#[test]
fn endpoint_health_locality_and_priority() {
    let text = "services:\n  - name: x\n    endpoints:\n      - address: 10.0.0.1\n        port: 80\n        health: draining\n        priority: 2\n        locality: {region: eu, zone: eu-1a}\n      - address: 10.0.0.2\n        port: 80\n        health: sleepy\n";
    let err = parse("t.yaml", text).expect_err("bad health");
    let d = &err.diagnostics[0];
    assert_eq!(
        (d.line, d.column, d.path.as_str()),
        (11, 17, "services[0].endpoints[1].health")
    );
    assert!(
        d.message.contains("unknown health `sleepy`"),
        "{}",
        d.message
    );

    let good = text.replace("sleepy", "unknown");
    let config = parse("t.yaml", &good).expect("parses");
    let ep = &config.services["x"].endpoints;
    assert_eq!(
        (ep[0].health, ep[0].priority),
        (crate::model::Health::Draining, 2)
    );
    assert_eq!(
        ep[0].locality.as_ref().map(|l| l.zone.as_str()),
        Some("eu-1a")
    );
    assert_eq!(
        (ep[1].health, ep[1].priority, ep[1].locality.clone()),
        (crate::model::Health::Unknown, 0, None)
    );
}

#[test]
fn discovery_and_sources_load_into_the_model() {
    let text = "sources:
  etcd: {endpoints: [\"http://127.0.0.1:2379\"]}
services:
  - name: web
    discovery:
      etcd: {prefix: /services/web/}
      file: {path: web-endpoints.yaml}
listeners: []
";
    let config = parse("rules.yaml", text).expect("valid");
    assert_eq!(
        config.sources.etcd.expect("etcd").endpoints,
        ["http://127.0.0.1:2379"]
    );
    assert_eq!(
        config.services["web"].discovery,
        [
            crate::model::Discovery::Etcd {
                prefix: "/services/web/".into()
            },
            crate::model::Discovery::File {
                path: "web-endpoints.yaml".into()
            },
        ]
    );
}

#[test]
fn discovery_needs_its_source_and_a_slash_terminated_prefix() {
    let text = "services:
  - name: web
    discovery:
      etcd: {prefix: /services/web}
listeners: []
";
    let diags = mk_errors(text);
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert_diag(
        &diags[0],
        4,
        13,
        "services[0].discovery.etcd",
        "add `sources: {etcd:",
    );
    assert_diag(
        &diags[1],
        4,
        22,
        "services[0].discovery.etcd.prefix",
        "must be non-empty and end with `/`",
    );
}

#[test]
fn discovery_rejects_unknown_registries_and_empty_blocks() {
    assert_error(
        "services:\n  - name: web\n    discovery: {zookeeper: {path: /x}}\nlisteners: []\n",
        3,
        17,
        "services[0].discovery.zookeeper",
        "unknown field",
    );
    assert_error(
        "services:\n  - name: web\n    discovery: {}\nlisteners: []\n",
        3,
        16,
        "services[0].discovery",
        "at least one of",
    );
    assert_error(
        "sources: {etcd: {endpoints: [\"127.0.0.1:2379\"]}}\nservices: []\nlisteners: []\n",
        1,
        30,
        "sources.etcd.endpoints[0]",
        "is not a URL",
    );
}

#[test]
fn listener_port_zero_means_any_and_may_repeat() {
    let text = format!(
        "{SVC}listeners:\n  - name: a\n    port: 0\n    virtual_hosts: [{{name: v, domains: [a], routes: [{{to: {{service: web}}}}]}}]\n  - name: b\n    port: 0\n    virtual_hosts: [{{name: v, domains: [b], routes: [{{to: {{service: web}}}}]}}]\n"
    );
    let config = parse("rules.yaml", &text).expect("two port-0 listeners are fine");
    assert_eq!(
        config.listeners.iter().map(|l| l.port).collect::<Vec<_>>(),
        [0, 0]
    );
}

#[test]
fn consul_discovery_loads_with_tag_datacenter_token_and_wait() {
    let text = "sources:
  consul: {address: \"http://127.0.0.1:8500/\", datacenter: dc2, token_env: CONSUL_TOKEN, wait: 30s}
services:
  - name: web
    discovery:
      consul: {service: web, tag: canary}
listeners: []
";
    let config = parse("rules.yaml", text).expect("valid");
    let consul = config.sources.consul.expect("consul");
    assert_eq!(consul.address, "http://127.0.0.1:8500");
    assert_eq!(consul.datacenter.as_deref(), Some("dc2"));
    assert_eq!(consul.token_env.as_deref(), Some("CONSUL_TOKEN"));
    assert_eq!(consul.wait, std::time::Duration::from_secs(30));
    assert_eq!(
        config.services["web"].discovery,
        [crate::model::Discovery::Consul {
            service: "web".into(),
            tag: Some("canary".into())
        }]
    );
    let default_wait =
        "sources: {consul: {address: \"http://c:8500\"}}\nservices: []\nlisteners: []\n";
    let config = parse("rules.yaml", default_wait).expect("valid");
    assert_eq!(
        config.sources.consul.expect("consul").wait,
        std::time::Duration::from_secs(60)
    );
}

#[test]
fn consul_wait_outside_consuls_limit_is_refused() {
    assert_error(
        "sources: {consul: {address: \"http://c:8500\", wait: 20m}}\nservices: []\nlisteners: []\n",
        1,
        52,
        "sources.consul.wait",
        "out of range 1s..=10m",
    );
}

#[test]
fn kubernetes_discovery_loads_and_needs_its_fields() {
    let text = "sources:
  kubernetes: {kubeconfig: kube/config.yaml}
services:
  - name: web
    discovery:
      kubernetes: {namespace: shop, service: web, port: http}
listeners: []
";
    let config = parse("rules.yaml", text).expect("valid");
    assert_eq!(
        config
            .sources
            .kubernetes
            .expect("kubernetes")
            .kubeconfig
            .as_deref(),
        Some("kube/config.yaml")
    );
    assert_eq!(
        config.services["web"].discovery,
        [crate::model::Discovery::Kubernetes {
            namespace: "shop".into(),
            service: "web".into(),
            port: "http".into()
        }]
    );
    assert_error(
        "sources: {kubernetes: {}}\nservices:\n  - name: web\n    discovery: {kubernetes: {namespace: shop, service: web, port: \"\"}}\nlisteners: []\n",
        4,
        67,
        "services[0].discovery.kubernetes.port",
        "must not be empty",
    );
}
