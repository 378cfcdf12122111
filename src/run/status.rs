//! The latency part of the status line: figures over exactly the interval since the previous
//! line, and never a stale figure presented as current.
//!
//! [`StatusLatency`] keeps the consumer's published `latency_total` (all feeds merged) as of the
//! previous line; the difference to the current one holds exactly the frames relayed in
//! between. Three cases, each said plainly:
//! - no publication since the previous line: `latency not republished since the last line`
//!   (the consumer or its `stats` thread is behind; the old figures are not repeated);
//! - publications but no frame relayed to a subscriber:
//!   `latency p50 — p99 — (no frame relayed to a subscriber in 5.0 s)`;
//! - otherwise `latency p50 12.3 µs p99 45.6 µs (n 12345)`, n the frames measured.

use hdrhistogram::Histogram;

use crate::base::publication::Publication;
use crate::consumer::thread::{new_histogram, Published};
use crate::run::summary::{pct, us};

/// What the previous status line saw.
#[derive(Debug)]
pub(crate) struct StatusLatency {
    /// Publication version at the previous line.
    version: u64,
    /// Every feed's `latency_total`, merged, at the previous line.
    total: Histogram<u64>,
}

impl StatusLatency {
    /// As if a line had been printed before the first publication.
    pub(crate) fn new() -> Self {
        StatusLatency {
            version: 0,
            total: new_histogram(),
        }
    }

    /// The latency field of a status line printed `elapsed_s` after the previous one.
    pub(crate) fn field(&mut self, published: &Publication<Published>, elapsed_s: f64) -> String {
        let version = published.version();
        if version == self.version {
            return "latency not republished since the last line".to_owned();
        }
        self.version = version;
        let mut now = new_histogram();
        for h in &published.load().latency_total {
            let _ = now.add(h);
        }
        let mut delta = now.clone();
        // Totals only grow, so the previous one is contained in this one.
        if delta.subtract(&self.total).is_err() {
            delta.reset();
        }
        self.total = now;
        if delta.is_empty() {
            return format!(
                "latency p50 — p99 — (no frame relayed to a subscriber in {elapsed_s:.1} s)"
            );
        }
        format!(
            "latency p50 {} µs p99 {} µs (n {})",
            us(pct(&delta, 0.5)),
            us(pct(&delta, 0.99)),
            delta.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(p: &Publication<Published>, samples_ns: &[u64]) {
        let mut w = p.write();
        for &s in samples_ns {
            let _ = w.latency_total[0].record(s);
        }
    }

    #[test]
    fn a_line_covers_its_interval_and_never_repeats_a_stale_figure() {
        let p = Publication::new(Published::new(1));
        let mut s = StatusLatency::new();
        assert_eq!(
            s.field(&p, 5.0),
            "latency not republished since the last line"
        );
        publish(&p, &[1_000_000; 10]); // 1 ms each
        let line = s.field(&p, 5.0);
        assert!(line.starts_with("latency p50 1000."), "{line}");
        assert!(line.ends_with(" µs (n 10)"), "{line}");
        // Published again, but nothing relayed: no figure, and why.
        publish(&p, &[]);
        assert_eq!(
            s.field(&p, 5.0),
            "latency p50 — p99 — (no frame relayed to a subscriber in 5.0 s)"
        );
        // Not republished: said so, the 1 ms figure is not repeated.
        assert_eq!(
            s.field(&p, 5.0),
            "latency not republished since the last line"
        );
        // New samples: only they count, not the earlier 1 ms ones.
        publish(&p, &[2_000; 4]);
        assert_eq!(s.field(&p, 2.5), "latency p50 2.0 µs p99 2.0 µs (n 4)");
    }
}
