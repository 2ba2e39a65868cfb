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
//! HTTP/2 connection to etcd, on which each feed's requests and watch are
//! streams. A client connection per feed meant 1,000 connections (each
//! with its own keep-alive pings) for 1,000 etcd-backed services.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions, WatchStream};

use super::record::Record;
use super::{Feeder, SourceOptions};
use crate::model::{Endpoint, EtcdSource};

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
enum WatchEnd {
    Stopped,
    /// History from the start revision is gone: list again.
    Compacted(i64),
    /// The stream or etcd failed; resume from `from` after a backoff.
    Lost {
        from: i64,
        error: String,
    },
}

/// The etcd clients of a supervisor's feeds, one per endpoint list.
/// `etcd_client::Client::connect` does no I/O (its channel connects, and
/// reconnects, on use), so taking a client never waits for etcd.
#[derive(Clone, Default)]
pub struct Clients(Arc<Mutex<BTreeMap<Vec<String>, Client>>>);

impl Clients {
    async fn get(&self, endpoints: &[String], opts: &SourceOptions) -> Result<Client, String> {
        if let Some(c) = self.lock().get(endpoints) {
            return Ok(c.clone());
        }
        let connect = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(opts.request_timeout)
            .with_keep_alive(Duration::from_secs(5), opts.request_timeout);
        let client = Client::connect(endpoints, Some(connect))
            .await
            .map_err(|e| format!("etcd connect: {e}"))?;
        // Two feeds may have connected at once: both keep the first.
        Ok(self
            .lock()
            .entry(endpoints.to_vec())
            .or_insert(client)
            .clone())
    }

    /// Drops the clients of endpoint lists no feed uses any more.
    pub fn retain(&self, used: Option<&EtcdSource>) {
        self.lock()
            .retain(|endpoints, _| used.is_some_and(|s| s.endpoints == *endpoints));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<String>, Client>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
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
    let mut client: Option<Client> = None;
    let mut state = State::Listing;
    let mut delay = opts.retry_min;
    let mut stop = feeder.stop.clone();
    loop {
        if feeder.stopped() {
            return;
        }
        let c = match &client {
            Some(c) => c.clone(),
            None => match clients.get(&src.endpoints, &opts).await {
                Ok(c) => {
                    client = Some(c.clone());
                    c
                }
                Err(e) => {
                    feeder.fail(e);
                    state = backoff(&mut delay, &opts, state);
                    continue;
                }
            },
        };
        state = match state {
            State::Listing => match list(&c, &prefix, &feeder, &opts).await {
                Ok(revision) => {
                    delay = opts.retry_min;
                    State::Watching {
                        from: revision + 1,
                        checked: true,
                    }
                }
                Err(e) => {
                    feeder.fail(e);
                    backoff(&mut delay, &opts, State::Listing)
                }
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
                        feeder.fail(e);
                        let next = State::Watching {
                            from,
                            checked: false,
                        };
                        backoff(&mut delay, &opts, next)
                    }
                }
            }
            State::Watching {
                from,
                checked: true,
            } => match watch(&c, &prefix, from, &feeder, &opts).await {
                WatchEnd::Stopped => return,
                WatchEnd::Compacted(at) => {
                    tracing::info!(%prefix, from, compacted = at, "etcd history compacted; listing again");
                    State::Listing
                }
                WatchEnd::Lost { from, error } => {
                    feeder.fail(error);
                    let next = State::Watching {
                        from,
                        checked: false,
                    };
                    backoff(&mut delay, &opts, next)
                }
            },
            State::Backoff { delay: d, next } => {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(d) => *next,
                }
            }
        };
    }
}

