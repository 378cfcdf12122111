//! [`WaitHistogram`]: a fixed-bucket histogram of durations with one writer thread, read by
//! others as a Prometheus histogram (cumulative `le` buckets, `_sum`, `_count`).
//!
//! For durations that are rare and long (ms to s) rather than per-frame and short: the bucket
//! bounds are fixed ([`WAIT_BUCKETS_NS`]), recording is a short scan and two relaxed stores
//! ([`Counter`]), and readers on other threads see a value at most a few recordings old.

use crate::base::stats::Counter;

/// Upper bounds of the buckets, ns: 1, 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5, 10 s
/// (everything longer is only in `+Inf`, i.e. the count).
pub const WAIT_BUCKETS_NS: [u64; 12] = [
    1_000_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Durations counted per bucket; one writer thread (named where the histogram is a field).
#[derive(Debug, Default)]
pub struct WaitHistogram {
    /// Per bucket of [`WAIT_BUCKETS_NS`]: durations ≤ its bound and > the previous bound (not
    /// cumulative; [`cumulative`](Self::cumulative) adds them up).
    buckets: [Counter; WAIT_BUCKETS_NS.len()],
    /// Sum of every recorded duration, ns (saturating in practice: 584 years).
    sum_ns: Counter,
    /// Durations recorded.
    count: Counter,
}

impl WaitHistogram {
    /// Records one duration (owning thread only). Never allocates.
    #[inline]
    pub fn record(&self, ns: u64) {
        if let Some(i) = WAIT_BUCKETS_NS.iter().position(|&b| ns <= b) {
            self.buckets[i].inc();
        }
        self.sum_ns.add(ns);
        self.count.inc();
    }

    /// Durations recorded (any thread).
    pub fn count(&self) -> u64 {
        self.count.get()
    }

    /// Sum of the recorded durations, ns (any thread).
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns.get()
    }

    /// (bound ns, durations ≤ bound) for every bucket, as Prometheus's cumulative `le` buckets
    /// (`+Inf` is [`count`](Self::count)). Read bucket by bucket: a recording made meanwhile may
    /// show in a later bucket and not an earlier one, never the reverse of the order recorded.
    pub fn cumulative(&self) -> [(u64, u64); WAIT_BUCKETS_NS.len()] {
        let mut out = [(0, 0); WAIT_BUCKETS_NS.len()];
        let mut acc = 0u64;
        for (i, (&bound, b)) in WAIT_BUCKETS_NS.iter().zip(&self.buckets).enumerate() {
            acc = acc.saturating_add(b.get());
            out[i] = (bound, acc);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_bucket_and_add_up() {
        let h = WaitHistogram::default();
        h.record(0);
        h.record(1_000_000); // exactly the 1 ms bound: in it
        h.record(1_000_001);
        h.record(300_000_000);
        h.record(60_000_000_000); // beyond 10 s: only in the count
        let c = h.cumulative();
        assert_eq!(c[0], (1_000_000, 2));
        assert_eq!(c[1], (5_000_000, 3));
        assert_eq!(c[6], (250_000_000, 3));
        assert_eq!(c[7], (500_000_000, 4));
        assert_eq!(c[11], (10_000_000_000, 4));
        assert_eq!(h.count(), 5);
        assert_eq!(
            h.sum_ns(),
            1_000_000 + 1_000_001 + 300_000_000 + 60_000_000_000
        );
    }
}
