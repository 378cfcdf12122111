//! The Python client, `clients/python` (package `mdrelay-client`, module `mdrelay_client`),
//! written from docs/PROTOCOL.md alone: the documented golden vectors, a live relay's stream,
//! `to_pandas()`, and an install into a fresh virtual environment.
//!
//! The tests run the INSTALLED package, from the virtual environment `make pyenv` builds
//! (`target/pyenv`, with pandas); `MDRELAY_TEST_PYTHON` names another interpreter that has
//! `mdrelay-client[pandas]` installed. A missing environment, or one whose installed copy differs
//! from `clients/python/src`, fails with the command that fixes it: it is part of `make test`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mdrelay::{market::instrument, run};
use serde_json::Value;

use crate::util;

/// Trades and bookTickers in the bundled Binance capture.
const TRADES: u64 = 6106;
const QUOTES: u64 = 24077;

/// The interpreter that has the package installed: `$MDRELAY_TEST_PYTHON`, else
/// `target/pyenv/bin/python`. Checks that it runs (3.10 or later), that it imports the
/// package from an installation (not from the source tree), and that the installed files are the
/// sources of `clients/python/src`; panics naming the fix otherwise.
fn python() -> PathBuf {
    let (python, fix) = match std::env::var_os("MDRELAY_TEST_PYTHON") {
        Some(p) => (
            PathBuf::from(p),
            "MDRELAY_TEST_PYTHON must name a Python with './clients/python[pandas]' installed",
        ),
        None => (
            util::repo("target/pyenv/bin/python"),
            "run `make pyenv` (python3 -m venv target/pyenv, then pip install \
             './clients/python[pandas]')",
        ),
    };
    assert!(
        python.exists(),
        "the Python-client tests run the installed package, but {} is missing: {fix}",
        python.display()
    );
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, sys\nprint('%d.%d' % sys.version_info[:2])\nimport mdrelay_client\n\
             print(os.path.dirname(os.path.abspath(mdrelay_client.__file__)))",
        ])
        .current_dir(std::env::temp_dir())
        .env_remove("PYTHONPATH")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {fix}", python.display()));
    assert!(
        out.status.success(),
        "{} cannot import mdrelay_client ({:?}): {fix}\n{}",
        python.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let version = lines.next().unwrap_or("").trim();
    let (major, minor) = version
        .split_once('.')
        .map(|(a, b)| (a.parse::<u32>().unwrap_or(0), b.parse::<u32>().unwrap_or(0)))
        .unwrap_or((0, 0));
    assert!(
        (major, minor) >= (3, 10),
        "the Python client needs Python >= 3.10, {} is {version:?}",
        python.display()
    );
    let installed = PathBuf::from(lines.next().unwrap_or("").trim());
    let source = util::repo("clients/python/src/mdrelay_client");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&source)
        .expect("clients/python/src/mdrelay_client")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "py" || x == "typed"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the package's modules: {files:?}");
    for path in &files {
        let f = path.file_name().expect("file name").to_string_lossy();
        let want = std::fs::read(path).expect("read the package source");
        let got = std::fs::read(installed.join(&*f)).unwrap_or_default();
        assert!(
            got == want,
            "the installed mdrelay_client ({}) is not clients/python/src ({f} differs): {fix}",
            installed.display()
        );
    }
    python
}

/// `python -m mdrelay_client` of the installed package (the `mdrelay-client` command).
fn client() -> Command {
    let mut c = Command::new(python());
    c.args(["-m", "mdrelay_client"])
        .current_dir(util::repo(""))
        .env_remove("PYTHONPATH")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null());
    c
}

/// Starts the Python client on `sock` with `args`, output captured.
fn spawn_client(sock: &Path, args: &[&str]) -> Child {
    spawn(client(), sock, args)
}

