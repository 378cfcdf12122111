//! Market data as values: exact fixed-point numbers, instruments, the events a venue message
//! turns into, order books and OHLCV bars. Pure data and algorithms: no threads, no I/O.
//!
//! - `fixed`: fixed-point prices and sizes (`i64`, 9 decimals) and their exact decimal text.
//! - `instrument`: venues, instrument ids (a hash of `venue:symbol`), the collector's registry.
//! - `event`: trades, quotes, book updates and statuses, as parsers produce them.
//! - `book`: the L2 order book a venue parser maintains (snapshot, deltas, top-N).
//! - `bars`: OHLCV bars, session statistics, `Decimal128` for exact volumes.

pub mod bars;
pub mod book;
pub mod event;
pub mod fixed;
pub mod instrument;
