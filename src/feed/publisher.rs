//! The collector's sending side: from parsed events to frames in the feed's queue, with the
//! instrument table, per-instrument sequences, and the accounting that makes every loss visible.
//!
//! Runs on the collector thread (one `Publisher` per feed); blocks only inside
//! [`Producer::push`] under the `block`/`conflate` policies.
//!
//! Rules it keeps:
//! - An instrument's InstrumentDef is queued before any other frame of its id; if it could not
//!   be queued (or was evicted by `drop_oldest`) it is sent again before the next one.
//! - The per-instrument sequence advances for every market-data event (trade, quote, book), queued
//!   or not, so subscribers see every loss as a sequence gap.
//! - The derivatives kinds (mark, liquidation, open interest) do not advance it (a reader that
//!   predates them skips them and must see no gap); each has its own per-instrument number,
//!   advanced for every event queued or not, so their loss shows as a gap in that number. Their
//!   loss counts as a dropped frame, not a dropped event (it is not in a `dropped` report's count,
//!   which adds up to market-data sequence gaps).
//! - Every event lost here (refused by a full queue, evicted by `drop_oldest`, replaced by a newer
//!   quote under `conflate`) is counted and reported in-band: a `dropped` status frame for the
//!   instrument with the count, queued as soon as there is room.
//! - A lost book frame marks the instrument's book as possibly bad: its book frames carry
//!   `BOOK_MAY_BE_BAD` until a snapshot of it has been queued.
//! - The last frame produced from one venue message carries `LAST_IN_EVENT` (a Kraken trade
//!   message yields several Trade frames; a reader can act once per message). Each frame is held
//!   back until the next frame or the end of the parse, so order never changes. Quotes parked by
//!   `conflate` are the exception: they are not flagged.
//! - Under `conflate`, a quote that finds the queue full waits in a one-slot buffer per
//!   instrument, replaced by newer quotes, and goes as soon as there is room — before any later
//!   frame of the same instrument, so per-instrument order holds. Trades and book frames are never
//!   conflated: they wait like under `block`.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::base::clock;
use crate::base::stats::FeedStats;
use crate::feed::venue::VenueParser;
use crate::market::event::{Event, Status, StatusCode};
use crate::market::instrument::{InstrumentId, Registry, Venue};
use crate::queue::{Backpressure, Envelope, Producer, PushError, Pushed};
use crate::wire::derivatives;
use crate::wire::protocol::{self, flags, FrameBuf, Message, Meta, MsgType};

/// Per-instrument state kept by the publisher.
#[derive(Debug)]
struct InstrumentState {
    /// Stable id of `venue:symbol`; 0 when the id collided with another name (events refused).
    id: InstrumentId,
    /// Venue symbol.
    symbol: String,
    /// Sequence of the last market-data event (0 before the first).
    seq: u64,
    /// Number of the last mark, liquidation and open-interest event, in that order (0 before
    /// the first): the frames' `kind_sequence`.
    kind_seqs: [u64; 3],
    /// The InstrumentDef is in the queue (and was not evicted since).
    def_sent: bool,
    /// Events lost since the last `dropped` status frame that made it into the queue.
    unreported_drops: u64,
    /// A book frame of this instrument was lost; cleared when a snapshot is queued.
    book_bad: bool,
    /// `conflate`: the latest quote that found the queue full.
    pending_quote: Option<Envelope>,
}

/// Turns events into queued frames for one feed.
pub struct Publisher {
    venue: Venue,
    producer: Producer,
    stats: Arc<FeedStats>,
    registry: Registry,
    /// Instruments in first-seen order; `by_symbol` and `by_id` index into it.
    instruments: Vec<InstrumentState>,
    by_symbol: FxHashMap<String, usize>,
    by_id: FxHashMap<InstrumentId, usize>,
    /// Some instrument has `unreported_drops > 0` or a `pending_quote`.
    pending: bool,
    /// Scratch frame, reused.
    buf: FrameBuf,
    /// The consumer is gone: nothing more can be delivered.
    consumer_gone: bool,
    /// The last frame produced from the venue message being parsed, not yet queued: whether it
    /// is the message's last frame is known only when the next frame comes or the parse ends.
    held: Option<Held>,
}

