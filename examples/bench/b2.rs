//! B2 churn: endpoint moves at fixed rates (100 / 500 / 2,000 / 5,000 per
//! second by default, a few seconds each) through etcd. Every 10 ms one
//! etcd transaction writes that tick's moves (one revision, as a registry
//! that batches, and so the runner itself keeps up on two cores); each
//! move's latency runs from just before its transaction to the last proxy's
//! ACK of a CLA holding it (or a later move of the same endpoint). Per
//! rate: p99, CPU seconds of sluice per move, bytes it wrote per move.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procs;
use crate::setup::{self, fmt_ms, Env, Latencies, Mover, Opts};

const TICK: Duration = Duration::from_millis(10);
/// How long a rate's moves may take to reach everyone before they count
/// as never arriving.
const DRAIN: Duration = Duration::from_secs(15);

pub async fn run(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let proxies = o.proxies.unwrap_or(1000);
    let phase = o.duration.unwrap_or(Duration::from_secs(3));
    let rates = o
        .rates
        .clone()
        .unwrap_or_else(|| vec![100, 500, 2000, 5000]);
    let t = o.topology();
    let mode = o.mode();

    let (etcd, sluice, mut fleet, ready) = env.etcd_m1("b2", t, proxies, mode).await?;
    let mut kv = etcd.client().await?;
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
        let u0 = procs::usage(sluice.pid())?;
        let start = Instant::now();
        let mut writes = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            tokio::time::sleep_until((start + TICK * i as u32).into()).await;
            if batch.is_empty() {
                continue;
            }
            let t0 = procs::unix_ns();
            setup::put_changes(&mut kv, batch).await?;
            writes.extend(batch.iter().map(|c| (c.id, t0)));
        }
        let written_in = start.elapsed();
        let ids: Vec<u64> = writes.iter().map(|(id, _)| *id).collect();
        let got = fleet.results(&ids, DRAIN).await?;
        let u1 = procs::usage(sluice.pid())?;
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
        rows.push((
            rate,
            achieved,
            lat,
            (u1.cpu_s - u0.cpu_s) / n,
            (u1.written - u0.written) as f64 / n,
        ));
    }
    let stats = fleet.stats().await?;
    fleet.quit();

    // Sustained: p99 under 1 s and the writer kept (nearly) the rate.
    let sustained = rows
        .iter()
        .filter(|(rate, achieved, lat, _, _)| {
            lat.quantile(0.99) < 1000.0 && *achieved >= 0.9 * *rate as f64
        })
        .map(|(rate, ..)| *rate)
        .max();
    println!(
        "\nB2 churn: {proxies} {mode:?} proxies, M1 {}x{}, moves via etcd ({} s per rate)",
        t.services,
        t.per,
        phase.as_secs_f64()
    );
    println!("| rate /s | achieved /s | moves | p50 ms | p99 ms | incomplete | sluice CPU µs / move | bytes / move |");
    println!("|---|---|---|---|---|---|---|---|");
    for (rate, achieved, lat, cpu, bytes) in &rows {
        println!(
            "| {rate} | {achieved:.0} | {} | {} | {} | {} | {:.0} | {:.0} |",
            lat.ms.len() + lat.incomplete,
            fmt_ms(lat.quantile(0.5)),
            fmt_ms(lat.quantile(0.99)),
            lat.incomplete,
            cpu * 1e6,
            bytes
        );
    }
    println!(
        "highest rate sustained with p99 < 1 s: {}; NACKs {}",
        sustained.map_or("none".into(), |r| format!("{r}/s")),
        stats.nacks
    );
    Ok(json!({
        "scenario": "b2",
        "mode": format!("{mode:?}").to_lowercase(),
        "proxies": proxies,
        "services": t.services,
        "endpoints_per_service": t.per,
        "seconds_per_rate": phase.as_secs_f64(),
        "configured_s": setup::num(ready.as_secs_f64()),
        "rates": rows.iter().map(|(rate, achieved, lat, cpu, bytes)| json!({
            "rate": rate,
            "achieved": setup::num(*achieved),
            "latency": lat.json(),
            "cpu_us_per_change": setup::num(cpu * 1e6),
            "bytes_per_change": setup::num(*bytes),
        })).collect::<Vec<_>>(),
        "sustained_rate": sustained,
        "nacks": stats.nacks,
    }))
}
