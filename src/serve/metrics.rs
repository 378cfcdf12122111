//! Metrics: renders the relay's counters as Prometheus text. Whether the relay is healthy is
//! decided in [`health`](super::health) (re-exported here: [`health()`], [`DEFAULT_STALE_AFTER`]).
//!
//! Runs on the `http` thread (see [`crate::serve::http`]), or on any thread that asks (tests, tools); it
//! is never on the hot path. It only reads: single-writer atomics ([`crate::base::stats`], queue
//! monitors) with relaxed loads, and the consumer's published latency snapshot
//! ([`crate::consumer::thread::Published`]), loaded from its lock-free publication. It never
//! blocks, and the consumer never waits for, or skips a publication because of, a scrape.
//!
//! Format: the Prometheus text exposition format 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>): each family is one group,
//! `# HELP` and `# TYPE` once before its samples, label values escaped (`\\`, `\"`, `\n`).
//! Names follow <https://prometheus.io/docs/practices/naming/>: `mdrelay_` prefix, base units
//! (seconds, bytes) as a suffix, `_total` on counters; per-feed series carry
//! `feed="…",venue="…"`. Latency is a `summary` whose quantiles are over everything since start
//! (the consumer's `latency_total`); `_sum` is computed from the histogram's buckets (3
//! significant figures), so it is exact to ~0.1 % and never decreases. The text is read back by
//! [`exposition`](super::exposition).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::base::clock;
use crate::base::stats::{AcceptCounters, FeedStats, RelayCounters};
use crate::consumer::analytics::AnalyticsCounters;
use crate::consumer::thread::SharedPublished;
use crate::market::instrument::Venue;
use crate::persist::recorder::RecorderStats;
use crate::persist::writer::WriterStats;
use crate::queue::QueueMonitor;
use crate::relay::subscribers::SubscriberStats;
use crate::serve::feed_metrics::{FEED_COUNTERS, FEED_GAUGES};
use crate::serve::server::{HttpCounters, HTTP_METRICS};

pub use super::health::{health, DEFAULT_STALE_AFTER};

/// `Content-Type` of [`render_prometheus`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Quantiles reported by the latency summary.
pub const LATENCY_QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// What is reported about one feed. Plain data filled by `run.rs`.
#[derive(Debug)]
pub struct FeedMetrics {
    /// Feed name (`[feeds.NAME]`), unique among feeds; the `feed` label.
    pub name: String,
    /// Venue protocol; the `venue` label.
    pub venue: Venue,
    /// The feed's counters (collector- and consumer-written).
    pub stats: Arc<FeedStats>,
    /// Read-only view of the feed's queue.
    pub queue: QueueMonitor,
    /// The feed is stale after this long without a data message; > 0.
    /// [`DEFAULT_STALE_AFTER`] unless configured.
    pub stale_after: Duration,
}

/// Everything metrics and health read. Built once at start-up; only read afterwards.
#[derive(Debug)]
pub struct MetricsSources {
    /// Per feed, in configuration order: `feeds[i]` is `published.latency_total[i]`.
    pub feeds: Vec<FeedMetrics>,
    /// Relay-wide counters (consumer-written).
    pub relay: Arc<RelayCounters>,
    /// Acceptor counters.
    pub accept: Arc<AcceptCounters>,
    /// Latency histograms published by the consumer.
    pub published: SharedPublished,
    /// [`clock::mono_ns`] when the relay started (same clock as `last_data_mono_ns`); ≤ every
    /// later reading of that clock.
    pub started_mono_ns: u64,
    /// Bars and query snapshot counters (consumer-written).
    pub analytics: Arc<AnalyticsCounters>,
    /// CSV writer counters, when CSV is on.
    pub writer: Option<Arc<WriterStats>>,
    /// Raw recorder counters, when a feed records.
    pub recorder: Option<Arc<RecorderStats>>,
    /// The HTTP server's own counters (written by the `http` thread).
    pub http: Arc<HttpCounters>,
}

/// Seconds (as f64) from nanoseconds.
fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

// ---------------------------------------------------------------------------------------------
// Prometheus text

