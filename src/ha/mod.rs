//! Several replicas serving one fleet (docs/ha.md): rollout and drain
//! state in etcd instead of `--state-dir`, and a fenced leader that runs
//! the rollout drivers.
//!
//! Data flows the same way on every replica:
//!
//! - `mirror` loads everything under `--state-prefix` once before the
//!   first publish, then watches it: rollout records become the overlays
//!   the publisher applies (so every replica compiles the same weights
//!   and serves the same versions), the drain document goes to the
//!   [`DrainStore`], the election's candidate keys say who leads and
//!   which replicas are alive ([`HaStatus`]), and the other replicas'
//!   summaries of their proxies go to the [`AckReader`], which counts
//!   them with this replica's own;
//! - `publish` puts this replica's summary of its proxies (what they
//!   ACKed) under a lease of its own, on change, a few times a second at
//!   most; the key vanishes with the lease when the replica dies;
//! - `commands` writes operators' commands (`sluice rollout …`, `sluice
//!   drain …`) on any replica as conditioned read-modify-writes of one key,
//!   so they work while no replica leads;
//! - `election` keeps a lease alive and campaigns; the winner runs the
//!   rollout driver over a `fenced::FencedStore`, whose every write is a
//!   transaction conditioned on the winner's election key still existing
//!   with the revision it won with. A refused write, a lease that could not
//!   be renewed in time, or a failed election task ends the driver at once
//!   and shows on `/status`, in the log and on `sluice_leader`.

mod commands;
mod election;
pub mod fenced;
pub mod keys;
mod lease;
pub mod metrics;
mod mirror;
mod publish;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::canary::ack_summary::Fleet;
use crate::canary::acks::AckReader;
use crate::canary::driver::Handle;
use crate::canary::wiring::{self, RolloutOptions, Started};
use crate::drain::store::DrainStore;
use crate::xds::registry::Registry;
use crate::xds::transport::TlsConfigs;
use commands::EtcdState;
use election::Election;
pub use metrics::HaMetrics;
use mirror::Mirror;
use publish::Publisher;

/// `--state-etcd` and the flags that go with it.
#[derive(Clone, Debug)]
pub struct HaOptions {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// Every key sluice writes starts with it; ends with `/`.
    pub prefix: String,
    /// The leader's lease TTL (etcd counts whole seconds).
    pub lease_ttl: Duration,
    /// This replica's name in the election and on `/status`.
    pub replica: String,
}

/// The `ha` object of `/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HaStatus {
    pub replica: String,
    /// The replica that holds the election, as the state store says.
    pub leader: Option<String>,
    /// Whether this replica runs the rollout drivers now.
    pub is_leader: bool,
    /// Every replica taking part in the election, by name.
    pub replicas: Vec<String>,
    /// How many proxies each live replica serves, as it last published
    /// (`PREFIX acks/REPLICA`).
    pub proxies: BTreeMap<String, u32>,
    /// The lease TTL etcd granted (it may raise a short one).
    pub lease_ttl_ms: u64,
    /// Whether this replica's watch of the state store is up; while it is
    /// down the replica serves what it has and does not lead.
    pub store_up: bool,
}

/// What `serve` takes from the replicated state.
pub struct HaStarted {
    /// The overlays (from the shared records) and the tasks.
    pub rollouts: Started,
    pub drains: Arc<DrainStore>,
    pub status: watch::Receiver<HaStatus>,
}

/// The default replica name: `HOSTNAME:PID`, unique on one host and, in
/// Kubernetes, the pod name first.
pub fn default_replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sluice".to_string());
    format!("{host}:{}", std::process::id())
}

/// Loads the state from etcd (a start fails when etcd cannot be read:
/// nothing is served without the drains and rollout weights), then starts
/// the watch, the election and, with `--admin-grpc`, the rollout API.
pub async fn start(
    ha: &HaOptions,
    opts: &RolloutOptions,
    registry: Arc<Registry>,
    tls: Option<watch::Receiver<Arc<TlsConfigs>>>,
    metrics: HaMetrics,
    stop: CancellationToken,
) -> anyhow::Result<HaStarted> {
    let endpoints = ha.endpoints.join(",");
    let client = keys::connect(&ha.endpoints)
        .await
        .with_context(|| format!("connecting to etcd at {endpoints} (--state-etcd)"))?;
    let loaded = mirror::load(&client, &ha.prefix).await.map_err(|e| {
        anyhow::anyhow!(
            "reading sluice's state under {} from etcd at {endpoints} (--state-etcd): {e}",
            ha.prefix
        )
    })?;
    let state = Arc::new(EtcdState::new(client.clone(), &ha.prefix, &endpoints));
    let drains = Arc::new(DrainStore::shared(
        state.clone(),
        loaded.drains.clone(),
        loaded.drains_revision,
    ));
    let status = HaStatus {
        replica: ha.replica.clone(),
        lease_ttl_ms: u64::try_from(ha.lease_ttl.as_millis()).unwrap_or(u64::MAX),
        store_up: true,
        ..HaStatus::default()
    };
    let (status_tx, status_rx) = watch::channel(status);
    let status_tx = Arc::new(status_tx);
    let mirror = Mirror::new(&ha.prefix, loaded, drains.clone(), status_tx.clone());
    state.set_mirror(mirror.clone());
    let (applied_tx, applied_rx) = watch::channel(None);
    let mut tasks = vec![tokio::spawn(
        mirror.clone().run(client.clone(), stop.child_token()),
    )];
    let fleet = Fleet {
        own: ha.replica.clone(),
        summaries: mirror.fleet(),
    };
    let acks = AckReader::new(registry.clone(), applied_rx, opts.weights).with_fleet(fleet);
    let publisher = Publisher {
        client: client.clone(),
        key: keys::acks(&ha.prefix, &ha.replica),
        ttl: ha.lease_ttl,
        registry,
    };
    tasks.push(tokio::spawn(publisher.run(stop.child_token())));
    let handle = Handle::shared(state, mirror.rollouts(), acks.clone());
    tasks.extend(wiring::serve_admin(opts, handle.clone(), tls, stop.child_token()).await?);
    let election = Election {
        client,
        prefix: ha.prefix.clone(),
        replica: ha.replica.clone(),
        ttl: ha.lease_ttl,
        metrics,
        status: status_tx,
        records: mirror.records(),
        analysis: wiring::metrics_source(opts),
        acks,
    };
    tasks.push(tokio::spawn(election.run(stop.child_token())));
    Ok(HaStarted {
        rollouts: Started::new(mirror.overlays(), applied_tx, Some(handle), tasks),
        drains,
        status: status_rx,
    })
}
