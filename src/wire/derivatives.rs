//! Frames of the derivatives kinds (docs/PROTOCOL.md §4.8–4.10): Mark (type 9: mark, index and
//! settle prices, funding rate, next funding time), Liquidation (type 10) and OpenInterest
//! (type 11). Added to protocol v1 without a version bump: a v1 reader that predates them skips
//! them by length (§4, unknown types), and they do not advance the per-instrument market-data
//! `sequence` (so such a reader sees no false gap); each carries its own per-instrument,
//! per-kind number (`kind_sequence`, 1 for the first) so a current reader can still see loss.
//!
//! Encoding happens on collector threads (the feed stage's publisher), decoding in clients, via
//! `protocol::FrameRef::message`. Pure; never blocks.

use crate::market::event::{Liquidation, LiquidationStatus, Mark, OpenInterest, Side};
use crate::wire::protocol::{finish, i64_at, need, put_header, u64_at};
use crate::wire::protocol::{DecodeError, FrameBuf, Message, Meta, MsgType};

/// Payload bytes of a Mark frame.
pub const MARK_PAYLOAD_LEN: usize = 48;
/// Payload bytes of a Liquidation frame.
pub const LIQUIDATION_PAYLOAD_LEN: usize = 48;
/// Payload bytes of an OpenInterest frame.
pub const OPEN_INTEREST_PAYLOAD_LEN: usize = 24;

/// Encodes a Mark frame. `kind_sequence` is the instrument's number of this Mark (1 for its
/// first); the header's `sequence` in `m` is the instrument's current market-data number, not
/// advanced.
pub fn encode_mark(buf: &mut FrameBuf, m: &Meta, kind_sequence: u64, k: &Mark) {
    put_header(buf, MsgType::Mark, m, k.exchange_ts_ns);
    for v in [k.mark_price, k.index_price, k.settle_price, k.funding_rate] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf.extend_from_slice(&k.next_funding_ns.unwrap_or(0).to_le_bytes());
    buf.extend_from_slice(&kind_sequence.to_le_bytes());
    finish(buf);
}

/// Encodes a Liquidation frame (`kind_sequence` and `m.sequence` as for [`encode_mark`]).
pub fn encode_liquidation(buf: &mut FrameBuf, m: &Meta, kind_sequence: u64, l: &Liquidation) {
    put_header(buf, MsgType::Liquidation, m, l.exchange_ts_ns);
    for v in [l.price, l.avg_price, l.size, l.filled_size] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf.extend_from_slice(&[l.side as u8, l.status as u8, 0, 0, 0, 0, 0, 0]);
    buf.extend_from_slice(&kind_sequence.to_le_bytes());
    finish(buf);
}

/// Encodes an OpenInterest frame (`kind_sequence` and `m.sequence` as for [`encode_mark`]).
pub fn encode_open_interest(buf: &mut FrameBuf, m: &Meta, kind_sequence: u64, o: &OpenInterest) {
    put_header(buf, MsgType::OpenInterest, m, o.exchange_ts_ns);
    buf.extend_from_slice(&o.open_interest.to_le_bytes());
    buf.extend_from_slice(&o.value.to_le_bytes());
    buf.extend_from_slice(&kind_sequence.to_le_bytes());
    finish(buf);
}

/// Decodes a Mark payload; `ts` is the header's exchange time (`None` for 0). Payload bytes
/// beyond [`MARK_PAYLOAD_LEN`] are ignored.
pub(crate) fn decode_mark(p: &[u8], ts: Option<u64>) -> Result<Message<'static>, DecodeError> {
    need(p, MARK_PAYLOAD_LEN, MsgType::Mark)?;
    let next = u64_at(p, 32);
    Ok(Message::Mark {
        mark: Mark {
            mark_price: i64_at(p, 0),
            index_price: i64_at(p, 8),
            settle_price: i64_at(p, 16),
            funding_rate: i64_at(p, 24),
            next_funding_ns: (next != 0).then_some(next),
            exchange_ts_ns: ts,
        },
        kind_sequence: u64_at(p, 40),
    })
}

/// Decodes a Liquidation payload (see [`decode_mark`]).
pub(crate) fn decode_liquidation(
    p: &[u8],
    ts: Option<u64>,
) -> Result<Message<'static>, DecodeError> {
    need(p, LIQUIDATION_PAYLOAD_LEN, MsgType::Liquidation)?;
    Ok(Message::Liquidation {
        liquidation: Liquidation {
            price: i64_at(p, 0),
            avg_price: i64_at(p, 8),
            size: i64_at(p, 16),
            filled_size: i64_at(p, 24),
            side: Side::from_code(p[32]),
            status: LiquidationStatus::from_code(p[33]),
            exchange_ts_ns: ts,
        },
        kind_sequence: u64_at(p, 40),
    })
}

