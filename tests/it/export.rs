//! `mdrelay export --format hftbacktest`: the bundled Binance USD-M and OKX captures exported,
//! the .npz read back (header by hand, rows with npyz), checked against `mdrelay decode`'s
//! events: dtype, row counts per timeline, flags, both timelines' order, and the book the rows
//! build equal to decode's final book. Also: several instruments need `--symbol`, `--strict`
//! refuses a recording whose book broke, a directory naming no venue needs `--venue`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

use mdrelay::export::hftbacktest::{
    Row, BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, DTYPE_FIELDS, EXCH_EVENT,
    LOCAL_EVENT, SELL_EVENT, TRADE_EVENT,
};
use mdrelay::market::fixed;

use crate::util;

fn mdrelay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mdrelay"))
}

const OKX: &str = "data/okx/books_trades_tickers_20220513.txt.gz";
const USDM: &str = "data/binance_usdm/ethusdt_20240808.txt.gz";

fn export(args: &[&str], files: &[&Path], out: &Path) -> Output {
    mdrelay()
        .args(["export", "--format", "hftbacktest"])
        .args(args)
        .args(files)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

/// The `export: …` summary line's `key=value` fields.
fn summary(out: &Output) -> BTreeMap<String, String> {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("export: "))
        .unwrap_or_else(|| panic!("no summary line: {err}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The `data.npy` of `path`: header checked against hftbacktest's loader, rows.
fn read_npz(path: &Path) -> Vec<Row> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    assert_eq!(zip.len(), 1);
    let mut bytes = Vec::new();
    zip.by_name("data.npy")
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    // hftbacktest's loader: format 1.0 only, data starting on a 64-byte boundary.
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    assert_eq!((10 + hlen) % 64, 0, "header not padded to 64 bytes");
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    let descr: String = DTYPE_FIELDS
        .iter()
        .map(|(n, t)| format!("('{n}', '{t}'), "))
        .collect();
    assert_eq!(
        descr,
        "('ev', '<u8'), ('exch_ts', '<i8'), ('local_ts', '<i8'), ('px', '<f8'), ('qty', '<f8'), \
         ('order_id', '<u8'), ('ival', '<i8'), ('fval', '<f8'), "
    );
    assert!(
        header.starts_with(&format!("{{'descr': [{descr}], 'fortran_order': False, ")),
        "{header}"
    );
    let rows = npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<Row>()
        .unwrap();
    assert_eq!((bytes.len() - 10 - hlen) / 64, rows.len());
    rows
}

/// One side of a book: price → size, both fixed-point.
type Side = BTreeMap<i64, i64>;

/// What `mdrelay decode` says about `symbol`: rows hftbacktest should get per timeline, by
/// `ev` without the timeline flags, and the final book.
struct Decoded {
    kinds: BTreeMap<u64, u64>,
    bids: Side,
    asks: Side,
}

fn decimal(v: &serde_json::Value) -> i64 {
    fixed::parse(v.as_str().unwrap()).unwrap()
}

fn decode(venue: &str, file: &Path, symbol: &str) -> Decoded {
    let out = mdrelay()
        .args(["decode", "--venue", venue])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut d = Decoded {
        kinds: BTreeMap::new(),
        bids: Side::new(),
        asks: Side::new(),
    };
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["symbol"] != symbol {
            continue;
        }
        match v["type"].as_str().unwrap() {
            "trade" => {
                let side = match v["side"].as_str().unwrap() {
                    "buy" => BUY_EVENT,
                    "sell" => SELL_EVENT,
                    s => panic!("side {s}"),
                };
                *d.kinds.entry(TRADE_EVENT | side).or_default() += 1;
            }
            "book" => {
                let kind = if v["snapshot"].as_bool().unwrap() {
                    *d.kinds.entry(DEPTH_CLEAR_EVENT).or_default() += 1;
                    d.bids.clear();
                    d.asks.clear();
                    DEPTH_SNAPSHOT_EVENT
                } else {
                    DEPTH_EVENT
                };
                for (side, key, flag) in [
                    (&mut d.bids, "bids", BUY_EVENT),
                    (&mut d.asks, "asks", SELL_EVENT),
                ] {
                    for l in v[key].as_array().unwrap() {
                        *d.kinds.entry(kind | flag).or_default() += 1;
                        let (px, qty) = (decimal(&l[0]), decimal(&l[1]));
                        if qty == 0 {
                            side.remove(&px);
                        } else {
                            side.insert(px, qty);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    d
}

/// f64 from the file → the exact fixed-point value it was converted from.
fn back(x: f64) -> i64 {
    (x * fixed::SCALE as f64).round() as i64
}

/// Everything the exported `rows` must satisfy against `d`.
fn check(rows: &[Row], d: &Decoded) {
    // Each timeline has every row decode implies, once: by kind and side, exactly.
    for flag in [EXCH_EVENT, LOCAL_EVENT] {
        let mut n = BTreeMap::<u64, u64>::new();
        for r in rows.iter().filter(|r| r.ev & flag != 0) {
            *n.entry(r.ev & !(EXCH_EVENT | LOCAL_EVENT)).or_default() += 1;
        }
        assert_eq!(n, d.kinds, "timeline {flag:#x}");
    }
    // Every row is on at least one timeline; each timeline has every row once.
    assert!(rows.iter().all(|r| r.ev & (EXCH_EVENT | LOCAL_EVENT) != 0));
    // hftbacktest's order: exch_ts over EXCH rows, local_ts over LOCAL rows, non-decreasing.
    let exch: Vec<i64> = rows
        .iter()
        .filter(|r| r.ev & EXCH_EVENT != 0)
        .map(|r| r.exch_ts)
        .collect();
    assert!(
        exch.windows(2).all(|w| w[0] <= w[1]),
        "exchange timeline out of order"
    );
    let local: Vec<i64> = rows
        .iter()
        .filter(|r| r.ev & LOCAL_EVENT != 0)
        .map(|r| r.local_ts)
        .collect();
    assert!(
        local.windows(2).all(|w| w[0] <= w[1]),
        "local timeline out of order"
    );
    assert!(rows
        .iter()
        .all(|r| r.order_id == 0 && r.ival == 0 && r.fval == 0.0));
    // The local timeline replayed into a book: decode's final book, level for level.
    let (mut bids, mut asks) = (Side::new(), Side::new());
    for r in rows.iter().filter(|r| r.ev & LOCAL_EVENT != 0) {
        let side = if r.ev & BUY_EVENT != 0 {
            &mut bids
        } else {
            &mut asks
        };
        match r.ev & 0xff {
            DEPTH_CLEAR_EVENT => {
                bids.clear();
                asks.clear();
            }
            DEPTH_EVENT | DEPTH_SNAPSHOT_EVENT => {
                let (px, qty) = (back(r.px), back(r.qty));
                // The f64 is the exact decimal's nearest double.
                assert_eq!(fixed_f64(px), r.px);
                if qty == 0 {
                    side.remove(&px);
                } else {
                    side.insert(px, qty);
                }
            }
            _ => {}
        }
    }
    assert!(!d.bids.is_empty() && !d.asks.is_empty());
    assert_eq!(bids.last_key_value(), d.bids.last_key_value(), "best bid");
    assert_eq!(asks.first_key_value(), d.asks.first_key_value(), "best ask");
    assert_eq!(bids, d.bids);
    assert_eq!(asks, d.asks);
}

fn fixed_f64(v: i64) -> f64 {
    fixed::format_fixed_places(v, fixed::DECIMALS)
        .parse()
        .unwrap()
}

#[test]
fn binance_usdm_capture_exports_to_hftbacktest_rows_that_rebuild_decodes_book() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eth.npz");
    let file = util::repo(USDM);
    let o = export(&[], &[&file], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = summary(&o);
    assert_eq!(s["output"], out.display().to_string());
    assert_eq!(
        (s["tick_size"].as_str(), s["lot_size"].as_str()),
        ("0.01", "0.001")
    );
    assert_eq!((s["gaps"].as_str(), s["parse_errors"].as_str()), ("0", "0"));
    let rows = read_npz(&out);
    assert_eq!(s["rows"], rows.len().to_string());
    let d = decode("binance_usdm", &file, "ETHUSDT");
    let trades: u64 = [TRADE_EVENT | BUY_EVENT, TRADE_EVENT | SELL_EVENT]
        .iter()
        .filter_map(|k| d.kinds.get(k))
        .sum();
    assert_eq!(s["trades"], trades.to_string());
    assert_eq!(s["skipped_quotes"], "53992");
    check(&rows, &d);
    // Binance exchange times are not monotone in receive order: some rows are split.
    assert!(s["split"].parse::<u64>().unwrap() > 0);
    assert!(!dir.path().join("eth.npz.tmp").exists());
}

#[test]
fn okx_capture_needs_a_symbol_and_exports_each_instrument() {
    let dir = tempfile::tempdir().unwrap();
    let file = util::repo(OKX);
    let out = dir.path().join("okx.npz");
    let o = export(&[], &[&file], &out);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--symbol") && err.contains("BTC-USD-220527") && err.contains("UNI-USD-SWAP"),
        "{err}"
    );
    assert!(!out.exists());
    for sym in ["BTC-USD-220527", "UNI-USD-SWAP"] {
        let o = export(&["--symbol", sym], &[&file], &out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let rows = read_npz(&out);
        check(&rows, &decode("okx", &file, sym));
    }
    let o = export(&["--symbol", "NOPE-USD"], &[&file], &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no book or trade events of NOPE-USD"));
}

#[test]
fn a_broken_book_is_reported_and_refused_by_strict() {
    // The OKX capture without one UNI-USD-SWAP update: the next checksum fails.
    let dir = tempfile::tempdir().unwrap();
    let okx = dir.path().join("okx");
    std::fs::create_dir(&okx).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(util::repo(OKX)).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut dropped = false;
    let cut: Vec<&str> = text
        .lines()
        .filter(|l| {
            let drop =
                !dropped && l.contains("\"action\":\"update\"") && l.contains("UNI-USD-SWAP");
            dropped |= drop;
            !drop
        })
        .collect();
    assert!(dropped);
    let file = okx.join("cut.txt");
    std::fs::write(&file, cut.join("\n")).unwrap();
    let out = dir.path().join("uni.npz");
    let o = export(&["--symbol", "UNI-USD-SWAP"], &[&file], &out);
    assert!(o.status.success());
    let s = summary(&o);
    assert!(
        s["checksum_mismatches"].parse::<u64>().unwrap() >= 1,
        "{s:?}"
    );
    assert!(s["may_be_bad_diffs"].parse::<u64>().unwrap() >= 1, "{s:?}");
    assert!(out.exists());
    std::fs::remove_file(&out).unwrap();
    let o = export(&["--symbol", "UNI-USD-SWAP", "--strict"], &[&file], &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(summary(&o)["output"].starts_with("none"));
    assert!(!out.exists());
    // The other instrument's book is intact: --strict passes.
    let o = export(&["--symbol", "BTC-USD-220527", "--strict"], &[&file], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
}

#[test]
fn several_files_are_read_in_order_as_one_recording() {
    // The OKX capture cut in two: the same rows as the whole.
    let dir = tempfile::tempdir().unwrap();
    let okx = dir.path().join("okx");
    std::fs::create_dir(&okx).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(util::repo(OKX)).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = (okx.join("a.txt"), okx.join("b.txt"));
    std::fs::write(&a, lines[..lines.len() / 2].join("\n")).unwrap();
    std::fs::write(&b, lines[lines.len() / 2..].join("\n")).unwrap();
    let (whole, parts) = (dir.path().join("whole.npz"), dir.path().join("parts.npz"));
    let args = ["--symbol", "BTC-USD-220527"];
    assert!(export(&args, &[&util::repo(OKX)], &whole).status.success());
    let o = export(&args, &[&a, &b], &parts);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_npz(&parts), read_npz(&whole));
}

#[test]
fn venue_comes_from_the_directory_or_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eth.txt.gz");
    std::fs::copy(util::repo(USDM), &file).unwrap();
    let out = dir.path().join("x.npz");
    let o = export(&[], &[&file], &out);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--venue"));
    let o = export(&["--venue", "nowhere"], &[&file], &out);
    assert_eq!(o.status.code(), Some(2));
    let o = mdrelay()
        .args(["export", "--format", "csv", "-o"])
        .arg(&out)
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(!out.exists());
}
