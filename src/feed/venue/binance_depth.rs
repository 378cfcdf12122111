//! Binance local order books (spot and futures): keeps one exact [`L2Book`] per symbol in step
//! with the `<symbol>@depth` diff stream and REST depth snapshots, and turns them into normalized
//! book events (one snapshot once synced, then one delta per diff) and status events (gap,
//! resync, crossed book).
//!
//! Algorithm: Binance Spot API documentation, "How to manage a local order book correctly"
//! (`web-socket-streams.md`, wording as corrected in binance-spot-api-docs PR #383). In short:
//! buffer the stream's diffs; fetch `GET /api/v3/depth?symbol=…&limit=…`; a snapshot whose
//! `lastUpdateId` precedes the first buffered diff is too old (fetch again); drop the diffs whose
//! `u` ≤ `lastUpdateId`; load the snapshot and apply the rest; from then on a diff with `u` ≤ the
//! book's update id is ignored, a diff with `U` > the book's id + 1 means update ids were lost
//! (re-initialize from a new snapshot), and any other diff is applied (each level carries an
//! absolute quantity; 0 removes it). Three points where this module is more exact than the
//! document's step list:
//! - A snapshot is too old only when `lastUpdateId + 1 < U` of the first buffered diff; the
//!   document's `lastUpdateId < U` also discards a snapshot that ends exactly where the stream starts.
//! - The book is declared synced only once a diff continuing the snapshot has been applied: if the
//!   snapshot is newer than every buffered diff, it waits for the diff that bridges it
//!   ([`SyncState::AwaitingBridge`]), and a diff that jumps past it proves it too old.
//! - The buffer is kept contiguous: a gap inside it restarts the buffer at the new diff (the
//!   older diffs could only ever bridge to a snapshot that would then hit the gap).
//!
//! Futures ([`SyncRule::Futures`]; Binance USD-M / COIN-M "How to manage a local order book
//! correctly") differ: update ids are exchange-wide, so a symbol's ids are not contiguous and each
//! diff carries `pu`, the previous diff's `u`. Diffs with `u` < `lastUpdateId` are dropped; the
//! first applied diff has `U` ≤ `lastUpdateId` ≤ `u`; from then on every diff's `pu` must equal
//! the previous diff's `u`, else a gap (resync of that symbol). Where this module is more exact
//! than the document: the first diff also bridges when `pu` ≤ `lastUpdateId` < `U` (the snapshot
//! falls between two diffs of the symbol, so it holds exactly the state the diff continues), and
//! the snapshot is too old only when the first buffered diff's `pu` > `lastUpdateId`. A gap's
//! count is `pu` − the previous `u` (at least 1): exchange-wide ids, so it bounds the lost
//! updates rather than counting them.
//!
//! A pure state machine: no I/O, no clock. The collector feeds it diffs ([`DepthSync::on_diff`]),
//! REST replies ([`DepthSync::on_snapshot`], [`DepthSync::on_snapshot_failed`]) and reconnects
//! ([`DepthSync::reset`]); when a returned [`Step`] says `fetch_snapshot`, the collector performs
//! the HTTP GET (with its own backoff and rate limit) and delivers the reply. State is per symbol,
//! so a gap on one symbol refetches that symbol only ([`DepthBooks`], in `binance_books.rs`,
//! keys them by symbol).
//!
//! Runs on the Binance collector thread; never blocks, never panics on any input. Once warm it
//! does not allocate per diff: synced diffs are applied and emitted by reference, the buffer and
//! the snapshot scratch vectors keep their high-water capacity, and the buffer is bounded
//! ([`DepthSyncConfig`]).

use std::collections::VecDeque;

pub use super::binance_books::DepthBooks;
use super::Sink;
use crate::market::book::{BookSide, L2Book};
use crate::market::event::{BookUpdate, Event, Level, Status, StatusCode};

/// Default bound on diffs buffered while awaiting a snapshot (1 000 s of `@depth@100ms`).
pub const DEFAULT_MAX_BUFFERED_DIFFS: usize = 10_000;
/// Default bound on price levels (bids + asks of all buffered diffs): 16 MB of [`Level`]s.
pub const DEFAULT_MAX_BUFFERED_LEVELS: usize = 1_000_000;

const GAP_DETAIL: &str = "binance depth: update ids missing between diffs";
const RESYNC_DETAIL: &str = "binance depth: rebuilding the book from a new REST snapshot";
const CROSSED_DETAIL: &str = "binance depth: best bid >= best ask after an update";

/// One parsed `depthUpdate` diff, borrowed from the parser's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthDiff<'a> {
    /// `U`: the first update id the diff covers. A valid diff has `U` ≤ `u`.
    pub first_update_id: u64,
    /// `u`: the final update id the diff covers.
    pub final_update_id: u64,
    /// Changed bid levels, absolute sizes; size 0 removes the price.
    pub bids: &'a [Level],
    /// Changed ask levels, absolute sizes; size 0 removes the price.
    pub asks: &'a [Level],
    /// Event time `E`, ns since epoch.
    pub exchange_ts_ns: Option<u64>,
    /// When the diff was received (the parser's `recv_ts_ns`; 0 when unknown): a diff held in
    /// the buffer reports it at sync ([`DepthSync::drain_released`]), so the collector can count
    /// how long it waited there.
    pub recv_ts_ns: u64,
}

/// Which Binance synchronisation rule a book follows (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SyncRule {
    /// Spot: ids are contiguous per symbol; a diff continues when `U` ≤ last `u` + 1.
    #[default]
    Spot,
    /// USD-M and COIN-M futures: a diff continues when its `pu` equals the previous `u`.
    Futures,
}

/// Bounds on the diff buffer kept while a symbol awaits a snapshot, and the sync rule. Buffer
/// bounds of 0 are treated as 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthSyncConfig {
    /// Spot or futures sequencing. Default [`SyncRule::Spot`].
    pub rule: SyncRule,
    /// Diffs kept at most; beyond it the oldest is evicted. Default [`DEFAULT_MAX_BUFFERED_DIFFS`].
    pub max_buffered_diffs: usize,
    /// Price levels (bids + asks over all buffered diffs) kept at most; beyond it the oldest diffs
    /// are evicted. Default [`DEFAULT_MAX_BUFFERED_LEVELS`].
    pub max_buffered_levels: usize,
}

impl Default for DepthSyncConfig {
    fn default() -> Self {
        DepthSyncConfig {
            rule: SyncRule::Spot,
            max_buffered_diffs: DEFAULT_MAX_BUFFERED_DIFFS,
            max_buffered_levels: DEFAULT_MAX_BUFFERED_LEVELS,
        }
    }
}

/// Where a symbol's book stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncState {
    /// No usable snapshot yet: diffs are buffered.
    AwaitingSnapshot,
    /// A snapshot is loaded but newer than every diff seen; waiting for the diff that continues it.
    AwaitingBridge,
    /// The book is exact as of [`DepthSync::last_update_id`]; every diff is applied and emitted.
    Synced,
}

/// What one input did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The diff was buffered while awaiting a snapshot; `evicted` older diffs were dropped to make
    /// room (it counts the diff itself when it alone exceeds `max_buffered_levels`).
    Buffered {
        /// Diffs evicted by this call.
        evicted: usize,
    },
    /// The diff was applied to a synced book and emitted as a delta.
    Applied,
    /// This input completed a sync: a snapshot of the local book was emitted.
    Synced,
    /// The snapshot was loaded but every buffered diff was older: waiting for the diff that
    /// continues it.
    AwaitingBridge,
    /// The diff was already covered (`u` ≤ the last update id held): ignored.
    Stale,
    /// Update ids were lost before this diff (`missing` of them). On a synced book a
    /// [`StatusCode::Resync`] follows and a snapshot is requested; while buffering, the buffer
    /// restarts at this diff.
    Gap {
        /// Update ids between the last one held and this diff's `U`.
        missing: u64,
    },
    /// The snapshot (or the one awaiting its bridge) is older than the stream: discarded.
    SnapshotTooOld,
    /// A snapshot arrived while none was awaited: ignored.
    SnapshotUnexpected,
    /// The collector reported that the snapshot fetch failed.
    SnapshotFailed,
    /// The diff has `U` > `u`: ignored and counted.
    Invalid,
    /// The state machine was reset (reconnect).
    Reset,
    /// [`DepthBooks`] only: the symbol is not tracked. Counted.
    UnknownSymbol,
}

