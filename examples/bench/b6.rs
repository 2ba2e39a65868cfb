//! B6 dashboard (issue #21): with N proxies connected (default 1,000
//! delta) to sluice serving M1, and nothing changing:
//!
//! - the data endpoints the page polls (`/status`, `/rollouts`,
//!   `/drains`, `/services`): per endpoint, p50 / p99 / max over 200
//!   sequential GETs;
//! - the page's first render in headless chromium (driven over
//!   chromedriver): from navigation start to the page's
//!   `sluice-first-render` performance mark, the end of its first render
//!   of all four answers, in the page's own clock;
//! - sluice's CPU, in % of one core, over `--duration SECS` (default 10)
//!   with no page open, then with one page open and polling.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procs;
use crate::setup::{self, fmt_ms, Env, Opts};
use crate::topo::Source;

#[path = "../../tests/dashboard/browser.rs"]
#[allow(dead_code)]
mod browser;

const ROUNDS: usize = 200;
const PATHS: [&str; 4] = ["/status", "/rollouts", "/drains", "/services"];

pub async fn run(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let n = o.proxies.unwrap_or(1000);
    let idle = o.duration.unwrap_or(Duration::from_secs(10));
    let t = o.topology();
    let rules = env.write_rules("m1-static.yaml", t, Source::Static)?;
    // A rollout controller, so /rollouts answers as it does in use.
    let state = env.path("state");
    let extra = vec!["--state-dir".to_string(), state.display().to_string()];
    let sluice = env.sluice(&rules, 0, &extra).await?;
    let (fleet, _) = env.configured_fleet("b6", sluice.xds, n, o.mode()).await?;
    let admin = sluice.admin;
    let client = reqwest::Client::builder().no_proxy().build()?;

    let mut rows = Vec::new();
    for path in PATHS {
        let url = format!("http://{admin}{path}");
        let mut ms = Vec::with_capacity(ROUNDS);
        let mut bytes = 0;
        for _ in 0..ROUNDS {
            let start = Instant::now();
            let body = client
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            ms.push(start.elapsed().as_secs_f64() * 1e3);
            bytes = body.len();
        }
        ms.sort_by(f64::total_cmp);
        let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
        rows.push((path, q(0.5), q(0.99), ms[ms.len() - 1], bytes));
    }

    let cpu_idle = cpu_percent(sluice.pid(), idle).await?;
    let b = browser::Browser::start().await;
    b.goto(&format!("http://{admin}/ui")).await;
    let first = b
        .wait_js(
            "the first render",
            "const m = performance.getEntriesByName('sluice-first-render');
             return m.length ? m[0].startTime : null;",
        )
        .await
        .as_f64()
        .unwrap_or(f64::NAN);
    let shown = b
        .eval("return document.querySelector('#count-connected').textContent;")
        .await;
    let cpu_page = cpu_percent(sluice.pid(), idle).await?;
    b.close().await;
    fleet.quit();

    println!(
        "\nB6 dashboard: {n} {:?} proxies on M1 {}x{}, nothing changing",
        o.mode(),
        t.services,
        t.per
    );
    println!("| endpoint | p50 ms | p99 ms | max ms | bytes |");
    println!("|---|---|---|---|---|");
    for (path, p50, p99, max, bytes) in &rows {
        println!(
            "| `{path}` | {} | {} | {} | {bytes} |",
            fmt_ms(*p50),
            fmt_ms(*p99),
            fmt_ms(*max)
        );
    }
    println!(
        "first render {} ms (page shows {shown} connected); sluice CPU {cpu_idle:.2} % of a core without a page, {cpu_page:.2} % with one open ({} s each)",
        fmt_ms(first),
        idle.as_secs()
    );
    Ok(json!({
        "scenario": "b6",
        "proxies": n,
        "mode": format!("{:?}", o.mode()).to_lowercase(),
        "services": t.services,
        "endpoints_per_service": t.per,
        "endpoints": rows.iter().map(|(path, p50, p99, max, bytes)| json!({
            "path": path,
            "p50_ms": setup::num(*p50),
            "p99_ms": setup::num(*p99),
            "max_ms": setup::num(*max),
            "bytes": bytes,
        })).collect::<Vec<_>>(),
        "first_render_ms": setup::num(first),
        "page_connected": shown,
        "cpu_percent_no_page": setup::num(cpu_idle),
        "cpu_percent_page_open": setup::num(cpu_page),
        "cpu_window_s": idle.as_secs_f64(),
    }))
}

/// sluice's CPU over `window`, in % of one core.
async fn cpu_percent(pid: u32, window: Duration) -> anyhow::Result<f64> {
    let before = procs::cpu_seconds(pid)?;
    tokio::time::sleep(window).await;
    Ok((procs::cpu_seconds(pid)? - before) / window.as_secs_f64() * 100.0)
}
