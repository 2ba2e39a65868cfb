//! The virtual-time engine: load balancers under heavy-tailed service times,
//! retries, timeouts and outlier detection, all deterministic by seed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;

use super::*;
use crate::backend::{BackendSpec, Backends, Latency};
use crate::engine::{Engine, SimProxy};
use crate::http::Request;
use crate::resources::{Decoded, SimListener};
use crate::state::View;

/// A proxy view: one listener routing `/` to cluster `c` with `hosts`.
pub(crate) fn mk_view(
    lb: LbPolicy,
    hosts: &[u16],
    edit: impl FnOnce(&mut envoy_types::pb::envoy::config::route::v3::Route),
) -> View {
    let mut route = mk_route_to(
        "r",
        envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier::Prefix("/".into()),
        "c",
    );
    edit(&mut route);
    let rc = mk_route_config("rc", vec![mk_vhost("v", &["*"], vec![route])]);
    let Ok(Decoded::Routes(table)) = decode(TypeUrl::Route, &prost::Message::encode_to_vec(&rc))
    else {
        panic!("route config")
    };
    let mut view = View::default();
    view.clusters.insert("c".into(), mk_cluster("c", lb));
    view.endpoints
        .insert("c".into(), mk_endpoints("c", &healthy(hosts)));
    view.routes.insert("rc".into(), table);
    view.listeners.insert(
        "l".into(),
        Arc::new(SimListener {
            name: "l".into(),
            addr: "127.0.0.1:1".parse().expect("addr"),
            rds: "rc".into(),
            stat_prefix: "l".into(),
            http_filters: vec![crate::filters::HttpFilter::Router],
            use_remote_address: false,
            xff_trusted_hops: 0,
        }),
    );
    view
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// p99 of client latency, in ms, for `lb` under heavy-tailed service times
/// (Pareto 10 ms – 5 s, α 1.1) with backends that queue beyond capacity.
fn p99_under_heavy_tail(lb: LbPolicy) -> f64 {
    // 20 hosts × 10 slots at ~70% utilisation: about 150–200 in flight.
    let (nhosts, cap, rps) = (20, 10, 2800u64);
    let hosts: Vec<u16> = (1..=nhosts).collect();
    let view = mk_view(lb, &hosts, |_| {});
    let backends = Backends::new(BackendSpec {
        latency: Latency::Pareto {
            min: Duration::from_millis(10),
            max: Duration::from_secs(5),
            alpha: 1.1,
        },
        error_rate: 0.0,
        capacity: Some(cap),
    });
    let mut engine = Engine::new(vec![SimProxy::new(view, 11)], backends, 5);
    let n = rps * 20;
    for i in 0..n {
        let at = Duration::from_secs_f64(i as f64 / rps as f64);
        engine.submit(0, Request::get("h", "/"), at);
    }
    engine.run();
    assert_eq!(engine.stats.downstream.get(&200).copied(), Some(n));
    engine.stats.downstream_time.quantile_ms(0.99)
}

#[test]
fn least_request_beats_round_robin_on_p99_with_heavy_tails() {
    let rr = p99_under_heavy_tail(LbPolicy::RoundRobin);
    let lr = p99_under_heavy_tail(LbPolicy::LeastRequest);
    assert!(
        lr < rr * 0.8,
        "least request p99 {lr:.0}ms vs round robin {rr:.0}ms"
    );
}

#[test]
fn retries_turn_a_bad_host_into_successes_and_count_envoy_stats() {
    let view = mk_view(LbPolicy::RoundRobin, &[1, 2], |r| {
        use envoy_types::pb::envoy::config::route::v3::{route, RetryPolicy};
        if let Some(route::Action::Route(a)) = r.action.as_mut() {
            a.retry_policy = Some(RetryPolicy {
                retry_on: "5xx".into(),
                num_retries: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 3 }),
                ..Default::default()
            });
        }
    });
    let mut backends = Backends::new(BackendSpec::default());
    backends.set(
        addr(1),
        BackendSpec {
            error_rate: 1.0,
            ..Default::default()
        },
    );
    let mut engine = Engine::new(vec![SimProxy::new(view, 1)], backends, 1);
    for i in 0..1000u64 {
        engine.submit(0, Request::get("h", "/"), Duration::from_millis(i));
    }
    engine.run();
    let s = &engine.stats;
    // Envoy's default retry may land on the same host again; with other
    // requests interleaving, each try hits the bad host about half the
    // time, so about 1/16 of requests fail all 4 tries.
    let ok = s.downstream.get(&200).copied().unwrap_or(0);
    let failed = s.downstream.get(&503).copied().unwrap_or(0);
    assert_eq!(ok + failed, 1000);
    assert!((30..=100).contains(&failed), "answers {:?}", s.downstream);
    assert_eq!(s.counter("c", "upstream_rq_2xx"), ok);
    // Every failed try was retried except each request's last.
    assert_eq!(
        s.counter("c", "upstream_rq_5xx"),
        s.counter("c", "upstream_rq_retry") + failed
    );
    assert!(s.counter("c", "upstream_rq_5xx") >= 400);
}

#[test]
fn route_timeout_answers_504() {
    let view = mk_view(LbPolicy::RoundRobin, &[1], |r| {
        use envoy_types::pb::envoy::config::route::v3::route;
        if let Some(route::Action::Route(a)) = r.action.as_mut() {
            a.timeout = Some(envoy_types::pb::google::protobuf::Duration {
                seconds: 0,
                nanos: 50_000_000,
            });
        }
    });
    let backends = Backends::new(BackendSpec {
        latency: Latency::Fixed(Duration::from_millis(80)),
        ..Default::default()
    });
    let mut engine = Engine::new(vec![SimProxy::new(view, 1)], backends, 1);
    engine.submit(0, Request::get("h", "/"), Duration::ZERO);
    engine.run();
    assert_eq!(engine.stats.downstream, BTreeMap::from([(504, 1)]));
    assert_eq!(engine.stats.counter("c", "upstream_rq_timeout"), 1);
}

#[test]
fn outlier_detection_ejects_after_consecutive_5xx() {
    let mut view = mk_view(
        LbPolicy::RoundRobin,
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        |_| {},
    );
    let mut c = (*view.clusters["c"]).clone();
    c.outlier = Some(crate::resources::OutlierConfig {
        consecutive_5xx: 5,
        base_ejection_time: Duration::from_secs(30),
        max_ejection_percent: 10,
    });
    view.clusters.insert("c".into(), Arc::new(c));
    let mut backends = Backends::new(BackendSpec::default());
    backends.set(
        addr(3),
        BackendSpec {
            error_rate: 1.0,
            ..Default::default()
        },
    );
    let mut engine = Engine::new(vec![SimProxy::new(view, 1)], backends, 1);
    for i in 0..2000u64 {
        engine.submit(0, Request::get("h", "/"), Duration::from_millis(i));
    }
    engine.run();
    // Five failures eject host 3; after that nothing fails.
    assert_eq!(engine.stats.downstream.get(&503), Some(&5));
    assert_eq!(
        engine.proxies[0].dataplane.ejected("c", engine.now),
        vec![addr(3)]
    );
}
