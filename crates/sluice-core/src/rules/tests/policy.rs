//! Traffic policy in rules files: what valid policy loads into, and one
//! test per kind of error with its exact position, path and message.

use std::time::Duration;

use super::*;
use crate::model::{HashPolicy, HealthCheckKind, LocalityLb, RouteAction, UpstreamProtocol};

/// A file with one service `web` whose body continues with `extra`
/// (starting on line 4), and a listener routing `/` to it.
pub(super) fn mk_service_file(lb: &str, extra: &str) -> String {
    format!(
        "services:
  - name: web
    lb_policy: {lb}
{extra}    endpoints:
      - {{address: 127.0.0.1, port: 8081}}
listeners:
  - name: http
    port: 10000
    virtual_hosts:
      - name: web
        domains: [\"*\"]
        routes:
          - to: {{service: web}}
"
    )
}

#[test]
fn service_policy_loads_with_defaults() {
    let yaml = mk_service_file(
        "least_request",
        "    health_check: {type: http, path: /healthz}
    least_request: {active_request_bias: \"0.5\"}
    locality_weights: [{zone: a, weight: 3}]
    protocol: http2
",
    );
    let config = parse("rules.yaml", &yaml).expect("valid");
    let p = &config.services["web"].policy;
    let hc = p.health_check.as_ref().expect("health check");
    assert_eq!(
        hc.kind,
        HealthCheckKind::Http {
            path: "/healthz".into(),
            expected_statuses: vec![(200, 200)]
        }
    );
    assert_eq!(
        (
            hc.interval,
            hc.timeout,
            hc.healthy_threshold,
            hc.unhealthy_threshold
        ),
        (Duration::from_secs(5), Duration::from_secs(1), 1, 3)
    );
    let lr = p.least_request.as_ref().expect("least request");
    assert_eq!(
        (lr.choice_count, lr.active_request_bias_milli),
        (2, Some(500))
    );
    let Some(LocalityLb::Weighted(w)) = p.locality_lb.as_deref() else {
        panic!("weighted")
    };
    assert_eq!((w[0].locality.zone.as_str(), w[0].weight), ("a", 3));
    assert_eq!(p.protocol, UpstreamProtocol::Http2);
}

#[test]
fn route_policy_loads() {
    let config = parse(
        "rules.yaml",
        &mk_route(
            "          - to: {service: web}
            mirror: {service: web, subset: stable}
            hash: [{header: x-user}]
            websocket: true
",
        ),
    );
    // `web` balances round robin: a hash policy is refused (see below), so
    // this file checks mirror and websocket on a file without `hash`.
    assert!(config.is_err());
    let config = parse(
        "rules.yaml",
        &mk_route(
            "          - to: {service: web}
            mirror: {service: web, subset: stable}
            websocket: true
",
        ),
    )
    .expect("valid");
    let route = &config.listeners[0].virtual_hosts[0].routes[0];
    let mirror = route.policy.mirror.as_ref().expect("mirror");
    assert_eq!(mirror.backend, backend("web", Some("stable")));
    assert_eq!(mirror.percent, 100);
    assert!(route.policy.websocket);
}

#[test]
fn hash_policy_needs_a_consistent_hash_service() {
    assert_error(
        &mk_route(
            "          - to: {service: web}
            hash: [{header: x-user}]
",
        ),
        15,
        19,
        "listeners[0].virtual_hosts[0].routes[0].hash",
        "hash policies need a service balanced by `ring_hash` or `maglev`, but service `web` uses round_robin",
    );
    let yaml = mk_service_file("ring_hash", "").replace(
        "          - to: {service: web}\n",
        "          - to: {service: web}
            hash:
              - {cookie: {name: s, ttl: 1h}}
              - {header: x-a, query: a}
",
    );
    assert_error(
        &yaml,
        16,
        38,
        "listeners[0].virtual_hosts[0].routes[0].hash[1]",
        "exactly one of `header`, `cookie`, `source_ip`, `query`",
    );
    let config = parse("rules.yaml", &yaml.replace(", query: a", "")).expect("valid");
    let route = &config.listeners[0].virtual_hosts[0].routes[0];
    assert_eq!(
        route.policy.hash[0],
        HashPolicy::Cookie {
            name: "s".into(),
            ttl: Some(Duration::from_secs(3600)),
            path: None
        }
    );
}

#[test]
fn balancing_options_must_fit_the_lb_policy() {
    assert_error(
        &mk_service_file("round_robin", "    least_request: {choice_count: 3}\n"),
        4,
        20,
        "services[0].least_request",
        "`least_request` options need `lb_policy: least_request`",
    );
    assert_error(
        &mk_service_file("maglev", "    slow_start: {window: 10s}\n"),
        4,
        17,
        "services[0].slow_start",
        "slow_start works only with",
    );
    assert_error(
        &mk_service_file(
            "round_robin",
            "    locality_weights: [{zone: a, weight: 1}]\n    zone_aware: {}\n",
        ),
        5,
        17,
        "services[0].zone_aware",
        "give either `locality_weights` (line 4) or `zone_aware`",
    );
}

#[test]
fn resilience_values_are_range_checked() {
    assert_error(
        &mk_service_file("round_robin", "    panic_threshold: 101\n"),
        4,
        22,
        "services[0].panic_threshold",
        "expected an integer from 0 to 100, found `101`",
    );
    assert_error(
        &mk_service_file(
            "round_robin",
            "    health_check: {type: http, path: /h, expected_statuses: [\"300-200\"]}\n",
        ),
        4,
        62,
        "services[0].health_check.expected_statuses[0]",
        "invalid status `300-200`",
    );
    assert_error(
        &mk_service_file(
            "round_robin",
            "    health_check: {type: tcp, interval: 0s}\n",
        ),
        4,
        41,
        "services[0].health_check.interval",
        "must be greater than 0",
    );
    assert_error(
        &mk_service_file("round_robin", "    health_check: {type: grpc}\n"),
        4,
        26,
        "services[0].health_check.type",
        "a grpc health check needs `protocol: grpc`",
    );
    assert_error(
        &mk_service_file("round_robin", "    outlier_detection: {interval: 1s}\n"),
        4,
        24,
        "services[0].outlier_detection",
        "needs at least one of `consecutive_5xx`",
    );
    assert_error(
        &mk_service_file(
            "round_robin",
            "    circuit_breakers: {max_retries: 3, retry_budget: {percent: 20}}\n",
        ),
        4,
        54,
        "services[0].circuit_breakers.retry_budget",
        "give either `max_retries` or `retry_budget`",
    );
    assert_error(
        &mk_service_file("round_robin", "    protocol: http3\n"),
        4,
        15,
        "services[0].protocol",
        "unknown protocol `http3`",
    );
}

#[test]
fn route_shaping_errors_are_located() {
    assert_error(
        &mk_route(
            "          - to: {service: web}
            fault: {abort: {status: 503, percent: 101}}
",
        ),
        15,
        51,
        "listeners[0].virtual_hosts[0].routes[0].fault.abort.percent",
        "expected an integer from 0 to 100, found `101`",
    );
    assert_error(
        &mk_route(
            "          - to: {service: web}
            redirect: {https: true}
",
        ),
        15,
        23,
        "listeners[0].virtual_hosts[0].routes[0].redirect",
        "a route takes one of `to`, `split`, `redirect` or `direct_response`",
    );
    assert_error(
        &mk_route(
            "          - direct_response: {status: 200}
            retry: {on: [5xx]}
",
        ),
        15,
        20,
        "listeners[0].virtual_hosts[0].routes[0].retry",
        "`retry` needs a route to a service",
    );
    assert_error(
        &mk_route(
            "          - to: {service: web}
            request_headers: {set: {host: x}}
",
        ),
        15,
        37,
        "listeners[0].virtual_hosts[0].routes[0].request_headers.set.host",
        "use `rewrite: {host: ...}`",
    );
    assert_error(
        &mk_route(
            "          - match: {regex: \"/a.*\"}
            to: {service: web}
            rewrite: {prefix: /b}
",
        ),
        16,
        31,
        "listeners[0].virtual_hosts[0].routes[0].rewrite.prefix",
        "rewrite.prefix needs a `prefix` or `path` match",
    );
    assert_error(
        &mk_route(
            "          - redirect: {code: 304, https: true}
",
        ),
        14,
        30,
        "listeners[0].virtual_hosts[0].routes[0].redirect.code",
        "valid codes are 301, 302, 303, 307, 308",
    );
    let config = parse(
        "rules.yaml",
        &mk_route("          - direct_response: {status: 418, body: teapot}\n"),
    )
    .expect("valid");
    assert!(matches!(
        &config.listeners[0].virtual_hosts[0].routes[0].action,
        RouteAction::DirectResponse(d) if d.status == 418
    ));
}

#[test]
fn access_log_errors_are_located() {
    let with_log = |log: &str| {
        mk_vhost("        domains: [\"*\"]\n        routes:\n          - to: {service: web}\n")
            .replace(
                "    port: 10000\n",
                &format!("    port: 10000\n    access_log: {log}\n"),
            )
    };
    assert_error(
        &with_log("{format: yaml}"),
        10,
        26,
        "listeners[0].access_log.format",
        "unknown access log format `yaml`",
    );
    assert_error(
        &with_log("{format: text}"),
        10,
        17,
        "listeners[0].access_log",
        "`format: text` needs a `text` format string",
    );
    assert_error(
        &with_log("{format: off, text: x}"),
        10,
        37,
        "listeners[0].access_log.text",
        "has no effect with `format: off`",
    );
}
