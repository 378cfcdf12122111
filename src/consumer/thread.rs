//! The consumer: the ONE thread (`consumer`) that owns the cache and the subscriber set.
//!
//! Each turn it admits new subscribers, takes up to `batch_frames` frames from every feed's
//! queue in turn (round-robin, so a busy feed cannot starve a quiet one), updates the cache and
//! appends each frame to every subscriber's buffer, then writes each subscriber once — unless
//! the feed is in a burst, when [`Coalescer`] holds the frames for a few more turns (bounded by
//! `coalesce_budget_us` and `coalesce_max_bytes`) so that one write carries many. Right after
//! the writes return it stamps `t_relay` and records `t_relay − t_recv` per frame in the feed's
//! HDR histogram. When every queue is empty it idles per the configured strategy (spin → yield →
//! park on the queues with a timeout, or park only), so it is usually awake when a frame lands;
//! while it holds frames it only spins.
//!
//! It takes no lock on the hot path: counters are single-writer atomics, and once per
//! [`PUBLISH_INTERVAL`] the latency histograms are swapped for clean ones and handed to the
//! `stats` thread ([`StatsLink`]), which adds them into the totals and publishes them through a
//! lock-free [`Publication`]: the consumer never copies a histogram, never waits for that thread
//! and never for a reader.
//!
//! Shutdown: once the stop flag is set and every collector has dropped its producer, the
//! consumer empties every queue, writes what subscribers still have pending (up to the drain
//! timeout), closes them and returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;

use crate::base::clock;
use crate::base::publication::Publication;
use crate::base::stats::{FeedStats, RelayCounters, StopFlag};
use crate::consumer::analytics::Analytics;
use crate::consumer::coalesce::{Coalescer, Decision};
use crate::consumer::config::{ConsumerConfig, IdleStrategy};
use crate::consumer::stats::{publish_set, IntervalSet, StatsLink};
use crate::market::event::{Status, StatusCode};
use crate::market::instrument::InstrumentId;
use crate::queue::{PopError, QueueReceiver, Waker};
use crate::relay::acceptor::Admission;
use crate::relay::cache::{Cache, Refusal};
use crate::relay::config::RelayConfig;
use crate::relay::subscribers::Subscribers;
use crate::wire::protocol::{self, FrameBuf, Message, Meta, MsgType};

/// How often the consumer publishes its histograms for other threads.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);

/// Highest latency a histogram tracks, ns; larger values are clamped (saturating record).
const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// A new latency histogram: 1 ns .. 60 s at 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds within hdrhistogram's documented limits (low ≥ 1, high ≥ 2·low,
    // sigfig ≤ 5): construction cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3).expect("valid constant histogram bounds")
}

/// One feed's input to the consumer.
#[derive(Debug)]
pub struct FeedInput {
    /// Feed name.
    pub name: String,
    /// The queue from its collector.
    pub rx: QueueReceiver,
    /// Its counters.
    pub stats: Arc<FeedStats>,
}

/// What the consumer publishes for other threads (status line, shutdown summary, metrics),
/// through its `stats` thread ([`StatsLink`]).
#[derive(Debug)]
pub struct Published {
    /// Per feed (config order): `t_relay − t_recv` since start, ns.
    pub latency_total: Vec<Histogram<u64>>,
    /// Per feed: latency over the last publish interval, ns.
    pub latency_recent: Vec<Histogram<u64>>,
    /// Per feed: frame read → frame queued (parse, normalize, encode, and the earlier frames
    /// of the same venue message), ns, since start. Only frames read from a venue message:
    /// instrument definitions, feed status frames and drop reports have no read time. A book
    /// snapshot a venue sync buffer completed counts from the snapshot's receipt; the diffs'
    /// wait in the buffer is `CollectorCounters::sync_wait`.
    pub parse_total: Vec<Histogram<u64>>,
    /// Per feed: frame queued → taken by the consumer, ns, since start.
    pub queue_wait_total: Vec<Histogram<u64>>,
    /// Per subscriber, as of the last publish.
    pub subscribers: Vec<crate::relay::subscribers::SubscriberStats>,
}

