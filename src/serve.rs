//! `sluice serve`: composes the components that serve a rules file.
//!
//! [`run`] loads and checks the rules file (a bad or empty file refuses the
//! start: nothing is served yet, so nothing can be lost), then builds each
//! component, which builds its own channels and exposes typed handles the
//! others take:
//!
//! - the rules watcher (`watcher`) polls the rules file and its
//!   certificates and hands each accepted config to the publisher; it
//!   holds edits the mass-removal guard stops until `sluice rules confirm`;
//! - the discovery supervisor (`discovery`) runs one feed per (service,
//!   registry) into the index, whose view the publisher reads;
//! - the rollout controller ([`crate::canary::wiring`]) loads saved
//!   rollouts before the first publish and hands the publisher their
//!   weights;
//! - the compiler/publisher (`publisher`) resolves the rules against the
//!   view, applies drains and rollout weights, compiles and publishes the
//!   snapshots, coalescing bursts; nothing is published (`/readyz` answers
//!   503) until every feed has synced once;
//! - the xDS server and the admin API (`listeners`) serve what is
//!   published and what each component reports.
//!
//! Shutdown is one [`CancellationToken`]: each component runs on a child
//! of it (so one could be stopped alone), every task and stream selects on
//! it, and [`run`] cancels it when its `shutdown` future resolves, then
//! joins the components in the order their outputs are consumed: the
//! rules watcher, the publisher (with its feeds), the rollout controller,
//! and last the two servers, whose streams end on the same token.
//!
//! `plan` answers `sluice diff`; `certs` and `stamp` serve the watcher.

mod certs;
mod discovery;
mod listeners;
mod plan;
mod publisher;
mod stamp;
mod watcher;
pub mod xds_tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::{AdminState, CommandAuth, RulesOps};
use crate::canary::overlay::WeightsVia;
use crate::canary::wiring::{self as rollouts, RolloutOptions};
use crate::discovery::View;
use crate::drain::store::DrainStore;
use crate::envoy_check::{EnvoyCheck, EnvoyError};
use crate::guard::{self, Guard};
use crate::ha::{self, HaOptions, HaStatus};
use crate::metrics::Metrics;
use crate::model::Config;
use crate::xds::registry::Registry;
use crate::xds::server::{ConnLimits, StreamSecurity};
use crate::xds::transport::TlsConfigs;
use crate::xds::Snapshots;
use crate::{compile, rules, tls};
use discovery::Discovery;
use listeners::{AdminServer, XdsSecurity, XdsServer};
use publisher::{Inputs, Publisher};
use watcher::RulesWatcher;

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub rules: PathBuf,
    pub xds_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub watch_interval: Duration,
    /// Where sluice keeps its state: the drain state file (`None`: beside
    /// the rules file) and rollouts (`None`: no rollout controller).
    pub state_dir: Option<PathBuf>,
    /// Rollouts and drains in etcd, shared by several replicas, with a
    /// leader running the rollouts (`--state-etcd`; instead of
    /// `state_dir`).
    pub ha: Option<HaOptions>,
    /// The rollout controller and its admin gRPC API.
    pub rollouts: RolloutOptions,
    /// The mass-removal guard's limit.
    pub guard: Guard,
    /// An Envoy binary that checks every rules file before it is served
    /// (`envoy_check`); endpoint, drain and rollout changes are not checked.
    pub validate_with_envoy: Option<PathBuf>,
    /// Drain xDS connections after about this long (`None`: never).
    pub xds_max_connection_age: Option<Duration>,
    /// TLS and authentication on the xDS port.
    pub xds_security: XdsSecurityOptions,
}

/// TLS and authentication on the xDS port (docs/security.md).
#[derive(Clone, Debug, Default)]
pub struct XdsSecurityOptions {
    /// `--xds-tls-cert`, `--xds-tls-key`, `--xds-client-ca`.
    pub tls: Option<xds_tls::XdsTlsFiles>,
    /// `--xds-insecure`: plaintext off loopback is allowed, and secrets
    /// are sent to unauthenticated streams.
    pub insecure: bool,
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
    let config = rules::Options::with_lua(&sluice_sim::lua::check)
        .parse(&path.display().to_string(), text)
        .map_err(LoadError::Rules)?;
    compiled(path, config)
}

