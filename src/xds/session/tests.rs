use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::rpc::Status;

use super::*;

pub(super) const CDS: TypeUrl = TypeUrl::Cluster;
pub(super) const EDS: TypeUrl = TypeUrl::Endpoint;
pub(super) const LDS: TypeUrl = TypeUrl::Listener;
pub(super) const RDS: TypeUrl = TypeUrl::Route;
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
    Arc::new(Snapshot::new([sds, cds, eds, lds, rds]))
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

#[test]
fn sotw_wildcard_cds_gets_every_cluster_and_ack_gets_no_reply() {
    let snap = mk_snapshot(&[("a", 1), ("b", 1)], "r1");
    let mut s = Session::new(Mode::Sotw);
    assert!(
        s.on_snapshot(snap.clone()).responses.is_empty(),
        "nothing before a request"
    );
    let out = s.on_sotw_request(sotw(CDS, &[], "", "")).expect("request");
    let resp = sotw_responses(&out);
    assert_eq!(resp.len(), 1);
    assert_eq!(names(resp[0]), ["a", "b"]);
    assert_eq!(
        resp[0].version_info,
        snap.version(CDS),
        "full CDS set = snapshot version"
    );
    assert_eq!(s.node().expect("node").group, "edge");

    let out = s
        .on_sotw_request(sotw(CDS, &[], &resp[0].version_info, &resp[0].nonce))
        .expect("ack");
    assert!(out.responses.is_empty());
    assert_eq!(
        out.events,
        [Event::Acked {
            ty: CDS,
            version: snap.version(CDS).into(),
            nonce: resp[0].nonce.clone()
        }]
    );
    assert_eq!(s.status()["cds"].acked.as_deref(), Some(snap.version(CDS)));
}

#[test]
fn empty_wildcard_is_answered_and_explicit_star_is_wildcard() {
    let empty = Arc::new(Snapshot::default());
    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(empty);
    let out = s.on_sotw_request(sotw(LDS, &[], "", "")).expect("request");
    let resp = sotw_responses(&out);
    assert_eq!(resp.len(), 1, "an empty wildcard set is still answered");
    assert!(resp[0].resources.is_empty());

    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(mk_snapshot(&[("a", 1), ("b", 1)], "r"));
    let out = s
        .on_sotw_request(sotw(CDS, &["*", "zzz"], "", ""))
        .expect("request");
    assert_eq!(names(sotw_responses(&out)[0]), ["a", "b"]);

    // Once names were given, an empty list means "nothing", not wildcard.
    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(mk_snapshot(&[("a", 1), ("b", 1)], "r"));
    let out = s
        .on_sotw_request(sotw(CDS, &["a"], "", ""))
        .expect("request");
    let r = sotw_responses(&out)[0].clone();
    assert_eq!(names(&r), ["a"]);
    let out = s
        .on_sotw_request(sotw(CDS, &[], &r.version_info, &r.nonce))
        .expect("req");
    assert!(out.responses.is_empty(), "the client dropped `a` itself");
    let out = s.on_snapshot(mk_snapshot(&[("a", 1), ("b", 1), ("c", 1)], "r"));
    assert!(
        out.responses.is_empty(),
        "not subscribed to anything: new clusters stay unsent"
    );
}

#[test]
fn nack_is_recorded_and_the_version_is_never_resent() {
    let (mut s, acks) = sotw_started(mk_snapshot(&[("a", 1)], "r1"), &["a"]);
    let (good_version, _) = acks[&RDS].clone();

    let out = s.on_snapshot(mk_snapshot(&[("a", 1)], "bad"));
    let resp = sotw_responses(&out);
    assert_eq!(resp.len(), 1);
    assert_eq!(ty_of(&out.responses[0]), RDS);
    let bad = resp[0].clone();

    let out = s
        .on_sotw_request(nack(
            sotw(RDS, &["l"], &good_version, &bad.nonce),
            "route rejected",
        ))
        .expect("nack");
    assert!(
        out.responses.is_empty(),
        "a NACK must not trigger a re-send"
    );
    assert_eq!(
        out.events,
        [Event::Nacked {
            ty: RDS,
            version: bad.version_info.clone(),
            nonce: bad.nonce.clone(),
            error: "route rejected".into()
        }]
    );
    let st = &s.status()["rds"];
    assert_eq!(
        st.acked.as_deref(),
        Some(good_version.as_str()),
        "stays on last ACKed"
    );
    assert_eq!(
        st.nack.as_ref().map(|n| n.error.as_str()),
        Some("route rejected")
    );

    // The same config again (e.g. an unrelated no-op publish): nothing sent.
    assert!(s
        .on_snapshot(mk_snapshot(&[("a", 1)], "bad"))
        .responses
        .is_empty());
    // A resource hint at the old version does not bring it back either.
    let out = s
        .on_sotw_request(sotw(RDS, &["l"], &good_version, &bad.nonce))
        .expect("req");
    assert!(out.responses.is_empty());

    // A real change is pushed.
    let out = s.on_snapshot(mk_snapshot(&[("a", 1)], "fixed"));
    assert_eq!(sotw_responses(&out).len(), 1);
    assert_eq!(ty_of(&out.responses[0]), RDS);
}

