//! Subscriptions (docs/PROTOCOL.md §6.5) through the real relay: filter semantics against an
//! unfiltered subscriber, a late filtered joiner's snapshot then live frames with no gap and no
//! duplicate, bad requests, peer-uid refusal, and connection cycles that leak no descriptor.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use mdrelay::market::event::StatusCode;
use mdrelay::market::instrument::Venue;
use mdrelay::relay::client::RelayClient;
use mdrelay::run;
use mdrelay::wire::protocol::{self, flags, Message, MsgType};
use mdrelay::wire::subscription::{kinds, Filter};

use crate::util;

/// A relay with only the Coinbase feed (five products), reading a paused replay exchange at
/// `speed` × recorded pace (0: as fast as possible; the capture spans 31 s).
fn coinbase_relay(
    sock: &Path,
    extra: &[&str],
    speed: f64,
) -> (run::Running, mdrelay::sim::ReplayExchange) {
    let exchange = util::replay_exchange(
        &[(
            Venue::Coinbase,
            vec![util::fixture(
                "coinbase/level2_ticker_matches_20210417.txt.gz",
            )],
        )],
        speed,
        false,
        true,
    );
    let mut sets = vec![
        "replay.enabled=false".to_owned(),
        "http.listen=\"127.0.0.1:0\"".into(),
        "consumer.idle=\"park\"".into(),
        format!("relay.socket_path={:?}", sock.display().to_string()),
        "relay.max_pending_bytes=268435456".into(),
        "relay.hello_timeout_ms=200".into(),
        "feeds.binance.enabled=false".into(),
        "feeds.kraken_v1.enabled=false".into(),
        "feeds.binance_usdm.enabled=false".into(),
        format!(
            "feeds.coinbase.url=\"ws://{}/coinbase\"",
            exchange.local_addr()
        ),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    (run::start(util::config(&sets)).unwrap(), exchange)
}

/// One received frame, reduced to what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    msg_type: u8,
    symbol: Option<String>,
    sequence: u64,
    cached: bool,
    status: Option<(StatusCode, u64)>,
    raw: Vec<u8>,
}

/// Reads until the relay closes the connection.
fn read_all(mut c: RelayClient) -> Vec<Got> {
    let mut out = Vec::new();
    while let Some(rx) = c.next_frame().expect("clean stream") {
        let h = rx.frame.header;
        let status = match rx.frame.message() {
            Ok(Message::Status { status, .. }) => Some((status.code, status.count)),
            _ => None,
        };
        out.push(Got {
            msg_type: h.msg_type,
            symbol: rx.instrument.map(|n| n.symbol.clone()),
            sequence: h.sequence,
            cached: h.flags & flags::CACHED != 0,
            status,
            raw: rx.raw.to_vec(),
        });
    }
    out
}

fn is_event(g: &Got) -> bool {
    matches!(
        MsgType::from_code(g.msg_type),
        Some(MsgType::Trade | MsgType::Quote | MsgType::BookSnapshot | MsgType::BookDelta)
    )
}

/// Waits until the feed has relayed every event it will (the capture is over).
fn wait_done(relay: &run::Running) {
    let mut last = (0, std::time::Instant::now());
    assert!(util::wait_until(Duration::from_secs(90), || {
        let n = relay.feed_stats(0).unwrap().consumer.relayed_events.get();
        if n != last.0 {
            last = (n, std::time::Instant::now());
        }
        n > 0 && last.1.elapsed() > Duration::from_secs(1)
    }));
}

