//! One function per fuzz target: bytes in, the library's own entry point called on them, and the
//! cheap properties that must hold checked with `assert!`. A panic is the finding.
//!
//! The libFuzzer targets (`fuzz/fuzz_targets/*.rs`, nightly, `make fuzz`) call these, and the
//! stable test `tests/it/fuzz_corpus.rs` includes this very file and replays every committed
//! input of `fuzz/corpus/<target>/` through them in `make test`: the two can never disagree about
//! what an input means. Only mdrelay's public API and its own dependencies (`serde_json`,
//! `flate2`) are used, so the file compiles in both crates.
//!
//! Input layouts (the first byte of some targets is a mode byte, so the fuzzer can reach code
//! behind a CRC or pick a reader configuration; seeds set it):
//! - `frame_decoder`: byte 0 bit 0 = reseal every frame's CRC first; the rest is a byte stream.
//! - `subscription`: the same mode byte, then request frames.
//! - `venue_*`: recording lines (`<recv_ns> <message>` or a bare message), fed in order to one
//!   parser, as `mdrelay replay` does; a Binance `{"lastUpdateId"…` line answers the oldest
//!   REST snapshot request; a line `DISCONNECT` calls `on_disconnect`.
//! - `http_request`: the bytes a client sends.
//! - `config_loader`: a TOML file; its comment lines `#set key=value` are also `--set` flags.
//! - `line_reader`: byte 0 = line cap (1..=64), byte 1 = read-buffer size (1..=64), byte 2 bit 0
//!   = gzip; the rest is the file.

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use mdrelay::config::{self, ConfigError, Sources};
use mdrelay::consumer::snapshot::{BookView, QueryState, SharedQuery};
use mdrelay::feed::venue::{self, VenueParser};
use mdrelay::market::event::{BookUpdate, Event, Level, Quote, Side, Trade};
use mdrelay::market::fixed::{self, Decimal, ABSENT};
use mdrelay::market::instrument::Venue;
use mdrelay::persist::recording::{self, BadLine, LineReader};
use mdrelay::serve::http::{self, Request, Response};
use mdrelay::serve::query;
use mdrelay::wire::derivatives;
use mdrelay::wire::json::{self, Origin};
use mdrelay::wire::protocol::{self, DecodeError, FrameBuf, Message, Meta, MsgType};
use mdrelay::wire::subscription::{self, Request as SubRequest};

/// A target: its name (the `fuzz/fuzz_targets/<name>.rs` file and `fuzz/corpus/<name>/` folder)
/// and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("frame_decoder", frame_decoder),
    ("subscription", subscription),
    ("venue_binance", venue_binance),
    ("venue_coinbase", venue_coinbase),
    ("venue_kraken", venue_kraken),
    ("venue_kraken_v1", venue_kraken_v1),
    ("venue_binance_usdm", venue_binance_usdm),
    ("venue_okx", venue_okx),
    ("venue_bybit", venue_bybit),
    ("venue_gemini", venue_gemini),
    ("venue_hyperliquid", venue_hyperliquid),
    ("http_request", http_request),
    ("config_loader", config_loader),
    ("line_reader", line_reader),
];

// ---------------------------------------------------------------------------------------------
// Frames

/// Rewrites the CRC of every whole frame in `b` (walking by each header's length), so mutated
/// headers and payloads reach the payload decoders instead of stopping at the CRC check.
fn reseal_all(b: &mut [u8]) {
    let mut at = 0;
    while at < b.len() {
        let Ok(n) = protocol::frame_len(&b[at..]) else {
            return;
        };
        if at + n > b.len() {
            return;
        }
        protocol::reseal(&mut b[at..at + n]);
        at += n;
    }
}

/// The header fields an encoder takes back.
fn meta_of(h: &protocol::Header) -> Meta {
    Meta {
        instrument_id: h.instrument_id,
        sequence: h.sequence,
        recv_ts_ns: h.recv_ts_ns,
        flags: h.flags,
    }
}

/// Decodes the one frame in `buf`, which must be whole and valid.
fn decode_one(buf: &[u8]) -> (protocol::FrameRef<'_>, Message<'_>) {
    let (f, n) = protocol::decode_frame(buf).expect("a frame the encoder wrote decodes");
    assert_eq!(n, buf.len(), "encoded frame length");
    let m = f.message().expect("a payload the encoder wrote decodes");
    (f, m)
}

