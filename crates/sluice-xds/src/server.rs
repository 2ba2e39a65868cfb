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

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::Status;

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
        let max = shared.limits.max_message_bytes;
        match req.uri().path() {
            // Not tonic's `Grpc::streaming`: see `grpc_body` (memory).
            SOTW_PATH => Box::pin(async move {
                let handler = StreamHandler {
                    shared,
                    admission,
                    mode: Mode::Sotw,
                    peer,
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
        } = self;
        tokio::spawn(async move {
            let shutdown = shared.shutdown.clone();
            let slot = tokio::select! {
                slot = admission.admit(&shared.metrics) => slot,
                _ = shutdown.cancelled() => return,
            };
            match slot {
                Ok(slot) => {
                    StreamTask::new(shared, mode, tx, slot, peer)
                        .run(incoming)
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

/// Serves ADS on `listener` until `stop` is cancelled, securing each
/// connection as `security` says (see `transport`).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    service: AdsService,
    security: Security,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let metrics = service.shared.metrics.clone();
    let events: OnHandshake = Arc::new(move |h| metrics.handshake(h));
    let incoming = transport::accept(listener, security, events, stop.clone());
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(5)))
        .add_service(service)
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), stop.cancelled_owned())
        .await
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
