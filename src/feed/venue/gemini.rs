//! Gemini market data v2 (`wss://api.gemini.com/v2/marketdata`): the `l2` subscription request,
//! and the parser for `l2_updates`, `trade`, `heartbeat` and auction messages.
//!
//! Reference: Gemini "Market Data Version 2" documentation. Points that matter:
//! - One `{"type":"subscribe","subscriptions":[{"name":"l2","symbols":[…]}]}` request; every
//!   symbol then gets `l2_updates` (`changes`: `["buy"|"sell", price, quantity]`, quantity 0
//!   removes) and live `trade` messages (`side` is the taker's side, `event_id` the trade id,
//!   `timestamp` in ms).
//! - The first `l2_updates` of a symbol after subscribing is its whole book, and it also carries
//!   `trades`: the last 50 trades *before* the subscription (and `auction_events`). Those trades
//!   are history: they are never emitted as trades (a consumer would count them as new volume,
//!   twice after a reconnect); [`GeminiParser::past_trades_skipped`] counts them.
//! - There is no sequence number, so a book gap cannot be seen in-band. After a reconnect the
//!   first `l2_updates` of each symbol *replaces* the book (a snapshot event) rather than adding to
//!   the old one, so no level of the previous connection survives. A message is taken as the whole
//!   book when it is the symbol's first since the parser was created or since the last
//!   disconnect, or when it carries `trades` (only the initial message does) — the latter also
//!   makes `mdrelay decode` of a recording that spans a reconnect start the book afresh.
//! - `heartbeat` and the auction messages are [`Parsed::Control`]. An error reply
//!   (`{"result":"error","reason":…,"message":…}`) is [`ParseError::Unsupported`] holding
//!   `error: <reason> <message>`.
//!
//! One parser per feed connection, on that feed's collector thread; never blocks. Once warm a
//! message is parsed without allocating.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::de::ErrSlot;
use super::each::{each, ms_to_ns};
use super::{fixed_field, ParseError, Parsed, Sink, Subscription, VenueParser};
use crate::market::book::L2Book;
use crate::market::event::{BookUpdate, Event, Level, Side, Status, StatusCode, Trade};
use crate::market::instrument::Venue;

/// The channels a feed may name: `l2` (books and trades of each symbol).
pub const CHANNELS: &[&str] = &["l2"];

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a str>,
    #[serde(borrow)]
    symbol: Option<&'a str>,
    #[serde(borrow)]
    changes: Option<&'a RawValue>,
    #[serde(borrow)]
    trades: Option<&'a RawValue>,
    event_id: Option<u64>,
    timestamp: Option<u64>,
    #[serde(borrow)]
    price: Option<&'a str>,
    #[serde(borrow)]
    quantity: Option<&'a str>,
    #[serde(borrow)]
    side: Option<&'a str>,
    #[serde(borrow)]
    result: Option<&'a str>,
    #[serde(borrow)]
    reason: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<std::borrow::Cow<'a, str>>,
}

/// The book of one symbol.
#[derive(Debug, Default)]
struct GeminiBook {
    /// Levels; replaced by every initial message.
    book: L2Book,
    /// Crossed after the last message (a status goes out on the edge).
    crossed: bool,
}

/// Parser state for one Gemini connection.
#[derive(Default)]
pub struct GeminiParser {
    /// Books by symbol.
    books: FxHashMap<String, GeminiBook>,
    /// Symbols whose initial message arrived since the parser was created or last disconnected.
    seen: FxHashSet<String>,
    /// Bid changes of the message being parsed.
    bids: Vec<Level>,
    /// Ask changes of the message being parsed.
    asks: Vec<Level>,
    /// Sorted snapshot levels of the event being emitted.
    out_bids: Vec<Level>,
    /// Sorted snapshot levels of the event being emitted.
    out_asks: Vec<Level>,
    /// Past trades carried by initial messages, not emitted.
    past_trades: u64,
    err: ErrSlot,
}

impl GeminiParser {
    /// A parser that has seen no symbol.
    pub fn new() -> GeminiParser {
        GeminiParser::default()
    }

    /// Past trades of initial `l2_updates` messages, skipped (never emitted as trades).
    pub fn past_trades_skipped(&self) -> u64 {
        self.past_trades
    }

