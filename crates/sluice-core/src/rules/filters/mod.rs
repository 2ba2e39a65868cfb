//! `auth`, `validate` and `transform` on virtual hosts and routes: raw YAML
//! → [`model::Filters`].
//!
//! Secrets never pass through: a plain `key:` or `password:` is hashed
//! (SHA-256) here, and only the hash reaches the model, the compiled config
//! and Envoy. Templates are checked for known placeholders, header names
//! for HTTP token syntax, CIDRs for address and prefix length.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::rules::yaml::Spanned;
use sha2::{Digest, Sha256};

use std::time::Duration;

use crate::lua_script::{self, LuaCheck};
use crate::model::{
    ApiKeyAuth, Auth, AuthMethod, BasicAuth, Credential, Filters, IpRule, RateLimit, RateLimitKey,
    UserLua,
};
use crate::rules::check::{duration, header_value, int};
use crate::rules::error::Diags;

mod jwt;
mod raw;
mod transform;

use raw::{RawApiKey, RawBasic, RawCredential};
pub use raw::{RawAuth, RawRateLimit, RawTransforms, RawUserLua, RawValidate};
use transform::header_name;

type Str = Spanned<String>;

/// Default headers carrying the authenticated consumer and plan upstream.
pub const CONSUMER_HEADER: &str = "x-sluice-consumer";
pub const PLAN_HEADER: &str = "x-sluice-plan";

/// The filter fields of a virtual host or route, as written.
pub struct RawFilters<'a> {
    pub auth: Option<&'a Spanned<RawAuth>>,
    pub validate: Option<&'a Spanned<RawValidate>>,
    pub transform: Option<&'a Spanned<RawTransforms>>,
    pub rate_limit: Option<&'a Spanned<RawRateLimit>>,
    pub lua: Option<&'a Spanned<RawUserLua>>,
}

/// The `auth` / `validate` / `transform` / `rate_limit` / `lua` fields of
/// a virtual host or route; `lua_check` compiles a user's Lua (see
/// [`crate::rules::Options::lua`]).
pub fn filters(
    raw: RawFilters<'_>,
    lua_check: Option<&LuaCheck>,
    path: &str,
    d: &mut Diags,
) -> Filters {
    let RawFilters {
        auth,
        validate,
        transform,
        rate_limit,
        lua,
    } = raw;
    let (request, response) = match transform {
        None => (None, None),
        Some(t) => {
            let p = format!("{path}.transform");
            if t.request.is_none() && t.response.is_none() {
                d.error(t.span(), &p, "transform needs `request` and/or `response`");
            }
            let req = t
                .request
                .as_ref()
                .map(|r| transform::transform(r, &format!("{p}.request"), true, d));
            let resp = t
                .response
                .as_ref()
                .map(|r| transform::transform(r, &format!("{p}.response"), false, d));
            (req, resp)
        }
    };
    Filters {
        auth: auth.map(|a| self::auth(a, &format!("{path}.auth"), d)),
        validate: validate.map(|v| transform::validate(v, &format!("{path}.validate"), d)),
        request,
        response,
        rate_limit: rate_limit.map(|r| self::rate_limit(r, &format!("{path}.rate_limit"), d)),
        lua: lua.map(|l| user_lua(l, lua_check, &format!("{path}.lua.source"), d)),
    }
}

/// A user's snippet must compile in LuaJIT and pass the same lint as
/// sluice's own script, so a bad one is a rules error, not a NACK. The
/// compile check is the caller's (`check`, from the edge); without one the
/// snippet is only linted.
fn user_lua(
    raw: &Spanned<RawUserLua>,
    check: Option<&LuaCheck>,
    path: &str,
    d: &mut Diags,
) -> UserLua {
    let checked = match check {
        Some(check) => check("lua.source", &raw.source),
        None => lua_script::lint("lua.source", &raw.source),
    };
    if let Err(e) = checked {
        d.error(raw.source.span(), path, e.to_string());
    }
    UserLua {
        source: raw.source.to_string(),
    }
}

