//! OKX v5 emulation (`ws://ADDR/okx`): `{"op":"subscribe","args":[{"channel":C,"instId":S},…]}` →
//! one `{"event":"subscribe","arg":{…},"connId":…}` per argument (likewise `unsubscribe`); the
//! text `ping` → `pong`; messages of subscribed instruments and channels (`arg.instId|arg.channel`).
//! A resubscribe is acknowledged but brings no fresh snapshot: the exchange only plays its
//! recording.

use std::collections::HashSet;

use serde::Deserialize;

#[derive(Deserialize)]
struct OkxRequest {
    op: String,
    #[serde(default)]
    args: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct OkxArg<'a> {
    #[serde(borrow)]
    channel: &'a str,
    #[serde(borrow, rename = "instId")]
    inst_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct OkxPeek<'a> {
    #[serde(borrow)]
    event: Option<&'a str>,
    #[serde(borrow)]
    arg: Option<OkxArg<'a>>,
}

/// Applies an OKX request; returns the replies.
pub(super) fn okx_request(text: &str, subs: &mut HashSet<String>) -> Vec<String> {
    if text == "ping" {
        return vec!["pong".into()];
    }
    let Ok(req) = serde_json::from_str::<OkxRequest>(text) else {
        return vec![r#"{"event":"error","code":"60012","msg":"Invalid request"}"#.into()];
    };
    let subscribe = match req.op.as_str() {
        "subscribe" => true,
        "unsubscribe" => false,
        _ => return vec![r#"{"event":"error","code":"60012","msg":"Invalid op"}"#.into()],
    };
    req.args
        .iter()
        .map(|arg| {
            let channel = arg.get("channel").and_then(|v| v.as_str()).unwrap_or("");
            let inst = arg.get("instId").and_then(|v| v.as_str()).unwrap_or("");
            let key = format!("{inst}|{channel}");
            if subscribe {
                subs.insert(key);
            } else {
                subs.remove(&key);
            }
            serde_json::json!({"event": req.op, "arg": arg, "connId": "replay"}).to_string()
        })
        .collect()
}

/// OKX routing key: `"<instId>|<channel>"` of a data message; `None` (never replayed) for
/// events (acks, errors, notices).
pub(super) fn okx_key(raw: &str) -> Option<Box<str>> {
    let p: OkxPeek<'_> = serde_json::from_str(raw).ok()?;
    if p.event.is_some() {
        return None;
    }
    let arg = p.arg?;
    Some(format!("{}|{}", arg.inst_id?, arg.channel).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::instrument::Venue;
    use crate::sim::source::record_key;

    #[test]
    fn okx_requests_map_to_record_keys() {
        let mut s = HashSet::new();
        let r = okx_request(
            r#"{"op":"subscribe","args":[{"channel":"books","instId":"UNI-USD-SWAP"}]}"#,
            &mut s,
        );
        assert_eq!(
            r,
            [
                r#"{"arg":{"channel":"books","instId":"UNI-USD-SWAP"},"connId":"replay","event":"subscribe"}"#
            ]
        );
        let k = record_key(
            Venue::Okx,
            r#"{"arg":{"channel":"books","instId":"UNI-USD-SWAP"},"action":"update","data":[]}"#,
        )
        .unwrap();
        assert!(s.contains(&*k));
        assert_eq!(okx_request("ping", &mut s), ["pong"]);
        assert!(record_key(
            Venue::Okx,
            r#"{"event":"subscribe","arg":{"channel":"books","instId":"X"}}"#
        )
        .is_none());
    }
}
