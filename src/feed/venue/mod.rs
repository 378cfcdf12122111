//! Venue adapters: one module per exchange protocol, each with the same shape — the subscribe
//! request, the parser from raw venue messages to normalized [`Event`]s, and the venue's rules.
//!
//! Parsers run on the collector thread of their feed (and in `mdrelay decode`, which runs the very
//! same code). They never block, never allocate per message once warm, and never panic on bad
//! input: every malformed message is a typed [`ParseError`] that the caller counts.
//!
//! Files, one parser (or shared part) each:
//! - `mod.rs`: the contract every venue provides ([`VenueParser`], [`Parsed`], [`ParseError`],
//!   [`Sink`], [`Subscription`]), [`parser_for`] and [`channels`].
//! - `binance.rs`: Binance spot combined streams: `trade`, `aggTrade`, `bookTicker`,
//!   `depthUpdate` diffs and the REST depth snapshot.
//! - `binance_fast.rs`: the Binance parser's fast path for `trade`, `aggTrade`, `bookTicker` and
//!   `depthUpdate`; what it does not fully understand goes to the general (serde) path, counted.
//! - `scan.rs`: the borrowed, allocation-free JSON scanner fast paths are written with.
//! - `binance_depth.rs`: Binance local depth books, kept in step with diffs and REST snapshots
//!   (Binance's "manage a local order book" procedure: buffering, bridging, gaps, resyncs), by
//!   the spot or the futures (`pu`) rule.
//! - `binance_books.rs`: one depth book state machine per symbol of a Binance feed.
//! - `binance_futures.rs`: Binance USD-M and COIN-M futures streams: `trade` (only `X: MARKET`
//!   relayed), `aggTrade`, `bookTicker`, diff depth with the futures sync rule, `markPrice`,
//!   `forceOrder`, REST snapshots from `/fapi` or `/dapi`.
//! - `binance_de.rs`: Binance messages as serde reads them (spot and futures share the
//!   structs), and the futures combined-stream envelope.
//! - `coinbase.rs`: Coinbase Exchange feed: `ticker`, `match` / `last_match`, level2 `snapshot` /
//!   `l2update`, control messages; sequencing, trade-id gaps, crossed books.
//! - `kraken_v1.rs`: Kraken WebSocket v1 arrays: `trade`, `spread`, `ticker`, `book-N`.
//! - `kraken_v2.rs`: Kraken WebSocket v2 objects: `trade`, `ticker`, `book`, `instrument`.
//! - `kraken_book.rs`: the checksummed local book both Kraken versions keep per instrument, and
//!   Kraken's CRC32 book checksum.
//! - `okx.rs`: OKX v5 public channels: `trades`, `tickers`, `bbo-tbt`, `books` / `books5` /
//!   `books-l2-tbt` / `books50-l2-tbt`; resubscribes one instrument after a checksum mismatch or a
//!   seqId break.
//! - `okx_book.rs`: the OKX local book: level texts, the CRC32 checksum of the top 25 levels and
//!   the `seqId` / `prevSeqId` chain.
//! - `bybit.rs`: Bybit v5 public `publicTrade`, `orderbook.N` (snapshot + deltas, `u` chain, resync
//!   of one symbol on a gap), `tickers` (snapshot + delta merging), `allLiquidation`.
//! - `okx_derivs.rs`: OKX `mark-price`, `funding-rate`, `open-interest`, `liquidation-orders`.
//! - `gemini.rs`: Gemini market data v2 `l2`: the first `l2_updates` of a symbol is its whole book
//!   (its past trades are not emitted), later ones change levels; live `trade` messages.
//! - `hyperliquid.rs`: Hyperliquid `l2Book` (each message a whole book), `trades`, `bbo`.
//! - `each.rs`: serde helpers of the four parsers above: a closure over every array element
//!   without collecting, `[price, size, …]` rows, millisecond timestamps.
//! - `de.rs`: serde plumbing shared by the parsers: the typed-error side channel and the
//!   level-array reader.
//! - `testutil.rs` (tests only): helpers shared by the parsers' unit tests.

