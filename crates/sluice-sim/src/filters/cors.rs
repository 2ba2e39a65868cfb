//! `envoy.filters.http.cors` as Envoy 1.40 runs it, with `CorsPolicy` per
//! route (per-filter configs; the deprecated route `cors` field is not
//! read by the simulator).
//!
//! The policies of the route, its virtual host and the route configuration
//! are consulted most specific first, each field from the first policy
//! that sets it; `filter_enabled` comes from the first policy (default:
//! on). Only routes that forward (not direct responses or redirects) are
//! handled. A request with a non-empty `origin` is a CORS request; the
//! origin is allowed when a matcher matches it (or matches `*`). A
//! preflight (`OPTIONS` with `access-control-request-method`) is answered
//! by Envoy with 200 and the `access-control-allow-*` / `max-age` headers,
//! unless the origin is not allowed and `forward_not_matching_preflights`
//! (default true) sends it upstream. On the way back every answer to a CORS
//! request with an allowed origin gets `access-control-allow-origin`
//! (the origin itself), `allow-credentials` and `expose-headers`.
//! Stats: `http.<stat_prefix>.cors.{origin_valid,origin_invalid}`.

use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;

use super::percent::{runtime_percent, Percent};
use crate::decode::{proto, DecodeError};
use crate::http::{value_match, Request, ValueMatch};

pub const TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";
pub const POLICY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";

/// One decoded `CorsPolicy`.
#[derive(Debug)]
pub struct Policy {
    allow_origins: Vec<ValueMatch>,
    allow_methods: String,
    allow_headers: String,
    expose_headers: String,
    max_age: String,
    allow_credentials: Option<bool>,
    allow_private_network_access: Option<bool>,
    forward_not_matching_preflights: Option<bool>,
    enabled: Percent,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

/// What the encoder half needs from the decoder half of one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latch {
    /// The allowed origin (`None`: not allowed, headers left alone).
    origin: Option<String>,
    allow_credentials: bool,
    expose_headers: String,
}

/// The CORS filter's decision on a request.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Not a CORS request (or no policy, or disabled).
    Pass,
    /// A CORS request that goes on; `Latch` edits its answer.
    Cors(Latch, &'static str),
    /// A preflight Envoy answers itself with 200 and these headers.
    Preflight(Latch, &'static str, Vec<(String, String)>),
}

/// The first value some policy sets.
fn first<'a, T>(policies: &[&'a Policy], get: impl Fn(&'a Policy) -> Option<T>) -> Option<T> {
    policies.iter().find_map(|p| get(p))
}

fn text<'a>(policies: &[&'a Policy], get: impl Fn(&'a Policy) -> &'a str) -> &'a str {
    first(policies, |p| Some(get(p)).filter(|s| !s.is_empty())).unwrap_or("")
}

/// Runs the decoder half over `policies` (most specific first).
pub fn decode(
    policies: &[&Policy],
    req: &Request,
    rng: &mut rand::rngs::Xoshiro256PlusPlus,
) -> Decision {
    let Some(top) = policies.first() else {
        return Decision::Pass;
    };
    if !top.enabled.hit(rng) {
        return Decision::Pass;
    }
    let Some(origin) = req.header_value("origin").filter(|o| !o.is_empty()) else {
        return Decision::Pass;
    };
    let origins = first(policies, |p| {
        Some(&p.allow_origins).filter(|o| !o.is_empty())
    });
    let allowed = origins.is_some_and(|ms| ms.iter().any(|m| m.matches("*") || m.matches(&origin)));
    let stat = if allowed {
        "cors.origin_valid"
    } else {
        "cors.origin_invalid"
    };
    let credentials = first(policies, |p| p.allow_credentials).unwrap_or(false);
    let latch = Latch {
        origin: allowed.then(|| origin.clone()),
        allow_credentials: credentials,
        expose_headers: text(policies, |p| &p.expose_headers).to_string(),
    };
    let request_method = req
        .header_value("access-control-request-method")
        .unwrap_or_default();
    if req.method() != "OPTIONS" || request_method.is_empty() {
        return Decision::Cors(latch, stat);
    }
    let forward = first(policies, |p| p.forward_not_matching_preflights).unwrap_or(true);
    if !allowed && forward {
        return Decision::Cors(latch, stat);
    }
    let mut h = Vec::new();
    if allowed {
        h.push(("access-control-allow-origin".to_string(), origin));
    }
    if credentials {
        h.push(("access-control-allow-credentials".into(), "true".into()));
    }
    let echo = |value: &str, request_header: &str| {
        if value == "*" {
            req.header_value(request_header).unwrap_or_default()
        } else {
            value.to_string()
        }
    };
    let methods = text(policies, |p| &p.allow_methods);
    if !methods.is_empty() {
        h.push((
            "access-control-allow-methods".into(),
            echo(methods, "access-control-request-method"),
        ));
    }
    let headers = text(policies, |p| &p.allow_headers);
    if !headers.is_empty() {
        h.push((
            "access-control-allow-headers".into(),
            echo(headers, "access-control-request-headers"),
        ));
    }
    let max_age = text(policies, |p| &p.max_age);
    if !max_age.is_empty() {
        h.push(("access-control-max-age".into(), max_age.to_string()));
    }
    if first(policies, |p| p.allow_private_network_access).unwrap_or(false)
        && req
            .header_value("access-control-request-private-network")
            .is_some_and(|v| v == "true")
    {
        h.push(("access-control-allow-private-network".into(), "true".into()));
    }
    Decision::Preflight(latch, stat, h)
}

/// The encoder half: the CORS headers on an answer to a CORS request.
pub fn encode(latch: &Latch, headers: &mut Vec<(String, String)>) {
    let Some(origin) = &latch.origin else {
        return;
    };
    let mut set = |k: &str, v: &str| {
        headers.retain(|(name, _)| name != k);
        headers.push((k.to_string(), v.to_string()));
    };
    set("access-control-allow-origin", origin);
    if latch.allow_credentials {
        set("access-control-allow-credentials", "true");
    }
    if !latch.expose_headers.is_empty() {
        set("access-control-expose-headers", &latch.expose_headers);
    }
}

pub(super) fn policy(name: &str, bytes: &[u8]) -> Result<Policy, DecodeError> {
    let p: CorsPolicy = proto(bytes, "CorsPolicy")?;
    if p.shadow_enabled.is_some() {
        return Err(DecodeError::Unsupported(format!(
            "CorsPolicy for {name:?}: shadow_enabled"
        )));
    }
    Ok(Policy {
        allow_origins: p
            .allow_origin_string_match
            .iter()
            .map(value_match)
            .collect::<Result<_, _>>()?,
        allow_methods: p.allow_methods,
        allow_headers: p.allow_headers,
        expose_headers: p.expose_headers,
        max_age: p.max_age,
        allow_credentials: p.allow_credentials.map(|b| b.value),
        allow_private_network_access: p.allow_private_network_access.map(|b| b.value),
        forward_not_matching_preflights: p.forward_not_matching_preflights.map(|b| b.value),
        enabled: runtime_percent(p.filter_enabled.as_ref(), Some(Percent::ALL))
            .unwrap_or(Percent::ALL),
    })
}
