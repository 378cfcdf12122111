//! The NATS bridge: a relay subscriber that republishes every event onto NATS subjects
//! `<prefix>.<venue>.<symbol>.<kind>`, for strategies on other machines (feature `nats`).
//!
//! It is never on the collector → consumer path: it reads the relay socket like any other
//! subscriber, so a slow or dead NATS server costs the relay nothing. Two threads of its own:
//!
//! - `nats-bridge` (synchronous): reads frames with [`RelayClient`], maps each to its subject
//!   ([`symbol_token`], [`Kind`]), renders the payload (the frame byte for byte, or the JSON-lines
//!   schema) and pushes it into a bounded `ArrayQueue` of `buffer_frames`. It never waits for
//!   NATS: when the buffer is full the frame is dropped and counted, and a `dropped` status with
//!   the count goes on the instrument's status subject as soon as there is room — before any
//!   later frame of that instrument (the accounting of src/publisher.rs). A dropped definition is
//!   sent again before the instrument's next frame instead. Blocks only in `read(2)` (100 ms
//!   timeout, to see the stop flag).
//! - `nats-publish`: a single-threaded tokio runtime confined to this thread, running the
//!   maintained NATS client (`async-nats`; the synchronous `nats` crate is deprecated). It pops the
//!   buffer (woken through a `tokio::sync::Notify`) and publishes. async-nats reconnects by itself,
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

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::{ConnectOptions, ServerAddr, Subject};
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use crate::base::stats::{Counter, Gauge};
use crate::bridge::config::{JetStreamConfig, NatsConfig, Payload};
use crate::market::event::{BookUpdate, Event, Level, Status, StatusCode};
use crate::market::instrument::InstrumentId;
use crate::relay::client::{ClientError, Received, RelayClient};
use crate::wire::json;
use crate::wire::protocol::{self, flags, FrameBuf, Message, Meta};

/// JetStream messages awaiting their ack at once; a failed ack re-sends all of them.
pub const ACK_WINDOW: usize = 1024;
/// At shutdown, how long the publisher may take to empty the buffer and collect acks.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After the stop flag, how long the reader keeps reading what the relay still sends.
const STOP_READ_GRACE: Duration = Duration::from_secs(1);
/// Relay socket read timeout: how often the reader looks at the stop flag when idle.
const READ_POLL: Duration = Duration::from_millis(100);
/// `detail` of a drop report for frames lost in the bridge's buffer.
pub const DETAIL_BUFFER_FULL: &str = "nats bridge: buffer full (NATS slow or unreachable)";
/// `detail` of a drop report for messages the NATS server refused.
pub const DETAIL_REFUSED: &str = "nats bridge: message refused by the NATS server";

// ---------------------------------------------------------------------------------------------
// Subjects.

/// The last subject token: what a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// InstrumentDef (type 1): remote frame decoders map ids to names with it.
    Def,
    /// Trade (2).
    Trade,
    /// Quote (3).
    Quote,
    /// BookSnapshot (6) or BookDelta (7); the SNAPSHOT flag / `snapshot` field tells them apart.
    Book,
    /// Status (4); feed-wide ones (instrument 0) on `<prefix>.<venue>._feed.status`.
    Status,
    /// Bar (8).
    Bar,
    /// A type this build does not know (frame payload only).
    Other,
}

impl Kind {
    /// Every kind, in subject-table order.
    pub const ALL: [Kind; 7] = [
        Kind::Def,
        Kind::Trade,
        Kind::Quote,
        Kind::Book,
        Kind::Status,
        Kind::Bar,
        Kind::Other,
    ];

    /// The kind of a frame by its header type code; `None` for heartbeats (not forwarded).
    pub fn of(msg_type: u8) -> Option<Kind> {
        Some(match msg_type {
            1 => Kind::Def,
            2 => Kind::Trade,
            3 => Kind::Quote,
            4 => Kind::Status,
            5 => return None,
            6 | 7 => Kind::Book,
            8 => Kind::Bar,
            _ => Kind::Other,
        })
    }

    /// The subject token.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Def => "def",
            Kind::Trade => "trade",
            Kind::Quote => "quote",
            Kind::Book => "book",
            Kind::Status => "status",
            Kind::Bar => "bar",
            Kind::Other => "other",
        }
    }

    /// Frames of this kind advance the instrument's sequence or report on it: their loss is
    /// counted in `dropped` reports. A lost definition is re-sent instead.
    fn counted(self) -> bool {
        self != Kind::Def
    }
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('~');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// A venue symbol as one NATS subject token, reversibly ([`symbol_from_token`]):
/// printable ASCII stays, except that `/` becomes `_` (`XBT/USD` → `XBT_USD`), and `.`, `*`,
/// `>`, `_`, `~`, a leading `/`, whitespace, control and non-ASCII bytes become `~XX` (the UTF-8
/// byte in upper-case hex: `BTC.X` → `BTC~2EX`, `A_B` → `A~5FB`). A token never starts with `_`,
/// so the bridge's own tokens (`_feed`, `_relay`) cannot clash with a symbol; the empty symbol
/// is `~`.
pub fn symbol_token(symbol: &str) -> String {
    if symbol.is_empty() {
        return "~".to_owned();
    }
    let mut out = String::with_capacity(symbol.len());
    for (i, b) in symbol.bytes().enumerate() {
        match b {
            b'/' if i > 0 => out.push('_'),
            b'.' | b'*' | b'>' | b'_' | b'~' | b'/' => push_escaped(&mut out, b),
            0x21..=0x7e => out.push(b as char),
            _ => push_escaped(&mut out, b),
        }
    }
    out
}

