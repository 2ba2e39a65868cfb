//! The controller's face to the admin API: a [`Handle`] sends commands to
//! the driver task and reads the rollouts from a watch channel the task
//! keeps current, so reads never wait for the task. Each read counts the
//! proxies that hold a rollout's weights from the xDS registry then.
//!
//! Starting a rollout is one pure step ([`begin`]: validate, check the
//! clusters are served, enter the first step) shared by both paths.
//!
//! With several replicas (`crate::ha`) commands do not go to a task: any
//! replica writes them to the shared store through [`SharedCommands`]
//! (also while no replica leads; the leader's driver carries them out),
//! and the rollouts read are the shared store's, as every replica sees
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::acks::{AckReader, Applied};
use super::plan::{self, Action, Command, CommandError, Observation};
use super::store::StoreError;
use super::{Rollout, Spec, SpecError};
use crate::xds::{Snapshots, TypeUrl};

/// A rollout and how many targeted proxies hold its current weights.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    pub rollout: Rollout,
    pub acked: u32,
    pub targeted: u32,
}

impl Status {
    /// `rollout` with its ACKs as the registry has them now.
    pub(super) fn of(rollout: Rollout, acks: &AckReader) -> Status {
        let a = acks.read(&rollout);
        Status {
            rollout,
            acked: a.acked,
            targeted: a.targeted,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("no rollout of service {0:?}")]
    NotFound(String),
    #[error("service {0:?} already has an active rollout; abort it first")]
    Active(String),
    #[error("invalid rollout: {0}")]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Command(#[from] CommandError),
    #[error("cluster {0:?} is not served (check the service and subset names, and that a route reaches the service)")]
    UnknownCluster(String),
    #[error("not ready: nothing compiled yet")]
    NotReady,
    #[error("saving rollout state: {0}")]
    Store(#[from] StoreError),
    #[error("the rollout controller has stopped")]
    Stopped,
}

/// A read-modify-write of one rollout record in a shared store: `change`
/// gets the record as stored (`None`: there is none) and returns the one
/// to store; the write is conditioned on the record being unchanged, and
/// tried again on a fresh read when another writer came first.
pub type Change<'a> = &'a (dyn Fn(Option<&Rollout>) -> Result<Rollout, DriverError> + Send + Sync);

/// Writes operators' commands to a shared store (`crate::ha`).
#[tonic::async_trait]
pub trait SharedCommands: Send + Sync {
    async fn update(&self, service: &str, change: Change<'_>) -> Result<Rollout, DriverError>;
}

pub(super) enum Request {
    Start(Spec, oneshot::Sender<Result<Status, DriverError>>),
    Command(
        String,
        Command,
        oneshot::Sender<Result<Status, DriverError>>,
    ),
}

/// How the admin API talks to the controller.
#[derive(Clone)]
pub struct Handle {
    to: To,
    rollouts: watch::Receiver<BTreeMap<String, Rollout>>,
    acks: AckReader,
}

/// Where commands go.
#[derive(Clone)]
enum To {
    /// This process's driver task.
    Driver(mpsc::Sender<Request>),
    /// The shared store of several replicas.
    Shared(Arc<dyn SharedCommands>),
}

impl Handle {
    pub(super) fn local(
        tx: mpsc::Sender<Request>,
        rollouts: watch::Receiver<BTreeMap<String, Rollout>>,
        acks: AckReader,
    ) -> Handle {
        Handle {
            to: To::Driver(tx),
            rollouts,
            acks,
        }
    }

    /// Commands written to a shared store, rollouts read from what every
    /// replica sees of it.
    pub fn shared(
        commands: Arc<dyn SharedCommands>,
        rollouts: watch::Receiver<BTreeMap<String, Rollout>>,
        acks: AckReader,
    ) -> Handle {
        Handle {
            to: To::Shared(commands),
            rollouts,
            acks,
        }
    }

    pub async fn start(&self, spec: Spec) -> Result<Status, DriverError> {
        let tx = match &self.to {
            To::Driver(tx) => tx,
            To::Shared(store) => {
                let applied = self.acks.applied();
                let service = spec.service.clone();
                let now = now_ms();
                let change = move |current: Option<&Rollout>| -> Result<Rollout, DriverError> {
                    begin(spec.clone(), current, applied.as_deref(), now).map(|(r, _)| r)
                };
                let r = store.update(&service, &change).await?;
                return Ok(Status::of(r, &self.acks));
            }
        };
        let (reply, rx) = oneshot::channel();
        send(tx, Request::Start(spec, reply)).await?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    pub async fn command(&self, service: &str, cmd: Command) -> Result<Status, DriverError> {
        let tx = match &self.to {
            To::Driver(tx) => tx,
            To::Shared(store) => {
                let now = now_ms();
                let name = service.to_string();
                let change = move |current: Option<&Rollout>| -> Result<Rollout, DriverError> {
                    let r = current.ok_or_else(|| DriverError::NotFound(name.clone()))?;
                    Ok(plan::command(r, &cmd, now)?.0)
                };
                let r = store.update(service, &change).await?;
                return Ok(Status::of(r, &self.acks));
            }
        };
        let (reply, rx) = oneshot::channel();
        send(tx, Request::Command(service.to_string(), cmd, reply)).await?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    pub fn get(&self, service: &str) -> Result<Status, DriverError> {
        let r = self.rollouts.borrow().get(service).cloned();
        let r = r.ok_or_else(|| DriverError::NotFound(service.to_string()))?;
        Ok(Status::of(r, &self.acks))
    }

    pub fn list(&self) -> Vec<Status> {
        let all: Vec<Rollout> = self.rollouts.borrow().values().cloned().collect();
        all.into_iter().map(|r| Status::of(r, &self.acks)).collect()
    }
}

async fn send(tx: &mpsc::Sender<Request>, req: Request) -> Result<(), DriverError> {
    tx.send(req).await.map_err(|_| DriverError::Stopped)
}

/// Milliseconds since the Unix epoch: the clock rollout records use.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// A new rollout of `spec` (its first step entered), unless `current` is
/// still active or the clusters it moves traffic between are not served.
/// The driver and every replica of a shared store start rollouts with it.
pub fn begin(
    spec: Spec,
    current: Option<&Rollout>,
    applied: Option<&Applied>,
    now_ms: u64,
) -> Result<(Rollout, Action), DriverError> {
    let spec = spec.validate()?;
    if current.is_some_and(|r| !r.state.is_final()) {
        return Err(DriverError::Active(spec.service));
    }
    let applied = applied.ok_or(DriverError::NotReady)?;
    for subset in [&spec.from, &spec.to] {
        let cluster = format!("{}~{subset}", spec.service);
        if !serves_cluster(&applied.snapshots, &cluster) {
            return Err(DriverError::UnknownCluster(cluster));
        }
    }
    let r = Rollout::new(spec, now_ms);
    Ok(plan::observe(&r, &Observation::Tick { now_ms }))
}

fn serves_cluster(snapshots: &Snapshots, cluster: &str) -> bool {
    std::iter::once(&snapshots.fallback)
        .chain(snapshots.groups.values())
        .any(|s| s.get(TypeUrl::Cluster, cluster).is_some())
}