/// One latency summary, read from a histogram while holding the snapshot lock.
#[derive(Debug, Clone, Copy)]
struct LatencySummary {
    /// Per [`LATENCY_QUANTILES`], ns; meaningless when `count` is 0.
    quantiles_ns: [u64; LATENCY_QUANTILES.len()],
    /// Sum of the bucket midpoints of every value, ns.
    sum_ns: u128,
    /// Values recorded.
    count: u64,
}

impl LatencySummary {
    fn of(h: &Histogram<u64>) -> Self {
        let sum_ns = h
            .iter_recorded()
            .map(|v| {
                u128::from(h.median_equivalent(v.value_iterated_to()))
                    * u128::from(v.count_at_value())
            })
            .sum();
        LatencySummary {
            quantiles_ns: LATENCY_QUANTILES.map(|q| h.value_at_quantile(q)),
            sum_ns,
            count: h.len(),
        }
    }
}

/// Per-feed summaries of the latest published latency.
fn latency_summaries(src: &MetricsSources) -> Vec<LatencySummary> {
    let p = src.published.load();
    p.latency_total.iter().map(LatencySummary::of).collect()
}

/// Metric type, as written on a `# TYPE` line.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Summary,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
            Kind::Histogram => "histogram",
        }
    }
}

/// Appends exposition text to a `String`. Writing to a `String` cannot fail, so the
/// `fmt::Result`s are discarded.
struct Out<'a>(&'a mut String);

impl Out<'_> {
    /// Every series of `table`, read from `src`, each its own family.
    fn table<T>(&mut self, table: &[Metric<T>], src: &T) {
        for &(name, kind, help, value) in table {
            self.family(name, kind, help);
            self.u64(name, "", value(src));
        }
    }

    /// `# HELP` and `# TYPE` of a family; call once, before its samples.
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let o = &mut *self.0;
        o.push_str("# HELP ");
        o.push_str(name);
        o.push(' ');
        for c in help.chars() {
            match c {
                '\\' => o.push_str("\\\\"),
                '\n' => o.push_str("\\n"),
                c => o.push(c),
            }
        }
        o.push_str("\n# TYPE ");
        o.push_str(name);
        o.push(' ');
        o.push_str(kind.name());
        o.push('\n');
    }

    /// `name{labels} ` — `labels` already rendered (may be empty).
    fn start(&mut self, name: &str, labels: &str) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            self.0.push_str(labels);
            self.0.push('}');
        }
        self.0.push(' ');
    }

    fn u64(&mut self, name: &str, labels: &str, v: u64) {
        self.start(name, labels);
        let _ = writeln!(self.0, "{v}");
    }

    fn f64(&mut self, name: &str, labels: &str, v: f64) {
        self.start(name, labels);
        if v.is_nan() {
            self.0.push_str("NaN\n");
        } else if v.is_infinite() {
            self.0.push_str(if v > 0.0 { "+Inf\n" } else { "-Inf\n" });
        } else {
            // `Display` for f64 never uses exponent notation and round-trips exactly.
            let _ = writeln!(self.0, "{v}");
        }
    }
}

/// Appends `value` escaped as a label value (`\` → `\\`, `"` → `\"`, newline → `\n`).
fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `feed="…",venue="…"` for one feed.
fn feed_labels(f: &FeedMetrics) -> String {
    let mut s = String::with_capacity(32 + f.name.len());
    s.push_str("feed=\"");
    push_label_value(&mut s, &f.name);
    s.push_str("\",venue=\"");
    push_label_value(&mut s, f.venue.name());
    s.push('"');
    s
}

