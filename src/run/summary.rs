//! What a stopped relay reports: per feed, frames read, events, relayed, dropped and latency,
//! with the check `events = relayed + dropped + refused`; persistence figures; threads that
//! panicked. Built by [`Running::shutdown`](super::Running::shutdown); its `Display` is the
//! summary `mdrelay run` prints.

use std::fmt;

use hdrhistogram::Histogram;

pub(crate) fn pct(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// µs with one decimal; `-` when there was no sample (recorded latencies are always ≥ 1 ns).
pub(crate) fn us(ns: u64) -> String {
    if ns == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}", ns as f64 / 1000.0)
    }
}

/// Per-feed totals at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSummary {
    /// Feed name.
    pub name: String,
    /// WebSocket frames read.
    pub frames: u64,
    /// Control frames among them.
    pub control: u64,
    /// Frames that failed to parse.
    pub parse_errors: u64,
    /// Of `parse_errors`: numbers out of fixed-point range.
    pub out_of_range: u64,
    /// Events produced by the parser.
    pub events: u64,
    /// Events relayed by the consumer.
    pub relayed: u64,
    /// Events lost between collector and consumer (queue full, evicted, conflated).
    pub dropped: u64,
    /// Events the consumer refused (id owned by another feed, or definition evicted).
    pub refused: u64,
    /// Deepest the feed's queue got, frames.
    pub queue_high_water: u64,
    /// The queue's capacity, frames.
    pub queue_capacity: u64,
    /// Reconnects.
    pub reconnects: u64,
    /// Venue sequence gaps seen.
    pub gaps: u64,
    /// Recordings whose replay stopped on an error (`mdrelay replay` exits 1).
    pub files_failed: u64,
    /// Latency percentiles, frame read → subscriber write, ns (0 when nothing was relayed to a
    /// subscriber).
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// Maximum.
    pub max_ns: u64,
}

/// What went to disk and into bars.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persistence {
    /// Bars closed and relayed.
    pub bars_closed: u64,
    /// CSV rows written; `None` when CSV is off.
    pub csv_rows: Option<u64>,
    /// Records not persisted to CSV (queue full, I/O errors).
    pub csv_not_persisted: u64,
    /// Failed CSV file operations.
    pub csv_io_errors: u64,
    /// Raw messages recorded; `None` when no feed records.
    pub raw_recorded: Option<u64>,
    /// Raw messages not recorded.
    pub raw_dropped: u64,
}

/// What a relay did, printed at shutdown.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Seconds from start to shutdown.
    pub uptime_s: f64,
    /// Per feed.
    pub feeds: Vec<FeedSummary>,
    /// Bars, CSV and raw recording.
    pub persistence: Persistence,
    /// Subscribers accepted.
    pub subscribers_accepted: u64,
    /// Subscribers disconnected as too slow.
    pub slow_disconnects: u64,
    /// Connections refused (max subscribers).
    pub refused: u64,
    /// Threads that panicked.
    pub panicked: Vec<String>,
}

impl Summary {
    /// True when every feed's accounting balances: events = relayed + dropped + refused.
    pub fn balanced(&self) -> bool {
        self.feeds
            .iter()
            .all(|f| f.events == f.relayed + f.dropped + f.refused)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mdrelay summary after {:.1} s", self.uptime_s)?;
        writeln!(
            f,
            "{:<16} {:>10} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8} {:>8} {:>6} {:>9} {:>9} {:>9} {:>15}",
            "feed", "frames", "control", "errors", "range", "events", "relayed", "dropped", "refused", "reconn",
            "p50_us", "p99_us", "max_us", "queue_hwm/cap"
        )?;
        for s in &self.feeds {
            writeln!(
                f,
                "{:<16} {:>10} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8} {:>8} {:>6} {:>9} {:>9} {:>9} {:>15}",
                s.name,
                s.frames,
                s.control,
                s.parse_errors,
                s.out_of_range,
                s.events,
                s.relayed,
                s.dropped,
                s.refused,
                s.reconnects,
                us(s.p50_ns),
                us(s.p99_ns),
                us(s.max_ns),
                format!("{}/{}", s.queue_high_water, s.queue_capacity)
            )?;
        }
        writeln!(
            f,
            "subscribers accepted {} | disconnected as slow {} | refused {}",
            self.subscribers_accepted, self.slow_disconnects, self.refused
        )?;
        if let Some(worst) = self
            .feeds
            .iter()
            .filter(|s| s.dropped > 0)
            .max_by_key(|s| s.dropped)
        {
            writeln!(f, "most drops: {} ({})", worst.name, worst.dropped)?;
        }
        if let Some(worst) = self
            .feeds
            .iter()
            .filter(|s| s.gaps > 0)
            .max_by_key(|s| s.gaps)
        {
            writeln!(f, "most venue gaps: {} ({})", worst.name, worst.gaps)?;
        }
        for s in self.feeds.iter().filter(|s| s.files_failed > 0) {
            writeln!(
                f,
                "{}: {} recording(s) stopped by an error",
                s.name, s.files_failed
            )?;
        }
        let p = &self.persistence;
        write!(f, "bars closed {}", p.bars_closed)?;
        match p.csv_rows {
            Some(n) => write!(
                f,
                " | csv rows {n}, not persisted {}, io errors {}",
                p.csv_not_persisted, p.csv_io_errors
            )?,
            None => write!(f, " | csv off")?,
        }
        match p.raw_recorded {
            Some(n) => writeln!(f, " | raw recorded {n}, not recorded {}", p.raw_dropped)?,
            None => writeln!(f, " | raw recording off")?,
        }
        write!(
            f,
            "accounting {}",
            if self.balanced() {
                "balanced: events = relayed + dropped + refused"
            } else {
                "UNBALANCED"
            }
        )
    }
}
