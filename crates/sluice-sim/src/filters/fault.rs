//! `envoy.filters.http.fault` as Envoy 1.40 runs it, for fixed delays and
//! HTTP aborts.
//!
//! The route's most specific per-filter `HTTPFault` replaces the
//! listener's. A delay is drawn first (its percentage); a delayed request
//! resumes after the delay, when the abort is drawn; an undelayed one draws
//! the abort at once. An abort answers `http_status` with the body
//! `fault filter abort` (or `response_body`). Percentages are fractional
//! (`% denominator < numerator`, Envoy's `featureEnabled`); the runtime
//! keys have no values in the simulator, so the configured ones apply.
//! Stats: `http.<stat_prefix>.fault.{delays_injected,aborts_injected}`.
//!
//! Not modelled (`unsupported:`): header-controlled faults, gRPC aborts,
//! `headers`/`downstream_nodes`/`upstream_cluster` targeting,
//! `max_active_faults` and response rate limits.

use std::time::Duration;

use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{fault_abort, HttpFault};

use super::percent::Percent;
use crate::decode::{pb_duration, proto, DecodeError};

pub const TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// One decoded `HTTPFault`.
#[derive(Debug, PartialEq)]
pub struct Fault {
    pub delay: Option<(Percent, Duration)>,
    pub abort: Option<Abort>,
}

#[derive(Debug, PartialEq)]
pub struct Abort {
    pub percent: Percent,
    pub status: u16,
    pub body: String,
}

impl Fault {
    /// The delay to inject into this request, if drawn.
    pub fn delay(&self, rng: &mut rand::rngs::Xoshiro256PlusPlus) -> Option<Duration> {
        let (p, d) = self.delay.as_ref()?;
        (!d.is_zero() && p.hit(rng)).then_some(*d)
    }

    /// The abort to answer this request with, if drawn.
    pub fn abort(&self, rng: &mut rand::rngs::Xoshiro256PlusPlus) -> Option<&Abort> {
        self.abort.as_ref().filter(|a| a.percent.hit(rng))
    }
}

pub(super) fn decode(name: &str, bytes: &[u8]) -> Result<Fault, DecodeError> {
    let f: HttpFault = proto(bytes, "HTTPFault")?;
    let unsupported = |what: &str| DecodeError::Unsupported(format!("{name:?}: {what}"));
    if !f.headers.is_empty() || !f.downstream_nodes.is_empty() || !f.upstream_cluster.is_empty() {
        return Err(unsupported(
            "fault targeting by headers, downstream_nodes or upstream_cluster",
        ));
    }
    if f.max_active_faults.is_some() || f.response_rate_limit.is_some() {
        return Err(unsupported("max_active_faults or response_rate_limit"));
    }
    // An unset percentage is the proto's zero value: 0 %.
    let percent = |p: Option<&envoy_types::pb::envoy::r#type::v3::FractionalPercent>| {
        Percent::of(&p.cloned().unwrap_or_default())
    };
    let delay = match &f.delay {
        None => None,
        Some(d) => match &d.fault_delay_secifier {
            Some(FaultDelaySecifier::FixedDelay(t)) => {
                Some((percent(d.percentage.as_ref()), pb_duration(t)))
            }
            _ => return Err(unsupported("delay that is not fixed_delay")),
        },
    };
    let abort = match &f.abort {
        None => None,
        Some(a) => match &a.error_type {
            Some(fault_abort::ErrorType::HttpStatus(s)) => {
                if !(200..600).contains(s) {
                    return Err(DecodeError::Invalid(format!(
                        "{name:?}: abort http_status {s} is not in [200, 600)"
                    )));
                }
                Some(Abort {
                    percent: percent(a.percentage.as_ref()),
                    status: *s as u16,
                    body: if a.response_body.is_empty() {
                        "fault filter abort".into()
                    } else {
                        a.response_body.clone()
                    },
                })
            }
            _ => return Err(unsupported("abort that is not http_status")),
        },
    };
    Ok(Fault { delay, abort })
}
