//! Binance USD-M (`binance_usdm`, `wss://fstream.binance.com/stream`) and COIN-M
//! (`binance_coinm`, `wss://dstream.binance.com/stream`) futures combined streams: subscribe
//! request, and the parser for `trade`, `aggTrade`, `bookTicker`, diff depth, `markPrice` and
//! `forceOrder`, with local books kept by Binance's **futures** synchronisation rule
//! ([`SyncRule::Futures`], `binance_depth.rs`) from REST snapshots of `/fapi/v1/depth` (USD-M) or
//! `/dapi/v1/depth` (COIN-M).
//!
//! Points that matter (Binance USD-M / COIN-M "WebSocket Market Streams"):
//! - `trade` carries `X`: only `MARKET` is a market execution. Insurance-fund, ADL and `NA`
//!   fills are not trades of the market: the message is counted ([`Parsed::Filtered`],
//!   `mdrelay_feed_filtered_total`) and not relayed. A `trade` without `X` is taken as `MARKET`.
//! - `m: true` means the buyer was the maker: the aggressor sold, as on spot.
//! - `bookTicker` → a quote whose exchange time is `T`, the matching engine's transaction time
//!   of the change (`E`, the later push time, when `T` is missing); depth diffs likewise.
//! - COIN-M symbols look like `BTCUSD_PERP` / `ETHUSD_240927`, and COIN-M sizes (`q`, `B`, `A`,
//!   level quantities) are numbers of **contracts** (100 USD each for BTC, 10 USD for the other
//!   coins: `contractSize` in `/dapi/v1/exchangeInfo`). mdrelay keeps them exactly as sent; a
//!   consumer converts with the contract size if it wants coin or USD amounts.
//! - Depth books are per symbol and learnt from the stream, so `mdrelay decode` syncs them too:
//!   a recorded REST snapshot line (`{"lastUpdateId":…}`, as the hftbacktest collector writes it
//!   between the diffs) answers the oldest outstanding snapshot request, or the next symbol to
//!   appear when none is outstanding.
//!
//! Runs on the collector thread of its feed (and in `mdrelay decode`); never blocks.

use super::binance::{acknowledged, aggressor, ms_to_ns, stream_names, subscribe_request, REFUSED};
use super::binance_de::{
    event_kind, parse_body, AggTradeData, BookTickerData, Buffers, DepthHead, Envelope,
    EnvelopeSeed, ForceOrderData, MarkPriceData, TradeData,
};
use super::binance_depth::{DepthBooks, DepthDiff, DepthSyncConfig, SyncRule};
use super::de::{from_str_seed, ErrSlot};
use super::{fixed_field, ParseError, Parsed, Sink, Subscription, VenueParser};
use crate::market::event::{
    Event, Level, Liquidation, LiquidationStatus, Mark, Quote, Side, Trade,
};
use crate::market::fixed::{self, ABSENT};
use crate::market::instrument::Venue;

/// The channels a futures feed may name, each a stream suffix (`<symbol>@<channel>`): trades,
/// aggregate trades, best bid/ask, the diff depth streams the local book is kept from (`depth`
/// is every 250 ms; `depth@0ms` is real time), mark price and funding (`markPrice` every 3 s,
/// `markPrice@1s`), and liquidation orders.
pub const CHANNELS: &[&str] = &[
    "trade",
    "aggTrade",
    "bookTicker",
    "depth",
    "depth@0ms",
    "depth@100ms",
    "depth@500ms",
    "markPrice",
    "markPrice@1s",
    "forceOrder",
];

/// Depth limits the futures REST endpoints accept.
const REST_LIMITS: [u32; 7] = [5, 10, 20, 50, 100, 500, 1000];

/// A recorded snapshot no symbol was waiting for yet.
struct PendingSnapshot {
    last_update_id: u64,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

/// Parser state for one futures connection.
pub struct BinanceFuturesParser {
    /// [`Venue::BinanceUsdm`] or [`Venue::BinanceCoinm`]; never changes.
    venue: Venue,
    bids: Vec<Level>,
    asks: Vec<Level>,
    /// The typed error of the current parse, if a number in a level array did not convert.
    err: ErrSlot,
    /// One futures-rule book per symbol seen on a depth stream.
    depth: DepthBooks,
    /// Symbols whose book asked for a REST snapshot, oldest first; at most one entry per symbol
    /// (a symbol asks again only after its reply or failure).
    snapshot_requests: Vec<String>,
    /// A recorded snapshot line that arrived while no symbol awaited one (decode).
    pending_snapshot: Option<PendingSnapshot>,
    /// Id of the last request sent; Binance echoes it in the ack.
    next_request_id: u64,
    /// `recv_ts_ns` of the message being parsed (a buffered diff keeps it).
    recv_ts_ns: u64,
}

impl BinanceFuturesParser {
    /// A parser for `venue` (USD-M or COIN-M).
    pub fn new(venue: Venue) -> BinanceFuturesParser {
        BinanceFuturesParser {
            venue,
            bids: Vec::new(),
            asks: Vec::new(),
            err: ErrSlot::default(),
            depth: DepthBooks::new::<&str>(
                &[],
                DepthSyncConfig {
                    rule: SyncRule::Futures,
                    ..DepthSyncConfig::default()
                },
            ),
            snapshot_requests: Vec::new(),
            pending_snapshot: None,
            next_request_id: 0,
            recv_ts_ns: 0,
        }
    }

