//! The gRPC edge: `AggregatedDiscoveryService` over tonic.
//!
//! Each stream gets a task ([`stream`](super::stream)) that owns a
//! `Session` and moves messages between it, the client and the published
//! snapshots; it computes nothing itself. A slow client only blocks its own task (its responses
//! wait on its own bounded channel), never another stream or the publisher.
//!
//! The service is written against tonic's server API directly rather than
//! `envoy-types`' generated server, because the generated response types
//! hold `Vec<u8>` payloads; ours ([`wire`]) share one `Bytes` per resource.
//! Methods other than the two ADS streams answer UNIMPLEMENTED.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::{Status, Streaming};

use super::admission::{Admission, Limits};
use super::history::History;
use super::registry::Registry;
use super::resource::Snapshots;
use super::session::Mode;
use super::stream::{StreamTask, Variant};
use super::wire;
use crate::metrics::Metrics;

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
    pub metrics: Arc<Metrics>,
    pub shutdown: watch::Receiver<bool>,
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
        let max = Some(shared.limits.max_message_bytes);
        match req.uri().path() {
            SOTW_PATH => Box::pin(async move {
                let codec =
                    tonic_prost::ProstCodec::<wire::DiscoveryResponse, DiscoveryRequest>::default();
                let mut grpc =
                    tonic::server::Grpc::new(codec).apply_max_message_size_config(max, max);
                Ok(grpc
                    .streaming(
                        StreamHandler {
                            shared,
                            admission,
                            mode: Mode::Sotw,
                        },
                        req,
                    )
                    .await)
            }),
            DELTA_PATH => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<
                    wire::DeltaDiscoveryResponse,
                    DeltaDiscoveryRequest,
                >::default();
                let mut grpc =
                    tonic::server::Grpc::new(codec).apply_max_message_size_config(max, max);
                Ok(grpc
                    .streaming(
                        StreamHandler {
                            shared,
                            admission,
                            mode: Mode::Delta,
                        },
                        req,
                    )
                    .await)
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

type RespStream<T> = ReceiverStream<Result<T, Status>>;

impl<Req> tonic::server::StreamingService<Req> for StreamHandler
where
    Req: Variant + prost::Message + Default,
{
    type Response = Req::Resp;
    type ResponseStream = RespStream<Req::Resp>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<Req>>) -> Self::Future {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let shared = self.shared.clone();
        let admission = self.admission.clone();
        let mode = self.mode;
        let incoming = request.into_inner();
        tokio::spawn(async move {
            let mut shutdown = shared.shutdown.clone();
            let slot = tokio::select! {
                slot = admission.admit(&shared.metrics) => slot,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match slot {
                Ok(slot) => StreamTask::new(shared, mode, tx, slot).run(incoming).await,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                }
            }
        });
        Box::pin(async move { Ok(tonic::Response::new(ReceiverStream::new(rx))) })
    }
}

/// Serves ADS on `listener` until `stop` becomes true.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    service: AdsService,
    mut stop: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(5)))
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        )
        .await
}
