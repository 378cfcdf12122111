//! A fault-injection TCP proxy for reliability tests: it sits on 127.0.0.1:0 between a collector
//! and the replay exchange and, per connection and following a seeded [`FaultPlan`], delays
//! traffic, slices frames into 1-byte writes, black-holes traffic with the sockets kept open,
//! resets the connection in the middle of a WebSocket frame, injects a garbage JSON frame and a
//! text frame of invalid UTF-8, or closes with a WebSocket close code.
//!
//! Threads: `fault-proxy` accepts (non-blocking, polled every [`POLL`]); each connection gets
//! `fault-up-<n>` (client → upstream, passed through, delayed under `Latency`) and
//! `fault-down-<n>` (upstream → client, where the faults apply). Every socket read times out
//! after [`POLL`] so all threads see the stop flag; dropping the [`FaultProxy`] stops and joins
//! them all. No thread outlives the proxy.
//!
//! Downstream bytes are cut into units before forwarding: the HTTP handshake response, then whole
//! WebSocket frames (server frames are unmasked, RFC 6455 §5.2), so a fault lands exactly where it
//! is meant: injected frames and close frames between two frames, a reset inside one.
//!
//! The schedule is seeded: [`seed`] takes `MDRELAY_FAULT_SEED` when set, else a fresh seed, and a
//! [`FaultPlan`] built from it prints `FAULT_SEED=<n>` if the test fails while the proxy is alive,
//! so any failure can be replayed with `MDRELAY_FAULT_SEED=<n> cargo test --test it faults`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often a blocked proxy thread looks at its stop flags.
pub const POLL: Duration = Duration::from_millis(20);

/// The seed of this run: `MDRELAY_FAULT_SEED` when set (a u64), else derived from the clock.
pub fn seed() -> u64 {
    match std::env::var("MDRELAY_FAULT_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("MDRELAY_FAULT_SEED={s:?} is not a u64")),
        Err(_) => {
            static SALT: AtomicUsize = AtomicUsize::new(0);
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            t ^ (SALT.fetch_add(1, Ordering::Relaxed) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        }
    }
}

/// xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators"): small,
/// seeded, good enough for a test schedule. State never 0.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() as u64) as usize]
    }
}

/// What one connection suffers. Byte offsets count downstream WebSocket frame bytes after the
/// handshake response; a fault fires at the first frame boundary at or after its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything untouched.
    Pass,
    /// Delay every chunk, both directions, by this much.
    Latency(Duration),
    /// Forward the first `bytes` frame bytes after the handshake response one byte per write.
    /// (Not the handshake response itself: tungstenite refuses a response read in more than 64
    /// reads averaging under 128 bytes as an "attack attempt"; the collector then reports the
    /// failed connect and retries, which is not what this fault is meant to show.)
    Slice {
        /// How many bytes go one at a time; the rest pass untouched.
        bytes: u64,
    },
    /// Stop forwarding downstream (reading and discarding) for `for_`, sockets kept open.
    BlackHole {
        /// Where the hole starts.
        after_bytes: u64,
        /// How long it lasts.
        for_: Duration,
    },
    /// Forward half of a frame, then close both sockets with SO_LINGER 0 (an RST).
    ResetMidFrame {
        /// Where the torn frame starts.
        after_bytes: u64,
    },
    /// Inject a text frame whose payload is not JSON, then `then_frames` frames later one whose
    /// payload is not UTF-8 (the client must give that connection up).
    InjectGarbage {
        /// Where the invalid JSON goes.
        after_bytes: u64,
        /// Frames forwarded between the two injections.
        then_frames: u64,
    },
    /// Send a WebSocket close frame with `code`, then close the connection.
    Close {
        /// Where the close frame goes.
        after_bytes: u64,
        /// Close code (1001, 1011, 1012, 4000, …).
        code: u16,
    },
}

/// Which fault each connection gets: the n-th accepted connection (0-based) gets `faults[n]`,
/// later ones [`Fault::Pass`].
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// The seed the faults were drawn from (printed on failure).
    pub seed: u64,
    /// Per connection, in accept order.
    pub faults: Vec<Fault>,
}

impl FaultPlan {
    /// A plan whose faults `draw` picks from a generator seeded with `seed`.
    pub fn seeded(seed: u64, draw: impl FnOnce(&mut Rng) -> Vec<Fault>) -> Self {
        let mut rng = Rng::new(seed);
        FaultPlan {
            seed,
            faults: draw(&mut rng),
        }
    }
}

