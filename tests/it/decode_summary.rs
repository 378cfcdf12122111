//! `mdrelay decode --summary`: parse only, one summary line, no event output; the parser's
//! fast-path fallbacks counted.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::util;

fn summary_fields(line: &str) -> Vec<(String, u64)> {
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn decode_summary_counts_the_binance_capture_and_prints_no_event() {
    let out = Command::new(env!("CARGO_BIN_EXE_mdrelay"))
        .args(["decode", "--venue", "binance", "--summary"])
        .arg(util::binance_capture())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let f = summary_fields(stdout.trim());
    let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "messages",
            "trades",
            "quotes",
            "books",
            "status",
            "other",
            "parse_errors",
            "bad_lines",
            "fast_path_fallbacks",
            "ns_per_message"
        ]
    );
    // 6106 trades, 24077 quotes, 3434 depth diffs + the REST snapshot line (the only message
    // the fast path leaves to the general parser), as `decode` prints them.
    let want = [33_618, 6106, 24_077, 3435, 0, 0, 0, 0, 1];
    let got: Vec<u64> = f.iter().take(9).map(|(_, v)| *v).collect();
    assert_eq!(got, want);
    assert!(f[9].1 > 0, "ns_per_message");
}

#[test]
fn decode_summary_counts_parse_errors_and_reports_them_on_stderr() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mdrelay"))
        .args(["decode", "--venue", "binance", "--summary", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            concat!(
                r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":"1","q":"1","T":1,"m":true}}"#,
                "\n",
                r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":"abc","q":"1","T":1,"m":true}}"#,
                "\n",
            )
            .as_bytes(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let f = summary_fields(String::from_utf8(out.stdout).unwrap().trim());
    let get = |k: &str| f.iter().find(|(n, _)| n == k).unwrap().1;
    assert_eq!(
        (get("messages"), get("trades"), get("parse_errors")),
        (2, 1, 1)
    );
    // The bad number is left to the general path, which reports it.
    assert_eq!(get("fast_path_fallbacks"), 1);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("-:2: field `p`"), "{stderr}");
}
