//! Criterion benchmarks for the hot pure paths (issue 7's first list):
//! compile rules + endpoints → resources, encode a ClusterLoadAssignment of
//! 10 / 1k / 10k endpoints, a CDS of 1k / 10k clusters, and a delta push
//! of one changed endpoint set to a session holding M1 (1,000 services),
//! a stream's start (fresh and reconnecting) at M1, and B8's rules path (parse, compile, one route edited) at 1k / 5k / 20k
//! routes.
//!
//! `cargo bench --bench hot_paths`; results with machine and date go in
//! docs/benchmarks.md. Under `cargo test` each benchmark runs once, as a
//! smoke test.

#[path = "../examples/bench/b8_rules.rs"]
mod b8_rules;
#[path = "support/m1.rs"]
mod m1;
#[path = "support/session_start.rs"]
mod session_start;

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use m1::m1;
use sluice::compile::eds::{load_assignment, EndpointCache};
use sluice::compile::{compile, Compiler};
use sluice::model::{Backend, Config};
use sluice::xds::history::SnapshotDiff;
use sluice::xds::server::Published;
use sluice::xds::session::{Mode, Session};
use sluice::xds::{Resource, TypeUrl};

fn bench_compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    let config = m1(1000, 10);
    g.bench_function("m1_1000x10", |b| {
        b.iter(|| compile(&config).expect("compiles"))
    });
    // As the publisher compiles: the last snapshots and encoded endpoints
    // kept, the config changed by `edit(n)` with a new `n` each time (the
    // config is copied outside the measurement, as the publisher's
    // resolve does).
    let mut compiler = Compiler::default();
    let mut changed_by = |name: &str, edit: &dyn Fn(&mut Config, u32)| {
        let mut n = 1;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    n = n % 100 + 1;
                    let mut changed = config.clone();
                    edit(&mut changed, n);
                    Arc::new(changed)
                },
                |changed| compiler.compile(&changed).expect("compiles"),
                BatchSize::LargeInput,
            )
        });
    };
    // One endpoint's weight: only its CLA is encoded again.
    changed_by("m1_1000x10_one_endpoint_changed", &|c, n| {
        if let Some(s) = c.service_mut("svc-0500") {
            Arc::make_mut(&mut s.endpoints)[0].weight = n;
        }
    });
    // One route's timeout, as a canary weight step is a route change: only
    // the route configuration is built again.
    changed_by("m1_1000x10_one_route_changed", &|c, n| {
        if let Some(r) = c.listeners_mut()[0].virtual_hosts[0].routes.first_mut() {
            r.timeout = Some(Duration::from_secs(n.into()));
        }
    });
    // One service's connect timeout, a cluster change: everything is
    // compiled again, endpoints from the cache.
    changed_by("m1_1000x10_one_cluster_changed", &|c, n| {
        if let Some(s) = c.service_mut("svc-0500") {
            s.connect_timeout = Duration::from_millis(n.into());
        }
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    let mut g = c.benchmark_group("encode");
    for n in [10usize, 1_000, 10_000] {
        let config = m1(1, n);
        let snaps = compile(&config).expect("compiles");
        let cla = snaps
            .fallback
            .get(TypeUrl::Endpoint, "svc-0000")
            .expect("cla")
            .clone();
        let msg = <envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment as prost::Message>::decode(cla.body.clone()).expect("decode");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("cla_endpoints", n), &msg, |b, m| {
            b.iter(|| Resource::encode("svc-0000", m))
        });
        // What compile does: the same bytes from endpoint records cached
        // by earlier compiles (the steady state of a publisher).
        let service = &config.services["svc-0000"];
        let backend = Backend {
            service: service.name.clone(),
            subset: None,
        };
        let mut cache = EndpointCache::default();
        load_assignment(service, &backend, &mut cache);
        g.bench_function(BenchmarkId::new("cla_endpoints_cached", n), |b| {
            b.iter(|| load_assignment(service, &backend, &mut cache))
        });
    }
    for n in [1_000usize, 10_000] {
        let clusters: Vec<Cluster> = (0..n)
            .map(|i| Cluster {
                name: format!("svc-{i:05}"),
                ..Default::default()
            })
            .collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("cds_clusters", n), &clusters, |b, cs| {
            b.iter(|| {
                cs.iter()
                    .map(|c| Resource::encode(c.name.clone(), c))
                    .collect::<Vec<_>>()
            })
        });
    }
    g.finish();
}

