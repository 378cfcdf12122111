//! Shared test utilities: temp socket paths, fixture paths, a watchdog that fails a hung test,
//! and configuration built the way a user would (built-in defaults + `--set` overrides).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mdrelay::config::{self, Config, Sources};

/// Path of a file in the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A fixture by its `shared/fixtures`-style name: `samples/…` lives in `tests/fixtures/samples`,
/// captures (`binance/…`, `coinbase/…`, `kraken_v1/…`) in `data/`.
pub fn fixture(rel: &str) -> PathBuf {
    if rel.starts_with("samples/") {
        repo("tests/fixtures").join(rel)
    } else {
        repo("data").join(rel)
    }
}

/// The bundled Binance capture.
pub fn binance_capture() -> PathBuf {
    repo("data/binance/spot_ethusdt_20240808.txt.gz")
}

/// A fresh temporary directory and a socket path inside it (the directory lives as long as the
/// returned guard).
pub fn temp_socket() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("mdrelay-test-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join("relay.sock");
    (dir, path)
}

/// `--set` overrides for a relay on `socket` with only the Binance feed (trade and bookTicker),
/// reading a replay exchange at `replay` that the test runs itself.
pub fn binance_only(socket: &Path, replay: std::net::SocketAddr) -> Vec<String> {
    vec![
        "replay.enabled=false".into(),
        "http.listen=\"127.0.0.1:0\"".into(),
        // Functional tests: a parked consumer keeps parallel tests light on a 2-core CI box.
        "consumer.idle=\"park\"".into(),
        format!("relay.socket_path={:?}", socket.display().to_string()),
        format!("feeds.binance.url=\"ws://{replay}/binance/stream\""),
        "feeds.binance.channels=[\"trade\", \"bookTicker\"]".into(),
        "feeds.coinbase.enabled=false".into(),
        "feeds.kraken_v1.enabled=false".into(),
        "feeds.binance_usdm.enabled=false".into(),
    ]
}

/// Built-in defaults plus `sets` (each `key=value`, values in TOML syntax). CSV is off unless
/// `sets` turns it on (with a temporary `writer.data_dir`): tests never write into the tree.
pub fn config(sets: &[String]) -> Config {
    let mut all = vec!["writer.enabled=false".to_owned()];
    all.extend_from_slice(sets);
    config::load(&Sources {
        sets: all,
        ..Sources::default()
    })
    .expect("test config is valid")
}

/// Every file named `name` under `dir` (any depth), in path order.
pub fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, name: &str, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, name, out);
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, name, &mut out);
    out
}

/// `--set` overrides that turn CSV on under `dir`.
pub fn csv_into(dir: &Path) -> Vec<String> {
    vec![
        "writer.enabled=true".into(),
        format!("writer.data_dir={:?}", dir.display().to_string()),
    ]
}

/// Every row (header excluded) of the CSV files named `file` under `dir` (any depth), in path
/// order, read with the csv crate; also checks each file ends with a newline (no torn line).
pub fn read_csv_rows(dir: &Path, file: &str) -> Vec<csv::StringRecord> {
    let mut rows = Vec::new();
    for f in files_named(dir, file) {
        let bytes = std::fs::read(&f).expect("read csv");
        assert!(
            bytes.ends_with(b"\n"),
            "{} ends with a complete line",
            f.display()
        );
        let mut r = csv::Reader::from_reader(&bytes[..]);
        for rec in r.records() {
            rows.push(rec.expect("valid csv row"));
        }
    }
    rows
}

/// Fails the whole test binary if the guard is not dropped within `secs`: a hung test must not
/// hang CI. Prints which test hung.
pub struct Watchdog {
    tx: Option<mpsc::SyncSender<()>>,
}

