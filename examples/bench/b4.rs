//! B4 memory: N idle delta streams, each proxy holding full M1 (static
//! rules). A fresh sluice per N: RSS before any stream, RSS once every
//! proxy is configured and things settled (`--duration SECS`, default 3);
//! per proxy = difference / N.

use std::time::Duration;

use serde_json::{json, Value};

use crate::procs;
use crate::setup::{self, Env, Opts};
use crate::topo::Source;

pub async fn run(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let counts = o
        .proxies
        .map_or_else(|| vec![1000, 5000, 10_000], |n| vec![n]);
    let t = o.topology();
    let mode = o.mode();
    let rules = env.write_rules("m1-static.yaml", t, Source::Static)?;
    let mut rows = Vec::new();
    for n in counts {
        let sluice = env.sluice(&rules, 0, &[]).await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let rss0 = procs::status_kb(sluice.pid(), "VmRSS")?;
        let cpu0 = procs::cpu_seconds(sluice.pid())?;
        let mut fleet = env.fleet(sluice.xds, n, mode).await?;
        let ready = fleet.wait_configured(Duration::from_secs(300)).await?;
        // CPU spent bringing the fleet up, by side: who bounds the sync.
        let sync_cpu = (
            procs::cpu_seconds(sluice.pid())? - cpu0,
            procs::cpu_seconds(fleet.pid())?,
        );
        // Settle (`--duration`, default 3 s; longer leaves time to look at
        // the idle process, e.g. with gdb or /proc/PID/smaps).
        tokio::time::sleep(o.duration.unwrap_or(Duration::from_secs(3))).await;
        let rss1 = procs::status_kb(sluice.pid(), "VmRSS")?;
        let fleet_rss = procs::status_kb(fleet.pid(), "VmRSS")?;
        let stats = fleet.stats().await?;
        fleet.quit();
        drop(sluice);
        let per = rss1.saturating_sub(rss0) as f64 / n as f64;
        eprintln!("b4: {n} proxies: {:.1} KiB each", per / 1024.0);
        rows.push((n, ready, rss0, rss1, per, fleet_rss, stats.nacks, sync_cpu));
    }
    println!(
        "\nB4 memory: idle {mode:?} streams holding M1 {}x{} (fresh sluice per row)",
        t.services, t.per
    );
    println!("| proxies | configured s | sluice / fleet CPU s to configure | sluice RSS 0 streams MiB | with N MiB | KiB per proxy | fleet RSS MiB | NACKs |");
    println!("|---|---|---|---|---|---|---|---|");
    let mib = |b: u64| b as f64 / 1048576.0;
    for (n, ready, rss0, rss1, per, fleet_rss, nacks, (scpu, fcpu)) in &rows {
        println!(
            "| {n} | {:.1} | {scpu:.1} / {fcpu:.1} | {:.0} | {:.0} | {:.1} | {:.0} | {nacks} |",
            ready.as_secs_f64(),
            mib(*rss0),
            mib(*rss1),
            per / 1024.0,
            mib(*fleet_rss)
        );
    }
    Ok(json!({
        "scenario": "b4",
        "mode": format!("{mode:?}").to_lowercase(),
        "services": t.services,
        "endpoints_per_service": t.per,
        "rows": rows.iter().map(|(n, ready, rss0, rss1, per, fleet_rss, nacks, (scpu, fcpu))| json!({
            "proxies": n,
            "configured_s": setup::num(ready.as_secs_f64()),
            "configure_cpu_s": {"sluice": setup::num(*scpu), "fleet": setup::num(*fcpu)},
            "rss_0_bytes": rss0,
            "rss_n_bytes": rss1,
            "bytes_per_proxy": setup::num(*per),
            "fleet_rss_bytes": fleet_rss,
            "nacks": nacks,
        })).collect::<Vec<_>>(),
    }))
}
