//! Raw structs → validated [`model::Config`]: the semantic checks.
//!
//! This file owns the config and service level plus the small checkers every
//! level shares (names, integers, addresses, durations, duplicates);
//! `listener` and `route` own the rest. Each checker reports to [`Diags`] and
//! returns a placeholder on error so that checking goes on and one run finds
//! every problem; the `Config` built from placeholders is thrown away.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use marked_yaml::{Span, Spanned};

use super::discovery::{discovery, sources};
use super::duration::parse_duration;
use super::error::{shown, Diags, Loc};
use super::listener::listeners;
use super::raw::{Item, RawConfig, RawService};
use super::service_policy::service_policy;
use crate::model::{Backend, Config, Endpoint, Health, LbPolicy, Locality, Service, Sources};

/// Longest name accepted for services, subsets, listeners, hosts, routes.
pub(crate) const MAX_NAME_LEN: usize = 60;

/// The services a route may point at.
pub(crate) struct Catalog<'a> {
    pub services: &'a BTreeMap<String, Arc<Service>>,
    /// Services whose entry was malformed: already reported, so references
    /// to them are not reported again.
    pub broken: &'a BTreeSet<String>,
}

/// First occurrence of each key, to report duplicates against. Names are
/// borrowed from the raw file, not copied (a name can be megabytes long).
#[derive(Default)]
pub(crate) struct Seen<'a>(HashMap<Cow<'a, str>, Loc>);

const LB_POLICIES: &[(&str, LbPolicy)] = &[
    ("round_robin", LbPolicy::RoundRobin),
    ("least_request", LbPolicy::LeastRequest),
    ("random", LbPolicy::Random),
    ("ring_hash", LbPolicy::RingHash),
    ("maglev", LbPolicy::Maglev),
];

pub(crate) fn validate(raw: &RawConfig, d: &mut Diags) -> Config {
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
    };
    let listeners = listeners(&raw.listeners, &catalog, d);
    Config {
        services,
        listeners: Arc::new(listeners),
        sources,
        runtime: Arc::default(),
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

impl<'a> Seen<'a> {
    /// Records `name`; reports it (and returns false) if it was seen before.
    pub fn first(
        &mut self,
        d: &mut Diags,
        name: &'a Spanned<String>,
        path: &str,
        what: &str,
    ) -> bool {
        let loc = d.loc(name.span());
        self.first_at(d, name.as_str(), loc, path, what)
    }

    pub fn first_at(
        &mut self,
        d: &mut Diags,
        key: impl Into<Cow<'a, str>>,
        loc: Loc,
        path: &str,
        what: &str,
    ) -> bool {
        let key = key.into();
        match self.0.get(&key) {
            Some(first) => {
                let msg = format!(
                    "duplicate {what} `{}` (first defined at line {})",
                    shown(&key),
                    first.line
                );
                d.error_at(loc, path, msg);
                false
            }
            None => {
                self.0.insert(key, loc);
                true
            }
        }
    }
}

impl Catalog<'_> {
    /// Resolves a `service` / `subset` reference, reporting dangling ones.
    pub fn backend(
        &self,
        d: &mut Diags,
        service: &Spanned<String>,
        subset: Option<&Spanned<String>>,
        path: &str,
    ) -> Backend {
        let backend = Backend {
            service: service.to_string(),
            subset: subset.map(|s| s.to_string()),
        };
        if self.broken.contains(service.as_str()) {
            return backend;
        }
        let Some(found) = self.services.get(service.as_str()) else {
            let known: Vec<&str> = self.services.keys().map(String::as_str).collect();
            let msg = format!(
                "unknown service `{}`; defined services: {}",
                shown(service),
                list_or_none(&known)
            );
            d.error(service.span(), format!("{path}.service"), msg);
            return backend;
        };
        if let Some(subset) = subset {
            if !found.subsets.contains_key(subset.as_str()) {
                let known: Vec<&str> = found.subsets.keys().map(String::as_str).collect();
                let msg = format!(
                    "service `{}` has no subset `{}`; its subsets: {}",
                    found.name,
                    subset.as_str(),
                    list_or_none(&known)
                );
                d.error(subset.span(), format!("{path}.subset"), msg);
            }
        }
        backend
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

/// Checks the shared name rule: `[a-z0-9][a-z0-9_-]*`, at most 60 chars.
/// `~` and `.` are excluded because cluster names are `service~subset`.
/// An invalid name comes back cut as diagnostics show it.
pub(crate) fn check_name(d: &mut Diags, name: &Spanned<String>, path: &str) -> String {
    let s = name.as_str();
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    let first_ok = s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_ok || !s.chars().all(valid_char) || s.len() > MAX_NAME_LEN {
        let msg = format!(
            "invalid name `{}`: use lowercase letters, digits, `-` and `_`, starting with a letter or digit, at most {MAX_NAME_LEN} characters",
            shown(s)
        );
        d.error(name.span(), path, msg);
        // The file is refused: keep no copy of a name that may be megabytes.
        return shown(s).into_owned();
    }
    s.to_string()
}

/// An integer within `range`.
pub(crate) fn int(
    d: &mut Diags,
    value: &Spanned<String>,
    path: &str,
    range: RangeInclusive<u32>,
) -> Option<u32> {
    let parsed = value
        .as_str()
        .parse::<u32>()
        .ok()
        .filter(|n| range.contains(n));
    if parsed.is_none() {
        let msg = format!(
            "expected an integer from {} to {}, found `{}`",
            range.start(),
            range.end(),
            value.as_str()
        );
        d.error(value.span(), path, msg);
    }
    parsed
}

pub(crate) fn port(d: &mut Diags, value: &Spanned<String>, path: &str) -> u16 {
    int(d, value, path, 1..=65535)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0)
}

pub(crate) fn ip(d: &mut Diags, value: &Spanned<String>, path: &str) -> IpAddr {
    match value.as_str().parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => {
            let msg = format!("invalid IP address `{}`: expected an IPv4 or IPv6 literal such as 127.0.0.1 or ::1 (host names are not resolved)", value.as_str());
            d.error(value.span(), path, msg);
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    }
}

pub(crate) fn duration(d: &mut Diags, value: &Spanned<String>, path: &str) -> Option<Duration> {
    match parse_duration(value.as_str()) {
        Ok(t) => Some(t),
        Err(msg) => {
            d.error(value.span(), path, msg);
            None
        }
    }
}

/// A duplicate-detection key for an address and port.
pub(crate) fn socket_key(address: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(address, port).to_string()
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

/// Checks a value that becomes an HTTP header value (a consumer, a set
/// header, a redirect host, …), reported at `at`. Envoy refuses control
/// characters other than tab in header values: NUL, CR and LF make it NACK
/// a route, the others make it answer each request with 503 `invalid header
/// value`. `${...}` placeholders are filled at request time, not here.
pub(crate) fn header_value(d: &mut Diags, value: &str, at: &Span, path: &str) {
    let Some((i, c)) = value
        .char_indices()
        .find(|(_, c)| c.is_ascii_control() && *c != '\t')
    else {
        return;
    };
    let msg = format!(
        "header value `{}` holds the control character {c:?} at byte {i}; Envoy refuses control characters other than tab in header values",
        value.escape_debug()
    );
    d.error(at, path, msg);
}
