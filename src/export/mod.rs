//! Recordings out to other tools' formats: `mdrelay export` (the command is `cli::export`).
//!
//! The events come from the venue parsers, with their book synchronisation, exactly as the relay
//! and `mdrelay decode` see them; this module only converts normalized events and writes files.
//!
//! - `hftbacktest.rs`: [`hftbacktest`], events → hftbacktest's normalized event rows (depth
//!   clear / snapshot / diff, trades), the counts of what was converted, skipped or reported,
//!   and the `.npz` container its `BacktestAsset().data([...])` loads.
//! - `order.rs`: [`order`], the order hftbacktest requires of those rows: exchange-timeline
//!   rows by exchange time, local-timeline rows by local time, each row flagged for the
//!   timeline(s) it belongs to.

pub mod hftbacktest;
pub mod order;
