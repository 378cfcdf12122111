//! Binance spot combined streams (`/stream`): subscribe request, and the parser for `trade`,
//! `bookTicker`, `aggTrade`, `depthUpdate` diffs and the REST depth snapshot.
//!
//! Reference: Binance Spot "WebSocket Streams" documentation. Points that matter:
//! - `m: true` means the *buyer* was the maker, so the aggressor sold ([`Side::Sell`]).
//! - Spot `bookTicker` carries no `E`/`T`; futures `bookTicker` does (used when present).
//! - A subscription is acknowledged with `{"result":null,"id":N}`; errors come as
//!   `{"error":{…},"id":N}`.
//!
//! The combined-stream envelope is parsed in one pass: a hand-written map visitor reads `stream`
//! first (Binance always sends it first) and then deserializes `data` straight into the type that
//! stream names; if `data` came first it is kept as a raw slice and parsed afterwards.
//! Runs on the Binance collector thread; never blocks.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::binance_de::{
    levels, AggTradeData, BookTickerData, Buffers, DepthHead, DepthSeed, TradeData,
};
use super::binance_depth::{DepthBooks, DepthDiff, DepthSyncConfig};
use super::binance_fast::{self, Fast};
use super::de::{from_str_seed, ErrSlot};
use super::{fixed_field, ParseError, Parsed, Sink, Subscription, VenueParser};
use crate::market::event::{BookUpdate, Event, Level, Quote, Side, Status, StatusCode, Trade};
use crate::market::instrument::Venue;

/// The channels a feed may name, each a stream suffix (`<symbol>@<channel>`) this parser
/// normalizes: trades, aggregate trades, best bid/ask, and the diff depth streams the local book
/// is kept from (partial-depth streams such as `depth20` carry no symbol and are not kept).
pub const CHANNELS: &[&str] = &["trade", "aggTrade", "bookTicker", "depth", "depth@100ms"];

/// The request that subscribes a combined-stream connection to `streams`
/// (e.g. `ethusdt@trade`). Binance stream names use the lower-case symbol.
pub fn subscribe_request(streams: &[String], id: u64) -> String {
    let params: Vec<serde_json::Value> = streams
        .iter()
        .map(|s| serde_json::Value::String(s.clone()))
        .collect();
    serde_json::json!({"method": "SUBSCRIBE", "params": params, "id": id}).to_string()
}

/// The stream names for `symbol` and the configured channels (`trade`, `bookTicker`, …).
pub fn stream_names(symbol: &str, channels: &[String]) -> Vec<String> {
    let lower = symbol.to_ascii_lowercase();
    channels.iter().map(|c| format!("{lower}@{c}")).collect()
}

const MS: u64 = 1_000_000;

/// A request acknowledged (`{"result":…,"id":N}`), reported as `subscribed`.
pub(super) fn acknowledged(sink: &mut Sink<'_>) -> Parsed {
    sink(
        None,
        &Event::Status(Status {
            code: StatusCode::Subscribed,
            count: 0,
            detail: "subscription acknowledged",
        }),
    );
    Parsed::Control
}

/// The venue refused a request (bad stream name, rate limit): an error, so an operator sees it.
pub(super) const REFUSED: &str = "venue replied with an error to a request";