impl Clone for Published {
    fn clone(&self) -> Self {
        Published {
            latency_total: self.latency_total.clone(),
            latency_recent: self.latency_recent.clone(),
            parse_total: self.parse_total.clone(),
            queue_wait_total: self.queue_wait_total.clone(),
            subscribers: self.subscribers.clone(),
        }
    }

    /// Copies into the existing histograms (a memset and a memcpy each, no allocation): how
    /// the consumer's [`Publication`] reuses a version no reader holds any more.
    fn clone_from(&mut self, src: &Self) {
        for (dst, src) in [
            (&mut self.latency_total, &src.latency_total),
            (&mut self.latency_recent, &src.latency_recent),
            (&mut self.parse_total, &src.parse_total),
            (&mut self.queue_wait_total, &src.queue_wait_total),
        ] {
            if dst.len() != src.len() {
                dst.clone_from(src);
                continue;
            }
            for (d, s) in dst.iter_mut().zip(src) {
                d.reset();
                // Same bounds (every histogram comes from `new_histogram`): a plain copy.
                if d.add(s).is_err() {
                    *d = s.clone();
                }
            }
        }
        self.subscribers.clone_from(&src.subscribers);
    }
}

impl Published {
    /// Empty histograms for `feeds` feeds.
    pub fn new(feeds: usize) -> Self {
        Published {
            latency_total: (0..feeds).map(|_| new_histogram()).collect(),
            latency_recent: (0..feeds).map(|_| new_histogram()).collect(),
            parse_total: (0..feeds).map(|_| new_histogram()).collect(),
            queue_wait_total: (0..feeds).map(|_| new_histogram()).collect(),
            subscribers: Vec::new(),
        }
    }
}

/// Cheap shared handle to what the consumer publishes: readers load it without a lock, so they
/// never make the consumer skip a publication.
pub type SharedPublished = Arc<Publication<Published>>;

/// What the consumer reads, and what wakes it or tells it to finish.
#[derive(Debug)]
pub struct Inputs {
    /// One per feed, in config order: a feed's index here is its index everywhere else
    /// (cache, histograms, analytics).
    pub feeds: Vec<FeedInput>,
    /// The waker the feeds' producers (and the acceptor) were built with.
    pub waker: Arc<Waker>,
    /// Set once at shutdown; the consumer then relays what is still queued and returns.
    pub stop: Arc<StopFlag>,
}

/// The subscriber side: who joins, and how subscribers are served.
pub struct RelaySide<'a> {
    /// The `[relay]` section: pending-bytes limit, heartbeat interval, drain timeout.
    pub config: &'a RelayConfig,
    /// Counters of the subscriber set, shared with metrics.
    pub counters: Arc<RelayCounters>,
    /// From the acceptor: new subscribers, their requests, refusals.
    pub admissions: Receiver<Admission>,
}

/// What the consumer produces besides the relayed frames.
pub struct Outputs {
    /// Histograms and subscriber stats for other threads; one histogram per feed.
    pub published: SharedPublished,
    /// Bars, CSV records, the query snapshot.
    pub analytics: Analytics,
}

/// One feed's queue as the consumer polls it.
struct InputQueue {
    /// The queue and the feed's counters.
    feed: FeedInput,
    /// True until the queue reported Disconnected (producer gone, queue empty); then false for
    /// good, and the queue is not polled again.
    open: bool,
}

/// Backoff idle state.
struct Idle {
    /// The configured strategy (`cfg.idle`); fixed.
    strategy: IdleStrategy,
    /// Idle turns since the last turn that took a frame; 0 after any frame.
    turns: u64,
    /// The next park's length under `Backoff`: 1 µs after any frame, doubling with each park
    /// up to the strategy's `park_max`.
    park: Duration,
}

