//! Every replica's view of the replicated state: loaded once before the
//! first publish, then kept current by one etcd watch on the prefix.
//!
//! A record is taken only when its revision is newer than the one held,
//! so a replica's own write (offered right after it succeeds, for
//! read-your-writes) and the watch event that later reports it agree, and
//! nothing ever goes back to an older record. When the watch fails (etcd
//! down, compaction), the replica keeps serving what it has (fail-static),
//! says so on `/status` (`store_up: false`), and reloads everything once
//! etcd answers again, then watches from there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::keys::{self, Key};
use super::HaStatus;
use crate::backoff::Backoff;
use crate::canary::ack_summary::AckSummary;
use crate::canary::overlay::Overlays;
use crate::canary::store::{Shared, Versioned};
use crate::canary::Rollout;
use crate::drain::store::{parse_document, DrainStore};
use crate::drain::Drains;

/// Everything under the prefix, as read at `revision`.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub revision: i64,
    pub rollouts: BTreeMap<String, Versioned>,
    pub drains: Drains,
    pub drains_revision: i64,
    /// Election candidates: key → (create revision, replica name).
    pub candidates: BTreeMap<String, (i64, String)>,
    /// Each live replica's summary of its proxies, by replica name.
    pub acks: BTreeMap<String, AckSummary>,
}