pub mod binance;
pub mod binance_books;
mod binance_de;
pub mod binance_depth;
mod binance_fast;
pub mod binance_futures;
pub mod bybit;
pub mod coinbase;
mod de;
mod each;
pub mod gemini;
pub mod hyperliquid;
pub mod kraken_book;
pub mod kraken_v1;
pub mod kraken_v2;
pub mod okx;
pub mod okx_book;
pub mod okx_derivs;
mod scan;
#[cfg(test)]
pub(crate) mod testutil;

use crate::market::event::Event;
use crate::market::fixed::FixedError;
use crate::market::instrument::Venue;

/// What a successfully parsed message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Market data: zero or more events were handed to the sink.
    Data,
    /// A control message (subscription ack, heartbeat, system status) consumed quietly.
    Control,
    /// Well-formed market data deliberately not relayed (a Binance futures `trade` whose `X` is
    /// not `MARKET`: insurance-fund, ADL fills): counted (`mdrelay_feed_filtered_total`), no event.
    Filtered,
}

/// Why a raw message could not be turned into events.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not valid JSON, or not the shape the venue documents.
    #[error("malformed message: {0}")]
    Json(serde_json::Error),
    /// A decimal field that is not an exact fixed-point value (see [`crate::market::fixed`]).
    #[error("field `{field}`: {cause}")]
    Number {
        /// The venue's field name.
        field: &'static str,
        /// Why the number was refused.
        cause: FixedError,
    },
    /// Well-formed, but a message kind mdrelay does not normalize (e.g. Binance klines).
    #[error("unsupported message kind `{0}`")]
    Unsupported(String),
    /// Well-formed JSON with a value the venue's documentation rules out.
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

// The cause is in the message, not a `source()`, so its text is printed once.
impl From<serde_json::Error> for ParseError {
    fn from(e: serde_json::Error) -> Self {
        ParseError::Json(e)
    }
}

impl ParseError {
    /// True when the message was refused because a number did not fit the fixed-point range.
    pub fn is_out_of_range(&self) -> bool {
        matches!(
            self,
            ParseError::Number {
                cause: FixedError::OutOfRange | FixedError::Precision,
                ..
            }
        )
    }
}

/// Where a parser delivers events: the venue symbol (or `None` for feed-wide status) and the event.
pub type Sink<'s> = dyn FnMut(Option<&str>, &Event<'_>) + 's;

/// What a feed subscribes to: venue symbols exactly as the venue writes them (`ETHUSDT`,
/// `BTC-USD`, `XBT/EUR`), venue channel names, and the book depth where the venue takes one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Venue symbols.
    pub symbols: Vec<String>,
    /// Venue channel names (`trade`, `bookTicker`, `matches`, `book`, …).
    pub channels: Vec<String>,
    /// Book depth to request (Kraken `depth`), levels; 0 = the venue's default.
    pub book_depth: u32,
}

/// A venue's protocol adapter: subscribe requests out, normalized events in. One per feed
/// connection; it may keep state (channel ids, sequences, books for checksums).
pub trait VenueParser: Send {
    /// The venue this parser speaks.
    fn venue(&self) -> Venue;

    /// The text messages to send right after the WebSocket handshake, in order.
    fn subscribe_requests(&mut self, sub: &Subscription) -> Vec<String>;

    /// Messages the parser needs sent now (e.g. a resubscribe after a checksum mismatch).
    /// The collector calls this after every `parse`; the default has none.
    fn drain_outgoing(&mut self, out: &mut Vec<String>) {
        let _ = out;
    }

    /// An application-level keep-alive the venue requires: the text to send and how often
    /// (OKX `ping`, Bybit `{"op":"ping"}`, Hyperliquid `{"method":"ping"}`). The collector sends
    /// it every interval since the connection opened or the last one; the venue's answer is a
    /// [`Parsed::Control`] message. The default has none (the venue needs only WebSocket pings).
    fn app_ping(&self) -> Option<(&'static str, std::time::Duration)> {
        None
    }

    /// The URL of a REST book snapshot of `symbol` under the feed's REST base URL, for venues whose
    /// books start from one (Binance). `None`: the venue sends snapshots in-band.
    fn snapshot_url(&self, rest_base: &str, symbol: &str, depth: u32) -> Option<String> {
        let _ = (rest_base, symbol, depth);
        None
    }

