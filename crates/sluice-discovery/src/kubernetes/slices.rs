//! A Service's EndpointSlices → endpoints by `address:port`, with no I/O.
//!
//! The mapping (documented in `docs/discovery.md`):
//!
//! - port: the slice port whose `name` is the configured port; a
//!   configured port that is a number also matches an unnamed-or-other
//!   port with that number;
//! - address: the endpoint's first address (Kubernetes: the addresses are
//!   fungible); `FQDN` slices are refused (EDS takes IP literals);
//! - conditions: `ready` → HEALTHY; `serving` but not ready (terminating,
//!   or failing readiness while serving) → DRAINING; not serving → left
//!   out. Unset `ready`/`serving` count as true, as the API says;
//! - locality: `zone` (no region: slices do not carry it);
//! - labels: the slice's labels minus Kubernetes' own (`kubernetes.io/*`,
//!   `endpointslice.kubernetes.io/*`, `service.kubernetes.io/*`). Slices
//!   made by the EndpointSlice controller carry the Service's labels, so
//!   subsets work per Service (see docs);
//! - an address in two slices (a pod moving between slices) keeps its
//!   better health.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use sluice_core::model::{Endpoint, Health, Locality};

/// Endpoints by `address:port`, and one message per refused slice or
/// endpoint.
#[derive(Debug, Default, PartialEq)]
pub struct Joined {
    pub endpoints: BTreeMap<String, Endpoint>,
    pub rejected: Vec<String>,
}

/// Label prefixes owned by Kubernetes, not useful as subset labels.
const SYSTEM_PREFIXES: [&str; 3] = [
    "kubernetes.io/",
    "endpointslice.kubernetes.io/",
    "service.kubernetes.io/",
];

pub fn join<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>, port: &str) -> Joined {
    let mut out = Joined::default();
    for slice in slices {
        let name = slice.metadata.name.as_deref().unwrap_or("?");
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            let t = &slice.address_type;
            out.rejected
                .push(format!("slice {name}: address type {t} not supported"));
            continue;
        }
        let Some(port_number) = find_port(slice, port) else {
            // A slice with no ports yet (pods not ready to name them) is
            // normal; one that lacks this port is a misconfiguration.
            if slice.ports.as_ref().is_some_and(|p| !p.is_empty()) {
                out.rejected
                    .push(format!("slice {name}: no port named {port:?}"));
            }
            continue;
        };
        let labels: BTreeMap<String, String> = slice
            .metadata
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| !SYSTEM_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ep in &slice.endpoints {
            let c = ep.conditions.clone().unwrap_or_default();
            let ready = c.ready.unwrap_or(true);
            let serving = c.serving.unwrap_or(ready);
            let health = match (ready, serving) {
                (true, _) => Health::Healthy,
                (false, true) => Health::Draining,
                (false, false) => continue,
            };
            let Some(first) = ep.addresses.first() else {
                continue;
            };
            let Ok(address) = first.parse::<IpAddr>() else {
                out.rejected.push(format!(
                    "slice {name}: address {first:?} is not an IP literal"
                ));
                continue;
            };
            let endpoint = Endpoint {
                address,
                port: port_number,
                labels: labels.clone(),
                weight: 1,
                health,
                locality: ep.zone.as_ref().map(|z| {
                    Box::new(Locality {
                        zone: z.clone(),
                        ..Default::default()
                    })
                }),
                priority: 0,
            };
            let id = SocketAddr::new(address, port_number).to_string();
            match out.endpoints.get(&id) {
                Some(old) if old.health == Health::Healthy => {}
                _ => {
                    out.endpoints.insert(id, endpoint);
                }
            }
        }
    }
    out
}

fn find_port(slice: &EndpointSlice, port: &str) -> Option<u16> {
    let ports = slice.ports.as_ref()?;
    let by_name = ports.iter().find(|p| p.name.as_deref() == Some(port));
    let by_number = || {
        let n: i32 = port.parse().ok()?;
        ports.iter().find(|p| p.port == Some(n))
    };
    let p = by_name.or_else(by_number)?;
    p.port
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n != 0)
}

#[cfg(test)]
mod tests;
