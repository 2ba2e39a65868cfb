//! sluice: an Envoy xDS control plane.
//!
//! Data flows one way: `rules` (YAML → validated [`model::Config`]) →
//! `compile` (pure: config → per-group [`xds::Snapshots`]) → `xds` (sessions
//! that stream snapshots to Envoys over ADS). `serve` wires these together
//! with the file watcher and the admin HTTP server.

pub mod model;
pub mod rules;
pub mod xds;
