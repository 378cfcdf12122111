//! Open interest of Binance futures, polled over REST on a thread of its own (`oi-<feed>`):
//! `GET {rest_url}/fapi/v1/openInterest?symbol=S` (USD-M) or `/dapi/v1/openInterest` (COIN-M)
//! for every symbol of the feed, once per `open_interest_interval_ms`.
//!
//! Why a thread and a hand-over rather than pushing into the feed's queue directly: the
//! collector owns each instrument's sequence numbers and InstrumentDef, and a second producer of
//! the same instruments would start a second sequence space that subscribers would read as gaps.
//! So the poller does the slow part (the HTTP round trip, ≤ the feed's connect timeout, never on
//! the collector's read loop) and parses the reply, then hands each reading to the collector over
//! a small bounded channel ([`READINGS_CAPACITY`]); the collector publishes it between two socket
//! reads, into the same queue as the feed's other events, with the next sequence number. A
//! reading that finds the channel full (the collector is reconnecting) is dropped and counted:
//! the next poll brings a newer one.
//!
//! Counters (`FeedStats::open_interest`) have this thread as their one writer. Blocks on the HTTP
//! request and sleeps between polls in steps of at most 50 ms so a stop is seen promptly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Deserialize;

use crate::base::clock;
use crate::base::stats::{FeedStats, StopFlag};
use crate::feed::venue::{fixed_field, ParseError};
use crate::market::event::OpenInterest;
use crate::market::fixed::ABSENT;
use crate::market::instrument::Venue;

/// Readings waiting for the collector, at most.
pub const READINGS_CAPACITY: usize = 256;

/// One poll's result for one symbol, for the collector to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The venue symbol (`BTCUSDT`, `BTCUSD_PERP`).
    pub symbol: String,
    /// The open interest as the venue reports it.
    pub open_interest: OpenInterest,
    /// When the reply arrived, ns since epoch.
    pub recv_wall_ns: u64,
    /// When the reply arrived, monotonic ns (the latency clock).
    pub t_recv: u64,
}

/// The collector's end: readings to publish.
pub type Readings = Receiver<Reading>;

#[derive(Deserialize)]
struct Reply<'a> {
    symbol: &'a str,
    #[serde(rename = "openInterest")]
    open_interest: &'a str,
    time: Option<u64>,
}

/// The `openInterest` REST path of `venue` (`None`: the venue has none mdrelay polls).
pub fn path(venue: Venue) -> Option<&'static str> {
    match venue {
        Venue::BinanceUsdm => Some("/fapi/v1/openInterest"),
        Venue::BinanceCoinm => Some("/dapi/v1/openInterest"),
        _ => None,
    }
}

/// Parses a Binance `openInterest` reply (`{"openInterest":"10659.509","symbol":"BTCUSDT",
/// "time":1589437530011}`; COIN-M adds `pair` and `contractType` and counts contracts). The
/// venue gives no value in the quote currency here: `value` is [`ABSENT`].
pub fn parse_reply(body: &str) -> Result<(String, OpenInterest), ParseError> {
    let r: Reply<'_> = serde_json::from_str(body)?;
    let ts = r
        .time
        .map(|ms| {
            ms.checked_mul(1_000_000)
                .ok_or(ParseError::Invalid("timestamp out of range"))
        })
        .transpose()?;
    Ok((
        r.symbol.to_owned(),
        OpenInterest {
            open_interest: fixed_field("openInterest", r.open_interest)?,
            value: ABSENT,
            exchange_ts_ns: ts,
        },
    ))
}

/// The poller of one feed; run it with [`Poller::run`] on its own thread.
pub struct Poller {
    feed: String,
    /// `{rest_url}{path}?symbol=`, ready for a symbol.
    url_prefix: String,
    symbols: Vec<String>,
    /// Time between the starts of two polling rounds; ≥ 1 s (validated).
    interval: Duration,
    http: ureq::Agent,
    tx: Sender<Reading>,
    stats: Arc<FeedStats>,
    stop: Arc<StopFlag>,
}

