//! `envoy.filters.http.local_ratelimit` as Envoy 1.40 runs it.
//!
//! The config in force is the route's most specific per-filter config, else
//! the listener's. Unless `filter_enabled` says so (default: off) the filter
//! does nothing. Otherwise the request's descriptors are built from the
//! config's `rate_limits` (`request_headers` actions), every configured
//! descriptor that equals one of them spends a token from its bucket
//! (slowest-filling first; the first empty one refuses), and the default
//! bucket is spent when no descriptor matched or
//! `always_consume_default_token_bucket` (default true) is set. A refusal
//! is answered with `status` (429 unless ≥ 400) and the body
//! `local_rate_limited` when `filter_enforced` says so (default: off).
//!
//! Buckets are Envoy's lazily refilled ones: they start full and gain
//! `tokens_per_fill / fill_interval` tokens per second of virtual time, up
//! to `max_tokens`. They belong to one proxy (Envoy shares them across its
//! workers) and to one decoded config: a new route configuration brings
//! new, full buckets, as Envoy builds its per-route configs anew.
//! Stats: `<stat_prefix>.http_local_rate_limit.{enabled,ok,rate_limited,enforced}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::rate_limit::action::ActionSpecifier;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::r#type::v3::TokenBucket;

use super::percent::{runtime_percent, Percent};
use crate::decode::{pb_duration, proto, DecodeError};
use crate::http::{HeaderEdits, Request};

pub const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

/// One decoded `LocalRateLimit` (listener-level or per route).
#[derive(Debug, PartialEq)]
pub struct RateLimit {
    pub stat_prefix: String,
    enabled: Option<Percent>,
    enforced: Option<Percent>,
    pub status: u16,
    /// `None`: no default bucket (no `token_bucket`, or a zero interval).
    default: Option<BucketConfig>,
    /// `max_tokens: 0`: every request that reaches the default bucket is refused.
    deny_default: bool,
    descriptors: Vec<(Descriptor, BucketConfig)>,
    always_consume_default: bool,
    /// One descriptor per `rate_limits` entry: its actions in order.
    rate_limits: Vec<Vec<HeaderAction>>,
    response_headers: HeaderEdits,
    request_headers_not_enforced: HeaderEdits,
}

type Descriptor = Vec<(String, String)>;

#[derive(Clone, Copy, Debug, PartialEq)]
struct BucketConfig {
    max_tokens: f64,
    /// Tokens per second.
    rate: f64,
}

#[derive(Debug, PartialEq)]
struct HeaderAction {
    header: String,
    key: String,
    skip_if_absent: bool,
}

/// A lazily refilled token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

impl Bucket {
    fn full(cfg: &BucketConfig, now: Duration) -> Bucket {
        Bucket {
            tokens: cfg.max_tokens,
            at: now,
        }
    }

    fn take(&mut self, cfg: &BucketConfig, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * cfg.rate).min(cfg.max_tokens);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One decoded config's buckets: the default one and one per descriptor.
/// The `Arc` keeps the config's address (the key) from being reused.
type ConfigBuckets = (Arc<RateLimit>, Option<Bucket>, Vec<Bucket>);

/// One proxy's buckets, per decoded config (by address).
#[derive(Default)]
pub struct Buckets {
    by_config: HashMap<usize, ConfigBuckets>,
}

/// Past this many configs, those no resource holds any more are dropped.
const PRUNE_AT: usize = 256;

/// What the filter decided.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Not enabled for this request.
    Off,
    Allowed,
    /// Refused but not enforced: the request goes on with these headers added.
    NotEnforced,
    /// Refused: answer with this status.
    Refused(u16),
}

