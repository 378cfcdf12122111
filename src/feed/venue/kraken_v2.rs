//! Kraken WebSocket v2 (`wss://ws.kraken.com/v2`): subscribe requests, and the parser for the
//! `trade`, `ticker`, `book` and `instrument` channels, with a local L2 book per symbol whose CRC32
//! checksum is verified on every snapshot and update.
//!
//! Reference: Kraken "WebSocket API v2" documentation (channels `book`, `trade`, `ticker`,
//! `instrument`) and its "Book Checksum (v2)" guide. Points that matter:
//! - Messages are objects `{"channel":…,"type":"snapshot"|"update","data":[…]}`; `heartbeat` and
//!   `status` channel messages and method responses (`{"method":"subscribe","result":{…},
//!   "success":true,…}`, `pong`) are consumed quietly as [`Parsed::Control`].
//! - Prices and quantities are JSON numbers. Their exact text is taken as a raw JSON slice and fed
//!   to [`crate::market::fixed::parse`]; nothing goes through `f64`.
//! - Every element of a `trade` message's `data` is a trade; `side` is the taker's. On subscribe
//!   this parser asks for no trade snapshot (`"snapshot": false`): the last 50 trades replayed after
//!   a reconnect would be counted twice downstream.
//! - Book: a snapshot replaces the book, an update changes it level by level (`qty` 0 removes), and
//!   after each message the book is truncated to the subscribed depth. The checksum is CRC32 over
//!   the top 10 asks (lowest first) then the top 10 bids (highest first), each price and quantity
//!   formatted to the instrument's `price_precision` / `qty_precision`, `.` removed, leading zeros
//!   stripped ([`super::kraken_book::book_checksum`], the same rule as v1). JSON numbers drop
//!   trailing zeros (`0.566`), so the precision cannot be read off the message: it comes from
//!   `instrument` channel messages when seen, else from configuration
//!   ([`KrakenV2Parser::with_precisions`]).
//!   When a book is requested and some symbol has no configured precision, [`subscribe_requests`]
//!   also subscribes to `instrument` (first, so its snapshot normally arrives before the books).
//!
//! Book events, bad-book policy and crossed-book reporting are those of [`super::kraken_v1`]: after
//! a checksum mismatch the symbol's updates are still emitted but flagged `may_be_bad` and no longer
//! verified, `ChecksumMismatch` + `Resync` statuses go out, and an unsubscribe + subscribe of that
//! symbol's book is queued for [`VenueParser::drain_outgoing`]; the next snapshot clears the flag.
//!
//! Unknown precision: the checksum cannot be verified, which is said once per symbol with a
//! `ChecksumMismatch` status whose `count` is 0 and whose detail starts with `unverified` (no
//! mismatch was seen, but the book is not being checked; there is no dedicated status code). The
//! book itself is not flagged bad. While an `instrument` subscription sent by this parser has not
//! delivered its snapshot yet, the status is held back. Verification starts as soon as the
//! precision becomes known.
//!
//! Runs on the Kraken collector thread; never blocks; allocates only when a symbol is first seen,
//! when a buffer grows, on instrument messages and on the mismatch path.
//!
//! [`subscribe_requests`]: VenueParser::subscribe_requests

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use rustc_hash::FxHashMap;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::de::{from_str_seed, size_field, ErrSlot, LevelsSeed};
use super::kraken_book::{book_for, ChecksumStats, KrakenBook, Verdict};
use super::{fixed_field, ParseError, Parsed, Sink, Subscription, VenueParser};
use crate::base::timefmt::parse_rfc3339_ns;
use crate::market::book::L2Book;
use crate::market::event::{BookUpdate, Event, Level, Quote, Side, Status, StatusCode, Trade};
use crate::market::instrument::Venue;

/// Book depth Kraken uses when a subscription names none.
pub const DEFAULT_BOOK_DEPTH: u32 = 10;

/// The channels a feed may name (`heartbeat` and `status` come unasked).
pub const CHANNELS: &[&str] = &["trade", "ticker", "book", "instrument"];

/// A request of `method` (`subscribe`/`unsubscribe`) for `channel`, with `symbol` when non-empty
/// and `depth` when > 0.
pub fn method_request(method: &str, channel: &str, symbols: &[String], depth: u32) -> String {
    let mut params = serde_json::Map::new();
    params.insert("channel".into(), channel.into());
    if !symbols.is_empty() {
        params.insert("symbol".into(), symbols.into());
    }
    if depth > 0 {
        params.insert("depth".into(), depth.into());
    }
    if method == "subscribe" && channel == "trade" {
        params.insert("snapshot".into(), false.into());
    }
    serde_json::json!({"method": method, "params": params}).to_string()
}

/// Byte range of `part` inside `whole`; `part` must be a slice of `whole` (serde_json's borrowed
/// strings are), which is how symbols are kept across the parse without a lifetime or a copy.
fn span_in(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let range = start..start.checked_add(part.len())?;
    whole.get(range.clone()).map(|_| range)
}

