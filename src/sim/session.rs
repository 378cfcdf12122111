//! One connection, on its own `replay-conn-N` thread: a REST request or a WebSocket handshake
//! routed by the venue path, the venue's greeting, the wait for a subscription (and for
//! [`ReplayExchange::resume`](super::ReplayExchange::resume) when paused), then the recording at
//! its pace, answering the client's requests between messages (at least every
//! [`POLL_EVERY`], also when messages are due back to back). Blocks on socket reads with short
//! timeouts; writes block in [`WRITE_SLICE`] slices while the client does not read (TCP
//! backpressure), reading the client between them, and a client that reads nothing for
//! [`WRITE_STALL`] is dropped.
//!
//! Closing (RFC 6455 §5.5.1, §7.1.1): a client's Close is answered at once with a Close echoing
//! its code, and the TCP connection is closed right after (the server closes first). The
//! server's own closes (end of recording with `loop`: 1012; exchange stopping: 1001) send a Close
//! and wait briefly for the client's before closing TCP.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, ErrorKind};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use crate::market::instrument::Venue;

use super::binance::binance_request;
use super::binance_rest::{self, serve_rest};
use super::bybit::bybit_request;
use super::coinbase::coinbase_request;
use super::exchange::Shared;
use super::gemini::gemini_request;
use super::hyperliquid::hyperliquid_request;
use super::kraken_v1::{self, kraken_v1_request};
use super::kraken_v2::{self, kraken_v2_request};
use super::okx::okx_request;
use super::positions::SessionPosition;
use super::source::Source;

type Ws = WebSocket<TcpStream>;

/// How long a session keeps reading requests after its first subscription before it plays.
const SUBSCRIBE_SETTLE: Duration = Duration::from_millis(100);

/// Longest time the replay goes without reading the client (its requests, pings, Close).
const POLL_EVERY: Duration = Duration::from_millis(5);

/// How long the server's own Close waits for the client's before the TCP connection closes:
/// when the recording ends, and when the exchange stops.
const LINGER_END: Duration = Duration::from_millis(200);
const LINGER_STOP: Duration = Duration::from_millis(50);

/// Longest time the echo of a client's Close may take to write before the TCP connection closes
/// anyway (a client that stopped reading).
const CLOSE_REPLY_WITHIN: Duration = Duration::from_millis(50);

/// While a client does not read (TCP backpressure), the replay polls it this often, so that
/// its Close still ends the session promptly.
const WRITE_SLICE: Duration = Duration::from_millis(20);

/// A client that reads nothing for this long is dropped.
const WRITE_STALL: Duration = Duration::from_secs(5);

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
            close_with(ws, CloseCode::Away, "replay exchange stopping", LINGER_STOP);
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
        handle(ws.read(), ws, venue, subs, shared)?;
    }
}

/// Reads whatever the client has sent, without waiting, and answers it (see [`service_client`]).
fn poll_client(
    ws: &mut Ws,
    venue: Venue,
    subs: &mut HashSet<String>,
    shared: &Shared,
) -> Result<(), tungstenite::Error> {
    ws.get_ref().set_nonblocking(true)?;
    let mut result = Ok(());
    // Bounded: a client flooding requests still lets the replay go on.
    for _ in 0..64 {
        let read = ws.read();
        if matches!(&read, Err(e) if is_timeout(e)) {
            break;
        }
        result = handle(read, ws, venue, subs, shared);
        if result.is_err() {
            break;
        }
    }
    ws.get_ref().set_nonblocking(false)?;
    result
}

