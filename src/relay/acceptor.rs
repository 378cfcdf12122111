//! The acceptor thread (`relay-accept`): owns the listening socket and the reading side of every
//! subscriber connection, so the consumer never reads a socket.
//!
//! It waits in `poll(2)` on the listener and on every connection (waking at least every 100 ms
//! for the stop flag). A new connection is refused beyond `max_subscribers` or when its peer's
//! uid is not allowed. Otherwise it gets `hello_timeout`: subscription requests that arrive in
//! that window are handed to the consumer with the connection ([`Admission::New`]), which
//! answers each in order, exactly as it answers a later request, and builds the join snapshot
//! from the subscriptions they leave. The window ends early when the client shuts its writing
//! side (no request can follow; counted as half-closed) or has sent [`MAX_HELLO_REQUESTS`].
//! Requests that come later are parsed here and passed on ([`Admission::Requests`]); the
//! consumer applies them at its next turn. The acceptor never answers a request itself, so
//! answers cannot overtake each other. A malformed or oversized request is answered with a
//! `request_error` status after the answers to the requests before it, and the connection is
//! closed ([`Admission::Refuse`]; the acceptor refuses directly a connection that sent nothing
//! valid before it). A client that half-closes after admission keeps its stream (counted).
//! Everything travels on one small bounded channel; when it is full the connection is refused,
//! never waited for.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::base::stats::{AcceptCounters, RelayCounters, StopFlag};
use crate::market::event::{Status, StatusCode};
use crate::queue::Waker;
use crate::wire::protocol::{self, DecodeError, FrameBuf, Meta};
use crate::wire::subscription::{self, Filter, Request, RequestError, MAX_FILTERS};

use crate::wire::protocol::RELAY_VENUE;

/// What the acceptor hands the consumer.
#[derive(Debug)]
pub enum Admission {
    /// A new subscriber, with the requests it sent in its hello window, in order.
    New {
        /// The connection (non-blocking).
        stream: UnixStream,
        /// Serial number (1 for the first connection since start).
        serial: u64,
        /// Its requests, in order; none means everything.
        requests: Vec<Request>,
    },
    /// Requests an admitted subscriber sent later, in order.
    Requests {
        /// The subscriber.
        serial: u64,
        /// The requests.
        requests: Vec<Request>,
    },
    /// An admitted subscriber sent a malformed or oversized request: tell it why, close it.
    Refuse {
        /// The subscriber.
        serial: u64,
        /// Why.
        reason: String,
    },
}

/// The acceptor's limits.
#[derive(Debug, Clone)]
pub struct AcceptConfig {
    /// Connections beyond this are refused.
    pub max_subscribers: usize,
    /// How long a new connection may send requests before it is admitted.
    pub hello_timeout: Duration,
    /// Peer uids allowed to connect (SO_PEERCRED); empty: any uid the socket's mode lets in.
    pub allowed_uids: Vec<u32>,
}

/// One connection the acceptor reads from.
struct Conn {
    /// The connection itself until admission; then `None` (the consumer has it).
    stream: Option<UnixStream>,
    /// A second handle on the socket for reading requests (`try_clone`).
    reader: UnixStream,
    serial: u64,
    buf: Vec<u8>,
    /// `Some(deadline)` while in the hello window.
    hello_until: Option<Instant>,
    /// Requests read in the hello window, in order; at most [`MAX_HELLO_REQUESTS`].
    requests: Vec<Request>,
    /// The client shut its writing side: nothing more to read (never polled again).
    eof: bool,
}

/// Requests a connection may send in its hello window; the window ends when it has sent this
/// many (more are read after admission, as later requests).
pub const MAX_HELLO_REQUESTS: usize = 2 * MAX_FILTERS;

/// Bytes a connection may have sent without completing a request.
const MAX_PARTIAL: usize = protocol::HEADER_LEN + subscription::MAX_REQUEST_PAYLOAD + 4;

