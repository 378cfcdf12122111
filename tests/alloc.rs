//! Zero allocations per message on the collector → consumer → subscriber path, once warm.
//!
//! A test binary of its own, because it installs a counting global allocator
//! ([`stats_alloc`], which keeps this crate free of `unsafe`): every allocation of every thread
//! in the process is counted.
//!
//! The path driven is the library's real one, as the relay runs it, minus the WebSocket read:
//! the Binance spot capture's trade and bookTicker lines → `BinanceParser::parse` (the fast path)
//! → the collector's `Publisher` (instrument table, sequences, frame encode) → the feed's bounded
//! queue (crossbeam channel, `block`) → the consumer thread (cache, latency histogram, relay
//! writes) → the relay's Unix socket → one subscriber. The subscriber is this test's own reader
//! thread, which reads the socket into a fixed buffer and checks every frame with
//! `wire::protocol::decode_frame` (no allocation either), so what is counted is the relay's side.
//! The set-up is that of `tests/util` `Pipeline` (the fan-out bench's), built here with two
//! differences that keep time-driven work out of the counted window, so that the count depends
//! on messages only: relay heartbeats every hour instead of every 100 ms (a heartbeat copies its
//! frame: one allocation per heartbeat, not per message), the consumer's wall-clock bar timer
//! every hour instead of every 100 ms (each tick collects instrument ids into a new vector), and
//! the relay's acceptor thread stopped once the subscriber is admitted (it wakes every 100 ms to
//! poll for connections and allocates a few small vectors each time); and the consumer's
//! twice-a-second publication for the HTTP thread every hour instead (each copies the
//! histograms and subscriber statistics into a new version). Measured with these left on: about 40 allocations per second with no message at all, and no more than that with
//! 28 000 messages in between. Bars still close as trades cross interval ends.
//!
//! Warm-up: the first 2 000 lines (instrument definitions, first frames, buffers growing to their
//! working size); the window: every other trade and bookTicker line of the capture (about 28 000
//! messages, one event each). The test waits until the subscriber has every trade and quote frame
//! of the window, then reads the counter.

// Tests state their expectations with unwrap/expect: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "util/mod.rs"]
mod util;

use std::alloc::System;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

use mdrelay::base::publication::Publication;
use mdrelay::config::IdleStrategy;
use mdrelay::feed::venue::binance::BinanceParser;
use mdrelay::feed::venue::VenueParser;
use mdrelay::queue::{Backpressure, QueueSpec, Transport};
use mdrelay::wire::protocol::{decode_frame, DecodeError, MsgType};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const WARM_UP: usize = 2_000;

fn capture_lines() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/binance/spot_ethusdt_20240808.txt.gz");
    mdrelay::persist::recording::read_all(&path)
        .unwrap()
        .into_iter()
        .map(|r| r.raw)
        .filter(|l| l.contains("@trade\"") || l.contains("@bookTicker\""))
        .collect()
}

/// Reads frames off the subscriber socket into a fixed buffer, counting trade and quote frames
/// in `seen`, until the relay closes the connection.
fn reader(mut stream: std::os::unix::net::UnixStream, seen: Arc<AtomicU64>) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    let (mut start, mut end) = (0, 0);
    let mut bad = 0;
    loop {
        match decode_frame(&buf[start..end]) {
            Ok((f, used)) => {
                if f.header.msg_type == MsgType::Trade as u8
                    || f.header.msg_type == MsgType::Quote as u8
                {
                    seen.fetch_add(1, Ordering::Release);
                }
                start += used;
                continue;
            }
            Err(DecodeError::Incomplete { .. }) => {}
            Err(_) => {
                bad += 1;
                break;
            }
        }
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        match stream.read(&mut buf[end..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => end += k,
        }
    }
    bad
}

