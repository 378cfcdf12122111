//! CSV persistence: the single writer thread (`writer`) and the handle the consumer feeds it by.
//!
//! The consumer hands [`WriterRecord`]s (trades, quotes, closed bars; for derivatives marks,
//! liquidations and open interest) over a bounded crossbeam
//! channel with [`WriterHandle::try_send`], which never blocks: when the channel is full the
//! record is handed back and counted ([`ProducerCounters::full`]) so the consumer can report it.
//! Records name their instrument by its [`InstrumentId`]; the venue and symbol are registered once
//! per instrument with [`WriterHandle::register`] (a short lock on a table the writer reads only
//! when it meets an id it has not cached). So a record is `Copy`, fixed-size, allocation-free
//! and touches no reference count shared between the threads; an `Arc<str>` per record would
//! bounce a cache line between consumer and writer on every record.
//!
//! Layout: `data_dir/<venue>/<symbol>/<YYYY-MM-DD>/{trades.csv, quotes.csv, bars_<interval>.csv,
//! mark.csv, liquidations.csv, open_interest.csv}` with a header row, exact decimals ([`Decimal`](crate::market::fixed::Decimal): shortest exact
//! form, empty for ABSENT), ns timestamps next to their RFC 3339 form. The UTC day is the
//! **receive** time's for trades, quotes, marks, liquidations and open interest (every record has one, and it is monotone per feed
//! up to wall-clock steps, so a file is not reopened over and over by a venue's clock skew) and
//! the bar's **start** for bars (a 1 d bar lands in the file of the day it describes). Venue and
//! symbol go through [`path_component`]; two names that map to the same directory are detected
//! and the later one gets a `~<id hex>` suffix (logged, counted in
//! [`WriterCounters::path_collisions`]).
//!
//! Buffering: each open file has a buffer that goes to the OS once it holds `flush_bytes`, and
//! every file's buffer goes at least every `flush_interval`; files are fsync'ed when closed
//! (rotation to a new day, LRU eviction beyond `max_open_files`, shutdown) if `fsync_on_close`.
//! So a crash loses at most `flush_interval` of rows, and a power loss what was not fsync'ed.
//!
//! Errors never stop the thread and never panic it: a failed open or write is counted
//! ([`WriterCounters::io_errors`]), logged at most once per `error_log_interval` (with the number
//! of suppressed lines), and the rows it concerns are dropped and counted
//! ([`WriterCounters::dropped_io`]); the file is retried after a backoff (`retry_initial`,
//! doubling up to `retry_max`, reset by a successful write), so writing resumes by itself once
//! the directory is writable or the disk has room again. Every file opened for appending first
//! has a torn last line (a crash or a failed write mid-row) cut back to its last `\n`
//! ([`repair_torn_tail`]; counted in [`WriterCounters::torn_repaired`]). Accounting is exact:
//! after [`WriterHandle::close`], `sent = received = rows_written + dropped_io + dropped_unknown`.
//!
//! Threads: `try_send` and `register` run on the consumer thread (the producer counters are
//! single-writer, so `try_send` takes `&mut self`). The `writer` thread blocks on the channel
//! (`recv_timeout` until the next flush) and on file I/O; nothing else waits for it. Dropping or
//! [`close`](WriterHandle::close)-ing the handle disconnects the channel: the thread writes every
//! record still queued, flushes and fsyncs every file, and exits; `close` joins it.
//!
//! - `mod.rs`: the records, errors and counters shared by the handle and the thread.
//! - `handle`: [`WriterHandle`], the consumer's end: spawn, `try_send`, `close`.
//! - `names`: the registered names of instruments, their check, and their directories.
//! - `thread`: the `writer` thread: buffers, flushes, day rotation, LRU of open files.
//! - `retry`: when a file that failed is tried again (the per-file backoff table).
//! - `files`: which file a record goes to, opening it for appending, torn-tail repair.
//! - `rows`: the CSV schema (headers) and the formatting of one row; [`bars_csv`].
//! - `testkit` (tests only): records, configurations and checks the unit tests share.

use std::io;

use crossbeam_utils::CachePadded;

use crate::base::stats::{Counter, Gauge};
use crate::market::bars::Bar;
use crate::market::event::{Liquidation, Mark, OpenInterest, Quote, Trade};
use crate::market::instrument::InstrumentId;

mod files;
mod handle;
mod names;
mod retry;
mod rows;
mod thread;

pub use crate::persist::paths::{path_component, MAX_COMPONENT_BYTES};
pub use files::repair_torn_tail;
pub use handle::WriterHandle;
pub use rows::bars_csv;

/// Why the writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// A configuration value out of range.
    #[error("invalid writer configuration: {0}")]
    InvalidConfig(&'static str),
    /// The OS refused the thread (its text in the message, not a `source()`).
    #[error("cannot spawn the writer thread: {0}")]
    Spawn(io::Error),
}

