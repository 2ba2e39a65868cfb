//! What the `sluice` subcommands share, below all of them: the output
//! format flag's values, the admin address and admin token flag groups,
//! reading the admin token (file or `$SLUICE_ADMIN_TOKEN`), the runtime a
//! command runs on, the admin HTTP client and its answer decoding. The
//! subcommand modules (`drain_cli`, `rules_cli`, `status_cli`, `rollout_cli`,
//! `sim_cli`) import this, never `cli`, which only dispatches to them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use clap::{Args, ValueEnum};

/// How a command prints what it read from sluice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// `--admin`: where a running sluice's admin HTTP listener is.
#[derive(Clone, Copy, Debug, Args)]
pub struct AdminAddr {
    /// sluice's admin address.
    #[arg(
        id = "admin",
        long = "admin",
        value_name = "ADMIN",
        default_value = "127.0.0.1:9902",
        env = "SLUICE_ADMIN_ADDR"
    )]
    pub addr: SocketAddr,
}

/// `--admin-token-file`: the token that commands changing a running
/// sluice send (drains, `rules confirm`, `diff`). sluice asks for it when
/// it was started with one.
#[derive(Clone, Debug, Default, Args)]
pub struct AdminToken {
    /// File holding the admin token (else $SLUICE_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}

impl AdminToken {
    /// The token, if the file or the environment gives one.
    pub fn read(&self) -> Result<Option<String>, String> {
        token(self.admin_token_file.as_deref()).map_err(|e| format!("{e:#}"))
    }
}

/// The environment variable holding the admin token.
pub const TOKEN_ENV: &str = "SLUICE_ADMIN_TOKEN";

/// The admin token: the file's content (trimmed) if given, else the
/// environment variable; `None` when neither is set.
pub fn token(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(path) = file {
        let t = std::fs::read_to_string(path)
            .with_context(|| format!("reading admin token file {}", path.display()))?;
        let t = t.trim().to_string();
        anyhow::ensure!(
            !t.is_empty(),
            "admin token file {} is empty",
            path.display()
        );
        return Ok(Some(t));
    }
    Ok(std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty()))
}

/// An HTTP client for the admin listener: never through a proxy (the
/// admin listener is usually on loopback).
pub(crate) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
}

/// `req` with the admin token as a bearer token, when there is one.
pub(crate) fn with_token(
    req: reqwest::RequestBuilder,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t.trim()),
        None => req,
    }
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

/// Sends a request to the admin listener and decodes the answer; an error
/// answer's `error` field becomes the message.
pub(crate) async fn send<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
) -> Result<T, String> {
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach sluice: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let msg = doc["error"].as_str().unwrap_or(&body).to_string();
        return Err(format!("sluice answered {status}: {msg}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("unexpected answer: {e}"))
}

/// How a proxy (Envoy through `sluice bootstrap`, or `sluice sim`)
/// reaches sluice's xDS port: TLS, mTLS, a bearer token.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct XdsClientArgs {
    /// Reach sluice over TLS (ALPN h2), trusting this CA bundle (PEM) for
    /// its certificate.
    #[arg(long, value_name = "FILE")]
    pub xds_ca: Option<PathBuf>,
    /// The proxy's client certificate chain (PEM), for mTLS.
    #[arg(long, value_name = "FILE", requires_all = ["client_key", "xds_ca"])]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The server name sent (SNI) and checked in sluice's certificate;
    /// default: the host of --xds.
    #[arg(long, value_name = "NAME", requires = "xds_ca")]
    pub xds_sni: Option<String>,
    /// A file holding a bearer token sent to sluice as gRPC metadata
    /// `authorization: Bearer ...`, matched by an `xds_access`
    /// `token_sha256` entry.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl XdsClientArgs {
    /// The token in `--token-file`, trimmed; `None` without the flag.
    pub fn token(&self) -> Result<Option<String>, String> {
        let Some(file) = &self.token_file else {
            return Ok(None);
        };
        std::fs::read_to_string(file)
            .map(|t| Some(t.trim().to_string()))
            .map_err(|e| format!("reading --token-file {}: {e}", file.display()))
    }

    /// The client certificate and key, when both are given.
    pub fn client(&self) -> Option<(&Path, &Path)> {
        self.client_cert.as_deref().zip(self.client_key.as_deref())
    }
}
