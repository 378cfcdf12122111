//! `mdrelay replay-exchange FILE…`: the replay exchange ([`crate::sim`]) as a server of its own.
//! Users point their own exchange clients at it and get the recordings in each venue's native
//! protocol (WebSocket, and Binance's REST depth snapshots). Prints the URLs of every venue on
//! standard output, then serves until SIGINT/SIGTERM (exit 0; a second signal exits at once with
//! 130). A file that cannot be loaded fails start-up naming it (exit 1); bad flags exit 2.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tracing::Level;

use super::args::{parse_venue, MAX_SPEED, MIN_SPEED};
use super::log;
use crate::base::timefmt::parse_rfc3339_ns;
use crate::config::ConfigError;
use crate::market::instrument::Venue;
use crate::sim::{ReplayExchange, ReplayOptions};

/// The default `--listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8900";

/// `mdrelay replay-exchange` arguments.
#[derive(clap::Args)]
pub struct ReplayExchangeArgs {
    /// Recording files (`<recv_ns> <message>` lines, .gz or plain); several of one venue are
    /// merged by receive time and served as one.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Venue protocol of every file (default: each file's directory name, e.g. data/binance/…).
    #[arg(long)]
    pub venue: Option<String>,
    /// Listen address (port 0: any free port, printed at start).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Pace multiplier of the recorded timing (1 = as recorded), from 1e-6 to 1e6; 0 = as fast
    /// as the client reads.
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed, allow_negative_numbers = true)]
    pub speed: f64,
    /// Replay only messages received at or after this time: RFC 3339
    /// (2024-08-08T23:55:00Z) or ns since the Unix epoch. Binance REST books still include every
    /// earlier diff.
    #[arg(long, value_parser = parse_time)]
    pub from: Option<u64>,
    /// Replay only messages received before this time (RFC 3339 or ns since the epoch).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<u64>,
    /// At the end of the recording close each connection (code 1012) so clients reconnect and
    /// get it again; without it a connection stays open and idle.
    #[arg(long = "loop")]
    pub loop_forever: bool,
    /// Join like a real venue: a connection opened mid-replay starts where the replay already
    /// is (the most advanced connection of its venue) instead of at the recording's start.
    #[arg(long)]
    pub live: bool,
}

/// A `--speed`: 0, or a finite number from [`MIN_SPEED`] to [`MAX_SPEED`].
fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v == 0.0 || (MIN_SPEED..=MAX_SPEED).contains(&v) => Ok(v),
        _ => Err(format!(
            "expected 0 (as fast as possible) or a number from {MIN_SPEED} to {MAX_SPEED}"
        )),
    }
}

/// A `--from`/`--to`: ns since the Unix epoch, or an RFC 3339 time.
fn parse_time(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .ok()
        .or_else(|| parse_rfc3339_ns(s))
        .ok_or_else(|| {
            "expected an RFC 3339 time (2024-08-08T23:55:00Z) or ns since the Unix epoch".into()
        })
}

/// The URLs a client of `venue` uses on an exchange at `addr`.
fn urls(venue: Venue, addr: SocketAddr) -> String {
    let name = venue.name();
    let rest = match venue {
        Venue::Binance => Some("/api/v3/depth"),
        Venue::BinanceUsdm => Some("/fapi/v1/depth"),
        Venue::BinanceCoinm => Some("/dapi/v1/depth"),
        _ => None,
    };
    match rest {
        Some(path) => format!(
            "{name}: ws://{addr}/{name}/stream  REST http://{addr}/{name} (GET {path}?symbol=…)"
        ),
        None => format!("{name}: ws://{addr}/{name}"),
    }
}

/// `mdrelay replay-exchange`.
pub fn run(a: &ReplayExchangeArgs) -> anyhow::Result<ExitCode> {
    if let (Some(from), Some(to)) = (a.from, a.to) {
        if from >= to {
            return Err(ConfigError::Invalid {
                key: "replay-exchange --to".into(),
                message: "must be later than --from".into(),
            }
            .into());
        }
    }
    let forced = a.venue.as_deref().map(parse_venue).transpose()?;
    let mut groups: Vec<(Venue, Vec<PathBuf>)> = Vec::new();
    for f in &a.files {
        let v = match forced.or_else(|| crate::feed::replay::venue_from_path(f)) {
            Some(v) => v,
            None => {
                return Err(ConfigError::Invalid {
                    key: "replay-exchange --venue".into(),
                    message: format!(
                        "{}: cannot tell the venue from the directory name; pass --venue",
                        f.display()
                    ),
                }
                .into())
            }
        };
        match groups.iter_mut().find(|(g, _)| *g == v) {
            Some((_, paths)) => paths.push(f.clone()),
            None => groups.push((v, vec![f.clone()])),
        }
    }
    let sig_rx = super::run::stop_signals()?;
    crate::base::clock::init();
    let exchange = ReplayExchange::start(
        &groups,
        ReplayOptions {
            listen: a.listen,
            speed: a.speed,
            loop_forever: a.loop_forever,
            start_paused: false,
            live: a.live,
            from_ns: a.from,
            to_ns: a.to,
        },
    )
    .context("starting the replay exchange")?;
    let addr = exchange.local_addr();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "mdrelay replay-exchange: listening on {addr} (speed {}; Ctrl-C to stop)",
        a.speed
    )?;
    for (venue, _) in &groups {
        writeln!(out, "{}", urls(*venue, addr))?;
    }
    out.flush()?;
    drop(out);
    // Wait for a signal; a vanished handler thread stops too.
    let _ = sig_rx.recv();
    log::line(
        Level::INFO,
        &format!(
            "mdrelay replay-exchange: stopping ({} messages sent)",
            exchange.messages_sent()
        ),
    );
    exchange.stop();
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_and_times() {
        assert_eq!(parse_speed("0"), Ok(0.0));
        assert_eq!(parse_speed("2.5"), Ok(2.5));
        for bad in ["NaN", "-1", "1e-9", "inf", "1e7", "x", ""] {
            assert!(parse_speed(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_time("1723161254024619568"),
            Ok(1_723_161_254_024_619_568)
        );
        assert_eq!(
            parse_time("2024-08-08T23:54:14.024619568Z"),
            Ok(1_723_161_254_024_619_568)
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn urls_name_the_rest_base_of_binance_venues() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(urls(Venue::BinanceUsdm, addr).contains("http://127.0.0.1:9/binance_usdm"));
        assert_eq!(urls(Venue::Okx, addr), "okx: ws://127.0.0.1:9/okx");
    }
}
