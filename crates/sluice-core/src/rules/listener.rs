//! Listeners and virtual hosts: names, addresses, node groups, domains.
//!
//! Uniqueness rules mirror what Envoy rejects: one listener per
//! (address, port), and a domain at most once per listener's route table.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::rules::yaml::Spanned;

use super::check::{check_name, int, ip, socket_key, Catalog, Seen};
use super::chunked::Chunked;
use super::error::{Diags, Loc};
use super::raw::{Item, RawListener, RawVirtualHost};
use super::raw_policy::RawAccessLog;
use super::route::route;
use crate::model::{AccessLog, Filters, Listener, Route, VirtualHost};

pub fn listeners(
    items: &Chunked<Item<RawListener>>,
    catalog: &Catalog<'_>,
    d: &mut Diags,
) -> Vec<Listener> {
    let mut names = Seen::default();
    let mut sockets = Seen::default();
    let mut out = Vec::new();
    for item in items {
        let raw = &item.raw;
        let path = format!("listeners[{}]", item.index);
        names.first(d, &raw.name, &format!("{path}.name"), "listener name");
        let listener = listener(raw, &path, catalog, d);
        let (loc, p) = match &raw.address {
            Some(a) => (d.loc(a.span()), format!("{path}.address")),
            None => (d.loc(raw.port.span()), format!("{path}.port")),
        };
        if listener.port != 0 {
            let key = socket_key(listener.address, listener.port);
            sockets.first_at(d, key, loc, &p, "listener address");
        }
        out.push(listener);
    }
    out
}

fn listener(raw: &RawListener, path: &str, catalog: &Catalog<'_>, d: &mut Diags) -> Listener {
    let name = check_name(d, &raw.name, &format!("{path}.name"));
    let address = match &raw.address {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(a) => ip(d, a, &format!("{path}.address")),
    };
    // Port 0 lets the kernel choose (Envoy reports the bound port in its
    // admin `/listeners`); useful for tests on a shared machine.
    let port = int(d, &raw.port, &format!("{path}.port"), 0..=65535)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0);
    let groups = raw.groups.as_ref().map(|groups| {
        let p = format!("{path}.groups");
        if groups.is_empty() {
            d.error(
                groups.span(),
                &p,
                "groups must not be empty; omit `groups` to serve every node group",
            );
        }
        let mut seen = Seen::default();
        let mut out = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            let gp = format!("{p}[{i}]");
            out.push(check_name(d, group, &gp));
            seen.first(d, group, &gp, "group");
        }
        out
    });
    let vh_path = format!("{path}.virtual_hosts");
    if raw.virtual_hosts.is_empty() {
        d.error(
            raw.virtual_hosts.span(),
            &vh_path,
            "a listener needs at least one virtual host",
        );
    }
    let mut names = Seen::default();
    let mut domains = HashMap::new();
    let mut virtual_hosts = Vec::new();
    for (i, vh) in raw.virtual_hosts.iter().enumerate() {
        let p = format!("{vh_path}[{i}]");
        names.first(d, &vh.name, &format!("{p}.name"), "virtual host name");
        virtual_hosts.push(virtual_host(vh, &p, &mut domains, catalog, d));
    }
    let access_log = raw
        .access_log
        .as_ref()
        .map(|a| access_log(a, &format!("{path}.access_log"), d))
        .unwrap_or_default();
    let tls = raw
        .tls
        .as_ref()
        .map(|t| super::listener_tls::listener_tls(t, &format!("{path}.tls"), d));
    Listener {
        name,
        address,
        port,
        groups,
        virtual_hosts,
        access_log,
        tls,
    }
}

/// `domains` maps each lowercased domain already used in this listener to
/// where it was first seen.
fn virtual_host(
    raw: &RawVirtualHost,
    path: &str,
    domains: &mut HashMap<String, Loc>,
    catalog: &Catalog<'_>,
    d: &mut Diags,
) -> VirtualHost {
    let name = check_name(d, &raw.name, &format!("{path}.name"));
    if raw.domains.is_empty() {
        d.error(
            raw.domains.span(),
            format!("{path}.domains"),
            "domains must not be empty; use [\"*\"] to match every host",
        );
    }
    for (i, domain) in raw.domains.iter().enumerate() {
        let p = format!("{path}.domains[{i}]");
        check_domain(d, domain, &p);
        let loc = d.loc(domain.span());
        let key = domain.to_ascii_lowercase();
        match domains.get(&key) {
            Some(first) => {
                let msg = format!(
                    "domain `{}` is already used in this listener (line {}); Envoy rejects duplicate domains",
                    domain.as_str(),
                    first.line
                );
                d.error_at(loc, p, msg);
            }
            None => {
                domains.insert(key, loc);
            }
        }
    }
    let routes_path = format!("{path}.routes");
    if raw.routes.is_empty() {
        d.error(
            raw.routes.span(),
            &routes_path,
            "a virtual host needs at least one route",
        );
    }
    let mut names = Seen::default();
    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let p = format!("{routes_path}[{i}]");
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
        routes.push(route);
    }
    let written = super::filters::RawFilters {
        auth: raw.auth.as_ref(),
        validate: raw.validate.as_ref(),
        transform: raw.transform.as_ref(),
        rate_limit: raw.rate_limit.as_ref(),
        lua: raw.lua.as_ref(),
    };
    let filters = super::filters::filters(written, catalog.lua, path, d);
    check_identity_routes(raw, &routes, &filters, &routes_path, d);
    VirtualHost {
        name,
        domains: raw.domains.iter().map(|s| s.to_string()).collect(),
        routes,
        filters,
    }
}

