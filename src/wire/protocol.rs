//! Wire protocol v1: the frames subscribers read from the relay socket (docs/PROTOCOL.md is the
//! normative description; the golden vectors in this module's tests keep the two in step).
//!
//! A frame is a 40-byte little-endian header, a typed payload of `payload_len` bytes, and a CRC-32
//! (ISO-HDLC, the zlib polynomial) over header and payload. Frames are self-delimiting: a reader
//! takes the header, learns the length, and never needs a separator. The decoder checks magic,
//! version, length bound and CRC before it looks at a payload, and reports each failure as a typed
//! [`DecodeError`].
//!
//! Encoding happens on collector threads (one frame per event, into an inline [`FrameBuf`] so
//! trades and quotes never touch the heap); decoding happens in clients. Pure; never blocks.

use smallvec::SmallVec;

use crate::market::bars::Bar;
use crate::market::event::{
    BookUpdate, Event, Level, Liquidation, Mark, OpenInterest, Quote, Side, Status, StatusCode,
    Trade,
};
use crate::market::instrument::InstrumentId;
use crate::wire::derivatives;

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"MDRL";
/// Protocol version this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 40;
/// Bytes after the payload (the CRC).
pub const TRAILER_LEN: usize = 4;
/// Largest payload a decoder accepts (a 1000-level book snapshot is 32 KiB).
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;
/// Venue name of the relay's own status frames (request answers, `too_slow`, a subscriber's
/// `dropped` report, `not_persisted`), as opposed to a feed's.
pub const RELAY_VENUE: &str = "mdrelay";
/// Decimal exponent of every price and size: value = raw × 10^PRICE_EXPONENT.
pub const PRICE_EXPONENT: i8 = -8;

/// A frame under construction or in flight: inline up to 128 bytes (every trade, quote and
/// status), heap beyond (book snapshots).
pub type FrameBuf = SmallVec<[u8; 128]>;

/// Message types (header byte 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgType {
    /// Maps an instrument id to venue and symbol; precedes any event using the id.
    InstrumentDef = 1,
    /// One execution.
    Trade = 2,
    /// Best bid and offer.
    Quote = 3,
    /// Feed or instrument status.
    Status = 4,
    /// Liveness tick from the relay.
    Heartbeat = 5,
    /// Full book (replace every level).
    BookSnapshot = 6,
    /// Book changes (size 0 removes a level).
    BookDelta = 7,
    /// A closed OHLCV bar, derived by the relay from the instrument's trades.
    Bar = 8,
    /// Mark, index and settle price and funding of a derivative (`wire::derivatives`).
    Mark = 9,
    /// A liquidation order (`wire::derivatives`).
    Liquidation = 10,
    /// Open interest of a derivative (`wire::derivatives`).
    OpenInterest = 11,
}

impl MsgType {
    /// Header byte → type; `None` for a type this build does not know (skip it by length).
    pub fn from_code(c: u8) -> Option<MsgType> {
        Some(match c {
            1 => MsgType::InstrumentDef,
            2 => MsgType::Trade,
            3 => MsgType::Quote,
            4 => MsgType::Status,
            5 => MsgType::Heartbeat,
            6 => MsgType::BookSnapshot,
            7 => MsgType::BookDelta,
            8 => MsgType::Bar,
            9 => MsgType::Mark,
            10 => MsgType::Liquidation,
            11 => MsgType::OpenInterest,
            _ => return None,
        })
    }
}

/// Header flag bits (header bytes 6–7).
pub mod flags {
    /// Book frame: the levels replace the whole book.
    pub const SNAPSHOT: u16 = 1 << 0;
    /// Last frame of one venue message (a Kraken trade message yields several Trade frames).
    pub const LAST_IN_EVENT: u16 = 1 << 1;
    /// The instrument's book may be wrong (unrecovered gap, dropped delta) until a snapshot.
    pub const BOOK_MAY_BE_BAD: u16 = 1 << 2;
    /// Replayed from the relay's cache to a late joiner: a past event, not a new one.
    pub const CACHED: u16 = 1 << 3;
}

