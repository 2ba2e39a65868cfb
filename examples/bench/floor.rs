//! `bench floor`: the transport floor. A minimal ADS server (envoy-types'
//! generated tonic service) holding the same M1 resources sluice would
//! serve, encoded once at start. It answers each new subscription with
//! everything asked for and, on a change from the runner, encodes the one
//! changed `ClusterLoadAssignment` once and pushes it to every stream: no
//! sessions, no versions per proxy, no diffing, no discovery, no
//! coalescing. What sluice costs above this is sluice.
//!
//! Commands (stdin): `set SERVICE IP PORT` moves that endpoint and pushes
//! its CLA at once; `stage SERVICE IP PORT` moves it without a push, and
//! `push` then sends every staged CLA in one response per stream (B2's
//! floor batches like a control plane must under churn); `stage-file
//! TYPE_URL NAME FILE` stages a resource encoded beforehand (B5's route
//! configurations, one per canary weight), for the next `push`; `quit`.
//! Prints `floor listening on ADDR` once serving.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use anyhow::{anyhow, Context};
use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use futures::Stream;
use prost::Message;
use sluice::xds::services::discovery::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use sluice::xds::TypeUrl;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

type Encoded = BTreeMap<String, Vec<u8>>;

/// One push: type, the changed resources (name, encoding), version.
type Change = Arc<(TypeUrl, Vec<(String, Vec<u8>)>, String)>;

struct State {
    /// Encoded resources by type index, then name.
    by_type: RwLock<Vec<Encoded>>,
    changes: broadcast::Sender<Change>,
}

#[derive(Clone)]
struct Floor(Arc<State>);

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn any(ty: TypeUrl, body: &[u8]) -> Any {
    Any {
        type_url: ty.as_str().into(),
        value: body.to_vec(),
    }
}