/// Relay-wide values: name, kind, help, value.
type RelayValue = fn(&MetricsSources) -> u64;
const RELAY: &[(&str, Kind, &str, RelayValue)] = &[
    (
        "mdrelay_relay_subscribers",
        Kind::Gauge,
        "Subscribers connected now.",
        |s| s.relay.subscribers.get(),
    ),
    (
        "mdrelay_relay_subscribers_accepted_total",
        Kind::Counter,
        "Subscribers accepted since start.",
        |s| s.relay.accepted.get(),
    ),
    (
        "mdrelay_relay_slow_disconnects_total",
        Kind::Counter,
        "Subscribers disconnected for exceeding their pending-bytes limit.",
        |s| s.relay.slow_disconnects.get(),
    ),
    (
        "mdrelay_relay_subscribers_closed_total",
        Kind::Counter,
        "Subscribers that went away (EOF, reset).",
        |s| s.relay.closed.get(),
    ),
    (
        "mdrelay_relay_refused_connections_total",
        Kind::Counter,
        "Subscriber connections refused because max_subscribers were connected or waiting.",
        |s| s.accept.refused_full.get(),
    ),
    (
        "mdrelay_relay_sent_frames_total",
        Kind::Counter,
        "Frames queued for subscribers, counted once per subscriber.",
        |s| s.relay.frames_sent.get(),
    ),
    (
        "mdrelay_relay_sent_bytes_total",
        Kind::Counter,
        "Bytes written to subscriber sockets.",
        |s| s.relay.bytes_sent.get(),
    ),
    (
        "mdrelay_relay_writes_total",
        Kind::Counter,
        "write calls on subscriber sockets.",
        |s| s.relay.writes.get(),
    ),
    (
        "mdrelay_relay_written_frames_total",
        Kind::Counter,
        "Frames written completely to subscriber sockets, counted once per subscriber (frames per write: divide by mdrelay_relay_writes_total).",
        |s| s.relay.frames_written.get(),
    ),
    (
        "mdrelay_relay_half_closed_total",
        Kind::Counter,
        "Subscriber connections whose client shut its writing side; they keep receiving.",
        |s| s.accept.half_closed.get(),
    ),
    (
        "mdrelay_relay_heartbeats_total",
        Kind::Counter,
        "Heartbeats broadcast (counted once, not per subscriber).",
        |s| s.relay.heartbeats.get(),
    ),
];

/// Appends the Prometheus text exposition of `src` to `out`, as of now.
pub fn render_prometheus(src: &MetricsSources, out: &mut String) {
    render_prometheus_at(src, clock::mono_ns(), out);
}