/// One book entry of a message: a symbol and where its levels sit in the level buffers.
#[derive(Debug, Clone)]
struct BookEntry {
    /// The symbol's bytes in the raw message.
    symbol: Range<usize>,
    /// Its bids in the parser's bid buffer.
    bids: Range<usize>,
    /// Its asks in the parser's ask buffer.
    asks: Range<usize>,
    /// The venue's checksum of the book after this entry.
    checksum: Option<u32>,
    /// `timestamp`, ns.
    ts_ns: Option<u64>,
}

#[derive(Deserialize)]
struct TradeV2<'a> {
    #[serde(borrow)]
    symbol: &'a str,
    #[serde(borrow)]
    side: &'a str,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
    trade_id: Option<u64>,
    #[serde(borrow)]
    timestamp: &'a str,
}

#[derive(Deserialize)]
struct TickerV2<'a> {
    #[serde(borrow)]
    symbol: &'a str,
    #[serde(borrow)]
    bid: &'a RawValue,
    #[serde(borrow)]
    bid_qty: &'a RawValue,
    #[serde(borrow)]
    ask: &'a RawValue,
    #[serde(borrow)]
    ask_qty: &'a RawValue,
    #[serde(borrow)]
    timestamp: Option<&'a str>,
}

#[derive(Deserialize)]
struct LevelV2<'a> {
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
}

#[derive(Deserialize)]
struct InstrumentData<'a> {
    #[serde(borrow, default)]
    pairs: Vec<PairInfo<'a>>,
}

#[derive(Deserialize)]
struct PairInfo<'a> {
    #[serde(borrow)]
    symbol: &'a str,
    price_precision: Option<u32>,
    qty_precision: Option<u32>,
}

/// The `result` of a subscribe acknowledgement (only what sets a book's depth).
#[derive(Deserialize)]
struct AckResult<'a> {
    #[serde(borrow)]
    channel: Option<&'a str>,
    #[serde(borrow)]
    symbol: Option<&'a str>,
    depth: Option<u32>,
}

/// Where one message's data goes; borrowed from the parser for the parse.
struct Bufs<'v, 'de> {
    /// The whole raw message (symbols are kept as ranges into it).
    base: &'de str,
    bids: &'v mut Vec<Level>,
    asks: &'v mut Vec<Level>,
    entries: &'v mut Vec<BookEntry>,
    trades: &'v mut Vec<(Range<usize>, Trade)>,
    quotes: &'v mut Vec<(Range<usize>, Quote)>,
    err: &'v ErrSlot,
}

impl<'de> Bufs<'_, 'de> {
    fn span<E: de::Error>(&self, s: &'de str) -> Result<Range<usize>, E> {
        span_in(self.base, s).ok_or_else(|| {
            self.err
                .fail(ParseError::Invalid("symbol outside the message"))
        })
    }

    fn number<E: de::Error>(&self, field: &'static str, raw: &RawValue) -> Result<i64, E> {
        self.err.fixed(field, raw.get())
    }

    fn size<E: de::Error>(&self, field: &'static str, raw: &RawValue) -> Result<i64, E> {
        self.err.size(field, raw.get())
    }

    fn time<E: de::Error>(&self, s: &str) -> Result<u64, E> {
        parse_rfc3339_ns(s).ok_or_else(|| {
            self.err
                .fail(ParseError::Invalid("timestamp is not RFC 3339"))
        })
    }

    /// Parses `data` of `channel`.
    fn data<D: de::Deserializer<'de>>(self, channel: &str, d: D) -> Result<Data<'de>, D::Error> {
        Ok(match channel {
            "book" => {
                d.deserialize_seq(BookDataSeed { b: self })?;
                Data::Book
            }
            "trade" => {
                d.deserialize_seq(TradeDataSeed { b: self })?;
                Data::Trade
            }
            "ticker" => {
                d.deserialize_seq(TickerDataSeed { b: self })?;
                Data::Ticker
            }
            "instrument" => Data::Instrument(InstrumentData::deserialize(d)?),
            "heartbeat" | "status" => {
                IgnoredAny::deserialize(d)?;
                Data::Quiet
            }
            _ => {
                IgnoredAny::deserialize(d)?;
                Data::Unsupported
            }
        })
    }
}

/// What a message's `data` was parsed into.
enum Data<'de> {
    /// Nothing (no `data`).
    None,
    /// Book entries in the parser's buffers.
    Book,
    /// Trades in the parser's buffer.
    Trade,
    /// Quotes in the parser's buffer.
    Ticker,
    /// Instrument reference data.
    Instrument(InstrumentData<'de>),
    /// `heartbeat` / `status`.
    Quiet,
    /// A channel mdrelay does not normalize.
    Unsupported,
}

struct BookDataSeed<'v, 'de> {
    b: Bufs<'v, 'de>,
}

impl<'de> Visitor<'de> for BookDataSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of book entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut b = self.b;
        while seq
            .next_element_seed(BookEntrySeed { b: &mut b })?
            .is_some()
        {}
        Ok(())
    }
}

/// What a book side is, for serde's "expected …" text.
const LEVELS: &str = "an array of {price, qty} levels";

struct BookEntrySeed<'r, 'v, 'de> {
    b: &'r mut Bufs<'v, 'de>,
}

