//! Kraken WebSocket v2 end to end: the replay exchange speaks the v2 protocol (acks per symbol,
//! an `instrument` snapshot with the recording's precisions), a relay runs only a Kraken v2 feed
//! (`venue = "kraken"`), and a subscriber checks what comes out.
//!
//! There is no real Kraken v2 capture. Two stand-ins:
//! - the docs examples of `tests/fixtures/samples/kraken_v2.jsonl` (their parse and both book
//!   checksums are unit-tested in `venue::kraken_v2::tests::
//!   every_sample_parses_and_both_book_checksums_reproduce`; here they go through the exchange and
//!   the relay, with the precisions coming from the exchange's `instrument` snapshot);
//! - v2 messages CONVERTED FROM THE KRAKEN V1 CAPTURE (`data/kraken_v1/*_20210417.txt.gz`) by
//!   `tests/util/kraken_v2.rs`: books at depth 25 with checksums recomputed the v2 way over the
//!   converted book, every v1 trade, every v1 ticker; `XBT` spelled `BTC`.
//!
//! Asserted: trades (and quotes) exactly as in the recording, per symbol and in order; no
//! checksum mismatch (nor "unverified" precision status), gap, drop or crossed-book status; no
//! BOOK_MAY_BE_BAD; the book the subscriber builds equals the recording's final book per symbol,
//! and so does the cached book a late joiner gets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mdrelay::feed::venue::kraken_v2::KrakenV2Parser;
use mdrelay::feed::venue::VenueParser;
use mdrelay::market::book::L2Book;
use mdrelay::market::event::{Event, Quote, StatusCode, Trade};
use mdrelay::market::instrument::Venue;
use mdrelay::wire::protocol::{flags, Message};
use mdrelay::{relay::client::RelayClient, run};

use crate::util::{self, kraken_v2 as conv};

/// What a subscriber of the relay saw.
struct Seen {
    trades: BTreeMap<String, Vec<Trade>>,
    quotes: BTreeMap<String, Vec<Quote>>,
    books: BTreeMap<String, L2Book>,
    /// Cached books a late joiner received.
    cached: BTreeMap<String, L2Book>,
    book_frames: u64,
    /// Book frames flagged BOOK_MAY_BE_BAD.
    bad_frames: u64,
    /// Checksum mismatch, gap, dropped and crossed-book statuses: (symbol, code, count).
    bad_statuses: Vec<(Option<String>, StatusCode, u64)>,
}

fn apply(book: &mut L2Book, snapshot: bool, b: &mdrelay::wire::protocol::BookFrame<'_>) {
    let bids: Vec<_> = b.bids().collect();
    let asks: Vec<_> = b.asks().collect();
    if snapshot {
        book.apply_snapshot(&bids, &asks);
    } else {
        book.apply_delta(&bids, &asks);
    }
}

