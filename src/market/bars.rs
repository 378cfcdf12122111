//! OHLCV bars and session statistics of one instrument, built from its trades.
//!
//! A [`BarBuilder`] keeps one series per configured interval (default 1 s, 1 m, 1 h, 1 d). A bar
//! covers the half-open range `[start, start + interval)` aligned to the Unix epoch (UTC), so a
//! trade exactly at a boundary belongs to the *next* bar and every 1 d bar starts at UTC midnight.
//! Bars are fixed-point throughout: open/high/low/close are the trades' `i64` prices (1e-8), the
//! volume is an exact `i128` sum of sizes (1e-8) and the VWAP is derived from an exact `i128`
//! notional (Σ price × size, 1e-16) with one division, rounded half-to-even. No `f64` anywhere.
//!
//! Rules (each one tested below):
//! - **Closing.** A bar closes on the first trade at or past its end ([`BarBuilder::on_trade`]),
//!   or when [`BarBuilder::on_timer`] is called at or past `end + close_grace_ns`. Closed bars are
//!   pushed into the caller's `Vec` (at most one per interval per call: reuse the `Vec` and no
//!   call allocates once it has that capacity) and into a bounded history ring per interval.
//! - **No invented gaps.** An interval in which nothing traded produces no bar at all — not a
//!   zero-volume bar carrying the previous close. Consecutive bars may therefore be more than one
//!   interval apart; a reader that wants a dense series fills it knowing this.
//! - **Late trades are dropped from bars, never folded or reopened.** A trade whose timestamp is
//!   before the interval's watermark (the current bar's start, or the end of the bar the timer
//!   closed last) would belong to a bar that is already closed, or to an empty interval that had
//!   no bar. It is left out of that interval's bars and counted ([`BarBuilder::late_trades`],
//!   [`BarBuilder::late_volume`]), so `Σ bar volume + late volume = session volume` holds
//!   exactly for every interval. Folding it into the current bar would make a bar contain a
//!   trade outside `[start, end)`; dropping keeps every bar honest, and the counters keep the
//!   totals reconcilable. [`SessionStats`] is not bucketed in time and includes every trade.
//! - **Order inside a bar does not matter.** `open` is the price of the trade with the smallest
//!   timestamp and `close` that of the greatest (ties: arrival order), so trades that arrive
//!   reordered *within* a bar give the same bar.
//! - **Refused trades.** A price of [`ABSENT`] or a negative size (which includes `ABSENT`) is
//!   refused and counted ([`BarBuilder::rejected_trades`]); zero-size trades count as trades but
//!   add no volume. With non-negative sizes a VWAP lies between low and high, so it fits an `i64`.
//!
//! Runs on the consumer thread, one builder per instrument. Pure logic: never blocks, never
//! allocates per trade (the history rings grow by doubling until they hold `history_bars` bars,
//! then never again), and costs one `i128` multiply plus a few compares per interval per trade.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::market::fixed::ABSENT;

/// One second, ns.
pub const SECOND_NS: u64 = 1_000_000_000;
/// One minute, ns.
pub const MINUTE_NS: u64 = 60 * SECOND_NS;
/// One hour, ns.
pub const HOUR_NS: u64 = 60 * MINUTE_NS;
/// One day, ns.
pub const DAY_NS: u64 = 24 * HOUR_NS;
/// The default intervals: 1 s, 1 m, 1 h, 1 d.
pub const DEFAULT_INTERVALS_NS: [u64; 4] = [SECOND_NS, MINUTE_NS, HOUR_NS, DAY_NS];
/// Closed bars kept per interval for queries, by default.
pub const DEFAULT_HISTORY_BARS: usize = 1000;
/// Most intervals one builder takes (the per-trade loop runs over all of them).
pub const MAX_INTERVALS: usize = 16;

/// Why a [`BarConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BarConfigError {
    /// An interval of zero length.
    #[error("bar interval must be > 0")]
    ZeroInterval,
    /// An interval longer than `u64` nanoseconds can hold (~584 years).
    #[error("bar interval too long for u64 nanoseconds")]
    IntervalTooLong,
    /// The same interval twice.
    #[error("bar interval {0} given twice")]
    DuplicateInterval(IntervalLabel),
    /// More than [`MAX_INTERVALS`] intervals.
    #[error("{0} bar intervals given, at most {MAX_INTERVALS} are allowed")]
    TooManyIntervals(usize),
}

/// What a [`BarBuilder`] builds. Validated by [`BarConfig::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarConfig {
    /// Bar lengths, ns: each > 0, all distinct, at most [`MAX_INTERVALS`]; kept in the given order.
    intervals_ns: Vec<u64>,
    /// Closed bars kept per interval for queries; 0 keeps none.
    history_bars: usize,
    /// How long past a bar's end [`BarBuilder::on_timer`] waits before closing it, ns; gives
    /// trades stamped just before the end (and delivered a little later) time to arrive.
    close_grace_ns: u64,
}

impl Default for BarConfig {
    fn default() -> Self {
        BarConfig {
            intervals_ns: DEFAULT_INTERVALS_NS.to_vec(),
            history_bars: DEFAULT_HISTORY_BARS,
            close_grace_ns: 0,
        }
    }
}

