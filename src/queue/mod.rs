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
//! flag in the shared [`Waker`]; a producer that sees the flag after a push unparks it (a Dekker
//! handshake: no wake-up is lost, and the park timeout would bound the delay if one were).
//!
//! Accounting ([`QueueCounters`]): pushes, drops, evictions, blocked pushes and the time they
//! waited are counted by the producer; pops by the consumer. The producer also keeps the depth
//! high-water mark and a saturation state (healthy < 80 %, degraded 80–95 %, critical ≥ 95 %,
//! with 5 points of hysteresis on the way down) and logs each state change, never per message.
//!
//! Files:
//! - `mod.rs` (this file): what crosses the hop ([`Envelope`], push and pop outcomes), the
//!   policies, [`QueueSpec`] and [`bounded`], which builds both ends.
//! - `producer`: [`Producer`], the collector's end — policies, accounting, saturation.
//! - `receiver`: [`QueueReceiver`], the consumer's end, and [`QueueMonitor`], the read-only view.
//! - `waker`: [`Waker`], the park/unpark handshake between producers and the consumer.
//! - `counters`: [`QueueCounters`] and [`Saturation`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::wire::protocol::FrameBuf;

mod counters;
mod producer;
mod receiver;
mod waker;

pub use counters::{ConsumerQueueCounters, ProducerCounters, QueueCounters, Saturation};
pub use producer::Producer;
pub use receiver::{QueueMonitor, QueueReceiver};
pub use waker::Waker;

use producer::TxInner;
use receiver::RxInner;

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
    /// the feed's publisher); everything else behaves as `Block`.
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

/// The ring transport's shared state: one producer pushes, one receiver pops.
struct Ring {
    /// The frames, oldest first; never more than the capacity given to [`bounded`] (an
    /// `ArrayQueue` does not grow). The producer pushes (and, under `drop_oldest`, evicts the
    /// oldest with `force_push`); only the receiver pops.
    q: ArrayQueue<Envelope>,
    /// False until the producer is dropped, then true for good (Release store in its `Drop`,
    /// Acquire load in `try_pop`): every frame pushed before is still popped before the receiver
    /// reports [`PopError::Disconnected`].
    closed: AtomicBool,
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
        Producer::new(tx, spec, cap, counters.clone(), waker),
        QueueReceiver::new(rx, cap, counters),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Instant;

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
