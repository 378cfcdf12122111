//! The NATS bridge: a relay subscriber that republishes every event onto NATS subjects
//! `<prefix>.<venue>.<symbol>.<kind>`, for strategies on other machines (feature `nats`).
//!
//! It is never on the collector → consumer path: it reads the relay socket like any other
//! subscriber, so a slow or dead NATS server costs the relay nothing. Two threads of its own,
//! joined by a bounded buffer (an `ArrayQueue` of `buffer_frames`):
//!
//! - `nats-bridge` (synchronous, `reader.rs`): reads frames with
//!   [`RelayClient`](crate::relay::client::RelayClient), maps each to
//!   its subject and pushes it into the buffer. It never waits for NATS: a frame that finds the
//!   buffer full is dropped, counted and reported in a `dropped` status on the instrument's
//!   status subject before any later frame of that instrument.
//! - `nats-publish` (`publisher.rs`): a single-threaded tokio runtime confined to this thread,
//!   running `async-nats`. It pops the buffer and publishes. async-nats reconnects by itself,
//!   with the configured doubling backoff; while it is away, publishing waits, the buffer fills,
//!   and the reader's drop accounting takes over.
//!
//! Delivery: plain NATS is at most once — messages written to a server that then dies are lost
//! without anyone knowing; frame-payload readers see them as sequence gaps. With JetStream every
//! message carries a `Nats-Msg-Id` and `Nats-Expected-Last-Msg-Id` (its predecessor's id) and
//! waits for its stream ack in a window of [`ACK_WINDOW`]; when an ack fails (timeout, server
//! gone — seen at the reconnect —, stream not yet recovered, predecessor missing) the whole window
//! is re-sent in order after a backoff. The stream discards the copies it already holds (by id,
//! within its duplicate window, 2 minutes by default) and refuses any message whose predecessor
//! it does not hold, so it stores every message once and in order, and a server restart loses
//! nothing that is not reported `dropped`. The bridge must be its stream's only publisher. A message the server refuses
//! for good (too large, a stream limit with discard-new) is dropped, counted and reported.
//!
//! Heartbeat frames are not forwarded (NATS has its own liveness; a stream would keep one per
//! second for nothing); they are counted. Frames of unknown types go to kind `other` (frame
//! payload) or are skipped and counted (JSON payload, which has no rendering for them).
//!
//! Files:
//! - `mod.rs`: the [`Bridge`] handle (start, live counters, shutdown) and [`run_until_signal`].
//! - `subjects.rs`: subject names and the escaping of venue names and symbols into tokens.
//! - `counters.rs`: the reader's and the publisher's counters, and the [`BridgeSummary`].
//! - `outbound.rs`: the messages in the buffer, and the `dropped` reports about them.
//! - `reader.rs`: the `nats-bridge` thread.
//! - `publisher.rs`: the `nats-publish` thread, plain NATS and JetStream.
//! - `connect.rs`: the NATS client's options (addresses, credentials, TLS, reconnect backoff).

mod connect;
mod counters;
mod outbound;
mod publisher;
mod reader;
mod subjects;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

pub use counters::{BridgeCounters, BridgeSummary, PublisherCounters, ReaderCounters};
pub use outbound::{DETAIL_BUFFER_FULL, DETAIL_REFUSED};
pub use publisher::{ACK_WINDOW, DRAIN_TIMEOUT};
pub use subjects::{
    feed_status_subject, subject, symbol_from_token, symbol_token, venue_token, Kind,
};

use crate::base::backoff::Backoff;
use crate::bridge::config::{NatsConfig, Payload};
use connect::{connect_options, server_addrs};
use outbound::Outbound;
use publisher::publisher_thread;
use reader::Reader;

/// Relay socket read timeout: how often the reader looks at the stop flag when idle (and the
/// publisher's polling interval for the same flags and for a lost connection).
const READ_POLL: Duration = Duration::from_millis(100);

/// What the two threads and the handle share.
struct Shared {
    /// The buffer: bounded, `buffer_frames`.
    queue: ArrayQueue<Outbound>,
    /// Wakes the publisher after a push (a permit is kept when it is not waiting).
    notify: Notify,
    /// Set by [`Bridge::shutdown`].
    stop: AtomicBool,
    /// Set by the reader when it has pushed its last message: the publisher drains and exits.
    closed: AtomicBool,
    counters: BridgeCounters,
    payload: Payload,
}

