//! Validated domain types: what a rules file means once it has been checked.
//!
//! `rules` turns YAML into these types and rejects anything that would not
//! make sense to Envoy (dangling references, bad weights, duplicate names,
//! invalid regexes). `compile` turns them into Envoy resources. Every
//! collection that reaches output is ordered (`Vec` in file order or
//! `BTreeMap`), so compiling the same `Config` always gives the same bytes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

mod access;
mod grpc;
mod policy;
mod tls;

pub use access::*;
pub use grpc::*;
pub use policy::*;
pub use tls::*;

/// A whole, validated configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Services by name. Shared (`Arc`), as are the listeners: the
    /// publisher resolves a copy of the whole config on every endpoint
    /// change, and copying 1,000 services and routes (and dropping the
    /// last copy) was most of a publish; now only what changed is copied
    /// (`Config::service_mut`, `Config::listeners_mut`).
    pub services: BTreeMap<String, Arc<Service>>,
    /// Listeners in file order.
    pub listeners: Arc<Vec<Listener>>,
    /// Connection settings of the registries that services discover from.
    pub sources: Sources,
    /// The keys of the runtime layer sluice serves over RTDS
    /// ([`RUNTIME_LAYER`]): the weights of rollouts that move traffic
    /// through the runtime (`canary::overlay`). Empty otherwise; the rules
    /// never set them.
    #[serde(skip_serializing_if = "runtime_is_empty")]
    pub runtime: Arc<BTreeMap<String, u32>>,
    /// Who may fetch configuration over xDS (`xds_access`); empty when
    /// the section is absent. It decides which streams are served, not
    /// what is compiled.
    #[serde(skip_serializing_if = "access_is_empty")]
    pub xds_access: Arc<Vec<AccessEntry>>,
    /// What proxyless gRPC clients are served (`grpc`), in file order;
    /// empty when the section is absent.
    #[serde(skip_serializing_if = "grpc_is_empty")]
    pub grpc: Arc<Vec<GrpcTarget>>,
}

/// The name of the RTDS runtime layer sluice serves, and that
/// `sluice bootstrap` subscribes every Envoy to.
pub const RUNTIME_LAYER: &str = "sluice";

fn runtime_is_empty(runtime: &Arc<BTreeMap<String, u32>>) -> bool {
    runtime.is_empty()
}

fn access_is_empty(access: &Arc<Vec<AccessEntry>>) -> bool {
    access.is_empty()
}

fn grpc_is_empty(grpc: &Arc<Vec<GrpcTarget>>) -> bool {
    grpc.is_empty()
}

impl Config {
    /// The listeners to edit: copied first if another config shares them.
    pub fn listeners_mut(&mut self) -> &mut Vec<Listener> {
        Arc::make_mut(&mut self.listeners)
    }

    /// The service `name` to edit: copied first if another config shares it.
    pub fn service_mut(&mut self, name: &str) -> Option<&mut Service> {
        self.services.get_mut(name).map(Arc::make_mut)
    }
}

/// An upstream service: becomes one Envoy cluster, plus one per subset.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    /// Static endpoints from the rules file. When `discovery` is not empty,
    /// `discovery::View::resolve` merges the discovered endpoints in here
    /// before compiling. Shared (`Arc`): the publisher resolves a copy of
    /// the whole config on every change, and copying each service's
    /// endpoints (and dropping the last copy) was most of that cost with
    /// 1,000 services; an unchanged service's endpoints are now one
    /// reference count, and a changed one compares unequal by pointer
    /// first (`Arc::make_mut` to edit).
    #[serde(serialize_with = "serialize_shared")]
    pub endpoints: Arc<Vec<Endpoint>>,
    /// Registries this service's endpoints come from, in a fixed order
    /// (consul, etcd, kubernetes, file); empty for a static service.
    pub discovery: Vec<Discovery>,
    /// Named subsets: each selects the endpoints whose labels contain all of
    /// the given key/value pairs.
    pub subsets: BTreeMap<String, BTreeMap<String, String>>,
    /// Health checking, outlier detection, circuit breakers, balancing
    /// options, protocol and TLS (see [`ServicePolicy`]); held as nothing
    /// when all are left out ([`BoxedPolicy`]).
    pub policy: BoxedPolicy,
}