/// Serves `recording` (Kraken v2) from a paused replay exchange on `/kraken`, runs a relay with
/// only a Kraken v2 feed for `symbols`, waits until the exchange has sent `messages` recorded
/// messages and the subscriber has `trades` trades and `quotes` quotes, and returns what the
/// subscriber and a late joiner saw.
fn run_kraken_v2(
    recording: PathBuf,
    symbols: &[String],
    depth: u32,
    messages: u64,
    trades: usize,
    quotes: usize,
) -> Seen {
    let exchange = util::replay_exchange(&[(Venue::Kraken, vec![recording])], 0.0, false, true);
    let (_dir, sock) = util::temp_socket();
    let sets = vec![
        "replay.enabled=false".to_owned(),
        "http.listen=\"127.0.0.1:0\"".into(),
        "consumer.idle=\"park\"".into(),
        format!("relay.socket_path={:?}", sock.display().to_string()),
        "relay.max_pending_bytes=268435456".into(),
        "feeds.coinbase.enabled=false".into(),
        "feeds.kraken_v1.enabled=false".into(),
        "feeds.binance_usdm.enabled=false".into(),
        "feeds.binance.enabled=false".into(),
        "feeds.kraken.venue=\"kraken\"".into(),
        format!("feeds.kraken.url=\"ws://{}/kraken\"", exchange.local_addr()),
        format!("feeds.kraken.symbols={symbols:?}"),
        "feeds.kraken.channels=[\"book\", \"trade\", \"ticker\"]".into(),
        format!("feeds.kraken.book_depth={depth}"),
    ];
    let relay = run::start(util::config(&sets)).unwrap();
    let mut client = util::subscriber(&sock);
    // instrument (no precision is configured, so the parser asks for it), trade, ticker, book:
    // every request answered before the replay starts.
    util::play_when_subscribed(&exchange, 4);

    let mut seen = Seen {
        trades: BTreeMap::new(),
        quotes: BTreeMap::new(),
        books: BTreeMap::new(),
        cached: BTreeMap::new(),
        book_frames: 0,
        bad_frames: 0,
        bad_statuses: Vec::new(),
    };
    let (mut n_trades, mut n_quotes) = (0, 0);
    let mut done_at: Option<Instant> = None;
    loop {
        if done_at.is_none()
            && n_trades >= trades
            && n_quotes >= quotes
            && exchange.messages_sent() >= messages
        {
            done_at = Some(Instant::now());
            client
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
        }
        if done_at.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
            break;
        }
        let rx = match client.next_frame() {
            Ok(Some(rx)) => rx,
            Ok(None) => panic!("stream closed"),
            Err(e) if done_at.is_some() => {
                let _ = e;
                break; // quiet: everything sent has arrived
            }
            Err(e) => panic!("read: {e:?}"),
        };
        let h = rx.frame.header;
        let sym = rx.instrument.map(|i| i.symbol.clone());
        match rx.frame.message().unwrap() {
            Message::Trade(t) => {
                seen.trades.entry(sym.unwrap()).or_default().push(t);
                n_trades += 1;
            }
            Message::Quote(q) => {
                seen.quotes.entry(sym.unwrap()).or_default().push(q);
                n_quotes += 1;
            }
            Message::Book(b) => {
                seen.book_frames += 1;
                if h.flags & flags::BOOK_MAY_BE_BAD != 0 {
                    seen.bad_frames += 1;
                }
                let book = seen.books.entry(sym.unwrap()).or_default();
                apply(book, h.flags & flags::SNAPSHOT != 0, &b);
                assert!(!book.is_crossed(), "the book never crosses after any frame");
            }
            Message::Status { status, .. } => {
                if matches!(
                    status.code,
                    StatusCode::ChecksumMismatch
                        | StatusCode::Gap
                        | StatusCode::Dropped
                        | StatusCode::CrossedBook
                ) {
                    seen.bad_statuses.push((sym, status.code, status.count));
                }
            }
            _ => {}
        }
    }
    assert!(done_at.is_some(), "everything arrived");

    let mut late = RelayClient::connect(&sock).unwrap();
    late.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Ok(Some(rx)) = late.next_frame() {
        let h = rx.frame.header;
        if h.flags & flags::CACHED == 0 {
            continue;
        }
        let sym = rx.instrument.map(|i| i.symbol.clone());
        if let Ok(Message::Book(b)) = rx.frame.message() {
            let prev = seen.cached.insert(sym.unwrap(), {
                let mut book = L2Book::new();
                apply(&mut book, true, &b);
                book
            });
            assert!(prev.is_none(), "one cached book per instrument");
        }
    }
    let summary = relay.shutdown();
    let f = &summary.feeds[0];
    assert_eq!(f.name, "kraken", "{summary}");
    assert_eq!(f.parse_errors, 0, "{summary}");
    assert_eq!(f.reconnects, 0, "{summary}");
    assert!(summary.balanced(), "{summary}");
    exchange.stop();
    seen
}

/// No checksum mismatch (nor unverified-precision status), gap, drop or crossing; no bad book.
fn assert_clean(seen: &Seen) {
    assert_eq!(seen.bad_statuses, [], "no bad status");
    assert_eq!(seen.bad_frames, 0, "no book flagged BOOK_MAY_BE_BAD");
}

fn assert_books(what: &str, got: &BTreeMap<String, L2Book>, want: &BTreeMap<String, L2Book>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: symbols"
    );
    for (sym, w) in want {
        let g = &got[sym];
        assert_eq!(
            g.bids().collect::<Vec<_>>(),
            w.bids().collect::<Vec<_>>(),
            "{what} {sym}: bids"
        );
        assert_eq!(
            g.asks().collect::<Vec<_>>(),
            w.asks().collect::<Vec<_>>(),
            "{what} {sym}: asks"
        );
    }
}