impl Watchdog {
    /// Arms the watchdog.
    pub fn new(name: &'static str, secs: u64) -> Self {
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        thread::Builder::new()
            .name(format!("watchdog-{name}"))
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(Duration::from_secs(secs))
                {
                    eprintln!("watchdog: test `{name}` did not finish within {secs} s; aborting");
                    std::process::exit(101);
                }
            })
            .expect("spawn watchdog");
        Watchdog { tx: Some(tx) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// How a [`Pipeline`] is built.
#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    pub idle: mdrelay::config::IdleStrategy,
    pub max_subscribers: usize,
    pub max_pending_bytes: usize,
    /// The acceptor's hello window (`relay.hello_timeout_ms`).
    pub hello_timeout: Duration,
    pub coalesce: mdrelay::config::CoalesceConfig,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            idle: mdrelay::config::IdleStrategy::Park,
            max_subscribers: 8,
            max_pending_bytes: 256 << 20,
            hello_timeout: Duration::ZERO,
            coalesce: mdrelay::config::CoalesceConfig::DEFAULT,
        }
    }
}

/// A consumer and relay socket fed by publishers the test drives directly (no WebSockets):
/// the real queue, publisher, consumer, cache, relay and client code.
pub struct Pipeline {
    pub stop: std::sync::Arc<mdrelay::base::stats::StopFlag>,
    pub relay_counters: std::sync::Arc<mdrelay::base::stats::RelayCounters>,
    pub accept_counters: std::sync::Arc<mdrelay::base::stats::AcceptCounters>,
    pub socket: PathBuf,
    consumer: Option<thread::JoinHandle<()>>,
    acceptor: Option<thread::JoinHandle<()>>,
    _guard: mdrelay::relay::socket::SocketGuard,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    /// Builds one publisher per spec (venue Binance) and starts the consumer and acceptor.
    /// `start_consumer: false` leaves the consumer stopped until [`Pipeline::start_consumer`].
    pub fn new(
        specs: &[mdrelay::queue::QueueSpec],
        idle: mdrelay::config::IdleStrategy,
    ) -> (
        Self,
        Vec<mdrelay::feed::publisher::Publisher>,
        Vec<std::sync::Arc<mdrelay::base::stats::FeedStats>>,
    ) {
        Self::sized(specs, idle, 8, 256 << 20)
    }

    /// [`Pipeline::new`] admitting up to `max_subscribers`, each buffering `max_pending_bytes`.
    pub fn sized(
        specs: &[mdrelay::queue::QueueSpec],
        idle: mdrelay::config::IdleStrategy,
        max_subscribers: usize,
        max_pending_bytes: usize,
    ) -> (
        Self,
        Vec<mdrelay::feed::publisher::Publisher>,
        Vec<std::sync::Arc<mdrelay::base::stats::FeedStats>>,
    ) {
        Self::with_options(
            specs,
            PipelineOptions {
                idle,
                max_subscribers,
                max_pending_bytes,
                ..PipelineOptions::default()
            },
        )
    }

