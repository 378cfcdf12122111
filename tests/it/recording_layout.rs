//! Raw recording layouts (issue 18), through the real relay: the bundled Binance USD-M capture
//! served by the replay exchange, recorded by the `binance_usdm` collector.
//!
//! - `hftbacktest`: one file per symbol per UTC day, `<dir>/binance_usdm/<feed>/ethusdt_<day>.gz`,
//!   holding market data and the REST snapshot only (no subscribe ack), every stream message of
//!   the capture exactly once and in order. (`make interop` runs hftbacktest itself on it.)
//! - `mdrelay` (the default): unchanged, one file per feed per day with everything received,
//!   the ack included.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mdrelay::market::instrument::Venue;
use mdrelay::persist::recording::{self, Record};
use mdrelay::run;

use crate::util;

fn capture() -> PathBuf {
    util::fixture("binance_usdm/ethusdt_20240808.txt.gz")
}

fn is_stream(l: &Record) -> bool {
    l.raw.starts_with("{\"stream\":\"ethusdt@")
}

fn is_snapshot(l: &Record) -> bool {
    l.raw.contains("\"lastUpdateId\":") && l.raw.contains("\"bids\":[")
}

/// Records the capture with `layout` under `raw`; returns the summary's raw counters
/// (recorded, dropped).
fn record(raw: &Path, layout: &str) -> (Option<u64>, u64) {
    let stream_lines = recording::read_all(&capture())
        .unwrap()
        .iter()
        .filter(|l| is_stream(l))
        .count() as u64;
    let exchange =
        util::replay_exchange(&[(Venue::BinanceUsdm, vec![capture()])], 0.0, false, false);
    let (_dir, sock) = util::temp_socket();
    let e = exchange.local_addr();
    let sets: Vec<String> = vec![
        "replay.enabled=false".into(),
        "http.listen=\"127.0.0.1:0\"".into(),
        "consumer.idle=\"park\"".into(),
        format!("relay.socket_path={:?}", sock.display().to_string()),
        "feeds.binance.enabled=false".into(),
        "feeds.coinbase.enabled=false".into(),
        "feeds.kraken_v1.enabled=false".into(),
        format!("feeds.binance_usdm.url=\"ws://{e}/binance_usdm/stream\""),
        format!("feeds.binance_usdm.rest_url=\"http://{e}/binance_usdm\""),
        "feeds.binance_usdm.record=true".into(),
        // The exchange idles at the end of the capture: no stale reconnect (a second playing).
        "feeds.binance_usdm.stale_after_ms=86400000".into(),
        format!("recording.dir={:?}", raw.display().to_string()),
        format!("recording.layout={layout:?}"),
    ];
    let relay = run::start(util::config(&sets)).unwrap();
    assert!(util::wait_until(Duration::from_secs(240), || {
        let c = &relay.feed_stats(0).unwrap().collector;
        c.frames.get() - c.control.get() >= stream_lines
    }));
    let s = relay.shutdown();
    (s.persistence.raw_recorded, s.persistence.raw_dropped)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

/// The `YYYYMMDD` of a receive time.
fn day_of(ns: u64) -> String {
    mdrelay::base::timefmt::utc_date(ns).replace('-', "")
}

/// Checks the stream messages of `lines` are those of the capture, exactly once, in order, and
/// the receive times never go backwards and all fall on `day`.
fn check_lines(lines: &[Record], day: &str) {
    let want: Vec<String> = recording::read_all(&capture())
        .unwrap()
        .into_iter()
        .filter(is_stream)
        .map(|l| l.raw)
        .collect();
    let got: Vec<&str> = lines
        .iter()
        .filter(|l| is_stream(l))
        .map(|l| l.raw.as_str())
        .collect();
    assert_eq!(got.len(), want.len(), "every stream message once");
    assert!(
        got.iter().zip(&want).all(|(g, w)| g == w),
        "in order, byte for byte"
    );
    let ts: Vec<u64> = lines.iter().map(|l| l.recv_ns.unwrap()).collect();
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "receive times in order"
    );
    assert!(
        ts.iter().all(|t| day_of(*t) == day),
        "all lines on the file's UTC day"
    );
}

#[test]
fn hftbacktest_layout_is_one_file_per_symbol_with_market_data_and_snapshots_only() {
    let _wd = util::Watchdog::new("recording_layout_hft", 300);
    let work = tempfile::tempdir().unwrap();
    let raw = work.path().join("raw");
    let (recorded, dropped) = record(&raw, "hftbacktest");
    assert_eq!(dropped, 0);

    // <dir>/<venue>/<feed>/<symbol>_<YYYYMMDD>.gz, and nothing else.
    assert_eq!(files_under(&raw), vec![raw.join("binance_usdm")]);
    let feed_dir = raw.join("binance_usdm").join("binance_usdm");
    assert_eq!(
        files_under(&raw.join("binance_usdm")),
        vec![feed_dir.clone()]
    );
    let files = files_under(&feed_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    let day = name
        .strip_prefix("ethusdt_")
        .and_then(|n| n.strip_suffix(".gz"))
        .unwrap_or_else(|| panic!("{name}"));
    assert_eq!(day.len(), 8);

    let lines = recording::read_all(&files[0]).unwrap();
    assert_eq!(recorded, Some(lines.len() as u64));
    // Market data and REST snapshots only: no ack, nothing else.
    let snapshots = lines.iter().filter(|l| is_snapshot(l)).count();
    assert!(snapshots >= 1, "the REST snapshot the collector fetched");
    assert!(
        lines.iter().all(|l| is_stream(l) || is_snapshot(l)),
        "{:?}",
        lines.iter().find(|l| !is_stream(l) && !is_snapshot(l))
    );
    assert!(!lines.iter().any(|l| l.raw.contains("\"result\"")));
    // hftbacktest's converter reads `T` from a futures snapshot and slices 19 digits of time.
    assert!(lines
        .iter()
        .filter(|l| is_snapshot(l))
        .all(|l| l.raw.contains("\"T\":")));
    assert!(lines
        .iter()
        .all(|l| l.recv_ns.unwrap().to_string().len() == 19));
    check_lines(&lines, day);
}

#[test]
fn mdrelay_layout_is_unchanged_one_file_per_feed_with_everything() {
    let _wd = util::Watchdog::new("recording_layout_mdrelay", 300);
    let work = tempfile::tempdir().unwrap();
    let raw = work.path().join("raw");
    let (recorded, dropped) = record(&raw, "mdrelay");
    assert_eq!(dropped, 0);

    let files = files_under(&raw.join("binance_usdm"));
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    let day = name
        .strip_prefix("binance_usdm_")
        .and_then(|n| n.strip_suffix(".txt.gz"))
        .unwrap_or_else(|| panic!("{name}"));
    let lines = recording::read_all(&files[0]).unwrap();
    assert_eq!(recorded, Some(lines.len() as u64));
    // Everything received: the subscribe ack first, then the streams and the REST snapshot.
    assert_eq!(lines[0].raw, r#"{"id":1,"result":null}"#);
    assert!(lines.iter().any(is_snapshot));
    assert_eq!(
        lines
            .iter()
            .filter(|l| !is_stream(l) && !is_snapshot(l))
            .count(),
        1,
        "the ack is the only other line"
    );
    check_lines(&lines, day);
}
