//! A service's traffic policy: active health checks, panic threshold,
//! outlier detection, circuit breakers, balancing options, upstream protocol
//! and TLS. Conflicts with the service's `lb_policy` are reported here (a
//! `least_request` block on a round-robin service, slow start on ring hash).

use std::time::Duration;

use marked_yaml::Spanned;

use super::error::Diags;
use super::raw::RawService;
use super::raw_policy::{RawCircuitBreakers, RawHealthCheck, RawOutlier};
use super::validate::{duration, int};
use crate::model::{
    CircuitBreakers, FailurePercentage, HealthCheck, HealthCheckKind, LbPolicy, LeastRequest,
    Locality, LocalityLb, LocalityWeight, OutlierDetection, RetryBudget, ServicePolicy, SlowStart,
    SuccessRate, UpstreamProtocol, UpstreamTls,
};

const PROTOCOLS: &[(&str, UpstreamProtocol)] = &[
    ("http1", UpstreamProtocol::Http1),
    ("http2", UpstreamProtocol::Http2),
    ("grpc", UpstreamProtocol::Grpc),
];

pub(crate) fn service_policy(
    raw: &RawService,
    lb: LbPolicy,
    path: &str,
    d: &mut Diags,
) -> ServicePolicy {
    let health_check = raw
        .health_check
        .as_ref()
        .map(|h| health_check(h, &format!("{path}.health_check"), d));
    let panic_threshold = raw
        .panic_threshold
        .as_ref()
        .and_then(|p| int(d, p, &format!("{path}.panic_threshold"), 0..=100));
    let outlier_detection = raw
        .outlier_detection
        .as_ref()
        .map(|o| outlier(o, &format!("{path}.outlier_detection"), d));
    let circuit_breakers = raw
        .circuit_breakers
        .as_ref()
        .map(|c| circuit_breakers(c, &format!("{path}.circuit_breakers"), d));
    let least_request = raw.least_request.as_ref().map(|raw_lr| {
        let p = format!("{path}.least_request");
        if lb != LbPolicy::LeastRequest {
            d.error(
                raw_lr.span(),
                &p,
                "`least_request` options need `lb_policy: least_request`",
            );
        }
        LeastRequest {
            choice_count: raw_lr
                .choice_count
                .as_ref()
                .and_then(|c| int(d, c, &format!("{p}.choice_count"), 2..=100))
                .unwrap_or(2),
            active_request_bias_milli: raw_lr
                .active_request_bias
                .as_ref()
                .and_then(|b| milli(d, b, &format!("{p}.active_request_bias"), 10_000)),
        }
    });
    let slow_start = raw.slow_start.as_ref().map(|s| {
        let p = format!("{path}.slow_start");
        if !matches!(lb, LbPolicy::RoundRobin | LbPolicy::LeastRequest) {
            d.error(
                s.span(),
                &p,
                "slow_start works only with `lb_policy: round_robin` or `least_request`",
            );
        }
        SlowStart {
            window: positive(d, &s.window, &format!("{p}.window")),
            aggression_milli: s
                .aggression
                .as_ref()
                .and_then(|a| milli(d, a, &format!("{p}.aggression"), 100_000))
                .filter(|a| {
                    if *a == 0 {
                        let msg = "aggression must be greater than 0";
                        d.error(s.span(), format!("{p}.aggression"), msg);
                    }
                    *a > 0
                }),
        }
    });
    let locality_lb = locality_lb(raw, lb, path, d);
    let protocol = match &raw.protocol {
        None => UpstreamProtocol::Http1,
        Some(p) => match PROTOCOLS.iter().find(|(n, _)| *n == p.as_str()) {
            Some((_, proto)) => *proto,
            None => {
                let msg = format!(
                    "unknown protocol `{}`; valid values are http1, http2, grpc",
                    p.as_str()
                );
                d.error(p.span(), format!("{path}.protocol"), msg);
                UpstreamProtocol::Http1
            }
        },
    };
    let tls = raw.tls.as_ref().map(|t| UpstreamTls {
        sni: t.sni.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        ca_file: t.ca_file.as_ref().map(|f| {
            if !f.starts_with('/') {
                let msg = format!(
                    "ca_file `{}` must be an absolute path (Envoy reads it from its own working directory)",
                    f.as_str()
                );
                d.error(f.span(), format!("{path}.tls.ca_file"), msg);
            }
            f.to_string()
        }),
    });
    if let (
        Some(h),
        Some(HealthCheck {
            kind: HealthCheckKind::Grpc { .. },
            ..
        }),
    ) = (&raw.health_check, &health_check)
    {
        if protocol == UpstreamProtocol::Http1 {
            let msg = "a grpc health check needs `protocol: grpc` (or http2) on the service";
            d.error(h.kind.span(), format!("{path}.health_check.type"), msg);
        }
    }
    ServicePolicy {
        health_check,
        panic_threshold,
        outlier_detection,
        circuit_breakers,
        least_request,
        slow_start,
        locality_lb,
        protocol,
        tls,
    }
}

