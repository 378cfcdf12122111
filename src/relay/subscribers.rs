//! The set of connected subscribers with their outbound buffers (the socket itself is bound
//! by [`crate::relay::socket`]).
//!
//! Two owners. The acceptor thread (`relay-accept`, [`crate::relay::acceptor`]) owns the listening
//! socket and reads subscription requests. The consumer thread owns [`Subscribers`]: each
//! subscriber's selection (the union of its subscriptions, or everything), its bounded outbound
//! buffer, and its socket's writing side. Frames are appended to the buffers of the subscribers
//! that selected them and written with one non-blocking `write` per subscriber per consumer
//! turn (or fewer: the consumer may hold a turn's frames back to coalesce them), so frames
//! arriving in a burst share a syscall. A subscriber whose live backlog would exceed
//! `max_pending_bytes` is closed as too slow (counted): its unsent backlog is discarded at a frame
//! boundary, a `too_slow` status takes its place, and the connection is shut once that status
//! is written (or after `drain_timeout_ms` if its client never reads again). Its join snapshot
//! does not count as backlog (it is exempt, not paced). One that hangs up is removed. Neither
//! ever blocks the consumer or delays the others. Frames are length-delimited by their header,
//! never split, never interleaved.

use std::io::{ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::base::stats::RelayCounters;
use crate::market::event::StatusCode;
use crate::market::instrument::InstrumentId;
use crate::relay::acceptor::{self, encode_reply};
use crate::relay::cache::Cache;
use crate::wire::protocol::{self, FrameBuf, Message, MsgType, RELAY_VENUE};
use crate::wire::subscription::{self, kinds, Filter, Request};

/// Why a subscriber was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Its live backlog would have exceeded the limit: it gets no more frames, and is removed
    /// once its `too_slow` status is written, or at the deadline.
    TooSlow(Instant),
    /// It hung up or the socket failed.
    Closed,
    /// It sent a malformed or oversized request: it gets no more frames, and is removed once
    /// what it was owed (the answers before the `request_error`, then that) is written, or at the
    /// deadline.
    Refused(Instant),
}

/// What a filtered subscriber receives (a subscriber with none receives everything).
#[derive(Debug, Default)]
struct Selection {
    /// Its subscriptions; the stream is their union.
    filters: Vec<Filter>,
    /// Instrument → [`kinds`] selected by the filters, for every selected instrument.
    ids: FxHashMap<InstrumentId, u8>,
    /// Instruments whose definition this connection has received (at most once each).
    defined: FxHashSet<InstrumentId>,
}

impl Selection {
    /// Kinds the filters select for `venue:symbol` (0: none).
    fn mask(&self, venue: &str, symbol: &str) -> u8 {
        self.filters
            .iter()
            .filter(|f| f.matches(venue, symbol))
            .fold(0, |m, f| m | f.kinds)
    }

    /// True when frames of `msg_type` about `id` (0: feed-wide, `venue` from the payload) go
    /// to this subscriber.
    #[inline]
    fn wants(&self, h: &protocol::Header, frame: &[u8]) -> bool {
        let Some(kind) = subscription::kind_of(h.msg_type) else {
            // Heartbeats and unknown types: everyone; definitions are sent when selected.
            return MsgType::from_code(h.msg_type) != Some(MsgType::InstrumentDef);
        };
        if h.instrument_id != 0 {
            return self
                .ids
                .get(&h.instrument_id)
                .is_some_and(|m| m & kind != 0);
        }
        match protocol::decode_frame(frame).map(|(f, _)| f.message()) {
            Ok(Ok(Message::Status { venue, .. })) => {
                venue == RELAY_VENUE || self.filters.iter().any(|f| f.wants_feed_status(venue))
            }
            _ => true,
        }
    }
}

