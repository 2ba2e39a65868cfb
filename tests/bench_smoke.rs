//! The scenario runner (`examples/bench`) at a tiny size, so it does not
//! rot: B1 with 5 proxies and 3 endpoint moves through a real etcd into
//! `sluice serve` (the binary), then the same against the transport floor;
//! then again with `--mtls` (sluice's xDS port over mutual TLS, the floor
//! plaintext); B6 (the dashboard) with 5 proxies and a headless
//! chromium; B7 (a large fleet) at 5 proxies; and B8 (one route edited)
//! at 40 routes. Asserts behaviour only — every move reached every proxy, nothing was
//! NACKed, the JSON has its fields — never times.
//!
//! `harness = false`: the runner starts its fleet and floor by re-running
//! its own executable with `fleet` / `floor`, so this test's `main` is the
//! runner's entry point too.

#[path = "../examples/bench/b1.rs"]
mod b1;
#[path = "../examples/bench/b2.rs"]
mod b2;
#[path = "../examples/bench/b3.rs"]
mod b3;
#[path = "../examples/bench/b4.rs"]
mod b4;
#[path = "../examples/bench/b5.rs"]
mod b5;
#[path = "../examples/bench/b6.rs"]
mod b6;
#[path = "../examples/bench/b7.rs"]
mod b7;
#[path = "../examples/bench/b8.rs"]
mod b8;
#[path = "../examples/bench/b8_rules.rs"]
mod b8_rules;
#[path = "../examples/bench/cli.rs"]
mod cli;
#[path = "../examples/bench/fleet.rs"]
mod fleet;
#[path = "../examples/bench/fleet_proc.rs"]
mod fleet_proc;
#[path = "../examples/bench/floor.rs"]
mod floor;
#[path = "../examples/bench/ha.rs"]
mod ha;
#[path = "../examples/bench/pki.rs"]
mod pki;
#[path = "../examples/bench/procs.rs"]
mod procs;
#[path = "../examples/bench/setup.rs"]
mod setup;
#[path = "../examples/bench/topo.rs"]
mod topo;

use std::path::PathBuf;
use std::process::ExitCode;

/// The cases, and whether each runs sluice's xDS over mTLS.
const CASES: [(&str, bool); 2] = [
    ("bench_runner_b1_smoke", false),
    ("bench_runner_b1_mtls_smoke", true),
];

/// B6 (the dashboard: data endpoints, first render in headless chromium,
/// CPU with a page open) at 5 proxies.
const B6: &str = "bench_runner_b6_dashboard_smoke";
/// B7 (a large fleet: configured, memory, moves) at 5 proxies.
const B7: &str = "bench_runner_b7_fleet_smoke";
/// B8 (one route edited in a rules file) at 40 routes and 5 proxies.
const B8: &str = "bench_runner_b8_rules_edit_smoke";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("fleet" | "floor")) {
        return cli::main(&args, None);
    }
    if args.iter().any(|a| a == "--list") {
        for (name, _) in CASES {
            println!("{name}: test");
        }
        println!("{B6}: test");
        println!("{B7}: test");
        println!("{B8}: test");
        return ExitCode::SUCCESS;
    }
    // A name filter (`cargo test sim::`) that matches none skips them.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let mut passed = 0;
    for (name, mtls) in CASES {
        if filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())) {
            smoke(mtls);
            passed += 1;
        }
    }
    if filters.is_empty() || filters.iter().any(|f| B6.contains(f.as_str())) {
        smoke_b6();
        passed += 1;
    }
    if filters.is_empty() || filters.iter().any(|f| B7.contains(f.as_str())) {
        smoke_b7();
        passed += 1;
    }
    if filters.is_empty() || filters.iter().any(|f| B8.contains(f.as_str())) {
        smoke_b8();
        passed += 1;
    }
    println!("{passed} passed, 0 failed");
    ExitCode::SUCCESS
}

/// Runs the runner with `args` (and `--out` to a temporary file), asserts
/// it succeeded, and returns the JSON it wrote.
fn run_runner(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.json");
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend(["--out".to_string(), out.display().to_string()]);
    let code = cli::main(&args, Some(PathBuf::from(env!("CARGO_BIN_EXE_sluice"))));
    assert_eq!(
        code,
        ExitCode::SUCCESS,
        "the runner failed (its stderr above)"
    );
    serde_json::from_str(&std::fs::read_to_string(&out).expect("JSON written")).expect("valid JSON")
}

