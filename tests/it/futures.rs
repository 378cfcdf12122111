//! Binance USD-M / COIN-M futures end to end (issue 15): the replay exchange speaks the futures
//! protocol from the bundled USD-M capture (streams, and REST depth from `/fapi/v1/depth` at the
//! replay position), the `binance_usdm` collector subscribes, syncs its book by the futures rule
//! and relays; a subscriber gets every market trade exactly once and in order and a book equal to
//! an independent rebuild of the capture. `mdrelay decode` syncs books from the recorded snapshot
//! line for both futures venues, and the open-interest poller's readings reach subscribers.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use mdrelay::market::book::L2Book;
use mdrelay::market::event::{StatusCode, Trade};
use mdrelay::market::instrument::Venue;
use mdrelay::persist::recording;
use mdrelay::run;
use mdrelay::wire::protocol::{flags, Message};
use serde_json::Value;

use crate::util;

fn capture() -> PathBuf {
    util::fixture("binance_usdm/ethusdt_20240808.txt.gz")
}

/// (price, size, trade id, buyer is maker).
type TradeRow = (i64, i64, u64, bool);

/// The capture's trades (price, size, id, buyer-is-maker) and its final book by the documented
/// futures procedure, read with serde_json only.
fn reference() -> (Vec<TradeRow>, util::Side8, util::Side8) {
    let lines: Vec<String> = recording::read_all(&capture())
        .unwrap()
        .into_iter()
        .map(|r| r.raw)
        .collect();
    let mut trades = Vec::new();
    let (last, mut book) = util::recorded_snapshot(&lines);
    let mut prev = None;
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        let d = &v["data"];
        match v["stream"].as_str() {
            Some("ethusdt@trade") if d["X"] == "MARKET" => trades.push((
                util::dec8(d["p"].as_str().unwrap()),
                util::dec8(d["q"].as_str().unwrap()),
                d["t"].as_u64().unwrap(),
                d["m"].as_bool().unwrap(),
            )),
            Some("ethusdt@depth@0ms") => {
                let (u, pu) = (d["u"].as_u64().unwrap(), d["pu"].as_u64().unwrap());
                match prev {
                    None if u < last => continue,
                    None => assert!(d["U"].as_u64().unwrap() <= last),
                    Some(p) => assert_eq!(pu, p),
                }
                prev = Some(u);
                util::set_levels(&mut book[0], &d["b"]);
                util::set_levels(&mut book[1], &d["a"]);
            }
            _ => {}
        }
    }
    let [bids, asks] = book;
    (trades, bids, asks)
}

fn sides(book: &L2Book) -> (util::Side8, util::Side8) {
    (
        book.bids().map(|l| (l.price, l.size)).collect(),
        book.asks().map(|l| (l.price, l.size)).collect(),
    )
}

