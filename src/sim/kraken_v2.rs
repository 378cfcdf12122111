//! Kraken v2 emulation (`ws://ADDR/kraken`): a `status` message on connect;
//! `{"method":"subscribe","params":{"channel":C,"symbol":[…],…}}` → one
//! `{"method":"subscribe","result":{"channel":C,"symbol":S,…},"success":true,…}` per symbol
//! (likewise `unsubscribe`; `ping` → `pong`); messages of subscribed symbols and channels
//! (`data[0].symbol`); heartbeats as recorded. A subscription to `instrument` is answered with one
//! `instrument` snapshot describing every pair of the recording, its `price_precision` /
//! `qty_precision` being the most decimals the recording writes in that pair's prices
//! (book levels, trades, ticker bid/ask) and quantities: exact when, as in the converted v1
//! capture the tests use, numbers are written with the pair's precision; a lower bound otherwise
//! (real v2 numbers drop trailing zeros).

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

/// Sent on connect, before any request.
pub(super) const STATUS: &str = r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":1,"system":"online","version":"2.0.0"}]}"#;

#[derive(Deserialize)]
struct KrakenV2Peek<'a> {
    #[serde(borrow)]
    channel: Option<&'a str>,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct KrakenV2SymbolPeek<'a> {
    #[serde(borrow)]
    symbol: Option<&'a str>,
}

/// Kraken v2 routing key: `"<symbol>|<channel>"` of `data[0].symbol` for market data,
/// `"*|heartbeat"` for heartbeats; `None` (never replayed) for method responses, `status` and
/// `instrument` messages (the exchange sends its own).
pub(super) fn kraken_v2_key(raw: &str) -> Option<Box<str>> {
    let p: KrakenV2Peek<'_> = serde_json::from_str(raw).ok()?;
    match p.channel? {
        "heartbeat" => Some("*|heartbeat".into()),
        "status" | "instrument" => None,
        channel => {
            let data: Vec<KrakenV2SymbolPeek<'_>> = serde_json::from_str(p.data?.get()).ok()?;
            let symbol = data.first()?.symbol?;
            Some(format!("{symbol}|{channel}").into())
        }
    }
}

#[derive(Deserialize)]
struct KrakenV2LevelPeek<'a> {
    #[serde(borrow)]
    price: &'a serde_json::value::RawValue,
    #[serde(borrow)]
    qty: &'a serde_json::value::RawValue,
}

/// Decimal places written in a JSON number (0 for exponent forms and integers).
fn written_decimals(num: &str) -> u32 {
    if num.contains(['e', 'E']) {
        return 0;
    }
    num.split_once('.')
        .map_or(0, |(_, f)| u32::try_from(f.len()).unwrap_or(u32::MAX))
}

/// Raises `pairs[symbol]` to the decimals `raw` (a Kraken v2 book/trade/ticker message) writes in
/// that symbol's prices and quantities.
pub(super) fn kraken_v2_precisions(raw: &str, pairs: &mut BTreeMap<String, (u32, u32)>) {
    type Entry<'a> = BTreeMap<&'a str, &'a serde_json::value::RawValue>;
    let Ok(p) = serde_json::from_str::<KrakenV2Peek<'_>>(raw) else {
        return;
    };
    if !matches!(p.channel, Some("book" | "trade" | "ticker")) {
        return;
    }
    let Some(Ok(entries)) = p
        .data
        .map(|d| serde_json::from_str::<Vec<Entry<'_>>>(d.get()))
    else {
        return;
    };
    for e in entries {
        let Some(Ok(symbol)) = e
            .get("symbol")
            .map(|s| serde_json::from_str::<String>(s.get()))
        else {
            continue;
        };
        let (mut pp, mut qp) = (0, 0);
        for (k, v) in &e {
            match *k {
                "price" | "bid" | "ask" => pp = pp.max(written_decimals(v.get())),
                "qty" | "bid_qty" | "ask_qty" => qp = qp.max(written_decimals(v.get())),
                "bids" | "asks" => {
                    let levels: Vec<KrakenV2LevelPeek<'_>> =
                        serde_json::from_str(v.get()).unwrap_or_default();
                    for l in levels {
                        pp = pp.max(written_decimals(l.price.get()));
                        qp = qp.max(written_decimals(l.qty.get()));
                    }
                }
                _ => {}
            }
        }
        let seen = pairs.entry(symbol).or_insert((0, 0));
        *seen = (seen.0.max(pp), seen.1.max(qp));
    }
}