/// A frame held back until it is known whether it ends its venue message.
#[derive(Debug)]
struct Held {
    env: Envelope,
    /// Index into `instruments`.
    instrument: usize,
    /// A market-data event (its loss is counted and reported).
    is_event: bool,
    /// A book frame (its loss marks the book may-be-bad).
    is_book: bool,
    /// A book snapshot (queuing it clears may-be-bad).
    snapshot: bool,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("venue", &self.venue)
            .field("instruments", &self.instruments.len())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher for `venue` pushing into `producer`, counting into `stats`.
    pub fn new(venue: Venue, producer: Producer, stats: Arc<FeedStats>) -> Self {
        Publisher {
            venue,
            producer,
            stats,
            registry: Registry::default(),
            instruments: Vec::new(),
            by_symbol: FxHashMap::default(),
            by_id: FxHashMap::default(),
            pending: false,
            buf: FrameBuf::new(),
            consumer_gone: false,
            held: None,
        }
    }

    /// True once the consumer has gone away.
    pub fn consumer_gone(&self) -> bool {
        self.consumer_gone
    }

    /// The feed's counters.
    pub fn stats(&self) -> &FeedStats {
        &self.stats
    }

    /// Counts how long each message the parser's sync buffer released waited there
    /// ([`VenueParser::drain_sync_released`]): from its receipt to `now_ns`, the receive time
    /// of the snapshot that released it, in the clock the parser was given. Call after each
    /// snapshot; the synced frames themselves carry the snapshot's receive time, so the wait is
    /// in neither the parse nor the relay latency.
    pub fn record_sync_waits(&self, parser: &mut dyn VenueParser, now_ns: u64) {
        let h = &self.stats.collector.sync_wait;
        parser.drain_sync_released(&mut |t| {
            if t != 0 {
                h.record(now_ns.saturating_sub(t));
            }
        });
    }

    fn envelope(&self, t_recv_ns: u64) -> Envelope {
        Envelope {
            frame: self.buf.clone(),
            t_recv_ns,
            t_enqueue_ns: clock::mono_ns(),
        }
    }

    /// Pushes `self.buf` under the policy and accounts for the outcome. Returns true if queued.
    #[inline]
    fn push_buf(&mut self, t_recv_ns: u64) -> bool {
        let env = self.envelope(t_recv_ns);
        self.push_env(env)
    }

    /// Pushes `env` under the policy and accounts for the outcome: `enqueued` when queued (and
    /// what `drop_oldest` evicted for it, see [`Self::account_evicted`]); `dropped` when not,
    /// and `consumer_gone` once the consumer has disconnected. Returns true if queued. What the
    /// lost frame itself stood for (an event, a book) is the caller's to record.
    #[inline]
    fn push_env(&mut self, env: Envelope) -> bool {
        match self.producer.push(env) {
            Ok(Pushed::Queued) => {
                self.stats.collector.enqueued.inc();
                true
            }
            Ok(Pushed::Evicted(old)) => {
                self.stats.collector.enqueued.inc();
                self.account_evicted(&old);
                true
            }
            Err(e) => {
                if matches!(e, PushError::Disconnected(_)) {
                    self.consumer_gone = true;
                }
                self.stats.collector.dropped.inc();
                false
            }
        }
    }

    /// Pushes only if there is room now; refusals are not drops (the caller keeps the data).
    fn try_push_env(&mut self, env: Envelope) -> Result<(), Envelope> {
        match self.producer.try_push(env) {
            Ok(()) => {
                self.stats.collector.enqueued.inc();
                Ok(())
            }
            Err(PushError::Dropped(e)) => Err(e),
            Err(PushError::Disconnected(e)) => {
                self.consumer_gone = true;
                Err(e)
            }
        }
    }

