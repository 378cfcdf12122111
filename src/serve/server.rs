//! The `http` thread: one `poll(2)` event loop that serves every open connection at once, so no
//! client can stall another or the thread's shutdown.
//!
//! Every socket is non-blocking. Each turn the thread polls the listener and every open
//! connection (at most [`POLL_INTERVAL`], less when a deadline is nearer), then: reads what a
//! connection has sent into its head buffer and parses it with `httparse` (complete, partial or
//! invalid; bare-LF line endings are accepted); calls the [`Handler`] once a head is complete;
//! writes as much of a response as the socket takes; accepts new connections (at most
//! [`ACCEPT_BATCH`] per turn). A connection has one deadline for its whole request — from
//! accept to the last byte of its response, `[http] request_deadline_ms` — however it trickles
//! its bytes; past it, the connection gets a best-effort 408 and is closed. Beyond
//! `[http] max_connections` open connections, a new one is answered 503 with
//! `Connection: close` and closed at once. Every outcome is counted in [`HttpCounters`]
//! (`mdrelay_http_*` in `/metrics`).
//!
//! Handlers run on this thread and must not block: the relay's handlers read atomics and the
//! consumer's lock-free publications ([`crate::base::publication`]), and take microseconds to
//! a few milliseconds of CPU. Why not a worker pool or a server crate: the I/O is what a client
//! can stall, and the event loop never waits on it; a pool would add threads that compete with
//! the consumer on 2-core machines for CPU work that needs none, and the maintained synchronous
//! server crates (`tiny_http`: a thread per connection plus unnamed helper threads) either spawn
//! threads per client or hide them. One thread, named, joined by [`HttpServer::shutdown`] within
//! about [`POLL_INTERVAL`] whatever the clients do.
//!
//! The thread blocks on one thing: `poll(2)`. Open connections cost one descriptor and at most
//! [`MAX_HEAD_BYTES`] of buffer each; [`start`] raises the process's soft descriptor limit
//! towards its hard limit when `max_connections` needs it.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::base::affinity::pin_current_thread;
use crate::base::ratelimit::RateLimit;
use crate::base::stats::{Counter, Gauge, StopFlag};
use crate::serve::http::{Handler, Request, Response};
use crate::serve::metrics::{Kind, Metric};

/// Name of the server thread.
pub const THREAD_NAME: &str = "http";

/// Longest one `poll(2)` waits before the thread checks its stop flags: the bound on how long
/// [`HttpServer::shutdown`] (and a process stop) waits for this thread.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// At most one warning per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Largest request head read; a longer one gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Most header lines a request head may have; more gets 431.
pub const MAX_HEADERS: usize = 64;

/// Most connections accepted per loop turn, so a connect flood cannot starve open connections.
pub const ACCEPT_BATCH: usize = 64;

/// Default of `[http] request_deadline_ms`.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Default of `[http] max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Descriptors kept free for the rest of the process when [`start`] sizes the descriptor limit.
const FD_RESERVE: u64 = 256;

/// How the server treats its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// Listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// From accept to the last byte of the response; > 0.
    pub request_deadline: Duration,
    /// Connections open at once; the next one is refused with 503. ≥ 1.
    pub max_connections: usize,
}

