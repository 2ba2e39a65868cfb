//! The top-level `grpc` section: the targets proxyless gRPC clients dial
//! (`xds:///<target>`) and their routes.
//!
//! A route is written as a listener's route is (`match`, `to` or `split`,
//! `timeout`), and checked by the same code, then against what gRPC's
//! xDS client takes (gRFC A28): it skips routes whose path cannot be a
//! method path (`/package.Service/Method`) and routes that match query
//! parameters, and it balances round robin over plain-text connections.
//! Such a route is refused here, at its file:line:column, rather than
//! served and silently skipped. Fields gRPC clients do not take are not
//! fields of a gRPC route (an unknown-field error lists those it has).

use super::check::{check_name, duration, int, Catalog, Seen};
use super::error::{shown, Diags};
use super::raw::{RawGrpcRetry, RawGrpcRoute, RawGrpcTarget, RawMatch};
use super::raw_policy::RawHashPolicy;
use super::route::{route_match, weighted};
use super::route_policy::{fault, hash_policies};
use super::yaml::Spanned;
use crate::model::{
    Backend, GrpcRetry, GrpcRoute, GrpcTarget, HashPolicy, LbPolicy, PathMatch, RouteAction,
    RouteMatch, GRPC_MAX_RETRIES, GRPC_RETRY_ON,
};

type Str = Spanned<String>;

/// Longest target accepted: a DNS name (253) and a port.
const MAX_TARGET_LEN: usize = 259;

/// The targets, each with its index in the file's list.
pub fn grpc<'a>(
    raw: impl IntoIterator<Item = (usize, &'a Spanned<RawGrpcTarget>)>,
    catalog: &Catalog<'_>,
    d: &mut Diags,
) -> Vec<GrpcTarget> {
    let mut names = Seen::default();
    let mut out = Vec::new();
    for (index, t) in raw {
        let path = format!("grpc[{index}]");
        let name_path = format!("{path}.target");
        check_target(d, &t.target, &name_path);
        let loc = d.loc(t.target.span());
        names.first_at(
            d,
            t.target.to_ascii_lowercase(),
            loc,
            &name_path,
            "gRPC target",
        );
        out.push(GrpcTarget {
            name: t.target.to_string(),
            groups: t.groups.as_ref().map(|g| groups(g, &path, d)),
            routes: routes(&t.routes, &format!("{path}.routes"), catalog, d),
        });
    }
    out
}

/// What gRPC clients dial after `xds:///`: a host name and an optional
/// port, as gRPC sends it for the Listener resource and matches domains.
fn check_target(d: &mut Diags, target: &Str, path: &str) {
    let s = target.as_str();
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if !host_ok || !port_ok || s.len() > MAX_TARGET_LEN {
        let msg = format!(
            "invalid gRPC target `{}`: write what clients dial after `xds:///`, a host name with an optional port, e.g. `greeter` or `greeter.shop:50051`",
            shown(target)
        );
        d.error(target.span(), path, msg);
    }
}

fn groups(raw: &Spanned<Vec<Str>>, path: &str, d: &mut Diags) -> Vec<String> {
    let p = format!("{path}.groups");
    if raw.is_empty() {
        let msg =
            "groups must not be empty; omit `groups` to serve gRPC clients of every node group";
        d.error(raw.span(), &p, msg);
    }
    let mut seen = Seen::default();
    raw.iter()
        .enumerate()
        .map(|(i, group)| {
            let gp = format!("{p}[{i}]");
            seen.first(d, group, &gp, "group");
            check_name(d, group, &gp)
        })
        .collect()
}

fn routes(
    raw: &Spanned<Vec<Spanned<RawGrpcRoute>>>,
    path: &str,
    catalog: &Catalog<'_>,
    d: &mut Diags,
) -> Vec<GrpcRoute> {
    if raw.is_empty() {
        d.error(raw.span(), path, "a gRPC target needs at least one route");
    }
    let mut names = Seen::default();
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let route = route(r, i, &p, catalog, d);
        let loc = r
            .name
            .as_ref()
            .map_or_else(|| d.loc(r.span()), |n| d.loc(n.span()));
        names.first_at(
            d,
            route.name.clone(),
            loc,
            &format!("{p}.name"),
            "route name",
        );
        out.push(route);
    }
    out
}

