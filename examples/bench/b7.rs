//! B7 (issue #23): 10,000 delta proxies in one run against sluice serving
//! M1 from etcd. Measured: the time until every proxy is configured;
//! sluice's memory per proxy (its RSS with the fleet settled, less its RSS
//! before the fleet connected; target ≤ 64 KiB) and its peak; then one
//! endpoint move every 500 ms through etcd over `--duration` (default
//! 20 s), each timed from the write to the last proxy's ACK of a load
//! assignment holding it (p50 / p99 / max), with sluice's CPU and bytes
//! per move. One fleet process holds every proxy (about 30 KiB each).

use std::time::Duration;

use serde_json::{json, Value};

use crate::b1::{self, Target, INTERVAL};
use crate::procs::{self, Etcd};
use crate::setup::{self, fill_etcd, fmt_ms, Env, Mover, Opts};
use crate::topo::Source;

pub async fn run(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let proxies = o.proxies.unwrap_or(10_000);
    let duration = o.duration.unwrap_or(Duration::from_secs(20));
    let n = (duration.as_millis() / INTERVAL.as_millis()).max(1) as u64;
    let t = o.topology();
    let mode = o.mode();

    let etcd = Etcd::start().await?;
    fill_etcd(&etcd, t).await?;
    let rules = env.write_rules("m1-etcd.yaml", t, Source::Etcd { url: &etcd.url })?;
    let sluice = env.sluice(&rules, 0, &[]).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss0 = procs::status_kb(sluice.pid(), "VmRSS")?;
    let cpu0 = procs::cpu_seconds(sluice.pid())?;
    let (mut fleet, ready) = env
        .configured_fleet("b7", sluice.xds, proxies, mode)
        .await?;
    let sync_cpu = procs::cpu_seconds(sluice.pid())? - cpu0;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss1 = procs::status_kb(sluice.pid(), "VmRSS")?;
    let per_proxy = rss1.saturating_sub(rss0) as f64 / proxies.max(1) as f64;
    let fleet_rss = procs::status_kb(fleet.pid(), "VmRSS")?;

    let u0 = procs::usage(sluice.pid())?;
    let mut target = Target::Etcd(Box::new(etcd.client().await?));
    let (lat, _) = b1::drive(&mut fleet, &mut target, &mut Mover::new(t), n).await?;
    let u1 = procs::usage(sluice.pid())?;
    let peak = procs::status_kb(sluice.pid(), "VmHWM")?;
    let stats = fleet.stats().await?;
    fleet.quit();
    drop(sluice);
    drop(etcd);

    let changes = (lat.ms.len() + lat.incomplete).max(1) as f64;
    let cpu_per_move = (u1.cpu_s - u0.cpu_s) * 1e3 / changes;
    let bytes_per_move = (u1.written - u0.written) as f64 / changes;
    println!(
        "\nB7: {proxies} {mode:?} proxies, M1 {}x{} from etcd, one endpoint move every 500 ms",
        t.services, t.per
    );
    println!("| configured s | sluice KiB per proxy | sluice RSS before / settled / peak MiB | moves | p50 ms | p99 ms | max ms | incomplete | sluice CPU ms per move | KiB written per move | NACKs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {:.1} | {:.1} | {:.0} / {:.0} / {:.0} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {} |",
        ready.as_secs_f64(),
        per_proxy / 1024.0,
        rss0 as f64 / 1048576.0,
        rss1 as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        changes,
        fmt_ms(lat.quantile(0.5)),
        fmt_ms(lat.quantile(0.99)),
        fmt_ms(lat.quantile(1.0)),
        lat.incomplete,
        cpu_per_move,
        bytes_per_move / 1024.0,
        stats.nacks,
    );
    println!(
        "sluice CPU to configure the fleet: {sync_cpu:.1} s; fleet RSS {:.0} KiB per proxy",
        fleet_rss as f64 / 1024.0 / proxies.max(1) as f64
    );
    Ok(json!({
        "scenario": "b7",
        "mode": format!("{mode:?}").to_lowercase(),
        "proxies": proxies,
        "services": t.services,
        "endpoints_per_service": t.per,
        "configured_s": setup::num(ready.as_secs_f64()),
        "sluice_cpu_to_configure_s": setup::num(sync_cpu),
        "sluice_rss_kib_per_proxy": setup::num(per_proxy / 1024.0),
        "sluice_rss_before_bytes": rss0,
        "sluice_rss_settled_bytes": rss1,
        "sluice_rss_peak_bytes": peak,
        "fleet_rss_kib_per_proxy": setup::num(fleet_rss as f64 / 1024.0 / proxies.max(1) as f64),
        "latency": lat.json(),
        "cpu_ms_per_change": setup::num(cpu_per_move),
        "bytes_per_change": setup::num(bytes_per_move),
        "nacks": stats.nacks,
    }))
}
