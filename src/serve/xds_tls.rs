//! TLS on the xDS port: `--xds-tls-cert`, `--xds-tls-key`,
//! `--xds-client-ca` and `--xds-tls-ticket-key` → the rustls server
//! configurations the transport uses (`xds::transport::TlsConfigs`),
//! reloaded when the files change.
//!
//! The files are read again every [`POLL`]; new content is used once the
//! same bytes are seen on two polls in a row (a rotation that writes the
//! certificate, then the key, is not taken half-done) and once they build
//! a configuration: a bad file is logged once and counted, and the
//! previous configuration stays in use. A new configuration applies to
//! the next handshake; established connections keep theirs, so rotation
//! drops no stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::xds::metrics::XdsMetrics;
use crate::xds::tickets::FileTicketer;
use crate::xds::transport::TlsConfigs;

/// How often the files are read for a rotation.
pub const POLL: Duration = Duration::from_secs(1);

/// The files named by the flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates must chain to one of these (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Session ticket keys: the first seals, all open (`tickets`). None:
    /// rustls's own in-process session cache.
    pub ticket_keys: Vec<PathBuf>,
}

/// The files' content as read on one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    ticket_keys: Vec<Vec<u8>>,
}

impl XdsTlsFiles {
    fn read(&self) -> anyhow::Result<Contents> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        Ok(Contents {
            cert: read(&self.cert)?,
            key: read(&self.key)?,
            client_ca: self.client_ca.as_deref().map(read).transpose()?,
            ticket_keys: self
                .ticket_keys
                .iter()
                .map(|p| read(p))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// Reads the files and builds the configurations, or says which file
    /// is wrong and why.
    pub fn load(&self) -> anyhow::Result<TlsConfigs> {
        self.build(&self.read()?)
    }

    fn build(&self, c: &Contents) -> anyhow::Result<TlsConfigs> {
        let cert_file = self.cert.display();
        let chain = CertificateDer::pem_slice_iter(&c.cert)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{cert_file}: malformed PEM"))?;
        if chain.is_empty() {
            bail!("{cert_file}: no PEM certificate (-----BEGIN CERTIFICATE-----) found");
        }
        let key = PrivateKeyDer::from_pem_slice(&c.key).with_context(|| {
            format!(
                "{}: no usable PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)",
                self.key.display()
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match (&self.client_ca, &c.client_ca) {
            (Some(path), Some(pem)) => Some(Arc::new(roots(path, pem)?)),
            _ => None,
        };
        let ticketer = self.ticketer(c)?;
        let verifier = |lenient: bool| -> anyhow::Result<Option<Arc<dyn ClientCertVerifier>>> {
            let Some(roots) = &roots else {
                return Ok(None);
            };
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            let verifier = if lenient {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            Ok(Some(verifier.build().context("client CA")?))
        };
        let config = |lenient: bool| -> anyhow::Result<Arc<ServerConfig>> {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")?;
            let builder = match verifier(lenient)? {
                None => builder.with_no_client_auth(),
                Some(v) => builder.with_client_cert_verifier(v),
            };
            let mut config = builder
                .with_single_cert(chain.clone(), key.clone_key())
                .with_context(|| {
                    format!(
                        "{cert_file} and {}: not a usable certificate and key pair",
                        self.key.display()
                    )
                })?;
            // gRPC clients require HTTP/2 negotiated by ALPN.
            config.alpn_protocols = vec![b"h2".to_vec()];
            if let Some(t) = &ticketer {
                config.ticketer = t.clone();
            }
            Ok(Arc::new(config))
        };
        Ok(TlsConfigs {
            strict: config(false)?,
            lenient: roots.is_some().then(|| config(true)).transpose()?,
            // Strict: a resumed session must still hold a valid
            // certificate if it was made with one.
            client_verifier: verifier(false)?,
        })
    }

    /// The session ticketer of `--xds-tls-ticket-key`, bound to the client
    /// CA bundle (a new bundle voids every earlier ticket).
    fn ticketer(&self, c: &Contents) -> anyhow::Result<Option<Arc<FileTicketer>>> {
        if c.ticket_keys.is_empty() {
            return Ok(None);
        }
        let binding = c.client_ca.as_deref().unwrap_or_default();
        match FileTicketer::new(&c.ticket_keys, binding) {
            Ok(t) => Ok(Some(Arc::new(t))),
            Err(e) => {
                // Which file: the first that is too short.
                let short = self
                    .ticket_keys
                    .iter()
                    .zip(&c.ticket_keys)
                    .find(|(_, k)| k.len() < crate::xds::tickets::MIN_KEY_BYTES)
                    .map_or_else(String::new, |(p, _)| format!("{}: ", p.display()));
                bail!("{short}session ticket key: {e}")
            }
        }
    }
}

/// The CA bundle client certificates must chain to.
fn roots(path: &Path, pem: &[u8]) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.with_context(|| format!("{}: malformed PEM", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{}: not a usable CA certificate", path.display()))?;
    }
    if roots.is_empty() {
        bail!("{}: no PEM certificate found", path.display());
    }
    Ok(roots)
}

/// Reads `files` every [`POLL`] until `stop`, and sends each new valid
/// configuration on `tx`.
pub fn watch_files(
    files: XdsTlsFiles,
    tx: watch::Sender<Arc<TlsConfigs>>,
    metrics: XdsMetrics,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut served = files.read().ok();
        let mut seen = served.clone();
        let mut rejected: Option<Contents> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.cancelled() => return,
            }
            let now = match files.read() {
                Ok(c) => c,
                Err(e) => {
                    // Mid-rotation, or gone: keep serving what we have.
                    if seen.is_some() {
                        error!(error = %format!("{e:#}"), "xDS TLS files unreadable; the current certificate stays in use");
                        metrics.tls_reload_errors.inc();
                    }
                    seen = None;
                    continue;
                }
            };
            let settled = seen.as_ref() == Some(&now);
            seen = Some(now.clone());
            if !settled || served.as_ref() == Some(&now) || rejected.as_ref() == Some(&now) {
                continue;
            }
            match files.build(&now) {
                Ok(configs) => {
                    info!(cert = %files.cert.display(), "xDS TLS certificate reloaded; new connections use it");
                    tx.send_replace(Arc::new(configs));
                    served = Some(now);
                    rejected = None;
                }
                Err(e) => {
                    error!(error = %format!("{e:#}"), "new xDS TLS files refused; the current certificate stays in use");
                    metrics.tls_reload_errors.inc();
                    rejected = Some(now);
                }
            }
        }
    })
}
