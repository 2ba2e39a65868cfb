//! The client state machine: what it requests, ACKs and NACKs, and what
//! config it serves, for hand-built responses.

use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, DiscoveryResponse, Resource as DeltaResource,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use super::*;
use crate::tests::{healthy, mk_cla_pb, mk_cluster_pb, mk_runtime_pb};

fn any(ty: TypeUrl, m: &impl Message) -> Any {
    Any {
        type_url: ty.as_str().into(),
        value: m.encode_to_vec(),
    }
}

fn mk_state(mode: Mode) -> ClientState {
    ClientState::new(
        mode,
        Node {
            id: "p".into(),
            ..Default::default()
        },
        Decoder::new(),
    )
}

fn sotw(ty: TypeUrl, version: &str, nonce: &str, resources: Vec<Any>) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.into(),
        resources,
        type_url: ty.as_str().into(),
        nonce: nonce.into(),
        ..Default::default()
    }
}

fn sotw_req(o: &Outbound) -> &DiscoveryRequest {
    match o {
        Outbound::Sotw(r) => r,
        other => panic!("{other:?}"),
    }
}

fn cluster(name: &str) -> Any {
    any(TypeUrl::Cluster, &mk_cluster_pb(name, LbPolicy::RoundRobin))
}

fn cla(name: &str, ports: &[u16]) -> Any {
    any(TypeUrl::Endpoint, &mk_cla_pb(name, &healthy(ports)))
}

#[test]
fn starts_with_cds_then_asks_eds_and_warms_until_endpoints_arrive() {
    let mut s = mk_state(Mode::Sotw);
    let start = s.start();
    assert_eq!(start.len(), 1);
    let first = sotw_req(&start[0]);
    assert_eq!(
        (first.type_url.as_str(), first.node.is_some()),
        (TypeUrl::Cluster.as_str(), true)
    );

    let (out, applied) = s.on_sotw(
        &sotw(TypeUrl::Cluster, "c1", "n1", vec![cluster("a")]),
        None,
    );
    assert_eq!(applied.map(|a| a.error), Some(None));
    let ack = sotw_req(&out[0]);
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("c1", "n1")
    );
    let eds = sotw_req(&out[1]);
    assert_eq!(
        (eds.type_url.as_str(), eds.resource_names.clone()),
        (TypeUrl::Endpoint.as_str(), vec!["a".to_string()])
    );
    // Warming: not served yet, and LDS waits.
    assert!(s.view().clusters.is_empty());
    assert_eq!(out.len(), 2);

    let (out, _) = s.on_sotw(
        &sotw(TypeUrl::Endpoint, "e1", "n2", vec![cla("a", &[1])]),
        None,
    );
    assert!(s.view().clusters.contains_key("a"));
    assert!(s.warming().is_empty());
    // Warm now: LDS is requested after the EDS ACK.
    let types: Vec<&str> = out.iter().map(|o| sotw_req(o).type_url.as_str()).collect();
    assert_eq!(
        types,
        [TypeUrl::Endpoint.as_str(), TypeUrl::Listener.as_str()]
    );
}

#[test]
fn updated_cluster_keeps_serving_the_old_version_until_endpoints_come_again() {
    let mut s = mk_state(Mode::Sotw);
    s.start();
    s.on_sotw(
        &sotw(TypeUrl::Cluster, "c1", "n1", vec![cluster("a")]),
        None,
    );
    s.on_sotw(
        &sotw(TypeUrl::Endpoint, "e1", "n2", vec![cla("a", &[1])]),
        None,
    );
    let mut changed = mk_cluster_pb("a", LbPolicy::LeastRequest);
    changed.alt_stat_name = "x".into();
    s.on_sotw(
        &sotw(
            TypeUrl::Cluster,
            "c2",
            "n3",
            vec![any(TypeUrl::Cluster, &changed)],
        ),
        None,
    );
    assert_eq!(
        s.view().clusters["a"].lb,
        crate::resources::LbPolicy::RoundRobin
    );
    assert!(s.warming().contains_key("a"));
    s.on_sotw(
        &sotw(TypeUrl::Endpoint, "e1", "n4", vec![cla("a", &[1])]),
        None,
    );
    assert_eq!(
        s.view().clusters["a"].lb,
        crate::resources::LbPolicy::LeastRequest
    );
}

