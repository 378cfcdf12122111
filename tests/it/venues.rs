//! Every venue end to end: the replay exchange (127.0.0.1:0) speaks the venue's protocol from its
//! real capture, the venue's collector subscribes and parses, and a subscriber of the relay counts
//! trades exactly against the capture (same values, same order per instrument). Books arrive
//! without a checksum mismatch, gap or may-be-bad flag, never cross after any frame, and the
//! cached book a late joiner gets equals the book the subscriber built from the stream.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mdrelay::market::book::L2Book;
use mdrelay::market::event::{Event, StatusCode, Trade};
use mdrelay::market::instrument::Venue;
use mdrelay::wire::protocol::{flags, Message};
use mdrelay::{feed::venue, persist::recording, relay::client::RelayClient, run};

use crate::util;

/// Trades in the capture, per symbol, in order, through the venue's own parser.
fn expected_trades(v: Venue, files: &[PathBuf]) -> BTreeMap<String, Vec<Trade>> {
    let mut lines = Vec::new();
    for f in files {
        lines.extend(recording::read_all(f).unwrap());
    }
    lines.sort_by_key(|r| r.recv_ns.unwrap_or(0));
    let mut p = venue::parser_for(v);
    let mut out: BTreeMap<String, Vec<Trade>> = BTreeMap::new();
    for r in lines {
        let _ = p.parse(&r.raw, 0, &mut |sym, ev| {
            if let (Some(sym), Event::Trade(t)) = (sym, ev) {
                out.entry(sym.to_owned()).or_default().push(*t);
            }
        });
    }
    out
}

fn run_venue(v: Venue, feed: &str, files: Vec<PathBuf>) {
    let want = expected_trades(v, &files);
    let total: usize = want.values().map(Vec::len).sum();
    assert!(total > 0);
    let exchange = util::replay_exchange(&[(v, files)], 0.0, false, true);
    let (_dir, sock) = util::temp_socket();
    let mut sets = vec![
        "replay.enabled=false".to_owned(),
        "http.listen=\"127.0.0.1:0\"".into(),
        "consumer.idle=\"park\"".into(),
        format!("relay.socket_path={:?}", sock.display().to_string()),
        "relay.max_pending_bytes=268435456".into(),
    ];
    for other in ["binance", "binance_usdm", "coinbase", "kraken_v1"] {
        if other != feed {
            sets.push(format!("feeds.{other}.enabled=false"));
        }
    }
    let path = if v == Venue::Binance {
        "binance/stream"
    } else {
        v.name()
    };
    sets.push(format!(
        "feeds.{feed}.url=\"ws://{}/{path}\"",
        exchange.local_addr()
    ));
    sets.push(format!(
        "feeds.{feed}.rest_url=\"http://{}/binance\"",
        exchange.local_addr()
    ));
    let relay = run::start(util::config(&sets)).unwrap();
    let mut client = util::subscriber(&sock);
    util::play_when_subscribed(&exchange, 1);

    let mut got: BTreeMap<String, Vec<Trade>> = BTreeMap::new();
    let mut books: BTreeMap<u32, L2Book> = BTreeMap::new();
    let (mut book_frames, mut n, mut crossings) = (0u64, 0usize, 0u64);
    while n < total {
        let rx = client.next_frame().unwrap().expect("stream open");
        let h = rx.frame.header;
        let sym = rx.instrument.map(|i| i.symbol.clone());
        match rx.frame.message().unwrap() {
            Message::Trade(t) => {
                got.entry(sym.unwrap()).or_default().push(t);
                n += 1;
            }
            Message::Book(b) => {
                book_frames += 1;
                assert_eq!(h.flags & flags::BOOK_MAY_BE_BAD, 0, "{v}: book flagged bad");
                let bids: Vec<_> = b.bids().collect();
                let asks: Vec<_> = b.asks().collect();
                let book = books.entry(h.instrument_id).or_default();
                if h.flags & flags::SNAPSHOT != 0 {
                    book.apply_snapshot(&bids, &asks);
                } else {
                    book.apply_delta(&bids, &asks);
                }
                if book.is_crossed() {
                    crossings += 1;
                }
            }
            Message::Status { status, .. } => assert!(
                !matches!(
                    status.code,
                    StatusCode::ChecksumMismatch
                        | StatusCode::Gap
                        | StatusCode::Dropped
                        | StatusCode::CrossedBook
                ),
                "{v}: {status:?}"
            ),
            _ => {}
        }
    }
    assert_eq!(crossings, 0, "{v}: the book never crosses after any frame");
    for (sym, trades) in &want {
        assert_eq!(
            got.get(sym),
            Some(trades),
            "{v} {sym}: trades exactly as captured, in order"
        );
    }
    assert_eq!(got.len(), want.len());

    // A late joiner's cached books equal the books built from the stream so far, once the
    // stream has gone quiet (the capture is over).
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(Some(rx)) = {
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        client.next_frame()
    } {
        if let Ok(Message::Book(b)) = rx.frame.message() {
            let bids: Vec<_> = b.bids().collect();
            let asks: Vec<_> = b.asks().collect();
            let book = books.entry(rx.frame.header.instrument_id).or_default();
            if rx.frame.header.flags & flags::SNAPSHOT != 0 {
                book.apply_snapshot(&bids, &asks);
            } else {
                book.apply_delta(&bids, &asks);
            }
        }
    }
    let cached = cached_books_match(&sock, &books, v);
    if book_frames > 0 {
        assert_eq!(cached, books.len(), "{v}: one cached book per instrument");
    }
    let summary = relay.shutdown();
    let f = &summary.feeds[0];
    assert_eq!(f.parse_errors, 0, "{v}: {summary}");
    assert!(summary.balanced(), "{summary}");
    eprintln!("{v}: {n} trades exact, {book_frames} book frames, {cached} cached books match");
    for b in books.values() {
        assert!(!b.is_crossed() || b.is_empty(), "{v}: final book crossed");
    }
    exchange.stop();
}

