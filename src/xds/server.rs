//! The gRPC edge: `AggregatedDiscoveryService` over tonic.
//!
//! Each stream gets a task ([`stream`](super::stream)) that owns a
//! `Session` and moves messages between it, the client and the published
//! snapshots; it computes nothing itself. A slow client only blocks its
//! own task (its responses wait on its own bounded channel), never another
//! stream or the publisher.
//!
//! The service is written against tonic's server API directly rather than
//! `envoy-types`' generated server, because the generated response types
//! hold `Vec<u8>` payloads; ours ([`wire`](super::wire)) share one `Bytes`
//! per resource. The two ADS streams are framed by
//! [`grpc_body`](super::grpc_body) rather than tonic's codec, whose
//! per-stream buffers keep the largest message's capacity. Methods other
//! than the two ADS streams answer UNIMPLEMENTED.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::Status;

use super::admission::{Admission, Limits};
use super::grpc_body::{self, Requests};
use super::history::History;
use super::metrics::XdsMetrics;
use super::registry::Registry;
use super::resource::Snapshots;
use super::session::Mode;
use super::stream::{Outgoing, StreamTask, Variant};

pub const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Responses queued per stream before the task waits for the client.
const STREAM_BUFFER: usize = 8;

/// A snapshot set as published, with the time it was published (for the
/// publication → ACK latency metric) and the diffs from the last few
/// publishes, so that each stream only looks at what changed.
#[derive(Debug)]
pub struct Published {
    pub snapshots: Arc<Snapshots>,
    pub at: Instant,
    pub history: History,
}

impl Published {
    /// `snapshots` published after `prev`: diffs each group against it
    /// (once, here, for all streams) and keeps `prev`'s `Arc` for groups
    /// whose content did not change.
    pub fn after(prev: Option<&Published>, mut snapshots: Snapshots, at: Instant) -> Published {
        let history = match prev {
            Some(p) => p.history.advance(&p.snapshots, &mut snapshots),
            None => History::default(),
        };
        Published {
            snapshots: Arc::new(snapshots),
            at,
            history,
        }
    }
}

/// `None` until the first complete snapshot: until then streams are held
/// and nothing is sent (no partial or empty first push).
pub type SnapshotRx = watch::Receiver<Option<Arc<Published>>>;

pub struct Shared {
    pub snapshots: SnapshotRx,
    pub registry: Arc<Registry>,
    pub metrics: XdsMetrics,
    /// Cancelled on shutdown: every stream ends, then the server returns.
    pub shutdown: CancellationToken,
    pub limits: Limits,
}

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
        let max = shared.limits.max_message_bytes;
        match req.uri().path() {
            // Not tonic's `Grpc::streaming`: see `grpc_body` (memory).
            SOTW_PATH => Box::pin(async move {
                let handler = StreamHandler {
                    shared,
                    admission,
                    mode: Mode::Sotw,
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
        } = self;
        tokio::spawn(async move {
            let shutdown = shared.shutdown.clone();
            let slot = tokio::select! {
                slot = admission.admit(&shared.metrics) => slot,
                _ = shutdown.cancelled() => return,
            };
            match slot {
                Ok(slot) => StreamTask::new(shared, mode, tx, slot).run(incoming).await,
                Err(status) => {
                    let _ = tx.send(Box::new(Err(status))).await;
                }
            }
        });
        let unbox: Unbox<Req::Resp> = |item| *item;
        Ok(ReceiverStream::new(rx).map(unbox))
    }
}

/// Serves ADS on `listener` until `stop` is cancelled.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    service: AdsService,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(5)))
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            stop.cancelled_owned(),
        )
        .await
}
