//! End-to-end latency and throughput: exchange → collector → queue → consumer → a subscriber on the
//! real Unix socket, at fixed offered rates and at maximum, for every transport and consumer idle
//! strategy of mdrelay side by side with two baselines built from the same parser and encoder:
//! a thread pipeline on `std::sync::mpsc::sync_channel`, and the way async services are usually
//! built (a tokio multi-thread runtime, tokio-tungstenite, a bounded tokio mpsc channel, a
//! tokio `UnixStream`).
//!
//! Every variant measures the same two points with the same clock ([`mdrelay::base::clock::mono_ns`]):
//! `t_recv`, taken on the collector right after the WebSocket frame read returns (before
//! parsing), and `t_write`, taken on the consumer right after the write(2) to the subscriber
//! socket that carried the frame returns. mdrelay variants run the relay's own collector,
//! publisher, queue, consumer, cache and relay code, started by `run::start` itself, and report
//! the consumer's own published HDR histogram (`Running::published`).
//! Baselines record `t_write − t_recv` in the same kind of histogram.
//!
//! `mdrelay default` is the relay with the shipped configuration (`config/default.toml`) as it
//! is: only the bench's plumbing is set (socket path, the source's URL, `trade` only, the other
//! feeds, replay, HTTP and CSV off), so transport, idle strategy and batching are whatever ships.
//!
//! The source is a WebSocket server thread serving real Binance `ethusdt@trade` messages from
//! the bundled capture, cycled, each with a fresh trade id. Its frames are encoded before the run
//! (server frames are unmasked): sending one is a copy into the batch buffer plus the ten digits
//! of its trade id written in place, so the source's own CPU per message is small next to the
//! pipeline's. At a fixed rate, message `i` is due at
//! `t0 + i / rate`: the source sleeps until the next deadline and then sends every message that is
//! due, so the average rate is exact while the sleep's granularity (~60 µs here) groups messages
//! in bursts at the higher rates (`E2E_SOURCE_SPIN_US` makes it spin that long before each
//! deadline instead: exact spacing, at the cost of a busy core). At `max` it sends as fast as
//! TCP takes it, 64 messages per write. A subscriber thread reads the relay socket, frames by
//! length and counts trade frames; throughput is what it received per second during the
//! measurement window, and the count check compares its total with what the source sent.
//!
//! CPU per delivered message (µs) is the whole process's CPU time during the window (source,
//! pipeline and subscriber threads) over the messages the subscriber received in it.
//!
//! Output: a markdown table on stdout, `target/bench-report/e2e.json`, and
//! `target/bench-report/latency.svg` (percentile curves at 50k msg/s). Progress goes to stderr.
//! Knobs (environment): `E2E_RATES` (`10000,50000,100000,max`), `E2E_WARMUP_MS` (500),
//! `E2E_MEASURE_MS` (2500), `E2E_VARIANTS` (comma-separated name filters), `E2E_SOURCE_SPIN_US`,
//! `E2E_REPEAT` (1: every point is run that many times, rates × variants in turn, and the table
//! gives each row's median over the runs and the median of the per-run ratios to the tokio
//! baseline of the same run);
//! `E2E_REPLOT=path/to/e2e.json` redraws the 50k picture of an earlier run without measuring.
//! Under `cargo test` (no `--bench` argument) it runs a short smoke pass of every variant and
//! writes no report.

// A benchmark states its preconditions with expect: a failed one is the report.
#![allow(clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;

use mdrelay::base::clock::mono_ns;
use mdrelay::config::{self, Config, Sources};
use mdrelay::consumer::thread::{new_histogram, SharedPublished};
use mdrelay::feed::venue::{self, Subscription};
use mdrelay::market::event::Event;
use mdrelay::market::instrument::{instrument_id, Venue};
use mdrelay::queue::{Envelope, Transport};
use mdrelay::relay::cache::Cache;
use mdrelay::run;
use mdrelay::wire::protocol::{self, flags, FrameBuf, Meta, MsgType};

/// Frames a baseline consumer takes per write, as mdrelay's `consumer.batch_frames` default.
const BATCH_FRAMES: usize = 256;
/// Queue capacity of the baselines, as mdrelay's `queue_capacity_frames` default.
const QUEUE_CAPACITY: usize = 65_536;
/// Messages per write at `max`.
const MAX_RATE_BATCH: u64 = 64;

// ---------------------------------------------------------------------------------------------
// What is measured.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rate {
    Fixed(u64),
    Max,
}

