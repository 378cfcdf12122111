//! Hyperliquid WebSocket (`wss://api.hyperliquid.xyz/ws`): subscribe requests, and the parser for
//! `l2Book`, `trades`, `bbo`, `subscriptionResponse` and `pong`.
//!
//! Reference: Hyperliquid "WebSocket → Subscriptions" and "Timeouts and heartbeats" documentation.
//! Points that matter:
//! - One request per coin and channel: `{"method":"subscribe","subscription":{"type":"l2Book",
//!   "coin":"BTC"}}`; replies are `{"channel":"subscriptionResponse",…}` ([`Parsed::Control`]).
//! - `l2Book`: `{"coin","time","levels":[[bids…],[asks…]]}`, each level `{"px","sz","n"}`. Every
//!   message is the complete book (up to 20 levels a side), so each is a snapshot event that
//!   replaces the book — a level absent from the message is gone.
//! - `trades`: `side` `B` means the aggressor bought, `A` that it sold; `tid` is the trade id, `time`
//!   ms. Right after subscribing Hyperliquid sends recent trades (before the subscription) in one
//!   message; they are emitted, but a trade id already emitted on this parser (a reconnect resends
//!   them) is not emitted again: the last [`RECENT_TRADE_IDS`] ids per coin are remembered and
//!   [`HyperliquidParser::duplicate_trades`] counts what was skipped.
//! - `bbo`: `{"coin","time","bbo":[bid|null, ask|null]}` → [`Quote`] (a missing side is
//!   [`ABSENT`]).
//! - Keep-alive: the server closes a connection that has sent nothing for 60 s; the collector sends
//!   `{"method":"ping"}` every [`PING_INTERVAL`] and the `{"channel":"pong"}` reply is control.
//! - `{"channel":"error","data":"…"}` is [`ParseError::Unsupported`] holding `error: <text>`.
//!
//! One parser per feed connection, on that feed's collector thread; never blocks. Once warm a
//! message is parsed without allocating.

use std::collections::VecDeque;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::de::ErrSlot;
use super::each::{each, ms_to_ns};
use super::{fixed_field, ParseError, Parsed, Sink, Subscription, VenueParser};
use crate::market::book::L2Book;
use crate::market::event::{BookUpdate, Event, Level, Quote, Side, Status, StatusCode, Trade};
use crate::market::fixed::ABSENT;
use crate::market::instrument::Venue;

/// The channels a feed may name.
pub const CHANNELS: &[&str] = &["l2Book", "trades", "bbo"];

/// How often the collector sends `{"method":"ping"}` (the server closes after 60 s of silence).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Trade ids remembered per coin to skip the recent trades a resubscription resends.
pub const RECENT_TRADE_IDS: usize = 1024;

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    channel: &'a str,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct BookData<'a> {
    #[serde(borrow)]
    coin: &'a str,
    time: Option<u64>,
    #[serde(borrow)]
    levels: (&'a RawValue, &'a RawValue),
}

#[derive(Deserialize)]
struct HlLevel<'a> {
    #[serde(borrow)]
    px: &'a str,
    #[serde(borrow)]
    sz: &'a str,
}

#[derive(Deserialize)]
struct TradeData<'a> {
    #[serde(borrow)]
    coin: &'a str,
    #[serde(borrow)]
    side: &'a str,
    #[serde(borrow)]
    px: &'a str,
    #[serde(borrow)]
    sz: &'a str,
    time: Option<u64>,
    tid: Option<u64>,
}

#[derive(Deserialize)]
struct BboData<'a> {
    #[serde(borrow)]
    coin: &'a str,
    time: Option<u64>,
    #[serde(borrow)]
    bbo: (Option<HlLevel<'a>>, Option<HlLevel<'a>>),
}

fn level(l: &HlLevel<'_>) -> Result<Level, ParseError> {
    let size = fixed_field("sz", l.sz)?;
    if size < 0 {
        return Err(ParseError::Invalid("negative size"));
    }
    Ok(Level {
        price: fixed_field("px", l.px)?,
        size,
    })
}

