//! The `nats-bridge` thread (synchronous): reads the relay socket with [`RelayClient`], maps each
//! frame to its subject ([`Kind`], [`subject`]), renders the payload (the frame byte for byte, or
//! the JSON-lines schema) and pushes it into the bounded buffer shared with `nats-publish`.
//!
//! It never waits for NATS: when the buffer is full the frame is dropped and counted, and a
//! `dropped` status with the count goes on the instrument's status subject as soon as there is
//! room — before any later frame of that instrument (the accounting of
//! `crate::feed::publisher`). A dropped definition is sent again before the instrument's next
//! frame instead. Blocks only in `read(2)` ([`READ_POLL`] timeout, to see the stop flag); the
//! relay going away means reconnecting with the configured doubling backoff.

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_nats::Subject;
use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::outbound::{render_drop, Origin, Outbound, DETAIL_BUFFER_FULL};
use super::subjects::{feed_status_subject, subject, Kind};
use super::{Shared, READ_POLL};
use crate::base::backoff::Backoff;
use crate::bridge::config::Payload;
use crate::market::event::Level;
use crate::market::instrument::InstrumentId;
use crate::relay::client::{ClientError, Received, RelayClient};
use crate::wire::protocol::{self, Message};

/// After the stop flag, how long the reader keeps reading what the relay still sends.
const STOP_READ_GRACE: Duration = Duration::from_secs(1);

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

impl Target {
    /// A message about this target on `subject`.
    fn message(&self, subject: &Subject, payload: Bytes, sequence: u64, counted: bool) -> Outbound {
        Outbound {
            subject: subject.clone(),
            payload,
            origin: self.origin.clone(),
            sequence,
            counted,
        }
    }
}

pub(super) struct Reader {
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
    pub(super) fn new(shared: Arc<Shared>, prefix: String) -> Self {
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
        let subjects: Vec<Subject> = match symbol {
            Some(sym) => Kind::ALL
                .iter()
                .map(|k| Subject::from(subject(&self.prefix, venue, sym, *k)))
                .collect(),
            None => vec![Subject::from(feed_status_subject(&self.prefix, venue)); Kind::ALL.len()],
        };
        let status_subject = subjects[Kind::Status.index()].clone();
        self.targets.push(Target {
            origin: Arc::new(Origin {
                id,
                venue: venue.to_owned(),
                symbol: symbol.map(str::to_owned),
                status_subject,
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
        let ev = match msg {
            Message::InstrumentDef {
                venue,
                symbol,
                price_exponent,
            } => {
                let mut out = Vec::with_capacity(256);
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
            m => protocol::event_of(&h, m, &mut self.bids, &mut self.asks)
                .ok_or("message type without a JSON rendering (use payload = \"frame\")")?,
        };
        Ok(self.targets[ti].origin.json(Some(h.recv_ts_ns), &ev))
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
        let m = t.message(&t.origin.status_subject, payload, t.last_seq, false);
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
                let m = t.message(&t.subjects[Kind::Def.index()], def, t.last_seq, false);
                if self.push(m).is_err() {
                    return self.lost(ti, kind);
                }
            }
            self.targets[ti].def_pending = false;
        }
        let t = &self.targets[ti];
        let m = t.message(
            &t.subjects[kind.index()],
            payload,
            h.sequence,
            kind.counted(),
        );
        if self.push(m).is_err() {
            self.lost(ti, kind);
        } else if kind == Kind::Def {
            self.targets[ti].def_pending = false;
        }
    }

    /// Reads the relay until stopped, reconnecting (with backoff) when the relay goes away.
    pub(super) fn run(&mut self, socket: &Path, backoff: Backoff) {
        // The wait after the previous failed connect; `None` once connected.
        let mut prev: Option<Duration> = None;
        let mut logged_down = false;
        'connect: loop {
            if self.shared.stopping() {
                break;
            }
            let mut client = match RelayClient::connect(socket) {
                Ok(c) => c,
                Err(e) => {
                    if !logged_down {
                        tracing::warn!(socket = %socket.display(), error = %e, "nats bridge: relay socket unavailable; retrying");
                        logged_down = true;
                    }
                    let d = backoff.after(prev);
                    self.sleep_unless_stopped(d);
                    prev = Some(d);
                    continue;
                }
            };
            if client.set_read_timeout(Some(READ_POLL)).is_err() {
                continue;
            }
            logged_down = false;
            prev = None;
            self.shared.counters.reader.relay_connects.inc();
            tracing::info!(socket = %socket.display(), "nats bridge: reading the relay");
            let mut stop_deadline: Option<Instant> = None;
            loop {
                if stop_deadline.is_none() && self.shared.stopping() {
                    stop_deadline = Some(Instant::now() + STOP_READ_GRACE);
                }
                if stop_deadline.is_some_and(|d| Instant::now() >= d) {
                    break 'connect;
                }
                match client.next_frame() {
                    Ok(Some(rx)) => self.on_frame(&rx),
                    Ok(None) => {
                        tracing::info!("nats bridge: the relay closed the connection");
                        self.sleep_unless_stopped(backoff.initial);
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
                        self.sleep_unless_stopped(backoff.initial);
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
        self.shared.close();
    }

    fn sleep_unless_stopped(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.shared.stopping() {
            thread::sleep((end - Instant::now()).min(READ_POLL));
        }
    }
}
