//! The NATS bridge against a real `nats-server` (Debian package; `make test` installs it), started
//! by each test on a free loopback port with JetStream and a temporary store, killed on drop.
//!
//! Specifications:
//! - every trade and quote of the bundled Binance capture arrives on
//!   `mdrelay.binance.ETHUSDT.{trade,quote}` byte for byte as a direct relay subscriber reads it,
//!   in sequence order, after the instrument's definition; JetStream retains every message, in a
//!   stream created with the configured limits;
//! - with `payload = "json"` each message is the `tail --json` line of the event, and the
//!   stream's `max_msgs` limit holds;
//! - nats-server killed (SIGKILL) and restarted on the same port and store in the middle of the
//!   stream: the bridge reconnects, every message acknowledged before the kill survives it, and
//!   in the stream every frame the relay sent (to its end, bars closed by the timer after the last
//!   trade included) is present exactly once, events in order, or counted by a `dropped` status
//!   of the bridge — counts that add up exactly.
//!
//! An ignored benchmark measures bridge throughput and added latency (docs/BENCHMARKS.md).

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use mdrelay::bridge::nats::Bridge;
use mdrelay::market::event::StatusCode;
use mdrelay::market::instrument::{self, Venue};
use mdrelay::relay::client::RelayClient;
use mdrelay::run;
use mdrelay::wire::protocol::{self, Message};

use crate::util;

/// Trades + bookTickers in the bundled capture.
const EVENTS: u64 = 6106 + 24077;

fn nats_server_binary() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed (looked on PATH and in /usr/sbin): `make test` \
                 installs it, or `apt-get install nats-server`"
            )
        })
}