impl BarConfig {
    /// Validates the intervals (non-zero, distinct, at most [`MAX_INTERVALS`]).
    pub fn new(
        intervals: &[Duration],
        history_bars: usize,
        close_grace: Duration,
    ) -> Result<BarConfig, BarConfigError> {
        if intervals.len() > MAX_INTERVALS {
            return Err(BarConfigError::TooManyIntervals(intervals.len()));
        }
        let mut intervals_ns: Vec<u64> = Vec::with_capacity(intervals.len());
        for d in intervals {
            let ns = u64::try_from(d.as_nanos()).map_err(|_| BarConfigError::IntervalTooLong)?;
            if ns == 0 {
                return Err(BarConfigError::ZeroInterval);
            }
            if intervals_ns.contains(&ns) {
                return Err(BarConfigError::DuplicateInterval(IntervalLabel(ns)));
            }
            intervals_ns.push(ns);
        }
        Ok(BarConfig {
            intervals_ns,
            history_bars,
            close_grace_ns: u64::try_from(close_grace.as_nanos()).unwrap_or(u64::MAX),
        })
    }

    /// The intervals, ns, in configuration order.
    pub fn intervals_ns(&self) -> &[u64] {
        &self.intervals_ns
    }

    /// Closed bars kept per interval.
    pub fn history_bars(&self) -> usize {
        self.history_bars
    }

    /// How long past a bar's end the timer waits before closing it, ns.
    pub fn close_grace_ns(&self) -> u64 {
        self.close_grace_ns
    }
}

/// An interval written the way file names and logs show it: the largest unit that divides it
/// exactly (`1d`, `4h`, `1m`, `90s`, `250ms`, `5us`, `7ns`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IntervalLabel(pub u64);

impl fmt::Display for IntervalLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 7] = [
            (DAY_NS, "d"),
            (HOUR_NS, "h"),
            (MINUTE_NS, "m"),
            (SECOND_NS, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        let ns = self.0;
        for (unit, name) in UNITS {
            if ns != 0 && ns % unit == 0 {
                return write!(f, "{}{name}", ns / unit);
            }
        }
        write!(f, "{ns}ns")
    }
}

impl fmt::Debug for IntervalLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Exact VWAP in 1e-8 units from a notional in 1e-16 units and a volume in 1e-8 units,
/// rounded half-to-even (banker's rounding: unbiased when averaged over many bars, unlike
/// truncation, which always errs towards −∞). [`ABSENT`] when `volume ≤ 0` or the quotient does
/// not fit an `i64` (impossible for a real bar: a VWAP lies between its low and high).
pub fn vwap(notional: i128, volume: i128) -> i64 {
    if volume <= 0 {
        return ABSENT;
    }
    let q = notional.div_euclid(volume);
    let r = notional.rem_euclid(volume); // 0 ≤ r < volume
    let rest = volume - r; // distance to the next multiple; compare r with volume / 2 exactly
    let rounded = if r > rest || (r == rest && q.rem_euclid(2) == 1) {
        q + 1
    } else {
        q
    };
    i64::try_from(rounded)
        .ok()
        .filter(|v| *v != ABSENT)
        .unwrap_or(ABSENT)
}

/// Displays an `i128` fixed-point value (1e-8, e.g. a volume) as its shortest exact decimal, like
/// [`crate::market::fixed::Decimal`] does for `i64`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Decimal128(pub i128);

impl fmt::Display for Decimal128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::market::fixed::write_scaled(f, self.0 < 0, self.0.unsigned_abs())
    }
}

impl fmt::Debug for Decimal128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One OHLCV bar: the trades with `start_ns ≤ ts < end_ns` that were not late.
///
/// Volume is an `i128` because sizes are `i64` at 1e-8: one `i64` holds at most ~9.2e10 units,
/// and a day of a low-priced token (SHIB trades ~1e13 units a day) exceeds it. An `i128` sum of
/// `u64::MAX` trades of any `i64` size cannot overflow (2⁶³ · 2⁶⁴ < 2¹²⁷), so no check is needed.
/// It is signed, not `u128`, to keep the inputs' signedness (sizes are checked ≥ 0 on entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Bar length, ns; > 0.
    pub interval_ns: u64,
    /// First ns covered; always a multiple of `interval_ns` (UTC-epoch aligned).
    pub start_ns: u64,
    /// First ns not covered: `start_ns + interval_ns` (saturating at `u64::MAX`).
    pub end_ns: u64,
    /// Price of the trade with the smallest timestamp (first to arrive among equals).
    pub open: i64,
    /// Highest price; always ≥ `open`, `close`, `low`.
    pub high: i64,
    /// Lowest price; always ≤ `open`, `close`, `high`.
    pub low: i64,
    /// Price of the trade with the greatest timestamp (last to arrive among equals).
    pub close: i64,
    /// Σ size, fixed-point 1e-8; always ≥ 0.
    pub volume: i128,
    /// Σ price × size, fixed-point 1e-16 (exact); meaningful only while `!notional_overflow`.
    pub notional: i128,
    /// True if `notional` overflowed `i128` (needs ~2¹²⁶ of notional: never for real prices);
    /// the VWAP is then [`ABSENT`].
    pub notional_overflow: bool,
    /// Trades in the bar; always ≥ 1 (a bar exists only once a trade opened it).
    pub trade_count: u64,
    /// Timestamp of the `open` trade; within `[start_ns, end_ns)`.
    pub first_trade_ns: u64,
    /// Timestamp of the `close` trade; within `[first_trade_ns, end_ns)`.
    pub last_trade_ns: u64,
}

