//! `mdrelay replay-exchange` driven by a third-party client: tests/python/replay_exchange_client.py
//! on the `websockets` package (PyPI) and urllib, the way a user points their own exchange client
//! at it. Two concurrent Binance spot sessions at different positions and a USD-M one each sync a
//! REST snapshot by Binance's rules; their books are never crossed and equal an independent
//! rebuild from the recording (serde_json here, no mdrelay book code). A client Close is echoed
//! within 100 ms (Binance, Coinbase, OKX). `--from`/`--to` bound what is replayed; bad flags exit
//! 2; SIGINT exits 0.
//!
//! The interpreter is `MDRELAY_TEST_PYTHON`, else `target/pyenv/bin/python` (`make pyenv`); when
//! it or the `websockets` module is missing the tests fail saying so.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use serde_json::{json, Value};

use crate::util;

const SPOT: &str = "data/binance/spot_ethusdt_20240808.txt.gz";
const USDM: &str = "data/binance_usdm/ethusdt_20240808.txt.gz";
const COINBASE: &str = "data/coinbase/level2_ticker_matches_20210417.txt.gz";
const OKX: &str = "data/okx/books_trades_tickers_20220513.txt.gz";

/// The client's Close must be answered (echo received and TCP closed) within this.
const CLOSE_WITHIN_MS: f64 = 100.0;

/// The Python interpreter with `websockets`, or a panic saying how to get one.
fn python() -> PathBuf {
    let py = std::env::var_os("MDRELAY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::repo("target/pyenv/bin/python"));
    let probe = Command::new(&py)
        .args(["-c", "import websockets; print(websockets.__version__)"])
        .output();
    match probe {
        Ok(o) if o.status.success() => py,
        Ok(o) => panic!(
            "{} has no usable `websockets` module: run `make pyenv` (or set MDRELAY_TEST_PYTHON \
             to a Python with websockets 17): {}",
            py.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "no Python interpreter at {}: run `make pyenv` (or set MDRELAY_TEST_PYTHON): {e}",
            py.display()
        ),
    }
}

/// A running `mdrelay replay-exchange`; SIGINT on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(files: &[&str], extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut child = util::mdrelay_in(dir.path())
            .arg("replay-exchange")
            .args(files)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a first line").unwrap();
        let addr = first
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        // One URL line per venue.
        for _ in 0..files.len() {
            let l = lines.next().expect("a URL line").unwrap();
            assert!(l.contains(&format!("ws://{addr}/")), "{l}");
        }
        Server { child, addr }
    }

    /// SIGINT; the exit status within 10 s.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        self.signal(Signal::INT)
    }

    /// `sig`; the exit status within 10 s.
    fn signal(&mut self, sig: Signal) -> std::process::ExitStatus {
        kill_process(Pid::from_child(&self.child), sig).unwrap();
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "exits on SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill_process(Pid::from_child(&self.child), Signal::INT);
            let _ = self.child.wait();
        }
    }
}

