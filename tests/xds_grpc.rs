//! The ADS server over real gRPC on loopback, driven by a tonic client built
//! from `envoy-types` (the same generated code an Envoy-compatible client
//! would use): SotW and delta, readiness, NACK, unimplemented methods.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use sluice::metrics::Metrics;
use sluice::xds::admission::Limits;
use sluice::xds::registry::Registry;
use sluice::xds::server::{serve_on, AdsService, Published, Shared};
use sluice::xds::services::cluster::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
use sluice::xds::services::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use sluice::xds::{Resource, Snapshot, Snapshots, TypeUrl};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

const WAIT: Duration = Duration::from_secs(10);
/// How long we listen to be sure the server sends nothing more.
const QUIET: Duration = Duration::from_millis(300);

struct Server {
    addr: SocketAddr,
    publish: watch::Sender<Option<Arc<Published>>>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    /// Cancelling it shuts the server down.
    stop: CancellationToken,
    /// The server task: returns once shut down.
    served: JoinHandle<()>,
}

fn mk_snapshots(clusters: &[(&str, &str)]) -> Snapshots {
    let cds = clusters
        .iter()
        .map(|(name, stat)| {
            let c = Cluster {
                name: name.to_string(),
                alt_stat_name: stat.to_string(),
                ..Default::default()
            };
            Resource::encode(*name, &c)
        })
        .collect();
    let snap = Arc::new(Snapshot::new([vec![], vec![], cds, vec![], vec![], vec![]]));
    Snapshots {
        groups: Default::default(),
        fallback: snap,
    }
}

fn published(s: Snapshots) -> Option<Arc<Published>> {
    Some(Arc::new(Published::after(None, s, Instant::now())))
}

impl Server {
    /// Publishes `s` after what is served, as `serve` does (with the diff
    /// that lets each stream look only at what changed).
    fn republish(&self, s: Snapshots) {
        self.publish.send_modify(|cur| {
            *cur = Some(Arc::new(Published::after(
                cur.as_deref(),
                s,
                Instant::now(),
            )));
        });
    }
}

async fn start(initial: Option<Snapshots>) -> Server {
    start_with(initial, Limits::default()).await
}

async fn start_with(initial: Option<Snapshots>, limits: Limits) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (publish, rx) = watch::channel(initial.and_then(published));
    let stop = CancellationToken::new();
    let registry = Arc::new(Registry::default());
    let metrics = Arc::new(Metrics::new());
    let svc = AdsService::new(Shared {
        snapshots: rx,
        registry: registry.clone(),
        metrics: metrics.xds.clone(),
        shutdown: stop.clone(),
        limits,
        security: Default::default(),
    });
    let served = tokio::spawn(serve_on(
        listener,
        svc,
        sluice::xds::transport::Security::Plaintext,
        Default::default(),
        stop.clone(),
    ));
    Server {
        addr,
        publish,
        registry,
        metrics,
        stop,
        served,
    }
}

fn node() -> Node {
    Node {
        id: "test-proxy".into(),
        cluster: "edge".into(),
        ..Default::default()
    }
}

async fn client(addr: SocketAddr) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