    /// The local book of `symbol`, if seen.
    pub fn book(&self, symbol: &str) -> Option<&L2Book> {
        self.books.get(symbol).map(|b| &b.book)
    }

    fn l2(
        &mut self,
        symbol: &str,
        changes: &str,
        past: Option<&RawValue>,
        sink: &mut Sink<'_>,
    ) -> Result<(), ParseError> {
        self.bids.clear();
        self.asks.clear();
        let (bids, asks) = (&mut self.bids, &mut self.asks);
        each::<(&str, &str, &str), _>(changes, &self.err, |(side, p, q)| {
            let level = Level {
                price: fixed_field("price", p)?,
                size: fixed_field("quantity", q)?,
            };
            if level.size < 0 {
                return Err(ParseError::Invalid("negative size"));
            }
            match side {
                "buy" => bids.push(level),
                "sell" => asks.push(level),
                _ => return Err(ParseError::Invalid("change side is not buy/sell")),
            }
            Ok(())
        })?;
        if let Some(t) = past {
            let mut n = 0u64;
            each::<serde::de::IgnoredAny, _>(t.get(), &self.err, |_| {
                n += 1;
                Ok(())
            })?;
            self.past_trades += n;
        }
        let snapshot = past.is_some() || !self.seen.contains(symbol);
        if snapshot && !self.seen.contains(symbol) {
            self.seen.insert(symbol.to_owned());
        }
        if !self.books.contains_key(symbol) {
            self.books.insert(symbol.to_owned(), GeminiBook::default());
        }
        let Some(st) = self.books.get_mut(symbol) else {
            return Ok(());
        };
        let (bids, asks) = if snapshot {
            st.book.apply_snapshot(&self.bids, &self.asks);
            self.out_bids.clear();
            self.out_asks.clear();
            self.out_bids.extend(st.book.bids());
            self.out_asks.extend(st.book.asks());
            (&self.out_bids, &self.out_asks)
        } else {
            st.book.apply_delta(&self.bids, &self.asks);
            (&self.bids, &self.asks)
        };
        sink(
            Some(symbol),
            &Event::Book(BookUpdate {
                snapshot,
                bids,
                asks,
                venue_sequence: None,
                exchange_ts_ns: None,
                may_be_bad: false,
            }),
        );
        let crossed = st.book.is_crossed();
        if crossed && !st.crossed {
            sink(
                Some(symbol),
                &Event::Status(Status {
                    code: StatusCode::CrossedBook,
                    count: 1,
                    detail: "best bid at or above best ask after a book message",
                }),
            );
        }
        st.crossed = crossed;
        Ok(())
    }
}

impl VenueParser for GeminiParser {
    fn venue(&self) -> Venue {
        Venue::Gemini
    }

    /// `{"type":"subscribe","subscriptions":[{"name":"l2","symbols":[…]}]}`.
    fn subscribe_requests(&mut self, sub: &Subscription) -> Vec<String> {
        let subs: Vec<serde_json::Value> = sub
            .channels
            .iter()
            .map(|c| serde_json::json!({"name": c, "symbols": sub.symbols}))
            .collect();
        vec![serde_json::json!({"type": "subscribe", "subscriptions": subs}).to_string()]
    }

    fn on_disconnect(&mut self, sink: &mut Sink<'_>) {
        let _ = sink;
        // The next connection's first message of each symbol replaces its book.
        self.seen.clear();
    }

