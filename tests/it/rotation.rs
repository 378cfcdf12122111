//! Make-before-break connection rotation (issue 17, item 6): against the replay exchange in
//! `live` mode (a new connection joins the stream where it is, like a real venue), a Binance feed
//! with a short `rotate_after_ms` rotates several times mid-stream; a subscriber sees every trade
//! of the capture exactly once and in order, no gap, resync or reconnect, and a book equal to an
//! independent rebuild. A replacement that never delivers is counted and the old stream goes on.

use std::path::Path;
use std::time::Duration;

use mdrelay::market::book::L2Book;
use mdrelay::market::event::StatusCode;
use mdrelay::market::instrument::Venue;
use mdrelay::persist::recording;
use mdrelay::run;
use mdrelay::sim::{ReplayExchange, ReplayOptions};
use mdrelay::wire::protocol::{flags, Message, MsgType};
use serde_json::Value;

use crate::util;

/// The capture's trade ids, bookTicker count, and its final book by Binance's documented spot
/// procedure from the recorded snapshot, read with serde_json only.
fn reference() -> (Vec<u64>, usize, util::Side8, util::Side8) {
    let lines: Vec<String> = recording::read_all(&util::binance_capture())
        .unwrap()
        .into_iter()
        .map(|r| r.raw)
        .collect();
    let (mut last, mut book) = util::recorded_snapshot(&lines);
    let (mut trades, mut tickers) = (Vec::new(), 0);
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        let d = &v["data"];
        match v["stream"].as_str() {
            Some("ethusdt@trade") => trades.push(d["t"].as_u64().unwrap()),
            Some("ethusdt@bookTicker") => tickers += 1,
            Some("ethusdt@depth@100ms") => {
                let (first, u) = (d["U"].as_u64().unwrap(), d["u"].as_u64().unwrap());
                if u <= last {
                    continue;
                }
                assert!(first <= last + 1, "the capture's diffs are contiguous");
                last = u;
                util::set_levels(&mut book[0], &d["b"]);
                util::set_levels(&mut book[1], &d["a"]);
            }
            _ => {}
        }
    }
    let [bids, asks] = book;
    (trades, tickers, bids, asks)
}

/// The replay exchange playing the Binance capture at `speed` in live mode.
fn live_exchange(speed: f64, paused: bool) -> ReplayExchange {
    ReplayExchange::start(
        &[(Venue::Binance, vec![util::binance_capture()])],
        ReplayOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            speed,
            loop_forever: false,
            start_paused: paused,
            live: true,
            from_ns: None,
            to_ns: None,
        },
    )
    .unwrap()
}

/// `--set`s of a relay with one Binance feed (trades, quotes, depth) rotating every
/// `rotate_ms`.
fn sets(sock: &Path, exchange: std::net::SocketAddr, rotate_ms: u64) -> Vec<String> {
    let mut sets = util::binance_only(sock, exchange);
    sets.extend([
        "feeds.binance.channels=[\"trade\", \"bookTicker\", \"depth@100ms\"]".to_owned(),
        format!("feeds.binance.rest_url=\"http://{exchange}/binance\""),
        "feeds.binance.book_depth=1000".into(),
        format!("feeds.binance.rotate_after_ms={rotate_ms}"),
        "relay.max_pending_bytes=268435456".into(),
    ]);
    sets
}

fn top(m: &util::Side8, best_first: bool, n: usize) -> Vec<(i64, i64)> {
    let it: Box<dyn Iterator<Item = (&i64, &i64)>> = if best_first {
        Box::new(m.iter().rev())
    } else {
        Box::new(m.iter())
    };
    it.take(n).map(|(p, q)| (*p, *q)).collect()
}

/// 345 s of capture at 6x: ~58 s, a rotation every 2 s.
#[test]
fn rotations_mid_stream_lose_and_repeat_nothing() {
    let _wd = util::Watchdog::new("rotation_mid_stream", 300);
    rotate_through_the_capture(6.0, 2000);
}

