//! Validated domain types: what a rules file means once it has been checked.
//!
//! `rules` turns YAML into these types and rejects anything that would not
//! make sense to Envoy (dangling references, bad weights, duplicate names,
//! invalid regexes). `compile` turns them into Envoy resources. Every
//! collection that reaches output is ordered (`Vec` in file order or
//! `BTreeMap`), so compiling the same `Config` always gives the same bytes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

mod policy;

pub use policy::*;

/// A whole, validated configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// Listeners in file order.
    pub listeners: Vec<Listener>,
}

/// An upstream service: becomes one Envoy cluster, plus one per subset.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    pub endpoints: Vec<Endpoint>,
    /// Named subsets: each selects the endpoints whose labels contain all of
    /// the given key/value pairs.
    pub subsets: BTreeMap<String, BTreeMap<String, String>>,
    /// Health checking, outlier detection, circuit breakers, balancing
    /// options, protocol and TLS (see [`ServicePolicy`]).
    pub policy: ServicePolicy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
    Maglev,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight (1..=128 in Envoy's terms; default 1).
    pub weight: u32,
    pub health: Health,
    /// Where the endpoint runs; endpoints are grouped by locality in EDS.
    pub locality: Option<Locality>,
    /// Failover tier: 0 is used first, 1 when 0 is unhealthy, and so on.
    pub priority: u32,
}

/// Endpoint health as Envoy's EDS knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Health not known to the source; Envoy's active checks decide.
    Unknown,
    #[default]
    Healthy,
    Degraded,
    Unhealthy,
    /// Taking no new requests; in-flight ones finish.
    Draining,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Listener {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    /// Node groups that receive this listener; `None` means every group.
    pub groups: Option<Vec<String>>,
    pub virtual_hosts: Vec<VirtualHost>,
    pub access_log: AccessLog,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    /// Ordered: Envoy takes the first route that matches.
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: RouteAction,
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    /// Hashing, mirroring, faults, header edits, rewrites, CORS.
    pub policy: RoutePolicy,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// RE2 syntax; checked with the `regex` crate at load time.
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeaderMatch {
    pub name: String,
    pub value: ValueMatch,
    pub invert: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryMatch {
    pub name: String,
    pub value: ValueMatch,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
    Present,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAction {
    /// All traffic to one backend.
    Backend(Backend),
    /// Weighted split; weights are percentages that sum to 100.
    Split(Vec<WeightedBackend>),
    /// Envoy answers with a redirect; no upstream is involved.
    Redirect(Redirect),
    /// Envoy answers with a fixed response; no upstream is involved.
    DirectResponse(DirectResponse),
}

/// A service, optionally narrowed to one of its subsets.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Backend {
    pub service: String,
    pub subset: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeightedBackend {
    pub backend: Backend,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Envoy `retry_on` conditions, e.g. `5xx`, `connect-failure`.
    pub on: Vec<String>,
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
}

/// The conditions Envoy's router accepts in `retry_on`.
pub const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
];

impl LbPolicy {
    /// Whether routes to this service may carry hash policies.
    pub fn is_consistent_hash(self) -> bool {
        matches!(self, LbPolicy::RingHash | LbPolicy::Maglev)
    }
}

impl RouteAction {
    /// The backends this action sends traffic to (none for redirects and
    /// direct responses).
    pub fn backends(&self) -> Vec<&Backend> {
        match self {
            RouteAction::Backend(b) => vec![b],
            RouteAction::Split(split) => split.iter().map(|wb| &wb.backend).collect(),
            RouteAction::Redirect(_) | RouteAction::DirectResponse(_) => Vec::new(),
        }
    }
}

impl Route {
    /// Every backend this route reaches, the mirror target included.
    pub fn all_backends(&self) -> Vec<&Backend> {
        let mut out = self.action.backends();
        out.extend(self.policy.mirror.iter().map(|m| &m.backend));
        out
    }
}

impl Backend {
    /// The Envoy cluster name for this backend: the service name, or
    /// `service~subset`. `~` cannot appear in service or subset names, so the
    /// mapping is one-to-one.
    pub fn cluster_name(&self) -> String {
        match &self.subset {
            None => self.service.clone(),
            Some(subset) => format!("{}~{}", self.service, subset),
        }
    }
}

impl Service {
    /// The endpoints a subset selects (all of them for `None`).
    pub fn endpoints_for(&self, subset: Option<&str>) -> Vec<&Endpoint> {
        let selector = subset.and_then(|s| self.subsets.get(s));
        self.endpoints
            .iter()
            .filter(|ep| match selector {
                None => true,
                Some(sel) => sel.iter().all(|(k, v)| ep.labels.get(k) == Some(v)),
            })
            .collect()
    }
}

impl Listener {
    pub fn serves_group(&self, group: &str) -> bool {
        match &self.groups {
            None => true,
            Some(groups) => groups.iter().any(|g| g == group),
        }
    }
}
