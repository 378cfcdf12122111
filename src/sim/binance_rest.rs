//! Binance REST depth snapshots, spot and futures: `GET /binance/api/v3/depth`,
//! `GET /binance_usdm/fapi/v1/depth` and `GET /binance_coinm/dapi/v1/depth` (`?symbol=S&limit=N`)
//! answer a depth snapshot taken from a book the exchange keeps per venue at its replay
//! position: it starts from the snapshot recorded in the capture and applies each diff as it is
//! sent, so a snapshot is consistent whenever a client asks (its `lastUpdateId` is the `u` of the
//! last diff applied, which both the spot and the futures sync rules bridge from). Futures
//! snapshots also carry `E` and `T` as Binance's do (the transaction time of the recorded
//! snapshot or of the last diff applied; hftbacktest's converter needs `T`). Served on the
//! connection's own `replay-conn-N` thread, plain HTTP/1.1, one request per connection.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::feed::venue::binance::BinanceParser;
use crate::feed::venue::VenueParser;
use crate::market::book::L2Book;
use crate::market::event::{Event, Level};
use crate::market::fixed;
use crate::market::instrument::Venue;

/// Symbol → (book, lastUpdateId, transaction time `T` in ms or 0 when the recording has none).
pub(super) type Books = FxHashMap<String, (L2Book, u64, u64)>;

/// The REST books of every Binance venue (spot, USD-M, COIN-M): the same symbol on two venues is
/// two books.
pub(super) type VenueBooks = FxHashMap<Venue, Books>;

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

/// A Binance depth diff as recorded, for the exchange's own book.
pub(super) struct Diff {
    symbol: Box<str>,
    final_update_id: u64,
    /// `T`, ms (0: none).
    time_ms: u64,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

/// Reads a Binance recording in order at load time: the depth diff each message carries, and
/// the recorded REST snapshot that starts each symbol's book.
#[derive(Default)]
pub(super) struct BookScan {
    parser: BinanceParser,
    /// A recorded snapshot not yet claimed by a symbol.
    pending_snapshot: Option<(L2Book, u64, u64)>,
    /// The first recorded snapshot of each symbol, the start of every session.
    pub(super) initial_books: Books,
}

impl BookScan {
    /// The depth diff `raw` carries, if any. A recorded REST snapshot names no symbol: it belongs
    /// to the next diff's symbol.
    pub(super) fn scan(&mut self, raw: &str) -> Option<Diff> {
        // Only depth diffs and snapshot lines matter; the rest (most lines) is not parsed.
        if !(raw.starts_with("{\"lastUpdateId\"") || raw.contains("@depth")) {
            return None;
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
                        diff = Some(Diff {
                            symbol: sym.into(),
                            final_update_id: b.venue_sequence.unwrap_or(0),
                            time_ms: time_ms(raw),
                            bids: b.bids.to_vec(),
                            asks: b.asks.to_vec(),
                        })
                    }
                    _ => {}
                }
            }
        });
        if let (Some(d), Some(_)) = (&diff, &self.pending_snapshot) {
            if let Some(snap) = self.pending_snapshot.take() {
                self.initial_books
                    .entry(d.symbol.to_string())
                    .or_insert(snap);
            }
        }
        diff
    }
}

/// Applies a diff just sent to its symbol's book of `venue`, unless the book is already past it.
pub(super) fn apply(books: &Mutex<VenueBooks>, venue: Venue, d: &Diff) {
    let mut books = books.lock();
    let book = books.get_mut(&venue).and_then(|b| b.get_mut(&*d.symbol));
    if let Some((book, last, t)) = book {
        if d.final_update_id > *last {
            book.apply_delta(&d.bids, &d.asks);
            *last = d.final_update_id;
            *t = d.time_ms;
        }
    }
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

/// Answers a depth request (see the module doc) from the venue's REST book, then closes.
pub(super) fn serve_rest(mut stream: TcpStream, books: &Mutex<VenueBooks>) -> io::Result<()> {
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
        let books = books.lock();
        match books.get(&venue).and_then(|b| b.get(&symbol)) {
            Some((book, last, t)) => {
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
                if venue != Venue::Binance {
                    body["E"] = (*t).into();
                    body["T"] = (*t).into();
                }
                let body = body.to_string();
                ("200 OK", body)
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