#[derive(Deserialize)]
struct KrakenV2Request {
    method: String,
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    req_id: Option<serde_json::Value>,
}

/// The `instrument` snapshot the exchange sends: every pair of the recording with its precisions.
fn kraken_v2_instrument(pairs: &BTreeMap<String, (u32, u32)>) -> String {
    let step = |p: u32| 10f64.powi(-i32::try_from(p).unwrap_or(i32::MAX));
    let pairs: Vec<serde_json::Value> = pairs
        .iter()
        .map(|(symbol, &(pp, qp))| {
            let (base, quote) = symbol.split_once('/').unwrap_or((symbol, ""));
            serde_json::json!({
                "symbol": symbol,
                "base": base,
                "quote": quote,
                "status": "online",
                "price_precision": pp,
                "qty_precision": qp,
                "price_increment": step(pp),
                "qty_increment": step(qp),
                "tick_size": step(pp),
            })
        })
        .collect();
    serde_json::json!({
        "channel": "instrument",
        "type": "snapshot",
        "data": {"assets": [], "pairs": pairs},
    })
    .to_string()
}

/// Applies a Kraken v2 subscribe/unsubscribe/ping; returns the replies: one ack per symbol (one for
/// `instrument`, followed on subscribe by the instrument snapshot of `pairs`), or an error.
pub(super) fn kraken_v2_request(
    text: &str,
    subs: &mut HashSet<String>,
    pairs: &BTreeMap<String, (u32, u32)>,
) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let time = crate::base::timefmt::format_rfc3339_ns(now);
    let finish = |mut v: serde_json::Value, req_id: &Option<serde_json::Value>| {
        if let Some(o) = v.as_object_mut() {
            if let Some(id) = req_id {
                o.insert("req_id".into(), id.clone());
            }
            o.insert("time_in".into(), time.clone().into());
            o.insert("time_out".into(), time.clone().into());
        }
        v.to_string()
    };
    let Ok(req) = serde_json::from_str::<KrakenV2Request>(text) else {
        return vec![finish(
            serde_json::json!({"error": "Malformed request", "success": false}),
            &None,
        )];
    };
    let error = |msg: &str| {
        vec![finish(
            serde_json::json!({"error": msg, "method": req.method, "success": false}),
            &req.req_id,
        )]
    };
    let subscribe = match req.method.as_str() {
        "ping" => return vec![finish(serde_json::json!({"method": "pong"}), &req.req_id)],
        "subscribe" => true,
        "unsubscribe" => false,
        _ => return error("Method not found"),
    };
    let Some(channel) = req.params.get("channel").and_then(|c| c.as_str()) else {
        return error("Missing channel");
    };
    let ack = |result: serde_json::Value| {
        finish(
            serde_json::json!({"method": req.method, "result": result, "success": true}),
            &req.req_id,
        )
    };
    if channel == "instrument" {
        let mut out = vec![ack(
            serde_json::json!({"channel": "instrument", "snapshot": true}),
        )];
        if subscribe {
            subs.insert("*|instrument".into());
            out.push(kraken_v2_instrument(pairs));
        } else {
            subs.remove("*|instrument");
        }
        return out;
    }
    let symbols: Vec<&str> = req
        .params
        .get("symbol")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    if symbols.is_empty() {
        return error("Missing symbol");
    }
    let snapshot = req
        .params
        .get("snapshot")
        .and_then(|s| s.as_bool())
        .unwrap_or(true);
    let depth = req
        .params
        .get("depth")
        .and_then(|d| d.as_u64())
        .unwrap_or(10);
    symbols
        .into_iter()
        .map(|symbol| {
            let key = format!("{symbol}|{channel}");
            let mut result = serde_json::json!({"channel": channel, "symbol": symbol});
            if subscribe {
                subs.insert(key);
                subs.insert("*|heartbeat".into());
                if let Some(o) = result.as_object_mut() {
                    if channel == "book" {
                        o.insert("depth".into(), depth.into());
                    }
                    o.insert("snapshot".into(), snapshot.into());
                }
            } else {
                subs.remove(&key);
            }
            ack(result)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::venue::VenueParser;
    use crate::market::instrument::Venue;
    use crate::sim::source::record_key;

    #[test]
    fn kraken_v2_requests_map_to_record_keys_and_instrument_precisions() {
        use crate::feed::venue::kraken_v2::KrakenV2Parser;
        // Precisions as the docs samples write them.
        let mut pairs = BTreeMap::new();
        let samples =
            std::fs::read_to_string(crate::base::testutil::fixture("samples/kraken_v2.jsonl"))
                .unwrap();
        let mut keys = Vec::new();
        for line in samples.lines() {
            let key = record_key(Venue::Kraken, line);
            if key.is_some() {
                kraken_v2_precisions(line, &mut pairs);
            }
            keys.push(key);
        }
        assert_eq!(
            keys.iter().map(|k| k.as_deref()).collect::<Vec<_>>(),
            [
                None, // the recorded request
                None, // the recorded ack
                Some("MATIC/USD|book"),
                Some("MATIC/USD|book"),
                Some("MATIC/USD|trade"),
                Some("MATIC/USD|trade"),
                Some("ALGO/USD|ticker"),
                Some("ALGO/USD|ticker"),
            ]
        );
        assert_eq!(
            pairs,
            BTreeMap::from([
                ("ALGO/USD".to_owned(), (5, 8)),
                ("MATIC/USD".to_owned(), (4, 8))
            ])
        );
        assert_eq!(
            record_key(Venue::Kraken, r#"{"channel":"heartbeat"}"#).as_deref(),
            Some("*|heartbeat")
        );

        let mut s = HashSet::new();
        let r = kraken_v2_request(
            r#"{"method":"subscribe","params":{"channel":"book","depth":25,"symbol":["MATIC/USD","ALGO/USD"]},"req_id":7}"#,
            &mut s,
            &pairs,
        );
        assert_eq!(r.len(), 2);
        let ack: serde_json::Value = serde_json::from_str(&r[1]).unwrap();
        assert_eq!(
            ack["result"],
            serde_json::json!({"channel":"book","symbol":"ALGO/USD","depth":25,"snapshot":true})
        );
        assert_eq!(ack["success"], true);
        assert_eq!(ack["req_id"], 7);
        assert!(s.contains("MATIC/USD|book") && s.contains("*|heartbeat"));
        let r = kraken_v2_request(
            r#"{"method":"unsubscribe","params":{"channel":"book","symbol":["MATIC/USD"]}}"#,
            &mut s,
            &pairs,
        );
        assert_eq!(r.len(), 1);
        assert!(!s.contains("MATIC/USD|book") && s.contains("ALGO/USD|book"));
        assert!(kraken_v2_request(
            r#"{"method":"subscribe","params":{"channel":"trade"}}"#,
            &mut s,
            &pairs
        )[0]
        .contains(r#""success":false"#));
        assert!(kraken_v2_request("garbage", &mut s, &pairs)[0].contains("error"));
        assert!(
            kraken_v2_request(r#"{"method":"ping","req_id":3}"#, &mut s, &pairs)[0]
                .contains(r#""method":"pong""#)
        );

        // The instrument snapshot gives a parser exactly those precisions.
        let r = kraken_v2_request(
            r#"{"method":"subscribe","params":{"channel":"instrument"}}"#,
            &mut s,
            &pairs,
        );
        assert_eq!(r.len(), 2);
        let mut p = KrakenV2Parser::new();
        for m in &r {
            assert!(matches!(
                p.parse(m, 0, &mut |_, _| {}),
                Ok(crate::feed::venue::Parsed::Control)
            ));
        }
        assert_eq!(p.precision("MATIC/USD"), Some((4, 8)));
        assert_eq!(p.precision("ALGO/USD"), Some((5, 8)));
    }
}
