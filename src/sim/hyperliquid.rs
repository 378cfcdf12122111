//! Hyperliquid emulation (`ws://ADDR/hyperliquid`): `{"method":"subscribe","subscription":
//! {"type":T,"coin":C}}` → `{"channel":"subscriptionResponse","data":{…the request…}}` (likewise
//! `unsubscribe`); `{"method":"ping"}` → `{"channel":"pong"}`; messages of subscribed coins and
//! channels (`data.coin`, or `data[0].coin` for `trades`).

use std::collections::HashSet;

use serde::Deserialize;

#[derive(Deserialize)]
struct HlRequest {
    method: String,
    #[serde(default)]
    subscription: Option<HlSub>,
}

#[derive(Deserialize, serde::Serialize)]
struct HlSub {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    coin: String,
}

#[derive(Deserialize)]
struct HlPeek<'a> {
    #[serde(borrow)]
    channel: &'a str,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct CoinPeek<'a> {
    #[serde(borrow)]
    coin: &'a str,
}

/// Applies a Hyperliquid request; returns the replies.
pub(super) fn hyperliquid_request(text: &str, subs: &mut HashSet<String>) -> Vec<String> {
    let Ok(req) = serde_json::from_str::<HlRequest>(text) else {
        return vec![r#"{"channel":"error","data":"Invalid request"}"#.into()];
    };
    match (req.method.as_str(), req.subscription) {
        ("ping", _) => vec![r#"{"channel":"pong"}"#.into()],
        (m @ ("subscribe" | "unsubscribe"), Some(sub)) => {
            let key = format!("{}|{}", sub.coin, sub.kind);
            if m == "subscribe" {
                subs.insert(key);
            } else {
                subs.remove(&key);
            }
            vec![serde_json::json!({"channel": "subscriptionResponse",
                "data": {"method": m, "subscription": sub}})
            .to_string()]
        }
        _ => vec![r#"{"channel":"error","data":"Invalid request"}"#.into()],
    }
}

/// Hyperliquid routing key: `"<coin>|<channel>"`; `None` for replies and errors.
pub(super) fn hyperliquid_key(raw: &str) -> Option<Box<str>> {
    let p: HlPeek<'_> = serde_json::from_str(raw).ok()?;
    let data = p.data?.get();
    let coin = match p.channel {
        "l2Book" | "bbo" => serde_json::from_str::<CoinPeek<'_>>(data).ok()?.coin,
        "trades" => {
            serde_json::from_str::<Vec<CoinPeek<'_>>>(data)
                .ok()?
                .first()?
                .coin
        }
        _ => return None,
    };
    Some(format!("{coin}|{}", p.channel).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::instrument::Venue;
    use crate::sim::source::record_key;

    #[test]
    fn hyperliquid_requests_map_to_record_keys() {
        let mut s = HashSet::new();
        for t in ["l2Book", "trades"] {
            let r = hyperliquid_request(
                &format!(
                    r#"{{"method":"subscribe","subscription":{{"type":"{t}","coin":"BTC"}}}}"#
                ),
                &mut s,
            );
            assert!(r[0].contains("subscriptionResponse"));
        }
        for raw in [
            r#"{"channel":"l2Book","data":{"coin":"BTC","time":1,"levels":[[],[]]}}"#,
            r#"{"channel":"trades","data":[{"coin":"BTC","side":"B","px":"1","sz":"1","time":1,"tid":1}]}"#,
        ] {
            let k = record_key(Venue::Hyperliquid, raw).unwrap();
            assert!(s.contains(&*k), "{raw}");
        }
        assert_eq!(
            hyperliquid_request(r#"{"method":"ping"}"#, &mut s),
            [r#"{"channel":"pong"}"#]
        );
        assert!(record_key(
            Venue::Hyperliquid,
            r#"{"channel":"subscriptionResponse","data":{}}"#
        )
        .is_none());
    }
}
