//! Memory of idle xDS sessions: N sans-io sessions that hold all of
//! topology M1 (1,000 services × 10 endpoints, 3,000 clusters with their
//! load assignments, one listener, one route configuration), every type
//! ACKed. Prints the process RSS growth per session: the protocol state
//! each stream keeps, without the transport (tonic/h2 buffers and the
//! stream task add to it in the server).
//!
//! ```sh
//! cargo run --release --example session_memory -- 1000 delta
//! cargo run --release --example session_memory -- 1000 sotw
//! cargo run --release --example session_memory -- 1000 delta-reconnect
//! ```

#[path = "../benches/support/m1.rs"]
mod m1;

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use sluice::xds::session::{Mode, Response, Session};
use sluice::xds::{Snapshot, TypeUrl};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn node() -> Node {
    Node {
        id: "mem".into(),
        cluster: "default".into(),
        ..Default::default()
    }
}

/// (type, nonce, version) of each response.
fn sent(responses: Vec<Response>) -> Vec<(String, String, String)> {
    responses
        .into_iter()
        .map(|r| match r {
            Response::Sotw(r) => (r.type_url, r.nonce, r.version_info),
            Response::Delta(r) => (r.type_url, r.nonce, r.system_version_info),
        })
        .collect()
}

/// A session that asked for and ACKed every type of `snap`, as Envoy does.
fn started(mode: Mode, snap: &Arc<Snapshot>, reconnect: bool) -> Session {
    let mut s = Session::new(mode);
    s.on_snapshot(snap.clone());
    let clusters: Vec<String> = snap.resources(TypeUrl::Cluster).keys().cloned().collect();
    let routes: Vec<String> = snap.resources(TypeUrl::Route).keys().cloned().collect();
    for (ty, names) in [
        (TypeUrl::Cluster, Vec::new()),
        (TypeUrl::Endpoint, clusters),
        (TypeUrl::Listener, Vec::new()),
        (TypeUrl::Route, routes),
    ] {
        let out = match mode {
            Mode::Sotw => s.on_sotw_request(DiscoveryRequest {
                node: Some(node()),
                type_url: ty.as_str().into(),
                resource_names: names.clone(),
                ..Default::default()
            }),
            Mode::Delta => s.on_delta_request(DeltaDiscoveryRequest {
                node: Some(node()),
                type_url: ty.as_str().into(),
                resource_names_subscribe: names.clone(),
                // A reconnecting proxy announces what it holds.
                initial_resource_versions: if reconnect {
                    snap.resources(ty)
                        .iter()
                        .map(|(name, r)| (name.clone(), r.version.clone()))
                        .collect()
                } else {
                    Default::default()
                },
                ..Default::default()
            }),
        };
        for (type_url, nonce, version) in sent(out.expect("request").responses) {
            let ack = match mode {
                Mode::Sotw => s.on_sotw_request(DiscoveryRequest {
                    version_info: version,
                    type_url,
                    response_nonce: nonce,
                    resource_names: names.clone(),
                    ..Default::default()
                }),
                Mode::Delta => s.on_delta_request(DeltaDiscoveryRequest {
                    type_url,
                    response_nonce: nonce,
                    ..Default::default()
                }),
            };
            assert!(ack.expect("ack").responses.is_empty());
        }
    }
    s
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let how = args.next();
    let mode = match how.as_deref() {
        Some("sotw") => Mode::Sotw,
        _ => Mode::Delta,
    };
    // `delta-reconnect`: each session starts as a reconnecting proxy's,
    // announcing every resource it holds (`initial_resource_versions`).
    let reconnect = how.as_deref() == Some("delta-reconnect");
    let snaps = sluice::compile::compile(&m1::m1(1000, 10)).expect("compiles");
    let snap = snaps.fallback.clone();
    let resources: usize = TypeUrl::ALL.iter().map(|t| snap.resources(*t).len()).sum();
    let before = rss_kib();
    let sessions: Vec<Session> = (0..n).map(|_| started(mode, &snap, reconnect)).collect();
    let after = rss_kib();
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!(
        "{n} {mode:?} sessions holding M1 ({resources} resources): RSS {before} → {after} KiB, {:.1} KiB per session ({:.0} bytes per resource held)",
        per / 1024.0,
        per / resources as f64
    );
    drop(sessions);
}
