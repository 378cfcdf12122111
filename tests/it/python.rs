//! The second-language client: `examples/python/mdrelay_client.py`, written from
//! docs/PROTOCOL.md alone, decodes the documented golden vectors and a live relay's stream.
//! If python3 is missing these tests fail: it is part of the machine.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use mdrelay::{market::instrument, run};
use serde_json::Value;

use crate::util;

/// Trades and bookTickers in the bundled Binance capture.
const TRADES: u64 = 6106;
const QUOTES: u64 = 24077;

/// `python3 examples/python/mdrelay_client.py`, after checking that python3 (3.10 or later) is
/// there. Panics with a clear message otherwise: a missing interpreter is a failure, not a skip.
fn client() -> Command {
    let probe = Command::new("python3")
        .arg("-c")
        .arg("import sys; print('%d.%d' % sys.version_info[:2])")
        .output();
    let out = match probe {
        Ok(o) => o,
        Err(e) => panic!(
            "python3 is required by the Python-client tests and is part of the machine \
             (CPython 3.11), but it could not be run: {e}"
        ),
    };
    assert!(
        out.status.success(),
        "python3 is required (CPython 3.11) but `python3 -c ...` failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (major, minor) = version
        .split_once('.')
        .map(|(a, b)| (a.parse::<u32>().unwrap_or(0), b.parse::<u32>().unwrap_or(0)))
        .unwrap_or((0, 0));
    assert!(
        (major, minor) >= (3, 10),
        "the Python client needs python3 >= 3.10 (the machine has CPython 3.11), found {version:?}"
    );
    let script = util::repo("examples/python/mdrelay_client.py");
    assert!(script.exists(), "{} is missing", script.display());
    let mut c = Command::new("python3");
    c.arg(script)
        .current_dir(util::repo(""))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null());
    c
}

/// Starts the Python client on `sock` with `args`, output captured.
fn spawn_client(sock: &std::path::Path, args: &[&str]) -> Child {
    client()
        .arg("--socket")
        .arg(sock)
        .args(["--timeout", "60", "--summary"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3")
}

/// Waits until the relay has admitted `n` subscribers; fails if the client exits first.
fn wait_admitted(relay: &run::Running, child: &mut Child, n: u64) {
    let ok = util::wait_until(Duration::from_secs(60), || {
        relay.relay_counters().accepted.get() >= n || child.try_wait().expect("try_wait").is_some()
    });
    if let Some(status) = child.try_wait().expect("try_wait") {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        panic!("the Python client exited before it was admitted: {status:?}\n{err}");
    }
    assert!(ok, "the relay admitted the Python client within 60 s");
}

/// The client's exit status must be 0; returns its summary (the last line of stdout) and the
/// JSON event lines before it.
fn finish(out: Output) -> (Value, Vec<Value>) {
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines: Vec<&str> = stdout.lines().collect();
    let last = lines.pop().unwrap_or("");
    let summary: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("summary line is not JSON ({e}): {last:?}\nstderr:\n{stderr}"));
    assert!(
        out.status.success(),
        "python client failed: {:?}\nsummary: {summary:#}\nstderr:\n{stderr}",
        out.status
    );
    let events = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    (summary, events)
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected an unsigned integer, found {v}"))
}

#[test]
fn python_client_selftest_decodes_every_golden_vector() {
    let _wd = util::Watchdog::new("python_selftest", 120);
    let out = client().arg("--selftest").output().expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "selftest failed: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(" 0 failed"),
        "selftest output:\n{stdout}\n{stderr}"
    );
}

