//! Compiles protos without `protoc`: `protox` parses the files into a
//! descriptor set in pure Rust, and `tonic-prost-build` generates Rust from
//! it. A fresh machine needs nothing beyond cargo.
//!
//! - `proto/sluice/admin/v1/rollout.proto`: the admin API's messages,
//!   client and server.
//! - The Envoy discovery services sluice serves or calls (ADS; CDS, which
//!   tests call to see it unimplemented): their client and server only. Their
//!   messages come from the `envoy-types` crate (crates/sluice-envoy-api),
//!   which generates messages but no services so that sluice-core carries no
//!   gRPC crate; every `.envoy`, `.google`, `.xds`, `.udpa` and `.validate`
//!   type maps onto `::envoy_types::pb`, so there is one set of types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/sluice/admin/v1/rollout.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    let envoy_protos = "crates/sluice-envoy-api/proto";
    let services = [
        "envoy/service/cluster/v3/cds.proto",
        "envoy/service/discovery/v3/ads.proto",
    ];
    for file in services {
        println!("cargo:rerun-if-changed={envoy_protos}/{file}");
    }
    let mut fds = protox::Compiler::new([envoy_protos])?
        .include_imports(true)
        .include_source_info(false)
        .open_files(services)?
        .file_descriptor_set();
    // Generate only the service files; the imports were needed to parse them.
    fds.file.retain(|f| services.contains(&f.name()));
    let mut build = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true);
    for package in ["envoy", "google", "xds", "udpa", "validate"] {
        build = build.extern_path(
            format!(".{package}"),
            format!("::envoy_types::pb::{package}"),
        );
    }
    build.compile_fds(fds)?;
    Ok(())
}
