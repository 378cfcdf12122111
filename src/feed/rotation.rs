//! Make-before-break connection rotation (`rotate_after_ms`): before a venue's connection age
//! limit (Binance: 24 h) the collector opens a replacement connection, subscribes, keeps
//! publishing from the old one, and switches only once the replacement continues what was
//! published, so subscribers see no gap and no duplicate.
//!
//! Threads and blocking: the replacement's TCP + TLS + WebSocket handshake (several round trips
//! to the venue) runs on a short-lived `rotate-<feed>` thread, so the collector keeps reading the
//! old connection meanwhile; the ready socket comes back over a one-slot channel. The collector
//! then subscribes on it and reads both sockets itself, non-blocking, taking up to [`BURST`]
//! messages from each in turn and sleeping in `poll(2)` on both only when both are idle: no
//! message waits behind a read timeout of the other socket, and no second thread touches the
//! parser or the publisher.
//!
//! The splice ([`Splice`]) sits before the parser, on raw messages, so the parser sees exactly
//! the one stream a single connection would have delivered (its books bridge on their own; a
//! break is a normal gap and resync, reported as today). Per stream (Binance combined-stream
//! name), by the venue's ids:
//! - trades (`trade` `t`, `aggTrade` `a`: contiguous per symbol) and depth diffs (`U`..`u`,
//!   futures `pu`): a message at or below the last published id is a duplicate; from the
//!   replacement, one that continues it (`t` = last + 1; `U` ≤ last + 1, futures `pu` ≤ last)
//!   is published and proves the replacement's stream overlaps; one beyond it is dropped — the
//!   old connection, still open, delivers it.
//! - state streams (`bookTicker` `u`, `markPrice` event time `E`): newer wins; an older or equal
//!   id is a stale duplicate.
//! - streams without an id (`forceOrder`): the first copy of identical message text wins (each
//!   connection carries the same bytes); the text hashes of the overlap are kept, bounded.
//! - a stream the old connection has not published since the rotation began: the replacement's
//!   messages of it are dropped until it has (the old connection delivers them).
//!
//! The switch comes once every stream the old connection published during the overlap has been
//! proven on the replacement (and at least one has): the old connection is closed, and the
//! replacement's messages stay filtered until each proven stream has moved past what the old one
//! published (at most [`SETTLE`]). A replacement that fails, or does not prove itself within
//! `stale_after_ms` (or `rotate_after_ms` if shorter), is closed and counted; the old connection
//! goes on and the rotation is retried [`RETRY`] later (or `rotate_after_ms` if shorter). If the
//! old connection dies during the overlap, the replacement is dropped too and the normal
//! reconnect path (status events, book resets) applies. Rotation is offered for the Binance
//! venues only ([`supports`]): the other venues have no connection age limit mdrelay knows of,
//! and not every stream of theirs carries an id to splice by.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::io;
use std::net::TcpStream;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::Message;

use crate::base::clock;
use crate::feed::collector::{self, Collector, FeedError, Ws, POLL_INTERVAL};
use crate::feed::config::FeedConfig;
use crate::feed::publisher::Publisher;
use crate::market::instrument::Venue;

/// Messages read from one connection before the other gets its turn.
pub const BURST: usize = 64;
/// Longest the replacement's messages stay filtered after the switch.
pub const SETTLE: Duration = Duration::from_secs(10);
/// Delay before a failed rotation is tried again (or `rotate_after_ms`, if shorter).
pub const RETRY: Duration = Duration::from_secs(60);
/// Text hashes of id-less messages kept during an overlap.
const CONTENT_HASHES: usize = 4096;

/// Whether a venue's feeds can rotate make-before-break (`rotate_after_ms`).
pub fn supports(venue: Venue) -> bool {
    venue.is_binance()
}

/// Which connection a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// The connection being replaced (still the feed's).
    Old,
    /// The replacement.
    New,
}

/// What to do with a message during a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Parse and publish it.
    Publish,
    /// Already published (from the other connection): drop it.
    Duplicate,
    /// From the replacement, beyond what was published: drop it, the old connection delivers it.
    Ahead,
}