/// What the envelope turned out to be.
enum Envelope<'a> {
    Trade(TradeData<'a>),
    AggTrade(AggTradeData<'a>),
    BookTicker(BookTickerData<'a>),
    Depth(DepthHead<'a>),
    /// `{"result":…,"id":N}`: a subscription (or other request) acknowledged.
    Ack,
    /// `{"error":{…}}`: the venue refused a request.
    Error,
    /// A stream mdrelay does not normalize (klines, mark price…): the stream's kind.
    Unsupported(&'a str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Trade,
    AggTrade,
    BookTicker,
    Depth,
    Other,
}

fn stream_kind(stream: &str) -> StreamKind {
    let kind = stream.split_once('@').map_or(stream, |(_, k)| k);
    match kind {
        "trade" => StreamKind::Trade,
        "aggTrade" => StreamKind::AggTrade,
        "bookTicker" => StreamKind::BookTicker,
        k if k.starts_with("depth") => StreamKind::Depth,
        _ => StreamKind::Other,
    }
}

struct EnvelopeVisitor<'v> {
    bids: &'v mut Vec<Level>,
    asks: &'v mut Vec<Level>,
    err: &'v ErrSlot,
}

impl<'de> EnvelopeVisitor<'_> {
    fn data_for<E: de::Error>(
        self,
        stream: &'de str,
        raw: Option<&'de RawValue>,
        parsed: Option<Envelope<'de>>,
    ) -> Result<Envelope<'de>, E> {
        if let Some(p) = parsed {
            return Ok(p);
        }
        let raw = raw.ok_or_else(|| E::missing_field("data"))?;
        let mut de = serde_json::Deserializer::from_str(raw.get());
        self.parse_data(stream, &mut de).map_err(E::custom)
    }

    fn parse_data<D: de::Deserializer<'de>>(
        self,
        stream: &'de str,
        d: D,
    ) -> Result<Envelope<'de>, D::Error> {
        Ok(match stream_kind(stream) {
            StreamKind::Trade => Envelope::Trade(TradeData::deserialize(d)?),
            StreamKind::AggTrade => Envelope::AggTrade(AggTradeData::deserialize(d)?),
            StreamKind::BookTicker => Envelope::BookTicker(BookTickerData::deserialize(d)?),
            StreamKind::Depth => Envelope::Depth(
                DepthSeed(Buffers {
                    bids: self.bids,
                    asks: self.asks,
                    err: self.err,
                })
                .deserialize(d)?,
            ),
            StreamKind::Other => {
                IgnoredAny::deserialize(d)?;
                Envelope::Unsupported(stream.split_once('@').map_or(stream, |(_, k)| k))
            }
        })
    }
}

impl<'de> DeserializeSeed<'de> for EnvelopeVisitor<'_> {
    type Value = Envelope<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeVisitor<'_> {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Binance combined-stream message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut stream: Option<&'de str> = None;
        let mut raw_data: Option<&'de RawValue> = None;
        let mut parsed: Option<Envelope<'de>> = None;
        let mut ack = false;
        let mut error = false;
        let mut this = Some(self);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "stream" => stream = Some(map.next_value()?),
                "data" => match (stream, this.take()) {
                    (Some(s), Some(v)) => {
                        parsed = Some(map.next_value_seed(DataSeed { v, stream: s })?)
                    }
                    (_, v) => {
                        this = v;
                        raw_data = Some(map.next_value()?);
                    }
                },
                "result" => {
                    map.next_value::<IgnoredAny>()?;
                    ack = true;
                }
                "error" => {
                    map.next_value::<IgnoredAny>()?;
                    error = true;
                }
                // A REST depth snapshot line (`{"lastUpdateId":…}`) as captured in recordings.
                "lastUpdateId" => {
                    let last: u64 = map.next_value()?;
                    let v = this
                        .take()
                        .ok_or_else(|| de::Error::custom("snapshot inside an envelope"))?;
                    let mut head = DepthHead {
                        last_update_id: Some(last),
                        ..DepthHead::default()
                    };
                    v.bids.clear();
                    v.asks.clear();
                    while let Some(k) = map.next_key::<&'de str>()? {
                        match k {
                            "bids" => map.next_value_seed(levels(v.bids, v.err))?,
                            "asks" => map.next_value_seed(levels(v.asks, v.err))?,
                            _ => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    head.symbol = None;
                    return Ok(Envelope::Depth(head));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if error {
            return Ok(Envelope::Error);
        }
        match (stream, this) {
            (Some(s), Some(v)) => v.data_for(s, raw_data, parsed),
            (Some(_), None) => parsed.ok_or_else(|| de::Error::missing_field("data")),
            (None, _) if ack => Ok(Envelope::Ack),
            (None, _) => Err(de::Error::missing_field("stream")),
        }
    }
}

struct DataSeed<'v, 'de> {
    v: EnvelopeVisitor<'v>,
    stream: &'de str,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_, 'de> {
    type Value = Envelope<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.v.parse_data(self.stream, d)
    }
}