impl Shared {
    /// True once [`Bridge::shutdown`] (or drop) asked the threads to stop.
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Nothing more will be pushed: the publisher drains the buffer and exits.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A server URL is not usable (shown redacted).
    #[error("nats.url: `{url}` is not a usable server address: {reason}")]
    Url {
        /// The URL without credentials.
        url: String,
        /// Why.
        reason: String,
    },
    /// A credentials or TLS file is missing or invalid (its content is never shown).
    #[error("{key}: {path}: {reason}")]
    File {
        /// The configuration key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The signal handler could not be installed.
    #[error("installing the signal handler: {0}")]
    Signal(String),
    /// The OS refused a thread.
    #[error("cannot spawn thread {name}: {cause}")]
    Spawn {
        /// Thread name.
        name: &'static str,
        /// Why.
        cause: std::io::Error,
    },
}

/// A running bridge: the `nats-bridge` and `nats-publish` threads.
pub struct Bridge {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    publisher: Option<JoinHandle<()>>,
}

impl Bridge {
    /// Starts a bridge reading the relay socket at `socket` and publishing as `cfg` says.
    /// Fails at once on an unusable URL, credentials or TLS file; a NATS server that is not
    /// reachable yet is not an error (the bridge connects when it can, buffering meanwhile).
    pub fn start(cfg: &NatsConfig, socket: &Path) -> Result<Bridge, BridgeError> {
        let addrs = server_addrs(cfg)?;
        let backoff = Backoff {
            initial: cfg.reconnect_initial,
            max: cfg.reconnect_max,
        };
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(cfg.buffer_frames.max(1)),
            notify: Notify::new(),
            stop: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            counters: BridgeCounters::default(),
            payload: cfg.payload,
        });
        let opts = connect_options(cfg, backoff, &shared)?;
        tracing::info!(
            url = %cfg.redacted_urls(),
            prefix = %cfg.subject_prefix,
            payload = ?cfg.payload,
            jetstream = ?cfg.jetstream.as_ref().map(|j| &j.stream),
            "nats bridge: starting"
        );
        let publisher = {
            let shared = shared.clone();
            let js = cfg.jetstream.clone();
            let prefix = cfg.subject_prefix.clone();
            thread::Builder::new()
                .name("nats-publish".into())
                .spawn(move || publisher_thread(shared, opts, addrs, js, prefix, backoff))
                .map_err(|cause| BridgeError::Spawn {
                    name: "nats-publish",
                    cause,
                })?
        };
        let mut bridge = Bridge {
            shared: shared.clone(),
            reader: None,
            publisher: Some(publisher),
        };
        let prefix = cfg.subject_prefix.clone();
        let socket = socket.to_path_buf();
        let reader = thread::Builder::new()
            .name("nats-bridge".into())
            .spawn(move || Reader::new(shared, prefix).run(&socket, backoff))
            .map_err(|cause| BridgeError::Spawn {
                name: "nats-bridge",
                cause,
            })?;
        bridge.reader = Some(reader);
        Ok(bridge)
    }

    /// Live counters.
    pub fn counters(&self) -> &BridgeCounters {
        &self.shared.counters
    }

    /// Messages in the buffer now.
    pub fn buffered(&self) -> usize {
        self.shared.queue.len()
    }

    /// True when everything read so far has been dealt with: nothing buffered, no drop report
    /// pending, and every queued message published or refused (JetStream: acknowledged).
    pub fn settled(&self) -> bool {
        let r = &self.shared.counters.reader;
        let p = &self.shared.counters.publisher;
        self.shared.queue.is_empty() && r.queued.get() == p.published.get() + p.refused.get()
    }

    /// Stops reading (after what the relay still sends within a second, or at its end of
    /// stream), publishes what is buffered (at most [`DRAIN_TIMEOUT`]), joins both threads.
    pub fn shutdown(mut self) -> BridgeSummary {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> BridgeSummary {
        self.shared.stop.store(true, Ordering::Release);
        let mut panicked = Vec::new();
        if let Some(h) = self.reader.take() {
            if h.join().is_err() {
                panicked.push("nats-bridge");
                // The reader could not close: let the publisher finish anyway.
                self.shared.close();
            }
        }
        if let Some(h) = self.publisher.take() {
            if h.join().is_err() {
                panicked.push("nats-publish");
            }
        }
        self.shared.counters.summary(panicked)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if self.reader.is_some() || self.publisher.is_some() {
            let _ = self.stop_and_join();
        }
    }
}

impl fmt::Debug for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bridge")
            .field("buffered", &self.buffered())
            .finish_non_exhaustive()
    }
}

/// Runs a bridge until SIGINT/SIGTERM (`mdrelay nats-bridge`), logging a status line every
/// `status_interval`, and returns its summary.
pub fn run_until_signal(
    cfg: &NatsConfig,
    socket: &Path,
    status_interval: Duration,
) -> Result<BridgeSummary, BridgeError> {
    let (tx, rx) = crossbeam_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    })
    .map_err(|e| BridgeError::Signal(e.to_string()))?;
    let bridge = Bridge::start(cfg, socket)?;
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = rx.recv_timeout(status_interval) {
        let r = &bridge.counters().reader;
        let p = &bridge.counters().publisher;
        tracing::info!(
            "nats bridge: frames {} | published {} | dropped {} | buffered {} | connected {}",
            r.frames.get(),
            p.published.get(),
            r.dropped.get(),
            bridge.buffered(),
            p.connected.get()
        );
    }
    tracing::info!("nats bridge: stopping");
    Ok(bridge.shutdown())
}
