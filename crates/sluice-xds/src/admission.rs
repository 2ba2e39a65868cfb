//! Admission control for reconnect storms, and the stream limits.
//!
//! When sluice restarts, every proxy reconnects at once and each needs its
//! whole configuration: thousands of full-state pushes competing for two
//! cores, each slowed by all the others. Instead at most
//! `max_initial_pushes` streams are configured at a time; the others wait
//! in a fair (FIFO) queue, holding nothing but their connection, and are
//! let in as slots free up. A slot is held from the first request until
//! the proxy is configured ([`Session::configured`]: it asked for
//! listeners and answered every response) or for `admission_hold` at
//! most, so a stalled proxy cannot keep a slot.
//!
//! Queueing rather than refusing: Envoy retries a failed ADS stream with
//! a backoff (500 ms base, growing, jittered), so refusing would add
//! seconds to the tail of a storm; a queued stream starts the moment a
//! slot frees. Only when `max_waiting` streams already wait is a stream
//! refused with UNAVAILABLE (`sluice_xds_admission_rejected_total`), and
//! Envoy's retry brings it back.
//!
//! [`Session::configured`]: super::session::Session::configured

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::metrics::XdsMetrics;

/// Limits of the ADS server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted from or sent to a proxy. A response that
    /// would be larger is not sent (see `Event::Withheld`).
    pub max_message_bytes: usize,
    /// Streams receiving their initial configuration at the same time.
    pub max_initial_pushes: usize,
    /// Streams waiting for a slot before new ones are refused.
    pub max_waiting: usize,
    /// Longest time a stream keeps its slot.
    pub admission_hold: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024 * 1024,
            max_initial_pushes: 64,
            max_waiting: 50_000,
            admission_hold: Duration::from_secs(5),
        }
    }
}

/// The slots and the queue.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Admission {
    pub fn new(limits: &Limits) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(limits.max_initial_pushes.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting: limits.max_waiting,
        }
    }

    /// A slot, after waiting in line; an UNAVAILABLE status when the
    /// line is full.
    pub async fn admit(&self, metrics: &XdsMetrics) -> Result<OwnedSemaphorePermit, Status> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            metrics.admission_rejected.inc();
            return Err(Status::unavailable(format!(
                "sluice is configuring other proxies ({} streams waiting); retry",
                self.max_waiting
            )));
        }
        metrics.admission_waiting.inc();
        let slot = self.slots.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        metrics.admission_waiting.dec();
        // The semaphore is never closed.
        slot.map_err(|_| Status::unavailable("sluice is shutting down"))
    }
}
