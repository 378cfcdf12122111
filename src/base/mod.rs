//! Building blocks every stage uses; no threads of its own, and no imports from the rest of
//! the crate.
//!
//! - `affinity`: `[threads]` placement and pinning, for every thread that can be pinned.
//! - `backoff`: exponential backoff with full jitter, for every retry loop.
//! - `clock`: the monotonic and wall clocks every timestamp comes from.
//! - `timefmt`: RFC 3339 formatting and UTC calendar arithmetic, exact to the nanosecond.
//! - `ratelimit`: at most one log line per interval, the rest counted.
//! - `log`: the `[log]` section (text or JSON lines, level) and when text lines carry colour.
//! - `stats`: single-writer atomic counters and the per-thread counter structs.
//! - `netutil`: small socket helpers.
//! - `publication`: a value one thread publishes and others read with no lock the writer can
//!   find busy (the consumer's snapshots).
//! - `wait_histogram`: a fixed-bucket histogram of durations with one writer (waits in ms..s,
//!   read as a Prometheus histogram).
//! - `testutil` (tests only): paths of the bundled fixtures.

pub mod affinity;
pub mod backoff;
pub mod clock;
pub mod log;
pub mod netutil;
pub mod publication;
pub mod ratelimit;
pub mod stats;
pub mod timefmt;
pub mod wait_histogram;

#[cfg(test)]
pub(crate) mod testutil;
