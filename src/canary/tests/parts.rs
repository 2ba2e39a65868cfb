//! The overlay rewrites only governed routes; analysis reads Envoy's and
//! the simulator's stats text and measures windows; the file store round
//! trips.

use std::collections::BTreeMap;

use crate::canary::analysis::{measure, parse_envoy_stats, Sample};
use crate::canary::overlay::{Overlay, Overlays, WeightsVia};
use crate::canary::store::FileStore;
use crate::canary::{HeaderRoute, Rollout, Spec, Strategy};
use crate::model::{Backend, Config, RouteAction, ValueMatch};

/// Rules with the service `web` (subsets `stable`, `canary`, and
/// `extra_subsets` YAML lines), `more_services`, and one listener whose
/// virtual host has `routes` (YAML list items).
fn rules(extra_subsets: &str, more_services: &str, routes: &str) -> Config {
    let text = format!(
        r#"services:
  - name: web
    endpoints:
      - {{address: 127.0.0.1, port: 8081, labels: {{version: v1}}}}
      - {{address: 127.0.0.1, port: 8082, labels: {{version: v2}}}}
    subsets:
      stable: {{version: v1}}
      canary: {{version: v2}}
{extra_subsets}{more_services}listeners:
  - name: http
    address: 127.0.0.1
    port: 10000
    virtual_hosts:
      - name: web
        domains: ["*"]
        routes:
{routes}"#
    );
    crate::rules::parse("rules.yaml", &text).expect("rules")
}

/// A preview route to `canary`, and a split of `stable` and `canary`.
pub(super) fn config() -> Config {
    rules(
        "",
        "",
        r#"          - match: {prefix: /v2}
            to: {service: web, subset: canary}
          - match: {prefix: /}
            split:
              - {service: web, subset: stable, weight: 100}
              - {service: web, subset: canary, weight: 0}
"#,
    )
}

fn overlay(weight: u32, header: bool) -> Overlays {
    let o = Overlay {
        stable: "stable".into(),
        canary: "canary".into(),
        canary_weight: weight,
        header: header.then(|| HeaderRoute {
            name: "x-canary".into(),
            value: "1".into(),
        }),
    };
    Overlays(BTreeMap::from([("web".to_string(), o)]))
}

fn to(subset: &str) -> RouteAction {
    RouteAction::Backend(Backend {
        service: "web".into(),
        subset: Some(subset.into()),
    })
}

#[test]
fn overlay_rewrites_governed_routes_only() {
    let mut c = config();
    overlay(25, false).apply(&mut c, WeightsVia::Routes);
    let routes = &c.listeners[0].virtual_hosts[0].routes;
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].action, to("canary"), "preview route untouched");
    let RouteAction::Split(split) = &routes[1].action else {
        panic!("not a split: {:?}", routes[1].action);
    };
    let weights: Vec<(String, u32)> = split
        .iter()
        .map(|w| (w.backend.cluster_name(), w.weight))
        .collect();
    assert_eq!(
        weights,
        vec![("web~stable".into(), 75), ("web~canary".into(), 25)]
    );
    crate::compile::compile(&c).expect("compiles");
}

#[test]
fn overlay_ends_are_single_clusters_and_header_routes_go_first() {
    for (w, want) in [(0, "stable"), (100, "canary")] {
        let mut c = config();
        overlay(w, false).apply(&mut c, WeightsVia::Routes);
        assert_eq!(c.listeners[0].virtual_hosts[0].routes[1].action, to(want));
    }
    let mut c = config();
    overlay(10, true).apply(&mut c, WeightsVia::Routes);
    let routes = &c.listeners[0].virtual_hosts[0].routes;
    assert_eq!(routes.len(), 3);
    assert_eq!(routes[1].action, to("canary"));
    let h = routes[1].matcher.headers.last().expect("header match");
    assert_eq!(
        (h.name.as_str(), &h.value),
        ("x-canary", &ValueMatch::Exact("1".into()))
    );
    assert!(matches!(routes[2].action, RouteAction::Split(_)));
    // Same input, same bytes: rollout weights are input like the rules.
    let mut again = config();
    overlay(10, true).apply(&mut again, WeightsVia::Routes);
    assert_eq!(
        crate::compile::compile(&c).ok(),
        crate::compile::compile(&again).ok()
    );
}

