//! What one type of one session needs to send next, given the snapshot and
//! what the client already holds. Pure reads of the session state.

use std::collections::BTreeSet;
use std::sync::Arc;

use itertools::{EitherOrBoth, Itertools};

use super::held::{BaseIter, HeldRef};
use super::{Dirty, Mode, Session, TypeState};
use crate::xds::resource::{set_version, Resource, Snapshot, TypeUrl};

#[derive(Debug)]
pub(super) enum Plan {
    /// SotW LDS/CDS: the complete set the client must hold.
    Full(Vec<Arc<Resource>>),
    /// Changed resources, plus (delta only) names to remove.
    Partial {
        upserts: Vec<Arc<Resource>>,
        removals: Vec<String>,
    },
}

impl Plan {
    pub(super) fn is_empty(&self) -> bool {
        match self {
            Plan::Full(_) => false,
            Plan::Partial { upserts, removals } => upserts.is_empty() && removals.is_empty(),
        }
    }

    fn nothing() -> Plan {
        Plan::Partial {
            upserts: Vec::new(),
            removals: Vec::new(),
        }
    }
}

/// A plan and the names it had to hold back (stale clusters while routes
/// may still use them, endpoints of clusters the proxy still has): those
/// stay dirty for the next plan.
#[derive(Debug)]
pub(super) struct Planned {
    pub(super) plan: Plan,
    pub(super) held: Vec<String>,
}

impl Session {
    /// `hold` keeps clusters that left the snapshot (and their endpoints)
    /// on the client until listeners and routes no longer need them.
    /// Only the type's dirty names are looked at (see [`Dirty`]).
    pub(super) fn plan(&self, ty: TypeUrl, snap: &Snapshot, hold: bool) -> Planned {
        let st = &self.types[ty.index()];
        if !st.phase.requested() {
            return Planned {
                plan: Plan::nothing(),
                held: Vec::new(),
            };
        }
        let full_state = self.mode == Mode::Sotw && ty.wildcard_capable();
        if full_state {
            return full_plan(st, ty, snap, hold);
        }
        let upserts = upserts(st, ty, snap).collect();
        let (removals, held) = match self.mode {
            Mode::Sotw => (Vec::new(), Vec::new()),
            Mode::Delta => {
                let (mut out, mut kept) = (BTreeSet::new(), Vec::new());
                let keeps = self.keeps(ty, hold);
                for name in dirty_or_held(st, ty, snap) {
                    match removal(st, ty, snap, name, &keeps) {
                        Some(Removal::Remove) => {
                            out.insert(name.to_string());
                        }
                        Some(Removal::Keep) => kept.push(name.to_string()),
                        None => {}
                    }
                }
                (out.into_iter().collect(), kept)
            }
        };
        Planned {
            plan: Plan::Partial { upserts, removals },
            held,
        }
    }

    /// Whether [`Session::plan`] would send anything for `ty` now, found
    /// without building the plan: it stops at the first resource to send
    /// or name to remove. A type awaiting its ACK needs only this (does it
    /// hold later types back?), and its dirty names pile up meanwhile, so
    /// planning it in full on every publish costs the whole pile each time.
    pub(super) fn would_send(&self, ty: TypeUrl, snap: &Snapshot, hold: bool) -> bool {
        let st = &self.types[ty.index()];
        if !st.phase.requested() {
            return false;
        }
        if self.mode == Mode::Sotw && ty.wildcard_capable() {
            return !full_plan(st, ty, snap, hold).plan.is_empty();
        }
        if upserts(st, ty, snap).next().is_some() {
            return true;
        }
        let keeps = self.keeps(ty, hold);
        self.mode == Mode::Delta
            && dirty_or_held(st, ty, snap)
                .any(|name| removal(st, ty, snap, name, &keeps) == Some(Removal::Remove))
    }

    /// Whether a delta removal of `name` of `ty` must wait: stale clusters
    /// while `hold`, endpoints while their cluster is still on the proxy.
    fn keeps(&self, ty: TypeUrl, hold: bool) -> impl Fn(&str) -> bool + '_ {
        let cds_known = &self.types[TypeUrl::Cluster.index()].known;
        move |name| match ty {
            TypeUrl::Cluster => hold,
            // Endpoints go with their cluster, not before it.
            TypeUrl::Endpoint => cds_known.contains(name),
            _ => false,
        }
    }
}

/// What the client should get now for `name`: the snapshot's resource,
/// unless the client rejected that exact version.
fn wanted<'a>(st: &TypeState, r: &'a Arc<Resource>) -> Option<&'a Arc<Resource>> {
    let rejected =
        !st.rejected.is_empty() && st.rejected.contains(&(r.name.clone(), r.version.clone()));
    (!rejected).then_some(r)
}

