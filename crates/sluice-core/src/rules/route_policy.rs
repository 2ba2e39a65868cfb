//! A route's traffic policy: hash policies, mirroring, fault injection,
//! header edits, rewrites, CORS, WebSocket; and the two actions Envoy
//! answers itself, `redirect` and `direct_response`.
//!
//! Cross-field rules live here: hash policies need every target service to
//! balance by `ring_hash` or `maglev`; upstream-only options make no sense on
//! a redirect or direct response.

use crate::rules::yaml::Spanned;

use super::check::check_regex;
use super::check::{duration, header_value, int, Catalog, Seen};
use super::error::Diags;
use super::raw::RawRoute;
use super::raw_policy::{RawCors, RawFault, RawHashPolicy, RawHeaderEdits, RawRewrite};
use crate::model::{
    Cors, DirectResponse, Fault, FaultAbort, FaultDelay, HashPolicy, HeaderEdits, Mirror,
    PathMatch, Redirect, Rewrite, RouteAction, RoutePolicy,
};

/// `redirect` or `direct_response`, if the route has one (and no `to` /
/// `split`, which the caller checks).
pub fn local_action(raw: &RawRoute, path: &str, d: &mut Diags) -> Option<RouteAction> {
    if let (Some(r), Some(dr)) = (&raw.redirect, &raw.direct_response) {
        let msg = format!(
            "a route takes one of `to`, `split`, `redirect` or `direct_response`; `redirect` is on line {}",
            d.loc(r.span()).line
        );
        d.error(dr.span(), format!("{path}.direct_response"), msg);
    }
    if let Some(r) = &raw.redirect {
        let p = format!("{path}.redirect");
        let check_path = |d: &mut Diags, v: &Option<Spanned<String>>, field: &str| {
            v.as_ref().map(|v| {
                if !v.starts_with('/') {
                    let msg = format!("{field} `{}` must start with `/`", v.as_str());
                    d.error(v.span(), format!("{p}.{field}"), msg);
                }
                v.to_string()
            })
        };
        let redirect_path = check_path(d, &r.path, "path");
        let prefix = check_path(d, &r.prefix, "prefix");
        // All three end up in the `location` header.
        for (field, v) in [("host", &r.host), ("path", &r.path), ("prefix", &r.prefix)] {
            if let Some(v) = v {
                header_value(d, v, v.span(), &format!("{p}.{field}"));
            }
        }
        if let (Some(_), Some(pre)) = (&r.path, &r.prefix) {
            let msg = "a redirect takes at most one of `path` or `prefix`";
            d.error(pre.span(), format!("{p}.prefix"), msg);
        }
        let code = match &r.code {
            None => 301,
            Some(c) => match c.parse::<u32>() {
                Ok(n @ (301 | 302 | 303 | 307 | 308)) => n,
                _ => {
                    let msg = format!(
                        "invalid redirect code `{}`; valid codes are 301, 302, 303, 307, 308",
                        c.as_str()
                    );
                    d.error(c.span(), format!("{p}.code"), msg);
                    301
                }
            },
        };
        let https = r.https.unwrap_or(false);
        if !https && r.host.is_none() && redirect_path.is_none() && prefix.is_none() {
            let msg = "a redirect needs at least one of `https: true`, `host`, `path`, `prefix`";
            d.error(r.span(), &p, msg);
        }
        return Some(RouteAction::Redirect(Redirect {
            https,
            host: r.host.as_ref().map(|h| h.to_string()),
            path: redirect_path,
            prefix,
            code,
        }));
    }
    raw.direct_response.as_ref().map(|dr| {
        let p = format!("{path}.direct_response.status");
        let status = int(d, &dr.status, &p, 200..=599).unwrap_or(200);
        RouteAction::DirectResponse(DirectResponse {
            status,
            body: dr.body.clone(),
        })
    })
}

