//! The relay keeps its documented promises (docs/PROTOCOL.md §1, §6.5, §7.4) — regression tests
//! for the defects of issue 17 (3: `too_slow` never delivered; 4: the join snapshot counted as
//! lag; 5: the hello window changed request semantics, half-closed clients dropped) and for
//! adaptive coalescing (a lone frame is written in the turn it is taken). Driven through the real
//! publisher, queue, consumer, acceptor and socket ([`Pipeline`]); no timing assertions.

use std::net::Shutdown;
use std::time::Duration;

use mdrelay::config::{CoalesceConfig, IdleStrategy};
use mdrelay::feed::publisher::Publisher;
use mdrelay::market::event::{BookUpdate, Event, Level, Side, StatusCode, Trade};
use mdrelay::queue::{Backpressure, QueueSpec, Transport};
use mdrelay::relay::client::RelayClient;
use mdrelay::wire::protocol::{flags, Message, MsgType};
use mdrelay::wire::subscription::{kinds, Filter};

use crate::util::{self, Pipeline, PipelineOptions};

/// The smallest `relay.max_pending_bytes` the configuration allows.
const SMALLEST_LIMIT: usize = 65_536;

fn spec() -> Vec<QueueSpec> {
    vec![QueueSpec {
        name: "feed".into(),
        transport: Transport::Channel,
        capacity_frames: 4096,
        policy: Backpressure::Block,
        block_timeout: Duration::from_secs(30),
    }]
}

fn trade(k: u64) -> Event<'static> {
    Event::Trade(Trade {
        price: 1_000_000_000 + k as i64,
        size: 1,
        side: Side::Buy,
        trade_id: Some(k),
        exchange_ts_ns: None,
    })
}

/// One venue message with one trade of `symbol`.
fn publish_trade(p: &mut Publisher, symbol: &str, k: u64) {
    p.on_event(Some(symbol), &trade(k), 1, 1);
    p.end_message();
}

fn filter(symbol: &str) -> Filter {
    Filter {
        venue: "binance".into(),
        symbol: symbol.into(),
        kinds: kinds::ALL,
        lossy: false,
    }
}

/// One frame as the tests compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    msg_type: u8,
    cached: bool,
    /// Code and count of a relay status (venue `mdrelay`).
    relay_status: Option<(StatusCode, u64)>,
}

/// Every frame until the relay closes the connection at a frame boundary (anything else fails).
fn read_to_end(c: &mut RelayClient) -> Vec<Got> {
    let mut out = Vec::new();
    while let Some(rx) = c
        .next_frame()
        .expect("a clean stream, ended at a frame boundary")
    {
        let relay_status = match rx.frame.message() {
            Ok(Message::Status {
                venue: "mdrelay",
                status,
            }) => Some((status.code, status.count)),
            _ => None,
        };
        out.push(Got {
            msg_type: rx.frame.header.msg_type,
            cached: rx.frame.header.flags & flags::CACHED != 0,
            relay_status,
        });
    }
    out
}

/// The answers to requests (`request_ok` / `request_error`) in stream order.
fn answers(frames: &[Got]) -> Vec<(StatusCode, u64)> {
    frames
        .iter()
        .filter_map(|g| g.relay_status)
        .filter(|(c, _)| matches!(c, StatusCode::RequestOk | StatusCode::RequestError))
        .collect()
}

fn count(frames: &[Got], t: MsgType) -> usize {
    frames.iter().filter(|g| g.msg_type == t as u8).count()
}

/// Ends the pipeline after its publishers: every subscriber then reads to a clean EOF.
fn finish(pipe: Pipeline, publishers: Vec<Publisher>) {
    for mut p in publishers {
        p.finish();
    }
    pipe.shutdown();
}

