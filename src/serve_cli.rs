//! `sluice serve` and `sluice validate`: the commands that load a rules
//! file on this machine, to serve it or to check it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::canary::wiring::RolloutOptions;
use crate::cli_support::runtime;
use crate::envoy_check::EnvoyCheck;
use crate::guard::Guard;
use crate::ha::HaOptions;
use crate::rollout_cli::RolloutServeArgs;
use crate::serve::xds_tls::XdsTlsFiles;
use crate::serve::{self, ServeOptions, XdsSecurityOptions};

/// The shortest `--watch-interval-ms`: polling the rules file more often
/// would keep a core busy hashing it (and 0 is no interval at all).
pub const MIN_WATCH_INTERVAL_MS: u64 = 10;

/// `sluice serve` arguments; [`ServeOptions`] is built from them in one
/// place (`TryFrom`).
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, env = "SLUICE_RULES")]
    pub rules: PathBuf,
    /// Address of the xDS gRPC listener.
    #[arg(long, default_value = "127.0.0.1:18000", env = "SLUICE_XDS_ADDR")]
    pub xds: SocketAddr,
    /// Address of the admin HTTP listener (health, metrics, status).
    #[arg(long, default_value = "127.0.0.1:9902", env = "SLUICE_ADMIN_ADDR")]
    pub admin: SocketAddr,
    /// How often the rules file is checked for changes, in milliseconds.
    #[arg(long, default_value_t = 300, value_parser = parse_watch_interval_ms)]
    pub watch_interval_ms: u64,
    /// Hold a rules edit that removes more than this share (percent)
    /// of a node group's listeners or clusters, or all of them, until
    /// `sluice rules confirm`; 100 turns the guard off (an empty rules
    /// file is held all the same).
    #[arg(long, default_value_t = crate::guard::DEFAULT_MAX_REMOVAL_PERCENT,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_removal_percent: u8,
    /// Run every rules file (at start and on each edit) through this
    /// Envoy binary (`envoy --mode validate`) before serving it; what
    /// Envoy refuses is handled like an invalid edit.
    #[arg(long, value_name = "PATH", env = "SLUICE_VALIDATE_WITH_ENVOY")]
    pub validate_with_envoy: Option<PathBuf>,
    /// Drain each xDS connection after about this long (±10 %, per
    /// connection): a GOAWAY, then its streams end with OK, so proxies
    /// reconnect and spread over the replicas again. `0` keeps
    /// connections as long as proxies do.
    #[arg(long, value_name = "DURATION", default_value = "30m",
          value_parser = parse_max_connection_age, env = "SLUICE_XDS_MAX_CONNECTION_AGE")]
    pub xds_max_connection_age: MaxAge,
    #[command(flatten)]
    pub xds_security: XdsSecurityArgs,
    #[command(flatten)]
    pub rollouts: RolloutServeArgs,
}

/// TLS and authentication on the xDS port (docs/security.md).
#[derive(Debug, Args)]
pub struct XdsSecurityArgs {
    /// TLS on the xDS port: the server certificate chain (PEM). Reloaded
    /// when the file changes; established streams keep their connection.
    #[arg(
        long,
        value_name = "FILE",
        requires = "xds_tls_key",
        env = "SLUICE_XDS_TLS_CERT"
    )]
    pub xds_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --xds-tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        requires = "xds_tls_cert",
        env = "SLUICE_XDS_TLS_KEY"
    )]
    pub xds_tls_key: Option<PathBuf>,
    /// Require a client certificate signed by this CA bundle (mTLS); the
    /// certificate's URI and DNS SANs are the proxy's identity, matched
    /// against the rules' `xds_access`.
    #[arg(
        long,
        value_name = "FILE",
        requires = "xds_tls_cert",
        env = "SLUICE_XDS_CLIENT_CA"
    )]
    pub xds_client_ca: Option<PathBuf>,
    /// TLS session ticket key (at least 32 random bytes, e.g. `openssl rand
    /// 80`): proxies resume their TLS session after a restart, or on
    /// another replica given the same files, instead of a full handshake.
    /// Repeat to rotate: the first seals new tickets, all open old ones.
    /// Reloaded with the certificate.
    #[arg(
        long,
        value_name = "FILE",
        requires = "xds_tls_cert",
        env = "SLUICE_XDS_TLS_TICKET_KEY",
        value_delimiter = ','
    )]
    pub xds_tls_ticket_key: Vec<PathBuf>,
    /// Allow plaintext xDS on a non-loopback address, and send secrets
    /// (listener TLS keys) to streams that are not authenticated.
    #[arg(long)]
    pub xds_insecure: bool,
}

