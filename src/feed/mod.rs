//! Feeds: where market data enters. One collector thread per configured feed (`collector-<feed>`)
//! reads a venue WebSocket — or, for `mdrelay replay`, recording files — parses every message
//! with its venue's parser into events, encodes frames and pushes them into the feed's queue.
//!
//! - `config`: a feed's section (`[feeds.NAME]` over `[feed_defaults]`).
//! - `collector`: the live collector thread: connect, subscribe, read, reconnect with backoff.
//! - `publisher`: events → frames: instrument definitions, sequences, backpressure, drop reports.
//! - `rotation`: make-before-break connection rotation (`rotate_after_ms`): the replacement's
//!   handshake thread, the overlap of two connections and its de-duplication by venue ids.
//! - `open_interest`: the `oi-<feed>` thread polling Binance futures open interest over REST,
//!   handing readings to the collector.
//! - `record_route`: which symbol a raw message belongs to, per venue, for the raw recorder's
//!   `hftbacktest` layout (run on the recorder thread).
//! - `replay`: the file collector: recordings through the same parsers, paced or at full speed.
//! - `venue`: one parser per venue protocol (books, sequencing, checksums, REST snapshots).

pub mod collector;
pub mod config;
pub mod open_interest;
pub mod publisher;
pub mod record_route;
pub mod replay;
pub mod rotation;
pub mod venue;