/// The docs examples through the exchange and the relay. The exchange derives MATIC/USD (4, 8)
/// and ALGO/USD (5, 8) from the samples, under which both documented checksums verify: any
/// mismatch, or a precision the parser lacked, would be a `checksum_mismatch` status.
#[test]
fn docs_samples_end_to_end() {
    let _wd = util::Watchdog::new("kraken_v2_docs_e2e", 120);
    let path = util::fixture("samples/kraken_v2.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // What the parser makes of the samples given the documented precisions (the unit test of
    // the parser checks these events one by one).
    let mut p = KrakenV2Parser::with_precisions(
        [
            ("MATIC/USD".to_owned(), (4, 8)),
            ("ALGO/USD".to_owned(), (5, 8)),
        ]
        .into(),
    );
    let mut trades: BTreeMap<String, Vec<Trade>> = BTreeMap::new();
    let mut quotes: BTreeMap<String, Vec<Quote>> = BTreeMap::new();
    for l in &lines {
        p.parse(l, 0, &mut |sym, ev| match ev {
            Event::Trade(t) => trades.entry(sym.unwrap().to_owned()).or_default().push(*t),
            Event::Quote(q) => quotes.entry(sym.unwrap().to_owned()).or_default().push(*q),
            _ => {}
        })
        .unwrap();
    }
    assert_eq!(p.checksum_stats().verified, 2);
    let want_books =
        BTreeMap::from([("MATIC/USD".to_owned(), p.book("MATIC/USD").unwrap().clone())]);
    let n_trades = trades.values().map(Vec::len).sum();
    let n_quotes = quotes.values().map(Vec::len).sum();
    assert_eq!((n_trades, n_quotes), (3, 2));

    let seen = run_kraken_v2(
        path,
        &["MATIC/USD".to_owned(), "ALGO/USD".to_owned()],
        10,
        6, // the recorded request and ack are not replayed
        n_trades,
        n_quotes,
    );
    assert_clean(&seen);
    assert_eq!(seen.trades, trades);
    assert_eq!(seen.quotes, quotes);
    assert_eq!(seen.book_frames, 2);
    assert_books("stream", &seen.books, &want_books);
    assert_books("cached", &seen.cached, &want_books);
}

/// v2 messages converted from the Kraken v1 capture (there is no real v2 capture), through the
/// exchange and the relay.
#[test]
fn converted_v1_capture_end_to_end() {
    let _wd = util::Watchdog::new("kraken_v2_converted_e2e", 120);
    let c = conv::convert_v1_capture();
    let n_trades: usize = c.trades.values().map(Vec::len).sum();
    let n_quotes: usize = c.quotes.values().map(Vec::len).sum();
    assert_eq!(n_trades, c.v1_trades, "every v1 trade converted");
    assert!(n_trades > 0 && n_quotes > 0 && c.book_messages > 0);
    assert!(c.books.len() >= 5, "{:?}", c.books.keys());
    assert!(c.symbols.contains(&"KSM/BTC".to_owned()), "XBT spelled BTC");
    let messages = mdrelay::persist::recording::read_all(&c.path)
        .unwrap()
        .len() as u64;

    // The converted stream verifies under a parser that knows the converter's precisions.
    let mut p = KrakenV2Parser::with_precisions(c.precisions.clone().into_iter().collect());
    p.subscribe_requests(&mdrelay::feed::venue::Subscription {
        symbols: c.symbols.clone(),
        channels: vec!["book".into()],
        book_depth: conv::DEPTH as u32,
    });
    for r in mdrelay::persist::recording::read_all(&c.path).unwrap() {
        p.parse(&r.raw, 0, &mut |_, _| {}).unwrap();
    }
    let st = p.checksum_stats();
    assert_eq!(
        (st.verified, st.mismatched, st.unverified),
        (c.book_messages as u64, 0, 0)
    );

    let seen = run_kraken_v2(
        c.path.clone(),
        &c.symbols,
        conv::DEPTH as u32,
        messages,
        n_trades,
        n_quotes,
    );
    assert_clean(&seen);
    assert_eq!(
        seen.trades, c.trades,
        "trades exactly as converted, in order"
    );
    assert_eq!(
        seen.quotes, c.quotes,
        "quotes exactly as converted, in order"
    );
    assert_books("stream", &seen.books, &c.books);
    assert_books("cached", &seen.cached, &c.books);
    eprintln!(
        "kraken v2 (converted from v1): {n_trades} trades, {n_quotes} quotes, {} book messages \
         ({} frames) over {} books match",
        c.book_messages,
        seen.book_frames,
        c.books.len()
    );
}

/// The control for the two tests above: with one documented checksum altered, the same run
/// reports the mismatch and flags the book, so their silence means the checksums were verified
/// (with the precisions of the exchange's `instrument` snapshot), not skipped.
#[test]
fn altered_docs_checksum_is_reported_end_to_end() {
    let _wd = util::Watchdog::new("kraken_v2_altered_e2e", 120);
    let text = std::fs::read_to_string(util::fixture("samples/kraken_v2.jsonl")).unwrap();
    assert!(text.contains(r#""checksum":2114181697"#));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kraken_v2_altered.jsonl");
    std::fs::write(
        &path,
        text.replace(r#""checksum":2114181697"#, r#""checksum":2114181698"#),
    )
    .unwrap();
    let seen = run_kraken_v2(
        path,
        &["MATIC/USD".to_owned(), "ALGO/USD".to_owned()],
        10,
        6,
        3,
        2,
    );
    assert!(
        seen.bad_statuses.contains(&(
            Some("MATIC/USD".to_owned()),
            StatusCode::ChecksumMismatch,
            1
        )),
        "{:?}",
        seen.bad_statuses
    );
    assert_eq!(
        seen.bad_frames, 1,
        "the update after the mismatch is flagged"
    );
}
