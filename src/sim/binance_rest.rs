//! Binance depth books over a recording, and their REST snapshots: `GET /binance/api/v3/depth`,
//! `GET /binance_usdm/fapi/v1/depth` and `GET /binance_coinm/dapi/v1/depth` (`?symbol=S&limit=N`).
//!
//! At load time each symbol gets a [`Timeline`]: the REST snapshot recorded in the capture and
//! every diff after it (`u` above the snapshot's `lastUpdateId`, in recording order, including
//! diffs recorded before the snapshot line arrived). The book after any number of diffs is
//! computed from the nearest checkpoint, so a snapshot can be served at any position, whatever
//! any session is doing: nothing is shared or mutated while playing. Which position a request
//! gets is the rule in `positions` (the position of the requesting host's sessions); the
//! snapshot's `lastUpdateId` is then the `u` of the last diff it contains, a diff every such
//! session has received or will receive, so both the spot rule (drop `u ≤ lastUpdateId`, the
//! next diff bridges) and the futures rule (drop `u < lastUpdateId`, that very diff bridges) sync.
//! Futures snapshots also carry `E` and `T` as Binance's do: the transaction time of the
//! recorded snapshot or of the last diff it contains (hftbacktest's converter needs `T`).
//! Served on the connection's own `replay-conn-N` thread, plain HTTP/1.1, one request per
//! connection.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use rustc_hash::FxHashMap;

use crate::feed::venue::binance::BinanceParser;
use crate::feed::venue::VenueParser;
use crate::market::book::L2Book;
use crate::market::event::{Event, Level};
use crate::market::fixed;
use crate::market::instrument::Venue;

use super::exchange::Shared;
use super::positions::snapshot_position;

/// Diffs between two stored books of a timeline: a request applies at most this many.
const CHECKPOINT_EVERY: usize = 256;

/// The REST depth path of each Binance venue on the replay exchange.
const DEPTH_PATHS: [(&str, Venue); 3] = [
    ("/binance/api/v3/depth", Venue::Binance),
    ("/binance_usdm/fapi/v1/depth", Venue::BinanceUsdm),
    ("/binance_coinm/dapi/v1/depth", Venue::BinanceCoinm),
];

/// True when the start of a request (`peek`, ≥ 32 bytes when available) is a Binance REST call
/// rather than a WebSocket upgrade.
pub(super) fn is_rest_request(peek: &[u8]) -> bool {
    [
        &b"GET /binance/api/"[..],
        b"GET /binance_usdm/fapi/",
        b"GET /binance_coinm/dapi/",
    ]
    .iter()
    .any(|p| peek.starts_with(p))
}

/// A Binance depth diff as recorded.
struct Diff {
    final_update_id: u64,
    /// `T`, ms (0: none).
    time_ms: u64,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

/// Where a recorded message sits in a depth timeline: sending it puts the client at
/// `step + 1` diffs applied on the timeline's recorded snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BookStep {
    /// Index of the timeline in [`super::source::Source::timelines`].
    pub(super) timeline: usize,
    /// Index of the diff in the timeline.
    pub(super) step: usize,
}

/// One symbol's depth book over the whole recording (see the module doc). A position is a
/// number of diffs applied on the recorded snapshot, `0..=len()`.
pub(super) struct Timeline {
    /// Upper-case symbol, as REST requests name it.
    pub(super) symbol: String,
    /// Stream names the symbol's diffs arrive on (`ethusdt@depth@100ms`): a session subscribed
    /// to one of them gets this book's diffs.
    pub(super) streams: Vec<Box<str>>,
    initial_id: u64,
    /// The recorded snapshot's `T`, ms (0: none).
    initial_time_ms: u64,
    diffs: Vec<Diff>,
    /// `checkpoints[j]`: the book after `j * CHECKPOINT_EVERY` diffs.
    checkpoints: Vec<L2Book>,
    /// The first diff at or after the replayed window's start (`len()` when none): the first
    /// diff a new session gets.
    pub(super) first_step: usize,
}

impl Timeline {
    /// Diffs after the recorded snapshot.
    pub(super) fn len(&self) -> usize {
        self.diffs.len()
    }

