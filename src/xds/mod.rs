//! The xDS protocol: encoded resources and snapshots, the sans-io session
//! state machine (SotW and delta), and the tonic service that moves messages
//! between a stream and a session.

pub mod admission;
mod grpc_body;
pub mod listener;
pub mod metrics;
pub mod published;

pub use sluice_core::xds::*;
pub mod registry;
pub mod server;
pub mod services;
mod stream;
pub mod transport;
