//! What the writer's unit tests share: a fast configuration, record builders, a CSV loader and
//! the accounting check (`sent = received = rows_written + dropped_io + dropped_unknown`).
//!
//! Tests only (declared `#[cfg(test)] mod testkit`): its `unwrap()`s are test failure reports,
//! never on a runtime path.

#![cfg(test)]

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{WriterHandle, WriterRecord, WriterStats};
use crate::market::bars::Bar;
use crate::market::event::{Quote, Side, Trade};
use crate::market::fixed::{ABSENT, SCALE};
use crate::market::instrument::{instrument_id, InstrumentId};
use crate::persist::config::WriterConfig;

/// 2024-08-09T00:00:00Z.
pub(super) const MIDNIGHT: u64 = 1_723_161_600_000_000_000;
pub(super) const SEC: u64 = 1_000_000_000;

pub(super) fn cfg(dir: &Path) -> WriterConfig {
    WriterConfig {
        flush_interval: Duration::from_millis(10),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(40),
        error_log_interval: Duration::from_millis(100),
        ..WriterConfig::new(dir)
    }
}

pub(super) fn trade(id: InstrumentId, recv: u64, price: i64, size: i64) -> WriterRecord {
    WriterRecord::Trade {
        instrument_id: id,
        recv_ts_ns: recv,
        trade: Trade {
            price,
            size,
            side: Side::Sell,
            trade_id: Some(recv % 1_000_000),
            exchange_ts_ns: Some(recv - 1_000_000),
        },
    }
}

pub(super) fn quote(id: InstrumentId, recv: u64, bid: i64) -> WriterRecord {
    WriterRecord::Quote {
        instrument_id: id,
        recv_ts_ns: recv,
        quote: Quote {
            bid_price: bid,
            bid_size: 3 * SCALE,
            ask_price: ABSENT,
            ask_size: ABSENT,
            exchange_ts_ns: None,
        },
    }
}

pub(super) fn bar(id: InstrumentId, start: u64, volume: i128) -> WriterRecord {
    WriterRecord::Bar {
        instrument_id: id,
        bar: Bar {
            interval_ns: 60 * SEC,
            start_ns: start,
            end_ns: start + 60 * SEC,
            open: 100 * SCALE,
            high: 110 * SCALE,
            low: 90 * SCALE,
            close: 105 * SCALE,
            volume,
            notional: volume * i128::from(100 * SCALE) + 1,
            notional_overflow: false,
            trade_count: 42,
            first_trade_ns: start + 1,
            last_trade_ns: start + 59 * SEC,
        },
    }
}

/// Header and rows of a CSV file, loaded with the csv crate.
pub(super) fn load(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

pub(super) fn parse_fixed_i128(s: &str) -> i128 {
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<8}");
    let v = int.parse::<i128>().unwrap() * i128::from(SCALE) + frac.parse::<i128>().unwrap();
    if neg {
        -v
    } else {
        v
    }
}

pub(super) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

pub(super) fn lines(path: &Path) -> usize {
    fs::read_to_string(path).unwrap().lines().count()
}

pub(super) fn register(w: &WriterHandle, venue: &str, symbol: &str) -> InstrumentId {
    let id = instrument_id(venue, symbol);
    w.register(id, venue, symbol).unwrap();
    id
}

pub(super) fn assert_accounted(s: &WriterStats) {
    let w = &s.writer;
    assert_eq!(s.producer.sent.get(), w.received.get());
    assert_eq!(
        w.received.get(),
        w.rows_written.get() + w.dropped_io.get() + w.dropped_unknown.get()
    );
}