/// One connected subscriber.
#[derive(Debug)]
struct Subscriber {
    stream: UnixStream,
    /// Outbound bytes, whole frames back to back from offset 0; `out[pos..]` is unwritten. Its
    /// unwritten length, less the exempt snapshot, is always ≤ the limit.
    out: Vec<u8>,
    /// Bytes of `out` already written; ≤ `out.len()`.
    pos: usize,
    /// The end of the last frame written completely: a frame boundary, ≤ `pos`; `out[done..pos]`
    /// is the written part of the frame being written.
    done: usize,
    /// `out[exempt.0..exempt.1]` is a snapshot (join, or cached state a request added) that
    /// does not count against the limit; `exempt.0 ≤ exempt.1 ≤ out.len()`.
    exempt: (usize, usize),
    /// Set when the subscriber must be removed at the end of the turn.
    gone: Option<Gone>,
    /// Serial number, for logs and metrics.
    serial: u64,
    /// Frames queued for it (join snapshot not counted).
    frames: u64,
    /// Bytes written to it.
    bytes: u64,
    /// Writes that carried at least one byte to it.
    writes: u64,
    /// Frames whose last byte has been written to it.
    frames_written: u64,
    /// `None`: everything.
    sel: Option<Box<Selection>>,
    /// Lossy delivery (some subscription asked for it): fall behind → skip, not close.
    lossy: bool,
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
    /// Writes that carried at least one byte to it.
    pub writes: u64,
    /// Frames written completely to it (`frames_written / writes`: frames per write).
    pub frames_written: u64,
}

impl Subscriber {
    fn new(stream: UnixStream, serial: u64, out: Vec<u8>, sel: Option<Box<Selection>>) -> Self {
        let lossy = sel
            .as_ref()
            .is_some_and(|s| s.filters.iter().any(|f| f.lossy));
        Subscriber {
            stream,
            frames: count_frames(&out),
            // The whole join (answers, snapshot) is exempt from the limit.
            exempt: (0, out.len()),
            out,
            pos: 0,
            done: 0,
            gone: None,
            serial,
            bytes: 0,
            writes: 0,
            frames_written: 0,
            sel,
            lossy,
        }
    }

    #[inline]
    fn pending(&self) -> usize {
        self.out.len() - self.pos
    }

    /// Unwritten bytes of the exempt snapshot.
    #[inline]
    fn exempt_pending(&self) -> usize {
        self.exempt.1.saturating_sub(self.pos.max(self.exempt.0))
    }

    /// Unwritten bytes that count against the limit: everything but the exempt snapshot.
    #[inline]
    fn lag(&self) -> usize {
        self.pending() - self.exempt_pending()
    }

    /// The end of the frame being written (`pos` itself when it is at a frame boundary): what
    /// lies after it can be discarded without breaking the stream's framing.
    fn frame_end(&self) -> usize {
        if self.done == self.pos || self.done >= self.out.len() {
            return self.pos;
        }
        self.done + own_frame_len(&self.out[self.done..])
    }

    /// True while frames may be queued for it.
    #[inline]
    fn live(&self) -> bool {
        self.gone.is_none()
    }

    /// One non-blocking write of everything pending (also for a closing subscriber, whose last
    /// bytes are its `too_slow` status).
    #[inline]
    fn flush(&mut self, counters: &RelayCounters) {
        if self.gone == Some(Gone::Closed) || self.pending() == 0 {
            return;
        }
        loop {
            counters.writes.inc();
            match self.stream.write(&self.out[self.pos..]) {
                Ok(0) => {
                    self.hung_up();
                    return;
                }
                Ok(n) => {
                    self.pos += n;
                    self.bytes += n as u64;
                    self.writes += 1;
                    counters.bytes_sent.add(n as u64);
                    let written = self.advance_done();
                    self.frames_written += written;
                    counters.frames_written.add(written);
                    if self.pos == self.out.len() {
                        self.out.clear();
                        self.pos = 0;
                        self.done = 0;
                        self.exempt = (0, 0);
                    } else if self.done >= self.out.len() / 2 {
                        // Drop the written frames (to a frame boundary: `out` starts with one).
                        let d = self.done;
                        self.out.drain(..d);
                        self.pos -= d;
                        self.done = 0;
                        self.exempt = (
                            self.exempt.0.saturating_sub(d),
                            self.exempt.1.saturating_sub(d),
                        );
                    }
                    return;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.hung_up();
                    return;
                }
            }
        }
    }

