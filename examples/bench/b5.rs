//! B5 canary step: a rollout of `svc-0000` driven through sluice's admin
//! gRPC API as `sluice rollout` does: `Start` (5 %), then `Promote` every
//! 2 s to the next step (10 … 100 %; analysis is left to a one-hour
//! interval, so only the operator moves it), then `Abort` (back to 0 %).
//! Per step: from just before the API call to the last proxy's ACK of a
//! route configuration carrying that weight.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::canary::pb::{self, rollout_service_client::RolloutServiceClient};
use tonic::metadata::MetadataValue;

use crate::procs;
use crate::setup::{self, fmt_ms, Env, Latencies, Opts};
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

pub async fn run(env: &Env, o: &Opts) -> anyhow::Result<Value> {
    let proxies = o.proxies.unwrap_or(1000);
    let t = o.topology();
    let mode = o.mode();
    let rules = env.write_rules("m1-static.yaml", t, Source::Static)?;
    let token = env.path("token");
    std::fs::write(&token, format!("{TOKEN}\n"))?;
    let extra: Vec<String> = [
        "--state-dir",
        &env.path("state").display().to_string(),
        "--admin-grpc",
        "127.0.0.1:0",
        "--admin-token-file",
        &token.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let sluice = env.sluice(&rules, 0, &extra).await?;
    let grpc = sluice
        .admin_grpc
        .ok_or_else(|| anyhow::anyhow!("no admin gRPC address"))?;
    let mut api = RolloutServiceClient::connect(format!("http://{grpc}")).await?;
    let (mut fleet, ready) = env
        .configured_fleet("b5", sluice.xds, proxies, mode)
        .await?;
    // Idle over the 2 s before the first step, so a step's CPU can be told
    // from what sluice burns with no change at all.
    let idle0 = procs::cpu_seconds(sluice.pid())?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu0 = procs::cpu_seconds(sluice.pid())?;
    let idle_cores = (cpu0 - idle0) / 2.0;
    let fleet0 = procs::cpu_seconds(fleet.pid())?;

    let service = topo::CANARY_SERVICE.to_string();
    let canary = format!("{service}~canary");
    let steps: Vec<u32> = (1..=20).map(|i| i * 5).collect();
    // Step i sets steps[i]; the last entry is the rollback to 0.
    let weights: Vec<u32> = steps.iter().copied().chain([0]).collect();
    let start = Instant::now();
    let mut writes = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        tokio::time::sleep_until((start + STEP_GAP * i as u32).into()).await;
        let id = i as u64 + 1;
        fleet.send(format!("rds {id} {} {canary} {w}", topo::canary_path()));
        fleet.sync().await?;
        let t0 = procs::unix_ns();
        let r = if i == 0 {
            api.start(req(pb::StartRequest {
                service: service.clone(),
                from: "stable".into(),
                to: "canary".into(),
                steps: steps.clone(),
                interval_ms: 3_600_000,
                max_error_rate: 0.05,
                max_p99_ms: 0,
                failure_threshold: 3,
                ack_share: 0.0,
                ack_timeout_ms: 600_000,
                ..Default::default()
            })?)
            .await
        } else if *w == 0 {
            api.abort(req(pb::ServiceRequest {
                service: service.clone(),
            })?)
            .await
        } else {
            api.promote(req(pb::PromoteRequest {
                service: service.clone(),
                full: false,
            })?)
            .await
        };
        let r = r?.into_inner();
        anyhow::ensure!(
            r.canary_weight == *w,
            "rollout at {}%, expected {w}% ({})",
            r.canary_weight,
            r.reason
        );
        writes.push((id, *w, t0));
    }
    let ids: Vec<u64> = writes.iter().map(|(id, ..)| *id).collect();
    let got = fleet.results(&ids, Duration::from_secs(30)).await?;
    // From the first step's call to the last step's last ACK (or the wait's
    // end), idle included: spread over the steps.
    let cpu_ms = (procs::cpu_seconds(sluice.pid())? - cpu0) * 1e3;
    let fleet_cpu_ms = (procs::cpu_seconds(fleet.pid())? - fleet0) * 1e3;
    let steps_n = writes.len().max(1) as f64;
    let window_s = start.elapsed().as_secs_f64();
    let stats = fleet.stats().await?;
    fleet.quit();
    let mut all = Latencies::default();
    let mut per_step = Vec::new();
    for (id, w, t0) in &writes {
        let mut one = Latencies::default();
        let r = got.get(id).copied().unwrap_or((0, 0));
        one.push(*t0, r, proxies);
        all.push(*t0, r, proxies);
        per_step.push(json!({"canary_weight": w, "all_acked_ms": setup::num(one.quantile(1.0)), "proxies_acked": r.0}));
    }
    println!("\nB5 canary step: {proxies} {mode:?} proxies, M1 {}x{}; rollout via admin gRPC, a step every 2 s, then abort", t.services, t.per);
    println!("| steps | p50 ms | p99 ms | max ms | incomplete | NACKs | sluice CPU ms/step | fleet CPU ms/step | sluice idle cores |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.3} |",
        writes.len(),
        fmt_ms(all.quantile(0.5)),
        fmt_ms(all.quantile(0.99)),
        fmt_ms(all.quantile(1.0)),
        all.incomplete,
        stats.nacks,
        cpu_ms / steps_n,
        fleet_cpu_ms / steps_n,
        idle_cores,
    );
    Ok(json!({
        "scenario": "b5",
        "mode": format!("{mode:?}").to_lowercase(),
        "proxies": proxies,
        "services": t.services,
        "endpoints_per_service": t.per,
        "configured_s": setup::num(ready.as_secs_f64()),
        "latency": all.json(),
        "steps": per_step,
        "nacks": stats.nacks,
        "cpu_ms_per_step": setup::num(cpu_ms / steps_n),
        "fleet_cpu_ms_per_step": setup::num(fleet_cpu_ms / steps_n),
        "idle_cpu_cores": setup::num(idle_cores),
        "cpu_window_s": setup::num(window_s),
    }))
}
