//! The HTTP endpoint: `/metrics` (Prometheus text) and `/health` (JSON), with room for more
//! routes.
//!
//! The server itself, the `http` thread's event loop, is [`super::server`] (re-exported here:
//! [`start`], [`HttpServer`], [`ServerOptions`], [`HttpCounters`]): it serves every connection
//! at once, with one deadline per request and a cap on open connections. This file holds what
//! it serves: requests and responses as values, the [`Handler`] trait and the relay's
//! [`Router`].
//!
//! Handlers see a [`Request`] and return a [`Response`], plain values independent of the
//! socket, so a route can be tested without one. The API is read-only: any method
//! but GET and HEAD gets 405 before routing. A handler that panics yields a 500 and the server
//! goes on. Failures are logged at `warn` at most once per [`super::server::WARN_INTERVAL`] (the rest are
//! counted into the next line); a client that went away before its response is `debug`.

use std::fmt;

use crate::base::clock;
use crate::serve::metrics::{self, MetricsSources};

pub use super::server::{
    parse_head, start, Head, HttpCounters, HttpServer, ServerOptions, MAX_HEAD_BYTES,
    POLL_INTERVAL, THREAD_NAME,
};

/// `Content-Type` of JSON bodies.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// A request as handlers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method as sent (`GET`, `HEAD`, …).
    pub method: &'a str,
    /// The path, raw (not percent-decoded); always starts with `/`; no query.
    pub path: &'a str,
    /// What follows the first `?`, raw; `None` without one.
    pub query: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// Splits a request target (`/path?query`); only origin-form targets are accepted.
    pub fn parse(method: &'a str, target: &'a str) -> Result<Self, &'static str> {
        if !target.starts_with('/') {
            return Err("request target must be a path starting with /");
        }
        if target.chars().any(char::is_control) {
            return Err("request target contains a control character");
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        Ok(Request {
            method,
            path,
            query,
        })
    }

    /// True for GET and HEAD, the only methods this read-only API serves.
    pub fn is_read(&self) -> bool {
        self.method == "GET" || self.method == "HEAD"
    }
}

/// A response as handlers build it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code, 100..=599.
    pub status: u16,
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// Further headers (name, value); names and values are ASCII without CR/LF.
    pub headers: Vec<(&'static str, String)>,
    /// The body (not sent for HEAD).
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `body`.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON response; `body` is already JSON.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status, JSON_CONTENT_TYPE, body)
    }

    /// `{"error": message, …extra}` with `status`.
    pub fn error(status: u16, message: &str, extra: &[(&str, &str)]) -> Self {
        let mut m = serde_json::Map::new();
        m.insert("error".into(), message.into());
        for (k, v) in extra {
            m.insert((*k).into(), (*v).into());
        }
        Response::json(status, serde_json::Value::Object(m).to_string())
    }

    /// 404 `{"error":"not found","path":…}`.
    pub fn not_found(path: &str) -> Self {
        Response::error(404, "not found", &[("path", path)])
    }

    /// 405 with `Allow: GET, HEAD`.
    pub fn method_not_allowed(method: &str) -> Self {
        let mut r = Response::error(405, "method not allowed", &[("method", method)]);
        r.headers.push(("Allow", "GET, HEAD".into()));
        r
    }

    /// 400 `{"error":"bad request","detail":…}`.
    pub fn bad_request(detail: &str) -> Self {
        Response::error(400, "bad request", &[("detail", detail)])
    }

    /// 500 `{"error":"internal error"}`.
    pub fn internal_error() -> Self {
        Response::error(500, "internal error", &[])
    }
}

/// Answers requests. Called on the `http` thread, one request at a time; must not block (it
/// delays every other connection): read atomics and published snapshots only.
pub trait Handler: Send + Sync + 'static {
    /// The response to `req`.
    fn handle(&self, req: &Request<'_>) -> Response;
}

