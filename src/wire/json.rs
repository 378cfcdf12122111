//! The JSON-lines schema of `mdrelay decode` and `mdrelay tail --json` (README, "JSON schema").
//!
//! One object per event; decimals as exact strings (never JSON numbers, which most readers turn
//! into binary floats); timestamps as integer ns since the epoch, `null` when unknown.
//! Not on the hot path: used by command-line tools only.

use std::fmt;
use std::io::{self, Write};

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

use crate::base::timefmt::format_rfc3339_ns;
use crate::market::bars::{Decimal128, IntervalLabel};
use crate::market::event::{
    present, BookUpdate, Event, Level, Liquidation, Mark, OpenInterest, Quote, Status, Trade,
};
use crate::market::fixed::{Decimal, Rate, ABSENT};
use crate::wire::protocol::BarFrame;

/// An exact decimal string, or `null` for [`ABSENT`].
struct Dec(i64);

impl Serialize for Dec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == ABSENT {
            s.serialize_none()
        } else {
            s.collect_str(&Decimal(self.0))
        }
    }
}

/// An exact rate string ([`Rate`], units of 10⁻¹⁸), or `null` for [`ABSENT`].
struct RateStr(i64);

impl Serialize for RateStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == ABSENT {
            s.serialize_none()
        } else {
            s.collect_str(&Rate(self.0))
        }
    }
}

/// A u64 written as a JSON string (trade ids can exceed 2^53, which JSON readers mangle).
struct IdStr(u64);

impl Serialize for IdStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

struct Levels<'a>(&'a [Level]);

impl Serialize for Levels<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for l in self.0 {
            seq.serialize_element(&(Dec(l.price), Dec(l.size)))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct TradeJson<'a> {
    r#type: &'static str,
    venue: &'a str,
    symbol: Option<&'a str>,
    price: Dec,
    size: Dec,
    side: &'static str,
    trade_id: Option<IdStr>,
    exchange_ts_ns: Option<u64>,
    recv_ts_ns: Option<u64>,
}

#[derive(Serialize)]
struct QuoteJson<'a> {
    r#type: &'static str,
    venue: &'a str,
    symbol: Option<&'a str>,
    bid_price: Dec,
    bid_size: Dec,
    ask_price: Dec,
    ask_size: Dec,
    exchange_ts_ns: Option<u64>,
    recv_ts_ns: Option<u64>,
}

#[derive(Serialize)]
struct BookJson<'a> {
    r#type: &'static str,
    venue: &'a str,
    symbol: Option<&'a str>,
    snapshot: bool,
    bids: Levels<'a>,
    asks: Levels<'a>,
    sequence: Option<u64>,
    may_be_bad: bool,
    exchange_ts_ns: Option<u64>,
    recv_ts_ns: Option<u64>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    r#type: &'static str,
    venue: &'a str,
    symbol: Option<&'a str>,
    event: &'static str,
    count: u64,
    detail: &'a str,
}

#[derive(Serialize)]
struct MarkJson<'a> {
    r#type: &'static str,
    venue: &'a str,
    symbol: Option<&'a str>,
    mark_price: Dec,
    index_price: Dec,
    settle_price: Dec,
    funding_rate: RateStr,
    next_funding_ns: Option<u64>,
    exchange_ts_ns: Option<u64>,
    recv_ts_ns: Option<u64>,
}

#[derive(Serialize)]
struct LiquidationJson<'a> {
    r#type: &'static str,
    venue: &'a str,
    symbol: Option<&'a str>,
    side: &'static str,
    price: Dec,
    avg_price: Dec,
    size: Dec,
    filled_size: Dec,
    status: &'static str,
    exchange_ts_ns: Option<u64>,
    recv_ts_ns: Option<u64>,
}

#[derive(Serialize)]
struct OpenInterestJson<'a> {
    r#type: &'static str,
    venue: &'a str,
    symbol: Option<&'a str>,
    open_interest: Dec,
    value: Dec,
    exchange_ts_ns: Option<u64>,
    recv_ts_ns: Option<u64>,
}