/// The consumer thread's state; everything here is touched by the consumer thread only,
/// except what is shared behind `Arc`s as noted.
pub struct Consumer {
    /// One per feed, in config order (the feed index of everything below); never shrinks.
    inputs: Vec<InputQueue>,
    /// Latest state per instrument for late joiners; every relayed frame was accepted by it
    /// first.
    cache: Cache,
    /// Connected subscribers, each with a pending buffer bounded by `max_pending_bytes`.
    subs: Subscribers,
    /// The relay's counters (shared with `subs` and metrics); the consumer counts coalescing.
    counters: Arc<RelayCounters>,
    /// From the acceptor; drained at the top of every turn.
    new_subs: Receiver<Admission>,
    /// Batch size and idle strategy; fixed.
    cfg: ConsumerConfig,
    /// Heartbeat period, ns; fixed.
    heartbeat_interval_ns: u64,
    /// Longest the subscribers' pending bytes are written for at shutdown; fixed.
    drain_timeout: Duration,
    /// Shutdown: the loop ends once it is set and no input is open, so every queued frame has
    /// been taken.
    stop: Arc<StopFlag>,
    /// Per feed: relay latency, read → queued and queued → dequeued since the last hand-over
    /// to the `stats` thread, ns; swapped for a clean set by each.
    cur: IntervalSet,
    /// The `stats` thread, started by [`new`](Self::new) on the thread that builds the
    /// consumer, not by the consumer thread: a thread inherits its parent's CPU affinity, and
    /// the `stats` thread must not share the consumer's pinned core. `None` after
    /// shutdown, or when it could not be started (then the consumer publishes itself).
    stats: Option<StatsLink>,
    /// What other threads read: a lock-free publication, replaced once per publish.
    published: SharedPublished,
    /// (feed index, t_recv) of the frames relayed since the last write, for latency after the
    /// writes; empty when nothing is held.
    turn: Vec<(usize, u64)>,
    /// How long the next idle wait is.
    idle: Idle,
    /// When the frames queued for subscribers are written; what it holds is in `turn`.
    coalesce: Coalescer,
    /// Encoding buffer for heartbeats and `dropped` reports; meaningless between uses.
    scratch: FrameBuf,
    /// Wakes this thread when it parks; shared with every producer and the acceptor.
    waker: Arc<Waker>,
    /// (feed, id) → events lost because their frames came before the instrument's definition
    /// (possible only after `drop_oldest` evicted it): refused events, plus the counts carried
    /// by refused `dropped` reports. An entry exists only while the id is undefined: it is
    /// reported as one `dropped` right after the definition, and removed.
    undefined: FxHashMap<(usize, InstrumentId), u64>,
    /// Bars, CSV records, query snapshot.
    analytics: Analytics,
}

impl Consumer {
    /// Builds the consumer; `outputs.published` must have one histogram per feed.
    pub fn new(
        cfg: ConsumerConfig,
        inputs: Inputs,
        relay: RelaySide<'_>,
        outputs: Outputs,
    ) -> Self {
        let Inputs { feeds, waker, stop } = inputs;
        let Outputs {
            published,
            analytics,
        } = outputs;
        let n = feeds.len();
        let stats = match StatsLink::start(published.clone(), n) {
            Ok(link) => Some(link),
            Err(e) => {
                tracing::error!("cannot start the stats thread ({e}): the consumer publishes its histograms itself");
                None
            }
        };
        Consumer {
            inputs: feeds
                .into_iter()
                .map(|feed| InputQueue { feed, open: true })
                .collect(),
            cache: Cache::default(),
            subs: Subscribers::new(
                relay.config.max_pending_bytes,
                relay.config.drain_timeout,
                relay.counters.clone(),
            ),
            counters: relay.counters,
            coalesce: Coalescer::new(cfg.coalesce),
            new_subs: relay.admissions,
            idle: Idle {
                strategy: cfg.idle,
                turns: 0,
                park: Duration::from_micros(1),
            },
            cfg,
            heartbeat_interval_ns: relay.config.heartbeat_interval.as_nanos() as u64,
            drain_timeout: relay.config.drain_timeout,
            stop,
            cur: IntervalSet::new(n),
            stats,
            published,
            turn: Vec::with_capacity(4096),
            scratch: FrameBuf::new(),
            waker,
            undefined: FxHashMap::default(),
            analytics,
        }
    }

