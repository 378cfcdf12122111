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
pub(super) fn binance_key(raw: &str) -> Option<Box<str>> {
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
}