/// [`config`] with a `grpc` target whose routes are a preview route to
/// `canary` and a plain route to `stable`.
fn grpc_config() -> Config {
    rules(
        "",
        "",
        r#"          - match: {prefix: /}
            to: {service: web, subset: stable}
grpc:
  - target: web
    routes:
      - name: preview
        match: {headers: [{name: x-preview, exact: "1"}]}
        to: {service: web, subset: canary}
      - name: default
        to: {service: web, subset: stable}
"#,
    )
}

#[test]
fn grpc_targets_take_the_weights_in_their_routes_whatever_the_envoys_use() {
    for via in [WeightsVia::Routes, WeightsVia::Runtime] {
        let mut c = grpc_config();
        let mut o = overlay(30, true);
        if let Some(o) = o.0.get_mut("web") {
            o.header = Some(HeaderRoute {
                name: "X-Canary".into(),
                value: "1".into(),
            });
        }
        // The memo path (what `serve` runs) and the plain one agree.
        let mut memo = c.clone();
        crate::canary::overlay::Memo::default().apply(&o, &mut memo, via);
        o.apply(&mut c, via);
        assert_eq!(c.grpc, memo.grpc, "{via:?}");
        let routes = &c.grpc[0].routes;
        assert_eq!(routes.len(), 3, "{via:?}: {routes:?}");
        assert_eq!(routes[0].action, to("canary"), "preview route untouched");
        assert_eq!(routes[1].name, "default~canary-header");
        assert_eq!(routes[1].action, to("canary"));
        let h = routes[1].matcher.headers.last().expect("header match");
        assert_eq!(h.name, "x-canary", "gRPC metadata keys are lower case");
        let RouteAction::Split(split) = &routes[2].action else {
            panic!("{via:?}: not a split: {:?}", routes[2].action);
        };
        let weights: Vec<(String, u32)> = split
            .iter()
            .map(|w| (w.backend.cluster_name(), w.weight))
            .collect();
        assert_eq!(
            weights,
            vec![("web~stable".into(), 70), ("web~canary".into(), 30)],
            "{via:?}"
        );
        crate::compile::compile(&c).expect("compiles");
    }
}

#[test]
fn runtime_weights_change_the_runtime_layer_and_never_the_routes() {
    use crate::xds::TypeUrl;
    let compiled = |w: u32| {
        let mut c = config();
        overlay(w, false).apply(&mut c, WeightsVia::Runtime);
        (c.clone(), crate::compile::compile(&c).expect("compiles"))
    };
    let (c0, s0) = compiled(0);
    let (c10, s10) = compiled(10);
    let (c100, s100) = compiled(100);
    // The governed route reads the runtime keys; its own weights (what a
    // proxy without the layer uses) keep everything on stable.
    let routes = &c10.listeners[0].virtual_hosts[0].routes;
    // The preview route is armed for a rollout from canary, whose keys
    // this rollout does not set: it keeps all its traffic on canary.
    assert_eq!(
        runtime_split(&routes[0].action),
        (
            "sluice.rollout.web.from.canary",
            vec![("web~canary".into(), 100), ("web~stable".into(), 0)]
        )
    );
    assert_eq!(
        runtime_split(&routes[1].action),
        (
            "sluice.rollout.web.from.stable",
            vec![("web~stable".into(), 100), ("web~canary".into(), 0)]
        )
    );
    let keys = |c: &Config| {
        c.runtime
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&c10),
        vec![
            ("sluice.rollout.web.from.stable.web~canary".to_string(), 10),
            ("sluice.rollout.web.from.stable.web~stable".to_string(), 90)
        ]
    );
    assert_eq!(c0.runtime["sluice.rollout.web.from.stable.web~canary"], 0);
    assert_eq!(c100.runtime["sluice.rollout.web.from.stable.web~stable"], 0);
    // Steps, the ends included, change the runtime layer alone.
    for s in [&s0, &s100] {
        assert_eq!(
            s.fallback.version(TypeUrl::Route),
            s10.fallback.version(TypeUrl::Route)
        );
        assert_ne!(
            s.fallback.version(TypeUrl::Runtime),
            s10.fallback.version(TypeUrl::Runtime)
        );
    }
}