impl Rate {
    fn label(self) -> String {
        match self {
            Rate::Fixed(r) if r % 1000 == 0 => format!("{}k/s", r / 1000),
            Rate::Fixed(r) => format!("{r}/s"),
            Rate::Max => "max".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// mdrelay with the shipped default configuration.
    Default,
    /// mdrelay's own pipeline.
    Relay(Transport, &'static str),
    /// Threads and `std::sync::mpsc::sync_channel`, blocking receive.
    StdMpsc,
    /// tokio runtime, tokio-tungstenite, tokio mpsc, tokio UnixStream.
    Tokio,
}

impl Variant {
    fn name(self) -> String {
        match self {
            Variant::Default => "mdrelay default".into(),
            Variant::Relay(Transport::Channel, idle) => format!("mdrelay channel {idle}"),
            Variant::Relay(Transport::Ring, idle) => format!("mdrelay ring {idle}"),
            Variant::StdMpsc => "std mpsc (threads)".into(),
            Variant::Tokio => "tokio baseline".into(),
        }
    }

    fn all() -> Vec<Variant> {
        let mut v = vec![Variant::Default];
        for t in [Transport::Channel, Transport::Ring] {
            for idle in ["busy_spin", "yield", "backoff", "park"] {
                v.push(Variant::Relay(t, idle));
            }
        }
        v.push(Variant::StdMpsc);
        v.push(Variant::Tokio);
        v
    }
}

#[derive(Debug, Clone)]
struct Settings {
    rates: Vec<Rate>,
    warmup: Duration,
    measure: Duration,
    variants: Vec<Variant>,
    spin_ns: u64,
    smoke: bool,
    /// Runs of every point (`E2E_REPEAT`), ≥ 1.
    repeat: usize,
}

/// One (variant, rate) measurement.
struct Point {
    /// Which run of `E2E_REPEAT` (0-based).
    run: usize,
    variant: Variant,
    rate: Rate,
    /// `t_write − t_recv`, ns, over the measurement window.
    hist: Histogram<u64>,
    /// Messages the source sent (whole run).
    sent: u64,
    /// Trade frames the subscriber received (whole run).
    received: u64,
    /// Trade frames per second the subscriber received during the window.
    throughput: f64,
    /// Frames per write(2) to the subscriber (whole run).
    frames_per_write: f64,
    /// Process CPU time / wall time during the window (2.0 = both cores), source and
    /// subscriber included.
    cpu: f64,
    /// Events the pipeline counted as dropped (mdrelay's `dropped_events`).
    dropped: u64,
}

impl Point {
    /// Process CPU µs per message delivered in the window.
    fn cpu_us_per_msg(&self) -> f64 {
        if self.throughput > 0.0 {
            self.cpu / self.throughput * 1e6
        } else {
            f64::NAN
        }
    }
    fn complete(&self) -> bool {
        self.received == self.sent && self.dropped == 0
    }
    fn q(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Source: a WebSocket server playing Binance trades at a rate.

/// Digits of every trade id the source writes (ids start at 9 000 000 000).
const ID_DIGITS: usize = 10;

/// Real trade messages as unmasked WebSocket text frames, encoded once before the run, each
/// with the byte offset of its `ID_DIGITS`-digit trade id.
fn trade_frames() -> Vec<(Vec<u8>, usize)> {
    trade_templates()
        .into_iter()
        .map(|(pre, post)| {
            let payload = format!("{pre}{}{post}", "0".repeat(ID_DIGITS));
            let len = payload.len();
            let mut f = vec![0x81u8]; // FIN + text
            if len < 126 {
                f.push(len as u8);
            } else {
                assert!(len <= 0xffff, "a trade message fits a 16-bit length");
                f.push(126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            let at = f.len() + pre.len();
            f.extend_from_slice(payload.as_bytes());
            (f, at)
        })
        .collect()
}

/// Writes `id` as `ID_DIGITS` decimal digits into `out`.
fn put_id(out: &mut [u8], mut id: u64) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (id % 10) as u8;
        id /= 10;
    }
}

/// Real trade messages split around the trade id: `prefix`, id, `suffix`.
fn trade_templates() -> Vec<(String, String)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/binance/spot_ethusdt_20240808.txt.gz");
    let recs = mdrelay::persist::recording::read_all(&path).expect("bundled Binance capture");
    let out: Vec<(String, String)> = recs
        .into_iter()
        .filter(|r| r.raw.contains("\"ethusdt@trade\""))
        .filter_map(|r| {
            let at = r.raw.find("\"t\":")? + 4;
            let len = r.raw[at..].find(|c: char| !c.is_ascii_digit())?;
            Some((r.raw[..at].to_owned(), r.raw[at + len..].to_owned()))
        })
        .take(2000)
        .collect();
    assert!(out.len() > 100, "trade messages in the capture");
    out
}

#[derive(Default)]
struct SourceShared {
    /// A client subscribed; waiting for `go`.
    ready: AtomicBool,
    go: AtomicBool,
    stop: AtomicBool,
    /// Messages sent so far.
    sent: AtomicU64,
    /// Streaming is over; `sent` is final.
    finished: AtomicBool,
    /// Mono ns of the measurement window (set before the first message).
    window_start_ns: AtomicU64,
    window_end_ns: AtomicU64,
}

struct Source {
    addr: SocketAddr,
    shared: Arc<SourceShared>,
    thread: Option<JoinHandle<()>>,
}

impl Source {
    fn start(rate: Rate, warmup: Duration, measure: Duration, spin_ns: u64) -> Source {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind source");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(SourceShared::default());
        let sh = shared.clone();
        let frames = trade_frames();
        let thread = thread::Builder::new()
            .name("bench-source".into())
            .spawn(move || serve(listener, &sh, &frames, rate, warmup, measure, spin_ns))
            .expect("spawn source");
        Source {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/binance/stream", self.addr)
    }

    fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    listener: TcpListener,
    sh: &SourceShared,
    frames: &[(Vec<u8>, usize)],
    rate: Rate,
    warmup: Duration,
    measure: Duration,
    spin_ns: u64,
) {
    let stream = loop {
        if sh.stop.load(Ordering::Acquire) {
            return;
        }
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("source accept: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    stream.set_nodelay(true).expect("nodelay");
    let mut ws = tungstenite::accept(stream).expect("websocket handshake");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    // The subscribe request, answered as Binance does.
    loop {
        if sh.stop.load(Ordering::Acquire) {
            return;
        }
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let id: serde_json::Value = serde_json::from_str(t.as_str())
                    .map(|v: serde_json::Value| v["id"].clone())
                    .unwrap_or_default();
                ws.send(tungstenite::Message::text(format!(
                    "{{\"result\":null,\"id\":{id}}}"
                )))
                .expect("ack");
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("source: subscribe: {e}"),
        }
    }
    sh.ready.store(true, Ordering::Release);
    while !sh.go.load(Ordering::Acquire) {
        if sh.stop.load(Ordering::Acquire) {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let t0 = mono_ns();
    let ws_start = t0 + warmup.as_nanos() as u64;
    let end = ws_start + measure.as_nanos() as u64;
    sh.window_start_ns.store(ws_start, Ordering::Release);
    sh.window_end_ns.store(end, Ordering::Release);
    let mut sent: u64 = 0;
    let mut trade_id: u64 = 9_000_000_000;
    // One write per due batch, from a buffer that stops growing after the first batches.
    let mut batch: Vec<u8> = Vec::with_capacity(1024 * 256);
    loop {
        let now = mono_ns();
        if now >= end || sh.stop.load(Ordering::Acquire) {
            break;
        }
        let due = match rate {
            Rate::Fixed(r) => ((now - t0) as u128 * r as u128 / 1_000_000_000) as u64 + 1,
            Rate::Max => sent + MAX_RATE_BATCH,
        };
        let n = due.saturating_sub(sent).min(1024);
        batch.clear();
        for _ in 0..n {
            let (frame, at) = &frames[(trade_id % frames.len() as u64) as usize];
            trade_id += 1;
            let start = batch.len();
            batch.extend_from_slice(frame);
            put_id(&mut batch[start + at..start + at + ID_DIGITS], trade_id);
        }
        if n > 0 {
            // Straight to the socket: the handshake and the ack went through tungstenite, which
            // holds no unsent bytes after its flush.
            ws.get_mut().write_all(&batch).expect("source write");
            sent += n;
            sh.sent.store(sent, Ordering::Release);
        }
        if let Rate::Fixed(r) = rate {
            let next = t0 + (sent as u128 * 1_000_000_000 / r as u128) as u64;
            let now = mono_ns();
            if next > now + spin_ns {
                thread::sleep(Duration::from_nanos(next - now - spin_ns));
            }
            while mono_ns() < next {
                std::hint::spin_loop();
            }
        }
    }
    sh.finished.store(true, Ordering::Release);
    // Stay connected (a closed connection would make the collector reconnect) until told.
    let _ = ws
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(20)));
    while !sh.stop.load(Ordering::Acquire) {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
}

// ---------------------------------------------------------------------------------------------
// Subscriber: reads the relay socket and counts trade frames.

struct Subscriber {
    trades: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl Subscriber {
    fn connect(path: &Path) -> Subscriber {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(2)),
                Err(e) => panic!("subscriber connect: {e}"),
            }
        };
        let trades = Arc::new(AtomicU64::new(0));
        let t = trades.clone();
        let thread = thread::Builder::new()
            .name("bench-subscriber".into())
            .spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                let mut have = 0;
                let mut count = 0u64;
                loop {
                    let n = match stream.read(&mut buf[have..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    have += n;
                    let mut at = 0;
                    while let Ok(len) = protocol::frame_len(&buf[at..have]) {
                        if have - at < len {
                            break;
                        }
                        let h = protocol::peek_header(&buf[at..]);
                        if h.msg_type == MsgType::Trade as u8 && h.flags & flags::CACHED == 0 {
                            count += 1;
                        }
                        at += len;
                    }
                    buf.copy_within(at..have, 0);
                    have -= at;
                    t.store(count, Ordering::Release);
                }
            })
            .expect("spawn subscriber");
        Subscriber { trades, thread }
    }

    fn count(&self) -> u64 {
        self.trades.load(Ordering::Acquire)
    }
}

// ---------------------------------------------------------------------------------------------
// The pipelines.

/// A running pipeline of one variant.
trait Pipeline {
    /// True once the consumer has admitted the subscriber.
    fn admitted(&self) -> bool;
    /// The measurement window starts now.
    fn window_start(&mut self);
    /// Frames the subscriber socket was written with, and write calls.
    fn writes(&self) -> (u64, u64);
    /// Events dropped inside the pipeline.
    fn dropped(&self) -> u64;
    /// Stops everything and returns the window's histogram.
    fn finish(self: Box<Self>, source: Source) -> Histogram<u64>;
}

fn temp_socket() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("mdrelay-e2e-")
        .tempdir()
        .expect("temp dir");
    let p = dir.path().join("relay.sock");
    (dir, p)
}

/// The shipped configuration with only the bench's plumbing set (see the module doc).
fn default_config(socket: &Path, url: &str) -> Config {
    config::load(&Sources {
        sets: plumbing(socket, url),
        ..Sources::default()
    })
    .expect("the shipped configuration is valid")
}

/// Settings every mdrelay variant needs to run against the bench's source and subscriber.
fn plumbing(socket: &Path, url: &str) -> Vec<String> {
    vec![
        "replay.enabled=false".into(),
        "http.enabled=false".into(),
        // CSV persistence runs on its own thread off the relay path; not measured here.
        "writer.enabled=false".into(),
        format!("relay.socket_path={:?}", socket.display().to_string()),
        format!("feeds.binance.url=\"{url}\""),
        "feeds.binance.channels=[\"trade\"]".into(),
        "feeds.coinbase.enabled=false".into(),
        "feeds.kraken_v1.enabled=false".into(),
        "feeds.binance_usdm.enabled=false".into(),
    ]
}

fn relay_config(socket: &Path, url: &str, transport: Transport, idle: &str) -> Config {
    let t = match transport {
        Transport::Channel => "channel",
        Transport::Ring => "ring",
    };
    let mut sets = plumbing(socket, url);
    sets.push(format!("consumer.idle=\"{idle}\""));
    sets.push(format!("feeds.binance.transport=\"{t}\""));
    config::load(&Sources {
        sets,
        ..Sources::default()
    })
    .expect("bench config is valid")
}

/// mdrelay: the relay as `run::start` builds it (writer, recorder, HTTP off in its config).
struct RelayPipeline {
    running: Option<run::Running>,
    published: SharedPublished,
    at_window_start: Option<Histogram<u64>>,
    /// Holds the socket directory; dropped after the relay.
    _dir: tempfile::TempDir,
}

impl RelayPipeline {
    fn start(cfg: &Config, dir: tempfile::TempDir) -> RelayPipeline {
        let running = run::start(cfg.clone()).expect("relay starts");
        RelayPipeline {
            published: running.published(),
            running: Some(running),
            at_window_start: None,
            _dir: dir,
        }
    }

    fn running(&self) -> &run::Running {
        // Present until `finish`, which consumes the pipeline.
        self.running.as_ref().expect("relay running")
    }
}

impl Pipeline for RelayPipeline {
    fn admitted(&self) -> bool {
        self.running().relay_counters().subscribers.get() >= 1
    }
    fn window_start(&mut self) {
        // The consumer publishes every 500 ms: the window starts at its first publication after
        // the warm-up, so no warm-up sample is in it.
        let before = self.published.load().latency_total[0].len();
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let p = self.published.load();
            if p.latency_total[0].len() != before || Instant::now() > deadline {
                self.at_window_start = Some(p.latency_total[0].clone());
                return;
            }
            drop(p);
            thread::sleep(Duration::from_millis(1));
        }
    }
    fn writes(&self) -> (u64, u64) {
        let c = self.running().relay_counters();
        (c.frames_sent.get(), c.writes.get())
    }
    fn dropped(&self) -> u64 {
        self.running()
            .feed_stats(0)
            .map_or(0, |s| s.collector.dropped_events.get())
    }
    fn finish(mut self: Box<Self>, source: Source) -> Histogram<u64> {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
        source.stop();
        let mut total = self.published.load().latency_total[0].clone();
        if let Some(start) = &self.at_window_start {
            total.subtract(start).expect("window histogram");
        }
        total
    }
}

/// The baselines' sending side: instrument definition first, per-instrument sequence, the same
/// encoder as mdrelay's publisher (`LAST_IN_EVENT` on each frame: one event per trade message).
#[derive(Default)]
struct MiniPublisher {
    /// symbol → (id, sequence).
    instruments: FxHashMap<String, (mdrelay::market::instrument::InstrumentId, u64)>,
    buf: FrameBuf,
}

impl MiniPublisher {
    #[inline]
    fn on_event(
        &mut self,
        symbol: Option<&str>,
        ev: &Event<'_>,
        t_recv: u64,
        out: &mut Vec<Envelope>,
    ) {
        let Some(symbol) = symbol else { return };
        let recv_wall = mdrelay::base::clock::wall_ns_at(t_recv);
        if !self.instruments.contains_key(symbol) {
            {
                let id = instrument_id(Venue::Binance.name(), symbol);
                protocol::encode_instrument_def(
                    &mut self.buf,
                    &Meta {
                        instrument_id: id,
                        sequence: 0,
                        recv_ts_ns: recv_wall,
                        flags: 0,
                    },
                    Venue::Binance.name(),
                    symbol,
                );
                out.push(Envelope {
                    frame: self.buf.clone(),
                    t_recv_ns: 0,
                    t_enqueue_ns: mono_ns(),
                });
                self.instruments.insert(symbol.to_owned(), (id, 0));
            }
        }
        let Some((id, seq)) = self.instruments.get_mut(symbol) else {
            return;
        };
        *seq += 1;
        let meta = Meta {
            instrument_id: *id,
            sequence: *seq,
            recv_ts_ns: recv_wall,
            flags: flags::LAST_IN_EVENT,
        };
        match ev {
            Event::Trade(t) => protocol::encode_trade(&mut self.buf, &meta, t),
            Event::Quote(q) => protocol::encode_quote(&mut self.buf, &meta, q),
            _ => return,
        }
        out.push(Envelope {
            frame: self.buf.clone(),
            t_recv_ns: t_recv,
            t_enqueue_ns: mono_ns(),
        });
    }
}

fn trade_subscription() -> Subscription {
    Subscription {
        symbols: vec!["ETHUSDT".into()],
        channels: vec!["trade".into()],
        book_depth: 0,
    }
}

/// The baselines' consumer step: cache update and append to the subscriber's buffer.
#[inline]
fn consume(cache: &mut Cache, env: &Envelope, out: &mut Vec<u8>, turn: &mut Vec<u64>) {
    let h = protocol::peek_header(&env.frame);
    if cache.apply(0, &h, &env.frame).is_ok() {
        out.extend_from_slice(&env.frame);
        if env.t_recv_ns != 0 {
            turn.push(env.t_recv_ns);
        }
    }
}

#[inline]
fn record(hist: &mut Histogram<u64>, turn: &[u64], t_write: u64, window_start: u64) {
    for &t_recv in turn {
        if window_start != 0 && t_recv >= window_start {
            let _ = hist.record(t_write.saturating_sub(t_recv).max(1));
        }
    }
}

#[derive(Default)]
struct BaselineCounters {
    stop: AtomicBool,
    window_start_ns: AtomicU64,
    frames: AtomicU64,
    writes: AtomicU64,
}

/// Threads + `std::sync::mpsc::sync_channel`: the collector blocks on a full channel, the
/// consumer blocks in `recv`, drains up to [`BATCH_FRAMES`] and writes them with one blocking
/// `write_all`.
struct StdPipeline {
    counters: Arc<BaselineCounters>,
    collector: JoinHandle<()>,
    consumer: JoinHandle<Histogram<u64>>,
    _dir: tempfile::TempDir,
}

impl StdPipeline {
    fn start(url: String, socket: PathBuf, dir: tempfile::TempDir) -> StdPipeline {
        let counters = Arc::new(BaselineCounters::default());
        let listener = UnixListener::bind(&socket).expect("bind");
        let (tx, rx) = std::sync::mpsc::sync_channel::<Envelope>(QUEUE_CAPACITY);
        let c = counters.clone();
        let collector = thread::Builder::new()
            .name("std-collector".into())
            .spawn(move || {
                let tcp = TcpStream::connect(
                    url.trim_start_matches("ws://")
                        .split('/')
                        .next()
                        .unwrap_or(""),
                )
                .expect("connect source");
                tcp.set_nodelay(true).expect("nodelay");
                let (mut ws, _) = tungstenite::client(url.as_str(), tcp).expect("handshake");
                // Wake every 50 ms to look at the stop flag, as mdrelay's collector does.
                ws.get_ref()
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("timeout");
                let mut parser = venue::parser_for(Venue::Binance);
                for r in parser.subscribe_requests(&trade_subscription()) {
                    ws.send(tungstenite::Message::text(r)).expect("subscribe");
                }
                let mut publisher = MiniPublisher::default();
                let mut out = Vec::with_capacity(8);
                while !c.stop.load(Ordering::Acquire) {
                    let msg = ws.read();
                    let t_recv = mono_ns();
                    match msg {
                        Ok(tungstenite::Message::Text(text)) => {
                            let _ = parser.parse(
                                text.as_str(),
                                mdrelay::base::clock::wall_ns_at(t_recv),
                                &mut |sym, ev| publisher.on_event(sym, ev, t_recv, &mut out),
                            );
                            for env in out.drain(..) {
                                if tx.send(env).is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e))
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                }
            })
            .expect("spawn");
        let c = counters.clone();
        let consumer = thread::Builder::new()
            .name("std-consumer".into())
            .spawn(move || {
                let (mut stream, _) = listener.accept().expect("accept subscriber");
                let mut cache = Cache::default();
                let mut hist = new_histogram();
                let mut out = Vec::with_capacity(1 << 16);
                let mut turn = Vec::with_capacity(BATCH_FRAMES);
                while let Ok(first) = rx.recv() {
                    consume(&mut cache, &first, &mut out, &mut turn);
                    let mut n = 1;
                    while n < BATCH_FRAMES {
                        match rx.try_recv() {
                            Ok(e) => consume(&mut cache, &e, &mut out, &mut turn),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                    if stream.write_all(&out).is_err() {
                        break;
                    }
                    let t_write = mono_ns();
                    c.writes.fetch_add(1, Ordering::Relaxed);
                    c.frames.fetch_add(n as u64, Ordering::Relaxed);
                    record(
                        &mut hist,
                        &turn,
                        t_write,
                        c.window_start_ns.load(Ordering::Relaxed),
                    );
                    out.clear();
                    turn.clear();
                }
                hist
            })
            .expect("spawn");
        StdPipeline {
            counters,
            collector,
            consumer,
            _dir: dir,
        }
    }
}

impl Pipeline for StdPipeline {
    fn admitted(&self) -> bool {
        true
    }
    fn window_start(&mut self) {}
    fn writes(&self) -> (u64, u64) {
        (
            self.counters.frames.load(Ordering::Relaxed),
            self.counters.writes.load(Ordering::Relaxed),
        )
    }
    fn dropped(&self) -> u64 {
        0
    }
    fn finish(self: Box<Self>, source: Source) -> Histogram<u64> {
        let StdPipeline {
            counters,
            collector,
            consumer,
            ..
        } = *self;
        counters.stop.store(true, Ordering::Release);
        collector.join().expect("collector");
        source.stop();
        consumer.join().expect("consumer")
    }
}

/// The async baseline: a tokio multi-thread runtime (one worker per core), a tokio-tungstenite
/// client task, a bounded tokio mpsc channel, a consumer task that takes up to [`BATCH_FRAMES`]
/// with `recv_many` and writes them with one `write_all` to a tokio `UnixStream`.
struct TokioPipeline {
    rt: tokio::runtime::Runtime,
    counters: Arc<BaselineCounters>,
    consumer: tokio::task::JoinHandle<Histogram<u64>>,
    _dir: tempfile::TempDir,
}

impl TokioPipeline {
    fn start(url: String, socket: PathBuf, dir: tempfile::TempDir) -> TokioPipeline {
        use futures_util::{SinkExt, StreamExt};
        use tokio::io::AsyncWriteExt;
        use tokio_tungstenite::tungstenite::Message;

        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("tokio-worker")
            .build()
            .expect("tokio runtime");
        let counters = Arc::new(BaselineCounters::default());
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Envelope>(QUEUE_CAPACITY);
        let listener = {
            let _g = rt.enter();
            tokio::net::UnixListener::bind(&socket).expect("bind")
        };
        rt.spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
                .await
                .expect("connect source");
            let mut parser = venue::parser_for(Venue::Binance);
            for r in parser.subscribe_requests(&trade_subscription()) {
                ws.send(Message::text(r)).await.expect("subscribe");
            }
            let mut publisher = MiniPublisher::default();
            let mut out = Vec::with_capacity(8);
            while let Some(msg) = ws.next().await {
                let t_recv = mono_ns();
                match msg {
                    Ok(Message::Text(text)) => {
                        let _ = parser.parse(
                            text.as_str(),
                            mdrelay::base::clock::wall_ns_at(t_recv),
                            &mut |sym, ev| publisher.on_event(sym, ev, t_recv, &mut out),
                        );
                        for env in out.drain(..) {
                            if tx.send(env).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(Message::Close(_)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        let c = counters.clone();
        let consumer = rt.spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept subscriber");
            let mut cache = Cache::default();
            let mut hist = new_histogram();
            let mut out = Vec::with_capacity(1 << 16);
            let mut turn = Vec::with_capacity(BATCH_FRAMES);
            let mut batch = Vec::with_capacity(BATCH_FRAMES);
            loop {
                let n = rx.recv_many(&mut batch, BATCH_FRAMES).await;
                if n == 0 {
                    break;
                }
                for e in batch.drain(..) {
                    consume(&mut cache, &e, &mut out, &mut turn);
                }
                if stream.write_all(&out).await.is_err() {
                    break;
                }
                let t_write = mono_ns();
                c.writes.fetch_add(1, Ordering::Relaxed);
                c.frames.fetch_add(n as u64, Ordering::Relaxed);
                record(
                    &mut hist,
                    &turn,
                    t_write,
                    c.window_start_ns.load(Ordering::Relaxed),
                );
                out.clear();
                turn.clear();
            }
            hist
        });
        TokioPipeline {
            rt,
            counters,
            consumer,
            _dir: dir,
        }
    }
}

impl Pipeline for TokioPipeline {
    fn admitted(&self) -> bool {
        true
    }
    fn window_start(&mut self) {}
    fn writes(&self) -> (u64, u64) {
        (
            self.counters.frames.load(Ordering::Relaxed),
            self.counters.writes.load(Ordering::Relaxed),
        )
    }
    fn dropped(&self) -> u64 {
        0
    }
    fn finish(self: Box<Self>, source: Source) -> Histogram<u64> {
        // The source closing the connection ends the collector task, which closes the channel,
        // which ends the consumer task.
        let TokioPipeline { rt, consumer, .. } = *self;
        source.stop();
        let h = rt.block_on(consumer).expect("consumer task");
        rt.shutdown_timeout(Duration::from_secs(1));
        h
    }
}

// ---------------------------------------------------------------------------------------------
// Running one point.

/// Process CPU seconds (user + system) so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is field 3; utime, stime are fields 14, 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    cond()
}

fn sleep_until_mono(t: u64) {
    let now = mono_ns();
    if t > now {
        thread::sleep(Duration::from_nanos(t - now));
    }
}

fn run_point(variant: Variant, rate: Rate, s: &Settings, run: usize) -> Point {
    let source = Source::start(rate, s.warmup, s.measure, s.spin_ns);
    let (dir, socket) = temp_socket();
    let (mut pipeline, baseline): (Box<dyn Pipeline>, Option<Arc<BaselineCounters>>) = match variant
    {
        Variant::Default => {
            let cfg = default_config(&socket, &source.url());
            (Box::new(RelayPipeline::start(&cfg, dir)), None)
        }
        Variant::Relay(transport, idle) => {
            let cfg = relay_config(&socket, &source.url(), transport, idle);
            (Box::new(RelayPipeline::start(&cfg, dir)), None)
        }
        Variant::StdMpsc => {
            let p = StdPipeline::start(source.url(), socket.clone(), dir);
            let c = p.counters.clone();
            (Box::new(p), Some(c))
        }
        Variant::Tokio => {
            let p = TokioPipeline::start(source.url(), socket.clone(), dir);
            let c = p.counters.clone();
            (Box::new(p), Some(c))
        }
    };
    let sub = Subscriber::connect(&socket);
    assert!(
        wait_until(Duration::from_secs(10), || source
            .shared
            .ready
            .load(Ordering::Acquire)),
        "{}: collector subscribed to the source",
        variant.name()
    );
    // The consumer admits the subscriber before the first message.
    assert!(wait_until(Duration::from_secs(10), || pipeline.admitted()));
    thread::sleep(Duration::from_millis(50));
    source.shared.go.store(true, Ordering::Release);
    assert!(wait_until(Duration::from_secs(2), || source
        .shared
        .window_start_ns
        .load(Ordering::Acquire)
        != 0));
    let ws = source.shared.window_start_ns.load(Ordering::Acquire);
    let we = source.shared.window_end_ns.load(Ordering::Acquire);
    if let Some(c) = &baseline {
        c.window_start_ns.store(ws, Ordering::Relaxed);
    }
    sleep_until_mono(ws);
    let (c0, t0, cpu0) = (sub.count(), mono_ns(), cpu_seconds());
    pipeline.window_start();
    sleep_until_mono(we);
    let (c1, t1, cpu1) = (sub.count(), mono_ns(), cpu_seconds());
    assert!(wait_until(Duration::from_secs(5), || source
        .shared
        .finished
        .load(Ordering::Acquire)));
    let sent = source.shared.sent.load(Ordering::Acquire);
    // Everything sent must reach the subscriber (backlog at `max` drains here).
    wait_until(Duration::from_secs(10), || {
        sub.count() >= sent || pipeline.dropped() > 0
    });
    thread::sleep(Duration::from_millis(20));
    let received = sub.count();
    let (frames, writes) = pipeline.writes();
    let dropped = pipeline.dropped();
    let hist = pipeline.finish(source);
    let _ = sub.thread.join();
    let dt = (t1 - t0) as f64 / 1e9;
    Point {
        run,
        variant,
        rate,
        hist,
        sent,
        received,
        throughput: (c1 - c0) as f64 / dt,
        frames_per_write: frames as f64 / writes.max(1) as f64,
        cpu: (cpu1 - cpu0) / dt,
        dropped,
    }
}

// ---------------------------------------------------------------------------------------------
// Report.

fn us(ns: u64) -> String {
    let v = ns as f64 / 1000.0;
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn table(points: &[Point]) -> String {
    let mut s = String::new();
    s.push_str("| run | variant | offered | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | delivered/s | frames/write | CPU (of 2) | CPU µs/msg | complete | tokio p99 ÷ this p99 |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for p in points {
        let tokio = points
            .iter()
            .find(|t| t.run == p.run && t.rate == p.rate && t.variant == Variant::Tokio);
        let ratio = match tokio {
            Some(t) if p.q(0.99) > 0 => format!("{:.1}×", t.q(0.99) as f64 / p.q(0.99) as f64),
            _ => "-".into(),
        };
        let complete = if p.complete() {
            format!("yes ({})", p.sent)
        } else {
            format!("NO ({}/{}, dropped {})", p.received, p.sent, p.dropped)
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0}k | {:.1} | {:.2} | {:.2} | {} | {} |\n",
            p.run + 1,
            p.variant.name(),
            p.rate.label(),
            us(p.q(0.5)),
            us(p.q(0.9)),
            us(p.q(0.99)),
            us(p.q(0.999)),
            us(if p.hist.is_empty() { 0 } else { p.hist.max() }),
            p.throughput / 1000.0,
            p.frames_per_write,
            p.cpu,
            p.cpu_us_per_msg(),
            complete,
            ratio
        ));
    }
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// One row per (variant, rate): medians over the `E2E_REPEAT` runs, and the medians of the
/// per-run ratios against the tokio baseline of the same run (tokio ÷ this for latency, this ÷
/// tokio for throughput: above 1 is better than tokio).
fn summary_table(points: &[Point], repeat: usize) -> String {
    let mut s = format!(
        "Medians over {repeat} run(s) per point; ratios are per run against the same run's tokio baseline, then the median.\n\n"
    );
    s.push_str("| variant | offered | p50 µs | p99 µs | delivered/s | CPU µs/msg | tokio p50 ÷ this | tokio p99 ÷ this | delivered ÷ tokio | complete runs |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let mut keys: Vec<(Variant, Rate)> = Vec::new();
    for p in points {
        if !keys.contains(&(p.variant, p.rate)) {
            keys.push((p.variant, p.rate));
        }
    }
    let ratio = |f: &dyn Fn(&Point, &Point) -> f64, v: Variant, r: Rate| -> f64 {
        median(
            points
                .iter()
                .filter(|p| p.variant == v && p.rate == r)
                .filter_map(|p| {
                    points
                        .iter()
                        .find(|t| t.run == p.run && t.rate == r && t.variant == Variant::Tokio)
                        .map(|t| f(p, t))
                })
                .collect(),
        )
    };
    let fmt = |x: f64| {
        if x.is_finite() {
            format!("{x:.2}×")
        } else {
            "-".into()
        }
    };
    for (v, r) in keys {
        let rows: Vec<&Point> = points
            .iter()
            .filter(|p| p.variant == v && p.rate == r)
            .collect();
        let med = |f: &dyn Fn(&Point) -> f64| median(rows.iter().map(|p| f(p)).collect());
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.0}k | {:.2} | {} | {} | {} | {}/{} |\n",
            v.name(),
            r.label(),
            us(med(&|p| p.q(0.5) as f64) as u64),
            us(med(&|p| p.q(0.99) as f64) as u64),
            med(&|p| p.throughput) / 1000.0,
            med(&|p| p.cpu_us_per_msg()),
            fmt(ratio(&|p, t| t.q(0.5) as f64 / p.q(0.5) as f64, v, r)),
            fmt(ratio(&|p, t| t.q(0.99) as f64 / p.q(0.99) as f64, v, r)),
            fmt(ratio(&|p, t| p.throughput / t.throughput, v, r)),
            rows.iter().filter(|p| p.complete()).count(),
            rows.len(),
        ));
    }
    s
}

fn report_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-report")
}

/// Quantiles for the percentile curve: 0 … 99.999 % evenly on the 1/(1−q) log axis.
fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    for k in 0..=100 {
        let x = 10f64.powf(k as f64 / 20.0);
        let q = 1.0 - 1.0 / x;
        // Beyond the resolution of the sample count the curve is just the max.
        if x > h.len() as f64 {
            break;
        }
        pts.push((x, (h.value_at_quantile(q).max(1)) as f64 / 1000.0));
    }
    if !h.is_empty() {
        pts.push(((h.len() as f64).clamp(1.0, 1e5), h.max() as f64 / 1000.0));
    }
    pts
}

fn json(points: &[Point], s: &Settings, machine: &str) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = points
        .iter()
        .map(|p| {
            serde_json::json!({
                "run": p.run + 1,
                "variant": p.variant.name(),
                "offered_rate": match p.rate { Rate::Fixed(r) => serde_json::json!(r), Rate::Max => serde_json::json!("max") },
                "samples": p.hist.len(),
                "latency_ns": {
                    "p50": p.q(0.5), "p90": p.q(0.9), "p99": p.q(0.99), "p999": p.q(0.999),
                    "max": if p.hist.is_empty() { 0 } else { p.hist.max() },
                    "mean": p.hist.mean(),
                },
                "curve_us": curve(&p.hist),
                "delivered_per_s": p.throughput,
                "frames_per_write": p.frames_per_write,
                "process_cpu_cores": p.cpu,
                "process_cpu_us_per_delivered_msg": p.cpu_us_per_msg(),
                "sent": p.sent,
                "received": p.received,
                "dropped": p.dropped,
                "complete": p.complete(),
            })
        })
        .collect();
    serde_json::json!({
        "what": "t_write - t_recv: WebSocket frame read on the collector -> write(2) to the subscriber socket returned",
        "machine": machine,
        "load_average_at_end": loadavg(),
        "warmup_ms": s.warmup.as_millis() as u64,
        "measure_ms": s.measure.as_millis() as u64,
        "source_spin_us": s.spin_ns / 1000,
        "repeat": s.repeat,
        "points": rows,
    })
}

/// Line colour and width of a variant: one hue per idle strategy (channel solid, ring dashed),
/// baselines thick grey (std) and black (tokio).
fn series_style(name: &str) -> ((u8, u8, u8), u32) {
    let ring = name.contains(" ring ");
    match () {
        _ if name.starts_with("tokio") => ((0, 0, 0), 4),
        _ if name == "mdrelay default" => ((0, 90, 255), 4),
        _ if name.starts_with("std") => ((127, 127, 127), 4),
        _ if name.ends_with("busy_spin") => (if ring { (227, 119, 194) } else { (214, 39, 40) }, 2),
        _ if name.ends_with("yield") => (if ring { (188, 189, 34) } else { (255, 127, 14) }, 2),
        _ if name.ends_with("backoff") => (if ring { (23, 190, 207) } else { (44, 160, 44) }, 2),
        _ => (
            if ring {
                (148, 103, 189)
            } else {
                (31, 119, 180)
            },
            2,
        ),
    }
}

/// (variant name, percentile curve) of every variant measured at `rate`.
fn curves_at(points: &[Point], rate: Rate) -> Vec<(String, Vec<(f64, f64)>)> {
    points
        .iter()
        .filter(|p| p.run == 0 && p.rate == rate && !p.hist.is_empty())
        .map(|p| (p.variant.name(), curve(&p.hist)))
        .collect()
}

/// The same curves from an `e2e.json` written earlier (`E2E_REPLOT`), for redrawing a picture.
fn curves_from_json(path: &Path, rate: u64) -> Vec<(String, Vec<(f64, f64)>)> {
    let text = std::fs::read_to_string(path).expect("E2E_REPLOT file");
    let j: serde_json::Value = serde_json::from_str(&text).expect("e2e.json");
    j["points"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["offered_rate"].as_u64() == Some(rate))
                .map(|p| {
                    let name = p["variant"].as_str().unwrap_or("?").to_owned();
                    let pts = serde_json::from_value::<Vec<(f64, f64)>>(p["curve_us"].clone())
                        .unwrap_or_default();
                    (name, pts)
                })
                .filter(|(_, pts)| !pts.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn svg(
    series: Vec<(String, Vec<(f64, f64)>)>,
    rate: Rate,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let ymax = series
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(10.0f64, f64::max)
        * 1.5;
    let ymin = series
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(f64::MAX, f64::min)
        .clamp(0.01, 1.0)
        * 0.8;
    let root = SVGBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "mdrelay end-to-end latency at {} offered (frame read -> subscriber write returned)",
                rate.label()
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .margin_right(45)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..1e5f64).log_scale(), (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency, µs (log)")
        .y_label_formatter(&|y| {
            if *y < 10.0 {
                format!("{y:.1}")
            } else {
                format!("{y:.0}")
            }
        })
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 1.0 / x);
            if p < 1.0 {
                "0%".into()
            } else if (p - p.round()).abs() < 1e-6 {
                format!("{p:.0}%")
            } else {
                format!("{}%", format!("{p:.4}").trim_end_matches('0'))
            }
        })
        .draw()?;
    for (name, pts) in series {
        let (rgb, width) = series_style(&name);
        let style = RGBColor(rgb.0, rgb.1, rgb.2).stroke_width(width);
        if name.contains(" ring ") {
            chart
                .draw_series(DashedLineSeries::new(pts, 8, 4, style))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim())
        .to_owned();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cores} logical CPUs, {model}; load average at start {}",
        loadavg()
    )
}

/// The 1, 5 and 15 minute load averages (other builds on this shared machine show up here).
fn loadavg() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------

fn settings() -> Settings {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let env_ms = |k: &str, d: u64| {
        Duration::from_millis(
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d),
        )
    };
    let rates = std::env::var("E2E_RATES")
        .unwrap_or_else(|_| {
            if smoke {
                "5000".into()
            } else {
                "10000,50000,100000,max".into()
            }
        })
        .split(',')
        .filter_map(|r| match r.trim() {
            "max" => Some(Rate::Max),
            n => n.parse().ok().map(Rate::Fixed),
        })
        .collect();
    let filters: Vec<String> = std::env::var("E2E_VARIANTS")
        .unwrap_or_default()
        .split(',')
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    let variants = Variant::all()
        .into_iter()
        .filter(|v| filters.is_empty() || filters.iter().any(|f| v.name().contains(f.as_str())))
        .collect();
    Settings {
        rates,
        warmup: env_ms("E2E_WARMUP_MS", if smoke { 100 } else { 500 }),
        measure: env_ms("E2E_MEASURE_MS", if smoke { 800 } else { 2500 }),
        variants,
        spin_ns: std::env::var("E2E_SOURCE_SPIN_US")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1000,
        smoke,
        repeat: std::env::var("E2E_REPEAT")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1),
    }
}

