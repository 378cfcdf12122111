//! Adaptive coalescing: when to write the frames the consumer has queued for subscribers.
//!
//! Runs on the consumer thread, inside its loop; pure bookkeeping, no clock of its own (the
//! consumer passes `now`), so every decision is testable with made-up times. A write costs
//! about a microsecond whatever it carries, so while frames keep arriving it pays to let a few
//! more join the batch; when the feed is quiet a frame must go out at once.
//!
//! The rule (after each consumer turn, with the arrival — enqueue — times of the frames taken):
//! - nothing held, or coalescing off (`budget` 0): write now;
//! - the held bytes reached `max_bytes`, or the oldest held frame was taken `budget` ago: write
//!   now (the budget bounds the delay coalescing adds to any frame);
//! - the last frame arrived after a silence of at least `budget` (the feed is quiet, or a burst
//!   just started): write now, in the same turn — a lone frame never waits;
//! - otherwise the feed is in a burst: hold while the next frame is still expected, that is
//!   until twice the burst's smoothed inter-arrival gap (at least [`MIN_LINGER_NS`]) has passed
//!   since the last arrival, then write.
//!
//! Nagle's algorithm (RFC 896) holds small segments until the previous one is acknowledged;
//! this holds them only inside a burst, and only for a bounded time.

/// The least a burst is waited for after its last frame, ns: below this the wait costs more
/// than the write it might save.
pub const MIN_LINGER_NS: u64 = 500;

/// The coalescing settings (`[consumer] coalesce_budget_us`, `coalesce_max_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceConfig {
    /// Most a frame's write is delayed to coalesce it with later frames, ns; 0: never (every
    /// turn's frames are written at the end of the turn).
    pub budget_ns: u64,
    /// Held bytes that end the hold (a batch is written once it reaches this size); ≥ 1.
    pub max_bytes: usize,
}

impl CoalesceConfig {
    /// The shipped defaults (config/default.toml): 20 µs, 64 KiB.
    pub const DEFAULT: CoalesceConfig = CoalesceConfig {
        budget_ns: 20_000,
        max_bytes: 64 * 1024,
    };
    /// No coalescing: every turn is written at its end.
    pub const OFF: CoalesceConfig = CoalesceConfig {
        budget_ns: 0,
        max_bytes: 1,
    };
}

/// What to do with the frames held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write them now.
    Write,
    /// Keep them for another turn.
    Hold,
}

/// The coalescing state; owned by the consumer thread.
#[derive(Debug)]
pub struct Coalescer {
    cfg: CoalesceConfig,
    /// When the oldest frame not yet written was taken, ns; `None` when none is held.
    first_held_ns: Option<u64>,
    /// Frame bytes taken since the last write (per subscriber at most this much).
    held_bytes: usize,
    /// Latest arrival time seen, ns; 0 before the first frame.
    last_arrival_ns: u64,
    /// Smoothed inter-arrival gap inside the current burst, ns; `u64::MAX` when the last frame
    /// came after a silence of at least the budget (no burst).
    gap_ns: u64,
}

impl Coalescer {
    /// A coalescer with nothing held.
    pub fn new(cfg: CoalesceConfig) -> Self {
        Coalescer {
            cfg,
            first_held_ns: None,
            held_bytes: 0,
            last_arrival_ns: 0,
            gap_ns: u64::MAX,
        }
    }

    /// A frame of `len` bytes that arrived (was enqueued) at `arrival_ns` was taken at `now_ns`
    /// and queued for subscribers.
    #[inline]
    pub fn on_frame(&mut self, arrival_ns: u64, now_ns: u64, len: usize) {
        self.first_held_ns.get_or_insert(now_ns);
        self.held_bytes += len;
        let gap = if self.last_arrival_ns == 0 {
            u64::MAX
        } else {
            // Frames of different feeds may be taken out of arrival order: a negative gap is 0.
            arrival_ns.saturating_sub(self.last_arrival_ns)
        };
        self.gap_ns = if gap >= self.cfg.budget_ns {
            u64::MAX
        } else if self.gap_ns == u64::MAX {
            gap
        } else {
            (3 * self.gap_ns + gap) / 4
        };
        self.last_arrival_ns = self.last_arrival_ns.max(arrival_ns);
    }