    /// The peer is gone: a closing subscriber has nothing left to write (it is removed, counted
    /// once, as what it was closed for); any other is closed.
    fn hung_up(&mut self) {
        if matches!(self.gone, Some(Gone::TooSlow(_) | Gone::Refused(_))) {
            self.out.clear();
            self.pos = 0;
            self.done = 0;
            self.exempt = (0, 0);
        } else {
            self.gone = Some(Gone::Closed);
        }
    }

    /// Moves `done` over every frame `pos` has passed; returns how many.
    #[inline]
    fn advance_done(&mut self) -> u64 {
        let mut n = 0;
        while self.done < self.pos {
            let end = self.done + own_frame_len(&self.out[self.done..]);
            if end > self.pos {
                break;
            }
            self.done = end;
            n += 1;
        }
        n
    }

    /// Lossy catch-up: drops every frame not yet started (but not the exempt snapshot, nor
    /// instrument definitions), queues a `dropped` status with their count. Returns the count.
    fn skip_unwritten(&mut self) -> u64 {
        let keep = self.frame_end().max(self.exempt.1.min(self.out.len()));
        // Every skipped frame counts one; an earlier skip report that is itself skipped passes
        // its count on, so the reports a client does receive add up to everything skipped.
        // Definitions are kept (moved down), never skipped: a later frame of the instrument
        // must not arrive without one.
        let mut n = 0u64;
        let (mut at, mut to) = (keep, keep);
        while at < self.out.len() {
            let len = own_frame_len(&self.out[at..]);
            if MsgType::from_code(self.out[at + 5]) == Some(MsgType::InstrumentDef) {
                self.out.copy_within(at..at + len, to);
                to += len;
            } else {
                n += 1 + skip_report_count(&self.out[at..at + len]);
            }
            at += len;
        }
        self.out.truncate(to);
        let mut buf = FrameBuf::new();
        encode_reply(
            &mut buf,
            StatusCode::Dropped,
            n,
            "frames skipped: this lossy connection fell relay.max_pending_bytes behind",
        );
        self.out.extend_from_slice(&buf);
        self.frames += 1;
        n
    }

    /// Too slow: discards the unsent backlog after the frame being written, queues the
    /// `too_slow` status in its place (so it fits however full the socket is), and marks the
    /// subscriber closing until `deadline`. The kernel socket buffer gets a little more room,
    /// where the system allows, so the status usually goes out at once.
    fn start_closing(&mut self, deadline: Instant, counters: &RelayCounters) {
        let keep = self.frame_end();
        let discarded = self.out.len() - keep;
        self.out.truncate(keep);
        self.exempt = (self.exempt.0.min(keep), self.exempt.1.min(keep));
        let mut buf = FrameBuf::new();
        encode_reply(
            &mut buf,
            StatusCode::TooSlow,
            discarded as u64,
            "disconnected: unread bytes over relay.max_pending_bytes (backlog discarded)",
        );
        self.out.extend_from_slice(&buf);
        self.frames += 1;
        self.gone = Some(Gone::TooSlow(deadline));
        counters.slow_disconnects.inc();
        tracing::warn!(
            subscriber = self.serial,
            discarded_bytes = discarded,
            "subscriber disconnected: too slow (pending bytes over relay.max_pending_bytes)"
        );
        // SO_SNDBUF is doubled by the kernel and capped by net.core.wmem_max: asking for half
        // the current size plus a few KiB adds that much room (best effort).
        if let Ok(cur) = rustix::net::sockopt::socket_send_buffer_size(&self.stream) {
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(
                &self.stream,
                cur / 2 + 4 * buf.len().max(1024),
            );
        }
        self.flush(counters);
    }
}

/// Length of a frame the relay queued itself (its header is known good).
#[inline]
fn own_frame_len(buf: &[u8]) -> usize {
    // Payload length: u32 LE at header offset 8 (docs/PROTOCOL.md §2).
    let len = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    protocol::HEADER_LEN + len as usize + protocol::TRAILER_LEN
}

