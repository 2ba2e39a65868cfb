//! Several replicas (docs/ha.md): three `sluice serve --state-etcd`
//! replicas on one etcd, lease TTL 2 s, and one simulated fleet spread over
//! them (each proxy picks a replica at random, as `sluice bootstrap --xds
//! A,B,C` makes Envoy do).
//!
//! `failover`: a rollout of `svc-0000` in 1 % steps, one analysis window
//! of 1 s each, its metrics from a stats endpoint of this program that
//! reports healthy canary traffic (the analysis passes; what is measured
//! is the leader's succession, not the analysis). Ten trials: with every
//! proxy configured and the rollout analysing, the leader is SIGKILLed;
//! measured from the kill until every proxy routes with the next step's
//! weight. The new leader resumes the rollout at its step and opens a
//! fresh window (docs/ha.md), so a trial takes at least the lease's
//! expiry plus one window; "failover" is that time less the window. The
//! killed replica is started again (same port) before the next trial.
//!
//! `b3-ha`: every proxy holds full M1, then one replica is SIGKILLed: its
//! proxies reconnect to the other two. Measured from the kill: until every
//! proxy has a stream again, and until each moved proxy has ACKed every
//! type again (SotW unless `--delta`); failed streams; and each replica's
//! memory per proxy it serves (RSS with the fleet less RSS before it).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::canary::pb::{self, rollout_service_client::RolloutServiceClient};
use sluice::sim::state::Mode;
use sluice::sim::stats::Stats;
use tonic::metadata::MetadataValue;

use crate::procs::{self, Etcd, Sluice};
use crate::setup::{self, Env, Opts};
use crate::topo::{self, Source};

const REPLICAS: usize = 3;
const LEASE_TTL: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(1);
const TRIALS: usize = 10;
const TOKEN: &str = "bench-token-0123456789abcdef";

/// Three replicas on one etcd, each on a port of its own that a restart
/// reuses.
struct Replicas {
    _etcd: Etcd,
    rules: std::path::PathBuf,
    ports: Vec<u16>,
    extra: Vec<String>,
    procs: Vec<Option<Sluice>>,
}

impl Replicas {
    async fn start(env: &Env, rules: std::path::PathBuf, extra: &[String]) -> anyhow::Result<Self> {
        let etcd = Etcd::start().await?;
        let ttl = format!("{}s", LEASE_TTL.as_secs());
        let mut args: Vec<String> = ["--state-etcd", &etcd.url, "--state-lease-ttl", &ttl]
            .map(String::from)
            .to_vec();
        args.extend_from_slice(extra);
        let ports = (0..REPLICAS)
            .map(|_| procs::free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut r = Replicas {
            _etcd: etcd,
            rules,
            ports,
            extra: args,
            procs: (0..REPLICAS).map(|_| None).collect(),
        };
        for i in 0..REPLICAS {
            r.spawn(env, i).await?;
        }
        Ok(r)
    }

    async fn spawn(&mut self, env: &Env, i: usize) -> anyhow::Result<()> {
        let mut args = self.extra.clone();
        args.extend(["--replica-name".into(), format!("r{i}")]);
        self.procs[i] = Some(env.sluice(&self.rules, self.ports[i], &args).await?);
        Ok(())
    }

    fn get(&self, i: usize) -> anyhow::Result<&Sluice> {
        self.procs[i]
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("replica r{i} is not running"))
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.procs[i].take() {
            s.kill();
        }
    }

    /// Every replica's xDS address, as `--xds` takes them.
    fn xds(&self) -> String {
        let all: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        all.join(",")
    }

    async fn status(&self, i: usize) -> anyhow::Result<Value> {
        let url = format!("http://{}/status", self.get(i)?.admin);
        Ok(reqwest::get(&url).await?.json().await?)
    }