/// A Binance message's ids, as the splice orders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ids {
    /// Contiguous per-stream event id (trade `t`, aggTrade `a`).
    Event(u64),
    /// Depth diff: first `U`, final `u`, futures previous final `pu`.
    Diff {
        first: u64,
        last: u64,
        prev: Option<u64>,
    },
    /// Monotonic state id (bookTicker `u`, markPrice `E`): newer wins.
    State(u64),
    /// No id: the message text's hash.
    Content(u64),
}

/// One stream's splice state.
#[derive(Debug, Default)]
struct Stream {
    /// Last id published (trade/state id, depth `u`).
    last: u64,
    /// The old connection published on it since the rotation began.
    active: bool,
    /// The replacement delivered a message overlapping or continuing `last`.
    proven: bool,
    /// After the switch: the replacement published past `last`.
    caught_up: bool,
}

/// The overlap de-duplication of one rotation (see the module doc).
#[derive(Debug, Default)]
pub struct Splice {
    streams: FxHashMap<Box<str>, Stream>,
    content: FxHashSet<u64>,
    content_order: VecDeque<u64>,
    /// The old connection is closed: only the replacement's messages come now.
    switched: bool,
}

impl Splice {
    /// Decides what to do with `raw`, received on `conn`, and records it when published.
    /// Messages that are not combined-stream data (acks, errors) are always published: the
    /// parser counts them.
    pub fn admit(&mut self, conn: Conn, raw: &str) -> Verdict {
        let Some((name, ids)) = binance_ids(raw) else {
            return Verdict::Publish;
        };
        if let Ids::Content(h) = ids {
            if self.content.contains(&h) {
                return Verdict::Duplicate;
            }
            if self.content_order.len() >= CONTENT_HASHES {
                if let Some(old) = self.content_order.pop_front() {
                    self.content.remove(&old);
                }
            }
            self.content.insert(h);
            self.content_order.push_back(h);
            return Verdict::Publish;
        }
        let s = match self.streams.get_mut(name) {
            Some(s) => s,
            None if conn == Conn::Old => self.streams.entry(name.into()).or_default(),
            // After the switch, a stream the old connection never published on is the
            // replacement's alone.
            None if self.switched => return Verdict::Publish,
            // Nothing of it published since the rotation began: the old connection delivers it.
            None => return Verdict::Ahead,
        };
        let known = s.active || s.proven;
        let (newest, dup, continues) = match ids {
            Ids::Event(id) => (id, known && id <= s.last, id == s.last.wrapping_add(1)),
            Ids::Diff { first, last, prev } => (
                last,
                known && last <= s.last,
                match prev {
                    Some(pu) => pu <= s.last,
                    None => first <= s.last.saturating_add(1),
                },
            ),
            Ids::State(id) => (id, known && id <= s.last, true),
            Ids::Content(_) => return Verdict::Publish, // handled above
        };
        match conn {
            Conn::Old => {
                s.active = true;
                if dup {
                    return Verdict::Duplicate;
                }
                s.last = newest;
                Verdict::Publish
            }
            Conn::New => {
                if dup {
                    s.proven = true;
                    return Verdict::Duplicate;
                }
                // After the switch no other connection can deliver it: a real break, which the
                // parser reports (depth) like on any connection.
                if !continues && !self.switched {
                    return Verdict::Ahead;
                }
                s.proven = true;
                s.last = newest;
                if self.switched {
                    s.caught_up = true;
                }
                Verdict::Publish
            }
        }
    }

    /// True when the replacement can take over: every stream the old connection published on
    /// during the overlap is proven on it, and at least one is.
    pub fn ready(&self) -> bool {
        let mut any = false;
        for s in self.streams.values() {
            if s.active && !s.proven {
                return false;
            }
            any |= s.proven;
        }
        any
    }

    /// The old connection is closed.
    pub fn switched(&mut self) {
        self.switched = true;
    }

    /// After the switch: true once every proven stream has moved past the old connection's
    /// last message (the filter is no longer needed).
    pub fn settled(&self) -> bool {
        self.streams.values().all(|s| !s.proven || s.caught_up)
    }
}

