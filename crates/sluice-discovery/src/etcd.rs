//! The etcd source: one key per endpoint under a prefix, JSON values
//! (format in `docs/discovery.md`).
//!
//! The feed lists the prefix in one range request — one consistent
//! revision R — and resets the index to it, then watches from R+1, so no
//! event between the two is lost. Watch events become `apply` / `delete`.
//! When the watch is lost (etcd down, leader lost: requests carry etcd's
//! require-leader flag) the feed fails (endpoints kept) and, after a
//! backoff, resumes from the last revision it saw: etcd's MVCC replays
//! every event since, deletes included. If that history was compacted
//! meanwhile, or etcd's revision went backwards (a restored or replaced
//! cluster), the feed lists again at one revision and resets: the index
//! swaps to the new set in one step, so deletes during the gap are applied
//! and there is never a transient empty set.
//!
//! A value that is not a valid record is skipped, logged and counted; the
//! key keeps the endpoint it had, if any (garbage never removes a server).
//!
//! The feeds of one endpoint list share one client ([`Clients`]): one
//! HTTP/2 connection to etcd, on which each feed's requests are streams. A
//! client connection per feed meant 1,000 connections (each with its own
//! keep-alive pings) for 1,000 etcd-backed services. Their watchers share
//! one watch stream too, and its liveness checks (`etcd_hub`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, EventType, GetOptions};
use parking_lot::Mutex;
use sluice_core::model::{Endpoint, EtcdSource};

use super::etcd_hub::{Heard, Hub, StreamLost};
use super::record::Record;
use super::{Backoff, Feeder, SourceOptions};

/// Where a feed's watch stands.
#[derive(Debug)]
enum State {
    /// List the prefix at one revision and reset the feed to it.
    Listing,
    /// Watch from `from` (the revision after the last one seen). `checked`
    /// is false after a loss: first make sure etcd's revision has not gone
    /// backwards, else resuming would silently miss the new history.
    Watching { from: i64, checked: bool },
    /// Wait `delay` after an error, then go to `next`.
    Backoff { delay: Duration, next: Box<State> },
}

/// How a watch ended.
#[derive(Debug)]
pub(super) enum WatchEnd {
    Stopped,
    /// History from the start revision is gone: list again.
    Compacted(i64),
    /// The stream or etcd failed; resume from `from` after a backoff.
    Lost {
        from: i64,
        error: EtcdError,
    },
}

