//! Serde plumbing shared by the venue parsers: [`ErrSlot`], the side channel through which a
//! visitor reports the first number that did not convert as a typed [`ParseError`] (serde's own
//! errors carry only text), and [`LevelsSeed`], which reads a JSON array of price/size levels
//! into a reused buffer without allocating.
//!
//! Used on the collector thread of every feed, inside one `parse` call; nothing here blocks.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::Deserialize;

use super::{fixed_field, ParseError};
use crate::market::event::Level;

/// The typed error a deserializer raised during the current parse, kept so it survives serde's
/// string errors. One per parser; cleared at the start of every parse, taken at its end.
#[derive(Default)]
pub(super) struct ErrSlot(Cell<Option<ParseError>>);

impl ErrSlot {
    /// Forgets the error of an earlier parse.
    pub(super) fn clear(&self) {
        self.0.set(None);
    }

    /// Records `e` and returns a serde error with its text, which ends the deserialization.
    pub(super) fn fail<E: de::Error>(&self, e: ParseError) -> E {
        let msg = e.to_string();
        self.0.set(Some(e));
        E::custom(msg)
    }

    /// `r`, with its error recorded (see [`fail`](Self::fail)).
    pub(super) fn check<T, E: de::Error>(&self, r: Result<T, ParseError>) -> Result<T, E> {
        r.map_err(|e| self.fail(e))
    }

    /// A fixed-point decimal field ([`fixed_field`]); a failure is recorded.
    pub(super) fn fixed<E: de::Error>(&self, field: &'static str, s: &str) -> Result<i64, E> {
        self.check(fixed_field(field, s))
    }

    /// A size field ([`size_field`]); a failure is recorded.
    pub(super) fn size<E: de::Error>(&self, field: &'static str, s: &str) -> Result<i64, E> {
        self.check(size_field(field, s))
    }

    /// The error of a failed parse: the recorded typed one if there is one, else serde's `e`.
    pub(super) fn or_json(&self, e: serde_json::Error) -> ParseError {
        self.0.take().unwrap_or(ParseError::Json(e))
    }
}

/// A fixed-point size that must not be negative (Kraken volumes and quantities).
pub(super) fn size_field(field: &'static str, s: &str) -> Result<i64, ParseError> {
    let v = fixed_field(field, s)?;
    if v < 0 {
        return Err(ParseError::Invalid("negative size"));
    }
    Ok(v)
}

/// A level as a `["price","size"]` pair of decimal strings (Binance, Coinbase).
pub(super) type StrPair<'de> = (&'de str, &'de str);

/// A [`StrPair`] → a level; `size_field` names the size in errors (Binance `qty`, Coinbase
/// `size`). No sign check.
pub(super) fn pair_level<'de>(
    size_field: &'static str,
) -> impl Fn(StrPair<'de>) -> Result<Level, ParseError> {
    move |(p, s)| {
        Ok(Level {
            price: fixed_field("price", p)?,
            size: fixed_field(size_field, s)?,
        })
    }
}

/// Deserializes a JSON array of levels onto the end of `out` (the caller clears it when the array
/// replaces its content): each element is read as an `R` (borrowing from the message) and turned
/// into a [`Level`] by `to_level`, whose error is recorded in `err` and ends the parse. Allocates
/// only when `out` grows.
pub(super) struct LevelsSeed<'v, R, F> {
    out: &'v mut Vec<Level>,
    err: &'v ErrSlot,
    /// The array's shape, for serde's "invalid type: …, expected …" text.
    expecting: &'static str,
    to_level: F,
    row: PhantomData<fn() -> R>,
}

impl<'v, R, F> LevelsSeed<'v, R, F>
where
    F: FnMut(R) -> Result<Level, ParseError>,
{
    /// A seed appending to `out`; `expecting` describes the array (`an array of [price, size]
    /// string pairs`).
    pub(super) fn new(
        out: &'v mut Vec<Level>,
        err: &'v ErrSlot,
        expecting: &'static str,
        to_level: F,
    ) -> Self {
        LevelsSeed {
            out,
            err,
            expecting,
            to_level,
            row: PhantomData,
        }
    }
}

impl<'de, R, F> DeserializeSeed<'de> for LevelsSeed<'_, R, F>
where
    R: Deserialize<'de>,
    F: FnMut(R) -> Result<Level, ParseError>,
{
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, R, F> Visitor<'de> for LevelsSeed<'_, R, F>
where
    R: Deserialize<'de>,
    F: FnMut(R) -> Result<Level, ParseError>,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(row) = seq.next_element::<R>()? {
            let level = self.err.check((self.to_level)(row))?;
            self.out.push(level);
        }
        Ok(())
    }
}

/// Runs `seed` over the whole of `raw` (trailing characters are an error); a failure is the error
/// recorded in `err` if there is one, else serde's.
pub(super) fn from_str_seed<'de, S: DeserializeSeed<'de>>(
    raw: &'de str,
    seed: S,
    err: &ErrSlot,
) -> Result<S::Value, ParseError> {
    let mut de = serde_json::Deserializer::from_str(raw);
    seed.deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| err.or_json(e))
}
