//! The `stats` thread: publishes the consumer's histograms so that the consumer never copies
//! one.
//!
//! Publishing costs O(buckets) per histogram: [`Publication::write`](crate::base::publication::Publication::write) copies every total into a
//! new version, and each interval histogram is added into its total and reset — 1.7–2.0 ms per
//! publication with the production feeds, a stall for every frame arriving meanwhile if the
//! consumer did it. Instead the consumer fills an [`IntervalSet`] and, once per publish
//! interval, swaps it for a clean one: [`StatsLink::hand_over`] takes a clean set from this
//! thread's `clean` channel (O(1); none there: the thread is behind, so the consumer keeps
//! filling its set and tries again next interval — no sample lost, never a wait), swaps the two
//! (pointer swaps) and sends the filled set on the `filled` channel. This thread, polling that
//! channel every [`POLL`] (so a hand-over never has a sleeping receiver to wake), adds it into
//! the totals, publishes, resets it and sends it back.
//!
//! Queues: `filled` and `clean` are bounded crossbeam channels of [`SETS`] − 1 slots; exactly
//! [`SETS`] sets exist and the consumer always holds one, so neither can be full and a send
//! never blocks. Shutdown: [`StatsLink::finish`] hands over the last set (waiting for a clean
//! one, the only wait, at shutdown only), closes `filled`, and joins the thread, which ends when
//! `filled` is closed and empty (within [`POLL`]) — so the final publication is made before the
//! consumer returns.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use hdrhistogram::Histogram;

use crate::consumer::thread::{new_histogram, Published, SharedPublished};
use crate::relay::subscribers::SubscriberStats;

/// Interval sets in circulation: the one the consumer fills and two spares.
pub const SETS: usize = 3;

/// How often the `stats` thread looks for a filled set.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// What the consumer measures between two hand-overs, one histogram per feed (config order),
/// and the subscriber counters as of the hand-over.
#[derive(Debug)]
pub struct IntervalSet {
    /// `t_relay − t_recv` of the frames relayed to at least one subscriber, ns.
    pub latency: Vec<Histogram<u64>>,
    /// Frame read → frame queued, ns.
    pub parse: Vec<Histogram<u64>>,
    /// Frame queued → taken by the consumer, ns.
    pub queue_wait: Vec<Histogram<u64>>,
    /// Per subscriber, filled at the hand-over; its allocation circulates with the set.
    pub subscribers: Vec<SubscriberStats>,
}

impl IntervalSet {
    /// Empty histograms for `feeds` feeds.
    pub fn new(feeds: usize) -> Self {
        IntervalSet {
            latency: (0..feeds).map(|_| new_histogram()).collect(),
            parse: (0..feeds).map(|_| new_histogram()).collect(),
            queue_wait: (0..feeds).map(|_| new_histogram()).collect(),
            subscribers: Vec::new(),
        }
    }

    /// Empties every histogram (keeps their buckets).
    fn reset(&mut self) {
        for h in self
            .latency
            .iter_mut()
            .chain(&mut self.parse)
            .chain(&mut self.queue_wait)
        {
            h.reset();
        }
    }

    /// Adds `other`'s samples into this set (the cold path that keeps a sample the hand-over
    /// could not send).
    fn absorb(&mut self, other: &IntervalSet) {
        for (mine, theirs) in [
            (&mut self.latency, &other.latency),
            (&mut self.parse, &other.parse),
            (&mut self.queue_wait, &other.queue_wait),
        ] {
            for (m, t) in mine.iter_mut().zip(theirs) {
                let _ = m.add(t);
            }
        }
    }
}

/// Adds a filled set into the totals and publishes a new version (on the `stats` thread, or on
/// the consumer when that thread could not be started). Leaves `set` reset.
pub fn publish_set(published: &SharedPublished, set: &mut IntervalSet) {
    {
        let mut p = published.write();
        let p: &mut Published = &mut p;
        for (total, h) in p.parse_total.iter_mut().zip(&set.parse) {
            let _ = total.add(h);
        }
        for (total, h) in p.queue_wait_total.iter_mut().zip(&set.queue_wait) {
            let _ = total.add(h);
        }
        for (i, h) in set.latency.iter().enumerate() {
            if let Some(total) = p.latency_total.get_mut(i) {
                let _ = total.add(h);
            }
            if let Some(recent) = p.latency_recent.get_mut(i) {
                recent.reset();
                let _ = recent.add(h);
            }
        }
        std::mem::swap(&mut p.subscribers, &mut set.subscribers);
    }
    set.reset();
}

