//! A sans-io xDS session started as Envoy starts one: it asks for every
//! type of a snapshot (CDS and LDS wildcard, EDS and RDS by name) and ACKs
//! each response; a reconnecting delta proxy also announces what it holds
//! (`initial_resource_versions`). Shared by `examples/session_memory.rs`
//! and `benches/hot_paths.rs`.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use sluice::xds::session::{Mode, Response, Session};
use sluice::xds::{Snapshot, TypeUrl};

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
pub fn started(mode: Mode, snap: &Arc<Snapshot>, reconnect: bool) -> Session {
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