/// A collector session's rotation schedule and state (see the module doc).
pub(crate) struct Rotor {
    /// `rotate_after`, ns; `None`: never.
    every: Option<u64>,
    /// The deadline of a replacement to prove itself, ns.
    prove_within: u64,
    /// No rotation starts before this (monotonic ns).
    next_at: u64,
    /// The `rotate-<feed>` thread's handshake, under way.
    pending: Option<Handshake>,
    /// After a switch: the replacement's copies still filtered, until the given instant.
    settling: Option<(Splice, u64)>,
}

/// A replacement's handshake under way on its `rotate-<feed>` thread: its result, the thread.
struct Handshake(Receiver<Result<Ws, FeedError>>, thread::JoinHandle<()>);

impl Drop for Rotor {
    /// Joins a handshake thread still running (the session ended during a rotation): it ends
    /// within the connect timeout, sooner on stop.
    fn drop(&mut self) {
        if let Some(Handshake(rx, thread)) = self.pending.take() {
            drop(rx);
            let _ = thread.join();
        }
    }
}

impl Rotor {
    /// The schedule of a connection of `cfg` made at `connected_at` (monotonic ns).
    pub(crate) fn new(cfg: &FeedConfig, connected_at: u64) -> Self {
        let every = cfg.rotate_after.map(|d| d.as_nanos() as u64);
        Rotor {
            every,
            prove_within: every.map_or(0, |e| e.min(cfg.stale_after.as_nanos() as u64)),
            next_at: every.map_or(u64::MAX, |e| connected_at.saturating_add(e)),
            pending: None,
            settling: None,
        }
    }

    /// A rotation is due or under way at `now`.
    #[inline]
    pub(crate) fn due(&self, now: u64) -> bool {
        (now >= self.next_at && self.settling.is_none()) || self.pending.is_some()
    }

    /// After a switch: true when `raw`, from the replacement, is a copy of what the old
    /// connection published (dropped and counted). The filter ends once settled.
    #[inline]
    pub(crate) fn drops_copy(&mut self, raw: &str, now: u64, out: &Publisher) -> bool {
        let Some((splice, until)) = &mut self.settling else {
            return false;
        };
        let drop = splice.admit(Conn::New, raw) != Verdict::Publish;
        if drop {
            out.stats().collector.rotation_duplicates.inc();
        }
        if splice.settled() || now >= *until {
            self.settling = None;
        }
        drop
    }

    fn retry_later(&mut self, now: u64) {
        let retry = RETRY.as_nanos() as u64;
        self.next_at = now.saturating_add(self.every.map_or(retry, |e| e.min(retry)));
    }
}

impl Collector {
    /// Advances a due rotation of the connection `ws`: starts the replacement's handshake, or
    /// when it is done, subscribes and runs the overlap. Returns true when the replacement took
    /// over (`ws` is now it); Err when the old connection died during the overlap.
    pub(crate) fn rotate(
        &mut self,
        ws: &mut Ws,
        rotor: &mut Rotor,
        now: u64,
        last_data: &mut u64,
    ) -> Result<bool, FeedError> {
        let Some(every) = rotor.every else {
            return Ok(false);
        };
        let Some(Handshake(rx, _)) = &rotor.pending else {
            rotor.pending = self.spawn_handshake();
            if rotor.pending.is_none() {
                self.rotation_failed(rotor, now, "cannot start the rotation thread");
            }
            return Ok(false);
        };
        let new = match rx.try_recv() {
            Err(TryRecvError::Empty) => return Ok(false),
            Err(TryRecvError::Disconnected) => Err("the rotation thread ended".to_owned()),
            Ok(r) => r.map_err(|e| e.to_string()),
        };
        if let Some(Handshake(_, thread)) = rotor.pending.take() {
            // It has sent its result (or ended): the join does not wait.
            let _ = thread.join();
        }
        let new = match new {
            Ok(new) => new,
            Err(why) => {
                self.rotation_failed(rotor, now, &why);
                return Ok(false);
            }
        };
        let deadline = clock::mono_ns().saturating_add(rotor.prove_within);
        match self.overlap(ws, new, deadline, last_data)? {
            Ok((new, splice)) => {
                let old = std::mem::replace(ws, new);
                close(old);
                let c = &self.out.stats().collector;
                c.rotations.inc();
                c.connects.inc();
                let now = clock::mono_ns();
                rotor.settling = Some((splice, now.saturating_add(SETTLE.as_nanos() as u64)));
                rotor.next_at = now.saturating_add(every);
                tracing::info!(feed = %self.cfg.name, "rotated to a new connection (make-before-break)");
                Ok(true)
            }
            // Shutting down is not a failed rotation.
            Err(_) if self.stop.is_stopped() => Ok(false),
            Err(why) => {
                self.rotation_failed(rotor, clock::mono_ns(), &why);
                Ok(false)
            }
        }
    }

