//! `mdrelay decode`: the collectors' parser on files, exact JSON lines, bad lines reported with
//! their number, decoding continues.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::util;

fn mdrelay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mdrelay"))
}

#[test]
fn decode_binance_capture_prints_normalized_json() {
    let out = mdrelay()
        .args(["decode", "--venue", "binance"])
        .arg(util::binance_capture())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let trades = lines
        .iter()
        .filter(|l| l.starts_with(r#"{"type":"trade""#))
        .count();
    let quotes = lines
        .iter()
        .filter(|l| l.starts_with(r#"{"type":"quote""#))
        .count();
    assert_eq!((trades, quotes), (6106, 24077));
    assert_eq!(
        lines.iter().find(|l| l.contains("1520538925")).unwrap(),
        &r#"{"type":"trade","venue":"binance","symbol":"ETHUSDT","price":"2683.8","size":"0.002","side":"sell","trade_id":"1520538925","exchange_ts_ns":1723161255611000000,"recv_ts_ns":1723161254340863867}"#
    );
}

#[test]
fn decode_reports_bad_lines_and_continues() {
    let mut child = mdrelay()
        .args(["decode", "--venue", "binance", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = concat!(
        r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,"p":"1.5","q":"2","T":1,"m":false}}"#,
        "\n",
        "not json\n",
        r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":8,"p":"1e99","q":"2","T":1,"m":false}}"#,
        "\n",
        "\n",
        r#"{"result":null,"id":1}"#,
        "\n",
        r#"5 {"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}}"#,
        "\n",
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "bad lines do not fail the command");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.lines().nth(1).unwrap().contains(r#""recv_ts_ns":5"#));
    assert!(stderr.contains("-:2: malformed message"), "{stderr}");
    assert!(
        stderr.contains("-:3: field `p`: value out of range"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
}

#[test]
fn decode_missing_file_is_an_io_error() {
    let out = mdrelay()
        .args(["decode", "--venue", "binance", "/nonexistent/x.gz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_config_fails_at_startup_naming_the_key() {
    let out = mdrelay()
        .args(["run", "--set", "relay.max_subscribers=0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("relay.max_subscribers"), "{stderr}");
}