    /// The depth books (read by tests and `decode`'s summary).
    pub fn depth(&self) -> &DepthBooks {
        &self.depth
    }

    /// The REST path of depth snapshots: `/fapi/v1/depth` or `/dapi/v1/depth`.
    fn rest_prefix(&self) -> &'static str {
        match self.venue {
            Venue::BinanceCoinm => "/dapi/v1",
            _ => "/fapi/v1",
        }
    }

    fn apply_snapshot(&mut self, symbol: &str, last: u64, sink: &mut Sink<'_>) {
        if self
            .depth
            .on_snapshot(symbol, last, &self.bids, &self.asks, sink)
            .fetch_snapshot
        {
            self.snapshot_requests.push(symbol.to_owned());
        }
    }

    fn diff(&mut self, h: &DepthHead<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
        let (Some(first), Some(last), Some(symbol)) =
            (h.first_update_id, h.final_update_id, h.symbol)
        else {
            return Err(ParseError::Invalid("depthUpdate without U/u/s"));
        };
        if h.prev_final_update_id.is_none() {
            return Err(ParseError::Invalid("futures depthUpdate without pu"));
        }
        let ts = h.transaction_time_ms.or(h.event_time_ms);
        if self.depth.track(symbol) {
            if let Some(p) = self.pending_snapshot.take() {
                // A recorded snapshot that came before the symbol's first diff: loaded, it awaits
                // the diff that bridges it (a too-old one is refetched on that diff).
                let _ = self
                    .depth
                    .on_snapshot(symbol, p.last_update_id, &p.bids, &p.asks, sink);
            }
        }
        let diff = DepthDiff {
            first_update_id: first,
            final_update_id: last,
            bids: &self.bids,
            asks: &self.asks,
            exchange_ts_ns: ts.map(ms_to_ns).transpose()?,
            recv_ts_ns: self.recv_ts_ns,
        };
        if self
            .depth
            .on_diff_pu(symbol, &diff, h.prev_final_update_id, sink)
            .fetch_snapshot
        {
            self.snapshot_requests.push(symbol.to_owned());
        }
        Ok(())
    }

    /// A recorded REST snapshot line: it answers the oldest outstanding request, else waits for
    /// the next symbol to appear.
    fn recorded_snapshot(&mut self, last: u64, sink: &mut Sink<'_>) {
        if self.snapshot_requests.is_empty() {
            self.pending_snapshot = Some(PendingSnapshot {
                last_update_id: last,
                bids: self.bids.clone(),
                asks: self.asks.clone(),
            });
            return;
        }
        let symbol = self.snapshot_requests.remove(0);
        self.apply_snapshot(&symbol, last, sink);
    }

    fn event(&mut self, env: Envelope<'_>, sink: &mut Sink<'_>) -> Result<Parsed, ParseError> {
        match env {
            Envelope::Trade(t) => return trade(&t, sink),
            Envelope::AggTrade(t) => agg_trade(&t, sink)?,
            Envelope::BookTicker(b) => book_ticker(&b, sink)?,
            Envelope::Depth(h) => match h.last_update_id {
                Some(last) if h.symbol.is_none() => self.recorded_snapshot(last, sink),
                _ => self.diff(&h, sink)?,
            },
            Envelope::Mark(m) => sink(Some(m.symbol), &Event::Mark(mark(&m)?)),
            Envelope::Liquidation(l) => {
                sink(Some(l.order.symbol), &Event::Liquidation(liquidation(&l)?))
            }
            Envelope::Ack => return Ok(acknowledged(sink)),
            Envelope::Error => return Err(ParseError::Invalid(REFUSED)),
            Envelope::Bare(e) => return Err(ParseError::Unsupported(e.to_owned())),
            Envelope::Unsupported(kind) => return Err(ParseError::Unsupported(kind.to_owned())),
        }
        Ok(Parsed::Data)
    }
}

impl VenueParser for BinanceFuturesParser {
    fn venue(&self) -> Venue {
        self.venue
    }