fn route(
    raw: &Spanned<RawGrpcRoute>,
    index: usize,
    path: &str,
    catalog: &Catalog<'_>,
    d: &mut Diags,
) -> GrpcRoute {
    let name = match &raw.name {
        Some(n) => check_name(d, n, &format!("{path}.name")),
        None => format!("route-{index}"),
    };
    let matcher = match &raw.matcher {
        Some(m) => {
            let p = format!("{path}.match");
            let matcher = route_match(m, &p, d);
            check_grpc_match(m, &matcher, &p, d);
            matcher
        }
        None => RouteMatch {
            path: PathMatch::Prefix("/".to_string()),
            headers: Vec::new(),
            query: Vec::new(),
        },
    };
    let action = match (&raw.to, &raw.split) {
        (Some(to), None) => {
            let p = format!("{path}.to");
            let backend = catalog.backend(d, &to.service, to.subset.as_ref(), &p);
            check_service(catalog, &backend, &to.service, &p, d);
            RouteAction::Backend(backend)
        }
        (None, Some(split)) => {
            let p = format!("{path}.split");
            let split_model = weighted(split, &p, catalog, d);
            for (i, (wb, raw_wb)) in split_model.iter().zip(split.iter()).enumerate() {
                let ep = format!("{p}[{i}]");
                check_service(catalog, &wb.backend, &raw_wb.service, &ep, d);
            }
            RouteAction::Split(split_model)
        }
        (Some(_), Some(split)) => {
            let msg = "a route takes exactly one of `to` or `split`, not both";
            d.error(split.span(), format!("{path}.split"), msg);
            RouteAction::Split(Vec::new())
        }
        (None, None) => {
            let msg = "a gRPC route needs `to: {service: ...}` or a `split` list";
            d.error(raw.span(), path, msg);
            RouteAction::Split(Vec::new())
        }
    };
    let timeout = raw
        .timeout
        .as_ref()
        .and_then(|t| duration(d, t, &format!("{path}.timeout")));
    let retry = raw
        .retry
        .as_ref()
        .map(|r| retry(r, &format!("{path}.retry"), d));
    let hash = raw
        .hash
        .as_ref()
        .map(|list| hash(list, &action, &format!("{path}.hash"), catalog, d))
        .unwrap_or_default();
    let fault = raw
        .fault
        .as_ref()
        .map(|f| fault(f, &format!("{path}.fault"), d));
    GrpcRoute {
        name,
        matcher,
        action,
        timeout,
        retry,
        hash,
        fault,
    }
}

/// Hash policies as gRPC's ring hash takes them (gRFC A42): request
/// metadata only (gRPC has no cookies, query or source address to hash),
/// a lower-case text key; checked otherwise as a listener route's.
fn hash(
    list: &Spanned<Vec<Spanned<RawHashPolicy>>>,
    action: &RouteAction,
    path: &str,
    catalog: &Catalog<'_>,
    d: &mut Diags,
) -> Vec<HashPolicy> {
    for (i, h) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let other = [
            h.cookie.as_ref().map(|c| ("cookie", c.span())),
            h.source_ip.as_ref().map(|s| ("source_ip", s.span())),
            h.query.as_ref().map(|q| ("query", q.span())),
        ];
        for (field, span) in other.into_iter().flatten() {
            let msg = format!(
                "gRPC clients hash on request metadata only, not `{field}`: write `header: KEY`"
            );
            d.error(span, format!("{p}.{field}"), msg);
        }
        if let Some(name) = &h.header {
            let hp = format!("{p}.header");
            if name.ends_with("-bin") {
                let msg = format!(
                    "gRPC clients do not hash binary metadata (`{}`): hash a text key",
                    shown(name)
                );
                d.error(name.span(), hp, msg);
            } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
                let msg = format!(
                    "gRPC metadata keys are lower case: write `{}`",
                    name.to_ascii_lowercase()
                );
                d.error(name.span(), hp, msg);
            }
        }
    }
    hash_policies(list, action, path, catalog, d)
}

