//! The gRPC edge: `AggregatedDiscoveryService` over tonic.
//!
//! Each stream gets a task that owns a [`Session`] and moves messages
//! between it, the client and the published snapshots; it computes
//! nothing itself. A slow client only blocks its own task (its responses
//! wait on its own bounded channel), never another stream or the publisher.
//!
//! The service is written against tonic's server API directly rather than
//! `envoy-types`' generated server, because the generated response types
//! hold `Vec<u8>` payloads; ours ([`wire`]) share one `Bytes` per resource.
//! Methods other than the two ADS streams answer UNIMPLEMENTED.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use futures::StreamExt;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::Status;
use tracing::{debug, error, info, warn};

use super::admission::{Admission, Limits};
use super::grpc_body::{self, Requests};
use super::history::History;
use super::registry::Registry;
use super::resource::{Snapshot, Snapshots, TypeUrl};
use super::session::{Event, Mode, Output, ProtocolError, Response, Session};
use super::wire;
use crate::metrics::{Metrics, ModeLabel};

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

/// Glue between one protocol variant's message types and the session.
trait Variant: Send + 'static {
    type Resp: Send + prost::Message + 'static;
    fn handle(session: &mut Session, req: Self) -> Result<Output, ProtocolError>;
    fn unwrap(resp: Response) -> Option<Self::Resp>;
    /// Type, nonce and number of resources (upserts and removals).
    fn summary(resp: &Self::Resp) -> (&str, &str, usize);
}

impl Variant for DiscoveryRequest {
    type Resp = wire::DiscoveryResponse;
    fn handle(session: &mut Session, req: Self) -> Result<Output, ProtocolError> {
        session.on_sotw_request(req)
    }
    fn unwrap(resp: Response) -> Option<Self::Resp> {
        match resp {
            Response::Sotw(r) => Some(r),
            Response::Delta(_) => None,
        }
    }
    fn summary(r: &Self::Resp) -> (&str, &str, usize) {
        (&r.type_url, &r.nonce, r.resources.len())
    }
}

impl Variant for DeltaDiscoveryRequest {
    type Resp = wire::DeltaDiscoveryResponse;
    fn handle(session: &mut Session, req: Self) -> Result<Output, ProtocolError> {
        session.on_delta_request(req)
    }
    fn unwrap(resp: Response) -> Option<Self::Resp> {
        match resp {
            Response::Delta(r) => Some(r),
            Response::Sotw(_) => None,
        }
    }
    fn summary(r: &Self::Resp) -> (&str, &str, usize) {
        (
            &r.type_url,
            &r.nonce,
            r.resources.len() + r.removed_resources.len(),
        )
    }
}