/// A fault the proxy applied: on which connection, what, and when.
#[derive(Debug, Clone)]
pub struct Fired {
    /// Connection index (0-based, accept order).
    pub conn: usize,
    /// What happened, e.g. `reset mid-frame after 5123 bytes`.
    pub what: String,
    /// When.
    pub at: Instant,
}

struct Shared {
    upstream: SocketAddr,
    plan: FaultPlan,
    stop: AtomicBool,
    /// Connections wait in the listen backlog until this is set.
    open: AtomicBool,
    /// Connections accepted so far.
    accepted: AtomicUsize,
    /// Faults applied, in order.
    fired: Mutex<Vec<Fired>>,
}

impl Shared {
    fn fire(&self, conn: usize, what: String) {
        self.fired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Fired {
                conn,
                what,
                at: Instant::now(),
            });
    }
}

/// The running proxy; dropping it stops and joins every thread.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards each accepted connection to `upstream` under `plan`.
    pub fn start(upstream: SocketAddr, plan: FaultPlan) -> FaultProxy {
        let p = Self::start_held(upstream, plan);
        p.release();
        p
    }

    /// [`FaultProxy::start`], but connections wait in the listen backlog (not accepted, nothing
    /// forwarded) until [`FaultProxy::release`]: a test can get its subscriber admitted first.
    pub fn start_held(upstream: SocketAddr, plan: FaultPlan) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault proxy");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            plan,
            stop: AtomicBool::new(false),
            open: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            fired: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let acceptor = thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(&listener, &sh))
            .expect("spawn fault proxy");
        FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Starts accepting connections.
    pub fn release(&self) {
        self.shared.open.store(true, Ordering::Release);
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The plan's seed.
    pub fn seed(&self) -> u64 {
        self.shared.plan.seed
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::Acquire)
    }

    /// Faults applied so far, in order.
    pub fn fired(&self) -> Vec<Fired> {
        self.shared
            .fired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        if thread::panicking() {
            eprintln!(
                "FAULT_SEED={0} (replay: MDRELAY_FAULT_SEED={0} cargo test --test it faults); \
                 plan {1:?}; fired {2:?}",
                self.shared.plan.seed,
                self.shared.plan.faults,
                self.fired()
                    .iter()
                    .map(|f| (f.conn, f.what.clone()))
                    .collect::<Vec<_>>()
            );
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut pumps: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::Acquire) {
        if !shared.open.load(Ordering::Acquire) {
            thread::sleep(POLL / 2);
            continue;
        }
        match listener.accept() {
            Ok((client, _)) => {
                let n = shared.accepted.fetch_add(1, Ordering::AcqRel);
                let fault = shared.plan.faults.get(n).cloned().unwrap_or(Fault::Pass);
                match connect_pair(client, shared.upstream) {
                    Ok(pair) => pumps.extend(spawn_pumps(n, fault, pair, shared)),
                    Err(e) => eprintln!("fault proxy: connection {n}: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL / 2),
            Err(e) => {
                eprintln!("fault proxy: accept: {e}");
                thread::sleep(POLL);
            }
        }
        pumps.retain(|h| !h.is_finished());
    }
    for h in pumps {
        let _ = h.join();
    }
}

/// Client and upstream sockets, blocking with [`POLL`] read timeouts.
fn connect_pair(client: TcpStream, upstream: SocketAddr) -> io::Result<(TcpStream, TcpStream)> {
    client.set_nonblocking(false)?;
    let up = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
    for s in [&client, &up] {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(POLL))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
    }
    Ok((client, up))
}

/// Per-connection state both pumps see.
struct Conn {
    n: usize,
    fault: Fault,
    /// Set by whichever pump ends the connection; the other then leaves without touching it.
    done: AtomicBool,
}

fn spawn_pumps(
    n: usize,
    fault: Fault,
    (client, up): (TcpStream, TcpStream),
    shared: &Arc<Shared>,
) -> Vec<JoinHandle<()>> {
    let conn = Arc::new(Conn {
        n,
        fault,
        done: AtomicBool::new(false),
    });
    let clones = client.try_clone().and_then(|c| Ok((c, up.try_clone()?)));
    let Ok((client2, up2)) = clones else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let (c, sh) = (conn.clone(), shared.clone());
    if let Ok(h) = thread::Builder::new()
        .name(format!("fault-up-{n}"))
        .spawn(move || pump_up(client, up, &c, &sh))
    {
        out.push(h);
    }
    let (c, sh) = (conn, shared.clone());
    if let Ok(h) = thread::Builder::new()
        .name(format!("fault-down-{n}"))
        .spawn(move || pump_down(up2, client2, &c, &sh))
    {
        out.push(h);
    }
    out
}

fn stopping(conn: &Conn, shared: &Shared) -> bool {
    conn.done.load(Ordering::Acquire) || shared.stop.load(Ordering::Acquire)
}

/// Ends the connection the ordinary way (FIN both ways), once.
fn end(conn: &Conn, a: &TcpStream, b: &TcpStream) {
    if !conn.done.swap(true, Ordering::AcqRel) {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Client → upstream: passed through (delayed under `Latency`).
fn pump_up(mut client: TcpStream, mut up: TcpStream, conn: &Conn, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    while !stopping(conn, shared) {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                if let Fault::Latency(d) = conn.fault {
                    thread::sleep(d);
                }
                if up.write_all(&buf[..k]).is_err() {
                    break;
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
    end(conn, &client, &up);
}

/// Length of the first complete unit of `buf`: the handshake response while `handshake`, else a
/// WebSocket frame. `None` until it is complete.
pub fn unit_len(buf: &[u8], handshake: bool) -> Option<usize> {
    if handshake {
        return buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    }
    if buf.len() < 2 {
        return None;
    }
    let mask = if buf[1] & 0x80 != 0 { 4 } else { 0 };
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
            10,
        ),
        126 | 127 => return None,
        n => (u64::from(n), 2),
    };
    let total = header + mask + usize::try_from(len).ok()?;
    (buf.len() >= total).then_some(total)
}

/// An unmasked server → client text frame (FIN, opcode 1) carrying `payload` (< 126 bytes).
pub fn text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126, "short frames only");
    let mut f = vec![0x81, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

/// An unmasked server → client close frame (FIN, opcode 8) with `code` and `reason`.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    assert!(reason.len() < 124, "control frames carry ≤ 125 bytes");
    let mut f = vec![0x88, (2 + reason.len()) as u8];
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(reason.as_bytes());
    f
}

/// Payload of the injected frame that is text but not JSON.
pub const GARBAGE_JSON: &[u8] =
    b"{\"stream\":\"ethusdt@trade\",\"data\":{\"e\":\"trade\",]]garbage";
/// Payload of the injected text frame that is not UTF-8.
pub const GARBAGE_UTF8: &[u8] = b"{\"stream\":\"\xff\xfe\xc3\x28\"}";

/// What the downstream pump does next.
enum Next {
    Go,
    /// End the connection (FIN), the fault done.
    Close,
    /// Abort both sockets with an RST.
    Reset,
}

/// Upstream → client, where the faults apply.
fn pump_down(mut up: TcpStream, mut client: TcpStream, conn: &Conn, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut st = DownState::default();
    if let Fault::Latency(d) = conn.fault {
        shared.fire(conn.n, format!("latency {} ms per chunk", d.as_millis()));
    }
    let mut next = Next::Go;
    'outer: while !stopping(conn, shared) {
        let k = match up.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => break,
        };
        if let Fault::Latency(d) = conn.fault {
            thread::sleep(d);
        }
        pending.extend_from_slice(&buf[..k]);
        while let Some(len) = unit_len(&pending, st.handshake) {
            let unit: Vec<u8> = pending.drain(..len).collect();
            next = st.forward(&unit, &mut client, conn, shared);
            if !matches!(next, Next::Go) {
                break 'outer;
            }
        }
    }
    match next {
        Next::Reset => {
            // SO_LINGER 0: the last close of these sockets sends an RST, not a FIN. The other
            // pump sees `done` and drops its handles without a shutdown.
            let _ = rustix::net::sockopt::set_socket_linger(&client, Some(Duration::ZERO));
            let _ = rustix::net::sockopt::set_socket_linger(&up, Some(Duration::ZERO));
            conn.done.store(true, Ordering::Release);
        }
        Next::Go | Next::Close => {
            // Whatever is left of a torn upstream stream goes as it is.
            if !pending.is_empty() && !conn.done.load(Ordering::Acquire) {
                let _ = client.write_all(&pending);
            }
            end(conn, &client, &up);
        }
    }
}

/// The downstream pump's progress through its connection.
struct DownState {
    /// Still before the end of the handshake response.
    handshake: bool,
    /// Frame bytes seen after the handshake.
    body: u64,
    /// The fault has fired (its first part, for two-part faults).
    fired: bool,
    /// `BlackHole`: discard until then.
    hole_until: Option<Instant>,
    /// `InjectGarbage`: frames forwarded since the invalid JSON.
    since_garbage: u64,
}

impl Default for DownState {
    fn default() -> Self {
        DownState {
            handshake: true,
            body: 0,
            fired: false,
            hole_until: None,
            since_garbage: 0,
        }
    }
}

impl DownState {
    fn forward(
        &mut self,
        unit: &[u8],
        client: &mut TcpStream,
        conn: &Conn,
        shared: &Shared,
    ) -> Next {
        let was_handshake = self.handshake;
        self.handshake = false;
        let at = self.body;
        if !was_handshake {
            self.body += unit.len() as u64;
        }
        let ok = |r: io::Result<()>| if r.is_ok() { Next::Go } else { Next::Close };
        match conn.fault {
            Fault::Pass | Fault::Latency(_) => ok(client.write_all(unit)),
            _ if was_handshake => ok(client.write_all(unit)),
            Fault::Slice { bytes } => {
                let sliced = usize::try_from(bytes.saturating_sub(at))
                    .unwrap_or(usize::MAX)
                    .min(unit.len());
                for b in &unit[..sliced] {
                    if client.write_all(std::slice::from_ref(b)).is_err() {
                        return Next::Close;
                    }
                }
                if sliced > 0 && self.body >= bytes && !self.fired {
                    self.fired = true;
                    shared.fire(conn.n, format!("sliced the first {bytes} bytes"));
                }
                ok(client.write_all(&unit[sliced..]))
            }
            Fault::BlackHole { after_bytes, for_ } => {
                if !self.fired && at >= after_bytes {
                    self.fired = true;
                    self.hole_until = Some(Instant::now() + for_);
                    shared.fire(
                        conn.n,
                        format!("black hole after {at} bytes for {} ms", for_.as_millis()),
                    );
                }
                match self.hole_until {
                    Some(t) if Instant::now() < t => Next::Go,
                    _ => ok(client.write_all(unit)),
                }
            }
            Fault::ResetMidFrame { after_bytes } if at >= after_bytes && unit.len() >= 4 => {
                let half = unit.len() / 2;
                let _ = client.write_all(&unit[..half]);
                let _ = client.flush();
                // Let the half frame reach the client before the reset overtakes it.
                thread::sleep(POLL);
                shared.fire(
                    conn.n,
                    format!(
                        "reset mid-frame after {at} bytes ({half} of a {}-byte frame)",
                        unit.len()
                    ),
                );
                Next::Reset
            }
            Fault::ResetMidFrame { .. } => ok(client.write_all(unit)),
            Fault::InjectGarbage {
                after_bytes,
                then_frames,
            } => {
                if !self.fired && at >= after_bytes {
                    self.fired = true;
                    if client.write_all(&text_frame(GARBAGE_JSON)).is_err() {
                        return Next::Close;
                    }
                    shared.fire(conn.n, format!("invalid JSON frame after {at} bytes"));
                } else if self.fired {
                    self.since_garbage += 1;
                    if self.since_garbage == then_frames {
                        if client.write_all(&text_frame(GARBAGE_UTF8)).is_err() {
                            return Next::Close;
                        }
                        shared.fire(conn.n, format!("invalid UTF-8 frame after {at} bytes"));
                    }
                }
                ok(client.write_all(unit))
            }
            Fault::Close { after_bytes, code } if at >= after_bytes => {
                let _ = client.write_all(&close_frame(code, "fault proxy"));
                let _ = client.flush();
                shared.fire(conn.n, format!("close {code} after {at} bytes"));
                // Give the client a moment to read the close frame before the FIN.
                thread::sleep(POLL);
                Next::Close
            }
            Fault::Close { .. } => ok(client.write_all(unit)),
        }
    }
}
