//! Rules files: YAML text → validated [`model::Config`](crate::model::Config).
//!
//! Loading runs in two passes. `raw` reads the YAML as a stream of events
//! (`yaml`, no tree) into serde structs that keep each value's position
//! and rejects unknown fields and wrong types. `validate` (with `listener` and `route`) checks
//! meaning — names, ranges, references, weights, regexes — and builds the
//! model; `check` holds the checkers of single values every level shares.
//! Both passes report into one `error::Diags`, so a user sees every problem
//! of a file at once, each as `file:line:column: path: message`.
//! The file format is documented in `docs/rules.md`.

mod check;
mod chunked;
mod diagnose;
mod discovery;
mod duration;
mod error;
mod filters;
mod grpc;
mod listener;
mod listener_tls;
mod origins;
mod raw;
mod raw_policy;
mod re2;
mod resilience;
mod route;
mod route_policy;
mod service_policy;
mod spanned_map;
mod validate;
mod xds_access;
/// Also read by the endpoints file source (`discovery::file`).
pub mod yaml;

#[cfg(test)]
mod tests;

use std::path::Path;

use crate::lua_script::LuaCheck;
use crate::model::Config;

/// The rules' duration syntax (`250ms`, `1.5s`), also used by `sluice sim`.
pub use duration::parse_duration;
pub use error::{shown, Diagnostic, RulesError};
pub use origins::{ListenerOrigin, Origins, ServiceOrigin, VirtualHostOrigin};

/// What parsing may call out to. The default is a pure parse.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// Compiles a user's `lua.source` snippet in LuaJIT: the edges that
    /// serve or validate rules (`sluice validate`, `serve`, the diff
    /// planner) pass `sluice_sim::lua::check`, so a snippet that does not
    /// compile is a rules error at its file:line:column, never a NACK.
    /// Without one (a pure caller: tests, tools that only read the
    /// config), the snippet is linted (no forbidden names) but not
    /// compiled; everything else is validated the same.
    pub lua: Option<&'a LuaCheck>,
}

impl<'a> Options<'a> {
    /// Options whose Lua snippets are compiled by `check`.
    pub fn with_lua(check: &'a LuaCheck) -> Options<'a> {
        Options { lua: Some(check) }
    }

    /// Parses and validates a rules file's text (see [`parse`]).
    pub fn parse(&self, source_name: &str, text: &str) -> Result<Config, RulesError> {
        let mut diags = error::Diags::new(source_name);
        let raw = raw::load(text, &mut diags);
        self.validate(raw, diags)
    }

    /// [`Options::parse`] of text the caller has no further use for: it
    /// is freed once read, before the model is built, so that a large
    /// file's text and its model are never held at once (`sluice
    /// validate`, which only reports). Same result and diagnostics.
    pub fn parse_owned(&self, source_name: &str, text: String) -> Result<Config, RulesError> {
        let mut diags = error::Diags::new(source_name);
        let raw = raw::load(&text, &mut diags);
        drop(text);
        self.validate(raw, diags)
    }

    /// The model of what [`raw::load`] read, or every diagnostic.
    fn validate(
        &self,
        raw: Option<raw::RawConfig>,
        mut diags: error::Diags,
    ) -> Result<Config, RulesError> {
        let Some(raw) = raw else {
            // Not YAML: `load` has reported why.
            return Err(diags.into_error());
        };
        let config = validate::validate(raw, self, &mut diags);
        diags.finish(config)
    }

    /// [`Options::parse`], and where each listener, virtual host, route
    /// and service is written (see [`parse_with_origins`]).
    pub fn parse_with_origins(
        &self,
        source_name: &str,
        text: &str,
    ) -> Result<(Config, Origins), RulesError> {
        let mut diags = error::Diags::new(source_name);
        let Some(raw) = raw::load(text, &mut diags) else {
            return Err(diags.into_error());
        };
        // Before `validate`, which consumes the raw structs (positions do
        // not depend on what validation reports).
        let origins = origins::collect(&raw, &diags);
        let config = validate::validate(raw, self, &mut diags);
        diags.finish((config, origins))
    }
}

/// Parses and validates a rules file's text. `source_name` is what
/// diagnostics print as the file. Pure: users' Lua snippets are linted but
/// not compiled (see [`Options::lua`]; edges use [`Options::with_lua`]).
pub fn parse(source_name: &str, text: &str) -> Result<Config, RulesError> {
    Options::default().parse(source_name, text)
}

/// [`parse`], and where each listener, virtual host, route and service is
/// written ([`Origins`]), for whatever reports on compiled resources.
/// `parse` does not build them: a position and a field path per route is
/// memory that serving and `validate` do not need.
pub fn parse_with_origins(source_name: &str, text: &str) -> Result<(Config, Origins), RulesError> {
    Options::default().parse_with_origins(source_name, text)
}

/// Reads and parses the rules file at `path` (see [`read_text`]); pure,
/// like [`parse`].
pub fn load_file(path: &Path) -> Result<Config, RulesError> {
    let text = read_text(path)?;
    Options::default().parse_owned(&path.display().to_string(), text)
}

/// Reads the rules file at `path` as text. A read failure is a diagnostic
/// at 1:1 of that file; a file that is not UTF-8 one at its first invalid
/// byte (see [`text_of`]).
pub fn read_text(path: &Path) -> Result<String, RulesError> {
    let name = path.display().to_string();
    // core-io: the one read sluice-core does, of the file it is asked to read.
    match std::fs::read(path) {
        Ok(bytes) => text_of(&name, bytes),
        Err(err) => {
            let mut diags = error::Diags::new(&name);
            diags.error_at(
                error::Loc::START,
                error::ROOT,
                format!("cannot read rules file: {err}"),
            );
            Err(diags.into_error())
        }
    }
}

/// The bytes of the rules file `source_name` as text, or a diagnostic at
/// the line and column (in characters) of the first byte that is not
/// UTF-8.
pub fn text_of(source_name: &str, bytes: Vec<u8>) -> Result<String, RulesError> {
    let err = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(err) => err,
    };
    let bytes = err.as_bytes();
    let at = err.utf8_error().valid_up_to();
    let valid = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
    let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
    let loc = error::Loc {
        line: valid.matches('\n').count() + 1,
        column: valid[line_start..].chars().count() + 1,
    };
    let mut diags = error::Diags::new(source_name);
    let msg = format!(
        "the file is not UTF-8 (byte 0x{:02X} here); rules files must be UTF-8: save it as UTF-8",
        bytes[at]
    );
    diags.error_at(loc, error::ROOT, msg);
    Err(diags.into_error())
}