fn full_plan(st: &TypeState, ty: TypeUrl, snap: &Snapshot, hold: bool) -> Planned {
    let nothing = |held| Planned {
        plan: Plan::nothing(),
        held,
    };
    if matches!(&st.dirty, Dirty::Names(d) if d.is_empty()) && !st.phase.must_reply() {
        // Nothing changed since the last plan: the set is still the same.
        return nothing(Vec::new());
    }
    let mut desired: Vec<Arc<Resource>> = Vec::new();
    for (name, r) in snap.resources(ty) {
        if !st.in_scope(name) {
            continue;
        }
        match wanted(st, r) {
            Some(r) => desired.push(r.clone()),
            // Keep the client on the version it accepted.
            None => {
                if let Some(prev) = st.known.get(name.as_str()).and_then(HeldRef::resource) {
                    desired.push(prev.clone());
                }
            }
        }
    }
    let mut held = Vec::new();
    if hold && ty == TypeUrl::Cluster {
        for k in st.known.iter() {
            if !snap.resources(ty).contains_key(k.name()) {
                if let Some(r) = k.resource() {
                    desired.push(r.clone());
                    held.push(k.name().to_string());
                }
            }
        }
        desired.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let unchanged = desired.len() == st.known.iter().count()
        && desired.iter().all(|r| {
            st.known
                .get(r.name.as_str())
                .is_some_and(|k| k.version() == r.version)
        });
    if unchanged {
        nothing(held)
    } else {
        Planned {
            plan: Plan::Full(desired),
            held,
        }
    }
}

/// The resources to send for the type's dirty names, lazily.
fn upserts<'a>(
    st: &'a TypeState,
    ty: TypeUrl,
    snap: &'a Snapshot,
) -> Box<dyn Iterator<Item = Arc<Resource>> + 'a> {
    let resources = snap.resources(ty);
    let consider = move |r: &Arc<Resource>, held: Option<HeldRef<'_>>| -> Option<Arc<Resource>> {
        let stale = held.is_none_or(|k| k.version() != r.version);
        if stale || st.force.contains(&r.name) {
            wanted(st, r).cloned()
        } else {
            None
        }
    };
    let in_scope: Box<dyn Iterator<Item = &'a Arc<Resource>> + 'a> = match &st.dirty {
        Dirty::Names(dirty) => {
            return Box::new(
                dirty
                    .iter()
                    .filter(|n| st.in_scope(n))
                    .filter_map(move |n| resources.get(n))
                    .filter_map(move |r| consider(r, st.known.get(&r.name))),
            )
        }
        Dirty::All if st.wildcard => Box::new(resources.values()),
        // The subscribed names and the snapshot walked together (a
        // reconnecting SotW proxy asks for every endpoint name at once).
        Dirty::All => Box::new(BaseIter::within(resources, &st.names)),
    };
    // Everything in scope, and what the client holds walked alongside
    // (both in name order): a reconnecting delta proxy announces every
    // name, and a lookup of each costs several tree searches.
    Box::new(
        in_scope
            .merge_join_by(st.known.iter(), |r, h| r.name.as_str().cmp(h.name()))
            .filter_map(move |e| match e {
                EitherOrBoth::Left(r) => consider(r, None),
                EitherOrBoth::Both(r, h) => consider(r, Some(h)),
                EitherOrBoth::Right(_) => None,
            }),
    )
}

/// The names a delta plan looks at for removals: the dirty ones, or
/// everything the client holds or asked for that the snapshot does not
/// have (the three walked together, in name order). May repeat a name.
fn dirty_or_held<'a>(
    st: &'a TypeState,
    ty: TypeUrl,
    snap: &'a Snapshot,
) -> Box<dyn Iterator<Item = &'a str> + 'a> {
    match &st.dirty {
        Dirty::Names(dirty) => Box::new(dirty.iter().map(String::as_str)),
        Dirty::All => Box::new(
            st.known
                .iter()
                .map(HeldRef::name)
                .merge(st.names.iter().map(|n| &**n))
                .dedup()
                .merge_join_by(snap.resources(ty).keys(), |n, r| (*n).cmp(r.as_str()))
                .filter_map(|e| e.just_left()),
        ),
    }
}

#[derive(Debug, PartialEq)]
enum Removal {
    Remove,
    /// Held back by `keeps`: stays dirty for the next plan.
    Keep,
}

/// Whether the client should lose `name` now.
fn removal(
    st: &TypeState,
    ty: TypeUrl,
    snap: &Snapshot,
    name: &str,
    keeps: impl Fn(&str) -> bool,
) -> Option<Removal> {
    if snap.resources(ty).contains_key(name) {
        return None;
    }
    if st.known.contains(name) {
        if !st.in_scope(name) {
            return None;
        }
        Some(if keeps(name) {
            Removal::Keep
        } else {
            Removal::Remove
        })
    } else if st.names.contains(name) && !st.told_missing.contains(name) {
        // Tell the client once that a name it asked for does not exist.
        Some(Removal::Remove)
    } else {
        None
    }
}

/// `version_info` of a SotW response: the hash of the full set sent (LDS,
/// CDS) or of everything the client holds after it (EDS, RDS).
pub(super) fn sotw_version(st: &TypeState, sent: &[Arc<Resource>], full: bool) -> String {
    if full {
        set_version(sent.iter().map(|r| (r.name.as_str(), r.version.as_str())))
    } else {
        set_version(
            st.known
                .iter_within(&st.scope(), |n| st.in_scope(n))
                .map(|k| (k.name(), k.version())),
        )
    }
}
