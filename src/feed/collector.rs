//! A collector: the one OS thread (`collector-<feed>`) that owns a feed's WebSocket connection.
//!
//! Loop: connect (TCP, TLS for wss, WebSocket handshake, all under the connect deadline) →
//! send the venue's subscribe requests → read frames. For each text frame: stamp `t_recv`
//! (monotonic) right after the read returns, parse with the venue parser, and for every event
//! resolve the instrument (sending its InstrumentDef first the first time), assign the
//! per-instrument sequence, encode the frame, and push it into the feed's bounded queue.
//!
//! Blocking: the socket read (woken every [`POLL_INTERVAL`] to check the stop flag) and, under
//! the `block` policy, a full queue for at most the block timeout. Nothing else; no locks.
//! Open-interest readings polled by the feed's `oi-<feed>` thread (`open_interest.rs`) arrive
//! over a bounded channel and are published between two reads, so they share the feed's queue,
//! instrument definitions and sequencing.
//!
//! Losses are never silent: a frame the queue refuses is counted, the instrument's sequence still
//! advances (subscribers see the gap), and a `dropped` status frame with the count is sent for that
//! instrument as soon as the queue has room. Connection changes are status frames too.
//! At `rotate_after_ms` (Binance's 24 h limit) the connection is replaced make-before-break:
//! the replacement is opened on a helper thread, subscribed, and spliced in without a gap or a
//! duplicate (`rotation.rs`); `max_connection_age_ms` remains the hard, break-before-make limit.
//! Reconnects back off exponentially with full jitter (AWS architecture blog, "Exponential
//! Backoff And Jitter"), the first retry immediate, the attempt count reset by the first data
//! message of a new connection.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::base::backoff::{Backoff, Jitter};
use crate::base::clock;
use crate::base::stats::{FeedStats, StopFlag};
use crate::feed::config::FeedConfig;
use crate::feed::open_interest::Readings;
use crate::feed::publisher::Publisher;
use crate::feed::rotation::Rotor;
use crate::feed::venue::{Parsed, VenueParser};
use crate::market::event::{Event, StatusCode};
use crate::persist::recorder::RecordSender;
use crate::queue::Producer;

/// How often a blocked socket read wakes to look at the stop flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Why a connection attempt or session ended.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The URL could not be turned into a request or an address.
    #[error("bad url {url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// TCP connect, TLS or WebSocket handshake failed.
    #[error("connect to {url} failed: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The connection broke or the venue closed it.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The consumer is gone (shutdown); nothing more can be delivered.
    #[error("consumer gone")]
    ConsumerGone,
    /// No data message for longer than the feed's stale limit (ms of silence).
    #[error("stale: no data for {0} ms")]
    Stale(u64),
    /// The connection reached `max_connection_age_ms` (a venue limit such as Binance's 24 h):
    /// reconnecting before the venue cuts it.
    #[error("proactive reconnect: connection {0} s old (max_connection_age_ms)")]
    MaxAge(u64),
}

pub(super) type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// A feed's collector, ready to run on its own thread.
pub struct Collector {
    pub(super) cfg: FeedConfig,
    pub(super) parser: Box<dyn VenueParser>,
    pub(super) out: Publisher,
    pub(super) stop: Arc<StopFlag>,
    /// Reused list of messages the parser asks to send.
    pub(super) outgoing: Vec<String>,
    /// Symbols waiting for a REST book snapshot.
    pub(super) snapshot_requests: Vec<String>,
    /// No snapshot fetch before this instant (set after a failure).
    next_fetch: Instant,
    /// HTTP client for REST snapshots (blocking, with a deadline).
    http: ureq::Agent,
    /// TLS for wss: `None` uses tungstenite's default (web PKI roots).
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
    /// Reconnect jitter.
    jitter: Jitter,
    /// Raw recording of every message, when the feed records.
    recorder: Option<RecordSender>,
    /// Readings of the feed's open-interest poller, when it has one.
    pub(super) open_interest: Option<Readings>,
}

