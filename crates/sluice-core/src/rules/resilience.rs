//! A service's resilience settings: active health checks (with their
//! expected status ranges), outlier detection and circuit breakers. Defaults
//! here are Envoy's own where it has one (success rate's 5 hosts / 100
//! requests / 1900, failure percentage's 5 / 50), so a value the rules leave
//! out means what Envoy's documentation says it means.

use std::time::Duration;

use crate::rules::yaml::Spanned;

use super::check::int;
use super::check::positive;
use super::error::Diags;
use super::raw_policy::{RawCircuitBreakers, RawHealthCheck, RawOutlier};
use crate::model::{
    CircuitBreakers, FailurePercentage, HealthCheck, HealthCheckKind, OutlierDetection,
    RetryBudget, SuccessRate,
};

pub fn health_check(raw: &Spanned<RawHealthCheck>, path: &str, d: &mut Diags) -> HealthCheck {
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

pub fn outlier(raw: &Spanned<RawOutlier>, path: &str, d: &mut Diags) -> OutlierDetection {
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

pub fn circuit_breakers(
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
