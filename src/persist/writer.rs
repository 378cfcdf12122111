//! CSV persistence: the single writer thread (`writer`) and the handle the consumer feeds it by.
//!
//! The consumer hands [`WriterRecord`]s (trades, quotes, closed bars) over a bounded crossbeam
//! channel with [`WriterHandle::try_send`], which never blocks: when the channel is full the
//! record is handed back and counted ([`ProducerCounters::full`]) so the consumer can report it.
//! Records name their instrument by its [`InstrumentId`]; the venue and symbol are registered once
//! per instrument with [`WriterHandle::register`] (a short lock on a table the writer reads only
//! when it meets an id it has not cached). So a record is `Copy`, fixed-size, allocation-free
//! and touches no reference count shared between the threads; an `Arc<str>` per record would
//! bounce a cache line between consumer and writer on every record.
//!
//! Layout: `data_dir/<venue>/<symbol>/<YYYY-MM-DD>/{trades.csv, quotes.csv, bars_<interval>.csv}`
//! with a header row, exact decimals ([`Decimal`]: shortest exact form, empty for ABSENT), ns
//! timestamps next to their RFC 3339 form. The UTC day is the **receive** time's for trades and
//! quotes (every record has one, and it is monotone per feed up to wall-clock steps, so a file
//! is not reopened over and over by a venue's clock skew) and the bar's **start** for bars (a
//! 1 d bar lands in the file of the day it describes). Venue and symbol go through
//! [`path_component`]; two names that map to the same directory are detected and the later one
//! gets a `~<id hex>` suffix (logged, counted in [`WriterCounters::path_collisions`]).
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

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::base::stats::{Counter, Gauge};
use crate::base::timefmt::{format_rfc3339_ns, utc_date};
use crate::market::bars::{Bar, Decimal128, IntervalLabel, DAY_NS};
use crate::market::event::{Quote, Trade};
use crate::market::fixed::Decimal;
use crate::market::instrument::InstrumentId;
use crate::persist::config::WriterConfig;

/// Longest path component [`path_component`] produces, bytes (file systems allow 255).
pub const MAX_COMPONENT_BYTES: usize = 128;

/// Why the writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// A configuration value out of range.
    #[error("invalid writer configuration: {0}")]
    InvalidConfig(&'static str),
    /// The OS refused the thread.
    #[error("cannot spawn the writer thread: {0}")]
    Spawn(#[source] io::Error),
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

/// Venue and symbol of a registered id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    venue: Box<str>,
    symbol: Box<str>,
}

/// Registered names, written by the consumer once per instrument, read by the writer on a miss.
type Names = Arc<Mutex<FxHashMap<InstrumentId, Name>>>;

/// The writer thread panicked (a bug: it is written not to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the writer thread panicked")]
pub struct WriterPanicked;

/// The consumer's end: queue records, register instruments, stop and join the thread.
/// Not `Clone`: one owner, so the producer counters keep a single writer.
#[derive(Debug)]
pub struct WriterHandle {
    /// `Some` until `close`/drop; dropping it tells the thread to drain and exit.
    tx: Option<Sender<WriterRecord>>,
    names: Names,
    stats: Arc<WriterStats>,
    /// `Some` until joined.
    thread: Option<JoinHandle<()>>,
}

impl WriterHandle {
    /// Starts the `writer` thread.
    pub fn spawn(cfg: WriterConfig) -> Result<WriterHandle, WriterError> {
        Self::spawn_gated(cfg, None)
    }

    /// [`spawn`](Self::spawn), with a thread that first waits until `gate` yields or closes
    /// (tests stall the writer with it).
    fn spawn_gated(
        cfg: WriterConfig,
        gate: Option<Receiver<()>>,
    ) -> Result<WriterHandle, WriterError> {
        cfg.validate()?;
        let (tx, rx) = crossbeam_channel::bounded(cfg.capacity_records);
        let names: Names = Arc::default();
        let stats = Arc::new(WriterStats::default());
        let state = WriterThread::new(cfg, rx, Arc::clone(&names), Arc::clone(&stats));
        let thread = thread::Builder::new()
            .name("writer".to_owned())
            .spawn(move || {
                if let Some(g) = gate {
                    let _ = g.recv();
                }
                state.run();
            })
            .map_err(WriterError::Spawn)?;
        Ok(WriterHandle {
            tx: Some(tx),
            names,
            stats,
            thread: Some(thread),
        })
    }

    /// Tells the writer the name of `id`. Call once per instrument before its first record
    /// (e.g. on its InstrumentDef); calling again with the same name is a no-op. Takes a lock
    /// the writer holds only for a hash lookup, and only the first time it meets an id.
    pub fn register(
        &self,
        id: InstrumentId,
        venue: &str,
        symbol: &str,
    ) -> Result<(), RegisterError> {
        check_name("venue", venue)?;
        check_name("symbol", symbol)?;
        let mut names = self.names.lock();
        match names.get(&id) {
            Some(n) if &*n.venue == venue && &*n.symbol == symbol => Ok(()),
            Some(n) => Err(RegisterError::Conflict {
                id,
                old: format!("{}:{}", n.venue, n.symbol),
                new: format!("{venue}:{symbol}"),
            }),
            None => {
                names.insert(
                    id,
                    Name {
                        venue: venue.into(),
                        symbol: symbol.into(),
                    },
                );
                Ok(())
            }
        }
    }

    /// Queues `rec` without ever blocking; on failure the record comes back and is counted.
    #[inline]
    pub fn try_send(&mut self, rec: WriterRecord) -> Result<(), TrySendError> {
        let p = &self.stats.producer;
        let Some(tx) = &self.tx else {
            p.disconnected.inc();
            return Err(TrySendError::Disconnected(rec));
        };
        match tx.try_send(rec) {
            Ok(()) => {
                p.sent.inc();
                Ok(())
            }
            Err(crossbeam_channel::TrySendError::Full(r)) => {
                p.full.inc();
                Err(TrySendError::Full(r))
            }
            Err(crossbeam_channel::TrySendError::Disconnected(r)) => {
                p.disconnected.inc();
                Err(TrySendError::Disconnected(r))
            }
        }
    }

    /// Records queued now (a gauge for the status line).
    pub fn queued(&self) -> usize {
        self.tx.as_ref().map_or(0, Sender::len)
    }

    /// The counters (readable from any thread, also after `close`).
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Disconnects the channel and waits until the thread has written every queued record,
    /// flushed and fsync'ed its files, and exited.
    pub fn close(mut self) -> Result<(), WriterPanicked> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), WriterPanicked> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| WriterPanicked),
            None => Ok(()),
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        if self.shutdown().is_err() {
            tracing::error!("the writer thread panicked");
        }
    }
}

