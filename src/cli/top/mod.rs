//! `mdrelay top`: a live terminal dashboard of a running relay — instruments (last price, bid/ask,
//! spread, volume, events/s), feeds (state, last data age), queues (depth, saturation) and
//! latency quantiles — sortable and filterable by venue.
//!
//! Threads, all named; the two workers are told to stop and joined by [`Workers`]:
//! - `main` owns the terminal: every [`REDRAW_INTERVAL`] it copies a [`Screen`](model::Screen)
//!   out of the model and draws it ([`ui`]); in between it blocks in poll(2) on standard input
//!   for key presses, and a hang-up of the terminal ends it.
//! - `top-reader` owns the [`RelayClient`]: it folds every frame into the model
//!   ([`model::Model::apply`]); it blocks in `read(2)` for at most [`READ_TIMEOUT`], and when the
//!   relay goes away it reconnects every [`RECONNECT_INTERVAL`].
//! - `top-poller` (only with an HTTP address) reads `/health`, `/metrics` and `/v1/ticker` every
//!   [`POLL_INTERVAL`] ([`scrape`], over [`crate::cli::http`]); it blocks on one HTTP request at a
//!   time, each bounded by [`scrape::REQUEST_TIMEOUT`].
//!
//! The model is shared behind a `parking_lot` mutex held only to fold one frame, store one
//! scrape, or copy a screen out; nothing blocks while holding it. Stopping: [`Workers::stop`] drops
//! the sender of a zero-capacity channel, which both workers see as disconnected (the poller at once,
//! in its wait; the reader after its current read). The terminal is restored before the join, on
//! every return path (a guard), and on a panic (ratatui's panic hook).
//!
//! - `mod.rs`: the target (socket, HTTP address), the worker threads and the terminal loop.
//! - `model`: what the dashboard knows: frames and scrapes folded into rows, sorted, filtered.
//! - `scrape`: the HTTP polls (`/health`, `/metrics`, `/v1/ticker`) read into the model.
//! - `ui`: drawing a screen of the model with ratatui; keys to actions.

pub mod model;
pub mod scrape;
pub mod ui;

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use parking_lot::Mutex;

use crate::base::clock;
use crate::base::netutil;
use crate::config::{Config, ConfigError};
use crate::relay::client::{ClientError, RelayClient};

use model::{Action, LinkState, Model, ViewState};
use scrape::Scraper;

/// How often the screen is redrawn without a key press (4 per second).
pub const REDRAW_INTERVAL: Duration = Duration::from_millis(250);
/// How often `/health`, `/metrics` and `/v1/ticker` are read.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Longest the reader blocks in one socket read before it checks whether to stop.
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Pause between attempts to reconnect to a relay that went away.
pub const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);
/// Most `/v1/ticker` requests in one poll; beyond, instruments take turns over several polls.
pub const TICKERS_PER_POLL: usize = 16;

/// Where the relay is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The relay socket.
    pub socket: PathBuf,
    /// `host:port` of its HTTP API; `None`: the feed, queue and latency tables stay empty.
    pub http: Option<String>,
}

impl Target {
    /// `--socket` and `--http` when given; what is missing comes from the configuration
    /// (`relay.socket_path`, `http.listen`), loaded only when needed.
    pub fn resolve(
        socket: Option<PathBuf>,
        http: Option<String>,
        load: impl FnOnce() -> Result<Config, ConfigError>,
    ) -> Result<Target, ConfigError> {
        if let (Some(socket), Some(http)) = (&socket, &http) {
            return Ok(Target {
                socket: socket.clone(),
                http: Some(http.clone()),
            });
        }
        let cfg = load()?;
        Ok(Target {
            socket: socket.unwrap_or(cfg.relay.socket_path),
            http: http.or_else(|| cfg.http.map(|h| h.listen.to_string())),
        })
    }
}

/// Why `top` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// Standard output or input is not a terminal.
    #[error("mdrelay top draws a dashboard and reads keys: it needs a terminal on standard output and input; use `mdrelay tail` for a stream of lines")]
    NotATerminal,
    /// The relay socket could not be reached at start.
    #[error("connecting to the relay socket {path}: {cause} — is `mdrelay run` running?")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why (in the message, not a `source`: the client error already shows its own cause).
        cause: ClientError,
    },
    /// The terminal could not be set up, drawn or read.
    #[error("terminal: {0}")]
    Terminal(io::Error),
    /// A worker thread could not be started.
    #[error("starting thread {name}: {cause}")]
    Spawn {
        /// Thread name.
        name: &'static str,
        /// Why.
        cause: io::Error,
    },
    /// The SIGTERM/SIGHUP handler could not be installed.
    #[error("installing the signal handler: {0}")]
    Signal(ctrlc::Error),
    /// A worker thread panicked (its message was printed on stderr).
    #[error("thread {0} panicked")]
    Panicked(&'static str),
}