impl Poller {
    /// A poller of `symbols` on `venue` at `rest_url` every `interval`, each request bounded by
    /// `timeout`; `None` when the venue has no open-interest endpoint. Returns the collector's
    /// end of the hand-over channel with it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        feed: &str,
        venue: Venue,
        rest_url: &str,
        symbols: &[String],
        interval: Duration,
        timeout: Duration,
        stats: Arc<FeedStats>,
        stop: Arc<StopFlag>,
    ) -> Option<(Poller, Readings)> {
        let path = path(venue)?;
        let (tx, rx) = crossbeam_channel::bounded(READINGS_CAPACITY);
        let poller = Poller {
            feed: feed.to_owned(),
            url_prefix: format!("{}{path}?symbol=", rest_url.trim_end_matches('/')),
            symbols: symbols.iter().map(|s| s.to_ascii_uppercase()).collect(),
            interval,
            http: ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .build()
                .into(),
            tx,
            stats,
            stop,
        };
        Some((poller, rx))
    }

    /// Polls every symbol, then waits for the next round, until the stop flag is set or the
    /// collector is gone.
    pub fn run(self) {
        let c = &self.stats.open_interest;
        let mut next = Instant::now();
        while !self.stop.is_stopped() {
            for symbol in &self.symbols {
                if self.stop.is_stopped() {
                    return;
                }
                c.polls.inc();
                let body = self
                    .http
                    .get(&format!("{}{symbol}", self.url_prefix))
                    .call()
                    .and_then(|mut r| r.body_mut().read_to_string());
                let t_recv = clock::mono_ns();
                let reading = match body {
                    Ok(b) => parse_reply(&b).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match reading {
                    Ok((symbol, open_interest)) => {
                        let r = Reading {
                            symbol,
                            open_interest,
                            recv_wall_ns: clock::wall_ns_at(t_recv),
                            t_recv,
                        };
                        match self.tx.try_send(r) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => c.dropped.inc(),
                            Err(TrySendError::Disconnected(_)) => return,
                        }
                    }
                    Err(e) => {
                        c.failures.inc();
                        // Rate-limited: the first few failures are logged, the rest counted.
                        if c.failures.get() <= 10 {
                            tracing::warn!(feed = %self.feed, "open interest of {symbol}: {e}");
                        }
                    }
                }
            }
            next += self.interval;
            let now = Instant::now();
            if next < now {
                next = now;
            }
            while !self.stop.is_stopped() {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                std::thread::sleep((next - now).min(Duration::from_millis(50)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_exactly() {
        // Binance USD-M and COIN-M documentation examples.
        let (s, oi) =
            parse_reply(r#"{"openInterest":"10659.509","symbol":"BTCUSDT","time":1589437530011}"#)
                .unwrap();
        assert_eq!(s, "BTCUSDT");
        assert_eq!(
            oi,
            OpenInterest {
                open_interest: 1_065_950_900_000,
                value: ABSENT,
                exchange_ts_ns: Some(1_589_437_530_011_000_000),
            }
        );
        let (s, oi) = parse_reply(
            r#"{"symbol":"BTCUSD_PERP","pair":"BTCUSD","openInterest":"15004","contractType":"PERPETUAL","time":1591261042378}"#,
        )
        .unwrap();
        assert_eq!(
            (s.as_str(), oi.open_interest),
            ("BTCUSD_PERP", 1_500_400_000_000)
        );
        assert!(parse_reply(r#"{"code":-1121,"msg":"Invalid symbol."}"#).is_err());
        assert!(parse_reply(r#"{"symbol":"X","openInterest":"1e999"}"#)
            .unwrap_err()
            .is_out_of_range());
        assert_eq!(path(Venue::Binance), None);
    }
}
