//! Endpoint discovery: registries → one merged [`index::Index`].
//!
//! Each source (`consul`, `etcd`, `kubernetes`, `file`) runs one task per *feed* — one
//! service's watch on one registry — and only turns the registry's answers
//! into index calls through a [`Feeder`]. The index merges every feed and
//! publishes a [`index::View`]; `serve` resolves the rules against it
//! (filling each discovered service's endpoints), compiles and publishes,
//! coalescing bursts ([`coalesce`]). The [`Supervisor`] starts and stops
//! feed tasks when the rules name other feeds or other connection settings.
//!
//! ```text
//! etcd ─┐ Feeder::with(apply/delete/reset)          View
//! consul┼──────────────────────────────► Index ──(watch)──► serve: resolve → compile → publish
//! file ─┘ Feeder::fail (keeps endpoints)
//! ```

pub mod coalesce;
pub mod consul;
pub mod etcd;
mod etcd_hub;
pub mod file;
pub mod kubernetes;
pub mod metrics;
pub mod status;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sluice_core::model::{Config, ConsulSource, Discovery, EtcdSource};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use index::{FeedKey, Index, View};
pub use sluice_core::backoff::Backoff;
pub use sluice_core::discovery::{index, record, resolve};

/// The index, shared by every feed task.
pub type SharedIndex = Arc<Mutex<Index>>;

/// A feed task's handle on the index: its key, and the shutdown signal.
#[derive(Clone)]
pub struct Feeder {
    index: SharedIndex,
    pub key: FeedKey,
    pub stop: CancellationToken,
}

impl Feeder {
    pub fn new(index: SharedIndex, key: FeedKey, stop: CancellationToken) -> Feeder {
        Feeder { index, key, stop }
    }

    /// Runs `f` on the locked index; `f` must not block.
    pub fn with<R>(&self, f: impl FnOnce(&mut Index, &FeedKey) -> R) -> R {
        f(&mut self.index.lock(), &self.key)
    }

