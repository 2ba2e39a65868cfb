//! When to publish after changes: a sans-io debouncer paced by what
//! publishing costs.
//!
//! `serve` tells the [`Coalescer`] about every change and, after each
//! publish, when it ended and how long it took; it sleeps until
//! [`Coalescer::deadline`]. The rule:
//!
//! - a change that comes after a quiet moment (nothing changed or was
//!   published for `quiet`) goes out at once: an isolated change does
//!   not wait for a burst that is not coming;
//! - a change that follows others closely waits until the sources have
//!   been `quiet` for a moment (a registry often sends a burst: a deploy
//!   moves many instances, and the burst's first change went out alone),
//!   but never more than `max_delay` after the first pending change;
//! - the next publish starts no earlier than `cost_factor` × the duration
//!   of the last one after it ended (capped at `max_interval`), so the
//!   publisher (resolve, compile, diff, hand-off) is busy at most
//!   1 / (1 + `cost_factor`) of the time, however fast changes arrive.
//!
//! An operator's command (a rollout step, a drain) is one deliberate
//! change, not the start of a burst: [`Coalescer::commanded`] skips the
//! quiet wait for it, but not the pacing.
//!
//! A change that arrives after that gap — an isolated change, or changes
//! every few hundred milliseconds when a publish takes a few — goes out
//! at once. (It used to wait `quiet` too, in case a burst followed: 5 ms
//! of B1's ~40 ms per move, which the transport floor does not pay.) A
//! flood is batched: each publish carries every
//! change since the previous one, and publishes come as often as their
//! cost allows. The pacing used to be a fixed doubling up to 500 ms for
//! any two publishes within 2 s, which made a registry changing every
//! 500 ms wait up to 500 ms per change even when publishing took 1 ms.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoalesceConfig {
    pub quiet: Duration,
    pub max_delay: Duration,
    /// The longest gap pacing may impose after a publish.
    pub max_interval: Duration,
    /// The gap after a publish, as a multiple of its duration.
    pub cost_factor: u32,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        CoalesceConfig {
            quiet: Duration::from_millis(5),
            max_delay: Duration::from_millis(100),
            max_interval: Duration::from_millis(500),
            cost_factor: 3,
        }
    }
}

#[derive(Debug)]
pub struct Coalescer {
    cfg: CoalesceConfig,
    first_pending: Option<Instant>,
    last_change: Option<Instant>,
    /// A pending change is an operator's command: no quiet wait.
    commanded: bool,
    /// When the last publish ended.
    last_publish: Option<Instant>,
    interval: Duration,
}

impl Coalescer {
    pub fn new(cfg: CoalesceConfig) -> Coalescer {
        Coalescer {
            cfg,
            first_pending: None,
            last_change: None,
            commanded: false,
            last_publish: None,
            interval: Duration::ZERO,
        }
    }

    pub fn changed(&mut self, now: Instant) {
        self.first_pending.get_or_insert(now);
        self.last_change = Some(now);
    }

    /// An operator's command at `now`: published as soon as pacing
    /// allows, with whatever else is pending.
    pub fn commanded(&mut self, now: Instant) {
        self.changed(now);
        self.commanded = true;
    }

