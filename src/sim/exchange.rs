//! The exchange's handle and the `replay-exchange` thread: loads the recordings, listens, hands
//! each connection to its own `replay-conn-N` thread (see `session`), and on stop joins them all.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::Mutex;

use crate::base::netutil::wait_readable;
use crate::market::instrument::Venue;

use super::positions::Positions;
use super::session::serve;
use super::source::{load, Source, Window};

/// How the exchange plays its recordings.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// Pace multiplier; 0 = as fast as possible.
    pub speed: f64,
    /// At the end of a recording, close the connection so the client reconnects and the
    /// recording starts again; otherwise stay connected and idle.
    pub loop_forever: bool,
    /// Hold every session after its subscription until [`ReplayExchange::resume`] (tests).
    pub start_paused: bool,
    /// Join "live" like a real venue: a new session starts at the position of the venue's most
    /// advanced session (the first one from the start) instead of replaying from the beginning,
    /// and leaves the Binance REST books where they are. Default false.
    pub live: bool,
    /// Replay only messages received at or after this time, ns since the Unix epoch (`None`:
    /// from the start). The Binance REST books still include every diff before it.
    pub from_ns: Option<u64>,
    /// Replay only messages received before this time, ns since the Unix epoch (`None`: to
    /// the end).
    pub to_ns: Option<u64>,
}

/// State shared by the acceptor and every session.
pub(super) struct Shared {
    pub(super) opts: ReplayOptions,
    pub(super) sources: Vec<Arc<Source>>,
    pub(super) stop: AtomicBool,
    pub(super) paused: AtomicBool,
    /// Sessions that completed a subscription, since start.
    pub(super) subscribed: AtomicU64,
    /// Messages sent, all sessions.
    pub(super) sent: AtomicU64,
    /// The Binance sessions' positions in their depth timelines, for REST snapshots.
    pub(super) positions: Positions,
    sessions: Mutex<Vec<JoinHandle<()>>>,
}

/// A running replay exchange. Stops when dropped.
pub struct ReplayExchange {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl ReplayExchange {
    /// Loads `sources` (several files of one venue are merged by time) and starts listening.
    /// A load error names the file.
    pub fn start(sources: &[(Venue, Vec<PathBuf>)], opts: ReplayOptions) -> io::Result<Self> {
        let window = Window {
            from_ns: opts.from_ns,
            to_ns: opts.to_ns,
        };
        let mut loaded = Vec::new();
        for (venue, paths) in sources {
            loaded.push(Arc::new(load(*venue, paths, window)?));
        }
        let listener = TcpListener::bind(opts.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            paused: AtomicBool::new(opts.start_paused),
            opts,
            sources: loaded,
            stop: AtomicBool::new(false),
            subscribed: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            positions: Positions::default(),
            sessions: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let acceptor = thread::Builder::new()
            .name("replay-exchange".into())
            .spawn(move || accept_loop(listener, sh))?;
        tracing::info!(%addr, "replay exchange listening");
        Ok(ReplayExchange {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Releases sessions held by `start_paused`.
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::Release);
    }

    /// Holds sessions that have not started playing yet after their subscription, like
    /// `start_paused` (sessions already playing go on), until [`Self::resume`] (tests).
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::Release);
    }

    /// Sessions that have completed a subscription since start.
    pub fn subscribed_sessions(&self) -> u64 {
        self.shared.subscribed.load(Ordering::Acquire)
    }

    /// Messages sent to clients since start.
    pub fn messages_sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Stops accepting, ends every session and joins every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let sessions = std::mem::take(&mut *self.shared.sessions.lock());
        for s in sessions {
            let _ = s.join();
        }
    }
}

impl Drop for ReplayExchange {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut serial = 0u64;
    while !shared.stop.load(Ordering::Acquire) {
        match wait_readable(&listener, Duration::from_millis(100)) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!("replay exchange poll: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                serial += 1;
                let sh = shared.clone();
                let spawned = thread::Builder::new()
                    .name(format!("replay-conn-{serial}"))
                    .spawn(move || {
                        if let Err(e) = serve(stream, &sh) {
                            tracing::debug!(%peer, "replay session ended: {e}");
                        }
                    });
                match spawned {
                    Ok(h) => {
                        let mut sessions = shared.sessions.lock();
                        sessions.retain(|h| !h.is_finished());
                        sessions.push(h);
                    }
                    Err(e) => tracing::error!("replay exchange: cannot spawn session: {e}"),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => tracing::warn!("replay exchange accept: {e}"),
        }
    }
}
