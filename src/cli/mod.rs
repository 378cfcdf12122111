//! The `mdrelay` subcommands, one file each; `main.rs` parses the arguments ([`args`]), calls
//! [`dispatch`] and maps its error to an exit code.
//!
//! - `args`: every subcommand's arguments (clap) and the configuration they load.
//! - `run`: `mdrelay run` and `mdrelay replay`: a relay until a signal (or the recordings' end).
//! - `replay_exchange`: `mdrelay replay-exchange`, recordings served as a replay exchange.
//! - `check_config`: `mdrelay check-config`, `run`'s start-up checks and the effective
//!   configuration as TOML.
//! - `log`: the process log on stderr (text or JSON lines, colour only on a terminal), and the
//!   operator lines printed beside it.
//! - `tail`: `mdrelay tail`, one line per event of a running relay (text or JSON lines).
//! - `decode`: `mdrelay decode`, venue messages through the collectors' parser to JSON lines.
//! - `export`: `mdrelay export`, recordings to hftbacktest's event arrays (`crate::export`).
//! - `bars`: `mdrelay bars`, the query API's bars as a table.
//! - `top`: `mdrelay top`, the terminal dashboard.
//! - `nats`: `mdrelay nats-bridge`, the relay stream onto NATS.
//! - `http`: a small blocking client of the relay's HTTP API, for `bars` and `top`.

use std::process::ExitCode;

pub mod args;
pub mod bars;
pub mod check_config;
pub mod decode;
pub mod export;
pub mod http;
pub mod log;
pub mod nats;
pub mod replay_exchange;
pub mod run;
pub mod tail;
pub mod top;

use args::{load_config, Cli, Command};

/// Runs the subcommand `cli` names. A [`crate::config::ConfigError`] in the error chain means
/// bad configuration or usage (exit code 2); any other error is a runtime failure (1).
///
/// The commands that load a configuration set up the log from its `[log]` section once it is
/// loaded; the others set it up with the defaults here, before they start.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(
        cli.command,
        Command::Run { .. }
            | Command::Replay { .. }
            | Command::NatsBridge { .. }
            | Command::CheckConfig { .. }
    ) {
        log::init(&crate::config::LogConfig::default());
    }
    match cli.command {
        Command::Run { config } => run::run(&config),
        Command::CheckConfig { config } => check_config::run(&config),
        Command::Tail {
            socket,
            json,
            count,
            venue,
            symbol,
            kind,
            config,
        } => tail::filter(venue, symbol, &kind)
            .and_then(|f| tail::run(socket, json, count, f, &config)),
        Command::Decode {
            venue,
            file,
            max_line_bytes,
            summary,
        } if summary => decode::summary(&venue, &file, max_line_bytes),
        Command::Decode {
            venue,
            file,
            max_line_bytes,
            ..
        } => decode::run(&venue, &file, max_line_bytes),
        Command::Top {
            socket,
            http,
            config,
        } => top::Target::resolve(socket, http, || load_config(&config))
            .map_err(anyhow::Error::from)
            .and_then(|t| Ok(top::run(&t).map(|()| ExitCode::SUCCESS)?)),
        Command::Replay {
            files,
            speed,
            max,
            venue,
            wait_subscribers,
            config,
        } => run::replay(
            &files,
            if max { 0.0 } else { speed },
            venue.as_deref(),
            wait_subscribers,
            &config,
        ),
        Command::ReplayExchange(a) => replay_exchange::run(&a),
        Command::Bars {
            symbol,
            venue,
            interval,
            limit,
            open,
            http,
            config,
        } => bars::run(&bars::Query {
            symbol: &symbol,
            venue: venue.as_deref(),
            interval: &interval,
            limit,
            open,
            http: http.as_deref(),
            config: &config,
        }),
        Command::NatsBridge { socket, config } => nats::run(socket, &config),
        Command::Export {
            format,
            files,
            output,
            venue,
            symbol,
            strict,
        } => export::run(&export::Request {
            format: &format,
            files: &files,
            output: &output,
            venue: venue.as_deref(),
            symbol: symbol.as_deref(),
            strict,
        }),
    }
}
