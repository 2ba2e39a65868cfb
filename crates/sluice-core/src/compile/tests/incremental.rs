//! A compiler that reuses its last snapshots for endpoint and route
//! changes (`compile::incremental`) must give exactly what a compile from
//! scratch gives, through any sequence of endpoint, route, canary weight
//! and other rules changes.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;

const SERVICES: [&str; 4] = ["a", "b", "c", "d"];

/// One change to the config, as discovery, a drain or a rules edit makes
/// it.
#[derive(Clone, Debug)]
enum Step {
    /// Endpoint `i` of service `s` moves: new port, weight and version.
    Move {
        s: usize,
        i: usize,
        port: u16,
        weight: u32,
        v2: bool,
    },
    /// Endpoint `i` of service `s` changes health (a drain, a registry).
    Health {
        s: usize,
        i: usize,
        h: usize,
    },
    Add {
        s: usize,
        octet: u8,
    },
    Remove {
        s: usize,
        i: usize,
    },
    /// A rules edit: listener `l`'s first route goes to service `s`.
    Reroute {
        l: usize,
        s: usize,
    },
    /// A rules edit that changes clusters only.
    Timeout {
        s: usize,
        ms: u64,
    },
    /// A canary step, as the rollout overlay writes it: listener `l`'s
    /// route `r` sends `w` % to its service's `v2` subset (when the
    /// service has one).
    Weight {
        l: usize,
        w: u32,
    },
    /// A canary step as the overlay writes it with runtime weights:
    /// listener `l`'s route reads its weights from runtime keys, which
    /// send `w` % to the `v2` subset.
    RuntimeWeight {
        l: usize,
        w: u32,
    },
    /// The overlay's header route before route `r` of listener `l` comes
    /// or goes (a rollout with a header starts or ends).
    Header {
        l: usize,
    },
    /// A rules edit of route `r`'s timeout: route configuration only.
    RouteTimeout {
        l: usize,
        ms: u64,
    },
    /// A route edit that changes the listener too (its upgrade configs).
    Websocket {
        l: usize,
    },
    /// A rules edit adding a route to service `s` before listener `l`'s
    /// route at `at` (modulo their number, plus one): the routes before
    /// and after it are compiled ones.
    InsertRoute {
        l: usize,
        at: usize,
        s: usize,
        n: u8,
    },
    /// A rules edit removing listener `l`'s route at `at` (modulo their
    /// number), unless it is route `r`.
    DropRoute {
        l: usize,
        at: usize,
    },
    /// A rules edit of the timeout of listener `l`'s route at `at`.
    EditRoute {
        l: usize,
        at: usize,
        ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let s = 0..SERVICES.len();
    prop_oneof![
        4 => (s.clone(), 0..4usize, 1u16..4, 1u32..4, any::<bool>())
            .prop_map(|(s, i, port, weight, v2)| Step::Move { s, i, port, weight, v2 }),
        2 => (s.clone(), 0..4usize, 0..5usize).prop_map(|(s, i, h)| Step::Health { s, i, h }),
        1 => (s.clone(), any::<u8>()).prop_map(|(s, octet)| Step::Add { s, octet }),
        1 => (s.clone(), 0..4usize).prop_map(|(s, i)| Step::Remove { s, i }),
        1 => (0..3usize, s.clone()).prop_map(|(l, s)| Step::Reroute { l, s }),
        1 => (s.clone(), 1u64..4).prop_map(|(s, ms)| Step::Timeout { s, ms: ms * 100 }),
        3 => (0..3usize, 0..=20u32).prop_map(|(l, w)| Step::Weight { l, w: w * 5 }),
        2 => (0..3usize, 0..=20u32).prop_map(|(l, w)| Step::RuntimeWeight { l, w: w * 5 }),
        1 => (0..3usize).prop_map(|l| Step::Header { l }),
        1 => (0..3usize, 1u64..4).prop_map(|(l, ms)| Step::RouteTimeout { l, ms: ms * 100 }),
        1 => (0..3usize).prop_map(|l| Step::Websocket { l }),
        2 => (0..3usize, 0..8usize, s, any::<u8>())
            .prop_map(|(l, at, s, n)| Step::InsertRoute { l, at, s, n }),
        1 => (0..3usize, 0..8usize).prop_map(|(l, at)| Step::DropRoute { l, at }),
        2 => (0..3usize, 0..8usize, 1u64..4)
            .prop_map(|(l, at, ms)| Step::EditRoute { l, at, ms: ms * 100 }),
    ]
}

/// Four services (two with a `v2` subset) behind three listeners: one of
/// group `g1`, one of `g2`, one for every group.
fn base() -> Config {
    let services = SERVICES
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let eps = (0..3u8)
                .map(|i| mk_endpoint(10 * n as u8 + i, 8080, &[("version", "v1")], 1))
                .collect();
            let subsets: &[Selector<'_>] = if n % 2 == 0 {
                &[("v2", &[("version", "v2")])]
            } else {
                &[]
            };
            mk_service(name, eps, subsets)
        })
        .collect();
    let route = |to: &str| vec![mk_route("r", PathMatch::Prefix("/".into()), mk_to(to))];
    let listeners = vec![
        mk_listener("edge", 10000, Some(&["g1"]), route("a")),
        mk_listener("side", 10001, Some(&["g2"]), route("b")),
        mk_listener("mesh", 10002, None, route("c")),
    ];
    mk_config(services, listeners)
}