/// Runs the acceptor on the current thread until `stop` is set or the consumer is gone.
pub fn accept_loop(
    listener: UnixListener,
    to_consumer: Sender<Admission>,
    cfg: AcceptConfig,
    relay: Arc<RelayCounters>,
    counters: Arc<AcceptCounters>,
    waker: Arc<Waker>,
    stop: Arc<StopFlag>,
) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!("relay socket: cannot make non-blocking: {e}");
        return;
    }
    let mut conns: Vec<Conn> = Vec::new();
    let mut serial = 0u64;
    while !stop.is_stopped() {
        let now = Instant::now();
        let wait = conns
            .iter()
            .filter_map(|c| c.hello_until)
            .map(|d| d.saturating_duration_since(now))
            .fold(Duration::from_millis(100), Duration::min);
        let (listener_ready, ready) = match wait_any(&listener, &conns, wait) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("relay socket poll failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        // Requests and hang-ups of known connections first: a closed one frees its slot.
        let mut keep = vec![true; conns.len()];
        for (i, hup) in ready {
            keep[i] = read_requests(&mut conns[i], hup, &to_consumer, &counters, &waker);
        }
        let mut k = keep.into_iter();
        conns.retain(|_| k.next().unwrap_or(true));
        // Admit connections whose hello window ended (or that ended it early).
        let now = Instant::now();
        for c in conns.iter_mut() {
            if c.hello_until.is_none_or(|d| now < d) {
                continue;
            }
            match admit(c, &to_consumer, &counters, &waker) {
                Ok(()) => {}
                Err(Disconnected) => return,
            }
        }
        // Done with: refused at admission, or admitted with nothing more to read.
        conns.retain(|c| !(c.stream.is_none() && (c.eof || c.hello_until.is_some())));
        if listener_ready {
            accept_new(&listener, &mut conns, &mut serial, &cfg, &relay, &counters);
        }
    }
}

/// The consumer is gone (shutdown).
struct Disconnected;

/// Hands `c` to the consumer with the requests of its hello window and ends the window. When
/// the channel is full the connection is refused (counted) and `c.stream` is left `None` with
/// `hello_until` set, so the caller drops it.
fn admit(
    c: &mut Conn,
    to_consumer: &Sender<Admission>,
    counters: &AcceptCounters,
    waker: &Waker,
) -> Result<(), Disconnected> {
    let Some(stream) = c.stream.take() else {
        c.hello_until = None;
        return Ok(());
    };
    let adm = Admission::New {
        stream,
        serial: c.serial,
        requests: std::mem::take(&mut c.requests),
    };
    match to_consumer.try_send(adm) {
        Ok(()) => {
            c.hello_until = None;
            waker.wake();
            Ok(())
        }
        Err(TrySendError::Full(adm)) => {
            counters.refused_full.inc();
            tracing::warn!("subscriber refused: too many waiting to be admitted");
            if let Admission::New { stream, .. } = adm {
                refuse(&stream, "relay busy: too many connections waiting");
            }
            Ok(())
        }
        Err(TrySendError::Disconnected(_)) => Err(Disconnected),
    }
}

/// Polls the listener and every connection not at EOF; returns (listener readable, readable
/// connections with whether the peer hung up completely).
fn wait_any(
    listener: &UnixListener,
    conns: &[Conn],
    wait: Duration,
) -> io::Result<(bool, Vec<(usize, bool)>)> {
    let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(conns.len() + 1);
    fds.push(PollFd::new(listener, PollFlags::IN));
    // A connection at EOF is always readable: it is not polled (its index is skipped).
    let polled: Vec<usize> = (0..conns.len()).filter(|&i| !conns[i].eof).collect();
    for &i in &polled {
        fds.push(PollFd::new(&conns[i].reader, PollFlags::IN));
    }
    let ts = Timespec {
        tv_sec: wait.as_secs() as i64,
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    match poll(&mut fds, Some(&ts)) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok((false, Vec::new())),
        Err(e) => return Err(e.into()),
    }
    let ready = |f: &PollFd<'_>| {
        f.revents()
            .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
    };
    let listener_ready = ready(&fds[0]);
    let conns = fds[1..]
        .iter()
        .zip(polled)
        .filter(|(f, _)| ready(f))
        .map(|(f, i)| (i, f.revents().contains(PollFlags::HUP)))
        .collect();
    Ok((listener_ready, conns))
}

