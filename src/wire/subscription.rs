//! Subscription requests (client → relay) and the filters they build (docs/PROTOCOL.md §6.5).
//!
//! A request is a frame in the ordinary format (header, payload, CRC) of type [`SUBSCRIBE`] or
//! [`UNSUBSCRIBE`], whose payload names a venue (empty: any), a symbol pattern (exact, or a glob
//! with `*` and `?`; empty: any) and a set of kinds (trade, quote, book, bar, status, mark,
//! liquidation, open_interest; none: all).
//! A connection's stream is the union of its subscriptions; with none it receives everything.
//! Pure code: parsing, encoding, matching; the acceptor reads requests, the consumer applies them.

use crate::wire::protocol::{self, DecodeError, FrameBuf, Meta, MsgType};

/// Request type: add a subscription.
pub const SUBSCRIBE: u8 = 64;
/// Request type: remove a subscription equal to the one given.
pub const UNSUBSCRIBE: u8 = 65;
/// Largest request payload the relay accepts, bytes.
pub const MAX_REQUEST_PAYLOAD: usize = 512;
/// Most subscriptions one connection may hold.
pub const MAX_FILTERS: usize = 64;

/// Kind bits of a subscription (payload byte 0).
pub mod kinds {
    /// Trade frames.
    pub const TRADE: u8 = 1 << 0;
    /// Quote frames.
    pub const QUOTE: u8 = 1 << 1;
    /// BookSnapshot and BookDelta frames.
    pub const BOOK: u8 = 1 << 2;
    /// Bar frames.
    pub const BAR: u8 = 1 << 3;
    /// Status frames (of the instrument, and feed-wide ones of the venue).
    pub const STATUS: u8 = 1 << 4;
    /// Mark frames (mark price and funding of derivatives).
    pub const MARK: u8 = 1 << 5;
    /// Liquidation frames.
    pub const LIQUIDATION: u8 = 1 << 6;
    /// OpenInterest frames.
    pub const OPEN_INTEREST: u8 = 1 << 7;
    /// Every kind (all eight bits are defined).
    pub const ALL: u8 = TRADE | QUOTE | BOOK | BAR | STATUS | MARK | LIQUIDATION | OPEN_INTEREST;
}

/// The kind bit of a message type; `None` for frames every subscriber gets (definitions,
/// heartbeats, unknown types).
pub fn kind_of(msg_type: u8) -> Option<u8> {
    Some(match MsgType::from_code(msg_type)? {
        MsgType::Trade => kinds::TRADE,
        MsgType::Quote => kinds::QUOTE,
        MsgType::BookSnapshot | MsgType::BookDelta => kinds::BOOK,
        MsgType::Bar => kinds::BAR,
        MsgType::Status => kinds::STATUS,
        MsgType::Mark => kinds::MARK,
        MsgType::Liquidation => kinds::LIQUIDATION,
        MsgType::OpenInterest => kinds::OPEN_INTEREST,
        MsgType::InstrumentDef | MsgType::Heartbeat => return None,
    })
}

/// The name of a kind bit (`trade`, …), and back.
pub const KIND_NAMES: [(u8, &str); 8] = [
    (kinds::TRADE, "trade"),
    (kinds::QUOTE, "quote"),
    (kinds::BOOK, "book"),
    (kinds::BAR, "bar"),
    (kinds::STATUS, "status"),
    (kinds::MARK, "mark"),
    (kinds::LIQUIDATION, "liquidation"),
    (kinds::OPEN_INTEREST, "open_interest"),
];

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Venue name; empty = every venue.
    pub venue: String,
    /// Symbol, exact or glob (`*`, `?`); empty = every symbol.
    pub symbol: String,
    /// [`kinds`] bits; never 0 (a request with 0 means all).
    pub kinds: u8,
    /// Lossy delivery: when this connection falls `max_pending_bytes` behind, the relay skips
    /// what it has not written (reporting the count in a `dropped` status) instead of closing it.
    /// A connection is lossy when any of its subscriptions is.
    pub lossy: bool,
}

impl Filter {
    /// Everything.
    pub fn all() -> Filter {
        Filter {
            venue: String::new(),
            symbol: String::new(),
            kinds: kinds::ALL,
            lossy: false,
        }
    }

    /// True when the instrument `venue:symbol` is selected (by any kind).
    pub fn matches(&self, venue: &str, symbol: &str) -> bool {
        (self.venue.is_empty() || self.venue == venue)
            && (self.symbol.is_empty() || glob(self.symbol.as_bytes(), symbol.as_bytes()))
    }

