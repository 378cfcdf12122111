//! The derivatives kinds (Mark, Liquidation, OpenInterest; docs/PROTOCOL.md §4.8) end to end
//! from the collector's publisher through the queue, the consumer and the relay socket: live
//! subscribers get them in order without a market-data sequence gap, a late joiner gets the
//! latest mark and open interest (CACHED) and no liquidation, and a `mark` subscription selects
//! marks only. Events are injected at the publisher: the futures parsers are another change.

use std::time::Duration;

use mdrelay::config::IdleStrategy;
use mdrelay::market::event::{Event, Liquidation, LiquidationStatus, Mark, OpenInterest, Side};
use mdrelay::market::event::{Quote, Trade};
use mdrelay::market::fixed::ABSENT;
use mdrelay::queue::{Backpressure, QueueSpec, Transport};
use mdrelay::relay::client::RelayClient;
use mdrelay::wire::protocol::{flags, Message, MsgType};
use mdrelay::wire::subscription::{kinds, Filter};
use MsgType as M;

use crate::util::{self, Pipeline};

fn mark(px: i64) -> Event<'static> {
    Event::Mark(Mark {
        mark_price: px,
        index_price: px - 100,
        settle_price: ABSENT,
        funding_rate: 100_000_000_000_000,
        next_funding_ns: Some(1_723_190_400_000_000_000),
        exchange_ts_ns: Some(1_723_161_600_000_000_000),
    })
}

/// (type, sequence, kind_sequence, cached) of a frame; kind_sequence 0 for other types.
fn summary(c: &mut RelayClient) -> Option<(MsgType, u64, u64, bool)> {
    let rx = c.next_frame().expect("read").expect("stream open");
    let h = rx.frame.header;
    let t = rx.frame.msg_type()?;
    let kseq = match rx.frame.message().expect("decodes") {
        Message::Mark { kind_sequence, .. }
        | Message::Liquidation { kind_sequence, .. }
        | Message::OpenInterest { kind_sequence, .. } => kind_sequence,
        _ => 0,
    };
    Some((t, h.sequence, kseq, h.flags & flags::CACHED != 0))
}

/// Reads frames until `n` of the types in `want` arrived (heartbeats and statuses skipped).
fn read(c: &mut RelayClient, want: &[MsgType], n: usize) -> Vec<(MsgType, u64, u64, bool)> {
    let mut got = Vec::new();
    while got.len() < n {
        if let Some(s) = summary(c) {
            if want.contains(&s.0) {
                got.push(s);
            }
        }
    }
    got
}

#[test]
fn derivatives_reach_live_subscribers_and_late_joiners_get_the_latest_mark() {
    let _wd = util::Watchdog::new("derivatives_e2e", 120);
    let spec = QueueSpec {
        name: "usdm".into(),
        transport: Transport::Channel,
        capacity_frames: 1024,
        policy: Backpressure::Block,
        block_timeout: Duration::from_secs(30),
    };
    let (pipe, mut publishers, _stats) = Pipeline::new(
        &[spec],
        IdleStrategy::Backoff {
            spin_iterations: 100,
            yield_iterations: 10,
            park_max: Duration::from_micros(200),
        },
    );
    let mut live = pipe.subscribe();
    let p = &mut publishers[0];
    let mut send = |ev: &Event<'_>| {
        p.on_event(Some("BTCUSDT"), ev, 1, 1_723_161_600_000_000_001);
        p.end_message();
    };
    send(&Event::Trade(Trade {
        price: 6_000_000_000_000,
        size: 1,
        side: Side::Buy,
        trade_id: Some(1),
        exchange_ts_ns: None,
    }));
    send(&mark(6_000_100_000_000));
    send(&Event::Liquidation(Liquidation {
        side: Side::Sell,
        price: 5_990_000_000_000,
        avg_price: ABSENT,
        size: 2_000_000,
        filled_size: ABSENT,
        status: LiquidationStatus::New,
        exchange_ts_ns: None,
    }));
    send(&Event::OpenInterest(OpenInterest {
        open_interest: 1_000_000_000_000,
        value: ABSENT,
        exchange_ts_ns: None,
    }));
    send(&mark(6_000_200_000_000));
    send(&Event::Quote(Quote {
        bid_price: 6_000_000_000_000,
        bid_size: 1,
        ask_price: 6_000_100_000_000,
        ask_size: 1,
        exchange_ts_ns: None,
    }));

    let all = [M::Trade, M::Quote, M::Mark, M::Liquidation, M::OpenInterest];
    assert_eq!(
        read(&mut live, &all, 6),
        [
            (M::Trade, 1, 0, false),
            (M::Mark, 1, 1, false),
            (M::Liquidation, 1, 1, false),
            (M::OpenInterest, 1, 1, false),
            (M::Mark, 1, 2, false),
            (M::Quote, 2, 0, false),
        ],
        "in order; the market-data sequence goes 1, 2 with no gap; the kinds number themselves"
    );

    // Everything above has been relayed: a late joiner gets the cached state, no liquidation.
    let mut late = pipe.subscribe();
    let mut got = Vec::new();
    loop {
        let s = summary(&mut late);
        match s {
            Some((M::InstrumentDef, ..)) | Some((M::Status | M::Heartbeat, ..)) | None => {}
            Some(s) => got.push(s),
        }
        if got.iter().any(|g| g.0 == M::OpenInterest) {
            break;
        }
    }
    assert_eq!(
        got,
        [
            (M::Quote, 2, 0, true),
            (M::Trade, 1, 0, true),
            (M::Mark, 1, 2, true),
            (M::OpenInterest, 1, 1, true),
        ]
    );

    // A subscription to marks only. (Its join snapshot depends on whether the request beat
    // the admission, PROTOCOL.md §6.5; the cache's unit tests cover the selected snapshot.)
    let mut marks = RelayClient::connect_filtered(
        &pipe.socket,
        &[Filter {
            kinds: kinds::MARK,
            ..Filter::all()
        }],
    )
    .expect("connect");
    marks
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    loop {
        let rx = marks.next_frame().expect("read").expect("stream open");
        if let Ok(Message::Status { status, .. }) = rx.frame.message() {
            if status.code == mdrelay::market::event::StatusCode::RequestOk {
                break;
            }
        }
    }
    let p = &mut publishers[0];
    p.on_event(Some("BTCUSDT"), &mark(6_000_300_000_000), 1, 2);
    p.end_message();
    p.on_event(
        Some("BTCUSDT"),
        &Event::OpenInterest(OpenInterest {
            open_interest: 2,
            value: ABSENT,
            exchange_ts_ns: None,
        }),
        1,
        3,
    );
    p.end_message();
    p.on_event(Some("BTCUSDT"), &mark(6_000_400_000_000), 1, 4);
    p.end_message();
    let mut live_frames = Vec::new();
    while live_frames.len() < 2 {
        let f = read(&mut marks, &all, 1)[0];
        if !f.3 {
            live_frames.push(f);
        }
    }
    assert_eq!(
        live_frames,
        [(M::Mark, 2, 3, false), (M::Mark, 2, 4, false)],
        "the open interest between them is not selected"
    );
    drop(publishers);
    pipe.shutdown();
}
