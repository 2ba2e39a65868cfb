//! Session tests: the fixtures here (also used by `diff_tests` and
//! `sds_tests`), the SotW protocol rules in `sotw`, delta and shared
//! encodings in `delta`.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::envoy::service::runtime::v3::Runtime;
use envoy_types::pb::google::rpc::Status;

use super::*;

pub(super) const CDS: TypeUrl = TypeUrl::Cluster;
pub(super) const EDS: TypeUrl = TypeUrl::Endpoint;
pub(super) const LDS: TypeUrl = TypeUrl::Listener;
pub(super) const RDS: TypeUrl = TypeUrl::Route;
pub(super) const RTDS: TypeUrl = TypeUrl::Runtime;
pub(super) const SDS: TypeUrl = TypeUrl::Secret;

/// A snapshot with the given clusters (each with a CLA whose content is
/// `endpoints_tag`), one listener `l` and one route config `l`.
pub(super) fn mk_snapshot(clusters: &[(&str, u64)], route_tag: &str) -> Arc<Snapshot> {
    mk_snapshot_with_secret(clusters, route_tag, "s1")
}

/// [`mk_snapshot`] plus one secret `cert` whose content is `secret_tag`.
pub(super) fn mk_snapshot_with_secret(
    clusters: &[(&str, u64)],
    route_tag: &str,
    secret_tag: &str,
) -> Arc<Snapshot> {
    let sds = vec![Resource::encode(
        "cert",
        &Secret {
            name: format!("cert#{secret_tag}"),
            ..Default::default()
        },
    )];
    let cds = clusters
        .iter()
        .map(|(n, _)| {
            Resource::encode(
                *n,
                &Cluster {
                    name: n.to_string(),
                    ..Default::default()
                },
            )
        })
        .collect();
    let eds = clusters
        .iter()
        .map(|(n, tag)| {
            let cla = ClusterLoadAssignment {
                cluster_name: format!("{n}#{tag}"),
                ..Default::default()
            };
            Resource::encode(*n, &cla)
        })
        .collect();
    let lds = vec![Resource::encode(
        "l",
        &Listener {
            name: "l".into(),
            ..Default::default()
        },
    )];
    let rds = vec![Resource::encode(
        "l",
        &RouteConfiguration {
            name: format!("l#{route_tag}"),
            ..Default::default()
        },
    )];
    let rtds = vec![Resource::encode(
        "sluice",
        &Runtime {
            name: "sluice".into(),
            layer: None,
        },
    )];
    Arc::new(Snapshot::new([rtds, sds, cds, eds, lds, rds]))
}

/// An RTDS layer `name` holding `keys` as numbers (what a rollout step
/// changes).
pub(super) fn mk_runtime(name: &str, keys: &[(&str, f64)]) -> Runtime {
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let number = |v: f64| Value {
        kind: Some(Kind::NumberValue(v)),
    };
    Runtime {
        name: name.into(),
        layer: Some(Struct {
            fields: keys
                .iter()
                .map(|(k, v)| (k.to_string(), number(*v)))
                .collect(),
        }),
    }
}

fn mk_node() -> Node {
    Node {
        id: "envoy-1".into(),
        cluster: "edge".into(),
        ..Default::default()
    }
}