    fn subscribe_requests(&mut self, sub: &Subscription) -> Vec<String> {
        let streams: Vec<String> = sub
            .symbols
            .iter()
            .flat_map(|s| stream_names(s, &sub.channels))
            .collect();
        self.next_request_id += 1;
        vec![subscribe_request(&streams, self.next_request_id)]
    }

    fn snapshot_url(&self, rest_base: &str, symbol: &str, depth: u32) -> Option<String> {
        let limit = match depth {
            0 => 1000,
            d => REST_LIMITS.into_iter().find(|&l| l >= d).unwrap_or(1000),
        };
        Some(format!(
            "{}{}/depth?symbol={}&limit={limit}",
            rest_base.trim_end_matches('/'),
            self.rest_prefix(),
            symbol.to_ascii_uppercase()
        ))
    }

    fn drain_snapshot_requests(&mut self, out: &mut Vec<String>) {
        out.append(&mut self.snapshot_requests);
    }

    fn on_rest_snapshot(
        &mut self,
        symbol: &str,
        body: &str,
        sink: &mut Sink<'_>,
    ) -> Result<(), ParseError> {
        self.err.clear();
        let buffers = Buffers {
            bids: &mut self.bids,
            asks: &mut self.asks,
            err: &self.err,
        };
        // No `end()`: a REST body is taken as far as its object goes.
        let mut de = serde_json::Deserializer::from_str(body);
        let head =
            serde::de::DeserializeSeed::deserialize(super::binance_de::DepthSeed(buffers), &mut de)
                .map_err(|e| self.err.or_json(e));
        match head {
            Ok(DepthHead {
                last_update_id: Some(last),
                ..
            }) => {
                self.apply_snapshot(symbol, last, sink);
                Ok(())
            }
            Ok(_) => {
                self.on_snapshot_failed(symbol);
                Err(ParseError::Invalid("REST depth reply without lastUpdateId"))
            }
            Err(e) => {
                self.on_snapshot_failed(symbol);
                Err(e)
            }
        }
    }

    fn on_snapshot_failed(&mut self, symbol: &str) {
        if self.depth.on_snapshot_failed(symbol).fetch_snapshot {
            self.snapshot_requests.push(symbol.to_owned());
        }
    }

    fn on_disconnect(&mut self, sink: &mut Sink<'_>) {
        self.depth.reset_all(sink);
        self.pending_snapshot = None;
    }

    fn drain_sync_released(&mut self, f: &mut dyn FnMut(u64)) {
        self.depth.drain_released(f);
    }

    fn parse(
        &mut self,
        raw: &str,
        recv_ts_ns: u64,
        sink: &mut Sink<'_>,
    ) -> Result<Parsed, ParseError> {
        self.recv_ts_ns = recv_ts_ns;
        self.err.clear();
        let seed = EnvelopeSeed(Buffers {
            bids: &mut self.bids,
            asks: &mut self.asks,
            err: &self.err,
        });
        let env = from_str_seed(raw, seed, &self.err)?;
        if let Envelope::Bare(e) = env {
            // No envelope: read the whole message again as the type its `e` names.
            let kind = event_kind(e);
            self.err.clear();
            let mut de = serde_json::Deserializer::from_str(raw);
            let buffers = Buffers {
                bids: &mut self.bids,
                asks: &mut self.asks,
                err: &self.err,
            };
            let env = parse_body(kind, e, buffers, &mut de).map_err(|x| self.err.or_json(x))?;
            return match env {
                Envelope::Unsupported(_) => Err(ParseError::Unsupported(e.to_owned())),
                env => self.event(env, sink),
            };
        }
        self.event(env, sink)
    }
}

/// A futures `trade`: relayed when `X` is `MARKET` (or absent), else [`Parsed::Filtered`].
fn trade(t: &TradeData<'_>, sink: &mut Sink<'_>) -> Result<Parsed, ParseError> {
    let trade = Trade {
        price: fixed_field("p", t.price)?,
        size: fixed_field("q", t.qty)?,
        side: aggressor(t.buyer_is_maker),
        trade_id: Some(t.trade_id),
        exchange_ts_ns: Some(ms_to_ns(t.trade_time_ms)?),
    };
    match t.kind {
        None | Some("MARKET") => {
            sink(Some(t.symbol), &Event::Trade(trade));
            Ok(Parsed::Data)
        }
        Some(_) => Ok(Parsed::Filtered),
    }
}

fn agg_trade(t: &AggTradeData<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    let trade = Trade {
        price: fixed_field("p", t.price)?,
        size: fixed_field("q", t.qty)?,
        side: aggressor(t.buyer_is_maker),
        trade_id: Some(t.agg_id),
        exchange_ts_ns: Some(ms_to_ns(t.trade_time_ms)?),
    };
    sink(Some(t.symbol), &Event::Trade(trade));
    Ok(())
}