/// Connected before any data flows (the replay exchange is held paused until the Python client
/// is admitted), the Python client decodes every trade and quote of the capture, live, in
/// sequence, with the definition first.
#[test]
fn python_client_receives_the_whole_capture_live() {
    let _wd = util::Watchdog::new("python_live", 300);
    let exchange = util::binance_exchange(true);
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    // The Python reader may be slow on a loaded machine: never cut it as a slow subscriber.
    sets.push("relay.max_pending_bytes=268435456".into());
    let relay = run::start(util::config(&sets)).unwrap();
    let total = (TRADES + QUOTES).to_string();
    let mut child = spawn_client(&sock, &["--json", "--count", &total]);
    wait_admitted(&relay, &mut child, 1);
    assert!(
        util::wait_until(Duration::from_secs(60), || exchange.subscribed_sessions()
            >= 1),
        "the collector subscribed to the replay exchange"
    );
    exchange.resume();
    let out = child.wait_with_output().expect("python client output");
    let (s, events) = finish(out);
    eprintln!("python client summary: {s}");

    assert_eq!(s["end"], "count", "{s:#}");
    assert_eq!(s["error"], Value::Null, "{s:#}");
    assert_eq!(u(&s["counts"]["Trade"]), TRADES, "{s:#}");
    assert_eq!(u(&s["counts"]["Quote"]), QUOTES, "{s:#}");
    assert_eq!(u(&s["counts"]["InstrumentDef"]), 1, "{s:#}");
    assert_eq!(u(&s["counts"]["Unknown"]), 0, "{s:#}");
    assert_eq!(
        u(&s["cached"]["Trade"]),
        0,
        "connected before data: nothing cached"
    );
    assert_eq!(
        u(&s["cached"]["Quote"]),
        0,
        "connected before data: nothing cached"
    );
    assert_eq!(u(&s["crc_failures"]), 0, "{s:#}");
    assert_eq!(u(&s["malformed"]), 0, "{s:#}");
    assert_eq!(u(&s["gap_count"]), 0, "{s:#}");
    assert_eq!(u(&s["missing_total"]), 0, "{s:#}");
    assert_eq!(u(&s["dropped_total"]), 0, "{s:#}");
    assert_eq!(u(&s["ids_verified"]), 1, "{s:#}");
    assert_eq!(u(&s["id_mismatches"]), 0, "{s:#}");
    assert_eq!(s["def_before_events"], true, "{s:#}");
    assert_eq!(u(&s["undefined_id_frames"]), 0, "{s:#}");
    assert_eq!(s["violations"], Value::Array(vec![]), "{s:#}");
    let eth = &s["instruments"]["binance:ETHUSDT"];
    assert_eq!(
        u(&eth["id"]),
        u64::from(instrument::instrument_id("binance", "ETHUSDT"))
    );
    assert_eq!(eth["id_verified"], true);
    assert_eq!(u(&eth["def_sequence"]), 1, "defined with its first event");
    assert_eq!(u(&eth["last_sequence"]), TRADES + QUOTES, "{s:#}");
    assert_eq!(u(&eth["live_events"]), TRADES + QUOTES);
    // Apart from feed-wide statuses, the definition is the first frame.
    let first: Vec<&str> = s["first_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .filter(|t| *t != "Status")
        .collect();
    assert_eq!(first.first(), Some(&"InstrumentDef"), "{s:#}");

    // The JSON lines: one per message, exact decimals, sequences 1..=N.
    let md: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "trade" || e["type"] == "quote")
        .collect();
    assert_eq!(md.len() as u64, TRADES + QUOTES);
    for (i, e) in md.iter().enumerate() {
        assert_eq!(u(&e["sequence"]), i as u64 + 1, "{e}");
        assert_eq!(e["symbol"], "ETHUSDT", "{e}");
        assert_eq!(e["cached"], false, "{e}");
        assert!(u(&e["recv_ts_ns"]) > 0, "{e}");
    }
    let trade = md.iter().find(|e| e["type"] == "trade").unwrap();
    let price = trade["price"].as_str().unwrap();
    assert!(
        price.parse::<f64>().is_ok() && !price.contains('e') && !price.contains('E'),
        "{trade}"
    );
    assert!(["buy", "sell"].contains(&trade["side"].as_str().unwrap()));

    let summary = relay.shutdown();
    assert!(summary.balanced(), "{summary}");
    assert_eq!(summary.feeds[0].relayed, TRADES + QUOTES);
    exchange.stop();
}