    /// Runs until shutdown (see the module doc).
    pub fn run(mut self) {
        self.waker.register_current();
        let mut next_heartbeat = clock::mono_ns() + self.heartbeat_interval_ns;
        let publish_every = u64::try_from(self.cfg.publish_interval.as_nanos()).unwrap_or(u64::MAX);
        let mut next_publish = clock::mono_ns().saturating_add(publish_every);
        let bar_timer_ns = self.analytics.timer_interval_ns();
        let snapshot_ns = self.analytics.snapshot_interval_ns();
        let mut next_bar_timer = clock::mono_ns().saturating_add(bar_timer_ns);
        let mut next_snapshot = clock::mono_ns().saturating_add(snapshot_ns);
        loop {
            while let Ok(a) = self.new_subs.try_recv() {
                match a {
                    Admission::New {
                        stream,
                        serial,
                        requests,
                    } => self.subs.add(stream, serial, requests, &self.cache),
                    Admission::Requests { serial, requests } => {
                        self.subs.apply(serial, requests, &self.cache)
                    }
                    Admission::Refuse { serial, reason } => self.subs.refuse(serial, &reason),
                }
            }
            let n = self.take_turn();
            let mut holding = false;
            if n > 0 || self.subs.any_pending() {
                if !self.subs.is_empty() && self.coalesce.decide(clock::mono_ns()) == Decision::Hold
                {
                    holding = true;
                    self.counters.coalesce_holds.inc();
                } else {
                    self.write();
                }
            }
            let now = clock::mono_ns();
            if now >= next_heartbeat {
                protocol::encode_heartbeat(&mut self.scratch, clock::wall_ns_at(now));
                self.subs.broadcast_heartbeat(&self.scratch);
                self.write();
                holding = false;
                next_heartbeat = now + self.heartbeat_interval_ns;
            }
            if now >= next_publish {
                self.publish();
                next_publish = now.saturating_add(publish_every);
            }
            if now >= next_bar_timer {
                self.analytics
                    .on_timer(clock::wall_ns_at(now), &mut self.subs, &mut self.cache);
                self.write();
                holding = false;
                next_bar_timer = now.saturating_add(bar_timer_ns);
            }
            if now >= next_snapshot {
                self.analytics.publish(&self.cache, false);
                next_snapshot = now.saturating_add(snapshot_ns);
            }
            if n > 0 {
                self.idle.turns = 0;
                self.idle.park = Duration::from_micros(1);
                continue;
            }
            if holding {
                // Bounded by the coalescing budget: spin, never park, until the write is due.
                std::hint::spin_loop();
                continue;
            }
            if self.stop.is_stopped() && self.inputs.iter().all(|i| !i.open) {
                break;
            }
            let next_timer = next_heartbeat
                .min(next_publish)
                .min(next_bar_timer)
                .min(next_snapshot);
            self.wait(next_timer.saturating_sub(now));
        }
        self.write();
        self.finish_publishing();
        let writer = self.analytics.finish(&mut self.cache, &mut self.subs);
        let unfinished = self
            .subs
            .drain_and_close(Instant::now() + self.drain_timeout);
        if unfinished > 0 {
            tracing::warn!(
                unfinished,
                "drain timeout: subscribers still had bytes pending"
            );
        }
        // After the subscribers: the writer writes, flushes and fsyncs what is queued.
        if let Some(w) = writer {
            if w.close().is_err() {
                tracing::error!("the csv writer thread panicked");
            }
        }
    }