/// The consumer's end of the `stats` thread.
#[derive(Debug)]
pub struct StatsLink {
    /// Filled sets to the thread; `None` after [`finish`](Self::finish).
    filled: Option<Sender<IntervalSet>>,
    /// Clean sets from the thread.
    clean: Receiver<IntervalSet>,
    thread: Option<JoinHandle<()>>,
}

impl StatsLink {
    /// Starts the `stats` thread publishing into `published` for `feeds` feeds, with
    /// [`SETS`] − 1 clean sets ready. Fails only when the thread cannot be spawned.
    pub fn start(published: SharedPublished, feeds: usize) -> std::io::Result<StatsLink> {
        let (filled_tx, filled_rx) = bounded::<IntervalSet>(SETS - 1);
        let (clean_tx, clean_rx) = bounded::<IntervalSet>(SETS - 1);
        for _ in 0..SETS - 1 {
            // Capacity SETS − 1 and nothing received yet: never full.
            let _ = clean_tx.try_send(IntervalSet::new(feeds));
        }
        let thread = std::thread::Builder::new()
            .name("stats".into())
            .spawn(move || loop {
                // Polled, never a blocking `recv`: a receiver waiting in `recv` would make every
                // hand-over wake it (a futex syscall, and on a busy machine a switch to this
                // thread) on the consumer's time. A publication is at most POLL late.
                match filled_rx.try_recv() {
                    Ok(mut set) => {
                        publish_set(&published, &mut set);
                        // Never full (see the module doc); the consumer may be gone (shutdown):
                        // the set is then dropped.
                        let _ = clean_tx.try_send(set);
                    }
                    Err(TryRecvError::Empty) => std::thread::sleep(POLL),
                    Err(TryRecvError::Disconnected) => return,
                }
            })?;
        Ok(StatsLink {
            filled: Some(filled_tx),
            clean: clean_rx,
            thread: Some(thread),
        })
    }

    /// Hands the filled `current` to the thread for publication and leaves a clean set in its
    /// place, with `fill_subscribers` writing the subscriber counters into the outgoing set.
    /// Never blocks: false (and `current` untouched, still accumulating) when no clean set is
    /// back yet.
    pub fn hand_over(
        &mut self,
        current: &mut IntervalSet,
        fill_subscribers: impl FnOnce(&mut Vec<SubscriberStats>),
    ) -> bool {
        let Some(filled) = &self.filled else {
            return false;
        };
        let Ok(mut set) = self.clean.try_recv() else {
            return false;
        };
        std::mem::swap(current, &mut set);
        fill_subscribers(&mut set.subscribers);
        match filled.try_send(set) {
            Ok(()) => true,
            // Cannot happen (see the module doc); keep the samples rather than lose them.
            Err(TrySendError::Full(set) | TrySendError::Disconnected(set)) => {
                current.absorb(&set);
                false
            }
        }
    }

