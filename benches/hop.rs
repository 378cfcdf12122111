//! The collector → consumer hop, measured as delivery: producer threads push N envelopes (the
//! real 150-byte `Envelope` with a 76-byte trade frame inline) and the clock stops when a consumer
//! thread has received all N. Transports: std `sync_channel`, crossbeam bounded channel,
//! crossbeam-queue `ArrayQueue` (consumer polls, producers spin-yield on full), and a direct call
//! (no thread hop: what the hop costs against doing the work in place). 1 and 3 producers;
//! capacity 4096 frames everywhere. `base` is the harness with nothing sent.
//!
//! On 2 cores, 3 producers + 1 consumer oversubscribe the machine: that is the point of the
//! 3-producer case (fairness and contention), not peak throughput.

// A benchmark states its preconditions with expect: a failed one is the report.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;

use mdrelay::market::event::{Side, Trade};
use mdrelay::queue::Envelope;
use mdrelay::wire::protocol::{encode_trade, FrameBuf, Meta};

const N: u64 = 200_000;
const CAP: usize = 4096;

fn envelope() -> Envelope {
    let mut frame = FrameBuf::new();
    encode_trade(
        &mut frame,
        &Meta {
            instrument_id: 7,
            sequence: 1,
            recv_ts_ns: 1,
            flags: 0,
        },
        &Trade {
            price: 268_380_000_000,
            size: 200_000,
            side: Side::Sell,
            trade_id: Some(1),
            exchange_ts_ns: Some(1),
        },
    );
    assert!(!frame.spilled(), "a trade frame travels inline");
    Envelope {
        frame,
        t_recv_ns: 1,
        t_enqueue_ns: 1,
    }
}

/// What the consumer does with each envelope: touch it so delivery cannot be optimized away.
#[inline]
fn consume(e: &Envelope, acc: &mut u64) {
    *acc = acc.wrapping_add(e.frame[20] as u64 + e.t_recv_ns);
}

fn split(n: u64, producers: u64) -> Vec<u64> {
    (0..producers)
        .map(|i| n / producers + u64::from(i < n % producers))
        .collect()
}

fn run_std(producers: u64) -> Duration {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Envelope>(CAP);
    let start = Instant::now();
    let hs: Vec<_> = split(N, producers)
        .into_iter()
        .map(|n| {
            let tx = tx.clone();
            thread::spawn(move || (0..n).for_each(|_| tx.send(envelope()).expect("consumer alive")))
        })
        .collect();
    drop(tx);
    let mut acc = 0;
    let mut got = 0;
    while let Ok(e) = rx.recv() {
        consume(&e, &mut acc);
        got += 1;
    }
    let t = start.elapsed();
    hs.into_iter().for_each(|h| h.join().expect("producer"));
    assert_eq!(got, N);
    black_box(acc);
    t
}

fn run_crossbeam(producers: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<Envelope>(CAP);
    let start = Instant::now();
    let hs: Vec<_> = split(N, producers)
        .into_iter()
        .map(|n| {
            let tx = tx.clone();
            thread::spawn(move || (0..n).for_each(|_| tx.send(envelope()).expect("consumer alive")))
        })
        .collect();
    drop(tx);
    let mut acc = 0;
    let mut got = 0;
    while let Ok(e) = rx.recv() {
        consume(&e, &mut acc);
        got += 1;
    }
    let t = start.elapsed();
    hs.into_iter().for_each(|h| h.join().expect("producer"));
    assert_eq!(got, N);
    black_box(acc);
    t
}

fn run_ring(producers: u64) -> Duration {
    let q = Arc::new(ArrayQueue::<Envelope>::new(CAP));
    let start = Instant::now();
    let hs: Vec<_> = split(N, producers)
        .into_iter()
        .map(|n| {
            let q = q.clone();
            thread::spawn(move || {
                for _ in 0..n {
                    let mut e = envelope();
                    let mut spins = 0u32;
                    while let Err(back) = q.push(e) {
                        e = back;
                        spins += 1;
                        if spins % 64 == 0 {
                            thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                }
            })
        })
        .collect();
    let mut acc = 0;
    let mut got = 0;
    let mut idle = 0u32;
    while got < N {
        match q.pop() {
            Some(e) => {
                consume(&e, &mut acc);
                got += 1;
                idle = 0;
            }
            None => {
                idle += 1;
                if idle % 64 == 0 {
                    thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }
    let t = start.elapsed();
    hs.into_iter().for_each(|h| h.join().expect("producer"));
    black_box(acc);
    t
}

fn run_direct() -> Duration {
    let start = Instant::now();
    let mut acc = 0;
    for _ in 0..N {
        let e = black_box(envelope());
        consume(&e, &mut acc);
    }
    black_box(acc);
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("hop");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    g.bench_function("base", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let s = Instant::now();
                    black_box(N);
                    s.elapsed()
                })
                .sum()
        })
    });
    g.bench_function("direct_call/1", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_direct()).sum())
    });
    for p in [1, 3] {
        g.bench_function(format!("std_sync_channel/{p}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_std(p)).sum())
        });
        g.bench_function(format!("crossbeam_bounded/{p}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_crossbeam(p)).sum())
        });
        g.bench_function(format!("array_queue/{p}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_ring(p)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
