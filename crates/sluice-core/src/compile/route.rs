//! Listeners' virtual hosts → one `RouteConfiguration` per listener.
//!
//! The route configuration is named after its listener (the listener's RDS
//! name). Virtual hosts and routes keep file order, because Envoy takes the
//! first route that matches. Regexes use Envoy's default engine (RE2): the
//! `RegexMatcher` carries only the pattern.

use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, route, route_action, route_match,
    weighted_cluster::ClusterWeight, HeaderMatcher, QueryParameterMatcher, RetryPolicy, Route,
    RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::UInt32Value;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{canonical, pb_duration, regex, route_policy, CompileError};
use crate::lua_script::FILTER_NAME;
use crate::model;

/// Each route's filters with its virtual host's filled in
/// ([`model::Filters::over`]), by virtual host then route in file order.
/// Computed once per listener: the listener's HTTP filter list and the
/// routes' per-filter configs both read it.
pub(super) struct EffectiveFilters(Vec<Vec<model::Filters>>);

impl EffectiveFilters {
    pub(super) fn of(l: &model::Listener) -> EffectiveFilters {
        EffectiveFilters(
            l.virtual_hosts
                .iter()
                .map(|vh| {
                    vh.routes
                        .iter()
                        .map(|r| r.filters.over(&vh.filters))
                        .collect()
                })
                .collect(),
        )
    }

    /// Every route's, across the listener's virtual hosts.
    pub(super) fn all(&self) -> impl Iterator<Item = &model::Filters> {
        self.0.iter().flatten()
    }
}

/// A listener's route configuration as compiled: its encoded body and
/// what the invariant checks read (`check::route_configuration`).
#[derive(Debug)]
pub(super) struct BuiltRoutes {
    pub name: String,
    /// Every virtual host's domains, in order.
    pub domains: Vec<String>,
    /// Per route, the clusters it routes, splits or mirrors to.
    pub clusters: Vec<Arc<[String]>>,
    pub body: Vec<u8>,
}

impl BuiltRoutes {
    /// A route configuration built whole (gRPC clients' targets) with its
    /// encoded `body`.
    pub(super) fn of(rc: &RouteConfiguration, body: Vec<u8>) -> BuiltRoutes {
        let routes = rc.virtual_hosts.iter().flat_map(|vh| &vh.routes);
        BuiltRoutes {
            name: rc.name.clone(),
            domains: rc
                .virtual_hosts
                .iter()
                .flat_map(|vh| vh.domains.iter().cloned())
                .collect(),
            clusters: routes.map(|r| clusters_of(r).into()).collect(),
            body,
        }
    }
}

/// The clusters an Envoy route sends traffic to: its cluster or weighted
/// clusters, and its mirrors (mirrored traffic needs its cluster as much
/// as routed traffic).
fn clusters_of(r: &Route) -> Vec<String> {
    let Some(route::Action::Route(action)) = &r.action else {
        return Vec::new();
    };
    let mut names: Vec<String> = match &action.cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(name)) => vec![name.clone()],
        Some(route_action::ClusterSpecifier::WeightedClusters(wc)) => {
            wc.clusters.iter().map(|c| c.name.clone()).collect()
        }
        _ => Vec::new(),
    };
    names.extend(
        action
            .request_mirror_policies
            .iter()
            .map(|m| m.cluster.clone()),
    );
    names
}

/// One route as compiled, with what it was compiled from.
#[derive(Debug)]
struct CompiledRoute {
    route: model::Route,
    filters: model::Filters,
    clear_cache: bool,
    /// `canonical::route` of the Envoy route.
    body: Vec<u8>,
    clusters: Arc<[String]>,
}

impl CompiledRoute {
    fn is_of(&self, r: &model::Route, filters: &model::Filters, clear_cache: bool) -> bool {
        self.clear_cache == clear_cache && self.route == *r && self.filters == *filters
    }
}

