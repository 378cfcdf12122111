//! The consumer's end of a queue: [`QueueReceiver`] takes frames without ever blocking, and
//! hands out [`QueueMonitor`]s, read-only views of depth and counters for other threads.
//!
//! The receiver runs on the consumer thread; a monitor on any thread (metrics, status line).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};

use super::{Envelope, PopError, QueueCounters, Ring};

/// The receiving half of one of the two transports; the same transport as its producer's.
pub(super) enum RxInner {
    /// Held by the receiver and cloned into each monitor: a channel stays connected, for the
    /// producer, until the receiver and every monitor are gone.
    Channel(Receiver<Envelope>),
    /// Shared with the producer; [`Ring::closed`] tells that the producer is gone.
    Ring(Arc<Ring>),
}

impl RxInner {
    /// Frames queued now.
    #[inline]
    fn len(&self) -> usize {
        match self {
            RxInner::Channel(rx) => rx.len(),
            RxInner::Ring(r) => r.q.len(),
        }
    }
}

/// The consumer's end.
pub struct QueueReceiver {
    /// The receiving half; only this receiver takes frames from it (monitors only read the
    /// depth). [`PopError::Disconnected`] comes only once the producer is gone and the queue is
    /// empty, so no queued frame is ever lost at shutdown.
    inner: RxInner,
    /// Capacity in frames: ≥ 1, equal to the producer's; never changes.
    capacity: usize,
    /// Shared with the producer and monitors; this receiver is the only writer of
    /// `counters.consumer` (one `received` per frame taken).
    counters: Arc<QueueCounters>,
}

impl std::fmt::Debug for QueueReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueReceiver")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl QueueReceiver {
    /// The end built by [`bounded`](super::bounded); `capacity` is the transport's bound.
    pub(super) fn new(inner: RxInner, capacity: usize, counters: Arc<QueueCounters>) -> Self {
        QueueReceiver {
            inner,
            capacity,
            counters,
        }
    }

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
        self.inner.len()
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
    /// A clone of the receiver's half; only its length is ever read.
    inner: RxInner,
    /// The receiver's capacity; never changes.
    capacity: usize,
    /// The queue's counters; a monitor never writes them.
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
        self.inner.len()
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