/// [`render_prometheus`] as of `now_mono_ns` (a [`clock::mono_ns`] reading).
pub fn render_prometheus_at(src: &MetricsSources, now_mono_ns: u64, out: &mut String) {
    let labels: Vec<String> = src.feeds.iter().map(feed_labels).collect();
    let mut o = Out(out);

    o.family(
        "mdrelay_build_info",
        Kind::Gauge,
        "Always 1; the version label names the running build.",
    );
    o.u64(
        "mdrelay_build_info",
        concat!("version=\"", env!("CARGO_PKG_VERSION"), "\""),
        1,
    );
    o.family(
        "mdrelay_uptime_seconds",
        Kind::Gauge,
        "Seconds since the relay started.",
    );
    o.f64(
        "mdrelay_uptime_seconds",
        "",
        secs(now_mono_ns.saturating_sub(src.started_mono_ns)),
    );

    for &(name, help, value) in FEED_COUNTERS {
        o.family(name, Kind::Counter, help);
        for (f, l) in src.feeds.iter().zip(&labels) {
            o.u64(name, l, value(f));
        }
    }
    // Events by kind: the kinds partition the parser's events (trade + quote + book = events).
    let name = "mdrelay_feed_events_total";
    o.family(
        name,
        Kind::Counter,
        "Market-data events produced by the venue parser, by kind.",
    );
    for (f, l) in src.feeds.iter().zip(&labels) {
        let c = &f.stats.collector;
        for (kind, v) in [
            ("trade", c.trades.get()),
            ("quote", c.quotes.get()),
            ("book", c.books.get()),
        ] {
            o.u64(name, &format!("{l},kind=\"{kind}\""), v);
        }
    }
    let name = "mdrelay_queue_blocked_seconds_total";
    o.family(
        name,
        Kind::Counter,
        "Time pushes waited for room in the feed's queue.",
    );
    for (f, l) in src.feeds.iter().zip(&labels) {
        o.f64(name, l, secs(f.queue.counters().producer.blocked_ns.get()));
    }

    for &(name, help, value) in FEED_GAUGES {
        o.family(name, Kind::Gauge, help);
        for (f, l) in src.feeds.iter().zip(&labels) {
            o.u64(name, l, value(f));
        }
    }
    let name = "mdrelay_sync_buffer_wait_seconds";
    o.family(
        name,
        Kind::Histogram,
        "Time a venue message waited in a sync buffer (Binance depth diffs held until the REST book snapshot), from its receipt to the snapshot that released it; _count is the messages that waited. Not part of mdrelay_parse_encode_seconds.",
    );
    for (f, l) in src.feeds.iter().zip(&labels) {
        let h = &f.stats.collector.sync_wait;
        let count = h.count();
        for (bound, n) in h.cumulative() {
            o.u64(
                "mdrelay_sync_buffer_wait_seconds_bucket",
                &format!("{l},le=\"{}\"", secs(bound)),
                n,
            );
        }
        o.u64(
            "mdrelay_sync_buffer_wait_seconds_bucket",
            &format!("{l},le=\"+Inf\""),
            count,
        );
        o.f64("mdrelay_sync_buffer_wait_seconds_sum", l, secs(h.sum_ns()));
        o.u64("mdrelay_sync_buffer_wait_seconds_count", l, count);
    }
    let name = "mdrelay_feed_last_data_age_seconds";
    o.family(
        name,
        Kind::Gauge,
        "Seconds since the feed's last data (non-control) message; before the first, since start.",
    );
    for (f, l) in src.feeds.iter().zip(&labels) {
        o.f64(name, l, secs(f.silent_ns(now_mono_ns, src.started_mono_ns)));
    }
    let name = "mdrelay_feed_stale";
    o.family(
        name,
        Kind::Gauge,
        "1 when the feed has had no data message for longer than its stale limit (as /health).",
    );
    for (f, l) in src.feeds.iter().zip(&labels) {
        o.u64(
            name,
            l,
            u64::from(f.is_stale(now_mono_ns, src.started_mono_ns)),
        );
    }

    for &(name, kind, help, value) in RELAY {
        o.family(name, kind, help);
        o.u64(name, "", value(src));
    }

    o.table(ANALYTICS, &src.analytics);
    if let Some(w) = &src.writer {
        o.table(WRITER, &**w);
    }
    if let Some(r) = &src.recorder {
        o.table(RECORDER, &**r);
    }
    o.table(HTTP_METRICS, &src.http);

    {
        let p = src.published.load();
        for (name, help, hs) in [
            (
                "mdrelay_parse_encode_seconds",
                "Venue frame read to frame queued: parse, normalize, encode (and the earlier frames of the same venue message), since start. Frames read from a venue message only; time in a sync buffer is mdrelay_sync_buffer_wait_seconds.",
                &p.parse_total,
            ),
            (
                "mdrelay_queue_wait_seconds",
                "Frame queued by the collector to taken by the consumer, since start.",
                &p.queue_wait_total,
            ),
        ] {
            o.family(name, Kind::Summary, help);
            for (l, h) in labels.iter().zip(hs) {
                let s = LatencySummary::of(h);
                for (q, v) in LATENCY_QUANTILES.iter().zip(s.quantiles_ns) {
                    let value = if s.count == 0 { f64::NAN } else { secs(v) };
                    o.f64(name, &format!("{l},quantile=\"{q}\""), value);
                }
                o.f64(&format!("{name}_sum"), l, s.sum_ns as f64 / 1e9);
                o.u64(&format!("{name}_count"), l, s.count);
            }
        }
        for (name, kind, help, value) in SUBSCRIBER {
            o.family(name, *kind, help);
            for s in &p.subscribers {
                o.u64(name, &format!("subscriber=\"{}\"", s.serial), value(s));
            }
        }
    }

    let name = "mdrelay_relay_latency_seconds";
    o.family(
        name,
        Kind::Summary,
        "Venue frame read to subscriber write returned, since start (quantiles to 3 significant figures).",
    );
    {
        let lat = latency_summaries(src);
        for (l, s) in labels.iter().zip(&lat) {
            for (q, v) in LATENCY_QUANTILES.iter().zip(s.quantiles_ns) {
                let value = if s.count == 0 { f64::NAN } else { secs(v) };
                o.f64(name, &format!("{l},quantile=\"{q}\""), value);
            }
            o.f64(
                "mdrelay_relay_latency_seconds_sum",
                l,
                s.sum_ns as f64 / 1e9,
            );
            o.u64("mdrelay_relay_latency_seconds_count", l, s.count);
        }
    }
}