    /// The book after the first `n` diffs (clamped to `len()`) and its `lastUpdateId`.
    pub(super) fn book_at(&self, n: usize) -> (L2Book, u64) {
        let n = n.min(self.diffs.len());
        let j = (n / CHECKPOINT_EVERY).min(self.checkpoints.len().saturating_sub(1));
        let mut book = self.checkpoints.get(j).cloned().unwrap_or_default();
        for d in &self.diffs[j * CHECKPOINT_EVERY..n] {
            book.apply_delta(&d.bids, &d.asks);
        }
        let id = match n {
            0 => self.initial_id,
            n => self.diffs[n - 1].final_update_id,
        };
        (book, id)
    }

    /// The transaction time (`T`, ms; 0: none recorded) of the book after the first `n` diffs.
    pub(super) fn time_at(&self, n: usize) -> u64 {
        match n.min(self.diffs.len()) {
            0 => self.initial_time_ms,
            n => self.diffs[n - 1].time_ms,
        }
    }
}

#[cfg(test)]
impl Timeline {
    /// A timeline of `len` empty diffs (`u` = 1, 2, …) on `stream`.
    pub(super) fn for_tests(symbol: &str, stream: &str, len: u64, first_step: usize) -> Timeline {
        Timeline {
            symbol: symbol.into(),
            streams: vec![stream.into()],
            initial_id: 0,
            initial_time_ms: 0,
            diffs: (1..=len)
                .map(|u| Diff {
                    final_update_id: u,
                    time_ms: 0,
                    bids: Vec::new(),
                    asks: Vec::new(),
                })
                .collect(),
            checkpoints: vec![L2Book::new()],
            first_step,
        }
    }
}

/// Reads a Binance recording in order at load time: the depth diff each message carries, and
/// the recorded REST snapshot that starts each symbol's book.
#[derive(Default)]
pub(super) struct BookScan {
    parser: BinanceParser,
    /// A recorded snapshot not yet claimed by a symbol.
    pending_snapshot: Option<(L2Book, u64, u64)>,
    /// Per symbol (in order of first sight): its snapshot, and every diff with its record index
    /// and stream.
    symbols: Vec<ScannedSymbol>,
    by_name: FxHashMap<String, usize>,
}

#[derive(Default)]
struct ScannedSymbol {
    symbol: String,
    /// The recorded snapshot: book, `lastUpdateId`, `T` (ms; 0: none).
    snapshot: Option<(L2Book, u64, u64)>,
    diffs: Vec<(usize, Box<str>, Diff)>,
}

impl BookScan {
    /// Takes record `index` (`raw`, on stream `key`). A recorded REST snapshot names no symbol:
    /// it belongs to the next diff's symbol.
    pub(super) fn scan(&mut self, index: usize, key: Option<&str>, raw: &str) {
        // Only depth diffs and snapshot lines matter; the rest (most lines) is not parsed.
        if !(raw.starts_with("{\"lastUpdateId\"") || raw.contains("@depth")) {
            return;
        }
        let mut diff = None;
        let pending_snapshot = &mut self.pending_snapshot;
        let _ = self.parser.parse(raw, 0, &mut |sym, ev| {
            if let Event::Book(b) = ev {
                match (sym, b.snapshot) {
                    (None, true) => {
                        let mut book = L2Book::new();
                        book.apply_snapshot(b.bids, b.asks);
                        let t = time_ms(raw);
                        *pending_snapshot = Some((book, b.venue_sequence.unwrap_or(0), t));
                    }
                    (Some(sym), false) => {
                        diff = Some((
                            sym.to_ascii_uppercase(),
                            Diff {
                                final_update_id: b.venue_sequence.unwrap_or(0),
                                time_ms: time_ms(raw),
                                bids: b.bids.to_vec(),
                                asks: b.asks.to_vec(),
                            },
                        ))
                    }
                    _ => {}
                }
            }
        });
        let (Some((symbol, diff)), Some(key)) = (diff, key) else {
            return;
        };
        let i = *self.by_name.entry(symbol.clone()).or_insert_with(|| {
            self.symbols.push(ScannedSymbol {
                symbol,
                ..ScannedSymbol::default()
            });
            self.symbols.len() - 1
        });
        let s = &mut self.symbols[i];
        if s.snapshot.is_none() {
            s.snapshot = self.pending_snapshot.take();
        }
        s.diffs.push((index, key.into(), diff));
    }