#[test]
fn defect3_too_slow_status_reaches_a_subscriber_that_never_reads() {
    let _wd = util::Watchdog::new("defect3_too_slow", 120);
    let (pipe, mut publishers, _) = Pipeline::sized(&spec(), IdleStrategy::Park, 4, SMALLEST_LIMIT);
    let mut slow = pipe.subscribe();
    // It does not read while frames flow, until the relay gives up on it.
    let p = &mut publishers[0];
    let mut k = 0;
    while pipe.relay_counters.slow_disconnects.get() == 0 {
        for _ in 0..1000 {
            k += 1;
            publish_trade(p, "AAAUSDT", k);
        }
        assert!(k < 10_000_000, "never closed as too slow");
    }
    // Now it reads: what the kernel held, the rest of the frame being written, the status, EOF.
    let frames = read_to_end(&mut slow);
    let last = frames.last().expect("frames");
    assert_eq!(
        last.relay_status.map(|(c, _)| c),
        Some(StatusCode::TooSlow),
        "the stream ends with too_slow (after {} frames)",
        frames.len()
    );
    let discarded = last.relay_status.map_or(0, |(_, n)| n);
    assert!(discarded > 0, "its backlog was discarded to make room");
    assert_eq!(pipe.relay_counters.slow_disconnects.get(), 1);
    assert_eq!(pipe.relay_counters.too_slow_unsent.get(), 0);
    finish(pipe, publishers);
}

#[test]
fn defect4_join_snapshot_does_not_count_as_lag_at_the_smallest_limit() {
    let _wd = util::Watchdog::new("defect4_join_snapshot", 120);
    let (pipe, mut publishers, stats) =
        Pipeline::sized(&spec(), IdleStrategy::Park, 4, SMALLEST_LIMIT);
    // 64 deep books: a join snapshot of about 2 MiB, 32 times the limit.
    let bids: Vec<Level> = (0..1000)
        .map(|i| Level {
            price: 1_000_000 - i,
            size: 5,
        })
        .collect();
    let asks: Vec<Level> = (0..1000)
        .map(|i| Level {
            price: 1_000_001 + i,
            size: 5,
        })
        .collect();
    let symbols: Vec<String> = (0..64).map(|i| format!("B{i:02}USDT")).collect();
    let p = &mut publishers[0];
    for s in &symbols {
        let book = Event::Book(BookUpdate {
            snapshot: true,
            bids: &bids,
            asks: &asks,
            venue_sequence: Some(1),
            exchange_ts_ns: None,
            may_be_bad: false,
        });
        p.on_event(Some(s), &book, 1, 1);
        p.end_message();
    }
    // Definitions and books relayed (to nobody): the cache holds them.
    assert!(util::wait_until(Duration::from_secs(30), || stats[0]
        .consumer
        .relayed
        .get()
        >= 128));
    const LIVE: usize = 200;
    let mut k = 0;
    for round in 0..3 {
        let mut joiner = pipe.subscribe();
        // Live frames in the same turns as the snapshot: far less than the limit in all, so
        // only the snapshot could push this reading joiner over it.
        for _ in 0..LIVE {
            k += 1;
            publish_trade(p, "AAAUSDT", k);
        }
        let (mut books, mut live) = (0, 0);
        while live < LIVE {
            let rx = joiner.next_frame().expect("stream").expect("not closed");
            let h = rx.frame.header;
            if let Ok(Message::Status { status, .. }) = rx.frame.message() {
                assert_ne!(status.code, StatusCode::TooSlow, "round {round}");
            }
            match MsgType::from_code(h.msg_type) {
                Some(MsgType::BookSnapshot) if h.flags & flags::CACHED != 0 => books += 1,
                Some(MsgType::Trade) if h.flags & flags::CACHED == 0 => live += 1,
                _ => {}
            }
        }
        assert_eq!(books, symbols.len(), "round {round}: every cached book");
        assert_eq!(
            pipe.relay_counters.slow_disconnects.get(),
            0,
            "round {round}"
        );
    }
    finish(pipe, publishers);
}

/// A pipeline with a long hello window (requests sent right after connecting are inside it),
/// one instrument defined and traded, and a raw client that sent `requests`.
fn hello_pipeline() -> (Pipeline, Vec<Publisher>) {
    let (pipe, mut publishers, stats) = Pipeline::with_options(
        &spec(),
        PipelineOptions {
            hello_timeout: Duration::from_millis(500),
            ..PipelineOptions::default()
        },
    );
    publish_trade(&mut publishers[0], "AAAUSDT", 1);
    assert!(util::wait_until(Duration::from_secs(30), || stats[0]
        .consumer
        .relayed
        .get()
        >= 2));
    (pipe, publishers)
}

/// Connects, sends `requests` (subscribe: true) at once, and waits until it is admitted.
fn hello_client(pipe: &Pipeline, requests: &[(bool, Filter)]) -> RelayClient {
    hello_client_then(pipe, requests, false)
}