    /// A frame `drop_oldest` pushed out of the queue: account for what it carried.
    #[cold]
    fn account_evicted(&mut self, old: &Envelope) {
        self.stats.collector.dropped.inc();
        let h = protocol::peek_header(&old.frame);
        let Some(&i) = self.by_id.get(&h.instrument_id) else {
            return; // a feed-wide status frame: counted above
        };
        let st = &mut self.instruments[i];
        match MsgType::from_code(h.msg_type) {
            Some(MsgType::InstrumentDef) => st.def_sent = false,
            Some(MsgType::Trade | MsgType::Quote) => {
                st.unreported_drops += 1;
                self.stats.collector.dropped_events.inc();
                self.pending = true;
            }
            Some(MsgType::BookSnapshot | MsgType::BookDelta) => {
                st.unreported_drops += 1;
                st.book_bad = true;
                self.stats.collector.dropped_events.inc();
                self.pending = true;
            }
            Some(MsgType::Status) => {
                // A drop report that was itself evicted: its count must be reported again.
                if let Ok((f, _)) = protocol::decode_frame(&old.frame) {
                    if let Ok(Message::Status { status, .. }) = f.message() {
                        if status.code == StatusCode::Dropped {
                            st.unreported_drops += status.count;
                            self.pending = true;
                        }
                    }
                }
            }
            // Not market-data events: their loss shows in their own `kind_sequence`.
            Some(
                MsgType::Heartbeat
                | MsgType::Bar
                | MsgType::Mark
                | MsgType::Liquidation
                | MsgType::OpenInterest,
            )
            | None => {}
        }
    }

    /// Queues what waits for room: conflated quotes, then drop reports. Never waits.
    /// Called before each event and when the collector's socket is idle.
    pub fn flush_pending(&mut self) {
        if !self.pending {
            return;
        }
        let mut still = false;
        for i in 0..self.instruments.len() {
            if let Some(q) = self.instruments[i].pending_quote.take() {
                if !self.instruments[i].def_sent && !self.send_def(i, q.t_recv_ns, true) {
                    self.instruments[i].pending_quote = Some(q);
                    still = true;
                    continue;
                }
                if let Err(q) = self.try_push_env(q) {
                    self.instruments[i].pending_quote = Some(q);
                    still = true;
                    continue;
                }
            }
            if self.instruments[i].unreported_drops > 0 && !self.report_drops(i) {
                still = true;
            }
        }
        self.pending = still;
    }

    /// Tries to queue a `dropped` status for instrument `i`; true when done.
    fn report_drops(&mut self, i: usize) -> bool {
        let st = &self.instruments[i];
        if !st.def_sent || st.id == 0 {
            return false;
        }
        protocol::encode_status(
            &mut self.buf,
            &Meta {
                instrument_id: st.id,
                sequence: st.seq,
                recv_ts_ns: clock::wall_ns(),
                flags: 0,
            },
            self.venue.name(),
            &Status {
                code: StatusCode::Dropped,
                count: st.unreported_drops,
                detail: "frames lost between collector and consumer (queue full)",
            },
        );
        let env = self.envelope(0);
        if self.try_push_env(env).is_ok() {
            self.instruments[i].unreported_drops = 0;
            true
        } else {
            false
        }
    }

    /// Queues the InstrumentDef of instrument `i`; `no_wait` never blocks. True when queued.
    fn send_def(&mut self, i: usize, recv_wall_ns: u64, no_wait: bool) -> bool {
        let st = &self.instruments[i];
        protocol::encode_instrument_def(
            &mut self.buf,
            &Meta {
                instrument_id: st.id,
                sequence: st.seq,
                recv_ts_ns: recv_wall_ns,
                flags: 0,
            },
            self.venue.name(),
            &st.symbol,
        );
        let ok = if no_wait {
            let env = self.envelope(0);
            self.try_push_env(env).is_ok()
        } else {
            self.push_buf(0)
        };
        self.instruments[i].def_sent = ok;
        ok
    }

    /// Feed-wide status frame (instrument 0), queued under the policy.
    pub fn feed_status(&mut self, code: StatusCode, count: u64, detail: &str) {
        self.release_held(true);
        protocol::encode_status(
            &mut self.buf,
            &Meta {
                recv_ts_ns: clock::wall_ns(),
                ..Meta::default()
            },
            self.venue.name(),
            &Status {
                code,
                count,
                detail,
            },
        );
        self.push_buf(0);
    }