/// At 30x (~12 s, a rotation every second): overlaps under a denser stream. (The replay
/// exchange's live sessions start exactly where the old one is, so the replacement rarely if ever
/// runs ahead of the old connection here: that case is covered by the unit tests of the splice.)
#[test]
fn rotations_at_a_fast_pace_lose_and_repeat_nothing() {
    let _wd = util::Watchdog::new("rotation_fast", 300);
    rotate_through_the_capture(30.0, 1000);
}

/// The capture at `speed` through a relay rotating every `rotate_ms`: see the module doc.
fn rotate_through_the_capture(speed: f64, rotate_ms: u64) {
    let (want, tickers, want_bids, want_asks) = reference();
    assert_eq!(want.len(), 6106);
    let exchange = live_exchange(speed, true);
    let (_dir, sock) = util::temp_socket();
    let relay = run::start(util::config(&sets(&sock, exchange.local_addr(), rotate_ms))).unwrap();
    let mut client = util::subscriber(&sock);
    util::play_when_subscribed(&exchange, 1);

    let mut got: Vec<u64> = Vec::new();
    let mut book = L2Book::new();
    let (mut snapshots, mut quotes, mut last_seq) = (0, 0, 0u64);
    let mut rotations_mid_stream = 0;
    // Until every trade has arrived, then until market data stops (the capture's last diffs;
    // the relay's heartbeats go on).
    let mut last_data = std::time::Instant::now();
    loop {
        if got.len() == want.len() {
            client
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            if last_data.elapsed() > Duration::from_millis(1500) {
                break;
            }
        }
        let rx = match client.next_frame() {
            Ok(Some(rx)) => rx,
            _ if got.len() == want.len() => break,
            other => panic!("stream ended early: {other:?}, {} trades", got.len()),
        };
        let h = rx.frame.header;
        let msg = rx.frame.message().unwrap();
        if matches!(
            rx.frame.msg_type(),
            Some(MsgType::Trade | MsgType::Quote | MsgType::BookSnapshot | MsgType::BookDelta)
        ) {
            assert_eq!(h.sequence, last_seq + 1, "no sequence gap: {msg:?}");
            last_seq = h.sequence;
            last_data = std::time::Instant::now();
        }
        match msg {
            Message::Trade(t) => {
                got.push(t.trade_id.unwrap());
                if got.len() == want.len() / 2 {
                    rotations_mid_stream = relay.feed_stats(0).unwrap().collector.rotations.get();
                }
            }
            Message::Quote(_) => quotes += 1,
            Message::Book(b) => {
                assert_eq!(h.flags & flags::BOOK_MAY_BE_BAD, 0);
                let (bids, asks): (Vec<_>, Vec<_>) = (b.bids().collect(), b.asks().collect());
                if h.flags & flags::SNAPSHOT != 0 {
                    snapshots += 1;
                    book.apply_snapshot(&bids, &asks);
                } else {
                    book.apply_delta(&bids, &asks);
                }
                assert!(!book.is_crossed(), "the book never crosses");
            }
            Message::Status { status, .. } => {
                let c = &relay.feed_stats(0).unwrap().collector;
                assert!(
                    !matches!(
                        status.code,
                        StatusCode::Gap
                            | StatusCode::Resync
                            | StatusCode::Dropped
                            | StatusCode::Disconnected
                            | StatusCode::Reconnecting
                            | StatusCode::Stale
                    ),
                    "{status:?} after {} trades (first difference at {:?}), rotations {}, failed {}",
                    got.len(),
                    got.iter().zip(&want).position(|(g, w)| g != w),
                    c.rotations.get(),
                    c.rotation_failures.get()
                )
            }
            _ => {}
        }
        if got.len() > want.len() {
            break;
        }
    }
    let stats = relay.feed_stats(0).unwrap();
    let c = &stats.collector;
    eprintln!(
        "rotations {} (by mid-stream {rotations_mid_stream}), failed {}, copies dropped {}, quotes {quotes}/{tickers}",
        c.rotations.get(),
        c.rotation_failures.get(),
        c.rotation_duplicates.get()
    );
    assert_eq!(got, want, "every trade exactly once, in order");
    assert!(rotations_mid_stream >= 1, "rotated before half the trades");
    assert!(c.rotation_duplicates.get() >= 1, "the overlaps had copies");
    assert_eq!(c.reconnects.get(), 0, "no break-before-make reconnect");
    assert!(exchange.subscribed_sessions() >= 2);
    assert!(
        quotes <= tickers,
        "no quote twice: {quotes} of {tickers} (a stale copy may be dropped)"
    );
    assert_eq!(snapshots, 1, "one sync; the rotations bridged the book");
    let (bids, asks): (util::Side8, util::Side8) = (
        book.bids().map(|l| (l.price, l.size)).collect(),
        book.asks().map(|l| (l.price, l.size)).collect(),
    );
    assert_eq!(top(&bids, true, 50), top(&want_bids, true, 50));
    assert_eq!(top(&asks, false, 50), top(&want_asks, false, 50));
    let summary = relay.shutdown();
    assert!(summary.balanced());
    exchange.stop();
}

