//! Filling the rules' discovered services with endpoints: the rule for
//! merging what several sources say about one address ([`merge`]), and
//! resolving again and again.
//!
//! The publisher resolves the rules against every view that changes what
//! is served — with one endpoint moving somewhere, every few hundred
//! milliseconds. [`View::resolve`] merges every discovered service's
//! sources afresh each time; a [`Resolver`] remembers, per service, which
//! feed endpoint maps (by `Arc`: the index replaces a feed's map only when
//! its endpoints change) and static endpoints it merged last, and merges
//! again only the services for which one of them moved. The result is the
//! same config either way: [`merge`] is a function of those inputs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::index::{ResolveError, View};
use crate::model::{Config, Endpoint, Health, Service};

/// [`View::resolve`] with memory of the last merges.
#[derive(Debug, Default)]
pub struct Resolver {
    merged: BTreeMap<String, Merged>,
}

/// One service's last merge: its inputs and the result.
#[derive(Debug)]
struct Merged {
    /// The service as the rules give it (static endpoints only).
    rules: Arc<Service>,
    sources: Vec<Arc<BTreeMap<String, Endpoint>>>,
    /// `rules` with the merged endpoints: handed out again, the same
    /// `Arc`, while the inputs stay, so the compiler sees an unchanged
    /// service by pointer and the copy of the config costs a count.
    resolved: Arc<Service>,
}

impl Resolver {
    /// What [`View::resolve`] gives for `view` and `config`.
    pub fn resolve(&mut self, view: &View, config: &Config) -> Result<Config, ResolveError> {
        let mut out = config.clone();
        for (name, service) in out.services.iter_mut() {
            if service.discovery.is_empty() {
                continue;
            }
            let sources = view.sources_of(service)?;
            let same_sources = |m: &Merged| {
                m.sources.len() == sources.len()
                    && m.sources
                        .iter()
                        .zip(&sources)
                        .all(|(a, b)| Arc::ptr_eq(a, b))
            };
            let resolved = match self.merged.get_mut(name) {
                // A rules reload makes new `Arc`s of equal services.
                Some(m)
                    if same_sources(m)
                        && (Arc::ptr_eq(&m.rules, service) || m.rules == *service) =>
                {
                    m.rules = service.clone();
                    m.resolved.clone()
                }
                _ => {
                    let maps: Vec<&BTreeMap<String, Endpoint>> =
                        sources.iter().map(|s| &***s).collect();
                    let mut resolved = Service::clone(service);
                    resolved.endpoints = Arc::new(merge(&service.endpoints, &maps));
                    let resolved = Arc::new(resolved);
                    let m = Merged {
                        rules: service.clone(),
                        sources: sources.into_iter().cloned().collect(),
                        resolved: resolved.clone(),
                    };
                    self.merged.insert(name.clone(), m);
                    resolved
                }
            };
            *service = resolved;
        }
        // Services no longer discovered (or in the rules) are forgotten.
        self.merged.retain(|name, _| {
            config
                .services
                .get(name)
                .is_some_and(|s| !s.discovery.is_empty())
        });
        Ok(out)
    }
}

impl View {
    /// `config` with each discovered service's endpoints filled in: its
    /// static endpoints merged with every feed's, by [`merge`]. Fails until
    /// every feed the config needs has synced once (DESIGN invariant 5).
    /// ([`Resolver`] gives the same, merging only services whose feeds
    /// changed since its last call.)
    pub fn resolve(&self, config: &Config) -> Result<Config, ResolveError> {
        let mut out = config.clone();
        for service in out.services.values_mut() {
            if service.discovery.is_empty() {
                continue;
            }
            let sources = self.sources_of(service)?;
            let maps: Vec<&BTreeMap<String, Endpoint>> = sources.iter().map(|s| &***s).collect();
            let merged = Arc::new(merge(&service.endpoints, &maps));
            Arc::make_mut(service).endpoints = merged;
        }
        Ok(out)
    }
}

/// Merges endpoints that may name the same address:port more than once.
///
/// The rule, chosen so that the result never depends on arrival order:
/// candidates are taken static endpoints first, then each source in the
/// service's discovery order (consul, etcd, kubernetes, file), each by
/// entry id. For one address:port the candidate with the best health wins
/// (healthy, degraded, unknown, draining, unhealthy — a registry that still
/// sees the instance serving is believed over one that does not); on a tie
/// the earlier candidate wins. The winner's labels are completed with the
/// other candidates' labels it lacks. Output is ordered by address:port.
pub fn merge(statics: &[Endpoint], sources: &[&BTreeMap<String, Endpoint>]) -> Vec<Endpoint> {
    let mut by_addr: BTreeMap<SocketAddr, Endpoint> = BTreeMap::new();
    let candidates = statics
        .iter()
        .chain(sources.iter().flat_map(|s| s.values()));
    for ep in candidates {
        let addr = SocketAddr::new(ep.address, ep.port);
        match by_addr.get_mut(&addr) {
            None => {
                by_addr.insert(addr, ep.clone());
            }
            Some(current) => {
                let (mut winner, loser) = if rank(ep.health) < rank(current.health) {
                    (ep.clone(), &*current)
                } else {
                    (current.clone(), ep)
                };
                for (k, v) in &loser.labels {
                    winner.labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
                *current = winner;
            }
        }
    }
    by_addr.into_values().collect()
}

fn rank(h: Health) -> u8 {
    match h {
        Health::Healthy => 0,
        Health::Degraded => 1,
        Health::Unknown => 2,
        Health::Draining => 3,
        Health::Unhealthy => 4,
    }
}
