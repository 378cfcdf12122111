//! OKX WebSocket v5 public channels (`wss://ws.okx.com:8443/ws/v5/public`): subscribe requests,
//! and the parser for `trades` / `trades-all`, `tickers`, `bbo-tbt`, and the order books `books`,
//! `books-l2-tbt`, `books50-l2-tbt` (snapshot then updates, checked) and `books5` (each message a
//! whole 5-level book).
//!
//! Reference: OKX "API v5" documentation, "WebSocket → Public channel" (Trades, Tickers, Order
//! book channel) and its "Order book" checksum/seqId guide. Points that matter:
//! - Every message is `{"arg":{"channel":…,"instId":…},"data":[…]}` (books add `"action":
//!   "snapshot"|"update"`); requests are answered by `{"event":"subscribe"|"unsubscribe"|"error",…}`
//!   and `{"event":"notice"|"channel-conn-count",…}`, all [`Parsed::Control`] except `error`,
//!   returned as [`ParseError::Unsupported`] holding `error: <code> <msg>` (the coinbase parser's
//!   convention: the venue's words reach the operator).
//! - Trade `side` is the taker's side. `tradeId` is a decimal string.
//! - Ticker `bidPx`/`askPx`/… may be empty strings (no bid): [`ABSENT`], never 0.
//! - Books: the checksum of the top 25 levels over the venue's own strings and the
//!   `seqId`/`prevSeqId` chain are checked on every message ([`super::okx_book`]); a checksum of 0
//!   is never a mismatch. A mismatch or a chain break emits the update flagged `may_be_bad`, then
//!   `ChecksumMismatch` (or `Gap`) and `Resync` statuses for that instrument, and queues an
//!   unsubscribe + subscribe of that instrument's book channel for
//!   [`VenueParser::drain_outgoing`] (once per break); every other instrument continues. The next
//!   snapshot clears the flag. An update whose level lists are both empty is a heartbeat: it only
//!   advances the chain ([`Parsed::Control`]).
//! - Book depth: `books` and `books-l2-tbt` keep 400 levels a side, `books50-l2-tbt` 50, `books5`
//!   5. Levels beyond are dropped and the emitted update removes them explicitly, so a relay book
//!   never outgrows the venue's.
//! - `books5` messages carry no `action`: each is a snapshot. `bbo-tbt` is normalized to a
//!   [`Quote`] (its one level a side), not a book.
//! - Keep-alive: OKX closes a connection after 30 s without a client message; the collector sends
//!   the text `ping` every [`PING_INTERVAL`] ([`VenueParser::app_ping`]) and OKX answers `pong`,
//!   which is not JSON and not data ([`Parsed::Control`]).
//!
//! Configuring two book channels for one instrument on one feed would interleave two books under
//! one instrument id: use one book channel per feed.
//!
//! One parser per feed connection, on that feed's collector thread; never blocks. Once warm a
//! message is parsed without allocating, except on the error and resync paths.

use std::fmt::Write as _;
use std::ops::Range;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::de::ErrSlot;
use super::each::{each, ms_str_to_ns, Row};
use super::okx_book::{BookStats, OkxBook, RawLevel, Verdict};
use super::okx_derivs;
use super::{fixed_field, ParseError, Parsed, Sink, Subscription, VenueParser};
use crate::market::book::L2Book;
use crate::market::event::{BookUpdate, Event, Level, Quote, Side, Status, StatusCode, Trade};
use crate::market::fixed::ABSENT;
use crate::market::instrument::Venue;

/// The channels a feed may name (the last four: [`super::okx_derivs`]).
pub const CHANNELS: &[&str] = &[
    "trades",
    "trades-all",
    "tickers",
    "bbo-tbt",
    "books",
    "books5",
    "books-l2-tbt",
    "books50-l2-tbt",
    "mark-price",
    "funding-rate",
    "open-interest",
    "liquidation-orders",
];

/// How often the collector sends `ping` (OKX closes a connection after 30 s without one).
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// Levels a side a book channel keeps.
fn channel_depth(channel: &str) -> Option<usize> {
    match channel {
        "books" | "books-l2-tbt" => Some(400),
        "books50-l2-tbt" => Some(50),
        "books5" => Some(5),
        _ => None,
    }
}

