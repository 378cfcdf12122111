//! Kraken WebSocket v1 (`wss://ws.kraken.com`, legacy): subscribe requests, and the parser for the
//! `trade`, `spread`, `ticker` and `book-N` channels, with a local L2 book per pair whose CRC32
//! checksum is verified on every update that carries one.
//!
//! Reference: Kraken "WebSockets API v1" documentation and its "Book Checksum" guide. Points that
//! matter:
//! - Data messages are arrays `[channelID, payload, channelName, pair]`; a book update may carry
//!   TWO payload objects (`{"a":…}, {"b":…,"c":…}`), the checksum in the last. Events
//!   (`systemStatus`, `subscriptionStatus`, `heartbeat`, `pong`, `error`) are objects and are
//!   consumed quietly as [`Parsed::Control`].
//! - A `trade` payload is an array of trades and every one of them is a trade. The side (`b`/`s`)
//!   is the taker's. Times are seconds since the epoch as decimal strings, converted to ns exactly.
//! - `ticker` `a`/`b` are `[price, wholeLotVolume, lotVolume]` with the whole-lot volume an integer;
//!   the quote size is the lot volume (index 2).
//! - Book levels are `[price, volume, timestamp]`, with a 4th element `"r"` on republished levels
//!   (treated like any other update). After every message the book is truncated to the subscribed
//!   depth (`book-10` → 10 levels a side): Kraken sends no removal for levels pushed out of scope.
//! - The checksum is CRC32 over the top 10 asks (lowest first) then the top 10 bids (highest first),
//!   each level's price then volume written with the venue's decimals, `.` removed and leading zeros
//!   stripped, concatenated. The decimals are those of the pair's strings, learned from the snapshot.
//!
//! Book events: a snapshot is emitted as the book's content after truncation (best first); an update
//! is emitted as the venue's levels followed by a size-0 level for every level the truncation
//! dropped, so a subscriber applying the events level by level holds exactly this book.
//!
//! Bad-book policy: after a checksum mismatch the pair's book is marked bad — the update that failed
//! and every later update are still applied and emitted, flagged `may_be_bad`, and are not verified
//! again — a `ChecksumMismatch` and a `Resync` status are emitted for the pair, and an unsubscribe +
//! subscribe for that pair alone is queued for [`VenueParser::drain_outgoing`]. The next snapshot
//! replaces the book and clears the flag. Updates before a pair's first snapshot are treated the same
//! way (flagged, unverified). A `CrossedBook` status is emitted when a message leaves the book
//! crossed and the previous one did not.
//!
//! Runs on the Kraken v1 collector thread; never blocks; allocates only when a pair is first seen,
//! when a buffer grows, and on the mismatch path.

use std::fmt;

use rustc_hash::FxHashMap;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::de::{from_str_seed, size_field, ErrSlot, LevelsSeed};
pub use super::kraken_book::{book_checksum, ChecksumStats, CHECKSUM_LEVELS};
use super::kraken_book::{book_for, KrakenBook, Verdict};
use super::{fixed_field, ParseError, Parsed, Sink, Subscription, VenueParser};
use crate::market::book::{BookSide, L2Book};
use crate::market::event::{BookUpdate, Event, Level, Quote, Side, Trade};
use crate::market::fixed;
use crate::market::instrument::Venue;

/// Seconds since the epoch as Kraken v1 writes them (`"1618678142.557535"`) → ns, exactly.
/// Fractions beyond 9 digits must be zeros.
pub fn parse_epoch_seconds_ns(s: &str) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs = fixed::parse_u64(int)?;
    let mut nanos: u64 = 0;
    for (i, c) in frac.bytes().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        if i < 9 {
            nanos = nanos * 10 + u64::from(c - b'0');
        } else if c != b'0' {
            return None;
        }
    }
    nanos *= 10u64.pow(9u32.saturating_sub(frac.len() as u32));
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// A level or trade time ([`parse_epoch_seconds_ns`]) → ns.
fn epoch_ns(s: &str) -> Result<u64, ParseError> {
    parse_epoch_seconds_ns(s).ok_or(ParseError::Invalid("time is not seconds since the epoch"))
}

/// Number of digits after the `.` in a decimal string.
#[inline]
fn decimals_of(s: &str) -> u32 {
    s.find('.').map_or(0, |i| (s.len() - i - 1) as u32)
}

/// The channels a feed may name, as subscription names (`book` arrives as `book-N`, N from
/// `book_depth`).
pub const CHANNELS: &[&str] = &["trade", "spread", "ticker", "book"];

