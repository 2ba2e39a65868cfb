//! B1 convergence: one endpoint moves every 500 ms (an etcd put, so the
//! change comes through sluice's real, push-based discovery path); for each
//! move, the time from just before the write to the last proxy's ACK of a
//! CLA holding it. Then the same fleet size against the transport floor,
//! fed the same moves directly.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fleet_proc::FleetProc;
use crate::procs::{self, Peer};
use crate::setup::{self, fmt_ms, Change, Env, Latencies, Mover, Opts, Server};
use crate::topo::{self, Source};

pub const INTERVAL: Duration = Duration::from_millis(500);

/// Where a change is written.
pub enum Target<'a> {
    Etcd(Box<etcd_client::Client>),
    /// The floor, pushing each change at once.
    Floor(&'a Peer),
    /// The floor, pushing what was staged only on [`Target::flush`].
    FloorBatched(&'a Peer),
}

impl Target<'_> {
    pub async fn apply(&mut self, changes: &[Change]) -> anyhow::Result<()> {
        let (peer, cmd) = match self {
            Target::Etcd(kv) => return setup::put_changes(kv, changes).await,
            Target::Floor(peer) => (peer, "set"),
            Target::FloorBatched(peer) => (peer, "stage"),
        };
        for c in changes {
            peer.send(format!(
                "{cmd} {} {} {}",
                topo::service(c.service),
                topo::address(c.service, c.k),
                c.port
            ));
        }
        Ok(())
    }

    /// Pushes what a batched floor has staged; nothing for the others.
    pub fn flush(&self) {
        if let Target::FloorBatched(peer) = self {
            peer.send("push".into());
        }
    }
}

/// Moves one endpoint per `INTERVAL`, `n` times; each move is registered
/// with the fleet before it is written. Returns the latencies, and how
/// long each write took to return (for etcd: until the change was
/// committed, which the latencies include).
pub async fn drive(
    fleet: &mut FleetProc,
    target: &mut Target<'_>,
    mover: &mut Mover,
    n: u64,
) -> anyhow::Result<(Latencies, Latencies)> {
    let start = Instant::now();
    let mut writes = Vec::new();
    let mut write_ms = Latencies::default();
    for j in 0..n {
        tokio::time::sleep_until((start + INTERVAL * j as u32).into()).await;
        let c = mover.change(j);
        fleet.send(c.expectation());
        fleet.sync().await?;
        let t0 = procs::unix_ns();
        target.apply(std::slice::from_ref(&c)).await?;
        write_ms
            .ms
            .push(procs::unix_ns().saturating_sub(t0) as f64 / 1e6);
        writes.push((c.id, t0));
    }
    let ids: Vec<u64> = writes.iter().map(|(id, _)| *id).collect();
    let got = fleet.results(&ids, Duration::from_secs(30)).await?;
    let mut lat = Latencies::default();
    for (id, t0) in writes {
        lat.push(t0, got.get(&id).copied().unwrap_or((0, 0)), fleet.proxies);
    }
    Ok((lat, write_ms))
}

/// What the floor half of B1 measured.
struct FloorRun {
    lat: Latencies,
    ready: Duration,
    n: u64,
    floor_cpu: f64,
    fleet_cpu: f64,
    fleet_rss: u64,
    /// CPU the fleet took to get configured.
    fleet_setup_cpu: f64,
}

/// The floor serving M1, and a configured fleet of `proxies` on it.
pub async fn start_floor(
    env: &Env,
    tag: &str,
    t: topo::Topology,
    proxies: usize,
    mode: sluice::sim::state::Mode,
    runtime: bool,
) -> anyhow::Result<(Peer, FleetProc, Duration)> {
    let static_rules = env.write_rules("m1-static.yaml", t, Source::Static)?;
    let mut args = vec![
        "floor".to_string(),
        "--rules".into(),
        static_rules.display().to_string(),
    ];
    // A fleet on sluice's runtime layer is served as `sluice serve
    // --rollout-weights runtime` would, routes armed.
    if runtime {
        args.push("--armed".into());
    }
    let mut floor = Peer::spawn(&env.exes, &args, &env.path("floor.log"))?;
    let line = floor
        .expect("floor listening on ", Duration::from_secs(60), |_| {})
        .await?;
    let addr: std::net::SocketAddr = line.trim_start_matches("floor listening on ").parse()?;
    let (fleet, ready) = env
        .configured_fleet_rtds(tag, Server::Floor, addr, proxies, mode, runtime)
        .await?;
    Ok((floor, fleet, ready))
}

