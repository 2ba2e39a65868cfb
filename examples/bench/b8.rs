//! B8 rules scale (issue #23): one route edited in a large rules file.
//! Per row (1,000 / 5,000 / 20,000 routes over a quarter as many services,
//! one endpoint each, one listener; `--routes N` for one row), a fresh
//! sluice serving the file to N delta proxies (default 1,000): three
//! edits, each moving one route (`/svc-0000/r0/`) to another service by
//! rewriting the file. Measured per edit: from the rename of the new file
//! until every proxy routes that path to the new service (its route
//! configuration ACKed); sluice's CPU from the write until then (the
//! reload, validation, compile and pushes; its idle rate, measured over
//! the 2 s before, is about 0.1 % of a core) and, from its `/metrics`, how
//! much of it was loading the file (parse, validate, compile for the
//! guard: `sluice_rules_load_seconds`) and publishing (compile:
//! `sluice_publish_compile_seconds`); and the bytes it wrote per proxy
//! (the whole route configuration: RDS sends it whole). The question is
//! whether the cost of one route's edit grows with the change or with the
//! file.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::b8_rules;
use crate::procs;
use crate::setup::{self, fmt_ms, Env, Opts};

/// Writes `text` to `path` as an editor's save does: a new file renamed
/// over the old one.
fn save(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("yaml.new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// One edit's measurements.
struct Edit {
    /// From the write until every proxy ACKed (`None`: some never did).
    ms: Option<f64>,
    /// Proxies that ACKed it.
    count: usize,
    /// sluice's CPU seconds meanwhile.
    cpu: f64,
    /// sluice's own timings (its `/metrics`): loading the file (parse,
    /// validate, compile for the guard) and the publish (compile).
    load_ms: f64,
    compile_ms: f64,
    /// Bytes sluice wrote meanwhile, per proxy.
    kib_per_proxy: f64,
}

/// The running sums of sluice's rules-load and publish histograms.
struct Timings {
    load: f64,
    compile: f64,
}

async fn timings(client: &reqwest::Client, admin: std::net::SocketAddr) -> anyhow::Result<Timings> {
    let text = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let sum = |name: &str| -> anyhow::Result<f64> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .with_context(|| format!("{name} not in sluice's /metrics"))?;
        Ok(line.trim().parse()?)
    };
    Ok(Timings {
        load: sum("sluice_rules_load_seconds_sum")?,
        compile: sum("sluice_publish_compile_seconds_sum")?,
    })
}

pub async fn run(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let proxies = o.proxies.unwrap_or(1000);
    let sizes = o
        .routes
        .map_or_else(|| vec![1000, 5000, 20_000], |n| vec![n]);
    let mode = o.mode();
    let mut rows = Vec::new();
    for routes in sizes {
        let path = env.path(&format!("b8-{routes}.yaml"));
        let services = routes.div_ceil(4);
        save(&path, &b8_rules::rules(routes, |s, _| s))?;
        let sluice = env.sluice(&path, 0, &[]).await?;
        let (mut fleet, ready) = env
            .configured_fleet(&format!("b8 {routes} routes"), sluice.xds, proxies, mode)
            .await?;
        let text_bytes = std::fs::metadata(&path)?.len();
        let cpu_before_idle = procs::cpu_seconds(sluice.pid())?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_cores = (procs::cpu_seconds(sluice.pid())? - cpu_before_idle) / 2.0;
        let mut edits = Vec::new();
        for e in 0..3u64 {
            // Edit e sends /svc-0000/r0/ to svc-(e+1), everything else as is.
            let to = (e as usize + 1) % services;
            let id = e + 1;
            let cluster = crate::topo::service(to);
            fleet.send(format!(
                "rds {id} /{}/r0/ {cluster} 100",
                crate::topo::service(0)
            ));
            fleet.sync().await?;
            let text = b8_rules::edited(routes, to);
            let m0 = timings(&client, sluice.admin).await?;
            let cpu0 = procs::cpu_seconds(sluice.pid())?;
            let written0 = procs::written_bytes(sluice.pid())?;
            let t0 = procs::unix_ns();
            save(&path, &text)?;
            let got = fleet.results(&[id], Duration::from_secs(120)).await?;
            let (count, max_ns) = got.get(&id).copied().unwrap_or((0, 0));
            let cpu = procs::cpu_seconds(sluice.pid())? - cpu0;
            let written = procs::written_bytes(sluice.pid())? - written0;
            let m1 = timings(&client, sluice.admin).await?;
            let ms = (count == proxies).then(|| max_ns.saturating_sub(t0) as f64 / 1e6);
            let edit = Edit {
                ms,
                count,
                cpu,
                load_ms: (m1.load - m0.load) * 1e3,
                compile_ms: (m1.compile - m0.compile) * 1e3,
                kib_per_proxy: written as f64 / 1024.0 / proxies as f64,
            };
            eprintln!(
                "b8: {routes} routes, edit {id}: {count}/{proxies} proxies in {} ms, sluice {:.0} ms CPU (load {:.1} ms, publish {:.1} ms), {:.0} KiB per proxy",
                ms.map_or("never".into(), fmt_ms),
                cpu * 1e3,
                edit.load_ms,
                edit.compile_ms,
                edit.kib_per_proxy,
            );
            edits.push(edit);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let stats = fleet.stats().await?;
        fleet.quit();
        drop(sluice);
        rows.push((
            routes,
            services,
            text_bytes,
            ready,
            idle_cores,
            edits,
            stats.nacks,
        ));
    }
    println!(
        "\nB8 rules scale: one route edited, {proxies} {mode:?} proxies, a fresh sluice per row"
    );
    println!("| routes | services | file KB | configured s | edit → all ACKed ms | sluice CPU ms | of which load ms | publish ms | KiB sent per proxy | NACKs |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (routes, services, bytes, ready, _, edits, nacks) in &rows {
        let each = |f: &dyn Fn(&Edit) -> String| -> String {
            edits.iter().map(f).collect::<Vec<_>>().join(" / ")
        };
        println!(
            "| {routes} | {services} | {} | {:.1} | {} | {} | {} | {} | {} | {nacks} |",
            bytes / 1024,
            ready.as_secs_f64(),
            each(&|e| e.ms.map_or("never".into(), fmt_ms)),
            each(&|e| format!("{:.0}", e.cpu * 1e3)),
            each(&|e| format!("{:.1}", e.load_ms)),
            each(&|e| format!("{:.1}", e.compile_ms)),
            each(&|e| format!("{:.0}", e.kib_per_proxy)),
        );
    }
    Ok(json!({
        "scenario": "b8",
        "mode": format!("{mode:?}").to_lowercase(),
        "proxies": proxies,
        "rows": rows.iter().map(|(routes, services, bytes, ready, idle, edits, nacks)| json!({
            "routes": routes,
            "services": services,
            "file_bytes": bytes,
            "configured_s": setup::num(ready.as_secs_f64()),
            "idle_cpu_cores": setup::num(*idle),
            "edits": edits.iter().map(|e| json!({
                "all_acked_ms": e.ms.map(setup::num),
                "proxies_acked": e.count,
                "sluice_cpu_ms": setup::num(e.cpu * 1e3),
                "rules_load_ms": setup::num(e.load_ms),
                "publish_compile_ms": setup::num(e.compile_ms),
                "kib_per_proxy": setup::num(e.kib_per_proxy),
            })).collect::<Vec<_>>(),
            "nacks": nacks,
        })).collect::<Vec<_>>(),
    }))
}