    fn parse(
        &mut self,
        raw: &str,
        recv_ts_ns: u64,
        sink: &mut Sink<'_>,
    ) -> Result<Parsed, ParseError> {
        let _ = recv_ts_ns;
        self.err.clear();
        let m: Msg<'_> = serde_json::from_str(raw)?;
        if m.result == Some("error") {
            return Err(ParseError::Unsupported(format!(
                "error: {} {}",
                m.reason.as_deref().unwrap_or(""),
                m.message.as_deref().unwrap_or("")
            )));
        }
        match m.kind {
            Some("l2_updates") => {
                let symbol = m
                    .symbol
                    .ok_or(ParseError::Invalid("l2_updates without symbol"))?;
                let changes = m
                    .changes
                    .ok_or(ParseError::Invalid("l2_updates without changes"))?;
                self.l2(symbol, changes.get(), m.trades, sink)?;
                Ok(Parsed::Data)
            }
            Some("trade") => {
                let (Some(symbol), Some(p), Some(q), Some(side)) =
                    (m.symbol, m.price, m.quantity, m.side)
                else {
                    return Err(ParseError::Invalid(
                        "trade without symbol, price, quantity or side",
                    ));
                };
                let side = match side {
                    "buy" => Side::Buy,
                    "sell" => Side::Sell,
                    _ => return Err(ParseError::Invalid("trade side is not buy/sell")),
                };
                let size = fixed_field("quantity", q)?;
                if size < 0 {
                    return Err(ParseError::Invalid("negative size"));
                }
                let trade = Trade {
                    price: fixed_field("price", p)?,
                    size,
                    side,
                    trade_id: m.event_id,
                    exchange_ts_ns: m.timestamp.and_then(ms_to_ns),
                };
                sink(Some(symbol), &Event::Trade(trade));
                Ok(Parsed::Data)
            }
            Some("heartbeat" | "auction_open" | "auction_indicative" | "auction_result") => {
                Ok(Parsed::Control)
            }
            Some(k) => Err(ParseError::Unsupported(k.to_owned())),
            None => Err(ParseError::Invalid("message without type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::testutil::fixture;
    use crate::feed::venue::testutil::{assert_refused, run};
    use crate::persist::recording;

    fn capture() -> Vec<String> {
        recording::read_all(&fixture("gemini/l2_trades_20210624.txt.gz"))
            .expect("gemini capture")
            .into_iter()
            .map(|r| r.raw)
            .collect()
    }

    #[test]
    fn capture_past_trades_never_emitted_live_trades_are() {
        let lines = capture();
        let mut p = GeminiParser::new();
        let (mut trades, mut snapshots, mut updates, mut control) = (0, 0, 0, 0);
        for l in &lines {
            let (r, out) = run(&mut p, l);
            match r {
                Ok(Parsed::Control) => control += 1,
                Ok(Parsed::Data) => {}
                Ok(Parsed::Filtered) => panic!("nothing is filtered on gemini: {l}"),
                Err(e) => panic!("{e}: {l}"),
            }
            for e in &out {
                match e.split(' ').next() {
                    Some("trade") => trades += 1,
                    Some("snapshot") => snapshots += 1,
                    Some("update") => updates += 1,
                    _ => panic!("unexpected event {e}"),
                }
            }
        }
        // 16 live `trade` messages; 5 × 50 past trades skipped.
        assert_eq!(trades, 16);
        assert_eq!(p.past_trades_skipped(), 250);
        assert_eq!(snapshots, 5, "one whole book per symbol");
        assert_eq!(snapshots + updates + trades + control, lines.len());
        for s in ["FILUSD", "ANKRUSD", "ETHEUR", "ALCXUSD", "ZECLTC"] {
            let b = p.book(s).unwrap();
            assert!(
                !b.is_crossed() && b.bid_levels() > 0 && b.ask_levels() > 0,
                "{s}"
            );
        }
    }

    #[test]
    fn each_message_kind() {
        let lines = capture();
        let cases: &[(usize, Parsed, &[&str])] = &[
            (0, Parsed::Data, &["snapshot ALCXUSD bids=133 asks=26 best=302.75x0.00001/303.05x8.12974 t=None bad=false"]),
            (5, Parsed::Data, &["update ALCXUSD bids=[301.66x11.538318,302.16x3.296522,301.96x0,302.33x0] asks=[303.55x0,303.83x11.537827,304.12x0,303.39x3.296031] t=None bad=false"]),
            (6, Parsed::Control, &[]),
        ];
        let mut p = GeminiParser::new();
        for (i, parsed, want) in cases {
            let (r, out) = run(&mut p, &lines[*i]);
            assert_eq!(r, Ok(*parsed), "line {i}");
            assert_eq!(out, *want, "line {i}");
        }
        let (r, out) = run(
            &mut p,
            r#"{"type":"trade","symbol":"ANKRUSD","event_id":45465818387,"timestamp":1624493670759,"price":"0.07946","quantity":"1020.482111","side":"buy"}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(out, ["trade ANKRUSD buy 0.07946x1020.482111 t=Some(1624493670759000000) id=Some(45465818387)"]);
        let (r, out) = run(
            &mut p,
            r#"{"type":"trade","symbol":"ANKRUSD","event_id":2,"timestamp":1,"price":"1","quantity":"2","side":"sell"}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(out, ["trade ANKRUSD sell 1x2 t=Some(1000000) id=Some(2)"]);
    }

    #[test]
    fn reconnect_replaces_the_book_no_ghost_level() {
        let lines = capture();
        let mut p = GeminiParser::new();
        let _ = run(&mut p, &lines[0]);
        // A level only the first connection knew.
        let ghost = r#"{"type":"l2_updates","symbol":"ALCXUSD","changes":[["sell","303.01","9"]]}"#;
        let (_, out) = run(&mut p, ghost);
        assert!(out[0].starts_with("update"), "{out:?}");
        assert_eq!(
            p.book("ALCXUSD").unwrap().best_ask().map(|l| l.price),
            Some(30_301_000_000)
        );
        p.on_disconnect(&mut |_, _| {});
        // The new connection's first message, even without `trades`, replaces the book.
        let fresh = r#"{"type":"l2_updates","symbol":"ALCXUSD","changes":[["buy","302.00","1"],["sell","303.05","2"]]}"#;
        let (_, out) = run(&mut p, fresh);
        assert_eq!(
            out,
            ["snapshot ALCXUSD bids=1 asks=1 best=302x1/303.05x2 t=None bad=false"]
        );
        let b = p.book("ALCXUSD").unwrap();
        assert_eq!((b.bid_levels(), b.ask_levels()), (1, 1));
        assert_eq!(
            b.size_at(crate::market::book::BookSide::Ask, 30_301_000_000),
            None
        );
        // In a recording (no disconnect call), the initial message's `trades` marks the reset.
        let _ = run(&mut p, ghost);
        let (_, out) = run(&mut p, &lines[0]);
        assert!(
            out[0].starts_with("snapshot ALCXUSD bids=133 asks=26"),
            "{out:?}"
        );
        assert_eq!(
            p.book("ALCXUSD")
                .unwrap()
                .size_at(crate::market::book::BookSide::Ask, 30_301_000_000),
            None
        );
    }

    #[test]
    fn bad_input_is_a_typed_error_without_events() {
        let cases: &[(&str, &str)] = &[
            ("", "malformed"),
            ("{}", "without type"),
            (
                r#"{"result":"error","reason":"InvalidJson","message":"bad"}"#,
                "error: InvalidJson bad",
            ),
            (r#"{"type":"l2_updates","changes":[]}"#, "without symbol"),
            (r#"{"type":"l2_updates","symbol":"A"}"#, "without changes"),
            (
                r#"{"type":"l2_updates","symbol":"A","changes":[["hold","1","1"]]}"#,
                "buy/sell",
            ),
            (
                r#"{"type":"l2_updates","symbol":"A","changes":[["buy","1","-1"]]}"#,
                "negative",
            ),
            (
                r#"{"type":"l2_updates","symbol":"A","changes":[["buy","x","1"]]}"#,
                "field `price`",
            ),
            (
                r#"{"type":"trade","symbol":"A","price":"1","quantity":"1"}"#,
                "without symbol, price",
            ),
            (
                r#"{"type":"trade","symbol":"A","price":"1","quantity":"1","side":"up"}"#,
                "buy/sell",
            ),
            (
                r#"{"type":"candles_1m_updates","symbol":"A"}"#,
                "unsupported",
            ),
        ];
        assert_refused(GeminiParser::new, cases);
    }

    #[test]
    fn subscribe_request_shape() {
        let mut p = GeminiParser::new();
        let sub = Subscription {
            symbols: vec!["BTCUSD".into(), "ETHUSD".into()],
            channels: vec!["l2".into()],
            book_depth: 0,
        };
        assert_eq!(
            p.subscribe_requests(&sub),
            [
                r#"{"subscriptions":[{"name":"l2","symbols":["BTCUSD","ETHUSD"]}],"type":"subscribe"}"#
            ]
        );
        assert_eq!(p.app_ping(), None);
    }
}
