//! OKX v5 derivatives channels, for swaps and futures: `mark-price` and `funding-rate` → [`Mark`],
//! `open-interest` → [`OpenInterest`], `liquidation-orders` → [`Liquidation`]. Called by
//! [`super::okx::OkxParser`] for those channels.
//!
//! Reference: OKX "API v5" documentation, WebSocket public channels "Mark price channel",
//! "Funding rate channel", "Open interest channel", "Liquidation orders channel". Points that
//! matter:
//! - `mark-price` carries only `markPx`; `funding-rate` carries `fundingRate` for the funding at
//!   `fundingTime` (the next settlement): each emits a [`Mark`] with the fields it has, the others
//!   [`ABSENT`]. The rate is exact to 1e-18 ([`crate::market::fixed::parse_rate`]); OKX writes up to
//!   16 decimals.
//! - `open-interest`: `oi` in contracts, `oiUsd` its value in USD (the `value`).
//! - `liquidation-orders` is subscribed per instrument type (`{"channel":"liquidation-orders",
//!   "instType":"SWAP"}`) and reports every instrument of that type; only the feed's symbols are
//!   emitted (all of them when the parser was given no subscription, as in `mdrelay decode`).
//!   Each `details` entry is one liquidation order: `side` is the order's side, `sz` its size,
//!   `bkPx` the bankruptcy price (the `price`). OKX says nothing of the order's fills, so
//!   `filled_size` is absent and `status` is `unknown`: never a value the venue did not send.
//!
//! Runs on the OKX collector thread inside one parse; never blocks; allocates nothing.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::de::ErrSlot;
use super::each::{each, ms_str_to_ns};
use super::{fixed_field, ParseError, Sink};
use crate::market::event::{Event, Liquidation, LiquidationStatus, Mark, OpenInterest, Side};
use crate::market::fixed::{parse_rate, ABSENT};

/// The channels of this module.
pub const CHANNELS: &[&str] = &[
    "mark-price",
    "funding-rate",
    "open-interest",
    "liquidation-orders",
];

/// The `instType` of an OKX instrument id: `-SWAP` perpetuals, `-YYMMDD` futures, `-C`/`-P`
/// options; `None` for spot and margin pairs (no liquidation channel).
pub fn inst_type(inst_id: &str) -> Option<&'static str> {
    let last = inst_id.rsplit('-').next().unwrap_or("");
    if inst_id.ends_with("-SWAP") {
        Some("SWAP")
    } else if last.len() == 6 && last.bytes().all(|b| b.is_ascii_digit()) {
        Some("FUTURES")
    } else if inst_id.matches('-').count() >= 4 && (last == "C" || last == "P") {
        Some("OPTION")
    } else {
        None
    }
}

#[derive(Deserialize)]
struct MarkData<'a> {
    #[serde(borrow, rename = "instId")]
    inst_id: &'a str,
    #[serde(borrow, rename = "markPx", default)]
    mark_px: &'a str,
    #[serde(borrow, rename = "fundingRate", default)]
    funding_rate: &'a str,
    #[serde(borrow, rename = "fundingTime", default)]
    funding_time: &'a str,
    #[serde(borrow)]
    ts: Option<&'a str>,
}

#[derive(Deserialize)]
struct OiData<'a> {
    #[serde(borrow, rename = "instId")]
    inst_id: &'a str,
    #[serde(borrow)]
    oi: &'a str,
    #[serde(borrow, rename = "oiUsd", default)]
    oi_usd: &'a str,
    #[serde(borrow)]
    ts: Option<&'a str>,
}

#[derive(Deserialize)]
struct LiqData<'a> {
    #[serde(borrow, rename = "instId")]
    inst_id: &'a str,
    #[serde(borrow)]
    details: &'a RawValue,
}

#[derive(Deserialize)]
struct LiqDetail<'a> {
    #[serde(borrow)]
    side: &'a str,
    #[serde(borrow)]
    sz: &'a str,
    #[serde(borrow, rename = "bkPx")]
    bk_px: &'a str,
    #[serde(borrow)]
    ts: Option<&'a str>,
}

fn opt(field: &'static str, s: &str) -> Result<i64, ParseError> {
    if s.is_empty() {
        Ok(ABSENT)
    } else {
        fixed_field(field, s)
    }
}

/// `mark-price` and `funding-rate` data → [`Mark`] events.
pub(super) fn marks(data: &str, err: &ErrSlot, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    each::<MarkData<'_>, _>(data, err, |m| {
        let funding_rate = if m.funding_rate.is_empty() {
            ABSENT
        } else {
            parse_rate(m.funding_rate).map_err(|cause| ParseError::Number {
                field: "fundingRate",
                cause,
            })?
        };
        let mark = Mark {
            mark_price: opt("markPx", m.mark_px)?,
            index_price: ABSENT,
            settle_price: ABSENT,
            funding_rate,
            next_funding_ns: if m.funding_time.is_empty() {
                None
            } else {
                Some(ms_str_to_ns(m.funding_time)?)
            },
            exchange_ts_ns: m.ts.map(ms_str_to_ns).transpose()?,
        };
        sink(Some(m.inst_id), &Event::Mark(mark));
        Ok(())
    })
}

/// `open-interest` data → [`OpenInterest`] events.
pub(super) fn open_interest(
    data: &str,
    err: &ErrSlot,
    sink: &mut Sink<'_>,
) -> Result<(), ParseError> {
    each::<OiData<'_>, _>(data, err, |o| {
        let oi = OpenInterest {
            open_interest: fixed_field("oi", o.oi)?,
            value: opt("oiUsd", o.oi_usd)?,
            exchange_ts_ns: o.ts.map(ms_str_to_ns).transpose()?,
        };
        sink(Some(o.inst_id), &Event::OpenInterest(oi));
        Ok(())
    })
}

/// `liquidation-orders` data → [`Liquidation`] events of the instruments `wanted` accepts.
pub(super) fn liquidations(
    data: &str,
    err: &ErrSlot,
    wanted: &dyn Fn(&str) -> bool,
    sink: &mut Sink<'_>,
) -> Result<(), ParseError> {
    each::<LiqData<'_>, _>(data, err, |l| {
        let inst = l.inst_id;
        let keep = wanted(inst);
        each::<LiqDetail<'_>, _>(l.details.get(), err, |d| {
            let side = match d.side {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                _ => return Err(ParseError::Invalid("liquidation side is not buy/sell")),
            };
            let sz = fixed_field("sz", d.sz)?;
            let liq = Liquidation {
                side,
                price: fixed_field("bkPx", d.bk_px)?,
                avg_price: ABSENT,
                size: sz,
                filled_size: ABSENT,
                status: LiquidationStatus::Unknown,
                exchange_ts_ns: d.ts.map(ms_str_to_ns).transpose()?,
            };
            if keep {
                sink(Some(inst), &Event::Liquidation(liq));
            }
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inst_types() {
        for (id, t) in [
            ("BTC-USDT-SWAP", Some("SWAP")),
            ("BTC-USD-220527", Some("FUTURES")),
            ("BTC-USD-240628-60000-C", Some("OPTION")),
            ("BTC-USDT", None),
        ] {
            assert_eq!(inst_type(id), t, "{id}");
        }
    }
}