/// The result of one input: what happened, and whether the collector must fetch a REST snapshot.
#[must_use = "a Step may ask the collector to fetch a REST snapshot"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Step {
    /// What the input did.
    pub outcome: Outcome,
    /// True: fetch `GET /api/v3/depth` for this symbol (as soon as the collector's backoff and
    /// rate limit allow) and deliver the reply with `on_snapshot` or the failure with
    /// `on_snapshot_failed`. Never true while a fetch is already outstanding.
    pub fetch_snapshot: bool,
}

impl Step {
    const fn only(outcome: Outcome) -> Step {
        Step {
            outcome,
            fetch_snapshot: false,
        }
    }
}

/// Per-symbol counters; all only ever increase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepthSyncStats {
    /// Diffs applied to the book (buffered ones at sync included).
    pub diffs_applied: u64,
    /// Diffs emitted as deltas (applied to a synced book).
    pub diffs_emitted: u64,
    /// Diffs stored in the buffer while awaiting a snapshot.
    pub diffs_buffered: u64,
    /// Diffs ignored because the update ids they cover were already held.
    pub diffs_stale: u64,
    /// Diffs that started before the last id held but ended after it (applied; Binance spot does
    /// not send them in practice).
    pub diffs_overlapping: u64,
    /// Diffs with `U` > `u`, ignored.
    pub diffs_invalid: u64,
    /// Diffs evicted from a full buffer.
    pub buffer_evictions: u64,
    /// Gaps seen in the stream (synced or buffering).
    pub gaps: u64,
    /// Update ids lost over all gaps.
    pub missing_update_ids: u64,
    /// Times a synced book was discarded to be rebuilt (gap or reset).
    pub resyncs: u64,
    /// Snapshot fetches asked of the collector.
    pub snapshots_requested: u64,
    /// Snapshot fetches the collector reported failed.
    pub snapshot_failures: u64,
    /// Snapshots loaded into the book.
    pub snapshots_loaded: u64,
    /// Snapshots discarded as older than the stream.
    pub snapshots_too_old: u64,
    /// Snapshots delivered while none was awaited.
    pub snapshots_unexpected: u64,
    /// Times the book became synced (= snapshot events emitted).
    pub syncs: u64,
    /// Crossed-book episodes (best bid ≥ best ask after an update, until it uncrosses).
    pub crossed_episodes: u64,
}

/// Ids and level counts of one buffered diff; its levels live in [`DepthSync::buffered_levels`].
#[derive(Debug, Clone, Copy)]
struct BufferedDiff {
    first_update_id: u64,
    final_update_id: u64,
    /// Number of bid levels, stored first.
    bids: usize,
    /// Number of ask levels, stored after the bids.
    asks: usize,
    /// Futures `pu` (the previous diff's `u`); `None` under [`SyncRule::Spot`].
    prev_final_update_id: Option<u64>,
    exchange_ts_ns: Option<u64>,
    /// [`DepthDiff::recv_ts_ns`].
    recv_ts_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No usable snapshot; diffs go to the buffer.
    AwaitingSnapshot,
    /// `book` holds a snapshot with id `last_update_id`; the buffer is empty; nothing emitted yet.
    AwaitingBridge { last_update_id: u64 },
    /// `book` is exact as of update id `last_update_id`; the buffer is empty.
    Synced { last_update_id: u64 },
}

/// How a diff `[U, u]` continues a sequence whose last id is `last`.
enum Continuity {
    /// `u` ≤ `last`: nothing new.
    Stale,
    /// `U` ≤ `last` + 1 < `u` + 1: continues it (`overlapping` when `U` ≤ `last`).
    Next { overlapping: bool },
    /// `U` > `last` + 1.
    Gap { missing: u64 },
}

/// What the `last` id a diff is checked against is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// A REST snapshot's `lastUpdateId`.
    Snapshot,
    /// The previous diff's `u`.
    Diff,
}

/// [`continuity`] under `rule`; `pu` is the diff's previous final update id (futures).
fn continuity_of(
    rule: SyncRule,
    last: u64,
    diff: &DepthDiff<'_>,
    pu: Option<u64>,
    after: After,
) -> Continuity {
    let (SyncRule::Futures, Some(pu)) = (rule, pu) else {
        return continuity(last, diff);
    };
    let u = diff.final_update_id;
    let chained = match after {
        After::Snapshot if u < last => return Continuity::Stale,
        After::Snapshot => pu <= last,
        After::Diff if u <= last => return Continuity::Stale,
        After::Diff => pu == last,
    };
    if chained {
        Continuity::Next {
            overlapping: diff.first_update_id <= last,
        }
    } else {
        Continuity::Gap {
            missing: pu.saturating_sub(last).max(1),
        }
    }
}

fn continuity(last: u64, diff: &DepthDiff<'_>) -> Continuity {
    if diff.final_update_id <= last {
        Continuity::Stale
    } else if diff.first_update_id > last.saturating_add(1) {
        // first > last + 1 ≥ 1, so the subtraction cannot underflow.
        Continuity::Gap {
            missing: diff.first_update_id - last - 1,
        }
    } else {
        Continuity::Next {
            overlapping: diff.first_update_id <= last,
        }
    }
}

/// The local-book state machine for one symbol. See the module doc.
#[derive(Debug)]
pub struct DepthSync {
    /// The venue symbol (`ETHUSDT`); passed to the sink with every event. Never changes.
    symbol: Box<str>,
    /// Buffer bounds, both ≥ 1.
    config: DepthSyncConfig,
    state: State,
    /// True from the moment a fetch is asked for until its reply or failure is delivered: at most
    /// one fetch per symbol is outstanding. Survives [`DepthSync::reset`] (the reply is still
    /// checked against the new connection's diffs).
    fetch_outstanding: bool,
    /// The local book. Exact only in [`State::Synced`]; holds the snapshot in
    /// [`State::AwaitingBridge`]; meaningless while awaiting a snapshot.
    book: L2Book,
    /// Diffs received while awaiting a snapshot, oldest first. Empty unless
    /// [`State::AwaitingSnapshot`]; `len` ≤ `max_buffered_diffs`; contiguous: each diff's `U` ≤ the
    /// previous `u` + 1 and its `u` > the previous `u`.
    buffered: VecDeque<BufferedDiff>,
    /// The buffered diffs' levels in order (each diff's bids, then its asks); `len` is the sum of
    /// their level counts and ≤ `max_buffered_levels`.
    buffered_levels: VecDeque<Level>,
    /// Scratch for the bids of an emitted snapshot (best first); reused.
    snapshot_bids: Vec<Level>,
    /// Scratch for the asks of an emitted snapshot (best first); reused.
    snapshot_asks: Vec<Level>,
    /// True while the synced book is crossed and the episode has been reported.
    crossed: bool,
    stats: DepthSyncStats,
    /// Receive times of the diffs the last snapshot took out of the buffer into the book, until
    /// [`drain_released`](Self::drain_released); cleared by the next snapshot, so at most
    /// `max_buffered_diffs` (capacity kept: no allocation once warm).
    released: Vec<u64>,
}

impl DepthSync {
    /// A symbol awaiting its first snapshot. The first diff asks for it.
    pub fn new(symbol: &str, config: DepthSyncConfig) -> DepthSync {
        DepthSync {
            symbol: symbol.into(),
            config: DepthSyncConfig {
                rule: config.rule,
                max_buffered_diffs: config.max_buffered_diffs.max(1),
                max_buffered_levels: config.max_buffered_levels.max(1),
            },
            state: State::AwaitingSnapshot,
            fetch_outstanding: false,
            book: L2Book::new(),
            buffered: VecDeque::new(),
            buffered_levels: VecDeque::new(),
            snapshot_bids: Vec::new(),
            snapshot_asks: Vec::new(),
            crossed: false,
            stats: DepthSyncStats::default(),
            released: Vec::new(),
        }
    }

