//! Generates the Envoy discovery services sluice serves or calls (ADS; CDS,
//! which tests call to see it unimplemented) without `protoc`: `protox`
//! parses the vendored protos of crates/sluice-envoy-api in pure Rust and
//! `tonic-prost-build` writes their clients and servers. Every `.envoy`,
//! `.google`, `.xds`, `.udpa` and `.validate` type maps onto
//! `::envoy_types::pb` (sluice-envoy-api), so there is one set of messages.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let envoy_protos = "../sluice-envoy-api/proto";
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