/// Runs the Python client on `sessions`; its reports by name.
fn run_client(sessions: &Value) -> BTreeMap<String, Value> {
    let mut child = Command::new(python())
        .arg(util::repo("tests/python/replay_exchange_client.py"))
        .arg(sessions.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "python client: {status:?}\n{out}\n{err}");
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(v.get("error").is_none(), "session failed: {v}");
            (v["name"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

/// The book of a Binance capture after every diff up to update id `final_u`, rebuilt from the
/// recorded snapshot and the diffs after it in recording order (serde_json, no mdrelay code).
fn rebuild(path: &str, final_u: u64) -> (util::Side8, util::Side8) {
    let recs = mdrelay::persist::recording::read_all(&util::repo(path)).unwrap();
    let mut snapshot = None;
    let mut diffs = Vec::new();
    for r in &recs {
        let v: Value = serde_json::from_str(&r.raw).unwrap();
        if v.get("lastUpdateId").is_some() {
            snapshot.get_or_insert(v);
        } else if v["stream"].as_str().is_some_and(|s| s.contains("@depth")) {
            diffs.push(v["data"].clone());
        }
    }
    let snap = snapshot.expect("a recorded snapshot");
    let (mut bids, mut asks) = (util::Side8::new(), util::Side8::new());
    util::set_levels(&mut bids, &snap["bids"]);
    util::set_levels(&mut asks, &snap["asks"]);
    let mut last = snap["lastUpdateId"].as_u64().unwrap();
    for d in diffs {
        let u = d["u"].as_u64().unwrap();
        if u <= last || u > final_u {
            continue;
        }
        util::set_levels(&mut bids, &d["b"]);
        util::set_levels(&mut asks, &d["a"]);
        last = u;
    }
    assert_eq!(last, final_u, "the client's last diff is in the recording");
    (bids, asks)
}

/// A session's report: synced, never crossed, and equal to the rebuild.
fn assert_consistent(report: &Value, path: &str, applied: u64) {
    assert_eq!(report["applied"], applied, "{report}");
    assert_eq!(report["snapshot_crossed"], false, "{report}");
    assert_eq!(report["crossed_after_diffs"], 0, "{report}");
    let (mut bids, mut asks) = (util::Side8::new(), util::Side8::new());
    util::set_levels(&mut bids, &report["bids"]);
    util::set_levels(&mut asks, &report["asks"]);
    let (want_bids, want_asks) = rebuild(path, report["final_u"].as_u64().unwrap());
    assert!(
        want_bids.keys().next_back() < want_asks.keys().next(),
        "the rebuild is not crossed"
    );
    assert!(
        bids == want_bids && asks == want_asks,
        "{}: client book ({} bids, {} asks) != rebuild ({} bids, {} asks) at u={}",
        report["name"],
        bids.len(),
        asks.len(),
        want_bids.len(),
        want_asks.len(),
        report["final_u"]
    );
}

fn assert_close_answered(report: &Value, code: u64) {
    assert_eq!(report["close_code"], code, "the Close is echoed: {report}");
    let ms = report["close_ms"].as_f64().unwrap();
    assert!(ms < CLOSE_WITHIN_MS, "close took {ms:.1} ms: {report}");
}

fn binance_session(name: &str, addr: &str, usdm: bool, buffer: u64, after: &[&str]) -> Value {
    binance_session_after(name, addr, usdm, buffer, after, &[])
}

fn binance_session_after(
    name: &str,
    addr: &str,
    usdm: bool,
    buffer: u64,
    fetch_after: &[&str],
    start_after: &[&str],
) -> Value {
    let (venue, rest, stream) = if usdm {
        ("binance_usdm", "fapi/v1/depth", "ethusdt@depth@0ms")
    } else {
        ("binance", "api/v3/depth", "ethusdt@depth@100ms")
    };
    json!({
        "kind": "binance", "name": name, "futures": usdm,
        "url": format!("ws://{addr}/{venue}/stream"),
        "rest": format!("http://{addr}/{venue}/{rest}?symbol=ETHUSDT&limit=5000"),
        "stream": stream, "buffer_diffs": buffer, "fetch_after": fetch_after,
        "start_after": start_after,
        "after_diffs": 300, "close_code": 4001, "timeout_s": 60,
    })
}

fn close_session(name: &str, url: String, subscribe: Value, code: u64) -> Value {
    json!({"kind": "close", "name": name, "url": url, "subscribe": subscribe,
           "messages": 3, "close_code": code})
}

#[test]
fn concurrent_binance_sessions_sync_their_own_rest_books_and_closes_are_answered() {
    let mut server = Server::start(&[SPOT, USDM, COINBASE, OKX], &["--speed", "50"]);
    let a = server.addr.clone();
    // spotA runs ahead; spotB starts once spotA has 200 diffs; both fetch once both buffered.
    let sessions = json!([
        binance_session("spotA", &a, false, 200, &["spotB"]),
        binance_session_after("spotB", &a, false, 30, &[], &["spotA"]),
        binance_session("usdm", &a, true, 100, &[]),
    ]);
    let r = run_client(&sessions);
    for name in ["spotA", "spotB"] {
        assert_consistent(&r[name], SPOT, 300);
    }
    assert_consistent(&r["usdm"], USDM, 300);
    for report in r.values() {
        assert_eq!(report["close_code"], 4001, "the Close is echoed: {report}");
    }
    // spotA was ahead when it fetched: it got the book at spotB's position, older than its
    // own, and still synced from its buffer.
    let spot_a = &r["spotA"];
    assert!(
        spot_a["snapshot_id"].as_u64() < spot_a["position_at_fetch_u"].as_u64(),
        "{spot_a}"
    );
    // Close latency, measured by clients that have nothing else to do.
    let depth = |s: &str| json!({"method": "SUBSCRIBE", "id": 1, "params": [s]});
    let sessions = json!([
        close_session(
            "binance",
            format!("ws://{a}/binance/stream"),
            depth("ethusdt@depth@100ms"),
            4001
        ),
        close_session(
            "binance_usdm",
            format!("ws://{a}/binance_usdm/stream"),
            depth("ethusdt@depth@0ms"),
            4002
        ),
        close_session(
            "coinbase",
            format!("ws://{a}/coinbase"),
            json!({"type": "subscribe", "product_ids": ["SKL-USD"],
                             "channels": ["level2", "matches"]}),
            4003
        ),
        close_session(
            "okx",
            format!("ws://{a}/okx"),
            json!({"op": "subscribe",
                             "args": [{"channel": "books", "instId": "BTC-USD-220527"}]}),
            4004
        ),
    ]);
    let r = run_client(&sessions);
    for (code, venue) in [
        (4001, "binance"),
        (4002, "binance_usdm"),
        (4003, "coinbase"),
        (4004, "okx"),
    ] {
        assert_close_answered(&r[venue], code);
    }
    assert!(server.interrupt().success(), "exit 0 on SIGINT");
}

#[test]
fn from_to_window_is_replayed_and_rest_books_include_diffs_before_it() {
    let recs = mdrelay::persist::recording::read_all(&util::repo(SPOT)).unwrap();
    let t0 = recs[0].recv_ns.unwrap();
    let (from, to) = (t0 + 60_000_000_000, t0 + 120_000_000_000);
    let window: Vec<&str> = recs
        .iter()
        .filter(|r| (from..to).contains(&r.recv_ns.unwrap()) && r.raw.starts_with("{\"stream\""))
        .map(|r| r.raw.as_str())
        .collect();
    assert!(window.len() > 1000);
    let from_rfc3339 = mdrelay::base::timefmt::format_rfc3339_ns(from);
    let to_ns = to.to_string();
    let bounds = ["--loop", "--from", &from_rfc3339, "--to", &to_ns];
    // Everything in the window, as fast as the client reads.
    let mut server = Server::start(&[SPOT], &[&["--speed", "0"][..], &bounds].concat());
    let a = &server.addr;
    let r = run_client(&json!([
        {"kind": "collect", "name": "all", "url": format!("ws://{a}/binance/stream"),
         "subscribe": {"method": "SUBSCRIBE", "id": 1, "params":
             ["ethusdt@trade", "ethusdt@bookTicker", "ethusdt@depth@100ms"]},
         "skip_prefix": "{\"id\"", "timeout_s": 60},
    ]));
    let all = &r["all"];
    assert_eq!(all["count"], window.len() as u64);
    assert_eq!(all["first"], window[0]);
    assert_eq!(all["last"], window[window.len() - 1]);
    assert_eq!(all["close_code"], 1012, "end of the window with --loop");
    assert!(server.signal(Signal::TERM).success(), "exit 0 on SIGTERM");
    // Paced (the window's ~600 diffs in 3 s): the depth stream starts mid-recording and the
    // REST book holds everything before it.
    let server = Server::start(&[SPOT], &[&["--speed", "20"][..], &bounds].concat());
    let r = run_client(&json!([binance_session(
        "spot",
        &server.addr,
        false,
        50,
        &[]
    )]));
    let spot = &r["spot"];
    assert!(
        spot["first_buffered_U"].as_u64() > Some(35_346_513_513),
        "{spot}"
    );
    assert_consistent(spot, SPOT, 300);
}

#[test]
fn bad_flags_exit_2_and_a_bad_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        &["--speed", "NaN"][..],
        &["--speed", "-1"],
        &["--speed", "1e-9"],
        &["--speed", "inf"],
        &["--from", "yesterday"],
        &["--from", "200", "--to", "100"],
    ] {
        let out = util::mdrelay_in(dir.path())
            .arg("replay-exchange")
            .arg(SPOT)
            .args(bad)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--speed") || err.contains("--from") || err.contains("--to"),
            "{err}"
        );
    }
    let missing = dir.path().join("binance/nope.txt.gz");
    let out = util::mdrelay_in(dir.path())
        .arg("replay-exchange")
        .arg(&missing)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&*missing.to_string_lossy()),
        "{out:?}"
    );
}

