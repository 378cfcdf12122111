//! The collector → consumer hop: one bounded queue per feed, carrying encoded frames.
//!
//! Two transports behind one interface, chosen per feed in configuration:
//! - `channel`: a crossbeam-channel bounded (array) channel — Vyukov-style slots, a blocking send
//!   with a deadline for the `block` policy;
//! - `ring`: a crossbeam-queue `ArrayQueue` polled by the consumer — no blocking machinery at
//!   all, and `force_push` for `drop_oldest`.
//!
//! A [`Producer`] lives on the collector thread, a [`QueueReceiver`] on the consumer thread.
//! Capacity comes from configuration only; nothing here can grow.
//!
//! Parking: the consumer never blocks on a queue. When idle it parks its thread after raising a
//! flag in the shared [`Waker`]; a producer that sees the flag after a push unparks it. The flag
//! is read with one relaxed-cost load per push; the store→fence→load pairs on both sides (a
//! Dekker handshake, SeqCst fences) make a lost wake-up impossible, and the park timeout bounds
//! it anyway.
//!
//! Accounting ([`QueueCounters`]): pushes, drops, evictions, blocked pushes and the time they
//! waited are counted by the producer; pops by the consumer. The producer also keeps the depth
//! high-water mark and a saturation state (healthy < 80 %, degraded 80–95 %, critical ≥ 95 %,
//! with 5 points of hysteresis on the way down) and logs each state change, never per message.

use std::sync::atomic::fence;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TryRecvError, TrySendError};
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use crate::base::stats::{Counter, Gauge};
use crate::wire::protocol::FrameBuf;

/// Which data structure carries a feed's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// crossbeam-channel bounded channel.
    Channel,
    /// crossbeam-queue `ArrayQueue` ring.
    Ring,
}

/// What a producer does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// Wait for space up to the block timeout, then drop the new frame.
    Block,
    /// Drop the new frame at once.
    DropNewest,
    /// Overwrite the oldest queued frame (ring transport only).
    DropOldest,
    /// Quotes: keep only the latest per instrument until there is room (see
    /// [`crate::feed::publisher`]); everything else behaves as `Block`.
    Conflate,
}

/// One frame in flight from a collector to the consumer.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The encoded frame (header, payload, CRC), ready to write to subscribers.
    pub frame: FrameBuf,
    /// Monotonic ns when the venue message was read (`t_recv`); 0 for frames not caused by a
    /// venue message (connection status, drop reports).
    pub t_recv_ns: u64,
    /// Monotonic ns when the frame was pushed (queue wait = pop time − this).
    pub t_enqueue_ns: u64,
}

/// A push that succeeded.
#[derive(Debug)]
pub enum Pushed {
    /// The frame is queued.
    Queued,
    /// The frame is queued and the oldest frame was evicted to make room (`drop_oldest`); the
    /// evicted frame is handed back so the caller can account for it.
    Evicted(Envelope),
}

/// Why a push did not enqueue the frame. The frame is handed back, as crossbeam's
/// `TrySendError` does; returning it by value (~150 bytes) costs less than boxing it (hence
/// `result_large_err` is allowed in Cargo.toml).
#[derive(Debug)]
pub enum PushError {
    /// The queue stayed full past the policy's patience; the frame was dropped.
    Dropped(Envelope),
    /// The consumer is gone.
    Disconnected(Envelope),
}

/// Why a pop returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopError {
    /// Nothing queued right now.
    Empty,
    /// Nothing queued and the producer is gone: no frame will ever come.
    Disconnected,
}

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
/// each has a single writer.
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Written by the producer.
    pub producer: CachePadded<ProducerCounters>,
    /// Written by the consumer.
    pub consumer: CachePadded<ConsumerQueueCounters>,
    /// Current [`Saturation`] (producer writes).
    state: AtomicU8,
}

