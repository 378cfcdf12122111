//! What `mdrelay top` knows about a relay, and what it shows of it: a pure model.
//!
//! [`Model`] folds the frames a `RelayClient` hands out ([`Model::apply`]) and the HTTP scrapes
//! ([`Model::set_health`], [`Model::set_metrics`], [`Model::set_session`]) into per-instrument and
//! per-feed state. [`Model::screen`] turns it, with the user's [`ViewState`] (sort key, venue
//! filter), into a [`Screen`]: the rows of every table, sorted and filtered, that the
//! [`ui`](super::ui) draws without further decisions.
//!
//! No clock is read here: every call that needs the time takes `now_ns`, a monotonic reading in
//! nanoseconds ([`crate::base::clock::mono_ns`] in the program, plain numbers in tests). No I/O, no
//! locks: `top` shares one `Model` between its threads behind a `parking_lot` mutex (`cli::top`),
//! and every method here is short.
//!
//! Event rates are counted in one-second buckets over a sliding window of [`RATE_WINDOW_S`]
//! seconds (the ring-of-buckets counter of e.g. Hystrix's rolling counters): constant memory per
//! instrument, O(window) to read.

use rustc_hash::FxHashMap;

use crate::market::event::{Side, StatusCode};
use crate::market::fixed::ABSENT;
use crate::market::instrument::InstrumentId;
use crate::relay::client::Received;
use crate::wire::protocol::{flags, Message};

use super::scrape::{Health, MetricsView, TickerSession};

/// Length of the sliding window of events/s, seconds; ≥ 1.
pub const RATE_WINDOW_S: u64 = 5;

const NS_PER_S: u64 = 1_000_000_000;

/// Events per second over the last [`RATE_WINDOW_S`] seconds, counted in one-second buckets.
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    /// `(second, events)`: slot `i` holds a second `s` with `s % RATE_WINDOW_S == i`. A slot
    /// whose second is outside the window counts nothing when read.
    slots: [(u64, u64); RATE_WINDOW_S as usize],
}

impl RateWindow {
    /// Counts one event at `now_ns`.
    pub fn record(&mut self, now_ns: u64) {
        let s = now_ns / NS_PER_S;
        let slot = &mut self.slots[(s % RATE_WINDOW_S) as usize];
        if slot.0 != s {
            *slot = (s, 0);
        }
        slot.1 += 1;
    }

    /// Events per second at `now_ns`: the events of the window's seconds (the current one
    /// included, so far) over the time they span, counted from `since_ns` at the earliest (when
    /// counting started) and over at least one second (so a first burst does not read as a
    /// huge rate).
    pub fn per_second(&self, now_ns: u64, since_ns: u64) -> f64 {
        let s = now_ns / NS_PER_S;
        let first = s.saturating_sub(RATE_WINDOW_S - 1);
        let events: u64 = self
            .slots
            .iter()
            .filter(|(sec, _)| (first..=s).contains(sec))
            .map(|(_, n)| n)
            .sum();
        let start = (first * NS_PER_S).max(since_ns);
        let span_ns = now_ns.saturating_sub(start).max(NS_PER_S);
        events as f64 * NS_PER_S as f64 / span_ns as f64
    }
}

/// One instrument as `top` knows it.
#[derive(Debug, Clone)]
pub struct Instrument {
    /// Id from its InstrumentDef.
    pub id: InstrumentId,
    /// Venue name.
    pub venue: String,
    /// Venue symbol.
    pub symbol: String,
    /// Price of the latest trade (cached or live); [`ABSENT`] before the first.
    pub last_price: i64,
    /// Aggressor side of the latest trade.
    pub last_side: Side,
    /// Best bid of the latest quote; [`ABSENT`] when none or the side is empty.
    pub bid: i64,
    /// Best ask of the latest quote; [`ABSENT`] when none or the side is empty.
    pub ask: i64,
    /// Sum of the sizes of the live trades seen since `top` started (cached replays excluded);
    /// always ≥ 0.
    pub live_volume: i128,
    /// The relay's session statistics (`/v1/ticker`), once read.
    pub session: Option<TickerSession>,
    /// Live market-data events (trade, quote, book) seen.
    pub events: u64,
    /// Live events over time.
    rate: RateWindow,
    /// When this instrument was first seen (`now_ns` of that call): rates count from here.
    since_ns: u64,
}

impl Instrument {
    /// Ask − bid, when both sides are there.
    pub fn spread(&self) -> Option<i64> {
        if self.bid == ABSENT || self.ask == ABSENT {
            return None;
        }
        self.ask.checked_sub(self.bid)
    }

    /// Spread relative to the mid price, in basis points.
    pub fn spread_bps(&self) -> Option<f64> {
        let spread = self.spread()?;
        let mid = (self.bid as f64 + self.ask as f64) / 2.0;
        (mid > 0.0).then(|| spread as f64 / mid * 10_000.0)
    }

