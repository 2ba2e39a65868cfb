//! The tonic task of one simulated proxy: opens an ADS stream (SotW or
//! delta) with `envoy-types`' generated client, moves responses into
//! [`ClientState`] and its requests back, publishes a [`Report`] after each
//! response, and reconnects with what it holds when the stream ends.
//!
//! Fault knobs ([`Faults`]) stage misbehaving proxies: a slow ACK, forced
//! NACKs, a stall (responses read, never answered), disconnects, and a
//! reconnect storm. Every wait selects on shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use sluice_core::backoff::Backoff;
use sluice_core::xds::TypeUrl;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::resources::Decoder;
use super::state::{Applied, ChangeLog, ClientState, Mode, Outbound, View};
use super::xds_tls::{self, ClientSecurity};
use sluice_envoy_grpc::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;

/// Largest response accepted (sluice's own limit).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The wait before the first reconnect, doubled after each failed one up
/// to [`RECONNECT_MAX`] (Envoy backs off between reconnects too).
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid xDS address {0:?}: {1}")]
    Address(String, String),
}

/// Ways to make a proxy misbehave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Wait this long before answering each response.
    pub ack_delay: Duration,
    /// NACK every response of these types.
    pub nack: Vec<TypeUrl>,
    /// Read responses but never answer them.
    pub stall: bool,
    /// Drop the stream this long after it opens (then reconnect).
    pub disconnect_after: Option<Duration>,
    /// Reconnect this many times right after the first response (a storm
    /// when many proxies do it at once).
    pub reconnect_storm: u32,
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `http://HOST:PORT` of the ADS server; several replicas, comma
    /// separated: each connection goes to one of them at random.
    pub xds: String,
    pub node_id: String,
    /// Envoy's `node.cluster`: sluice's node group.
    pub group: String,
    pub mode: Mode,
    pub faults: Faults,
    /// The RTDS layer the proxy's bootstrap names (`sluice bootstrap`
    /// names [`sluice_core::model::RUNTIME_LAYER`]); `None`: no RTDS.
    pub runtime_layer: Option<String>,
    /// TLS and a bearer token for the stream (default: plaintext).
    pub security: ClientSecurity,
}

/// Where one proxy stands, published after every response.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub connected: bool,
    /// Last accepted version per type (index: `TypeUrl::index`).
    pub versions: [String; TypeUrl::COUNT],
    /// When each type was last ACKed.
    pub acked_at: [Option<Instant>; TypeUrl::COUNT],
    pub acks: u64,
    pub nacks: u64,
    pub last_nack: Option<String>,
    pub streams: u64,
    pub view: View,
    /// What the last updates of `view` changed.
    pub changes: ChangeLog,
}