#[test]
fn filters_select_exactly_the_matching_frames() {
    let _wd = util::Watchdog::new("filters", 180);
    let (_dir, sock) = util::temp_socket();
    let (relay, exchange) = coinbase_relay(&sock, &[], 0.0);
    let timeout = Some(Duration::from_secs(60));
    let all = RelayClient::connect(&sock).unwrap();
    let skl_trades = RelayClient::connect_filtered(
        &sock,
        &[Filter {
            venue: "coinbase".into(),
            symbol: "SKL-*".into(),
            kinds: kinds::TRADE,
            lossy: false,
        }],
    )
    .unwrap();
    let band_books = RelayClient::connect_filtered(
        &sock,
        &[Filter {
            venue: String::new(),
            symbol: "BAND-???".into(),
            kinds: kinds::QUOTE | kinds::BOOK,
            lossy: false,
        }],
    )
    .unwrap();
    let other_venue = RelayClient::connect_filtered(
        &sock,
        &[Filter {
            venue: "binance".into(),
            ..Filter::all()
        }],
    )
    .unwrap();
    for c in [&all, &skl_trades, &band_books, &other_venue] {
        c.set_read_timeout(timeout).unwrap();
    }
    assert!(util::wait_until(Duration::from_secs(30), || relay
        .relay_counters()
        .subscribers
        .get()
        == 4));
    exchange.resume();
    wait_done(&relay);
    let readers: Vec<_> = [all, skl_trades, band_books, other_venue]
        .into_iter()
        .map(|c| std::thread::spawn(move || read_all(c)))
        .collect();
    let summary = relay.shutdown();
    assert!(summary.balanced(), "{summary}");
    let mut got: Vec<Vec<Got>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let other_venue = got.pop().unwrap();
    let band_books = got.pop().unwrap();
    let skl_trades = got.pop().unwrap();
    let all = got.pop().unwrap();

    let expect = |pred: &dyn Fn(&Got) -> bool| -> Vec<Vec<u8>> {
        all.iter()
            .filter(|g| is_event(g) && pred(g))
            .map(|g| g.raw.clone())
            .collect()
    };
    let events = |v: &[Got]| -> Vec<Vec<u8>> {
        v.iter()
            .filter(|g| is_event(g))
            .map(|g| g.raw.clone())
            .collect()
    };
    let sym = |g: &Got, p: &str| g.symbol.as_deref().is_some_and(|s| s.starts_with(p));

    let want = expect(&|g| g.msg_type == MsgType::Trade as u8 && sym(g, "SKL-"));
    assert!(!want.is_empty());
    assert_eq!(
        events(&skl_trades),
        want,
        "SKL-* trades, same bytes, same order"
    );
    let want = expect(&|g| {
        sym(g, "BAND-")
            && matches!(
                MsgType::from_code(g.msg_type),
                Some(MsgType::Quote | MsgType::BookSnapshot | MsgType::BookDelta)
            )
    });
    assert!(!want.is_empty());
    assert_eq!(events(&band_books), want, "BAND-??? quotes and books");
    assert!(events(&other_venue).is_empty(), "nothing of another venue");

    // Definitions: exactly the selected instruments, once each, before their first frame.
    for (v, prefix) in [(&skl_trades, "SKL-"), (&band_books, "BAND-")] {
        let defs: Vec<&str> = v
            .iter()
            .filter(|g| g.msg_type == MsgType::InstrumentDef as u8)
            .map(|g| g.symbol.as_deref().unwrap())
            .collect();
        let unique: BTreeSet<&str> = defs.iter().copied().collect();
        assert_eq!(defs.len(), unique.len(), "each definition once: {defs:?}");
        assert_eq!(unique.len(), 2, "{defs:?}");
        assert!(defs.iter().all(|s| s.starts_with(prefix)), "{defs:?}");
        // Acknowledged first, with the number of subscriptions.
        assert_eq!(v[0].status, Some((StatusCode::RequestOk, 1)), "{:?}", v[0]);
    }
    // Status frames only where selected: the filtered ones asked for none, so they get only
    // the relay's answers to their own requests.
    for v in [&skl_trades, &band_books, &other_venue] {
        assert!(v
            .iter()
            .filter_map(|g| g.status)
            .all(|(c, _)| c == StatusCode::RequestOk));
    }
}

#[test]
fn late_filtered_joiner_gets_snapshot_then_live_without_gap_or_duplicate() {
    let _wd = util::Watchdog::new("late_filtered", 180);
    let (_dir, sock) = util::temp_socket();
    // Paced replay (about 6 s): the late joiner arrives while data is still flowing.
    let (relay, exchange) = coinbase_relay(&sock, &[], 5.0);
    exchange.resume();
    assert!(util::wait_until(Duration::from_secs(60), || relay
        .feed_stats(0)
        .unwrap()
        .consumer
        .relayed_events
        .get()
        > 200));
    let late = RelayClient::connect_filtered(
        &sock,
        &[Filter {
            venue: "coinbase".into(),
            symbol: "SKL-USD".into(),
            kinds: kinds::ALL,
            lossy: false,
        }],
    )
    .unwrap();
    late.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let reader = std::thread::spawn(move || read_all(late));
    wait_done(&relay);
    relay.shutdown();
    let got = reader.join().unwrap();

    assert_eq!(got[0].status, Some((StatusCode::RequestOk, 1)));
    assert_eq!(got[1].msg_type, MsgType::InstrumentDef as u8);
    assert_eq!(got[1].symbol.as_deref(), Some("SKL-USD"));
    let evs: Vec<&Got> = got.iter().filter(|g| is_event(g)).collect();
    assert!(evs.iter().all(|g| g.symbol.as_deref() == Some("SKL-USD")));
    let cached: Vec<&&Got> = evs.iter().take_while(|g| g.cached).collect();
    assert!(!cached.is_empty(), "a snapshot from the cache first");
    let live: Vec<&&Got> = evs.iter().skip(cached.len()).collect();
    assert!(!live.is_empty(), "then live frames");
    assert!(live.iter().all(|g| !g.cached));
    // The snapshot is the instrument's state as of its last event before the join: the next
    // live event continues the sequence; after it, every number exactly once.
    let last_cached = cached.iter().map(|g| g.sequence).max().unwrap();
    let seqs: Vec<u64> = live.iter().map(|g| g.sequence).collect();
    let want: Vec<u64> = (last_cached + 1..last_cached + 1 + seqs.len() as u64).collect();
    assert_eq!(seqs, want, "no gap, no duplicate");
}

