//! Installs the process log (the `tracing` subscriber on stderr) from a [`LogConfig`], once, on
//! the main thread: the commands that load a configuration (`run`, `replay`, `nats-bridge`,
//! `check-config`) right after loading it — loading logs nothing, and a configuration that
//! cannot be loaded is reported by `main` as text — and the others with the defaults before
//! they start. `RUST_LOG`, when set and not empty, replaces `[log] level`.
//!
//! The operator lines mdrelay prints itself (start banner, summary, fatal error) go through
//! [`line()`]: as plain text in the text format, as log events in the JSON format, so a JSON log
//! holds JSON lines only.

use std::io::{self, IsTerminal};
use std::sync::OnceLock;

use tracing::Level;
use tracing_subscriber::EnvFilter;

use crate::base::log::{colour, LogConfig, LogFormat};

/// The format installed by [`init`]; unset until then (operator lines are text).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Installs the subscriber for `cfg` (`cfg.level` has passed `check_level`). A second call
/// changes nothing.
pub fn init(cfg: &LogConfig) {
    if FORMAT.get().is_some() {
        return;
    }
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let (filter, bad_env) = match env.as_deref().map(EnvFilter::try_new) {
        Some(Ok(f)) => (f, None),
        Some(Err(e)) => (EnvFilter::new(&cfg.level), Some(e)),
        None => (EnvFilter::new(&cfg.level), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    let installed = match cfg.format {
        LogFormat::Text => builder
            .with_ansi(colour(
                io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .with_thread_names(true)
            .try_init(),
    };
    if installed.is_ok() {
        let _ = FORMAT.set(cfg.format);
    }
    if let Some(e) = bad_env {
        tracing::warn!("RUST_LOG is not a log filter ({e}); using log.level");
    }
}

/// An operator line on stderr: printed as is in the text format (or before [`init`]), a log
/// event at `level` (info, warn or error) in the JSON format.
pub fn line(level: Level, text: &str) {
    if FORMAT.get() != Some(&LogFormat::Json) {
        eprintln!("{text}");
    } else if level == Level::ERROR {
        tracing::error!("{text}");
    } else if level == Level::WARN {
        tracing::warn!("{text}");
    } else {
        tracing::info!("{text}");
    }
}