/// [`hello_client`], shutting its writing side right after the requests when `half_close`.
fn hello_client_then(
    pipe: &Pipeline,
    requests: &[(bool, Filter)],
    half_close: bool,
) -> RelayClient {
    let before = pipe.relay_counters.accepted.get();
    let c = RelayClient::connect(&pipe.socket).unwrap();
    for (sub, f) in requests {
        if *sub {
            c.subscribe(f).unwrap();
        } else {
            c.unsubscribe(f).unwrap();
        }
    }
    if half_close {
        c.stream().shutdown(Shutdown::Write).unwrap();
    }
    assert!(util::wait_until(Duration::from_secs(30), || pipe
        .relay_counters
        .accepted
        .get()
        > before));
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c
}

#[test]
fn defect5_subscribe_then_unsubscribe_in_the_hello_window_gets_two_answers_and_nothing() {
    let _wd = util::Watchdog::new("defect5_sub_unsub", 120);
    let (pipe, mut publishers) = hello_pipeline();
    let f = filter("AAAUSDT");
    let mut c = hello_client(&pipe, &[(true, f.clone()), (false, f)]);
    publish_trade(&mut publishers[0], "AAAUSDT", 2);
    finish(pipe, publishers);
    let frames = read_to_end(&mut c);
    assert_eq!(
        answers(&frames),
        [(StatusCode::RequestOk, 1), (StatusCode::RequestOk, 0)],
        "{frames:?}"
    );
    // No subscription left: no definition, no trade, cached or live.
    assert_eq!(count(&frames, MsgType::InstrumentDef), 0, "{frames:?}");
    assert_eq!(count(&frames, MsgType::Trade), 0, "{frames:?}");
}

#[test]
fn defect5_duplicate_subscribe_in_the_hello_window_gets_two_answers() {
    let _wd = util::Watchdog::new("defect5_duplicate", 120);
    let (pipe, mut publishers) = hello_pipeline();
    let f = filter("AAAUSDT");
    let mut c = hello_client(&pipe, &[(true, f.clone()), (true, f)]);
    publish_trade(&mut publishers[0], "AAAUSDT", 2);
    finish(pipe, publishers);
    let frames = read_to_end(&mut c);
    assert_eq!(
        answers(&frames),
        [(StatusCode::RequestOk, 1), (StatusCode::RequestOk, 1)]
    );
    // Answers first, then the selected snapshot (definition, cached trade), then live, once.
    assert!(frames[..2].iter().all(|g| g.relay_status.is_some()));
    assert_eq!(frames[2].msg_type, MsgType::InstrumentDef as u8);
    let trades: Vec<bool> = frames
        .iter()
        .filter(|g| g.msg_type == MsgType::Trade as u8)
        .map(|g| g.cached)
        .collect();
    assert_eq!(trades, [true, false]);
}

#[test]
fn defect5_request_error_never_overtakes_an_earlier_request_ok() {
    let _wd = util::Watchdog::new("defect5_order", 120);
    let (pipe, publishers) = hello_pipeline();
    let mut c = hello_client(
        &pipe,
        &[
            (true, filter("AAAUSDT")),
            (false, filter("NOTHELD")),
            (true, filter("BBBUSDT")),
        ],
    );
    finish(pipe, publishers);
    let frames = read_to_end(&mut c);
    assert_eq!(
        answers(&frames),
        [
            (StatusCode::RequestOk, 1),
            (StatusCode::RequestError, 0),
            (StatusCode::RequestOk, 2)
        ]
    );
}

#[test]
fn defect5_half_closed_in_the_hello_window_gets_its_stream_and_is_counted() {
    let _wd = util::Watchdog::new("defect5_half_closed_hello", 120);
    let (pipe, mut publishers) = hello_pipeline();
    // Half-closed inside its (500 ms) hello window: the window ends with the EOF, the connection
    // is admitted (hello_client_then waits for that) and counted.
    let mut c = hello_client_then(&pipe, &[(true, filter("AAAUSDT"))], true);
    assert!(util::wait_until(Duration::from_secs(30), || pipe
        .accept_counters
        .half_closed
        .get()
        == 1));
    publish_trade(&mut publishers[0], "AAAUSDT", 2);
    finish(pipe, publishers);
    let frames = read_to_end(&mut c);
    assert_eq!(answers(&frames), [(StatusCode::RequestOk, 1)]);
    let trades: Vec<bool> = frames
        .iter()
        .filter(|g| g.msg_type == MsgType::Trade as u8)
        .map(|g| g.cached)
        .collect();
    assert_eq!(trades, [true, false], "cached, then live");
}

