//! The retry delay of every retry loop (the discovery sources' and the
//! simulated proxy's reconnects): after an error a loop waits `min`, then
//! twice as long after each further error, up to `max`; once the other side
//! answers again the next error waits `min` again. Each loop decides when
//! the other side has answered (a listing, a created watch, a successful
//! query, an open stream) and calls [`Backoff::reset`]; it takes each
//! delay from [`Backoff::next_delay`].
//!
//! Plain arithmetic, no clock or runtime: it sits below every module that
//! retries, so none imports another's internals for it.

use std::time::Duration;

/// One loop's retry delay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min` and doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next try; the one after it is twice as long,
    /// up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d
    }

    /// The other side answered: the next error starts a new outage, whose
    /// first retry waits the shortest delay.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_minimum_to_the_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let ms: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.next_delay(), Duration::from_millis(200));
    }
}