/// Property: a decoded message, encoded again with the same header fields, decodes to the same
/// message (field by field where the encoder normalizes: the price exponent, reserved bytes).
fn reencode(f: &protocol::FrameRef<'_>, m: &Message<'_>) {
    let h = f.header;
    let meta = meta_of(&h);
    let mut buf = FrameBuf::new();
    match *m {
        Message::InstrumentDef { venue, symbol, .. } => {
            protocol::encode_instrument_def(&mut buf, &meta, venue, symbol);
            match decode_one(&buf).1 {
                Message::InstrumentDef {
                    venue: v,
                    symbol: s,
                    ..
                } => assert_eq!((v, s), (venue, symbol)),
                other => panic!("InstrumentDef re-decoded as {other:?}"),
            }
        }
        Message::Trade(t) => {
            protocol::encode_trade(&mut buf, &meta, &t);
            assert_eq!(decode_one(&buf).1, Message::Trade(t));
        }
        Message::Quote(q) => {
            protocol::encode_quote(&mut buf, &meta, &q);
            assert_eq!(decode_one(&buf).1, Message::Quote(q));
        }
        Message::Status { venue, status } => {
            protocol::encode_status(&mut buf, &meta, venue, &status);
            assert_eq!(decode_one(&buf).1, Message::Status { venue, status });
        }
        Message::Bar(b) => {
            protocol::encode_bar(&mut buf, &meta, &b);
            assert_eq!(decode_one(&buf).1, Message::Bar(b));
        }
        Message::Mark {
            mark,
            kind_sequence,
        } => {
            derivatives::encode_mark(&mut buf, &meta, kind_sequence, &mark);
            assert_eq!(decode_one(&buf).1, *m);
        }
        Message::Liquidation {
            liquidation,
            kind_sequence,
        } => {
            derivatives::encode_liquidation(&mut buf, &meta, kind_sequence, &liquidation);
            assert_eq!(decode_one(&buf).1, *m);
        }
        Message::OpenInterest {
            open_interest,
            kind_sequence,
        } => {
            derivatives::encode_open_interest(&mut buf, &meta, kind_sequence, &open_interest);
            assert_eq!(decode_one(&buf).1, *m);
        }
        Message::Book(b) => {
            let bids: Vec<Level> = b.bids().collect();
            let asks: Vec<Level> = b.asks().collect();
            let update = BookUpdate {
                snapshot: h.msg_type == MsgType::BookSnapshot as u8,
                bids: &bids,
                asks: &asks,
                venue_sequence: (b.venue_sequence != 0).then_some(b.venue_sequence),
                exchange_ts_ns: (h.exchange_ts_ns != 0).then_some(h.exchange_ts_ns),
                may_be_bad: h.flags & protocol::flags::BOOK_MAY_BE_BAD != 0,
            };
            protocol::encode_book(&mut buf, &meta, &update);
            let (f2, m2) = decode_one(&buf);
            assert_eq!(f2.header.msg_type, h.msg_type);
            let Message::Book(b2) = m2 else {
                panic!("Book re-decoded as {m2:?}");
            };
            assert_eq!(b2.venue_sequence, b.venue_sequence);
            assert!(b2.bids().eq(bids.iter().copied()));
            assert!(b2.asks().eq(asks.iter().copied()));
        }
        Message::Heartbeat => {
            protocol::encode_heartbeat(&mut buf, h.recv_ts_ns);
            assert_eq!(decode_one(&buf).1, Message::Heartbeat);
        }
        Message::Unknown(code) => {
            protocol::encode_raw(&mut buf, code, &meta, f.payload);
            let (f2, m2) = decode_one(&buf);
            assert_eq!(m2, Message::Unknown(code));
            assert_eq!(f2.payload, f.payload);
        }
        // Message kinds added later (derivatives) get the decode checks only, until listed here.
        #[allow(unreachable_patterns)]
        _ => return,
    }
    if !matches!(m, Message::Heartbeat) {
        let h2 = protocol::peek_header(&buf);
        assert_eq!(
            (h2.instrument_id, h2.sequence, h2.recv_ts_ns),
            (h.instrument_id, h.sequence, h.recv_ts_ns)
        );
    }
}

