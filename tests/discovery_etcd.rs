//! The etcd source against a real etcd (3.4, Debian's `etcd-server`) on
//! loopback, with sluice as a child process and an xDS client reading EDS:
//! keys added, updated, deleted and garbled reach the client; an etcd
//! outage removes nothing and shows in metrics and status; a restart
//! converges; a compaction past the watch revision is recovered by a
//! re-list that applies the deletes made during the gap, while a quiet
//! feed that etcd told of its progress resumes without one; an etcd that
//! hangs (stopped, connections open) is noticed, keeps every endpoint, and
//! the feeds come back on a new watch stream when it wakes; a resumed
//! watch starts the retry delay over.

mod common;

use std::path::Path;

use common::eds::{eds_is, last, set};
use common::etcd::Etcd;
use common::*;

fn rules(etcd_url: &str, listen: u16) -> String {
    let listener = common::rules::http_listener(listen, "web");
    format!(
        r#"sources:
  etcd: {{endpoints: ["{etcd_url}"]}}
services:
  - name: web
    discovery: {{etcd: {{prefix: /services/web/}}}}
{listener}          - match: {{prefix: /}}
            to: {{service: web}}
"#
    )
}

fn record(port: u16, health: &str) -> String {
    format!(
        r#"{{"address":"127.0.0.1","port":{port},"labels":{{"version":"v1"}},"health":"{health}"}}"#
    )
}

