//! The collector → consumer hop: one bounded queue per feed, carrying encoded frames.
//!
//! A [`Producer`] lives on the collector thread, a [`QueueReceiver`] on the consumer thread. The
//! transport is a crossbeam-channel bounded (array) channel: lock-free Vyukov-style slots, and a
//! receiver the consumer can block on together with other channels (`Select`) when it parks.
//! Capacity comes from configuration only; nothing here can grow.
//!
//! A full queue is handled by the feed's [`Backpressure`] policy: `Block` waits up to the block
//! timeout and then drops, `DropNewest` drops at once. A drop is never silent: the producer returns
//! [`PushError::Dropped`] with the frame, the caller counts it and tells subscribers in-band.

use std::time::Duration;

use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
};

use crate::config::Backpressure;
use crate::protocol::FrameBuf;

/// One frame in flight from a collector to the consumer.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The encoded frame (header, payload, CRC), ready to write to subscribers.
    pub frame: FrameBuf,
    /// Monotonic ns when the venue message was read (`t_recv`); 0 for frames not caused by a
    /// venue message (status about the connection).
    pub t_recv_ns: u64,
}

/// Why a push did not enqueue the frame. The frame is handed back, as crossbeam's
/// `TrySendError` does; returning it by value (144 bytes) costs less than boxing it, which is why
/// the `result_large_err` lint is allowed on the push methods.
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

/// The collector's end.
#[derive(Debug)]
pub struct Producer {
    tx: Sender<Envelope>,
    policy: Backpressure,
    block_timeout: Duration,
}

/// The consumer's end.
#[derive(Debug)]
pub struct QueueReceiver {
    rx: Receiver<Envelope>,
}

/// A bounded queue of `capacity_frames` frames with the given full-queue policy.
pub fn bounded(
    capacity_frames: usize,
    policy: Backpressure,
    block_timeout: Duration,
) -> (Producer, QueueReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(capacity_frames.max(1));
    (
        Producer {
            tx,
            policy,
            block_timeout,
        },
        QueueReceiver { rx },
    )
}

impl Producer {
    /// Enqueues `env`, applying the policy when the queue is full.
    #[inline]
    #[allow(clippy::result_large_err)]
    pub fn push(&self, env: Envelope) -> Result<(), PushError> {
        match self.tx.try_send(env) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(e)) => Err(PushError::Disconnected(e)),
            Err(TrySendError::Full(e)) => match self.policy {
                Backpressure::DropNewest => Err(PushError::Dropped(e)),
                Backpressure::Block => match self.tx.send_timeout(e, self.block_timeout) {
                    Ok(()) => Ok(()),
                    Err(SendTimeoutError::Timeout(e)) => Err(PushError::Dropped(e)),
                    Err(SendTimeoutError::Disconnected(e)) => Err(PushError::Disconnected(e)),
                },
            },
        }
    }

    /// Enqueues `env` only if there is room now, whatever the policy.
    #[inline]
    #[allow(clippy::result_large_err)]
    pub fn try_push(&self, env: Envelope) -> Result<(), PushError> {
        self.tx.try_send(env).map_err(|e| match e {
            TrySendError::Full(e) => PushError::Dropped(e),
            TrySendError::Disconnected(e) => PushError::Disconnected(e),
        })
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

impl QueueReceiver {
    /// Takes the oldest frame without blocking.
    #[inline]
    pub fn try_pop(&self) -> Result<Envelope, PopError> {
        self.rx.try_recv().map_err(|e| match e {
            TryRecvError::Empty => PopError::Empty,
            TryRecvError::Disconnected => PopError::Disconnected,
        })
    }

    /// Takes the oldest frame, waiting up to `timeout`.
    pub fn pop_timeout(&self, timeout: Duration) -> Result<Envelope, PopError> {
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => PopError::Empty,
            RecvTimeoutError::Disconnected => PopError::Disconnected,
        })
    }

    /// Frames queued now (any thread holding a [`QueueMonitor`] sees the same).
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Capacity in frames.
    pub fn capacity(&self) -> usize {
        self.rx.capacity().unwrap_or(0)
    }

    /// The underlying channel, for blocking on several queues at once (`Select`).
    pub fn channel(&self) -> &Receiver<Envelope> {
        &self.rx
    }

    /// A read-only view of the queue's depth for monitoring threads.
    pub fn monitor(&self) -> QueueMonitor {
        QueueMonitor {
            rx: self.rx.clone(),
        }
    }
}

/// Depth and capacity of a queue, readable from any thread; never takes a frame.
#[derive(Debug, Clone)]
pub struct QueueMonitor {
    rx: Receiver<Envelope>,
}

impl QueueMonitor {
    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }
    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
    /// Capacity in frames.
    pub fn capacity(&self) -> usize {
        self.rx.capacity().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(i: u8) -> Envelope {
        Envelope {
            frame: FrameBuf::from_slice(&[i]),
            t_recv_ns: u64::from(i),
        }
    }

    #[test]
    fn drop_newest_counts_exactly() {
        let (p, r) = bounded(4, Backpressure::DropNewest, Duration::ZERO);
        let mut dropped = 0;
        for i in 0..10 {
            if let Err(PushError::Dropped(e)) = p.push(env(i)) {
                assert_eq!(e.frame[0], i, "the refused frame is handed back");
                dropped += 1;
            }
        }
        let mut got = Vec::new();
        while let Ok(e) = r.try_pop() {
            got.push(e.frame[0]);
        }
        assert_eq!(got, [0, 1, 2, 3], "oldest kept, in order");
        assert_eq!(got.len() + dropped, 10);
    }

    #[test]
    fn block_waits_then_drops() {
        let (p, r) = bounded(1, Backpressure::Block, Duration::from_millis(5));
        p.push(env(1)).unwrap();
        assert!(matches!(p.push(env(2)), Err(PushError::Dropped(_))));
        assert_eq!(r.try_pop().unwrap().frame[0], 1);
        p.push(env(3)).unwrap();
        drop(p);
        assert_eq!(r.try_pop().unwrap().frame[0], 3);
        assert_eq!(r.try_pop().unwrap_err(), PopError::Disconnected);
    }

    #[test]
    fn block_succeeds_when_the_consumer_makes_room() {
        let (p, r) = bounded(1, Backpressure::Block, Duration::from_secs(10));
        p.push(env(1)).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let first = r.pop_timeout(Duration::from_secs(5)).map(|e| e.frame[0]);
            // Keep the receiver alive until the blocked push has completed.
            let _ = done_rx.recv();
            (first, r.try_pop().map(|e| e.frame[0]))
        });
        p.push(env(2)).unwrap();
        done_tx.send(()).unwrap();
        assert_eq!(t.join().unwrap(), (Ok(1), Ok(2)));
    }
}