/// Reads everything under `prefix`.
pub async fn load(client: &Client, prefix: &str) -> Result<Loaded, String> {
    let mut c = client.clone();
    let resp = keys::bounded(c.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
    let mut loaded = Loaded {
        revision: resp.header().map_or(0, |h| h.revision()),
        ..Loaded::default()
    };
    for kv in resp.kvs() {
        loaded.put(prefix, kv);
    }
    Ok(loaded)
}

impl Loaded {
    fn put(&mut self, prefix: &str, kv: &KeyValue) {
        let Ok(key) = kv.key_str() else {
            return;
        };
        let rev = kv.mod_revision();
        match keys::classify(prefix, key) {
            Key::Rollout(service) => match serde_json::from_slice::<Rollout>(kv.value()) {
                Ok(rollout) => {
                    if self.rollouts.get(service).is_none_or(|v| v.revision < rev) {
                        let v = Versioned {
                            rollout,
                            revision: rev,
                        };
                        self.rollouts.insert(service.to_string(), v);
                    }
                }
                // Kept as it was: a record sluice cannot read is never
                // served as "no rollout".
                Err(e) => warn!(%key, error = %e, "ignoring a rollout record that does not parse"),
            },
            Key::Drains => match std::str::from_utf8(kv.value())
                .map_err(|e| e.to_string())
                .and_then(parse_document)
            {
                Ok(set) => {
                    if rev > self.drains_revision {
                        self.drains = set;
                        self.drains_revision = rev;
                    }
                }
                Err(e) => warn!(%key, error = %e, "ignoring a drain document that does not parse"),
            },
            Key::Candidate => {
                let name = String::from_utf8_lossy(kv.value()).into_owned();
                self.candidates
                    .insert(key.to_string(), (kv.create_revision(), name));
            }
            Key::Acks(replica) => match serde_json::from_slice::<AckSummary>(kv.value()) {
                Ok(summary) => {
                    self.acks.insert(replica.to_string(), summary);
                }
                // The last readable summary is kept: dropping it would
                // count that replica's proxies as gone.
                Err(e) => warn!(%key, error = %e, "ignoring a proxy summary that does not parse"),
            },
            Key::Other => {}
        }
    }

    fn delete(&mut self, prefix: &str, kv: &KeyValue) {
        let Ok(key) = kv.key_str() else {
            return;
        };
        let rev = kv.mod_revision();
        match keys::classify(prefix, key) {
            Key::Rollout(service) => {
                if self.rollouts.get(service).is_some_and(|v| v.revision < rev) {
                    self.rollouts.remove(service);
                }
            }
            Key::Drains => {
                if rev > self.drains_revision {
                    self.drains = Drains::default();
                    self.drains_revision = rev;
                }
            }
            Key::Candidate => {
                self.candidates.remove(key);
            }
            // The replica's lease ended (or it shut down): its proxies
            // are no longer counted; they count again on the replica they
            // reconnect to.
            Key::Acks(replica) => {
                self.acks.remove(replica);
            }
            Key::Other => {}
        }
    }

    /// The candidate with the oldest key leads (etcd's election order).
    fn leader(&self) -> Option<String> {
        self.candidates
            .values()
            .min_by_key(|(rev, _)| *rev)
            .map(|(_, name)| name.clone())
    }
}

/// The view and the channels it feeds.
pub struct Mirror {
    prefix: String,
    state: Mutex<Loaded>,
    records: watch::Sender<Shared>,
    rollouts: watch::Sender<BTreeMap<String, Rollout>>,
    overlays: watch::Sender<Overlays>,
    fleet: watch::Sender<Arc<BTreeMap<String, AckSummary>>>,
    drains: Arc<DrainStore>,
    status: Arc<watch::Sender<HaStatus>>,
}

impl Mirror {
    /// Publishes `loaded` at once, so the first snapshot carries its
    /// weights and drains.
    pub fn new(
        prefix: &str,
        loaded: Loaded,
        drains: Arc<DrainStore>,
        status: Arc<watch::Sender<HaStatus>>,
    ) -> Arc<Mirror> {
        let mirror = Arc::new(Mirror {
            prefix: prefix.to_string(),
            state: Mutex::new(Loaded::default()),
            records: watch::channel(Shared::default()).0,
            rollouts: watch::channel(BTreeMap::new()).0,
            overlays: watch::channel(Overlays::default()).0,
            fleet: watch::channel(Arc::default()).0,
            drains,
            status,
        });
        mirror.replace(loaded);
        mirror
    }

    pub fn records(&self) -> watch::Receiver<Shared> {
        self.records.subscribe()
    }

    pub fn rollouts(&self) -> watch::Receiver<BTreeMap<String, Rollout>> {
        self.rollouts.subscribe()
    }

    pub fn overlays(&self) -> watch::Receiver<Overlays> {
        self.overlays.subscribe()
    }

    /// Every live replica's summary of its proxies.
    pub fn fleet(&self) -> watch::Receiver<Arc<BTreeMap<String, AckSummary>>> {
        self.fleet.subscribe()
    }

    /// A record this replica just wrote at `revision`.
    pub fn offer_rollout(&self, service: &str, rollout: Rollout, revision: i64) {
        let mut state = self.state.lock();
        if state
            .rollouts
            .get(service)
            .is_some_and(|v| v.revision >= revision)
        {
            return;
        }
        let v = Versioned { rollout, revision };
        state.rollouts.insert(service.to_string(), v);
        self.publish(&state);
    }

    fn replace(&self, loaded: Loaded) {
        let mut state = self.state.lock();
        *state = loaded;
        self.publish(&state);
    }

    fn publish(&self, state: &Loaded) {
        let records: Shared = Arc::new(state.rollouts.clone());
        self.records.send_if_modified(|cur| {
            let changed = *cur != records;
            *cur = records.clone();
            changed
        });
        let plain: BTreeMap<String, Rollout> = state
            .rollouts
            .iter()
            .map(|(s, v)| (s.clone(), v.rollout.clone()))
            .collect();
        let overlays = Overlays::of(plain.values());
        self.rollouts.send_if_modified(|cur| {
            let changed = *cur != plain;
            *cur = plain;
            changed
        });
        self.overlays.send_if_modified(|cur| {
            let changed = *cur != overlays;
            *cur = overlays;
            changed
        });
        self.drains
            .offer(state.drains.clone(), state.drains_revision);
        let leader = state.leader();
        let mut replicas: Vec<String> = state.candidates.values().map(|(_, n)| n.clone()).collect();
        replicas.sort();
        replicas.dedup();
        self.fleet.send_if_modified(|cur| {
            let changed = **cur != state.acks;
            if changed {
                *cur = Arc::new(state.acks.clone());
            }
            changed
        });
        let proxies: BTreeMap<String, u32> = state
            .acks
            .iter()
            .map(|(replica, s)| (replica.clone(), s.proxies))
            .collect();
        self.status.send_if_modified(|s| {
            let changed = s.leader != leader || s.replicas != replicas || s.proxies != proxies;
            s.leader = leader;
            s.replicas = replicas;
            s.proxies = proxies;
            changed
        });
    }

    fn set_up(&self, up: bool) {
        self.status.send_if_modified(|s| {
            let changed = s.store_up != up;
            s.store_up = up;
            changed
        });
    }

    /// Watches the prefix from the loaded revision until `stop`; reloads
    /// after any failure.
    pub async fn run(self: Arc<Self>, client: Client, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut from = self.state.lock().revision + 1;
        loop {
            match self.watch(&client, from, &stop).await {
                Ok(()) => return,
                Err(e) => {
                    self.set_up(false);
                    warn!(error = %e, "state store watch lost; serving what this replica has until etcd answers");
                }
            }
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
                match load(&client, &self.prefix).await {
                    Ok(loaded) => {
                        from = loaded.revision + 1;
                        self.replace(loaded);
                        self.set_up(true);
                        info!("state store reloaded");
                        backoff.reset();
                        break;
                    }
                    Err(e) => warn!(error = %e, "state store still unavailable"),
                }
            }
        }
    }

    /// One watch, until `stop` (`Ok`) or a failure.
    async fn watch(
        &self,
        client: &Client,
        from: i64,
        stop: &CancellationToken,
    ) -> Result<(), String> {
        let mut c = client.clone();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let (_watcher, mut stream) =
            keys::bounded(c.watch(self.prefix.as_str(), Some(opts))).await?;
        loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                m = stream.message() => m,
            };
            let resp = match msg {
                Ok(Some(resp)) => resp,
                Ok(None) => return Err("the watch ended".into()),
                Err(e) => return Err(e.to_string()),
            };
            if resp.canceled() {
                return Err(format!("the watch was cancelled: {}", resp.cancel_reason()));
            }
            if resp.compact_revision() > 0 {
                return Err(format!("compacted at revision {}", resp.compact_revision()));
            }
            let mut state = self.state.lock();
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                match ev.event_type() {
                    EventType::Put => state.put(&self.prefix, kv),
                    EventType::Delete => state.delete(&self.prefix, kv),
                }
            }
            if let Some(h) = resp.header() {
                state.revision = state.revision.max(h.revision());
            }
            self.publish(&state);
        }
    }
}
