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
//!
//! A view is published only when something a reader acts on changed: a
//! feed's endpoints, its sync state, its rejected entries. When the
//! registry last answered ([`Feed::last_sync`]) is not part of that: it is
//! a [`LastSync`] cell the index and all its views share and move in place,
//! so the steady stream of progress reports (every feed, every few
//! seconds) costs a lock each instead of a copy of the feed map each.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::model::{Config, Discovery, Endpoint, Service};

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
    /// The registry answered and its answer is what the feed holds (when it
    /// last did: [`Feed::last_sync`]).
    Synced,
    /// Synced before, but the registry now errors, times out or has no
    /// leader; the feed keeps the endpoints it had (fail-static).
    Failing { error: String, since: Instant },
}

/// When the registry last answered for a feed: a listing, a watch event or
/// a progress report.
///
/// Shared by the index and every view it published, and moved in place
/// without publishing: with 1,000 etcd feeds each confirmed every 2.5 s, a
/// new view per confirmation (a copy of the whole feed map, compared and
/// dropped) was 12 % of sluice's CPU in B1 (docs/benchmarks.md, "Where
/// sluice's CPU goes in B1"). So an older view also reads the latest
/// time, which is what `/status` wants: the age of the last answer now.
#[derive(Clone, Debug, Default)]
pub struct LastSync(Arc<Mutex<Option<Instant>>>);

impl LastSync {
    pub fn get(&self) -> Option<Instant> {
        *self.0.lock()
    }

    fn set(&self, at: Instant) {
        *self.0.lock() = Some(at);
    }
}

impl PartialEq for LastSync {
    fn eq(&self, other: &LastSync) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.get() == other.get()
    }
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
    /// How often the feed's whole set was loaded (`reset`): an etcd
    /// listing (the first, then one after each compaction or restored
    /// cluster), a Consul or Kubernetes answer, a file read.
    pub full_loads: u64,
    pub last_bad_entry: Option<String>,
    /// Moved in place, never published: see [`LastSync`].
    pub heard: LastSync,
}

impl Feed {
    /// When the registry last answered, once the feed has synced (a
    /// failing feed keeps the time of its last answer).
    pub fn last_sync(&self) -> Option<Instant> {
        self.sync.has_synced().then(|| self.heard.get()).flatten()
    }
}

/// An immutable picture of every feed, as published (but for each feed's
/// [`LastSync`], which moves in place).
///
/// Keys are shared (`Arc`) between the index and every view, so a
/// publication copies no strings: when a view was published on every
/// confirmation, cloning the keys' strings cost most of a core's worth of
/// allocation with 1,000 feeds (docs/benchmarks.md, "Where sluice's CPU
/// goes in B1").
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
                    full_loads: 0,
                    last_bad_entry: None,
                    heard: LastSync::default(),
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
            feed.sync = SyncState::Synced;
            feed.heard.set(at);
            feed.full_loads += 1;
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
                SyncState::Synced => SyncState::Failing { error, since: at },
                SyncState::Failing { since, .. } => SyncState::Failing {
                    error,
                    since: *since,
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
    /// removal) are ignored. `before` shares the feed's [`LastSync`], so a
    /// call that only moves the sync time publishes nothing.
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
    if feed.sync.has_synced() {
        feed.sync = SyncState::Synced;
        feed.heard.set(at);
    }
}

impl SyncState {
    pub fn has_synced(&self) -> bool {
        !matches!(self, SyncState::NeverSynced { .. })
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            SyncState::NeverSynced { last_error } => last_error.as_deref(),
            SyncState::Synced => None,
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

    /// The endpoints of each of `service`'s feeds, in its discovery order;
    /// an error if one has never synced.
    pub(super) fn sources_of(
        &self,
        service: &Service,
    ) -> Result<Vec<&Arc<BTreeMap<String, Endpoint>>>, ResolveError> {
        service
            .discovery
            .iter()
            .map(|d| {
                let key = FeedKey {
                    service: service.name.clone(),
                    discovery: d.clone(),
                };
                match self.feeds.get(&key) {
                    Some(feed) if feed.sync.has_synced() => Ok(&feed.endpoints),
                    _ => Err(ResolveError::NotSynced {
                        service: service.name.clone(),
                        discovery: d.clone(),
                    }),
                }
            })
            .collect()
    }
}
