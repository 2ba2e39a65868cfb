//! The rollout controller's I/O: one task that owns every rollout record,
//! feeds the pure [`plan`] observations and carries out its
//! actions.
//!
//! - **Weights** go out as [`Overlays`] on a watch channel; `serve`'s
//!   publisher applies them to the rules, compiles, publishes, and answers
//!   on the [`Applied`](super::acks::Applied) channel with the snapshots they produced.
//! - **ACKs** are read from the xDS registry ([`AckReader`], which also
//!   counts the other replicas' proxies when there are replicas): a proxy
//!   is targeted when its group's snapshot has the canary cluster, and has
//!   ACKed when its ACKed RDS version is that snapshot's RDS version.
//! - **Metrics** come from a [`MetricsSource`]: a cumulative sample when a
//!   window opens (the baseline, in memory) and one when it closes.
//! - **State** is saved to the [`StateStore`] before the weights it implies
//!   are published; at start-up saved rollouts resume at their step. A
//!   shared store (several replicas, `crate::ha`) also hands the task the
//!   records operators changed on any replica, and refuses the writes of
//!   a replica that no longer leads, which ends the task at once.
//!
//! Operators reach the task through a [`Handle`] (`handle`, used by the admin gRPC
//! service); it answers with the rollout as it stands after the command.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::acks::AckReader;
use super::analysis::{measure, Sample};
pub use super::handle::{begin, DriverError, Handle, Status};
use super::handle::{now_ms, Request};
use super::metrics::MetricsSource;
use super::overlay::Overlays;
use super::plan::{self, Action, Command, Observation};
use super::store::{Shared, StateStore, StoreError};
use super::{Rollout, Spec, State};

/// The controller's inputs and outputs.
pub struct Driver {
    pub store: Arc<dyn StateStore>,
    pub metrics: Arc<dyn MetricsSource>,
    pub overlays: watch::Sender<Overlays>,
    /// The proxies' ACKs, and what the publisher applied last.
    pub acks: AckReader,
}

/// Per-rollout memory that is not persisted.
#[derive(Default)]
struct Live {
    /// When to act next, and what to do.
    due: Option<(Instant, Action)>,
    /// The cumulative sample at the start of the window `since_ms`.
    baseline: Option<(u64, Result<Sample, String>)>,
}

struct Task {
    io: Driver,
    acks: AckReader,
    records: BTreeMap<String, Rollout>,
    live: BTreeMap<String, Live>,
    /// The rollouts as they stand, for status reads (which count ACKs
    /// themselves).
    status: watch::Sender<BTreeMap<String, Rollout>>,
    /// The shared store refused a write: another replica leads now, and
    /// this task must not act on anything any more.
    fenced: bool,
}

impl Driver {
    /// Loads saved rollouts, publishes their weights, and returns the task
    /// (run it until `stop`; it also ends when a shared store refuses a
    /// write because this replica no longer leads) and the handle for the
    /// admin API.
    pub async fn start(
        self,
        stop: CancellationToken,
    ) -> Result<(impl std::future::Future<Output = ()>, Handle), StoreError> {
        let mut records = self.store.load().await?;
        let now = now_ms();
        let mut live = BTreeMap::new();
        let mut changed = Vec::new();
        for (service, r) in records.iter_mut() {
            let (next, action) = plan::observe(r, &Observation::Restarted { now_ms: now });
            if !r.state.is_final() {
                info!(%service, phase = next.state.phase(), step = ?next.state.step(), "resuming rollout");
            }
            if next != *r {
                changed.push(service.clone());
            }
            *r = next;
            let l = Live {
                due: schedule(action),
                ..Default::default()
            };
            live.insert(service.clone(), l);
        }
        for service in &changed {
            self.store.save(service, &records).await?;
        }
        self.overlays.send_replace(Overlays::of(records.values()));
        let (status, status_rx) = watch::channel(BTreeMap::new());
        let (tx, rx) = mpsc::channel(16);
        let acks = self.acks.clone();
        let shared = self.store.shared();
        let mut task = Task {
            io: self,
            acks: acks.clone(),
            records,
            live,
            status,
            fenced: false,
        };
        task.publish_status();
        Ok((
            task.run(rx, shared, stop),
            Handle::local(tx, status_rx, acks),
        ))
    }
}

/// What woke the task.
enum Woke {
    Request(Option<Request>),
    /// A shared store's records changed (`false`: its watch ended).
    Others(bool),
    Timer,
}

