//! Small serde helpers for the parsers of OKX, Bybit, Gemini and Hyperliquid: [`each`] runs a
//! closure over every element of a JSON array without collecting them (so a message is parsed
//! without allocating), and [`Row`] reads a level written as an array whose first two elements are
//! the price and size strings (`["30238.8","2","0","1"]` on OKX, `["16493.50","0.006"]` on Bybit).
//!
//! Used inside one `parse` call on a collector thread; nothing here blocks.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::de::{from_str_seed, ErrSlot};
use super::ParseError;

/// Calls `f` with every element of the JSON array `raw`, in order. The first error of `f` ends
/// the walk and is returned as it is (typed); a shape error is serde's text.
pub(super) fn each<'de, T, F>(raw: &'de str, err: &ErrSlot, f: F) -> Result<(), ParseError>
where
    T: Deserialize<'de>,
    F: FnMut(T) -> Result<(), ParseError>,
{
    from_str_seed(
        raw,
        Each {
            err,
            f,
            item: PhantomData,
        },
        err,
    )
}

struct Each<'e, T, F> {
    err: &'e ErrSlot,
    f: F,
    item: PhantomData<fn() -> T>,
}

impl<'de, T, F> DeserializeSeed<'de> for Each<'_, T, F>
where
    T: Deserialize<'de>,
    F: FnMut(T) -> Result<(), ParseError>,
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T, F> Visitor<'de> for Each<'_, T, F>
where
    T: Deserialize<'de>,
    F: FnMut(T) -> Result<(), ParseError>,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<T>()? {
            self.err.check((self.f)(item))?;
        }
        Ok(())
    }
}

/// A level `[price, size, …]`: the first two elements as strings, anything after them ignored.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row<'a> {
    /// The price, exactly as the venue wrote it.
    pub(super) price: &'a str,
    /// The size, exactly as the venue wrote it.
    pub(super) size: &'a str,
}

impl<'de: 'a, 'a> Deserialize<'de> for Row<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Row<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a level [price, size, …] of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Row<'a>, A::Error> {
                let price: &'a str = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let size: &'a str = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Row { price, size })
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// A millisecond timestamp (a JSON string or number of ms since the epoch) in ns; `None` when it
/// does not fit.
pub(super) fn ms_to_ns(ms: u64) -> Option<u64> {
    ms.checked_mul(1_000_000)
}

/// A millisecond timestamp written as a decimal string (`"1652459225464"`), in ns.
pub(super) fn ms_str_to_ns(s: &str) -> Result<u64, ParseError> {
    crate::market::fixed::parse_u64(s)
        .and_then(ms_to_ns)
        .ok_or(ParseError::Invalid(
            "timestamp is not an integer count of ms",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_walks_rows_and_keeps_typed_errors() {
        let err = ErrSlot::default();
        let mut got = Vec::new();
        each::<Row<'_>, _>(r#"[["1.5","2","0","1"],["3","4"]]"#, &err, |r| {
            got.push((r.price, r.size));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, [("1.5", "2"), ("3", "4")]);
        let e = each::<Row<'_>, _>(r#"[["1","2"]]"#, &err, |_| Err(ParseError::Invalid("no")))
            .unwrap_err();
        assert_eq!(e.to_string(), "invalid message: no");
        err.clear();
        let e = each::<Row<'_>, _>(r#"[["1"]]"#, &err, |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("malformed"), "{e}");
        assert_eq!(
            ms_str_to_ns("1652459225464").unwrap(),
            1_652_459_225_464_000_000
        );
        assert!(ms_str_to_ns("x").is_err());
    }
}