impl RateLimit {
    /// Runs the filter for `req` at virtual time `now`; the Envoy stats it
    /// moved are pushed to `counters`.
    pub fn check(
        self: &Arc<Self>,
        req: &mut Request,
        buckets: &mut Buckets,
        rng: &mut rand::rngs::Xoshiro256PlusPlus,
        now: Duration,
        counters: &mut Vec<String>,
    ) -> Verdict {
        let stat = |s: &str| format!("{}.http_local_rate_limit.{s}", self.stat_prefix);
        if !self.enabled.is_some_and(|p| p.hit(rng)) {
            return Verdict::Off;
        }
        counters.push(stat("enabled"));
        let wanted = self.descriptors_of(req);
        if buckets.by_config.len() >= PRUNE_AT {
            buckets
                .by_config
                .retain(|_, (c, ..)| Arc::strong_count(c) > 1);
        }
        let key = Arc::as_ptr(self) as usize;
        let (_, default, per_descriptor) = buckets.by_config.entry(key).or_insert_with(|| {
            let d = self.default.as_ref().map(|c| Bucket::full(c, now));
            let per = self
                .descriptors
                .iter()
                .map(|(_, c)| Bucket::full(c, now))
                .collect();
            (self.clone(), d, per)
        });
        let mut matched: Vec<usize> = (0..self.descriptors.len())
            .filter(|&i| wanted.contains(&self.descriptors[i].0))
            .collect();
        // The slowest-filling bucket is spent first (a stable sort, as the
        // order among equals is Envoy's request-descriptor order).
        matched.sort_by(|&a, &b| {
            let (ra, rb) = (self.descriptors[a].1.rate, self.descriptors[b].1.rate);
            ra.total_cmp(&rb)
        });
        let mut allowed = true;
        for &i in &matched {
            if !per_descriptor[i].take(&self.descriptors[i].1, now) {
                allowed = false;
                break;
            }
        }
        if allowed && (matched.is_empty() || self.always_consume_default) {
            allowed = match (default.as_mut(), &self.default) {
                (Some(b), Some(cfg)) => b.take(cfg, now),
                _ => !self.deny_default,
            };
        }
        if allowed {
            counters.push(stat("ok"));
            return Verdict::Allowed;
        }
        counters.push(stat("rate_limited"));
        if !self.enforced.is_some_and(|p| p.hit(rng)) {
            self.request_headers_not_enforced.apply(&mut req.headers);
            return Verdict::NotEnforced;
        }
        counters.push(stat("enforced"));
        Verdict::Refused(self.status)
    }

    /// `response_headers_to_add` of a refusal.
    pub fn refusal_headers(&self, headers: &mut Vec<(String, String)>) {
        self.response_headers.apply(headers);
    }

    /// The request's descriptors: one per `rate_limits` entry whose actions
    /// all produced an entry (an absent header with `skip_if_absent` adds
    /// none), when not empty.
    fn descriptors_of(&self, req: &Request) -> Vec<Descriptor> {
        let mut out = Vec::new();
        'limits: for actions in &self.rate_limits {
            let mut d = Vec::new();
            for a in actions {
                match req.headers.iter().find(|(k, _)| *k == a.header) {
                    Some((_, v)) => d.push((a.key.clone(), v.clone())),
                    None if a.skip_if_absent => {}
                    None => continue 'limits,
                }
            }
            if !d.is_empty() {
                out.push(d);
            }
        }
        out
    }
}