    fn instrument(&mut self, symbol: &str) -> usize {
        if let Some(&i) = self.by_symbol.get(symbol) {
            return i;
        }
        let id = match self.registry.insert(self.venue.name(), symbol) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(venue = %self.venue, "{e}; events of {symbol} are refused");
                0
            }
        };
        let i = self.instruments.len();
        self.instruments.push(InstrumentState {
            id,
            symbol: symbol.to_owned(),
            seq: 0,
            kind_seqs: [0; 3],
            def_sent: false,
            unreported_drops: 0,
            book_bad: false,
            pending_quote: None,
        });
        self.by_symbol.insert(symbol.to_owned(), i);
        if id != 0 {
            self.by_id.insert(id, i);
        }
        i
    }

    /// Records an event of instrument `i` that was not queued.
    fn lost(&mut self, i: usize, is_book: bool) {
        let st = &mut self.instruments[i];
        st.unreported_drops += 1;
        st.book_bad |= is_book;
        self.stats.collector.dropped_events.inc();
        self.pending = true;
    }

    /// Encodes and queues one parsed event (see the module doc for the rules).
    #[inline]
    pub fn on_event(
        &mut self,
        symbol: Option<&str>,
        ev: &Event<'_>,
        t_recv_ns: u64,
        recv_wall_ns: u64,
    ) {
        // The previous frame of this venue message was not the last: it goes now, unflagged.
        self.release_held(false);
        self.flush_pending();
        let Some(symbol) = symbol else {
            if let Event::Status(s) = ev {
                self.feed_status(s.code, s.count, s.detail);
            }
            return;
        };
        let i = self.instrument(symbol);
        let c = &self.stats.collector;
        if self.instruments[i].id == 0 {
            c.id_collisions.inc();
            return;
        }
        if let Event::Status(st) = ev {
            // The named counters behind the in-band reports (DESIGN: nothing is lost silently).
            match st.code {
                StatusCode::Gap => c.gaps.inc(),
                StatusCode::Resync => c.resyncs.inc(),
                // count 0 is Kraken v2's "cannot verify yet" notice, not a mismatch.
                StatusCode::ChecksumMismatch if st.count > 0 => c.checksum_mismatches.inc(),
                StatusCode::CrossedBook => c.crossed_books.inc(),
                _ => {}
            }
        }
        let is_event = matches!(ev, Event::Trade(_) | Event::Quote(_) | Event::Book(_));
        let is_book = matches!(ev, Event::Book(_));
        let kind_slot = match ev {
            Event::Mark(_) => Some(0),
            Event::Liquidation(_) => Some(1),
            Event::OpenInterest(_) => Some(2),
            _ => None,
        };
        let mut kind_seq = 0;
        if let Some(k) = kind_slot {
            self.instruments[i].kind_seqs[k] += 1;
            kind_seq = self.instruments[i].kind_seqs[k];
        }
        if is_event {
            self.instruments[i].seq += 1;
            c.events.inc();
            match ev {
                Event::Trade(_) => c.trades.inc(),
                Event::Quote(_) => c.quotes.inc(),
                _ => c.books.inc(),
            }
        }
        // Under conflate, an older quote of this instrument must go before this frame.
        if let Some(q) = self.instruments[i].pending_quote.take() {
            if matches!(ev, Event::Quote(_)) {
                // Replaced by the newer quote below.
                self.stats.collector.conflated.inc();
                self.lost(i, false);
            } else if !self.push_env(q) {
                self.lost(i, false);
            }
        }
        if !self.instruments[i].def_sent && !self.send_def(i, recv_wall_ns, false) {
            if is_event {
                self.lost(i, is_book);
            }
            return;
        }
        let st = &self.instruments[i];
        let mut meta = Meta {
            instrument_id: st.id,
            sequence: st.seq,
            recv_ts_ns: recv_wall_ns,
            flags: 0,
        };
        match ev {
            Event::Trade(t) => protocol::encode_trade(&mut self.buf, &meta, t),
            Event::Quote(q) => protocol::encode_quote(&mut self.buf, &meta, q),
            Event::Book(b) => {
                if st.book_bad && !b.snapshot {
                    meta.flags |= flags::BOOK_MAY_BE_BAD;
                }
                protocol::encode_book(&mut self.buf, &meta, b);
            }
            Event::Status(s) => protocol::encode_status(&mut self.buf, &meta, self.venue.name(), s),
            Event::Mark(k) => derivatives::encode_mark(&mut self.buf, &meta, kind_seq, k),
            Event::Liquidation(l) => {
                derivatives::encode_liquidation(&mut self.buf, &meta, kind_seq, l)
            }
            Event::OpenInterest(o) => {
                derivatives::encode_open_interest(&mut self.buf, &meta, kind_seq, o)
            }
        }
        if matches!(ev, Event::Quote(_)) && self.producer.policy() == Backpressure::Conflate {
            let env = self.envelope(t_recv_ns);
            if let Err(env) = self.try_push_env(env) {
                self.instruments[i].pending_quote = Some(env);
                self.pending = true;
            }
            return;
        }
        self.held = Some(Held {
            env: self.envelope(t_recv_ns),
            instrument: i,
            is_event,
            is_book,
            snapshot: matches!(ev, Event::Book(b) if b.snapshot),
        });
    }

    /// Marks the end of one venue message: its last frame goes with
    /// [`flags::LAST_IN_EVENT`]. The collector calls this after every parse.
    pub fn end_message(&mut self) {
        self.release_held(true);
    }

    /// Queues the held frame (see [`Held`]), flagged LAST_IN_EVENT when `last`.
    fn release_held(&mut self, last: bool) {
        let Some(mut h) = self.held.take() else {
            return;
        };
        if last {
            protocol::add_flags(&mut h.env.frame, flags::LAST_IN_EVENT);
        }
        if self.push_env(h.env) {
            if h.snapshot {
                self.instruments[h.instrument].book_bad = false;
            }
        } else if h.is_event {
            self.lost(h.instrument, h.is_book);
        }
    }

    /// At shutdown: queues what is still pending — conflated quotes under the policy, then drop
    /// reports, retrying while the consumer makes room, for at most [`FINISH_TIMEOUT`].
    pub fn finish(&mut self) {
        self.release_held(true);
        for i in 0..self.instruments.len() {
            if let Some(q) = self.instruments[i].pending_quote.take() {
                if !self.push_env(q) {
                    self.lost(i, false);
                }
            }
        }
        let deadline = std::time::Instant::now() + FINISH_TIMEOUT;
        loop {
            // A definition evicted at the very end must go again, or its reports cannot follow.
            for i in 0..self.instruments.len() {
                let st = &self.instruments[i];
                if st.unreported_drops > 0 && !st.def_sent && st.id != 0 {
                    self.send_def(i, clock::wall_ns(), true);
                }
            }
            self.flush_pending();
            if !self.pending || self.consumer_gone || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        if self.pending {
            let unreported: u64 = self.instruments.iter().map(|s| s.unreported_drops).sum();
            tracing::warn!(venue = %self.venue, unreported, "shutdown: drop reports could not be queued");
        }
    }
}