    /// [`Pipeline::new`] with every option chosen.
    pub fn with_options(
        specs: &[mdrelay::queue::QueueSpec],
        opts: PipelineOptions,
    ) -> (
        Self,
        Vec<mdrelay::feed::publisher::Publisher>,
        Vec<std::sync::Arc<mdrelay::base::stats::FeedStats>>,
    ) {
        let PipelineOptions {
            idle,
            max_subscribers,
            max_pending_bytes,
            hello_timeout,
            coalesce,
        } = opts;
        use mdrelay::config::{ConsumerConfig, RelayConfig};
        use mdrelay::consumer::thread::{
            Consumer, FeedInput, Inputs, Outputs, Published, RelaySide,
        };
        use mdrelay::queue::{bounded, Waker};
        use std::sync::Arc;

        let (dir, socket) = temp_socket();
        let relay_cfg = RelayConfig {
            socket_path: socket.clone(),
            socket_mode: 0o600,
            max_subscribers,
            max_pending_bytes,
            heartbeat_interval: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(20),
            hello_timeout,
            allowed_uids: Vec::new(),
        };
        let (listener, guard) = mdrelay::relay::socket::bind(&relay_cfg).expect("bind");
        let waker = Arc::new(Waker::default());
        let stop = Arc::new(mdrelay::base::stats::StopFlag::default());
        let relay_counters = Arc::new(mdrelay::base::stats::RelayCounters::default());
        let mut publishers = Vec::new();
        let mut stats = Vec::new();
        let mut inputs = Vec::new();
        for s in specs {
            let (p, rx) = bounded(s, waker.clone());
            let st = Arc::new(mdrelay::base::stats::FeedStats::default());
            publishers.push(mdrelay::feed::publisher::Publisher::new(
                mdrelay::market::instrument::Venue::Binance,
                p,
                st.clone(),
            ));
            inputs.push(FeedInput {
                name: s.name.clone(),
                rx,
                stats: st.clone(),
            });
            stats.push(st);
        }
        let (sub_tx, sub_rx) = crossbeam_channel::bounded(max_subscribers.max(8));
        let consumer = Consumer::new(
            ConsumerConfig {
                idle,
                batch_frames: 64,
                coalesce,
                publish_interval: mdrelay::consumer::thread::PUBLISH_INTERVAL,
            },
            Inputs {
                feeds: inputs,
                waker: waker.clone(),
                stop: stop.clone(),
            },
            RelaySide {
                config: &relay_cfg,
                counters: relay_counters.clone(),
                admissions: sub_rx,
            },
            Outputs {
                published: Arc::new(mdrelay::base::publication::Publication::new(
                    Published::new(specs.len()),
                )),
                analytics: mdrelay::consumer::analytics::Analytics::relay_only(specs.len()),
            },
        );
        let consumer = thread::Builder::new()
            .name("consumer".into())
            .spawn(move || consumer.run())
            .expect("spawn consumer");
        let accept_counters = Arc::new(mdrelay::base::stats::AcceptCounters::default());
        let (rc, ac, st) = (
            relay_counters.clone(),
            accept_counters.clone(),
            stop.clone(),
        );
        let acceptor = thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || {
                mdrelay::relay::acceptor::accept_loop(
                    listener,
                    sub_tx,
                    mdrelay::relay::acceptor::AcceptConfig {
                        max_subscribers,
                        hello_timeout,
                        allowed_uids: Vec::new(),
                    },
                    rc,
                    ac,
                    waker,
                    st,
                )
            })
            .expect("spawn acceptor");
        (
            Pipeline {
                stop,
                relay_counters,
                accept_counters,
                socket,
                consumer: Some(consumer),
                acceptor: Some(acceptor),
                _guard: guard,
                _dir: dir,
            },
            publishers,
            stats,
        )
    }

    /// Connects a subscriber and waits until the consumer has admitted it.
    pub fn subscribe(&self) -> mdrelay::relay::client::RelayClient {
        let before = self.relay_counters.accepted.get();
        let c = mdrelay::relay::client::RelayClient::connect(&self.socket).expect("connect");
        assert!(wait_until(Duration::from_secs(10), || self
            .relay_counters
            .accepted
            .get()
            > before));
        c.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        c
    }

    /// Stops the consumer (after every publisher was dropped it drains and exits) and the acceptor.
    pub fn shutdown(mut self) {
        self.stop.stop();
        if let Some(h) = self.consumer.take() {
            h.join().expect("consumer thread");
        }
        if let Some(h) = self.acceptor.take() {
            h.join().expect("acceptor thread");
        }
    }
}

/// A plain HTTP/1.1 GET over a fresh connection: (status, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read response");
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}
pub mod faults;
pub mod kraken_v2;

/// A replay exchange on 127.0.0.1:0 serving `sources` once (no loop) at full speed (`speed` 0)
/// unless told otherwise; `paused` holds sessions until `resume()`.
pub fn replay_exchange(
    sources: &[(mdrelay::market::instrument::Venue, Vec<PathBuf>)],
    speed: f64,
    loop_forever: bool,
    paused: bool,
) -> mdrelay::sim::ReplayExchange {
    mdrelay::sim::ReplayExchange::start(
        sources,
        mdrelay::sim::ReplayOptions {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            speed,
            loop_forever,
            start_paused: paused,
            live: false,
            from_ns: None,
            to_ns: None,
        },
    )
    .expect("replay exchange starts")
}