/// The subscribe (or unsubscribe, with `event = "unsubscribe"`) request for `pairs` on one channel.
/// `depth` is sent for `book` when > 0.
pub fn subscription_request(event: &str, pairs: &[String], channel: &str, depth: u32) -> String {
    let mut subscription = serde_json::Map::new();
    subscription.insert("name".into(), channel.into());
    if channel == "book" && depth > 0 {
        subscription.insert("depth".into(), depth.into());
    }
    serde_json::json!({"event": event, "pair": pairs, "subscription": subscription}).to_string()
}

/// The first `N` elements of an array, as borrowed strings; further elements are ignored.
struct StrRow<'a, const N: usize>([&'a str; N]);

impl<'de: 'a, 'a, const N: usize> Deserialize<'de> for StrRow<'a, N> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for V<N> {
            type Value = StrRow<'de, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of at least {N} strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = [""; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(StrRow(out))
            }
        }
        d.deserialize_seq(V::<N>)
    }
}

/// A ticker side `["price", wholeLotVolume, "lotVolume"]`: price and lot volume.
struct TickerSide<'a> {
    price: &'a str,
    lot_volume: &'a str,
}

impl<'de: 'a, 'a> Deserialize<'de> for TickerSide<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TickerSide<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[price, wholeLotVolume, lotVolume]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let price = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                seq.next_element::<IgnoredAny>()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let lot_volume = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TickerSide { price, lot_volume })
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
struct TickerPayload<'a> {
    #[serde(borrow)]
    a: TickerSide<'a>,
    #[serde(borrow)]
    b: TickerSide<'a>,
}

/// An event object (`{"event":"heartbeat"}`…): only its kind is read.
#[derive(Deserialize)]
struct EventMsg<'a> {
    #[serde(borrow)]
    event: &'a str,
}

/// A data message split into its parts: 1–2 payloads (kept raw), channel name, pair.
struct Frame<'a> {
    payloads: [Option<&'a RawValue>; 2],
    channel: &'a str,
    pair: &'a str,
}

impl<'de: 'a, 'a> Deserialize<'de> for Frame<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Frame<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[channelID, payload, (payload,) channelName, pair]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let _channel_id: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let mut parts: [Option<&'de RawValue>; 4] = [None; 4];
                let mut n = 0;
                while let Some(v) = seq.next_element::<&'de RawValue>()? {
                    let slot = parts
                        .get_mut(n)
                        .ok_or_else(|| de::Error::invalid_length(n + 2, &self))?;
                    *slot = Some(v);
                    n += 1;
                }
                if n < 3 {
                    return Err(de::Error::invalid_length(n + 1, &self));
                }
                let text = |i: usize| -> Result<&'de str, A::Error> {
                    let raw = parts[i].ok_or_else(|| de::Error::invalid_length(i + 1, &self))?;
                    serde_json::from_str::<&'de str>(raw.get()).map_err(de::Error::custom)
                };
                Ok(Frame {
                    payloads: [parts[0], if n == 4 { parts[1] } else { None }],
                    channel: text(n - 2)?,
                    pair: text(n - 1)?,
                })
            }
        }
        d.deserialize_seq(V)
    }
}

/// What the payload objects of one book message said, besides their levels.
#[derive(Default)]
struct BookAcc {
    /// Saw `as`/`bs` (a snapshot).
    snapshot: bool,
    /// Saw `a`/`b` (an update).
    update: bool,
    /// The `c` checksum, from the last payload that had one.
    checksum: Option<u32>,
    /// Most decimals seen in a price string; `None` until a level is seen.
    price_places: Option<u32>,
    /// Most decimals seen in a volume string.
    qty_places: Option<u32>,
    /// Latest level timestamp, ns.
    last_ts_ns: Option<u64>,
}

/// What a book side is, for serde's "expected …" text.
const LEVELS: &str = "an array of [price, volume, timestamp] levels";

/// Parses one book payload object into the message's level buffers.
struct BookPayloadSeed<'v> {
    bids: &'v mut Vec<Level>,
    asks: &'v mut Vec<Level>,
    acc: &'v mut BookAcc,
    err: &'v ErrSlot,
}

