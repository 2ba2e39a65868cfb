//! What the publisher hands the xDS server: each snapshot set as
//! [`Published`], on a watch channel ([`SnapshotRx`]) that every stream
//! reads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::history::History;
use super::resource::Snapshots;
use sluice_core::model::AccessEntry;

/// A snapshot set as published, with the time it was published (for the
/// publication → ACK latency metric) and the diffs from the last few
/// publishes, so that each stream only looks at what changed.
#[derive(Debug)]
pub struct Published {
    pub snapshots: Arc<Snapshots>,
    pub at: Instant,
    pub history: History,
    /// Who may be served (the rules' `xds_access`): each stream checks
    /// its credentials against it when its node is known and again on
    /// every publish, so a revoked entry ends the streams it allowed.
    pub access: Arc<Vec<AccessEntry>>,
    /// Which publish this is (1, 2, …), for [`FanOut`].
    pub seq: u64,
    /// How far the streams are with taking the latest publish; one for
    /// the whole chain of publishes.
    pub fanout: Arc<FanOut>,
}

impl Published {
    /// `snapshots` published after `prev`: diffs each group against it
    /// (once, here, for all streams) and keeps `prev`'s `Arc` for groups
    /// whose content did not change.
    pub fn after(prev: Option<&Published>, mut snapshots: Snapshots, at: Instant) -> Published {
        let history = match prev {
            Some(p) => p.history.advance(&p.snapshots, &mut snapshots),
            None => History::default(),
        };
        let seq = prev.map_or(1, |p| p.seq + 1);
        let fanout = prev.map(|p| p.fanout.clone()).unwrap_or_default();
        fanout.published(seq);
        Published {
            snapshots: Arc::new(snapshots),
            at,
            history,
            access: Arc::default(),
            seq,
            fanout,
        }
    }

    /// The same, allowing the streams `access` allows.
    pub fn with_access(mut self, access: Arc<Vec<AccessEntry>>) -> Published {
        self.access = access;
        self
    }
}

/// When the streams have taken a publish: each identified stream (one
/// whose node is known) counts itself once its session has worked out
/// what the publish means for it, before anything is written to the wire.
/// A publish's cost is its compile *and* this fan-out (a session per
/// stream, ~1,000 of them): the publisher waits for it before it paces the
/// next publish, so under churn it never publishes faster than the
/// streams take its publishes (B2: when it did, streams lagged many
/// publishes and planned in full each time).
#[derive(Debug, Default)]
pub struct FanOut {
    /// Identified streams.
    streams: AtomicUsize,
    /// The latest publish, and how many streams have taken it.
    seq: AtomicU64,
    taken: AtomicUsize,
    done: Notify,
}

impl FanOut {
    fn published(&self, seq: u64) {
        self.taken.store(0, Ordering::SeqCst);
        self.seq.store(seq, Ordering::SeqCst);
        // A wait for an earlier publish is over.
        self.done.notify_waiters();
    }

    /// A stream's node is known: it takes publishes from now on.
    pub fn joined(&self) {
        self.streams.fetch_add(1, Ordering::SeqCst);
    }

    /// An identified stream ended.
    pub fn left(&self) {
        self.streams.fetch_sub(1, Ordering::SeqCst);
        self.check();
    }

    /// A stream has taken publish `seq`.
    pub fn took(&self, seq: u64) {
        if self.seq.load(Ordering::SeqCst) == seq {
            self.taken.fetch_add(1, Ordering::SeqCst);
            self.check();
        }
    }

    fn is_done(&self, seq: u64) -> bool {
        self.seq.load(Ordering::SeqCst) != seq
            || self.taken.load(Ordering::SeqCst) >= self.streams.load(Ordering::SeqCst)
    }

    fn check(&self) {
        if self.taken.load(Ordering::SeqCst) >= self.streams.load(Ordering::SeqCst) {
            self.done.notify_waiters();
        }
    }

    /// Waits until every identified stream has taken publish `seq` (or a
    /// later one was published), `at_most` long: a stream that stalls
    /// must not stall publishing.
    pub async fn taken(&self, seq: u64, at_most: Duration) {
        let wait = async {
            loop {
                let notified = self.done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.is_done(seq) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(at_most, wait).await;
    }
}

/// `None` until the first complete snapshot: until then streams are held
/// and nothing is sent (no partial or empty first push).
pub type SnapshotRx = watch::Receiver<Option<Arc<Published>>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Long enough never to be what ends a wait that should end sooner.
    const LONG: Duration = Duration::from_secs(30);

    async fn finishes(f: impl std::future::Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_publish_is_taken_once_every_identified_stream_took_it() {
        let f = Arc::new(FanOut::default());
        f.joined();
        f.joined();
        f.published(1);
        f.took(1);
        let wait = {
            let f = f.clone();
            tokio::spawn(async move { f.taken(1, LONG).await })
        };
        tokio::task::yield_now().await;
        assert!(!wait.is_finished(), "one stream has not taken it");
        // A stream still on an older publish does not count for this one.
        f.took(0);
        tokio::task::yield_now().await;
        assert!(!wait.is_finished());
        f.took(1);
        assert!(finishes(async { wait.await.expect("joins") }).await);
    }

    #[tokio::test]
    async fn a_stream_that_ends_or_a_later_publish_ends_the_wait() {
        let f = Arc::new(FanOut::default());
        f.joined();
        f.joined();
        f.published(1);
        f.took(1);
        f.left();
        assert!(finishes(f.taken(1, LONG)).await);
        f.published(2);
        let wait = {
            let f = f.clone();
            tokio::spawn(async move { f.taken(2, LONG).await })
        };
        tokio::task::yield_now().await;
        assert!(!wait.is_finished());
        f.published(3);
        assert!(finishes(async { wait.await.expect("joins") }).await);
    }

    #[tokio::test]
    async fn a_stalled_stream_holds_the_publisher_at_most_the_given_time() {
        let f = FanOut::default();
        f.joined();
        f.published(1);
        // Never taken: the wait ends by its bound, not by hanging.
        assert!(finishes(f.taken(1, Duration::from_millis(50))).await);
    }

    #[test]
    fn publishes_are_numbered_and_share_one_fan_out() {
        let first = Published::after(None, Snapshots::default(), Instant::now());
        let next = Published::after(Some(&first), Snapshots::default(), Instant::now());
        assert_eq!((first.seq, next.seq), (1, 2));
        assert!(Arc::ptr_eq(&first.fanout, &next.fanout));
    }
}
