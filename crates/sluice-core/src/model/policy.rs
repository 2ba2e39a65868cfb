//! Traffic policy: what a service or route asks of Envoy beyond "send it
//! there" — health checking, outlier ejection, circuit breaking, load
//! balancing options, upstream protocol and TLS per service; hashing,
//! mirroring, faults, header edits, rewrites and CORS per route; access logs
//! per listener.
//!
//! These types live apart from the core model so that each `Service`,
//! `Route` and `Listener` carries them in one field (`policy` /
//! `access_log`), all defaulting to "off". Percentages are whole numbers
//! `0..=100`; every value here has been range-checked by `rules`.

use std::time::Duration;

use serde::Serialize;

use super::{Backend, Locality};

/// Per-service policy. `Default` is plain Envoy defaults: no health checks,
/// no outlier detection, Envoy's default circuit breakers, HTTP/1.1, no TLS.
///
/// The sections are boxed: most services set none of them, and a file
/// may hold 100,000s of services (inline, the policy was 344 bytes of
/// each; now 72).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServicePolicy {
    pub health_check: Option<Box<HealthCheck>>,
    /// Percent of healthy hosts below which Envoy ignores health and spreads
    /// load over all hosts (`common_lb_config.healthy_panic_threshold`).
    pub panic_threshold: Option<u32>,
    pub outlier_detection: Option<Box<OutlierDetection>>,
    pub circuit_breakers: Option<Box<CircuitBreakers>>,
    /// Only with `LbPolicy::LeastRequest`.
    pub least_request: Option<Box<LeastRequest>>,
    /// Only with `LbPolicy::RoundRobin` or `LbPolicy::LeastRequest`.
    pub slow_start: Option<Box<SlowStart>>,
    pub locality_lb: Option<Box<LocalityLb>>,
    pub protocol: UpstreamProtocol,
    pub tls: Option<Box<UpstreamTls>>,
}

/// Active health checking of every endpoint of the service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// `GET path`; healthy when the status is in one of the ranges
    /// (inclusive), default `[200, 200]`.
    Http {
        path: String,
        expected_statuses: Vec<(u16, u16)>,
    },
    /// Healthy when a TCP connection opens.
    Tcp,
    /// The gRPC health checking protocol, for `service` (empty = server).
    Grpc { service: String },
}

/// Passive health: eject endpoints that fail requests.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutlierDetection {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    pub success_rate: Option<SuccessRate>,
    pub failure_percentage: Option<FailurePercentage>,
    /// How often ejection is evaluated.
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SuccessRate {
    pub minimum_hosts: u32,
    pub request_volume: u32,
    /// Ejection threshold is mean − stdev × (stdev_factor / 1000).
    pub stdev_factor: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailurePercentage {
    /// Eject a host whose failure percentage is at least this.
    pub threshold: u32,
    pub minimum_hosts: u32,
    pub request_volume: u32,
}

/// Limits for the default routing priority; `None` keeps Envoy's default
/// (1024 each, 3 retries).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CircuitBreakers {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
    pub retry_budget: Option<RetryBudget>,
}

/// Active retries may be at most `percent` of active requests (but always
/// `min_concurrency`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetryBudget {
    pub percent: u32,
    pub min_concurrency: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeastRequest {
    /// Hosts sampled per pick (P2C = 2).
    pub choice_count: u32,
    /// How strongly active requests lower a weighted host's share; `None`
    /// keeps Envoy's 1.0. Stored in thousandths to stay `Eq`-friendly.
    pub active_request_bias_milli: Option<u32>,
}

