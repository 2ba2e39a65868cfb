//! One answer of Consul's `/v1/health/service/<name>` → endpoints by id.
//!
//! Sans-io and synchronous: the source hands the body here and gives the
//! result to the index. The mapping (documented in `docs/discovery.md`):
//!
//! - id: `<Node.Node>/<Service.ID>` (unique in a datacenter);
//! - address: `Service.Address`, else `Node.Address`; it must be an IP
//!   literal (Envoy's EDS takes no host names);
//! - labels: `Service.Meta` verbatim; then each `key=value` tag, then each
//!   plain tag as `tag: "true"` (an earlier source wins a key); then
//!   `Node.Meta` under `node.<key>`;
//! - health: a critical `_node_maintenance` / `_service_maintenance:*` check
//!   → draining; else any critical → unhealthy; any warning → degraded;
//!   else healthy;
//! - weight: `Service.Weights.Passing` (`Warning` when degraded), clamped to
//!   1..=128 (EDS weights must be positive);
//! - locality: `Node.Meta` `region` (else `Node.Datacenter`), `zone`,
//!   `sub_zone`.
//!
//! A body that is not a JSON array is an error for the whole answer (the
//! feed fails, endpoints kept). An element that cannot be understood is
//! rejected alone; its id, when it can be read, keeps its old endpoint.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use sluice_core::model::{Endpoint, Health, Locality};

/// The understood entries and one message per rejected element; `keep`
/// holds the ids of rejected elements whose id could still be read.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub endpoints: BTreeMap<String, Endpoint>,
    pub rejected: Vec<String>,
    pub keep: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EntriesError {
    #[error("consul answer is not a JSON array of service entries")]
    Body(#[source] serde_json::Error),
}

/// Why one element was rejected (its message goes to `Parsed::rejected`).
#[derive(Debug, thiserror::Error)]
enum EntryError {
    /// Not a service entry (a missing or mistyped field).
    #[error(transparent)]
    Malformed(#[from] serde_json::Error),
    #[error("address {0:?} is not an IPv4 or IPv6 literal")]
    Address(String),
    #[error("port {0} out of range 1..=65535")]
    Port(u32),
    #[error("check {check:?}: unknown status {status:?}")]
    Status { check: String, status: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    node: Node,
    service: Service,
    #[serde(default)]
    checks: Option<Vec<Check>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    node: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Service {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    address: String,
    port: u32,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    weights: Option<Weights>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Weights {
    #[serde(default)]
    passing: i64,
    #[serde(default)]
    warning: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Check {
    #[serde(rename = "CheckID", default)]
    check_id: String,
    status: String,
}

/// Parses a whole answer.
pub fn parse(body: &[u8]) -> Result<Parsed, EntriesError> {
    let items: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(EntriesError::Body)?;
    let mut out = Parsed::default();
    for (i, item) in items.into_iter().enumerate() {
        let id = raw_id(&item);
        let checked = serde_json::from_value::<Entry>(item)
            .map_err(EntryError::from)
            .and_then(endpoint);
        match checked {
            Ok((id, ep)) => {
                out.endpoints.insert(id, ep);
            }
            Err(e) => {
                let name = id.clone().unwrap_or_else(|| format!("entry [{i}]"));
                out.rejected.push(format!("{name}: {e}"));
                out.keep.extend(id);
            }
        }
    }
    Ok(out)
}

/// The id of an element that may not deserialize as a whole.
fn raw_id(item: &serde_json::Value) -> Option<String> {
    let node = item.pointer("/Node/Node")?.as_str()?;
    let service = item.pointer("/Service/ID")?.as_str()?;
    Some(format!("{node}/{service}"))
}

fn endpoint(e: Entry) -> Result<(String, Endpoint), EntryError> {
    let id = format!("{}/{}", e.node.node, e.service.id);
    let addr_text = if e.service.address.is_empty() {
        &e.node.address
    } else {
        &e.service.address
    };
    let address: IpAddr = addr_text
        .parse()
        .map_err(|_| EntryError::Address(addr_text.clone()))?;
    let port = u16::try_from(e.service.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(EntryError::Port(e.service.port))?;
    let health = health(e.checks.as_deref().unwrap_or_default())?;
    let weights = e.service.weights.as_ref();
    let raw_weight = match (health, weights) {
        (_, None) => 1,
        (Health::Degraded, Some(w)) => w.warning,
        (_, Some(w)) => w.passing,
    };
    let node_meta = e.node.meta.unwrap_or_default();
    let mut labels = e.service.meta.unwrap_or_default();
    let tags = e.service.tags.unwrap_or_default();
    for tag in &tags {
        if let Some((k, v)) = tag.split_once('=') {
            labels.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    for tag in tags.iter().filter(|t| !t.contains('=')) {
        labels.entry(tag.clone()).or_insert_with(|| "true".into());
    }
    let meta = |k: &str| node_meta.get(k).cloned().unwrap_or_default();
    let region = node_meta
        .get("region")
        .cloned()
        .unwrap_or_else(|| e.node.datacenter.clone());
    let locality = Locality {
        region,
        zone: meta("zone"),
        sub_zone: meta("sub_zone"),
    };
    for (k, v) in &node_meta {
        labels
            .entry(format!("node.{k}"))
            .or_insert_with(|| v.clone());
    }
    let endpoint = Endpoint {
        address,
        port,
        labels,
        weight: raw_weight.clamp(1, 128) as u32,
        health,
        locality: (locality != Locality::default()).then(|| Box::new(locality)),
        priority: 0,
    };
    Ok((id, endpoint))
}

/// The instance's health from its node's and its own checks.
fn health(checks: &[Check]) -> Result<Health, EntryError> {
    let mut out = Health::Healthy;
    for c in checks {
        let maintenance =
            c.check_id == "_node_maintenance" || c.check_id.starts_with("_service_maintenance:");
        let h = match c.status.as_str() {
            "passing" => Health::Healthy,
            "warning" => Health::Degraded,
            "critical" if maintenance => Health::Draining,
            "critical" => Health::Unhealthy,
            "maintenance" => Health::Draining,
            other => {
                return Err(EntryError::Status {
                    check: c.check_id.clone(),
                    status: other.to_string(),
                })
            }
        };
        out = worse(out, h);
    }
    Ok(out)
}

/// Draining (an operator's decision) outranks unhealthy, which outranks
/// degraded.
fn worse(a: Health, b: Health) -> Health {
    let rank = |h: Health| match h {
        Health::Draining => 4,
        Health::Unhealthy => 3,
        Health::Degraded => 2,
        Health::Unknown => 1,
        Health::Healthy => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests;
