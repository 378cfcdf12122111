//! Feeds that recover: a feed that goes silent past `stale_after_ms` is reported `stale`, the
//! collector reconnects, resubscribes, and data flows again.

use std::time::{Duration, Instant};

use mdrelay::market::event::StatusCode;
use mdrelay::market::instrument::Venue;
use mdrelay::wire::protocol::Message;
use mdrelay::{relay::client::RelayClient, run};

use crate::util;

#[test]
fn a_silent_feed_is_reported_stale_and_reconnects() {
    let _wd = util::Watchdog::new("stale_reconnect", 120);
    // The exchange plays the capture once and then stays connected and silent.
    let exchange = util::binance_exchange(false);
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

/// The cores the thread named `name` of this process may run on (`Cpus_allowed_list` of
/// /proc), if such a thread exists.
fn cpus_of_thread(name: &str) -> Option<String> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            return status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned());
        }
    }
    None
}

#[test]
fn threads_http_pins_the_http_thread() {
    let _w = util::Watchdog::new("threads_http_pins_the_http_thread", 60);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let Some(core) = cores.last().map(|c| c.id) else {
        eprintln!("no core ids visible: nothing to pin to");
        return;
    };
    let (_dir, socket) = util::temp_socket();
    let cfg = util::config(&[
        "replay.enabled=false".into(),
        "http.listen=\"127.0.0.1:0\"".into(),
        "consumer.idle=\"park\"".into(),
        format!("relay.socket_path={:?}", socket.display().to_string()),
        "feeds.binance.enabled=false".into(),
        "feeds.coinbase.enabled=false".into(),
        "feeds.kraken_v1.enabled=false".into(),
        "feeds.binance_usdm.enabled=false".into(),
        format!("threads.http={core}"),
    ]);
    let running = run::start(cfg).unwrap();
    // The thread pins itself first thing; give it the moment it needs to start.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = cpus_of_thread("http");
    while seen.as_deref() != Some(&core.to_string()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        seen = cpus_of_thread("http");
    }
    running.shutdown();
    assert_eq!(seen, Some(core.to_string()), "[threads] http = {core}");
}