fn serialize_shared<S: Serializer>(eps: &Arc<Vec<Endpoint>>, s: S) -> Result<S::Ok, S::Error> {
    eps.as_slice().serialize(s)
}

/// One registry a service's endpoints come from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Discovery {
    /// Consul's health API for this service name, optionally only the
    /// instances carrying `tag`.
    Consul {
        service: String,
        tag: Option<String>,
    },
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
    /// How long one blocking query may be held by Consul (`wait`).
    pub wait: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdSource {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubernetesSource {
    /// A kubeconfig path, relative to the rules file's directory; `None`:
    /// kube's inference (`$KUBECONFIG`, `~/.kube/config`, then in-cluster).
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

/// One upstream host: 64 bytes (a rules file or a registry may list
/// 100,000s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight (1..=128 in Envoy's terms; default 1).
    pub weight: u32,
    pub health: Health,
    /// Where the endpoint runs; endpoints are grouped by locality in EDS.
    /// Boxed: inline, three strings made the endpoint twice as large,
    /// and most endpoints have none.
    pub locality: Option<Box<Locality>>,
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
    pub access_log: AccessLog,
    /// TLS termination; `None`: plain text.
    pub tls: Option<ListenerTls>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    /// Ordered: Envoy takes the first route that matches.
    pub routes: Vec<Route>,
    /// Lua filter settings every route inherits.
    pub filters: Filters,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: RouteAction,
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    /// Lua filter settings of this route (see [`Filters::over`]).
    pub filters: Filters,
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
    /// A weighted split whose weights Envoy reads, on every request, from
    /// the runtime keys `<key_prefix>.<cluster name>` ([`Config::runtime`]),
    /// falling back to `split`'s weight for a key it does not hold. Set by
    /// rollouts that move weights through the runtime, never by the rules.
    RuntimeSplit {
        key_prefix: String,
        split: Vec<WeightedBackend>,
    },
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
            RouteAction::Split(split) | RouteAction::RuntimeSplit { split, .. } => {
                split.iter().map(|wb| &wb.backend).collect()
            }
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
        cluster_name(&self.service, self.subset.as_deref())
    }
}

/// The Envoy cluster name of `service`, or of one of its subsets
/// (`service~subset`; see [`Backend::cluster_name`]).
pub fn cluster_name(service: &str, subset: Option<&str>) -> String {
    match subset {
        None => service.to_string(),
        Some(subset) => format!("{service}~{subset}"),
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

/// What the Lua filter does on a virtual host or route: auth, request
/// validation, and transformation. On a route, each part set there replaces
/// the virtual host's; unset parts are inherited.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Filters {
    pub auth: Option<Auth>,
    pub validate: Option<Validate>,
    pub request: Option<Transform>,
    pub response: Option<Transform>,
    /// Enforced by Envoy's native local rate limit filter, after auth.
    pub rate_limit: Option<RateLimit>,
    /// A user's own Lua (escape hatch), run after sluice's filter.
    pub lua: Option<UserLua>,
}

/// Lua source a user supplies for a route, checked like sluice's own
/// (compiles in LuaJIT, no `io`/`os`/`require`/...).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserLua {
    pub source: String,
}

/// A token bucket per key value, local to each Envoy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RateLimit {
    pub key: RateLimitKey,
    /// Requests allowed per `per` for each key value not in `overrides`.
    pub requests: u32,
    pub per: Duration,
    /// Budgets for named plans or consumers, in name order.
    pub overrides: Vec<(String, u32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// One bucket for the whole route.
    Route,
    Plan,
    Consumer,
}

