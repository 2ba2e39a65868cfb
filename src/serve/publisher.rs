//! The compiler/publisher: resolves the latest rules against the latest
//! discovery view, applies the drain and rollout overlays, compiles, and
//! publishes the snapshots every xDS stream reads.
//!
//! [`Publisher::new`] publishes once at start, so a config without
//! discovery is served from the first connection; [`Publisher::spawn`]
//! then republishes whenever an input changes, coalescing bursts
//! ([`Coalescer`]). It also drives the discovery [`Supervisor`]: feeds are
//! reconciled in the same task, before the change is published, so a
//! resolve never runs against feeds the config no longer has.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use crate::canary::acks::Applied;
use crate::canary::overlay::{self, Overlays, WeightsVia};
use crate::compile;
use crate::discovery::coalesce::{CoalesceConfig, Coalescer};
use crate::discovery::resolve::Resolver;
use crate::discovery::{Supervisor, View};
use crate::drain::Drains;
use crate::model::{AccessEntry, Config};
use crate::xds::metrics::PublishMetrics;
use crate::xds::published::{Published, SnapshotRx};
use crate::xds::Snapshots;

/// The last resolved config that compiled: what `/debug/config` shows and
/// `sluice diff` compares with.
pub(super) type ServedConfig = Arc<Mutex<Option<Arc<Config>>>>;

/// The publisher, built and published once; [`spawn`](Self::spawn) runs it.
pub(super) struct Publisher {
    inputs: Inputs,
    supervisor: Supervisor,
    out: Outputs,
    snapshots: SnapshotRx,
}

impl Publisher {
    /// Publishes what `inputs` hold now (nothing while discovery has not
    /// synced); `applied` tells the rollout controller what was compiled.
    pub fn new(
        inputs: Inputs,
        supervisor: Supervisor,
        metrics: PublishMetrics,
        applied: watch::Sender<Option<Arc<Applied>>>,
        weights: WeightsVia,
    ) -> Publisher {
        let (snap_tx, snapshots) = watch::channel(None);
        let mut out = Outputs {
            resolver: Resolver::default(),
            compiler: compile::Compiler::default(),
            snapshots: snap_tx,
            metrics,
            config_slot: ServedConfig::default(),
            applied,
            weights,
            overlaid: overlay::Memo::default(),
        };
        let config = inputs.config.borrow().clone();
        let view = inputs.view.borrow().clone();
        let drains = inputs.drains.borrow().clone();
        let overlays = inputs.overlays.borrow().clone();
        out.publish_resolved(&config, &view, &drains, &overlays);
        Publisher {
            inputs,
            supervisor,
            out,
            snapshots,
        }
    }

    /// The published snapshots (`None` until the first complete one).
    pub fn snapshots(&self) -> SnapshotRx {
        self.snapshots.clone()
    }

    pub fn served_config(&self) -> ServedConfig {
        self.out.config_slot.clone()
    }

    /// Runs until `stop` is cancelled, then waits for the feeds to end.
    pub fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(publish_loop(self.inputs, self.supervisor, self.out, stop))
    }
}

/// Publishes `snapshots` (and who may fetch them) unless both equal what
/// is served; returns what is served afterwards.
fn publish(
    tx: &watch::Sender<Option<Arc<Published>>>,
    metrics: &PublishMetrics,
    snapshots: Snapshots,
    access: &Arc<Vec<AccessEntry>>,
) -> Arc<Snapshots> {
    let mut served = None;
    let changed = tx.send_if_modified(|current| {
        if let Some(p) = current
            .as_ref()
            .filter(|p| *p.snapshots == snapshots && p.access == *access)
        {
            served = Some(p.snapshots.clone());
            return false;
        }
        let next = Published::after(current.as_deref(), snapshots, Instant::now())
            .with_access(access.clone());
        served = Some(next.snapshots.clone());
        *current = Some(Arc::new(next));
        true
    });
    if changed {
        metrics.snapshots_published.inc();
    }
    served.unwrap_or_default()
}

/// Where the publisher's results go.
struct Outputs {
    /// Keeps the last merge of each service's endpoints.
    resolver: Resolver,
    /// Keeps the last snapshots and encoded endpoints between compiles.
    compiler: compile::Compiler,
    snapshots: watch::Sender<Option<Arc<Published>>>,
    metrics: PublishMetrics,
    config_slot: ServedConfig,
    /// Tells the rollout controller which weights were compiled into what.
    applied: watch::Sender<Option<Arc<Applied>>>,
    /// How rollout weights reach Envoy.
    weights: WeightsVia,
    /// The rollout overlay's last result.
    overlaid: overlay::Memo,
}

/// What the published config is made of; a change to any is published.
pub(super) struct Inputs {
    /// The accepted rules, from the rules watcher.
    pub config: watch::Receiver<Arc<Config>>,
    /// The discovery index's view.
    pub view: watch::Receiver<Arc<View>>,
    pub drains: watch::Receiver<Arc<Drains>>,
    /// The rollout controller's weights.
    pub overlays: watch::Receiver<Overlays>,
}

