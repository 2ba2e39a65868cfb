//! Route selection: Envoy's domain precedence, first-match routes, matchers,
//! weighted-cluster arithmetic.

use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, query_parameter_matcher::QueryParameterMatchSpecifier,
    route, route_action, route_match::PathSpecifier, weighted_cluster::ClusterWeight,
    HeaderMatcher, QueryParameterMatcher, RouteAction, WeightedCluster,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, RegexMatcher, StringMatcher,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::*;
use crate::decode::DecodeError;
use crate::http::Request;
use crate::route::{Action, NoRoute};

fn prefix(p: &str) -> PathSpecifier {
    PathSpecifier::Prefix(p.into())
}

fn cluster_of(t: &RouteTable, req: &Request) -> Result<String, NoRoute> {
    let r = t.route(req)?;
    match &r.action {
        Action::Forward(f) => Ok(f.pick_cluster(0, &|_| None).to_string()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn domains_follow_envoy_precedence() {
    let vh = |name: &str, domains: &[&str]| {
        mk_vhost(name, domains, vec![mk_route_to("r", prefix("/"), name)])
    };
    let t = mk_table(vec![
        vh("any", &["*"]),
        vh("short", &["*.com"]),
        vh("long", &["*.example.com"]),
        vh("prefix", &["api.*"]),
        vh("exact", &["www.example.com"]),
    ]);
    let name = |host: &str| t.virtual_host(host).map(|v| v.name.clone());
    assert_eq!(name("www.example.com").as_deref(), Some("exact"));
    assert_eq!(name("WWW.Example.COM").as_deref(), Some("exact"));
    assert_eq!(name("a.example.com").as_deref(), Some("long"));
    assert_eq!(name("x.com").as_deref(), Some("short"));
    // Suffix wildcards win over prefix wildcards.
    assert_eq!(name("api.example.com").as_deref(), Some("long"));
    assert_eq!(name("api.io").as_deref(), Some("prefix"));
    // A wildcard stands for at least one character.
    assert_eq!(name(".example.com").as_deref(), Some("short"));
    assert_eq!(name("other").as_deref(), Some("any"));
}

#[test]
fn no_virtual_host_and_no_route_are_distinguished() {
    let t = mk_table(vec![mk_vhost(
        "a",
        &["a"],
        vec![mk_route_to("r", prefix("/x"), "c")],
    )]);
    assert_eq!(
        cluster_of(&t, &Request::get("b", "/x")),
        Err(NoRoute::NoVirtualHost)
    );
    assert_eq!(
        cluster_of(&t, &Request::get("a", "/y")),
        Err(NoRoute::NoRouteMatch)
    );
}

#[test]
fn first_matching_route_wins_and_paths_ignore_the_query() {
    let re = PathSpecifier::SafeRegex(RegexMatcher {
        regex: "/users/[0-9]+".into(),
        engine_type: None,
    });
    let t = mk_table(vec![mk_vhost(
        "v",
        &["*"],
        vec![
            mk_route_to("exact", PathSpecifier::Path("/exact".into()), "exact"),
            mk_route_to("regex", re, "regex"),
            mk_route_to("api", prefix("/api"), "api"),
            mk_route_to("all", prefix("/"), "all"),
        ],
    )]);
    let c = |p: &str| cluster_of(&t, &Request::get("h", p)).expect("route");
    assert_eq!(c("/exact"), "exact");
    assert_eq!(c("/exact?q=1"), "exact");
    assert_eq!(c("/exact/more"), "all");
    assert_eq!(c("/users/42"), "regex");
    assert_eq!(c("/users/42?x"), "regex");
    // safe_regex must match the whole path.
    assert_eq!(c("/users/42/x"), "all");
    assert_eq!(c("/apiary"), "api");
    assert_eq!(c("/API"), "all");
}

#[test]
fn prefixes_match_the_path_without_the_query() {
    // Envoy matches a prefix against `:path` with the query string and any
    // fragment removed: a prefix holding `?` or `#` never matches.
    let t = mk_table(vec![mk_vhost(
        "v",
        &["*"],
        vec![
            mk_route_to("query", prefix("/a?x"), "query"),
            mk_route_to("fragment", prefix("/b#top"), "fragment"),
            mk_route_to("api", prefix("/api/"), "api"),
            mk_route_to("a", prefix("/a"), "a"),
            mk_route_to("all", prefix("/"), "all"),
        ],
    )]);
    let c = |p: &str| cluster_of(&t, &Request::get("h", p)).expect("route");
    assert_eq!(c("/a?x=1"), "a");
    assert_eq!(c("/a?x"), "a");
    assert_eq!(c("/b#top"), "all");
    assert_eq!(c("/api?/v1"), "a");
    assert_eq!(c("/api/?q"), "api");
}

fn with_headers(
    mut r: envoy_types::pb::envoy::config::route::v3::Route,
    headers: Vec<HeaderMatcher>,
) -> envoy_types::pb::envoy::config::route::v3::Route {
    if let Some(m) = r.r#match.as_mut() {
        m.headers = headers;
    }
    r
}

fn hm(name: &str, spec: HeaderMatchSpecifier, invert: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(spec),
        invert_match: invert,
        ..Default::default()
    }
}

fn sm(p: MatchPattern) -> HeaderMatchSpecifier {
    HeaderMatchSpecifier::StringMatch(StringMatcher {
        match_pattern: Some(p),
        ignore_case: false,
    })
}

#[test]
fn header_matchers_including_invert_and_absent_headers() {
    let t = mk_table(vec![mk_vhost(
        "v",
        &["*"],
        vec![
            with_headers(
                mk_route_to("canary", prefix("/"), "canary"),
                vec![hm("x-canary", sm(MatchPattern::Exact("1".into())), false)],
            ),
            with_headers(
                mk_route_to("re", prefix("/"), "re"),
                vec![hm(
                    "x-user",
                    sm(MatchPattern::SafeRegex(RegexMatcher {
                        regex: "a.*z".into(),
                        engine_type: None,
                    })),
                    false,
                )],
            ),
            with_headers(
                mk_route_to("nodebug", prefix("/"), "nodebug"),
                vec![hm(
                    "x-debug",
                    HeaderMatchSpecifier::PresentMatch(true),
                    true,
                )],
            ),
            mk_route_to("rest", prefix("/"), "rest"),
        ],
    )]);
    let c = |r: Request| cluster_of(&t, &r).expect("route");
    assert_eq!(c(Request::get("h", "/").header("X-Canary", "1")), "canary");
    assert_eq!(
        c(Request::get("h", "/")
            .header("x-canary", "2")
            .header("x-user", "abcz")),
        "re"
    );
    // Regex matches the whole value.
    assert_eq!(
        c(Request::get("h", "/")
            .header("x-user", "abczz1")
            .header("x-debug", "1")),
        "rest"
    );
    // Inverted present match: an absent header matches.
    assert_eq!(c(Request::get("h", "/")), "nodebug");
    assert_eq!(c(Request::get("h", "/").header("x-debug", "")), "rest");
}

#[test]
fn query_parameters_use_the_first_value() {
    let mut r = mk_route_to("q", prefix("/"), "debug");
    if let Some(m) = r.r#match.as_mut() {
        m.query_parameters = vec![
            QueryParameterMatcher {
                name: "mode".into(),
                query_parameter_match_specifier: Some(QueryParameterMatchSpecifier::StringMatch(
                    StringMatcher {
                        match_pattern: Some(MatchPattern::Exact("debug".into())),
                        ignore_case: false,
                    },
                )),
            },
            QueryParameterMatcher {
                name: "trace".into(),
                query_parameter_match_specifier: Some(QueryParameterMatchSpecifier::PresentMatch(
                    true,
                )),
            },
        ];
    }
    let t = mk_table(vec![mk_vhost(
        "v",
        &["*"],
        vec![r, mk_route_to("rest", prefix("/"), "rest")],
    )]);
    let c = |p: &str| cluster_of(&t, &Request::get("h", p)).expect("route");
    assert_eq!(c("/?mode=debug&trace"), "debug");
    assert_eq!(c("/?trace=1&mode=debug&mode=x"), "debug");
    assert_eq!(c("/?mode=x&mode=debug&trace"), "rest");
    assert_eq!(c("/?mode=debug"), "rest");
}

