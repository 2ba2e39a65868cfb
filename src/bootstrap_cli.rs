//! `sluice bootstrap`: writes an Envoy bootstrap that points a proxy at
//! sluice over ADS ([`crate::bootstrap`] renders it), or with `--grpc`
//! the xDS bootstrap of a proxyless gRPC client
//! ([`crate::grpc_bootstrap`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::bootstrap::{self, BootstrapOptions, XdsClientTls};
use crate::cli_support::XdsClientArgs;
use crate::grpc_bootstrap::{self, GrpcBootstrapOptions};

/// `sluice bootstrap` arguments.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[arg(long)]
    pub node_id: String,
    /// The node group (Envoy's node.cluster).
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// sluice's xDS address, HOST:PORT; several replicas: HOST:PORT,HOST:PORT,… (each
    /// proxy picks one at random; a replica that fails is skipped).
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub xds: String,
    /// Envoy's own admin port (bound to 127.0.0.1; 0 lets the kernel pick).
    #[arg(long, default_value_t = 9901, conflicts_with = "grpc")]
    pub admin_port: u16,
    /// ADS flavour: state-of-the-world or delta (incremental).
    #[arg(long, value_enum, default_value_t = Ads::Sotw, conflicts_with = "grpc")]
    pub ads: Ads,
    /// Write the xDS bootstrap of a proxyless gRPC client (the file
    /// `GRPC_XDS_BOOTSTRAP` names) instead of an Envoy's.
    #[arg(long)]
    pub grpc: bool,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The rules service this Envoy runs beside: its local cluster, for
    /// zone-aware routing (`zone_aware` in the rules).
    #[arg(long, conflicts_with = "grpc")]
    pub local_cluster: Option<String>,
    /// TLS, mTLS and a token (`--xds-ca` needs `--out`: the CA and the
    /// client certificate are read by Envoy through file-based SDS files
    /// written beside it, so rotated files are picked up without a
    /// restart; a token is written into the bootstrap, which is then
    /// created readable by its owner only).
    #[command(flatten)]
    pub xds_client: XdsClientArgs,
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
        match &self.out {
            None => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Some(path) => match self.write(path, &text) {
                Ok(()) if self.grpc => {
                    eprintln!(
                        "wrote {}; run the client with GRPC_XDS_BOOTSTRAP={} and dial xds:///TARGET",
                        path.display(),
                        path.display()
                    );
                    ExitCode::SUCCESS
                }
                Ok(()) => {
                    eprintln!("wrote {}; run: envoy -c {}", path.display(), path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    }

    /// Writes the bootstrap to `path`, and the SDS files beside it. A
    /// bootstrap holding a token is readable by its owner only.
    fn write(&self, path: &Path, text: &str) -> Result<(), String> {
        if self.grpc {
            return std::fs::write(path, text)
                .map_err(|e| format!("writing {}: {e}", path.display()));
        }
        let opts = self.options()?;
        for (file, value) in bootstrap::sds_files(&opts) {
            let mut body = serde_json::to_string_pretty(&value).unwrap_or_default();
            body.push('\n');
            std::fs::write(&file, body).map_err(|e| format!("writing {}: {e}", file.display()))?;
        }
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        if opts.token.is_some() {
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(0o600);
        }
        let mut file = open
            .open(path)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        if opts.token.is_some() {
            // An existing file keeps its mode on open: narrow it too.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        std::io::Write::write_all(&mut file, text.as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// The bootstrap text, or what is wrong with the flags.
    fn render(&self) -> Result<String, String> {
        if self.grpc {
            return grpc_bootstrap::render(&self.grpc_options()?).map_err(|e| e.to_string());
        }
        bootstrap::render(&self.options()?).map_err(|e| e.to_string())
    }

    /// The gRPC bootstrap's options. gRPC reads the TLS files itself, by
    /// the absolute paths written here.
    fn grpc_options(&self) -> Result<GrpcBootstrapOptions, String> {
        if self.xds.contains(',') {
            return Err("--grpc takes one --xds HOST:PORT: several sluice replicas in a gRPC bootstrap are not written yet".into());
        }
        let (xds_host, xds_port) = parse_xds(self.xds.trim())?;
        let x = &self.xds_client;
        if x.xds_sni.is_some() {
            return Err("--xds-sni cannot be used with --grpc: a gRPC client checks sluice's certificate against the host of --xds".into());
        }
        if x.token_file.is_some() {
            return Err("--token-file cannot be used with --grpc yet: sluice does not write gRPC call credentials; authenticate gRPC clients with --client-cert".into());
        }
        let client = match x.client() {
            Some((cert, key)) => Some((absolute(cert)?, absolute(key)?)),
            None => None,
        };
        Ok(GrpcBootstrapOptions {
            node_id: self.node_id.clone(),
            cluster: self.cluster.clone(),
            xds_host,
            xds_port,
            ca: x.xds_ca.as_deref().map(absolute).transpose()?,
            client,
        })
    }

    /// The options the flags describe; the TLS files must exist (they are
    /// named by absolute path, for an Envoy started anywhere).
    fn options(&self) -> Result<BootstrapOptions, String> {
        let mut replicas = self
            .xds
            .split(',')
            .map(str::trim)
            .map(parse_xds)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let Some((host, port)) = replicas.next() else {
            return Err("--xds needs HOST:PORT".into());
        };
        let mut opts =
            BootstrapOptions::new(self.node_id.clone(), self.cluster.clone(), host, port);
        opts.xds_replicas = replicas.collect();
        opts.admin_port = self.admin_port;
        opts.delta = self.ads == Ads::Delta;
        opts.local_cluster = self.local_cluster.clone();
        let x = &self.xds_client;
        if let Some(ca) = &x.xds_ca {
            let Some(out) = &self.out else {
                return Err("--xds-ca needs --out: the SDS files Envoy reads the certificates through are written beside it".into());
            };
            let client = match x.client() {
                Some((cert, key)) => Some((absolute(cert)?, absolute(key)?)),
                None => None,
            };
            let dir = out.parent().filter(|p| !p.as_os_str().is_empty());
            opts.tls = Some(XdsClientTls {
                ca: absolute(ca)?,
                client,
                sni: x.xds_sni.clone(),
                sds_dir: absolute(dir.unwrap_or(Path::new(".")))?,
            });
        }
        opts.token = x.token()?;
        Ok(opts)
    }
}

/// One `HOST:PORT` of `--xds` (an IPv6 literal in brackets).
fn parse_xds(xds: &str) -> Result<(String, u16), String> {
    let Some((host, port)) = xds.rsplit_once(':') else {
        return Err(format!("--xds must be HOST:PORT[,HOST:PORT…], got {xds:?}"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("--xds port must be a number 1-65535, got {port:?}"));
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, port))
}

/// `path` made absolute (it must exist).
fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))
}
