//! Command-line arguments of every subcommand (clap), and loading the configuration they name.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Sources};
use crate::market::instrument::Venue;

#[derive(Parser)]
#[command(name = "mdrelay", version, about = "Low-latency market-data relay")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file (default: the built-in config/default.toml).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Environment overlay: config/environments/NAME.toml beside the config file.
    #[arg(long = "env", env = "MDRELAY_ENV")]
    pub env_name: Option<String>,
    /// Override a key: --set section.key=value (repeatable; beats file and environment).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the relay: collectors, consumer, relay socket (and the replay exchange if enabled).
    Run {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Check a configuration as `run` would at start-up and print it, merged, as TOML.
    ///
    /// Values first, then what needs the file system: socket path and directory, CSV and
    /// recording directories, TLS and NATS files (nothing is created). Prints the effective
    /// configuration, defaults included, passwords in URLs redacted. Exit 0 when valid, 2 naming
    /// the key when not.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Subscribe to a running relay and print one line per event.
    Tail {
        /// Relay socket (default: relay.socket_path from the configuration).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print JSON lines (the documented schema) instead of text.
        #[arg(long)]
        json: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Only this venue.
        #[arg(long)]
        venue: Option<String>,
        /// Only symbols matching this (exact, or a glob with * and ?).
        #[arg(long)]
        symbol: Option<String>,
        /// Only these kinds, comma-separated: trade, quote, book, bar, status, mark, liquidation,
        /// open_interest.
        #[arg(long, value_delimiter = ',')]
        kind: Vec<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Replay recordings (`<recv_ns> <message>` lines, .gz or plain: the bundled captures, or
    /// mdrelay's raw recordings) through the whole pipeline: relay socket, bars, CSV, HTTP API.
    /// Exits when every recording has been replayed (or on Ctrl-C).
    Replay {
        /// Recording files; several of one venue are merged by receive time.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Pace multiplier of the recorded timing (1 = as recorded), from 1e-6 to 1e6. A gap over
        /// 60 s between two lines is replayed as 60 s (divided by the speed).
        #[arg(long, default_value_t = 1.0, conflicts_with = "max", value_parser = parse_speed)]
        speed: f64,
        /// As fast as the pipeline takes it.
        #[arg(long)]
        max: bool,
        /// Venue protocol of every file (default: each file's directory name, e.g. binance/).
        #[arg(long)]
        venue: Option<String>,
        /// Start replaying only once this many subscribers are connected.
        #[arg(long, default_value_t = 0)]
        wait_subscribers: u64,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Serve recordings as a replay exchange: each venue's native WebSocket protocol (and
    /// Binance's REST depth snapshots) on one port, for any exchange client (README "Replay
    /// exchange").
    ReplayExchange(super::replay_exchange::ReplayExchangeArgs),
    /// Print recent OHLCV bars of one instrument from a running relay (its HTTP API).
    Bars {
        /// Venue symbol, e.g. ETHUSDT or XBT/USD.
        #[arg(long)]
        symbol: String,
        /// Venue (default: the one venue that has the symbol).
        #[arg(long)]
        venue: Option<String>,
        /// Bar interval as configured: 1s, 1m, 1h, 1d, …
        #[arg(long, default_value = "1m")]
        interval: String,
        /// Most bars to print.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Include the bar still open (last row, marked).
        #[arg(long)]
        open: bool,
        /// HTTP address of the relay (default: http.listen from the configuration).
        #[arg(long)]
        http: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Live terminal dashboard of a running relay: instruments, feeds, queues, latency.
    /// Keys: s sort, r reverse, v venue filter, q quit.
    Top {
        /// Relay socket (default: relay.socket_path from the configuration).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// HTTP address of the relay (default: http.listen from the configuration).
        #[arg(long)]
        http: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Republish a running relay's events onto NATS (`[nats]` configuration; needs a build with
    /// `--features nats`).
    NatsBridge {
        /// Relay socket (default: relay.socket_path from the configuration).
        #[arg(long)]
        socket: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Decode raw venue messages (one a line; bare JSON or `<recv_ns> <json>`; .gz ok) with the
    /// collectors' parser and print normalized JSON lines.
    Decode {
        /// Venue protocol of the input.
        #[arg(long)]
        venue: String,
        /// Input file, or - for standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
        /// Longest line decoded, bytes; a longer one is reported and skipped.
        #[arg(long, default_value_t = crate::persist::recording::DEFAULT_MAX_LINE_BYTES as u64,
              value_parser = clap::value_parser!(u64).range(1..))]
        max_line_bytes: u64,
        /// Parse only and print one summary line (messages, events by kind, parse errors,
        /// fast-path fallbacks, ns per message) instead of the events: the parser's cost, for
        /// any profiler.
        #[arg(long)]
        summary: bool,
    },
    /// Convert recordings (`<recv_ns> <message>` lines, .gz or plain) of one instrument into
    /// another tool's format, through the same parsers and book synchronisation as the relay.
    ///
    /// `hftbacktest`: an .npz of hftbacktest's event array (key `data`) for
    /// `BacktestAsset().data([...])`. A summary line on stderr gives the rows by kind, what was
    /// skipped, the gaps and checksum failures seen, and tick_size / lot_size.
    Export {
        /// Output format.
        #[arg(long, value_parser = ["hftbacktest"])]
        format: String,
        /// Recording files, read in this order as one recording.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output file (.npz).
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// Venue protocol of every file (default: each file's directory name, e.g. okx/).
        #[arg(long)]
        venue: Option<String>,
        /// Instrument to export, as the venue writes it (needed when the files hold several).
        #[arg(long)]
        symbol: Option<String>,
        /// Exit 1 and write nothing if any line was bad or refused, or the book had a gap,
        /// resync, checksum mismatch or possibly bad update.
        #[arg(long)]
        strict: bool,
    },
}

/// Where the configuration of `a` comes from: its flags and the process environment.
pub fn sources(a: &ConfigArgs) -> Sources {
    Sources::from_process(a.config.clone(), a.env_name.clone(), a.sets.clone())
}

/// Loads the configuration as every subcommand does: defaults < file < environment < `--set`.
pub fn load_config(a: &ConfigArgs) -> Result<config::Config, config::ConfigError> {
    config::load(&sources(a))
}

/// Slowest `replay --speed`.
pub const MIN_SPEED: f64 = 1e-6;
/// Fastest `replay --speed` (`--max` for no pacing at all).
pub const MAX_SPEED: f64 = 1e6;

/// A `replay --speed` value: a number from [`MIN_SPEED`] to [`MAX_SPEED`].
fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (MIN_SPEED..=MAX_SPEED).contains(&v) => Ok(v),
        _ => Err(format!(
            "expected a number from {MIN_SPEED} to {MAX_SPEED} (--max for no pacing)"
        )),
    }
}

/// The venue a `--venue` flag names.
pub fn parse_venue(name: &str) -> anyhow::Result<Venue> {
    Venue::from_name(name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown venue `{name}`: expected one of {}",
            Venue::ALL.map(Venue::name).join(", ")
        )
    })
}
