//! `mdrelay`: the command-line entry point. Parses arguments, loads configuration, runs a
//! subcommand, and maps errors to exit codes (0 ok, 1 runtime failure, 2 bad configuration or
//! usage, 130 forced exit by a second signal). Everything else lives in the library.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use mdrelay::client::RelayClient;
use mdrelay::config::{self, Sources};
use mdrelay::event::{BookUpdate, Event, Level, StatusCode};
use mdrelay::instrument::Venue;
use mdrelay::json::{self, Human, Origin};
use mdrelay::protocol::Message;
use mdrelay::subscription::{self, Filter};
use mdrelay::{recording, run, venue};

mod bars_cli;

#[derive(Parser)]
#[command(name = "mdrelay", version, about = "Low-latency market-data relay")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// TOML configuration file (default: the built-in config/default.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Environment overlay: config/environments/NAME.toml beside the config file.
    #[arg(long = "env", env = "MDRELAY_ENV")]
    env_name: Option<String>,
    /// Override a key: --set section.key=value (repeatable; beats file and environment).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay: collectors, consumer, relay socket (and the replay exchange if enabled).
    Run {
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
        /// Only these kinds, comma-separated: trade, quote, book, bar, status.
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
        /// Pace multiplier of the recorded timing (1 = as recorded).
        #[arg(long, default_value_t = 1.0, conflicts_with = "max")]
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
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => cmd_run(&config),
        Command::Tail {
            socket,
            json,
            count,
            venue,
            symbol,
            kind,
            config,
        } => tail_filter(venue, symbol, &kind)
            .and_then(|f| cmd_tail(socket, json, count, f, &config)),
        Command::Decode { venue, file } => cmd_decode(&venue, &file),
        Command::Top {
            socket,
            http,
            config,
        } => mdrelay::top::Target::resolve(socket, http, || load_config(&config))
            .map_err(anyhow::Error::from)
            .and_then(|t| Ok(mdrelay::top::run(&t).map(|()| ExitCode::SUCCESS)?)),
        Command::Replay {
            files,
            speed,
            max,
            venue,
            wait_subscribers,
            config,
        } => cmd_replay(
            &files,
            if max { 0.0 } else { speed },
            venue.as_deref(),
            wait_subscribers,
            &config,
        ),
        Command::Bars {
            symbol,
            venue,
            interval,
            limit,
            open,
            http,
            config,
        } => bars_cli::run(&bars_cli::Query {
            symbol: &symbol,
            venue: venue.as_deref(),
            interval: &interval,
            limit,
            open,
            http: http.as_deref(),
            config: &config,
        }),
        Command::NatsBridge { socket, config } => cmd_nats_bridge(socket, &config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mdrelay: {e:#}");
            if e.downcast_ref::<config::ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn load_config(a: &ConfigArgs) -> Result<config::Config, config::ConfigError> {
    config::load(&Sources::from_process(
        a.config.clone(),
        a.env_name.clone(),
        a.sets.clone(),
    ))
}

fn cmd_run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    serve(load_config(args)?, false)
}

fn parse_venue(name: &str) -> anyhow::Result<Venue> {
    Venue::from_name(name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown venue `{name}`: expected one of binance, coinbase, kraken, kraken_v1"
        )
    })
}

fn cmd_replay(
    files: &[PathBuf],
    speed: f64,
    venue: Option<&str>,
    wait_subscribers: u64,
    args: &ConfigArgs,
) -> anyhow::Result<ExitCode> {
    if !(speed >= 0.0 && speed.is_finite()) {
        anyhow::bail!("--speed must be a positive number");
    }
    let forced = venue.map(parse_venue).transpose()?;
    let mut groups: Vec<(Venue, Vec<PathBuf>)> = Vec::new();
    for f in files {
        let v = match forced.or_else(|| mdrelay::replay::venue_from_path(f)) {
            Some(v) => v,
            None => anyhow::bail!(
                "{}: cannot tell the venue from the directory name; pass --venue",
                f.display()
            ),
        };
        match groups.iter_mut().find(|(g, _)| *g == v) {
            Some((_, paths)) => paths.push(f.clone()),
            None => groups.push((v, vec![f.clone()])),
        }
    }
    let mut cfg = load_config(args)?;
    cfg.replay = None;
    cfg.feeds = groups
        .into_iter()
        .map(|(v, paths)| config::FeedConfig::replay(v.name(), v, paths, speed, wait_subscribers))
        .collect();
    // The recording's clock closes bars, and its end closes the last ones: deterministic.
    cfg.bars.clock = config::BarClock::Data;
    cfg.bars.close_on_shutdown = true;
    serve(cfg, true)
}