/// New endpoints ramp up over `window` instead of taking a full share.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlowStart {
    pub window: Duration,
    /// Ramp curve exponent in thousandths (1000 = linear); `None` = linear.
    pub aggression_milli: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalityLb {
    /// Split traffic between localities by these weights (scaled down by
    /// each locality's share of healthy hosts); a locality not listed gets
    /// no traffic.
    Weighted(Vec<LocalityWeight>),
    /// Prefer the proxy's own zone (needs a local cluster in the bootstrap).
    ZoneAware {
        routing_enabled: u32,
        min_cluster_size: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LocalityWeight {
    pub locality: Locality,
    pub weight: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    Http2,
    /// HTTP/2 to the upstream; named separately because users think in gRPC.
    Grpc,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UpstreamTls {
    /// Server name sent in the TLS handshake; empty = none.
    pub sni: String,
    /// PEM file of CAs that must have signed the upstream's certificate;
    /// `None` = the upstream certificate is not verified.
    pub ca_file: Option<String>,
}

/// Per-route policy. `Default` is "nothing extra".
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RoutePolicy {
    /// Consistent-hash inputs, tried in order; only for services balanced by
    /// `ring_hash` or `maglev`.
    pub hash: Vec<HashPolicy>,
    pub mirror: Option<Mirror>,
    pub fault: Option<Fault>,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    pub rewrite: Option<Rewrite>,
    pub cors: Option<Cors>,
    /// Allow `Upgrade: websocket` on this route.
    pub websocket: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashPolicy {
    Header(String),
    /// Hash a cookie; with a `ttl`, Envoy sets the cookie when it is
    /// missing, which makes sessions sticky.
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: Option<String>,
    },
    SourceIp,
    QueryParameter(String),
}

/// Copy `percent` of requests to `backend`, ignoring its answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mirror {
    pub backend: Backend,
    pub percent: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultDelay {
    pub duration: Duration,
    pub percent: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultAbort {
    pub status: u32,
    pub percent: u32,
}

/// Headers to set (replacing any existing value) and to remove, in file
/// order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HeaderEdits {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rewrite {
    /// Replace the matched prefix (only on prefix routes).
    pub prefix: Option<String>,
    /// Replace every match of `pattern` in the path with `substitution`.
    pub regex: Option<(String, String)>,
    pub host: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cors {
    /// Exact origins, or `*`.
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<Duration>,
    pub allow_credentials: bool,
}

/// A redirect answered by Envoy itself; unset parts keep the request's.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Redirect {
    pub https: bool,
    pub host: Option<String>,
    pub path: Option<String>,
    pub prefix: Option<String>,
    /// 301, 302, 303, 307 or 308.
    pub code: u32,
}

/// A response answered by Envoy itself.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DirectResponse {
    pub status: u32,
    pub body: Option<String>,
}

/// Per-listener access log, written to Envoy's stdout.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLog {
    /// One JSON object per request with sluice's default fields.
    #[default]
    Json,
    /// One JSON object per request with these (key, Envoy format operator)
    /// fields, in file order.
    JsonFields(Vec<(String, String)>),
    /// Envoy's text format string.
    Text(String),
    Off,
}

/// The fields of the default JSON access log.
pub const DEFAULT_ACCESS_LOG_FIELDS: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("status", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("route", "%ROUTE_NAME%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("duration_ms", "%DURATION%"),
    (
        "upstream_service_time_ms",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("downstream_remote", "%DOWNSTREAM_REMOTE_ADDRESS%"),
];

impl ServicePolicy {
    /// Whether the upstream connections speak HTTP/2.
    pub fn is_http2(&self) -> bool {
        matches!(
            self.protocol,
            UpstreamProtocol::Http2 | UpstreamProtocol::Grpc
        )
    }
}

/// A service's [`ServicePolicy`] in 8 bytes: nothing when it is the
/// default, as for most services, and boxed otherwise (a file may hold
/// 100,000s of services, each in an `Arc`: inline, the policy's 72 bytes
/// made a service 176 bytes, 192 with its `Arc`; now 112 and 128). It
/// reads, compares, prints and serializes as the policy itself
/// (`Deref`); editing it through `DerefMut` boxes a default first.
#[derive(Clone, Default)]
pub struct BoxedPolicy(Option<Box<ServicePolicy>>);

/// What [`BoxedPolicy`] reads as when it holds nothing: the same as
/// `ServicePolicy::default()` (a test checks).
static NO_POLICY: ServicePolicy = ServicePolicy {
    health_check: None,
    panic_threshold: None,
    outlier_detection: None,
    circuit_breakers: None,
    least_request: None,
    slow_start: None,
    locality_lb: None,
    protocol: UpstreamProtocol::Http1,
    tls: None,
};

impl From<ServicePolicy> for BoxedPolicy {
    fn from(policy: ServicePolicy) -> BoxedPolicy {
        if policy == NO_POLICY {
            BoxedPolicy(None)
        } else {
            BoxedPolicy(Some(Box::new(policy)))
        }
    }
}

impl std::ops::Deref for BoxedPolicy {
    type Target = ServicePolicy;
    fn deref(&self) -> &ServicePolicy {
        self.0.as_deref().unwrap_or(&NO_POLICY)
    }
}

impl std::ops::DerefMut for BoxedPolicy {
    fn deref_mut(&mut self) -> &mut ServicePolicy {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for BoxedPolicy {
    /// By value: a boxed default equals none.
    fn eq(&self, other: &BoxedPolicy) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for BoxedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl Serialize for BoxedPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Serialize::serialize(&**self, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boxed_policy_reads_as_the_policy() {
        let none = BoxedPolicy::default();
        assert_eq!(*none, ServicePolicy::default());
        assert_eq!(BoxedPolicy::from(ServicePolicy::default()).0, None);
        let http2 = ServicePolicy {
            protocol: UpstreamProtocol::Http2,
            ..ServicePolicy::default()
        };
        let boxed = BoxedPolicy::from(http2.clone());
        assert!(boxed.is_http2());
        assert_eq!(format!("{boxed:?}"), format!("{http2:?}"));
        assert_ne!(boxed, none);
        // Edited back to the default, it equals no policy.
        let mut edited = boxed;
        edited.protocol = UpstreamProtocol::Http1;
        assert_eq!(edited, none);
        assert_eq!(
            serde_json::to_string(&edited).expect("json"),
            serde_json::to_string(&ServicePolicy::default()).expect("json")
        );
    }
}