/// Why an etcd feed failed; etcd-client's error, when there is one, is
/// its source.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd connect")]
    Connect(#[source] etcd_client::Error),
    #[error("etcd list of {prefix}: timed out")]
    ListTimedOut { prefix: String },
    #[error("etcd list of {prefix}")]
    List {
        prefix: String,
        #[source]
        source: etcd_client::Error,
    },
    /// Asking etcd's revision before a watch resumes.
    #[error("etcd: timed out")]
    RevisionTimedOut,
    #[error("etcd")]
    Revision(#[source] etcd_client::Error),
    /// etcd did not create the watcher within the request timeout.
    #[error("etcd watch of {prefix}: timed out")]
    WatchTimedOut { prefix: String },
    /// The hub's task is gone.
    #[error("etcd watch of {prefix}: stream closed")]
    HubGone { prefix: String },
    #[error("etcd watch of {prefix} canceled: {reason}")]
    Canceled { prefix: String, reason: String },
    /// The shared watch stream was lost (`etcd_hub`).
    #[error(transparent)]
    Stream(#[from] StreamLost),
}

/// The etcd clients of a supervisor's feeds, and their watch hubs, one
/// per endpoint list. `etcd_client::Client::connect` does no I/O (its
/// channel connects, and reconnects, on use), so taking a client never
/// waits for etcd.
#[derive(Clone, Default)]
pub struct Clients(Arc<Mutex<ByEndpoints>>);

/// A client and its watch hub per endpoint list.
type ByEndpoints = BTreeMap<Vec<String>, (Client, Hub)>;

impl Clients {
    async fn get(
        &self,
        endpoints: &[String],
        opts: &SourceOptions,
    ) -> Result<(Client, Hub), EtcdError> {
        if let Some(c) = self.0.lock().get(endpoints) {
            return Ok(c.clone());
        }
        let connect = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(opts.request_timeout)
            .with_keep_alive(Duration::from_secs(5), opts.request_timeout);
        let client = Client::connect(endpoints, Some(connect))
            .await
            .map_err(EtcdError::Connect)?;
        // Two feeds may have connected at once: both keep the first.
        Ok(self
            .0
            .lock()
            .entry(endpoints.to_vec())
            .or_insert_with(|| {
                let hub = Hub::start(client.clone(), probe_interval(opts), opts.request_timeout);
                (client, hub)
            })
            .clone())
    }

    /// Drops the clients of endpoint lists no feed uses any more.
    pub fn retain(&self, used: Option<&EtcdSource>) {
        self.0
            .lock()
            .retain(|endpoints, _| used.is_some_and(|s| s.endpoints == *endpoints));
    }
}

/// Runs one feed until the feeder is stopped.
pub async fn run(
    feeder: Feeder,
    src: EtcdSource,
    prefix: String,
    opts: SourceOptions,
    clients: Clients,
) {
    let mut client: Option<(Client, Hub)> = None;
    let mut state = State::Listing;
    let mut backoff = opts.backoff();
    let stop = feeder.stop.clone();
    loop {
        if feeder.stopped() {
            return;
        }
        let (c, hub) = match &client {
            Some(c) => c.clone(),
            None => match clients.get(&src.endpoints, &opts).await {
                Ok(c) => {
                    client = Some(c.clone());
                    c
                }
                Err(e) => {
                    state = retry(&feeder, &e, &mut backoff, state);
                    continue;
                }
            },
        };
        state = match state {
            State::Listing => match list(&c, &prefix, &feeder, &opts).await {
                Ok(revision) => {
                    backoff.reset();
                    State::Watching {
                        from: revision + 1,
                        checked: true,
                    }
                }
                Err(e) => retry(&feeder, &e, &mut backoff, State::Listing),
            },
            State::Watching {
                from,
                checked: false,
            } => {
                match current_revision(&c, &prefix, &opts).await {
                    // Nothing after `from - 1` exists: history was reset.
                    Ok(rev) if rev < from - 1 => State::Listing,
                    Ok(_) => State::Watching {
                        from,
                        checked: true,
                    },
                    Err(e) => {
                        let next = State::Watching {
                            from,
                            checked: false,
                        };
                        retry(&feeder, &e, &mut backoff, next)
                    }
                }
            }
            State::Watching {
                from,
                checked: true,
            } => match watch(&hub, &prefix, from, &feeder, &opts, &mut backoff).await {
                WatchEnd::Stopped => return,
                WatchEnd::Compacted(at) => {
                    tracing::info!(%prefix, from, compacted = at, "etcd history compacted; listing again");
                    State::Listing
                }
                WatchEnd::Lost { from, error } => {
                    let next = State::Watching {
                        from,
                        checked: false,
                    };
                    retry(&feeder, &error, &mut backoff, next)
                }
            },
            State::Backoff { delay: d, next } => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(d) => *next,
                }
            }
        };
    }
}

/// Marks the feed failing with `error` and waits before going to `next`.
fn retry(feeder: &Feeder, error: &EtcdError, backoff: &mut Backoff, next: State) -> State {
    State::Backoff {
        delay: feeder.retry_after(error, backoff),
        next: Box::new(next),
    }
}

/// Lists the prefix at one revision and resets the feed; returns the
/// revision.
async fn list(
    client: &Client,
    prefix: &str,
    feeder: &Feeder,
    opts: &SourceOptions,
) -> Result<i64, EtcdError> {
    let mut kv = client.kv_client();
    let get = kv.get(prefix, Some(GetOptions::new().with_prefix()));
    let prefix = prefix.to_string();
    let resp = match tokio::time::timeout(opts.request_timeout, get).await {
        Err(_) => return Err(EtcdError::ListTimedOut { prefix }),
        Ok(Err(source)) => return Err(EtcdError::List { prefix, source }),
        Ok(Ok(resp)) => resp,
    };
    let revision = resp.header().map_or(0, |h| h.revision());
    let current = feeder
        .with(|index, key| index.endpoints(key))
        .unwrap_or_default();
    let mut entries: BTreeMap<String, Endpoint> = BTreeMap::new();
    for kv in resp.kvs() {
        let id = String::from_utf8_lossy(kv.key()).into_owned();
        match Record::from_json(kv.value()) {
            Ok(ep) => {
                entries.insert(id, ep);
            }
            Err(e) => {
                feeder.reject(format!("{id}: {e}"));
                if let Some(old) = current.get(&id) {
                    entries.insert(id, old.clone());
                }
            }
        }
    }
    feeder.with(|index, key| index.reset(key, entries, Instant::now()));
    Ok(revision)
}

