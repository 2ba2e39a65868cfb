//! The xDS server's connections: plaintext, or TLS with an optional
//! client certificate, each carrying who the peer is ([`Peer`]) to every
//! request on it (tonic puts a connection's [`Connected::connect_info`] in
//! each request's extensions).
//!
//! TLS handshakes run in their own tasks, bounded by
//! [`HANDSHAKE_TIMEOUT`], so a slow or silent client never holds up the
//! accept loop. The server configuration is read at each handshake from a
//! watch channel: a rotated certificate is used by the next connection,
//! and established connections keep theirs.
//!
//! A resumed TLS session (a session ticket, see `tickets`) skips the
//! certificate exchange, so rustls does not verify the client
//! certificate the session was made with; [`handshake`] verifies it
//! again against the client CA in force now, so a resumed connection
//! passes exactly the checks of a full one (an expired certificate, or
//! one from a CA no longer trusted, is refused; so is a session made
//! without a certificate, while tokens were accepted, resumed once a
//! certificate is required).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::UnixTime;
use rustls::server::danger::ClientCertVerifier;
use rustls::HandshakeKind;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tracing::{debug, warn};

/// How long the accept loop waits after a failed accept (out of file
/// descriptors, say) before it tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections waiting for the server: a storm of reconnects is
/// queued in the kernel's accept queue (`listener::BACKLOG`) and here.
const ACCEPTED_QUEUE: usize = 1024;

/// The TLS server configurations in force. `strict` is used when every
/// stream must present a client certificate (or there is no client CA at
/// all); `lenient`, built only with a client CA, requests the certificate
/// without requiring it, for when bearer tokens are also accepted.
/// `client_verifier` is the client CA's verifier both use, kept to check
/// a resumed session's certificate again.
#[derive(Clone, Debug)]
pub struct TlsConfigs {
    pub strict: Arc<rustls::ServerConfig>,
    pub lenient: Option<Arc<rustls::ServerConfig>>,
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// What the transport knows about a connection's peer.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    pub remote: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The verified client certificate's URI SANs, then its DNS SANs.
    pub identities: Arc<[String]>,
}

/// One accepted connection.
pub enum Conn {
    Plain(TcpStream, Peer),
    Tls(Box<TlsStream<TcpStream>>, Peer),
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        match self {
            Conn::Plain(_, p) | Conn::Tls(_, p) => p.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s, _) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Says, at each handshake, whether the lenient configuration applies
/// (bearer tokens are accepted besides client certificates).
pub type Lenient = Arc<dyn Fn() -> bool + Send + Sync>;

/// Told how each TLS handshake ended.
pub type OnHandshake = Arc<dyn Fn(Handshake) + Send + Sync>;

/// How a TLS handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// The connection reached the server; `resumed` when it resumed an
    /// earlier session (a session ticket) instead of a full handshake.
    Done {
        resumed: bool,
    },
    Refused(Refused),
}

/// How the listener secures its connections.
#[derive(Clone)]
pub enum Security {
    Plaintext,
    /// TLS with the configurations on this channel.
    Tls {
        configs: watch::Receiver<Arc<TlsConfigs>>,
        lenient: Lenient,
    },
}

/// Why a connection failed before it reached the server (the `reason` of
/// `sluice_xds_tls_handshake_failures_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The handshake failed: no or a bad client certificate, plaintext on
    /// the TLS port, no common protocol.
    Handshake,
    /// The client did not finish its handshake in time.
    Timeout,
    /// The client resumed a session whose certificate no longer passes:
    /// expired, or not from a client CA trusted now.
    ResumedCertificate,
}

impl Refused {
    pub const ALL: [Refused; 3] = [
        Refused::Handshake,
        Refused::Timeout,
        Refused::ResumedCertificate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Handshake => "handshake",
            Refused::Timeout => "timeout",
            Refused::ResumedCertificate => "resumed_certificate",
        }
    }
}

