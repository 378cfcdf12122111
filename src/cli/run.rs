//! `mdrelay run` and `mdrelay replay`: start a relay ([`crate::run::start`]), print a status line
//! every `status_interval`, and on SIGINT/SIGTERM (or, for a replay, when every recording has
//! been replayed) drain and print the summary. A second signal exits at once with 130. The exit
//! status is 1 when a thread panicked or a recording stopped on an error (its feed's
//! `files_failed`), else 0.
//!
//! Before anything starts, the log is set up from `[log]` and the configuration passes
//! [`config::preflight`], the same checks as `mdrelay check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tracing::Level;

use super::args::{load_config, parse_venue, ConfigArgs};
use super::log;
use crate::config;
use crate::market::instrument::Venue;

/// `mdrelay run`.
pub fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    serve_until(load_config(args)?, false)
}

/// `mdrelay replay`: one file collector per venue; the recording's clock closes bars.
pub fn replay(
    files: &[PathBuf],
    speed: f64,
    venue: Option<&str>,
    wait_subscribers: u64,
    args: &ConfigArgs,
) -> anyhow::Result<ExitCode> {
    if speed != 0.0 && !(super::args::MIN_SPEED..=super::args::MAX_SPEED).contains(&speed) {
        anyhow::bail!(
            "--speed must be between {} and {}",
            super::args::MIN_SPEED,
            super::args::MAX_SPEED
        );
    }
    let forced = venue.map(parse_venue).transpose()?;
    let mut groups: Vec<(Venue, Vec<PathBuf>)> = Vec::new();
    for f in files {
        let v = match forced.or_else(|| crate::feed::replay::venue_from_path(f)) {
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
    serve_until(cfg, true)
}

/// Runs a relay until a signal (or, with `until_feeds_end`, until every feed has ended).
pub fn serve_until(cfg: config::Config, until_feeds_end: bool) -> anyhow::Result<ExitCode> {
    log::init(&cfg.log);
    config::preflight(&cfg)?;
    let status_interval = cfg.status_interval;
    let sig_rx = stop_signals()?;
    let mut running = crate::run::start(cfg)?;
    log::line(
        Level::INFO,
        &format!(
            "mdrelay: relay socket {} — `mdrelay tail --socket {}` to watch; Ctrl-C to stop",
            running.socket_path().display(),
            running.socket_path().display()
        ),
    );
    if let Some(addr) = running.http_addr() {
        log::line(
            Level::INFO,
            &format!("mdrelay: metrics http://{addr}/metrics, health http://{addr}/health"),
        );
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
    log::line(Level::INFO, &summary.to_string());
    // A thread panicked, or a recording could not be replayed to its end: 1.
    let failed = summary.feeds.iter().any(|f| f.files_failed > 0);
    Ok(if summary.panicked.is_empty() && !failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// SIGINT/SIGTERM handling for the long-running commands: the first signal arrives on the
/// returned channel (the caller drains and exits cleanly), a second one exits at once (130).
pub(crate) fn stop_signals() -> anyhow::Result<crossbeam_channel::Receiver<()>> {
    let (sig_tx, sig_rx) = crossbeam_channel::bounded::<()>(1);
    let mut signals = 0u32;
    ctrlc::set_handler(move || {
        signals += 1;
        if signals > 1 {
            log::line(Level::WARN, "mdrelay: second signal, exiting now");
            std::process::exit(130);
        }
        let _ = sig_tx.try_send(());
    })
    .context("installing the signal handler")?;
    Ok(sig_rx)
}