fn accept_new(
    listener: &UnixListener,
    conns: &mut Vec<Conn>,
    serial: &mut u64,
    cfg: &AcceptConfig,
    relay: &RelayCounters,
    counters: &AcceptCounters,
) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                return;
            }
        };
        // The consumer owns the count; connections in their hello window count too.
        let waiting = conns.iter().filter(|c| c.stream.is_some()).count();
        if relay.subscribers.get() as usize + waiting >= cfg.max_subscribers {
            counters.refused_full.inc();
            tracing::warn!(
                "subscriber refused: {} already connected",
                cfg.max_subscribers
            );
            continue;
        }
        if let Err(e) = stream.set_nonblocking(true) {
            tracing::warn!("subscriber dropped: cannot make non-blocking: {e}");
            continue;
        }
        if !cfg.allowed_uids.is_empty() {
            match rustix::net::sockopt::socket_peercred(stream.as_fd()) {
                Ok(cred) if cfg.allowed_uids.contains(&cred.uid.as_raw()) => {}
                Ok(cred) => {
                    counters.refused_uid.inc();
                    tracing::warn!(
                        uid = cred.uid.as_raw(),
                        "subscriber refused: uid not in relay.allowed_uids"
                    );
                    refuse(&stream, "uid not allowed by relay.allowed_uids");
                    continue;
                }
                Err(e) => {
                    counters.refused_uid.inc();
                    tracing::warn!("subscriber refused: cannot read its credentials: {e}");
                    continue;
                }
            }
        }
        let reader = match stream.try_clone() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("subscriber dropped: {e}");
                continue;
            }
        };
        *serial += 1;
        conns.push(Conn {
            stream: Some(stream),
            reader,
            serial: *serial,
            buf: Vec::new(),
            hello_until: Some(Instant::now() + cfg.hello_timeout),
            requests: Vec::new(),
            eof: false,
        });
    }
}

