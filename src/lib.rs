//! mdrelay: a low-latency market-data relay.
//!
//! Data flow (docs/ARCHITECTURE.md has the whole picture):
//! collector threads ([`collector`]) read venue WebSockets, parse with [`venue`] parsers into
//! [`event`]s of exact [`fixed`]-point numbers, encode [`protocol`] frames and push them into
//! bounded [`queue`]s; one [`consumer`] thread owns the [`cache`] and the [`relay`] socket and
//! fans frames out to subscribers, who read them with [`client`].

pub mod acceptor;
pub mod analytics;
pub mod bars;
pub mod book;
pub mod cache;
pub mod client;
pub mod clock;
pub mod collector;
pub mod config;
pub mod config_nats;
pub mod consumer;
pub mod event;
pub mod fixed;
pub mod http;
pub mod instrument;
pub mod json;
pub mod metrics;
#[cfg(feature = "nats")]
pub mod nats_bridge;
pub mod netutil;
pub mod protocol;
pub mod publisher;
pub mod query;
pub mod queue;
pub mod recorder;
pub mod recording;
pub mod relay;
pub mod replay;
pub mod replay_exchange;
pub mod run;
pub mod stats;
pub mod subscription;
pub mod timefmt;
pub mod top;
pub mod venue;
pub mod writer;

#[cfg(test)]
pub(crate) mod testutil;
