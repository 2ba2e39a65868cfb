//! The rules watcher: polls the rules file and, between rules changes, the
//! listeners' certificate files; answers the admin API's [`Confirm`]s.
//!
//! A good edit is sent to the publisher; a bad edit is logged, counted and
//! shown in `/status` ([`RulesStatus`]) and the previous config keeps being
//! served. An edit the mass-removal guard ([`crate::guard`]) holds waits
//! here until `sluice rules confirm` names its version, or the file
//! changes again.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{base_dir, certs, load_checked, stamp, LoadError, Loaded, ServeOptions};
use crate::digest::content_hash;
use crate::envoy_check::EnvoyError;
use crate::guard::HeldEdit;
use crate::model::Config;
use crate::rules_watch::metrics::RulesMetrics;
use crate::rules_watch::{Confirm, RulesStatus};
use crate::xds::Snapshots;
use crate::{compile, rules, tls};

/// The watcher, built around the config `serve` started with;
/// [`spawn`](Self::spawn) runs it.
pub(super) struct RulesWatcher {
    opts: ServeOptions,
    watched: Watched,
    metrics: RulesMetrics,
    status: Arc<Mutex<RulesStatus>>,
    confirms: mpsc::Sender<Confirm>,
}

impl RulesWatcher {
    /// `config` (compiled statically to `accepted`) was read from `text`.
    pub fn new(
        opts: &ServeOptions,
        text: &str,
        loaded: Loaded,
        metrics: RulesMetrics,
    ) -> RulesWatcher {
        let Loaded {
            config,
            snapshots: accepted,
            compiler,
        } = loaded;
        let mut status = RulesStatus {
            file: opts.rules.display().to_string(),
            served_hash: Some(content_hash(&[text.as_bytes()])),
            ..Default::default()
        };
        certs::loaded(&mut status, &config);
        let (confirms, confirm_rx) = mpsc::channel(8);
        RulesWatcher {
            opts: opts.clone(),
            watched: Watched {
                config: watch::channel(config).0,
                accepted,
                compiler,
                confirms: confirm_rx,
            },
            metrics,
            status: Arc::new(Mutex::new(status)),
            confirms,
        }
    }

    /// The accepted config, for the publisher.
    pub fn config(&self) -> watch::Receiver<Arc<Config>> {
        self.watched.config.subscribe()
    }

    /// What `/status` shows of the rules file.
    pub fn status(&self) -> Arc<Mutex<RulesStatus>> {
        self.status.clone()
    }

    /// Where the admin API sends `sluice rules confirm`.
    pub fn confirms(&self) -> mpsc::Sender<Confirm> {
        self.confirms.clone()
    }

    /// Polls every `watch_interval` until `stop` is cancelled.
    pub fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        // Only the admin API's senders keep the confirm channel open.
        let RulesWatcher {
            opts,
            watched,
            metrics,
            status,
            confirms: _,
        } = self;
        tokio::spawn(watch_rules(opts, watched, metrics, status, stop))
    }
}

/// Publishes a config loaded from the rules file whose content hash is
/// `hash`.
fn accept(
    tx: &watch::Sender<Arc<Config>>,
    status: &Mutex<RulesStatus>,
    seen: &mut Seen,
    config: Arc<Config>,
    snapshots: Snapshots,
    hash: String,
) {
    {
        let mut st = status.lock();
        certs::loaded(&mut st, &config);
        st.served_hash = Some(hash);
        st.last_error = None;
        st.held = None;
        st.reloads += 1;
    }
    seen.accepted = snapshots;
    tx.send_replace(config);
}

/// Publishes the held edit if it is `version`; else says why not.
fn confirm(
    version: &str,
    tx: &watch::Sender<Arc<Config>>,
    metrics: &RulesMetrics,
    status: &Mutex<RulesStatus>,
    seen: &mut Seen,
) -> Result<(), String> {
    let held = match seen.held.take() {
        Some(h) if h.edit.version == version => h,
        other => {
            let why = match &other {
                Some(h) => format!("the held edit is version {}, not {version}", h.edit.version),
                None => format!("no edit is held (asked to confirm {version})"),
            };
            seen.held = other;
            return Err(why);
        }
    };
    warn!(version, removes = %held.edit.summary(), "held rules edit confirmed; publishing it");
    metrics.rules_held.set(0);
    accept(
        tx,
        status,
        seen,
        held.config,
        held.snapshots,
        held.edit.version,
    );
    Ok(())
}

