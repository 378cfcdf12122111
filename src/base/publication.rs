//! A value one thread publishes and other threads read, with no lock a writer can find busy.
//!
//! The consumer publishes what other threads read (latency histograms, the query snapshot)
//! through a [`Publication`]. Readers [`load`](Publication::load) an `Arc` of the current value:
//! one atomic operation in `arc-swap` (hazard-pointer-like debts, lock-free), never waiting and
//! never delaying the writer, however long they keep the `Arc`. The writer
//! [`write`](Publication::write)s: it gets a private copy of the current value, changes it, and
//! the guard's drop swaps it in atomically. A publication therefore always happens — a reader
//! cannot make the writer skip one — at the price of one clone of the value per publication,
//! which is why published values keep their large parts behind `Arc`s they share between
//! versions.
//!
//! Writers are serialized by a mutex that only writers take (production has one writer per
//! publication, the consumer), so two writers never lose each other's change; readers never
//! touch it. Algorithm: read-copy-update over `arc_swap::ArcSwap`
//! (<https://docs.rs/arc-swap>).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, MutexGuard};

/// A published value: readers load it without a lock; writers replace it whole.
#[derive(Debug)]
pub struct Publication<T> {
    /// The current version; replaced, never mutated in place.
    current: ArcSwap<T>,
    /// Serializes writers only; readers never take it.
    writers: Mutex<()>,
    /// Publications made since [`new`](Self::new); increases by one with each (never wraps in
    /// practice).
    version: AtomicU64,
}

impl<T: Clone> Publication<T> {
    /// Publishes `value` as version 0.
    pub fn new(value: T) -> Self {
        Publication {
            current: ArcSwap::from_pointee(value),
            writers: Mutex::new(()),
            version: AtomicU64::new(0),
        }
    }

    /// The current value. Never blocks; the writer is never delayed by what the caller keeps.
    pub fn load(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// How many publications were made so far (0: only the initial value).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// A private copy of the current value; published when the guard is dropped. Waits only for
    /// another writer, never for a reader.
    pub fn write(&self) -> WriteGuard<'_, T> {
        let lock = self.writers.lock();
        let value = T::clone(&self.current.load());
        WriteGuard {
            owner: self,
            _lock: lock,
            value: Some(value),
        }
    }
}

/// The writer's copy; [`Drop`] publishes it.
#[derive(Debug)]
pub struct WriteGuard<'a, T: Clone> {
    owner: &'a Publication<T>,
    /// Held until the value is published, so writers never interleave.
    _lock: MutexGuard<'a, ()>,
    /// `Some` until dropped.
    value: Option<T>,
}

impl<T: Clone> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Always `Some` before drop.
        match &self.value {
            Some(v) => v,
            None => unreachable!("a WriteGuard's value is taken only by its drop"),
        }
    }
}

impl<T: Clone> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.value {
            Some(v) => v,
            None => unreachable!("a WriteGuard's value is taken only by its drop"),
        }
    }
}

impl<T: Clone> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            self.owner.current.store(Arc::new(v));
            self.owner.version.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_holding_a_version_never_stops_a_publication() {
        let p = Publication::new(vec![1u64]);
        let held = p.load();
        for i in 2..=100 {
            p.write().push(i);
        }
        assert_eq!(*held, vec![1], "the reader's version is unchanged");
        assert_eq!(p.load().len(), 100, "every publication happened");
        assert_eq!(p.version(), 99);
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let p = Arc::new(Publication::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        *p.write() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*p.load(), 4000);
        assert_eq!(p.version(), 4000);
    }
}
