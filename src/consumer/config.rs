//! The consumer's configuration: `[consumer]`, `[bars]` and which records go to CSV
//! (`[writer] trades/quotes/bars/mark/liquidations/open_interest`), built by the `config` module.

use std::time::Duration;

pub use crate::consumer::coalesce::CoalesceConfig;

/// How the consumer waits when every queue is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Spin forever (with a `yield` every 1024 turns so a 2-core machine still runs collectors).
    BusySpin,
    /// `yield_now` in a loop.
    Yield,
    /// Spin, then yield, then park with doubling sleeps (Aeron's BackoffIdleStrategy); a push
    /// wakes the consumer at once.
    Backoff {
        /// Busy-spin turns before yielding.
        spin_iterations: u32,
        /// `yield_now` turns before parking.
        yield_iterations: u32,
        /// Longest single park; the consumer also wakes on a new frame.
        park_max: Duration,
    },
    /// Park until a push wakes the consumer (lowest CPU, highest wake-up latency).
    Park,
}

/// The consumer thread.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Idle strategy.
    pub idle: IdleStrategy,
    /// Frames taken from one queue per turn before moving to the next (fairness); ≥ 1.
    pub batch_frames: usize,
    /// Adaptive coalescing of subscriber writes (`coalesce_budget_us`, `coalesce_max_bytes`).
    pub coalesce: CoalesceConfig,
    /// How often the consumer publishes its histograms and subscriber figures to other threads
    /// (`/metrics`, the status line). Not a configuration key: always
    /// [`PUBLISH_INTERVAL`](crate::consumer::thread::PUBLISH_INTERVAL) in a relay; a test that
    /// must see no publication (the allocation count) sets it longer than itself.
    pub publish_interval: Duration,
}

/// Which clock closes bars on the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarClock {
    /// The wall clock (live feeds: receive times are wall-clock times).
    Wall,
    /// Each feed's latest receive time (replay: the recording's own clock, so replays are
    /// deterministic).
    Data,
}

/// OHLCV bars (`[bars]`).
#[derive(Debug, Clone)]
pub struct BarsConfig {
    /// Intervals, history and grace, validated.
    pub bars: crate::market::bars::BarConfig,
    /// How often the consumer closes bars whose end + grace has passed.
    pub timer_interval: Duration,
    /// Close the bars still open at shutdown (partial bars) and persist them.
    pub close_on_shutdown: bool,
    /// Clock of the close timer.
    pub clock: BarClock,
}

/// Which records the CSV writer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persist {
    /// `trades.csv`.
    pub trades: bool,
    /// `quotes.csv`.
    pub quotes: bool,
    /// `bars_<interval>.csv`.
    pub bars: bool,
    /// `mark.csv` (derivatives).
    pub marks: bool,
    /// `liquidations.csv` (derivatives).
    pub liquidations: bool,
    /// `open_interest.csv` (derivatives).
    pub open_interest: bool,
}