#[test]
fn coinbase_end_to_end() {
    let _wd = util::Watchdog::new("coinbase_e2e", 120);
    run_venue(
        Venue::Coinbase,
        "coinbase",
        vec![util::fixture(
            "coinbase/level2_ticker_matches_20210417.txt.gz",
        )],
    );
}

#[test]
fn kraken_v1_end_to_end() {
    let _wd = util::Watchdog::new("kraken_v1_e2e", 120);
    run_venue(
        Venue::KrakenV1,
        "kraken_v1",
        vec![
            util::fixture("kraken_v1/book1000_20210417.txt.gz"),
            util::fixture("kraken_v1/trade_20210417.txt.gz"),
            util::fixture("kraken_v1/ticker_20210417.txt.gz"),
        ],
    );
}

#[test]
fn binance_with_depth_end_to_end() {
    let _wd = util::Watchdog::new("binance_e2e", 120);
    run_venue(Venue::Binance, "binance", vec![util::binance_capture()]);
}

/// Connects a late joiner to `sock` and checks that every cached book it is sent equals the
/// streamed one in `books`; returns how many cached books came.
pub(crate) fn cached_books_match(sock: &Path, books: &BTreeMap<u32, L2Book>, v: Venue) -> usize {
    let mut late = RelayClient::connect(sock).unwrap();
    late.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut cached = 0;
    while let Ok(Some(rx)) = late.next_frame() {
        let h = rx.frame.header;
        if h.flags & flags::CACHED == 0 {
            continue;
        }
        if let Ok(Message::Book(b)) = rx.frame.message() {
            let mine = &books[&h.instrument_id];
            assert_eq!(
                b.bids().collect::<Vec<_>>(),
                mine.bids().collect::<Vec<_>>(),
                "{v}: cached bids"
            );
            assert_eq!(
                b.asks().collect::<Vec<_>>(),
                mine.asks().collect::<Vec<_>>(),
                "{v}: cached asks"
            );
            cached += 1;
        }
    }
    cached
}
