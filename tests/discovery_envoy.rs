//! Real Envoy fed from a real etcd: a backend registered in etcd starts
//! receiving traffic through Envoy, stops when its key is deleted, and
//! traffic keeps flowing to the last known endpoints while etcd is down.

mod common;

use common::etcd::Etcd;
use common::*;

fn rules(etcd_url: &str) -> String {
    let listener = common::rules::http_listener(0, "web");
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

fn record(b: &Backend) -> String {
    format!(r#"{{"address":"127.0.0.1","port":{}}}"#, b.addr.port())
}

/// Polls until `n` requests are all answered by exactly `names`.
async fn served_by(url: &str, names: &[&str]) {
    let want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    eventually(&format!("traffic reaches exactly {want:?}"), || async {
        let got: Vec<String> = distribution(url, 30).await.into_keys().collect();
        got == want
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_registered_backends_receive_traffic_through_envoy() {
    let mut etcd = Etcd::start().await;
    let mut kv = etcd.client().await.expect("client");
    let a = backend("a").await;
    let b = backend("b").await;
    kv.put("/services/web/a", record(&a), None)
        .await
        .expect("put");

    let rules = RulesFile::new(&rules(&etcd.url));
    let (sluice, _envoy, listen) = sluice_and_envoy(&rules.path, "envoy-etcd", "http").await;
    let url = format!("http://127.0.0.1:{listen}/");

    served_by(&url, &["a"]).await;
    kv.put("/services/web/b", record(&b), None)
        .await
        .expect("put");
    served_by(&url, &["a", "b"]).await;
    kv.delete("/services/web/a", None).await.expect("delete");
    served_by(&url, &["b"]).await;

    // etcd down: Envoy keeps the last known endpoints, no request fails.
    etcd.kill();
    eventually("sluice sees the outage", || async {
        sluice.metric("sluice_source_up{source=\"etcd\"}").await == 0.0
    })
    .await;
    let during = distribution(&url, 200).await;
    assert_eq!(
        during.keys().collect::<Vec<_>>(),
        ["b"],
        "traffic during the etcd outage: {during:?}"
    );
}
