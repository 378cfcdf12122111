//! What the consumer derives from the frames it relays: OHLCV bars and session statistics per
//! instrument, the records the CSV writer persists, and the snapshot the HTTP query API reads.
//!
//! Runs on the consumer thread, right after a frame has been accepted by the cache and appended
//! to every subscriber's buffer, so it never delays a frame's own delivery. Per trade it costs a
//! fixed-offset decode, one [`BarBuilder::on_trade`] and a non-blocking `try_send` to the writer;
//! a bar that closes is encoded once, relayed to subscribers as a Bar frame right after the
//! trade that closed it, persisted and kept for the query API. Nothing here blocks: the writer
//! queue is bounded and a full queue is counted, the query snapshot is a lock-free
//! publication (see [`crate::consumer::snapshot`]).
//!
//! Records that are not persisted (writer queue full, disk errors in the writer, raw recorder
//! queue full) are summed and reported to subscribers as one `not_persisted` status at most once
//! per [`NOT_PERSISTED_REPORT`].
//!
//! [`Analytics`] keeps the per-instrument state and drives three parts, each in its own file:
//! `bars` (when bars close, on which clock), `persistence` (CSV records, `not_persisted`
//! reports) and `publishing` (the query snapshot).

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::base::clock;
use crate::base::stats::Counter;
use crate::consumer::bars::Bars;
use crate::consumer::config::{BarClock, BarsConfig, Persist};
use crate::consumer::persistence::Persistence;
use crate::consumer::publishing::Publishing;
use crate::consumer::snapshot::SharedQuery;
use crate::market::bars::{Bar, BarBuilder};
use crate::market::event::{Mark, OpenInterest, Quote, Status, StatusCode, Trade};
use crate::market::instrument::InstrumentId;
use crate::persist::recorder::RecorderStats;
use crate::persist::writer::{WriterHandle, WriterStats};
use crate::relay::cache::Cache;
use crate::relay::subscribers::Subscribers;
use crate::wire::protocol::{
    self, BarFrame, FrameBuf, Header, Message, Meta, MsgType, RELAY_VENUE,
};

pub use crate::consumer::persistence::NOT_PERSISTED_REPORT;

/// Per-instrument derived state: one per instrument whose InstrumentDef the consumer has taken,
/// never removed.
pub(super) struct Inst {
    /// The feed the definition came on (config order); fixed. That feed's data-clock timer
    /// closes this instrument's bars.
    pub(super) feed: usize,
    /// Open bars and session statistics, fed the instrument's relayed trades in queue order.
    pub(super) bars: BarBuilder,
    /// Sequence of the instrument's latest frame taken (definition, trade, quote or book);
    /// carried by its Bar frames.
    pub(super) sequence: u64,
    /// The latest trade and its `recv_ts_ns`; `None` until the first.
    pub(super) last_trade: Option<(Trade, u64)>,
    /// The latest quote and its `recv_ts_ns`; `None` until the first.
    pub(super) quote: Option<(Quote, u64)>,
    /// The latest mark (derivatives) and its `recv_ts_ns`; `None` until the first (always for
    /// spot).
    pub(super) mark: Option<(Mark, u64)>,
    /// The latest open interest (derivatives) and its `recv_ts_ns`; `None` until the first.
    pub(super) open_interest: Option<(OpenInterest, u64)>,
}

/// Counters of derived data (shared with metrics and the shutdown summary); only the consumer's
/// [`Analytics`] writes them.
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
    /// Query snapshot publishes skipped: always 0 since the snapshot is a lock-free publication
    /// (kept so dashboards that plot it keep working).
    pub snapshots_skipped: Counter,
    /// `not_persisted` status frames sent.
    pub not_persisted_reports: Counter,
}

