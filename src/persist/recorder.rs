//! Raw recording: the `recorder` thread writes every venue message of the feeds with
//! `record = true`, exactly as received, one line `<recv_ns> <message>`, gzip-compressed, in
//! one of two layouts ([`Layout`], `[recording] layout`; `persist::layout` has the details):
//! `mdrelay` (the default), one file per feed per UTC day with everything received,
//! `<dir>/<venue>/<feed>_<YYYYMMDD>.txt.gz` — the layout of the bundled captures, so
//! `mdrelay replay` and the replay exchange read recordings made here unchanged; or
//! `hftbacktest`, one file per symbol per UTC day with market data and REST snapshots only,
//! `<dir>/<venue>/<feed>/<symbol>_<YYYYMMDD>.gz`, which hftbacktest's converters read unchanged.
//! Days are UTC days of the receive time: a file ends at midnight UTC.
//!
//! Collectors hand lines over a bounded channel with [`RecordSender::record`] (and
//! [`RecordSender::record_snapshot`] for REST snapshots, which carry their symbol), which never
//! blocks: a line that does not fit is counted ([`RecorderStats::dropped`]) and reported to
//! subscribers as `not_persisted`. It costs the collector one copy of the message; finding a
//! message's symbol for the `hftbacktest` layout is done here, on the recorder thread.
//!
//! Durability: every `flush_interval` (and at rotation and shutdown) the current gzip member is
//! finished and written, so a crash loses at most the last interval and leaves a file every gzip
//! reader reads up to the last finished member (files are sequences of members, which
//! `MultiGzDecoder`, `zcat` and Python's `gzip` all read). A restart on the same day appends new
//! members to the day's file. I/O errors are logged (rate-limited), counted, and the file is
//! retried after [`RETRY_AFTER`]; the lines meanwhile are counted as dropped.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use flate2::write::GzEncoder;
use flate2::Compression;
use rustc_hash::FxHashMap;

use crate::base::ratelimit::RateLimit;
use crate::base::stats::Counter;
use crate::persist::config::RecordingConfig;
use crate::persist::layout::{file_path, utc_day, Layout, Route, RouteFn, MIXED_STEM};
use crate::persist::paths::{open_creating_dirs, path_component};

/// Wait before a file that failed is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Most files one feed keeps apart in the `hftbacktest` layout; messages of further symbols go
/// to its [`MIXED_STEM`] file, so a venue sending ever new symbols cannot grow the map.
pub const MAX_SYMBOLS_PER_FEED: usize = 4096;

/// At most one error log line per this period; the others are counted into the next.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One recorded message.
#[derive(Debug)]
struct RawLine {
    feed: usize,
    recv_ns: u64,
    text: Box<str>,
    /// The symbol a REST snapshot was fetched for; `None` for WebSocket messages.
    snapshot_of: Option<Box<str>>,
}

/// Recorder counters.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Lines written.
    pub written: Counter,
    /// Lines not recorded: queue full, or lost to an I/O error.
    pub dropped: Counter,
    /// Lines the `hftbacktest` layout leaves out on purpose: acks, errors, heartbeats.
    pub skipped: Counter,
    /// Failed file operations.
    pub io_errors: Counter,
    /// Files opened.
    pub files_opened: Counter,
}

/// A collector's end of the recorder queue.
#[derive(Debug, Clone)]
pub struct RecordSender {
    tx: Sender<RawLine>,
    feed: usize,
    stats: Arc<RecorderStats>,
}

impl RecordSender {
    /// Queues one WebSocket message received at `recv_ns` (wall clock); never blocks. Newlines
    /// inside the message become spaces: one message, one line.
    pub fn record(&self, recv_ns: u64, text: &str) {
        self.send(recv_ns, text, None);
    }

    /// Queues the REST book snapshot of `symbol` received at `recv_ns`; never blocks. Its body
    /// names no symbol, so the `hftbacktest` layout files it by `symbol`.
    pub fn record_snapshot(&self, recv_ns: u64, symbol: &str, text: &str) {
        self.send(recv_ns, text, Some(symbol.into()));
    }

