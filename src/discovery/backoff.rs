//! The retry delay of every discovery source: after an error a feed waits
//! `retry_min`, then twice as long after each further error, up to
//! `retry_max`; once the registry answers again the next error waits
//! `retry_min` again. Sources decide when the registry has answered (a
//! listing, a created watch, a successful query) and call
//! [`Backoff::reset`]; [`Feeder::retry_after`](super::Feeder::retry_after)
//! takes the next delay and shows it with the error.

use std::time::Duration;

use super::SourceOptions;

/// One feed's retry delay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(opts: &SourceOptions) -> Backoff {
        Backoff {
            min: opts.retry_min,
            max: opts.retry_max,
            next: opts.retry_min,
        }
    }

    /// The wait before the next try; the one after it is twice as long,
    /// up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d
    }

    /// The registry answered: the next error starts a new outage, whose
    /// first retry waits the shortest delay.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_backoff() -> Backoff {
        Backoff::new(&SourceOptions {
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            ..Default::default()
        })
    }

    #[test]
    fn doubles_from_the_minimum_to_the_maximum_and_resets() {
        let mut b = mk_backoff();
        let ms: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.next_delay(), Duration::from_millis(200));
    }
}