/// [`load`] of text the caller has no further use for (`sluice validate`
/// without `--envoy`): the text is freed before the model is built (see
/// [`rules::Options::parse_owned`]).
pub fn load_owned(path: &std::path::Path, text: String) -> Result<(Config, Snapshots), LoadError> {
    let config = rules::Options::with_lua(&sluice_sim::lua::check)
        .parse_owned(&path.display().to_string(), text)
        .map_err(LoadError::Rules)?;
    compiled(path, config)
}

/// `config` with its listener certificates read, and its snapshots.
fn compiled(path: &std::path::Path, mut config: Config) -> Result<(Config, Snapshots), LoadError> {
    tls::load(&mut config, &base_dir(path)).map_err(LoadError::Certificates)?;
    let snapshots = compile::compile(&config).map_err(LoadError::Compile)?;
    Ok((config, snapshots))
}

/// [`load`], then, with `--validate-with-envoy`, Envoy's own check of what
/// it compiled. Envoy runs as a child process, awaited: the runtime's
/// threads are not held, and the publisher (endpoints, drains, rollout
/// steps) goes on meanwhile.
///
/// `compiler` keeps what it compiled from one load to the next, so that an
/// edit of a few routes among thousands compiles those alone (B8).
async fn load_checked(
    opts: &ServeOptions,
    text: &str,
    compiler: &mut compile::Compiler,
) -> Result<(Arc<Config>, Snapshots), LoadError> {
    let path = &opts.rules;
    let mut config = rules::Options::with_lua(&sluice_sim::lua::check)
        .parse(&path.display().to_string(), text)
        .map_err(LoadError::Rules)?;
    tls::load(&mut config, &base_dir(path)).map_err(LoadError::Certificates)?;
    let config = Arc::new(config);
    let snapshots = compiler.compile(&config).map_err(LoadError::Compile)?;
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
    let (text, loaded) = read_rules(&opts).await?;
    let stop = CancellationToken::new();
    // A start that fails half way, or a caller that drops this future,
    // stops whatever was already started.
    let _stop_on_drop = stop.clone().drop_guard();
    let running = Running::start(opts, &text, loaded, &stop).await?;
    shutdown.await;
    info!("shutting down");
    stop.cancel();
    running.join().await
}

/// The rules file as `serve` starts with it, compiled (and checked by
/// Envoy when asked); an error refuses the start.
async fn read_rules(opts: &ServeOptions) -> anyhow::Result<(String, Loaded)> {
    let text = rules::read_text(&opts.rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Compiling the static form checks the rules before anything starts.
    let mut compiler = compile::Compiler::default();
    let (config, snapshots) = load_checked(opts, &text, &mut compiler)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let loaded = Loaded {
        config,
        snapshots,
        compiler,
    };
    // Proxies that reconnect to a restarted sluice would lose everything.
    anyhow::ensure!(
        !guard::is_empty_file(&text),
        "rules file {} is empty (only whitespace or comments): refusing to serve nothing, which would remove every proxy's listeners and clusters when it connects; write `listeners: []` to serve nothing on purpose",
        opts.rules.display()
    );
    Ok((text, loaded))
}

/// The rules file as `serve` started with it.
struct Loaded {
    config: Arc<Config>,
    /// The static compile of `config`.
    snapshots: Snapshots,
    /// What compiled it, for the rules watcher's next load.
    compiler: compile::Compiler,
}

/// The drain store, loaded from the state directory (or beside the rules
/// file); a corrupt file refuses the start.
fn open_drains(opts: &ServeOptions) -> anyhow::Result<Arc<DrainStore>> {
    let state_dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| base_dir(&opts.rules));
    let drains = Arc::new(DrainStore::open(&state_dir)?);
    log_drains(&drains);
    Ok(drains)
}

