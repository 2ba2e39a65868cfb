//! Generates the prost messages of the vendored protos (see `vendor.py`)
//! into OUT_DIR: `protox` parses them in pure Rust, `prost-build` writes the
//! Rust. The configuration is the one envoy-types used for its generated
//! code (type names with the `type.googleapis.com` domain, well-known types
//! compiled here rather than taken from prost-types), so the types, their
//! paths and their encodings are the same; only the gRPC service stubs are
//! left out. No source info is kept: the generated code carries no proto
//! comments, which keeps it small and out of doctests.

use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=roots.txt");
    let mut roots: Vec<String> = std::fs::read_to_string("roots.txt")?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    roots.sort();

    // One compiler per root: protox resolves a relative type name against
    // every package it has seen, not only those the file imports, so
    // `common.ratelimit.v3.X` in local_rate_limit.proto would resolve into
    // `envoy.extensions.filters.common` (fault.proto) if both were in one
    // pool. Keyed by file name, so each file appears once and in a fixed
    // order.
    let mut files = BTreeMap::new();
    for root in &roots {
        let fds = protox::Compiler::new(["proto"])?
            .include_imports(true)
            .include_source_info(false)
            .open_file(root)?
            .file_descriptor_set();
        for file in fds.file {
            files.entry(file.name().to_owned()).or_insert(file);
        }
    }
    let fds = prost_types::FileDescriptorSet {
        file: files.into_values().collect(),
    };
    prost_build::Config::new()
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com")
        .compile_well_known_types()
        .include_file("mod.rs")
        .compile_fds(fds)?;
    Ok(())
}