fn cds_request(version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.into(),
        node: Some(node()),
        type_url: TypeUrl::Cluster.as_str().into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn cluster_names(resp: &DiscoveryResponse) -> Vec<(String, String)> {
    resp.resources
        .iter()
        .map(|a| {
            let c = Cluster::decode(a.value.as_slice()).expect("cluster");
            (c.name, c.alt_stat_name)
        })
        .collect()
}

async fn next<T>(stream: &mut Streaming<T>) -> T {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("response in time")
        .expect("stream ok")
        .expect("stream open")
}

async fn quiet<T: std::fmt::Debug>(stream: &mut Streaming<T>) {
    if let Ok(msg) = tokio::time::timeout(QUIET, stream.message()).await {
        panic!("expected no message, got {msg:?}");
    }
}

#[tokio::test]
async fn sotw_push_ack_update_and_nack() {
    let server = start(Some(mk_snapshots(&[("a", "v1"), ("b", "v1")]))).await;
    let (tx, rx) = mpsc::channel(16);
    let mut c = client(server.addr).await;
    tx.send(cds_request("", "")).await.expect("send");
    let mut stream = c
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("rpc")
        .into_inner();

    let first = next(&mut stream).await;
    assert_eq!(first.type_url, TypeUrl::Cluster.as_str());
    assert_eq!(
        cluster_names(&first),
        [("a".into(), "v1".into()), ("b".into(), "v1".into())]
    );

    // ACK: no reply.
    tx.send(cds_request(&first.version_info, &first.nonce))
        .await
        .expect("send");
    quiet(&mut stream).await;
    let proxies = server.registry.list();
    assert_eq!(proxies.len(), 1);
    assert_eq!(proxies[0].node.id, "test-proxy");
    assert_eq!(
        proxies[0].types["cds"].acked.as_deref(),
        Some(first.version_info.as_str())
    );

    // A change is pushed.
    server.republish(mk_snapshots(&[("a", "v2"), ("b", "v1")]));
    let second = next(&mut stream).await;
    assert_eq!(cluster_names(&second)[0], ("a".into(), "v2".into()));
    assert_ne!(second.version_info, first.version_info);
    assert_ne!(second.nonce, first.nonce);

    // NACK: recorded, not re-sent, proxy stays on the ACKed version.
    let mut nack = cds_request(&first.version_info, &second.nonce);
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: "bad cluster a".into(),
        details: vec![],
    });
    tx.send(nack).await.expect("send");
    quiet(&mut stream).await;
    let st = &server.registry.list()[0].types["cds"];
    assert_eq!(st.acked.as_deref(), Some(first.version_info.as_str()));
    let nack = st.nack.as_ref().expect("nack recorded");
    assert_eq!(
        (nack.version.as_str(), nack.error.as_str()),
        (second.version_info.as_str(), "bad cluster a")
    );

    // Republishing the same config sends nothing; a new one does.
    server.republish(mk_snapshots(&[("a", "v2"), ("b", "v1")]));
    quiet(&mut stream).await;
    server.republish(mk_snapshots(&[("a", "v3"), ("b", "v1")]));
    assert_eq!(
        cluster_names(&next(&mut stream).await)[0],
        ("a".into(), "v3".into())
    );

    // Disconnect removes the proxy from status.
    drop(tx);
    drop(stream);
    let deadline = Instant::now() + WAIT;
    while !server.registry.list().is_empty() {
        assert!(
            Instant::now() < deadline,
            "proxy still listed after disconnect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shutdown ends every open stream, then the server returns: a proxy sees
/// its stream close (and reconnects elsewhere) instead of sluice hanging on
/// a proxy that keeps its request side open.
#[tokio::test]
async fn shutdown_ends_open_streams_then_the_server_returns() {
    let server = start(Some(mk_snapshots(&[("a", "v1")]))).await;
    let (tx, rx) = mpsc::channel(16);
    let mut c = client(server.addr).await;
    tx.send(cds_request("", "")).await.expect("send");
    let mut stream = c
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("rpc")
        .into_inner();
    let first = next(&mut stream).await;
    assert_eq!(cluster_names(&first), [("a".into(), "v1".into())]);

    server.stop.cancel();
    // `tx` stays open: only the shutdown can end the stream.
    let end = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("the stream is still open after shutdown");
    assert!(matches!(end, Ok(None)), "{end:?}");
    tokio::time::timeout(WAIT, server.served)
        .await
        .expect("the server is still running after shutdown")
        .expect("join");
    drop(tx);
}

#[tokio::test]
async fn nothing_is_sent_before_the_first_snapshot() {
    let server = start(None).await;
    let (tx, rx) = mpsc::channel(16);
    let mut c = client(server.addr).await;
    tx.send(cds_request("", "")).await.expect("send");
    let mut stream = c
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("rpc")
        .into_inner();
    quiet(&mut stream).await;
    server.republish(mk_snapshots(&[("a", "v1")]));
    let first = next(&mut stream).await;
    assert_eq!(cluster_names(&first), [("a".into(), "v1".into())]);
}

#[tokio::test]
async fn delta_add_remove_and_reconnect() {
    let server = start(Some(mk_snapshots(&[("a", "v1"), ("b", "v1")]))).await;
    let req = |nonce: &str| DeltaDiscoveryRequest {
        node: Some(node()),
        type_url: TypeUrl::Cluster.as_str().into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    let (tx, mut stream) = delta_stream(server.addr, req("")).await;
    let first: DeltaDiscoveryResponse = next(&mut stream).await;
    let names: Vec<&str> = first.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let versions: std::collections::HashMap<String, String> = first
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    tx.send(req(&first.nonce)).await.expect("ack");
    quiet(&mut stream).await;

    server.republish(mk_snapshots(&[("a", "v1")]));
    let second = next(&mut stream).await;
    assert!(second.resources.is_empty());
    assert_eq!(second.removed_resources, ["b"]);
    tx.send(req(&second.nonce)).await.expect("ack");
    drop(tx);
    drop(stream);

    // Reconnect announcing what we hold: only the difference comes back.
    server.republish(mk_snapshots(&[("a", "v1"), ("c", "v1")]));
    let mut first_req = req("");
    first_req.initial_resource_versions = [("a".to_string(), versions["a"].clone())].into();
    let (_tx, mut stream) = delta_stream(server.addr, first_req).await;
    let third = next(&mut stream).await;
    let names: Vec<&str> = third.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["c"], "a is current and must not be re-sent");
    assert!(third.removed_resources.is_empty());
}

#[tokio::test]
async fn other_discovery_services_are_unimplemented() {
    let server = start(Some(mk_snapshots(&[("a", "v1")]))).await;
    let mut c = ClusterDiscoveryServiceClient::connect(format!("http://{}", server.addr))
        .await
        .expect("connect");
    let err = c
        .fetch_clusters(cds_request("", ""))
        .await
        .expect_err("must fail");
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}

/// The error that ended `stream`, which must end without another message.
async fn ended_with<T: std::fmt::Debug>(stream: &mut Streaming<T>) -> tonic::Status {
    match tokio::time::timeout(WAIT, stream.message()).await {
        Ok(Err(status)) => status,
        other => panic!("expected the stream to end with an error, got {other:?}"),
    }
}

/// ADS carries every type on one stream, so a request must name its type
/// (only the singleton xDS services imply it, and sluice serves none):
/// one without is refused with INVALID_ARGUMENT, first or later, as
/// go-control-plane does, instead of being dropped unanswered.
#[tokio::test]
async fn a_request_without_type_url_ends_the_stream_with_invalid_argument() {
    let server = start(Some(mk_snapshots(&[("a", "v1")]))).await;
    let untyped = || DiscoveryRequest {
        type_url: String::new(),
        ..cds_request("", "")
    };
    let (_tx, mut stream) = sotw_stream(server.addr, untyped()).await;
    let status = ended_with(&mut stream).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("type_url"), "{status:?}");

    // After a normal exchange.
    let (tx, mut stream) = sotw_stream(server.addr, cds_request("", "")).await;
    let first = next(&mut stream).await;
    tx.send(cds_request(&first.version_info, &first.nonce))
        .await
        .expect("ack");
    tx.send(untyped()).await.expect("send");
    let status = ended_with(&mut stream).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // Delta, first request.
    let (_tx, mut stream) = delta_stream(
        server.addr,
        DeltaDiscoveryRequest {
            node: Some(node()),
            ..Default::default()
        },
    )
    .await;
    let status = ended_with(&mut stream).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("type_url"), "{status:?}");
}