    /// The volume shown: the relay's session volume when read, else the live volume.
    pub fn volume(&self) -> (i128, VolumeSource) {
        match self.session {
            Some(s) => (s.volume, VolumeSource::RelaySession),
            None => (self.live_volume, VolumeSource::SinceTopStarted),
        }
    }
}

/// Where a shown volume comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeSource {
    /// The relay's session statistics: every trade since the relay started.
    RelaySession,
    /// Live trades `top` has seen itself.
    SinceTopStarted,
}

/// State of one of `top`'s connections to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not yet answered.
    Connecting,
    /// Connected (socket) or last request answered (HTTP).
    Up,
    /// Failed; the reason, as reported.
    Down(String),
    /// Not configured (HTTP off and no `--http`).
    Disabled,
}

/// The latest status event of a venue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueStatus {
    /// Venue name.
    pub venue: String,
    /// What happened.
    pub code: StatusCode,
    /// The count that goes with it.
    pub count: u64,
    /// When it arrived (`now_ns` of [`Model::apply`]).
    pub at_ns: u64,
}

/// Previous reading of a feed's relayed-events counter, for its rate.
#[derive(Debug, Clone, Copy)]
struct CounterReading {
    value: u64,
    at_ns: u64,
}

/// Everything `top` knows. See the module documentation.
#[derive(Debug)]
pub struct Model {
    /// Where the frames come from, for the header (the socket path).
    relay_label: String,
    /// Where the scrapes come from (`http://host:port`), `None` without HTTP.
    http_label: Option<String>,
    /// Relay socket state.
    relay: LinkState,
    /// HTTP state.
    http: LinkState,
    /// Instruments in the order they were defined.
    instruments: Vec<Instrument>,
    /// id → index in `instruments`; always consistent with it.
    by_id: FxHashMap<InstrumentId, usize>,
    /// Latest status event per venue, in order of first appearance.
    statuses: Vec<VenueStatus>,
    /// Frames received over the socket since start (every type, cached included).
    frames: u64,
    /// Latest `/health`, if any was read.
    health: Option<Health>,
    /// Latest `/metrics` view, if any was read.
    metrics: Option<MetricsView>,
    /// Per feed: previous relayed-events reading and the rate computed from the last two.
    feed_rates: FxHashMap<String, (CounterReading, Option<f64>)>,
}

impl Model {
    /// An empty model for the relay at `relay_label` (socket path), scraped at `http_label`
    /// (`None`: no HTTP, the feed, queue and latency tables stay empty).
    pub fn new(relay_label: &str, http_label: Option<&str>) -> Self {
        Model {
            relay_label: relay_label.to_owned(),
            http_label: http_label.map(str::to_owned),
            relay: LinkState::Connecting,
            http: match http_label {
                Some(_) => LinkState::Connecting,
                None => LinkState::Disabled,
            },
            instruments: Vec::new(),
            by_id: FxHashMap::default(),
            statuses: Vec::new(),
            frames: 0,
            health: None,
            metrics: None,
            feed_rates: FxHashMap::default(),
        }
    }

    /// Records the state of the relay socket connection.
    pub fn set_relay(&mut self, state: LinkState) {
        self.relay = state;
    }

    /// Records that an HTTP scrape failed. What the last one said is forgotten: a feed table
    /// showing "subscribed" for a relay that no longer answers would mislead.
    pub fn set_http_error(&mut self, error: String) {
        self.http = LinkState::Down(error);
        self.health = None;
        self.metrics = None;
    }

    /// Every instrument known, in definition order.
    pub fn instruments(&self) -> &[Instrument] {
        &self.instruments
    }

    /// `(venue, symbol)` of every instrument, for the poller's `/v1/ticker` requests.
    pub fn instrument_names(&self) -> Vec<(String, String)> {
        self.instruments
            .iter()
            .map(|i| (i.venue.clone(), i.symbol.clone()))
            .collect()
    }

    /// Every venue seen (instruments and feeds), sorted: the choices of the venue filter.
    pub fn venues(&self) -> Vec<String> {
        let mut v: Vec<String> = self.instruments.iter().map(|i| i.venue.clone()).collect();
        if let Some(h) = &self.health {
            v.extend(h.feeds.iter().map(|f| f.venue.clone()));
        }
        v.sort();
        v.dedup();
        v
    }

    fn index_for(&mut self, id: InstrumentId, venue: &str, symbol: &str, now_ns: u64) -> usize {
        if let Some(&i) = self.by_id.get(&id) {
            return i;
        }
        let i = self.instruments.len();
        self.instruments.push(Instrument {
            id,
            venue: venue.to_owned(),
            symbol: symbol.to_owned(),
            last_price: ABSENT,
            last_side: Side::Unknown,
            bid: ABSENT,
            ask: ABSENT,
            live_volume: 0,
            session: None,
            events: 0,
            rate: RateWindow::default(),
            since_ns: now_ns,
        });
        self.by_id.insert(id, i);
        i
    }