/// Routes compiled by earlier compiles, by listener and virtual host, so
/// that an edit of a few routes compiles those alone (B8: one route
/// edited among 20,000). A route's bytes are a function of the model
/// route, its effective filters and whether its virtual host clears the
/// route cache after auth: with all three equal, the earlier bytes are
/// the ones a compile would give.
#[derive(Debug)]
pub struct RouteCache {
    listeners: HashMap<String, Vec<Vec<Arc<CompiledRoute>>>>,
    /// Kept between compiles; a one-shot compile keeps nothing.
    keep: bool,
    /// Routes compiled (not taken from the cache) since it was made.
    compiled: u64,
}

impl Default for RouteCache {
    fn default() -> RouteCache {
        RouteCache {
            listeners: HashMap::new(),
            keep: true,
            compiled: 0,
        }
    }
}

impl RouteCache {
    /// For a single compile: keeps nothing.
    pub(super) fn one_shot() -> RouteCache {
        RouteCache {
            listeners: HashMap::new(),
            keep: false,
            compiled: 0,
        }
    }

    /// Routes compiled, not taken from the cache, since it was made.
    #[cfg(test)]
    pub(super) fn compiled(&self) -> u64 {
        self.compiled
    }

    /// Forgets the listeners `config` no longer has.
    pub(super) fn retain(&mut self, config: &model::Config) {
        let names: HashSet<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
        self.listeners
            .retain(|name, _| names.contains(name.as_str()));
    }
}

/// `l`'s route configuration. Routes whose inputs equal those of the
/// routes the cache holds at the start or the end of the same virtual host
/// (an edit in the middle, an insertion, a removal) are taken from the
/// cache; the rest are compiled.
pub(super) fn route_configuration(
    l: &model::Listener,
    filters: &EffectiveFilters,
    cache: &mut RouteCache,
) -> Result<BuiltRoutes, CompileError> {
    let before = cache.listeners.get(&l.name);
    let mut compiled = Vec::with_capacity(l.virtual_hosts.len());
    for (i, (vh, filters)) in l.virtual_hosts.iter().zip(&filters.0).enumerate() {
        let clear_cache = routes_on_identity(vh, filters);
        let old = before.and_then(|b| b.get(i)).map_or(&[][..], Vec::as_slice);
        let new: Vec<(&model::Route, &model::Filters)> = vh.routes.iter().zip(filters).collect();
        let same = |o: &Arc<CompiledRoute>, (r, f): &(&model::Route, &model::Filters)| {
            o.is_of(r, f, clear_cache)
        };
        let head = old.iter().zip(&new).take_while(|(o, n)| same(o, n)).count();
        let tail = old[head..]
            .iter()
            .rev()
            .zip(new[head..].iter().rev())
            .take_while(|(o, n)| same(o, n))
            .count();
        let mut routes = Vec::with_capacity(new.len());
        routes.extend(old[..head].iter().cloned());
        for (r, f) in &new[head..new.len() - tail] {
            let envoy = route_with_filters(l, r, f, clear_cache)?;
            cache.compiled += 1;
            routes.push(Arc::new(CompiledRoute {
                route: (*r).clone(),
                filters: (*f).clone(),
                clear_cache,
                clusters: clusters_of(&envoy).into(),
                body: canonical::route(envoy),
            }));
        }
        routes.extend(old[old.len() - tail..].iter().cloned());
        compiled.push(routes);
    }
    let vhosts: Vec<Vec<u8>> = l
        .virtual_hosts
        .iter()
        .zip(&compiled)
        .map(|(vh, routes)| {
            let head = VirtualHost {
                name: vh.name.clone(),
                domains: vh.domains.clone(),
                ..Default::default()
            };
            canonical::virtual_host(head, routes.iter().map(|r| r.body.as_slice()))
        })
        .collect();
    let head = RouteConfiguration {
        name: l.name.clone(),
        ..Default::default()
    };
    let built = BuiltRoutes {
        name: l.name.clone(),
        domains: l
            .virtual_hosts
            .iter()
            .flat_map(|vh| vh.domains.iter().cloned())
            .collect(),
        clusters: compiled
            .iter()
            .flatten()
            .map(|r| r.clusters.clone())
            .collect(),
        body: canonical::route_configuration_of(head, vhosts.iter().map(Vec::as_slice)),
    };
    if cache.keep {
        cache.listeners.insert(l.name.clone(), compiled);
    }
    Ok(built)
}

