//! The discovery index: every source's endpoints, merged, with no I/O.
//!
//! Sources call [`Index::reset`], [`Index::apply`], [`Index::delete`],
//! [`Index::confirm`] and [`Index::fail`] keyed by a [`FeedKey`] (one
//! service's watch on one registry). Each call publishes an immutable
//! [`View`] on a `tokio::sync::watch` channel; `serve` resolves the rules'
//! services against that view and compiles. Nothing here reads a clock: the
//! caller passes `at`, so tests drive the index with made-up instants.
//!
//! Fail-static lives in the API: [`Index::fail`] only changes a feed's sync
//! state, never its endpoints. The only way to empty a feed is a `reset`
//! with no entries (a healthy registry saying "zero instances") or deletes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::model::{Config, Discovery, Endpoint, Health};

/// One service's watch on one registry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedKey {
    pub service: String,
    pub discovery: Discovery,
}

/// Where a feed stands with its registry.
#[derive(Clone, Debug, PartialEq)]
pub enum SyncState {
    /// No complete listing yet; `last_error` says why, if the source tried.
    NeverSynced { last_error: Option<String> },
    /// The registry answered and its answer is what the feed holds.
    Synced { at: Instant },
    /// Synced before, but the registry now errors, times out or has no
    /// leader; the feed keeps the endpoints it had (fail-static).
    Failing {
        error: String,
        since: Instant,
        last_sync: Instant,
    },
}

/// One feed's endpoints (by registry entry id) and state.
#[derive(Clone, Debug, PartialEq)]
pub struct Feed {
    /// Keyed by the registry's own id for the entry (etcd key, Consul
    /// service id, …), so a delete names what it removes.
    pub endpoints: Arc<BTreeMap<String, Endpoint>>,
    pub sync: SyncState,
    /// Registry entries skipped because they could not be understood.
    pub bad_entries: u64,
    pub last_bad_entry: Option<String>,
}

/// An immutable picture of every feed, as published.
///
/// Keys are shared (`Arc`) between the index and every view: a view is
/// published on each confirmation (an etcd progress report, every few
/// seconds per feed), so with 1,000 feeds cloning the keys' strings each
/// time cost most of a core's worth of allocation (see
/// docs/benchmarks.md, "Where sluice's CPU goes in B1").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    pub feeds: BTreeMap<Arc<FeedKey>, Feed>,
}

/// Why a config cannot be resolved against a view yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("service {service:?}: {discovery:?} has not synced yet")]
    NotSynced {
        service: String,
        discovery: Discovery,
    },
}

/// The synchronous, merged index. Shared by sources behind a mutex; every
/// method is short and never awaits.
#[derive(Debug)]
pub struct Index {
    feeds: BTreeMap<Arc<FeedKey>, Feed>,
    tx: watch::Sender<Arc<View>>,
}

impl Index {
    pub fn new() -> (Index, watch::Receiver<Arc<View>>) {
        let (tx, rx) = watch::channel(Arc::new(View::default()));
        let index = Index {
            feeds: BTreeMap::new(),
            tx,
        };
        (index, rx)
    }

    /// A receiver of the views this index publishes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.tx.subscribe()
    }

    /// Makes `keys` the set of feeds: new ones start [`SyncState::NeverSynced`],
    /// feeds no longer wanted are dropped with their endpoints.
    pub fn set_feeds(&mut self, keys: &BTreeSet<FeedKey>) {
        self.feeds.retain(|k, _| keys.contains(&**k));
        for key in keys {
            if self.feeds.contains_key(key) {
                continue;
            }
            self.feeds.insert(
                Arc::new(key.clone()),
                Feed {
                    endpoints: Arc::default(),
                    sync: SyncState::NeverSynced { last_error: None },
                    bad_entries: 0,
                    last_bad_entry: None,
                },
            );
        }
        self.publish();
    }

    /// A complete listing: the feed becomes exactly `entries`, in one
    /// publication (no transient empty set), and is synced.
    pub fn reset(&mut self, key: &FeedKey, entries: BTreeMap<String, Endpoint>, at: Instant) {
        self.update(key, |feed| {
            if *feed.endpoints != entries {
                feed.endpoints = Arc::new(entries);
            }
            feed.sync = SyncState::Synced { at };
        });
    }

    /// One entry added or changed, seen on a live watch.
    pub fn apply(&mut self, key: &FeedKey, id: String, endpoint: Endpoint, at: Instant) {
        self.update(key, |feed| {
            if feed.endpoints.get(&id) != Some(&endpoint) {
                Arc::make_mut(&mut feed.endpoints).insert(id, endpoint);
            }
            mark_live(feed, at);
        });
    }

    /// One entry removed, seen on a live watch.
    pub fn delete(&mut self, key: &FeedKey, id: &str, at: Instant) {
        self.update(key, |feed| {
            if feed.endpoints.contains_key(id) {
                Arc::make_mut(&mut feed.endpoints).remove(id);
            }
            mark_live(feed, at);
        });
    }

    /// The registry confirmed the feed is current with no change (a watch
    /// progress notification, an unchanged blocking query).
    pub fn confirm(&mut self, key: &FeedKey, at: Instant) {
        self.update(key, |feed| mark_live(feed, at));
    }

    /// The registry failed. Endpoints stay as they are.
    pub fn fail(&mut self, key: &FeedKey, error: String, at: Instant) {
        self.update(key, |feed| {
            feed.sync = match &feed.sync {
                SyncState::NeverSynced { .. } => SyncState::NeverSynced {
                    last_error: Some(error),
                },
                SyncState::Synced { at: last_sync } => SyncState::Failing {
                    error,
                    since: at,
                    last_sync: *last_sync,
                },
                SyncState::Failing {
                    since, last_sync, ..
                } => SyncState::Failing {
                    error,
                    since: *since,
                    last_sync: *last_sync,
                },
            };
        });
    }

    /// A registry entry was skipped because it could not be understood.
    pub fn reject(&mut self, key: &FeedKey, error: String) {
        self.update(key, |feed| {
            feed.bad_entries += 1;
            feed.last_bad_entry = Some(error);
        });
    }

    /// The endpoints a feed holds now (sources use it to diff a re-list).
    pub fn endpoints(&self, key: &FeedKey) -> Option<Arc<BTreeMap<String, Endpoint>>> {
        self.feeds.get(key).map(|f| f.endpoints.clone())
    }

    /// Calls for a feed that is no longer wanted (a watcher racing its own
    /// removal) are ignored.
    fn update(&mut self, key: &FeedKey, f: impl FnOnce(&mut Feed)) {
        let Some(feed) = self.feeds.get_mut(key) else {
            return;
        };
        let before = feed.clone();
        f(feed);
        if *feed != before {
            self.publish();
        }
    }

    fn publish(&self) {
        let view = View {
            feeds: self.feeds.clone(),
        };
        self.tx.send_if_modified(|current| {
            if **current == view {
                return false;
            }
            *current = Arc::new(view);
            true
        });
    }
}

