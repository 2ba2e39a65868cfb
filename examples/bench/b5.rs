//! B5 canary step: a rollout of `svc-0000` driven through sluice's admin
//! gRPC API as `sluice rollout` does: `Start` (5 %), then `Promote` every
//! 2 s to the next step (10 … 100 %; analysis is left to a one-hour
//! interval, so only the operator moves it), then `Abort` (back to 0 %).
//! Per step: from just before the API call to the last proxy's ACK of
//! what carries that weight.
//!
//! `--rollout-weights runtime` (the default) runs sluice with
//! `--rollout-weights runtime` and a fleet subscribed to sluice's RTDS
//! layer, as `sluice bootstrap` sets Envoy up. The governed route, a plain
//! route to the stable subset, reads the runtime keys before the rollout
//! starts (sluice arms it), so every step, the first included, changes
//! the runtime layer alone; a step is complete when a proxy routes with
//! that weight and has ACKed the routes and the layer.
//! `--rollout-weights routes`: every step is a route configuration push.
//!
//! Then the transport floor, with the same fleet: what each step changes
//! (sluice's own compile of the rules with that weight, the route
//! configurations and runtime layer whose bytes differ from the step
//! before; the floor starts from the armed routes too) is encoded before
//! the run, and each step pushes it to every stream. `--floor-only` runs
//! that half alone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::canary::overlay::{Overlay, Overlays, WeightsVia};
use sluice::canary::pb::{self, rollout_service_client::RolloutServiceClient};
use sluice::xds::TypeUrl;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::fleet_proc::FleetProc;
use crate::procs::{self, Peer};
use crate::setup::{self, fmt_ms, Env, Latencies, Opts, Server};
use crate::topo::{self, Source};

const TOKEN: &str = "bench-token-0123456789abcdef";
const STEP_GAP: Duration = Duration::from_secs(2);

fn req<T>(msg: T) -> anyhow::Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {TOKEN}"))?,
    );
    Ok(r)
}

/// The weights of the steps: 5 … 100, then the rollback to 0.
fn weights() -> Vec<u32> {
    steps().into_iter().chain([0]).collect()
}

fn steps() -> Vec<u32> {
    (1..=20).map(|i| i * 5).collect()
}

/// What moves the weight: sluice's rollout API, or the floor.
enum Driver<'a> {
    Api(RolloutServiceClient<Channel>),
    /// The floor, and what each step changes (type, name, file).
    Floor(&'a Peer, Vec<Vec<(TypeUrl, String, PathBuf)>>),
}

impl Driver<'_> {
    /// Before the clock starts: the floor stages the step's resources.
    fn prepare(&self, step: usize) {
        if let Driver::Floor(floor, files) = self {
            for (ty, name, file) in &files[step] {
                floor.send(format!(
                    "stage-file {} {name} {}",
                    ty.as_str(),
                    file.display()
                ));
            }
        }
    }

    async fn act(&mut self, step: usize, w: u32) -> anyhow::Result<()> {
        let api = match self {
            Driver::Floor(floor, _) => {
                floor.send("push".into());
                return Ok(());
            }
            Driver::Api(api) => api,
        };
        let service = topo::CANARY_SERVICE.to_string();
        let r = if step == 0 {
            api.start(req(pb::StartRequest {
                service: service.clone(),
                from: "stable".into(),
                to: "canary".into(),
                steps: steps(),
                interval_ms: 3_600_000,
                max_error_rate: 0.05,
                max_p99_ms: 0,
                failure_threshold: 3,
                ack_share: 0.0,
                ack_timeout_ms: 600_000,
                ..Default::default()
            })?)
            .await
        } else if w == 0 {
            api.abort(req(pb::ServiceRequest { service })?).await
        } else {
            api.promote(req(pb::PromoteRequest {
                service,
                full: false,
            })?)
            .await
        };
        let r = r?.into_inner();
        anyhow::ensure!(
            r.canary_weight == w,
            "rollout at {}%, expected {w}% ({})",
            r.canary_weight,
            r.reason
        );
        Ok(())
    }
}

/// One half of the run: latencies and CPU over the steps.
struct Run {
    lat: Latencies,
    /// Every step but the first (where a rollout that has to change the
    /// routes at its start, a split in the rules or a header route,
    /// differs from the others).
    after_first: Latencies,
    per_step: Vec<Value>,
    server_cpu: f64,
    fleet_cpu: f64,
    /// The server's CPU over the 2 s before the first step, in cores.
    idle_cores: f64,
    nacks: u64,
    ready: Duration,
}

impl Run {
    fn cpu_ms_per_step(&self, cpu: f64) -> f64 {
        cpu * 1e3 / self.per_step.len().max(1) as f64
    }

