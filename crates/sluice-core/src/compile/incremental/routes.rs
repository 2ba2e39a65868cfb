//! Rebuilding only the route configurations of listeners whose virtual
//! hosts changed (a canary weight step, a retry or header rule edit), when
//! nothing their routes feed into other types changed; see the parent
//! module for the conditions and which checks run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prost::Message;

use super::super::route::{self, EffectiveFilters, RouteCache};
use super::super::{check, listener, CompileError, FALLBACK};
use super::replace_in_all;
use crate::model::{Config, Listener};
use crate::xds::{Resource, Snapshot, Snapshots, TypeUrl};

/// `config`'s snapshots from `prev_out`, the snapshots of `prev`, when the
/// two configs differ only in the virtual hosts of the listeners at
/// `changed` (indices into both). `None` when one of them changed more
/// than its route configuration.
pub(super) fn recompile(
    prev: &Config,
    prev_out: &Snapshots,
    config: &Config,
    changed: &[usize],
    cache: &mut RouteCache,
) -> Result<Option<Snapshots>, CompileError> {
    let mut updates: BTreeMap<String, Arc<Resource>> = BTreeMap::new();
    for &i in changed {
        let (Some(was), Some(l)) = (prev.listeners.get(i), config.listeners.get(i)) else {
            return Ok(None);
        };
        let holders = holders(prev_out, l);
        // A listener no group serves is compiled nowhere.
        let Some((_, first)) = holders.first() else {
            continue;
        };
        if reached(was) != reached(l) {
            return Ok(None);
        }
        let filters = EffectiveFilters::of(l);
        let envoy_listener = listener::listener(l, &filters)?;
        let same_listener = first
            .get(TypeUrl::Listener, &l.name)
            .is_some_and(|r| r.body == envoy_listener.encode_to_vec());
        if !same_listener {
            return Ok(None);
        }
        let rc = route::route_configuration(l, &filters, cache)?;
        for (group, snap) in &holders {
            let cds = snap.resources(TypeUrl::Cluster);
            check::route_configuration(group, &rc, |name| cds.contains_key(name))?;
        }
        updates.insert(
            rc.name.clone(),
            Arc::new(Resource::from_bytes(rc.name, rc.body)),
        );
    }
    Ok(Some(replace_in_all(prev_out, TypeUrl::Route, &updates)))
}

/// The snapshots that hold listener `l`, with their groups' names: those
/// of the groups it serves, and the fallback's for a listener of every
/// group (as `compile_with` assigns them).
fn holders<'a>(out: &'a Snapshots, l: &Listener) -> Vec<(&'a str, &'a Arc<Snapshot>)> {
    let mut found: Vec<(&str, &Arc<Snapshot>)> = out
        .groups
        .iter()
        .filter(|(group, _)| l.serves_group(group))
        .map(|(group, snap)| (group.as_str(), snap))
        .collect();
    if l.groups.is_none() {
        found.push((FALLBACK, &out.fallback));
    }
    found
}

/// The services `l`'s routes send or mirror traffic to: with the services
/// themselves, what decides the clusters and load assignments it brings
/// to a group (`cluster::referenced_services`).
fn reached(l: &Listener) -> BTreeSet<&str> {
    l.virtual_hosts
        .iter()
        .flat_map(|vh| &vh.routes)
        .flat_map(|r| r.all_backends())
        .map(|b| b.service.as_str())
        .collect()
}