fn service(config: &mut Config, s: usize) -> &mut Service {
    config.service_mut(SERVICES[s]).expect("fixture service")
}

/// Service `s`'s endpoints, to edit (copied if shared, as the publisher's
/// resolve and drains do).
fn endpoints(config: &mut Config, s: usize) -> &mut Vec<Endpoint> {
    Arc::make_mut(&mut service(config, s).endpoints)
}

const HEADER_ROUTE: &str = "r~canary-header";

/// Listener `l`'s route `r` (the fixture's only one, after the header
/// route when there is one).
fn route_r(config: &mut Config, l: usize) -> &mut Route {
    config.listeners_mut()[l].virtual_hosts[0]
        .routes
        .iter_mut()
        .find(|r| r.name == "r")
        .expect("fixture route")
}

/// The service a route sends to (the fixture's routes name one).
fn service_of(route: &Route) -> String {
    route.action.backends()[0].service.clone()
}

/// To `service`'s `v2` subset when it has one, else to the service.
fn to_v2(config: &Config, service: &str) -> Backend {
    let subset = config.services[service]
        .subsets
        .contains_key("v2")
        .then(|| "v2".to_owned());
    Backend {
        service: service.to_owned(),
        subset,
    }
}

fn apply(config: &mut Config, step: &Step) {
    match *step {
        Step::Move {
            s,
            i,
            port,
            weight,
            v2,
        } => {
            if let Some(ep) = endpoints(config, s).get_mut(i) {
                ep.port = 9000 + port;
                ep.weight = weight;
                let version = if v2 { "v2" } else { "v1" };
                ep.labels.insert("version".into(), version.into());
            }
        }
        Step::Health { s, i, h } => {
            if let Some(ep) = endpoints(config, s).get_mut(i) {
                ep.health = [
                    Health::Healthy,
                    Health::Degraded,
                    Health::Unknown,
                    Health::Draining,
                    Health::Unhealthy,
                ][h];
            }
        }
        Step::Add { s, octet } => {
            let ep = mk_endpoint(octet, 8080, &[], 2);
            endpoints(config, s).push(ep);
        }
        Step::Remove { s, i } => {
            let eps = endpoints(config, s);
            if i < eps.len() {
                eps.remove(i);
            }
        }
        Step::Reroute { l, s } => {
            config.listeners_mut()[l].virtual_hosts[0].routes[0].action = mk_to(SERVICES[s]);
        }
        Step::Timeout { s, ms } => {
            service(config, s).connect_timeout = Duration::from_millis(ms);
        }
        Step::Weight { l, w } => {
            let name = service_of(route_r(config, l));
            let canary = to_v2(config, &name);
            if canary.subset.is_some() {
                let stable = mk_backend(&name, None);
                route_r(config, l).action = match w {
                    0 => RouteAction::Backend(stable),
                    100 => RouteAction::Backend(canary),
                    w => RouteAction::Split(vec![
                        WeightedBackend {
                            backend: stable,
                            weight: 100 - w,
                        },
                        WeightedBackend {
                            backend: canary,
                            weight: w,
                        },
                    ]),
                };
            }
        }
        Step::RuntimeWeight { l, w } => {
            let name = service_of(route_r(config, l));
            let canary = to_v2(config, &name);
            if canary.subset.is_some() {
                let stable = mk_backend(&name, None);
                let prefix = format!("rollout.{name}");
                let keys = Arc::make_mut(&mut config.runtime);
                keys.insert(format!("{prefix}.{}", stable.cluster_name()), 100 - w);
                keys.insert(format!("{prefix}.{}", canary.cluster_name()), w);
                route_r(config, l).action = RouteAction::RuntimeSplit {
                    key_prefix: prefix,
                    split: vec![
                        WeightedBackend {
                            backend: stable,
                            weight: 100,
                        },
                        WeightedBackend {
                            backend: canary,
                            weight: 0,
                        },
                    ],
                };
            }
        }
        Step::Header { l } => {
            let route = route_r(config, l).clone();
            let to = to_v2(config, &service_of(&route));
            let routes = &mut config.listeners_mut()[l].virtual_hosts[0].routes;
            if routes[0].name == HEADER_ROUTE {
                routes.remove(0);
            } else {
                let mut header = route;
                header.name = HEADER_ROUTE.to_owned();
                header.matcher.headers.push(HeaderMatch {
                    name: "x-canary".to_owned(),
                    value: ValueMatch::Exact("yes".to_owned()),
                    invert: false,
                });
                header.action = RouteAction::Backend(to);
                routes.insert(0, header);
            }
        }
        Step::RouteTimeout { l, ms } => {
            route_r(config, l).timeout = Some(Duration::from_millis(ms));
        }
        Step::Websocket { l } => {
            let policy = &mut route_r(config, l).policy;
            policy.websocket = !policy.websocket;
        }
        Step::InsertRoute { l, at, s, n } => {
            let routes = &mut config.listeners_mut()[l].virtual_hosts[0].routes;
            let at = at % (routes.len() + 1);
            let path = PathMatch::Prefix(format!("/x{n}/"));
            routes.insert(at, mk_route(&format!("x{n}"), path, mk_to(SERVICES[s])));
        }
        Step::DropRoute { l, at } => {
            let routes = &mut config.listeners_mut()[l].virtual_hosts[0].routes;
            let at = at % routes.len();
            if routes[at].name != "r" {
                routes.remove(at);
            }
        }
        Step::EditRoute { l, at, ms } => {
            let routes = &mut config.listeners_mut()[l].virtual_hosts[0].routes;
            let at = at % routes.len();
            routes[at].timeout = Some(Duration::from_millis(ms));
        }
    }
}

