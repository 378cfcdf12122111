//! The real binary under load receives SIGINT: exit 0, socket removed, every event accepted
//! before the signal reaches the subscriber, and the printed summary balances.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mdrelay::client::RelayClient;
use mdrelay::protocol::Message;
use rustix::process::{kill_process, Pid, Signal};

use crate::util;

/// Columns of the summary row of feed `name`.
fn summary_row(stderr: &str, name: &str) -> Vec<u64> {
    let line = stderr
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name) && l.split_whitespace().count() == 14)
        .unwrap_or_else(|| panic!("no summary row for {name} in:\n{stderr}"));
    line.split_whitespace()
        .skip(1)
        .take(9)
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn sigint_under_load_drains_to_the_subscriber_and_exits_zero() {
    let _wd = util::Watchdog::new("sigint", 120);
    let (_dir, sock) = util::temp_socket();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mdrelay"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--set"])
        .arg(format!(
            "relay.socket_path={:?}",
            sock.display().to_string()
        ))
        .args([
            "--set",
            "replay.speed=0",
            "--set",
            "relay.drain_timeout_ms=10000",
            "--set",
            "http.listen=\"127.0.0.1:0\"",
        ])
        // Binance without depth: one event per data frame, which the row check below relies on.
        .args([
            "--set",
            "feeds.binance.channels=[\"trade\", \"bookTicker\"]",
            "--set",
            "feeds.coinbase.enabled=false",
            "--set",
            "feeds.kraken_v1.enabled=false",
            // This test is about drain completeness: the subscriber must not be cut as slow.
            "--set",
            "relay.max_pending_bytes=1073741824",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        util::wait_until(Duration::from_secs(30), || sock.exists()),
        "socket appears"
    );
    let mut client = RelayClient::connect(&sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let reader = thread::spawn(move || {
        let (mut events, mut last_seq) = (0u64, 0u64);
        let binance = mdrelay::instrument::instrument_id("binance", "ETHUSDT");
        while let Some(rx) = client.next_frame().expect("clean stream") {
            let h = rx.frame.header;
            if h.instrument_id == binance
                && matches!(
                    rx.frame.message().unwrap(),
                    Message::Trade(_) | Message::Quote(_)
                )
            {
                events += 1;
                last_seq = h.sequence;
            }
        }
        (events, last_seq)
    });
    // Let it run at full speed for a while, then interrupt.
    thread::sleep(Duration::from_millis(1500));
    kill_process(Pid::from_child(&child), Signal::INT).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "exits after SIGINT"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit status {status:?}\n{stderr}");
    assert!(!sock.exists(), "socket removed");
    let (sub_events, sub_last_seq) = reader.join().unwrap();

    // frames, control, errors, range, events, relayed, dropped, refused, reconnects
    let row = summary_row(&stderr, "binance");
    let (frames, control, errors, events, relayed, dropped) =
        (row[0], row[1], row[2], row[4], row[5], row[6]);
    assert!(
        events > 1000,
        "it was under load: {events} events\n{stderr}"
    );
    assert_eq!(
        frames,
        control + errors + events,
        "Binance: one event per data frame\n{stderr}"
    );
    assert_eq!(events, relayed + dropped + row[7], "\n{stderr}");
    assert!(stderr.contains("accounting balanced"), "{stderr}");
    // The subscriber saw the last event the relay accepted (sequences count every event).
    assert_eq!(dropped, 0, "{stderr}");
    assert_eq!(
        sub_last_seq, relayed,
        "every accepted event reached the subscriber"
    );
    assert!(sub_events > 0 && sub_events <= relayed);
}
