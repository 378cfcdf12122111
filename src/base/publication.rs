//! A value one thread publishes and other threads read, with no lock a writer can find busy.
//!
//! The consumer publishes what other threads read (latency histograms, the query snapshot)
//! through a [`Publication`]. Readers [`load`](Publication::load) an `Arc` of the current value:
//! one atomic operation in `arc-swap` (hazard-pointer-like debts, lock-free), never waiting and
//! never delaying the writer, however long they keep the `Arc`. The writer
//! [`write`](Publication::write)s: it gets a private copy of the current value, changes it, and
//! the guard's drop swaps it in atomically. A publication therefore always happens — a reader
//! cannot make the writer skip one — at the price of one copy of the value per publication.
//! The copy reuses the allocation of the version the last publication replaced when no reader
//! still holds it (then it is `T::clone_from`, which a value with large buffers implements as a
//! copy into them), and is a fresh `T::clone` otherwise; values with large parts that rarely
//! change keep them behind `Arc`s shared between versions.
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
    /// Serializes writers only; readers never take it. Holds the version the last publication
    /// replaced, for the next [`write`](Self::write) to reuse when no reader holds it any more.
    writers: Mutex<Option<Arc<T>>>,
    /// Publications made since [`new`](Self::new); increases by one with each (never wraps in
    /// practice).
    version: AtomicU64,
}

impl<T: Clone> Publication<T> {
    /// Publishes `value` as version 0.
    pub fn new(value: T) -> Self {
        Publication {
            current: ArcSwap::from_pointee(value),
            writers: Mutex::new(None),
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
        let mut lock = self.writers.lock();
        let current = self.current.load_full();
        let value = match lock.take() {
            Some(mut spare) => match Arc::get_mut(&mut spare) {
                Some(v) => {
                    v.clone_from(&current);
                    spare
                }
                None => Arc::new(T::clone(&current)),
            },
            None => Arc::new(T::clone(&current)),
        };
        WriteGuard {
            owner: self,
            lock,
            value: Some(value),
        }
    }
}

/// The writer's copy; [`Drop`] publishes it.
#[derive(Debug)]
pub struct WriteGuard<'a, T: Clone> {
    owner: &'a Publication<T>,
    /// Held until the value is published, so writers never interleave; receives the replaced
    /// version.
    lock: MutexGuard<'a, Option<Arc<T>>>,
    /// `Some` until dropped; the only reference to its value (never shared before drop).
    value: Option<Arc<T>>,
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
            // Unique (see the field), so this never clones.
            Some(v) => Arc::make_mut(v),
            None => unreachable!("a WriteGuard's value is taken only by its drop"),
        }
    }
}

impl<T: Clone> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            let replaced = self.owner.current.swap(v);
            self.owner.version.fetch_add(1, Ordering::AcqRel);
            *self.lock = Some(replaced);
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
    fn a_version_no_reader_holds_is_reused_and_one_held_is_not_touched() {
        let p = Publication::new(vec![0u64; 1000]);
        let v0 = Arc::as_ptr(&p.load()) as usize;
        p.write()[0] = 1;
        p.write()[0] = 2; // reuses the allocation of version 0 (nobody holds it)
        assert_eq!(Arc::as_ptr(&p.load()) as usize, v0, "version 0 was reused");
        let held = p.load(); // version 2
        p.write()[0] = 3;
        p.write()[0] = 4; // version 2 is held: copied afresh, the held one unchanged
        p.write()[0] = 5;
        assert_eq!(held[0], 2);
        assert_eq!(p.load()[0], 5);
        assert_eq!(p.version(), 5);
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