impl<'de> DeserializeSeed<'de> for BookEntrySeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BookEntrySeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a book entry object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let b = self.b;
        let (bid_start, ask_start) = (b.bids.len(), b.asks.len());
        let mut symbol = None;
        let mut checksum = None;
        let mut ts_ns = None;
        let (mut saw_bids, mut saw_asks) = (false, false);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "symbol" => symbol = Some(b.span(map.next_value::<&'de str>()?)?),
                "checksum" => checksum = Some(map.next_value::<u32>()?),
                "timestamp" => ts_ns = Some(b.time(map.next_value::<&'de str>()?)?),
                "bids" | "asks" => {
                    let bids = key == "bids";
                    // Each side once, in one contiguous run of the buffer.
                    if (bids && saw_bids) || (!bids && saw_asks) {
                        return Err(de::Error::duplicate_field(if bids {
                            "bids"
                        } else {
                            "asks"
                        }));
                    }
                    if bids {
                        saw_bids = true;
                    } else {
                        saw_asks = true;
                    }
                    let out = if bids { &mut *b.bids } else { &mut *b.asks };
                    // `[{"price":…,"qty":…}, …]`, appended.
                    let level = |l: LevelV2<'de>| {
                        Ok(Level {
                            price: fixed_field("price", l.price.get())?,
                            size: size_field("qty", l.qty.get())?,
                        })
                    };
                    map.next_value_seed(LevelsSeed::new(out, b.err, LEVELS, level))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let symbol = symbol.ok_or_else(|| de::Error::missing_field("symbol"))?;
        b.entries.push(BookEntry {
            symbol,
            bids: bid_start..b.bids.len(),
            asks: ask_start..b.asks.len(),
            checksum,
            ts_ns,
        });
        Ok(())
    }
}

struct TradeDataSeed<'v, 'de> {
    b: Bufs<'v, 'de>,
}

impl<'de> Visitor<'de> for TradeDataSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of trades")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let b = self.b;
        while let Some(t) = seq.next_element::<TradeV2<'de>>()? {
            let side = match t.side {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                _ => {
                    return Err(b
                        .err
                        .fail(ParseError::Invalid("trade side is not buy/sell")))
                }
            };
            let trade = Trade {
                price: b.number("price", t.price)?,
                size: b.size("qty", t.qty)?,
                side,
                trade_id: t.trade_id,
                exchange_ts_ns: Some(b.time(t.timestamp)?),
            };
            let span = b.span(t.symbol)?;
            b.trades.push((span, trade));
        }
        Ok(())
    }
}

struct TickerDataSeed<'v, 'de> {
    b: Bufs<'v, 'de>,
}

impl<'de> Visitor<'de> for TickerDataSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of tickers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let b = self.b;
        while let Some(t) = seq.next_element::<TickerV2<'de>>()? {
            let quote = Quote {
                bid_price: b.number("bid", t.bid)?,
                bid_size: b.size("bid_qty", t.bid_qty)?,
                ask_price: b.number("ask", t.ask)?,
                ask_size: b.size("ask_qty", t.ask_qty)?,
                exchange_ts_ns: t.timestamp.map(|s| b.time(s)).transpose()?,
            };
            let span = b.span(t.symbol)?;
            b.quotes.push((span, quote));
        }
        Ok(())
    }
}

/// A message's envelope.
struct Envelope<'de> {
    channel: Option<&'de str>,
    kind: Option<&'de str>,
    method: Option<&'de str>,
    result: Option<&'de RawValue>,
    success: Option<bool>,
    data: Data<'de>,
}

struct EnvelopeVisitor<'v, 'de> {
    b: Bufs<'v, 'de>,
}

impl<'de> DeserializeSeed<'de> for EnvelopeVisitor<'_, 'de> {
    type Value = Envelope<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

/// `data` parsed in place once `channel` is known.
struct DataSeed<'v, 'de, 'c> {
    b: Bufs<'v, 'de>,
    channel: &'c str,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_, 'de, '_> {
    type Value = Data<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.b.data(self.channel, d)
    }
}