/// Decodes a `LocalRateLimit`; `per_route` configs must have a bucket.
pub(super) fn decode(name: &str, bytes: &[u8], per_route: bool) -> Result<RateLimit, DecodeError> {
    let c: LocalRateLimit = proto(bytes, "LocalRateLimit")?;
    let unsupported = |what: &str| DecodeError::Unsupported(format!("{name:?}: {what}"));
    let invalid = |what: &str| DecodeError::Invalid(format!("{name:?}: {what}"));
    if c.local_rate_limit_per_downstream_connection {
        return Err(unsupported("local_rate_limit_per_downstream_connection"));
    }
    if c.local_cluster_rate_limit.is_some() {
        return Err(unsupported("local_cluster_rate_limit"));
    }
    if c.enable_x_ratelimit_headers != 0 || c.enable_retry_after_header {
        return Err(unsupported("x-ratelimit or retry-after headers"));
    }
    if !c.descriptors.is_empty() && c.rate_limits.is_empty() {
        return Err(unsupported("descriptors from the route's rate_limits"));
    }
    if per_route && c.token_bucket.is_none() {
        return Err(invalid(
            "local rate limit token bucket must be set for per filter configs",
        ));
    }
    let (default, deny_default) = match &c.token_bucket {
        Some(tb)
            if tb
                .fill_interval
                .as_ref()
                .is_some_and(|d| !pb_duration(d).is_zero()) =>
        {
            if tb.max_tokens == 0 {
                (None, true)
            } else {
                (Some(bucket(tb, &invalid)?), false)
            }
        }
        _ => (None, false),
    };
    let mut descriptors: Vec<(Descriptor, BucketConfig)> = Vec::new();
    for d in &c.descriptors {
        if d.shadow_mode {
            return Err(unsupported("shadow_mode descriptor"));
        }
        let entries: Descriptor = d
            .entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        if entries.iter().any(|(_, v)| v.is_empty()) {
            return Err(unsupported("wildcard (dynamic) descriptor"));
        }
        let tb = d.token_bucket.unwrap_or_default();
        if tb.max_tokens == 0 {
            return Err(unsupported("descriptor with max_tokens 0"));
        }
        if descriptors.iter().any(|(e, _)| *e == entries) {
            return Err(invalid("duplicate descriptor in the local rate descriptor"));
        }
        descriptors.push((entries, bucket(&tb, &invalid)?));
    }
    let mut rate_limits = Vec::new();
    for rl in &c.rate_limits {
        if !rl.disable_key.is_empty()
            || rl.limit.is_some()
            || rl.hits_addend.is_some()
            || rl.apply_on_stream_done
        {
            return Err(unsupported(
                "rate_limits with disable_key, limit, hits_addend or apply_on_stream_done",
            ));
        }
        let mut actions = Vec::new();
        for a in &rl.actions {
            match &a.action_specifier {
                Some(ActionSpecifier::RequestHeaders(h)) => actions.push(HeaderAction {
                    header: h.header_name.to_ascii_lowercase(),
                    key: h.descriptor_key.clone(),
                    skip_if_absent: h.skip_if_absent,
                }),
                _ => return Err(unsupported("rate limit action other than request_headers")),
            }
        }
        rate_limits.push(actions);
    }
    let code = c.status.as_ref().map_or(0, |s| s.code);
    Ok(RateLimit {
        stat_prefix: c.stat_prefix.clone(),
        enabled: runtime_percent(c.filter_enabled.as_ref(), None),
        enforced: runtime_percent(c.filter_enforced.as_ref(), None),
        status: if code >= 400 {
            u16::try_from(code).unwrap_or(429)
        } else {
            429
        },
        default,
        deny_default,
        descriptors,
        always_consume_default: c
            .always_consume_default_token_bucket
            .as_ref()
            .is_none_or(|b| b.value),
        rate_limits,
        response_headers: HeaderEdits::decode(name, &c.response_headers_to_add, &[])?,
        request_headers_not_enforced: HeaderEdits::decode(
            name,
            &c.request_headers_to_add_when_not_enforced,
            &[],
        )?,
    })
}

fn bucket(
    tb: &TokenBucket,
    invalid: &dyn Fn(&str) -> DecodeError,
) -> Result<BucketConfig, DecodeError> {
    let interval = tb
        .fill_interval
        .as_ref()
        .map(pb_duration)
        .unwrap_or_default();
    if interval < Duration::from_millis(50) {
        return Err(invalid(
            "local rate limit token bucket fill timer must be >= 50ms",
        ));
    }
    let per_fill = tb.tokens_per_fill.as_ref().map_or(1, |v| v.value);
    Ok(BucketConfig {
        max_tokens: f64::from(tb.max_tokens),
        rate: f64::from(per_fill) / interval.as_secs_f64(),
    })
}
