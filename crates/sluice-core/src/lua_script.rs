//! The Lua filter script as text: the names Envoy's config gives the
//! filters, [`bundle`] (the modules in `filters/` linked into the one
//! script Envoy runs) and [`lint`] (the escape hatches a filter script may
//! not name). No Lua VM here, so `compile` and `rules` use it without
//! depending on mlua.
//!
//! Compiling a script takes LuaJIT, which lives at the edges:
//! `sluice_sim::lua::check` compiles and lints, and is what the edges (`sluice
//! validate`, `serve`, the diff planner) hand the rules parser as its
//! [`LuaCheck`]. The shipped bundle is static: its compile check is a test
//! (`lua::tests`).

use std::fmt::Write as _;

/// Name of the HTTP filter in Envoy's config (and of its per-route entry).
pub const FILTER_NAME: &str = "sluice.lua";
/// The filter that runs users' own Lua snippets, after sluice's.
pub const USER_FILTER_NAME: &str = "sluice.user.lua";
/// Key under which a route's settings sit in the filter context.
pub const CONTEXT_KEY: &str = "sluice";

/// (name, source, dependencies), in link order.
const MODULES: &[(&str, &str, &[&str])] = &[
    ("json", include_str!("../../../filters/lib/json.lua"), &[]),
    (
        "sha256",
        include_str!("../../../filters/lib/sha256.lua"),
        &[],
    ),
    (
        "http",
        include_str!("../../../filters/lib/http.lua"),
        &["json"],
    ),
    (
        "auth",
        include_str!("../../../filters/lib/auth.lua"),
        &["json", "sha256", "http"],
    ),
    (
        "validate",
        include_str!("../../../filters/lib/validate.lua"),
        &["json", "http"],
    ),
    (
        "transform",
        include_str!("../../../filters/lib/transform.lua"),
        &["json", "http"],
    ),
];
const ENTRY: &str = include_str!("../../../filters/sluice.lua");

/// Identifiers a filter script may not use.
pub const FORBIDDEN: &[&str] = &[
    "io",
    "os",
    "require",
    "load",
    "loadstring",
    "loadfile",
    "dofile",
    "debug",
    "package",
    "ffi",
    "getfenv",
    "setfenv",
    "_G",
    "module",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LuaError {
    #[error("{name}: does not compile: {message}")]
    Syntax { name: String, message: String },
    #[error("{name}:{line}: `{ident}` is not allowed in a filter script")]
    Forbidden {
        name: String,
        line: usize,
        ident: String,
    },
}

/// A compile check for a user's Lua snippet, given by the edges to the
/// rules parser (`rules::Options::lua`): `(name, source)` → `Ok` when the
/// snippet compiles and passes [`lint`]. `sluice_sim::lua::check` is one.
pub type LuaCheck = dyn Fn(&str, &str) -> Result<(), LuaError> + Sync;

/// The linked filter script, byte-identical on every call.
pub fn bundle() -> String {
    let mut out = String::from("-- sluice filter bundle (generated from filters/; do not edit)\n");
    for (name, source, deps) in MODULES {
        let _ = writeln!(
            out,
            "local {name} = (function(...)\n{source}\nend)({})",
            deps.join(", ")
        );
    }
    out.push_str(ENTRY);
    out
}

/// Lints `source` (named `name` in the error): no forbidden identifier
/// ([`FORBIDDEN`]). It does not compile the script.
pub fn lint(name: &str, source: &str) -> Result<(), LuaError> {
    match forbidden_identifier(source) {
        Some((line, ident)) => Err(LuaError::Forbidden {
            name: name.to_string(),
            line,
            ident,
        }),
        None => Ok(()),
    }
}

/// The first forbidden global name used in `source` (outside strings and
/// comments, and not as a field after `.` or `:`), with its line.
pub fn forbidden_identifier(source: &str) -> Option<(usize, String)> {
    let b = source.as_bytes();
    let (mut i, mut line) = (0, 1);
    let mut prev_sig: u8 = b' ';
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            i += 2;
            if let Some(level) = long_bracket(b, i) {
                i = skip_long(b, i, level, &mut line);
            } else {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
        } else if c == b'"' || c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
            prev_sig = b'"';
        } else if c == b'[' && long_bracket(b, i).is_some() {
            let level = long_bracket(b, i).unwrap_or(0);
            i = skip_long(b, i, level, &mut line);
            prev_sig = b'"';
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let ident = &source[start..i];
            if prev_sig != b'.' && prev_sig != b':' && FORBIDDEN.contains(&ident) {
                return Some((line, ident.to_string()));
            }
            prev_sig = b'a';
        } else {
            if !c.is_ascii_whitespace() {
                // `..` is concatenation, not field access.
                prev_sig = if c == b'.' && b.get(i + 1) == Some(&b'.') {
                    b'+'
                } else {
                    c
                };
                if c == b'.' && b.get(i + 1) == Some(&b'.') {
                    i += 1;
                }
            }
            i += 1;
        }
    }
    None
}

/// At `[` followed by `=`* and `[`: the number of `=`.
fn long_bracket(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut j = i + 1;
    while b.get(j) == Some(&b'=') {
        j += 1;
    }
    (b.get(j) == Some(&b'[')).then_some(j - i - 1)
}

fn skip_long(b: &[u8], i: usize, level: usize, line: &mut usize) -> usize {
    let close: Vec<u8> = std::iter::once(b']')
        .chain(std::iter::repeat_n(b'=', level))
        .chain(std::iter::once(b']'))
        .collect();
    let mut j = i + level + 2;
    while j < b.len() {
        if b[j..].starts_with(&close) {
            return j + close.len();
        }
        if b[j] == b'\n' {
            *line += 1;
        }
        j += 1;
    }
    b.len()
}
