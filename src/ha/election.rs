//! Leader election through etcd: a lease of `--state-lease-ttl`, kept
//! alive by this task, and a campaign (etcd's election API) under it. The
//! winner runs the rollout driver over a [`FencedStore`] until one of:
//!
//! - shutdown: the lease is revoked, so another replica takes over at
//!   once rather than after the TTL;
//! - the lease was not renewed within its TTL (etcd unreachable, or this
//!   process was paused): leadership is given up at that moment, because
//!   etcd may already have let the key expire;
//! - the driver ended because a write was refused (fenced).
//!
//! Whatever ends a term — including a panic in this task — drops the
//! [`Leading`] guard, which sets `sluice_leader` to 0, `is_leader` to
//! false and logs it; a replica never shows leadership it does not hold.
//! It then campaigns again with a new lease.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::fenced::{FencedStore, Term};
use super::{keys, lease};
use super::{HaMetrics, HaStatus};
use crate::backoff::Backoff;
use crate::canary::acks::AckReader;
use crate::canary::driver::Driver;
use crate::canary::metrics::MetricsSource;
use crate::canary::overlay::Overlays;
use crate::canary::store::Shared;

pub struct Election {
    pub client: Client,
    pub prefix: String,
    pub replica: String,
    pub ttl: Duration,
    pub metrics: HaMetrics,
    pub status: Arc<watch::Sender<HaStatus>>,
    /// The driver's inputs.
    pub records: watch::Receiver<Shared>,
    pub analysis: Arc<dyn MetricsSource>,
    /// The whole fleet's ACKs: this replica's proxies and the others'.
    pub acks: AckReader,
}

/// Shown while this replica leads; dropping it shows that it does not.
struct Leading<'a> {
    election: &'a Election,
}

impl<'a> Leading<'a> {
    fn new(election: &'a Election) -> Self {
        election.metrics.leader.set(1);
        election.status.send_modify(|s| s.is_leader = true);
        Leading { election }
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.election.metrics.leader.set(0);
        self.election.status.send_modify(|s| s.is_leader = false);
        info!(replica = %self.election.replica, "no longer the leader");
    }
}

/// Why a term ended other than by shutdown.
type Lost = String;

impl Election {
    /// Campaigns, leads, loses, campaigns again, until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            let started = Instant::now();
            match self.term(&stop).await {
                Ok(()) => return,
                Err(why) => {
                    warn!(replica = %self.replica, error = %why, "leader election: campaigning again")
                }
            }
            if started.elapsed() > self.ttl * 2 {
                backoff.reset();
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// One lease: campaign, and lead when elected. `Ok` on shutdown.
    async fn term(&self, stop: &CancellationToken) -> Result<(), Lost> {
        let held = lease::hold(&self.client, self.ttl, stop).await?;
        self.status.send_modify(|s| {
            s.lease_ttl_ms = u64::try_from(held.ttl.as_millis()).unwrap_or(u64::MAX);
        });
        let result = self.campaign_and_lead(held.id, &held.lost, stop).await;
        // Revoking deletes the election key now: the next replica need
        // not wait for the TTL.
        held.release().await;
        result
    }

    async fn campaign_and_lead(
        &self,
        lease: i64,
        lost: &CancellationToken,
        stop: &CancellationToken,
    ) -> Result<(), Lost> {
        let mut c = self.client.clone();
        let name = keys::election(&self.prefix);
        let won = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            _ = lost.cancelled() => return Err("the lease expired while campaigning".into()),
            r = c.campaign(name.as_str(), self.replica.as_str(), lease) => r.map_err(|e| format!("campaign: {e}"))?,
        };
        let leader = won
            .leader()
            .ok_or("campaign answered without a leader key")?;
        let term = Term {
            key: leader.key().to_vec(),
            revision: leader.rev(),
        };
        let leading = Leading::new(self);
        info!(replica = %self.replica, revision = term.revision, "elected leader: driving rollouts");
        let result = self.lead(term, lost, stop).await;
        if let Err(why) = &result {
            self.metrics.leadership_lost.inc();
            error!(replica = %self.replica, reason = %why, "leadership lost: stopped driving rollouts");
        }
        drop(leading);
        result
    }

    /// Runs the rollout driver until the term ends.
    async fn lead(
        &self,
        term: Term,
        lost: &CancellationToken,
        stop: &CancellationToken,
    ) -> Result<(), Lost> {
        let store = FencedStore::new(
            self.client.clone(),
            &self.prefix,
            term,
            self.records.clone(),
        );
        // Every replica publishes the weights from the watched records;
        // what the driver sends here is not read.
        let (overlays, _) = watch::channel(Overlays::default());
        let driver = Driver {
            store: Arc::new(store),
            metrics: self.analysis.clone(),
            overlays,
            acks: self.acks.clone(),
        };
        let driving = stop.child_token();
        let (run, _handle) = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            _ = lost.cancelled() => return Err("the lease expired while loading the rollouts".into()),
            r = driver.start(driving.clone()) => r.map_err(|e| format!("starting the rollout driver: {e}"))?,
        };
        let mut task = tokio::spawn(run);
        let why = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            _ = lost.cancelled() => Some("the lease was not renewed within its TTL"),
            r = &mut task => Some(match r {
                Err(e) if e.is_panic() => "the rollout driver panicked",
                _ => "a rollout write was refused: another replica leads",
            }),
        };
        driving.cancel();
        if !task.is_finished() {
            let _ = task.await;
        }
        match why {
            None => Ok(()),
            Some(w) => Err(w.to_string()),
        }
    }
}
