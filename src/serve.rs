//! `sluice serve`: wires the rules file, the compiler, the xDS server and
//! the admin listener together.
//!
//! Start-up refuses a bad rules file (nothing is served yet, so nothing can
//! be lost). After that the file is watched: a good edit is compiled and
//! published; a bad edit is logged, counted and shown in `/status`, and the
//! previous config keeps being served — zero pushes.
//!
//! Services with `discovery` get their endpoints from the discovery index:
//! the [`Supervisor`] runs one feed per (service, registry), and the
//! publisher task resolves the latest rules against the latest index view,
//! compiles and publishes, coalescing bursts ([`Coalescer`]). Nothing is
//! published — the snapshot channel stays `None`, `/readyz` answers 503 —
//! until every feed has synced once.
//!
//! Drains (`sluice drain`) are an overlay between resolution and compile:
//! the [`DrainStore`] is loaded from the state directory at start (a
//! corrupt file refuses the start), changed through the admin API, and
//! every change is coalesced and published like any other.
//!
//! The file is polled (content hash, every `watch_interval`, read only
//! when its metadata says it may have changed: `stamp`) rather than
//! watched with inotify: one file is cheap to check, and polling also
//! sees editors that replace the file and Kubernetes ConfigMap symlink swaps,
//! which inotify watches on the old inode miss. Between rules changes the
//! same poll reads the TLS listeners' certificate files (`certs`): a new
//! valid pair is published as an SDS secret update, a bad one is refused.
//!
//! A valid edit that would remove most of what a node group serves is held
//! by the mass-removal guard ([`crate::guard`]) until `sluice rules
//! confirm` releases it (the watcher answers the admin API's [`Confirm`]s),
//! and an empty file is refused at start. `plan` answers `sluice diff`.

mod certs;
mod plan;
mod stamp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::admin::{self, AdminState, CommandAuth, RulesOps};
use crate::canary::acks::Applied;
use crate::canary::overlay::{self, Overlays, WeightsVia};
use crate::canary::wiring::{self as rollouts, RolloutOptions};
use crate::digest::content_hash;
use crate::discovery::coalesce::{CoalesceConfig, Coalescer};
use crate::discovery::resolve::Resolver;
use crate::discovery::{Index, SourceOptions, Supervisor, View};
use crate::drain::store::DrainStore;
use crate::drain::Drains;
use crate::envoy_check::{EnvoyCheck, EnvoyError};
use crate::guard::{self, Guard, HeldEdit};
use crate::metrics::Metrics;
use crate::model::Config;
use crate::rules_watch::metrics::RulesMetrics;
use crate::rules_watch::{Confirm, RulesStatus};
use crate::xds::admission::Limits;
use crate::xds::metrics::PublishMetrics;
use crate::xds::registry::Registry;
use crate::xds::server::{serve_on, AdsService, Published, Shared};
use crate::xds::Snapshots;
use crate::{compile, rules, tls};

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub rules: PathBuf,
    pub xds_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub watch_interval: Duration,
    /// Where sluice keeps its state: the drain state file (`None`: beside
    /// the rules file) and rollouts (`None`: no rollout controller).
    pub state_dir: Option<PathBuf>,
    /// The rollout controller and its admin gRPC API.
    pub rollouts: RolloutOptions,
    /// The mass-removal guard's limit.
    pub guard: Guard,
    /// An Envoy binary that checks every rules file before it is served
    /// (`envoy_check`); endpoint, drain and rollout changes are not checked.
    pub validate_with_envoy: Option<PathBuf>,
}

/// Why a rules file could not be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Rules(rules::RulesError),
    /// The rules are valid but a certificate file they name is missing or
    /// bad; the watcher tries again while the rules stay the same.
    #[error(transparent)]
    Certificates(rules::RulesError),
    /// The message shows the cause (as users have always seen it), and
    /// `source` keeps it for callers that look at the chain.
    #[error("compile: {0}")]
    Compile(#[source] compile::CompileError),
    /// `--validate-with-envoy`: Envoy refused the compiled config, or could
    /// not be run.
    #[error(transparent)]
    Envoy(EnvoyError),
}

