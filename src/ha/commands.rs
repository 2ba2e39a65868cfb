//! Operators' commands on any replica, written straight to etcd: each is a
//! read-modify-write of one key, conditioned on the key's revision being
//! the one read, and tried again on a fresh read when another writer came
//! first. They need no leader: a rollout started or paused while no
//! replica leads is carried out by the next leader, and every replica
//! serves its weights meanwhile.

use std::sync::{Arc, OnceLock};

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};

use super::keys;
use super::mirror::Mirror;
use crate::canary::driver::DriverError;
use crate::canary::handle::{Change, SharedCommands};
use crate::canary::store::StoreError;
use crate::canary::Rollout;
use crate::drain::store::{parse_document, render_document, Edit, SharedDrains};
use crate::drain::{DrainError, Drains};

/// How often a command reads again after losing a race to another writer.
const ATTEMPTS: usize = 8;

pub struct EtcdState {
    client: Client,
    prefix: String,
    endpoints: String,
    /// Set once the mirror exists (it needs the drain store, which needs
    /// this); a replica's own writes are offered to it.
    mirror: OnceLock<Arc<Mirror>>,
}

/// The value of `key` and its revision (0: absent).
async fn read(client: &Client, key: &str) -> Result<(Option<Vec<u8>>, i64), String> {
    let mut c = client.clone();
    let resp = keys::bounded(c.get(key, None)).await?;
    Ok(match resp.kvs().first() {
        Some(kv) => (Some(kv.value().to_vec()), kv.mod_revision()),
        None => (None, 0),
    })
}

/// Writes `value` if `key` is still at `revision`: the write's revision,
/// or `None` when another writer came first.
async fn write_if(
    client: &Client,
    key: &str,
    revision: i64,
    value: Vec<u8>,
) -> Result<Option<i64>, String> {
    let mut c = client.clone();
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, revision)])
        .and_then([TxnOp::put(key, value, None)]);
    let resp = keys::bounded(c.txn(txn)).await?;
    Ok(resp
        .succeeded()
        .then(|| resp.header().map_or(0, |h| h.revision())))
}

impl EtcdState {
    pub fn new(client: Client, prefix: &str, endpoints: &str) -> EtcdState {
        EtcdState {
            client,
            prefix: prefix.to_string(),
            endpoints: endpoints.to_string(),
            mirror: OnceLock::new(),
        }
    }

    pub fn set_mirror(&self, mirror: Arc<Mirror>) {
        let _ = self.mirror.set(mirror);
    }
}

fn remote(e: String) -> DriverError {
    DriverError::Store(StoreError::Remote(e))
}

#[tonic::async_trait]
impl SharedCommands for EtcdState {
    async fn update(&self, service: &str, change: Change<'_>) -> Result<Rollout, DriverError> {
        let key = keys::rollout(&self.prefix, service);
        for _ in 0..ATTEMPTS {
            let (value, revision) = read(&self.client, &key).await.map_err(remote)?;
            let current: Option<Rollout> =
                match value {
                    Some(v) => Some(serde_json::from_slice(&v).map_err(|e| {
                        remote(format!("the stored record {key} does not parse: {e}"))
                    })?),
                    None => None,
                };
            let next = change(current.as_ref())?;
            let body = serde_json::to_vec(&next).map_err(|e| remote(e.to_string()))?;
            if let Some(at) = write_if(&self.client, &key, revision, body)
                .await
                .map_err(remote)?
            {
                if let Some(m) = self.mirror.get() {
                    m.offer_rollout(service, next.clone(), at);
                }
                return Ok(next);
            }
        }
        Err(DriverError::Store(StoreError::Conflict(
            service.to_string(),
        )))
    }
}

#[tonic::async_trait]
impl SharedDrains for EtcdState {
    async fn change(&self, edit: Edit<'_>) -> Result<Option<(Drains, i64)>, DrainError> {
        let key = keys::drains(&self.prefix);
        let fail = |reason: String| DrainError::Shared {
            store: self.describe(),
            reason,
        };
        for _ in 0..ATTEMPTS {
            let (value, revision) = read(&self.client, &key).await.map_err(fail)?;
            let mut set = match value {
                Some(v) => std::str::from_utf8(&v)
                    .map_err(|e| e.to_string())
                    .and_then(parse_document)
                    .map_err(fail)?,
                None => Drains::default(),
            };
            if !edit(&mut set) {
                return Ok(None);
            }
            let body = render_document(&set).into_bytes();
            if let Some(at) = write_if(&self.client, &key, revision, body)
                .await
                .map_err(fail)?
            {
                return Ok(Some((set, at)));
            }
        }
        Err(fail(format!(
            "{ATTEMPTS} attempts lost the race to other writers"
        )))
    }

    fn describe(&self) -> String {
        format!("etcd {} key {}", self.endpoints, keys::drains(&self.prefix))
    }
}
