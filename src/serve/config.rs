//! The HTTP endpoint's configuration (`[http]`), built by the `config` module.

use std::net::SocketAddr;
use std::time::Duration;

/// The HTTP endpoint (`[http]`).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// How often the consumer publishes the query snapshot (ticker, bars, books).
    pub snapshot_interval: Duration,
    /// Book levels per side kept in the query snapshot (the most `/v1/book` returns).
    pub book_depth: usize,
}