/// When to carry out `action` (`None`: only a command wakes it).
fn schedule(action: Action) -> Option<(Instant, Action)> {
    let after = match &action {
        Action::SetWeights { .. } | Action::QueryMetrics { .. } => Duration::ZERO,
        Action::WaitAck { after } | Action::Requeue { after } => *after,
        Action::AwaitCommand | Action::Done => return None,
    };
    Some((Instant::now() + after, action))
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut shared: Option<watch::Receiver<Shared>>,
        stop: CancellationToken,
    ) {
        // Without an admin API nobody holds a handle; rollouts still run.
        let mut open = true;
        loop {
            // A window opens with its baseline sample, right when the plan
            // enters (or, after a restart, re-enters) analysis.
            self.take_baselines().await;
            let next = self
                .live
                .values()
                .filter_map(|l| l.due.as_ref().map(|d| d.0))
                .min();
            let timer = async move {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let others = async {
                match shared.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let woke = tokio::select! {
                _ = stop.cancelled() => return,
                req = rx.recv(), if open => Woke::Request(req),
                alive = others => Woke::Others(alive),
                _ = timer => Woke::Timer,
            };
            match woke {
                Woke::Request(Some(req)) => self.handle(req).await,
                Woke::Request(None) => open = false,
                Woke::Others(true) => self.take_newer(&mut shared).await,
                Woke::Others(false) => shared = None,
                Woke::Timer => {}
            }
            if !self.fenced {
                self.run_due().await;
            }
            if self.fenced {
                error!("a rollout write was refused: this replica no longer leads; it stops driving rollouts now");
                return;
            }
        }
    }

    /// Takes the records other writers (operators, on any replica)
    /// changed, and acts on them from where they stand.
    async fn take_newer(&mut self, shared: &mut Option<watch::Receiver<Shared>>) {
        let Some(rx) = shared.as_mut() else {
            return;
        };
        let seen = rx.borrow_and_update().clone();
        for (service, r) in self.io.store.newer(&seen) {
            info!(%service, phase = r.state.phase(), step = ?r.state.step(), "rollout changed by another writer");
            self.records.insert(service.clone(), r.clone());
            let (next, action) = plan::observe(&r, &Observation::Tick { now_ms: now_ms() });
            if let Err(e) = self.commit(&service, next, action).await {
                self.failed(&service, &e);
                if self.fenced {
                    return;
                }
                let retry = Action::Requeue {
                    after: Duration::from_secs(1),
                };
                self.live.entry(service).or_default().due = schedule(retry);
            }
        }
        self.publish_status();
    }

    /// Notes a refused write; any other failure is retried by the caller.
    fn failed(&mut self, service: &str, e: &DriverError) {
        match e {
            DriverError::Store(StoreError::Fenced) => self.fenced = true,
            // An operator's command came first: its record arrives through
            // the shared store's watch, and the driver goes on from it.
            DriverError::Store(StoreError::Conflict(_)) => {
                info!(%service, error = %e, "rollout step not applied");
            }
            _ => error!(%service, error = %e, "rollout step not applied; retrying"),
        }
    }

    async fn handle(&mut self, req: Request) {
        match req {
            Request::Start(spec, reply) => {
                let r = self.start(spec).await;
                let _ = reply.send(r);
            }
            Request::Command(service, cmd, reply) => {
                let r = self.command(&service, &cmd).await;
                let _ = reply.send(r);
            }
        }
    }

    async fn start(&mut self, spec: Spec) -> Result<Status, DriverError> {
        let applied = self.acks.applied();
        let service = spec.service.clone();
        let (next, action) = begin(
            spec,
            self.records.get(&service),
            applied.as_deref(),
            now_ms(),
        )?;
        self.commit(&service, next, action).await?;
        self.status_of(&service)
    }

    async fn command(&mut self, service: &str, cmd: &Command) -> Result<Status, DriverError> {
        let r = self
            .records
            .get(service)
            .ok_or_else(|| DriverError::NotFound(service.to_string()))?;
        let (next, action) = plan::command(r, cmd, now_ms())?;
        self.commit(service, next, action).await?;
        self.status_of(service)
    }

    fn status_of(&self, service: &str) -> Result<Status, DriverError> {
        let r = self
            .records
            .get(service)
            .ok_or_else(|| DriverError::NotFound(service.to_string()))?;
        Ok(Status::of(r.clone(), &self.acks))
    }

    /// Saves `next`, then publishes the weights it implies and schedules
    /// `action`. When saving fails nothing changes: a step that is not
    /// durable is not applied.
    async fn commit(
        &mut self,
        service: &str,
        next: Rollout,
        action: Action,
    ) -> Result<(), DriverError> {
        let old = self.records.insert(service.to_string(), next.clone());
        if old.as_ref() != Some(&next) {
            if let Err(e) = self.io.store.save(service, &self.records).await {
                match old {
                    Some(o) => self.records.insert(service.to_string(), o),
                    None => self.records.remove(service),
                };
                return Err(e.into());
            }
            let overlays = Overlays::of(self.records.values());
            self.io.overlays.send_if_modified(|cur| {
                let changed = *cur != overlays;
                *cur = overlays;
                changed
            });
            if old.map(|o| o.state.phase()) != Some(next.state.phase()) {
                info!(%service, phase = next.state.phase(), step = ?next.state.step(), weight = ?next.canary_weight(), "rollout");
            }
        }
        let live = self.live.entry(service.to_string()).or_default();
        live.due = schedule(action);
        if let State::Analysing { since_ms, .. } = next.state {
            if live.baseline.as_ref().map(|b| b.0) != Some(since_ms) {
                // Taken on the next pass, which is due now.
                live.baseline = None;
            }
        }
        self.publish_status();
        Ok(())
    }

    fn publish_status(&mut self) {
        self.status.send_replace(self.records.clone());
    }

    async fn run_due(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, Action)> = self
            .live
            .iter()
            .filter_map(|(s, l)| {
                l.due
                    .as_ref()
                    .filter(|d| d.0 <= now)
                    .map(|d| (s.clone(), d.1.clone()))
            })
            .collect();
        for (service, action) in due {
            if let Some(l) = self.live.get_mut(&service) {
                l.due = None;
            }
            if let Err(e) = self.act(&service, action.clone()).await {
                // A rollout that cannot save stays where it is and tries
                // again: it never moves on with state that is not durable.
                // A refused (fenced) write ends the task instead.
                self.failed(&service, &e);
                if self.fenced {
                    return;
                }
                if let Some(l) = self.live.get_mut(&service) {
                    l.due = Some((Instant::now() + Duration::from_secs(1), action));
                }
            }
        }
    }

    async fn act(&mut self, service: &str, action: Action) -> Result<(), DriverError> {
        let Some(r) = self.records.get(service).cloned() else {
            return Ok(());
        };
        let now = now_ms();
        let obs = match action {
            Action::SetWeights { .. } | Action::WaitAck { .. } => {
                let acks = self.acks.read(&r);
                Observation::Acks {
                    now_ms: now,
                    acked: acks.acked,
                    targeted: acks.targeted,
                    nack: acks.nack,
                    unreachable: acks.unreachable,
                }
            }
            Action::QueryMetrics { since_ms } => {
                let result = self.window(service, &r, since_ms).await;
                Observation::Metrics {
                    now_ms: now_ms(),
                    result,
                }
            }
            Action::Requeue { .. } | Action::AwaitCommand | Action::Done => {
                Observation::Tick { now_ms: now }
            }
        };
        let (next, action) = plan::observe(&r, &obs);
        self.commit(service, next, action).await
    }

    /// The cumulative sample each open analysis window is measured
    /// against, for windows that do not have one yet.
    async fn take_baselines(&mut self) {
        let open: Vec<(String, u64, String)> = self
            .records
            .iter()
            .filter_map(|(service, r)| match r.state {
                State::Analysing { since_ms, .. } => {
                    let have = self.live.get(service).and_then(|l| l.baseline.as_ref());
                    (have.map(|b| b.0) != Some(since_ms))
                        .then(|| (service.clone(), since_ms, r.canary_cluster()))
                }
                _ => None,
            })
            .collect();
        for (service, since_ms, cluster) in open {
            self.take_baseline(&service, since_ms, cluster).await;
        }
    }

    async fn take_baseline(&mut self, service: &str, since_ms: u64, cluster: String) {
        let clusters = [cluster];
        let sample = self
            .io
            .metrics
            .sample(&clusters)
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &sample {
            warn!(%service, error = %e, "metrics unavailable at window start");
        }
        self.live.entry(service.to_string()).or_default().baseline = Some((since_ms, sample));
    }

    async fn window(
        &mut self,
        service: &str,
        r: &Rollout,
        since_ms: u64,
    ) -> Result<plan::Measured, String> {
        let cluster = r.canary_cluster();
        let after = self
            .io
            .metrics
            .sample(std::slice::from_ref(&cluster))
            .await
            .map_err(|e| e.to_string())?;
        let baseline = self.live.get(service).and_then(|l| l.baseline.as_ref());
        match baseline {
            Some((at, Ok(before))) if *at == since_ms => measure(before, &after, &cluster),
            Some((at, Err(e))) if *at == since_ms => Err(format!("at window start: {e}")),
            _ => Err("no sample at window start".into()),
        }
    }
}
