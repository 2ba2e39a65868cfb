//! The Kubernetes source against an in-process API server implementing
//! list + watch of EndpointSlices with resourceVersion, bookmarks and 410
//! Gone (`tests/common/kube.rs`), with sluice as a child process and an
//! xDS client reading EDS: a Service's slices are joined, conditions map to
//! health, slice changes and deletions reach the client, and a 410 in the
//! middle of a stalled watch is recovered by a re-list that applies what
//! changed meanwhile without ever removing the stable endpoint; an outage
//! keeps the endpoints and shows in metrics and status. An opt-in
//! test reads a real cluster through `KUBECONFIG`.

mod common;

use common::eds::{eds_is, last, set};
use common::kube::FakeKube;
use common::*;

fn rules(kubeconfig: &str, namespace: &str, service: &str, port: &str, listen: u16) -> String {
    let listener = common::rules::http_listener(listen, "web");
    format!(
        r#"sources:
  kubernetes: {{kubeconfig: "{kubeconfig}"}}
services:
  - name: web
    discovery: {{kubernetes: {{namespace: {namespace}, service: {service}, port: "{port}"}}}}
{listener}          - match: {{prefix: /}}
            to: {{service: web}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_slices_conditions_and_410_relist() {
    let kube = FakeKube::start().await;
    // Two slices of `web`, one of another Service, one in another namespace.
    kube.put_slice(
        "shop",
        "web-a",
        "web",
        8080,
        &[
            ("127.0.0.1", true, true, false),
            ("127.0.0.2", true, true, false),
        ],
    );
    kube.put_slice(
        "shop",
        "web-b",
        "web",
        8080,
        &[
            ("127.0.0.3", true, true, false),
            ("127.0.0.4", false, true, true), // terminating, still serving
            ("127.0.0.5", false, false, true), // terminating, not serving
        ],
    );
    kube.put_slice(
        "shop",
        "api-a",
        "api",
        8080,
        &[("127.0.0.9", true, true, false)],
    );
    kube.put_slice(
        "other",
        "web-z",
        "web",
        8080,
        &[("127.0.0.8", true, true, false)],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("kubeconfig.yaml"), kube.kubeconfig()).expect("kubeconfig");
    let path = dir.path().join("rules.yaml");
    std::fs::write(
        &path,
        rules("kubeconfig.yaml", "shop", "web", "http", free_port()),
    )
    .expect("rules");
    let sluice = Sluice::start(&path, "127.0.0.1:0");
    let eds = eds::subscribe(sluice.xds, "web");
    eds_is(
        &eds,
        &[
            "127.0.0.1:8080 HEALTHY",
            "127.0.0.2:8080 HEALTHY",
            "127.0.0.3:8080 HEALTHY",
            "127.0.0.4:8080 DRAINING",
        ],
    )
    .await;
    assert_eq!(
        sluice
            .metric("sluice_source_up{source=\"kubernetes\"}")
            .await,
        1.0
    );

    // Watch events: a pod starts terminating; a slice goes away.
    kube.put_slice(
        "shop",
        "web-b",
        "web",
        8080,
        &[
            ("127.0.0.3", false, true, true),
            ("127.0.0.4", false, true, true),
        ],
    );
    eds_is(
        &eds,
        &[
            "127.0.0.1:8080 HEALTHY",
            "127.0.0.2:8080 HEALTHY",
            "127.0.0.3:8080 DRAINING",
            "127.0.0.4:8080 DRAINING",
        ],
    )
    .await;
    kube.delete_slice("shop", "web-b");
    eds_is(&eds, &["127.0.0.1:8080 HEALTHY", "127.0.0.2:8080 HEALTHY"]).await;

    // The watch stalls while things change, then the server expires the
    // history: 410, so sluice must list again to learn about the gap.
    let lists = kube.lists();
    kube.pause(true);
    kube.put_slice(
        "shop",
        "web-a",
        "web",
        8080,
        &[("127.0.0.1", true, true, false)],
    );
    kube.put_slice(
        "shop",
        "web-c",
        "web",
        8080,
        &[("127.0.0.6", true, true, false)],
    );
    kube.expire();
    kube.pause(false);
    eds_is(&eds, &["127.0.0.1:8080 HEALTHY", "127.0.0.6:8080 HEALTHY"]).await;
    assert!(kube.lists() > lists, "the 410 led to a re-list");
    let history = eds.borrow().clone();
    assert!(
        history.iter().all(|s| s.contains("127.0.0.1:8080 HEALTHY")),
        "the stable endpoint was in every update: {history:?}"
    );
    eventually("source up again after the re-list", || async {
        sluice
            .metric("sluice_source_up{source=\"kubernetes\"}")
            .await
            == 1.0
    })
    .await;

    // Outage: the API server answers 503 and cuts the watch. Endpoints
    // stay; the source shows down, then up again once the server answers,
    // though no slice changed meanwhile.
    kube.down(true);
    eventually("source down during the outage", || async {
        sluice
            .metric("sluice_source_up{source=\"kubernetes\"}")
            .await
            == 0.0
    })
    .await;
    let status = sluice.status().await;
    assert_eq!(
        status["sources"][0]["endpoints"], 2,
        "fail-static: {status}"
    );
    assert_eq!(
        last(&eds),
        set(&["127.0.0.1:8080 HEALTHY", "127.0.0.6:8080 HEALTHY"])
    );
    kube.down(false);
    eventually("source up after the outage", || async {
        sluice
            .metric("sluice_source_up{source=\"kubernetes\"}")
            .await
            == 1.0
    })
    .await;
    kube.put_slice(
        "shop",
        "web-c",
        "web",
        8080,
        &[("127.0.0.7", true, true, false)],
    );
    eds_is(&eds, &["127.0.0.1:8080 HEALTHY", "127.0.0.7:8080 HEALTHY"]).await;

    // Scale to zero: the last slice empties out.
    kube.put_slice("shop", "web-a", "web", 8080, &[]);
    kube.delete_slice("shop", "web-c");
    eds_is(&eds, &[]).await;
}

/// Opt-in: a real cluster. `KUBECONFIG` names the kubeconfig and
/// `SLUICE_TEST_KUBE_SERVICE=namespace/service:port` a Service with at
/// least one ready endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cluster_when_configured() {
    let (Ok(kubeconfig), Ok(target)) = (
        std::env::var("KUBECONFIG"),
        std::env::var("SLUICE_TEST_KUBE_SERVICE"),
    ) else {
        println!("skipped: set KUBECONFIG and SLUICE_TEST_KUBE_SERVICE=namespace/service:port to run against a real cluster");
        return;
    };
    let (ns, rest) = target.split_once('/').expect("namespace/service:port");
    let (svc, port) = rest.split_once(':').expect("service:port");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, rules(&kubeconfig, ns, svc, port, free_port())).expect("rules");
    let sluice = Sluice::start(&path, "127.0.0.1:0");
    let eds = eds::subscribe(sluice.xds, "web");
    eventually("a ready endpoint from the cluster", || {
        let got = eds.borrow().last().cloned().unwrap_or_default();
        async move { got.iter().any(|e| e.ends_with(" HEALTHY")) }
    })
    .await;
}
