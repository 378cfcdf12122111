//! Wiring: starts every thread of a relay from a validated [`Config`], reports status, and shuts
//! down in order so that nothing accepted is lost.
//!
//! Start order: start the replay exchange if enabled (its address fills `{replay}` in feed URLs),
//! bind the relay socket (refusing if another relay is live on it), create one bounded queue per
//! feed, spawn `consumer`, `relay-accept`, one `collector-<feed>` per feed, and one `oi-<feed>`
//! open-interest poller per feed that sets `open_interest_interval_ms` (joined with the
//! collectors). The socket file appears only once everything it needs is loaded.
//!
//! Stop order ([`Running::shutdown`]): set the stop flag → collectors stop reading and drop their
//! queue ends → the consumer empties every queue, writes subscribers' pending bytes (drain
//! timeout), closes them and exits → the acceptor exits → the replay exchange stops → the socket
//! file is removed. Every thread is joined; a thread that panicked is reported, not ignored.
//!
//! - `mod.rs`: [`start`] and the [`Running`] handle (status line, shutdown).
//! - `summary`: the [`Summary`] a stopped relay reports.
//! - `status`: the status line's latency figures, over the interval since the previous line and
//!   never stale without saying so.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crate::base::affinity::{core_for, pin_current_thread};
use crate::base::publication::Publication;
use crate::base::stats::{AcceptCounters, FeedStats, RelayCounters, StopFlag};
use crate::config::{Config, FeedConfig, FeedSource};
use crate::consumer::analytics::{Analytics, AnalyticsCounters};
use crate::consumer::snapshot::QueryState;
use crate::consumer::thread::{
    Consumer, FeedInput, Inputs, Outputs, Published, RelaySide, SharedPublished,
};
use crate::feed::collector::Collector;
use crate::feed::open_interest;
use crate::feed::replay::FileCollector;
use crate::feed::venue;
use crate::persist::recorder::{RecordedFeed, Recorder, RecorderStats};
use crate::persist::writer::{WriterHandle, WriterStats};
use crate::queue::{self, QueueMonitor, QueueSpec, Waker};
use crate::relay::acceptor::{self, AcceptConfig};
use crate::relay::socket::{self, RelayError, SocketGuard};
use crate::serve::http::{self, HttpServer};
use crate::serve::metrics::{FeedMetrics, MetricsSources};
use crate::serve::query;
use crate::sim::{ReplayExchange, ReplayOptions};

mod status;
mod summary;

use summary::pct;
pub use summary::{FeedSummary, Persistence, Summary};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The relay socket.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The replay exchange (recording missing, address in use).
    #[error("replay exchange: {0}")]
    Replay(std::io::Error),
    /// A feed's TLS trust file is unusable.
    #[error("feeds.{feed}.tls_ca_file: {reason}")]
    Tls {
        /// Feed name.
        feed: String,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP endpoint could not listen.
    #[error("http endpoint: {0}")]
    Http(std::io::Error),
    /// The CSV writer could not start.
    #[error("csv writer: {0}")]
    Writer(crate::persist::writer::WriterError),
    /// The raw recorder could not start.
    #[error("raw recorder: {0}")]
    Recorder(std::io::Error),
    /// The NATS bridge (`[nats] enabled`) could not start.
    #[cfg(feature = "nats")]
    #[error("nats bridge: {0}")]
    Nats(crate::bridge::nats::BridgeError),
    /// The OS refused a thread.
    #[error("cannot spawn thread {name}: {cause}")]
    Spawn {
        /// Thread name.
        name: String,
        /// Why.
        cause: std::io::Error,
    },
}

// Causes are in the messages, not `source()`s, so each text is printed once; hence `From` by
// hand rather than `#[from]`.
impl From<crate::persist::writer::WriterError> for StartError {
    fn from(e: crate::persist::writer::WriterError) -> Self {
        StartError::Writer(e)
    }
}

#[cfg(feature = "nats")]
impl From<crate::bridge::nats::BridgeError> for StartError {
    fn from(e: crate::bridge::nats::BridgeError) -> Self {
        StartError::Nats(e)
    }
}

struct FeedHandle {
    cfg: FeedConfig,
    stats: Arc<FeedStats>,
    queue: QueueMonitor,
}