    /// Folds one received frame in at `now_ns`. Frames replayed from the relay's cache
    /// ([`flags::CACHED`]) set prices but are not counted as events or volume. A frame that
    /// cannot be decoded is counted and otherwise ignored.
    pub fn apply(&mut self, rx: &Received<'_>, now_ns: u64) {
        self.frames += 1;
        self.relay = LinkState::Up;
        let h = rx.frame.header;
        let Ok(msg) = rx.frame.message() else {
            return;
        };
        if let Message::Status { venue, status } = msg {
            let s = VenueStatus {
                venue: venue.to_owned(),
                code: status.code,
                count: status.count,
                at_ns: now_ns,
            };
            match self.statuses.iter_mut().find(|v| v.venue == venue) {
                Some(slot) => *slot = s,
                None => self.statuses.push(s),
            }
            return;
        }
        let Some(name) = rx.instrument else {
            return;
        };
        let i = self.index_for(h.instrument_id, &name.venue, &name.symbol, now_ns);
        let inst = &mut self.instruments[i];
        let live = h.flags & flags::CACHED == 0;
        match msg {
            Message::Trade(t) => {
                inst.last_price = t.price;
                inst.last_side = t.side;
                if live && t.size != ABSENT && t.size > 0 {
                    inst.live_volume += i128::from(t.size);
                }
            }
            Message::Quote(q) => {
                inst.bid = q.bid_price;
                inst.ask = q.ask_price;
            }
            Message::Book(_) => {}
            Message::InstrumentDef { .. }
            | Message::Mark { .. }
            | Message::Liquidation { .. }
            | Message::OpenInterest { .. }
            | Message::Bar(_)
            | Message::Heartbeat
            | Message::Status { .. }
            | Message::Unknown(_) => return,
        }
        if live {
            inst.events += 1;
            inst.rate.record(now_ns);
        }
    }

    /// Records a `/health` report.
    pub fn set_health(&mut self, health: Health) {
        self.http = LinkState::Up;
        self.health = Some(health);
    }

    /// Records a `/metrics` view read at `now_ns`; feeds' events/s come from the difference of
    /// their relayed-events counters between two views.
    pub fn set_metrics(&mut self, metrics: MetricsView, now_ns: u64) {
        self.http = LinkState::Up;
        for f in &metrics.feeds {
            let Some(value) = f.relayed_events else {
                continue;
            };
            let now = CounterReading {
                value,
                at_ns: now_ns,
            };
            let rate = match self.feed_rates.get(&f.feed) {
                Some((prev, _)) if now_ns > prev.at_ns && value >= prev.value => Some(
                    (value - prev.value) as f64 * NS_PER_S as f64 / (now_ns - prev.at_ns) as f64,
                ),
                // First reading, or the relay restarted (counter went back): no rate yet.
                _ => None,
            };
            self.feed_rates.insert(f.feed.clone(), (now, rate));
        }
        self.metrics = Some(metrics);
    }

    /// Records the relay's session statistics of one instrument.
    pub fn set_session(&mut self, venue: &str, symbol: &str, session: TickerSession) {
        if let Some(i) = self
            .instruments
            .iter_mut()
            .find(|i| i.venue == venue && i.symbol == symbol)
        {
            i.session = Some(session);
        }
    }

    /// What to draw at `now_ns` with the user's `view`.
    pub fn screen(&self, view: &ViewState, now_ns: u64) -> Screen {
        let shown = |venue: &str| view.venue.as_deref().is_none_or(|v| v == venue);
        let mut instruments: Vec<InstrumentRow> = self
            .instruments
            .iter()
            .filter(|i| shown(&i.venue))
            .map(|i| {
                let (volume, volume_source) = i.volume();
                InstrumentRow {
                    venue: i.venue.clone(),
                    symbol: i.symbol.clone(),
                    last_price: i.last_price,
                    last_side: i.last_side,
                    bid: i.bid,
                    ask: i.ask,
                    spread: i.spread(),
                    spread_bps: i.spread_bps(),
                    volume,
                    volume_source,
                    events_per_s: i.rate.per_second(now_ns, i.since_ns),
                }
            })
            .collect();
        sort_rows(&mut instruments, view.sort);
        if view.reversed {
            instruments.reverse();
        }

        let status_of = |venue: &str| {
            self.statuses
                .iter()
                .find(|s| s.venue == venue)
                .map(|s| LastStatus {
                    code: s.code,
                    count: s.count,
                    age_ns: now_ns.saturating_sub(s.at_ns),
                })
        };
        let feeds = self
            .health
            .iter()
            .flat_map(|h| &h.feeds)
            .filter(|f| shown(&f.venue))
            .map(|f| FeedRow {
                feed: f.feed.clone(),
                venue: f.venue.clone(),
                state: FeedState::of(f.connected, f.subscribed, f.stale),
                last_message_age_ms: f.last_message_age_ms,
                queue_saturation: f.queue_saturation.clone(),
                events_per_s: self.feed_rates.get(&f.feed).and_then(|(_, r)| *r),
                last_status: status_of(&f.venue),
            })
            .collect();
        let series = || {
            self.metrics
                .iter()
                .flat_map(|m| &m.feeds)
                .filter(|f| shown(&f.venue))
        };
        let queues = series()
            .filter_map(|f| {
                Some(QueueRow {
                    feed: f.feed.clone(),
                    venue: f.venue.clone(),
                    depth: f.queue_depth?,
                    capacity: f.queue_capacity?,
                    high_water: f.queue_high_water,
                    level: f.saturation_level,
                })
            })
            .collect();
        let latency = series()
            .map(|f| LatencyRow {
                feed: f.feed.clone(),
                venue: f.venue.clone(),
                quantiles_s: f.latency_s,
                count: f.latency_count,
            })
            .collect();
        Screen {
            relay_label: self.relay_label.clone(),
            relay: self.relay.clone(),
            frames: self.frames,
            http_label: self.http_label.clone(),
            http: self.http.clone(),
            subscribers: self.health.as_ref().map(|h| h.subscribers),
            sort: view.sort,
            reversed: view.reversed,
            venue: view.venue.clone(),
            instruments_total: self.instruments.len(),
            instruments,
            feeds,
            queues,
            latency,
        }
    }
}