    /// Symbols whose book needs a REST snapshot now. The collector fetches each one and answers
    /// with [`on_rest_snapshot`](Self::on_rest_snapshot) or
    /// [`on_snapshot_failed`](Self::on_snapshot_failed).
    fn drain_snapshot_requests(&mut self, out: &mut Vec<String>) {
        let _ = out;
    }

    /// The body of a REST snapshot of `symbol` fetched on this parser's request.
    fn on_rest_snapshot(
        &mut self,
        symbol: &str,
        body: &str,
        sink: &mut Sink<'_>,
    ) -> Result<(), ParseError> {
        let _ = (symbol, body, sink);
        Err(ParseError::Unsupported("REST snapshot".into()))
    }

    /// The REST snapshot of `symbol` could not be fetched.
    fn on_snapshot_failed(&mut self, symbol: &str) {
        let _ = symbol;
    }

    /// The connection was lost: forget per-connection state (books wait for a new snapshot),
    /// reporting what that means for subscribers through `sink`.
    fn on_disconnect(&mut self, sink: &mut Sink<'_>) {
        let _ = sink;
    }

    /// Hands `f` the receive time (`recv_ts_ns` of [`parse`](Self::parse)) of every message a
    /// venue sync buffer released since the last call: messages held until a book snapshot
    /// arrived (Binance depth diffs), each of which waited from its receipt until then. The
    /// collector calls it after each REST snapshot and counts the waits
    /// (`mdrelay_sync_buffer_wait_seconds`). Venues without a sync buffer have none.
    fn drain_sync_released(&mut self, f: &mut dyn FnMut(u64)) {
        let _ = f;
    }

    /// Messages this parser's fast path handed to its general parser because it met something it
    /// does not handle (an escape, an unknown shape, a bad number): a cost figure, not an error.
    /// Venues without a fast path have none.
    fn fast_path_fallbacks(&self) -> u64 {
        0
    }

    /// Parses one raw message, handing every event it holds to `sink` in order.
    /// `recv_ts_ns` is when the message was received (ns since epoch).
    fn parse(
        &mut self,
        raw: &str,
        recv_ts_ns: u64,
        sink: &mut Sink<'_>,
    ) -> Result<Parsed, ParseError>;
}

/// A fresh parser for `venue`.
pub fn parser_for(venue: Venue) -> Box<dyn VenueParser> {
    match venue {
        Venue::Binance => Box::new(binance::BinanceParser::default()),
        Venue::Coinbase => Box::new(coinbase::CoinbaseParser::new()),
        Venue::Kraken => Box::new(kraken_v2::KrakenV2Parser::new()),
        Venue::KrakenV1 => Box::new(kraken_v1::KrakenV1Parser::new()),
        Venue::BinanceUsdm | Venue::BinanceCoinm => {
            Box::new(binance_futures::BinanceFuturesParser::new(venue))
        }
        Venue::Okx => Box::new(okx::OkxParser::new()),
        Venue::Bybit => Box::new(bybit::BybitParser::new()),
        Venue::Gemini => Box::new(gemini::GeminiParser::new()),
        Venue::Hyperliquid => Box::new(hyperliquid::HyperliquidParser::new()),
    }
}

/// The channel names a feed of `venue` may subscribe: each venue module's `CHANNELS`
/// (checked at start-up, so a misspelt channel fails there rather than on every reconnect).
pub fn channels(venue: Venue) -> &'static [&'static str] {
    match venue {
        Venue::Binance => binance::CHANNELS,
        Venue::Coinbase => coinbase::CHANNELS,
        Venue::Kraken => kraken_v2::CHANNELS,
        Venue::KrakenV1 => kraken_v1::CHANNELS,
        Venue::BinanceUsdm | Venue::BinanceCoinm => binance_futures::CHANNELS,
        Venue::Okx => okx::CHANNELS,
        Venue::Bybit => bybit::CHANNELS,
        Venue::Gemini => gemini::CHANNELS,
        Venue::Hyperliquid => hyperliquid::CHANNELS,
    }
}

/// Parses a fixed-point decimal field, naming the field on failure.
#[inline]
pub(crate) fn fixed_field(field: &'static str, s: &str) -> Result<i64, ParseError> {
    crate::market::fixed::parse(s).map_err(|cause| ParseError::Number { field, cause })
}
