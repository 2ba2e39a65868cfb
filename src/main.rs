//! The `sluice` binary: parse arguments, run.

use clap::Parser;

/// See docs/benchmarks.md, "Allocator".
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice::cli::main(sluice::cli::Cli::parse())
}
