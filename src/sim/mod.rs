//! The replay exchange: recorded real venue traffic served over real WebSockets on this machine,
//! speaking each venue's protocol, so collectors run their real code path with no internet.
//!
//! Threads: `replay-exchange` accepts on the listen address; each connection gets its own
//! `replay-conn` thread. The venue is the first path segment of the request
//! (`ws://ADDR/binance/stream`, `ws://ADDR/coinbase`, `ws://ADDR/kraken_v1`). Per venue:
//! - Binance: `{"method":"SUBSCRIBE","params":[streams…],"id":N}` → `{"result":null,"id":N}`;
//!   messages of subscribed streams. REST `GET /binance/api/v3/depth?symbol=S&limit=N` answers a
//!   depth snapshot taken from a book the exchange keeps at its replay position (it starts from
//!   the snapshot recorded in the capture and applies each diff as it is sent), so a snapshot is
//!   consistent whenever a client asks.
//! - Coinbase: `{"type":"subscribe","product_ids":[…],"channels":[…]}` → a `subscriptions` reply;
//!   messages of subscribed products and channels (`match`/`last_match` → `matches`,
//!   `snapshot`/`l2update` → `level2` or `level2_batch`).
//! - Kraken v1: `systemStatus` on connect; `{"event":"subscribe","pair":[…],"subscription":{…}}` →
//!   one `subscriptionStatus` per pair; messages of subscribed pairs and channels; heartbeats
//!   as recorded.
//! - Kraken v2 (`ws://ADDR/kraken`): a `status` message on connect;
//!   `{"method":"subscribe","params":{"channel":C,"symbol":[…],…}}` → one
//!   `{"method":"subscribe","result":{"channel":C,"symbol":S,…},"success":true,…}` per symbol
//!   (likewise `unsubscribe`; `ping` → `pong`); messages of subscribed symbols and channels
//!   (`data[0].symbol`); heartbeats as recorded. A subscription to `instrument` is answered with one
//!   `instrument` snapshot describing every pair of the recording, its `price_precision` /
//!   `qty_precision` being the most decimals the recording writes in that pair's prices
//!   (book levels, trades, ticker bid/ask) and quantities: exact when, as in the converted v1
//!   capture the tests use, numbers are written with the pair's precision; a lower bound otherwise
//!   (real v2 numbers drop trailing zeros).
//!
//! Recorded acks are not replayed (the exchange answers the client's own requests). Messages are
//! sent at their recorded pace divided by `speed` (0: as fast as the client reads). At the end of
//! a recording, with `loop`, the connection is closed (code 1012, "service restart") so the client
//! reconnects and starts afresh: a real venue never repeats sequence numbers, and a replay that
//! looped on an open connection would. Recordings are loaded once and shared.
//!
//! Blocks on socket reads with short timeouts (pacing), and on writes when a client does not
//! read (TCP backpressure, as from a real venue). Stops within ~100 ms of [`ReplayExchange::stop`].

pub mod config;

use std::collections::{BTreeMap, HashSet};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes, WebSocket};

use crate::base::netutil::wait_readable;
use crate::feed::venue::binance::BinanceParser;
use crate::feed::venue::VenueParser;
use crate::market::book::L2Book;
use crate::market::event::{Event, Level};
use crate::market::fixed;
use crate::market::instrument::Venue;
use crate::persist::recording;

/// How the exchange plays its recordings.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// Pace multiplier; 0 = as fast as possible.
    pub speed: f64,
    /// At the end of a recording, close the connection so the client reconnects and the
    /// recording starts again; otherwise stay connected and idle.
    pub loop_forever: bool,
    /// Hold every session after its subscription until [`ReplayExchange::resume`] (tests).
    pub start_paused: bool,
}

