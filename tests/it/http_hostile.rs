//! Hostile and clumsy HTTP clients (issue 17, defects 1, 2 and 11): a client that trickles its
//! request, hundreds of idle connections, a client that never reads its response, more
//! connections than the cap, bare-LF request heads, SIGTERM with all of them connected, and
//! scrapes hard enough to have made the consumer skip publications.
//!
//! Timing bounds are generous (seconds) and each sits far from what the broken server did
//! (minutes, or never); the one exception is the issue's must-show figure, `/health` within 1 s
//! with 500 idle connections and a trickling client open.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mdrelay::base::stats::StopFlag;
use mdrelay::run;
use mdrelay::serve::http::{self, HttpCounters, HttpServer, Request, Response, ServerOptions};
use rustix::process::{kill_process, Pid, Signal};

use crate::util;

/// A server on 127.0.0.1:0 answering every request 200 `{"ok":true}` (or `big` bytes on
/// `/big`).
fn server(deadline: Duration, max: usize) -> (HttpServer, Arc<HttpCounters>) {
    let counters = Arc::new(HttpCounters::default());
    let handler = |r: &Request<'_>| -> Response {
        if r.path == "/big" {
            return Response::new(200, "application/octet-stream", vec![b'x'; 32 << 20]);
        }
        Response::json(200, r#"{"ok":true}"#)
    };
    let opts = ServerOptions {
        listen: (Ipv4Addr::LOCALHOST, 0).into(),
        request_deadline: deadline,
        max_connections: max,
    };
    let s = http::start(
        opts,
        Arc::new(handler),
        counters.clone(),
        Arc::new(StopFlag::default()),
        None,
    )
    .unwrap();
    (s, counters)
}

/// Sends `raw` on a new connection and reads the whole answer: (status, text), or `None` when
/// nothing complete came within `timeout`.
fn ask(addr: SocketAddr, raw: &[u8], timeout: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(raw).ok()?;
    read_answer(&mut s)
}