/// Runs a relay until a signal (or, with `until_feeds_end`, until every feed has ended).
fn serve(cfg: config::Config, until_feeds_end: bool) -> anyhow::Result<ExitCode> {
    let status_interval = cfg.status_interval;
    let (sig_tx, sig_rx) = crossbeam_channel::bounded::<()>(1);
    let mut signals = 0u32;
    ctrlc::set_handler(move || {
        signals += 1;
        if signals > 1 {
            eprintln!("mdrelay: second signal, exiting now");
            std::process::exit(130);
        }
        let _ = sig_tx.try_send(());
    })
    .context("installing the signal handler")?;
    let mut running = run::start(cfg)?;
    eprintln!(
        "mdrelay: relay socket {} — `mdrelay tail --socket {}` to watch; Ctrl-C to stop",
        running.socket_path().display(),
        running.socket_path().display()
    );
    if let Some(addr) = running.http_addr() {
        eprintln!("mdrelay: metrics http://{addr}/metrics, health http://{addr}/health");
    }
    let tick = if until_feeds_end {
        status_interval.min(std::time::Duration::from_millis(50))
    } else {
        status_interval
    };
    let mut next_status = std::time::Instant::now() + status_interval;
    loop {
        match sig_rx.recv_timeout(tick) {
            Ok(()) => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if until_feeds_end && running.feeds_finished() {
                    tracing::info!("every recording replayed");
                    break;
                }
                if std::time::Instant::now() >= next_status {
                    tracing::info!("{}", running.status_line());
                    next_status += status_interval;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                tracing::error!("signal handler thread is gone; stopping");
                break;
            }
        }
    }
    tracing::info!("stopping: draining queues to subscribers");
    let summary = running.shutdown();
    eprintln!("{summary}");
    Ok(if summary.panicked.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes one line to stdout; a closed pipe (`| head`) ends the command quietly.
fn emit(out: &mut impl Write, line: impl std::fmt::Display) -> io::Result<bool> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

/// The subscription `tail`'s filter flags ask for; `None` without any (everything).
fn tail_filter(
    venue: Option<String>,
    symbol: Option<String>,
    kind: &[String],
) -> anyhow::Result<Option<Filter>> {
    if venue.is_none() && symbol.is_none() && kind.is_empty() {
        return Ok(None);
    }
    let mut kinds = 0u8;
    for k in kind {
        match subscription::KIND_NAMES.iter().find(|(_, n)| n == k) {
            Some((bit, _)) => kinds |= bit,
            None => anyhow::bail!("--kind {k}: expected trade, quote, book, bar or status"),
        }
    }
    Ok(Some(Filter {
        venue: venue.unwrap_or_default(),
        symbol: symbol.unwrap_or_default(),
        kinds: if kinds == 0 {
            subscription::kinds::ALL
        } else {
            kinds
        },
        lossy: false,
    }))
}

fn cmd_tail(
    socket: Option<PathBuf>,
    as_json: bool,
    count: Option<u64>,
    filter: Option<Filter>,
    cfg: &ConfigArgs,
) -> anyhow::Result<ExitCode> {
    let path = match socket {
        Some(p) => p,
        None => load_config(cfg)?.relay.socket_path,
    };
    let mut client = RelayClient::connect_filtered(&path, filter.as_slice())
        .with_context(|| format!("connecting to {}", path.display()))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut levels: Vec<Level> = Vec::new();
    let mut asks: Vec<Level> = Vec::new();
    let mut n = 0u64;
    while let Some(rx) = client.next_frame()? {
        let frame = rx.frame;
        let h = frame.header;
        let msg = match frame.message() {
            Ok(m) => m,
            Err(e) => {
                eprintln!("mdrelay tail: skipping frame: {e}");
                continue;
            }
        };
        let (venue, symbol) = match (&msg, rx.instrument) {
            (_, Some(name)) => (name.venue.as_str(), Some(name.symbol.as_str())),
            (Message::Status { venue, .. }, None) => (*venue, None),
            _ => ("?", None),
        };
        let origin = Origin {
            venue,
            symbol,
            recv_ts_ns: Some(h.recv_ts_ns),
        };
        let ev = match msg {
            Message::Bar(bar) => {
                let ok = if as_json {
                    match json::write_bar(&mut out, &origin, &bar) {
                        Ok(()) => true,
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => false,
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    emit(&mut out, json::HumanBar { origin, bar: &bar })?
                };
                if !ok {
                    return Ok(ExitCode::SUCCESS);
                }
                n += 1;
                if count.is_some_and(|c| n >= c) {
                    break;
                }
                continue;
            }
            Message::Trade(t) => Event::Trade(t),
            Message::Quote(q) => Event::Quote(q),
            // The relay's answer to tail's own subscription is not part of the stream shown.
            Message::Status { status, .. } if status.code == StatusCode::RequestOk => continue,
            Message::Status { status, .. } => Event::Status(status),
            Message::Book(b) => {
                levels.clear();
                levels.extend(b.bids());
                asks.clear();
                asks.extend(b.asks());
                Event::Book(BookUpdate {
                    snapshot: h.flags & mdrelay::protocol::flags::SNAPSHOT != 0,
                    bids: &levels,
                    asks: &asks,
                    venue_sequence: (b.venue_sequence != 0).then_some(b.venue_sequence),
                    exchange_ts_ns: (h.exchange_ts_ns != 0).then_some(h.exchange_ts_ns),
                    may_be_bad: h.flags & mdrelay::protocol::flags::BOOK_MAY_BE_BAD != 0,
                })
            }
            Message::InstrumentDef { .. } | Message::Heartbeat | Message::Unknown(_) => continue,
        };
        let ok = if as_json {
            match json::write_event(&mut out, &origin, &ev) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => false,
                Err(e) => return Err(e.into()),
            }
        } else {
            let seq = (h.sequence != 0).then_some(h.sequence);
            emit(
                &mut out,
                Human {
                    origin,
                    event: &ev,
                    sequence: seq,
                },
            )?
        };
        if !ok {
            return Ok(ExitCode::SUCCESS);
        }
        n += 1;
        if count.is_some_and(|c| n >= c) {
            break;
        }
        // Flush when nothing more is buffered from the relay: lines appear as events arrive,
        // and a burst still costs one write.
        if client.buffered() == 0 {
            match out.flush() {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
                r => r?,
            }
        }
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

fn cmd_nats_bridge(socket: Option<PathBuf>, args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(args)?;
    let socket = socket.unwrap_or(cfg.relay.socket_path);
    #[cfg(feature = "nats")]
    {
        let summary =
            mdrelay::nats_bridge::run_until_signal(&cfg.nats, &socket, cfg.status_interval)?;
        eprintln!("{summary}");
        Ok(ExitCode::from(if summary.panicked.is_empty() {
            0
        } else {
            1
        }))
    }
    #[cfg(not(feature = "nats"))]
    {
        let _ = socket;
        eprintln!("mdrelay: nats-bridge: this mdrelay was built without NATS support; rebuild with `cargo build --features nats`");
        Ok(ExitCode::from(2))
    }
}

fn cmd_decode(venue_name: &str, file: &Path) -> anyhow::Result<ExitCode> {
    let v = parse_venue(venue_name)?;
    let mut parser = venue::parser_for(v);
    let reader = recording::open(file).with_context(|| format!("opening {}", file.display()))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    // One line's JSON is built first: a control message (ack, heartbeat) prints nothing, even
    // if the parser reported it as a status event for the relay's subscribers.
    let mut line_out: Vec<u8> = Vec::with_capacity(4096);
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        let (recv_ns, raw) = recording::split_line(&line);
        if raw.trim().is_empty() {
            continue;
        }
        line_out.clear();
        let r = parser.parse(raw, recv_ns.unwrap_or(0), &mut |sym, ev| {
            let o = Origin {
                venue: v.name(),
                symbol: sym,
                recv_ts_ns: recv_ns,
            };
            // Writing into a Vec cannot fail.
            let _ = json::write_event(&mut line_out, &o, ev);
        });
        match r {
            Ok(venue::Parsed::Data) => match out.write_all(&line_out) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
                r => r?,
            },
            Ok(venue::Parsed::Control) => {}
            Err(e) => eprintln!("{}:{}: {e}", file.display(), i + 1),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
