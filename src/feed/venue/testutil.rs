//! Test-only helpers shared by the venue parsers' unit tests (fixtures come from
//! [`crate::base::testutil::fixture`]).

use super::{Parsed, VenueParser};
use crate::market::event::{Event, Level};
use crate::market::fixed::Decimal;

/// One line per event, in a form a reader can check against the message by eye.
pub(crate) fn describe(sym: Option<&str>, ev: &Event<'_>) -> String {
    let sym = sym.unwrap_or("-");
    let lv = |ls: &[Level]| {
        ls.iter()
            .map(|l| format!("{}x{}", Decimal(l.price), Decimal(l.size)))
            .collect::<Vec<_>>()
            .join(",")
    };
    match ev {
        Event::Trade(t) => format!(
            "trade {sym} {} {}x{} t={:?} id={:?}",
            t.side.name(),
            Decimal(t.price),
            Decimal(t.size),
            t.exchange_ts_ns,
            t.trade_id
        ),
        Event::Quote(q) => format!(
            "quote {sym} {}x{} / {}x{} t={:?}",
            Decimal(q.bid_price),
            Decimal(q.bid_size),
            Decimal(q.ask_price),
            Decimal(q.ask_size),
            q.exchange_ts_ns
        ),
        Event::Book(b) if b.snapshot => format!(
            "snapshot {sym} bids={} asks={} best={}/{} t={:?} bad={}",
            b.bids.len(),
            b.asks.len(),
            lv(&b.bids[..1]),
            lv(&b.asks[..1]),
            b.exchange_ts_ns,
            b.may_be_bad
        ),
        Event::Book(b) => format!(
            "update {sym} bids=[{}] asks=[{}] t={:?} bad={}",
            lv(b.bids),
            lv(b.asks),
            b.exchange_ts_ns,
            b.may_be_bad
        ),
        Event::Status(s) => format!("status {sym} {} {}", s.code.name(), s.count),
        Event::Mark(m) => format!("mark {sym} {m:?}"),
        Event::Liquidation(l) => format!("liquidation {sym} {l:?}"),
        Event::OpenInterest(o) => format!("open_interest {sym} {o:?}"),
    }
}

/// Parses `raw` with `p` (receive time 1): the outcome, error as text, and every event as
/// [`describe`] writes it.
pub(crate) fn run<P: VenueParser + ?Sized>(
    p: &mut P,
    raw: &str,
) -> (Result<Parsed, String>, Vec<String>) {
    let mut out = Vec::new();
    let r = p.parse(raw, 1, &mut |sym, ev| out.push(describe(sym, ev)));
    (r.map_err(|e| e.to_string()), out)
}

/// Each of `cases` (a message, a text its error must contain), given to a fresh parser, is
/// refused with that error and emits nothing.
pub(crate) fn assert_refused<P: VenueParser>(new: impl Fn() -> P, cases: &[(&str, &str)]) {
    for &(raw, want) in cases {
        let (r, out) = run(&mut new(), raw);
        let err = r.expect_err(raw);
        assert!(err.contains(want), "{raw}: {err}");
        assert!(out.is_empty(), "{raw}: {out:?}");
    }
}