/// A Binance depth diff as recorded, for the exchange's own book.
struct Diff {
    symbol: Box<str>,
    final_update_id: u64,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

/// One recorded message.
struct Rec {
    recv_ns: u64,
    /// Subscription key the message belongs to (see [`record_key`]); `None`: never sent.
    key: Option<Box<str>>,
    raw: Utf8Bytes,
    /// Binance depth diffs, applied to the REST book when sent.
    diff: Option<Diff>,
}

/// A venue's recordings, merged in receive-time order, and its recorded REST snapshots.
struct Source {
    venue: Venue,
    records: Vec<Rec>,
    /// Binance: symbol → (book, lastUpdateId) as recorded, the start of every session.
    initial_books: FxHashMap<String, (L2Book, u64)>,
    /// Kraken v2: symbol → (price_precision, qty_precision) seen in the recording, by symbol.
    kraken_pairs: BTreeMap<String, (u32, u32)>,
}

struct Shared {
    opts: ReplayOptions,
    sources: Vec<Arc<Source>>,
    stop: AtomicBool,
    paused: AtomicBool,
    /// Sessions that completed a subscription, since start.
    subscribed: AtomicU64,
    /// Messages sent, all sessions.
    sent: AtomicU64,
    /// REST depth snapshots served.
    rest_served: AtomicU64,
    /// Binance REST books at the replay position of the most recently started session.
    books: Mutex<FxHashMap<String, (L2Book, u64)>>,
    sessions: Mutex<Vec<JoinHandle<()>>>,
}

/// A running replay exchange. Stops when dropped.
pub struct ReplayExchange {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    stream: Option<&'a str>,
    #[serde(borrow, rename = "type")]
    kind: Option<&'a str>,
    #[serde(borrow)]
    product_id: Option<&'a str>,
    #[serde(borrow)]
    event: Option<&'a str>,
}

/// The subscription key of a recorded message, or `None` for messages the exchange never
/// replays (recorded acks and status: the exchange answers its clients' own requests).
fn record_key(venue: Venue, raw: &str) -> Option<Box<str>> {
    if venue == Venue::KrakenV1 && raw.starts_with('[') {
        // [channelID, payload…, channelName, pair]
        let v: Vec<&serde_json::value::RawValue> = serde_json::from_str(raw).ok()?;
        let n = v.len();
        if n < 4 {
            return None;
        }
        let name: &str = serde_json::from_str(v[n - 2].get()).ok()?;
        let pair: &str = serde_json::from_str(v[n - 1].get()).ok()?;
        let base = name.split('-').next().unwrap_or(name);
        return Some(format!("{pair}|{base}").into());
    }
    if venue == Venue::Kraken {
        return kraken_v2_key(raw);
    }
    let p: Peek<'_> = serde_json::from_str(raw).ok()?;
    match venue {
        Venue::Binance => p.stream.map(Into::into),
        Venue::Coinbase => {
            let channel = match p.kind? {
                "ticker" => "ticker",
                "match" | "last_match" => "matches",
                "snapshot" | "l2update" => "level2",
                "heartbeat" => "heartbeat",
                _ => return None,
            };
            Some(format!("{}|{channel}", p.product_id?).into())
        }
        Venue::KrakenV1 => match p.event {
            Some("heartbeat") => Some("*|heartbeat".into()),
            _ => None,
        },
        Venue::Kraken => None, // handled above
    }
}

fn load(venue: Venue, paths: &[PathBuf]) -> io::Result<Source> {
    let mut all = Vec::new();
    for path in paths {
        let recs = recording::read_all(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        // Lines without a time keep the previous one (sent back to back).
        let mut last_ns = 0;
        for r in recs {
            let ns = r.recv_ns.unwrap_or(last_ns);
            last_ns = ns;
            all.push((ns, r.raw));
        }
    }
    // Several files of one venue (Kraken trade, ticker, book) play as one stream. Stable sort:
    // lines with equal times keep their file order.
    all.sort_by_key(|(ns, _)| *ns);
    let mut parser = BinanceParser::default();
    let mut initial_books = FxHashMap::default();
    let mut pending_snapshot: Option<(L2Book, u64)> = None;
    let mut records = Vec::with_capacity(all.len());
    let mut kraken_pairs = BTreeMap::new();
    for (recv_ns, raw) in all {
        let key = record_key(venue, &raw);
        if venue == Venue::Kraken && key.is_some() {
            kraken_v2_precisions(&raw, &mut kraken_pairs);
        }
        let mut diff = None;
        if venue == Venue::Binance {
            let _ = parser.parse(&raw, 0, &mut |sym, ev| {
                if let Event::Book(b) = ev {
                    match (sym, b.snapshot) {
                        (None, true) => {
                            let mut book = L2Book::new();
                            book.apply_snapshot(b.bids, b.asks);
                            pending_snapshot = Some((book, b.venue_sequence.unwrap_or(0)));
                        }
                        (Some(sym), false) => {
                            diff = Some(Diff {
                                symbol: sym.into(),
                                final_update_id: b.venue_sequence.unwrap_or(0),
                                bids: b.bids.to_vec(),
                                asks: b.asks.to_vec(),
                            })
                        }
                        _ => {}
                    }
                }
            });
            // A recorded REST snapshot names no symbol: it belongs to the next diff's symbol.
            if let (Some(d), Some(_)) = (&diff, &pending_snapshot) {
                if let Some(snap) = pending_snapshot.take() {
                    initial_books.entry(d.symbol.to_string()).or_insert(snap);
                }
            }
        }
        records.push(Rec {
            recv_ns,
            key,
            raw: Utf8Bytes::from(raw),
            diff,
        });
    }
    Ok(Source {
        venue,
        records,
        initial_books,
        kraken_pairs,
    })
}

impl ReplayExchange {
    /// Loads `sources` (several files of one venue are merged by time) and starts listening.
    pub fn start(sources: &[(Venue, Vec<PathBuf>)], opts: ReplayOptions) -> io::Result<Self> {
        let mut loaded = Vec::new();
        for (venue, paths) in sources {
            loaded.push(Arc::new(load(*venue, paths)?));
        }
        let listener = TcpListener::bind(opts.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            paused: AtomicBool::new(opts.start_paused),
            opts,
            sources: loaded,
            stop: AtomicBool::new(false),
            subscribed: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            rest_served: AtomicU64::new(0),
            books: Mutex::new(FxHashMap::default()),
            sessions: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let acceptor = thread::Builder::new()
            .name("replay-exchange".into())
            .spawn(move || accept_loop(listener, sh))?;
        tracing::info!(%addr, "replay exchange listening");
        Ok(ReplayExchange {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Convenience for one file per venue.
    pub fn start_files(sources: &[(Venue, &Path)], opts: ReplayOptions) -> io::Result<Self> {
        let v: Vec<(Venue, Vec<PathBuf>)> = sources
            .iter()
            .map(|(v, p)| (*v, vec![p.to_path_buf()]))
            .collect();
        Self::start(&v, opts)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Releases sessions held by `start_paused`.
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::Release);
    }

    /// Sessions that have completed a subscription since start.
    pub fn subscribed_sessions(&self) -> u64 {
        self.shared.subscribed.load(Ordering::Acquire)
    }

    /// Messages sent to clients since start.
    pub fn messages_sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// REST depth snapshots served since start.
    pub fn rest_snapshots_served(&self) -> u64 {
        self.shared.rest_served.load(Ordering::Relaxed)
    }

    /// Stops accepting, ends every session and joins every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let sessions = std::mem::take(&mut *self.shared.sessions.lock());
        for s in sessions {
            let _ = s.join();
        }
    }
}

impl Drop for ReplayExchange {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut serial = 0u64;
    while !shared.stop.load(Ordering::Acquire) {
        match wait_readable(&listener, Duration::from_millis(100)) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!("replay exchange poll: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                serial += 1;
                let sh = shared.clone();
                let spawned = thread::Builder::new()
                    .name(format!("replay-conn-{serial}"))
                    .spawn(move || {
                        if let Err(e) = serve(stream, &sh) {
                            tracing::debug!(%peer, "replay session ended: {e}");
                        }
                    });
                match spawned {
                    Ok(h) => {
                        let mut sessions = shared.sessions.lock();
                        sessions.retain(|h| !h.is_finished());
                        sessions.push(h);
                    }
                    Err(e) => tracing::error!("replay exchange: cannot spawn session: {e}"),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => tracing::warn!("replay exchange accept: {e}"),
        }
    }
}

type Ws = WebSocket<TcpStream>;

/// How long a session keeps reading requests after its first subscription before it plays.
const SUBSCRIBE_SETTLE: Duration = Duration::from_millis(100);

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// Reads client messages for up to `wait` and answers the venue's requests. Returns Err when the
/// session must end (client gone, stop).
fn service_client(
    ws: &mut Ws,
    venue: Venue,
    wait: Duration,
    subs: &mut HashSet<String>,
    shared: &Shared,
) -> Result<(), tungstenite::Error> {
    let deadline = Instant::now() + wait;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            let _ = ws.close(None);
            let _ = ws.flush();
            return Err(tungstenite::Error::ConnectionClosed);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // Push out queued pongs and replies.
            return match ws.flush() {
                Err(e) if is_timeout(&e) => Ok(()),
                r => r,
            };
        }
        ws.get_ref().set_read_timeout(Some(
            left.clamp(Duration::from_micros(50), Duration::from_millis(50)),
        ))?;
        match ws.read() {
            Ok(Message::Text(t)) => {
                let replies = match venue {
                    Venue::Binance => binance_request(t.as_str(), subs).into_iter().collect(),
                    Venue::Coinbase => coinbase_request(t.as_str(), subs),
                    Venue::KrakenV1 => kraken_v1_request(t.as_str(), subs),
                    Venue::Kraken => {
                        let pairs = shared
                            .sources
                            .iter()
                            .find(|s| s.venue == Venue::Kraken)
                            .map(|s| &s.kraken_pairs);
                        kraken_v2_request(t.as_str(), subs, pairs.unwrap_or(&BTreeMap::new()))
                    }
                };
                if !replies.is_empty() {
                    shared.subscribed.fetch_add(1, Ordering::AcqRel);
                }
                for r in replies {
                    ws.send(Message::text(r))?;
                }
            }
            Ok(Message::Close(_)) => return Err(tungstenite::Error::ConnectionClosed),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

#[derive(Deserialize)]
struct BinanceRequest {
    method: String,
    #[serde(default)]
    params: Vec<String>,
    id: serde_json::Value,
}

/// Applies a Binance SUBSCRIBE/UNSUBSCRIBE request; returns the reply to send.
fn binance_request(text: &str, streams: &mut HashSet<String>) -> Option<String> {
    let req: BinanceRequest = serde_json::from_str(text).ok()?;
    match req.method.as_str() {
        "SUBSCRIBE" => streams.extend(req.params),
        "UNSUBSCRIBE" => {
            for p in &req.params {
                streams.remove(p);
            }
        }
        _ => {
            return Some(
                serde_json::json!({"error":{"code":2,"msg":"Invalid request"},"id":req.id})
                    .to_string(),
            )
        }
    }
    Some(serde_json::json!({"result": null, "id": req.id}).to_string())
}

#[derive(Deserialize)]
struct CoinbaseRequest {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    product_ids: Vec<String>,
    #[serde(default)]
    channels: Vec<serde_json::Value>,
}

/// Applies a Coinbase subscribe/unsubscribe; returns the `subscriptions` reply.
fn coinbase_request(text: &str, subs: &mut HashSet<String>) -> Vec<String> {
    let Ok(req) = serde_json::from_str::<CoinbaseRequest>(text) else {
        return vec![
            r#"{"type":"error","message":"Failed to subscribe","reason":"malformed request"}"#
                .into(),
        ];
    };
    let subscribe = match req.kind.as_str() {
        "subscribe" => true,
        "unsubscribe" => false,
        _ => {
            return vec![
                r#"{"type":"error","message":"Failed to subscribe","reason":"unknown type"}"#
                    .into(),
            ]
        }
    };
    for ch in &req.channels {
        let (name, products) = match ch {
            serde_json::Value::String(n) => (n.as_str(), req.product_ids.clone()),
            serde_json::Value::Object(o) => (
                o.get("name").and_then(|v| v.as_str()).unwrap_or(""),
                o.get("product_ids")
                    .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
                    .unwrap_or_else(|| req.product_ids.clone()),
            ),
            _ => continue,
        };
        let name = if name == "level2_batch" {
            "level2"
        } else {
            name
        };
        for p in products {
            let key = format!("{p}|{name}");
            if subscribe {
                subs.insert(key);
            } else {
                subs.remove(&key);
            }
        }
    }
    let mut by_channel: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for k in subs.iter() {
        if let Some((p, c)) = k.split_once('|') {
            by_channel.entry(c).or_default().push(p);
        }
    }
    let channels: Vec<serde_json::Value> = by_channel
        .into_iter()
        .map(|(c, ps)| serde_json::json!({"name": c, "product_ids": ps}))
        .collect();
    vec![serde_json::json!({"type": "subscriptions", "channels": channels}).to_string()]
}

#[derive(Deserialize)]
struct KrakenV1Request {
    event: String,
    #[serde(default)]
    pair: Vec<String>,
    #[serde(default)]
    subscription: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    reqid: Option<serde_json::Value>,
}

/// Applies a Kraken v1 subscribe/unsubscribe/ping; returns one status reply per pair.
fn kraken_v1_request(text: &str, subs: &mut HashSet<String>) -> Vec<String> {
    let Ok(req) = serde_json::from_str::<KrakenV1Request>(text) else {
        return vec![
            r#"{"event":"error","errorMessage":"Malformed request","status":"error"}"#.into(),
        ];
    };
    if req.event == "ping" {
        return vec![serde_json::json!({"event": "pong", "reqid": req.reqid}).to_string()];
    }
    let subscribe = match req.event.as_str() {
        "subscribe" => true,
        "unsubscribe" => false,
        _ => {
            return vec![
                r#"{"event":"error","errorMessage":"Unsupported event","status":"error"}"#.into(),
            ]
        }
    };
    let sub = req.subscription.unwrap_or_default();
    let name = sub
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let channel_name = match (name.as_str(), sub.get("depth").and_then(|v| v.as_u64())) {
        ("book", Some(d)) => format!("book-{d}"),
        ("book", None) => "book-10".to_owned(),
        (n, _) => n.to_owned(),
    };
    req.pair
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            let key = format!("{pair}|{name}");
            if subscribe {
                subs.insert(key);
                subs.insert("*|heartbeat".into());
            } else {
                subs.remove(&key);
            }
            serde_json::json!({
                "channelID": 1000 + i,
                "channelName": channel_name,
                "event": "subscriptionStatus",
                "pair": pair,
                "status": if subscribe { "subscribed" } else { "unsubscribed" },
                "subscription": sub,
            })
            .to_string()
        })
        .collect()
}

#[derive(Deserialize)]
struct KrakenV2Peek<'a> {
    #[serde(borrow)]
    channel: Option<&'a str>,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct KrakenV2SymbolPeek<'a> {
    #[serde(borrow)]
    symbol: Option<&'a str>,
}

/// Kraken v2 routing key: `"<symbol>|<channel>"` of `data[0].symbol` for market data,
/// `"*|heartbeat"` for heartbeats; `None` (never replayed) for method responses, `status` and
/// `instrument` messages (the exchange sends its own).
fn kraken_v2_key(raw: &str) -> Option<Box<str>> {
    let p: KrakenV2Peek<'_> = serde_json::from_str(raw).ok()?;
    match p.channel? {
        "heartbeat" => Some("*|heartbeat".into()),
        "status" | "instrument" => None,
        channel => {
            let data: Vec<KrakenV2SymbolPeek<'_>> = serde_json::from_str(p.data?.get()).ok()?;
            let symbol = data.first()?.symbol?;
            Some(format!("{symbol}|{channel}").into())
        }
    }
}

#[derive(Deserialize)]
struct KrakenV2LevelPeek<'a> {
    #[serde(borrow)]
    price: &'a serde_json::value::RawValue,
    #[serde(borrow)]
    qty: &'a serde_json::value::RawValue,
}

/// Decimal places written in a JSON number (0 for exponent forms and integers).
fn written_decimals(num: &str) -> u32 {
    if num.contains(['e', 'E']) {
        return 0;
    }
    num.split_once('.')
        .map_or(0, |(_, f)| u32::try_from(f.len()).unwrap_or(u32::MAX))
}

/// Raises `pairs[symbol]` to the decimals `raw` (a Kraken v2 book/trade/ticker message) writes in
/// that symbol's prices and quantities.
fn kraken_v2_precisions(raw: &str, pairs: &mut BTreeMap<String, (u32, u32)>) {
    type Entry<'a> = BTreeMap<&'a str, &'a serde_json::value::RawValue>;
    let Ok(p) = serde_json::from_str::<KrakenV2Peek<'_>>(raw) else {
        return;
    };
    if !matches!(p.channel, Some("book" | "trade" | "ticker")) {
        return;
    }
    let Some(Ok(entries)) = p
        .data
        .map(|d| serde_json::from_str::<Vec<Entry<'_>>>(d.get()))
    else {
        return;
    };
    for e in entries {
        let Some(Ok(symbol)) = e
            .get("symbol")
            .map(|s| serde_json::from_str::<String>(s.get()))
        else {
            continue;
        };
        let (mut pp, mut qp) = (0, 0);
        for (k, v) in &e {
            match *k {
                "price" | "bid" | "ask" => pp = pp.max(written_decimals(v.get())),
                "qty" | "bid_qty" | "ask_qty" => qp = qp.max(written_decimals(v.get())),
                "bids" | "asks" => {
                    let levels: Vec<KrakenV2LevelPeek<'_>> =
                        serde_json::from_str(v.get()).unwrap_or_default();
                    for l in levels {
                        pp = pp.max(written_decimals(l.price.get()));
                        qp = qp.max(written_decimals(l.qty.get()));
                    }
                }
                _ => {}
            }
        }
        let seen = pairs.entry(symbol).or_insert((0, 0));
        *seen = (seen.0.max(pp), seen.1.max(qp));
    }
}

#[derive(Deserialize)]
struct KrakenV2Request {
    method: String,
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    req_id: Option<serde_json::Value>,
}

/// The `instrument` snapshot the exchange sends: every pair of the recording with its precisions.
fn kraken_v2_instrument(pairs: &BTreeMap<String, (u32, u32)>) -> String {
    let step = |p: u32| 10f64.powi(-i32::try_from(p).unwrap_or(i32::MAX));
    let pairs: Vec<serde_json::Value> = pairs
        .iter()
        .map(|(symbol, &(pp, qp))| {
            let (base, quote) = symbol.split_once('/').unwrap_or((symbol, ""));
            serde_json::json!({
                "symbol": symbol,
                "base": base,
                "quote": quote,
                "status": "online",
                "price_precision": pp,
                "qty_precision": qp,
                "price_increment": step(pp),
                "qty_increment": step(qp),
                "tick_size": step(pp),
            })
        })
        .collect();
    serde_json::json!({
        "channel": "instrument",
        "type": "snapshot",
        "data": {"assets": [], "pairs": pairs},
    })
    .to_string()
}

/// Applies a Kraken v2 subscribe/unsubscribe/ping; returns the replies: one ack per symbol (one for
/// `instrument`, followed on subscribe by the instrument snapshot of `pairs`), or an error.
fn kraken_v2_request(
    text: &str,
    subs: &mut HashSet<String>,
    pairs: &BTreeMap<String, (u32, u32)>,
) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let time = crate::base::timefmt::format_rfc3339_ns(now);
    let finish = |mut v: serde_json::Value, req_id: &Option<serde_json::Value>| {
        if let Some(o) = v.as_object_mut() {
            if let Some(id) = req_id {
                o.insert("req_id".into(), id.clone());
            }
            o.insert("time_in".into(), time.clone().into());
            o.insert("time_out".into(), time.clone().into());
        }
        v.to_string()
    };
    let Ok(req) = serde_json::from_str::<KrakenV2Request>(text) else {
        return vec![finish(
            serde_json::json!({"error": "Malformed request", "success": false}),
            &None,
        )];
    };
    let error = |msg: &str| {
        vec![finish(
            serde_json::json!({"error": msg, "method": req.method, "success": false}),
            &req.req_id,
        )]
    };
    let subscribe = match req.method.as_str() {
        "ping" => return vec![finish(serde_json::json!({"method": "pong"}), &req.req_id)],
        "subscribe" => true,
        "unsubscribe" => false,
        _ => return error("Method not found"),
    };
    let Some(channel) = req.params.get("channel").and_then(|c| c.as_str()) else {
        return error("Missing channel");
    };
    let ack = |result: serde_json::Value| {
        finish(
            serde_json::json!({"method": req.method, "result": result, "success": true}),
            &req.req_id,
        )
    };
    if channel == "instrument" {
        let mut out = vec![ack(
            serde_json::json!({"channel": "instrument", "snapshot": true}),
        )];
        if subscribe {
            subs.insert("*|instrument".into());
            out.push(kraken_v2_instrument(pairs));
        } else {
            subs.remove("*|instrument");
        }
        return out;
    }
    let symbols: Vec<&str> = req
        .params
        .get("symbol")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    if symbols.is_empty() {
        return error("Missing symbol");
    }
    let snapshot = req
        .params
        .get("snapshot")
        .and_then(|s| s.as_bool())
        .unwrap_or(true);
    let depth = req
        .params
        .get("depth")
        .and_then(|d| d.as_u64())
        .unwrap_or(10);
    symbols
        .into_iter()
        .map(|symbol| {
            let key = format!("{symbol}|{channel}");
            let mut result = serde_json::json!({"channel": channel, "symbol": symbol});
            if subscribe {
                subs.insert(key);
                subs.insert("*|heartbeat".into());
                if let Some(o) = result.as_object_mut() {
                    if channel == "book" {
                        o.insert("depth".into(), depth.into());
                    }
                    o.insert("snapshot".into(), snapshot.into());
                }
            } else {
                subs.remove(&key);
            }
            ack(result)
        })
        .collect()
}

/// Answers `GET /binance/api/v3/depth?symbol=S&limit=N` from the REST book, then closes.
fn serve_rest(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
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
    let (status, body) = if path != "/binance/api/v3/depth" {
        (
            "404 Not Found",
            r#"{"code":-1,"msg":"not found"}"#.to_owned(),
        )
    } else {
        let symbol = param("symbol").unwrap_or_default().to_ascii_uppercase();
        let limit: usize = param("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100)
            .clamp(1, 5000);
        let books = shared.books.lock();
        match books.get(&symbol) {
            Some((book, last)) => {
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
                let body = serde_json::json!({
                    "lastUpdateId": last,
                    "bids": side(&mut book.bids()),
                    "asks": side(&mut book.asks()),
                })
                .to_string();
                shared.rest_served.fetch_add(1, Ordering::Relaxed);
                ("200 OK", body)
            }
            None => (
                "400 Bad Request",
                r#"{"code":-1121,"msg":"Invalid symbol."}"#.to_owned(),
            ),
        }
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn serve(stream: TcpStream, shared: &Shared) -> Result<(), tungstenite::Error> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    // Plain HTTP (REST) or a WebSocket upgrade? Look at the request line without consuming it.
    let mut peek = [0u8; 18];
    let n = stream.peek(&mut peek)?;
    if peek[..n].starts_with(b"GET /binance/api/") {
        return serve_rest(stream, shared).map_err(tungstenite::Error::Io);
    }
    let mut venue = None;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let first = req
            .uri()
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        venue = Venue::from_name(first);
        if venue.is_some() {
            Ok(resp)
        } else {
            let mut e =
                ErrorResponse::new(Some(format!("unknown venue path {}", req.uri().path())));
            *e.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
            Err(e)
        }
    };
    let mut ws = tungstenite::accept_hdr(stream, callback).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => {
            tungstenite::Error::Io(io::Error::new(ErrorKind::TimedOut, "handshake"))
        }
    })?;
    let Some(venue) = venue else { return Ok(()) };
    let Some(src) = shared.sources.iter().find(|s| s.venue == venue).cloned() else {
        let _ = ws.close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: "no recording for this venue".into(),
        }));
        let _ = ws.flush();
        return Ok(());
    };
    if venue == Venue::KrakenV1 {
        ws.send(Message::text(
            r#"{"connectionID":1,"event":"systemStatus","status":"online","version":"1.9.0"}"#,
        ))?;
    }
    if venue == Venue::Kraken {
        ws.send(Message::text(
            r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":1,"system":"online","version":"2.0.0"}]}"#,
        ))?;
    }
    let mut subs = HashSet::new();
    // Wait for a subscription, then for the gate.
    while subs.is_empty() || shared.paused.load(Ordering::Acquire) {
        service_client(&mut ws, venue, Duration::from_millis(20), &mut subs, shared)?;
    }
    // A client may send several subscribe requests back to back (Kraken: one per channel); at
    // full speed nothing is read until the recording ends, so take them all before playing.
    service_client(&mut ws, venue, SUBSCRIBE_SETTLE, &mut subs, shared)?;
    if venue == Venue::Binance {
        // This session's replay position now drives the REST books.
        *shared.books.lock() = src.initial_books.clone();
    }
    play(&mut ws, &src, &mut subs, shared)?;
    if shared.opts.loop_forever {
        let _ = ws.close(Some(CloseFrame {
            code: CloseCode::Restart,
            reason: "end of recording; reconnect to replay it again".into(),
        }));
        let _ = ws.flush();
        // Let the client read the close frame before the socket goes.
        let _ = service_client(
            &mut ws,
            venue,
            Duration::from_millis(200),
            &mut subs,
            shared,
        );
        return Ok(());
    }
    // Stay connected like a real venue: answer pings until the client leaves or we stop.
    loop {
        service_client(
            &mut ws,
            venue,
            Duration::from_millis(100),
            &mut subs,
            shared,
        )?;
    }
}

