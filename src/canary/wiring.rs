//! Starting the rollout controller inside `sluice serve`: the state store,
//! the metrics source, the driver task and the admin gRPC listener. `serve`
//! calls [`start`] before its first publish, so a restarted sluice compiles
//! its very first snapshot with the saved rollouts' weights — never a
//! reset to the rules' split.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::acks::{AckReader, Applied};
use super::driver::{Driver, Handle};
use super::metrics::{EnvoyAdmin, MetricsSource, Prometheus, Unavailable};
use super::overlay::{Overlays, WeightsVia};
use super::store::FileStore;
use crate::cli_support::TOKEN_ENV;
use crate::xds::registry::Registry;
use crate::xds::transport::TlsConfigs;

#[derive(Clone, Debug, Default)]
pub struct RolloutOptions {
    /// Loopback address of the admin gRPC API.
    pub admin_grpc: Option<SocketAddr>,
    pub token: Option<String>,
    /// Envoy admin addresses whose `/stats` analysis reads.
    pub envoy_admin: Vec<String>,
    /// A Prometheus base URL (takes precedence over `envoy_admin`).
    pub prometheus: Option<String>,
    /// How rollout weights reach Envoy.
    pub weights: WeightsVia,
}

/// The controller's channels to the publisher, and its tasks.
pub struct Started {
    pub overlays: watch::Receiver<Overlays>,
    pub applied: watch::Sender<Option<Arc<Applied>>>,
    /// How the admin APIs (gRPC and HTTP) reach the controller; `None`
    /// without one (no `--state-dir` or `--state-etcd`).
    pub handle: Option<Handle>,
    tasks: Vec<JoinHandle<()>>,
}

impl Started {
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the rollout controller when there is a `state_dir` (where
/// rollout state is kept; without it there is no controller).
pub async fn start(
    state_dir: Option<&Path>,
    opts: &RolloutOptions,
    registry: Arc<Registry>,
    tls: Option<watch::Receiver<Arc<TlsConfigs>>>,
    stop: CancellationToken,
) -> anyhow::Result<Started> {
    let (overlay_tx, overlay_rx) = watch::channel(Overlays::default());
    let (applied_tx, applied_rx) = watch::channel(None);
    let mut tasks = Vec::new();
    let Some(dir) = state_dir else {
        anyhow::ensure!(
            opts.admin_grpc.is_none(),
            "--admin-grpc needs --state-dir or --state-etcd: rollout state must survive a restart"
        );
        return Ok(Started::new(overlay_rx, applied_tx, None, tasks));
    };
    let driver = Driver {
        store: Arc::new(FileStore::new(dir)),
        metrics: metrics_source(opts),
        overlays: overlay_tx,
        acks: AckReader::new(registry, applied_rx, opts.weights),
    };
    let (run, handle) = driver
        .start(stop.clone())
        .await
        .with_context(|| format!("loading rollout state from {}", dir.display()))?;
    tasks.push(tokio::spawn(run));
    tasks.extend(serve_admin(opts, handle.clone(), tls, stop).await?);
    Ok(Started::new(overlay_rx, applied_tx, Some(handle), tasks))
}

impl Started {
    pub fn new(
        overlays: watch::Receiver<Overlays>,
        applied: watch::Sender<Option<Arc<Applied>>>,
        handle: Option<Handle>,
        tasks: Vec<JoinHandle<()>>,
    ) -> Started {
        Started {
            overlays,
            applied,
            handle,
            tasks,
        }
    }
}

/// Where rollout analysis reads its metrics.
pub fn metrics_source(opts: &RolloutOptions) -> Arc<dyn MetricsSource> {
    match (&opts.prometheus, opts.envoy_admin.is_empty()) {
        (Some(url), _) => Arc::new(Prometheus::new(url.clone())),
        (None, false) => Arc::new(EnvoyAdmin::new(opts.envoy_admin.clone())),
        (None, true) => {
            warn!("no metrics source (--metrics-envoy-admin or --metrics-prometheus): every rollout check will fail");
            Arc::new(Unavailable)
        }
    }
}

/// Serves the admin gRPC API over `handle` when `--admin-grpc` asks for
/// it; the task, if any.
pub async fn serve_admin(
    opts: &RolloutOptions,
    handle: Handle,
    tls: Option<watch::Receiver<Arc<TlsConfigs>>>,
    stop: CancellationToken,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(addr) = opts.admin_grpc else {
        return Ok(None);
    };
    let token = opts.token.clone().with_context(|| {
        format!("--admin-grpc needs a token: --admin-token-file or ${TOKEN_ENV}")
    })?;
    if !addr.ip().is_loopback() && tls.is_none() {
        warn!(%addr, "admin gRPC is not on loopback and not TLS (--xds-tls-cert): the token travels in plaintext");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding admin gRPC listener {addr}"))?;
    let local = listener.local_addr()?;
    println!("sluice: admin grpc listening on {local}");
    info!(%local, "rollout admin API listening");
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = super::grpc::serve(listener, handle, token, tls, stop).await {
            error!(error = %e, "admin gRPC server failed");
        }
    })))
}