impl<'de> DeserializeSeed<'de> for BookPayloadSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BookPayloadSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a book payload object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<&'de str>()? {
            let (snapshot, side) = match key {
                "as" => (true, BookSide::Ask),
                "bs" => (true, BookSide::Bid),
                "a" => (false, BookSide::Ask),
                "b" => (false, BookSide::Bid),
                "c" => {
                    let c: &str = map.next_value()?;
                    let v = fixed::parse_u64(c)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| {
                            self.err
                                .fail(ParseError::Invalid("checksum is not a 32-bit unsigned"))
                        })?;
                    self.acc.checksum = Some(v);
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if snapshot {
                self.acc.snapshot = true;
            } else {
                self.acc.update = true;
            }
            let out = match side {
                BookSide::Bid => &mut *self.bids,
                BookSide::Ask => &mut *self.asks,
            };
            let acc = &mut *self.acc;
            // `[[price, volume, timestamp(, "r")], …]`, appended.
            let level = |StrRow([p, v, t]): StrRow<'de, 3>| {
                let price = fixed_field("price", p)?;
                let size = size_field("volume", v)?;
                let ts = epoch_ns(t)?;
                acc.price_places = Some(acc.price_places.unwrap_or(0).max(decimals_of(p)));
                acc.qty_places = Some(acc.qty_places.unwrap_or(0).max(decimals_of(v)));
                acc.last_ts_ns = Some(acc.last_ts_ns.map_or(ts, |x| x.max(ts)));
                Ok(Level { price, size })
            };
            map.next_value_seed(LevelsSeed::new(out, self.err, LEVELS, level))?;
        }
        Ok(())
    }
}

/// A trade payload `[[price, volume, time, side, orderType, misc], …]` into a trade buffer.
struct TradesSeed<'v> {
    out: &'v mut Vec<Trade>,
    err: &'v ErrSlot,
}

impl<'de> DeserializeSeed<'de> for TradesSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TradesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of trades")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(StrRow([p, v, t, s])) = seq.next_element::<StrRow<'de, 4>>()? {
            let side = match s {
                "b" => Side::Buy,
                "s" => Side::Sell,
                _ => return Err(self.err.fail(ParseError::Invalid("trade side is not b/s"))),
            };
            self.out.push(Trade {
                price: self.err.fixed("price", p)?,
                size: self.err.size("volume", v)?,
                side,
                trade_id: None,
                exchange_ts_ns: Some(self.err.check(epoch_ns(t))?),
            });
        }
        Ok(())
    }
}

/// Parser state for one Kraken v1 connection: a book per pair and reusable buffers.
#[derive(Default)]
pub struct KrakenV1Parser {
    /// Books by pair (`XBT/USD`); an entry is created by the pair's first book message.
    books: FxHashMap<String, KrakenBook>,
    /// Bid levels of the message being parsed.
    bids: Vec<Level>,
    /// Ask levels of the message being parsed.
    asks: Vec<Level>,
    /// Bid levels of the book event being emitted.
    out_bids: Vec<Level>,
    /// Ask levels of the book event being emitted.
    out_asks: Vec<Level>,
    /// Trades of the message being parsed; emitted only once the whole message parsed.
    trades: Vec<Trade>,
    /// Requests queued for [`VenueParser::drain_outgoing`] (resubscribes), oldest first.
    outgoing: Vec<String>,
    /// Status detail text of the event being emitted.
    detail: String,
    /// The first typed error raised inside a deserializer during the current parse.
    err: ErrSlot,
    /// Checksum counters.
    stats: ChecksumStats,
}

impl KrakenV1Parser {
    /// A parser with no books yet.
    pub fn new() -> KrakenV1Parser {
        KrakenV1Parser::default()
    }

    /// Book checksums verified, mismatched and skipped so far.
    pub fn checksum_stats(&self) -> ChecksumStats {
        self.stats
    }

    /// The local book of `pair`, if a book message for it has been seen.
    pub fn book(&self, pair: &str) -> Option<&L2Book> {
        self.books.get(pair).map(|b| &b.book)
    }

    fn parse_trades(
        &mut self,
        payload: &RawValue,
        pair: &str,
        sink: &mut Sink<'_>,
    ) -> Result<(), ParseError> {
        self.trades.clear();
        let seed = TradesSeed {
            out: &mut self.trades,
            err: &self.err,
        };
        from_str_seed(payload.get(), seed, &self.err)?;
        for t in &self.trades {
            sink(Some(pair), &Event::Trade(*t));
        }
        Ok(())
    }