/// A route plus its effective filter settings: the Lua filter's
/// `LuaPerRoute` and the local rate limit's config.
fn route_with_filters(
    l: &model::Listener,
    r: &model::Route,
    filters: &model::Filters,
    clear_cache: bool,
) -> Result<Route, CompileError> {
    let mut route = self::route(l, r)?;
    if filters.uses_lua() {
        let any = super::lua::per_route(filters, clear_cache);
        route
            .typed_per_filter_config
            .insert(FILTER_NAME.to_string(), any);
        route.request_body_buffer_limit = super::lua::request_body_buffer_limit(filters);
    }
    if let Some(ip) = filters.auth.as_ref().and_then(|a| a.ip.as_ref()) {
        let any = super::rbac::per_route(ip);
        route
            .typed_per_filter_config
            .insert(super::rbac::FILTER_NAME.to_string(), any);
    }
    if let Some(user) = &filters.lua {
        let any = super::lua::user_per_route(user);
        route
            .typed_per_filter_config
            .insert(crate::lua_script::USER_FILTER_NAME.to_string(), any);
    }
    let context = || format!("listener {:?} route {:?}", l.name, r.name);
    if let Some(any) = super::ratelimit::per_route(filters, context)? {
        let name = super::ratelimit::FILTER_NAME.to_string();
        route.typed_per_filter_config.insert(name, any);
    }
    Ok(route)
}

fn route(l: &model::Listener, r: &model::Route) -> Result<Route, CompileError> {
    let context = |field: &str| format!("listener {:?} route {:?} {field}", l.name, r.name);
    let timeout = r
        .timeout
        .map(|t| pb_duration(t, || context("timeout")))
        .transpose()?;
    let retry_policy = r
        .retry
        .as_ref()
        .map(|retry| retry_policy(retry, || context("retry.per_try_timeout")))
        .transpose()?;
    let action = match &r.action {
        model::RouteAction::Redirect(redirect) => {
            route::Action::Redirect(route_policy::redirect(redirect))
        }
        model::RouteAction::DirectResponse(dr) => {
            route::Action::DirectResponse(route_policy::direct_response(dr))
        }
        model::RouteAction::Backend(_)
        | model::RouteAction::Split(_)
        | model::RouteAction::RuntimeSplit { .. } => {
            let mut action = RouteAction {
                cluster_specifier: Some(cluster_specifier(&r.action)),
                timeout,
                retry_policy,
                ..Default::default()
            };
            route_policy::route_action(&r.policy, &mut action, &context)?;
            route::Action::Route(action)
        }
    };
    let mut out = Route {
        name: r.name.clone(),
        r#match: Some(route_match(&r.matcher)),
        action: Some(action),
        ..Default::default()
    };
    route_policy::decorate(&r.policy, &mut out, &context)?;
    Ok(out)
}

pub(super) fn route_match(m: &model::RouteMatch) -> RouteMatch {
    let path_specifier = match &m.path {
        model::PathMatch::Prefix(p) => route_match::PathSpecifier::Prefix(p.clone()),
        model::PathMatch::Exact(p) => route_match::PathSpecifier::Path(p.clone()),
        model::PathMatch::Regex(re) => route_match::PathSpecifier::SafeRegex(regex(re)),
    };
    RouteMatch {
        path_specifier: Some(path_specifier),
        headers: m.headers.iter().map(header_matcher).collect(),
        query_parameters: m.query.iter().map(query_matcher).collect(),
        ..Default::default()
    }
}

