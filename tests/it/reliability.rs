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

/// `Cpus_allowed_list` of a /proc status file: the cores a thread may run on.
fn cpus_allowed(status: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(status)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
}

/// The cores each thread named `name` of this process may run on (tests run in parallel, so
/// there may be several).
fn cpus_of_threads(name: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| t.ok().map(|t| t.path()))
        .filter(|dir| std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == name))
        .filter_map(|dir| cpus_allowed(&dir.join("status")))
        .collect()
}

/// A relay on no feed, with `sets` added to its configuration.
fn idle_relay(sets: &[String]) -> (tempfile::TempDir, run::Running) {
    let (dir, socket) = util::temp_socket();
    let mut all = vec![
        "replay.enabled=false".into(),
        "http.listen=\"127.0.0.1:0\"".into(),
        "consumer.idle=\"park\"".into(),
        format!("relay.socket_path={:?}", socket.display().to_string()),
        "feeds.binance.enabled=false".into(),
        "feeds.coinbase.enabled=false".into(),
        "feeds.kraken_v1.enabled=false".into(),
        "feeds.binance_usdm.enabled=false".into(),
    ];
    all.extend_from_slice(sets);
    (dir, run::start(util::config(&all)).unwrap())
}

#[test]
fn threads_http_pins_the_http_thread() {
    let _w = util::Watchdog::new("threads_http_pins_the_http_thread", 60);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let Some(core) = cores.last().map(|c| c.id) else {
        eprintln!("no core ids visible: nothing to pin to");
        return;
    };
    let (_dir, running) = idle_relay(&[format!("threads.http={core}")]);
    // The thread pins itself first thing; give it the moment it needs to start.
    let pinned = util::wait_until(Duration::from_secs(10), || {
        cpus_of_threads("http").contains(&core.to_string())
    });
    running.shutdown();
    assert!(
        pinned,
        "[threads] http = {core}: {:?}",
        cpus_of_threads("http")
    );
}

/// The `stats` thread was spawned by the consumer thread after it had pinned itself, and a
/// thread inherits its parent's affinity: with the consumer pinned, the histogram publication
/// the `stats` thread exists to take off the consumer ran on the consumer's own core.
#[test]
fn the_stats_thread_does_not_inherit_the_consumers_core() {
    let _w = util::Watchdog::new("the_stats_thread_does_not_inherit_the_consumers_core", 60);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let Some(core) = cores.last().map(|c| c.id).filter(|_| cores.len() >= 2) else {
        eprintln!("fewer than two cores visible: pinning cannot be told from not pinning");
        return;
    };
    let process = cpus_allowed(std::path::Path::new("/proc/self/status")).unwrap();
    let (_dir, running) = idle_relay(&[format!("threads.consumer={core}")]);
    let pinned = util::wait_until(Duration::from_secs(10), || {
        cpus_of_threads("consumer").contains(&core.to_string())
    });
    let stats = cpus_of_threads("stats");
    running.shutdown();
    assert!(pinned, "[threads] consumer = {core}");
    assert!(!stats.is_empty(), "a stats thread runs");
    assert!(
        stats.iter().all(|s| *s == process),
        "stats threads may run on {stats:?}, the process on {process}; the consumer is pinned to {core}"
    );
}
