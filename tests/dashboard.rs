//! The admin dashboard (`GET /ui`) in a real headless chromium, against a
//! real sluice with a real Envoy and simulated proxies: what the page
//! lists is what `/status` and `/rollouts` say, a NACK shows with Envoy's
//! error, a rollout's step, weights, ACK share and chart move on the page
//! while it steps, the page's "Abort rollout" returns traffic to stable
//! on the real Envoy, and a wrong token changes nothing.
//!
//! Every wait is for a condition with a generous deadline; nothing is
//! timed. Screenshots of each state land in
//! `target/dashboard-screenshots/`.

#[path = "dashboard/browser.rs"]
mod browser;
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use browser::Browser;
use common::rollout::*;
use common::*;
use sluice::sim::client::Faults;
use sluice::sim::fleet::{Fleet, FleetConfig};
use sluice::xds::TypeUrl;

const FLEET_COLUMNS: [&str; 9] = [
    "Node",
    "Group",
    "ADS mode",
    "Connected since",
    "CDS",
    "EDS",
    "LDS",
    "RDS",
    "NACK",
];

fn rules(v1: u16, v2: u16) -> String {
    let web = common::rules::web_v1_v2(v1, v2);
    let listener = common::rules::http_listener(0, "web");
    format!(
        r#"services:
{web}{listener}          - match: {{prefix: /}}
            to: {{service: web, subset: stable}}
"#
    )
}

fn sim(xds: &str, prefix: &str, proxies: usize, faults: Faults) -> Fleet {
    Fleet::start(&FleetConfig {
        xds: xds.to_string(),
        proxies,
        mode: sluice::sim::state::Mode::Delta,
        group: "default".into(),
        node_prefix: prefix.into(),
        faults,
        runtime_layer: Some(sluice::model::RUNTIME_LAYER.to_string()),
        security: Default::default(),
    })
}

/// Console entries at level SEVERE (errors, failed loads such as a
/// missing icon).
fn errors(log: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    log.iter().filter(|e| e["level"] == "SEVERE").collect()
}

/// The fleet table as the page shows it: the header cells, and per row
/// its node id and the text of each cell.
async fn fleet_table(b: &Browser) -> serde_json::Value {
    b.eval(
        "const t = document.querySelector('#fleet');
         return {
           head: [...t.querySelectorAll('thead th')].map((c) => c.textContent),
           rows: [...t.querySelectorAll('tbody tr[data-node]')].map((r) => ({
             node: r.dataset.node,
             class: r.className,
             cells: [...r.children].map((c) => c.textContent),
             acked: Object.fromEntries([...r.querySelectorAll('td[data-type]')].map((c) => [c.dataset.type, (c.querySelector('.acked') || c).textContent])),
           })),
         };",
    )
    .await
}

/// Whether every proxy of `/status` is a row of the page with the
/// versions it ACKed.
fn page_matches_status(page: &serde_json::Value, status: &serde_json::Value) -> bool {
    let proxies = status["proxies"].as_array().cloned().unwrap_or_default();
    let rows = page["rows"].as_array().cloned().unwrap_or_default();
    rows.len() == proxies.len()
        && proxies.iter().all(|p| {
            let id = &p["node"]["id"];
            rows.iter().any(|r| {
                &r["node"] == id
                    && ["cds", "eds", "lds", "rds"].iter().all(|t| {
                        match p["types"][t]["acked"].as_str() {
                            Some(v) => r["acked"][t] == v,
                            None => true,
                        }
                    })
            })
        })
}

/// The RDS NACK error `/status` has for `node`.
fn nack_error(status: &serde_json::Value, node: &str) -> Option<String> {
    status["proxies"]
        .as_array()?
        .iter()
        .find(|p| p["node"]["id"] == node)?["types"]["rds"]["nack"]["error"]
        .as_str()
        .map(String::from)
}

async fn rollouts(admin: std::net::SocketAddr) -> serde_json::Value {
    get_json(&format!("http://{admin}/rollouts")).await
}