/// Writes a `request_error` status (best effort, non-blocking) and closes the connection.
fn refuse(stream: &UnixStream, reason: &str) {
    let mut buf = FrameBuf::new();
    encode_reply(&mut buf, StatusCode::RequestError, 0, reason);
    let mut s = stream;
    let _ = s.write(&buf);
    drain_input(stream);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Discards what the peer sent and nobody will read (up to 1 MiB, without blocking): closing a
/// socket with unread input makes the kernel reset the connection, and the peer could lose the
/// error frame just written to it.
fn drain_input(stream: &UnixStream) {
    let mut scratch = [0u8; 8192];
    let mut s = stream;
    for _ in 0..128 {
        match s.read(&mut scratch) {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// A status frame of the relay to one connection.
pub fn encode_reply(buf: &mut FrameBuf, code: StatusCode, count: u64, detail: &str) {
    protocol::encode_status(
        buf,
        &Meta {
            recv_ts_ns: crate::base::clock::wall_ns(),
            ..Meta::default()
        },
        RELAY_VENUE,
        &Status {
            code,
            count,
            detail,
        },
    );
}

/// Reads what `c` sent and acts on complete requests; `hup`: poll saw the peer hang up
/// completely (else an EOF is a half-close). False when the connection is done with (refused,
/// or admitted and at EOF).
fn read_requests(
    c: &mut Conn,
    hup: bool,
    to_consumer: &Sender<Admission>,
    counters: &AcceptCounters,
    waker: &Waker,
) -> bool {
    let mut chunk = [0u8; 4096];
    let eof = loop {
        match c.reader.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => {
                c.buf.extend_from_slice(&chunk[..n]);
                if c.buf.len() > MAX_PARTIAL * 4 {
                    break false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break true,
        }
    };
    let mut requests = Vec::new();
    let mut error: Option<RequestError> = None;
    loop {
        match protocol::frame_len(&c.buf) {
            Ok(total) if total > MAX_PARTIAL => {
                error = Some(RequestError::Oversized(total - protocol::HEADER_LEN - 4));
                break;
            }
            Ok(total) if c.buf.len() >= total => {
                match subscription::parse_request(&c.buf[..total]) {
                    Ok(r) => requests.push(r),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
                c.buf.drain(..total);
            }
            Ok(_) | Err(DecodeError::Incomplete { .. }) => break,
            Err(e) => {
                error = Some(RequestError::Frame(e));
                break;
            }
        }
    }
    if error.is_none() && c.buf.len() > MAX_PARTIAL {
        error = Some(RequestError::Oversized(c.buf.len()));
    }
    if !requests.is_empty() {
        counters.requests.add(requests.len() as u64);
    }
    if eof && !c.eof {
        c.eof = true;
        if !hup {
            counters.half_closed.inc();
            tracing::info!(
                subscriber = c.serial,
                "subscriber half-closed: no more requests"
            );
        }
    }
    let in_hello = c.stream.is_some();
    if in_hello {
        c.requests.append(&mut requests);
        if c.eof || error.is_some() || c.requests.len() >= MAX_HELLO_REQUESTS {
            // Nothing more to wait for: the window ends now.
            c.hello_until = Some(Instant::now());
        }
    }
    if let Some(e) = error {
        counters.bad_requests.inc();
        tracing::warn!(subscriber = c.serial, "bad subscription request: {e}");
        if in_hello && c.requests.is_empty() {
            // Nothing to answer before it: the acceptor answers and closes it itself.
            if let Some(stream) = c.stream.take() {
                refuse(&stream, &e.to_string());
            }
            return false;
        }
        drain_input(&c.reader);
        // The requests before it are answered first, in order (the channel keeps order).
        let sent = if in_hello {
            admit(c, to_consumer, counters, waker).is_ok() && c.hello_until.is_none()
        } else {
            requests.is_empty()
                || to_consumer
                    .try_send(Admission::Requests {
                        serial: c.serial,
                        requests,
                    })
                    .is_ok()
        };
        if sent {
            let _ = to_consumer.try_send(Admission::Refuse {
                serial: c.serial,
                reason: e.to_string(),
            });
        }
        waker.wake();
        return false;
    }
    if in_hello {
        return true;
    }
    if !requests.is_empty() {
        let serial = c.serial;
        match to_consumer.try_send(Admission::Requests { serial, requests }) {
            Ok(()) => waker.wake(),
            Err(_) => {
                counters.bad_requests.inc();
                let _ = to_consumer.try_send(Admission::Refuse {
                    serial,
                    reason: "relay busy: request not taken".into(),
                });
                waker.wake();
                return false;
            }
        }
    }
    !c.eof
}

/// Applies one request to a subscription list. An unsubscribe that matches nothing, or more than
/// [`MAX_FILTERS`] subscriptions, is an error.
pub fn apply(filters: &mut Vec<Filter>, r: Request) -> Result<(), String> {
    match r {
        Request::Subscribe(f) => {
            if !filters.contains(&f) {
                if filters.len() >= MAX_FILTERS {
                    return Err(format!("more than {MAX_FILTERS} subscriptions"));
                }
                filters.push(f);
            }
            Ok(())
        }
        Request::Unsubscribe(f) => match filters.iter().position(|x| *x == f) {
            Some(i) => {
                filters.remove(i);
                Ok(())
            }
            None => Err(format!("unsubscribe {f}: no such subscription")),
        },
    }
}
