//! Traffic policy mappings, end to end inside the crate: YAML rules →
//! `model` → compiled, encoded snapshot → decoded Envoy protos, compared
//! field by field with what the rules asked for.

use envoy_types::pb::envoy::config::cluster::v3::{circuit_breakers::Thresholds, cluster};
use envoy_types::pb::envoy::config::core::v3::{health_check, transport_socket, RoutingPriority};
use envoy_types::pb::envoy::config::route::v3::{
    redirect_action, route_action::hash_policy::PolicySpecifier, Route as EnvoyRoute,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    stdout_access_log::AccessLogFormat, StdoutAccessLog,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{fault_abort, HttpFault};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use envoy_types::pb::envoy::r#type::v3::Int64Range;
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::UInt32Value;

use super::*;

const POLICY: &str = include_str!("../../../../../examples/policy.yaml");

fn compiled() -> Snapshots {
    let config = crate::rules::parse("policy.yaml", POLICY).expect("example is valid");
    compile(&config).expect("compiles")
}

fn cluster_of(snaps: &Snapshots, name: &str) -> Cluster {
    decode(&snaps.fallback, TypeUrl::Cluster, name)
}

fn route_named<'a>(rc: &'a RouteConfiguration, name: &str) -> &'a EnvoyRoute {
    rc.virtual_hosts[0]
        .routes
        .iter()
        .find(|r| r.name == name)
        .expect("route exists")
}

fn action_of(r: &EnvoyRoute) -> &EnvoyRouteAction {
    match &r.action {
        Some(route::Action::Route(a)) => a,
        other => panic!("not a route action: {other:?}"),
    }
}

fn pb_ms(ms: i64) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: ms / 1000,
        nanos: i32::try_from((ms % 1000) * 1_000_000).expect("small"),
    })
}

#[test]
fn health_check_outlier_and_circuit_breakers_map_to_the_cluster() {
    let web = cluster_of(&compiled(), "web");
    let [hc] = web.health_checks.as_slice() else {
        panic!("one health check")
    };
    assert_eq!(hc.interval, pb_ms(2000));
    assert_eq!(hc.no_traffic_interval, pb_ms(2000), "no 60s default");
    assert_eq!(hc.timeout, pb_ms(500));
    assert_eq!(hc.healthy_threshold.map(|v| v.value), Some(2));
    assert_eq!(hc.unhealthy_threshold.map(|v| v.value), Some(3));
    let Some(health_check::HealthChecker::HttpHealthCheck(http)) = &hc.health_checker else {
        panic!("http health check")
    };
    assert_eq!(http.path, "/healthz");
    assert_eq!(
        http.expected_statuses,
        [
            Int64Range {
                start: 200,
                end: 201
            },
            Int64Range {
                start: 204,
                end: 300
            }
        ],
        "inclusive ranges become half-open"
    );
    let cfg = web.common_lb_config.as_ref().expect("common lb config");
    assert_eq!(
        cfg.healthy_panic_threshold.as_ref().map(|p| p.value),
        Some(50.0)
    );

    let od = web.outlier_detection.as_ref().expect("outlier detection");
    let v = |o: Option<UInt32Value>| o.map(|v| v.value);
    assert_eq!(v(od.consecutive_5xx), Some(5));
    assert_eq!(v(od.enforcing_consecutive_5xx), Some(100));
    assert_eq!(v(od.consecutive_gateway_failure), Some(3));
    assert_eq!(v(od.enforcing_consecutive_gateway_failure), Some(100));
    assert_eq!(v(od.failure_percentage_threshold), Some(85));
    assert_eq!(v(od.enforcing_failure_percentage), Some(100));
    assert_eq!(v(od.enforcing_success_rate), Some(0), "not asked for: off");
    assert_eq!(v(od.max_ejection_percent), Some(50));
    assert_eq!(od.base_ejection_time, pb_ms(30_000));
    assert_eq!(od.interval, pb_ms(5000));

    let cb = web.circuit_breakers.as_ref().expect("circuit breakers");
    let [t] = cb.thresholds.as_slice() else {
        panic!("one threshold")
    };
    let Thresholds {
        priority,
        max_connections,
        max_pending_requests,
        max_requests,
        max_retries,
        retry_budget,
        ..
    } = t;
    assert_eq!(*priority, RoutingPriority::Default as i32);
    assert_eq!(
        (
            v(*max_connections),
            v(*max_pending_requests),
            v(*max_requests)
        ),
        (Some(1000), Some(100), Some(1000))
    );
    assert_eq!(v(*max_retries), None);
    let budget = retry_budget.as_ref().expect("retry budget");
    assert_eq!(budget.budget_percent.as_ref().map(|p| p.value), Some(20.0));
    assert_eq!(v(budget.min_retry_concurrency), Some(3));

    // The subset-free service `sessions` only enforces success rate.
    let sessions = cluster_of(&compiled(), "sessions");
    let od = sessions.outlier_detection.expect("outlier detection");
    assert_eq!(v(od.enforcing_consecutive_5xx), Some(0));
    assert_eq!(v(od.enforcing_success_rate), Some(100));
    assert_eq!(v(od.success_rate_stdev_factor), Some(1900));
}