    /// When to publish the pending changes; `None` when nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        let first = self.first_pending?;
        let last = self.last_change.unwrap_or(first);
        // Nothing changed or was published for `quiet` before `first`.
        let after_quiet = self
            .last_publish
            .is_none_or(|p| first >= p + self.cfg.quiet);
        let settle = match self.commanded || after_quiet {
            true => first,
            false => (last + self.cfg.quiet).min(first + self.cfg.max_delay),
        };
        Some(match self.last_publish {
            Some(p) => settle.max(p + self.interval),
            None => settle,
        })
    }

    /// Records a publish that ended at `now` and took `cost`; pending
    /// changes are gone.
    pub fn published(&mut self, now: Instant, cost: Duration) {
        self.interval = cost
            .saturating_mul(self.cfg.cost_factor)
            .min(self.cfg.max_interval);
        self.last_publish = Some(now);
        self.first_pending = None;
        self.last_change = None;
        self.commanded = false;
    }

    /// The streams have taken the last publish at `now`, `cost` after it
    /// started: pacing counts the fan-out too, and the quiet before an
    /// isolated change runs from here. Changes since the publish stay
    /// pending.
    pub fn delivered(&mut self, now: Instant, cost: Duration) {
        self.interval = cost
            .saturating_mul(self.cfg.cost_factor)
            .min(self.cfg.max_interval);
        self.last_publish = Some(now);
    }

    /// The longest gap pacing imposes.
    pub fn max_interval(&self) -> Duration {
        self.cfg.max_interval
    }

    /// The current minimum gap after the last publish.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Drives a coalescer with a change every `every` for `total`, each
    /// publish costing `cost`; returns the publish start times and the
    /// delay from each change to the publish that carried it.
    fn simulate(every: Duration, total: Duration, cost: Duration) -> (Vec<Instant>, Vec<Duration>) {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalesceConfig::default());
        let mut publishes = Vec::new();
        let mut delays = Vec::new();
        let mut waiting: Vec<Instant> = Vec::new();
        let mut next_change = t0;
        let mut busy_until = t0;
        let mut now = t0;
        while now < t0 + total {
            if now >= next_change {
                c.changed(now);
                waiting.push(now);
                next_change += every;
            }
            if now >= busy_until && c.deadline().is_some_and(|d| d <= now) {
                publishes.push(now);
                delays.extend(waiting.drain(..).map(|w| now - w));
                busy_until = now + cost;
                c.published(busy_until, cost);
            }
            now += MS / 4;
        }
        (publishes, delays)
    }

    #[test]
    fn an_isolated_change_goes_out_at_once() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalesceConfig::default());
        assert_eq!(c.deadline(), None);
        c.changed(t0);
        assert_eq!(c.deadline(), Some(t0));
        c.published(t0 + MS, MS);
        // 5 ms after the last publish, nothing since: at once again.
        c.changed(t0 + 6 * MS);
        assert_eq!(c.deadline(), Some(t0 + 6 * MS));
    }

    #[test]
    fn a_burst_after_its_first_change_is_one_publish_bounded_by_max_delay() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalesceConfig::default());
        c.changed(t0);
        assert_eq!(c.deadline(), Some(t0));
        c.published(t0 + MS, MS);
        // A change every 2 ms never leaves 5 ms of quiet.
        for i in 1..100 {
            c.changed(t0 + i * 2 * MS);
        }
        assert_eq!(c.deadline(), Some(t0 + 102 * MS));
    }

    #[test]
    fn a_change_close_after_a_publish_waits_for_quiet() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalesceConfig::default());
        c.published(t0, MS);
        c.changed(t0 + 2 * MS);
        assert_eq!(c.deadline(), Some(t0 + 7 * MS));
        c.changed(t0 + 4 * MS);
        assert_eq!(c.deadline(), Some(t0 + 9 * MS));
    }

    #[test]
    fn steady_changes_every_500ms_each_go_out_after_quiet() {
        // Publishing costs 20 ms (compile of M1): far below the spacing.
        let (publishes, delays) = simulate(500 * MS, Duration::from_secs(10), 20 * MS);
        assert_eq!(publishes.len(), 20);
        assert!(delays.iter().all(|d| *d <= 6 * MS), "{delays:?}");
    }

    #[test]
    fn frequent_cheap_changes_are_not_slowed_down() {
        // A change every 50 ms, publishing costs 2 ms: every change alone.
        let (publishes, delays) = simulate(50 * MS, Duration::from_secs(5), 2 * MS);
        assert_eq!(publishes.len(), 100);
        assert!(delays.iter().all(|d| *d <= 6 * MS), "{delays:?}");
    }

    #[test]
    fn a_flood_is_batched_by_the_cost_of_publishing() {
        let cost = 20 * MS;
        // A change every millisecond for 10 s.
        let (publishes, delays) = simulate(MS, Duration::from_secs(10), cost);
        let gaps: Vec<Duration> = publishes.windows(2).map(|w| w[1] - w[0]).collect();
        // Each publish starts at least cost × (1 + factor) after the last.
        assert!(gaps.iter().all(|g| *g >= 4 * cost), "{gaps:?}");
        assert!(publishes.len() <= 10_000 / 80 + 1, "{}", publishes.len());
        // Nothing waits longer than max_delay plus one paced gap.
        let worst = delays.iter().max().copied().unwrap_or_default();
        assert!(worst <= 100 * MS + 4 * cost, "{worst:?}");
    }

    #[test]
    fn a_command_skips_the_quiet_wait_but_not_the_pacing() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalesceConfig::default());
        c.commanded(t0);
        assert_eq!(c.deadline(), Some(t0));
        // It takes pending source changes along at once.
        c.changed(t0 + MS);
        assert_eq!(c.deadline(), Some(t0));
        c.published(t0 + 2 * MS, 10 * MS);
        // After a publish that took 10 ms, a command waits out the gap.
        c.commanded(t0 + 3 * MS);
        assert_eq!(c.deadline(), Some(t0 + 32 * MS));
        c.published(t0 + 32 * MS, MS);
        // And a source change close after it waits for quiet again.
        c.changed(t0 + 34 * MS);
        assert_eq!(c.deadline(), Some(t0 + 39 * MS));
    }

    #[test]
    fn the_fan_out_paces_without_dropping_what_came_meanwhile() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalesceConfig::default());
        c.changed(t0);
        c.published(t0 + 2 * MS, 2 * MS);
        // A change while the streams take the publish stays pending.
        c.changed(t0 + 5 * MS);
        c.delivered(t0 + 20 * MS, 20 * MS);
        assert_eq!(c.interval(), 60 * MS);
        assert_eq!(c.deadline(), Some(t0 + 80 * MS));
    }

    #[test]
    fn pacing_is_capped_for_very_slow_publishes() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalesceConfig::default());
        c.published(t0, Duration::from_secs(2));
        assert_eq!(c.interval(), 500 * MS);
        c.changed(t0 + MS);
        assert_eq!(c.deadline(), Some(t0 + 500 * MS));
        // A cheap publish brings the gap back down at once.
        c.published(t0 + 500 * MS, MS);
        assert_eq!(c.interval(), 3 * MS);
    }
}