impl<F> Handler for F
where
    F: Fn(&Request<'_>) -> Response + Send + Sync + 'static,
{
    fn handle(&self, req: &Request<'_>) -> Response {
        self(req)
    }
}

/// A route handler that may decline: `None` means "not mine" (the router answers 404).
pub type Fallback = Box<dyn Fn(&Request<'_>) -> Option<Response> + Send + Sync>;

/// The relay's routes: `GET /metrics`, `GET /health`, then the fallback (e.g. `/v1/…`), then 404.
/// Any method but GET and HEAD: 405.
pub struct Router {
    /// What `/metrics` and `/health` read.
    sources: MetricsSources,
    /// Consulted for every path the router does not serve itself.
    fallback: Option<Fallback>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("feeds", &self.sources.feeds.len())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Router {
    /// Routes `/metrics` and `/health` over `sources`.
    pub fn new(sources: MetricsSources) -> Self {
        Router {
            sources,
            fallback: None,
        }
    }

    /// Adds the handler for every other path.
    pub fn with_fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// What `/metrics` and `/health` read.
    pub fn sources(&self) -> &MetricsSources {
        &self.sources
    }
}

impl Handler for Router {
    fn handle(&self, req: &Request<'_>) -> Response {
        if !req.is_read() {
            return Response::method_not_allowed(req.method);
        }
        match req.path {
            "/metrics" => {
                let mut text = String::with_capacity(16 * 1024);
                metrics::render_prometheus(&self.sources, &mut text);
                let mut r = Response::new(200, metrics::CONTENT_TYPE, text);
                r.headers.push(("Cache-Control", "no-store".into()));
                r
            }
            "/health" => {
                let (status, body) = metrics::health(&self.sources, clock::mono_ns());
                let mut r = Response::json(status, body);
                r.headers.push(("Cache-Control", "no-store".into()));
                r
            }
            path => self
                .fallback
                .as_ref()
                .and_then(|f| f(req))
                .unwrap_or_else(|| Response::not_found(path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::base::stats::StopFlag;
    use crate::market::instrument::Venue;
    use crate::serve::metrics::tests::{feed, parse_exposition, sources, value};

    /// A raw HTTP exchange: (status, headers lower-cased, body).
    fn exchange(addr: SocketAddr, raw: &str) -> (u16, Vec<(String, String)>, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    }

    fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
        exchange(
            addr,
            &format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        )
    }

    fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn any_port() -> ServerOptions {
        ServerOptions::new((Ipv4Addr::LOCALHOST, 0).into())
    }

    #[test]
    fn serves_metrics_health_and_errors_over_tcp() {
        let (a, _p) = feed("binance", Venue::Binance, 16);
        a.stats.collector.frames.add(42);
        a.stats.collector.connected.set(1);
        a.stats
            .collector
            .last_data_mono_ns
            .set(clock::mono_ns().max(1));
        let router = Router::new(sources(vec![a], clock::mono_ns())).with_fallback(Box::new(
            |r: &Request<'_>| {
                (r.path == "/v1/echo").then(|| Response::json(200, format!("{:?}", r.query)))
            },
        ));
        let stop = Arc::new(StopFlag::default());
        let server = start(any_port(), Arc::new(router), Arc::default(), stop, None).unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        let (status, h, body) = get(addr, "GET", "/metrics");
        assert_eq!(status, 200);
        assert_eq!(header(&h, "content-type"), Some(metrics::CONTENT_TYPE));
        let samples = parse_exposition(&body).unwrap();
        assert_eq!(
            value(
                &samples,
                "mdrelay_feed_frames_total",
                &[("feed", "binance")]
            ),
            42.0
        );

        let (status, h, body) = get(addr, "GET", "/health?verbose=1");
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&h, "content-type"), Some(JSON_CONTENT_TYPE));
        let j: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(j["status"], "ok");

        let (status, _, body) = get(addr, "HEAD", "/health");
        assert_eq!((status, body.as_str()), (200, ""));

        let (status, h, body) = get(addr, "GET", "/nope");
        assert_eq!(status, 404);
        assert_eq!(header(&h, "content-type"), Some(JSON_CONTENT_TYPE));
        assert_eq!(body, r#"{"error":"not found","path":"/nope"}"#);

        let (status, _, body) = get(addr, "GET", "/v1/echo?x=1");
        assert_eq!((status, body.as_str()), (200, r#"Some("x=1")"#));

        let (status, h, body) = get(addr, "POST", "/metrics");
        assert_eq!(status, 405, "{body}");
        assert_eq!(header(&h, "allow"), Some("GET, HEAD"));

        // Not a path, or not HTTP at all: 400, and the server goes on.
        let (status, _, body) = get(addr, "GET", "metrics");
        assert_eq!(status, 400, "{body}");
        let (status, _, _) = exchange(addr, "garbage\r\n\r\n");
        assert_eq!(status, 400);
        assert_eq!(get(addr, "GET", "/metrics").0, 200);

        let t = Instant::now();
        server.shutdown().unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        // The listener is closed when the thread ends.
        while TcpStream::connect(addr).is_ok() {
            assert!(t.elapsed() < Duration::from_secs(2), "still listening");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_panicking_handler_is_a_500_and_the_server_goes_on() {
        let handler = |r: &Request<'_>| -> Response {
            if r.path == "/boom" {
                panic!("test handler panics on purpose");
            }
            Response::json(200, "{}")
        };
        let server = start(
            any_port(),
            Arc::new(handler),
            Arc::default(),
            Arc::default(),
            None,
        )
        .unwrap();
        let addr = server.local_addr();
        let (status, _, body) = get(addr, "GET", "/boom");
        assert_eq!(status, 500);
        assert_eq!(body, r#"{"error":"internal error"}"#);
        assert_eq!(get(addr, "GET", "/ok").0, 200);
        server.shutdown().unwrap();
    }

    #[test]
    fn the_process_stop_flag_ends_the_thread() {
        let stop = Arc::new(StopFlag::default());
        let handler = |_: &Request<'_>| Response::json(200, "{}");
        let server = start(
            any_port(),
            Arc::new(handler),
            Arc::default(),
            stop.clone(),
            None,
        )
        .unwrap();
        stop.stop();
        let t = Instant::now();
        while !server.is_finished() {
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "http thread still running"
            );
            thread::sleep(Duration::from_millis(5));
        }
        server.shutdown().unwrap();
    }

    #[test]
    fn binding_a_taken_port_fails_at_start() {
        let first = start(
            any_port(),
            Arc::new(|_: &Request<'_>| Response::json(200, "{}")),
            Arc::default(),
            Arc::default(),
            None,
        )
        .unwrap();
        let err = start(
            ServerOptions::new(first.local_addr()),
            Arc::new(|_: &Request<'_>| Response::json(200, "{}")),
            Arc::default(),
            Arc::default(),
            None,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn router_answers_without_a_socket() {
        let router = Router::new(sources(Vec::new(), 0));
        let r = router.handle(&Request::parse("DELETE", "/health").unwrap());
        assert_eq!(r.status, 405);
        let r = router.handle(&Request::parse("GET", "/v1/x?y").unwrap());
        assert_eq!(r.status, 404);
        assert_eq!(r.body, br#"{"error":"not found","path":"/v1/x"}"#);
        let r = router.handle(&Request::parse("GET", "/health").unwrap());
        assert_eq!((r.status, r.content_type), (200, JSON_CONTENT_TYPE));
        let r = router.handle(&Request::parse("GET", "/metrics").unwrap());
        assert_eq!(r.content_type, metrics::CONTENT_TYPE);
    }

    #[test]
    fn request_targets_are_split_and_checked() {
        let r = Request::parse("GET", "/a/b?c=d?e").unwrap();
        assert_eq!((r.path, r.query), ("/a/b", Some("c=d?e")));
        assert_eq!(Request::parse("GET", "/").unwrap().query, None);
        assert!(Request::parse("GET", "*").is_err());
        assert!(Request::parse("GET", "http://x/metrics").is_err());
        assert!(Request::parse("GET", "/a\u{7f}").is_err());
    }
}
