//! Fleet benchmark: N simulated proxies on one sluice; measures how long
//! the fleet takes to connect and be configured, then how long an endpoint
//! change and a route change take to reach (be ACKed by) every proxy.
//!
//! Runs sluice in-process (`sluice::serve::run`), so no binary is needed:
//!
//! ```sh
//! cargo run --release --example sim_fleet -- 1000 sotw
//! cargo run --release --example sim_fleet -- 1000 delta
//! ```

use std::time::{Duration, Instant};

use sluice::serve::{self, ServeOptions};
use sluice::sim::fleet::{Fleet, FleetConfig};
use sluice::sim::state::Mode;
use sluice::xds::TypeUrl;

fn rules(port: u16, canary: u32) -> String {
    format!(
        r#"services:
  - name: web
    endpoints:
      - {{address: 127.0.0.1, port: 8081, labels: {{version: v1}}}}
      - {{address: 127.0.0.1, port: {port}, labels: {{version: v2}}}}
    subsets:
      stable: {{version: v1}}
      canary: {{version: v2}}
listeners:
  - name: http
    address: 127.0.0.1
    port: 10000
    virtual_hosts:
      - name: web
        domains: ["*"]
        routes:
          - match: {{prefix: /}}
            split:
              - {{service: web, subset: stable, weight: {}}}
              - {{service: web, subset: canary, weight: {canary}}}
"#,
        100 - canary
    )
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let mode = match args.next().as_deref() {
        Some("delta") => Mode::Delta,
        _ => Mode::Sotw,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(n, mode))
}

async fn bench(n: usize, mode: Mode) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, rules(8082, 20))?;
    let xds = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve::run(
        ServeOptions {
            rules: path.clone(),
            xds_addr: xds,
            admin_addr: "127.0.0.1:0".parse()?,
            watch_interval: Duration::from_millis(50),
            state_dir: Some(dir.path().to_path_buf()),
            ha: None,
            rollouts: Default::default(),
            guard: Default::default(),
            validate_with_envoy: None,
            xds_max_connection_age: None,
            xds_security: Default::default(),
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    let fleet = Fleet::start(&FleetConfig {
        xds: xds.to_string(),
        proxies: n,
        mode,
        group: "default".into(),
        node_prefix: "bench".into(),
        faults: Default::default(),
        runtime_layer: None,
        security: Default::default(),
    });
    let wait = Duration::from_secs(120);
    let ready = fleet
        .wait_all(wait, |r| r.view.listeners.contains_key("http"))
        .await
        .ok_or_else(|| anyhow::anyhow!("fleet not configured within {wait:?}"))?;
    println!(
        "{n} proxies ({mode:?}) connected and configured: {:.3}s",
        ready.as_secs_f64()
    );
    let _ = start;

    for (what, text, ty) in [
        ("endpoint change", rules(8083, 20), TypeUrl::Endpoint),
        ("route change", rules(8083, 50), TypeUrl::Route),
    ] {
        let before: Vec<String> = fleet
            .reports()
            .iter()
            .map(|r| r.versions[ty.index()].clone())
            .collect();
        let t0 = Instant::now();
        std::fs::write(&path, text)?;
        let took = fleet
            .wait_all(wait, |r| {
                !r.versions[ty.index()].is_empty() && !before.contains(&r.versions[ty.index()])
            })
            .await
            .ok_or_else(|| anyhow::anyhow!("{what} did not reach every proxy"))?;
        let reports = fleet.reports();
        let mut lat: Vec<f64> = reports
            .iter()
            .filter_map(|r| {
                r.acked_at[ty.index()]
                    .map(|t| t.saturating_duration_since(t0).as_secs_f64() * 1000.0)
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "{what}: all {n} ACKed within {:.0} ms of the file write (includes ≤50 ms file poll); per-proxy ACK p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            took.as_secs_f64() * 1000.0,
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
    let nacks: u64 = fleet.reports().iter().map(|r| r.nacks).sum();
    println!(
        "NACKs: {nacks}; distinct resource encodings decoded and cached: {}",
        fleet.decoder.cached()
    );
    fleet.stop().await;
    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}
