//! What one type of one session needs to send next, given the snapshot and
//! what the client already holds. Pure reads of the session state.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::held::HeldRef;
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
        if !st.requested {
            return Planned {
                plan: Plan::nothing(),
                held: Vec::new(),
            };
        }
        let full_state = self.mode == Mode::Sotw && ty.wildcard_capable();
        if full_state {
            return full_plan(st, ty, snap, hold);
        }
        let upserts = upserts(st, ty, snap);
        let (removals, held) = match self.mode {
            Mode::Sotw => (Vec::new(), Vec::new()),
            Mode::Delta => {
                let cds_known = &self.types[TypeUrl::Cluster.index()].known;
                removals(st, ty, snap, |name| match ty {
                    TypeUrl::Cluster => hold,
                    // Endpoints go with their cluster, not before it.
                    TypeUrl::Endpoint => cds_known.contains(name),
                    _ => false,
                })
            }
        };
        Planned {
            plan: Plan::Partial { upserts, removals },
            held,
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
    if matches!(&st.dirty, Dirty::Names(d) if d.is_empty()) && !st.must_reply {
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

fn upserts(st: &TypeState, ty: TypeUrl, snap: &Snapshot) -> Vec<Arc<Resource>> {
    let resources = snap.resources(ty);
    let consider = |name: &String, r: &Arc<Resource>| -> Option<Arc<Resource>> {
        let stale = st
            .known
            .get(name.as_str())
            .is_none_or(|k| k.version() != r.version);
        if stale || st.force.contains(name) {
            wanted(st, r).cloned()
        } else {
            None
        }
    };
    match &st.dirty {
        Dirty::Names(dirty) => dirty
            .iter()
            .filter(|n| st.in_scope(n))
            .filter_map(|n| resources.get(n).and_then(|r| consider(n, r)))
            .collect(),
        Dirty::All if st.wildcard => resources
            .iter()
            .filter_map(|(n, r)| consider(n, r))
            .collect(),
        Dirty::All => st
            .names
            .iter()
            .filter_map(|n| {
                resources
                    .get_key_value(&**n)
                    .and_then(|(n, r)| consider(n, r))
            })
            .collect(),
    }
}

/// Names to remove from the client, and those held back by `held`.
fn removals(
    st: &TypeState,
    ty: TypeUrl,
    snap: &Snapshot,
    held: impl Fn(&str) -> bool,
) -> (Vec<String>, Vec<String>) {
    let resources = snap.resources(ty);
    let mut out = BTreeSet::new();
    let mut kept = Vec::new();
    let mut consider = |name: &str| {
        if resources.contains_key(name) {
            return;
        }
        if st.known.contains(name) {
            if !st.in_scope(name) {
                return;
            }
            if held(name) {
                kept.push(name.to_string());
            } else {
                out.insert(name.to_string());
            }
        } else if st.names.contains(name) && !st.told_missing.contains(name) {
            // Tell the client once that a name it asked for does not exist.
            out.insert(name.to_string());
        }
    };
    match &st.dirty {
        Dirty::Names(dirty) => dirty.iter().for_each(|n| consider(n)),
        Dirty::All => st
            .known
            .iter()
            .map(HeldRef::name)
            .chain(st.names.iter().map(|n| &**n))
            .for_each(&mut consider),
    }
    (out.into_iter().collect(), kept)
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