async fn current_revision(
    client: &Client,
    prefix: &str,
    opts: &SourceOptions,
) -> Result<i64, EtcdError> {
    let mut kv = client.kv_client();
    let get = kv.get(
        prefix,
        Some(GetOptions::new().with_prefix().with_count_only()),
    );
    let resp = tokio::time::timeout(opts.request_timeout, get)
        .await
        .map_err(|_| EtcdError::RevisionTimedOut)?
        .map_err(EtcdError::Revision)?;
    Ok(resp.header().map_or(0, |h| h.revision()))
}

/// How often the hub asks etcd for a progress report (the answer shows
/// the stream is alive; none within the request timeout means it hangs).
fn probe_interval(opts: &SourceOptions) -> Duration {
    (opts.request_timeout / 2).max(Duration::from_millis(200))
}

/// Watches from `from` until the watch ends, on the hub's shared stream.
async fn watch(
    hub: &Hub,
    prefix: &str,
    from: i64,
    feeder: &Feeder,
    opts: &SourceOptions,
    backoff: &mut Backoff,
) -> WatchEnd {
    let stop = feeder.stop.clone();
    let mut watch = hub.watch(prefix, from);
    let mut progress = Progress::new(prefix, from);
    let deadline = tokio::time::sleep(opts.request_timeout);
    tokio::pin!(deadline);
    loop {
        let heard = tokio::select! {
            _ = stop.cancelled() => return WatchEnd::Stopped,
            _ = &mut deadline, if !progress.created => {
                return lost(from, EtcdError::WatchTimedOut { prefix: prefix.to_string() });
            }
            heard = watch.next() => heard,
        };
        if let Some(end) = progress.hear(heard, feeder, backoff) {
            return end;
        }
    }
}

/// What a watch has heard so far: where the feed would resume, and
/// whether etcd created the watcher.
pub(super) struct Progress<'a> {
    prefix: &'a str,
    /// The revision after the last event (or own progress report) seen.
    next: i64,
    created: bool,
}

impl<'a> Progress<'a> {
    pub(super) fn new(prefix: &'a str, from: i64) -> Progress<'a> {
        Progress {
            prefix,
            next: from,
            created: false,
        }
    }

    /// Takes one thing heard (`None`: the hub is gone) into the feed;
    /// returns how the watch ended, if it did.
    pub(super) fn hear(
        &mut self,
        heard: Option<Heard>,
        feeder: &Feeder,
        backoff: &mut Backoff,
    ) -> Option<WatchEnd> {
        let prefix = self.prefix;
        let resp = match heard {
            None => {
                let prefix = prefix.to_string();
                return Some(lost(self.next, EtcdError::HubGone { prefix }));
            }
            Some(Heard::Lost(error)) => return Some(lost(self.next, error)),
            Some(Heard::Alive) => {
                // etcd answers on the stream: every event sent so far has
                // arrived (the resume revision stays with the events; see
                // `etcd_hub`).
                if self.created {
                    feeder.confirm();
                }
                return None;
            }
            Some(Heard::Created) => {
                // The watch exists: etcd answers and has a leader. A loss
                // after this starts a new outage, retried first after the
                // shortest delay, whether this watch followed a listing or
                // resumed after a loss.
                self.created = true;
                backoff.reset();
                feeder.confirm();
                return None;
            }
            Some(Heard::Response(resp)) => resp,
        };
        if resp.compact_revision() > 0 {
            return Some(WatchEnd::Compacted(resp.compact_revision()));
        }
        if resp.canceled() {
            let error = EtcdError::Canceled {
                prefix: prefix.to_string(),
                reason: resp.cancel_reason().to_string(),
            };
            return Some(lost(self.next, error));
        }
        if resp.events().is_empty() {
            // The watcher's own progress notification: etcd sends it only
            // once the watcher has every event up to that revision.
            if let Some(h) = resp.header() {
                self.next = self.next.max(h.revision() + 1);
            }
            feeder.confirm();
            return None;
        }
        let now = Instant::now();
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let id = String::from_utf8_lossy(kv.key()).into_owned();
            self.next = self.next.max(kv.mod_revision() + 1);
            match event.event_type() {
                EventType::Delete => feeder.with(|index, key| index.delete(key, &id, now)),
                EventType::Put => match Record::from_json(kv.value()) {
                    Ok(ep) => feeder.with(|index, key| index.apply(key, id, ep, now)),
                    Err(e) => feeder.reject(format!("{id}: {e}")),
                },
            }
        }
        None
    }
}

fn lost(from: i64, error: impl Into<EtcdError>) -> WatchEnd {
    WatchEnd::Lost {
        from,
        error: error.into(),
    }
}