/// Starts `cmd` (a client command line) on `sock` with `args`, output captured.
fn spawn(mut cmd: Command, sock: &Path, args: &[&str]) -> Child {
    cmd.arg("--socket")
        .arg(sock)
        .args(["--timeout", "60", "--summary"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the Python client")
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
    let out = client()
        .arg("--selftest")
        .output()
        .expect("run the Python client");
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
    // The test environment has pandas (`make pyenv`): the to_pandas() checks must have run.
    assert!(
        !stdout.contains("skipped"),
        "the to_pandas() checks were skipped: install './clients/python[pandas]' \
         (`make pyenv`)\n{stdout}"
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
        "import mdrelay_client as m\n",
        "for x in sys.argv[1:]:\n",
        "    d = m.FrameDecoder()\n",
        "    d.feed(bytes.fromhex(x))\n",
        "    (h, p), = d.frames()\n",
        "    d.eof()\n",
        "    msg = m.decode_message(h, p)\n",
        "    print(json.dumps({'class': type(msg).__name__, **m.to_json(msg, {})}))\n",
    );
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(&vectors)
        .env_remove("PYTHONPATH")
        .output()
        .expect("run the Python client");
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

/// Runs `cmd` to completion; panics with its output when it fails.
fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// README "Python client": `pip install ./clients/python` into a fresh virtual environment (the
/// system `python3`; pip fetches the build backend, flit_core, from PyPI) gives a working
/// `mdrelay-client` command that depends on nothing but the standard library, decodes a live
/// relay's stream, and whose `to_pandas()` says how to get pandas.
#[test]
fn python_package_installs_in_a_fresh_venv_and_decodes_a_live_stream() {
    let _wd = util::Watchdog::new("python_fresh_venv", 600);
    let dir = tempfile::Builder::new()
        .prefix("mdrelay-pyvenv-")
        .tempdir()
        .expect("temp dir");
    let venv = dir.path().join("venv");
    let started = Instant::now();
    run_ok(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .current_dir(dir.path()),
        "python3 -m venv (Debian: apt-get install python3-venv; `make pyenv` does)",
    );
    let made = started.elapsed();
    run_ok(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(util::repo("clients/python"))
            .current_dir(dir.path())
            .env_remove("PYTHONPATH"),
        "pip install ./clients/python (needs PyPI for the build backend flit_core)",
    );
    eprintln!(
        "fresh venv: created in {:.1} s, mdrelay-client installed in {:.1} s",
        made.as_secs_f64(),
        (started.elapsed() - made).as_secs_f64()
    );

    // Installed alone: no dependency came with it.
    let out = run_ok(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "list",
                "--format=json",
                "--disable-pip-version-check",
            ])
            .current_dir(dir.path()),
        "pip list",
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("pip list JSON");
    let mut names: Vec<String> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or("").to_lowercase())
        .filter(|n| n != "pip" && n != "setuptools")
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["mdrelay-client"],
        "the core is standard library only"
    );

    // The console script, run outside the repository: the self-test (pandas checks skipped).
    let script = venv.join("bin/mdrelay-client");
    let mut selftest = Command::new(&script);
    let out = run_ok(
        selftest
            .arg("--selftest")
            .current_dir(dir.path())
            .env_remove("PYTHONPATH"),
        "mdrelay-client --selftest",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(
        stdout.contains("to_pandas checks skipped: pandas is not installed"),
        "{stdout}"
    );

    // to_pandas() without pandas: an ImportError that names the fix.
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import mdrelay_client\nmdrelay_client.Messages().to_pandas()",
        ])
        .current_dir(dir.path())
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "to_pandas() without pandas must fail"
    );
    assert!(
        stderr.contains("ImportError: to_pandas() needs pandas")
            && stderr.contains("pip install 'mdrelay-client[pandas]'"),
        "{stderr}"
    );

    // A live stream: the first 500 trades and quotes of the capture, in sequence.
    let exchange = util::binance_exchange(true);
    let (_sock_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.push("relay.max_pending_bytes=268435456".into());
    let relay = run::start(util::config(&sets)).unwrap();
    let mut cmd = Command::new(&script);
    cmd.current_dir(dir.path())
        .env_remove("PYTHONPATH")
        .stdin(Stdio::null());
    let mut child = spawn(cmd, &sock, &["--json", "--count", "500"]);
    wait_admitted(&relay, &mut child, 1);
    exchange.resume();
    let (s, events) = finish(child.wait_with_output().expect("client output"));
    assert_eq!(s["end"], "count", "{s:#}");
    assert_eq!(u(&s["market_data_events"]), 500, "{s:#}");
    assert_eq!(
        u(&s["counts"]["Trade"]) + u(&s["counts"]["Quote"]),
        500,
        "{s:#}"
    );
    assert_eq!(u(&s["ids_verified"]), 1, "{s:#}");
    assert_eq!(u(&s["gap_count"]), 0, "{s:#}");
    assert_eq!(u(&s["crc_failures"]), 0, "{s:#}");
    assert_eq!(s["violations"], Value::Array(vec![]), "{s:#}");
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "trade" || e["type"] == "quote")
        .map(|e| u(&e["sequence"]))
        .collect();
    assert_eq!(seqs, (1..=500).collect::<Vec<u64>>());
    relay.shutdown();
    exchange.stop();
}