#[test]
fn requests_later_change_the_stream_and_bad_ones_close_only_that_connection() {
    let _wd = util::Watchdog::new("requests", 180);
    let (_dir, sock) = util::temp_socket();
    let (relay, exchange) = coinbase_relay(&sock, &["relay.hello_timeout_ms=0"], 0.0);
    let mut c = RelayClient::connect(&sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut bystander = RelayClient::connect(&sock).unwrap();
    bystander
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert!(util::wait_until(Duration::from_secs(30), || relay
        .relay_counters()
        .subscribers
        .get()
        == 2));
    // Unfiltered → only NMR-EUR trades; unsubscribing what is not there is refused, not fatal.
    let nmr = Filter {
        venue: "coinbase".into(),
        symbol: "NMR-EUR".into(),
        kinds: kinds::TRADE,
        lossy: false,
    };
    c.subscribe(&nmr).unwrap();
    c.unsubscribe(&Filter::all()).unwrap();
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let rx = c.next_frame().unwrap().unwrap();
        if let Ok(Message::Status { status, .. }) = rx.frame.message() {
            if matches!(
                status.code,
                StatusCode::RequestOk | StatusCode::RequestError
            ) {
                replies.push((status.code, status.count));
            }
        }
    }
    assert_eq!(
        replies,
        [(StatusCode::RequestOk, 1), (StatusCode::RequestError, 0)]
    );
    exchange.resume();
    let mut trades = 0;
    while trades < 3 {
        let rx = c.next_frame().unwrap().unwrap();
        let h = rx.frame.header;
        if h.instrument_id != 0 && h.msg_type != MsgType::InstrumentDef as u8 {
            assert_eq!(h.msg_type, MsgType::Trade as u8);
            assert_eq!(rx.instrument.unwrap().symbol, "NMR-EUR");
            trades += 1;
        }
    }
    // A malformed request (bad CRC): request_error, then the relay closes this connection.
    let mut buf = protocol::FrameBuf::new();
    mdrelay::wire::subscription::encode_request(&mut buf, true, &nmr);
    let n = buf.len();
    buf[n - 1] ^= 0xff;
    c.stream().write_all(&buf).unwrap();
    let mut saw_error = false;
    loop {
        match c.next_frame() {
            Ok(Some(rx)) => {
                if let Ok(Message::Status { status, .. }) = rx.frame.message() {
                    saw_error |= status.code == StatusCode::RequestError;
                }
            }
            Ok(None) => break,
            Err(e) => panic!("stream ends cleanly: {e}"),
        }
    }
    assert!(saw_error);
    // An oversized request on a fresh connection. With `hello_timeout_ms=0` the acceptor may hand
    // the connection over before the request's bytes arrive: then it is admitted and its join
    // snapshot comes first. Either way the answer is request_error, then the close.
    let mut raw = UnixStream::connect(&sock).unwrap();
    protocol::encode_raw(&mut buf, 64, &protocol::Meta::default(), &[0u8; 4096]);
    raw.write_all(&buf).unwrap();
    let mut refused = RelayClient::from_stream(raw);
    refused
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (code, detail) = loop {
        let rx = refused
            .next_frame()
            .unwrap()
            .expect("a request_error before the close");
        if let Ok(Message::Status { status, .. }) = rx.frame.message() {
            break (status.code, status.detail.to_owned());
        }
    };
    assert_eq!(code, StatusCode::RequestError);
    assert!(detail.contains("over the limit"), "{detail}");
    assert!(refused.next_frame().unwrap().is_none(), "then closed");
    // The relay and the other subscriber carry on.
    let mut n = 0;
    while n < 10 {
        if bystander.next_frame().unwrap().is_some() {
            n += 1;
        }
    }
    let s = relay.shutdown();
    assert!(
        matches!(s.subscribers_accepted, 2 | 3),
        "the two subscribers, and the refused one only if it was handed over before its request: {}",
        s.subscribers_accepted
    );
}

