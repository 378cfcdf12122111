//! The `writer` thread: takes records off the channel, formats each into its file's buffer,
//! writes a buffer out once it holds `flush_bytes` and every buffer every `flush_interval`,
//! closes a file when a newer day of it opens (rotation) or when more than `max_open_files` are
//! open (the least recently used goes), and closes everything once the channel is drained and
//! disconnected. It blocks on the channel (`recv_timeout` until the next flush) and on file I/O.
//! A failed open or write is counted, logged (rate-limited), and its rows dropped; the file waits
//! in the retry table before it is opened again.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rustc_hash::FxHashMap;

use crate::base::ratelimit::RateLimit;
use crate::base::timefmt::utc_date;
use crate::market::bars::DAY_NS;
use crate::persist::config::WriterConfig;

use super::files::{open_for_append, write_counted, FileKey};
use super::names::{Directories, Instrument, Names};
use super::retry::Retries;
use super::rows::{format_row, new_csv, take_row, RowSink};
use super::{WriterRecord, WriterStats};

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

/// The `writer` thread's state.
pub(super) struct WriterThread {
    cfg: WriterConfig,
    rx: Receiver<WriterRecord>,
    names: Names,
    stats: Arc<WriterStats>,
    /// Instruments met so far and their directories.
    dirs: Directories,
    /// Open files; `len() ≤ cfg.max_open_files`.
    files: FxHashMap<FileKey, OpenFile>,
    /// Files that failed and wait for a retry.
    retries: Retries,
    /// Formats one row at a time into its [`RowSink`], which is emptied after each row.
    csv: csv::Writer<RowSink>,
    /// Scratch for number formatting.
    tmp: String,
    /// LRU clock: +1 per row.
    tick: u64,
    /// Scratch list of keys (flush, rotation).
    keys: Vec<FileKey>,
    /// Error lines: at most one per `error_log_interval`.
    errlog: RateLimit,
    /// When every buffer is written out next.
    next_flush: Instant,
}

impl WriterThread {
    /// The state of a thread that takes records from `rx`.
    pub(super) fn new(
        cfg: WriterConfig,
        rx: Receiver<WriterRecord>,
        names: Names,
        stats: Arc<WriterStats>,
    ) -> Self {
        WriterThread {
            errlog: RateLimit::new(cfg.error_log_interval),
            dirs: Directories::new(cfg.data_dir.clone()),
            retries: Retries::new(cfg.retry_initial, cfg.retry_max),
            next_flush: Instant::now() + cfg.flush_interval,
            cfg,
            rx,
            names,
            stats,
            files: FxHashMap::default(),
            csv: new_csv(),
            tmp: String::with_capacity(64),
            tick: 0,
            keys: Vec::new(),
        }
    }

    /// The thread's body: returns once the channel is drained and disconnected and every file
    /// is closed.
    pub(super) fn run(mut self) {
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
        let Some(inst) =
            self.dirs
                .instrument(key.id, &self.names, &self.stats.writer.path_collisions)
        else {
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

    /// Opens `key`'s file for appending (rotating older days of the same file out and evicting
    /// the least recently used file if needed). False: the file is backing off or failed now.
    fn open(&mut self, key: &FileKey, inst: &Instrument) -> bool {
        let now = Instant::now();
        if self.retries.waiting(key, now) {
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
        match open_for_append(&path) {
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
                self.retries.fail(key, now);
                self.log_error("opening", &path, &e);
                false
            }
        }
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
                self.retries.succeeded(key);
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
                self.retries.fail(key, now);
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    use super::super::rows::TRADE_HEADER;
    use super::super::testkit::*;
    use super::super::WriterHandle;
    use super::*;
    use crate::market::fixed::SCALE;
    use crate::market::instrument::InstrumentId;

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
}