/// The last trade ids of one coin: a set for lookups, a ring for the order they leave in.
#[derive(Debug, Default)]
struct RecentIds {
    set: FxHashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentIds {
    /// True (and remembered) when `id` is new.
    fn insert(&mut self, id: u64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_TRADE_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Parser state for one Hyperliquid connection.
#[derive(Default)]
pub struct HyperliquidParser {
    /// Books by coin.
    books: FxHashMap<String, (L2Book, bool)>,
    /// Recent trade ids by coin.
    recent: FxHashMap<String, RecentIds>,
    /// Trades not emitted because their id was emitted before.
    duplicates: u64,
    bids: Vec<Level>,
    asks: Vec<Level>,
    err: ErrSlot,
}

impl HyperliquidParser {
    /// A parser with no book yet.
    pub fn new() -> HyperliquidParser {
        HyperliquidParser::default()
    }

    /// Trades skipped because their `tid` had been emitted already.
    pub fn duplicate_trades(&self) -> u64 {
        self.duplicates
    }

    /// The book of `coin`, if seen.
    pub fn book(&self, coin: &str) -> Option<&L2Book> {
        self.books.get(coin).map(|b| &b.0)
    }

    fn l2book(&mut self, data: &str, sink: &mut Sink<'_>) -> Result<(), ParseError> {
        let b: BookData<'_> = serde_json::from_str(data)?;
        self.bids.clear();
        self.asks.clear();
        let (bids, asks) = (&mut self.bids, &mut self.asks);
        each::<HlLevel<'_>, _>(b.levels.0.get(), &self.err, |l| {
            bids.push(level(&l)?);
            Ok(())
        })?;
        each::<HlLevel<'_>, _>(b.levels.1.get(), &self.err, |l| {
            asks.push(level(&l)?);
            Ok(())
        })?;
        if !self.books.contains_key(b.coin) {
            self.books.insert(b.coin.to_owned(), (L2Book::new(), false));
        }
        let Some((book, was_crossed)) = self.books.get_mut(b.coin) else {
            return Ok(());
        };
        book.apply_snapshot(&self.bids, &self.asks);
        self.bids.clear();
        self.asks.clear();
        self.bids.extend(book.bids());
        self.asks.extend(book.asks());
        sink(
            Some(b.coin),
            &Event::Book(BookUpdate {
                snapshot: true,
                bids: &self.bids,
                asks: &self.asks,
                venue_sequence: None,
                exchange_ts_ns: b.time.and_then(ms_to_ns),
                may_be_bad: false,
            }),
        );
        let crossed = book.is_crossed();
        if crossed && !*was_crossed {
            sink(
                Some(b.coin),
                &Event::Status(Status {
                    code: StatusCode::CrossedBook,
                    count: 1,
                    detail: "best bid at or above best ask in a book message",
                }),
            );
        }
        *was_crossed = crossed;
        Ok(())
    }

    fn trades(&mut self, data: &str, sink: &mut Sink<'_>) -> Result<(), ParseError> {
        let (recent, dups) = (&mut self.recent, &mut self.duplicates);
        each::<TradeData<'_>, _>(data, &self.err, |t| {
            let side = match t.side {
                "B" => Side::Buy,
                "A" => Side::Sell,
                _ => return Err(ParseError::Invalid("trade side is not B/A")),
            };
            let size = fixed_field("sz", t.sz)?;
            if size < 0 {
                return Err(ParseError::Invalid("negative size"));
            }
            let trade = Trade {
                price: fixed_field("px", t.px)?,
                size,
                side,
                trade_id: t.tid,
                exchange_ts_ns: t.time.and_then(ms_to_ns),
            };
            if let Some(tid) = t.tid {
                if !recent.contains_key(t.coin) {
                    recent.insert(t.coin.to_owned(), RecentIds::default());
                }
                if let Some(r) = recent.get_mut(t.coin) {
                    if !r.insert(tid) {
                        *dups += 1;
                        return Ok(());
                    }
                }
            }
            sink(Some(t.coin), &Event::Trade(trade));
            Ok(())
        })
    }
}

impl VenueParser for HyperliquidParser {
    fn venue(&self) -> Venue {
        Venue::Hyperliquid
    }

