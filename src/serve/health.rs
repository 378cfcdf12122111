//! The health policy: when a feed is stale, and the `/health` verdict (HTTP status and JSON) over
//! every feed. [`metrics`](super::metrics) reports the same staleness as `mdrelay_feed_stale`.
//!
//! Runs on the `http` thread (see [`crate::serve::http`]), or on any thread that asks; it only
//! reads single-writer atomics with relaxed loads and never blocks.

use std::time::Duration;

use serde::Serialize;

use crate::serve::metrics::{FeedMetrics, MetricsSources};

/// Stale limit for a feed when configuration gives none: no data message for 30 s. Long enough
/// for a quiet trades-only subscription on a liquid venue, short enough that a silently dead
/// connection (TCP up, no data) shows within a minute. Feeds of illiquid instruments want more.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(30);

impl FeedMetrics {
    /// Nanoseconds since the feed's last data message at `now_mono_ns`; `None` before the first.
    pub fn last_data_age_ns(&self, now_mono_ns: u64) -> Option<u64> {
        match self.stats.collector.last_data_mono_ns.get() {
            0 => None,
            t => Some(now_mono_ns.saturating_sub(t)),
        }
    }

    /// How long the feed has gone without data at `now_mono_ns`: since its last data message,
    /// or since `started_mono_ns` before the first one.
    pub fn silent_ns(&self, now_mono_ns: u64, started_mono_ns: u64) -> u64 {
        self.last_data_age_ns(now_mono_ns)
            .unwrap_or_else(|| now_mono_ns.saturating_sub(started_mono_ns))
    }

    /// Stale: silent for longer than `stale_after`.
    pub fn is_stale(&self, now_mono_ns: u64, started_mono_ns: u64) -> bool {
        u128::from(self.silent_ns(now_mono_ns, started_mono_ns)) > self.stale_after.as_nanos()
    }

    /// True while the feed's WebSocket is up.
    pub fn is_connected(&self) -> bool {
        self.stats.collector.connected.get() != 0
    }
}

#[derive(Serialize)]
struct HealthReport<'a> {
    status: &'static str,
    uptime_s: f64,
    feeds: Vec<FeedHealth<'a>>,
    subscribers: u64,
}

#[derive(Serialize)]
struct FeedHealth<'a> {
    feed: &'a str,
    venue: &'static str,
    connected: bool,
    /// The current connection has delivered market data.
    subscribed: bool,
    stale: bool,
    /// `null` before the first data message.
    last_message_age_ms: Option<u64>,
    stale_after_ms: u64,
    queue_saturation: &'static str,
}

