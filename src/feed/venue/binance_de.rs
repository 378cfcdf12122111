//! The messages of Binance streams as serde reads them, borrowed from the raw text. The spot
//! parser (`binance.rs`) reads `trade`, `aggTrade`, `bookTicker`, `depthUpdate` and the REST depth
//! snapshot with the same structs (the futures-only fields are absent there). For USD-M and COIN-M
//! futures: `trade` (with `X`), `aggTrade`, `bookTicker` (with `E`, `T`), `depthUpdate`
//! (with `pu`), `markPriceUpdate`, `forceOrder`, the REST depth snapshot, and the combined-stream
//! envelope, read in one pass: `stream` comes first (Binance always sends it first), so `data` is
//! deserialized straight into the type the stream names; a `data` before its `stream` is kept as
//! a raw slice and parsed afterwards. A message without an envelope (a raw `/ws/<stream>`
//! connection, the documentation's examples) is recognized by its `e` and read in a second pass.
//!
//! References: Binance USD-M Futures and COIN-M Futures "WebSocket Market Streams" (Trade
//! Streams, Aggregate Trade Streams, Individual Symbol Book Ticker Streams, Diff. Book Depth
//! Streams, Mark Price Stream, Liquidation Order Streams) and "Order Book" (REST). Used by
//! `binance.rs` and `binance_futures.rs` on the collector thread of a Binance feed; never blocks.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::de::{pair_level, ErrSlot, LevelsSeed, StrPair};
use crate::market::event::Level;

/// A futures `trade` message.
#[derive(Deserialize)]
pub(super) struct TradeData<'a> {
    #[serde(rename = "s")]
    pub(super) symbol: &'a str,
    #[serde(rename = "t")]
    pub(super) trade_id: u64,
    #[serde(rename = "p")]
    pub(super) price: &'a str,
    #[serde(rename = "q")]
    pub(super) qty: &'a str,
    #[serde(rename = "T")]
    pub(super) trade_time_ms: u64,
    #[serde(rename = "m")]
    pub(super) buyer_is_maker: bool,
    /// `X`: `MARKET` for a market execution; `INSURANCE_FUND`, `ADL`, `NA`, … otherwise.
    #[serde(rename = "X", default)]
    pub(super) kind: Option<&'a str>,
}

/// A futures `aggTrade` message (market trades only: Binance aggregates no insurance-fund or
/// ADL fills).
#[derive(Deserialize)]
pub(super) struct AggTradeData<'a> {
    #[serde(rename = "s")]
    pub(super) symbol: &'a str,
    #[serde(rename = "a")]
    pub(super) agg_id: u64,
    #[serde(rename = "p")]
    pub(super) price: &'a str,
    #[serde(rename = "q")]
    pub(super) qty: &'a str,
    #[serde(rename = "T")]
    pub(super) trade_time_ms: u64,
    #[serde(rename = "m")]
    pub(super) buyer_is_maker: bool,
}

/// A futures `bookTicker` message.
#[derive(Deserialize)]
pub(super) struct BookTickerData<'a> {
    #[serde(rename = "s")]
    pub(super) symbol: &'a str,
    #[serde(rename = "b")]
    pub(super) bid_price: &'a str,
    #[serde(rename = "B")]
    pub(super) bid_qty: &'a str,
    #[serde(rename = "a")]
    pub(super) ask_price: &'a str,
    #[serde(rename = "A")]
    pub(super) ask_qty: &'a str,
    /// Transaction time, ms.
    #[serde(rename = "T")]
    pub(super) transaction_time_ms: Option<u64>,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub(super) event_time_ms: Option<u64>,
}

/// A `markPriceUpdate` message. Delivery contracts send `r` = `""` and `T` = 0 (no funding).
#[derive(Deserialize)]
pub(super) struct MarkPriceData<'a> {
    #[serde(rename = "s")]
    pub(super) symbol: &'a str,
    #[serde(rename = "E")]
    pub(super) event_time_ms: Option<u64>,
    #[serde(rename = "p")]
    pub(super) mark_price: &'a str,
    #[serde(rename = "i", default)]
    pub(super) index_price: Option<&'a str>,
    #[serde(rename = "P", default)]
    pub(super) settle_price: Option<&'a str>,
    #[serde(rename = "r", default)]
    pub(super) funding_rate: Option<&'a str>,
    #[serde(rename = "T", default)]
    pub(super) next_funding_ms: Option<u64>,
}

