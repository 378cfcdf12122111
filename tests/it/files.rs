//! Hostile and broken recordings through `mdrelay decode` and `mdrelay replay` (issue 17,
//! defects 6–9): every bad line reported as `file:line: reason` and skipped, a file-stopping
//! error names the file and makes the exit status 1 after everything read before it, lines
//! over the cap skipped without buffering them, `--speed` validated, pacing sleeps bounded.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util;

fn mdrelay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mdrelay"))
}

/// The bundled Kraken trade capture, decompressed: 49 lines.
fn kraken_trade_lines() -> Vec<String> {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(
        std::fs::File::open(util::repo("data/kraken_v1/trade_20210417.txt.gz")).unwrap(),
    )
    .read_to_string(&mut text)
    .unwrap();
    text.lines().map(str::to_owned).collect()
}

/// Writes `lines` (each followed by `\n`) to `path`, gzip when it ends in `.gz`.
fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let mut bytes = Vec::new();
    for l in lines {
        bytes.extend_from_slice(l);
        bytes.push(b'\n');
    }
    if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        bytes = gz.finish().unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// The Kraken trade capture with `bad` inserted as line `at` (1-based).
fn kraken_with_bad_line(path: &Path, at: usize, bad: Vec<u8>) {
    let mut lines: Vec<Vec<u8>> = kraken_trade_lines()
        .into_iter()
        .map(String::into_bytes)
        .collect();
    lines.insert(at - 1, bad);
    write_lines(path, &lines);
}

/// A copy of the Binance capture cut at half its size, and the decompressed complete lines
/// before the cut.
fn truncated_binance(dir: &Path) -> (PathBuf, Vec<u8>) {
    let full = std::fs::read(util::binance_capture()).unwrap();
    let path = dir.join("cut.txt.gz");
    std::fs::write(&path, &full[..full.len() / 2]).unwrap();
    let mut text = Vec::new();
    let r = flate2::read::MultiGzDecoder::new(&full[..full.len() / 2]).read_to_end(&mut text);
    assert!(r.is_err(), "the cut copy is truncated");
    let complete = text.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    text.truncate(complete);
    (path, text)
}

/// Runs `cmd` with stdout and stderr into files, killing it after `secs`; `None` if it had
/// to be killed.
fn run_bounded(mut cmd: Command, dir: &Path, secs: u64) -> Option<Output> {
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > end {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Some(Output {
        status: status?,
        stdout: std::fs::read(out).unwrap(),
        stderr: std::fs::read(err).unwrap(),
    })
}

/// `mdrelay replay` of `files` as `venue` with `flags`, relay in `dir`, HTTP and CSV off.
fn replay_cmd(dir: &Path, venue: &str, files: &[&Path], flags: &[&str]) -> Command {
    let mut cmd = mdrelay();
    cmd.args(["replay", "--venue", venue])
        .args(files)
        .args(flags)
        .args([
            "--set",
            "http.enabled=false",
            "--set",
            "writer.enabled=false",
        ])
        .args(["--set", "consumer.idle=\"park\"", "--set"])
        .arg(format!(
            "relay.socket_path={:?}",
            dir.join("relay.sock").display().to_string()
        ))
        .env("RUST_LOG", "warn");
    cmd
}

/// Runs a replay (killed after 60 s) and returns (exit code, stderr).
fn replay(dir: &Path, venue: &str, files: &[&Path], flags: &[&str]) -> (Option<i32>, String) {
    let out = run_bounded(replay_cmd(dir, venue, files, flags), dir, 60).expect("replay ends");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (frames, errors) of `feed` in a replay's summary.
fn summary_row(stderr: &str, feed: &str) -> (u64, u64) {
    let row = util::summary_row(stderr, feed);
    (row[1].parse().unwrap(), row[3].parse().unwrap())
}

#[test]
fn defect6_truncated_gzip_replays_every_line_before_it_names_the_file_and_exits_1() {
    let _wd = util::Watchdog::new("defect6_truncated", 120);
    let dir = tempfile::tempdir().unwrap();
    let (cut, text) = truncated_binance(dir.path());
    let lines = text.iter().filter(|&&b| b == b'\n').count() as u64;
    let (code, stderr) = replay(dir.path(), "binance", &[&cut], &["--max"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&cut.display().to_string()), "{stderr}");
    assert_eq!(summary_row(&stderr, "binance").0, lines, "{stderr}");
}

#[test]
fn defect6_missing_or_garbage_file_is_named_exits_1_and_the_others_replay() {
    let _wd = util::Watchdog::new("defect6_missing", 120);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.txt.gz");
    let garbage = dir.path().join("garbage.txt.gz");
    std::fs::write(&garbage, b"this is not gzip at all\n\x00\xff").unwrap();
    let good = util::repo("data/kraken_v1/trade_20210417.txt.gz");
    let files = [missing.as_path(), garbage.as_path(), good.as_path()];
    let (code, stderr) = replay(dir.path(), "kraken_v1", &files, &["--max"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(stderr.contains(&garbage.display().to_string()), "{stderr}");
    assert_eq!(summary_row(&stderr, "kraken_v1").0, 49, "{stderr}");
}

#[test]
fn defect6_invalid_utf8_line_is_reported_with_its_number_and_skipped() {
    let _wd = util::Watchdog::new("defect6_utf8", 120);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("trade.txt.gz");
    let mut lines: Vec<Vec<u8>> = kraken_trade_lines()
        .into_iter()
        .map(String::into_bytes)
        .collect();
    lines.insert(19, b"1618678140000000000 [1, \xff\xfe]".to_vec());
    lines.insert(29, b"1618678140000000000 not json".to_vec());
    write_lines(&bad, &lines);
    let (code, stderr) = replay(dir.path(), "kraken_v1", &[&bad], &["--max"]);
    assert_eq!(code, Some(0), "bad lines are skipped, not fatal: {stderr}");
    for want in [":20: invalid UTF-8, skipped", ":30: parse error, skipped"] {
        let want = format!("{}{want}", bad.display());
        assert!(stderr.contains(&want), "{want} in {stderr}");
    }
    // Every good line replayed, the one before the bad line too; the bad lines are errors
    // (the one that is not JSON is a frame too).
    assert_eq!(summary_row(&stderr, "kraken_v1"), (50, 2), "{stderr}");
}

#[test]
fn defect7_decode_reports_invalid_utf8_with_its_line_number_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let good = util::repo("data/kraken_v1/trade_20210417.txt.gz");
    let bad = dir.path().join("trade.txt.gz");
    kraken_with_bad_line(&bad, 20, b"\xff\xfe garbage".to_vec());
    let decode = |f: &Path| {
        mdrelay()
            .args(["decode", "--venue", "kraken_v1"])
            .arg(f)
            .output()
            .unwrap()
    };
    let (want, out) = (decode(&good), decode(&bad));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("{}:20: invalid UTF-8, skipped", bad.display())
    );
    assert!(!want.stdout.is_empty());
    assert_eq!(out.stdout, want.stdout, "every other line decoded");
}

#[test]
fn defect7_decode_of_a_truncated_gzip_prints_everything_before_names_the_file_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (cut, text) = truncated_binance(dir.path());
    let plain = dir.path().join("prefix.txt");
    std::fs::write(&plain, &text).unwrap();
    let decode = |f: &Path| {
        mdrelay()
            .args(["decode", "--venue", "binance"])
            .arg(f)
            .output()
            .unwrap()
    };
    let (want, out) = (decode(&plain), decode(&cut));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&cut.display().to_string()), "{stderr}");
    assert!(want.status.success());
    assert!(want.stdout.len() > 1_000_000);
    assert!(
        out.stdout == want.stdout,
        "everything before the cut printed"
    );
}

