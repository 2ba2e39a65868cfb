//! One route: its match, its action (`to` or `split`), timeout and retry.
//!
//! Regexes are compiled with the `regex` crate, whose syntax is close to
//! Envoy's RE2 and which, like RE2, has no look-around or backreferences;
//! their RE2 program size is checked against Envoy's limit (`super::re2`).

use std::collections::BTreeSet;

use crate::rules::yaml::Spanned;

use super::check::{check_name, check_regex, duration, int, Catalog, Seen};
use super::error::Diags;
use super::raw::{RawMatch, RawRetry, RawRoute, RawWeighted};
use super::route_policy::{local_action, route_policy};
use crate::model::{
    HeaderMatch, PathMatch, QueryMatch, RetryPolicy, Route, RouteAction, RouteMatch, ValueMatch,
    WeightedBackend, RETRY_ON,
};

pub fn route(
    raw: &Spanned<RawRoute>,
    index: usize,
    path: &str,
    catalog: &Catalog<'_>,
    d: &mut Diags,
) -> Route {
    let name = match &raw.name {
        Some(n) => check_name(d, n, &format!("{path}.name")),
        None => format!("route-{index}"),
    };
    let matcher = match &raw.matcher {
        Some(m) => route_match(m, &format!("{path}.match"), d),
        None => RouteMatch {
            path: PathMatch::Prefix("/".to_string()),
            headers: Vec::new(),
            query: Vec::new(),
        },
    };
    let local = local_action(raw, path, d);
    let action = match (&raw.to, &raw.split, local) {
        (Some(to), None, None) => RouteAction::Backend(catalog.backend(
            d,
            &to.service,
            to.subset.as_ref(),
            &format!("{path}.to"),
        )),
        (None, Some(split), None) => {
            RouteAction::Split(weighted(split, &format!("{path}.split"), catalog, d))
        }
        (None, None, Some(local)) => local,
        (Some(_), Some(split), _) => {
            d.error(
                split.span(),
                format!("{path}.split"),
                "a route takes exactly one of `to` or `split`, not both",
            );
            RouteAction::Split(Vec::new())
        }
        (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => {
            let (field, span) = match (&raw.redirect, &raw.direct_response) {
                (Some(r), _) => ("redirect", r.span()),
                (None, Some(dr)) => ("direct_response", dr.span()),
                (None, None) => ("redirect", raw.span()),
            };
            d.error(
                span,
                format!("{path}.{field}"),
                format!("a route takes one of `to`, `split`, `redirect` or `direct_response`; remove `{field}` or the backend"),
            );
            RouteAction::Split(Vec::new())
        }
        (None, None, None) => {
            d.error(
                raw.span(),
                path,
                "a route needs `to: {service: ...}`, a `split` list, a `redirect` or a `direct_response`",
            );
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
    let written = super::filters::RawFilters {
        auth: raw.auth.as_ref(),
        validate: raw.validate.as_ref(),
        transform: raw.transform.as_ref(),
        rate_limit: raw.rate_limit.as_ref(),
        lua: raw.lua.as_ref(),
    };
    let filters = super::filters::filters(written, catalog.lua, path, d);
    let policy = route_policy(raw, &action, &matcher.path, path, catalog, d);
    Route {
        name,
        matcher,
        action,
        timeout,
        retry,
        filters,
        policy,
    }
}

pub(super) fn route_match(raw: &Spanned<RawMatch>, path: &str, d: &mut Diags) -> RouteMatch {
    let given = [
        ("prefix", &raw.prefix),
        ("path", &raw.path),
        ("regex", &raw.regex),
    ];
    let given: Vec<(&str, &Spanned<String>)> = given
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
        .collect();
    let path_match = match given.as_slice() {
        [] => PathMatch::Prefix("/".to_string()),
        [(kind, value)] => {
            let p = format!("{path}.{kind}");
            let s = value.to_string();
            match *kind {
                "regex" => {
                    check_regex(d, value, &p);
                    PathMatch::Regex(s)
                }
                _ if !s.starts_with('/') => {
                    d.error(value.span(), p, format!("{kind} `{s}` must start with `/`"));
                    PathMatch::Prefix(s)
                }
                _ if s.contains(['?', '#']) => {
                    let msg = format!(
                        "{kind} `{s}` contains `?` or `#`, but Envoy matches the path without the query string (and clients never send a `#` fragment), so this route would never match; match query parameters with `query:`"
                    );
                    d.error(value.span(), p, msg);
                    PathMatch::Prefix(s)
                }
                "path" => PathMatch::Exact(s),
                _ => PathMatch::Prefix(s),
            }
        }
        [_, (second, value), ..] => {
            d.error(
                value.span(),
                format!("{path}.{second}"),
                "a match takes at most one of `prefix`, `path` or `regex`",
            );
            PathMatch::Prefix("/".to_string())
        }
    };
    let headers = raw
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let p = format!("{path}.headers[{i}]");
            let value = value_match(
                d,
                &h.name,
                [&h.exact, &h.prefix, &h.regex],
                h.present.as_ref(),
                &p,
            );
            let invert = h.invert.as_ref().is_some_and(|b| **b);
            HeaderMatch {
                name: h.name.to_string(),
                value,
                invert,
            }
        })
        .collect();
    let query = raw
        .query
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let p = format!("{path}.query[{i}]");
            let value = value_match(
                d,
                &q.name,
                [&q.exact, &q.prefix, &q.regex],
                q.present.as_ref(),
                &p,
            );
            QueryMatch {
                name: q.name.to_string(),
                value,
            }
        })
        .collect();
    RouteMatch {
        path: path_match,
        headers,
        query,
    }
}