    fn rotation_failed(&mut self, rotor: &mut Rotor, now: u64, why: &str) {
        self.out.stats().collector.rotation_failures.inc();
        rotor.retry_later(now);
        tracing::warn!(feed = %self.cfg.name, "rotation failed, the old connection goes on: {why}");
    }

    /// Starts the replacement's handshake on a `rotate-<feed>` thread.
    fn spawn_handshake(&self) -> Option<Handshake> {
        let (tx, rx) = mpsc::sync_channel(1);
        let url = self.cfg.url.clone();
        let timeout = self.cfg.connect_timeout;
        let tls = self.tls.clone();
        let stop = self.stop.clone();
        let thread = thread::Builder::new()
            .name(format!("rotate-{}", self.cfg.name))
            .spawn(move || {
                // The collector may have moved on (stop, old connection lost): then the socket
                // is simply dropped.
                let _ = tx.send(collector::connect(&url, timeout, tls, &stop));
            })
            .ok()?;
        Some(Handshake(rx, thread))
    }

    /// Subscribes on `new` and reads both connections through a [`Splice`] until the
    /// replacement proves itself (Ok(Ok): switch), fails or misses `deadline` (Ok(Err): why;
    /// `new` is closed), or the old connection dies (Err).
    fn overlap(
        &mut self,
        old: &mut Ws,
        mut new: Ws,
        deadline: u64,
        last_data: &mut u64,
    ) -> Result<Result<(Ws, Splice), String>, FeedError> {
        for req in self.parser.subscribe_requests(&self.cfg.subscription) {
            if let Err(e) = Collector::send_text(&mut new, req) {
                close(new);
                return Ok(Err(e.to_string()));
            }
        }
        let socks = (
            tcp_of(old.get_ref()).map(TcpStream::try_clone),
            tcp_of(new.get_ref()).map(TcpStream::try_clone),
        );
        let (Some(Ok(a)), Some(Ok(b))) = socks else {
            close(new);
            return Ok(Err("no socket to poll".into()));
        };
        if let Err(e) = a.set_nonblocking(true).and(b.set_nonblocking(true)) {
            let _ = a.set_nonblocking(false);
            close(new);
            return Ok(Err(e.to_string()));
        }
        let mut splice = Splice::default();
        let r = self.overlap_loop(old, &mut new, (&a, &b), &mut splice, deadline, last_data);
        let restored = a.set_nonblocking(false).and(b.set_nonblocking(false));
        match r {
            Ok(None) => match restored {
                Ok(()) => Ok(Ok((new, splice))),
                Err(e) => Err(FeedError::Lost(e.to_string())),
            },
            Ok(Some(why)) => {
                close(new);
                restored.map_err(|e| FeedError::Lost(e.to_string()))?;
                Ok(Err(why))
            }
            Err(e) => Err(e),
        }
    }

