//! Compiles protos without `protoc`: `protox` parses the files into a
//! descriptor set in pure Rust, and `tonic-prost-build` generates Rust from
//! it. A fresh machine needs nothing beyond cargo.
//!
//! - `proto/sluice/admin/v1/rollout.proto`: the admin API's messages,
//!   client and server.
//!
//! The Envoy discovery services are generated in crates/sluice-envoy-grpc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/sluice/admin/v1/rollout.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