/// The inverse of [`symbol_token`]; `None` for a token it cannot produce.
pub fn symbol_from_token(token: &str) -> Option<String> {
    if token == "~" {
        return Some(String::new());
    }
    let b = token.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b'/'),
            b'~' => {
                let hex = token.get(i + 1..i + 3)?;
                if !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F')) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A venue name as a subject token: letters, digits, `_` and `-` stay (every built-in venue
/// name), anything else becomes `~XX` as in [`symbol_token`].
pub fn venue_token(venue: &str) -> String {
    if venue.is_empty() {
        return "~".to_owned();
    }
    let mut out = String::with_capacity(venue.len());
    for b in venue.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => out.push(b as char),
            _ => push_escaped(&mut out, b),
        }
    }
    out
}

/// The subject of `kind` for an instrument: `<prefix>.<venue>.<symbol>.<kind>`.
pub fn subject(prefix: &str, venue: &str, symbol: &str, kind: Kind) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        venue_token(venue),
        symbol_token(symbol),
        kind.name()
    )
}

/// The subject of feed-wide status frames (instrument 0): `<prefix>.<venue>._feed.status`.
pub fn feed_status_subject(prefix: &str, venue: &str) -> String {
    format!("{prefix}.{}._feed.status", venue_token(venue))
}

// ---------------------------------------------------------------------------------------------
// Counters and shared state.

/// Counters written by the `nats-bridge` reader thread.
#[derive(Debug, Default)]
pub struct ReaderCounters {
    /// Frames read from the relay.
    pub frames: Counter,
    /// Heartbeat frames among them (not forwarded).
    pub heartbeats: Counter,
    /// Messages pushed into the buffer (frames, re-sent definitions, drop reports).
    pub queued: Counter,
    /// Frames lost because the buffer was full (definitions included: they are re-sent).
    pub dropped: Counter,
    /// Of `dropped`: frames counted in `dropped` reports (everything but definitions).
    pub dropped_reported: Counter,
    /// `dropped` status messages queued.
    pub drop_reports: Counter,
    /// Frames not forwarded for a reason other than a full buffer (no definition for the
    /// id, undecodable payload, a type the JSON payload cannot render); logged once per reason.
    pub skipped: Counter,
    /// Connections to the relay socket made.
    pub relay_connects: Counter,
    /// Relay streams that ended in an error (bad frame, I/O error).
    pub relay_errors: Counter,
    /// Deepest the buffer got, frames.
    pub buffer_high_water: Gauge,
}

/// Counters written by the `nats-publish` thread.
#[derive(Debug, Default)]
pub struct PublisherCounters {
    /// Messages handed to NATS: sent (plain NATS) or acknowledged by the stream (JetStream).
    pub published: Counter,
    /// Of `published`: JetStream acks that said "duplicate" (a re-send the stream had already).
    pub duplicates: Counter,
    /// JetStream window re-sends after a failed or missing ack.
    pub resends: Counter,
    /// Messages refused by the server for good (dropped, counted, reported).
    pub refused: Counter,
    /// Messages still buffered or unacknowledged when the drain deadline passed at shutdown.
    pub lost_at_shutdown: Counter,
    /// NATS connections established (the first one and every reconnect).
    pub connects: Counter,
    /// NATS connections lost.
    pub disconnects: Counter,
    /// 1 while connected to a NATS server.
    pub connected: Gauge,
    /// 1 once the JetStream stream was created or updated (JetStream only).
    pub stream_ready: Gauge,
}

/// Every counter of a bridge; each half has one writer thread and its own cache lines.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    /// Written by `nats-bridge`.
    pub reader: CachePadded<ReaderCounters>,
    /// Written by `nats-publish`.
    pub publisher: CachePadded<PublisherCounters>,
}

/// Who a message is about: where its loss is reported.
#[derive(Debug)]
struct Origin {
    /// 0 for feed-wide frames.
    id: InstrumentId,
    venue: String,
    symbol: Option<String>,
    status_subject: Subject,
}

/// One message in the buffer.
#[derive(Debug)]
struct Outbound {
    subject: Subject,
    payload: Bytes,
    origin: Arc<Origin>,
    /// The frame's sequence (the instrument's latest for non-events).
    sequence: u64,
    /// Its loss goes into a `dropped` report (false for definitions and reports).
    counted: bool,
}

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