/// The floor, `proxies` in `mode`, the same kind of moves, `n` of them.
async fn floor_run(
    env: &Env,
    t: topo::Topology,
    proxies: usize,
    mode: sluice::sim::state::Mode,
    n: u64,
) -> anyhow::Result<FloorRun> {
    let (floor, mut ffleet, ready) = start_floor(env, "b1 floor", t, proxies, mode, false).await?;
    let fleet_setup_cpu = procs::cpu_seconds(ffleet.pid())?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut fmover = Mover::new(t);
    let (ff0, fl0) = (
        procs::cpu_seconds(ffleet.pid())?,
        procs::cpu_seconds(floor.pid())?,
    );
    let (lat, _) = drive(&mut ffleet, &mut Target::Floor(&floor), &mut fmover, n).await?;
    let fleet_cpu = procs::cpu_seconds(ffleet.pid())? - ff0;
    let floor_cpu = procs::cpu_seconds(floor.pid())? - fl0;
    let fleet_rss = procs::status_kb(ffleet.pid(), "VmRSS")?;
    ffleet.quit();
    floor.quit(Duration::from_secs(5));
    Ok(FloorRun {
        lat,
        ready,
        n,
        floor_cpu,
        fleet_cpu,
        fleet_rss,
        fleet_setup_cpu,
    })
}

fn floor_json(f: &FloorRun, proxies: usize) -> Value {
    json!({
        "configured_s": setup::num(f.ready.as_secs_f64()),
        "latency": f.lat.json(),
        "cpu_ms_per_change": setup::num(f.floor_cpu * 1e3 / f.n.max(1) as f64),
        "fleet_cpu_ms_per_change": setup::num(f.fleet_cpu * 1e3 / f.n.max(1) as f64),
        "fleet_setup_cpu_s": setup::num(f.fleet_setup_cpu),
        "fleet_rss_kib_per_proxy": setup::num(f.fleet_rss as f64 / 1024.0 / proxies.max(1) as f64),
    })
}

/// `b1 --floor-only`: the floor half alone, which isolates the fleet's cost.
async fn floor_only(env: &Env, o: &Opts, proxies: usize, n: u64) -> anyhow::Result<Value> {
    let (t, mode) = (o.topology(), o.mode());
    let f = floor_run(env, t, proxies, mode, n).await?;
    println!(
        "\nB1 floor only: {proxies} {mode:?} proxies, M1 {}x{}, one endpoint move every 500 ms",
        t.services, t.per
    );
    println!("| server | changes | p50 ms | p99 ms | max ms | incomplete |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| transport floor | {} | {} | {} | {} | {} |",
        f.lat.ms.len() + f.lat.incomplete,
        fmt_ms(f.lat.quantile(0.5)),
        fmt_ms(f.lat.quantile(0.99)),
        fmt_ms(f.lat.quantile(1.0)),
        f.lat.incomplete
    );
    println!(
        "configured in {:.1} s (fleet CPU {:.1} s); CPU ms per change: floor {:.1}, its fleet {:.1} ({:.3} ms per proxy); fleet RSS {:.0} KiB per proxy",
        f.ready.as_secs_f64(),
        f.fleet_setup_cpu,
        f.floor_cpu * 1e3 / n.max(1) as f64,
        f.fleet_cpu * 1e3 / n.max(1) as f64,
        f.fleet_cpu * 1e3 / n.max(1) as f64 / proxies.max(1) as f64,
        f.fleet_rss as f64 / 1024.0 / proxies.max(1) as f64,
    );
    Ok(json!({
        "scenario": "b1",
        "floor_only": true,
        "mode": format!("{mode:?}").to_lowercase(),
        "proxies": proxies,
        "services": t.services,
        "endpoints_per_service": t.per,
        "interval_ms": INTERVAL.as_millis() as u64,
        "floor": floor_json(&f, proxies),
    }))
}