/// The fixed header fields of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type code (see [`MsgType`]); unknown codes are kept so a reader can skip them.
    pub msg_type: u8,
    /// [`flags`] bits.
    pub flags: u16,
    /// Payload bytes; always ≤ [`MAX_PAYLOAD_LEN`] in a decoded frame.
    pub payload_len: u32,
    /// Instrument the frame is about; 0 for none.
    pub instrument_id: InstrumentId,
    /// Per-instrument sequence of market-data events (trade, quote, book), 1 for the first.
    /// Other frames carry the instrument's latest sequence without advancing it.
    pub sequence: u64,
    /// Venue timestamp, ns since epoch; 0 = the venue sent none.
    pub exchange_ts_ns: u64,
    /// When mdrelay received the venue message, ns since epoch (heartbeats: when sent).
    pub recv_ts_ns: u64,
}

/// Header fields an encoder takes from its caller (the rest come from the event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Instrument id, 0 for none.
    pub instrument_id: InstrumentId,
    /// Per-instrument sequence (see [`Header::sequence`]).
    pub sequence: u64,
    /// Receive time, ns since epoch.
    pub recv_ts_ns: u64,
    /// Extra [`flags`] bits.
    pub flags: u16,
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not enough bytes yet: a stream reader should read at least `needed` bytes in total.
    #[error("incomplete frame: {needed} bytes needed")]
    Incomplete {
        /// Total bytes the frame needs (header first, then the whole frame).
        needed: usize,
    },
    /// The first four bytes are not `MDRL`: the stream is not mdrelay or lost its framing.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 4]),
    /// A version this build does not read.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// `payload_len` above [`MAX_PAYLOAD_LEN`].
    #[error("payload length {0} exceeds the maximum")]
    BadLength(u32),
    /// The CRC does not match the bytes.
    #[error("crc mismatch: frame says {received:#010x}, bytes give {computed:#010x}")]
    BadCrc {
        /// CRC computed over the received bytes.
        computed: u32,
        /// CRC the frame carried.
        received: u32,
    },
    /// The payload is too short for its type, or a string is not UTF-8.
    #[error("malformed {msg_type:?} payload: {reason}")]
    BadPayload {
        /// The frame's type.
        msg_type: MsgType,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A decoded frame borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// Header fields.
    pub header: Header,
    /// Payload bytes (`header.payload_len` of them).
    pub payload: &'a [u8],
}

/// A book frame's payload, levels still in wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookFrame<'a> {
    /// Venue sequence, 0 when the venue has none.
    pub venue_sequence: u64,
    bid_count: usize,
    levels: &'a [u8],
}

impl<'a> BookFrame<'a> {
    fn level(&self, i: usize) -> Level {
        let b = &self.levels[i * 16..i * 16 + 16];
        Level {
            price: i64_at(b, 0),
            size: i64_at(b, 8),
        }
    }
    /// Bid levels in frame order.
    pub fn bids(&self) -> impl Iterator<Item = Level> + '_ {
        (0..self.bid_count).map(|i| self.level(i))
    }
    /// Ask levels in frame order.
    pub fn asks(&self) -> impl Iterator<Item = Level> + '_ {
        (self.bid_count..self.levels.len() / 16).map(|i| self.level(i))
    }
}

/// A Bar frame's payload: one closed OHLCV bar (see [`crate::market::bars`] for how bars are built).
/// Prices and the volume are fixed-point at [`PRICE_EXPONENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarFrame {
    /// Bar length, ns.
    pub interval_ns: u64,
    /// Start of the bar, ns since epoch (a multiple of `interval_ns`); it covers
    /// `[start_ns, start_ns + interval_ns)`.
    pub start_ns: u64,
    /// Price of the earliest trade.
    pub open: i64,
    /// Highest price.
    pub high: i64,
    /// Lowest price.
    pub low: i64,
    /// Price of the latest trade.
    pub close: i64,
    /// Sum of trade sizes (exact, 128-bit).
    pub volume: i128,
    /// Volume-weighted average price, rounded half to even; [`crate::market::fixed::ABSENT`] when the
    /// notional overflowed 128 bits.
    pub vwap: i64,
    /// Trades in the bar.
    pub trade_count: u64,
    /// Time of the earliest and latest trade in the bar, ns since epoch.
    pub first_trade_ns: u64,
    /// See `first_trade_ns`.
    pub last_trade_ns: u64,
}

impl From<&Bar> for BarFrame {
    fn from(b: &Bar) -> Self {
        BarFrame {
            interval_ns: b.interval_ns,
            start_ns: b.start_ns,
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
            vwap: b.vwap(),
            trade_count: b.trade_count,
            first_trade_ns: b.first_trade_ns,
            last_trade_ns: b.last_trade_ns,
        }
    }
}

/// Payload bytes of a Bar frame.
pub const BAR_PAYLOAD_LEN: usize = 96;