#[test]
fn long_nack_errors_are_truncated() {
    let (mut s, _) = sotw_started(mk_snapshot(&[("a", 1)], "r1"), &["a"]);
    let out = s.on_snapshot(mk_snapshot(&[("a", 1)], "r2"));
    let r = sotw_responses(&out)[0].clone();
    let long = "x".repeat(10_000);
    s.on_sotw_request(nack(sotw(RDS, &["l"], "", &r.nonce), &long))
        .expect("nack");
    let err = s.status()["rds"].nack.clone().expect("nack").error;
    assert!(err.len() <= MAX_ERROR_DETAIL + "…".len());
}

#[test]
fn stale_nonce_is_ignored() {
    let (mut s, acks) = sotw_started(mk_snapshot(&[("a", 1), ("b", 1)], "r1"), &["a", "b"]);
    let out = s.on_snapshot(mk_snapshot(&[("a", 2), ("b", 1)], "r1"));
    let resp = sotw_responses(&out)[0].clone();
    // A NACK carrying the previous (now stale) nonce changes nothing.
    let (v, old_nonce) = &acks[&EDS];
    let out = s
        .on_sotw_request(nack(sotw(EDS, &["a"], v, old_nonce), "late"))
        .expect("req");
    assert_eq!(out, Output::default());
    assert!(s.status()["eds"].nack.is_none());
    assert!(
        s.status()["eds"].in_flight,
        "the new response is still in flight"
    );
    // The ACK with the current nonce settles it.
    let out = s.on_sotw_request(sotw(EDS, &["a", "b"], &resp.version_info, &resp.nonce));
    assert!(matches!(out.expect("ack").events[0], Event::Acked { .. }));
}

#[test]
fn subscription_to_a_missing_resource_is_remembered_until_it_exists() {
    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(mk_snapshot(&[("a", 1)], "r"));
    let out = s
        .on_sotw_request(sotw(EDS, &["a", "later"], "", ""))
        .expect("req");
    let r = sotw_responses(&out)[0].clone();
    assert_eq!(names(&r), ["a#1"]);
    s.on_sotw_request(sotw(EDS, &["a", "later"], &r.version_info, &r.nonce))
        .expect("ack");

    let out = s.on_snapshot(mk_snapshot(&[("a", 1), ("later", 7)], "r"));
    let resp = sotw_responses(&out);
    let eds: Vec<_> = resp.iter().filter(|r| r.type_url == EDS.as_str()).collect();
    assert_eq!(names(eds[0]), ["later#7"], "only the new resource is sent");
}

#[test]
fn pushes_follow_cds_eds_lds_rds_order() {
    let (mut s, _) = sotw_started(mk_snapshot(&[("a", 1)], "r1"), &["a"]);
    let out = s.on_snapshot(mk_snapshot(&[("a", 2), ("b", 1)], "r2"));
    let order: Vec<TypeUrl> = out.responses.iter().map(ty_of).collect();
    // LDS did not change; CDS (new cluster b) precedes EDS precedes RDS.
    assert_eq!(order, [CDS, EDS, RDS]);
}

