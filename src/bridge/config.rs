//! The NATS bridge's configuration (`[nats]`; `mdrelay nats-bridge`, or started by `mdrelay run`
//! when `enabled`), built by the `config` module (`config/nats.rs`).
//!
//! Compiled with or without the `nats` feature, so a configuration file is valid (or invalid)
//! the same way in every build; only `enabled = true` is refused by a build without the feature.
//! Values that may hold secrets (a URL with `user:password@`) are never echoed: see
//! [`redact_url`].

use std::path::PathBuf;
use std::time::Duration;

/// What a NATS message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// The relay's protocol frame, byte for byte (docs/PROTOCOL.md): header, payload, CRC.
    Frame,
    /// One object of the JSON-lines schema of `mdrelay tail --json` (README), no newline.
    Json,
}

/// JetStream retention for the bridge's subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// Stream name; created (or updated to these limits) when the bridge connects.
    pub stream: String,
    /// Oldest message kept; zero = no age limit.
    pub max_age: Duration,
    /// Bytes kept; 0 = no limit. Always ≤ `i64::MAX`.
    pub max_bytes: u64,
    /// Messages kept; 0 = no limit. Always ≤ `i64::MAX`.
    pub max_msgs: u64,
}

/// The validated `[nats]` section.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `mdrelay run` starts the bridge (`mdrelay nats-bridge` runs it regardless).
    pub enabled: bool,
    /// Server URLs (`nats://` or `tls://`), at least one. May carry `user:password@`: log
    /// [`NatsConfig::redacted_urls`], never this.
    pub urls: Vec<String>,
    /// First subject token(s); every subject is `<prefix>.<venue>.<symbol>.<kind>`. Valid
    /// subject tokens, never empty.
    pub subject_prefix: String,
    /// Message payload format.
    pub payload: Payload,
    /// Capacity of the buffer between the relay reader and the NATS publisher, in frames;
    /// always ≥ 1.
    pub buffer_frames: usize,
    /// First delay before reconnecting to NATS (the first retry is immediate).
    pub reconnect_initial: Duration,
    /// Cap of the doubling reconnect delay; always ≥ `reconnect_initial`.
    pub reconnect_max: Duration,
    /// NATS credentials file (JWT + NKey seed). Its content is never logged.
    pub credentials_file: Option<PathBuf>,
    /// PEM CA certificates the server's certificate must chain to (implies TLS).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS); set exactly when `tls_key_file` is.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// JetStream retention, when enabled.
    pub jetstream: Option<JetStreamConfig>,
}

impl std::fmt::Debug for NatsConfig {
    // URLs may hold a password: Debug output shows them redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("enabled", &self.enabled)
            .field("urls", &self.redacted_urls())
            .field("subject_prefix", &self.subject_prefix)
            .field("payload", &self.payload)
            .field("buffer_frames", &self.buffer_frames)
            .field("reconnect_initial", &self.reconnect_initial)
            .field("reconnect_max", &self.reconnect_max)
            .field("credentials_file", &self.credentials_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("jetstream", &self.jetstream)
            .finish()
    }
}

impl NatsConfig {
    /// The server URLs with any `user:password@` replaced by `***@`: what logs show.
    pub fn redacted_urls(&self) -> String {
        self.urls
            .iter()
            .map(|u| redact_url(u))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// True when the connection must use TLS (a `tls://` URL or any TLS file).
    pub fn tls_required(&self) -> bool {
        self.urls.iter().any(|u| u.starts_with("tls://"))
            || self.tls_ca_file.is_some()
            || self.tls_cert_file.is_some()
    }
}

/// `scheme://user:pass@host:port` → `scheme://***@host:port`; anything else unchanged.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let host_start = rest.find('/').unwrap_or(rest.len());
    let redacted = match rest[..host_start].rfind('@') {
        Some(at) => format!("***{}", &rest[at..]),
        None => rest.to_owned(),
    };
    match scheme {
        Some(s) => format!("{s}://{redacted}"),
        None => redacted,
    }
}