type SubscriberMetric = (
    &'static str,
    Kind,
    &'static str,
    fn(&SubscriberStats) -> u64,
);

/// Per connected subscriber (as of the consumer's last publish, every 500 ms).
const SUBSCRIBER: &[SubscriberMetric] = &[
    (
        "mdrelay_subscriber_frames_total",
        Kind::Counter,
        "Frames queued for this subscriber since it joined.",
        |s| s.frames,
    ),
    (
        "mdrelay_subscriber_sent_bytes_total",
        Kind::Counter,
        "Bytes written to this subscriber.",
        |s| s.bytes,
    ),
    (
        "mdrelay_subscriber_pending_bytes",
        Kind::Gauge,
        "Bytes queued for this subscriber and not yet written.",
        |s| s.pending_bytes,
    ),
    (
        "mdrelay_subscriber_writes_total",
        Kind::Counter,
        "Writes that carried bytes to this subscriber.",
        |s| s.writes,
    ),
    (
        "mdrelay_subscriber_written_frames_total",
        Kind::Counter,
        "Frames written completely to this subscriber (per write: divide by its writes).",
        |s| s.frames_written,
    ),
];

/// One unlabelled series read from a counters struct: name, type, help, reader.
pub(super) type Metric<T> = (&'static str, Kind, &'static str, fn(&T) -> u64);

type AnalyticsMetric = Metric<AnalyticsCounters>;

/// Bars and query snapshot counters.
const ANALYTICS: &[AnalyticsMetric] = &[
    (
        "mdrelay_bars_closed_total",
        Kind::Counter,
        "OHLCV bars closed and relayed.",
        |a| a.bars_closed.get(),
    ),
    (
        "mdrelay_bars_late_trades_total",
        Kind::Counter,
        "Trades left out of a bar whose interval had already closed.",
        |a| a.late_trades.get(),
    ),
    (
        "mdrelay_bars_rejected_trades_total",
        Kind::Counter,
        "Trades the bar builder refused (absent price, negative size).",
        |a| a.rejected_trades.get(),
    ),
    (
        "mdrelay_query_snapshots_published_total",
        Kind::Counter,
        "Query API snapshots published by the consumer.",
        |a| a.snapshots_published.get(),
    ),
    (
        "mdrelay_query_snapshots_skipped_total",
        Kind::Counter,
        "Query API snapshot publishes skipped. Publication is lock-free, so none is: stays 0 (kept for dashboards).",
        |a| a.snapshots_skipped.get(),
    ),
    (
        "mdrelay_not_persisted_reports_total",
        Kind::Counter,
        "not_persisted status frames sent to subscribers.",
        |a| a.not_persisted_reports.get(),
    ),
];

type WriterMetric = Metric<WriterStats>;

/// CSV writer counters.
const WRITER: &[WriterMetric] = &[
    (
        "mdrelay_writer_records_sent_total",
        Kind::Counter,
        "Records queued to the CSV writer.",
        |w| w.producer.sent.get(),
    ),
    (
        "mdrelay_writer_queue_full_total",
        Kind::Counter,
        "Records not persisted because the CSV writer's queue was full.",
        |w| w.producer.full.get(),
    ),
    (
        "mdrelay_writer_rows_written_total",
        Kind::Counter,
        "CSV rows handed to the OS.",
        |w| w.writer.rows_written.get(),
    ),
    (
        "mdrelay_writer_bytes_written_total",
        Kind::Counter,
        "CSV bytes handed to the OS.",
        |w| w.writer.bytes_written.get(),
    ),
    (
        "mdrelay_writer_io_errors_total",
        Kind::Counter,
        "Failed CSV file operations (create directory, open, write, fsync).",
        |w| w.writer.io_errors.get(),
    ),
    (
        "mdrelay_writer_rows_dropped_io_total",
        Kind::Counter,
        "CSV rows lost to I/O errors.",
        |w| w.writer.dropped_io.get(),
    ),
    (
        "mdrelay_writer_torn_lines_repaired_total",
        Kind::Counter,
        "CSV files whose torn last line was cut off before appending.",
        |w| w.writer.torn_repaired.get(),
    ),
    (
        "mdrelay_writer_open_files",
        Kind::Gauge,
        "CSV files open now.",
        |w| w.writer.open_files.get(),
    ),
];