impl<'de> Visitor<'de> for EnvelopeVisitor<'_, 'de> {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kraken v2 message object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut env = Envelope {
            channel: None,
            kind: None,
            method: None,
            result: None,
            success: None,
            data: Data::None,
        };
        let mut bufs = Some(self.b);
        let mut raw_data: Option<&'de RawValue> = None;
        let mut saw_data = false;
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "channel" => env.channel = Some(map.next_value()?),
                "type" => env.kind = Some(map.next_value()?),
                "method" => env.method = Some(map.next_value()?),
                "result" => env.result = Some(map.next_value()?),
                "success" => env.success = Some(map.next_value()?),
                "data" => {
                    if saw_data {
                        return Err(de::Error::duplicate_field("data"));
                    }
                    saw_data = true;
                    match (env.channel, bufs.take()) {
                        (Some(channel), Some(b)) => {
                            env.data = map.next_value_seed(DataSeed { b, channel })?;
                        }
                        (_, b) => {
                            bufs = b;
                            raw_data = Some(map.next_value()?);
                        }
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        // `data` before `channel`: parse it now that the channel is known.
        if let (Some(raw), Some(channel), Some(b)) = (raw_data, env.channel, bufs) {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            env.data = b.data(channel, &mut de).map_err(de::Error::custom)?;
        }
        Ok(env)
    }
}

/// Parser state for one Kraken v2 connection: precisions, a book per symbol, reusable buffers.
#[derive(Default)]
pub struct KrakenV2Parser {
    /// (price, qty) decimals per symbol: configured, then overwritten by `instrument` messages.
    precisions: FxHashMap<String, (u32, u32)>,
    /// Books by symbol (`BTC/USD`); an entry is created by the first book message or book ack.
    books: FxHashMap<String, KrakenBook>,
    /// Depth of book subscriptions sent by [`VenueParser::subscribe_requests`]; ≥ 1.
    book_depth: u32,
    /// True from sending an `instrument` subscription until instrument data (or a refusal)
    /// arrives; unknown-precision statuses are held back meanwhile.
    instrument_pending: bool,
    /// Bid levels of the message being parsed, all entries back to back.
    bids: Vec<Level>,
    /// Ask levels of the message being parsed.
    asks: Vec<Level>,
    /// Book entries of the message being parsed.
    entries: Vec<BookEntry>,
    /// Trades of the message being parsed, with their symbol's range in the message.
    trades: Vec<(Range<usize>, Trade)>,
    /// Quotes of the message being parsed, likewise.
    quotes: Vec<(Range<usize>, Quote)>,
    /// Bid levels of the book event being emitted.
    out_bids: Vec<Level>,
    /// Ask levels of the book event being emitted.
    out_asks: Vec<Level>,
    /// Requests queued for [`VenueParser::drain_outgoing`], oldest first.
    outgoing: Vec<String>,
    /// Status detail text of the event being emitted.
    detail: String,
    /// The first typed error raised inside a deserializer during the current parse.
    err: ErrSlot,
    /// Checksum counters.
    stats: ChecksumStats,
}

impl KrakenV2Parser {
    /// A parser that knows no precision until `instrument` messages arrive.
    pub fn new() -> KrakenV2Parser {
        KrakenV2Parser::with_precisions(HashMap::new())
    }

    /// A parser with configured (price_precision, qty_precision) per symbol, as the `instrument`
    /// channel would give them (`"BTC/USD" → (1, 8)`). Instrument messages still take precedence.
    pub fn with_precisions(precisions: HashMap<String, (u32, u32)>) -> KrakenV2Parser {
        KrakenV2Parser {
            precisions: precisions.into_iter().collect(),
            book_depth: DEFAULT_BOOK_DEPTH,
            ..KrakenV2Parser::default()
        }
    }

    /// The (price, qty) precision used for `symbol`'s checksums, if known.
    pub fn precision(&self, symbol: &str) -> Option<(u32, u32)> {
        self.precisions.get(symbol).copied()
    }

    /// Book checksums verified, mismatched and skipped so far.
    pub fn checksum_stats(&self) -> ChecksumStats {
        self.stats
    }

    /// The local book of `symbol`, if a book message for it has been seen.
    pub fn book(&self, symbol: &str) -> Option<&L2Book> {
        self.books.get(symbol).map(|b| &b.book)
    }

    fn on_ack(&mut self, env: &Envelope<'_>) {
        let Some(result) = env.result else {
            return;
        };
        let Ok(r) = serde_json::from_str::<AckResult<'_>>(result.get()) else {
            return;
        };
        match (r.channel, r.symbol, r.depth) {
            (Some("book"), Some(symbol), Some(depth)) if depth > 0 => {
                if let Some(st) = book_for(&mut self.books, symbol, depth_levels(self.book_depth)) {
                    st.depth = usize::try_from(depth).unwrap_or(usize::MAX);
                }
            }
            (Some("instrument"), _, _) if env.success == Some(false) => {
                self.instrument_pending = false;
            }
            _ => {}
        }
    }

    fn emit_books(
        &mut self,
        raw: &str,
        kind: Option<&str>,
        sink: &mut Sink<'_>,
    ) -> Result<(), ParseError> {
        let snapshot = match kind {
            Some("snapshot") => true,
            Some("update") => false,
            _ => {
                return Err(ParseError::Invalid(
                    "book message type is not snapshot/update",
                ))
            }
        };
        let Self {
            precisions,
            books,
            book_depth,
            instrument_pending,
            bids,
            asks,
            entries,
            out_bids,
            out_asks,
            outgoing,
            detail,
            stats,
            ..
        } = self;
        for e in entries.iter() {
            let (Some(symbol), Some(eb), Some(ea)) = (
                raw.get(e.symbol.clone()),
                bids.get(e.bids.clone()),
                asks.get(e.asks.clone()),
            ) else {
                continue; // unreachable: ranges were checked while parsing
            };
            let Some(st) = book_for(books, symbol, depth_levels(*book_depth)) else {
                continue;
            };
            st.apply(snapshot, eb, ea, out_bids, out_asks);
            let places = precisions.get(symbol).copied();
            let verdict = st.verify(e.checksum, places, stats);
            sink(
                Some(symbol),
                &Event::Book(BookUpdate {
                    snapshot,
                    bids: out_bids,
                    asks: out_asks,
                    venue_sequence: None,
                    exchange_ts_ns: e.ts_ns,
                    may_be_bad: !st.in_sync,
                }),
            );
            if verdict == Verdict::UnknownPrecision
                && !st.warned_unverifiable
                && !*instrument_pending
            {
                st.warned_unverifiable = true;
                sink(
                    Some(symbol),
                    &Event::Status(Status {
                        code: StatusCode::ChecksumMismatch,
                        count: 0,
                        detail: "unverified: book checksum cannot be checked, \
                                 price/qty precision of this symbol unknown",
                    }),
                );
            }
            st.report(verdict, symbol, detail, sink);
            if matches!(verdict, Verdict::Mismatch { .. }) {
                let symbols = [symbol.to_owned()];
                let depth = u32::try_from(st.depth).unwrap_or(u32::MAX);
                outgoing.push(method_request("unsubscribe", "book", &symbols, 0));
                outgoing.push(method_request("subscribe", "book", &symbols, depth));
            }
        }
        Ok(())
    }
}

