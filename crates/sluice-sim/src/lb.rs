//! Host selection for one cluster, as Envoy's load balancers do it.
//!
//! A pick goes: priority level (each level's health, scaled by the
//! overprovisioning factor, sets its share of load; what a level cannot take
//! spills to the next), then the level's hosts to use (healthy ones, or all
//! of them when the level is in panic: healthy share below
//! `healthy_panic_threshold`), then the policy: round robin (plain rotation
//! for equal weights, Envoy's EDF scheduler otherwise), least request
//! (power of N choices, or EDF on `weight / (active + 1)^bias` when weights
//! differ), random, ring hash or Maglev.
//!
//! [`ClusterLb`] is rebuilt when the cluster, its endpoints or the set of
//! ejected hosts change; active request counts are passed in on each pick.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::resources::{Health, LbPolicy, SimCluster, SimEndpoints, SimHost};
use super::ring::{Maglev, Ring};

/// Live per-host state the load balancer reads: index = flat host index
/// (priorities in order, hosts in EDS order).
#[derive(Clone, Debug, Default)]
pub struct HostLoad {
    pub active: Vec<u32>,
    pub ejected: Vec<bool>,
}

pub struct ClusterLb {
    pub cluster: Arc<SimCluster>,
    pub endpoints: Arc<SimEndpoints>,
    /// All hosts, flat.
    pub hosts: Vec<SimHost>,
    levels: Vec<Level>,
    /// Cumulative load per level, in percent (last is 100).
    cumulative: Vec<f64>,
    pickers: HashMap<usize, Picker>,
    ejected: Vec<bool>,
    rng: Xoshiro256PlusPlus,
}

struct Level {
    /// Flat indices of the hosts to pick from.
    usable: Vec<usize>,
}

enum Picker {
    Rotate { next: usize },
    Edf(Edf),
    LeastRequest,
    WeightedLeastRequest(Edf),
    Random,
    Ring(Ring),
    Maglev(Maglev),
}

/// Envoy's earliest-deadline-first scheduler: each host's next deadline is
/// the current time plus 1/weight; ties go to the earlier entry.
struct Edf {
    heap: BinaryHeap<EdfEntry>,
    now: f64,
    seq: u64,
}

#[derive(PartialEq)]
struct EdfEntry {
    deadline: f64,
    seq: u64,
    host: usize,
}

impl Eq for EdfEntry {}
impl PartialOrd for EdfEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for EdfEntry {
    // Reversed: BinaryHeap is a max-heap and we want the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .total_cmp(&self.deadline)
            .then(other.seq.cmp(&self.seq))
    }
}

impl Edf {
    fn new(hosts: impl IntoIterator<Item = (usize, f64)>) -> Edf {
        let mut e = Edf {
            heap: BinaryHeap::new(),
            now: 0.0,
            seq: 0,
        };
        for (h, w) in hosts {
            e.add(h, w);
        }
        e
    }

    fn add(&mut self, host: usize, weight: f64) {
        self.seq += 1;
        self.heap.push(EdfEntry {
            deadline: self.now + 1.0 / weight.max(f64::MIN_POSITIVE),
            seq: self.seq,
            host,
        });
    }

    fn pick(&mut self, weight_of: impl Fn(usize) -> f64) -> Option<usize> {
        let e = self.heap.pop()?;
        self.now = e.deadline;
        self.add(e.host, weight_of(e.host));
        Some(e.host)
    }
}

impl ClusterLb {
    pub fn new(cluster: Arc<SimCluster>, endpoints: Arc<SimEndpoints>, seed: u64) -> ClusterLb {
        let hosts: Vec<SimHost> = endpoints.priorities.iter().flatten().cloned().collect();
        let ejected = vec![false; hosts.len()];
        let mut lb = ClusterLb {
            cluster,
            endpoints,
            hosts,
            levels: vec![],
            cumulative: vec![],
            pickers: HashMap::new(),
            ejected,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
        };
        lb.rebuild();
        lb
    }