/// A watch event or confirmation proves the registry answers again; it
/// does not make a never-listed feed complete.
fn mark_live(feed: &mut Feed, at: Instant) {
    if !matches!(feed.sync, SyncState::NeverSynced { .. }) {
        feed.sync = SyncState::Synced { at };
    }
}

impl SyncState {
    pub fn has_synced(&self) -> bool {
        !matches!(self, SyncState::NeverSynced { .. })
    }

    pub fn last_sync(&self) -> Option<Instant> {
        match self {
            SyncState::NeverSynced { .. } => None,
            SyncState::Synced { at } => Some(*at),
            SyncState::Failing { last_sync, .. } => Some(*last_sync),
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            SyncState::NeverSynced { last_error } => last_error.as_deref(),
            SyncState::Synced { .. } => None,
            SyncState::Failing { error, .. } => Some(error),
        }
    }
}

impl View {
    /// Same feeds, endpoints and readiness: sync times may differ.
    pub fn same_content(&self, other: &View) -> bool {
        self.feeds.len() == other.feeds.len()
            && self
                .feeds
                .iter()
                .zip(&other.feeds)
                .all(|((ka, a), (kb, b))| {
                    ka == kb
                        && a.sync.has_synced() == b.sync.has_synced()
                        && (Arc::ptr_eq(&a.endpoints, &b.endpoints) || a.endpoints == b.endpoints)
                })
    }

    /// Every feed `config` needs, one per (service, discovery).
    pub fn feeds_of(config: &Config) -> BTreeSet<FeedKey> {
        config
            .services
            .values()
            .flat_map(|s| {
                s.discovery.iter().map(|d| FeedKey {
                    service: s.name.clone(),
                    discovery: d.clone(),
                })
            })
            .collect()
    }

    /// `config` with each discovered service's endpoints filled in: its
    /// static endpoints merged with every feed's, by [`merge`]. Fails until
    /// every feed the config needs has synced once (DESIGN invariant 5).
    pub fn resolve(&self, config: &Config) -> Result<Config, ResolveError> {
        let mut out = config.clone();
        for service in out.services.values_mut() {
            if service.discovery.is_empty() {
                continue;
            }
            let mut sources: Vec<&BTreeMap<String, Endpoint>> = Vec::new();
            for d in &service.discovery {
                let key = FeedKey {
                    service: service.name.clone(),
                    discovery: d.clone(),
                };
                match self.feeds.get(&key) {
                    Some(feed) if feed.sync.has_synced() => sources.push(&feed.endpoints),
                    _ => {
                        return Err(ResolveError::NotSynced {
                            service: service.name.clone(),
                            discovery: d.clone(),
                        })
                    }
                }
            }
            service.endpoints = merge(&service.endpoints, &sources);
        }
        Ok(out)
    }
}

/// Merges endpoints that may name the same address:port more than once.
///
/// The rule, chosen so that the result never depends on arrival order:
/// candidates are taken static endpoints first, then each source in the
/// service's discovery order (consul, etcd, kubernetes, file), each by
/// entry id. For one address:port the candidate with the best health wins
/// (healthy, degraded, unknown, draining, unhealthy — a registry that still
/// sees the instance serving is believed over one that does not); on a tie
/// the earlier candidate wins. The winner's labels are completed with the
/// other candidates' labels it lacks. Output is ordered by address:port.
pub fn merge(statics: &[Endpoint], sources: &[&BTreeMap<String, Endpoint>]) -> Vec<Endpoint> {
    let mut by_addr: BTreeMap<SocketAddr, Endpoint> = BTreeMap::new();
    let candidates = statics
        .iter()
        .chain(sources.iter().flat_map(|s| s.values()));
    for ep in candidates {
        let addr = SocketAddr::new(ep.address, ep.port);
        match by_addr.get_mut(&addr) {
            None => {
                by_addr.insert(addr, ep.clone());
            }
            Some(current) => {
                let (mut winner, loser) = if rank(ep.health) < rank(current.health) {
                    (ep.clone(), &*current)
                } else {
                    (current.clone(), ep)
                };
                for (k, v) in &loser.labels {
                    winner.labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
                *current = winner;
            }
        }
    }
    by_addr.into_values().collect()
}

fn rank(h: Health) -> u8 {
    match h {
        Health::Healthy => 0,
        Health::Degraded => 1,
        Health::Unknown => 2,
        Health::Draining => 3,
        Health::Unhealthy => 4,
    }
}
