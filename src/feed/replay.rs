//! Replay of recordings through the whole pipeline (`mdrelay replay FILE…`): a collector whose
//! messages come from recording files instead of a WebSocket.
//!
//! The recordings of one venue (`<recv_ns> <message>` lines, `.gz` or plain: the layout of the
//! bundled captures, of hftbacktest's collector and of mdrelay's own raw recording) are merged by
//! receive time into one feed, parsed by the same venue parser as live data and published with
//! their **recorded** receive times. So everything downstream — the consumer, subscribers, bars,
//! CSV, the query API — sees what it saw live, and replaying the same recordings twice gives the
//! same frames (apart from relay-side timestamps: heartbeats, status frames) and byte-identical
//! CSV.
//!
//! Pace: the recorded gaps divided by `speed` (sleeping on the collector thread), a gap over
//! [`MAX_GAP_NS`] (60 s) counting as 60 s, or none at all (`speed` = 0, `--max`: as fast as the
//! pipeline takes them; the queue's `block` policy then makes the replay wait for the consumer
//! instead of dropping).
//!
//! Bad input: lines are read with [`LineReader`] (capped at [`DEFAULT_MAX_LINE_BYTES`]); a bad
//! line is logged as `file:line: reason` and skipped; an error that stops a file is logged
//! naming it and counted in the feed's `files_failed` (see [`FileCollector::run`]).
//!
//! Binance depth books (spot and futures) need a REST snapshot. Recordings carry it as a `{"lastUpdateId":…}` line
//! (as captured); when the parser asks for a snapshot, the next such line answers it. The
//! symbols and channels of a Binance recording are read from its combined-stream names
//! (`"stream":"ethusdt@depth@100ms"`) before the replay starts.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::base::clock;
use crate::base::stats::{FeedStats, RelayCounters, StopFlag};
use crate::feed::collector::parse_message;
use crate::feed::config::FeedConfig;
use crate::feed::publisher::Publisher;
use crate::feed::venue::{Subscription, VenueParser};
use crate::market::event::StatusCode;
use crate::market::instrument::Venue;
use crate::persist::recording::{self, BadLine, LineReader, DEFAULT_MAX_LINE_BYTES};
use crate::queue::Producer;

/// Lines scanned for Binance stream names before a replay starts.
const SCAN_LINES: u64 = 100_000;

/// Longest gap between two lines that pacing reproduces, ns of recorded time (60 s): a longer
/// one (a pause in the recording, a bogus receive time such as `u64::MAX`) is replayed as 60 s,
/// divided by `speed` like every gap.
pub const MAX_GAP_NS: u64 = 60_000_000_000;

/// What a recording yields next, with its line number.
enum Item {
    /// A message and its receive time.
    Line(u64, String),
    /// A line skipped, and why (reported as `file:line: reason`).
    Bad(BadLine),
    /// An error that stopped the file (cannot open, I/O, corrupt or truncated gzip).
    Stopped(io::Error),
}

/// One recording and what it yields next.
struct Source {
    path: PathBuf,
    /// `None` once ended or stopped.
    reader: Option<LineReader>,
    /// Next (merge key, line number, item), `None` once exhausted. Bad lines and errors take
    /// the time of the line before them, so they are reported in place.
    next: Option<(u64, u64, Item)>,
    /// Receive time of the last line (lines without a time take it).
    last_ns: u64,
}

impl Source {
    /// Opens `path`; a file that cannot be opened yields one [`Item::Stopped`].
    fn open(path: &Path) -> Source {
        let (reader, next) = match LineReader::open(path, DEFAULT_MAX_LINE_BYTES) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some((0, 0, Item::Stopped(e)))),
        };
        let mut s = Source {
            path: path.to_path_buf(),
            reader,
            next,
            last_ns: 0,
        };
        if s.next.is_none() {
            s.advance();
        }
        s
    }

    /// Reads the next non-empty line, bad line or stopping error into `next`.
    fn advance(&mut self) {
        self.next = None;
        let Some(r) = self.reader.as_mut() else {
            return;
        };
        loop {
            let (no, line) = match r.next_line() {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    self.next = Some((self.last_ns, r.line_no(), Item::Stopped(e)));
                    break;
                }
            };
            let line = match line {
                Ok(l) => l,
                Err(bad) => {
                    self.next = Some((self.last_ns, no, Item::Bad(bad)));
                    return;
                }
            };
            let (ns, raw) = recording::split_line(line);
            if recording::is_blank(raw) {
                continue;
            }
            let ns = ns.unwrap_or(self.last_ns);
            self.last_ns = ns;
            self.next = Some((ns, no, Item::Line(ns, raw.to_owned())));
            return;
        }
        self.reader = None;
    }
}

