//! Many simulated proxies in one process. Each has its own connection and
//! ADS stream (as Envoys do) and its own task; all share one [`Decoder`], so
//! a resource version is decoded once however many proxies receive it.
//! [`Fleet::reports`] gives every proxy's versions and ACK times, which is
//! what convergence benchmarks read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::{self, ClientConfig, Faults, Report};
use super::resources::Decoder;
use super::state::Mode;
use super::xds_tls::ClientSecurity;

#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// ADS server, `HOST:PORT`; several replicas: `HOST:PORT,HOST:PORT,…`
    /// (each connection goes to one at random, as `sluice bootstrap`'s
    /// cluster of replicas sends an Envoy's).
    pub xds: String,
    pub proxies: usize,
    pub mode: Mode,
    pub group: String,
    /// Node ids are `<prefix>-<n>`.
    pub node_prefix: String,
    pub faults: Faults,
    /// The RTDS layer every proxy subscribes to (see
    /// [`ClientConfig::runtime_layer`]).
    pub runtime_layer: Option<String>,
    /// How every proxy reaches sluice (default: plaintext).
    pub security: ClientSecurity,
}

pub struct Fleet {
    pub decoder: Arc<Decoder>,
    reports: Vec<watch::Receiver<Report>>,
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl Fleet {
    /// Start every proxy; returns at once (they connect in the background).
    pub fn start(cfg: &FleetConfig) -> Fleet {
        let decoder = Decoder::new();
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut reports = Vec::with_capacity(cfg.proxies);
        for i in 0..cfg.proxies {
            let (tx, rx) = watch::channel(Report::default());
            reports.push(rx);
            let c = ClientConfig {
                xds: cfg
                    .xds
                    .split(',')
                    .map(|a| format!("http://{}", a.trim()))
                    .collect::<Vec<_>>()
                    .join(","),
                node_id: format!("{}-{i}", cfg.node_prefix),
                group: cfg.group.clone(),
                mode: cfg.mode,
                faults: cfg.faults.clone(),
                runtime_layer: cfg.runtime_layer.clone(),
                security: cfg.security.clone(),
            };
            let (decoder, stop) = (decoder.clone(), stop.clone());
            tasks.spawn(async move {
                if let Err(e) = client::run(c, decoder, tx, stop).await {
                    tracing::error!(error = %e, "sim proxy stopped");
                }
            });
        }
        Fleet {
            decoder,
            reports,
            tasks,
            stop,
        }
    }

    pub fn len(&self) -> usize {
        self.reports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }

    /// A receiver of proxy `i`'s report, woken after each response it
    /// handles (so a benchmark can timestamp ACKs as they happen instead of
    /// polling); `None` past the fleet's size.
    pub fn watch(&self, i: usize) -> Option<watch::Receiver<Report>> {
        self.reports.get(i).cloned()
    }

    /// Every proxy's current report.
    pub fn reports(&self) -> Vec<Report> {
        self.reports.iter().map(|r| r.borrow().clone()).collect()
    }

    /// Polls until `done` holds for every proxy's report or `timeout`
    /// passes; returns how long it took, or `None` on timeout.
    pub async fn wait_all(
        &self,
        timeout: Duration,
        done: impl Fn(&Report) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if self.reports.iter().all(|r| done(&r.borrow())) {
                return Some(start.elapsed());
            }
            if start.elapsed() > timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stop every proxy and wait for their tasks.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
