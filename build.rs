//! Compiles `proto/` without `protoc`: `protox` parses the files into a
//! descriptor set in pure Rust, and `tonic-prost-build` generates the
//! messages, client and server from it. A fresh machine needs nothing
//! beyond cargo for the project's own protos.

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
