//! One case's stream: the client presents the case's certificate and
//! token, sends one request (SotW or delta) and reads what comes back.

use std::collections::BTreeSet;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use futures::stream::BoxStream;
use futures::StreamExt;
use sluice::sim::xds_tls;
use sluice::xds::services::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::model::{Case, Expect};
use crate::server::{decoded_name, Env};

/// How long a case waits for what the model says it must get (or for its
/// refusal) before it fails.
const WAIT: Duration = Duration::from_secs(10);

/// How long a served case that expects nothing listens for a resource
/// that must not come.
const LINGER: Duration = Duration::from_millis(150);

/// What one stream got: the resources, by name, and how it ended.
#[derive(Debug, Default)]
pub struct Seen {
    pub responses: usize,
    pub resources: Vec<String>,
    /// The error that ended the stream (or kept it from opening).
    pub error: Option<Status>,
}

/// One response: its type URL and the names of its resources (as their
/// bodies say).
type Responses = BoxStream<'static, Result<(String, Vec<String>), Status>>;

/// Opens the case's stream and reads it until it has what the model
/// expects, it ends, or (when the model expects nothing) `LINGER` passes.
pub async fn run(env: &Env, case: &Case, expected: &Expect) -> Seen {
    let mut seen = Seen::default();
    let endpoint = Endpoint::from_shared(format!("http://{}", env.server(case))).expect("uri");
    let opened = match xds_tls::connect(&endpoint, Some(env.tls(case.cert))).await {
        Ok(channel) if case.delta => open_delta(channel, case).await,
        Ok(channel) => open_sotw(channel, case).await,
        Err(e) => Err(Status::unavailable(e.to_string())),
    };
    let mut responses = match opened {
        Ok(responses) => responses,
        Err(status) => {
            seen.error = Some(status);
            return seen;
        }
    };
    // Enough to decide: all that is expected, or anything when nothing
    // may come.
    let enough = |seen: &Seen| match expected {
        Expect::Served(want) => {
            !want.is_empty() && seen.resources.iter().cloned().collect::<BTreeSet<_>>() == *want
        }
        Expect::Denied | Expect::Fails => seen.responses > 0,
    };
    let wait = match expected {
        Expect::Served(want) if want.is_empty() => LINGER,
        _ => WAIT,
    };
    let until = tokio::time::Instant::now() + wait;
    while !enough(&seen) {
        match tokio::time::timeout_at(until, responses.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(status))) => {
                seen.error = Some(status);
                break;
            }
            Ok(Some(Ok((type_url, names)))) => {
                assert_eq!(type_url, case.ty.as_str(), "{case:?}");
                seen.responses += 1;
                seen.resources.extend(names);
            }
        }
    }
    seen
}

async fn open_delta(channel: Channel, case: &Case) -> Result<Responses, Status> {
    let request = DeltaDiscoveryRequest {
        node: Some(node(case)),
        type_url: case.ty.as_str().into(),
        resource_names_subscribe: case.names.clone(),
        ..Default::default()
    };
    let (tx, requests) = one_request(request).await;
    let stream = AggregatedDiscoveryServiceClient::new(channel)
        .delta_aggregated_resources(with_token(case, requests))
        .await?
        .into_inner();
    keep_open(tx);
    let ty = case.ty;
    Ok(stream
        .map(move |resp| {
            let resp = resp?;
            let names = resp.resources.into_iter().map(|r| {
                let body = r.resource.expect("delta resource body");
                assert_eq!(decoded_name(ty, &body.value), r.name, "name and body");
                r.name
            });
            Ok((resp.type_url, names.collect()))
        })
        .boxed())
}

async fn open_sotw(channel: Channel, case: &Case) -> Result<Responses, Status> {
    let request = DiscoveryRequest {
        node: Some(node(case)),
        type_url: case.ty.as_str().into(),
        resource_names: case.names.clone(),
        ..Default::default()
    };
    let (tx, requests) = one_request(request).await;
    let stream = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(with_token(case, requests))
        .await?
        .into_inner();
    keep_open(tx);
    let ty = case.ty;
    Ok(stream
        .map(move |resp| {
            let resp = resp?;
            let names = resp.resources.iter().map(|any| {
                assert_eq!(any.type_url, ty.as_str(), "resource type");
                decoded_name(ty, &any.value)
            });
            Ok((resp.type_url.clone(), names.collect()))
        })
        .boxed())
}

/// The stream's requests: `first`, then whatever is sent on the returned
/// sender.
async fn one_request<T>(first: T) -> (mpsc::Sender<T>, ReceiverStream<T>) {
    let (tx, rx) = mpsc::channel(1);
    tx.send(first).await.expect("queue request");
    (tx, ReceiverStream::new(rx))
}

/// Keeps the request stream open for as long as the server reads it:
/// closing it would end the stream before the server answers.
fn keep_open<T: Send + 'static>(tx: mpsc::Sender<T>) {
    tokio::spawn(async move { tx.closed().await });
}

/// The case's node: its id and group, the group claimed by
/// `node.cluster` or by the `sluice_group` metadata (then with a decoy
/// cluster).
fn node(case: &Case) -> Node {
    let metadata = case.decoy_cluster.map(|_| Struct {
        fields: [(
            "sluice_group".to_string(),
            Value {
                kind: Some(Kind::StringValue(case.group.to_string())),
            },
        )]
        .into(),
    });
    Node {
        id: case.node_id.clone(),
        cluster: case.decoy_cluster.unwrap_or(case.group).to_string(),
        metadata,
        ..Default::default()
    }
}

/// A request carrying `message`, with the case's bearer token.
fn with_token<T>(case: &Case, message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(token) = case.token {
        let value = format!("Bearer {token}").parse().expect("metadata value");
        req.metadata_mut().insert("authorization", value);
    }
    req
}
