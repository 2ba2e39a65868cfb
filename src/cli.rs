//! Command-line interface: `serve`, `validate`, `diff`, `rules`,
//! `bootstrap`, `status`, `sim`, `drain`, `rollout`.
//!
//! Only the dispatcher: each subcommand's arguments and `run()` live in
//! its own module (`serve_cli`, `rules_cli`, `bootstrap_cli`,
//! `status_cli`, `sim_cli`, `drain_cli`, `rollout_cli`), which share
//! `cli_support` and never import this module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bootstrap_cli::BootstrapArgs;
use crate::drain_cli::DrainCommand;
use crate::rollout_cli::RolloutArgs;
use crate::rules_cli::{DiffArgs, RulesCommand};
use crate::serve_cli::{ServeArgs, ValidateArgs};
use crate::sim_cli::SimArgs;
use crate::status_cli::StatusArgs;

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "An Envoy xDS control plane")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the rules file to Envoys over ADS (SotW and delta), reloading
    /// it when it changes.
    Serve(ServeArgs),
    /// Check rules files; print every error with file:line:column.
    Validate(ValidateArgs),
    /// Show what applying a rules file would change in what a running
    /// sluice serves, per node group and type (exit 0: no change, 1:
    /// changes, 2: the mass-removal guard would hold it, 3: invalid).
    Diff(DiffArgs),
    /// Act on the running sluice's rules: `confirm` publishes an edit the
    /// mass-removal guard holds.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Write an Envoy bootstrap that points a proxy at sluice over ADS.
    Bootstrap(BootstrapArgs),
    /// Show connected proxies: per type, the version sent, ACKed, NACKed.
    Status(StatusArgs),
    /// Connect simulated Envoys to an ADS server and route simulated
    /// traffic through them like Envoy would.
    Sim(SimArgs),
    /// Drain an endpoint or a locality of a service for maintenance (new
    /// requests go elsewhere, in-flight ones finish), undo it, list drains.
    #[command(subcommand)]
    Drain(DrainCommand),
    /// Canary and blue/green rollouts on a running sluice (admin gRPC).
    Rollout(RolloutArgs),
}

pub fn main(cli: Cli) -> ExitCode {
    init_tracing();
    match cli.command {
        Command::Serve(args) => args.run(),
        Command::Validate(args) => args.run(),
        Command::Diff(args) => args.run(),
        Command::Rules(cmd) => cmd.run(),
        Command::Bootstrap(args) => args.run(),
        Command::Status(args) => args.run(),
        Command::Sim(args) => args.run(),
        Command::Drain(cmd) => cmd.run(),
        Command::Rollout(args) => args.run(),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