/// Parser state for one Binance connection: reusable level buffers, and the depth books when a
/// `depth` channel is subscribed.
#[derive(Default)]
pub struct BinanceParser {
    bids: Vec<Level>,
    asks: Vec<Level>,
    /// The typed error of the current parse, if a number in a level array did not convert.
    err: ErrSlot,
    /// Local books synced per Binance's procedure ([`super::binance_depth`]); `None` when no
    /// depth channel is subscribed (and in `mdrelay decode`, which prints raw diffs).
    depth: Option<DepthBooks>,
    /// Symbols whose book asked for a REST snapshot, for [`VenueParser::drain_snapshot_requests`].
    snapshot_requests: Vec<String>,
    /// Id of the last request sent; Binance echoes it in the ack.
    next_request_id: u64,
    /// Messages the fast path ([`super::binance_fast`]) left to the serde path.
    fast_path_fallbacks: u64,
    /// True: every message takes the serde path (the differential test and the benchmarks).
    general_only: bool,
}

impl BinanceParser {
    /// A parser that never takes the fast path: the reference the fast path is tested and
    /// measured against.
    pub fn general_only() -> Self {
        BinanceParser {
            general_only: true,
            ..BinanceParser::default()
        }
    }
}

impl VenueParser for BinanceParser {
    fn venue(&self) -> Venue {
        Venue::Binance
    }

    fn fast_path_fallbacks(&self) -> u64 {
        self.fast_path_fallbacks
    }

    fn subscribe_requests(&mut self, sub: &Subscription) -> Vec<String> {
        let streams: Vec<String> = sub
            .symbols
            .iter()
            .flat_map(|s| stream_names(s, &sub.channels))
            .collect();
        if self.depth.is_none() && sub.channels.iter().any(|c| c.starts_with("depth")) {
            let symbols: Vec<String> = sub.symbols.iter().map(|s| s.to_ascii_uppercase()).collect();
            self.depth = Some(DepthBooks::new(&symbols, DepthSyncConfig::default()));
        }
        self.next_request_id += 1;
        vec![subscribe_request(&streams, self.next_request_id)]
    }

