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

/// A whole, validated configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// Listeners in file order.
    pub listeners: Vec<Listener>,
    /// Connection settings of the registries that services discover from.
    pub sources: Sources,
}

/// An upstream service: becomes one Envoy cluster, plus one per subset.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    /// Static endpoints from the rules file. When `discovery` is not empty,
    /// `discovery::View::resolve` merges the discovered endpoints in here
    /// before compiling.
    pub endpoints: Vec<Endpoint>,
    /// Registries this service's endpoints come from, in a fixed order
    /// (consul, etcd, kubernetes, file); empty for a static service.
    pub discovery: Vec<Discovery>,
    /// Named subsets: each selects the endpoints whose labels contain all of
    /// the given key/value pairs.
    pub subsets: BTreeMap<String, BTreeMap<String, String>>,
}

/// One registry a service's endpoints come from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Discovery {
    /// Consul's health API for this service name.
    Consul { service: String },
    /// One etcd key per endpoint under this prefix (ends with `/`).
    Etcd { prefix: String },
    /// A Kubernetes Service's EndpointSlices, this named port.
    Kubernetes {
        namespace: String,
        service: String,
        port: String,
    },
    /// A YAML endpoints file, polled; relative paths are taken from the
    /// rules file's directory.
    File { path: String },
}

/// Connection settings per registry kind; `None` when not configured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sources {
    pub consul: Option<ConsulSource>,
    pub etcd: Option<EtcdSource>,
    pub kubernetes: Option<KubernetesSource>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsulSource {
    /// Base URL, e.g. `http://127.0.0.1:8500`.
    pub address: String,
    pub datacenter: Option<String>,
    /// Name of the environment variable holding the ACL token (the token
    /// itself never appears in the rules file or in `/debug/config`).
    pub token_env: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdSource {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubernetesSource {
    /// A kubeconfig path; `None` means in-cluster config, else the default
    /// kubeconfig lookup.
    pub kubeconfig: Option<String>,
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

impl Health {
    /// Names as in the rules file and in registry records (Envoy's
    /// `HealthStatus`, lowercase).
    pub const NAMES: [(&'static str, Health); 5] = [
        ("unknown", Health::Unknown),
        ("healthy", Health::Healthy),
        ("degraded", Health::Degraded),
        ("unhealthy", Health::Unhealthy),
        ("draining", Health::Draining),
    ];

    pub fn from_name(name: &str) -> Option<Health> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| *h)
    }
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
