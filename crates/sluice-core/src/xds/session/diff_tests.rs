//! Sessions fed snapshot diffs ([`Session::on_snapshot_diff`]) must behave
//! exactly like sessions that compare every resource
//! ([`Session::on_snapshot`]): same responses, same events, same status,
//! whatever the client does and however far the stream lags behind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::google::rpc::Status;
use proptest::prelude::*;

use super::tests::{
    delta, delta_responses, mk_snapshot, mk_snapshot_with_secret, sotw, ty_of, CDS, EDS, RDS,
};
use super::*;
use crate::xds::history::History;
use crate::xds::Snapshots;

fn snaps(s: &Arc<Snapshot>) -> Snapshots {
    Snapshots {
        groups: BTreeMap::new(),
        fallback: s.clone(),
    }
}

/// Publishes snapshots through a [`History`], as `serve` does.
struct Publisher {
    history: History,
    current: Snapshots,
}

impl Publisher {
    fn new(first: Arc<Snapshot>) -> Publisher {
        Publisher {
            history: History::default(),
            current: snaps(&first),
        }
    }

    fn publish(&mut self, snap: Arc<Snapshot>) -> Arc<Snapshot> {
        let mut next = snaps(&snap);
        self.history = self.history.advance(&self.current, &mut next);
        self.current = next;
        self.current.fallback.clone()
    }

    /// Hands `s` the latest snapshot with the diff from the one it has.
    fn deliver(&self, s: &mut Session) -> Output {
        let to = self.current.fallback.clone();
        let diff = s
            .snapshot()
            .cloned()
            .and_then(|from| self.history.diff("g", &from, &to));
        match diff {
            Some(d) => s.on_snapshot_diff(to, &d),
            None => s.on_snapshot(to),
        }
    }
}

fn eds_names(out: &Output) -> Vec<String> {
    delta_responses(out)
        .iter()
        .filter(|r| r.type_url == EDS.as_str())
        .flat_map(|r| r.resources.iter().map(|x| x.name.clone()))
        .collect()
}

/// A delta session holding `snap` with CDS (wildcard) and EDS for
/// `clusters` ACKed.
fn delta_started(snap: Arc<Snapshot>, clusters: &[&str]) -> Session {
    let mut s = Session::new(Mode::Delta);
    s.on_snapshot(snap);
    for (ty, names) in [(CDS, vec![]), (EDS, clusters.to_vec())] {
        let out = s.on_delta_request(delta(ty, &names, &[], "")).expect("req");
        let nonce = delta_responses(&out)[0].nonce.clone();
        s.on_delta_request(delta(ty, &[], &[], &nonce))
            .expect("ack");
    }
    s
}

#[test]
fn an_up_to_date_stream_sends_only_what_the_diff_names() {
    let s0 = mk_snapshot(&[("a", 1), ("b", 1), ("c", 1)], "r");
    let mut p = Publisher::new(s0.clone());
    let mut s = delta_started(s0, &["a", "b", "c"]);
    p.publish(mk_snapshot(&[("a", 1), ("b", 2), ("c", 1)], "r"));
    let out = p.deliver(&mut s);
    assert_eq!(eds_names(&out), ["b"]);
    assert_eq!(out.responses.len(), 1, "only EDS changed");
}

#[test]
fn a_stream_behind_by_several_publishes_gets_all_it_missed() {
    let s0 = mk_snapshot(&[("a", 1), ("b", 1), ("c", 1)], "r");
    let mut p = Publisher::new(s0.clone());
    let mut lagging = delta_started(s0.clone(), &["a", "b", "c"]);
    let mut full = delta_started(s0, &["a", "b", "c"]);
    p.publish(mk_snapshot(&[("a", 2), ("b", 1), ("c", 1)], "r"));
    p.publish(mk_snapshot(&[("a", 2), ("b", 1), ("c", 2)], "r"));
    let last = p.publish(mk_snapshot(&[("a", 2), ("b", 1), ("c", 3)], "r"));
    let out = p.deliver(&mut lagging);
    assert_eq!(
        eds_names(&out),
        ["a", "c"],
        "a from the first, c from the last"
    );
    assert_eq!(out, full.on_snapshot(last));
}

