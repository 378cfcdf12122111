//! Fan-out: frames per second from the consumer to 1, 10 and 100 subscribers over the real Unix
//! socket, and the p99 latency a fast subscriber sees with and without a slow one attached.
//!
//! The pipeline is the relay's own (publisher → bounded channel → consumer → relay socket →
//! `RelayClient`), driven directly by a publisher thread, no WebSocket: what is measured is the
//! fan-out. Run: `cargo bench --bench fanout` (part of `make bench`); prints a markdown table.

// A benchmark states its expectations with unwrap/expect: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/util/mod.rs"]
mod util;

use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mdrelay::base::clock;
use mdrelay::config::IdleStrategy;
use mdrelay::market::event::{Event, Side, Trade};
use mdrelay::queue::{Backpressure, QueueSpec, Transport};
use mdrelay::wire::protocol::MsgType;

fn spec() -> QueueSpec {
    QueueSpec {
        name: "bench".into(),
        transport: Transport::Channel,
        capacity_frames: 65_536,
        policy: Backpressure::Block,
        block_timeout: Duration::from_secs(60),
    }
}

fn trade(i: u64) -> Event<'static> {
    Event::Trade(Trade {
        price: 268_380_000_000 + (i % 100) as i64,
        size: 200_000,
        side: Side::Sell,
        trade_id: Some(i + 1),
        exchange_ts_ns: Some(1_723_161_255_611_000_000),
    })
}

/// Publishes `n` trades as fast as the queue takes them; returns frames/s per subscriber and in
/// total (time from the first publish to the last subscriber's last trade).
fn throughput(subscribers: usize, n: u64) -> (f64, f64) {
    let (pipe, mut publishers, _stats) =
        util::Pipeline::sized(&[spec()], IdleStrategy::Yield, subscribers + 1, 1 << 30);
    let readers: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut c = pipe.subscribe();
            thread::spawn(move || {
                let mut got = 0u64;
                while got < n {
                    let rx = c
                        .next_frame()
                        .unwrap()
                        .expect("stream until the last trade");
                    if rx.frame.header.msg_type == MsgType::Trade as u8 {
                        got += 1;
                    }
                }
                Instant::now()
            })
        })
        .collect();
    let mut p = publishers.pop().unwrap();
    let start = Instant::now();
    let publisher = thread::spawn(move || {
        for i in 0..n {
            let t = clock::mono_ns();
            p.on_event(Some("BENCH"), &trade(i), t, clock::wall_ns_at(t));
            p.end_message();
        }
        p.finish();
    });
    let end = readers
        .into_iter()
        .map(|r| r.join().unwrap())
        .max()
        .unwrap();
    publisher.join().unwrap();
    pipe.shutdown();
    let secs = end.duration_since(start).as_secs_f64();
    (n as f64 / secs, n as f64 * subscribers as f64 / secs)
}

/// Trades at `rate`/s for `secs`; returns the fast subscriber's p50/p99/p99.9 of
/// (wall clock at read − the frame's receive time), µs, with `slow` subscribers attached that
/// never read (their buffers grow within the limit, so they stay connected).
fn latency_with_slow(rate: u64, secs: u64, slow: usize) -> (f64, f64, f64) {
    let (pipe, mut publishers, _stats) =
        util::Pipeline::sized(&[spec()], IdleStrategy::Yield, 4, 1 << 30);
    let mut fast = pipe.subscribe();
    let _slow: Vec<_> = (0..slow).map(|_| pipe.subscribe()).collect();
    let n = rate * secs;
    let reader = thread::spawn(move || {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        let mut got = 0u64;
        while got < n {
            let rx = fast.next_frame().unwrap().expect("stream");
            if rx.frame.header.msg_type == MsgType::Trade as u8 {
                let lat = clock::wall_ns().saturating_sub(rx.frame.header.recv_ts_ns);
                h.saturating_record(lat.max(1));
                got += 1;
            }
        }
        h
    });
    let mut p = publishers.pop().unwrap();
    let publisher = {
        thread::spawn(move || {
            let start = Instant::now();
            let gap = Duration::from_nanos(1_000_000_000 / rate);
            for i in 0..n {
                let due = start + gap * i as u32;
                while Instant::now() < due {
                    std::hint::spin_loop();
                }
                let t = clock::mono_ns();
                p.on_event(Some("BENCH"), &trade(i), t, clock::wall_ns_at(t));
                p.end_message();
            }
            p.finish();
        })
    };
    let h = reader.join().unwrap();
    publisher.join().unwrap();
    pipe.shutdown();
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    (us(0.5), us(0.99), us(0.999))
}

fn main() {
    // `cargo bench` passes flags such as --bench; this harness takes none.
    clock::init();
    println!("## Fan-out (cargo bench --bench fanout)\n");
    println!("| subscribers | trades each | frames/s per subscriber | frames/s total |");
    println!("|---:|---:|---:|---:|");
    for (subs, n) in [(1usize, 1_000_000u64), (10, 200_000), (100, 20_000)] {
        let (each, total) = throughput(subs, n);
        println!("| {subs} | {n} | {each:.0} | {total:.0} |");
    }
    println!();
    println!("| fast subscriber at 20k trades/s for 3 s | p50 µs | p99 µs | p99.9 µs |");
    println!("|---|---:|---:|---:|");
    for slow in [0usize, 1] {
        let (p50, p99, p999) = latency_with_slow(20_000, 3, slow);
        let what = if slow == 0 {
            "alone"
        } else {
            "with a slow subscriber attached"
        };
        println!("| {what} | {p50:.1} | {p99:.1} | {p999:.1} |");
    }
}
