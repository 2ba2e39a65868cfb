//! The traffic-policy parts of a rules file as written (see `raw` for the
//! conventions): service resilience and balancing options, route shaping,
//! listener access logs. Scalars needing range or unit checks stay spanned
//! strings; `service_policy` and `route_policy` check them.

use crate::rules::yaml::Spanned;
use serde::Deserialize;

use super::spanned_map::SpannedMap;

type Str = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a health_check mapping")]
pub struct RawHealthCheck {
    #[serde(rename = "type")]
    pub kind: Str,
    #[serde(default)]
    pub path: Option<Str>,
    #[serde(default)]
    pub expected_statuses: Option<Spanned<Vec<Str>>>,
    #[serde(default)]
    pub grpc_service: Option<Str>,
    #[serde(default)]
    pub interval: Option<Str>,
    #[serde(default)]
    pub timeout: Option<Str>,
    #[serde(default)]
    pub healthy_threshold: Option<Str>,
    #[serde(default)]
    pub unhealthy_threshold: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an outlier_detection mapping")]
pub struct RawOutlier {
    #[serde(default)]
    pub consecutive_5xx: Option<Str>,
    #[serde(default)]
    pub consecutive_gateway_errors: Option<Str>,
    #[serde(default)]
    pub success_rate: Option<Spanned<RawSuccessRate>>,
    #[serde(default)]
    pub failure_percentage: Option<Spanned<RawFailurePercentage>>,
    #[serde(default)]
    pub interval: Option<Str>,
    #[serde(default)]
    pub base_ejection_time: Option<Str>,
    #[serde(default)]
    pub max_ejection_percent: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a success_rate mapping")]
pub struct RawSuccessRate {
    #[serde(default)]
    pub minimum_hosts: Option<Str>,
    #[serde(default)]
    pub request_volume: Option<Str>,
    #[serde(default)]
    pub stdev_factor: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a failure_percentage mapping")]
pub struct RawFailurePercentage {
    pub threshold: Str,
    #[serde(default)]
    pub minimum_hosts: Option<Str>,
    #[serde(default)]
    pub request_volume: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a circuit_breakers mapping")]
pub struct RawCircuitBreakers {
    #[serde(default)]
    pub max_connections: Option<Str>,
    #[serde(default)]
    pub max_pending_requests: Option<Str>,
    #[serde(default)]
    pub max_requests: Option<Str>,
    #[serde(default)]
    pub max_retries: Option<Str>,
    #[serde(default)]
    pub retry_budget: Option<Spanned<RawRetryBudget>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a retry_budget mapping")]
pub struct RawRetryBudget {
    pub percent: Str,
    #[serde(default)]
    pub min_concurrency: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a least_request mapping")]
pub struct RawLeastRequest {
    #[serde(default)]
    pub choice_count: Option<Str>,
    #[serde(default)]
    pub active_request_bias: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a slow_start mapping")]
pub struct RawSlowStart {
    pub window: Str,
    #[serde(default)]
    pub aggression: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a locality weight mapping")]
pub struct RawLocalityWeight {
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub sub_zone: String,
    pub weight: Str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a zone_aware mapping")]
pub struct RawZoneAware {
    #[serde(default)]
    pub routing_enabled: Option<Str>,
    #[serde(default)]
    pub min_cluster_size: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a tls mapping")]
pub struct RawUpstreamTls {
    #[serde(default)]
    pub sni: Option<Str>,
    #[serde(default)]
    pub ca_file: Option<Str>,
}

/// One hash policy: exactly one of the fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a hash policy mapping")]
pub struct RawHashPolicy {
    #[serde(default)]
    pub header: Option<Str>,
    #[serde(default)]
    pub cookie: Option<Spanned<RawCookie>>,
    #[serde(default)]
    pub source_ip: Option<Spanned<bool>>,
    #[serde(default)]
    pub query: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a cookie mapping")]
pub struct RawCookie {
    pub name: Str,
    #[serde(default)]
    pub ttl: Option<Str>,
    #[serde(default)]
    pub path: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mirror mapping")]
pub struct RawMirror {
    pub service: Str,
    #[serde(default)]
    pub subset: Option<Str>,
    #[serde(default)]
    pub percent: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a fault mapping")]
pub struct RawFault {
    #[serde(default)]
    pub delay: Option<Spanned<RawFaultDelay>>,
    #[serde(default)]
    pub abort: Option<Spanned<RawFaultAbort>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a fault delay mapping")]
pub struct RawFaultDelay {
    pub duration: Str,
    pub percent: Str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a fault abort mapping")]
pub struct RawFaultAbort {
    pub status: Str,
    pub percent: Str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a header edits mapping")]
pub struct RawHeaderEdits {
    #[serde(default)]
    pub set: SpannedMap<Str>,
    #[serde(default)]
    pub remove: Vec<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a rewrite mapping")]
pub struct RawRewrite {
    #[serde(default)]
    pub prefix: Option<Str>,
    #[serde(default)]
    pub regex: Option<Spanned<RawRegexRewrite>>,
    #[serde(default)]
    pub host: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a regex rewrite mapping")]
pub struct RawRegexRewrite {
    pub pattern: Str,
    pub substitution: Str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a cors mapping")]
pub struct RawCors {
    pub allow_origins: Spanned<Vec<Str>>,
    #[serde(default)]
    pub allow_methods: Vec<Str>,
    #[serde(default)]
    pub allow_headers: Vec<Str>,
    #[serde(default)]
    pub expose_headers: Vec<Str>,
    #[serde(default)]
    pub max_age: Option<Str>,
    #[serde(default)]
    pub allow_credentials: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a redirect mapping")]
pub struct RawRedirect {
    #[serde(default)]
    pub https: Option<bool>,
    #[serde(default)]
    pub host: Option<Str>,
    #[serde(default)]
    pub path: Option<Str>,
    #[serde(default)]
    pub prefix: Option<Str>,
    #[serde(default)]
    pub code: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a direct_response mapping")]
pub struct RawDirectResponse {
    pub status: Str,
    #[serde(default)]
    pub body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an access_log mapping")]
pub struct RawAccessLog {
    #[serde(default)]
    pub format: Option<Str>,
    #[serde(default)]
    pub fields: Option<Spanned<SpannedMap<String>>>,
    #[serde(default)]
    pub text: Option<Str>,
}