/// Sends the recording once at the configured speed.
fn play(
    ws: &mut Ws,
    src: &Source,
    subs: &mut HashSet<String>,
    shared: &Shared,
) -> Result<(), tungstenite::Error> {
    let Some(first) = src.records.first() else {
        return Ok(());
    };
    let speed = shared.opts.speed;
    let t0 = first.recv_ns;
    let start = Instant::now();
    let mut unflushed = 0u32;
    for rec in &src.records {
        match &rec.key {
            Some(k) if subs.contains(&**k) => {}
            _ => continue,
        }
        if speed > 0.0 {
            let offset_ns = rec.recv_ns.saturating_sub(t0) as f64 / speed;
            let due = start + Duration::from_nanos(offset_ns as u64);
            let now = Instant::now();
            if due > now {
                if unflushed > 0 {
                    ws.flush()?;
                    unflushed = 0;
                }
                service_client(ws, src.venue, due - now, subs, shared)?;
            }
        } else if shared.stop.load(Ordering::Acquire) {
            return Err(tungstenite::Error::ConnectionClosed);
        }
        ws.write(Message::Text(rec.raw.clone()))?;
        if let Some(d) = &rec.diff {
            if let Some((book, last)) = shared.books.lock().get_mut(&*d.symbol) {
                if d.final_update_id > *last {
                    book.apply_delta(&d.bids, &d.asks);
                    *last = d.final_update_id;
                }
            }
        }
        shared.sent.fetch_add(1, Ordering::Relaxed);
        unflushed += 1;
        if unflushed >= 64 || speed > 0.0 {
            ws.flush()?;
            unflushed = 0;
        }
    }
    ws.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binance_requests() {
        let mut s = HashSet::new();
        assert_eq!(
            binance_request(
                r#"{"method":"SUBSCRIBE","params":["a@trade","a@bookTicker"],"id":3}"#,
                &mut s
            )
            .unwrap(),
            r#"{"id":3,"result":null}"#
        );
        assert_eq!(s.len(), 2);
        binance_request(
            r#"{"method":"UNSUBSCRIBE","params":["a@trade"],"id":4}"#,
            &mut s,
        );
        assert_eq!(s.len(), 1);
        assert!(binance_request(r#"{"method":"X","id":5}"#, &mut s)
            .unwrap()
            .contains("error"));
        assert!(binance_request("garbage", &mut s).is_none());
    }

    #[test]
    fn coinbase_and_kraken_requests_map_to_record_keys() {
        let mut s = HashSet::new();
        let r = coinbase_request(
            r#"{"type":"subscribe","product_ids":["SKL-USD"],"channels":["ticker","matches","level2_batch"]}"#,
            &mut s,
        );
        assert!(r[0].contains("subscriptions"));
        for raw in [
            r#"{"type":"ticker","product_id":"SKL-USD","price":"1"}"#,
            r#"{"type":"last_match","product_id":"SKL-USD"}"#,
            r#"{"type":"l2update","product_id":"SKL-USD","changes":[]}"#,
        ] {
            let k = record_key(Venue::Coinbase, raw).unwrap();
            assert!(s.contains(&*k), "{raw} → {k}");
        }
        assert!(record_key(Venue::Coinbase, r#"{"type":"subscriptions","channels":[]}"#).is_none());

        let mut s = HashSet::new();
        let r = kraken_v1_request(
            r#"{"event":"subscribe","pair":["XBT/USD","ETH/EUR"],"subscription":{"name":"book","depth":1000}}"#,
            &mut s,
        );
        assert_eq!(r.len(), 2);
        assert!(r[0].contains(r#""channelName":"book-1000""#));
        let k = record_key(
            Venue::KrakenV1,
            r#"[1,{"a":[]},{"b":[],"c":"1"},"book-1000","XBT/USD"]"#,
        )
        .unwrap();
        assert!(s.contains(&*k));
        assert!(s.contains("*|heartbeat"));
        assert!(record_key(Venue::KrakenV1, r#"{"event":"subscriptionStatus"}"#).is_none());
    }

    #[test]
    fn kraken_v2_requests_map_to_record_keys_and_instrument_precisions() {
        use crate::feed::venue::kraken_v2::KrakenV2Parser;
        // Precisions as the docs samples write them.
        let mut pairs = BTreeMap::new();
        let samples =
            std::fs::read_to_string(crate::base::testutil::fixture("samples/kraken_v2.jsonl"))
                .unwrap();
        let mut keys = Vec::new();
        for line in samples.lines() {
            let key = record_key(Venue::Kraken, line);
            if key.is_some() {
                kraken_v2_precisions(line, &mut pairs);
            }
            keys.push(key);
        }
        assert_eq!(
            keys.iter().map(|k| k.as_deref()).collect::<Vec<_>>(),
            [
                None, // the recorded request
                None, // the recorded ack
                Some("MATIC/USD|book"),
                Some("MATIC/USD|book"),
                Some("MATIC/USD|trade"),
                Some("MATIC/USD|trade"),
                Some("ALGO/USD|ticker"),
                Some("ALGO/USD|ticker"),
            ]
        );
        assert_eq!(
            pairs,
            BTreeMap::from([
                ("ALGO/USD".to_owned(), (5, 8)),
                ("MATIC/USD".to_owned(), (4, 8))
            ])
        );
        assert_eq!(
            record_key(Venue::Kraken, r#"{"channel":"heartbeat"}"#).as_deref(),
            Some("*|heartbeat")
        );

        let mut s = HashSet::new();
        let r = kraken_v2_request(
            r#"{"method":"subscribe","params":{"channel":"book","depth":25,"symbol":["MATIC/USD","ALGO/USD"]},"req_id":7}"#,
            &mut s,
            &pairs,
        );
        assert_eq!(r.len(), 2);
        let ack: serde_json::Value = serde_json::from_str(&r[1]).unwrap();
        assert_eq!(
            ack["result"],
            serde_json::json!({"channel":"book","symbol":"ALGO/USD","depth":25,"snapshot":true})
        );
        assert_eq!(ack["success"], true);
        assert_eq!(ack["req_id"], 7);
        assert!(s.contains("MATIC/USD|book") && s.contains("*|heartbeat"));
        let r = kraken_v2_request(
            r#"{"method":"unsubscribe","params":{"channel":"book","symbol":["MATIC/USD"]}}"#,
            &mut s,
            &pairs,
        );
        assert_eq!(r.len(), 1);
        assert!(!s.contains("MATIC/USD|book") && s.contains("ALGO/USD|book"));
        assert!(kraken_v2_request(
            r#"{"method":"subscribe","params":{"channel":"trade"}}"#,
            &mut s,
            &pairs
        )[0]
        .contains(r#""success":false"#));
        assert!(kraken_v2_request("garbage", &mut s, &pairs)[0].contains("error"));
        assert!(
            kraken_v2_request(r#"{"method":"ping","req_id":3}"#, &mut s, &pairs)[0]
                .contains(r#""method":"pong""#)
        );

        // The instrument snapshot gives a parser exactly those precisions.
        let r = kraken_v2_request(
            r#"{"method":"subscribe","params":{"channel":"instrument"}}"#,
            &mut s,
            &pairs,
        );
        assert_eq!(r.len(), 2);
        let mut p = KrakenV2Parser::new();
        for m in &r {
            assert!(matches!(
                p.parse(m, 0, &mut |_, _| {}),
                Ok(crate::feed::venue::Parsed::Control)
            ));
        }
        assert_eq!(p.precision("MATIC/USD"), Some((4, 8)));
        assert_eq!(p.precision("ALGO/USD"), Some((5, 8)));
    }
}
