//! Rollout test helpers: a sluice with the controller on, the `sluice
//! rollout` CLI, and simulated traffic whose Envoy-format stats the
//! controller reads like an Envoy admin `/stats` page.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::sim::backend::{BackendSpec, Backends};
use sluice::sim::engine::{Engine, SimProxy};
use sluice::sim::fleet::Fleet;
use sluice::sim::route::Request;
use sluice::sim::stats::Stats;

use super::Sluice;

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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
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

/// Routes `n` requests through every proxy's view; answers by cluster.
pub fn route(fleet: &Fleet, backends: Backends, n: usize, seed: u64) -> Stats {
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
        engine.submit(
            i % count,
            Request::get("x", "/"),
            Duration::from_micros(i as u64 * 100),
        );
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
    pub async fn start(fleet: Arc<Fleet>, canary: SocketAddr, error_rate: f64) -> Traffic {
        let stats = Arc::new(Mutex::new(Stats::default()));
        let s = stats.clone();
        tokio::spawn(async move {
            let mut seed = 1;
            loop {
                tokio::time::sleep(Duration::from_millis(40)).await;
                seed += 1;
                let window = route(&fleet, backends(canary, error_rate), 200, seed);
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
    let deadline = std::time::Instant::now() + super::WAIT;
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
