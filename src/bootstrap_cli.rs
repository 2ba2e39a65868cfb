//! `sluice bootstrap`: writes an Envoy bootstrap that points a proxy at
//! sluice over ADS ([`crate::bootstrap`] renders it).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::bootstrap::{self, BootstrapOptions};

/// `sluice bootstrap` arguments.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[arg(long)]
    pub node_id: String,
    /// The node group (Envoy's node.cluster).
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// sluice's xDS address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub xds: String,
    /// Envoy's own admin port (bound to 127.0.0.1; 0 lets the kernel pick).
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
    /// ADS flavour: state-of-the-world or delta (incremental).
    #[arg(long, value_enum, default_value_t = Ads::Sotw)]
    pub ads: Ads,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The rules service this Envoy runs beside: its local cluster, for
    /// zone-aware routing (`zone_aware` in the rules).
    #[arg(long)]
    pub local_cluster: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ads {
    Sotw,
    Delta,
}

impl BootstrapArgs {
    /// Run `sluice bootstrap`.
    pub fn run(self) -> ExitCode {
        let text = match self.render() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        match self.out {
            None => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Some(path) => match std::fs::write(&path, text) {
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

    /// The bootstrap text, or what is wrong with the flags.
    fn render(&self) -> Result<String, String> {
        let xds = self.xds.as_str();
        let Some((host, port)) = xds.rsplit_once(':') else {
            return Err(format!("--xds must be HOST:PORT, got {xds:?}"));
        };
        let Ok(port) = port.parse::<u16>() else {
            return Err(format!("--xds port must be a number 1-65535, got {port:?}"));
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let mut opts =
            BootstrapOptions::new(self.node_id.clone(), self.cluster.clone(), host, port);
        opts.admin_port = self.admin_port;
        opts.delta = self.ads == Ads::Delta;
        opts.local_cluster = self.local_cluster.clone();
        bootstrap::render(&opts).map_err(|e| e.to_string())
    }
}