pub fn route_policy(
    raw: &RawRoute,
    action: &RouteAction,
    matcher: &PathMatch,
    path: &str,
    catalog: &Catalog<'_>,
    d: &mut Diags,
) -> RoutePolicy {
    let local = matches!(
        action,
        RouteAction::Redirect(_) | RouteAction::DirectResponse(_)
    );
    if local {
        let upstream_only: [(&str, Option<&crate::rules::yaml::Span>); 8] = [
            ("timeout", raw.timeout.as_ref().map(|v| v.span())),
            ("retry", raw.retry.as_ref().map(|v| v.span())),
            ("hash", raw.hash.as_ref().map(|v| v.span())),
            ("mirror", raw.mirror.as_ref().map(|v| v.span())),
            ("rewrite", raw.rewrite.as_ref().map(|v| v.span())),
            ("fault", raw.fault.as_ref().map(|v| v.span())),
            ("cors", raw.cors.as_ref().map(|v| v.span())),
            (
                "request_headers",
                raw.request_headers.as_ref().map(|v| v.span()),
            ),
        ];
        for (field, span) in upstream_only {
            if let Some(span) = span {
                let msg = format!(
                    "`{field}` needs a route to a service (`to` or `split`), not a redirect or direct response"
                );
                d.error(span, format!("{path}.{field}"), msg);
            }
        }
    }
    let hash = raw
        .hash
        .as_ref()
        .map(|list| hash_policies(list, action, &format!("{path}.hash"), catalog, d))
        .unwrap_or_default();
    let mirror = raw.mirror.as_ref().map(|m| {
        let p = format!("{path}.mirror");
        let backend = catalog.backend(d, &m.service, m.subset.as_ref(), &p);
        let percent = m
            .percent
            .as_ref()
            .and_then(|v| int(d, v, &format!("{p}.percent"), 1..=100))
            .unwrap_or(100);
        Mirror { backend, percent }
    });
    let fault = raw
        .fault
        .as_ref()
        .map(|f| fault(f, &format!("{path}.fault"), d));
    let request_headers = raw
        .request_headers
        .as_ref()
        .map(|h| header_edits(h, &format!("{path}.request_headers"), d))
        .unwrap_or_default();
    let response_headers = raw
        .response_headers
        .as_ref()
        .map(|h| header_edits(h, &format!("{path}.response_headers"), d))
        .unwrap_or_default();
    let rewrite = raw
        .rewrite
        .as_ref()
        .map(|r| rewrite(r, matcher, &format!("{path}.rewrite"), d));
    let cors = raw
        .cors
        .as_ref()
        .map(|c| cors(c, &format!("{path}.cors"), d));
    RoutePolicy {
        hash,
        mirror,
        fault,
        request_headers,
        response_headers,
        rewrite,
        cors,
        websocket: raw.websocket.unwrap_or(false),
    }
}

pub(super) fn hash_policies(
    list: &Spanned<Vec<Spanned<RawHashPolicy>>>,
    action: &RouteAction,
    path: &str,
    catalog: &Catalog<'_>,
    d: &mut Diags,
) -> Vec<HashPolicy> {
    if list.is_empty() {
        d.error(list.span(), path, "hash must not be empty; omit it");
    }
    for backend in action.backends() {
        let Some(service) = catalog.services.get(&backend.service) else {
            continue; // reported as a dangling reference
        };
        if !service.lb_policy.is_consistent_hash() {
            let msg = format!(
                "hash policies need a service balanced by `ring_hash` or `maglev`, but service `{}` uses {}",
                service.name,
                serde_json::to_value(service.lb_policy)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            );
            d.error(list.span(), path, msg);
        }
    }
    let mut out = Vec::new();
    for (i, h) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let mut found = Vec::new();
        if let Some(name) = &h.header {
            non_empty(d, name, &format!("{p}.header"));
            found.push((name.span(), HashPolicy::Header(name.to_string())));
        }
        if let Some(c) = &h.cookie {
            non_empty(d, &c.name, &format!("{p}.cookie.name"));
            // Envoy sets the cookie it hashes on with `set-cookie`.
            header_value(d, &c.name, c.name.span(), &format!("{p}.cookie.name"));
            if let Some(path) = &c.path {
                header_value(d, path, path.span(), &format!("{p}.cookie.path"));
            }
            let ttl = c
                .ttl
                .as_ref()
                .and_then(|t| duration(d, t, &format!("{p}.cookie.ttl")));
            found.push((
                c.span(),
                HashPolicy::Cookie {
                    name: c.name.to_string(),
                    ttl,
                    path: c.path.as_ref().map(|s| s.to_string()),
                },
            ));
        }
        if let Some(ip) = &h.source_ip {
            if !**ip {
                let msg = "source_ip must be `true`; omit the entry instead";
                d.error(ip.span(), format!("{p}.source_ip"), msg);
            }
            found.push((ip.span(), HashPolicy::SourceIp));
        }
        if let Some(q) = &h.query {
            non_empty(d, q, &format!("{p}.query"));
            found.push((q.span(), HashPolicy::QueryParameter(q.to_string())));
        }
        match found.len() {
            0 => {
                let msg = "a hash policy needs one of `header`, `cookie`, `source_ip`, `query`";
                d.error(h.span(), &p, msg);
            }
            1 => out.push(found.remove(0).1),
            _ => {
                let msg = "a hash policy takes exactly one of `header`, `cookie`, `source_ip`, `query`; use one list entry each";
                d.error(found[1].0, &p, msg);
            }
        }
    }
    out
}

fn non_empty(d: &mut Diags, v: &Spanned<String>, path: &str) {
    if v.is_empty() {
        d.error(v.span(), path, "must not be empty");
    }
}

