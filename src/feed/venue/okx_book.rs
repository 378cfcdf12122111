//! The local book OKX v5 parsers keep per instrument: an [`L2Book`] plus each level's text exactly
//! as OKX wrote it, because OKX's CRC32 checksum is computed over those strings (`"5.16"` and
//! `"5.160"` are one price but two checksums), and the `seqId` / `prevSeqId` chain.
//!
//! Checksum (OKX v5 "Order book" guide, "Checksum"): the top 25 bids and asks, interleaved
//! best-first as `bid1px:bid1sz:ask1px:ask1sz:bid2px:…` (when one side is shorter the other side's
//! remaining levels follow alone), CRC32 (the zlib polynomial) of that text, compared as a signed
//! 32-bit integer. A checksum of 0 is "not computed" (OKX announced it stopped filling the field)
//! and is never a mismatch; the seqId chain is then the only check.
//!
//! Sequence (same guide, "seqId"): a snapshot has `prevSeqId = -1`; every later message's
//! `prevSeqId` equals the previous message's `seqId`. A heartbeat update (no level changed) repeats
//! the seqId (`prevSeqId == seqId`); after a venue sequence reset the seqId may be smaller than the
//! prevSeqId — neither is a break. Anything else is a break.
//!
//! Owned by the OKX parser on its collector thread; never blocks; allocates only when a level
//! text exceeds [`TEXT_INLINE`] bytes or a side outgrows its high-water mark.

use std::ops::Range;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::market::book::{BookSide, L2Book};
use crate::market::event::Level;

/// Levels per side that enter an OKX checksum.
pub const CHECKSUM_LEVELS: usize = 25;

/// Bytes of a level's `price:size` text kept inline before it goes to the heap.
pub const TEXT_INLINE: usize = 40;

/// One level of a message: its value and where its strings sit in the raw message.
#[derive(Debug, Clone)]
pub(super) struct RawLevel {
    /// The parsed level.
    pub(super) level: Level,
    /// The price text's byte range in the message.
    pub(super) px: Range<usize>,
    /// The size text's byte range in the message.
    pub(super) sz: Range<usize>,
}

/// What checking a message against the book found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing to check (no checksum or 0, and no seqId chain).
    Unchecked,
    /// Everything present matched.
    Verified,
    /// Not checked: the book is not in sync (no snapshot yet, or bad since a break).
    NotInSync,
    /// `prevSeqId` did not continue the chain.
    Break {
        /// The seqId the book was at.
        expected: i64,
        /// The message's prevSeqId.
        prev: i64,
    },
    /// The checksum did not match the local book.
    Mismatch {
        /// The venue's checksum.
        venue: i32,
        /// The local book's.
        local: i32,
    },
}

/// Counts of book checks on this parser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BookStats {
    /// Non-zero checksums that matched the local book.
    pub checksums_verified: u64,
    /// Non-zero checksums that did not.
    pub checksums_mismatched: u64,
    /// Checksums that were 0 (not filled by the venue) and so not checked.
    pub checksums_zero: u64,
    /// seqId chain breaks.
    pub sequence_breaks: u64,
}

/// The book of one OKX instrument and its verification state.
#[derive(Debug)]
pub(super) struct OkxBook {
    /// Levels; never deeper than `max_depth` a side after a message.
    pub(super) book: L2Book,
    /// `price:size` text of every bid level in `book`, by price.
    bid_text: FxHashMap<i64, SmallVec<[u8; TEXT_INLINE]>>,
    /// Likewise for asks.
    ask_text: FxHashMap<i64, SmallVec<[u8; TEXT_INLINE]>>,
    /// seqId of the last message applied, when the channel sends one.
    seq: Option<i64>,
    /// True from a snapshot until a checksum mismatch or a seqId break.
    pub(super) in_sync: bool,
    /// Crossed after the last message (a status goes out on the edge).
    pub(super) crossed: bool,
    /// Mismatches and breaks on this instrument (the count of its Resync statuses).
    pub(super) resyncs: u64,
    /// Levels a side kept at most; ≥ 1.
    max_depth: usize,
}