/// `--set`s for a relay with only a `binance_usdm` feed against `exchange`, plus `extra`.
fn usdm_only(
    sock: &std::path::Path,
    exchange: std::net::SocketAddr,
    extra: &[&str],
) -> Vec<String> {
    let mut sets = vec![
        "replay.enabled=false".to_owned(),
        "http.listen=\"127.0.0.1:0\"".into(),
        "consumer.idle=\"park\"".into(),
        format!("relay.socket_path={:?}", sock.display().to_string()),
        "relay.max_pending_bytes=268435456".into(),
        "feeds.binance.enabled=false".into(),
        "feeds.coinbase.enabled=false".into(),
        "feeds.kraken_v1.enabled=false".into(),
        format!("feeds.binance_usdm.url=\"ws://{exchange}/binance_usdm/stream\""),
        format!("feeds.binance_usdm.rest_url=\"http://{exchange}/binance_usdm\""),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    sets
}

#[test]
fn usdm_capture_through_the_replay_exchange_and_the_relay_exactly_once_in_order() {
    let _wd = util::Watchdog::new("futures_e2e", 180);
    let (want, want_bids, want_asks) = reference();
    assert_eq!(want.len(), 14_076);
    let exchange =
        util::replay_exchange(&[(Venue::BinanceUsdm, vec![capture()])], 0.0, false, true);
    let (_dir, sock) = util::temp_socket();
    let relay = run::start(util::config(&usdm_only(&sock, exchange.local_addr(), &[]))).unwrap();
    let mut client = util::subscriber(&sock);
    util::play_when_subscribed(&exchange, 1);

    let mut got: Vec<Trade> = Vec::new();
    let mut book = L2Book::new();
    let (mut snapshots, mut quotes) = (0, 0);
    // Until every trade has arrived, then until the stream goes quiet (the last diffs).
    loop {
        if got.len() == want.len() {
            client
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
        }
        let rx = match client.next_frame() {
            Ok(Some(rx)) => rx,
            _ if got.len() == want.len() => break,
            other => panic!("stream ended early: {other:?}, {} trades", got.len()),
        };
        let h = rx.frame.header;
        if let Some(i) = &rx.instrument {
            assert_eq!(
                (i.venue.as_str(), i.symbol.as_str()),
                ("binance_usdm", "ETHUSDT")
            );
        }
        match rx.frame.message().unwrap() {
            Message::Trade(t) => got.push(t),
            Message::Quote(_) => quotes += 1,
            Message::Book(b) => {
                assert_eq!(h.flags & flags::BOOK_MAY_BE_BAD, 0);
                let (bids, asks): (Vec<_>, Vec<_>) = (b.bids().collect(), b.asks().collect());
                if h.flags & flags::SNAPSHOT != 0 {
                    snapshots += 1;
                    book.apply_snapshot(&bids, &asks);
                } else {
                    book.apply_delta(&bids, &asks);
                }
                assert!(!book.is_crossed(), "the book never crosses");
            }
            Message::Status { status, .. } => assert!(
                !matches!(
                    status.code,
                    StatusCode::Gap
                        | StatusCode::Resync
                        | StatusCode::Dropped
                        | StatusCode::CrossedBook
                ),
                "{status:?}"
            ),
            _ => {}
        }
    }
    let got: Vec<TradeRow> = got
        .iter()
        .map(|t| {
            (
                t.price,
                t.size,
                t.trade_id.unwrap(),
                t.side == mdrelay::market::event::Side::Sell,
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "every trade exactly once, in order, exact values"
    );
    assert_eq!(quotes, 53_992);
    assert_eq!(snapshots, 1, "one sync from the exchange's REST snapshot");
    // The REST snapshot holds the exchange book's best 1000 levels per side (the futures
    // endpoints' largest limit), so levels deeper than that at the moment of the fetch are not in
    // the relay's book, as with the real venue: the best 100 levels must be exact.
    let (bids, asks) = sides(&book);
    assert!(bids.len() >= 1000 && asks.len() >= 1000);
    let top = |m: &util::Side8, best_first: bool| -> Vec<(i64, i64)> {
        let it: Box<dyn Iterator<Item = (&i64, &i64)>> = if best_first {
            Box::new(m.iter().rev())
        } else {
            Box::new(m.iter())
        };
        it.take(100).map(|(&p, &s)| (p, s)).collect()
    };
    assert_eq!(top(&bids, true), top(&want_bids, true), "best 100 bids");
    assert_eq!(top(&asks, false), top(&want_asks, false), "best 100 asks");
    let summary = relay.shutdown();
    assert_eq!(summary.feeds[0].parse_errors, 0, "{summary}");
    assert!(summary.balanced(), "{summary}");
    exchange.stop();
}

fn mdrelay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mdrelay"))
}

#[test]
fn decode_usdm_capture_syncs_the_book_from_the_recorded_snapshot() {
    let out = mdrelay()
        .args(["decode", "--venue", "binance_usdm"])
        .arg(capture())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (want, want_bids, want_asks) = reference();
    let mut trades = Vec::new();
    let (mut quotes, mut snapshots) = (0, 0);
    let mut book = [util::Side8::new(), util::Side8::new()];
    for l in stdout.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["venue"], "binance_usdm");
        match v["type"].as_str().unwrap() {
            "trade" => trades.push((
                util::dec8(v["price"].as_str().unwrap()),
                util::dec8(v["size"].as_str().unwrap()),
                v["trade_id"].as_str().unwrap().parse::<u64>().unwrap(),
                v["side"] == "sell",
            )),
            "quote" => quotes += 1,
            "book" => {
                assert_eq!(v["symbol"], "ETHUSDT");
                if v["snapshot"] == true {
                    snapshots += 1;
                    book = Default::default();
                }
                for (side, key) in book.iter_mut().zip(["bids", "asks"]) {
                    util::set_levels(side, &v[key]);
                }
            }
            other => panic!("unexpected line type {other}: {l}"),
        }
    }
    assert_eq!((trades.len(), quotes, snapshots), (14_076, 53_992, 1));
    assert_eq!(trades, want);
    let [bids, asks] = book;
    assert_eq!((bids, asks), (want_bids, want_asks));
}

