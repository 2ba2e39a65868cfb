//! Rollouts over the admin HTTP listener (`/rollouts`), the API the
//! dashboard uses: it reads what `sluice rollout status` reads and its
//! commands act like the CLI's, through the same controller, with one
//! replica and from a follower of several (`--state-etcd`). Commands need
//! the admin token; a refused or invalid one changes nothing.

mod common;

use common::ha::Replicas;
use common::rollout::*;
use common::*;
use serde_json::{json, Value};

/// POSTs `/rollouts/{path}` with `token` (none: no header); answers the
/// status and the JSON body.
async fn post(admin: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http().post(format!("http://{admin}/rollouts/{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("post");
    let code = resp.status().as_u16();
    (code, resp.json().await.expect("json body"))
}

async fn rollouts(admin: std::net::SocketAddr) -> Value {
    get_json(&format!("http://{admin}/rollouts")).await
}

/// A rollout that stays on its first step unless told otherwise.
fn slow_start() -> Vec<&'static str> {
    start_command(&["--steps", "10,50,100", "--interval", "1h"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_and_commands_over_http_match_the_cli() {
    let s = Setup::start(0.0, None).await;
    let admin = s.sluice.admin;
    assert_eq!(rollouts(admin).await, json!([]));
    assert_eq!(s.sluice.status().await["rollout_controller"], true);
    let r = s.cli(&slow_start());
    assert_eq!(r.code, 0, "{r:?}");
    let cli = s
        .wait("first step analysed", |v| v["phase"] == "analysing")
        .await;

    // The same document as `rollout status --output json`, plus the
    // CLI's summary line and the history.
    let all = rollouts(admin).await;
    let doc = &all[0];
    for (k, v) in cli.as_object().expect("object") {
        assert_eq!(&doc[k], v, "{k}: {doc} vs {cli}");
    }
    assert_eq!(
        doc["summary"],
        "web: analysing step 1/3, canary canary 10% / stable stable 90%, 3/3 proxies ACKed"
    );
    let history: Vec<&str> = doc["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default())
        .collect();
    assert!(
        history[0].starts_with("started: stable → canary"),
        "{history:?}"
    );
    assert_eq!(
        get_json(&format!("http://{admin}/rollouts/web")).await,
        *doc
    );

    // Refused: no token, a wrong one. Nothing changes.
    for token in [None, Some("wrong")] {
        let (code, body) = post(admin, "web/pause", token).await;
        assert_eq!(code, 401, "{body}");
        assert_eq!(body["error"], "missing or wrong admin token");
    }
    let (code, body) = post(admin, "web/explode", Some(TOKEN)).await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("pause, resume, promote or abort"),
        "{body}"
    );
    let (code, body) = post(admin, "nope/pause", Some(TOKEN)).await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["error"], "no rollout of service \"nope\"");
    assert_eq!(s.status()["phase"], "analysing");

    // Pause, resume, promote (one step), abort: each answers the rollout
    // as it is after the command, and the CLI sees the same.
    let (code, body) = post(admin, "web/pause", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["phase"], "paused");
    assert_eq!(s.status()["phase"], "paused");
    let (code, body) = post(admin, "web/resume", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_ne!(body["phase"], "paused");
    let (code, body) = post(admin, "web/promote", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["step"].clone(), body["canary_weight"].clone()),
        (json!(1), json!(50)),
        "{body}"
    );
    s.wait("second step", |v| {
        v["step"] == 1 && v["phase"] == "analysing"
    })
    .await;
    let (code, body) = post(admin, "web/abort", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["phase"], "aborted");
    s.all_to("web~stable").await;
    // A finished rollout takes no more commands: a conflict, not a change.
    let (code, body) = post(admin, "web/resume", Some(TOKEN)).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(s.status()["phase"], "aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_controller_rollouts_are_empty_and_commands_say_why() {
    let rules = RulesFile::new(RULES);
    let sluice = Sluice::start(&rules.path, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    assert_eq!(rollouts(sluice.admin).await, json!([]));
    assert_eq!(sluice.status().await["rollout_controller"], false);
    // No token is set and the listener is on loopback: the command is
    // taken, and answered.
    let (code, body) = post(sluice.admin, "web/pause", None).await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("--state-dir or --state-etcd"),
        "{body}"
    );
    // A page of another site cannot command it, even without a token:
    // neither cross-site nor through a name that resolves to loopback.
    let drains = format!("http://{}/drains", sluice.admin);
    let drain = r#"{"service": "web", "locality": "eu"}"#;
    for (name, value) in [
        ("origin", "http://evil.example".to_string()),
        ("host", format!("evil.example:{}", sluice.admin.port())),
    ] {
        let resp = http()
            .post(&drains)
            .header(name, value)
            .body(drain)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 403, "{name}");
    }
    // The same drain from the CLI's kind of request is taken.
    let resp = http().post(&drains).body(drain).send().await.expect("post");
    assert_eq!(resp.status(), 200);
    assert_eq!(get_json(&drains).await[0]["locality"], "eu");
}

/// The dashboard is one page and its assets, all served by sluice, with
/// a policy that lets the page load nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_and_its_assets_are_embedded() {
    let rules = RulesFile::new(RULES);
    let sluice = Sluice::start(&rules.path, "127.0.0.1:0");
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let resp = http()
            .get(format!("http://{}{path}", sluice.admin))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        let ct = h["content-type"].to_str().unwrap_or_default();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        let csp = h["content-security-policy"].to_str().unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        let body = resp.text().await.expect("body");
        assert!(
            !body.contains("https://") || path != "/ui",
            "the page loads nothing remote"
        );
    }
}

/// With several replicas, a follower takes the HTTP commands too: they go
/// to the shared store, the leader carries them out, and every replica's
/// `/rollouts` agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_commands_sent_to_a_follower_reach_the_leader() {
    let r = Replicas::start(2).await;
    let leader = r.leader().await;
    let follower = 1 - leader;
    let run = r.cli(leader, &slow_start());
    assert_eq!(run.code, 0, "{run:?}");
    r.wait(follower, "first step analysed", |v| {
        v["phase"] == "analysing"
    })
    .await;
    let admin = r.get(follower).admin;
    let (code, body) = post(admin, "web/pause", Some("wrong")).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(admin, "web/pause", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["phase"], "paused");
    for i in [leader, follower] {
        let a = r.get(i).admin;
        eventually(&format!("replica {i} sees the pause"), || async {
            rollouts(a).await[0]["phase"] == "paused"
        })
        .await;
    }
    let (code, body) = post(admin, "web/abort", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    let leader_admin = r.get(leader).admin;
    eventually("the leader sees the abort", || async {
        rollouts(leader_admin).await[0]["phase"] == "aborted"
    })
    .await;
    assert_eq!(r.status(leader)["phase"], "aborted");
}