/// The key prefix and (cluster, own weight) pairs of a runtime split.
fn runtime_split(action: &RouteAction) -> (&str, Vec<(String, u32)>) {
    let RouteAction::RuntimeSplit { key_prefix, split } = action else {
        panic!("not a runtime split: {action:?}");
    };
    let weights = split
        .iter()
        .map(|w| (w.backend.cluster_name(), w.weight))
        .collect();
    (key_prefix, weights)
}

/// `web` has three subsets and plain routes to two of them and to the
/// whole service; `api` has one subset.
fn plain_config() -> Config {
    rules(
        "      old: {version: v0}\n",
        r#"  - name: api
    endpoints:
      - {address: 127.0.0.1, port: 8083, labels: {version: v1}}
    subsets:
      v1: {version: v1}
"#,
        r#"          - match: {prefix: /old}
            to: {service: web, subset: old}
          - match: {prefix: /all}
            to: {service: web}
          - match: {prefix: /api}
            to: {service: api, subset: v1}
          - match: {prefix: /}
            to: {service: web, subset: stable}
"#,
    )
}

#[test]
fn runtime_weights_arm_plain_routes_so_a_rollout_starts_without_a_route_push() {
    use crate::xds::TypeUrl;
    let plain = plain_config;
    let mut armed = plain();
    Overlays::default().apply(&mut armed, WeightsVia::Runtime);
    let routes = &armed.listeners[0].virtual_hosts[0].routes;
    assert_eq!(
        runtime_split(&routes[0].action),
        (
            "sluice.rollout.web.from.old",
            vec![
                ("web~old".into(), 100),
                ("web~canary".into(), 0),
                ("web~stable".into(), 0)
            ]
        )
    );
    let whole = RouteAction::Backend(Backend {
        service: "web".into(),
        subset: None,
    });
    assert_eq!(routes[1].action, whole, "the whole service: nothing to arm");
    let api = RouteAction::Backend(Backend {
        service: "api".into(),
        subset: Some("v1".into()),
    });
    assert_eq!(routes[2].action, api, "one subset: nothing to roll out to");
    assert_eq!(
        runtime_split(&routes[3].action).0,
        "sluice.rollout.web.from.stable"
    );
    assert!(armed.runtime.is_empty(), "no rollout, no keys");
    // With route weights nothing is armed.
    let mut routes_mode = plain();
    Overlays::default().apply(&mut routes_mode, WeightsVia::Routes);
    assert_eq!(routes_mode, plain());

    // Starting a rollout from stable, and every step, change the runtime
    // layer alone; the other armed routes keep their form.
    let before = crate::compile::compile(&armed).expect("compiles");
    for w in [5, 50, 100, 0] {
        let mut c = plain();
        overlay(w, false).apply(&mut c, WeightsVia::Runtime);
        assert_eq!(c.listeners, armed.listeners, "{w}%");
        let s = crate::compile::compile(&c).expect("compiles");
        assert_eq!(
            s.fallback.version(TypeUrl::Route),
            before.fallback.version(TypeUrl::Route),
            "{w}%"
        );
        assert_ne!(
            s.fallback.version(TypeUrl::Runtime),
            before.fallback.version(TypeUrl::Runtime),
            "{w}%"
        );
    }
}