#[test]
fn sotw_cds_is_full_state_but_eds_deletes_nothing() {
    let mut s = mk_state(Mode::Sotw);
    s.start();
    s.on_sotw(
        &sotw(
            TypeUrl::Cluster,
            "c1",
            "n1",
            vec![cluster("a"), cluster("b")],
        ),
        None,
    );
    s.on_sotw(
        &sotw(
            TypeUrl::Endpoint,
            "e1",
            "n2",
            vec![cla("a", &[1]), cla("b", &[2])],
        ),
        None,
    );
    // An EDS response with only `a` leaves `b` alone.
    s.on_sotw(
        &sotw(TypeUrl::Endpoint, "e2", "n3", vec![cla("a", &[3])]),
        None,
    );
    assert_eq!(s.view().endpoints.len(), 2);
    // A CDS response without `b` removes it, and its endpoints.
    let (out, _) = s.on_sotw(
        &sotw(TypeUrl::Cluster, "c2", "n4", vec![cluster("a")]),
        None,
    );
    assert_eq!(s.view().clusters.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(s.view().endpoints.keys().collect::<Vec<_>>(), ["a"]);
    let eds = out
        .iter()
        .map(sotw_req)
        .find(|r| r.type_url == TypeUrl::Endpoint.as_str());
    assert_eq!(
        eds.map(|r| r.resource_names.clone()),
        Some(vec!["a".to_string()])
    );
}

#[test]
fn bad_response_is_nacked_whole_with_the_last_good_version() {
    let mut s = mk_state(Mode::Sotw);
    s.start();
    s.on_sotw(
        &sotw(TypeUrl::Cluster, "c1", "n1", vec![cluster("a")]),
        None,
    );
    let garbage = Any {
        type_url: TypeUrl::Cluster.as_str().into(),
        value: vec![0xff, 0xff],
    };
    let (out, applied) = s.on_sotw(
        &sotw(TypeUrl::Cluster, "c2", "n2", vec![cluster("b"), garbage]),
        None,
    );
    let nack = sotw_req(&out[0]);
    assert_eq!(
        (nack.version_info.as_str(), nack.response_nonce.as_str()),
        ("c1", "n2")
    );
    let detail = nack.error_detail.clone().expect("error_detail");
    assert_eq!(detail.code, 13);
    assert!(
        detail.message.starts_with("Unable to unpack as Cluster"),
        "{}",
        detail.message
    );
    assert_eq!(applied.and_then(|a| a.error), Some(detail.message));
    // Nothing of it applied: `b` is not there, `a` still is.
    assert_eq!(s.version(TypeUrl::Cluster), "c1");
    assert!(!s.warming().contains_key("b"));

    let (out, _) = s.on_sotw(
        &sotw(
            TypeUrl::Cluster,
            "c3",
            "n3",
            vec![cluster("a"), cluster("a")],
        ),
        None,
    );
    let msg = sotw_req(&out[0]).error_detail.clone().map(|e| e.message);
    assert_eq!(msg.as_deref(), Some("duplicate cluster a found"));
    // Out of order, the repeat apart from the first.
    let (out, _) = s.on_sotw(
        &sotw(
            TypeUrl::Cluster,
            "c3",
            "n3b",
            vec![cluster("b"), cluster("a"), cluster("b")],
        ),
        None,
    );
    let msg = sotw_req(&out[0]).error_detail.clone().map(|e| e.message);
    assert_eq!(msg.as_deref(), Some("duplicate cluster b found"));

    let (out, _) = s.on_sotw(
        &sotw(TypeUrl::Cluster, "c4", "n4", vec![cluster("a")]),
        Some("forced".into()),
    );
    assert_eq!(
        sotw_req(&out[0])
            .error_detail
            .clone()
            .map(|e| e.message)
            .as_deref(),
        Some("forced")
    );
}

fn delta(
    ty: TypeUrl,
    version: &str,
    nonce: &str,
    resources: Vec<(&str, Any)>,
    removed: &[&str],
) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        system_version_info: version.into(),
        resources: resources
            .into_iter()
            .map(|(name, a)| DeltaResource {
                name: name.into(),
                version: format!("{name}-v"),
                resource: Some(a),
                ..Default::default()
            })
            .collect(),
        type_url: ty.as_str().into(),
        nonce: nonce.into(),
        removed_resources: removed.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn delta_applies_removals_and_reconnects_with_initial_versions() {
    let mut s = mk_state(Mode::Delta);
    s.start();
    s.on_delta(
        &delta(
            TypeUrl::Cluster,
            "s1",
            "n1",
            vec![("a", cluster("a")), ("b", cluster("b"))],
            &[],
        ),
        None,
    );
    let (out, _) = s.on_delta(
        &delta(
            TypeUrl::Endpoint,
            "s2",
            "n2",
            vec![("a", cla("a", &[1])), ("b", cla("b", &[2]))],
            &[],
        ),
        None,
    );
    assert!(
        matches!(&out[0], Outbound::Delta(r) if r.response_nonce == "n2" && r.error_detail.is_none())
    );
    assert_eq!(s.view().clusters.len(), 2);
    // Delta only removes what it names.
    let (out, _) = s.on_delta(&delta(TypeUrl::Cluster, "s3", "n3", vec![], &["b"]), None);
    assert_eq!(s.view().clusters.keys().collect::<Vec<_>>(), ["a"]);
    let unsub = out.iter().find_map(|o| match o {
        Outbound::Delta(r) if r.type_url == TypeUrl::Endpoint.as_str() => {
            Some(r.resource_names_unsubscribe.clone())
        }
        _ => None,
    });
    assert_eq!(unsub, Some(vec!["b".to_string()]));

    // Reconnect: CDS and EDS say what the proxy holds.
    let start = s.start();
    let init: Vec<_> = start
        .iter()
        .map(|o| match o {
            Outbound::Delta(r) => (
                r.type_url.clone(),
                r.initial_resource_versions
                    .clone()
                    .into_iter()
                    .collect::<Vec<_>>(),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        init[0],
        (
            TypeUrl::Cluster.as_str().to_string(),
            vec![("a".to_string(), "a-v".to_string())]
        )
    );
    assert_eq!(
        init[1],
        (
            TypeUrl::Endpoint.as_str().to_string(),
            vec![("a".to_string(), "a-v".to_string())]
        )
    );
}

#[test]
fn delta_name_must_match_the_body() {
    let mut s = mk_state(Mode::Delta);
    s.start();
    let (out, _) = s.on_delta(
        &delta(TypeUrl::Cluster, "s1", "n1", vec![("x", cluster("a"))], &[]),
        None,
    );
    assert!(matches!(&out[0], Outbound::Delta(r) if r.error_detail.is_some()));
}

/// Same keys, same (shared) values.
fn same_view(a: &View, b: &View) -> bool {
    fn eq<V>(x: &BTreeMap<String, Arc<V>>, y: &BTreeMap<String, Arc<V>>) -> bool {
        x.len() == y.len()
            && x.iter()
                .zip(y)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && Arc::ptr_eq(v1, v2))
    }
    eq(&a.clusters, &b.clusters)
        && eq(&a.endpoints, &b.endpoints)
        && eq(&a.listeners, &b.listeners)
        && eq(&a.routes, &b.routes)
}

#[test]
fn a_copy_kept_up_to_date_from_touched_entries_matches_the_view() {
    use crate::tests::mk_route_config;
    let route = |name: &str| any(TypeUrl::Route, &mk_route_config(name, vec![]));
    // SotW: full-state CDS removes, warming ends, clusters leave and with
    // them their endpoints (unsubscribed).
    let mut s = mk_state(Mode::Sotw);
    let mut copy = View::default();
    s.start();
    let steps = [
        sotw(
            TypeUrl::Cluster,
            "c1",
            "1",
            vec![cluster("a"), cluster("b")],
        ),
        sotw(
            TypeUrl::Endpoint,
            "e1",
            "2",
            vec![cla("a", &[1]), cla("b", &[2])],
        ),
        sotw(TypeUrl::Endpoint, "e2", "3", vec![cla("a", &[3])]),
        sotw(TypeUrl::Route, "r1", "4", vec![route("r")]),
        sotw(
            TypeUrl::Cluster,
            "c2",
            "5",
            vec![cluster("b"), cluster("c")],
        ),
        sotw(TypeUrl::Endpoint, "e3", "6", vec![cla("c", &[4])]),
    ];
    for (i, r) in steps.iter().enumerate() {
        let (_, applied) = s.on_sotw(r, None);
        assert_eq!(applied.map(|a| a.error), Some(None), "step {i}");
        let touched = s.take_touched();
        copy.update_from(s.view(), &touched);
        assert!(
            same_view(&copy, s.view()),
            "step {i}: {copy:?} vs {:?}",
            s.view()
        );
    }
    assert_eq!(
        copy.clusters.keys().collect::<Vec<_>>(),
        ["b", "c"],
        "a left, c warmed"
    );
    assert_eq!(copy.endpoints.keys().collect::<Vec<_>>(), ["b", "c"]);

    // Delta: explicit removals of clusters, endpoints and routes.
    let mut s = mk_state(Mode::Delta);
    let mut copy = View::default();
    s.start();
    let steps = [
        delta(
            TypeUrl::Cluster,
            "c1",
            "1",
            vec![("a", cluster("a")), ("b", cluster("b"))],
            &[],
        ),
        delta(
            TypeUrl::Endpoint,
            "e1",
            "2",
            vec![("a", cla("a", &[1])), ("b", cla("b", &[2]))],
            &[],
        ),
        delta(TypeUrl::Route, "r1", "3", vec![("r", route("r"))], &[]),
        delta(
            TypeUrl::Endpoint,
            "e2",
            "4",
            vec![("b", cla("b", &[5]))],
            &["a"],
        ),
        delta(TypeUrl::Cluster, "c2", "5", vec![], &["b"]),
        delta(TypeUrl::Route, "r2", "6", vec![], &["r"]),
    ];
    for (i, r) in steps.iter().enumerate() {
        let (_, applied) = s.on_delta(r, None);
        assert_eq!(applied.map(|a| a.error), Some(None), "step {i}");
        let touched = s.take_touched();
        copy.update_from(s.view(), &touched);
        assert!(
            same_view(&copy, s.view()),
            "step {i}: {copy:?} vs {:?}",
            s.view()
        );
    }
    assert_eq!(copy.clusters.keys().collect::<Vec<_>>(), ["a"]);
    assert!(copy.routes.is_empty());
    // Nothing changed since the last take: nothing to copy.
    assert_eq!(s.take_touched(), Touched::Some(vec![]));
}

#[test]
fn a_change_log_tells_a_watcher_what_changed_since_its_last_look() {
    let some = |names: &[&str]| {
        Touched::Some(
            names
                .iter()
                .map(|n| (Part::Endpoints, n.to_string()))
                .collect(),
        )
    };
    let since = |log: &ChangeLog, seen| -> Option<Vec<String>> {
        log.since(seen)
            .map(|it| it.map(|(_, n)| n.to_string()).collect())
    };
    let mut log = ChangeLog::default();
    assert_eq!(since(&log, 0), Some(vec![]));
    log.push(&some(&["a", "b"]));
    let seen = log.last();
    log.push(&some(&["c"]));
    log.push(&some(&["a"]));
    assert_eq!(
        since(&log, 0),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(since(&log, seen), Some(vec!["c".into(), "a".into()]));
    assert_eq!(since(&log, log.last()), Some(vec![]));

    // Older changes fall out: a watcher from before them must look at all.
    let seen = log.last();
    for i in 0..ChangeLog::KEEP {
        log.push(&some(&[&format!("x{i}")]));
    }
    assert_eq!(since(&log, 0), None);
    assert_eq!(since(&log, seen).map(|v| v.len()), Some(ChangeLog::KEEP));
    // So does a whole new view, however it came.
    let seen = log.last();
    log.push(&Touched::All);
    assert_eq!(since(&log, seen), None);
    assert_eq!(since(&log, log.last()), Some(vec![]));
    let seen = log.last();
    let many: Vec<String> = (0..ChangeLog::KEEP).map(|i| format!("y{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    log.push(&some(&refs));
    assert_eq!(since(&log, seen), None, "too many at once to list");
}

#[test]
fn with_an_rtds_layer_clusters_wait_for_it_and_it_is_asked_again_on_reconnect() {
    let mut s = mk_state(Mode::Sotw).with_runtime_layer(Some("sluice".into()));
    let start = s.start();
    let types: Vec<&str> = start
        .iter()
        .map(|o| sotw_req(o).type_url.as_str())
        .collect();
    assert_eq!(types, [TypeUrl::Runtime.as_str()], "RTDS alone first");
    assert_eq!(sotw_req(&start[0]).resource_names, ["sluice"]);

    let layer = |name: &str, w: f64| any(TypeUrl::Runtime, &mk_runtime_pb(name, &[("k", w)]));
    // A layer not asked for is ignored, as Envoy does.
    let (out, _) = s.on_sotw(
        &sotw(
            TypeUrl::Runtime,
            "r1",
            "n1",
            vec![layer("sluice", 5.0), layer("other", 1.0)],
        ),
        None,
    );
    assert_eq!(s.view().runtime_integer("k"), Some(5));
    assert_eq!(s.view().runtime.len(), 1);
    let next: Vec<&str> = out.iter().map(|o| sotw_req(o).type_url.as_str()).collect();
    assert_eq!(
        next,
        [TypeUrl::Runtime.as_str(), TypeUrl::Cluster.as_str()],
        "the ACK, then clusters"
    );
    // A reconnect asks for both at once, RTDS first.
    let restart = s.start();
    let again: Vec<&str> = restart
        .iter()
        .map(|o| sotw_req(o).type_url.as_str())
        .collect();
    assert_eq!(
        again,
        [TypeUrl::Runtime.as_str(), TypeUrl::Cluster.as_str()]
    );
}

#[test]
fn a_rejected_rtds_layer_still_lets_clusters_be_asked_for() {
    let mut s = mk_state(Mode::Sotw).with_runtime_layer(Some("sluice".into()));
    s.start();
    let (out, applied) = s.on_sotw(
        &sotw(TypeUrl::Runtime, "r1", "n1", vec![]),
        Some("forced".into()),
    );
    assert_eq!(applied.and_then(|a| a.error).as_deref(), Some("forced"));
    let types: Vec<&str> = out.iter().map(|o| sotw_req(o).type_url.as_str()).collect();
    assert_eq!(
        types,
        [TypeUrl::Runtime.as_str(), TypeUrl::Cluster.as_str()]
    );
    assert!(sotw_req(&out[0]).error_detail.is_some(), "the NACK first");
}
