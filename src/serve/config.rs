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
    /// Longest a client may take from connecting to receiving its whole response; 100 ms to
    /// 10 min.
    pub request_deadline: Duration,
    /// HTTP connections open at once; the next is refused with 503. 1 to 65 536.
    pub max_connections: usize,
}

impl HttpConfig {
    /// What the server needs of this section.
    pub fn server_options(&self) -> crate::serve::server::ServerOptions {
        crate::serve::server::ServerOptions {
            listen: self.listen,
            request_deadline: self.request_deadline,
            max_connections: self.max_connections,
        }
    }
}
