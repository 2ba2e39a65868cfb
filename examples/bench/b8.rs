//! B8 rules scale (issue #23): one route edited in a large rules file.
//! Per row (1,000 / 5,000 / 20,000 routes over a quarter as many services,
//! one endpoint each, one listener; `--routes N` for one row), a fresh
//! sluice serving the file to N delta proxies (default 1,000): three
//! edits, each moving one route (`/svc-0000/r0/`) to another service by
//! rewriting the file. Measured per edit: from the rename of the new file
//! until every proxy routes that path to the new service (its route
//! configuration ACKed), and sluice's CPU from the write until then (the
//! reload, validation, compile and pushes; its idle rate, measured over
//! the 2 s before, is about 0.1 % of a core). The question is whether the
//! cost of one route's edit grows with the change or with the file.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::procs;
use crate::setup::{self, fmt_ms, Env, Opts};

/// The rules: `routes` routes, four per service, each service one
/// endpoint; route `r` of service `s` matches `/svc-SSSS/rR/` and goes to
/// `target(s, r)`.
fn rules(routes: usize, target: impl Fn(usize, usize) -> usize) -> String {
    let services = routes.div_ceil(4);
    let mut s = String::with_capacity(routes * 90 + services * 110);
    s.push_str("services:\n");
    for i in 0..services {
        let _ = writeln!(
            s,
            "  - name: {}\n    endpoints: [{{address: {}, port: {}}}]",
            crate::topo::service(i),
            crate::topo::address(i, 0),
            crate::topo::BASE_PORT
        );
    }
    s.push_str(
        "listeners:\n  - name: http\n    address: 127.0.0.1\n    port: 10000\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n",
    );
    for r in 0..routes {
        let (svc, k) = (r / 4, r % 4);
        let _ = writeln!(
            s,
            "          - match: {{prefix: /{}/r{k}/}}\n            to: {{service: {}}}",
            crate::topo::service(svc),
            crate::topo::service(target(svc, k))
        );
    }
    s
}

/// Writes `text` to `path` as an editor's save does: a new file renamed
/// over the old one.
fn save(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("yaml.new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub async fn run(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let proxies = o.proxies.unwrap_or(1000);
    let sizes = o
        .routes
        .map_or_else(|| vec![1000, 5000, 20_000], |n| vec![n]);
    let mode = o.mode();
    let mut rows = Vec::new();
    for routes in sizes {
        let path = env.path(&format!("b8-{routes}.yaml"));
        let services = routes.div_ceil(4);
        save(&path, &rules(routes, |s, _| s))?;
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
            let text = rules(routes, |s, k| if s == 0 && k == 0 { to } else { s });
            let cpu0 = procs::cpu_seconds(sluice.pid())?;
            let t0 = procs::unix_ns();
            save(&path, &text)?;
            let got = fleet.results(&[id], Duration::from_secs(120)).await?;
            let (count, max_ns) = got.get(&id).copied().unwrap_or((0, 0));
            let cpu = procs::cpu_seconds(sluice.pid())? - cpu0;
            let ms = (count == proxies).then(|| max_ns.saturating_sub(t0) as f64 / 1e6);
            eprintln!(
                "b8: {routes} routes, edit {id}: {count}/{proxies} proxies in {} ms, sluice {:.0} ms CPU",
                ms.map_or("never".into(), fmt_ms),
                cpu * 1e3
            );
            edits.push((ms, count, cpu));
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
    println!("| routes | services | file KB | configured s | edit → all ACKed ms (3 edits) | sluice CPU ms per edit | NACKs |");
    println!("|---|---|---|---|---|---|---|");
    for (routes, services, bytes, ready, _, edits, nacks) in &rows {
        let ms: Vec<String> = edits
            .iter()
            .map(|(ms, ..)| ms.map_or("never".into(), fmt_ms))
            .collect();
        let cpu: Vec<String> = edits
            .iter()
            .map(|(_, _, c)| format!("{:.0}", c * 1e3))
            .collect();
        println!(
            "| {routes} | {services} | {} | {:.1} | {} | {} | {nacks} |",
            bytes / 1024,
            ready.as_secs_f64(),
            ms.join(" / "),
            cpu.join(" / ")
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
            "edits": edits.iter().map(|(ms, count, cpu)| json!({
                "all_acked_ms": ms.map(setup::num),
                "proxies_acked": count,
                "sluice_cpu_ms": setup::num(cpu * 1e3),
            })).collect::<Vec<_>>(),
            "nacks": nacks,
        })).collect::<Vec<_>>(),
    }))
}
