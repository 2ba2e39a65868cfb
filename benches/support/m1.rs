//! Topology M1 of issue 7 as a `model::Config`: N services × M endpoints
//! (two subsets each), one listener with a route per service. Shared by
//! `benches/hot_paths.rs` and `examples/session_memory.rs`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use sluice::model::*;

fn endpoint(i: usize) -> Endpoint {
    Endpoint {
        address: IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)),
        port: 8080,
        labels: BTreeMap::from([("version".to_string(), format!("v{}", i % 2))]),
        weight: 1,
        health: Health::Healthy,
        locality: None,
        priority: 0,
    }
}

fn service(name: &str, endpoints: usize) -> Service {
    Service {
        name: name.to_string(),
        connect_timeout: Duration::from_secs(1),
        lb_policy: LbPolicy::RoundRobin,
        endpoints: std::sync::Arc::new((0..endpoints).map(endpoint).collect()),
        subsets: BTreeMap::from([
            (
                "stable".to_string(),
                BTreeMap::from([("version".to_string(), "v0".to_string())]),
            ),
            (
                "canary".to_string(),
                BTreeMap::from([("version".to_string(), "v1".to_string())]),
            ),
        ]),
        discovery: Vec::new(),
        policy: Default::default(),
    }
}

/// Topology M1: `services` services × `per` endpoints, one listener with a
/// route per service.
pub fn m1(services: usize, per: usize) -> Config {
    let svcs: BTreeMap<String, Arc<Service>> = (0..services)
        .map(|i| {
            let name = format!("svc-{i:04}");
            (name.clone(), Arc::new(service(&name, per)))
        })
        .collect();
    let routes = (0..services)
        .map(|i| Route {
            name: format!("r-{i:04}"),
            matcher: RouteMatch {
                path: PathMatch::Prefix(format!("/svc-{i:04}/")),
                headers: vec![],
                query: vec![],
            },
            action: RouteAction::Backend(Backend {
                service: format!("svc-{i:04}"),
                subset: None,
            }),
            timeout: None,
            retry: None,
            filters: Default::default(),
            policy: Default::default(),
        })
        .collect();
    Config {
        services: svcs,
        listeners: Arc::new(vec![Listener {
            name: "http".into(),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 10000,
            groups: None,
            virtual_hosts: vec![VirtualHost {
                name: "all".into(),
                domains: vec!["*".into()],
                routes,
                filters: Default::default(),
            }],
            access_log: Default::default(),
            tls: None,
        }]),
        sources: Default::default(),
        runtime: Default::default(),
        xds_access: Default::default(),
        grpc: Default::default(),
    }
}
