//! Argument parsing and dispatch: a scenario, or one of the child modes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};

use crate::procs::Exes;
use crate::setup::{Env, Opts};

const USAGE: &str = "usage: bench SCENARIO [--proxies N] [--services N] [--endpoints N] \
[--duration SECS] [--sotw | --delta] [--mtls [--ticket-key]] [--rates R1,R2,..] [--out FILE.json] [--sluice PATH] [--floor-only (b1, b2, b5)] [--rollout-weights routes|runtime (b5)] [--routes N (b8)]
scenarios: b1 (convergence), b2 (churn), b3 (reconnect storm), b4 (memory), b5 (canary step), b6 (dashboard),
  b7 (10,000 delta proxies: configured, memory, moves), b8 (one route edited at 1k / 5k / 20k routes), failover (leader killed mid-rollout, 3 replicas), b3-ha (reconnect storm across 3 replicas)";

/// Runs `args`; `sluice` overrides where the sluice binary is looked for.
pub fn main(args: &[String], sluice: Option<PathBuf>) -> ExitCode {
    match run(args, sluice) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String], sluice: Option<PathBuf>) -> anyhow::Result<()> {
    let Some(scenario) = args.first() else {
        bail!("{USAGE}");
    };
    match scenario.as_str() {
        "fleet" => return crate::fleet::main(&args[1..]),
        "floor" => return crate::floor::main(&args[1..]),
        _ => {}
    }
    let (opts, sluice_flag) = parse(&args[1..])?;
    let this = std::env::current_exe()?;
    let sluice = match sluice_flag.or(sluice) {
        Some(p) => p,
        // target/release/examples/bench → target/release/sluice
        None => this
            .parent()
            .and_then(|d| d.parent())
            .map(|d| d.join("sluice"))
            .ok_or_else(|| anyhow!("cannot tell where sluice is; pass --sluice"))?,
    };
    if !sluice.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release) or pass --sluice",
            sluice.display()
        );
    }
    let nofile = crate::procs::raise_nofile(65_536);
    let exes = Exes { sluice, this };
    let env = Env::new(exes, opts.mtls, opts.ticket_key)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let result = rt.block_on(async {
        let scenario_run = async {
            match scenario.as_str() {
                "b1" => crate::b1::run(&env, &opts).await,
                "b2" => crate::b2::run(&env, &opts).await,
                "b3" => crate::b3::run(&env, &opts).await,
                "b4" => crate::b4::run(&env, &opts).await,
                "b5" => crate::b5::run(&env, &opts).await,
                "b6" => crate::b6::run(&env, &opts).await,
                "b7" => crate::b7::run(&env, &opts).await,
                "b8" => crate::b8::run(&env, &opts).await,
                "failover" => crate::ha::failover(&env, &opts).await,
                "b3-ha" => crate::ha::b3(&env, &opts).await,
                other => bail!("unknown scenario {other:?}\n{USAGE}"),
            }
        };
        // On SIGINT / SIGTERM the scenario is dropped, and with it the
        // children (etcd, sluice, fleet, floor are killed on drop).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = scenario_run => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = term.recv() => bail!("terminated"),
        }
    });
    let mut result = match result {
        Ok(r) => r,
        Err(e) => {
            // The children's logs die with the work directory: show their ends.
            for log in ["sluice.log", "fleet.log", "floor.log"] {
                let text = std::fs::read_to_string(env.path(log)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                for l in &lines[lines.len().saturating_sub(15)..] {
                    eprintln!("{log}: {l}");
                }
            }
            if std::env::var_os("SLUICE_BENCH_KEEP").is_some() {
                let dir = env.dir.keep();
                eprintln!("bench: kept the work directory {}", dir.display());
            }
            return Err(e);
        }
    };
    let wall = started.elapsed().as_secs_f64();
    let transport = if opts.ticket_key {
        "sluice's xDS over mTLS with a session ticket key, the floor plaintext"
    } else if opts.mtls {
        "sluice's xDS over mTLS, the floor plaintext"
    } else {
        "plaintext xDS"
    };
    println!("({scenario} took {wall:.1} s; RLIMIT_NOFILE {nofile}; {transport})");
    if let Some(obj) = result.as_object_mut() {
        obj.insert("wall_s".into(), crate::setup::num(wall));
        obj.insert("machine".into(), machine());
        obj.insert("args".into(), serde_json::json!(args));
        obj.insert("mtls".into(), opts.mtls.into());
        obj.insert("ticket_key".into(), opts.ticket_key.into());
    }
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/bench/{scenario}.json")));
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&result)? + "\n")?;
    println!("JSON: {}", out.display());
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn parse(args: &[String]) -> anyhow::Result<(Opts, Option<PathBuf>)> {
    let mut o = Opts {
        proxies: None,
        services: 1000,
        per: 10,
        duration: None,
        sotw: false,
        delta: false,
        rates: None,
        out: None,
        floor_only: false,
        rollout_weights: None,
        mtls: false,
        ticket_key: false,
        routes: None,
    };
    let mut sluice = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| anyhow!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--proxies" => o.proxies = Some(val()?.parse()?),
            "--services" => o.services = val()?.parse()?,
            "--routes" => o.routes = Some(val()?.parse()?),
            "--endpoints" => o.per = val()?.parse()?,
            "--duration" => o.duration = Some(Duration::from_secs_f64(val()?.parse()?)),
            "--sotw" => o.sotw = true,
            "--delta" => o.delta = true,
            "--floor-only" => o.floor_only = true,
            "--mtls" => o.mtls = true,
            "--ticket-key" => o.ticket_key = true,
            "--rollout-weights" => {
                o.rollout_weights = Some(match val()?.as_str() {
                    "routes" => sluice::canary::overlay::WeightsVia::Routes,
                    "runtime" => sluice::canary::overlay::WeightsVia::Runtime,
                    other => bail!("--rollout-weights: routes or runtime, not {other:?}"),
                })
            }
            "--rates" => {
                o.rates = Some(
                    val()?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?,
                );
            }
            "--out" => o.out = Some(PathBuf::from(val()?)),
            "--sluice" => sluice = Some(PathBuf::from(val()?)),
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    if o.services == 0 || o.services > 65_536 || o.per == 0 || o.per > 200 {
        bail!("--services must be 1..=65536 and --endpoints 1..=200");
    }
    Ok((o, sluice))
}

/// The machine the numbers come from.
fn machine() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "mem_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0,
        "loadavg": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "unix_s": crate::procs::unix_ns() / 1_000_000_000,
    })
}
