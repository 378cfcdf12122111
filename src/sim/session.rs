//! One connection, on its own `replay-conn-N` thread: a REST request or a WebSocket handshake
//! routed by the venue path, the venue's greeting, the wait for a subscription (and for
//! [`ReplayExchange::resume`](super::ReplayExchange::resume) when paused), then the recording at
//! its pace, answering the client's requests between messages. Blocks on socket reads with short
//! timeouts and on writes when the client does not read.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, ErrorKind};
use std::net::TcpStream;
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
use super::source::Source;

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

/// Serves one connection until the client leaves, the recording ends (with `loop`) or the
/// exchange stops.
pub(super) fn serve(stream: TcpStream, shared: &Shared) -> Result<(), tungstenite::Error> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    // Plain HTTP (REST) or a WebSocket upgrade? Look at the request line without consuming it.
    let mut peek = [0u8; 32];
    let n = stream.peek(&mut peek)?;
    if binance_rest::is_rest_request(&peek[..n]) {
        return serve_rest(stream, &shared.books).map_err(tungstenite::Error::Io);
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
        ws.send(Message::text(kraken_v1::SYSTEM_STATUS))?;
    }
    if venue == Venue::Kraken {
        ws.send(Message::text(kraken_v2::STATUS))?;
    }
    let mut subs = HashSet::new();
    // Wait for a subscription, then for the gate.
    while subs.is_empty() || shared.paused.load(Ordering::Acquire) {
        service_client(&mut ws, venue, Duration::from_millis(20), &mut subs, shared)?;
    }
    // A client may send several subscribe requests back to back (Kraken: one per channel); at
    // full speed nothing is read until the recording ends, so take them all before playing.
    service_client(&mut ws, venue, SUBSCRIBE_SETTLE, &mut subs, shared)?;
    let live = shared.opts.live && src.live_pos.load(Ordering::Acquire) > 0;
    if venue.is_binance() && !live {
        // This session's replay position now drives the venue's REST books.
        shared.books.lock().insert(venue, src.initial_books.clone());
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
    let mut unflushed = 0u32;
    for (i, rec) in src.records.iter().enumerate().skip(from) {
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
        src.live_pos.fetch_max(i + 1, Ordering::AcqRel);
        if let Some(d) = &rec.diff {
            binance_rest::apply(&shared.books, src.venue, d);
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