    /// Recompute levels after hosts were ejected or returned.
    pub fn set_ejected(&mut self, ejected: &[bool]) {
        if ejected != self.ejected.as_slice() {
            self.ejected = ejected.to_vec();
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        let over = self.endpoints.overprovisioning;
        let threshold = self.cluster.panic_threshold;
        let mut start = 0;
        let mut health = Vec::new();
        let mut levels = Vec::new();
        let mut panic_if_partial = Vec::new();
        for level in &self.endpoints.priorities {
            let idx: Vec<usize> = (start..start + level.len()).collect();
            start += level.len();
            let ok =
                |h: &&usize, want: Health| self.hosts[**h].health == want && !self.ejected[**h];
            let healthy: Vec<usize> = idx
                .iter()
                .filter(|h| ok(h, Health::Healthy))
                .copied()
                .collect();
            let degraded: Vec<usize> = idx
                .iter()
                .filter(|h| ok(h, Health::Degraded))
                .copied()
                .collect();
            let n = idx.len().max(1) as f64;
            let pct = 100.0 * (healthy.len() + degraded.len()) as f64 / n;
            health.push((100.0 * over * healthy.len().max(degraded.len()) as f64 / n).min(100.0));
            panic_if_partial.push((threshold > 0.0 && pct < threshold, idx.clone()));
            levels.push(if !healthy.is_empty() {
                healthy
            } else {
                degraded
            });
        }
        let total: f64 = health.iter().sum();
        // Envoy: panic is only possible while the levels together cannot
        // take all the load; with no healthy host anywhere, level 0 is used
        // in panic.
        let mut cumulative = Vec::new();
        if total <= 0.0 {
            cumulative = vec![100.0; health.len().min(1)];
            levels.truncate(1);
            if let Some((_, all)) = panic_if_partial.first() {
                levels = vec![all.clone()];
            }
        } else {
            let mut left = 100.0;
            let mut acc = 0.0;
            for h in &health {
                let share = if total >= 100.0 {
                    h.min(left)
                } else {
                    h * 100.0 / total
                };
                left -= share;
                acc += share;
                cumulative.push(acc);
            }
            if total < 100.0 {
                for (lvl, (panic, all)) in levels.iter_mut().zip(&panic_if_partial) {
                    if *panic {
                        *lvl = all.clone();
                    }
                }
            }
        }
        self.levels = levels.into_iter().map(|usable| Level { usable }).collect();
        self.cumulative = cumulative;
        self.pickers.clear();
    }

    /// The flat index of the host for this request, `None` when the cluster
    /// has no host at all ("no healthy upstream").
    pub fn pick(&mut self, hash: Option<u64>, load: &HostLoad) -> Option<usize> {
        let r = self.rng.random_range(0.0..100.0);
        let p = self.cumulative.iter().position(|c| r < *c).unwrap_or(0);
        let usable = &self.levels.get(p)?.usable;
        if usable.is_empty() {
            return None;
        }
        let hosts = &self.hosts;
        let cluster = &self.cluster;
        let rng = &mut self.rng;
        let picker = self.pickers.entry(p).or_insert_with(|| {
            let weights: Vec<f64> = usable.iter().map(|h| f64::from(hosts[*h].weight)).collect();
            let equal = weights.windows(2).all(|w| w[0] == w[1]);
            let pairs = || -> Vec<_> {
                usable
                    .iter()
                    .map(|h| (hosts[*h].addr, hosts[*h].weight))
                    .collect()
            };
            match cluster.lb {
                // Envoy starts rotation at a random offset.
                LbPolicy::RoundRobin if equal => Picker::Rotate {
                    next: rng.random_range(0..usable.len()),
                },
                LbPolicy::RoundRobin => {
                    Picker::Edf(Edf::new((0..usable.len()).map(|i| (i, weights[i]))))
                }
                LbPolicy::LeastRequest if equal => Picker::LeastRequest,
                LbPolicy::LeastRequest => Picker::WeightedLeastRequest(Edf::new(
                    (0..usable.len()).map(|i| (i, weights[i])),
                )),
                LbPolicy::Random => Picker::Random,
                LbPolicy::RingHash => Picker::Ring(Ring::build(&pairs(), cluster.min_ring_size)),
                LbPolicy::Maglev => {
                    Picker::Maglev(Maglev::build(&pairs(), cluster.maglev_table_size))
                }
            }
        });
        let active = |i: usize| load.active.get(usable[i]).copied().unwrap_or(0);
        let i = match picker {
            Picker::Rotate { next } => {
                let i = *next % usable.len();
                *next = next.wrapping_add(1);
                i
            }
            Picker::Edf(edf) => edf.pick(|i| f64::from(hosts[usable[i]].weight))?,
            Picker::LeastRequest => {
                let mut best: Option<usize> = None;
                for _ in 0..cluster.choice_count.max(1) {
                    let c = rng.random_range(0..usable.len());
                    if best.is_none_or(|b| active(c) < active(b)) {
                        best = Some(c);
                    }
                }
                best?
            }
            Picker::WeightedLeastRequest(edf) => edf.pick(|i| {
                let w = f64::from(hosts[usable[i]].weight);
                w / (f64::from(active(i)) + 1.0).powf(cluster.active_request_bias)
            })?,
            Picker::Random => rng.random_range(0..usable.len()),
            Picker::Ring(ring) => ring.pick(hash.unwrap_or_else(|| rng.random()))?,
            Picker::Maglev(m) => m.pick(hash.unwrap_or_else(|| rng.random()))?,
        };
        usable.get(i).copied()
    }

    /// Share of load per priority level, in percent (for tests and reports).
    pub fn priority_loads(&self) -> Vec<f64> {
        let mut prev = 0.0;
        self.cumulative
            .iter()
            .map(|c| {
                let s = c - prev;
                prev = *c;
                s
            })
            .collect()
    }
}
