//! Coinbase emulation: `{"type":"subscribe","product_ids":[…],"channels":[…]}` → a
//! `subscriptions` reply listing everything subscribed (likewise `unsubscribe`); messages of
//! subscribed products and channels (`match`/`last_match` → `matches`, `snapshot`/`l2update` →
//! `level2` or `level2_batch`).

use std::collections::HashSet;

use serde::Deserialize;

use super::source::Peek;

#[derive(Deserialize)]
struct CoinbaseRequest {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    product_ids: Vec<String>,
    #[serde(default)]
    channels: Vec<serde_json::Value>,
}

/// Applies a Coinbase subscribe/unsubscribe; returns the `subscriptions` reply.
pub(super) fn coinbase_request(text: &str, subs: &mut HashSet<String>) -> Vec<String> {
    let Ok(req) = serde_json::from_str::<CoinbaseRequest>(text) else {
        return vec![
            r#"{"type":"error","message":"Failed to subscribe","reason":"malformed request"}"#
                .into(),
        ];
    };
    let subscribe = match req.kind.as_str() {
        "subscribe" => true,
        "unsubscribe" => false,
        _ => {
            return vec![
                r#"{"type":"error","message":"Failed to subscribe","reason":"unknown type"}"#
                    .into(),
            ]
        }
    };
    for ch in &req.channels {
        let (name, products) = match ch {
            serde_json::Value::String(n) => (n.as_str(), req.product_ids.clone()),
            serde_json::Value::Object(o) => (
                o.get("name").and_then(|v| v.as_str()).unwrap_or(""),
                o.get("product_ids")
                    .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
                    .unwrap_or_else(|| req.product_ids.clone()),
            ),
            _ => continue,
        };
        let name = if name == "level2_batch" {
            "level2"
        } else {
            name
        };
        for p in products {
            let key = format!("{p}|{name}");
            if subscribe {
                subs.insert(key);
            } else {
                subs.remove(&key);
            }
        }
    }
    let mut by_channel: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for k in subs.iter() {
        if let Some((p, c)) = k.split_once('|') {
            by_channel.entry(c).or_default().push(p);
        }
    }
    let channels: Vec<serde_json::Value> = by_channel
        .into_iter()
        .map(|(c, ps)| serde_json::json!({"name": c, "product_ids": ps}))
        .collect();
    vec![serde_json::json!({"type": "subscriptions", "channels": channels}).to_string()]
}

/// Coinbase routing key: `"<product_id>|<channel>"`; `None` (never replayed) for replies,
/// errors and message types no channel carries.
pub(super) fn coinbase_key(raw: &str) -> Option<Box<str>> {
    let p: Peek<'_> = serde_json::from_str(raw).ok()?;
    let channel = match p.kind? {
        "ticker" => "ticker",
        "match" | "last_match" => "matches",
        "snapshot" | "l2update" => "level2",
        "heartbeat" => "heartbeat",
        _ => return None,
    };
    Some(format!("{}|{channel}", p.product_id?).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::instrument::Venue;
    use crate::sim::source::record_key;

    #[test]
    fn coinbase_requests_map_to_record_keys() {
        let mut s = HashSet::new();
        let r = coinbase_request(
            r#"{"type":"subscribe","product_ids":["SKL-USD"],"channels":["ticker","matches","level2_batch"]}"#,
            &mut s,
        );
        assert!(r[0].contains("subscriptions"));
        for raw in [
            r#"{"type":"ticker","product_id":"SKL-USD","price":"1"}"#,
            r#"{"type":"last_match","product_id":"SKL-USD"}"#,
            r#"{"type":"l2update","product_id":"SKL-USD","changes":[]}"#,
        ] {
            let k = record_key(Venue::Coinbase, raw).unwrap();
            assert!(s.contains(&*k), "{raw} → {k}");
        }
        assert!(record_key(Venue::Coinbase, r#"{"type":"subscriptions","channels":[]}"#).is_none());
    }
}