    fn parse_book(
        &mut self,
        payloads: &[Option<&RawValue>; 2],
        channel: &str,
        pair: &str,
        sink: &mut Sink<'_>,
    ) -> Result<(), ParseError> {
        let depth = channel
            .strip_prefix("book-")
            .and_then(fixed::parse_u64)
            .and_then(|d| usize::try_from(d).ok())
            .filter(|d| *d > 0)
            .ok_or(ParseError::Invalid("book channel name without a depth"))?;
        self.bids.clear();
        self.asks.clear();
        let mut acc = BookAcc::default();
        for p in payloads.iter().flatten() {
            let seed = BookPayloadSeed {
                bids: &mut self.bids,
                asks: &mut self.asks,
                acc: &mut acc,
                err: &self.err,
            };
            from_str_seed(p.get(), seed, &self.err)?;
        }
        if acc.snapshot && acc.update {
            return Err(ParseError::Invalid(
                "book message mixes snapshot and update",
            ));
        }
        if !acc.snapshot && !acc.update && acc.checksum.is_none() {
            return Err(ParseError::Invalid("book message without levels"));
        }
        if acc.snapshot && payloads[1].is_some() {
            return Err(ParseError::Invalid("book snapshot in two payloads"));
        }

        let Self {
            books,
            bids,
            asks,
            out_bids,
            out_asks,
            outgoing,
            detail,
            stats,
            ..
        } = self;
        let Some(st) = book_for(books, pair, depth) else {
            return Err(ParseError::Invalid("book state lost"));
        };
        st.depth = depth;
        let seen = acc.price_places.zip(acc.qty_places);
        if seen.is_some() && (acc.snapshot || st.places.is_none()) {
            st.places = seen;
        }
        st.apply(acc.snapshot, bids, asks, out_bids, out_asks);
        let verdict = st.verify(acc.checksum, st.places, stats);
        sink(
            Some(pair),
            &Event::Book(BookUpdate {
                snapshot: acc.snapshot,
                bids: out_bids,
                asks: out_asks,
                venue_sequence: None,
                exchange_ts_ns: acc.last_ts_ns,
                may_be_bad: !st.in_sync,
            }),
        );
        st.report(verdict, pair, detail, sink);
        if matches!(verdict, Verdict::Mismatch { .. }) {
            let pairs = [pair.to_owned()];
            let depth = u32::try_from(st.depth).unwrap_or(u32::MAX);
            outgoing.push(subscription_request("unsubscribe", &pairs, "book", depth));
            outgoing.push(subscription_request("subscribe", &pairs, "book", depth));
        }
        Ok(())
    }
}

impl VenueParser for KrakenV1Parser {
    fn venue(&self) -> Venue {
        Venue::KrakenV1
    }

