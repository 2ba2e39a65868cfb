//! Turning a [`Plan`] into a response: nonce, version, what the client now
//! holds (with the previous state kept for a NACK), and the events.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::plan::{sotw_version, Plan};
use super::{Event, Known, Mode, Name, Output, Pending, Phase, Response, Session, TypeState};
use crate::xds::resource::{Resource, Snapshot, TypeUrl};
use crate::xds::wire;

impl Session {
    pub(super) fn emit(&mut self, ty: TypeUrl, snap: &Snapshot, plan: Plan, out: &mut Output) {
        let nonce = self.next_nonce.to_string();
        self.next_nonce += 1;
        let mode = self.mode;
        let st = &mut self.types[ty.index()];
        let (upserts, removals, full) = match plan {
            Plan::Full(set) => (set, Vec::new(), true),
            Plan::Partial { upserts, removals } => (upserts, removals, false),
        };

        let mut previous = Vec::new();
        // A stream's first response of a type usually sends everything in
        // its scope: record that as the base at once, not name by name.
        let first = removals.is_empty()
            && st.known.is_empty()
            && self
                .snapshot
                .as_ref()
                .is_some_and(|s| st.known.hold_first(ty, s, st.scope(), &upserts));
        let changed = if first {
            previous.extend(upserts.iter().map(|r| (r.key.clone(), None)));
            if ty == TypeUrl::Cluster {
                upserts.iter().map(|r| r.name.clone()).collect()
            } else {
                Vec::new()
            }
        } else {
            record_upserts(st, &upserts, &mut previous, ty == TypeUrl::Cluster)
        };
        if full && !first {
            // A full SotW set: whatever is not in it is gone from the client.
            let keep: BTreeSet<&str> = upserts.iter().map(|r| r.name.as_str()).collect();
            let gone: Vec<Name> = st
                .known
                .iter()
                .filter(|k| !keep.contains(k.name()))
                .map(|k| k.key().clone())
                .collect();
            for name in gone {
                let prev = st.known.set(&name, None);
                previous.push((name, prev));
            }
        }
        for name in &removals {
            let key = st.known.get(name).map(|k| k.key().clone());
            match key {
                Some(key) => {
                    let prev = st.known.set(&key, None);
                    previous.push((key, prev));
                }
                None => previous.push((Name::from(name.as_str()), None)),
            }
            if !snap.resources(ty).contains_key(name) && st.names.contains(name.as_str()) {
                st.told_missing.insert(name.clone());
            }
        }

        let (response, version) = match mode {
            Mode::Sotw => {
                let version = sotw_version(st, &upserts, full);
                let resp = wire::DiscoveryResponse {
                    version_info: version.clone(),
                    resources: upserts.iter().map(|r| wire::Any::of(ty, r)).collect(),
                    type_url: ty.as_str().to_string(),
                    nonce: nonce.clone(),
                    control_plane: wire::control_plane(),
                };
                (Response::Sotw(resp), version)
            }
            Mode::Delta => {
                let version = snap.version(ty).to_string();
                let resp = wire::DeltaDiscoveryResponse {
                    system_version_info: version.clone(),
                    resources: upserts
                        .iter()
                        .map(|r| wire::DeltaResource::of(ty, r))
                        .collect(),
                    type_url: ty.as_str().to_string(),
                    nonce: nonce.clone(),
                    removed_resources: removals.clone(),
                    control_plane: wire::control_plane(),
                };
                (Response::Delta(resp), version)
            }
        };

        for r in &upserts {
            st.force.remove(&r.name);
        }
        let resources = upserts.len() + removals.len();
        st.phase = Phase::InFlight(Pending {
            nonce: nonce.clone(),
            version: version.clone(),
            previous,
            sent: upserts,
        });
        st.versions.sent = Some(version.clone());
        if ty == TypeUrl::Cluster {
            // Envoy re-warms a changed cluster and waits for its endpoints.
            let eds = &mut self.types[TypeUrl::Endpoint.index()];
            eds.dirty.extend_sorted(&changed);
            if eds.force.is_empty() {
                // Built at once from the sorted names, not searched per name.
                eds.force = changed.into_iter().collect();
            } else {
                eds.force.extend(changed);
            }
        }
        out.events.push(Event::Sent {
            ty,
            version,
            nonce,
            resources,
        });
        out.responses.push(response);
    }
}

/// Records `upserts` as held by the client, remembering the previous
/// entries; returns the names whose version changed if `list_changed`
/// (only a cluster's change matters to other types).
fn record_upserts(
    st: &mut TypeState,
    upserts: &[Arc<Resource>],
    previous: &mut Vec<(Name, Option<Known>)>,
    list_changed: bool,
) -> Vec<String> {
    let mut changed = Vec::new();
    for r in upserts {
        let prev = st.known.set(&r.key, Some(Known::Sent(r.clone())));
        let prev_version = match &prev {
            Some(Known::Sent(p)) => Some(p.version.as_str()),
            Some(Known::Announced(a)) => Some(&*a.version),
            None => None,
        };
        if list_changed && prev_version != Some(r.version.as_str()) {
            changed.push(r.name.clone());
        }
        previous.push((r.key.clone(), prev));
    }
    changed
}
