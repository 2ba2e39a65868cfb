//! Rollout test helpers: a sluice with the controller on, the `sluice
//! rollout` CLI, and simulated traffic whose Envoy-format stats the
//! controller reads like an Envoy admin `/stats` page.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::sim::backend::{BackendSpec, Backends};
use sluice::sim::client::Faults;
use sluice::sim::engine::{Engine, SimProxy};
use sluice::sim::fleet::{Fleet, FleetConfig};
use sluice::sim::route::Request;
use sluice::sim::state::Mode;
use sluice::sim::stats::Stats;

use super::{eventually, Sluice, WAIT};

pub const TOKEN: &str = "test-token-0123456789";

/// A state dir and a token file that outlive sluice restarts.
pub struct ControllerFiles {
    pub dir: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub token_file: PathBuf,
}

impl ControllerFiles {
    pub fn new() -> ControllerFiles {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
        ControllerFiles {
            dir,
            state_dir,
            token_file,
        }
    }

    /// Starts sluice with the controller, reading metrics from `stats`.
    pub fn sluice(&self, rules: &Path, xds: &str, stats: &[SocketAddr]) -> Sluice {
        self.sluice_with(rules, xds, stats, &[])
    }

    /// [`ControllerFiles::sluice`] with more arguments.
    pub fn sluice_with(
        &self,
        rules: &Path,
        xds: &str,
        stats: &[SocketAddr],
        extra: &[&str],
    ) -> Sluice {
        let mut args: Vec<String> = vec![
            "--state-dir".into(),
            self.state_dir.display().to_string(),
            "--admin-grpc".into(),
            "127.0.0.1:0".into(),
            "--admin-token-file".into(),
            self.token_file.display().to_string(),
        ];
        for s in stats {
            args.push("--metrics-envoy-admin".into());
            args.push(s.to_string());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let s = Sluice::start_with(rules, xds, &args);
        assert!(
            s.admin_grpc.is_some(),
            "sluice did not print its admin gRPC address"
        );
        s
    }

    pub fn saved(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state_dir.join("rollouts.json")).expect("state");
        serde_json::from_str(&text).expect("state json")
    }
}

impl Default for ControllerFiles {
    fn default() -> Self {
        Self::new()
    }
}

/// The canary subset's one backend in [`RULES`].
pub const CANARY: &str = "127.0.0.1:8082";

pub fn canary_addr() -> SocketAddr {
    CANARY.parse().expect("addr")
}

/// sluice with the controller, a fleet of 3 simulated proxies, and
/// simulated traffic through them whose stats the controller reads.
pub struct Setup {
    pub files: ControllerFiles,
    pub rules: PathBuf,
    pub sluice: Sluice,
    pub fleet: Arc<Fleet>,
    pub traffic: Traffic,
}

impl Setup {
    /// Traffic of plain requests, the canary answering `error_rate` 503s;
    /// `stats` overrides where the controller reads metrics.
    pub async fn start(error_rate: f64, stats: Option<SocketAddr>) -> Setup {
        let canary = canary_addr();
        Setup::start_with(stats, move |f, seed| {
            route(f, backends(canary, error_rate), 200, seed)
        })
        .await
    }

    /// [`Setup::start`] with sluice moving weights through its RTDS layer
    /// (`--rollout-weights runtime`).
    pub async fn start_runtime(error_rate: f64) -> Setup {
        let canary = canary_addr();
        Setup::start_full(None, &["--rollout-weights", "runtime"], move |f, seed| {
            route(f, backends(canary, error_rate), 200, seed)
        })
        .await
    }

    /// Traffic of whatever `batch` routes.
    pub async fn start_with(
        stats: Option<SocketAddr>,
        batch: impl Fn(&Fleet, u64) -> Stats + Send + 'static,
    ) -> Setup {
        Setup::start_full(stats, &[], batch).await
    }

    /// [`Setup::start_with`], with more arguments for `sluice serve`.
    pub async fn start_full(
        stats: Option<SocketAddr>,
        serve_args: &[&str],
        batch: impl Fn(&Fleet, u64) -> Stats + Send + 'static,
    ) -> Setup {
        let files = ControllerFiles::new();
        let rules = files.dir.path().join("rules.yaml");
        std::fs::write(&rules, RULES).expect("rules");
        // The fleet needs sluice's address and the traffic needs the fleet,
        // while sluice needs the traffic's stats address: bind the stats
        // server first through a fleet that connects once sluice is up.
        // Below the ephemeral range: a port bound and released there can
        // be taken by any outgoing connection (the fleet's own, retrying
        // before sluice listens) before sluice binds it.
        let xds = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
        let fleet = Arc::new(sim_fleet(&xds.to_string(), "sim", 3, Faults::default()));
        let traffic = Traffic::start(fleet.clone(), batch).await;
        let sluice = files.sluice_with(
            &rules,
            &xds.to_string(),
            &[stats.unwrap_or(traffic.stats_addr)],
            serve_args,
        );
        fleet
            .wait_all(WAIT, |r| r.view.listeners.contains_key("http"))
            .await
            .expect("fleet configured");
        Setup {
            files,
            rules,
            sluice,
            fleet,
            traffic,
        }
    }

