//! Counters shared between the thread that counts and the threads that report.
//!
//! Every counter has exactly one writer thread (named on its struct), so an increment is a
//! relaxed load and store — no locked read-modify-write on the hot path — and readers on other
//! threads see a value that is at most a few increments old. Structs written by different
//! threads sit on different cache lines ([`CachePadded`]), so a collector and the consumer never
//! contend for one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// A monotonically increasing count with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one. Only the owning thread may call this (single-writer invariant).
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`. Only the owning thread may call this (single-writer invariant).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Current value (any thread).
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value with a single writer that may go up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value (owning thread only).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Current value (any thread).
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one feed, written only by its collector thread.
#[derive(Debug, Default)]
pub struct CollectorCounters {
    /// WebSocket text frames read.
    pub frames: Counter,
    /// Bytes of those frames.
    pub bytes: Counter,
    /// Frames that were control messages (acks, heartbeats): consumed, no event.
    pub control: Counter,
    /// Frames that could not be parsed (malformed, unsupported, out of range); ≥ `out_of_range`.
    pub parse_errors: Counter,
    /// Of `parse_errors`: a number outside the fixed-point range or precision.
    pub out_of_range: Counter,
    /// Messages the parser's fast path handed to its general path (not errors: a cost figure;
    /// mirrors `VenueParser::fast_path_fallbacks` of the feed's parser).
    pub fast_path_fallbacks: Counter,
    /// Well-formed data messages deliberately not relayed (Binance futures trades whose `X` is
    /// not `MARKET`: insurance-fund and ADL fills).
    pub filtered: Counter,
    /// Events produced by the parser (a frame can hold several).
    pub events: Counter,
    /// Trades among `events`.
    pub trades: Counter,
    /// Quotes among `events`.
    pub quotes: Counter,
    /// Book updates among `events`.
    pub books: Counter,
    /// Frames pushed into the queue (events, instrument definitions, status).
    pub enqueued: Counter,
    /// Frames the queue refused (full past the policy's patience) or lost at shutdown.
    pub dropped: Counter,
    /// Events lost before the consumer (refused, evicted, or replaced under `conflate`).
    pub dropped_events: Counter,
    /// Of `dropped_events`: quotes replaced by a newer one under `conflate`.
    pub conflated: Counter,
    /// REST book snapshots fetched.
    pub snapshots: Counter,
    /// REST book snapshots that failed (HTTP error, timeout, bad body).
    pub snapshot_failures: Counter,
    /// Connections dropped because no data came within `stale_after_ms`.
    pub stale: Counter,
    /// Sequence gaps reported by the venue adapter (`gap` status events).
    pub gaps: Counter,
    /// Books rebuilt from a fresh snapshot (`resync` status events).
    pub resyncs: Counter,
    /// Venue checksums that did not match (`checksum_mismatch` status events with count > 0).
    pub checksum_mismatches: Counter,
    /// Books that became crossed (`crossed_book` status events).
    pub crossed_books: Counter,
    /// Connections established.
    pub connects: Counter,
    /// Connections lost or refused after the first.
    pub reconnects: Counter,
    /// Make-before-break rotations completed (the replacement took over).
    pub rotations: Counter,
    /// Rotations abandoned: the replacement failed or did not continue the stream in time.
    pub rotation_failures: Counter,
    /// Messages dropped during a rotation's overlap as already published by the other connection.
    pub rotation_duplicates: Counter,
    /// Events dropped because their instrument id collided with another name.
    pub id_collisions: Counter,
    /// 1 while a WebSocket connection is up.
    pub connected: Gauge,
    /// 1 once the current connection has delivered market data (the subscription works).
    pub subscribed: Gauge,
    /// Monotonic ns of the last data (non-control) message; 0 before the first.
    pub last_data_mono_ns: Gauge,
    /// Recordings whose replay stopped on an error (cannot open, I/O, corrupt gzip): replay only.
    pub files_failed: Counter,
    /// How long each message released from a venue sync buffer waited there (from its receipt
    /// to the book snapshot that released it); kept out of the parse time.
    pub sync_wait: crate::base::wait_histogram::WaitHistogram,
}

/// Counters of one feed's queue, written only by the consumer thread.
#[derive(Debug, Default)]
pub struct ConsumerFeedCounters {
    /// Frames taken from the feed's queue and relayed (cached, fanned out).
    pub relayed: Counter,
    /// Events among `relayed`.
    pub relayed_events: Counter,
    /// Frames refused: their id belongs to another feed, or arrived before its definition
    /// (possible only after `drop_oldest` evicted the definition).
    pub refused: Counter,
    /// Events among `refused`.
    pub refused_events: Counter,
}

/// Everything counted about one feed, each part on its own cache line.
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Written by the collector.
    pub collector: CachePadded<CollectorCounters>,
    /// Written by the consumer.
    pub consumer: CachePadded<ConsumerFeedCounters>,
    /// Written by the feed's open-interest poller thread (`oi-<feed>`), when it has one.
    pub open_interest: CachePadded<OpenInterestCounters>,
}

/// Counters of a feed's open-interest poller, written only by its `oi-<feed>` thread.
#[derive(Debug, Default)]
pub struct OpenInterestCounters {
    /// REST requests made (one per symbol per round).
    pub polls: Counter,
    /// Requests that failed or returned a body that did not parse.
    pub failures: Counter,
    /// Readings dropped because the hand-over to the collector was full.
    pub dropped: Counter,
}

/// Relay-wide counters, written only by the consumer (`accept_*` by the acceptor thread).
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Subscribers connected now.
    pub subscribers: Gauge,
    /// Subscribers accepted since start.
    pub accepted: Counter,
    /// Subscribers disconnected for exceeding their pending-bytes limit.
    pub slow_disconnects: Counter,
    /// Subscribers that went away (EOF, reset).
    pub closed: Counter,
    /// Subscribers closed after a malformed or oversized request.
    pub refused_requests: Counter,
    /// Times a lossy subscriber fell behind and had its unwritten frames skipped.
    pub lossy_skips: Counter,
    /// Frames skipped that way.
    pub lossy_frames_skipped: Counter,
    /// Frames written (counted once per subscriber).
    pub frames_sent: Counter,
    /// Bytes written to subscribers.
    pub bytes_sent: Counter,
    /// `write` calls on subscriber sockets.
    pub writes: Counter,
    /// Frames whose last byte a write to a subscriber socket carried (counted once per
    /// subscriber): `frames_written / writes` is the frames one write carries.
    pub frames_written: Counter,
    /// `too_slow` statuses that could not be written before `relay.drain_timeout_ms` (the
    /// connection was closed without it; its client never read again).
    pub too_slow_unsent: Counter,
    /// Consumer turns that held written frames back to gather more (adaptive coalescing).
    pub coalesce_holds: Counter,
    /// Heartbeats broadcast.
    pub heartbeats: Counter,
}

/// Counters written by the acceptor thread.
#[derive(Debug, Default)]
pub struct AcceptCounters {
    /// Connections refused because `max_subscribers` were connected (or too many were waiting).
    pub refused_full: Counter,
    /// Connections refused because the peer's uid is not in `relay.allowed_uids`.
    pub refused_uid: Counter,
    /// Subscription requests read.
    pub requests: Counter,
    /// Malformed or oversized requests (the connection was closed).
    pub bad_requests: Counter,
    /// Connections whose client shut its writing side (EOF) while still reading: they send no
    /// more requests and keep receiving their stream.
    pub half_closed: Counter,
}

/// Process-wide stop flag: set once by the signal handler or an owner, read by every thread.
#[derive(Debug, Default)]
pub struct StopFlag(AtomicBool);

impl StopFlag {
    /// Asks every thread to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// True once [`stop`](Self::stop) was called.
    #[inline]
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_writer_counter_counts() {
        let c = Counter::default();
        for _ in 0..1000 {
            c.inc();
        }
        c.add(5);
        assert_eq!(c.get(), 1005);
    }
}
