//! sluice's core: everything that decides what is served, with no I/O.
//!
//! `rules` (YAML → validated [`model::Config`]) → `compile` (config →
//! per-group [`xds::Snapshots`]) → the xDS `session` state machine of one
//! stream; beside them the rollout `canary::plan` and the weights overlay,
//! `drain`s, the discovery `index` and the endpoint merge, and the
//! mass-removal `guard`. Nothing here opens a socket or a file (rules text
//! and certificate bytes are handed in), starts a task or reads a clock:
//! the `sluice` crate does that and wires these parts together. A Lua
//! compile check is injected by the caller (`rules::Options::lua`).

pub mod backoff;
pub mod canary;
pub mod compile;
pub mod digest;
pub mod discovery;
pub mod drain;
pub mod guard;
pub mod lua_script;
pub mod model;
pub mod rules;
pub mod xds;