#[test]
fn a_changed_cluster_gets_its_endpoints_again() {
    let (mut s, acks) = sotw_started(mk_snapshot(&[("a", 1), ("b", 1)], "r1"), &["a", "b"]);
    // Cluster `a` changes (different cluster body), endpoints identical.
    let mut snap = (*mk_snapshot(&[("a", 1), ("b", 1)], "r1")).clone();
    let changed = Cluster {
        name: "a".into(),
        alt_stat_name: "v2".into(),
        ..Default::default()
    };
    let mut cds: Vec<Resource> = snap
        .resources(CDS)
        .values()
        .map(|r| (**r).clone())
        .collect();
    cds[0] = Resource::encode("a", &changed);
    let by_type = |ty: TypeUrl| snap.resources(ty).values().map(|r| (**r).clone()).collect();
    snap = Snapshot::new([by_type(SDS), cds, by_type(EDS), by_type(LDS), by_type(RDS)]);
    let out = s.on_snapshot(Arc::new(snap));
    let resp = sotw_responses(&out);
    assert_eq!(
        out.responses.iter().map(ty_of).collect::<Vec<_>>(),
        [CDS, EDS]
    );
    assert_eq!(
        names(resp[1]),
        ["a#1"],
        "only the changed cluster's CLA, unchanged content"
    );
    assert_ne!(resp[1].nonce, acks[&EDS].1);
}

#[test]
fn removed_cluster_goes_only_after_routes_are_acked() {
    let (mut s, _) = sotw_started(mk_snapshot(&[("a", 1), ("b", 1)], "r1"), &["a", "b"]);
    // New config: b removed and the route changes (stops pointing at b).
    let out = s.on_snapshot(mk_snapshot(&[("a", 1)], "r2"));
    let order: Vec<TypeUrl> = out.responses.iter().map(ty_of).collect();
    assert_eq!(
        order,
        [RDS],
        "CDS keeps b while the new routes are in flight"
    );
    let rds = sotw_responses(&out)[0].clone();

    let out = s
        .on_sotw_request(sotw(RDS, &["l"], &rds.version_info, &rds.nonce))
        .expect("ack");
    let resp = sotw_responses(&out);
    assert_eq!(out.responses.iter().map(ty_of).collect::<Vec<_>>(), [CDS]);
    assert_eq!(names(resp[0]), ["a"], "b removed last");
}

#[test]
fn one_response_in_flight_per_type_coalesces_changes() {
    let (mut s, _) = sotw_started(mk_snapshot(&[("a", 1)], "r1"), &["a"]);
    let out = s.on_snapshot(mk_snapshot(&[("a", 2)], "r1"));
    let first = sotw_responses(&out)[0].clone();
    assert!(s
        .on_snapshot(mk_snapshot(&[("a", 3)], "r1"))
        .responses
        .is_empty());
    assert!(s
        .on_snapshot(mk_snapshot(&[("a", 4)], "r1"))
        .responses
        .is_empty());
    let out = s.on_sotw_request(sotw(EDS, &["a"], &first.version_info, &first.nonce));
    let out = out.expect("ack");
    let resp = sotw_responses(&out);
    assert_eq!(resp.len(), 1);
    assert_eq!(names(resp[0]), ["a#4"], "only the latest state is sent");
}

#[test]
fn first_request_without_node_is_an_error() {
    let mut s = Session::new(Mode::Sotw);
    let mut req = sotw(CDS, &[], "", "");
    req.node = None;
    assert_eq!(s.on_sotw_request(req), Err(ProtocolError::MissingNode));
    // Later requests may omit it (set_node_on_first_message_only).
    let mut s = Session::new(Mode::Sotw);
    s.on_sotw_request(sotw(CDS, &[], "", "")).expect("first");
    let mut req = sotw(LDS, &[], "", "");
    req.node = None;
    assert!(s.on_sotw_request(req).is_ok());
}

#[test]
fn unknown_types_are_answered_with_nothing() {
    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(mk_snapshot(&[("a", 1)], "r"));
    let mut req = sotw(CDS, &[], "", "");
    req.type_url = "type.googleapis.com/envoy.service.runtime.v3.Runtime".into();
    let out = s.on_sotw_request(req).expect("req");
    assert!(out.responses.is_empty());
    assert!(matches!(out.events[0], Event::UnknownType { .. }));
}