/// Polls the rules file and, between rules changes, the listeners'
/// certificate files.
async fn watch_rules(
    opts: ServeOptions,
    watched: Watched,
    metrics: RulesMetrics,
    status: Arc<Mutex<RulesStatus>>,
    stop: CancellationToken,
) {
    let Watched {
        config: tx,
        accepted,
        compiler,
        confirms: mut confirm_rx,
    } = watched;
    let mut seen = Seen {
        hash: status.lock().served_hash.clone(),
        retry_unchanged: false,
        last_read: stamp::LastRead::default(),
        accepted,
        compiler,
        held: None,
    };
    let mut rotation = tls::Rotation::default();
    let base = base_dir(&opts.rules);
    let mut tick = tokio::time::interval(opts.watch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Some(asked) = confirm_rx.recv() => {
                let answer = confirm(&asked.version, &tx, &metrics, &status, &mut seen);
                let _ = asked.reply.send(answer);
                continue;
            }
            _ = tick.tick() => {}
        }
        if !reload_rules(&opts, &tx, &metrics, &status, &mut seen).await {
            certs::poll(&base, &tx, &mut rotation, &metrics, &status);
        }
    }
}

/// What the rules watcher works on.
struct Watched {
    /// The accepted config, to the publisher.
    config: watch::Sender<Arc<Config>>,
    /// The static compile of the config `config` holds.
    accepted: Snapshots,
    /// What compiled it.
    compiler: compile::Compiler,
    confirms: mpsc::Receiver<Confirm>,
}

/// An edit the guard holds, ready to publish once confirmed.
struct Held {
    edit: HeldEdit,
    config: Arc<Config>,
    snapshots: Snapshots,
}

/// What the rules watcher last read.
struct Seen {
    /// Content hash of the rules file last loaded (or rejected).
    hash: Option<String>,
    /// The last load failed on something outside the rules' text — a
    /// certificate file (it may appear later) or an Envoy that gave no
    /// verdict: try again even though the rules did not change.
    retry_unchanged: bool,
    /// The file's metadata when it was last read, to skip unchanged reads.
    last_read: stamp::LastRead,
    /// The static compile of the accepted config: what the guard compares
    /// an edit with (listener and cluster names do not depend on
    /// endpoints, drains or rollouts).
    accepted: Snapshots,
    /// Compiles each load, keeping what it compiled for the next (an edit
    /// compiles the routes it changed alone).
    compiler: compile::Compiler,
    /// The edit the guard holds, if any; dropped when the file changes.
    held: Option<Held>,
}

/// Loads the rules file if its content changed (or its certificates were
/// missing); true when a new config was sent (its certificates were read
/// with it).
async fn reload_rules(
    opts: &ServeOptions,
    tx: &watch::Sender<Arc<Config>>,
    metrics: &RulesMetrics,
    status: &Mutex<RulesStatus>,
    seen: &mut Seen,
) -> bool {
    let Some(Changed {
        text,
        hash,
        unchanged,
    }) = read_changed(opts, metrics, status, seen).await
    else {
        return false;
    };
    let started = std::time::Instant::now();
    let loaded = load_checked(opts, &text, &mut seen.compiler).await;
    metrics
        .rules_load_seconds
        .observe(started.elapsed().as_secs_f64());
    match loaded {
        Ok((config, snapshots)) => {
            seen.retry_unchanged = false;
            if let Some(edit) = opts.guard.check(&seen.accepted, &snapshots, &hash, &text) {
                let held = Held {
                    edit,
                    config,
                    snapshots,
                };
                hold(opts, metrics, status, seen, held);
                return false;
            }
            info!(rules = %opts.rules.display(), hash, "rules reloaded");
            accept(tx, status, seen, config, snapshots, hash);
            true
        }
        Err(e) => {
            reject(metrics, status, seen, e, unchanged);
            false
        }
    }
}

