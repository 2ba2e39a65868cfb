//! Re-compiling after a change to endpoints, routes or runtime keys alone.
//!
//! Most publishes change very little. Under discovery, endpoints and
//! nothing else: one instance moved, a drain marked some as draining.
//! Under a canary rollout, the weights of one route split (the rollout
//! overlay, `canary::overlay`, rewrites route actions inside listeners).
//! [`recompile`] handles any mix of the two from the previous snapshots
//! when two configs differ in nothing else ([`delta`]: same sources, every
//! service the same but for its endpoints, every listener the same but
//! for its virtual hosts); anything more is a full compile.
//!
//! **Endpoints.** Clusters, listeners, route configurations and secrets
//! are functions of everything *but* endpoints, and which load
//! assignments a group holds depends only on which services its routes
//! reach and their subsets. So only the load assignments of services
//! whose endpoints changed are encoded again ([`recompile_endpoints`]).
//!
//! **Routes.** Only listeners whose virtual hosts changed are looked at
//! (`routes`); each is taken further only when what its routes feed into
//! other types is unchanged: the set of services its routes (and mirrors)
//! reach, which decides the group's clusters and load assignments, and
//! its encoded `Listener`, which its routes shape through the HTTP filters
//! they need (CORS, RBAC, Lua, rate limit, fault, websocket upgrades).
//! The listener is rebuilt and compared byte for byte rather than judged
//! from the model, so a new way routes feed LDS cannot be missed. Then
//! only its route configuration is rebuilt, for every group that holds
//! it. Otherwise it is a full compile. Of a rebuilt route configuration,
//! only the routes that changed are compiled (`route::RouteCache`): an
//! edit of one route among 20,000 compiles one route.
//!
//! **Runtime keys** (rollout weights moved through RTDS) are one
//! resource, in every snapshot: it is encoded again and replaced.
//!
//! In all cases every other resource, and every type not rebuilt, stays
//! the same `Arc`, and a group none of whose resources changed keeps its
//! `Arc<Snapshot>`.
//!
//! **Checks.** Of the invariant checks of a full compile (`check`),
//! endpoints touch none: they are about names and references, and the
//! previous snapshots passed them. A rebuilt route configuration gets the
//! ones it could fail, in every group that holds it: no domain in two
//! virtual hosts, and every cluster a route names is in the group's CDS
//! (a split may name a subset the service does not declare). The others
//! cannot change: resource names (listener and route configuration names
//! are the listener's, and no listener was renamed), which RDS and SDS
//! names a listener uses (its bytes are unchanged), and the clusters,
//! load assignments and secrets a group holds.
//!
//! The result is the full compile's, byte for byte and versions included
//! (a property test compares the two over random sequences of endpoint,
//! route, weight and other rules changes).

mod routes;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cluster::backends_of;
use super::eds::{self, EndpointCache};
use super::route::RouteCache;
use super::CompileError;
use crate::model::{Config, Listener, Service};
use crate::xds::{Resource, Snapshot, Snapshots, TypeUrl};

/// How two configs differ, when it is in endpoints, routes and runtime
/// keys alone.
#[derive(Debug)]
struct Delta {
    /// Some service's endpoints differ.
    endpoints: bool,
    /// The runtime layer's keys differ.
    runtime: bool,
    /// Indices of the listeners whose virtual hosts differ.
    listeners: Vec<usize>,
}

/// `config`'s snapshots from `prev_out`, the snapshots of `prev`, or
/// `None` when `config` needs a full compile. An error is one a full
/// compile of `config` gives too.
pub(super) fn recompile(
    prev: &Config,
    prev_out: &Snapshots,
    config: &Config,
    cache: &mut EndpointCache,
    route_cache: &mut RouteCache,
) -> Result<Option<Snapshots>, CompileError> {
    let Some(delta) = delta(prev, config) else {
        return Ok(None);
    };
    // Routes first: they may still call for a full compile, and must do so
    // before the endpoint cache is told this compile is a partial one.
    let mut out = if delta.listeners.is_empty() {
        prev_out.clone()
    } else {
        match routes::recompile(prev, prev_out, config, &delta.listeners, route_cache)? {
            Some(out) => out,
            None => return Ok(None),
        }
    };
    if delta.runtime {
        let layer = Arc::new(super::runtime_layer(config));
        out = replace_in_all(
            &out,
            TypeUrl::Runtime,
            &[(layer.name.clone(), layer)].into(),
        );
    }
    if !delta.endpoints {
        return Ok(Some(out));
    }
    cache.resume();
    Ok(Some(recompile_endpoints(prev, &out, config, cache)))
}

