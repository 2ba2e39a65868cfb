//! Scenario runner of issue #7: starts `sluice serve` (the release binary)
//! and a simulated fleet in separate processes on loopback, runs one
//! scenario, prints a table and writes JSON. See docs/benchmarks.md.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench -- b1 [--sotw]
//! cargo run --release --example bench -- b2 | b3 [--services 100 --proxies 5000] | b4 | b5 | b6
//! cargo run --release --example bench -- b1 --mtls   # sluice's xDS over mTLS (the floor stays plaintext)
//! ```
//!
//! The fleet (`fleet`) and the transport floor (`floor`) are this same
//! program re-run in another mode.

mod b1;
mod b2;
mod b3;
mod b4;
mod b5;
mod b6;
mod b7;
mod b8;
mod b8_rules;
mod cli;
mod fleet;
mod fleet_proc;
mod floor;
mod ha;
mod pki;
mod procs;
mod setup;
mod topo;

/// The fleet is thousands of small maps rebuilt on every response; glibc's
/// allocator spent ~40 % of its CPU in B3 (see docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    cli::main(&args, None)
}