impl Bar {
    #[inline]
    fn open_at(interval_ns: u64, ts_ns: u64, price: i64, size: i64, notional: i128) -> Bar {
        let start_ns = ts_ns - ts_ns % interval_ns;
        Bar {
            interval_ns,
            start_ns,
            end_ns: start_ns.saturating_add(interval_ns),
            open: price,
            high: price,
            low: price,
            close: price,
            volume: i128::from(size),
            notional,
            notional_overflow: false,
            trade_count: 1,
            first_trade_ns: ts_ns,
            last_trade_ns: ts_ns,
        }
    }

    #[inline]
    fn add(&mut self, ts_ns: u64, price: i64, size: i64, notional: i128) {
        if ts_ns < self.first_trade_ns {
            self.first_trade_ns = ts_ns;
            self.open = price;
        }
        if ts_ns >= self.last_trade_ns {
            self.last_trade_ns = ts_ns;
            self.close = price;
        }
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.volume += i128::from(size);
        match self.notional.checked_add(notional) {
            Some(n) => self.notional = n,
            None => self.notional_overflow = true,
        }
        self.trade_count += 1;
    }

    /// Volume-weighted average price, 1e-8, rounded half-to-even ([`vwap`]); [`ABSENT`] when the
    /// volume is 0 (only zero-size trades) or the notional overflowed.
    pub fn vwap(&self) -> i64 {
        if self.notional_overflow {
            ABSENT
        } else {
            vwap(self.notional, self.volume)
        }
    }
}

/// Statistics over every accepted trade since the builder was created (not reset at midnight:
/// the 1 d bar is the daily view). Late trades count here too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    /// Trades accepted.
    pub trade_count: u64,
    /// Lowest price; [`ABSENT`] while `trade_count == 0`.
    pub min_price: i64,
    /// Highest price; [`ABSENT`] while `trade_count == 0`.
    pub max_price: i64,
    /// Price of the trade with the greatest timestamp; [`ABSENT`] while `trade_count == 0`.
    pub last_price: i64,
    /// Σ size, 1e-8; ≥ 0.
    pub volume: i128,
    /// Σ price × size, 1e-16; meaningful only while `!notional_overflow`.
    pub notional: i128,
    /// True once `notional` overflowed `i128`.
    pub notional_overflow: bool,
    /// Smallest trade timestamp seen, ns; 0 while `trade_count == 0`.
    pub first_trade_ns: u64,
    /// Greatest trade timestamp seen, ns; 0 while `trade_count == 0`.
    pub last_trade_ns: u64,
}

impl Default for SessionStats {
    fn default() -> Self {
        SessionStats {
            trade_count: 0,
            min_price: ABSENT,
            max_price: ABSENT,
            last_price: ABSENT,
            volume: 0,
            notional: 0,
            notional_overflow: false,
            first_trade_ns: 0,
            last_trade_ns: 0,
        }
    }
}

impl SessionStats {
    #[inline]
    fn add(&mut self, ts_ns: u64, price: i64, size: i64, notional: i128) {
        if self.trade_count == 0 {
            self.min_price = price;
            self.max_price = price;
            self.last_price = price;
            self.first_trade_ns = ts_ns;
            self.last_trade_ns = ts_ns;
        } else {
            self.min_price = self.min_price.min(price);
            self.max_price = self.max_price.max(price);
            self.first_trade_ns = self.first_trade_ns.min(ts_ns);
            if ts_ns >= self.last_trade_ns {
                self.last_trade_ns = ts_ns;
                self.last_price = price;
            }
        }
        self.trade_count += 1;
        self.volume += i128::from(size);
        match self.notional.checked_add(notional) {
            Some(n) => self.notional = n,
            None => self.notional_overflow = true,
        }
    }

    /// VWAP since start, 1e-8, rounded half-to-even; [`ABSENT`] without volume or on overflow.
    pub fn vwap(&self) -> i64 {
        if self.notional_overflow {
            ABSENT
        } else {
            vwap(self.notional, self.volume)
        }
    }
}

/// What [`BarBuilder::on_trade`] did with a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeOutcome {
    /// Added to the session and to the current bar of every interval.
    Accepted,
    /// Added to the session, but late for at least one interval (left out of its bars, counted).
    Late,
    /// Refused: price [`ABSENT`] or size negative. Nothing changed except the refusal count.
    Rejected,
}

