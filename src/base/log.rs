//! What the process log looks like: the `[log]` section ([`LogConfig`]: text or JSON lines, and
//! the level as `EnvFilter` directives), and the pure decisions about it — whether text lines
//! carry colour ([`colour`]) and whether a level string is one mdrelay accepts
//! ([`check_level`]). Installing the subscriber is the command line's job (`cli::log`); the log
//! is set up once, on the main thread, before any other thread starts.

use std::ffi::OsStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event: time, level, target, message, fields.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `threadName`), for
    /// collectors that parse fields.
    Json,
}

impl LogFormat {
    /// The format a `[log] format` value names: `"text"` or `"json"`.
    pub fn from_name(name: &str) -> Option<LogFormat> {
        match name {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// The validated `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// `EnvFilter` directives (`"info"`, `"warn,mdrelay::feed=debug"`); always passes
    /// [`check_level`]. `RUST_LOG`, when set and not empty, is used instead.
    pub level: String,
}

impl Default for LogConfig {
    /// Text lines at `info`: what the built-in `config/default.toml` says.
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Text lines carry colour only when stderr is a terminal and `NO_COLOR` is unset or empty
/// (no-color.org): a log redirected to a file or a journal has no escape sequences.
pub fn colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// `Ok` when `level` is a filter mdrelay accepts: comma-separated `EnvFilter` directives, each
/// either a bare level (`off`, `error`, `warn`, `info`, `debug`, `trace`) or `target=level`
/// (spans and fields as `EnvFilter` reads them). A bare word that is not a level (`verbose`)
/// would be a target filter that silences everything else, so it is refused as a typo.
pub fn check_level(level: &str) -> Result<(), String> {
    if level.trim().is_empty() {
        return Err(
            "must not be empty: expected a level (off, error, warn, info, debug, trace) \
                    or EnvFilter directives such as \"info,mdrelay::feed=debug\""
                .to_owned(),
        );
    }
    for d in level.split(',').map(str::trim) {
        if !d.contains(['=', '[']) && d.parse::<LevelFilter>().is_err() {
            return Err(format!(
                "`{d}` is not a level: expected off, error, warn, info, debug or trace \
                 (a target takes a level: `{d}=debug`)"
            ));
        }
    }
    EnvFilter::builder()
        .parse(level)
        .map(drop)
        .map_err(|e| format!("`{level}` is not a log filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        let set = |v: &'static str| Some(OsStr::new(v));
        assert!(colour(true, None));
        assert!(colour(true, set("")), "an empty NO_COLOR is unset");
        assert!(!colour(true, set("1")));
        assert!(!colour(false, None), "redirected: never");
        assert!(!colour(false, set("")));
    }

    #[test]
    fn levels_are_env_filter_directives_without_bare_targets() {
        for ok in [
            "info",
            "WARN",
            "off",
            "warn,mdrelay::feed=debug",
            "mdrelay=trace",
            "3",
        ] {
            assert_eq!(check_level(ok), Ok(()), "{ok}");
        }
        for bad in ["", " ", "verbose", "info,loud", "mdrelay=loud"] {
            assert!(check_level(bad).is_err(), "{bad}");
        }
        assert_eq!(LogFormat::from_name("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::from_name("JSON"), None);
    }
}