/// A subscriber of the relay at `sock`, with a 30 s read timeout so that a stalled relay fails
/// the test instead of hanging it.
pub fn subscriber(sock: &Path) -> mdrelay::relay::client::RelayClient {
    let client = mdrelay::relay::client::RelayClient::connect(sock).expect("connect to the relay");
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set read timeout");
    client
}

/// Waits (at most 20 s) until `sessions` venue subscriptions have reached the paused
/// `exchange`, then starts playing: whoever subscribed to the relay before sees the capture
/// from its first message.
pub fn play_when_subscribed(exchange: &mdrelay::sim::ReplayExchange, sessions: u64) {
    assert!(wait_until(Duration::from_secs(20), || exchange
        .subscribed_sessions()
        >= sessions));
    exchange.resume();
}

/// A replay exchange playing the bundled Binance capture once at full speed; `paused` holds
/// sessions until `resume()` (see [`play_when_subscribed`]).
pub fn binance_exchange(paused: bool) -> mdrelay::sim::ReplayExchange {
    replay_exchange(
        &[(
            mdrelay::market::instrument::Venue::Binance,
            vec![binance_capture()],
        )],
        0.0,
        false,
        paused,
    )
}

/// The columns of `feed`'s row in a summary `mdrelay run`/`replay` printed on stderr
/// (`feed frames control errors range events relayed dropped refused …`).
pub fn summary_row<'a>(stderr: &'a str, feed: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .find(|l| l.split_whitespace().next() == Some(feed))
        .unwrap_or_else(|| panic!("{feed} row in {stderr}"))
        .split_whitespace()
        .collect()
}

/// The `mdrelay` binary run in the repository (the bundled captures are relative to it), with no
/// logging, colour or configuration variables inherited from the test's environment, and the
/// default socket directory under `runtime`.
pub fn mdrelay_in(runtime: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mdrelay"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("MDRELAY_ENV")
        .env("XDG_RUNTIME_DIR", runtime);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MDRELAY__")) {
        c.env_remove(k);
    }
    c
}

/// An independent decimal → 1e-8 fixed-point conversion, for reference books built with
/// serde_json only.
pub fn dec8(s: &str) -> i64 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(frac.len() <= 8, "{s}: more than 8 decimals");
    format!("{int}{frac:0<8}").parse().expect("a plain decimal")
}

/// One side of a reference book: price → size, both in 1e-8 units.
pub type Side8 = std::collections::BTreeMap<i64, i64>;

/// Sets Binance `levels` (`[["price","qty"],…]`; qty 0 removes the level) on `side`.
pub fn set_levels(side: &mut Side8, levels: &serde_json::Value) {
    for l in levels.as_array().expect("a level array") {
        let price = dec8(l[0].as_str().expect("a price string"));
        let qty = dec8(l[1].as_str().expect("a qty string"));
        if qty == 0 {
            side.remove(&price);
        } else {
            side.insert(price, qty);
        }
    }
}

/// The first recorded Binance REST snapshot line of `lines`: its `lastUpdateId` and its book
/// (bids, asks).
pub fn recorded_snapshot(lines: &[String]) -> (u64, [Side8; 2]) {
    let raw = lines
        .iter()
        .find(|l| l.starts_with("{\"lastUpdateId\""))
        .expect("the capture has a REST snapshot line");
    let snap: serde_json::Value = serde_json::from_str(raw).expect("snapshot JSON");
    let mut book = [Side8::new(), Side8::new()];
    set_levels(&mut book[0], &snap["bids"]);
    set_levels(&mut book[1], &snap["asks"]);
    (snap["lastUpdateId"].as_u64().expect("lastUpdateId"), book)
}