/// A client that stopped reading (the socket buffers full, the server stuck writing) and then
/// sends a Close, still not reading: the server hears it between write slices and ends the
/// session at once (before, only when its 5 s write timeout expired). Seen from outside through
/// REST: while the session lives the snapshot is at its position; once it has ended, at the
/// start.
#[test]
fn a_client_that_stopped_reading_is_disconnected_promptly_after_its_close() {
    use mdrelay::market::instrument::Venue;
    use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    use tungstenite::Message;

    let ex = util::replay_exchange(
        &[(Venue::Binance, vec![util::repo(SPOT)])],
        0.0,
        false,
        false,
    );
    let addr = ex.local_addr();
    let snapshot_id = || {
        let (status, body) = util::http_get(addr, "/binance/api/v3/depth?symbol=ETHUSDT&limit=5");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["lastUpdateId"]
            .as_u64()
            .unwrap()
    };
    let at_start = snapshot_id();
    let (mut ws, _) = tungstenite::connect(format!("ws://{addr}/binance/stream")).unwrap();
    ws.send(Message::text(
        r#"{"method":"SUBSCRIBE","params":["ethusdt@trade","ethusdt@bookTicker","ethusdt@depth@100ms"],"id":1}"#,
    ))
    .unwrap();
    ws.read().unwrap();
    // Not reading: the server fills the socket buffers and stalls.
    let mut sent = ex.messages_sent();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = ex.messages_sent();
        if now == sent {
            break;
        }
        sent = now;
    }
    assert!(
        sent < 30_000,
        "the server is stalled mid-recording ({sent} sent)"
    );
    let stalled_at = snapshot_id();
    assert!(stalled_at > at_start, "the snapshot follows the session");
    ws.close(Some(CloseFrame {
        code: CloseCode::Library(4006),
        reason: "bye".into(),
    }))
    .unwrap();
    let t = Instant::now();
    while snapshot_id() != at_start {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "the session still lives {:?} after the Close",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = t.elapsed();
    assert!(took < Duration::from_millis(200), "ended after {took:?}");
}