/// A closed bar as JSON: the line `tail --json` prints and the element of `/v1/bars`.
#[derive(Serialize)]
pub struct BarJson<'a> {
    r#type: &'static str,
    venue: &'a str,
    symbol: Option<&'a str>,
    interval: String,
    interval_ns: u64,
    start: String,
    start_ns: u64,
    end_ns: u64,
    open: Dec,
    high: Dec,
    low: Dec,
    close: Dec,
    volume: String,
    vwap: Dec,
    trade_count: u64,
    first_trade_ns: u64,
    last_trade_ns: u64,
}

impl<'a> BarJson<'a> {
    /// The JSON form of `b`, a bar of `o`'s instrument.
    pub fn new(o: &Origin<'a>, b: &BarFrame) -> Self {
        BarJson {
            r#type: "bar",
            venue: o.venue,
            symbol: o.symbol,
            interval: IntervalLabel(b.interval_ns).to_string(),
            interval_ns: b.interval_ns,
            start: format_rfc3339_ns(b.start_ns),
            start_ns: b.start_ns,
            end_ns: b.start_ns.saturating_add(b.interval_ns),
            open: Dec(b.open),
            high: Dec(b.high),
            low: Dec(b.low),
            close: Dec(b.close),
            volume: Decimal128(b.volume).to_string(),
            vwap: Dec(b.vwap),
            trade_count: b.trade_count,
            first_trade_ns: b.first_trade_ns,
            last_trade_ns: b.last_trade_ns,
        }
    }
}

/// Writes a closed bar as one JSON line (with the trailing newline).
pub fn write_bar<W: Write>(w: &mut W, o: &Origin<'_>, b: &BarFrame) -> io::Result<()> {
    serde_json::to_writer(&mut *w, &BarJson::new(o, b)).map_err(io::Error::from)?;
    w.write_all(b"\n")
}

/// A human-readable one-line rendering of a closed bar (for `mdrelay tail`).
pub struct HumanBar<'a> {
    /// Where it came from.
    pub origin: Origin<'a>,
    /// The bar.
    pub bar: &'a BarFrame,
}

impl fmt::Display for HumanBar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (o, b) = (&self.origin, self.bar);
        write!(
            f,
            "{} {} {:<10} bar    {} o={} h={} l={} c={} v={} n={}",
            format_rfc3339_ns(b.start_ns),
            o.venue,
            o.symbol.unwrap_or("*"),
            IntervalLabel(b.interval_ns),
            Decimal(b.open),
            Decimal(b.high),
            Decimal(b.low),
            Decimal(b.close),
            Decimal128(b.volume),
            b.trade_count
        )
    }
}

/// Where an event came from, for its JSON line.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Venue name.
    pub venue: &'a str,
    /// Venue symbol, `None` for feed-wide status.
    pub symbol: Option<&'a str>,
    /// Receive time, ns since epoch, when known.
    pub recv_ts_ns: Option<u64>,
}

/// Writes `ev` as one JSON line (with the trailing newline).
pub fn write_event<W: Write>(w: &mut W, o: &Origin<'_>, ev: &Event<'_>) -> io::Result<()> {
    match ev {
        Event::Trade(t) => write_trade(w, o, t),
        Event::Quote(q) => write_quote(w, o, q),
        Event::Book(b) => write_book(w, o, b),
        Event::Status(s) => write_status(w, o, s),
        Event::Mark(k) => write_mark(w, o, k),
        Event::Liquidation(l) => write_liquidation(w, o, l),
        Event::OpenInterest(oi) => write_open_interest(w, o, oi),
    }?;
    w.write_all(b"\n")
}