/// The count of a lossy skip report (a relay `dropped` status), 0 for any other frame.
fn skip_report_count(frame: &[u8]) -> u64 {
    let h = protocol::peek_header(frame);
    if h.instrument_id != 0 || MsgType::from_code(h.msg_type) != Some(MsgType::Status) {
        return 0;
    }
    match protocol::decode_frame(frame).map(|(f, _)| f.message()) {
        Ok(Ok(Message::Status { venue, status }))
            if venue == RELAY_VENUE && status.code == StatusCode::Dropped =>
        {
            status.count
        }
        _ => 0,
    }
}

/// Frames in `buf` (whole frames back to back).
fn count_frames(buf: &[u8]) -> u64 {
    let (mut at, mut n) = (0, 0);
    while at < buf.len() {
        match protocol::frame_len(&buf[at..]) {
            Ok(len) => at += len,
            Err(_) => break,
        }
        n += 1;
    }
    n
}

/// What a subscriber may hold back, and how long a closing one is given.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Most unwritten bytes (its exempt snapshot aside) before it is too slow.
    max_pending_bytes: usize,
    /// How long a subscriber closed as too slow may take to read its `too_slow` status.
    close_timeout: Duration,
}

/// The connected subscribers. Owned by the consumer thread.
#[derive(Debug)]
pub struct Subscribers {
    subs: Vec<Subscriber>,
    limits: Limits,
    counters: Arc<RelayCounters>,
    /// Subscribers with a selection (0: every frame goes to everyone, the fast path).
    filtered: usize,
    /// True when some subscriber is marked gone (or closing).
    any_gone: bool,
}

impl Subscribers {
    /// An empty set with the given per-subscriber limit; a subscriber closed as too slow gets
    /// `close_timeout` to take its `too_slow` status.
    pub fn new(
        max_pending_bytes: usize,
        close_timeout: Duration,
        counters: Arc<RelayCounters>,
    ) -> Self {
        Subscribers {
            subs: Vec::new(),
            limits: Limits {
                max_pending_bytes,
                close_timeout,
            },
            counters,
            filtered: 0,
            any_gone: false,
        }
    }

    /// Admits a subscriber with the requests it sent before admission (its hello window), in
    /// order. Without any it gets everything: its join snapshot is every definition, then the
    /// cached books, quotes, trades and bars. With requests, each is answered in order
    /// (`request_ok` with the subscriptions then held, or `request_error`), exactly as a later
    /// request would be, and the join snapshot is what the resulting subscriptions select. The
    /// whole join is exempt from `max_pending_bytes`.
    pub fn add(&mut self, stream: UnixStream, serial: u64, requests: Vec<Request>, cache: &Cache) {
        let mut out = Vec::with_capacity(64 * 1024);
        let sel = if requests.is_empty() {
            cache.write_snapshot(&mut out);
            None
        } else {
            let mut sel = Box::<Selection>::default();
            answer(&mut sel.filters, requests, &mut out);
            snapshot_new(&mut sel, cache, &mut out);
            Some(sel)
        };
        self.filtered += usize::from(sel.is_some());
        self.subs.push(Subscriber::new(stream, serial, out, sel));
        self.counters.accepted.inc();
        self.counters.subscribers.set(self.subs.len() as u64);
        tracing::info!(subscriber = serial, "subscriber connected");
    }

    /// Applies requests subscriber `serial` sent after joining: each is acknowledged
    /// (`request_ok` with the number of subscriptions, or `request_error`), and instruments the
    /// change newly selects get their definition (once per connection) and cached state. That
    /// cached state is exempt from the limit unless an earlier exempt snapshot is still unwritten.
    pub fn apply(&mut self, serial: u64, requests: Vec<Request>, cache: &Cache) {
        let Some(s) = self.subs.iter_mut().find(|s| s.serial == serial) else {
            return;
        };
        if !s.live() {
            return;
        }
        let was_filtered = s.sel.is_some();
        let sel = s.sel.get_or_insert_with(|| {
            // Until now it had everything: every known definition was sent.
            let mut all = Box::new(Selection::default());
            cache.write_snapshot_selected(&mut Vec::new(), &mut |id, _, _| {
                all.defined.insert(id);
                (false, 0)
            });
            all
        });
        let at = s.out.len();
        answer(&mut sel.filters, requests, &mut s.out);
        snapshot_new(sel, cache, &mut s.out);
        let lossy = sel.filters.iter().any(|f| f.lossy);
        s.frames += count_frames(&s.out[at..]);
        if s.exempt_pending() == 0 {
            s.exempt = (at, s.out.len());
        }
        s.lossy = lossy;
        if !was_filtered {
            self.filtered += 1;
        }
    }