    fn snapshot_url(&self, rest_base: &str, symbol: &str, depth: u32) -> Option<String> {
        let limit = if depth == 0 { 1000 } else { depth.min(5000) };
        Some(format!(
            "{}/api/v3/depth?symbol={}&limit={limit}",
            rest_base.trim_end_matches('/'),
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
        // No `end()`: a REST body is taken as far as its object goes.
        let mut de = serde_json::Deserializer::from_str(body);
        let env = EnvelopeVisitor {
            bids: &mut self.bids,
            asks: &mut self.asks,
            err: &self.err,
        }
        .deserialize(&mut de)
        .map_err(|e| self.err.or_json(e));
        let last = match env {
            Ok(Envelope::Depth(DepthHead {
                last_update_id: Some(last),
                ..
            })) => last,
            Ok(_) => {
                self.on_snapshot_failed(symbol);
                return Err(ParseError::Invalid("REST depth reply without lastUpdateId"));
            }
            Err(e) => {
                self.on_snapshot_failed(symbol);
                return Err(e);
            }
        };
        if let Some(depth) = self.depth.as_mut() {
            if depth
                .on_snapshot(symbol, last, &self.bids, &self.asks, sink)
                .fetch_snapshot
            {
                self.snapshot_requests.push(symbol.to_owned());
            }
        }
        Ok(())
    }

    fn on_snapshot_failed(&mut self, symbol: &str) {
        if let Some(depth) = self.depth.as_mut() {
            if depth.on_snapshot_failed(symbol).fetch_snapshot {
                self.snapshot_requests.push(symbol.to_owned());
            }
        }
    }

    fn on_disconnect(&mut self, sink: &mut Sink<'_>) {
        if let Some(depth) = self.depth.as_mut() {
            depth.reset_all(sink);
        }
    }

    fn drain_sync_released(&mut self, f: &mut dyn FnMut(u64)) {
        if let Some(depth) = self.depth.as_mut() {
            depth.drain_released(f);
        }
    }

    fn parse(
        &mut self,
        raw: &str,
        recv_ts_ns: u64,
        sink: &mut Sink<'_>,
    ) -> Result<Parsed, ParseError> {
        self.err.clear();
        let fast = match self.general_only {
            false => binance_fast::parse(raw, &mut self.bids, &mut self.asks),
            true => None,
        };
        let env = match fast {
            Some(Fast::Event(symbol, ev)) => {
                sink(Some(symbol), &ev);
                return Ok(Parsed::Data);
            }
            Some(Fast::Depth(h)) => Envelope::Depth(DepthHead {
                symbol: h.symbol,
                first_update_id: h.first_update_id,
                final_update_id: h.final_update_id,
                event_time_ms: h.event_time_ms,
                ..DepthHead::default()
            }),
            None => {
                self.fast_path_fallbacks += u64::from(!self.general_only);
                let seed = EnvelopeVisitor {
                    bids: &mut self.bids,
                    asks: &mut self.asks,
                    err: &self.err,
                };
                from_str_seed(raw, seed, &self.err)?
            }
        };
        match env {
            Envelope::Trade(t) => {
                let trade = Trade {
                    price: fixed_field("p", t.price)?,
                    size: fixed_field("q", t.qty)?,
                    side: aggressor(t.buyer_is_maker),
                    trade_id: Some(t.trade_id),
                    exchange_ts_ns: Some(ms_to_ns(t.trade_time_ms)?),
                };
                sink(Some(t.symbol), &Event::Trade(trade));
            }
            Envelope::AggTrade(t) => {
                let trade = Trade {
                    price: fixed_field("p", t.price)?,
                    size: fixed_field("q", t.qty)?,
                    side: aggressor(t.buyer_is_maker),
                    trade_id: Some(t.agg_id),
                    exchange_ts_ns: Some(ms_to_ns(t.trade_time_ms)?),
                };
                sink(Some(t.symbol), &Event::Trade(trade));
            }
            Envelope::BookTicker(b) => {
                let ts = b.transaction_time_ms.or(b.event_time_ms);
                let quote = Quote {
                    bid_price: fixed_field("b", b.bid_price)?,
                    bid_size: fixed_field("B", b.bid_qty)?,
                    ask_price: fixed_field("a", b.ask_price)?,
                    ask_size: fixed_field("A", b.ask_qty)?,
                    exchange_ts_ns: ts.map(ms_to_ns).transpose()?,
                };
                sink(Some(b.symbol), &Event::Quote(quote));
            }
            Envelope::Depth(h) if self.depth.is_some() && h.last_update_id.is_none() => {
                let (Some(first), Some(last), Some(symbol)) =
                    (h.first_update_id, h.final_update_id, h.symbol)
                else {
                    return Err(ParseError::Invalid("depthUpdate without U/u/s"));
                };
                let diff = DepthDiff {
                    first_update_id: first,
                    final_update_id: last,
                    bids: &self.bids,
                    asks: &self.asks,
                    exchange_ts_ns: h.event_time_ms.map(ms_to_ns).transpose()?,
                    recv_ts_ns,
                };
                if let Some(depth) = self.depth.as_mut() {
                    if depth.on_diff(symbol, &diff, sink).fetch_snapshot {
                        self.snapshot_requests.push(symbol.to_owned());
                    }
                }
            }
            Envelope::Depth(h) => {
                let snapshot = h.last_update_id.is_some();
                let update = BookUpdate {
                    snapshot,
                    bids: &self.bids,
                    asks: &self.asks,
                    venue_sequence: h.last_update_id.or(h.final_update_id),
                    exchange_ts_ns: h.event_time_ms.map(ms_to_ns).transpose()?,
                    may_be_bad: false,
                };
                if !snapshot && (h.first_update_id.is_none() || h.final_update_id.is_none()) {
                    return Err(ParseError::Invalid("depthUpdate without U/u"));
                }
                sink(h.symbol, &Event::Book(update));
            }
            Envelope::Ack => return Ok(acknowledged(sink)),
            Envelope::Error => return Err(ParseError::Invalid(REFUSED)),
            Envelope::Unsupported(kind) => return Err(ParseError::Unsupported(kind.to_owned())),
        }
        Ok(Parsed::Data)
    }
}

/// Binance `m` (buyer is maker) → the aggressor's side.
#[inline]
pub(super) fn aggressor(buyer_is_maker: bool) -> Side {
    if buyer_is_maker {
        Side::Sell
    } else {
        Side::Buy
    }
}

#[inline]
pub(super) fn ms_to_ns(ms: u64) -> Result<u64, ParseError> {
    ms.checked_mul(MS)
        .ok_or(ParseError::Invalid("timestamp out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::event::Event;

    #[derive(Debug, PartialEq)]
    enum Out {
        Trade(String, Trade),
        Quote(String, Quote),
        Book(Option<String>, bool, Vec<Level>, Vec<Level>, Option<u64>),
    }

    fn run(raw: &str) -> (Result<Parsed, String>, Vec<Out>) {
        let mut p = BinanceParser::default();
        let mut out = Vec::new();
        let r = p.parse(raw, 1, &mut |sym, ev| match ev {
            Event::Trade(t) => out.push(Out::Trade(sym.unwrap().to_owned(), *t)),
            Event::Quote(q) => out.push(Out::Quote(sym.unwrap().to_owned(), *q)),
            Event::Book(b) => out.push(Out::Book(
                sym.map(str::to_owned),
                b.snapshot,
                b.bids.to_vec(),
                b.asks.to_vec(),
                b.venue_sequence,
            )),
            Event::Status(_) | Event::Mark(_) | Event::Liquidation(_) | Event::OpenInterest(_) => {}
        });
        (r.map_err(|e| e.to_string()), out)
    }

    #[test]
    fn trade_buyer_maker_means_aggressor_sold() {
        let (r, out) = run(
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(
            out,
            vec![Out::Trade(
                "BTCUSDT".into(),
                Trade {
                    price: 6_183_763_000_000,
                    size: 2_000_000,
                    side: Side::Sell,
                    trade_id: Some(3_735_683_259),
                    exchange_ts_ns: Some(1_723_161_255_342_000_000),
                }
            )]
        );
        let (_, out) = run(
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"T":1723161256322,"s":"BTCUSDT","t":5266583935,"p":"61800.30","q":"0.006","X":"MARKET","m":false}}"#,
        );
        assert!(
            matches!(&out[0], Out::Trade(_, t) if t.side == Side::Buy && t.price == 6_180_030_000_000)
        );
    }

    #[test]
    fn spot_book_ticker_has_no_exchange_time_futures_has() {
        let (_, out) = run(
            r#"{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}"#,
        );
        assert_eq!(
            out,
            vec![Out::Quote(
                "BTCUSDT".into(),
                Quote {
                    bid_price: 6_183_763_000_000,
                    bid_size: 378_826_000,
                    ask_price: 6_183_764_000_000,
                    ask_size: 154_698_000,
                    exchange_ts_ns: None
                }
            )]
        );
        let (_, out) = run(
            r#"{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":5123107839020,"s":"BTCUSDT","b":"61800.20","B":"2.507","a":"61800.30","A":"2.510","T":1723161256313,"E":1723161256314}}"#,
        );
        assert!(
            matches!(&out[0], Out::Quote(_, q) if q.exchange_ts_ns == Some(1_723_161_256_313_000_000))
        );
    }

    #[test]
    fn depth_diff_and_rest_snapshot() {
        let (r, out) = run(
            r#"{"stream":"ethusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255308,"s":"ETHUSDT","U":35346513499,"u":35346513505,"b":[["2683.80000000","3.02920000"]],"a":[["2733.70000000","0.00000000"]]}}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(
            out,
            vec![Out::Book(
                Some("ETHUSDT".into()),
                false,
                vec![Level {
                    price: 268_380_000_000,
                    size: 302_920_000
                }],
                vec![Level {
                    price: 273_370_000_000,
                    size: 0
                }],
                Some(35_346_513_505)
            )]
        );
        let (r, out) = run(
            r#"{"lastUpdateId":35346513512,"bids":[["2683.80000000","3.02920000"]],"asks":[]}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert!(
            matches!(&out[0], Out::Book(None, true, b, a, Some(35_346_513_512)) if b.len() == 1 && a.is_empty())
        );
    }

    #[test]
    fn data_before_stream_still_parses() {
        let (r, out) = run(
            r#"{"data":{"u":1,"s":"X","b":"1","B":"2","a":"3","A":"4"},"stream":"x@bookTicker"}"#,
        );
        assert_eq!(r, Ok(Parsed::Data));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn acks_are_control_and_bad_input_is_a_typed_error() {
        assert_eq!(run(r#"{"result":null,"id":1}"#).0, Ok(Parsed::Control));
        let err = run(r#"{"error":{"code":2,"msg":"x"},"id":1}"#)
            .0
            .unwrap_err();
        assert!(err.contains("venue replied with an error"), "{err}");
        let cases = [
            ("", "malformed"),
            ("{", "malformed"),
            ("[]", "malformed"),
            (r#"{"stream":"x@trade"}"#, "malformed"),
            (r#"{"stream":"x@trade","data":{"s":"X"}}"#, "malformed"),
            (
                r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":"1e999","q":"1","T":1,"m":true}}"#,
                "out of range",
            ),
            (
                r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":"abc","q":"1","T":1,"m":true}}"#,
                "not a decimal",
            ),
            (
                r#"{"stream":"x@depth","data":{"s":"X","U":1,"u":2,"b":[["1","99999999999999"]],"a":[]}}"#,
                "out of range",
            ),
            (
                r#"{"stream":"x@kline_1m","data":{"k":{}}}"#,
                "unsupported message kind `kline_1m`",
            ),
            (
                r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":"1","q":"1","T":1,"m":true}} trailing"#,
                "malformed",
            ),
        ];
        for (raw, want) in cases {
            let (r, out) = run(raw);
            let err = r.expect_err(raw);
            assert!(err.contains(want), "{raw}: {err}");
            assert!(out.is_empty(), "{raw}");
        }
    }

    #[test]
    fn out_of_range_is_classified() {
        let mut p = BinanceParser::default();
        let e = p
            .parse(
                r#"{"stream":"x@bookTicker","data":{"s":"X","b":"1","B":"1","a":"99999999999999","A":"1"}}"#,
                0,
                &mut |_, _| {},
            )
            .unwrap_err();
        assert!(e.is_out_of_range(), "{e}");
    }

    #[test]
    fn subscribe_request_shape() {
        let streams = stream_names("ETHUSDT", &["trade".into(), "bookTicker".into()]);
        assert_eq!(
            subscribe_request(&streams, 1),
            r#"{"id":1,"method":"SUBSCRIBE","params":["ethusdt@trade","ethusdt@bookTicker"]}"#
        );
    }

    #[test]
    fn bars_of_the_binance_capture_match_a_naive_grouping() {
        use crate::feed::venue::binance::BinanceParser;
        use crate::feed::venue::VenueParser;
        use crate::market::bars::tests::{assert_nearest_even, cfg, naive_bars, run_all, Tr, S};
        use crate::market::bars::{Bar, BarBuilder, MINUTE_NS};
        use crate::market::event::Event;

        let path = crate::base::testutil::fixture("binance/spot_ethusdt_20240808.txt.gz");
        let recs = crate::persist::recording::read_all(&path).unwrap();
        let mut parser = BinanceParser::default();
        let mut trades: Vec<Tr> = Vec::new();
        for r in &recs {
            let recv = r.recv_ns.unwrap();
            let _ = parser.parse(&r.raw, recv, &mut |_, ev| {
                if let Event::Trade(t) = ev {
                    trades.push((t.exchange_ts_ns.unwrap_or(recv), t.price, t.size));
                }
            });
        }
        assert!(trades.len() > 1000, "only {} trades", trades.len());

        let mut b = BarBuilder::new(&cfg(&[MINUTE_NS, S], 100_000, 0));
        let closed = run_all(&mut b, &trades);
        let (want, late, late_vol) = naive_bars(MINUTE_NS, &trades);
        let got: Vec<Bar> = closed
            .iter()
            .filter(|b| b.interval_ns == MINUTE_NS)
            .copied()
            .collect();
        assert_eq!(got.len(), want.len());
        assert!(got.len() >= 2, "the capture spans several minutes");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w);
            assert_eq!(g.vwap(), w.vwap());
            assert_nearest_even(w.notional, w.volume, g.vwap());
        }
        assert_eq!(
            (b.late_trades(MINUTE_NS), b.late_volume(MINUTE_NS)),
            (late, late_vol)
        );
        let total: i128 = got.iter().map(|b| b.volume).sum::<i128>() + late_vol;
        assert_eq!(total, b.session().volume);
        assert_eq!(b.session().trade_count, trades.len() as u64);
        let secs: Vec<&Bar> = closed.iter().filter(|b| b.interval_ns == S).collect();
        assert!(secs.len() > got.len());
    }
}