impl Collector {
    /// A collector for `cfg` pushing into `producer`; `stats` is shared with reporters.
    pub fn new(
        cfg: FeedConfig,
        parser: Box<dyn VenueParser>,
        producer: Producer,
        stats: Arc<FeedStats>,
        stop: Arc<StopFlag>,
        tls: Option<Arc<rustls::ClientConfig>>,
        recorder: Option<RecordSender>,
    ) -> Self {
        let venue = cfg.venue;
        let cfg_timeout = cfg.connect_timeout;
        Collector {
            cfg,
            parser,
            out: Publisher::new(venue, producer, stats),
            http: ureq::Agent::config_builder()
                .timeout_global(Some(cfg_timeout))
                .build()
                .into(),
            tls,
            stop,
            outgoing: Vec::new(),
            snapshot_requests: Vec::new(),
            next_fetch: Instant::now(),
            jitter: Jitter::new(clock::wall_ns()),
            recorder,
            open_interest: None,
        }
    }

    /// Publishes the readings of an open-interest poller ([`crate::feed::open_interest`]) too.
    pub fn with_open_interest(mut self, readings: Readings) -> Self {
        self.open_interest = Some(readings);
        self
    }

    /// Publishes the open-interest readings waiting in the hand-over channel (none: one atomic
    /// load).
    pub(super) fn publish_open_interest(&mut self) {
        let Some(rx) = &self.open_interest else {
            return;
        };
        while let Ok(r) = rx.try_recv() {
            let ev = Event::OpenInterest(r.open_interest);
            self.out
                .on_event(Some(&r.symbol), &ev, r.t_recv, r.recv_wall_ns);
            self.out.end_message();
        }
    }

    /// Runs until the stop flag is set or the consumer goes away. Returns when the thread should
    /// end; dropping `self` then closes the queue, which tells the consumer this feed is done.
    pub fn run(mut self) {
        let mut attempt: u32 = 0;
        while !self.stop.is_stopped() && !self.out.consumer_gone() {
            let result = self.connect().and_then(|ws| {
                self.out.stats().collector.connects.inc();
                self.out.stats().collector.connected.set(1);
                self.out
                    .feed_status(StatusCode::Connected, 0, &self.cfg.url.clone());
                self.session(ws, &mut attempt)
            });
            self.out.stats().collector.connected.set(0);
            self.out.stats().collector.subscribed.set(0);
            {
                // Per-connection venue state (books) is void: tell subscribers.
                let out = &mut self.out;
                let now = clock::mono_ns();
                self.parser
                    .on_disconnect(&mut |sym, ev| out.on_event(sym, ev, 0, clock::wall_ns_at(now)));
                self.out.end_message();
                self.snapshot_requests.clear();
            }
            if self.stop.is_stopped() || self.out.consumer_gone() {
                break;
            }
            let reason = match result {
                Ok(()) => "closed by venue".to_owned(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(feed = %self.cfg.name, "{reason}");
            self.out.feed_status(StatusCode::Disconnected, 0, &reason);
            attempt = attempt.saturating_add(1);
            self.out.stats().collector.reconnects.inc();
            let delay = self.backoff(attempt);
            self.out.feed_status(
                StatusCode::Reconnecting,
                u64::from(attempt),
                &format!("attempt {attempt} in {} ms", delay.as_millis()),
            );
            self.sleep_unless_stopped(delay);
        }
        self.out.finish();
    }

    /// Delay before reconnect attempt `attempt` (1-based): 0 for the first, then full jitter
    /// up to the [`Backoff`] ceiling of `reconnect_initial`..`reconnect_max`.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let ceiling = Backoff {
            initial: self.cfg.reconnect_initial,
            max: self.cfg.reconnect_max,
        }
        .before_attempt(u64::from(attempt));
        self.jitter.full(ceiling)
    }

    fn sleep_unless_stopped(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stop.is_stopped() {
            let now = Instant::now();
            if now >= end {
                break;
            }
            thread::sleep((end - now).min(POLL_INTERVAL));
        }
    }

