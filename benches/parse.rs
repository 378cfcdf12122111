//! Per-message cost of parse + normalize for every venue message kind, on real traffic: the
//! bundled captures in `data/` (Binance trade / bookTicker / depth, Coinbase match / ticker /
//! l2update, Kraken v1 trade / ticker / book) replayed in capture order through the venue's own
//! parser, and the Kraken v2 documentation examples (`tests/fixtures/samples/kraken_v2.jsonl`;
//! no v2 capture is bundled). Also `Cache::apply` per frame kind, and `base`, which measures the
//! harness itself (walking the message list and black-boxing each message's length).
//!
//! Stateful streams (books) are timed as they run on a collector: each case parses the capture's
//! messages of its kind in order, with the messages that build state (acks, book snapshots, the
//! REST depth snapshot) parsed untimed between the timed runs. At the end of the capture a fresh
//! parser starts over, untimed. Before timing, one full pass asserts that every message parses
//! and that the book streams raise no gap, checksum mismatch or resync.

// A benchmark states its preconditions with expect: a failed one is the report.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use mdrelay::feed::venue::kraken_v2::KrakenV2Parser;
use mdrelay::feed::venue::{parser_for, Subscription, VenueParser};
use mdrelay::market::event::{Event, StatusCode};
use mdrelay::market::instrument::{instrument_id, Venue};
use mdrelay::relay::cache::Cache;
use mdrelay::wire::protocol::{self, FrameBuf, Meta};

/// One benchmark case: a venue stream in capture order.
struct Case {
    name: &'static str,
    venue: Venue,
    sub: Subscription,
    /// (timed?, raw message), in order.
    lines: Vec<(bool, String)>,
    /// Binance: the capture's REST depth snapshot, answered when the parser asks for one.
    rest_snapshot: Option<String>,
}

/// What a pass over a case produced.
#[derive(Debug, Default)]
struct Tally {
    events: u64,
    errors: u64,
    /// Gap, checksum mismatch (count > 0), resync, crossed book.
    trouble: u64,
}

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn capture(rels: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    for rel in rels {
        let recs =
            mdrelay::persist::recording::read_all(&repo(rel)).expect("bundled capture loads");
        all.extend(recs.into_iter().map(|r| (r.recv_ns.unwrap_or(0), r.raw)));
    }
    // Several Kraken files play as one stream, as the replay exchange merges them.
    all.sort_by_key(|(ns, _)| *ns);
    all.into_iter().map(|(_, raw)| raw).collect()
}

fn sub(symbols: &[&str], channels: &[&str], book_depth: u32) -> Subscription {
    Subscription {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        channels: channels.iter().map(|s| s.to_string()).collect(),
        book_depth,
    }
}

fn new_parser(c: &Case) -> Box<dyn VenueParser> {
    let mut p: Box<dyn VenueParser> = if c.venue == Venue::Kraken {
        // The docs examples' precisions (the `instrument` channel would give them).
        Box::new(KrakenV2Parser::with_precisions(HashMap::from([
            ("MATIC/USD".to_owned(), (4, 8)),
            ("ALGO/USD".to_owned(), (5, 8)),
        ])))
    } else {
        parser_for(c.venue)
    };
    let _ = p.subscribe_requests(&c.sub);
    p
}

/// Parses one message; answers a REST snapshot request at once from the capture.
#[inline]
fn parse_one(p: &mut dyn VenueParser, c: &Case, raw: &str, t: &mut Tally, req: &mut Vec<String>) {
    let mut sink = |_: Option<&str>, ev: &Event<'_>| {
        t.events += 1;
        if let Event::Status(s) = ev {
            let bad = matches!(
                s.code,
                StatusCode::Gap | StatusCode::Resync | StatusCode::CrossedBook
            ) || (s.code == StatusCode::ChecksumMismatch && s.count > 0);
            t.trouble += u64::from(bad);
        }
        black_box(ev);
    };
    if p.parse(black_box(raw), 1, &mut sink).is_err() {
        t.errors += 1;
    }
    p.drain_snapshot_requests(req);
    if !req.is_empty() {
        if let Some(body) = &c.rest_snapshot {
            for sym in req.drain(..) {
                let _ = p.on_rest_snapshot(&sym, body, &mut sink);
            }
        }
        req.clear();
    }
}

