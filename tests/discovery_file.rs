//! The file source end to end (sluice as a child process, an xDS client on
//! EDS): not ready until the endpoints file has been read once; edits
//! reach the client; a garbled file keeps the last endpoints; an empty list
//! empties the service.

mod common;

use std::collections::BTreeSet;

use common::eds::eds_is;
use common::*;

const RULES: &str = r#"services:
  - name: web
    discovery: {file: {path: web-endpoints.yaml}}
listeners:
  - name: http
    address: 127.0.0.1
    port: PORT
    virtual_hosts:
      - name: web
        domains: ["*"]
        routes:
          - match: {prefix: /}
            to: {service: web}
"#;

fn write(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_readiness_edits_and_fail_static() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES.replace("PORT", &free_port().to_string())).expect("write");
    let eps = dir.path().join("web-endpoints.yaml");
    let sluice = Sluice::start(&rules, "127.0.0.1:0");
    let readyz = format!("http://{}/readyz", sluice.admin);

    // The file does not exist yet: the feed never synced, nothing published.
    eventually("the missing file is reported", || async {
        let s = sluice.status().await;
        s["sources"][0]["feeds"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("web-endpoints.yaml"))
    })
    .await;
    let r = http().get(&readyz).send().await.expect("readyz");
    assert_eq!(r.status(), 503);
    assert_eq!(sluice.status().await["ready"], false);

    write(&eps, "endpoints:\n  - {address: 127.0.0.1, port: 7001}\n");
    sluice.wait_ready("ready once the file is read").await;
    let eds = eds::subscribe(sluice.xds, "web");
    eds_is(&eds, &["127.0.0.1:7001 HEALTHY"]).await;

    write(
        &eps,
        "endpoints:\n  - {address: 127.0.0.1, port: 7001}\n  - {address: 127.0.0.1, port: 7002, health: degraded}\n",
    );
    eds_is(&eds, &["127.0.0.1:7001 HEALTHY", "127.0.0.1:7002 DEGRADED"]).await;

    // Garbage: the feed fails, endpoints stay.
    write(&eps, "endpoints: [unclosed\n");
    eventually("source down", || async {
        sluice.metric("sluice_source_up{source=\"file\"}").await == 0.0
    })
    .await;
    assert_eq!(
        eds.borrow().last().map(BTreeSet::len),
        Some(2),
        "fail-static"
    );

    // A healthy, empty listing empties the service.
    write(&eps, "endpoints: []\n");
    eds_is(&eds, &[]).await;
    assert_eq!(
        sluice.metric("sluice_source_up{source=\"file\"}").await,
        1.0
    );
}