fn header_matcher(h: &model::HeaderMatch) -> HeaderMatcher {
    let specifier = match string_matcher(&h.value) {
        Some(sm) => header_matcher::HeaderMatchSpecifier::StringMatch(sm),
        None => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
    };
    HeaderMatcher {
        name: h.name.clone(),
        invert_match: h.invert,
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

fn query_matcher(q: &model::QueryMatch) -> QueryParameterMatcher {
    let specifier = match string_matcher(&q.value) {
        Some(sm) => query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(sm),
        None => query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
    };
    QueryParameterMatcher {
        name: q.name.clone(),
        query_parameter_match_specifier: Some(specifier),
    }
}

/// The `StringMatcher` for a value match, or `None` for "present".
fn string_matcher(v: &model::ValueMatch) -> Option<StringMatcher> {
    let pattern = match v {
        model::ValueMatch::Exact(s) => string_matcher::MatchPattern::Exact(s.clone()),
        model::ValueMatch::Prefix(s) => string_matcher::MatchPattern::Prefix(s.clone()),
        model::ValueMatch::Regex(re) => string_matcher::MatchPattern::SafeRegex(regex(re)),
        model::ValueMatch::Present => return None,
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    })
}

pub(super) fn cluster_specifier(action: &model::RouteAction) -> route_action::ClusterSpecifier {
    match action {
        model::RouteAction::Backend(b) => route_action::ClusterSpecifier::Cluster(b.cluster_name()),
        model::RouteAction::Split(split) => weighted_clusters(split, String::new()),
        model::RouteAction::RuntimeSplit { key_prefix, split } => {
            weighted_clusters(split, key_prefix.clone())
        }
        // Local actions have no cluster; `route` never asks for one.
        model::RouteAction::Redirect(_) | model::RouteAction::DirectResponse(_) => {
            route_action::ClusterSpecifier::Cluster(String::new())
        }
    }
}

/// Envoy reads each cluster's weight from the runtime key
/// `<runtime_key_prefix>.<cluster name>` when the prefix is set, and sums
/// the weights on every request.
fn weighted_clusters(
    split: &[model::WeightedBackend],
    runtime_key_prefix: String,
) -> route_action::ClusterSpecifier {
    route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
        clusters: split
            .iter()
            .map(|wb| ClusterWeight {
                name: wb.backend.cluster_name(),
                weight: Some(UInt32Value { value: wb.weight }),
                ..Default::default()
            })
            .collect(),
        runtime_key_prefix,
        // total_weight left unset: Envoy sums the weights.
        ..Default::default()
    })
}

fn retry_policy(
    retry: &model::RetryPolicy,
    context: impl FnOnce() -> String,
) -> Result<RetryPolicy, CompileError> {
    let per_try_timeout = retry
        .per_try_timeout
        .map(|t| pb_duration(t, context))
        .transpose()?;
    Ok(RetryPolicy {
        retry_on: retry.on.join(","),
        num_retries: Some(UInt32Value {
            value: retry.attempts,
        }),
        per_try_timeout,
        ..Default::default()
    })
}

/// Whether a virtual host routes on the identity headers auth sets: then
/// the Lua must clear the route cache after auth so Envoy matches again
/// with the authenticated consumer and plan.
/// `filters` are the virtual host's routes' effective filters.
fn routes_on_identity(vh: &model::VirtualHost, filters: &[model::Filters]) -> bool {
    vh.routes.iter().zip(filters).any(|(r, filters)| {
        let Some(auth) = &filters.auth else {
            return false;
        };
        r.matcher.headers.iter().any(|h| {
            let name = h.name.to_ascii_lowercase();
            name == auth.consumer_header || name == auth.plan_header
        })
    })
}