/// How `a` and `b` differ, if at most in their services' endpoints and
/// their listeners' virtual hosts. Destructured so that a new field is
/// not silently left out of the comparison.
fn delta(a: &Config, b: &Config) -> Option<Delta> {
    let Config {
        services,
        listeners,
        sources,
        runtime,
        // Decides which streams are served, not what is compiled.
        xds_access: _,
        grpc,
    } = a;
    // gRPC clients' load assignments differ from Envoys' under the same
    // names (`compile::grpc`): replacing them by name would mix the two.
    if !grpc.is_empty() || !b.grpc.is_empty() {
        return None;
    }
    if *sources != b.sources
        || services.len() != b.services.len()
        || listeners.len() != b.listeners.len()
    {
        return None;
    }
    let mut endpoints = false;
    for ((ka, sa), (kb, sb)) in services.iter().zip(&b.services) {
        // A service the resolver did not touch is the same `Arc`.
        if Arc::ptr_eq(sa, sb) {
            continue;
        }
        if ka != kb || !same_but_endpoints(sa, sb) {
            return None;
        }
        // `Arc` compares by pointer first: an unchanged service costs one
        // comparison.
        endpoints |= sa.endpoints != sb.endpoints;
    }
    let mut changed = Vec::new();
    // Listeners no overlay or rules change touched are shared.
    let listeners = if Arc::ptr_eq(listeners, &b.listeners) {
        &[][..]
    } else {
        &listeners[..]
    };
    for (i, (la, lb)) in listeners.iter().zip(b.listeners.iter()).enumerate() {
        if !same_but_virtual_hosts(la, lb) {
            return None;
        }
        if la.virtual_hosts != lb.virtual_hosts {
            changed.push(i);
        }
    }
    Some(Delta {
        endpoints,
        runtime: *runtime != b.runtime,
        listeners: changed,
    })
}

/// Every field but `endpoints`.
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

/// Every field but `virtual_hosts`: the name (also the route
/// configuration's), address, groups (which groups hold it), access log
/// and TLS (the secret) are the listener's own.
fn same_but_virtual_hosts(a: &Listener, b: &Listener) -> bool {
    let Listener {
        name,
        address,
        port,
        groups,
        virtual_hosts: _,
        access_log,
        tls,
    } = a;
    *name == b.name
        && *address == b.address
        && *port == b.port
        && *groups == b.groups
        && *access_log == b.access_log
        && *tls == b.tls
}

/// `config`'s snapshots from `prev_out`, when `prev` and `config` differ
/// in endpoints at most and `prev_out` holds everything else of `config`.
fn recompile_endpoints(
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
    replace_in_all(prev_out, TypeUrl::Endpoint, &changed)
}

/// `out` with the resources of `ty` that `updates` names replaced in every
/// snapshot that holds them; a snapshot where that changes nothing is kept.
fn replace_in_all(
    out: &Snapshots,
    ty: TypeUrl,
    updates: &BTreeMap<String, Arc<Resource>>,
) -> Snapshots {
    let update = |snap: &Arc<Snapshot>| -> Arc<Snapshot> {
        match snap.with_replaced(ty, updates) {
            Some(next) => Arc::new(next),
            None => snap.clone(),
        }
    };
    Snapshots {
        groups: out
            .groups
            .iter()
            .map(|(group, snap)| (group.clone(), update(snap)))
            .collect(),
        fallback: update(&out.fallback),
    }
}