/// `{"op":"<op>","args":[{"channel":"<channel>","instId":"<sym>"},…]}`.
pub fn op_request(op: &str, channel: &str, symbols: &[String]) -> String {
    let args: Vec<serde_json::Value> = symbols
        .iter()
        .map(|s| serde_json::json!({"channel": channel, "instId": s}))
        .collect();
    serde_json::json!({"op": op, "args": args}).to_string()
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Option<&'a str>,
    #[serde(borrow)]
    arg: Option<Arg<'a>>,
    #[serde(borrow)]
    action: Option<&'a str>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    code: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    msg: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Arg<'a> {
    #[serde(borrow)]
    channel: &'a str,
    #[serde(borrow, rename = "instId")]
    inst_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct TradeData<'a> {
    #[serde(borrow, rename = "instId")]
    inst_id: Option<&'a str>,
    #[serde(borrow, rename = "tradeId")]
    trade_id: &'a str,
    #[serde(borrow)]
    px: &'a str,
    #[serde(borrow)]
    sz: &'a str,
    #[serde(borrow)]
    side: &'a str,
    #[serde(borrow)]
    ts: &'a str,
}

#[derive(Deserialize)]
struct TickerData<'a> {
    #[serde(borrow, rename = "instId")]
    inst_id: Option<&'a str>,
    #[serde(borrow, rename = "bidPx", default)]
    bid_px: &'a str,
    #[serde(borrow, rename = "bidSz", default)]
    bid_sz: &'a str,
    #[serde(borrow, rename = "askPx", default)]
    ask_px: &'a str,
    #[serde(borrow, rename = "askSz", default)]
    ask_sz: &'a str,
    #[serde(borrow)]
    ts: Option<&'a str>,
}

#[derive(Deserialize)]
struct BookData<'a> {
    #[serde(borrow)]
    asks: Option<&'a RawValue>,
    #[serde(borrow)]
    bids: Option<&'a RawValue>,
    #[serde(borrow)]
    ts: Option<&'a str>,
    checksum: Option<i64>,
    #[serde(rename = "seqId")]
    seq_id: Option<i64>,
    #[serde(rename = "prevSeqId")]
    prev_seq_id: Option<i64>,
    #[serde(borrow, rename = "instId")]
    inst_id: Option<&'a str>,
}

/// One book entry of a message and where its bids and asks sit in the level buffers (OKX sends
/// one entry a message; the array allows more).
type BookEntry<'a> = (BookData<'a>, Range<usize>, Range<usize>);

