//! The `[nats]` configuration section: the NATS bridge (`mdrelay nats-bridge`, or started by
//! `mdrelay run` when `enabled`). Parsed as [`RawNats`] (exactly the TOML shape, unknown keys
//! refused) and validated into [`NatsConfig`]; an invalid value fails start-up naming the key.
//!
//! Compiled with or without the `nats` feature, so a configuration file is valid (or invalid)
//! the same way in every build; only `enabled = true` is refused by a build without the feature.
//! Values that may hold secrets (a URL with `user:password@`) are never echoed in errors: see
//! [`redact_url`]. Runs once on the main thread at start-up; pure.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// `[nats]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    enabled: bool,
    url: String,
    subject_prefix: String,
    payload: String,
    buffer_frames: u64,
    reconnect_initial_ms: u64,
    reconnect_max_ms: u64,
    credentials_file: String,
    tls_ca_file: String,
    tls_cert_file: String,
    tls_key_file: String,
    jetstream: RawJetStream,
}

/// `[nats.jetstream]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJetStream {
    enabled: bool,
    stream: String,
    max_age_s: u64,
    max_bytes: u64,
    max_msgs: u64,
}

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

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

fn range(key: &str, v: u64, lo: u64, hi: u64, unit: &str) -> Result<u64, ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(
            key,
            format!("{v} is out of range: expected {lo}..={hi} {unit}"),
        ))
    }
}

/// A NATS subject token: non-empty, no `.`, `*`, `>`, whitespace or control characters.
fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.chars()
            .all(|c| !matches!(c, '.' | '*' | '>') && !c.is_whitespace() && !c.is_control())
}

