//! Bybit WebSocket v5 public streams (`wss://stream.bybit.com/v5/public/{spot,linear,inverse}`,
//! one feed per category): subscribe requests, and the parser for `publicTrade`, `orderbook.N`,
//! `tickers` and `allLiquidation`.
//!
//! Reference: Bybit "V5 API → WebSocket Stream" documentation (Connect, Orderbook, Trade, Ticker,
//! All Liquidation). Points that matter:
//! - Requests `{"op":"subscribe","args":[topic, …]}` (at most [`ARGS_PER_REQUEST`] topics each);
//!   replies `{"success":true,"ret_msg":"","op":"subscribe",…}` and the pong are
//!   [`Parsed::Control`]; a refused request (`"success":false`) is [`ParseError::Unsupported`]
//!   holding `error: <ret_msg>`.
//! - `publicTrade.{symbol}`: `S` is the taker's side, `i` the trade id (numeric on spot, a UUID on
//!   derivatives: only a numeric id is carried), `T` ms. `BT: true` marks a block trade: emitted
//!   like every trade and counted (`block_trades` of [`BybitParser::stats`]).
//! - `orderbook.{depth}.{symbol}` (depth 1, 50, 200 or 1000; from `book_depth`, default 50): a
//!   `snapshot` replaces the book, a `delta` changes it level by level (size 0 removes). The update
//!   id `u` must grow by exactly one from delta to delta; any other step is a gap: the delta is
//!   still applied and emitted flagged `may_be_bad`, `Gap` (count: ids missed) and `Resync`
//!   statuses go out for that symbol, and an unsubscribe + subscribe of its book topic is queued
//!   (once per gap) — the other symbols continue. A message with `u = 1` means Bybit restarted the
//!   service: it replaces the book whatever its type. Depth 1 resends a snapshot with the same `u`
//!   when nothing changed; a snapshot is never a gap. The book is kept at the subscribed depth;
//!   levels pushed beyond it are removed explicitly in the emitted update.
//! - `tickers.{symbol}`: linear/inverse send a snapshot, then deltas carrying only the fields that
//!   changed; the parser merges them per symbol and emits a [`Quote`] when a best bid/ask field
//!   came in the message, a [`Mark`] (mark, index, funding rate, next funding time) when one of
//!   those came, and an [`OpenInterest`] when `openInterest`/`openInterestValue` came. Spot tickers
//!   carry none of these (no events, still data).
//! - `allLiquidation.{symbol}`: `S` is the side of the *position* (`Buy`: a long was liquidated),
//!   so the liquidation order's side is the opposite; `v` is the executed size and `p` the
//!   bankruptcy price: a [`Liquidation`] with status `Filled`.
//! - Keep-alive: Bybit recommends `{"op":"ping"}` every 20 s ([`VenueParser::app_ping`]).
//!
//! One parser per feed connection, on that feed's collector thread; never blocks. Once warm a
//! message is parsed without allocating, except on the error and resync paths.

use std::fmt::Write as _;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::de::ErrSlot;
use super::each::{each, ms_str_to_ns, ms_to_ns, Row};
use super::{fixed_field, ParseError, Parsed, Sink, Subscription, VenueParser};
use crate::market::book::{BookSide, L2Book};
use crate::market::event::{
    BookUpdate, Event, Level, Liquidation, LiquidationStatus, Mark, OpenInterest, Quote, Side,
    Status, StatusCode, Trade,
};
use crate::market::fixed::{parse_rate, ABSENT};
use crate::market::instrument::Venue;

/// The channels a feed may name; `orderbook` takes its depth from `book_depth`.
pub const CHANNELS: &[&str] = &["publicTrade", "orderbook", "tickers", "allLiquidation"];

/// Book depths Bybit serves; `book_depth` is rounded up to one of them (at most 1000).
pub const DEPTHS: [u32; 4] = [1, 50, 200, 1000];

/// Book depth when a feed names none.
pub const DEFAULT_BOOK_DEPTH: u32 = 50;

/// Topics per subscribe request (Bybit's limit on spot).
pub const ARGS_PER_REQUEST: usize = 10;