#[test]
fn a_diff_from_another_snapshot_is_not_trusted() {
    let s0 = mk_snapshot(&[("a", 1), ("b", 1)], "r");
    let s1 = mk_snapshot(&[("a", 2), ("b", 1)], "r");
    let s2 = mk_snapshot(&[("a", 2), ("b", 2)], "r");
    let mut s = delta_started(s0, &["a", "b"]);
    // A diff s1 → s2 names only b; the session is at s0 and also needs a.
    let d = crate::xds::history::SnapshotDiff::between(&s1, &s2);
    let out = s.on_snapshot_diff(s2, &d);
    assert_eq!(eds_names(&out), ["a", "b"]);
}

#[test]
fn a_pending_nack_is_still_honoured_on_the_diff_path() {
    let s0 = mk_snapshot(&[("a", 1), ("b", 1)], "r");
    let mut p = Publisher::new(s0.clone());
    let mut s = delta_started(s0, &["a", "b"]);
    p.publish(mk_snapshot(&[("a", 2), ("b", 1)], "r"));
    let out = p.deliver(&mut s);
    let nonce = delta_responses(&out)[0].nonce.clone();
    let mut nack = delta(EDS, &[], &[], &nonce);
    nack.error_detail = Some(Status {
        code: 3,
        message: "no".into(),
        details: vec![],
    });
    assert!(s.on_delta_request(nack).expect("nack").responses.is_empty());
    // Only b changes next: a's rejected version is not sent again.
    p.publish(mk_snapshot(&[("a", 2), ("b", 2)], "r"));
    assert_eq!(eds_names(&p.deliver(&mut s)), ["b"]);
}

#[test]
fn changes_made_while_a_response_awaits_its_ack_go_out_together_after_it() {
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let snap = |changed: usize| {
        let clusters: Vec<(&str, u64)> = refs
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, u64::from(i < changed) + 1))
            .collect();
        mk_snapshot(&clusters, "r")
    };
    let mut p = Publisher::new(snap(0));
    let mut s = delta_started(snap(0), &refs);
    p.publish(snap(1));
    let first = p.deliver(&mut s);
    assert_eq!(eds_names(&first), ["c0"]);
    // Not ACKed yet: every later publish only piles up.
    for changed in 2..=5 {
        p.publish(snap(changed));
        assert!(p.deliver(&mut s).responses.is_empty(), "one EDS in flight");
    }
    let nonce = delta_responses(&first)[0].nonce.clone();
    let out = s
        .on_delta_request(delta(EDS, &[], &[], &nonce))
        .expect("ack");
    assert_eq!(eds_names(&out), ["c1", "c2", "c3", "c4"]);
}

#[test]
fn a_type_awaiting_its_ack_holds_later_types_back_only_with_something_to_send() {
    let s0 = mk_snapshot(&[("a", 1), ("b", 1)], "r1");
    let mut p = Publisher::new(s0.clone());
    let mut s = delta_started(s0, &["a"]);
    let out = s
        .on_delta_request(delta(RDS, &["l"], &[], ""))
        .expect("rds");
    let nonce = delta_responses(&out)[0].nonce.clone();
    s.on_delta_request(delta(RDS, &[], &[], &nonce))
        .expect("ack");

    p.publish(mk_snapshot(&[("a", 2), ("b", 1)], "r1"));
    let eds = p.deliver(&mut s);
    assert_eq!(eds_names(&eds), ["a"]);
    // b is not subscribed: EDS has nothing more to send, routes may go.
    p.publish(mk_snapshot(&[("a", 2), ("b", 2)], "r2"));
    let out = p.deliver(&mut s);
    assert_eq!(out.responses.iter().map(ty_of).collect::<Vec<_>>(), [RDS]);
    let rds_nonce = delta_responses(&out)[0].nonce.clone();
    s.on_delta_request(delta(RDS, &[], &[], &rds_nonce))
        .expect("ack");
    // a changes again: routes wait behind the EDS update still to come.
    p.publish(mk_snapshot(&[("a", 3), ("b", 2)], "r3"));
    assert!(
        p.deliver(&mut s).responses.is_empty(),
        "RDS waits behind EDS"
    );
    let nonce = delta_responses(&eds)[0].nonce.clone();
    let out = s
        .on_delta_request(delta(EDS, &[], &[], &nonce))
        .expect("ack");
    assert_eq!(
        out.responses.iter().map(ty_of).collect::<Vec<_>>(),
        [EDS, RDS]
    );
    assert_eq!(eds_names(&out), ["a"]);
}

