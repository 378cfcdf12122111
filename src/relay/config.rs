//! The relay socket's configuration (`[relay]`), built by the `config` module.

use std::path::PathBuf;
use std::time::Duration;

/// The relay socket.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Socket path (resolved: never empty).
    pub socket_path: PathBuf,
    /// Permission bits of the socket file; a directory mdrelay creates gets the same plus search
    /// bits ([`crate::relay::socket::dir_mode`]).
    pub socket_mode: u32,
    /// Subscribers beyond this are refused at accept; ≥ 1.
    pub max_subscribers: usize,
    /// Outbound bytes buffered per subscriber before it counts as too slow; ≥ 64 KiB.
    pub max_pending_bytes: usize,
    /// Heartbeat period; ≥ 10 ms.
    pub heartbeat_interval: Duration,
    /// How long shutdown waits for subscribers to take their last bytes.
    pub drain_timeout: Duration,
    /// How long a new connection may send subscription requests before it is admitted.
    pub hello_timeout: Duration,
    /// Peer uids allowed to connect; empty: any the socket's permissions let in.
    pub allowed_uids: Vec<u32>,
}

/// The default socket path: `$XDG_RUNTIME_DIR/mdrelay/relay.sock`, else
/// `/tmp/mdrelay-<uid>/relay.sock`.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("mdrelay").join("relay.sock"),
        _ => PathBuf::from(format!(
            "/tmp/mdrelay-{}",
            rustix::process::getuid().as_raw()
        ))
        .join("relay.sock"),
    }
}