fn write_trade<W: Write>(w: &mut W, o: &Origin<'_>, t: &Trade) -> io::Result<()> {
    serde_json::to_writer(
        w,
        &TradeJson {
            r#type: "trade",
            venue: o.venue,
            symbol: o.symbol,
            price: Dec(t.price),
            size: Dec(t.size),
            side: t.side.name(),
            trade_id: present(t.trade_id).map(IdStr),
            exchange_ts_ns: present(t.exchange_ts_ns),
            recv_ts_ns: o.recv_ts_ns,
        },
    )
    .map_err(io::Error::from)
}

fn write_quote<W: Write>(w: &mut W, o: &Origin<'_>, q: &Quote) -> io::Result<()> {
    serde_json::to_writer(
        w,
        &QuoteJson {
            r#type: "quote",
            venue: o.venue,
            symbol: o.symbol,
            bid_price: Dec(q.bid_price),
            bid_size: Dec(q.bid_size),
            ask_price: Dec(q.ask_price),
            ask_size: Dec(q.ask_size),
            exchange_ts_ns: present(q.exchange_ts_ns),
            recv_ts_ns: o.recv_ts_ns,
        },
    )
    .map_err(io::Error::from)
}

fn write_book<W: Write>(w: &mut W, o: &Origin<'_>, b: &BookUpdate<'_>) -> io::Result<()> {
    serde_json::to_writer(
        w,
        &BookJson {
            r#type: "book",
            venue: o.venue,
            symbol: o.symbol,
            snapshot: b.snapshot,
            bids: Levels(b.bids),
            asks: Levels(b.asks),
            sequence: present(b.venue_sequence),
            may_be_bad: b.may_be_bad,
            exchange_ts_ns: present(b.exchange_ts_ns),
            recv_ts_ns: o.recv_ts_ns,
        },
    )
    .map_err(io::Error::from)
}

fn write_status<W: Write>(w: &mut W, o: &Origin<'_>, s: &Status<'_>) -> io::Result<()> {
    serde_json::to_writer(
        w,
        &StatusJson {
            r#type: "status",
            venue: o.venue,
            symbol: o.symbol,
            event: s.code.name(),
            count: s.count,
            detail: s.detail,
        },
    )
    .map_err(io::Error::from)
}

fn write_mark<W: Write>(w: &mut W, o: &Origin<'_>, k: &Mark) -> io::Result<()> {
    serde_json::to_writer(
        w,
        &MarkJson {
            r#type: "mark",
            venue: o.venue,
            symbol: o.symbol,
            mark_price: Dec(k.mark_price),
            index_price: Dec(k.index_price),
            settle_price: Dec(k.settle_price),
            funding_rate: RateStr(k.funding_rate),
            next_funding_ns: present(k.next_funding_ns),
            exchange_ts_ns: present(k.exchange_ts_ns),
            recv_ts_ns: o.recv_ts_ns,
        },
    )
    .map_err(io::Error::from)
}

fn write_liquidation<W: Write>(w: &mut W, o: &Origin<'_>, l: &Liquidation) -> io::Result<()> {
    serde_json::to_writer(
        w,
        &LiquidationJson {
            r#type: "liquidation",
            venue: o.venue,
            symbol: o.symbol,
            side: l.side.name(),
            price: Dec(l.price),
            avg_price: Dec(l.avg_price),
            size: Dec(l.size),
            filled_size: Dec(l.filled_size),
            status: l.status.name(),
            exchange_ts_ns: present(l.exchange_ts_ns),
            recv_ts_ns: o.recv_ts_ns,
        },
    )
    .map_err(io::Error::from)
}

fn write_open_interest<W: Write>(w: &mut W, o: &Origin<'_>, oi: &OpenInterest) -> io::Result<()> {
    serde_json::to_writer(
        w,
        &OpenInterestJson {
            r#type: "open_interest",
            venue: o.venue,
            symbol: o.symbol,
            open_interest: Dec(oi.open_interest),
            value: Dec(oi.value),
            exchange_ts_ns: present(oi.exchange_ts_ns),
            recv_ts_ns: o.recv_ts_ns,
        },
    )
    .map_err(io::Error::from)
}

