//! The Lua that sluice ships in Envoy's Lua HTTP filter.
//!
//! `filters/` holds static, reviewed Lua: small modules (`filters/lib/`) and
//! the entry point `filters/sluice.lua`. [`bundle`] links them into the one
//! script Envoy runs — each module wrapped in a function that receives its
//! dependencies — so the listener's filter config never changes with the
//! rules. What users write in the rules reaches the script only as data
//! (`LuaPerRoute.filter_context`), never as source.
//!
//! Every script, ours and a user's own snippet, goes through [`check`]
//! before a snapshot is published: it must compile in LuaJIT (mlua, the VM
//! Envoy embeds) and must not name the escape hatches a filter has no use
//! for (`io`, `os`, `require`, `load*`, `dofile`, `debug`, `package`,
//! `ffi`, `getfenv`/`setfenv`, `_G`, `module`). The shipped bundle is
//! checked by this module's tests (it is static); a user's snippet when the
//! rules are loaded, by the edges that pass [`check`] to the rules parser.
//! The script's text, names and lint live in [`sluice_core::lua_script`], which
//! needs no VM.
//!
//! [`runner`] runs the same script in mlua behind an Envoy-like handle, for
//! tests and the simulator.

pub mod runner;

use mlua::Lua;

pub use sluice_core::lua_script::{
    bundle, forbidden_identifier, LuaError, CONTEXT_KEY, FILTER_NAME, FORBIDDEN, USER_FILTER_NAME,
};

/// Compiles `source` with LuaJIT (without running it) and lints it
/// ([`sluice_core::lua_script::lint`]).
pub fn check(name: &str, source: &str) -> Result<(), LuaError> {
    let lua = Lua::new();
    lua.load(source)
        .set_name(format!("={name}"))
        .into_function()
        .map_err(|e| LuaError::Syntax {
            name: name.to_string(),
            message: first_line(&e),
        })?;
    sluice_core::lua_script::lint(name, source)
}

fn first_line(e: &mlua::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests;
