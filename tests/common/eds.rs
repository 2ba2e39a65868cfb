//! A minimal xDS client (tonic, `envoy-types`) that subscribes to CDS and
//! one EDS cluster over SotW ADS, ACKs everything, and publishes the
//! cluster's endpoints as `address:port health` strings.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3::{address, Node};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use prost::Message;
use sluice::xds::services::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Every endpoint set of `cluster` received, in order, each endpoint as
/// e.g. `127.0.0.1:8080 HEALTHY`.
pub type History = watch::Receiver<Vec<BTreeSet<String>>>;

pub fn subscribe(xds: SocketAddr, cluster: &str) -> History {
    let (out_tx, out_rx) = watch::channel(Vec::new());
    let cluster = cluster.to_string();
    tokio::spawn(async move {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(16);
        let node = Node {
            id: "eds-test-client".into(),
            cluster: "default".into(),
            ..Default::default()
        };
        let req = |ty: &str, names: Vec<String>, version: &str, nonce: &str| DiscoveryRequest {
            node: Some(node.clone()),
            type_url: ty.into(),
            resource_names: names,
            version_info: version.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        };
        tx.send(req(CDS, vec![], "", "")).await.expect("send");
        tx.send(req(EDS, vec![cluster.clone()], "", ""))
            .await
            .expect("send");
        let mut stream = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("rpc")
            .into_inner();
        while let Ok(Some(resp)) = stream.message().await {
            let names = if resp.type_url == EDS {
                vec![cluster.clone()]
            } else {
                vec![]
            };
            for any in &resp.resources {
                if resp.type_url != EDS {
                    continue;
                }
                let cla = ClusterLoadAssignment::decode(any.value.as_slice()).expect("cla");
                if cla.cluster_name != cluster {
                    continue;
                }
                let mut set = BTreeSet::new();
                for lep in &cla.endpoints {
                    for ep in &lep.lb_endpoints {
                        set.insert(describe(ep));
                    }
                }
                out_tx.send_modify(|h| h.push(set));
            }
            let ack = req(&resp.type_url, names, &resp.version_info, &resp.nonce);
            if tx.send(ack).await.is_err() {
                return;
            }
        }
    });
    out_rx
}

fn describe(ep: &envoy_types::pb::envoy::config::endpoint::v3::LbEndpoint) -> String {
    use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
    let addr = match &ep.host_identifier {
        Some(HostIdentifier::Endpoint(e)) => {
            match e.address.as_ref().and_then(|a| a.address.as_ref()) {
                Some(address::Address::SocketAddress(sa)) => {
                    let port = match sa.port_specifier {
                    Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => p,
                    _ => 0,
                };
                    format!("{}:{port}", sa.address)
                }
                _ => "?".into(),
            }
        }
        _ => "?".into(),
    };
    let health = envoy_types::pb::envoy::config::core::v3::HealthStatus::try_from(ep.health_status)
        .map(|h| h.as_str_name().to_string())
        .unwrap_or_default();
    format!("{addr} {health}")
}

/// An expected endpoint set, as the client records it.
pub fn set(items: &[&str]) -> Option<BTreeSet<String>> {
    Some(items.iter().map(|s| s.to_string()).collect())
}

/// The last endpoint set received, if any.
pub fn last(rx: &History) -> Option<BTreeSet<String>> {
    rx.borrow().last().cloned()
}

/// Waits until the last set received is exactly `want`.
pub async fn eds_is(rx: &History, want: &[&str]) {
    let want = set(want);
    super::eventually(&format!("EDS becomes {want:?}"), || {
        let got = last(rx);
        let want = want.clone();
        async move { got == want }
    })
    .await;
}
