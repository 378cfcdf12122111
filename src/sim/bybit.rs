//! Bybit v5 emulation (`ws://ADDR/bybit`): `{"op":"subscribe","args":[topic, …]}` →
//! `{"success":true,"ret_msg":"","conn_id":"replay","op":"subscribe"}` (likewise `unsubscribe`);
//! `{"op":"ping"}` → the pong reply; messages of subscribed topics (the message's `topic`).

use std::collections::HashSet;

use serde::Deserialize;

#[derive(Deserialize)]
struct BybitRequest {
    op: String,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Deserialize)]
struct BybitPeek<'a> {
    #[serde(borrow)]
    topic: Option<&'a str>,
}

/// Applies a Bybit request; returns the reply.
pub(super) fn bybit_request(text: &str, subs: &mut HashSet<String>) -> Vec<String> {
    let Ok(req) = serde_json::from_str::<BybitRequest>(text) else {
        return vec![
            r#"{"success":false,"ret_msg":"error:request not json","conn_id":"replay","op":""}"#
                .into(),
        ];
    };
    match req.op.as_str() {
        "ping" => {
            return vec![
                r#"{"success":true,"ret_msg":"pong","conn_id":"replay","op":"ping"}"#.into(),
            ]
        }
        "subscribe" => subs.extend(req.args),
        "unsubscribe" => {
            for a in &req.args {
                subs.remove(a);
            }
        }
        _ => {
            return vec![
                serde_json::json!({"success": false, "ret_msg": "error:unknown op",
                "conn_id": "replay", "op": req.op})
                .to_string(),
            ]
        }
    }
    vec![
        serde_json::json!({"success": true, "ret_msg": "", "conn_id": "replay", "op": req.op})
            .to_string(),
    ]
}

/// Bybit routing key: the message's `topic`; `None` for replies.
pub(super) fn bybit_key(raw: &str) -> Option<Box<str>> {
    let p: BybitPeek<'_> = serde_json::from_str(raw).ok()?;
    Some(p.topic?.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::instrument::Venue;
    use crate::sim::source::record_key;

    #[test]
    fn bybit_requests_map_to_record_keys() {
        let mut s = HashSet::new();
        let r = bybit_request(
            r#"{"op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"]}"#,
            &mut s,
        );
        assert!(r[0].contains(r#""success":true"#));
        let k = record_key(
            Venue::Bybit,
            r#"{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{}}"#,
        )
        .unwrap();
        assert!(s.contains(&*k));
        assert!(bybit_request(r#"{"op":"ping"}"#, &mut s)[0].contains("pong"));
        assert!(record_key(Venue::Bybit, r#"{"success":true,"op":"subscribe"}"#).is_none());
    }
}
