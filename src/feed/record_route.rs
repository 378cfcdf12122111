//! Which symbol a raw venue message belongs to, for the raw recorder's `hftbacktest` layout
//! ([`crate::persist::layout`]): one [`RouteFn`] per venue, run on the recorder thread (never on
//! the collector's), reading only the few bytes that name the symbol — no JSON parse, no
//! allocation. What is control (acks, errors, heartbeats, pongs) follows each venue's protocol as
//! the parsers in `venue/` read it; a data message naming several symbols, or none, is
//! [`Route::Mixed`].

use crate::market::instrument::Venue;
use crate::persist::layout::{Route, RouteFn};

/// The router of `venue`.
pub fn route_for(venue: Venue) -> RouteFn {
    match venue {
        Venue::Binance | Venue::BinanceUsdm | Venue::BinanceCoinm => binance,
        Venue::Coinbase => coinbase,
        Venue::Kraken => kraken_v2,
        Venue::KrakenV1 => kraken_v1,
        Venue::Okx => okx,
        Venue::Bybit => bybit,
        Venue::Gemini => gemini,
        Venue::Hyperliquid => hyperliquid,
    }
}

/// The string value right after `key` (which ends with the opening quote), up to its closing
/// quote.
fn value_after<'a>(raw: &'a str, key: &str) -> Option<&'a str> {
    let rest = &raw[raw.find(key)? + key.len()..];
    rest.find('"').map(|end| &rest[..end])
}

/// The symbol under every occurrence of `key`: one symbol if they all agree, [`Route::Mixed`]
/// if they differ or there is none.
fn keyed<'a>(raw: &'a str, key: &str) -> Route<'a> {
    let mut found: Option<&'a str> = None;
    let mut rest = raw;
    while let Some(i) = rest.find(key) {
        rest = &rest[i + key.len()..];
        let Some(end) = rest.find('"') else {
            break;
        };
        let v = &rest[..end];
        match found {
            None => found = Some(v),
            Some(f) if f != v => return Route::Mixed,
            Some(_) => {}
        }
        rest = &rest[end..];
    }
    found.map_or(Route::Mixed, Route::Symbol)
}

/// Binance (spot, USD-M, COIN-M) combined streams `{"stream":"ethusdt@depth@0ms","data":…}`:
/// the stream name's symbol, as hftbacktest's collector files it. A raw stream (`{"e":…}`) by
/// its `s`. Anything else (`{"result":null,"id":1}`, `{"code":…,"msg":…}`) is control.
fn binance(raw: &str) -> Route<'_> {
    if let Some(name) = raw.strip_prefix("{\"stream\":\"") {
        return match name.find(['@', '"']) {
            Some(end) if end > 0 => Route::Symbol(&name[..end]),
            _ => Route::Mixed,
        };
    }
    if raw.starts_with("{\"e\":\"") {
        return keyed(raw, "\"s\":\"");
    }
    Route::Control
}

/// Coinbase: `product_id`; `subscriptions` and `error` messages are control.
fn coinbase(raw: &str) -> Route<'_> {
    match value_after(raw, "\"type\":\"") {
        Some("subscriptions" | "error") => Route::Control,
        _ => keyed(raw, "\"product_id\":\""),
    }
}

/// Kraken v2: `symbol`; method responses (`subscribe`, `pong`), `heartbeat` and `status` are
/// control.
fn kraken_v2(raw: &str) -> Route<'_> {
    if raw.contains("\"method\":\"") {
        return Route::Control;
    }
    match value_after(raw, "\"channel\":\"") {
        Some("heartbeat" | "status") => Route::Control,
        _ => keyed(raw, "\"symbol\":\""),
    }
}

/// Kraken v1: data messages are arrays ending with the pair (`[…,"book-1000","XBT/EUR"]`);
/// event objects (`heartbeat`, `systemStatus`, `subscriptionStatus`) are control.
fn kraken_v1(raw: &str) -> Route<'_> {
    let raw = raw.trim_end();
    if !raw.starts_with('[') {
        return Route::Control;
    }
    let Some(body) = raw.strip_suffix("\"]") else {
        return Route::Mixed;
    };
    match body.rfind('"') {
        Some(start) if start + 1 < body.len() => Route::Symbol(&body[start + 1..]),
        _ => Route::Mixed,
    }
}

/// OKX v5: `instId`; `pong` and `{"event":…}` replies are control.
fn okx(raw: &str) -> Route<'_> {
    if raw == "pong" || raw.starts_with("{\"event\":") {
        return Route::Control;
    }
    keyed(raw, "\"instId\":\"")
}

/// Bybit v5: the symbol ending the topic (`orderbook.50.BTCUSDT`); messages without a topic
/// (`op` replies, pongs) are control.
fn bybit(raw: &str) -> Route<'_> {
    match value_after(raw, "\"topic\":\"") {
        Some(topic) => match topic.rsplit_once('.') {
            Some((_, sym)) if !sym.is_empty() => Route::Symbol(sym),
            _ => Route::Mixed,
        },
        None => Route::Control,
    }
}

