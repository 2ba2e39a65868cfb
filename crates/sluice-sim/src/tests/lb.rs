//! Load balancers and host selection: weighted round robin, ring hash
//! stability, priority spill-over and panic.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
use envoy_types::pb::envoy::config::core::v3::HealthStatus;

use super::*;
use crate::lb::{ClusterLb, HostLoad};

fn counts(
    lb: &mut ClusterLb,
    n: usize,
    hash: impl Fn(usize) -> Option<u64>,
) -> HashMap<u16, usize> {
    let load = HostLoad::default();
    let mut out = HashMap::new();
    for i in 0..n {
        let h = lb.pick(hash(i), &load).expect("host");
        *out.entry(lb.hosts[h].addr.port()).or_default() += 1;
    }
    out
}

#[test]
fn weighted_round_robin_lands_at_three_to_one() {
    let eps = mk_endpoints(
        "c",
        &[
            (1, 3, HealthStatus::Healthy, 0),
            (2, 1, HealthStatus::Healthy, 0),
        ],
    );
    let mut lb = ClusterLb::new(mk_cluster("c", LbPolicy::RoundRobin), eps, 7);
    let c = counts(&mut lb, 4000, |_| None);
    let share = c[&1] as f64 / 4000.0;
    assert!((share - 0.75).abs() <= 0.05 * 0.75, "3:1 measured {c:?}");
    // EDF is exact over whole cycles, not just on average.
    assert_eq!((c[&1], c[&2]), (3000, 1000));
}

#[test]
fn equal_weight_round_robin_rotates() {
    let mut lb = ClusterLb::new(
        mk_cluster("c", LbPolicy::RoundRobin),
        mk_endpoints("c", &healthy(&[1, 2, 3])),
        1,
    );
    let c = counts(&mut lb, 300, |_| None);
    assert_eq!(c.values().copied().collect::<Vec<_>>(), vec![100; 3]);
}

#[test]
fn ring_hash_remaps_about_one_nth_when_a_host_leaves() {
    let ports: Vec<u16> = (1..=10).collect();
    let before = mk_endpoints("c", &healthy(&ports));
    let after = mk_endpoints("c", &healthy(&ports[..9]));
    let cluster = mk_cluster("c", LbPolicy::RingHash);
    let mut a = ClusterLb::new(cluster.clone(), before, 1);
    let mut b = ClusterLb::new(cluster, after, 1);
    let load = HostLoad::default();
    let keys = 10_000u64;
    let mut moved = 0;
    for k in 0..keys {
        let h = Some(crate::hash::xxhash64(&k.to_le_bytes(), 0));
        let i = a.pick(h, &load).expect("a");
        let j = b.pick(h, &load).expect("b");
        let (x, y) = (a.hosts[i].addr, b.hosts[j].addr);
        // Every key of the host that left must move. Others move too:
        // Envoy keeps the ring at about `minimum_ring_size` entries, so each
        // remaining host gets ~11% more entries ("addr_103".."addr_113"),
        // which take over arcs of other hosts.
        if x.port() == 10 {
            assert_ne!(x, y);
        }
        moved += usize::from(x != y);
    }
    let share = moved as f64 / keys as f64;
    assert!(
        (0.10..=0.20).contains(&share),
        "moved {share:.3} of keys, expected 1/10 plus resize churn"
    );
}

#[test]
fn maglev_spreads_evenly_and_is_consistent() {
    let cluster = mk_cluster("c", LbPolicy::Maglev);
    let mut lb = ClusterLb::new(cluster, mk_endpoints("c", &healthy(&[1, 2, 3, 4])), 1);
    let c = counts(&mut lb, 8000, |i| {
        Some(crate::hash::xxhash64(&i.to_le_bytes(), 0))
    });
    for (port, n) in &c {
        assert!((1700..=2300).contains(n), "host {port} got {n} of 8000");
    }
    let load = HostLoad::default();
    assert_eq!(lb.pick(Some(42), &load), lb.pick(Some(42), &load));
}

#[test]
fn priority_spills_by_overprovisioned_health_and_panics_below_threshold() {
    use HealthStatus::{Healthy, Unhealthy};
    let cluster = mk_cluster("c", LbPolicy::RoundRobin);
    // P0: 1 of 2 healthy → 50% × 1.4 = 70% of load; P1 takes the other 30%.
    let eps = mk_endpoints(
        "c",
        &[(1, 1, Healthy, 0), (2, 1, Unhealthy, 0), (3, 1, Healthy, 1)],
    );
    let lb = ClusterLb::new(cluster.clone(), eps, 1);
    assert_eq!(lb.priority_loads(), vec![70.0, 30.0]);
    // All of P0 healthy: P1 gets nothing.
    let lb = ClusterLb::new(
        cluster.clone(),
        mk_endpoints("c", &[(1, 1, Healthy, 0), (3, 1, Healthy, 1)]),
        1,
    );
    assert_eq!(lb.priority_loads(), vec![100.0, 0.0]);
    // One priority, 1 of 3 healthy (33% < 50%): panic, every host is used.
    let eps = mk_endpoints(
        "c",
        &[
            (1, 1, Healthy, 0),
            (2, 1, Unhealthy, 0),
            (3, 1, Unhealthy, 0),
        ],
    );
    let mut lb = ClusterLb::new(cluster.clone(), eps, 1);
    assert_eq!(counts(&mut lb, 300, |_| None).len(), 3);
    // Same with 2 of 3 healthy: no panic, the unhealthy host gets nothing.
    let eps = mk_endpoints(
        "c",
        &[(1, 1, Healthy, 0), (2, 1, Healthy, 0), (3, 1, Unhealthy, 0)],
    );
    let mut lb = ClusterLb::new(cluster, eps, 1);
    assert_eq!(counts(&mut lb, 300, |_| None).get(&3), None);
}

#[test]
fn least_request_prefers_the_idle_host() {
    let cluster = mk_cluster("c", LbPolicy::LeastRequest);
    let mut lb = ClusterLb::new(cluster, mk_endpoints("c", &healthy(&[1, 2])), 3);
    let load = HostLoad {
        active: vec![50, 0],
        ejected: vec![false, false],
    };
    let picks: Vec<usize> = (0..200)
        .map(|_| lb.pick(None, &load).expect("host"))
        .collect();
    // P2C picks the busy host only when both choices land on it (~1/4).
    let busy = picks.iter().filter(|h| **h == 0).count();
    assert!(busy < 80, "busy host picked {busy} of 200");
}