impl XdsSecurityArgs {
    /// The options, or why `serve` must not start: plaintext xDS off
    /// loopback without `--xds-insecure`.
    pub fn options(self, xds: SocketAddr) -> anyhow::Result<XdsSecurityOptions> {
        let tls = match (self.xds_tls_cert, self.xds_tls_key) {
            (Some(cert), Some(key)) => Some(XdsTlsFiles {
                cert,
                key,
                client_ca: self.xds_client_ca,
                ticket_keys: self.xds_tls_ticket_key,
            }),
            _ => None,
        };
        if tls.is_none() && !self.xds_insecure && !xds.ip().is_loopback() {
            anyhow::bail!(
                "refusing to serve plaintext xDS on {xds}, which is not a loopback address: \
                 anyone who can reach it could fetch every proxy's configuration, TLS keys \
                 included. Give --xds-tls-cert and --xds-tls-key (and --xds-client-ca to \
                 authenticate proxies), or --xds-insecure to accept the risk; see docs/security.md"
            );
        }
        Ok(XdsSecurityOptions {
            tls,
            insecure: self.xds_insecure,
        })
    }
}

/// `--watch-interval-ms`: a number of at least [`MIN_WATCH_INTERVAL_MS`];
/// a smaller one is refused rather than raised behind the user's back.
fn parse_watch_interval_ms(s: &str) -> Result<u64, String> {
    let ms: u64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of milliseconds: {e}"))?;
    if ms < MIN_WATCH_INTERVAL_MS {
        return Err(format!(
            "{ms} ms is too short: the rules file is checked at most every \
             {MIN_WATCH_INTERVAL_MS} ms; give {MIN_WATCH_INTERVAL_MS} or more"
        ));
    }
    Ok(ms)
}

/// `--xds-max-connection-age`: `None` for `0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxAge(pub Option<Duration>);

/// The shortest `--xds-max-connection-age`: every reconnect costs the
/// proxy a full configuration (SotW) and a TLS handshake.
const MIN_CONNECTION_AGE: Duration = Duration::from_secs(1);

fn parse_max_connection_age(s: &str) -> Result<MaxAge, String> {
    if s == "0" {
        return Ok(MaxAge(None));
    }
    let d = crate::rules::parse_duration(s)?;
    if d < MIN_CONNECTION_AGE {
        return Err(format!(
            "{s} is too short: at least 1s (or 0 to keep connections)"
        ));
    }
    Ok(MaxAge(Some(d)))
}

impl TryFrom<ServeArgs> for ServeOptions {
    type Error = anyhow::Error;

    /// Fails when the admin token file cannot be read, or when the xDS
    /// port would be plaintext off loopback.
    fn try_from(args: ServeArgs) -> anyhow::Result<Self> {
        let xds_security = args.xds_security.options(args.xds)?;
        let r = args.rollouts;
        let ha = ha_options(&r)?;
        Ok(ServeOptions {
            rules: args.rules,
            xds_addr: args.xds,
            admin_addr: args.admin,
            watch_interval: Duration::from_millis(args.watch_interval_ms),
            state_dir: r.state_dir,
            ha,
            rollouts: RolloutOptions {
                admin_grpc: r.admin_grpc,
                token: crate::cli_support::token(r.admin_token_file.as_deref())?,
                envoy_admin: r.metrics_envoy_admin,
                prometheus: r.metrics_prometheus,
                weights: r.rollout_weights,
            },
            guard: Guard {
                max_removal_percent: args.max_removal_percent,
            },
            validate_with_envoy: args.validate_with_envoy,
            xds_max_connection_age: args.xds_max_connection_age.0,
            xds_security,
        })
    }
}

/// `--state-etcd` and its companions, checked.
fn ha_options(r: &RolloutServeArgs) -> anyhow::Result<Option<HaOptions>> {
    let endpoints: Vec<String> = r
        .state_etcd
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Ok(None);
    }
    anyhow::ensure!(
        r.state_dir.is_none(),
        "--state-etcd and --state-dir cannot be used together: state lives either in etcd (several replicas) or in one directory (one sluice)"
    );
    let mut prefix = r.state_prefix.trim().to_string();
    anyhow::ensure!(
        !prefix.is_empty() && prefix != "/",
        "--state-prefix must name a key prefix of its own (e.g. /sluice/), got {:?}",
        r.state_prefix
    );
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let replica = match &r.replica_name {
        Some(n) if n.trim().is_empty() => anyhow::bail!("--replica-name must not be empty"),
        Some(n) => n.trim().to_string(),
        None => crate::ha::default_replica_name(),
    };
    Ok(Some(HaOptions {
        endpoints,
        prefix,
        lease_ttl: r.state_lease_ttl,
        replica,
    }))
}