#[test]
fn a_replacement_that_never_delivers_is_counted_and_the_old_stream_goes_on() {
    let _wd = util::Watchdog::new("rotation_failed", 180);
    let exchange = live_exchange(2.0, false);
    let (_dir, sock) = util::temp_socket();
    let relay = run::start(util::config(&sets(&sock, exchange.local_addr(), 1000))).unwrap();
    let stats = || relay.feed_stats(0).unwrap();
    assert!(util::wait_until(Duration::from_secs(30), || stats()
        .collector
        .trades
        .get()
        > 0));
    // New sessions now hold after their subscription: acked, never a data message.
    exchange.pause();
    assert!(
        util::wait_until(Duration::from_secs(60), || stats()
            .collector
            .rotation_failures
            .get()
            >= 2),
        "failed rotations counted"
    );
    let c = &stats().collector;
    // (A rotation may have completed before the pause.)
    let (trades, events, rotations) = (c.trades.get(), c.events.get(), c.rotations.get());
    assert!(util::wait_until(Duration::from_secs(30), || stats()
        .collector
        .events
        .get()
        > events + 50));
    assert!(util::wait_until(Duration::from_secs(60), || stats()
        .collector
        .trades
        .get()
        > trades));
    let c = &stats().collector;
    assert_eq!(c.rotations.get(), rotations, "no replacement took over");
    assert_eq!(c.reconnects.get(), 0, "the old connection never dropped");
    assert_eq!(c.connected.get(), 1);
    let summary = relay.shutdown();
    assert!(summary.balanced());
    exchange.stop();
}

/// `rotate_after_ms` is checked at start-up: the error names the key.
#[test]
fn bad_rotate_after_ms_is_refused_naming_the_key() {
    let load = |sets: &[&str]| {
        let mut all = vec!["writer.enabled=false".to_owned()];
        all.extend(sets.iter().map(|s| s.to_string()));
        mdrelay::config::load(&mdrelay::config::Sources {
            sets: all,
            ..Default::default()
        })
    };
    for (sets, why) in [
        (
            &["feeds.coinbase.rotate_after_ms=60000"][..],
            "no per-stream ids",
        ),
        (&["feeds.binance.rotate_after_ms=10"][..], "out of range"),
        (
            &[
                "feeds.binance.rotate_after_ms=90000000",
                "feeds.binance.max_connection_age_ms=80000000",
            ][..],
            "not below max_connection_age_ms",
        ),
    ] {
        let e = load(sets).expect_err("refused").to_string();
        assert!(e.contains("rotate_after_ms") && e.contains(why), "{e}");
    }
    let cfg = load(&[]).unwrap();
    let feed = |name: &str| cfg.feeds.iter().find(|f| f.name == name).unwrap();
    assert_eq!(
        feed("binance").rotate_after,
        Some(Duration::from_millis(
            mdrelay::config::BINANCE_ROTATE_AFTER_MS
        ))
    );
    assert_eq!(feed("coinbase").rotate_after, None);
    let cfg = load(&["feeds.binance.rotate_after_ms=0"]).unwrap();
    let binance = cfg.feeds.iter().find(|f| f.name == "binance").unwrap();
    assert_eq!(binance.rotate_after, None);
}
