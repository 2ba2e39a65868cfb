//! Route configuration: matchers, actions, timeouts, retries.

use super::*;

fn compile_routes(routes: Vec<Route>) -> RouteConfiguration {
    let services = vec![
        mk_service(
            "api",
            vec![],
            &[("v1", &[("version", "v1")]), ("v2", &[("version", "v2")])],
        ),
        mk_service("web", vec![], &[]),
    ];
    let config = mk_config(services, vec![mk_listener("http", 80, None, routes)]);
    let snaps = compile(&config).expect("compiles");
    decode(&snaps.fallback, TypeUrl::Route, "http")
}

#[test]
fn route_configuration_keeps_virtual_host_and_route_order() {
    let mut l = mk_listener(
        "http",
        80,
        None,
        vec![
            mk_route("z", PathMatch::Prefix("/z".into()), mk_to("web")),
            mk_route("a", PathMatch::Prefix("/".into()), mk_to("api")),
        ],
    );
    l.virtual_hosts.push(VirtualHost {
        name: "other".into(),
        domains: vec!["example.com".into(), "*.example.com".into()],
        routes: vec![mk_route("o", PathMatch::Prefix("/".into()), mk_to("web"))],
        filters: Default::default(),
    });
    let services = vec![
        mk_service("api", vec![], &[]),
        mk_service("web", vec![], &[]),
    ];
    let snaps = compile(&mk_config(services, vec![l])).expect("compiles");
    let rc: RouteConfiguration = decode(&snaps.fallback, TypeUrl::Route, "http");
    assert_eq!(rc.name, "http");
    let vhs: Vec<_> = rc
        .virtual_hosts
        .iter()
        .map(|vh| (vh.name.as_str(), vh.domains.clone()))
        .collect();
    assert_eq!(
        vhs,
        [
            ("default", vec!["*".to_owned()]),
            (
                "other",
                vec!["example.com".to_owned(), "*.example.com".to_owned()]
            ),
        ]
    );
    let route_names: Vec<_> = rc.virtual_hosts[0].routes.iter().map(|r| &r.name).collect();
    assert_eq!(route_names, ["z", "a"]);
}

#[test]
fn path_matchers_map_to_prefix_path_and_safe_regex() {
    let rc = compile_routes(vec![
        mk_route("p", PathMatch::Prefix("/api".into()), mk_to("api")),
        mk_route("e", PathMatch::Exact("/health".into()), mk_to("api")),
        mk_route("r", PathMatch::Regex(r"^/v[0-9]+/.*$".into()), mk_to("api")),
    ]);
    let paths: Vec<_> = rc.virtual_hosts[0]
        .routes
        .iter()
        .map(|r| r.r#match.as_ref().expect("match").path_specifier.clone())
        .collect();
    let Some(PathSpecifier::SafeRegex(re)) = &paths[2] else {
        panic!("not a regex: {:?}", paths[2]);
    };
    assert_eq!(re.regex, r"^/v[0-9]+/.*$");
    assert_eq!(re.engine_type, None, "google_re2 is Envoy's default");
    assert_eq!(paths[0], Some(PathSpecifier::Prefix("/api".into())));
    assert_eq!(paths[1], Some(PathSpecifier::Path("/health".into())));
}

#[test]
fn header_and_query_matchers() {
    let mut route = mk_route("h", PathMatch::Prefix("/".into()), mk_to("api"));
    let header = |name: &str, value, invert| HeaderMatch {
        name: name.into(),
        value,
        invert,
    };
    route.matcher.headers = vec![
        header("x-exact", ValueMatch::Exact("1".into()), false),
        header("x-prefix", ValueMatch::Prefix("ab".into()), false),
        header("x-regex", ValueMatch::Regex("^b.+$".into()), false),
        header("x-present", ValueMatch::Present, true),
    ];
    route.matcher.query = vec![
        QueryMatch {
            name: "debug".into(),
            value: ValueMatch::Present,
        },
        QueryMatch {
            name: "user".into(),
            value: ValueMatch::Regex("^[0-9]+$".into()),
        },
    ];
    let rc = compile_routes(vec![route]);
    let m = rc.virtual_hosts[0].routes[0]
        .r#match
        .clone()
        .expect("match");

    let headers: Vec<_> = m
        .headers
        .iter()
        .map(|h| {
            let spec = match h.header_match_specifier.clone().expect("specifier") {
                HeaderMatchSpecifier::StringMatch(sm) => match sm.match_pattern {
                    Some(MatchPattern::Exact(s)) => format!("exact:{s}"),
                    Some(MatchPattern::Prefix(s)) => format!("prefix:{s}"),
                    Some(MatchPattern::SafeRegex(re)) => format!("regex:{}", re.regex),
                    other => panic!("unexpected pattern {other:?}"),
                },
                HeaderMatchSpecifier::PresentMatch(p) => format!("present:{p}"),
                other => panic!("unexpected specifier {other:?}"),
            };
            (h.name.as_str(), spec, h.invert_match)
        })
        .collect();
    assert_eq!(
        headers,
        [
            ("x-exact", "exact:1".to_owned(), false),
            ("x-prefix", "prefix:ab".to_owned(), false),
            ("x-regex", "regex:^b.+$".to_owned(), false),
            ("x-present", "present:true".to_owned(), true),
        ]
    );

    assert_eq!(m.query_parameters[0].name, "debug");
    assert_eq!(
        m.query_parameters[0].query_parameter_match_specifier,
        Some(QueryParameterMatchSpecifier::PresentMatch(true))
    );
    assert_eq!(m.query_parameters[1].name, "user");
    let Some(QueryParameterMatchSpecifier::StringMatch(sm)) =
        &m.query_parameters[1].query_parameter_match_specifier
    else {
        panic!("not a string match");
    };
    let Some(MatchPattern::SafeRegex(re)) = &sm.match_pattern else {
        panic!("not a regex");
    };
    assert_eq!(re.regex, "^[0-9]+$");
}

#[test]
fn split_becomes_weighted_clusters_without_total_weight() {
    let split = RouteAction::Split(vec![
        WeightedBackend {
            backend: mk_backend("api", Some("v1")),
            weight: 90,
        },
        WeightedBackend {
            backend: mk_backend("api", Some("v2")),
            weight: 10,
        },
        WeightedBackend {
            backend: mk_backend("web", None),
            weight: 0,
        },
    ]);
    let rc = compile_routes(vec![mk_route(
        "canary",
        PathMatch::Prefix("/".into()),
        split,
    )]);
    let action = first_route_action(&rc, 0);
    let Some(route_action::ClusterSpecifier::WeightedClusters(wc)) = &action.cluster_specifier
    else {
        panic!("not weighted: {:?}", action.cluster_specifier);
    };
    let weights: Vec<_> = wc
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().map(|w| w.value)))
        .collect();
    assert_eq!(
        weights,
        [("api~v1", Some(90)), ("api~v2", Some(10)), ("web", Some(0))]
    );
    #[allow(deprecated)] // Deprecated in Envoy; asserting it stays unset.
    let total_weight = &wc.total_weight;
    assert_eq!(*total_weight, None);
}

