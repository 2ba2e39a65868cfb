//! Publishes this replica's proxies for the other replicas: the
//! [`AckSummary`] of its registry at `PREFIX acks/REPLICA`, attached to a
//! lease of its own (not the election's, which ends with every term).
//!
//! The registry is summarised every [`EVERY`] and the key put only when
//! the serialised summary changed, so an idle fleet writes nothing and a
//! spreading step at most a few times a second. Reading the registry
//! takes each session's lock only as long as copying two versions, so the
//! xDS streams never wait on this task.
//!
//! When the replica dies, stalls past its TTL or loses etcd for that
//! long, the lease ends and etcd deletes the key: the other replicas stop
//! counting its proxies instead of waiting for their ACKs until the step's
//! ACK timeout. The task then grants a new lease and puts the summary
//! again. On shutdown it revokes the lease, which deletes the key at once.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{keys, lease};
use crate::backoff::Backoff;
use crate::canary::ack_summary::AckSummary;
use crate::xds::registry::Registry;

/// How often the registry is summarised.
pub const EVERY: Duration = Duration::from_millis(250);

/// Over this, a summary is not put: etcd refuses requests over 1.5 MiB by
/// default. Only a fleet with thousands of node groups per replica gets
/// near it (a line per group and standing, not per proxy).
const MAX_BYTES: usize = 1024 * 1024;

pub struct Publisher {
    pub client: Client,
    /// `PREFIX acks/REPLICA`.
    pub key: String,
    pub ttl: Duration,
    pub registry: Arc<Registry>,
}

impl Publisher {
    /// Publishes until `stop`, under a new lease after each failure.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            match self.under_lease(&stop).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(key = %self.key, error = %e, "publishing this replica's proxies to the other replicas failed; trying again with a new lease")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// One lease: grant it, keep it alive, publish under it. `Ok` on
    /// shutdown.
    async fn under_lease(&self, stop: &CancellationToken) -> Result<(), String> {
        let held = lease::hold(&self.client, self.ttl, stop).await?;
        let result = self.publish(held.id, &held.lost, stop).await;
        // Deletes the key now rather than after the TTL.
        held.release().await;
        result
    }

    async fn publish(
        &self,
        lease: i64,
        lost: &CancellationToken,
        stop: &CancellationToken,
    ) -> Result<(), String> {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Under a new lease the key is put again, changed or not.
        let mut last: Option<Vec<u8>> = None;
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                _ = lost.cancelled() => return Err("the lease was not renewed within its TTL".into()),
                _ = tick.tick() => {}
            }
            let summary = AckSummary::of(&self.registry);
            let value = serde_json::to_vec(&summary).map_err(|e| e.to_string())?;
            if last.as_ref() == Some(&value) {
                continue;
            }
            if value.len() > MAX_BYTES {
                return Err(format!(
                    "the summary of {} proxies is {} bytes, over the {MAX_BYTES} this replica puts in etcd: the other replicas cannot count them",
                    summary.proxies,
                    value.len()
                ));
            }
            let mut c = self.client.clone();
            let opts = PutOptions::new().with_lease(lease);
            keys::bounded(c.put(self.key.as_str(), value.clone(), Some(opts)))
                .await
                .map_err(|e| format!("put {}: {e}", self.key))?;
            last = Some(value);
        }
    }
}
