//! Kraken WebSocket v2 messages converted from the Kraken v1 capture (there is no real v2
//! capture). The v1 recordings are parsed by the v1 parser and re-expressed as the v2 API would
//! have sent them, in the same `<recv_ns> <json>` layout and at the same receive times:
//! - `book-1000` snapshots/updates → v2 `book` `snapshot`/`update` at depth [`DEPTH`]: the
//!   converter keeps each pair's full (v1) book and sends what changed in its top [`DEPTH`]
//!   levels — levels entering from below included, levels deleted as `qty` 0, levels merely
//!   pushed below the depth not at all (as Kraken does; the client truncates) — with `checksum`
//!   recomputed the v2 way (CRC32 of the top 10 of the converted book at the pair's precision,
//!   [`mdrelay::feed::venue::kraken_v1::book_checksum`]). A v1 update that changes nothing within the
//!   depth sends nothing.
//! - v1 trade arrays → one v2 `trade` `update` holding every trade of the array; sides `b`/`s` →
//!   `buy`/`sell`, times → RFC 3339, `trade_id` synthesized per pair, sequential from 1 (v1 has
//!   none). `ord_type` is left out (the v1 parser does not keep it).
//! - v1 ticker → v2 `ticker` (`snapshot` first per pair, then `update`): bid/ask and their
//!   quantities; no timestamp (v1 has none).
//!
//! Pair names follow v2 spelling: `XBT` → `BTC` (`KSM/XBT` → `KSM/BTC`); others are kept.
//! Every price and quantity is a JSON number written with exactly the pair's precision (trailing
//! zeros kept), the precision being the most decimals the v1 capture writes for that pair, so
//! the replay exchange derives the same precisions for its `instrument` snapshot.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use mdrelay::base::timefmt::format_rfc3339_ns;
use mdrelay::feed::venue::kraken_v1::{book_checksum, KrakenV1Parser};
use mdrelay::feed::venue::VenueParser;
use mdrelay::market::book::L2Book;
use mdrelay::market::event::{Event, Level, Quote, Side, Trade};
use mdrelay::market::fixed::format_fixed_places;
use mdrelay::persist::recording;

/// Book depth of the converted stream (a v2 depth: 10, 25, 100, 500 or 1000). Deeper than the
/// 10 checksummed levels, so truncation below the checksum window is exercised.
pub const DEPTH: usize = 25;

/// The v1 capture files, in the order the replay exchange merges them.
pub fn v1_files() -> Vec<PathBuf> {
    vec![
        super::fixture("kraken_v1/book1000_20210417.txt.gz"),
        super::fixture("kraken_v1/trade_20210417.txt.gz"),
        super::fixture("kraken_v1/ticker_20210417.txt.gz"),
    ]
}

/// A converted recording and what it holds.
pub struct Converted {
    /// The v2 recording (`<recv_ns> <json>` lines, plain text).
    pub path: PathBuf,
    /// Every v2 symbol of the recording.
    pub symbols: Vec<String>,
    /// (price_precision, qty_precision) per v2 symbol.
    pub precisions: BTreeMap<String, (u32, u32)>,
    /// Trades per v2 symbol, in order, as converted (with the synthesized ids).
    pub trades: BTreeMap<String, Vec<Trade>>,
    /// Quotes per v2 symbol, in order.
    pub quotes: BTreeMap<String, Vec<Quote>>,
    /// The converted (depth-[`DEPTH`]) book per v2 symbol at the end of the recording.
    pub books: BTreeMap<String, L2Book>,
    /// v2 book messages written (snapshots + updates), each with a checksum.
    pub book_messages: usize,
    /// v1 trades seen, for the check that none was lost in conversion.
    pub v1_trades: usize,
    _dir: tempfile::TempDir,
}

/// v2 spelling of a v1 pair.
pub fn v2_symbol(v1_pair: &str) -> String {
    v1_pair
        .split('/')
        .map(|a| if a == "XBT" { "BTC" } else { a })
        .collect::<Vec<_>>()
        .join("/")
}

/// Decimals written in a v1 decimal string.
fn text_decimals(s: &str) -> u32 {
    s.split_once('.').map_or(0, |(_, f)| f.len() as u32)
}

/// The fewest decimals that write `v` (1e-8 fixed point) exactly.
fn value_decimals(v: i64) -> u32 {
    let mut v = v.unsigned_abs();
    if v == 0 {
        return 0;
    }
    let mut d = 8;
    while d > 0 && v % 10 == 0 {
        v /= 10;
        d -= 1;
    }
    d
}