fn log_drains(drains: &DrainStore) {
    if !drains.current().is_empty() {
        info!(state = %drains.describe(), count = drains.current().iter().count(), "drains loaded");
    }
}

/// How rollout weights reach Envoy. Without a rollout controller there are
/// no rollouts, and no route to arm for one.
fn weights_via(opts: &ServeOptions) -> WeightsVia {
    if opts.state_dir.is_some() || opts.ha.is_some() {
        return opts.rollouts.weights;
    }
    if opts.rollouts.weights == WeightsVia::Runtime {
        warn!("--rollout-weights runtime has no effect without --state-dir or --state-etcd (no rollouts)");
    }
    WeightsVia::Routes
}

/// Plain, stable lines on stdout: scripts and tests read the bound ports.
fn announce(opts: &ServeOptions, xds: SocketAddr, admin: SocketAddr) {
    println!("sluice: xds listening on {xds}");
    println!("sluice: admin listening on {admin}");
    println!(
        "sluice: point Envoy at it: sluice bootstrap --node-id envoy-1 --xds {xds} --out envoy.json && envoy -c envoy.json"
    );
    info!(xds = %xds, admin = %admin, rules = %opts.rules.display(), "sluice serving");
}

/// The components that make what is served, built and published once;
/// the listeners serve their handles.
struct Core {
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    drains: Arc<DrainStore>,
    /// The discovery index's view.
    view: watch::Receiver<Arc<View>>,
    weights: WeightsVia,
    watcher: RulesWatcher,
    rollouts: rollouts::Started,
    publisher: Publisher,
    /// With `--state-etcd`: the replicas and who leads.
    ha: Option<watch::Receiver<HaStatus>>,
}

