//! Feeds that recover: a feed that goes silent past `stale_after_ms` is reported `stale`, the
//! collector reconnects, resubscribes, and data flows again.

use std::time::Duration;

use mdrelay::market::event::StatusCode;
use mdrelay::market::instrument::Venue;
use mdrelay::wire::protocol::Message;
use mdrelay::{relay::client::RelayClient, run};

use crate::util;

#[test]
fn a_silent_feed_is_reported_stale_and_reconnects() {
    let _wd = util::Watchdog::new("stale_reconnect", 120);
    // The exchange plays the capture once and then stays connected and silent.
    let exchange = util::replay_exchange(
        &[(Venue::Binance, vec![util::binance_capture()])],
        0.0,
        false,
        false,
    );
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.push("feeds.binance.stale_after_ms=700".into());
    let relay = run::start(util::config(&sets)).unwrap();
    let mut client = RelayClient::connect(&sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // Wait for: stale, then reconnecting, then connected, then trades again.
    let (mut stale, mut reconnected, mut trades_after) = (false, false, 0);
    while trades_after < 10 {
        let rx = client.next_frame().unwrap().expect("stream open");
        match rx.frame.message().unwrap() {
            Message::Status { status, .. } => match status.code {
                StatusCode::Stale => stale = true,
                StatusCode::Connected if stale => reconnected = true,
                _ => {}
            },
            Message::Trade(_) if reconnected => trades_after += 1,
            _ => {}
        }
    }
    let s = relay.feed_stats(0).unwrap();
    assert!(s.collector.stale.get() >= 1);
    assert!(s.collector.reconnects.get() >= 1);
    assert!(
        exchange.subscribed_sessions() >= 2,
        "resubscribed after reconnecting"
    );
    let summary = relay.shutdown();
    assert!(summary.balanced());
    exchange.stop();
}

/// A connection that reaches `max_connection_age_ms` (Binance's 24 h limit, shortened here) is
/// closed by the collector itself and replaced at once: subscribers are told why, data goes on.
#[test]
fn an_old_connection_is_replaced_before_the_venue_limit() {
    let _wd = util::Watchdog::new("max_age", 120);
    let exchange = util::replay_exchange(
        &[(Venue::Binance, vec![util::binance_capture()])],
        1.0,
        false,
        false,
    );
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.push("feeds.binance.max_connection_age_ms=1000".into());
    let relay = run::start(util::config(&sets)).unwrap();
    let mut client = RelayClient::connect(&sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (mut proactive, mut trades_after) = (false, 0);
    while trades_after < 3 {
        let rx = client.next_frame().unwrap().expect("stream open");
        match rx.frame.message().unwrap() {
            Message::Status { status, .. }
                if status.code == StatusCode::Disconnected
                    && status.detail.contains("proactive reconnect") =>
            {
                proactive = true
            }
            Message::Trade(_) if proactive => trades_after += 1,
            _ => {}
        }
    }
    assert!(exchange.subscribed_sessions() >= 2, "resubscribed");
    let summary = relay.shutdown();
    assert!(summary.balanced());
    exchange.stop();
}
