//! What the consumer derives from the frames it relays: OHLCV bars and session statistics per
//! instrument, the records the CSV writer persists, and the snapshot the HTTP query API reads.
//!
//! Runs on the consumer thread, right after a frame has been accepted by the cache and appended
//! to every subscriber's buffer, so it never delays a frame's own delivery. Per trade it costs a
//! fixed-offset decode, one [`BarBuilder::on_trade`] and a non-blocking `try_send` to the writer;
//! a bar that closes is encoded once, relayed to subscribers as a Bar frame right after the
//! trade that closed it, persisted and kept for the query API. Nothing here blocks: the writer
//! queue is bounded and a full queue is counted, the query snapshot is published with
//! `try_lock` (see [`crate::consumer::snapshot`]).
//!
//! Records that are not persisted (writer queue full, disk errors in the writer, raw recorder
//! queue full) are summed and reported to subscribers as one `not_persisted` status at most once
//! per [`NOT_PERSISTED_REPORT`].

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::base::clock;
use crate::base::stats::Counter;
use crate::consumer::config::{BarClock, BarsConfig, Persist};
use crate::consumer::snapshot::{BookView, SharedQuery};
use crate::market::bars::{Bar, BarBuilder};
use crate::market::event::{Quote, Status, StatusCode, Trade};
use crate::market::instrument::InstrumentId;
use crate::persist::recorder::RecorderStats;
use crate::persist::writer::{WriterHandle, WriterRecord, WriterStats};
use crate::relay::cache::Cache;
use crate::relay::subscribers::Subscribers;
use crate::wire::protocol::{self, BarFrame, FrameBuf, Header, Message, Meta, MsgType};

/// Shortest time between two `not_persisted` reports.
pub const NOT_PERSISTED_REPORT: Duration = Duration::from_secs(1);

/// Venue name of relay-wide status frames.
pub const RELAY_VENUE: &str = "mdrelay";

/// Per-instrument derived state.
struct Inst {
    feed: usize,
    bars: BarBuilder,
    /// Latest market-data sequence seen (carried by the instrument's Bar frames).
    sequence: u64,
    last_trade: Option<(Trade, u64)>,
    quote: Option<(Quote, u64)>,
}

/// Counters of derived data (shared with metrics and the shutdown summary).
#[derive(Debug, Default)]
pub struct AnalyticsCounters {
    /// Bars closed (and relayed).
    pub bars_closed: Counter,
    /// Trades left out of a bar because their interval had already closed (per interval).
    pub late_trades: Counter,
    /// Trades the bar builder refused (absent price, negative size).
    pub rejected_trades: Counter,
    /// Query snapshots published.
    pub snapshots_published: Counter,
    /// Query snapshot publishes skipped because the HTTP thread held the lock.
    pub snapshots_skipped: Counter,
    /// `not_persisted` status frames sent.
    pub not_persisted_reports: Counter,
}

/// The consumer's derived-data state.
pub struct Analytics {
    cfg: BarsConfig,
    persist: Persist,
    insts: FxHashMap<InstrumentId, Inst>,
    /// Feed names, for the query snapshot.
    feed_names: Vec<String>,
    /// Per feed: latest receive time seen (the bar clock of a replay).
    data_clock: Vec<u64>,
    /// Per feed, with [`BarClock::Data`]: the data time of the feed's next bar-timer run.
    next_data_timer: Vec<u64>,
    writer: Option<WriterHandle>,
    /// Raw recorder counters, read for `not_persisted` reports.
    recorder: Option<Arc<RecorderStats>>,
    /// Losses already reported.
    reported_lost: u64,
    next_report_ns: u64,
    query: Option<SharedQuery>,
    /// Instruments changed since the last successful publish.
    dirty: FxHashSet<InstrumentId>,
    /// Closed bars not yet in the query snapshot.
    pending_bars: Vec<(InstrumentId, Bar)>,
    /// Instruments defined but not yet in the query snapshot: (id, venue, symbol, feed).
    pending_defs: Vec<(InstrumentId, String, String, usize)>,
    closed: Vec<Bar>,
    scratch: FrameBuf,
    counters: Arc<AnalyticsCounters>,
    /// Query snapshot period, ns.
    snapshot_interval_ns: u64,
}