/// How often the collector sends `{"op":"ping"}`.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// The Bybit depth serving `book_depth` levels.
pub fn depth_for(book_depth: u32) -> u32 {
    if book_depth == 0 {
        return DEFAULT_BOOK_DEPTH;
    }
    DEPTHS
        .into_iter()
        .find(|d| *d >= book_depth)
        .unwrap_or(DEPTHS[DEPTHS.len() - 1])
}

/// `{"op":"<op>","args":[…]}`.
pub fn op_request(op: &str, topics: &[String]) -> String {
    serde_json::json!({"op": op, "args": topics}).to_string()
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    topic: Option<&'a str>,
    #[serde(borrow, rename = "type")]
    kind: Option<&'a str>,
    ts: Option<u64>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    op: Option<&'a str>,
    success: Option<bool>,
    #[serde(borrow)]
    ret_msg: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TradeData<'a> {
    #[serde(rename = "T")]
    time: Option<u64>,
    #[serde(borrow)]
    s: &'a str,
    #[serde(borrow, rename = "S")]
    side: &'a str,
    #[serde(borrow)]
    v: &'a str,
    #[serde(borrow)]
    p: &'a str,
    #[serde(borrow)]
    i: Option<&'a str>,
    #[serde(rename = "BT", default)]
    block: bool,
}

#[derive(Deserialize)]
struct BookData<'a> {
    #[serde(borrow)]
    s: &'a str,
    #[serde(borrow)]
    b: &'a RawValue,
    #[serde(borrow)]
    a: &'a RawValue,
    u: u64,
}

#[derive(Deserialize)]
struct TickerData<'a> {
    #[serde(borrow)]
    symbol: &'a str,
    #[serde(borrow, rename = "bid1Price")]
    bid_px: Option<&'a str>,
    #[serde(borrow, rename = "bid1Size")]
    bid_sz: Option<&'a str>,
    #[serde(borrow, rename = "ask1Price")]
    ask_px: Option<&'a str>,
    #[serde(borrow, rename = "ask1Size")]
    ask_sz: Option<&'a str>,
    #[serde(borrow, rename = "markPrice")]
    mark: Option<&'a str>,
    #[serde(borrow, rename = "indexPrice")]
    index: Option<&'a str>,
    #[serde(borrow, rename = "fundingRate")]
    funding: Option<&'a str>,
    #[serde(borrow, rename = "nextFundingTime")]
    next_funding: Option<&'a str>,
    #[serde(borrow, rename = "openInterest")]
    oi: Option<&'a str>,
    #[serde(borrow, rename = "openInterestValue")]
    oi_value: Option<&'a str>,
}

#[derive(Deserialize)]
struct LiquidationData<'a> {
    #[serde(rename = "T")]
    time: Option<u64>,
    #[serde(borrow)]
    s: &'a str,
    #[serde(borrow, rename = "S")]
    side: &'a str,
    #[serde(borrow)]
    v: &'a str,
    #[serde(borrow)]
    p: &'a str,
}

/// `Buy` / `Sell`.
fn side(s: &str) -> Result<Side, ParseError> {
    match s {
        "Buy" => Ok(Side::Buy),
        "Sell" => Ok(Side::Sell),
        _ => Err(ParseError::Invalid("side is not Buy/Sell")),
    }
}

/// A size that must not be negative.
fn size(field: &'static str, s: &str) -> Result<i64, ParseError> {
    let v = fixed_field(field, s)?;
    if v < 0 {
        return Err(ParseError::Invalid("negative size"));
    }
    Ok(v)
}

/// A ticker field: `""` is no value ([`ABSENT`]).
fn opt_fixed(field: &'static str, s: &str) -> Result<i64, ParseError> {
    if s.is_empty() {
        Ok(ABSENT)
    } else {
        fixed_field(field, s)
    }
}

