//! Endpoint change → xDS client ACK latency, through the etcd source (a
//! real etcd on loopback) and the file source. Not a test: a measurement.
//!
//! ```sh
//! cargo run --release --example bench_discovery -- [CHANGES] [GAP_MS]
//! ```
//!
//! sluice runs in-process on loopback; a minimal ADS client subscribes to
//! the `web` cluster's EDS and ACKs each response. One change = one
//! endpoint's port moves (an etcd put / an atomic rewrite of the file);
//! its latency runs from just before the write to the moment the client
//! has sent the ACK of the first EDS response that contains it. Two
//! regimes per source: *isolated* changes `GAP_MS` apart plus 0–100 ms of
//! spread (default 2100 ms, longer than the coalescer's 2 s calm period, so
//! each is a lone change)
//! and *back-to-back* changes (the next as soon as the previous is ACKed:
//! the coalescer spaces publishes out). `etcd` comes from `$ETCD_BIN` or
//! PATH (Debian's `etcd-server`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Node};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use prost::Message;
use sluice::xds::services::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::sync::{mpsc, watch};

const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// The file source's poll interval in this benchmark (`--watch-interval-ms`).
const FILE_POLL: Duration = Duration::from_millis(100);

type Acked = watch::Receiver<(Instant, BTreeSet<u16>)>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let changes: usize = args.get(1).map_or(Ok(30), |a| a.parse())?;
    let gap = Duration::from_millis(args.get(2).map_or(Ok(2100), |a| a.parse())?);
    let dir = tempfile::tempdir()?;
    let mut etcd = start_etcd(dir.path()).await?;
    let etcd_url = etcd.1.clone();
    let rows = async {
        let mut rows = Vec::new();
        for source in ["etcd", "file"] {
            let sub = dir.path().join(source);
            std::fs::create_dir_all(&sub)?;
            let (xds, stop) = start_sluice(&sub, source, &etcd_url).await?;
            let acked = subscribe(xds);
            let mut kv = etcd_client::Client::connect([etcd_url.as_str()], None).await?;
            let mut port = 20_000u16;
            wait_for(&acked, 9000).await?;
            for (regime, pause) in [("isolated", gap), ("back-to-back", Duration::ZERO)] {
                let mut lat = Vec::new();
                for i in 0..changes {
                    // Spread isolated writes over the file poll's phase: a
                    // gap that is a multiple of the interval would always
                    // land just after a poll.
                    let spread = FILE_POLL.mul_f64((i * 37 % 100) as f64 / 100.0);
                    let pause = if pause.is_zero() {
                        pause
                    } else {
                        pause + spread
                    };
                    tokio::time::sleep(pause).await;
                    port += 1;
                    let t0 = Instant::now();
                    change(&mut kv, source, &sub, port).await?;
                    lat.push(wait_for(&acked, port).await? - t0);
                }
                rows.push((source, regime, lat));
            }
            let _ = stop.send(());
        }
        anyhow::Ok(rows)
    }
    .await;
    etcd.0.kill()?;
    let rows = rows?;
    println!(
        "\nendpoint change -> xDS ACK latency, {changes} changes per row (file poll {} ms)\n",
        FILE_POLL.as_millis()
    );
    println!("| source | changes | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    for (source, regime, mut lat) in rows {
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
        println!(
            "| {source}, {regime} | {} | {:.1} | {:.1} | {:.1} |",
            lat.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
    }
    Ok(())
}