    /// One request per channel and coin:
    /// `{"method":"subscribe","subscription":{"type":"trades","coin":"BTC"}}`.
    fn subscribe_requests(&mut self, sub: &Subscription) -> Vec<String> {
        let mut out = Vec::with_capacity(sub.channels.len() * sub.symbols.len());
        for c in &sub.channels {
            for s in &sub.symbols {
                out.push(
                    serde_json::json!({"method": "subscribe", "subscription": {"type": c, "coin": s}})
                        .to_string(),
                );
            }
        }
        out
    }

    fn app_ping(&self) -> Option<(&'static str, Duration)> {
        Some((r#"{"method":"ping"}"#, PING_INTERVAL))
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
        match m.channel {
            "subscriptionResponse" | "pong" => return Ok(Parsed::Control),
            "error" => {
                let text = m
                    .data
                    .map(|d| {
                        serde_json::from_str::<String>(d.get())
                            .unwrap_or_else(|_| d.get().to_owned())
                    })
                    .unwrap_or_default();
                return Err(ParseError::Unsupported(format!("error: {text}")));
            }
            _ => {}
        }
        let data = m
            .data
            .ok_or(ParseError::Invalid("data message without data"))?
            .get();
        match m.channel {
            "l2Book" => self.l2book(data, sink)?,
            "trades" => self.trades(data, sink)?,
            "bbo" => {
                let b: BboData<'_> = serde_json::from_str(data)?;
                let (bid_price, bid_size) = match &b.bbo.0 {
                    Some(l) => (fixed_field("px", l.px)?, fixed_field("sz", l.sz)?),
                    None => (ABSENT, ABSENT),
                };
                let (ask_price, ask_size) = match &b.bbo.1 {
                    Some(l) => (fixed_field("px", l.px)?, fixed_field("sz", l.sz)?),
                    None => (ABSENT, ABSENT),
                };
                sink(
                    Some(b.coin),
                    &Event::Quote(Quote {
                        bid_price,
                        bid_size,
                        ask_price,
                        ask_size,
                        exchange_ts_ns: b.time.and_then(ms_to_ns),
                    }),
                );
            }
            c => return Err(ParseError::Unsupported(c.to_owned())),
        }
        Ok(Parsed::Data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::testutil::fixture;
    use crate::feed::venue::testutil::{assert_refused, run};
    use crate::persist::recording;

    fn capture() -> Vec<String> {
        recording::read_all(&fixture("hyperliquid/btc_20250126.txt.gz"))
            .expect("hyperliquid capture")
            .into_iter()
            .map(|r| r.raw)
            .collect()
    }

    #[test]
    fn capture_every_book_is_a_snapshot_and_trades_are_counted() {
        let mut p = HyperliquidParser::new();
        let (mut books, mut trades) = (0, 0);
        for l in capture() {
            let (r, out) = run(&mut p, &l);
            assert_eq!(r, Ok(Parsed::Data), "{l}");
            for e in out {
                if e.starts_with("snapshot BTC bids=20 asks=20") {
                    books += 1;
                } else if e.starts_with("trade BTC") {
                    trades += 1;
                } else {
                    panic!("unexpected {e}");
                }
            }
        }
        assert_eq!(books, 46);
        let raw_trades = capture()
            .iter()
            .filter(|l| l.contains(r#""channel":"trades""#))
            .map(|l| l.matches(r#""tid":"#).count())
            .sum::<usize>();
        assert_eq!(trades, raw_trades);
        assert_eq!(p.duplicate_trades(), 0);
        assert!(!p.book("BTC").unwrap().is_crossed());
    }

    #[test]
    fn each_message_kind() {
        let lines = capture();
        let mut p = HyperliquidParser::new();
        let (r, out) = run(&mut p, &lines[0]);
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(out, ["snapshot BTC bids=20 asks=20 best=105055x3.03622/105056x6.34472 t=Some(1737918843542000000) bad=false"]);
        let (r, out) = run(
            &mut p,
            r#"{"channel":"trades","data":[{"coin":"BTC","hash":"0x84f7","px":"105056.0","side":"B","sz":"0.01853","tid":754186699313231,"time":1737918853204,"users":["0x59","0x68"]},{"coin":"BTC","hash":"0x0","px":"105055.0","side":"A","sz":"0.00035","tid":951443673304384,"time":1737918827193,"users":["0x48","0xe0"]}]}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(
            out,
            [
                "trade BTC buy 105056x0.01853 t=Some(1737918853204000000) id=Some(754186699313231)",
                "trade BTC sell 105055x0.00035 t=Some(1737918827193000000) id=Some(951443673304384)",
            ]
        );
        // bbo, as the docs describe it (a side may be null).
        let (r, out) = run(
            &mut p,
            r#"{"channel":"bbo","data":{"coin":"BTC","time":1737918853204,"bbo":[{"px":"105055.0","sz":"3.1","n":5},null]}}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(
            out,
            ["quote BTC 105055x3.1 / x t=Some(1737918853204000000)"]
        );
        for raw in [
            r#"{"channel":"subscriptionResponse","data":{"method":"subscribe","subscription":{"type":"l2Book","coin":"BTC"}}}"#,
            r#"{"channel":"pong"}"#,
        ] {
            assert_eq!(run(&mut p, raw), (Ok(Parsed::Control), vec![]), "{raw}");
        }
    }

    #[test]
    fn each_book_replaces_the_last() {
        let mut p = HyperliquidParser::new();
        let _ = run(&mut p, &capture()[0]);
        let (_, out) = run(
            &mut p,
            r#"{"channel":"l2Book","data":{"coin":"BTC","time":1,"levels":[[{"px":"100","sz":"1","n":1}],[{"px":"101","sz":"2","n":1}]]}}"#,
        );
        assert_eq!(
            out,
            ["snapshot BTC bids=1 asks=1 best=100x1/101x2 t=Some(1000000) bad=false"]
        );
        let b = p.book("BTC").unwrap();
        assert_eq!((b.bid_levels(), b.ask_levels()), (1, 1));
    }

    #[test]
    fn resent_trades_are_not_emitted_twice() {
        let lines = capture();
        let first = lines
            .iter()
            .find(|l| l.contains(r#""channel":"trades""#))
            .unwrap();
        let mut p = HyperliquidParser::new();
        let (_, a) = run(&mut p, first);
        assert!(!a.is_empty());
        p.on_disconnect(&mut |_, _| {});
        let (r, b) = run(&mut p, first);
        assert_eq!(r, Ok(Parsed::Data));
        assert!(b.is_empty(), "{b:?}");
        assert_eq!(p.duplicate_trades(), a.len() as u64);
    }

    #[test]
    fn bad_input_is_a_typed_error_without_events() {
        let cases: &[(&str, &str)] = &[
            ("", "malformed"),
            ("{}", "malformed"),
            (
                r#"{"channel":"error","data":"Invalid subscription"}"#,
                "error: Invalid subscription",
            ),
            (r#"{"channel":"l2Book"}"#, "without data"),
            (
                r#"{"channel":"l2Book","data":{"coin":"BTC","levels":[[]]}}"#,
                "malformed",
            ),
            (
                r#"{"channel":"l2Book","data":{"coin":"BTC","levels":[[{"px":"x","sz":"1","n":1}],[]]}}"#,
                "field `px`",
            ),
            (
                r#"{"channel":"trades","data":[{"coin":"BTC","side":"X","px":"1","sz":"1","time":1,"tid":1}]}"#,
                "B/A",
            ),
            (
                r#"{"channel":"trades","data":[{"coin":"BTC","side":"B","px":"1","sz":"-1","time":1,"tid":1}]}"#,
                "negative",
            ),
            (r#"{"channel":"candle","data":{}}"#, "unsupported"),
        ];
        assert_refused(HyperliquidParser::new, cases);
    }

    #[test]
    fn subscribe_requests_and_ping() {
        let mut p = HyperliquidParser::new();
        let sub = Subscription {
            symbols: vec!["BTC".into()],
            channels: vec!["l2Book".into(), "trades".into()],
            book_depth: 0,
        };
        assert_eq!(
            p.subscribe_requests(&sub),
            [
                r#"{"method":"subscribe","subscription":{"coin":"BTC","type":"l2Book"}}"#,
                r#"{"method":"subscribe","subscription":{"coin":"BTC","type":"trades"}}"#,
            ]
        );
        assert_eq!(p.app_ping(), Some((r#"{"method":"ping"}"#, PING_INTERVAL)));
    }
}
