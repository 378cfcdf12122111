//! The live cache: per instrument, its definition and the latest trade, quote, mark and open
//! interest (liquidations are events, not state: never cached), kept as the
//! encoded frames themselves so a late joiner receives exactly the bytes live subscribers got
//! (re-flagged [`flags::CACHED`]), and the L2 book built from the book frames, which a late
//! joiner receives as one BookSnapshot (full depth: a snapshot cut to N levels would leave the
//! joiner without the levels that later deltas uncover).
//!
//! Owned by the consumer thread alone; no locks. Also the guard of instrument-id ownership:
//! a frame is accepted only from the feed that defined its id, and only after the definition.

use rustc_hash::FxHashMap;

use crate::market::book::L2Book;
use crate::market::event::{BookUpdate, Level};
use crate::market::instrument::InstrumentId;
use crate::wire::protocol::{self, flags, FrameBuf, Header, Message, Meta, MsgType};
use crate::wire::subscription::kinds;

/// What the cache holds for one instrument.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index of the feed that defined the id; frames of the id from any other feed are refused.
    pub feed: usize,
    /// The InstrumentDef frame.
    pub def: FrameBuf,
    /// Latest Trade frame.
    pub last_trade: Option<FrameBuf>,
    /// Latest Quote frame.
    pub last_quote: Option<FrameBuf>,
    /// Latest Mark frame (derivatives).
    pub last_mark: Option<FrameBuf>,
    /// Latest OpenInterest frame (derivatives).
    pub last_open_interest: Option<FrameBuf>,
    /// The book from every BookSnapshot/BookDelta of the id, with its last frame's header.
    pub book: Option<CachedBook>,
    /// The last closed Bar frame per interval (interval ns, frame), in order of first close.
    pub bars: Vec<(u64, FrameBuf)>,
}

/// An instrument's book as its frames built it.
#[derive(Debug, Clone)]
pub struct CachedBook {
    /// The levels.
    pub book: L2Book,
    /// Header of the last book frame applied (sequence, timestamps, flags).
    pub last: Header,
    /// Venue sequence of the last book frame (0: none).
    pub venue_sequence: u64,
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The id belongs to another feed (two names with one id, or two feeds for one instrument).
    ForeignId,
    /// An event for an id that was never defined.
    Undefined,
}

/// Per-instrument latest state. Insertion order is kept so late joiners see a stable order.
#[derive(Debug, Default)]
pub struct Cache {
    entries: FxHashMap<InstrumentId, Entry>,
    /// Ids in definition order; same set as `entries`' keys.
    order: Vec<InstrumentId>,
    /// Scratch level buffers for decoding book frames.
    bids: Vec<Level>,
    asks: Vec<Level>,
}

impl Cache {
    /// Takes in one frame from `feed`; `frame` is a whole verified frame with header `h`.
    #[inline]
    pub fn apply(&mut self, feed: usize, h: &Header, frame: &[u8]) -> Result<(), Refusal> {
        if h.instrument_id == 0 {
            return Ok(());
        }
        let t = MsgType::from_code(h.msg_type);
        if t == Some(MsgType::InstrumentDef) {
            return match self.entries.get(&h.instrument_id) {
                Some(e) if e.feed != feed => Err(Refusal::ForeignId),
                Some(_) => Ok(()),
                None => {
                    self.entries.insert(
                        h.instrument_id,
                        Entry {
                            feed,
                            def: FrameBuf::from_slice(frame),
                            last_trade: None,
                            last_quote: None,
                            last_mark: None,
                            last_open_interest: None,
                            book: None,
                            bars: Vec::new(),
                        },
                    );
                    self.order.push(h.instrument_id);
                    Ok(())
                }
            };
        }
        let e = self
            .entries
            .get_mut(&h.instrument_id)
            .ok_or(Refusal::Undefined)?;
        if e.feed != feed {
            return Err(Refusal::ForeignId);
        }
        match t {
            Some(MsgType::Trade) => store(&mut e.last_trade, frame),
            Some(MsgType::Quote) => store(&mut e.last_quote, frame),
            Some(MsgType::Mark) => store(&mut e.last_mark, frame),
            Some(MsgType::OpenInterest) => store(&mut e.last_open_interest, frame),
            Some(MsgType::BookSnapshot | MsgType::BookDelta) => {
                let Ok((f, _)) = protocol::decode_frame(frame) else {
                    return Ok(());
                };
                let Ok(Message::Book(b)) = f.message() else {
                    return Ok(());
                };
                self.bids.clear();
                self.bids.extend(b.bids());
                self.asks.clear();
                self.asks.extend(b.asks());
                let cb = e.book.get_or_insert_with(|| CachedBook {
                    book: L2Book::new(),
                    last: *h,
                    venue_sequence: 0,
                });
                if t == Some(MsgType::BookSnapshot) {
                    cb.book.apply_snapshot(&self.bids, &self.asks);
                } else {
                    cb.book.apply_delta(&self.bids, &self.asks);
                }
                cb.last = *h;
                cb.venue_sequence = b.venue_sequence;
            }
            _ => {}
        }
        Ok(())
    }

