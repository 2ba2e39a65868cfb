//! The mass-removal guard and `sluice diff` against a running sluice and
//! a real Envoy: a truncated rules file is held (Envoy keeps serving), is
//! shown in `/status`, `sluice status` and a metric, and is published only
//! by `sluice rules confirm VERSION` with the admin token; `sluice diff`
//! shows what a file would change, with its exit codes; an empty file is
//! refused at start.

mod common;

use std::process::{Command, Output};

use common::*;

const TOKEN: &str = "guard-test-token";

fn rules(v1: u16, v2: u16, canary_weight: u32) -> String {
    let web = common::rules::web_v1_v2(v1, v2);
    let listener = common::rules::http_listener(0, "web");
    let stable = 100 - canary_weight;
    format!(
        r#"services:
{web}{listener}          - match: {{prefix: /}}
            split:
              - {{service: web, subset: stable, weight: {stable}}}
              - {{service: web, subset: canary, weight: {canary_weight}}}
"#
    )
}

/// Runs the sluice binary (off the async runtime) with `env`.
async fn sluice_cli(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(&args)
            .env_remove("SLUICE_ADMIN_TOKEN")
            .envs(env)
            .output()
            .expect("run sluice")
    })
    .await
    .expect("join")
}

async fn diff(sluice: &Sluice, file: &std::path::Path, json: bool) -> Output {
    let mut args = vec![
        "diff".to_string(),
        file.display().to_string(),
        "--admin".to_string(),
        sluice.admin.to_string(),
    ];
    if json {
        args.extend(["--output".to_string(), "json".to_string()]);
    }
    sluice_cli(args, vec![("SLUICE_ADMIN_TOKEN", TOKEN.to_string())]).await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn routes_ok(url: &str) -> bool {
    http()
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_rules_file_is_held_until_confirmed_and_diff_shows_edits() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let good = rules(v1.addr.port(), v2.addr.port(), 20);
    let file = RulesFile::new(&good);
    let mut sluice =
        Sluice::start_with_env(&file.path, "127.0.0.1:0", &[("SLUICE_ADMIN_TOKEN", TOKEN)]);
    let envoy = Envoy::start("envoy-guard", "default", sluice.xds, &[]).await;
    let port = envoy.listener_port("http").await;
    let url = format!("http://127.0.0.1:{port}/");
    eventually("envoy routes traffic", || routes_ok(&url)).await;

    // `sluice diff`: the served file changes nothing (0); a new split
    // changes the route table only (1); an empty file would be held (2);
    // a broken one is invalid, with its position (3).
    let scratch = tempfile::tempdir().expect("tempdir");
    let same = scratch.path().join("same.yaml");
    std::fs::write(&same, &good).expect("write");
    let out = diff(&sluice, &same, false).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no changes"),
        "{}",
        text(&out.stdout)
    );

    let split = scratch.path().join("split.yaml");
    std::fs::write(&split, rules(v1.addr.port(), v2.addr.port(), 50)).expect("write");
    let out = diff(&sluice, &split, true).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let types = doc["plan"]["groups"]["*"]["types"]
        .as_object()
        .expect("types");
    assert_eq!(types.keys().collect::<Vec<_>>(), ["rds"], "{doc}");
    assert_eq!(types["rds"]["changed"][0]["name"], "http");
    // The rule, at its position in the file diffed.
    let rule = types["rds"]["changed"][0]["rule"].as_str().expect("rule");
    let listener_line = rules(1, 2, 50)
        .lines()
        .position(|l| l.contains("- name: http"))
        .expect("listener")
        + 1;
    assert_eq!(
        rule,
        format!("{}:{listener_line}:11: listeners[0]", split.display())
    );
    assert!(doc["held"].is_null());
    let out = diff(&sluice, &split, false).await;
    let stdout = text(&out.stdout);
    assert!(stdout.contains("rds  ~ http"), "{stdout}");
    assert!(
        stdout.contains("0 to add, 1 to change, 0 to remove"),
        "{stdout}"
    );

    let empty = scratch.path().join("empty.yaml");
    std::fs::write(&empty, "# nothing yet\n").expect("write");
    let out = diff(&sluice, &empty, false).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("lds  - http"), "{stdout}");
    assert!(
        stdout.contains("HELD by the mass-removal guard"),
        "{stdout}"
    );
    assert!(
        stdout.contains("group *: removes 1 of 1 listeners: http"),
        "{stdout}"
    );

    let broken = scratch.path().join("broken.yaml");
    std::fs::write(&broken, good.replace("weight: 80", "weight: eighty")).expect("write");
    let out = diff(&sluice, &broken, false).await;
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:", broken.display())),
        "{stderr}"
    );
    assert!(stderr.contains("weight"), "{stderr}");

    // Truncate the served file in place, as an editor does before it
    // writes: the edit is held, nothing is published.
    let published = sluice.metric("sluice_snapshots_published_total").await;
    std::fs::File::create(&file.path).expect("truncate");
    eventually("the empty file is held", || async {
        !sluice.status().await["rules"]["held"].is_null()
    })
    .await;
    let st = sluice.status().await;
    let held_version = st["rules"]["held"]["version"]
        .as_str()
        .expect("held version")
        .to_string();
    let st = sluice.status().await;
    assert_eq!(st["rules"]["held"]["empty_file"], true, "{st}");
    assert_eq!(st["rules"]["last_error"], serde_json::Value::Null);
    assert_eq!(sluice.metric("sluice_rules_held").await, 1.0);
    assert_eq!(sluice.metric("sluice_rules_held_edits_total").await, 1.0);
    let status_text = sluice.status_text().await;
    assert!(
        status_text.contains("HELD by the mass-removal guard"),
        "{status_text}"
    );
    assert!(
        status_text.contains(&format!("sluice rules confirm {held_version}")),
        "{status_text}"
    );
    // Several polls later, Envoy still serves and nothing was published.
    for _ in 0..5 {
        assert!(
            routes_ok(&url).await,
            "envoy lost its routes while the edit is held"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        sluice.metric("sluice_snapshots_published_total").await,
        published
    );

    // Confirming needs the token and the held version.
    let admin = sluice.admin.to_string();
    let confirm = |version: &str, token: Option<&str>| {
        let args = vec![
            "rules".to_string(),
            "confirm".to_string(),
            version.to_string(),
            "--admin".to_string(),
            admin.clone(),
        ];
        let env = token
            .map(|t| vec![("SLUICE_ADMIN_TOKEN", t.to_string())])
            .unwrap_or_default();
        sluice_cli(args, env)
    };
    let out = confirm(&held_version, None).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    let out = confirm("0123456789abcdef", Some(TOKEN)).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&format!("the held edit is version {held_version}")),
        "{}",
        text(&out.stderr)
    );
    assert!(routes_ok(&url).await);

    let out = confirm(&held_version, Some(TOKEN)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    eventually(
        "envoy drops its listener once the edit is confirmed",
        || async { envoy.stat("listener_manager.total_listeners_active").await == 0.0 },
    )
    .await;
    let st = sluice.status().await;
    assert_eq!(
        st["rules"]["served_hash"].as_str(),
        Some(held_version.as_str())
    );
    assert!(st["rules"]["held"].is_null());
    assert_eq!(sluice.metric("sluice_rules_held").await, 0.0);
    sluice.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_within_the_limit_is_published_and_a_fixed_file_drops_the_held_one() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let good = rules(v1.addr.port(), v2.addr.port(), 20);
    let file = RulesFile::new(&good);
    let mut sluice = Sluice::start(&file.path, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;

    file.write("# truncated\n");
    eventually("the empty file is held", || async {
        !sluice.status().await["rules"]["held"].is_null()
    })
    .await;
    // The operator restores the file with a changed split: it is published
    // and the held edit is forgotten.
    let fixed = rules(v1.addr.port(), v2.addr.port(), 50);
    file.write(&fixed);
    eventually("the fixed file is served", || async {
        let st = sluice.status().await;
        st["rules"]["held"].is_null() && st["rules"]["reloads"] == 1
    })
    .await;
    assert_eq!(sluice.metric("sluice_rules_held").await, 0.0);
    sluice.kill();
}

/// `sluice diff` loads a file as serving it would: a route's own Lua that
/// LuaJIT cannot compile makes the file invalid (3), at its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_refuses_user_lua_that_does_not_compile() {
    let good = rules(9001, 9002, 20);
    let file = RulesFile::new(&good);
    let mut sluice = Sluice::start(&file.path, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;

    let scratch = tempfile::tempdir().expect("tempdir");
    let bad_lua = scratch.path().join("bad_lua.yaml");
    let route = "          - match: {prefix: /}\n";
    assert!(good.contains(route), "{good}");
    let lua_line = good
        .lines()
        .position(|l| l.contains("match: {prefix: /}"))
        .expect("route")
        + 2;
    let edited = good.replace(
        route,
        &format!("{route}            lua: {{source: \"function envoy_on_request(h\"}}\n"),
    );
    std::fs::write(&bad_lua, edited).expect("write");
    let out = diff(&sluice, &bad_lua, false).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:{lua_line}:", bad_lua.display())),
        "{stderr}"
    );
    assert!(stderr.contains("does not compile"), "{stderr}");
    sluice.kill();
}

#[test]
fn an_empty_rules_file_is_refused_at_start() {
    let file = RulesFile::new("# to be written\n");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--xds",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--rules",
        ])
        .arg(&file.path)
        .output()
        .expect("run sluice");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is empty"), "{stderr}");
    assert!(stderr.contains("listeners: []"), "{stderr}");
}