fn book_ticker(b: &BookTickerData<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    let ts = b.transaction_time_ms.or(b.event_time_ms);
    let quote = Quote {
        bid_price: fixed_field("b", b.bid_price)?,
        bid_size: fixed_field("B", b.bid_qty)?,
        ask_price: fixed_field("a", b.ask_price)?,
        ask_size: fixed_field("A", b.ask_qty)?,
        exchange_ts_ns: ts.map(ms_to_ns).transpose()?,
    };
    sink(Some(b.symbol), &Event::Quote(quote));
    Ok(())
}

/// An optional decimal: absent or `""` → [`ABSENT`].
fn opt_fixed(field: &'static str, s: Option<&str>) -> Result<i64, ParseError> {
    match s {
        None | Some("") => Ok(ABSENT),
        Some(s) => fixed_field(field, s),
    }
}

/// `markPriceUpdate` → [`Mark`]. The funding rate is exact to 1e-18 ([`fixed::parse_rate`]);
/// delivery contracts (`r` = `""`, `T` = 0) have neither rate nor funding time.
pub(super) fn mark(m: &MarkPriceData<'_>) -> Result<Mark, ParseError> {
    let funding_rate = match m.funding_rate {
        None | Some("") => ABSENT,
        Some(r) => {
            fixed::parse_rate(r).map_err(|cause| ParseError::Number { field: "r", cause })?
        }
    };
    Ok(Mark {
        mark_price: fixed_field("p", m.mark_price)?,
        index_price: opt_fixed("i", m.index_price)?,
        settle_price: opt_fixed("P", m.settle_price)?,
        funding_rate,
        next_funding_ns: match m.next_funding_ms {
            None | Some(0) => None,
            Some(t) => Some(ms_to_ns(t)?),
        },
        exchange_ts_ns: m.event_time_ms.map(ms_to_ns).transpose()?,
    })
}