/// Gemini v2: `symbol`; `heartbeat` is control.
fn gemini(raw: &str) -> Route<'_> {
    match value_after(raw, "\"type\":\"") {
        Some("heartbeat") => Route::Control,
        _ => keyed(raw, "\"symbol\":\""),
    }
}

/// Hyperliquid: `coin`; `subscriptionResponse`, `pong` and `error` are control.
fn hyperliquid(raw: &str) -> Route<'_> {
    match value_after(raw, "\"channel\":\"") {
        Some("subscriptionResponse" | "pong" | "error") => Route::Control,
        _ => keyed(raw, "\"coin\":\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Route::{Control, Mixed, Symbol};

    #[test]
    fn each_venue_names_the_symbol_of_data_and_skips_control() {
        let cases: &[(Venue, &str, Route<'_>)] = &[
            (
                Venue::BinanceUsdm,
                r#"{"stream":"ethusdt@depth@0ms","data":{"e":"depthUpdate","s":"ETHUSDT"}}"#,
                Symbol("ethusdt"),
            ),
            (
                Venue::Binance,
                r#"{"stream":"btcusdt@trade","data":{}}"#,
                Symbol("btcusdt"),
            ),
            (
                Venue::Binance,
                r#"{"e":"trade","s":"BTCUSDT","p":"1"}"#,
                Symbol("BTCUSDT"),
            ),
            (Venue::BinanceUsdm, r#"{"id":1,"result":null}"#, Control),
            (Venue::BinanceCoinm, r#"{"result":null,"id":2}"#, Control),
            (
                Venue::Binance,
                r#"{"code":2,"msg":"Invalid request"}"#,
                Control,
            ),
            (Venue::Binance, r#"{"stream":"@x","data":{}}"#, Mixed),
            (
                Venue::Coinbase,
                r#"{"type":"l2update","product_id":"BTC-USD","changes":[]}"#,
                Symbol("BTC-USD"),
            ),
            (
                Venue::Coinbase,
                r#"{"type":"subscriptions","channels":[{"name":"level2","product_ids":["BTC-USD"]}]}"#,
                Control,
            ),
            (
                Venue::Coinbase,
                r#"{"type":"error","message":"x"}"#,
                Control,
            ),
            (
                Venue::Kraken,
                r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[]}]}"#,
                Symbol("BTC/USD"),
            ),
            (
                Venue::Kraken,
                r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD"},{"symbol":"ETH/USD"}]}"#,
                Mixed,
            ),
            (
                Venue::Kraken,
                r#"{"method":"subscribe","success":true,"result":{"symbol":"BTC/USD"}}"#,
                Control,
            ),
            (Venue::Kraken, r#"{"channel":"heartbeat"}"#, Control),
            (
                Venue::Kraken,
                r#"{"channel":"status","data":[{"system":"online"}]}"#,
                Control,
            ),
            (
                Venue::KrakenV1,
                r#"[336,{"a":["1","2","3"]},"book-1000","XBT/EUR"]"#,
                Symbol("XBT/EUR"),
            ),
            (Venue::KrakenV1, r#"{"event":"heartbeat"}"#, Control),
            (Venue::KrakenV1, r#"[1,2]"#, Mixed),
            (
                Venue::Okx,
                r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT"}]}"#,
                Symbol("BTC-USDT"),
            ),
            (
                Venue::Okx,
                r#"{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"}}"#,
                Control,
            ),
            (Venue::Okx, "pong", Control),
            (
                Venue::Bybit,
                r#"{"topic":"orderbook.50.BTCUSDT","type":"delta","data":{"s":"BTCUSDT"}}"#,
                Symbol("BTCUSDT"),
            ),
            (
                Venue::Bybit,
                r#"{"success":true,"ret_msg":"","op":"subscribe"}"#,
                Control,
            ),
            (
                Venue::Gemini,
                r#"{"type":"l2_updates","symbol":"BTCUSD","changes":[]}"#,
                Symbol("BTCUSD"),
            ),
            (
                Venue::Gemini,
                r#"{"type":"heartbeat","timestamp":1}"#,
                Control,
            ),
            (
                Venue::Hyperliquid,
                r#"{"channel":"l2Book","data":{"coin":"BTC","levels":[]}}"#,
                Symbol("BTC"),
            ),
            (
                Venue::Hyperliquid,
                r#"{"channel":"trades","data":[{"coin":"ETH"},{"coin":"BTC"}]}"#,
                Mixed,
            ),
            (
                Venue::Hyperliquid,
                r#"{"channel":"subscriptionResponse","data":{}}"#,
                Control,
            ),
        ];
        for (venue, raw, want) in cases {
            assert_eq!(route_for(*venue)(raw), *want, "{venue:?} {raw}");
        }
    }
}