/// Raises `prec[pair]` to the decimals the v1 message `raw` writes in that pair's prices and
/// quantities (book levels, trades, ticker best bid/ask).
fn v1_text_precisions(raw: &str, prec: &mut BTreeMap<String, (u32, u32)>) {
    let Ok(serde_json::Value::Array(v)) = serde_json::from_str::<serde_json::Value>(raw) else {
        return;
    };
    let n = v.len();
    if n < 4 {
        return;
    }
    let (Some(name), Some(pair)) = (v[n - 2].as_str(), v[n - 1].as_str()) else {
        return;
    };
    let (mut pp, mut qp) = (0, 0);
    let mut see = |row: &serde_json::Value, p: usize, q: usize| {
        if let Some(s) = row.get(p).and_then(|x| x.as_str()) {
            pp = pp.max(text_decimals(s));
        }
        if let Some(s) = row.get(q).and_then(|x| x.as_str()) {
            qp = qp.max(text_decimals(s));
        }
    };
    for payload in &v[1..n - 2] {
        if name.starts_with("book") {
            for side in ["as", "bs", "a", "b"] {
                for row in payload
                    .get(side)
                    .and_then(|x| x.as_array())
                    .into_iter()
                    .flatten()
                {
                    see(row, 0, 1);
                }
            }
        } else if name == "trade" {
            for row in payload.as_array().into_iter().flatten() {
                see(row, 0, 1);
            }
        } else if name == "ticker" {
            for side in ["a", "b"] {
                if let Some(row) = payload.get(side) {
                    see(row, 0, 2);
                }
            }
        }
    }
    let e = prec.entry(v2_symbol(pair)).or_insert((0, 0));
    *e = (e.0.max(pp), e.1.max(qp));
}

/// An event of the v1 parser, owned.
enum V1Event {
    Book {
        snapshot: bool,
        bids: Vec<Level>,
        asks: Vec<Level>,
        ts: Option<u64>,
    },
    Trade(Trade),
    Quote(Quote),
}

/// `v` as a JSON number with exactly `places` decimals.
fn num(v: i64, places: u32) -> String {
    format_fixed_places(v, places)
}

fn levels_json(out: &mut String, levels: &[Level], pp: u32, qp: u32) {
    out.push('[');
    for (i, l) in levels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"price":{},"qty":{}}}"#,
            num(l.price, pp),
            num(l.size, qp)
        );
    }
    out.push(']');
}

/// The top `DEPTH` levels of `book`.
fn top(book: &L2Book) -> (Vec<Level>, Vec<Level>) {
    (
        book.bids().take(DEPTH).collect(),
        book.asks().take(DEPTH).collect(),
    )
}

/// What changed from `old` to `new` (top levels of one side, best first), given the full side
/// after the change (`still`: is a price still in the full book): changed or entering levels
/// with their size, deleted levels with size 0; levels pushed below the depth are not sent.
fn side_diff(old: &[Level], new: &[Level], still: impl Fn(i64) -> bool) -> Vec<Level> {
    let mut out = Vec::new();
    for l in new {
        if !old.contains(l) {
            out.push(*l);
        }
    }
    for l in old {
        if !new.iter().any(|n| n.price == l.price) && !still(l.price) {
            out.push(Level {
                price: l.price,
                size: 0,
            });
        }
    }
    out
}

