//! `mdrelay`: the command-line entry point. Parses arguments, runs a subcommand
//! ([`mdrelay::cli`]), and maps errors to exit codes (0 ok, 1 runtime failure, 2 bad
//! configuration or usage, 130 forced exit by a second signal).

use std::io;
use std::process::ExitCode;

use clap::Parser;

use mdrelay::cli::{self, args::Cli};
use mdrelay::config::ConfigError;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .init();
    match cli::dispatch(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mdrelay: {e:#}");
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
