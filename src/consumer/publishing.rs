//! What the consumer publishes for the HTTP query API: it notes what changed (instruments,
//! definitions, closed bars) as frames pass, and every snapshot interval copies only that into
//! the shared [`QueryState`](crate::consumer::snapshot::QueryState).
//!
//! Runs on the consumer thread, inside [`Analytics`](super::analytics::Analytics). Never waits
//! on the HTTP thread: a publish takes the snapshot with `try_lock` and, when the lock is held,
//! skips the turn and keeps what changed for the next one (only the final publish at shutdown
//! waits).

use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::base::clock;
use crate::consumer::analytics::{AnalyticsCounters, Inst};
use crate::consumer::snapshot::{BookView, SharedQuery};
use crate::market::bars::Bar;
use crate::market::instrument::InstrumentId;
use crate::relay::cache::Cache;
use crate::wire::protocol;

/// The query-publishing part of [`Analytics`](super::analytics::Analytics).
pub(super) struct Publishing {
    /// The snapshot the HTTP thread reads; `None` when the query API is off, and then
    /// [`publish`](Self::publish) does nothing.
    query: Option<SharedQuery>,
    /// Period of [`publish`](Self::publish), ns; `u64::MAX` (never due) when `query` is `None`.
    interval_ns: u64,
    /// Feed names in config order, indexed by the feed of a definition; fixed.
    feed_names: Vec<String>,
    /// Instruments whose view changed since the last successful publish; a skipped publish
    /// keeps them. Holds at most one entry per instrument (never drained without a query API).
    dirty: FxHashSet<InstrumentId>,
    /// Bars closed since the last successful publish, in closing order; always empty without a
    /// query API.
    pending_bars: Vec<(InstrumentId, Bar)>,
    /// Definitions not yet in the snapshot, in arrival order, as (id, venue, symbol, feed): at
    /// most one per instrument (never drained without a query API). Published before
    /// `pending_bars`, so the snapshot knows an instrument before its first bar.
    pending_defs: Vec<(InstrumentId, String, String, usize)>,
}

impl Publishing {
    /// Publishes into `query` (snapshot, period) when given; `feed_names` in config order.
    pub(super) fn new(query: Option<(SharedQuery, Duration)>, feed_names: Vec<String>) -> Self {
        let interval_ns = query
            .as_ref()
            .map_or(u64::MAX, |(_, d)| d.as_nanos() as u64);
        Publishing {
            query: query.map(|(q, _)| q),
            interval_ns,
            feed_names,
            dirty: FxHashSet::default(),
            pending_bars: Vec::new(),
            pending_defs: Vec::new(),
        }
    }

    /// How often [`publish`](Self::publish) should run, ns (`u64::MAX`: no query API).
    pub(super) fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// The view of `id` changed (a trade, a quote, a book frame, a mark, open interest, closed
    /// bars).
    #[inline]
    pub(super) fn touch(&mut self, id: InstrumentId) {
        self.dirty.insert(id);
    }

    /// `id` was defined on feed `feed`.
    pub(super) fn defined(&mut self, id: InstrumentId, venue: &str, symbol: &str, feed: usize) {
        self.pending_defs
            .push((id, venue.to_owned(), symbol.to_owned(), feed));
    }

    /// A bar of `id` closed.
    pub(super) fn bar_closed(&mut self, id: InstrumentId, bar: &Bar) {
        if self.query.is_some() {
            self.pending_bars.push((id, *bar));
        }
    }

    /// Copies what changed into the query snapshot unless the HTTP thread holds it (`force`:
    /// wait for it, at shutdown). `insts` are the instruments' derived state.
    pub(super) fn publish(
        &mut self,
        insts: &FxHashMap<InstrumentId, Inst>,
        cache: &Cache,
        force: bool,
        counters: &AnalyticsCounters,
    ) {
        let Some(q) = &self.query else {
            return;
        };
        let guard = if force { Some(q.lock()) } else { q.try_lock() };
        let Some(mut s) = guard else {
            counters.snapshots_skipped.inc();
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
            let Some(inst) = insts.get(&id) else {
                continue;
            };
            let Some(v) = s.get_mut(id) else {
                continue;
            };
            v.last_trade = inst.last_trade;
            v.quote = inst.quote;
            v.mark = inst.mark;
            v.open_interest = inst.open_interest;
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
        counters.snapshots_published.inc();
    }
}
