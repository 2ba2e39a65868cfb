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
use crate::model::{Config, Endpoint, Health};

/// [`View::resolve`] with memory of the last merges.
#[derive(Debug, Default)]
pub struct Resolver {
    merged: BTreeMap<String, Merged>,
}

/// One service's last merge: its inputs and the result.
#[derive(Debug)]
struct Merged {
    statics: Arc<Vec<Endpoint>>,
    sources: Vec<Arc<BTreeMap<String, Endpoint>>>,
    endpoints: Arc<Vec<Endpoint>>,
}

impl Resolver {
    /// What [`View::resolve`] gives for `view` and `config`.
    pub fn resolve(&mut self, view: &View, config: &Config) -> Result<Config, ResolveError> {
        let mut out = config.clone();
        let mut merged = BTreeMap::new();
        for service in out.services.values_mut() {
            if service.discovery.is_empty() {
                continue;
            }
            let sources = view.sources_of(service)?;
            let last = self.merged.remove(&service.name).filter(|m| {
                m.statics == service.endpoints
                    && m.sources.len() == sources.len()
                    && m.sources
                        .iter()
                        .zip(&sources)
                        .all(|(a, b)| Arc::ptr_eq(a, b))
            });
            let m = match last {
                Some(m) => m,
                None => {
                    let maps: Vec<&BTreeMap<String, Endpoint>> =
                        sources.iter().map(|s| &***s).collect();
                    Merged {
                        endpoints: Arc::new(merge(&service.endpoints, &maps)),
                        statics: service.endpoints.clone(),
                        sources: sources.into_iter().cloned().collect(),
                    }
                }
            };
            service.endpoints = m.endpoints.clone();
            merged.insert(service.name.clone(), m);
        }
        // Services no longer in the rules are forgotten.
        self.merged = merged;
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
