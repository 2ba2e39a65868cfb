//! SotW: wildcards, ACK/NACK, stale nonces, push order and coalescing.

use super::*;

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
fn a_nacked_first_response_leaves_nothing_held_and_is_not_resent() {
    let snap = mk_snapshot(&[("a", 1), ("b", 1)], "r1");
    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(snap.clone());
    let out = s.on_sotw_request(sotw(CDS, &[], "", "")).expect("request");
    let first = sotw_responses(&out)[0].clone();
    assert_eq!(names(&first), ["a", "b"]);
    assert!(s.status()["cds"].in_flight);

    let out = s
        .on_sotw_request(nack(sotw(CDS, &[], "", &first.nonce), "bad cluster"))
        .expect("nack");
    assert!(
        out.responses.is_empty(),
        "a NACK must not trigger a re-send"
    );
    assert_eq!(s.status()["cds"].acked, None, "nothing was ever accepted");
    // The same config again: the rejected versions stay unsent.
    assert!(s
        .on_snapshot(mk_snapshot(&[("a", 1), ("b", 1)], "r1"))
        .responses
        .is_empty());
    // A new cluster: sent, without the rejected versions.
    let out = s.on_snapshot(mk_snapshot(&[("a", 1), ("b", 1), ("c", 1)], "r1"));
    let resp = sotw_responses(&out);
    assert_eq!(resp.len(), 1);
    assert_eq!(ty_of(&out.responses[0]), CDS);
    assert_eq!(names(resp[0]), ["c"]);
}

#[test]
fn a_repeated_subscription_in_any_order_changes_nothing() {
    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(mk_snapshot(&[("a", 1), ("b", 1), ("c", 1)], "r1"));
    let out = s
        .on_sotw_request(sotw(CDS, &["a", "b"], "", ""))
        .expect("request");
    let r = sotw_responses(&out)[0].clone();
    assert_eq!(names(&r), ["a", "b"]);
    // The ACK names the same clusters in another order: nothing to send.
    let out = s
        .on_sotw_request(sotw(CDS, &["b", "a"], &r.version_info, &r.nonce))
        .expect("ack");
    assert!(out.responses.is_empty());
    // The same number of names, one different: `c` is sent.
    let out = s
        .on_sotw_request(sotw(CDS, &["c", "a"], &r.version_info, &r.nonce))
        .expect("request");
    let r = sotw_responses(&out)[0].clone();
    assert_eq!(names(&r), ["a", "c"]);
    // A duplicate does not pass for the old set either.
    let out = s
        .on_sotw_request(sotw(CDS, &["b", "b"], &r.version_info, &r.nonce))
        .expect("request");
    assert_eq!(names(sotw_responses(&out)[0]), ["b"]);
}

#[test]
fn sotw_streams_naming_the_same_clusters_share_one_set() {
    let names: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    let clusters: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let snap = mk_snapshot(&clusters, "r");
    let start = |order: &[&str]| {
        let mut s = Session::new(Mode::Sotw);
        s.on_snapshot(snap.clone());
        let out = s.on_sotw_request(sotw(CDS, order, "", "")).expect("cds");
        let mut want: Vec<&str> = order.to_vec();
        want.sort_unstable();
        want.dedup();
        assert_eq!(names_of(&out), want, "every named cluster is sent");
        s
    };
    let mut forward: Vec<&str> = names.iter().map(String::as_str).collect();
    let a = start(&forward);
    forward.reverse();
    forward.push("c03"); // a duplicate changes nothing
    let b = start(&forward);
    assert!(Arc::ptr_eq(
        &a.types[CDS.index()].names,
        &b.types[CDS.index()].names
    ));
    // One name fewer is another set.
    let c = start(&forward[1..20]);
    assert_eq!(c.types[CDS.index()].names.len(), 19);
    assert!(!c.types[CDS.index()].names.contains("c19"));
}

fn names_of(out: &Output) -> Vec<String> {
    sotw_responses(out)
        .first()
        .map(|r| names(r))
        .unwrap_or_default()
}

#[test]
fn long_nack_errors_keep_their_start_and_their_reason_at_the_end() {
    let (mut s, _) = sotw_started(mk_snapshot(&[("a", 1)], "r1"), &["a"]);
    let out = s.on_snapshot(mk_snapshot(&[("a", 1)], "r2"));
    let r = sotw_responses(&out)[0].clone();
    // Envoy echoes the offending value first and says what is wrong last;
    // multi-byte characters sit where the cuts fall.
    let long = format!(
        "Proto constraint validation failed (route 'r': {}): RE2 program size of 277 > max program size of 100",
        "é".repeat(5_000)
    );
    s.on_sotw_request(nack(sotw(RDS, &["l"], "", &r.nonce), &long))
        .expect("nack");
    let err = s.status()["rds"].nack.clone().expect("nack").error;
    assert!(
        err.starts_with("Proto constraint validation failed (route 'r': éé"),
        "{err}"
    );
    assert!(
        err.ends_with("RE2 program size of 277 > max program size of 100"),
        "the reason is kept: {err}"
    );
    let cut = long.len() - (err.len() - " … [9999 bytes cut] … ".len());
    assert!(err.contains(&format!(" … [{cut} bytes cut] … ")), "{err}");
    assert!(err.len() <= MAX_ERROR_DETAIL + " … [99999 bytes cut] … ".len());
    // A short error is kept whole.
    let out = s.on_snapshot(mk_snapshot(&[("a", 1)], "r3"));
    let r = sotw_responses(&out)[0].clone();
    s.on_sotw_request(nack(sotw(RDS, &["l"], "", &r.nonce), "short"))
        .expect("nack");
    assert_eq!(s.status()["rds"].nack.clone().expect("nack").error, "short");
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
    snap = Snapshot::new([
        by_type(RTDS),
        by_type(SDS),
        cds,
        by_type(EDS),
        by_type(LDS),
        by_type(RDS),
    ]);
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
    req.type_url = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig".into();
    let out = s.on_sotw_request(req).expect("req");
    assert!(out.responses.is_empty());
    assert!(matches!(out.events[0], Event::UnknownType { .. }));
}