/// One interval's bars.
#[derive(Debug, Clone)]
struct Series {
    /// Bar length, ns; > 0.
    interval_ns: u64,
    /// The bar being built: `None` before the first trade and after a timer close until the next
    /// trade. When `Some`, its `start_ns == watermark_ns`.
    current: Option<Bar>,
    /// Trades stamped before this are late. Never decreases: the current bar's start, or the end
    /// of the bar the timer closed last; 0 before the first trade.
    watermark_ns: u64,
    /// Closed bars, oldest first; `len() ≤ history_bars`.
    history: VecDeque<Bar>,
    /// Trades left out as late.
    late_trades: u64,
    /// Σ size of those trades, 1e-8.
    late_volume: i128,
}

impl Series {
    #[inline]
    fn close_current(&mut self, history_bars: usize, closed: &mut Vec<Bar>) {
        if let Some(bar) = self.current.take() {
            self.watermark_ns = self.watermark_ns.max(bar.end_ns);
            closed.push(bar);
            if history_bars > 0 {
                if self.history.len() >= history_bars {
                    self.history.pop_front();
                }
                self.history.push_back(bar);
            }
        }
    }
}

/// Bars for a set of intervals plus session statistics, for one instrument (see the module doc).
#[derive(Debug, Clone)]
pub struct BarBuilder {
    /// One per configured interval, in configuration order; `len() ≤ MAX_INTERVALS`.
    series: Box<[Series]>,
    /// Every accepted trade.
    session: SessionStats,
    /// Capacity of each series' history ring.
    history_bars: usize,
    /// Timer closes wait this long past a bar's end, ns.
    close_grace_ns: u64,
    /// Trades refused by [`BarBuilder::on_trade`].
    rejected_trades: u64,
}

impl BarBuilder {
    /// An empty builder (allocates the per-interval state once; histories grow as bars close).
    pub fn new(cfg: &BarConfig) -> BarBuilder {
        BarBuilder {
            series: cfg
                .intervals_ns
                .iter()
                .map(|&interval_ns| Series {
                    interval_ns,
                    current: None,
                    watermark_ns: 0,
                    history: VecDeque::new(),
                    late_trades: 0,
                    late_volume: 0,
                })
                .collect(),
            session: SessionStats::default(),
            history_bars: cfg.history_bars,
            close_grace_ns: cfg.close_grace_ns,
            rejected_trades: 0,
        }
    }

    /// Takes in one trade stamped `ts_ns` (ns since epoch: the exchange's time when it has one,
    /// else the receive time — the caller picks one and sticks to it). Bars the trade closes are
    /// pushed onto `closed` (at most one per interval).
    #[inline]
    pub fn on_trade(
        &mut self,
        ts_ns: u64,
        price: i64,
        size: i64,
        closed: &mut Vec<Bar>,
    ) -> TradeOutcome {
        if price == ABSENT || size < 0 {
            self.rejected_trades += 1;
            return TradeOutcome::Rejected;
        }
        // |price × size| < 2¹²⁶: the product itself cannot overflow.
        let notional = i128::from(price) * i128::from(size);
        self.session.add(ts_ns, price, size, notional);
        let mut late = false;
        for s in self.series.iter_mut() {
            if ts_ns < s.watermark_ns {
                s.late_trades += 1;
                s.late_volume += i128::from(size);
                late = true;
                continue;
            }
            match &mut s.current {
                Some(bar) if ts_ns < bar.end_ns => bar.add(ts_ns, price, size, notional),
                _ => {
                    s.close_current(self.history_bars, closed);
                    let bar = Bar::open_at(s.interval_ns, ts_ns, price, size, notional);
                    s.watermark_ns = bar.start_ns;
                    s.current = Some(bar);
                }
            }
        }
        if late {
            TradeOutcome::Late
        } else {
            TradeOutcome::Accepted
        }
    }

    /// Closes every bar whose `end_ns + close_grace_ns ≤ now_ns`, pushing it onto `closed`.
    /// `now_ns` is in the same time base as the trades' `ts_ns`. Returns how many closed.
    pub fn on_timer(&mut self, now_ns: u64, closed: &mut Vec<Bar>) -> usize {
        let mut n = 0;
        for s in self.series.iter_mut() {
            let due = s
                .current
                .as_ref()
                .is_some_and(|b| b.end_ns.saturating_add(self.close_grace_ns) <= now_ns);
            if due {
                s.close_current(self.history_bars, closed);
                n += 1;
            }
        }
        n
    }

    /// Closes every open bar now, whatever its end (shutdown: persist what was built).
    pub fn close_all(&mut self, closed: &mut Vec<Bar>) -> usize {
        let mut n = 0;
        for s in self.series.iter_mut() {
            if s.current.is_some() {
                s.close_current(self.history_bars, closed);
                n += 1;
            }
        }
        n
    }

    fn series(&self, interval_ns: u64) -> Option<&Series> {
        self.series.iter().find(|s| s.interval_ns == interval_ns)
    }

    /// The configured intervals, ns, in configuration order.
    pub fn intervals_ns(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.series.iter().map(|s| s.interval_ns)
    }

    /// The bar being built for `interval_ns`, if any.
    pub fn current(&self, interval_ns: u64) -> Option<&Bar> {
        self.series(interval_ns)?.current.as_ref()
    }