    /// Hands the receive time of every diff the last snapshot took out of the buffer (each
    /// waited there from its receipt until that snapshot) to `f`, once, oldest first.
    pub fn drain_released(&mut self, f: &mut dyn FnMut(u64)) {
        for &t in &self.released {
            f(t);
        }
        self.released.clear();
    }

    /// The venue symbol.
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// Where the book stands.
    pub fn state(&self) -> SyncState {
        match self.state {
            State::AwaitingSnapshot => SyncState::AwaitingSnapshot,
            State::AwaitingBridge { .. } => SyncState::AwaitingBridge,
            State::Synced { .. } => SyncState::Synced,
        }
    }

    /// The update id the book is exact at, when synced.
    pub fn last_update_id(&self) -> Option<u64> {
        match self.state {
            State::Synced { last_update_id } => Some(last_update_id),
            _ => None,
        }
    }

    /// The local book; exact only when [`DepthSync::state`] is [`SyncState::Synced`].
    pub fn book(&self) -> &L2Book {
        &self.book
    }

    /// Counters.
    pub fn stats(&self) -> &DepthSyncStats {
        &self.stats
    }

    /// True while a requested snapshot has been neither delivered nor reported failed.
    pub fn fetch_outstanding(&self) -> bool {
        self.fetch_outstanding
    }

    /// Diffs currently buffered (0 unless awaiting a snapshot).
    pub fn buffered_diffs(&self) -> usize {
        self.buffered.len()
    }

    /// Feeds one diff of the stream, in arrival order (spot: no `pu`).
    pub fn on_diff(&mut self, diff: &DepthDiff<'_>, sink: &mut Sink<'_>) -> Step {
        self.on_diff_pu(diff, None, sink)
    }

    /// Feeds one diff with its `pu` (futures; `None` on spot). Under [`SyncRule::Futures`] a diff
    /// without `pu`, or with `pu` ≥ `U`, is invalid.
    pub fn on_diff_pu(
        &mut self,
        diff: &DepthDiff<'_>,
        pu: Option<u64>,
        sink: &mut Sink<'_>,
    ) -> Step {
        let futures = self.config.rule == SyncRule::Futures;
        if diff.first_update_id > diff.final_update_id
            || (futures && pu.is_none_or(|pu| pu >= diff.first_update_id))
        {
            self.stats.diffs_invalid += 1;
            return Step::only(Outcome::Invalid);
        }
        let rule = self.config.rule;
        match self.state {
            State::AwaitingSnapshot => self.buffer(diff, pu, sink),
            State::AwaitingBridge { last_update_id } => {
                match continuity_of(rule, last_update_id, diff, pu, After::Snapshot) {
                    Continuity::Stale => {
                        self.stats.diffs_stale += 1;
                        Step::only(Outcome::Stale)
                    }
                    Continuity::Next { .. } => {
                        self.book.apply_delta(diff.bids, diff.asks);
                        self.stats.diffs_applied += 1;
                        self.synced(diff.final_update_id, diff.exchange_ts_ns, sink);
                        Step::only(Outcome::Synced)
                    }
                    Continuity::Gap { .. } => {
                        // The stream continues past the snapshot without the ids in between.
                        self.stats.snapshots_too_old += 1;
                        self.state = State::AwaitingSnapshot;
                        let step = self.buffer(diff, pu, sink);
                        Step {
                            outcome: Outcome::SnapshotTooOld,
                            fetch_snapshot: step.fetch_snapshot,
                        }
                    }
                }
            }
            State::Synced { last_update_id } => {
                match continuity_of(rule, last_update_id, diff, pu, After::Diff) {
                    Continuity::Stale => {
                        self.stats.diffs_stale += 1;
                        Step::only(Outcome::Stale)
                    }
                    Continuity::Next { overlapping } => {
                        self.stats.diffs_overlapping += u64::from(overlapping);
                        self.book.apply_delta(diff.bids, diff.asks);
                        self.stats.diffs_applied += 1;
                        self.stats.diffs_emitted += 1;
                        self.state = State::Synced {
                            last_update_id: diff.final_update_id,
                        };
                        let update = BookUpdate {
                            snapshot: false,
                            bids: diff.bids,
                            asks: diff.asks,
                            venue_sequence: Some(diff.final_update_id),
                            exchange_ts_ns: diff.exchange_ts_ns,
                            may_be_bad: false,
                        };
                        sink(Some(&self.symbol), &Event::Book(update));
                        self.check_crossed(sink);
                        Step::only(Outcome::Applied)
                    }
                    Continuity::Gap { missing } => {
                        self.report_gap(missing, sink);
                        self.begin_resync(sink);
                        let step = self.buffer(diff, pu, sink);
                        Step {
                            outcome: Outcome::Gap { missing },
                            fetch_snapshot: step.fetch_snapshot,
                        }
                    }
                }
            }
        }
    }

    /// Delivers the REST snapshot reply (`lastUpdateId`, `bids`, `asks`) for this symbol.
    pub fn on_snapshot(
        &mut self,
        last_update_id: u64,
        bids: &[Level],
        asks: &[Level],
        sink: &mut Sink<'_>,
    ) -> Step {
        self.fetch_outstanding = false;
        if self.state != State::AwaitingSnapshot {
            self.stats.snapshots_unexpected += 1;
            return Step::only(Outcome::SnapshotUnexpected);
        }
        self.released.clear();
        let futures = self.config.rule == SyncRule::Futures;
        if let Some(first) = self.buffered.front() {
            let too_old = match first.prev_final_update_id {
                Some(pu) if futures => pu > last_update_id,
                _ => first.first_update_id > last_update_id.saturating_add(1),
            };
            if too_old {
                // Keep the buffer: the next snapshot may still bridge it.
                self.stats.snapshots_too_old += 1;
                return Step {
                    outcome: Outcome::SnapshotTooOld,
                    fetch_snapshot: self.ask_fetch(),
                };
            }
        }
        self.book.apply_snapshot(bids, asks);
        self.stats.snapshots_loaded += 1;
        while self.buffered.front().is_some_and(|d| {
            d.final_update_id < last_update_id || (!futures && d.final_update_id == last_update_id)
        }) {
            self.pop_buffered();
            self.stats.diffs_stale += 1;
        }
        let Some(newest) = self.buffered.back().copied() else {
            self.state = State::AwaitingBridge { last_update_id };
            return Step::only(Outcome::AwaitingBridge);
        };
        // Contiguous buffer and first U ≤ lastUpdateId + 1: the rest continues the snapshot.
        let mut levels = self.buffered_levels.iter();
        for d in &self.buffered {
            self.released.push(d.recv_ts_ns);
            for l in levels.by_ref().take(d.bids) {
                self.book.set(BookSide::Bid, l.price, l.size);
            }
            for l in levels.by_ref().take(d.asks) {
                self.book.set(BookSide::Ask, l.price, l.size);
            }
        }
        self.stats.diffs_applied += self.buffered.len() as u64;
        self.buffered.clear();
        self.buffered_levels.clear();
        self.synced(newest.final_update_id, newest.exchange_ts_ns, sink);
        Step::only(Outcome::Synced)
    }

    /// Reports that the requested snapshot could not be fetched (HTTP error, timeout, bad body).
    /// Asks again when still awaiting one; the collector applies its backoff before fetching.
    pub fn on_snapshot_failed(&mut self) -> Step {
        self.fetch_outstanding = false;
        self.stats.snapshot_failures += 1;
        let fetch_snapshot = self.state == State::AwaitingSnapshot && self.ask_fetch();
        Step {
            outcome: Outcome::SnapshotFailed,
            fetch_snapshot,
        }
    }

    /// Forgets the book and the buffer (the stream reconnected: ids may have been lost). A synced
    /// book reports [`StatusCode::Resync`]. The next diff asks for a snapshot unless one is
    /// still outstanding.
    pub fn reset(&mut self, sink: &mut Sink<'_>) -> Step {
        if matches!(self.state, State::Synced { .. }) {
            self.begin_resync(sink);
        }
        self.state = State::AwaitingSnapshot;
        self.buffered.clear();
        self.buffered_levels.clear();
        self.crossed = false;
        Step::only(Outcome::Reset)
    }