/// Restores the terminal when dropped: raw mode off, main screen back.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// True once the stop channel's sender is gone.
fn stopped(stop: &Receiver<()>) -> bool {
    matches!(stop.try_recv(), Err(TryRecvError::Disconnected))
}

/// Runs the dashboard until the user quits (q, Esc, Ctrl-C) or a SIGTERM/SIGHUP.
pub fn run(target: &Target) -> Result<(), TopError> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        return Err(TopError::NotATerminal);
    }
    let workers = Workers::start(target)?;
    let quit = Arc::new(AtomicBool::new(false));
    let q = quit.clone();
    let result = ctrlc::set_handler(move || q.store(true, Ordering::Relaxed))
        .map_err(TopError::Signal)
        .and_then(|()| ui_loop(&workers, &quit));
    // The terminal is restored (ui_loop's guard) before the workers are joined.
    let stopped = workers.stop();
    result.and(stopped)
}

/// The threads that feed a [`Model`]: `top-reader` (relay socket) and, with an HTTP address,
/// `top-poller`. Stopped and joined by [`Workers::stop`], or when dropped.
#[derive(Debug)]
pub struct Workers {
    model: Arc<Mutex<Model>>,
    /// Dropping it tells the threads to stop; `None` once stopped.
    stop: Option<Sender<()>>,
    /// Every thread started, by name; emptied when joined.
    threads: Vec<(&'static str, JoinHandle<()>)>,
}

impl Workers {
    /// Connects to the relay socket (an error if it cannot) and starts the threads.
    pub fn start(target: &Target) -> Result<Workers, TopError> {
        let client = connect(&target.socket).map_err(|cause| TopError::Connect {
            path: target.socket.clone(),
            cause,
        })?;
        let scraper = target.http.as_deref().map(Scraper::new);
        let model = Arc::new(Mutex::new(Model::new(
            &target.socket.display().to_string(),
            scraper.as_ref().map(Scraper::base),
        )));
        model.lock().set_relay(LinkState::Up);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let mut w = Workers {
            model: model.clone(),
            stop: Some(stop_tx),
            threads: Vec::new(),
        };
        let (m, s, path) = (model.clone(), stop_rx.clone(), target.socket.clone());
        w.spawn("top-reader", move || reader_loop(client, &path, &m, &s))?;
        if let Some(scraper) = scraper {
            w.spawn("top-poller", move || {
                poller_loop(&scraper, &model, &stop_rx)
            })?;
        }
        Ok(w)
    }

    fn spawn(
        &mut self,
        name: &'static str,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), TopError> {
        let h = thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|cause| TopError::Spawn { name, cause })?;
        self.threads.push((name, h));
        Ok(())
    }

    /// The model the threads feed.
    pub fn model(&self) -> &Arc<Mutex<Model>> {
        &self.model
    }

    /// The name of a thread that ended on its own: they run until told to stop, so it panicked.
    pub fn ended(&self) -> Option<&'static str> {
        self.threads
            .iter()
            .find(|(_, h)| h.is_finished())
            .map(|(name, _)| *name)
    }

    /// Tells the threads to stop and joins them (the poller may finish its current request,
    /// ≤ [`scrape::REQUEST_TIMEOUT`]).
    pub fn stop(mut self) -> Result<(), TopError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), TopError> {
        self.stop = None;
        let mut result = Ok(());
        for (name, h) in self.threads.drain(..) {
            if h.join().is_err() && result.is_ok() {
                result = Err(TopError::Panicked(name));
            }
        }
        result
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

fn connect(path: &Path) -> Result<RelayClient, ClientError> {
    let c = RelayClient::connect(path)?;
    c.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(c)
}

/// Draws and reads keys until the user quits, a signal comes, or a worker dies.
fn ui_loop(workers: &Workers, quit: &AtomicBool) -> Result<(), TopError> {
    // The guard first: a set-up that fails half-way is undone too.
    let _guard = TerminalGuard;
    let mut terminal = ratatui::try_init().map_err(TopError::Terminal)?;
    let mut view = ViewState::default();
    let mut input = [0u8; 64];
    loop {
        if quit.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(name) = workers.ended() {
            return Err(TopError::Panicked(name));
        }
        let model = workers.model();
        let screen = model.lock().screen(&view, clock::mono_ns());
        terminal
            .draw(|f| ui::draw(f, &screen))
            .map_err(TopError::Terminal)?;
        // Keys until the next redraw is due; a key redraws at once.
        let n = read_input(REDRAW_INTERVAL, &mut input)?;
        for action in ui::actions_for(&input[..n]) {
            if action == Action::Quit {
                return Ok(());
            }
            let venues = model.lock().venues();
            view.apply(action, &venues);
        }
    }
}

/// Waits up to `timeout` for key presses and reads them into `buf`; 0 bytes on timeout.
///
/// Standard input is read with poll(2) and read(2) rather than crossterm's event reader: that
/// one retries a read of 0 bytes forever when the terminal hangs up (crossterm 0.28 and 0.29),
/// so a closed terminal window would leave `top` spinning. Here the hang-up ends `top`.
fn read_input(timeout: Duration, buf: &mut [u8]) -> Result<usize, TopError> {
    let stdin = io::stdin();
    if !netutil::wait_readable(&stdin, timeout).map_err(TopError::Terminal)? {
        return Ok(0);
    }
    match rustix::io::read(&stdin, buf) {
        Ok(0) => Err(TopError::Terminal(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the terminal was closed",
        ))),
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => Ok(0),
        Err(e) => Err(TopError::Terminal(e.into())),
    }
}