fn rate_limit(raw: &Spanned<RawRateLimit>, path: &str, d: &mut Diags) -> RateLimit {
    let key = match raw.key.as_ref().map(|k| k.as_str()) {
        None | Some("route") => RateLimitKey::Route,
        Some("plan") => RateLimitKey::Plan,
        Some("consumer") => RateLimitKey::Consumer,
        Some(other) => {
            let at = raw.key.as_ref().map_or(*raw.span(), |k| *k.span());
            d.error(
                &at,
                format!("{path}.key"),
                format!("unknown key `{other}`; valid values are route, plan, consumer"),
            );
            RateLimitKey::Route
        }
    };
    let requests = int(d, &raw.requests, &format!("{path}.requests"), 1..=u32::MAX).unwrap_or(1);
    let per = match &raw.per {
        None => Duration::from_secs(1),
        Some(p) => match duration(d, p, &format!("{path}.per")) {
            // Envoy's token bucket refills at most every 50ms.
            Some(per) if per < Duration::from_millis(50) => {
                d.error(p.span(), format!("{path}.per"), "must be at least 50ms");
                per
            }
            Some(per) => per,
            None => Duration::from_secs(1),
        },
    };
    if key == RateLimitKey::Route && !raw.overrides.0.is_empty() {
        d.error(
            raw.span(),
            format!("{path}.overrides"),
            "overrides need `key: plan` or `key: consumer`",
        );
    }
    let mut overrides: Vec<(String, u32)> = raw
        .overrides
        .0
        .iter()
        .filter_map(|(name, n)| {
            let p = format!("{path}.overrides.{}", name.as_str());
            int(d, &Spanned::new(*name.span(), n.clone()), &p, 1..=u32::MAX)
                .map(|n| (name.to_string(), n))
        })
        .collect();
    overrides.sort();
    RateLimit {
        key,
        requests,
        per,
        overrides,
    }
}

fn auth(raw: &Spanned<RawAuth>, path: &str, d: &mut Diags) -> Auth {
    let given: Vec<&str> = [
        raw.api_key.as_ref().map(|_| "api_key"),
        raw.basic.as_ref().map(|_| "basic"),
        raw.jwt.as_ref().map(|_| "jwt"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        let msg = format!(
            "use one of `api_key`, `basic` or `jwt`, not {}",
            given.join(" and ")
        );
        d.error(raw.span(), path, msg);
    }
    let method = if let Some(k) = &raw.api_key {
        Some(AuthMethod::ApiKey(api_key(
            k,
            &format!("{path}.api_key"),
            d,
        )))
    } else if let Some(b) = &raw.basic {
        Some(AuthMethod::Basic(basic(b, &format!("{path}.basic"), d)))
    } else {
        raw.jwt
            .as_ref()
            .map(|j| AuthMethod::Jwt(jwt::jwt(j, &format!("{path}.jwt"), d)))
    };
    if method.is_none() && raw.ip.is_none() {
        d.error(
            raw.span(),
            path,
            "auth needs `api_key`, `basic`, `jwt` or `ip`",
        );
    }
    let ip = raw.ip.as_ref().map(|ip| IpRule {
        allow: cidrs(&ip.allow, &format!("{path}.ip.allow"), d),
        deny: cidrs(&ip.deny, &format!("{path}.ip.deny"), d),
    });
    let header = |h: &Option<Str>, field: &str, default: &str, d: &mut Diags| match h {
        Some(h) => header_name(h, &format!("{path}.{field}"), d),
        None => default.to_string(),
    };
    Auth {
        ip,
        method,
        consumer_header: header(&raw.consumer_header, "consumer_header", CONSUMER_HEADER, d),
        plan_header: header(&raw.plan_header, "plan_header", PLAN_HEADER, d),
    }
}

fn api_key(raw: &Spanned<RawApiKey>, path: &str, d: &mut Diags) -> ApiKeyAuth {
    if raw.header.is_none() && raw.query.is_none() && raw.json_field.is_none() {
        d.error(
            raw.span(),
            path,
            "api_key needs at least one of `header`, `query`, `json_field`",
        );
    }
    let mut keys: BTreeMap<String, Credential> = BTreeMap::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let p = format!("{path}.keys[{i}]");
        for (field, v) in [
            ("user", &k.user),
            ("password", &k.password),
            ("password_sha256", &k.password_sha256),
        ] {
            if let Some(v) = v {
                d.error(
                    v.span(),
                    format!("{p}.{field}"),
                    format!(
                        "`{field}` belongs to basic users; an API key takes `key` or `key_sha256`"
                    ),
                );
            }
        }
        header_values(d, &p, [("consumer", &k.consumer), ("plan", &k.plan)]);
        let Some(sha256) = secret(k, &k.key, &k.key_sha256, "key", &p, d) else {
            continue;
        };
        let Some(consumer) = required(&k.consumer, k, "consumer", &p, d) else {
            continue;
        };
        if keys.contains_key(&sha256) {
            d.error(k.span(), &p, "this key is listed twice");
            continue;
        }
        let plan = k.plan.as_ref().map(|s| s.to_string());
        keys.insert(
            sha256.clone(),
            Credential {
                sha256,
                consumer,
                plan,
            },
        );
    }
    if raw.keys.is_empty() {
        d.error(
            raw.keys.span(),
            format!("{path}.keys"),
            "keys must not be empty",
        );
    }
    let name = |v: &Option<Str>, f: &str, d: &mut Diags| {
        v.as_ref()
            .map(|h| header_name(h, &format!("{path}.{f}"), d))
    };
    ApiKeyAuth {
        header: name(&raw.header, "header", d),
        query: raw.query.as_ref().map(|q| q.to_string()),
        json_field: raw.json_field.as_ref().map(|q| q.to_string()),
        keys: keys.into_values().collect(),
    }
}

