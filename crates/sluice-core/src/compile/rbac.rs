//! `auth.ip` → Envoy's native RBAC filter (`envoy.filters.http.rbac`).
//!
//! Client address rules are what RBAC is for: it matches IPv4 and IPv6
//! CIDRs natively and rejects before any Lua runs. The listener gets the
//! filter with no rules (it enforces nothing by itself); each route with
//! IP rules carries an `RBACPerRoute` with one ALLOW policy whose principal
//! is `(any allow CIDR, or anyone when none) and not (any deny CIDR)`,
//! matched on `direct_remote_ip`: the connection's peer. Not `remote_ip`,
//! which is what the connection manager makes of `x-forwarded-for` (with
//! Envoy's default `use_remote_address: false`, the header's last entry):
//! a client could forge it past a deny or into an allow, which real Envoy
//! 1.40 shows (`tests/sim_policy_envoy.rs`). A refused request gets 403.

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3::{
    permission, principal, rbac::Action, Permission, Policy, Principal, Rbac as RbacRules,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::{Rbac, RbacPerRoute};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use prost::Message;

use crate::model::IpRule;

pub(super) const FILTER_NAME: &str = "envoy.filters.http.rbac";
const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";

pub(super) fn http_filter() -> HttpFilter {
    HttpFilter {
        name: FILTER_NAME.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: RBAC_TYPE.to_string(),
            value: Rbac::default().encode_to_vec(),
        })),
        ..Default::default()
    }
}

pub(super) fn per_route(ip: &IpRule) -> Any {
    let any_of = |cidrs: &[String]| Principal {
        identifier: Some(principal::Identifier::OrIds(principal::Set {
            ids: cidrs
                .iter()
                .map(|c| Principal {
                    identifier: Some(principal::Identifier::DirectRemoteIp(cidr(c))),
                })
                .collect(),
        })),
    };
    let mut all = Vec::new();
    if !ip.allow.is_empty() {
        all.push(any_of(&ip.allow));
    }
    if !ip.deny.is_empty() {
        all.push(Principal {
            identifier: Some(principal::Identifier::NotId(Box::new(any_of(&ip.deny)))),
        });
    }
    if all.is_empty() {
        all.push(Principal {
            identifier: Some(principal::Identifier::Any(true)),
        });
    }
    let policy = Policy {
        permissions: vec![Permission {
            rule: Some(permission::Rule::Any(true)),
        }],
        principals: vec![Principal {
            identifier: Some(principal::Identifier::AndIds(principal::Set { ids: all })),
        }],
        ..Default::default()
    };
    // One policy: the map stays single-entry, so prost's order cannot vary.
    let rules = RbacRules {
        action: Action::Allow as i32,
        policies: [("sluice-ip".to_string(), policy)].into_iter().collect(),
        ..Default::default()
    };
    let per_route = RbacPerRoute {
        rbac: Some(Rbac {
            rules: Some(rules),
            ..Default::default()
        }),
    };
    Any {
        type_url: PER_ROUTE_TYPE.to_string(),
        value: per_route.encode_to_vec(),
    }
}

/// `10.0.0.0/8`, `::1`, `2001:db8::/32` → CidrRange (a bare address is a
/// host route). The rules loader has checked the syntax.
fn cidr(c: &str) -> CidrRange {
    let (addr, len) = match c.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().ok()),
        None => (c, None),
    };
    let host = if addr.contains(':') { 128 } else { 32 };
    CidrRange {
        address_prefix: addr.to_string(),
        prefix_len: Some(UInt32Value {
            value: len.unwrap_or(host),
        }),
    }
}
