//! The second-language client: `clients/python/src/mdrelay_client/protocol.py`, written from
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

/// `python3 clients/python/src/mdrelay_client/protocol.py`, after checking that python3 (3.10 or later) is
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
    let script = util::repo("clients/python/src/mdrelay_client/protocol.py");
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

/// The hex of golden vector `section` (e.g. "10.10") as printed in docs/PROTOCOL.md: the first
/// fenced block after its heading.
fn doc_vector(doc: &str, section: &str) -> String {
    let head = format!("### {section} ");
    let at = doc
        .find(&head)
        .unwrap_or_else(|| panic!("PROTOCOL.md has no section {section}"));
    let rest = &doc[at..];
    let open = rest.find("```\n").expect("a fenced block") + 4;
    let close = open + rest[open..].find("\n```").expect("its end");
    rest[open..close].trim().to_owned()
}

/// The derivatives vectors of docs/PROTOCOL.md (§10.10–10.13): the document's bytes are what the
/// Rust encoder writes, and the Python client (written from the document) decodes them to the
/// documented values, typed.
#[test]
fn python_client_decodes_the_documents_derivatives_vectors() {
    use mdrelay::market::event::{Liquidation, LiquidationStatus, Mark, OpenInterest, Side};
    use mdrelay::wire::derivatives::{encode_liquidation, encode_mark, encode_open_interest};
    use mdrelay::wire::protocol::{add_flags, flags, FrameBuf, Meta};

    let _wd = util::Watchdog::new("python_derivatives", 120);
    let doc = std::fs::read_to_string(util::repo("docs/PROTOCOL.md")).expect("read PROTOCOL.md");
    let id = instrument::instrument_id("binance_usdm", "BTCUSDT");
    assert_eq!(id, 0x6a93_55f4, "the id printed in §10.10");
    let meta = |recv_ts_ns| Meta {
        instrument_id: id,
        sequence: 7,
        recv_ts_ns,
        flags: 0,
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut buf = FrameBuf::new();
    let mut rust = Vec::new();
    encode_mark(
        &mut buf,
        &meta(1_562_305_380_012_345_678),
        1,
        &Mark {
            mark_price: 1_179_415_000_000,
            index_price: 1_178_462_659_091,
            settle_price: 1_178_425_641_265,
            funding_rate: 381_670_000_000_000,
            next_funding_ns: Some(1_562_306_400_000_000_000),
            exchange_ts_ns: Some(1_562_305_380_000_000_000),
        },
    );
    rust.push(("10.10", hex(&buf)));
    add_flags(&mut buf, flags::CACHED);
    rust.push(("10.13", hex(&buf)));
    encode_liquidation(
        &mut buf,
        &meta(1_568_014_460_900_000_000),
        1,
        &Liquidation {
            side: Side::Sell,
            price: 991_000_000_000,
            avg_price: 991_012_345_678,
            size: 1_400_000,
            filled_size: 1_400_000,
            status: LiquidationStatus::Filled,
            exchange_ts_ns: Some(1_568_014_460_893_000_000),
        },
    );
    rust.push(("10.11", hex(&buf)));
    encode_open_interest(
        &mut buf,
        &meta(1_589_437_530_020_000_000),
        1,
        &OpenInterest {
            open_interest: 1_065_974_900_000,
            value: 10_126_761_550_000_000,
            exchange_ts_ns: Some(1_589_437_530_011_000_000),
        },
    );
    rust.push(("10.12", hex(&buf)));
    let mut vectors = Vec::new();
    for (section, ours) in &rust {
        let printed = doc_vector(&doc, section);
        assert_eq!(
            &printed, ours,
            "§{section}: the document and the encoder disagree"
        );
        vectors.push(printed);
    }

    // The Python client decodes each vector (its own framing, CRC check and typed decode).
    let script = concat!(
        "import json, sys\n",
        "sys.path.insert(0, 'clients/python/src/mdrelay_client')\n",
        "import protocol as m\n",
        "for x in sys.argv[1:]:\n",
        "    (h, p), = m._decode_all(bytes.fromhex(x))\n",
        "    msg = m.decode_message(h, p)\n",
        "    print(json.dumps({'class': type(msg).__name__, **m.to_json(msg, {})}))\n",
    );
    drop(client()); // checks that python3 (3.10+) and the client script are there
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&vectors)
        .current_dir(util::repo(""))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let (mark, cached, liq, oi) = (&lines[0], &lines[1], &lines[2], &lines[3]);
    assert_eq!(mark["class"], "Mark");
    assert_eq!(mark["mark_price"], "11794.15");
    assert_eq!(mark["index_price"], "11784.62659091");
    assert_eq!(mark["settle_price"], "11784.25641265");
    assert_eq!(mark["funding_rate"], "0.00038167");
    assert_eq!(u(&mark["next_funding_ns"]), 1_562_306_400_000_000_000);
    assert_eq!(u(&mark["exchange_ts_ns"]), 1_562_305_380_000_000_000);
    assert_eq!(u(&mark["sequence"]), 7);
    assert_eq!(u(&mark["kind_sequence"]), 1);
    assert_eq!(mark["cached"], false);
    assert_eq!(cached["class"], "Mark");
    assert_eq!(cached["cached"], true);
    assert_eq!(cached["funding_rate"], "0.00038167");
    assert_eq!(liq["class"], "Liquidation");
    assert_eq!(
        (
            &liq["side"],
            &liq["price"],
            &liq["avg_price"],
            &liq["size"],
            &liq["filled_size"],
            &liq["status"]
        ),
        (
            &Value::from("sell"),
            &Value::from("9910"),
            &Value::from("9910.12345678"),
            &Value::from("0.014"),
            &Value::from("0.014"),
            &Value::from("filled")
        )
    );
    assert_eq!(oi["class"], "OpenInterest");
    assert_eq!(oi["open_interest"], "10659.749");
    assert_eq!(oi["value"], "101267615.5");
    assert_eq!(u(&oi["exchange_ts_ns"]), 1_589_437_530_011_000_000);
}
