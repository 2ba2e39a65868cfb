//! A lease of this replica's own in etcd, kept alive by a task: the
//! election campaigns under one, and the summary of the replica's
//! proxies (`acks`) lives under another, so both vanish when the replica
//! dies or stalls past its TTL.

use std::time::Duration;

use etcd_client::Client;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::keys;

/// A lease granted to this replica, and the task renewing it.
pub struct Held {
    pub id: i64,
    /// The TTL etcd granted.
    pub ttl: Duration,
    /// Cancelled once the lease may have expired (see [`keep_alive`]).
    pub lost: CancellationToken,
    client: Client,
    keeper: JoinHandle<()>,
}

/// Grants a lease of `ttl` and keeps it alive until [`Held::release`],
/// `stop`, or its loss.
pub async fn hold(
    client: &Client,
    ttl: Duration,
    stop: &CancellationToken,
) -> Result<Held, String> {
    let (id, ttl) = grant(client, ttl).await?;
    let lost = CancellationToken::new();
    let keeper = tokio::spawn(keep_alive(
        client.clone(),
        id,
        ttl,
        lost.clone(),
        stop.clone(),
    ));
    Ok(Held {
        id,
        ttl,
        lost,
        client: client.clone(),
        keeper,
    })
}

impl Held {
    /// Stops renewing and revokes the lease, which deletes the keys
    /// attached to it at once. Best effort: when etcd cannot be reached
    /// the lease expires by itself.
    pub async fn release(self) {
        self.keeper.abort();
        let mut c = self.client.clone();
        let _ = keys::bounded(c.lease_revoke(self.id)).await;
    }
}

/// A term or publisher that ends without [`Held::release`] (a panic, a
/// dropped future) stops renewing too: the lease then expires by itself.
impl Drop for Held {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Grants a lease of `ttl`; its id and the TTL etcd granted (etcd counts
/// whole seconds and may raise a TTL below its minimum).
async fn grant(client: &Client, ttl: Duration) -> Result<(i64, Duration), String> {
    let mut c = client.clone();
    let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    let grant = keys::bounded(c.lease_grant(secs, None))
        .await
        .map_err(|e| format!("lease grant: {e}"))?;
    let granted = u64::try_from(grant.ttl()).unwrap_or(ttl.as_secs());
    Ok((grant.id(), Duration::from_secs(granted.max(1))))
}

/// Renews `lease` every third of its TTL. Cancels `lost` once the lease
/// may have expired: etcd said so (TTL 0), or no renewal succeeded within
/// the TTL since the last successful one was sent.
async fn keep_alive(
    client: Client,
    lease: i64,
    ttl: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    // However this ends (a return, a panic, an abort), the term ends too.
    let _lost = lost.clone().drop_guard();
    let every = ttl / 3;
    let mut renewed = Instant::now();
    let expired = |renewed: Instant| renewed.elapsed() >= ttl;
    loop {
        if expired(renewed) {
            warn!(lease, "lease not renewed within its TTL");
            lost.cancel();
            return;
        }
        let mut c = client.clone();
        let opened = tokio::time::timeout(every, c.lease_keep_alive(lease)).await;
        let Ok(Ok((mut keeper, mut replies))) = opened else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        };
        loop {
            if expired(renewed) {
                break;
            }
            let sent = Instant::now();
            if keeper.keep_alive().await.is_err() {
                break;
            }
            let reply = tokio::select! {
                _ = stop.cancelled() => return,
                r = tokio::time::timeout(every, replies.message()) => r,
            };
            match reply {
                Ok(Ok(Some(r))) if r.ttl() > 0 => renewed = sent,
                Ok(Ok(Some(_))) => {
                    warn!(lease, "etcd says the lease has expired");
                    lost.cancel();
                    return;
                }
                _ => break,
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
