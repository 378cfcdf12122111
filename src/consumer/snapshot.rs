//! The query snapshot: what the consumer publishes for the query API (`GET /v1/instruments`,
//! `/v1/ticker`, `/v1/bars`, `/v1/book`, answered by the `serve` stage's query handlers on the `http`
//! thread).
//!
//! The consumer owns the live state (cache, bar builders). Every `[http] snapshot_interval_ms` it
//! copies what changed since the last time into [`QueryState`] behind a `parking_lot` mutex it
//! only ever `try_lock`s: when a handler holds the lock, the consumer skips that publish and
//! carries the changes to the next one, so it never waits for the HTTP thread. Handlers hold the
//! lock only to copy out what they answer, and serialize after releasing it. Closed bars are
//! appended to the snapshot's own bounded history (`[bars] history_bars` per interval), so a
//! publish costs what changed, not the whole history.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

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
    /// Closed bars per configured interval (same order), oldest first, bounded.
    pub history: Vec<VecDeque<Bar>>,
    /// The book, for instruments with book frames.
    pub book: Option<BookView>,
}

/// What the consumer publishes; read by the handlers.
#[derive(Debug, Default)]
pub struct QueryState {
    /// Instruments in definition order.
    pub instruments: Vec<InstrumentView>,
    /// (venue, symbol) → index in `instruments`.
    by_name: FxHashMap<(Box<str>, Box<str>), usize>,
    /// id → index in `instruments`.
    by_id: FxHashMap<InstrumentId, usize>,
    /// Bar intervals, ns, in configuration order.
    pub intervals_ns: Vec<u64>,
    /// Closed bars kept per instrument and interval.
    pub history_bars: usize,
    /// Book levels per side kept.
    pub book_depth: usize,
    /// Wall-clock time of the last publish, ns since epoch (0: never).
    pub published_ns: u64,
}

/// Shared handle to the query snapshot.
pub type SharedQuery = Arc<Mutex<QueryState>>;

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
        self.instruments.push(InstrumentView {
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
            history: self.intervals_ns.iter().map(|_| VecDeque::new()).collect(),
            book: None,
        });
        self.by_id.insert(id, i);
        self.by_name.insert((venue.into(), symbol.into()), i);
    }

    /// The instrument with `id`.
    pub fn get_mut(&mut self, id: InstrumentId) -> Option<&mut InstrumentView> {
        let i = *self.by_id.get(&id)?;
        self.instruments.get_mut(i)
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
        self.instruments.get(i)
    }
}