fn header_edits(raw: &Spanned<RawHeaderEdits>, path: &str, d: &mut Diags) -> HeaderEdits {
    let mut seen = Seen::default();
    let mut set = Vec::new();
    for (name, value) in &raw.set.0 {
        let p = format!("{path}.set.{}", name.as_str());
        header_name(d, name, &p);
        header_value(d, value, value.span(), &p);
        seen.first(d, name, &p, "header");
        set.push((name.to_ascii_lowercase(), value.to_string()));
    }
    let mut remove = Vec::new();
    for (i, name) in raw.remove.iter().enumerate() {
        let p = format!("{path}.remove[{i}]");
        header_name(d, name, &p);
        seen.first(d, name, &p, "header");
        remove.push(name.to_ascii_lowercase());
    }
    HeaderEdits { set, remove }
}

/// An HTTP header name Envoy lets routes edit: a token, not a pseudo-header
/// and not `host` (use `rewrite.host`).
fn header_name(d: &mut Diags, name: &Spanned<String>, path: &str) {
    let s = name.as_str();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if s.is_empty() || !s.chars().all(token) {
        let msg = format!("invalid header name `{s}`: use letters, digits and `-`");
        d.error(name.span(), path, msg);
    } else if s.eq_ignore_ascii_case("host") {
        let msg = "the `host` header cannot be edited here; use `rewrite: {host: ...}`";
        d.error(name.span(), path, msg);
    }
}

fn rewrite(raw: &Spanned<RawRewrite>, matcher: &PathMatch, path: &str, d: &mut Diags) -> Rewrite {
    if let Some(prefix) = &raw.prefix {
        if matches!(matcher, PathMatch::Regex(_)) {
            let msg = "rewrite.prefix needs a `prefix` or `path` match; use rewrite.regex on regex routes";
            d.error(prefix.span(), format!("{path}.prefix"), msg);
        }
        if let Some(re) = &raw.regex {
            let msg = "a rewrite takes at most one of `prefix` or `regex`";
            d.error(re.span(), format!("{path}.regex"), msg);
        }
    }
    let regex = raw.regex.as_ref().map(|re| {
        check_regex(d, &re.pattern, &format!("{path}.regex.pattern"));
        (re.pattern.to_string(), re.substitution.to_string())
    });
    if raw.prefix.is_none() && raw.regex.is_none() && raw.host.is_none() {
        let msg = "a rewrite needs at least one of `prefix`, `regex`, `host`";
        d.error(raw.span(), path, msg);
    }
    Rewrite {
        prefix: raw.prefix.as_ref().map(|p| p.to_string()),
        regex,
        host: raw.host.as_ref().map(|h| {
            non_empty(d, h, &format!("{path}.host"));
            header_value(d, h, h.span(), &format!("{path}.host"));
            h.to_string()
        }),
    }
}

fn cors(raw: &Spanned<RawCors>, path: &str, d: &mut Diags) -> Cors {
    if raw.allow_origins.is_empty() {
        let msg = "allow_origins must not be empty; use [\"*\"] to allow any origin";
        d.error(
            raw.allow_origins.span(),
            format!("{path}.allow_origins"),
            msg,
        );
    }
    // Sent back in the `access-control-*` response headers.
    for (field, list) in [
        ("allow_methods", &raw.allow_methods),
        ("allow_headers", &raw.allow_headers),
        ("expose_headers", &raw.expose_headers),
    ] {
        for (i, v) in list.iter().enumerate() {
            header_value(d, v, v.span(), &format!("{path}.{field}[{i}]"));
        }
    }
    let strings = |v: &[Spanned<String>]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let max_age = raw
        .max_age
        .as_ref()
        .and_then(|m| duration(d, m, &format!("{path}.max_age")));
    Cors {
        allow_origins: strings(&raw.allow_origins),
        allow_methods: strings(&raw.allow_methods),
        allow_headers: strings(&raw.allow_headers),
        expose_headers: strings(&raw.expose_headers),
        max_age,
        allow_credentials: raw.allow_credentials.unwrap_or(false),
    }
}

/// A `fault`: a delay, an abort or both, each with its share of requests.
pub(super) fn fault(f: &Spanned<RawFault>, p: &str, d: &mut Diags) -> Fault {
    if f.delay.is_none() && f.abort.is_none() {
        d.error(f.span(), p, "a fault needs a `delay`, an `abort` or both");
    }
    Fault {
        delay: f.delay.as_ref().map(|dl| FaultDelay {
            duration: duration(d, &dl.duration, &format!("{p}.delay.duration")).unwrap_or_default(),
            percent: int(d, &dl.percent, &format!("{p}.delay.percent"), 0..=100).unwrap_or(0),
        }),
        abort: f.abort.as_ref().map(|a| FaultAbort {
            status: int(d, &a.status, &format!("{p}.abort.status"), 200..=599).unwrap_or(503),
            percent: int(d, &a.percent, &format!("{p}.abort.percent"), 0..=100).unwrap_or(0),
        }),
    }
}