/// The rules file's text, when it should be loaded.
struct Changed {
    text: String,
    hash: String,
    /// Its content is what was last loaded: this is a retry.
    unchanged: bool,
}

/// Reads the rules file unless its metadata and then its content say it
/// is what was last loaded (and no retry is due). A changed file drops the
/// held edit.
async fn read_changed(
    opts: &ServeOptions,
    metrics: &RulesMetrics,
    status: &Mutex<RulesStatus>,
    seen: &mut Seen,
) -> Option<Changed> {
    // Taken before the read, so a write during the read changes it.
    let stamp = tokio::fs::metadata(&opts.rules)
        .await
        .ok()
        .map(|m| (stamp::Stamp::of(&m), std::time::SystemTime::now()));
    if let Some((stamp, _)) = &stamp {
        if seen.last_read.unchanged(stamp) && !seen.retry_unchanged {
            return None;
        }
    }
    let text = read_text(opts, metrics, status).await?;
    if let Some((stamp, at)) = stamp {
        seen.last_read.read(stamp, at);
    }
    let hash = content_hash(&[text.as_bytes()]);
    let unchanged = seen.hash.as_deref() == Some(hash.as_str());
    if unchanged && !seen.retry_unchanged {
        return None;
    }
    seen.hash = Some(hash.clone());
    if !unchanged && seen.held.take().is_some() {
        // The held edit is no longer what the file says.
        status.lock().held = None;
        metrics.rules_held.set(0);
    }
    Some(Changed {
        text,
        hash,
        unchanged,
    })
}

/// The rules file's text; `None` (reported once per distinct error) when
/// it cannot be read.
async fn read_text(
    opts: &ServeOptions,
    metrics: &RulesMetrics,
    status: &Mutex<RulesStatus>,
) -> Option<String> {
    let read = match tokio::fs::read(&opts.rules).await {
        Ok(bytes) => {
            rules::text_of(&opts.rules.display().to_string(), bytes).map_err(|e| e.to_string())
        }
        Err(e) => Err(format!("reading {}: {e}", opts.rules.display())),
    };
    match read {
        Ok(t) => Some(t),
        Err(msg) => {
            if status.lock().last_error.as_deref() != Some(msg.as_str()) {
                error!(error = %msg, "rules file unreadable; still serving the previous config");
                metrics.rules_reload_errors.inc();
                let mut st = status.lock();
                st.last_error = Some(msg);
                st.rejected_reloads += 1;
            }
            None
        }
    }
}

/// Keeps a valid edit the guard stopped until it is confirmed.
fn hold(
    opts: &ServeOptions,
    metrics: &RulesMetrics,
    status: &Mutex<RulesStatus>,
    seen: &mut Seen,
    held: Held,
) {
    let edit = &held.edit;
    warn!(
        rules = %opts.rules.display(),
        version = %edit.version,
        removes = %edit.summary(),
        "rules edit HELD by the mass-removal guard; still serving the previous config; publish it with `sluice rules confirm {}`",
        edit.version
    );
    metrics.rules_held.set(1);
    metrics.rules_held_total.inc();
    status.lock().held = Some(edit.clone());
    seen.held = Some(held);
}

/// Reports a rules file that did not load; a retry that fails as before
/// (`unchanged`) was already reported.
fn reject(
    metrics: &RulesMetrics,
    status: &Mutex<RulesStatus>,
    seen: &mut Seen,
    e: LoadError,
    unchanged: bool,
) {
    seen.retry_unchanged = matches!(
        e,
        LoadError::Certificates(_) | LoadError::Envoy(EnvoyError::Run(_))
    );
    let e = e.to_string();
    let mut st = status.lock();
    if !(unchanged && st.last_error.as_deref() == Some(e.as_str())) {
        error!(error = %e, "rules file rejected; still serving the previous config");
        metrics.rules_reload_errors.inc();
        st.last_error = Some(e);
        st.rejected_reloads += 1;
    }
}
