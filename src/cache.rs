//! The live cache: per instrument, its definition and the latest trade and quote, kept as the
//! encoded frames themselves so a late joiner receives exactly the bytes live subscribers got
//! (re-flagged [`flags::CACHED`]).
//!
//! Owned by the consumer thread alone; no locks. Also the guard of instrument-id ownership:
//! a frame is accepted only from the feed that defined its id, and only after the definition.

use rustc_hash::FxHashMap;

use crate::instrument::InstrumentId;
use crate::protocol::{self, flags, FrameBuf, Header, MsgType};

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
            _ => {}
        }
        Ok(())
    }

    /// Appends what a new subscriber needs before live frames: every definition, then the
    /// cached latest quote and trade of each instrument, flagged CACHED.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        for id in &self.order {
            if let Some(e) = self.entries.get(id) {
                out.extend_from_slice(&e.def);
            }
        }
        for id in &self.order {
            let Some(e) = self.entries.get(id) else {
                continue;
            };
            for f in [&e.last_quote, &e.last_trade].into_iter().flatten() {
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
    use crate::event::{Side, Trade};
    use crate::protocol::{decode_frame, encode_instrument_def, encode_trade, peek_header, Meta};

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
}
