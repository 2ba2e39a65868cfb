//! [`Held`] must represent exactly the map from name to held version that
//! its operations describe, whatever its base and exceptions look like:
//! random writes, snapshot moves (with and without a diff), rebuilt bases,
//! delta reconnect announcements and retains are checked against a plain map after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::held::{Held, Scope};
use super::{Known, Name};
use crate::xds::resource::{Resource, Snapshot, TypeUrl};

const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// A snapshot with, per name, no cluster or one of a few contents.
fn snapshot(contents: &[Option<u8>; 6]) -> Arc<Snapshot> {
    let clusters: Vec<Resource> = NAMES
        .iter()
        .zip(contents)
        .filter_map(|(n, c)| c.map(|c| Resource::from_bytes(*n, format!("{n}{c}").into_bytes())))
        .collect();
    Arc::new(Snapshot::new(TypeUrl::ALL.map(|ty| {
        if ty == TypeUrl::Cluster {
            clusters.clone()
        } else {
            Vec::new()
        }
    })))
}

#[derive(Clone, Debug)]
enum Op {
    /// Hold the current snapshot's resource (or nothing if it has none).
    SetCurrent(usize),
    /// Hold a version only announced by the client.
    Announce(usize, u8),
    Remove(usize),
    /// Move to a new snapshot, with the diff or without.
    Advance([Option<u8>; 6], bool),
    /// Rebuild the base on the current snapshot for these names (all if
    /// none).
    Rebuild(Option<Vec<usize>>),
    Retain(Vec<usize>),
    /// A first response: everything in scope (all names if none), or all
    /// but the first of it.
    HoldFirst(Option<Vec<usize>>, bool),
    /// A delta reconnect's announcement for a scope (all names if none):
    /// per name, the current snapshot's version (`None`) or another; names
    /// outside the base kept if listed in the last field.
    AnnounceFirst(Option<Vec<usize>>, Vec<(usize, Option<u8>)>, Vec<usize>),
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    let contents = [(); 6].map(|_| proptest::option::of(0u8..3));
    prop_oneof![
        name.clone().prop_map(Op::SetCurrent),
        (name.clone(), 0u8..3).prop_map(|(n, v)| Op::Announce(n, v)),
        name.clone().prop_map(Op::Remove),
        (contents, any::<bool>()).prop_map(|(c, d)| Op::Advance(c, d)),
        proptest::option::of(proptest::collection::vec(name.clone(), 0..6)).prop_map(Op::Rebuild),
        proptest::collection::vec(name.clone(), 0..6).prop_map(Op::Retain),
        (
            proptest::option::of(proptest::collection::vec(name.clone(), 0..6)),
            any::<bool>()
        )
            .prop_map(|(names, all)| Op::HoldFirst(names, all)),
        (
            proptest::option::of(proptest::collection::vec(name.clone(), 0..6)),
            proptest::collection::vec((name.clone(), proptest::option::of(0u8..3)), 0..8),
            proptest::collection::vec(name, 0..6),
        )
            .prop_map(|(names, told, keep)| Op::AnnounceFirst(names, told, keep)),
    ]
}

/// All names, or the named ones.
fn scope_of(names: Option<Vec<usize>>) -> Scope {
    match names {
        None => Scope::All,
        Some(ix) => Scope::Names(Arc::new(
            ix.iter()
                .map(|&i| Name::from(NAMES[i]))
                .collect::<BTreeSet<Name>>(),
        )),
    }
}

/// `iter_within(scope)` lists exactly the model's names in `scope`.
fn check_within(held: &Held, model: &BTreeMap<String, String>, scope: &Scope) {
    let inside = |n: &str| match scope {
        Scope::All => true,
        Scope::Names(names) => names.contains(n),
    };
    let listed: Vec<(String, String)> = held
        .iter_within(scope, inside)
        .map(|h| (h.name().to_string(), h.version().to_string()))
        .collect();
    let expected: Vec<(String, String)> = model
        .iter()
        .filter(|(n, _)| inside(n))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    assert_eq!(listed, expected);
}