/// Sorts by `key` in its natural direction (symbol A→Z, events/s and volume high→low, spread
/// tight→wide with no spread last); ties by symbol, then venue.
fn sort_rows(rows: &mut [InstrumentRow], key: SortKey) {
    let by_name = |a: &InstrumentRow, b: &InstrumentRow| {
        a.symbol.cmp(&b.symbol).then_with(|| a.venue.cmp(&b.venue))
    };
    rows.sort_by(|a, b| {
        let primary = match key {
            SortKey::Symbol => std::cmp::Ordering::Equal,
            SortKey::EventRate => b.events_per_s.total_cmp(&a.events_per_s),
            SortKey::Volume => b.volume.cmp(&a.volume),
            SortKey::Spread => match (a.spread_bps, b.spread_bps) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            },
        };
        primary.then_with(|| by_name(a, b))
    });
}

// ---------------------------------------------------------------------------------------------
// The user's view.

/// Instrument table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Symbol, A→Z.
    Symbol,
    /// Live events per second, busiest first.
    #[default]
    EventRate,
    /// Volume, largest first.
    Volume,
    /// Relative spread (bps), tightest first; instruments without a two-sided quote last.
    Spread,
}

impl SortKey {
    /// The key after this one (the `s` key cycles through them).
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Symbol => SortKey::EventRate,
            SortKey::EventRate => SortKey::Volume,
            SortKey::Volume => SortKey::Spread,
            SortKey::Spread => SortKey::Symbol,
        }
    }

    /// Name shown in the header.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Symbol => "symbol",
            SortKey::EventRate => "events/s",
            SortKey::Volume => "volume",
            SortKey::Spread => "spread",
        }
    }
}

/// What a key press asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave `top`.
    Quit,
    /// Next sort key.
    CycleSort,
    /// Reverse the order.
    ReverseSort,
    /// Next venue filter (all → each venue → all).
    CycleVenue,
}

/// The user's choices: how the tables are sorted and filtered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewState {
    /// Instrument order.
    pub sort: SortKey,
    /// Order reversed.
    pub reversed: bool,
    /// Only this venue (every table); `None`: all.
    pub venue: Option<String>,
}

impl ViewState {
    /// Applies an action; `venues` are the filter's choices ([`Model::venues`]). `Quit` changes
    /// nothing here.
    pub fn apply(&mut self, action: Action, venues: &[String]) {
        match action {
            Action::Quit => {}
            Action::CycleSort => {
                self.sort = self.sort.next();
                self.reversed = false;
            }
            Action::ReverseSort => self.reversed = !self.reversed,
            Action::CycleVenue => {
                self.venue = match &self.venue {
                    None => venues.first().cloned(),
                    Some(v) => venues
                        .iter()
                        .position(|x| x == v)
                        .and_then(|i| venues.get(i + 1))
                        .cloned(),
                };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What is drawn.

/// One row of the instrument table.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentRow {
    /// Venue name.
    pub venue: String,
    /// Venue symbol.
    pub symbol: String,
    /// Latest trade price; [`ABSENT`] before the first.
    pub last_price: i64,
    /// Aggressor side of the latest trade.
    pub last_side: Side,
    /// Best bid; [`ABSENT`] when none.
    pub bid: i64,
    /// Best ask; [`ABSENT`] when none.
    pub ask: i64,
    /// Ask − bid, exact, when both are there.
    pub spread: Option<i64>,
    /// Spread over mid, basis points.
    pub spread_bps: Option<f64>,
    /// Volume, fixed-point 1e-8.
    pub volume: i128,
    /// Where `volume` comes from.
    pub volume_source: VolumeSource,
    /// Live events per second over the last [`RATE_WINDOW_S`] seconds.
    pub events_per_s: f64,
}

/// Connection state of a feed, as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedState {
    /// Connected and data flowing.
    Subscribed,
    /// Connected, no data yet on this connection.
    Connected,
    /// No data for longer than its stale limit.
    Stale,
    /// Not connected.
    Disconnected,
}

impl FeedState {
    fn of(connected: bool, subscribed: bool, stale: bool) -> FeedState {
        match (connected, stale, subscribed) {
            (false, _, _) => FeedState::Disconnected,
            (true, true, _) => FeedState::Stale,
            (true, false, true) => FeedState::Subscribed,
            (true, false, false) => FeedState::Connected,
        }
    }

    /// Name shown in the table.
    pub fn name(self) -> &'static str {
        match self {
            FeedState::Subscribed => "subscribed",
            FeedState::Connected => "connected",
            FeedState::Stale => "stale",
            FeedState::Disconnected => "disconnected",
        }
    }
}

/// The latest status event of a feed's venue, as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastStatus {
    /// What happened.
    pub code: StatusCode,
    /// Its count.
    pub count: u64,
    /// How long ago, ns.
    pub age_ns: u64,
}

