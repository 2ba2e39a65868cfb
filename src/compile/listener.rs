//! Listeners → Envoy `Listener`s with one HTTP connection manager each.
//!
//! Routes are not inlined: each listener's HTTP connection manager fetches
//! the route configuration named after the listener over RDS on the same ADS
//! stream, so a route change never drains a listener.

use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::{CodecType, RouteSpecifier},
    http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::util::pack_any;

use super::{ads_config_source, socket_address, CompileError};
use crate::model;

pub(super) const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
pub(super) const ROUTER_FILTER: &str = "envoy.filters.http.router";

pub(super) fn listener(l: &model::Listener) -> Result<Listener, CompileError> {
    let mut http_filters = Vec::new();
    // Filters only where some route uses them; their per-route settings
    // travel in RDS, so changing a key or a limit never touches the listener.
    let effective: Vec<model::Filters> = l
        .virtual_hosts
        .iter()
        .flat_map(|vh| vh.routes.iter().map(|r| r.filters.over(&vh.filters)))
        .collect();
    if effective.iter().any(model::Filters::uses_lua) {
        http_filters.push(super::lua::http_filter()?);
    }
    // After Lua, so it sees the authenticated identity headers.
    if effective.iter().any(|f| f.rate_limit.is_some()) {
        http_filters.push(super::ratelimit::http_filter());
    }
    http_filters.push(HttpFilter {
        name: ROUTER_FILTER.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
            Router::default(),
        ))),
        ..Default::default()
    });
    let hcm = HttpConnectionManager {
        stat_prefix: l.name.clone(),
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: l.name.clone(),
        })),
        http_filters,
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
            ..Default::default()
        }],
        ..Default::default()
    })
}