/// The book of one symbol and its `u` chain.
#[derive(Debug)]
struct BybitBook {
    /// Levels; never deeper than `depth` a side after a message.
    book: L2Book,
    /// `u` of the last message applied.
    u: Option<u64>,
    /// True from a snapshot until a gap.
    in_sync: bool,
    /// Crossed after the last message.
    crossed: bool,
    /// Gaps on this symbol (the count of its Resync statuses).
    resyncs: u64,
    /// Levels a side; ≥ 1.
    depth: usize,
}

/// A symbol's ticker, merged from its snapshot and deltas; [`ABSENT`] / `None` until known.
#[derive(Debug, Clone, Copy)]
struct TickerState {
    quote: Quote,
    mark: Mark,
    oi: OpenInterest,
}

impl Default for TickerState {
    fn default() -> Self {
        TickerState {
            quote: Quote::EMPTY,
            mark: Mark {
                mark_price: ABSENT,
                index_price: ABSENT,
                settle_price: ABSENT,
                funding_rate: ABSENT,
                next_funding_ns: None,
                exchange_ts_ns: None,
            },
            oi: OpenInterest {
                open_interest: ABSENT,
                value: ABSENT,
                exchange_ts_ns: None,
            },
        }
    }
}

/// Counters of one Bybit parser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BybitStats {
    /// Trades flagged `BT` (block trades), emitted like the others.
    pub block_trades: u64,
    /// `u` gaps between deltas (each one resyncs its symbol).
    pub gaps: u64,
    /// Books replaced by a `u = 1` message (service restart).
    pub restarts: u64,
}

/// Parser state for one Bybit connection.
#[derive(Default)]
pub struct BybitParser {
    books: FxHashMap<String, BybitBook>,
    tickers: FxHashMap<String, TickerState>,
    /// Depth of the book topics this parser subscribes; a known Bybit depth.
    depth: u32,
    bids: Vec<Level>,
    asks: Vec<Level>,
    outgoing: Vec<String>,
    detail: String,
    stats: BybitStats,
    err: ErrSlot,
}

impl BybitParser {
    /// A parser with no book yet.
    pub fn new() -> BybitParser {
        BybitParser {
            depth: DEFAULT_BOOK_DEPTH,
            ..BybitParser::default()
        }
    }

    /// Block trades, gaps and restarts so far.
    pub fn stats(&self) -> BybitStats {
        self.stats
    }

    /// The book of `symbol`, if seen.
    pub fn book(&self, symbol: &str) -> Option<&L2Book> {
        self.books.get(symbol).map(|b| &b.book)
    }