#[test]
fn balancing_options_map_to_lb_config_and_locality_weights() {
    let snaps = compiled();
    let web = cluster_of(&snaps, "web");
    assert_eq!(web.lb_policy, cluster::LbPolicy::LeastRequest as i32);
    let Some(cluster::LbConfig::LeastRequestLbConfig(lr)) = &web.lb_config else {
        panic!("least request config: {:?}", web.lb_config)
    };
    assert_eq!(lr.choice_count.map(|v| v.value), Some(3));
    assert_eq!(
        lr.active_request_bias.as_ref().map(|b| b.default_value),
        Some(1.5)
    );
    let ss = lr.slow_start_config.as_ref().expect("slow start");
    assert_eq!(ss.slow_start_window, pb_ms(30_000));
    assert_eq!(ss.aggression.as_ref().map(|a| a.default_value), Some(1.0));
    let locality = web
        .common_lb_config
        .as_ref()
        .and_then(|c| c.locality_config_specifier.as_ref());
    assert!(
        matches!(
            locality,
            Some(cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(_))
        ),
        "{locality:?}"
    );
    let cla: ClusterLoadAssignment = decode(&snaps.fallback, TypeUrl::Endpoint, "web");
    let weights: Vec<(u32, String, Option<u32>)> = cla
        .endpoints
        .iter()
        .map(|g| {
            let zone = g
                .locality
                .as_ref()
                .map(|l| l.zone.clone())
                .unwrap_or_default();
            (g.priority, zone, g.load_balancing_weight.map(|w| w.value))
        })
        .collect();
    assert_eq!(
        weights,
        [
            (0, "eu-1a".to_owned(), Some(80)),
            (0, "eu-1b".to_owned(), Some(20)),
            (1, String::new(), None),
        ],
        "listed localities weighted, the unlisted burst tier gets none"
    );

    let api = cluster_of(&snaps, "grpc-api");
    let zone = api
        .common_lb_config
        .and_then(|c| c.locality_config_specifier);
    let Some(cluster::common_lb_config::LocalityConfigSpecifier::ZoneAwareLbConfig(z)) = zone
    else {
        panic!("zone aware: {zone:?}")
    };
    assert_eq!(z.routing_enabled.map(|p| p.value), Some(80.0));
    assert_eq!(z.min_cluster_size.map(|v| v.value), Some(3));
}

#[test]
fn grpc_service_speaks_http2_over_tls() {
    let api = cluster_of(&compiled(), "grpc-api");
    let [(key, _)] = api
        .typed_extension_protocol_options
        .iter()
        .collect::<Vec<_>>()[..]
    else {
        panic!("exactly one protocol options entry")
    };
    assert_eq!(
        key,
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    );
    let ts = api.transport_socket.as_ref().expect("tls");
    assert_eq!(ts.name, "envoy.transport_sockets.tls");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        panic!("typed config")
    };
    let tls = UpstreamTlsContext::decode(any.value.as_slice()).expect("tls context");
    assert_eq!(tls.sni, "api.internal");
    let common = tls.common_tls_context.expect("common");
    assert_eq!(common.alpn_protocols, ["h2"]);
    let Some(health_check::HealthChecker::GrpcHealthCheck(g)) =
        &api.health_checks[0].health_checker
    else {
        panic!("grpc health check")
    };
    assert_eq!(g.service_name, "api.v1.Api");
}