/// What a stream task queues for its client. Boxed: tokio's channel
/// allocates its slots 32 at a time, and a `Status` makes the unboxed item
/// ~180 bytes, 4.6 KB per idle stream (docs/benchmarks.md, B4).
type Outgoing<T> = Box<Result<T, Status>>;

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
            let mut shutdown = shared.shutdown.clone();
            let slot = tokio::select! {
                slot = admission.admit(&shared.metrics) => slot,
                _ = shutdown.wait_for(|s| *s) => return,
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

struct StreamTask<Resp> {
    shared: Arc<Shared>,
    id: u64,
    session: Session,
    tx: mpsc::Sender<Outgoing<Resp>>,
    /// The group snapshot the session has, to skip no-op republishes.
    current: Option<Arc<Snapshot>>,
    /// Publication time of the snapshot each in-flight nonce carries.
    sent_at: HashMap<String, Instant>,
    published_at: Option<Instant>,
    registered: bool,
    /// The admission slot, until the proxy is configured or the hold
    /// time is up (see `admission`).
    slot: Option<OwnedSemaphorePermit>,
}

impl<Resp: Send + prost::Message + 'static> StreamTask<Resp> {
    fn new(
        shared: Arc<Shared>,
        mode: Mode,
        tx: mpsc::Sender<Outgoing<Resp>>,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        let id = shared.registry.next_stream_id();
        StreamTask {
            shared,
            id,
            session: Session::new(mode),
            tx,
            current: None,
            sent_at: HashMap::new(),
            published_at: None,
            registered: false,
            slot: Some(slot),
        }
    }

    async fn run<Req>(mut self, mut incoming: Requests<Req>)
    where
        Req: Variant<Resp = Resp> + prost::Message + Default,
    {
        let mut snapshots = self.shared.snapshots.clone();
        let mut shutdown = self.shared.shutdown.clone();
        let hold_until = tokio::time::Instant::now() + self.shared.limits.admission_hold;
        loop {
            let keep_going = tokio::select! {
                _ = shutdown.changed() => false,
                _ = tokio::time::sleep_until(hold_until), if self.slot.is_some() => {
                    self.slot = None;
                    true
                }
                msg = incoming.message() => match msg {
                    Ok(Some(req)) => self.on_request(req, &mut snapshots).await,
                    Ok(None) => false,
                    Err(status) => {
                        debug!(stream = self.id, %status, "stream ended with error");
                        false
                    }
                },
                changed = snapshots.changed() => match changed {
                    Ok(()) => self.on_publish::<Req>(&mut snapshots).await,
                    Err(_) => false,
                },
            };
            if !keep_going {
                break;
            }
        }
        self.close();
    }

    async fn on_request<Req>(&mut self, req: Req, snapshots: &mut SnapshotRx) -> bool
    where
        Req: Variant<Resp = Resp>,
    {
        let out = match Req::handle(&mut self.session, req) {
            Ok(out) => out,
            Err(e) => {
                warn!(stream = self.id, error = %e, "closing stream");
                let _ = self
                    .tx
                    .send(Box::new(Err(Status::invalid_argument(e.to_string()))))
                    .await;
                return false;
            }
        };
        if !self.registered {
            if let Some(node) = self.session.node() {
                info!(stream = self.id, node = %node.id, group = %node.group,
                      mode = ?self.session.mode(), "proxy connected");
                self.shared
                    .registry
                    .connect(self.id, node.clone(), self.session.mode());
                self.shared
                    .metrics
                    .connected_proxies
                    .get_or_create(&self.mode_label())
                    .inc();
                self.registered = true;
            }
        }
        if !self.deliver::<Req>(out).await {
            return false;
        }
        if self.registered && self.current.is_none() {
            // The node is known now: hand the session its group's snapshot.
            return self.on_publish::<Req>(snapshots).await;
        }
        true
    }

    async fn on_publish<Req>(&mut self, snapshots: &mut SnapshotRx) -> bool
    where
        Req: Variant<Resp = Resp>,
    {
        let published = snapshots.borrow_and_update().clone();
        let (Some(published), Some(node)) = (published, self.session.node()) else {
            return true;
        };
        let snap = published.snapshots.for_group(&node.group).clone();
        // The publisher keeps the `Arc` of an unchanged group, and a diff
        // says what changed since the snapshot this stream has.
        let diff = match &self.current {
            Some(c) if Arc::ptr_eq(c, &snap) => return true,
            Some(c) => published.history.diff(&node.group, c, &snap),
            None => None,
        };
        self.current = Some(snap.clone());
        self.published_at = Some(published.at);
        let out = match diff {
            Some(diff) => self.session.on_snapshot_diff(snap, &diff),
            None => self.session.on_snapshot(snap),
        };
        self.deliver::<Req>(out).await
    }

    /// Sends the responses, records events; false once the client is gone.
    /// A response larger than the message limit is withheld instead (the
    /// session settles it like a NACK, which may free later types).
    async fn deliver<Req>(&mut self, out: Output) -> bool
    where
        Req: Variant<Resp = Resp>,
    {
        let mut queue = std::collections::VecDeque::from([out]);
        while let Some(out) = queue.pop_front() {
            for event in &out.events {
                self.record(event);
            }
            for resp in out.responses {
                let Some(resp) = Req::unwrap(resp) else {
                    continue;
                };
                let size = resp.encoded_len();
                let limit = self.shared.limits.max_message_bytes;
                if size > limit {
                    queue.push_back(self.withhold::<Req>(&resp, size, limit));
                    continue;
                }
                if self.tx.send(Box::new(Ok(resp))).await.is_err() {
                    return false;
                }
            }
        }
        if self.registered {
            self.shared.registry.update(self.id, self.session.status());
            if self.slot.is_some() && self.session.configured() {
                // The initial configuration is done: let the next stream in.
                self.slot = None;
            }
        }
        true
    }

    /// Settles a response too large to send; see [`Session::withhold`].
    fn withhold<Req>(&mut self, resp: &Resp, size: usize, limit: usize) -> Output
    where
        Req: Variant<Resp = Resp>,
    {
        let (type_url, nonce, count) = Req::summary(resp);
        let Some(ty) = TypeUrl::parse(type_url) else {
            return Output::default();
        };
        let error = format!(
            "sluice: {count} {ty} resources encode to {size} bytes, over the {limit}-byte gRPC message limit; not sent"
        );
        self.session.withhold(ty, nonce, error)
    }

    fn record(&mut self, event: &Event) {
        let metrics = &self.shared.metrics;
        let node = self.session.node().map(|n| n.id.as_str()).unwrap_or("");
        match event {
            Event::Sent { ty, nonce, .. } => {
                metrics
                    .pushes
                    .get_or_create(&Metrics::type_label(*ty))
                    .inc();
                if let Some(at) = self.published_at {
                    self.sent_at.insert(nonce.clone(), at);
                }
            }
            Event::Acked { ty, nonce, .. } => {
                metrics.acks.get_or_create(&Metrics::type_label(*ty)).inc();
                if let Some(at) = self.sent_at.remove(nonce) {
                    metrics
                        .push_latency
                        .get_or_create(&Metrics::type_label(*ty))
                        .observe(at.elapsed().as_secs_f64());
                }
            }
            Event::Nacked {
                ty,
                version,
                nonce,
                error,
            } => {
                metrics.nacks.get_or_create(&Metrics::type_label(*ty)).inc();
                self.sent_at.remove(nonce);
                warn!(stream = self.id, node, r#type = %ty, version, error, "proxy rejected config");
            }
            Event::Withheld {
                ty,
                version,
                nonce,
                error,
            } => {
                metrics
                    .oversized_responses
                    .get_or_create(&Metrics::type_label(*ty))
                    .inc();
                self.sent_at.remove(nonce);
                error!(stream = self.id, node, r#type = %ty, version, error, "response withheld; the proxy keeps its config");
            }
            Event::UnknownType { type_url } => {
                debug!(
                    stream = self.id,
                    type_url, "request for a type sluice does not serve"
                );
            }
        }
    }

    fn mode_label(&self) -> ModeLabel {
        let mode = match self.session.mode() {
            Mode::Sotw => "sotw",
            Mode::Delta => "delta",
        };
        ModeLabel {
            mode: mode.to_string(),
        }
    }

    fn close(&mut self) {
        if self.registered {
            self.shared.registry.disconnect(self.id);
            self.shared
                .metrics
                .connected_proxies
                .get_or_create(&self.mode_label())
                .dec();
            if let Some(node) = self.session.node() {
                info!(stream = self.id, node = %node.id, "proxy disconnected");
            }
        }
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