impl OkxBook {
    /// An empty book waiting for its snapshot, keeping at most `max_depth` levels a side.
    pub(super) fn new(max_depth: usize) -> OkxBook {
        OkxBook {
            book: L2Book::with_capacity(max_depth.min(512)),
            bid_text: FxHashMap::default(),
            ask_text: FxHashMap::default(),
            seq: None,
            in_sync: false,
            crossed: false,
            resyncs: 0,
            max_depth: max_depth.max(1),
        }
    }

    /// Checks `prev_seq` against the chain (before the message is applied) and records `seq`.
    /// A snapshot starts a new chain.
    pub(super) fn check_seq(
        &mut self,
        snapshot: bool,
        prev_seq: Option<i64>,
        seq: Option<i64>,
    ) -> Option<Verdict> {
        let last = self.seq;
        self.seq = seq.or(last);
        if snapshot || !self.in_sync {
            return None;
        }
        match (last, prev_seq) {
            (Some(expected), Some(prev)) if prev != expected => {
                Some(Verdict::Break { expected, prev })
            }
            _ => None,
        }
    }

    /// Applies one message: a snapshot replaces the book (and brings it in sync), an update sets
    /// level by level (size 0 removes). Then drops levels beyond `max_depth`, appending a size-0
    /// level for each to `removed_bids` / `removed_asks`.
    pub(super) fn apply(
        &mut self,
        raw: &str,
        snapshot: bool,
        bids: &[RawLevel],
        asks: &[RawLevel],
        removed_bids: &mut Vec<Level>,
        removed_asks: &mut Vec<Level>,
    ) {
        if snapshot {
            self.book.clear();
            self.bid_text.clear();
            self.ask_text.clear();
            self.in_sync = true;
        }
        for (side, levels) in [(BookSide::Bid, bids), (BookSide::Ask, asks)] {
            let texts = match side {
                BookSide::Bid => &mut self.bid_text,
                BookSide::Ask => &mut self.ask_text,
            };
            for l in levels {
                self.book.set(side, l.level.price, l.level.size);
                if l.level.size <= 0 {
                    texts.remove(&l.level.price);
                    continue;
                }
                let px = raw.get(l.px.clone()).unwrap_or_default().as_bytes();
                let sz = raw.get(l.sz.clone()).unwrap_or_default().as_bytes();
                let t = texts.entry(l.level.price).or_default();
                t.clear();
                t.extend_from_slice(px);
                t.push(b':');
                t.extend_from_slice(sz);
            }
        }
        let (bid_text, ask_text) = (&mut self.bid_text, &mut self.ask_text);
        self.book.truncate_with(self.max_depth, |side, l| {
            let removal = Level {
                price: l.price,
                size: 0,
            };
            match side {
                BookSide::Bid => {
                    bid_text.remove(&l.price);
                    removed_bids.push(removal);
                }
                BookSide::Ask => {
                    ask_text.remove(&l.price);
                    removed_asks.push(removal);
                }
            }
        });
    }

    /// OKX's checksum of the book: CRC32 of the top 25 levels interleaved (module doc), as i32.
    pub(super) fn checksum(&self) -> i32 {
        let mut h = crc32fast::Hasher::new();
        let mut bids = self.book.bids().take(CHECKSUM_LEVELS);
        let mut asks = self.book.asks().take(CHECKSUM_LEVELS);
        let mut first = true;
        let mut put = |h: &mut crc32fast::Hasher, t: Option<&SmallVec<[u8; TEXT_INLINE]>>| {
            if let Some(t) = t {
                if !first {
                    h.update(b":");
                }
                first = false;
                h.update(t);
            }
        };
        loop {
            let (b, a) = (bids.next(), asks.next());
            if b.is_none() && a.is_none() {
                break;
            }
            put(&mut h, b.and_then(|l| self.bid_text.get(&l.price)));
            put(&mut h, a.and_then(|l| self.ask_text.get(&l.price)));
        }
        // The venue's value is the CRC's bits read as a signed 32-bit integer.
        h.finalize() as i32
    }