/// A running relay.
pub struct Running {
    stop: Arc<StopFlag>,
    feeds: Vec<FeedHandle>,
    collectors: Vec<(String, JoinHandle<()>)>,
    consumer: Option<JoinHandle<()>>,
    acceptor: Option<JoinHandle<()>>,
    replay: Option<ReplayExchange>,
    http: Option<HttpServer>,
    /// The NATS bridge, a subscriber of our own socket; stopped after the consumer drained.
    #[cfg(feature = "nats")]
    nats: Option<crate::bridge::nats::Bridge>,
    socket: Option<SocketGuard>,
    relay_counters: Arc<RelayCounters>,
    accept_counters: Arc<AcceptCounters>,
    published: SharedPublished,
    analytics: Arc<AnalyticsCounters>,
    writer: Option<Arc<WriterStats>>,
    recorder: Option<Recorder>,
    recorder_stats: Option<Arc<RecorderStats>>,
    started: Instant,
    /// (time, total events relayed) at the last status line.
    last_status: (Instant, u64),
    /// The latency the last status line saw.
    status_latency: status::StatusLatency,
}

fn spawn<F: FnOnce() + Send + 'static>(name: &str, f: F) -> Result<JoinHandle<()>, StartError> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|cause| StartError::Spawn {
            name: name.to_owned(),
            cause,
        })
}