#[test]
fn trades_and_quotes_allocate_nothing_per_message_after_warm_up() {
    let lines = capture_lines();
    assert!(lines.len() > 20_000, "{} lines", lines.len());
    let spec = QueueSpec {
        name: "binance".into(),
        transport: Transport::Channel,
        capacity_frames: 8_192,
        policy: Backpressure::Block,
        block_timeout: Duration::from_secs(60),
    };
    let mut pipe = Relay::start(spec);
    let (stats, mut publishers) = (vec![pipe.stats.clone()], vec![pipe.publisher()]);
    let client = pipe.subscribe();
    let stream = client.stream().try_clone().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let rd = {
        let seen = seen.clone();
        thread::Builder::new()
            .name("subscriber".into())
            .spawn(move || reader(stream, seen))
            .unwrap()
    };
    let mut publisher = publishers.pop().unwrap();
    let mut parser = BinanceParser::default();
    let mut events = 0u64;
    let mut run = |from: usize, to: usize, events: &mut u64| {
        for raw in &lines[from..to] {
            parser
                .parse(raw, 1, &mut |sym, ev| {
                    *events += 1;
                    publisher.on_event(sym, ev, 1, 1);
                })
                .unwrap();
            publisher.end_message();
        }
    };
    let wait_for = |n: u64| {
        assert!(
            util::wait_until(Duration::from_secs(120), || seen.load(Ordering::Acquire)
                >= n),
            "the subscriber got {} of {n} frames",
            seen.load(Ordering::Acquire)
        );
    };

    run(0, WARM_UP, &mut events);
    wait_for(events);
    let warm = events;
    let region = Region::new(GLOBAL);
    run(WARM_UP, lines.len(), &mut events);
    wait_for(events);
    let change = region.change();
    let window = events - warm;

    assert!(window > 20_000, "{window} events in the window");
    assert_eq!(stats[0].collector.parse_errors.get(), 0);
    assert_eq!(
        change.allocations + change.reallocations,
        0,
        "{} allocations and {} reallocations over {window} trade and quote events \
         ({:.4} per event)",
        change.allocations,
        change.reallocations,
        (change.allocations + change.reallocations) as f64 / window as f64
    );

    drop(publisher);
    pipe.shutdown();
    drop(client);
    assert_eq!(
        rd.join().unwrap(),
        0,
        "every frame the subscriber read was valid"
    );
}

/// Bars as `Analytics::relay_only` configures them, with the wall-clock bar timer once an hour
/// instead of every 100 ms (each tick collects the instrument ids into a new vector: one
/// allocation per tick, not per message).
fn analytics() -> mdrelay::consumer::analytics::Analytics {
    use mdrelay::config::{BarClock, BarsConfig, Persist};
    let cfg = BarsConfig {
        bars: mdrelay::market::bars::BarConfig::default(),
        timer_interval: Duration::from_secs(3600),
        close_on_shutdown: false,
        clock: BarClock::Wall,
    };
    let persist = Persist {
        trades: false,
        quotes: false,
        bars: false,
        marks: false,
        liquidations: false,
        open_interest: false,
    };
    mdrelay::consumer::analytics::Analytics::new(
        cfg,
        persist,
        vec!["binance".into()],
        None,
        None,
        None,
        Arc::default(),
    )
}

/// The relay's consumer and acceptor over one feed queue, as `tests/util` `Pipeline` builds
/// them, with hour-long heartbeats and an acceptor that can be stopped on its own.
struct Relay {
    stop: Arc<mdrelay::base::stats::StopFlag>,
    accept_stop: Arc<mdrelay::base::stats::StopFlag>,
    relay_counters: Arc<mdrelay::base::stats::RelayCounters>,
    stats: Arc<mdrelay::base::stats::FeedStats>,
    producer: Option<mdrelay::queue::Producer>,
    /// The consumer's snapshot for the HTTP thread: held by the test during the window, so the
    /// consumer's twice-a-second publication skips its turn (as it does whenever the HTTP thread
    /// holds it).
    socket: std::path::PathBuf,
    consumer: thread::JoinHandle<()>,
    acceptor: Option<thread::JoinHandle<()>>,
    _guard: mdrelay::relay::socket::SocketGuard,
    _dir: tempfile::TempDir,
}