pub(super) fn sotw(ty: TypeUrl, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.into(),
        node: Some(mk_node()),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        type_url: ty.as_str().into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn nack(mut req: DiscoveryRequest, msg: &str) -> DiscoveryRequest {
    req.error_detail = Some(Status {
        code: 3,
        message: msg.into(),
        details: vec![],
    });
    req
}

pub(super) fn delta(
    ty: TypeUrl,
    sub: &[&str],
    unsub: &[&str],
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(mk_node()),
        type_url: ty.as_str().into(),
        resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsub.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

pub(super) fn sotw_responses(out: &Output) -> Vec<&wire::DiscoveryResponse> {
    out.responses
        .iter()
        .map(|r| match r {
            Response::Sotw(r) => r,
            Response::Delta(_) => panic!("delta response on a SotW stream"),
        })
        .collect()
}

pub(super) fn delta_responses(out: &Output) -> Vec<&wire::DeltaDiscoveryResponse> {
    out.responses
        .iter()
        .map(|r| match r {
            Response::Delta(r) => r,
            Response::Sotw(_) => panic!("SotW response on a delta stream"),
        })
        .collect()
}

/// Names of the resources in a SotW response, decoded from the bytes.
pub(super) fn names(resp: &wire::DiscoveryResponse) -> Vec<String> {
    use prost::Message;
    resp.resources
        .iter()
        .map(|a| match TypeUrl::parse(&a.type_url).expect("known type") {
            RTDS => Runtime::decode(a.value.clone()).expect("runtime").name,
            SDS => Secret::decode(a.value.clone()).expect("secret").name,
            CDS => Cluster::decode(a.value.clone()).expect("cluster").name,
            LDS => Listener::decode(a.value.clone()).expect("listener").name,
            EDS => {
                ClusterLoadAssignment::decode(a.value.clone())
                    .expect("cla")
                    .cluster_name
            }
            RDS => {
                RouteConfiguration::decode(a.value.clone())
                    .expect("rc")
                    .name
            }
        })
        .collect()
}

pub(super) fn ty_of(r: &Response) -> TypeUrl {
    let url = match r {
        Response::Sotw(r) => &r.type_url,
        Response::Delta(r) => &r.type_url,
    };
    TypeUrl::parse(url).expect("known type")
}

/// Drives a SotW session through Envoy's usual start-up: CDS wildcard, EDS
/// for the clusters, LDS wildcard, RDS for `l`, ACKing everything.
/// Returns the session and the last (version, nonce) per type.
pub(super) fn sotw_started(
    snap: Arc<Snapshot>,
    clusters: &[&str],
) -> (Session, HashMap<TypeUrl, (String, String)>) {
    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(snap);
    let mut acks = HashMap::new();
    for (ty, names) in [
        (CDS, vec![]),
        (EDS, clusters.to_vec()),
        (LDS, vec![]),
        (RDS, vec!["l"]),
    ] {
        let out = s
            .on_sotw_request(sotw(ty, &names, "", ""))
            .expect("request");
        let resp = sotw_responses(&out);
        assert_eq!(resp.len(), 1, "{ty} gets one response");
        let out = s
            .on_sotw_request(sotw(ty, &names, &resp[0].version_info, &resp[0].nonce))
            .expect("ack");
        assert!(out.responses.is_empty(), "an ACK gets no reply");
        acks.insert(ty, (resp[0].version_info.clone(), resp[0].nonce.clone()));
    }
    (s, acks)
}

mod delta;
mod sotw;

#[test]
fn grpc_clients_are_told_apart_by_metadata_then_user_agent() {
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let with = |agent: &str, declared: Option<&str>| Node {
        id: "n".into(),
        user_agent_name: agent.into(),
        metadata: declared.map(|d| Struct {
            fields: [(
                CLIENT_METADATA_KEY.to_string(),
                Value {
                    kind: Some(Kind::StringValue(d.into())),
                },
            )]
            .into(),
        }),
        ..Node::default()
    };
    assert_eq!(data_plane_of(&with("envoy", None)), DataPlane::Envoy);
    assert_eq!(data_plane_of(&with("", None)), DataPlane::Envoy);
    assert_eq!(
        data_plane_of(&with("gRPC C-core linux/x86_64 Python", None)),
        DataPlane::Grpc
    );
    assert_eq!(data_plane_of(&with("gRPC Go", None)), DataPlane::Grpc);
    assert_eq!(data_plane_of(&with("envoy", Some("grpc"))), DataPlane::Grpc);
    assert_eq!(
        data_plane_of(&with("gRPC Go", Some("envoy"))),
        DataPlane::Envoy
    );
    // An unknown value says nothing: the user agent decides.
    assert_eq!(data_plane_of(&with("gRPC Go", Some("x"))), DataPlane::Grpc);
}
