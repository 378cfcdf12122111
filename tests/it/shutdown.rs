//! The real binary under load receives SIGINT: exit 0, socket removed, every event accepted
//! before the signal reaches the subscriber, the printed summary balances, the trades CSV holds
//! exactly the trades the subscriber received (no torn last line), and the 1 s bars in CSV agree
//! with bars computed here from those trades.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mdrelay::market::bars::IntervalLabel;
use mdrelay::market::event::Trade;
use mdrelay::market::fixed::Decimal;
use mdrelay::relay::client::RelayClient;
use mdrelay::wire::protocol::{BarFrame, Message};
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
    let (dir, sock) = util::temp_socket();
    let csv_dir = dir.path().join("csv");
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
            "--set",
            "feeds.binance_usdm.enabled=false",
            // This test is about drain completeness: the subscriber must not be cut as slow.
            "--set",
            "relay.max_pending_bytes=1073741824",
            // Bars close on trades only here (no timer within the test), so no trade can be
            // late on a loaded machine and the independent bar computation below is exact.
            "--set",
            "bars.close_grace_ms=600000",
        ])
        .args(["--set"])
        .arg(format!(
            "writer.data_dir={:?}",
            csv_dir.display().to_string()
        ))
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
        let mut trades: Vec<(u64, Trade)> = Vec::new();
        let mut bars: Vec<BarFrame> = Vec::new();
        let binance = mdrelay::market::instrument::instrument_id("binance", "ETHUSDT");
        while let Some(rx) = client.next_frame().expect("clean stream") {
            let h = rx.frame.header;
            if h.instrument_id != binance {
                continue;
            }
            match rx.frame.message().unwrap() {
                Message::Trade(t) => {
                    trades.push((h.recv_ts_ns, t));
                    events += 1;
                    last_seq = h.sequence;
                }
                Message::Quote(_) => {
                    events += 1;
                    last_seq = h.sequence;
                }
                Message::Bar(b) => bars.push(b),
                _ => {}
            }
        }
        (events, last_seq, trades, bars)
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
    let (sub_events, sub_last_seq, trades, bar_frames) = reader.join().unwrap();

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

    // trades.csv: exactly the trades delivered, in order, exact decimal strings.
    let rows = util::read_csv_rows(&csv_dir, "trades.csv");
    assert_eq!(rows.len(), trades.len(), "one CSV row per delivered trade");
    for (row, (recv, t)) in rows.iter().zip(&trades) {
        assert_eq!(&row[0], recv.to_string(), "{row:?}");
        assert_eq!(&row[4], "binance");
        assert_eq!(&row[5], "ETHUSDT");
        assert_eq!(&row[6], Decimal(t.price).to_string(), "{row:?}");
        assert_eq!(&row[7], Decimal(t.size).to_string(), "{row:?}");
        assert_eq!(&row[8], t.side.name());
        assert_eq!(&row[9], t.trade_id.unwrap().to_string());
    }

    // 1 s bars computed here from the delivered trades (by receive time); the last interval is
    // still open at shutdown and not written.
    let mut expect: Vec<Vec<String>> = Vec::new();
    let mut cur: Option<(u64, i64, i64, i64, i64, i128, u64)> = None;
    let mut push = |c: (u64, i64, i64, i64, i64, i128, u64)| {
        expect.push(vec![
            c.0.to_string(),
            Decimal(c.1).to_string(),
            Decimal(c.2).to_string(),
            Decimal(c.3).to_string(),
            Decimal(c.4).to_string(),
            mdrelay::market::bars::Decimal128(c.5).to_string(),
            c.6.to_string(),
        ])
    };
    for (recv, t) in &trades {
        let start = recv - recv % 1_000_000_000;
        cur = Some(match cur {
            Some(c) if c.0 == start => (
                start,
                c.1,
                c.2.max(t.price),
                c.3.min(t.price),
                t.price,
                c.5 + i128::from(t.size),
                c.6 + 1,
            ),
            other => {
                if let Some(c) = other {
                    push(c);
                }
                (
                    start,
                    t.price,
                    t.price,
                    t.price,
                    t.price,
                    i128::from(t.size),
                    1,
                )
            }
        });
    }
    let rows = util::read_csv_rows(&csv_dir, "bars_1s.csv");
    assert!(
        !rows.is_empty(),
        "some 1 s bars closed
{stderr}"
    );
    // start_ts_ns, open, high, low, close, volume, trade_count
    let got: Vec<Vec<String>> = rows
        .iter()
        .map(|r| [0, 7, 8, 9, 10, 11, 13].map(|i| r[i].to_string()).to_vec())
        .collect();
    assert_eq!(
        got, expect,
        "CSV bars = bars computed from the delivered trades"
    );
    // The subscriber got the same bars as Bar frames.
    let ones: Vec<&BarFrame> = bar_frames
        .iter()
        .filter(|b| IntervalLabel(b.interval_ns).to_string() == "1s")
        .collect();
    assert_eq!(ones.len(), rows.len(), "one Bar frame per CSV bar");
    for (b, r) in ones.iter().zip(&rows) {
        assert_eq!(b.start_ns.to_string(), &r[0]);
        assert_eq!(Decimal(b.close).to_string(), &r[10]);
        assert_eq!(b.trade_count.to_string(), &r[13]);
    }
}
