//! Builds the `[nats]` section: [`RawNats`] (exactly the TOML shape, unknown keys refused) is
//! validated into the bridge's [`NatsConfig`]; an invalid value fails start-up naming the key.
//! Values that may hold secrets (a URL with `user:password@`) are never echoed in errors.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, range, ConfigError};
use crate::bridge::config::{redact_url, JetStreamConfig, NatsConfig, Payload};

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