/// Merges several recordings by receive time (ties: file order, then line order).
struct Merged {
    sources: Vec<Source>,
}

impl Merged {
    /// The next item of any recording: (its file, its line number, the item).
    fn next(&mut self) -> Option<(&Path, u64, Item)> {
        let i = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.next.as_ref().map(|(ns, _, _)| (*ns, i)))
            .min()?
            .1;
        let s = &mut self.sources[i];
        let (_, no, item) = s.next.take()?;
        s.advance();
        Some((&s.path, no, item))
    }
}

/// The subscription a Binance recording was made with, from its stream names in its first
/// 100 000 lines. Unreadable files and bad lines are passed over here: the replay
/// reports them.
pub fn binance_subscription(paths: &[PathBuf]) -> Subscription {
    let mut symbols: Vec<String> = Vec::new();
    let mut channels: Vec<String> = Vec::new();
    for p in paths {
        let Ok(mut reader) = LineReader::open(p, DEFAULT_MAX_LINE_BYTES) else {
            continue;
        };
        while let Ok(Some((no, line))) = reader.next_line() {
            if no > SCAN_LINES {
                break;
            }
            let Ok(line) = line else {
                continue;
            };
            let Some(at) = line.find("\"stream\":\"") else {
                continue;
            };
            let rest = &line[at + 10..];
            let Some(end) = rest.find('"') else {
                continue;
            };
            let Some((sym, chan)) = rest[..end].split_once('@') else {
                continue;
            };
            let sym = sym.to_ascii_uppercase();
            if !symbols.contains(&sym) {
                symbols.push(sym);
            }
            if !channels.iter().any(|c| c == chan) {
                channels.push(chan.to_owned());
            }
        }
    }
    Subscription {
        symbols,
        channels,
        book_depth: 0,
    }
}

/// The venue of a recording from its directory (`…/binance/x.txt.gz`), as the bundled captures
/// and the raw recorder lay them out.
pub fn venue_from_path(path: &Path) -> Option<Venue> {
    path.parent()?
        .file_name()?
        .to_str()
        .and_then(Venue::from_name)
}

/// A feed replaying recordings, run on its collector thread.
pub struct FileCollector {
    cfg: FeedConfig,
    paths: Vec<PathBuf>,
    speed: f64,
    parser: Box<dyn VenueParser>,
    out: Publisher,
    stop: Arc<StopFlag>,
    /// Symbols whose book waits for a snapshot line.
    snapshot_requests: Vec<String>,
    /// Discarded subscribe replies the parser wants to send.
    outgoing: Vec<String>,
    /// Subscribers to wait for before the first line, and where to count them.
    wait_subscribers: (u64, Arc<RelayCounters>),
}

