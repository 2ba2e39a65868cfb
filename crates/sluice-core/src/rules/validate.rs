//! Raw structs → validated [`model::Config`]: the semantic checks.
//!
//! This file owns the config and service level; `listener` and `route` own
//! the rest, and `check` the small checkers every level shares. The
//! `Config` built while a file has errors holds placeholders and is thrown
//! away.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::rules::yaml::Spanned;

use super::check::{
    check_name, duration, int, ip, line_of, name_is_valid, port, repeats, socket_quietly, Catalog,
};
use super::chunked::Chunked;
use super::discovery::{discovery, sources};
use super::error::{shown, Diags};
use super::grpc::grpc;
use super::listener::listeners;
use super::raw::{Item, RawConfig, RawEndpoint, RawService};
use super::service_policy::service_policy;
use super::xds_access::xds_access;
use crate::model::{Config, Endpoint, Health, LbPolicy, Locality, Service, Sources};

const LB_POLICIES: &[(&str, LbPolicy)] = &[
    ("round_robin", LbPolicy::RoundRobin),
    ("least_request", LbPolicy::LeastRequest),
    ("random", LbPolicy::Random),
    ("ring_hash", LbPolicy::RingHash),
    ("maglev", LbPolicy::Maglev),
];

pub fn validate(raw: RawConfig, opts: &super::Options<'_>, d: &mut Diags) -> Config {
    let RawConfig {
        services: raw_services,
        listeners: raw_listeners,
        sources: raw_sources,
        broken_services,
        xds_access: raw_access,
        grpc: raw_grpc,
    } = raw;
    let sources = sources(raw_sources.as_ref(), d);
    let mut services = BTreeMap::new();
    // Duplicate names are found first, by sorting (`repeats`): a table of
    // every name would be held beside the model at its peak (a file may
    // hold 100,000s of services).
    let names = raw_services.iter().map(|item| {
        let name = &item.raw.name;
        (name.as_str(), line_of(d.loc(name.span())))
    });
    let mut repeats = repeats(names).into_iter().peekable();
    // The raw services are consumed: each chunk of them is freed once its
    // services are built, so raw and model services are never all held
    // at once.
    for (i, item) in raw_services.into_iter().enumerate() {
        // Written before the service is built (which takes the raw entry)
        // and reported after its own diagnostics, as before.
        let duplicate = repeats
            .next_if(|&(index, _)| index as usize == i)
            .map(|(_, first)| {
                let name = &item.raw.name;
                let msg = format!(
                    "duplicate service name `{}` (first defined at line {first})",
                    shown(name)
                );
                (*name.span(), format!("services[{}].name", item.index), msg)
            });
        let service = service(item, &sources, d);
        match duplicate {
            Some((span, path, msg)) => d.error(&span, path, msg),
            None => {
                services.insert(service.name.clone(), Arc::new(service));
            }
        }
    }
    let catalog = Catalog {
        services: &services,
        broken: &broken_services,
        lua: opts.lua,
    };
    let listeners = listeners(&raw_listeners, &catalog, d);
    let grpc = grpc(
        raw_grpc.iter().map(|item| (item.index, &item.raw)),
        &catalog,
        d,
    );
    Config {
        services,
        listeners: Arc::new(listeners),
        sources,
        runtime: Arc::default(),
        xds_access: Arc::new(xds_access(
            raw_access.iter().map(|item| (item.index, &item.raw)),
            d,
        )),
        grpc: Arc::new(grpc),
    }
}