    /// The timelines of every symbol with a recorded snapshot, and the step of every record that
    /// carries one of their diffs. `window_start`: the index of the first record replayed.
    pub(super) fn finish(self, window_start: usize) -> (Vec<Timeline>, Vec<(usize, BookStep)>) {
        let mut timelines = Vec::new();
        let mut steps = Vec::new();
        for s in self.symbols {
            let Some((initial, initial_id, initial_time_ms)) = s.snapshot else {
                continue;
            };
            let timeline = timelines.len();
            let mut streams: Vec<Box<str>> = Vec::new();
            let mut diffs = Vec::new();
            let mut checkpoints = vec![initial.clone()];
            let mut book = initial;
            let mut last = initial_id;
            let mut first_step = None;
            for (index, key, d) in s.diffs {
                if !streams.contains(&key) {
                    streams.push(key);
                }
                // Diffs the snapshot already holds, and repeats, are not book steps.
                if d.final_update_id <= last {
                    continue;
                }
                last = d.final_update_id;
                let step = diffs.len();
                if index >= window_start && first_step.is_none() {
                    first_step = Some(step);
                }
                steps.push((index, BookStep { timeline, step }));
                book.apply_delta(&d.bids, &d.asks);
                diffs.push(d);
                if diffs.len() % CHECKPOINT_EVERY == 0 {
                    checkpoints.push(book.clone());
                }
            }
            timelines.push(Timeline {
                symbol: s.symbol,
                streams,
                initial_id,
                initial_time_ms,
                first_step: first_step.unwrap_or(diffs.len()),
                diffs,
                checkpoints,
            });
        }
        (timelines, steps)
    }
}