proptest! {
    /// Each compile follows one to three steps, so that one compile may see
    /// endpoints and routes change together.
    #[test]
    fn incremental_compiles_equal_compiles_from_scratch(
        batches in prop::collection::vec(prop::collection::vec(step(), 1..4), 1..16),
    ) {
        let mut compiler = Compiler::default();
        let mut config = base();
        let first = Arc::new(config.clone());
        let got = compiler.compile(&first).expect("compiles");
        prop_assert_eq!(got, compile(&first).expect("compiles"));
        for batch in &batches {
            for step in batch {
                apply(&mut config, step);
            }
            let config = Arc::new(config.clone());
            let got = compiler.compile(&config).expect("compiles");
            prop_assert_eq!(got, compile(&config).expect("compiles"), "after {:?}", batch);
        }
    }
}

#[test]
fn an_endpoint_change_keeps_every_other_resource_and_untouched_groups() {
    let mut compiler = Compiler::default();
    let before = Arc::new(base());
    let first = compiler.compile(&before).expect("compiles");
    let mut config = base();
    apply(
        &mut config,
        &Step::Move {
            s: 0,
            i: 1,
            port: 3,
            weight: 2,
            v2: false,
        },
    );
    let after = compiler.compile(&Arc::new(config)).expect("compiles");
    // `a` is only behind g1's listener: g2 and the fallback are untouched.
    assert!(Arc::ptr_eq(&after.groups["g2"], &first.groups["g2"]));
    assert!(Arc::ptr_eq(&after.fallback, &first.fallback));
    let (g1, was) = (&after.groups["g1"], &first.groups["g1"]);
    assert!(!Arc::ptr_eq(g1, was));
    for ty in [
        TypeUrl::Cluster,
        TypeUrl::Listener,
        TypeUrl::Route,
        TypeUrl::Secret,
    ] {
        assert!(g1.shares(was, ty), "{ty} rebuilt for an endpoint change");
    }
    assert_ne!(
        g1.version(TypeUrl::Endpoint),
        was.version(TypeUrl::Endpoint)
    );
    // Only `a`'s assignment is new; `c`'s (also in g1) is the same `Arc`.
    let eds = |s: &Snapshot, name: &str| s.get(TypeUrl::Endpoint, name).expect("cla").clone();
    assert!(!Arc::ptr_eq(&eds(g1, "a"), &eds(was, "a")));
    assert!(Arc::ptr_eq(&eds(g1, "c"), &eds(was, "c")));
}