/// Parses `iters` timed messages, cycling through the case; returns the timed duration only.
fn run(c: &Case, iters: u64, t: &mut Tally) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    let mut req = Vec::new();
    let mut p = new_parser(c);
    let mut i = 0;
    while done < iters {
        if i == c.lines.len() {
            p = new_parser(c);
            i = 0;
        }
        if !c.lines[i].0 {
            parse_one(&mut *p, c, &c.lines[i].1, t, &mut req);
            i += 1;
            continue;
        }
        // A run of timed messages, up to the next untimed one.
        let start = Instant::now();
        while i < c.lines.len() && c.lines[i].0 && done < iters {
            parse_one(&mut *p, c, &c.lines[i].1, t, &mut req);
            i += 1;
            done += 1;
        }
        total += start.elapsed();
    }
    total
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let binance = capture(&["data/binance/spot_ethusdt_20240808.txt.gz"]);
    let snapshot = binance
        .iter()
        .find(|l| l.starts_with("{\"lastUpdateId\""))
        .cloned();
    for (name, key, channels) in [
        ("binance/trade", "@trade\"", &["trade"][..]),
        ("binance/bookTicker", "@bookTicker\"", &["bookTicker"][..]),
        ("binance/depth_diff", "@depth@100ms\"", &["depth@100ms"][..]),
    ] {
        out.push(Case {
            name,
            venue: Venue::Binance,
            sub: sub(&["ETHUSDT"], channels, 0),
            lines: binance
                .iter()
                .filter(|l| l.contains(key))
                .map(|l| (true, l.clone()))
                .collect(),
            rest_snapshot: snapshot.clone(),
        });
    }
    let coinbase = capture(&["data/coinbase/level2_ticker_matches_20210417.txt.gz"]);
    let products = ["SKL-USD", "SKL-BTC", "BAND-GBP", "BAND-BTC", "NMR-EUR"];
    for (name, timed, setup) in [
        (
            "coinbase/match",
            "\"type\":\"match\"",
            "\"type\":\"subscriptions\"",
        ),
        (
            "coinbase/ticker",
            "\"type\":\"ticker\"",
            "\"type\":\"subscriptions\"",
        ),
        (
            "coinbase/l2update",
            "\"type\":\"l2update\"",
            "\"type\":\"snapshot\"",
        ),
    ] {
        out.push(Case {
            name,
            venue: Venue::Coinbase,
            sub: sub(&products, &["ticker", "matches", "level2"], 0),
            lines: coinbase
                .iter()
                .filter(|l| l.contains(timed) || l.contains(setup))
                .map(|l| (l.contains(timed), l.clone()))
                .collect(),
            rest_snapshot: None,
        });
    }
    let kraken = capture(&[
        "data/kraken_v1/book1000_20210417.txt.gz",
        "data/kraken_v1/trade_20210417.txt.gz",
        "data/kraken_v1/ticker_20210417.txt.gz",
    ]);
    let pairs = ["WAVES/EUR", "XMR/USD", "KSM/XBT", "SC/EUR", "ETH/CHF"];
    for (name, channel) in [
        ("kraken_v1/trade", "\"trade\","),
        ("kraken_v1/ticker", "\"ticker\","),
        ("kraken_v1/book_update", "\"book-1000\","),
    ] {
        out.push(Case {
            name,
            venue: Venue::KrakenV1,
            sub: sub(&pairs, &["book", "trade", "ticker"], 1000),
            lines: kraken
                .iter()
                .filter(|l| l.starts_with('[') && l.contains(channel))
                // Book snapshots ("as"/"bs") build state untimed; updates are timed.
                .map(|l| (!l.contains("\"as\":"), l.clone()))
                .collect(),
            rest_snapshot: None,
        });
    }
    let v2: Vec<String> = std::fs::read_to_string(repo("tests/fixtures/samples/kraken_v2.jsonl"))
        .expect("kraken v2 samples")
        .lines()
        .map(str::to_owned)
        .collect();
    let find = |channel: &str, kind: &str| {
        v2.iter()
            .find(|l| l.starts_with(&format!("{{\"channel\":\"{channel}\",\"type\":\"{kind}\"")))
            .cloned()
            .expect("kraken v2 sample present")
    };
    for (name, channel) in [
        ("kraken_v2/trade", "trade"),
        ("kraken_v2/ticker", "ticker"),
        ("kraken_v2/book_update", "book"),
    ] {
        let mut lines = Vec::new();
        if channel == "book" {
            lines.push((false, find("book", "snapshot")));
        }
        lines.push((true, find(channel, "update")));
        out.push(Case {
            name,
            venue: Venue::Kraken,
            sub: sub(&["MATIC/USD", "ALGO/USD"], &[channel], 10),
            lines,
            rest_snapshot: None,
        });
    }
    out
}