/// Starts a relay from `cfg`.
pub fn start(cfg: Config) -> Result<Running, StartError> {
    crate::base::clock::init();
    // The replay exchange loads its recordings first: the socket appears only when the relay is
    // about to accept, so a subscriber never waits in the backlog of a relay still starting up.
    let replay = match &cfg.replay {
        Some(r) => Some(
            ReplayExchange::start(
                &r.sources,
                ReplayOptions {
                    listen: r.listen,
                    speed: r.speed,
                    loop_forever: r.loop_forever,
                    start_paused: false,
                    live: false,
                    from_ns: None,
                    to_ns: None,
                },
            )
            .map_err(StartError::Replay)?,
        ),
        None => None,
    };
    let replay_addr = replay.as_ref().map(ReplayExchange::local_addr);
    let (listener, socket) = socket::bind(&cfg.relay)?;
    let stop = Arc::new(StopFlag::default());
    let relay_counters = Arc::new(RelayCounters::default());
    let accept_counters = Arc::new(AcceptCounters::default());
    let published: SharedPublished = Arc::new(Publication::new(Published::new(cfg.feeds.len())));

    let waker = Arc::new(Waker::default());
    let started_mono_ns = crate::base::clock::mono_ns();
    let recorder = if cfg.feeds.iter().any(|f| f.record) {
        let names = cfg
            .feeds
            .iter()
            .map(|f| RecordedFeed {
                venue: f.venue.name().to_owned(),
                feed: f.name.clone(),
                route: crate::feed::record_route::route_for(f.venue),
            })
            .collect();
        Some(Recorder::spawn(&cfg.recording, names).map_err(StartError::Recorder)?)
    } else {
        None
    };
    let recorder_stats = recorder.as_ref().map(|r| r.stats().clone());
    let mut metric_feeds = Vec::new();
    let mut feeds = Vec::new();
    let mut inputs = Vec::new();
    let mut collectors = Vec::new();
    let mut pending_collectors = Vec::new();
    // Open-interest pollers (`oi-<feed>`), started after the collectors they feed.
    let mut pollers = Vec::new();
    for (i, f) in cfg.feeds.iter().enumerate() {
        let mut fc = f.clone();
        if let Some(addr) = replay_addr {
            let a = addr.to_string();
            fc.url = fc.url.replace("{replay}", &a);
            fc.rest_url = fc.rest_url.map(|u| u.replace("{replay}", &a));
        }
        let parser = venue::parser_for(fc.venue);
        let (producer, rx) = queue::bounded(
            &QueueSpec {
                name: fc.name.clone(),
                transport: fc.transport,
                capacity_frames: fc.queue_capacity_frames,
                policy: fc.backpressure,
                block_timeout: fc.block_timeout,
            },
            waker.clone(),
        );
        let stats = Arc::new(FeedStats::default());
        feeds.push(FeedHandle {
            cfg: fc.clone(),
            stats: stats.clone(),
            queue: rx.monitor(),
        });
        metric_feeds.push(FeedMetrics {
            name: fc.name.clone(),
            venue: fc.venue,
            stats: stats.clone(),
            queue: rx.monitor(),
            stale_after: fc.stale_after,
        });
        inputs.push(FeedInput {
            name: fc.name.clone(),
            rx,
            stats: stats.clone(),
        });
        let tls =
            match &fc.tls_ca_file {
                Some(p) => Some(crate::feed::collector::tls_config(p).map_err(|reason| {
                    StartError::Tls {
                        feed: fc.name.clone(),
                        reason,
                    }
                })?),
                None => None,
            };
        pending_collectors.push(match fc.source.clone() {
            FeedSource::WebSocket => {
                let rec = if fc.record {
                    recorder.as_ref().and_then(|r| r.sender(i))
                } else {
                    None
                };
                let poller = match (fc.open_interest_interval, &fc.rest_url) {
                    (Some(every), Some(rest)) => open_interest::Poller::new(
                        &fc.name,
                        fc.venue,
                        rest,
                        &fc.subscription.symbols,
                        every,
                        fc.connect_timeout,
                        stats.clone(),
                        stop.clone(),
                    ),
                    _ => None,
                };
                let name = fc.name.clone();
                let c = Collector::new(fc, parser, producer, stats, stop.clone(), tls, rec);
                Feed::Live(match poller {
                    Some((p, readings)) => {
                        pollers.push((format!("oi-{name}"), p));
                        c.with_open_interest(readings)
                    }
                    None => c,
                })
            }
            FeedSource::Files {
                paths,
                speed,
                wait_subscribers,
            } => Feed::Replay(FileCollector::new(
                fc,
                paths,
                speed,
                parser,
                producer,
                stats,
                stop.clone(),
                (wait_subscribers, relay_counters.clone()),
            )),
        });
    }

    let writer = match &cfg.writer {
        Some(w) => Some(WriterHandle::spawn(w.clone())?),
        None => None,
    };
    let writer_stats = writer.as_ref().map(|w| w.stats().clone());
    let analytics_counters = Arc::new(AnalyticsCounters::default());
    let query = cfg.http.as_ref().map(|h| {
        let state = QueryState::new(
            cfg.bars.bars.intervals_ns(),
            cfg.bars.bars.history_bars(),
            h.book_depth,
        );
        (Arc::new(Publication::new(state)), h.snapshot_interval)
    });
    let analytics = Analytics::new(
        cfg.bars.clone(),
        cfg.persist,
        cfg.feeds.iter().map(|f| f.name.clone()).collect(),
        writer,
        recorder_stats.clone(),
        query.clone(),
        analytics_counters.clone(),
    );

    // Before any thread starts, so a port in use fails start-up cleanly.
    let http = match (&cfg.http, query) {
        (Some(h), Some((q, _))) => {
            let http_counters = Arc::new(http::HttpCounters::default());
            let router = http::Router::new(MetricsSources {
                feeds: metric_feeds,
                relay: relay_counters.clone(),
                accept: accept_counters.clone(),
                published: published.clone(),
                started_mono_ns,
                analytics: analytics_counters.clone(),
                writer: writer_stats.clone(),
                recorder: recorder_stats.clone(),
                http: http_counters.clone(),
            })
            .with_fallback(Box::new(move |req| query::handle(&q, req)));
            let core = core_for(&cfg.threads, http::THREAD_NAME);
            Some(
                http::start(
                    h.server_options(),
                    Arc::new(router),
                    http_counters,
                    stop.clone(),
                    core,
                )
                .map_err(StartError::Http)?,
            )
        }
        _ => None,
    };
    #[cfg(feature = "nats")]
    let nats = match cfg.nats.enabled {
        true => Some(crate::bridge::nats::Bridge::start(
            &cfg.nats,
            socket.path(),
        )?),
        false => None,
    };
    let (sub_tx, sub_rx) = crossbeam_channel::bounded(1024);
    let consumer = Consumer::new(
        cfg.consumer.clone(),
        Inputs {
            feeds: inputs,
            waker: waker.clone(),
            stop: stop.clone(),
        },
        RelaySide {
            config: &cfg.relay,
            counters: relay_counters.clone(),
            admissions: sub_rx,
        },
        Outputs {
            published: published.clone(),
            analytics,
        },
    );
    let consumer_core = core_for(&cfg.threads, "consumer");
    let consumer = spawn("consumer", move || {
        pin_current_thread("consumer", consumer_core);
        consumer.run();
    })?;
    let acceptor = {
        let (rc, ac, wk, st) = (
            relay_counters.clone(),
            accept_counters.clone(),
            waker.clone(),
            stop.clone(),
        );
        let acfg = AcceptConfig {
            max_subscribers: cfg.relay.max_subscribers,
            hello_timeout: cfg.relay.hello_timeout,
            allowed_uids: cfg.relay.allowed_uids.clone(),
        };
        spawn("relay-accept", move || {
            acceptor::accept_loop(listener, sub_tx, acfg, rc, ac, wk, st)
        })?
    };
    for c in pending_collectors.into_iter().zip(&feeds) {
        let (collector, handle) = c;
        let name = format!("collector-{}", handle.cfg.name);
        let core = core_for(&cfg.threads, &name);
        let n = name.clone();
        collectors.push((
            name.clone(),
            spawn(&name, move || {
                pin_current_thread(&n, core);
                match collector {
                    Feed::Live(c) => c.run(),
                    Feed::Replay(c) => c.run(),
                }
            })?,
        ));
    }
    for (name, p) in pollers {
        // Joined with the collectors; stops on the same flag.
        collectors.push((name.clone(), spawn(&name, move || p.run())?));
    }
    tracing::info!(
        socket = %socket.path().display(),
        feeds = feeds.len(),
        replay = ?replay_addr,
        "relay running"
    );
    Ok(Running {
        stop,
        feeds,
        collectors,
        consumer: Some(consumer),
        acceptor: Some(acceptor),
        replay,
        http,
        #[cfg(feature = "nats")]
        nats,
        socket: Some(socket),
        relay_counters,
        accept_counters,
        published,
        analytics: analytics_counters,
        writer: writer_stats,
        recorder,
        recorder_stats,
        started: Instant::now(),
        last_status: (Instant::now(), 0),
        status_latency: status::StatusLatency::new(),
    })
}

