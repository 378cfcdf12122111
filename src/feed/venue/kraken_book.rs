//! The local book Kraken v1 and v2 keep per instrument, and Kraken's CRC32 book checksum: both
//! protocol versions follow the same book rules (truncation to the subscribed depth, removals for
//! levels pushed out of scope, the bad-book policy after a mismatch, crossed-book reporting),
//! described in [`super::kraken_v1`]'s module doc.
//!
//! The checksum is CRC32 over the top 10 asks (lowest first) then the top 10 bids (highest first),
//! each level's price then size written with the instrument's decimals, `.` removed and leading
//! zeros stripped (Kraken's "Book Checksum" guides, v1 and v2). It is computed without allocating.
//!
//! Used by the Kraken parsers on their collector thread; never blocks.

use std::fmt::Write as _;

use rustc_hash::FxHashMap;

use super::Sink;
use crate::market::book::{BookSide, L2Book};
use crate::market::event::{Event, Level, Status, StatusCode};
use crate::market::fixed;

/// Levels per side that enter a Kraken book checksum (v1 and v2).
pub const CHECKSUM_LEVELS: usize = 10;

/// Kraken's book checksum of `book` (v1 and v2): CRC32 over the top 10 asks (ascending) then the
/// top 10 bids (descending), each price and size written with `price_places` / `qty_places`
/// decimals ([`fixed::format_fixed_places`]), `.` removed and leading zeros stripped.
pub fn book_checksum(book: &L2Book, price_places: u32, qty_places: u32) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for l in book.asks().take(CHECKSUM_LEVELS) {
        hash_checksum_field(&mut h, l.price, price_places);
        hash_checksum_field(&mut h, l.size, qty_places);
    }
    for l in book.bids().take(CHECKSUM_LEVELS) {
        hash_checksum_field(&mut h, l.price, price_places);
        hash_checksum_field(&mut h, l.size, qty_places);
    }
    h.finalize()
}

/// Feeds `format_fixed_places(v, places)` with `.` removed and leading zeros stripped to `h`,
/// without allocating: for v ≥ 0 that text is the decimal digits of `v · 10^places / 10^8`
/// (nothing at all for 0).
fn hash_checksum_field(h: &mut crc32fast::Hasher, v: i64, places: u32) {
    if v < 0 || places > 20 {
        // Never seen on Kraken; spelled out through the reference formatting.
        let s = fixed::format_fixed_places(v, places).replace('.', "");
        h.update(s.trim_start_matches('0').as_bytes());
        return;
    }
    let mag = u128::from(v.unsigned_abs());
    let n = if places <= fixed::DECIMALS {
        mag / 10u128.pow(fixed::DECIMALS - places)
    } else {
        mag * 10u128.pow(places - fixed::DECIMALS)
    };
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    let mut n = n;
    while n > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    h.update(&buf[i..]);
}

/// Counts of book checksums checked on this connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumStats {
    /// Checksums that matched the local book.
    pub verified: u64,
    /// Checksums that did not.
    pub mismatched: u64,
    /// Checksums not checked: the book was not in sync (before its snapshot, after a mismatch) or,
    /// on v2, the symbol's precision was unknown.
    pub unverified: u64,
}

/// What checking one venue checksum against the local book found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The message carried no checksum.
    Absent,
    /// It matched.
    Verified,
    /// Not checked: the book is not in sync (no snapshot yet, or bad since a mismatch).
    NotInSync,
    /// Not checked: the instrument's precision is unknown (v2 only).
    UnknownPrecision,
    /// It did not match; the book is now marked bad.
    Mismatch {
        /// The venue's checksum.
        venue: u32,
        /// The local book's.
        local: u32,
    },
}

/// The local book of one Kraken instrument (a v1 pair or a v2 symbol) and its verification state.
#[derive(Debug)]
pub(super) struct KrakenBook {
    /// The book; never deeper than `depth` levels a side once a message has been applied.
    pub(super) book: L2Book,
    /// Subscribed depth, levels a side (v1: from the channel name `book-100`; v2: the
    /// subscription); always ≥ 1.
    pub(super) depth: usize,
    /// Decimals (price, size) the venue writes for this instrument, when known (v1 learns them
    /// from the snapshot's strings; v2 keeps them in the parser's precision table instead).
    pub(super) places: Option<(u32, u32)>,
    /// True from a snapshot until a checksum mismatch. Checksums are verified only while true;
    /// while false every update is emitted with `may_be_bad`.
    pub(super) in_sync: bool,
    /// The book was crossed after the last message (a `CrossedBook` status goes out on the edge).
    crossed: bool,
    /// Checksum mismatches on this instrument since the parser was created.
    mismatches: u64,
    /// A "checksum unverifiable" status has been sent for this instrument (at most one, v2).
    pub(super) warned_unverifiable: bool,
}

