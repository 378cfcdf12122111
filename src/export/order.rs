//! hftbacktest's event order: one array read by two processors. The exchange processor takes
//! the rows flagged [`EXCH_EVENT`] at their exchange time and needs them in non-decreasing
//! `exch_ts`; the local processor takes the rows flagged [`LOCAL_EVENT`] at their local
//! (receive) time and needs them in non-decreasing `local_ts` (hftbacktest's
//! `validate_event_order` checks exactly these two conditions).
//!
//! Recordings are in receive order, but exchange times are not always monotone in it (a venue
//! stamping several streams, a REST snapshot between diffs). [`two_timelines`] therefore orders
//! the rows both ways and walks the two orders together: a row at the head of both is written
//! once with both flags; otherwise the head with the earlier exchange time is written with only
//! its own flag, and the row reappears later, flagged for the other timeline, where that
//! timeline reaches it. Every input row is thus in the output exactly once with each flag, at
//! most twice in all; rows in order on both timelines (the usual case) are written once.
//! Ties keep arrival order, so a snapshot's clear row stays before its levels.
//!
//! This follows the behaviour hftbacktest documents for its `correct_event_order`
//! (py-hftbacktest `hftbacktest/data/validation.py`); it is written from that description.

use super::hftbacktest::{Row, EXCH_EVENT, LOCAL_EVENT};

/// `rows` (arrival order, no timeline flags) ordered and flagged for both timelines, as
/// described in the module documentation.
pub fn two_timelines(rows: &[Row]) -> Vec<Row> {
    let n = rows.len();
    // `sort_by_key` is stable: equal times keep arrival order.
    let mut by_exch: Vec<usize> = (0..n).collect();
    by_exch.sort_by_key(|&i| rows[i].exch_ts);
    let mut by_local: Vec<usize> = (0..n).collect();
    by_local.sort_by_key(|&i| rows[i].local_ts);
    let mut out = Vec::with_capacity(n + n / 16);
    let (mut e, mut l) = (0, 0);
    loop {
        let (flag, i) = match (by_exch.get(e), by_local.get(l)) {
            (Some(&x), Some(&y)) if x == y => {
                e += 1;
                l += 1;
                (EXCH_EVENT | LOCAL_EVENT, x)
            }
            (Some(&x), Some(&y)) if rows[x].exch_ts < rows[y].exch_ts => {
                e += 1;
                (EXCH_EVENT, x)
            }
            (_, Some(&y)) => {
                l += 1;
                (LOCAL_EVENT, y)
            }
            (Some(&x), None) => {
                e += 1;
                (EXCH_EVENT, x)
            }
            (None, None) => break,
        };
        let mut r = rows[i];
        r.ev |= flag;
        out.push(r);
    }
    out
}

