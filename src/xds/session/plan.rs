//! What one type of one session needs to send next, given the snapshot and
//! what the client already holds. Pure reads of the session state.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Mode, Session, TypeState};
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

impl Session {
    /// `hold` keeps clusters that left the snapshot (and their endpoints)
    /// on the client until listeners and routes no longer need them.
    pub(super) fn plan(&self, ty: TypeUrl, snap: &Snapshot, hold: bool) -> Plan {
        let st = &self.types[ty.index()];
        if !st.requested {
            return Plan::nothing();
        }
        let full_state = self.mode == Mode::Sotw && ty.wildcard_capable();
        if full_state {
            return full_plan(st, ty, snap, hold);
        }
        let upserts = upserts(st, ty, snap);
        let removals = match self.mode {
            Mode::Sotw => Vec::new(),
            Mode::Delta => {
                let cds_known = &self.types[TypeUrl::Cluster.index()].known;
                removals(st, ty, snap, |name| match ty {
                    TypeUrl::Cluster => hold,
                    // Endpoints go with their cluster, not before it.
                    TypeUrl::Endpoint => cds_known.contains_key(name),
                    _ => false,
                })
            }
        };
        Plan::Partial { upserts, removals }
    }
}

/// What the client should get now for `name`: the snapshot's resource,
/// unless the client rejected that exact version.
fn wanted<'a>(st: &TypeState, r: &'a Arc<Resource>) -> Option<&'a Arc<Resource>> {
    (!st.rejected.contains(&(r.name.clone(), r.version.clone()))).then_some(r)
}

fn full_plan(st: &TypeState, ty: TypeUrl, snap: &Snapshot, hold: bool) -> Plan {
    let mut desired: Vec<Arc<Resource>> = Vec::new();
    for (name, r) in snap.resources(ty) {
        if !st.in_scope(name) {
            continue;
        }
        match wanted(st, r) {
            Some(r) => desired.push(r.clone()),
            // Keep the client on the version it accepted.
            None => {
                if let Some(prev) = st.known.get(name).and_then(|k| k.resource.clone()) {
                    desired.push(prev);
                }
            }
        }
    }
    if hold && ty == TypeUrl::Cluster {
        for (name, k) in &st.known {
            if !snap.resources(ty).contains_key(name) {
                if let Some(r) = &k.resource {
                    desired.push(r.clone());
                }
            }
        }
        desired.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let unchanged = desired.len() == st.known.len()
        && desired.iter().all(|r| {
            st.known
                .get(&r.name)
                .is_some_and(|k| k.version == r.version)
        });
    if unchanged {
        Plan::nothing()
    } else {
        Plan::Full(desired)
    }
}

fn upserts(st: &TypeState, ty: TypeUrl, snap: &Snapshot) -> Vec<Arc<Resource>> {
    let resources = snap.resources(ty);
    let consider = |name: &String, r: &Arc<Resource>| -> Option<Arc<Resource>> {
        let stale = st.known.get(name).is_none_or(|k| k.version != r.version);
        if stale || st.force.contains(name) {
            wanted(st, r).cloned()
        } else {
            None
        }
    };
    if st.wildcard {
        resources
            .iter()
            .filter_map(|(n, r)| consider(n, r))
            .collect()
    } else {
        st.names
            .iter()
            .filter_map(|n| resources.get(n).and_then(|r| consider(n, r)))
            .collect()
    }
}

fn removals(
    st: &TypeState,
    ty: TypeUrl,
    snap: &Snapshot,
    held: impl Fn(&str) -> bool,
) -> Vec<String> {
    let resources = snap.resources(ty);
    let mut out: BTreeSet<String> = st
        .known
        .keys()
        .filter(|n| !resources.contains_key(*n) && st.in_scope(n) && !held(n))
        .cloned()
        .collect();
    // Tell the client once that a name it asked for does not exist.
    for name in &st.names {
        if !resources.contains_key(name)
            && !st.known.contains_key(name)
            && !st.told_missing.contains(name)
        {
            out.insert(name.clone());
        }
    }
    out.into_iter().collect()
}

/// `version_info` of a SotW response: the hash of the full set sent (LDS,
/// CDS) or of everything the client holds after it (EDS, RDS).
pub(super) fn sotw_version(st: &TypeState, sent: &[Arc<Resource>], full: bool) -> String {
    if full {
        set_version(sent.iter().map(|r| (r.name.as_str(), r.version.as_str())))
    } else {
        set_version(
            st.known
                .iter()
                .filter(|(n, _)| st.in_scope(n))
                .map(|(n, k)| (n.as_str(), k.version.as_str())),
        )
    }
}
