//! `envoy.filters.http.rbac` as Envoy 1.40 runs it, for address-based
//! policies.
//!
//! The rules in force are the route's most specific `RBACPerRoute` (whose
//! unset `rbac` turns the filter off for the route), else the listener's;
//! no rules allow everything. With `ALLOW` a request passes when some
//! policy matches, with `DENY` when none does; a policy matches when one of
//! its permissions and one of its principals match. A refused request gets
//! 403 `RBAC: access denied`. Stats: `http.<stat_prefix>.rbac.{allowed,denied}`.
//!
//! Modelled: permission `any` (and `and`/`or`/`not` of it); principals
//! `any`, `remote_ip` (the client as the connection manager sees it: the
//! last trusted `x-forwarded-for` entry unless `use_remote_address`),
//! `direct_remote_ip` / `source_ip` (the peer), and `and`/`or`/`not` of them.
//! Anything else — other permissions and principals, conditions, shadow
//! rules, matchers, `LOG` — is `unsupported:`.

use std::net::IpAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3::{
    permission, principal, rbac::Action, Permission, Principal, Rbac as PbRules,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::{Rbac, RbacPerRoute};

use crate::decode::{proto, DecodeError};

pub const TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
pub const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";

/// An RBAC engine: an action and its policies (principal trees; every
/// supported permission matches any request).
#[derive(Debug, PartialEq)]
pub struct Rules {
    allow: bool,
    /// Per policy: its principals (any may match).
    policies: Vec<Vec<Who>>,
}

#[derive(Debug, PartialEq)]
enum Who {
    Any,
    And(Vec<Who>),
    Or(Vec<Who>),
    Not(Box<Who>),
    Remote(Cidr),
    Direct(Cidr),
}

#[derive(Debug, PartialEq)]
struct Cidr {
    net: IpAddr,
    len: u32,
}

/// The two addresses a principal can look at.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// `downstreamRemoteAddress`: after `x-forwarded-for` handling.
    pub remote: IpAddr,
    /// The connection's peer.
    pub direct: IpAddr,
}

impl Rules {
    pub fn allows(&self, peer: Peer) -> bool {
        let matched = self
            .policies
            .iter()
            .any(|who| who.iter().any(|w| w.matches(peer)));
        matched == self.allow
    }
}

impl Who {
    fn matches(&self, p: Peer) -> bool {
        match self {
            Who::Any => true,
            Who::And(all) => all.iter().all(|w| w.matches(p)),
            Who::Or(any) => any.iter().any(|w| w.matches(p)),
            Who::Not(w) => !w.matches(p),
            Who::Remote(c) => c.contains(p.remote),
            Who::Direct(c) => c.contains(p.direct),
        }
    }
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, bits) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(i)) << 96,
                32,
            ),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let len = self.len.min(bits);
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        a & mask == b & mask
    }
}

/// The listener-level filter's rules.
pub(super) fn filter(name: &str, bytes: &[u8]) -> Result<Option<Arc<Rules>>, DecodeError> {
    let r: Rbac = proto(bytes, "RBAC")?;
    rules(name, &r)
}

/// An `RBACPerRoute`: `None` when it turns RBAC off for the route.
pub(super) fn per_route(name: &str, bytes: &[u8]) -> Result<Option<Arc<Rules>>, DecodeError> {
    let r: RbacPerRoute = proto(bytes, "RBACPerRoute")?;
    match &r.rbac {
        Some(r) => rules(name, r),
        None => Ok(None),
    }
}

fn rules(name: &str, r: &Rbac) -> Result<Option<Arc<Rules>>, DecodeError> {
    let unsupported = |what: &str| DecodeError::Unsupported(format!("RBAC {name:?}: {what}"));
    if r.matcher.is_some() || r.shadow_rules.is_some() || r.shadow_matcher.is_some() {
        return Err(unsupported("matcher or shadow rules"));
    }
    if !r.rules_stat_prefix.is_empty() || r.track_per_rule_stats {
        return Err(unsupported("rules_stat_prefix or per-rule stats"));
    }
    let Some(rules) = &r.rules else {
        return Ok(None);
    };
    engine(rules, &unsupported).map(|e| Some(Arc::new(e)))
}