type RecorderMetric = Metric<RecorderStats>;

/// Raw recorder counters.
const RECORDER: &[RecorderMetric] = &[
    (
        "mdrelay_recorder_messages_total",
        Kind::Counter,
        "Raw messages written to recordings.",
        |r| r.written.get(),
    ),
    (
        "mdrelay_recorder_dropped_total",
        Kind::Counter,
        "Raw messages not recorded (recorder queue full).",
        |r| r.dropped.get(),
    ),
    (
        "mdrelay_recorder_skipped_total",
        Kind::Counter,
        "Raw messages left out by the hftbacktest layout (acks, errors, heartbeats).",
        |r| r.skipped.get(),
    ),
    (
        "mdrelay_recorder_io_errors_total",
        Kind::Counter,
        "Failed recording file operations.",
        |r| r.io_errors.get(),
    ),
];

#[cfg(test)]
pub(crate) mod tests {
    use crate::base::publication::Publication;

    use super::*;
    use crate::consumer::thread::Published;
    use crate::queue::{self, Backpressure, Envelope, Producer, QueueSpec, Transport, Waker};
    use crate::serve::exposition::Sample;
    use crate::wire::protocol::FrameBuf;

    /// The strict parser the rendering tests (here and in `serve::http`) check the text with.
    pub(crate) use crate::serve::exposition::parse_exposition;