/// `forceOrder` → [`Liquidation`] (its symbol is `o.s`).
pub(super) fn liquidation(l: &ForceOrderData<'_>) -> Result<Liquidation, ParseError> {
    let o = &l.order;
    let side = match o.side {
        "BUY" => Side::Buy,
        "SELL" => Side::Sell,
        _ => {
            return Err(ParseError::Invalid(
                "forceOrder side is neither BUY nor SELL",
            ))
        }
    };
    let status = match o.status {
        Some("NEW") => LiquidationStatus::New,
        Some("PARTIALLY_FILLED") => LiquidationStatus::PartiallyFilled,
        Some("FILLED") => LiquidationStatus::Filled,
        Some("CANCELED" | "EXPIRED") => LiquidationStatus::Canceled,
        _ => LiquidationStatus::Unknown,
    };
    Ok(Liquidation {
        side,
        price: fixed_field("p", o.price)?,
        avg_price: opt_fixed("ap", o.avg_price)?,
        size: fixed_field("q", o.qty)?,
        filled_size: opt_fixed("z", o.filled_qty)?,
        status,
        exchange_ts_ns: o
            .trade_time_ms
            .or(l.event_time_ms)
            .map(ms_to_ns)
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::testutil::fixture;
    use crate::market::event::{Event, StatusCode};
    use serde_json::Value;
    use std::collections::BTreeMap;

    const CAPTURE: &str = "binance_usdm/ethusdt_20240808.txt.gz";

    /// An independent decimal → 1e-8 fixed-point conversion (string arithmetic only).
    fn dec8(s: &str) -> i64 {
        let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let frac = format!("{frac:0<8}");
        assert!(frac[8..].bytes().all(|b| b == b'0'), "{s}");
        let v: i64 = format!("{int}{}", &frac[..8]).parse().unwrap();
        if neg {
            -v
        } else {
            v
        }
    }

    /// One side of a book: price → size.
    type Side8 = BTreeMap<i64, i64>;

    /// Everything a parser emitted, for one message or a whole capture.
    #[derive(Default)]
    struct Seen {
        trades: Vec<(String, Trade)>,
        quotes: Vec<(String, Quote)>,
        marks: Vec<(String, Mark)>,
        liquidations: Vec<(String, Liquidation)>,
        statuses: Vec<(Option<String>, StatusCode, u64)>,
        snapshots: usize,
        deltas: usize,
        /// Each symbol's book as a subscriber rebuilds it from the book events.
        books: BTreeMap<String, (Side8, Side8)>,
    }

    impl Seen {
        fn record(&mut self, sym: Option<&str>, ev: &Event<'_>) {
            let s = sym.map(str::to_owned);
            match ev {
                Event::Trade(t) => self.trades.push((s.unwrap(), *t)),
                Event::Quote(q) => self.quotes.push((s.unwrap(), *q)),
                Event::Mark(m) => self.marks.push((s.unwrap(), *m)),
                Event::Liquidation(l) => self.liquidations.push((s.unwrap(), *l)),
                Event::OpenInterest(_) => panic!("no open interest on the stream"),
                Event::Status(st) => self.statuses.push((s, st.code, st.count)),
                Event::Book(b) => {
                    let book = self.books.entry(s.unwrap()).or_default();
                    if b.snapshot {
                        self.snapshots += 1;
                        *book = Default::default();
                    } else {
                        self.deltas += 1;
                    }
                    apply(&mut book.0, b.bids);
                    apply(&mut book.1, b.asks);
                }
            }
        }
    }

    fn apply(side: &mut BTreeMap<i64, i64>, levels: &[Level]) {
        for l in levels {
            if l.size == 0 {
                side.remove(&l.price);
            } else {
                side.insert(l.price, l.size);
            }
        }
    }

    fn parse_all<'a>(
        p: &mut BinanceFuturesParser,
        lines: impl IntoIterator<Item = &'a str>,
    ) -> (Seen, Vec<Result<Parsed, String>>) {
        let mut seen = Seen::default();
        let mut results = Vec::new();
        for raw in lines {
            let r = p.parse(raw, 1, &mut |sym, ev| seen.record(sym, ev));
            results.push(r.map_err(|e| e.to_string()));
        }
        (seen, results)
    }

    fn capture_lines() -> Vec<String> {
        crate::persist::recording::read_all(&fixture(CAPTURE))
            .unwrap()
            .into_iter()
            .map(|r| r.raw)
            .collect()
    }

    /// The book by the futures procedure written out plainly: the snapshot line, drop diffs with
    /// `u` < `lastUpdateId`, the first applied has `U` ≤ `lastUpdateId` ≤ `u`, then every `pu`
    /// equals the previous `u`.
    fn reference_book(lines: &[String]) -> (Side8, Side8, usize) {
        let snap_at = lines
            .iter()
            .position(|l| l.starts_with("{\"lastUpdateId\""))
            .unwrap();
        let snap: Value = serde_json::from_str(&lines[snap_at]).unwrap();
        let last = snap["lastUpdateId"].as_u64().unwrap();
        let side = |v: &Value| -> BTreeMap<i64, i64> {
            let mut m = BTreeMap::new();
            for l in v.as_array().unwrap() {
                let (p, q) = (dec8(l[0].as_str().unwrap()), dec8(l[1].as_str().unwrap()));
                if q != 0 {
                    m.insert(p, q);
                }
            }
            m
        };
        let (mut bids, mut asks) = (side(&snap["bids"]), side(&snap["asks"]));
        let mut prev: Option<u64> = None;
        let mut applied = 0;
        for l in lines {
            let v: Value = serde_json::from_str(l).unwrap();
            if !v["stream"].as_str().is_some_and(|s| s.contains("@depth")) {
                continue;
            }
            let d = &v["data"];
            let (first, fin, pu) = (
                d["U"].as_u64().unwrap(),
                d["u"].as_u64().unwrap(),
                d["pu"].as_u64().unwrap(),
            );
            match prev {
                None if fin < last => continue,
                None => assert!(first <= last && last <= fin, "bridging diff"),
                Some(p) => assert_eq!(pu, p, "pu chain"),
            }
            prev = Some(fin);
            applied += 1;
            for (m, key) in [(&mut bids, "b"), (&mut asks, "a")] {
                for l in d[key].as_array().unwrap() {
                    let (p, q) = (dec8(l[0].as_str().unwrap()), dec8(l[1].as_str().unwrap()));
                    if q == 0 {
                        m.remove(&p);
                    } else {
                        m.insert(p, q);
                    }
                }
            }
        }
        (bids, asks, applied)
    }

    #[test]
    fn capture_decodes_every_trade_and_quote_exactly_and_syncs_the_book() {
        let lines = capture_lines();
        let mut p = BinanceFuturesParser::new(Venue::BinanceUsdm);
        let (seen, results) = parse_all(&mut p, lines.iter().map(String::as_str));
        assert!(results.iter().all(Result::is_ok), "every line parses");
        assert_eq!((seen.trades.len(), seen.quotes.len()), (14_076, 53_992));
        // Every trade and quote against serde_json's reading of the same line, in order.
        let (mut ti, mut qi) = (0, 0);
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap();
            let d = &v["data"];
            match v["stream"].as_str().unwrap_or("") {
                "ethusdt@trade" => {
                    let (sym, t) = &seen.trades[ti];
                    ti += 1;
                    assert_eq!(sym, d["s"].as_str().unwrap());
                    assert_eq!(t.price, dec8(d["p"].as_str().unwrap()));
                    assert_eq!(t.size, dec8(d["q"].as_str().unwrap()));
                    assert_eq!(t.trade_id, d["t"].as_u64());
                    let want = if d["m"].as_bool().unwrap() {
                        Side::Sell
                    } else {
                        Side::Buy
                    };
                    assert_eq!(t.side, want);
                    assert_eq!(t.exchange_ts_ns, Some(d["T"].as_u64().unwrap() * 1_000_000));
                }
                "ethusdt@bookTicker" => {
                    let (_, q) = &seen.quotes[qi];
                    qi += 1;
                    assert_eq!(q.bid_price, dec8(d["b"].as_str().unwrap()));
                    assert_eq!(q.bid_size, dec8(d["B"].as_str().unwrap()));
                    assert_eq!(q.ask_price, dec8(d["a"].as_str().unwrap()));
                    assert_eq!(q.ask_size, dec8(d["A"].as_str().unwrap()));
                    assert_eq!(q.exchange_ts_ns, Some(d["T"].as_u64().unwrap() * 1_000_000));
                }
                _ => {}
            }
        }
        assert_eq!((ti, qi), (14_076, 53_992));
        let sides = seen.trades.iter().filter(|(_, t)| t.side == Side::Sell);
        assert!(sides.count() > 1000, "both aggressor sides occur");

        // The depth stream: synced once, no gap, no crossing, every later diff a delta.
        assert!(seen.statuses.is_empty(), "{:?}", seen.statuses);
        let book = p.depth().get("ETHUSDT").unwrap();
        let st = book.stats();
        assert_eq!((st.gaps, st.resyncs, st.crossed_episodes), (0, 0, 0));
        assert_eq!((st.syncs, seen.snapshots), (1, 1));
        let (bids, asks, applied) = reference_book(&lines);
        assert_eq!(st.diffs_applied as usize, applied);
        assert_eq!(seen.deltas + 2, applied, "two diffs were applied at sync");
        let have = |it: &mut dyn Iterator<Item = Level>| -> BTreeMap<i64, i64> {
            it.map(|l| (l.price, l.size)).collect()
        };
        assert_eq!(have(&mut book.book().bids()), bids);
        assert_eq!(have(&mut book.book().asks()), asks);
        assert_eq!(seen.books["ETHUSDT"], (bids, asks), "subscriber's rebuild");
    }

    #[test]
    fn a_pu_break_gives_one_gap_one_resync_one_snapshot_request() {
        let mut lines = capture_lines();
        // Break the chain at the 1000th diff, well after the sync.
        let (at, _) = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains("@depth@0ms"))
            .nth(1000)
            .unwrap();
        let v: Value = serde_json::from_str(&lines[at]).unwrap();
        let pu = v["data"]["pu"].as_u64().unwrap();
        lines[at] = lines[at].replace(&format!("\"pu\":{pu}"), &format!("\"pu\":{}", pu - 1));
        let mut p = BinanceFuturesParser::new(Venue::BinanceUsdm);
        let (before, _) = parse_all(&mut p, lines[..at].iter().map(String::as_str));
        assert!(before.statuses.is_empty());
        let mut asked = Vec::new();
        p.drain_snapshot_requests(&mut asked);
        assert!(
            asked.is_empty(),
            "the recorded snapshot answered the first request"
        );
        let (after, results) = parse_all(&mut p, lines[at..].iter().map(String::as_str));
        assert!(results.iter().all(Result::is_ok));
        let eth = Some("ETHUSDT".to_owned());
        assert_eq!(
            after.statuses,
            vec![
                (eth.clone(), StatusCode::Gap, 1),
                (eth, StatusCode::Resync, 1)
            ]
        );
        p.drain_snapshot_requests(&mut asked);
        assert_eq!(asked, ["ETHUSDT"], "exactly one snapshot request");
        let st = p.depth().get("ETHUSDT").unwrap().stats();
        assert_eq!((st.gaps, st.resyncs, st.snapshots_requested), (1, 1, 2));
        assert_eq!(after.snapshots, 0, "no book until the new snapshot");
    }

    fn one(p: &mut BinanceFuturesParser, raw: &str) -> (Result<Parsed, String>, Seen) {
        let (seen, mut r) = parse_all(p, [raw]);
        (r.remove(0), seen)
    }

    #[test]
    fn only_market_trades_are_relayed() {
        let mut p = BinanceFuturesParser::new(Venue::BinanceUsdm);
        let msg = |x: &str| {
            format!(
                r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1,"T":1723161256322,"s":"BTCUSDT","t":5266583935,"p":"61800.30","q":"0.006"{x},"m":false}}}}"#
            )
        };
        for x in [r#","X":"INSURANCE_FUND""#, r#","X":"ADL""#, r#","X":"NA""#] {
            let (r, seen) = one(&mut p, &msg(x));
            assert_eq!(r, Ok(Parsed::Filtered), "{x}");
            assert!(seen.trades.is_empty());
        }
        for x in [r#","X":"MARKET""#, ""] {
            let (r, seen) = one(&mut p, &msg(x));
            assert_eq!(r, Ok(Parsed::Data));
            assert_eq!(
                seen.trades,
                vec![(
                    "BTCUSDT".to_owned(),
                    Trade {
                        price: 6_180_030_000_000,
                        size: 600_000,
                        side: Side::Buy,
                        trade_id: Some(5_266_583_935),
                        exchange_ts_ns: Some(1_723_161_256_322_000_000),
                    }
                )]
            );
        }
        // A bad number in a filtered trade is still an error: it is not silently dropped.
        let (r, _) = one(
            &mut p,
            &msg(r#","X":"ADL","p":"x""#).replace(r#""p":"61800.30","#, ""),
        );
        assert!(r.unwrap_err().contains("field `p`"));
    }

    #[test]
    fn coinm_symbols_streams_and_rest_paths() {
        let mut p = BinanceFuturesParser::new(Venue::BinanceCoinm);
        assert_eq!(p.venue(), Venue::BinanceCoinm);
        let sub = Subscription {
            symbols: vec!["BTCUSD_PERP".into()],
            channels: vec!["trade".into(), "depth@100ms".into(), "markPrice@1s".into()],
            book_depth: 0,
        };
        assert_eq!(
            p.subscribe_requests(&sub),
            [
                r#"{"id":1,"method":"SUBSCRIBE","params":["btcusd_perp@trade","btcusd_perp@depth@100ms","btcusd_perp@markPrice@1s"]}"#
            ]
        );
        assert_eq!(
            p.snapshot_url("https://dapi.binance.com/", "BTCUSD_PERP", 0)
                .unwrap(),
            "https://dapi.binance.com/dapi/v1/depth?symbol=BTCUSD_PERP&limit=1000"
        );
        let usdm = BinanceFuturesParser::new(Venue::BinanceUsdm);
        assert_eq!(
            usdm.snapshot_url("https://fapi.binance.com", "ethusdt", 30)
                .unwrap(),
            "https://fapi.binance.com/fapi/v1/depth?symbol=ETHUSDT&limit=50"
        );
        // COIN-M sizes are contracts, kept exactly as sent.
        let (r, seen) = one(
            &mut p,
            r#"{"stream":"btcusd_perp@bookTicker","data":{"e":"bookTicker","u":17242169,"s":"BTCUSD_PERP","ps":"BTCUSD","b":"16578.5","B":"10","a":"16578.6","A":"12","T":1591268628155,"E":1591268628166}}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(
            seen.quotes,
            vec![(
                "BTCUSD_PERP".to_owned(),
                Quote {
                    bid_price: 1_657_850_000_000,
                    bid_size: 1_000_000_000,
                    ask_price: 1_657_860_000_000,
                    ask_size: 1_200_000_000,
                    exchange_ts_ns: Some(1_591_268_628_155_000_000),
                }
            )]
        );
    }

    #[test]
    fn rest_snapshot_then_diffs_by_the_futures_rule() {
        let mut p = BinanceFuturesParser::new(Venue::BinanceUsdm);
        let diff = |first: u64, last: u64, pu: u64, bid: &str| {
            format!(
                r#"{{"stream":"x@depth@100ms","data":{{"e":"depthUpdate","E":2,"T":1,"s":"X","U":{first},"u":{last},"pu":{pu},"b":[["10.0","{bid}"]],"a":[]}}}}"#
            )
        };
        let (r, seen) = one(&mut p, &diff(100, 110, 90, "1"));
        assert_eq!((r, seen.snapshots), (Ok(Parsed::Data), 0));
        let mut asked = Vec::new();
        p.drain_snapshot_requests(&mut asked);
        assert_eq!(asked, ["X"]);
        let _ = one(&mut p, &diff(115, 130, 110, "2"));
        let mut seen = Seen::default();
        p.on_rest_snapshot(
            "X",
            r#"{"lastUpdateId":120,"E":1,"T":1,"bids":[["9.0","5"]],"asks":[["11.0","1"]]}"#,
            &mut |s, e| seen.record(s, e),
        )
        .unwrap();
        // u=110 < 120 dropped; U=115 ≤ 120 ≤ 130 applied: bid 10 = 2.
        assert_eq!(seen.snapshots, 1);
        let bids: Vec<_> = seen.books["X"].0.iter().map(|(&p, &s)| (p, s)).collect();
        assert_eq!(
            bids,
            [(900_000_000, 500_000_000), (1_000_000_000, 200_000_000)]
        );
        // The next diff must chain on pu = 130.
        let (_, seen) = one(&mut p, &diff(131, 140, 130, "3"));
        assert_eq!((seen.deltas, seen.statuses.len()), (1, 0));
        let (_, seen) = one(&mut p, &diff(150, 160, 145, "4"));
        let codes: Vec<_> = seen.statuses.iter().map(|s| s.1).collect();
        assert_eq!(codes, [StatusCode::Gap, StatusCode::Resync]);
        // A diff without pu is refused.
        let (r, _) = one(
            &mut p,
            r#"{"stream":"x@depth","data":{"e":"depthUpdate","s":"X","U":1,"u":2,"b":[],"a":[]}}"#,
        );
        assert!(r.unwrap_err().contains("without pu"));
    }

    #[test]
    fn samples_mark_price_and_force_order_have_exact_values() {
        let samples = std::fs::read_to_string(fixture("samples/binance.jsonl")).unwrap();
        let line = |e: &str| samples.lines().find(|l| l.contains(e)).unwrap().to_owned();
        let want_mark = Mark {
            mark_price: 1_179_415_000_000,
            index_price: 1_178_462_659_091,
            settle_price: 1_178_425_641_265,
            funding_rate: 381_670_000_000_000,
            next_funding_ns: Some(1_562_306_400_000_000_000),
            exchange_ts_ns: Some(1_562_305_380_000_000_000),
        };
        let want_liq = Liquidation {
            side: Side::Sell,
            price: 991_000_000_000,
            avg_price: 991_012_345_678,
            size: 1_400_000,
            filled_size: 1_400_000,
            status: LiquidationStatus::Filled,
            exchange_ts_ns: Some(1_568_014_460_893_000_000),
        };
        let mut p = BinanceFuturesParser::new(Venue::BinanceUsdm);
        let (mark_raw, liq_raw) = (line("markPriceUpdate"), line("forceOrder"));
        // As the documentation shows them (no envelope) and as a combined stream sends them.
        for (raw, stream) in [
            (&mark_raw, "btcusdt@markPrice@1s"),
            (&liq_raw, "btcusdt@forceOrder"),
        ] {
            for msg in [
                raw.clone(),
                format!(r#"{{"stream":"{stream}","data":{raw}}}"#),
            ] {
                let (r, seen) = one(&mut p, &msg);
                assert_eq!(r, Ok(Parsed::Data), "{msg}");
                if stream.contains("markPrice") {
                    assert_eq!(seen.marks, vec![("BTCUSDT".to_owned(), want_mark)]);
                } else {
                    assert_eq!(seen.liquidations, vec![("BTCUSDT".to_owned(), want_liq)]);
                }
            }
        }
        // A delivery contract: no funding rate, no funding time.
        let (_, seen) = one(
            &mut p,
            r#"{"stream":"btcusd_240927@markPrice","data":{"e":"markPriceUpdate","E":1,"s":"BTCUSD_240927","p":"60000.1","P":"60000.0","i":"59990.5","r":"","T":0}}"#,
        );
        let m = seen.marks[0].1;
        assert_eq!((m.funding_rate, m.next_funding_ns), (ABSENT, None));
        assert_eq!(m.index_price, 5_999_050_000_000);
        // Negative funding is exact to 1e-18.
        let neg = mark_raw.replace(r#""r":"0.00038167""#, r#""r":"-0.0000597393178553""#);
        let (_, seen) = one(&mut p, &neg);
        assert_eq!(seen.marks[0].1.funding_rate, -59_739_317_855_300);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let mut p = BinanceFuturesParser::new(Venue::BinanceUsdm);
        assert_eq!(
            one(&mut p, r#"{"result":null,"id":1}"#).0,
            Ok(Parsed::Control)
        );
        for (raw, want) in [
            ("", "malformed"),
            ("[]", "malformed"),
            (r#"{"stream":"x@trade"}"#, "malformed"),
            (
                r#"{"error":{"code":2},"id":1}"#,
                "venue replied with an error",
            ),
            (
                r#"{"stream":"x@kline_1m","data":{"k":{}}}"#,
                "unsupported message kind `kline_1m`",
            ),
            (
                r#"{"e":"kline","k":{}}"#,
                "unsupported message kind `kline`",
            ),
            (
                r#"{"stream":"x@depth20@100ms","data":{"e":"depthUpdate","s":"X","U":1,"u":2,"pu":0,"b":[],"a":[]}}"#,
                "unsupported message kind `depth20@100ms`",
            ),
            (
                r#"{"stream":"x@depth","data":{"s":"X","U":1,"u":2,"pu":0,"b":[["1","99999999999999"]],"a":[]}}"#,
                "out of range",
            ),
        ] {
            let (r, seen) = one(&mut p, raw);
            let e = r.expect_err(raw);
            assert!(e.contains(want), "{raw}: {e}");
            assert!(seen.trades.is_empty() && seen.snapshots == 0);
        }
    }
}
