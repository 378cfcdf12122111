//! Issue 18 item 5: `mdrelay_parse_encode_seconds` means what its name says. A Binance depth
//! diff held in the sync buffer while the REST snapshot takes `DELAY` to come back is counted
//! as sync-buffer wait (`mdrelay_sync_buffer_wait_seconds`), not as parse time; and the frames
//! read from no venue message (instrument definitions, feed status) — which used to count as
//! parse time the whole time since start — count in neither.
//!
//! The relay runs against the replay exchange (Binance capture, depth on), with `rest_url`
//! pointing at a test server that answers each depth request after `DELAY` with a snapshot
//! just before the first diff of the capture: the collector, which fetches right after the
//! first diff, holds that diff in the buffer for `DELAY`, then the snapshot releases it. The
//! exchange starts playing only `DELAY` after the relay subscribed, so every frame is queued
//! more than `DELAY` after start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use mdrelay::market::instrument::Venue;
use mdrelay::{persist::recording, run};

use crate::util;

/// How long the test's REST server sits on each request.
const DELAY: Duration = Duration::from_millis(800);

/// `U` of the capture's first depth diff of ETHUSDT.
fn first_diff_u() -> u64 {
    let lines = recording::read_all(&util::binance_capture()).unwrap();
    let raw = lines
        .iter()
        .map(|r| &r.raw)
        .find(|r| r.contains("\"depthUpdate\"") && r.contains("\"s\":\"ETHUSDT\""))
        .expect("a depth diff in the capture");
    let at = raw.find("\"U\":").unwrap() + 4;
    let digits: String = raw[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// A REST server answering every request with `body` after `DELAY`, one at a time.
fn slow_rest(body: String) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            thread::sleep(DELAY);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// The value of the first sample of `/metrics` whose line starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{prefix} in\n{metrics}"))
}

#[test]
fn a_diff_held_for_the_snapshot_is_sync_wait_not_parse_time() {
    let _wd = util::Watchdog::new("sync_wait", 120);
    let snapshot = format!(
        r#"{{"lastUpdateId":{},"bids":[["2683.80","1.0"]],"asks":[["2683.90","1.0"]]}}"#,
        first_diff_u() - 1
    );
    let rest = slow_rest(snapshot);
    let exchange = util::replay_exchange(
        &[(Venue::Binance, vec![util::binance_capture()])],
        0.0,
        false,
        true,
    );
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.push("feeds.binance.channels=[\"trade\", \"bookTicker\", \"depth@100ms\"]".into());
    sets.push(format!("feeds.binance.rest_url=\"http://{rest}\""));
    let relay = run::start(util::config(&sets)).unwrap();
    let addr = relay.http_addr().unwrap();
    // Held before the first message for longer than DELAY, so that a frame counting the time
    // since start (what definitions and status frames did) would stand out.
    assert!(util::wait_until(Duration::from_secs(20), || exchange
        .subscribed_sessions()
        >= 1));
    thread::sleep(DELAY);
    exchange.resume();

    let waited = util::wait_until(Duration::from_secs(30), || {
        let m = util::http_get(addr, "/metrics").1;
        sample(
            &m,
            "mdrelay_sync_buffer_wait_seconds_count{feed=\"binance\"",
        ) >= 1.0
    });
    assert!(waited, "the buffered diff was released by the snapshot");
    // The histograms are published every 500 ms: let the frames of the sync reach them.
    thread::sleep(Duration::from_millis(1500));
    let m = util::http_get(addr, "/metrics").1;
    let l = "feed=\"binance\",venue=\"binance\"";
    let count = sample(
        &m,
        &format!("mdrelay_sync_buffer_wait_seconds_count{{{l}}}"),
    );
    let sum = sample(&m, &format!("mdrelay_sync_buffer_wait_seconds_sum{{{l}}}"));
    assert!(count >= 1.0, "{m}");
    let delay = DELAY.as_secs_f64();
    assert!(
        sum / count >= delay * 0.9,
        "each released diff waited about {delay} s: sum {sum} over {count}"
    );
    assert_eq!(
        sample(
            &m,
            &format!("mdrelay_sync_buffer_wait_seconds_bucket{{{l},le=\"0.5\"}}")
        ),
        0.0,
        "no wait under 0.5 s"
    );
    let parsed = sample(&m, &format!("mdrelay_parse_encode_seconds_count{{{l}}}"));
    assert!(parsed > 0.0, "{m}");
    let published = relay.published();
    let p = published.load();
    let max_parse_ns = p.parse_total.iter().map(|h| h.max()).max().unwrap();
    // Before: the definitions queued at the sync counted their whole time since start (> DELAY).
    assert!(
        max_parse_ns < DELAY.as_nanos() as u64 / 2,
        "the longest parse+encode is {} ms: the sync wait or the time since start leaked in",
        max_parse_ns / 1_000_000
    );
    drop(p);
    relay.shutdown();
    exchange.stop();
}
