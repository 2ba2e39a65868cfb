//! Envoy's protobuf messages, for sluice and sluice-core.
//!
//! The messages are generated at build time (build.rs) from the Envoy
//! data-plane-api protos vendored in `proto/` (and the xds, udpa, validate
//! and googleapis protos they import), the same files and the same
//! prost-build configuration as the envoy-types crate, whose module layout
//! this crate keeps: `pb::envoy::config::core::v3::Address`,
//! `pb::google::protobuf::Any`, `util::pack_any`. Both sluice crates depend
//! on it under the name `envoy-types`.
//!
//! It exists because envoy-types also generates the gRPC service stubs of
//! every Envoy API and so depends on tonic (and through it hyper, h2 and
//! tower) with no feature to turn that off; sluice-core, which only builds
//! and encodes messages, must hold no gRPC or HTTP crate. The services sluice
//! uses are generated in the sluice crate on top of these messages.

/// The generated messages, one module per protobuf package.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/mod.rs"));
}

pub mod util;
