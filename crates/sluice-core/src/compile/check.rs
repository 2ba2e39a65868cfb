//! The last check before a group's resources are encoded (DESIGN.md
//! invariant 1): no duplicate names per type, no domain in two virtual hosts
//! of one route configuration, every RDS name a listener uses exists, every
//! cluster a route uses is in the group's CDS, every EDS cluster has a
//! `ClusterLoadAssignment`, and every SDS secret a listener's TLS context
//! names is in the group's secrets.
//!
//! It reads the produced protos, not the model, so it catches a compiler bug
//! as well as a config the validator should have rejected. It must run before
//! [`Snapshot::new`](crate::xds::Snapshot::new), which keys resources by name
//! and would silently drop duplicates.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::cluster;
use envoy_types::pb::envoy::config::core::v3::transport_socket;
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use prost::{Message, Name};

use super::route::BuiltRoutes;
use super::{CompileError, GroupResources};
use crate::xds::TypeUrl;

pub(super) fn invariants(group: &str, res: &GroupResources) -> Result<(), CompileError> {
    let cds = unique_names(
        group,
        TypeUrl::Cluster,
        res.clusters.iter().map(|c| &c.name),
    )?;
    let eds = unique_names(
        group,
        TypeUrl::Endpoint,
        res.endpoints.iter().map(|r| &r.name),
    )?;
    unique_names(
        group,
        TypeUrl::Listener,
        res.listeners.iter().map(|l| &l.name),
    )?;
    let rds = unique_names(group, TypeUrl::Route, res.routes.iter().map(|r| &r.name))?;
    let sds = unique_names(group, TypeUrl::Secret, res.secrets.iter().map(|s| &s.name))?;

    for l in &res.listeners {
        for name in rds_names(group, l)? {
            if !rds.contains(name.as_str()) {
                return Err(CompileError::MissingRouteConfig {
                    group: group.to_owned(),
                    listener: l.name.clone(),
                    route_config: name,
                });
            }
        }
    }
    for l in &res.listeners {
        for name in secret_names(group, l)? {
            if !sds.contains(name.as_str()) {
                return Err(CompileError::MissingSecret {
                    group: group.to_owned(),
                    listener: l.name.clone(),
                    secret: name,
                });
            }
        }
    }
    for rc in &res.routes {
        route_configuration(group, rc, |name| cds.contains(name))?;
    }
    let eds_type = Some(cluster::ClusterDiscoveryType::Type(
        cluster::DiscoveryType::Eds as i32,
    ));
    for c in res
        .clusters
        .iter()
        .filter(|c| c.cluster_discovery_type == eds_type)
    {
        let eds_name = match c.eds_cluster_config.as_ref() {
            Some(cfg) if !cfg.service_name.is_empty() => &cfg.service_name,
            _ => &c.name,
        };
        if !eds.contains(eds_name.as_str()) {
            return Err(CompileError::MissingEndpoints {
                group: group.to_owned(),
                cluster: c.name.clone(),
            });
        }
    }
    Ok(())
}

/// The checks on one route configuration: no domain in two of its virtual
/// hosts, and every cluster its routes use is one the group has
/// (`has_cluster`). `compile::incremental` runs them on a route
/// configuration it rebuilds alone.
pub(super) fn route_configuration(
    group: &str,
    rc: &BuiltRoutes,
    has_cluster: impl Fn(&str) -> bool,
) -> Result<(), CompileError> {
    unique_domains(group, rc)?;
    for name in rc.clusters.iter().flat_map(|c| c.iter()) {
        if !has_cluster(name) {
            return Err(CompileError::MissingCluster {
                group: group.to_owned(),
                route_config: rc.name.clone(),
                cluster: name.to_owned(),
            });
        }
    }
    Ok(())
}

fn unique_names<'a>(
    group: &str,
    kind: TypeUrl,
    names: impl Iterator<Item = &'a String>,
) -> Result<BTreeSet<&'a str>, CompileError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            return Err(CompileError::DuplicateName {
                group: group.to_owned(),
                kind,
                name: name.clone(),
            });
        }
    }
    Ok(seen)
}

/// Envoy rejects a route configuration that lists a domain in two virtual
/// hosts (it could not tell which one a request belongs to).
fn unique_domains(group: &str, rc: &BuiltRoutes) -> Result<(), CompileError> {
    let mut seen = BTreeSet::new();
    for domain in &rc.domains {
        if !seen.insert(domain.as_str()) {
            return Err(CompileError::DuplicateDomain {
                group: group.to_owned(),
                route_config: rc.name.clone(),
                domain: domain.clone(),
            });
        }
    }
    Ok(())
}

/// The RDS names a listener's HTTP connection managers subscribe to
/// (those of its filter chains, and a gRPC client's `api_listener`).
fn rds_names(group: &str, l: &Listener) -> Result<Vec<String>, CompileError> {
    let mut names = Vec::new();
    let filters = l
        .filter_chains
        .iter()
        .flat_map(|fc| &fc.filters)
        .filter_map(|f| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(any)) => Some(any),
            _ => None,
        });
    let api = l
        .api_listener
        .as_ref()
        .and_then(|a| a.api_listener.as_ref());
    for any in filters.chain(api) {
        if any.type_url != HttpConnectionManager::type_url() {
            continue;
        }
        let hcm = HttpConnectionManager::decode(any.value.as_slice()).map_err(|e| {
            CompileError::BadFilter {
                group: group.to_owned(),
                listener: l.name.clone(),
                reason: e.to_string(),
            }
        })?;
        if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
            names.push(rds.route_config_name);
        }
    }
    Ok(names)
}

/// The SDS secret names a listener's TLS transport sockets fetch.
fn secret_names(group: &str, l: &Listener) -> Result<Vec<String>, CompileError> {
    let mut names = Vec::new();
    let sockets = l
        .filter_chains
        .iter()
        .filter_map(|fc| fc.transport_socket.as_ref());
    for socket in sockets {
        let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
            continue;
        };
        if any.type_url != DownstreamTlsContext::type_url() {
            continue;
        }
        let ctx = DownstreamTlsContext::decode(any.value.as_slice()).map_err(|e| {
            CompileError::BadFilter {
                group: group.to_owned(),
                listener: l.name.clone(),
                reason: e.to_string(),
            }
        })?;
        let common = ctx.common_tls_context.unwrap_or_default();
        names.extend(
            common
                .tls_certificate_sds_secret_configs
                .into_iter()
                .map(|c| c.name),
        );
    }
    Ok(names)
}