    /// Keeps `frame`, a Bar of `id` just relayed, as its last closed bar of `interval_ns`.
    pub fn store_bar(&mut self, id: InstrumentId, interval_ns: u64, frame: &[u8]) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        match e.bars.iter_mut().find(|(i, _)| *i == interval_ns) {
            Some((_, f)) => {
                f.clear();
                f.extend_from_slice(frame);
            }
            None => e.bars.push((interval_ns, FrameBuf::from_slice(frame))),
        }
    }

    /// Appends what a new subscriber needs before live frames: every definition, then per
    /// instrument its book, latest quote, trade, mark and open interest, and last bars, flagged
    /// CACHED.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        self.write_snapshot_selected(out, &mut |_, _, _| (true, kinds::ALL));
    }

    /// [`write_snapshot`](Self::write_snapshot) of a selection: `select(id, venue, symbol)`
    /// says whether to send the instrument's definition and which [`kinds`] of its cached state
    /// (book, quote, trade, mark, open interest, bars) to send.
    pub fn write_snapshot_selected(
        &self,
        out: &mut Vec<u8>,
        select: &mut dyn FnMut(InstrumentId, &str, &str) -> (bool, u8),
    ) {
        let mut chosen: Vec<(InstrumentId, u8)> = Vec::new();
        for id in &self.order {
            let Some(e) = self.entries.get(id) else {
                continue;
            };
            let Ok((f, _)) = protocol::decode_frame(&e.def) else {
                continue;
            };
            let Ok(Message::InstrumentDef { venue, symbol, .. }) = f.message() else {
                continue;
            };
            let (def, mask) = select(*id, venue, symbol);
            if def {
                out.extend_from_slice(&e.def);
            }
            if mask != 0 {
                chosen.push((*id, mask));
            }
        }
        let mut buf = FrameBuf::new();
        for (id, mask) in chosen {
            let Some(e) = self.entries.get(&id) else {
                continue;
            };
            let book = e.book.as_ref().filter(|_| mask & kinds::BOOK != 0);
            if let Some(cb) = book {
                let bids: Vec<Level> = cb.book.bids().collect();
                let asks: Vec<Level> = cb.book.asks().collect();
                let keep = cb.last.flags & flags::BOOK_MAY_BE_BAD;
                protocol::encode_book(
                    &mut buf,
                    &Meta {
                        instrument_id: id,
                        sequence: cb.last.sequence,
                        recv_ts_ns: cb.last.recv_ts_ns,
                        flags: flags::CACHED | keep,
                    },
                    &BookUpdate {
                        snapshot: true,
                        bids: &bids,
                        asks: &asks,
                        venue_sequence: (cb.venue_sequence != 0).then_some(cb.venue_sequence),
                        exchange_ts_ns: (cb.last.exchange_ts_ns != 0)
                            .then_some(cb.last.exchange_ts_ns),
                        may_be_bad: keep != 0,
                    },
                );
                out.extend_from_slice(&buf);
            }
            let quote = e.last_quote.as_ref().filter(|_| mask & kinds::QUOTE != 0);
            let trade = e.last_trade.as_ref().filter(|_| mask & kinds::TRADE != 0);
            let mark = e.last_mark.as_ref().filter(|_| mask & kinds::MARK != 0);
            let oi = e
                .last_open_interest
                .as_ref()
                .filter(|_| mask & kinds::OPEN_INTEREST != 0);
            let bars = e
                .bars
                .iter()
                .filter(|_| mask & kinds::BAR != 0)
                .map(|(_, f)| f);
            for f in [quote, trade, mark, oi].into_iter().flatten().chain(bars) {
                let at = out.len();
                out.extend_from_slice(f);
                protocol::add_flags(&mut out[at..], flags::CACHED);
            }
        }
    }

    /// The entry of `id`.
    pub fn get(&self, id: InstrumentId) -> Option<&Entry> {
        self.entries.get(&id)
    }

    /// Instruments known.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when no instrument is known.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[inline]