/// One step of a random script.
#[derive(Clone, Debug)]
enum Op {
    /// Publish a snapshot: clusters present (bit set) with content tags,
    /// route tag, secret tag.
    Publish(u8, [u8; 5], u8, u8),
    /// Deliver the latest snapshot to the streams.
    Deliver,
    /// ACK (or NACK) whatever is in flight for a type.
    Answer(usize, bool),
    /// Subscribe to / unsubscribe from an EDS name (delta) or re-request
    /// EDS with a new name set (SotW).
    Eds(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<u8>(), any::<[u8; 5]>(), 0u8..3, 0u8..2).prop_map(|(m, t, r, x)| Op::Publish(
            m,
            t.map(|v| v % 12),
            r,
            x
        )),
        Just(Op::Deliver),
        Just(Op::Deliver),
        (0usize..TypeUrl::COUNT, prop::bool::weighted(0.85)).prop_map(|(t, ok)| Op::Answer(t, ok)),
        (0usize..TypeUrl::COUNT, prop::bool::weighted(0.85)).prop_map(|(t, ok)| Op::Answer(t, ok)),
        any::<u8>().prop_map(Op::Eds),
    ]
}

const POOL: [&str; 5] = ["a", "b", "c", "d", "e"];

/// Clusters of `POOL` present in `mask`, each with a cluster body tag
/// (bits 0–1 of `tags[i]`) and an endpoints tag (bits 2–3), so clusters
/// change with and without their endpoints.
fn mk(mask: u8, tags: [u8; 5], route: u8, secret: u8) -> Arc<Snapshot> {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    let base = mk_snapshot_with_secret(&[], &format!("r{route}"), &format!("s{secret}"));
    let present = || {
        POOL.iter()
            .enumerate()
            .filter(move |(i, _)| mask & (1 << i) != 0)
    };
    let cds = present()
        .map(|(i, n)| {
            let c = Cluster {
                name: n.to_string(),
                alt_stat_name: format!("{}", tags[i] & 3),
                ..Default::default()
            };
            Resource::encode(*n, &c)
        })
        .collect();
    let eds_tags: Vec<(&str, u64)> = present()
        .map(|(i, n)| (*n, u64::from(tags[i] >> 2)))
        .collect();
    let with_eds = mk_snapshot(&eds_tags, "unused");
    let list =
        |s: &Snapshot, ty: TypeUrl| s.resources(ty).values().map(|r| (**r).clone()).collect();
    Arc::new(Snapshot::new([
        list(&base, TypeUrl::Runtime),
        list(&base, TypeUrl::Secret),
        cds,
        list(&with_eds, EDS),
        list(&base, TypeUrl::Listener),
        list(&base, TypeUrl::Route),
    ]))
}

/// The two sessions and what the client believes is in flight.
struct Pair {
    full: Session,
    diffed: Session,
    in_flight: [Option<(String, String)>; TypeUrl::COUNT],
    eds: BTreeSet<String>,
}

