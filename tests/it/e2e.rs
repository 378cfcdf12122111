//! End to end, in process: replay exchange (127.0.0.1:0) → Binance collector → queue → consumer
//! → relay socket → subscriber. Every trade and bookTicker of the bundled capture must arrive
//! exactly once, in order, with exact values.

use std::time::Duration;

use mdrelay::feed::venue::binance::BinanceParser;
use mdrelay::feed::venue::VenueParser;
use mdrelay::market::event::{Event, Quote, Trade};
use mdrelay::wire::protocol::{flags, Message};
use mdrelay::{market::instrument, persist::recording, relay::client::RelayClient, run};

use crate::util;

#[derive(Debug, PartialEq)]
enum Ev {
    Trade(Trade),
    Quote(Quote),
}

/// What the capture holds, through the same parser the collector uses.
fn expected() -> Vec<Ev> {
    let mut p = BinanceParser::default();
    let mut out = Vec::new();
    for r in recording::read_all(&util::binance_capture()).unwrap() {
        let _ = p.parse(&r.raw, 0, &mut |_, ev| match ev {
            Event::Trade(t) => out.push(Ev::Trade(*t)),
            Event::Quote(q) => out.push(Ev::Quote(*q)),
            _ => {}
        });
    }
    out
}

#[test]
fn every_trade_and_quote_of_the_capture_arrives_once_in_order_exactly() {
    let _wd = util::Watchdog::new("e2e", 120);
    let want = expected();
    assert_eq!(want.len(), 6106 + 24077, "capture: trades + bookTickers");

    let exchange = util::binance_exchange(true);
    let (_dir, sock) = util::temp_socket();
    let cfg = util::config(&util::binance_only(&sock, exchange.local_addr()));
    let relay = run::start(cfg).unwrap();
    let mut client = util::subscriber(&sock);
    util::play_when_subscribed(&exchange, 1);

    let id = instrument::instrument_id("binance", "ETHUSDT");
    let mut got = Vec::new();
    let mut saw_def_first = false;
    let mut last_seq = 0;
    while got.len() < want.len() {
        let rx = client.next_frame().unwrap().expect("relay closed early");
        let f = rx.frame;
        match f.message().unwrap() {
            Message::InstrumentDef { venue, symbol, .. } => {
                assert_eq!((venue, symbol), ("binance", "ETHUSDT"));
                assert_eq!(f.header.instrument_id, id);
                saw_def_first = got.is_empty();
            }
            Message::Trade(t) => got.push(Ev::Trade(t)),
            Message::Quote(q) => got.push(Ev::Quote(q)),
            Message::Status { status, .. } => {
                // connected / subscribed are fine; a drop would be a failure of this test.
                assert_ne!(
                    status.code,
                    mdrelay::market::event::StatusCode::Dropped,
                    "{status:?}"
                );
            }
            _ => {}
        }
        if matches!(f.message().unwrap(), Message::Trade(_) | Message::Quote(_)) {
            assert_eq!(f.header.instrument_id, id);
            assert_eq!(f.header.flags & flags::CACHED, 0, "live, not cached");
            assert_eq!(
                f.header.sequence,
                last_seq + 1,
                "per-instrument sequence has no gap"
            );
            last_seq = f.header.sequence;
            assert!(f.header.recv_ts_ns > 0);
        }
    }
    assert!(saw_def_first, "InstrumentDef precedes the first event");
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "event {i}");
    }

    let summary = relay.shutdown();
    // After shutdown the subscriber sees a clean end of stream, nothing more.
    let mut extra = 0;
    while let Some(rx) = client.next_frame().unwrap() {
        if matches!(
            rx.frame.message().unwrap(),
            Message::Trade(_) | Message::Quote(_)
        ) {
            extra += 1;
        }
    }
    assert_eq!(extra, 0, "no duplicates after the capture");
    let feed = &summary.feeds[0];
    assert_eq!(feed.events, want.len() as u64);
    assert_eq!(feed.relayed, want.len() as u64);
    assert_eq!(feed.dropped, 0);
    assert_eq!(feed.parse_errors, 0);
    // One REST snapshot line is in the capture but not on any subscribed stream; acks are control.
    assert_eq!(feed.frames, feed.events + feed.control);
    assert!(summary.balanced());
    assert!(!sock.exists(), "socket removed at shutdown");
    exchange.stop();
}

