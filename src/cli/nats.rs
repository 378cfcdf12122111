//! `mdrelay nats-bridge`: republish a running relay's events onto NATS (`[nats]`), until a
//! signal. Without the `nats` feature it says how to get it and exits 2.

use std::path::PathBuf;
use std::process::ExitCode;

use super::args::{load_config, ConfigArgs};

/// Runs the bridge until SIGINT/SIGTERM.
pub fn run(socket: Option<PathBuf>, args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(args)?;
    super::log::init(&cfg.log);
    let socket = socket.unwrap_or(cfg.relay.socket_path);
    #[cfg(feature = "nats")]
    {
        let summary =
            crate::bridge::nats::run_until_signal(&cfg.nats, &socket, cfg.status_interval)?;
        super::log::line(tracing::Level::INFO, &summary.to_string());
        Ok(ExitCode::from(if summary.panicked.is_empty() {
            0
        } else {
            1
        }))
    }
    #[cfg(not(feature = "nats"))]
    {
        let _ = socket;
        super::log::line(
            tracing::Level::ERROR,
            "mdrelay: nats-bridge: this mdrelay was built without NATS support; rebuild with `cargo build --features nats`",
        );
        Ok(ExitCode::from(2))
    }
}