fn check_name(what: &'static str, name: &str) -> Result<(), RegisterError> {
    let why = if name.is_empty() {
        "empty"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else if name.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(RegisterError::InvalidName {
        what,
        name: name.to_owned(),
        why,
    })
}

/// A venue or symbol as one safe path component: `[A-Za-z0-9._-]` kept, `/` → `-` (so
/// `XBT/EUR` reads `XBT-EUR`), anything else → `_`, a leading `.` → `_` (no hidden files, no
/// `.`/`..`), cut to [`MAX_COMPONENT_BYTES`]. Not injective (`BTC/USD` and `BTC-USD` meet): the
/// writer detects two names on one directory and suffixes the later one with `~<id hex>`, a
/// character this mapping never emits.
pub fn path_component(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            '/' => '-',
            _ => '_',
        })
        .collect();
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    if out.is_empty() {
        out.push('_');
    }
    out.truncate(MAX_COMPONENT_BYTES); // all ASCII: any byte index is a char boundary
    out
}

/// Cuts a torn last line (bytes after the last `\n`; a whole file without one) off `file`,
/// returning how many bytes were removed. Reads backwards in 8 KiB chunks, so a healthy file
/// costs one small read.
pub fn repair_torn_tail(file: &File) -> io::Result<u64> {
    const CHUNK: u64 = 8192;
    let len = file.metadata()?.len();
    let mut buf = [0u8; CHUNK as usize];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)?;
            }
            return Ok(len - keep);
        }
        end = start;
    }
    if len > 0 {
        file.set_len(0)?;
    }
    Ok(len)
}

/// Which CSV of an instrument's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FileKind {
    Trades,
    Quotes,
    /// Bars of this interval, ns.
    Bars(u64),
}

const TRADE_HEADER: [&str; 10] = [
    "recv_ts_ns",
    "recv_time",
    "exchange_ts_ns",
    "exchange_time",
    "venue",
    "symbol",
    "price",
    "size",
    "side",
    "trade_id",
];
const QUOTE_HEADER: [&str; 10] = [
    "recv_ts_ns",
    "recv_time",
    "exchange_ts_ns",
    "exchange_time",
    "venue",
    "symbol",
    "bid_price",
    "bid_size",
    "ask_price",
    "ask_size",
];
const BAR_HEADER: [&str; 16] = [
    "start_ts_ns",
    "start_time",
    "end_ts_ns",
    "end_time",
    "venue",
    "symbol",
    "interval",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
    "first_trade_ns",
    "last_trade_ns",
];

impl FileKind {
    fn file_name(self) -> String {
        match self {
            FileKind::Trades => "trades.csv".to_owned(),
            FileKind::Quotes => "quotes.csv".to_owned(),
            FileKind::Bars(ns) => format!("bars_{}.csv", IntervalLabel(ns)),
        }
    }

    fn header(self) -> &'static [&'static str] {
        match self {
            FileKind::Trades => &TRADE_HEADER,
            FileKind::Quotes => &QUOTE_HEADER,
            FileKind::Bars(_) => &BAR_HEADER,
        }
    }
}

/// One CSV file: an instrument's kind of row on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    id: InstrumentId,
    kind: FileKind,
    /// UTC day, days since 1970-01-01.
    day: u64,
}

impl WriterRecord {
    fn key(&self) -> FileKey {
        let (id, kind, ts) = match *self {
            WriterRecord::Trade {
                instrument_id,
                recv_ts_ns,
                ..
            } => (instrument_id, FileKind::Trades, recv_ts_ns),
            WriterRecord::Quote {
                instrument_id,
                recv_ts_ns,
                ..
            } => (instrument_id, FileKind::Quotes, recv_ts_ns),
            WriterRecord::Bar { instrument_id, bar } => {
                (instrument_id, FileKind::Bars(bar.interval_ns), bar.start_ns)
            }
        };
        FileKey {
            id,
            kind,
            day: ts / DAY_NS,
        }
    }
}

/// Where an instrument's files go.
#[derive(Debug)]
struct Instrument {
    name: Name,
    /// `data_dir/<venue>/<symbol>` (possibly `~<id>`-suffixed); unique among instruments.
    dir: PathBuf,
}

/// An open CSV file and its unwritten rows.
#[derive(Debug)]
struct OpenFile {
    file: File,
    path: PathBuf,
    /// Bytes not yet written: complete rows only (each ends in `\n`).
    buf: Vec<u8>,
    /// Rows in `buf`, the header not counted.
    rows: u64,
    /// True while `buf` starts with the header row.
    header_in_buf: bool,
    /// Value of the LRU clock when last written to.
    last_used: u64,
}

/// Retry state of a file that failed (per instrument and kind, whatever the day).
#[derive(Debug, Clone, Copy)]
struct Backoff {
    /// No new open is tried before this.
    retry_at: Instant,
    /// The wait that produced `retry_at`; in `[retry_initial, retry_max]`.
    delay: Duration,
}