fn service(item: Item<RawService>, sources: &Sources, d: &mut Diags) -> Service {
    let Item { index, mut raw } = item;
    let path = format!("services[{index}]");
    let name_ok = name_is_valid(d, &raw.name, &format!("{path}.name"));
    let connect_timeout = match &raw.more().connect_timeout {
        None => Duration::from_secs(1),
        Some(raw_t) => {
            let p = format!("{path}.connect_timeout");
            match duration(d, raw_t, &p) {
                Some(t) if t.is_zero() => {
                    d.error(raw_t.span(), &p, "connect_timeout must be greater than 0");
                    Duration::from_secs(1)
                }
                Some(t) => t,
                None => Duration::from_secs(1),
            }
        }
    };
    let lb_policy = match &raw.more().lb_policy {
        None => LbPolicy::RoundRobin,
        Some(p) => match LB_POLICIES.iter().find(|(n, _)| *n == p.as_str()) {
            Some((_, policy)) => *policy,
            None => {
                let valid: Vec<&str> = LB_POLICIES.iter().map(|(n, _)| *n).collect();
                let msg = format!(
                    "unknown lb_policy `{}`; valid values are {}",
                    p.as_str(),
                    valid.join(", ")
                );
                d.error(p.span(), format!("{path}.lb_policy"), msg);
                LbPolicy::RoundRobin
            }
        },
    };
    let endpoints = endpoints(std::mem::take(&mut raw.endpoints), &path, d);
    let mut subsets = BTreeMap::new();
    for (subset, selector) in &raw.subsets.0 {
        let p = format!("{path}.subsets.{}", subset.as_str());
        check_name(d, subset, &p);
        if selector.is_empty() {
            let msg = format!(
                "subset `{}` needs a non-empty label selector, e.g. {{version: v2}}",
                subset.as_str()
            );
            d.error(subset.span(), &p, msg);
        }
        subsets.insert(subset.to_string(), selector.clone());
    }
    let discovery = match &raw.more().discovery {
        None => Vec::new(),
        Some(raw_d) => discovery(raw_d, sources, &path, d),
    };
    let policy = service_policy(&raw, lb_policy, &path, d);
    Service {
        // The raw name itself, not a copy.
        name: if name_ok {
            raw.name.into_inner()
        } else {
            shown(&raw.name).into_owned()
        },
        connect_timeout,
        lb_policy,
        endpoints: Arc::new(endpoints),
        discovery,
        subsets,
        policy: policy.into(),
    }
}

/// The model of a service's endpoints. The raw list is consumed: each
/// chunk is freed once read, as the model list (allocated once, at its
/// final size) fills. Duplicates (same address and port) are found
/// first, by sorting ([`repeats`]), and reported in list order.
fn endpoints(raw: Chunked<Spanned<RawEndpoint>>, path: &str, d: &mut Diags) -> Vec<Endpoint> {
    let keys = raw.iter().map(|ep| {
        let key = socket_quietly(&ep.address, &ep.port);
        (key, line_of(d.loc(ep.span())))
    });
    let mut repeats = repeats(keys).into_iter().peekable();
    let mut endpoints = Vec::with_capacity(raw.len());
    for (i, ep) in raw.into_iter().enumerate() {
        let p = format!("{path}.endpoints[{i}]");
        let address = ip(d, &ep.address, &format!("{p}.address"));
        let port = port(d, &ep.port, &format!("{p}.port"));
        let more = ep.more.as_deref();
        let weight = match more.and_then(|m| m.weight.as_ref()) {
            None => 1,
            Some(w) => int(d, w, &format!("{p}.weight"), 1..=128).unwrap_or(1),
        };
        if let Some((_, first)) = repeats.next_if(|&(index, _)| index as usize == i) {
            let socket = std::net::SocketAddr::new(address, port);
            let msg = format!("duplicate endpoint `{socket}` (first defined at line {first})");
            d.error(ep.span(), &p, msg);
        }
        let health = match more.and_then(|m| m.health.as_ref()) {
            None => Health::Healthy,
            Some(h) => health(d, h, &format!("{p}.health")),
        };
        let priority = match more.and_then(|m| m.priority.as_ref()) {
            None => 0,
            Some(v) => int(d, v, &format!("{p}.priority"), 0..=10).unwrap_or(0),
        };
        let (labels, locality) = match ep.into_inner().more {
            None => (BTreeMap::new(), None),
            Some(more) => {
                let locality = more.locality.map(|l| {
                    let l = l.into_inner();
                    Box::new(Locality {
                        region: l.region,
                        zone: l.zone,
                        sub_zone: l.sub_zone,
                    })
                });
                (more.labels, locality)
            }
        };
        endpoints.push(Endpoint {
            address,
            port,
            labels,
            weight,
            health,
            locality,
            priority,
        });
    }
    endpoints
}

fn health(d: &mut Diags, raw: &Spanned<String>, path: &str) -> Health {
    if let Some(h) = Health::from_name(raw.as_str()) {
        return h;
    }
    let valid: Vec<&str> = Health::NAMES.iter().map(|(n, _)| *n).collect();
    let msg = format!(
        "unknown health `{}`; valid values are {}",
        raw.as_str(),
        valid.join(", ")
    );
    d.error(raw.span(), path, msg);
    Health::Healthy
}
