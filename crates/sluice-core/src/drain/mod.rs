//! Drains: endpoints or localities taken out of service for planned
//! maintenance (or a provider outage) without touching the rules or the
//! registries.
//!
//! A [`Drain`] names a service and either one endpoint (`ADDR:PORT`) or a
//! locality (`REGION` or `REGION/ZONE`). [`Drains::apply`] is an overlay
//! between endpoint resolution and compile: every endpoint a drain matches
//! becomes [`Health::Draining`], which Envoy's EDS reads as "no new
//! requests; let in-flight ones finish". Nothing else changes, so undoing a
//! drain gives back byte-identical resources.
//!
//! The set is small, ordered (`BTreeSet`) and persisted by the `sluice`
//! crate's `drain::store` in a state file, so a drain survives restarts of
//! sluice. This module is pure: no I/O.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{Config, Endpoint, Health};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DrainError {
    #[error("locality must be REGION or REGION/ZONE, got {0:?}")]
    BadLocality(String),
    #[error("unknown service {service:?}; services: {known}")]
    UnknownService { service: String, known: String },
    #[error("drain state file {path}: {reason}")]
    State { path: String, reason: String },
    /// The shared state store (several replicas) could not be written.
    #[error("drain state in {store}: {reason}")]
    Shared { store: String, reason: String },
}

/// One drain: a service and what of it to drain. In JSON (the admin API
/// and the state file) it is flat: `{"service": "web", "endpoint":
/// "10.0.0.1:8080"}` or `{"service": "web", "locality": "eu/eu-1a"}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Drain {
    pub service: String,
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// One endpoint, by address and port.
    Endpoint(SocketAddr),
    /// Every endpoint in a region, or in one zone of it.
    Locality(LocalityRef),
}

/// `REGION` or `REGION/ZONE`; sub-zones are not distinguished, because a
/// maintenance window or an outage is planned per zone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LocalityRef {
    pub region: String,
    pub zone: Option<String>,
}

/// A set of drains, ordered so that listing and persisting are
/// deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drains {
    drains: BTreeSet<Drain>,
}

impl Drain {
    /// Whether `e`, an endpoint of this drain's service, is drained.
    pub fn matches(&self, e: &Endpoint) -> bool {
        match &self.target {
            Target::Endpoint(addr) => SocketAddr::new(e.address, e.port) == *addr,
            Target::Locality(l) => e.locality.as_ref().is_some_and(|el| {
                el.region == l.region && l.zone.as_ref().is_none_or(|z| *z == el.zone)
            }),
        }
    }

    /// Refuses a drain of a service the rules do not define: a typo would
    /// otherwise leave the intended hosts in service.
    pub fn check(&self, config: &Config) -> Result<(), DrainError> {
        if config.services.contains_key(&self.service) {
            return Ok(());
        }
        let known: Vec<&str> = config.services.keys().map(String::as_str).collect();
        Err(DrainError::UnknownService {
            service: self.service.clone(),
            known: known.join(", "),
        })
    }
}

impl Drains {
    pub fn iter(&self) -> impl Iterator<Item = &Drain> {
        self.drains.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.drains.is_empty()
    }

    /// Adds `d`; false when it was already there.
    pub fn add(&mut self, d: Drain) -> bool {
        self.drains.insert(d)
    }

    /// Removes `d`; false when it was not there.
    pub fn remove(&mut self, d: &Drain) -> bool {
        self.drains.remove(d)
    }

    /// Marks every endpoint a drain matches [`Health::Draining`]. An
    /// endpoint already `Unhealthy` stays so: it takes no traffic either
    /// way, and its registry's verdict is the more useful thing to show.
    pub fn apply(&self, config: &mut Config) {
        if self.drains.is_empty() {
            return;
        }
        for service in config.services.values_mut() {
            let drains: Vec<&Drain> = self
                .drains
                .iter()
                .filter(|d| d.service == service.name)
                .collect();
            // Endpoints are shared with the undrained config: copy only
            // those of a service that has drains.
            if drains.is_empty() {
                continue;
            }
            for e in Arc::make_mut(&mut Arc::make_mut(service).endpoints) {
                if e.health != Health::Unhealthy && drains.iter().any(|d| d.matches(e)) {
                    e.health = Health::Draining;
                }
            }
        }
    }

    /// How many endpoints of `config` each drain matches, in order: a drain
    /// matching nothing (a typo in an address, an endpoint since removed)
    /// shows as 0 in `sluice drain list`.
    pub fn matches(&self, config: &Config) -> Vec<(Drain, usize)> {
        self.drains
            .iter()
            .map(|d| {
                let n = config
                    .services
                    .get(&d.service)
                    .map_or(0, |s| s.endpoints.iter().filter(|e| d.matches(e)).count());
                (d.clone(), n)
            })
            .collect()
    }
}

impl FromStr for LocalityRef {
    type Err = DrainError;

    fn from_str(s: &str) -> Result<LocalityRef, DrainError> {
        let bad = || DrainError::BadLocality(s.to_string());
        let (region, zone) = match s.split_once('/') {
            Some((r, z)) => (r, Some(z)),
            None => (s, None),
        };
        let valid = |part: &str| !part.is_empty() && !part.contains('/') && part.trim() == part;
        if !valid(region) || zone.is_some_and(|z| !valid(z)) {
            return Err(bad());
        }
        Ok(LocalityRef {
            region: region.to_string(),
            zone: zone.map(str::to_string),
        })
    }
}

impl TryFrom<String> for LocalityRef {
    type Error = DrainError;

    fn try_from(s: String) -> Result<LocalityRef, DrainError> {
        s.parse()
    }
}

impl From<LocalityRef> for String {
    fn from(l: LocalityRef) -> String {
        l.to_string()
    }
}

impl fmt::Display for LocalityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.zone {
            Some(z) => write!(f, "{}/{z}", self.region),
            None => f.write_str(&self.region),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Endpoint(a) => write!(f, "endpoint {a}"),
            Target::Locality(l) => write!(f, "locality {l}"),
        }
    }
}