fn main() {
    mdrelay::base::clock::init();
    if let Some(from) = std::env::var_os("E2E_REPLOT") {
        // Redraw the picture of an earlier run's e2e.json; measure nothing.
        let dir = report_dir();
        std::fs::create_dir_all(&dir).expect("report dir");
        let out = dir.join("latency.svg");
        svg(
            curves_from_json(Path::new(&from), 50_000),
            Rate::Fixed(50_000),
            &out,
        )
        .expect("svg");
        eprintln!("e2e: redrew {}", out.display());
        return;
    }
    let s = settings();
    let machine = machine();
    let started = Instant::now();
    eprintln!(
        "e2e: {} variants × {} rates, {} ms warm-up + {} ms measured each; {machine}",
        s.variants.len(),
        s.rates.len(),
        s.warmup.as_millis(),
        s.measure.as_millis()
    );
    let mut points = Vec::new();
    for run in 0..s.repeat {
        for &rate in &s.rates {
            for &variant in &s.variants {
                let p = run_point(variant, rate, &s, run);
                eprintln!(
                "e2e [{:>5.1} s] run {}/{} {:<26} {:>6}: p50 {:>7} µs p99 {:>8} µs max {:>8} µs, {:>7.0}/s delivered, {}",
                started.elapsed().as_secs_f64(),
                run + 1,
                s.repeat,
                variant.name(),
                rate.label(),
                us(p.q(0.5)),
                us(p.q(0.99)),
                us(if p.hist.is_empty() { 0 } else { p.hist.max() }),
                p.throughput,
                if p.complete() { "complete" } else { "INCOMPLETE" }
            );
                points.push(p);
            }
        }
    }
    let md = format!(
        "{}\n{}\nMachine: {machine}; load average at end {}.\n",
        table(&points),
        summary_table(&points, s.repeat),
        loadavg()
    );
    println!("\n{md}");
    if s.smoke {
        for p in &points {
            assert!(
                p.complete(),
                "{} at {}: incomplete",
                p.variant.name(),
                p.rate.label()
            );
            assert!(
                !p.hist.is_empty(),
                "{}: no latency sample",
                p.variant.name()
            );
        }
        eprintln!("e2e smoke pass: every variant delivered everything (no report written)");
        return;
    }
    let dir = report_dir();
    std::fs::create_dir_all(&dir).expect("report dir");
    let j = json(&points, &s, &machine);
    std::fs::write(
        dir.join("e2e.json"),
        serde_json::to_string_pretty(&j).expect("json"),
    )
    .expect("write e2e.json");
    std::fs::write(dir.join("e2e.md"), &md).expect("write e2e.md");
    let plot_rate = if s.rates.contains(&Rate::Fixed(50_000)) {
        Rate::Fixed(50_000)
    } else {
        s.rates[0]
    };
    if let Err(e) = svg(
        curves_at(&points, plot_rate),
        plot_rate,
        &dir.join("latency.svg"),
    ) {
        eprintln!("e2e: svg: {e}");
    }
    eprintln!(
        "e2e report: {0}/e2e.md, {0}/e2e.json, {0}/latency.svg ({1:.0} s)",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
}