fn smoke(mtls: bool) {
    let mut args = vec![
        "b1",
        "--proxies",
        "5",
        "--services",
        "5",
        "--endpoints",
        "3",
        "--duration",
        "1.5",
    ];
    if mtls {
        args.push("--mtls");
    }
    let json = run_runner(&args);
    assert_eq!(json["scenario"], "b1");
    assert_eq!(json["proxies"], 5);
    assert_eq!(json["mode"], "delta");
    assert_eq!(json["mtls"], mtls);
    for server in ["sluice", "floor"] {
        let lat = &json[server]["latency"];
        assert_eq!(lat["changes"], 3, "{server}: {lat}");
        assert_eq!(
            lat["incomplete"], 0,
            "{server}: every move reached every proxy: {lat}"
        );
        for q in ["p50_ms", "p99_ms", "max_ms"] {
            assert!(
                lat[q].as_f64().is_some_and(|v| v >= 0.0),
                "{server}.{q}: {lat}"
            );
        }
    }
    assert_eq!(json["sluice"]["nacks"], 0);
    assert!(json["sluice"]["cpu_ms_per_change"].is_number());
    assert!(json["sluice"]["bytes_per_change"].is_number());
    assert!(json["ratio_to_floor"]["p50"].is_number());
    assert!(json["machine"]["nproc"].as_u64().is_some_and(|n| n > 0));
}

fn smoke_b6() {
    let json = run_runner(&[
        "b6",
        "--proxies",
        "5",
        "--services",
        "5",
        "--endpoints",
        "3",
        "--duration",
        "1",
    ]);
    assert_eq!(json["scenario"], "b6");
    assert_eq!(
        json["page_connected"], "5",
        "the page listed the fleet: {json}"
    );
    let paths: Vec<&str> = json["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(paths, ["/status", "/rollouts", "/drains", "/services"]);
    for e in json["endpoints"].as_array().expect("endpoints") {
        assert!(e["p99_ms"].as_f64().is_some_and(|v| v >= 0.0), "{e}");
    }
    assert!(
        json["first_render_ms"].as_f64().is_some_and(|v| v > 0.0),
        "{json}"
    );
    for k in ["cpu_percent_no_page", "cpu_percent_page_open"] {
        assert!(json[k].as_f64().is_some_and(|v| v >= 0.0), "{k}: {json}");
    }
}

fn smoke_b7() {
    let json = run_runner(&[
        "b7",
        "--proxies",
        "5",
        "--services",
        "5",
        "--endpoints",
        "3",
        "--duration",
        "1.5",
    ]);
    assert_eq!(json["scenario"], "b7");
    assert_eq!(json["proxies"], 5);
    assert_eq!(json["nacks"], 0);
    let lat = &json["latency"];
    assert_eq!(lat["changes"], 3, "{lat}");
    assert_eq!(
        lat["incomplete"], 0,
        "every move reached every proxy: {lat}"
    );
    for k in [
        "configured_s",
        "sluice_rss_kib_per_proxy",
        "cpu_ms_per_change",
    ] {
        assert!(json[k].as_f64().is_some_and(|v| v >= 0.0), "{k}: {json}");
    }
    assert!(json["sluice_rss_peak_bytes"]
        .as_u64()
        .is_some_and(|v| v > 0));
}

fn smoke_b8() {
    let json = run_runner(&["b8", "--routes", "40", "--proxies", "5"]);
    assert_eq!(json["scenario"], "b8");
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["routes"], 40);
    assert_eq!(rows[0]["services"], 10);
    assert_eq!(rows[0]["nacks"], 0);
    let edits = rows[0]["edits"].as_array().expect("edits");
    assert_eq!(edits.len(), 3, "{json}");
    for e in edits {
        assert_eq!(e["proxies_acked"], 5, "every proxy got the edit: {e}");
        assert!(e["all_acked_ms"].as_f64().is_some_and(|v| v > 0.0), "{e}");
        for k in ["sluice_cpu_ms", "publish_compile_ms", "kib_per_proxy"] {
            assert!(e[k].as_f64().is_some_and(|v| v >= 0.0), "{k}: {e}");
        }
        assert!(
            e["rules_load_ms"].as_f64().is_some_and(|v| v > 0.0),
            "sluice timed loading the edit: {e}"
        );
    }
}
