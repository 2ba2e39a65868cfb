//! The `sluice` binary: parse arguments, run.

use clap::Parser;

fn main() -> std::process::ExitCode {
    sluice::cli::main(sluice::cli::Cli::parse())
}
