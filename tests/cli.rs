//! The `sluice` binary as a user runs it: `validate`, `bootstrap`, `serve`
//! with its admin endpoints, `status`, shutdown on SIGTERM, and `sluice sim`
//! sending request headers and bodies; flags out of range are refused.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_accepts_the_examples() {
    let out = sluice(&["validate", "examples/quickstart.yaml", "examples/shop.yaml"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("examples/quickstart.yaml: ok (1 services, 1 listeners"),
        "{stdout}"
    );
}

#[test]
fn validate_reports_every_error_with_its_location_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "services:\n  - name: web\n    endpoints: []\n    colour: blue\nlisteners:\n  - name: http\n    port: 80\n    virtual_hosts:\n      - name: v\n        domains: [\"*\"]\n        routes:\n          - to: {service: nope}\n",
    )
    .expect("write");
    let out = sluice(&["validate", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let file = bad.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:4:5: ")),
        "unknown field located: {stderr}"
    );
    assert!(stderr.contains("colour"), "names the field: {stderr}");
}

/// A route's own Lua that LuaJIT cannot compile is refused by `validate`
/// (the same load `serve` runs on every edit) at its line, not pushed for
/// Envoy to NACK.
#[test]
fn validate_refuses_user_lua_that_does_not_compile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("lua.yaml");
    std::fs::write(
        &bad,
        "services:\n  - name: web\n    endpoints: [{address: 127.0.0.1, port: 8081}]\nlisteners:\n  - name: http\n    port: 80\n    virtual_hosts:\n      - name: v\n        domains: [\"*\"]\n        routes:\n          - to: {service: web}\n            lua: {source: \"function envoy_on_request(h\"}\n",
    )
    .expect("write");
    let out = sluice(&["validate", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let file = bad.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:12:")) && stderr.contains("routes[0].lua.source"),
        "located: {stderr}"
    );
    assert!(stderr.contains("does not compile"), "{stderr}");
}

/// "café" saved as Latin-1 on line 12: 0xE9 cannot start a UTF-8 character.
const NOT_UTF8: &[u8] = b"services:\n  - name: web\n    endpoints: [{address: 127.0.0.1, port: 8081}]\nlisteners:\n  - name: http\n    port: 0\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n          - to: {service: web}\n# caf\xe9\n";

#[tokio::test]
async fn a_file_that_is_not_utf8_is_located_by_validate_and_serve() {
    let rules = RulesFile::new("");
    let file = rules.path.display().to_string();
    let at = format!("{file}:12:6: ");
    write_bytes_atomically(&rules.path, NOT_UTF8);
    let out = sluice(&["validate", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&at), "{}", text(&out.stderr));
    let out = sluice(&[
        "serve",
        "--rules",
        &file,
        "--xds",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&at), "{}", text(&out.stderr));

    // A reload of such a file is refused with the same position.
    let utf8 = String::from_utf8_lossy(NOT_UTF8).replace('\u{fffd}', "e");
    rules.write(&utf8);
    let sluice = Sluice::start(&rules.path, "127.0.0.1:0");
    write_bytes_atomically(&rules.path, NOT_UTF8);
    eventually("the reload is refused", || async {
        sluice.status().await["rules"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&at))
    })
    .await;
}

#[test]
fn bootstrap_writes_a_file_and_rejects_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("b.json");
    let out = sluice(&[
        "bootstrap",
        "--node-id",
        "n1",
        "--cluster",
        "edge",
        "--xds",
        "sluice.internal:18000",
        "--ads",
        "delta",
        "--out",
        out_path.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).expect("read")).expect("json");
    assert_eq!(json["node"]["id"], "n1");
    assert_eq!(json["node"]["cluster"], "edge");
    assert_eq!(
        json["dynamic_resources"]["ads_config"]["api_type"],
        "DELTA_GRPC"
    );

    let out = sluice(&["bootstrap", "--node-id", "n1", "--xds", "no-port"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("HOST:PORT"));
}