/// Answers one read from the client: its requests, its Close (the reply goes out at once, then
/// the session ends). Timeouts are no error.
fn handle(
    read: Result<Message, tungstenite::Error>,
    ws: &mut Ws,
    venue: Venue,
    subs: &mut HashSet<String>,
    shared: &Shared,
) -> Result<(), tungstenite::Error> {
    match read {
        Ok(Message::Text(t)) => {
            let replies = match venue {
                Venue::Binance | Venue::BinanceUsdm | Venue::BinanceCoinm => {
                    binance_request(t.as_str(), subs).into_iter().collect()
                }
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
                Venue::Okx => okx_request(t.as_str(), subs),
                Venue::Bybit => bybit_request(t.as_str(), subs),
                Venue::Gemini => gemini_request(t.as_str(), subs),
                Venue::Hyperliquid => hyperliquid_request(t.as_str(), subs),
            };
            if !replies.is_empty() {
                shared.subscribed.fetch_add(1, Ordering::AcqRel);
            }
            for r in replies {
                // A reply not written yet stays queued for the next flush.
                match ws.send(Message::text(r)) {
                    Err(e) if !is_timeout(&e) => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(Message::Close(_)) => {
            // tungstenite queued the echoing Close behind what is already queued: send it,
            // giving a client that reads CLOSE_REPLY_WITHIN, then close TCP either way.
            let sock = ws.get_ref();
            let _ = sock.set_nonblocking(false);
            let _ = sock.set_write_timeout(Some(CLOSE_REPLY_WITHIN));
            let _ = ws.flush();
            let _ = ws.get_ref().shutdown(Shutdown::Both);
            return Err(tungstenite::Error::ConnectionClosed);
        }
        Ok(_) => {}
        Err(e) if is_timeout(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Sends a Close, waits up to `linger` for the client's, and leaves the TCP connection to be
/// closed by the caller dropping it.
fn close_with(ws: &mut Ws, code: CloseCode, reason: &'static str, linger: Duration) {
    let _ = ws.close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let deadline = Instant::now() + linger;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let _ = ws
            .get_ref()
            .set_read_timeout(Some(left.min(Duration::from_millis(10))));
        match ws.read() {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                let _ = ws.flush();
            }
            Err(_) => return,
        }
    }
}

/// Serves one connection until the client leaves, the recording ends (with `loop`) or the
/// exchange stops.
pub(super) fn serve(stream: TcpStream, shared: &Shared) -> Result<(), tungstenite::Error> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    // Plain HTTP (REST) or a WebSocket upgrade? Look at the request line without consuming it.
    // A request may arrive in pieces: wait (briefly) for the start of its line.
    let mut peek = [0u8; 32];
    let deadline = Instant::now() + Duration::from_secs(1);
    let n = loop {
        let n = stream.peek(&mut peek)?;
        if n == 0 {
            return Ok(());
        }
        if n == peek.len() || peek[..n].contains(&b'\n') || Instant::now() >= deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if binance_rest::is_rest_request(&peek[..n]) {
        return serve_rest(stream, shared).map_err(tungstenite::Error::Io);
    }
    let peer = stream.peer_addr()?.ip();
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
        close_with(
            &mut ws,
            CloseCode::Policy,
            "no recording for this venue",
            LINGER_END,
        );
        return Ok(());
    };
    // Writes time out in slices from now on: a stalled write goes back to reading the client.
    ws.get_ref().set_write_timeout(Some(WRITE_SLICE))?;
    if venue == Venue::KrakenV1 {
        ws.send(Message::text(kraken_v1::SYSTEM_STATUS))?;
    }
    if venue == Venue::Kraken {
        ws.send(Message::text(kraken_v2::STATUS))?;
    }
    let mut subs = HashSet::new();
    // A Binance session publishes where it is in each depth book, for the REST snapshots.
    let mut pos = venue
        .is_binance()
        .then(|| shared.positions.register(venue, peer, &src.timelines));
    let refresh = |pos: &Option<SessionPosition<'_>>, subs: &HashSet<String>| {
        if let Some(p) = pos {
            p.refresh(&src.timelines, subs);
        }
    };
    // Wait for a subscription, then for the gate.
    while subs.is_empty() || shared.paused.load(Ordering::Acquire) {
        service_client(&mut ws, venue, Duration::from_millis(20), &mut subs, shared)?;
        refresh(&pos, &subs);
    }
    // A client may send several subscribe requests back to back (Kraken: one per channel); at
    // full speed nothing is read until the recording ends, so take them all before playing.
    service_client(&mut ws, venue, SUBSCRIBE_SETTLE, &mut subs, shared)?;
    refresh(&pos, &subs);
    play(&mut ws, &src, &mut subs, &mut pos, shared)?;
    if shared.opts.loop_forever {
        close_with(
            &mut ws,
            CloseCode::Restart,
            "end of recording; reconnect to replay it again",
            LINGER_END,
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
        refresh(&pos, &subs);
    }
}

/// Sends the recording once at the configured speed; publishes the session's depth positions.
fn play(
    ws: &mut Ws,
    src: &Source,
    subs: &mut HashSet<String>,
    pos: &mut Option<SessionPosition<'_>>,
    shared: &Shared,
) -> Result<(), tungstenite::Error> {
    let from = match shared.opts.live {
        true => src.live_pos.load(Ordering::Acquire),
        false => 0,
    };
    // A live session paces from the last record sent (`from - 1`), so both send `from` together.
    let Some(first) = src.records.get(from.saturating_sub(1)) else {
        return Ok(());
    };
    let speed = shared.opts.speed;
    let t0 = first.recv_ns;
    let start = Instant::now();
    let mut last_read = start;
    let mut unflushed = 0u32;
    for (i, rec) in src.records.iter().enumerate().skip(from) {
        let subscribed = matches!(&rec.key, Some(k) if subs.contains(&**k));
        if !subscribed {
            if let (Some(p), Some(step)) = (pos.as_mut(), rec.book) {
                p.passed(step, false);
            }
            continue;
        }
        let mut read = false;
        if speed > 0.0 {
            let offset_ns = rec.recv_ns.saturating_sub(t0) as f64 / speed;
            let due = start + Duration::from_nanos(offset_ns as u64);
            let now = Instant::now();
            if due > now {
                if unflushed > 0 {
                    flush_out(ws, src.venue, subs, shared)?;
                    unflushed = 0;
                }
                service_client(ws, src.venue, due - now, subs, shared)?;
                read = true;
            }
        }
        if !read && last_read.elapsed() >= POLL_EVERY {
            // Messages due back to back (or no pacing): still hear the client, its Close above
            // all, and notice a stop.
            if shared.stop.load(Ordering::Acquire) {
                close_with(ws, CloseCode::Away, "replay exchange stopping", LINGER_STOP);
                return Err(tungstenite::Error::ConnectionClosed);
            }
            poll_client(ws, src.venue, subs, shared)?;
            read = true;
        }
        if read {
            last_read = Instant::now();
            if let Some(p) = pos.as_ref() {
                p.refresh(&src.timelines, subs);
            }
        }
        // Not written yet (the client is slow): queued, and the flush below waits for it.
        match ws.write(Message::Text(rec.raw.clone())) {
            Err(e) if !is_timeout(&e) => return Err(e),
            _ => {}
        }
        src.live_pos.fetch_max(i + 1, Ordering::AcqRel);
        // Published once written: a REST snapshot never waits on a diff not yet due.
        if let (Some(p), Some(step)) = (pos.as_mut(), rec.book) {
            p.passed(step, true);
        }
        shared.sent.fetch_add(1, Ordering::Relaxed);
        unflushed += 1;
        if unflushed >= 64 || speed > 0.0 {
            flush_out(ws, src.venue, subs, shared)?;
            unflushed = 0;
        }
    }
    flush_out(ws, src.venue, subs, shared)
}

/// Flushes what is queued (at most one flush's worth of messages: the queue stays bounded),
/// reading the client between write slices while it does not read; fails after
/// [`WRITE_STALL`] without progress, on the client's Close, or when the exchange stops.
fn flush_out(
    ws: &mut Ws,
    venue: Venue,
    subs: &mut HashSet<String>,
    shared: &Shared,
) -> Result<(), tungstenite::Error> {
    let start = Instant::now();
    loop {
        match ws.flush() {
            Err(e) if is_timeout(&e) => {
                if start.elapsed() >= WRITE_STALL {
                    return Err(e);
                }
                if shared.stop.load(Ordering::Acquire) {
                    close_with(ws, CloseCode::Away, "replay exchange stopping", LINGER_STOP);
                    return Err(tungstenite::Error::ConnectionClosed);
                }
                poll_client(ws, venue, subs, shared)?;
            }
            r => return r,
        }
    }
}