#[test]
fn a_runtime_weight_step_replaces_only_the_runtime_layer_everywhere() {
    let mut compiler = Compiler::default();
    let mut config = base();
    apply(&mut config, &Step::RuntimeWeight { l: 0, w: 20 });
    let first = compiler
        .compile(&Arc::new(config.clone()))
        .expect("compiles");
    apply(&mut config, &Step::RuntimeWeight { l: 0, w: 35 });
    let config = Arc::new(config);
    let after = compiler.compile(&config).expect("compiles");
    assert_eq!(after, compile(&config).expect("compiles"));
    let pairs = after
        .groups
        .values()
        .zip(first.groups.values())
        .chain([(&after.fallback, &first.fallback)]);
    for (now, was) in pairs {
        for ty in TypeUrl::ALL {
            if ty != TypeUrl::Runtime {
                assert!(now.shares(was, ty), "{ty} rebuilt for a runtime step");
            }
        }
        assert_ne!(now.version(TypeUrl::Runtime), was.version(TypeUrl::Runtime));
    }
    // The route names the prefix and keeps the weights a proxy without the
    // layer uses: all to the stable subset.
    let g1 = &after.groups["g1"];
    let rc: RouteConfiguration = decode(g1, TypeUrl::Route, "edge");
    let Some(route_action::ClusterSpecifier::WeightedClusters(wc)) =
        &first_route_action(&rc, 0).cluster_specifier
    else {
        panic!("edge's route is not a split");
    };
    assert_eq!(wc.runtime_key_prefix, "rollout.a");
    let defaults: Vec<u32> = wc
        .clusters
        .iter()
        .map(|c| c.weight.as_ref().map_or(0, |w| w.value))
        .collect();
    assert_eq!(defaults, [100, 0]);
    let rt: envoy_types::pb::envoy::service::runtime::v3::Runtime =
        decode(g1, TypeUrl::Runtime, crate::model::RUNTIME_LAYER);
    let keys: Vec<(String, f64)> = rt
        .layer
        .expect("layer")
        .fields
        .into_iter()
        .map(|(k, v)| match v.kind {
            Some(envoy_types::pb::google::protobuf::value::Kind::NumberValue(n)) => (k, n),
            other => panic!("{k}: {other:?}"),
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    assert_eq!(
        keys,
        [
            ("rollout.a.a".to_string(), 65.0),
            ("rollout.a.a~v2".to_string(), 35.0)
        ]
    );
}

#[test]
fn a_weight_change_rebuilds_only_the_changed_route_configuration() {
    let mut compiler = Compiler::default();
    let first = compiler.compile(&Arc::new(base())).expect("compiles");
    let mut config = base();
    apply(&mut config, &Step::Weight { l: 0, w: 20 });
    let config = Arc::new(config);
    let after = compiler.compile(&config).expect("compiles");
    assert_eq!(after, compile(&config).expect("compiles"));
    // `edge` is g1's alone: g2 and the fallback are untouched.
    assert!(Arc::ptr_eq(&after.groups["g2"], &first.groups["g2"]));
    assert!(Arc::ptr_eq(&after.fallback, &first.fallback));
    let (g1, was) = (&after.groups["g1"], &first.groups["g1"]);
    for ty in [
        TypeUrl::Cluster,
        TypeUrl::Endpoint,
        TypeUrl::Listener,
        TypeUrl::Secret,
    ] {
        assert!(g1.shares(was, ty), "{ty} rebuilt for a weight change");
    }
    assert_ne!(g1.version(TypeUrl::Route), was.version(TypeUrl::Route));
    let rds = |s: &Snapshot, name: &str| s.get(TypeUrl::Route, name).expect("rds").clone();
    assert!(!Arc::ptr_eq(&rds(g1, "edge"), &rds(was, "edge")));
    assert!(Arc::ptr_eq(&rds(g1, "mesh"), &rds(was, "mesh")));
    let rc: RouteConfiguration = decode(g1, TypeUrl::Route, "edge");
    let Some(route_action::ClusterSpecifier::WeightedClusters(wc)) =
        &first_route_action(&rc, 0).cluster_specifier
    else {
        panic!("edge's route is not a split");
    };
    let weights: Vec<(&str, u32)> = wc
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().map_or(0, |w| w.value)))
        .collect();
    assert_eq!(weights, [("a", 80), ("a~v2", 20)]);
}

