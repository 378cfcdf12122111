//! When the `writer` thread tries a failed file again. A file here is an instrument's kind of
//! row, whatever the day: after a failed open or write it is not opened again before its wait is
//! over. The wait is [`Backoff::after`]: `retry_initial` after the first failure, doubling on
//! each further one up to `retry_max`; a good write forgets the file's failures.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::files::{FileKey, FileKind};
use crate::base::backoff::Backoff;
use crate::market::instrument::InstrumentId;

/// Retry state of a file that failed.
#[derive(Debug, Clone, Copy)]
struct Retry {
    /// No new open is tried before this.
    retry_at: Instant,
    /// The wait that produced `retry_at`; in `[retry_initial, retry_max]`.
    delay: Duration,
}

/// The files that failed and wait for a retry, by (instrument, kind).
#[derive(Debug)]
pub(super) struct Retries {
    backoff: Backoff,
    /// Removed on a good write.
    waiting: FxHashMap<(InstrumentId, FileKind), Retry>,
}

impl Retries {
    /// No file waiting; waits from `initial` up to `max`.
    pub(super) fn new(initial: Duration, max: Duration) -> Retries {
        Retries {
            backoff: Backoff { initial, max },
            waiting: FxHashMap::default(),
        }
    }

    /// True while `key`'s file waits for its retry at `now`.
    pub(super) fn waiting(&self, key: &FileKey, now: Instant) -> bool {
        self.waiting
            .get(&(key.id, key.kind))
            .is_some_and(|r| now < r.retry_at)
    }

    /// A failure of `key`'s file at `now`: sets or doubles its wait.
    pub(super) fn fail(&mut self, key: &FileKey, now: Instant) {
        let file = (key.id, key.kind);
        let delay = self.backoff.after(self.waiting.get(&file).map(|r| r.delay));
        self.waiting.insert(
            file,
            Retry {
                retry_at: now + delay,
                delay,
            },
        );
    }

    /// A good write of `key`'s file: its failures are forgotten.
    pub(super) fn succeeded(&mut self, key: &FileKey) {
        self.waiting.remove(&(key.id, key.kind));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_file_waits_initial_then_double_up_to_max_until_a_good_write() {
        let ms = Duration::from_millis;
        let mut r = Retries::new(ms(20), ms(50));
        let key = FileKey {
            id: 7,
            kind: FileKind::Trades,
            day: 19_944,
        };
        let next_day = FileKey { day: 19_945, ..key };
        let quotes = FileKey {
            kind: FileKind::Quotes,
            ..key
        };
        let t0 = Instant::now();
        assert!(!r.waiting(&key, t0));
        let mut now = t0;
        for want in [20, 40, 50, 50] {
            r.fail(&key, now);
            assert!(r.waiting(&next_day, now + ms(want - 1)), "{want}");
            assert!(!r.waiting(&key, now + ms(want)), "{want}");
            assert!(!r.waiting(&quotes, now));
            now += ms(want);
        }
        r.succeeded(&key);
        r.fail(&key, now);
        assert!(r.waiting(&key, now + ms(19)));
        assert!(!r.waiting(&key, now + ms(20)));
    }
}