/// A decoded payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Id ↔ name.
    InstrumentDef {
        /// Venue name.
        venue: &'a str,
        /// Venue symbol.
        symbol: &'a str,
        /// Decimal exponent of prices and sizes (always [`PRICE_EXPONENT`] in v1).
        price_exponent: i8,
    },
    /// Execution.
    Trade(Trade),
    /// BBO.
    Quote(Quote),
    /// Status report.
    Status {
        /// Venue the report is about.
        venue: &'a str,
        /// The report.
        status: Status<'a>,
    },
    /// Liveness.
    Heartbeat,
    /// Book snapshot or delta (see the header's SNAPSHOT flag).
    Book(BookFrame<'a>),
    /// A closed OHLCV bar.
    Bar(BarFrame),
    /// Mark price and funding of a derivative.
    Mark {
        /// The event.
        mark: Mark,
        /// The instrument's number of this Mark frame, 1 for the first (loss shows as a gap).
        kind_sequence: u64,
    },
    /// A liquidation order.
    Liquidation {
        /// The event.
        liquidation: Liquidation,
        /// The instrument's number of this Liquidation frame, 1 for the first.
        kind_sequence: u64,
    },
    /// Open interest of a derivative.
    OpenInterest {
        /// The event.
        open_interest: OpenInterest,
        /// The instrument's number of this OpenInterest frame, 1 for the first.
        kind_sequence: u64,
    },
    /// A type this build does not know; skipped by length.
    Unknown(u8),
}

#[inline]
pub(crate) fn put_header(
    buf: &mut FrameBuf,
    msg_type: MsgType,
    m: &Meta,
    exchange_ts_ns: Option<u64>,
) {
    buf.clear();
    buf.extend_from_slice(&MAGIC);
    buf.push(VERSION);
    buf.push(msg_type as u8);
    buf.extend_from_slice(&m.flags.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes()); // payload_len, patched by finish()
    buf.extend_from_slice(&m.instrument_id.to_le_bytes());
    buf.extend_from_slice(&m.sequence.to_le_bytes());
    buf.extend_from_slice(&exchange_ts_ns.unwrap_or(0).to_le_bytes());
    buf.extend_from_slice(&m.recv_ts_ns.to_le_bytes());
}

#[inline]
pub(crate) fn finish(buf: &mut FrameBuf) {
    let payload_len = (buf.len() - HEADER_LEN) as u32;
    buf[8..12].copy_from_slice(&payload_len.to_le_bytes());
    let crc = crc32fast::hash(buf);
    buf.extend_from_slice(&crc.to_le_bytes());
}

/// Rewrites the CRC after a caller changed header bytes (e.g. set [`flags::CACHED`]).
pub fn reseal(frame: &mut [u8]) {
    let n = frame.len() - TRAILER_LEN;
    let crc = crc32fast::hash(&frame[..n]);
    frame[n..].copy_from_slice(&crc.to_le_bytes());
}

/// Sets extra flag bits on an encoded frame and reseals it.
pub fn add_flags(frame: &mut [u8], extra: u16) {
    let f = u16::from_le_bytes([frame[6], frame[7]]) | extra;
    frame[6..8].copy_from_slice(&f.to_le_bytes());
    reseal(frame);
}

fn put_str16(buf: &mut FrameBuf, s: &str) -> u16 {
    // Strings longer than u16::MAX are cut at a char boundary; venue names and symbols are short.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.extend_from_slice(&s.as_bytes()[..end]);
    end as u16
}

/// Encodes an InstrumentDef frame.
pub fn encode_instrument_def(buf: &mut FrameBuf, m: &Meta, venue: &str, symbol: &str) {
    put_header(buf, MsgType::InstrumentDef, m, None);
    let at = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    let vl = put_str16(buf, venue);
    let sl = put_str16(buf, symbol);
    buf[at..at + 2].copy_from_slice(&vl.to_le_bytes());
    buf[at + 2..at + 4].copy_from_slice(&sl.to_le_bytes());
    buf[at + 4] = PRICE_EXPONENT as u8;
    finish(buf);
}

/// Bytes of a Trade or Quote frame: header, 32-byte payload, CRC.
const FIXED32_FRAME_LEN: usize = HEADER_LEN + 32 + TRAILER_LEN;