/// The consumer's derived-data state.
pub struct Analytics {
    /// Every instrument defined so far, by id; frames of other ids are ignored here.
    insts: FxHashMap<InstrumentId, Inst>,
    /// When bars close, on which clock.
    bars: Bars,
    /// CSV records and `not_persisted` reports.
    persistence: Persistence,
    /// The query snapshot.
    publishing: Publishing,
    /// The bars closed by the current call; each user clears it first, so what it holds
    /// between calls means nothing. Keeps its capacity, so closing bars does not allocate.
    closed: Vec<Bar>,
    /// Encoding buffer for the Bar and `not_persisted` frames sent from here; meaningless
    /// between calls.
    scratch: FrameBuf,
    /// Shared with metrics and the shutdown summary; written only here.
    counters: Arc<AnalyticsCounters>,
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
        let feeds = feed_names.len();
        Analytics {
            insts: FxHashMap::default(),
            bars: Bars::new(cfg, feeds),
            persistence: Persistence::new(persist, writer, recorder),
            publishing: Publishing::new(query, feed_names),
            closed: Vec::with_capacity(crate::market::bars::MAX_INTERVALS),
            scratch: FrameBuf::new(),
            counters,
        }
    }

    /// How often [`on_timer`](Self::on_timer) should run, ns.
    pub fn timer_interval_ns(&self) -> u64 {
        self.bars.timer_interval_ns()
    }

    /// How often [`publish`](Self::publish) should run, ns (`u64::MAX`: no query API).
    pub fn snapshot_interval_ns(&self) -> u64 {
        self.publishing.interval_ns()
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
            marks: false,
            liquidations: false,
            open_interest: false,
        };
        let names = (0..feeds).map(|i| format!("feed{i}")).collect();
        Analytics::new(cfg, persist, names, None, None, None, Arc::default())
    }

    /// The writer's counters, when CSV is on.
    pub fn writer_stats(&self) -> Option<Arc<WriterStats>> {
        self.persistence.writer_stats()
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
        // On the recording's clock the timer runs at fixed points of the feed's own data, so a
        // replay closes the same bars at the same places in the stream every time.
        if let Some(now) = self.bars.on_data(feed, h.recv_ts_ns) {
            self.close_due(Some(feed), now, subs, cache);
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
                self.publishing.touch(h.instrument_id);
                self.persistence.quote(h.instrument_id, h.recv_ts_ns, q);
            }
            Some(MsgType::BookSnapshot | MsgType::BookDelta) => {
                if let Some(inst) = self.insts.get_mut(&h.instrument_id) {
                    inst.sequence = h.sequence;
                    self.publishing.touch(h.instrument_id);
                }
            }
            Some(MsgType::InstrumentDef) => self.on_def(feed, h, frame),
            Some(MsgType::Mark | MsgType::Liquidation | MsgType::OpenInterest) => {
                self.on_derivatives(h, frame)
            }
            _ => {}
        }
    }

    /// A Mark, Liquidation or OpenInterest frame: kept for the query API (mark, open interest)
    /// and persisted. They do not advance the instrument's market-data sequence.
    fn on_derivatives(&mut self, h: &Header, frame: &[u8]) {
        let Some(inst) = self.insts.get_mut(&h.instrument_id) else {
            return;
        };
        let Ok((f, _)) = protocol::decode_frame(frame) else {
            return;
        };
        let id = h.instrument_id;
        match f.message() {
            Ok(Message::Mark { mark, .. }) => {
                inst.mark = Some((mark, h.recv_ts_ns));
                self.publishing.touch(id);
                self.persistence.mark(id, h.recv_ts_ns, mark);
            }
            Ok(Message::OpenInterest { open_interest, .. }) => {
                inst.open_interest = Some((open_interest, h.recv_ts_ns));
                self.publishing.touch(id);
                self.persistence
                    .open_interest(id, h.recv_ts_ns, open_interest);
            }
            Ok(Message::Liquidation { liquidation, .. }) => {
                self.persistence.liquidation(id, h.recv_ts_ns, liquidation);
            }
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
        self.persistence.register(h.instrument_id, venue, symbol);
        self.insts.insert(
            h.instrument_id,
            Inst {
                feed,
                bars: self.bars.builder(),
                sequence: h.sequence,
                last_trade: None,
                quote: None,
                mark: None,
                open_interest: None,
            },
        );
        self.publishing
            .defined(h.instrument_id, venue, symbol, feed);
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
        self.publishing.touch(h.instrument_id);
        self.persistence.trade(h.instrument_id, h.recv_ts_ns, t);
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
            self.persistence.bar(id, bar);
            self.publishing.bar_closed(id, bar);
        }
        self.publishing.touch(id);
    }

    /// The wall-clock timer: with [`BarClock::Wall`] closes the bars whose end + grace has
    /// passed; reports unpersisted records.
    pub fn on_timer(&mut self, now_wall_ns: u64, subs: &mut Subscribers, cache: &mut Cache) {
        if self.bars.on_wall_clock() {
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
        let Some((n, detail)) = self.persistence.take_unreported(now_ns, force) else {
            return;
        };
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
        self.publishing
            .publish(&self.insts, cache, force, &self.counters);
    }

    /// At shutdown: closes the open bars if configured, reports the last losses, publishes the
    /// final snapshot, and hands the writer back for closing (it writes everything queued).
    pub fn finish(&mut self, cache: &mut Cache, subs: &mut Subscribers) -> Option<WriterHandle> {
        if self.bars.close_on_shutdown() {
            let mut closed = Vec::new();
            let mut ids: Vec<InstrumentId> = self.insts.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                let Some(inst) = self.insts.get_mut(&id) else {
                    continue;
                };
                closed.clear();
                inst.bars.close_all(&mut closed);
                let at = self.bars.shutdown_ns(inst.feed);
                let seq = inst.sequence;
                self.emit_bars(id, seq, at, &closed, subs, cache);
            }
        }
        self.report_losses(clock::wall_ns(), subs, true);
        self.publish(cache, true);
        self.persistence.take_writer()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::base::publication::Publication;

    use super::*;
    use crate::market::event::{Liquidation, LiquidationStatus, Side};
    use crate::market::fixed::ABSENT;
    use crate::market::instrument::instrument_id;
    use crate::persist::config::WriterConfig;
    use crate::relay::subscribers::Subscribers;
    use crate::wire::derivatives::{encode_liquidation, encode_mark, encode_open_interest};

    /// Mark, Liquidation and OpenInterest frames the consumer accepted: the query snapshot
    /// holds the latest mark and open interest, and each kind has its CSV row.
    #[test]
    fn derivatives_frames_reach_the_query_snapshot_and_their_csv_files() {
        let tmp = tempfile::tempdir().unwrap();
        let writer = WriterHandle::spawn(WriterConfig::new(tmp.path())).unwrap();
        let query: SharedQuery = Arc::new(Publication::new(
            crate::consumer::snapshot::QueryState::new(&[], 0, 10),
        ));
        let mut a = Analytics::new(
            BarsConfig {
                bars: crate::market::bars::BarConfig::default(),
                timer_interval: Duration::from_millis(100),
                close_on_shutdown: false,
                clock: BarClock::Wall,
            },
            Persist {
                trades: true,
                quotes: true,
                bars: true,
                marks: true,
                liquidations: true,
                open_interest: true,
            },
            vec!["usdm".into()],
            Some(writer),
            None,
            Some((query.clone(), Duration::from_millis(1))),
            Arc::default(),
        );
        let mut cache = Cache::default();
        let mut subs = Subscribers::new(1 << 20, std::time::Duration::from_secs(1), Arc::default());
        let id = instrument_id("binance_usdm", "BTCUSDT");
        let recv = 1_723_161_600_000_000_000; // 2024-08-09T00:00:00Z
        let meta = Meta {
            instrument_id: id,
            sequence: 0,
            recv_ts_ns: recv,
            flags: 0,
        };
        let mut f = FrameBuf::new();
        let mut take = |f: &FrameBuf, a: &mut Analytics, cache: &mut Cache| {
            let h = protocol::peek_header(f);
            cache.apply(0, &h, f).unwrap();
            a.on_frame(0, &h, f, &mut subs, cache);
        };
        protocol::encode_instrument_def(&mut f, &meta, "binance_usdm", "BTCUSDT");
        take(&f, &mut a, &mut cache);
        let mark = Mark {
            mark_price: 1_179_415_000_000,
            index_price: 1_178_462_659_091,
            settle_price: ABSENT,
            funding_rate: 381_670_000_000_000,
            next_funding_ns: Some(recv + 1),
            exchange_ts_ns: None,
        };
        encode_mark(&mut f, &meta, 1, &mark);
        take(&f, &mut a, &mut cache);
        let liq = Liquidation {
            side: Side::Sell,
            price: 1,
            avg_price: ABSENT,
            size: 2,
            filled_size: ABSENT,
            status: LiquidationStatus::New,
            exchange_ts_ns: None,
        };
        encode_liquidation(&mut f, &meta, 1, &liq);
        take(&f, &mut a, &mut cache);
        let oi = OpenInterest {
            open_interest: 3,
            value: ABSENT,
            exchange_ts_ns: None,
        };
        encode_open_interest(&mut f, &meta, 1, &oi);
        take(&f, &mut a, &mut cache);

        let w = a.finish(&mut cache, &mut subs).unwrap();
        w.close().unwrap();
        {
            let q = query.load();
            let v = q.find("binance_usdm", "BTCUSDT").unwrap();
            assert_eq!(v.mark, Some((mark, recv)));
            assert_eq!(v.open_interest, Some((oi, recv)));
            assert!(v.last_trade.is_none() && v.quote.is_none());
        }
        let day = tmp.path().join("binance_usdm/BTCUSDT/2024-08-09");
        for (file, row) in [
            ("mark.csv", ",11794.15,11784.62659091,,0.00038167,"),
            ("liquidations.csv", ",sell,0.00000001,,0.00000002,,new"),
            ("open_interest.csv", ",0.00000003,"),
        ] {
            let text = std::fs::read_to_string(day.join(file)).unwrap();
            assert_eq!(
                text.lines().count(),
                2,
                "{file}: header and one row\n{text}"
            );
            assert!(text.contains(row), "{file}:\n{text}");
        }
    }
}