/// One row of the feed table.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRow {
    /// Feed name.
    pub feed: String,
    /// Venue name.
    pub venue: String,
    /// Connection state.
    pub state: FeedState,
    /// Milliseconds since its last data message; `None` before the first.
    pub last_message_age_ms: Option<u64>,
    /// `healthy`, `degraded`, `critical`.
    pub queue_saturation: String,
    /// Relayed events per second between the last two scrapes.
    pub events_per_s: Option<f64>,
    /// Latest status event of the feed's venue seen on the socket.
    pub last_status: Option<LastStatus>,
}

/// One row of the queue table.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    /// Feed name.
    pub feed: String,
    /// Venue name.
    pub venue: String,
    /// Frames in the queue.
    pub depth: u64,
    /// Capacity, frames.
    pub capacity: u64,
    /// Deepest since the relay started.
    pub high_water: Option<u64>,
    /// 0 healthy, 1 degraded, 2 critical.
    pub level: Option<u64>,
}

impl QueueRow {
    /// Depth over capacity, percent (0 for a zero capacity).
    pub fn fill_percent(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.depth as f64 * 100.0 / self.capacity as f64
        }
    }
}

/// One row of the latency table.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    /// Feed name.
    pub feed: String,
    /// Venue name.
    pub venue: String,
    /// p50, p99, p99.9 of venue read → subscriber write, seconds; `None` before any sample.
    pub quantiles_s: [Option<f64>; 3],
    /// Frames measured.
    pub count: Option<u64>,
}

/// Everything one redraw shows: computed by [`Model::screen`], drawn by
/// [`ui::draw`](super::ui::draw).
#[derive(Debug, Clone, PartialEq)]
pub struct Screen {
    /// The relay socket path.
    pub relay_label: String,
    /// The socket connection.
    pub relay: LinkState,
    /// Frames received so far.
    pub frames: u64,
    /// `http://host:port`, when scraping.
    pub http_label: Option<String>,
    /// The HTTP scrapes.
    pub http: LinkState,
    /// Subscribers connected to the relay (from `/health`).
    pub subscribers: Option<u64>,
    /// Instrument order.
    pub sort: SortKey,
    /// Order reversed.
    pub reversed: bool,
    /// Venue filter.
    pub venue: Option<String>,
    /// Instruments known (before the filter).
    pub instruments_total: usize,
    /// Instrument rows, filtered and sorted.
    pub instruments: Vec<InstrumentRow>,
    /// Feed rows, filtered.
    pub feeds: Vec<FeedRow>,
    /// Queue rows, filtered.
    pub queues: Vec<QueueRow>,
    /// Latency rows, filtered.
    pub latency: Vec<LatencyRow>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cli::top::scrape::{FeedHealth, FeedSeries};
    use crate::market::event::{Quote, Status, Trade};
    use crate::market::instrument::{instrument_id, InstrumentName};
    use crate::wire::protocol::{self, FrameBuf, Meta};

    pub(crate) const S: u64 = NS_PER_S;

    /// Builds frames the way the relay sends them and feeds them to a model.
    pub(crate) struct Feeder {
        buf: FrameBuf,
    }

    impl Feeder {
        pub(crate) fn new() -> Self {
            Feeder {
                buf: FrameBuf::new(),
            }
        }

        fn apply(&self, m: &mut Model, venue: &str, symbol: &str, now_ns: u64) {
            let (frame, _) = protocol::decode_frame(&self.buf).unwrap();
            let name = InstrumentName {
                venue: venue.into(),
                symbol: symbol.into(),
            };
            m.apply(
                &Received {
                    frame,
                    instrument: Some(&name),
                    raw: &self.buf,
                },
                now_ns,
            );
        }

        fn meta(venue: &str, symbol: &str, cached: bool) -> Meta {
            Meta {
                instrument_id: instrument_id(venue, symbol),
                sequence: 1,
                recv_ts_ns: 1,
                flags: if cached { flags::CACHED } else { 0 },
            }
        }