#[test]
fn defect8_decode_skips_a_line_over_the_cap_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("long.txt");
    let trade = br#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,"p":"1.5","q":"2","T":1,"m":false}}"#;
    write_lines(&f, &[trade.to_vec(), vec![b'x'; 5000], trade.to_vec()]);
    let out = mdrelay()
        .args(["decode", "--venue", "binance", "--max-line-bytes", "1000"])
        .arg(&f)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("{}:2: line longer than 1000 bytes, skipped", f.display())
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

/// Peak resident memory of process `pid`, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn defect8_decode_of_an_endless_line_keeps_memory_bounded() {
    let _wd = util::Watchdog::new("defect8_memory", 120);
    let mut child = mdrelay()
        .args(["decode", "--venue", "binance", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..128 {
        stdin.write_all(&chunk).unwrap();
    }
    // Still reading the same 128 MiB line: its peak memory stays near the 8 MiB cap.
    let peak = peak_rss_kib(child.id());
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(peak < 48 * 1024, "peak RSS {peak} KiB");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("-:1: line longer than 8388608 bytes, skipped"),
        "{stderr}"
    );
}

#[test]
fn defect8_replay_skips_a_line_over_the_cap_and_reports_it() {
    let _wd = util::Watchdog::new("defect8_replay", 120);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("trade.txt");
    let mut long = b"1618678140000000000 ".to_vec();
    long.resize(9 << 20, b'x');
    kraken_with_bad_line(&f, 10, long);
    let (code, stderr) = replay(dir.path(), "kraken_v1", &[&f], &["--max"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:10: line longer than 8388608 bytes, skipped",
            f.display()
        )),
        "{stderr}"
    );
    assert_eq!(summary_row(&stderr, "kraken_v1"), (49, 1), "{stderr}");
}

#[test]
fn defect9_replay_refuses_speeds_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let good = util::repo("data/kraken_v1/trade_20210417.txt.gz");
    for speed in ["1e-300", "0", "-1", "inf", "NaN", "1e300"] {
        let flag = format!("--speed={speed}");
        let out = run_bounded(
            replay_cmd(dir.path(), "kraken_v1", &[&good], &[&flag]),
            dir.path(),
            30,
        )
        .expect("exits at once");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--speed {speed}: {stderr}");
        assert!(stderr.contains("--speed"), "{stderr}");
    }
}

#[test]
fn defect9_replay_of_a_receive_time_of_u64_max_does_not_stall() {
    let _wd = util::Watchdog::new("defect9_u64_max", 120);
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<Vec<u8>> = kraken_trade_lines()
        .into_iter()
        .map(String::into_bytes)
        .collect();
    let last = lines.len() - 1;
    let msg = String::from_utf8(lines[last].clone()).unwrap();
    let (_, msg) = msg.split_once(' ').unwrap();
    lines[last] = format!("{} {msg}", u64::MAX).into_bytes();
    let f = dir.path().join("trade.txt");
    write_lines(&f, &lines);
    // The capture spans about 40 s: at speed 100, under a second, plus at most 60 s / 100 for
    // the jump to u64::MAX.
    let out = run_bounded(
        replay_cmd(dir.path(), "kraken_v1", &[&f], &["--speed", "100"]),
        dir.path(),
        30,
    )
    .expect("the replay ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(summary_row(&stderr, "kraken_v1").0, 49, "{stderr}");
}