pub async fn run(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let proxies = o.proxies.unwrap_or(1000);
    let duration = o.duration.unwrap_or(Duration::from_secs(60));
    let n = (duration.as_millis() / INTERVAL.as_millis()).max(1) as u64;
    let floor_n = n.min(40);
    if o.floor_only {
        return floor_only(env, o, proxies, floor_n).await;
    }
    let t = o.topology();
    let mode = o.mode();

    let (etcd, sluice, mut fleet, ready) = env.etcd_m1("b1", t, proxies, mode).await?;
    eprintln!("b1: {n} changes");
    // Idle: what sluice burns with no change at all (e.g. keeping 1,000
    // etcd watches alive), so a change's CPU can be told from it.
    let idle0 = procs::cpu_seconds(sluice.pid())?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let u0 = procs::usage(sluice.pid())?;
    let idle_cores = (u0.cpu_s - idle0) / 2.5;
    let f0 = procs::cpu_seconds(fleet.pid())?;
    let mut mover = Mover::new(t);
    let mut target = Target::Etcd(Box::new(etcd.client().await?));
    let (lat, etcd_write) = drive(&mut fleet, &mut target, &mut mover, n).await?;
    let u1 = procs::usage(sluice.pid())?;
    let fleet_cpu = procs::cpu_seconds(fleet.pid())? - f0;
    let stats = fleet.stats().await?;
    fleet.quit();
    drop(sluice);
    drop(etcd);

    // The floor, same fleet size and mode, same kind of moves.
    let f = floor_run(env, t, proxies, mode, floor_n).await?;
    let flat = &f.lat;

    let changes = lat.ms.len() + lat.incomplete;
    let per = |cpu: f64, n: u64| setup::num(cpu * 1e3 / n.max(1) as f64);
    let ratio = |q: f64| lat.quantile(q) / flat.quantile(q);
    println!("\nB1 convergence: {proxies} {mode:?} proxies, M1 {}x{}, one endpoint move every 500 ms via etcd", t.services, t.per);
    println!("| server | changes | p50 ms | p99 ms | max ms | incomplete |");
    println!("|---|---|---|---|---|---|");
    for (name, l) in [("sluice (etcd)", &lat), ("transport floor", flat)] {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            l.ms.len() + l.incomplete,
            fmt_ms(l.quantile(0.5)),
            fmt_ms(l.quantile(0.99)),
            fmt_ms(l.quantile(1.0)),
            l.incomplete
        );
    }
    println!(
        "etcd write (txn sent → committed, inside sluice's latency): p50 {} ms, p99 {} ms",
        fmt_ms(etcd_write.quantile(0.5)),
        fmt_ms(etcd_write.quantile(0.99)),
    );
    println!(
        "sluice idle (no changes, 2.5 s): {:.0} % of a core",
        idle_cores * 100.0
    );
    println!(
        "sluice / floor: p50 {:.1}x, p99 {:.1}x; CPU ms per change: sluice {:.1}, its fleet {:.1}, floor {:.1}, its fleet {:.1}; sluice wrote {:.0} bytes per change; NACKs {}",
        ratio(0.5),
        ratio(0.99),
        (u1.cpu_s - u0.cpu_s) * 1e3 / changes.max(1) as f64,
        fleet_cpu * 1e3 / n.max(1) as f64,
        f.floor_cpu * 1e3 / floor_n.max(1) as f64,
        f.fleet_cpu * 1e3 / floor_n.max(1) as f64,
        (u1.written - u0.written) as f64 / changes.max(1) as f64,
        stats.nacks
    );
    Ok(json!({
        "scenario": "b1",
        "mode": format!("{mode:?}").to_lowercase(),
        "proxies": proxies,
        "services": t.services,
        "endpoints_per_service": t.per,
        "interval_ms": INTERVAL.as_millis() as u64,
        "sluice": {
            "configured_s": setup::num(ready.as_secs_f64()),
            "latency": lat.json(),
            "cpu_ms_per_change": setup::num((u1.cpu_s - u0.cpu_s) * 1e3 / changes.max(1) as f64),
            "bytes_per_change": setup::num((u1.written - u0.written) as f64 / changes.max(1) as f64),
            "fleet_cpu_ms_per_change": per(fleet_cpu, n),
            "idle_cpu_cores": setup::num(idle_cores),
            "nacks": stats.nacks,
            "etcd_write": etcd_write.json(),
        },
        "floor": floor_json(&f, proxies),
        "ratio_to_floor": {"p50": setup::num(ratio(0.5)), "p99": setup::num(ratio(0.99))},
    }))
}