/// The order inside a `forceOrder` message.
#[derive(Deserialize)]
pub(super) struct ForceOrder<'a> {
    #[serde(rename = "s")]
    pub(super) symbol: &'a str,
    /// `BUY` or `SELL`: the side of the liquidation order.
    #[serde(rename = "S")]
    pub(super) side: &'a str,
    #[serde(rename = "q")]
    pub(super) qty: &'a str,
    #[serde(rename = "p")]
    pub(super) price: &'a str,
    #[serde(rename = "ap", default)]
    pub(super) avg_price: Option<&'a str>,
    /// `NEW`, `PARTIALLY_FILLED`, `FILLED`, `CANCELED`, `EXPIRED`.
    #[serde(rename = "X", default)]
    pub(super) status: Option<&'a str>,
    /// Accumulated filled quantity.
    #[serde(rename = "z", default)]
    pub(super) filled_qty: Option<&'a str>,
    #[serde(rename = "T", default)]
    pub(super) trade_time_ms: Option<u64>,
}

/// A `forceOrder` message.
#[derive(Deserialize)]
pub(super) struct ForceOrderData<'a> {
    #[serde(rename = "E", default)]
    pub(super) event_time_ms: Option<u64>,
    #[serde(rename = "o", borrow)]
    pub(super) order: ForceOrder<'a>,
}

/// What a Binance level array is, for serde's "expected …" text.
const LEVELS: &str = "an array of [price, quantity] string pairs";

/// Deserializes `[["price","qty"],…]` straight into `out`, replacing its content.
pub(super) fn levels<'v, 'de>(
    out: &'v mut Vec<Level>,
    err: &'v ErrSlot,
) -> LevelsSeed<'v, StrPair<'de>, impl Fn(StrPair<'de>) -> Result<Level, super::ParseError>> {
    out.clear();
    LevelsSeed::new(out, err, LEVELS, pair_level("qty"))
}

/// Fields of a `depthUpdate` diff or a REST depth snapshot other than their levels.
#[derive(Default)]
pub(super) struct DepthHead<'a> {
    pub(super) symbol: Option<&'a str>,
    /// `U`.
    pub(super) first_update_id: Option<u64>,
    /// `u`.
    pub(super) final_update_id: Option<u64>,
    /// `pu`: the previous diff's `u`.
    pub(super) prev_final_update_id: Option<u64>,
    /// `E`, ms.
    pub(super) event_time_ms: Option<u64>,
    /// `T` (transaction time), ms.
    pub(super) transaction_time_ms: Option<u64>,
    /// `lastUpdateId` (REST snapshot only).
    pub(super) last_update_id: Option<u64>,
}

/// The level buffers a depth message is read into, and the error side channel.
pub(super) struct Buffers<'v> {
    pub(super) bids: &'v mut Vec<Level>,
    pub(super) asks: &'v mut Vec<Level>,
    pub(super) err: &'v ErrSlot,
}

impl<'de> Buffers<'_> {
    /// Reads the remaining fields of a depth object into `head` and the buffers.
    fn read_depth<A: MapAccess<'de>>(
        self,
        mut map: A,
        mut head: DepthHead<'de>,
    ) -> Result<DepthHead<'de>, A::Error> {
        self.bids.clear();
        self.asks.clear();
        while let Some(k) = map.next_key::<&'de str>()? {
            match k {
                "s" => head.symbol = Some(map.next_value()?),
                "U" => head.first_update_id = Some(map.next_value()?),
                "u" => head.final_update_id = Some(map.next_value()?),
                "pu" => head.prev_final_update_id = Some(map.next_value()?),
                "E" => head.event_time_ms = Some(map.next_value()?),
                "T" => head.transaction_time_ms = Some(map.next_value()?),
                "lastUpdateId" => head.last_update_id = Some(map.next_value()?),
                "b" | "bids" => map.next_value_seed(levels(self.bids, self.err))?,
                "a" | "asks" => map.next_value_seed(levels(self.asks, self.err))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }
}

/// Parses a depth diff or REST snapshot object into the buffers.
pub(super) struct DepthSeed<'v>(pub(super) Buffers<'v>);

impl<'de> DeserializeSeed<'de> for DepthSeed<'_> {
    type Value = DepthHead<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DepthSeed<'_> {
    type Value = DepthHead<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a depth update or snapshot object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.read_depth(map, DepthHead::default())
    }
}

