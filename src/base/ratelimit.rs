//! Rate-limited logging: at most one line per interval, and the lines held back in between are
//! counted into the next one, so a failure repeated a million times costs one log line per
//! interval and still says how often it happened (the CSV writer's and the raw recorder's
//! errors, the HTTP server's warnings).

use std::time::{Duration, Instant};

/// At most one log line per `interval`; the lines in between are counted.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    /// When the last line was allowed.
    last: Option<Instant>,
    /// Lines held back since then.
    suppressed: u64,
}

impl RateLimit {
    /// A limiter allowing one line per `interval`.
    pub fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged at `now`;
    /// `None` (counted) when not.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let mut r = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(r.allow(t0 + Duration::from_secs(11)), None);
    }
}
