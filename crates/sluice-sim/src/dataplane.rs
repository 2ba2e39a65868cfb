//! One simulated proxy's request path: listener → route configuration →
//! route → cluster → host, over the configuration the xDS client accepted
//! ([`View`]). Also the per-host state Envoy keeps: active requests (least
//! request, circuit breakers) and outlier detection (consecutive 5xx).
//!
//! Local answers use Envoy's codes: 404 when no virtual host or route
//! matches (`NR`), 503 when the cluster is unknown or still warming (`NC`),
//! 503 when it has no host (`UH`), 503 on circuit-breaker overflow (`UO`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::filters::FilterState;
use super::http::Request;
use super::lb::{ClusterLb, HostLoad};
use super::resources::{SimCluster, SimEndpoints};
use super::route::{Action, Retry};
use super::state::View;

/// Where a request goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Upstream(Upstream),
    /// Answered by the proxy itself.
    Local {
        status: u16,
        flag: &'static str,
    },
    /// The cluster's `max_requests` circuit breaker is open: 503 (`UO`).
    Overflow {
        cluster: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    pub cluster: String,
    pub host: SocketAddr,
    pub timeout: Duration,
    pub retry: Option<Retry>,
}

struct ClusterState {
    lb: ClusterLb,
    active: HashMap<SocketAddr, u32>,
    outlier: HashMap<SocketAddr, Outlier>,
    /// Requests in flight to the cluster (circuit breaker `max_requests`).
    in_flight: u32,
}

#[derive(Default)]
struct Outlier {
    consecutive_5xx: u32,
    ejected_until: Option<Duration>,
    ejections: u32,
}

pub struct DataPlane {
    clusters: HashMap<String, ClusterState>,
    rng: Xoshiro256PlusPlus,
    seed: u64,
    /// What the proxy's HTTP filters keep (rate-limit buckets, the clock).
    pub filters: FilterState,
}

impl DataPlane {
    pub fn new(seed: u64) -> DataPlane {
        DataPlane {
            clusters: HashMap::new(),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            seed,
            filters: FilterState::new(seed ^ 0x5eed_f11e),
        }
    }

    /// Route `req` arriving on `listener` (or the first listener) at time
    /// `now`. An `Upstream` decision counts as in flight until
    /// [`DataPlane::finish`].
    pub fn decide(
        &mut self,
        view: &View,
        listener: Option<&str>,
        req: &Request,
        now: Duration,
    ) -> Decision {
        let local = |status, flag| Decision::Local { status, flag };
        let l = match listener {
            Some(name) => view.listeners.get(name),
            None => view.listeners.values().next(),
        };
        let Some(table) = l.and_then(|l| view.routes.get(&l.rds)) else {
            return local(404, "NR");
        };
        let Ok(route) = table.route(req) else {
            return local(404, "NR");
        };
        let fwd = match &route.action {
            Action::Forward(f) => f,
            Action::Direct(status) => return local(*status, "DR"),
            Action::Redirect => return local(301, "RD"),
        };
        let cluster_name = fwd.pick_cluster(self.rng.random(), &|key| view.runtime_integer(key));
        let Some(cluster) = view.clusters.get(cluster_name) else {
            return local(503, "NC");
        };
        let endpoints = match &cluster.inline_endpoints {
            Some(e) => e.clone(),
            None => match view.endpoints.get(&cluster.eds_name) {
                Some(e) => e.clone(),
                None => return local(503, "NC"),
            },
        };
        let hash = fwd.hash(req);
        let Some(host) = self.pick(cluster, &endpoints, hash, now) else {
            return local(503, "UH");
        };
        let Some(state) = self.clusters.get_mut(cluster_name) else {
            return local(503, "NC");
        };
        if state.in_flight >= cluster.max_requests {
            return Decision::Overflow {
                cluster: cluster_name.to_string(),
            };
        }
        state.in_flight += 1;
        *state.active.entry(host).or_default() += 1;
        Decision::Upstream(Upstream {
            cluster: cluster_name.to_string(),
            host,
            timeout: fwd.timeout,
            retry: fwd.retry.clone(),
        })
    }

