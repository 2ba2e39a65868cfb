//! The xDS server: the tonic ADS service that moves messages between a
//! stream and its session, admission, the connected-proxy registry, the
//! listening socket and the server's metrics. The protocol itself — encoded
//! resources and snapshots, the sans-io session state machine (SotW and
//! delta), the diffs between snapshots, the response wire types — is
//! `sluice-core`'s `xds`, re-exported here so `sluice::xds` holds both.

pub mod admission;
mod grpc_body;
pub mod listener;
pub mod metrics;
pub mod published;
pub mod registry;
pub mod server;
mod stream;
pub mod tickets;
pub mod transport;

/// The generated Envoy discovery services (clients for tests and tools).
pub use sluice_envoy_grpc as services;

pub use sluice_core::xds::*;