impl ServerOptions {
    /// `listen` with the default deadline and connection cap.
    pub fn new(listen: SocketAddr) -> Self {
        ServerOptions {
            listen,
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// What the server counts; written by the `http` thread only, read by `/metrics`.
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// Connections accepted and served (refused ones not included).
    pub accepted: Counter,
    /// Connections refused with 503 because `max_connections` were open.
    pub refused: Counter,
    /// Connections closed at their request deadline (head incomplete or response unsent).
    pub timed_out: Counter,
    /// Complete request heads answered (any status, 400 and 431 included).
    pub requests: Counter,
    /// Of those: heads that were not valid HTTP (400) or too large (431).
    pub bad_requests: Counter,
    /// Connections open now; always ≤ `max_connections`.
    pub open: Gauge,
}

/// How `/metrics` shows [`HttpCounters`]: (name, type, help, value).
pub(super) const HTTP_METRICS: &[Metric<HttpCounters>] = &[
    (
        "mdrelay_http_connections_total",
        Kind::Counter,
        "HTTP connections accepted and served (refused ones not included).",
        |h| h.accepted.get(),
    ),
    (
        "mdrelay_http_refused_connections_total",
        Kind::Counter,
        "HTTP connections refused with 503 because http.max_connections were open.",
        |h| h.refused.get(),
    ),
    (
        "mdrelay_http_timeouts_total",
        Kind::Counter,
        "HTTP connections closed at http.request_deadline_ms (request or response unfinished).",
        |h| h.timed_out.get(),
    ),
    (
        "mdrelay_http_requests_total",
        Kind::Counter,
        "HTTP request heads answered, whatever the status.",
        |h| h.requests.get(),
    ),
    (
        "mdrelay_http_bad_requests_total",
        Kind::Counter,
        "HTTP request heads answered 400 (not HTTP, bad target) or 431 (too large).",
        |h| h.bad_requests.get(),
    ),
    (
        "mdrelay_http_open_connections",
        Kind::Gauge,
        "HTTP connections open now (at most http.max_connections).",
        |h| h.open.get(),
    ),
];

/// A running HTTP server. Dropping it stops it too.
#[derive(Debug)]
pub struct HttpServer {
    /// The address actually bound (port 0 resolved).
    addr: SocketAddr,
    /// Set by [`shutdown`](Self::shutdown) or drop: stops this server only. The process-wide
    /// [`StopFlag`] given to [`start`] stops it as well.
    halt: Arc<AtomicBool>,
    /// The `http` thread; `None` once joined.
    thread: Option<JoinHandle<()>>,
}

/// Binds `opts.listen` (port 0: any free port) and serves `handler` on a new `http` thread
/// (pinned to `core`, `[threads] http`, when given) until `stop` is set or the server is shut
/// down; `counters` receive what happens. Errors: the address cannot be bound (in use, no
/// permission), or the thread cannot be spawned.
pub fn start(
    opts: ServerOptions,
    handler: Arc<dyn Handler>,
    counters: Arc<HttpCounters>,
    stop: Arc<StopFlag>,
    core: Option<usize>,
) -> io::Result<HttpServer> {
    let listener = TcpListener::bind(opts.listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    ensure_descriptors(opts.max_connections);
    let halt = Arc::new(AtomicBool::new(false));
    let h = halt.clone();
    let thread = thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn(move || {
            pin_current_thread(THREAD_NAME, core);
            let mut server = Loop {
                listener,
                handler: &*handler,
                opts,
                counters: &counters,
                conns: Vec::new(),
                ready: Vec::new(),
                accept_after: None,
                warn: WarnLimiter(RateLimit::new(WARN_INTERVAL)),
            };
            while !stop.is_stopped() && !h.load(Ordering::Acquire) {
                server.turn();
            }
            counters.open.set(0);
        })?;
    tracing::info!(%addr, "http listening");
    Ok(HttpServer {
        addr,
        halt,
        thread: Some(thread),
    })
}

impl HttpServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// True once the `http` thread has ended (stop flag set, or it panicked).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the server and joins its thread, within about [`POLL_INTERVAL`] whatever the
    /// clients do (open connections are closed). `Err` when the thread panicked.
    pub fn shutdown(mut self) -> thread::Result<()> {
        self.halt.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t.join(),
            None => Ok(()),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.halt.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` so `max_connections` fit beside [`FD_RESERVE`] other
/// descriptors (never above the hard limit, never lowered); warns when they cannot.
fn ensure_descriptors(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let need = max_connections as u64 + FD_RESERVE;
    let lim = getrlimit(Resource::Nofile);
    let Some(current) = lim.current else {
        return; // unlimited
    };
    if current >= need {
        return;
    }
    let target = lim.maximum.map_or(need, |max| need.min(max));
    if target > current {
        let raised = Rlimit {
            current: Some(target),
            maximum: lim.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("http: cannot raise the descriptor limit to {target}: {e}");
            return;
        }
    }
    if target < need {
        tracing::warn!(
            "http: descriptor limit {target} is below max_connections + {FD_RESERVE}: \
             a flood of HTTP clients can exhaust descriptors (raise LimitNOFILE or lower \
             http.max_connections)"
        );
    }
}

/// Logs at `warn` at most once per [`WARN_INTERVAL`]; counts what it holds back.
struct WarnLimiter(RateLimit);

impl WarnLimiter {
    fn warn(&mut self, msg: fmt::Arguments<'_>) {
        if let Some(suppressed) = self.0.allow(Instant::now()) {
            tracing::warn!(suppressed, "http: {msg}");
        }
    }
}

/// One open connection.
struct Conn {
    /// Non-blocking.
    stream: TcpStream,
    /// Accept time + the request deadline: the connection is closed at this instant.
    deadline: Instant,
    /// Request head bytes read so far; ≤ [`MAX_HEAD_BYTES`].
    head: Vec<u8>,
    /// The encoded response; empty while the head is being read.
    out: Vec<u8>,
    /// Bytes of `out` written; ≤ `out.len()`.
    written: usize,
}

/// Whether a connection stays open after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Keep,
    Close,
}

/// The event loop's state; lives on the `http` thread.
struct Loop<'a> {
    /// Non-blocking.
    listener: TcpListener,
    handler: &'a dyn Handler,
    opts: ServerOptions,
    counters: &'a HttpCounters,
    /// Open connections, oldest first; `len() ≤ opts.max_connections`.
    conns: Vec<Conn>,
    /// Per connection in `conns` (same order): poll reported it ready this turn.
    ready: Vec<bool>,
    /// After an accept error (EMFILE, …): the listener is left alone until then.
    accept_after: Option<Instant>,
    warn: WarnLimiter,
}

impl Loop<'_> {
    /// Expires, polls, serves the ready connections, accepts new ones.
    fn turn(&mut self) {
        let now = Instant::now();
        let counters = self.counters;
        self.conns.retain_mut(|c| {
            if c.deadline > now {
                return true;
            }
            counters.timed_out.inc();
            if c.out.is_empty() {
                let resp = Response::error(408, "request deadline passed", &[]);
                let mut bytes = Vec::new();
                encode(&resp, false, &mut bytes);
                // Best effort, one non-blocking write: the client is already too slow.
                let _ = c.stream.write(&bytes);
            }
            close(&mut c.stream);
            false
        });
        if self.accept_after.is_some_and(|t| now >= t) {
            self.accept_after = None;
        }
        let nearest = self.conns.iter().map(|c| c.deadline).min();
        let wait = nearest.map_or(POLL_INTERVAL, |d| {
            d.saturating_duration_since(now).min(POLL_INTERVAL)
        });
        let listen = self.accept_after.is_none();
        let listener_ready = match self.poll(listen, wait) {
            Ok(r) => r,
            Err(e) => {
                self.warn.warn(format_args!("poll failed: {e}"));
                thread::sleep(POLL_INTERVAL);
                return;
            }
        };
        let (handler, mut ready) = (self.handler, self.ready.iter());
        let warn = &mut self.warn;
        self.conns.retain_mut(|c| {
            !ready.next().copied().unwrap_or(false) || c.step(handler, counters, warn) == Next::Keep
        });
        if listener_ready {
            self.accept();
        }
        self.counters.open.set(self.conns.len() as u64);
    }

    /// One `poll(2)` over the listener (when `listen`) and every connection; fills `ready`.
    /// Returns whether the listener has connections waiting.
    fn poll(&mut self, listen: bool, wait: Duration) -> io::Result<bool> {
        let ts = Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        let mut fds = Vec::with_capacity(self.conns.len() + 1);
        fds.push(PollFd::new(
            &self.listener,
            if listen {
                PollFlags::IN
            } else {
                PollFlags::empty()
            },
        ));
        for c in &self.conns {
            let want = if c.out.is_empty() {
                PollFlags::IN
            } else {
                PollFlags::OUT
            };
            fds.push(PollFd::new(&c.stream, want));
        }
        self.ready.clear();
        match poll(&mut fds, Some(&ts)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {
                self.ready.resize(self.conns.len(), false);
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        self.ready
            .extend(fds.iter().skip(1).map(|f| !f.revents().is_empty()));
        Ok(listen && !fds.first().is_none_or(|f| f.revents().is_empty()))
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections; beyond the cap, each is refused with 503.
    fn accept(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: leave the listener alone for a while instead of
                    // spinning on the error; open connections are still served.
                    self.warn.warn(format_args!("accept failed: {e}"));
                    self.accept_after = Some(Instant::now() + POLL_INTERVAL);
                    return;
                }
            };
            if let Err(e) = stream.set_nonblocking(true) {
                tracing::debug!("http: connection dropped: {e}");
                continue;
            }
            if self.conns.len() >= self.opts.max_connections {
                self.counters.refused.inc();
                refuse(stream, self.opts.max_connections);
                continue;
            }
            self.counters.accepted.inc();
            self.conns.push(Conn {
                stream,
                deadline: Instant::now() + self.opts.request_deadline,
                head: Vec::new(),
                out: Vec::new(),
                written: 0,
            });
        }
    }
}

/// Answers 503 `Connection: close` with one non-blocking write and closes.
fn refuse(mut stream: TcpStream, max: usize) {
    let mut resp = Response::error(
        503,
        "too many connections",
        &[("max_connections", &max.to_string())],
    );
    resp.headers.push(("Retry-After", "1".into()));
    let mut bytes = Vec::new();
    encode(&resp, false, &mut bytes);
    let _ = stream.write(&bytes);
    close(&mut stream);
}

/// What the request head bytes read so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head<'a> {
    /// A complete head: its method and request target.
    Complete {
        /// `GET`, `HEAD`, …
        method: &'a str,
        /// The request target as sent (`/v1/ticker?symbol=…`).
        target: &'a str,
    },
    /// Incomplete, with room left under [`MAX_HEAD_BYTES`]: read more.
    Partial,
    /// Incomplete at [`MAX_HEAD_BYTES`], or more than [`MAX_HEADERS`] headers: answered 431.
    TooLarge,
    /// Not an HTTP/1.x request head: answered 400.
    Invalid(httparse::Error),
}

/// Parses a request head (CRLF or bare-LF line endings) with `httparse`. Pure: the `http`
/// thread calls it after every read, the fuzz target on arbitrary bytes.
pub fn parse_head(head: &[u8]) -> Head<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => Head::Complete {
            method: req.method.unwrap_or(""),
            target: req.path.unwrap_or(""),
        },
        Ok(httparse::Status::Partial) if head.len() < MAX_HEAD_BYTES => Head::Partial,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => Head::TooLarge,
        Err(e) => Head::Invalid(e),
    }
}

impl Conn {
    /// Reads or writes what the socket allows. Never panics (a panicking handler is a 500).
    fn step(
        &mut self,
        handler: &dyn Handler,
        counters: &HttpCounters,
        warn: &mut WarnLimiter,
    ) -> Next {
        if !self.out.is_empty() {
            return self.write_some();
        }
        let room = MAX_HEAD_BYTES - self.head.len();
        let mut chunk = [0u8; 2048];
        let n = match self.stream.read(&mut chunk[..room.min(2048)]) {
            Ok(0) => return Next::Close, // the client left before finishing its request
            Ok(n) => n,
            Err(e) if is_transient(&e) => return Next::Keep,
            Err(e) => {
                tracing::debug!("http: connection ended: {e}");
                return Next::Close;
            }
        };
        self.head.extend_from_slice(&chunk[..n]);
        let (resp, is_head) = match parse_head(&self.head) {
            Head::Complete { method, target } => {
                let resp = match Request::parse(method, target) {
                    Ok(r) => match panic::catch_unwind(AssertUnwindSafe(|| handler.handle(&r))) {
                        Ok(resp) => resp,
                        Err(_) => {
                            warn.warn(format_args!("handler panicked on {} {}", r.method, r.path));
                            Response::internal_error()
                        }
                    },
                    Err(detail) => {
                        counters.bad_requests.inc();
                        Response::bad_request(detail)
                    }
                };
                (resp, method == "HEAD")
            }
            Head::Partial => return Next::Keep,
            Head::TooLarge => {
                counters.bad_requests.inc();
                (Response::error(431, "request header too large", &[]), false)
            }
            Head::Invalid(e) => {
                counters.bad_requests.inc();
                (
                    Response::bad_request(&format!("not an HTTP/1.x request: {e}")),
                    false,
                )
            }
        };
        counters.requests.inc();
        let mut out = Vec::with_capacity(resp.body.len() + 256);
        if let Some((k, v)) = encode(&resp, is_head, &mut out) {
            warn.warn(format_args!("invalid header {k}: {v:?} not sent"));
        }
        self.out = out;
        self.head = Vec::new();
        self.write_some()
    }

    /// Writes what the socket takes; closes once everything is written.
    fn write_some(&mut self) -> Next {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Next::Close,
                Ok(n) => self.written += n,
                Err(e) if is_transient(&e) => return Next::Keep,
                Err(e) => {
                    tracing::debug!("http: client went away before its response: {e}");
                    return Next::Close;
                }
            }
        }
        close(&mut self.stream);
        Next::Close
    }
}

/// Ends a connection: half-close, then discard what the client sent that was not read
/// (≤ 64 KiB, without waiting), so the close does not reset the connection and destroy the
/// response in flight.
fn close(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// WouldBlock or Interrupted: try again on the next readiness.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Appends the HTTP/1.1 encoding of `resp` to `out` (no body for HEAD; `Connection: close`).
/// Returns the first header not sent because its value holds CR or LF.
fn encode<'r>(resp: &'r Response, is_head: bool, out: &mut Vec<u8>) -> Option<(&'r str, &'r str)> {
    let mut bad = None;
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        if v.bytes().any(|b| b == b'\r' || b == b'\n') {
            bad = bad.or(Some((*k, v.as_str())));
            continue;
        }
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !is_head {
        out.extend_from_slice(&resp.body);
    }
    bad
}

/// Reason phrase of the status codes the server and the routes use.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}