    /// True when feed-wide status frames of `venue` are selected.
    pub fn wants_feed_status(&self, venue: &str) -> bool {
        self.kinds & kinds::STATUS != 0 && (self.venue.is_empty() || self.venue == venue)
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = if self.venue.is_empty() {
            "*"
        } else {
            &self.venue
        };
        let s = if self.symbol.is_empty() {
            "*"
        } else {
            &self.symbol
        };
        let k: Vec<&str> = KIND_NAMES
            .iter()
            .filter(|(b, _)| self.kinds & b != 0)
            .map(|(_, n)| *n)
            .collect();
        write!(f, "{v}:{s} [{}]", k.join(","))?;
        if self.lossy {
            f.write_str(" lossy")?;
        }
        Ok(())
    }
}

/// Glob match: `*` any run (also empty), `?` one character, anything else itself. Iterative
/// with one backtrack point: linear in practice, never recursive.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Add `Filter`.
    Subscribe(Filter),
    /// Remove a subscription equal to `Filter`.
    Unsubscribe(Filter),
}

/// Why a request was refused (the connection is then closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a valid frame.
    #[error("malformed request frame: {0}")]
    Frame(DecodeError),
    /// A frame type that is not a request.
    #[error("frame type {0} is not a request (64 subscribe, 65 unsubscribe)")]
    NotARequest(u8),
    /// Payload over [`MAX_REQUEST_PAYLOAD`].
    #[error("request payload of {0} bytes is over the limit of {MAX_REQUEST_PAYLOAD}")]
    Oversized(usize),
    /// Payload shorter than its lengths say, bad UTF-8, unknown flag bits.
    #[error("malformed request payload: {0}")]
    Payload(&'static str),
}

// The cause is in the message, not a `source()`, so its text is printed once.
impl From<DecodeError> for RequestError {
    fn from(e: DecodeError) -> Self {
        RequestError::Frame(e)
    }
}

/// Request flag bit (payload byte 1): lossy delivery.
pub const FLAG_LOSSY: u8 = 1;

/// Request payload: kinds (u8), flags (u8), venue_len (u16), symbol_len (u16), reserved
/// (u16), venue, symbol.
const FIXED: usize = 8;

/// Parses one request frame (the whole frame: header, payload, CRC).
pub fn parse_request(frame: &[u8]) -> Result<Request, RequestError> {
    if frame.len() >= protocol::HEADER_LEN {
        let len = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]) as usize;
        if len > MAX_REQUEST_PAYLOAD {
            return Err(RequestError::Oversized(len));
        }
    }
    let (f, _) = protocol::decode_frame(frame)?;
    let t = f.header.msg_type;
    if t != SUBSCRIBE && t != UNSUBSCRIBE {
        return Err(RequestError::NotARequest(t));
    }
    let p = f.payload;
    if p.len() < FIXED {
        return Err(RequestError::Payload("shorter than 8 bytes"));
    }
    // Every bit of the kinds byte is defined (relays before the derivatives kinds refuse bits
    // 5-7 as unknown).
    let kinds = p[0];
    if p[1] & !FLAG_LOSSY != 0 {
        return Err(RequestError::Payload("unknown flag bits"));
    }
    let vl = usize::from(u16::from_le_bytes([p[2], p[3]]));
    let sl = usize::from(u16::from_le_bytes([p[4], p[5]]));
    if p.len() < FIXED + vl + sl {
        return Err(RequestError::Payload(
            "venue/symbol lengths past the payload",
        ));
    }
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| RequestError::Payload("venue or symbol is not UTF-8"))
    };
    let filter = Filter {
        venue: text(&p[FIXED..FIXED + vl])?,
        symbol: text(&p[FIXED + vl..FIXED + vl + sl])?,
        kinds: if kinds == 0 { kinds::ALL } else { kinds },
        lossy: p[1] & FLAG_LOSSY != 0,
    };
    Ok(if t == SUBSCRIBE {
        Request::Subscribe(filter)
    } else {
        Request::Unsubscribe(filter)
    })
}

