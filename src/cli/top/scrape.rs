//! The HTTP side of `mdrelay top`: reads a running relay's `GET /health` (JSON), `GET /metrics`
//! (Prometheus text) and `GET /v1/ticker` (JSON) and turns them into plain values for the
//! [`model`](super::model).
//!
//! The parsers are pure. [`Scraper`] runs on the `top-poller` thread and blocks on one HTTP request
//! at a time (through [`RelayHttp`]), each bounded by [`REQUEST_TIMEOUT`]. `/metrics` is read with
//! [`read_samples`], which skips any line it cannot read rather than failing the scrape.

use std::time::Duration;

use serde::Deserialize;

use crate::cli::http::{query_value, HttpError, RelayHttp};
use crate::serve::exposition::read_samples;

/// Longest one request may take, connect to last byte. Also bounds how long `top` waits for the
/// poller when it quits.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// /health

/// `GET /health` ([`crate::serve::health::health`]): 200 when every feed is healthy, 503
/// otherwise; the body has the same shape either way.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Health {
    /// `"ok"` or `"degraded"`.
    pub status: String,
    /// Seconds since the relay started.
    #[serde(default)]
    pub uptime_s: f64,
    /// Subscribers connected now.
    #[serde(default)]
    pub subscribers: u64,
    /// One entry per configured feed, in configuration order.
    #[serde(default)]
    pub feeds: Vec<FeedHealth>,
}

/// One feed of [`Health`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FeedHealth {
    /// Feed name (`[feeds.NAME]`).
    pub feed: String,
    /// Venue protocol name.
    pub venue: String,
    /// The WebSocket is up.
    pub connected: bool,
    /// Data has arrived on this connection.
    #[serde(default)]
    pub subscribed: bool,
    /// No data message for longer than `stale_after_ms`.
    #[serde(default)]
    pub stale: bool,
    /// Milliseconds since the last data message; `None` before the first.
    #[serde(default)]
    pub last_message_age_ms: Option<u64>,
    /// The feed's stale limit, ms.
    #[serde(default)]
    pub stale_after_ms: u64,
    /// `healthy`, `degraded` or `critical`.
    #[serde(default)]
    pub queue_saturation: String,
}

/// Parses a `/health` body.
pub fn parse_health(body: &str) -> Result<Health, serde_json::Error> {
    serde_json::from_str(body)
}

// ---------------------------------------------------------------------------------------------
// /metrics

/// Latency quantiles shown by `top`, as written in the `quantile` label.
pub const SHOWN_QUANTILES: [f64; 3] = [0.5, 0.99, 0.999];

/// What `top` reads of one feed's series in `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedSeries {
    /// `feed` label.
    pub feed: String,
    /// `venue` label.
    pub venue: String,
    /// `mdrelay_queue_depth_frames`; always ≤ `queue_capacity` when both are present.
    pub queue_depth: Option<u64>,
    /// `mdrelay_queue_capacity_frames`.
    pub queue_capacity: Option<u64>,
    /// `mdrelay_queue_high_water_frames`.
    pub queue_high_water: Option<u64>,
    /// `mdrelay_queue_saturation_level`: 0 healthy, 1 degraded, 2 critical.
    pub saturation_level: Option<u64>,
    /// `mdrelay_relay_latency_seconds` at each of [`SHOWN_QUANTILES`]; `None` when absent or
    /// NaN (nothing recorded yet).
    pub latency_s: [Option<f64>; 3],
    /// `mdrelay_relay_latency_seconds_count`: frames the quantiles are over.
    pub latency_count: Option<u64>,
    /// `mdrelay_feed_relayed_events_total`: a counter, for the feed's events/s.
    pub relayed_events: Option<u64>,
}

/// The per-feed view of one `/metrics` scrape, feeds in the order they first appear.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsView {
    /// One entry per `feed` label value.
    pub feeds: Vec<FeedSeries>,
}

/// Families `top` reads; everything else is skipped before parsing.
const WANTED: [&str; 7] = [
    "mdrelay_queue_depth_frames",
    "mdrelay_queue_capacity_frames",
    "mdrelay_queue_high_water_frames",
    "mdrelay_queue_saturation_level",
    "mdrelay_relay_latency_seconds",
    "mdrelay_relay_latency_seconds_count",
    "mdrelay_feed_relayed_events_total",
];