/// Producer-side counters of a queue.
#[derive(Debug, Default)]
pub struct ProducerCounters {
    /// Frames queued.
    pub sent: Counter,
    /// Frames refused (dropped) at push.
    pub dropped: Counter,
    /// Frames evicted by `drop_oldest`.
    pub evicted: Counter,
    /// Pushes that found the queue full and waited (`block`).
    pub blocked: Counter,
    /// Total time blocked pushes waited, ns.
    pub blocked_ns: Counter,
    /// Highest depth seen right after a push; ≤ capacity.
    pub high_water: Gauge,
    /// Saturation state changes.
    pub state_changes: Counter,
}

/// Consumer-side counters of a queue.
#[derive(Debug, Default)]
pub struct ConsumerQueueCounters {
    /// Frames taken.
    pub received: Counter,
}

impl QueueCounters {
    /// Current saturation state.
    pub fn saturation(&self) -> Saturation {
        Saturation::from_u8(self.state.load(Ordering::Relaxed))
    }
}

/// Wakes the consumer when it parks. One per consumer, shared by every producer.
#[derive(Debug, Default)]
pub struct Waker {
    thread: OnceLock<Thread>,
    /// True while the consumer is parked or about to park.
    sleeping: CachePadded<AtomicBool>,
}

impl Waker {
    /// Registers the calling thread as the one to wake (the consumer, once at start).
    pub fn register_current(&self) {
        let _ = self.thread.set(thread::current());
    }