fn weighted(clusters: &[(&str, u32)]) -> envoy_types::pb::envoy::config::route::v3::Route {
    let mut r = mk_route_to("w", prefix("/"), "unused");
    r.action = Some(route::Action::Route(RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters: clusters
                    .iter()
                    .map(|(n, w)| ClusterWeight {
                        name: n.to_string(),
                        weight: Some(UInt32Value { value: *w }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }));
    r
}

#[test]
fn weighted_clusters_use_random_mod_total_over_cumulative_weights() {
    let t = mk_table(vec![mk_vhost(
        "v",
        &["*"],
        vec![weighted(&[("a", 80), ("b", 0), ("c", 20)])],
    )]);
    let route = t.route(&Request::get("h", "/")).expect("route");
    let Action::Forward(f) = &route.action else {
        panic!()
    };
    let picks: Vec<&str> = [0u64, 79, 80, 99, 100, 179, 180]
        .iter()
        .map(|r| f.pick_cluster(*r, &|_| None))
        .collect();
    assert_eq!(picks, ["a", "a", "c", "c", "a", "a", "c"]);
}

#[test]
fn envoy_rejections_are_decode_errors() {
    let zero = mk_route_config(
        "rc",
        vec![mk_vhost("v", &["*"], vec![weighted(&[("a", 0)])])],
    );
    assert!(matches!(
        RouteTable::compile(&zero),
        Err(DecodeError::Invalid(_))
    ));
    let dup = mk_route_config(
        "rc",
        vec![
            mk_vhost("a", &["x.com"], vec![]),
            mk_vhost("b", &["X.com"], vec![]),
        ],
    );
    assert!(
        matches!(RouteTable::compile(&dup), Err(DecodeError::Invalid(e)) if e.contains("x.com"))
    );
    let bad_re = PathSpecifier::SafeRegex(RegexMatcher {
        regex: "(".into(),
        engine_type: None,
    });
    let re = mk_route_config(
        "rc",
        vec![mk_vhost("v", &["*"], vec![mk_route_to("r", bad_re, "c")])],
    );
    assert!(matches!(
        RouteTable::compile(&re),
        Err(DecodeError::Invalid(_))
    ));
}

#[test]
fn runtime_weights_override_the_configured_ones_and_the_total_follows() {
    let mut route = weighted(&[("stable", 100), ("canary", 0)]);
    if let Some(route::Action::Route(ra)) = &mut route.action {
        if let Some(route_action::ClusterSpecifier::WeightedClusters(wc)) =
            &mut ra.cluster_specifier
        {
            wc.runtime_key_prefix = "rollout.web".into();
        }
    }
    let t = mk_table(vec![mk_vhost("v", &["*"], vec![route])]);
    let route = t.route(&Request::get("h", "/")).expect("route");
    let Action::Forward(f) = &route.action else {
        panic!()
    };
    let picks = |runtime: &dyn Fn(&str) -> Option<u64>| -> Vec<String> {
        [0u64, 2, 3, 4, 9]
            .iter()
            .map(|r| f.pick_cluster(*r, runtime).to_string())
            .collect()
    };
    // No keys: the configured weights.
    assert_eq!(picks(&|_| None), ["stable"; 5]);
    // stable 3, canary 2: total 5, so 0..3 stable and 3..5 canary.
    let layer = |k: &str| match k {
        "rollout.web.stable" => Some(3),
        "rollout.web.canary" => Some(2),
        _ => None,
    };
    assert_eq!(
        picks(&layer),
        ["stable", "stable", "canary", "canary", "canary"]
    );
    // One key only: the other keeps its configured weight (100).
    let canary_only = |k: &str| (k == "rollout.web.canary").then_some(100);
    assert_eq!(picks(&canary_only)[..2], ["stable", "stable"]);
    assert_eq!(f.pick_cluster(150, &canary_only), "canary");
    // Every weight zero: Envoy picks no cluster.
    assert_eq!(f.pick_cluster(0, &|_| Some(0)), "");
}

#[test]
fn runtime_layers_decode_as_envoy_reads_integers() {
    use crate::resources::{decode, Decoded};
    use envoy_types::pb::envoy::service::runtime::v3::Runtime;
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    use prost::Message;
    use sluice_core::xds::TypeUrl;
    let v = |k: Kind| Value { kind: Some(k) };
    let nested = Struct {
        fields: [("b".to_string(), v(Kind::NumberValue(7.0)))].into(),
    };
    let layer = |fields: Vec<(&str, Value)>| Runtime {
        name: "sluice".into(),
        layer: Some(Struct {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }),
    };
    let ok = layer(vec![
        ("whole", v(Kind::NumberValue(40.0))),
        ("fraction", v(Kind::NumberValue(0.5))),
        ("negative", v(Kind::NumberValue(-1.0))),
        ("text", v(Kind::StringValue("12".into()))),
        ("flag", v(Kind::BoolValue(true))),
        ("a", v(Kind::StructValue(nested))),
    ]);
    let Ok(Decoded::Runtime(rt)) = decode(TypeUrl::Runtime, &ok.encode_to_vec()) else {
        panic!("not decoded");
    };
    let got: Vec<(&str, u64)> = rt.integers.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(got, [("a.b", 7), ("text", 12), ("whole", 40)]);
    let bad = layer(vec![("l", v(Kind::NullValue(0)))]);
    assert!(matches!(
        decode(TypeUrl::Runtime, &bad.encode_to_vec()),
        Err(DecodeError::Invalid(e)) if e.contains("l")
    ));
}
