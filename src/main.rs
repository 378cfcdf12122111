//! `mdrelay`: the command-line entry point. Parses arguments, runs a subcommand
//! ([`mdrelay::cli`], which also sets up the log), and maps errors to exit codes (0 ok,
//! 1 runtime failure, 2 bad configuration or usage, 130 forced exit by a second signal).

use std::process::ExitCode;

use clap::Parser;

use mdrelay::cli::{self, args::Cli};
use mdrelay::config::ConfigError;

fn main() -> ExitCode {
    match cli::dispatch(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            cli::log::line(tracing::Level::ERROR, &format!("mdrelay: {e:#}"));
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
