//! The rollout admin gRPC service (`proto/sluice/admin/v1/rollout.proto`):
//! a thin edge over the driver's [`Handle`]. Every call must carry
//! `authorization: Bearer <token>`; anything else is UNAUTHENTICATED before
//! the service sees it. Errors map to gRPC codes here, explicitly.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::driver::{self, DriverError, Handle};
use super::pb::{self, rollout_service_server::RolloutService};
use super::plan::Command;
use super::store::StoreError;
use super::{HeaderRoute, Spec, Strategy};
use crate::xds::transport::{self, Security, TlsConfigs};

pub use super::pb::rollout_service_server::RolloutServiceServer;

/// Defaults the CLI documents, applied to fields a caller left zero.
pub const DEFAULT_STEPS: [u32; 5] = [5, 10, 25, 50, 100];
pub const DEFAULT_INTERVAL_MS: u64 = 30_000;
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 30_000;

pub struct Service {
    handle: Handle,
}

/// Rejects calls without the bearer token. The comparison does not stop at
/// the first differing byte, so timing does not reveal the token.
#[derive(Clone)]
pub struct Auth {
    expected: Arc<Vec<u8>>,
}

impl Auth {
    pub fn new(token: &str) -> Auth {
        Auth {
            expected: Arc::new(format!("Bearer {}", token.trim()).into_bytes()),
        }
    }

    /// Whether `authorization` (the header's value) carries the token.
    pub fn accepts(&self, authorization: &[u8]) -> bool {
        authorization.len() == self.expected.len()
            && authorization
                .iter()
                .zip(self.expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let given = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if self.accepts(given) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("missing or wrong admin token"))
        }
    }
}

/// Serves the admin API on `listener` until `stop` is cancelled.
/// Serves the rollout API on `listener` until `stop`: plaintext, or TLS
/// with the xDS port's certificate (`--xds-tls-cert`; a client certificate
/// is not asked for: the bearer token authenticates).
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: Handle,
    token: String,
    tls: Option<watch::Receiver<Arc<TlsConfigs>>>,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let svc = RolloutServiceServer::with_interceptor(Service { handle }, Auth::new(&token));
    let security = match tls {
        None => Security::Plaintext,
        // The lenient configuration (when there is a client CA) asks for
        // a certificate without requiring one; without a CA, the strict
        // one asks for none.
        Some(configs) => Security::Tls {
            configs,
            lenient: Arc::new(|| true),
        },
    };
    let incoming = transport::accept(listener, security, Arc::new(|_| {}), stop.clone());
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), stop.cancelled_owned())
        .await
}

fn status(e: DriverError) -> Status {
    match e {
        DriverError::NotFound(_) => Status::not_found(e.to_string()),
        DriverError::Active(_) => Status::already_exists(e.to_string()),
        DriverError::Spec(_) | DriverError::UnknownCluster(_) => {
            Status::invalid_argument(e.to_string())
        }
        DriverError::Command(_) => Status::failed_precondition(e.to_string()),
        DriverError::NotReady | DriverError::Stopped => Status::unavailable(e.to_string()),
        // The shared store (etcd) is out of reach: try again later.
        DriverError::Store(StoreError::Remote(_)) => Status::unavailable(e.to_string()),
        DriverError::Store(StoreError::Conflict(_)) => Status::aborted(e.to_string()),
        DriverError::Store(_) => Status::internal(e.to_string()),
    }
}

/// The request as a spec (validated later, by the driver).
pub fn spec_of(r: pb::StartRequest) -> Spec {
    let strategy = match pb::Strategy::try_from(r.strategy) {
        Ok(pb::Strategy::BlueGreen) => Strategy::BlueGreen,
        _ => Strategy::Canary,
    };
    let or = |v: u64, d: u64| if v == 0 { d } else { v };
    Spec {
        from: if r.from.is_empty() {
            "stable".into()
        } else {
            r.from
        },
        to: r.to,
        steps: if r.steps.is_empty() {
            DEFAULT_STEPS.to_vec()
        } else {
            r.steps
        },
        interval_ms: or(r.interval_ms, DEFAULT_INTERVAL_MS),
        max_error_rate: r.max_error_rate,
        max_p99_ms: r.max_p99_ms,
        failure_threshold: if r.failure_threshold == 0 {
            DEFAULT_FAILURE_THRESHOLD
        } else {
            r.failure_threshold
        },
        header: (!r.header_name.is_empty()).then(|| HeaderRoute {
            name: r.header_name.to_ascii_lowercase(),
            value: r.header_value,
        }),
        strategy,
        ack_share: if r.ack_share == 0.0 { 1.0 } else { r.ack_share },
        ack_timeout_ms: or(r.ack_timeout_ms, DEFAULT_ACK_TIMEOUT_MS),
        service: r.service,
    }
}