/// Moves the `moving` endpoint to `port`.
async fn change(
    kv: &mut etcd_client::Client,
    source: &str,
    dir: &Path,
    port: u16,
) -> anyhow::Result<()> {
    let record = format!(r#"{{"address":"127.0.0.1","port":{port}}}"#);
    if source == "etcd" {
        kv.put("/services/web/moving", record, None).await?;
    } else {
        let text = format!("endpoints:\n  - {{address: 127.0.0.1, port: 9000}}\n  - {record}\n");
        let tmp = dir.join("eps.tmp");
        std::fs::write(&tmp, text)?;
        // Atomic, as config tools write: the poller never sees half a file.
        std::fs::rename(&tmp, dir.join("eps.yaml"))?;
    }
    Ok(())
}

/// Waits until an ACKed EDS set contains `port`; returns when it was ACKed.
async fn wait_for(acked: &Acked, port: u16) -> anyhow::Result<Instant> {
    let mut rx = acked.clone();
    let found = tokio::time::timeout(
        Duration::from_secs(30),
        rx.wait_for(|(_, set)| set.contains(&port)),
    );
    let seen = found
        .await
        .map_err(|_| anyhow::anyhow!("port {port} never reached EDS"))??;
    Ok(seen.0)
}

async fn start_sluice(
    dir: &Path,
    source: &str,
    etcd: &str,
) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let discovery = match source {
        "etcd" => "etcd: {prefix: /services/web/}",
        _ => "file: {path: eps.yaml}",
    };
    std::fs::write(
        dir.join("eps.yaml"),
        "endpoints:\n  - {address: 127.0.0.1, port: 9000}\n",
    )?;
    if source == "etcd" {
        let mut kv = etcd_client::Client::connect([etcd], None).await?;
        kv.put(
            "/services/web/base",
            r#"{"address":"127.0.0.1","port":9000}"#,
            None,
        )
        .await?;
    }
    let rules = format!(
        "sources:\n  etcd: {{endpoints: [\"{etcd}\"]}}\nservices:\n  - name: web\n    discovery: {{{discovery}}}\n\
         listeners:\n  - name: http\n    address: 127.0.0.1\n    port: {}\n    virtual_hosts:\n      - name: web\n\
         \x20       domains: [\"*\"]\n        routes:\n          - match: {{prefix: /}}\n            to: {{service: web}}\n",
        free_port()?
    );
    let path = dir.join("rules.yaml");
    std::fs::write(&path, rules)?;
    let xds: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let opts = sluice::serve::ServeOptions {
        rules: path,
        xds_addr: xds,
        admin_addr: format!("127.0.0.1:{}", free_port()?).parse()?,
        watch_interval: FILE_POLL,
        state_dir: Some(dir.to_path_buf()),
        ha: None,
        rollouts: Default::default(),
        guard: Default::default(),
        validate_with_envoy: None,
        xds_max_connection_age: None,
        xds_security: Default::default(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sluice::serve::run(opts, async move {
        let _ = rx.await;
    }));
    Ok((xds, tx))
}

/// A minimal ADS client: CDS + the `web` EDS, ACKs everything, publishes
/// (time the ACK was sent, ports in the set).
fn subscribe(xds: SocketAddr) -> Acked {
    let (out, rx) = watch::channel((Instant::now(), BTreeSet::new()));
    tokio::spawn(async move {
        let mut client = loop {
            match AggregatedDiscoveryServiceClient::connect(format!("http://{xds}")).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (tx, reqs) = mpsc::channel(16);
        let node = Node {
            id: "bench".into(),
            cluster: "default".into(),
            ..Default::default()
        };
        let req = |ty: &str, names: Vec<String>, version: &str, nonce: &str| DiscoveryRequest {
            node: Some(node.clone()),
            type_url: ty.into(),
            resource_names: names,
            version_info: version.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        };
        let _ = tx.send(req(CDS, vec![], "", "")).await;
        let _ = tx.send(req(EDS, vec!["web".into()], "", "")).await;
        let Ok(resp) = client
            .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(reqs))
            .await
        else {
            return;
        };
        let mut stream = resp.into_inner();
        while let Ok(Some(resp)) = stream.message().await {
            let mut ports = None;
            if resp.type_url == EDS {
                for any in &resp.resources {
                    let Ok(cla) = ClusterLoadAssignment::decode(any.value.as_slice()) else {
                        continue;
                    };
                    if cla.cluster_name == "web" {
                        ports = Some(ports_of(&cla));
                    }
                }
            }
            let names = if resp.type_url == EDS {
                vec!["web".to_string()]
            } else {
                vec![]
            };
            if tx
                .send(req(&resp.type_url, names, &resp.version_info, &resp.nonce))
                .await
                .is_err()
            {
                return;
            }
            if let Some(p) = ports {
                let _ = out.send((Instant::now(), p));
            }
        }
    });
    rx
}

fn ports_of(cla: &ClusterLoadAssignment) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for ep in cla.endpoints.iter().flat_map(|l| &l.lb_endpoints) {
        let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &ep.host_identifier else {
            continue;
        };
        if let Some(address::Address::SocketAddress(sa)) =
            e.address.as_ref().and_then(|a| a.address.as_ref())
        {
            if let Some(socket_address::PortSpecifier::PortValue(p)) = sa.port_specifier {
                out.insert(p as u16);
            }
        }
    }
    out
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

/// A throwaway single-member etcd on loopback; (child, client URL).
async fn start_etcd(dir: &Path) -> anyhow::Result<(Child, String)> {
    let (client, peer) = (free_port()?, free_port()?);
    let url = format!("http://127.0.0.1:{client}");
    let peer = format!("http://127.0.0.1:{peer}");
    let child = Command::new(etcd_bin())
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .args([
            format!("--listen-client-urls={url}"),
            format!("--advertise-client-urls={url}"),
        ])
        .args([
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
        ])
        .arg(format!("--initial-cluster=default={peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut c) = etcd_client::Client::connect([url.as_str()], None).await {
            if c.get("/", None).await.is_ok() {
                return Ok((child, url));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("etcd did not start")
}
