//! Re-compiling after an endpoint-only change.
//!
//! Most publishes under discovery change endpoints and nothing else: one
//! instance moved, a drain marked some as draining. Clusters, listeners,
//! route configurations and secrets are functions of everything *but*
//! endpoints, and which load assignments a group holds depends only on
//! which services its routes reach and their subsets. So when two configs
//! differ in endpoints alone ([`endpoints_only`]), the previous snapshots
//! are kept and only the load assignments of services whose endpoints
//! changed are encoded again ([`recompile_endpoints`]); every other
//! resource, and every type but EDS, stays the same `Arc`. A group none of
//! whose assignments changed keeps its `Arc<Snapshot>`.
//!
//! The invariant checks of a full compile are not repeated: they are about
//! names and references (`check`), which the endpoints do not touch, and
//! the previous snapshots passed them. The result is the full compile's,
//! byte for byte (a property test compares the two over random sequences
//! of endpoint and rules changes).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cluster::backends_of;
use super::eds::{self, EndpointCache};
use crate::model::{Config, Service};
use crate::xds::{Resource, Snapshot, Snapshots, TypeUrl};

/// Whether `a` and `b` differ at most in their services' endpoints.
pub(super) fn endpoints_only(a: &Config, b: &Config) -> bool {
    let Config {
        services,
        listeners,
        sources,
    } = a;
    *listeners == b.listeners
        && *sources == b.sources
        && services.len() == b.services.len()
        && services
            .iter()
            .zip(&b.services)
            .all(|((ka, sa), (kb, sb))| ka == kb && same_but_endpoints(sa, sb))
}

/// Every field but `endpoints`, destructured so that a new field is not
/// silently left out of the comparison.
fn same_but_endpoints(a: &Service, b: &Service) -> bool {
    let Service {
        name,
        connect_timeout,
        lb_policy,
        endpoints: _,
        discovery,
        subsets,
        policy,
    } = a;
    *name == b.name
        && *connect_timeout == b.connect_timeout
        && *lb_policy == b.lb_policy
        && *discovery == b.discovery
        && *subsets == b.subsets
        && *policy == b.policy
}

/// `config`'s snapshots from `prev_out`, the snapshots of `prev`, when
/// [`endpoints_only`] holds between the two configs.
pub(super) fn recompile_endpoints(
    prev: &Config,
    prev_out: &Snapshots,
    config: &Config,
    cache: &mut EndpointCache,
) -> Snapshots {
    // Each changed assignment is encoded once, for every group that has it.
    let mut changed: BTreeMap<String, Arc<Resource>> = BTreeMap::new();
    for (service, before) in config.services.values().zip(prev.services.values()) {
        if service.endpoints != before.endpoints {
            for backend in backends_of(service) {
                let cla = eds::load_assignment(service, &backend, cache);
                changed.insert(cla.name.clone(), Arc::new(cla));
            }
        }
    }
    let update = |snap: &Arc<Snapshot>| -> Arc<Snapshot> {
        match snap.with_replaced(TypeUrl::Endpoint, &changed) {
            Some(next) => Arc::new(next),
            None => snap.clone(),
        }
    };
    Snapshots {
        groups: prev_out
            .groups
            .iter()
            .map(|(group, snap)| (group.clone(), update(snap)))
            .collect(),
        fallback: update(&prev_out.fallback),
    }
}