    /// The value of the one sample named `name` whose labels include `labels`.
    pub(crate) fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0].value
    }

    // ---- fixtures ----------------------------------------------------------------------------

    fn env() -> Envelope {
        Envelope {
            frame: FrameBuf::from_slice(&[0]),
            t_recv_ns: 0,
            t_enqueue_ns: 0,
        }
    }

    /// A feed with a fresh queue of `capacity` frames; the producer is returned to keep the
    /// queue open and to fill it.
    pub(crate) fn feed(name: &str, venue: Venue, capacity: usize) -> (FeedMetrics, Producer) {
        let (producer, rx) = queue::bounded(
            &QueueSpec {
                name: name.into(),
                transport: Transport::Channel,
                capacity_frames: capacity,
                policy: Backpressure::DropNewest,
                block_timeout: Duration::ZERO,
            },
            Arc::new(Waker::default()),
        );
        let f = FeedMetrics {
            name: name.into(),
            venue,
            stats: Arc::new(FeedStats::default()),
            queue: rx.monitor(),
            stale_after: DEFAULT_STALE_AFTER,
        };
        // The receiver may go: the monitor keeps the channel alive for len().
        drop(rx);
        (f, producer)
    }

    pub(crate) fn sources(feeds: Vec<FeedMetrics>, started_mono_ns: u64) -> MetricsSources {
        let n = feeds.len();
        MetricsSources {
            feeds,
            relay: Arc::new(RelayCounters::default()),
            accept: Arc::new(AcceptCounters::default()),
            published: Arc::new(Publication::new(Published::new(n))),
            started_mono_ns,
            analytics: Arc::default(),
            writer: None,
            recorder: None,
            http: Arc::default(),
        }
    }

    const S: u64 = 1_000_000_000;

    // ---- rendering ---------------------------------------------------------------------------

    #[test]
    fn renders_valid_exposition_with_the_counted_values() {
        let (a, mut pa) = feed("binance-spot", Venue::Binance, 4);
        let (b, _pb) = feed("we\"ird\\name\nx", Venue::KrakenV1, 100);
        let c = &a.stats.collector;
        c.frames.add(10);
        c.bytes.add(1234);
        c.control.add(2);
        c.parse_errors.add(3);
        c.out_of_range.add(1);
        c.fast_path_fallbacks.add(2);
        c.filtered.add(4);
        c.files_failed.add(1);
        c.trades.add(3);
        c.quotes.add(2);
        c.books.add(1);
        c.events.add(6);
        c.enqueued.add(7);
        c.dropped_events.add(1);
        c.connects.inc();
        c.connected.set(1);
        c.last_data_mono_ns.set(100 * S);
        a.stats.consumer.relayed_events.add(5);
        a.stats.consumer.refused.add(2);
        for _ in 0..3 {
            pa.push(env()).unwrap();
        }
        let src = sources(vec![a, b], 10 * S);
        src.relay.subscribers.set(2);
        src.relay.bytes_sent.add(999);
        src.accept.refused_full.inc();
        {
            let mut p = src.published.write();
            p.latency_total[0].record_n(1_000, 90).unwrap();
            p.latency_total[0].record_n(1_000_000, 10).unwrap();
        }

        let mut text = String::new();
        render_prometheus_at(&src, 102 * S + S / 2, &mut text);
        let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

        let fa = [("feed", "binance-spot"), ("venue", "binance")];
        let fb = [("feed", "we\"ird\\name\nx"), ("venue", "kraken_v1")];
        let v = |name: &str, l: &[(&str, &str)]| value(&samples, name, l);
        assert_eq!(v("mdrelay_feed_frames_total", &fa), 10.0);
        assert_eq!(v("mdrelay_feed_frames_total", &fb), 0.0);
        assert_eq!(v("mdrelay_feed_received_bytes_total", &fa), 1234.0);
        assert_eq!(v("mdrelay_feed_control_messages_total", &fa), 2.0);
        assert_eq!(v("mdrelay_feed_parse_errors_total", &fa), 3.0);
        assert_eq!(v("mdrelay_feed_files_failed_total", &fa), 1.0);
        assert_eq!(v("mdrelay_feed_out_of_range_errors_total", &fa), 1.0);
        assert_eq!(v("mdrelay_feed_parse_fast_path_fallbacks_total", &fa), 2.0);
        assert_eq!(v("mdrelay_feed_filtered_total", &fa), 4.0);
        let by_kind = |k| v("mdrelay_feed_events_total", &[fa[0], ("kind", k)]);
        assert_eq!(
            (by_kind("trade"), by_kind("quote"), by_kind("book")),
            (3.0, 2.0, 1.0)
        );
        assert_eq!(v("mdrelay_feed_enqueued_frames_total", &fa), 7.0);
        assert_eq!(v("mdrelay_feed_dropped_events_total", &fa), 1.0);
        assert_eq!(v("mdrelay_feed_relayed_events_total", &fa), 5.0);
        assert_eq!(v("mdrelay_feed_refused_frames_total", &fa), 2.0);
        assert_eq!(v("mdrelay_feed_connects_total", &fa), 1.0);
        assert_eq!(v("mdrelay_feed_connected", &fa), 1.0);
        assert_eq!(v("mdrelay_feed_connected", &fb), 0.0);
        assert_eq!(v("mdrelay_feed_last_data_age_seconds", &fa), 2.5);
        // No message yet: silent since start (10 s) → 92.5 s, past the 30 s default.
        assert_eq!(v("mdrelay_feed_last_data_age_seconds", &fb), 92.5);
        assert_eq!(v("mdrelay_feed_stale", &fa), 0.0);
        assert_eq!(v("mdrelay_feed_stale", &fb), 1.0);
        assert_eq!(v("mdrelay_queue_depth_frames", &fa), 3.0);
        assert_eq!(v("mdrelay_queue_capacity_frames", &fa), 4.0);
        assert_eq!(v("mdrelay_queue_high_water_frames", &fa), 3.0);
        assert_eq!(v("mdrelay_queue_saturation_level", &fa), 0.0); // 75 %
        assert_eq!(v("mdrelay_queue_blocked_seconds_total", &fa), 0.0);
        assert_eq!(v("mdrelay_relay_subscribers", &[]), 2.0);
        assert_eq!(v("mdrelay_relay_sent_bytes_total", &[]), 999.0);
        assert_eq!(v("mdrelay_relay_refused_connections_total", &[]), 1.0);
        assert_eq!(v("mdrelay_uptime_seconds", &[]), 92.5);
        assert_eq!(v("mdrelay_build_info", &[]), 1.0);

        // Latency summary: 90 × 1 µs, 10 × 1 ms; 3 significant figures → within 0.1 %.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 1e-3;
        let q = |q| v("mdrelay_relay_latency_seconds", &[fa[0], ("quantile", q)]);
        assert!(close(q("0.5"), 1e-6), "{}", q("0.5"));
        assert!(close(q("0.9"), 1e-6), "{}", q("0.9"));
        assert!(close(q("0.99"), 1e-3), "{}", q("0.99"));
        assert!(close(q("0.999"), 1e-3), "{}", q("0.999"));
        assert_eq!(v("mdrelay_relay_latency_seconds_count", &fa), 100.0);
        let sum = v("mdrelay_relay_latency_seconds_sum", &fa);
        assert!(close(sum, 90e-6 + 10e-3), "{sum}");
        // Nothing recorded: NaN quantiles, zero sum and count.
        let qb = v(
            "mdrelay_relay_latency_seconds",
            &[fb[0], ("quantile", "0.99")],
        );
        assert!(qb.is_nan());
        assert_eq!(v("mdrelay_relay_latency_seconds_count", &fb), 0.0);
        assert_eq!(v("mdrelay_relay_latency_seconds_sum", &fb), 0.0);

        // The queue filling up shows as critical.
        pa.push(env()).unwrap();
        let mut text = String::new();
        render_prometheus_at(&src, 103 * S, &mut text);
        let samples = parse_exposition(&text).unwrap();
        assert_eq!(value(&samples, "mdrelay_queue_saturation_level", &fa), 2.0);
        assert_eq!(value(&samples, "mdrelay_queue_depth_frames", &fa), 4.0);
    }

    #[test]
    fn renders_the_last_publication_while_the_consumer_publishes_the_next() {
        let (a, _p) = feed("a", Venue::Coinbase, 8);
        let src = sources(vec![a], 0);
        let _ = src.published.write().latency_total[0].record(1_000);
        // The consumer in the middle of its next publication: a scrape neither waits nor loses
        // the latency series.
        let guard = src.published.write();
        let mut text = String::new();
        render_prometheus_at(&src, S, &mut text);
        drop(guard);
        let samples = parse_exposition(&text).unwrap();
        assert_eq!(
            value(&samples, "mdrelay_relay_latency_seconds_count", &[]),
            1.0
        );
        assert_eq!(value(&samples, "mdrelay_feed_frames_total", &[]), 0.0);
    }

    #[test]
    fn renders_no_feeds() {
        let src = sources(Vec::new(), 0);
        let mut text = String::new();
        render_prometheus(&src, &mut text);
        let samples = parse_exposition(&text).unwrap();
        assert_eq!(value(&samples, "mdrelay_relay_subscribers", &[]), 0.0);
    }

    #[test]
    fn per_subscriber_series_come_from_the_published_snapshot() {
        let src = sources(Vec::new(), 0);
        src.published.write().subscribers.push(SubscriberStats {
            serial: 3,
            frames: 10,
            bytes: 760,
            pending_bytes: 76,
            writes: 2,
            frames_written: 9,
        });
        let mut out = String::new();
        render_prometheus_at(&src, 0, &mut out);
        for line in [
            "# TYPE mdrelay_subscriber_frames_total counter",
            "mdrelay_subscriber_frames_total{subscriber=\"3\"} 10",
            "mdrelay_subscriber_sent_bytes_total{subscriber=\"3\"} 760",
            "# TYPE mdrelay_subscriber_pending_bytes gauge",
            "mdrelay_subscriber_pending_bytes{subscriber=\"3\"} 76",
            "mdrelay_subscriber_writes_total{subscriber=\"3\"} 2",
            "mdrelay_subscriber_written_frames_total{subscriber=\"3\"} 9",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
    }
}
