//! `validate` and `transform` settings, header names and templates.

use crate::rules::yaml::Spanned;

use super::raw::{RawJson, RawTransform, RawValidate};
use crate::model::{JsonEdit, Transform, Validate};
use crate::rules::check::{header_value, int};
use crate::rules::error::Diags;
use crate::rules::spanned_map::SpannedMap;

type Str = Spanned<String>;

pub(super) fn validate(raw: &Spanned<RawValidate>, path: &str, d: &mut Diags) -> Validate {
    const METHODS: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    let mut methods = Vec::new();
    for (i, m) in raw.methods.iter().enumerate() {
        let up = m.to_ascii_uppercase();
        if METHODS.contains(&up.as_str()) {
            methods.push(up);
        } else {
            d.error(
                m.span(),
                format!("{path}.methods[{i}]"),
                format!(
                    "unknown method `{}`; valid: {}",
                    m.as_str(),
                    METHODS.join(", ")
                ),
            );
        }
    }
    let headers = raw
        .required_headers
        .iter()
        .enumerate()
        .map(|(i, h)| header_name(h, &format!("{path}.required_headers[{i}]"), d))
        .collect();
    let content_types = raw
        .content_types
        .iter()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Validate {
        methods,
        required_headers: headers,
        required_query: raw.required_query.iter().map(|q| q.to_string()).collect(),
        content_types,
        max_body_bytes: raw.max_body_bytes.as_ref().and_then(|m| {
            int(d, m, &format!("{path}.max_body_bytes"), 1..=u32::MAX).map(u64::from)
        }),
    }
}

pub(super) fn transform(
    raw: &Spanned<RawTransform>,
    path: &str,
    request: bool,
    d: &mut Diags,
) -> Transform {
    if !request {
        for (field, set) in [
            ("query_to_header", !raw.query_to_header.0.is_empty()),
            ("rewrite_path", raw.rewrite_path.is_some()),
        ] {
            if set {
                d.error(
                    raw.span(),
                    format!("{path}.{field}"),
                    format!("`{field}` applies to requests only"),
                );
            }
        }
    }
    let pairs = |m: &SpannedMap<String>,
                 field: &str,
                 values_are: Value,
                 d: &mut Diags|
     -> Vec<(String, String)> {
        m.0.iter()
            .map(|(k, v)| {
                let p = format!("{path}.{field}.{}", k.as_str());
                let key = header_name(k, &p, d);
                let value = match values_are {
                    Value::Header => header_name(&Spanned::new(*k.span(), v.clone()), &p, d),
                    Value::Template => {
                        header_value(d, v, k.span(), &p);
                        template(v, k, &p, d)
                    }
                };
                (key, value)
            })
            .collect()
    };
    let query_to_header = raw
        .query_to_header
        .0
        .iter()
        .map(|(k, v)| {
            let p = format!("{path}.query_to_header.{}", k.as_str());
            (
                k.to_string(),
                header_name(&Spanned::new(*k.span(), v.clone()), &p, d),
            )
        })
        .collect();
    Transform {
        remove_headers: raw
            .remove_headers
            .iter()
            .enumerate()
            .map(|(i, h)| header_name(h, &format!("{path}.remove_headers[{i}]"), d))
            .collect(),
        rename_headers: pairs(&raw.rename_headers, "rename_headers", Value::Header, d),
        set_headers: pairs(&raw.set_headers, "set_headers", Value::Template, d),
        add_headers: pairs(&raw.add_headers, "add_headers", Value::Template, d),
        query_to_header,
        rewrite_path: raw.rewrite_path.as_ref().map(|r| {
            let p = format!("{path}.rewrite_path");
            if !r.starts_with('/') {
                d.error(r.span(), &p, "rewrite_path must start with `/`");
            }
            // It becomes the request's `:path`.
            header_value(d, r, r.span(), &p);
            template(r, r, &p, d)
        }),
        json: raw
            .json
            .as_ref()
            .map(|j| json_edit(j, &format!("{path}.json"), d)),
    }
}

#[derive(Clone, Copy)]
enum Value {
    Header,
    Template,
}

fn json_edit(raw: &Spanned<RawJson>, path: &str, d: &mut Diags) -> JsonEdit {
    let set = raw
        .set
        .0
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                template(v, k, &format!("{path}.set.{}", k.as_str()), d),
            )
        })
        .collect();
    JsonEdit {
        set,
        remove: raw.remove.iter().map(|r| r.to_string()).collect(),
        rename: raw
            .rename
            .0
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        max_bytes: raw
            .max_bytes
            .as_ref()
            .and_then(|m| int(d, m, &format!("{path}.max_bytes"), 1..=u32::MAX).map(u64::from))
            .unwrap_or(1 << 20),
    }
}

/// An HTTP header name (RFC 9110 token), lower-cased as Envoy holds it.
pub(super) fn header_name(name: &Str, path: &str, d: &mut Diags) -> String {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        d.error(
            name.span(),
            path,
            format!("`{}` is not a valid HTTP header name", name.as_str()),
        );
    }
    name.to_ascii_lowercase()
}

/// Placeholders a template may use.
pub const PLACEHOLDERS: &str =
    "${method}, ${path}, ${consumer}, ${plan}, ${header.NAME}, ${query.NAME}";

fn template(value: &str, at: &Str, path: &str, d: &mut Diags) -> String {
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            d.error(at.span(), path, format!("unclosed `${{` in `{value}`"));
            break;
        };
        let key = &after[..end];
        let known = matches!(key, "method" | "path" | "consumer" | "plan")
            || key.strip_prefix("header.").is_some_and(|n| !n.is_empty())
            || key.strip_prefix("query.").is_some_and(|n| !n.is_empty());
        if !known {
            d.error(
                at.span(),
                path,
                format!("unknown placeholder `${{{key}}}`; use {PLACEHOLDERS}"),
            );
        }
        rest = &after[end + 1..];
    }
    value.to_string()
}
