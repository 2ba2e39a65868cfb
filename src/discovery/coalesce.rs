//! When to publish after endpoint changes: a sans-io debouncer.
//!
//! `serve` tells the [`Coalescer`] about every change and every publish and
//! sleeps until [`Coalescer::deadline`]. The rule:
//!
//! - a change waits until the sources have been `quiet` for a moment (a
//!   registry usually sends a burst: a deploy moves many instances), but
//!   never more than `max_delay` after the first pending change;
//! - publishes are at least `interval` apart. The interval is 0 while
//!   publishes are rare, doubles (from `quiet`) each time a publish follows
//!   the previous one within `calm`, and is capped at `max_interval`.
//!
//! So one change after a calm period goes out after `quiet` (5 ms), and a
//! registry that flaps without end gives at most one publish per
//! `max_interval`.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoalesceConfig {
    pub quiet: Duration,
    pub max_delay: Duration,
    pub max_interval: Duration,
    pub calm: Duration,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        CoalesceConfig {
            quiet: Duration::from_millis(5),
            max_delay: Duration::from_millis(100),
            max_interval: Duration::from_millis(500),
            calm: Duration::from_secs(2),
        }
    }
}

#[derive(Debug)]
pub struct Coalescer {
    cfg: CoalesceConfig,
    first_pending: Option<Instant>,
    last_change: Option<Instant>,
    last_publish: Option<Instant>,
    interval: Duration,
}

impl Coalescer {
    pub fn new(cfg: CoalesceConfig) -> Coalescer {
        Coalescer {
            cfg,
            first_pending: None,
            last_change: None,
            last_publish: None,
            interval: Duration::ZERO,
        }
    }

    pub fn changed(&mut self, now: Instant) {
        self.first_pending.get_or_insert(now);
        self.last_change = Some(now);
    }

    /// When to publish the pending changes; `None` when nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        let first = self.first_pending?;
        let last = self.last_change.unwrap_or(first);
        let settle = (last + self.cfg.quiet).min(first + self.cfg.max_delay);
        Some(match self.last_publish {
            Some(p) => settle.max(p + self.interval),
            None => settle,
        })
    }

    /// Records a publish at `now`; pending changes are gone.
    pub fn published(&mut self, now: Instant) {
        self.interval = match self.last_publish {
            Some(prev) if now.saturating_duration_since(prev) < self.cfg.calm => (self.interval
                * 2)
            .max(self.cfg.quiet)
            .min(self.cfg.max_interval),
            _ => Duration::ZERO,
        };
        self.last_publish = Some(now);
        self.first_pending = None;
        self.last_change = None;
    }

    /// The current minimum gap between publishes.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn one_change_goes_out_after_quiet() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalesceConfig::default());
        assert_eq!(c.deadline(), None);
        c.changed(t0);
        assert_eq!(c.deadline(), Some(t0 + 5 * MS));
    }

    #[test]
    fn a_burst_is_one_publish_bounded_by_max_delay() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalesceConfig::default());
        // A change every 2 ms never leaves 5 ms of quiet.
        for i in 0..100 {
            c.changed(t0 + i * 2 * MS);
        }
        assert_eq!(c.deadline(), Some(t0 + 100 * MS));
    }

    #[test]
    fn endless_flapping_is_rate_bounded() {
        let cfg = CoalesceConfig::default();
        let mut c = Coalescer::new(cfg);
        let mut now = Instant::now();
        let mut publishes = Vec::new();
        // A change every millisecond for 10 s; publish at each deadline.
        let end = now + Duration::from_secs(10);
        while now < end {
            c.changed(now);
            if let Some(d) = c.deadline() {
                if d <= now {
                    c.published(now);
                    publishes.push(now);
                }
            }
            now += MS;
        }
        let gaps: Vec<Duration> = publishes.windows(2).map(|w| w[1] - w[0]).collect();
        let late = &gaps[gaps.len() / 2..];
        assert!(late.iter().all(|g| *g >= cfg.max_interval), "{late:?}");
        assert!(
            publishes.len() <= 10 * 2 + 8,
            "{} publishes",
            publishes.len()
        );
    }

    #[test]
    fn calm_resets_the_interval() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalesceConfig::default());
        c.published(t0);
        c.published(t0 + 10 * MS);
        c.published(t0 + 20 * MS);
        assert!(c.interval() > Duration::ZERO);
        let later = t0 + Duration::from_secs(5);
        c.published(later);
        assert_eq!(c.interval(), Duration::ZERO);
        c.changed(later + Duration::from_secs(5));
        assert_eq!(c.deadline(), Some(later + Duration::from_secs(5) + 5 * MS));
    }
}