impl State {
    /// The resources of `ty` named in `names` (all of them when empty).
    fn pick(&self, ty: TypeUrl, names: &BTreeSet<String>) -> Vec<(String, Vec<u8>)> {
        let all = self.by_type.read().unwrap_or_else(|e| e.into_inner());
        let of = &all[ty.index()];
        if names.is_empty() {
            of.iter().map(|(n, b)| (n.clone(), b.clone())).collect()
        } else {
            names
                .iter()
                .filter_map(|n| of.get(n).map(|b| (n.clone(), b.clone())))
                .collect()
        }
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Floor {
    type StreamAggregatedResourcesStream = Out<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Out<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut incoming = req.into_inner();
        let state = self.0.clone();
        let (tx, rx) = mpsc::channel(64);
        let mut changes = state.changes.subscribe();
        tokio::spawn(async move {
            let mut names: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
            let mut nonce = 0u64;
            loop {
                let resp = tokio::select! {
                    r = incoming.message() => {
                        let Ok(Some(r)) = r else { return };
                        let Some(ty) = TypeUrl::parse(&r.type_url) else { continue };
                        let want: BTreeSet<String> = r.resource_names.into_iter().collect();
                        // An ACK or NACK of what was sent: nothing to do.
                        if !r.response_nonce.is_empty() && names.get(ty.as_str()) == Some(&want) {
                            continue;
                        }
                        let picked = state.pick(ty, &want);
                        names.insert(ty.as_str(), want);
                        DiscoveryResponse {
                            version_info: "floor-0".into(),
                            resources: picked.iter().map(|(_, b)| any(ty, b)).collect(),
                            type_url: ty.as_str().into(),
                            ..Default::default()
                        }
                    }
                    c = changes.recv() => {
                        let Ok(c) = c else { return };
                        let (ty, items, version) = &*c;
                        DiscoveryResponse {
                            version_info: version.clone(),
                            resources: items.iter().map(|(_, b)| any(*ty, b)).collect(),
                            type_url: ty.as_str().into(),
                            ..Default::default()
                        }
                    }
                };
                nonce += 1;
                let resp = DiscoveryResponse {
                    nonce: nonce.to_string(),
                    ..resp
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let mut incoming = req.into_inner();
        let state = self.0.clone();
        let (tx, rx) = mpsc::channel(64);
        let mut changes = state.changes.subscribe();
        tokio::spawn(async move {
            let mut started: BTreeSet<&'static str> = BTreeSet::new();
            let mut nonce = 0u64;
            loop {
                let resp = tokio::select! {
                    r = incoming.message() => {
                        let Ok(Some(r)) = r else { return };
                        let Some(ty) = TypeUrl::parse(&r.type_url) else { continue };
                        let first = started.insert(ty.as_str());
                        let want: BTreeSet<String> = r.resource_names_subscribe.into_iter().collect();
                        if want.is_empty() && !(first && ty.wildcard_capable()) {
                            continue; // an ACK, a NACK, an unsubscribe
                        }
                        DeltaDiscoveryResponse {
                            system_version_info: "floor-0".into(),
                            resources: state
                                .pick(ty, &want)
                                .into_iter()
                                .map(|(name, body)| Resource {
                                    version: "floor-0".into(),
                                    resource: Some(any(ty, &body)),
                                    name,
                                    ..Default::default()
                                })
                                .collect(),
                            type_url: ty.as_str().into(),
                            ..Default::default()
                        }
                    }
                    c = changes.recv() => {
                        let Ok(c) = c else { return };
                        let (ty, items, version) = &*c;
                        DeltaDiscoveryResponse {
                            system_version_info: version.clone(),
                            resources: items
                                .iter()
                                .map(|(name, body)| Resource {
                                    version: version.clone(),
                                    resource: Some(any(*ty, body)),
                                    name: name.clone(),
                                    ..Default::default()
                                })
                                .collect(),
                            type_url: ty.as_str().into(),
                            ..Default::default()
                        }
                    }
                };
                nonce += 1;
                let resp = DeltaDiscoveryResponse {
                    nonce: nonce.to_string(),
                    ..resp
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Moves the endpoint at `ip` of one CLA to `port`; the new encoding.
fn moved(body: &[u8], ip: IpAddr, port: u16) -> anyhow::Result<Vec<u8>> {
    let mut cla = ClusterLoadAssignment::decode(body)?;
    for lb in cla
        .endpoints
        .iter_mut()
        .flat_map(|l| l.lb_endpoints.iter_mut())
    {
        let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &mut lb.host_identifier else {
            continue;
        };
        let Some(address::Address::SocketAddress(sa)) =
            ep.address.as_mut().and_then(|a| a.address.as_mut())
        else {
            continue;
        };
        if sa.address.parse::<IpAddr>().ok() == Some(ip) {
            sa.port_specifier = Some(socket_address::PortSpecifier::PortValue(u32::from(port)));
        }
    }
    Ok(cla.encode_to_vec())
}

/// `bench floor --rules FILE [--armed]` (a static M1 rules file; with
/// `--armed`, its routes as `sluice serve --rollout-weights runtime` arms
/// them before any rollout).
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let rules: PathBuf = args
        .iter()
        .position(|a| a == "--rules")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("floor: missing --rules"))?;
    crate::procs::raise_nofile(65_536);
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let config = armed(
        sluice::rules::load_file(&rules).map_err(|e| anyhow!("{e}"))?,
        args.iter().any(|a| a == "--armed"),
    );
    let snaps = sluice::compile::compile(&config).map_err(|e| anyhow!("{e}"))?;
    let by_type: Vec<Encoded> = TypeUrl::ALL
        .iter()
        .map(|ty| {
            snaps
                .fallback
                .resources(*ty)
                .iter()
                .map(|(n, r)| (n.clone(), r.body.to_vec()))
                .collect()
        })
        .collect();
    let (changes, _) = broadcast::channel(1024);
    let state = Arc::new(State {
        by_type: RwLock::new(by_type),
        changes,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let server = tonic::transport::Server::builder()
            .add_service(
                AggregatedDiscoveryServiceServer::new(Floor(state.clone()))
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        println!("floor listening on {addr}");
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut version = 0u64;
        // Staged resources by type and name, pushed together by `push`.
        let mut staged: BTreeMap<TypeUrl, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        while let Some(line) = rx.recv().await {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                [cmd @ ("set" | "stage"), service, ip, port] => {
                    let ty = TypeUrl::Endpoint;
                    let mut all = state.by_type.write().unwrap_or_else(|e| e.into_inner());
                    let old = all[ty.index()].get(*service).context("no such service")?;
                    let body = moved(old, ip.parse()?, port.parse()?)?;
                    all[ty.index()].insert(service.to_string(), body.clone());
                    staged
                        .entry(ty)
                        .or_default()
                        .insert(service.to_string(), body);
                    if *cmd == "stage" {
                        continue;
                    }
                }
                ["stage-file", ty, name, file] => {
                    let ty = TypeUrl::parse(ty).context("no such type")?;
                    let body = std::fs::read(file).with_context(|| format!("reading {file}"))?;
                    let mut all = state.by_type.write().unwrap_or_else(|e| e.into_inner());
                    all[ty.index()].insert(name.to_string(), body.clone());
                    staged.entry(ty).or_default().insert(name.to_string(), body);
                    continue;
                }
                ["push"] => {}
                ["quit"] => break,
                _ => {
                    eprintln!("floor: bad command {line:?}");
                    continue;
                }
            }
            if staged.is_empty() {
                continue;
            }
            version += 1;
            for (ty, items) in std::mem::take(&mut staged) {
                let items = items.into_iter().collect();
                let _ = state
                    .changes
                    .send(Arc::new((ty, items, format!("floor-{version}"))));
            }
        }
        anyhow::Ok(())
    })
}

/// `config` as sluice serves it with no rollout running: with runtime
/// weights (`armed`), plain routes to a subset read rollout keys.
pub fn armed(mut config: sluice::model::Config, armed: bool) -> sluice::model::Config {
    use sluice::canary::overlay::{Overlays, WeightsVia};
    if armed {
        Overlays::default().apply(&mut config, WeightsVia::Runtime);
    }
    config
}