/// Book depth `depth` (subscription or ack) as a level count; ≥ 1.
fn depth_levels(depth: u32) -> usize {
    usize::try_from(depth.max(1)).unwrap_or(usize::MAX)
}

impl VenueParser for KrakenV2Parser {
    fn venue(&self) -> Venue {
        Venue::Kraken
    }

    /// One request per channel, all symbols in each:
    /// `{"method":"subscribe","params":{"channel":"book","depth":N,"symbol":[…]}}` (depth for
    /// `book` only; `"snapshot":false` for `trade`), preceded by an `instrument` subscription when
    /// a book is requested for a symbol without configured precision.
    fn subscribe_requests(&mut self, sub: &Subscription) -> Vec<String> {
        let mut out = Vec::with_capacity(sub.channels.len() + 1);
        let book = sub.channels.iter().any(|c| c == "book");
        if book
            && !sub.channels.iter().any(|c| c == "instrument")
            && sub.symbols.iter().any(|s| !self.precisions.contains_key(s))
        {
            out.push(method_request("subscribe", "instrument", &[], 0));
            self.instrument_pending = true;
        }
        if book {
            self.book_depth = if sub.book_depth > 0 {
                sub.book_depth
            } else {
                DEFAULT_BOOK_DEPTH
            };
        }
        for c in &sub.channels {
            if c == "instrument" {
                self.instrument_pending = true;
                out.push(method_request("subscribe", c, &[], 0));
                continue;
            }
            let depth = if c == "book" { self.book_depth } else { 0 };
            out.push(method_request("subscribe", c, &sub.symbols, depth));
        }
        out
    }

    fn drain_outgoing(&mut self, out: &mut Vec<String>) {
        out.append(&mut self.outgoing);
    }