        pub(crate) fn def(&mut self, m: &mut Model, venue: &str, symbol: &str, now_ns: u64) {
            protocol::encode_instrument_def(
                &mut self.buf,
                &Self::meta(venue, symbol, false),
                venue,
                symbol,
            );
            self.apply(m, venue, symbol, now_ns);
        }

        #[allow(clippy::too_many_arguments)]
        pub(crate) fn trade(
            &mut self,
            m: &mut Model,
            venue: &str,
            symbol: &str,
            price: &str,
            size: &str,
            cached: bool,
            now_ns: u64,
        ) {
            let t = Trade {
                price: crate::market::fixed::parse(price).unwrap(),
                size: crate::market::fixed::parse(size).unwrap(),
                side: Side::Buy,
                trade_id: None,
                exchange_ts_ns: None,
            };
            protocol::encode_trade(&mut self.buf, &Self::meta(venue, symbol, cached), &t);
            self.apply(m, venue, symbol, now_ns);
        }

        pub(crate) fn quote(
            &mut self,
            m: &mut Model,
            venue: &str,
            symbol: &str,
            bid: &str,
            ask: &str,
            now_ns: u64,
        ) {
            let price = |s: &str| match s {
                "" => ABSENT,
                s => crate::market::fixed::parse(s).unwrap(),
            };
            let q = Quote {
                bid_price: price(bid),
                bid_size: 100_000_000,
                ask_price: price(ask),
                ask_size: 100_000_000,
                exchange_ts_ns: None,
            };
            protocol::encode_quote(&mut self.buf, &Self::meta(venue, symbol, false), &q);
            self.apply(m, venue, symbol, now_ns);
        }

        pub(crate) fn status(&mut self, m: &mut Model, venue: &str, code: StatusCode, now: u64) {
            let s = Status {
                code,
                count: 3,
                detail: "",
            };
            protocol::encode_status(&mut self.buf, &Meta::default(), venue, &s);
            let (frame, _) = protocol::decode_frame(&self.buf).unwrap();
            m.apply(
                &Received {
                    frame,
                    instrument: None,
                    raw: &self.buf,
                },
                now,
            );
        }
    }

    /// Three instruments on two venues with distinct rates, volumes and spreads:
    /// ETHUSDT (binance): 30 events, volume 3, spread 0.01 on ~2684 (0.04 bps)
    /// BTC-USD (coinbase): 11 events, volume 5, spread 1 on ~61000 (0.16 bps)
    /// XBT/USD (kraken_v1): 20 events, volume 0.5, no ask.
    pub(crate) fn sample_model() -> Model {
        let mut m = Model::new("/tmp/relay.sock", Some("http://127.0.0.1:9464"));
        let mut f = Feeder::new();
        let t0 = 100 * S;
        f.def(&mut m, "binance", "ETHUSDT", t0);
        f.def(&mut m, "coinbase", "BTC-USD", t0);
        f.def(&mut m, "kraken_v1", "XBT/USD", t0);
        for i in 0..10 {
            let t = t0 + i * S / 10;
            f.trade(&mut m, "binance", "ETHUSDT", "2683.8", "0.1", false, t);
            f.quote(&mut m, "binance", "ETHUSDT", "2683.8", "2683.81", t);
            f.trade(&mut m, "binance", "ETHUSDT", "2683.81", "0.2", false, t);
            f.trade(&mut m, "coinbase", "BTC-USD", "61000.5", "0.5", false, t);
            f.trade(&mut m, "kraken_v1", "XBT/USD", "60999.9", "0.05", false, t);
            f.quote(&mut m, "kraken_v1", "XBT/USD", "60999.9", "", t);
        }
        f.quote(&mut m, "coinbase", "BTC-USD", "61000", "61001", t0 + S);
        m
    }

    fn symbols(s: &Screen) -> Vec<&str> {
        s.instruments.iter().map(|r| r.symbol.as_str()).collect()
    }

    #[test]
    fn rate_window_counts_the_last_seconds() {
        let mut r = RateWindow::default();
        // 10 events a second for 10 seconds.
        for i in 0..100 {
            r.record(10 * S + i * S / 10);
        }
        // At 20 s: the window is 16..=20 s; 16..20 had 10 each, 20 none so far: 40 over 4 s
        // plus the part of second 20 elapsed (0) → 4 s.
        assert_eq!(r.per_second(20 * S, 0), 10.0);
        // Half a second later nothing more arrived: the same 40 events over 4.5 s.
        assert!((r.per_second(20 * S + S / 2, 0) - 40.0 / 4.5).abs() < 1e-9);
        // A second later second 16 has left the window: 30 events over 4 s.
        assert_eq!(r.per_second(21 * S, 0), 7.5);
        // Long after: nothing in the window.
        assert_eq!(r.per_second(100 * S, 0), 0.0);
    }

