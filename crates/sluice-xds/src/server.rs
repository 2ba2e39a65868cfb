//! The gRPC edge: `AggregatedDiscoveryService` over tonic.
//!
//! Each stream gets a task (`xds::stream`) that owns a
//! `Session` and moves messages between it, the client and the published
//! snapshots; it computes nothing itself. A slow client only blocks its
//! own task (its responses wait on its own bounded channel), never another
//! stream or the publisher.
//!
//! The service is written against tonic's server API directly rather than
//! `envoy-types`' generated server, because the generated response types
//! hold `Vec<u8>` payloads; ours ([`wire`](super::wire)) share one `Bytes`
//! per resource. The two ADS streams are framed by
//! `xds::grpc_body` rather than tonic's codec, whose
//! per-stream buffers keep the largest message's capacity. Methods other
//! than the two ADS streams answer UNIMPLEMENTED.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::Status;
use tracing::debug;

use super::access::Credentials;
use super::admission::Admission;
use super::grpc_body::{self, Requests};
pub use super::published::{Published, SnapshotRx};
use super::session::Mode;
use super::stream::{Outgoing, StreamTask, Variant};
pub use super::stream::{PeerCredentials, Shared, StreamSecurity};
use super::transport::{self, OnHandshake, Peer, Security};

pub const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Responses queued per stream before the task waits for the client.
const STREAM_BUFFER: usize = 8;

#[derive(Clone)]
pub struct AdsService {
    shared: Arc<Shared>,
    admission: Arc<Admission>,
}

impl AdsService {
    pub fn new(shared: Shared) -> AdsService {
        AdsService {
            admission: Arc::new(Admission::new(&shared.limits)),
            shared: Arc::new(shared),
        }
    }
}

impl tonic::server::NamedService for AdsService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> tonic::codegen::Service<http::Request<B>> for AdsService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        let admission = self.admission.clone();
        let peer = peer_credentials(&req);
        // Ends the stream when its connection is drained (age, shutdown).
        let end = req
            .extensions()
            .get::<ConnDrain>()
            .map_or_else(|| shared.shutdown.clone(), |d| d.0.clone());
        let max = shared.limits.max_message_bytes;
        match req.uri().path() {
            // Not tonic's `Grpc::streaming`: see `grpc_body` (memory).
            SOTW_PATH => Box::pin(async move {
                let handler = StreamHandler {
                    shared,
                    admission,
                    mode: Mode::Sotw,
                    peer,
                    end,
                };
                Ok(
                    grpc_body::streaming(req, max, |r: Requests<DiscoveryRequest>| handler.call(r))
                        .await,
                )
            }),
            DELTA_PATH => Box::pin(async move {
                let handler = StreamHandler {
                    shared,
                    admission,
                    mode: Mode::Delta,
                    peer,
                    end,
                };
                Ok(
                    grpc_body::streaming(req, max, |r: Requests<DeltaDiscoveryRequest>| {
                        handler.call(r)
                    })
                    .await,
                )
            }),
            _ => {
                Box::pin(
                    async move { Ok(Status::unimplemented("sluice serves only ADS").into_http()) },
                )
            }
        }
    }
}

struct StreamHandler {
    shared: Arc<Shared>,
    admission: Arc<Admission>,
    mode: Mode,
    peer: PeerCredentials,
    /// Cancelled when the stream must end: its connection drains.
    end: CancellationToken,
}

/// The token of an `authorization: Bearer <token>` value (the scheme's
/// case does not matter, RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The stream's credentials: the client certificate's SANs the transport
/// verified, and the SHA-256 of an `authorization: Bearer` token (gRPC
/// initial metadata; the token itself is not kept).
fn peer_credentials<B>(req: &http::Request<B>) -> PeerCredentials {
    let peer = req.extensions().get::<Peer>();
    let token_sha256 = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(|token| sluice_core::digest::sha256_hex(token.as_bytes()));
    PeerCredentials {
        creds: Credentials {
            identities: peer.map(|p| p.identities.to_vec()).unwrap_or_default(),
            token_sha256,
        },
        remote: peer.and_then(|p| p.remote),
    }
}

type Unbox<T> = fn(Outgoing<T>) -> Result<T, Status>;

type RespStream<T> = futures::stream::Map<ReceiverStream<Outgoing<T>>, Unbox<T>>;