    pub fn cli(&self, args: &[&str]) -> Run {
        cli(&self.sluice, Some(&self.files.token_file), args)
    }

    /// `sluice rollout status web --output json`.
    pub fn status(&self) -> serde_json::Value {
        self.cli(&["status", "web", "--output", "json"]).json()
    }

    pub async fn wait(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_status(&self.sluice, &self.files.token_file, "web", what, done).await
    }

    /// Waits until every proxy routes all plain traffic to `cluster`.
    pub async fn all_to(&self, cluster: &str) {
        eventually(&format!("all traffic on {cluster}"), || async {
            let s = route(&self.fleet, backends(canary_addr(), 0.0), 600, 7);
            s.by_cluster.len() == 1 && s.by_cluster.get(cluster) == Some(&600)
        })
        .await;
    }

    /// The canary weights the history says were applied, in order.
    pub fn steps_applied(&self) -> Vec<String> {
        steps_in(&self.cli(&["history", "web", "--output", "json"]).json())
    }

    /// `sluice rollout history web`, as text.
    pub fn history(&self) -> String {
        self.cli(&["history", "web"]).stdout
    }

    /// Routes `n` of `request` through the fleet now: answers by cluster
    /// and by status.
    pub fn send(&self, n: usize, request: fn() -> Request) -> Stats {
        route_requests(&self.fleet, backends(canary_addr(), 0.0), n, 5, |_| {
            request()
        })
    }

    /// More proxies on this sluice, outside the traffic (e.g. faulty ones).
    pub fn extra_fleet(&self, prefix: &str, proxies: usize, faults: Faults) -> Fleet {
        sim_fleet(&self.sluice.xds.to_string(), prefix, proxies, faults)
    }

    /// More proxies whose bootstrap has no RTDS layer (not one `sluice
    /// bootstrap` wrote), outside the traffic.
    pub fn extra_fleet_without_rtds(&self, prefix: &str, proxies: usize) -> Fleet {
        Fleet::start(&FleetConfig {
            xds: self.sluice.xds.to_string(),
            proxies,
            mode: Mode::Sotw,
            group: "default".into(),
            node_prefix: prefix.into(),
            faults: Faults::default(),
            runtime_layer: None,
            security: Default::default(),
        })
    }
}

/// Simulated proxies set up as `sluice bootstrap` sets Envoy up: with
/// sluice's RTDS layer, whichever way sluice moves rollout weights.
pub fn sim_fleet(xds: &str, prefix: &str, proxies: usize, faults: Faults) -> Fleet {
    Fleet::start(&FleetConfig {
        xds: xds.to_string(),
        proxies,
        mode: Mode::Sotw,
        group: "default".into(),
        node_prefix: prefix.into(),
        faults,
        runtime_layer: Some(sluice::model::RUNTIME_LAYER.to_string()),
        security: Default::default(),
    })
}

/// The `start web --to canary` command line with the thresholds most
/// tests use (1 % errors, p99 500 ms, JSON output), then `extra`.
pub fn start_command<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "start",
        "web",
        "--to",
        "canary",
        "--max-error-rate",
        "1%",
        "--max-p99",
        "500ms",
        "--output",
        "json",
    ];
    a.extend_from_slice(extra);
    a
}

/// The canary weights a `history --output json` says were applied, in
/// order.
pub fn steps_in(history: &serde_json::Value) -> Vec<String> {
    let mut seen = vec![];
    for e in history["events"].as_array().expect("events") {
        let m = e["message"].as_str().unwrap_or_default();
        if let Some(rest) = m.split("canary ").nth(1).filter(|_| m.starts_with("step ")) {
            seen.push(rest.trim_end_matches('%').to_string());
        }
    }
    seen
}

/// A status that says the rollout ended.
pub fn done(v: &serde_json::Value) -> bool {
    v["done"] == true
}

/// A user's request: no tester header.
pub fn plain() -> Request {
    Request::get("x", "/")
}

/// Where the first proxy of `fleet` sends a plain request, once it routes
/// one: the cluster specifier of its route.
pub fn plain_clusters(fleet: &Fleet) -> Option<sluice::sim::route::Clusters> {
    use sluice::sim::route::Action;
    let view = fleet.reports().first()?.view.clone();
    view.routes.values().find_map(|t| match t.route(&plain()) {
        Ok(r) => match &r.action {
            Action::Forward(f) => Some(f.clusters.clone()),
            _ => None,
        },
        Err(_) => None,
    })
}