fn store(slot: &mut Option<FrameBuf>, frame: &[u8]) {
    match slot {
        Some(b) => {
            b.clear();
            b.extend_from_slice(frame);
        }
        None => *slot = Some(FrameBuf::from_slice(frame)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::event::{Side, Trade};
    use crate::wire::protocol::{
        decode_frame, encode_instrument_def, encode_trade, peek_header, Meta,
    };

    fn def(id: u32) -> FrameBuf {
        let mut b = FrameBuf::new();
        encode_instrument_def(
            &mut b,
            &Meta {
                instrument_id: id,
                ..Meta::default()
            },
            "v",
            "S",
        );
        b
    }
    fn trade(id: u32, seq: u64) -> FrameBuf {
        let mut b = FrameBuf::new();
        let t = Trade {
            price: 1,
            size: 1,
            side: Side::Buy,
            trade_id: None,
            exchange_ts_ns: None,
        };
        encode_trade(
            &mut b,
            &Meta {
                instrument_id: id,
                sequence: seq,
                ..Meta::default()
            },
            &t,
        );
        b
    }

    #[test]
    fn builds_the_book_and_snapshots_it_for_late_joiners() {
        use crate::wire::protocol::encode_book;
        let mut c = Cache::default();
        let d = def(9);
        c.apply(0, &peek_header(&d), &d).unwrap();
        let lv = |p, s| Level { price: p, size: s };
        let mut f = FrameBuf::new();
        let snap = BookUpdate {
            snapshot: true,
            bids: &[lv(10, 1), lv(9, 1)],
            asks: &[lv(11, 1)],
            venue_sequence: Some(5),
            exchange_ts_ns: None,
            may_be_bad: false,
        };
        encode_book(
            &mut f,
            &Meta {
                instrument_id: 9,
                sequence: 1,
                ..Meta::default()
            },
            &snap,
        );
        c.apply(0, &peek_header(&f), &f).unwrap();
        let delta = BookUpdate {
            snapshot: false,
            bids: &[lv(10, 0), lv(8, 3)],
            asks: &[lv(12, 2)],
            venue_sequence: Some(6),
            exchange_ts_ns: None,
            may_be_bad: false,
        };
        encode_book(
            &mut f,
            &Meta {
                instrument_id: 9,
                sequence: 2,
                ..Meta::default()
            },
            &delta,
        );
        c.apply(0, &peek_header(&f), &f).unwrap();
        let mut out = Vec::new();
        c.write_snapshot(&mut out);
        let (_, n) = decode_frame(&out).unwrap();
        let (f, _) = decode_frame(&out[n..]).unwrap();
        assert_eq!(
            f.header.flags & (flags::CACHED | flags::SNAPSHOT),
            flags::CACHED | flags::SNAPSHOT
        );
        assert_eq!(f.header.sequence, 2);
        let Message::Book(b) = f.message().unwrap() else {
            panic!()
        };
        assert_eq!(b.bids().collect::<Vec<_>>(), [lv(9, 1), lv(8, 3)]);
        assert_eq!(b.asks().collect::<Vec<_>>(), [lv(11, 1), lv(12, 2)]);
        assert_eq!(b.venue_sequence, 6);
    }

    #[test]
    fn keeps_latest_and_guards_ownership() {
        let mut c = Cache::default();
        let t = trade(5, 1);
        assert_eq!(c.apply(0, &peek_header(&t), &t), Err(Refusal::Undefined));
        let d = def(5);
        c.apply(0, &peek_header(&d), &d).unwrap();
        assert_eq!(c.apply(1, &peek_header(&d), &d), Err(Refusal::ForeignId));
        for seq in 1..=3 {
            let t = trade(5, seq);
            c.apply(0, &peek_header(&t), &t).unwrap();
        }
        let t = trade(5, 4);
        assert_eq!(c.apply(1, &peek_header(&t), &t), Err(Refusal::ForeignId));

        let mut out = Vec::new();
        c.write_snapshot(&mut out);
        let (f, n) = decode_frame(&out).unwrap();
        assert_eq!(f.header.msg_type, MsgType::InstrumentDef as u8);
        let (f, _) = decode_frame(&out[n..]).unwrap();
        assert_eq!(f.header.sequence, 3, "latest trade");
        assert_eq!(f.header.flags & flags::CACHED, flags::CACHED);
    }

    #[test]
    fn a_late_joiner_gets_the_latest_mark_and_open_interest_but_no_liquidation() {
        use crate::market::event::{Liquidation, LiquidationStatus, Mark, OpenInterest};
        use crate::market::fixed::ABSENT;
        use crate::wire::derivatives::{encode_liquidation, encode_mark, encode_open_interest};
        let mut c = Cache::default();
        let d = def(7);
        c.apply(0, &peek_header(&d), &d).unwrap();
        let meta = Meta {
            instrument_id: 7,
            sequence: 0,
            recv_ts_ns: 1,
            flags: 0,
        };
        let mark = |px| Mark {
            mark_price: px,
            index_price: px - 1,
            settle_price: ABSENT,
            funding_rate: 100,
            next_funding_ns: Some(9),
            exchange_ts_ns: None,
        };
        let mut f = FrameBuf::new();
        for (n, px) in [(1, 100), (2, 200)] {
            encode_mark(&mut f, &meta, n, &mark(px));
            c.apply(0, &peek_header(&f), &f).unwrap();
        }
        let oi = OpenInterest {
            open_interest: 5,
            value: ABSENT,
            exchange_ts_ns: Some(3),
        };
        encode_open_interest(&mut f, &meta, 1, &oi);
        c.apply(0, &peek_header(&f), &f).unwrap();
        let liq = Liquidation {
            side: Side::Buy,
            price: 1,
            avg_price: 1,
            size: 1,
            filled_size: 1,
            status: LiquidationStatus::Filled,
            exchange_ts_ns: None,
        };
        encode_liquidation(&mut f, &meta, 1, &liq);
        c.apply(0, &peek_header(&f), &f).unwrap();

        fn frames(out: &[u8]) -> Vec<(u16, Message<'_>)> {
            let mut at = 0;
            let mut got = Vec::new();
            while at < out.len() {
                let (f, n) = decode_frame(&out[at..]).unwrap();
                got.push((f.header.flags, f.message().unwrap()));
                at += n;
            }
            got
        }
        let mut out = Vec::new();
        c.write_snapshot(&mut out);
        let got = frames(&out);
        assert_eq!(got.len(), 3, "definition, mark, open interest: {got:?}");
        assert!(matches!(got[0].1, Message::InstrumentDef { .. }));
        assert_eq!(got[1].0, flags::CACHED);
        assert_eq!(
            got[1].1,
            Message::Mark {
                mark: mark(200),
                kind_sequence: 2
            },
            "the latest mark"
        );
        assert_eq!(got[2].0, flags::CACHED);
        assert_eq!(
            got[2].1,
            Message::OpenInterest {
                open_interest: oi,
                kind_sequence: 1
            }
        );

        // A subscription to marks only gets the mark.
        let mut out = Vec::new();
        c.write_snapshot_selected(&mut out, &mut |_, _, _| (false, kinds::MARK));
        let got = frames(&out);
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0].1, Message::Mark { .. }));
    }
}