    fn connect(&mut self) -> Result<Ws, FeedError> {
        connect(
            &self.cfg.url,
            self.cfg.connect_timeout,
            self.tls.clone(),
            &self.stop,
        )
    }

    pub(super) fn send_text(ws: &mut Ws, text: String) -> Result<(), FeedError> {
        ws.send(Message::text(text))
            .map_err(|e| FeedError::Lost(format!("send: {e}")))
    }

    fn session(&mut self, mut ws: Ws, attempt: &mut u32) -> Result<(), FeedError> {
        for req in self.parser.subscribe_requests(&self.cfg.subscription) {
            Self::send_text(&mut ws, req)?;
        }
        let mut got_data = false;
        // Data (not acks, not heartbeats) must arrive within stale_after of the connection and
        // of each other; a subscription that never delivers is as stale as a feed gone quiet.
        let stale_ns = self.cfg.stale_after.as_nanos() as u64;
        let mut last_data = clock::mono_ns();
        let connected_at = last_data;
        let max_age_ns = self
            .cfg
            .max_connection_age
            .map_or(u64::MAX, |d| d.as_nanos() as u64);
        // Application-level keep-alive (OKX, Bybit, Hyperliquid): its text every interval.
        let app_ping = self
            .parser
            .app_ping()
            .map(|(text, every)| (text, every.as_nanos() as u64));
        let mut last_ping = connected_at;
        let mut connected_at = connected_at;
        // Make-before-break rotation (`rotation.rs`), checked between two reads.
        let mut rotor = Rotor::new(&self.cfg, connected_at);
        let mut now = connected_at;
        loop {
            if self.stop.is_stopped() {
                let _ = ws.close(None);
                let _ = ws.flush();
                return Ok(());
            }
            if self.out.consumer_gone() {
                return Err(FeedError::ConsumerGone);
            }
            if self.open_interest.as_ref().is_some_and(|rx| !rx.is_empty()) {
                self.publish_open_interest();
            }
            if rotor.due(now) && self.rotate(&mut ws, &mut rotor, now, &mut last_data)? {
                connected_at = clock::mono_ns();
                last_ping = connected_at;
            }
            let msg = ws.read();
            let t_recv = clock::mono_ns();
            now = t_recv;
            if t_recv.saturating_sub(connected_at) >= max_age_ns {
                let _ = ws.close(None);
                let _ = ws.flush();
                return Err(FeedError::MaxAge(
                    t_recv.saturating_sub(connected_at) / 1_000_000_000,
                ));
            }
            if let Some((text, every_ns)) = app_ping {
                if t_recv.saturating_sub(last_ping) >= every_ns {
                    Self::send_text(&mut ws, text.to_owned())?;
                    last_ping = t_recv;
                }
            }
            match msg {
                Ok(Message::Text(text)) => {
                    if rotor.drops_copy(text.as_str(), t_recv, &self.out) {
                        last_data = t_recv;
                        continue;
                    }
                    let data = self.on_text(text.as_str(), t_recv);
                    if data {
                        last_data = t_recv;
                    }
                    if data && !got_data {
                        got_data = true;
                        *attempt = 0;
                    }
                    if !self.outgoing.is_empty() {
                        for m in std::mem::take(&mut self.outgoing) {
                            Self::send_text(&mut ws, m)?;
                        }
                    }
                }
                Ok(Message::Binary(b)) => {
                    // No venue we speak sends binary data frames: count, do not guess.
                    self.out.stats().collector.frames.inc();
                    self.out.stats().collector.bytes.add(b.len() as u64);
                    self.out.stats().collector.parse_errors.inc();
                }
                Ok(Message::Close(frame)) => {
                    return Err(FeedError::Lost(match frame {
                        Some(f) => format!("venue closed: {} {}", f.code, f.reason),
                        None => "venue closed".into(),
                    }));
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // Idle socket: queue what waits for room (conflated quotes, drop reports),
                    // and retry snapshot fetches that were paused after a failure.
                    self.out.flush_pending();
                    if !self.snapshot_requests.is_empty() {
                        self.fetch_snapshots();
                    }
                    let silent = t_recv.saturating_sub(last_data);
                    if silent > stale_ns {
                        let ms = silent / 1_000_000;
                        self.out.stats().collector.stale.inc();
                        self.out.feed_status(
                            StatusCode::Stale,
                            ms,
                            &format!(
                                "no data for {ms} ms (stale_after_ms {})",
                                stale_ns / 1_000_000
                            ),
                        );
                        let _ = ws.close(None);
                        let _ = ws.flush();
                        return Err(FeedError::Stale(ms));
                    }
                }
                Err(e) => return Err(FeedError::Lost(e.to_string())),
            }
        }
    }

