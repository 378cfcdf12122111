//! [`DepthBooks`]: one Binance depth state machine ([`DepthSync`]) per symbol of a feed, spot or
//! futures, keyed by the venue symbol. Every call touches only the named symbol's state, so a gap
//! on one symbol resyncs that symbol alone. Runs on the collector thread of its feed (and in
//! `mdrelay decode`); never blocks.

use rustc_hash::FxHashMap;

use super::binance_depth::{DepthDiff, DepthSync, DepthSyncConfig, Outcome, Step};
use super::Sink;
use crate::market::event::Level;

/// One [`DepthSync`] per subscribed symbol, keyed by the venue symbol exactly as Binance writes it
/// in `s` (`ETHUSDT`). Every call touches only the named symbol's state.
#[derive(Debug, Default)]
pub struct DepthBooks {
    /// Symbol → its state machine; fixed at construction, or grown by [`DepthBooks::track`].
    books: FxHashMap<Box<str>, DepthSync>,
    /// The configuration of every state machine, also of those added later.
    config: DepthSyncConfig,
    /// Diffs or snapshots for symbols not in `books`.
    unknown_symbol: u64,
}

impl DepthBooks {
    /// One state machine per symbol, all awaiting their first snapshot.
    pub fn new<S: AsRef<str>>(symbols: &[S], config: DepthSyncConfig) -> DepthBooks {
        let books = symbols
            .iter()
            .map(|s| (Box::from(s.as_ref()), DepthSync::new(s.as_ref(), config)))
            .collect();
        DepthBooks {
            books,
            config,
            unknown_symbol: 0,
        }
    }

    /// Starts tracking `symbol` (awaiting its first snapshot) if it is not tracked yet; true
    /// when it was added. For feeds whose symbols are learnt from the stream (`mdrelay decode`).
    pub fn track(&mut self, symbol: &str) -> bool {
        if self.books.contains_key(symbol) {
            return false;
        }
        let sync = DepthSync::new(symbol, self.config);
        self.books.insert(symbol.into(), sync);
        true
    }

    /// [`DepthSync::on_diff_pu`] for `symbol`.
    pub fn on_diff_pu(
        &mut self,
        symbol: &str,
        diff: &DepthDiff<'_>,
        pu: Option<u64>,
        sink: &mut Sink<'_>,
    ) -> Step {
        match self.books.get_mut(symbol) {
            Some(b) => b.on_diff_pu(diff, pu, sink),
            None => self.unknown(),
        }
    }

    /// [`DepthSync::on_diff`] for `symbol`.
    pub fn on_diff(&mut self, symbol: &str, diff: &DepthDiff<'_>, sink: &mut Sink<'_>) -> Step {
        match self.books.get_mut(symbol) {
            Some(b) => b.on_diff(diff, sink),
            None => self.unknown(),
        }
    }

    /// [`DepthSync::on_snapshot`] for `symbol` (the REST reply carries no symbol: the collector
    /// names the one it fetched).
    pub fn on_snapshot(
        &mut self,
        symbol: &str,
        last_update_id: u64,
        bids: &[Level],
        asks: &[Level],
        sink: &mut Sink<'_>,
    ) -> Step {
        match self.books.get_mut(symbol) {
            Some(b) => b.on_snapshot(last_update_id, bids, asks, sink),
            None => self.unknown(),
        }
    }

    /// [`DepthSync::on_snapshot_failed`] for `symbol`.
    pub fn on_snapshot_failed(&mut self, symbol: &str) -> Step {
        match self.books.get_mut(symbol) {
            Some(b) => b.on_snapshot_failed(),
            None => self.unknown(),
        }
    }

    /// [`DepthSync::reset`] for every symbol (the connection carrying them all reconnected).
    pub fn reset_all(&mut self, sink: &mut Sink<'_>) {
        for b in self.books.values_mut() {
            let _ = b.reset(sink);
        }
    }

    /// [`DepthSync::drain_released`] of every symbol: the receive times of the diffs the last
    /// snapshots took out of the buffers.
    pub fn drain_released(&mut self, f: &mut dyn FnMut(u64)) {
        for b in self.books.values_mut() {
            b.drain_released(f);
        }
    }

    /// The state machine of `symbol`.
    pub fn get(&self, symbol: &str) -> Option<&DepthSync> {
        self.books.get(symbol)
    }

    /// Every symbol's state machine, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &DepthSync> {
        self.books.values()
    }

    /// Inputs for symbols that are not tracked.
    pub fn unknown_symbol(&self) -> u64 {
        self.unknown_symbol
    }

    fn unknown(&mut self) -> Step {
        self.unknown_symbol += 1;
        Step {
            outcome: Outcome::UnknownSymbol,
            fetch_snapshot: false,
        }
    }
}
