//! `compile` is deterministic across processes: the same `Config` gives
//! byte-identical resources and versions in separate processes (each with its
//! own `HashMap` random seed) and in this one.
//!
//! The test re-runs its own binary twice with `DIGEST_ENV` set; the child
//! prints one line per resource (group, type, name, version, SHA-256 of the
//! body) between markers, and the parent compares.

use std::fmt::Write as _;
use std::process::Command;

use sha2::{Digest, Sha256};
use sluice::compile::compile;
use sluice::model::Config;
use sluice::xds::{Snapshot, TypeUrl};

mod fixtures;

use fixtures::{each_snapshot, mk_rich_config};

const DIGEST_ENV: &str = "SLUICE_DETERMINISM_CHILD";
const TEST_NAME: &str = "compile_is_deterministic_across_processes";
const BEGIN: &str = "---BEGIN DIGEST---";
const END: &str = "---END DIGEST---";

/// The rich fixture plus runtime keys, as rollouts with runtime weights
/// set them: the RTDS layer is a protobuf map, which prost would encode
/// in `HashMap` order.
fn config() -> Config {
    let mut c = mk_rich_config();
    c.runtime = std::sync::Arc::new(
        (0..40)
            .map(|i| {
                (
                    format!("sluice.rollout.svc-{i}.from.stable.svc-{i}~canary"),
                    i * 2,
                )
            })
            .collect(),
    );
    c
}

#[test]
fn compile_is_deterministic_across_processes() {
    let here = digest(&config());
    if std::env::var_os(DIGEST_ENV).is_some() {
        println!("{BEGIN}\n{here}{END}");
        return;
    }
    let first = run_child();
    let second = run_child();
    assert!(here.lines().count() > 100, "fixture is rich: {here}");
    assert_eq!(first, second, "two processes disagree");
    assert_eq!(first, here, "child process disagrees with this one");
}

fn run_child() -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(DIGEST_ENV, "1")
        .output()
        .expect("run child test binary");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(out.status.success(), "child failed: {stdout}");
    let start = stdout.find(BEGIN).expect("begin marker") + BEGIN.len() + 1;
    let end = stdout.find(END).expect("end marker");
    stdout[start..end].to_owned()
}

fn digest(config: &Config) -> String {
    let snaps = compile(config).expect("fixture compiles");
    let mut out = String::new();
    for (group, snap) in each_snapshot(&snaps) {
        digest_snapshot(&mut out, group, snap);
    }
    out
}

fn digest_snapshot(out: &mut String, group: &str, snap: &Snapshot) {
    for ty in TypeUrl::ALL {
        let _ = writeln!(out, "{group} {ty} version={}", snap.version(ty));
        for (name, res) in snap.resources(ty) {
            let body = Sha256::digest(&res.body);
            let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(out, "{group} {ty} {name} {} {hex}", res.version);
        }
    }
}