#[test]
fn peer_uid_not_allowed_is_refused() {
    let _wd = util::Watchdog::new("peer_uid", 60);
    let (_dir, sock) = util::temp_socket();
    let me = rustix::process::getuid().as_raw();
    let other = me.wrapping_add(1);
    let (relay, _exchange) =
        coinbase_relay(&sock, &[&format!("relay.allowed_uids=[{other}]")], 0.0);
    let mut c = RelayClient::connect(&sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let rx = c.next_frame().unwrap().expect("a refusal");
    let Ok(Message::Status { status, .. }) = rx.frame.message() else {
        panic!("a status")
    };
    assert_eq!(status.code, StatusCode::RequestError);
    assert!(status.detail.contains("uid"), "{}", status.detail);
    assert!(c.next_frame().unwrap().is_none());
    assert_eq!(relay.relay_counters().accepted.get(), 0);
    drop(relay);

    // Its own uid allowed: admitted.
    let (_dir2, sock2) = util::temp_socket();
    let (relay, _exchange) = coinbase_relay(&sock2, &[&format!("relay.allowed_uids=[{me}]")], 0.0);
    let _c = RelayClient::connect(&sock2).unwrap();
    assert!(util::wait_until(Duration::from_secs(30), || relay
        .relay_counters()
        .accepted
        .get()
        == 1));
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn connection_cycles_leak_no_descriptors() {
    let _wd = util::Watchdog::new("fd_cycles", 180);
    let (_dir, sock) = util::temp_socket();
    let (relay, exchange) = coinbase_relay(&sock, &["relay.hello_timeout_ms=0"], 1.0);
    exchange.resume();
    // Warm up (threads, sockets of the feed) before counting.
    let c = RelayClient::connect(&sock).unwrap();
    drop(c);
    assert!(util::wait_until(Duration::from_secs(30), || relay
        .relay_counters()
        .subscribers
        .get()
        == 0));
    std::thread::sleep(Duration::from_millis(300));
    let before = open_fds();
    let mut per_kind: BTreeMap<&str, u32> = BTreeMap::new();
    for i in 0..200 {
        let mut c = RelayClient::connect(&sock).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        match i % 3 {
            // Reads a frame, then hangs up.
            0 => {
                let _ = c.next_frame().unwrap();
                *per_kind.entry("read").or_default() += 1;
            }
            // Subscribes, then hangs up.
            1 => {
                c.subscribe(&Filter::all()).unwrap();
                *per_kind.entry("subscribe").or_default() += 1;
            }
            // Hangs up at once.
            _ => *per_kind.entry("hang up").or_default() += 1,
        }
    }
    assert!(
        util::wait_until(Duration::from_secs(60), || {
            relay.relay_counters().subscribers.get() == 0 && open_fds() <= before
        }),
        "descriptors back to {before} (now {}), subscribers {}: {per_kind:?}",
        open_fds(),
        relay.relay_counters().subscribers.get()
    );
    relay.shutdown();
}

#[test]
fn tail_filters_by_venue_symbol_and_kind() {
    let _wd = util::Watchdog::new("tail_filters", 120);
    let (_dir, sock) = util::temp_socket();
    let (relay, exchange) = coinbase_relay(&sock, &[], 1.0);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mdrelay"))
        .args(["tail", "--json", "--count", "5", "--venue", "coinbase"])
        .args(["--symbol", "SKL-*", "--kind", "trade", "--socket"])
        .arg(&sock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(util::wait_until(Duration::from_secs(30), || relay
        .relay_counters()
        .subscribers
        .get()
        == 1));
    exchange.resume();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    for l in &lines {
        assert_eq!(l["type"], "trade", "{l}");
        assert_eq!(l["venue"], "coinbase");
        assert!(l["symbol"].as_str().unwrap().starts_with("SKL-"), "{l}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_mdrelay"))
        .args(["tail", "--kind", "candles", "--socket"])
        .arg(&sock)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--kind candles"));
    relay.shutdown();
}

/// Reads until EOF and checks every heartbeat: frames read before it, plus the frames the relay
/// reported skipped (lossy `dropped` of the relay), equal its sequence. Returns (frames read,
/// frames skipped, heartbeats checked).
fn read_checking_heartbeats(mut c: RelayClient) -> (u64, u64, u64) {
    let (mut read, mut skipped, mut beats) = (0u64, 0u64, 0u64);
    while let Some(rx) = c.next_frame().expect("clean stream") {
        let h = rx.frame.header;
        match rx.frame.message().unwrap() {
            Message::Heartbeat => {
                assert_eq!(read + skipped, h.sequence, "heartbeat {beats}");
                beats += 1;
            }
            Message::Status { venue, status }
                if venue == "mdrelay" && status.code == StatusCode::Dropped =>
            {
                skipped += status.count;
            }
            _ => {}
        }
        read += 1;
    }
    (read, skipped, beats)
}

#[test]
fn lossy_subscriber_is_skipped_forward_while_a_fast_one_gets_everything() {
    let _wd = util::Watchdog::new("lossy", 180);
    let (_dir, sock) = util::temp_socket();
    let (relay, exchange) = coinbase_relay(
        &sock,
        &[
            "relay.max_pending_bytes=65536",
            "relay.heartbeat_interval_ms=20",
        ],
        0.0,
    );
    let fast = RelayClient::connect(&sock).unwrap();
    fast.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let lossy = RelayClient::connect_filtered(
        &sock,
        &[Filter {
            lossy: true,
            ..Filter::all()
        }],
    )
    .unwrap();
    lossy
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert!(util::wait_until(Duration::from_secs(30), || relay
        .relay_counters()
        .subscribers
        .get()
        == 2));
    let fast_reader = std::thread::spawn(move || read_checking_heartbeats(fast));
    exchange.resume();
    // The lossy one does not read while the whole capture goes by.
    wait_done(&relay);
    assert!(
        relay.relay_counters().lossy_skips.get() > 0,
        "it fell behind"
    );
    let lossy_reader = std::thread::spawn(move || read_checking_heartbeats(lossy));
    std::thread::sleep(Duration::from_millis(500));
    let relayed = relay.feed_stats(0).unwrap().consumer.relayed.get();
    let summary = relay.shutdown();
    let (_, fast_skipped, fast_beats) = fast_reader.join().unwrap();
    let (_, lossy_skipped, lossy_beats) = lossy_reader.join().unwrap();
    assert_eq!(fast_skipped, 0);
    assert!(fast_beats > 0 && lossy_beats > 0);
    assert!(lossy_skipped > 0);
    assert_eq!(summary.slow_disconnects, 0, "skipped, not disconnected");
    assert!(relayed > 0);
}

#[test]
fn socket_and_directory_permissions_follow_socket_mode() {
    use std::os::unix::fs::PermissionsExt;
    let _wd = util::Watchdog::new("permissions", 60);
    for (mode, want_sock, want_dir) in [("600", 0o600, 0o700), ("660", 0o660, 0o770)] {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nested").join("relay.sock");
        let (relay, _exchange) =
            coinbase_relay(&sock, &[&format!("relay.socket_mode=\"{mode}\"")], 0.0);
        let m = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(m(&sock), want_sock, "socket mode for {mode}");
        assert_eq!(
            m(sock.parent().unwrap()),
            want_dir,
            "directory mode for {mode}"
        );
        relay.shutdown();
        assert!(!sock.exists());
    }
}

#[test]
fn a_relay_killed_with_sigkill_leaves_a_socket_the_next_start_replaces() {
    use rustix::process::{kill_process, Pid, Signal};
    let _wd = util::Watchdog::new("kill9", 180);
    let (dir, sock) = util::temp_socket();
    let csv = dir.path().join("csv");
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mdrelay"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "run",
                "--set",
                "http.enabled=false",
                "--set",
                "replay.speed=20",
            ])
            .args(["--set", "writer.flush_interval_ms=10", "--set"])
            .arg(format!("writer.data_dir={:?}", csv.display().to_string()))
            .arg("--set")
            .arg(format!(
                "relay.socket_path={:?}",
                sock.display().to_string()
            ))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    for round in 0..3u32 {
        let mut child = start();
        assert!(
            util::wait_until(Duration::from_secs(60), || RelayClient::connect(&sock)
                .is_ok()),
            "round {round}: relay serves"
        );
        // A second relay on the same path is refused while this one lives.
        let second = start().wait_with_output().unwrap();
        assert!(!second.status.success());
        assert!(String::from_utf8_lossy(&second.stderr).contains("another relay is live"));
        // Let rows reach the files, then kill it in the middle of whatever it is doing.
        std::thread::sleep(Duration::from_millis(300 + 200 * u64::from(round)));
        kill_process(Pid::from_child(&child), Signal::KILL).unwrap();
        child.wait().unwrap();
        assert!(
            sock.exists(),
            "round {round}: SIGKILL leaves the socket file behind"
        );
    }
    // A crash in the middle of a write leaves at most a torn last line: make one (in the
    // busiest file, which the next run appends to within moments).
    let torn: Vec<_> = util::files_named(&csv, "trades.csv")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/binance/ETHUSDT/"))
        .collect();
    assert!(!torn.is_empty(), "trades were written before the kills");
    for p in &torn {
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(b"1795366584784755380,2026-11-22T17:").unwrap();
    }
    // The next start removes the stale socket and serves; the writer repairs each torn file
    // when it appends to it again; SIGINT then ends it cleanly.
    let mut child = start();
    assert!(util::wait_until(Duration::from_secs(60), || {
        RelayClient::connect(&sock).is_ok()
    }));
    assert!(
        util::wait_until(Duration::from_secs(60), || torn
            .iter()
            .all(|p| std::fs::read(p).is_ok_and(|b| b.ends_with(b"\n")))),
        "torn lines repaired"
    );
    kill_process(Pid::from_child(&child), Signal::INT).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!sock.exists());
    // Every row of every file parses and is complete: the torn lines are gone, nothing else.
    let rows = util::read_csv_rows(&csv, "trades.csv");
    assert!(rows.iter().all(|r| r.len() == 10), "complete rows only");
}

