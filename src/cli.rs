//! Command-line interface: `serve`, `validate`, `diff`, `rules`,
//! `bootstrap`, `status`, `sim`, `drain`, `rollout`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::bootstrap::{self, BootstrapOptions};
use crate::envoy_check::EnvoyCheck;
use crate::serve::{self, ServeOptions};

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
    Serve {
        #[arg(long, env = "SLUICE_RULES")]
        rules: PathBuf,
        /// Address of the xDS gRPC listener.
        #[arg(long, default_value = "127.0.0.1:18000", env = "SLUICE_XDS_ADDR")]
        xds: SocketAddr,
        /// Address of the admin HTTP listener (health, metrics, status).
        #[arg(long, default_value = "127.0.0.1:9902", env = "SLUICE_ADMIN_ADDR")]
        admin: SocketAddr,
        /// How often the rules file is checked for changes, in milliseconds.
        #[arg(long, default_value_t = 300)]
        watch_interval_ms: u64,
        /// Hold a rules edit that removes more than this share (percent)
        /// of a node group's listeners or clusters, or all of them, until
        /// `sluice rules confirm`; 100 turns the guard off (an empty rules
        /// file is held all the same).
        #[arg(long, default_value_t = crate::guard::DEFAULT_MAX_REMOVAL_PERCENT,
              value_parser = clap::value_parser!(u8).range(0..=100))]
        max_removal_percent: u8,
        /// Run every rules file (at start and on each edit) through this
        /// Envoy binary (`envoy --mode validate`) before serving it; what
        /// Envoy refuses is handled like an invalid edit.
        #[arg(long, value_name = "PATH", env = "SLUICE_VALIDATE_WITH_ENVOY")]
        validate_with_envoy: Option<PathBuf>,
        #[command(flatten)]
        rollouts: crate::rollout_cli::ServeArgs,
    },
    /// Check rules files; print every error with file:line:column.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also run the compiled config through this Envoy binary
        /// (`envoy --mode validate`) and report what it refuses at the rule
        /// that produced it.
        #[arg(long, value_name = "PATH")]
        envoy: Option<PathBuf>,
    },
    /// Show what applying a rules file would change in what a running
    /// sluice serves, per node group and type (exit 0: no change, 1:
    /// changes, 2: the mass-removal guard would hold it, 3: invalid).
    Diff(crate::rules_cli::DiffArgs),
    /// Act on the running sluice's rules: `confirm` publishes an edit the
    /// mass-removal guard holds.
    #[command(subcommand)]
    Rules(crate::rules_cli::RulesCommand),
    /// Write an Envoy bootstrap that points a proxy at sluice over ADS.
    Bootstrap {
        #[arg(long)]
        node_id: String,
        /// The node group (Envoy's node.cluster).
        #[arg(long, default_value = "default")]
        cluster: String,
        /// sluice's xDS address, HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:18000")]
        xds: String,
        /// Envoy's own admin port (bound to 127.0.0.1; 0 lets the kernel pick).
        #[arg(long, default_value_t = 9901)]
        admin_port: u16,
        /// ADS flavour: state-of-the-world or delta (incremental).
        #[arg(long, value_enum, default_value_t = Ads::Sotw)]
        ads: Ads,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The rules service this Envoy runs beside: its local cluster, for
        /// zone-aware routing (`zone_aware` in the rules).
        #[arg(long)]
        local_cluster: Option<String>,
    },
    /// Show connected proxies: per type, the version sent, ACKed, NACKed.
    Status {
        /// sluice's admin address.
        #[arg(long, default_value = "127.0.0.1:9902", env = "SLUICE_ADMIN_ADDR")]
        admin: SocketAddr,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Connect simulated Envoys to an ADS server and route simulated
    /// traffic through them like Envoy would.
    Sim(crate::sim::cli::SimArgs),
    /// Drain an endpoint or a locality of a service for maintenance (new
    /// requests go elsewhere, in-flight ones finish), undo it, list drains.
    #[command(subcommand)]
    Drain(crate::drain_cli::DrainCommand),
    /// Canary and blue/green rollouts on a running sluice (admin gRPC).
    Rollout(crate::rollout_cli::RolloutArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ads {
    Sotw,
    Delta,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub fn main(cli: Cli) -> ExitCode {
    init_tracing();
    match cli.command {
        Command::Serve {
            rules,
            xds,
            admin,
            watch_interval_ms,
            max_removal_percent,
            validate_with_envoy,
            rollouts,
        } => {
            let token = match crate::canary::wiring::token(rollouts.admin_token_file.as_deref()) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = ServeOptions {
                rules,
                xds_addr: xds,
                admin_addr: admin,
                watch_interval: Duration::from_millis(watch_interval_ms.max(10)),
                state_dir: rollouts.state_dir.clone(),
                rollouts: crate::canary::wiring::RolloutOptions {
                    state_dir: rollouts.state_dir,
                    admin_grpc: rollouts.admin_grpc,
                    token,
                    envoy_admin: rollouts.metrics_envoy_admin,
                    prometheus: rollouts.metrics_prometheus,
                    weights: rollouts.rollout_weights,
                },
                guard: crate::guard::Guard {
                    max_removal_percent,
                },
                validate_with_envoy,
            };
            run_serve(opts)
        }
        Command::Validate { files, envoy } => validate(&files, envoy.as_deref()),
        Command::Diff(args) => crate::rules_cli::diff(args),
        Command::Rules(cmd) => crate::rules_cli::run(cmd),
        Command::Bootstrap {
            node_id,
            cluster,
            xds,
            admin_port,
            ads,
            out,
            local_cluster,
        } => {
            let target = BootstrapTarget {
                node_id,
                cluster,
                xds,
                admin_port,
                ads,
                local_cluster,
            };
            write_bootstrap(target, out.as_deref())
        }
        Command::Status { admin, output } => crate::status_cli::run(admin, output),
        Command::Sim(args) => crate::sim::cli::main(args),
        Command::Drain(cmd) => crate::drain_cli::run(cmd),
        Command::Rollout(args) => crate::rollout_cli::main(args),
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

/// The multi-threaded runtime commands run on; `None` (reported) if it
/// cannot start.
pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: starting runtime: {e}");
            None
        }
    }
}

fn run_serve(opts: ServeOptions) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result = rt.block_on(serve::run(opts, shutdown_signal()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn validate(files: &[PathBuf], envoy: Option<&Path>) -> ExitCode {
    // Envoy runs as a child process, awaited on a runtime.
    let envoy = match envoy {
        None => None,
        Some(bin) => match runtime() {
            Some(rt) => Some((rt, EnvoyCheck::new(bin))),
            None => return ExitCode::FAILURE,
        },
    };
    let mut failed = false;
    for path in files {
        let text = match crate::rules::read_text(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{e}");
                failed = true;
                continue;
            }
        };
        let checked = serve::load(path, &text).and_then(|loaded| match &envoy {
            None => Ok(loaded),
            Some((rt, check)) => {
                let name = path.display().to_string();
                rt.block_on(check.check(&name, &text, &loaded.1))
                    .map_err(serve::LoadError::Envoy)?;
                Ok(loaded)
            }
        });
        match checked {
            Ok((config, snapshots)) => println!(
                "{}: ok ({} services, {} listeners, {} node groups{})",
                path.display(),
                config.services.len(),
                config.listeners.len(),
                snapshots.groups.len().max(1),
                if envoy.is_some() {
                    "; envoy accepts them"
                } else {
                    ""
                },
            ),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What `sluice bootstrap` was asked for, before validation.
struct BootstrapTarget {
    node_id: String,
    cluster: String,
    xds: String,
    admin_port: u16,
    ads: Ads,
    local_cluster: Option<String>,
}

fn write_bootstrap(t: BootstrapTarget, out: Option<&Path>) -> ExitCode {
    let xds = t.xds.as_str();
    let Some((host, port)) = xds.rsplit_once(':') else {
        eprintln!("error: --xds must be HOST:PORT, got {xds:?}");
        return ExitCode::FAILURE;
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("error: --xds port must be a number 1-65535, got {port:?}");
        return ExitCode::FAILURE;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut opts = BootstrapOptions::new(t.node_id, t.cluster, host, port);
    opts.admin_port = t.admin_port;
    opts.delta = t.ads == Ads::Delta;
    opts.local_cluster = t.local_cluster;
    let text = match bootstrap::render(&opts) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match out {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                eprintln!("wrote {}; run: envoy -c {}", path.display(), path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: writing {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
    }
}
