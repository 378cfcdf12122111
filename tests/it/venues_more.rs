//! OKX, Gemini, Hyperliquid and Bybit end to end, as `venues.rs` does for the first venues: the
//! replay exchange (127.0.0.1:0) speaks the venue's protocol from its real capture (Bybit: the
//! cited samples), the venue's collector subscribes and parses, and a relay subscriber sees every
//! trade exactly as the venue's own parser reads the capture (same values, same order per
//! instrument); books arrive without a checksum mismatch, gap or may-be-bad flag and never cross
//! after any frame; and the cached book a late joiner gets equals the book built from the stream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mdrelay::market::book::L2Book;
use mdrelay::market::event::{Event, StatusCode, Trade};
use mdrelay::market::instrument::Venue;
use mdrelay::wire::protocol::{flags, Message};
use mdrelay::{feed::venue, persist::recording, run};

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

fn apply(books: &mut BTreeMap<u32, L2Book>, h_flags: u16, id: u32, m: &Message<'_>) -> bool {
    let Message::Book(b) = m else { return false };
    let bids: Vec<_> = b.bids().collect();
    let asks: Vec<_> = b.asks().collect();
    let book = books.entry(id).or_default();
    if h_flags & flags::SNAPSHOT != 0 {
        book.apply_snapshot(&bids, &asks);
    } else {
        book.apply_delta(&bids, &asks);
    }
    true
}

/// Runs feed `feed` of venue `v` (symbols, channels, extra `--set`s) against `files`.
fn run_venue(v: Venue, files: Vec<PathBuf>, symbols: &[&str], channels: &[&str], extra: &[&str]) {
    let want = expected_trades(v, &files);
    let total: usize = want.values().map(Vec::len).sum();
    assert!(total > 0);
    let exchange = util::replay_exchange(&[(v, files)], 0.0, false, true);
    let (_dir, sock) = util::temp_socket();
    let feed = v.name();
    let mut sets = vec![
        "replay.enabled=false".to_owned(),
        "http.listen=\"127.0.0.1:0\"".into(),
        "consumer.idle=\"park\"".into(),
        format!("relay.socket_path={:?}", sock.display().to_string()),
        "relay.max_pending_bytes=268435456".into(),
        "feeds.binance.enabled=false".into(),
        "feeds.coinbase.enabled=false".into(),
        "feeds.kraken_v1.enabled=false".into(),
        "feeds.binance_usdm.enabled=false".into(),
        format!("feeds.{feed}.venue=\"{feed}\""),
        format!("feeds.{feed}.url=\"ws://{}/{feed}\"", exchange.local_addr()),
        format!("feeds.{feed}.symbols={symbols:?}"),
        format!("feeds.{feed}.channels={channels:?}"),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
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
        let m = rx.frame.message().unwrap();
        match &m {
            Message::Trade(t) => {
                got.entry(sym.unwrap()).or_default().push(*t);
                n += 1;
            }
            Message::Book(_) => {
                book_frames += 1;
                assert_eq!(h.flags & flags::BOOK_MAY_BE_BAD, 0, "{v}: book flagged bad");
                apply(&mut books, h.flags, h.instrument_id, &m);
                if books.get(&h.instrument_id).is_some_and(L2Book::is_crossed) {
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
    assert_eq!(got, want, "{v}: trades exactly as captured, in order");

    // Drain what is left, then a late joiner's cached books equal the streamed ones.
    std::thread::sleep(Duration::from_millis(300));
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while let Ok(Some(rx)) = client.next_frame() {
        let h = rx.frame.header;
        if let Ok(m) = rx.frame.message() {
            if apply(&mut books, h.flags, h.instrument_id, &m) {
                book_frames += 1;
                assert_eq!(h.flags & flags::BOOK_MAY_BE_BAD, 0, "{v}: book flagged bad");
            }
        }
    }
    let cached = crate::venues::cached_books_match(&sock, &books, v);
    assert!(book_frames > 0, "{v}: books were streamed");
    assert_eq!(cached, books.len(), "{v}: one cached book per instrument");
    let summary = relay.shutdown();
    let f = &summary.feeds[0];
    assert_eq!(f.parse_errors, 0, "{v}: {summary}");
    assert!(summary.balanced(), "{summary}");
    for b in books.values() {
        assert!(!b.is_crossed(), "{v}: final book crossed");
    }
    exchange.stop();
}

#[test]
fn okx_end_to_end() {
    let _wd = util::Watchdog::new("okx_e2e", 120);
    run_venue(
        Venue::Okx,
        vec![util::fixture("okx/books_trades_tickers_20220513.txt.gz")],
        &["BTC-USD-220527", "UNI-USD-SWAP"],
        &["trades", "tickers", "books"],
        &[],
    );
}

#[test]
fn gemini_end_to_end() {
    let _wd = util::Watchdog::new("gemini_e2e", 120);
    run_venue(
        Venue::Gemini,
        vec![util::fixture("gemini/l2_trades_20210624.txt.gz")],
        &["FILUSD", "ANKRUSD", "ETHEUR", "ALCXUSD", "ZECLTC"],
        &["l2"],
        &[],
    );
}

#[test]
fn hyperliquid_end_to_end() {
    let _wd = util::Watchdog::new("hyperliquid_e2e", 120);
    run_venue(
        Venue::Hyperliquid,
        vec![util::fixture("hyperliquid/btc_20250126.txt.gz")],
        &["BTC"],
        &["l2Book", "trades"],
        &[],
    );
}

#[test]
fn bybit_end_to_end_on_the_samples() {
    let _wd = util::Watchdog::new("bybit_e2e", 120);
    run_venue(
        Venue::Bybit,
        vec![util::fixture("samples/bybit.jsonl")],
        &["BTCUSDT", "ROSEUSDT"],
        &["publicTrade", "orderbook", "tickers", "allLiquidation"],
        &["feeds.bybit.book_depth=50"],
    );
}