    /// The registry failed; the feed keeps its endpoints. The error and
    /// its causes ([`render`]) are logged and shown in `sluice status`.
    pub fn fail(&self, error: &(dyn Error + 'static)) {
        self.report(render(error));
    }

    /// The registry failed; the feed keeps its endpoints and tries again
    /// after the returned delay, which the error shows (`sluice status`).
    pub fn retry_after(&self, error: &(dyn Error + 'static), backoff: &mut Backoff) -> Duration {
        let delay = backoff.next_delay();
        self.report(format!("{} (retrying in {delay:?})", render(error)));
        delay
    }

    fn report(&self, error: String) {
        warn!(service = %self.key.service, source = source_name(&self.key.discovery).0, %error,
            "discovery source failing; keeping last known endpoints");
        self.with(|index, key| index.fail(key, error, Instant::now()));
    }

    pub fn confirm(&self) {
        self.with(|index, key| index.confirm(key, Instant::now()));
    }

    /// One registry entry was skipped.
    pub fn reject(&self, error: String) {
        warn!(service = %self.key.service, source = source_name(&self.key.discovery).0, %error,
            "registry entry skipped");
        self.with(|index, key| index.reject(key, error));
    }

    pub fn stopped(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// The rules name a source kind whose connection settings are missing
/// (the rules validator refuses this; the feed stays unsynced).
#[derive(Debug, thiserror::Error)]
#[error("no connection settings for this source")]
pub struct Unconfigured;

/// An error and its causes on one line, `what: cause: cause`, as logs and
/// `sluice status` show a failing feed. A cause whose text the message
/// already holds (some libraries print their cause and also return it as
/// `source`) is not repeated.
pub fn render(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// A source's kind (the `source` metric label) and what it watches.
pub fn source_name(d: &Discovery) -> (&'static str, String) {
    match d {
        Discovery::Consul { service, tag: None } => ("consul", service.clone()),
        Discovery::Consul {
            service,
            tag: Some(tag),
        } => ("consul", format!("{service} tag={tag}")),
        Discovery::Etcd { prefix } => ("etcd", prefix.clone()),
        Discovery::Kubernetes {
            namespace,
            service,
            port,
        } => ("kubernetes", format!("{namespace}/{service}:{port}")),
        Discovery::File { path } => ("file", path.clone()),
    }
}

/// Timings of the sources; tests shorten them.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// How often the file source polls.
    pub file_interval: Duration,
    /// Backoff after a registry error: doubles from `retry_min` to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// A registry request that takes longer fails the feed.
    pub request_timeout: Duration,
}

impl SourceOptions {
    /// A feed's retry delay, from `retry_min` to `retry_max`.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.retry_min, self.retry_max)
    }
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            file_interval: Duration::from_millis(300),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// The connection settings a running feed was started with: a feed is
/// restarted when they change.
#[derive(Clone, Debug, PartialEq)]
enum Settings {
    File(PathBuf),
    Etcd(Option<EtcdSource>),
    Consul(Option<ConsulSource>),
    /// The kubeconfig path (resolved against the rules directory), or
    /// `None` for kube's inference; the outer `None`: not configured.
    Kubernetes(Option<Option<PathBuf>>),
}

struct Running {
    settings: Settings,
    task: JoinHandle<()>,
}

/// Starts, restarts and stops feed tasks to match a config.
pub struct Supervisor {
    index: SharedIndex,
    /// Relative endpoints-file paths are taken from here (the rules
    /// file's directory).
    base_dir: PathBuf,
    options: SourceOptions,
    stop: CancellationToken,
    running: BTreeMap<FeedKey, Running>,
    /// One etcd connection for all etcd feeds (per endpoint list).
    etcd_clients: etcd::Clients,
}

impl Supervisor {
    pub fn new(
        index: SharedIndex,
        base_dir: PathBuf,
        options: SourceOptions,
        stop: CancellationToken,
    ) -> Supervisor {
        Supervisor {
            index,
            base_dir,
            options,
            stop,
            running: BTreeMap::new(),
            etcd_clients: etcd::Clients::default(),
        }
    }

    /// Makes the running feeds exactly those `config` needs. Feeds whose
    /// settings did not change keep running (and keep their endpoints).
    pub fn reconcile(&mut self, config: &Config) {
        let wanted: BTreeSet<FeedKey> = View::feeds_of(config);
        let settings = |key: &FeedKey| match &key.discovery {
            Discovery::File { path } => Settings::File(self.base_dir.join(path)),
            Discovery::Etcd { .. } => Settings::Etcd(config.sources.etcd.clone()),
            Discovery::Consul { .. } => Settings::Consul(config.sources.consul.clone()),
            Discovery::Kubernetes { .. } => Settings::Kubernetes(
                config
                    .sources
                    .kubernetes
                    .as_ref()
                    .map(|k| k.kubeconfig.as_ref().map(|p| self.base_dir.join(p))),
            ),
        };
        self.running.retain(|key, running| {
            let keep = wanted.contains(key) && running.settings == settings(key);
            if !keep {
                running.task.abort();
            }
            keep
        });
        // A feed restarted with new settings stays in the index with its
        // endpoints (fail-static) until the new task's first listing.
        self.index.lock().set_feeds(&wanted);
        self.etcd_clients.retain(config.sources.etcd.as_ref());
        for key in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let s = settings(&key);
            let feeder = Feeder::new(self.index.clone(), key.clone(), self.stop.clone());
            let opts = self.options.clone();
            let task = match (&s, &key.discovery) {
                (Settings::File(path), _) => {
                    tokio::spawn(file::run(feeder, path.clone(), opts.file_interval))
                }
                (Settings::Etcd(Some(src)), Discovery::Etcd { prefix }) => tokio::spawn(etcd::run(
                    feeder,
                    src.clone(),
                    prefix.clone(),
                    opts,
                    self.etcd_clients.clone(),
                )),
                (Settings::Consul(Some(src)), Discovery::Consul { service, tag }) => {
                    let query = consul::Query {
                        service: service.clone(),
                        tag: tag.clone(),
                    };
                    tokio::spawn(consul::run(feeder, src.clone(), query, opts))
                }
                (
                    Settings::Kubernetes(Some(kubeconfig)),
                    Discovery::Kubernetes {
                        namespace,
                        service,
                        port,
                    },
                ) => {
                    let target = kubernetes::Target {
                        namespace: namespace.clone(),
                        service: service.clone(),
                        port: port.clone(),
                    };
                    tokio::spawn(kubernetes::run(feeder, kubeconfig.clone(), target, opts))
                }
                _ => {
                    // The rules validator refuses these; keep the feed
                    // unsynced (not ready) rather than serve nothing.
                    feeder.fail(&Unconfigured);
                    tokio::spawn(async {})
                }
            };
            self.running.insert(key, Running { settings: s, task });
        }
    }

    /// Waits for every feed task to end (after the stop signal).
    pub async fn join(mut self) {
        for (_, running) in std::mem::take(&mut self.running) {
            let _ = running.task.await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for running in self.running.values() {
            running.task.abort();
        }
    }
}