    fn send(&self, recv_ns: u64, text: &str, snapshot_of: Option<Box<str>>) {
        let text: Box<str> = if text.contains(['\n', '\r']) {
            text.replace(['\n', '\r'], " ").into()
        } else {
            text.into()
        };
        let line = RawLine {
            feed: self.feed,
            recv_ns,
            text,
            snapshot_of,
        };
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.stats.dropped.inc(),
        }
    }
}

/// A recorded feed, as [`Recorder::spawn`] takes it.
#[derive(Debug, Clone)]
pub struct RecordedFeed {
    /// Venue name (the directory).
    pub venue: String,
    /// Feed name.
    pub feed: String,
    /// Finds the symbol of a message for the `hftbacktest` layout (the feed layer's router for
    /// the venue).
    pub route: RouteFn,
}

/// The running recorder. It ends when every [`RecordSender`] is gone; [`join`](Self::join)
/// waits for that and for the files to be finished.
#[derive(Debug)]
pub struct Recorder {
    tx: Option<Sender<RawLine>>,
    stats: Arc<RecorderStats>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Starts the `recorder` thread for `feeds` (feed number = index in the list).
    pub fn spawn(cfg: &RecordingConfig, feeds: Vec<RecordedFeed>) -> io::Result<Recorder> {
        let (tx, rx) = crossbeam_channel::bounded(cfg.capacity_messages);
        let stats = Arc::new(RecorderStats::default());
        let mut state = RecorderThread {
            dir: cfg.dir.clone(),
            layout: cfg.layout,
            flush_interval: cfg.flush_interval,
            feeds: feeds
                .into_iter()
                .map(|f| FeedFiles {
                    venue: path_component(&f.venue),
                    feed: path_component(&f.feed),
                    route: f.route,
                    files: FxHashMap::default(),
                })
                .collect(),
            key: String::new(),
            stats: stats.clone(),
            errlog: RateLimit::new(ERROR_LOG_INTERVAL),
        };
        let thread = thread::Builder::new()
            .name("recorder".into())
            .spawn(move || state.run(rx))?;
        Ok(Recorder {
            tx: Some(tx),
            stats,
            thread: Some(thread),
        })
    }