/// A decimal field that may be empty (`""`: the venue has no value) → [`ABSENT`].
fn opt_fixed(field: &'static str, s: &str) -> Result<i64, ParseError> {
    if s.is_empty() {
        Ok(ABSENT)
    } else {
        fixed_field(field, s)
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

/// Byte range of `part` inside `whole` (`part` must be a slice of it, as borrowed strings are).
fn span_in(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let range = start..start.checked_add(part.len())?;
    whole.get(range.clone()).map(|_| range)
}

/// Parser state for one OKX connection: a book per instrument, reusable buffers.
#[derive(Default)]
pub struct OkxParser {
    /// Books by instId.
    books: FxHashMap<String, OkxBook>,
    /// Book channel each instrument was subscribed on (for its resubscribe), by instId.
    book_channel: FxHashMap<String, String>,
    /// The feed's symbols: `liquidation-orders` reports every instrument of a type, and only
    /// these are emitted (all when empty, as in `mdrelay decode`).
    symbols: rustc_hash::FxHashSet<String>,
    /// Bid levels of the message being parsed.
    bids: Vec<RawLevel>,
    /// Ask levels of the message being parsed.
    asks: Vec<RawLevel>,
    /// Levels of the book event being emitted.
    out_bids: Vec<Level>,
    /// Levels of the book event being emitted.
    out_asks: Vec<Level>,
    /// Requests queued for [`VenueParser::drain_outgoing`], oldest first.
    outgoing: Vec<String>,
    /// Status detail text of the event being emitted.
    detail: String,
    /// The first typed error raised inside a deserializer during the current parse.
    err: ErrSlot,
    /// Checksum and sequence counters.
    stats: BookStats,
}

impl OkxParser {
    /// A parser with no book yet.
    pub fn new() -> OkxParser {
        OkxParser::default()
    }

    /// Checksums verified / mismatched / zero and seqId breaks so far.
    pub fn book_stats(&self) -> BookStats {
        self.stats
    }

    /// The local book of `inst_id`, if a book message for it has been seen.
    pub fn book(&self, inst_id: &str) -> Option<&L2Book> {
        self.books.get(inst_id).map(|b| &b.book)
    }

    fn trades(
        &mut self,
        data: &str,
        arg_inst: Option<&str>,
        sink: &mut Sink<'_>,
    ) -> Result<(), ParseError> {
        each::<TradeData<'_>, _>(data, &self.err, |t| {
            let side = match t.side {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                _ => return Err(ParseError::Invalid("trade side is not buy/sell")),
            };
            let trade = Trade {
                price: fixed_field("px", t.px)?,
                size: size("sz", t.sz)?,
                side,
                trade_id: crate::market::fixed::parse_u64(t.trade_id),
                exchange_ts_ns: Some(ms_str_to_ns(t.ts)?),
            };
            let sym = t
                .inst_id
                .or(arg_inst)
                .ok_or(ParseError::Invalid("trade without instId"))?;
            sink(Some(sym), &Event::Trade(trade));
            Ok(())
        })
    }

    fn tickers(
        &mut self,
        data: &str,
        arg_inst: Option<&str>,
        sink: &mut Sink<'_>,
    ) -> Result<(), ParseError> {
        each::<TickerData<'_>, _>(data, &self.err, |t| {
            let quote = Quote {
                bid_price: opt_fixed("bidPx", t.bid_px)?,
                bid_size: opt_fixed("bidSz", t.bid_sz)?,
                ask_price: opt_fixed("askPx", t.ask_px)?,
                ask_size: opt_fixed("askSz", t.ask_sz)?,
                exchange_ts_ns: t.ts.map(ms_str_to_ns).transpose()?,
            };
            let sym = t
                .inst_id
                .or(arg_inst)
                .ok_or(ParseError::Invalid("ticker without instId"))?;
            sink(Some(sym), &Event::Quote(quote));
            Ok(())
        })
    }

    /// `bbo-tbt`: a one-level book a side, normalized to a quote.
    fn bbo(
        &mut self,
        data: &str,
        arg_inst: Option<&str>,
        sink: &mut Sink<'_>,
    ) -> Result<(), ParseError> {
        let err = &self.err;
        each::<BookData<'_>, _>(data, err, |b| {
            let top = |side: Option<&RawValue>, pf, sf| -> Result<(i64, i64), ParseError> {
                let mut best = (ABSENT, ABSENT);
                if let Some(levels) = side {
                    let mut first = true;
                    each::<Row<'_>, _>(levels.get(), err, |r| {
                        if first {
                            best = (fixed_field(pf, r.price)?, size(sf, r.size)?);
                            first = false;
                        }
                        Ok(())
                    })?;
                }
                Ok(best)
            };
            let (bid_price, bid_size) = top(b.bids, "bids price", "bids size")?;
            let (ask_price, ask_size) = top(b.asks, "asks price", "asks size")?;
            let sym = b
                .inst_id
                .or(arg_inst)
                .ok_or(ParseError::Invalid("bbo-tbt without instId"))?;
            let quote = Quote {
                bid_price,
                bid_size,
                ask_price,
                ask_size,
                exchange_ts_ns: b.ts.map(ms_str_to_ns).transpose()?,
            };
            sink(Some(sym), &Event::Quote(quote));
            Ok(())
        })
    }

    /// A book message: returns whether anything but a heartbeat was in it.
    fn book_message(
        &mut self,
        raw: &str,
        channel: &str,
        action: Option<&str>,
        data: &str,
        arg_inst: Option<&str>,
        sink: &mut Sink<'_>,
    ) -> Result<bool, ParseError> {
        let snapshot = match (channel, action) {
            ("books5", _) => true,
            (_, Some("snapshot")) => true,
            (_, Some("update")) => false,
            _ => {
                return Err(ParseError::Invalid(
                    "book message action is not snapshot/update",
                ))
            }
        };
        let depth = channel_depth(channel).unwrap_or(400);
        let mut any = false;
        // Parsed first (levels into the buffers, ranges into `raw`), applied after: the parse
        // borrows the buffers, the application the books.
        let mut entries: smallvec::SmallVec<[BookEntry<'_>; 1]> = smallvec::SmallVec::new();
        {
            let (bids, asks, err) = (&mut self.bids, &mut self.asks, &self.err);
            bids.clear();
            asks.clear();
            each::<BookData<'_>, _>(data, err, |b| {
                let (b0, a0) = (bids.len(), asks.len());
                for (side, out, pf, sf) in [
                    (b.bids, &mut *bids, "bids price", "bids size"),
                    (b.asks, &mut *asks, "asks price", "asks size"),
                ] {
                    let Some(levels) = side else { continue };
                    each::<Row<'_>, _>(levels.get(), err, |r| {
                        let (Some(px), Some(sz)) = (span_in(raw, r.price), span_in(raw, r.size))
                        else {
                            return Err(ParseError::Invalid("level outside the message"));
                        };
                        out.push(RawLevel {
                            level: Level {
                                price: fixed_field(pf, r.price)?,
                                size: size(sf, r.size)?,
                            },
                            px,
                            sz,
                        });
                        Ok(())
                    })?;
                }
                let (b1, a1) = (bids.len(), asks.len());
                entries.push((b, b0..b1, a0..a1));
                Ok(())
            })?;
        }
        for (b, br, ar) in entries {
            let sym = b
                .inst_id
                .or(arg_inst)
                .ok_or(ParseError::Invalid("book message without instId"))?;
            let ts = b.ts.map(ms_str_to_ns).transpose()?;
            let (Some(eb), Some(ea)) = (self.bids.get(br), self.asks.get(ar)) else {
                continue; // unreachable: the ranges were taken from these buffers
            };
            if !self.books.contains_key(sym) {
                self.books.insert(sym.to_owned(), OkxBook::new(depth));
            }
            if !self.book_channel.contains_key(sym) {
                self.book_channel.insert(sym.to_owned(), channel.to_owned());
            }
            let Some(st) = self.books.get_mut(sym) else {
                continue;
            };
            let brk = st.check_seq(snapshot, b.prev_seq_id, b.seq_id);
            if !snapshot && eb.is_empty() && ea.is_empty() && brk.is_none() {
                // Heartbeat: nothing changed (the seqId may repeat).
                continue;
            }
            any = true;
            if brk.is_some() {
                st.on_break(&mut self.stats);
            }
            self.out_bids.clear();
            self.out_asks.clear();
            st.apply(
                raw,
                snapshot,
                eb,
                ea,
                &mut self.out_bids,
                &mut self.out_asks,
            );
            let verdict = match brk {
                Some(v) => v,
                None => st.verify(b.checksum, &mut self.stats),
            };
            let (out_bids, out_asks) = if snapshot {
                self.out_bids.clear();
                self.out_asks.clear();
                self.out_bids.extend(st.book.bids());
                self.out_asks.extend(st.book.asks());
                (&self.out_bids, &self.out_asks)
            } else {
                // The message's levels, then removals of levels pushed beyond the depth.
                let removed_b = std::mem::take(&mut self.out_bids);
                let removed_a = std::mem::take(&mut self.out_asks);
                self.out_bids.extend(eb.iter().map(|l| l.level));
                self.out_bids.extend_from_slice(&removed_b);
                self.out_asks.extend(ea.iter().map(|l| l.level));
                self.out_asks.extend_from_slice(&removed_a);
                (&self.out_bids, &self.out_asks)
            };
            sink(
                Some(sym),
                &Event::Book(BookUpdate {
                    snapshot,
                    bids: out_bids,
                    asks: out_asks,
                    venue_sequence: b.seq_id.and_then(|s| u64::try_from(s).ok()),
                    exchange_ts_ns: ts,
                    may_be_bad: !st.in_sync,
                }),
            );
            let resync = match verdict {
                Verdict::Mismatch { venue, local } => {
                    self.detail.clear();
                    let _ = write!(
                        self.detail,
                        "book checksum: venue {venue}, local book {local}"
                    );
                    sink(
                        Some(sym),
                        &Event::Status(Status {
                            code: StatusCode::ChecksumMismatch,
                            count: st.resyncs,
                            detail: &self.detail,
                        }),
                    );
                    true
                }
                Verdict::Break { expected, prev } => {
                    self.detail.clear();
                    let _ = write!(
                        self.detail,
                        "seqId chain broken: prevSeqId {prev}, book at seqId {expected}"
                    );
                    sink(
                        Some(sym),
                        &Event::Status(Status {
                            code: StatusCode::Gap,
                            count: 1,
                            detail: &self.detail,
                        }),
                    );
                    true
                }
                _ => false,
            };
            if resync {
                sink(
                    Some(sym),
                    &Event::Status(Status {
                        code: StatusCode::Resync,
                        count: st.resyncs,
                        detail: "book marked bad; resubscribing for a fresh snapshot",
                    }),
                );
                let symbols = [sym.to_owned()];
                let ch = self.book_channel.get(sym).map_or(channel, String::as_str);
                self.outgoing.push(op_request("unsubscribe", ch, &symbols));
                self.outgoing.push(op_request("subscribe", ch, &symbols));
            }
            let crossed = st.book.is_crossed();
            if crossed && !st.crossed {
                sink(
                    Some(sym),
                    &Event::Status(Status {
                        code: StatusCode::CrossedBook,
                        count: 1,
                        detail: "best bid at or above best ask after a book message",
                    }),
                );
            }
            st.crossed = crossed;
        }
        Ok(any)
    }
}