fn health_check(raw: &Spanned<RawHealthCheck>, path: &str, d: &mut Diags) -> HealthCheck {
    let kind = match raw.kind.as_str() {
        "http" => {
            let path_value = match &raw.path {
                Some(p) if p.starts_with('/') => p.to_string(),
                Some(p) => {
                    let msg = format!("path `{}` must start with `/`", p.as_str());
                    d.error(p.span(), format!("{path}.path"), msg);
                    p.to_string()
                }
                None => {
                    let msg = "an http health check needs a `path`, e.g. /healthz";
                    d.error(raw.span(), path, msg);
                    String::new()
                }
            };
            let expected_statuses = match &raw.expected_statuses {
                None => vec![(200, 200)],
                Some(list) => {
                    if list.is_empty() {
                        let msg = "expected_statuses must not be empty; omit it to expect 200";
                        d.error(list.span(), format!("{path}.expected_statuses"), msg);
                    }
                    list.iter()
                        .enumerate()
                        .filter_map(|(i, s)| {
                            status_range(d, s, &format!("{path}.expected_statuses[{i}]"))
                        })
                        .collect()
                }
            };
            HealthCheckKind::Http {
                path: path_value,
                expected_statuses,
            }
        }
        "tcp" => HealthCheckKind::Tcp,
        "grpc" => HealthCheckKind::Grpc {
            service: raw
                .grpc_service
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
        },
        other => {
            let msg =
                format!("unknown health check type `{other}`; valid types are http, tcp, grpc");
            d.error(raw.kind.span(), format!("{path}.type"), msg);
            HealthCheckKind::Tcp
        }
    };
    let only_for = |d: &mut Diags, field: Option<&Spanned<String>>, name: &str, kind: &str| {
        if let (Some(f), false) = (field, raw.kind.as_str() == kind) {
            let msg = format!("`{name}` applies only to `type: {kind}` health checks");
            d.error(f.span(), format!("{path}.{name}"), msg);
        }
    };
    only_for(d, raw.path.as_ref(), "path", "http");
    if let (Some(list), false) = (&raw.expected_statuses, raw.kind.as_str() == "http") {
        let msg = "`expected_statuses` applies only to `type: http` health checks";
        d.error(list.span(), format!("{path}.expected_statuses"), msg);
    }
    only_for(d, raw.grpc_service.as_ref(), "grpc_service", "grpc");
    let dur = |d: &mut Diags, v: &Option<Spanned<String>>, field: &str, default: u64| match v {
        None => Duration::from_millis(default),
        Some(v) => positive(d, v, &format!("{path}.{field}")),
    };
    let interval = dur(d, &raw.interval, "interval", 5_000);
    let timeout = dur(d, &raw.timeout, "timeout", 1_000);
    let threshold = |d: &mut Diags, v: &Option<Spanned<String>>, field: &str, default: u32| {
        v.as_ref()
            .and_then(|v| int(d, v, &format!("{path}.{field}"), 1..=1000))
            .unwrap_or(default)
    };
    HealthCheck {
        kind,
        interval,
        timeout,
        healthy_threshold: threshold(d, &raw.healthy_threshold, "healthy_threshold", 1),
        unhealthy_threshold: threshold(d, &raw.unhealthy_threshold, "unhealthy_threshold", 3),
    }
}

