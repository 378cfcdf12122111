//! The collector's end of a queue: [`Producer`] applies the feed's full-queue policy
//! ([`Backpressure`]), counts every outcome, tracks the depth high-water mark and the saturation
//! state (logging each change, never per message) and wakes the consumer after each push.
//!
//! Runs on the collector thread. Blocks only under `block`/`conflate`, for at most the block
//! timeout: a channel waits in crossbeam's `send_timeout`, a ring spins, yields, then sleeps
//! 50 µs at a time until the deadline.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};

use super::{
    Backpressure, Envelope, PushError, Pushed, QueueCounters, QueueSpec, Ring, Saturation, Waker,
};

/// The sending half of one of the two transports; the same transport as its receiver's.
pub(super) enum TxInner {
    /// The only sender: dropping it disconnects the channel (crossbeam's own bookkeeping).
    Channel(Sender<Envelope>),
    /// Shared with the receiver and its monitors; dropping the producer sets
    /// [`Ring::closed`].
    Ring(Arc<Ring>),
}

/// The collector's end.
pub struct Producer {
    /// The sending half; it is the queue's only producer (one collector per feed).
    inner: TxInner,
    /// Fixed at construction. `DropOldest` comes only with a ring (config validation); on a
    /// channel it behaves as `DropNewest`.
    policy: Backpressure,
    /// Longest a `Block`/`Conflate` push waits for room; fixed.
    block_timeout: Duration,
    /// Capacity in frames: ≥ 1, the transport's own bound and the receiver's `capacity`;
    /// never changes (nothing here grows).
    capacity: usize,
    /// Shared with the receiver and monitors; this producer is the only writer of
    /// `counters.producer` and of the saturation state.
    counters: Arc<QueueCounters>,
    /// The consumer's waker, shared with every producer of that consumer and the acceptor;
    /// woken after every queued frame, before a blocked push waits, and when this producer is
    /// dropped.
    waker: Arc<Waker>,
    /// Saturation as last computed from the depth after a push; starts `Healthy` and always
    /// equals the state published in `counters` (both change only in `set_state`).
    state: Saturation,
    /// The feed name ([`QueueSpec::name`]), for the state-change log line.
    name: String,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// The end built by [`bounded`](super::bounded); `capacity` is the transport's bound.
    pub(super) fn new(
        inner: TxInner,
        spec: &QueueSpec,
        capacity: usize,
        counters: Arc<QueueCounters>,
        waker: Arc<Waker>,
    ) -> Self {
        Producer {
            inner,
            policy: spec.policy,
            block_timeout: spec.block_timeout,
            capacity,
            counters,
            waker,
            state: Saturation::Healthy,
            name: spec.name.clone(),
        }
    }

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
        self.counters.store_saturation(next);
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