impl VenueParser for OkxParser {
    fn venue(&self) -> Venue {
        Venue::Okx
    }

    /// One request per channel, every symbol in it:
    /// `{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"},…]}`.
    fn subscribe_requests(&mut self, sub: &Subscription) -> Vec<String> {
        for c in &sub.channels {
            if channel_depth(c).is_some() {
                for s in &sub.symbols {
                    self.book_channel.insert(s.clone(), c.clone());
                }
            }
        }
        self.symbols = sub.symbols.iter().cloned().collect();
        let mut out = Vec::with_capacity(sub.channels.len());
        for c in &sub.channels {
            if c == "liquidation-orders" {
                // One argument per instrument type of the feed's symbols.
                let mut types: Vec<&str> = sub
                    .symbols
                    .iter()
                    .filter_map(|s| okx_derivs::inst_type(s))
                    .collect();
                types.sort_unstable();
                types.dedup();
                let args: Vec<serde_json::Value> = types
                    .iter()
                    .map(|t| serde_json::json!({"channel": c, "instType": t}))
                    .collect();
                if !args.is_empty() {
                    out.push(serde_json::json!({"op": "subscribe", "args": args}).to_string());
                }
                continue;
            }
            out.push(op_request("subscribe", c, &sub.symbols));
        }
        out
    }