    /// Checks the venue's `checksum` (absent or 0: not checked) against the book after the
    /// message; a mismatch takes the book out of sync.
    pub(super) fn verify(&mut self, checksum: Option<i64>, stats: &mut BookStats) -> Verdict {
        let venue = match checksum {
            None => return Verdict::Unchecked,
            Some(0) => {
                stats.checksums_zero += 1;
                return Verdict::Unchecked;
            }
            Some(c) => c as i32,
        };
        if !self.in_sync {
            return Verdict::NotInSync;
        }
        let local = self.checksum();
        if local == venue {
            stats.checksums_verified += 1;
            Verdict::Verified
        } else {
            stats.checksums_mismatched += 1;
            self.in_sync = false;
            self.resyncs += 1;
            Verdict::Mismatch { venue, local }
        }
    }

    /// Records a seqId break: the book is out of sync until the next snapshot.
    pub(super) fn on_break(&mut self, stats: &mut BookStats) {
        stats.sequence_breaks += 1;
        self.in_sync = false;
        self.resyncs += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Levels of `text` (`"px:sz px:sz"`) as message levels over that very text.
    fn levels(text: &str) -> Vec<RawLevel> {
        let mut out = Vec::new();
        let mut at = 0;
        for tok in text.split(' ').filter(|t| !t.is_empty()) {
            let start = text[at..].find(tok).unwrap() + at;
            let colon = start + tok.find(':').unwrap();
            let end = start + tok.len();
            at = end;
            out.push(RawLevel {
                level: Level {
                    price: crate::market::fixed::parse(&text[start..colon]).unwrap(),
                    size: crate::market::fixed::parse(&text[colon + 1..end]).unwrap(),
                },
                px: start..colon,
                sz: colon + 1..end,
            });
        }
        out
    }

    #[test]
    fn checksum_interleaves_and_continues_the_longer_side() {
        // OKX guide's example: bids 3366.1:7, 3366:6; asks 3366.8:9, 3368:8, 3372:8.
        let bids = "3366.1:7 3366:6";
        let asks = "3366.8:9 3368:8 3372:8";
        let mut b = OkxBook::new(400);
        let (mut rb, mut ra) = (Vec::new(), Vec::new());
        b.apply(bids, true, &levels(bids), &[], &mut rb, &mut ra);
        b.apply(asks, false, &[], &levels(asks), &mut rb, &mut ra);
        let text = "3366.1:7:3366.8:9:3366:6:3368:8:3372:8";
        assert_eq!(b.checksum(), crc32fast::hash(text.as_bytes()) as i32);
        // Same values, other text: another checksum (strings count, not numbers).
        let mut c = OkxBook::new(400);
        let bids0 = "3366.10:7 3366:6";
        c.apply(bids0, true, &levels(bids0), &[], &mut rb, &mut ra);
        c.apply(asks, false, &[], &levels(asks), &mut rb, &mut ra);
        assert_ne!(c.checksum(), b.checksum());
    }

    #[test]
    fn zero_checksum_never_mismatches_and_chain_rules() {
        let mut st = BookStats::default();
        let mut b = OkxBook::new(400);
        assert_eq!(b.verify(Some(0), &mut st), Verdict::Unchecked);
        assert_eq!(b.check_seq(true, Some(-1), Some(10)), None);
        let (mut rb, mut ra) = (Vec::new(), Vec::new());
        b.apply("", true, &[], &[], &mut rb, &mut ra);
        // Continues; heartbeat repeats; reset to a smaller seqId continues too.
        assert_eq!(b.check_seq(false, Some(10), Some(12)), None);
        assert_eq!(b.check_seq(false, Some(12), Some(12)), None);
        assert_eq!(b.check_seq(false, Some(12), Some(3)), None);
        assert_eq!(
            b.check_seq(false, Some(5), Some(9)),
            Some(Verdict::Break {
                expected: 3,
                prev: 5
            })
        );
        assert_eq!(st.checksums_zero, 1);
    }

    #[test]
    fn truncation_reports_removed_levels_and_forgets_their_text() {
        let mut b = OkxBook::new(2);
        let bids = "3:1 2:1 1:1";
        let (mut rb, mut ra) = (Vec::new(), Vec::new());
        b.apply(bids, true, &levels(bids), &[], &mut rb, &mut ra);
        assert_eq!(
            rb,
            [Level {
                price: 100_000_000,
                size: 0
            }]
        );
        assert_eq!(b.book.bid_levels(), 2);
        assert_eq!(b.bid_text.len(), 2);
    }
}