pub fn share(stats: &Stats, cluster: &str, n: usize) -> f64 {
    *stats.by_cluster.get(cluster).unwrap_or(&0) as f64 / n as f64
}

/// Every answer was a 200: nothing was refused or unrouted.
pub fn all_ok(stats: &Stats, n: usize) -> bool {
    stats.downstream.len() == 1 && stats.downstream.get(&200) == Some(&(n as u64))
}

/// What one `sluice rollout` run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Runs `sluice rollout ARGS` against `sluice` with the token from `files`.
pub fn cli(sluice: &Sluice, token_file: Option<&Path>, args: &[&str]) -> Run {
    let grpc = sluice.admin_grpc.expect("admin grpc").to_string();
    let mut cmd = Command::new(super::sluice_bin());
    cmd.args(["rollout", "--admin-grpc", &grpc]).args(args);
    cmd.env_remove("SLUICE_ADMIN_TOKEN");
    if let Some(f) = token_file {
        cmd.arg("--admin-token-file").arg(f);
    }
    let out = cmd.output().expect("run sluice rollout");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Simulated traffic through the fleet's current views, with the canary
/// backend answering `error_rate` 503s; cumulative stats on `/stats`.
pub struct Traffic {
    pub stats_addr: SocketAddr,
    pub stats: Arc<Mutex<Stats>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Routes `n` plain `GET /` requests through every proxy's view; answers
/// by cluster.
pub fn route(fleet: &Fleet, backends: Backends, n: usize, seed: u64) -> Stats {
    route_requests(fleet, backends, n, seed, |_| Request::get("x", "/"))
}

/// Routes `n` requests, the `i`-th being `request(i)`, spread over every
/// configured proxy's view.
pub fn route_requests(
    fleet: &Fleet,
    backends: Backends,
    n: usize,
    seed: u64,
    request: impl Fn(usize) -> Request,
) -> Stats {
    let proxies: Vec<SimProxy> = fleet
        .reports()
        .into_iter()
        .filter(|r| r.view.listeners.contains_key("http"))
        .enumerate()
        .map(|(i, r)| SimProxy::new(r.view, seed + i as u64))
        .collect();
    if proxies.is_empty() {
        return Stats::default();
    }
    let count = proxies.len();
    let mut engine = Engine::new(proxies, backends, seed);
    for i in 0..n {
        engine.submit(i % count, request(i), Duration::from_micros(i as u64 * 100));
    }
    engine.run();
    engine.stats
}

pub fn backends(canary: SocketAddr, error_rate: f64) -> Backends {
    let mut b = Backends::default();
    b.set(
        canary,
        BackendSpec {
            error_rate,
            ..Default::default()
        },
    );
    b
}

impl Traffic {
    /// Traffic whose every batch (one each 40 ms) is `batch(fleet, seed)`.
    pub async fn start(
        fleet: Arc<Fleet>,
        batch: impl Fn(&Fleet, u64) -> Stats + Send + 'static,
    ) -> Traffic {
        let stats = Arc::new(Mutex::new(Stats::default()));
        let s = stats.clone();
        tokio::spawn(async move {
            let mut seed = 1;
            loop {
                tokio::time::sleep(Duration::from_millis(40)).await;
                seed += 1;
                let window = batch(&fleet, seed);
                lock(&s).merge(&window);
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let stats_addr = listener.local_addr().expect("addr");
        let s = stats.clone();
        let app = axum::Router::new().route(
            "/stats",
            axum::routing::get(move || {
                let s = s.clone();
                async move { lock(&s).envoy_text() }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Traffic { stats_addr, stats }
    }
}

/// Polls `sluice rollout status SERVICE --output json` until `done` holds.
pub async fn wait_status(
    sluice: &Sluice,
    token: &Path,
    service: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let run = cli(
            sluice,
            Some(token),
            &["status", service, "--output", "json"],
        );
        if run.code == 0 {
            let v = run.json();
            if done(&v) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; last status {v}"
            );
        } else {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {run:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One service with stable (v1) and canary (v2) subsets, all traffic on
/// stable: what the rollout tests start from.
pub const RULES: &str = r#"services:
  - name: web
    endpoints:
      - {address: 127.0.0.1, port: 8081, labels: {version: v1}}
      - {address: 127.0.0.1, port: 8082, labels: {version: v2}}
    subsets:
      stable: {version: v1}
      canary: {version: v2}
listeners:
  - name: http
    address: 127.0.0.1
    port: 10000
    virtual_hosts:
      - name: web
        domains: ["*"]
        routes:
          - match: {prefix: /}
            to: {service: web, subset: stable}
"#;