/// A non-negative finite value as an integer gauge or counter.
fn whole(v: f64) -> Option<u64> {
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

/// Reads the per-feed queue, latency and throughput series of a `/metrics` body.
pub fn parse_metrics(text: &str) -> MetricsView {
    let mut view = MetricsView::default();
    for s in read_samples(text, |n| WANTED.contains(&n)) {
        let Some(feed) = s.label("feed") else {
            continue;
        };
        let i = match view.feeds.iter().position(|f| f.feed == feed) {
            Some(i) => i,
            None => {
                view.feeds.push(FeedSeries {
                    feed: feed.to_owned(),
                    venue: s.label("venue").unwrap_or("").to_owned(),
                    ..FeedSeries::default()
                });
                view.feeds.len() - 1
            }
        };
        let f = &mut view.feeds[i];
        match s.name.as_str() {
            "mdrelay_queue_depth_frames" => f.queue_depth = whole(s.value),
            "mdrelay_queue_capacity_frames" => f.queue_capacity = whole(s.value),
            "mdrelay_queue_high_water_frames" => f.queue_high_water = whole(s.value),
            "mdrelay_queue_saturation_level" => f.saturation_level = whole(s.value),
            "mdrelay_relay_latency_seconds_count" => f.latency_count = whole(s.value),
            "mdrelay_feed_relayed_events_total" => f.relayed_events = whole(s.value),
            "mdrelay_relay_latency_seconds" => {
                let q = s.label("quantile").and_then(|q| q.parse::<f64>().ok());
                if let Some(slot) = q.and_then(|q| {
                    SHOWN_QUANTILES
                        .iter()
                        .position(|&want| (want - q).abs() < 1e-9)
                }) {
                    f.latency_s[slot] = (s.value.is_finite() && s.value >= 0.0).then_some(s.value);
                }
            }
            _ => {}
        }
    }
    view
}

// ---------------------------------------------------------------------------------------------
// /v1/ticker

/// The relay's session statistics of one instrument (`/v1/ticker` → `session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickerSession {
    /// Trades since the relay started.
    pub trade_count: u64,
    /// Sum of their sizes, fixed-point 1e-8 (exact).
    pub volume: i128,
}

/// An exact decimal string (`"12.345"`, `"-0.5"`, `"7"`) as a count of 1e-8; `None` when it is
/// not a plain decimal or has more than 8 decimal places.
pub fn parse_decimal128(s: &str) -> Option<i128> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty()
        || frac.len() > 8
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut v: i128 = int.parse().ok()?;
    v = v.checked_mul(100_000_000)?;
    if !frac.is_empty() {
        let f: i128 = frac.parse().ok()?;
        v = v.checked_add(f * 10i128.pow(8 - frac.len() as u32))?;
    }
    Some(if neg { -v } else { v })
}

/// Parses a `/v1/ticker` body's session statistics.
pub fn parse_ticker(body: &str) -> Result<TickerSession, String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let session = v.get("session").ok_or("no `session` object")?;
    let trade_count = session
        .get("trade_count")
        .and_then(serde_json::Value::as_u64)
        .ok_or("no `session.trade_count` integer")?;
    let volume = session
        .get("volume")
        .and_then(serde_json::Value::as_str)
        .and_then(parse_decimal128)
        .ok_or("no `session.volume` decimal string")?;
    Ok(TickerSession {
        trade_count,
        volume,
    })
}

// ---------------------------------------------------------------------------------------------
// The client.

/// Reads one relay's HTTP API. Blocking; one request at a time.
#[derive(Debug)]
pub struct Scraper {
    http: RelayHttp,
}

impl Scraper {
    /// A scraper of the relay listening on `addr` (`host:port`, or a URL starting `http://`).
    pub fn new(addr: &str) -> Self {
        Scraper {
            http: RelayHttp::new(addr, REQUEST_TIMEOUT),
        }
    }

    /// `http://host:port` of the relay.
    pub fn base(&self) -> &str {
        self.http.base()
    }

    /// `GET /health` (200 healthy, 503 degraded: both carry the report).
    pub fn health(&self) -> Result<Health, HttpError> {
        let a = self.http.get("/health")?.status_in(&[200, 503])?;
        parse_health(&a.body).map_err(|e| a.bad_body(e.to_string()))
    }

    /// `GET /metrics`, reduced to what `top` shows.
    pub fn metrics(&self) -> Result<MetricsView, HttpError> {
        let a = self.http.get("/metrics")?.status_in(&[200])?;
        Ok(parse_metrics(&a.body))
    }

