//! `rate_limit` in the rules → Envoy's native local rate limit filter.
//!
//! The listener's HTTP connection manager gets the filter (after the Lua
//! filter, so it sees the authenticated identity headers, and before the
//! router) with no bucket of its own: it acts only on routes that configure
//! it. Per route: a token bucket for the route, and — when keyed by plan or
//! consumer — one descriptor per plan or consumer the route's auth knows,
//! matched through a `request_headers` rate-limit action on the identity
//! header; a request with a matching descriptor uses only that bucket,
//! others share the route's. Buckets are per Envoy instance (shared by its workers).

use std::collections::BTreeSet;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::rate_limit::action::{
    ActionSpecifier, RequestHeaders,
};
use envoy_types::pb::envoy::config::route::v3::rate_limit::Action;
use envoy_types::pb::envoy::config::route::v3::RateLimit as RouteRateLimit;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    rate_limit_descriptor::Entry, LocalRateLimitDescriptor,
};
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent, FractionalPercent, TokenBucket};
use envoy_types::pb::google::protobuf::{Any, BoolValue, UInt32Value};
use prost::Message;

use super::{pb_duration, CompileError};
use crate::model::{AuthMethod, Filters, RateLimit, RateLimitKey};

pub(super) const FILTER_NAME: &str = "envoy.filters.http.local_ratelimit";
const TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
const STAT_PREFIX: &str = "sluice_rate_limit";

fn any(config: &LocalRateLimit) -> Any {
    Any {
        type_url: TYPE_URL.to_string(),
        value: config.encode_to_vec(),
    }
}

/// The listener-level filter: inert until a route configures it.
pub(super) fn http_filter() -> HttpFilter {
    let config = LocalRateLimit {
        stat_prefix: STAT_PREFIX.to_string(),
        ..Default::default()
    };
    HttpFilter {
        name: FILTER_NAME.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(&config))),
        ..Default::default()
    }
}

/// The per-route filter config, with the actions that produce its
/// descriptors (kept in the filter config, not on the route).
pub(super) fn per_route(
    filters: &Filters,
    context: impl Fn() -> String,
) -> Result<Option<Any>, CompileError> {
    let Some(rl) = &filters.rate_limit else {
        return Ok(None);
    };
    let bucket = |n: u32| token_bucket(n, rl.per, &context);
    let mut config = LocalRateLimit {
        stat_prefix: STAT_PREFIX.to_string(),
        token_bucket: Some(bucket(rl.requests)?),
        filter_enabled: Some(always("sluice_rate_limit_enabled")),
        filter_enforced: Some(always("sluice_rate_limit_enforced")),
        // A request that matches a plan's or consumer's bucket must not
        // also drain the route's bucket (Envoy's default does).
        always_consume_default_token_bucket: Some(BoolValue { value: false }),
        ..Default::default()
    };
    if let Some((descriptor_key, header)) = descriptor_source(rl, filters) {
        for value in known_values(rl, filters) {
            let n = rl
                .overrides
                .iter()
                .find(|(k, _)| *k == value)
                .map_or(rl.requests, |(_, n)| *n);
            config.descriptors.push(LocalRateLimitDescriptor {
                entries: vec![Entry {
                    key: descriptor_key.to_string(),
                    value,
                }],
                token_bucket: Some(bucket(n)?),
                ..Default::default()
            });
        }
        config.rate_limits.push(RouteRateLimit {
            actions: vec![Action {
                action_specifier: Some(ActionSpecifier::RequestHeaders(RequestHeaders {
                    header_name: header,
                    descriptor_key: descriptor_key.to_string(),
                    skip_if_absent: true,
                })),
            }],
            ..Default::default()
        });
    }
    Ok(Some(any(&config)))
}

/// (descriptor key, identity header) for a plan or consumer key.
fn descriptor_source(rl: &RateLimit, filters: &Filters) -> Option<(&'static str, String)> {
    let auth = filters.auth.as_ref()?;
    match rl.key {
        RateLimitKey::Route => None,
        RateLimitKey::Plan => Some(("plan", auth.plan_header.clone())),
        RateLimitKey::Consumer => Some(("consumer", auth.consumer_header.clone())),
    }
}

/// Every plan or consumer the route's auth can produce, plus overrides.
fn known_values(rl: &RateLimit, filters: &Filters) -> BTreeSet<String> {
    let creds: Vec<&crate::model::Credential> =
        match filters.auth.as_ref().and_then(|a| a.method.as_ref()) {
            Some(AuthMethod::ApiKey(k)) => k.keys.iter().collect(),
            Some(AuthMethod::Basic(b)) => b.users.iter().map(|(_, c)| c).collect(),
            // Consumers and plans come from token claims, which cannot be
            // listed: only `overrides` get buckets of their own.
            Some(AuthMethod::Jwt(_)) | None => Vec::new(),
        };
    let mut values: BTreeSet<String> = creds
        .into_iter()
        .filter_map(|c| match rl.key {
            RateLimitKey::Plan => c.plan.clone(),
            RateLimitKey::Consumer => Some(c.consumer.clone()),
            RateLimitKey::Route => None,
        })
        .collect();
    values.extend(rl.overrides.iter().map(|(k, _)| k.clone()));
    values
}

fn token_bucket(
    requests: u32,
    per: Duration,
    context: impl Fn() -> String,
) -> Result<TokenBucket, CompileError> {
    Ok(TokenBucket {
        max_tokens: requests,
        tokens_per_fill: Some(UInt32Value { value: requests }),
        fill_interval: Some(pb_duration(per, || {
            format!("{} rate_limit.per", context())
        })?),
    })
}

fn always(runtime_key: &str) -> RuntimeFractionalPercent {
    RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            denominator: fractional_percent::DenominatorType::Hundred as i32,
        }),
        runtime_key: runtime_key.to_string(),
    }
}