fn backoff(delay: &mut Duration, opts: &SourceOptions, next: State) -> State {
    let d = *delay;
    *delay = (*delay * 2).min(opts.retry_max);
    State::Backoff {
        delay: d,
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
) -> Result<i64, String> {
    let mut kv = client.kv_client();
    let get = kv.get(prefix, Some(GetOptions::new().with_prefix()));
    let resp = tokio::time::timeout(opts.request_timeout, get)
        .await
        .map_err(|_| format!("etcd list of {prefix}: timed out"))?
        .map_err(|e| format!("etcd list of {prefix}: {e}"))?;
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
) -> Result<i64, String> {
    let mut kv = client.kv_client();
    let get = kv.get(
        prefix,
        Some(GetOptions::new().with_prefix().with_count_only()),
    );
    let resp = tokio::time::timeout(opts.request_timeout, get)
        .await
        .map_err(|_| "etcd: timed out".to_string())?
        .map_err(|e| format!("etcd: {e}"))?;
    Ok(resp.header().map_or(0, |h| h.revision()))
}

/// Watches from `from` until the stream ends. Asks etcd for a progress
/// report every few seconds: the answer confirms the feed is current, and
/// no answer means the stream hangs.
async fn watch(
    client: &Client,
    prefix: &str,
    from: i64,
    feeder: &Feeder,
    opts: &SourceOptions,
) -> WatchEnd {
    let mut stop = feeder.stop.clone();
    let mut wc = client.watch_client();
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let created = tokio::time::timeout(opts.request_timeout, wc.watch(prefix, Some(options)));
    let (mut watcher, mut stream): (_, WatchStream) = match created.await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return lost(from, format!("etcd watch of {prefix}: {e}")),
        Err(_) => return lost(from, format!("etcd watch of {prefix}: timed out")),
    };
    // The watch exists: etcd answers and has a leader.
    feeder.confirm();
    let mut next = from;
    let probe_every = (opts.request_timeout / 2).max(Duration::from_millis(200));
    // Each feed asks at one of `PROBE_SLOTS` phases of the interval (a
    // hash of its prefix picks which). Feeds started together (every feed
    // at start-up, on one shared connection) would otherwise all ask at
    // once: 1,000 requests and answers at M1 that
    // etcd and sluice handle in one burst every interval, delaying any
    // change that arrives then (B1: every fifth move, 2.5 s apart, took
    // 60-170 ms instead of ~45).
    let phase = probe_every.mul_f64(probe_phase(prefix));
    let mut probe = tokio::time::interval_at(tokio::time::Instant::now() + phase, probe_every);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut awaiting: Option<Instant> = None;
    loop {
        let wake = tokio::select! {
            _ = stop.wait_for(|s| *s) => Wake::Stop,
            _ = probe.tick() => Wake::Probe,
            msg = stream.message() => Wake::Message(msg),
        };
        let msg = match wake {
            Wake::Stop => return WatchEnd::Stopped,
            Wake::Message(msg) => msg,
            Wake::Probe => {
                if awaiting.is_some_and(|t| t.elapsed() > opts.request_timeout) {
                    return lost(next, format!("etcd watch of {prefix}: no progress report"));
                }
                if awaiting.is_none() {
                    if let Err(e) = watcher.request_progress().await {
                        return lost(next, format!("etcd watch of {prefix}: {e}"));
                    }
                    awaiting = Some(Instant::now());
                }
                continue;
            }
        };
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => return lost(next, format!("etcd watch of {prefix}: stream closed")),
            Err(e) => return lost(next, format!("etcd watch of {prefix}: {e}")),
        };
        awaiting = None;
        if resp.compact_revision() > 0 {
            return WatchEnd::Compacted(resp.compact_revision());
        }
        if resp.canceled() {
            return lost(
                next,
                format!("etcd watch of {prefix} canceled: {}", resp.cancel_reason()),
            );
        }
        let now = Instant::now();
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let id = String::from_utf8_lossy(kv.key()).into_owned();
            next = next.max(kv.mod_revision() + 1);
            match event.event_type() {
                EventType::Delete => feeder.with(|index, key| index.delete(key, &id, now)),
                EventType::Put => match Record::from_json(kv.value()) {
                    Ok(ep) => feeder.with(|index, key| index.apply(key, id, ep, now)),
                    Err(e) => feeder.reject(format!("{id}: {e}")),
                },
            }
        }
        if resp.events().is_empty() {
            // A progress report: every event up to its header revision has
            // been sent. (An event batch's header may be ahead of its
            // events while etcd catches a watcher up, so only this counts.)
            if let Some(h) = resp.header() {
                next = next.max(h.revision() + 1);
            }
            feeder.confirm();
        }
    }
}

/// How many phases the feeds' progress requests are spread over. Feeds of
/// one phase ask together, so their requests share writes on the
/// connection (one burst per feed cost sluice ~2 % of a core more than
/// one burst for all); a tenth of the feeds at a time is a burst short
/// enough not to delay a change noticeably.
const PROBE_SLOTS: f64 = 10.0;

/// When in the probe interval, as a fraction, the feed of `prefix` asks.
fn probe_phase(prefix: &str) -> f64 {
    (spread(prefix) * PROBE_SLOTS).floor() / PROBE_SLOTS
}

/// Where in [0, 1) `key` falls, the same in every process: FNV-1a, then
/// MurmurHash3's finalizer so that keys differing in a digit land far apart.
fn spread(key: &str) -> f64 {
    let mut h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// What woke the watch loop.
enum Wake {
    Stop,
    Probe,
    Message(Result<Option<etcd_client::WatchResponse>, etcd_client::Error>),
}

fn lost(from: i64, error: String) -> WatchEnd {
    WatchEnd::Lost { from, error }
}

#[cfg(test)]
mod tests {
    use super::{probe_phase, spread, PROBE_SLOTS};

    #[test]
    fn feeds_ask_for_progress_in_slots_spread_over_the_interval() {
        let phases: Vec<f64> = (0..1000)
            .map(|i| probe_phase(&format!("/services/svc-{i:04}/")))
            .collect();
        // Each slot of the interval gets about a tenth of the feeds, so no
        // instant carries a burst of all of them.
        for slot in 0..PROBE_SLOTS as u32 {
            let at = f64::from(slot) / PROBE_SLOTS;
            let n = phases.iter().filter(|p| **p == at).count();
            assert!((60..=140).contains(&n), "slot {slot}: {n} feeds");
        }
        assert!(phases.iter().all(|p| (0.0..1.0).contains(p)));
        assert_eq!(spread("/services/a/"), spread("/services/a/"));
    }
}