    /// At shutdown: publishes `current` (waiting for a clean set if need be), closes the
    /// channel and joins the thread. False when the thread panicked (then nothing more is
    /// published).
    pub fn finish(
        &mut self,
        current: &mut IntervalSet,
        fill_subscribers: impl FnOnce(&mut Vec<SubscriberStats>),
    ) -> bool {
        if let Some(filled) = self.filled.take() {
            if let Ok(mut set) = self.clean.recv() {
                std::mem::swap(current, &mut set);
                fill_subscribers(&mut set.subscribers);
                let _ = filled.send(set);
            }
        }
        match self.thread.take() {
            Some(t) => t.join().is_ok(),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::base::publication::Publication;

    fn filled(feeds: usize, n: u64) -> IntervalSet {
        let mut s = IntervalSet::new(feeds);
        for h in s.latency.iter_mut().chain(&mut s.parse) {
            for v in 1..=n {
                let _ = h.record(v * 1_000);
            }
        }
        s
    }

    #[test]
    fn every_sample_is_published_once_even_when_the_thread_is_behind() {
        let published: SharedPublished = Arc::new(Publication::new(Published::new(2)));
        let mut link = StatsLink::start(published.clone(), 2).unwrap();
        let mut cur = IntervalSet::new(2);
        let mut handed = 0;
        for round in 0..50u64 {
            let _ = cur.latency[0].record(round + 1);
            let _ = cur.parse[1].record(round + 1);
            // Back to back: some hand-overs find no clean set and keep accumulating.
            if link.hand_over(&mut cur, |s| s.clear()) {
                handed += 1;
            }
        }
        assert!(link.finish(&mut cur, |s| s.clear()));
        let p = published.load();
        assert_eq!(
            p.latency_total[0].len(),
            50,
            "no sample lost or counted twice"
        );
        assert_eq!(p.parse_total[1].len(), 50);
        assert_eq!(p.latency_total[1].len(), 0);
        assert!(handed >= 1);
        assert_eq!(cur.latency[0].len(), 0, "the last set was handed over");
    }

    #[test]
    fn a_hand_over_never_waits_for_the_thread() {
        let published: SharedPublished = Arc::new(Publication::new(Published::new(1)));
        // Hold the writers' lock: the thread blocks in its first publication.
        let mut link = StatsLink::start(published.clone(), 1).unwrap();
        let guard = published.write();
        let mut cur = filled(1, 10);
        let mut ok = 0;
        let t0 = Instant::now();
        for _ in 0..10 {
            ok += usize::from(link.hand_over(&mut cur, |_| {}));
        }
        assert!(t0.elapsed().as_millis() < 1_000);
        assert_eq!(
            ok,
            SETS - 1,
            "only the spares; then the consumer keeps its set"
        );
        drop(guard);
        assert!(link.finish(&mut cur, |_| {}));
        assert_eq!(published.load().latency_total[0].len(), 10);
    }

    /// The publish step's cost on the consumer, before (the publication done inline, as the
    /// consumer did it) and after (the hand-over), with 9 feeds of filled histograms: median and
    /// worst of 200. A measurement, not a check:
    /// `cargo test --profile bench-instr --lib consumer::stats -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn measure_publish_step() {
        use std::time::Duration;
        const FEEDS: usize = 9;
        const ROUNDS: usize = 200;
        fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
            v.sort();
            (v[v.len() / 2], v[v.len() - 1])
        }
        let published: SharedPublished = Arc::new(Publication::new(Published::new(FEEDS)));
        let mut before = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let mut inline = filled(FEEDS, 5_000);
            let t = Instant::now();
            publish_set(&published, &mut inline);
            before.push(t.elapsed());
        }
        let published: SharedPublished = Arc::new(Publication::new(Published::new(FEEDS)));
        let mut link = StatsLink::start(published, FEEDS).unwrap();
        let mut after = Vec::with_capacity(ROUNDS);
        let mut cur = IntervalSet::new(FEEDS);
        let mut handed = 0;
        for _ in 0..ROUNDS {
            cur.absorb(&filled(FEEDS, 5_000));
            // Half a publish interval is plenty for the thread; 20 ms keeps the test short.
            std::thread::sleep(Duration::from_millis(20));
            let t = Instant::now();
            let ok = link.hand_over(&mut cur, |s| s.clear());
            after.push(t.elapsed());
            handed += usize::from(ok);
        }
        assert!(link.finish(&mut cur, |_| {}));
        let (b50, bmax) = median_max(before);
        let (a50, amax) = median_max(after);
        eprintln!(
            "publish step on the consumer, {FEEDS} feeds x 3 histograms: inline median {b50:?} max {bmax:?}; hand-over median {a50:?} max {amax:?} ({handed} of {ROUNDS} handed over)"
        );
    }
}