    /// A sender for feed number `feed` (index in the list given to [`spawn`](Self::spawn)).
    pub fn sender(&self, feed: usize) -> Option<RecordSender> {
        self.tx.as_ref().map(|tx| RecordSender {
            tx: tx.clone(),
            feed,
            stats: self.stats.clone(),
        })
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<RecorderStats> {
        &self.stats
    }

    /// Waits until every sender is dropped and the files are finished. False if the thread
    /// panicked.
    pub fn join(mut self) -> bool {
        self.tx = None;
        self.thread.take().is_none_or(|t| t.join().is_ok())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Gz = GzEncoder<BufWriter<File>>;

/// One recording file: a feed's (`mdrelay` layout) or a symbol's (`hftbacktest` layout).
#[derive(Default)]
struct DayFile {
    /// Day number ([`utc_day`]) of the open file.
    day: u64,
    /// The open file and its gzip member in progress; `None` when closed.
    out: Option<Gz>,
    /// After an error: no new open before this.
    retry_at: Option<Instant>,
}

/// A feed's files, by key: `""` for the feed's own file (`mdrelay`), else the lowercased symbol
/// or [`MIXED_STEM`]. Files are closed at every flush, so only the symbols active within one
/// flush interval hold an open file and its buffers.
struct FeedFiles {
    venue: String,
    feed: String,
    route: RouteFn,
    files: FxHashMap<String, DayFile>,
}

struct RecorderThread {
    dir: PathBuf,
    layout: Layout,
    flush_interval: Duration,
    feeds: Vec<FeedFiles>,
    /// Reused buffer for the lowercased symbol of the line being written.
    key: String,
    stats: Arc<RecorderStats>,
    /// Error lines: at most one per [`ERROR_LOG_INTERVAL`].
    errlog: RateLimit,
}

impl RecorderThread {
    fn run(&mut self, rx: Receiver<RawLine>) {
        let mut next_flush = Instant::now() + self.flush_interval;
        loop {
            let timeout = next_flush.saturating_duration_since(Instant::now());
            match rx.recv_timeout(timeout) {
                Ok(line) => self.write(&line),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_flush {
                self.finish_members();
                next_flush = Instant::now() + self.flush_interval;
            }
        }
        self.finish_members();
        let skipped = self.stats.skipped.get();
        if skipped > 0 {
            tracing::info!(
                skipped,
                "raw recording (layout hftbacktest): acks, errors and heartbeats not written"
            );
        }
    }

    /// Sets `self.key` to the file key of `line` in feed `f`; false when the line is left out.
    fn file_key(&mut self, f: usize, line: &RawLine) -> bool {
        self.key.clear();
        if self.layout == Layout::Mdrelay {
            return true;
        }
        let route = match (&line.snapshot_of, self.feeds.get(f)) {
            (Some(sym), _) => Route::Symbol(sym),
            (None, Some(feed)) => (feed.route)(&line.text),
            (None, None) => Route::Mixed,
        };
        match route {
            Route::Symbol(s) => self.key.extend(s.chars().map(|c| c.to_ascii_lowercase())),
            Route::Mixed => self.key.push_str(MIXED_STEM),
            Route::Control => {
                self.stats.skipped.inc();
                return false;
            }
        }
        true
    }

    fn write(&mut self, line: &RawLine) {
        if line.feed >= self.feeds.len() {
            self.stats.dropped.inc();
            return;
        }
        if !self.file_key(line.feed, line) {
            return;
        }
        let feed = &mut self.feeds[line.feed];
        let day = utc_day(line.recv_ns);
        if !feed.files.contains_key(self.key.as_str()) {
            if feed.files.len() >= MAX_SYMBOLS_PER_FEED {
                self.key.clear();
                self.key.push_str(MIXED_STEM);
            }
            if !feed.files.contains_key(self.key.as_str()) {
                feed.files.insert(self.key.clone(), DayFile::default());
            }
        }
        let Some(f) = feed.files.get_mut(self.key.as_str()) else {
            return; // inserted just above
        };
        if f.day != day {
            if let Some(out) = f.out.take() {
                if let Err(e) = finish(out) {
                    self.stats.io_errors.inc();
                    log_error(&mut self.errlog, &feed.feed, &e);
                }
            }
            f.day = day;
        }
        if f.out.is_none() {
            if f.retry_at.is_some_and(|t| Instant::now() < t) {
                self.stats.dropped.inc();
                return;
            }
            let key = (self.layout == Layout::Hftbacktest).then_some(self.key.as_str());
            let path = file_path(&self.dir, &feed.venue, &feed.feed, key, day);
            match open_creating_dirs(&path, OpenOptions::new().create(true).append(true)) {
                Ok(file) => {
                    self.stats.files_opened.inc();
                    f.retry_at = None;
                    f.out = Some(GzEncoder::new(
                        BufWriter::with_capacity(1 << 16, file),
                        Compression::fast(),
                    ));
                }
                Err(e) => {
                    self.stats.io_errors.inc();
                    self.stats.dropped.inc();
                    f.retry_at = Some(Instant::now() + RETRY_AFTER);
                    log_error(&mut self.errlog, &path.display().to_string(), &e);
                    return;
                }
            }
        }
        let Some(out) = f.out.as_mut() else {
            return;
        };
        let r = write!(out, "{} ", line.recv_ns)
            .and_then(|()| out.write_all(line.text.as_bytes()))
            .and_then(|()| out.write_all(b"\n"));
        match r {
            Ok(()) => self.stats.written.inc(),
            Err(e) => {
                self.stats.io_errors.inc();
                self.stats.dropped.inc();
                f.out = None;
                f.retry_at = Some(Instant::now() + RETRY_AFTER);
                log_error(&mut self.errlog, &feed.feed, &e);
            }
        }
    }

    /// Finishes every open gzip member and writes it to the file (the file is closed); the next
    /// line opens it again and starts a new member.
    fn finish_members(&mut self) {
        for feed in &mut self.feeds {
            for f in feed.files.values_mut() {
                if let Some(out) = f.out.take() {
                    if let Err(e) = finish(out) {
                        self.stats.io_errors.inc();
                        log_error(&mut self.errlog, &feed.feed, &e);
                        f.retry_at = Some(Instant::now() + RETRY_AFTER);
                    }
                }
            }
        }
    }
}

fn finish(out: Gz) -> io::Result<()> {
    let mut w = out.finish()?;
    w.flush()
}

/// Logs a recorder error unless `errlog` holds it back (then it is counted into the next line).
fn log_error(errlog: &mut RateLimit, what: &str, e: &io::Error) {
    if let Some(suppressed) = errlog.allow(Instant::now()) {
        tracing::warn!(suppressed, "raw recording {what}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::recording::read_all;

    /// A router for the test: `S:<sym> …` is data of `<sym>`, `M …` mixed, anything else control.
    fn route(raw: &str) -> Route<'_> {
        match raw.split_once(' ') {
            Some((s, _)) if s.starts_with("S:") => Route::Symbol(&s[2..]),
            Some(("M", _)) => Route::Mixed,
            _ => Route::Control,
        }
    }

    fn spawn(dir: &std::path::Path, layout: Layout) -> Recorder {
        let cfg = RecordingConfig {
            dir: dir.to_path_buf(),
            layout,
            capacity_messages: 64,
            flush_interval: Duration::from_secs(60),
        };
        let feed = RecordedFeed {
            venue: "v".into(),
            feed: "f".into(),
            route,
        };
        Recorder::spawn(&cfg, vec![feed]).unwrap()
    }

    /// 2024-08-08T23:59:59.999999999Z and the next nanosecond.
    const LAST_NS: u64 = 1_723_161_599_999_999_999;

    fn lines(path: &std::path::Path) -> Vec<(u64, String)> {
        read_all(path)
            .unwrap()
            .into_iter()
            .map(|r| (r.recv_ns.unwrap(), r.raw))
            .collect()
    }

    #[test]
    fn hftbacktest_layout_splits_by_symbol_and_day_and_leaves_control_out() {
        let dir = tempfile::tempdir().unwrap();
        let r = spawn(dir.path(), Layout::Hftbacktest);
        let tx = r.sender(0).unwrap();
        tx.record(LAST_NS - 2, "ack");
        tx.record(LAST_NS - 1, "S:ETHUSDT a");
        tx.record_snapshot(LAST_NS, "ETHUSDT", "{\"bids\":[],\n\"asks\":[]}");
        tx.record(LAST_NS, "S:btcusdt b");
        tx.record(LAST_NS, "M c");
        tx.record(LAST_NS + 1, "S:ethusdt d"); // midnight UTC: the next day's file
        drop(tx);
        let stats = r.stats().clone();
        assert!(r.join());
        assert_eq!(
            (
                stats.written.get(),
                stats.skipped.get(),
                stats.dropped.get()
            ),
            (5, 1, 0)
        );
        let f = dir.path().join("v").join("f");
        let mut names: Vec<String> = std::fs::read_dir(&f)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "_mixed_20240808.gz",
                "btcusdt_20240808.gz",
                "ethusdt_20240808.gz",
                "ethusdt_20240809.gz"
            ]
        );
        assert_eq!(
            lines(&f.join("ethusdt_20240808.gz")),
            [
                (LAST_NS - 1, "S:ETHUSDT a".to_owned()),
                (LAST_NS, "{\"bids\":[], \"asks\":[]}".to_owned())
            ]
        );
        assert_eq!(
            lines(&f.join("ethusdt_20240809.gz")),
            [(LAST_NS + 1, "S:ethusdt d".to_owned())]
        );
        assert_eq!(
            lines(&f.join("_mixed_20240808.gz")),
            [(LAST_NS, "M c".to_owned())]
        );
    }

    #[test]
    fn mdrelay_layout_keeps_everything_in_the_feed_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = spawn(dir.path(), Layout::Mdrelay);
        let tx = r.sender(0).unwrap();
        tx.record(LAST_NS - 1, "ack");
        tx.record_snapshot(LAST_NS, "ETHUSDT", "snap");
        tx.record(LAST_NS + 1, "S:ETHUSDT a");
        drop(tx);
        assert!(r.join());
        let v = dir.path().join("v");
        assert_eq!(
            lines(&v.join("f_20240808.txt.gz")),
            [
                (LAST_NS - 1, "ack".to_owned()),
                (LAST_NS, "snap".to_owned())
            ]
        );
        assert_eq!(
            lines(&v.join("f_20240809.txt.gz")),
            [(LAST_NS + 1, "S:ETHUSDT a".to_owned())]
        );
        assert!(!v.join("f").exists());
    }
}
