//! mdrelay: a low-latency market-data relay.
//!
//! The modules follow the data flow, and each imports only the ones below it in this list
//! (a test in `tests/it/hygiene.rs` enforces it; docs/ARCHITECTURE.md has the whole picture):
//!
//! - [`cli`]: one file per subcommand; `main.rs` only parses and dispatches.
//! - [`run`]: starts every thread of a relay from a validated configuration, and stops them.
//! - [`config`]: defaults < file < environment < flags, validated into each owner's config type.
//! - [`export`]: recordings out to other tools' formats (hftbacktest's event arrays).
//! - [`sim`]: the replay exchange — a local WebSocket server that plays recordings as venues do.
//! - [`bridge`]: republishes the relay stream onto NATS (feature `nats`).
//! - [`serve`]: the `http` thread: `/metrics`, `/health`, the `/v1/…` query API.
//! - [`consumer`]: the one thread that owns the cache and the subscribers; analytics (bars).
//! - [`relay`]: the Unix-domain socket, subscribers, the late-joiner cache, the acceptor, a client.
//! - [`feed`]: collector threads — WebSocket or recording in, venue parsers, frames out.
//! - [`persist`]: CSV writer thread, raw recorder thread, recording reader.
//! - [`queue`]: the bounded collector → consumer hop (channel or ring).
//! - [`wire`]: the binary protocol, the JSON-lines schema, subscription requests.
//! - [`market`]: pure values and algorithms: fixed-point, instruments, events, books, bars.
//! - [`base`]: clocks, time formatting, counters, thread placement, backoff, small helpers.

pub mod base;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod export;
pub mod feed;
pub mod market;
pub mod persist;
pub mod queue;
pub mod relay;
pub mod run;
pub mod serve;
pub mod sim;
pub mod wire;
