//! Queues that never lie: for both transports and every backpressure policy, several producers
//! push into tiny queues through the real consumer and relay to a subscriber, and the counts are
//! exact: per instrument, events produced = events delivered + events reported `dropped`;
//! sequences only increase; every gap is covered by `dropped` reports; conflation delivers the
//! latest quote; trades are never conflated or lost under `conflate`.

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use mdrelay::config::IdleStrategy;
use mdrelay::market::event::{Event, Quote, Side, StatusCode, Trade};
use mdrelay::queue::{Backpressure, QueueSpec, Transport};
use mdrelay::wire::protocol::Message;

use crate::util::{self, Pipeline};

const PRODUCERS: usize = 3;
const EVENTS: u64 = 20_000;
const SYMBOLS: [&str; 2] = ["AAAUSDT", "BBBUSDT"];

/// Event `k` (1-based) of a producer: every third is a trade, the rest quotes; prices encode
/// (producer, k) so a delivered frame can be checked against what was produced.
fn event(producer: usize, k: u64) -> Event<'static> {
    let price = (producer as i64 + 1) * 1_000_000_000 + k as i64;
    if k % 3 == 0 {
        Event::Trade(Trade {
            price,
            size: 1,
            side: Side::Buy,
            trade_id: Some(k),
            exchange_ts_ns: None,
        })
    } else {
        Event::Quote(Quote {
            bid_price: price,
            bid_size: 1,
            ask_price: price + 1,
            ask_size: 1,
            exchange_ts_ns: None,
        })
    }
}

#[derive(Default, Debug)]
struct PerInstrument {
    delivered: u64,
    delivered_trades: u64,
    last_seq: u64,
    gaps: u64,
    reported_dropped: u64,
    last_delivered_quote_price: i64,
}

fn run(transport: Transport, policy: Backpressure) {
    let specs: Vec<QueueSpec> = (0..PRODUCERS)
        .map(|i| QueueSpec {
            name: format!("p{i}"),
            transport,
            capacity_frames: 16,
            policy,
            // Conflate: a long block so trades can only arrive — proving they are never conflated.
            block_timeout: if policy == Backpressure::Conflate {
                Duration::from_secs(30)
            } else {
                Duration::from_micros(200)
            },
        })
        .collect();
    let (pipe, publishers, stats) = Pipeline::new(
        &specs,
        IdleStrategy::Backoff {
            spin_iterations: 100,
            yield_iterations: 10,
            park_max: Duration::from_micros(200),
        },
    );
    let mut client = pipe.subscribe();
    let reader = thread::spawn(move || {
        // (venue:symbol of the producer's feed is shared, so key by instrument id)
        let mut seen: BTreeMap<u32, PerInstrument> = BTreeMap::new();
        while let Some(rx) = client.next_frame().expect("clean stream") {
            let h = rx.frame.header;
            let e = seen.entry(h.instrument_id).or_default();
            match rx.frame.message().unwrap() {
                Message::Trade(_) | Message::Quote(_) => {
                    assert!(
                        h.sequence > e.last_seq,
                        "order preserved: {} after {}",
                        h.sequence,
                        e.last_seq
                    );
                    e.gaps += h.sequence - e.last_seq - 1;
                    e.last_seq = h.sequence;
                    e.delivered += 1;
                    match rx.frame.message().unwrap() {
                        Message::Trade(_) => e.delivered_trades += 1,
                        Message::Quote(q) => e.last_delivered_quote_price = q.bid_price,
                        _ => {}
                    }
                }
                Message::Status { status, .. } if status.code == StatusCode::Dropped => {
                    e.reported_dropped += status.count;
                }
                _ => {}
            }
        }
        seen
    });

    // Each producer interleaves two symbols; symbols are shared names but each producer's
    // instruments get the same ids — so give each producer its own symbols.
    let handles: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(p, mut publisher)| {
            thread::spawn(move || {
                let mut produced: BTreeMap<String, (u64, u64, i64)> = BTreeMap::new();
                for k in 1..=EVENTS {
                    let sym = format!("{}{p}", SYMBOLS[(k % 2) as usize]);
                    let ev = event(p, k);
                    let e = produced.entry(sym.clone()).or_default();
                    e.0 += 1;
                    match ev {
                        Event::Trade(_) => e.1 += 1,
                        Event::Quote(q) => e.2 = q.bid_price,
                        _ => {}
                    }
                    publisher.on_event(Some(&sym), &ev, 1, 1);
                }
                publisher.finish();
                produced
            })
        })
        .collect();
    let mut produced: BTreeMap<u32, (u64, u64, i64)> = BTreeMap::new();
    for h in handles {
        for (sym, v) in h.join().unwrap() {
            produced.insert(
                mdrelay::market::instrument::instrument_id("binance", &sym),
                v,
            );
        }
    }
    pipe.shutdown();
    let seen = reader.join().unwrap();

    let label = format!("{transport:?}/{policy:?}");
    assert_eq!(produced.len(), PRODUCERS * SYMBOLS.len(), "{label}");
    let mut total_dropped = 0;
    for (id, (n, trades, last_quote)) in &produced {
        let s = seen
            .get(id)
            .unwrap_or_else(|| panic!("{label}: nothing delivered for {id}"));
        assert!(
            s.last_seq <= *n,
            "{label}: no sequence beyond what was produced"
        );
        assert_eq!(
            s.delivered + s.reported_dropped,
            *n,
            "{label} {id}: produced = delivered + reported dropped ({s:?})"
        );
        assert_eq!(
            s.gaps + (n - s.last_seq),
            s.reported_dropped,
            "{label} {id}: gaps are exactly the reported drops"
        );
        if policy == Backpressure::Conflate {
            assert_eq!(
                s.delivered_trades, *trades,
                "{label}: trades are never conflated or lost"
            );
            assert_eq!(
                s.last_delivered_quote_price, *last_quote,
                "{label}: the latest quote is delivered"
            );
        }
        total_dropped += s.reported_dropped;
    }
    let counted: u64 = stats.iter().map(|s| s.collector.dropped_events.get()).sum();
    let refused: u64 = stats.iter().map(|s| s.consumer.refused_events.get()).sum();
    assert_eq!(
        counted + refused,
        total_dropped,
        "{label}: every event lost in the collector or refused by the consumer was reported in-band"
    );
    let events: u64 = stats.iter().map(|s| s.collector.events.get()).sum();
    let relayed: u64 = stats.iter().map(|s| s.consumer.relayed_events.get()).sum();
    assert_eq!(
        events,
        relayed + counted + refused,
        "{label}: collector and consumer counters balance"
    );
    eprintln!(
        "{label}: produced {events}, delivered {relayed}, dropped {counted}, refused {refused}"
    );
}