pub fn request_of(s: &Spec) -> pb::StartRequest {
    let (header_name, header_value) = s
        .header
        .as_ref()
        .map(|h| (h.name.clone(), h.value.clone()))
        .unwrap_or_default();
    pb::StartRequest {
        service: s.service.clone(),
        from: s.from.clone(),
        to: s.to.clone(),
        steps: s.steps.clone(),
        interval_ms: s.interval_ms,
        max_error_rate: s.max_error_rate,
        max_p99_ms: s.max_p99_ms,
        failure_threshold: s.failure_threshold,
        header_name,
        header_value,
        strategy: match s.strategy {
            Strategy::Canary => pb::Strategy::Canary,
            Strategy::BlueGreen => pb::Strategy::BlueGreen,
        } as i32,
        ack_share: s.ack_share,
        ack_timeout_ms: s.ack_timeout_ms,
    }
}

pub fn rollout_pb(s: &driver::Status) -> pb::Rollout {
    let r = &s.rollout;
    let reason = match &r.state {
        super::State::Paused { reason, .. }
        | super::State::RolledBack { reason }
        | super::State::Aborted { reason } => reason.clone(),
        _ => String::new(),
    };
    pb::Rollout {
        spec: Some(request_of(&r.spec)),
        phase: r.state.phase().to_string(),
        step: r.state.step().map_or(0, |s| s as u32),
        canary_weight: r.canary_weight().unwrap_or(0),
        failures: r.failures,
        reason,
        acked: s.acked,
        targeted: s.targeted,
        checks: r
            .checks
            .iter()
            .map(|c| pb::Check {
                at_ms: c.at_ms,
                passed: c.passed,
                error_rate: c.error_rate,
                p99_ms: c.p99_ms,
                requests: c.requests,
                detail: c.detail.clone(),
            })
            .collect(),
        history: r
            .history
            .iter()
            .map(|e| pb::Event {
                at_ms: e.at_ms,
                message: e.message.clone(),
            })
            .collect(),
        done: r.state.is_final(),
    }
}

type Reply = Result<Response<pb::Rollout>, Status>;

impl Service {
    async fn command(&self, service: String, cmd: Command) -> Reply {
        let st = self.handle.command(&service, cmd).await.map_err(status)?;
        Ok(Response::new(rollout_pb(&st)))
    }
}

#[tonic::async_trait]
impl RolloutService for Service {
    async fn start(&self, req: Request<pb::StartRequest>) -> Reply {
        let st = self
            .handle
            .start(spec_of(req.into_inner()))
            .await
            .map_err(status)?;
        Ok(Response::new(rollout_pb(&st)))
    }

    async fn get(&self, req: Request<pb::ServiceRequest>) -> Reply {
        let st = self.handle.get(&req.into_inner().service).map_err(status)?;
        Ok(Response::new(rollout_pb(&st)))
    }

    async fn list(
        &self,
        _: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let rollouts = self.handle.list().iter().map(rollout_pb).collect();
        Ok(Response::new(pb::ListResponse { rollouts }))
    }

    async fn pause(&self, req: Request<pb::ServiceRequest>) -> Reply {
        self.command(req.into_inner().service, Command::Pause).await
    }

    async fn resume(&self, req: Request<pb::ServiceRequest>) -> Reply {
        self.command(req.into_inner().service, Command::Resume)
            .await
    }

    async fn promote(&self, req: Request<pb::PromoteRequest>) -> Reply {
        let r = req.into_inner();
        self.command(r.service, Command::Promote { full: r.full })
            .await
    }

    async fn abort(&self, req: Request<pb::ServiceRequest>) -> Reply {
        self.command(req.into_inner().service, Command::Abort).await
    }
}