    /// Stores a diff while awaiting a snapshot, keeping the buffer contiguous and bounded, and
    /// asks for a snapshot if none is outstanding.
    fn buffer(&mut self, diff: &DepthDiff<'_>, pu: Option<u64>, sink: &mut Sink<'_>) -> Step {
        let mut outcome = None;
        if let Some(newest) = self.buffered.back() {
            match continuity_of(
                self.config.rule,
                newest.final_update_id,
                diff,
                pu,
                After::Diff,
            ) {
                Continuity::Stale => {
                    self.stats.diffs_stale += 1;
                    return Step::only(Outcome::Stale);
                }
                Continuity::Next { overlapping } => {
                    self.stats.diffs_overlapping += u64::from(overlapping);
                }
                Continuity::Gap { missing } => {
                    self.report_gap(missing, sink);
                    self.buffered.clear();
                    self.buffered_levels.clear();
                    outcome = Some(Outcome::Gap { missing });
                }
            }
        }
        let levels = diff.bids.len().saturating_add(diff.asks.len());
        let mut evicted = 0;
        if levels > self.config.max_buffered_levels {
            // It cannot fit even alone: the buffer restarts empty at the next diff.
            evicted = self.buffered.len() + 1;
            self.buffered.clear();
            self.buffered_levels.clear();
        } else {
            while self.buffered.len() >= self.config.max_buffered_diffs
                || self.buffered_levels.len().saturating_add(levels)
                    > self.config.max_buffered_levels
            {
                if !self.pop_buffered() {
                    break;
                }
                evicted += 1;
            }
            self.buffered_levels.extend(diff.bids.iter().copied());
            self.buffered_levels.extend(diff.asks.iter().copied());
            self.buffered.push_back(BufferedDiff {
                first_update_id: diff.first_update_id,
                final_update_id: diff.final_update_id,
                bids: diff.bids.len(),
                asks: diff.asks.len(),
                prev_final_update_id: pu,
                exchange_ts_ns: diff.exchange_ts_ns,
                recv_ts_ns: diff.recv_ts_ns,
            });
            self.stats.diffs_buffered += 1;
        }
        self.stats.buffer_evictions += evicted as u64;
        Step {
            outcome: outcome.unwrap_or(Outcome::Buffered { evicted }),
            fetch_snapshot: self.ask_fetch(),
        }
    }

    /// Drops the oldest buffered diff and its levels; false when the buffer was empty.
    fn pop_buffered(&mut self) -> bool {
        let Some(d) = self.buffered.pop_front() else {
            return false;
        };
        let n = d
            .bids
            .saturating_add(d.asks)
            .min(self.buffered_levels.len());
        self.buffered_levels.drain(..n);
        true
    }

    /// True (and marks a fetch outstanding) unless a fetch is already outstanding.
    fn ask_fetch(&mut self) -> bool {
        if self.fetch_outstanding {
            return false;
        }
        self.fetch_outstanding = true;
        self.stats.snapshots_requested += 1;
        true
    }

    fn report_gap(&mut self, missing: u64, sink: &mut Sink<'_>) {
        self.stats.gaps += 1;
        self.stats.missing_update_ids = self.stats.missing_update_ids.saturating_add(missing);
        let status = Status {
            code: StatusCode::Gap,
            count: missing,
            detail: GAP_DETAIL,
        };
        sink(Some(&self.symbol), &Event::Status(status));
    }

    /// Discards a synced book: reports the resync and returns to buffering.
    fn begin_resync(&mut self, sink: &mut Sink<'_>) {
        self.stats.resyncs += 1;
        self.state = State::AwaitingSnapshot;
        self.crossed = false;
        let status = Status {
            code: StatusCode::Resync,
            count: self.stats.resyncs,
            detail: RESYNC_DETAIL,
        };
        sink(Some(&self.symbol), &Event::Status(status));
    }

    /// The book is exact as of `last_update_id`: emits it as a snapshot.
    fn synced(&mut self, last_update_id: u64, exchange_ts_ns: Option<u64>, sink: &mut Sink<'_>) {
        self.state = State::Synced { last_update_id };
        self.stats.syncs += 1;
        self.crossed = false;
        self.snapshot_bids.clear();
        self.snapshot_bids.extend(self.book.bids());
        self.snapshot_asks.clear();
        self.snapshot_asks.extend(self.book.asks());
        let update = BookUpdate {
            snapshot: true,
            bids: &self.snapshot_bids,
            asks: &self.snapshot_asks,
            venue_sequence: Some(last_update_id),
            exchange_ts_ns,
            may_be_bad: false,
        };
        sink(Some(&self.symbol), &Event::Book(update));
        self.check_crossed(sink);
    }