/// True when `rows` satisfy hftbacktest's order: `exch_ts` non-decreasing over the
/// [`EXCH_EVENT`] rows and `local_ts` non-decreasing over the [`LOCAL_EVENT`] rows.
pub fn is_valid(rows: &[Row]) -> bool {
    let sorted = |flag: u64, ts: fn(&Row) -> i64| {
        let mut it = rows.iter().filter(|r| r.ev & flag != 0).map(ts);
        let mut prev = i64::MIN;
        it.all(|t| {
            let ok = t >= prev;
            prev = t;
            ok
        })
    };
    sorted(EXCH_EVENT, |r| r.exch_ts) && sorted(LOCAL_EVENT, |r| r.local_ts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::hftbacktest::{DEPTH_EVENT, TRADE_EVENT};

    fn row(ev: u64, exch_ts: i64, local_ts: i64, px: f64) -> Row {
        Row {
            ev,
            exch_ts,
            local_ts,
            px,
            qty: 1.0,
            order_id: 0,
            ival: 0,
            fval: 0.0,
        }
    }

    /// Each input row once per timeline, and the flags say which.
    fn check_each_once(input: &[Row], out: &[Row]) {
        for flag in [EXCH_EVENT, LOCAL_EVENT] {
            let mut got: Vec<f64> = out
                .iter()
                .filter(|r| r.ev & flag != 0)
                .map(|r| r.px)
                .collect();
            let mut want: Vec<f64> = input.iter().map(|r| r.px).collect();
            got.sort_by(f64::total_cmp);
            want.sort_by(f64::total_cmp);
            assert_eq!(got, want, "flag {flag:#x}");
        }
    }

    #[test]
    fn in_order_rows_are_written_once_with_both_flags() {
        let input: Vec<Row> = (0..5)
            .map(|i| row(DEPTH_EVENT, i, i + 100, i as f64))
            .collect();
        let out = two_timelines(&input);
        assert_eq!(out.len(), 5);
        assert!(out
            .iter()
            .all(|r| r.ev == DEPTH_EVENT | EXCH_EVENT | LOCAL_EVENT));
        assert!(is_valid(&out));
    }

    #[test]
    fn an_exchange_time_inversion_splits_only_the_rows_involved() {
        // Received a, b, c; exchange times say b came first.
        let input = [
            row(TRADE_EVENT, 20, 100, 1.0),
            row(TRADE_EVENT, 10, 101, 2.0),
            row(TRADE_EVENT, 30, 102, 3.0),
        ];
        let out = two_timelines(&input);
        assert!(is_valid(&out));
        check_each_once(&input, &out);
        // b (exchange only), a (both), b (local only), c (both).
        let seq: Vec<(f64, u64)> = out
            .iter()
            .map(|r| (r.px, r.ev & (EXCH_EVENT | LOCAL_EVENT)))
            .collect();
        assert_eq!(
            seq,
            [
                (2.0, EXCH_EVENT),
                (1.0, EXCH_EVENT | LOCAL_EVENT),
                (2.0, LOCAL_EVENT),
                (3.0, EXCH_EVENT | LOCAL_EVENT),
            ]
        );
    }

    #[test]
    fn out_of_order_local_times_are_sorted_and_ties_keep_arrival_order() {
        let input = [
            row(DEPTH_EVENT, 5, 200, 1.0),
            row(DEPTH_EVENT, 5, 100, 2.0),
            row(DEPTH_EVENT, 5, 100, 3.0),
            row(DEPTH_EVENT, 1, 300, 4.0),
        ];
        let out = two_timelines(&input);
        assert!(is_valid(&out));
        check_each_once(&input, &out);
        let local: Vec<f64> = out
            .iter()
            .filter(|r| r.ev & LOCAL_EVENT != 0)
            .map(|r| r.px)
            .collect();
        assert_eq!(local, [2.0, 3.0, 1.0, 4.0]);
        let exch: Vec<f64> = out
            .iter()
            .filter(|r| r.ev & EXCH_EVENT != 0)
            .map(|r| r.px)
            .collect();
        assert_eq!(exch, [4.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn validity_check_catches_each_timeline() {
        let a = row(DEPTH_EVENT | EXCH_EVENT, 2, 0, 0.0);
        let b = row(DEPTH_EVENT | EXCH_EVENT, 1, 0, 0.0);
        assert!(!is_valid(&[a, b]));
        let a = row(DEPTH_EVENT | LOCAL_EVENT, 0, 2, 0.0);
        let b = row(DEPTH_EVENT | LOCAL_EVENT, 0, 1, 0.0);
        assert!(!is_valid(&[a, b]));
        // Out of order only on a timeline the rows are not flagged for: fine.
        let a = row(DEPTH_EVENT | EXCH_EVENT, 1, 2, 0.0);
        let b = row(DEPTH_EVENT | EXCH_EVENT, 2, 1, 0.0);
        assert!(is_valid(&[a, b]));
        assert!(is_valid(&[]));
        assert!(two_timelines(&[]).is_empty());
    }
}