impl ServeArgs {
    /// Run `sluice serve` until SIGTERM or Ctrl-C.
    pub fn run(self) -> ExitCode {
        let opts = match ServeOptions::try_from(self) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        let Some(rt) = runtime() else {
            return ExitCode::FAILURE;
        };
        match rt.block_on(serve::run(opts, shutdown_signal())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
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

/// `sluice validate` arguments.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also run the compiled config through this Envoy binary
    /// (`envoy --mode validate`) and report what it refuses at the rule
    /// that produced it.
    #[arg(long, value_name = "PATH")]
    pub envoy: Option<PathBuf>,
}

impl ValidateArgs {
    /// Run `sluice validate`: every file is checked, every error printed.
    pub fn run(self) -> ExitCode {
        // Envoy runs as a child process, awaited on a runtime.
        let envoy = match &self.envoy {
            None => None,
            Some(bin) => match runtime() {
                Some(rt) => Some((rt, EnvoyCheck::new(bin))),
                None => return ExitCode::FAILURE,
            },
        };
        let mut failed = false;
        for path in &self.files {
            let text = match crate::rules::read_text(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{e}");
                    failed = true;
                    continue;
                }
            };
            let checked = match &envoy {
                // Nothing reads the text again: it is freed before the
                // model is built.
                None => serve::load_owned(path, text),
                Some((rt, check)) => serve::load(path, &text).and_then(|loaded| {
                    let name = path.display().to_string();
                    rt.block_on(check.check(&name, &text, &loaded.1))
                        .map_err(serve::LoadError::Envoy)?;
                    Ok(loaded)
                }),
            };
            match checked {
                Ok((config, snapshots)) => {
                    // gRPC clients' snapshots are keyed apart from groups.
                    let groups = snapshots
                        .groups
                        .keys()
                        .filter(|k| !crate::xds::resource::is_grpc_group_key(k))
                        .count();
                    let grpc = match config.grpc.len() {
                        0 => String::new(),
                        n => format!(", {n} gRPC targets"),
                    };
                    println!(
                        "{}: ok ({} services, {} listeners{grpc}, {} node groups{})",
                        path.display(),
                        config.services.len(),
                        config.listeners.len(),
                        groups.max(1),
                        if envoy.is_some() {
                            "; envoy accepts them"
                        } else {
                            ""
                        },
                    )
                }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(tls: bool, insecure: bool) -> XdsSecurityArgs {
        XdsSecurityArgs {
            xds_tls_cert: tls.then(|| "cert.pem".into()),
            xds_tls_key: tls.then(|| "key.pem".into()),
            xds_client_ca: None,
            xds_tls_ticket_key: Vec::new(),
            xds_insecure: insecure,
        }
    }

    fn serve_args(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut argv = vec!["sluice", "--rules", "rules.yaml"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.serve)
    }

    #[test]
    fn state_etcd_conflicts_with_state_dir_and_fills_in_its_options() {
        let err = serve_args(&["--state-etcd", "http://e:2379", "--state-dir", "/tmp/s"])
            .expect_err("refused");
        let msg = err.to_string();
        assert!(
            msg.contains("--state-etcd") && msg.contains("--state-dir"),
            "{msg}"
        );

        let args = serve_args(&[
            "--state-etcd",
            "http://a:2379,http://b:2379",
            "--state-prefix",
            "/team-a",
            "--state-lease-ttl",
            "3s",
            "--replica-name",
            "r1",
        ])
        .expect("args");
        let ha = ha_options(&args.rollouts).expect("ok").expect("ha");
        assert_eq!(ha.endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(ha.prefix, "/team-a/");
        assert_eq!(ha.lease_ttl, Duration::from_secs(3));
        assert_eq!(ha.replica, "r1");

        let defaults = serve_args(&["--state-etcd", "http://a:2379"]).expect("args");
        let ha = ha_options(&defaults.rollouts).expect("ok").expect("ha");
        assert_eq!(ha.prefix, "/sluice/");
        assert_eq!(ha.lease_ttl, Duration::from_secs(10));
        assert!(
            ha.replica.ends_with(&format!(":{}", std::process::id())),
            "{}",
            ha.replica
        );

        for bad in ["500ms", "1.5s", "0s"] {
            let err = serve_args(&["--state-etcd", "http://a:2379", "--state-lease-ttl", bad])
                .expect_err("refused");
            assert!(err.to_string().contains("whole seconds"), "{bad}: {err}");
        }
        let none = serve_args(&[]).expect("args");
        assert!(ha_options(&none.rollouts).expect("ok").is_none());
    }

    #[test]
    fn plaintext_xds_is_refused_off_loopback_unless_insecure() {
        let any: SocketAddr = "0.0.0.0:18000".parse().expect("addr");
        let err = args(false, false).options(any).expect_err("refused");
        assert!(err.to_string().contains("--xds-insecure"), "{err}");
        assert!(args(false, true).options(any).is_ok());
        let tls = args(true, false)
            .options(any)
            .expect("TLS is fine anywhere");
        assert_eq!(tls.tls.map(|t| t.cert), Some(PathBuf::from("cert.pem")));
        for loopback in ["127.0.0.1:18000", "[::1]:18000"] {
            let addr: SocketAddr = loopback.parse().expect("addr");
            let opts = args(false, false)
                .options(addr)
                .expect("loopback plaintext");
            assert!(opts.tls.is_none() && !opts.insecure);
        }
    }
}