    /// Reports a crossed book once per episode.
    fn check_crossed(&mut self, sink: &mut Sink<'_>) {
        if !self.book.is_crossed() {
            self.crossed = false;
            return;
        }
        if self.crossed {
            return;
        }
        self.crossed = true;
        self.stats.crossed_episodes += 1;
        let status = Status {
            code: StatusCode::CrossedBook,
            count: self.stats.crossed_episodes,
            detail: CROSSED_DETAIL,
        };
        sink(Some(&self.symbol), &Event::Status(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::testutil::fixture;
    use crate::feed::venue::binance::BinanceParser;
    use crate::feed::venue::VenueParser;
    use crate::market::event::Quote;
    use std::collections::BTreeMap;
    use std::io::BufRead;

    const CAPTURE: &str = "binance/spot_ethusdt_20240808.txt.gz";

    fn lv(price: i64, size: i64) -> Level {
        Level { price, size }
    }

    /// The reference book: a `BTreeMap` per side.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    struct Model {
        bids: BTreeMap<i64, i64>,
        asks: BTreeMap<i64, i64>,
    }

    impl Model {
        fn from_snapshot(bids: &[Level], asks: &[Level]) -> Model {
            let mut m = Model::default();
            m.apply(bids, asks);
            m
        }
        fn apply(&mut self, bids: &[Level], asks: &[Level]) {
            for (side, levels) in [(&mut self.bids, bids), (&mut self.asks, asks)] {
                for l in levels {
                    if l.size <= 0 {
                        side.remove(&l.price);
                    } else {
                        side.insert(l.price, l.size);
                    }
                }
            }
        }
        fn of_book(book: &L2Book) -> Model {
            Model {
                bids: book.bids().map(|l| (l.price, l.size)).collect(),
                asks: book.asks().map(|l| (l.price, l.size)).collect(),
            }
        }
        fn bids(&self) -> Vec<Level> {
            self.bids.iter().rev().map(|(&p, &s)| lv(p, s)).collect()
        }
        fn asks(&self) -> Vec<Level> {
            self.asks.iter().map(|(&p, &s)| lv(p, s)).collect()
        }
    }

    /// Everything emitted, per symbol, plus each symbol's book as a subscriber rebuilds it.
    #[derive(Default)]
    struct Recorder {
        statuses: Vec<(String, StatusCode, u64)>,
        snapshots: Vec<(String, Option<u64>)>,
        deltas: usize,
        subscriber: BTreeMap<String, Model>,
    }

    impl Recorder {
        fn record(&mut self, symbol: Option<&str>, ev: &Event<'_>) {
            let symbol = symbol.unwrap_or("<none>").to_owned();
            match ev {
                Event::Status(s) => self.statuses.push((symbol, s.code, s.count)),
                Event::Book(b) if b.snapshot => {
                    self.snapshots.push((symbol.clone(), b.venue_sequence));
                    self.subscriber
                        .insert(symbol, Model::from_snapshot(b.bids, b.asks));
                }
                Event::Book(b) => {
                    self.deltas += 1;
                    self.subscriber
                        .entry(symbol)
                        .or_default()
                        .apply(b.bids, b.asks);
                }
                Event::Trade(_) | Event::Quote(_) => {}
                Event::Mark(_) | Event::Liquidation(_) | Event::OpenInterest(_) => {}
            }
        }
        fn statuses_of(&self, symbol: &str) -> Vec<(StatusCode, u64)> {
            self.statuses
                .iter()
                .filter(|(s, ..)| s == symbol)
                .map(|&(_, c, n)| (c, n))
                .collect()
        }
    }

    // ---- the real capture ----

    /// One captured message the depth book cares about, parsed by `BinanceParser` (levels) with
    /// `U` (and a bookTicker's `u`) read by a second serde_json parse, since the parser drops them.
    #[derive(Debug, Clone)]
    enum Msg {
        Diff {
            symbol: String,
            first: u64,
            last: u64,
            bids: Vec<Level>,
            asks: Vec<Level>,
            ts: Option<u64>,
        },
        Snapshot {
            last: u64,
            bids: Vec<Level>,
            asks: Vec<Level>,
        },
        Quote {
            update_id: u64,
            quote: Quote,
        },
    }

    impl Msg {
        fn diff(&self) -> Option<(&str, DepthDiff<'_>)> {
            match self {
                Msg::Diff {
                    symbol,
                    first,
                    last,
                    bids,
                    asks,
                    ts,
                } => Some((
                    symbol,
                    DepthDiff {
                        first_update_id: *first,
                        final_update_id: *last,
                        bids,
                        asks,
                        exchange_ts_ns: *ts,
                        recv_ts_ns: 0,
                    },
                )),
                _ => None,
            }
        }
    }

    fn load_capture() -> Vec<Msg> {
        let file = std::fs::File::open(fixture(CAPTURE)).unwrap();
        let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
        let mut parser = BinanceParser::default();
        let mut out = Vec::new();
        for line in reader.lines() {
            let line = line.unwrap();
            let (recv, json) = line.split_once(' ').unwrap();
            let recv: u64 = recv.parse().unwrap();
            let raw: serde_json::Value = serde_json::from_str(json).unwrap();
            let data = &raw["data"];
            let mut got = None;
            parser
                .parse(json, recv, &mut |sym, ev| match ev {
                    Event::Book(b) if b.snapshot => {
                        got = Some(Msg::Snapshot {
                            last: b.venue_sequence.unwrap(),
                            bids: b.bids.to_vec(),
                            asks: b.asks.to_vec(),
                        })
                    }
                    Event::Book(b) => {
                        got = Some(Msg::Diff {
                            symbol: sym.unwrap().to_owned(),
                            first: data["U"].as_u64().unwrap(),
                            last: b.venue_sequence.unwrap(),
                            bids: b.bids.to_vec(),
                            asks: b.asks.to_vec(),
                            ts: b.exchange_ts_ns,
                        })
                    }
                    Event::Quote(q) => {
                        got = Some(Msg::Quote {
                            update_id: data["u"].as_u64().unwrap(),
                            quote: *q,
                        })
                    }
                    _ => {}
                })
                .unwrap();
            out.extend(got);
        }
        out
    }

    /// The capture's first snapshot with every later diff in `msgs` applied: (update id, book).
    fn reference_at(msgs: &[Msg]) -> (u64, Model) {
        let mut model: Option<(u64, Model)> = None;
        for m in msgs {
            match (m, &mut model) {
                (Msg::Snapshot { last, bids, asks }, None) => {
                    model = Some((*last, Model::from_snapshot(bids, asks)))
                }
                (
                    Msg::Diff {
                        last, bids, asks, ..
                    },
                    Some((id, model)),
                ) if *last > *id => {
                    model.apply(bids, asks);
                    *id = *last;
                }
                _ => {}
            }
        }
        model.unwrap()
    }

    fn reference_final(msgs: &[Msg]) -> Model {
        reference_at(msgs).1
    }

    #[test]
    fn capture_syncs_then_applies_every_diff_without_gap_or_crossing() {
        let msgs = load_capture();
        let diffs = msgs.iter().filter(|m| m.diff().is_some()).count();
        let mut books = DepthBooks::new(&["ETHUSDT"], DepthSyncConfig::default());
        let mut rec = Recorder::default();
        let mut outcomes = Vec::new();
        let mut fetches = 0;
        let (mut crossed_after_apply, mut quotes_checked) = (0, 0);
        // The top of book must equal every bookTicker carrying the same update id.
        let quotes: BTreeMap<u64, Quote> = msgs
            .iter()
            .filter_map(|m| match m {
                Msg::Quote { update_id, quote } => Some((*update_id, *quote)),
                _ => None,
            })
            .collect();
        for m in &msgs {
            let step = match m {
                Msg::Diff { .. } => {
                    let (sym, d) = m.diff().unwrap();
                    books.on_diff(sym, &d, &mut |s, e| rec.record(s, e))
                }
                Msg::Snapshot { last, bids, asks } => {
                    assert!(books.get("ETHUSDT").unwrap().fetch_outstanding());
                    books.on_snapshot("ETHUSDT", *last, bids, asks, &mut |s, e| rec.record(s, e))
                }
                Msg::Quote { .. } => continue,
            };
            fetches += usize::from(step.fetch_snapshot);
            outcomes.push(step.outcome);
            let sync = books.get("ETHUSDT").unwrap();
            if let Some(id) = sync.last_update_id() {
                crossed_after_apply += usize::from(sync.book().is_crossed());
                if let Some(q) = quotes.get(&id) {
                    let (b, a) = (
                        sync.book().best_bid().unwrap(),
                        sync.book().best_ask().unwrap(),
                    );
                    assert_eq!((b.price, b.size), (q.bid_price, q.bid_size), "u={id}");
                    assert_eq!((a.price, a.size), (q.ask_price, q.ask_size), "u={id}");
                    quotes_checked += 1;
                }
            }
        }
        // Two diffs before the REST reply are buffered, both ≤ lastUpdateId 35346513512; the diff
        // right after the reply (U=35346513513) bridges it.
        assert_eq!(
            &outcomes[..4],
            &[
                Outcome::Buffered { evicted: 0 },
                Outcome::Buffered { evicted: 0 },
                Outcome::AwaitingBridge,
                Outcome::Synced,
            ]
        );
        assert!(outcomes[4..].iter().all(|o| *o == Outcome::Applied));
        assert_eq!(
            rec.snapshots,
            vec![("ETHUSDT".into(), Some(35_346_513_514))]
        );
        let sync = books.get("ETHUSDT").unwrap();
        let st = sync.stats();
        assert_eq!(fetches, 1);
        assert_eq!(st.snapshots_requested, 1);
        assert_eq!(st.diffs_stale, 2);
        assert_eq!(st.diffs_applied as usize, diffs - 2);
        assert_eq!(st.diffs_emitted as usize, diffs - 3);
        assert_eq!(rec.deltas, diffs - 3);
        assert_eq!((st.gaps, st.resyncs, st.diffs_overlapping), (0, 0, 0));
        assert_eq!((st.crossed_episodes, crossed_after_apply), (0, 0));
        assert!(rec.statuses.is_empty(), "{:?}", rec.statuses);
        let want = reference_final(&msgs);
        assert_eq!(Model::of_book(sync.book()), want);
        assert_eq!(rec.subscriber["ETHUSDT"], want);
        assert!(quotes_checked > 500, "{quotes_checked}");
        eprintln!(
            "capture: {diffs} diffs, {} applied ({} emitted as deltas), {} stale, {quotes_checked} \
             bookTickers matched the top of book, {} bid / {} ask levels at the end",
            st.diffs_applied,
            st.diffs_emitted,
            st.diffs_stale,
            sync.book().bid_levels(),
            sync.book().ask_levels()
        );
    }

    #[test]
    fn a_gap_resyncs_only_its_symbol() {
        let msgs = load_capture();
        let diff_idx: Vec<usize> = (0..msgs.len())
            .filter(|&i| msgs[i].diff().is_some())
            .collect();
        // The diff that goes missing for ETHUSDT, and the fresh snapshot the collector fetches:
        // the reference book as of two diffs later, delivered before the fourth diff after it.
        let lost = diff_idx[diff_idx.len() / 2];
        let (snap_at, deliver_before) = (
            diff_idx[diff_idx.len() / 2 + 2],
            diff_idx[diff_idx.len() / 2 + 4],
        );
        let (lost_first, lost_last) = match &msgs[lost] {
            Msg::Diff { first, last, .. } => (*first, *last),
            _ => unreachable!(),
        };
        let fresh = {
            let (id, model) = reference_at(&msgs[..=snap_at]);
            (id, model.bids(), model.asks())
        };

        let mut books = DepthBooks::new(&["ETHUSDT", "BTCUSDT"], DepthSyncConfig::default());
        let mut rec = Recorder::default();
        let mut fetches: BTreeMap<&str, usize> = BTreeMap::new();
        let mut gap_outcomes = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            if i == deliver_before {
                let sync = books.get("ETHUSDT").unwrap();
                assert_eq!(sync.state(), SyncState::AwaitingSnapshot);
                assert!(sync.fetch_outstanding());
                let step =
                    books.on_snapshot("ETHUSDT", fresh.0, &fresh.1, &fresh.2, &mut |s, e| {
                        rec.record(s, e)
                    });
                assert_eq!(step, Step::only(Outcome::Synced));
            }
            match m {
                Msg::Diff {
                    first,
                    last,
                    bids,
                    asks,
                    ts,
                    ..
                } => {
                    // The same diffs feed a second symbol in parallel, none missing.
                    for sym in ["ETHUSDT", "BTCUSDT"] {
                        if sym == "ETHUSDT" && i == lost {
                            continue;
                        }
                        let d = DepthDiff {
                            first_update_id: *first,
                            final_update_id: *last,
                            bids,
                            asks,
                            exchange_ts_ns: *ts,
                            recv_ts_ns: 0,
                        };
                        let step = books.on_diff(sym, &d, &mut |s, e| rec.record(s, e));
                        *fetches.entry(sym).or_default() += usize::from(step.fetch_snapshot);
                        if let Outcome::Gap { .. } = step.outcome {
                            gap_outcomes.push((sym, step));
                        }
                    }
                }
                Msg::Snapshot { last, bids, asks } => {
                    for sym in ["ETHUSDT", "BTCUSDT"] {
                        let step =
                            books.on_snapshot(sym, *last, bids, asks, &mut |s, e| rec.record(s, e));
                        assert_eq!(step.outcome, Outcome::AwaitingBridge);
                    }
                }
                Msg::Quote { .. } => {}
            }
        }
        let missing = lost_last - lost_first + 1;
        assert_eq!(
            gap_outcomes,
            vec![(
                "ETHUSDT",
                Step {
                    outcome: Outcome::Gap { missing },
                    fetch_snapshot: true
                }
            )]
        );
        assert_eq!(
            rec.statuses_of("ETHUSDT"),
            vec![(StatusCode::Gap, missing), (StatusCode::Resync, 1)]
        );
        assert_eq!(rec.statuses_of("BTCUSDT"), vec![]);
        // One fetch each at start-up; one more for the gapped symbol only.
        assert_eq!(fetches["ETHUSDT"], 2);
        assert_eq!(fetches["BTCUSDT"], 1);
        let want = reference_final(&msgs);
        for sym in ["ETHUSDT", "BTCUSDT"] {
            let sync = books.get(sym).unwrap();
            assert_eq!(sync.state(), SyncState::Synced, "{sym}");
            assert_eq!(Model::of_book(sync.book()), want, "{sym}");
            assert_eq!(rec.subscriber[sym], want, "{sym}");
        }
        let eth = books.get("ETHUSDT").unwrap().stats();
        let btc = books.get("BTCUSDT").unwrap().stats();
        assert_eq!(
            (eth.gaps, eth.resyncs, eth.syncs, eth.diffs_stale),
            (1, 1, 2, 4)
        );
        assert_eq!(
            (btc.gaps, btc.resyncs, btc.syncs, btc.diffs_stale),
            (0, 0, 1, 2)
        );
        assert_eq!(eth.missing_update_ids, missing);
        eprintln!(
            "gap: lost diff [{lost_first}, {lost_last}] ({missing} ids); resynced at {}; \
             ETHUSDT emitted {} deltas, BTCUSDT {}",
            fresh.0, eth.diffs_emitted, btc.diffs_emitted
        );
    }

    // ---- rules, table-driven ----

    #[derive(Debug, Clone, Copy)]
    enum In {
        /// `U`, `u`, and one bid level at price `U` with size 1.
        Diff(u64, u64),
        /// Like `Diff` with two bid levels.
        Wide(u64, u64),
        /// `lastUpdateId`, one bid level at price 1.
        Snap(u64),
        SnapFailed,
        Reset,
    }

    fn run(config: DepthSyncConfig, inputs: &[In]) -> (DepthSync, Vec<Step>, Recorder) {
        let mut sync = DepthSync::new("X", config);
        let mut rec = Recorder::default();
        let mut steps = Vec::new();
        for input in inputs {
            let sink = &mut |s: Option<&str>, e: &Event<'_>| rec.record(s, e);
            steps.push(match *input {
                In::Diff(first, last) | In::Wide(first, last) => {
                    let two = [lv(first as i64, 1), lv(first as i64 - 1, 1)];
                    let bids = if matches!(input, In::Wide(..)) {
                        &two[..]
                    } else {
                        &two[..1]
                    };
                    sync.on_diff(
                        &DepthDiff {
                            first_update_id: first,
                            final_update_id: last,
                            bids,
                            asks: &[],
                            exchange_ts_ns: None,
                            recv_ts_ns: 0,
                        },
                        sink,
                    )
                }
                In::Snap(id) => sync.on_snapshot(id, &[lv(1, 1)], &[], sink),
                In::SnapFailed => sync.on_snapshot_failed(),
                In::Reset => sync.reset(sink),
            });
        }
        (sync, steps, rec)
    }

    #[test]
    fn sequencing_rules() {
        use In::*;
        use Outcome as O;
        let fetch = |outcome| Step {
            outcome,
            fetch_snapshot: true,
        };
        let only = Step::only;
        let buffered = |evicted| O::Buffered { evicted };
        let small = |diffs, levels| DepthSyncConfig {
            rule: SyncRule::Spot,
            max_buffered_diffs: diffs,
            max_buffered_levels: levels,
        };
        let def = DepthSyncConfig::default();
        type Case = (
            &'static str,
            DepthSyncConfig,
            &'static [In],
            Vec<Step>,
            SyncState,
            Vec<StatusCode>,
        );
        let cases: Vec<Case> = vec![
            (
                "snapshot inside the first buffered diff syncs through the buffer",
                def,
                &[Diff(10, 12), Diff(13, 15), Snap(11)],
                vec![fetch(buffered(0)), only(buffered(0)), only(O::Synced)],
                SyncState::Synced,
                vec![],
            ),
            (
                "snapshot ending right before the first diff is not too old",
                def,
                &[Diff(10, 12), Snap(9)],
                vec![fetch(buffered(0)), only(O::Synced)],
                SyncState::Synced,
                vec![],
            ),
            (
                "snapshot too old: discarded, buffer kept, another fetched",
                def,
                &[Diff(10, 12), Diff(13, 15), Snap(8), Snap(14), Diff(16, 16)],
                vec![
                    fetch(buffered(0)),
                    only(buffered(0)),
                    fetch(O::SnapshotTooOld),
                    only(O::Synced),
                    only(O::Applied),
                ],
                SyncState::Synced,
                vec![],
            ),
            (
                "snapshot newer than every diff waits for its bridge",
                def,
                &[
                    Diff(1, 2),
                    Snap(10),
                    Diff(3, 5),
                    Diff(6, 10),
                    Diff(8, 12),
                    Diff(13, 13),
                ],
                vec![
                    fetch(buffered(0)),
                    only(O::AwaitingBridge),
                    only(O::Stale),
                    only(O::Stale),
                    only(O::Synced),
                    only(O::Applied),
                ],
                SyncState::Synced,
                vec![],
            ),
            (
                "a diff jumping past a waiting snapshot proves it too old",
                def,
                &[Diff(1, 2), Snap(10), Diff(12, 13), Snap(12), Diff(14, 14)],
                vec![
                    fetch(buffered(0)),
                    only(O::AwaitingBridge),
                    fetch(O::SnapshotTooOld),
                    only(O::Synced),
                    only(O::Applied),
                ],
                SyncState::Synced,
                vec![],
            ),
            (
                "buffer overflow evicts the oldest; the snapshot check decides",
                small(2, 100),
                &[
                    Diff(1, 1),
                    Diff(2, 2),
                    Diff(3, 3),
                    Diff(4, 4),
                    Snap(1),
                    Snap(2),
                ],
                vec![
                    fetch(buffered(0)),
                    only(buffered(0)),
                    only(buffered(1)),
                    only(buffered(1)),
                    fetch(O::SnapshotTooOld),
                    only(O::Synced),
                ],
                SyncState::Synced,
                vec![],
            ),
            (
                "level bound: a diff larger than the whole bound is not kept",
                small(100, 1),
                &[Diff(1, 1), Wide(2, 2), Diff(3, 3), Snap(1), Snap(2)],
                vec![
                    fetch(buffered(0)),
                    only(buffered(2)),
                    only(buffered(0)),
                    fetch(O::SnapshotTooOld),
                    only(O::Synced),
                ],
                SyncState::Synced,
                vec![],
            ),
            (
                "invalid diff (U > u) is ignored in every state",
                def,
                &[Diff(5, 4), Diff(1, 1), Snap(1), Diff(3, 2), Diff(2, 2)],
                vec![
                    only(O::Invalid),
                    fetch(buffered(0)),
                    only(O::AwaitingBridge),
                    only(O::Invalid),
                    only(O::Synced),
                ],
                SyncState::Synced,
                vec![],
            ),
            (
                "stale and overlapping diffs on a synced book",
                def,
                &[
                    Diff(1, 5),
                    Snap(5),
                    Diff(6, 8),
                    Diff(7, 8),
                    Diff(7, 9),
                    Diff(10, 10),
                ],
                vec![
                    fetch(buffered(0)),
                    only(O::AwaitingBridge),
                    only(O::Synced),
                    only(O::Stale),
                    only(O::Applied),
                    only(O::Applied),
                ],
                SyncState::Synced,
                vec![],
            ),
            (
                "gap on a synced book: status, resync, one fetch",
                def,
                &[
                    Diff(1, 1),
                    Snap(1),
                    Diff(2, 2),
                    Diff(5, 6),
                    Diff(7, 7),
                    Snap(6),
                ],
                vec![
                    fetch(buffered(0)),
                    only(O::AwaitingBridge),
                    only(O::Synced),
                    fetch(O::Gap { missing: 2 }),
                    only(buffered(0)),
                    only(O::Synced),
                ],
                SyncState::Synced,
                vec![StatusCode::Gap, StatusCode::Resync],
            ),
            (
                "gap while buffering restarts the buffer",
                def,
                &[Diff(1, 2), Diff(3, 3), Diff(6, 6), Snap(3), Snap(5)],
                vec![
                    fetch(buffered(0)),
                    only(buffered(0)),
                    only(O::Gap { missing: 2 }),
                    fetch(O::SnapshotTooOld),
                    only(O::Synced),
                ],
                SyncState::Synced,
                vec![StatusCode::Gap],
            ),
            (
                "failed fetch asks again; unexpected snapshot ignored",
                def,
                &[
                    Diff(1, 1),
                    SnapFailed,
                    Snap(1),
                    Diff(2, 2),
                    Snap(2),
                    SnapFailed,
                ],
                vec![
                    fetch(buffered(0)),
                    fetch(O::SnapshotFailed),
                    only(O::AwaitingBridge),
                    only(O::Synced),
                    only(O::SnapshotUnexpected),
                    only(O::SnapshotFailed),
                ],
                SyncState::Synced,
                vec![],
            ),
            (
                "reset of a synced book reports a resync and rebuilds",
                def,
                &[
                    Diff(1, 1),
                    Snap(1),
                    Diff(2, 2),
                    Reset,
                    Diff(9, 9),
                    Snap(9),
                    Diff(10, 10),
                ],
                vec![
                    fetch(buffered(0)),
                    only(O::AwaitingBridge),
                    only(O::Synced),
                    only(O::Reset),
                    fetch(buffered(0)),
                    only(O::AwaitingBridge),
                    only(O::Synced),
                ],
                SyncState::Synced,
                vec![StatusCode::Resync],
            ),
            (
                "ids at the top of u64 neither overflow nor panic",
                def,
                &[
                    Diff(u64::MAX - 1, u64::MAX),
                    Snap(u64::MAX - 1),
                    Diff(u64::MAX, u64::MAX),
                ],
                vec![fetch(buffered(0)), only(O::Synced), only(O::Stale)],
                SyncState::Synced,
                vec![],
            ),
            (
                "a snapshot with nothing buffered waits; a jump past it is too old",
                def,
                &[Snap(5), Diff(7, 8), Snap(6)],
                vec![
                    only(O::AwaitingBridge),
                    fetch(O::SnapshotTooOld),
                    only(O::Synced),
                ],
                SyncState::Synced,
                vec![],
            ),
        ];
        for (name, config, inputs, want_steps, want_state, want_statuses) in cases {
            let (sync, steps, rec) = run(config, inputs);
            assert_eq!(steps, want_steps, "{name}");
            assert_eq!(sync.state(), want_state, "{name}");
            let codes: Vec<StatusCode> = rec.statuses.iter().map(|s| s.1).collect();
            assert_eq!(codes, want_statuses, "{name}");
            // Every sync emitted exactly one snapshot, and the subscriber's book is the local one.
            assert_eq!(rec.snapshots.len() as u64, sync.stats().syncs, "{name}");
            assert_eq!(rec.subscriber["X"], Model::of_book(sync.book()), "{name}");
            assert!(sync.buffered_diffs() == 0, "{name}");
        }
        // Counters named in the cases above.
        let (s, ..) = run(def, &[Diff(5, 4), Diff(1, 1), Snap(1), Diff(3, 2)]);
        assert_eq!(s.stats().diffs_invalid, 2);
        let (s, ..) = run(
            small(2, 100),
            &[Diff(1, 1), Diff(2, 2), Diff(3, 3), Diff(4, 4)],
        );
        assert_eq!((s.stats().buffer_evictions, s.buffered_diffs()), (2, 2));
        let (s, ..) = run(def, &[Diff(10, 12), Snap(8), Snap(7)]);
        assert_eq!(
            (s.stats().snapshots_too_old, s.stats().snapshots_requested),
            (2, 3)
        );
    }

    #[test]
    fn crossed_book_is_reported_once_per_episode() {
        let mut sync = DepthSync::new("X", DepthSyncConfig::default());
        let mut rec = Recorder::default();
        let mut feed = |sync: &mut DepthSync, id: u64, bids: &[Level], asks: &[Level]| {
            let d = DepthDiff {
                first_update_id: id,
                final_update_id: id,
                bids,
                asks,
                exchange_ts_ns: None,
                recv_ts_ns: 0,
            };
            sync.on_diff(&d, &mut |s, e| rec.record(s, e))
        };
        let _ = feed(&mut sync, 1, &[], &[]);
        let _ = sync.on_snapshot(1, &[lv(100, 1)], &[lv(101, 1)], &mut |_, _| {});
        let _ = feed(&mut sync, 2, &[], &[]);
        assert_eq!(sync.state(), SyncState::Synced);
        let _ = feed(&mut sync, 3, &[lv(101, 1)], &[]); // locked: crossed
        let _ = feed(&mut sync, 4, &[lv(102, 1)], &[]); // still the same episode
        let _ = feed(&mut sync, 5, &[lv(101, 0), lv(102, 0)], &[]); // uncrossed
        let _ = feed(&mut sync, 6, &[], &[lv(99, 1)]); // crossed again
        let crossed: Vec<_> = rec
            .statuses
            .iter()
            .filter(|s| s.1 == StatusCode::CrossedBook)
            .map(|s| s.2)
            .collect();
        assert_eq!(crossed, vec![1, 2]);
        assert_eq!(sync.stats().crossed_episodes, 2);
    }

    #[test]
    fn a_snapshot_reports_the_receive_time_of_each_diff_it_takes_out_of_the_buffer() {
        let mut sync = DepthSync::new("X", DepthSyncConfig::default());
        for (id, recv) in [(5, 100), (6, 200), (7, 300)] {
            let d = DepthDiff {
                first_update_id: id,
                final_update_id: id,
                bids: &[],
                asks: &[],
                exchange_ts_ns: None,
                recv_ts_ns: recv,
            };
            let _ = sync.on_diff(&d, &mut |_, _| {});
        }
        let mut got = Vec::new();
        sync.drain_released(&mut |t| got.push(t));
        assert!(got.is_empty(), "nothing released before the snapshot");
        // Diff 5 is covered by the snapshot (dropped, never released); 6 and 7 waited.
        let _ = sync.on_snapshot(5, &[lv(100, 1)], &[lv(101, 1)], &mut |_, _| {});
        assert_eq!(sync.state(), SyncState::Synced);
        sync.drain_released(&mut |t| got.push(t));
        assert_eq!(got, vec![200, 300]);
        got.clear();
        sync.drain_released(&mut |t| got.push(t));
        assert!(got.is_empty(), "each release is reported once");
    }

    #[test]
    fn unknown_symbols_are_counted_and_touch_nothing() {
        let mut books = DepthBooks::new(&["A"], DepthSyncConfig::default());
        let d = DepthDiff {
            first_update_id: 1,
            final_update_id: 1,
            bids: &[],
            asks: &[],
            exchange_ts_ns: None,
            recv_ts_ns: 0,
        };
        let mut events = 0;
        let mut sink = |_: Option<&str>, _: &Event<'_>| events += 1;
        assert_eq!(
            books.on_diff("B", &d, &mut sink),
            Step::only(Outcome::UnknownSymbol)
        );
        assert_eq!(
            books.on_snapshot("B", 1, &[], &[], &mut sink).outcome,
            Outcome::UnknownSymbol
        );
        assert_eq!(
            books.on_snapshot_failed("B").outcome,
            Outcome::UnknownSymbol
        );
        assert_eq!(books.unknown_symbol(), 3);
        assert_eq!(events, 0);
        let a = books.get("A").unwrap();
        assert_eq!(
            (a.state(), *a.stats()),
            (SyncState::AwaitingSnapshot, DepthSyncStats::default())
        );
        assert_eq!(books.iter().count(), 1);
    }

    // ---- property: any snapshot timing gives the model's book ----

    /// A chain of contiguous diffs `[U, u]` with their levels.
    #[derive(Debug, Clone)]
    struct ChainDiff {
        first: u64,
        last: u64,
        bids: Vec<Level>,
        asks: Vec<Level>,
    }

    fn levels(lo: i64, hi: i64) -> impl proptest::strategy::Strategy<Value = Vec<Level>> {
        use proptest::prelude::*;
        proptest::collection::vec((lo..hi, 0i64..4).prop_map(|(p, s)| lv(p, s)), 0..6)
    }

    /// (base id, chain, initial bids, initial asks).
    fn chain() -> impl proptest::strategy::Strategy<Value = (Vec<ChainDiff>, Model)> {
        use proptest::prelude::*;
        let base = prop_oneof![1u64..1_000, (u64::MAX - 1_000)..(u64::MAX - 500)];
        let diffs = proptest::collection::vec((1u64..4, levels(80, 105), levels(95, 120)), 4..40);
        (base, diffs, levels(80, 105), levels(95, 120)).prop_map(|(base, diffs, b, a)| {
            let mut next = base;
            let chain = diffs
                .into_iter()
                .map(|(span, bids, asks)| {
                    let d = ChainDiff {
                        first: next,
                        last: next + span - 1,
                        bids,
                        asks,
                    };
                    next += span;
                    d
                })
                .collect();
            (chain, Model::from_snapshot(&b, &a))
        })
    }

    /// How the collector answers each fetch: after `delay` more diffs, with the server's book as
    /// of `offset` diffs from the request (negative: older than the stream; positive: ahead of
    /// it); `mid`: a `lastUpdateId` inside that diff, with its levels at in-between sizes.
    type Reply = (usize, i64, bool);

    const TAIL: usize = 3;

    fn check(
        chain: &[ChainDiff],
        initial: &Model,
        replies: &[Reply],
        capacity: usize,
        lost: Option<usize>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        use proptest::prop_assert_eq;
        // states[k]: the venue's book after chain[..k]; ids[k] its update id.
        let mut states = vec![initial.clone()];
        let mut ids = vec![chain[0].first - 1];
        for d in chain {
            let mut m = states[states.len() - 1].clone();
            m.apply(&d.bids, &d.asks);
            states.push(m);
            ids.push(d.last);
        }
        let n = chain.len();
        let random_end = n - TAIL;
        let lost = lost.filter(|&l| l < random_end);
        let config = DepthSyncConfig {
            rule: SyncRule::Spot,
            max_buffered_diffs: capacity,
            max_buffered_levels: 1_000,
        };
        let mut sync = DepthSync::new("P", config);
        let mut rec = Recorder::default();
        let mut replies = replies.iter().cycle();
        // A fetch asked when the stream has delivered `pos` diffs: (deliver before diff index,
        // server position, mid). In the tail every reply is prompt and current.
        let mut schedule = |pos: usize| {
            let &(delay, offset, mid) = replies.next().unwrap_or(&(0, 0, false));
            if pos >= random_end {
                (pos, pos, false)
            } else {
                let k = (pos as i64 + offset).clamp(0, random_end as i64) as usize;
                (pos + delay, k, mid)
            }
        };
        let mut pending: Option<(usize, usize, bool)> = None;
        for i in 0..=n {
            if let Some((at, k, mid)) = pending {
                if at <= i || i >= random_end {
                    pending = None;
                    let (id, snap) = match chain.get(k) {
                        Some(d) if mid && d.last > d.first => {
                            // lastUpdateId inside diff k: its levels at in-between sizes.
                            let mut m = states[k].clone();
                            let bids: Vec<Level> = d.bids.iter().map(|l| lv(l.price, 7)).collect();
                            let asks: Vec<Level> = d.asks.iter().map(|l| lv(l.price, 7)).collect();
                            m.apply(&bids, &asks);
                            (d.first, m)
                        }
                        _ => (ids[k], states[k].clone()),
                    };
                    let step = sync
                        .on_snapshot(id, &snap.bids(), &snap.asks(), &mut |s, e| rec.record(s, e));
                    if step.fetch_snapshot {
                        pending = Some(schedule(i));
                    }
                }
            }
            if i == n {
                break;
            }
            if lost == Some(i) {
                continue;
            }
            let d = &chain[i];
            let diff = DepthDiff {
                first_update_id: d.first,
                final_update_id: d.last,
                bids: &d.bids,
                asks: &d.asks,
                exchange_ts_ns: None,
                recv_ts_ns: 0,
            };
            let step = sync.on_diff(&diff, &mut |s, e| rec.record(s, e));
            if step.fetch_snapshot {
                proptest::prop_assert!(pending.is_none(), "two fetches outstanding");
                pending = Some(schedule(i + 1));
            }
            if let Some(id) = sync.last_update_id() {
                let k = ids.iter().position(|&x| x == id);
                proptest::prop_assert!(k.is_some(), "synced at {id}, not a diff boundary");
                let want = &states[k.unwrap_or(0)];
                prop_assert_eq!(&Model::of_book(sync.book()), want);
                prop_assert_eq!(&rec.subscriber["P"], want);
            }
        }
        // With prompt, current snapshots in the tail every run must end synced and exact.
        prop_assert_eq!(sync.state(), SyncState::Synced);
        prop_assert_eq!(sync.last_update_id(), Some(ids[n]));
        prop_assert_eq!(&Model::of_book(sync.book()), &states[n]);
        prop_assert_eq!(&rec.subscriber["P"], &states[n]);
        let gaps = rec
            .statuses_of("P")
            .iter()
            .filter(|s| s.0 == StatusCode::Gap)
            .count();
        proptest::prop_assert!(gaps <= usize::from(lost.is_some()), "{gaps} gaps");
        prop_assert_eq!(rec.snapshots.len() as u64, sync.stats().syncs);
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn any_snapshot_timing_gives_the_models_book(
            (diffs, initial) in chain(),
            replies in proptest::collection::vec((0usize..5, -4i64..5, proptest::bool::ANY), 1..8),
            capacity in 1usize..8,
            lost in proptest::option::of(0usize..40),
        ) {
            check(&diffs, &initial, &replies, capacity, lost)?;
        }
    }
}