    /// The overlap's reads; Ok(None): the replacement is proven, Ok(Some(why)): it failed.
    fn overlap_loop(
        &mut self,
        old: &mut Ws,
        new: &mut Ws,
        socks: (&TcpStream, &TcpStream),
        splice: &mut Splice,
        deadline: u64,
        last_data: &mut u64,
    ) -> Result<Option<String>, FeedError> {
        loop {
            if self.stop.is_stopped() {
                return Ok(Some("stopping".into()));
            }
            if self.out.consumer_gone() {
                return Err(FeedError::ConsumerGone);
            }
            if self.open_interest.as_ref().is_some_and(|rx| !rx.is_empty()) {
                self.publish_open_interest();
            }
            let mut busy = false;
            for _ in 0..BURST {
                match old.read() {
                    Ok(Message::Text(t)) => {
                        busy = true;
                        let t_recv = clock::mono_ns();
                        if self.spliced(splice, Conn::Old, t.as_str(), t_recv) {
                            *last_data = t_recv;
                        }
                        for m in std::mem::take(&mut self.outgoing) {
                            send_buffered(old, m)?;
                        }
                    }
                    Ok(Message::Close(_)) => {
                        return Err(FeedError::Lost("venue closed during a rotation".into()))
                    }
                    Ok(Message::Binary(b)) => {
                        busy = true;
                        let c = &self.out.stats().collector;
                        c.frames.inc();
                        c.bytes.add(b.len() as u64);
                        c.parse_errors.inc();
                    }
                    Ok(_) => busy = true,
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Err(FeedError::Lost(e.to_string())),
                }
            }
            for _ in 0..BURST {
                match new.read() {
                    Ok(Message::Text(t)) => {
                        busy = true;
                        let t_recv = clock::mono_ns();
                        self.spliced(splice, Conn::New, t.as_str(), t_recv);
                        for m in std::mem::take(&mut self.outgoing) {
                            send_buffered(old, m)?;
                        }
                    }
                    Ok(Message::Close(_)) => return Ok(Some("replacement closed".into())),
                    Ok(_) => busy = true,
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Ok(Some(format!("replacement lost: {e}"))),
                }
            }
            if splice.ready() {
                splice.switched();
                return Ok(None);
            }
            if clock::mono_ns() >= deadline {
                return Ok(Some(
                    "the replacement did not continue the stream in time \
                     (stale_after_ms, or rotate_after_ms if shorter)"
                        .into(),
                ));
            }
            if !busy {
                self.out.flush_pending();
                if !self.snapshot_requests.is_empty() {
                    self.fetch_snapshots();
                }
                wait_either(socks.0, socks.1, POLL_INTERVAL)
                    .map_err(|e| FeedError::Lost(e.to_string()))?;
            }
        }
    }

    /// Passes `raw` from `conn` through the splice: parsed and published (true when it carried
    /// market data), or dropped as a copy and counted.
    fn spliced(&mut self, splice: &mut Splice, conn: Conn, raw: &str, t_recv: u64) -> bool {
        match splice.admit(conn, raw) {
            Verdict::Publish => self.on_text(raw, t_recv),
            Verdict::Duplicate | Verdict::Ahead => {
                self.out.stats().collector.rotation_duplicates.inc();
                false
            }
        }
    }
}