#[test]
fn route_policies_map_to_route_fields() {
    let rc: RouteConfiguration = decode(&compiled().fallback, TypeUrl::Route, "http");

    let sticky = action_of(route_named(&rc, "sticky"));
    let kinds: Vec<String> = sticky
        .hash_policy
        .iter()
        .map(|h| match h.policy_specifier.as_ref().expect("specifier") {
            PolicySpecifier::Cookie(c) => {
                format!(
                    "cookie {} {:?} {}",
                    c.name,
                    c.ttl.map(|t| t.seconds),
                    c.path
                )
            }
            PolicySpecifier::Header(h) => format!("header {}", h.header_name),
            PolicySpecifier::QueryParameter(q) => format!("query {}", q.name),
            PolicySpecifier::ConnectionProperties(c) => format!("source_ip {}", c.source_ip),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "cookie sluice-session Some(3600) /",
            "header x-user",
            "query user",
            "source_ip true"
        ]
    );

    let chaos = route_named(&rc, "chaos");
    let [(filter, any)] = chaos.typed_per_filter_config.iter().collect::<Vec<_>>()[..] else {
        panic!("one per-filter config")
    };
    assert_eq!(filter, "envoy.filters.http.fault");
    let fault = HttpFault::decode(any.value.as_slice()).expect("fault");
    let delay = fault.delay.expect("delay");
    assert_eq!(delay.percentage.map(|p| p.numerator), Some(10));
    let abort = fault.abort.expect("abort");
    assert_eq!(abort.percentage.map(|p| p.numerator), Some(5));
    assert_eq!(
        abort.error_type,
        Some(fault_abort::ErrorType::HttpStatus(503))
    );

    let api = route_named(&rc, "api");
    assert_eq!(action_of(api).prefix_rewrite, "/v1/");
    assert_eq!(
        action_of(api).host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "api.internal".into()
        ))
    );
    let [(filter, _)] = api.typed_per_filter_config.iter().collect::<Vec<_>>()[..] else {
        panic!("one per-filter config")
    };
    assert_eq!(filter, "envoy.filters.http.cors");

    let default = route_named(&rc, "default");
    let a = action_of(default);
    let [mirror] = a.request_mirror_policies.as_slice() else {
        panic!("one mirror")
    };
    assert_eq!(mirror.cluster, "shadow");
    let fraction = mirror
        .runtime_fraction
        .as_ref()
        .and_then(|f| f.default_value);
    assert_eq!(fraction.map(|f| f.numerator), Some(10));
    let rr = a.regex_rewrite.as_ref().expect("regex rewrite");
    assert_eq!(rr.substitution, "/");
    let set: Vec<_> = default
        .request_headers_to_add
        .iter()
        .map(|h| {
            h.header
                .as_ref()
                .map(|h| (h.key.as_str(), h.value.as_str()))
        })
        .collect();
    assert_eq!(set, [Some(("x-from", "sluice"))]);
    assert_eq!(default.request_headers_to_remove, ["x-debug"]);
    assert_eq!(default.response_headers_to_remove, ["server"]);

    let ws = action_of(route_named(&rc, "ws"));
    assert_eq!(ws.upgrade_configs[0].upgrade_type, "websocket");

    let Some(route::Action::Redirect(redirect)) = &route_named(&rc, "old-docs").action else {
        panic!("redirect")
    };
    assert_eq!(redirect.host_redirect, "docs.example.com");
    assert_eq!(
        redirect.response_code,
        redirect_action::RedirectResponseCode::PermanentRedirect as i32
    );
    let Some(route::Action::DirectResponse(dr)) = &route_named(&rc, "ping").action else {
        panic!("direct response")
    };
    assert_eq!(dr.status, 200);
}

#[test]
fn listener_gets_filters_upgrades_and_an_ordered_json_access_log() {
    let snaps = compiled();
    let l: EnvoyListener = decode(&snaps.fallback, TypeUrl::Listener, "http");
    let hcm = hcm_of(&l);
    let filters: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.http.cors",
            "envoy.filters.http.fault",
            "envoy.filters.http.router"
        ]
    );
    assert_eq!(hcm.upgrade_configs[0].upgrade_type, "websocket");
    assert_eq!(hcm.upgrade_configs[0].enabled.map(|b| b.value), Some(false));
    let [log] = hcm.access_log.as_slice() else {
        panic!("one access log")
    };
    let Some(envoy_types::pb::envoy::config::accesslog::v3::access_log::ConfigType::TypedConfig(
        any,
    )) = &log.config_type
    else {
        panic!("typed config")
    };
    let stdout = StdoutAccessLog::decode(any.value.as_slice()).expect("merges");
    let Some(AccessLogFormat::LogFormat(fmt)) = stdout.access_log_format else {
        panic!("log format")
    };
    let Some(
        envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format::JsonFormat(s),
    ) = fmt.format
    else {
        panic!("json")
    };
    let fields: BTreeMap<&str, &str> = s
        .fields
        .iter()
        .map(|(k, v)| match &v.kind {
            Some(Kind::StringValue(s)) => (k.as_str(), s.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        fields,
        BTreeMap::from([
            ("flags", "%RESPONSE_FLAGS%"),
            ("ms", "%DURATION%"),
            ("route", "%ROUTE_NAME%"),
            ("upstream", "%UPSTREAM_HOST%"),
        ]),
        "every one-field encoding merged into one map"
    );
    // Same bytes on every compile (no HashMap order leaks into output).
    let again = compiled();
    assert_eq!(
        snaps
            .fallback
            .get(TypeUrl::Listener, "http")
            .map(|r| &r.body),
        again
            .fallback
            .get(TypeUrl::Listener, "http")
            .map(|r| &r.body)
    );

    let quiet: EnvoyListener = decode(&snaps.fallback, TypeUrl::Listener, "quiet");
    let hcm = hcm_of(&quiet);
    let filters: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(filters, ["envoy.filters.http.router"], "no unused filters");
    assert!(hcm.upgrade_configs.is_empty());
}
