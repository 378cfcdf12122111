//! Per-function costs on the collector's hot path, with real messages from the bundled capture:
//! Binance parse (trade, bookTicker), frame encode, frame decode, fixed-point parse.
//! `base` measures the harness itself (a black-boxed copy of the input), so every other figure
//! can be read against it. Each case asserts its result before timing it.

// A benchmark states its preconditions with expect: a failed one is the report.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use mdrelay::feed::venue::binance::BinanceParser;
use mdrelay::feed::venue::VenueParser;
use mdrelay::market::event::{Event, Side, Trade};
use mdrelay::wire::protocol::{decode_frame, encode_trade, FrameBuf, Meta};

const TRADE: &str = r#"{"stream":"ethusdt@trade","data":{"e":"trade","E":1723161255612,"s":"ETHUSDT","t":1520538925,"p":"2683.80000000","q":"0.00200000","T":1723161255611,"m":true,"M":true}}"#;
const BOOK_TICKER: &str = r#"{"stream":"ethusdt@bookTicker","data":{"u":35346513501,"s":"ETHUSDT","b":"2683.80000000","B":"3.02920000","a":"2683.81000000","A":"31.43950000"}}"#;

fn parse_count(p: &mut BinanceParser, raw: &str) -> usize {
    let mut n = 0;
    p.parse(raw, 1, &mut |_, ev| {
        black_box(ev);
        n += matches!(ev, Event::Trade(_) | Event::Quote(_)) as usize;
    })
    .expect("fixture message parses");
    n
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("binance");
    g.throughput(Throughput::Elements(1));
    g.bench_function("base", |b| b.iter(|| black_box(TRADE).len()));
    let mut p = BinanceParser::default();
    assert_eq!(parse_count(&mut p, TRADE), 1);
    assert_eq!(parse_count(&mut p, BOOK_TICKER), 1);
    g.bench_function("parse_trade", |b| {
        b.iter(|| parse_count(&mut p, black_box(TRADE)))
    });
    g.bench_function("parse_book_ticker", |b| {
        b.iter(|| parse_count(&mut p, black_box(BOOK_TICKER)))
    });
    g.finish();

    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    let t = Trade {
        price: 268_380_000_000,
        size: 200_000,
        side: Side::Sell,
        trade_id: Some(1_520_538_925),
        exchange_ts_ns: Some(1_723_161_255_611_000_000),
    };
    let m = Meta {
        instrument_id: 7,
        sequence: 1,
        recv_ts_ns: 1,
        flags: 0,
    };
    let mut buf = FrameBuf::new();
    encode_trade(&mut buf, &m, &t);
    assert_eq!(buf.len(), 76);
    g.bench_function("encode_trade", |b| {
        b.iter(|| {
            encode_trade(&mut buf, black_box(&m), black_box(&t));
            buf.len()
        })
    });
    let frame = buf.clone();
    assert!(decode_frame(&frame).is_ok());
    g.bench_function("decode_trade", |b| {
        b.iter(|| decode_frame(black_box(&frame)).map(|(f, n)| f.header.sequence as usize + n))
    });
    g.finish();

    let mut g = c.benchmark_group("fixed");
    assert_eq!(
        mdrelay::market::fixed::parse("2683.80000000"),
        Ok(268_380_000_000)
    );
    g.bench_function("parse_price", |b| {
        b.iter(|| mdrelay::market::fixed::parse(black_box("2683.80000000")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
