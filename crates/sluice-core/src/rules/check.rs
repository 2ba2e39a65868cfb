//! The small checkers every level of the rules shares: names, integers,
//! ports, addresses, durations, header values and regexes, duplicates
//! ([`Seen`]) and references to services ([`Catalog`]). Each reports to
//! [`Diags`] and returns a placeholder on error, so that checking goes on
//! and one run finds every problem.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use crate::rules::yaml::{Span, Spanned};

use super::duration::parse_duration;
use super::error::{shown, Diags, Loc};
use super::re2;
use crate::lua_script::LuaCheck;
use crate::model::{Backend, Service};

/// Longest name accepted for services, subsets, listeners, hosts, routes.
pub const MAX_NAME_LEN: usize = 60;

/// The services a route may point at, and what else validating a route
/// needs from its caller.
pub struct Catalog<'a> {
    pub services: &'a BTreeMap<String, Arc<Service>>,
    /// Services whose entry was malformed: already reported, so references
    /// to them are not reported again.
    pub broken: &'a BTreeSet<String>,
    /// The edge's compile check for users' Lua ([`super::Options::lua`]).
    pub lua: Option<&'a LuaCheck>,
}

/// The line of the first occurrence of each key, to report duplicates
/// against. Names are borrowed from the raw file, not copied (a name can
/// be megabytes long).
#[derive(Default)]
pub struct Seen<'a>(HashMap<Cow<'a, str>, u32>);

impl<'a> Seen<'a> {
    /// Records `name`; reports it (and returns false) if it was seen before.
    pub fn first(
        &mut self,
        d: &mut Diags,
        name: &'a Spanned<String>,
        path: &str,
        what: &str,
    ) -> bool {
        let loc = d.loc(name.span());
        self.first_at(d, name.as_str(), loc, path, what)
    }

    pub fn first_at(
        &mut self,
        d: &mut Diags,
        key: impl Into<Cow<'a, str>>,
        loc: Loc,
        path: &str,
        what: &str,
    ) -> bool {
        let key = key.into();
        match self.0.get(&key) {
            Some(first) => {
                let msg = format!(
                    "duplicate {what} `{}` (first defined at line {})",
                    shown(&key),
                    first
                );
                d.error_at(loc, path, msg);
                false
            }
            None => {
                self.0.insert(key, line_of(loc));
                true
            }
        }
    }
}

impl Catalog<'_> {
    /// Resolves a `service` / `subset` reference, reporting dangling ones.
    pub fn backend(
        &self,
        d: &mut Diags,
        service: &Spanned<String>,
        subset: Option<&Spanned<String>>,
        path: &str,
    ) -> Backend {
        let backend = Backend {
            service: service.to_string(),
            subset: subset.map(|s| s.to_string()),
        };
        if self.broken.contains(service.as_str()) {
            return backend;
        }
        let Some(found) = self.services.get(service.as_str()) else {
            let known: Vec<&str> = self.services.keys().map(String::as_str).collect();
            let msg = format!(
                "unknown service `{}`; defined services: {}",
                shown(service),
                list_or_none(&known)
            );
            d.error(service.span(), format!("{path}.service"), msg);
            return backend;
        };
        if let Some(subset) = subset {
            if !found.subsets.contains_key(subset.as_str()) {
                let known: Vec<&str> = found.subsets.keys().map(String::as_str).collect();
                let msg = format!(
                    "service `{}` has no subset `{}`; its subsets: {}",
                    found.name,
                    subset.as_str(),
                    list_or_none(&known)
                );
                d.error(subset.span(), format!("{path}.subset"), msg);
            }
        }
        backend
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

/// Checks the shared name rule: `[a-z0-9][a-z0-9_-]*`, at most 60 chars.
/// `~` and `.` are excluded because cluster names are `service~subset`.
/// An invalid name comes back cut as diagnostics show it.
pub fn check_name(d: &mut Diags, name: &Spanned<String>, path: &str) -> String {
    if name_is_valid(d, name, path) {
        name.to_string()
    } else {
        // The file is refused: keep no copy of a name that may be megabytes.
        shown(name).into_owned()
    }
}

/// [`check_name`]'s check alone, for a caller that keeps the name it
/// owns rather than a copy: reports an invalid name, and says whether it
/// is valid.
pub fn name_is_valid(d: &mut Diags, name: &Spanned<String>, path: &str) -> bool {
    let s = name.as_str();
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    let first_ok = s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_ok || !s.chars().all(valid_char) || s.len() > MAX_NAME_LEN {
        let msg = format!(
            "invalid name `{}`: use lowercase letters, digits, `-` and `_`, starting with a letter or digit, at most {MAX_NAME_LEN} characters",
            shown(s)
        );
        d.error(name.span(), path, msg);
        return false;
    }
    true
}

/// An integer within `range`.
pub fn int(
    d: &mut Diags,
    value: &Spanned<impl AsRef<str>>,
    path: &str,
    range: RangeInclusive<u32>,
) -> Option<u32> {
    let text: &str = (**value).as_ref();
    let parsed = text.parse::<u32>().ok().filter(|n| range.contains(n));
    if parsed.is_none() {
        let msg = format!(
            "expected an integer from {} to {}, found `{}`",
            range.start(),
            range.end(),
            text
        );
        d.error(value.span(), path, msg);
    }
    parsed
}

pub fn port(d: &mut Diags, value: &Spanned<impl AsRef<str>>, path: &str) -> u16 {
    int(d, value, path, 1..=65535)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0)
}