/// The health verdict as of `now_mono_ns` (a [`crate::base::clock::mono_ns`] reading): HTTP
/// status and JSON.
///
/// 200 and `"status":"ok"` when every feed is connected and not stale (vacuously with no
/// feeds); otherwise 503 and `"status":"degraded"`. A feed is stale when it has gone longer
/// than its `stale_after` without a data message, counting from start before the first one.
/// Queue saturation is reported but does not fail the check: a saturated queue still relays.
pub fn health(src: &MetricsSources, now_mono_ns: u64) -> (u16, String) {
    let feeds: Vec<FeedHealth<'_>> = src
        .feeds
        .iter()
        .map(|f| FeedHealth {
            feed: &f.name,
            venue: f.venue.name(),
            connected: f.is_connected(),
            subscribed: f.stats.collector.subscribed.get() == 1,
            stale: f.is_stale(now_mono_ns, src.started_mono_ns),
            last_message_age_ms: f.last_data_age_ns(now_mono_ns).map(|ns| ns / 1_000_000),
            stale_after_ms: u64::try_from(f.stale_after.as_millis()).unwrap_or(u64::MAX),
            queue_saturation: f.queue.counters().saturation().name(),
        })
        .collect();
    let ok = feeds.iter().all(|f| f.connected && !f.stale);
    let report = HealthReport {
        status: if ok { "ok" } else { "degraded" },
        uptime_s: (now_mono_ns.saturating_sub(src.started_mono_ns) / 1_000_000) as f64 / 1e3,
        feeds,
        subscribers: src.relay.subscribers.get(),
    };
    let body = serde_json::to_string(&report)
        .unwrap_or_else(|e| format!("{{\"status\":\"degraded\",\"error\":\"{e}\"}}"));
    (if ok { 200 } else { 503 }, body)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::market::instrument::Venue;
    use crate::serve::metrics::tests::{feed, sources};

    const S: u64 = 1_000_000_000;

    fn health_json(src: &MetricsSources, now: u64) -> (u16, serde_json::Value) {
        let (status, body) = health(src, now);
        (status, serde_json::from_str(&body).unwrap())
    }

    #[test]
    fn healthy_when_every_feed_is_connected_and_fresh() {
        let (a, _p) = feed("a", Venue::Binance, 8);
        a.stats.collector.connected.set(1);
        a.stats.collector.last_data_mono_ns.set(50 * S);
        let src = sources(vec![a], 10 * S);
        src.relay.subscribers.set(3);
        let (status, j) = health_json(&src, 51 * S);
        assert_eq!(status, 200);
        assert_eq!(j["status"], "ok");
        assert_eq!(j["uptime_s"], 41.0);
        assert_eq!(j["subscribers"], 3);
        let f = &j["feeds"][0];
        assert_eq!(f["feed"], "a");
        assert_eq!(f["venue"], "binance");
        assert_eq!(f["connected"], true);
        assert_eq!(f["stale"], false);
        assert_eq!(f["last_message_age_ms"], 1000);
        assert_eq!(f["stale_after_ms"], 30_000);
        assert_eq!(f["queue_saturation"], "healthy");
        assert_eq!(f["subscribed"], false, "no data on this connection yet");
    }

    #[test]
    fn stale_after_its_limit_without_data() {
        let (mut a, _p) = feed("a", Venue::Binance, 8);
        a.stale_after = Duration::from_secs(5);
        a.stats.collector.connected.set(1);
        a.stats.collector.last_data_mono_ns.set(100 * S);
        let src = sources(vec![a], 0);
        // Exactly at the limit: not yet stale.
        assert_eq!(health_json(&src, 105 * S).0, 200);
        let (status, j) = health_json(&src, 105 * S + 1);
        assert_eq!(status, 503);
        assert_eq!(j["status"], "degraded");
        assert_eq!(j["feeds"][0]["stale"], true);
        assert_eq!(j["feeds"][0]["connected"], true);
        assert_eq!(j["feeds"][0]["last_message_age_ms"], 5000);
    }

    #[test]
    fn before_the_first_message_stale_counts_from_start() {
        let (mut a, _p) = feed("a", Venue::Kraken, 8);
        a.stale_after = Duration::from_secs(10);
        a.stats.collector.connected.set(1);
        let src = sources(vec![a], 1000 * S);
        let (status, j) = health_json(&src, 1009 * S);
        assert_eq!(status, 200);
        assert!(j["feeds"][0]["last_message_age_ms"].is_null());
        let (status, j) = health_json(&src, 1011 * S);
        assert_eq!(status, 503);
        assert_eq!(j["feeds"][0]["stale"], true);
        assert!(j["feeds"][0]["last_message_age_ms"].is_null());
    }

    #[test]
    fn degraded_when_a_feed_is_disconnected() {
        let (a, _pa) = feed("a", Venue::Binance, 8);
        let (b, _pb) = feed("b", Venue::Coinbase, 8);
        for f in [&a, &b] {
            f.stats.collector.last_data_mono_ns.set(5 * S);
        }
        a.stats.collector.connected.set(1);
        let src = sources(vec![a, b], 0);
        let (status, j) = health_json(&src, 6 * S);
        assert_eq!(status, 503);
        assert_eq!(j["status"], "degraded");
        assert_eq!(j["feeds"][0]["connected"], true);
        assert_eq!(j["feeds"][1]["connected"], false);
        assert_eq!(j["feeds"][1]["stale"], false);
    }

    #[test]
    fn a_clock_reading_older_than_the_last_message_is_age_zero() {
        let (a, _p) = feed("a", Venue::Binance, 8);
        a.stats.collector.connected.set(1);
        a.stats.collector.last_data_mono_ns.set(10 * S);
        let src = sources(vec![a], 0);
        let (status, j) = health_json(&src, 9 * S);
        assert_eq!(status, 200);
        assert_eq!(j["feeds"][0]["last_message_age_ms"], 0);
    }
}
