//! The cached-endpoint encoding of load assignments (`compile::eds`) must
//! give exactly prost's bytes for the same message, whatever the cache
//! holds from earlier compiles.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use proptest::prelude::*;
use prost::Message;

use crate::compile::cluster::{backends_of, load_assignment};
use crate::compile::eds::{self, EndpointCache};
use crate::model::*;

fn health(i: u8) -> Health {
    [
        Health::Unknown,
        Health::Healthy,
        Health::Degraded,
        Health::Unhealthy,
        Health::Draining,
    ][usize::from(i % 5)]
}

fn locality(i: u8) -> Option<Locality> {
    (!i.is_multiple_of(4)).then(|| Locality {
        region: format!("r{}", i % 2),
        zone: if i.is_multiple_of(3) {
            String::new()
        } else {
            format!("z{i}")
        },
        sub_zone: String::new(),
    })
}

/// (address, v6?, port, weight, health, locality, priority, label)
type Ep = (u32, bool, u16, u32, u8, u8, u8, bool);

fn service(eps: &[Ep], weighted: bool) -> Service {
    let endpoints = eps
        .iter()
        .map(|&(a, v6, port, weight, h, loc, prio, canary)| Endpoint {
            address: if v6 {
                IpAddr::V6(Ipv6Addr::new(
                    0xfd00,
                    0,
                    0,
                    0,
                    0,
                    0,
                    (a >> 16) as u16,
                    a as u16,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(a))
            },
            port,
            labels: BTreeMap::from([("v".to_string(), if canary { "2" } else { "1" }.to_string())]),
            weight,
            health: health(h),
            locality: locality(loc).map(Box::new),
            priority: u32::from(prio % 3),
        })
        .collect::<Vec<_>>()
        .into();
    let mut policy = crate::model::ServicePolicy::default();
    if weighted {
        policy.locality_lb = Some(Box::new(crate::model::LocalityLb::Weighted(
            (0..4)
                .filter_map(locality)
                .map(|locality| crate::model::LocalityWeight {
                    locality,
                    weight: 7,
                })
                .collect(),
        )));
    }
    Service {
        name: "svc".into(),
        connect_timeout: Duration::from_secs(1),
        lb_policy: LbPolicy::RoundRobin,
        endpoints,
        subsets: BTreeMap::from([(
            "canary".to_string(),
            BTreeMap::from([("v".to_string(), "2".to_string())]),
        )]),
        discovery: Vec::new(),
        policy: policy.into(),
    }
}

fn ep() -> impl Strategy<Value = Ep> {
    (
        any::<u32>(),
        any::<bool>(),
        any::<u16>(),
        // Weights past one varint byte too.
        prop_oneof![1u32..4, 100u32..100_000],
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<bool>(),
    )
}

proptest! {
    #[test]
    fn cached_encoding_is_prosts_encoding(
        first in prop::collection::vec(ep(), 0..40),
        second in prop::collection::vec(ep(), 0..40),
        weighted in any::<bool>(),
    ) {
        // The same cache through several configs, as a publisher uses
        // it: a repeat (whole groups cached), one endpoint changed (its
        // group re-assembled from cached endpoints), another config.
        let mut tweaked = first.clone();
        if let Some(e) = tweaked.first_mut() {
            e.3 = e.3 % 1000 + 1;
        }
        let mut cache = EndpointCache::default();
        for eps in [&first, &first, &tweaked, &second, &first] {
            cache_start(&mut cache);
            let svc = service(eps, weighted);
            for backend in backends_of(&svc) {
                let expected = load_assignment(&svc, &backend).encode_to_vec();
                let got = eds::load_assignment(&svc, &backend, &mut cache);
                prop_assert_eq!(&got.body[..], &expected[..]);
                prop_assert_eq!(got.name, backend.cluster_name());
                // A cache that keeps nothing (one compile) encodes the same.
                let mut one_shot = EndpointCache::one_shot();
                let once = eds::load_assignment(&svc, &backend, &mut one_shot);
                prop_assert_eq!(&once.body[..], &expected[..]);
                prop_assert!(one_shot.is_empty());
            }
        }
    }
}

fn cache_start(cache: &mut EndpointCache) {
    cache.start();
}

#[test]
fn a_large_assignment_matches_prost_and_the_cache_forgets_unused_endpoints() {
    let eps: Vec<Ep> = (0..3000u32)
        .map(|i| {
            (
                i,
                i % 7 == 0,
                8080,
                1 + i % 3,
                1,
                (i % 5) as u8,
                0,
                i % 2 == 0,
            )
        })
        .collect();
    let svc = service(&eps, true);
    let mut cache = EndpointCache::default();
    for backend in backends_of(&svc) {
        let got = eds::load_assignment(&svc, &backend, &mut cache);
        assert_eq!(got.body, load_assignment(&svc, &backend).encode_to_vec());
    }
    assert_eq!(cache.len(), 3000, "one record per distinct endpoint");
    // Far fewer endpoints for a while: the records of the old ones go.
    let small = service(&eps[..10], true);
    for _ in 0..2 {
        cache_start(&mut cache);
        eds::load_assignment(&small, &backends_of(&small)[0], &mut cache);
    }
    cache_start(&mut cache);
    // (The small group itself came whole from the group cache.)
    assert_eq!(cache.len(), 0, "cleared once over twice what was used");
}