/// Decodes a byte stream frame by frame as a client reads the relay socket: every frame's
/// message, the round trip of every message, and the error contract of `Incomplete`.
fn decode_stream(bytes: &[u8]) {
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        match protocol::decode_frame(rest) {
            Ok((f, n)) => {
                assert_eq!(protocol::frame_len(rest), Ok(n));
                assert_eq!(
                    n,
                    protocol::HEADER_LEN + f.payload.len() + protocol::TRAILER_LEN
                );
                assert_eq!(f.header.payload_len as usize, f.payload.len());
                if let Ok(m) = f.message() {
                    reencode(&f, &m);
                }
                at += n;
            }
            Err(DecodeError::Incomplete { needed }) => {
                assert!(needed > rest.len(), "Incomplete asks for {needed} bytes");
                return;
            }
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
    }
}

/// Target `frame_decoder`: [`protocol::decode_frame`] and [`protocol::FrameRef::message`].
pub fn frame_decoder(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut b = rest.to_vec();
    if mode & 1 != 0 {
        reseal_all(&mut b);
    }
    decode_stream(&b);
}

// ---------------------------------------------------------------------------------------------
// Subscription requests

/// Target `subscription`: [`subscription::parse_request`] on each frame of the input, as the
/// relay's acceptor reads them; a parsed request encodes back to itself, and its filter matches
/// its own venue and (glob) symbol.
pub fn subscription(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut b = rest.to_vec();
    if mode & 1 != 0 {
        reseal_all(&mut b);
    }
    let mut at = 0;
    loop {
        let frame = &b[at..];
        let n = protocol::frame_len(frame).ok();
        let one = n.map_or(frame, |n| &frame[..n.min(frame.len())]);
        match subscription::parse_request(one) {
            Ok(req) => {
                let (SubRequest::Subscribe(f) | SubRequest::Unsubscribe(f)) = &req;
                let mut buf = FrameBuf::new();
                let sub = matches!(req, SubRequest::Subscribe(_));
                subscription::encode_request(&mut buf, sub, f);
                assert_eq!(subscription::parse_request(&buf), Ok(req.clone()));
                assert!(f.kinds != 0, "a filter's kinds are never 0");
                assert!(subscription::glob(f.symbol.as_bytes(), f.symbol.as_bytes()));
                let v = if f.venue.is_empty() { "x" } else { &f.venue };
                assert!(f.matches(v, &f.symbol));
                // A literal symbol only matches itself.
                if !f.symbol.contains(['*', '?']) && !f.symbol.is_empty() {
                    assert!(!f.matches(v, &format!("{}x", f.symbol)));
                }
                let _ = f.to_string();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        match n {
            Some(n) if at + n < b.len() => at += n,
            _ => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Venue parsers

/// `decode`'s JSON line for `ev` (what `mdrelay decode` prints).
fn json_line(venue: Venue, symbol: Option<&str>, ev: &Event<'_>) -> Vec<u8> {
    let mut line = Vec::new();
    let origin = Origin {
        venue: venue.name(),
        symbol,
        recv_ts_ns: Some(1),
    };
    json::write_event(&mut line, &origin, ev).expect("writing to a Vec cannot fail");
    line
}

/// Property of every event a parser emits: it serializes to valid JSON (what `mdrelay decode`
/// prints), its decimals format and parse back exactly, and it survives the wire round trip such
/// that `tail --json` on the relayed frame prints exactly what `decode` prints (the JSON-lines
/// contract: an id, time or sequence of 0 is absent in both).
fn check_event(venue: Venue, symbol: Option<&str>, ev: &Event<'_>) {
    let line = json_line(venue, symbol, ev);
    assert_eq!(line.last(), Some(&b'\n'));
    serde_json::from_slice::<serde_json::Value>(&line).expect("decode output is valid JSON");
    let decimal_round_trip = |v: i64| {
        if v != ABSENT {
            assert_eq!(fixed::parse(&Decimal(v).to_string()), Ok(v), "decimal {v}");
        }
    };
    let meta = Meta {
        instrument_id: 7,
        sequence: 1,
        recv_ts_ns: 1,
        flags: 0,
    };
    let mut buf = FrameBuf::new();
    // What `tail --json` makes of the relayed frame.
    let relayed = |buf: &FrameBuf, bids: &mut Vec<Level>, asks: &mut Vec<Level>| -> Vec<u8> {
        let (f, m) = decode_one(buf);
        let ev = protocol::event_of(&f.header, m, bids, asks)
            .unwrap_or_else(|| panic!("an event frame decoded as no event"));
        json_line(venue, symbol, &ev)
    };
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    match ev {
        Event::Trade(t) => {
            decimal_round_trip(t.price);
            decimal_round_trip(t.size);
            protocol::encode_trade(&mut buf, &meta, t);
        }
        Event::Quote(q) => {
            for v in [q.bid_price, q.bid_size, q.ask_price, q.ask_size] {
                decimal_round_trip(v);
            }
            protocol::encode_quote(&mut buf, &meta, q);
        }
        Event::Book(b) => {
            for l in b.bids.iter().chain(b.asks) {
                decimal_round_trip(l.price);
                decimal_round_trip(l.size);
            }
            protocol::encode_book(&mut buf, &meta, b);
            let payload = buf.len() - protocol::HEADER_LEN - protocol::TRAILER_LEN;
            if payload > protocol::MAX_PAYLOAD_LEN {
                // The collector splits such a book into frames; one frame cannot hold it.
                return;
            }
        }
        Event::Status(s) => {
            protocol::encode_status(&mut buf, &meta, venue.name(), s);
            let m = decode_one(&buf).1;
            assert_eq!(
                m,
                Message::Status {
                    venue: venue.name(),
                    status: *s
                }
            );
            return;
        }
        Event::Mark(k) => {
            for v in [k.mark_price, k.index_price, k.settle_price] {
                decimal_round_trip(v);
            }
            derivatives::encode_mark(&mut buf, &meta, 1, k);
        }
        Event::Liquidation(l) => {
            for v in [l.price, l.avg_price, l.size, l.filled_size] {
                decimal_round_trip(v);
            }
            derivatives::encode_liquidation(&mut buf, &meta, 1, l);
        }
        Event::OpenInterest(o) => {
            decimal_round_trip(o.open_interest);
            decimal_round_trip(o.value);
            derivatives::encode_open_interest(&mut buf, &meta, 1, o);
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&relayed(&buf, &mut bids, &mut asks)),
        String::from_utf8_lossy(&line),
        "tail --json of the relayed frame differs from decode"
    );
}

/// Feeds each line of `data` to one parser of `venue`, the way `mdrelay replay` does.
fn venue_lines(v: Venue, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut p: Box<dyn VenueParser> = venue::parser_for(v);
    let mut sink = |sym: Option<&str>, ev: &Event<'_>| check_event(v, sym, ev);
    let mut outgoing = Vec::new();
    let mut snapshot_requests: Vec<String> = Vec::new();
    for line in text.split('\n') {
        if line == "DISCONNECT" {
            p.on_disconnect(&mut sink);
            continue;
        }
        let (recv_ns, raw) = recording::split_line(line);
        if raw.is_empty() {
            continue;
        }
        let recv_ns = recv_ns.unwrap_or(1_700_000_000_000_000_000);
        let r = if raw.starts_with("{\"lastUpdateId\"") && !snapshot_requests.is_empty() {
            let symbol = snapshot_requests.remove(0);
            p.on_rest_snapshot(&symbol, raw, &mut sink)
                .map(|()| venue::Parsed::Data)
        } else {
            p.parse(raw, recv_ns, &mut sink)
        };
        if let Err(e) = r {
            let _ = e.to_string();
            let _ = e.is_out_of_range();
        }
        p.drain_outgoing(&mut outgoing);
        outgoing.clear();
        p.drain_snapshot_requests(&mut snapshot_requests);
        snapshot_requests.dedup();
    }
    if let Some(sym) = snapshot_requests.first() {
        p.on_snapshot_failed(sym);
    }
}

/// Target `venue_binance`: the Binance spot parser (and its depth books).
pub fn venue_binance(data: &[u8]) {
    venue_lines(Venue::Binance, data);
}

/// Target `venue_coinbase`: the Coinbase Exchange parser.
pub fn venue_coinbase(data: &[u8]) {
    venue_lines(Venue::Coinbase, data);
}

/// Target `venue_kraken`: the Kraken WebSocket v2 parser.
pub fn venue_kraken(data: &[u8]) {
    venue_lines(Venue::Kraken, data);
}

/// Target `venue_kraken_v1`: the Kraken WebSocket v1 parser.
pub fn venue_kraken_v1(data: &[u8]) {
    venue_lines(Venue::KrakenV1, data);
}

/// Target `venue_binance_usdm`: the Binance USD-M futures parser.
pub fn venue_binance_usdm(data: &[u8]) {
    venue_lines(Venue::BinanceUsdm, data);
}

/// Target `venue_okx`: the OKX v5 parser.
pub fn venue_okx(data: &[u8]) {
    venue_lines(Venue::Okx, data);
}

/// Target `venue_bybit`: the Bybit v5 parser.
pub fn venue_bybit(data: &[u8]) {
    venue_lines(Venue::Bybit, data);
}

/// Target `venue_gemini`: the Gemini v2 parser.
pub fn venue_gemini(data: &[u8]) {
    venue_lines(Venue::Gemini, data);
}

/// Target `venue_hyperliquid`: the Hyperliquid parser.
pub fn venue_hyperliquid(data: &[u8]) {
    venue_lines(Venue::Hyperliquid, data);
}

// ---------------------------------------------------------------------------------------------
// HTTP requests

/// A query snapshot with one instrument holding a trade, a quote and a book, so `/v1/…` routes
/// answer from data rather than 404.
fn query_state() -> SharedQuery {
    let mut q = QueryState::new(&[1_000_000_000, 60_000_000_000], 4, 5);
    q.define(7, "binance", "ETHUSDT", "binance");
    if let Some(v) = q.get_mut(7) {
        v.last_trade = Some((
            Trade {
                price: 268_380_000_000,
                size: 3_029_200,
                side: Side::Buy,
                trade_id: Some(1),
                exchange_ts_ns: Some(1_723_161_255_308_000_000),
            },
            1_723_161_255_308_000_001,
        ));
        v.quote = Some((
            Quote {
                bid_price: 268_380_000_000,
                bid_size: 302_920_000,
                ask_price: 268_381_000_000,
                ask_size: ABSENT,
                exchange_ts_ns: None,
            },
            1_723_161_255_308_000_002,
        ));
        v.book = Some(BookView {
            bids: vec![Level {
                price: 268_380_000_000,
                size: 302_920_000,
            }],
            asks: Vec::new(),
            bid_levels: 1,
            ask_levels: 0,
            sequence: 3,
            recv_ts_ns: 1_723_161_255_308_000_003,
            may_be_bad: false,
        });
    }
    SharedQuery::new(mdrelay::base::publication::Publication::new(q))
}

/// Target `http_request`: a request head through [`Request::parse`] and the `/v1/…` query
/// handlers over a small snapshot. Every answer is a valid status with JSON that parses and
/// headers that cannot split the response.
pub fn http_request(data: &[u8]) {
    static STATE: OnceLock<SharedQuery> = OnceLock::new();
    let state = STATE.get_or_init(query_state);
    // The `http` thread's own head parser; the other outcomes are answered without a handler.
    let (method, target) = match http::parse_head(data) {
        http::Head::Complete { method, target } => (method, target),
        http::Head::Partial | http::Head::TooLarge | http::Head::Invalid(_) => return,
    };
    let resp = match Request::parse(method, target) {
        Err(detail) => Response::bad_request(detail),
        Ok(req) => {
            assert!(req.path.starts_with('/'));
            if !req.is_read() {
                Response::method_not_allowed(req.method)
            } else {
                query::handle(state, &req).unwrap_or_else(|| Response::not_found(req.path))
            }
        }
    };
    assert!((100..=599).contains(&resp.status), "status {}", resp.status);
    for (k, v) in &resp.headers {
        assert!(
            !k.contains(['\r', '\n']) && !v.contains(['\r', '\n']),
            "header {k}: {v:?}"
        );
    }
    if resp.content_type == mdrelay::serve::http::JSON_CONTENT_TYPE {
        serde_json::from_slice::<serde_json::Value>(&resp.body).expect("JSON body");
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// A file this process alone writes config inputs to.
fn config_path() -> PathBuf {
    std::env::temp_dir().join(format!("mdrelay-fuzz-config-{}.toml", std::process::id()))
}

/// Target `config_loader`: TOML text (plus `#set key=value` comment lines as `--set` flags)
/// through [`config::load`], the merge with the built-in defaults and validation. A refusal
/// names what it refuses.
pub fn config_loader(data: &[u8]) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = config_path();
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let sets: Vec<String> = String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.strip_prefix("#set "))
        .map(str::to_owned)
        .collect();
    let src = Sources {
        file: Some(path.clone()),
        sets,
        ..Sources::default()
    };
    match config::load(&src) {
        Ok(c) => {
            let _ = format!("{c:?}");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            if let ConfigError::Invalid { key, .. } = &e {
                assert!(!key.is_empty(), "config error without a key: {msg}");
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

// ---------------------------------------------------------------------------------------------
// Recordings

/// What [`LineReader`] must return for `input` with cap `max`: the reference model (split at
/// `\n`, a last line without one counts, too long before not UTF-8).
fn model_lines(input: &[u8], max: usize) -> Vec<Result<String, BadLine>> {
    if input.is_empty() {
        return Vec::new();
    }
    let body = input.strip_suffix(b"\n").unwrap_or(input);
    body.split(|&b| b == b'\n')
        .map(|l| {
            if l.len() > max {
                Err(BadLine::TooLong(max))
            } else {
                std::str::from_utf8(l)
                    .map(str::to_owned)
                    .map_err(|_| BadLine::NotUtf8)
            }
        })
        .collect()
}

/// Target `line_reader`: [`LineReader`] over a plain or gzip stream, small caps and buffers.
/// Plain input must give exactly the reference model's lines, numbered from 1; gzip input any
/// prefix of them, then the end or an error; a returned line is never longer than the cap, and
/// nothing is read after the end or an error.
pub fn line_reader(data: &[u8]) {
    let [cap, bufsize, mode, rest @ ..] = data else {
        return;
    };
    let max = usize::from(cap % 64) + 1;
    let bufsize = usize::from(bufsize % 64) + 1;
    let gzip = mode & 1 != 0;
    let cursor = io::Cursor::new(rest.to_vec());
    let inner: Box<dyn BufRead + Send> = if gzip {
        Box::new(BufReader::with_capacity(
            bufsize,
            flate2::read::MultiGzDecoder::new(cursor),
        ))
    } else {
        Box::new(BufReader::with_capacity(bufsize, cursor))
    };
    // The model of a gzip input: what it decompresses to (bounded: a bomb stops the model early,
    // and then only the prefix it has is compared).
    let plain = if gzip {
        let mut out = Vec::new();
        let _ = flate2::read::MultiGzDecoder::new(rest)
            .take(1 << 20)
            .read_to_end(&mut out);
        out
    } else {
        rest.to_vec()
    };
    let model = model_lines(&plain, max);
    let mut r = LineReader::new(inner, max);
    let mut got = 0usize;
    loop {
        match r.next_line() {
            Ok(Some((no, line))) => {
                got += 1;
                assert_eq!(no, got as u64, "line numbers count from 1");
                if let Ok(l) = line {
                    assert!(l.len() <= max, "a line longer than the cap came back");
                    let (ts, raw) = recording::split_line(l);
                    if let Some(ts) = ts {
                        let digits = l.split(' ').next().unwrap_or("");
                        assert_eq!(digits.parse::<u64>().ok(), Some(ts));
                        assert!(l.ends_with(raw) || raw.len() < l.len());
                    }
                }
                let line = line.map(str::to_owned);
                if let Some(want) = model.get(got - 1) {
                    // A gzip model can stop early (bomb cap, corrupt tail): compare what it has.
                    if !gzip || got < model.len() {
                        assert_eq!(&line, want, "line {got}");
                    }
                } else {
                    assert!(gzip, "plain input gave more lines than it has");
                }
            }
            Ok(None) => {
                if !gzip {
                    assert_eq!(got, model.len(), "plain input: every line, then the end");
                }
                break;
            }
            Err(e) => {
                assert!(gzip, "plain input in memory cannot fail: {e}");
                assert_eq!(r.line_no(), got as u64);
                break;
            }
        }
    }
    assert!(matches!(r.next_line(), Ok(None)), "nothing after the end");
}