    /// Handles one text frame; returns true when it carried market data.
    #[inline]
    pub(super) fn on_text(&mut self, raw: &str, t_recv: u64) -> bool {
        let recv_wall = clock::wall_ns_at(t_recv);
        if let Some(r) = &self.recorder {
            r.record(recv_wall, raw);
        }
        let data = parse_message(
            &mut *self.parser,
            &mut self.out,
            &self.cfg.name,
            raw,
            t_recv,
            recv_wall,
        );
        self.parser.drain_outgoing(&mut self.outgoing);
        self.parser
            .drain_snapshot_requests(&mut self.snapshot_requests);
        if !self.snapshot_requests.is_empty() {
            self.fetch_snapshots();
        }
        data
    }
}

/// Connects to `url` (TCP, TLS for wss, WebSocket handshake) under `connect_timeout`; the socket
/// reads time out every [`POLL_INTERVAL`]. Used by the collector and its rotation thread.
pub(super) fn connect(
    url: &str,
    connect_timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    stop: &StopFlag,
) -> Result<Ws, FeedError> {
    let url = url.to_owned();
    let bad = |reason: String| FeedError::Url {
        url: url.clone(),
        reason,
    };
    let request = url
        .as_str()
        .into_client_request()
        .map_err(|e| bad(e.to_string()))?;
    let uri = request.uri();
    let host = uri.host().ok_or_else(|| bad("no host".into()))?.to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let deadline = Instant::now() + connect_timeout;
    let fail = |reason: String| FeedError::Connect {
        url: url.clone(),
        reason,
    };
    let addrs: Vec<SocketAddr> = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| fail(format!("resolve {host}: {e}")))?
        .collect();
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut tcp = None;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last_err = e,
        }
    }
    let tcp = tcp.ok_or_else(|| fail(last_err.to_string()))?;
    tcp.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
    tcp.set_read_timeout(Some(POLL_INTERVAL))
        .map_err(|e| fail(e.to_string()))?;
    tcp.set_write_timeout(Some(connect_timeout))
        .map_err(|e| fail(e.to_string()))?;
    let mut hs = tungstenite::client_tls_with_config(
        request,
        tcp,
        None,
        tls.map(tungstenite::Connector::Rustls),
    );
    loop {
        match hs {
            Ok((ws, _resp)) => return Ok(ws),
            Err(HandshakeError::Interrupted(mid)) => {
                if Instant::now() >= deadline || stop.is_stopped() {
                    return Err(fail("handshake timed out".into()));
                }
                hs = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => return Err(fail(e.to_string())),
        }
    }
}