#[test]
fn overlay_memo_reuses_its_result_until_an_input_changes() {
    use crate::canary::overlay::Memo;
    use std::sync::Arc;
    let rules = plain_config();
    let mut memo = Memo::default();
    let applied = |memo: &mut Memo, o: &Overlays, rules: &Config| {
        let mut c = rules.clone();
        memo.apply(o, &mut c, WeightsVia::Runtime);
        c
    };
    let direct = |o: &Overlays, rules: &Config| {
        let mut c = rules.clone();
        o.apply(&mut c, WeightsVia::Runtime);
        c
    };
    let a = applied(&mut memo, &overlay(10, false), &rules);
    assert_eq!(a, direct(&overlay(10, false), &rules));
    // An endpoint change: the same listeners, the same overlays.
    let b = applied(&mut memo, &overlay(10, false), &rules);
    assert!(Arc::ptr_eq(&a.listeners, &b.listeners));
    assert_eq!(a.runtime, b.runtime);
    // A step: new keys, the very same routes.
    let c = applied(&mut memo, &overlay(20, false), &rules);
    assert_eq!(c, direct(&overlay(20, false), &rules));
    assert!(Arc::ptr_eq(&a.listeners, &c.listeners));
    assert_ne!(a.runtime, c.runtime);
    // A header rollout reshapes the routes.
    let h = applied(&mut memo, &overlay(20, true), &rules);
    assert_eq!(h, direct(&overlay(20, true), &rules));
    assert_ne!(h.listeners, c.listeners);
    let c = applied(&mut memo, &overlay(20, false), &rules);
    // With route weights a step is a route change.
    let mut routes_memo = Memo::default();
    let mut r10 = rules.clone();
    routes_memo.apply(&overlay(10, false), &mut r10, WeightsVia::Routes);
    let mut r20 = rules.clone();
    routes_memo.apply(&overlay(20, false), &mut r20, WeightsVia::Routes);
    let mut want = rules.clone();
    overlay(20, false).apply(&mut want, WeightsVia::Routes);
    assert_eq!(r20, want);
    assert_ne!(r10.listeners, r20.listeners);
    // A subset dropped by a rules change that kept the listeners.
    let mut fewer = rules.clone();
    Arc::make_mut(fewer.services.get_mut("web").expect("web"))
        .subsets
        .remove("old");
    let d = applied(&mut memo, &overlay(20, false), &fewer);
    assert_eq!(d, direct(&overlay(20, false), &fewer));
    assert_ne!(d.listeners, c.listeners);
}

#[test]
fn finished_rollouts_drop_the_header_route() {
    let spec = Spec {
        service: "web".into(),
        from: "stable".into(),
        to: "canary".into(),
        steps: vec![50, 100],
        interval_ms: 100,
        max_error_rate: 0.01,
        max_p99_ms: 0,
        failure_threshold: 1,
        header: Some(HeaderRoute {
            name: "x-canary".into(),
            value: "1".into(),
        }),
        strategy: Strategy::Canary,
        ack_share: 1.0,
        ack_timeout_ms: 1000,
    };
    let r = Rollout::new(spec, 0);
    assert!(Overlays::of([&r]).0.is_empty(), "pending: the rules hold");
    let (r, _) =
        crate::canary::plan::observe(&r, &crate::canary::plan::Observation::Tick { now_ms: 1 });
    assert!(Overlays::of([&r]).0["web"].header.is_some());
    let (r, _) =
        crate::canary::plan::command(&r, &crate::canary::plan::Command::Abort, 2).expect("abort");
    let o = &Overlays::of([&r]).0["web"];
    assert_eq!((o.canary_weight, o.header.is_none()), (0, true));
}

