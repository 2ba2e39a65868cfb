//! The two listeners `serve` opens: the xDS server and the admin HTTP
//! API. Each binds first (so `serve` can print the bound address before
//! anything is served) and is then spawned with the token that stops it.
//!
//! Shutdown is graceful for both: cancelling the xDS token ends every ADS
//! stream (each selects on it) and then tonic's server returns; axum stops
//! accepting and finishes the requests in flight.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::xds::admission::Limits;
use crate::xds::metrics::XdsMetrics;
use crate::xds::registry::Registry;
use crate::xds::server::{serve_on, AdsService, ConnLimits, Shared, SnapshotRx, StreamSecurity};
use crate::xds::transport::{Security, TlsConfigs};

/// How the xDS server secures its streams.
pub(super) struct XdsSecurity {
    /// The TLS configurations in force, `None` for plaintext.
    pub tls: Option<tokio::sync::watch::Receiver<Arc<TlsConfigs>>>,
    pub stream: StreamSecurity,
}

/// The ADS gRPC server.
pub(super) struct XdsServer {
    listener: TcpListener,
}

impl XdsServer {
    pub fn bind(addr: SocketAddr) -> anyhow::Result<XdsServer> {
        // A reconnect storm must wait in the accept queue, not overflow it.
        let listener = crate::xds::listener::bind(addr)
            .with_context(|| format!("binding xDS listener {addr}"))?;
        Ok(XdsServer { listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `snapshots` until `stop` is cancelled, with TLS when
    /// `security.tls` holds the configurations (see `xds_tls`).
    pub fn spawn(
        self,
        snapshots: SnapshotRx,
        registry: Arc<Registry>,
        metrics: XdsMetrics,
        security: XdsSecurity,
        limits: ConnLimits,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let transport = match security.tls {
            None => Security::Plaintext,
            Some(configs) => {
                // The lenient configuration (client certificate requested,
                // not required) only while bearer tokens are accepted too.
                let published = snapshots.clone();
                let lenient = Arc::new(move || {
                    published
                        .borrow()
                        .as_ref()
                        .is_some_and(|p| p.access.iter().any(|e| e.is_token()))
                });
                Security::Tls { configs, lenient }
            }
        };
        let ads = AdsService::new(Shared {
            snapshots,
            registry,
            metrics,
            shutdown: stop.clone(),
            limits: Limits::default(),
            security: security.stream,
        });
        tokio::spawn(serve_on(self.listener, ads, transport, limits, stop))
    }
}

/// The admin HTTP API.
pub(super) struct AdminServer {
    listener: TcpListener,
}

impl AdminServer {
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<AdminServer> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding admin listener {addr}"))?;
        Ok(AdminServer { listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `state` until `stop` is cancelled.
    pub fn spawn(
        self,
        state: AdminState,
        stop: CancellationToken,
    ) -> JoinHandle<std::io::Result<()>> {
        tokio::spawn(async move {
            axum::serve(self.listener, admin::router(state))
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    }
}