/// (a) listing, (c) a live rollout and abort from the page, (d) a wrong
/// token, (e) screenshots and the fleet table's structure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_lists_the_fleet_follows_a_rollout_and_aborts_it() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let files = ControllerFiles::new();
    let rules_path = files.dir.path().join("rules.yaml");
    std::fs::write(&rules_path, rules(v1.addr.port(), v2.addr.port())).expect("rules");
    let xds = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let envoy = Envoy::start("envoy-dash", "default", xds, &[]).await;
    let sluice = files.sluice_with(&rules_path, &xds.to_string(), &[envoy.admin], &[]);
    let fleet = sim(&xds.to_string(), "sim-dash", 2, Faults::default());
    let port = envoy.listener_port("http").await;
    let url = format!("http://127.0.0.1:{port}/");
    routes_to(port, "v1").await;
    fleet
        .wait_all(WAIT, |r| r.view.listeners.contains_key("http"))
        .await
        .expect("fleet configured");

    let b = Browser::start().await;
    let ui = format!("http://{}/ui", sluice.admin);
    b.goto(&ui).await;
    b.wait_js(
        "the page connects",
        "return document.querySelector('#conn').dataset.state === 'connected';",
    )
    .await;
    // (a) The real Envoy and both simulated proxies, with the versions
    // they ACKed as /status has them.
    let deadline = std::time::Instant::now() + browser::WAIT;
    let page = loop {
        let status = sluice.status().await;
        let page = fleet_table(&b).await;
        if page_matches_status(&page, &status)
            && status["proxies"].as_array().map(Vec::len) == Some(3)
        {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page's fleet never matched /status:\npage {page}\nstatus {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(page["head"], serde_json::json!(FLEET_COLUMNS), "{page}");
    let mut nodes: Vec<&str> = page["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["node"].as_str().unwrap_or_default())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["envoy-dash", "sim-dash-0", "sim-dash-1"], "{page}");
    for row in page["rows"].as_array().expect("rows") {
        assert_eq!(
            row["cells"].as_array().map(Vec::len),
            Some(FLEET_COLUMNS.len()),
            "{row}"
        );
        assert_eq!(row["class"], "synced", "{row}");
        assert_eq!(row["cells"][1], "default", "{row}");
    }
    b.wait_js(
        "the counts",
        "return document.querySelector('#count-connected').textContent === '3'
            && document.querySelector('#count-in-sync').textContent === '3'
            && document.querySelector('#count-nacking').textContent === '0';",
    )
    .await;
    let served = sluice.status().await["rules"]["served_hash"].clone();
    let served = served.as_str().expect("served hash").to_string();
    b.wait_js(
        "the served rules version",
        &format!("return document.querySelector('#rules .served')?.textContent === '{served}';"),
    )
    .await;
    b.screenshot("fleet").await;
    // Every control has an accessible name: an aria-label or a label.
    let unnamed = b
        .eval(
            "return [...document.querySelectorAll('button, input, select')]
               .filter((e) => !e.getAttribute('aria-label') && !(e.labels && e.labels.length))
               .map((e) => e.outerHTML);",
        )
        .await;
    assert_eq!(unnamed, serde_json::json!([]), "controls without a name");
    // A laptop-narrow window: nothing but the tables scrolls sideways.
    b.client.set_window_size(800, 1200).await.expect("resize");
    b.wait_js(
        "the narrow layout",
        "return window.innerWidth <= 800 && document.documentElement.scrollWidth <= window.innerWidth;",
    )
    .await;
    b.screenshot("fleet-narrow").await;
    b.client.set_window_size(1280, 1600).await.expect("resize");
    let log = b.console().await;
    assert!(errors(&log).is_empty(), "console errors: {log:?}");

    // Steady traffic through Envoy, so every analysis window has canary
    // requests.
    let stop = Arc::new(AtomicBool::new(false));
    let (u, st) = (url.clone(), stop.clone());
    let load = tokio::spawn(async move {
        let client = http();
        while !st.load(Ordering::Relaxed) {
            let _ = client.get(&u).send().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    // Twenty steps of 1 s windows: long enough to watch several steps and
    // abort before the end, with checks that cannot roll it back (the
    // thresholds are generous).
    let r = cli(
        &sluice,
        Some(&files.token_file),
        &[
            "start",
            "web",
            "--to",
            "canary",
            "--steps",
            "5,10,15,20,25,30,35,40,45,50,55,60,65,70,75,80,85,90,95,100",
            "--interval",
            "1s",
            "--max-error-rate",
            "50%",
            "--max-p99",
            "5s",
            "--failure-threshold",
            "100",
            "--output",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");

    // (c) The page follows the rollout: each step it shows is "step N/20"
    // with that step's weights and an ACK share, and the chart gains
    // windows, while the rollout keeps going.
    let mut seen = std::collections::BTreeSet::new();
    let mut bars = 0;
    let deadline = std::time::Instant::now() + browser::WAIT;
    while seen.len() < 2 || bars < 2 {
        let v = b
            .eval(
                "const c = document.querySelector('article.rollout[data-service=\"web\"]');
                 if (!c) return null;
                 const t = (s) => c.querySelector(s)?.textContent;
                 return {phase: c.dataset.phase, step: t('.step'), weights: t('.weights'), acks: t('.acks'),
                         bars: c.querySelectorAll('svg.chart rect.bar').length};",
            )
            .await;
        if let Some(step) = v["step"].as_str().and_then(|s| s.strip_prefix("step ")) {
            let n: u32 = step
                .split('/')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("step N/M");
            assert_eq!(step, format!("{n}/20"), "{v}");
            let w = n * 5;
            assert_eq!(
                v["weights"],
                format!("canary canary {w}% / stable stable {}%", 100 - w),
                "{v}"
            );
            let acks = v["acks"].as_str().unwrap_or_default();
            assert!(acks.ends_with("/3") || acks.ends_with("/0"), "{v}");
            if v["phase"] == "analysing" {
                assert_eq!(acks, "3/3", "analysis starts once the fleet ACKed: {v}");
                seen.insert(n);
            }
            bars = bars.max(v["bars"].as_u64().unwrap_or(0));
        }
        assert!(
            v["phase"] != "promoted" && v["phase"] != "rolled_back",
            "the rollout ended before the page could abort it: {v}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the page never showed two analysed steps and two windows: seen {seen:?}, last {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    b.screenshot("rollout-stepping").await;

    // (d) A wrong token: the page says so, and nothing changes.
    // Keyboard only: type the token, Tab to "Pause rollout", press Enter.
    let token = b.labelled("Admin token").await;
    token.send_keys("not-the-token").await.expect("type token");
    let mut reached = Vec::new();
    loop {
        let focused = b.client.active_element().await.expect("focus");
        let label = focused.attr("aria-label").await.expect("attr");
        if label.as_deref() == Some("Pause rollout") {
            focused.send_keys("\u{E007}").await.expect("press Enter");
            break;
        }
        reached.push(label);
        assert!(
            reached.len() < 50,
            "Tab never reached Pause rollout: {reached:?}"
        );
        focused.send_keys("\u{E004}").await.expect("press Tab");
    }
    let (kind, text) = b.result().await;
    assert_eq!(kind, "error", "{text}");
    assert!(text.contains("missing or wrong admin token"), "{text}");
    b.screenshot("wrong-token").await;
    let now = rollouts(sluice.admin).await;
    assert_ne!(now[0]["phase"], "paused", "{now}");
    assert_ne!(now[0]["done"], true, "{now}");
    // The right token, then "Abort rollout": traffic returns to stable on
    // the real Envoy.
    token.clear().await.expect("clear token");
    token.send_keys(TOKEN).await.expect("type token");
    b.labelled("Abort rollout")
        .await
        .click()
        .await
        .expect("click abort");
    let (kind, text) = b.result().await;
    assert_eq!(kind, "ok", "{text}");
    assert!(text.contains("aborted"), "{text}");
    b.wait_js(
        "the page shows the abort",
        "const c = document.querySelector('article.rollout[data-service=\"web\"]');
         return c && c.dataset.phase === 'aborted'
           && c.querySelector('.weights').textContent === 'canary canary 0% / stable stable 100%'
           && c.querySelector('[aria-label=\"Abort rollout\"]').disabled;",
    )
    .await;
    assert_eq!(rollouts(sluice.admin).await[0]["phase"], "aborted");
    eventually("everything back on stable", || async {
        !distribution(&url, 50).await.contains_key("v2")
    })
    .await;
    let counts = distribution(&url, 200).await;
    assert_eq!(counts.get("v1"), Some(&200), "{counts:?}");
    b.screenshot("rollout-aborted").await;

    // A wrong token again: a drain is refused too, and none is added.
    token.clear().await.expect("clear token");
    token.send_keys("not-the-token").await.expect("type token");
    b.client
        .find(fantoccini::Locator::Id("drain-service"))
        .await
        .expect("drain service")
        .send_keys("web")
        .await
        .expect("type");
    b.client
        .find(fantoccini::Locator::Id("drain-target"))
        .await
        .expect("drain target")
        .send_keys(&v2.addr.to_string())
        .await
        .expect("type");
    b.labelled("Add drain")
        .await
        .click()
        .await
        .expect("click add drain");
    let (kind, text) = b.result().await;
    assert_eq!(kind, "error", "{text}");
    assert!(text.contains("missing or wrong admin token"), "{text}");
    let drains = get_json(&format!("http://{}/drains", sluice.admin)).await;
    assert_eq!(drains, serde_json::json!([]), "a refused drain was added");
    token.clear().await.expect("clear token");
    token.send_keys(TOKEN).await.expect("type token");

    // Add a drain from the page (the form still holds web and v2's
    // address): the service's endpoint shows as draining; then remove it.
    b.wait_js(
        "web's endpoints, healthy",
        "const r = document.querySelector('#services tr[data-service=\"web\"]');
         return r && r.querySelectorAll('li[data-health=\"healthy\"]').length === 2;",
    )
    .await;
    b.labelled("Add drain")
        .await
        .click()
        .await
        .expect("click add drain");
    let (kind, text) = b.result().await;
    assert_eq!(kind, "ok", "{text}");
    assert!(text.ends_with(": done"), "{text}");
    let v2_addr = v2.addr.to_string();
    b.wait_js(
        "the drained endpoint",
        &format!(
            "const r = document.querySelector('#services tr[data-service=\"web\"]');
             const d = r && [...r.querySelectorAll('li[data-health=\"draining\"]')];
             return d && d.length === 1 && d[0].textContent.startsWith('{v2_addr} draining')
               && document.querySelectorAll('#drains [aria-label=\"Remove drain\"]').length === 1;"
        ),
    )
    .await;
    let services = get_json(&format!("http://{}/services", sluice.admin)).await;
    let web = &services[0];
    assert_eq!(web["name"], "web", "{services}");
    assert_eq!(
        web["by_health"],
        serde_json::json!({"healthy": 1, "draining": 1}),
        "{web}"
    );
    b.screenshot("drain").await;
    b.labelled("Remove drain")
        .await
        .click()
        .await
        .expect("click remove drain");
    let (kind, text) = b.result().await;
    assert_eq!(kind, "ok", "{text}");
    assert!(text.ends_with(": done"), "{text}");
    b.wait_js(
        "the drain removed",
        "const r = document.querySelector('#services tr[data-service=\"web\"]');
         return r && r.querySelectorAll('li[data-health=\"healthy\"]').length === 2
           && document.querySelectorAll('#drains [aria-label=\"Remove drain\"]').length === 0;",
    )
    .await;
    assert_eq!(
        get_json(&format!("http://{}/drains", sluice.admin)).await,
        serde_json::json!([])
    );

    // The token was kept for this browser session only.
    let stored = b
        .eval("return [sessionStorage.getItem('sluice-admin-token'), localStorage.length];")
        .await;
    assert_eq!(stored, serde_json::json!([TOKEN, 0]));
    // The browser logs the refused commands' 401s; nothing else.
    let log = b.console().await;
    let unexpected: Vec<_> = errors(&log)
        .into_iter()
        .filter(|e| {
            !e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("401 (Unauthorized)")
        })
        .collect();
    assert!(unexpected.is_empty(), "console errors: {log:?}");
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    b.close().await;
}

/// (b) A proxy that NACKs RDS shows as NACKing with the error it sent;
/// the "not in sync" filter keeps only it; SIGTERM stops sluice with the
/// page open, and the page says it is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_nacking_proxy_and_a_lost_connection() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let rules_file = RulesFile::new(&rules(v1.addr.port(), v2.addr.port()));
    let mut sluice = Sluice::start(&rules_file.path, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    let xds = sluice.xds.to_string();
    let healthy = sim(&xds, "sim-ok", 1, Faults::default());
    let nacking = sim(
        &xds,
        "sim-nack",
        1,
        Faults {
            nack: vec![TypeUrl::Route],
            ..Faults::default()
        },
    );
    healthy
        .wait_all(WAIT, |r| r.view.listeners.contains_key("http"))
        .await
        .expect("healthy proxy configured");
    let deadline = std::time::Instant::now() + WAIT;
    let error = loop {
        if let Some(e) = nack_error(&sluice.status().await, "sim-nack-0") {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sluice never recorded the NACK"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    let b = Browser::start().await;
    b.goto(&format!("http://{}/ui", sluice.admin)).await;
    b.wait_js(
        "one proxy NACKing",
        "return document.querySelector('#count-nacking').textContent === '1'
            && document.querySelector('#count-connected').textContent === '2';",
    )
    .await;
    let page = fleet_table(&b).await;
    let row = page["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["node"] == "sim-nack-0")
        .cloned()
        .unwrap_or_else(|| panic!("no row for the NACKing proxy: {page}"));
    assert_eq!(row["class"], "nacking", "{row}");
    let nack_cell = row["cells"][8].as_str().unwrap_or_default();
    assert!(nack_cell.starts_with("RDS "), "{row}");
    assert!(nack_cell.contains(&error), "{row} lacks {error:?}");
    // The one route configuration sent is the listener's: the rule the
    // NACK came from.
    assert!(
        nack_cell.contains("(from routes of listener `http`)"),
        "{row}"
    );
    b.screenshot("nacking").await;

    // "Not in sync only" keeps the NACKing proxy alone.
    b.client
        .find(fantoccini::Locator::Id("unsynced-filter"))
        .await
        .expect("filter")
        .click()
        .await
        .expect("click filter");
    b.wait_js(
        "the filter",
        "const rows = [...document.querySelectorAll('#fleet tbody tr[data-node]')];
         return rows.length === 1 && rows[0].dataset.node === 'sim-nack-0';",
    )
    .await;
    // Without a rollout controller the page says so instead of failing.
    b.wait_js(
        "no controller",
        "return document.querySelector('#rollouts-empty').textContent.startsWith('no rollout controller');",
    )
    .await;
    // A refused edit of the rules shows with its file:line:column, while
    // the served version stays.
    let served = sluice.status().await["rules"]["served_hash"].clone();
    rules_file.write(
        &rules(v1.addr.port(), v2.addr.port())
            .replace("subset: stable}", "subset: stable, weigth: 3}"),
    );
    let deadline = std::time::Instant::now() + WAIT;
    let refused = loop {
        let status = sluice.status().await;
        if let Some(e) = status["rules"]["last_error"].as_str() {
            break e.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edit was never refused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let at = refused
        .split_whitespace()
        .find(|w| w.contains("rules.yaml:"))
        .unwrap_or_else(|| panic!("no file:line:column in {refused:?}"));
    let mut parts = at.trim_end_matches(':').rsplit(':');
    let (col, line) = (parts.next(), parts.next());
    assert!(
        col.is_some_and(|c| c.parse::<u32>().is_ok())
            && line.is_some_and(|l| l.parse::<u32>().is_ok()),
        "{refused:?}"
    );
    b.wait_js(
        "the refused edit",
        &format!(
            "const e = document.querySelector('#rules dd.error');
             return e && e.textContent === {} && document.querySelector('#rules .served').textContent === {};",
            serde_json::json!(refused),
            served
        ),
    )
    .await;
    b.screenshot("refused-edit").await;
    let log = b.console().await;
    assert!(errors(&log).is_empty(), "console errors: {log:?}");

    // SIGTERM with the page open and polling: sluice still shuts down
    // (idle keep-alive connections do not hold it), and the page shows
    // it is gone.
    let pid = sluice.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let deadline = std::time::Instant::now() + browser::WAIT;
    let exit = loop {
        if let Some(exit) = sluice.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sluice did not exit on SIGTERM with the page open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit:?}");
    b.wait_js(
        "the page notices",
        "return document.querySelector('#conn').dataset.state === 'disconnected'
            && document.body.classList.contains('disconnected');",
    )
    .await;
    b.screenshot("disconnected").await;
    b.close().await;
    drop((healthy, nacking));
}

/// With several replicas (`--state-etcd`), the page of one replica lists
/// the proxies connected to it and counts every replica's, from what each
/// publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_replicas_the_page_counts_every_replicas_proxies() {
    let r = common::ha::Replicas::start(2).await;
    let b = Browser::start().await;
    b.goto(&format!("http://{}/ui", r.get(0).admin)).await;
    let text = b
        .wait_js(
            "both replicas' proxies counted",
            "const t = document.querySelector('#fleet-replicas');
             const s = t.textContent;
             return !t.hidden && s.includes('r0 2 (this page)') && s.includes('r1 2') && s;",
        )
        .await;
    assert!(
        text.as_str().is_some_and(|t| t.contains("4 proxies")),
        "{text}"
    );
    let page = fleet_table(&b).await;
    let rows = page["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "this replica's own proxies: {page}");
    assert!(
        rows.iter()
            .all(|row| row["node"].as_str().is_some_and(|n| n.starts_with("sim0"))),
        "{page}"
    );
    assert!(errors(&b.console().await).is_empty());
    b.screenshot("replicas").await;
    b.close().await;
}