/// Envoy's domain syntax: a host (optionally `:port`), or a single `*`
/// wildcard as the whole domain, at the start or at the end.
fn check_domain(d: &mut Diags, domain: &Spanned<String>, path: &str) {
    let s = domain.as_str();
    let stars = s.matches('*').count();
    let bad_star = stars > 1 || (stars == 1 && !(s.starts_with('*') || s.ends_with('*')));
    let bad_char = s
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/');
    if s.is_empty() || bad_star || bad_char {
        let msg = format!(
            "invalid domain `{s}`: expected a host name such as `example.com`, `*.example.com`, `example.*` or `*`"
        );
        d.error(domain.span(), path, msg);
    }
}

/// A route that matches on the consumer or plan header must authenticate:
/// otherwise a client could send that header itself and pick the route.
fn check_identity_routes(
    raw: &RawVirtualHost,
    routes: &[Route],
    vhost: &Filters,
    path: &str,
    d: &mut Diags,
) {
    for (i, route) in routes.iter().enumerate() {
        let effective = route.filters.over(vhost);
        let names: Vec<&str> = match &effective.auth {
            Some(a) => vec![a.consumer_header.as_str(), a.plan_header.as_str()],
            None => vec![super::filters::CONSUMER_HEADER, super::filters::PLAN_HEADER],
        };
        let on_identity = route
            .matcher
            .headers
            .iter()
            .any(|h| names.contains(&h.name.to_ascii_lowercase().as_str()));
        let keyed = effective
            .rate_limit
            .as_ref()
            .is_some_and(|rl| rl.key != crate::model::RateLimitKey::Route);
        if keyed && effective.auth.is_none() {
            let msg = "a rate limit keyed by plan or consumer needs `auth` (on the route or its virtual host)";
            d.error(raw.routes[i].span(), format!("{path}[{i}].rate_limit"), msg);
        }
        if on_identity && effective.auth.is_none() {
            let msg = "this route matches on an identity header set by auth, but has no `auth` \
                       (on the route or its virtual host): a client could send the header itself";
            d.error(
                raw.routes[i].span(),
                format!("{path}[{i}].match.headers"),
                msg,
            );
        }
    }
}

/// `format: json` (default; optional `fields`), `text` (with `text`) or
/// `off`.
fn access_log(raw: &Spanned<RawAccessLog>, path: &str, d: &mut Diags) -> AccessLog {
    let format = raw.format.as_ref().map_or("json", |f| f.as_str());
    let misplaced = |d: &mut Diags, field: &str, span: &crate::rules::yaml::Span, wanted: &str| {
        let msg = format!("`{field}` applies only to `format: {wanted}`");
        d.error(span, format!("{path}.{field}"), msg);
    };
    match format {
        "json" => {
            if let Some(t) = &raw.text {
                misplaced(d, "text", t.span(), "text");
            }
            match &raw.fields {
                None => AccessLog::Json,
                Some(fields) => {
                    if fields.0.is_empty() {
                        let msg = "fields must not be empty; omit it for the default fields";
                        d.error(fields.span(), format!("{path}.fields"), msg);
                    }
                    let mut seen = Seen::default();
                    for (key, _) in &fields.0 {
                        seen.first(d, key, &format!("{path}.fields.{}", key.as_str()), "field");
                    }
                    AccessLog::JsonFields(
                        fields
                            .0
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.clone()))
                            .collect(),
                    )
                }
            }
        }
        "text" => {
            if let Some(f) = &raw.fields {
                misplaced(d, "fields", f.span(), "json");
            }
            match &raw.text {
                Some(t) if !t.is_empty() => AccessLog::Text(t.to_string()),
                _ => {
                    let msg = "`format: text` needs a `text` format string, e.g. \"%REQ(:METHOD)% %RESPONSE_CODE%\\n\"";
                    d.error(raw.span(), path, msg);
                    AccessLog::Off
                }
            }
        }
        "off" => {
            for (field, span) in [
                ("fields", raw.fields.as_ref().map(|f| f.span())),
                ("text", raw.text.as_ref().map(|t| t.span())),
            ] {
                if let Some(span) = span {
                    let msg = format!("`{field}` has no effect with `format: off`");
                    d.error(span, format!("{path}.{field}"), msg);
                }
            }
            AccessLog::Off
        }
        other => {
            let msg =
                format!("unknown access log format `{other}`; valid formats are json, text, off");
            let span = raw.format.as_ref().map_or(raw.span(), |f| f.span());
            d.error(span, format!("{path}.format"), msg);
            AccessLog::Json
        }
    }
}