/// Decodes an OpenInterest payload (see [`decode_mark`]).
pub(crate) fn decode_open_interest(
    p: &[u8],
    ts: Option<u64>,
) -> Result<Message<'static>, DecodeError> {
    need(p, OPEN_INTEREST_PAYLOAD_LEN, MsgType::OpenInterest)?;
    Ok(Message::OpenInterest {
        open_interest: OpenInterest {
            open_interest: i64_at(p, 0),
            value: i64_at(p, 8),
            exchange_ts_ns: ts,
        },
        kind_sequence: u64_at(p, 16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::fixed::ABSENT;
    use crate::wire::protocol::{decode_frame, flags};

    fn meta() -> Meta {
        Meta {
            instrument_id: 0x1234_5678,
            sequence: 41,
            recv_ts_ns: 1_723_161_254_087_896_568,
            flags: flags::LAST_IN_EVENT,
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Instrument `binance_usdm:BTCUSDT`, sequence 7, flags 0 (docs/PROTOCOL.md §10.10-10.13).
    fn golden_meta(recv_ts_ns: u64) -> Meta {
        Meta {
            instrument_id: 0x6a93_55f4,
            sequence: 7,
            recv_ts_ns,
            flags: 0,
        }
    }

    /// The Binance `markPriceUpdate` documentation sample as a Mark frame.
    pub(crate) fn golden_mark() -> Mark {
        Mark {
            mark_price: 1_179_415_000_000,
            index_price: 1_178_462_659_091,
            settle_price: 1_178_425_641_265,
            funding_rate: 381_670_000_000_000,
            next_funding_ns: Some(1_562_306_400_000_000_000),
            exchange_ts_ns: Some(1_562_305_380_000_000_000),
        }
    }

    /// Golden vectors 10.10-10.13 of docs/PROTOCOL.md, computed independently with Python's
    /// `struct` and `zlib.crc32` from the layout tables (not by this encoder). If this test fails,
    /// the encoder or the document is wrong, and a client written from the document breaks.
    #[test]
    fn golden_derivatives_frames() {
        use crate::wire::protocol::add_flags;
        let mut buf = FrameBuf::new();
        encode_mark(
            &mut buf,
            &golden_meta(1_562_305_380_012_345_678),
            1,
            &golden_mark(),
        );
        assert_eq!(
            hex(&buf),
            concat!(
                "4d44524c0109000030000000f455936a", // magic, v1, Mark, flags 0, len 48, id
                "0700000000000000",                 // sequence 7, not advanced
                "00e89435776cae15",                 // exchange_ts_ns (E)
                "4e495136776cae15",                 // recv_ts_ns
                "c0b39c9a12010000",                 // mark 11794.15
                "1322d96112010000",                 // index 11784.62659091
                "3149a45f12010000",                 // settle 11784.25641265
                "007cc578205b0100",                 // funding 0.00038167 (1e-18 units)
                "00c051b2646dae15",                 // next funding time
                "0100000000000000",                 // kind_sequence 1
                "63319179",                         // crc32
            )
        );
        add_flags(&mut buf, flags::CACHED);
        assert_eq!(
            hex(&buf[88..]),
            "0e242b84",
            "10.13: the same Mark replayed CACHED"
        );
        assert_eq!(hex(&buf[6..8]), "0800");

        encode_liquidation(
            &mut buf,
            &golden_meta(1_568_014_460_900_000_000),
            1,
            &Liquidation {
                side: Side::Sell,
                price: 991_000_000_000,
                avg_price: 991_012_345_678,
                size: 1_400_000,
                filled_size: 1_400_000,
                status: LiquidationStatus::Filled,
                exchange_ts_ns: Some(1_568_014_460_893_000_000),
            },
        );
        assert_eq!(
            hex(&buf),
            concat!(
                "4d44524c010a000030000000f455936a", // Liquidation, len 48
                "0700000000000000",                 // sequence 7
                "40f13330d8b4c215",                 // exchange_ts_ns (T)
                "00c19e30d8b4c215",                 // recv_ts_ns
                "00f633bce6000000",                 // price 9910
                "4e57f0bce6000000",                 // avg price 9910.12345678
                "c05c150000000000",                 // size 0.014
                "c05c150000000000",                 // filled 0.014
                "0203000000000000",                 // side sell, status filled, 6 reserved
                "0100000000000000",                 // kind_sequence 1
                "44d7d2e9",                         // crc32
            )
        );

        encode_open_interest(
            &mut buf,
            &golden_meta(1_589_437_530_020_000_000),
            1,
            &OpenInterest {
                open_interest: 1_065_974_900_000,
                value: 10_126_761_550_000_000,
                exchange_ts_ns: Some(1_589_437_530_011_000_000),
            },
        );
        assert_eq!(
            hex(&buf),
            concat!(
                "4d44524c010b000018000000f455936a", // OpenInterest, len 24
                "0700000000000000",                 // sequence 7
                "c0dcfa2803d10e16",                 // exchange_ts_ns
                "0031842903d10e16",                 // recv_ts_ns
                "20250e31f8000000",                 // open interest 10659.749
                "80afe9683cfa2300",                 // value 101267615.5
                "0100000000000000",                 // kind_sequence 1
                "3ac3ba14",                         // crc32
            )
        );
    }

    #[test]
    fn every_kind_round_trips_with_its_kind_sequence() {
        let mut buf = FrameBuf::new();
        let mark = Mark {
            mark_price: 268_380_000_000,
            index_price: ABSENT,
            settle_price: 1,
            funding_rate: -100_000_000_000_000,
            next_funding_ns: Some(1_723_190_400_000_000_000),
            exchange_ts_ns: Some(1_723_161_255_000_000_000),
        };
        encode_mark(&mut buf, &meta(), 3, &mark);
        assert_eq!(buf.len(), 40 + MARK_PAYLOAD_LEN + 4);
        let (f, n) = decode_frame(&buf).unwrap();
        assert_eq!((n, f.header.sequence, f.header.flags), (buf.len(), 41, 2));
        assert_eq!(
            f.message().unwrap(),
            Message::Mark {
                mark,
                kind_sequence: 3
            }
        );
        // No times: both read back as None.
        let bare = Mark {
            next_funding_ns: None,
            exchange_ts_ns: None,
            ..mark
        };
        encode_mark(&mut buf, &meta(), 4, &bare);
        let (f, _) = decode_frame(&buf).unwrap();
        assert_eq!(
            f.message().unwrap(),
            Message::Mark {
                mark: bare,
                kind_sequence: 4
            }
        );

        let liquidation = Liquidation {
            side: Side::Sell,
            price: 9_910_000_000,
            avg_price: 9_910_000_000,
            size: 1_400_000,
            filled_size: ABSENT,
            status: LiquidationStatus::PartiallyFilled,
            exchange_ts_ns: Some(1_568_014_460_893_000_000),
        };
        encode_liquidation(&mut buf, &meta(), 1, &liquidation);
        assert_eq!(buf.len(), 40 + LIQUIDATION_PAYLOAD_LEN + 4);
        let (f, _) = decode_frame(&buf).unwrap();
        assert_eq!(
            f.message().unwrap(),
            Message::Liquidation {
                liquidation,
                kind_sequence: 1
            }
        );

        let open_interest = OpenInterest {
            open_interest: 1_234_567_800_000_000,
            value: ABSENT,
            exchange_ts_ns: None,
        };
        encode_open_interest(&mut buf, &meta(), u64::MAX, &open_interest);
        assert_eq!(buf.len(), 40 + OPEN_INTEREST_PAYLOAD_LEN + 4);
        let (f, _) = decode_frame(&buf).unwrap();
        assert_eq!(
            f.message().unwrap(),
            Message::OpenInterest {
                open_interest,
                kind_sequence: u64::MAX
            }
        );
    }

    #[test]
    fn short_payloads_are_malformed_and_longer_ones_are_read() {
        use crate::wire::protocol::encode_raw;
        let mut buf = FrameBuf::new();
        for (t, len) in [
            (MsgType::Mark, MARK_PAYLOAD_LEN),
            (MsgType::Liquidation, LIQUIDATION_PAYLOAD_LEN),
            (MsgType::OpenInterest, OPEN_INTEREST_PAYLOAD_LEN),
        ] {
            encode_raw(&mut buf, t as u8, &meta(), &vec![0u8; len - 1]);
            let (f, _) = decode_frame(&buf).unwrap();
            assert!(
                matches!(f.message(), Err(DecodeError::BadPayload { msg_type, .. }) if msg_type == t),
                "{t:?}"
            );
            encode_raw(&mut buf, t as u8, &meta(), &vec![0u8; len + 8]);
            let (f, _) = decode_frame(&buf).unwrap();
            assert!(f.message().is_ok(), "{t:?}: extra bytes are ignored");
        }
    }

    #[test]
    fn unknown_liquidation_status_codes_read_as_unknown() {
        for s in LiquidationStatus::ALL {
            assert_eq!(LiquidationStatus::from_code(s as u8), s);
        }
        assert_eq!(
            LiquidationStatus::from_code(200),
            LiquidationStatus::Unknown
        );
    }
}