#[test]
fn a_subscriber_that_never_reads_is_closed_while_a_fast_one_gets_everything() {
    let _wd = util::Watchdog::new("slow_closed", 180);
    let (_dir, sock) = util::temp_socket();
    let (relay, exchange) = coinbase_relay(
        &sock,
        &[
            "relay.max_pending_bytes=65536",
            "relay.heartbeat_interval_ms=20",
        ],
        0.0,
    );
    let fast = RelayClient::connect(&sock).unwrap();
    fast.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let slow = RelayClient::connect(&sock).unwrap();
    assert!(util::wait_until(Duration::from_secs(30), || relay
        .relay_counters()
        .subscribers
        .get()
        == 2));
    let fast_reader = std::thread::spawn(move || read_checking_heartbeats(fast));
    exchange.resume();
    assert!(
        util::wait_until(Duration::from_secs(60), || relay
            .relay_counters()
            .slow_disconnects
            .get()
            == 1),
        "the one that never reads is closed"
    );
    wait_done(&relay);
    let summary = relay.shutdown();
    let (read, skipped, beats) = fast_reader.join().unwrap();
    assert_eq!(skipped, 0);
    assert!(
        beats > 0 && read > 1000,
        "{read} frames, {beats} heartbeats checked"
    );
    assert!(summary.balanced(), "{summary}");
    assert_eq!(summary.slow_disconnects, 1);
    drop(slow);
}

#[test]
fn a_second_signal_ends_a_draining_relay_at_once() {
    use rustix::process::{kill_process, Pid, Signal};
    let _wd = util::Watchdog::new("second_signal", 120);
    let (_dir, sock) = util::temp_socket();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mdrelay"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "--set",
            "http.enabled=false",
            "--set",
            "writer.enabled=false",
        ])
        .args([
            "--set",
            "replay.speed=0",
            "--set",
            "relay.drain_timeout_ms=600000",
        ])
        .args(["--set", "relay.max_pending_bytes=1073741824", "--set"])
        .arg(format!(
            "relay.socket_path={:?}",
            sock.display().to_string()
        ))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(util::wait_until(Duration::from_secs(60), || sock.exists()));
    // A subscriber that never reads: the drain after the first signal waits for it (10 min).
    let _stuck = RelayClient::connect(&sock).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    kill_process(Pid::from_child(&child), Signal::INT).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "still draining");
    let t = std::time::Instant::now();
    kill_process(Pid::from_child(&child), Signal::INT).unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "exits at once");
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("second signal: exited after {:?}", t.elapsed());
    assert_eq!(status.code(), Some(130));
}