/// A nats-server child process with JetStream on 127.0.0.1:<free port>; killed on drop.
struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut s = NatsServer {
            child: None,
            port,
            store: tempfile::Builder::new()
                .prefix("mdrelay-nats-")
                .tempdir()
                .expect("temp dir"),
        };
        s.spawn();
        s
    }

    /// Starts the server (again) on the same port and store.
    fn spawn(&mut self) {
        let child = Command::new(nats_server_binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let port = self.port;
        assert!(
            util::wait_until(Duration::from_secs(30), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "nats-server did not listen on 127.0.0.1:{port} within 30 s"
        );
    }

    /// SIGKILL, by pid, and reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `--set` overrides for the `[nats]` section.
fn nats_sets(url: &str, payload: &str, stream: &str, max_msgs: u64) -> Vec<String> {
    vec![
        format!("nats.url={url:?}"),
        format!("nats.payload={payload:?}"),
        "nats.buffer_frames=65536".into(),
        "nats.reconnect_initial_ms=50".into(),
        "nats.reconnect_max_ms=500".into(),
        "nats.jetstream.enabled=true".into(),
        format!("nats.jetstream.stream={stream:?}"),
        "nats.jetstream.max_age_s=3600".into(),
        "nats.jetstream.max_bytes=268435456".into(),
        format!("nats.jetstream.max_msgs={max_msgs}"),
    ]
}

/// A direct relay subscriber on its own thread: every frame (raw bytes) until `events` trades
/// and quotes were read; `progress` counts those.
fn direct_reader(
    sock: &Path,
    events: u64,
    progress: Arc<AtomicU64>,
) -> thread::JoinHandle<Vec<Vec<u8>>> {
    let mut client = RelayClient::connect(sock).expect("connect relay");
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    thread::spawn(move || {
        let mut frames = Vec::new();
        let mut n = 0;
        while n < events {
            let rx = client
                .next_frame()
                .expect("clean relay stream")
                .expect("relay open");
            if matches!(rx.frame.header.msg_type, 2 | 3) {
                n += 1;
                progress.store(n, Ordering::Relaxed);
            }
            frames.push(rx.raw.to_vec());
        }
        frames
    })
}

/// A direct relay subscriber on its own thread: every frame (raw bytes) until the relay closes
/// the connection; `progress` counts the trades and quotes read so far.
fn direct_reader_to_end(sock: &Path, progress: Arc<AtomicU64>) -> thread::JoinHandle<Vec<Vec<u8>>> {
    let mut client = RelayClient::connect(sock).expect("connect relay");
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    thread::spawn(move || {
        let mut frames = Vec::new();
        let mut n = 0;
        while let Some(rx) = client.next_frame().expect("clean relay stream") {
            if matches!(rx.frame.header.msg_type, 2 | 3) {
                n += 1;
                progress.store(n, Ordering::Relaxed);
            }
            frames.push(rx.raw.to_vec());
        }
        frames
    })
}

fn msg_type(frame: &[u8]) -> u8 {
    protocol::peek_header(frame).msg_type
}

/// Core NATS messages on `mdrelay.>` until `events` trades and quotes came, then whatever else
/// arrives within half a second of quiet.
async fn collect(
    sub: &mut async_nats::Subscriber,
    json: bool,
    events: u64,
) -> Vec<(String, Vec<u8>)> {
    let mut got = Vec::new();
    let mut n = 0;
    while n < events {
        let m = tokio::time::timeout(Duration::from_secs(120), sub.next())
            .await
            .unwrap_or_else(|_| panic!("no NATS message for 120 s after {n} of {events} events"))
            .expect("subscription open");
        let s = m.subject.to_string();
        let is_event = if json {
            s.ends_with(".trade") || s.ends_with(".quote")
        } else {
            matches!(msg_type(&m.payload), 2 | 3)
        };
        n += u64::from(is_event);
        got.push((s, m.payload.to_vec()));
    }
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        got.push((m.subject.to_string(), m.payload.to_vec()));
    }
    got
}

/// Waits until the relay has `n` subscribers and the exchange a subscribed session.
fn wait_for_subscribers(relay: &run::Running, exchange: &mdrelay::sim::ReplayExchange, n: u64) {
    assert!(
        util::wait_until(Duration::from_secs(30), || relay
            .relay_counters()
            .subscribers
            .get()
            >= n
            && exchange.subscribed_sessions() >= 1),
        "relay subscribers / exchange session not ready"
    );
}

async fn stream_info(nc: &async_nats::Client, name: &str) -> jetstream::stream::Info {
    let js = jetstream::new(nc.clone());
    let mut stream = js.get_stream(name).await.expect("stream exists");
    stream.info().await.expect("stream info").clone()
}

/// Every message of a stream, in stream order.
async fn read_stream(nc: &async_nats::Client, name: &str) -> Vec<(String, Vec<u8>)> {
    let js = jetstream::new(nc.clone());
    let mut stream = js.get_stream(name).await.expect("stream exists");
    let n = stream.info().await.expect("info").state.messages;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut msgs = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    while (out.len() as u64) < n {
        let m = tokio::time::timeout(Duration::from_secs(60), msgs.next())
            .await
            .expect("stream read stalled")
            .expect("stream open")
            .expect("message");
        out.push((m.subject.to_string(), m.payload.to_vec()));
    }
    out
}

#[test]
fn every_event_arrives_on_its_subject_exactly_in_order_and_jetstream_retains_it() {
    let _wd = util::Watchdog::new("nats_exact", 300);
    let server = NatsServer::start();
    let exchange = util::binance_exchange(true);
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.extend(nats_sets(&server.url(), "frame", "MDEXACT", 1_000_000));
    sets.push("nats.enabled=true".into());
    // `mdrelay run` starts the bridge itself.
    let relay = run::start(util::config(&sets)).unwrap();

    let rt = runtime();
    // Subscriptions unsubscribe on drop through the runtime: keep it entered until then.
    let _rt = rt.enter();
    let nc = rt.block_on(async_nats::connect(server.url())).unwrap();
    let mut sub = rt.block_on(nc.subscribe("mdrelay.>")).unwrap();
    rt.block_on(nc.flush()).unwrap();
    let direct = direct_reader(&sock, EVENTS, Arc::default());
    wait_for_subscribers(&relay, &exchange, 2);
    exchange.resume();

    let got = rt.block_on(collect(&mut sub, false, EVENTS));
    let frames = direct.join().unwrap();

    let want: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|f| matches!(msg_type(f), 2 | 3))
        .collect();
    assert_eq!(want.len() as u64, EVENTS);
    let events: Vec<&(String, Vec<u8>)> = got
        .iter()
        .filter(|(_, p)| matches!(msg_type(p), 2 | 3))
        .collect();
    assert_eq!(events.len(), want.len(), "every event arrived once");
    let mut last_seq = 0;
    for (i, ((subject, payload), w)) in events.iter().zip(&want).enumerate() {
        assert_eq!(payload, *w, "event {i}: the frame, byte for byte");
        let kind = if msg_type(payload) == 2 {
            "trade"
        } else {
            "quote"
        };
        assert_eq!(
            subject,
            &format!("mdrelay.binance.ETHUSDT.{kind}"),
            "event {i}"
        );
        let seq = protocol::peek_header(payload).sequence;
        assert_eq!(seq, last_seq + 1, "in order, no gap");
        last_seq = seq;
    }
    // The definition came first, on its own subject; nothing was dropped.
    let first_event = got
        .iter()
        .position(|(_, p)| matches!(msg_type(p), 2 | 3))
        .unwrap();
    let def = got[..first_event]
        .iter()
        .find(|(s, _)| s == "mdrelay.binance.ETHUSDT.def")
        .expect("definition before the first event");
    let (f, _) = protocol::decode_frame(&def.1).unwrap();
    assert!(matches!(
        f.message().unwrap(),
        Message::InstrumentDef {
            venue: "binance",
            symbol: "ETHUSDT",
            ..
        }
    ));
    assert_eq!(
        f.header.instrument_id,
        instrument::instrument_id("binance", "ETHUSDT")
    );
    for (s, p) in &got {
        assert!(s.starts_with("mdrelay.binance."), "{s}");
        if let Ok((f, _)) = protocol::decode_frame(p) {
            if let Ok(Message::Status { status, .. }) = f.message() {
                assert_ne!(status.code, StatusCode::Dropped, "{status:?}");
            }
        }
    }

    // JetStream: the stream has the configured limits and holds every message published.
    let info = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = stream_info(&nc, "MDEXACT").await;
            if info.state.messages >= got.len() as u64 || Instant::now() > deadline {
                return info;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(info.config.subjects, ["mdrelay.>"]);
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    assert_eq!(info.config.max_bytes, 268_435_456);
    assert_eq!(info.config.max_messages, 1_000_000);
    assert_eq!(
        info.state.messages,
        got.len() as u64,
        "the stream retains every message"
    );
    let stored = rt.block_on(read_stream(&nc, "MDEXACT"));
    assert_eq!(stored, got, "stream order = publish order");

    let summary = relay.shutdown();
    assert!(summary.balanced());
}

#[test]
fn json_payload_is_the_tail_json_line_and_max_msgs_is_enforced() {
    let _wd = util::Watchdog::new("nats_json", 300);
    let server = NatsServer::start();
    let exchange = util::binance_exchange(true);
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.extend(nats_sets(&server.url(), "json", "MDJSON", 1000));
    sets.push("nats.enabled=true".into());
    let relay = run::start(util::config(&sets)).unwrap();

    let rt = runtime();
    // Subscriptions unsubscribe on drop through the runtime: keep it entered until then.
    let _rt = rt.enter();
    let nc = rt.block_on(async_nats::connect(server.url())).unwrap();
    let mut sub = rt
        .block_on(nc.subscribe("mdrelay.binance.ETHUSDT.*"))
        .unwrap();
    rt.block_on(nc.flush()).unwrap();
    let direct = direct_reader(&sock, EVENTS, Arc::default());
    wait_for_subscribers(&relay, &exchange, 2);
    exchange.resume();
    let got = rt.block_on(collect(&mut sub, true, EVENTS));
    let frames = direct.join().unwrap();

    let mut want = Vec::new();
    for f in frames.iter().filter(|f| matches!(msg_type(f), 2 | 3)) {
        let (fr, _) = protocol::decode_frame(f).unwrap();
        let ev = match fr.message().unwrap() {
            Message::Trade(t) => mdrelay::market::event::Event::Trade(t),
            Message::Quote(q) => mdrelay::market::event::Event::Quote(q),
            _ => unreachable!(),
        };
        let mut line = Vec::new();
        mdrelay::wire::json::write_event(
            &mut line,
            &mdrelay::wire::json::Origin {
                venue: "binance",
                symbol: Some("ETHUSDT"),
                recv_ts_ns: Some(fr.header.recv_ts_ns),
            },
            &ev,
        )
        .unwrap();
        line.pop();
        want.push((
            format!(
                "mdrelay.binance.ETHUSDT.{}",
                if msg_type(f) == 2 { "trade" } else { "quote" }
            ),
            line,
        ));
    }
    let events: Vec<(String, Vec<u8>)> = got
        .iter()
        .filter(|(s, _)| s.ends_with(".trade") || s.ends_with(".quote"))
        .cloned()
        .collect();
    assert_eq!(events.len(), want.len());
    for (i, (g, w)) in events.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "event {i}");
    }
    let def: serde_json::Value = serde_json::from_slice(
        &got.iter()
            .find(|(s, _)| s.ends_with(".def"))
            .expect("definition")
            .1,
    )
    .unwrap();
    assert_eq!(def["type"], "def");
    assert_eq!(def["symbol"], "ETHUSDT");
    assert_eq!(
        def["instrument_id"],
        u64::from(instrument::instrument_id("binance", "ETHUSDT"))
    );

    // Retention: max_msgs = 1000 keeps the newest 1000 of everything published.
    let info = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = stream_info(&nc, "MDJSON").await;
            if info.state.last_sequence >= EVENTS || Instant::now() > deadline {
                return info;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(info.config.max_messages, 1000);
    assert_eq!(info.state.messages, 1000);
    assert_eq!(info.state.first_sequence, info.state.last_sequence - 999);
    assert!(info.state.last_sequence >= EVENTS);
    relay.shutdown();
}