#[test]
fn half_closed_after_admission_keeps_receiving_and_is_counted() {
    let _wd = util::Watchdog::new("half_closed_later", 120);
    let (pipe, mut publishers, _) = Pipeline::new(&spec(), IdleStrategy::Park);
    let mut c = pipe.subscribe();
    c.stream().shutdown(Shutdown::Write).unwrap();
    assert!(util::wait_until(Duration::from_secs(30), || pipe
        .accept_counters
        .half_closed
        .get()
        == 1));
    publish_trade(&mut publishers[0], "AAAUSDT", 1);
    finish(pipe, publishers);
    let frames = read_to_end(&mut c);
    assert_eq!(count(&frames, MsgType::Trade), 1, "{frames:?}");
}

#[test]
fn coalescing_writes_a_lone_frame_in_the_turn_it_is_taken() {
    let _wd = util::Watchdog::new("coalesce_lone_frame", 120);
    // The largest budget: a frame that waited for it would show as a hold.
    let budget = Duration::from_millis(10);
    let (pipe, mut publishers, _) = Pipeline::with_options(
        &spec(),
        PipelineOptions {
            coalesce: CoalesceConfig {
                budget_ns: budget.as_nanos() as u64,
                max_bytes: 1 << 20,
            },
            ..PipelineOptions::default()
        },
    );
    let mut c = pipe.subscribe();
    let next_trade = |c: &mut RelayClient| loop {
        let rx = c.next_frame().unwrap().unwrap();
        if rx.frame.header.msg_type == MsgType::Trade as u8 {
            return;
        }
    };
    publish_trade(&mut publishers[0], "AAAUSDT", 1);
    next_trade(&mut c);
    for k in 2..6 {
        // A quiet feed: the next frame comes more than the budget after the previous one.
        std::thread::sleep(budget * 2);
        let (holds, frames) = (
            pipe.relay_counters.coalesce_holds.get(),
            pipe.relay_counters.frames_written.get(),
        );
        publish_trade(&mut publishers[0], "AAAUSDT", k);
        next_trade(&mut c);
        assert_eq!(
            pipe.relay_counters.coalesce_holds.get(),
            holds,
            "trade {k} was written without a hold"
        );
        // Counted right after the write returns, which may be after the client read it.
        assert!(util::wait_until(Duration::from_secs(30), || pipe
            .relay_counters
            .frames_written
            .get()
            > frames));
    }
    finish(pipe, publishers);
}

#[test]
fn defect5_a_bad_request_in_the_hello_window_is_answered_after_the_requests_before_it() {
    let _wd = util::Watchdog::new("defect5_bad_after_good", 120);
    let (pipe, publishers) = hello_pipeline();
    let before = pipe.relay_counters.accepted.get();
    let mut c = RelayClient::connect(&pipe.socket).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.subscribe(&filter("AAAUSDT")).unwrap();
    // A request with a broken CRC.
    let mut buf = mdrelay::wire::protocol::FrameBuf::new();
    mdrelay::wire::subscription::encode_request(&mut buf, true, &filter("BBBUSDT"));
    let n = buf.len();
    buf[n - 1] ^= 0xff;
    std::io::Write::write_all(&mut c.stream(), &buf).unwrap();
    // Answered in order, then closed: a clean end of stream.
    let frames = read_to_end(&mut c);
    assert_eq!(
        answers(&frames),
        [(StatusCode::RequestOk, 1), (StatusCode::RequestError, 0)],
        "{frames:?}"
    );
    assert_eq!(
        frames.last().and_then(|g| g.relay_status).map(|s| s.0),
        Some(StatusCode::RequestError)
    );
    assert_eq!(pipe.relay_counters.accepted.get(), before + 1);
    assert!(util::wait_until(Duration::from_secs(30), || pipe
        .relay_counters
        .refused_requests
        .get()
        == 1));
    finish(pipe, publishers);
}