impl StreamHandler {
    /// Starts the stream's task on `incoming`; its responses come out of
    /// the returned stream.
    async fn call<Req>(self, incoming: Requests<Req>) -> Result<RespStream<Req::Resp>, Status>
    where
        Req: Variant + prost::Message + Default,
    {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let StreamHandler {
            shared,
            admission,
            mode,
            peer,
            end,
        } = self;
        tokio::spawn(async move {
            let slot = tokio::select! {
                slot = admission.admit(&shared.metrics) => slot,
                _ = end.cancelled() => return,
            };
            match slot {
                Ok(slot) => {
                    StreamTask::new(shared, mode, tx, slot, peer)
                        .run(incoming, end)
                        .await
                }
                Err(status) => {
                    let _ = tx.send(Box::new(Err(status))).await;
                }
            }
        });
        let unbox: Unbox<Req::Resp> = |item| *item;
        Ok(ReceiverStream::new(rx).map(unbox))
    }
}

/// How the server treats its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnLimits {
    /// `--xds-max-connection-age`: a connection is drained after about this
    /// long (±10 %, drawn per connection), so proxies reconnect and spread
    /// over the replicas again. `None`: connections live as long as the
    /// proxy keeps them.
    pub max_age: Option<Duration>,
}

/// How long a drained connection may take to close before it is dropped.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// The drain token of a request's connection (in its extensions): cancelled
/// when the connection reached its age, or on shutdown.
#[derive(Clone, Debug)]
pub(super) struct ConnDrain(pub(super) CancellationToken);

/// Serves ADS on `listener` until `stop` is cancelled, securing each
/// connection as `security` says (see `transport`).
///
/// Each connection is served by its own HTTP/2 server task (hyper, as
/// tonic's server does, with the same keepalives) so that it can be
/// drained on its own when it reaches its age: a GOAWAY, so the proxy
/// opens no new stream on it, then its streams end with OK, so the proxy
/// opens a new connection, possibly to another replica. On shutdown every
/// connection drains the same way and this returns once all are closed.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    service: AdsService,
    security: Security,
    limits: ConnLimits,
    stop: CancellationToken,
) {
    let metrics = service.shared.metrics.clone();
    let events: OnHandshake = Arc::new(move |h| metrics.handshake(h));
    let mut incoming = transport::accept(listener, security, events, stop.clone());
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http2_only();
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(5));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => break,
            c = incoming.recv() => match c {
                Some(Ok(conn)) => conn,
                Some(Err(e)) => {
                    debug!(error = %e, "xDS connection failed before serving");
                    continue;
                }
                None => break,
            },
        };
        let age = limits.max_age.map(jittered);
        tracker.spawn(serve_connection(
            conn,
            service.clone(),
            http.clone(),
            age,
            stop.clone(),
        ));
    }
    drop(incoming);
    tracker.close();
    tracker.wait().await;
}

/// `age` ± 10 %, drawn per connection so that connections opened together
/// (a fleet reconnecting after a restart) do not all age together.
fn jittered(age: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let r = ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_or(0.5, |()| {
            f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
        });
    age.mul_f64(0.9 + 0.2 * r)
}

async fn serve_connection(
    conn: transport::Conn,
    service: AdsService,
    http: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    age: Option<Duration>,
    stop: CancellationToken,
) {
    use tonic::transport::server::Connected;
    let peer = conn.connect_info();
    let drain = stop.child_token();
    let metrics = service.shared.metrics.clone();
    let svc = {
        let drain = drain.clone();
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer.clone());
            req.extensions_mut().insert(ConnDrain(drain.clone()));
            let mut service = service.clone();
            async move { tonic::codegen::Service::call(&mut service, req).await }
        })
    };
    let served = http.serve_connection(TokioIo::new(conn), svc);
    tokio::pin!(served);
    let aged = async {
        match age {
            Some(age) => tokio::time::sleep(age).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(aged);
    let mut draining: Option<tokio::time::Instant> = None;
    loop {
        let grace = async {
            match draining {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    debug!(error = %e, "xDS connection ended with an error");
                }
                return;
            }
            _ = &mut aged, if draining.is_none() => {
                metrics.connections_aged.inc();
                // GOAWAY first, so the proxy opens its next stream on a new
                // connection; then the streams end.
                served.as_mut().graceful_shutdown();
                drain.cancel();
                draining = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            _ = stop.cancelled(), if draining.is_none() => {
                served.as_mut().graceful_shutdown();
                draining = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            _ = grace => {
                debug!("xDS connection did not close after draining; dropping it");
                return;
            }
        }
    }
}

#[cfg(test)]
mod bearer_tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_read_without_regard_to_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
