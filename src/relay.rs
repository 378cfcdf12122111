//! The relay socket: a Unix-domain stream socket that subscribers connect to, and the set of
//! connected subscribers with their outbound buffers.
//!
//! Two owners. The acceptor thread (`relay-accept`) owns the listening socket: it waits in
//! `poll(2)` (waking every 100 ms for the stop flag), accepts, refuses beyond `max_subscribers`,
//! makes the connection non-blocking and hands it to the consumer over a small bounded channel.
//! The consumer thread owns [`Subscribers`]: frames are appended to each subscriber's bounded
//! buffer and written with one non-blocking `write` per subscriber per consumer turn, so frames
//! arriving in a burst share a syscall. A subscriber whose unwritten bytes would exceed
//! `max_pending_bytes` is disconnected (counted); one that hangs up is removed. Neither ever
//! blocks the consumer or delays the others. Frames are length-delimited by their header, never
//! split across subscribers, never interleaved.
//!
//! Socket file hygiene: the directory is created 0700, the socket gets the configured mode;
//! a live relay already on the path is refused, a stale socket file (crash) is unlinked; the file
//! is removed on shutdown ([`SocketGuard`]).

use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::cache::Cache;
use crate::config::RelayConfig;
use crate::netutil::wait_readable;
use crate::queue::Waker;
use crate::stats::{AcceptCounters, RelayCounters, StopFlag};

/// Why the relay socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Another process is accepting on the path.
    #[error("another relay is live on {0}; refusing to take over its socket")]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{0} exists and is not a socket; refusing to remove it")]
    NotASocket(PathBuf),
    /// Filesystem or socket error.
    #[error("relay socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// Removes the socket file when dropped.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
}

impl SocketGuard {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), "could not remove socket: {e}");
            }
        }
    }
}

/// Binds the relay socket per `cfg` (see the module doc for the rules).
pub fn bind(cfg: &RelayConfig) -> Result<(UnixListener, SocketGuard), RelayError> {
    let path = &cfg.socket_path;
    let io_err = |source| RelayError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode(cfg.socket_mode))
                .create(dir)
                .map_err(io_err)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(RelayError::InUse(path.clone())),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                tracing::warn!(path = %path.display(), "removing stale socket left by a previous run");
                std::fs::remove_file(path).map_err(io_err)?;
            }
            Err(e) => return Err(io_err(e)),
        },
        Ok(_) => return Err(RelayError::NotASocket(path.clone())),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    let guard = SocketGuard { path: path.clone() };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(cfg.socket_mode))
        .map_err(io_err)?;
    Ok((listener, guard))
}

/// Mode of a socket directory mdrelay creates: the socket's read/write bits plus search (x)
/// wherever read is granted, so `600` → `700` and `660` → `770` (the group can reach the socket).
pub fn dir_mode(socket_mode: u32) -> u32 {
    let r = socket_mode & 0o444;
    (socket_mode & 0o666) | (r >> 2)
}

/// Runs the acceptor loop on the current thread until `stop` is set or the consumer is gone.
pub fn accept_loop(
    listener: UnixListener,
    to_consumer: Sender<UnixStream>,
    max_subscribers: usize,
    relay: Arc<RelayCounters>,
    counters: Arc<AcceptCounters>,
    waker: Arc<Waker>,
    stop: Arc<StopFlag>,
) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!("relay socket: cannot make non-blocking: {e}");
        return;
    }
    while !stop.is_stopped() {
        match wait_readable(&listener, Duration::from_millis(100)) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!("relay socket poll failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    // The consumer owns the count; a stale read can only admit one extra
                    // subscriber momentarily, which the consumer tolerates.
                    if relay.subscribers.get() as usize >= max_subscribers {
                        counters.refused_full.inc();
                        tracing::warn!("subscriber refused: {max_subscribers} already connected");
                        continue;
                    }
                    if let Err(e) = stream.set_nonblocking(true) {
                        tracing::warn!("subscriber dropped: cannot make non-blocking: {e}");
                        continue;
                    }
                    match to_consumer.try_send(stream) {
                        Ok(()) => waker.wake(),
                        Err(TrySendError::Full(_)) => {
                            counters.refused_full.inc();
                            tracing::warn!("subscriber refused: too many waiting to be admitted");
                        }
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    break;
                }
            }
        }
    }
}

/// Why a subscriber was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Its unwritten bytes would have exceeded the limit.
    TooSlow,
    /// It hung up or the socket failed.
    Closed,
}

/// One connected subscriber.
#[derive(Debug)]
struct Subscriber {
    stream: UnixStream,
    /// Outbound bytes; `out[pos..]` is unwritten. Its unwritten length is always ≤ the limit.
    out: Vec<u8>,
    /// Bytes of `out` already written; ≤ `out.len()`.
    pos: usize,
    /// Set when the subscriber must be removed at the end of the turn.
    gone: Option<Gone>,
    /// Serial number, for logs and metrics.
    serial: u64,
    /// Frames queued for it (join snapshot not counted).
    frames: u64,
    /// Bytes written to it.
    bytes: u64,
}

/// One subscriber's counters, as the consumer publishes them for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Serial number (1 for the first subscriber since start).
    pub serial: u64,
    /// Frames queued for it since it joined (its join snapshot not counted).
    pub frames: u64,
    /// Bytes written to its socket.
    pub bytes: u64,
    /// Bytes queued and not yet written.
    pub pending_bytes: u64,
}

impl Subscriber {
    #[inline]
    fn pending(&self) -> usize {
        self.out.len() - self.pos
    }

