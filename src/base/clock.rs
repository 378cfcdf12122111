//! Time sources: a monotonic nanosecond clock for latency (`t_recv`, `t_relay`) and the wall-clock
//! nanoseconds since the Unix epoch that frames carry.
//!
//! One clock read per received frame: the wall time is derived from the monotonic reading plus an
//! offset captured once at start-up, so `recv_ts_ns` costs no second syscall. The derived wall time
//! does not follow NTP steps made after start-up; latency figures never use it.
//!
//! Any thread; never blocks.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Anchor {
    mono: Instant,
    /// Wall-clock ns since the Unix epoch at `mono`.
    wall_ns: u64,
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| Anchor {
        mono: Instant::now(),
        wall_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0),
    })
}

/// Monotonic nanoseconds since the process anchor (first use of the clock). Never decreases.
#[inline]
pub fn mono_ns() -> u64 {
    let a = anchor();
    u64::try_from(a.mono.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Wall-clock ns since the Unix epoch corresponding to a [`mono_ns`] reading.
#[inline]
pub fn wall_ns_at(mono: u64) -> u64 {
    anchor().wall_ns.saturating_add(mono)
}

/// Wall-clock ns since the Unix epoch, now.
#[inline]
pub fn wall_ns() -> u64 {
    wall_ns_at(mono_ns())
}

/// Initialises the anchor; call once at start-up so the first frame does not pay for it.
pub fn init() {
    let _ = anchor();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_wall_are_consistent() {
        init();
        let a = mono_ns();
        let b = mono_ns();
        assert!(b >= a);
        let sys = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let w = wall_ns();
        // Derived wall time is within a second of the system clock.
        assert!(w.abs_diff(sys) < 1_000_000_000, "{w} vs {sys}");
    }
}
