//! The leader's rollout store: every write is one etcd transaction that
//! succeeds only while (a) the leader's election key still exists with the
//! create revision it won with — the key lives under the leader's lease,
//! so it is gone once the lease expired, and a newer term's key has
//! another revision — and (b) the record is still at the revision this
//! store last read or wrote, so an operator's command on another replica
//! is never overwritten by a step computed from an older record.
//!
//! (a) failing is [`StoreError::Fenced`]: the driver stops at once. (b)
//! failing is [`StoreError::Conflict`]: the driver takes the newer record
//! from the watch ([`StateStore::newer`]) and acts from there.

use std::collections::BTreeMap;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::warn;

use super::keys::{self, Key};
use crate::canary::store::{Shared, StateStore, StoreError};
use crate::canary::Rollout;

/// The election key this replica won with.
#[derive(Clone, Debug)]
pub struct Term {
    pub key: Vec<u8>,
    pub revision: i64,
}

pub struct FencedStore {
    client: Client,
    prefix: String,
    term: Term,
    /// Per service, the record revision this store last read or wrote.
    known: Mutex<BTreeMap<String, i64>>,
    records: watch::Receiver<Shared>,
}

impl FencedStore {
    pub fn new(client: Client, prefix: &str, term: Term, records: watch::Receiver<Shared>) -> Self {
        FencedStore {
            client,
            prefix: prefix.to_string(),
            term,
            known: Mutex::new(BTreeMap::new()),
            records,
        }
    }
}

fn remote(e: String) -> StoreError {
    StoreError::Remote(e)
}

#[tonic::async_trait]
impl StateStore for FencedStore {
    async fn load(&self) -> Result<BTreeMap<String, Rollout>, StoreError> {
        let mut c = self.client.clone();
        let prefix = keys::rollouts(&self.prefix);
        let resp = keys::bounded(c.get(prefix, Some(GetOptions::new().with_prefix())))
            .await
            .map_err(remote)?;
        let mut all = BTreeMap::new();
        let mut known = self.known.lock();
        for kv in resp.kvs() {
            let Ok(key) = kv.key_str() else { continue };
            let Key::Rollout(service) = keys::classify(&self.prefix, key) else {
                continue;
            };
            match serde_json::from_slice::<Rollout>(kv.value()) {
                Ok(r) => {
                    known.insert(service.to_string(), kv.mod_revision());
                    all.insert(service.to_string(), r);
                }
                Err(e) => {
                    warn!(%key, error = %e, "not driving a rollout record that does not parse")
                }
            }
        }
        Ok(all)
    }

    async fn save(&self, service: &str, all: &BTreeMap<String, Rollout>) -> Result<(), StoreError> {
        let Some(r) = all.get(service) else {
            return Ok(());
        };
        let key = keys::rollout(&self.prefix, service);
        let expected = self.known.lock().get(service).copied().unwrap_or(0);
        let body = serde_json::to_vec(r).map_err(|e| remote(e.to_string()))?;
        let txn = Txn::new()
            .when([
                Compare::create_revision(
                    self.term.key.clone(),
                    CompareOp::Equal,
                    self.term.revision,
                ),
                Compare::mod_revision(key.as_str(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(key.as_str(), body, None)])
            .or_else([TxnOp::get(self.term.key.clone(), None)]);
        let mut c = self.client.clone();
        let resp = keys::bounded(c.txn(txn)).await.map_err(remote)?;
        if resp.succeeded() {
            let at = resp.header().map_or(0, |h| h.revision());
            self.known.lock().insert(service.to_string(), at);
            return Ok(());
        }
        let leads = resp.op_responses().iter().any(|op| match op {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() == self.term.revision),
            _ => false,
        });
        if leads {
            Err(StoreError::Conflict(service.to_string()))
        } else {
            Err(StoreError::Fenced)
        }
    }

    fn shared(&self) -> Option<watch::Receiver<Shared>> {
        Some(self.records.clone())
    }

    fn newer(&self, seen: &Shared) -> Vec<(String, Rollout)> {
        let mut known = self.known.lock();
        let mut out = Vec::new();
        for (service, v) in seen.iter() {
            let k = known.get(service).copied().unwrap_or(0);
            if v.revision > k {
                known.insert(service.clone(), v.revision);
                out.push((service.clone(), v.rollout.clone()));
            }
        }
        out
    }
}