impl KrakenBook {
    /// An empty, not yet synchronized book of `depth` levels a side.
    pub(super) fn new(depth: usize) -> KrakenBook {
        KrakenBook {
            book: L2Book::with_capacity(depth.min(1024) + 1),
            depth: depth.max(1),
            places: None,
            in_sync: false,
            crossed: false,
            mismatches: 0,
            warned_unverifiable: false,
        }
    }

    /// Applies one message's levels — a snapshot replaces the book and brings it in sync, an
    /// update changes it level by level — then truncates to `depth`, and writes the levels of the
    /// event to emit into `out_*`: for a snapshot the book's content, best first; for an update the
    /// message's levels followed by a size-0 level for each level the truncation dropped.
    pub(super) fn apply(
        &mut self,
        snapshot: bool,
        bids: &[Level],
        asks: &[Level],
        out_bids: &mut Vec<Level>,
        out_asks: &mut Vec<Level>,
    ) {
        out_bids.clear();
        out_asks.clear();
        if snapshot {
            self.book.apply_snapshot(bids, asks);
            self.book.truncate(self.depth);
            self.in_sync = true;
            out_bids.extend(self.book.bids());
            out_asks.extend(self.book.asks());
        } else {
            self.book.apply_delta(bids, asks);
            out_bids.extend_from_slice(bids);
            out_asks.extend_from_slice(asks);
            self.book.truncate_with(self.depth, |side, l| {
                let removal = Level {
                    price: l.price,
                    size: 0,
                };
                match side {
                    BookSide::Bid => out_bids.push(removal),
                    BookSide::Ask => out_asks.push(removal),
                }
            });
        }
    }

    /// Checks the venue's `checksum` (if any) against the book formatted with `places`; a
    /// mismatch marks the book bad. Counts the outcome in `stats`.
    pub(super) fn verify(
        &mut self,
        checksum: Option<u32>,
        places: Option<(u32, u32)>,
        stats: &mut ChecksumStats,
    ) -> Verdict {
        let Some(venue) = checksum else {
            return Verdict::Absent;
        };
        if !self.in_sync {
            stats.unverified += 1;
            return Verdict::NotInSync;
        }
        let Some((price_places, qty_places)) = places else {
            stats.unverified += 1;
            return Verdict::UnknownPrecision;
        };
        let local = book_checksum(&self.book, price_places, qty_places);
        if local == venue {
            stats.verified += 1;
            Verdict::Verified
        } else {
            stats.mismatched += 1;
            self.mismatches += 1;
            self.in_sync = false;
            Verdict::Mismatch { venue, local }
        }
    }

    /// Emits the status events that follow a book event: `ChecksumMismatch` + `Resync` for a
    /// mismatch (the caller queues the resubscribe), `CrossedBook` when the book just crossed.
    pub(super) fn report(
        &mut self,
        verdict: Verdict,
        symbol: &str,
        detail: &mut String,
        sink: &mut Sink<'_>,
    ) {
        if let Verdict::Mismatch { venue, local } = verdict {
            detail.clear();
            let _ = write!(detail, "book checksum: venue {venue}, local book {local}");
            sink(
                Some(symbol),
                &Event::Status(Status {
                    code: StatusCode::ChecksumMismatch,
                    count: self.mismatches,
                    detail,
                }),
            );
            sink(
                Some(symbol),
                &Event::Status(Status {
                    code: StatusCode::Resync,
                    count: self.mismatches,
                    detail: "book marked bad; resubscribing for a fresh snapshot",
                }),
            );
        }
        let crossed = self.book.is_crossed();
        if crossed && !self.crossed {
            sink(
                Some(symbol),
                &Event::Status(Status {
                    code: StatusCode::CrossedBook,
                    count: 1,
                    detail: "best bid at or above best ask after a book message",
                }),
            );
        }
        self.crossed = crossed;
    }
}

/// `symbol`'s book, created (empty, `depth` levels a side) if it does not exist yet.
pub(super) fn book_for<'m>(
    books: &'m mut FxHashMap<String, KrakenBook>,
    symbol: &str,
    depth: usize,
) -> Option<&'m mut KrakenBook> {
    if !books.contains_key(symbol) {
        books.insert(symbol.to_owned(), KrakenBook::new(depth));
    }
    books.get_mut(symbol)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The allocation-free checksum field matches the reference text transformation.
        #[test]
        fn checksum_field_matches_reference_formatting(v in 0i64..=i64::MAX, places in 0u32..=12) {
            let reference = fixed::format_fixed_places(v, places).replace('.', "");
            let mut a = crc32fast::Hasher::new();
            a.update(reference.trim_start_matches('0').as_bytes());
            let mut b = crc32fast::Hasher::new();
            hash_checksum_field(&mut b, v, places);
            proptest::prop_assert_eq!(a.finalize(), b.finalize());
        }
    }
}
