//! sluice: an Envoy xDS control plane.
//!
//! Data flows one way: `rules` (YAML → validated [`model::Config`]) →
//! `compile` (pure: config → per-group [`xds::Snapshots`]) → `xds` (sessions
//! that stream snapshots to Envoys over ADS). `serve` wires these together
//! with the rules file watcher and the `admin` HTTP listener; `cli` is the
//! command line (it dispatches to the `*_cli` modules, which share
//! `cli_support`).
//!
//! The pure core ([`sluice_core`]), the xDS server ([`sluice_xds`]), the
//! discovery sources ([`sluice_discovery`]) and the simulator with its Lua
//! runner ([`sluice_sim`]) are crates of their own; this crate re-exports
//! them at the paths they had inside it (`sluice::xds`, `sluice::sim`, …)
//! and holds the wiring and the command line.

pub mod admin;
pub use sluice_core::{backoff, compile, digest, guard, lua_script, model, rules};
/// Endpoint discovery ([`sluice_discovery`]) at its old path.
pub use sluice_discovery as discovery;
/// The simulator ([`sluice_sim`]) at its old path.
pub use sluice_sim as sim;
pub use sluice_sim::lua;
/// The xDS server and protocol ([`sluice_xds`]) at its old path.
pub use sluice_xds as xds;
pub mod bootstrap;
pub mod bootstrap_cli;
pub mod canary;
pub mod cli;
pub mod cli_support;
pub mod drain;
pub mod drain_cli;
pub mod envoy_check;
pub mod grpc_bootstrap;
pub mod ha;
pub mod metrics;
pub mod rollout_cli;
pub mod rules_cli;
pub mod rules_watch;
pub mod serve;
pub mod serve_cli;
pub mod sim_cli;
pub mod state_file;
pub mod status_cli;
pub mod tls;