    /// Pick a host of `cluster` (used by `decide` and for retries).
    pub fn pick(
        &mut self,
        cluster: &Arc<SimCluster>,
        endpoints: &Arc<SimEndpoints>,
        hash: Option<u64>,
        now: Duration,
    ) -> Option<SocketAddr> {
        let seed = self.seed ^ super::hash::xxhash64(cluster.name.as_bytes(), 0);
        let state = self
            .clusters
            .entry(cluster.name.clone())
            .or_insert_with(|| ClusterState {
                lb: ClusterLb::new(cluster.clone(), endpoints.clone(), seed),
                active: HashMap::new(),
                outlier: HashMap::new(),
                in_flight: 0,
            });
        if !Arc::ptr_eq(&state.lb.cluster, cluster) || !Arc::ptr_eq(&state.lb.endpoints, endpoints)
        {
            state.lb = ClusterLb::new(cluster.clone(), endpoints.clone(), seed);
        }
        let hosts = state.lb.hosts.clone();
        let mut ejected: Vec<bool> = hosts
            .iter()
            .map(|h| {
                state
                    .outlier
                    .get(&h.addr)
                    .and_then(|o| o.ejected_until)
                    .is_some_and(|t| t > now)
            })
            .collect();
        // Ejected hosts never exceed max_ejection_percent (Envoy: 10%), but
        // Envoy always allows one.
        if let Some(o) = &cluster.outlier {
            let max = (hosts.len() * o.max_ejection_percent as usize / 100).max(1);
            let mut n = 0;
            for e in ejected.iter_mut() {
                if *e {
                    n += 1;
                    *e = n <= max;
                }
            }
        }
        state.lb.set_ejected(&ejected);
        let load = HostLoad {
            active: hosts
                .iter()
                .map(|h| state.active.get(&h.addr).copied().unwrap_or(0))
                .collect(),
            ejected,
        };
        let i = state.lb.pick(hash, &load)?;
        state.lb.hosts.get(i).map(|h| h.addr)
    }

    /// Another host of the same cluster for a retry (Envoy's default retry
    /// host predicate allows the same host again). Counts as in flight.
    pub fn retry(&mut self, view: &View, cluster: &str, now: Duration) -> Option<SocketAddr> {
        let c = view.clusters.get(cluster)?.clone();
        let endpoints = match &c.inline_endpoints {
            Some(e) => e.clone(),
            None => view.endpoints.get(&c.eds_name)?.clone(),
        };
        let host = self.pick(&c, &endpoints, None, now)?;
        let state = self.clusters.get_mut(cluster)?;
        state.in_flight += 1;
        *state.active.entry(host).or_default() += 1;
        Some(host)
    }

    /// A request to `host` of `cluster` ended with `status` (0: reset or
    /// timeout, counted as a 5xx by outlier detection).
    pub fn finish(&mut self, cluster: &SimCluster, host: SocketAddr, status: u16, now: Duration) {
        let Some(state) = self.clusters.get_mut(&cluster.name) else {
            return;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some(a) = state.active.get_mut(&host) {
            *a = a.saturating_sub(1);
        }
        let Some(cfg) = &cluster.outlier else {
            return;
        };
        let o = state.outlier.entry(host).or_default();
        if status >= 500 || status == 0 {
            o.consecutive_5xx += 1;
            if o.consecutive_5xx >= cfg.consecutive_5xx && o.ejected_until.is_none_or(|t| t <= now)
            {
                o.ejections += 1;
                o.consecutive_5xx = 0;
                o.ejected_until = Some(now + cfg.base_ejection_time * o.ejections);
            }
        } else {
            o.consecutive_5xx = 0;
        }
    }

    /// Hosts currently ejected from `cluster`.
    pub fn ejected(&self, cluster: &str, now: Duration) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self
            .clusters
            .get(cluster)
            .map(|s| {
                s.outlier
                    .iter()
                    .filter(|(_, o)| o.ejected_until.is_some_and(|t| t > now))
                    .map(|(a, _)| *a)
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}
