//! A small blocking client of the relay's own HTTP API (`/health`, `/metrics`, `/v1/…`, served
//! by [`crate::serve::http`]), used by `mdrelay bars` and by `mdrelay top`'s `top-poller` thread.
//!
//! [`RelayHttp::get`] sends one GET and returns the status and body, whatever the status; the
//! caller says which statuses it expects ([`Answer::status_in`]) and how to read the body
//! ([`Answer::json`]). It blocks the calling thread for at most the timeout given to
//! [`RelayHttp::new`] (connect to last byte). Every [`HttpError`] names the URL.
//!
//! It lives in `cli/`, not `serve/`: it is the client side of that API and only subcommands call
//! it, so the server layer carries no HTTP client.

use std::time::Duration;

use serde_json::Value;

/// Why a request to the relay's HTTP API failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer: connection refused, timeout, malformed HTTP.
    #[error("GET {url}: {cause}")]
    Request {
        /// The URL asked.
        url: String,
        /// What ureq reported.
        cause: ureq::Error,
    },
    /// An answer with a status the caller did not expect.
    #[error("GET {url}: answered {status}{detail}")]
    Status {
        /// The URL asked.
        url: String,
        /// HTTP status code.
        status: u16,
        /// `" error: detail"` from the API's JSON error body (`{"error":…,"detail":…}`); empty
        /// when the body is not one.
        detail: String,
    },
    /// An answer whose body is not what the endpoint documents.
    #[error("GET {url}: unexpected body: {detail}")]
    Body {
        /// The URL asked.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// One answer of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The URL asked.
    pub url: String,
    /// HTTP status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl Answer {
    /// This answer when its status is one of `expected`, else [`HttpError::Status`].
    pub fn status_in(self, expected: &[u16]) -> Result<Answer, HttpError> {
        if expected.contains(&self.status) {
            return Ok(self);
        }
        let detail = api_error(&self.body);
        Err(HttpError::Status {
            url: self.url,
            status: self.status,
            detail,
        })
    }

    /// The body as JSON, or [`HttpError::Body`].
    pub fn json(&self) -> Result<Value, HttpError> {
        serde_json::from_str(&self.body).map_err(|e| self.bad_body(format!("not JSON: {e}")))
    }

    /// [`HttpError::Body`] about this answer.
    pub fn bad_body(&self, detail: impl Into<String>) -> HttpError {
        HttpError::Body {
            url: self.url.clone(),
            detail: detail.into(),
        }
    }
}

/// `" error: detail"` (or `" error"`) of the API's JSON error body; empty for any other body.
fn api_error(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return String::new();
    };
    match (
        v.get("error").and_then(Value::as_str),
        v.get("detail").and_then(Value::as_str),
    ) {
        (Some(e), Some(d)) => format!(" {e}: {d}"),
        (Some(e), None) => format!(" {e}"),
        (None, _) => String::new(),
    }
}

/// `s` percent-encoded as one query-string value.
pub fn query_value(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The HTTP API of one relay. Blocking; one request at a time per caller.
#[derive(Debug)]
pub struct RelayHttp {
    agent: ureq::Agent,
    /// `http://host:port`, no trailing slash.
    base: String,
}

impl RelayHttp {
    /// A client of the relay listening on `addr` (`host:port`, or a URL starting `http://`);
    /// each request takes at most `timeout`.
    pub fn new(addr: &str, timeout: Duration) -> Self {
        let base = if addr.starts_with("http://") {
            addr.trim_end_matches('/').to_owned()
        } else {
            format!("http://{addr}")
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        RelayHttp { agent, base }
    }

    /// `http://host:port` of the relay.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path_and_query` (starting `/`, query values encoded with [`query_value`]): the
    /// answer, whatever its status.
    pub fn get(&self, path_and_query: &str) -> Result<Answer, HttpError> {
        let url = format!("{}{path_and_query}", self.base);
        let failed = |cause| HttpError::Request {
            url: url.clone(),
            cause,
        };
        let mut resp = self.agent.get(&url).call().map_err(failed)?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().map_err(failed)?;
        Ok(Answer { url, status, body })
    }

    /// GET `path_and_query` expecting 200 and a JSON body.
    pub fn get_json(&self, path_and_query: &str) -> Result<Value, HttpError> {
        self.get(path_and_query)?.status_in(&[200])?.json()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// A server on 127.0.0.1:0 answering one request with `status` and `body`.
    fn answer_once(status: &'static str, body: &'static str) -> (String, thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "request cut short");
                got.extend_from_slice(&buf[..n]);
            }
            write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        });
        (addr, h)
    }

    #[test]
    fn the_base_url_is_normalized() {
        let t = Duration::from_secs(1);
        assert_eq!(RelayHttp::new("h:1", t).base(), "http://h:1");
        assert_eq!(RelayHttp::new("http://h:1/", t).base(), "http://h:1");
        assert_eq!(query_value("a b&c/é"), "a+b%26c%2F%C3%A9");
    }

    #[test]
    fn an_unexpected_status_names_the_url_and_the_apis_error() {
        let (addr, h) = answer_once(
            "400 Bad Request",
            r#"{"error":"bad request","detail":"interval: 7m"}"#,
        );
        let c = RelayHttp::new(&addr, Duration::from_secs(5));
        let e = c.get_json("/v1/bars?interval=7m").unwrap_err();
        h.join().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "GET http://{addr}/v1/bars?interval=7m: answered 400 bad request: interval: 7m"
            )
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_a_body_error() {
        let (addr, h) = answer_once("200 OK", "{nope");
        let c = RelayHttp::new(&addr, Duration::from_secs(5));
        let e = c.get_json("/v1/instruments").unwrap_err();
        h.join().unwrap();
        assert!(matches!(e, HttpError::Body { .. }), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "GET http://{addr}/v1/instruments: unexpected body: not JSON"
            )),
            "{e}"
        );
    }

    #[test]
    fn a_refused_connection_names_the_url() {
        // Bind then drop: the port is (almost certainly) closed for the request.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = RelayHttp::new(&addr.to_string(), Duration::from_secs(1))
            .get("/health")
            .unwrap_err();
        assert!(matches!(e, HttpError::Request { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("GET http://{addr}/health: ")),
            "{e}"
        );
    }
}
