//! Bootstrap files are accepted by real Envoy, and the checked-in examples in
//! `envoy-bootstrap/` are exactly what `render` produces today; an Envoy
//! started from `sluice bootstrap` retries its ADS stream as configured.
//!
//! Regenerate the examples with `SLUICE_BLESS=1 cargo test --test
//! bootstrap_envoy`. Envoy is found through `$ENVOY_BIN`, else `envoy` on
//! `PATH`; without it these tests fail (they never skip).

use std::path::{Path, PathBuf};

use sluice::bootstrap::{render, BootstrapOptions};

mod common;
mod real_envoy;

use real_envoy::assert_envoy_accepts;

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

#[test]
fn envoy_accepts_a_local_cluster_for_zone_aware_routing() {
    let mut opts = BootstrapOptions::new("web-1", "mesh", "127.0.0.1", 18000);
    opts.local_cluster = Some("web".into());
    let json = render(&opts).expect("valid options");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(parsed["cluster_manager"]["local_cluster_name"], "web");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("local.json");
    std::fs::write(&path, json).expect("write");
    assert_envoy_accepts(&path);

    // Without the static cluster Envoy refuses the name: the reason the
    // bootstrap defines it.
    let mut bare = parsed.clone();
    if let Some(clusters) = bare["static_resources"]["clusters"].as_array_mut() {
        clusters.truncate(1);
    }
    let bare_path = dir.path().join("bare.json");
    std::fs::write(&bare_path, bare.to_string()).expect("write");
    let out = std::process::Command::new(real_envoy::envoy_bin())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&bare_path)
        .output()
        .expect("run envoy");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("local cluster 'web' must be defined"),
        "Envoy needs the local cluster defined statically: {text}"
    );
}

/// A running Envoy holds the ADS retry policy `sluice bootstrap` writes
/// (250 ms growing to at most 5 s, where Envoy's default grows to 30 s
/// and kept proxies away for up to 13 s after a sluice restart).
#[tokio::test]
async fn a_running_envoy_holds_the_ads_retry_policy() {
    // Nothing needs to listen there: the policy is in the bootstrap.
    let xds = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let envoy = common::Envoy::start("edge-1", "edge", xds, &[]).await;
    let dump = common::get_json(&format!("http://{}/config_dump", envoy.admin)).await;
    let bootstrap = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(".BootstrapConfigDump"))
        })
        .map(|c| &c["bootstrap"])
        .expect("the bootstrap in Envoy's config dump");
    let grpc = &bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0]["envoy_grpc"];
    assert_eq!(
        grpc["retry_policy"]["retry_back_off"],
        serde_json::json!({ "base_interval": "0.250s", "max_interval": "5s" }),
        "{grpc}"
    );
}

/// With several replicas in `--xds`, an Envoy whose random pick is a
/// replica that is down (nothing listens on its port) moves on to the
/// live one and gets its configuration.
#[tokio::test]
async fn an_envoy_given_several_replicas_reaches_a_live_one() {
    let backend = common::backend("web").await;
    let rules = common::RulesFile::new(&format!(
        "services:\n  - name: web\n    endpoints: [{{address: 127.0.0.1, port: {}}}]\n{}          - {{match: {{prefix: /}}, to: {{service: web}}}}\n",
        backend.addr.port(),
        common::rules::http_listener(0, "all")
    ));
    let sluice = common::Sluice::start(&rules.path, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    let (down1, down2) = (common::free_port(), common::free_port());
    let xds = format!("127.0.0.1:{down1},{},127.0.0.1:{down2}", sluice.xds);
    let dir = tempfile::tempdir().expect("tempdir");
    let bootstrap = dir.path().join("bootstrap.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bootstrap", "--node-id", "edge-1", "--xds", &xds])
        .args(["--admin-port", "0", "--out"])
        .arg(&bootstrap)
        .status()
        .expect("run sluice bootstrap");
    assert!(status.success());
    assert_envoy_accepts(&bootstrap);
    let envoy = common::Envoy::start_static(dir, &bootstrap).await;
    let port = envoy.listener_port("http").await;
    common::routes_to(port, "web").await;
}