#[derive(Default, Debug)]
struct Tally {
    /// Frames of the instrument a direct subscriber read (definitions and heartbeats aside).
    direct: u64,
    /// Of them, in the stream.
    stored: u64,
    /// Counts of the bridge's `dropped` reports in the stream.
    reported: u64,
}

#[test]
fn nats_server_killed_and_restarted_mid_stream_loses_nothing_unreported() {
    let _wd = util::Watchdog::new("nats_restart", 400);
    let mut server = NatsServer::start();
    let exchange = util::replay_exchange(
        &[(Venue::Binance, vec![util::binance_capture()])],
        100.0,
        false,
        true,
    );
    let (_dir, sock) = util::temp_socket();
    let relay = run::start(util::config(&util::binance_only(
        &sock,
        exchange.local_addr(),
    )))
    .unwrap();
    let mut sets = nats_sets(&server.url(), "frame", "MDKILL", 0);
    // A small buffer: the outage overflows it, so drop reports are exercised too.
    sets.push("nats.buffer_frames=1024".into());
    let ncfg = util::config(&sets).nats;
    let bridge = Bridge::start(&ncfg, &sock).unwrap();
    let progress = Arc::new(AtomicU64::new(0));
    // The reference reads to the relay's end, like the bridge: frames the relay sends after the
    // last event (the bar timer closes the last bars after `close_grace_ms`) are in both.
    let direct = direct_reader_to_end(&sock, progress.clone());
    wait_for_subscribers(&relay, &exchange, 2);
    exchange.resume();

    assert!(util::wait_until(Duration::from_secs(120), || {
        progress.load(Ordering::Relaxed) >= EVENTS / 4
            && bridge.counters().publisher.published.get() > 100
    }));
    server.kill();
    // Acknowledged by the stream before the kill: stored on file, so they must survive it.
    let acked_before_kill = bridge.counters().publisher.published.get();
    assert!(
        progress.load(Ordering::Relaxed) < EVENTS,
        "the outage is mid-stream"
    );
    // The outage lasts until the buffer overflowed (drop reports exercised) or the relay sent
    // every event, whichever comes first: progress, not a fixed time.
    assert!(util::wait_until(Duration::from_secs(120), || {
        bridge.counters().reader.dropped.get() > 0 || progress.load(Ordering::Relaxed) >= EVENTS
    }));
    server.spawn();
    assert!(util::wait_until(Duration::from_secs(120), || progress
        .load(Ordering::Relaxed)
        >= EVENTS));
    // The relay ends: both subscribers then read the same frames, to the end of the stream.
    relay.shutdown();
    let frames = direct.join().unwrap();
    let relayed = frames.iter().filter(|f| msg_type(f) != 5).count() as u64;
    assert!(
        util::wait_until(Duration::from_secs(120), || {
            let r = &bridge.counters().reader;
            r.frames.get() - r.heartbeats.get() >= relayed
                && bridge.settled()
                && bridge.counters().publisher.connects.get() >= 2
        }),
        "bridge did not read the relay's {relayed} frames, reconnect and settle: {:?} / {:?}",
        bridge.counters().reader,
        bridge.counters().publisher
    );
    let dropped_reported = bridge.counters().reader.dropped_reported.get();
    let summary = bridge.shutdown();
    eprintln!("{summary}");
    assert!(summary.connects >= 2, "reconnected");
    assert_eq!(summary.lost_at_shutdown, 0);
    assert_eq!(summary.refused, 0);
    assert!(
        summary.published > acked_before_kill,
        "published after the restart"
    );

    let rt = runtime();
    let _rt = rt.enter();
    let nc = rt.block_on(async_nats::connect(server.url())).unwrap();
    let stored = rt.block_on(read_stream(&nc, "MDKILL"));
    assert!(
        stored.len() as u64 >= acked_before_kill,
        "{} messages acknowledged before the kill, {} in the stream",
        acked_before_kill,
        stored.len()
    );

    let id = instrument::instrument_id("binance", "ETHUSDT");
    let mut direct_by_seq = BTreeMap::new();
    // Frames of other kinds (bars, statuses) the relay sent, by content: each once in the stream.
    let mut direct_others: BTreeMap<&[u8], u64> = BTreeMap::new();
    let mut t = Tally::default();
    for f in &frames {
        let h = protocol::peek_header(f);
        if h.instrument_id == id && !matches!(h.msg_type, 1 | 5) {
            t.direct += 1;
            if matches!(h.msg_type, 2 | 3) {
                direct_by_seq.insert(h.sequence, f);
            } else {
                *direct_others.entry(f.as_slice()).or_default() += 1;
            }
        }
    }
    let mut last_seq = 0;
    for (subject, p) in &stored {
        let (f, _) = protocol::decode_frame(p).expect("a valid frame");
        if f.header.instrument_id != id || f.header.msg_type == 1 {
            continue;
        }
        match f.message().unwrap() {
            Message::Trade(_) | Message::Quote(_) => {
                let seq = f.header.sequence;
                assert!(seq > last_seq, "in order, once: {seq} after {last_seq}");
                last_seq = seq;
                assert_eq!(
                    Some(p),
                    direct_by_seq.get(&seq).copied(),
                    "event {seq} as the relay sent it"
                );
                assert!(subject.starts_with("mdrelay.binance.ETHUSDT."));
                t.stored += 1;
            }
            Message::Status { status, .. } if status.detail.starts_with("nats bridge:") => {
                assert_eq!(status.code, StatusCode::Dropped);
                assert_eq!(subject, "mdrelay.binance.ETHUSDT.status");
                t.reported += status.count;
            }
            m => {
                let left = direct_others.get_mut(p.as_slice()).filter(|n| **n > 0);
                let Some(left) = left else {
                    panic!(
                        "stored on {subject} but not sent by the relay, or stored twice: type {} \
                         sequence {}: {m:?}",
                        f.header.msg_type, f.header.sequence
                    );
                };
                *left -= 1;
                t.stored += 1;
            }
        }
    }
    eprintln!("{t:?}");
    assert_eq!(
        t.stored + t.reported,
        t.direct,
        "every event stored or reported: {t:?}"
    );
    assert_eq!(
        dropped_reported, t.reported,
        "the bridge's own count agrees"
    );
}

