//! `Listener` protos → [`SimListener`]: the address, the HTTP connection
//! manager's RDS name and stat prefix, and its HTTP filters in order (Lua
//! filters are decoded by [`super::filters`]; the router ends the chain).
//! Any other HTTP filter is rejected as `unsupported:`, so a listener whose
//! filters the simulator cannot run is never reported as routed correctly.
//! Also how the connection manager finds the client's address
//! (`use_remote_address`, `xff_num_trusted_hops`), which RBAC and Lua see.

use std::net::{IpAddr, SocketAddr};

use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};

use super::decode::{proto, socket_addr, DecodeError};
use super::filters::rbac::Peer;
use super::filters::HttpFilter;
use super::http::Request;

const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// A listener with an HTTP connection manager that gets routes over RDS.
#[derive(Clone, Debug, PartialEq)]
pub struct SimListener {
    pub name: String,
    pub addr: SocketAddr,
    /// The `RouteConfiguration` name the listener waits for.
    pub rds: String,
    /// The connection manager's `stat_prefix` (`http.<prefix>.*` stats).
    pub stat_prefix: String,
    /// HTTP filters in configured order, the router last.
    pub http_filters: Vec<HttpFilter>,
    /// `use_remote_address`: the peer is the client, `x-forwarded-for` is not read.
    pub use_remote_address: bool,
    /// `xff_num_trusted_hops`.
    pub xff_trusted_hops: u32,
}

impl SimListener {
    /// True when a request passes through a filter before the router.
    pub fn has_filters(&self) -> bool {
        self.http_filters
            .iter()
            .any(|f| !matches!(f, HttpFilter::Router))
    }

    /// The client's address as Envoy's connection manager determines it
    /// (`downstreamRemoteAddress`) and the peer's (127.0.0.1 when the
    /// request names none). Without `use_remote_address`, Envoy takes the
    /// `x-forwarded-for` entry `xff_num_trusted_hops` from the right when
    /// it is a valid IP, else the peer.
    pub fn peer(&self, req: &Request) -> Peer {
        let direct = req.source.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let remote = if self.use_remote_address {
            direct
        } else {
            req.header_value("x-forwarded-for")
                .and_then(|xff| {
                    let entries: Vec<&str> = xff.split(',').map(str::trim).collect();
                    let i = entries
                        .len()
                        .checked_sub(1 + self.xff_trusted_hops as usize)?;
                    entries[i].parse().ok()
                })
                .unwrap_or(direct)
        };
        Peer { remote, direct }
    }
}

pub(super) fn listener_of(l: &Listener) -> Result<SimListener, DecodeError> {
    let invalid = |why: &str| DecodeError::Invalid(format!("{}: {why}", l.name));
    let addr = socket_addr(l.address.as_ref()).map_err(|e| match e {
        DecodeError::Unsupported(_) if l.address.is_none() => invalid("address is necessary"),
        other => other,
    })?;
    let [chain] = l.filter_chains.as_slice() else {
        return Err(DecodeError::Unsupported(format!(
            "listener {:?}: {} filter chains (one HTTP connection manager expected)",
            l.name,
            l.filter_chains.len()
        )));
    };
    let hcm = chain
        .filters
        .iter()
        .find_map(|f| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(any)) if any.type_url == HCM_TYPE => Some(any),
            _ => None,
        })
        .ok_or_else(|| {
            DecodeError::Unsupported(format!("listener {:?}: no HTTP connection manager", l.name))
        })?;
    let hcm: HttpConnectionManager = proto(&hcm.value, "HttpConnectionManager")?;
    if !hcm.original_ip_detection_extensions.is_empty() {
        return Err(DecodeError::Unsupported(format!(
            "listener {:?}: original_ip_detection_extensions",
            l.name
        )));
    }
    let http_filters = hcm
        .http_filters
        .iter()
        .map(|f| super::filters::http_filter(&l.name, f))
        .collect::<Result<Vec<_>, _>>()?;
    let rds = match hcm.route_specifier {
        Some(RouteSpecifier::Rds(r)) => r.route_config_name,
        other => {
            return Err(DecodeError::Unsupported(format!(
                "listener {:?}: route specifier {:?} (RDS expected)",
                l.name,
                other.map(|_| "inline or scoped")
            )))
        }
    };
    Ok(SimListener {
        name: l.name.clone(),
        addr,
        rds,
        stat_prefix: hcm.stat_prefix,
        http_filters,
        use_remote_address: hcm.use_remote_address.is_some_and(|b| b.value),
        xff_trusted_hops: hcm.xff_num_trusted_hops,
    })
}