    fn json(&self) -> Value {
        json!({
            "configured_s": setup::num(self.ready.as_secs_f64()),
            "latency": self.lat.json(),
            "latency_after_first_step": self.after_first.json(),
            "cpu_ms_per_step": setup::num(self.cpu_ms_per_step(self.server_cpu)),
            "fleet_cpu_ms_per_step": setup::num(self.cpu_ms_per_step(self.fleet_cpu)),
            "idle_cpu_cores": setup::num(self.idle_cores),
            "steps": self.per_step,
            "nacks": self.nacks,
        })
    }
}

/// Every step, 2 s apart, against one server; the fleet is told first
/// what each step's route configuration carries. CPU is counted from the
/// first step to the last ACK (or the wait's end), idle included, so the
/// idle rate is measured over the 2 s before, to tell a step's cost from
/// what the server burns with no change at all.
async fn drive(
    fleet: &mut FleetProc,
    driver: &mut Driver<'_>,
    server_pid: u32,
    proxies: usize,
    ready: Duration,
) -> anyhow::Result<Run> {
    let canary = format!("{}~canary", topo::CANARY_SERVICE);
    let idle0 = procs::cpu_seconds(server_pid)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (s0, f0) = (
        procs::cpu_seconds(server_pid)?,
        procs::cpu_seconds(fleet.pid())?,
    );
    let start = Instant::now();
    let mut writes = Vec::new();
    for (i, w) in weights().into_iter().enumerate() {
        tokio::time::sleep_until((start + STEP_GAP * i as u32).into()).await;
        let id = i as u64 + 1;
        fleet.send(format!("rds {id} {} {canary} {w}", topo::canary_path()));
        fleet.sync().await?;
        driver.prepare(i);
        let t0 = procs::unix_ns();
        driver.act(i, w).await?;
        writes.push((id, w, t0));
    }
    let ids: Vec<u64> = writes.iter().map(|(id, ..)| *id).collect();
    let got = fleet.results(&ids, Duration::from_secs(30)).await?;
    let (server_cpu, fleet_cpu) = (
        procs::cpu_seconds(server_pid)? - s0,
        procs::cpu_seconds(fleet.pid())? - f0,
    );
    let idle_cores = (s0 - idle0) / 2.0;
    let stats = fleet.stats().await?;
    let mut lat = Latencies::default();
    let mut after_first = Latencies::default();
    let mut per_step = Vec::new();
    for (i, (id, w, t0)) in writes.iter().enumerate() {
        let mut one = Latencies::default();
        let r = got.get(id).copied().unwrap_or((0, 0));
        one.push(*t0, r, proxies);
        lat.push(*t0, r, proxies);
        if i > 0 {
            after_first.push(*t0, r, proxies);
        }
        per_step.push(json!({"canary_weight": w, "all_acked_ms": setup::num(one.quantile(1.0)), "proxies_acked": r.0}));
    }
    Ok(Run {
        lat,
        after_first,
        per_step,
        server_cpu,
        fleet_cpu,
        idle_cores,
        nacks: stats.nacks,
        ready,
    })
}

/// sluice with the admin gRPC API, its fleet, the rollout's steps.
async fn sluice_run(env: &Env, o: &Opts, rules: &std::path::Path) -> anyhow::Result<Run> {
    let proxies = o.proxies.unwrap_or(1000);
    let via = weights_via(o);
    let token = env.path("token");
    std::fs::write(&token, format!("{TOKEN}\n"))?;
    let extra: Vec<String> = [
        "--state-dir",
        &env.path("state").display().to_string(),
        "--admin-grpc",
        "127.0.0.1:0",
        "--admin-token-file",
        &token.display().to_string(),
        "--rollout-weights",
        match via {
            WeightsVia::Routes => "routes",
            WeightsVia::Runtime => "runtime",
        },
    ]
    .map(String::from)
    .to_vec();
    let sluice = env.sluice(rules, 0, &extra).await?;
    let grpc = sluice
        .admin_grpc
        .ok_or_else(|| anyhow::anyhow!("no admin gRPC address"))?;
    let api = RolloutServiceClient::connect(format!("http://{grpc}")).await?;
    let (mut fleet, ready) = env
        .configured_fleet_rtds(
            "b5",
            Server::Sluice,
            sluice.xds,
            proxies,
            o.mode(),
            via == WeightsVia::Runtime,
        )
        .await?;
    let run = drive(
        &mut fleet,
        &mut Driver::Api(api),
        sluice.pid(),
        proxies,
        ready,
    )
    .await;
    fleet.quit();
    run
}

fn weights_via(o: &Opts) -> WeightsVia {
    o.rollout_weights.unwrap_or(WeightsVia::Runtime)
}