/// Answers a depth request (see the module doc) from the book at the position `positions`
/// picks for the requesting host, then closes.
pub(super) fn serve_rest(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |k: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.to_owned())
    };
    let venue = DEPTH_PATHS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, v)| *v);
    let (status, body) = if let Some(venue) = venue {
        let symbol = param("symbol").unwrap_or_default().to_ascii_uppercase();
        let limit: usize = param("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100)
            .clamp(1, 5000);
        let found = shared
            .sources
            .iter()
            .find(|s| s.venue == venue)
            .and_then(|s| {
                let t = s.timelines.iter().position(|t| t.symbol == symbol)?;
                Some((&s.timelines[t], t))
            });
        match found {
            Some((timeline, t)) => {
                let peer = stream.peer_addr()?.ip();
                let n = snapshot_position(
                    shared.positions.of_host(venue, t, peer),
                    timeline.first_step,
                    timeline.len(),
                );
                let (book, last) = timeline.book_at(n);
                let time = (venue != Venue::Binance).then(|| timeline.time_at(n));
                ("200 OK", depth_body(&book, last, time, limit))
            }
            None => (
                "400 Bad Request",
                r#"{"code":-1121,"msg":"Invalid symbol."}"#.to_owned(),
            ),
        }
    } else {
        (
            "404 Not Found",
            r#"{"code":-1,"msg":"not found"}"#.to_owned(),
        )
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A depth snapshot as Binance writes it: the best `limit` levels a side; futures (`time`
/// given) also carry `E` and `T`.
fn depth_body(book: &L2Book, last: u64, time: Option<u64>, limit: usize) -> String {
    let side = |it: &mut dyn Iterator<Item = Level>| -> Vec<[String; 2]> {
        it.take(limit)
            .map(|l| {
                [
                    fixed::format_fixed_places(l.price, 8),
                    fixed::format_fixed_places(l.size, 8),
                ]
            })
            .collect()
    };
    let mut body = serde_json::json!({
        "lastUpdateId": last,
        "bids": side(&mut book.bids()),
        "asks": side(&mut book.asks()),
    });
    if let Some(t) = time {
        body["E"] = t.into();
        body["T"] = t.into();
    }
    body.to_string()
}

/// The `"T":` (transaction time, ms) of a recorded Binance line; 0 when it has none. The first
/// `"T":` of a futures diff or snapshot is its own (no nested object carries one).
fn time_ms(raw: &str) -> u64 {
    raw.find("\"T\":").map_or(0, |i| {
        let digits = &raw[i + 4..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_lines(lines: &[&str], window_start: usize) -> (Vec<Timeline>, Vec<(usize, BookStep)>) {
        let mut scan = BookScan::default();
        for (i, raw) in lines.iter().enumerate() {
            scan.scan(i, super::super::binance::binance_key(raw).as_deref(), raw);
        }
        scan.finish(window_start)
    }

    fn diff(u0: u64, u1: u64, bid: &str, ask: &str) -> String {
        format!(
            r#"{{"stream":"ethusdt@depth@100ms","data":{{"e":"depthUpdate","E":1,"s":"ETHUSDT","U":{u0},"u":{u1},"b":[["{bid}","1.0"]],"a":[["{ask}","2.0"]]}}}}"#
        )
    }

    #[test]
    fn timeline_starts_at_the_recorded_snapshot_and_takes_buffered_diffs_after_it() {
        let d1 = diff(1, 5, "99", "101");
        let d2 = diff(6, 12, "98", "102"); // recorded before the snapshot, u > its id
        let snap = r#"{"lastUpdateId":10,"bids":[["100","1"]],"asks":[["103","1"]]}"#;
        let d3 = diff(13, 14, "100", "104");
        let (tls, steps) = scan_lines(&[&d1, &d2, snap, &d3], 3);
        assert_eq!(tls.len(), 1);
        let t = &tls[0];
        assert_eq!(t.symbol, "ETHUSDT");
        assert_eq!(t.len(), 2, "d1 is in the snapshot; d2 and d3 are steps");
        assert_eq!(t.first_step, 1, "the window starts at d3");
        assert_eq!(
            steps,
            vec![
                (
                    1,
                    BookStep {
                        timeline: 0,
                        step: 0
                    }
                ),
                (
                    3,
                    BookStep {
                        timeline: 0,
                        step: 1
                    }
                )
            ]
        );
        assert_eq!(t.book_at(0).1, 10);
        assert_eq!(t.book_at(1).1, 12);
        assert_eq!(t.book_at(2).1, 14);
        assert_eq!(t.book_at(99).1, 14, "clamped");
        let (b, _) = t.book_at(1);
        assert_eq!(b.bids().count(), 2);
        assert_eq!(b.asks().count(), 2);
    }

    #[test]
    fn book_at_every_position_equals_sequential_application_across_checkpoints() {
        let mut lines =
            vec![r#"{"lastUpdateId":0,"bids":[["1000","1"]],"asks":[["2000","1"]]}"#.to_owned()];
        for i in 1..=(3 * CHECKPOINT_EVERY as u64 + 7) {
            let bid = 1000 + i % 50;
            let ask = 2000 - i % 50;
            lines.push(diff(i, i, &bid.to_string(), &ask.to_string()));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (tls, _) = scan_lines(&refs, 0);
        let t = &tls[0];
        let mut book = t.book_at(0).0;
        for n in 1..=t.len() {
            let d = &t.diffs[n - 1];
            book.apply_delta(&d.bids, &d.asks);
            let (at, id) = t.book_at(n);
            assert_eq!(id, n as u64);
            assert!(
                at.bids().eq(book.bids()) && at.asks().eq(book.asks()),
                "n={n}"
            );
        }
    }

    /// The bundled spot and USD-M captures: the book at every position is uncrossed, the
    /// `lastUpdateId`s strictly increase, and `book_at` agrees with applying the diffs in order.
    #[test]
    fn bundled_captures_are_never_crossed_at_any_position() {
        use crate::sim::source::{load, Window};
        for (venue, rel) in [
            (Venue::Binance, "data/binance/spot_ethusdt_20240808.txt.gz"),
            (
                Venue::BinanceUsdm,
                "data/binance_usdm/ethusdt_20240808.txt.gz",
            ),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
            let src = load(venue, &[path], Window::default()).unwrap();
            assert_eq!(src.timelines.len(), 1, "{rel}");
            let t = &src.timelines[0];
            assert!(t.len() > 3000, "{rel}: {}", t.len());
            let (mut book, mut last) = t.book_at(0);
            for n in 1..=t.len() {
                let d = &t.diffs[n - 1];
                book.apply_delta(&d.bids, &d.asks);
                let (bid, ask) = (book.best_bid().unwrap(), book.best_ask().unwrap());
                assert!(bid.price < ask.price, "{rel}: crossed at {n}");
                assert!(last < d.final_update_id, "{rel}: ids increase at {n}");
                last = d.final_update_id;
                if n % 101 == 0 || n == t.len() {
                    let (at, id) = t.book_at(n);
                    assert_eq!(id, last);
                    assert!(
                        at.bids().eq(book.bids()) && at.asks().eq(book.asks()),
                        "{n}"
                    );
                }
            }
        }
    }

    #[test]
    fn rest_paths() {
        assert!(is_rest_request(b"GET /binance/api/v3/depth?symbol=X"));
        assert!(is_rest_request(b"GET /binance_usdm/fapi/v1/depth?sym"));
        assert!(!is_rest_request(b"GET /binance/stream HTTP/1.1\r\n"));
    }
}
