//! `sluice bootstrap`: writes an Envoy bootstrap that points a proxy at
//! sluice over ADS ([`crate::bootstrap`] renders it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::bootstrap::{self, BootstrapOptions, XdsClientTls};

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
    /// Reach sluice over TLS, trusting this CA bundle (PEM) for its
    /// certificate. Needs --out: the CA and the client certificate are
    /// read by Envoy through file-based SDS files written beside it, so
    /// rotated files are picked up without a restart.
    #[arg(long, value_name = "FILE", requires = "out")]
    pub xds_ca: Option<PathBuf>,
    /// The proxy's client certificate chain (PEM), for mTLS.
    #[arg(long, value_name = "FILE", requires_all = ["client_key", "xds_ca"])]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The server name Envoy sends (SNI) and checks sluice's certificate
    /// against; default: the host of --xds.
    #[arg(long, value_name = "NAME", requires = "xds_ca")]
    pub xds_sni: Option<String>,
    /// A file holding a bearer token Envoy sends to sluice (gRPC metadata
    /// `authorization: Bearer ...`), matched by an `xds_access`
    /// `token_sha256` entry. The token is written into the bootstrap,
    /// which is then created readable by its owner only.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
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
        bootstrap::render(&self.options()?).map_err(|e| e.to_string())
    }

    /// The options the flags describe; the TLS files must exist (they are
    /// named by absolute path, for an Envoy started anywhere).
    fn options(&self) -> Result<BootstrapOptions, String> {
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
        if let Some(ca) = &self.xds_ca {
            let client = match (&self.client_cert, &self.client_key) {
                (Some(cert), Some(key)) => Some((absolute(cert)?, absolute(key)?)),
                _ => None,
            };
            let out = self.out.as_deref().unwrap_or(Path::new("."));
            let sds_dir = absolute(
                out.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )?;
            opts.tls = Some(XdsClientTls {
                ca: absolute(ca)?,
                client,
                sni: self.xds_sni.clone(),
                sds_dir,
            });
        }
        if let Some(file) = &self.token_file {
            let token = std::fs::read_to_string(file)
                .map_err(|e| format!("reading --token-file {}: {e}", file.display()))?;
            opts.token = Some(token.trim().to_string());
        }
        Ok(opts)
    }
}

/// `path` made absolute (it must exist).
fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))
}