/// Sends on a non-blocking socket: a frame that does not fit now stays in tungstenite's buffer
/// and goes with the next read or write.
fn send_buffered(ws: &mut Ws, text: String) -> Result<(), FeedError> {
    match ws.send(Message::text(text)) {
        Err(e) if would_block(&e) => Ok(()),
        r => r.map_err(|e| FeedError::Lost(format!("send: {e}"))),
    }
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// Closes a connection, best effort (the venue may already be gone).
fn close(mut ws: Ws) {
    let _ = ws.close(None);
    let _ = ws.flush();
}

/// The stream name and ids of a Binance combined-stream message
/// (`{"stream":"ethusdt@trade","data":{…}}`); `None` for anything else.
fn binance_ids(raw: &str) -> Option<(&str, Ids)> {
    let rest = raw.strip_prefix("{\"stream\":\"")?;
    let end = rest.find('"')?;
    let name = &rest[..end];
    let data = &rest[end..];
    let data = &data[data.find("\"data\":")?..];
    let kind = name.split('@').nth(1)?;
    let ids = match kind {
        "trade" => Ids::Event(number(data, "\"t\":")?),
        "aggTrade" => Ids::Event(number(data, "\"a\":")?),
        "bookTicker" => Ids::State(number(data, "\"u\":")?),
        "markPrice" => Ids::State(number(data, "\"E\":")?),
        "depth" => Ids::Diff {
            first: number(data, "\"U\":")?,
            last: number(data, "\"u\":")?,
            prev: number(data, "\"pu\":"),
        },
        _ => {
            let mut h = FxHasher::default();
            data.hash(&mut h);
            Ids::Content(h.finish())
        }
    };
    Some((name, ids))
}

/// The unsigned integer after `key` (`"t":`) in `s`.
fn number(s: &str, key: &str) -> Option<u64> {
    let at = s.find(key)? + key.len();
    let digits = s[at..].bytes().take_while(u8::is_ascii_digit).count();
    s[at..at + digits].parse().ok()
}

/// The TCP socket under a WebSocket (plain or rustls).
pub(crate) fn tcp_of(s: &MaybeTlsStream<TcpStream>) -> Option<&TcpStream> {
    match s {
        MaybeTlsStream::Plain(t) => Some(t),
        MaybeTlsStream::Rustls(t) => Some(t.get_ref()),
        _ => None,
    }
}

/// Waits up to `timeout` for either socket to become readable (or fail).
pub(crate) fn wait_either(a: &TcpStream, b: &TcpStream, timeout: Duration) -> io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let ts = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let mut fds = [PollFd::new(a, PollFlags::IN), PollFd::new(b, PollFlags::IN)];
    match poll(&mut fds, Some(&ts)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(t: u64) -> String {
        format!(
            r#"{{"stream":"ethusdt@trade","data":{{"e":"trade","E":1,"s":"ETHUSDT","t":{t},"p":"1.0","q":"1.0","T":1,"m":true,"M":true}}}}"#
        )
    }

    fn depth(first: u64, last: u64) -> String {
        format!(
            r#"{{"stream":"ethusdt@depth@100ms","data":{{"e":"depthUpdate","E":1,"s":"ETHUSDT","U":{first},"u":{last},"b":[["1.0","2.0"]],"a":[]}}}}"#
        )
    }

    fn futures_depth(first: u64, last: u64, prev: u64) -> String {
        format!(
            r#"{{"stream":"ethusdt@depth@0ms","data":{{"e":"depthUpdate","E":1,"T":1,"s":"ETHUSDT","U":{first},"u":{last},"pu":{prev},"b":[],"a":[]}}}}"#
        )
    }

    fn ticker(u: u64) -> String {
        format!(
            r#"{{"stream":"ethusdt@bookTicker","data":{{"u":{u},"s":"ETHUSDT","b":"1.0","B":"1.0","a":"2.0","A":"1.0"}}}}"#
        )
    }

    use Conn::{New, Old};
    use Verdict::{Ahead, Duplicate, Publish};

    #[test]
    fn ids_are_read_from_each_stream_kind() {
        assert_eq!(
            binance_ids(&trade(7)),
            Some(("ethusdt@trade", Ids::Event(7)))
        );
        assert_eq!(
            binance_ids(&depth(5, 9)).map(|x| x.1),
            Some(Ids::Diff {
                first: 5,
                last: 9,
                prev: None
            })
        );
        assert_eq!(
            binance_ids(&futures_depth(5, 9, 4)).map(|x| x.1),
            Some(Ids::Diff {
                first: 5,
                last: 9,
                prev: Some(4)
            })
        );
        assert_eq!(binance_ids(&ticker(3)).map(|x| x.1), Some(Ids::State(3)));
        assert!(matches!(
            binance_ids(r#"{"stream":"ethusdt@forceOrder","data":{"e":"forceOrder"}}"#),
            Some((_, Ids::Content(_)))
        ));
        for bad in [
            r#"{"result":null,"id":1}"#,
            r#"{"stream":"ethusdt@trade","data":{"t":"x"}}"#,
            r#"{"stream":"ethusdt@trade"#,
            "",
        ] {
            assert_eq!(binance_ids(bad), None, "{bad}");
        }
    }

    #[test]
    fn trades_across_the_overlap_are_published_once_in_order() {
        let mut s = Splice::default();
        let mut published = Vec::new();
        let mut feed = |s: &mut Splice, conn, t| {
            let v = s.admit(conn, &trade(t));
            if v == Publish {
                published.push(t);
            }
            v
        };
        assert_eq!(feed(&mut s, Old, 10), Publish);
        assert_eq!(
            feed(&mut s, New, 12),
            Ahead,
            "beyond 10 + 1: the old connection has it"
        );
        assert!(!s.ready());
        assert_eq!(feed(&mut s, Old, 11), Publish);
        assert_eq!(feed(&mut s, Old, 12), Publish);
        assert_eq!(feed(&mut s, New, 12), Duplicate);
        assert!(s.ready(), "the replacement overlaps the published stream");
        assert_eq!(feed(&mut s, New, 13), Publish, "the replacement may lead");
        assert_eq!(feed(&mut s, Old, 13), Duplicate);
        s.switched();
        assert!(!s.settled(), "13 came before the switch");
        assert_eq!(feed(&mut s, New, 14), Publish);
        assert!(s.settled());
        assert_eq!(published, [10, 11, 12, 13, 14]);
    }

    #[test]
    fn the_switch_waits_for_every_active_stream() {
        let mut s = Splice::default();
        assert_eq!(s.admit(Old, &trade(1)), Publish);
        assert_eq!(s.admit(Old, &depth(100, 105)), Publish);
        assert_eq!(s.admit(New, &trade(1)), Duplicate);
        assert!(!s.ready(), "depth not proven yet");
        assert_eq!(s.admit(New, &depth(106, 110)), Publish);
        assert!(s.ready());
        // The old connection's copy of the diff the replacement delivered first.
        assert_eq!(s.admit(Old, &depth(106, 110)), Duplicate);
        // A stream the old connection never published on in the overlap waits for it.
        assert_eq!(s.admit(New, &ticker(5)), Ahead);
        assert!(s.ready(), "quiet streams do not hold the switch");
        s.switched();
        assert_eq!(
            s.admit(New, &ticker(5)),
            Publish,
            "after the switch it is the only source"
        );
        assert_eq!(
            s.admit(New, &depth(120, 125)),
            Publish,
            "a real break goes to the parser"
        );
        assert!(!Splice::default().ready(), "nothing proven yet");
    }

    #[test]
    fn depth_ids_bridge_by_the_spot_and_futures_rules() {
        let mut s = Splice::default();
        assert_eq!(s.admit(Old, &depth(100, 105)), Publish);
        assert_eq!(s.admit(New, &depth(107, 110)), Ahead, "U > last + 1");
        assert_eq!(s.admit(New, &depth(95, 100)), Duplicate, "u <= last");
        assert_eq!(
            s.admit(New, &depth(104, 108)),
            Publish,
            "U <= last + 1 < u + 1"
        );
        assert_eq!(s.admit(Old, &depth(106, 108)), Duplicate);
        let mut f = Splice::default();
        assert_eq!(f.admit(Old, &futures_depth(90, 100, 80)), Publish);
        assert_eq!(
            f.admit(New, &futures_depth(105, 110, 101)),
            Ahead,
            "pu > last"
        );
        assert_eq!(
            f.admit(New, &futures_depth(101, 110, 100)),
            Publish,
            "pu = last"
        );
        assert_eq!(f.admit(Old, &futures_depth(101, 110, 100)), Duplicate);
        assert!(f.ready());
    }

    #[test]
    fn quotes_are_state_and_idless_messages_dedupe_by_text() {
        let mut s = Splice::default();
        assert_eq!(s.admit(Old, &ticker(10)), Publish);
        assert_eq!(s.admit(New, &ticker(15)), Publish, "newer state wins");
        assert_eq!(s.admit(Old, &ticker(12)), Duplicate, "stale");
        assert_eq!(s.admit(New, &ticker(15)), Duplicate);
        let liq = r#"{"stream":"ethusdt@forceOrder","data":{"e":"forceOrder","E":5}}"#;
        assert_eq!(s.admit(Old, liq), Publish);
        assert_eq!(s.admit(New, liq), Duplicate);
        assert_eq!(
            s.admit(New, r#"{"result":null,"id":2}"#),
            Publish,
            "acks pass"
        );
    }
}