/// A feed's collector before its thread starts.
enum Feed {
    Live(Collector),
    Replay(FileCollector),
}

impl Running {
    /// The relay socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .as_ref()
            .map(|s| s.path().to_path_buf())
            .unwrap_or_default()
    }

    /// The embedded replay exchange's address, when it runs.
    pub fn replay_addr(&self) -> Option<SocketAddr> {
        self.replay.as_ref().map(ReplayExchange::local_addr)
    }

    /// The HTTP endpoint's address, when it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// The embedded replay exchange, when it runs.
    pub fn replay(&self) -> Option<&ReplayExchange> {
        self.replay.as_ref()
    }

    /// Counters of feed `i` (config order).
    pub fn feed_stats(&self, i: usize) -> Option<&FeedStats> {
        self.feeds.get(i).map(|f| &*f.stats)
    }

    /// Relay-wide counters.
    pub fn relay_counters(&self) -> &RelayCounters {
        &self.relay_counters
    }

    /// What the consumer publishes (latency histograms per feed since start, …): a shared
    /// handle that still holds the final figures after [`shutdown`](Self::shutdown).
    pub fn published(&self) -> SharedPublished {
        self.published.clone()
    }

    /// The CSV writer's counters, when CSV is on.
    pub fn writer_stats(&self) -> Option<&WriterStats> {
        self.writer.as_deref()
    }

    /// Bars and query snapshot counters.
    pub fn analytics_counters(&self) -> &AnalyticsCounters {
        &self.analytics
    }

    /// True once every collector has ended on its own (a replay reached the end of its
    /// recordings); live collectors end only at shutdown.
    pub fn feeds_finished(&self) -> bool {
        self.collectors.iter().all(|(_, h)| h.is_finished())
    }

    /// One status line: events/s since the last call, relay latency of the frames relayed since
    /// the last call (or why there is no figure: see `status.rs`), fullest queue, subscribers.
    pub fn status_line(&mut self) -> String {
        let now = Instant::now();
        let relayed: u64 = self
            .feeds
            .iter()
            .map(|f| f.stats.consumer.relayed_events.get())
            .sum();
        let frames: u64 = self
            .feeds
            .iter()
            .map(|f| f.stats.collector.frames.get())
            .sum();
        let dt = now
            .duration_since(self.last_status.0)
            .as_secs_f64()
            .max(1e-9);
        let rate = (relayed - self.last_status.1.min(relayed)) as f64 / dt;
        self.last_status = (now, relayed);
        let latency = self.status_latency.field(&self.published, dt);
        let worst = self
            .feeds
            .iter()
            .map(|f| (f.queue.len(), f.queue.capacity().max(1), &f.cfg.name))
            .max_by(|a, b| (a.0 * b.1).cmp(&(b.0 * a.1)));
        let queue = match worst {
            Some((len, cap, name)) => format!("{name} {len}/{cap}"),
            None => "-".into(),
        };
        format!(
            "events/s {rate:.0} | frames {frames} | {latency} | fullest queue {queue} | subscribers {}",
            self.relay_counters.subscribers.get()
        )
    }

    /// Stops every thread in order, drains, removes the socket, and returns the summary.
    pub fn shutdown(mut self) -> Summary {
        self.stop.stop();
        let mut panicked = Vec::new();
        for (name, h) in self.collectors.drain(..) {
            if h.join().is_err() {
                panicked.push(name);
            }
        }
        // Every sender went with its collector: the recorder finishes its files and ends.
        if let Some(r) = self.recorder.take() {
            if !r.join() {
                panicked.push("recorder".into());
            }
        }
        if let Some(h) = self.consumer.take() {
            if h.join().is_err() {
                panicked.push("consumer".into());
            }
        }
        if let Some(h) = self.acceptor.take() {
            if h.join().is_err() {
                panicked.push("relay-accept".into());
            }
        }
        if let Some(h) = self.http.take() {
            if h.shutdown().is_err() {
                panicked.push("http".into());
            }
        }
        #[cfg(feature = "nats")]
        if let Some(b) = self.nats.take() {
            let s = b.shutdown();
            tracing::info!("{s}");
            panicked.extend(s.panicked.iter().map(|p| p.to_string()));
        }
        if let Some(r) = self.replay.take() {
            r.stop();
        }
        drop(self.socket.take());
        for p in &panicked {
            tracing::error!(thread = %p, "thread panicked");
        }
        let published = self.published.load();
        Summary {
            uptime_s: self.started.elapsed().as_secs_f64(),
            feeds: self
                .feeds
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let c = &f.stats.collector;
                    let k = &f.stats.consumer;
                    let h = published.latency_total.get(i);
                    FeedSummary {
                        name: f.cfg.name.clone(),
                        frames: c.frames.get(),
                        control: c.control.get(),
                        parse_errors: c.parse_errors.get(),
                        out_of_range: c.out_of_range.get(),
                        events: c.events.get(),
                        relayed: k.relayed_events.get(),
                        dropped: c.dropped_events.get(),
                        refused: k.refused_events.get(),
                        queue_high_water: f.queue.counters().producer.high_water.get(),
                        queue_capacity: f.queue.capacity() as u64,
                        reconnects: c.reconnects.get(),
                        gaps: c.gaps.get(),
                        files_failed: c.files_failed.get(),
                        p50_ns: h.map_or(0, |h| pct(h, 0.5)),
                        p99_ns: h.map_or(0, |h| pct(h, 0.99)),
                        max_ns: h.map_or(0, |h| if h.is_empty() { 0 } else { h.max() }),
                    }
                })
                .collect(),
            persistence: Persistence {
                bars_closed: self.analytics.bars_closed.get(),
                csv_rows: self.writer.as_ref().map(|w| w.writer.rows_written.get()),
                csv_not_persisted: self.writer.as_ref().map_or(0, |w| {
                    w.producer.full.get()
                        + w.producer.disconnected.get()
                        + w.writer.dropped_io.get()
                        + w.writer.dropped_unknown.get()
                }),
                csv_io_errors: self.writer.as_ref().map_or(0, |w| w.writer.io_errors.get()),
                raw_recorded: self.recorder_stats.as_ref().map(|r| r.written.get()),
                raw_dropped: self.recorder_stats.as_ref().map_or(0, |r| r.dropped.get()),
            },
            subscribers_accepted: self.relay_counters.accepted.get(),
            slow_disconnects: self.relay_counters.slow_disconnects.get(),
            refused: self.accept_counters.refused_full.get(),
            panicked,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A Running dropped without shutdown() (e.g. a test that failed) still stops its threads.
        self.stop.stop();
        for (_, h) in self.collectors.drain(..) {
            let _ = h.join();
        }
        if let Some(h) = self.consumer.take() {
            let _ = h.join();
        }
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}