    /// `GET /v1/ticker` of one instrument: its session statistics.
    pub fn ticker(&self, venue: &str, symbol: &str) -> Result<TickerSession, HttpError> {
        let path = format!(
            "/v1/ticker?venue={}&symbol={}",
            query_value(venue),
            query_value(symbol)
        );
        let a = self.http.get(&path)?.status_in(&[200])?;
        parse_ticker(&a.body).map_err(|detail| a.bad_body(detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_relays_health_report() {
        let body = r#"{"status":"degraded","uptime_s":41.5,"feeds":[
            {"feed":"binance","venue":"binance","connected":true,"subscribed":true,"stale":false,
             "last_message_age_ms":12,"stale_after_ms":30000,"queue_saturation":"healthy"},
            {"feed":"kraken_v1","venue":"kraken_v1","connected":false,"subscribed":false,
             "stale":true,"last_message_age_ms":null,"stale_after_ms":30000,
             "queue_saturation":"critical"}],"subscribers":2}"#;
        let h = parse_health(body).unwrap();
        assert_eq!(h.status, "degraded");
        assert_eq!(h.subscribers, 2);
        assert_eq!(h.feeds.len(), 2);
        assert_eq!(h.feeds[0].last_message_age_ms, Some(12));
        assert!(h.feeds[0].subscribed);
        assert_eq!(h.feeds[1].last_message_age_ms, None);
        assert_eq!(h.feeds[1].queue_saturation, "critical");
        assert!(parse_health("not json").is_err());
    }

    const METRICS: &str = "\
# HELP mdrelay_queue_depth_frames Frames in the feed's queue now.
# TYPE mdrelay_queue_depth_frames gauge
mdrelay_queue_depth_frames{feed=\"binance\",venue=\"binance\"} 3
mdrelay_queue_depth_frames{feed=\"kraken\",venue=\"kraken_v1\"} 0
mdrelay_queue_capacity_frames{feed=\"binance\",venue=\"binance\"} 4096
mdrelay_queue_capacity_frames{feed=\"kraken\",venue=\"kraken_v1\"} 4096
mdrelay_queue_high_water_frames{feed=\"binance\",venue=\"binance\"} 17
mdrelay_queue_saturation_level{feed=\"binance\",venue=\"binance\"} 0
mdrelay_feed_relayed_events_total{feed=\"binance\",venue=\"binance\"} 1234
mdrelay_feed_frames_total{feed=\"binance\",venue=\"binance\"} 99999
mdrelay_relay_latency_seconds{feed=\"binance\",venue=\"binance\",quantile=\"0.5\"} 0.000012
mdrelay_relay_latency_seconds{feed=\"binance\",venue=\"binance\",quantile=\"0.9\"} 0.00002
mdrelay_relay_latency_seconds{feed=\"binance\",venue=\"binance\",quantile=\"0.99\"} 0.0001
mdrelay_relay_latency_seconds{feed=\"binance\",venue=\"binance\",quantile=\"0.999\"} 0.002
mdrelay_relay_latency_seconds_sum{feed=\"binance\",venue=\"binance\"} 0.5
mdrelay_relay_latency_seconds_count{feed=\"binance\",venue=\"binance\"} 1000
mdrelay_relay_latency_seconds{feed=\"kraken\",venue=\"kraken_v1\",quantile=\"0.5\"} NaN
mdrelay_relay_latency_seconds_count{feed=\"kraken\",venue=\"kraken_v1\"} 0
mdrelay_relay_subscribers 1
";

    #[test]
    fn reads_queue_latency_and_throughput_per_feed() {
        let m = parse_metrics(METRICS);
        assert_eq!(m.feeds.len(), 2);
        let b = &m.feeds[0];
        assert_eq!((b.feed.as_str(), b.venue.as_str()), ("binance", "binance"));
        assert_eq!(b.queue_depth, Some(3));
        assert_eq!(b.queue_capacity, Some(4096));
        assert_eq!(b.queue_high_water, Some(17));
        assert_eq!(b.saturation_level, Some(0));
        assert_eq!(b.relayed_events, Some(1234));
        assert_eq!(b.latency_s, [Some(0.000012), Some(0.0001), Some(0.002)]);
        assert_eq!(b.latency_count, Some(1000));
        let k = &m.feeds[1];
        assert_eq!(k.venue, "kraken_v1");
        assert_eq!(k.latency_s, [None, None, None], "NaN: nothing recorded");
        assert_eq!(k.queue_high_water, None, "absent series stay None");
        assert_eq!(parse_metrics("garbage\n{{{\n"), MetricsView::default());
    }

    #[test]
    fn decimal_strings_are_exact() {
        for (s, want) in [
            ("0", Some(0)),
            ("12.345", Some(1_234_500_000)),
            ("-0.5", Some(-50_000_000)),
            ("0.00000001", Some(1)),
            (
                "123456789012345678901",
                Some(123_456_789_012_345_678_901 * 100_000_000),
            ),
            ("0.000000001", None),
            ("", None),
            (".5", None),
            ("1e5", None),
            ("1.2.3", None),
            ("+1", None),
        ] {
            assert_eq!(parse_decimal128(s), want, "{s:?}");
        }
    }

    #[test]
    fn reads_the_ticker_session() {
        let body = r#"{"venue":"binance","symbol":"ETHUSDT","session":{"trade_count":57,
            "volume":"12.345","vwap":"2683.8"}}"#;
        assert_eq!(
            parse_ticker(body),
            Ok(TickerSession {
                trade_count: 57,
                volume: 1_234_500_000
            })
        );
        assert!(parse_ticker(r#"{"session":{"trade_count":1,"volume":1.5}}"#).is_err());
        assert!(parse_ticker("{}").is_err());
    }

    #[test]
    fn a_refused_connection_is_a_clear_error() {
        // Bind then drop: the port is (almost certainly) closed for the request.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let s = Scraper::new(&addr.to_string());
        assert_eq!(s.base(), format!("http://{addr}"));
        let e = s.health().unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("GET http://{addr}/health: ")),
            "{e}"
        );
    }
}