#[test]
fn a_route_change_that_shapes_the_listener_rebuilds_the_listener() {
    let mut compiler = Compiler::default();
    let first = compiler.compile(&Arc::new(base())).expect("compiles");
    let mut config = base();
    apply(&mut config, &Step::Websocket { l: 0 });
    let config = Arc::new(config);
    let after = compiler.compile(&config).expect("compiles");
    assert_eq!(after, compile(&config).expect("compiles"));
    let (g1, was) = (&after.groups["g1"], &first.groups["g1"]);
    assert_ne!(
        g1.version(TypeUrl::Listener),
        was.version(TypeUrl::Listener)
    );
}

#[test]
fn a_split_to_an_undeclared_subset_is_refused_after_a_weight_change() {
    let mut compiler = Compiler::default();
    compiler.compile(&Arc::new(base())).expect("compiles");
    let mut config = base();
    route_r(&mut config, 1).action = RouteAction::Split(vec![
        WeightedBackend {
            backend: mk_backend("b", None),
            weight: 90,
        },
        WeightedBackend {
            backend: mk_backend("b", Some("v2")),
            weight: 10,
        },
    ]);
    let err = compiler
        .compile(&Arc::new(config))
        .expect_err("b has no v2");
    assert_eq!(
        err,
        CompileError::MissingCluster {
            group: "g2".to_owned(),
            route_config: "side".to_owned(),
            cluster: "b~v2".to_owned(),
        }
    );
}

/// A named edit of a virtual host's routes.
type RoutesEdit<'a> = (&'a str, &'a dyn Fn(&mut Vec<Route>));

/// B8's question, asked of the compiler: an edit of one route among 1,000
/// compiles that route alone, whether it changes a route, adds one or
/// removes one, and the result is still a compile from scratch's.
#[test]
fn a_route_edit_compiles_the_changed_routes_alone() {
    let routes: Vec<Route> = (0..1000)
        .map(|i| {
            let path = PathMatch::Prefix(format!("/p{i}/"));
            mk_route(&format!("r{i}"), path, mk_to(SERVICES[i % 4]))
        })
        .collect();
    let services = SERVICES
        .iter()
        .map(|name| mk_service(name, vec![mk_endpoint(1, 8080, &[], 1)], &[]))
        .collect();
    let mut config = mk_config(services, vec![mk_listener("edge", 10000, None, routes)]);
    let mut compiler = Compiler::default();
    let mut compile_counting = |config: &Config| {
        let before = compiler.routes.compiled();
        let config = Arc::new(config.clone());
        let got = compiler.compile(&config).expect("compiles");
        assert_eq!(got, compile(&config).expect("compiles"));
        compiler.routes.compiled() - before
    };
    assert_eq!(compile_counting(&config), 1000);
    let edits: [RoutesEdit<'_>; 4] = [
        ("a timeout", &|r| {
            r[500].timeout = Some(Duration::from_secs(3))
        }),
        ("another service", &|r| r[7].action = mk_to("a")),
        ("a route added", &|r| {
            let path = PathMatch::Prefix("/new/".into());
            r.insert(300, mk_route("new", path, mk_to("a")));
        }),
        ("a route removed", &|r| {
            r.remove(900);
        }),
    ];
    for (what, edit) in edits {
        edit(&mut config.listeners_mut()[0].virtual_hosts[0].routes);
        let compiled = compile_counting(&config);
        let expected = if what == "a route removed" { 0 } else { 1 };
        assert_eq!(compiled, expected, "{what}");
    }
}