    /// Writes every subscriber's pending bytes (one write each), then records the latency of
    /// every frame the writes carried for the first time.
    fn write(&mut self) {
        self.subs.flush();
        self.coalesce.written();
        if !self.turn.is_empty() && !self.subs.is_empty() {
            let t_relay = clock::mono_ns();
            for &(feed, t_recv) in &self.turn {
                if t_recv != 0 {
                    let _ = self.cur.latency[feed].record(t_relay.saturating_sub(t_recv).max(1));
                }
            }
        }
        self.turn.clear();
    }

    /// Takes up to `batch_frames` from each open queue; returns frames taken.
    #[inline]
    fn take_turn(&mut self) -> usize {
        let mut taken = 0;
        // One clock read per turn: frames taken later in the turn waited a little longer than
        // recorded (by the time to relay the frames before them, ~100 ns each).
        let t_dequeue = clock::mono_ns();
        for (idx, input) in self.inputs.iter_mut().enumerate() {
            if !input.open {
                continue;
            }
            for _ in 0..self.cfg.batch_frames {
                match input.feed.rx.try_pop() {
                    Ok(env) => {
                        taken += 1;
                        if env.t_enqueue_ns != 0 {
                            // A frame read from no venue message (an instrument definition, a
                            // feed status, a drop report) has t_recv 0: no parse time of its own
                            // (t_enqueue − 0 would be the time since start).
                            if env.t_recv_ns != 0 {
                                let _ = self.cur.parse[idx]
                                    .record(env.t_enqueue_ns.saturating_sub(env.t_recv_ns).max(1));
                            }
                            let _ = self.cur.queue_wait[idx]
                                .record(t_dequeue.saturating_sub(env.t_enqueue_ns).max(1));
                        }
                        let frame = &env.frame[..];
                        let h = protocol::peek_header(frame);
                        let c = &input.feed.stats.consumer;
                        match self.cache.apply(idx, &h, frame) {
                            Ok(()) => {
                                self.subs.broadcast(frame);
                                let arrival = match env.t_enqueue_ns {
                                    0 => t_dequeue,
                                    t => t,
                                };
                                self.coalesce.on_frame(arrival, t_dequeue, frame.len());
                                self.analytics.on_frame(
                                    idx,
                                    &h,
                                    frame,
                                    &mut self.subs,
                                    &mut self.cache,
                                );
                                c.relayed.inc();
                                if is_event(h.msg_type) {
                                    c.relayed_events.inc();
                                }
                                self.turn.push((idx, env.t_recv_ns));
                                if MsgType::from_code(h.msg_type) == Some(MsgType::InstrumentDef) {
                                    if let Some(n) = self.undefined.remove(&(idx, h.instrument_id))
                                    {
                                        report_refused(&mut self.scratch, &mut self.subs, frame, n);
                                    }
                                }
                            }
                            Err(r) => {
                                c.refused.inc();
                                if is_event(h.msg_type) {
                                    c.refused_events.inc();
                                }
                                if r == Refusal::Undefined {
                                    let lost = lost_events(&h, frame);
                                    *self.undefined.entry((idx, h.instrument_id)).or_default() +=
                                        lost;
                                }
                            }
                        }
                    }
                    Err(PopError::Empty) => break,
                    Err(PopError::Disconnected) => {
                        input.open = false;
                        break;
                    }
                }
            }
        }
        taken
    }

    /// True when any open queue or the new-subscriber channel has something.
    fn has_work(&self) -> bool {
        !self.new_subs.is_empty() || self.inputs.iter().any(|i| i.open && !i.feed.rx.is_empty())
    }

