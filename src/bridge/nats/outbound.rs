//! What goes through the buffer between the two threads: [`Outbound`] messages with the
//! [`Origin`] their loss is reported on, and the rendering of those `dropped` reports.

use std::sync::Arc;

use async_nats::Subject;
use bytes::Bytes;

use crate::bridge::config::Payload;
use crate::market::event::{Event, Status, StatusCode};
use crate::market::instrument::InstrumentId;
use crate::wire::json;
use crate::wire::protocol::{self, FrameBuf, Meta};

/// `detail` of a drop report for frames lost in the bridge's buffer.
pub const DETAIL_BUFFER_FULL: &str = "nats bridge: buffer full (NATS slow or unreachable)";
/// `detail` of a drop report for messages the NATS server refused.
pub const DETAIL_REFUSED: &str = "nats bridge: message refused by the NATS server";

/// Who a message is about: where its loss is reported.
#[derive(Debug)]
pub(super) struct Origin {
    /// 0 for feed-wide frames.
    pub(super) id: InstrumentId,
    pub(super) venue: String,
    pub(super) symbol: Option<String>,
    pub(super) status_subject: Subject,
}

impl Origin {
    /// `ev` about this origin as one object of the JSON-lines schema, without the newline.
    pub(super) fn json(&self, recv_ts_ns: Option<u64>, ev: &Event<'_>) -> Bytes {
        let mut out = Vec::with_capacity(256);
        // Writing into a Vec cannot fail.
        let _ = json::write_event(
            &mut out,
            &json::Origin {
                venue: &self.venue,
                symbol: self.symbol.as_deref(),
                recv_ts_ns,
            },
            ev,
        );
        out.pop(); // the line's newline
        Bytes::from(out)
    }
}

/// One message in the buffer.
#[derive(Debug)]
pub(super) struct Outbound {
    pub(super) subject: Subject,
    pub(super) payload: Bytes,
    pub(super) origin: Arc<Origin>,
    /// The frame's sequence (the instrument's latest for non-events).
    pub(super) sequence: u64,
    /// Its loss goes into a `dropped` report (false for definitions and reports).
    pub(super) counted: bool,
}

/// Renders a `dropped` status about `origin` in the configured payload format.
pub(super) fn render_drop(
    payload: Payload,
    origin: &Origin,
    sequence: u64,
    count: u64,
    detail: &str,
) -> Bytes {
    let status = Status {
        code: StatusCode::Dropped,
        count,
        detail,
    };
    match payload {
        Payload::Frame => {
            let mut buf = FrameBuf::new();
            protocol::encode_status(
                &mut buf,
                &Meta {
                    instrument_id: origin.id,
                    sequence,
                    recv_ts_ns: crate::base::clock::wall_ns(),
                    flags: 0,
                },
                &origin.venue,
                &status,
            );
            Bytes::copy_from_slice(&buf)
        }
        Payload::Json => origin.json(None, &Event::Status(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::protocol::Message;

    #[test]
    fn drop_reports_render_in_both_payloads() {
        let o = Origin {
            id: 7,
            venue: "binance".into(),
            symbol: Some("ETHUSDT".into()),
            status_subject: Subject::from("x"),
        };
        let b = render_drop(Payload::Frame, &o, 42, 3, DETAIL_BUFFER_FULL);
        let (f, _) = protocol::decode_frame(&b).unwrap();
        assert_eq!((f.header.instrument_id, f.header.sequence), (7, 42));
        let Message::Status { venue, status } = f.message().unwrap() else {
            panic!("not a status")
        };
        assert_eq!(
            (venue, status.code, status.count),
            ("binance", StatusCode::Dropped, 3)
        );
        let j = render_drop(Payload::Json, &o, 42, 3, DETAIL_BUFFER_FULL);
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        assert_eq!(v["event"], "dropped");
        assert_eq!(v["count"], 3);
        assert_eq!(v["symbol"], "ETHUSDT");
        assert!(!j.ends_with(b"\n"));
    }
}