fn bench_delta_push(c: &mut Criterion) {
    let config = m1(1000, 10);
    let base = compile(&config).expect("compiles");
    let mut changed = config.clone();
    if let Some(s) = changed.service_mut("svc-0500") {
        Arc::make_mut(&mut s.endpoints)[0].weight = 2;
    }
    // As `serve` publishes: the second set is diffed against the first.
    let first = Published::after(None, base, std::time::Instant::now());
    let next = Published::after(
        Some(&first),
        compile(&changed).expect("compiles"),
        std::time::Instant::now(),
    );
    let (from, to) = (&first.snapshots.fallback, &next.snapshots.fallback);
    let diff = next.history.diff("default", from, to).expect("one step");
    let node = Node {
        id: "bench".into(),
        cluster: "default".into(),
        ..Default::default()
    };
    let names: Vec<String> = from.resources(TypeUrl::Endpoint).keys().cloned().collect();
    // A delta session holding M1 with every EDS resource ACKed.
    let started = || {
        let mut s = Session::new(Mode::Delta);
        s.on_snapshot(from.clone());
        let req = DeltaDiscoveryRequest {
            node: Some(node.clone()),
            type_url: TypeUrl::Endpoint.as_str().into(),
            resource_names_subscribe: names.clone(),
            ..Default::default()
        };
        let out = s.on_delta_request(req).expect("req");
        let nonce = match &out.responses[0] {
            sluice::xds::session::Response::Delta(r) => r.nonce.clone(),
            sluice::xds::session::Response::Sotw(r) => r.nonce.clone(),
        };
        let ack = DeltaDiscoveryRequest {
            type_url: TypeUrl::Endpoint.as_str().into(),
            response_nonce: nonce,
            ..Default::default()
        };
        s.on_delta_request(ack).expect("ack");
        s
    };
    // Sessions are set up outside the timed loop and dropped after it.
    let timed = |b: &mut criterion::Bencher, push: &dyn Fn(&mut Session)| {
        b.iter_custom(|iters| {
            let mut sessions: Vec<Session> = (0..iters).map(|_| started()).collect();
            let t = std::time::Instant::now();
            for s in &mut sessions {
                push(s);
            }
            t.elapsed()
        })
    };
    // Every resource compared (a stream without a usable diff).
    c.bench_function("delta_push_one_endpoint_change_m1", |b| {
        timed(b, &|s| {
            std::hint::black_box(s.on_snapshot(to.clone()));
        })
    });
    // Only the diff's names compared (the normal case).
    c.bench_function("delta_push_one_endpoint_change_m1_diff", |b| {
        timed(b, &|s| {
            std::hint::black_box(s.on_snapshot_diff(to.clone(), &diff));
        })
    });
    // The diff itself, made once per publish for all streams.
    c.bench_function("snapshot_diff_m1", |b| {
        b.iter(|| SnapshotDiff::between(from, to))
    });
}

/// A stream's start at M1, every type asked for and ACKed: a fresh proxy
/// (delta, SotW) and a reconnecting delta proxy announcing everything it
/// holds, which is what each stream of a reconnect storm costs (B3).
fn bench_session_start(c: &mut Criterion) {
    let snap = compile(&m1(1000, 10)).expect("compiles").fallback;
    let mut g = c.benchmark_group("session_start_m1");
    g.sample_size(20);
    for (name, mode, reconnect) in [
        ("delta", Mode::Delta, false),
        ("delta_reconnect", Mode::Delta, true),
        ("sotw", Mode::Sotw, false),
    ] {
        // Sessions are dropped outside the timed loop.
        g.bench_function(name, |b| {
            b.iter_batched(
                || (),
                |()| session_start::started(mode, &snap, reconnect),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// B8's rules path (issue 23) at 1k / 5k / 20k routes: what a rules edit
/// costs sluice before anything is sent. `parse` reads the text into the
/// model (syntax, fields, validation), `static_compile` is the full
/// compile `serve` gives the guard, `publish_one_route_edit` the
/// publisher's compile of the edited config after the unedited one (one
/// route sent to another service).
fn bench_rules_scale(c: &mut Criterion) {
    let mut g = c.benchmark_group("rules_scale");
    g.sample_size(10);
    for routes in [1_000usize, 5_000, 20_000] {
        let text = b8_rules::rules(routes, |s, _| s);
        let parse = |t: &str| sluice::rules::parse("b8.yaml", t).expect("parses");
        g.bench_function(BenchmarkId::new("parse", routes), |b| {
            b.iter(|| parse(&text))
        });
        let base = Arc::new(parse(&text));
        g.bench_function(BenchmarkId::new("static_compile", routes), |b| {
            b.iter(|| compile(&base).expect("compiles"))
        });
        // Two edits taken in turn, so each compile sees a change.
        let edits = [1, 2].map(|to| Arc::new(parse(&b8_rules::edited(routes, to))));
        let mut compiler = Compiler::default();
        compiler.compile(&base).expect("compiles");
        let mut turn = 0;
        g.bench_function(BenchmarkId::new("publish_one_route_edit", routes), |b| {
            b.iter(|| {
                turn += 1;
                compiler.compile(&edits[turn % 2]).expect("compiles")
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_compile,
    bench_encode,
    bench_delta_push,
    bench_session_start,
    bench_rules_scale
);
criterion_main!(benches);