fn basic(raw: &Spanned<RawBasic>, path: &str, d: &mut Diags) -> BasicAuth {
    let mut users: BTreeMap<String, Credential> = BTreeMap::new();
    for (i, u) in raw.users.iter().enumerate() {
        let p = format!("{path}.users[{i}]");
        for (field, v) in [("key", &u.key), ("key_sha256", &u.key_sha256)] {
            if let Some(v) = v {
                d.error(v.span(), format!("{p}.{field}"), format!("`{field}` belongs to API keys; a basic user takes `password` or `password_sha256`"));
            }
        }
        // The user name is the consumer when none is given.
        let consumer = if u.consumer.is_some() {
            &u.consumer
        } else {
            &u.user
        };
        let consumer_field = if u.consumer.is_some() {
            "consumer"
        } else {
            "user"
        };
        header_values(d, &p, [(consumer_field, consumer), ("plan", &u.plan)]);
        let Some(user) = required(&u.user, u, "user", &p, d) else {
            continue;
        };
        if user.contains(':') {
            d.error(
                u.span(),
                format!("{p}.user"),
                "a Basic user name cannot contain `:`",
            );
        }
        let Some(sha256) = secret(u, &u.password, &u.password_sha256, "password", &p, d) else {
            continue;
        };
        if users.contains_key(&user) {
            d.error(
                u.span(),
                format!("{p}.user"),
                format!("user `{user}` is listed twice"),
            );
            continue;
        }
        let consumer = u
            .consumer
            .as_ref()
            .map_or_else(|| user.clone(), |c| c.to_string());
        let plan = u.plan.as_ref().map(|s| s.to_string());
        users.insert(
            user,
            Credential {
                sha256,
                consumer,
                plan,
            },
        );
    }
    // Sent back in `WWW-Authenticate`.
    header_values(d, path, [("realm", &raw.realm)]);
    BasicAuth {
        realm: raw
            .realm
            .as_ref()
            .map_or_else(|| "sluice".to_string(), |r| r.to_string()),
        users: users.into_iter().collect(),
    }
}

/// `plain` (hashed here) or `<plain>_sha256` (64 hex digits), exactly one.
fn secret(
    at: &Spanned<RawCredential>,
    plain: &Option<Str>,
    hashed: &Option<Str>,
    what: &str,
    path: &str,
    d: &mut Diags,
) -> Option<String> {
    match (plain, hashed) {
        (Some(p), None) => {
            if p.is_empty() {
                d.error(
                    p.span(),
                    format!("{path}.{what}"),
                    format!("{what} must not be empty"),
                );
                return None;
            }
            Some(
                Sha256::digest(p.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            )
        }
        (None, Some(h)) => {
            let hex = h.to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                d.error(
                    h.span(),
                    format!("{path}.{what}_sha256"),
                    "expected 64 hex digits (a SHA-256)",
                );
                return None;
            }
            Some(hex)
        }
        (Some(_), Some(h)) => {
            d.error(
                h.span(),
                format!("{path}.{what}_sha256"),
                format!("give `{what}` or `{what}_sha256`, not both"),
            );
            None
        }
        (None, None) => {
            d.error(
                at.span(),
                path,
                format!("needs `{what}` or `{what}_sha256`"),
            );
            None
        }
    }
}

/// Values that reach a request or response as header values (see
/// [`header_value`]), each checked at its own position.
fn header_values<const N: usize>(d: &mut Diags, path: &str, fields: [(&str, &Option<Str>); N]) {
    for (field, value) in fields {
        if let Some(v) = value {
            header_value(d, v, v.span(), &format!("{path}.{field}"));
        }
    }
}

fn required(
    v: &Option<Str>,
    at: &Spanned<RawCredential>,
    field: &str,
    path: &str,
    d: &mut Diags,
) -> Option<String> {
    match v {
        Some(s) if !s.is_empty() => Some(s.to_string()),
        _ => {
            d.error(
                at.span(),
                format!("{path}.{field}"),
                format!("`{field}` is required"),
            );
            None
        }
    }
}

fn cidrs(list: &[Str], path: &str, d: &mut Diags) -> Vec<String> {
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let (addr, len) = match c.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (c.as_str(), None),
        };
        let parsed: Option<IpAddr> = addr.parse().ok();
        let max = match parsed {
            Some(IpAddr::V4(_)) => 32,
            Some(IpAddr::V6(_)) => 128,
            None => 0,
        };
        let ok = parsed.is_some() && len.is_none_or(|l| l.parse::<u8>().is_ok_and(|l| l <= max));
        match (ok, parsed) {
            // Normalised, so equal rules give equal config.
            (true, Some(ip)) => out.push(match len {
                Some(l) => format!("{ip}/{l}"),
                None => ip.to_string(),
            }),
            _ => d.error(
                c.span(),
                format!("{path}[{i}]"),
                format!(
                    "`{}` is not an IP address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)",
                    c.as_str()
                ),
            ),
        }
    }
    out
}
