//! The replay exchange: recorded real venue traffic served over real WebSockets on this machine,
//! speaking each venue's protocol, so collectors run their real code path with no internet
//! (`make run`'s demo and the integration tests use it).
//!
//! Threads: `replay-exchange` accepts on the listen address; each connection gets its own
//! `replay-conn-N` thread. The venue is the first path segment of the request
//! (`ws://ADDR/binance/stream`, `ws://ADDR/binance_usdm/stream`, `ws://ADDR/binance_coinm/stream`,
//! `ws://ADDR/coinbase`, `ws://ADDR/kraken_v1`, `ws://ADDR/kraken`, `ws://ADDR/okx`,
//! `ws://ADDR/bybit`, `ws://ADDR/gemini`, `ws://ADDR/hyperliquid`); the Binance REST depth
//! snapshots (`GET /binance/api/v3/depth`, `/binance_usdm/fapi/v1/depth`,
//! `/binance_coinm/dapi/v1/depth`) are plain HTTP on the same port. The futures venues speak the
//! Binance protocol (same requests, acks and stream keys) with their own REST paths and books.
//!
//! Every session replays its venue's recording from the start (or from `from_ns`, up to `to_ns`:
//! [`ReplayOptions`]); several sessions of a venue play independently, each at its own position.
//! A Binance REST snapshot is the book at the position of the requesting host's sessions (see
//! `positions`), computed from the recording, so it is consistent with their streams whatever
//! the other sessions do. Closing follows RFC 6455: a client's Close is echoed at once and the
//! TCP connection closed; the exchange's own closes (end of recording, stop) send a Close too.
//!
//! Recorded acks are not replayed (the exchange answers the client's own requests). Messages are
//! sent at their recorded pace divided by `speed` (0: as fast as the client reads). At the end of
//! a recording, with `loop`, the connection is closed (code 1012, "service restart") so the client
//! reconnects and starts afresh: a real venue never repeats sequence numbers, and a replay that
//! looped on an open connection would. Recordings are loaded once and shared.
//!
//! With `live` ([`ReplayOptions::live`]), a new session joins where the venue's most advanced
//! session is instead of at the start, like a connection to a real venue (connection rotation
//! tests); [`ReplayExchange::pause`] holds new sessions after their subscription.
//!
//! Blocks on socket reads with short timeouts (pacing), and on writes when a client does not
//! read (TCP backpressure, as from a real venue). Stops within ~100 ms of [`ReplayExchange::stop`].
//!
//! - `config`: [`ReplayConfig`](config::ReplayConfig), the `[replay]` section.
//! - `exchange`: [`ReplayExchange`] and its options: loads the recordings, the acceptor thread, stop.
//! - `session`: one connection's thread: handshake, requests, pacing, end of recording.
//! - `source`: recordings loaded and merged per venue, each message keyed by its subscription.
//! - `binance_rest`: the Binance depth books (spot, USD-M, COIN-M) over the whole recording, and
//!   their REST snapshots.
//! - `positions`: each Binance session's position in the depth books, and which position a REST
//!   snapshot is served at.
//! - `binance`: Binance subscribe/unsubscribe acks and stream keys.
//! - `coinbase`: Coinbase `subscriptions` replies and product/channel keys.
//! - `kraken_v1`: Kraken v1 system status, `subscriptionStatus` acks, pings, pair/channel keys.
//! - `kraken_v2`: Kraken v2 status, acks, pings, the `instrument` snapshot, symbol/channel keys.
//! - `okx`: OKX v5 subscribe acks, `ping`/`pong`, instId/channel keys.
//! - `bybit`: Bybit v5 subscribe acks, `ping`/pong, topic keys.
//! - `gemini`: Gemini v2 `l2` subscriptions (answered with a heartbeat), symbol keys.
//! - `hyperliquid`: Hyperliquid subscription responses, `ping`/`pong`, coin/channel keys.

mod binance;
mod binance_rest;
mod bybit;
mod coinbase;
pub mod config;
mod exchange;
mod gemini;
mod hyperliquid;
mod kraken_v1;
mod kraken_v2;
mod okx;
mod positions;
mod session;
mod source;

pub use exchange::{ReplayExchange, ReplayOptions};