    /// Whether to write what is held, as of `now_ns` (see the module doc).
    #[inline]
    pub fn decide(&self, now_ns: u64) -> Decision {
        let Some(first) = self.first_held_ns else {
            return Decision::Write;
        };
        if self.cfg.budget_ns == 0
            || self.held_bytes >= self.cfg.max_bytes
            || now_ns >= first.saturating_add(self.cfg.budget_ns)
            || self.gap_ns == u64::MAX
        {
            return Decision::Write;
        }
        let linger = self.gap_ns.saturating_mul(2).max(MIN_LINGER_NS);
        if now_ns < self.last_arrival_ns.saturating_add(linger) {
            Decision::Hold
        } else {
            Decision::Write
        }
    }

    /// What was held has been written.
    #[inline]
    pub fn written(&mut self) {
        self.first_held_ns = None;
        self.held_bytes = 0;
    }

    /// True while frames are held back.
    #[inline]
    pub fn holding(&self) -> bool {
        self.first_held_ns.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;

    fn coalescer() -> Coalescer {
        Coalescer::new(CoalesceConfig {
            budget_ns: 20 * US,
            max_bytes: 1000,
        })
    }

    #[test]
    fn a_lone_frame_is_written_in_the_turn_it_is_taken() {
        let mut c = coalescer();
        c.on_frame(1_000 * US, 1_000 * US, 100);
        assert_eq!(c.decide(1_000 * US), Decision::Write, "first frame ever");
        c.written();
        // After a quiet spell (longer than the budget), again at once.
        c.on_frame(1_050 * US, 1_050 * US, 100);
        assert_eq!(c.decide(1_050 * US), Decision::Write);
    }

    #[test]
    fn a_burst_is_held_until_it_pauses() {
        let mut c = coalescer();
        // The burst's first frame goes out at once.
        c.on_frame(100 * US, 100 * US, 100);
        assert_eq!(c.decide(100 * US), Decision::Write);
        c.written();
        // Frames 1 µs apart: held while the next is expected.
        for i in 1..5 {
            let t = 100 * US + i * US;
            c.on_frame(t, t, 100);
            assert_eq!(c.decide(t), Decision::Hold, "frame {i}");
        }
        // Still held just after the last arrival; written once two gaps passed without one.
        let last = 104 * US;
        assert_eq!(c.decide(last + US), Decision::Hold);
        assert_eq!(c.decide(last + 2 * US), Decision::Write);
    }

    #[test]
    fn the_budget_bounds_the_hold() {
        let mut c = coalescer();
        c.on_frame(10 * US, 10 * US, 10);
        c.written();
        let first = 11 * US;
        let mut t = first;
        // An endless burst (a frame every µs): written when the oldest held frame is 20 µs old.
        while t < first + 20 * US {
            c.on_frame(t, t, 10);
            assert_eq!(c.decide(t), Decision::Hold);
            t += US;
        }
        c.on_frame(t, t, 10);
        assert_eq!(c.decide(t), Decision::Write);
    }

    #[test]
    fn max_bytes_ends_the_hold() {
        let mut c = coalescer();
        c.on_frame(10 * US, 10 * US, 10);
        c.written();
        c.on_frame(11 * US, 11 * US, 500);
        assert_eq!(c.decide(11 * US), Decision::Hold);
        c.on_frame(11 * US + 100, 11 * US + 100, 500);
        assert_eq!(c.decide(11 * US + 100), Decision::Write);
    }

    #[test]
    fn a_zero_budget_never_holds() {
        let mut c = Coalescer::new(CoalesceConfig::OFF);
        for t in 1..100u64 {
            c.on_frame(t, t, 10);
            assert_eq!(c.decide(t), Decision::Write);
            c.written();
        }
    }
}
