//! Bars, CSV, raw recording, replay and the HTTP query API, through the real relay.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mdrelay::config::{BarClock, FeedConfig};
use mdrelay::market::event::StatusCode;
use mdrelay::market::instrument::{self, Venue};
use mdrelay::relay::client::RelayClient;
use mdrelay::run;
use mdrelay::wire::protocol::{self, Message, MsgType};
use serde_json::Value;

use crate::util;

/// Trades and bookTickers in the bundled Binance capture.
const TRADES: u64 = 6106;
const EVENTS: u64 = 6106 + 24077;

fn relayed(r: &run::Running) -> u64 {
    r.feed_stats(0).unwrap().consumer.relayed_events.get()
}

fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = util::http_get(addr, path);
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, v)
}

#[test]
fn query_api_answers_every_endpoint_and_names_bad_parameters() {
    let _wd = util::Watchdog::new("query_api", 120);
    let exchange = util::binance_exchange(false);
    let addr = exchange.local_addr();
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, addr);
    sets.extend([
        format!("feeds.binance.rest_url=\"http://{addr}/binance\""),
        "feeds.binance.channels=[\"trade\", \"bookTicker\", \"depth@100ms\"]".into(),
        "bars.close_grace_ms=0".into(),
        "bars.timer_interval_ms=10".into(),
        "http.snapshot_interval_ms=10".into(),
    ]);
    let relay = run::start(util::config(&sets)).unwrap();
    let http = relay.http_addr().unwrap();
    assert!(
        util::wait_until(Duration::from_secs(60), || {
            let (_, v) = get_json(http, "/v1/ticker?venue=binance&symbol=ETHUSDT");
            v["session"]["trade_count"].as_u64() == Some(TRADES)
        }),
        "every trade of the capture reaches the ticker"
    );
    // All trades arrive within about a second here; the timer closes their bars.
    assert!(util::wait_until(Duration::from_secs(30), || relay
        .analytics_counters()
        .bars_closed
        .get()
        > 0));

    let (s, v) = get_json(http, "/v1/instruments");
    assert_eq!(s, 200);
    let list = v["instruments"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["venue"], "binance");
    assert_eq!(list[0]["symbol"], "ETHUSDT");
    assert_eq!(
        list[0]["id"].as_u64(),
        Some(u64::from(instrument::instrument_id("binance", "ETHUSDT")))
    );

    let (s, t) = get_json(http, "/v1/ticker?venue=binance&symbol=ETHUSDT");
    assert_eq!(s, 200);
    let last = t["last_trade"]["price"].as_str().unwrap();
    assert_eq!(t["session"]["last_price"].as_str(), Some(last));
    assert!(t["bbo"]["bid_price"].is_string() && t["bbo"]["ask_price"].is_string());
    let (min, max) = (
        t["session"]["min_price"].as_str().unwrap(),
        t["session"]["max_price"].as_str().unwrap(),
    );
    assert!(
        min.parse::<f64>().unwrap() <= max.parse::<f64>().unwrap(),
        "{t}"
    );

    // Every trade is in exactly one 1 s bar (closed, or the open one), or was counted late: on a
    // loaded machine a trade can reach the consumer after the timer closed its bar (grace 0).
    let q = "/v1/bars?venue=binance&symbol=ETHUSDT&interval=1s&limit=1000&open=true";
    let (s, b) = get_json(http, q);
    assert_eq!(s, 200, "{b}");
    let bars = b["bars"].as_array().unwrap();
    let n: u64 = bars
        .iter()
        .map(|x| x["trade_count"].as_u64().unwrap())
        .sum();
    let late = relay.analytics_counters().late_trades.get();
    assert_eq!(n + late, TRADES, "{late} late\n{b}");
    // The same bars as CSV, read back with the csv crate.
    let (s, body) = util::http_get(http, &format!("{q}&format=csv"));
    assert_eq!(s, 200);
    let mut r = csv::Reader::from_reader(body.as_bytes());
    assert_eq!(&r.headers().unwrap()[0], "start_ts_ns");
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), bars.len());
    for (row, bar) in rows.iter().zip(bars) {
        assert_eq!(&row[0], bar["start_ns"].as_u64().unwrap().to_string());
        assert_eq!(&row[10], bar["close"].as_str().unwrap());
        assert_eq!(&row[11], bar["volume"].as_str().unwrap());
    }
    let (s, one) = get_json(
        http,
        "/v1/bars?venue=binance&symbol=ETHUSDT&interval=1s&limit=1",
    );
    assert_eq!(s, 200);
    assert!(one["bars"].as_array().unwrap().len() <= 1);

    let (s, book) = get_json(http, "/v1/book?venue=binance&symbol=ETHUSDT&depth=5");
    assert_eq!(s, 200, "{book}");
    let (bids, asks) = (
        book["bids"].as_array().unwrap(),
        book["asks"].as_array().unwrap(),
    );
    assert_eq!((bids.len(), asks.len()), (5, 5), "{book}");
    let px = |l: &Value| l[0].as_str().unwrap().parse::<f64>().unwrap();
    assert!(px(&bids[0]) < px(&asks[0]), "not crossed: {book}");
    assert!(px(&bids[0]) > px(&bids[4]), "bids best first: {book}");

    // `mdrelay bars` prints them from this API (the venue found by symbol).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mdrelay"))
        .args([
            "bars",
            "--symbol",
            "ETHUSDT",
            "--interval",
            "1s",
            "--limit",
            "3",
        ])
        .args(["--http", &http.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("binance ETHUSDT 1s bars"), "{text}");
    assert!(lines[1]
        .split_whitespace()
        .eq(["start", "(UTC)", "open", "high", "low", "close", "volume", "vwap", "trades"]));
    // The timer may have closed the open bar since: the last row is one of the bars above.
    let last = lines.last().unwrap();
    assert!(
        bars.iter()
            .any(|x| last.starts_with(x["start"].as_str().unwrap())),
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mdrelay"))
        .args(["bars", "--symbol", "NOPE", "--http", &http.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no instrument with symbol NOPE"));

    for (path, param) in [
        ("/v1/ticker?symbol=ETHUSDT", "venue"),
        ("/v1/ticker?venue=binance", "symbol"),
        ("/v1/ticker?venue=binance&symbol=ETHUSDT&x=1", "x"),
        (
            "/v1/ticker?venue=binance&symbol=ETHUSDT&venue=binance",
            "venue",
        ),
        ("/v1/bars?venue=binance&symbol=ETHUSDT", "interval"),
        (
            "/v1/bars?venue=binance&symbol=ETHUSDT&interval=7m",
            "interval",
        ),
        (
            "/v1/bars?venue=binance&symbol=ETHUSDT&interval=1m&limit=0",
            "limit",
        ),
        (
            "/v1/bars?venue=binance&symbol=ETHUSDT&interval=1m&limit=abc",
            "limit",
        ),
        (
            "/v1/bars?venue=binance&symbol=ETHUSDT&interval=1m&format=xml",
            "format",
        ),
        ("/v1/book?venue=binance&symbol=ETHUSDT&depth=0", "depth"),
        ("/v1/book?venue=binance&symbol=ETHUSDT&depth=51", "depth"),
        ("/v1/instruments?all=1", "all"),
    ] {
        let (s, v) = get_json(http, path);
        assert_eq!(s, 400, "{path}: {v}");
        assert_eq!(v["parameter"], param, "{path}: {v}");
    }
    for path in [
        "/v1/ticker?venue=binance&symbol=BTCUSDT",
        "/v1/bars?venue=kraken&symbol=ETHUSDT&interval=1s",
        "/v1/book?venue=binance&symbol=NOPE",
        "/v1/nothing",
    ] {
        let (s, v) = get_json(http, path);
        assert_eq!(s, 404, "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    relay.shutdown();
}

/// Every file under `dir`, relative path → contents.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// One frame of a relay stream with the relay-side timestamps taken out: heartbeats are
/// dropped, status frames compared by content.
fn comparable(frame: &[u8]) -> Option<Vec<u8>> {
    let (f, _) = protocol::decode_frame(frame).unwrap();
    match f.msg_type() {
        Some(MsgType::Heartbeat) => None,
        Some(MsgType::Status) => {
            let Ok(Message::Status { venue, status }) = f.message() else {
                panic!("bad status")
            };
            Some(
                format!(
                    "status {} {venue} {} {} {}",
                    f.header.instrument_id,
                    status.code.name(),
                    status.count,
                    status.detail
                )
                .into_bytes(),
            )
        }
        _ => Some(frame.to_vec()),
    }
}

/// Replays `recording` through an in-process relay (CSV under `csv`), with one subscriber
/// connected from the start; returns its stream.
fn replay_once(recording: &Path, csv: &Path) -> Vec<Vec<u8>> {
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::csv_into(csv);
    sets.extend([
        format!("relay.socket_path={:?}", sock.display().to_string()),
        "http.enabled=false".into(),
        "consumer.idle=\"park\"".into(),
        "relay.max_pending_bytes=1073741824".into(),
    ]);
    // As `mdrelay replay` does: the configured feeds and exchange give way to the recording.
    let mut cfg = util::config(&sets);
    cfg.replay = None;
    cfg.feeds = vec![FeedConfig::replay(
        "binance",
        Venue::Binance,
        vec![recording.to_path_buf()],
        0.0,
        1,
    )];
    cfg.bars.clock = BarClock::Data;
    cfg.bars.close_on_shutdown = true;
    let relay = run::start(cfg).unwrap();
    let mut client = RelayClient::connect(&sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut frames = Vec::new();
        while let Some(rx) = client.next_frame().unwrap() {
            let bytes = rx.raw.to_vec();
            if let Some(c) = comparable(&bytes) {
                frames.push(c);
            }
        }
        frames
    });
    assert!(util::wait_until(Duration::from_secs(120), || relay.feeds_finished()));
    let summary = relay.shutdown();
    assert!(summary.balanced(), "{summary}");
    assert_eq!(summary.persistence.csv_not_persisted, 0, "{summary}");
    reader.join().unwrap()
}

#[test]
fn record_then_replay_twice_gives_identical_csv_and_stream() {
    let _wd = util::Watchdog::new("record_replay", 300);
    let work = tempfile::tempdir().unwrap();
    let raw = work.path().join("raw");

    // Record: the capture served by the replay exchange, through a live Binance collector.
    let exchange = util::binance_exchange(false);
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.extend([
        "feeds.binance.record=true".into(),
        format!("recording.dir={:?}", raw.display().to_string()),
    ]);
    let relay = run::start(util::config(&sets)).unwrap();
    assert!(util::wait_until(Duration::from_secs(60), || relayed(
        &relay
    ) == EVENTS));
    let summary = relay.shutdown();
    assert_eq!(summary.persistence.raw_dropped, 0, "{summary}");
    let day_files: Vec<PathBuf> = std::fs::read_dir(raw.join("binance"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(day_files.len(), 1, "one file for the feed's UTC day");
    let recording = &day_files[0];
    let name = recording.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("binance_") && name.ends_with(".txt.gz"),
        "{name}"
    );
    // Every message of the capture, in the capture's line layout.
    let lines = mdrelay::persist::recording::read_all(recording).unwrap();
    assert!(lines.len() as u64 >= EVENTS, "{} lines", lines.len());
    assert!(lines.iter().all(|l| l.recv_ns.is_some()));

    // Replay it twice: byte-identical CSV, identical streams.
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let sa = replay_once(recording, &a);
    let sb = replay_once(recording, &b);
    let (ta, tb) = (tree(&a), tree(&b));
    assert!(
        ta.iter().any(|(p, _)| p.ends_with("trades.csv")),
        "{:?}",
        ta.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    assert!(ta.iter().any(|(p, _)| p.ends_with("bars_1s.csv")));
    assert_eq!(
        ta.iter().map(|x| &x.0).collect::<Vec<_>>(),
        tb.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for ((p, x), (_, y)) in ta.iter().zip(&tb) {
        assert!(x == y, "{} differs between the two replays", p.display());
    }
    assert_eq!(
        util::read_csv_rows(&a, "trades.csv").len() as u64,
        TRADES,
        "every trade persisted"
    );
    assert_eq!(sa.len(), sb.len());
    assert!(sa == sb, "the two replays relayed the same frames");
    let bars = sa
        .iter()
        .filter(|f| f.len() > 5 && f[..4] == protocol::MAGIC && f[5] == MsgType::Bar as u8)
        .count();
    assert!(bars > 0, "bars relayed");
}

#[test]
fn replay_command_reads_the_bundled_captures_of_every_venue() {
    let _wd = util::Watchdog::new("replay_cmd", 300);
    let work = tempfile::tempdir().unwrap();
    let csv = work.path().join("csv");
    let sock = work.path().join("relay.sock");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mdrelay"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "replay",
            "--max",
            "data/binance/spot_ethusdt_20240808.txt.gz",
            "data/coinbase/level2_ticker_matches_20210417.txt.gz",
            "data/kraken_v1/book1000_20210417.txt.gz",
            "data/kraken_v1/trade_20210417.txt.gz",
            "data/kraken_v1/ticker_20210417.txt.gz",
            "--set",
            "http.enabled=false",
            "--set",
            "consumer.idle=\"park\"",
            "--set",
        ])
        .arg(format!("writer.data_dir={:?}", csv.display().to_string()))
        .arg("--set")
        .arg(format!(
            "relay.socket_path={:?}",
            sock.display().to_string()
        ))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("accounting balanced"), "{stderr}");
    for feed in ["binance", "coinbase", "kraken_v1"] {
        let row = util::summary_row(&stderr, feed);
        // feed frames control errors range events …
        assert_eq!(row[3], "0", "{feed}: no parse errors\n{stderr}");
        assert!(
            row[5].parse::<u64>().unwrap() > 1000,
            "{feed} events\n{stderr}"
        );
    }
    assert_eq!(
        util::read_csv_rows(&csv.join("binance"), "trades.csv").len() as u64,
        TRADES
    );
    assert!(!util::read_csv_rows(&csv.join("coinbase"), "trades.csv").is_empty());
    assert!(!util::read_csv_rows(&csv.join("kraken_v1"), "trades.csv").is_empty());
    assert!(!util::read_csv_rows(&csv.join("kraken_v1"), "bars_1m.csv").is_empty());
    assert!(!sock.exists(), "socket removed");
}

#[test]
fn unwritable_csv_directory_keeps_the_relay_running_and_writing_resumes() {
    let _wd = util::Watchdog::new("csv_unwritable", 180);
    let work = tempfile::tempdir().unwrap();
    // A regular file where a directory must be: creating the CSV tree fails (even for root,
    // which permission bits would not stop) like a read-only or full disk.
    let blocker = work.path().join("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let csv = blocker.join("csv");
    let exchange = util::replay_exchange(
        &[(Venue::Binance, vec![util::binance_capture()])],
        1000.0,
        true,
        false,
    );
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.extend(util::csv_into(&csv));
    sets.extend([
        "writer.retry_initial_ms=20".into(),
        "writer.retry_max_ms=50".into(),
        "writer.flush_interval_ms=20".into(),
    ]);
    let relay = run::start(util::config(&sets)).unwrap();
    let mut client = RelayClient::connect(&sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The subscriber keeps receiving trades and is told records were not persisted.
    let (mut trades, mut not_persisted) = (0u64, 0u64);
    while trades < 200 || not_persisted == 0 {
        let rx = client.next_frame().unwrap().expect("relay keeps running");
        match rx.frame.message().unwrap() {
            Message::Trade(_) => trades += 1,
            Message::Status { venue, status } if status.code == StatusCode::NotPersisted => {
                assert_eq!(venue, "mdrelay");
                assert_eq!(rx.frame.header.instrument_id, 0);
                assert!(status.detail.contains("csv"), "{}", status.detail);
                not_persisted += status.count;
            }
            _ => {}
        }
    }
    let w = relay.writer_stats().unwrap();
    assert!(w.writer.io_errors.get() > 0);
    assert!(w.writer.dropped_io.get() > 0);
    assert_eq!(w.writer.rows_written.get(), 0);
    let metrics = util::http_get(relay.http_addr().unwrap(), "/metrics").1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mdrelay_writer_io_errors_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // The disk is back: writing resumes by itself.
    std::fs::remove_file(&blocker).unwrap();
    assert!(
        util::wait_until(Duration::from_secs(60), || w.writer.rows_written.get() > 0),
        "writing resumes"
    );
    let summary = relay.shutdown();
    assert!(summary.persistence.csv_not_persisted > 0, "{summary}");
    assert!(summary.persistence.csv_rows.unwrap() > 0, "{summary}");
    // What the writer counts as written is in the files, every row complete.
    let in_files: usize = ["trades.csv", "quotes.csv", "bars_1s.csv", "bars_1m.csv"]
        .iter()
        .map(|f| util::read_csv_rows(&csv, f).len())
        .sum();
    assert_eq!(
        in_files as u64,
        summary.persistence.csv_rows.unwrap(),
        "{summary}"
    );
}
