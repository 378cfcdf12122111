//! Why a configuration is refused, and the checks every section's validation shares: each
//! error names the key (`feeds.binance.queue_capacity_frames`), the value and what was expected.

use std::path::PathBuf;
use std::time::Duration;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not a `source()`: each OS text is printed once).
        cause: std::io::Error,
    },
    /// A file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file (or `--set`/environment source).
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key has a value of the wrong type or range, or is unknown.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the key (`feeds.binance.queue_capacity_frames`).
        key: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A `--set` flag or environment override is not `key=value`.
    #[error("override `{0}` is not of the form section.key=value")]
    BadOverride(String),
}

/// A [`ConfigError::Invalid`] for `key`.
pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// `v` when it is in `lo..=hi` (`unit` names the unit in the message).
pub(super) fn range(key: &str, v: u64, lo: u64, hi: u64, unit: &str) -> Result<u64, ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(
            key,
            format!("{v} is out of range: expected {lo}..={hi} {unit}"),
        ))
    }
}

/// A duration in ms, in `lo..=hi`.
pub(super) fn ms(key: &str, v: u64, lo: u64, hi: u64) -> Result<Duration, ConfigError> {
    range(key, v, lo, hi, "ms").map(Duration::from_millis)
}

/// A path that must not be empty.
pub(super) fn nonempty_path(key: &str, s: &str) -> Result<PathBuf, ConfigError> {
    if s.is_empty() {
        Err(invalid(key, "must not be empty"))
    } else {
        Ok(PathBuf::from(s))
    }
}

/// True for a name of letters, digits, `_` and `-` (TOML's bare key; also the rule for feed and
/// environment names).
pub(super) fn is_bare(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// One segment of a dotted key as TOML writes it: bare when it is letters, digits, `_` and `-`,
/// else quoted (`""`, `"a b"`, `"x\"y"`), so a reported key is never empty or ambiguous.
pub(super) fn key_segment(segment: &str) -> String {
    if is_bare(segment) {
        return segment.to_owned();
    }
    let mut out = String::with_capacity(segment.len() + 2);
    out.push('"');
    for c in segment.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The key a deserialization error points at, in TOML's dotted form (`feeds."a b".venue`,
/// `feeds.x.channels[2]`); `.` for the document itself.
pub(super) fn serde_key(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&key_segment(key));
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_segments_are_bare_or_quoted_never_empty() {
        assert_eq!(
            key_segment("queue_capacity_frames"),
            "queue_capacity_frames"
        );
        assert_eq!(key_segment("collector-binance"), "collector-binance");
        assert_eq!(key_segment(""), "\"\"");
        assert_eq!(key_segment("a b"), "\"a b\"");
        assert_eq!(key_segment("x\"y\\"), r#""x\"y\\""#);
        assert_eq!(key_segment("tab\there"), r#""tab\u0009here""#);
    }
}