fn engine(r: &PbRules, unsupported: &dyn Fn(&str) -> DecodeError) -> Result<Rules, DecodeError> {
    let allow = match Action::try_from(r.action) {
        Ok(Action::Allow) => true,
        Ok(Action::Deny) => false,
        _ => return Err(unsupported("action other than ALLOW or DENY")),
    };
    if r.audit_logging_options.is_some() {
        return Err(unsupported("audit logging"));
    }
    let mut policies = Vec::new();
    // The policies' order cannot change a decision (any match counts).
    for p in r.policies.values() {
        if p.condition.is_some() || p.checked_condition.is_some() || p.cel_config.is_some() {
            return Err(unsupported("policy condition"));
        }
        for perm in &p.permissions {
            if !permission_is_any(perm, unsupported)? {
                return Err(unsupported("permission other than any"));
            }
        }
        // No permission matches nothing: such a policy never matches.
        if p.permissions.is_empty() {
            continue;
        }
        let who = p
            .principals
            .iter()
            .map(|w| principal_of(w, unsupported))
            .collect::<Result<_, _>>()?;
        policies.push(who);
    }
    Ok(Rules { allow, policies })
}

/// Whether a permission matches every request (`any`, and and/or of it);
/// `not any` (matches nothing) is reported false.
fn permission_is_any(
    p: &Permission,
    unsupported: &dyn Fn(&str) -> DecodeError,
) -> Result<bool, DecodeError> {
    Ok(match &p.rule {
        Some(permission::Rule::Any(true)) => true,
        Some(permission::Rule::AndRules(s)) => {
            let all = s
                .rules
                .iter()
                .map(|r| permission_is_any(r, unsupported))
                .collect::<Result<Vec<_>, _>>()?;
            all.into_iter().all(|b| b)
        }
        Some(permission::Rule::OrRules(s)) => {
            let any = s
                .rules
                .iter()
                .map(|r| permission_is_any(r, unsupported))
                .collect::<Result<Vec<_>, _>>()?;
            any.into_iter().any(|b| b)
        }
        _ => return Err(unsupported("permission other than any")),
    })
}

// `source_ip` is deprecated; Envoy reads it as `direct_remote_ip`.
#[allow(deprecated)]
fn principal_of(
    p: &Principal,
    unsupported: &dyn Fn(&str) -> DecodeError,
) -> Result<Who, DecodeError> {
    let set = |ids: &[Principal]| {
        ids.iter()
            .map(|w| principal_of(w, unsupported))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match &p.identifier {
        Some(principal::Identifier::Any(true)) => Who::Any,
        Some(principal::Identifier::AndIds(s)) => Who::And(set(&s.ids)?),
        Some(principal::Identifier::OrIds(s)) => Who::Or(set(&s.ids)?),
        Some(principal::Identifier::NotId(w)) => Who::Not(Box::new(principal_of(w, unsupported)?)),
        Some(principal::Identifier::RemoteIp(c)) => Who::Remote(cidr(c)?),
        Some(principal::Identifier::DirectRemoteIp(c) | principal::Identifier::SourceIp(c)) => {
            Who::Direct(cidr(c)?)
        }
        _ => return Err(unsupported("principal other than any, and/or/not or an IP")),
    })
}

fn cidr(c: &CidrRange) -> Result<Cidr, DecodeError> {
    let net: IpAddr = c
        .address_prefix
        .parse()
        .map_err(|_| DecodeError::Invalid(format!("malformed IP address: {}", c.address_prefix)))?;
    Ok(Cidr {
        net,
        len: c.prefix_len.as_ref().map_or(0, |l| l.value),
    })
}