#[tokio::test]
async fn serve_admin_endpoints_status_and_sigterm() {
    let mut sluice_proc = Sluice::start(
        std::path::Path::new("examples/quickstart.yaml"),
        "127.0.0.1:0",
    );
    let admin = sluice_proc.admin;
    let client = http();
    let get = |path: &str| client.get(format!("http://{admin}{path}")).send();

    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(metrics.contains("sluice_ready 1"), "{metrics}");
    assert!(
        metrics.contains("sluice_snapshots_published_total 1"),
        "{metrics}"
    );
    let config: serde_json::Value = get("/debug/config")
        .await
        .expect("config")
        .json()
        .await
        .expect("json");
    assert!(
        config["groups"]["*"]["cds"]["resources"]["web~canary"].is_string(),
        "{config}"
    );
    assert_eq!(config["rules"]["listeners"][0]["name"], "http");

    // `sluice status` against the running server, text and JSON.
    let admin_arg = admin.to_string();
    let out = tokio::task::spawn_blocking(move || sluice(&["status", "--admin", &admin_arg]))
        .await
        .expect("join");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("ready: yes\n"), "{stdout}");
    assert!(stdout.contains("proxies: 0"), "{stdout}");
    let admin_arg = admin.to_string();
    let out = tokio::task::spawn_blocking(move || {
        sluice(&["status", "--admin", &admin_arg, "--output", "json"])
    })
    .await
    .expect("join");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json status");
    assert_eq!(doc["ready"], true);

    // SIGTERM: a clean, prompt exit with status 0.
    let pid = sluice_proc.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = sluice_proc.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "sluice did not exit on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn status_reports_an_unreachable_server() {
    let port = free_port();
    let out = sluice(&["status", "--admin", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read"));
}

/// Starts `sluice serve` on `rules` with `--state-dir state` and `env`;
/// returns the child and its admin address.
fn serve_with_state(
    rules: &std::path::Path,
    state: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--rules"])
        .arg(rules)
        .args([
            "--xds",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(state)
        .env_remove("SLUICE_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let admin = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("sluice: admin listening on ")
                .map(str::to_string)
        })
        .expect("admin address");
    // Keep reading: sluice must not write into a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, admin)
}

#[tokio::test]
async fn drain_add_list_remove_persist_and_refuse_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "services:\n  - name: web\n    endpoints:\n      - {address: 10.0.0.1, port: 80, locality: {region: eu, zone: eu-1a}}\n      - {address: 10.0.0.2, port: 80}\nlisteners:\n  - name: http\n    port: 18080\n    virtual_hosts:\n      - {name: all, domains: [\"*\"], routes: [{to: {service: web}}]}\n",
    )
    .expect("write rules");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let (mut child, admin) = serve_with_state(&rules, &state, &[]);
    let drain = |args: &[&str]| {
        let mut all = vec!["drain"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--admin", &admin]);
        sluice(&all)
    };

    // Refused: unknown service (by the server), no target, two targets,
    // a malformed locality (by the command line).
    let out = drain(&["add", "--service", "wbe", "--endpoint", "10.0.0.1:80"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown service \"wbe\"; services: web"),
        "{}",
        text(&out.stderr)
    );
    for bad in [
        &["add", "--service", "web"][..],
        &[
            "add",
            "--service",
            "web",
            "--endpoint",
            "10.0.0.1:80",
            "--locality",
            "eu",
        ],
        &["add", "--service", "web", "--locality", "eu/a/b"],
    ] {
        let out = drain(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
    }
    assert!(!state.join("sluice-drains.json").exists(), "nothing stored");

    let out = drain(&["add", "--service", "web", "--endpoint", "10.0.0.2:80"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "drained endpoint 10.0.0.2:80 of service web\n"
    );
    let out = drain(&["add", "--service", "web", "--endpoint", "10.0.0.2:80"]);
    assert_eq!(
        text(&out.stdout),
        "already drained: endpoint 10.0.0.2:80 of service web\n"
    );
    let out = drain(&["add", "--service", "web", "--locality", "eu"]);
    assert!(out.status.success());

    // Applied: the served config shows the endpoints draining.
    let url = format!("http://{admin}/debug/config");
    eventually("drains applied", || async {
        let doc = get_json(&url).await;
        let eps = &doc["rules"]["services"]["web"]["endpoints"];
        eps[0]["health"] == "draining" && eps[1]["health"] == "draining"
    })
    .await;

    // Survives a restart: the state file is read back.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let (mut child, admin) = serve_with_state(&rules, &state, &[]);
    let out = sluice(&["drain", "list", "--output", "json", "--admin", &admin]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        list,
        serde_json::json!([
            {"service": "web", "endpoint": "10.0.0.2:80", "matches": 1},
            {"service": "web", "locality": "eu", "matches": 1},
        ])
    );
    let out = sluice(&[
        "drain",
        "remove",
        "--service",
        "web",
        "--locality",
        "eu",
        "--admin",
        &admin,
    ]);
    assert_eq!(text(&out.stdout), "undrained locality eu of service web\n");
    let out = sluice(&["drain", "list", "--admin", &admin]);
    let listed = text(&out.stdout);
    assert!(listed.contains("endpoint 10.0.0.2:80"), "{listed}");
    assert!(!listed.contains("locality eu"), "{listed}");
    let _ = child.kill();
    let _ = child.wait();
}

/// With an admin token set, the commands that change what is served or
/// read files on sluice's side (drains, `sluice diff`) are refused without
/// it, and work with it; reads stay open.
#[test]
fn drains_and_diff_need_the_admin_token_when_one_is_set() {
    const TOKEN: &str = "cli-test-token";
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "services:\n  - name: web\n    endpoints:\n      - {address: 10.0.0.1, port: 80}\nlisteners:\n  - name: http\n    port: 18080\n    virtual_hosts:\n      - {name: all, domains: [\"*\"], routes: [{to: {service: web}}]}\n",
    )
    .expect("write rules");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let (mut child, admin) = serve_with_state(&rules, &state, &[("SLUICE_ADMIN_TOKEN", TOKEN)]);
    let run = |args: &[&str], token: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(args)
            .args(["--admin", &admin])
            .env_remove("SLUICE_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.env("SLUICE_ADMIN_TOKEN", t);
        }
        cmd.output().expect("run sluice")
    };
    let add = [
        "drain",
        "add",
        "--service",
        "web",
        "--endpoint",
        "10.0.0.1:80",
    ];

    for token in [None, Some("wrong")] {
        let out = run(&add, token);
        assert_eq!(out.status.code(), Some(1), "{token:?}");
        assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    }
    assert!(!state.join("sluice-drains.json").exists(), "nothing stored");
    let out = run(&["drain", "list", "--output", "json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "[]");

    let out = run(&add, Some(TOKEN));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let remove = [
        "drain",
        "remove",
        "--service",
        "web",
        "--endpoint",
        "10.0.0.1:80",
    ];
    let out = run(&remove, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    let out = run(&["drain", "list", "--output", "json"], None);
    assert!(
        text(&out.stdout).contains("10.0.0.1:80"),
        "{}",
        text(&out.stdout)
    );

    // `sluice diff` of the served file: refused (exit 4) without the
    // token, no change (exit 0) with it.
    let rules_arg = rules.display().to_string();
    let out = run(&["diff", &rules_arg], None);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    let out = run(&["diff", &rules_arg], Some(TOKEN));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let _ = child.kill();
    let _ = child.wait();
}

/// The API-key gateway (x-api-key: alice-key → alice, plan pro) with a
/// route matched on a header, and a route whose key is in the JSON body.
fn sim_rules() -> String {
    let head = common::rules::api_key_gateway(8081, 8082, "alice-key");
    format!(
        r#"{head}          - match: {{prefix: /orders, headers: [{{name: x-tenant, exact: acme}}]}}
            to: {{service: pro}}
            transform: {{request: {{set_headers: {{x-tenant-copy: "t-${{header.x-tenant}}"}}}}}}
          - match: {{prefix: /body}}
            to: {{service: free}}
            auth: {{api_key: {{json_field: apiKey, keys: [{{key: k1, consumer: c1}}]}}}}
          - to: {{service: free}}
"#
    )
}

/// `sluice sim` for one second at 10 requests per second against `xds`,
/// with `args`; returns its `--json` summary.
fn sim_summary(xds: &str, args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("summary.json");
    let json_arg = json.to_str().expect("utf8");
    let mut all = vec!["sim", "--xds", xds, "--rps", "10", "--duration", "1s"];
    all.extend(["--json", json_arg]);
    all.extend(args);
    let out = sluice(&all);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).expect("summary")).expect("json")
}

/// The `[name, value]` pairs of a sample's upstream headers, as a map.
fn upstream_headers(sample: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    sample["upstream_headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv[0].as_str()?.to_string(), kv[1].as_str()?.to_string())))
        .collect()
}

#[test]
fn sim_sends_headers_and_bodies_and_shows_what_went_upstream() {
    let rules = RulesFile::new(&sim_rules());
    let server = Sluice::start(&rules.path, "127.0.0.1:0");
    let xds = server.xds.to_string();

    // The key and the tenant header: the header-matched route (`pro`),
    // with the transform's header in what went upstream.
    let s = sim_summary(
        &xds,
        &["--path", "/orders", "--header", "x-api-key:alice-key"],
    );
    assert_eq!(s["stats"]["downstream"]["200"], 10, "{s}");
    assert_eq!(s["stats"]["by_cluster"]["free"], 10, "no tenant: {s}");
    let s = sim_summary(
        &xds,
        &[
            "--path",
            "/orders",
            "--header",
            "x-api-key:alice-key",
            "--header",
            "X-Tenant: acme",
        ],
    );
    assert_eq!(s["stats"]["downstream"]["200"], 10, "{s}");
    assert_eq!(s["stats"]["by_cluster"]["pro"], 10, "{s}");
    let sample = &s["samples"][0];
    assert_eq!(
        (sample["path"].as_str(), sample["cluster"].as_str()),
        (Some("/orders"), Some("pro")),
        "{s}"
    );
    let up = upstream_headers(sample);
    assert_eq!(up.get("x-tenant-copy").map(String::as_str), Some("t-acme"));
    assert_eq!(
        up.get("x-sluice-consumer").map(String::as_str),
        Some("alice")
    );

    // No key: refused. The key in a JSON body (from a file): let through.
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("body.json");
    std::fs::write(&body, r#"{"apiKey":"k1"}"#).expect("write");
    let s = sim_summary(
        &xds,
        &[
            "--path",
            "/orders",
            "--path",
            "/body",
            "--header",
            "content-type:application/json",
            "--body-file",
            body.to_str().expect("utf8"),
        ],
    );
    assert_eq!(s["stats"]["downstream"]["401"], 5, "{s}");
    assert_eq!(s["stats"]["downstream"]["200"], 5, "{s}");
    let (orders, posted) = (&s["samples"][0], &s["samples"][1]);
    assert_eq!(orders["status"], 401, "{s}");
    assert!(
        orders["local_body"]
            .as_str()
            .is_some_and(|b| b.contains("missing API key")),
        "{s}"
    );
    assert_eq!(
        (posted["method"].as_str(), posted["cluster"].as_str()),
        (Some("POST"), Some("free")),
        "{s}"
    );
    assert_eq!(
        upstream_headers(posted)
            .get("x-sluice-consumer")
            .map(String::as_str),
        Some("c1")
    );
    assert_eq!(posted["upstream_body"], r#"{"apiKey":"k1"}"#);

    // A wrong key in an inline body: refused.
    let s = sim_summary(&xds, &["--path", "/body", "--body", r#"{"apiKey":"k2"}"#]);
    assert_eq!(s["stats"]["downstream"]["403"], 10, "{s}");
}

#[test]
fn sim_refuses_a_header_without_a_colon() {
    let out = sluice(&["sim", "--header", "x-api-key"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--header") && stderr.contains("expected NAME:VALUE"),
        "{stderr}"
    );
    let out = sluice(&["sim", "--header", ":authority:x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--host"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn serve_refuses_a_watch_interval_below_10_ms() {
    // The flags are checked before the rules file is read: it need not exist.
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yaml");
    let rules = rules.to_str().expect("utf-8 path");
    for ms in ["0", "9"] {
        let out = sluice(&["serve", "--rules", rules, "--watch-interval-ms", ms]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("--watch-interval-ms") && stderr.contains("give 10 or more"),
            "{stderr}"
        );
    }
}

#[test]
fn sim_refuses_no_proxies_and_more_faulty_proxies_than_proxies() {
    let out = sluice(&["sim", "--proxies", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--proxies") && stderr.contains("give 1 or more"),
        "{stderr}"
    );
    let out = sluice(&["sim", "--proxies", "2", "--faulty", "3", "--stall"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--faulty 3 is more than --proxies 2"),
        "{stderr}"
    );
}
