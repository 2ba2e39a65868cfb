//! A service's traffic policy: panic threshold, balancing options, upstream
//! protocol and TLS here; health checks, outlier detection and circuit
//! breakers in `resilience`. Conflicts with the service's `lb_policy` are reported here (a
//! `least_request` block on a round-robin service, slow start on ring hash).

use crate::rules::yaml::Spanned;

use super::check::{int, positive};
use super::error::Diags;
use super::raw::{RawService, RawServiceMore};
use super::resilience::{circuit_breakers, health_check, outlier};
use crate::model::{
    HealthCheck, HealthCheckKind, LbPolicy, LeastRequest, Locality, LocalityLb, LocalityWeight,
    ServicePolicy, SlowStart, UpstreamProtocol, UpstreamTls,
};

const PROTOCOLS: &[(&str, UpstreamProtocol)] = &[
    ("http1", UpstreamProtocol::Http1),
    ("http2", UpstreamProtocol::Http2),
    ("grpc", UpstreamProtocol::Grpc),
];

pub fn service_policy(raw: &RawService, lb: LbPolicy, path: &str, d: &mut Diags) -> ServicePolicy {
    let raw = raw.more();
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
        health_check: health_check.map(Box::new),
        panic_threshold,
        outlier_detection: outlier_detection.map(Box::new),
        circuit_breakers: circuit_breakers.map(Box::new),
        least_request: least_request.map(Box::new),
        slow_start: slow_start.map(Box::new),
        locality_lb: locality_lb.map(Box::new),
        protocol,
        tls: tls.map(Box::new),
    }
}

fn locality_lb(
    raw: &RawServiceMore,
    lb: LbPolicy,
    path: &str,
    d: &mut Diags,
) -> Option<LocalityLb> {
    let weighted = raw.locality_weights.as_ref().map(|list| {
        let p = format!("{path}.locality_weights");
        if list.is_empty() {
            d.error(list.span(), &p, "locality_weights must not be empty");
        }
        if lb.is_consistent_hash() {
            let msg = "locality_weights do not work with ring_hash or maglev balancing";
            d.error(list.span(), &p, msg);
        }
        let mut seen = super::check::Seen::default();
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