impl Relay {
    fn start(spec: QueueSpec) -> Self {
        use mdrelay::config::{ConsumerConfig, RelayConfig};
        use mdrelay::consumer::thread::{
            Consumer, FeedInput, Inputs, Outputs, Published, RelaySide,
        };
        use mdrelay::queue::{bounded, Waker};

        let (dir, socket) = util::temp_socket();
        let relay_cfg = RelayConfig {
            socket_path: socket.clone(),
            socket_mode: 0o600,
            max_subscribers: 4,
            max_pending_bytes: 256 << 20,
            heartbeat_interval: Duration::from_secs(3600),
            drain_timeout: Duration::from_secs(20),
            hello_timeout: Duration::ZERO,
            allowed_uids: Vec::new(),
        };
        let (listener, guard) = mdrelay::relay::socket::bind(&relay_cfg).unwrap();
        let waker = Arc::new(Waker::default());
        let stop = Arc::new(mdrelay::base::stats::StopFlag::default());
        let accept_stop = Arc::new(mdrelay::base::stats::StopFlag::default());
        let relay_counters = Arc::new(mdrelay::base::stats::RelayCounters::default());
        let (producer, rx) = bounded(&spec, waker.clone());
        let stats = Arc::new(mdrelay::base::stats::FeedStats::default());
        let inputs = vec![FeedInput {
            name: spec.name.clone(),
            rx,
            stats: stats.clone(),
        }];
        let (sub_tx, sub_rx) = crossbeam_channel::bounded(8);
        let published = Arc::new(Publication::new(Published::new(1)));
        let consumer = Consumer::new(
            ConsumerConfig {
                idle: IdleStrategy::Yield,
                batch_frames: 64,
                coalesce: mdrelay::config::CoalesceConfig::DEFAULT,
                // Publishing clones the histograms (an allocation per period, not per message):
                // none happens within the test.
                publish_interval: Duration::from_secs(3600),
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
                published,
                analytics: analytics(),
            },
        );
        let consumer = thread::Builder::new()
            .name("consumer".into())
            .spawn(move || consumer.run())
            .unwrap();
        let (rc, st) = (relay_counters.clone(), accept_stop.clone());
        let acceptor = thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || {
                mdrelay::relay::acceptor::accept_loop(
                    listener,
                    sub_tx,
                    mdrelay::relay::acceptor::AcceptConfig {
                        max_subscribers: 4,
                        hello_timeout: Duration::ZERO,
                        allowed_uids: Vec::new(),
                    },
                    rc,
                    Arc::default(),
                    waker,
                    st,
                )
            })
            .unwrap();
        Relay {
            stop,
            accept_stop,
            relay_counters,
            stats,
            producer: Some(producer),
            socket,
            consumer,
            acceptor: Some(acceptor),
            _guard: guard,
            _dir: dir,
        }
    }

    fn publisher(&mut self) -> mdrelay::feed::publisher::Publisher {
        mdrelay::feed::publisher::Publisher::new(
            mdrelay::market::instrument::Venue::Binance,
            self.producer.take().unwrap(),
            self.stats.clone(),
        )
    }

    /// Connects the subscriber, waits until the consumer admitted it, then stops the acceptor and
    /// waits for it to exit.
    fn subscribe(&mut self) -> mdrelay::relay::client::RelayClient {
        let c = mdrelay::relay::client::RelayClient::connect(&self.socket).unwrap();
        assert!(util::wait_until(Duration::from_secs(30), || self
            .relay_counters
            .subscribers
            .get()
            > 0));
        // Joined, not only told: its last wake-up must not fall inside the counted window.
        self.accept_stop.stop();
        if let Some(a) = self.acceptor.take() {
            a.join().unwrap();
        }
        c
    }

    fn shutdown(self) {
        self.stop.stop();
        self.consumer.join().unwrap();
        if let Some(a) = self.acceptor {
            a.join().unwrap();
        }
    }
}
