//! Delta: subscriptions, reconnects with initial versions, NACKs; and
//! what every stream shares (versions by content, one encoding).

use super::*;

#[test]
fn a_delta_request_without_type_url_is_an_error_first_or_later() {
    let mut s = Session::new(Mode::Delta);
    s.on_snapshot(mk_snapshot(&[("a", 1)], "r"));
    let mut req = delta(CDS, &[], &[], "");
    req.type_url.clear();
    assert_eq!(s.on_delta_request(req), Err(ProtocolError::MissingTypeUrl));

    let mut s = Session::new(Mode::Delta);
    s.on_snapshot(mk_snapshot(&[("a", 1)], "r"));
    let out = s.on_delta_request(delta(CDS, &[], &[], "")).expect("req");
    let r = delta_responses(&out)[0].clone();
    let mut req = delta(CDS, &[], &[], &r.nonce);
    req.type_url.clear();
    assert_eq!(s.on_delta_request(req), Err(ProtocolError::MissingTypeUrl));
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