    #[test]
    fn rate_window_counts_from_its_start_and_over_at_least_a_second() {
        let mut r = RateWindow::default();
        for i in 0..20 {
            r.record(50 * S + i * S / 10);
        }
        // Started at 50 s, read at 52 s: 20 events over 2 s, not over the 5 s window.
        assert_eq!(r.per_second(52 * S, 50 * S), 10.0);
        // A burst read right away counts over one second.
        let mut b = RateWindow::default();
        for _ in 0..5 {
            b.record(7 * S);
        }
        assert_eq!(b.per_second(7 * S + 1, 7 * S), 5.0);
    }

    #[test]
    fn folds_trades_quotes_and_cached_frames() {
        let mut m = Model::new("sock", None);
        let mut f = Feeder::new();
        f.def(&mut m, "binance", "ETHUSDT", S);
        // A cached trade (late joiner) sets the price but is not an event or volume.
        f.trade(&mut m, "binance", "ETHUSDT", "2683.8", "1", true, S);
        let i = &m.instruments()[0];
        assert_eq!(i.last_price, 268_380_000_000);
        assert_eq!((i.events, i.live_volume), (0, 0));
        f.trade(&mut m, "binance", "ETHUSDT", "2683.9", "0.002", false, S);
        f.trade(&mut m, "binance", "ETHUSDT", "2684", "0.5", false, S);
        f.quote(&mut m, "binance", "ETHUSDT", "2683.99", "2684.01", S);
        let i = &m.instruments()[0];
        assert_eq!(i.last_price, 268_400_000_000);
        assert_eq!(i.live_volume, 50_200_000);
        assert_eq!(i.events, 3);
        assert_eq!(i.spread(), Some(2_000_000));
        assert_eq!(
            i.volume(),
            (50_200_000, VolumeSource::SinceTopStarted),
            "live volume until the relay's session volume is read"
        );
        m.set_session(
            "binance",
            "ETHUSDT",
            TickerSession {
                trade_count: 9,
                volume: 7,
            },
        );
        assert_eq!(m.instruments()[0].volume(), (7, VolumeSource::RelaySession));
        assert_eq!(m.screen(&ViewState::default(), S).frames, 5);
    }

    #[test]
    fn a_one_sided_quote_has_no_spread() {
        let m = sample_model();
        let kraken = m
            .instruments()
            .iter()
            .find(|i| i.symbol == "XBT/USD")
            .unwrap();
        assert_eq!(kraken.ask, ABSENT);
        assert_eq!(kraken.spread(), None);
        assert_eq!(kraken.spread_bps(), None);
    }

    #[test]
    fn sorting_orders_by_each_key_and_reverses() {
        let m = sample_model();
        let now = 101 * S;
        let mut v = ViewState::default();
        assert_eq!(v.sort, SortKey::EventRate);
        assert_eq!(
            symbols(&m.screen(&v, now)),
            ["ETHUSDT", "XBT/USD", "BTC-USD"]
        );
        let venues = m.venues();
        v.apply(Action::CycleSort, &venues);
        assert_eq!(v.sort, SortKey::Volume);
        assert_eq!(
            symbols(&m.screen(&v, now)),
            ["BTC-USD", "ETHUSDT", "XBT/USD"]
        );
        v.apply(Action::CycleSort, &venues);
        assert_eq!(v.sort, SortKey::Spread);
        assert_eq!(
            symbols(&m.screen(&v, now)),
            ["ETHUSDT", "BTC-USD", "XBT/USD"],
            "tightest first, no spread last"
        );
        v.apply(Action::CycleSort, &venues);
        assert_eq!(v.sort, SortKey::Symbol);
        assert_eq!(
            symbols(&m.screen(&v, now)),
            ["BTC-USD", "ETHUSDT", "XBT/USD"]
        );
        v.apply(Action::ReverseSort, &venues);
        assert_eq!(
            symbols(&m.screen(&v, now)),
            ["XBT/USD", "ETHUSDT", "BTC-USD"]
        );
        v.apply(Action::CycleSort, &venues);
        assert!(!v.reversed, "a new key starts in its natural order");
        v.apply(Action::Quit, &venues);
        assert_eq!(v.sort, SortKey::EventRate);
    }

    #[test]
    fn venue_filter_cycles_through_venues_and_back_to_all() {
        let m = sample_model();
        let venues = m.venues();
        assert_eq!(venues, ["binance", "coinbase", "kraken_v1"]);
        let mut v = ViewState::default();
        let mut seen = Vec::new();
        for _ in 0..4 {
            v.apply(Action::CycleVenue, &venues);
            let s = m.screen(&v, 101 * S);
            seen.push((v.venue.clone(), symbols(&s).len()));
            assert_eq!(s.instruments_total, 3);
            if let Some(venue) = &v.venue {
                assert!(s.instruments.iter().all(|r| &r.venue == venue));
            }
        }
        assert_eq!(
            seen,
            [
                (Some("binance".to_owned()), 1),
                (Some("coinbase".to_owned()), 1),
                (Some("kraken_v1".to_owned()), 1),
                (None, 3),
            ]
        );
        // A venue that disappeared from the choices falls back to all.
        let mut gone = ViewState {
            venue: Some("bitstamp".into()),
            ..ViewState::default()
        };
        gone.apply(Action::CycleVenue, &venues);
        assert_eq!(gone.venue, None);
    }