/// Encodes a frame with a 32-byte payload into a stack array at fixed offsets and copies it into
/// `buf` once: measured ~4× faster than appending field by field (docs/BENCHMARKS.md).
#[inline]
fn encode_fixed32(
    buf: &mut FrameBuf,
    t: MsgType,
    m: &Meta,
    exchange_ts_ns: Option<u64>,
    payload: [u64; 4],
    side: Option<u8>,
) {
    let mut f = [0u8; FIXED32_FRAME_LEN];
    f[0..4].copy_from_slice(&MAGIC);
    f[4] = VERSION;
    f[5] = t as u8;
    f[6..8].copy_from_slice(&m.flags.to_le_bytes());
    f[8..12].copy_from_slice(&32u32.to_le_bytes());
    f[12..16].copy_from_slice(&m.instrument_id.to_le_bytes());
    f[16..24].copy_from_slice(&m.sequence.to_le_bytes());
    f[24..32].copy_from_slice(&exchange_ts_ns.unwrap_or(0).to_le_bytes());
    f[32..40].copy_from_slice(&m.recv_ts_ns.to_le_bytes());
    for (i, v) in payload.iter().enumerate() {
        f[40 + 8 * i..48 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    if let Some(side) = side {
        // Trade: byte 24 of the payload is the side, 25..32 reserved; payload[3] was 0.
        f[64] = side;
    }
    let crc = crc32fast::hash(&f[..HEADER_LEN + 32]);
    f[HEADER_LEN + 32..].copy_from_slice(&crc.to_le_bytes());
    buf.clear();
    buf.extend_from_slice(&f);
}

/// Encodes a Trade frame.
#[inline]
pub fn encode_trade(buf: &mut FrameBuf, m: &Meta, t: &Trade) {
    encode_fixed32(
        buf,
        MsgType::Trade,
        m,
        t.exchange_ts_ns,
        [t.price as u64, t.size as u64, t.trade_id.unwrap_or(0), 0],
        Some(t.side as u8),
    );
}

/// Encodes a Quote frame.
#[inline]
pub fn encode_quote(buf: &mut FrameBuf, m: &Meta, q: &Quote) {
    encode_fixed32(
        buf,
        MsgType::Quote,
        m,
        q.exchange_ts_ns,
        [
            q.bid_price as u64,
            q.bid_size as u64,
            q.ask_price as u64,
            q.ask_size as u64,
        ],
        None,
    );
}

/// Encodes a Status frame about `venue` (and the header's instrument, if any).
pub fn encode_status(buf: &mut FrameBuf, m: &Meta, venue: &str, s: &Status<'_>) {
    put_header(buf, MsgType::Status, m, None);
    let at = buf.len();
    buf.extend_from_slice(&(s.code as u16).to_le_bytes());
    buf.extend_from_slice(&[0u8; 6]);
    buf.extend_from_slice(&s.count.to_le_bytes());
    let vl = put_str16(buf, venue);
    let dl = put_str16(buf, s.detail);
    buf[at + 2..at + 4].copy_from_slice(&vl.to_le_bytes());
    buf[at + 4..at + 6].copy_from_slice(&dl.to_le_bytes());
    finish(buf);
}

/// Encodes a Bar frame. `m.sequence` is the instrument's latest event sequence (a bar does not
/// advance it); the header's `exchange_ts_ns` is 0 and `recv_ts_ns` is when the bar closed.
pub fn encode_bar(buf: &mut FrameBuf, m: &Meta, b: &BarFrame) {
    put_header(buf, MsgType::Bar, m, None);
    for v in [b.interval_ns, b.start_ns] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    for v in [b.open, b.high, b.low, b.close] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf.extend_from_slice(&b.volume.to_le_bytes());
    buf.extend_from_slice(&b.vwap.to_le_bytes());
    for v in [b.trade_count, b.first_trade_ns, b.last_trade_ns] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    finish(buf);
}

/// Encodes a frame of type code `msg_type` around `payload` as given (subscription requests,
/// tests of unknown types).
pub fn encode_raw(buf: &mut FrameBuf, msg_type: u8, m: &Meta, payload: &[u8]) {
    put_header(buf, MsgType::Heartbeat, m, None);
    buf[5] = msg_type;
    buf.extend_from_slice(payload);
    finish(buf);
}

/// Encodes a Heartbeat frame.
pub fn encode_heartbeat(buf: &mut FrameBuf, recv_ts_ns: u64) {
    put_header(
        buf,
        MsgType::Heartbeat,
        &Meta {
            recv_ts_ns,
            ..Meta::default()
        },
        None,
    );
    finish(buf);
}

/// Encodes a BookSnapshot (when `b.snapshot`) or BookDelta frame. The SNAPSHOT and
/// BOOK_MAY_BE_BAD flags are derived from the update; `m.flags` adds to them.
pub fn encode_book(buf: &mut FrameBuf, m: &Meta, b: &BookUpdate<'_>) {
    let mut meta = *m;
    if b.snapshot {
        meta.flags |= flags::SNAPSHOT;
    }
    if b.may_be_bad {
        meta.flags |= flags::BOOK_MAY_BE_BAD;
    }
    let t = if b.snapshot {
        MsgType::BookSnapshot
    } else {
        MsgType::BookDelta
    };
    put_header(buf, t, &meta, b.exchange_ts_ns);
    buf.extend_from_slice(&b.venue_sequence.unwrap_or(0).to_le_bytes());
    buf.extend_from_slice(&(b.bids.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(b.asks.len() as u32).to_le_bytes());
    for l in b.bids.iter().chain(b.asks) {
        buf.extend_from_slice(&l.price.to_le_bytes());
        buf.extend_from_slice(&l.size.to_le_bytes());
    }
    finish(buf);
}

#[inline]
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
#[inline]
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
#[inline]
pub(crate) fn i64_at(b: &[u8], at: usize) -> i64 {
    u64_at(b, at) as i64
}

/// Reads the header of `buf` without checking the CRC (the caller has a whole, verified frame).
/// `buf` must hold at least [`HEADER_LEN`] bytes.
#[inline]
pub fn peek_header(buf: &[u8]) -> Header {
    Header {
        msg_type: buf[5],
        flags: u16_at(buf, 6),
        payload_len: u32_at(buf, 8),
        instrument_id: u32_at(buf, 12),
        sequence: u64_at(buf, 16),
        exchange_ts_ns: u64_at(buf, 24),
        recv_ts_ns: u64_at(buf, 32),
    }
}

/// Total length of the frame starting at `buf`, from its header, after checking magic, version
/// and length bound. `Incomplete` when fewer than [`HEADER_LEN`] bytes are there.
pub fn frame_len(buf: &[u8]) -> Result<usize, DecodeError> {
    if buf.len() >= 4 && buf[..4] != MAGIC {
        return Err(DecodeError::BadMagic([buf[0], buf[1], buf[2], buf[3]]));
    }
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Incomplete { needed: HEADER_LEN });
    }
    if buf[4] != VERSION {
        return Err(DecodeError::UnsupportedVersion(buf[4]));
    }
    let payload_len = u32_at(buf, 8);
    if payload_len as usize > MAX_PAYLOAD_LEN {
        return Err(DecodeError::BadLength(payload_len));
    }
    Ok(HEADER_LEN + payload_len as usize + TRAILER_LEN)
}

/// Decodes the frame at the start of `buf`, returning it and its total length in bytes.
///
/// Checks, in order: enough bytes for a header, magic, version, payload bound, enough bytes for
/// the frame, CRC. `Incomplete` is the only error after which reading more bytes can help.
pub fn decode_frame(buf: &[u8]) -> Result<(FrameRef<'_>, usize), DecodeError> {
    let total = frame_len(buf)?;
    if buf.len() < total {
        return Err(DecodeError::Incomplete { needed: total });
    }
    let header = peek_header(buf);
    let body = total - TRAILER_LEN;
    let received = u32_at(buf, body);
    let computed = crc32fast::hash(&buf[..body]);
    if received != computed {
        return Err(DecodeError::BadCrc { computed, received });
    }
    Ok((
        FrameRef {
            header,
            payload: &buf[HEADER_LEN..body],
        },
        total,
    ))
}

fn utf8(b: &[u8], t: MsgType) -> Result<&str, DecodeError> {
    std::str::from_utf8(b).map_err(|_| DecodeError::BadPayload {
        msg_type: t,
        reason: "string is not UTF-8",
    })
}

pub(crate) fn need(p: &[u8], n: usize, t: MsgType) -> Result<(), DecodeError> {
    if p.len() < n {
        Err(DecodeError::BadPayload {
            msg_type: t,
            reason: "payload shorter than its type requires",
        })
    } else {
        Ok(())
    }
}

impl<'a> FrameRef<'a> {
    /// The message type, if this build knows it.
    pub fn msg_type(&self) -> Option<MsgType> {
        MsgType::from_code(self.header.msg_type)
    }

    /// Decodes the payload by type.
    pub fn message(&self) -> Result<Message<'a>, DecodeError> {
        let p = self.payload;
        let Some(t) = self.msg_type() else {
            return Ok(Message::Unknown(self.header.msg_type));
        };
        let ts = match self.header.exchange_ts_ns {
            0 => None,
            v => Some(v),
        };
        Ok(match t {
            MsgType::InstrumentDef => {
                need(p, 8, t)?;
                let vl = u16_at(p, 0) as usize;
                let sl = u16_at(p, 2) as usize;
                need(p, 8 + vl + sl, t)?;
                Message::InstrumentDef {
                    venue: utf8(&p[8..8 + vl], t)?,
                    symbol: utf8(&p[8 + vl..8 + vl + sl], t)?,
                    price_exponent: p[4] as i8,
                }
            }
            MsgType::Trade => {
                need(p, 32, t)?;
                let id = u64_at(p, 16);
                Message::Trade(Trade {
                    price: i64_at(p, 0),
                    size: i64_at(p, 8),
                    trade_id: (id != 0).then_some(id),
                    side: Side::from_code(p[24]),
                    exchange_ts_ns: ts,
                })
            }
            MsgType::Quote => {
                need(p, 32, t)?;
                Message::Quote(Quote {
                    bid_price: i64_at(p, 0),
                    bid_size: i64_at(p, 8),
                    ask_price: i64_at(p, 16),
                    ask_size: i64_at(p, 24),
                    exchange_ts_ns: ts,
                })
            }
            MsgType::Status => {
                need(p, 16, t)?;
                let code = StatusCode::from_code(u16_at(p, 0)).ok_or(DecodeError::BadPayload {
                    msg_type: t,
                    reason: "unknown status code",
                })?;
                let vl = u16_at(p, 2) as usize;
                let dl = u16_at(p, 4) as usize;
                need(p, 16 + vl + dl, t)?;
                Message::Status {
                    venue: utf8(&p[16..16 + vl], t)?,
                    status: Status {
                        code,
                        count: u64_at(p, 8),
                        detail: utf8(&p[16 + vl..16 + vl + dl], t)?,
                    },
                }
            }
            MsgType::Heartbeat => Message::Heartbeat,
            MsgType::Bar => {
                need(p, BAR_PAYLOAD_LEN, t)?;
                let mut v = [0u8; 16];
                v.copy_from_slice(&p[48..64]);
                Message::Bar(BarFrame {
                    interval_ns: u64_at(p, 0),
                    start_ns: u64_at(p, 8),
                    open: i64_at(p, 16),
                    high: i64_at(p, 24),
                    low: i64_at(p, 32),
                    close: i64_at(p, 40),
                    volume: i128::from_le_bytes(v),
                    vwap: i64_at(p, 64),
                    trade_count: u64_at(p, 72),
                    first_trade_ns: u64_at(p, 80),
                    last_trade_ns: u64_at(p, 88),
                })
            }
            MsgType::Mark => derivatives::decode_mark(p, ts)?,
            MsgType::Liquidation => derivatives::decode_liquidation(p, ts)?,
            MsgType::OpenInterest => derivatives::decode_open_interest(p, ts)?,
            MsgType::BookSnapshot | MsgType::BookDelta => {
                need(p, 16, t)?;
                let nb = u32_at(p, 8) as usize;
                let na = u32_at(p, 12) as usize;
                let levels = &p[16..];
                if levels.len() != (nb + na) * 16 {
                    return Err(DecodeError::BadPayload {
                        msg_type: t,
                        reason: "level counts do not match the payload length",
                    });
                }
                Message::Book(BookFrame {
                    venue_sequence: u64_at(p, 0),
                    bid_count: nb,
                    levels,
                })
            }
        })
    }
}

