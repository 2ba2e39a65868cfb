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

use super::check::{check_name, duration, int, ip, port, socket_key, Catalog, Seen};
use super::discovery::{discovery, sources};
use super::error::Diags;
use super::listener::listeners;
use super::raw::{Item, RawConfig, RawService};
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

pub fn validate(raw: &RawConfig, opts: &super::Options<'_>, d: &mut Diags) -> Config {
    let sources = sources(raw.sources.as_ref(), d);
    let mut services = BTreeMap::new();
    let mut seen = Seen::default();
    for item in &raw.services {
        let service = service(item, &sources, d);
        let path = format!("services[{}].name", item.index);
        if seen.first(d, &item.raw.name, &path, "service name") {
            services.insert(service.name.clone(), Arc::new(service));
        }
    }
    let catalog = Catalog {
        services: &services,
        broken: &raw.broken_services,
        lua: opts.lua,
    };
    let listeners = listeners(&raw.listeners, &catalog, d);
    Config {
        services,
        listeners: Arc::new(listeners),
        sources,
        runtime: Arc::default(),
        xds_access: Arc::new(xds_access(
            raw.xds_access.iter().map(|item| (item.index, &item.raw)),
            d,
        )),
    }
}

fn service(item: &Item<RawService>, sources: &Sources, d: &mut Diags) -> Service {
    let raw = &item.raw;
    let path = format!("services[{}]", item.index);
    let name = check_name(d, &raw.name, &format!("{path}.name"));
    let connect_timeout = match &raw.connect_timeout {
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
    let lb_policy = match &raw.lb_policy {
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
    let mut endpoints = Vec::new();
    let mut seen = Seen::default();
    for (i, ep) in raw.endpoints.iter().enumerate() {
        let p = format!("{path}.endpoints[{i}]");
        let address = ip(d, &ep.address, &format!("{p}.address"));
        let port = port(d, &ep.port, &format!("{p}.port"));
        let weight = match &ep.weight {
            None => 1,
            Some(w) => int(d, w, &format!("{p}.weight"), 1..=128).unwrap_or(1),
        };
        let key = socket_key(address, port);
        let loc = d.loc(ep.span());
        seen.first_at(d, key, loc, &p, "endpoint");
        let health = match &ep.health {
            None => Health::Healthy,
            Some(h) => health(d, h, &format!("{p}.health")),
        };
        let priority = match &ep.priority {
            None => 0,
            Some(v) => int(d, v, &format!("{p}.priority"), 0..=10).unwrap_or(0),
        };
        let locality = ep.locality.as_ref().map(|l| Locality {
            region: l.region.clone(),
            zone: l.zone.clone(),
            sub_zone: l.sub_zone.clone(),
        });
        endpoints.push(Endpoint {
            address,
            port,
            labels: ep.labels.clone(),
            weight,
            health,
            locality,
            priority,
        });
    }
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
    let discovery = match &raw.discovery {
        None => Vec::new(),
        Some(raw_d) => discovery(raw_d, sources, &path, d),
    };
    let policy = service_policy(raw, lb_policy, &path, d);
    Service {
        name,
        connect_timeout,
        lb_policy,
        endpoints: Arc::new(endpoints),
        discovery,
        subsets,
        policy,
    }
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