/// An optional path: `""` = not set.
fn file(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

/// Validates `[nats]`.
pub fn validate(r: &RawNats) -> Result<NatsConfig, ConfigError> {
    if r.enabled && !cfg!(feature = "nats") {
        return Err(invalid(
            "nats.enabled",
            "this mdrelay was built without NATS support: rebuild with `--features nats`",
        ));
    }
    let urls: Vec<String> = r.url.split(',').map(|u| u.trim().to_owned()).collect();
    for u in &urls {
        let ok = ["nats://", "tls://"].iter().any(|s| {
            u.strip_prefix(s)
                .is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace))
        });
        if !ok {
            return Err(invalid(
                "nats.url",
                format!(
                    "`{}` is not a nats:// or tls:// URL (several: comma-separated)",
                    redact_url(u)
                ),
            ));
        }
    }
    let prefix = &r.subject_prefix;
    if !prefix.split('.').all(valid_token) || prefix.starts_with('$') {
        return Err(invalid(
            "nats.subject_prefix",
            format!(
                "`{prefix}` is not a subject prefix: tokens separated by `.`, none empty, \
                 without `*`, `>` or whitespace, not starting with `$`"
            ),
        ));
    }
    let payload = match r.payload.as_str() {
        "frame" => Payload::Frame,
        "json" => Payload::Json,
        other => {
            return Err(invalid(
                "nats.payload",
                format!("`{other}` is not a payload format: expected \"frame\" or \"json\""),
            ))
        }
    };
    let reconnect_initial = Duration::from_millis(range(
        "nats.reconnect_initial_ms",
        r.reconnect_initial_ms,
        1,
        600_000,
        "ms",
    )?);
    let reconnect_max = Duration::from_millis(range(
        "nats.reconnect_max_ms",
        r.reconnect_max_ms,
        1,
        3_600_000,
        "ms",
    )?);
    if reconnect_max < reconnect_initial {
        return Err(invalid(
            "nats.reconnect_max_ms",
            "must be ≥ nats.reconnect_initial_ms",
        ));
    }
    let tls_cert_file = file(&r.tls_cert_file);
    let tls_key_file = file(&r.tls_key_file);
    if tls_cert_file.is_some() != tls_key_file.is_some() {
        return Err(invalid(
            if tls_cert_file.is_some() {
                "nats.tls_key_file"
            } else {
                "nats.tls_cert_file"
            },
            "tls_cert_file and tls_key_file go together (mutual TLS): set both or neither",
        ));
    }
    let j = &r.jetstream;
    let jetstream = if j.enabled {
        let s = &j.stream;
        if s.is_empty()
            || s.len() > 255
            || !s
                .chars()
                .all(|c| (c.is_ascii_graphic()) && !matches!(c, '.' | '*' | '>' | '/' | '\\'))
        {
            return Err(invalid(
                "nats.jetstream.stream",
                format!(
                    "`{s}` is not a stream name: 1 to 255 printable ASCII characters without \
                     `.`, `*`, `>`, `/`, `\\` or spaces"
                ),
            ));
        }
        Some(JetStreamConfig {
            stream: s.clone(),
            max_age: Duration::from_secs(range(
                "nats.jetstream.max_age_s",
                j.max_age_s,
                0,
                315_360_000,
                "s (0 = no limit)",
            )?),
            max_bytes: range(
                "nats.jetstream.max_bytes",
                j.max_bytes,
                0,
                i64::MAX as u64,
                "bytes (0 = no limit)",
            )?,
            max_msgs: range(
                "nats.jetstream.max_msgs",
                j.max_msgs,
                0,
                i64::MAX as u64,
                "messages (0 = no limit)",
            )?,
        })
    } else {
        None
    };
    Ok(NatsConfig {
        enabled: r.enabled,
        urls,
        subject_prefix: prefix.clone(),
        payload,
        buffer_frames: range("nats.buffer_frames", r.buffer_frames, 1, 1 << 24, "frames")? as usize,
        reconnect_initial,
        reconnect_max,
        credentials_file: file(&r.credentials_file),
        tls_ca_file: file(&r.tls_ca_file),
        tls_cert_file,
        tls_key_file,
        jetstream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Sources};

    fn with_sets(sets: &[&str]) -> Result<NatsConfig, ConfigError> {
        load(&Sources {
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Sources::default()
        })
        .map(|c| c.nats)
    }

    #[test]
    fn defaults_are_valid_and_disabled() {
        let n = with_sets(&[]).unwrap();
        assert!(!n.enabled);
        assert_eq!(n.urls, ["nats://127.0.0.1:4222"]);
        assert_eq!(n.subject_prefix, "mdrelay");
        assert_eq!(n.payload, Payload::Frame);
        assert!(n.jetstream.is_none());
        assert!(n.credentials_file.is_none() && !n.tls_required());
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("nats.url=\"http://x\"", "nats.url"),
            ("nats.subject_prefix=\"a..b\"", "nats.subject_prefix"),
            ("nats.subject_prefix=\"md.*\"", "nats.subject_prefix"),
            ("nats.payload=\"xml\"", "nats.payload"),
            ("nats.buffer_frames=0", "nats.buffer_frames"),
            ("nats.reconnect_max_ms=1", "nats.reconnect_max_ms"),
            ("nats.tls_cert_file=\"c.pem\"", "nats.tls_key_file"),
            ("nats.no_such=1", "unknown field `no_such`"),
            ("nats.jetstream.max_msgs=-1", "nats.jetstream.max_msgs"),
        ];
        for (set, want) in cases {
            let err = with_sets(&[set]).unwrap_err().to_string();
            assert!(err.contains(want), "{set}: {err}");
        }
        let err = with_sets(&[
            "nats.jetstream.enabled=true",
            "nats.jetstream.stream=\"a.b\"",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("nats.jetstream.stream"), "{err}");
    }

    #[test]
    fn a_password_in_the_url_is_never_echoed() {
        let err = with_sets(&["nats.url=\"nats://alice:s3cret@host:4222,http://bob:hunter2@x\""])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2") && !err.contains("s3cret"), "{err}");
        let n = with_sets(&["nats.url=\"nats://alice:s3cret@host:4222\""]).unwrap();
        assert_eq!(n.redacted_urls(), "nats://***@host:4222");
        assert!(!format!("{n:?}").contains("s3cret"));
        assert_eq!(redact_url("tls://h:1"), "tls://h:1");
    }

    #[test]
    fn enabling_needs_a_build_with_the_feature() {
        let r = with_sets(&["nats.enabled=true"]);
        if cfg!(feature = "nats") {
            assert!(r.unwrap().enabled);
        } else {
            let err = r.unwrap_err().to_string();
            assert!(
                err.contains("nats.enabled") && err.contains("--features nats"),
                "{err}"
            );
        }
    }

    #[test]
    fn jetstream_limits_are_typed() {
        let n = with_sets(&[
            "nats.jetstream.enabled=true",
            "nats.jetstream.max_age_s=60",
            "nats.jetstream.max_msgs=10",
        ])
        .unwrap();
        let j = n.jetstream.unwrap();
        assert_eq!(j.max_age, Duration::from_secs(60));
        assert_eq!(j.max_msgs, 10);
        assert_eq!(j.stream, "MDRELAY");
    }
}
