//! Normalized market events: what every venue parser produces and every frame carries.
//!
//! Prices and sizes are fixed-point `i64` (see [`crate::market::fixed`]); timestamps are ns since the
//! Unix epoch. Events borrow (book levels, status detail) so a parser can hand them to its sink
//! without allocating; whoever keeps one encodes it into a frame (the `wire` stage's protocol).
//!
//! Pure data; any thread.

use crate::market::fixed::ABSENT;

/// The aggressor (taker) side of a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    /// The venue does not say.
    Unknown = 0,
    /// The taker bought (lifted the offer).
    Buy = 1,
    /// The taker sold (hit the bid).
    Sell = 2,
}

impl Side {
    /// Wire code → side; unknown codes read as [`Side::Unknown`].
    pub fn from_code(c: u8) -> Side {
        match c {
            1 => Side::Buy,
            2 => Side::Sell,
            _ => Side::Unknown,
        }
    }

    /// `"buy"`, `"sell"` or `"unknown"`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Unknown => "unknown",
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// The other side (a maker's side → the aggressor's).
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
            Side::Unknown => Side::Unknown,
        }
    }
}

/// An optional venue id, time or sequence the way the binary protocol carries it, where 0 means
/// absent: a venue that sends 0 (`"timestamp":0`, trade id 0) and a venue that sends nothing
/// reach subscribers alike, so every other rendering (`decode`'s JSON, exports) treats 0 as
/// absent too and `decode` prints what `tail --json` prints.
pub fn present(v: Option<u64>) -> Option<u64> {
    v.filter(|&v| v != 0)
}

/// One execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trade {
    /// Price, fixed-point 1e-8; always > 0 for a real trade.
    pub price: i64,
    /// Quantity in base units, fixed-point 1e-8.
    pub size: i64,
    /// Aggressor side.
    pub side: Side,
    /// Venue trade id when the venue gives a numeric one.
    pub trade_id: Option<u64>,
    /// Venue's timestamp of the trade, ns since epoch.
    pub exchange_ts_ns: Option<u64>,
}

/// Best bid and offer. A missing side has price and size [`ABSENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// Best bid price (fixed-point) or [`ABSENT`].
    pub bid_price: i64,
    /// Size at the best bid or [`ABSENT`].
    pub bid_size: i64,
    /// Best ask price or [`ABSENT`].
    pub ask_price: i64,
    /// Size at the best ask or [`ABSENT`].
    pub ask_size: i64,
    /// Venue's timestamp, when it sends one (Binance spot bookTicker does not).
    pub exchange_ts_ns: Option<u64>,
}

impl Quote {
    /// A quote with both sides absent.
    pub const EMPTY: Quote = Quote {
        bid_price: ABSENT,
        bid_size: ABSENT,
        ask_price: ABSENT,
        ask_size: ABSENT,
        exchange_ts_ns: None,
    };
}

/// Mark price, index price and funding of a derivative instrument (Binance futures
/// `markPriceUpdate`, OKX `mark-price` / `funding-rate`, Bybit linear/inverse `tickers`). Any
/// field a venue's message does not carry is [`ABSENT`] (prices, rate) or `None` (times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Mark price, fixed-point 1e-8, or [`ABSENT`].
    pub mark_price: i64,
    /// Index price, fixed-point 1e-8, or [`ABSENT`].
    pub index_price: i64,
    /// Estimated settle price (Binance `P`), fixed-point 1e-8, or [`ABSENT`].
    pub settle_price: i64,
    /// Funding rate per funding interval, fixed-point 1e-18 ([`crate::market::fixed::parse_rate`]),
    /// or [`ABSENT`] (delivery futures have none).
    pub funding_rate: i64,
    /// When the next funding happens, ns since epoch.
    pub next_funding_ns: Option<u64>,
    /// Venue's timestamp of the message, ns since epoch.
    pub exchange_ts_ns: Option<u64>,
}

/// Status of a liquidation order as the venue reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LiquidationStatus {
    /// The venue does not say, or says something else.
    Unknown = 0,
    /// Accepted, nothing filled yet.
    New = 1,
    /// Partly filled.
    PartiallyFilled = 2,
    /// Completely filled.
    Filled = 3,
    /// Cancelled or expired with the rest unfilled.
    Canceled = 4,
}

impl LiquidationStatus {
    /// Every status, in wire order.
    pub const ALL: [LiquidationStatus; 5] = [
        LiquidationStatus::Unknown,
        LiquidationStatus::New,
        LiquidationStatus::PartiallyFilled,
        LiquidationStatus::Filled,
        LiquidationStatus::Canceled,
    ];

    /// Wire code → status; unknown codes read as [`LiquidationStatus::Unknown`].
    pub fn from_code(c: u8) -> LiquidationStatus {
        LiquidationStatus::ALL
            .into_iter()
            .find(|s| *s as u8 == c)
            .unwrap_or(LiquidationStatus::Unknown)
    }

    /// Name used in JSON and CSV (`"partially_filled"`).
    pub fn name(self) -> &'static str {
        match self {
            LiquidationStatus::Unknown => "unknown",
            LiquidationStatus::New => "new",
            LiquidationStatus::PartiallyFilled => "partially_filled",
            LiquidationStatus::Filled => "filled",
            LiquidationStatus::Canceled => "canceled",
        }
    }
}