    fn trades(&mut self, data: &str, sink: &mut Sink<'_>) -> Result<(), ParseError> {
        let stats = &mut self.stats;
        each::<TradeData<'_>, _>(data, &self.err, |t| {
            let trade = Trade {
                price: fixed_field("p", t.p)?,
                size: size("v", t.v)?,
                side: side(t.side)?,
                trade_id: t.i.and_then(crate::market::fixed::parse_u64),
                exchange_ts_ns: t.time.and_then(ms_to_ns),
            };
            stats.block_trades += u64::from(t.block);
            sink(Some(t.s), &Event::Trade(trade));
            Ok(())
        })
    }

    fn liquidations(&mut self, data: &str, sink: &mut Sink<'_>) -> Result<(), ParseError> {
        each::<LiquidationData<'_>, _>(data, &self.err, |l| {
            let v = size("v", l.v)?;
            let liq = Liquidation {
                // `S` is the liquidated position's side; the order closing it is the other.
                side: side(l.side)?.opposite(),
                price: fixed_field("p", l.p)?,
                avg_price: ABSENT,
                size: v,
                filled_size: v,
                status: LiquidationStatus::Filled,
                exchange_ts_ns: l.time.and_then(ms_to_ns),
            };
            sink(Some(l.s), &Event::Liquidation(liq));
            Ok(())
        })
    }

    fn ticker(
        &mut self,
        snapshot: bool,
        data: &str,
        ts: Option<u64>,
        sink: &mut Sink<'_>,
    ) -> Result<(), ParseError> {
        let t: TickerData<'_> = serde_json::from_str(data)?;
        let mut next = if snapshot {
            TickerState::default()
        } else {
            self.tickers.get(t.symbol).copied().unwrap_or_default()
        };
        let set = |slot: &mut i64, field, v: Option<&str>| -> Result<bool, ParseError> {
            match v {
                Some(s) => {
                    *slot = opt_fixed(field, s)?;
                    Ok(true)
                }
                None => Ok(false),
            }
        };
        let q = &mut next.quote;
        let mut quote = set(&mut q.bid_price, "bid1Price", t.bid_px)?;
        quote |= set(&mut q.bid_size, "bid1Size", t.bid_sz)?;
        quote |= set(&mut q.ask_price, "ask1Price", t.ask_px)?;
        quote |= set(&mut q.ask_size, "ask1Size", t.ask_sz)?;
        let m = &mut next.mark;
        let mut mark = set(&mut m.mark_price, "markPrice", t.mark)?;
        mark |= set(&mut m.index_price, "indexPrice", t.index)?;
        if let Some(f) = t.funding {
            mark = true;
            m.funding_rate = if f.is_empty() {
                ABSENT
            } else {
                parse_rate(f).map_err(|cause| ParseError::Number {
                    field: "fundingRate",
                    cause,
                })?
            };
        }
        if let Some(n) = t.next_funding {
            mark = true;
            m.next_funding_ns = if n.is_empty() || n == "0" {
                None
            } else {
                Some(ms_str_to_ns(n)?)
            };
        }
        let o = &mut next.oi;
        let mut oi = set(&mut o.open_interest, "openInterest", t.oi)?;
        oi |= set(&mut o.value, "openInterestValue", t.oi_value)?;
        let ts = ts.and_then(ms_to_ns);
        next.quote.exchange_ts_ns = ts;
        next.mark.exchange_ts_ns = ts;
        next.oi.exchange_ts_ns = ts;
        match self.tickers.get_mut(t.symbol) {
            Some(slot) => *slot = next,
            None => {
                self.tickers.insert(t.symbol.to_owned(), next);
            }
        }
        if quote {
            sink(Some(t.symbol), &Event::Quote(next.quote));
        }
        if mark {
            sink(Some(t.symbol), &Event::Mark(next.mark));
        }
        if oi && next.oi.open_interest != ABSENT {
            sink(Some(t.symbol), &Event::OpenInterest(next.oi));
        }
        Ok(())
    }

    fn orderbook(
        &mut self,
        topic: &str,
        snapshot: bool,
        data: &str,
        ts: Option<u64>,
        sink: &mut Sink<'_>,
    ) -> Result<(), ParseError> {
        let depth = topic
            .split('.')
            .nth(1)
            .and_then(crate::market::fixed::parse_u64)
            .and_then(|d| usize::try_from(d).ok())
            .ok_or(ParseError::Invalid("orderbook topic without a depth"))?
            .max(1);
        let d: BookData<'_> = serde_json::from_str(data)?;
        self.bids.clear();
        self.asks.clear();
        for (raw, out, pf, sf) in [
            (d.b, &mut self.bids, "b price", "b size"),
            (d.a, &mut self.asks, "a price", "a size"),
        ] {
            each::<Row<'_>, _>(raw.get(), &self.err, |r| {
                out.push(Level {
                    price: fixed_field(pf, r.price)?,
                    size: size(sf, r.size)?,
                });
                Ok(())
            })?;
        }
        if !self.books.contains_key(d.s) {
            self.books.insert(
                d.s.to_owned(),
                BybitBook {
                    book: L2Book::with_capacity(depth.min(1024)),
                    u: None,
                    in_sync: false,
                    crossed: false,
                    resyncs: 0,
                    depth,
                },
            );
        }
        let Some(st) = self.books.get_mut(d.s) else {
            return Ok(());
        };
        st.depth = depth;
        // `u = 1`: the service restarted and this message is the whole book.
        let restart = d.u == 1 && !snapshot;
        let replace = snapshot || d.u == 1;
        let mut gap = None;
        if replace {
            self.stats.restarts += u64::from(restart);
            st.in_sync = true;
        } else if st.in_sync {
            match st.u {
                Some(last) if d.u == last.wrapping_add(1) => {}
                Some(last) => gap = Some(d.u.saturating_sub(last).saturating_sub(1)),
                None => gap = Some(0),
            }
        }
        let prev_u = st.u;
        st.u = Some(d.u);
        if gap.is_some() {
            st.in_sync = false;
            st.resyncs += 1;
            self.stats.gaps += 1;
        }
        let (bids, asks) = (&mut self.bids, &mut self.asks);
        if replace {
            st.book.apply_snapshot(bids, asks);
            st.book.truncate(st.depth);
            bids.clear();
            asks.clear();
            bids.extend(st.book.bids());
            asks.extend(st.book.asks());
        } else {
            st.book.apply_delta(bids, asks);
            st.book.truncate_with(st.depth, |side, l| {
                let removal = Level {
                    price: l.price,
                    size: 0,
                };
                match side {
                    BookSide::Bid => bids.push(removal),
                    BookSide::Ask => asks.push(removal),
                }
            });
        }
        sink(
            Some(d.s),
            &Event::Book(BookUpdate {
                snapshot: replace,
                bids,
                asks,
                venue_sequence: Some(d.u),
                exchange_ts_ns: ts.and_then(ms_to_ns),
                may_be_bad: !st.in_sync,
            }),
        );
        if let Some(missed) = gap {
            self.detail.clear();
            let _ = match prev_u {
                Some(p) => write!(self.detail, "update id {} after {p}", d.u),
                None => write!(self.detail, "update id {} with no earlier id", d.u),
            };
            sink(
                Some(d.s),
                &Event::Status(Status {
                    code: StatusCode::Gap,
                    count: missed,
                    detail: &self.detail,
                }),
            );
            sink(
                Some(d.s),
                &Event::Status(Status {
                    code: StatusCode::Resync,
                    count: st.resyncs,
                    detail: "book marked bad; resubscribing for a fresh snapshot",
                }),
            );
            let topics = [topic.to_owned()];
            self.outgoing.push(op_request("unsubscribe", &topics));
            self.outgoing.push(op_request("subscribe", &topics));
        }
        let crossed = st.book.is_crossed();
        if crossed && !st.crossed {
            sink(
                Some(d.s),
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

impl VenueParser for BybitParser {
    fn venue(&self) -> Venue {
        Venue::Bybit
    }

    /// `{"op":"subscribe","args":["publicTrade.BTCUSDT","orderbook.50.BTCUSDT",…]}`, at most
    /// [`ARGS_PER_REQUEST`] topics a request.
    fn subscribe_requests(&mut self, sub: &Subscription) -> Vec<String> {
        self.depth = depth_for(sub.book_depth);
        let mut topics = Vec::with_capacity(sub.channels.len() * sub.symbols.len());
        for c in &sub.channels {
            for s in &sub.symbols {
                topics.push(if c == "orderbook" {
                    format!("orderbook.{}.{s}", self.depth)
                } else {
                    format!("{c}.{s}")
                });
            }
        }
        topics
            .chunks(ARGS_PER_REQUEST)
            .map(|t| op_request("subscribe", t))
            .collect()
    }

    fn drain_outgoing(&mut self, out: &mut Vec<String>) {
        out.append(&mut self.outgoing);
    }

    fn app_ping(&self) -> Option<(&'static str, Duration)> {
        Some((r#"{"op":"ping"}"#, PING_INTERVAL))
    }

    fn on_disconnect(&mut self, sink: &mut Sink<'_>) {
        let _ = sink;
        for b in self.books.values_mut() {
            b.in_sync = false;
            b.u = None;
        }
        self.tickers.clear();
        self.outgoing.clear();
    }

    fn parse(
        &mut self,
        raw: &str,
        recv_ts_ns: u64,
        sink: &mut Sink<'_>,
    ) -> Result<Parsed, ParseError> {
        let _ = recv_ts_ns;
        self.err.clear();
        let env: Envelope<'_> = serde_json::from_str(raw)?;
        if let Some(op) = env.op {
            if env.success == Some(false) {
                return Err(ParseError::Unsupported(format!(
                    "error: {op} {}",
                    env.ret_msg.as_deref().unwrap_or("")
                )));
            }
            return Ok(Parsed::Control);
        }
        let (Some(topic), Some(data)) = (env.topic, env.data) else {
            return Err(ParseError::Invalid("message without op, topic or data"));
        };
        let snapshot = match env.kind {
            Some("snapshot") | None => true,
            Some("delta") => false,
            Some(_) => return Err(ParseError::Invalid("type is not snapshot/delta")),
        };
        let data = data.get();
        match topic.split('.').next().unwrap_or("") {
            "publicTrade" => self.trades(data, sink)?,
            "orderbook" => self.orderbook(topic, snapshot, data, env.ts, sink)?,
            "tickers" => self.ticker(snapshot, data, env.ts, sink)?,
            "allLiquidation" => self.liquidations(data, sink)?,
            other => return Err(ParseError::Unsupported(other.to_owned())),
        }
        Ok(Parsed::Data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::testutil::fixture;
    use crate::feed::venue::testutil::{assert_refused, run};

    fn samples() -> Vec<String> {
        std::fs::read_to_string(fixture("samples/bybit.jsonl"))
            .expect("samples")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_sample_by_message_kind() {
        let lines = samples();
        // Fixed-point as stored: prices 1e-8, the funding rate 1e-18.
        let mark = "mark BTCUSDT Mark { mark_price: 1721733000000, index_price: 1722736000000, \
                    settle_price: -9223372036854775808, funding_rate: -212000000000000, \
                    next_funding_ns: Some(1673280000000000000), \
                    exchange_ts_ns: Some(1673272861686000000) }";
        let cases: &[(usize, Parsed, usize, &str)] = &[
            (0, Parsed::Control, 0, ""),
            (1, Parsed::Data, 1, "snapshot BTCUSDT bids=50 asks=50 best=71423.8x0.557/71423.9x4.669 t=Some(1773386409389000000) bad=false"),
            (2, Parsed::Data, 1, "update BTCUSDT bids=[71419.8x0,71418.2x0.159,71417x0,71416.6x1.163,71416.5x0,71415.5x0,71414.8x0.007,71413.8x0.075,71413.4x0.013,71413.3x0.27,71413.2x0.603] asks=[71427.9x0.006,71428.3x0,71433.3x0,71435.4x0.001] t=Some(1773386409407000000) bad=false"),
            (3, Parsed::Data, 9, "trade BTCUSDT sell 69916.8x0.001 t=Some(1774021164272000000) id=None"),
            (4, Parsed::Data, 1, "trade BTCUSDT buy 16578.5x0.001 t=Some(1672304486865000000) id=None"),
            (5, Parsed::Data, 3, "quote BTCUSDT 17215.5x84.489 / 17216x83.02 t=Some(1673272861686000000)"),
            (6, Parsed::Data, 0, ""),
            (7, Parsed::Data, 1, "quote BTCUSDT 79114.5x1.496 / x t=Some(1787590405983000000)"),
            (8, Parsed::Data, 1, "liquidation BTCUSDT"),
            (9, Parsed::Control, 0, ""),
        ];
        assert_eq!(cases.len(), lines.len(), "every sample line has a case");
        let mut p = BybitParser::new();
        for (i, parsed, n, first) in cases {
            let (r, out) = run(&mut p, &lines[*i]);
            assert_eq!(r, Ok(*parsed), "line {i}");
            assert_eq!(out.len(), *n, "line {i}: {out:?}");
            if *n > 0 && !first.starts_with("liquidation") {
                assert_eq!(out[0], *first, "line {i}");
            }
            if *i == 5 {
                assert_eq!(out[1].replace(' ', ""), mark.replace(' ', ""));
                assert!(out[2].starts_with("open_interest BTCUSDT OpenInterest { open_interest: 6874476100000, value: 118360123591000000"), "{}", out[2]);
            }
            if *i == 8 {
                // `S: Sell` = a short position liquidated = a buy order.
                assert!(out[0].starts_with("liquidation ROSEUSDT Liquidation { side: Buy, price: 4499000, avg_price: -9223372036854775808, size: 2000000000000, filled_size: 2000000000000, status: Filled"), "{}", out[0]);
            }
        }
        // The delta removes four bids and two asks and adds as many: still 50 a side.
        let b = p.book("BTCUSDT").unwrap();
        assert_eq!((b.bid_levels(), b.ask_levels()), (50, 50));
        assert_eq!(p.stats(), BybitStats::default());
    }

    #[test]
    fn ticker_deltas_merge_into_the_snapshot() {
        let lines = samples();
        let mut p = BybitParser::new();
        let _ = run(&mut p, &lines[5]);
        let (_, out) = run(&mut p, &lines[7]);
        assert_eq!(
            out,
            ["quote BTCUSDT 79114.5x1.496 / 17216x83.02 t=Some(1787590405983000000)"]
        );
        let (_, out) = run(
            &mut p,
            r#"{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","fundingRate":"0.0001"},"cs":793092205005,"ts":1787590406983}"#,
        );
        assert_eq!(out.len(), 1);
        assert!(
            out[0].contains("mark_price: 1721733000000,")
                && out[0].contains("funding_rate: 100000000000000,"),
            "{}",
            out[0]
        );
    }

    #[test]
    fn a_u_gap_resyncs_that_symbol_exactly_once() {
        let lines = samples();
        let mut p = BybitParser::new();
        let _ = run(&mut p, &lines[1]);
        // Another symbol in step all along.
        let eth = r#"{"topic":"orderbook.50.ETHUSDT","type":"snapshot","ts":1,"data":{"s":"ETHUSDT","b":[["2000","1"]],"a":[["2001","1"]],"u":7,"seq":1}}"#;
        let _ = run(&mut p, eth);
        let skipped = lines[2].replace(r#""u":10132541"#, r#""u":10132543"#);
        let (r, out) = run(&mut p, &skipped);
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].ends_with("bad=true"));
        assert_eq!(out[1], "status BTCUSDT gap 2");
        assert_eq!(out[2], "status BTCUSDT resync 1");
        let mut sent = Vec::new();
        p.drain_outgoing(&mut sent);
        assert_eq!(
            sent,
            [
                r#"{"args":["orderbook.50.BTCUSDT"],"op":"unsubscribe"}"#,
                r#"{"args":["orderbook.50.BTCUSDT"],"op":"subscribe"}"#,
            ]
        );
        // Later deltas while bad: flagged, no second resync.
        let later = lines[2].replace(r#""u":10132541"#, r#""u":10132550"#);
        let (_, out) = run(&mut p, &later);
        assert_eq!(out.len(), 1);
        assert!(out[0].ends_with("bad=true"));
        p.drain_outgoing(&mut sent);
        assert_eq!(sent.len(), 2, "exactly one resync");
        assert_eq!(p.stats().gaps, 1);
        // ETHUSDT is untouched.
        let (_, out) = run(
            &mut p,
            r#"{"topic":"orderbook.50.ETHUSDT","type":"delta","ts":2,"data":{"s":"ETHUSDT","b":[["2000","2"]],"a":[],"u":8,"seq":2}}"#,
        );
        assert_eq!(
            out,
            ["update ETHUSDT bids=[2000x2] asks=[] t=Some(2000000) bad=false"]
        );
        // The fresh snapshot brings BTCUSDT back.
        let (_, out) = run(&mut p, &lines[1]);
        assert!(out[0].ends_with("bad=false"));
        let (_, out) = run(&mut p, &lines[2]);
        assert!(out[0].ends_with("bad=false"), "{out:?}");
    }

    #[test]
    fn u_one_replaces_the_book_and_depth_one_repeats_are_fine() {
        let lines = samples();
        let mut p = BybitParser::new();
        let _ = run(&mut p, &lines[1]);
        let restart = r#"{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":5,"data":{"s":"BTCUSDT","b":[["70000.00","1"]],"a":[["70001.00","2"]],"u":1,"seq":9}}"#;
        let (_, out) = run(&mut p, restart);
        assert_eq!(
            out,
            ["snapshot BTCUSDT bids=1 asks=1 best=70000x1/70001x2 t=Some(5000000) bad=false"]
        );
        let b = p.book("BTCUSDT").unwrap();
        assert_eq!((b.bid_levels(), b.ask_levels()), (1, 1));
        assert_eq!(p.stats().restarts, 1);
        let (_, out) = run(
            &mut p,
            r#"{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":6,"data":{"s":"BTCUSDT","b":[],"a":[["70001.00","3"]],"u":2,"seq":10}}"#,
        );
        assert!(out[0].ends_with("bad=false"), "{out:?}");
        // Depth 1: the same snapshot (same u) again is not a gap.
        let one = r#"{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":7,"data":{"s":"BTCUSDT","b":[["70000.00","1"]],"a":[["70001.00","3"]],"u":40,"seq":11}}"#;
        for _ in 0..2 {
            let (_, out) = run(&mut p, one);
            assert_eq!(out.len(), 1, "{out:?}");
            assert!(out[0].ends_with("bad=false"));
        }
        assert_eq!(p.stats().gaps, 0);
    }

    #[test]
    fn block_trades_are_counted() {
        let mut p = BybitParser::new();
        let (_, out) = run(
            &mut p,
            r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"5","p":"100","i":"2290000000036455162","BT":true}]}"#,
        );
        assert_eq!(
            out,
            ["trade BTCUSDT buy 100x5 t=Some(1000000) id=Some(2290000000036455162)"]
        );
        assert_eq!(p.stats().block_trades, 1);
    }

    #[test]
    fn bad_input_is_a_typed_error_without_events() {
        let cases: &[(&str, &str)] = &[
            ("", "malformed"),
            ("{}", "without op, topic or data"),
            (
                r#"{"success":false,"ret_msg":"error:handler not found,topic:orderbook.7.X","conn_id":"a","op":"subscribe"}"#,
                "error: subscribe error:handler not found",
            ),
            (
                r#"{"topic":"publicTrade.X","type":"snapshot","data":[{"T":1,"s":"X","S":"Hold","v":"1","p":"1"}]}"#,
                "Buy/Sell",
            ),
            (
                r#"{"topic":"publicTrade.X","type":"snapshot","data":[{"T":1,"s":"X","S":"Buy","v":"-1","p":"1"}]}"#,
                "negative",
            ),
            (
                r#"{"topic":"orderbook.50.X","type":"snapshot","data":{"s":"X","b":[["1"]],"a":[],"u":1}}"#,
                "malformed",
            ),
            (
                r#"{"topic":"orderbook.X","type":"snapshot","data":{"s":"X","b":[],"a":[],"u":1}}"#,
                "without a depth",
            ),
            (
                r#"{"topic":"orderbook.50.X","type":"refresh","data":{}}"#,
                "snapshot/delta",
            ),
            (
                r#"{"topic":"tickers.X","type":"snapshot","data":{"symbol":"X","fundingRate":"abc"}}"#,
                "field `fundingRate`",
            ),
            (
                r#"{"topic":"kline.1.X","type":"snapshot","data":[]}"#,
                "unsupported message kind `kline`",
            ),
        ];
        assert_refused(BybitParser::new, cases);
    }

    #[test]
    fn subscribe_requests_chunk_and_round_the_depth() {
        let mut p = BybitParser::new();
        let sub = Subscription {
            symbols: (0..4).map(|i| format!("S{i}USDT")).collect(),
            channels: vec!["publicTrade".into(), "orderbook".into(), "tickers".into()],
            book_depth: 100,
        };
        let reqs = p.subscribe_requests(&sub);
        assert_eq!(reqs.len(), 2, "12 topics, 10 a request");
        assert!(reqs[0].contains(r#""orderbook.200.S0USDT""#), "{}", reqs[0]);
        assert_eq!(depth_for(0), 50);
        assert_eq!(depth_for(1), 1);
        assert_eq!(depth_for(5000), 1000);
        assert_eq!(p.app_ping(), Some((r#"{"op":"ping"}"#, PING_INTERVAL)));
    }
}