/// `200` or `200-299` (inclusive), within 100..=599.
fn status_range(d: &mut Diags, raw: &Spanned<String>, path: &str) -> Option<(u16, u16)> {
    let s = raw.as_str();
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let parse = |v: &str| {
        v.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
    };
    match (parse(lo), parse(hi)) {
        (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
        _ => {
            let msg = format!(
                "invalid status `{s}`: expected a status code 100..=599 or an inclusive range such as 200-299"
            );
            d.error(raw.span(), path, msg);
            None
        }
    }
}

fn outlier(raw: &Spanned<RawOutlier>, path: &str, d: &mut Diags) -> OutlierDetection {
    let count = |d: &mut Diags, v: &Option<Spanned<String>>, field: &str| {
        v.as_ref()
            .and_then(|v| int(d, v, &format!("{path}.{field}"), 1..=1000))
    };
    let consecutive_5xx = count(d, &raw.consecutive_5xx, "consecutive_5xx");
    let consecutive_gateway_errors = count(
        d,
        &raw.consecutive_gateway_errors,
        "consecutive_gateway_errors",
    );
    let success_rate = raw.success_rate.as_ref().map(|s| {
        let p = format!("{path}.success_rate");
        let num = |d: &mut Diags, v: &Option<Spanned<String>>, f: &str, def: u32| {
            v.as_ref()
                .and_then(|v| int(d, v, &format!("{p}.{f}"), 1..=1_000_000))
                .unwrap_or(def)
        };
        SuccessRate {
            minimum_hosts: num(d, &s.minimum_hosts, "minimum_hosts", 5),
            request_volume: num(d, &s.request_volume, "request_volume", 100),
            stdev_factor: num(d, &s.stdev_factor, "stdev_factor", 1900),
        }
    });
    let failure_percentage = raw.failure_percentage.as_ref().map(|f| {
        let p = format!("{path}.failure_percentage");
        let num = |d: &mut Diags, v: &Option<Spanned<String>>, field: &str, def: u32| {
            v.as_ref()
                .and_then(|v| int(d, v, &format!("{p}.{field}"), 1..=1_000_000))
                .unwrap_or(def)
        };
        FailurePercentage {
            threshold: int(d, &f.threshold, &format!("{p}.threshold"), 0..=100).unwrap_or(85),
            minimum_hosts: num(d, &f.minimum_hosts, "minimum_hosts", 5),
            request_volume: num(d, &f.request_volume, "request_volume", 50),
        }
    });
    if raw.consecutive_5xx.is_none()
        && raw.consecutive_gateway_errors.is_none()
        && raw.success_rate.is_none()
        && raw.failure_percentage.is_none()
    {
        let msg = "outlier_detection needs at least one of `consecutive_5xx`, `consecutive_gateway_errors`, `success_rate`, `failure_percentage`";
        d.error(raw.span(), path, msg);
    }
    let dur = |d: &mut Diags, v: &Option<Spanned<String>>, field: &str, default: u64| match v {
        None => Duration::from_secs(default),
        Some(v) => positive(d, v, &format!("{path}.{field}")),
    };
    OutlierDetection {
        consecutive_5xx,
        consecutive_gateway_errors,
        success_rate,
        failure_percentage,
        interval: dur(d, &raw.interval, "interval", 10),
        base_ejection_time: dur(d, &raw.base_ejection_time, "base_ejection_time", 30),
        max_ejection_percent: raw
            .max_ejection_percent
            .as_ref()
            .and_then(|m| int(d, m, &format!("{path}.max_ejection_percent"), 1..=100))
            .unwrap_or(10),
    }
}

fn circuit_breakers(
    raw: &Spanned<RawCircuitBreakers>,
    path: &str,
    d: &mut Diags,
) -> CircuitBreakers {
    let limit = |d: &mut Diags, v: &Option<Spanned<String>>, field: &str| {
        v.as_ref()
            .and_then(|v| int(d, v, &format!("{path}.{field}"), 0..=u32::MAX))
    };
    let retry_budget = raw.retry_budget.as_ref().map(|b| {
        let p = format!("{path}.retry_budget");
        if raw.max_retries.is_some() {
            let msg = "give either `max_retries` or `retry_budget`: Envoy ignores max_retries when a budget is set";
            d.error(b.span(), &p, msg);
        }
        RetryBudget {
            percent: int(d, &b.percent, &format!("{p}.percent"), 0..=100).unwrap_or(20),
            min_concurrency: b
                .min_concurrency
                .as_ref()
                .and_then(|m| int(d, m, &format!("{p}.min_concurrency"), 0..=u32::MAX))
                .unwrap_or(3),
        }
    });
    CircuitBreakers {
        max_connections: limit(d, &raw.max_connections, "max_connections"),
        max_pending_requests: limit(d, &raw.max_pending_requests, "max_pending_requests"),
        max_requests: limit(d, &raw.max_requests, "max_requests"),
        max_retries: limit(d, &raw.max_retries, "max_retries"),
        retry_budget,
    }
}

fn locality_lb(raw: &RawService, lb: LbPolicy, path: &str, d: &mut Diags) -> Option<LocalityLb> {
    let weighted = raw.locality_weights.as_ref().map(|list| {
        let p = format!("{path}.locality_weights");
        if list.is_empty() {
            d.error(list.span(), &p, "locality_weights must not be empty");
        }
        if lb.is_consistent_hash() {
            let msg = "locality_weights do not work with ring_hash or maglev balancing";
            d.error(list.span(), &p, msg);
        }
        let mut seen = super::validate::Seen::default();
        let weights = list
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let locality = Locality {
                    region: w.region.clone(),
                    zone: w.zone.clone(),
                    sub_zone: w.sub_zone.clone(),
                };
                let key = format!("{}/{}/{}", w.region, w.zone, w.sub_zone);
                let loc = d.loc(w.span());
                seen.first_at(d, key, loc, &format!("{p}[{i}]"), "locality");
                let weight = int(d, &w.weight, &format!("{p}[{i}].weight"), 1..=1_000_000);
                LocalityWeight {
                    locality,
                    weight: weight.unwrap_or(1),
                }
            })
            .collect();
        LocalityLb::Weighted(weights)
    });
    let zone_aware = raw.zone_aware.as_ref().map(|z| {
        let p = format!("{path}.zone_aware");
        if let Some(list) = &raw.locality_weights {
            let msg = format!(
                "give either `locality_weights` (line {}) or `zone_aware`, not both",
                d.loc(list.span()).line
            );
            d.error(z.span(), &p, msg);
        }
        LocalityLb::ZoneAware {
            routing_enabled: z
                .routing_enabled
                .as_ref()
                .and_then(|r| int(d, r, &format!("{p}.routing_enabled"), 0..=100))
                .unwrap_or(100),
            min_cluster_size: z
                .min_cluster_size
                .as_ref()
                .and_then(|m| int(d, m, &format!("{p}.min_cluster_size"), 1..=u32::MAX))
                .map_or(6, u64::from),
        }
    });
    weighted.or(zone_aware)
}

/// A duration greater than zero.
fn positive(d: &mut Diags, v: &Spanned<String>, path: &str) -> Duration {
    match duration(d, v, path) {
        Some(t) if t.is_zero() => {
            d.error(v.span(), path, "must be greater than 0");
            Duration::from_secs(1)
        }
        Some(t) => t,
        None => Duration::from_secs(1),
    }
}

/// A non-negative decimal with at most 3 fractional digits, in thousandths,
/// at most `max_milli`.
fn milli(d: &mut Diags, v: &Spanned<String>, path: &str, max_milli: u32) -> Option<u32> {
    let s = v.as_str();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    let parsed = (!whole.is_empty() && digits(whole) && digits(frac) && frac.len() <= 3)
        .then(|| {
            let w: u32 = whole.parse().ok()?;
            let f: u32 = format!("{frac:0<3}").parse().ok()?;
            w.checked_mul(1000)?.checked_add(f)
        })
        .flatten()
        .filter(|m| *m <= max_milli);
    if parsed.is_none() {
        let msg = format!(
            "expected a decimal number from 0 to {} with at most 3 decimals, found `{s}`",
            max_milli / 1000
        );
        d.error(v.span(), path, msg);
    }
    parsed
}