/// Why an instrument could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Empty, longer than 255 bytes, or holding a control character (a newline would break a
    /// CSV row and the torn-line repair).
    #[error("{what} {name:?} cannot be written: {why}")]
    InvalidName {
        /// `"venue"` or `"symbol"`.
        what: &'static str,
        /// The refused name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The id is already registered under another name.
    #[error("instrument id {id} is registered as {old}, not {new}")]
    Conflict {
        /// The id.
        id: InstrumentId,
        /// `venue:symbol` it has.
        old: String,
        /// `venue:symbol` that was refused.
        new: String,
    },
}

/// One row to persist. `Copy` and fixed-size: the consumer builds it from the decoded frame
/// without allocating. The instrument must have been [registered](WriterHandle::register).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterRecord {
    /// A trade → `trades.csv` of the receive time's UTC day.
    Trade {
        /// Instrument (registered).
        instrument_id: InstrumentId,
        /// Receive time, ns since epoch (the frame header's `recv_ts_ns`).
        recv_ts_ns: u64,
        /// The trade, exchange time included.
        trade: Trade,
    },
    /// A best bid/offer → `quotes.csv` of the receive time's UTC day.
    Quote {
        /// Instrument (registered).
        instrument_id: InstrumentId,
        /// Receive time, ns since epoch.
        recv_ts_ns: u64,
        /// The quote; absent sides are written as empty fields.
        quote: Quote,
    },
    /// A closed bar → `bars_<interval>.csv` of the bar start's UTC day.
    Bar {
        /// Instrument (registered).
        instrument_id: InstrumentId,
        /// The bar.
        bar: Bar,
    },
    /// A mark price / funding update → `mark.csv` of the receive time's UTC day.
    Mark {
        /// Instrument (registered).
        instrument_id: InstrumentId,
        /// Receive time, ns since epoch.
        recv_ts_ns: u64,
        /// The mark; absent values are written as empty fields.
        mark: Mark,
    },
    /// A liquidation order → `liquidations.csv` of the receive time's UTC day.
    Liquidation {
        /// Instrument (registered).
        instrument_id: InstrumentId,
        /// Receive time, ns since epoch.
        recv_ts_ns: u64,
        /// The liquidation.
        liquidation: Liquidation,
    },
    /// Open interest → `open_interest.csv` of the receive time's UTC day.
    OpenInterest {
        /// Instrument (registered).
        instrument_id: InstrumentId,
        /// Receive time, ns since epoch.
        recv_ts_ns: u64,
        /// The open interest.
        open_interest: OpenInterest,
    },
}

/// Why [`WriterHandle::try_send`] did not take a record; the record is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError {
    /// The channel is full (the writer is behind): the record was not queued.
    #[error("writer channel full")]
    Full(WriterRecord),
    /// The writer thread is gone (it cannot be, short of a bug, before `close`).
    #[error("writer thread disconnected")]
    Disconnected(WriterRecord),
}

/// The writer thread panicked (a bug: it is written not to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the writer thread panicked")]
pub struct WriterPanicked;

/// Counters written only by the thread holding the [`WriterHandle`] (the consumer).
#[derive(Debug, Default)]
pub struct ProducerCounters {
    /// Records queued.
    pub sent: Counter,
    /// Records refused because the channel was full.
    pub full: Counter,
    /// Records refused because the writer thread was gone.
    pub disconnected: Counter,
}

/// Counters written only by the `writer` thread.
#[derive(Debug, Default)]
pub struct WriterCounters {
    /// Records taken from the channel; after shutdown equals `producer.sent`.
    pub received: Counter,
    /// Rows handed to the OS (header rows not included).
    pub rows_written: Counter,
    /// Bytes handed to the OS (headers included).
    pub bytes_written: Counter,
    /// Rows lost to I/O errors: refused while their file waited for a retry, or buffered when
    /// a write failed.
    pub dropped_io: Counter,
    /// Records of an instrument id that was never registered.
    pub dropped_unknown: Counter,
    /// Failed file operations (create directory, open, repair, write, fsync).
    pub io_errors: Counter,
    /// Buffer write-outs that succeeded.
    pub flushes: Counter,
    /// Files opened for appending.
    pub files_opened: Counter,
    /// Files closed (rotation, eviction, shutdown, after an error).
    pub files_closed: Counter,
    /// Of `files_closed`: least recently used files closed to stay within `max_open_files`.
    pub files_evicted: Counter,
    /// Files whose torn last line was cut off before appending.
    pub torn_repaired: Counter,
    /// Bytes cut off by those repairs.
    pub torn_bytes_removed: Counter,
    /// Instruments whose directory name collided with another's and got a `~<id>` suffix.
    pub path_collisions: Counter,
    /// Files open now; always ≤ `max_open_files`.
    pub open_files: Gauge,
}

/// Everything counted about the writer; each writer's counters on their own cache line.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Written by the consumer (the handle's owner).
    pub producer: CachePadded<ProducerCounters>,
    /// Written by the `writer` thread.
    pub writer: CachePadded<WriterCounters>,
}

#[cfg(test)]
mod testkit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_stays_small() {
        assert!(
            std::mem::size_of::<WriterRecord>() <= 160,
            "{}",
            std::mem::size_of::<WriterRecord>()
        );
    }
}