/// Encodes a request frame (what a client sends).
pub fn encode_request(buf: &mut FrameBuf, subscribe: bool, f: &Filter) {
    let mut payload = Vec::with_capacity(FIXED + f.venue.len() + f.symbol.len());
    payload.push(f.kinds);
    payload.push(if f.lossy { FLAG_LOSSY } else { 0 });
    payload.extend_from_slice(&(f.venue.len() as u16).to_le_bytes());
    payload.extend_from_slice(&(f.symbol.len() as u16).to_le_bytes());
    payload.extend_from_slice(&[0, 0]);
    payload.extend_from_slice(f.venue.as_bytes());
    payload.extend_from_slice(f.symbol.as_bytes());
    let t = if subscribe { SUBSCRIBE } else { UNSUBSCRIBE };
    protocol::encode_raw(buf, t, &Meta::default(), &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden vector 10.9 of docs/PROTOCOL.md (computed independently with Python's struct and
    /// zlib.crc32).
    #[test]
    fn golden_subscribe_request() {
        let mut buf = FrameBuf::new();
        encode_request(
            &mut buf,
            true,
            &Filter {
                venue: "binance".into(),
                symbol: "ETH*".into(),
                kinds: kinds::TRADE | kinds::BAR,
                lossy: false,
            },
        );
        let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "4d44524c01400000130000000000000000000000000000000000000000000000",
                "0000000000000000090007000400000062696e616e63654554482a41cbdb1e"
            )
        );
    }

    #[test]
    fn glob_semantics() {
        for (p, t, want) in [
            ("ETHUSDT", "ETHUSDT", true),
            ("ETHUSDT", "ETHUSD", false),
            ("ETH*", "ETHUSDT", true),
            ("ETH*", "ETH", true),
            ("*USD", "XBT/USD", true),
            ("*USD", "XBT/USDT", false),
            ("?BT/*", "XBT/EUR", true),
            ("?BT/*", "BT/EUR", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("**", "x", true),
        ] {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn filter_matching() {
        let f = Filter {
            venue: "kraken_v1".into(),
            symbol: "*/USD".into(),
            kinds: kinds::TRADE,
            lossy: false,
        };
        assert!(f.matches("kraken_v1", "XMR/USD"));
        assert!(!f.matches("kraken_v1", "XMR/EUR"));
        assert!(!f.matches("binance", "XMR/USD"));
        assert!(!f.wants_feed_status("kraken_v1"));
        assert!(Filter::all().matches("any", "thing"));
        assert!(Filter::all().wants_feed_status("binance"));
    }

    #[test]
    fn requests_round_trip_and_bad_ones_are_typed_errors() {
        let f = Filter {
            venue: "binance".into(),
            symbol: "ETH*".into(),
            kinds: kinds::TRADE | kinds::BAR,
            lossy: false,
        };
        let mut buf = FrameBuf::new();
        encode_request(&mut buf, true, &f);
        assert_eq!(parse_request(&buf), Ok(Request::Subscribe(f.clone())));
        encode_request(&mut buf, false, &f);
        assert_eq!(parse_request(&buf), Ok(Request::Unsubscribe(f)));

        // kinds 0 means all.
        let all = Filter {
            kinds: 0,
            ..Filter::all()
        };
        encode_request(&mut buf, true, &all);
        assert_eq!(parse_request(&buf), Ok(Request::Subscribe(Filter::all())));

        // Not a request type.
        protocol::encode_heartbeat(&mut buf, 1);
        assert_eq!(parse_request(&buf), Err(RequestError::NotARequest(5)));
        // Oversized.
        protocol::encode_raw(&mut buf, SUBSCRIBE, &Meta::default(), &[0u8; 600]);
        assert_eq!(parse_request(&buf), Err(RequestError::Oversized(600)));
        // Lengths past the payload.
        protocol::encode_raw(
            &mut buf,
            SUBSCRIBE,
            &Meta::default(),
            &[1, 0, 9, 0, 0, 0, 0, 0, b'x'],
        );
        assert!(matches!(parse_request(&buf), Err(RequestError::Payload(_))));
        // Bit 7 is open interest.
        protocol::encode_raw(
            &mut buf,
            SUBSCRIBE,
            &Meta::default(),
            &[0x80, 0, 0, 0, 0, 0, 0, 0],
        );
        let Ok(Request::Subscribe(f)) = parse_request(&buf) else {
            panic!("bit 7 refused")
        };
        assert_eq!(f.to_string(), "*:* [open_interest]");
        // Unknown flag bits.
        protocol::encode_raw(
            &mut buf,
            SUBSCRIBE,
            &Meta::default(),
            &[0x01, 0x02, 0, 0, 0, 0, 0, 0],
        );
        assert!(matches!(parse_request(&buf), Err(RequestError::Payload(_))));
        // Bad CRC.
        encode_request(&mut buf, true, &Filter::all());
        let n = buf.len();
        buf[n - 1] ^= 1;
        assert!(matches!(parse_request(&buf), Err(RequestError::Frame(_))));
    }
}