/// The `top-reader` thread: frames from the relay into the model, reconnecting when it goes.
fn reader_loop(first: RelayClient, socket: &Path, model: &Mutex<Model>, stop: &Receiver<()>) {
    let mut client = Some(first);
    while !stopped(stop) {
        let Some(c) = client.as_mut() else {
            match stop.recv_timeout(RECONNECT_INTERVAL) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            match connect(socket) {
                Ok(c) => {
                    model.lock().set_relay(LinkState::Up);
                    client = Some(c);
                }
                Err(e) => model
                    .lock()
                    .set_relay(LinkState::Down(format!("{e}; reconnecting"))),
            }
            continue;
        };
        let down = match c.next_frame() {
            Ok(Some(rx)) => {
                model.lock().apply(&rx, clock::mono_ns());
                None
            }
            Ok(None) => Some("the relay closed the connection".to_owned()),
            Err(ClientError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = down {
            model
                .lock()
                .set_relay(LinkState::Down(format!("{why}; reconnecting")));
            client = None;
        }
    }
}

/// The `top-poller` thread: `/health`, `/metrics` and `/v1/ticker` into the model.
fn poller_loop(scraper: &Scraper, model: &Mutex<Model>, stop: &Receiver<()>) {
    let mut next_ticker = 0usize;
    loop {
        let health = scraper.health();
        let metrics = scraper.metrics();
        {
            let mut m = model.lock();
            let now = clock::mono_ns();
            let mut error = None;
            match health {
                Ok(h) => m.set_health(h),
                Err(e) => error = Some(e.to_string()),
            }
            match metrics {
                Ok(v) => m.set_metrics(v, now),
                Err(e) => error = error.or(Some(e.to_string())),
            }
            if let Some(e) = error {
                m.set_http_error(e);
            }
        }
        let names = model.lock().instrument_names();
        for k in 0..names.len().min(TICKERS_PER_POLL) {
            if stopped(stop) {
                return;
            }
            let (venue, symbol) = &names[(next_ticker + k) % names.len()];
            // An instrument the query API does not know (yet) keeps its live volume.
            if let Ok(session) = scraper.ticker(venue, symbol) {
                model.lock().set_session(venue, symbol, session);
            }
        }
        next_ticker = next_ticker.wrapping_add(TICKERS_PER_POLL);
        match stop.recv_timeout(POLL_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_configuration_which_is_read_only_when_needed() {
        let both = Target::resolve(Some("/s".into()), Some("h:1".into()), || {
            panic!("configuration read although both were given")
        })
        .unwrap();
        assert_eq!(
            both,
            Target {
                socket: "/s".into(),
                http: Some("h:1".into())
            }
        );
        let cfg = || {
            crate::config::load(&crate::config::Sources {
                sets: vec![
                    "relay.socket_path=\"/from/config.sock\"".into(),
                    "http.listen=\"127.0.0.1:9999\"".into(),
                ],
                ..crate::config::Sources::default()
            })
        };
        let t = Target::resolve(None, None, cfg).unwrap();
        assert_eq!(t.socket, PathBuf::from("/from/config.sock"));
        assert_eq!(t.http.as_deref(), Some("127.0.0.1:9999"));
        let t = Target::resolve(Some("/flag.sock".into()), None, cfg).unwrap();
        assert_eq!(t.socket, PathBuf::from("/flag.sock"));
    }

    #[test]
    fn without_a_terminal_it_says_so() {
        // Under `cargo test` standard output is captured (not a terminal) or, when it is a
        // terminal, the check passes and the missing socket fails: either way a clear error.
        let t = Target {
            socket: "/nonexistent/mdrelay-top-test.sock".into(),
            http: None,
        };
        let e = run(&t).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, TopError::NotATerminal | TopError::Connect { .. }),
            "{msg}"
        );
        assert!(
            msg.contains("needs a terminal") || msg.contains("/nonexistent/mdrelay-top-test.sock"),
            "{msg}"
        );
    }
}