#[test]
fn channel_block() {
    let _wd = util::Watchdog::new("channel_block", 120);
    run(Transport::Channel, Backpressure::Block);
}

#[test]
fn channel_drop_newest() {
    let _wd = util::Watchdog::new("channel_drop_newest", 120);
    run(Transport::Channel, Backpressure::DropNewest);
}

#[test]
fn channel_conflate() {
    let _wd = util::Watchdog::new("channel_conflate", 120);
    run(Transport::Channel, Backpressure::Conflate);
}

#[test]
fn ring_block() {
    let _wd = util::Watchdog::new("ring_block", 120);
    run(Transport::Ring, Backpressure::Block);
}

#[test]
fn ring_drop_newest() {
    let _wd = util::Watchdog::new("ring_drop_newest", 120);
    run(Transport::Ring, Backpressure::DropNewest);
}

#[test]
fn ring_drop_oldest() {
    let _wd = util::Watchdog::new("ring_drop_oldest", 120);
    run(Transport::Ring, Backpressure::DropOldest);
}

#[test]
fn ring_conflate() {
    let _wd = util::Watchdog::new("ring_conflate", 120);
    run(Transport::Ring, Backpressure::Conflate);
}

/// A consumer that does not run at all, queues full, `block` policy: the producer never waits
/// longer than its block timeout per frame, so stopping cannot deadlock; once the consumer runs
/// it drains what was queued and exits.
#[test]
fn stalled_consumer_with_block_does_not_deadlock_shutdown() {
    let _wd = util::Watchdog::new("stalled_consumer", 60);
    use mdrelay::consumer::thread::{Consumer, FeedInput, Inputs, Outputs, Published, RelaySide};
    use mdrelay::queue::{bounded, Waker};
    use std::sync::Arc;
    let waker = Arc::new(Waker::default());
    let spec = QueueSpec {
        name: "stalled".into(),
        transport: Transport::Channel,
        capacity_frames: 8,
        policy: Backpressure::Block,
        block_timeout: Duration::from_millis(20),
    };
    let (p, rx) = bounded(&spec, waker.clone());
    let stats = Arc::new(mdrelay::base::stats::FeedStats::default());
    let mut publisher = mdrelay::feed::publisher::Publisher::new(
        mdrelay::market::instrument::Venue::Binance,
        p,
        stats.clone(),
    );
    let producer = thread::spawn(move || {
        let start = std::time::Instant::now();
        for k in 1..=50 {
            publisher.on_event(Some("X"), &event(0, k), 1, 1);
        }
        publisher.finish();
        start.elapsed()
    });
    let elapsed = producer.join().unwrap();
    assert!(
        elapsed < Duration::from_secs(20),
        "bounded by block timeouts: {elapsed:?}"
    );
    let c = &stats.collector;
    assert_eq!(c.events.get(), 50);
    assert_eq!(
        c.dropped_events.get(),
        50 - 7,
        "def + 7 events fit in 8 slots"
    );

    let (_dir, sock) = util::temp_socket();
    let relay_cfg = mdrelay::config::RelayConfig {
        socket_path: sock,
        socket_mode: 0o600,
        max_subscribers: 1,
        max_pending_bytes: 1 << 20,
        heartbeat_interval: Duration::from_millis(100),
        drain_timeout: Duration::from_millis(100),
        hello_timeout: Duration::ZERO,
        allowed_uids: Vec::new(),
    };
    let stop = Arc::new(mdrelay::base::stats::StopFlag::default());
    stop.stop();
    let (_tx, sub_rx) = crossbeam_channel::bounded(1);
    let consumer = Consumer::new(
        mdrelay::config::ConsumerConfig {
            idle: IdleStrategy::Park,
            batch_frames: 4,
            coalesce: mdrelay::config::CoalesceConfig::DEFAULT,
            publish_interval: mdrelay::consumer::thread::PUBLISH_INTERVAL,
        },
        Inputs {
            feeds: vec![FeedInput {
                name: "stalled".into(),
                rx,
                stats: stats.clone(),
            }],
            waker,
            stop,
        },
        RelaySide {
            config: &relay_cfg,
            counters: Arc::default(),
            admissions: sub_rx,
        },
        Outputs {
            published: Arc::new(mdrelay::base::publication::Publication::new(
                Published::new(1),
            )),
            analytics: mdrelay::consumer::analytics::Analytics::relay_only(1),
        },
    );
    let h = thread::spawn(move || consumer.run());
    h.join().unwrap();
    assert_eq!(stats.consumer.relayed_events.get(), 7);
    assert_eq!(
        c.events.get(),
        stats.consumer.relayed_events.get() + c.dropped_events.get()
    );
}