/// `collect()` then `to_pandas()` on a live stream, in the test environment (which has pandas):
/// one row per message, exact Decimal prices, nanosecond UTC times equal to the frames' own.
#[test]
fn python_client_to_pandas_on_a_live_stream() {
    let _wd = util::Watchdog::new("python_to_pandas", 300);
    const N: u64 = 3000;
    let script = r#"
import json, sys
from decimal import Decimal
import pandas as pd
from mdrelay_client import RelayClient, Trade, Quote
with RelayClient(sys.argv[1], timeout=60) as client:
    msgs = client.collect(int(sys.argv[2]), types=(Trade, Quote))
df = msgs.to_pandas()
trades = [m for m in msgs if isinstance(m, Trade)]
t = df[df["type"] == "trade"]
print(json.dumps({
    "rows": len(df),
    "dtypes": {k: str(v) for k, v in df.dtypes.items()},
    "types": sorted(set(df["type"])),
    "names": sorted({f"{v}:{s}" for v, s in zip(df["venue"], df["symbol"])}),
    "sequences": [int(x) for x in df["sequence"]],
    "recv_ts_exact": all(int(ts.value) == m.header.recv_ts_ns
                         for ts, m in zip(df["recv_ts"], msgs)),
    "exchange_ts_exact": all((None if ts is pd.NaT else int(ts.value)) == m.header.exchange_ts
                             for ts, m in zip(df["exchange_ts"], msgs)),
    "trades": len(t),
    "prices_exact": all(type(p) is Decimal and p == m.price for p, m in zip(t["price"], trades)),
    "first_trade": {"price": str(t["price"].iloc[0]), "size": str(t["size"].iloc[0]),
                    "side": t["side"].iloc[0], "recv_ts": str(t["recv_ts"].iloc[0])},
}))
"#;
    let exchange = util::binance_exchange(true);
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.push("relay.max_pending_bytes=268435456".into());
    let relay = run::start(util::config(&sets)).unwrap();
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&sock)
        .arg(N.to_string())
        .env_remove("PYTHONPATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    wait_admitted(&relay, &mut child, 1);
    exchange.resume();
    let out = child.wait_with_output().expect("python output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    eprintln!(
        "to_pandas: {} rows, first trade {}",
        r["rows"], r["first_trade"]
    );
    assert_eq!(u(&r["rows"]), N);
    assert_eq!(r["types"], serde_json::json!(["quote", "trade"]));
    assert_eq!(r["names"], serde_json::json!(["binance:ETHUSDT"]));
    let seqs: Vec<u64> = r["sequences"].as_array().unwrap().iter().map(u).collect();
    assert_eq!(seqs, (1..=N).collect::<Vec<u64>>(), "every event, in order");
    let dtypes = &r["dtypes"];
    for (col, dtype) in [
        ("recv_ts", "datetime64[ns, UTC]"),
        ("exchange_ts", "datetime64[ns, UTC]"),
        ("instrument_id", "uint64"),
        ("sequence", "uint64"),
        ("price", "object"),
        ("bid_price", "object"),
        ("trade_id", "UInt64"),
    ] {
        assert_eq!(dtypes[col], dtype, "{col}: {dtypes:#}");
    }
    assert_eq!(r["recv_ts_exact"], true);
    assert_eq!(r["exchange_ts_exact"], true);
    assert_eq!(r["prices_exact"], true);
    assert!(u(&r["trades"]) > 0);
    let price = r["first_trade"]["price"].as_str().unwrap();
    assert!(
        price.parse::<f64>().is_ok_and(|p| p > 0.0) && !price.contains(['e', 'E']),
        "{r}"
    );
    assert!(
        r["first_trade"]["recv_ts"]
            .as_str()
            .unwrap()
            .ends_with("+00:00"),
        "{r}"
    );
    relay.shutdown();
    exchange.stop();
}
