//! Gemini v2 emulation (`ws://ADDR/gemini`): `{"type":"subscribe","subscriptions":[{"name":"l2",
//! "symbols":[…]}]}` subscribes (likewise `unsubscribe`); Gemini sends no acknowledgement, so the
//! exchange answers with a `heartbeat`, as Gemini sends every few seconds anyway. Messages of
//! subscribed symbols play (`l2_updates` and `trade` belong to `l2`), heartbeats as recorded.

use std::collections::HashSet;

use serde::Deserialize;

#[derive(Deserialize)]
struct GeminiRequest {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subscriptions: Vec<GeminiSub>,
}

#[derive(Deserialize)]
struct GeminiSub {
    name: String,
    #[serde(default)]
    symbols: Vec<String>,
}

#[derive(Deserialize)]
struct GeminiPeek<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a str>,
    #[serde(borrow)]
    symbol: Option<&'a str>,
}

/// Applies a Gemini request; returns the replies.
pub(super) fn gemini_request(text: &str, subs: &mut HashSet<String>) -> Vec<String> {
    let Ok(req) = serde_json::from_str::<GeminiRequest>(text) else {
        return vec![
            r#"{"result":"error","reason":"InvalidJson","message":"Invalid request"}"#.into(),
        ];
    };
    let subscribe = match req.kind.as_str() {
        "subscribe" => true,
        "unsubscribe" => false,
        _ => {
            return vec![
                r#"{"result":"error","reason":"InvalidRequest","message":"Unknown type"}"#.into(),
            ]
        }
    };
    for s in &req.subscriptions {
        for sym in &s.symbols {
            let key = format!("{sym}|{}", s.name);
            if subscribe {
                subs.insert(key);
                subs.insert("*|heartbeat".into());
            } else {
                subs.remove(&key);
            }
        }
    }
    vec![r#"{"type":"heartbeat","timestamp":0}"#.into()]
}

/// Gemini routing key: `"<symbol>|l2"` for `l2_updates` and `trade`, `"*|heartbeat"` for
/// heartbeats; `None` for anything else.
pub(super) fn gemini_key(raw: &str) -> Option<Box<str>> {
    let p: GeminiPeek<'_> = serde_json::from_str(raw).ok()?;
    match p.kind? {
        "heartbeat" => Some("*|heartbeat".into()),
        "l2_updates" | "trade" => Some(format!("{}|l2", p.symbol?).into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::instrument::Venue;
    use crate::sim::source::record_key;

    #[test]
    fn gemini_requests_map_to_record_keys() {
        let mut s = HashSet::new();
        let r = gemini_request(
            r#"{"type":"subscribe","subscriptions":[{"name":"l2","symbols":["FILUSD"]}]}"#,
            &mut s,
        );
        assert_eq!(r.len(), 1);
        for raw in [
            r#"{"type":"l2_updates","symbol":"FILUSD","changes":[]}"#,
            r#"{"type":"trade","symbol":"FILUSD","event_id":1,"timestamp":1,"price":"1","quantity":"1","side":"buy"}"#,
            r#"{"type":"heartbeat","timestamp":1624493666869}"#,
        ] {
            let k = record_key(Venue::Gemini, raw).unwrap();
            assert!(s.contains(&*k), "{raw}");
        }
        assert!(!s.contains("ETHEUR|l2"));
    }
}