fn bench_parse(c: &mut Criterion) {
    let cases = cases();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(1));
    let all: Vec<&str> = cases[0].lines.iter().map(|(_, l)| l.as_str()).collect();
    g.bench_function("base", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % all.len();
            black_box(all[i]).len()
        })
    });
    for case in &cases {
        let timed = case.lines.iter().filter(|(t, _)| *t).count() as u64;
        assert!(timed > 0, "{}: no timed message", case.name);
        // Correctness first: every message of one full pass parses, the books stay consistent.
        let mut t = Tally::default();
        run(case, timed, &mut t);
        assert_eq!(t.errors, 0, "{}: parse errors", case.name);
        assert_eq!(t.trouble, 0, "{}: gap/checksum/resync raised", case.name);
        // Binance depth: the diffs before the book is synced yield no event.
        assert!(
            t.events >= timed * 99 / 100,
            "{}: {} events",
            case.name,
            t.events
        );
        g.bench_function(case.name, |b| {
            b.iter_custom(|iters| run(case, iters, &mut Tally::default()))
        });
    }
    g.finish();
}

/// `Cache::apply` for a trade, a quote and a book delta of a defined instrument.
fn bench_cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(1));
    // Frames exactly as the collector encodes them from the capture's first messages.
    let raw = capture(&["data/binance/spot_ethusdt_20240808.txt.gz"]);
    let mut p = parser_for(Venue::Binance);
    let _ = p.subscribe_requests(&sub(&["ETHUSDT"], &["trade", "bookTicker"], 0));
    let id = instrument_id("binance", "ETHUSDT");
    let meta = Meta {
        instrument_id: id,
        sequence: 1,
        recv_ts_ns: 1,
        flags: 0,
    };
    let mut def = FrameBuf::new();
    protocol::encode_instrument_def(&mut def, &meta, "binance", "ETHUSDT");
    let (mut trade, mut quote) = (None, None);
    for l in &raw {
        let _ = p.parse(l, 1, &mut |_, ev| {
            let mut f = FrameBuf::new();
            match ev {
                Event::Trade(t) if trade.is_none() => {
                    protocol::encode_trade(&mut f, &meta, t);
                    trade = Some(f);
                }
                Event::Quote(q) if quote.is_none() => {
                    protocol::encode_quote(&mut f, &meta, q);
                    quote = Some(f);
                }
                _ => {}
            }
        });
        if trade.is_some() && quote.is_some() {
            break;
        }
    }
    // A depth diff of the capture as a BookDelta frame (the cache decodes and applies it).
    let diff = raw
        .iter()
        .find(|l| l.contains("@depth@100ms\""))
        .expect("a depth diff");
    let snap = raw
        .iter()
        .find(|l| l.starts_with("{\"lastUpdateId\""))
        .expect("rest snapshot");
    let levels: serde_json::Value = serde_json::from_str(diff).expect("json");
    let to_levels = |side: &serde_json::Value| -> Vec<mdrelay::market::event::Level> {
        side.as_array()
            .map(|a| {
                a.iter()
                    .map(|pq| mdrelay::market::event::Level {
                        price: mdrelay::market::fixed::parse(pq[0].as_str().unwrap_or("0"))
                            .unwrap_or(0),
                        size: mdrelay::market::fixed::parse(pq[1].as_str().unwrap_or("0"))
                            .unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (bids, asks) = (
        to_levels(&levels["data"]["b"]),
        to_levels(&levels["data"]["a"]),
    );
    let snap_json: serde_json::Value = serde_json::from_str(snap).expect("json");
    let (sbids, sasks) = (to_levels(&snap_json["bids"]), to_levels(&snap_json["asks"]));
    let mut snap_frame = FrameBuf::new();
    protocol::encode_book(
        &mut snap_frame,
        &meta,
        &mdrelay::market::event::BookUpdate {
            snapshot: true,
            bids: &sbids,
            asks: &sasks,
            venue_sequence: Some(1),
            exchange_ts_ns: None,
            may_be_bad: false,
        },
    );
    let mut f = FrameBuf::new();
    protocol::encode_book(
        &mut f,
        &meta,
        &mdrelay::market::event::BookUpdate {
            snapshot: false,
            bids: &bids,
            asks: &asks,
            venue_sequence: Some(2),
            exchange_ts_ns: None,
            may_be_bad: false,
        },
    );
    let book = f;
    let mut cache = Cache::default();
    let apply = |cache: &mut Cache, frame: &[u8]| {
        let h = protocol::peek_header(frame);
        cache.apply(0, &h, frame)
    };
    assert_eq!(apply(&mut cache, &def), Ok(()));
    assert_eq!(apply(&mut cache, &snap_frame), Ok(()));
    for (name, frame) in [
        ("apply_trade", trade.expect("a trade in the capture")),
        ("apply_quote", quote.expect("a quote in the capture")),
        ("apply_book_delta", book),
    ] {
        assert_eq!(apply(&mut cache, &frame), Ok(()), "{name}");
        g.bench_function(name, |b| {
            b.iter(|| apply(&mut cache, black_box(&frame)).is_ok())
        });
    }
    g.finish();
}

/// trade + bookTicker `data` in one borrowed struct: serde_json and sonic-rs on equal terms.
#[derive(serde::Deserialize)]
#[allow(non_snake_case, dead_code)]
struct LocalData<'a> {
    s: &'a str,
    t: Option<u64>,
    p: Option<&'a str>,
    q: Option<&'a str>,
    T: Option<u64>,
    m: Option<bool>,
    b: Option<&'a str>,
    B: Option<&'a str>,
    a: Option<&'a str>,
    A: Option<&'a str>,
    E: Option<u64>,
}

#[derive(serde::Deserialize)]
struct LocalMsg<'a> {
    #[serde(borrow)]
    stream: &'a str,
    #[serde(borrow)]
    data: LocalData<'a>,
}

/// Fixed-point values of a [`LocalMsg`], as the parser converts them.
fn local_fixed(m: &LocalMsg<'_>) -> i64 {
    let d = &m.data;
    let fx = |s: Option<&str>| mdrelay::market::fixed::parse(s.unwrap_or("x")).unwrap_or(0);
    if m.stream.ends_with("@trade") {
        fx(d.p)
            ^ fx(d.q)
            ^ d.t.unwrap_or(0) as i64
            ^ d.T.unwrap_or(0) as i64
            ^ i64::from(d.m == Some(true))
    } else {
        fx(d.b) ^ fx(d.B) ^ fx(d.a) ^ fx(d.A) ^ d.T.or(d.E).unwrap_or(0) as i64
    }
}

/// The Binance parse paths on the same lines (docs/BENCHMARKS.md, "Binance parse paths"):
/// `BinanceParser` with its fast path and with the serde path only, per kind; and a bench-local
/// borrowed struct through serde_json and through sonic-rs, with the same fixed-point
/// conversions, on trade + bookTicker.
fn bench_paths(c: &mut Criterion) {
    use mdrelay::feed::venue::binance::BinanceParser;
    let raw = capture(&["data/binance/spot_ethusdt_20240808.txt.gz"]);
    let mut g = c.benchmark_group("binance_paths");
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for (kind, marker) in [
        ("trade", "@trade\""),
        ("bookTicker", "@bookTicker\""),
        ("depth", "@depth@100ms\""),
    ] {
        let lines: Vec<&String> = raw
            .iter()
            .filter(|l| l.contains(marker))
            .take(2000)
            .collect();
        g.throughput(Throughput::Elements(lines.len() as u64));
        for (path, general) in [("fast", false), ("general", true)] {
            let mut p = if general {
                BinanceParser::general_only()
            } else {
                BinanceParser::default()
            };
            let mut n = 0u64;
            for l in &lines {
                p.parse(l, 1, &mut |_, _| n += 1).expect("parses");
            }
            assert_eq!(n, lines.len() as u64, "{kind} {path}: one event per line");
            g.bench_function(format!("{kind}/{path}"), |b| {
                b.iter(|| {
                    let mut n = 0u64;
                    for l in &lines {
                        let _ = p.parse(black_box(l), 1, &mut |_, _| n += 1);
                    }
                    n
                })
            });
        }
    }
    let lines: Vec<&String> = raw
        .iter()
        .filter(|l| l.contains("@trade\"") || l.contains("@bookTicker\""))
        .take(2000)
        .collect();
    g.throughput(Throughput::Elements(lines.len() as u64));
    for l in &lines {
        let a: LocalMsg<'_> = serde_json::from_str(l).expect("serde_json parses");
        let b: LocalMsg<'_> = sonic_rs::from_str(l).expect("sonic-rs parses");
        assert_eq!(local_fixed(&a), local_fixed(&b));
    }
    g.bench_function("trade+bookTicker/serde_json_struct", |b| {
        b.iter(|| {
            lines.iter().fold(0i64, |acc, l| {
                let m: LocalMsg<'_> = serde_json::from_str(black_box(l)).expect("parses");
                acc ^ local_fixed(&m)
            })
        })
    });
    g.bench_function("trade+bookTicker/sonic_rs_struct", |b| {
        b.iter(|| {
            lines.iter().fold(0i64, |acc, l| {
                let m: LocalMsg<'_> = sonic_rs::from_str(black_box(l)).expect("parses");
                acc ^ local_fixed(&m)
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parse, bench_cache, bench_paths);
criterion_main!(benches);
