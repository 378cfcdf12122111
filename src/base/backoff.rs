//! Exponential backoff, one rule for every retry loop: collector reconnects (with full jitter),
//! the NATS bridge's reconnects and re-sends, and the CSV writer's retries of a failed file.
//!
//! The first retry is immediate; after that the wait doubles from `initial` up to `max`
//! (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>).

use std::time::Duration;

/// Waits that double from `initial` and never exceed `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first non-zero wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait before attempt `attempt` (1-based) when the previous ones failed: zero for the
    /// first, then `initial · 2^(attempt − 2)`, capped at `max`.
    pub fn before_attempt(&self, attempt: u64) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let shift = (attempt - 2).min(30) as u32;
        self.initial.saturating_mul(1u32 << shift).min(self.max)
    }

    /// The wait after a failure whose previous wait was `prev` (`None`: the first failure):
    /// `initial`, then doubling, capped at `max`.
    pub fn after(&self, prev: Option<Duration>) -> Duration {
        match prev {
            None => self.initial.min(self.max),
            Some(d) => d.saturating_mul(2).min(self.max),
        }
    }
}

/// "Full jitter": a uniformly random wait in `[0, cap]`, so that many clients cut at once do
/// not reconnect in lock step. xorshift64: cheap, and quality is irrelevant here.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// A generator seeded with `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// A wait in `[0, cap]`, whole milliseconds.
    pub fn full(&mut self, cap: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let ms = cap.as_millis() as u64;
        Duration::from_millis(if ms == 0 { 0 } else { self.0 % (ms + 1) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_retry_is_immediate_then_doubles_to_the_cap() {
        let b = Backoff {
            initial: 100 * MS,
            max: 1000 * MS,
        };
        let waits: Vec<u128> = (1..=7).map(|a| b.before_attempt(a).as_millis()).collect();
        assert_eq!(waits, [0, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.before_attempt(u64::MAX), b.max);
    }

    #[test]
    fn after_a_failure_the_wait_doubles_from_initial() {
        let b = Backoff {
            initial: 500 * MS,
            max: 1800 * MS,
        };
        let mut d = None;
        let mut seen = Vec::new();
        for _ in 0..5 {
            let w = b.after(d);
            seen.push(w.as_millis());
            d = Some(w);
        }
        assert_eq!(seen, [500, 1000, 1800, 1800, 1800]);
    }

    #[test]
    fn full_jitter_stays_within_the_cap() {
        let mut j = Jitter::new(0);
        let cap = 250 * MS;
        let waits: Vec<Duration> = (0..1000).map(|_| j.full(cap)).collect();
        assert!(waits.iter().all(|w| *w <= cap));
        assert!(waits.iter().any(|w| *w < cap / 2) && waits.iter().any(|w| *w > cap / 2));
        assert_eq!(j.full(Duration::ZERO), Duration::ZERO);
    }
}