/// Who may call. Credentials are held only as SHA-256 hashes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Auth {
    pub ip: Option<IpRule>,
    pub method: Option<AuthMethod>,
    /// Request headers that carry the consumer and plan upstream.
    pub consumer_header: String,
    pub plan_header: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ApiKey(ApiKeyAuth),
    Basic(BasicAuth),
    Jwt(JwtAuth),
}

/// RS256 bearer tokens, verified in the Lua filter with Envoy's
/// `verifySignature`; keys travel per route, so rotating one is RDS only.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JwtAuth {
    /// Header carrying the token (`authorization` expects `Bearer`).
    pub header: String,
    pub issuer: Option<String>,
    /// Accepted `aud` values; empty accepts any.
    pub audiences: Vec<String>,
    /// (kid, base64 DER SubjectPublicKeyInfo); kid `*` matches any token.
    pub keys: Vec<(String, String)>,
    pub consumer_claim: String,
    pub plan_claim: Option<String>,
    pub clock_skew: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiKeyAuth {
    pub header: Option<String>,
    pub query: Option<String>,
    pub json_field: Option<String>,
    /// Ordered by hash.
    pub keys: Vec<Credential>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BasicAuth {
    pub realm: String,
    /// Ordered by user name; `Credential::sha256` is the password's hash.
    pub users: Vec<(String, Credential)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Credential {
    /// Lower-case hex SHA-256 of the key or password.
    pub sha256: String,
    pub consumer: String,
    pub plan: Option<String>,
}

/// Client address rules, enforced by Envoy's native RBAC filter: CIDRs or
/// single addresses, IPv4 or IPv6, normalised.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IpRule {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Validate {
    pub methods: Vec<String>,
    pub required_headers: Vec<String>,
    pub required_query: Vec<String>,
    pub content_types: Vec<String>,
    pub max_body_bytes: Option<u64>,
}

/// Header and body edits. Values are templates (`${consumer}`,
/// `${header.x-id}`, ...), filled in by the Lua as data.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Transform {
    pub remove_headers: Vec<String>,
    pub rename_headers: Vec<(String, String)>,
    pub set_headers: Vec<(String, String)>,
    pub add_headers: Vec<(String, String)>,
    pub query_to_header: Vec<(String, String)>,
    pub rewrite_path: Option<String>,
    pub json: Option<JsonEdit>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct JsonEdit {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
    pub rename: Vec<(String, String)>,
    pub max_bytes: u64,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self.auth.is_none()
            && self.validate.is_none()
            && self.request.is_none()
            && self.response.is_none()
            && self.rate_limit.is_none()
            && self.lua.is_none()
    }

    /// Whether the Lua filter has work (rate limiting alone is native).
    pub fn uses_lua(&self) -> bool {
        // IP rules alone are native RBAC; the Lua filter handles credentials.
        let lua_auth = self.auth.as_ref().is_some_and(|a| a.method.is_some());
        lua_auth || self.validate.is_some() || self.request.is_some() || self.response.is_some()
    }

    /// The largest request body the Lua filter must hold whole to answer
    /// as the rules say: the larger of `validate`'s `max_body_bytes` and a
    /// request JSON edit's `max_bytes`; `None` when neither is set.
    pub fn request_body_limit(&self) -> Option<u64> {
        let validate = self.validate.as_ref().and_then(|v| v.max_body_bytes);
        let json = self.request.as_ref().and_then(|t| t.json.as_ref());
        validate.max(json.map(|j| j.max_bytes))
    }

    /// `self` (a route's) over `base` (its virtual host's).
    pub fn over(&self, base: &Filters) -> Filters {
        Filters {
            auth: self.auth.clone().or_else(|| base.auth.clone()),
            validate: self.validate.clone().or_else(|| base.validate.clone()),
            request: self.request.clone().or_else(|| base.request.clone()),
            response: self.response.clone().or_else(|| base.response.clone()),
            rate_limit: self.rate_limit.clone().or_else(|| base.rate_limit.clone()),
            lua: self.lua.clone().or_else(|| base.lua.clone()),
        }
    }
}
