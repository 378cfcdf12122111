//! Raw recording: the `recorder` thread writes every venue message of the feeds with
//! `record = true`, exactly as received, one line `<recv_ns> <message>`, gzip-compressed, one file
//! per feed per UTC day: `<dir>/<venue>/<feed>_<YYYYMMDD>.txt.gz`. That is the layout of the
//! bundled captures (and of hftbacktest's collector), so `mdrelay replay` and the replay exchange
//! read recordings made here unchanged.
//!
//! Collectors hand lines over a bounded channel with [`RecordSender::record`], which never
//! blocks: a line that does not fit is counted ([`RecorderStats::dropped`]) and reported to
//! subscribers as `not_persisted`. It costs the collector one copy of the message.
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

use crate::base::ratelimit::RateLimit;
use crate::base::stats::Counter;
use crate::base::timefmt::utc_date;
use crate::persist::config::RecordingConfig;
use crate::persist::paths::{open_creating_dirs, path_component};

/// Wait before a file that failed is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// At most one error log line per this period; the others are counted into the next.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One recorded message.
#[derive(Debug)]
struct RawLine {
    feed: usize,
    recv_ns: u64,
    text: Box<str>,
}

/// Recorder counters.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Lines written.
    pub written: Counter,
    /// Lines not recorded: queue full, or lost to an I/O error.
    pub dropped: Counter,
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
    /// Queues one message received at `recv_ns` (wall clock); never blocks. Newlines inside
    /// the message (a pretty-printed REST reply) become spaces: one message, one line.
    pub fn record(&self, recv_ns: u64, text: &str) {
        let text: Box<str> = if text.contains(['\n', '\r']) {
            text.replace(['\n', '\r'], " ").into()
        } else {
            text.into()
        };
        let line = RawLine {
            feed: self.feed,
            recv_ns,
            text,
        };
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.stats.dropped.inc(),
        }
    }
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
    /// Starts the `recorder` thread for feeds named `feeds` as (venue, feed name).
    pub fn spawn(cfg: &RecordingConfig, feeds: Vec<(String, String)>) -> io::Result<Recorder> {
        let (tx, rx) = crossbeam_channel::bounded(cfg.capacity_messages);
        let stats = Arc::new(RecorderStats::default());
        let mut state = RecorderThread {
            dir: cfg.dir.clone(),
            flush_interval: cfg.flush_interval,
            files: feeds
                .into_iter()
                .map(|(venue, feed)| FeedFile {
                    venue: path_component(&venue),
                    feed: path_component(&feed),
                    day: String::new(),
                    out: None,
                    retry_at: None,
                })
                .collect(),
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

/// One feed's current file.
struct FeedFile {
    venue: String,
    feed: String,
    /// `YYYYMMDD` of the open file.
    day: String,
    /// The open file and its gzip member in progress; `None` when closed.
    out: Option<Gz>,
    /// After an error: no new open before this.
    retry_at: Option<Instant>,
}

struct RecorderThread {
    dir: PathBuf,
    flush_interval: Duration,
    files: Vec<FeedFile>,
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
    }

    fn write(&mut self, line: &RawLine) {
        let Some(f) = self.files.get_mut(line.feed) else {
            self.stats.dropped.inc();
            return;
        };
        let day: String = utc_date(line.recv_ns)
            .chars()
            .filter(|c| *c != '-')
            .collect();
        if f.day != day {
            if let Some(out) = f.out.take() {
                if let Err(e) = finish(out) {
                    self.stats.io_errors.inc();
                    log_error(&mut self.errlog, &f.feed, &e);
                }
            }
            f.day = day;
        }
        if f.out.is_none() {
            if f.retry_at.is_some_and(|t| Instant::now() < t) {
                self.stats.dropped.inc();
                return;
            }
            let path = self
                .dir
                .join(&f.venue)
                .join(format!("{}_{}.txt.gz", f.feed, f.day));
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
                log_error(&mut self.errlog, &f.feed, &e);
            }
        }
    }

    /// Finishes every open gzip member and writes it to the file; the next line starts a new one.
    fn finish_members(&mut self) {
        for f in &mut self.files {
            if let Some(out) = f.out.take() {
                if let Err(e) = finish(out) {
                    self.stats.io_errors.inc();
                    log_error(&mut self.errlog, &f.feed, &e);
                    f.retry_at = Some(Instant::now() + RETRY_AFTER);
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