/// Run one proxy until `shutdown` is cancelled.
pub async fn run(
    cfg: ClientConfig,
    decoder: Arc<Decoder>,
    report: watch::Sender<Report>,
    shutdown: CancellationToken,
) -> Result<(), ClientError> {
    let endpoints = cfg
        .xds
        .split(',')
        .map(|uri| {
            Endpoint::from_shared(uri.to_string())
                .map(|e| e.connect_timeout(Duration::from_secs(5)))
                .map_err(|e| ClientError::Address(uri.to_string(), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let node = Node {
        id: cfg.node_id.clone(),
        cluster: cfg.group.clone(),
        user_agent_name: "sluice-sim".into(),
        ..Default::default()
    };
    let mut state =
        ClientState::new(cfg.mode, node, decoder).with_runtime_layer(cfg.runtime_layer.clone());
    let tls = cfg.security.tls.as_ref().map(|t| t.with_own_sessions());
    let mut storm = cfg.faults.reconnect_storm;
    let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
    // Several replicas: a random one after a stream ends, a random other
    // one after a failed connect (so a dead replica costs one attempt, as
    // Envoy's outlier detection in `sluice bootstrap --xds A,B,C` ejects
    // it, not a run of unlucky random draws each followed by a longer
    // backoff).
    let mut at = random_index(endpoints.len());
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let channel = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            c = xds_tls::connect(&endpoints[at], tls.as_ref()) => c,
        };
        match channel {
            Ok(ch) => {
                backoff.reset();
                report.send_modify(|r| {
                    r.connected = true;
                    r.streams += 1;
                });
                let ended = stream(&cfg, ch, &mut state, &report, &shutdown, &mut storm).await;
                report.send_modify(|r| r.connected = false);
                if ended == End::Shutdown {
                    return Ok(());
                }
                at = random_index(endpoints.len());
            }
            Err(e) => {
                tracing::debug!(node = %cfg.node_id, error = %e, "sim: connect failed");
                let n = endpoints.len();
                at = (at + 1 + random_index(n.saturating_sub(1))) % n;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// An index below `n` (≥ 1) at random.
fn random_index(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    if n <= 1 {
        return 0;
    }
    // A fresh `RandomState` is keyed differently each time: a random draw
    // without a random-number crate.
    let r = std::hash::RandomState::new().build_hasher().finish();
    (r % n as u64) as usize
}

/// The stream request, with the bearer token as `authorization` metadata
/// when there is one.
fn with_token<T>(cfg: &ClientConfig, body: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(body);
    if let Some(token) = &cfg.security.token {
        if let Ok(value) = format!("Bearer {token}").parse() {
            req.metadata_mut().insert("authorization", value);
        }
    }
    req
}

#[derive(PartialEq)]
enum End {
    Shutdown,
    Reconnect,
}

async fn stream(
    cfg: &ClientConfig,
    channel: Channel,
    state: &mut ClientState,
    report: &watch::Sender<Report>,
    shutdown: &CancellationToken,
    storm: &mut u32,
) -> End {
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let (sotw_tx, sotw_rx) = mpsc::channel::<DiscoveryRequest>(16);
    let (delta_tx, delta_rx) = mpsc::channel::<DeltaDiscoveryRequest>(16);
    let send = |outs: Vec<Outbound>| {
        for o in outs {
            // A full or closed channel means the stream is going away; the
            // reconnect re-sends everything that matters.
            let _ = match o {
                Outbound::Sotw(r) => sotw_tx.try_send(r).map_err(|_| ()),
                Outbound::Delta(r) => delta_tx.try_send(r).map_err(|_| ()),
            };
        }
    };
    send(state.start());
    let opened = tokio::select! {
        _ = shutdown.cancelled() => return End::Shutdown,
        r = async {
            match cfg.mode {
                Mode::Sotw => client
                    .stream_aggregated_resources(with_token(cfg, ReceiverStream::new(sotw_rx)))
                    .await
                    .map(|s| Inbound::Sotw(s.into_inner())),
                Mode::Delta => client
                    .delta_aggregated_resources(with_token(cfg, ReceiverStream::new(delta_rx)))
                    .await
                    .map(|s| Inbound::Delta(s.into_inner())),
            }
        } => r,
    };
    let mut inbound = match opened {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(node = %cfg.node_id, code = ?e.code(), message = e.message(), "sim: stream refused");
            return End::Reconnect;
        }
    };
    let disconnect = async {
        match cfg.faults.disconnect_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(disconnect);
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return End::Shutdown,
            _ = &mut disconnect => return End::Reconnect,
            m = inbound.next() => m,
        };
        let msg = match msg {
            Ok(Some(msg)) => msg,
            Ok(None) => {
                tracing::warn!(node = %cfg.node_id, "sim: stream ended by the server");
                return End::Reconnect;
            }
            Err(status) => {
                // Benchmarks count streams; this says why one ended.
                tracing::warn!(node = %cfg.node_id, code = ?status.code(), message = status.message(), "sim: stream failed");
                return End::Reconnect;
            }
        };
        if cfg.faults.stall {
            continue;
        }
        if !cfg.faults.ack_delay.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => return End::Shutdown,
                _ = tokio::time::sleep(cfg.faults.ack_delay) => {}
            }
        }
        let forced = |ty: &str| {
            TypeUrl::parse(ty)
                .filter(|t| cfg.faults.nack.contains(t))
                .map(|t| format!("sluice-sim: forced NACK of {t}"))
        };
        let (outs, applied) = match msg {
            Msg::Sotw(r) => state.on_sotw(&r, forced(&r.type_url)),
            Msg::Delta(r) => state.on_delta(&r, forced(&r.type_url)),
        };
        tracing::debug!(node = %cfg.node_id, ?applied, requests = outs.len(), "sim: response handled");
        send(outs);
        if let Some(a) = applied {
            record(report, state, &a);
        }
        if *storm > 0 {
            *storm -= 1;
            return End::Reconnect;
        }
    }
}

/// Publishes what one response did. The report's view is brought up to date
/// entry by entry (what the response touched), never copied whole: a proxy
/// holding M1 would otherwise copy thousands of keys per CLA it takes.
fn record(report: &watch::Sender<Report>, state: &mut ClientState, a: &Applied) {
    let now = Instant::now();
    let touched = state.take_touched();
    report.send_modify(|r| {
        match &a.error {
            None => {
                r.acks += 1;
                r.acked_at[a.ty.index()] = Some(now);
            }
            Some(e) => {
                r.nacks += 1;
                r.last_nack = Some(e.clone());
            }
        }
        for ty in TypeUrl::ALL {
            let v = state.version(ty);
            if r.versions[ty.index()] != v {
                r.versions[ty.index()] = v.to_string();
            }
        }
        r.view.update_from(state.view(), &touched);
        r.changes.push(&touched);
    });
}

enum Inbound {
    Sotw(tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>),
    Delta(tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse>),
}

enum Msg {
    Sotw(envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse),
    Delta(envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse),
}

impl Inbound {
    /// The next response; `None` when the server ended the stream.
    async fn next(&mut self) -> Result<Option<Msg>, tonic::Status> {
        Ok(match self {
            Inbound::Sotw(s) => s.message().await?.map(Msg::Sotw),
            Inbound::Delta(s) => s.message().await?.map(Msg::Delta),
        })
    }
}