impl FileCollector {
    /// A replay of `paths` at `speed` (0 = as fast as possible) into `producer`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: FeedConfig,
        paths: Vec<PathBuf>,
        speed: f64,
        parser: Box<dyn VenueParser>,
        producer: Producer,
        stats: Arc<FeedStats>,
        stop: Arc<StopFlag>,
        wait_subscribers: (u64, Arc<RelayCounters>),
    ) -> Self {
        let venue = cfg.venue;
        FileCollector {
            wait_subscribers,
            cfg,
            paths,
            speed,
            parser,
            out: Publisher::new(venue, producer, stats),
            stop,
            snapshot_requests: Vec::new(),
            outgoing: Vec::new(),
        }
    }

    /// Replays every line, then ends the feed (dropping the queue tells the consumer).
    ///
    /// A bad line (not UTF-8, over [`DEFAULT_MAX_LINE_BYTES`]) or one the parser rejects is
    /// logged as `file:line: reason`, counted in `parse_errors` and skipped. An error that stops
    /// a file (it cannot be opened, an I/O error, a corrupt or truncated gzip) is logged naming
    /// the file and counted in `files_failed` (`mdrelay replay` then exits 1); every line before
    /// it, and the other files, are replayed.
    pub fn run(mut self) {
        self.replay();
        self.out.finish();
    }

    fn replay(&mut self) {
        let mut sub = self.cfg.subscription.clone();
        if self.cfg.venue.is_binance() && sub.symbols.is_empty() {
            sub = binance_subscription(&self.paths);
        }
        // Sets up parser state (Binance depth books); the requests themselves go nowhere.
        let _ = self.parser.subscribe_requests(&sub);
        let mut merged = Merged {
            sources: self.paths.iter().map(|p| Source::open(p)).collect(),
        };
        let (want, subs) = &self.wait_subscribers;
        if *want > 0 {
            tracing::info!(feed = %self.cfg.name, "waiting for {want} subscriber(s)");
            while subs.subscribers.get() < *want {
                if self.stop.is_stopped() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.out.stats().collector.connects.inc();
        self.out.stats().collector.connected.set(1);
        let files = self.paths.len();
        self.out.feed_status(
            StatusCode::Connected,
            0,
            &format!("replay of {files} recording(s)"),
        );
        let started = Instant::now();
        // Recorded time played so far (gaps capped at MAX_GAP_NS), and the last receive time.
        let (mut played_ns, mut prev_ns): (u64, Option<u64>) = (0, None);
        let mut n: u64 = 0;
        while let Some((path, line, item)) = merged.next() {
            n += 1;
            if n % 256 == 0 && (self.stop.is_stopped() || self.out.consumer_gone()) {
                break;
            }
            let (recv_ns, raw) = match item {
                Item::Line(ns, raw) => (ns, raw),
                Item::Bad(why) => {
                    self.out.stats().collector.parse_errors.inc();
                    tracing::warn!(feed = %self.cfg.name, "{}:{line}: {why}, skipped", path.display());
                    continue;
                }
                Item::Stopped(e) => {
                    self.out.stats().collector.files_failed.inc();
                    let at = match line {
                        0 => "before its first line".to_owned(),
                        n => format!("after line {n}"),
                    };
                    tracing::error!(
                        feed = %self.cfg.name,
                        "{}: {e}; replay of this file stopped {at}",
                        path.display()
                    );
                    continue;
                }
            };
            if self.speed > 0.0 {
                let gap = recv_ns.saturating_sub(prev_ns.unwrap_or(recv_ns));
                played_ns = played_ns.saturating_add(gap.min(MAX_GAP_NS));
                prev_ns = Some(recv_ns);
                let due = Duration::try_from_secs_f64(played_ns as f64 / 1e9 / self.speed)
                    .ok()
                    .and_then(|d| started.checked_add(d));
                self.pace(due);
            }
            let errors_before = self.out.stats().collector.parse_errors.get();
            let t_recv = clock::mono_ns();
            if self.cfg.venue.is_binance()
                && raw.starts_with("{\"lastUpdateId\"")
                && !self.snapshot_requests.is_empty()
            {
                let symbol = self.snapshot_requests.remove(0);
                let c = &self.out.stats().collector;
                c.frames.inc();
                c.snapshots.inc();
                let out = &mut self.out;
                let r = self.parser.on_rest_snapshot(&symbol, &raw, &mut |sym, ev| {
                    out.on_event(sym, ev, t_recv, recv_ns)
                });
                self.out.end_message();
                self.out.record_sync_waits(&mut *self.parser, recv_ns);
                if let Err(e) = r {
                    self.out.stats().collector.snapshot_failures.inc();
                    tracing::warn!(feed = %self.cfg.name, "bad book snapshot for {symbol}: {e}");
                }
            } else {
                parse_message(
                    &mut *self.parser,
                    &mut self.out,
                    &self.cfg.name,
                    &raw,
                    t_recv,
                    recv_ns,
                );
            }
            if self.out.stats().collector.parse_errors.get() > errors_before {
                tracing::warn!(feed = %self.cfg.name, "{}:{line}: parse error, skipped", path.display());
            }
            self.parser.drain_outgoing(&mut self.outgoing);
            self.outgoing.clear();
            self.parser
                .drain_snapshot_requests(&mut self.snapshot_requests);
            self.snapshot_requests.dedup();
        }
        self.out.flush_pending();
        self.out.stats().collector.connected.set(0);
        self.out.stats().collector.subscribed.set(0);
        self.out
            .feed_status(StatusCode::Disconnected, 0, "end of recording");
    }

    /// Sleeps until `due` (`None`: a time too far to represent, i.e. until a stop) unless
    /// stopping (short sleeps so a stop is seen within 50 ms).
    fn pace(&self, due: Option<Instant>) {
        loop {
            let now = Instant::now();
            if due.is_some_and(|d| now >= d) || self.stop.is_stopped() {
                return;
            }
            let left = due.map_or(Duration::MAX, |d| d - now);
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}
