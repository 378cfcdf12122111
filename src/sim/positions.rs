//! Where each Binance session is in its venue's depth timelines, and the position a REST
//! snapshot is served at.
//!
//! A REST request arrives on its own TCP connection, so it cannot name the WebSocket session
//! it belongs to. Every session replays the same diffs from the same start (the recording's, or
//! `--from`), so a snapshot suits a session when it contains at least the first diff the session
//! received (or will receive) of that book: the client's buffer then holds the diff that bridges
//! it (see `binance_rest`). Each session publishes, per timeline it is subscribed to, `lo` (the
//! position after its first diff) and `hi` (after its latest; `lo` until one is sent). A request
//! from host H is served at `max(max lo, min hi)` over H's sessions subscribed to that book: at
//! the latest diff the furthest-behind of them has received, so each of them syncs at once (an
//! older snapshot would miss a later subscriber's first diff, a newer one would make the others
//! wait for diffs they do not have yet); a later `lo` (a mid-stream subscription) wins, and the
//! others wait for that diff. With no session from H, the position after the first diff of the
//! replayed window: the first one any new session gets. One exception: where that is the
//! position after the timeline's very first diff, the snapshot recorded in the capture (before
//! that diff) is served instead — the venue's own, which its first diff bridges. Sessions on
//! other hosts never move another host's snapshots.
//!
//! Positions are atomics written by the session's thread and read by REST threads; the registry
//! is a mutex-guarded list of the live sessions, one entry each, removed when the session ends.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::market::instrument::Venue;

use super::binance_rest::{BookStep, Timeline};

/// No position: the session is not subscribed to the book.
const NONE: u64 = u64::MAX;

/// One session's `lo`/`hi` on one timeline (see the module doc).
struct Slot {
    lo: AtomicU64,
    hi: AtomicU64,
}

/// A session's published positions.
struct SessionBooks {
    venue: Venue,
    peer: IpAddr,
    /// One per timeline of the venue's source.
    slots: Vec<Slot>,
}

/// The live sessions' positions, shared by the exchange.
#[derive(Default)]
pub(super) struct Positions {
    sessions: Mutex<Vec<Arc<SessionBooks>>>,
}

impl Positions {
    /// Registers a session of `venue` from `peer`, over `timelines` (the venue's); it is
    /// unregistered when the returned handle drops.
    pub(super) fn register<'a>(
        &'a self,
        venue: Venue,
        peer: IpAddr,
        timelines: &[Timeline],
    ) -> SessionPosition<'a> {
        let books = Arc::new(SessionBooks {
            venue,
            peer,
            slots: timelines
                .iter()
                .map(|_| Slot {
                    lo: AtomicU64::new(NONE),
                    hi: AtomicU64::new(NONE),
                })
                .collect(),
        });
        self.sessions.lock().push(books.clone());
        SessionPosition {
            positions: self,
            books,
            next: timelines.iter().map(|t| t.first_step).collect(),
        }
    }

    /// `(lo, hi)` of every live session of `venue` from `peer` subscribed to timeline `t`.
    pub(super) fn of_host(&self, venue: Venue, t: usize, peer: IpAddr) -> Vec<(u64, u64)> {
        self.sessions
            .lock()
            .iter()
            .filter(|s| s.venue == venue && s.peer == peer)
            .filter_map(|s| {
                let slot = s.slots.get(t)?;
                let lo = slot.lo.load(Ordering::Acquire);
                let hi = slot.hi.load(Ordering::Acquire);
                (lo != NONE).then_some((lo, if hi == NONE { lo } else { hi.max(lo) }))
            })
            .collect()
    }
}

/// The position a snapshot is served at (see the module doc): `sessions` are the `(lo, hi)`
/// of the requesting host's sessions on the book, `first_step` the first diff of the replayed
/// window, `len` the timeline's length.
pub(super) fn snapshot_position(sessions: Vec<(u64, u64)>, first_step: usize, len: usize) -> usize {
    let max_lo = sessions.iter().map(|s| s.0).max();
    let min_hi = sessions.iter().map(|s| s.1).min();
    let n = match (max_lo, min_hi) {
        (Some(lo), Some(hi)) => usize::try_from(lo.max(hi)).unwrap_or(usize::MAX),
        _ => first_step.saturating_add(1),
    };
    match n.min(len) {
        // Every such session gets the timeline's first diff (or none is there yet): the
        // snapshot the venue itself sent, recorded in the capture, is the one to serve. Its
        // `lastUpdateId` is the venue's, bridged by that first diff under both sync rules, as
        // the capture shows; and a client's book then matches the capture's from the start.
        1 => 0,
        n => n,
    }
}

/// A session's handle on its published positions; unregisters on drop.
pub(super) struct SessionPosition<'a> {
    positions: &'a Positions,
    books: Arc<SessionBooks>,
    /// Per timeline, the next step the session's replay reaches.
    next: Vec<usize>,
}

