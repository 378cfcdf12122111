//! The driver `make bench-instr` runs under valgrind's callgrind: one pipeline stage over the
//! first N trade and bookTicker lines of a Binance capture, so that instructions per message
//! come out as (instructions with N messages − instructions with 1) / (N − 1): process start,
//! file loading and set-up cancel out. Instruction counts do not move with the neighbours' load.
//!
//! `instr <stage> <n>` (stages cumulative, so each difference is one stage's cost):
//! - `parse`: `BinanceParser` (fast path) over each line, events counted.
//! - `parse-general`: the same parser with the fast path off (serde_json borrowed structs).
//! - `parse-serde` / `parse-sonic`: a bench-local borrowed struct for trade + bookTicker through
//!   serde_json or sonic-rs, then the same fixed-point conversions: the JSON libraries compared
//!   on equal terms.
//! - `encode`: `parse` + the wire frame of each event (`encode_trade` / `encode_quote`).
//! - `hop`: `parse` + the collector's `Publisher` (instrument table, sequence, encode) pushing
//!   into the feed's real bounded queue, each frame popped again on the same thread: the queue
//!   hop without a thread switch.
//! - `fanout`: `parse` + `Publisher` → queue → the consumer thread → the relay socket → one
//!   subscriber reading raw bytes (the library's real pipeline, `tests/util` `Pipeline`), idle
//!   strategy `park`. This one includes the consumer's wake-ups, which depend on how threads
//!   interleave: it varies by a few percent between runs, the others do not.
//!
//! Input: `MDRELAY_INSTR_INPUT` (a recording, `.gz` or not), default the bundled Binance spot
//! capture. Without arguments (as `cargo bench` runs it) every stage runs once on 100 lines as a
//! smoke check. Not a criterion bench: `harness = false`, nothing is timed.

// A benchmark states its preconditions with expect: a failed one is the report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../tests/util/mod.rs"]
mod util;

use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use serde::Deserialize;

use mdrelay::config::IdleStrategy;
use mdrelay::feed::venue::binance::BinanceParser;
use mdrelay::feed::venue::VenueParser;
use mdrelay::market::event::{Event, Quote, Side, Trade};
use mdrelay::market::fixed;
use mdrelay::queue::{bounded, Backpressure, QueueSpec, Transport};
use mdrelay::wire::protocol::{encode_quote, encode_trade, FrameBuf, Meta};

const STAGES: &[&str] = &[
    "parse",
    "parse-general",
    "parse-serde",
    "parse-sonic",
    "encode",
    "hop",
    "fanout",
];

fn input() -> PathBuf {
    std::env::var_os("MDRELAY_INSTR_INPUT").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("data/binance/spot_ethusdt_20240808.txt.gz")
        },
        PathBuf::from,
    )
}

/// The trade and bookTicker lines of the input, in order.
fn lines() -> Vec<String> {
    mdrelay::persist::recording::read_all(&input())
        .expect("input recording loads")
        .into_iter()
        .map(|r| r.raw)
        .filter(|l| l.contains("@trade\"") || l.contains("@bookTicker\""))
        .collect()
}

/// trade + bookTicker `data` in one borrowed struct (the serde / sonic-rs comparison).
#[derive(Deserialize)]
#[allow(non_snake_case)]
struct Data<'a> {
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

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    stream: &'a str,
    #[serde(borrow)]
    data: Data<'a>,
}

fn fx(s: Option<&str>) -> i64 {
    fixed::parse(s.expect("field present")).expect("decimal")
}