/// Longest [`Publisher::finish`] waits for room for pending reports.
pub const FINISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::event::{Quote, Side, Trade};
    use crate::queue::{bounded, QueueReceiver, QueueSpec, Transport};
    use std::time::Duration;

    fn publisher(t: Transport, cap: usize, policy: Backpressure) -> (Publisher, QueueReceiver) {
        publisher_blocking(t, cap, policy, Duration::from_millis(1))
    }

    fn publisher_blocking(
        t: Transport,
        cap: usize,
        policy: Backpressure,
        block_timeout: Duration,
    ) -> (Publisher, QueueReceiver) {
        let (p, r) = bounded(
            &QueueSpec {
                name: "t".into(),
                transport: t,
                capacity_frames: cap,
                policy,
                block_timeout,
            },
            Arc::default(),
        );
        (Publisher::new(Venue::Binance, p, Arc::default()), r)
    }

    /// One venue message holding one event.
    fn send(p: &mut Publisher, ev: &Event<'_>) {
        p.on_event(Some("X"), ev, 0, 0);
        p.end_message();
    }

    fn trade(n: i64) -> Event<'static> {
        Event::Trade(Trade {
            price: n,
            size: 1,
            side: Side::Buy,
            trade_id: Some(n as u64),
            exchange_ts_ns: None,
        })
    }

    fn quote(n: i64) -> Event<'static> {
        Event::Quote(Quote {
            bid_price: n,
            bid_size: 1,
            ask_price: n + 1,
            ask_size: 1,
            exchange_ts_ns: None,
        })
    }

    /// (msg type, seq, status count) of everything queued.
    fn drain(r: &QueueReceiver) -> Vec<(MsgType, u64, u64)> {
        let mut out = Vec::new();
        while let Ok(e) = r.try_pop() {
            let (f, _) = protocol::decode_frame(&e.frame).unwrap();
            let count = match f.message().unwrap() {
                Message::Status { status, .. } => status.count,
                _ => 0,
            };
            out.push((f.msg_type().unwrap(), f.header.sequence, count));
        }
        out
    }

    #[test]
    fn drops_are_reported_with_their_count_once_there_is_room() {
        let (mut p, r) = publisher(Transport::Channel, 3, Backpressure::DropNewest);
        for n in 1..=5 {
            send(&mut p, &trade(n));
        }
        // def + 2 trades fit; trades 3..5 dropped.
        let got = drain(&r);
        assert_eq!(
            got,
            [
                (MsgType::InstrumentDef, 1, 0),
                (MsgType::Trade, 1, 0),
                (MsgType::Trade, 2, 0)
            ]
        );
        send(&mut p, &trade(6));
        let got = drain(&r);
        assert_eq!(
            got,
            [(MsgType::Status, 5, 3), (MsgType::Trade, 6, 0)],
            "report precedes the next event"
        );
        let s = &p.stats().collector;
        assert_eq!(s.events.get(), 6);
        assert_eq!(s.dropped_events.get(), 3);
    }

    #[test]
    fn conflation_keeps_the_latest_quote_and_never_conflates_trades() {
        // A long block: the trade below must wait for the reader thread, however late it starts.
        let (mut p, r) = publisher_blocking(
            Transport::Ring,
            2,
            Backpressure::Conflate,
            Duration::from_secs(30),
        );
        send(&mut p, &quote(1)); // def + q1 fill the queue
        send(&mut p, &quote(2)); // pending
        send(&mut p, &quote(3)); // replaces q2 (conflated)
        assert_eq!(p.stats().collector.conflated.get(), 1);
        assert_eq!(drain(&r).len(), 2);
        p.flush_pending(); // q3, then the drop report for q2
        let got = drain(&r);
        assert_eq!(got, [(MsgType::Quote, 3, 0), (MsgType::Status, 3, 1)]);
        // A trade behind a pending quote: the quote goes first, the trade blocks, nothing lost.
        send(&mut p, &quote(4));
        send(&mut p, &quote(5));
        let r2 = std::thread::spawn(move || {
            let mut got = Vec::new();
            let end = std::time::Instant::now() + Duration::from_secs(5);
            while got.len() < 3 && std::time::Instant::now() < end {
                got.extend(drain(&r));
            }
            got
        });
        send(&mut p, &trade(6));
        let got = r2.join().unwrap();
        assert_eq!(got[0], (MsgType::Quote, 4, 0));
        assert_eq!(got[1], (MsgType::Quote, 5, 0));
        assert_eq!(got[2], (MsgType::Trade, 6, 0));
    }

    #[test]
    fn evicted_definition_is_sent_again_before_the_next_frame() {
        let (mut p, r) = publisher(Transport::Ring, 2, Backpressure::DropOldest);
        send(&mut p, &trade(1)); // [def, t1]
        send(&mut p, &trade(2)); // evicts def → [t1, t2]
        send(&mut p, &trade(3)); // def again first: evicts t1, t2
        let got = drain(&r);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, MsgType::InstrumentDef, "{got:?}");
        assert_eq!(got[1], (MsgType::Trade, 3, 0));
        assert_eq!(p.stats().collector.dropped_events.get(), 2);
        send(&mut p, &trade(4));
        assert_eq!(drain(&r), [(MsgType::Status, 3, 2), (MsgType::Trade, 4, 0)]);
    }

    #[test]
    fn the_last_frame_of_a_venue_message_is_flagged() {
        let (mut p, r) = publisher(Transport::Channel, 16, Backpressure::Block);
        // One message with three trades (a Kraken trade array), then one with a single trade.
        for n in 1..=3 {
            p.on_event(Some("X"), &trade(n), 0, 0);
        }
        p.end_message();
        send(&mut p, &trade(4));
        let mut flagged = Vec::new();
        while let Ok(e) = r.try_pop() {
            let (f, _) = protocol::decode_frame(&e.frame).unwrap();
            if f.msg_type() == Some(MsgType::Trade) {
                flagged.push((
                    f.header.sequence,
                    f.header.flags & flags::LAST_IN_EVENT != 0,
                ));
            }
        }
        assert_eq!(flagged, [(1, false), (2, false), (3, true), (4, true)]);
    }

    #[test]
    fn status_events_raise_their_named_counters() {
        use crate::market::event::Status;
        let (mut p, _r) = publisher(Transport::Channel, 64, Backpressure::Block);
        let st = |code, count| {
            Event::Status(Status {
                code,
                count,
                detail: "",
            })
        };
        for ev in [
            st(StatusCode::Gap, 3),
            st(StatusCode::Resync, 1),
            st(StatusCode::ChecksumMismatch, 1),
            st(StatusCode::ChecksumMismatch, 0), // "unverified" notice: not a mismatch
            st(StatusCode::CrossedBook, 1),
        ] {
            send(&mut p, &ev);
        }
        let c = &p.stats().collector;
        assert_eq!(
            (
                c.gaps.get(),
                c.resyncs.get(),
                c.checksum_mismatches.get(),
                c.crossed_books.get()
            ),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn derivative_kinds_keep_the_market_data_sequence_and_number_themselves() {
        use crate::market::event::{Liquidation, LiquidationStatus, Mark, OpenInterest};
        use crate::market::fixed::ABSENT;
        let (mut p, r) = publisher(Transport::Channel, 4, Backpressure::DropNewest);
        let mark = |n: i64| {
            Event::Mark(Mark {
                mark_price: n,
                index_price: ABSENT,
                settle_price: ABSENT,
                funding_rate: ABSENT,
                next_funding_ns: None,
                exchange_ts_ns: None,
            })
        };
        send(&mut p, &trade(1));
        send(&mut p, &mark(2));
        send(
            &mut p,
            &Event::Liquidation(Liquidation {
                side: Side::Sell,
                price: 3,
                avg_price: ABSENT,
                size: 1,
                filled_size: ABSENT,
                status: LiquidationStatus::New,
                exchange_ts_ns: None,
            }),
        );
        // The queue (4) is full: this mark is lost.
        send(&mut p, &mark(4));
        let numbers = |r: &QueueReceiver| {
            let mut out = Vec::new();
            while let Ok(e) = r.try_pop() {
                let (f, _) = protocol::decode_frame(&e.frame).unwrap();
                let k = match f.message().unwrap() {
                    Message::Mark { kind_sequence, .. } => ("mark", kind_sequence),
                    Message::Liquidation { kind_sequence, .. } => ("liq", kind_sequence),
                    Message::OpenInterest { kind_sequence, .. } => ("oi", kind_sequence),
                    Message::Status { status, .. } => ("status", status.count),
                    _ => ("other", 0),
                };
                out.push((k.0, f.header.sequence, k.1));
            }
            out
        };
        assert_eq!(
            numbers(&r),
            [
                ("other", 1, 0),
                ("other", 1, 0),
                ("mark", 1, 1),
                ("liq", 1, 1)
            ]
        );
        send(&mut p, &mark(5));
        send(
            &mut p,
            &Event::OpenInterest(OpenInterest {
                open_interest: 6,
                value: ABSENT,
                exchange_ts_ns: None,
            }),
        );
        send(&mut p, &trade(7));
        // No `dropped` report (it counts market-data events only): the lost mark shows as the
        // gap 1 → 3 in the marks' own numbers; the trades' sequence has no gap.
        assert_eq!(numbers(&r), [("mark", 1, 3), ("oi", 1, 1), ("other", 2, 0)]);
        let c = &p.stats().collector;
        assert_eq!((c.dropped.get(), c.dropped_events.get()), (1, 0));
    }
}