impl SessionPosition<'_> {
    /// Publishes which books the session is now subscribed to (after any request): a new
    /// subscription starts at the next diff it will get, an ended one is withdrawn.
    pub(super) fn refresh(&self, timelines: &[Timeline], subs: &HashSet<String>) {
        for ((t, slot), next) in timelines.iter().zip(&self.books.slots).zip(&self.next) {
            let subscribed = t.streams.iter().any(|s| subs.contains(&**s));
            let lo = slot.lo.load(Ordering::Acquire);
            if subscribed && lo == NONE {
                let n = (next.saturating_add(1)).min(t.len()) as u64;
                slot.hi.store(n, Ordering::Release);
                slot.lo.store(n, Ordering::Release);
            } else if !subscribed && lo != NONE {
                slot.lo.store(NONE, Ordering::Release);
                slot.hi.store(NONE, Ordering::Release);
            }
        }
    }

    /// The replay passed `at`; `sent`: the client got the diff.
    pub(super) fn passed(&mut self, at: BookStep, sent: bool) {
        if let Some(next) = self.next.get_mut(at.timeline) {
            *next = at.step + 1;
        }
        if let (true, Some(slot)) = (sent, self.books.slots.get(at.timeline)) {
            let n = at.step as u64 + 1;
            slot.hi.store(n, Ordering::Release);
            if slot.lo.load(Ordering::Acquire) == NONE {
                slot.lo.store(n, Ordering::Release);
            }
        }
    }
}

impl Drop for SessionPosition<'_> {
    fn drop(&mut self) {
        self.positions
            .sessions
            .lock()
            .retain(|s| !Arc::ptr_eq(s, &self.books));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_session_serves_the_first_diff_of_the_window() {
        assert_eq!(
            snapshot_position(vec![], 0, 10),
            0,
            "the window starts at the first diff: the recorded snapshot"
        );
        assert_eq!(snapshot_position(vec![], 4, 10), 5);
        assert_eq!(
            snapshot_position(vec![], 10, 10),
            10,
            "window past the last diff"
        );
        assert_eq!(
            snapshot_position(vec![], 0, 0),
            0,
            "no diff at all: the recorded snapshot"
        );
    }

    #[test]
    fn the_furthest_behind_session_decides() {
        // Two sessions from the start: one at 300 diffs, a later one at 40.
        assert_eq!(snapshot_position(vec![(1, 300), (1, 40)], 0, 1000), 40);
        // A mid-stream subscriber's first diff (500) wins: the others will get it too.
        assert_eq!(snapshot_position(vec![(1, 300), (500, 520)], 0, 1000), 500);
        assert_eq!(snapshot_position(vec![(1, 2000)], 0, 1000), 1000, "clamped");
    }

    /// Replays a session over a timeline and checks that the snapshot a request gets at any
    /// moment has `lo ≤ n` for every session (each one's first diff is in it, so each can
    /// bridge) and `n ≤ hi` of the furthest behind (nobody waits when everyone started
    /// together).
    #[test]
    fn positions_follow_sends_subscriptions_and_sessions_ending() {
        let positions = Positions::default();
        let t = Timeline::for_tests("ETHUSDT", "ethusdt@depth", 100, 0);
        let tls = std::slice::from_ref(&t);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let subs: HashSet<String> = ["ethusdt@depth".to_owned()].into();
        let mut a = positions.register(Venue::Binance, ip, tls);
        assert!(
            positions.of_host(Venue::Binance, 0, ip).is_empty(),
            "not subscribed"
        );
        a.refresh(tls, &subs);
        assert_eq!(positions.of_host(Venue::Binance, 0, ip), vec![(1, 1)]);
        for step in 0..60 {
            a.passed(BookStep { timeline: 0, step }, true);
        }
        let mut b = positions.register(Venue::Binance, ip, tls);
        b.refresh(tls, &subs);
        for step in 0..20 {
            b.passed(BookStep { timeline: 0, step }, true);
        }
        let at = |p: &Positions| snapshot_position(p.of_host(Venue::Binance, 0, ip), 0, 100);
        assert_eq!(at(&positions), 20);
        assert_eq!(
            snapshot_position(positions.of_host(Venue::Binance, 0, other), 0, 100),
            0,
            "another host's request is not held back by these sessions"
        );
        assert!(positions.of_host(Venue::BinanceUsdm, 0, ip).is_empty());
        drop(b);
        assert_eq!(at(&positions), 60, "b ended");
        // a unsubscribes, skips diffs, subscribes again: its new stream starts at the next one.
        a.refresh(tls, &HashSet::new());
        assert_eq!(at(&positions), 0);
        for step in 60..70 {
            a.passed(BookStep { timeline: 0, step }, false);
        }
        a.refresh(tls, &subs);
        assert_eq!(positions.of_host(Venue::Binance, 0, ip), vec![(71, 71)]);
        drop(a);
        assert!(positions.sessions.lock().is_empty());
    }
}