    /// Idles once per the strategy; parking ends early when a producer or the acceptor wakes us.
    fn wait(&mut self, until_timer_ns: u64) {
        self.idle.turns += 1;
        let t = self.idle.turns;
        let park_for = match self.idle.strategy {
            IdleStrategy::BusySpin => {
                // One yield every 1024 idle turns: negligible when cores are spare, and on a
                // 2-core machine it lets the collectors run.
                if t % 1024 == 0 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                return;
            }
            IdleStrategy::Yield => {
                std::thread::yield_now();
                return;
            }
            IdleStrategy::Backoff {
                spin_iterations,
                yield_iterations,
                park_max,
            } => {
                if t <= u64::from(spin_iterations) {
                    // As busy_spin: a yield now and then, or on 2 cores the spinning consumer
                    // keeps the collector off the CPU (measured: p50 104 µs without, see
                    // docs/BENCHMARKS.md).
                    if t % 1024 == 0 {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                    return;
                }
                if t <= u64::from(spin_iterations) + u64::from(yield_iterations) {
                    std::thread::yield_now();
                    return;
                }
                let p = self.idle.park;
                self.idle.park = (p * 2).min(park_max);
                p
            }
            IdleStrategy::Park => Duration::from_millis(100),
        };
        let timeout = park_for.min(Duration::from_nanos(until_timer_ns.max(1_000)));
        let waker = self.waker.clone();
        waker.park_timeout(timeout, || self.has_work());
    }

    /// Hands the interval histograms (and the subscriber counters) to the `stats` thread for
    /// publication: O(1) swaps, never a wait. When the thread has no clean set back yet, the
    /// histograms keep accumulating until the next publish.
    fn publish(&mut self) {
        let subs = &self.subs;
        match &mut self.stats {
            Some(link) => {
                let _ = link.hand_over(&mut self.cur, |out| subs.stats_into(out));
            }
            None => {
                subs.stats_into(&mut self.cur.subscribers);
                publish_set(&self.published, &mut self.cur);
            }
        }
    }

    /// The last publication, made before the consumer returns: hands over what is left, then
    /// joins the `stats` thread (which publishes it first).
    fn finish_publishing(&mut self) {
        let subs = &self.subs;
        if let Some(mut link) = self.stats.take() {
            if link.finish(&mut self.cur, |out| subs.stats_into(out)) {
                return;
            }
            tracing::error!("the stats thread panicked; the consumer publishes the last figures");
        }
        self.subs.stats_into(&mut self.cur.subscribers);
        publish_set(&self.published, &mut self.cur);
    }
}

/// Events a refused frame stands for: 1 for an event, the count of a `dropped` report, else 0.
fn lost_events(h: &protocol::Header, frame: &[u8]) -> u64 {
    if is_event(h.msg_type) {
        return 1;
    }
    match protocol::decode_frame(frame).map(|(f, _)| f.message()) {
        Ok(Ok(Message::Status { status, .. })) if status.code == StatusCode::Dropped => {
            status.count
        }
        _ => 0,
    }
}

#[inline]
fn is_event(msg_type: u8) -> bool {
    matches!(
        MsgType::from_code(msg_type),
        Some(MsgType::Trade | MsgType::Quote | MsgType::BookSnapshot | MsgType::BookDelta)
    )
}

/// After a definition arrives for an id whose earlier frames were refused, tells subscribers
/// how many were lost, as a `dropped` status of that instrument.
#[cold]
fn report_refused(scratch: &mut FrameBuf, subs: &mut Subscribers, def_frame: &[u8], n: u64) {
    let Ok((f, _)) = protocol::decode_frame(def_frame) else {
        return;
    };
    let Ok(Message::InstrumentDef { venue, .. }) = f.message() else {
        return;
    };
    protocol::encode_status(
        scratch,
        &Meta {
            instrument_id: f.header.instrument_id,
            sequence: f.header.sequence,
            recv_ts_ns: clock::wall_ns(),
            flags: 0,
        },
        venue,
        &Status {
            code: StatusCode::Dropped,
            count: n,
            detail: "frames arrived before their instrument definition (evicted) and were refused",
        },
    );
    subs.broadcast(scratch);
}