/// At most one log line per interval; the lines in between are counted.
#[derive(Debug)]
struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    /// Lines suppressed since the last one logged.
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since the last line)` when a line may be logged now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The `writer` thread's state.
struct WriterThread {
    cfg: WriterConfig,
    rx: Receiver<WriterRecord>,
    names: Names,
    stats: Arc<WriterStats>,
    /// Instruments met so far.
    instruments: FxHashMap<InstrumentId, Arc<Instrument>>,
    /// Instrument directory → the id that owns it (collision detection).
    dirs: FxHashMap<PathBuf, InstrumentId>,
    /// Open files; `len() ≤ cfg.max_open_files`.
    files: FxHashMap<FileKey, OpenFile>,
    /// Files that failed and wait for a retry, by (instrument, kind); removed on a good write.
    backoff: FxHashMap<(InstrumentId, FileKind), Backoff>,
    /// Formats one row at a time into its [`RowSink`], which is emptied after each row.
    csv: csv::Writer<RowSink>,
    /// Scratch for number formatting.
    tmp: String,
    /// LRU clock: +1 per row.
    tick: u64,
    /// Scratch list of keys (flush, rotation).
    keys: Vec<FileKey>,
    errlog: RateLimit,
    next_flush: Instant,
}

impl WriterThread {
    fn new(
        cfg: WriterConfig,
        rx: Receiver<WriterRecord>,
        names: Names,
        stats: Arc<WriterStats>,
    ) -> Self {
        WriterThread {
            errlog: RateLimit {
                interval: cfg.error_log_interval,
                last: None,
                suppressed: 0,
            },
            next_flush: Instant::now() + cfg.flush_interval,
            cfg,
            rx,
            names,
            stats,
            instruments: FxHashMap::default(),
            dirs: FxHashMap::default(),
            files: FxHashMap::default(),
            backoff: FxHashMap::default(),
            csv: new_csv(),
            tmp: String::with_capacity(64),
            tick: 0,
            keys: Vec::new(),
        }
    }

    fn run(mut self) {
        crate::base::affinity::pin_current_thread("writer", self.cfg.core);
        loop {
            let timeout = self.next_flush.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(timeout) {
                Ok(rec) => self.handle(&rec),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now >= self.next_flush {
                self.flush_all(now);
                self.next_flush = now + self.cfg.flush_interval;
            }
        }
        // The channel is empty and disconnected: everything sent has been handled.
        self.keys.clear();
        self.keys.extend(self.files.keys().copied());
        let keys = std::mem::take(&mut self.keys);
        for key in &keys {
            self.close_file(key, false);
        }
        let w = &self.stats.writer;
        tracing::info!(
            rows = w.rows_written.get(),
            dropped_io = w.dropped_io.get(),
            dropped_unknown = w.dropped_unknown.get(),
            io_errors = w.io_errors.get(),
            "writer stopped"
        );
    }

    fn log_error(&mut self, what: &str, path: &Path, err: &io::Error) {
        if let Some(suppressed) = self.errlog.allow(Instant::now()) {
            tracing::warn!(path = %path.display(), error = %err, suppressed, "writer: {what} failed; rows dropped, will retry");
        }
    }

    fn handle(&mut self, rec: &WriterRecord) {
        let w = &self.stats.writer;
        w.received.inc();
        let key = rec.key();
        let Some(inst) = self.instrument(key.id) else {
            self.stats.writer.dropped_unknown.inc();
            if let Some(suppressed) = self.errlog.allow(Instant::now()) {
                tracing::warn!(
                    id = key.id,
                    suppressed,
                    "writer: record of an unregistered instrument dropped"
                );
            }
            return;
        };
        if !self.files.contains_key(&key) && !self.open(&key, &inst) {
            self.stats.writer.dropped_io.inc();
            return;
        }
        if format_row(&mut self.csv, &mut self.tmp, &inst.name, rec).is_err() {
            // Formatting into a Vec cannot fail; should it, the row is lost like an I/O error.
            self.stats.writer.dropped_io.inc();
            self.csv = new_csv(); // forget the partial row
            return;
        }
        self.tick += 1;
        let Some(f) = self.files.get_mut(&key) else {
            return; // just opened above
        };
        take_row(&self.csv, &mut f.buf);
        f.rows += 1;
        f.last_used = self.tick;
        if f.buf.len() >= self.cfg.flush_bytes {
            self.flush_file(&key, Instant::now());
        }
    }

    /// The instrument of `id`, resolving its directory the first time (None: never registered).
    fn instrument(&mut self, id: InstrumentId) -> Option<Arc<Instrument>> {
        if let Some(i) = self.instruments.get(&id) {
            return Some(Arc::clone(i));
        }
        let name = self.names.lock().get(&id).cloned()?;
        let venue_dir = self.cfg.data_dir.join(path_component(&name.venue));
        let mut dir = venue_dir.join(path_component(&name.symbol));
        if let Some(&other) = self.dirs.get(&dir) {
            let suffixed = format!("{}~{id:08x}", path_component(&name.symbol));
            tracing::warn!(
                venue = %name.venue, symbol = %name.symbol, id, other_id = other,
                dir = %dir.display(), "writer: two instruments map to one directory; this one gets a suffix"
            );
            self.stats.writer.path_collisions.inc();
            dir = venue_dir.join(suffixed);
        }
        self.dirs.insert(dir.clone(), id);
        let inst = Arc::new(Instrument { name, dir });
        self.instruments.insert(id, Arc::clone(&inst));
        Some(inst)
    }

    /// Opens `key`'s file for appending (rotating older days of the same file out and evicting
    /// the least recently used file if needed). False: the file is backing off or failed now.
    fn open(&mut self, key: &FileKey, inst: &Instrument) -> bool {
        let now = Instant::now();
        if self
            .backoff
            .get(&(key.id, key.kind))
            .is_some_and(|b| now < b.retry_at)
        {
            return false;
        }
        // Rotation: a newer day of this file closes the older ones.
        self.keys.clear();
        self.keys.extend(
            self.files
                .keys()
                .filter(|k| k.id == key.id && k.kind == key.kind && k.day < key.day),
        );
        let old = std::mem::take(&mut self.keys);
        for k in &old {
            self.close_file(k, false);
        }
        self.keys = old;
        while self.files.len() >= self.cfg.max_open_files {
            let Some(lru) = self
                .files
                .iter()
                .min_by_key(|(_, f)| f.last_used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.close_file(&lru, true);
        }
        let dir = inst.dir.join(utc_date(key.day * DAY_NS));
        let path = dir.join(key.kind.file_name());
        match open_for_append(&dir, &path) {
            Ok((file, torn, len)) => {
                let w = &self.stats.writer;
                w.files_opened.inc();
                if torn > 0 {
                    w.torn_repaired.inc();
                    w.torn_bytes_removed.add(torn);
                    tracing::warn!(path = %path.display(), bytes = torn, "writer: cut a torn last line before appending");
                }
                let mut buf = Vec::with_capacity(self.cfg.flush_bytes.min(1 << 20) + 256);
                let header_in_buf = len == 0;
                if header_in_buf {
                    // Writing a header into a Vec cannot fail.
                    let _ = self.csv.write_record(key.kind.header());
                    let _ = self.csv.flush();
                    take_row(&self.csv, &mut buf);
                }
                self.files.insert(
                    *key,
                    OpenFile {
                        file,
                        path,
                        buf,
                        rows: 0,
                        header_in_buf,
                        last_used: self.tick,
                    },
                );
                self.stats.writer.open_files.set(self.files.len() as u64);
                true
            }
            Err(e) => {
                self.stats.writer.io_errors.inc();
                self.fail(key, now);
                self.log_error("opening", &path, &e);
                false
            }
        }
    }

    /// Sets or doubles `key`'s backoff.
    fn fail(&mut self, key: &FileKey, now: Instant) {
        let (initial, max) = (self.cfg.retry_initial, self.cfg.retry_max);
        let b = self
            .backoff
            .entry((key.id, key.kind))
            .and_modify(|b| b.delay = (b.delay * 2).min(max))
            .or_insert(Backoff {
                retry_at: now,
                delay: initial,
            });
        b.retry_at = now + b.delay;
    }

    /// Writes `key`'s buffer out. On failure the unwritten rows are dropped (counted), the file
    /// is closed (its torn tail, if any, is repaired when reopened) and backs off. True: written.
    fn flush_file(&mut self, key: &FileKey, now: Instant) -> bool {
        let Some(mut f) = self.files.remove(key) else {
            return true;
        };
        if f.buf.is_empty() {
            self.files.insert(*key, f);
            return true;
        }
        let (written, res) = write_counted(&mut f.file, &f.buf);
        let w = &self.stats.writer;
        w.bytes_written.add(written as u64);
        match res {
            Ok(()) => {
                w.rows_written.add(f.rows);
                w.flushes.inc();
                f.buf.clear();
                f.rows = 0;
                f.header_in_buf = false;
                self.backoff.remove(&(key.id, key.kind));
                self.files.insert(*key, f);
                true
            }
            Err(e) => {
                // Rows whose `\n` reached the OS were written; the rest are lost.
                let lines = f.buf[..written].iter().filter(|&&b| b == b'\n').count() as u64;
                let done = lines.saturating_sub(u64::from(f.header_in_buf)).min(f.rows);
                w.rows_written.add(done);
                w.dropped_io.add(f.rows - done);
                w.io_errors.inc();
                w.files_closed.inc();
                w.open_files.set(self.files.len() as u64);
                self.fail(key, now);
                self.log_error("writing", &f.path, &e);
                false
            }
        }
    }

    fn flush_all(&mut self, now: Instant) {
        self.keys.clear();
        self.keys.extend(
            self.files
                .iter()
                .filter(|(_, f)| !f.buf.is_empty())
                .map(|(k, _)| *k),
        );
        let keys = std::mem::take(&mut self.keys);
        for k in &keys {
            self.flush_file(k, now);
        }
        self.keys = keys;
    }

    /// Writes out, fsyncs (if configured) and closes `key`'s file.
    fn close_file(&mut self, key: &FileKey, evicted: bool) {
        if !self.flush_file(key, Instant::now()) {
            return; // closed by the failure
        }
        let Some(f) = self.files.remove(key) else {
            return;
        };
        let w = &self.stats.writer;
        w.files_closed.inc();
        if evicted {
            w.files_evicted.inc();
        }
        w.open_files.set(self.files.len() as u64);
        if self.cfg.fsync_on_close {
            if let Err(e) = f.file.sync_data() {
                self.stats.writer.io_errors.inc();
                self.log_error("fsync", &f.path, &e);
            }
        }
    }
}

/// Creates `dir`, opens `path` for reading and appending, repairs its tail.
/// Returns the file, the bytes cut off and the length after the repair.
fn open_for_append(dir: &Path, path: &Path) -> io::Result<(File, u64, u64)> {
    fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let torn = repair_torn_tail(&file)?;
    let len = file.metadata()?.len();
    Ok((file, torn, len))
}

/// Where the csv writer puts a row. `csv::Writer` lends its inner writer only by shared
/// reference, so the bytes sit in a `RefCell` to be moved out after each row.
#[derive(Debug, Default)]
struct RowSink(RefCell<Vec<u8>>);

impl io::Write for RowSink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.get_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The row formatter: `\n`-terminated rows (the torn-line repair relies on it), and
/// `flexible` because one formatter writes rows of every kind (10 and 16 fields).
fn new_csv() -> csv::Writer<RowSink> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .flexible(true)
        .from_writer(RowSink::default())
}

/// Moves the flushed row(s) out of `csv`'s sink onto `out`.
fn take_row(csv: &csv::Writer<RowSink>, out: &mut Vec<u8>) {
    let mut row = csv.get_ref().0.borrow_mut();
    out.extend_from_slice(&row);
    row.clear();
}

/// `write_all` that reports how many bytes went out before an error.
fn write_counted(file: &mut File, buf: &[u8]) -> (usize, io::Result<()>) {
    let mut off = 0;
    while off < buf.len() {
        match file.write(&buf[off..]) {
            Ok(0) => return (off, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (off, Err(e)),
        }
    }
    (off, Ok(()))
}

/// Writes one field formatted from `args` through the reusable `tmp`.
fn field(
    w: &mut csv::Writer<RowSink>,
    tmp: &mut String,
    args: fmt::Arguments<'_>,
) -> csv::Result<()> {
    tmp.clear();
    let _ = tmp.write_fmt(args); // writing into a String cannot fail
    w.write_field(tmp.as_bytes())
}

/// ns and RFC 3339 time of an optional timestamp (empty fields for none).
fn ts_fields(w: &mut csv::Writer<RowSink>, tmp: &mut String, ts: Option<u64>) -> csv::Result<()> {
    match ts {
        Some(ns) => {
            field(w, tmp, format_args!("{ns}"))?;
            w.write_field(format_rfc3339_ns(ns))
        }
        None => {
            w.write_field("")?;
            w.write_field("")
        }
    }
}

/// `bars` of one instrument as a CSV document, header first: the same columns and formatting as
/// the writer's `bars_<interval>.csv` (served by `/v1/bars?format=csv`).
pub fn bars_csv(venue: &str, symbol: &str, bars: &[Bar]) -> Vec<u8> {
    let name = Name {
        venue: venue.into(),
        symbol: symbol.into(),
    };
    let mut csv = new_csv();
    let mut tmp = String::new();
    let mut out = Vec::with_capacity(64 + bars.len() * 160);
    // Formatting into memory fails only on a bug in the csv crate; such a row is left out.
    if csv
        .write_record(BAR_HEADER)
        .and_then(|()| csv.flush().map_err(Into::into))
        .is_ok()
    {
        take_row(&csv, &mut out);
    }
    for bar in bars {
        let rec = WriterRecord::Bar {
            instrument_id: 0,
            bar: *bar,
        };
        if format_row(&mut csv, &mut tmp, &name, &rec).is_ok() {
            take_row(&csv, &mut out);
        }
    }
    out
}

/// Formats `rec` as one CSV row into `w`'s sink (flushed).
fn format_row(
    w: &mut csv::Writer<RowSink>,
    tmp: &mut String,
    name: &Name,
    rec: &WriterRecord,
) -> csv::Result<()> {
    match rec {
        WriterRecord::Trade {
            recv_ts_ns, trade, ..
        } => {
            ts_fields(w, tmp, Some(*recv_ts_ns))?;
            ts_fields(w, tmp, trade.exchange_ts_ns)?;
            w.write_field(&*name.venue)?;
            w.write_field(&*name.symbol)?;
            field(w, tmp, format_args!("{}", Decimal(trade.price)))?;
            field(w, tmp, format_args!("{}", Decimal(trade.size)))?;
            w.write_field(trade.side.name())?;
            match trade.trade_id {
                Some(id) => field(w, tmp, format_args!("{id}"))?,
                None => w.write_field("")?,
            }
        }
        WriterRecord::Quote {
            recv_ts_ns, quote, ..
        } => {
            ts_fields(w, tmp, Some(*recv_ts_ns))?;
            ts_fields(w, tmp, quote.exchange_ts_ns)?;
            w.write_field(&*name.venue)?;
            w.write_field(&*name.symbol)?;
            for v in [
                quote.bid_price,
                quote.bid_size,
                quote.ask_price,
                quote.ask_size,
            ] {
                field(w, tmp, format_args!("{}", Decimal(v)))?;
            }
        }
        WriterRecord::Bar { bar, .. } => {
            ts_fields(w, tmp, Some(bar.start_ns))?;
            ts_fields(w, tmp, Some(bar.end_ns))?;
            w.write_field(&*name.venue)?;
            w.write_field(&*name.symbol)?;
            field(w, tmp, format_args!("{}", IntervalLabel(bar.interval_ns)))?;
            for v in [bar.open, bar.high, bar.low, bar.close] {
                field(w, tmp, format_args!("{}", Decimal(v)))?;
            }
            field(w, tmp, format_args!("{}", Decimal128(bar.volume)))?;
            field(w, tmp, format_args!("{}", Decimal(bar.vwap())))?;
            field(w, tmp, format_args!("{}", bar.trade_count))?;
            field(w, tmp, format_args!("{}", bar.first_trade_ns))?;
            field(w, tmp, format_args!("{}", bar.last_trade_ns))?;
        }
    }
    w.write_record(None::<&[u8]>)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::market::event::Side;
    use crate::market::fixed::{self, ABSENT, SCALE};
    use crate::market::instrument::instrument_id;

    /// 2024-08-09T00:00:00Z.
    const MIDNIGHT: u64 = 1_723_161_600_000_000_000;
    const SEC: u64 = 1_000_000_000;

    fn cfg(dir: &Path) -> WriterConfig {
        WriterConfig {
            flush_interval: Duration::from_millis(10),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(40),
            error_log_interval: Duration::from_millis(100),
            ..WriterConfig::new(dir)
        }
    }

    fn trade(id: InstrumentId, recv: u64, price: i64, size: i64) -> WriterRecord {
        WriterRecord::Trade {
            instrument_id: id,
            recv_ts_ns: recv,
            trade: Trade {
                price,
                size,
                side: Side::Sell,
                trade_id: Some(recv % 1_000_000),
                exchange_ts_ns: Some(recv - 1_000_000),
            },
        }
    }

    fn quote(id: InstrumentId, recv: u64, bid: i64) -> WriterRecord {
        WriterRecord::Quote {
            instrument_id: id,
            recv_ts_ns: recv,
            quote: Quote {
                bid_price: bid,
                bid_size: 3 * SCALE,
                ask_price: ABSENT,
                ask_size: ABSENT,
                exchange_ts_ns: None,
            },
        }
    }

    fn bar(id: InstrumentId, start: u64, volume: i128) -> WriterRecord {
        WriterRecord::Bar {
            instrument_id: id,
            bar: Bar {
                interval_ns: 60 * SEC,
                start_ns: start,
                end_ns: start + 60 * SEC,
                open: 100 * SCALE,
                high: 110 * SCALE,
                low: 90 * SCALE,
                close: 105 * SCALE,
                volume,
                notional: volume * i128::from(100 * SCALE) + 1,
                notional_overflow: false,
                trade_count: 42,
                first_trade_ns: start + 1,
                last_trade_ns: start + 59 * SEC,
            },
        }
    }

    /// Header and rows of a CSV file, loaded with the csv crate.
    fn load(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
        let mut r =
            csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let header = r.headers().unwrap().iter().map(str::to_owned).collect();
        let rows = r
            .records()
            .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
            .collect();
        (header, rows)
    }

    fn parse_fixed_i128(s: &str) -> i128 {
        let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let frac = format!("{frac:0<8}");
        let v = int.parse::<i128>().unwrap() * i128::from(SCALE) + frac.parse::<i128>().unwrap();
        if neg {
            -v
        } else {
            v
        }
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn lines(path: &Path) -> usize {
        fs::read_to_string(path).unwrap().lines().count()
    }

    fn register(w: &WriterHandle, venue: &str, symbol: &str) -> InstrumentId {
        let id = instrument_id(venue, symbol);
        w.register(id, venue, symbol).unwrap();
        id
    }

    fn assert_accounted(s: &WriterStats) {
        let w = &s.writer;
        assert_eq!(s.producer.sent.get(), w.received.get());
        assert_eq!(
            w.received.get(),
            w.rows_written.get() + w.dropped_io.get() + w.dropped_unknown.get()
        );
    }

    #[test]
    fn record_stays_small() {
        assert!(
            std::mem::size_of::<WriterRecord>() <= 160,
            "{}",
            std::mem::size_of::<WriterRecord>()
        );
    }

    #[test]
    fn two_symbols_across_midnight_round_trip_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        let eth = register(&w, "binance", "ETHUSDT");
        let xbt = register(&w, "kraken", "XBT/EUR");
        let times = [
            MIDNIGHT - 2 * SEC,
            MIDNIGHT - 1,
            MIDNIGHT,
            MIDNIGHT + 5 * SEC,
        ];
        let big_volume = i128::from(i64::MAX) * 3 + 7; // beyond i64: exact all the same
        let mut sent = Vec::new();
        for (i, &t) in times.iter().enumerate() {
            for id in [eth, xbt] {
                let px = 268_380_000_000 + i as i64 * 1_234 + i64::from(id % 7);
                sent.push(trade(id, t, px, 2_000_000 + i as i64));
                sent.push(quote(id, t, px - 1));
            }
        }
        for id in [eth, xbt] {
            sent.push(bar(id, MIDNIGHT - 60 * SEC, big_volume));
            sent.push(bar(id, MIDNIGHT, 150_000_000));
        }
        for r in &sent {
            w.try_send(*r).unwrap();
        }
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_accounted(&stats);
        assert_eq!(stats.writer.rows_written.get(), sent.len() as u64);

        let root = tmp.path();
        for (venue, dir, id) in [("binance", "ETHUSDT", eth), ("kraken", "XBT-EUR", xbt)] {
            let symbol = if venue == "kraken" {
                "XBT/EUR"
            } else {
                "ETHUSDT"
            };
            for (day, from) in [("2024-08-08", MIDNIGHT - DAY_NS), ("2024-08-09", MIDNIGHT)] {
                let in_day = |ts: u64| ts >= from && ts < from + DAY_NS;
                let d = root.join(venue).join(dir).join(day);
                // trades.csv
                let (h, rows) = load(&d.join("trades.csv"));
                assert_eq!(h, TRADE_HEADER);
                let want: Vec<(u64, Trade)> = sent
                    .iter()
                    .filter_map(|r| match r {
                        WriterRecord::Trade {
                            instrument_id,
                            recv_ts_ns,
                            trade,
                        } if *instrument_id == id && in_day(*recv_ts_ns) => {
                            Some((*recv_ts_ns, *trade))
                        }
                        _ => None,
                    })
                    .collect();
                assert_eq!(rows.len(), want.len());
                assert_eq!(rows.len(), 2);
                for (row, (recv, t)) in rows.iter().zip(&want) {
                    assert_eq!(row[0].parse::<u64>().unwrap(), *recv);
                    assert_eq!(row[1], format_rfc3339_ns(*recv));
                    assert_eq!(row[2].parse::<u64>().unwrap(), t.exchange_ts_ns.unwrap());
                    assert_eq!(
                        crate::base::timefmt::parse_rfc3339_ns(&row[3]),
                        t.exchange_ts_ns
                    );
                    assert_eq!((row[4].as_str(), row[5].as_str()), (venue, symbol));
                    assert_eq!(fixed::parse(&row[6]), Ok(t.price));
                    assert_eq!(fixed::parse(&row[7]), Ok(t.size));
                    assert_eq!(row[8], "sell");
                    assert_eq!(row[9].parse::<u64>().ok(), t.trade_id);
                }
                // quotes.csv: absent ask and exchange time are empty fields
                let (h, rows) = load(&d.join("quotes.csv"));
                assert_eq!(h, QUOTE_HEADER);
                assert_eq!(rows.len(), 2);
                for row in &rows {
                    assert!(in_day(row[0].parse().unwrap()));
                    assert_eq!((row[2].as_str(), row[3].as_str()), ("", ""));
                    assert_eq!(fixed::parse(&row[7]), Ok(3 * SCALE));
                    assert_eq!((row[8].as_str(), row[9].as_str()), ("", ""));
                }
                // bars_1m.csv: the bar's start decides the day
                let (h, rows) = load(&d.join("bars_1m.csv"));
                assert_eq!(h, BAR_HEADER);
                assert_eq!(rows.len(), 1);
                let WriterRecord::Bar { bar: b, .. } = sent
                    .iter()
                    .find(|r| matches!(r, WriterRecord::Bar { instrument_id, bar } if *instrument_id == id && in_day(bar.start_ns)))
                    .unwrap()
                else {
                    unreachable!()
                };
                let row = &rows[0];
                assert_eq!(row[0].parse::<u64>().unwrap(), b.start_ns);
                assert_eq!(row[2].parse::<u64>().unwrap(), b.end_ns);
                assert_eq!(row[6], "1m");
                let ohlc: Vec<i64> = row[7..11]
                    .iter()
                    .map(|s| fixed::parse(s).unwrap())
                    .collect();
                assert_eq!(ohlc, vec![b.open, b.high, b.low, b.close]);
                assert_eq!(parse_fixed_i128(&row[11]), b.volume);
                assert_eq!(fixed::parse(&row[12]), Ok(b.vwap()));
                assert_eq!(row[13], "42");
            }
        }
    }

    #[test]
    fn full_channel_is_counted_and_hands_the_record_back() {
        let tmp = tempfile::tempdir().unwrap();
        let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
        let c = WriterConfig {
            capacity_records: 4,
            ..cfg(tmp.path())
        };
        let mut w = WriterHandle::spawn_gated(c, Some(gate_rx)).unwrap();
        let id = register(&w, "binance", "ETHUSDT");
        let (mut ok, mut full) = (0u64, 0u64);
        for i in 0..10 {
            let r = trade(id, MIDNIGHT + i, SCALE, SCALE);
            match w.try_send(r) {
                Ok(()) => ok += 1,
                Err(TrySendError::Full(back)) => {
                    assert_eq!(back, r);
                    full += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, full), (4, 6));
        assert_eq!(w.stats().producer.full.get(), 6);
        assert_eq!(w.queued(), 4);
        drop(gate_tx); // the writer starts
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_accounted(&stats);
        assert_eq!(stats.writer.rows_written.get(), 4);
        // produced == written + dropped
        assert_eq!(
            10,
            stats.writer.rows_written.get() + stats.producer.full.get()
        );
        let f = tmp.path().join("binance/ETHUSDT/2024-08-09/trades.csv");
        assert_eq!(lines(&f), 1 + 4);
    }

    #[test]
    fn unwritable_directory_is_counted_then_writing_resumes() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("binance");
        fs::write(&blocker, b"not a directory").unwrap(); // create_dir_all fails, even for root
        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        let id = register(&w, "binance", "ETHUSDT");
        for i in 0..5 {
            w.try_send(trade(id, MIDNIGHT + i, SCALE, SCALE)).unwrap();
        }
        let stats = Arc::clone(w.stats());
        wait_until("5 dropped", || stats.writer.dropped_io.get() == 5);
        assert_eq!(stats.writer.dropped_io.get(), 5);
        assert!(stats.writer.io_errors.get() >= 1);

        fs::remove_file(&blocker).unwrap();
        thread::sleep(Duration::from_millis(60)); // > retry_max
        for i in 5..10 {
            w.try_send(trade(id, MIDNIGHT + i, SCALE, SCALE)).unwrap();
        }
        wait_until("5 rows written", || stats.writer.rows_written.get() == 5);
        w.close().unwrap();
        assert_accounted(&stats);
        let (_, rows) = load(&tmp.path().join("binance/ETHUSDT/2024-08-09/trades.csv"));
        let recv: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
        assert_eq!(recv, (5..10).map(|i| MIDNIGHT + i).collect::<Vec<_>>());
    }

    #[test]
    fn read_only_directory_is_counted_then_writing_resumes() {
        use std::os::unix::fs::PermissionsExt;
        if rustix::process::geteuid().is_root() {
            eprintln!(
                "skipped: root ignores directory permissions (the blocker-file test covers this)"
            );
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o555)).unwrap();
        let mut w = WriterHandle::spawn(cfg(&root)).unwrap();
        let id = register(&w, "binance", "ETHUSDT");
        w.try_send(trade(id, MIDNIGHT, SCALE, SCALE)).unwrap();
        let stats = Arc::clone(w.stats());
        wait_until("1 dropped", || stats.writer.dropped_io.get() == 1);
        assert_eq!(stats.writer.dropped_io.get(), 1);
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        thread::sleep(Duration::from_millis(60));
        w.try_send(trade(id, MIDNIGHT + 1, SCALE, SCALE)).unwrap();
        w.close().unwrap();
        assert_eq!(stats.writer.rows_written.get(), 1);
        assert_accounted(&stats);
    }

    #[test]
    fn full_disk_drops_rows_then_writing_resumes() {
        let tmp = tempfile::tempdir().unwrap();
        let day = tmp.path().join("binance/ETHUSDT/2024-08-09");
        fs::create_dir_all(&day).unwrap();
        let file = day.join("trades.csv");
        std::os::unix::fs::symlink("/dev/full", &file).unwrap(); // every write: ENOSPC
        let c = WriterConfig {
            flush_bytes: 1, // every row is written at once
            ..cfg(tmp.path())
        };
        let mut w = WriterHandle::spawn(c).unwrap();
        let id = register(&w, "binance", "ETHUSDT");
        for i in 0..3 {
            w.try_send(trade(id, MIDNIGHT + i, SCALE, SCALE)).unwrap();
        }
        let stats = Arc::clone(w.stats());
        wait_until("3 dropped", || stats.writer.dropped_io.get() == 3);
        assert_eq!(stats.writer.dropped_io.get(), 3);
        assert!(stats.writer.io_errors.get() >= 1);
        fs::remove_file(&file).unwrap(); // room again
        thread::sleep(Duration::from_millis(60));
        for i in 3..5 {
            w.try_send(trade(id, MIDNIGHT + i, SCALE, SCALE)).unwrap();
        }
        w.close().unwrap();
        assert_accounted(&stats);
        assert_eq!(stats.writer.rows_written.get(), 2);
        let (h, rows) = load(&file);
        assert_eq!(h, TRADE_HEADER);
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn torn_last_line_is_cut_before_appending() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("binance/ETHUSDT/2024-08-09/trades.csv");
        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        let id = register(&w, "binance", "ETHUSDT");
        w.try_send(trade(id, MIDNIGHT + 1, SCALE, SCALE)).unwrap();
        w.try_send(trade(id, MIDNIGHT + 2, SCALE, SCALE)).unwrap();
        w.close().unwrap();
        // A crash mid-row.
        let torn = b"1723161600000000003,2024-08-09T00:0";
        fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap()
            .write_all(torn)
            .unwrap();

        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        register(&w, "binance", "ETHUSDT");
        w.try_send(trade(id, MIDNIGHT + 4, 2 * SCALE, SCALE))
            .unwrap();
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_eq!(stats.writer.torn_repaired.get(), 1);
        assert_eq!(stats.writer.torn_bytes_removed.get(), torn.len() as u64);
        let (h, rows) = load(&file);
        assert_eq!(h, TRADE_HEADER);
        let recv: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
        assert_eq!(recv, vec![MIDNIGHT + 1, MIDNIGHT + 2, MIDNIGHT + 4]);
        assert!(rows.iter().all(|r| r.len() == TRADE_HEADER.len()));
    }

    #[test]
    fn repair_torn_tail_cases() {
        let long_tail = format!("x\n{}", "y".repeat(20_000));
        let long_ok = format!("{}\n", "z".repeat(20_000));
        // (content, content after repair)
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("a\n", "a\n"),
            ("a\nb", "a\n"),
            ("abc", ""),
            ("h\nr1\nr2\n", "h\nr1\nr2\n"),
            ("h\nr1\nr", "h\nr1\n"),
            (&long_tail, "x\n"),
            (&long_ok, &long_ok),
        ];
        let tmp = tempfile::tempdir().unwrap();
        for (i, (content, want)) in cases.iter().enumerate() {
            let p = tmp.path().join(format!("{i}.csv"));
            fs::write(&p, content).unwrap();
            let f = OpenOptions::new().read(true).append(true).open(&p).unwrap();
            let removed = repair_torn_tail(&f).unwrap();
            assert_eq!(removed as usize, content.len() - want.len(), "case {i}");
            assert_eq!(&fs::read_to_string(&p).unwrap(), want, "case {i}");
        }
    }

    #[test]
    fn shutdown_drains_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let c = WriterConfig {
            capacity_records: 20_000,
            flush_interval: Duration::from_secs(3600), // only size and shutdown flush
            ..cfg(tmp.path())
        };
        let mut w = WriterHandle::spawn(c).unwrap();
        let a = register(&w, "binance", "ETHUSDT");
        let b = register(&w, "coinbase", "ETH-USD");
        for i in 0..10_000u64 {
            let id = if i % 2 == 0 { a } else { b };
            w.try_send(trade(id, MIDNIGHT + i, SCALE + i as i64, SCALE))
                .unwrap();
        }
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_accounted(&stats);
        assert_eq!(stats.writer.rows_written.get(), 10_000);
        assert_eq!(
            lines(&tmp.path().join("binance/ETHUSDT/2024-08-09/trades.csv")),
            5_001
        );
        assert_eq!(
            lines(&tmp.path().join("coinbase/ETH-USD/2024-08-09/trades.csv")),
            5_001
        );
        assert_eq!(stats.writer.open_files.get(), 0);
    }

    #[test]
    fn rows_reach_the_file_within_the_flush_interval() {
        let tmp = tempfile::tempdir().unwrap();
        let c = WriterConfig {
            flush_interval: Duration::from_millis(20),
            flush_bytes: 1 << 20,
            ..cfg(tmp.path())
        };
        let mut w = WriterHandle::spawn(c).unwrap();
        let id = register(&w, "binance", "ETHUSDT");
        w.try_send(trade(id, MIDNIGHT, SCALE, SCALE)).unwrap();
        let f = tmp.path().join("binance/ETHUSDT/2024-08-09/trades.csv");
        wait_until("row on disk", || {
            fs::read_to_string(&f).is_ok_and(|s| s.lines().count() == 2)
        });
        w.close().unwrap();
    }

    #[test]
    fn least_recently_used_files_are_closed_beyond_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let c = WriterConfig {
            max_open_files: 2,
            ..cfg(tmp.path())
        };
        let mut w = WriterHandle::spawn(c).unwrap();
        let ids: Vec<InstrumentId> = ["AAA", "BBB", "CCC"]
            .iter()
            .map(|s| register(&w, "binance", s))
            .collect();
        for i in 0..30u64 {
            w.try_send(trade(ids[(i % 3) as usize], MIDNIGHT + i, SCALE, SCALE))
                .unwrap();
        }
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_accounted(&stats);
        assert!(
            stats.writer.files_evicted.get() >= 10,
            "{}",
            stats.writer.files_evicted.get()
        );
        for s in ["AAA", "BBB", "CCC"] {
            let (h, rows) = load(
                &tmp.path()
                    .join(format!("binance/{s}/2024-08-09/trades.csv")),
            );
            assert_eq!(h, TRADE_HEADER); // once: a reopened file gets no second header
            assert_eq!(rows.len(), 10);
            assert!(rows.iter().all(|r| r[0] != "recv_ts_ns"));
        }
    }

    #[test]
    fn path_components_are_safe() {
        let cases: &[(&str, &str)] = &[
            ("ETHUSDT", "ETHUSDT"),
            ("BTC-USD", "BTC-USD"),
            ("XBT/EUR", "XBT-EUR"),
            ("PI_XBTUSD", "PI_XBTUSD"),
            ("a b:c*d", "a_b_c_d"),
            (".", "_"),
            ("..", "_."),
            ("../etc", "_.-etc"),
            (".hidden", "_hidden"),
            ("ÉTH", "_TH"),
            ("1000SHIB.P", "1000SHIB.P"),
        ];
        for (name, want) in cases {
            assert_eq!(path_component(name), *want, "{name}");
        }
        assert_eq!(path_component(&"x".repeat(300)).len(), MAX_COMPONENT_BYTES);
    }

    #[test]
    fn colliding_directories_get_a_suffix() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        let a = register(&w, "binance", "BTC/USD");
        let b = register(&w, "binance", "BTC-USD");
        w.try_send(trade(a, MIDNIGHT, SCALE, SCALE)).unwrap();
        w.try_send(trade(b, MIDNIGHT, 2 * SCALE, SCALE)).unwrap();
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_eq!(stats.writer.path_collisions.get(), 1);
        let (_, ra) = load(&tmp.path().join("binance/BTC-USD/2024-08-09/trades.csv"));
        let (_, rb) = load(
            &tmp.path()
                .join(format!("binance/BTC-USD~{b:08x}/2024-08-09/trades.csv")),
        );
        assert_eq!(
            (ra[0][5].as_str(), rb[0][5].as_str()),
            ("BTC/USD", "BTC-USD")
        );
    }

    #[test]
    fn registration_is_checked_and_unknown_ids_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        assert!(matches!(
            w.register(1, "", "X"),
            Err(RegisterError::InvalidName { what: "venue", .. })
        ));
        assert!(matches!(
            w.register(1, "v", "a\nb"),
            Err(RegisterError::InvalidName { what: "symbol", .. })
        ));
        w.register(1, "v", "A").unwrap();
        w.register(1, "v", "A").unwrap(); // idempotent
        assert!(matches!(
            w.register(1, "v", "B"),
            Err(RegisterError::Conflict { id: 1, .. })
        ));
        w.try_send(trade(99, MIDNIGHT, SCALE, SCALE)).unwrap();
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_eq!(stats.writer.dropped_unknown.get(), 1);
        assert_accounted(&stats);
    }

    #[test]
    fn invalid_config_is_refused() {
        let base = WriterConfig::new("/nonexistent");
        for c in [
            WriterConfig {
                capacity_records: 0,
                ..base.clone()
            },
            WriterConfig {
                flush_bytes: 0,
                ..base.clone()
            },
            WriterConfig {
                max_open_files: 0,
                ..base.clone()
            },
            WriterConfig {
                flush_interval: Duration::ZERO,
                ..base.clone()
            },
            WriterConfig {
                retry_max: Duration::from_millis(1),
                ..base.clone()
            },
        ] {
            assert!(matches!(
                WriterHandle::spawn(c),
                Err(WriterError::InvalidConfig(_))
            ));
        }
    }
}