    /// One non-blocking write of everything pending.
    #[inline]
    fn flush(&mut self, counters: &RelayCounters) {
        if self.gone.is_some() || self.pending() == 0 {
            return;
        }
        loop {
            counters.writes.inc();
            match self.stream.write(&self.out[self.pos..]) {
                Ok(0) => {
                    self.gone = Some(Gone::Closed);
                    return;
                }
                Ok(n) => {
                    self.pos += n;
                    self.bytes += n as u64;
                    counters.bytes_sent.add(n as u64);
                    if self.pos == self.out.len() {
                        self.out.clear();
                        self.pos = 0;
                    } else if self.pos >= self.out.len() / 2 {
                        self.out.drain(..self.pos);
                        self.pos = 0;
                    }
                    return;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.gone = Some(Gone::Closed);
                    return;
                }
            }
        }
    }
}

/// The connected subscribers. Owned by the consumer thread.
#[derive(Debug)]
pub struct Subscribers {
    subs: Vec<Subscriber>,
    max_pending_bytes: usize,
    counters: Arc<RelayCounters>,
    next_serial: u64,
    /// True when some subscriber is marked gone.
    any_gone: bool,
}

impl Subscribers {
    /// An empty set with the given per-subscriber limit.
    pub fn new(max_pending_bytes: usize, counters: Arc<RelayCounters>) -> Self {
        Subscribers {
            subs: Vec::new(),
            max_pending_bytes,
            counters,
            next_serial: 0,
            any_gone: false,
        }
    }

    /// Admits a subscriber: queues the cache snapshot for it, then it receives live frames.
    pub fn add(&mut self, stream: UnixStream, cache: &Cache) {
        self.next_serial += 1;
        let mut out = Vec::with_capacity(64 * 1024);
        cache.write_snapshot(&mut out);
        self.subs.push(Subscriber {
            stream,
            out,
            pos: 0,
            gone: None,
            serial: self.next_serial,
            frames: 0,
            bytes: 0,
        });
        self.counters.accepted.inc();
        self.counters.subscribers.set(self.subs.len() as u64);
        tracing::info!(subscriber = self.next_serial, "subscriber connected");
    }

    /// Appends one frame to every subscriber's buffer.
    #[inline]
    pub fn broadcast(&mut self, frame: &[u8]) {
        for s in &mut self.subs {
            if s.gone.is_some() {
                continue;
            }
            if s.pending() + frame.len() > self.max_pending_bytes {
                s.gone = Some(Gone::TooSlow);
                self.any_gone = true;
                continue;
            }
            s.out.extend_from_slice(frame);
            s.frames += 1;
            self.counters.frames_sent.inc();
        }
    }

    /// Broadcasts a heartbeat frame (counted once, not per subscriber).
    pub fn broadcast_heartbeat(&mut self, frame: &[u8]) {
        self.counters.heartbeats.inc();
        self.broadcast(frame);
    }

    /// One write per subscriber with pending bytes; removes subscribers that are gone.
    #[inline]
    pub fn flush(&mut self) {
        for s in &mut self.subs {
            s.flush(&self.counters);
            self.any_gone |= s.gone.is_some();
        }
        if self.any_gone {
            self.remove_gone();
        }
    }

    fn remove_gone(&mut self) {
        let counters = &self.counters;
        self.subs.retain(|s| match s.gone {
            None => true,
            Some(Gone::TooSlow) => {
                counters.slow_disconnects.inc();
                tracing::warn!(
                    subscriber = s.serial,
                    pending_bytes = s.pending(),
                    "subscriber disconnected: too slow (pending bytes over relay.max_pending_bytes)"
                );
                false
            }
            Some(Gone::Closed) => {
                counters.closed.inc();
                tracing::info!(subscriber = s.serial, "subscriber disconnected");
                false
            }
        });
        self.any_gone = false;
        self.counters.subscribers.set(self.subs.len() as u64);
    }

    /// Replaces `out` with every connected subscriber's counters.
    pub fn stats_into(&self, out: &mut Vec<SubscriberStats>) {
        out.clear();
        out.extend(self.subs.iter().map(|s| SubscriberStats {
            serial: s.serial,
            frames: s.frames,
            bytes: s.bytes,
            pending_bytes: s.pending() as u64,
        }));
    }

    /// True when some subscriber has unwritten bytes.
    #[inline]
    pub fn any_pending(&self) -> bool {
        self.subs.iter().any(|s| s.pending() > 0)
    }

    /// Subscribers connected.
    #[inline]
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// True when no subscriber is connected.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Keeps writing until every buffer is empty or `deadline` passes (shutdown drain), then
    /// closes every subscriber. Returns the number of subscribers that still had bytes pending.
    pub fn drain_and_close(&mut self, deadline: Instant) -> usize {
        loop {
            self.flush();
            if !self.any_pending() || Instant::now() >= deadline {
                break;
            }
            let mut fds: Vec<PollFd<'_>> = self
                .subs
                .iter()
                .filter(|s| s.pending() > 0)
                .map(|s| PollFd::new(&s.stream, PollFlags::OUT))
                .collect();
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            let ts = Timespec {
                tv_sec: 0,
                tv_nsec: left.subsec_nanos().into(),
            };
            let _ = poll(&mut fds, Some(&ts));
        }
        let unfinished = self.subs.iter().filter(|s| s.pending() > 0).count();
        for s in &self.subs {
            let _ = s.stream.shutdown(std::net::Shutdown::Both);
        }
        self.subs.clear();
        self.counters.subscribers.set(0);
        unfinished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_mode_follows_socket_mode() {
        assert_eq!(dir_mode(0o600), 0o700);
        assert_eq!(dir_mode(0o660), 0o770);
        assert_eq!(dir_mode(0o666), 0o777);
        assert_eq!(dir_mode(0o640), 0o750);
    }
}