/// Accepts connections on `listener` until `stop`, securing each as
/// `security` says; the connections come out of the returned channel.
pub fn accept(
    listener: TcpListener,
    security: Security,
    events: OnHandshake,
    stop: CancellationToken,
) -> mpsc::Receiver<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of descriptors and the like. Handing the
                        // error to tonic would end the server; wait a
                        // little (the condition is usually transient) and
                        // accept again.
                        warn!(error = %e, "xDS accept failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(ACCEPT_RETRY) => continue,
                            _ = stop.cancelled() => return,
                        }
                    }
                },
                _ = stop.cancelled() => return,
            };
            match &security {
                Security::Plaintext => {
                    let peer = Peer {
                        remote: Some(remote),
                        ..Peer::default()
                    };
                    if tx.send(Ok(Conn::Plain(tcp, peer))).await.is_err() {
                        return;
                    }
                }
                Security::Tls { configs, lenient } => {
                    let configs = configs.borrow().clone();
                    tokio::spawn(handshake(
                        tcp,
                        remote,
                        configs,
                        lenient(),
                        tx.clone(),
                        events.clone(),
                        stop.clone(),
                    ));
                }
            }
        }
    });
    rx
}

#[allow(clippy::too_many_arguments)]
async fn handshake(
    tcp: TcpStream,
    remote: SocketAddr,
    configs: Arc<TlsConfigs>,
    lenient: bool,
    tx: mpsc::Sender<io::Result<Conn>>,
    events: OnHandshake,
    stop: CancellationToken,
) {
    let (config, strict) = match (&configs.lenient, lenient) {
        (Some(l), true) => (l.clone(), false),
        _ => (configs.strict.clone(), true),
    };
    let accept = TlsAcceptor::from(config).accept(tcp);
    let done = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept) => r,
        _ = stop.cancelled() => return,
    };
    match done {
        Ok(Ok(tls)) => {
            let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
            if resumed {
                if let Err(e) = recheck(&tls, configs.client_verifier.as_deref(), strict) {
                    debug!(%remote, error = %e, "xDS TLS session resumed with a certificate that no longer passes");
                    events(Handshake::Refused(Refused::ResumedCertificate));
                    return;
                }
            }
            events(Handshake::Done { resumed });
            let peer = Peer {
                remote: Some(remote),
                tls: true,
                identities: identities(&tls).into(),
            };
            let _ = tx.send(Ok(Conn::Tls(Box::new(tls), peer))).await;
        }
        Ok(Err(e)) => {
            debug!(%remote, error = %e, "xDS TLS handshake failed");
            events(Handshake::Refused(Refused::Handshake));
        }
        Err(_) => {
            debug!(%remote, "xDS TLS handshake timed out");
            events(Handshake::Refused(Refused::Timeout));
        }
    }
}

/// Verifies a resumed session's client certificate chain again, now,
/// against `verifier` (the client CA in force). Without a client CA there
/// is nothing to check. A session made without a certificate passes only
/// where a certificate is not required now (the lenient configuration,
/// where a token must then authenticate the stream): rustls resumes such
/// a session under a configuration that requires one.
fn recheck(
    tls: &TlsStream<TcpStream>,
    verifier: Option<&dyn ClientCertVerifier>,
    strict: bool,
) -> Result<(), rustls::Error> {
    let Some(verifier) = verifier else {
        return Ok(());
    };
    let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
    let Some((leaf, intermediates)) = chain.split_first() else {
        return if strict {
            Err(rustls::Error::NoCertificatesPresented)
        } else {
            Ok(())
        };
    };
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map(|_| ())
}

/// The verified client certificate's URI SANs then DNS SANs; empty
/// without one. rustls has verified the chain against the client CA by
/// the time the handshake completes.
fn identities(tls: &TlsStream<TcpStream>) -> Vec<String> {
    let (_, conn) = tls.get_ref();
    let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) else {
        return Vec::new();
    };
    sans(leaf)
}

/// A certificate's URI SANs, then its DNS SANs, as webpki reads them.
pub fn sans(cert: &rustls::pki_types::CertificateDer<'_>) -> Vec<String> {
    let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
        return Vec::new();
    };
    cert.valid_uri_names()
        .chain(cert.valid_dns_names())
        .map(str::to_owned)
        .collect()
}
