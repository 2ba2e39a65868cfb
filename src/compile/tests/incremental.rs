//! A compiler that reuses its last snapshots for endpoint-only changes
//! (`compile::incremental`) must give exactly what a compile from scratch
//! gives, through any sequence of endpoint and rules changes.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;

const SERVICES: [&str; 4] = ["a", "b", "c", "d"];

/// One change to the config, as discovery, a drain or a rules edit makes
/// it.
#[derive(Clone, Debug)]
enum Step {
    /// Endpoint `i` of service `s` moves: new port, weight and version.
    Move {
        s: usize,
        i: usize,
        port: u16,
        weight: u32,
        v2: bool,
    },
    /// Endpoint `i` of service `s` changes health (a drain, a registry).
    Health {
        s: usize,
        i: usize,
        h: usize,
    },
    Add {
        s: usize,
        octet: u8,
    },
    Remove {
        s: usize,
        i: usize,
    },
    /// A rules edit: listener `l`'s first route goes to service `s`.
    Reroute {
        l: usize,
        s: usize,
    },
    /// A rules edit that changes clusters only.
    Timeout {
        s: usize,
        ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let s = 0..SERVICES.len();
    prop_oneof![
        4 => (s.clone(), 0..4usize, 1u16..4, 1u32..4, any::<bool>())
            .prop_map(|(s, i, port, weight, v2)| Step::Move { s, i, port, weight, v2 }),
        2 => (s.clone(), 0..4usize, 0..5usize).prop_map(|(s, i, h)| Step::Health { s, i, h }),
        1 => (s.clone(), any::<u8>()).prop_map(|(s, octet)| Step::Add { s, octet }),
        1 => (s.clone(), 0..4usize).prop_map(|(s, i)| Step::Remove { s, i }),
        1 => (0..3usize, s.clone()).prop_map(|(l, s)| Step::Reroute { l, s }),
        1 => (s, 1u64..4).prop_map(|(s, ms)| Step::Timeout { s, ms: ms * 100 }),
    ]
}

/// Four services (two with a `v2` subset) behind three listeners: one of
/// group `g1`, one of `g2`, one for every group.
fn base() -> Config {
    let services = SERVICES
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let eps = (0..3u8)
                .map(|i| mk_endpoint(10 * n as u8 + i, 8080, &[("version", "v1")], 1))
                .collect();
            let subsets: &[Selector<'_>] = if n % 2 == 0 {
                &[("v2", &[("version", "v2")])]
            } else {
                &[]
            };
            mk_service(name, eps, subsets)
        })
        .collect();
    let route = |to: &str| vec![mk_route("r", PathMatch::Prefix("/".into()), mk_to(to))];
    let listeners = vec![
        mk_listener("edge", 10000, Some(&["g1"]), route("a")),
        mk_listener("side", 10001, Some(&["g2"]), route("b")),
        mk_listener("mesh", 10002, None, route("c")),
    ];
    mk_config(services, listeners)
}

fn service(config: &mut Config, s: usize) -> &mut Service {
    config
        .services
        .get_mut(SERVICES[s])
        .expect("fixture service")
}

/// Service `s`'s endpoints, to edit (copied if shared, as the publisher's
/// resolve and drains do).
fn endpoints(config: &mut Config, s: usize) -> &mut Vec<Endpoint> {
    Arc::make_mut(&mut service(config, s).endpoints)
}

fn apply(config: &mut Config, step: &Step) {
    match *step {
        Step::Move {
            s,
            i,
            port,
            weight,
            v2,
        } => {
            if let Some(ep) = endpoints(config, s).get_mut(i) {
                ep.port = 9000 + port;
                ep.weight = weight;
                let version = if v2 { "v2" } else { "v1" };
                ep.labels.insert("version".into(), version.into());
            }
        }
        Step::Health { s, i, h } => {
            if let Some(ep) = endpoints(config, s).get_mut(i) {
                ep.health = [
                    Health::Healthy,
                    Health::Degraded,
                    Health::Unknown,
                    Health::Draining,
                    Health::Unhealthy,
                ][h];
            }
        }
        Step::Add { s, octet } => {
            let ep = mk_endpoint(octet, 8080, &[], 2);
            endpoints(config, s).push(ep);
        }
        Step::Remove { s, i } => {
            let eps = endpoints(config, s);
            if i < eps.len() {
                eps.remove(i);
            }
        }
        Step::Reroute { l, s } => {
            config.listeners[l].virtual_hosts[0].routes[0].action = mk_to(SERVICES[s]);
        }
        Step::Timeout { s, ms } => {
            service(config, s).connect_timeout = Duration::from_millis(ms);
        }
    }
}

proptest! {
    #[test]
    fn incremental_compiles_equal_compiles_from_scratch(
        steps in prop::collection::vec(step(), 1..16),
    ) {
        let mut compiler = Compiler::default();
        let mut config = base();
        let first = Arc::new(config.clone());
        let got = compiler.compile(&first).expect("compiles");
        prop_assert_eq!(got, compile(&first).expect("compiles"));
        for step in &steps {
            apply(&mut config, step);
            let config = Arc::new(config.clone());
            let got = compiler.compile(&config).expect("compiles");
            prop_assert_eq!(got, compile(&config).expect("compiles"), "after {:?}", step);
        }
    }
}

#[test]
fn an_endpoint_change_keeps_every_other_resource_and_untouched_groups() {
    let mut compiler = Compiler::default();
    let before = Arc::new(base());
    let first = compiler.compile(&before).expect("compiles");
    let mut config = base();
    apply(
        &mut config,
        &Step::Move {
            s: 0,
            i: 1,
            port: 3,
            weight: 2,
            v2: false,
        },
    );
    let after = compiler.compile(&Arc::new(config)).expect("compiles");
    // `a` is only behind g1's listener: g2 and the fallback are untouched.
    assert!(Arc::ptr_eq(&after.groups["g2"], &first.groups["g2"]));
    assert!(Arc::ptr_eq(&after.fallback, &first.fallback));
    let (g1, was) = (&after.groups["g1"], &first.groups["g1"]);
    assert!(!Arc::ptr_eq(g1, was));
    for ty in [
        TypeUrl::Cluster,
        TypeUrl::Listener,
        TypeUrl::Route,
        TypeUrl::Secret,
    ] {
        assert!(g1.shares(was, ty), "{ty} rebuilt for an endpoint change");
    }
    assert_ne!(
        g1.version(TypeUrl::Endpoint),
        was.version(TypeUrl::Endpoint)
    );
    // Only `a`'s assignment is new; `c`'s (also in g1) is the same `Arc`.
    let eds = |s: &Snapshot, name: &str| s.get(TypeUrl::Endpoint, name).expect("cla").clone();
    assert!(!Arc::ptr_eq(&eds(g1, "a"), &eds(was, "a")));
    assert!(Arc::ptr_eq(&eds(g1, "c"), &eds(was, "c")));
}
