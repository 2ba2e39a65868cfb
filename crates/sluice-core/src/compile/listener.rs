//! Listeners → Envoy `Listener`s with one HTTP connection manager each.
//!
//! Routes are not inlined: each listener's HTTP connection manager fetches
//! the route configuration named after the listener over RDS on the same ADS
//! stream, so a route change never drains a listener. The connection
//! manager also carries the listener's access log and the HTTP filters the
//! routes' policies need (CORS, fault) before the router. A listener with
//! `tls` gets a TLS transport socket whose certificate comes over SDS
//! (see `tls`).

use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::{CodecType, RouteSpecifier, UpgradeConfig},
    http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use envoy_types::util::pack_any;

use super::route::EffectiveFilters;
use super::route_policy::{CORS_FILTER, FAULT_FILTER};
use super::{access_log, ads_config_source, socket_address, CompileError};
use crate::model;

pub(super) const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
pub(super) const ROUTER_FILTER: &str = "envoy.filters.http.router";

pub(super) fn listener(
    l: &model::Listener,
    effective: &EffectiveFilters,
) -> Result<Listener, CompileError> {
    let routes = || l.virtual_hosts.iter().flat_map(|vh| &vh.routes);
    let mut http_filters = Vec::new();
    // Filters run in this order, each listed only when a route configures
    // it (per route, through `typed_per_filter_config`, so changing a key, a
    // limit or a fault never touches the listener): CORS answers preflights
    // before auth could refuse them; RBAC turns away disallowed client
    // addresses before any Lua runs; the Lua filter (validate, auth,
    // transform) sets the identity the rate limit is keyed on; a fault is
    // injected only into requests that were let in.
    if routes().any(|r| r.policy.cors.is_some()) {
        http_filters.push(http_filter(CORS_FILTER, pack_any(Cors::default())));
    }
    if effective
        .all()
        .any(|f| f.auth.as_ref().is_some_and(|a| a.ip.is_some()))
    {
        http_filters.push(super::rbac::http_filter());
    }
    if effective.all().any(model::Filters::uses_lua) {
        http_filters.push(super::lua::http_filter());
    }
    if effective.all().any(|f| f.lua.is_some()) {
        http_filters.push(super::lua::user_http_filter());
    }
    if effective.all().any(|f| f.rate_limit.is_some()) {
        http_filters.push(super::ratelimit::http_filter());
    }
    if routes().any(|r| r.policy.fault.is_some()) {
        http_filters.push(http_filter(FAULT_FILTER, pack_any(HttpFault::default())));
    }
    http_filters.push(http_filter(ROUTER_FILTER, pack_any(Router::default())));
    // Listed but disabled: routes with `websocket: true` enable it.
    let upgrade_configs = if routes().any(|r| r.policy.websocket) {
        vec![UpgradeConfig {
            upgrade_type: "websocket".to_owned(),
            enabled: Some(BoolValue { value: false }),
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: l.name.clone(),
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: l.name.clone(),
        })),
        http_filters,
        upgrade_configs,
        access_log: access_log::access_logs(&l.access_log),
        ..Default::default()
    };
    Ok(Listener {
        name: l.name.clone(),
        address: Some(socket_address(l.address, l.port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: HCM_FILTER.to_owned(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            transport_socket: l
                .tls
                .as_ref()
                .map(|t| super::tls::transport_socket(&l.name, t)),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn http_filter(name: &str, config: Any) -> HttpFilter {
    HttpFilter {
        name: name.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}