/// Opens a SotW stream that sends `first`; returns its request sender and
/// response stream.
async fn sotw_stream(
    addr: SocketAddr,
    first: DiscoveryRequest,
) -> (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>) {
    let (tx, rx) = mpsc::channel(16);
    tx.send(first).await.expect("send");
    let stream = client(addr)
        .await
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("rpc")
        .into_inner();
    (tx, stream)
}

async fn delta_stream(
    addr: SocketAddr,
    first: DeltaDiscoveryRequest,
) -> (
    mpsc::Sender<DeltaDiscoveryRequest>,
    Streaming<DeltaDiscoveryResponse>,
) {
    let (tx, rx) = mpsc::channel(16);
    tx.send(first).await.expect("send");
    let stream = client(addr)
        .await
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("rpc")
        .into_inner();
    (tx, stream)
}

fn lds_request(version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: TypeUrl::Listener.as_str().into(),
        ..cds_request(version, nonce)
    }
}

/// Waits until the admission queue holds `n` streams.
async fn waiting(server: &Server, n: i64) {
    let deadline = Instant::now() + WAIT;
    while server.metrics.xds.admission_waiting.get() != n {
        assert!(Instant::now() < deadline, "queue never reached {n}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn reconnect_storm_is_admitted_a_few_streams_at_a_time() {
    let limits = Limits {
        max_initial_pushes: 1,
        max_waiting: 1,
        ..Limits::default()
    };
    let server = start_with(Some(mk_snapshots(&[("a", "v1")])), limits).await;

    // The first proxy gets the only slot and its clusters.
    let (tx_a, mut a) = sotw_stream(server.addr, cds_request("", "")).await;
    let cds = next(&mut a).await;
    assert_eq!(cluster_names(&cds), [("a".into(), "v1".into())]);

    // The second waits in line: nothing yet.
    let (_tx_b, mut b) = sotw_stream(server.addr, cds_request("", "")).await;
    waiting(&server, 1).await;
    quiet(&mut b).await;

    // The line is full: the third is told to retry.
    let (_tx_c, mut c) = sotw_stream(server.addr, cds_request("", "")).await;
    let status = tokio::time::timeout(WAIT, c.message())
        .await
        .expect("answer in time")
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("retry"), "{}", status.message());
    assert_eq!(server.metrics.xds.admission_rejected.get(), 1);

    // Once the first is configured (clusters and listeners ACKed), the
    // second is let in.
    tx_a.send(cds_request(&cds.version_info, &cds.nonce))
        .await
        .expect("ack");
    tx_a.send(lds_request("", "")).await.expect("lds");
    let lds = next(&mut a).await;
    tx_a.send(lds_request(&lds.version_info, &lds.nonce))
        .await
        .expect("ack");
    let first_b = next(&mut b).await;
    assert_eq!(cluster_names(&first_b), [("a".into(), "v1".into())]);
    waiting(&server, 0).await;
}

#[tokio::test]
async fn a_response_over_the_message_limit_is_withheld_with_a_clear_error() {
    let limits = Limits {
        max_message_bytes: 2048,
        ..Limits::default()
    };
    let big = "x".repeat(4096);
    let server = start_with(Some(mk_snapshots(&[("a", "v1"), ("b", &big)])), limits).await;
    let (tx, mut stream) = sotw_stream(server.addr, cds_request("", "")).await;
    quiet(&mut stream).await;
    let proxies = server.registry.list();
    let nack = proxies[0].types["cds"].nack.as_ref().expect("error shown");
    assert!(
        nack.error.contains("2 cds resources") && nack.error.contains("2048-byte"),
        "{}",
        nack.error
    );
    assert!(server
        .metrics
        .encode()
        .contains("sluice_xds_oversized_responses_total{type=\"cds\"} 1"));

    // The stream stays up and a config that fits is sent.
    server.republish(mk_snapshots(&[("a", "v2")]));
    let resp = next(&mut stream).await;
    assert_eq!(cluster_names(&resp), [("a".into(), "v2".into())]);
    drop(tx);
}

/// CDS clusters and sluice's RTDS layer holding one key.
fn mk_with_layer(clusters: &[(&str, &str)], weight: f64) -> Snapshots {
    use envoy_types::pb::envoy::service::runtime::v3::Runtime;
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let mut s = mk_snapshots(clusters);
    let layer = Runtime {
        name: "sluice".into(),
        layer: Some(Struct {
            fields: [(
                "w".to_string(),
                Value {
                    kind: Some(Kind::NumberValue(weight)),
                },
            )]
            .into(),
        }),
    };
    let fallback = &s.fallback;
    let by_type = TypeUrl::ALL.map(|ty| match ty {
        TypeUrl::Runtime => vec![Resource::encode("sluice", &layer)],
        ty => fallback
            .resources(ty)
            .values()
            .map(|r| Resource::clone(r))
            .collect(),
    });
    s.fallback = Arc::new(Snapshot::new(by_type));
    s
}

/// (name, version) of each resource of a delta response.
fn delta_versions(resp: &DeltaDiscoveryResponse) -> Vec<(String, String)> {
    resp.resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect()
}

#[tokio::test]
async fn snapshots_published_while_a_response_awaits_its_ack_go_out_together_after_it() {
    let server = start(Some(mk_with_layer(&[("a", "v1"), ("b", "v1")], 1.0))).await;
    let req = |ty: TypeUrl, nonce: &str, subscribe: &[&str]| DeltaDiscoveryRequest {
        node: Some(node()),
        type_url: ty.as_str().into(),
        response_nonce: nonce.into(),
        resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let (tx, mut stream) = delta_stream(server.addr, req(TypeUrl::Runtime, "", &["sluice"])).await;
    let layer = next(&mut stream).await;
    assert_eq!(layer.type_url, TypeUrl::Runtime.as_str());
    tx.send(req(TypeUrl::Runtime, &layer.nonce, &[]))
        .await
        .expect("ack");
    tx.send(req(TypeUrl::Cluster, "", &[])).await.expect("send");
    let cds = next(&mut stream).await;
    assert_eq!(cds.type_url, TypeUrl::Cluster.as_str());
    // The clusters are not ACKed yet. A layer change is not held back by
    // that.
    server.republish(mk_with_layer(&[("a", "v1"), ("b", "v1")], 2.0));
    let layer2 = next(&mut stream).await;
    assert_eq!(layer2.type_url, TypeUrl::Runtime.as_str());
    assert_ne!(delta_versions(&layer2), delta_versions(&layer));
    tx.send(req(TypeUrl::Runtime, &layer2.nonce, &[]))
        .await
        .expect("ack");
    quiet(&mut stream).await;
    // Three publishes change the clusters: nothing can go before the ACK.
    let steps = [
        mk_with_layer(&[("a", "v2"), ("b", "v1")], 2.0),
        mk_with_layer(&[("a", "v3"), ("b", "v2")], 2.0),
        mk_with_layer(&[("a", "v3"), ("b", "v2"), ("c", "v1")], 2.0),
    ];
    let want: Vec<(String, String)> = steps[2]
        .fallback
        .resources(TypeUrl::Cluster)
        .iter()
        .map(|(n, r)| (n.clone(), r.version.clone()))
        .collect();
    for s in steps {
        server.republish(s);
    }
    quiet(&mut stream).await;
    // The ACK lets every skipped change out, at its latest version, in
    // one response.
    tx.send(req(TypeUrl::Cluster, &cds.nonce, &[]))
        .await
        .expect("ack");
    let cds2 = next(&mut stream).await;
    assert_eq!(cds2.type_url, TypeUrl::Cluster.as_str());
    assert_eq!(delta_versions(&cds2), want);
    tx.send(req(TypeUrl::Cluster, &cds2.nonce, &[]))
        .await
        .expect("ack");
    quiet(&mut stream).await;
}