    /// The replica that says it leads, once one does.
    async fn leader(&self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for i in 0..REPLICAS {
                if self.procs[i].is_some() && self.status(i).await?["ha"]["is_leader"] == true {
                    return Ok(i);
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no replica leads");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many proxies each replica serves (0 for a stopped one).
    async fn spread(&self) -> anyhow::Result<Vec<usize>> {
        let mut out = Vec::new();
        for i in 0..REPLICAS {
            out.push(match self.procs[i] {
                Some(_) => self.status(i).await?["proxies"]
                    .as_array()
                    .map_or(0, Vec::len),
                None => 0,
            });
        }
        Ok(out)
    }
}

/// Envoy admin `/stats` of healthy traffic to the rollout's subsets: every
/// read adds 50 successful requests of 2 ms to each.
async fn healthy_stats() -> anyhow::Result<std::net::SocketAddr> {
    let stats = Arc::new(Mutex::new(Stats::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/stats",
        axum::routing::get(move || {
            let stats = stats.clone();
            async move {
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                for subset in ["stable", "canary"] {
                    let cluster = format!("{}~{subset}", topo::CANARY_SERVICE);
                    for _ in 0..50 {
                        s.upstream(&cluster, 200, Duration::from_millis(2));
                    }
                }
                s.envoy_text()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

fn req<T>(msg: T) -> anyhow::Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {TOKEN}"))?,
    );
    Ok(r)
}

/// The rollout API of replica `i` (its address changes with a restart).
async fn api(
    r: &Replicas,
    i: usize,
) -> anyhow::Result<RolloutServiceClient<tonic::transport::Channel>> {
    let addr = r
        .get(i)?
        .admin_grpc
        .ok_or_else(|| anyhow::anyhow!("no admin gRPC address"))?;
    Ok(RolloutServiceClient::connect(format!("http://{addr}")).await?)
}

async fn rollout(r: &Replicas, i: usize) -> anyhow::Result<pb::Rollout> {
    let service = topo::CANARY_SERVICE.to_string();
    Ok(api(r, i)
        .await?
        .get(req(pb::ServiceRequest { service })?)
        .await?
        .into_inner())
}

/// Quantile `q` of `xs` (nearest rank).
fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or(f64::NAN)
}

pub async fn failover(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let proxies = o.proxies.unwrap_or(300);
    let (t, mode) = (o.topology(), o.mode());
    let rules = env.write_rules("m1-static.yaml", t, Source::Static)?;
    let token = env.path("token");
    std::fs::write(&token, format!("{TOKEN}\n"))?;
    let stats = healthy_stats().await?;
    let extra: Vec<String> = [
        "--admin-grpc",
        "127.0.0.1:0",
        "--admin-token-file",
        &token.display().to_string(),
        "--rollout-weights",
        "routes",
        "--metrics-envoy-admin",
        &stats.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut r = Replicas::start(env, rules, &extra).await?;
    let (mut fleet, ready) = env
        .configured_fleet("failover", r.xds(), proxies, mode)
        .await?;
    let leader = r.leader().await?;
    let started = api(&r, (leader + 1) % REPLICAS)
        .await?
        .start(req(pb::StartRequest {
            service: topo::CANARY_SERVICE.into(),
            from: "stable".into(),
            to: "canary".into(),
            steps: (1..=100).collect(),
            interval_ms: WINDOW.as_millis() as u64,
            max_error_rate: 0.05,
            failure_threshold: 3,
            ack_timeout_ms: 600_000,
            ..Default::default()
        })?)
        .await?
        .into_inner();
    anyhow::ensure!(
        started.canary_weight == 1,
        "rollout not started: {started:?}"
    );
    let canary = format!("{}~canary", topo::CANARY_SERVICE);
    let mut rows: Vec<Value> = Vec::new();
    let mut totals = Vec::new();
    for trial in 0..TRIALS {
        let leader = r.leader().await?;
        // Every proxy connected and holding the step the rollout analyses.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = fleet.stats().await?;
            let ro = rollout(&r, leader).await?;
            if s.connected == proxies && ro.phase == "analysing" && ro.acked == ro.targeted {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "trial {trial}: fleet {}/{proxies} connected, rollout {} at {}% ({}/{} ACKed)",
                s.connected,
                ro.phase,
                ro.canary_weight,
                ro.acked,
                ro.targeted
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kill_ns = procs::unix_ns();
        r.kill(leader);
        // No step can be taken before the lease expires: the weight read
        // now (from a replica that follows the records) is the one killed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let other = (leader + 1) % REPLICAS;
        let at_kill = rollout(&r, other).await?;
        anyhow::ensure!(
            at_kill.canary_weight < 100,
            "the rollout ended before trial {trial}"
        );
        let next = at_kill.canary_weight + 1;
        let id = trial as u64 + 1;
        fleet.send(format!("rds {id} {} {canary} {next}", topo::canary_path()));
        fleet.sync().await?;
        let got = fleet.results(&[id], Duration::from_secs(60)).await?;
        let (count, max_ns) = got.get(&id).copied().unwrap_or((0, 0));
        if count != proxies {
            // Say what the replicas think the stragglers hold.
            for i in (0..REPLICAS).filter(|&i| r.procs[i].is_some()) {
                let st = r.status(i).await?;
                let mut by_version = std::collections::BTreeMap::<String, Vec<String>>::new();
                for p in st["proxies"].as_array().into_iter().flatten() {
                    let key = format!(
                        "rds sent {} acked {}",
                        p["types"]["rds"]["sent"], p["types"]["rds"]["acked"]
                    );
                    by_version
                        .entry(key)
                        .or_default()
                        .push(p["node"]["id"].to_string());
                }
                for (k, nodes) in by_version {
                    eprintln!(
                        "r{i}: {k}: {} proxies, e.g. {:?}",
                        nodes.len(),
                        &nodes[..nodes.len().min(5)]
                    );
                }
            }
            anyhow::bail!("trial {trial}: {count}/{proxies} proxies reached {next}%");
        }
        let total = max_ns.saturating_sub(kill_ns) as f64 / 1e9;
        let new_leader = r.leader().await?;
        eprintln!(
            "failover trial {}: r{leader} killed at {}%, r{new_leader} leads; {next}% on every proxy after {total:.2} s",
            trial + 1,
            at_kill.canary_weight
        );
        totals.push(total);
        rows.push(json!({
            "killed": format!("r{leader}"),
            "new_leader": format!("r{new_leader}"),
            "weight_at_kill": at_kill.canary_weight,
            "kill_to_next_step_s": setup::num(total),
        }));
        r.spawn(env, leader).await?;
    }
    let stats_s = fleet.stats().await?;
    fleet.quit();
    let window = WINDOW.as_secs_f64();
    let failover: Vec<f64> = totals.iter().map(|t| t - window).collect();
    let ttl = LEASE_TTL.as_secs_f64();
    println!("\nFailover: {REPLICAS} replicas, lease TTL {ttl:.0} s, {proxies} {mode:?} proxies on M1 {}x{}; rollout in 1 % steps with {window:.0} s windows; leader SIGKILLed with the rollout analysing, {TRIALS} trials", t.services, t.per);
    println!("| | p50 s | p99 s | max s |");
    println!("|---|---|---|---|");
    for (name, xs) in [
        ("kill → next step on every proxy", &totals),
        ("less the window the new leader opens (failover)", &failover),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            quantile(xs, 0.5),
            quantile(xs, 0.99),
            quantile(xs, 1.0)
        );
    }
    println!(
        "target: failover p99 ≤ lease TTL + 1 s = {:.0} s; NACKs {}",
        ttl + 1.0,
        stats_s.nacks
    );
    Ok(json!({
        "scenario": "failover",
        "mode": format!("{mode:?}").to_lowercase(),
        "replicas": REPLICAS,
        "proxies": proxies,
        "services": t.services,
        "endpoints_per_service": t.per,
        "lease_ttl_s": ttl,
        "window_s": window,
        "configured_s": setup::num(ready.as_secs_f64()),
        "trials": rows,
        "kill_to_next_step_s": {"p50": setup::num(quantile(&totals, 0.5)), "p99": setup::num(quantile(&totals, 0.99)), "max": setup::num(quantile(&totals, 1.0))},
        "failover_s": {"p50": setup::num(quantile(&failover, 0.5)), "p99": setup::num(quantile(&failover, 0.99)), "max": setup::num(quantile(&failover, 1.0))},
        "nacks": stats_s.nacks,
    }))
}

pub async fn b3(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let proxies = o.proxies.unwrap_or(5000);
    let t = o.topology();
    let mode = if o.delta { Mode::Delta } else { Mode::Sotw };
    let rules = env.write_rules("m1-static.yaml", t, Source::Static)?;
    let mut r = Replicas::start(env, rules, &[]).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut rss0 = Vec::new();
    for i in 0..REPLICAS {
        rss0.push(procs::status_kb(r.get(i)?.pid(), "VmRSS")?);
    }
    let (mut fleet, ready) = env
        .configured_fleet("b3-ha", r.xds(), proxies, mode)
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = r.spread().await?;
    let s0 = fleet.stats().await?;
    // The replica with the most proxies goes.
    let victim = (0..REPLICAS).max_by_key(|&i| before[i]).unwrap_or(0);
    let moved = before[victim];
    let kill_ns = procs::unix_ns();
    let id = 1;
    fleet.send(format!("all {id} {kill_ns}"));
    fleet.sync().await?;
    let killed = Instant::now();
    r.kill(victim);
    let reconnected = loop {
        let s = fleet.stats().await?;
        if s.connected == proxies && s.streams >= s0.streams + moved as u64 {
            break Some(killed.elapsed().as_secs_f64());
        }
        if killed.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Only the moved proxies ACK again: the expectation never completes;
    // it is read until they all have (or for a minute).
    let wait = if mode == Mode::Delta { 5 } else { 60 };
    let deadline = Instant::now() + Duration::from_secs(wait);
    let (acked, last_ns) = loop {
        let (count, max_ns) = fleet.peek(id).await?;
        if count >= moved || Instant::now() > deadline {
            break (count, max_ns);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all_acked_s = (acked >= moved).then(|| last_ns.saturating_sub(kill_ns) as f64 / 1e9);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = r.spread().await?;
    let s1 = fleet.stats().await?;
    let mut per_replica = Vec::new();
    for i in (0..REPLICAS).filter(|&i| i != victim) {
        let rss = procs::status_kb(r.get(i)?.pid(), "VmRSS")?;
        let per = rss.saturating_sub(rss0[i]) as f64 / after[i].max(1) as f64;
        per_replica.push((i, after[i], rss, per));
    }
    fleet.quit();
    let failed = (s1.streams - s0.streams).saturating_sub(moved as u64);
    let secs = |d: Option<f64>| d.map_or("never".into(), |s| format!("{s:.2}"));
    println!("\nB3 across {REPLICAS} replicas: {proxies} {mode:?} proxies holding M1 {}x{}, spread {before:?}; r{victim} SIGKILLed", t.services, t.per);
    println!("| moved proxies | all reconnected s | moved proxies ACKed every type s | ACKed | failed streams | NACKs |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {moved} | {} | {} | {acked}/{moved} | {failed} | {} |",
        secs(reconnected),
        secs(all_acked_s),
        s1.nacks - s0.nacks
    );
    for (i, n, rss, per) in &per_replica {
        println!(
            "r{i}: {n} proxies after the kill, RSS {:.0} MiB, {:.1} KiB per proxy",
            *rss as f64 / 1048576.0,
            per / 1024.0
        );
    }
    Ok(json!({
        "scenario": "b3-ha",
        "mode": format!("{mode:?}").to_lowercase(),
        "replicas": REPLICAS,
        "proxies": proxies,
        "services": t.services,
        "endpoints_per_service": t.per,
        "configured_s": setup::num(ready.as_secs_f64()),
        "spread_before": before,
        "spread_after": after,
        "killed": format!("r{victim}"),
        "moved": moved,
        "all_reconnected_s": reconnected.map(setup::num),
        "moved_acked_s": all_acked_s.map(setup::num),
        "moved_acked": acked,
        "failed_streams": failed,
        "nacks": s1.nacks - s0.nacks,
        "replicas_after": per_replica.iter().map(|(i, n, rss, per)| json!({
            "replica": format!("r{i}"),
            "proxies": n,
            "rss_bytes": rss,
            "bytes_per_proxy": setup::num(*per),
        })).collect::<Vec<_>>(),
    }))
}