    /// The last closed bars of `interval_ns`, oldest first (at most `history_bars`); `None` for an
    /// interval that is not configured.
    pub fn history(
        &self,
        interval_ns: u64,
    ) -> Option<impl DoubleEndedIterator<Item = &Bar> + ExactSizeIterator> {
        Some(self.series(interval_ns)?.history.iter())
    }

    /// Trades left out of `interval_ns`'s bars as late (0 for an unknown interval).
    pub fn late_trades(&self, interval_ns: u64) -> u64 {
        self.series(interval_ns).map_or(0, |s| s.late_trades)
    }

    /// Σ size of those late trades, 1e-8.
    pub fn late_volume(&self, interval_ns: u64) -> i128 {
        self.series(interval_ns).map_or(0, |s| s.late_volume)
    }

    /// Trades refused (price absent or size negative).
    pub fn rejected_trades(&self) -> u64 {
        self.rejected_trades
    }

    /// Statistics over every accepted trade.
    pub fn session(&self) -> &SessionStats {
        &self.session
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::market::fixed::SCALE;

    pub(crate) const S: u64 = SECOND_NS;

    pub(crate) fn cfg(intervals_ns: &[u64], history_bars: usize, grace_ns: u64) -> BarConfig {
        let ds: Vec<Duration> = intervals_ns
            .iter()
            .map(|&n| Duration::from_nanos(n))
            .collect();
        BarConfig::new(&ds, history_bars, Duration::from_nanos(grace_ns)).unwrap()
    }

    /// Trades of a bar: (ts, price, size) in arrival order.
    pub(crate) type Tr = (u64, i64, i64);

    /// The bar a naive recomputation gives for `trades`, all in one bucket, in arrival order.
    fn naive_bar(interval_ns: u64, trades: &[Tr]) -> Bar {
        let start = trades[0].0 / interval_ns * interval_ns;
        let min_ts = trades.iter().map(|t| t.0).min().unwrap();
        let max_ts = trades.iter().map(|t| t.0).max().unwrap();
        let open = trades.iter().find(|t| t.0 == min_ts).unwrap().1;
        let close = trades.iter().rev().find(|t| t.0 == max_ts).unwrap().1;
        let volume: i128 = trades.iter().map(|t| i128::from(t.2)).sum();
        let notional: i128 = trades
            .iter()
            .map(|t| i128::from(t.1) * i128::from(t.2))
            .sum();
        Bar {
            interval_ns,
            start_ns: start,
            end_ns: start + interval_ns,
            open,
            high: trades.iter().map(|t| t.1).max().unwrap(),
            low: trades.iter().map(|t| t.1).min().unwrap(),
            close,
            volume,
            notional,
            notional_overflow: false,
            trade_count: trades.len() as u64,
            first_trade_ns: min_ts,
            last_trade_ns: max_ts,
        }
    }

    /// Naive bars for one interval from trades in arrival order: a trade is late when its bucket
    /// is before the greatest bucket seen so far; the rest are grouped by bucket.
    pub(crate) fn naive_bars(interval_ns: u64, trades: &[Tr]) -> (Vec<Bar>, u64, i128) {
        let mut max_bucket: Option<u64> = None;
        let mut groups: BTreeMap<u64, Vec<Tr>> = BTreeMap::new();
        let (mut late, mut late_vol) = (0u64, 0i128);
        for &t in trades {
            let b = t.0 / interval_ns;
            if max_bucket.is_some_and(|m| b < m) {
                late += 1;
                late_vol += i128::from(t.2);
                continue;
            }
            max_bucket = Some(max_bucket.map_or(b, |m| m.max(b)));
            groups.entry(b).or_default().push(t);
        }
        let bars = groups.values().map(|g| naive_bar(interval_ns, g)).collect();
        (bars, late, late_vol)
    }

    pub(crate) fn run_all(b: &mut BarBuilder, trades: &[Tr]) -> Vec<Bar> {
        let mut closed = Vec::new();
        for &(ts, p, s) in trades {
            b.on_trade(ts, p, s, &mut closed);
        }
        b.close_all(&mut closed);
        closed
    }

    #[test]
    fn boundaries_are_half_open_and_epoch_aligned() {
        // (trade timestamps, expected bar starts of the closed 1 s bars, in order)
        let cases: &[(&[u64], &[u64])] = &[
            (&[0], &[0]),
            (&[S - 1, S], &[0, S]),  // exactly at the end → next bar
            (&[S, 2 * S - 1], &[S]), // both in [1 s, 2 s)
            (&[S + 1, 2 * S, 2 * S + 1], &[S, 2 * S]), // boundary trade opens the next bar
            (
                &[1_723_161_254_999_999_999, 1_723_161_255_000_000_000],
                &[1_723_161_254_000_000_000, 1_723_161_255_000_000_000],
            ),
        ];
        for (tss, want) in cases {
            let mut b = BarBuilder::new(&cfg(&[S], 10, 0));
            let trades: Vec<Tr> = tss.iter().map(|&t| (t, SCALE, SCALE)).collect();
            let starts: Vec<u64> = run_all(&mut b, &trades)
                .iter()
                .map(|b| b.start_ns)
                .collect();
            assert_eq!(&starts, want, "{tss:?}");
        }
        // 1 d bars start at UTC midnight.
        let mut b = BarBuilder::new(&BarConfig::default());
        let mut closed = Vec::new();
        b.on_trade(1_723_161_255_342_000_000, SCALE, SCALE, &mut closed); // 2024-08-08T23:54:15.342Z
        let day = b.current(DAY_NS).unwrap();
        assert_eq!(day.start_ns, 1_723_075_200_000_000_000); // 2024-08-08T00:00:00Z
        assert_eq!(day.end_ns, 1_723_161_600_000_000_000);
        assert_eq!(
            b.current(HOUR_NS).unwrap().start_ns,
            1_723_158_000_000_000_000
        );
        assert_eq!(
            b.current(MINUTE_NS).unwrap().start_ns,
            1_723_161_240_000_000_000
        );
    }

    #[test]
    fn ohlcv_of_one_bar() {
        let mut b = BarBuilder::new(&cfg(&[MINUTE_NS], 10, 0));
        let trades: &[Tr] = &[
            (10 * S, 100 * SCALE, 2 * SCALE),
            (20 * S, 105 * SCALE, SCALE),
            (30 * S, 95 * SCALE, 3 * SCALE),
            (40 * S, 101 * SCALE, 0), // zero size: a trade, no volume
        ];
        let bars = run_all(&mut b, trades);
        assert_eq!(bars.len(), 1);
        let bar = bars[0];
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close),
            (100 * SCALE, 105 * SCALE, 95 * SCALE, 101 * SCALE)
        );
        assert_eq!(bar.volume, i128::from(6 * SCALE));
        assert_eq!(bar.trade_count, 4);
        // (200 + 105 + 285) / 6 = 98.333… → 98.33333333
        assert_eq!(bar.vwap(), 9_833_333_333);
        assert_eq!((bar.start_ns, bar.end_ns), (0, MINUTE_NS));
    }

    #[test]
    fn no_gaps_are_invented() {
        let mut b = BarBuilder::new(&cfg(&[S], 10, 0));
        let trades: &[Tr] = &[
            (S / 2, SCALE, SCALE),
            (5 * S + 1, 2 * SCALE, SCALE),
            (9 * S, 3 * SCALE, SCALE),
        ];
        let bars = run_all(&mut b, trades);
        let starts: Vec<u64> = bars.iter().map(|b| b.start_ns).collect();
        assert_eq!(starts, vec![0, 5 * S, 9 * S]); // nothing for seconds 1–4 and 6–8
        assert!(bars.iter().all(|b| b.trade_count == 1));
        // Nor does the timer invent one for an empty interval.
        let mut closed = Vec::new();
        assert_eq!(b.on_timer(100 * S, &mut closed), 0);
        assert!(closed.is_empty());
    }

    #[test]
    fn timer_closes_due_bars_after_the_grace() {
        let mut b = BarBuilder::new(&cfg(&[S, MINUTE_NS], 10, 200_000_000)); // 200 ms grace
        let mut closed = Vec::new();
        b.on_trade(S / 2, SCALE, SCALE, &mut closed);
        // (timer time, bars closed by this call)
        let steps: &[(u64, usize)] = &[
            (S - 1, 0),
            (S, 0), // end reached, grace not yet over
            (S + 199_999_999, 0),
            (S + 200_000_000, 1), // 1 s bar closes; 1 m bar still open
            (2 * S, 0),
            (MINUTE_NS + 200_000_000, 1),
        ];
        for &(now, want) in steps {
            assert_eq!(b.on_timer(now, &mut closed), want, "timer at {now}");
        }
        assert_eq!(
            closed.iter().map(|b| b.interval_ns).collect::<Vec<_>>(),
            vec![S, MINUTE_NS]
        );
        assert_eq!(b.history(S).unwrap().len(), 1);
        assert!(b.current(S).is_none());
        // A trade stamped inside the timer-closed second is late: the bar is not reopened.
        closed.clear();
        assert_eq!(
            b.on_trade(S / 2 + 1, 7 * SCALE, SCALE, &mut closed),
            TradeOutcome::Late
        );
        assert!(closed.is_empty() && b.current(S).is_none());
        assert_eq!(b.late_trades(S), 1);
        assert_eq!(b.late_volume(S), i128::from(SCALE));
        // A later trade opens a fresh bar for both intervals.
        let ts = MINUTE_NS + 3 * S;
        assert_eq!(
            b.on_trade(ts, 8 * SCALE, SCALE, &mut closed),
            TradeOutcome::Accepted
        );
        assert_eq!(b.current(S).unwrap().start_ns, ts);
        assert_eq!(b.current(MINUTE_NS).unwrap().start_ns, MINUTE_NS);
        assert_eq!(b.session().trade_count, 3);
    }

    #[test]
    fn late_trades_are_counted_not_folded() {
        let mut b = BarBuilder::new(&cfg(&[S, MINUTE_NS], 10, 0));
        let mut closed = Vec::new();
        b.on_trade(1_100_000_000, 10 * SCALE, SCALE, &mut closed);
        b.on_trade(2_000_000_001, 11 * SCALE, SCALE, &mut closed); // closes [1 s, 2 s)
        assert_eq!(closed.len(), 1);
        // Stamped in the closed second, arriving now: late for 1 s, in time for 1 m.
        assert_eq!(
            b.on_trade(1_999_999_999, 99 * SCALE, 3 * SCALE, &mut closed),
            TradeOutcome::Late
        );
        let cur = b.current(S).unwrap();
        assert_eq!(
            (cur.high, cur.trade_count, cur.volume),
            (11 * SCALE, 1, i128::from(SCALE))
        );
        assert_eq!(b.late_trades(S), 1);
        assert_eq!(b.late_volume(S), i128::from(3 * SCALE));
        let m = b.current(MINUTE_NS).unwrap();
        assert_eq!(
            (m.open, m.close, m.high, m.trade_count),
            (10 * SCALE, 11 * SCALE, 99 * SCALE, 3)
        );
        assert_eq!(b.late_trades(MINUTE_NS), 0);
        // Closed bars are never reopened.
        assert_eq!(closed[0].trade_count, 1);
        assert_eq!(b.history(S).unwrap().next().unwrap().trade_count, 1);
        // A trade earlier than `open` but inside the bar becomes the open.
        b.on_trade(2_000_000_000, 12 * SCALE, SCALE, &mut closed);
        let cur = b.current(S).unwrap();
        assert_eq!(
            (cur.open, cur.close, cur.first_trade_ns),
            (12 * SCALE, 11 * SCALE, 2_000_000_000)
        );
    }

    #[test]
    fn refuses_absent_price_and_negative_size() {
        let mut b = BarBuilder::new(&BarConfig::default());
        let mut closed = Vec::new();
        assert_eq!(
            b.on_trade(1, ABSENT, SCALE, &mut closed),
            TradeOutcome::Rejected
        );
        assert_eq!(
            b.on_trade(1, SCALE, -1, &mut closed),
            TradeOutcome::Rejected
        );
        assert_eq!(
            b.on_trade(1, SCALE, ABSENT, &mut closed),
            TradeOutcome::Rejected
        );
        assert_eq!(b.rejected_trades(), 3);
        assert_eq!(b.session().trade_count, 0);
        assert!(b.current(S).is_none());
        assert_eq!(b.session().vwap(), ABSENT);
    }

    #[test]
    fn history_ring_is_bounded() {
        let mut b = BarBuilder::new(&cfg(&[S], 3, 0));
        let trades: Vec<Tr> = (0..10).map(|i| (i * S, SCALE + i as i64, SCALE)).collect();
        let bars = run_all(&mut b, &trades);
        assert_eq!(bars.len(), 10);
        let kept: Vec<u64> = b.history(S).unwrap().map(|b| b.start_ns).collect();
        assert_eq!(kept, vec![7 * S, 8 * S, 9 * S]);
        assert!(b.history(MINUTE_NS).is_none());
        let mut none = BarBuilder::new(&cfg(&[S], 0, 0));
        assert_eq!(run_all(&mut none, &trades).len(), 10);
        assert_eq!(none.history(S).unwrap().len(), 0);
    }

    #[test]
    fn vwap_rounds_half_to_even() {
        // (notional 1e-16, volume 1e-8, vwap 1e-8)
        let cases: &[(i128, i128, i64)] = &[
            (10, 4, 2),   // 2.5 → 2 (even)
            (14, 4, 4),   // 3.5 → 4 (even)
            (11, 4, 3),   // 2.75 → 3
            (9, 4, 2),    // 2.25 → 2
            (-10, 4, -2), // -2.5 → -2
            (-14, 4, -4), // -3.5 → -4
            (-11, 4, -3), // -2.75 → -3
            (12, 4, 3),   // exact
            (1, 3, 0),    // 0.333…
            (2, 3, 1),    // 0.666…
            (0, 5, 0),
            (7, 0, ABSENT),
            (7, -1, ABSENT),
        ];
        for &(n, v, want) in cases {
            assert_eq!(vwap(n, v), want, "{n}/{v}");
        }
        // ETH-like magnitudes: 2683.80 × 1.5 + 2683.81 × 0.5 = 5367.61 over 2.0 = 2683.8025.
        let p1 = 268_380_000_000i128;
        let p2 = 268_381_000_000i128;
        let n = p1 * 150_000_000 + p2 * 50_000_000;
        assert_eq!(vwap(n, 200_000_000), 268_380_250_000);
    }

    /// The VWAP, checked without division: `v` is the nearest integer to N/V (2|N − vV| ≤ V),
    /// and on an exact tie it is even.
    pub(crate) fn assert_nearest_even(n: i128, vol: i128, v: i64) {
        let diff = (n - i128::from(v) * vol).abs();
        assert!(2 * diff <= vol, "{v} is not nearest to {n}/{vol}");
        if 2 * diff == vol {
            assert_eq!(v % 2, 0, "tie {n}/{vol} not rounded to even");
        }
    }

    #[test]
    fn vwap_is_exact_against_an_independent_check() {
        // Realistic BTC prices and tiny sizes whose VWAP needs rounding.
        let trades: &[Tr] = &[
            (1, 6_183_763_000_000, 2_000_000),
            (2, 6_183_764_000_000, 1),
            (3, 6_183_762_999_999, 33_333_333),
            (4, 6_180_030_000_000, 600_000),
        ];
        let mut b = BarBuilder::new(&cfg(&[S], 1, 0));
        let bar = run_all(&mut b, trades)[0];
        let n: i128 = trades
            .iter()
            .map(|t| i128::from(t.1) * i128::from(t.2))
            .sum();
        let vol: i128 = trades.iter().map(|t| i128::from(t.2)).sum();
        assert_eq!((bar.notional, bar.volume), (n, vol));
        assert_nearest_even(n, vol, bar.vwap());
        assert!(bar.low <= bar.vwap() && bar.vwap() <= bar.high);
        assert_eq!(b.session().vwap(), bar.vwap());
    }

    #[test]
    fn interval_labels() {
        let cases: &[(u64, &str)] = &[
            (S, "1s"),
            (MINUTE_NS, "1m"),
            (5 * MINUTE_NS, "5m"),
            (90 * S, "90s"),
            (HOUR_NS, "1h"),
            (4 * HOUR_NS, "4h"),
            (DAY_NS, "1d"),
            (250_000_000, "250ms"),
            (5_000, "5us"),
            (7, "7ns"),
        ];
        for &(ns, want) in cases {
            assert_eq!(IntervalLabel(ns).to_string(), want);
        }
    }

    #[test]
    fn config_is_validated() {
        let d = Duration::from_secs;
        assert_eq!(
            BarConfig::new(&[d(0)], 1, d(0)),
            Err(BarConfigError::ZeroInterval)
        );
        assert_eq!(
            BarConfig::new(&[d(60), d(1), d(60)], 1, d(0)),
            Err(BarConfigError::DuplicateInterval(IntervalLabel(MINUTE_NS)))
        );
        assert_eq!(
            BarConfig::new(&[Duration::MAX], 1, d(0)),
            Err(BarConfigError::IntervalTooLong)
        );
        assert_eq!(
            BarConfig::new(&vec![d(1); 17], 1, d(0)),
            Err(BarConfigError::TooManyIntervals(17))
        );
        assert_eq!(BarConfig::default().intervals_ns(), &DEFAULT_INTERVALS_NS);
    }

    #[test]
    fn decimal128_formats_exactly() {
        assert_eq!(Decimal128(0).to_string(), "0");
        assert_eq!(Decimal128(150_000_000).to_string(), "1.5");
        assert_eq!(Decimal128(1).to_string(), "0.00000001");
        assert_eq!(Decimal128(-250_000_000).to_string(), "-2.5");
        assert_eq!(
            Decimal128(i128::from(i64::MAX) * 4).to_string(),
            "368934881474.19103228"
        );
        assert_eq!(
            Decimal128(i128::MIN).to_string(),
            "-1701411834604692317316873037158.84105728"
        );
    }

    mod prop {
        use proptest::prelude::*;

        use super::*;

        /// Trades over a few hundred ns with a small jitter in arrival order, prices around 1.0,
        /// sizes up to 10 (some zero), for intervals of 7, 10 and 100 ns.
        fn trades() -> impl Strategy<Value = Vec<Tr>> {
            proptest::collection::vec((0u64..400, 1i64..=2 * SCALE, 0i64..=10 * SCALE), 1..200)
                .prop_flat_map(|mut v| {
                    v.sort_by_key(|t| t.0);
                    let n = v.len();
                    (Just(v), proptest::collection::vec((0..n, 0..n), 0..8))
                })
                .prop_map(|(mut v, swaps)| {
                    // A few swaps: some trades arrive out of order, some of them late.
                    for (i, j) in swaps {
                        v.swap(i, j);
                    }
                    v
                })
        }

        proptest! {
            #[test]
            fn bars_equal_a_naive_recomputation(trades in trades()) {
                let intervals = [7u64, 10, 100];
                let mut b = BarBuilder::new(&cfg(&intervals, 1000, 0));
                let closed = run_all(&mut b, &trades);
                for iv in intervals {
                    let got: Vec<Bar> = closed.iter().filter(|x| x.interval_ns == iv).copied().collect();
                    let (want, late, late_vol) = naive_bars(iv, &trades);
                    prop_assert_eq!(&got, &want);
                    prop_assert_eq!(b.late_trades(iv), late);
                    prop_assert_eq!(b.late_volume(iv), late_vol);
                    let vol: i128 = got.iter().map(|x| x.volume).sum();
                    prop_assert_eq!(vol + late_vol, b.session().volume);
                    for g in &got {
                        if g.volume > 0 {
                            assert_nearest_even(g.notional, g.volume, g.vwap());
                            prop_assert!(g.low <= g.vwap() && g.vwap() <= g.high);
                        } else {
                            prop_assert_eq!(g.vwap(), ABSENT);
                        }
                    }
                }
                let s = b.session();
                prop_assert_eq!(s.trade_count, trades.len() as u64);
                prop_assert_eq!(s.min_price, trades.iter().map(|t| t.1).min().unwrap());
                prop_assert_eq!(s.max_price, trades.iter().map(|t| t.1).max().unwrap());
            }
        }
    }
}