#[test]
fn decode_coinm_keeps_contract_sizes_and_counts_non_market_trades() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("btcusd_perp.txt");
    // COIN-M messages in the recording layout: diffs buffered, the REST snapshot line, diffs
    // chained by pu; an ADL fill that is not a market trade.
    let lines = [
        r#"1 {"stream":"btcusd_perp@depth@100ms","data":{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSD_PERP","ps":"BTCUSD","U":100,"u":110,"pu":99,"b":[["60000.0","5"]],"a":[["60001.0","7"]]}}"#,
        r#"2 {"stream":"btcusd_perp@depth@100ms","data":{"e":"depthUpdate","E":2,"T":2,"s":"BTCUSD_PERP","ps":"BTCUSD","U":111,"u":120,"pu":110,"b":[["60000.0","6"]],"a":[]}}"#,
        r#"3 {"lastUpdateId":115,"E":3,"T":3,"bids":[["60000.0","9"],["59999.9","12"]],"asks":[["60001.0","7"]]}"#,
        r#"4 {"stream":"btcusd_perp@depth@100ms","data":{"e":"depthUpdate","E":4,"T":4,"s":"BTCUSD_PERP","ps":"BTCUSD","U":121,"u":130,"pu":120,"b":[["59999.9","0"]],"a":[["60001.5","3"]]}}"#,
        r#"5 {"stream":"btcusd_perp@trade","data":{"e":"trade","E":5,"T":5,"s":"BTCUSD_PERP","t":7,"p":"60000.5","q":"12","X":"MARKET","m":true}}"#,
        r#"6 {"stream":"btcusd_perp@trade","data":{"e":"trade","E":6,"T":6,"s":"BTCUSD_PERP","t":8,"p":"60000.5","q":"3","X":"ADL","m":true}}"#,
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = mdrelay()
        .args(["decode", "--venue", "binance_coinm"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let got: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 3, "{stdout}");
    // The snapshot at 115 is bridged by the diff 111..=120 (U ≤ 115 ≤ u).
    assert_eq!(got[0]["snapshot"], true);
    assert_eq!(
        got[0]["bids"],
        serde_json::json!([["60000", "6"], ["59999.9", "12"]])
    );
    assert_eq!(got[0]["sequence"], 120);
    assert_eq!(got[1]["snapshot"], false);
    assert_eq!(got[1]["bids"], serde_json::json!([["59999.9", "0"]]));
    assert_eq!(
        (got[2]["type"].as_str(), got[2]["size"].as_str()),
        (Some("trade"), Some("12"))
    );
    assert_eq!(got[2]["side"], "sell");
    assert!(stderr.contains("1 message(s) filtered"), "{stderr}");
}

/// A REST server on 127.0.0.1:0 answering every request with the USD-M `openInterest`
/// documentation example, until the test ends.
fn open_interest_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = if req.starts_with("GET /fapi/v1/openInterest?symbol=ETHUSDT ") {
                r#"{"openInterest":"10659.509","symbol":"ETHUSDT","time":1589437530011}"#
            } else {
                r#"{"code":-1,"msg":"unexpected"}"#
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn open_interest_polled_on_its_own_thread_reaches_subscribers() {
    let _wd = util::Watchdog::new("futures_open_interest", 120);
    let rest = open_interest_server();
    // The exchange stays connected after the capture, so the feed stays up while we wait.
    let exchange =
        util::replay_exchange(&[(Venue::BinanceUsdm, vec![capture()])], 0.0, false, false);
    let (_dir, sock) = util::temp_socket();
    let mut sets = usdm_only(
        &sock,
        exchange.local_addr(),
        &[
            "feeds.binance_usdm.channels=[\"trade\"]",
            "feeds.binance_usdm.open_interest_interval_ms=1000",
        ],
    );
    sets.push(format!("feeds.binance_usdm.rest_url=\"http://{rest}\""));
    let relay = run::start(util::config(&sets)).unwrap();
    let mut client = util::subscriber(&sock);
    let mut seen = None;
    while seen.is_none() {
        let rx = client.next_frame().unwrap().expect("stream open");
        if let Ok(Message::OpenInterest {
            open_interest,
            kind_sequence,
        }) = rx.frame.message()
        {
            let i = rx.instrument.as_ref().unwrap();
            assert_eq!(
                (i.venue.as_str(), i.symbol.as_str()),
                ("binance_usdm", "ETHUSDT")
            );
            seen = Some((open_interest, kind_sequence));
        }
    }
    let (oi, kind_sequence) = seen.unwrap();
    assert_eq!(oi.open_interest, 1_065_950_900_000);
    assert_eq!(oi.exchange_ts_ns, Some(1_589_437_530_011_000_000));
    assert!(
        kind_sequence >= 1,
        "the instrument's open-interest frames are numbered"
    );
    let summary = relay.shutdown();
    assert!(summary.panicked.is_empty(), "{summary}");
    exchange.stop();
}
