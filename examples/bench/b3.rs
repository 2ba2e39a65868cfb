//! B3 reconnect storm: every proxy holds full M1 (static rules), then
//! sluice is killed (SIGKILL) and started again on the same port. Measured
//! from the kill: until every proxy has a stream again, and until every
//! proxy has ACKed every type again; failed streams (streams opened beyond
//! one reconnect per proxy: refused or broken ones) and NACKs; the peak
//! RSS of the new sluice (VmHWM) and its RSS once the storm is over (a
//! second after the last ACK). SotW unless `--delta`.
//!
//! To say why a stream failed and what bounds the storm, it also reports
//! the fleet's stream-end warnings written after the kill (tallied by
//! reason), the machine's TCP listen-queue overflows during the storm
//! (`ListenOverflows` of `/proc/net/netstat`: system-wide, so other
//! processes' drops count too), and the CPU sluice and the fleet used
//! from the kill until every proxy had ACKed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::sim::state::Mode;

use crate::procs::{self};
use crate::setup::{self, Env, Opts};
use crate::topo::Source;

pub async fn run(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let proxies = o.proxies.unwrap_or(2000);
    let t = o.topology();
    // SotW by default (Envoy's default ADS flavour, and `sluice bootstrap`'s):
    // a reconnecting SotW proxy gets every type again and ACKs it. A delta
    // proxy announces what it holds (`initial_resource_versions`) and sluice
    // rightly sends nothing unchanged, so with `--delta` only the reconnect
    // is timed.
    let mode = if o.delta { Mode::Delta } else { Mode::Sotw };
    let rules = env.write_rules("m1-static.yaml", t, Source::Static)?;
    let port = procs::free_port()?;
    let mut sluice = env.sluice(&rules, port, &[]).await?;
    let (mut fleet, ready) = env
        .configured_fleet("b3", sluice.xds, proxies, mode)
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s0 = fleet.stats().await?;

    let kill_ns = procs::unix_ns();
    fleet.send(format!("all 1 {kill_ns}"));
    fleet.sync().await?;
    let fleet_log = env.path("fleet.log");
    let log_at_kill = std::fs::metadata(&fleet_log).map_or(0, |m| m.len());
    let overflows0 = listen_overflows();
    let fleet_cpu0 = procs::cpu_seconds(fleet.pid())?;
    let killed = Instant::now();
    sluice.kill();
    drop(sluice);
    let sluice = env.sluice(&rules, port, &[]).await?;
    let restarted = killed.elapsed();
    // Everyone has a stream again.
    let reconnected = loop {
        let s = fleet.stats().await?;
        if s.connected == proxies && s.streams >= s0.streams + proxies as u64 {
            break Some(killed.elapsed());
        }
        if killed.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wait = if mode == Mode::Delta { 5 } else { 60 };
    let got = fleet.results(&[1], Duration::from_secs(wait)).await?;
    let (count, max_ns) = got.get(&1).copied().unwrap_or((0, 0));
    let all_acked_s = (count == proxies).then(|| max_ns.saturating_sub(kill_ns) as f64 / 1e9);
    // Until now (≈ the last ACK): the new process's whole life.
    let sluice_cpu = procs::cpu_seconds(sluice.pid())?;
    let fleet_cpu = procs::cpu_seconds(fleet.pid())? - fleet_cpu0;
    let overflows = listen_overflows().saturating_sub(overflows0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s1 = fleet.stats().await?;
    let peak_rss = procs::status_kb(sluice.pid(), "VmHWM")?;
    let rss_after = procs::status_kb(sluice.pid(), "VmRSS")?;
    fleet.quit();
    let failed = (s1.streams - s0.streams).saturating_sub(proxies as u64);
    // Why streams ended after the kill, from the fleet's log: the kill
    // ends one per proxy; anything beyond that is what `failed` counts.
    let ends = stream_ends(&fleet_log, log_at_kill);
    let nacks = s1.nacks - s0.nacks;
    let secs = |d: Option<f64>| d.map_or("never".into(), |s| format!("{s:.2}"));
    println!("\nB3 reconnect storm: {proxies} {mode:?} proxies holding M1 {}x{}; sluice SIGKILLed and restarted", t.services, t.per);
    println!("| sluice back (ready) s | all reconnected s | all ACKed every type s | proxies ACKed | failed streams | NACKs | peak RSS MiB | RSS after MiB |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {:.2} | {} | {} | {count}/{proxies} | {failed} | {nacks} | {:.0} | {:.0} |",
        restarted.as_secs_f64(),
        secs(reconnected.map(|d| d.as_secs_f64())),
        secs(all_acked_s),
        peak_rss as f64 / 1048576.0,
        rss_after as f64 / 1048576.0
    );
    for (reason, n) in &ends {
        println!("stream ends in the fleet after the kill: {n} × {reason}");
    }
    println!(
        "from the kill to the last ACK: sluice {sluice_cpu:.1} s CPU, fleet {fleet_cpu:.1} s CPU; TCP listen-queue overflows (whole machine): {overflows}"
    );
    Ok(json!({
        "scenario": "b3",
        "mode": format!("{mode:?}").to_lowercase(),
        "proxies": proxies,
        "services": t.services,
        "endpoints_per_service": t.per,
        "configured_s": setup::num(ready.as_secs_f64()),
        "sluice_ready_after_kill_s": setup::num(restarted.as_secs_f64()),
        "all_reconnected_s": reconnected.map(|d| setup::num(d.as_secs_f64())),
        "all_acked_s": all_acked_s.map(setup::num),
        "proxies_acked": count,
        "failed_streams": failed,
        "nacks": nacks,
        "peak_rss_bytes": peak_rss,
        "rss_after_bytes": rss_after,
        "stream_ends_after_kill": ends,
        "storm_cpu_s": { "sluice": setup::num(sluice_cpu), "fleet": setup::num(fleet_cpu) },
        "listen_overflows": overflows,
    }))
}

/// The fleet's `sim: stream ...` warnings written past byte `from` of its
/// log, tallied by what they say (without the node and the timestamp).
fn stream_ends(log: &std::path::Path, from: u64) -> BTreeMap<String, usize> {
    let bytes = std::fs::read(log).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[from..]);
    let mut ends = BTreeMap::new();
    for line in text.lines() {
        let Some(at) = line.find("sim: stream") else {
            continue;
        };
        let reason: Vec<&str> = line[at..]
            .split(' ')
            .filter(|w| !w.starts_with("node="))
            .collect();
        *ends.entry(reason.join(" ")).or_insert(0) += 1;
    }
    ends
}

/// `TcpExt: ListenOverflows` of `/proc/net/netstat`: connections the
/// kernel could not queue for `accept` (0 where unreadable).
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let found = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "ListenOverflows");
        return found.and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    }
    0
}
