//! Binance emulation: `{"method":"SUBSCRIBE","params":[streams…],"id":N}` →
//! `{"result":null,"id":N}` (likewise `UNSUBSCRIBE`); messages of subscribed streams, keyed by
//! the combined stream's `stream` name. The REST depth snapshot is in `binance_rest`.

use std::collections::HashSet;

use serde::Deserialize;

use super::source::Peek;

#[derive(Deserialize)]
struct BinanceRequest {
    method: String,
    #[serde(default)]
    params: Vec<String>,
    id: serde_json::Value,
}

/// Applies a Binance SUBSCRIBE/UNSUBSCRIBE request; returns the reply to send.
pub(super) fn binance_request(text: &str, streams: &mut HashSet<String>) -> Option<String> {
    let req: BinanceRequest = serde_json::from_str(text).ok()?;
    match req.method.as_str() {
        "SUBSCRIBE" => streams.extend(req.params),
        "UNSUBSCRIBE" => {
            for p in &req.params {
                streams.remove(p);
            }
        }
        _ => {
            return Some(
                serde_json::json!({"error":{"code":2,"msg":"Invalid request"},"id":req.id})
                    .to_string(),
            )
        }
    }
    Some(serde_json::json!({"result": null, "id": req.id}).to_string())
}

/// Binance routing key: the stream name; `None` (never replayed) for messages without one.
/// Combined-stream messages start with their stream name, which is read off the prefix (loading
/// a capture parses nothing else); any other shape goes through serde.
pub(super) fn binance_key(raw: &str) -> Option<Box<str>> {
    if let Some(rest) = raw.strip_prefix("{\"stream\":\"") {
        if let Some((name, _)) = rest.split_once('"') {
            if !name.contains('\\') && rest.ends_with('}') {
                return Some(name.into());
            }
        }
    }
    let p: Peek<'_> = serde_json::from_str(raw).ok()?;
    p.stream.map(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binance_requests() {
        let mut s = HashSet::new();
        assert_eq!(
            binance_request(
                r#"{"method":"SUBSCRIBE","params":["a@trade","a@bookTicker"],"id":3}"#,
                &mut s
            )
            .unwrap(),
            r#"{"id":3,"result":null}"#
        );
        assert_eq!(s.len(), 2);
        binance_request(
            r#"{"method":"UNSUBSCRIBE","params":["a@trade"],"id":4}"#,
            &mut s,
        );
        assert_eq!(s.len(), 1);
        assert!(binance_request(r#"{"method":"X","id":5}"#, &mut s)
            .unwrap()
            .contains("error"));
        assert!(binance_request("garbage", &mut s).is_none());
    }

    #[test]
    fn keys_are_stream_names() {
        let raw = r#"{"stream":"ethusdt@depth@0ms","data":{"e":"depthUpdate"}}"#;
        assert_eq!(binance_key(raw).as_deref(), Some("ethusdt@depth@0ms"));
        let late = r#"{"data":{"e":"trade"},"stream":"ethusdt@trade"}"#;
        assert_eq!(binance_key(late).as_deref(), Some("ethusdt@trade"));
        assert_eq!(binance_key(r#"{"result":null,"id":1}"#), None);
        assert_eq!(
            binance_key(r#"{"lastUpdateId":1,"bids":[],"asks":[]}"#),
            None
        );
    }
}
