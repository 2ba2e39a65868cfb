//! How a simulated proxy reaches sluice's xDS port: plaintext, or TLS
//! (ALPN `h2`, sluice's certificate checked against a CA, optionally a
//! client certificate for mTLS), with an optional bearer token sent as
//! `authorization` metadata — what `sluice bootstrap --xds-ca
//! --client-cert --client-key --token-file` gives a real Envoy.

use std::io;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

/// TLS and a token for the ADS stream; the default is plaintext, no token.
#[derive(Clone, Debug, Default)]
pub struct ClientSecurity {
    pub tls: Option<ClientTls>,
    /// Sent as `authorization: Bearer <token>` on each stream.
    pub token: Option<String>,
}

/// A TLS client configuration and the name sluice's certificate must hold.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// Why TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{0}: {1}")]
    Read(String, String),
    #[error("{0}: no PEM certificate found")]
    NoCertificate(String),
    #[error("{0}: {1}")]
    Invalid(String, String),
}

impl ClientTls {
    /// Trusts the CA bundle `ca` (PEM) for sluice's certificate, which
    /// must name `server_name`; with `client`, presents that certificate
    /// chain and key (PEM).
    pub fn from_pem(
        ca: &[u8],
        client: Option<(&[u8], &[u8])>,
        server_name: &str,
    ) -> Result<ClientTls, TlsFileError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            TlsFileError::Invalid(what.to_string(), e.to_string())
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert = cert.map_err(|e| bad("CA", &e))?;
            roots.add(cert).map_err(|e| bad("CA", &e))?;
        }
        if roots.is_empty() {
            return Err(TlsFileError::NoCertificate("CA".into()));
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(envoy_like_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS", &e))?
            .with_root_certificates(roots);
        let mut config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("client certificate", &e))?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("client key", &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad("client certificate", &e))?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let server_name =
            ServerName::try_from(server_name.to_string()).map_err(|e| bad("server name", &e))?;
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The same configuration with a TLS session cache of its own: each
    /// simulated proxy resumes only the sessions it made, as each Envoy
    /// keeps its own (`max_session_keys`), rather than a fleet sharing one
    /// cache through one configuration.
    pub fn with_own_sessions(&self) -> ClientTls {
        let mut config = (*self.config).clone();
        config.resumption = rustls::client::Resumption::in_memory_sessions(4);
        ClientTls {
            config: Arc::new(config),
            server_name: self.server_name.clone(),
        }
    }

    /// As [`ClientTls::from_pem`], reading the files.
    pub fn from_files(
        ca: &Path,
        client: Option<(&Path, &Path)>,
        server_name: &str,
    ) -> Result<ClientTls, TlsFileError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TlsFileError::Read(p.display().to_string(), e.to_string()))
        };
        let ca = read(ca)?;
        let client = match client {
            Some((cert, key)) => Some((read(cert)?, read(key)?)),
            None => None,
        };
        ClientTls::from_pem(
            &ca,
            client.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
            server_name,
        )
    }
}

/// The *ring* provider with TLS 1.3's suites in the order Envoy's
/// BoringSSL offers them on machines with AES instructions: AES-128-GCM
/// first, then AES-256-GCM, then ChaCha20-Poly1305 (rustls offers
/// AES-256-GCM first). sluice follows the client's order, so a simulated
/// proxy negotiates what a real Envoy would.
fn envoy_like_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut provider = rustls::crypto::ring::default_provider();
    let rank = |s: &rustls::SupportedCipherSuite| {
        [
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ]
        .iter()
        .position(|p| p.suite() == s.suite())
        .unwrap_or(usize::MAX)
    };
    provider.cipher_suites.sort_by_key(rank);
    provider
}

/// Connects `endpoint` (an `http://HOST:PORT` URI) in plaintext or over
/// TLS.
pub async fn connect(
    endpoint: &Endpoint,
    tls: Option<&ClientTls>,
) -> Result<Channel, tonic::transport::Error> {
    let Some(tls) = tls.cloned() else {
        return endpoint.connect().await;
    };
    let connector = tower::service_fn(move |uri: Uri| {
        let tls = tls.clone();
        async move {
            let host = uri
                .host()
                .unwrap_or("127.0.0.1")
                .trim_start_matches('[')
                .trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let stream = TlsConnector::from(tls.config)
                .connect(tls.server_name, tcp)
                .await?;
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    });
    endpoint.connect_with_connector(connector).await
}