impl Analytics {
    /// Derives bars per `cfg`, persists through `writer` (when given) what `persist` selects,
    /// publishes into `query` (when given).
    pub fn new(
        cfg: BarsConfig,
        persist: Persist,
        feed_names: Vec<String>,
        writer: Option<WriterHandle>,
        recorder: Option<Arc<RecorderStats>>,
        query: Option<(SharedQuery, Duration)>,
        counters: Arc<AnalyticsCounters>,
    ) -> Self {
        let snapshot_interval_ns = query
            .as_ref()
            .map_or(u64::MAX, |(_, d)| d.as_nanos() as u64);
        let query = query.map(|(q, _)| q);
        let feeds = feed_names.len();
        Analytics {
            cfg,
            persist,
            insts: FxHashMap::default(),
            feed_names,
            data_clock: vec![0; feeds],
            next_data_timer: vec![0; feeds],
            writer,
            recorder,
            reported_lost: 0,
            next_report_ns: 0,
            query,
            dirty: FxHashSet::default(),
            pending_bars: Vec::new(),
            pending_defs: Vec::new(),
            closed: Vec::with_capacity(crate::market::bars::MAX_INTERVALS),
            scratch: FrameBuf::new(),
            counters,
            snapshot_interval_ns,
        }
    }

    /// How often [`on_timer`](Self::on_timer) should run, ns.
    pub fn timer_interval_ns(&self) -> u64 {
        self.cfg.timer_interval.as_nanos() as u64
    }

    /// How often [`publish`](Self::publish) should run, ns (`u64::MAX`: no query API).
    pub fn snapshot_interval_ns(&self) -> u64 {
        self.snapshot_interval_ns
    }

    /// Bars with the default configuration for `feeds` feeds, relayed only: no CSV, no query
    /// snapshot (tests and benchmarks that build a consumer by hand).
    pub fn relay_only(feeds: usize) -> Self {
        let cfg = BarsConfig {
            bars: crate::market::bars::BarConfig::default(),
            timer_interval: Duration::from_millis(100),
            close_on_shutdown: false,
            clock: BarClock::Wall,
        };
        let persist = Persist {
            trades: false,
            quotes: false,
            bars: false,
        };
        let names = (0..feeds).map(|i| format!("feed{i}")).collect();
        Analytics::new(cfg, persist, names, None, None, None, Arc::default())
    }

    /// The writer's counters, when CSV is on.
    pub fn writer_stats(&self) -> Option<Arc<WriterStats>> {
        self.writer.as_ref().map(|w| w.stats().clone())
    }

    /// Takes in a frame of `feed` that the cache accepted and subscribers were given.
    #[inline]
    pub fn on_frame(
        &mut self,
        feed: usize,
        h: &Header,
        frame: &[u8],
        subs: &mut Subscribers,
        cache: &mut Cache,
    ) {
        if h.instrument_id == 0 {
            return;
        }
        if let Some(c) = self.data_clock.get_mut(feed) {
            *c = (*c).max(h.recv_ts_ns);
            // On the recording's clock the timer runs at fixed points of the feed's own data,
            // so a replay closes the same bars at the same places in the stream every time.
            if self.cfg.clock == BarClock::Data && *c >= self.next_data_timer[feed] {
                let now = *c;
                self.next_data_timer[feed] = now.saturating_add(self.timer_interval_ns());
                self.close_due(Some(feed), now, subs, cache);
            }
        }
        match MsgType::from_code(h.msg_type) {
            Some(MsgType::Trade) => self.on_trade(h, frame, subs, cache),
            Some(MsgType::Quote) => {
                let Some(inst) = self.insts.get_mut(&h.instrument_id) else {
                    return;
                };
                inst.sequence = h.sequence;
                let Ok((f, _)) = protocol::decode_frame(frame) else {
                    return;
                };
                let Ok(Message::Quote(q)) = f.message() else {
                    return;
                };
                inst.quote = Some((q, h.recv_ts_ns));
                self.dirty.insert(h.instrument_id);
                if self.persist.quotes {
                    self.send(WriterRecord::Quote {
                        instrument_id: h.instrument_id,
                        recv_ts_ns: h.recv_ts_ns,
                        quote: q,
                    });
                }
            }
            Some(MsgType::BookSnapshot | MsgType::BookDelta) => {
                if let Some(inst) = self.insts.get_mut(&h.instrument_id) {
                    inst.sequence = h.sequence;
                    self.dirty.insert(h.instrument_id);
                }
            }
            Some(MsgType::InstrumentDef) => self.on_def(feed, h, frame),
            _ => {}
        }
    }