    /// One request per channel, all pairs in each: `{"event":"subscribe","pair":[…],
    /// "subscription":{"name":"book","depth":N}}` (depth only for `book`, only when configured).
    fn subscribe_requests(&mut self, sub: &Subscription) -> Vec<String> {
        sub.channels
            .iter()
            .map(|c| subscription_request("subscribe", &sub.symbols, c, sub.book_depth))
            .collect()
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
        if !raw.trim_start().starts_with('[') {
            let ev: EventMsg<'_> = serde_json::from_str(raw)?;
            let _quietly = ev.event;
            return Ok(Parsed::Control);
        }
        let frame: Frame<'_> = serde_json::from_str(raw)?;
        let [first, second] = frame.payloads;
        let Some(payload) = first else {
            return Err(ParseError::Invalid("data message without payload"));
        };
        let single = |what: &'static str| {
            if second.is_some() {
                Err(ParseError::Invalid(what))
            } else {
                Ok(())
            }
        };
        match frame.channel {
            "trade" => {
                single("trade message with two payloads")?;
                self.parse_trades(payload, frame.pair, sink)?;
            }
            "spread" => {
                single("spread message with two payloads")?;
                let StrRow([bid, ask, time, bid_vol, ask_vol]) =
                    serde_json::from_str::<StrRow<'_, 5>>(payload.get())?;
                let quote = Quote {
                    bid_price: fixed_field("bid", bid)?,
                    bid_size: fixed_field("bidVolume", bid_vol)?,
                    ask_price: fixed_field("ask", ask)?,
                    ask_size: fixed_field("askVolume", ask_vol)?,
                    exchange_ts_ns: Some(
                        parse_epoch_seconds_ns(time)
                            .ok_or(ParseError::Invalid("spread time is not epoch seconds"))?,
                    ),
                };
                sink(Some(frame.pair), &Event::Quote(quote));
            }
            "ticker" => {
                single("ticker message with two payloads")?;
                let t: TickerPayload<'_> = serde_json::from_str(payload.get())?;
                let quote = Quote {
                    bid_price: fixed_field("b", t.b.price)?,
                    bid_size: fixed_field("b", t.b.lot_volume)?,
                    ask_price: fixed_field("a", t.a.price)?,
                    ask_size: fixed_field("a", t.a.lot_volume)?,
                    exchange_ts_ns: None,
                };
                sink(Some(frame.pair), &Event::Quote(quote));
            }
            c if c.starts_with("book-") => {
                self.parse_book(&frame.payloads, c, frame.pair, sink)?;
            }
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
    use crate::market::event::StatusCode;
    use std::io::BufRead;

    #[derive(Debug, Default)]
    struct Counts {
        lines: usize,
        control: usize,
        data: usize,
        errors: Vec<String>,
        trades: usize,
        quotes: usize,
        books: usize,
        bad_books: usize,
        statuses: Vec<(String, StatusCode)>,
    }

    /// Runs a recording (`<recv_ns> <message>` lines, gzip) through one parser.
    fn run_recording(p: &mut KrakenV1Parser, name: &str) -> Counts {
        let f = std::fs::File::open(fixture(name)).expect(name);
        let r = std::io::BufReader::new(flate2::read::GzDecoder::new(f));
        let mut c = Counts::default();
        for line in r.lines() {
            let line = line.expect("gzip text");
            let (ts, raw) = line.split_once(' ').expect("recv_ns prefix");
            let ts: u64 = ts.parse().expect("recv_ns");
            c.lines += 1;
            let (mut trades, mut quotes, mut books, mut bad) = (0, 0, 0, 0);
            let mut statuses = Vec::new();
            let r = p.parse(raw, ts, &mut |sym, ev| match ev {
                Event::Trade(_) => trades += 1,
                Event::Quote(_) => quotes += 1,
                Event::Book(b) => {
                    books += 1;
                    bad += usize::from(b.may_be_bad);
                }
                Event::Status(s) => statuses.push((sym.unwrap_or("").to_owned(), s.code)),
                Event::Mark(_) | Event::Liquidation(_) | Event::OpenInterest(_) => {
                    panic!("a spot venue produced {ev:?}")
                }
            });
            match r {
                Ok(Parsed::Control) => c.control += 1,
                Ok(Parsed::Data | Parsed::Filtered) => c.data += 1,
                Err(e) => c.errors.push(format!("{e}: {raw}")),
            }
            c.trades += trades;
            c.quotes += quotes;
            c.books += books;
            c.bad_books += bad;
            c.statuses.extend(statuses);
        }
        c
    }

    #[test]
    fn trade_and_ticker_captures_parse_completely() {
        let mut p = KrakenV1Parser::new();
        let c = run_recording(&mut p, "kraken_v1/trade_20210417.txt.gz");
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        // 8 trade messages hold 10 trades: every trade in every array counts.
        assert_eq!(
            (c.lines, c.control, c.data, c.trades, c.quotes),
            (49, 41, 8, 10, 0)
        );
        let c = run_recording(&mut p, "kraken_v1/ticker_20210417.txt.gz");
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(
            (c.lines, c.control, c.data, c.trades, c.quotes),
            (60, 42, 18, 0, 18)
        );
    }

    #[test]
    fn every_checksum_in_the_book1000_capture_validates() {
        let mut p = KrakenV1Parser::new();
        let c = run_recording(&mut p, "kraken_v1/book1000_20210417.txt.gz");
        assert!(
            c.errors.is_empty(),
            "{:?}",
            &c.errors[..c.errors.len().min(3)]
        );
        assert_eq!(c.statuses, vec![]);
        assert_eq!(
            (c.lines, c.control, c.data, c.books, c.bad_books),
            (2934, 37, 2897, 2897, 0)
        );
        assert_eq!(
            p.checksum_stats(),
            ChecksumStats {
                verified: 2892,
                mismatched: 0,
                unverified: 0
            }
        );
        assert!(p.outgoing.is_empty());
    }

    use crate::market::fixed::Decimal;

    #[test]
    fn every_sample_kind_parses_as_documented() {
        let samples = std::fs::read_to_string(fixture("samples/kraken_v1.jsonl")).expect("samples");
        let lines: Vec<&str> = samples.lines().collect();
        let cases: &[(usize, Parsed, &[&str])] = &[
            (0, Parsed::Control, &[]), // systemStatus
            (1, Parsed::Control, &[]), // subscriptionStatus
            (2, Parsed::Control, &[]), // heartbeat
            (3, Parsed::Data, &["trade XMR/USD sell 354.11x0.89594024 t=Some(1618678142557535000) id=None"]),
            (4, Parsed::Data, &[
                "trade XMR/USD sell 354.04x0.28245396 t=Some(1618678150826417000) id=None",
                "trade XMR/USD sell 353.81x1.71754604 t=Some(1618678150827816000) id=None",
            ]),
            (5, Parsed::Data, &["quote WAVES/EUR 13.2329x185.18432037 / 13.2539x35.72892241 t=None"]),
            (6, Parsed::Control, &[]), // book subscriptionStatus
            (7, Parsed::Data, &["snapshot GRT/ETH bids=60 asks=73 best=0.0008335x506.69981876/0.0008356x304.30645202 t=Some(1618678129215329000) bad=false"]),
            // Updates for pairs whose snapshot this parser never saw: passed on, flagged, unverified.
            (8, Parsed::Data, &["update XMR/USD bids=[354.15x5] asks=[] t=Some(1618678133365913000) bad=true"]),
            (9, Parsed::Data, &["update WAVES/EUR bids=[] asks=[13.2845x1396] t=Some(1618678133383209000) bad=true"]),
            // Two payload objects: asks in the first, bids and the checksum in the second.
            (10, Parsed::Data, &["update SC/EUR bids=[0.04299x0] asks=[0.04299x364630.28272081] t=Some(1618678145920708000) bad=true"]),
        ];
        assert_eq!(cases.len(), lines.len(), "every sample line has a case");
        let mut p = KrakenV1Parser::new();
        for (i, parsed, want) in cases {
            let (r, out) = run(&mut p, lines[*i]);
            assert_eq!(r, Ok(*parsed), "line {i}");
            assert_eq!(out, *want, "line {i}");
        }
        assert_eq!(p.checksum_stats().unverified, 3);
        assert_eq!(p.book("GRT/ETH").map(L2Book::ask_levels), Some(73));
    }

    /// A `book-N` snapshot message for `pair` (levels best first).
    fn snapshot_msg(
        pair: &str,
        depth: usize,
        bids: &[(&str, &str)],
        asks: &[(&str, &str)],
    ) -> String {
        let side = |ls: &[(&str, &str)]| {
            ls.iter()
                .map(|(p, v)| format!(r#"["{p}","{v}","1618678133.000001"]"#))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            r#"[7,{{"as":[{}],"bs":[{}]}},"book-{depth}","{pair}"]"#,
            side(asks),
            side(bids)
        )
    }

    fn checksum_of(p: &KrakenV1Parser, pair: &str) -> u32 {
        let st = &p.books[pair];
        let (pp, qp) = st.places.unwrap();
        book_checksum(&st.book, pp, qp)
    }

    #[test]
    fn checksum_mismatch_marks_the_book_bad_and_resubscribes_the_pair() {
        let mut p = KrakenV1Parser::new();
        let snap = snapshot_msg(
            "XBT/USD",
            10,
            &[("100.0", "1.00000000")],
            &[("101.0", "2.00000000")],
        );
        assert_eq!(run(&mut p, &snap).0, Ok(Parsed::Data));
        assert_eq!(checksum_of(&p, "XBT/USD"), {
            let mut h = crc32fast::Hasher::new();
            h.update(b"10102000000001000100000000");
            h.finalize()
        });

        // A correct checksum verifies quietly.
        let mut expect = L2Book::new();
        expect.apply_snapshot(
            &[Level {
                price: 100 * fixed::SCALE,
                size: 3 * fixed::SCALE,
            }],
            &[Level {
                price: 101 * fixed::SCALE,
                size: 2 * fixed::SCALE,
            }],
        );
        let good = book_checksum(&expect, 1, 8);
        let (r, out) = run(
            &mut p,
            &format!(
                r#"[7,{{"b":[["100.0","3.00000000","1618678134.5"]],"c":"{good}"}},"book-10","XBT/USD"]"#
            ),
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(
            out,
            ["update XBT/USD bids=[100x3] asks=[] t=Some(1618678134500000000) bad=false"]
        );
        assert_eq!(p.checksum_stats().verified, 1);

        // A wrong one: the update is still emitted (flagged), then mismatch + resync, and a
        // resubscribe for this pair only is queued.
        let (r, out) = run(
            &mut p,
            r#"[7,{"b":[["100.0","4.00000000","1618678135.5"]],"c":"12345"},"book-10","XBT/USD"]"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(
            out,
            [
                "update XBT/USD bids=[100x4] asks=[] t=Some(1618678135500000000) bad=true",
                "status XBT/USD checksum_mismatch 1",
                "status XBT/USD resync 1",
            ]
        );
        let mut sent = Vec::new();
        p.drain_outgoing(&mut sent);
        assert_eq!(
            sent,
            [
                r#"{"event":"unsubscribe","pair":["XBT/USD"],"subscription":{"depth":10,"name":"book"}}"#,
                r#"{"event":"subscribe","pair":["XBT/USD"],"subscription":{"depth":10,"name":"book"}}"#,
            ]
        );
        p.drain_outgoing(&mut sent);
        assert_eq!(sent.len(), 2, "drained once");

        // While bad: updates pass flagged, are not verified, and do not resubscribe again.
        let (_, out) = run(
            &mut p,
            r#"[7,{"b":[["100.0","5.00000000","1618678136.5"]],"c":"1"},"book-10","XBT/USD"]"#,
        );
        assert_eq!(
            out,
            ["update XBT/USD bids=[100x5] asks=[] t=Some(1618678136500000000) bad=true"]
        );
        assert_eq!(
            p.checksum_stats(),
            ChecksumStats {
                verified: 1,
                mismatched: 1,
                unverified: 1
            }
        );
        p.drain_outgoing(&mut sent);
        assert_eq!(sent.len(), 2);

        // A new snapshot clears the bad state.
        let (_, out) = run(&mut p, &snap);
        assert_eq!(out, ["snapshot XBT/USD bids=1 asks=1 best=100x1/101x2 t=Some(1618678133000001000) bad=false"]);
        let (_, out) = run(
            &mut p,
            &format!(
                r#"[7,{{"b":[["100.0","3.00000000","1618678134.5"]],"c":"{good}"}},"book-10","XBT/USD"]"#
            ),
        );
        assert_eq!(
            out,
            ["update XBT/USD bids=[100x3] asks=[] t=Some(1618678134500000000) bad=false"]
        );
        assert_eq!(p.checksum_stats().verified, 2);
    }

    #[test]
    fn levels_beyond_the_subscribed_depth_are_dropped_and_reported_as_removals() {
        let mut p = KrakenV1Parser::new();
        let bids = [("10.0", "1.0"), ("9.0", "1.0"), ("8.0", "1.0")];
        let asks = [
            ("11.0", "1.0"),
            ("12.0", "1.0"),
            ("13.0", "1.0"),
            ("14.0", "1.0"),
        ];
        // The snapshot is cut to depth too (Kraken never sends more, but the rule holds).
        let (_, out) = run(&mut p, &snapshot_msg("A/B", 3, &bids, &asks));
        assert_eq!(
            out,
            ["snapshot A/B bids=3 asks=3 best=10x1/11x1 t=Some(1618678133000001000) bad=false"]
        );
        // A better bid pushes the worst (8.0) out of scope; republished ("r") levels are updates.
        let (_, out) = run(
            &mut p,
            r#"[7,{"b":[["10.5","2.0","1618678134.1"],["9.0","3.0","1618678134.2","r"]]},"book-3","A/B"]"#,
        );
        assert_eq!(
            out,
            ["update A/B bids=[10.5x2,9x3,8x0] asks=[] t=Some(1618678134200000000) bad=false"]
        );
        let bids: Vec<Level> = p.book("A/B").unwrap().bids().collect();
        assert_eq!(
            bids.iter()
                .map(|l| Decimal(l.price).to_string())
                .collect::<Vec<_>>(),
            ["10.5", "10", "9"]
        );
    }

    #[test]
    fn crossed_book_is_reported_when_it_happens() {
        let mut p = KrakenV1Parser::new();
        assert_eq!(
            run(
                &mut p,
                &snapshot_msg("A/B", 10, &[("10.0", "1.0")], &[("11.0", "1.0")])
            )
            .0,
            Ok(Parsed::Data)
        );
        let (_, out) = run(
            &mut p,
            r#"[7,{"b":[["11.5","1.0","1618678134.1"]]},"book-10","A/B"]"#,
        );
        assert_eq!(
            out,
            [
                "update A/B bids=[11.5x1] asks=[] t=Some(1618678134100000000) bad=false",
                "status A/B crossed_book 1",
            ]
        );
        // Still crossed: not reported again; uncrossed then crossed again: reported again.
        let (_, out) = run(
            &mut p,
            r#"[7,{"b":[["11.6","1.0","1618678134.1"]]},"book-10","A/B"]"#,
        );
        assert_eq!(out.len(), 1);
        let (_, out) = run(
            &mut p,
            r#"[7,{"b":[["11.5","0.0","1618678134.1"],["11.6","0","1618678134.1"]]},"book-10","A/B"]"#,
        );
        assert_eq!(out.len(), 1, "uncrossed: no status");
        let (_, out) = run(
            &mut p,
            r#"[7,{"a":[["9.0","1.0","1618678134.1"]]},"book-10","A/B"]"#,
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn spread_is_a_quote() {
        let mut p = KrakenV1Parser::new();
        let (r, out) = run(
            &mut p,
            r#"[0,["5698.40000","5700.00000","1542057299.545897","1.01234567","0.98765432"],"spread","XBT/USD"]"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(
            out,
            ["quote XBT/USD 5698.4x1.01234567 / 5700x0.98765432 t=Some(1542057299545897000)"]
        );
    }

    #[test]
    fn bad_input_is_a_typed_error_without_events() {
        let cases: &[(&str, &str)] = &[
            ("", "malformed"),
            ("[", "malformed"),
            ("{}", "malformed"),
            ("[]", "malformed"),
            (r#"[1,[],"trade"]"#, "malformed"),
            (r#"["x",[],"trade","A/B"]"#, "malformed"),
            (
                r#"[1,[["1","2","3","s","l",""]],"trade","A/B",5,6]"#,
                "malformed",
            ),
            (
                r#"[1,[["1","2","3","x","l",""]],"trade","A/B"]"#,
                "trade side is not b/s",
            ),
            (
                r#"[1,[["1","2","3","s","l",""],["abc","2","3","s","l",""]],"trade","A/B"]"#,
                "field `price`: not a decimal",
            ),
            (
                r#"[1,[["1","2","soon","s","l",""]],"trade","A/B"]"#,
                "time is not seconds",
            ),
            (
                r#"[1,[["1","-2","3","s","l",""]],"trade","A/B"]"#,
                "negative size",
            ),
            (r#"[1,[["1","2","3"]],"trade","A/B"]"#, "malformed"),
            (
                r#"[1,{"a":["1",1],"b":["1",1,"1"]},"ticker","A/B"]"#,
                "malformed",
            ),
            (
                r#"[1,{"a":["1",1,"1e999"],"b":["1",1,"1"]},"ticker","A/B"]"#,
                "out of range",
            ),
            (r#"[1,["1","2","3","4"],"spread","A/B"]"#, "malformed"),
            (
                r#"[1,{"as":[["1","2","3"]]},"book-x","A/B"]"#,
                "without a depth",
            ),
            (
                r#"[1,{"as":[["1","2","3"]]},"book-0","A/B"]"#,
                "without a depth",
            ),
            (
                r#"[1,{"as":[["1","2","3"]],"b":[]},"book-10","A/B"]"#,
                "mixes snapshot and update",
            ),
            (r#"[1,{},"book-10","A/B"]"#, "without levels"),
            (
                r#"[1,{"a":[["1","2","3"]],"c":"99999999999"},"book-10","A/B"]"#,
                "checksum",
            ),
            (
                r#"[1,{"a":[["1","2","3"]],"c":"x"},"book-10","A/B"]"#,
                "checksum",
            ),
            (r#"[1,{"a":[["1","2"]]},"book-10","A/B"]"#, "malformed"),
            (
                r#"[1,{"a":[["1","2","3"]]},{"a":[["1","99999999999999","3"]]},"book-10","A/B"]"#,
                "out of range",
            ),
            (
                r#"[1,[],"ohlc-5","A/B"]"#,
                "unsupported message kind `ohlc-5`",
            ),
            (r#"[1,[],"trade","A/B"] x"#, "malformed"),
        ];
        assert_refused(KrakenV1Parser::new, cases);
        let mut p = KrakenV1Parser::new();
        let e = p
            .parse(
                r#"[1,{"a":["1",1,"99999999999999"],"b":["1",1,"1"]},"ticker","A/B"]"#,
                0,
                &mut |_, _| {},
            )
            .unwrap_err();
        assert!(e.is_out_of_range(), "{e}");
    }

    #[test]
    fn epoch_seconds_convert_exactly() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1618678142.557535", Some(1_618_678_142_557_535_000)),
            ("1618678142", Some(1_618_678_142_000_000_000)),
            ("1618678142.5", Some(1_618_678_142_500_000_000)),
            ("1618678142.123456789", Some(1_618_678_142_123_456_789)),
            ("1618678142.1234567890", Some(1_618_678_142_123_456_789)),
            ("1618678142.1234567891", None),
            ("", None),
            (".5", None),
            ("1.2.3", None),
            ("-1.5", None),
            ("99999999999.0", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_epoch_seconds_ns(s), *want, "{s}");
        }
    }

    #[test]
    fn subscribe_requests_one_per_channel() {
        let mut p = KrakenV1Parser::new();
        let sub = Subscription {
            symbols: vec!["XBT/USD".into(), "ETH/EUR".into()],
            channels: vec!["trade".into(), "book".into()],
            book_depth: 100,
        };
        assert_eq!(
            p.subscribe_requests(&sub),
            [
                r#"{"event":"subscribe","pair":["XBT/USD","ETH/EUR"],"subscription":{"name":"trade"}}"#,
                r#"{"event":"subscribe","pair":["XBT/USD","ETH/EUR"],"subscription":{"depth":100,"name":"book"}}"#,
            ]
        );
    }
}
