//! The xDS protocol without I/O: encoded resources and snapshots, what
//! changed between publishes, the wire form of responses, and the sans-io
//! session state machine (SotW and delta). The tonic service that runs
//! sessions on streams is in the `sluice` crate.

pub mod access;
pub mod history;
pub mod resource;
pub mod session;
pub mod wire;

pub use resource::{DataPlane, Resource, Snapshot, Snapshots, TypeUrl};