/// Converts the v1 capture into a v2 recording in a fresh temporary directory.
pub fn convert_v1_capture() -> Converted {
    let mut lines = Vec::new();
    for f in v1_files() {
        lines.extend(recording::read_all(&f).expect("read v1 capture"));
    }
    // The replay exchange's merge: by receive time, stable.
    lines.sort_by_key(|r| r.recv_ns.unwrap_or(0));

    // Pass 1: v1 events per line, and each pair's precision.
    let mut parser = KrakenV1Parser::new();
    let mut prec: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut per_line: Vec<(u64, Vec<(String, V1Event)>)> = Vec::new();
    for r in &lines {
        v1_text_precisions(&r.raw, &mut prec);
        let mut evs = Vec::new();
        let _ = parser.parse(&r.raw, 0, &mut |sym, ev| {
            let Some(sym) = sym else { return };
            let ev = match ev {
                Event::Book(b) => {
                    assert!(!b.may_be_bad, "the v1 capture's books verify");
                    V1Event::Book {
                        snapshot: b.snapshot,
                        bids: b.bids.to_vec(),
                        asks: b.asks.to_vec(),
                        ts: b.exchange_ts_ns,
                    }
                }
                Event::Trade(t) => V1Event::Trade(*t),
                Event::Quote(q) => V1Event::Quote(*q),
                Event::Status(_)
                | Event::Mark(_)
                | Event::Liquidation(_)
                | Event::OpenInterest(_) => return,
            };
            evs.push((v2_symbol(sym), ev));
        });
        if !evs.is_empty() {
            per_line.push((r.recv_ns.unwrap_or(0), evs));
        }
    }
    // Values must be writable at the precision.
    for (_, evs) in &per_line {
        for (sym, ev) in evs {
            let e = prec.entry(sym.clone()).or_insert((0, 0));
            let (ps, qs): (Vec<i64>, Vec<i64>) = match ev {
                V1Event::Book { bids, asks, .. } => {
                    bids.iter().chain(asks).map(|l| (l.price, l.size)).unzip()
                }
                V1Event::Trade(t) => (vec![t.price], vec![t.size]),
                V1Event::Quote(q) => (vec![q.bid_price, q.ask_price], vec![q.bid_size, q.ask_size]),
            };
            e.0 = ps.into_iter().map(value_decimals).fold(e.0, u32::max);
            e.1 = qs.into_iter().map(value_decimals).fold(e.1, u32::max);
        }
    }

    // Pass 2: v2 messages.
    let dir = tempfile::Builder::new()
        .prefix("mdrelay-kraken-v2-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join("kraken_v2_converted.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut full: BTreeMap<String, L2Book> = BTreeMap::new();
    let mut books: BTreeMap<String, L2Book> = BTreeMap::new();
    let mut trades: BTreeMap<String, Vec<Trade>> = BTreeMap::new();
    let mut quotes: BTreeMap<String, Vec<Quote>> = BTreeMap::new();
    let (mut book_messages, mut v1_trades) = (0, 0);
    for (recv_ns, evs) in per_line {
        let mut trade_data = Vec::new();
        for (sym, ev) in evs {
            let (pp, qp) = prec[&sym];
            match ev {
                V1Event::Book {
                    snapshot,
                    bids,
                    asks,
                    ts,
                } => {
                    let fb = full.entry(sym.clone()).or_default();
                    let (old_bids, old_asks) = top(fb);
                    if snapshot {
                        fb.apply_snapshot(&bids, &asks);
                    } else {
                        fb.apply_delta(&bids, &asks);
                    }
                    let (new_bids, new_asks) = top(fb);
                    let (send_bids, send_asks) = if snapshot {
                        (new_bids.clone(), new_asks.clone())
                    } else {
                        let fb = &*fb;
                        let has = |side, p| fb.size_at(side, p).is_some();
                        (
                            side_diff(&old_bids, &new_bids, |p| {
                                has(mdrelay::market::book::BookSide::Bid, p)
                            }),
                            side_diff(&old_asks, &new_asks, |p| {
                                has(mdrelay::market::book::BookSide::Ask, p)
                            }),
                        )
                    };
                    if !snapshot && send_bids.is_empty() && send_asks.is_empty() {
                        continue;
                    }
                    let b = books.entry(sym.clone()).or_default();
                    if snapshot {
                        b.apply_snapshot(&send_bids, &send_asks);
                    } else {
                        b.apply_delta(&send_bids, &send_asks);
                    }
                    b.truncate(DEPTH);
                    assert_eq!(b.bids().collect::<Vec<_>>(), new_bids);
                    assert_eq!(b.asks().collect::<Vec<_>>(), new_asks);
                    let checksum = book_checksum(b, pp, qp);
                    let mut m = format!(
                        r#"{{"channel":"book","type":"{}","data":[{{"symbol":"{sym}","bids":"#,
                        if snapshot { "snapshot" } else { "update" }
                    );
                    levels_json(&mut m, &send_bids, pp, qp);
                    m.push_str(r#","asks":"#);
                    levels_json(&mut m, &send_asks, pp, qp);
                    let _ = write!(m, r#","checksum":{checksum}"#);
                    let _ = write!(
                        m,
                        r#","timestamp":"{}"}}]}}"#,
                        format_rfc3339_ns(ts.unwrap_or(recv_ns))
                    );
                    writeln!(file, "{recv_ns} {m}").expect("write");
                    book_messages += 1;
                }
                V1Event::Trade(t) => {
                    v1_trades += 1;
                    let list = trades.entry(sym.clone()).or_default();
                    let t = Trade {
                        trade_id: Some(list.len() as u64 + 1),
                        ..t
                    };
                    list.push(t);
                    trade_data.push(format!(
                        r#"{{"symbol":"{sym}","side":"{}","price":{},"qty":{},"trade_id":{},"timestamp":"{}"}}"#,
                        match t.side {
                            Side::Buy => "buy",
                            Side::Sell => "sell",
                            Side::Unknown => panic!("v1 trades have a side"),
                        },
                        num(t.price, pp),
                        num(t.size, qp),
                        t.trade_id.unwrap_or(0),
                        format_rfc3339_ns(t.exchange_ts_ns.expect("v1 trades have a time")),
                    ));
                }
                V1Event::Quote(q) => {
                    let list = quotes.entry(sym.clone()).or_default();
                    let kind = if list.is_empty() {
                        "snapshot"
                    } else {
                        "update"
                    };
                    // v2 as written here carries no ticker time.
                    list.push(Quote {
                        exchange_ts_ns: None,
                        ..q
                    });
                    writeln!(
                        file,
                        r#"{recv_ns} {{"channel":"ticker","type":"{kind}","data":[{{"symbol":"{sym}","bid":{},"bid_qty":{},"ask":{},"ask_qty":{}}}]}}"#,
                        num(q.bid_price, pp),
                        num(q.bid_size, qp),
                        num(q.ask_price, pp),
                        num(q.ask_size, qp),
                    )
                    .expect("write");
                }
            }
        }
        if !trade_data.is_empty() {
            writeln!(
                file,
                r#"{recv_ns} {{"channel":"trade","type":"update","data":[{}]}}"#,
                trade_data.join(",")
            )
            .expect("write");
        }
    }
    file.flush().expect("flush");
    Converted {
        path,
        symbols: prec.keys().cloned().collect(),
        precisions: prec,
        trades,
        quotes,
        books,
        book_messages,
        v1_trades,
        _dir: dir,
    }
}
