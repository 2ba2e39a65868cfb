//! B2 churn: endpoint moves at fixed rates (100 / 500 / 2,000 / 5,000 per
//! second by default, a few seconds each) through etcd. Every 10 ms one
//! etcd transaction writes that tick's moves (one revision, as a registry
//! that batches, and so the runner itself keeps up on two cores); each
//! move's latency runs from just before its transaction to the last proxy's
//! ACK of a CLA holding it (or a later move of the same endpoint). Per
//! rate: p99, CPU seconds of sluice per move, bytes it wrote per move.
//!
//! `b2 --floor-only` runs the same rates against the transport floor
//! instead (no etcd, no sluice): each tick's moves are staged and the
//! floor pushes what is staged every `FLOOR_BATCH` (one response per
//! stream), the least batching that keeps the fleet from drowning in
//! one response per tick. It bounds what any control plane can sustain
//! with this fleet on this machine.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::b1::{self, Target};
use crate::procs;
use crate::setup::{self, fmt_ms, Env, Latencies, Mover, Opts};

const TICK: Duration = Duration::from_millis(10);
/// How long a rate's moves may take to reach everyone before they count
/// as never arriving.
const DRAIN: Duration = Duration::from_secs(15);
/// `--floor-only`: the floor pushes what was staged every this many ticks.
const FLOOR_BATCH: usize = 10;

pub async fn run(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let proxies = o.proxies.unwrap_or(1000);
    let phase = o.duration.unwrap_or(Duration::from_secs(3));
    let rates = o
        .rates
        .clone()
        .unwrap_or_else(|| vec![100, 500, 2000, 5000]);
    let t = o.topology();
    let mode = o.mode();

    // The server under test: sluice on etcd, or the floor.
    let floor;
    let _etcd_and_sluice;
    let (server, mut fleet, ready, mut target) = if o.floor_only {
        let (f, fl, r) = b1::start_floor(env, "b2 floor", t, proxies, mode, false).await?;
        floor = f;
        (floor.pid(), fl, r, Target::FloorBatched(&floor))
    } else {
        let (etcd, sluice, fl, r) = env.etcd_m1("b2", t, proxies, mode).await?;
        let kv = etcd.client().await?;
        let pid = sluice.pid();
        _etcd_and_sluice = (etcd, sluice);
        (pid, fl, r, Target::Etcd(Box::new(kv)))
    };
    let label = if o.floor_only { "floor" } else { "sluice" };
    let mut mover = Mover::new(t);
    let mut next_id = 0u64;
    let mut rows = Vec::new();
    for &rate in &rates {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        // Moves per tick, spread so the rate is exact over a second.
        let ticks = (phase.as_millis() / TICK.as_millis()) as u64;
        let per_tick = |i: u64| (rate * (i + 1) / 100 - rate * i / 100) as usize;
        let mut batches = Vec::new();
        for i in 0..ticks {
            let batch: Vec<_> = (0..per_tick(i))
                .map(|_| {
                    next_id += 1;
                    mover.change(next_id)
                })
                .collect();
            for c in &batch {
                fleet.send(c.expectation());
            }
            batches.push(batch);
        }
        fleet.sync().await?;
        let u0 = procs::usage(server)?;
        let f0 = procs::cpu_seconds(fleet.pid())?;
        let start = Instant::now();
        let mut writes = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            tokio::time::sleep_until((start + TICK * i as u32).into()).await;
            if !batch.is_empty() {
                let t0 = procs::unix_ns();
                target.apply(batch).await?;
                writes.extend(batch.iter().map(|c| (c.id, t0)));
            }
            if (i + 1) % FLOOR_BATCH == 0 || i + 1 == batches.len() {
                target.flush();
            }
        }
        let written_in = start.elapsed();
        let ids: Vec<u64> = writes.iter().map(|(id, _)| *id).collect();
        let got = fleet.results(&ids, DRAIN).await?;
        let u1 = procs::usage(server)?;
        let fleet_cpu = procs::cpu_seconds(fleet.pid())? - f0;
        let mut lat = Latencies::default();
        for (id, t0) in &writes {
            lat.push(*t0, got.get(id).copied().unwrap_or((0, 0)), proxies);
        }
        let n = writes.len().max(1) as f64;
        let achieved = writes.len() as f64 / written_in.as_secs_f64();
        eprintln!(
            "b2: rate {rate}/s: achieved {achieved:.0}/s, p99 {} ms",
            fmt_ms(lat.quantile(0.99))
        );
        rows.push(Row {
            rate,
            achieved,
            lat,
            cpu: (u1.cpu_s - u0.cpu_s) / n,
            bytes: (u1.written - u0.written) as f64 / n,
            fleet_cpu: fleet_cpu / n,
        });
    }
    let stats = fleet.stats().await?;
    fleet.quit();

    // Sustained: p99 under 1 s and the writer kept (nearly) the rate.
    let sustained = rows
        .iter()
        .filter(|r| r.lat.quantile(0.99) < 1000.0 && r.achieved >= 0.9 * r.rate as f64)
        .map(|r| r.rate)
        .max();
    let how = if o.floor_only {
        format!(
            "the transport floor, staged moves pushed every {} ms",
            TICK.as_millis() * FLOOR_BATCH as u128
        )
    } else {
        "moves via etcd".into()
    };
    println!(
        "\nB2 churn: {proxies} {mode:?} proxies, M1 {}x{}, {how} ({} s per rate)",
        t.services,
        t.per,
        phase.as_secs_f64()
    );
    println!("| rate /s | achieved /s | moves | p50 ms | p99 ms | incomplete | {label} CPU µs / move | fleet CPU µs / move | bytes / move |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
            r.rate,
            r.achieved,
            r.lat.ms.len() + r.lat.incomplete,
            fmt_ms(r.lat.quantile(0.5)),
            fmt_ms(r.lat.quantile(0.99)),
            r.lat.incomplete,
            r.cpu * 1e6,
            r.fleet_cpu * 1e6,
            r.bytes
        );
    }
    println!(
        "highest rate sustained with p99 < 1 s: {}; NACKs {}",
        sustained.map_or("none".into(), |r| format!("{r}/s")),
        stats.nacks
    );
    Ok(json!({
        "scenario": "b2",
        "server": label,
        "mode": format!("{mode:?}").to_lowercase(),
        "proxies": proxies,
        "services": t.services,
        "endpoints_per_service": t.per,
        "seconds_per_rate": phase.as_secs_f64(),
        "configured_s": setup::num(ready.as_secs_f64()),
        "rates": rows.iter().map(|r| json!({
            "rate": r.rate,
            "achieved": setup::num(r.achieved),
            "latency": r.lat.json(),
            "cpu_us_per_change": setup::num(r.cpu * 1e6),
            "fleet_cpu_us_per_change": setup::num(r.fleet_cpu * 1e6),
            "bytes_per_change": setup::num(r.bytes),
        })).collect::<Vec<_>>(),
        "sustained_rate": sustained,
        "nacks": stats.nacks,
    }))
}

/// One rate's results; CPU (seconds) and bytes are per move.
struct Row {
    rate: u64,
    achieved: f64,
    lat: Latencies,
    cpu: f64,
    bytes: f64,
    fleet_cpu: f64,
}