/// Renders a `dropped` status about `origin` in the configured payload format.
fn render_drop(
    payload: Payload,
    origin: &Origin,
    sequence: u64,
    count: u64,
    detail: &str,
) -> Bytes {
    let status = Status {
        code: StatusCode::Dropped,
        count,
        detail,
    };
    match payload {
        Payload::Frame => {
            let mut buf = FrameBuf::new();
            protocol::encode_status(
                &mut buf,
                &Meta {
                    instrument_id: origin.id,
                    sequence,
                    recv_ts_ns: crate::base::clock::wall_ns(),
                    flags: 0,
                },
                &origin.venue,
                &status,
            );
            Bytes::copy_from_slice(&buf)
        }
        Payload::Json => {
            let mut out = Vec::with_capacity(160);
            // Writing into a Vec cannot fail.
            let _ = json::write_event(
                &mut out,
                &json::Origin {
                    venue: &origin.venue,
                    symbol: origin.symbol.as_deref(),
                    recv_ts_ns: None,
                },
                &Event::Status(status),
            );
            out.pop();
            Bytes::from(out)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The reader thread.

/// Where frames of one instrument (or one venue's feed-wide status) go.
struct Target {
    origin: Arc<Origin>,
    /// Subject per [`Kind`], in [`Kind::ALL`] order.
    subjects: Vec<Subject>,
    /// Latest sequence seen.
    last_seq: u64,
    /// Frames lost since the last `dropped` report that made it into the buffer.
    unreported: u64,
    /// The rendered definition, kept to re-send it.
    def: Option<Bytes>,
    /// The definition was lost: it goes again before the next frame.
    def_pending: bool,
}

struct Reader {
    shared: Arc<Shared>,
    prefix: String,
    targets: Vec<Target>,
    by_id: FxHashMap<InstrumentId, usize>,
    by_feed: FxHashMap<String, usize>,
    /// Some target has `unreported > 0`.
    pending_reports: bool,
    /// Reasons already logged for `skipped`.
    logged: Vec<&'static str>,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

#[derive(serde::Serialize)]
struct DefJson<'a> {
    r#type: &'static str,
    venue: &'a str,
    symbol: &'a str,
    instrument_id: InstrumentId,
    price_exponent: i8,
}

impl Reader {
    fn new(shared: Arc<Shared>, prefix: String) -> Self {
        Reader {
            shared,
            prefix,
            targets: Vec::new(),
            by_id: FxHashMap::default(),
            by_feed: FxHashMap::default(),
            pending_reports: false,
            logged: Vec::new(),
            bids: Vec::new(),
            asks: Vec::new(),
        }
    }

    fn skip(&mut self, reason: &'static str) {
        self.shared.counters.reader.skipped.inc();
        if !self.logged.contains(&reason) {
            self.logged.push(reason);
            tracing::warn!(
                reason,
                "nats bridge: frame not forwarded (counted in `skipped`; logged once)"
            );
        }
    }

    fn add_target(&mut self, id: InstrumentId, venue: &str, symbol: Option<&str>) -> usize {
        let (status, subjects): (String, Vec<Subject>) = match symbol {
            Some(sym) => (
                subject(&self.prefix, venue, sym, Kind::Status),
                Kind::ALL
                    .iter()
                    .map(|k| Subject::from(subject(&self.prefix, venue, sym, *k)))
                    .collect(),
            ),
            None => {
                let s = feed_status_subject(&self.prefix, venue);
                (
                    s.clone(),
                    Kind::ALL.iter().map(|_| Subject::from(s.clone())).collect(),
                )
            }
        };
        self.targets.push(Target {
            origin: Arc::new(Origin {
                id,
                venue: venue.to_owned(),
                symbol: symbol.map(str::to_owned),
                status_subject: Subject::from(status),
            }),
            subjects,
            last_seq: 0,
            unreported: 0,
            def: None,
            def_pending: false,
        });
        self.targets.len() - 1
    }

    /// The target of a frame, or why it has none.
    fn target_for(&mut self, rx: &Received<'_>, kind: Kind) -> Result<usize, &'static str> {
        let id = rx.frame.header.instrument_id;
        if id != 0 {
            if let Some(&i) = self.by_id.get(&id) {
                return Ok(i);
            }
            let name = rx
                .instrument
                .ok_or("frame of an instrument whose definition was not received")?;
            let i = self.add_target(id, &name.venue, Some(&name.symbol));
            self.by_id.insert(id, i);
            return Ok(i);
        }
        match (kind, rx.frame.message()) {
            (Kind::Status, Ok(Message::Status { venue, .. })) => {
                if let Some(&i) = self.by_feed.get(venue) {
                    return Ok(i);
                }
                let i = self.add_target(0, venue, None);
                self.by_feed.insert(venue.to_owned(), i);
                Ok(i)
            }
            (Kind::Status, _) => Err("undecodable feed-wide status payload"),
            _ => Err("frame without an instrument that is not a status"),
        }
    }

    /// The message payload of a frame in the configured format.
    fn render(&mut self, rx: &Received<'_>, ti: usize) -> Result<Bytes, &'static str> {
        if self.shared.payload == Payload::Frame {
            return Ok(Bytes::copy_from_slice(rx.raw));
        }
        let h = rx.frame.header;
        let msg = rx
            .frame
            .message()
            .map_err(|_| "undecodable payload (JSON rendering needs the message)")?;
        let o = &self.targets[ti].origin;
        let mut out = Vec::with_capacity(256);
        let ev = match msg {
            Message::InstrumentDef {
                venue,
                symbol,
                price_exponent,
            } => {
                let _ = serde_json::to_writer(
                    &mut out,
                    &DefJson {
                        r#type: "def",
                        venue,
                        symbol,
                        instrument_id: h.instrument_id,
                        price_exponent,
                    },
                );
                return Ok(Bytes::from(out));
            }
            Message::Trade(t) => Event::Trade(t),
            Message::Quote(q) => Event::Quote(q),
            Message::Status { status, .. } => Event::Status(status),
            Message::Book(b) => {
                self.bids.clear();
                self.bids.extend(b.bids());
                self.asks.clear();
                self.asks.extend(b.asks());
                Event::Book(BookUpdate {
                    snapshot: h.flags & flags::SNAPSHOT != 0,
                    bids: &self.bids,
                    asks: &self.asks,
                    venue_sequence: (b.venue_sequence != 0).then_some(b.venue_sequence),
                    exchange_ts_ns: (h.exchange_ts_ns != 0).then_some(h.exchange_ts_ns),
                    may_be_bad: h.flags & flags::BOOK_MAY_BE_BAD != 0,
                })
            }
            _ => {
                return Err("message type without a JSON rendering (use payload = \"frame\")");
            }
        };
        let _ = json::write_event(
            &mut out,
            &json::Origin {
                venue: &o.venue,
                symbol: o.symbol.as_deref(),
                recv_ts_ns: Some(h.recv_ts_ns),
            },
            &ev,
        );
        out.pop(); // the line's newline
        Ok(Bytes::from(out))
    }

    fn push(&self, m: Outbound) -> Result<(), Outbound> {
        let q = &self.shared.queue;
        q.push(m)?;
        let c = &self.shared.counters.reader;
        c.queued.inc();
        let depth = q.len() as u64;
        if depth > c.buffer_high_water.get() {
            c.buffer_high_water.set(depth);
        }
        self.shared.notify.notify_one();
        Ok(())
    }

    /// Queues target `ti`'s drop report; false when the buffer is still full.
    fn report(&mut self, ti: usize) -> bool {
        let t = &self.targets[ti];
        let payload = render_drop(
            self.shared.payload,
            &t.origin,
            t.last_seq,
            t.unreported,
            DETAIL_BUFFER_FULL,
        );
        let m = Outbound {
            subject: t.origin.status_subject.clone(),
            payload,
            origin: t.origin.clone(),
            sequence: t.last_seq,
            counted: false,
        };
        if self.push(m).is_err() {
            return false;
        }
        self.shared.counters.reader.drop_reports.inc();
        self.targets[ti].unreported = 0;
        true
    }

    /// Queues every pending drop report that fits.
    fn flush_reports(&mut self) {
        if !self.pending_reports {
            return;
        }
        for ti in 0..self.targets.len() {
            if self.targets[ti].unreported > 0 && !self.report(ti) {
                return;
            }
        }
        self.pending_reports = false;
    }

    fn lost(&mut self, ti: usize, kind: Kind) {
        let c = &self.shared.counters.reader;
        c.dropped.inc();
        let t = &mut self.targets[ti];
        if kind.counted() {
            c.dropped_reported.inc();
            t.unreported += 1;
            self.pending_reports = true;
        } else {
            t.def_pending = true;
        }
    }

    fn on_frame(&mut self, rx: &Received<'_>) {
        self.shared.counters.reader.frames.inc();
        let h = rx.frame.header;
        let Some(kind) = Kind::of(h.msg_type) else {
            self.shared.counters.reader.heartbeats.inc();
            return;
        };
        let ti = match self.target_for(rx, kind) {
            Ok(i) => i,
            Err(reason) => return self.skip(reason),
        };
        let payload = match self.render(rx, ti) {
            Ok(p) => p,
            Err(reason) => return self.skip(reason),
        };
        let t = &mut self.targets[ti];
        t.last_seq = t.last_seq.max(h.sequence);
        if kind == Kind::Def {
            t.def = Some(payload.clone());
        }
        self.flush_reports();
        // What must precede this frame: the target's drop report, then its definition.
        if self.targets[ti].unreported > 0 {
            return self.lost(ti, kind);
        }
        let t = &self.targets[ti];
        if kind != Kind::Def && t.def_pending {
            if let Some(def) = t.def.clone() {
                let m = Outbound {
                    subject: t.subjects[0].clone(),
                    payload: def,
                    origin: t.origin.clone(),
                    sequence: t.last_seq,
                    counted: false,
                };
                if self.push(m).is_err() {
                    return self.lost(ti, kind);
                }
            }
            self.targets[ti].def_pending = false;
        }
        let t = &self.targets[ti];
        let idx = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(6);
        let m = Outbound {
            subject: t.subjects[idx].clone(),
            payload,
            origin: t.origin.clone(),
            sequence: h.sequence,
            counted: kind.counted(),
        };
        if self.push(m).is_err() {
            self.lost(ti, kind);
        } else if kind == Kind::Def {
            self.targets[ti].def_pending = false;
        }
    }

    /// Reads the relay until stopped, reconnecting (with backoff) when the relay goes away.
    fn run(&mut self, socket: &Path, backoff: (Duration, Duration)) {
        let mut delay = backoff.0;
        let mut logged_down = false;
        'connect: loop {
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            let mut client = match RelayClient::connect(socket) {
                Ok(c) => c,
                Err(e) => {
                    if !logged_down {
                        tracing::warn!(socket = %socket.display(), error = %e, "nats bridge: relay socket unavailable; retrying");
                        logged_down = true;
                    }
                    self.sleep_unless_stopped(delay);
                    delay = (delay * 2).min(backoff.1);
                    continue;
                }
            };
            if client.set_read_timeout(Some(READ_POLL)).is_err() {
                continue;
            }
            logged_down = false;
            delay = backoff.0;
            self.shared.counters.reader.relay_connects.inc();
            tracing::info!(socket = %socket.display(), "nats bridge: reading the relay");
            let mut stop_deadline: Option<Instant> = None;
            loop {
                if stop_deadline.is_none() && self.shared.stop.load(Ordering::Acquire) {
                    stop_deadline = Some(Instant::now() + STOP_READ_GRACE);
                }
                if stop_deadline.is_some_and(|d| Instant::now() >= d) {
                    break 'connect;
                }
                match client.next_frame() {
                    Ok(Some(rx)) => self.on_frame(&rx),
                    Ok(None) => {
                        tracing::info!("nats bridge: the relay closed the connection");
                        self.sleep_unless_stopped(backoff.0);
                        continue 'connect;
                    }
                    Err(ClientError::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        self.flush_reports();
                        if stop_deadline.is_some() {
                            break 'connect;
                        }
                    }
                    Err(e) => {
                        self.shared.counters.reader.relay_errors.inc();
                        tracing::warn!(error = %e, "nats bridge: relay stream failed; reconnecting");
                        self.sleep_unless_stopped(delay);
                        continue 'connect;
                    }
                }
            }
        }
        // Last chance for pending reports; then the publisher may finish.
        let end = Instant::now() + Duration::from_secs(1);
        while self.pending_reports && Instant::now() < end {
            self.flush_reports();
            if self.pending_reports {
                thread::sleep(Duration::from_millis(5));
            }
        }
        if self.pending_reports {
            let n: u64 = self.targets.iter().map(|t| t.unreported).sum();
            tracing::warn!(
                unreported = n,
                "nats bridge: shutdown: drop reports could not be queued"
            );
        }
        self.shared.closed.store(true, Ordering::Release);
        self.shared.notify.notify_one();
    }

    fn sleep_unless_stopped(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.shared.stop.load(Ordering::Acquire) {
            thread::sleep((end - Instant::now()).min(READ_POLL));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The publisher thread.

/// Reconnect delay after `attempts` failed tries: 0 for the first, then doubling from
/// `initial`, capped at `max`.
pub fn backoff_delay(initial: Duration, max: Duration, attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let shift = (attempts - 2).min(30) as u32;
    initial.saturating_mul(1u32 << shift).min(max)
}

struct Publisher {
    shared: Arc<Shared>,
    client: async_nats::Client,
    backoff: (Duration, Duration),
    /// Set once the reader closed: the drain deadline.
    deadline: Option<tokio::time::Instant>,
}

/// A JetStream message awaiting its ack.
struct Inflight {
    m: Outbound,
    id: String,
    ack: Option<jetstream::context::PublishAckFuture>,
    /// `connects` when it was sent: an ack still missing after a reconnect will not come.
    epoch: u64,
    /// `Nats-Expected-Last-Msg-Id`: the id of the message before it in the stream.
    expect: Option<String>,
}

/// How a failed JetStream publish is handled.
fn transient(e: &jetstream::context::PublishError) -> bool {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        K::TimedOut
        | K::BrokenPipe
        | K::StreamNotFound
        | K::MaxAckPending
        | K::WrongLastMessageId => true,
        K::Other => std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            // An API error: 503 (JetStream not ready yet) is worth a retry; anything else
            // (message too large, a limit with discard-new) is the server's final word.
            .is_none_or(|api| api.code() == 503),
        _ => false,
    }
}

impl Publisher {
    fn pop(&mut self) -> Option<Outbound> {
        self.shared.queue.pop()
    }

    /// True once the reader closed and the buffer is empty (or the drain deadline passed).
    fn finished(&mut self) -> bool {
        if self.deadline.is_none() && self.shared.closed.load(Ordering::Acquire) {
            self.deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
        }
        (self.deadline.is_some() && self.shared.queue.is_empty()) || self.past_deadline()
    }

    fn past_deadline(&self) -> bool {
        self.deadline
            .is_some_and(|d| tokio::time::Instant::now() >= d)
    }

    /// Waits for a push (or the reader closing).
    async fn wait(&mut self) {
        match self.deadline {
            Some(d) => {
                let _ = tokio::time::timeout_at(d, self.shared.notify.notified()).await;
            }
            None => {
                // A timeout too, so `closed` is seen even if a notification was consumed early.
                let _ = tokio::time::timeout(READ_POLL, self.shared.notify.notified()).await;
            }
        }
    }

    /// Publishes a drop report for a message the server refused.
    async fn refused(&mut self, m: &Outbound, err: &dyn fmt::Display) {
        let c = &self.shared.counters.publisher;
        c.refused.inc();
        tracing::warn!(subject = %m.subject, error = %err, "nats bridge: message refused; reported as dropped");
        if m.counted {
            let payload = render_drop(
                self.shared.payload,
                &m.origin,
                m.sequence,
                1,
                DETAIL_REFUSED,
            );
            if let Err(e) = self
                .client
                .publish(m.origin.status_subject.clone(), payload)
                .await
            {
                tracing::warn!(error = %e, "nats bridge: the drop report was refused too");
            }
        }
    }

    async fn run_core(&mut self) {
        loop {
            while let Some(m) = self.pop() {
                if self.past_deadline() {
                    self.shared
                        .counters
                        .publisher
                        .lost_at_shutdown
                        .add(1 + self.shared.queue.len() as u64);
                    while self.pop().is_some() {}
                    break;
                }
                let publish = self.client.publish(m.subject.clone(), m.payload.clone());
                // `None`: the drain deadline passed while the client could not take it.
                let sent = match self.deadline {
                    Some(d) => tokio::time::timeout_at(d, publish).await.ok(),
                    None => Some(publish.await),
                };
                match sent {
                    Some(Ok(())) => self.shared.counters.publisher.published.inc(),
                    Some(Err(e)) => self.refused(&m, &e).await,
                    None => self.shared.counters.publisher.lost_at_shutdown.inc(),
                }
            }
            if self.finished() {
                break;
            }
            self.wait().await;
        }
        let flush = self.client.flush();
        if tokio::time::timeout(Duration::from_secs(2), flush)
            .await
            .is_err()
        {
            tracing::warn!("nats bridge: final flush did not complete");
        }
    }

    async fn ensure_stream(
        &mut self,
        js: &jetstream::Context,
        cfg: &JetStreamConfig,
        prefix: &str,
    ) {
        let limit = |v: u64| {
            if v == 0 {
                -1
            } else {
                v.min(i64::MAX as u64) as i64
            }
        };
        let config = jetstream::stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            max_age: cfg.max_age,
            max_bytes: limit(cfg.max_bytes),
            max_messages: limit(cfg.max_msgs),
            storage: jetstream::stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        };
        let mut attempt = 1;
        loop {
            match js.create_or_update_stream(config.clone()).await {
                Ok(info) => {
                    self.shared.counters.publisher.stream_ready.set(1);
                    tracing::info!(stream = %info.config.name, messages = info.state.messages, "nats bridge: JetStream stream ready");
                    return;
                }
                Err(e) => {
                    if let jetstream::context::CreateStreamErrorKind::JetStream(api) = e.kind() {
                        if api.code() != 503 {
                            tracing::error!(stream = %cfg.stream, error = %api, "nats bridge: cannot create or update the stream; publishing anyway");
                            return;
                        }
                    }
                    if attempt == 1 {
                        tracing::warn!(error = %e, "nats bridge: stream not created yet; retrying");
                    }
                }
            }
            if self.finished() {
                return;
            }
            attempt += 1;
            let d = backoff_delay(self.backoff.0, self.backoff.1, attempt).max(self.backoff.0);
            tokio::time::sleep(d).await;
        }
    }

    async fn send(&self, js: &jetstream::Context, f: &mut Inflight) {
        f.epoch = self.shared.counters.publisher.connects.get();
        let mut msg = jetstream::message::PublishMessage::build()
            .payload(f.m.payload.clone())
            .message_id(&f.id);
        if let Some(e) = &f.expect {
            msg = msg.expected_last_message_id(e);
        }
        f.ack = js.send_publish(f.m.subject.clone(), msg).await.ok();
    }

    /// The ack of `f`, or BrokenPipe as soon as the connection it was sent on is known to be
    /// gone (a reconnect happened and the ack is still missing) instead of the ack timeout.
    async fn ack(
        &self,
        f: &mut Inflight,
    ) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
        use jetstream::context::{PublishError, PublishErrorKind};
        let Some(ack) = f.ack.take() else {
            return Err(PublishError::new(PublishErrorKind::BrokenPipe));
        };
        let mut fut = std::future::IntoFuture::into_future(ack);
        let c = &self.shared.counters.publisher;
        loop {
            match tokio::time::timeout(READ_POLL, &mut fut).await {
                Ok(r) => return r,
                Err(_) if c.connects.get() > f.epoch && c.connected.get() == 1 => {
                    return Err(PublishError::new(PublishErrorKind::BrokenPipe));
                }
                Err(_) => {}
            }
        }
    }

    async fn run_jetstream(&mut self, cfg: &JetStreamConfig, prefix: &str) {
        let js = jetstream::ContextBuilder::new()
            .max_ack_inflight(ACK_WINDOW * 2)
            .build(self.client.clone());
        self.ensure_stream(&js, cfg, prefix).await;
        let run_id = format!("{:x}-{}", crate::base::clock::wall_ns(), std::process::id());
        let mut next_id: u64 = 0;
        let mut window: std::collections::VecDeque<Inflight> = std::collections::VecDeque::new();
        let mut failures = 0usize;
        // Consecutive "wrong last message id" answers: after a few, the chain is restarted
        // (an outage longer than the stream's duplicate window, or another publisher).
        let mut mismatches = 0usize;
        let mut last_acked: Option<String> = None;
        loop {
            while window.len() < ACK_WINDOW {
                let Some(m) = self.pop() else { break };
                next_id += 1;
                let expect = window
                    .back()
                    .map(|b| b.id.clone())
                    .or_else(|| last_acked.clone());
                let mut f = Inflight {
                    m,
                    id: format!("{run_id}-{next_id}"),
                    ack: None,
                    epoch: 0,
                    expect,
                };
                self.send(&js, &mut f).await;
                window.push_back(f);
            }
            if self.past_deadline() {
                let lost = window.len() + self.shared.queue.len();
                self.shared
                    .counters
                    .publisher
                    .lost_at_shutdown
                    .add(lost as u64);
                if lost > 0 {
                    tracing::warn!(
                        lost,
                        "nats bridge: drain deadline passed; messages not acknowledged"
                    );
                }
                return;
            }
            let Some(front) = window.front_mut() else {
                if self.finished() {
                    return;
                }
                self.wait().await;
                continue;
            };
            let result = self.ack(front).await;
            match result {
                Ok(ack) => {
                    failures = 0;
                    mismatches = 0;
                    let c = &self.shared.counters.publisher;
                    c.published.inc();
                    if ack.duplicate {
                        c.duplicates.inc();
                    }
                    last_acked = window.pop_front().map(|f| f.id);
                }
                Err(e) if transient(&e) => {
                    failures += 1;
                    if e.kind() == jetstream::context::PublishErrorKind::WrongLastMessageId {
                        mismatches += 1;
                    }
                    if failures == 1 {
                        tracing::warn!(error = %e, pending = window.len(), "nats bridge: JetStream ack failed; re-sending the window after a backoff");
                    }
                    tokio::time::sleep(
                        backoff_delay(self.backoff.0, self.backoff.1, failures + 1)
                            .max(self.backoff.0),
                    )
                    .await;
                    if matches!(
                        e.kind(),
                        jetstream::context::PublishErrorKind::StreamNotFound
                    ) && failures % 8 == 0
                    {
                        // The server came back without the stream (a new store): create it again.
                        self.ensure_stream(&js, cfg, prefix).await;
                    }
                    self.shared.counters.publisher.resends.inc();
                    // In order, each expecting its predecessor: copies sent on the lost
                    // connection or queued behind it can then never be stored out of order, and
                    // the stream discards the ones it already holds by their Nats-Msg-Id.
                    let mut prev = if mismatches >= 3 {
                        tracing::warn!("nats bridge: the stream's last message is not ours; restarting the chain");
                        mismatches = 0;
                        None
                    } else {
                        last_acked.clone()
                    };
                    for f in window.iter_mut() {
                        // Dropping an old ack future hands it to async-nats' acker.
                        f.ack = None;
                        f.expect = prev.replace(f.id.clone());
                        self.send(&js, f).await;
                    }
                }
                Err(e) => {
                    failures = 0;
                    if let Some(f) = window.pop_front() {
                        self.refused(&f.m, &e).await;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The bridge handle.

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
    #[error("cannot spawn thread {name}: {source}")]
    Spawn {
        /// Thread name.
        name: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// What a bridge did, at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSummary {
    /// Frames read from the relay.
    pub frames: u64,
    /// Heartbeats among them (not forwarded).
    pub heartbeats: u64,
    /// Messages put into the buffer.
    pub queued: u64,
    /// Messages published (sent, or acked by the stream under JetStream).
    pub published: u64,
    /// Frames dropped with the buffer full.
    pub dropped: u64,
    /// Drop reports queued.
    pub drop_reports: u64,
    /// Messages refused by the server.
    pub refused: u64,
    /// Frames skipped (no definition, undecodable, no JSON rendering).
    pub skipped: u64,
    /// Messages lost at shutdown (drain deadline).
    pub lost_at_shutdown: u64,
    /// NATS connections made.
    pub connects: u64,
    /// JetStream window re-sends.
    pub resends: u64,
    /// Bridge threads that panicked.
    pub panicked: Vec<&'static str>,
}

impl fmt::Display for BridgeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nats bridge: frames {} (heartbeats {}) | queued {} | published {} | dropped {} \
             (reports {}) | refused {} | skipped {} | lost at shutdown {} | connects {} | \
             re-sends {}",
            self.frames,
            self.heartbeats,
            self.queued,
            self.published,
            self.dropped,
            self.drop_reports,
            self.refused,
            self.skipped,
            self.lost_at_shutdown,
            self.connects,
            self.resends
        )?;
        if !self.panicked.is_empty() {
            write!(f, " | PANICKED: {:?}", self.panicked)?;
        }
        Ok(())
    }
}

/// A running bridge: the `nats-bridge` and `nats-publish` threads.
pub struct Bridge {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    publisher: Option<JoinHandle<()>>,
}

fn check_file(key: &'static str, p: &Option<PathBuf>) -> Result<(), BridgeError> {
    if let Some(path) = p {
        std::fs::File::open(path).map_err(|e| BridgeError::File {
            key,
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

fn connect_options(cfg: &NatsConfig, shared: &Arc<Shared>) -> Result<ConnectOptions, BridgeError> {
    check_file("nats.tls_ca_file", &cfg.tls_ca_file)?;
    check_file("nats.tls_cert_file", &cfg.tls_cert_file)?;
    check_file("nats.tls_key_file", &cfg.tls_key_file)?;
    let mut opts = match &cfg.credentials_file {
        Some(path) => {
            let file_err = |reason: String| BridgeError::File {
                key: "nats.credentials_file",
                path: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
            // The parser's message names what is malformed, never the secret itself.
            ConnectOptions::with_credentials(&text)
                .map_err(|e| file_err(format!("not a NATS credentials file ({})", e.kind())))?
        }
        None => ConnectOptions::new(),
    };
    if let Some(ca) = &cfg.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let (initial, max) = (cfg.reconnect_initial, cfg.reconnect_max);
    let sh = shared.clone();
    Ok(opts
        .require_tls(cfg.tls_required())
        .name("mdrelay-nats-bridge")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(move |attempts| backoff_delay(initial, max, attempts))
        .event_callback(move |ev| {
            let sh = sh.clone();
            async move {
                let c = &sh.counters.publisher;
                match ev {
                    async_nats::Event::Connected => {
                        c.connects.inc();
                        c.connected.set(1);
                        tracing::info!("nats bridge: connected to NATS");
                    }
                    async_nats::Event::Disconnected => {
                        c.disconnects.inc();
                        c.connected.set(0);
                        tracing::warn!("nats bridge: disconnected from NATS; reconnecting");
                    }
                    other => tracing::warn!(event = %other, "nats bridge: NATS client event"),
                }
            }
        }))
}

impl Bridge {
    /// Starts a bridge reading the relay socket at `socket` and publishing as `cfg` says.
    /// Fails at once on an unusable URL, credentials or TLS file; a NATS server that is not
    /// reachable yet is not an error (the bridge connects when it can, buffering meanwhile).
    pub fn start(cfg: &NatsConfig, socket: &Path) -> Result<Bridge, BridgeError> {
        let addrs = cfg
            .urls
            .iter()
            .map(|u| {
                u.parse::<ServerAddr>().map_err(|e| BridgeError::Url {
                    url: crate::bridge::config::redact_url(u),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(cfg.buffer_frames.max(1)),
            notify: Notify::new(),
            stop: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            counters: BridgeCounters::default(),
            payload: cfg.payload,
        });
        let opts = connect_options(cfg, &shared)?;
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
            let backoff = (cfg.reconnect_initial, cfg.reconnect_max);
            thread::Builder::new()
                .name("nats-publish".into())
                .spawn(move || publisher_thread(shared, opts, addrs, js, prefix, backoff))
                .map_err(|source| BridgeError::Spawn {
                    name: "nats-publish",
                    source,
                })?
        };
        let mut bridge = Bridge {
            shared: shared.clone(),
            reader: None,
            publisher: Some(publisher),
        };
        let prefix = cfg.subject_prefix.clone();
        let socket = socket.to_path_buf();
        let backoff = (cfg.reconnect_initial, cfg.reconnect_max);
        let reader = thread::Builder::new()
            .name("nats-bridge".into())
            .spawn(move || Reader::new(shared, prefix).run(&socket, backoff))
            .map_err(|source| BridgeError::Spawn {
                name: "nats-bridge",
                source,
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
                self.shared.closed.store(true, Ordering::Release);
                self.shared.notify.notify_one();
            }
        }
        if let Some(h) = self.publisher.take() {
            if h.join().is_err() {
                panicked.push("nats-publish");
            }
        }
        let r = &self.shared.counters.reader;
        let p = &self.shared.counters.publisher;
        BridgeSummary {
            frames: r.frames.get(),
            heartbeats: r.heartbeats.get(),
            queued: r.queued.get(),
            published: p.published.get(),
            dropped: r.dropped.get(),
            drop_reports: r.drop_reports.get(),
            refused: p.refused.get(),
            skipped: r.skipped.get(),
            lost_at_shutdown: p.lost_at_shutdown.get(),
            connects: p.connects.get(),
            resends: p.resends.get(),
            panicked,
        }
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

fn publisher_thread(
    shared: Arc<Shared>,
    opts: ConnectOptions,
    addrs: Vec<ServerAddr>,
    js: Option<JetStreamConfig>,
    prefix: String,
    backoff: (Duration, Duration),
) {
    // The runtime lives and dies with this thread: nothing else in mdrelay is async.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "nats bridge: cannot build the publisher runtime; nothing will be published");
            return;
        }
    };
    rt.block_on(async move {
        let client = match opts.connect(addrs).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "nats bridge: cannot create the NATS client; nothing will be published");
                return;
            }
        };
        let mut p = Publisher {
            shared,
            client,
            backoff,
            deadline: None,
        };
        match &js {
            Some(cfg) => p.run_jetstream(cfg, &prefix).await,
            None => p.run_core().await,
        }
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_become_single_reversible_tokens() {
        let cases = [
            ("ETHUSDT", "ETHUSDT"),
            ("BTC-USD", "BTC-USD"),
            ("XBT/USD", "XBT_USD"),
            ("BTC.X", "BTC~2EX"),
            ("A_B", "A~5FB"),
            ("a*b>c", "a~2Ab~3Ec"),
            ("x y\tz", "x~20y~09z"),
            ("/USD", "~2FUSD"),
            ("~1", "~7E1"),
            ("€", "~E2~82~AC"),
            ("", "~"),
        ];
        for (sym, tok) in cases {
            assert_eq!(symbol_token(sym), tok, "{sym}");
            assert_eq!(symbol_from_token(tok).as_deref(), Some(sym), "{tok}");
            assert!(!tok.starts_with('_'));
            assert!(!tok.contains(['.', '*', '>', ' ']));
        }
        assert_eq!(symbol_from_token("~G1"), None);
        assert_eq!(symbol_from_token("~2"), None);
        assert_eq!(venue_token("kraken_v1"), "kraken_v1");
        assert_eq!(venue_token("a.b"), "a~2Eb");
        assert_eq!(
            subject("mdrelay", "kraken_v1", "XBT/EUR", Kind::Book),
            "mdrelay.kraken_v1.XBT_EUR.book"
        );
        assert_eq!(
            feed_status_subject("p.q", "binance"),
            "p.q.binance._feed.status"
        );
    }

    #[test]
    fn every_type_code_has_a_kind() {
        let names: Vec<_> = (1u8..=9).map(|c| Kind::of(c).map(Kind::name)).collect();
        assert_eq!(
            names,
            [
                Some("def"),
                Some("trade"),
                Some("quote"),
                Some("status"),
                None,
                Some("book"),
                Some("book"),
                Some("bar"),
                Some("other")
            ]
        );
    }

    #[test]
    fn backoff_starts_immediate_then_doubles_to_the_cap() {
        let (i, m) = (Duration::from_millis(100), Duration::from_millis(1000));
        let d: Vec<u64> = (0..7)
            .map(|a| backoff_delay(i, m, a).as_millis() as u64)
            .collect();
        assert_eq!(d, [0, 0, 100, 200, 400, 800, 1000]);
        assert_eq!(backoff_delay(i, m, usize::MAX), m);
    }

    #[test]
    fn drop_reports_render_in_both_payloads() {
        let o = Origin {
            id: 7,
            venue: "binance".into(),
            symbol: Some("ETHUSDT".into()),
            status_subject: Subject::from("x"),
        };
        let b = render_drop(Payload::Frame, &o, 42, 3, DETAIL_BUFFER_FULL);
        let (f, _) = protocol::decode_frame(&b).unwrap();
        assert_eq!((f.header.instrument_id, f.header.sequence), (7, 42));
        let Message::Status { venue, status } = f.message().unwrap() else {
            panic!("not a status")
        };
        assert_eq!(
            (venue, status.code, status.count),
            ("binance", StatusCode::Dropped, 3)
        );
        let j = render_drop(Payload::Json, &o, 42, 3, DETAIL_BUFFER_FULL);
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        assert_eq!(v["event"], "dropped");
        assert_eq!(v["count"], 3);
        assert_eq!(v["symbol"], "ETHUSDT");
        assert!(!j.ends_with(b"\n"));
    }
}