/// A human-readable one-line rendering of an event (for `mdrelay tail`).
pub struct Human<'a> {
    /// Where it came from.
    pub origin: Origin<'a>,
    /// The event.
    pub event: &'a Event<'a>,
    /// Per-instrument sequence, when known.
    pub sequence: Option<u64>,
}

impl fmt::Display for Human<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        let ts = o
            .recv_ts_ns
            .map(crate::base::timefmt::format_rfc3339_ns)
            .unwrap_or_else(|| "-".into());
        write!(f, "{ts} {} {:<10} ", o.venue, o.symbol.unwrap_or("*"))?;
        match self.event {
            Event::Trade(t) => {
                write!(
                    f,
                    "trade  {:<4} {} @ {}",
                    t.side.name(),
                    Decimal(t.size),
                    Decimal(t.price)
                )?;
                if let Some(id) = present(t.trade_id) {
                    write!(f, " id={id}")?;
                }
            }
            Event::Quote(q) => write!(
                f,
                "quote  {} x {}  |  {} x {}",
                Decimal(q.bid_size),
                Decimal(q.bid_price),
                Decimal(q.ask_price),
                Decimal(q.ask_size)
            )?,
            Event::Book(b) => write!(
                f,
                "book   {} {} bids {} asks{}",
                if b.snapshot { "snapshot" } else { "delta" },
                b.bids.len(),
                b.asks.len(),
                if b.may_be_bad { " (may be bad)" } else { "" }
            )?,
            Event::Status(s) => {
                write!(f, "status {} count={} {}", s.code.name(), s.count, s.detail)?
            }
            Event::Mark(k) => {
                write!(
                    f,
                    "mark   {} index={} funding={}",
                    Decimal(k.mark_price),
                    Decimal(k.index_price),
                    Rate(k.funding_rate)
                )?;
                if let Some(t) = present(k.next_funding_ns) {
                    write!(f, " next={}", crate::base::timefmt::format_rfc3339_ns(t))?;
                }
            }
            Event::Liquidation(l) => write!(
                f,
                "liq    {:<4} {} @ {} avg={} filled={} {}",
                l.side.name(),
                Decimal(l.size),
                Decimal(l.price),
                Decimal(l.avg_price),
                Decimal(l.filled_size),
                l.status.name()
            )?,
            Event::OpenInterest(oi) => write!(
                f,
                "oi     {} value={}",
                Decimal(oi.open_interest),
                Decimal(oi.value)
            )?,
        }
        if let Some(seq) = self.sequence {
            write!(f, " seq={seq}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::event::Side;

    #[test]
    fn trade_line_matches_the_documented_schema() {
        let mut out = Vec::new();
        write_event(
            &mut out,
            &Origin {
                venue: "binance",
                symbol: Some("BTCUSDT"),
                recv_ts_ns: Some(1_723_161_254_087_896_568),
            },
            &Event::Trade(Trade {
                price: 6_183_763_000_000,
                size: 2_000_000,
                side: Side::Sell,
                trade_id: Some(3_735_683_259),
                exchange_ts_ns: Some(1_723_161_255_342_000_000),
            }),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"trade","venue":"binance","symbol":"BTCUSDT","price":"61837.63","size":"0.02","side":"sell","trade_id":"3735683259","exchange_ts_ns":1723161255342000000,"recv_ts_ns":1723161254087896568}"#.to_owned() + "\n"
        );
    }

    #[test]
    fn quote_with_absent_side_and_no_exchange_time() {
        let mut out = Vec::new();
        let q = Quote {
            bid_price: 100_000_000,
            bid_size: 1,
            ..Quote::EMPTY
        };
        write_event(
            &mut out,
            &Origin {
                venue: "binance",
                symbol: Some("X"),
                recv_ts_ns: Some(5),
            },
            &Event::Quote(q),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap().trim_end(),
            r#"{"type":"quote","venue":"binance","symbol":"X","bid_price":"1","bid_size":"0.00000001","ask_price":null,"ask_size":null,"exchange_ts_ns":null,"recv_ts_ns":5}"#
        );
    }

    fn line(ev: &Event<'_>) -> String {
        let mut out = Vec::new();
        write_event(
            &mut out,
            &Origin {
                venue: "binance_usdm",
                symbol: Some("BTCUSDT"),
                recv_ts_ns: Some(7),
            },
            ev,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The Binance `markPriceUpdate` documentation sample (fixtures/samples/binance.jsonl).
    #[test]
    fn mark_line_has_exact_prices_and_the_funding_rate_to_18_places() {
        let m = Mark {
            mark_price: 1_179_415_000_000,
            index_price: 1_178_462_659_091,
            settle_price: 1_178_425_641_265,
            funding_rate: 381_670_000_000_000,
            next_funding_ns: Some(1_562_306_400_000_000_000),
            exchange_ts_ns: Some(1_562_305_380_000_000_000),
        };
        assert_eq!(
            line(&Event::Mark(m)),
            r#"{"type":"mark","venue":"binance_usdm","symbol":"BTCUSDT","mark_price":"11794.15","index_price":"11784.62659091","settle_price":"11784.25641265","funding_rate":"0.00038167","next_funding_ns":1562306400000000000,"exchange_ts_ns":1562305380000000000,"recv_ts_ns":7}"#.to_owned() + "\n"
        );
        // Absent values are null, as in quotes; a 16-decimal rate keeps every digit.
        let bare = Mark {
            index_price: ABSENT,
            settle_price: ABSENT,
            funding_rate: -59_739_317_855_300,
            next_funding_ns: None,
            exchange_ts_ns: None,
            ..m
        };
        assert_eq!(
            line(&Event::Mark(bare)).trim_end(),
            r#"{"type":"mark","venue":"binance_usdm","symbol":"BTCUSDT","mark_price":"11794.15","index_price":null,"settle_price":null,"funding_rate":"-0.0000597393178553","next_funding_ns":null,"exchange_ts_ns":null,"recv_ts_ns":7}"#
        );
        let no_rate = Mark {
            funding_rate: ABSENT,
            ..bare
        };
        assert!(line(&Event::Mark(no_rate)).contains(r#""funding_rate":null,"#));
    }

    /// The Binance `forceOrder` documentation sample (fixtures/samples/binance.jsonl).
    #[test]
    fn liquidation_line() {
        let l = Liquidation {
            side: Side::Sell,
            price: 991_000_000_000,
            avg_price: 991_012_345_678,
            size: 1_400_000,
            filled_size: 1_400_000,
            status: crate::market::event::LiquidationStatus::Filled,
            exchange_ts_ns: Some(1_568_014_460_893_000_000),
        };
        assert_eq!(
            line(&Event::Liquidation(l)).trim_end(),
            r#"{"type":"liquidation","venue":"binance_usdm","symbol":"BTCUSDT","side":"sell","price":"9910","avg_price":"9910.12345678","size":"0.014","filled_size":"0.014","status":"filled","exchange_ts_ns":1568014460893000000,"recv_ts_ns":7}"#
        );
        let open = Liquidation {
            avg_price: ABSENT,
            filled_size: ABSENT,
            status: crate::market::event::LiquidationStatus::New,
            ..l
        };
        assert!(line(&Event::Liquidation(open))
            .contains(r#""avg_price":null,"size":"0.014","filled_size":null,"status":"new""#));
    }

    #[test]
    fn open_interest_line() {
        let oi = OpenInterest {
            open_interest: 1_065_974_900_000_000,
            value: ABSENT,
            exchange_ts_ns: Some(1_589_437_530_011_000_000),
        };
        assert_eq!(
            line(&Event::OpenInterest(oi)).trim_end(),
            r#"{"type":"open_interest","venue":"binance_usdm","symbol":"BTCUSDT","open_interest":"10659749","value":null,"exchange_ts_ns":1589437530011000000,"recv_ts_ns":7}"#
        );
    }
}