/// What each step changes as sluice compiles `rules` with the rollout's
/// weight: the route configurations and runtime layer whose bytes differ
/// from the step before (the first step: from the rules without a
/// rollout, armed with runtime weights, which the floor serves at start),
/// encoded to files.
fn floor_changes(
    env: &Env,
    rules: &std::path::Path,
    via: WeightsVia,
) -> anyhow::Result<Vec<Vec<(TypeUrl, String, PathBuf)>>> {
    let config = sluice::rules::load_file(rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    let start = crate::floor::armed(config.clone(), via == WeightsVia::Runtime);
    let mut prev = sluice::compile::compile(&start).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    for (i, w) in weights().into_iter().enumerate() {
        let mut c = config.clone();
        let overlay = Overlay {
            stable: "stable".into(),
            canary: "canary".into(),
            canary_weight: w,
            header: None,
        };
        Overlays([(topo::CANARY_SERVICE.to_string(), overlay)].into()).apply(&mut c, via);
        let snaps = sluice::compile::compile(&c).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut files = Vec::new();
        for ty in [TypeUrl::Runtime, TypeUrl::Route] {
            for (k, (name, r)) in snaps.fallback.resources(ty).iter().enumerate() {
                if prev
                    .fallback
                    .get(ty, name)
                    .is_some_and(|p| p.version == r.version)
                {
                    continue;
                }
                let file = env.path(&format!("b5-{}-{i}-{k}.pb", ty.short()));
                std::fs::write(&file, &r.body)?;
                files.push((ty, name.clone(), file));
            }
        }
        out.push(files);
        prev = snaps;
    }
    Ok(out)
}

/// The floor, the same fleet size and mode, the same steps.
async fn floor_run(env: &Env, o: &Opts, rules: &std::path::Path) -> anyhow::Result<Run> {
    let proxies = o.proxies.unwrap_or(1000);
    let via = weights_via(o);
    let files = floor_changes(env, rules, via)?;
    let runtime = via == WeightsVia::Runtime;
    let (floor, mut fleet, ready) =
        crate::b1::start_floor(env, "b5 floor", o.topology(), proxies, o.mode(), runtime).await?;
    let pid = floor.pid();
    let run = drive(
        &mut fleet,
        &mut Driver::Floor(&floor, files),
        pid,
        proxies,
        ready,
    )
    .await;
    fleet.quit();
    floor.quit(Duration::from_secs(5));
    run
}

pub async fn run(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let proxies = o.proxies.unwrap_or(1000);
    let (t, mode) = (o.topology(), o.mode());
    let rules = env.write_rules("m1-static.yaml", t, Source::Static)?;
    let sluice = match o.floor_only {
        true => None,
        false => Some(sluice_run(env, o, &rules).await?),
    };
    let floor = floor_run(env, o, &rules).await?;

    let via = weights_via(o);
    println!("\nB5 canary step: {proxies} {mode:?} proxies, M1 {}x{}, weights via {via:?}; a step every 2 s, then abort (sluice: rollout via admin gRPC; floor: the same changes, pre-encoded)", t.services, t.per);
    println!("| server | steps | p50 ms | p99 ms | max ms | incomplete | NACKs | CPU ms/step | fleet CPU ms/step | idle cores |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in [
        ("sluice", sluice.as_ref()),
        ("transport floor", Some(&floor)),
    ] {
        let Some(r) = r else { continue };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.3} |",
            r.per_step.len(),
            fmt_ms(r.lat.quantile(0.5)),
            fmt_ms(r.lat.quantile(0.99)),
            fmt_ms(r.lat.quantile(1.0)),
            r.lat.incomplete,
            r.nacks,
            r.cpu_ms_per_step(r.server_cpu),
            r.cpu_ms_per_step(r.fleet_cpu),
            r.idle_cores,
        );
    }
    for (name, r) in [
        ("sluice", sluice.as_ref()),
        ("transport floor", Some(&floor)),
    ] {
        let Some(r) = r else { continue };
        println!(
            "{name}, steps after the first: p50 {} ms, max {} ms",
            fmt_ms(r.after_first.quantile(0.5)),
            fmt_ms(r.after_first.quantile(1.0)),
        );
    }
    let ratio = |q: f64| {
        sluice
            .as_ref()
            .map(|s| setup::num(s.lat.quantile(q) / floor.lat.quantile(q)))
    };
    if let (Some(p50), Some(p99)) = (ratio(0.5), ratio(0.99)) {
        println!("sluice / floor: p50 {p50}x, p99 {p99}x");
    }
    Ok(json!({
        "scenario": "b5",
        "floor_only": o.floor_only,
        "rollout_weights": format!("{via:?}").to_lowercase(),
        "mode": format!("{mode:?}").to_lowercase(),
        "proxies": proxies,
        "services": t.services,
        "endpoints_per_service": t.per,
        "sluice": sluice.as_ref().map(Run::json),
        "floor": floor.json(),
        "ratio_to_floor": {"p50": ratio(0.5), "p99": ratio(0.99)},
    }))
}