    fn parse(
        &mut self,
        raw: &str,
        recv_ts_ns: u64,
        sink: &mut Sink<'_>,
    ) -> Result<Parsed, ParseError> {
        let _ = recv_ts_ns;
        self.err.clear();
        self.bids.clear();
        self.asks.clear();
        self.entries.clear();
        self.trades.clear();
        self.quotes.clear();
        let seed = EnvelopeVisitor {
            b: Bufs {
                base: raw,
                bids: &mut self.bids,
                asks: &mut self.asks,
                entries: &mut self.entries,
                trades: &mut self.trades,
                quotes: &mut self.quotes,
                err: &self.err,
            },
        };
        let env = from_str_seed(raw, seed, &self.err)?;

        if env.method.is_some() {
            self.on_ack(&env);
            return Ok(Parsed::Control);
        }
        let Some(channel) = env.channel else {
            return Err(ParseError::Invalid("message without channel or method"));
        };
        match env.data {
            Data::Book => self.emit_books(raw, env.kind, sink)?,
            Data::Trade => {
                for (span, t) in &self.trades {
                    if let Some(symbol) = raw.get(span.clone()) {
                        sink(Some(symbol), &Event::Trade(*t));
                    }
                }
            }
            Data::Ticker => {
                for (span, q) in &self.quotes {
                    if let Some(symbol) = raw.get(span.clone()) {
                        sink(Some(symbol), &Event::Quote(*q));
                    }
                }
            }
            Data::Instrument(data) => {
                for p in data.pairs {
                    if let (Some(pp), Some(qp)) = (p.price_precision, p.qty_precision) {
                        match self.precisions.get_mut(p.symbol) {
                            Some(v) => *v = (pp, qp),
                            None => {
                                self.precisions.insert(p.symbol.to_owned(), (pp, qp));
                            }
                        }
                    }
                }
                self.instrument_pending = false;
                return Ok(Parsed::Control);
            }
            Data::Quiet => return Ok(Parsed::Control),
            Data::None if channel == "heartbeat" || channel == "status" => {
                return Ok(Parsed::Control)
            }
            Data::None => return Err(ParseError::Invalid("data message without data")),
            Data::Unsupported => return Err(ParseError::Unsupported(channel.to_owned())),
        }
        Ok(Parsed::Data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::testutil::fixture;
    use crate::feed::venue::testutil::{assert_refused, run};

    /// MATIC/USD and ALGO/USD as the `instrument` channel describes them (the precisions under
    /// which the docs' checksums reproduce).
    fn precisions() -> HashMap<String, (u32, u32)> {
        HashMap::from([
            ("MATIC/USD".to_owned(), (4, 8)),
            ("ALGO/USD".to_owned(), (5, 8)),
        ])
    }

    fn samples() -> Vec<String> {
        std::fs::read_to_string(fixture("samples/kraken_v2.jsonl"))
            .expect("samples")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_sample_parses_and_both_book_checksums_reproduce() {
        let lines = samples();
        let cases: &[(usize, Parsed, &[&str])] = &[
            (0, Parsed::Control, &[]), // a subscribe request, as the docs show it
            (1, Parsed::Control, &[]), // its ack
            (2, Parsed::Data, &["snapshot MATIC/USD bids=10 asks=10 best=0.5666x4831.75496356/0.5668x4410.79769741 t=Some(1696613755440295000) bad=false"]),
            // The update lands on the 10th bid; depth 10 (from the ack) keeps the book at 10.
            (3, Parsed::Data, &["update MATIC/USD bids=[0.5657x1098.3947558] asks=[] t=Some(1696613755440295000) bad=false"]),
            (4, Parsed::Data, &[
                "trade MATIC/USD buy 0.5147x6423.46326 t=Some(1695628116925533000) id=Some(4665846)",
                "trade MATIC/USD buy 0.5147x1136.19677815 t=Some(1695628176925603000) id=Some(4665847)",
            ]),
            (5, Parsed::Data, &["trade MATIC/USD sell 0.5117x40 t=Some(1695628177708706000) id=Some(4665906)"]),
            (6, Parsed::Data, &["quote ALGO/USD 0.10025x740 / 0.10036x1361.44813783 t=Some(1695632671742648000)"]),
            (7, Parsed::Data, &["quote ALGO/USD 0.10025x740 / 0.10035x740 t=Some(1695632671742648000)"]),
        ];
        assert_eq!(cases.len(), lines.len(), "every sample line has a case");
        let mut p = KrakenV2Parser::with_precisions(precisions());
        for (i, parsed, want) in cases {
            let (r, out) = run(&mut p, &lines[*i]);
            assert_eq!(r, Ok(*parsed), "line {i}");
            assert_eq!(out, *want, "line {i}");
        }
        assert_eq!(
            p.checksum_stats(),
            ChecksumStats {
                verified: 2,
                mismatched: 0,
                unverified: 0
            }
        );
        let mut sent = Vec::new();
        p.drain_outgoing(&mut sent);
        assert!(sent.is_empty());
    }

    #[test]
    fn only_the_instrument_precision_reproduces_the_docs_checksums() {
        let lines = samples();
        for (pp, qp, verified) in [(4, 8, 1), (5, 8, 0), (3, 8, 0), (4, 7, 0), (8, 8, 0)] {
            let mut p = KrakenV2Parser::with_precisions(HashMap::from([(
                "MATIC/USD".to_owned(),
                (pp, qp),
            )]));
            let _ = run(&mut p, &lines[2]);
            assert_eq!(p.checksum_stats().verified, verified, "({pp}, {qp})");
        }
    }

    #[test]
    fn instrument_messages_supply_the_precision() {
        let lines = samples();
        let mut p = KrakenV2Parser::new();
        let sub = Subscription {
            symbols: vec!["MATIC/USD".into()],
            channels: vec!["book".into()],
            book_depth: 10,
        };
        let reqs = p.subscribe_requests(&sub);
        assert_eq!(
            reqs[0],
            r#"{"method":"subscribe","params":{"channel":"instrument"}}"#
        );
        let instrument = r#"{"channel":"instrument","type":"snapshot","data":{"assets":[{"id":"USD","status":"enabled","precision":4,"precision_display":2,"borrowable":true,"collateral_value":1.0,"margin_rate":0.015}],"pairs":[{"symbol":"BTC/USD","base":"BTC","quote":"USD","status":"online","qty_precision":8,"qty_increment":1e-08,"price_precision":1,"cost_precision":5,"marginable":true,"has_index":true,"cost_min":0.5,"tick_size":0.1,"price_increment":0.1,"qty_min":0.0001},{"symbol":"MATIC/USD","base":"MATIC","quote":"USD","status":"online","qty_precision":8,"qty_increment":1e-08,"price_precision":4,"cost_precision":5,"marginable":true,"has_index":true,"cost_min":0.5,"tick_size":0.0001,"price_increment":0.0001,"qty_min":4}]}}"#;
        assert_eq!(run(&mut p, instrument), (Ok(Parsed::Control), vec![]));
        assert_eq!(p.precision("MATIC/USD"), Some((4, 8)));
        assert_eq!(p.precision("BTC/USD"), Some((1, 8)));
        for l in &lines[1..4] {
            let (r, out) = run(&mut p, l);
            assert!(r.is_ok(), "{r:?}");
            assert!(out.iter().all(|e| !e.starts_with("status")), "{out:?}");
        }
        assert_eq!(p.checksum_stats().verified, 2);
    }

    #[test]
    fn unknown_precision_is_said_once_per_symbol() {
        let lines = samples();
        let mut p = KrakenV2Parser::new();
        let (_, out) = run(&mut p, &lines[2]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1], "status MATIC/USD checksum_mismatch 0");
        let (_, out) = run(&mut p, &lines[3]);
        assert_eq!(out.len(), 1, "said once: {out:?}");
        assert!(
            out[0].ends_with("bad=false"),
            "an unverified book is not a bad book"
        );
        assert_eq!(
            p.checksum_stats(),
            ChecksumStats {
                verified: 0,
                mismatched: 0,
                unverified: 2
            }
        );

        // While our own instrument subscription is pending, the status is held back.
        let mut p = KrakenV2Parser::new();
        p.subscribe_requests(&Subscription {
            symbols: vec!["MATIC/USD".into()],
            channels: vec!["book".into()],
            book_depth: 0,
        });
        let (_, out) = run(&mut p, &lines[2]);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[test]
    fn checksum_mismatch_resyncs_the_symbol() {
        let lines = samples();
        let mut p = KrakenV2Parser::with_precisions(precisions());
        let _ = run(&mut p, &lines[2]);
        let bad = lines[3].replace("2114181697", "2114181698");
        let (r, out) = run(&mut p, &bad);
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(out, [
            "update MATIC/USD bids=[0.5657x1098.3947558] asks=[] t=Some(1696613755440295000) bad=true",
            "status MATIC/USD checksum_mismatch 1",
            "status MATIC/USD resync 1",
        ]);
        let mut sent = Vec::new();
        p.drain_outgoing(&mut sent);
        assert_eq!(
            sent,
            [
                r#"{"method":"unsubscribe","params":{"channel":"book","symbol":["MATIC/USD"]}}"#,
                r#"{"method":"subscribe","params":{"channel":"book","depth":10,"symbol":["MATIC/USD"]}}"#,
            ]
        );
        // Further updates: flagged, not verified, no second resubscribe.
        let (_, out) = run(&mut p, &lines[3]);
        assert_eq!(out.len(), 1);
        assert!(out[0].ends_with("bad=true"));
        p.drain_outgoing(&mut sent);
        assert_eq!(sent.len(), 2);
        // The next snapshot clears it, and its checksum verifies.
        let (_, out) = run(&mut p, &lines[2]);
        assert!(out[0].ends_with("bad=false"), "{out:?}");
        let (_, out) = run(&mut p, &lines[3]);
        assert!(out[0].ends_with("bad=false"), "{out:?}");
        assert_eq!(
            p.checksum_stats(),
            ChecksumStats {
                verified: 3,
                mismatched: 1,
                unverified: 1
            }
        );
    }

    #[test]
    fn truncation_to_the_subscribed_depth_before_the_checksum() {
        // Depth 10 (the default): a new best bid pushes the 10th bid (0.5657) out of scope, and
        // the emitted update removes it explicitly.
        let lines = samples();
        let mut p = KrakenV2Parser::with_precisions(precisions());
        let _ = run(&mut p, &lines[2]);
        let (_, out) = run(
            &mut p,
            r#"{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5667,"qty":1.5}],"asks":[],"timestamp":"2023-10-06T17:35:56Z"}]}"#,
        );
        assert_eq!(out, ["update MATIC/USD bids=[0.5667x1.5,0.5657x0] asks=[] t=Some(1696613756000000000) bad=false"]);
        let book = p.book("MATIC/USD").unwrap();
        assert_eq!(book.bid_levels(), 10);
        assert_eq!(book.best_bid().map(|l| l.price), Some(56_670_000));
    }

    #[test]
    fn data_before_channel_and_several_entries_per_message() {
        let mut p = KrakenV2Parser::with_precisions(precisions());
        let (r, out) = run(
            &mut p,
            r#"{"data":[{"symbol":"A/B","side":"sell","price":1e-3,"qty":2,"ord_type":"limit","trade_id":7,"timestamp":"2023-09-25T07:49:37Z"},{"symbol":"C/D","side":"buy","price":3.25,"qty":0.5,"ord_type":"market","trade_id":8,"timestamp":"2023-09-25T07:49:37.1Z"}],"type":"update","channel":"trade"}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(
            out,
            [
                "trade A/B sell 0.001x2 t=Some(1695628177000000000) id=Some(7)",
                "trade C/D buy 3.25x0.5 t=Some(1695628177100000000) id=Some(8)",
            ]
        );
        let (r, out) = run(
            &mut p,
            r#"{"channel":"book","type":"snapshot","data":[{"symbol":"A/B","bids":[{"price":1,"qty":1}],"asks":[{"price":2,"qty":1}]},{"symbol":"C/D","bids":[{"price":3,"qty":1}],"asks":[{"price":4,"qty":1}]}]}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(
            out,
            [
                "snapshot A/B bids=1 asks=1 best=1x1/2x1 t=None bad=false",
                "snapshot C/D bids=1 asks=1 best=3x1/4x1 t=None bad=false",
            ]
        );
    }

    #[test]
    fn control_messages_are_quiet() {
        let mut p = KrakenV2Parser::new();
        for raw in [
            r#"{"channel":"heartbeat"}"#,
            r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":12393906104898154338,"system":"online","version":"2.0.0"}]}"#,
            r#"{"method":"pong","req_id":1,"time_in":"2023-09-24T14:10:23.799685Z","time_out":"2023-09-24T14:10:23.799703Z"}"#,
            r#"{"error":"Currency pair not supported XYZ/USD","method":"subscribe","success":false,"symbol":"XYZ/USD","time_in":"2023-09-25T08:13:48.870180Z","time_out":"2023-09-25T08:13:48.870209Z"}"#,
        ] {
            assert_eq!(run(&mut p, raw), (Ok(Parsed::Control), vec![]), "{raw}");
        }
        // A book ack sets that symbol's depth.
        let (r, _) = run(
            &mut p,
            r#"{"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,"symbol":"A/B"},"success":true}"#,
        );
        assert_eq!(r, Ok(Parsed::Control));
        assert_eq!(p.books["A/B"].depth, 25);
    }

    #[test]
    fn bad_input_is_a_typed_error_without_events() {
        let cases: &[(&str, &str)] = &[
            ("", "malformed"),
            ("{", "malformed"),
            ("[]", "malformed"),
            ("{}", "without channel or method"),
            (r#"{"channel":"trade"}"#, "without data"),
            (r#"{"channel":"trade","data":{}}"#, "malformed"),
            (
                r#"{"channel":"trade","data":[{"symbol":"A/B","side":"buy","price":"1","qty":1,"trade_id":1,"timestamp":"2023-09-25T07:49:37Z"}]}"#,
                "field `price`: not a decimal",
            ),
            (
                r#"{"channel":"trade","data":[{"symbol":"A/B","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:49:37Z"},{"symbol":"A/B","side":"hold","price":1,"qty":1,"trade_id":2,"timestamp":"2023-09-25T07:49:37Z"}]}"#,
                "trade side is not buy/sell",
            ),
            (
                r#"{"channel":"trade","data":[{"symbol":"A/B","side":"buy","price":1e999,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:49:37Z"}]}"#,
                "out of range",
            ),
            (
                r#"{"channel":"trade","data":[{"symbol":"A/B","side":"buy","price":0.000000001,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:49:37Z"}]}"#,
                "beyond the 8th decimal place",
            ),
            (
                r#"{"channel":"trade","data":[{"symbol":"A/B","side":"buy","price":1,"qty":-1,"trade_id":1,"timestamp":"2023-09-25T07:49:37Z"}]}"#,
                "negative size",
            ),
            (
                r#"{"channel":"trade","data":[{"symbol":"A/B","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"yesterday"}]}"#,
                "RFC 3339",
            ),
            (
                r#"{"channel":"trade","data":[{"symbol":"A/B","side":"buy","price":1,"qty":1,"trade_id":-1,"timestamp":"2023-09-25T07:49:37Z"}]}"#,
                "malformed",
            ),
            (
                r#"{"channel":"ticker","data":[{"symbol":"A/B","bid":1,"bid_qty":1,"ask":1}]}"#,
                "malformed",
            ),
            (
                r#"{"channel":"book","type":"snapshot","data":[{"bids":[],"asks":[]}]}"#,
                "malformed",
            ),
            (
                r#"{"channel":"book","type":"snapshot","data":[{"symbol":"A/B","bids":[{"price":1}],"asks":[]}]}"#,
                "malformed",
            ),
            (
                r#"{"channel":"book","type":"snapshot","data":[{"symbol":"A/B","bids":[],"bids":[],"asks":[]}]}"#,
                "malformed",
            ),
            (
                r#"{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[],"asks":[],"checksum":4294967296}]}"#,
                "malformed",
            ),
            (
                r#"{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[{"price":1,"qty":1}],"asks":[]},{"symbol":"C/D","bids":[{"price":true,"qty":1}],"asks":[]}]}"#,
                "field `price`",
            ),
            (
                r#"{"channel":"book","type":"refresh","data":[{"symbol":"A/B","bids":[],"asks":[]}]}"#,
                "not snapshot/update",
            ),
            (
                r#"{"channel":"book","data":[{"symbol":"A/B","bids":[],"asks":[]}]}"#,
                "not snapshot/update",
            ),
            (
                r#"{"channel":"ohlc","type":"update","data":[]}"#,
                "unsupported message kind `ohlc`",
            ),
            (r#"{"channel":"heartbeat"} {}"#, "malformed"),
            (
                r#"{"channel":"book","type":"update","data":[],"data":[]}"#,
                "malformed",
            ),
        ];
        assert_refused(|| KrakenV2Parser::with_precisions(precisions()), cases);
    }

    #[test]
    fn subscribe_requests_shape() {
        let mut p = KrakenV2Parser::with_precisions(precisions());
        let sub = Subscription {
            symbols: vec!["MATIC/USD".into(), "ALGO/USD".into()],
            channels: vec!["trade".into(), "ticker".into(), "book".into()],
            book_depth: 25,
        };
        assert_eq!(
            p.subscribe_requests(&sub),
            [
                r#"{"method":"subscribe","params":{"channel":"trade","snapshot":false,"symbol":["MATIC/USD","ALGO/USD"]}}"#,
                r#"{"method":"subscribe","params":{"channel":"ticker","symbol":["MATIC/USD","ALGO/USD"]}}"#,
                r#"{"method":"subscribe","params":{"channel":"book","depth":25,"symbol":["MATIC/USD","ALGO/USD"]}}"#,
            ]
        );
    }
}