/// The events of a [`Msg`], as the parser would make them.
fn event(m: &Msg<'_>) -> Event<'static> {
    let d = &m.data;
    if m.stream.ends_with("@trade") {
        Event::Trade(Trade {
            price: fx(d.p),
            size: fx(d.q),
            side: if d.m.expect("m") {
                Side::Sell
            } else {
                Side::Buy
            },
            trade_id: d.t,
            exchange_ts_ns: d.T.map(|ms| ms * 1_000_000),
        })
    } else {
        Event::Quote(Quote {
            bid_price: fx(d.b),
            bid_size: fx(d.B),
            ask_price: fx(d.a),
            ask_size: fx(d.A),
            exchange_ts_ns: d.T.or(d.E).map(|ms| ms * 1_000_000),
        })
    }
}

fn tally(ev: &Event<'_>) -> u64 {
    match ev {
        Event::Trade(t) => t.price as u64,
        Event::Quote(q) => q.bid_price as u64,
        _ => 1,
    }
}

/// Runs `stage` over the first `n` lines (cycled when `n` is larger); returns a checksum.
fn run(stage: &str, n: usize, lines: &[String]) -> u64 {
    let msgs = lines.iter().cycle().take(n);
    let mut acc = 0u64;
    match stage {
        "parse" | "parse-general" => {
            let mut p = if stage == "parse" {
                BinanceParser::default()
            } else {
                BinanceParser::general_only()
            };
            for raw in msgs {
                p.parse(black_box(raw), 1, &mut |_, ev| {
                    acc = acc.wrapping_add(tally(ev))
                })
                .expect("parses");
            }
        }
        "parse-serde" => {
            for raw in msgs {
                let m: Msg<'_> = serde_json::from_str(black_box(raw)).expect("parses");
                acc = acc.wrapping_add(tally(&event(&m)) + m.data.s.len() as u64);
            }
        }
        "parse-sonic" => {
            for raw in msgs {
                let m: Msg<'_> = sonic_rs::from_str(black_box(raw)).expect("parses");
                acc = acc.wrapping_add(tally(&event(&m)) + m.data.s.len() as u64);
            }
        }
        "encode" => {
            let mut p = BinanceParser::default();
            let mut buf = FrameBuf::new();
            let mut seq = 0;
            for raw in msgs {
                p.parse(black_box(raw), 1, &mut |_, ev| {
                    seq += 1;
                    let meta = Meta {
                        instrument_id: 7,
                        sequence: seq,
                        recv_ts_ns: 1,
                        flags: 0,
                    };
                    match ev {
                        Event::Trade(t) => encode_trade(&mut buf, &meta, t),
                        Event::Quote(q) => encode_quote(&mut buf, &meta, q),
                        _ => {}
                    }
                    acc = acc.wrapping_add(buf.len() as u64 + u64::from(buf[buf.len() - 1]));
                })
                .expect("parses");
            }
        }
        "hop" => {
            let (producer, rx) = bounded(&spec(), Default::default());
            let stats = std::sync::Arc::default();
            let mut publisher = mdrelay::feed::publisher::Publisher::new(
                mdrelay::market::instrument::Venue::Binance,
                producer,
                stats,
            );
            let mut p = BinanceParser::default();
            for raw in msgs {
                p.parse(black_box(raw), 1, &mut |sym, ev| {
                    publisher.on_event(sym, ev, 1, 1)
                })
                .expect("parses");
                publisher.end_message();
                while let Ok(e) = rx.try_pop() {
                    acc = acc.wrapping_add(e.frame.len() as u64);
                }
            }
        }
        "fanout" => acc = fanout(msgs),
        other => panic!("unknown stage `{other}`; stages: {STAGES:?}"),
    }
    acc
}

fn spec() -> QueueSpec {
    QueueSpec {
        name: "instr".into(),
        transport: Transport::Channel,
        capacity_frames: 65_536,
        policy: Backpressure::Block,
        block_timeout: Duration::from_secs(60),
    }
}

/// Parse → publisher → queue → consumer → relay socket → one subscriber that reads raw bytes
/// until the relay closes its connection at shutdown; returns the bytes it received.
fn fanout<'a>(msgs: impl Iterator<Item = &'a String>) -> u64 {
    let (pipe, mut publishers, _stats) = util::Pipeline::new(&[spec()], IdleStrategy::Park);
    let client = pipe.subscribe();
    let mut stream = client
        .stream()
        .try_clone()
        .expect("clone the subscriber socket");
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(k) => total += k as u64,
            }
        }
    });
    let mut publisher = publishers.pop().expect("one publisher");
    let mut p = BinanceParser::default();
    for raw in msgs {
        p.parse(black_box(raw), 1, &mut |sym, ev| {
            publisher.on_event(sym, ev, 1, 1)
        })
        .expect("parses");
        publisher.end_message();
    }
    publisher.finish();
    drop(publisher);
    pipe.shutdown();
    drop(client);
    reader.join().expect("reader")
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let lines = lines();
    assert!(
        !lines.is_empty(),
        "no trade or bookTicker line in the input"
    );
    match args.as_slice() {
        [stage, n] => {
            let n: usize = n.parse().expect("a message count");
            println!("{stage} {n} {}", black_box(run(stage, n, &lines)));
        }
        [] => {
            for stage in STAGES {
                let a = run(stage, 100, &lines);
                assert!(a > 0, "{stage} produced nothing");
            }
            println!("instr: every stage ran on 100 lines (`make bench-instr` counts them)");
        }
        _ => panic!("usage: instr [<stage> <n>]; stages: {STAGES:?}"),
    }
}