/// One bench phase's NATS side: a subscriber on its own thread and runtime that takes `n`
/// trades and records, for each, NATS receipt (wall clock) minus the frame's `recv_ts_ns`.
fn bench_subscriber(
    url: String,
    n: u64,
) -> thread::JoinHandle<(hdrhistogram::Histogram<u64>, Duration)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let h = thread::spawn(move || {
        let rt = runtime();
        let _rt = rt.enter();
        rt.block_on(async move {
            // Room for a whole burst: the client drops what does not fit (slow consumer).
            let nc = async_nats::ConnectOptions::new()
                .subscription_capacity(1 << 20)
                .connect(url)
                .await
                .unwrap();
            let mut sub = nc.subscribe("bench.>").await.unwrap();
            nc.flush().await.unwrap();
            ready_tx.send(()).unwrap();
            let mut hist =
                hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
            let mut first = None;
            let mut got = 0;
            while got < n {
                let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(60), sub.next()).await
                else {
                    panic!("bench messages stalled after {got} of {n}");
                };
                let h = protocol::peek_header(&m.payload);
                if h.msg_type == 2 {
                    let now = mdrelay::base::clock::wall_ns();
                    first.get_or_insert_with(Instant::now);
                    let _ = hist.record(now.saturating_sub(h.recv_ts_ns).max(1));
                    got += 1;
                }
            }
            (hist, first.map(|f| f.elapsed()).unwrap_or_default())
        })
    });
    ready_rx.recv().unwrap();
    h
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Bridge throughput and added latency. Not part of `make test`; run it with
/// `CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 cargo test --release
///  --features nats --test it nats::bench -- --ignored --nocapture` (docs/BENCHMARKS.md).
#[test]
#[ignore = "benchmark: see docs/BENCHMARKS.md"]
fn bench_bridge_throughput_and_latency() {
    use mdrelay::config::IdleStrategy;
    use mdrelay::market::event::{Event, Side, Trade};
    use mdrelay::queue::{Backpressure, QueueSpec, Transport};

    const PACED: u64 = 10_000;
    const PACED_RATE: u64 = 2_000;
    const BURST: u64 = 200_000;
    for jetstream in [false, true] {
        let server = NatsServer::start();
        let (pipe, mut publishers, _) = util::Pipeline::new(
            &[QueueSpec {
                name: "bench".into(),
                transport: Transport::Channel,
                capacity_frames: 65_536,
                policy: Backpressure::Block,
                block_timeout: Duration::from_secs(5),
            }],
            IdleStrategy::Park,
        );
        let mut sets = vec![
            format!("nats.url={:?}", server.url()),
            "nats.subject_prefix=\"bench\"".into(),
            "nats.buffer_frames=262144".into(),
        ];
        if jetstream {
            sets.extend([
                "nats.jetstream.enabled=true".into(),
                "nats.jetstream.stream=\"BENCH\"".into(),
                "nats.jetstream.max_bytes=0".into(),
            ]);
        }
        let bridge = Bridge::start(&util::config(&sets).nats, &pipe.socket).unwrap();
        let mut direct = pipe.subscribe();
        assert!(util::wait_until(Duration::from_secs(20), || pipe
            .relay_counters
            .subscribers
            .get()
            >= 2));
        let publisher = &mut publishers[0];
        let mut k = 0u64;
        let mut trade = |publisher: &mut mdrelay::feed::publisher::Publisher| {
            k += 1;
            let ev = Event::Trade(Trade {
                price: 100_000_000 + k as i64,
                size: 1,
                side: Side::Buy,
                trade_id: Some(k),
                exchange_ts_ns: None,
            });
            publisher.on_event(
                Some("BENCHUSDT"),
                &ev,
                mdrelay::base::clock::mono_ns(),
                mdrelay::base::clock::wall_ns(),
            );
            publisher.end_message();
        };

        // Latency: a paced stream well below saturation; the direct subscriber gives the relay's
        // own share of the same path.
        let sub = bench_subscriber(server.url(), PACED);
        let direct_reader = thread::spawn(move || {
            let mut hist =
                hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
            let mut got = 0;
            while got < PACED + BURST {
                let rx = direct.next_frame().unwrap().unwrap();
                if rx.frame.header.msg_type == 2 {
                    if got < PACED {
                        let now = mdrelay::base::clock::wall_ns();
                        let _ = hist.record(now.saturating_sub(rx.frame.header.recv_ts_ns).max(1));
                    }
                    got += 1;
                }
            }
            hist
        });
        let start = Instant::now();
        for i in 0..PACED {
            let at = start + Duration::from_nanos(i * 1_000_000_000 / PACED_RATE);
            while let Some(d) = at.checked_duration_since(Instant::now()) {
                thread::sleep(d);
            }
            trade(publisher);
        }
        let Ok((nats_hist, _)) = sub.join() else {
            panic!(
                "paced phase failed: {:?} {:?}",
                bridge.counters().reader,
                bridge.counters().publisher
            );
        };

        // Throughput: a burst, timed by the bridge's own `published` counter (JetStream: acked).
        let sub = bench_subscriber(server.url(), BURST);
        let before = bridge.counters().publisher.published.get();
        let t0 = Instant::now();
        for _ in 0..BURST {
            trade(publisher);
        }
        let offered = t0.elapsed();
        assert!(util::wait_until(Duration::from_secs(300), || bridge
            .counters()
            .publisher
            .published
            .get()
            >= before + BURST));
        let published_in = t0.elapsed();
        let (_, received_in) = sub.join().unwrap();
        let direct_hist = direct_reader.join().unwrap();
        let summary = bridge.shutdown();
        assert_eq!(summary.dropped, 0, "{summary}");
        println!(
            "mode {:<10} | paced {PACED} trades at {PACED_RATE}/s: relay→direct subscriber p50 {:.1} µs p99 {:.1} µs | \
             relay→bridge→NATS subscriber p50 {:.1} µs p99 {:.1} µs max {:.1} µs | burst {BURST}: offered in {:.2} s, \
             published at {:.0} events/s, NATS subscriber received at {:.0} events/s",
            if jetstream { "jetstream" } else { "core" },
            us(direct_hist.value_at_quantile(0.5)),
            us(direct_hist.value_at_quantile(0.99)),
            us(nats_hist.value_at_quantile(0.5)),
            us(nats_hist.value_at_quantile(0.99)),
            us(nats_hist.max()),
            offered.as_secs_f64(),
            BURST as f64 / published_in.as_secs_f64(),
            BURST as f64 / received_in.as_secs_f64(),
        );
        drop(publishers);
        pipe.shutdown();
    }
}
