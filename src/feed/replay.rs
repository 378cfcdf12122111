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
//! Pace: the recorded gaps divided by `speed` (sleeping on the collector thread), or none at all
//! (`speed` = 0, `--max`: as fast as the pipeline takes them; the queue's `block` policy then
//! makes the replay wait for the consumer instead of dropping).
//!
//! Binance depth books need a REST snapshot. Recordings carry it as a `{"lastUpdateId":…}` line
//! (as captured); when the parser asks for a snapshot, the next such line answers it. The
//! symbols and channels of a Binance recording are read from its combined-stream names
//! (`"stream":"ethusdt@depth@100ms"`) before the replay starts.

use std::io::{self, BufRead};
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
use crate::persist::recording;
use crate::queue::Producer;

/// Lines scanned for Binance stream names before a replay starts.
const SCAN_LINES: usize = 100_000;

/// One open recording and its next line.
struct Source {
    path: PathBuf,
    lines: io::Lines<Box<dyn BufRead + Send>>,
    /// Next (recv_ns, message), `None` once exhausted.
    next: Option<(u64, String)>,
    /// Receive time of the last line (lines without a time take it).
    last_ns: u64,
    line_no: u64,
}

impl Source {
    fn open(path: &Path) -> io::Result<Source> {
        let mut s = Source {
            path: path.to_path_buf(),
            lines: recording::open(path)?.lines(),
            next: None,
            last_ns: 0,
            line_no: 0,
        };
        s.advance()?;
        Ok(s)
    }

    /// Reads the next non-empty line into `next`.
    fn advance(&mut self) -> io::Result<()> {
        self.next = None;
        for line in self.lines.by_ref() {
            let line = line?;
            self.line_no += 1;
            let (ns, raw) = recording::split_line(&line);
            if raw.trim().is_empty() {
                continue;
            }
            let ns = ns.unwrap_or(self.last_ns);
            self.last_ns = ns;
            self.next = Some((ns, raw.to_owned()));
            break;
        }
        Ok(())
    }
}

/// A line that could not be read: the file, the line number, why.
type ReadError = (PathBuf, u64, io::Error);

/// Merges several recordings by receive time (ties: file order, then line order).
struct Merged {
    sources: Vec<Source>,
}

impl Merged {
    fn next(&mut self) -> Option<Result<(u64, String), ReadError>> {
        let i = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.next.as_ref().map(|(ns, _)| (*ns, i)))
            .min()?
            .1;
        let s = &mut self.sources[i];
        let item = s.next.take()?;
        if let Err(e) = s.advance() {
            let at = s.line_no;
            let path = s.path.clone();
            s.next = None;
            return Some(Err((path, at, e)));
        }
        Some(Ok(item))
    }
}

/// The subscription a Binance recording was made with, from its stream names.
pub fn binance_subscription(paths: &[PathBuf]) -> io::Result<Subscription> {
    let mut symbols: Vec<String> = Vec::new();
    let mut channels: Vec<String> = Vec::new();
    for p in paths {
        for line in recording::open(p)?.lines().take(SCAN_LINES) {
            let line = line?;
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
    Ok(Subscription {
        symbols,
        channels,
        book_depth: 0,
    })
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
    pub fn run(mut self) {
        if let Err(e) = self.replay() {
            tracing::error!(feed = %self.cfg.name, "replay stopped: {e}");
            self.out
                .feed_status(StatusCode::Disconnected, 0, &format!("replay stopped: {e}"));
        }
        self.out.finish();
    }

    fn replay(&mut self) -> io::Result<()> {
        let mut sub = self.cfg.subscription.clone();
        if self.cfg.venue == Venue::Binance && sub.symbols.is_empty() {
            sub = binance_subscription(&self.paths)?;
        }
        // Sets up parser state (Binance depth books); the requests themselves go nowhere.
        let _ = self.parser.subscribe_requests(&sub);
        let mut merged = Merged {
            sources: self
                .paths
                .iter()
                .map(|p| {
                    Source::open(p)
                        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
                })
                .collect::<io::Result<_>>()?,
        };
        let (want, subs) = &self.wait_subscribers;
        if *want > 0 {
            tracing::info!(feed = %self.cfg.name, "waiting for {want} subscriber(s)");
            while subs.subscribers.get() < *want {
                if self.stop.is_stopped() {
                    return Ok(());
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
        let mut first_ns: Option<u64> = None;
        let mut n: u64 = 0;
        while let Some(item) = merged.next() {
            let (recv_ns, raw) = match item {
                Ok(x) => x,
                Err((path, line, e)) => {
                    self.out.stats().collector.parse_errors.inc();
                    tracing::warn!(feed = %self.cfg.name, "{}:{line}: {e}", path.display());
                    continue;
                }
            };
            n += 1;
            if n % 256 == 0 && (self.stop.is_stopped() || self.out.consumer_gone()) {
                break;
            }
            if self.speed > 0.0 {
                let first = *first_ns.get_or_insert(recv_ns);
                let due = Duration::from_secs_f64(
                    recv_ns.saturating_sub(first) as f64 / 1e9 / self.speed,
                );
                self.pace(started + due);
            }
            let t_recv = clock::mono_ns();
            if self.cfg.venue == Venue::Binance
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
        Ok(())
    }

    /// Sleeps until `due` unless stopping (short sleeps so a stop is seen within 50 ms).
    fn pace(&self, due: Instant) {
        loop {
            let now = Instant::now();
            if now >= due || self.stop.is_stopped() {
                return;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
    }
}