    /// Called by a producer after it made something visible to the consumer.
    #[inline]
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    /// Consumer: parks for up to `timeout` unless `has_work` says otherwise after the flag is
    /// raised (the re-check that makes a lost wake-up impossible).
    pub fn park_timeout(&self, timeout: Duration, has_work: impl FnOnce() -> bool) {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !has_work() {
            thread::park_timeout(timeout);
        }
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

enum TxInner {
    Channel(Sender<Envelope>),
    Ring(Arc<Ring>),
}

enum RxInner {
    Channel(Receiver<Envelope>),
    Ring(Arc<Ring>),
}

struct Ring {
    q: ArrayQueue<Envelope>,
    /// Set when the producer is dropped.
    closed: AtomicBool,
}

/// The collector's end.
pub struct Producer {
    inner: TxInner,
    policy: Backpressure,
    block_timeout: Duration,
    capacity: usize,
    counters: Arc<QueueCounters>,
    waker: Arc<Waker>,
    /// Saturation as last computed by this producer.
    state: Saturation,
    /// Queue name, for the state-change log line.
    name: String,
}

/// The consumer's end.
pub struct QueueReceiver {
    inner: RxInner,
    capacity: usize,
    counters: Arc<QueueCounters>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for QueueReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueReceiver")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// How to build a queue.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// Name used in logs (the feed name).
    pub name: String,
    /// Transport.
    pub transport: Transport,
    /// Capacity in frames, ≥ 1.
    pub capacity_frames: usize,
    /// Full-queue policy. `DropOldest` requires [`Transport::Ring`] (validated in config).
    pub policy: Backpressure,
    /// Longest wait under `Block`/`Conflate`.
    pub block_timeout: Duration,
}

/// A bounded queue per `spec`, waking the consumer through `waker`.
pub fn bounded(spec: &QueueSpec, waker: Arc<Waker>) -> (Producer, QueueReceiver) {
    let cap = spec.capacity_frames.max(1);
    let counters = Arc::new(QueueCounters::default());
    let (tx, rx) = match spec.transport {
        Transport::Channel => {
            let (tx, rx) = crossbeam_channel::bounded(cap);
            (TxInner::Channel(tx), RxInner::Channel(rx))
        }
        Transport::Ring => {
            let ring = Arc::new(Ring {
                q: ArrayQueue::new(cap),
                closed: AtomicBool::new(false),
            });
            (TxInner::Ring(ring.clone()), RxInner::Ring(ring))
        }
    };
    (
        Producer {
            inner: tx,
            policy: spec.policy,
            block_timeout: spec.block_timeout,
            capacity: cap,
            counters: counters.clone(),
            waker,
            state: Saturation::Healthy,
            name: spec.name.clone(),
        },
        QueueReceiver {
            inner: rx,
            capacity: cap,
            counters,
        },
    )
}

impl Producer {
    /// Enqueues `env` under the queue's policy.
    #[inline]
    pub fn push(&mut self, env: Envelope) -> Result<Pushed, PushError> {
        let r = match self.policy {
            Backpressure::DropNewest => self.try_push_inner(env).map(|()| Pushed::Queued),
            Backpressure::DropOldest => self.force_push(env),
            Backpressure::Block | Backpressure::Conflate => match self.try_push_inner(env) {
                Err(PushError::Dropped(e)) => self.push_blocking(e).map(|()| Pushed::Queued),
                r => r.map(|()| Pushed::Queued),
            },
        };
        self.after_push(&r);
        r
    }

    /// Enqueues `env` only if there is room now, whatever the policy (drop reports, conflated
    /// quotes: the caller keeps them and retries). A refusal here is not counted as a drop.
    #[inline]
    pub fn try_push(&mut self, env: Envelope) -> Result<(), PushError> {
        let r = self.try_push_inner(env);
        match &r {
            Ok(()) => {
                self.counters.producer.sent.inc();
                self.observe_depth();
                self.waker.wake();
            }
            Err(PushError::Dropped(_) | PushError::Disconnected(_)) => {}
        }
        r
    }

    #[inline]
    fn try_push_inner(&self, env: Envelope) -> Result<(), PushError> {
        match &self.inner {
            TxInner::Channel(tx) => tx.try_send(env).map_err(|e| match e {
                TrySendError::Full(e) => PushError::Dropped(e),
                TrySendError::Disconnected(e) => PushError::Disconnected(e),
            }),
            TxInner::Ring(r) => r.q.push(env).map_err(PushError::Dropped),
        }
    }

    fn force_push(&self, env: Envelope) -> Result<Pushed, PushError> {
        match &self.inner {
            TxInner::Ring(r) => Ok(match r.q.force_push(env) {
                None => Pushed::Queued,
                Some(old) => Pushed::Evicted(old),
            }),
            // Config validation forbids drop_oldest on a channel; behave as drop_newest.
            TxInner::Channel(_) => self.try_push_inner(env).map(|()| Pushed::Queued),
        }
    }

    /// Waits for space up to the block timeout. The consumer is woken first: it may be parked
    /// with a full queue only if it missed the wake-up, and waiting on a parked consumer would
    /// waste the whole timeout.
    fn push_blocking(&self, env: Envelope) -> Result<(), PushError> {
        self.counters.producer.blocked.inc();
        let start = Instant::now();
        self.waker.wake();
        let r = match &self.inner {
            TxInner::Channel(tx) => tx
                .send_timeout(env, self.block_timeout)
                .map_err(|e| match e {
                    SendTimeoutError::Timeout(e) => PushError::Dropped(e),
                    SendTimeoutError::Disconnected(e) => PushError::Disconnected(e),
                }),
            TxInner::Ring(r) => {
                let deadline = start + self.block_timeout;
                let mut env = env;
                let mut spins = 0u32;
                loop {
                    match r.q.push(env) {
                        Ok(()) => break Ok(()),
                        Err(e) => env = e,
                    }
                    if Instant::now() >= deadline {
                        break Err(PushError::Dropped(env));
                    }
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else if spins < 128 {
                        thread::yield_now();
                    } else {
                        thread::sleep(Duration::from_micros(50));
                    }
                }
            }
        };
        self.counters
            .producer
            .blocked_ns
            .add(start.elapsed().as_nanos() as u64);
        r
    }

    #[inline]
    fn after_push(&mut self, r: &Result<Pushed, PushError>) {
        let c = &self.counters.producer;
        match r {
            Ok(p) => {
                c.sent.inc();
                if matches!(p, Pushed::Evicted(_)) {
                    c.evicted.inc();
                }
                self.observe_depth();
                self.waker.wake();
            }
            Err(_) => c.dropped.inc(),
        }
    }

    /// Updates the high-water mark and the saturation state after a push.
    #[inline]
    fn observe_depth(&mut self) {
        let depth = self.len();
        let c = &self.counters.producer;
        if depth as u64 > c.high_water.get() {
            c.high_water.set(depth as u64);
        }
        let next = self.state.next(depth, self.capacity);
        if next != self.state {
            self.set_state(next, depth);
        }
    }

    #[cold]
    fn set_state(&mut self, next: Saturation, depth: usize) {
        let level = if next > self.state {
            "rising"
        } else {
            "falling"
        };
        self.state = next;
        self.counters.state.store(next as u8, Ordering::Relaxed);
        self.counters.producer.state_changes.inc();
        if next == Saturation::Healthy {
            tracing::info!(queue = %self.name, depth, capacity = self.capacity, "queue {}: {level}", next.name());
        } else {
            tracing::warn!(queue = %self.name, depth, capacity = self.capacity, "queue {}: {level}", next.name());
        }
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        match &self.inner {
            TxInner::Channel(tx) => tx.len(),
            TxInner::Ring(r) => r.q.len(),
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The queue's policy.
    pub fn policy(&self) -> Backpressure {
        self.policy
    }

    /// The queue's counters.
    pub fn counters(&self) -> &Arc<QueueCounters> {
        &self.counters
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let TxInner::Ring(r) = &self.inner {
            r.closed.store(true, Ordering::Release);
        }
        // The consumer may be parked waiting for this queue to close.
        self.waker.wake();
    }
}

impl QueueReceiver {
    /// Takes the oldest frame without blocking.
    #[inline]
    pub fn try_pop(&self) -> Result<Envelope, PopError> {
        let r = match &self.inner {
            RxInner::Channel(rx) => rx.try_recv().map_err(|e| match e {
                TryRecvError::Empty => PopError::Empty,
                TryRecvError::Disconnected => PopError::Disconnected,
            }),
            RxInner::Ring(r) => match r.q.pop() {
                Some(e) => Ok(e),
                None if r.closed.load(Ordering::Acquire) => {
                    // The producer may have pushed just before closing.
                    r.q.pop().ok_or(PopError::Disconnected)
                }
                None => Err(PopError::Empty),
            },
        };
        if r.is_ok() {
            self.counters.consumer.received.inc();
        }
        r
    }

    /// Frames queued now.
    #[inline]
    pub fn len(&self) -> usize {
        match &self.inner {
            RxInner::Channel(rx) => rx.len(),
            RxInner::Ring(r) => r.q.len(),
        }
    }

    /// True when nothing is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity in frames.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The queue's counters (shared with the producer and monitors).
    pub fn counters(&self) -> &Arc<QueueCounters> {
        &self.counters
    }

    /// A read-only view for monitoring threads.
    pub fn monitor(&self) -> QueueMonitor {
        QueueMonitor {
            inner: match &self.inner {
                RxInner::Channel(rx) => RxInner::Channel(rx.clone()),
                RxInner::Ring(r) => RxInner::Ring(r.clone()),
            },
            capacity: self.capacity,
            counters: self.counters.clone(),
        }
    }
}

/// Depth, capacity and counters of a queue, readable from any thread; never takes a frame.
pub struct QueueMonitor {
    inner: RxInner,
    capacity: usize,
    counters: Arc<QueueCounters>,
}

impl std::fmt::Debug for QueueMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueMonitor")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl QueueMonitor {
    /// Frames queued now.
    pub fn len(&self) -> usize {
        match &self.inner {
            RxInner::Channel(rx) => rx.len(),
            RxInner::Ring(r) => r.q.len(),
        }
    }
    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Capacity in frames.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// The counters.
    pub fn counters(&self) -> &QueueCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(i: u8) -> Envelope {
        Envelope {
            frame: FrameBuf::from_slice(&[i]),
            t_recv_ns: u64::from(i),
            t_enqueue_ns: 0,
        }
    }

    fn spec(transport: Transport, cap: usize, policy: Backpressure, block_ms: u64) -> QueueSpec {
        QueueSpec {
            name: "t".into(),
            transport,
            capacity_frames: cap,
            policy,
            block_timeout: Duration::from_millis(block_ms),
        }
    }

    fn drain(r: &QueueReceiver) -> Vec<u8> {
        let mut got = Vec::new();
        while let Ok(e) = r.try_pop() {
            got.push(e.frame[0]);
        }
        got
    }

    #[test]
    fn drop_newest_counts_exactly_on_both_transports() {
        for t in [Transport::Channel, Transport::Ring] {
            let (mut p, r) = bounded(&spec(t, 4, Backpressure::DropNewest, 0), Arc::default());
            let mut dropped = 0;
            for i in 0..10 {
                if let Err(PushError::Dropped(e)) = p.push(env(i)) {
                    assert_eq!(e.frame[0], i, "the refused frame is handed back");
                    dropped += 1;
                }
            }
            let got = drain(&r);
            assert_eq!(got, [0, 1, 2, 3], "{t:?}: oldest kept, in order");
            assert_eq!(got.len() + dropped, 10);
            let c = r.counters();
            assert_eq!(c.producer.sent.get(), 4);
            assert_eq!(c.producer.dropped.get(), 6);
            assert_eq!(c.consumer.received.get(), 4);
            assert_eq!(c.producer.high_water.get(), 4);
            assert_eq!(c.saturation(), Saturation::Critical);
        }
    }

    #[test]
    fn drop_oldest_evicts_and_hands_back_the_oldest() {
        let (mut p, r) = bounded(
            &spec(Transport::Ring, 3, Backpressure::DropOldest, 0),
            Arc::default(),
        );
        let mut evicted = Vec::new();
        for i in 0..7 {
            if let Ok(Pushed::Evicted(e)) = p.push(env(i)) {
                evicted.push(e.frame[0]);
            }
        }
        assert_eq!(drain(&r), [4, 5, 6], "newest kept, in order");
        assert_eq!(evicted, [0, 1, 2, 3]);
        assert_eq!(r.counters().producer.evicted.get(), 4);
    }

    #[test]
    fn block_waits_then_drops_on_both_transports() {
        for t in [Transport::Channel, Transport::Ring] {
            let (mut p, r) = bounded(&spec(t, 1, Backpressure::Block, 5), Arc::default());
            p.push(env(1)).unwrap();
            assert!(
                matches!(p.push(env(2)), Err(PushError::Dropped(_))),
                "{t:?}"
            );
            assert_eq!(r.counters().producer.blocked.get(), 1);
            assert!(r.counters().producer.blocked_ns.get() >= 5_000_000);
            assert_eq!(r.try_pop().unwrap().frame[0], 1);
            p.push(env(3)).unwrap();
            drop(p);
            assert_eq!(r.try_pop().unwrap().frame[0], 3);
            assert_eq!(r.try_pop().unwrap_err(), PopError::Disconnected, "{t:?}");
        }
    }

    #[test]
    fn block_succeeds_when_the_consumer_makes_room() {
        for t in [Transport::Channel, Transport::Ring] {
            let (mut p, r) = bounded(&spec(t, 1, Backpressure::Block, 10_000), Arc::default());
            p.push(env(1)).unwrap();
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
            let h = thread::spawn(move || {
                thread::sleep(Duration::from_millis(20));
                let first = r.try_pop().map(|e| e.frame[0]);
                // Keep the receiver alive until the blocked push has completed.
                let _ = done_rx.recv();
                (first, r.try_pop().map(|e| e.frame[0]))
            });
            p.push(env(2)).unwrap();
            done_tx.send(()).unwrap();
            assert_eq!(h.join().unwrap(), (Ok(1), Ok(2)), "{t:?}");
        }
    }

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

    #[test]
    fn waker_unparks_a_parked_consumer() {
        let waker = Arc::new(Waker::default());
        let (mut p, r) = bounded(
            &spec(Transport::Ring, 8, Backpressure::Block, 100),
            waker.clone(),
        );
        let w2 = waker.clone();
        let h = thread::spawn(move || {
            w2.register_current();
            let start = Instant::now();
            loop {
                if let Ok(e) = r.try_pop() {
                    return (e.frame[0], start.elapsed());
                }
                w2.park_timeout(Duration::from_secs(30), || !r.is_empty());
            }
        });
        thread::sleep(Duration::from_millis(50));
        p.push(env(9)).unwrap();
        let (v, waited) = h.join().unwrap();
        assert_eq!(v, 9);
        assert!(
            waited < Duration::from_secs(10),
            "woken by the push, not the timeout"
        );
    }
}