/// What a message turned out to be.
pub(super) enum Envelope<'a> {
    Trade(TradeData<'a>),
    AggTrade(AggTradeData<'a>),
    BookTicker(BookTickerData<'a>),
    /// A diff (`U`, `u`, `pu`) or a recorded REST snapshot (`lastUpdateId`, no symbol).
    Depth(DepthHead<'a>),
    Mark(MarkPriceData<'a>),
    Liquidation(ForceOrderData<'a>),
    /// `{"result":…,"id":N}`: a request acknowledged.
    Ack,
    /// `{"error":{…}}`: the venue refused a request.
    Error,
    /// A message without envelope: its event type `e`; parsed again by that type.
    Bare(&'a str),
    /// A stream mdrelay does not normalize (klines, tickers…): the stream's kind.
    Unsupported(&'a str),
}

/// The stream kinds this parser reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamKind {
    Trade,
    AggTrade,
    BookTicker,
    Depth,
    Mark,
    Liquidation,
    Other,
}

/// The kind of a combined stream name (`ethusdt@depth@0ms` → depth). Partial book depth
/// streams (`depth5`, `depth10`, `depth20`, with or without `@speed`) are top-N snapshots, not
/// diffs: not normalized ([`StreamKind::Other`]).
pub(super) fn stream_kind(stream: &str) -> StreamKind {
    let kind = stream.split_once('@').map_or(stream, |(_, k)| k);
    match kind {
        "trade" => StreamKind::Trade,
        "aggTrade" => StreamKind::AggTrade,
        "bookTicker" => StreamKind::BookTicker,
        "forceOrder" => StreamKind::Liquidation,
        k if k.starts_with("markPrice") => StreamKind::Mark,
        "depth" => StreamKind::Depth,
        k if k.starts_with("depth@") => StreamKind::Depth,
        _ => StreamKind::Other,
    }
}

/// The kind of a bare message's event type `e`.
pub(super) fn event_kind(e: &str) -> StreamKind {
    match e {
        "trade" => StreamKind::Trade,
        "aggTrade" => StreamKind::AggTrade,
        "bookTicker" => StreamKind::BookTicker,
        "depthUpdate" => StreamKind::Depth,
        "markPriceUpdate" => StreamKind::Mark,
        "forceOrder" => StreamKind::Liquidation,
        _ => StreamKind::Other,
    }
}

/// Deserializes a message body of `kind` from `d` into the envelope.
pub(super) fn parse_body<'de, D: de::Deserializer<'de>>(
    kind: StreamKind,
    name: &'de str,
    buffers: Buffers<'_>,
    d: D,
) -> Result<Envelope<'de>, D::Error> {
    Ok(match kind {
        StreamKind::Trade => Envelope::Trade(TradeData::deserialize(d)?),
        StreamKind::AggTrade => Envelope::AggTrade(AggTradeData::deserialize(d)?),
        StreamKind::BookTicker => Envelope::BookTicker(BookTickerData::deserialize(d)?),
        StreamKind::Depth => Envelope::Depth(DepthSeed(buffers).deserialize(d)?),
        StreamKind::Mark => Envelope::Mark(MarkPriceData::deserialize(d)?),
        StreamKind::Liquidation => Envelope::Liquidation(ForceOrderData::deserialize(d)?),
        StreamKind::Other => {
            IgnoredAny::deserialize(d)?;
            Envelope::Unsupported(name.split_once('@').map_or(name, |(_, k)| k))
        }
    })
}

/// The combined-stream envelope visitor (see the module doc).
pub(super) struct EnvelopeSeed<'v>(pub(super) Buffers<'v>);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Envelope<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

struct DataSeed<'v, 'de> {
    buffers: Buffers<'v>,
    stream: &'de str,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_, 'de> {
    type Value = Envelope<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        parse_body(stream_kind(self.stream), self.stream, self.buffers, d)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Binance futures stream message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut stream: Option<&'de str> = None;
        let mut raw_data: Option<&'de RawValue> = None;
        let mut parsed: Option<Envelope<'de>> = None;
        let (mut ack, mut error) = (false, false);
        let mut event: Option<&'de str> = None;
        let mut this = Some(self.0);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "stream" => stream = Some(map.next_value()?),
                "data" => match (stream, this.take()) {
                    (Some(s), Some(buffers)) => {
                        parsed = Some(map.next_value_seed(DataSeed { buffers, stream: s })?)
                    }
                    (_, b) => {
                        this = b;
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
                "e" => event = Some(map.next_value()?),
                // A REST depth snapshot line (`{"lastUpdateId":…}`) as captured in recordings.
                "lastUpdateId" => {
                    let head = DepthHead {
                        last_update_id: Some(map.next_value()?),
                        ..DepthHead::default()
                    };
                    let buffers = this
                        .take()
                        .ok_or_else(|| de::Error::custom("snapshot inside an envelope"))?;
                    return Ok(Envelope::Depth(buffers.read_depth(map, head)?));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if error {
            return Ok(Envelope::Error);
        }
        match (stream, this, event) {
            (Some(s), Some(buffers), _) => {
                let raw = raw_data.ok_or_else(|| de::Error::missing_field("data"))?;
                let mut de = serde_json::Deserializer::from_str(raw.get());
                parse_body(stream_kind(s), s, buffers, &mut de).map_err(de::Error::custom)
            }
            (Some(_), None, _) => parsed.ok_or_else(|| de::Error::missing_field("data")),
            (None, _, Some(e)) => Ok(Envelope::Bare(e)),
            (None, _, None) if ack => Ok(Envelope::Ack),
            (None, _, None) => Err(de::Error::missing_field("stream")),
        }
    }
}