    #[cold]
    fn on_def(&mut self, feed: usize, h: &Header, frame: &[u8]) {
        if self.insts.contains_key(&h.instrument_id) {
            return;
        }
        let Ok((f, _)) = protocol::decode_frame(frame) else {
            return;
        };
        let Ok(Message::InstrumentDef { venue, symbol, .. }) = f.message() else {
            return;
        };
        if let Some(w) = &self.writer {
            if let Err(e) = w.register(h.instrument_id, venue, symbol) {
                tracing::warn!("csv writer: {e}; its records will not be persisted");
            }
        }
        self.insts.insert(
            h.instrument_id,
            Inst {
                feed,
                bars: BarBuilder::new(&self.cfg.bars),
                sequence: h.sequence,
                last_trade: None,
                quote: None,
            },
        );
        self.pending_defs
            .push((h.instrument_id, venue.to_owned(), symbol.to_owned(), feed));
    }

    #[inline]
    fn on_trade(&mut self, h: &Header, frame: &[u8], subs: &mut Subscribers, cache: &mut Cache) {
        let Some(inst) = self.insts.get_mut(&h.instrument_id) else {
            return;
        };
        inst.sequence = h.sequence;
        let Ok((f, _)) = protocol::decode_frame(frame) else {
            return;
        };
        let Ok(Message::Trade(t)) = f.message() else {
            return;
        };
        inst.last_trade = Some((t, h.recv_ts_ns));
        self.closed.clear();
        match inst
            .bars
            .on_trade(h.recv_ts_ns, t.price, t.size, &mut self.closed)
        {
            crate::market::bars::TradeOutcome::Accepted => {}
            crate::market::bars::TradeOutcome::Late => self.counters.late_trades.inc(),
            crate::market::bars::TradeOutcome::Rejected => self.counters.rejected_trades.inc(),
        }
        self.dirty.insert(h.instrument_id);
        if self.persist.trades {
            self.send(WriterRecord::Trade {
                instrument_id: h.instrument_id,
                recv_ts_ns: h.recv_ts_ns,
                trade: t,
            });
        }
        if !self.closed.is_empty() {
            let closed = std::mem::take(&mut self.closed);
            self.emit_bars(
                h.instrument_id,
                h.sequence,
                h.recv_ts_ns,
                &closed,
                subs,
                cache,
            );
            self.closed = closed;
        }
    }

    /// Relays, persists and keeps for queries the bars of `id` that just closed.
    fn emit_bars(
        &mut self,
        id: InstrumentId,
        sequence: u64,
        closed_at_ns: u64,
        bars: &[Bar],
        subs: &mut Subscribers,
        cache: &mut Cache,
    ) {
        for bar in bars {
            protocol::encode_bar(
                &mut self.scratch,
                &Meta {
                    instrument_id: id,
                    sequence,
                    recv_ts_ns: closed_at_ns,
                    flags: 0,
                },
                &BarFrame::from(bar),
            );
            subs.broadcast(&self.scratch);
            cache.store_bar(id, bar.interval_ns, &self.scratch);
            self.counters.bars_closed.inc();
            if self.persist.bars {
                self.send(WriterRecord::Bar {
                    instrument_id: id,
                    bar: *bar,
                });
            }
            if self.query.is_some() {
                self.pending_bars.push((id, *bar));
            }
        }
        self.dirty.insert(id);
    }

    #[inline]
    fn send(&mut self, rec: WriterRecord) {
        if let Some(w) = self.writer.as_mut() {
            // Refusals are counted by the handle; they are reported as `not_persisted`.
            let _ = w.try_send(rec);
        }
    }

    /// The wall-clock timer: with [`BarClock::Wall`] closes the bars whose end + grace has
    /// passed; reports unpersisted records.
    pub fn on_timer(&mut self, now_wall_ns: u64, subs: &mut Subscribers, cache: &mut Cache) {
        if self.cfg.clock == BarClock::Wall {
            self.close_due(None, now_wall_ns, subs, cache);
        }
        self.report_losses(now_wall_ns, subs, false);
    }