    /// Tells subscriber `serial` why it is being closed, tries to write that, and closes it.
    pub fn refuse(&mut self, serial: u64, reason: &str) {
        let Some(s) = self.subs.iter_mut().find(|s| s.serial == serial) else {
            return;
        };
        if !s.live() {
            return;
        }
        let mut buf = FrameBuf::new();
        encode_reply(&mut buf, StatusCode::RequestError, 0, reason);
        s.out.extend_from_slice(&buf);
        s.frames += 1;
        s.gone = Some(Gone::Refused(Instant::now() + self.limits.close_timeout));
        s.flush(&self.counters);
        self.any_gone = true;
    }

    /// Appends one frame to the buffer of every subscriber that selected it.
    #[inline]
    pub fn broadcast(&mut self, frame: &[u8]) {
        if self.filtered > 0 {
            return self.broadcast_filtered(frame);
        }
        for s in &mut self.subs {
            if !s.live() {
                continue;
            }
            push(s, frame, self.limits, &self.counters, &mut self.any_gone);
        }
    }

    #[inline(never)]
    fn broadcast_filtered(&mut self, frame: &[u8]) {
        let h = protocol::peek_header(frame);
        let is_def = MsgType::from_code(h.msg_type) == Some(MsgType::InstrumentDef);
        let name = if is_def {
            match protocol::decode_frame(frame).map(|(f, _)| f.message()) {
                Ok(Ok(Message::InstrumentDef { venue, symbol, .. })) => Some((venue, symbol)),
                _ => None,
            }
        } else {
            None
        };
        for s in &mut self.subs {
            if !s.live() {
                continue;
            }
            if let Some(sel) = &mut s.sel {
                if is_def {
                    let Some((venue, symbol)) = name else {
                        continue;
                    };
                    let mask = sel.mask(venue, symbol);
                    if mask == 0 || !sel.defined.insert(h.instrument_id) {
                        continue;
                    }
                    sel.ids.insert(h.instrument_id, mask);
                } else if !sel.wants(&h, frame) {
                    continue;
                }
            }
            push(s, frame, self.limits, &self.counters, &mut self.any_gone);
        }
    }

    /// Sends every subscriber the heartbeat `frame` (counted once, not per subscriber), its
    /// header `sequence` set to the frames this relay has queued for that connection before it
    /// (docs/PROTOCOL.md §6.4): a client that counts what it read can prove it missed nothing.
    pub fn broadcast_heartbeat(&mut self, frame: &[u8]) {
        self.counters.heartbeats.inc();
        let mut own = frame.to_vec();
        for s in &mut self.subs {
            if !s.live() || own.len() < protocol::HEADER_LEN + protocol::TRAILER_LEN {
                continue;
            }
            // Room first: a lossy skip queues its report before the heartbeat, which counts it.
            let (limits, c) = (self.limits, &self.counters);
            if !make_room(s, own.len(), limits, c, &mut self.any_gone) {
                continue;
            }
            own[16..24].copy_from_slice(&s.frames.to_le_bytes());
            protocol::reseal(&mut own);
            push(s, &own, limits, c, &mut self.any_gone);
        }
    }

