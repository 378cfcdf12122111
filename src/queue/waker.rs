//! The [`Waker`]: how producers (and the acceptor) wake the consumer when it has parked.
//!
//! The consumer raises a flag, re-checks its queues and parks; a producer that sees the flag
//! after a push clears it and unparks the consumer. The store→fence→load pairs on both sides (a
//! Dekker handshake, SeqCst fences) make a lost wake-up impossible, and the park timeout bounds
//! it anyway. A producer pays one relaxed load per push while the consumer is awake.

use std::sync::atomic::fence;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::{self, Thread};
use std::time::Duration;

use crossbeam_utils::CachePadded;

/// Wakes the consumer when it parks. One per consumer, shared by every producer.
#[derive(Debug, Default)]
pub struct Waker {
    /// The consumer's thread: set once by [`register_current`](Self::register_current) (later
    /// calls are ignored). Until then [`wake`](Self::wake) unparks nobody and the park timeout
    /// alone ends a park.
    thread: OnceLock<Thread>,
    /// Raised by the consumer just before its last re-check of the queues; lowered by the
    /// consumer when the park returns, or earlier by the one producer whose swap finds it raised
    /// (that producer, and only it, unparks). Producers never raise it.
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
