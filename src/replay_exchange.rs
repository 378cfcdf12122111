//! The replay exchange: recorded real venue traffic served over real WebSockets on this machine,
//! speaking the venue's protocol, so collectors run their real code path with no internet.
//!
//! Threads: `replay-exchange` accepts on the listen address; each connection gets its own
//! `replay-conn` thread. The venue is chosen by the first path segment of the request
//! (`ws://ADDR/binance/stream`). Binance behaviour: the client sends
//! `{"method":"SUBSCRIBE","params":[streams…],"id":N}` and gets `{"result":null,"id":N}`; then every
//! recorded message of a subscribed stream is sent at its recorded pace divided by `speed`
//! (`speed` 0: as fast as the client reads), looping when configured; pings are answered.
//! The recording is loaded once and shared by all connections.
//!
//! Blocks on socket reads with short timeouts (pacing), and on writes when a client does not
//! read (TCP backpressure, as from a real venue). Stops within ~100 ms of [`ReplayExchange::stop`].

use std::collections::HashSet;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::{Message, Utf8Bytes, WebSocket};

use crate::instrument::Venue;
use crate::netutil::wait_readable;
use crate::recording;

/// How the exchange plays its recordings.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// Pace multiplier; 0 = as fast as possible.
    pub speed: f64,
    /// Start over at the end.
    pub loop_forever: bool,
    /// Hold every session after its subscription until [`ReplayExchange::resume`] (tests).
    pub start_paused: bool,
}

/// One recorded message.
struct Rec {
    recv_ns: u64,
    /// Binance stream name (`ethusdt@trade`), when the message is a stream message.
    stream: Option<Box<str>>,
    raw: Utf8Bytes,
}

struct Shared {
    opts: ReplayOptions,
    sources: Vec<(Venue, Arc<Vec<Rec>>)>,
    stop: AtomicBool,
    paused: AtomicBool,
    /// Sessions that completed a subscription, since start.
    subscribed: AtomicU64,
    /// Messages sent, all sessions.
    sent: AtomicU64,
    sessions: Mutex<Vec<JoinHandle<()>>>,
}

/// A running replay exchange. Stops when dropped.
pub struct ReplayExchange {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Deserialize)]
struct StreamOnly<'a> {
    #[serde(borrow)]
    stream: Option<&'a str>,
}

fn load(venue: Venue, path: &Path) -> io::Result<Vec<Rec>> {
    let records = recording::read_all(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut out = Vec::with_capacity(records.len());
    let mut last_ns = 0;
    for r in records {
        let stream = match venue {
            Venue::Binance => serde_json::from_str::<StreamOnly<'_>>(&r.raw)
                .ok()
                .and_then(|s| s.stream.map(Into::into)),
            _ => None,
        };
        // Lines without a time keep the previous one (sent back to back).
        let recv_ns = r.recv_ns.unwrap_or(last_ns);
        last_ns = recv_ns;
        out.push(Rec {
            recv_ns,
            stream,
            raw: Utf8Bytes::from(r.raw),
        });
    }
    Ok(out)
}

impl ReplayExchange {
    /// Loads `sources` and starts listening.
    pub fn start(sources: &[(Venue, PathBuf)], opts: ReplayOptions) -> io::Result<Self> {
        let mut loaded = Vec::new();
        for (venue, path) in sources {
            loaded.push((*venue, Arc::new(load(*venue, path)?)));
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

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// Reads client messages for up to `wait`; answers Binance requests. Returns Err when the
/// session must end (client gone, stop).
fn service_client(
    ws: &mut Ws,
    wait: Duration,
    streams: &mut HashSet<String>,
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
                if let Some(reply) = binance_request(t.as_str(), streams) {
                    shared.subscribed.fetch_add(1, Ordering::AcqRel);
                    ws.send(Message::text(reply))?;
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

fn serve(stream: TcpStream, shared: &Shared) -> Result<(), tungstenite::Error> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
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
    let Some(records) = shared
        .sources
        .iter()
        .find(|(v, _)| *v == venue)
        .map(|(_, r)| r.clone())
    else {
        let _ = ws.close(None);
        return Ok(());
    };
    let mut streams = HashSet::new();
    // Wait for a subscription, then for the gate.
    while streams.is_empty() || shared.paused.load(Ordering::Acquire) {
        service_client(&mut ws, Duration::from_millis(20), &mut streams, shared)?;
    }
    let speed = shared.opts.speed;
    loop {
        play(&mut ws, &records, speed, &mut streams, shared)?;
        if !shared.opts.loop_forever {
            break;
        }
    }
    // Stay connected like a real venue: answer pings until the client leaves or we stop.
    loop {
        service_client(&mut ws, Duration::from_millis(100), &mut streams, shared)?;
    }
}

/// Sends the recording once at `speed`.
fn play(
    ws: &mut Ws,
    records: &[Rec],
    speed: f64,
    streams: &mut HashSet<String>,
    shared: &Shared,
) -> Result<(), tungstenite::Error> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let t0 = first.recv_ns;
    let start = Instant::now();
    let mut unflushed = 0u32;
    for rec in records {
        match &rec.stream {
            Some(s) if streams.contains(&**s) => {}
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
                service_client(ws, due - now, streams, shared)?;
            }
        } else if shared.stop.load(Ordering::Acquire) {
            return Err(tungstenite::Error::ConnectionClosed);
        }
        ws.write(Message::Text(rec.raw.clone()))?;
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
}