/// web's endpoints on `ports` in etcd, and sluice serving them to an xDS
/// client that has seen them. The directory holds sluice's rules.
async fn serving_web(
    etcd: &Etcd,
    ports: &[u16],
) -> (tempfile::TempDir, Sluice, eds::History, etcd_client::Client) {
    let mut kv = etcd.client().await.expect("client");
    let mut want = Vec::new();
    for (port, key) in ports.iter().zip('a'..) {
        kv.put(
            format!("/services/web/{key}"),
            record(*port, "healthy"),
            None,
        )
        .await
        .expect("put");
        want.push(format!("127.0.0.1:{port} HEALTHY"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sluice = start(etcd, dir.path()).await;
    let eds = eds::subscribe(sluice.xds, "web");
    eds_is(&eds, &want.iter().map(String::as_str).collect::<Vec<_>>()).await;
    (dir, sluice, eds, kv)
}

/// Compacts etcd's history up to its current revision.
async fn compact_now(kv: &mut etcd_client::Client) {
    let rev = kv
        .get("/", None)
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision();
    kv.compact(rev, None).await.expect("compact");
}

async fn start(etcd: &Etcd, dir: &Path) -> Sluice {
    let path = dir.join("rules.yaml");
    std::fs::write(&path, rules(&etcd.url, free_port())).expect("write rules");
    Sluice::start(&path, "127.0.0.1:0")
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_changes_outage_and_restart() {
    let mut etcd = Etcd::start().await;
    let mut kv = etcd.client().await.expect("client");
    kv.put("/services/web/a", record(8081, "healthy"), None)
        .await
        .expect("put");
    let dir = tempfile::tempdir().expect("tempdir");
    let sluice = start(&etcd, dir.path()).await;
    sluice
        .wait_ready("ready after the first etcd listing")
        .await;
    let eds = eds::subscribe(sluice.xds, "web");
    eds_is(&eds, &["127.0.0.1:8081 HEALTHY"]).await;

    // Add, update (health from the registry), delete.
    kv.put("/services/web/b", record(8082, "healthy"), None)
        .await
        .expect("put");
    eds_is(&eds, &["127.0.0.1:8081 HEALTHY", "127.0.0.1:8082 HEALTHY"]).await;
    kv.put("/services/web/b", record(8082, "draining"), None)
        .await
        .expect("put");
    eds_is(&eds, &["127.0.0.1:8081 HEALTHY", "127.0.0.1:8082 DRAINING"]).await;
    kv.delete("/services/web/b", None).await.expect("delete");
    eds_is(&eds, &["127.0.0.1:8081 HEALTHY"]).await;

    // Garbage is skipped and counted; the rest keeps working.
    kv.put("/services/web/bad", "{not json", None)
        .await
        .expect("put");
    kv.put("/services/web/noport", r#"{"address":"127.0.0.1"}"#, None)
        .await
        .expect("put");
    kv.put("/services/web/c", record(8083, "healthy"), None)
        .await
        .expect("put");
    eds_is(&eds, &["127.0.0.1:8081 HEALTHY", "127.0.0.1:8083 HEALTHY"]).await;
    eventually("bad entries counted", || async {
        sluice
            .metric("sluice_source_rejected_entries{source=\"etcd\"}")
            .await
            == 2.0
    })
    .await;
    assert_eq!(
        sluice.metric("sluice_source_up{source=\"etcd\"}").await,
        1.0
    );

    // Outage: etcd killed. Nothing removed; metrics and status show it.
    etcd.kill();
    eventually("source_up drops to 0", || async {
        sluice.metric("sluice_source_up{source=\"etcd\"}").await == 0.0
    })
    .await;
    let status = sluice.status().await;
    let src = &status["sources"][0];
    assert_eq!(src["source"], "etcd");
    assert_eq!(src["up"], false);
    assert_eq!(src["endpoints"], 2, "fail-static: {status}");
    assert_eq!(src["feeds"][0]["state"], "failing");
    assert!(src["feeds"][0]["last_error"].as_str().is_some(), "{status}");
    assert_eq!(status["ready"], true);
    // The outage lasts: the age grows past a second while endpoints stay.
    eventually("last sync age grows", || async {
        sluice
            .metric("sluice_source_last_sync_age_seconds{source=\"etcd\"}")
            .await
            > 1.0
    })
    .await;
    assert_eq!(
        last(&eds),
        set(&["127.0.0.1:8081 HEALTHY", "127.0.0.1:8083 HEALTHY"])
    );
    let shown = sluice.status_text().await;
    assert!(shown.contains("source etcd: DOWN"), "{shown}");

    // Restart: converges, including changes made right after.
    etcd.restart().await;
    let mut kv = etcd.client().await.expect("client");
    kv.delete("/services/web/a", None).await.expect("delete");
    eds_is(&eds, &["127.0.0.1:8083 HEALTHY"]).await;
    eventually("source_up back to 1", || async {
        sluice.metric("sluice_source_up{source=\"etcd\"}").await == 1.0
    })
    .await;

    // Scale to zero: a healthy etcd with no instances empties the service.
    kv.delete("/services/web/c", None).await.expect("delete");
    eds_is(&eds, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_compaction_during_a_gap_is_relisted() {
    let mut etcd = Etcd::start().await;
    let (_dir, sluice, eds, _) = serving_web(&etcd, &[9001, 9002]).await;

    // Freeze sluice, restart etcd under it (its watch is gone), change the
    // data and compact past sluice's watch revision; then let sluice go on.
    let pid = sluice.child.id();
    signal(pid, "-STOP");
    etcd.restart().await;
    let mut kv = etcd.client().await.expect("client");
    kv.delete("/services/web/a", None).await.expect("delete");
    kv.put("/services/web/c", record(9003, "healthy"), None)
        .await
        .expect("put");
    compact_now(&mut kv).await;
    signal(pid, "-CONT");

    eds_is(&eds, &["127.0.0.1:9002 HEALTHY", "127.0.0.1:9003 HEALTHY"]).await;
    // The re-list swapped the set in one step: 9002, never removed, is in
    // every update the client received.
    let history = eds.borrow().clone();
    assert!(
        history.iter().all(|s| s.contains("127.0.0.1:9002 HEALTHY")),
        "{history:?}"
    );
    eventually("source_up back to 1", || async {
        sluice.metric("sluice_source_up{source=\"etcd\"}").await == 1.0
    })
    .await;
}

/// The ESTABLISHED TCP connections process `pid` holds to `port` on
/// loopback: its socket inodes (`/proc/PID/fd`) matched against the
/// kernel's table (`/proc/PID/net/tcp`).
fn connections_to(pid: u32, port: u16) -> usize {
    let inodes: std::collections::BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).expect("tcp table");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            f[3] == "01" && remote_port == Some(port) && inodes.contains(f[9])
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_etcd_services_share_one_connection() {
    let etcd = Etcd::start().await;
    let mut kv = etcd.client().await.expect("client");
    let services = 12;
    let mut rules = format!(
        "sources:\n  etcd: {{endpoints: [\"{}\"]}}\nservices:\n",
        etcd.url
    );
    for i in 0..services {
        rules += &format!("  - name: s{i}\n    discovery: {{etcd: {{prefix: /services/s{i}/}}}}\n");
        kv.put(
            format!("/services/s{i}/a"),
            record(9000 + i, "healthy"),
            None,
        )
        .await
        .expect("put");
    }
    rules += &common::rules::http_listener(free_port(), "all");
    for i in 0..services {
        rules +=
            &format!("          - match: {{prefix: /s{i}/}}\n            to: {{service: s{i}}}\n");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, rules).expect("write rules");
    let sluice = Sluice::start(&path, "127.0.0.1:0");
    sluice
        .wait_ready("ready after every feed's first listing")
        .await;
    // Every feed listed and is watching, all over one connection.
    let port: u16 = etcd
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    assert_eq!(connections_to(sluice.child.id(), port), 1);
    // Every feed's watcher is on one watch stream.
    let watch_metrics = || async {
        (
            etcd_gauge(&etcd.url, "etcd_debugging_mvcc_watch_stream_total").await,
            etcd_gauge(&etcd.url, "etcd_debugging_mvcc_watcher_total").await,
        )
    };
    eventually("one stream, a watcher per feed", || async {
        watch_metrics().await == (1.0, f64::from(services))
    })
    .await;
    // And the watches on it work: a change arrives, for the first feed
    // and the last.
    for s in [0, services - 1] {
        let eds = eds::subscribe(sluice.xds, &format!("s{s}"));
        eds_is(&eds, &[&format!("127.0.0.1:{} HEALTHY", 9000 + s)]).await;
        kv.put(format!("/services/s{s}/b"), record(9100, "healthy"), None)
            .await
            .expect("put");
        eds_is(
            &eds,
            &[
                &format!("127.0.0.1:{} HEALTHY", 9000 + s),
                "127.0.0.1:9100 HEALTHY",
            ],
        )
        .await;
    }
    // The stream's progress checks are answered: past two request
    // timeouts (5 s) it is still the one stream, and no feed failed.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    assert_eq!(watch_metrics().await, (1.0, f64::from(services)));
    assert_eq!(
        sluice.metric("sluice_source_up{source=\"etcd\"}").await,
        1.0
    );
    // Every feed heard the stream's progress answers: the stalest one
    // synced within the last probe intervals, not 11 s ago.
    let age = sluice
        .metric("sluice_source_last_sync_age_seconds{source=\"etcd\"}")
        .await;
    assert!(age < 5.0, "stalest etcd feed synced {age} s ago");
}

/// A gauge from etcd's own `/metrics`.
async fn etcd_gauge(url: &str, name: &str) -> f64 {
    let text = http()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("etcd metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in etcd's metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_feed_resumes_from_its_progress_not_its_listing() {
    // etcd tells each caught-up watcher its progress every second here
    // (10 minutes by default).
    let mut etcd = Etcd::start_with(&["--experimental-watch-progress-notify-interval=1s"]).await;
    let (_dir, sluice, eds, mut kv) = serving_web(&etcd, &[9001]).await;

    // Writes elsewhere move etcd's revision far past web's listing; web
    // hears only its progress. Then the history up to now goes, and the
    // watch stream with etcd's restart.
    for i in 0..20 {
        kv.put("/other/key", format!("{i}"), None)
            .await
            .expect("put");
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    compact_now(&mut kv).await;
    etcd.restart().await;

    // The feed is back, resumed past the compaction: a change arrives...
    let mut kv = etcd.client().await.expect("client");
    kv.put("/services/web/b", record(9002, "healthy"), None)
        .await
        .expect("put");
    eds_is(&eds, &["127.0.0.1:9001 HEALTHY", "127.0.0.1:9002 HEALTHY"]).await;
    // ...and it never listed again.
    let web = web_feed(&sluice).await;
    assert_eq!(web["full_loads"], 1, "{web}");
}

/// web's feed as `/status` shows it.
async fn web_feed(sluice: &Sluice) -> serde_json::Value {
    let status = sluice.status().await;
    status["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["feeds"].as_array().into_iter().flatten())
        .find(|f| f["service"] == "web")
        .cloned()
        .unwrap_or_else(|| panic!("web's feed in status: {status}"))
}

/// The delay a failing feed waits before its next try, as its error
/// ends: `(retrying in 5s)`.
fn retry_delay(feed: &serde_json::Value) -> Option<String> {
    let error = feed["last_error"].as_str()?;
    let (_, delay) = error.rsplit_once("(retrying in ")?;
    Some(delay.strip_suffix(')')?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_watch_starts_the_retry_delay_over() {
    let mut etcd = Etcd::start().await;
    let (_dir, sluice, _eds, _kv) = serving_web(&etcd, &[9001]).await;

    // An outage long enough that every retry waits the longest delay.
    etcd.kill();
    eventually("the retry delay grows to its 5 s cap", || async {
        retry_delay(&web_feed(&sluice).await).as_deref() == Some("5s")
    })
    .await;
    // etcd is back: the feed resumes its watch (it does not list again).
    etcd.restart().await;
    eventually("the feed is synced again", || async {
        web_feed(&sluice).await["state"] == "synced"
    })
    .await;
    assert_eq!(web_feed(&sluice).await["full_loads"], 1);

    // A new outage, etcd hanging this time: each try waits for the 5 s
    // request timeout, so the first error stays shown that long. Its
    // retry starts over at 100 ms (before, it kept the 5 s of the last
    // outage: only a listing reset the delay).
    let pid = etcd.pid().expect("etcd runs");
    signal(pid, "-STOP");
    eventually("the feed fails again", || async {
        web_feed(&sluice).await["state"] == "failing"
    })
    .await;
    let feed = web_feed(&sluice).await;
    let delay = retry_delay(&feed);
    assert!(
        delay.is_some() && delay.as_deref() != Some("5s"),
        "a new outage starts with a short retry: {feed}"
    );

    signal(pid, "-CONT");
    eventually("the feed is synced after the hang", || async {
        web_feed(&sluice).await["state"] == "synced"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_etcd_is_noticed_and_nothing_is_removed() {
    let etcd = Etcd::start().await;
    let (_dir, sluice, eds, mut kv) = serving_web(&etcd, &[9001]).await;

    // Stopped, etcd keeps its connections but answers nothing, neither
    // the connection's keep-alive pings nor the watch stream's progress
    // request (either tells, within the 5 s request timeout).
    let pid = etcd.pid().expect("etcd runs");
    signal(pid, "-STOP");
    eventually("source_up drops to 0", || async {
        sluice.metric("sluice_source_up{source=\"etcd\"}").await == 0.0
    })
    .await;
    assert_eq!(
        last(&eds),
        set(&["127.0.0.1:9001 HEALTHY"]),
        "a hanging source removes nothing"
    );

    signal(pid, "-CONT");
    eventually("source_up back to 1", || async {
        sluice.metric("sluice_source_up{source=\"etcd\"}").await == 1.0
    })
    .await;
    kv.put("/services/web/b", record(9002, "healthy"), None)
        .await
        .expect("put");
    eds_is(&eds, &["127.0.0.1:9001 HEALTHY", "127.0.0.1:9002 HEALTHY"]).await;
}