    /// One write per subscriber with pending bytes; removes subscribers that are gone, and
    /// closing ones whose `too_slow` status is written (or whose deadline passed).
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
        let mut filtered_gone = 0;
        let mut closing = false;
        let mut now = None;
        self.subs.retain_mut(|s| {
            let Some(why) = s.gone else { return true };
            match why {
                Gone::TooSlow(deadline) | Gone::Refused(deadline) if s.pending() > 0 => {
                    // Closing: its last bytes (a status) are still being written.
                    if *now.get_or_insert_with(Instant::now) < deadline {
                        closing = true;
                        return true;
                    }
                    if matches!(why, Gone::TooSlow(_)) {
                        counters.too_slow_unsent.inc();
                        tracing::warn!(
                            subscriber = s.serial,
                            "too slow subscriber closed before its too_slow status was written"
                        );
                    }
                }
                _ => {}
            }
            match why {
                Gone::TooSlow(_) => {}
                Gone::Closed => {
                    counters.closed.inc();
                    tracing::info!(subscriber = s.serial, "subscriber disconnected");
                }
                Gone::Refused(_) => {
                    counters.refused_requests.inc();
                    tracing::info!(
                        subscriber = s.serial,
                        "subscriber closed after a bad request"
                    );
                }
            }
            // Also ends the acceptor's reading handle on this socket.
            let _ = s.stream.shutdown(std::net::Shutdown::Both);
            filtered_gone += usize::from(s.sel.is_some());
            false
        });
        self.filtered -= filtered_gone;
        self.any_gone = closing;
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
            writes: s.writes,
            frames_written: s.frames_written,
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

/// Appends `frame` to one subscriber, or closes it as too slow.
#[inline]
fn push(
    s: &mut Subscriber,
    frame: &[u8],
    limits: Limits,
    counters: &RelayCounters,
    any_gone: &mut bool,
) {
    if !make_room(s, frame.len(), limits, counters, any_gone) {
        return;
    }
    s.out.extend_from_slice(frame);
    s.frames += 1;
    counters.frames_sent.inc();
}

/// True when `len` more bytes fit in the subscriber's buffer (its exempt snapshot aside): at
/// once, or (lossy) after skipping its unwritten frames. Otherwise starts closing it as too slow.
#[inline]
fn make_room(
    s: &mut Subscriber,
    len: usize,
    limits: Limits,
    counters: &RelayCounters,
    any_gone: &mut bool,
) -> bool {
    if s.lag() + len <= limits.max_pending_bytes {
        return true;
    }
    if s.lossy {
        let n = s.skip_unwritten();
        counters.lossy_skips.inc();
        counters.lossy_frames_skipped.add(n);
        // Still no room only for a frame larger than the whole limit.
        if s.lag() + len <= limits.max_pending_bytes {
            return true;
        }
    }
    s.start_closing(Instant::now() + limits.close_timeout, counters);
    *any_gone = true;
    false
}

/// Applies `requests` to `filters` in order, queueing one answer each in `out`: `request_ok`
/// with the subscriptions then held, or `request_error` with why.
fn answer(filters: &mut Vec<Filter>, requests: Vec<Request>, out: &mut Vec<u8>) {
    let mut buf = FrameBuf::new();
    for r in requests {
        let what = match &r {
            Request::Subscribe(f) => format!("subscribe {f}"),
            Request::Unsubscribe(f) => format!("unsubscribe {f}"),
        };
        match acceptor::apply(filters, r) {
            Ok(()) => encode_reply(&mut buf, StatusCode::RequestOk, filters.len() as u64, &what),
            Err(reason) => encode_reply(&mut buf, StatusCode::RequestError, 0, &reason),
        }
        out.extend_from_slice(&buf);
    }
}

/// Queues for a filtered subscriber what its selection newly covers: the definitions it has not
/// had, then the cached state of the kinds newly selected.
fn snapshot_new(sel: &mut Selection, cache: &Cache, out: &mut Vec<u8>) {
    let mut new_ids = FxHashMap::default();
    cache.write_snapshot_selected(out, &mut |id, venue, symbol| {
        let mask = sel.mask(venue, symbol);
        let before = sel.ids.get(&id).copied().unwrap_or(0);
        if mask == 0 {
            sel.ids.remove(&id);
            return (false, 0);
        }
        new_ids.insert(id, mask);
        (
            sel.defined.insert(id),
            mask & !before & (kinds::BOOK | kinds::QUOTE | kinds::TRADE),
        )
    });
    sel.ids.extend(new_ids);
}