/// A rules file turned into snapshots, or why it could not be. Listener
/// certificates are read here, relative to the rules file's directory.
pub fn load(path: &std::path::Path, text: &str) -> Result<(Config, Snapshots), LoadError> {
    let mut config = rules::Options::with_lua(&crate::lua::check)
        .parse(&path.display().to_string(), text)
        .map_err(LoadError::Rules)?;
    tls::load(&mut config, &base_dir(path)).map_err(LoadError::Certificates)?;
    let snapshots = compile::compile(&config).map_err(LoadError::Compile)?;
    Ok((config, snapshots))
}

/// [`load`], then, with `--validate-with-envoy`, Envoy's own check of what
/// it compiled. Envoy runs as a child process, awaited: the runtime's
/// threads are not held, and the publisher (endpoints, drains, rollout
/// steps) goes on meanwhile.
async fn load_checked(opts: &ServeOptions, text: &str) -> Result<(Config, Snapshots), LoadError> {
    let (config, snapshots) = load(&opts.rules, text)?;
    if let Some(bin) = &opts.validate_with_envoy {
        let name = opts.rules.display().to_string();
        EnvoyCheck::new(bin)
            .check(&name, text, &snapshots)
            .await
            .map_err(LoadError::Envoy)?;
    }
    Ok((config, snapshots))
}