impl Core {
    /// Builds the rules watcher, the discovery supervisor, the rollout
    /// controller and the publisher, which publishes once; the tasks they
    /// start run on children of `stop`.
    async fn build(
        opts: &ServeOptions,
        text: &str,
        loaded: Loaded,
        tls: Option<watch::Receiver<Arc<TlsConfigs>>>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Core> {
        let metrics = Arc::new(Metrics::new());
        let registry = Arc::new(Registry::default());
        // Saved rollouts load before the first publish, so their weights are
        // in the very first snapshot (DESIGN.md invariant 7); so do drains.
        let (drains, rollouts, ha) = match &opts.ha {
            None => {
                let drains = open_drains(opts)?;
                let dir = opts.state_dir.as_deref();
                let rollouts = rollouts::start(
                    dir,
                    &opts.rollouts,
                    registry.clone(),
                    tls,
                    stop.child_token(),
                )
                .await?;
                (drains, rollouts, None)
            }
            Some(ha_opts) => {
                let started = ha::start(
                    ha_opts,
                    &opts.rollouts,
                    registry.clone(),
                    tls,
                    metrics.ha.clone(),
                    stop.child_token(),
                )
                .await?;
                log_drains(&started.drains);
                (started.drains, started.rollouts, Some(started.status))
            }
        };
        let watcher = RulesWatcher::new(opts, text, loaded, metrics.rules.clone());
        let base = base_dir(&opts.rules);
        let discovery = Discovery::new(base, opts.watch_interval, stop.child_token());
        let weights = weights_via(opts);
        let inputs = Inputs {
            config: watcher.config(),
            view: discovery.view.clone(),
            drains: drains.subscribe(),
            overlays: rollouts.overlays.clone(),
        };
        let applied = rollouts.applied.clone();
        let publisher = Publisher::new(
            inputs,
            discovery.supervisor,
            metrics.publish.clone(),
            applied,
            weights,
        );
        Ok(Core {
            metrics,
            registry,
            drains,
            view: discovery.view,
            weights,
            watcher,
            rollouts,
            publisher,
            ha,
        })
    }

    /// What the admin API on `admin_local` reads and commands.
    fn admin_state(&self, opts: &ServeOptions, admin_local: SocketAddr) -> AdminState {
        let planner = plan::Planner {
            base_dir: base_dir(&opts.rules),
            view: self.view.clone(),
            drains: self.drains.clone(),
            overlays: self.rollouts.overlays.clone(),
            weights: self.weights,
            served: self.publisher.snapshots(),
            served_config: self.publisher.served_config(),
            served_rules: self.watcher.status(),
            guard: opts.guard,
        };
        let auth = opts.rollouts.token.as_deref();
        AdminState {
            metrics: self.metrics.clone(),
            registry: self.registry.clone(),
            snapshots: self.publisher.snapshots(),
            config: self.publisher.served_config(),
            rules: self.watcher.status(),
            discovery: self.view.clone(),
            drains: self.drains.clone(),
            rules_ops: RulesOps {
                planner: Arc::new(move |file: &str, text: &str| planner.diff(file, text)),
                confirm: self.watcher.confirms(),
            },
            commands: CommandAuth {
                token: auth.map(crate::canary::grpc::Auth::new),
                loopback: admin_local.ip().is_loopback(),
            },
            ha: self.ha.clone(),
            rollouts: self.rollouts.handle.clone(),
        }
    }
}

/// The components' running tasks.
struct Running {
    watcher: JoinHandle<()>,
    publisher: JoinHandle<()>,
    rollouts: rollouts::Started,
    xds: JoinHandle<()>,
    /// Rereads the xDS TLS files (with TLS only).
    tls_watch: Option<JoinHandle<()>>,
    admin: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Builds every component, binds the listeners, announces them and
    /// starts serving; each component runs on a child of `stop`.
    async fn start(
        opts: ServeOptions,
        text: &str,
        loaded: Loaded,
        stop: &CancellationToken,
    ) -> anyhow::Result<Running> {
        // A bad certificate stops the start before anything is bound.
        let tls = match &opts.xds_security.tls {
            Some(files) => {
                let configs = files.load().context("--xds-tls-cert")?;
                Some((files.clone(), watch::channel(Arc::new(configs))))
            }
            None => None,
        };
        let tls_rx = tls.as_ref().map(|(_, (_, rx))| rx.clone());
        let core = Core::build(&opts, text, loaded, tls_rx.clone(), stop).await?;
        let xds = XdsServer::bind(opts.xds_addr)?;
        let admin = AdminServer::bind(opts.admin_addr).await?;
        let admin_local = admin.local_addr()?;
        announce(&opts, xds.local_addr()?, admin_local);
        let admin_state = core.admin_state(&opts, admin_local);
        let Core {
            metrics,
            registry,
            watcher,
            rollouts,
            publisher,
            ..
        } = core;
        let snapshots = publisher.snapshots();
        let tls_watch = tls.map(|(files, (tx, _))| {
            xds_tls::watch_files(files, tx, metrics.xds.clone(), stop.child_token())
        });
        let security = XdsSecurity {
            tls: tls_rx,
            stream: StreamSecurity {
                client_ca: opts
                    .xds_security
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.client_ca.is_some()),
                insecure: opts.xds_security.insecure,
            },
        };
        Ok(Running {
            xds: xds.spawn(
                snapshots,
                registry,
                metrics.xds.clone(),
                security,
                ConnLimits {
                    max_age: opts.xds_max_connection_age,
                },
                stop.child_token(),
            ),
            tls_watch,
            admin: admin.spawn(admin_state, stop.child_token()),
            publisher: publisher.spawn(stop.child_token()),
            watcher: watcher.spawn(stop.child_token()),
            rollouts,
        })
    }

    /// Waits for every component to end (after the token is cancelled):
    /// the inputs first, the servers last.
    async fn join(self) -> anyhow::Result<()> {
        let _ = self.watcher.await;
        let _ = self.publisher.await;
        self.rollouts.join().await;
        if let Some(task) = self.tls_watch {
            let _ = task.await;
        }
        self.xds.await.context("xDS server")?;
        self.admin.await?.context("admin server")?;
        Ok(())
    }
}

/// The directory relative file names in the rules are resolved against.
fn base_dir(rules: &std::path::Path) -> PathBuf {
    rules.parent().map(PathBuf::from).unwrap_or_default()
}