    pub(crate) fn health() -> Health {
        let feed = |name: &str, venue: &str, connected, subscribed, stale| FeedHealth {
            feed: name.into(),
            venue: venue.into(),
            connected,
            subscribed,
            stale,
            last_message_age_ms: Some(1500),
            stale_after_ms: 30_000,
            queue_saturation: "healthy".into(),
        };
        Health {
            status: "degraded".into(),
            uptime_s: 10.0,
            subscribers: 2,
            feeds: vec![
                feed("binance", "binance", true, true, false),
                feed("coinbase", "coinbase", true, false, false),
                feed("kraken_v1", "kraken_v1", false, false, true),
            ],
        }
    }

    pub(crate) fn metrics(relayed: u64) -> MetricsView {
        MetricsView {
            feeds: vec![
                FeedSeries {
                    feed: "binance".into(),
                    venue: "binance".into(),
                    queue_depth: Some(1024),
                    queue_capacity: Some(4096),
                    queue_high_water: Some(2000),
                    saturation_level: Some(0),
                    latency_s: [Some(0.000_012_3), Some(0.000_45), Some(0.0021)],
                    latency_count: Some(5000),
                    relayed_events: Some(relayed),
                },
                FeedSeries {
                    feed: "kraken_v1".into(),
                    venue: "kraken_v1".into(),
                    queue_capacity: Some(4096),
                    ..FeedSeries::default()
                },
            ],
        }
    }

    #[test]
    fn feeds_queues_and_latency_come_from_the_scrapes() {
        let mut m = sample_model();
        let mut f = Feeder::new();
        f.status(&mut m, "kraken_v1", StatusCode::Gap, 100 * S);
        m.set_health(health());
        m.set_metrics(metrics(1000), 100 * S);
        let s = m.screen(&ViewState::default(), 102 * S);
        assert_eq!(s.subscribers, Some(2));
        let states: Vec<FeedState> = s.feeds.iter().map(|f| f.state).collect();
        assert_eq!(
            states,
            [
                FeedState::Subscribed,
                FeedState::Connected,
                FeedState::Disconnected
            ]
        );
        assert_eq!(s.feeds[0].events_per_s, None, "one reading: no rate yet");
        let last = s.feeds[2].last_status.unwrap();
        assert_eq!(
            (last.code, last.count, last.age_ns),
            (StatusCode::Gap, 3, 2 * S)
        );
        // A queue without a depth reading is not shown.
        assert_eq!(s.queues.len(), 1);
        assert_eq!(s.queues[0].fill_percent(), 25.0);
        assert_eq!(s.latency.len(), 2);
        assert_eq!(s.latency[1].quantiles_s, [None, None, None]);

        m.set_metrics(metrics(3000), 102 * S);
        let s = m.screen(&ViewState::default(), 102 * S);
        assert_eq!(s.feeds[0].events_per_s, Some(1000.0));
        // A counter that went back (relay restarted) gives no rate, not a negative one.
        m.set_metrics(metrics(10), 103 * S);
        let s = m.screen(&ViewState::default(), 103 * S);
        assert_eq!(s.feeds[0].events_per_s, None);

        let v = ViewState {
            venue: Some("kraken_v1".into()),
            ..ViewState::default()
        };
        let s = m.screen(&v, 103 * S);
        assert_eq!(
            (s.feeds.len(), s.queues.len(), s.latency.len()),
            (1, 0, 1),
            "the venue filter applies to every table"
        );
    }

    #[test]
    fn link_states_follow_the_connections() {
        let mut m = Model::new("sock", None);
        let s = m.screen(&ViewState::default(), 0);
        assert_eq!(
            (s.relay, s.http),
            (LinkState::Connecting, LinkState::Disabled)
        );
        m.set_relay(LinkState::Down("relay closed the connection".into()));
        m.set_http_error("GET x: refused".into());
        let s = m.screen(&ViewState::default(), 0);
        assert_eq!(
            s.relay,
            LinkState::Down("relay closed the connection".into())
        );
        assert_eq!(s.http, LinkState::Down("GET x: refused".into()));
        m.set_health(health());
        m.set_metrics(metrics(1), 0);
        let s = m.screen(&ViewState::default(), 0);
        assert_eq!(s.http, LinkState::Up);
        assert_eq!((s.feeds.len(), s.queues.len()), (3, 1));
        m.set_http_error("GET x: refused".into());
        let s = m.screen(&ViewState::default(), 0);
        assert!(s.feeds.is_empty() && s.queues.is_empty() && s.latency.is_empty());
        assert_eq!(s.subscribers, None);
    }
}