/// Runs until `shutdown` resolves, then closes every stream and returns.
pub async fn run(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let text = rules::read_text(&opts.rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Compiling the static form checks the rules before anything starts.
    let (config, accepted) = load_checked(&opts, &text)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Proxies that reconnect to a restarted sluice would lose everything.
    anyhow::ensure!(
        !guard::is_empty_file(&text),
        "rules file {} is empty (only whitespace or comments): refusing to serve nothing, which would remove every proxy's listeners and clusters when it connects; write `listeners: []` to serve nothing on purpose",
        opts.rules.display()
    );
    let base_dir = base_dir(&opts.rules);
    let state_dir = opts.state_dir.clone().unwrap_or_else(|| base_dir.clone());
    let drains = Arc::new(DrainStore::open(&state_dir)?);
    let drains_rx = drains.subscribe();
    if !drains.current().is_empty() {
        info!(state = %drains.path().display(), count = drains.current().iter().count(), "drains loaded");
    }

    let metrics = Arc::new(Metrics::new());
    let registry = Arc::new(Registry::default());
    let (snap_tx, snap_rx) = watch::channel(None);
    let stop = CancellationToken::new();
    let config_slot = Arc::new(Mutex::new(None));
    let rules_status = Arc::new(Mutex::new(RulesStatus {
        file: opts.rules.display().to_string(),
        served_hash: Some(content_hash(&[text.as_bytes()])),
        ..Default::default()
    }));
    certs::loaded(&mut rules_status.lock(), &config);
    let (index, view_rx) = Index::new();
    let sources = SourceOptions {
        file_interval: opts.watch_interval,
        ..Default::default()
    };
    let supervisor = Supervisor::new(
        Arc::new(Mutex::new(index)),
        base_dir.clone(),
        sources,
        stop.child_token(),
    );
    // Saved rollouts load before the first publish, so their weights are
    // in the very first snapshot (DESIGN.md invariant 7).
    let canary = rollouts::start(
        opts.state_dir.as_deref(),
        &opts.rollouts,
        registry.clone(),
        stop.child_token(),
    )
    .await?;
    // Without a rollout controller there are no rollouts, and no route to
    // arm for one.
    let weights = match opts.state_dir {
        Some(_) => opts.rollouts.weights,
        None => {
            if opts.rollouts.weights == WeightsVia::Runtime {
                warn!("--rollout-weights runtime has no effect without --state-dir (no rollouts)");
            }
            WeightsVia::Routes
        }
    };
    let mut out = Outputs {
        resolver: Resolver::default(),
        compiler: compile::Compiler::default(),
        snapshots: snap_tx,
        metrics: metrics.publish.clone(),
        config_slot: config_slot.clone(),
        applied: canary.applied.clone(),
        weights,
        overlaid: overlay::Memo::default(),
    };
    // A config without discovery is complete now: serve it from the first
    // connection, as before discovery existed.
    let empty_view = view_rx.borrow().clone();
    let current_drains = drains.current();
    let overlays = canary.overlays.borrow().clone();
    out.publish_resolved(&config, &empty_view, &current_drains, &overlays);
    let planner = plan::Planner {
        base_dir: base_dir.clone(),
        view: view_rx.clone(),
        drains: drains.clone(),
        overlays: canary.overlays.clone(),
        weights,
        served: snap_rx.clone(),
        served_config: config_slot.clone(),
        served_rules: rules_status.clone(),
        guard: opts.guard,
    };
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let (confirm_tx, confirm_rx) = tokio::sync::mpsc::channel(8);

    // A reconnect storm must wait in the accept queue, not overflow it.
    let xds_listener = crate::xds::listener::bind(opts.xds_addr)
        .with_context(|| format!("binding xDS listener {}", opts.xds_addr))?;
    let admin_listener = TcpListener::bind(opts.admin_addr)
        .await
        .with_context(|| format!("binding admin listener {}", opts.admin_addr))?;
    let xds_local = xds_listener.local_addr()?;
    let admin_local = admin_listener.local_addr()?;
    // Plain, stable lines on stdout: scripts and tests read the bound ports.
    println!("sluice: xds listening on {xds_local}");
    println!("sluice: admin listening on {admin_local}");
    println!(
        "sluice: point Envoy at it: sluice bootstrap --node-id envoy-1 --xds {xds_local} --out envoy.json && envoy -c envoy.json"
    );
    info!(xds = %xds_local, admin = %admin_local, rules = %opts.rules.display(), "sluice serving");

    let ads = AdsService::new(Shared {
        snapshots: snap_rx.clone(),
        registry: registry.clone(),
        metrics: metrics.xds.clone(),
        shutdown: stop.child_token(),
        limits: Limits::default(),
    });
    let xds = tokio::spawn(serve_on(xds_listener, ads, stop.child_token()));

    let admin_state = AdminState {
        metrics: metrics.clone(),
        registry,
        snapshots: snap_rx,
        config: config_slot.clone(),
        rules: rules_status.clone(),
        discovery: view_rx.clone(),
        drains,
        rules_ops: RulesOps {
            planner: Arc::new(move |file: &str, text: &str| planner.diff(file, text)),
            confirm: confirm_tx,
        },
        commands: CommandAuth {
            token: opts
                .rollouts
                .token
                .as_deref()
                .map(crate::canary::grpc::Auth::new),
            loopback: admin_local.ip().is_loopback(),
        },
    };
    let admin_stop = stop.child_token();
    let admin = tokio::spawn(async move {
        axum::serve(admin_listener, admin::router(admin_state))
            .with_graceful_shutdown(admin_stop.cancelled_owned())
            .await
    });

    let publisher = tokio::spawn(publish_loop(
        Inputs {
            config: config_rx,
            view: view_rx,
            drains: drains_rx,
            overlays: canary.overlays.clone(),
        },
        supervisor,
        out,
        stop.child_token(),
    ));
    let watcher = tokio::spawn(watch_rules(
        opts.clone(),
        Watched {
            config: config_tx,
            accepted,
            confirms: confirm_rx,
        },
        metrics.rules.clone(),
        rules_status,
        stop.child_token(),
    ));

    shutdown.await;
    info!("shutting down");
    stop.cancel();
    let _ = watcher.await;
    let _ = publisher.await;
    canary.join().await;
    xds.await?.context("xDS server")?;
    admin.await?.context("admin server")?;
    Ok(())
}

/// Publishes `snapshots` unless they equal what is served; returns what is
/// served afterwards.
fn publish(
    tx: &watch::Sender<Option<Arc<Published>>>,
    metrics: &PublishMetrics,
    snapshots: Snapshots,
) -> Arc<Snapshots> {
    let mut served = None;
    let changed = tx.send_if_modified(|current| {
        if let Some(p) = current.as_ref().filter(|p| *p.snapshots == snapshots) {
            served = Some(p.snapshots.clone());
            return false;
        }
        let next = Published::after(current.as_deref(), snapshots, Instant::now());
        served = Some(next.snapshots.clone());
        *current = Some(Arc::new(next));
        true
    });
    if changed {
        metrics.snapshots_published.inc();
    }
    served.unwrap_or_default()
}

/// Where the publisher's results go.
struct Outputs {
    /// Keeps the last merge of each service's endpoints.
    resolver: Resolver,
    /// Keeps the last snapshots and encoded endpoints between compiles.
    compiler: compile::Compiler,
    snapshots: watch::Sender<Option<Arc<Published>>>,
    metrics: PublishMetrics,
    config_slot: Arc<Mutex<Option<Arc<Config>>>>,
    /// Tells the rollout controller which weights were compiled into what.
    applied: watch::Sender<Option<Arc<Applied>>>,
    /// How rollout weights reach Envoy.
    weights: WeightsVia,
    /// The rollout overlay's last result.
    overlaid: overlay::Memo,
}

/// What the published config is made of; a change to any is published.
struct Inputs {
    config: watch::Receiver<Arc<Config>>,
    view: watch::Receiver<Arc<View>>,
    drains: watch::Receiver<Arc<Drains>>,
    overlays: watch::Receiver<Overlays>,
}

/// Publishes the latest rules resolved against the latest discovery view,
/// with the rollouts' weights, when the coalescer says so; starts and stops
/// feeds as the rules change.
async fn publish_loop(
    inputs: Inputs,
    mut supervisor: Supervisor,
    mut out: Outputs,
    stop: CancellationToken,
) {
    let Inputs {
        config: mut config_rx,
        view: mut view_rx,
        drains: mut drains_rx,
        overlays: mut overlay_rx,
    } = inputs;
    let mut coalescer = Coalescer::new(CoalesceConfig::default());
    supervisor.reconcile(&config_rx.borrow_and_update());
    coalescer.changed(Instant::now());
    let mut seen_view = view_rx.borrow_and_update().clone();
    let mut overlays_open = true;
    loop {
        let deadline = coalescer.deadline();
        let wake_at = deadline.map(tokio::time::Instant::from_std);
        let timer = async move {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let stopped = tokio::select! {
            _ = stop.cancelled() => true,
            changed = config_rx.changed() => {
                if changed.is_err() {
                    true
                } else {
                    supervisor.reconcile(&config_rx.borrow_and_update());
                    coalescer.changed(Instant::now());
                    false
                }
            }
            changed = view_rx.changed() => {
                let view = view_rx.borrow_and_update().clone();
                // Sync-time updates alone change nothing that is served.
                if !view.same_content(&seen_view) {
                    coalescer.changed(Instant::now());
                }
                seen_view = view;
                changed.is_err()
            }
            // Drains and rollout steps are operators' commands: one
            // change each, published without waiting for a quiet moment.
            changed = drains_rx.changed() => {
                coalescer.commanded(Instant::now());
                changed.is_err()
            }
            changed = overlay_rx.changed(), if overlays_open => {
                // Without a rollout controller the sender is gone at once:
                // that only means no overlay will ever change.
                if changed.is_ok() {
                    overlay_rx.borrow_and_update();
                    coalescer.commanded(Instant::now());
                } else {
                    overlays_open = false;
                }
                false
            }
            _ = timer => {
                let config = config_rx.borrow().clone();
                let view = view_rx.borrow().clone();
                let drains = drains_rx.borrow().clone();
                let overlays = overlay_rx.borrow().clone();
                let started = Instant::now();
                out.publish_resolved(&config, &view, &drains, &overlays);
                let ended = Instant::now();
                coalescer.published(ended, ended - started);
                false
            }
        };
        if stopped {
            break;
        }
    }
    supervisor.join().await;
}

impl Outputs {
    /// Resolves discovered endpoints, applies the drain and rollout
    /// overlays, compiles and publishes.
    fn publish_resolved(
        &mut self,
        config: &Config,
        view: &View,
        drains: &Drains,
        overlays: &Overlays,
    ) {
        let mut resolved = match self.resolver.resolve(view, config) {
            Ok(c) => c,
            Err(e) => {
                debug!(reason = %e, "not publishing: waiting for discovery sources");
                return;
            }
        };
        drains.apply(&mut resolved);
        self.overlaid.apply(overlays, &mut resolved, self.weights);
        let resolved = Arc::new(resolved);
        match self.compiler.compile(&resolved) {
            Ok(snapshots) => {
                let snapshots = publish(&self.snapshots, &self.metrics, snapshots);
                *self.config_slot.lock() = Some(resolved);
                self.metrics.ready.set(1);
                self.applied.send_replace(Some(Arc::new(Applied {
                    overlays: overlays.clone(),
                    snapshots,
                })));
            }
            Err(e) => {
                error!(error = %e, "resolved config does not compile; still serving the previous one")
            }
        }
    }
}

/// Publishes a config loaded from the rules file whose content hash is
/// `hash`.
fn accept(
    tx: &watch::Sender<Arc<Config>>,
    status: &Mutex<RulesStatus>,
    seen: &mut Seen,
    config: Config,
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
    tx.send_replace(Arc::new(config));
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

/// The directory relative file names in the rules are resolved against.
fn base_dir(rules: &std::path::Path) -> PathBuf {
    rules.parent().map(PathBuf::from).unwrap_or_default()
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
        confirms: mut confirm_rx,
    } = watched;
    let mut seen = Seen {
        hash: status.lock().served_hash.clone(),
        retry_unchanged: false,
        last_read: stamp::LastRead::default(),
        accepted,
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
    confirms: tokio::sync::mpsc::Receiver<Confirm>,
}

/// An edit the guard holds, ready to publish once confirmed.
struct Held {
    edit: HeldEdit,
    config: Config,
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
    // Taken before the read, so a write during the read changes it.
    let stamp = tokio::fs::metadata(&opts.rules)
        .await
        .ok()
        .map(|m| (stamp::Stamp::of(&m), std::time::SystemTime::now()));
    if let Some((stamp, _)) = &stamp {
        if seen.last_read.unchanged(stamp) && !seen.retry_unchanged {
            return false;
        }
    }
    let read = match tokio::fs::read(&opts.rules).await {
        Ok(bytes) => {
            rules::text_of(&opts.rules.display().to_string(), bytes).map_err(|e| e.to_string())
        }
        Err(e) => Err(format!("reading {}: {e}", opts.rules.display())),
    };
    let text = match read {
        Ok(t) => t,
        Err(msg) => {
            if status.lock().last_error.as_deref() != Some(msg.as_str()) {
                error!(error = %msg, "rules file unreadable; still serving the previous config");
                metrics.rules_reload_errors.inc();
                let mut st = status.lock();
                st.last_error = Some(msg);
                st.rejected_reloads += 1;
            }
            return false;
        }
    };
    if let Some((stamp, at)) = stamp {
        seen.last_read.read(stamp, at);
    }
    let hash = content_hash(&[text.as_bytes()]);
    let unchanged = seen.hash.as_deref() == Some(hash.as_str());
    if unchanged && !seen.retry_unchanged {
        return false;
    }
    seen.hash = Some(hash.clone());
    if !unchanged && seen.held.take().is_some() {
        // The held edit is no longer what the file says.
        status.lock().held = None;
        metrics.rules_held.set(0);
    }
    match load_checked(opts, &text).await {
        Ok((config, snapshots)) => {
            seen.retry_unchanged = false;
            if let Some(edit) = opts.guard.check(&seen.accepted, &snapshots, &hash, &text) {
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
                seen.held = Some(Held {
                    edit,
                    config,
                    snapshots,
                });
                return false;
            }
            info!(rules = %opts.rules.display(), hash, "rules reloaded");
            accept(tx, status, seen, config, snapshots, hash);
            true
        }
        Err(e) => {
            seen.retry_unchanged = matches!(
                e,
                LoadError::Certificates(_) | LoadError::Envoy(EnvoyError::Run(_))
            );
            let e = e.to_string();
            let mut st = status.lock();
            // A retry that fails as before was already reported.
            if !(unchanged && st.last_error.as_deref() == Some(e.as_str())) {
                error!(error = %e, "rules file rejected; still serving the previous config");
                metrics.rules_reload_errors.inc();
                st.last_error = Some(e);
                st.rejected_reloads += 1;
            }
            false
        }
    }
}