pub fn ip(d: &mut Diags, value: &Spanned<impl AsRef<str>>, path: &str) -> IpAddr {
    let text: &str = (**value).as_ref();
    match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => {
            let msg = format!("invalid IP address `{text}`: expected an IPv4 or IPv6 literal such as 127.0.0.1 or ::1 (host names are not resolved)");
            d.error(value.span(), path, msg);
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    }
}

pub fn duration(d: &mut Diags, value: &Spanned<String>, path: &str) -> Option<Duration> {
    match parse_duration(value.as_str()) {
        Ok(t) => Some(t),
        Err(msg) => {
            d.error(value.span(), path, msg);
            None
        }
    }
}

/// A duplicate-detection key for an address and port.
pub fn socket_key(address: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(address, port).to_string()
}

/// The items of a list that repeat an earlier item's key, as (index, line
/// of the first item with that key), in index order; `keys` gives each
/// item's key and line, in list order. For lists too long for a table of
/// keys held while they are read (a service's endpoints, 100,000s): the
/// keys are sorted here and dropped, before the caller builds anything,
/// so they never add to what it holds at its peak. A list is at most
/// `u32::MAX` items (a rules file in memory is far smaller).
pub fn repeats<K: Ord>(keys: impl Iterator<Item = (K, u32)>) -> Vec<(u32, u32)> {
    let mut keys: Vec<(K, u32, u32)> = keys
        .enumerate()
        .map(|(i, (key, line))| (key, u32::try_from(i).unwrap_or(u32::MAX), line))
        .collect();
    keys.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut out = Vec::new();
    for same in keys.chunk_by(|a, b| a.0 == b.0) {
        let first_line = same[0].2;
        out.extend(same[1..].iter().map(|&(_, index, _)| (index, first_line)));
    }
    out.sort_unstable();
    out
}

/// An address and port as [`ip`] and [`port`] read them, placeholders
/// included, without reporting anything.
pub fn socket_quietly(address: &str, port: &str) -> (IpAddr, u16) {
    let address = address.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let port = port
        .parse::<u32>()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0);
    (address, port)
}

/// A line as duplicate detection keeps it (a file of more than 4 G lines
/// is refused long before).
pub fn line_of(loc: Loc) -> u32 {
    u32::try_from(loc.line).unwrap_or(u32::MAX)
}

/// A duration greater than zero.
pub fn positive(d: &mut Diags, v: &Spanned<String>, path: &str) -> Duration {
    match duration(d, v, path) {
        Some(t) if t.is_zero() => {
            d.error(v.span(), path, "must be greater than 0");
            Duration::from_secs(1)
        }
        Some(t) => t,
        None => Duration::from_secs(1),
    }
}

/// Checks a value that becomes an HTTP header value (a consumer, a set
/// header, a redirect host, …), reported at `at`. Envoy refuses control
/// characters other than tab in header values: NUL, CR and LF make it NACK
/// a route, the others make it answer each request with 503 `invalid header
/// value`. `${...}` placeholders are filled at request time, not here.
pub fn header_value(d: &mut Diags, value: &str, at: &Span, path: &str) {
    let Some((i, c)) = value
        .char_indices()
        .find(|(_, c)| c.is_ascii_control() && *c != '\t')
    else {
        return;
    };
    let msg = format!(
        "header value `{}` holds the control character {c:?} at byte {i}; Envoy refuses control characters other than tab in header values",
        value.escape_debug()
    );
    d.error(at, path, msg);
}

/// Rejects what neither the `regex` crate nor RE2 accepts, and what Envoy's
/// RE2 would compile to a program over its size limit (`super::re2`).
pub fn check_regex(d: &mut Diags, value: &Spanned<String>, path: &str) {
    if let Err(err) = regex::Regex::new(value.as_str()) {
        let text = err.to_string();
        // Syntax errors span several lines (pattern, carets, reason); a
        // diagnostic is one line, so keep the reason.
        let reason = text
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or_else(|| text.lines().last().unwrap_or("invalid"));
        d.error(
            value.span(),
            path,
            format!("invalid regex `{}`: {reason}", value.as_str()),
        );
        return;
    }
    if let Some(size) = re2::program_size(value.as_str()).filter(|s| s.over_limit()) {
        let msg = format!(
            "regex `{}` is too large for Envoy: RE2 compiles it to {size} instructions (estimated) and Envoy refuses more than {}; counted repeats cost the most (`[a-z]{{1,64}}` is 64 copies of its class): use fewer, smaller ones, or `+`/`*`",
            value.as_str(),
            re2::MAX_PROGRAM_SIZE
        );
        d.error(value.span(), path, msg);
    }
}
