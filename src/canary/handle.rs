//! The controller's face to the admin API: a [`Handle`] sends commands to
//! the driver task and reads the rollouts from a watch channel the task
//! keeps current, so reads never wait for the task. Each read counts the
//! proxies that hold a rollout's weights from the xDS registry then.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::acks::AckReader;
use super::plan::{Command, CommandError};
use super::store::StoreError;
use super::{Rollout, Spec, SpecError};

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
    tx: mpsc::Sender<Request>,
    rollouts: watch::Receiver<BTreeMap<String, Rollout>>,
    acks: AckReader,
}

impl Handle {
    pub(super) fn new(
        tx: mpsc::Sender<Request>,
        rollouts: watch::Receiver<BTreeMap<String, Rollout>>,
        acks: AckReader,
    ) -> Handle {
        Handle { tx, rollouts, acks }
    }

    pub async fn start(&self, spec: Spec) -> Result<Status, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Start(spec, tx)).await?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    pub async fn command(&self, service: &str, cmd: Command) -> Result<Status, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Command(service.to_string(), cmd, tx))
            .await?;
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

    async fn send(&self, req: Request) -> Result<(), DriverError> {
        self.tx.send(req).await.map_err(|_| DriverError::Stopped)
    }
}