    /// Closes the due bars of the instruments of `feed` (`None`: of every feed) at `now`.
    fn close_due(
        &mut self,
        feed: Option<usize>,
        now: u64,
        subs: &mut Subscribers,
        cache: &mut Cache,
    ) {
        let mut closed = std::mem::take(&mut self.closed);
        let mut ids: Vec<InstrumentId> = self
            .insts
            .iter()
            .filter(|(_, i)| feed.is_none_or(|f| i.feed == f))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            let Some(inst) = self.insts.get_mut(&id) else {
                continue;
            };
            closed.clear();
            if inst.bars.on_timer(now, &mut closed) > 0 {
                let seq = inst.sequence;
                self.emit_bars(id, seq, now, &closed, subs, cache);
            }
        }
        closed.clear();
        self.closed = closed;
    }

    /// Sends one `not_persisted` status when records were lost since the last report (at most
    /// once per [`NOT_PERSISTED_REPORT`] unless `force`).
    fn report_losses(&mut self, now_ns: u64, subs: &mut Subscribers, force: bool) {
        if !force && now_ns < self.next_report_ns {
            return;
        }
        let mut lost = self.recorder.as_ref().map_or(0, |r| r.dropped.get());
        let mut why = Vec::new();
        if lost > 0 {
            why.push("raw recorder queue full");
        }
        if let Some(w) = &self.writer {
            let s = w.stats();
            let full = s.producer.full.get() + s.producer.disconnected.get();
            let io = s.writer.dropped_io.get() + s.writer.dropped_unknown.get();
            if full > 0 {
                why.push("csv writer queue full");
            }
            if io > 0 {
                why.push("csv write errors");
            }
            lost += full + io;
        }
        if lost <= self.reported_lost {
            return;
        }
        let n = lost - self.reported_lost;
        self.reported_lost = lost;
        self.next_report_ns = now_ns + NOT_PERSISTED_REPORT.as_nanos() as u64;
        let detail = format!("records not persisted ({})", why.join(", "));
        protocol::encode_status(
            &mut self.scratch,
            &Meta {
                recv_ts_ns: clock::wall_ns(),
                ..Meta::default()
            },
            RELAY_VENUE,
            &Status {
                code: StatusCode::NotPersisted,
                count: n,
                detail: &detail,
            },
        );
        subs.broadcast(&self.scratch);
        self.counters.not_persisted_reports.inc();
    }

    /// Copies what changed into the query snapshot unless the HTTP thread holds it (`force`:
    /// wait for it, at shutdown).
    pub fn publish(&mut self, cache: &Cache, force: bool) {
        let Some(q) = &self.query else {
            return;
        };
        let guard = if force { Some(q.lock()) } else { q.try_lock() };
        let Some(mut s) = guard else {
            self.counters.snapshots_skipped.inc();
            return;
        };
        for (id, venue, symbol, feed) in self.pending_defs.drain(..) {
            let name = self.feed_names.get(feed).map_or("", String::as_str);
            s.define(id, &venue, &symbol, name);
        }
        for (id, bar) in self.pending_bars.drain(..) {
            s.push_closed(id, &bar);
        }
        let depth = s.book_depth;
        for id in self.dirty.drain() {
            let Some(inst) = self.insts.get(&id) else {
                continue;
            };
            let Some(v) = s.get_mut(id) else {
                continue;
            };
            v.last_trade = inst.last_trade;
            v.quote = inst.quote;
            v.session = *inst.bars.session();
            v.open_bars.clear();
            v.open_bars.extend(
                inst.bars
                    .intervals_ns()
                    .filter_map(|ns| inst.bars.current(ns).copied()),
            );
            if let Some(cb) = cache.get(id).and_then(|e| e.book.as_ref()) {
                let b = v.book.get_or_insert_with(BookView::default);
                b.bids.clear();
                b.bids.extend(cb.book.bids().take(depth));
                b.asks.clear();
                b.asks.extend(cb.book.asks().take(depth));
                b.bid_levels = cb.book.bid_levels();
                b.ask_levels = cb.book.ask_levels();
                b.sequence = cb.last.sequence;
                b.recv_ts_ns = cb.last.recv_ts_ns;
                b.may_be_bad = cb.last.flags & protocol::flags::BOOK_MAY_BE_BAD != 0;
            }
        }
        s.published_ns = clock::wall_ns();
        self.counters.snapshots_published.inc();
    }

    /// At shutdown: closes the open bars if configured, reports the last losses, publishes the
    /// final snapshot, and hands the writer back for closing (it writes everything queued).
    pub fn finish(&mut self, cache: &mut Cache, subs: &mut Subscribers) -> Option<WriterHandle> {
        if self.cfg.close_on_shutdown {
            let mut closed = Vec::new();
            let mut ids: Vec<InstrumentId> = self.insts.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                let Some(inst) = self.insts.get_mut(&id) else {
                    continue;
                };
                closed.clear();
                inst.bars.close_all(&mut closed);
                let at = match self.cfg.clock {
                    BarClock::Wall => clock::wall_ns(),
                    BarClock::Data => self.data_clock.get(inst.feed).copied().unwrap_or(0),
                };
                let seq = inst.sequence;
                self.emit_bars(id, seq, at, &closed, subs, cache);
            }
        }
        self.report_losses(clock::wall_ns(), subs, true);
        self.publish(cache, true);
        self.writer.take()
    }
}
