//! A feed's configuration (`[feeds.NAME]` over `[feed_defaults]`), built by
//! the `config` module; `mdrelay replay` builds its file feeds with [`FeedConfig::replay`].

use std::path::PathBuf;
use std::time::Duration;

use crate::feed::venue::Subscription;
use crate::market::instrument::Venue;
use crate::queue::{Backpressure, Transport};

/// One feed connection: one collector thread.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// Name (the `[feeds.NAME]` key); the thread is `collector-NAME`.
    pub name: String,
    /// Venue protocol.
    pub venue: Venue,
    /// WebSocket URL (`{replay}` is replaced when the relay starts).
    pub url: String,
    /// Base URL of the venue's REST API for book snapshots (Binance depth), `{replay}` likewise.
    pub rest_url: Option<String>,
    /// PEM file of the CA certificates this feed's wss connection trusts, instead of the
    /// built-in web PKI roots (a private endpoint, a test server).
    pub tls_ca_file: Option<PathBuf>,
    /// What to subscribe to.
    pub subscription: Subscription,
    /// Queue capacity in frames; ≥ 1.
    pub queue_capacity_frames: usize,
    /// Queue transport.
    pub transport: Transport,
    /// Full-queue policy; `DropOldest` only with [`Transport::Ring`].
    pub backpressure: Backpressure,
    /// Longest wait for queue space under [`Backpressure::Block`].
    pub block_timeout: Duration,
    /// TCP + TLS + WebSocket handshake deadline.
    pub connect_timeout: Duration,
    /// First reconnect delay (the first retry is immediate).
    pub reconnect_initial: Duration,
    /// Reconnect delay cap.
    pub reconnect_max: Duration,
    /// No data message for this long: the feed is stale (`/health` degrades).
    pub stale_after: Duration,
    /// Write every raw venue message to the raw recording (`[recording]`).
    pub record: bool,
    /// Reconnect proactively once a connection is this old (venue connection limits, e.g.
    /// Binance's 24 h); `None`: never.
    pub max_connection_age: Option<Duration>,
    /// Make-before-break rotation: once a connection is this old, open its replacement,
    /// subscribe, and switch when the replacement continues the published stream (see
    /// [`crate::feed::rotation`]); `None`: never. Binance venues only.
    pub rotate_after: Option<Duration>,
    /// Where the messages come from: the venue's WebSocket, or recordings (`mdrelay replay`).
    pub source: FeedSource,
    /// Poll open interest over REST this often on the feed's `oi-<feed>` thread (Binance
    /// futures only; `rest_url` required); `None`: never.
    pub open_interest_interval: Option<Duration>,
}

impl FeedConfig {
    /// A feed replaying `paths` (recordings of `venue`) at `speed` (0 = as fast as possible).
    /// Its queue blocks rather than drops (up to a minute): a replay waits for the pipeline.
    pub fn replay(
        name: &str,
        venue: Venue,
        paths: Vec<PathBuf>,
        speed: f64,
        wait_subscribers: u64,
    ) -> FeedConfig {
        FeedConfig {
            name: name.to_owned(),
            venue,
            url: String::new(),
            rest_url: None,
            tls_ca_file: None,
            subscription: Subscription {
                symbols: Vec::new(),
                channels: Vec::new(),
                book_depth: 0,
            },
            queue_capacity_frames: 65_536,
            transport: Transport::Channel,
            backpressure: Backpressure::Block,
            block_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(30),
            stale_after: Duration::from_secs(86_400),
            record: false,
            max_connection_age: None,
            rotate_after: None,
            open_interest_interval: None,
            source: FeedSource::Files {
                paths,
                speed,
                wait_subscribers,
            },
        }
    }
}

/// Default `max_connection_age_ms` of Binance feeds: 23 h 30 m (Binance drops connections at
/// 24 h).
pub const BINANCE_MAX_CONNECTION_AGE_MS: u64 = 23 * 3_600_000 + 30 * 60_000;

/// Default `rotate_after_ms` of Binance feeds: 23 h, so that a rotation that fails is retried
/// before `max_connection_age_ms` (23 h 30 m) closes the old connection anyway.
pub const BINANCE_ROTATE_AFTER_MS: u64 = 23 * 3_600_000;

/// Where a feed's messages come from.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedSource {
    /// The WebSocket at `url` (a venue, or the embedded replay exchange).
    WebSocket,
    /// Recording files of one venue, merged by receive time, replayed through the same parser
    /// with their recorded receive times (`mdrelay replay`).
    Files {
        /// The recordings (`<recv_ns> <message>` lines, `.gz` or plain).
        paths: Vec<PathBuf>,
        /// Pace multiplier of the recorded timing; 0 = as fast as possible.
        speed: f64,
        /// Start only once this many subscribers are connected (so they miss nothing).
        wait_subscribers: u64,
    },
}
