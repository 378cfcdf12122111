//! The query snapshot: what the consumer publishes for the query API (`GET /v1/instruments`,
//! `/v1/ticker`, `/v1/bars`, `/v1/book`, answered by the `serve` stage's query handlers on the `http`
//! thread).
//!
//! The consumer owns the live state (cache, bar builders). Every `[http] snapshot_interval_ms` it
//! writes what changed since the last time into a new version of [`QueryState`], published
//! through a lock-free [`Publication`]: handlers load the current version and answer from it
//! for as long as they like, and the consumer never waits for them nor skips a publish because of
//! them. A version is cheap to copy: instruments, their closed-bar histories and the name index
//! sit behind `Arc`s shared between versions, and a publish copies only the instruments that
//! changed (and a history only when a bar of it closed). Closed bars are appended to the
//! snapshot's own bounded history (`[bars] history_bars` per interval).

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::base::publication::Publication;
use crate::market::bars::{Bar, SessionStats};
use crate::market::event::{Level, Mark, OpenInterest, Quote, Trade};
use crate::market::instrument::InstrumentId;

/// The top of an instrument's book as last published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookView {
    /// Best first, at most `[http] book_depth` levels.
    pub bids: Vec<Level>,
    /// Best first, at most `[http] book_depth` levels.
    pub asks: Vec<Level>,
    /// Levels the relay's book holds per side (the view may show fewer).
    pub bid_levels: usize,
    /// See `bid_levels`.
    pub ask_levels: usize,
    /// Sequence of the last book frame applied.
    pub sequence: u64,
    /// Receive time of the last book frame, ns since epoch.
    pub recv_ts_ns: u64,
    /// The book may be wrong (lost delta, unrecovered gap) until its next snapshot.
    pub may_be_bad: bool,
}

/// One instrument as the query API sees it.
#[derive(Debug, Clone)]
pub struct InstrumentView {
    /// Id (docs/PROTOCOL.md §8).
    pub id: InstrumentId,
    /// Venue name.
    pub venue: Box<str>,
    /// Venue symbol.
    pub symbol: Box<str>,
    /// Feed that defined it.
    pub feed: Box<str>,
    /// Latest trade and its receive time.
    pub last_trade: Option<(Trade, u64)>,
    /// Latest BBO and its receive time.
    pub quote: Option<(Quote, u64)>,
    /// Latest mark price and funding (derivatives) and its receive time; `None` for spot.
    pub mark: Option<(Mark, u64)>,
    /// Latest open interest (derivatives) and its receive time; `None` for spot.
    pub open_interest: Option<(OpenInterest, u64)>,
    /// Statistics of every trade since the relay started.
    pub session: SessionStats,
    /// The bars still open, one per interval that has one.
    pub open_bars: Vec<Bar>,
    /// Closed bars per configured interval (same order), oldest first, bounded; shared with
    /// the other versions until a bar of that interval closes.
    pub history: Vec<Arc<VecDeque<Bar>>>,
    /// The book, for instruments with book frames.
    pub book: Option<BookView>,
}

/// (venue, symbol) → index in [`QueryState::instruments`].
type NameIndex = FxHashMap<(Box<str>, Box<str>), usize>;

/// What the consumer publishes; read by the handlers. Cloning it copies pointers only.
#[derive(Debug, Default, Clone)]
pub struct QueryState {
    /// Instruments in definition order; each shared with the other versions until it changes.
    pub instruments: Vec<Arc<InstrumentView>>,
    /// (venue, symbol) → index in `instruments`; shared until an instrument is defined.
    by_name: Arc<NameIndex>,
    /// id → index in `instruments`; shared until an instrument is defined.
    by_id: Arc<FxHashMap<InstrumentId, usize>>,
    /// Bar intervals, ns, in configuration order.
    pub intervals_ns: Vec<u64>,
    /// Closed bars kept per instrument and interval.
    pub history_bars: usize,
    /// Book levels per side kept.
    pub book_depth: usize,
    /// Wall-clock time of the last publish, ns since epoch (0: never).
    pub published_ns: u64,
}

/// Shared handle to the query snapshot: loaded by handlers, written by the consumer.
pub type SharedQuery = Arc<Publication<QueryState>>;

impl QueryState {
    /// An empty snapshot for bars of `intervals_ns`, keeping `history_bars` closed bars each
    /// and `book_depth` levels per side.
    pub fn new(intervals_ns: &[u64], history_bars: usize, book_depth: usize) -> Self {
        QueryState {
            intervals_ns: intervals_ns.to_vec(),
            history_bars,
            book_depth,
            ..QueryState::default()
        }
    }

    /// Adds an instrument (no-op when its id is known).
    pub fn define(&mut self, id: InstrumentId, venue: &str, symbol: &str, feed: &str) {
        if self.by_id.contains_key(&id) {
            return;
        }
        let i = self.instruments.len();
        self.instruments.push(Arc::new(InstrumentView {
            id,
            venue: venue.into(),
            symbol: symbol.into(),
            feed: feed.into(),
            last_trade: None,
            quote: None,
            mark: None,
            open_interest: None,
            session: SessionStats::default(),
            open_bars: Vec::new(),
            history: self.intervals_ns.iter().map(|_| Arc::default()).collect(),
            book: None,
        }));
        Arc::make_mut(&mut self.by_id).insert(id, i);
        Arc::make_mut(&mut self.by_name).insert((venue.into(), symbol.into()), i);
    }

    /// The instrument with `id`, copied out of the versions it was shared with.
    pub fn get_mut(&mut self, id: InstrumentId) -> Option<&mut InstrumentView> {
        let i = *self.by_id.get(&id)?;
        self.instruments.get_mut(i).map(Arc::make_mut)
    }

    /// Appends a closed bar to its instrument's history (oldest dropped beyond the bound).
    pub fn push_closed(&mut self, id: InstrumentId, bar: &Bar) {
        let Some(slot) = self.intervals_ns.iter().position(|&n| n == bar.interval_ns) else {
            return;
        };
        let cap = self.history_bars;
        if let Some(v) = self.get_mut(id) {
            if let Some(h) = v.history.get_mut(slot) {
                if cap == 0 {
                    return;
                }
                let h = Arc::make_mut(h);
                if h.len() >= cap {
                    h.pop_front();
                }
                h.push_back(*bar);
            }
        }
    }

    /// The instrument `venue`/`symbol` names, if it has been defined.
    pub fn find(&self, venue: &str, symbol: &str) -> Option<&InstrumentView> {
        let i = *self.by_name.get(&(Box::from(venue), Box::from(symbol)))?;
        self.instruments.get(i).map(|v| &**v)
    }
}
