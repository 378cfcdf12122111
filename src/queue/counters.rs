//! The accounting of one queue: the counters both ends write (each field has one writer) and the
//! saturation state with its thresholds and hysteresis. Read by any thread (metrics, the status
//! line, the shutdown summary); written on the collector and consumer threads without locks.

use std::sync::atomic::{AtomicU8, Ordering};

use crossbeam_utils::CachePadded;

use crate::base::stats::{Counter, Gauge};

/// Saturation of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Saturation {
    /// Below 80 % full.
    Healthy = 0,
    /// 80–95 % full.
    Degraded = 1,
    /// 95 % full or more.
    Critical = 2,
}

impl Saturation {
    fn from_u8(v: u8) -> Saturation {
        match v {
            0 => Saturation::Healthy,
            1 => Saturation::Degraded,
            _ => Saturation::Critical,
        }
    }

    /// `"healthy"`, `"degraded"`, `"critical"`.
    pub fn name(self) -> &'static str {
        match self {
            Saturation::Healthy => "healthy",
            Saturation::Degraded => "degraded",
            Saturation::Critical => "critical",
        }
    }

    /// The state after observing `depth` of `capacity`, starting from `self` (hysteresis: a
    /// state is left downwards only 5 points below its threshold).
    pub fn next(self, depth: usize, capacity: usize) -> Saturation {
        let pct = depth.saturating_mul(100) / capacity.max(1);
        let up = match pct {
            p if p >= 95 => Saturation::Critical,
            p if p >= 80 => Saturation::Degraded,
            _ => Saturation::Healthy,
        };
        if up >= self {
            return up;
        }
        // Going down: only once clearly below the current state's threshold.
        match self {
            Saturation::Critical if pct < 90 => {
                if pct < 75 {
                    Saturation::Healthy
                } else {
                    Saturation::Degraded
                }
            }
            Saturation::Degraded if pct < 75 => Saturation::Healthy,
            s => s,
        }
    }
}

/// Counters of one queue. Producer-side and consumer-side fields sit on separate cache lines;
/// each has a single writer. Once both ends are quiet,
/// `producer.sent == consumer.received + producer.evicted + depth`; while they run, a counter
/// may trail its queue operation by a moment (it is bumped right after it).
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Written only by the [`Producer`](super::Producer).
    pub producer: CachePadded<ProducerCounters>,
    /// Written only by the [`QueueReceiver`](super::QueueReceiver).
    pub consumer: CachePadded<ConsumerQueueCounters>,
    /// The [`Saturation`] as a `u8`; written only by the producer, on each state change, so it
    /// always equals the producer's own copy of the state. Starts `Healthy` (0).
    state: AtomicU8,
}

/// Producer-side counters of a queue; only the producer writes them, all only grow except
/// `high_water`, which never falls.
#[derive(Debug, Default)]
pub struct ProducerCounters {
    /// Frames queued by a push or a `try_push`, including those evicted later.
    pub sent: Counter,
    /// Pushes that did not queue their frame (full past the policy's patience, or consumer
    /// gone). Refusals of `try_push` are not counted: the caller keeps the frame.
    pub dropped: Counter,
    /// Queued frames that `drop_oldest` pushed out to make room; ≤ `sent`, 0 under any other
    /// policy.
    pub evicted: Counter,
    /// `block`/`conflate` pushes that found the queue full and waited; each added its wait to
    /// `blocked_ns`, whether it then queued or dropped.
    pub blocked: Counter,
    /// Total time the `blocked` pushes waited, ns.
    pub blocked_ns: Counter,
    /// Highest depth seen right after a successful push; ≤ capacity, never decreases.
    pub high_water: Gauge,
    /// Saturation state changes (each one is logged once).
    pub state_changes: Counter,
}

/// Consumer-side counters of a queue; only the receiver writes them.
#[derive(Debug, Default)]
pub struct ConsumerQueueCounters {
    /// Frames taken by `try_pop`.
    pub received: Counter,
}

impl QueueCounters {
    /// Current saturation state.
    pub fn saturation(&self) -> Saturation {
        Saturation::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Producer: records a state change.
    pub(super) fn store_saturation(&self, s: Saturation) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_has_hysteresis() {
        use Saturation::*;
        let s = Healthy.next(79, 100);
        assert_eq!(s, Healthy);
        let s = s.next(80, 100);
        assert_eq!(s, Degraded);
        assert_eq!(
            s.next(78, 100),
            Degraded,
            "no flapping just below the threshold"
        );
        assert_eq!(s.next(74, 100), Healthy);
        let s = Healthy.next(96, 100);
        assert_eq!(s, Critical);
        assert_eq!(s.next(92, 100), Critical);
        assert_eq!(s.next(85, 100), Degraded);
        assert_eq!(s.next(10, 100), Healthy);
    }
}
