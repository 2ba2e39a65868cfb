//! Rules files: YAML text → validated [`model::Config`](crate::model::Config).
//!
//! Loading runs in two passes. [`raw`] parses the YAML with marked-yaml into
//! serde structs that keep each value's position and rejects unknown fields
//! and wrong types. [`validate`] (with `listener` and `route`) checks
//! meaning — names, ranges, references, weights, regexes — and builds the
//! model. Both passes report into one [`error::Diags`], so a user sees every
//! problem of a file at once, each as `file:line:column: path: message`.
//! The file format is documented in `docs/rules.md`.

mod diagnose;
mod discovery;
mod duration;
mod error;
mod filters;
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
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use crate::model::Config;

/// The rules' duration syntax (`250ms`, `1.5s`), also used by `sluice sim`.
pub(crate) use duration::parse_duration;
pub use error::{Diagnostic, RulesError};
pub use origins::{ListenerOrigin, Origins, ServiceOrigin, VirtualHostOrigin};

/// Parses and validates a rules file's text. `source_name` is what
/// diagnostics print as the file.
pub fn parse(source_name: &str, text: &str) -> Result<Config, RulesError> {
    let mut diags = error::Diags::new(source_name);
    let Some(raw) = raw::load(text, &mut diags) else {
        // Not YAML: `load` has reported why.
        return Err(diags.into_error());
    };
    let config = validate::validate(&raw, &mut diags);
    diags.finish(config)
}

/// [`parse`], and where each listener, virtual host, route and service is
/// written ([`Origins`]), for whatever reports on compiled resources.
/// `parse` does not build them: a position and a field path per route is
/// memory that serving and `validate` do not need.
pub fn parse_with_origins(source_name: &str, text: &str) -> Result<(Config, Origins), RulesError> {
    let mut diags = error::Diags::new(source_name);
    let Some(raw) = raw::load(text, &mut diags) else {
        return Err(diags.into_error());
    };
    let config = validate::validate(&raw, &mut diags);
    let origins = origins::collect(&raw, &diags);
    diags.finish((config, origins))
}

/// Reads and parses the rules file at `path`; a read failure is reported as
/// a diagnostic at 1:1 of that file.
pub fn load_file(path: &Path) -> Result<Config, RulesError> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&name, &text),
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
