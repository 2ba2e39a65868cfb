//! The session with secrets (SDS): by name only, pushed before the types
//! that reference them, and holding later types back while they wait.

use super::tests::*;
use super::*;

/// [`sotw_started`], plus the secret `cert` requested and ACKed.
fn started_with_secret(snap: Arc<Snapshot>) -> Session {
    let (mut s, _) = sotw_started(snap, &["a"]);
    let out = s
        .on_sotw_request(sotw(SDS, &["cert"], "", ""))
        .expect("request");
    let r = sotw_responses(&out)[0].clone();
    assert_eq!(names(&r), ["cert#s1"]);
    let out = s
        .on_sotw_request(sotw(SDS, &["cert"], &r.version_info, &r.nonce))
        .expect("ack");
    assert!(out.responses.is_empty());
    s
}

#[test]
fn secrets_are_sent_only_by_name() {
    let mut s = Session::new(Mode::Sotw);
    s.on_snapshot(mk_snapshot(&[("a", 1)], "r"));
    let out = s.on_sotw_request(sotw(SDS, &[], "", "")).expect("req");
    assert!(
        sotw_responses(&out).iter().all(|r| r.resources.is_empty()),
        "an empty SDS request is not a wildcard"
    );
    let out = s
        .on_sotw_request(sotw(SDS, &["cert", "other"], "", ""))
        .expect("req");
    let r = sotw_responses(&out)[0].clone();
    assert_eq!(r.type_url, SDS.as_str());
    assert_eq!(names(&r), ["cert#s1"]);
}

#[test]
fn a_new_secret_goes_before_clusters_endpoints_and_routes() {
    let mut s = started_with_secret(mk_snapshot(&[("a", 1)], "r1"));
    let out = s.on_snapshot(mk_snapshot_with_secret(&[("a", 2), ("b", 1)], "r2", "s2"));
    let order: Vec<TypeUrl> = out.responses.iter().map(ty_of).collect();
    assert_eq!(order, [SDS, CDS, EDS, RDS]);
    assert_eq!(names(sotw_responses(&out)[0]), ["cert#s2"]);
}

#[test]
fn a_secret_awaiting_its_ack_holds_later_types_back() {
    let mut s = started_with_secret(mk_snapshot(&[("a", 1)], "r1"));
    let out = s.on_snapshot(mk_snapshot_with_secret(&[("a", 1)], "r1", "s2"));
    let sds = sotw_responses(&out)[0].clone();
    assert_eq!(names(&sds), ["cert#s2"]);
    // s3 and a route change arrive before s2 is ACKed: nothing overtakes.
    let out = s.on_snapshot(mk_snapshot_with_secret(&[("a", 1)], "r2", "s3"));
    assert!(out.responses.is_empty(), "RDS waits behind SDS");
    let out = s
        .on_sotw_request(sotw(SDS, &["cert"], &sds.version_info, &sds.nonce))
        .expect("ack");
    let order: Vec<TypeUrl> = out.responses.iter().map(ty_of).collect();
    assert_eq!(order, [SDS, RDS]);
    assert_eq!(names(sotw_responses(&out)[0]), ["cert#s3"]);
}

#[test]
fn delta_secrets_by_name_with_missing_ones_reported() {
    let mut s = Session::new(Mode::Delta);
    s.on_snapshot(mk_snapshot(&[("a", 1)], "r"));
    let out = s
        .on_delta_request(delta(SDS, &["cert", "ghost"], &[], ""))
        .expect("req");
    let r = delta_responses(&out)[0].clone();
    let got: Vec<&str> = r.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(got, ["cert"]);
    assert_eq!(r.removed_resources, ["ghost"]);
    assert_eq!(
        s.status()["sds"].sent.as_deref(),
        Some(r.system_version_info.as_str())
    );
}
