//! When the consumer's bars close: the bar configuration and, per feed, the clock that drives
//! the bar timer — the wall clock, or with [`BarClock::Data`] the feed's own receive times (a
//! replay then closes the same bars at the same places in the stream every time). The builders
//! themselves are per instrument ([`crate::market::bars::BarBuilder`], kept by
//! [`Analytics`](super::analytics::Analytics)).
//!
//! Runs on the consumer thread, inside [`Analytics`](super::analytics::Analytics); never blocks.

use crate::base::clock;
use crate::consumer::config::{BarClock, BarsConfig};
use crate::market::bars::BarBuilder;

/// The bar part of [`Analytics`](super::analytics::Analytics).
pub(super) struct Bars {
    /// Intervals, timer period, clock and shutdown behaviour; fixed.
    cfg: BarsConfig,
    /// Per feed, in config order (one entry per feed): the highest `recv_ts_ns` of the feed's
    /// instrument frames so far, 0 before the first; never decreases. Kept whatever the clock,
    /// read only with [`BarClock::Data`].
    data_clock: Vec<u64>,
    /// Per feed, same length as `data_clock`: with [`BarClock::Data`], the data time from which
    /// the feed's next timer run is due (the last run's time + the timer period; 0 before the
    /// first run, so the first frame runs it). Never written with [`BarClock::Wall`].
    next_data_timer: Vec<u64>,
}

impl Bars {
    /// Bars per `cfg` for `feeds` feeds.
    pub(super) fn new(cfg: BarsConfig, feeds: usize) -> Self {
        Bars {
            cfg,
            data_clock: vec![0; feeds],
            next_data_timer: vec![0; feeds],
        }
    }

    /// A builder for a newly defined instrument.
    pub(super) fn builder(&self) -> BarBuilder {
        BarBuilder::new(&self.cfg.bars)
    }

    /// The bar timer's period, ns.
    pub(super) fn timer_interval_ns(&self) -> u64 {
        self.cfg.timer_interval.as_nanos() as u64
    }

    /// True when the wall-clock timer closes bars ([`BarClock::Wall`]).
    pub(super) fn on_wall_clock(&self) -> bool {
        self.cfg.clock == BarClock::Wall
    }

    /// True when the open bars are closed at shutdown.
    pub(super) fn close_on_shutdown(&self) -> bool {
        self.cfg.close_on_shutdown
    }

    /// Advances `feed`'s data clock to `recv_ts_ns`; with [`BarClock::Data`], returns the data
    /// time at which the feed's timer runs now, if it is due.
    #[inline]
    pub(super) fn on_data(&mut self, feed: usize, recv_ts_ns: u64) -> Option<u64> {
        let c = self.data_clock.get_mut(feed)?;
        *c = (*c).max(recv_ts_ns);
        if self.cfg.clock == BarClock::Data && *c >= self.next_data_timer[feed] {
            let now = *c;
            self.next_data_timer[feed] = now.saturating_add(self.timer_interval_ns());
            return Some(now);
        }
        None
    }

    /// The time the bars of `feed`'s instruments close at when they are closed at shutdown.
    pub(super) fn shutdown_ns(&self, feed: usize) -> u64 {
        match self.cfg.clock {
            BarClock::Wall => clock::wall_ns(),
            BarClock::Data => self.data_clock.get(feed).copied().unwrap_or(0),
        }
    }
}
