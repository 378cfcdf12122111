//! Kraken v1 emulation (`ws://ADDR/kraken_v1`): `systemStatus` on connect;
//! `{"event":"subscribe","pair":[…],"subscription":{…}}` → one `subscriptionStatus` per pair
//! (likewise `unsubscribe`; `ping` → `pong`); messages of subscribed pairs and channels (the
//! array's trailing channel name and pair); heartbeats as recorded.

use std::collections::HashSet;

use serde::Deserialize;

use super::source::Peek;

/// Sent on connect, before any request.
pub(super) const SYSTEM_STATUS: &str =
    r#"{"connectionID":1,"event":"systemStatus","status":"online","version":"1.9.0"}"#;

#[derive(Deserialize)]
struct KrakenV1Request {
    event: String,
    #[serde(default)]
    pair: Vec<String>,
    #[serde(default)]
    subscription: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    reqid: Option<serde_json::Value>,
}

/// Applies a Kraken v1 subscribe/unsubscribe/ping; returns one status reply per pair.
pub(super) fn kraken_v1_request(text: &str, subs: &mut HashSet<String>) -> Vec<String> {
    let Ok(req) = serde_json::from_str::<KrakenV1Request>(text) else {
        return vec![
            r#"{"event":"error","errorMessage":"Malformed request","status":"error"}"#.into(),
        ];
    };
    if req.event == "ping" {
        return vec![serde_json::json!({"event": "pong", "reqid": req.reqid}).to_string()];
    }
    let subscribe = match req.event.as_str() {
        "subscribe" => true,
        "unsubscribe" => false,
        _ => {
            return vec![
                r#"{"event":"error","errorMessage":"Unsupported event","status":"error"}"#.into(),
            ]
        }
    };
    let sub = req.subscription.unwrap_or_default();
    let name = sub
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let channel_name = match (name.as_str(), sub.get("depth").and_then(|v| v.as_u64())) {
        ("book", Some(d)) => format!("book-{d}"),
        ("book", None) => "book-10".to_owned(),
        (n, _) => n.to_owned(),
    };
    req.pair
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            let key = format!("{pair}|{name}");
            if subscribe {
                subs.insert(key);
                subs.insert("*|heartbeat".into());
            } else {
                subs.remove(&key);
            }
            serde_json::json!({
                "channelID": 1000 + i,
                "channelName": channel_name,
                "event": "subscriptionStatus",
                "pair": pair,
                "status": if subscribe { "subscribed" } else { "unsubscribed" },
                "subscription": sub,
            })
            .to_string()
        })
        .collect()
}

/// Kraken v1 routing key: `"<pair>|<channel>"` of a data array (`book-1000` → `book`),
/// `"*|heartbeat"` for heartbeats; `None` (never replayed) for other events.
pub(super) fn kraken_v1_key(raw: &str) -> Option<Box<str>> {
    if raw.starts_with('[') {
        // [channelID, payload…, channelName, pair]
        let v: Vec<&serde_json::value::RawValue> = serde_json::from_str(raw).ok()?;
        let n = v.len();
        if n < 4 {
            return None;
        }
        let name: &str = serde_json::from_str(v[n - 2].get()).ok()?;
        let pair: &str = serde_json::from_str(v[n - 1].get()).ok()?;
        let base = name.split('-').next().unwrap_or(name);
        return Some(format!("{pair}|{base}").into());
    }
    let p: Peek<'_> = serde_json::from_str(raw).ok()?;
    match p.event {
        Some("heartbeat") => Some("*|heartbeat".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::instrument::Venue;
    use crate::sim::source::record_key;

    #[test]
    fn kraken_v1_requests_map_to_record_keys() {
        let mut s = HashSet::new();
        let r = kraken_v1_request(
            r#"{"event":"subscribe","pair":["XBT/USD","ETH/EUR"],"subscription":{"name":"book","depth":1000}}"#,
            &mut s,
        );
        assert_eq!(r.len(), 2);
        assert!(r[0].contains(r#""channelName":"book-1000""#));
        let k = record_key(
            Venue::KrakenV1,
            r#"[1,{"a":[]},{"b":[],"c":"1"},"book-1000","XBT/USD"]"#,
        )
        .unwrap();
        assert!(s.contains(&*k));
        assert!(s.contains("*|heartbeat"));
        assert!(record_key(Venue::KrakenV1, r#"{"event":"subscriptionStatus"}"#).is_none());
    }
}