#[test]
fn late_joiner_gets_definitions_then_cached_latest_then_live() {
    let _wd = util::Watchdog::new("late_joiner", 120);
    let exchange = util::replay_exchange(
        &[(instrument::Venue::Binance, vec![util::binance_capture()])],
        20.0,
        true,
        false,
    );
    let (_dir, sock) = util::temp_socket();
    let cfg = util::config(&util::binance_only(&sock, exchange.local_addr()));
    let relay = run::start(cfg).unwrap();
    assert!(util::wait_until(Duration::from_secs(20), || {
        let c = relay.feed_stats(0).unwrap();
        c.consumer.relayed_events.get() > 100
    }));
    let mut client = RelayClient::connect(&sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // First frame: the definition.
    let first = client.next_frame().unwrap().unwrap();
    assert!(matches!(
        first.frame.message().unwrap(),
        Message::InstrumentDef { .. }
    ));
    // Then cached quote and trade, flagged CACHED, then live frames with higher sequences.
    let mut cached_seqs = Vec::new();
    let mut live_seq = None;
    while live_seq.is_none() {
        let rx = client.next_frame().unwrap().unwrap();
        let h = rx.frame.header;
        match rx.frame.message().unwrap() {
            Message::Trade(_) | Message::Quote(_) => {
                if h.flags & flags::CACHED != 0 {
                    assert!(live_seq.is_none(), "cached frames come before live ones");
                    cached_seqs.push(h.sequence);
                } else {
                    live_seq = Some(h.sequence);
                }
            }
            _ => {}
        }
    }
    assert_eq!(cached_seqs.len(), 2, "latest quote and latest trade");
    let max_cached = *cached_seqs.iter().max().unwrap();
    assert!(
        live_seq.unwrap() > max_cached,
        "live continues after the snapshot"
    );
    let summary = relay.shutdown();
    assert!(summary.balanced());
}

/// The `test` environment overlay (32-frame queues) with `drop_newest` at full replay speed:
/// frames are lost, and the accounting still balances end to end — what the subscriber received plus what
/// was reported `dropped` is exactly what the capture holds.
#[test]
fn tiny_buffers_of_the_test_overlay_still_balance() {
    let _wd = util::Watchdog::new("tiny_buffers", 120);
    let exchange = util::binance_exchange(true);
    let (_dir, sock) = util::temp_socket();
    let cfg = mdrelay::config::load(&mdrelay::config::Sources {
        file: Some(util::repo("config/default.toml")),
        env_name: Some("test".into()),
        sets: [
            util::binance_only(&sock, exchange.local_addr()),
            vec![
                // The subscriber below reads as fast as it can; keep it from being cut as slow.
                "relay.max_pending_bytes=67108864".into(),
                // Refuse at once when full, so the tiny queue really loses frames.
                "feed_defaults.backpressure=\"drop_newest\"".into(),
            ],
        ]
        .concat(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(cfg.feeds[0].queue_capacity_frames, 32);
    let relay = run::start(cfg).unwrap();
    let mut client = util::subscriber(&sock);
    util::play_when_subscribed(&exchange, 1);
    let total = 6106 + 24077;
    let (mut delivered, mut reported, mut last_seq, mut gaps) = (0u64, 0u64, 0u64, 0u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while delivered + reported < total {
        let c = &relay.feed_stats(0).unwrap().collector;
        assert!(
            std::time::Instant::now() < deadline,
            "stuck: delivered {delivered} reported {reported} of {total}; collector events {} \
             dropped_events {} enqueued {} frames {}; relayed {}",
            c.events.get(),
            c.dropped_events.get(),
            c.enqueued.get(),
            c.frames.get(),
            relay.feed_stats(0).unwrap().consumer.relayed_events.get()
        );
        let rx = client.next_frame().unwrap().expect("stream open");
        let h = rx.frame.header;
        match rx.frame.message().unwrap() {
            Message::Trade(_) | Message::Quote(_) => {
                assert!(h.sequence > last_seq);
                gaps += h.sequence - last_seq - 1;
                last_seq = h.sequence;
                delivered += 1;
            }
            Message::Status { status, .. }
                if status.code == mdrelay::market::event::StatusCode::Dropped =>
            {
                reported += status.count;
            }
            _ => {}
        }
    }
    let summary = relay.shutdown();
    while let Some(rx) = client.next_frame().unwrap() {
        if let Message::Status { status, .. } = rx.frame.message().unwrap() {
            if status.code == mdrelay::market::event::StatusCode::Dropped {
                reported += status.count;
            }
        }
    }
    let feed = &summary.feeds[0];
    assert_eq!(
        delivered + reported,
        total,
        "delivered + reported dropped = capture"
    );
    assert_eq!(gaps + (total - last_seq), reported, "every gap reported");
    assert_eq!(feed.relayed, delivered);
    assert_eq!(feed.dropped + feed.refused, reported);
    assert!(summary.balanced(), "{summary}");
    assert!(
        reported > 0,
        "the tiny queue lost frames (else this test proves nothing)"
    );
    eprintln!("test overlay: delivered {delivered}, dropped {reported}");
    exchange.stop();
}

/// `/metrics` of a running relay is valid Prometheus text (every sample line parses, each family
/// has one TYPE line before its samples) and counts what the relay did; `/health` is 200 while
/// the feed is live and 503 once it has been silent past `stale_after_ms`.
#[test]
fn metrics_parse_and_health_turns_503_when_the_feed_goes_stale() {
    let _wd = util::Watchdog::new("metrics_health", 120);
    let exchange = util::binance_exchange(false);
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.push("feeds.binance.stale_after_ms=1500".into());
    let relay = run::start(util::config(&sets)).unwrap();
    let addr = relay.http_addr().expect("http enabled by default");
    assert!(util::wait_until(Duration::from_secs(30), || {
        relay.feed_stats(0).unwrap().consumer.relayed_events.get() == 30_183
    }));
    let (status, body) = util::http_get(addr, "/metrics");
    assert_eq!(status, 200);
    // Every line parses, each family has its TYPE before its samples, once (and more: see
    // serve::exposition::parse_exposition).
    let samples = mdrelay::serve::exposition::parse_exposition(&body)
        .unwrap_or_else(|e| panic!("{e}\n{body}"))
        .len();
    assert!(samples > 20, "{body}");
    let relayed = body
        .lines()
        .find(|l| {
            l.starts_with("mdrelay_feed_relayed_events_total{") && l.contains("feed=\"binance\"")
        })
        .unwrap_or_else(|| panic!("relayed events counter in:\n{body}"));
    assert!(relayed.ends_with(" 30183"), "{relayed}");
    // Per-feed stage histograms (published every 500 ms): every relayed frame (events,
    // definitions, status) is in queue wait; only the frames read from a venue message — here
    // the 30 183 events — in parse+encode (definitions and feed status have no read time).
    // (Read together each time: a `stale` status relayed meanwhile adds a frame to queue wait.)
    assert!(util::wait_until(Duration::from_secs(20), || {
        let frames = relay.feed_stats(0).unwrap().consumer.relayed.get();
        let b = util::http_get(addr, "/metrics").1;
        [
            ("mdrelay_parse_encode_seconds_count{", 30_183),
            ("mdrelay_queue_wait_seconds_count{", frames),
        ]
        .iter()
        .all(|(m, n)| {
            b.lines().any(|l| {
                l.starts_with(m) && l.contains("feed=\"binance\"") && l.ends_with(&format!(" {n}"))
            })
        })
    }));

    // The capture is over and the exchange stays silent: stale after 1.5 s.
    assert!(util::wait_until(
        Duration::from_secs(20),
        || util::http_get(addr, "/health").0 == 503
    ));
    let (_, health) = util::http_get(addr, "/health");
    assert!(health.contains("\"stale\":true"), "{health}");
    let summary = relay.shutdown();
    assert!(summary.balanced());
    exchange.stop();
}