    fn drain_outgoing(&mut self, out: &mut Vec<String>) {
        out.append(&mut self.outgoing);
    }

    fn app_ping(&self) -> Option<(&'static str, Duration)> {
        Some(("ping", PING_INTERVAL))
    }

    fn on_disconnect(&mut self, sink: &mut Sink<'_>) {
        let _ = sink;
        // Books wait for the snapshot of the next subscription.
        for b in self.books.values_mut() {
            b.in_sync = false;
        }
        self.outgoing.clear();
    }

    fn parse(
        &mut self,
        raw: &str,
        recv_ts_ns: u64,
        sink: &mut Sink<'_>,
    ) -> Result<Parsed, ParseError> {
        let _ = recv_ts_ns;
        if raw == "pong" {
            return Ok(Parsed::Control);
        }
        self.err.clear();
        let env: Envelope<'_> = serde_json::from_str(raw)?;
        if let Some(event) = env.event {
            return match event {
                "error" => Err(ParseError::Unsupported(format!(
                    "error: {} {}",
                    env.code.as_deref().unwrap_or(""),
                    env.msg.as_deref().unwrap_or("")
                ))),
                _ => Ok(Parsed::Control),
            };
        }
        let (Some(arg), Some(data)) = (env.arg, env.data) else {
            return Err(ParseError::Invalid("message without event, arg or data"));
        };
        let data = data.get();
        let inst = arg.inst_id;
        match arg.channel {
            "trades" | "trades-all" => self.trades(data, inst, sink)?,
            "tickers" => self.tickers(data, inst, sink)?,
            "bbo-tbt" => self.bbo(data, inst, sink)?,
            "mark-price" | "funding-rate" => okx_derivs::marks(data, &self.err, sink)?,
            "open-interest" => okx_derivs::open_interest(data, &self.err, sink)?,
            "liquidation-orders" => {
                let symbols = &self.symbols;
                let wanted = |s: &str| symbols.is_empty() || symbols.contains(s);
                okx_derivs::liquidations(data, &self.err, &wanted, sink)?;
            }
            c if channel_depth(c).is_some() => {
                if !self.book_message(raw, c, env.action, data, inst, sink)? {
                    return Ok(Parsed::Control);
                }
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

    const CAPTURE: &str = "okx/books_trades_tickers_20220513.txt.gz";

    fn capture() -> Vec<String> {
        recording::read_all(&fixture(CAPTURE))
            .expect("okx capture")
            .into_iter()
            .map(|r| r.raw)
            .collect()
    }

    /// The capture's book line `i` with `seqId`/`prevSeqId` added (the 2022 capture predates
    /// them; the fields are written as OKX documents them, before `ts`).
    fn with_seq(line: &str, prev: i64, seq: i64) -> String {
        line.replacen(
            r#""ts":"#,
            &format!(r#""prevSeqId":{prev},"seqId":{seq},"ts":"#),
            1,
        )
    }

    #[test]
    fn every_capture_checksum_verifies() {
        let mut p = OkxParser::new();
        let (mut data, mut control) = (0, 0);
        for l in capture() {
            let (r, out) = run(&mut p, &l);
            match r {
                Ok(Parsed::Data) => data += 1,
                Ok(Parsed::Control) => control += 1,
                Ok(Parsed::Filtered) => panic!("nothing is filtered on okx: {l}"),
                Err(e) => panic!("{e}: {l}"),
            }
            assert!(out.iter().all(|e| !e.starts_with("status")), "{out:?}");
            assert!(out.iter().all(|e| !e.contains("bad=true")), "{out:?}");
        }
        assert_eq!((data, control), (200, 12));
        assert_eq!(
            p.book_stats(),
            BookStats {
                checksums_verified: 192,
                checksums_mismatched: 0,
                checksums_zero: 0,
                sequence_breaks: 0
            }
        );
        let mut sent = Vec::new();
        p.drain_outgoing(&mut sent);
        assert!(sent.is_empty());
        for sym in ["BTC-USD-220527", "UNI-USD-SWAP"] {
            let b = p.book(sym).unwrap();
            assert!(
                !b.is_crossed() && b.bid_levels() > 25 && b.ask_levels() > 25,
                "{sym}"
            );
        }
    }

    #[test]
    fn each_message_kind() {
        let lines = capture();
        let cases: &[(usize, Parsed, &[&str])] = &[
            (0, Parsed::Control, &[]), // subscribe ack
            (12, Parsed::Data, &["quote BTC-USD-220527 30210.4x4 / 30220.1x3 t=Some(1652459223003000000)"]),
            (14, Parsed::Data, &["trade BTC-USD-220527 buy 30218.8x1 t=Some(1652459199958000000) id=Some(7849)"]),
            (15, Parsed::Data, &["trade UNI-USD-SWAP sell 5.123x100 t=Some(1652459215150000000) id=Some(12883020)"]),
            (16, Parsed::Data, &["snapshot BTC-USD-220527 bids=72 asks=64 best=30233.6x3/30238.8x2 t=Some(1652459225393000000) bad=false"]),
            (18, Parsed::Data, &["update BTC-USD-220527 bids=[30182.6x452] asks=[30249.4x0,30261x4,30310.3x19] t=Some(1652459225464000000) bad=false"]),
        ];
        let mut p = OkxParser::new();
        for (i, parsed, want) in cases {
            let (r, out) = run(&mut p, &lines[*i]);
            assert_eq!(r, Ok(*parsed), "line {i}");
            assert_eq!(out, *want, "line {i}");
        }
        assert_eq!(p.book_stats().checksums_verified, 2);
        let control = [
            "pong",
            r#"{"event":"unsubscribe","arg":{"channel":"books","instId":"X"},"connId":"a"}"#,
            r#"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade.","connId":"a"}"#,
            r#"{"event":"channel-conn-count","channel":"books","connCount":"2","connId":"a"}"#,
        ];
        for raw in control {
            assert_eq!(run(&mut p, raw), (Ok(Parsed::Control), vec![]), "{raw}");
        }
        // bbo-tbt and books5, as OKX documents them.
        let (r, out) = run(
            &mut p,
            r#"{"arg":{"channel":"bbo-tbt","instId":"BCH-USDT-SWAP"},"data":[{"asks":[["111.06","55154","0","2"]],"bids":[["111.05","57745","0","2"]],"ts":"1670324386802","seqId":363996337}]}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(
            out,
            ["quote BCH-USDT-SWAP 111.05x57745 / 111.06x55154 t=Some(1670324386802000000)"]
        );
        let (r, out) = run(
            &mut p,
            r#"{"arg":{"channel":"books5","instId":"BCH-USDT-SWAP"},"data":[{"asks":[["111.06","55154","0","2"],["111.07","53276","0","2"]],"bids":[["111.05","57745","0","2"],["111.04","57109","0","2"]],"instId":"BCH-USDT-SWAP","ts":"1670324386802","seqId":363996337}]}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(out, ["snapshot BCH-USDT-SWAP bids=2 asks=2 best=111.05x57745/111.06x55154 t=Some(1670324386802000000) bad=false"]);
    }

    #[test]
    fn derivatives_channels() {
        // Push examples as the OKX v5 docs show them.
        let mut p = OkxParser::new();
        let cases: &[(&str, &str)] = &[
            (
                r#"{"arg":{"channel":"mark-price","instId":"LTC-USD-190628"},"data":[{"instType":"FUTURES","instId":"LTC-USD-190628","markPx":"0.1","ts":"1597026383085"}]}"#,
                "mark LTC-USD-190628 Mark { mark_price: 10000000, index_price: -9223372036854775808, settle_price: -9223372036854775808, funding_rate: -9223372036854775808, next_funding_ns: None, exchange_ts_ns: Some(1597026383085000000) }",
            ),
            (
                r#"{"arg":{"channel":"funding-rate","instId":"BTC-USD-SWAP"},"data":[{"fundingRate":"0.0001875391284828","fundingTime":"1700726400000","instId":"BTC-USD-SWAP","instType":"SWAP","method":"current_period","maxFundingRate":"0.00375","minFundingRate":"-0.00375","nextFundingRate":"","nextFundingTime":"1700755200000","premium":"0.0001233824646391","settFundingRate":"0.0001699799259033","settState":"settled","ts":"1700724675402"}]}"#,
                "mark BTC-USD-SWAP Mark { mark_price: -9223372036854775808, index_price: -9223372036854775808, settle_price: -9223372036854775808, funding_rate: 187539128482800, next_funding_ns: Some(1700726400000000000), exchange_ts_ns: Some(1700724675402000000) }",
            ),
            (
                r#"{"arg":{"channel":"open-interest","instId":"LTC-USD-SWAP"},"data":[{"instType":"SWAP","instId":"LTC-USD-SWAP","oi":"5000","oiCcy":"555.55","oiUsd":"50000","ts":"1597026383085"}]}"#,
                "open_interest LTC-USD-SWAP OpenInterest { open_interest: 500000000000, value: 5000000000000, exchange_ts_ns: Some(1597026383085000000) }",
            ),
            (
                r#"{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkLoss":"0","bkPx":"0.007831","ccy":"","posSide":"short","side":"buy","sz":"13","ts":"1692266434010"}],"instFamily":"IOST-USDT","instId":"IOST-USDT-SWAP","instType":"SWAP","uly":"IOST-USDT"}]}"#,
                "liquidation IOST-USDT-SWAP Liquidation { side: Buy, price: 783100, avg_price: -9223372036854775808, size: 1300000000, filled_size: -9223372036854775808, status: Unknown, exchange_ts_ns: Some(1692266434010000000) }",
            ),
        ];
        for (raw, want) in cases {
            let (r, out) = run(&mut p, raw);
            assert_eq!(r, Ok(Parsed::Data), "{raw}");
            assert_eq!(out, [*want], "{raw}");
        }
        // Liquidations of instruments the feed did not ask for are not emitted.
        let reqs = p.subscribe_requests(&Subscription {
            symbols: vec![
                "BTC-USDT-SWAP".into(),
                "BTC-USD-220527".into(),
                "BTC-USDT".into(),
            ],
            channels: vec!["liquidation-orders".into()],
            book_depth: 0,
        });
        assert_eq!(
            reqs,
            [
                r#"{"args":[{"channel":"liquidation-orders","instType":"FUTURES"},{"channel":"liquidation-orders","instType":"SWAP"}],"op":"subscribe"}"#
            ]
        );
        let (r, out) = run(&mut p, cases[3].0);
        assert_eq!((r, out), (Ok(Parsed::Data), vec![]));
    }

    #[test]
    fn checksum_mismatch_resubscribes_that_instrument_only() {
        let lines = capture();
        let mut p = OkxParser::new();
        for l in &lines[..18] {
            let _ = run(&mut p, l);
        }
        let bad = lines[18].replace("-914047754", "-914047755");
        let (r, out) = run(&mut p, &bad);
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].ends_with("bad=true"));
        assert_eq!(out[1], "status BTC-USD-220527 checksum_mismatch 1");
        assert_eq!(out[2], "status BTC-USD-220527 resync 1");
        let mut sent = Vec::new();
        p.drain_outgoing(&mut sent);
        assert_eq!(
            sent,
            [
                r#"{"args":[{"channel":"books","instId":"BTC-USD-220527"}],"op":"unsubscribe"}"#,
                r#"{"args":[{"channel":"books","instId":"BTC-USD-220527"}],"op":"subscribe"}"#,
            ]
        );
        // The other instrument goes on verifying; the bad one is flagged, not re-reported.
        for l in &lines[19..40] {
            let (_, out) = run(&mut p, l);
            for e in &out {
                assert!(!e.starts_with("status"), "{e}");
                if e.contains("UNI-USD-SWAP") {
                    assert!(e.ends_with("bad=false"), "{e}");
                } else {
                    assert!(e.ends_with("bad=true"), "{e}");
                }
            }
        }
        p.drain_outgoing(&mut sent);
        assert_eq!(sent.len(), 2, "one resubscribe per break");
        assert_eq!(p.book_stats().checksums_mismatched, 1);
        // A fresh snapshot clears the flag.
        let (_, out) = run(&mut p, &lines[16]);
        assert!(out[0].ends_with("bad=false"), "{out:?}");
    }

    #[test]
    fn zero_checksum_is_never_a_mismatch() {
        let lines = capture();
        let mut p = OkxParser::new();
        for l in &lines[..18] {
            let _ = run(&mut p, l);
        }
        let zero = lines[18].replace("-914047754", "0");
        let (_, out) = run(&mut p, &zero);
        assert_eq!(out.len(), 1);
        assert!(out[0].ends_with("bad=false"));
        assert_eq!(p.book_stats().checksums_zero, 1);
        assert_eq!(p.book_stats().checksums_mismatched, 0);
    }

    #[test]
    fn seq_id_chain_with_heartbeat_reset_and_break() {
        let lines = capture();
        let snap = with_seq(&lines[16], -1, 100);
        let upd = &lines[18];
        let mut p = OkxParser::new();
        let (_, out) = run(&mut p, &snap);
        assert!(out[0].starts_with("snapshot") && out[0].ends_with("bad=false"));
        // Continues the chain.
        let (_, out) = run(&mut p, &with_seq(upd, 100, 105));
        assert_eq!(out.len(), 1, "{out:?}");
        // A heartbeat repeats the seqId: control, no event, no break.
        let hb = r#"{"arg":{"channel":"books","instId":"BTC-USD-220527"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1652459225500","checksum":0,"prevSeqId":105,"seqId":105}]}"#;
        assert_eq!(run(&mut p, hb), (Ok(Parsed::Control), vec![]));
        // A sequence reset (seqId below prevSeqId) still continues the chain.
        let reset = r#"{"arg":{"channel":"books","instId":"BTC-USD-220527"},"action":"update","data":[{"asks":[],"bids":[["30182.6","451","0","1"]],"ts":"1652459225600","checksum":0,"prevSeqId":105,"seqId":3}]}"#;
        let (_, out) = run(&mut p, reset);
        assert_eq!(out, ["update BTC-USD-220527 bids=[30182.6x451] asks=[] t=Some(1652459225600000000) bad=false"]);
        // A break: prevSeqId 7 after seqId 3.
        let brk = r#"{"arg":{"channel":"books","instId":"BTC-USD-220527"},"action":"update","data":[{"asks":[],"bids":[["30182.6","450","0","1"]],"ts":"1652459225700","checksum":0,"prevSeqId":7,"seqId":8}]}"#;
        let (_, out) = run(&mut p, brk);
        assert_eq!(
            out,
            [
                "update BTC-USD-220527 bids=[30182.6x450] asks=[] t=Some(1652459225700000000) bad=true",
                "status BTC-USD-220527 gap 1",
                "status BTC-USD-220527 resync 1",
            ]
        );
        let mut sent = Vec::new();
        p.drain_outgoing(&mut sent);
        assert_eq!(sent.len(), 2);
        assert_eq!(p.book_stats().sequence_breaks, 1);
        // While bad, no further break is reported; the next snapshot restarts the chain.
        let (_, out) = run(&mut p, &with_seq(upd, 1, 2));
        assert_eq!(out.len(), 1);
        let (_, out) = run(&mut p, &snap);
        assert!(out[0].ends_with("bad=false"));
        let (_, out) = run(&mut p, &with_seq(upd, 100, 101));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].ends_with("bad=false"));
    }

    #[test]
    fn bad_input_is_a_typed_error_without_events() {
        let cases: &[(&str, &str)] = &[
            ("", "malformed"),
            ("ping", "malformed"),
            ("{}", "without event, arg or data"),
            (
                r#"{"event":"error","code":"60012","msg":"Invalid request"}"#,
                "error: 60012 Invalid request",
            ),
            (
                r#"{"arg":{"channel":"trades","instId":"A"},"data":[{"tradeId":"1","px":"1","sz":"1","side":"hold","ts":"1"}]}"#,
                "buy/sell",
            ),
            (
                r#"{"arg":{"channel":"trades","instId":"A"},"data":[{"tradeId":"1","px":"x","sz":"1","side":"buy","ts":"1"}]}"#,
                "field `px`",
            ),
            (
                r#"{"arg":{"channel":"trades","instId":"A"},"data":[{"tradeId":"1","px":"1","sz":"-1","side":"buy","ts":"1"}]}"#,
                "negative size",
            ),
            (
                r#"{"arg":{"channel":"trades","instId":"A"},"data":[{"tradeId":"1","px":"1","sz":"1","side":"buy","ts":"soon"}]}"#,
                "ms",
            ),
            (
                r#"{"arg":{"channel":"books","instId":"A"},"data":[{"asks":[],"bids":[]}]}"#,
                "snapshot/update",
            ),
            (
                r#"{"arg":{"channel":"books","instId":"A"},"action":"snapshot","data":[{"asks":[["1"]],"bids":[]}]}"#,
                "malformed",
            ),
            (
                r#"{"arg":{"channel":"books","instId":"A"},"action":"snapshot","data":[{"asks":[["1e999","1"]],"bids":[]}]}"#,
                "field `asks price`",
            ),
            (
                r#"{"arg":{"channel":"candle1m","instId":"A"},"data":[]}"#,
                "unsupported message kind `candle1m`",
            ),
        ];
        assert_refused(OkxParser::new, cases);
    }

    #[test]
    fn subscribe_requests_and_ping() {
        let mut p = OkxParser::new();
        let sub = Subscription {
            symbols: vec!["BTC-USDT".into(), "ETH-USDT".into()],
            channels: vec!["trades".into(), "books".into()],
            book_depth: 0,
        };
        assert_eq!(
            p.subscribe_requests(&sub),
            [
                r#"{"args":[{"channel":"trades","instId":"BTC-USDT"},{"channel":"trades","instId":"ETH-USDT"}],"op":"subscribe"}"#,
                r#"{"args":[{"channel":"books","instId":"BTC-USDT"},{"channel":"books","instId":"ETH-USDT"}],"op":"subscribe"}"#,
            ]
        );
        assert_eq!(p.app_ping(), Some(("ping", PING_INTERVAL)));
        assert!(PING_INTERVAL < Duration::from_secs(30));
    }
}