/// A late joiner (the replay exchange has already served the whole capture) gets the
/// definition, then the cached latest quote and trade, and a clean EOF at shutdown.
#[test]
fn python_client_late_join_gets_cached_snapshot_then_clean_eof() {
    let _wd = util::Watchdog::new("python_late_join", 300);
    let exchange = util::binance_exchange(false);
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.push("relay.drain_timeout_ms=30000".into());
    let relay = run::start(util::config(&sets)).unwrap();
    assert!(
        util::wait_until(Duration::from_secs(120), || {
            relay.feed_stats(0).unwrap().consumer.relayed_events.get() >= TRADES + QUOTES
        }),
        "the relay relayed the whole capture"
    );
    let mut child = spawn_client(&sock, &["--json"]);
    wait_admitted(&relay, &mut child, 1);
    let summary = relay.shutdown();
    assert!(summary.balanced(), "{summary}");
    let out = child.wait_with_output().expect("python client output");
    let (s, events) = finish(out);
    eprintln!("python client summary: {s}");

    assert_eq!(s["end"], "eof", "clean EOF at a frame boundary: {s:#}");
    assert_eq!(s["error"], Value::Null, "{s:#}");
    let first: Vec<&str> = s["first_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        first.get(..3),
        Some(&["InstrumentDef", "Quote", "Trade"][..]),
        "join snapshot: definition, cached quote, cached trade: {s:#}"
    );
    assert_eq!(u(&s["counts"]["InstrumentDef"]), 1, "{s:#}");
    assert_eq!(u(&s["counts"]["Trade"]), 1, "{s:#}");
    assert_eq!(u(&s["counts"]["Quote"]), 1, "{s:#}");
    assert_eq!(u(&s["cached"]["Trade"]), 1, "{s:#}");
    assert_eq!(u(&s["cached"]["Quote"]), 1, "{s:#}");
    assert_eq!(u(&s["crc_failures"]), 0, "{s:#}");
    assert_eq!(
        u(&s["gap_count"]),
        0,
        "cached frames are not gap-checked: {s:#}"
    );
    assert_eq!(u(&s["ids_verified"]), 1, "{s:#}");
    assert_eq!(s["def_before_events"], true, "{s:#}");
    assert_eq!(s["violations"], Value::Array(vec![]), "{s:#}");
    let eth = &s["instruments"]["binance:ETHUSDT"];
    assert_eq!(eth["last_sequence"], Value::Null, "no live event: {s:#}");
    assert_eq!(
        u(&eth["max_cached_sequence"]),
        TRADES + QUOTES,
        "the last event of the capture is cached: {s:#}"
    );
    let cached: Vec<&Value> = events.iter().filter(|e| e["cached"] == true).collect();
    // Quote and trade, then the last closed bar of each interval that has one.
    let (bars, rest): (Vec<&Value>, Vec<&Value>) = cached.iter().partition(|e| e["type"] == "bar");
    assert_eq!(rest.len(), 2, "{s:#}");
    assert!(bars.len() <= 4, "at most one bar per interval: {s:#}");
    assert!(cached.iter().all(|e| u(&e["flags"]) & 0x0008 != 0));
    exchange.stop();
}

/// The Python client subscribes (docs/PROTOCOL.md §6.5) to trades only and gets exactly the
/// capture's trades, acknowledged by a `request_ok` status.
#[test]
fn python_client_subscribes_to_trades_only() {
    let _wd = util::Watchdog::new("python_subscribe", 300);
    let exchange = util::binance_exchange(true);
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.push("relay.max_pending_bytes=268435456".into());
    sets.push("relay.hello_timeout_ms=500".into());
    let relay = run::start(util::config(&sets)).unwrap();
    let total = TRADES.to_string();
    let mut child = spawn_client(
        &sock,
        &[
            "--quiet", "--count", &total, "--venue", "binance", "--symbol", "ETH*", "--kind",
            "trade",
        ],
    );
    wait_admitted(&relay, &mut child, 1);
    exchange.resume();
    let out = child.wait_with_output().expect("python client output");
    let (s, _) = finish(out);
    assert_eq!(s["end"], "count", "{s:#}");
    assert_eq!(u(&s["counts"]["Trade"]), TRADES, "{s:#}");
    assert_eq!(u(&s["counts"]["Quote"]), 0, "{s:#}");
    assert_eq!(u(&s["status_codes"]["request_ok"]), 1, "{s:#}");
    relay.shutdown();
}