#[test]
fn delta_subscribe_unsubscribe_and_removed_resources() {
    let mut s = Session::new(Mode::Delta);
    s.on_snapshot(mk_snapshot(&[("a", 1), ("b", 1)], "r"));
    let out = s.on_delta_request(delta(CDS, &[], &[], "")).expect("req");
    let r = delta_responses(&out)[0].clone();
    let got: Vec<&str> = r.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(got, ["a", "b"]);
    s.on_delta_request(delta(CDS, &[], &[], &r.nonce))
        .expect("ack");

    // EDS: subscribe to a and to something that does not exist.
    let out = s
        .on_delta_request(delta(EDS, &["a", "ghost"], &[], ""))
        .expect("req");
    let r = delta_responses(&out)[0].clone();
    assert_eq!(
        r.resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(
        r.removed_resources,
        ["ghost"],
        "every subscribed name is answered"
    );
    s.on_delta_request(delta(EDS, &[], &[], &r.nonce))
        .expect("ack");

    // Cluster b goes away: CDS tells the client.
    let out = s.on_snapshot(mk_snapshot(&[("a", 1)], "r"));
    let r = delta_responses(&out)[0].clone();
    assert_eq!(r.removed_resources, ["b"]);
    assert!(r.resources.is_empty(), "unchanged a is not re-sent");
    s.on_delta_request(delta(CDS, &[], &[], &r.nonce))
        .expect("ack");

    // Unsubscribe a, then subscribe again: it must be sent again.
    let out = s
        .on_delta_request(delta(EDS, &[], &["a"], ""))
        .expect("req");
    assert!(out.responses.is_empty());
    let out = s
        .on_delta_request(delta(EDS, &["a"], &[], ""))
        .expect("req");
    let r = delta_responses(&out)[0].clone();
    assert_eq!(
        r.resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
}

#[test]
fn delta_reconnect_with_initial_versions_sends_only_changes() {
    let old = mk_snapshot(&[("a", 1), ("b", 1), ("c", 1)], "r");
    let now = mk_snapshot(&[("a", 1), ("b", 2), ("d", 1)], "r");
    let mut s = Session::new(Mode::Delta);
    s.on_snapshot(now.clone());
    let mut req = delta(EDS, &["a", "b", "c", "d"], &[], "");
    req.initial_resource_versions = ["a", "b", "c"]
        .iter()
        .map(|n| (n.to_string(), old.get(EDS, n).expect("res").version.clone()))
        .collect();
    let out = s.on_delta_request(req).expect("req");
    let r = delta_responses(&out)[0].clone();
    let sent: Vec<&str> = r.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(sent, ["b", "d"], "a is current, b changed, d is new");
    assert_eq!(r.removed_resources, ["c"]);
    assert_eq!(r.system_version_info, now.version(EDS));

    // Same versions: nothing at all.
    let mut s = Session::new(Mode::Delta);
    s.on_snapshot(now.clone());
    let mut req = delta(CDS, &[], &[], "");
    req.initial_resource_versions = now
        .resources(CDS)
        .values()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    assert!(s.on_delta_request(req).expect("req").responses.is_empty());
    assert_eq!(
        s.status()["cds"].acked.as_deref(),
        Some(now.version(CDS)),
        "status shows the version the proxy announced"
    );
}

#[test]
fn delta_nack_keeps_the_old_version_and_does_not_resend() {
    let mut s = Session::new(Mode::Delta);
    s.on_snapshot(mk_snapshot(&[("a", 1)], "r"));
    let out = s
        .on_delta_request(delta(EDS, &["a"], &[], ""))
        .expect("req");
    let r = delta_responses(&out)[0].clone();
    s.on_delta_request(delta(EDS, &[], &[], &r.nonce))
        .expect("ack");
    let out = s.on_snapshot(mk_snapshot(&[("a", 2)], "r"));
    let bad = delta_responses(&out)[0].clone();
    let mut req = delta(EDS, &[], &[], &bad.nonce);
    req.error_detail = Some(Status {
        code: 3,
        message: "bad endpoints".into(),
        details: vec![],
    });
    let out = s.on_delta_request(req).expect("nack");
    assert!(out.responses.is_empty());
    assert_eq!(
        s.status()["eds"].acked.as_deref(),
        Some(r.system_version_info.as_str())
    );
    assert!(s
        .on_snapshot(mk_snapshot(&[("a", 2)], "r"))
        .responses
        .is_empty());
    // Going back to the accepted content is a change again: client is told.
    let out = s.on_snapshot(mk_snapshot(&[("a", 3)], "r"));
    assert_eq!(delta_responses(&out).len(), 1);
}

#[test]
fn versions_depend_only_on_content() {
    let run = || {
        let mut s = Session::new(Mode::Sotw);
        s.on_snapshot(mk_snapshot(&[("a", 1), ("b", 2)], "r"));
        let out = s.on_sotw_request(sotw(CDS, &[], "", "")).expect("req");
        sotw_responses(&out)[0].clone()
    };
    assert_eq!(run(), run());
}

#[test]
fn every_stream_shares_one_encoding_of_a_resource() {
    let snap = mk_snapshot(&[("a", 1)], "r");
    let sent = |mode: Mode| {
        let mut s = Session::new(mode);
        s.on_snapshot(snap.clone());
        let out = match mode {
            Mode::Sotw => s.on_sotw_request(sotw(CDS, &[], "", "")),
            Mode::Delta => s.on_delta_request(delta(CDS, &[], &[], "")),
        };
        match &out.expect("req").responses[0] {
            Response::Sotw(r) => r.resources[0].value.clone(),
            Response::Delta(r) => r.resources[0].resource.clone().expect("any").value,
        }
    };
    let (a, b, c) = (sent(Mode::Sotw), sent(Mode::Sotw), sent(Mode::Delta));
    let original = &snap.get(CDS, "a").expect("a").body;
    for bytes in [&a, &b, &c] {
        assert_eq!(
            bytes.as_ptr(),
            original.as_ptr(),
            "payload copied instead of shared"
        );
    }
}

/// ACKs every delta response in `out` (and what the ACKs bring) and
/// returns the names of the endpoint resources sent.
fn ack_all_delta(s: &mut Session, out: Output) -> Vec<String> {
    let mut eds = Vec::new();
    let mut queue = out.responses;
    while let Some(Response::Delta(r)) = queue.pop() {
        let ty = TypeUrl::parse(&r.type_url).expect("known type");
        if ty == EDS {
            eds.extend(r.resources.iter().map(|r| r.name.clone()));
        }
        let out = s
            .on_delta_request(delta(ty, &[], &[], &r.nonce))
            .expect("ack");
        queue.extend(out.responses);
    }
    eds
}

#[test]
fn streams_with_the_same_subscription_stay_independent() {
    let names: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let snap = |c00: u64| {
        let clusters: Vec<(&str, u64)> = refs
            .iter()
            .map(|n| (*n, if *n == "c00" { c00 } else { 1 }))
            .collect();
        mk_snapshot(&clusters, "r")
    };
    let start = || {
        let mut s = Session::new(Mode::Delta);
        s.on_snapshot(snap(1));
        let out = s.on_delta_request(delta(CDS, &[], &[], "")).expect("cds");
        ack_all_delta(&mut s, out);
        let out = s.on_delta_request(delta(EDS, &refs, &[], "")).expect("eds");
        assert_eq!(ack_all_delta(&mut s, out).len(), 20);
        s
    };
    let (mut a, mut b) = (start(), start());
    // One copy of the names for both streams.
    assert!(Arc::ptr_eq(
        &a.types[EDS.index()].names,
        &b.types[EDS.index()].names
    ));

    // a drops c00; b must still get its changes, a must not.
    let out = a
        .on_delta_request(delta(EDS, &[], &["c00"], ""))
        .expect("unsub");
    assert!(out.responses.is_empty());
    assert!(b.types[EDS.index()].names.contains("c00"));
    let out = a.on_snapshot(snap(2));
    assert!(ack_all_delta(&mut a, out).is_empty(), "a unsubscribed c00");
    let out = b.on_snapshot(snap(2));
    assert_eq!(ack_all_delta(&mut b, out), ["c00"]);

    // Subscribing again makes the sets equal again: shared once more.
    let out = a
        .on_delta_request(delta(EDS, &["c00"], &[], ""))
        .expect("sub");
    assert_eq!(ack_all_delta(&mut a, out), ["c00"]);
    assert!(Arc::ptr_eq(
        &a.types[EDS.index()].names,
        &b.types[EDS.index()].names
    ));
}