fn check(held: &Held, model: &BTreeMap<String, String>) {
    let listed: Vec<(String, String)> = held
        .iter()
        .map(|h| (h.name().to_string(), h.version().to_string()))
        .collect();
    let expected: Vec<(String, String)> = model.clone().into_iter().collect();
    assert_eq!(listed, expected);
    for n in NAMES {
        assert_eq!(
            held.get(n).map(|h| h.version()),
            model.get(n).map(String::as_str)
        );
        assert_eq!(held.contains(n), model.contains_key(n));
    }
    assert_eq!(held.is_empty(), model.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn held_is_the_map_its_writes_describe(
        first in [(); 6].map(|_| proptest::option::of(0u8..3)),
        ops in proptest::collection::vec(op(), 0..40),
    ) {
        let ty = TypeUrl::Cluster;
        let mut snap = snapshot(&first);
        let mut held = Held::default();
        let mut model: BTreeMap<String, String> = BTreeMap::new();
        for op in ops {
            match op {
                Op::SetCurrent(i) => {
                    let name: Name = NAMES[i].into();
                    let value = snap.get(ty, NAMES[i]).map(|r| Known::Sent(r.clone()));
                    match &value {
                        Some(Known::Sent(r)) => model.insert(NAMES[i].into(), r.version.clone()),
                        _ => model.remove(NAMES[i]),
                    };
                    held.set(&name, value);
                }
                Op::Announce(i, v) => {
                    let version = format!("announced-{v}");
                    model.insert(NAMES[i].into(), version.clone());
                    held.set(&NAMES[i].into(), Some(Known::announced(NAMES[i].into(), version.into())));
                }
                Op::Remove(i) => {
                    let before = held.get(NAMES[i]).map(|h| h.version().to_string());
                    let removed = held.remove(NAMES[i]);
                    assert_eq!(removed.is_some(), before.is_some());
                    model.remove(NAMES[i]);
                }
                Op::Advance(contents, with_diff) => {
                    let next = snapshot(&contents);
                    let changed: Vec<String> = NAMES
                        .iter()
                        .filter(|n| {
                            snap.get(ty, n).map(|r| &r.version) != next.get(ty, n).map(|r| &r.version)
                        })
                        .map(|n| n.to_string())
                        .collect();
                    held.advance(&next, with_diff.then_some(changed.as_slice()));
                    snap = next;
                }
                Op::Rebuild(names) => {
                    let scope = scope_of(names.clone());
                    held.rebuild(TypeUrl::Cluster, &snap, scope.clone());
                    check_within(&held, &model, &scope);
                    // An equal set that is not the base's own: checked name by name.
                    check_within(&held, &model, &scope_of(names));
                }
                Op::HoldFirst(names, all) => {
                    let scope = scope_of(names.clone());
                    let in_scope: Vec<Arc<Resource>> = snap
                        .resources(ty)
                        .values()
                        .filter(|r| names.as_ref().is_none_or(|ix| ix.iter().any(|&i| NAMES[i] == r.name)))
                        .cloned()
                        .collect();
                    let sent = if all { &in_scope[..] } else { &in_scope[in_scope.len().min(1)..] };
                    let was_empty = model.is_empty();
                    let took = held.hold_first(ty, &snap, scope, sent);
                    // Taken exactly when nothing was held and all of the
                    // scope is sent (sending nothing of an empty scope
                    // is both).
                    assert_eq!(took, was_empty && sent.len() == in_scope.len());
                    if took {
                        model = sent.iter().map(|r| (r.name.clone(), r.version.clone())).collect();
                        assert_eq!(held.exceptions(), 0);
                    }
                    check_within(&held, &model, &scope_of(names));
                }
                Op::AnnounceFirst(names, told, keep) => {
                    let scope = scope_of(names.clone());
                    let in_base = |n: &str| {
                        snap.get(ty, n).is_some()
                            && names.as_ref().is_none_or(|ix| ix.iter().any(|&i| NAMES[i] == n))
                    };
                    let keep: BTreeSet<&str> = keep.iter().map(|&i| NAMES[i]).collect();
                    let announced: std::collections::HashMap<String, String> = told
                        .iter()
                        .map(|&(i, v)| {
                            let current = snap.get(ty, NAMES[i]).map(|r| r.version.clone());
                            let version = match (v, current) {
                                (None, Some(current)) => current,
                                (v, _) => format!("announced-{}", v.unwrap_or(9)),
                            };
                            (NAMES[i].to_string(), version)
                        })
                        .collect();
                    let was_empty = model.is_empty();
                    let took = held.announce(ty, &snap, scope, &announced, |n| keep.contains(n));
                    assert_eq!(took, was_empty);
                    if took {
                        model = announced
                            .clone()
                            .into_iter()
                            .filter(|(n, _)| in_base(n) || keep.contains(n.as_str()))
                            .collect();
                        // Only what differs from the base is stored.
                        let differing = NAMES
                            .iter()
                            .filter(|n| in_base(n))
                            .filter(|n| model.get(**n) != snap.get(ty, n).map(|r| &r.version))
                            .count()
                            + model.keys().filter(|n| !in_base(n)).count();
                        assert_eq!(held.exceptions(), differing);
                    }
                    check_within(&held, &model, &scope_of(names));
                }
                Op::Retain(ix) => {
                    let keep: BTreeSet<&str> = ix.iter().map(|&i| NAMES[i]).collect();
                    held.retain(|n| keep.contains(n));
                    model.retain(|n, _| keep.contains(n.as_str()));
                }
            }
            check(&held, &model);
        }
    }
}

/// The point of the representation: a proxy that holds its snapshot
/// costs no exception, however many resources it holds.
#[test]
fn an_up_to_date_proxy_is_only_a_base() {
    let snap = snapshot(&[Some(0), Some(1), Some(2), Some(0), Some(1), Some(2)]);
    let mut held = Held::default();
    for r in snap.resources(TypeUrl::Cluster).values() {
        held.set(&r.key, Some(Known::Sent(r.clone())));
    }
    assert_eq!(held.exceptions(), 6);
    held.rebuild(TypeUrl::Cluster, &snap, Scope::All);
    assert_eq!(held.exceptions(), 0);
    // One resource changes and is sent: one exception while the proxy is
    // behind, none once it holds the new snapshot again.
    let next = snapshot(&[Some(1), Some(1), Some(2), Some(0), Some(1), Some(2)]);
    held.advance(&next, Some(&["a".to_string()]));
    assert_eq!(held.exceptions(), 1);
    assert_eq!(
        held.get("a").map(|h| h.version()),
        snap.get(TypeUrl::Cluster, "a").map(|r| r.version.as_str())
    );
    let a = next.get(TypeUrl::Cluster, "a").expect("a").clone();
    held.set(&a.key.clone(), Some(Known::Sent(a)));
    assert_eq!(held.exceptions(), 0);
}