#[test]
fn single_backend_is_a_cluster_action() {
    let rc = compile_routes(vec![
        mk_route("svc", PathMatch::Prefix("/a".into()), mk_to("api")),
        mk_route(
            "sub",
            PathMatch::Prefix("/b".into()),
            RouteAction::Backend(mk_backend("api", Some("v2"))),
        ),
    ]);
    assert_eq!(
        first_route_action(&rc, 0).cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster("api".into()))
    );
    assert_eq!(
        first_route_action(&rc, 1).cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster("api~v2".into()))
    );
}

#[test]
fn timeouts_and_retries() {
    let mut with_retry = mk_route("retry", PathMatch::Prefix("/r".into()), mk_to("api"));
    with_retry.timeout = Some(Duration::from_millis(1500));
    with_retry.retry = Some(RetryPolicy {
        on: vec!["5xx".into(), "connect-failure".into()],
        attempts: 3,
        per_try_timeout: Some(Duration::from_millis(200)),
    });
    let mut disabled = mk_route("stream", PathMatch::Prefix("/s".into()), mk_to("api"));
    disabled.timeout = Some(Duration::ZERO);
    disabled.retry = Some(RetryPolicy {
        on: vec!["reset".into()],
        attempts: 1,
        per_try_timeout: None,
    });
    let default = mk_route("default", PathMatch::Prefix("/".into()), mk_to("api"));
    let rc = compile_routes(vec![with_retry, disabled, default]);

    let a = first_route_action(&rc, 0);
    assert_eq!(
        a.timeout,
        Some(PbDuration {
            seconds: 1,
            nanos: 500_000_000
        })
    );
    let retry = a.retry_policy.as_ref().expect("retry");
    assert_eq!(retry.retry_on, "5xx,connect-failure");
    assert_eq!(retry.num_retries.as_ref().map(|n| n.value), Some(3));
    assert_eq!(
        retry.per_try_timeout,
        Some(PbDuration {
            seconds: 0,
            nanos: 200_000_000
        })
    );

    let b = first_route_action(&rc, 1);
    assert_eq!(b.timeout, Some(PbDuration::default()), "0 disables");
    let retry = b.retry_policy.as_ref().expect("retry");
    assert_eq!(retry.retry_on, "reset");
    assert_eq!(retry.per_try_timeout, None);

    let c = first_route_action(&rc, 2);
    assert_eq!(c.timeout, None, "unset keeps Envoy's default");
    assert_eq!(c.retry_policy, None);
}