/// A retry policy as gRPC's client takes it (gRFC A44): status codes it
/// retries on, at most 4 retries (gRPC caps attempts at 5), and an
/// exponential backoff whose base is above zero and cap not below it.
fn retry(raw: &Spanned<RawGrpcRetry>, path: &str, d: &mut Diags) -> GrpcRetry {
    let on_path = format!("{path}.on");
    if raw.on.is_empty() {
        let msg = "retry needs at least one status code in `on`, e.g. [unavailable]";
        d.error(raw.on.span(), &on_path, msg);
    }
    let mut seen = Seen::default();
    for (i, code) in raw.on.iter().enumerate() {
        let p = format!("{on_path}[{i}]");
        if !GRPC_RETRY_ON.contains(&code.as_str()) {
            let msg = format!(
                "gRPC clients do not retry on `{}`; they retry on the status codes {}",
                shown(code),
                GRPC_RETRY_ON.join(", ")
            );
            d.error(code.span(), &p, msg);
        }
        seen.first(d, code, &p, "retry status code");
    }
    let attempts = match &raw.attempts {
        Some(a) => int(d, a, &format!("{path}.attempts"), 1..=GRPC_MAX_RETRIES).unwrap_or(1),
        None => 1,
    };
    let backoff = raw.backoff.as_ref().and_then(|b| {
        let p = format!("{path}.backoff");
        let base = duration(d, &b.base, &format!("{p}.base"))?;
        if base.is_zero() {
            d.error(
                b.base.span(),
                format!("{p}.base"),
                "backoff base must be greater than 0",
            );
            return None;
        }
        let max = match &b.max {
            Some(m) => duration(d, m, &format!("{p}.max"))?,
            // gRPC's default cap: ten times the base.
            None => base * 10,
        };
        if max < base {
            let span = b.max.as_ref().map_or(b.span(), |m| m.span());
            d.error(
                span,
                format!("{p}.max"),
                "backoff max must not be below its base",
            );
            return None;
        }
        Some((base, max))
    });
    GrpcRetry {
        on: raw.on.iter().map(|s| s.to_string()).collect(),
        attempts,
        backoff,
    }
}

/// What gRPC's xDS client would skip (gRFC A28): a path that cannot be a
/// method path, query matchers, binary or upper-case metadata keys.
fn check_grpc_match(raw: &Spanned<RawMatch>, m: &RouteMatch, path: &str, d: &mut Diags) {
    match &m.path {
        PathMatch::Prefix(p) if p.starts_with('/') && !prefix_can_match(p) => {
            if let Some(v) = &raw.prefix {
                let msg = format!(
                    "gRPC clients skip prefix `{}`: it cannot match a method path `/package.Service/Method`; use `/`, `/package.Service/` or `/package.Service/Method`",
                    shown(v)
                );
                d.error(v.span(), format!("{path}.prefix"), msg);
            }
        }
        PathMatch::Exact(p) if p.starts_with('/') && !is_method_path(p) => {
            if let Some(v) = &raw.path {
                let msg = format!(
                    "gRPC clients skip path `{}`: a gRPC path is `/package.Service/Method`",
                    shown(v)
                );
                d.error(v.span(), format!("{path}.path"), msg);
            }
        }
        _ => {}
    }
    if let Some(q) = raw.query.first() {
        let msg = "gRPC clients skip routes that match query parameters (an RPC has none); match request metadata with `headers`";
        d.error(q.span(), format!("{path}.query"), msg);
    }
    for (i, h) in raw.headers.iter().enumerate() {
        let name = h.name.as_str();
        let p = format!("{path}.headers[{i}].name");
        if name.ends_with("-bin") {
            let msg = format!(
                "gRPC clients do not match binary metadata (`{}`): match a text key",
                shown(&h.name)
            );
            d.error(h.name.span(), p, msg);
        } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
            let msg = format!(
                "gRPC metadata keys are lower case: write `{}`",
                name.to_ascii_lowercase()
            );
            d.error(h.name.span(), p, msg);
        }
    }
}

/// gRPC ignores a prefix with more than two `/` or starting `//`.
fn prefix_can_match(prefix: &str) -> bool {
    prefix.matches('/').count() <= 2 && !prefix.starts_with("//")
}

/// `/service/method`, both parts non-empty.
fn is_method_path(path: &str) -> bool {
    let mut parts = path[1..].split('/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(service), Some(method), None) if !service.is_empty() && !method.is_empty()
    )
}

/// A service a gRPC route reaches must be one gRPC clients can reach as
/// Envoys do: over plain text (gRPC's xDS TLS is not served yet) and
/// round robin or ring hash (gRFC A42; what else the rules offer, gRPC
/// either lacks or would balance differently).
fn check_service(catalog: &Catalog<'_>, backend: &Backend, raw: &Str, path: &str, d: &mut Diags) {
    let Some(service) = catalog.services.get(&backend.service) else {
        return;
    };
    let p = format!("{path}.service");
    if !matches!(service.lb_policy, LbPolicy::RoundRobin | LbPolicy::RingHash) {
        let msg = format!(
            "service `{}` balances with an `lb_policy` gRPC clients do not take; route gRPC clients to a round_robin or ring_hash service",
            service.name
        );
        d.error(raw.span(), &p, msg);
    }
    if service.policy.tls.is_some() {
        let msg = format!(
            "service `{}` is reached over TLS, which gRPC clients are not served yet (they would connect in plain text)",
            service.name
        );
        d.error(raw.span(), &p, msg);
    }
}