/// The market event a decoded frame carries, as a parser emitted it (a book's levels copied
/// into `bids` and `asks`; 0 read as absent): what `tail --json` and the NATS bridge render.
/// `None` for frames that carry no event (bars, definitions, heartbeats, unknown types).
pub fn event_of<'b>(
    h: &Header,
    m: Message<'b>,
    bids: &'b mut Vec<Level>,
    asks: &'b mut Vec<Level>,
) -> Option<Event<'b>> {
    Some(match m {
        Message::Trade(t) => Event::Trade(t),
        Message::Quote(q) => Event::Quote(q),
        Message::Status { status, .. } => Event::Status(status),
        Message::Mark { mark, .. } => Event::Mark(mark),
        Message::Liquidation { liquidation, .. } => Event::Liquidation(liquidation),
        Message::OpenInterest { open_interest, .. } => Event::OpenInterest(open_interest),
        Message::Book(b) => {
            bids.clear();
            bids.extend(b.bids());
            asks.clear();
            asks.extend(b.asks());
            Event::Book(BookUpdate {
                snapshot: h.flags & flags::SNAPSHOT != 0,
                bids,
                asks,
                venue_sequence: (b.venue_sequence != 0).then_some(b.venue_sequence),
                exchange_ts_ns: (h.exchange_ts_ns != 0).then_some(h.exchange_ts_ns),
                may_be_bad: h.flags & flags::BOOK_MAY_BE_BAD != 0,
            })
        }
        Message::Bar(_)
        | Message::InstrumentDef { .. }
        | Message::Heartbeat
        | Message::Unknown(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::fixed::ABSENT;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn meta() -> Meta {
        Meta {
            instrument_id: 0xa4f6_c29c,
            sequence: 7,
            recv_ts_ns: 1_723_161_254_087_896_568,
            flags: 0,
        }
    }

    /// Golden vectors: these exact bytes are printed in docs/PROTOCOL.md. If this test fails,
    /// either the encoder or the document is wrong, and a client written from the document breaks.
    #[test]
    fn golden_trade_frame() {
        let mut buf = FrameBuf::new();
        encode_trade(
            &mut buf,
            &meta(),
            &Trade {
                price: 268_380_000_000,
                size: 200_000,
                side: Side::Sell,
                trade_id: Some(1_520_538_925),
                exchange_ts_ns: Some(1_723_161_255_611_000_000),
            },
        );
        assert_eq!(buf.len(), 76);
        assert_eq!(
            hex(&buf),
            concat!(
                "4d44524c01020000200000009cc2f6a4", // magic, v1, Trade, flags 0, len 32, id
                "0700000000000000",                 // sequence 7
                "c0e4684308e6e917",                 // exchange_ts_ns
                "f82da0e807e6e917",                 // recv_ts_ns
                "00cfb17c3e000000",                 // price 2683.8
                "400d030000000000",                 // size 0.002
                "2d95a15a00000000",                 // trade id 1520538925
                "0200000000000000",                 // side sell, 7 reserved
                "dde8e06a",                         // crc32
            )
        );
        let (f, n) = decode_frame(&buf).unwrap();
        assert_eq!(n, 76);
        assert_eq!(f.header.sequence, 7);
    }

    /// Golden vector 10.8 of docs/PROTOCOL.md (computed independently with Python's struct and
    /// zlib.crc32).
    #[test]
    fn golden_bar_frame() {
        let mut buf = FrameBuf::new();
        let bar = BarFrame {
            interval_ns: 60_000_000_000,
            start_ns: 1_723_161_240_000_000_000,
            open: 268_380_000_000,
            high: 268_400_000_000,
            low: 268_350_000_000,
            close: 268_390_000_000,
            volume: 1_234_500_000,
            vwap: 268_381_234_568,
            trade_count: 57,
            first_trade_ns: 1_723_161_240_123_000_000,
            last_trade_ns: 1_723_161_299_876_000_000,
        };
        let m = Meta {
            recv_ts_ns: 1_723_161_300_001_000_000,
            ..meta()
        };
        encode_bar(&mut buf, &m, &bar);
        assert_eq!(
            hex(&buf),
            concat!(
                "4d44524c01080000600000009cc2f6a4", // magic, v1, type 8, flags 0, len 96, id
                "0700000000000000",                 // sequence 7 (the instrument's latest)
                "0000000000000000",                 // exchange_ts_ns 0
                "408a429912e6e917",                 // recv_ts_ns: when the bar closed
                "005847f80d000000",                 // interval 60 s
                "00f0eba004e6e917",                 // start 2024-08-08T23:54:00Z
                "00cfb17c3e000000",                 // open 2683.8
                "00fce27d3e000000",                 // high 2684
                "800be87a3e000000",                 // low 2683.5
                "80654a7d3e000000",                 // close 2683.9
                "a0f99449000000000000000000000000", // volume 12.345 (i128)
                "88a5c47c3e000000",                 // vwap 2683.81234568
                "3900000000000000",                 // 57 trades
                "c0c440a804e6e917",                 // first trade
                "0031cf9112e6e917",                 // last trade
                "edc99b06",                         // crc32
            )
        );
        let (f, n) = decode_frame(&buf).unwrap();
        assert_eq!(n, 140);
        assert_eq!(f.message().unwrap(), Message::Bar(bar));
    }

    #[test]
    fn round_trips_every_message() {
        let mut buf = FrameBuf::new();
        encode_instrument_def(&mut buf, &meta(), "binance", "ETHUSDT");
        let (f, _) = decode_frame(&buf).unwrap();
        assert_eq!(
            f.message().unwrap(),
            Message::InstrumentDef {
                venue: "binance",
                symbol: "ETHUSDT",
                price_exponent: -8
            }
        );

        let q = Quote {
            bid_price: 1,
            bid_size: 2,
            ask_price: ABSENT,
            ask_size: ABSENT,
            exchange_ts_ns: None,
        };
        encode_quote(&mut buf, &meta(), &q);
        assert_eq!(
            decode_frame(&buf).unwrap().0.message().unwrap(),
            Message::Quote(q)
        );

        let s = Status {
            code: StatusCode::Dropped,
            count: 12,
            detail: "queue full",
        };
        encode_status(&mut buf, &meta(), "binance", &s);
        assert_eq!(
            decode_frame(&buf).unwrap().0.message().unwrap(),
            Message::Status {
                venue: "binance",
                status: s
            }
        );

        encode_heartbeat(&mut buf, 5);
        let (f, _) = decode_frame(&buf).unwrap();
        assert_eq!(f.message().unwrap(), Message::Heartbeat);
        assert_eq!(f.header.recv_ts_ns, 5);

        let bids = [Level { price: 10, size: 1 }, Level { price: 9, size: 2 }];
        let asks = [Level { price: 11, size: 3 }];
        let b = BookUpdate {
            snapshot: true,
            bids: &bids,
            asks: &asks,
            venue_sequence: Some(99),
            exchange_ts_ns: Some(1),
            may_be_bad: false,
        };
        encode_book(&mut buf, &meta(), &b);
        let (f, _) = decode_frame(&buf).unwrap();
        assert_eq!(f.header.flags & flags::SNAPSHOT, flags::SNAPSHOT);
        let Message::Book(bf) = f.message().unwrap() else {
            panic!()
        };
        assert_eq!(bf.venue_sequence, 99);
        assert_eq!(bf.bids().collect::<Vec<_>>(), bids);
        assert_eq!(bf.asks().collect::<Vec<_>>(), asks);
    }

    #[test]
    fn decoder_rejects_bad_frames_with_typed_errors() {
        let mut buf = FrameBuf::new();
        encode_heartbeat(&mut buf, 1);
        let good = buf.to_vec();

        assert_eq!(
            decode_frame(&good[..10]),
            Err(DecodeError::Incomplete { needed: HEADER_LEN })
        );
        assert_eq!(
            decode_frame(&good[..HEADER_LEN]),
            Err(DecodeError::Incomplete { needed: 44 })
        );

        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(decode_frame(&bad), Err(DecodeError::BadMagic(*b"XDRL")));

        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(decode_frame(&bad), Err(DecodeError::UnsupportedVersion(2)));

        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_le_bytes());
        assert_eq!(
            decode_frame(&bad),
            Err(DecodeError::BadLength(MAX_PAYLOAD_LEN as u32 + 1))
        );

        let mut bad = good.clone();
        bad[33] ^= 0x40; // flip a bit in recv_ts
        assert!(matches!(
            decode_frame(&bad),
            Err(DecodeError::BadCrc { .. })
        ));

        // A well-framed, well-sealed trade whose payload is too short.
        let mut short = FrameBuf::new();
        put_header(&mut short, MsgType::Trade, &meta(), None);
        short.extend_from_slice(&[0u8; 8]);
        finish(&mut short);
        let (f, _) = decode_frame(&short).unwrap();
        assert!(matches!(
            f.message(),
            Err(DecodeError::BadPayload {
                msg_type: MsgType::Trade,
                ..
            })
        ));
    }

    #[test]
    fn unknown_types_are_skippable() {
        let mut buf = FrameBuf::new();
        encode_heartbeat(&mut buf, 1);
        buf[5] = 200;
        reseal(&mut buf);
        let (f, n) = decode_frame(&buf).unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(f.message().unwrap(), Message::Unknown(200));
    }

    #[test]
    fn add_flags_keeps_the_frame_valid() {
        let mut buf = FrameBuf::new();
        encode_heartbeat(&mut buf, 1);
        add_flags(&mut buf, flags::CACHED);
        let (f, _) = decode_frame(&buf).unwrap();
        assert_eq!(f.header.flags, flags::CACHED);
    }
}