fn read_answer(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

/// A client that sends a request head one byte every `gap`, reconnecting whenever the server
/// closes it, until stopped.
struct Trickler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Trickler {
    fn start(addr: SocketAddr, gap: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = thread::spawn(move || {
            let head = format!(
                "GET /health HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
                "a".repeat(4000)
            );
            while !st.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(addr) else {
                    thread::sleep(gap);
                    continue;
                };
                for b in head.as_bytes() {
                    if st.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                        break;
                    }
                    thread::sleep(gap);
                }
            }
        });
        Trickler {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Trickler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `n` connections that connect and send nothing; `None` when one could not connect in 5 s.
fn idle_connections(addr: SocketAddr, n: usize) -> Option<Vec<TcpStream>> {
    (0..n)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok())
        .collect()
}

#[test]
fn defect_1_a_request_trickled_past_its_deadline_is_cut_with_408() {
    let _wd = util::Watchdog::new("http_408", 60);
    let (srv, counters) = server(Duration::from_millis(500), 16);
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // 1 byte every 100 ms: the whole head would take minutes; the per-read timeout of the old
    // server never fired on it.
    let head = format!("GET /x HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(2000));
    let start = Instant::now();
    for b in head.as_bytes() {
        if s.write_all(&[*b]).is_err() {
            break; // the server closed it
        }
        thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    let (status, text) = read_answer(&mut s).expect("an answer before the close");
    assert_eq!(status, 408, "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "cut at its deadline, not at the end of its request: {:?}",
        start.elapsed()
    );
    assert_eq!(counters.timed_out.get(), 1);
    assert_eq!(counters.requests.get(), 0);
    srv.shutdown().unwrap();
}

#[test]
fn defect_1_a_trickling_client_and_idle_connections_do_not_delay_others() {
    let _wd = util::Watchdog::new("http_concurrent", 60);
    let (srv, counters) = server(Duration::from_secs(60), 1024);
    let addr = srv.local_addr();
    let _slow = Trickler::start(addr, Duration::from_millis(100));
    let _idle = idle_connections(addr, 200).expect("200 idle connections");
    // A client that asks for 32 MiB and never reads: the server must not wait on it either.
    let mut hog = TcpStream::connect(addr).unwrap();
    hog.write_all(b"GET /big HTTP/1.1\r\n\r\n").unwrap();
    for i in 0..20 {
        let answer = ask(
            addr,
            b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n",
            Duration::from_secs(5),
        );
        let (status, text) = answer.unwrap_or_else(|| panic!("request {i} not answered in 5 s"));
        assert_eq!(status, 200, "{text}");
    }
    assert!(util::wait_until(Duration::from_secs(10), || counters
        .open
        .get()
        >= 202));
    drop(hog);
    srv.shutdown().unwrap();
}

#[test]
fn defect_1_connections_beyond_the_cap_are_refused_with_503_and_counted() {
    let _wd = util::Watchdog::new("http_cap", 60);
    let (srv, counters) = server(Duration::from_secs(60), 2);
    let addr = srv.local_addr();
    let idle = idle_connections(addr, 2).unwrap();
    assert!(util::wait_until(Duration::from_secs(10), || counters
        .open
        .get()
        == 2));
    let (status, text) = ask(
        addr,
        b"GET /health HTTP/1.1\r\n\r\n",
        Duration::from_secs(10),
    )
    .expect("a refusal, not silence");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    assert!(text.contains("too many connections"), "{text}");
    assert_eq!(counters.refused.get(), 1);
    drop(idle);
    assert!(util::wait_until(Duration::from_secs(10), || counters
        .open
        .get()
        == 0));
    let (status, _) = ask(
        addr,
        b"GET /health HTTP/1.1\r\n\r\n",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(status, 200, "served again once below the cap");
    srv.shutdown().unwrap();
}

#[test]
fn defect_2_server_shutdown_never_waits_for_a_client() {
    let _wd = util::Watchdog::new("http_shutdown", 60);
    let (srv, _) = server(Duration::from_secs(600), 64);
    let addr = srv.local_addr();
    let _slow = Trickler::start(addr, Duration::from_millis(100));
    let _idle = idle_connections(addr, 20).unwrap();
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    srv.shutdown().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        t.elapsed()
    );
}

#[test]
fn defect_11b_lf_only_request_heads_are_answered() {
    let _wd = util::Watchdog::new("http_lf", 60);
    let (srv, counters) = server(Duration::from_secs(10), 16);
    for raw in [
        &b"GET /health HTTP/1.1\nHost: t\n\n"[..],
        b"GET /health HTTP/1.0\n\n",
        b"GET /health HTTP/1.1\r\nHost: t\n\r\n",
    ] {
        let (status, text) = ask(srv.local_addr(), raw, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{:?} not answered", String::from_utf8_lossy(raw)));
        assert_eq!(status, 200, "{text}");
    }
    // Not HTTP at all: a 400 naming the problem, counted.
    let (status, text) = ask(
        srv.local_addr(),
        b"\x16\x03\x01garbage\n\n",
        Duration::from_secs(10),
    )
    .expect("an answer");
    assert_eq!(status, 400, "{text}");
    assert_eq!(counters.bad_requests.get(), 1);
    srv.shutdown().unwrap();
}

/// Kills the child if the test ends without reaping it.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The issue's must-show, on the real binary with the demo configuration: one client sending
/// 1 byte every 100 ms and 500 idle connections open; `/health` answers a new client within 1 s,
/// and SIGTERM ends the relay with status 0 within 5 s. (Before: 0 of 4 health checks answered
/// in 20 s, and the relay still ran 30 s after SIGTERM.)
#[test]
fn defects_1_and_2_slow_and_idle_clients_starve_neither_health_nor_sigterm() {
    let _wd = util::Watchdog::new("http_must_show", 120);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = util::mdrelay_in(dir.path());
    cmd.args(["run", "--set", "http.listen=\"127.0.0.1:0\""])
        // Nobody is cut by the deadline during the test: it is concurrency that serves
        // /health, not the deadline freeing the server.
        .args(["--set", "http.request_deadline_ms=120000"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Reap(cmd.spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let log = thread::spawn(move || {
        let mut text = String::new();
        let mut r = std::io::BufReader::new(stderr);
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut r, &mut line).unwrap_or(0) > 0 {
            if line.contains("http listening") {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                let _ = tx.send(addr);
            }
            text.push_str(&line);
            line.clear();
        }
        text
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the relay logs its HTTP address")
        .expect("an ip:port after addr=");

    let slow = Trickler::start(addr, Duration::from_millis(100));
    let idle = idle_connections(addr, 500).expect("500 idle connections accepted");
    thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let answer = ask(
        addr,
        b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    let took = t.elapsed();
    let (status, text) = answer.expect("/health answered");
    assert!(
        (status == 200 || status == 503) && text.contains("\"status\""),
        "a health verdict, not a refusal: {text}"
    );
    assert!(took < Duration::from_secs(1), "/health took {took:?}");
    // The condition held: every idle connection and the trickler were open meanwhile.
    let (_, metrics) = ask(
        addr,
        b"GET /metrics HTTP/1.1\r\n\r\n",
        Duration::from_secs(10),
    )
    .expect("/metrics answered");
    let open: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mdrelay_http_open_connections "))
        .and_then(|v| v.trim().parse().ok())
        .expect("mdrelay_http_open_connections");
    assert!(open >= 501.0, "open connections {open}");

    kill_process(Pid::from_child(&child.0), Signal::TERM).unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break Some(s);
        }
        if t.elapsed() > Duration::from_secs(5) {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let took = t.elapsed();
    drop(idle);
    drop(slow);
    drop(child);
    let log = log.join().unwrap();
    let status = status.unwrap_or_else(|| panic!("still running 5 s after SIGTERM\n{log}"));
    assert!(status.success(), "exit {status:?} after {took:?}\n{log}");
}

/// Scrapes that hammer `/metrics` and the query API never make the consumer skip a
/// publication: the query snapshot is published every time (none skipped) and the latency
/// snapshot keeps moving (before, a scrape holding the lock made the consumer skip, and the
/// status line repeated stale latency figures).
#[test]
fn defect_11a_hard_scraping_never_costs_the_consumer_a_publication() {
    let _wd = util::Watchdog::new("http_publication", 120);
    let exchange = util::binance_exchange(false);
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.push("http.snapshot_interval_ms=10".into());
    let mut relay = run::start(util::config(&sets)).unwrap();
    let addr = relay.http_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let scrapers: Vec<_> = ["/metrics", "/v1/instruments", "/metrics"]
        .into_iter()
        .map(|path| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let raw = format!("GET {path} HTTP/1.1\r\n\r\n");
                    if ask(addr, raw.as_bytes(), Duration::from_secs(10)).is_some() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let published = relay.published();
    let v0 = published.version();
    relay.status_line();
    thread::sleep(Duration::from_secs(3));
    let v1 = published.version();
    let line = relay.status_line();
    stop.store(true, Ordering::Relaxed);
    let scrapes: u64 = scrapers.into_iter().map(|t| t.join().unwrap()).sum();
    let metrics = util::http_get(addr, "/metrics").1;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
    };
    assert!(scrapes > 30, "it was scraped hard: {scrapes}");
    assert_eq!(
        value("mdrelay_query_snapshots_skipped_total"),
        0.0,
        "{scrapes} scrapes"
    );
    assert!(value("mdrelay_query_snapshots_published_total") > 10.0);
    // Published every 500 ms: at least 3 in 3 s even on a loaded machine.
    assert!(v1 >= v0 + 3, "latency published {} times in 3 s", v1 - v0);
    assert!(line.contains("latency p50"), "{line}");
    // A line with no publication since the previous one says so instead of repeating figures
    // (two lines microseconds apart; a publication in between is possible, so try a few times).
    let said_so = (0..20).any(|_| {
        relay.status_line();
        relay
            .status_line()
            .contains("latency not republished since the last line")
    });
    assert!(said_so);
    relay.shutdown();
    exchange.stop();
}