/// A liquidation (forced) order (Binance futures `forceOrder`, OKX `liquidation-orders`, Bybit
/// `allLiquidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liquidation {
    /// Side of the liquidation *order*: [`Side::Sell`] means a long position was closed.
    pub side: Side,
    /// Order price, fixed-point 1e-8.
    pub price: i64,
    /// Average fill price, fixed-point 1e-8, or [`ABSENT`].
    pub avg_price: i64,
    /// Order quantity as the venue sends it (base units, or contracts on COIN-M), fixed-point 1e-8.
    pub size: i64,
    /// Quantity filled so far, fixed-point 1e-8, or [`ABSENT`].
    pub filled_size: i64,
    /// Order status.
    pub status: LiquidationStatus,
    /// Venue's timestamp (trade time), ns since epoch.
    pub exchange_ts_ns: Option<u64>,
}

/// Open interest of a derivative instrument (REST poll or a venue stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenInterest {
    /// Open interest as the venue sends it (base units, or contracts on COIN-M), fixed-point 1e-8.
    pub open_interest: i64,
    /// Its value in the quote currency, fixed-point 1e-8, or [`ABSENT`].
    pub value: i64,
    /// Venue's timestamp, ns since epoch.
    pub exchange_ts_ns: Option<u64>,
}

/// One price level: size 0 in a delta removes the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Level {
    /// Price, fixed-point.
    pub price: i64,
    /// Total size at the price, fixed-point; 0 = remove.
    pub size: i64,
}

/// A book snapshot (replace everything) or delta (apply level by level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookUpdate<'a> {
    /// True: the levels replace the whole book. False: apply as changes.
    pub snapshot: bool,
    /// Bid levels (any order in a delta; best first in a snapshot).
    pub bids: &'a [Level],
    /// Ask levels.
    pub asks: &'a [Level],
    /// Venue sequence (Binance final update id, Coinbase sequence) when it has one.
    pub venue_sequence: Option<u64>,
    /// Venue's timestamp.
    pub exchange_ts_ns: Option<u64>,
    /// True when a gap went unrecovered and the book may be wrong until the next snapshot.
    pub may_be_bad: bool,
}

/// What a status event reports. The wire code is the discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum StatusCode {
    /// Transport connected.
    Connected = 1,
    /// Venue acknowledged the subscription.
    Subscribed = 2,
    /// Connection lost or closed.
    Disconnected = 3,
    /// About to reconnect (detail: attempt and delay).
    Reconnecting = 4,
    /// A sequence gap was seen (count: missing messages when known).
    Gap = 5,
    /// No data for longer than the feed's stale limit.
    Stale = 6,
    /// The instrument's book is being rebuilt from a fresh snapshot.
    Resync = 7,
    /// A venue checksum did not match the local book.
    ChecksumMismatch = 8,
    /// The book crossed (best bid ≥ best ask) after an update.
    CrossedBook = 9,
    /// Frames were dropped before reaching subscribers (count: how many).
    Dropped = 10,
    /// Records were not persisted (CSV writer behind or failing, raw recorder behind); count:
    /// how many since the last such report. Relay-wide (instrument 0). Subscribers lost nothing.
    NotPersisted = 11,
    /// A subscription request was applied (to this connection only); count: subscriptions the
    /// connection now holds; detail: the request.
    RequestOk = 12,
    /// A subscription request was refused (to this connection only); detail: why. A malformed
    /// or oversized request is followed by the relay closing the connection.
    RequestError = 13,
    /// This connection is being closed because it read too slowly (to this connection only);
    /// count: its unread bytes.
    TooSlow = 14,
}

impl StatusCode {
    /// Every code, in wire order.
    pub const ALL: [StatusCode; 14] = [
        StatusCode::Connected,
        StatusCode::Subscribed,
        StatusCode::Disconnected,
        StatusCode::Reconnecting,
        StatusCode::Gap,
        StatusCode::Stale,
        StatusCode::Resync,
        StatusCode::ChecksumMismatch,
        StatusCode::CrossedBook,
        StatusCode::Dropped,
        StatusCode::NotPersisted,
        StatusCode::RequestOk,
        StatusCode::RequestError,
        StatusCode::TooSlow,
    ];

    /// Wire code → status, `None` for codes this build does not know.
    pub fn from_code(c: u16) -> Option<StatusCode> {
        StatusCode::ALL.into_iter().find(|s| *s as u16 == c)
    }

    /// Name used in JSON (`"checksum_mismatch"`).
    pub fn name(self) -> &'static str {
        match self {
            StatusCode::Connected => "connected",
            StatusCode::Subscribed => "subscribed",
            StatusCode::Disconnected => "disconnected",
            StatusCode::Reconnecting => "reconnecting",
            StatusCode::Gap => "gap",
            StatusCode::Stale => "stale",
            StatusCode::Resync => "resync",
            StatusCode::ChecksumMismatch => "checksum_mismatch",
            StatusCode::CrossedBook => "crossed_book",
            StatusCode::Dropped => "dropped",
            StatusCode::NotPersisted => "not_persisted",
            StatusCode::RequestOk => "request_ok",
            StatusCode::RequestError => "request_error",
            StatusCode::TooSlow => "too_slow",
        }
    }
}

/// An in-band status report about a feed or one instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status<'a> {
    /// What happened.
    pub code: StatusCode,
    /// A count that goes with it (messages dropped, sequence numbers missed, attempt number).
    pub count: u64,
    /// Human-readable detail, UTF-8.
    pub detail: &'a str,
}

/// Anything a venue parser can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// An execution.
    Trade(Trade),
    /// Best bid/offer.
    Quote(Quote),
    /// L2 book snapshot or delta.
    Book(BookUpdate<'a>),
    /// Feed or instrument status.
    Status(Status<'a>),
    /// Mark price, index price and funding of a derivative.
    Mark(Mark),
    /// A liquidation (forced) order.
    Liquidation(Liquidation),
    /// Open interest of a derivative.
    OpenInterest(OpenInterest),
}