/// Publishes the latest rules resolved against the latest discovery view,
/// with the rollouts' weights, when the coalescer says so; starts and stops
/// feeds as the rules change.
async fn publish_loop(
    inputs: Inputs,
    supervisor: Supervisor,
    out: Outputs,
    stop: CancellationToken,
) {
    let seen_view = inputs.view.borrow().clone();
    let mut state = Loop {
        coalescer: Coalescer::new(CoalesceConfig::default()),
        delivering: None,
        seen_view,
        overlays_open: true,
        inputs,
        supervisor,
        out,
    };
    state.on_config();
    state.seen_view = state.inputs.view.borrow_and_update().clone();
    while state.step(&stop).await {}
    state.supervisor.join().await;
}

/// The publisher's state between wake-ups.
struct Loop {
    inputs: Inputs,
    supervisor: Supervisor,
    out: Outputs,
    coalescer: Coalescer,
    /// The last publish while the streams take it, and when it started:
    /// the next waits until they have (see `FanOut`).
    delivering: Option<(Instant, Arc<Published>)>,
    /// The view last seen, to tell a content change from a sync-time one.
    seen_view: Arc<View>,
    /// Whether the rollout controller still sends overlays.
    overlays_open: bool,
}

impl Loop {
    /// Waits for one input change, the coalescer's deadline, or `stop`;
    /// false when the loop should end.
    async fn step(&mut self, stop: &CancellationToken) -> bool {
        let wake_at = match self.delivering {
            Some(_) => None,
            None => self.coalescer.deadline(),
        }
        .map(tokio::time::Instant::from_std);
        let timer = async move {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let delivering = self.delivering.clone();
        let at_most = self.coalescer.max_interval();
        let delivered = async move {
            match delivering {
                Some((_, p)) => p.fanout.taken(p.seq, at_most).await,
                None => std::future::pending().await,
            }
        };
        let inputs = &mut self.inputs;
        tokio::select! {
            _ = stop.cancelled() => false,
            changed = inputs.config.changed() => changed.is_ok() && {
                self.on_config();
                true
            },
            changed = inputs.view.changed() => {
                self.on_view();
                changed.is_ok()
            }
            // Drains and rollout steps are operators' commands: one
            // change each, published without waiting for a quiet moment.
            changed = inputs.drains.changed() => {
                self.coalescer.commanded(Instant::now());
                changed.is_ok()
            }
            changed = inputs.overlays.changed(), if self.overlays_open => {
                // Without a rollout controller the sender is gone at once:
                // that only means no overlay will ever change.
                if changed.is_ok() {
                    self.inputs.overlays.borrow_and_update();
                    self.coalescer.commanded(Instant::now());
                } else {
                    self.overlays_open = false;
                }
                true
            }
            _ = timer => {
                self.publish_now();
                true
            }
            _ = delivered => {
                if let Some((started, _)) = self.delivering.take() {
                    let now = Instant::now();
                    self.coalescer.delivered(now, now - started);
                }
                true
            }
        }
    }

    /// The rules changed: reconcile the feeds, publish once quiet.
    fn on_config(&mut self) {
        self.supervisor
            .reconcile(&self.inputs.config.borrow_and_update());
        self.coalescer.changed(Instant::now());
    }

    fn on_view(&mut self) {
        let view = self.inputs.view.borrow_and_update().clone();
        // Sync-time updates alone change nothing that is served.
        if !view.same_content(&self.seen_view) {
            self.coalescer.changed(Instant::now());
        }
        self.seen_view = view;
    }

    fn publish_now(&mut self) {
        let config = self.inputs.config.borrow().clone();
        let view = self.inputs.view.borrow().clone();
        let drains = self.inputs.drains.borrow().clone();
        let overlays = self.inputs.overlays.borrow().clone();
        let started = Instant::now();
        self.out
            .publish_resolved(&config, &view, &drains, &overlays);
        let ended = Instant::now();
        self.out
            .metrics
            .compile_seconds
            .observe((ended - started).as_secs_f64());
        self.coalescer.published(ended, ended - started);
        // A new publish: paced by when the streams have taken it.
        let latest = self.out.snapshots.borrow().clone();
        if let Some(p) = latest.filter(|p| p.at >= started) {
            self.delivering = Some((started, p));
        }
    }
}

impl Outputs {
    /// Resolves discovered endpoints, applies the drain and rollout
    /// overlays, compiles and publishes.
    fn publish_resolved(
        &mut self,
        config: &Config,
        view: &View,
        drains: &Drains,
        overlays: &Overlays,
    ) {
        let mut resolved = match self.resolver.resolve(view, config) {
            Ok(c) => c,
            Err(e) => {
                debug!(reason = %e, "not publishing: waiting for discovery sources");
                return;
            }
        };
        drains.apply(&mut resolved);
        self.overlaid.apply(overlays, &mut resolved, self.weights);
        let resolved = Arc::new(resolved);
        match self.compiler.compile(&resolved) {
            Ok(snapshots) => {
                let snapshots = publish(
                    &self.snapshots,
                    &self.metrics,
                    snapshots,
                    &config.xds_access,
                );
                *self.config_slot.lock() = Some(resolved);
                self.metrics.ready.set(1);
                self.applied.send_replace(Some(Arc::new(Applied {
                    overlays: overlays.clone(),
                    snapshots,
                })));
            }
            Err(e) => {
                error!(error = %e, "resolved config does not compile; still serving the previous one")
            }
        }
    }
}