impl Pair {
    fn check(&mut self, a: Output, b: Output) -> Result<(), TestCaseError> {
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(self.full.status(), self.diffed.status());
        for r in &a.responses {
            let (ty, version, nonce) = match r {
                Response::Sotw(r) => (&r.type_url, &r.version_info, &r.nonce),
                Response::Delta(r) => (&r.type_url, &r.system_version_info, &r.nonce),
            };
            let ty = TypeUrl::parse(ty).expect("type");
            self.in_flight[ty.index()] = Some((version.clone(), nonce.clone()));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        mode: Mode,
        ty: TypeUrl,
        nonce: &str,
        version: &str,
        nack: bool,
        sub: &[String],
        unsub: &[String],
    ) -> Result<(), TestCaseError> {
        let error = nack.then(|| Status {
            code: 3,
            message: "rejected".into(),
            details: vec![],
        });
        let (a, b) = match mode {
            Mode::Sotw => {
                let names: Vec<&str> = match ty {
                    TypeUrl::Endpoint => self.eds.iter().map(String::as_str).collect(),
                    TypeUrl::Route => vec!["l"],
                    TypeUrl::Secret => vec!["cert"],
                    _ => vec![],
                };
                let mut req = sotw(ty, &names, version, nonce);
                req.error_detail = error;
                (
                    self.full.on_sotw_request(req.clone()).expect("req"),
                    self.diffed.on_sotw_request(req).expect("req"),
                )
            }
            Mode::Delta => {
                let sub: Vec<&str> = sub.iter().map(String::as_str).collect();
                let unsub: Vec<&str> = unsub.iter().map(String::as_str).collect();
                let mut req = delta(ty, &sub, &unsub, nonce);
                req.error_detail = error;
                (
                    self.full.on_delta_request(req.clone()).expect("req"),
                    self.diffed.on_delta_request(req).expect("req"),
                )
            }
        };
        self.check(a, b)
    }
}

fn run(mode: Mode, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let first = mk(0b111, [0; 5], 0, 0);
    let mut p = Publisher::new(first.clone());
    let mut pair = Pair {
        full: Session::new(mode),
        diffed: Session::new(mode),
        in_flight: Default::default(),
        eds: ["a", "b"].iter().map(|s| s.to_string()).collect(),
    };
    let (a, b) = (
        pair.full.on_snapshot(first.clone()),
        pair.diffed.on_snapshot(first),
    );
    pair.check(a, b)?;
    for ty in TypeUrl::ALL {
        let sub: Vec<String> = match ty {
            TypeUrl::Endpoint => pair.eds.iter().cloned().collect(),
            TypeUrl::Route => vec!["l".into()],
            TypeUrl::Secret => vec!["cert".into()],
            _ => vec![],
        };
        pair.request(mode, ty, "", "", false, &sub, &[])?;
    }
    for op in ops {
        match op {
            Op::Publish(mask, tags, route, secret) => {
                p.publish(mk(mask, tags, route, secret));
            }
            Op::Deliver => {
                let to = p.current.fallback.clone();
                let a = pair.full.on_snapshot(to);
                let b = p.deliver(&mut pair.diffed);
                pair.check(a, b)?;
            }
            Op::Answer(t, ok) => {
                let ty = TypeUrl::ALL[t];
                if let Some((version, nonce)) = pair.in_flight[t].take() {
                    pair.request(mode, ty, &nonce, &version, !ok, &[], &[])?;
                }
            }
            Op::Eds(x) => {
                let name = POOL[usize::from(x) % POOL.len()].to_string();
                let (sub, unsub) = if pair.eds.remove(&name) {
                    (vec![], vec![name])
                } else {
                    pair.eds.insert(name.clone());
                    (vec![name], vec![])
                };
                // SotW re-requests with the latest nonce it saw (an ACK if
                // one is in flight, as Envoy does on a subscription change).
                let (version, nonce) = pair.in_flight[EDS.index()].take().unwrap_or_default();
                let nonce = if mode == Mode::Sotw {
                    nonce
                } else {
                    String::new()
                };
                pair.request(mode, EDS, &nonce, &version, false, &sub, &unsub)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn delta_diff_path_matches_full_plans(ops in prop::collection::vec(op(), 0..60)) {
        run(Mode::Delta, ops)?;
    }

    #[test]
    fn sotw_diff_path_matches_full_plans(ops in prop::collection::vec(op(), 0..60)) {
        run(Mode::Sotw, ops)?;
    }
}