#[test]
fn a_request_without_type_url_is_an_error_first_or_later() {
    // ADS multiplexes every type on one stream: a request must say which
    // it is about (only the singleton xDS services imply it).
    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(mk_snapshot(&[("a", 1)], "r"));
    let mut req = sotw(CDS, &[], "", "");
    req.type_url.clear();
    assert_eq!(s.on_sotw_request(req), Err(ProtocolError::MissingTypeUrl));
    assert!(s.node().is_none(), "a refused request changes nothing");

    let (mut s, acks) = sotw_started(mk_snapshot(&[("a", 1)], "r1"), &["a"]);
    let (version, nonce) = &acks[&CDS];
    let mut req = sotw(CDS, &[], version, nonce);
    req.type_url.clear();
    assert_eq!(s.on_sotw_request(req), Err(ProtocolError::MissingTypeUrl));
}

#[test]
fn the_rtds_layer_is_served_by_name_and_a_runtime_change_pushes_it_alone() {
    let snap = mk_snapshot(&[("a", 1)], "r1");
    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(snap.clone());
    let out = s
        .on_sotw_request(sotw(RTDS, &["sluice"], "", ""))
        .expect("request");
    let resp = sotw_responses(&out);
    assert_eq!(names(resp[0]), ["sluice"]);
    s.on_sotw_request(sotw(
        RTDS,
        &["sluice"],
        &resp[0].version_info,
        &resp[0].nonce,
    ))
    .expect("ack");
    let out = s.on_sotw_request(sotw(CDS, &[], "", "")).expect("request");
    let cds = sotw_responses(&out);
    s.on_sotw_request(sotw(CDS, &[], &cds[0].version_info, &cds[0].nonce))
        .expect("ack");

    // A rollout step: the layer's keys change, nothing else.
    let layer = Resource::encode(
        "sluice",
        &mk_runtime("sluice", &[("sluice.rollout.a.a~v2", 10.0)]),
    );
    let next = snap
        .with_replaced(RTDS, &[("sluice".to_string(), Arc::new(layer))].into())
        .expect("changed");
    let out = s.on_snapshot(Arc::new(next.clone()));
    assert_eq!(out.responses.iter().map(ty_of).collect::<Vec<_>>(), [RTDS]);
    let resp = sotw_responses(&out);
    assert_eq!(resp[0].version_info, next.version(RTDS));
    let rt =
        <Runtime as prost::Message>::decode(resp[0].resources[0].value.clone()).expect("runtime");
    assert_eq!(rt.layer.map(|l| l.fields.len()), Some(1));
}

#[test]
fn a_runtime_layer_awaiting_its_ack_holds_no_other_type_back() {
    let runtime = |w: f64| Resource::encode("sluice", &mk_runtime("sluice", &[("k", w)]));
    let with_layer = |snap: &Snapshot, w: f64| {
        let layer = [("sluice".to_string(), Arc::new(runtime(w)))].into();
        Arc::new(snap.with_replaced(RTDS, &layer).expect("changed"))
    };
    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(mk_snapshot(&[("a", 1)], "r1"));
    for (ty, names) in [(RTDS, &["sluice"][..]), (RDS, &["l"][..])] {
        let out = s.on_sotw_request(sotw(ty, names, "", "")).expect("request");
        let r = sotw_responses(&out);
        s.on_sotw_request(sotw(ty, names, &r[0].version_info, &r[0].nonce))
            .expect("ack");
    }
    // A runtime step goes out and is not ACKed yet,
    let step = with_layer(&mk_snapshot(&[("a", 1)], "r1"), 10.0);
    let out = s.on_snapshot(step);
    assert_eq!(out.responses.iter().map(ty_of).collect::<Vec<_>>(), [RTDS]);
    // ...when the next step comes with a route change: the step waits for
    // that ACK, the routes go out at once.
    let next = with_layer(&mk_snapshot(&[("a", 1)], "r2"), 20.0);
    let out = s.on_snapshot(next);
    assert_eq!(out.responses.iter().map(ty_of).collect::<Vec<_>>(), [RDS]);
}