/// Counts, parses and publishes one venue message received at `t_recv` (monotonic) /
/// `recv_wall` (the receive time frames carry); returns true when it carried market data.
/// Shared by the WebSocket collector and the replay of recordings.
#[inline]
pub(crate) fn parse_message(
    parser: &mut dyn VenueParser,
    out: &mut Publisher,
    feed: &str,
    raw: &str,
    t_recv: u64,
    recv_wall: u64,
) -> bool {
    let c = &out.stats().collector;
    c.frames.inc();
    c.bytes.add(raw.len() as u64);
    let result = parser.parse(raw, recv_wall, &mut |sym, ev| {
        out.on_event(sym, ev, t_recv, recv_wall)
    });
    out.end_message();
    let c = &out.stats().collector;
    let fallbacks = parser.fast_path_fallbacks();
    if fallbacks > c.fast_path_fallbacks.get() {
        c.fast_path_fallbacks
            .add(fallbacks - c.fast_path_fallbacks.get());
    }
    match result {
        Ok(Parsed::Data) => {
            c.last_data_mono_ns.set(t_recv);
            c.subscribed.set(1);
            true
        }
        Ok(Parsed::Control) => {
            c.control.inc();
            false
        }
        // Data (the feed is alive), just not relayed.
        Ok(Parsed::Filtered) => {
            c.filtered.inc();
            c.last_data_mono_ns.set(t_recv);
            c.subscribed.set(1);
            true
        }
        Err(e) => {
            c.parse_errors.inc();
            if e.is_out_of_range() {
                c.out_of_range.inc();
            }
            // Rate-limited: the first few errors are logged, the rest only counted.
            if c.parse_errors.get() <= 10 {
                let shown: String = raw.chars().take(200).collect();
                tracing::warn!(feed = %feed, "parse error: {e}; message: {shown}");
            }
            false
        }
    }
}

impl Collector {
    /// Fetches the REST book snapshots the parser asked for (blocking, under the connect
    /// timeout) and hands each reply back to the parser. After a failure, fetches pause for
    /// [`SNAPSHOT_RETRY`] so a failing endpoint is not hammered.
    pub(super) fn fetch_snapshots(&mut self) {
        if Instant::now() < self.next_fetch {
            return;
        }
        for symbol in std::mem::take(&mut self.snapshot_requests) {
            let url = self.cfg.rest_url.as_deref().and_then(|base| {
                self.parser
                    .snapshot_url(base, &symbol, self.cfg.subscription.book_depth)
            });
            let Some(url) = url else {
                tracing::error!(feed = %self.cfg.name, "book snapshot needed for {symbol} but no rest_url");
                continue;
            };
            let body = self
                .http
                .get(&url)
                .call()
                .and_then(|mut r| r.body_mut().read_to_string());
            let t_recv = clock::mono_ns();
            let recv_wall = clock::wall_ns_at(t_recv);
            let c = &self.out.stats().collector;
            match body {
                Ok(body) => {
                    c.snapshots.inc();
                    if let Some(r) = &self.recorder {
                        r.record_snapshot(recv_wall, &symbol, &body);
                    }
                    let out = &mut self.out;
                    let r = self
                        .parser
                        .on_rest_snapshot(&symbol, &body, &mut |sym, ev| {
                            out.on_event(sym, ev, t_recv, recv_wall)
                        });
                    self.out.end_message();
                    self.out.record_sync_waits(&mut *self.parser, recv_wall);
                    if let Err(e) = r {
                        self.out.stats().collector.snapshot_failures.inc();
                        tracing::warn!(feed = %self.cfg.name, "bad book snapshot for {symbol}: {e}");
                        self.next_fetch = Instant::now() + SNAPSHOT_RETRY;
                    }
                }
                Err(e) => {
                    c.snapshot_failures.inc();
                    tracing::warn!(feed = %self.cfg.name, "book snapshot for {symbol} failed: {e}");
                    self.parser.on_snapshot_failed(&symbol);
                    self.next_fetch = Instant::now() + SNAPSHOT_RETRY;
                }
            }
        }
        // Requests made while answering (a snapshot too old, a failure) wait for the next turn.
        self.parser
            .drain_snapshot_requests(&mut self.snapshot_requests);
    }
}

/// A TLS client configuration trusting exactly the CA certificates in the PEM file at `path`.
pub fn tls_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Pause of REST snapshot fetches after a failure.
pub const SNAPSHOT_RETRY: Duration = Duration::from_secs(1);