/// A header or query matcher: `name` plus exactly one of
/// `exact | prefix | regex | present: true`.
fn value_match(
    d: &mut Diags,
    name: &Spanned<String>,
    [exact, prefix, regex]: [&Option<Spanned<String>>; 3],
    present: Option<&Spanned<bool>>,
    path: &str,
) -> ValueMatch {
    if name.is_empty() {
        d.error(
            name.span(),
            format!("{path}.name"),
            "name must not be empty",
        );
    }
    let mut found = Vec::new();
    if let Some(v) = exact {
        found.push(("exact", v.span(), ValueMatch::Exact(v.to_string())));
    }
    if let Some(v) = prefix {
        found.push(("prefix", v.span(), ValueMatch::Prefix(v.to_string())));
    }
    if let Some(v) = regex {
        check_regex(d, v, &format!("{path}.regex"));
        found.push(("regex", v.span(), ValueMatch::Regex(v.to_string())));
    }
    if let Some(p) = present {
        if !**p {
            let msg = "present must be `true`; to require that it is absent, use `present: true` with `invert: true` (headers only)";
            d.error(p.span(), format!("{path}.present"), msg);
        }
        found.push(("present", p.span(), ValueMatch::Present));
    }
    match found.len() {
        0 => {
            let msg = format!(
                "`{}` needs one of `exact`, `prefix`, `regex` or `present: true`",
                name.as_str()
            );
            d.error(name.span(), path, msg);
            ValueMatch::Present
        }
        1 => found.remove(0).2,
        _ => {
            let (kind, span, _) = &found[1];
            let msg = format!(
                "`{}` takes only one of `exact`, `prefix`, `regex` or `present`",
                name.as_str()
            );
            d.error(span, format!("{path}.{kind}"), msg);
            ValueMatch::Present
        }
    }
}

pub(super) fn weighted(
    raw: &Spanned<Vec<Spanned<RawWeighted>>>,
    path: &str,
    catalog: &Catalog<'_>,
    d: &mut Diags,
) -> Vec<WeightedBackend> {
    if raw.is_empty() {
        d.error(raw.span(), path, "split needs at least one entry");
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut sum = 0u32;
    let mut weights_ok = true;
    for (i, entry) in raw.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let backend = catalog.backend(d, &entry.service, entry.subset.as_ref(), &p);
        let weight = int(d, &entry.weight, &format!("{p}.weight"), 0..=100);
        weights_ok &= weight.is_some();
        let weight = weight.unwrap_or(0);
        sum += weight;
        if !seen.insert(backend.clone()) {
            let msg = format!(
                "backend `{}` appears twice in this split",
                backend.cluster_name()
            );
            d.error(entry.span(), &p, msg);
        }
        out.push(WeightedBackend { backend, weight });
    }
    if weights_ok && sum != 100 {
        d.error(
            raw.span(),
            path,
            format!("split weights must sum to 100, but they sum to {sum}"),
        );
    }
    out
}

fn retry(raw: &Spanned<RawRetry>, path: &str, d: &mut Diags) -> RetryPolicy {
    let on_path = format!("{path}.on");
    if raw.on.is_empty() {
        d.error(
            raw.on.span(),
            &on_path,
            "retry needs at least one condition in `on`, e.g. [5xx]",
        );
    }
    let mut seen = Seen::default();
    for (i, cond) in raw.on.iter().enumerate() {
        let p = format!("{on_path}[{i}]");
        if !RETRY_ON.contains(&cond.as_str()) {
            let msg = format!(
                "unknown retry condition `{}`; valid conditions are {}",
                cond.as_str(),
                RETRY_ON.join(", ")
            );
            d.error(cond.span(), &p, msg);
        }
        seen.first(d, cond, &p, "retry condition");
    }
    let attempts = match &raw.attempts {
        Some(a) => int(d, a, &format!("{path}.attempts"), 1..=10).unwrap_or(1),
        None => 1,
    };
    let per_try_timeout = raw.per_try_timeout.as_ref().and_then(|t| {
        let p = format!("{path}.per_try_timeout");
        let value = duration(d, t, &p)?;
        if value.is_zero() {
            d.error(
                t.span(),
                p,
                "per_try_timeout must be greater than 0; omit it to use the route timeout",
            );
        }
        Some(value)
    });
    RetryPolicy {
        on: raw.on.iter().map(|s| s.to_string()).collect(),
        attempts,
        per_try_timeout,
    }
}