const SIM_STATS: &str = "cluster.web~canary.upstream_rq_200: 95
cluster.web~canary.upstream_rq_2xx: 95
cluster.web~canary.upstream_rq_503: 5
cluster.web~canary.upstream_rq_5xx: 5
cluster.web~canary.upstream_rq_total: 100
cluster.web~canary.upstream_rq_time: P50(1.0) P90(2.0) P99(7.5) P100(9.0)
cluster.web~stable.upstream_rq_total: 900
";

const ENVOY_STATS: &str = "cluster.web~canary.upstream_rq_5xx: 3
cluster.web~canary.upstream_rq_total: 40
cluster.web~canary.upstream_rq_time: B0.5(0,0) B1(0,10) B5(0,30) B10(0,39) B25(0,40)
cluster_manager.cds.update_success: 4
";

#[test]
fn parses_simulator_and_envoy_stats() {
    let s = parse_envoy_stats(SIM_STATS);
    let c = &s.clusters["web~canary"];
    assert_eq!((c.total, c.errors_5xx, c.p99_ms), (100, 5, Some(7.5)));
    assert_eq!(s.clusters["web~stable"].total, 900);
    let e = parse_envoy_stats(ENVOY_STATS);
    let c = &e.clusters["web~canary"];
    assert_eq!((c.total, c.errors_5xx), (40, 3));
    assert_eq!(
        c.buckets,
        vec![(0.5, 0), (1.0, 10), (5.0, 30), (10.0, 39), (25.0, 40)]
    );
    assert_eq!(e.clusters.len(), 1);
}

#[test]
fn windows_are_counter_deltas() {
    let before = parse_envoy_stats(ENVOY_STATS);
    let after = parse_envoy_stats(
        "cluster.web~canary.upstream_rq_5xx: 4
cluster.web~canary.upstream_rq_total: 140
cluster.web~canary.upstream_rq_time: B0.5(0,0) B1(0,10) B5(0,30) B10(0,139) B25(0,140)
",
    );
    let m = measure(&before, &after, "web~canary").expect("window");
    assert_eq!(m.requests, 100);
    assert!((m.error_rate - 0.01).abs() < 1e-9);
    assert_eq!(m.p99_ms, Some(10.0), "from bucket deltas");
    // No traffic: NaN, no p99 — a check that must fail.
    let idle = measure(&after, &after, "web~canary").expect("window");
    assert!(idle.error_rate.is_nan() && idle.p99_ms.is_none());
    assert!(
        measure(&after, &before, "web~canary").is_err(),
        "counters went backwards"
    );
    assert!(measure(&Sample::default(), &after, "web~other").is_err());
}

#[test]
fn samples_merge_over_proxies() {
    let mut total = parse_envoy_stats(SIM_STATS);
    total.merge(&parse_envoy_stats(SIM_STATS));
    let c = &total.clusters["web~canary"];
    assert_eq!((c.total, c.errors_5xx, c.p99_ms), (200, 10, Some(7.5)));
}

#[test]
fn file_store_round_trips_and_replaces_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::new(dir.path().join("state"));
    assert!(store.read().expect("empty").is_empty());
    let spec = Spec {
        service: "web".into(),
        from: "stable".into(),
        to: "canary".into(),
        steps: vec![100],
        interval_ms: 100,
        max_error_rate: 0.5,
        max_p99_ms: 0,
        failure_threshold: 1,
        header: None,
        strategy: Strategy::Canary,
        ack_share: 1.0,
        ack_timeout_ms: 1000,
    };
    let all = BTreeMap::from([("web".to_string(), Rollout::new(spec, 7))]);
    store.write(&all).expect("save");
    assert_eq!(store.read().expect("load"), all);
    let names: Vec<String> = std::fs::read_dir(dir.path().join("state"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![FileStore::FILE.to_string()],
        "no temporary file left"
    );
    std::fs::write(dir.path().join("state").join(FileStore::FILE), "{oops").expect("write");
    assert!(
        store.read().is_err(),
        "a corrupt file is an error, never an empty state"
    );
}
