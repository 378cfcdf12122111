//! Exact fixed-point decimals: every price and size in mdrelay is an `i64` count of
//! 10⁻⁸ units (scale [`SCALE`] = 100 000 000), parsed straight from the exchange's decimal text;
//! rates (funding) are counts of 10⁻¹⁸ ([`parse_rate`], [`Rate`]).
//!
//! No `f64` is involved anywhere: `"2683.80000000"` becomes `268_380_000_000` by a digit loop, and
//! formatting goes back to the shortest exact decimal string (`"2683.8"`). A value that cannot be
//! represented exactly — non-zero fraction digits beyond the 8th, or a magnitude beyond
//! `i64::MAX / 10⁸ ≈ 9.2e10` — is rejected with a [`FixedError`], never rounded or wrapped.
//! [`ABSENT`] (`i64::MIN`) is the sentinel for "no value" (an empty side of a book); it can never be
//! produced by parsing because its magnitude is out of range.
//!
//! Runs on whichever thread parses (collectors, `decode`); pure, never blocks.

use std::fmt;

/// Number of decimal places carried by every fixed-point value.
pub const DECIMALS: u32 = 8;
/// `10^DECIMALS`: the raw value of `1`.
pub const SCALE: i64 = 100_000_000;
/// "No value" sentinel for prices and sizes (e.g. an empty bid side). Never a parse result.
pub const ABSENT: i64 = i64::MIN;

/// Why a decimal string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FixedError {
    /// Empty input, or a character that is not part of a plain decimal number.
    #[error("not a decimal number")]
    Syntax,
    /// Non-zero digits beyond the 8th decimal place: the value is not representable exactly.
    #[error("non-zero digits beyond the 8th decimal place")]
    Precision,
    /// The magnitude does not fit in an i64 of 10⁻⁸ units.
    #[error("value out of range for i64 fixed-point")]
    OutOfRange,
}

/// Parses a plain decimal string (`-12.5`, `0.00200000`, `42`, `.5`) into units of 10⁻⁸.
///
/// Accepts an optional leading `-` or `+`, digits, and at most one `.`. Also accepts a trailing
/// exponent (`1.5e-3`, `2E+2`) because some venues print JSON numbers that way; the result must
/// still be exact.
#[inline]
pub fn parse(s: &str) -> Result<i64, FixedError> {
    parse_scaled::<DECIMALS>(s)
}

/// Decimal places of a rate (funding rates): [`parse_rate`] values are `i64` counts of 10⁻¹⁸.
/// Venues send funding rates with up to 16 decimals (OKX), beyond what prices need; the range,
/// ±9.2, is ample for a rate per funding interval.
pub const RATE_DECIMALS: u32 = 18;

/// Parses a rate (a funding rate such as `"0.0000597393178553"`) into units of 10⁻¹⁸, exactly,
/// with the same syntax and refusals as [`parse`].
#[inline]
pub fn parse_rate(s: &str) -> Result<i64, FixedError> {
    parse_scaled::<RATE_DECIMALS>(s)
}

/// [`parse`] into units of 10^-`D` (`D` ≤ 18).
#[inline(always)]
fn parse_scaled<const D: u32>(s: &str) -> Result<i64, FixedError> {
    let b = s.as_bytes();
    let (neg, mut i) = match b.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        Some(_) => (false, 0),
        None => return Err(FixedError::Syntax),
    };
    // Accumulate the magnitude as a negative number so that i64::MIN's magnitude is reachable
    // without overflow checks differing by sign; we only need up to i64::MAX here anyway.
    let mut acc: i64 = 0;
    let mut digits = 0usize;
    while i < b.len() && b[i].is_ascii_digit() {
        acc = acc
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b[i] - b'0')))
            .ok_or(FixedError::OutOfRange)?;
        i += 1;
        digits += 1;
    }
    let mut frac_digits: u32 = 0;
    let mut excess_nonzero = false;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            if frac_digits < 18 {
                // Keep up to 18 fraction digits exactly; an exponent may shift them back into range.
                acc = acc
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(i64::from(b[i] - b'0')))
                    .ok_or(FixedError::OutOfRange)?;
                frac_digits += 1;
            } else if b[i] != b'0' {
                excess_nonzero = true;
            }
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return Err(FixedError::Syntax);
    }
    let mut exp: i32 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let eneg = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            exp = exp
                .checked_mul(10)
                .and_then(|v| v.checked_add(i32::from(b[i] - b'0')))
                .filter(|v| *v <= 400)
                .ok_or(FixedError::OutOfRange)?;
            i += 1;
        }
        if i == start {
            return Err(FixedError::Syntax);
        }
        if eneg {
            exp = -exp;
        }
    }
    if i != b.len() {
        return Err(FixedError::Syntax);
    }
    if excess_nonzero {
        return Err(FixedError::Precision);
    }
    // value = acc * 10^(exp - frac_digits); we want value * 10^DECIMALS.
    let shift = exp + D as i32 - frac_digits as i32;
    let mut v = acc;
    if shift >= 0 {
        for _ in 0..shift {
            v = v.checked_mul(10).ok_or(FixedError::OutOfRange)?;
        }
    } else {
        for _ in 0..(-shift) {
            if v % 10 != 0 {
                return Err(FixedError::Precision);
            }
            v /= 10;
        }
    }
    Ok(if neg { -v } else { v })
}

/// Parses an unsigned decimal integer (trade ids, sequence numbers) without allocation.
#[inline]
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut acc: u64 = 0;
    for &c in s.as_bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(acc)
}

/// Displays a fixed-point value as its shortest exact decimal string (`268380000000` → `2683.8`).
/// [`ABSENT`] displays as the empty string.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Decimal(pub i64);

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == ABSENT {
            return Ok(());
        }
        write_scaled(f, self.0 < 0, u128::from(self.0.unsigned_abs()))
    }
}

/// Writes `mag` units of 10⁻⁸ (with a `-` when `negative`) as the shortest exact decimal.
/// Shared by [`Decimal`] and wider sums such as bar volumes.
pub fn write_scaled(f: &mut fmt::Formatter<'_>, negative: bool, mag: u128) -> fmt::Result {
    write_places(f, negative, mag, DECIMALS)
}

/// Writes `mag` units of 10^-`places` (with a `-` when `negative`) as the shortest exact decimal.
fn write_places(f: &mut fmt::Formatter<'_>, negative: bool, mag: u128, places: u32) -> fmt::Result {
    let scale = 10u128.pow(places);
    let int = mag / scale;
    let mut frac = mag % scale;
    if negative {
        f.write_str("-")?;
    }
    write!(f, "{int}")?;
    if frac != 0 {
        let mut width = places as usize;
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        write!(f, ".{frac:0width$}")?;
    }
    Ok(())
}

/// Displays a rate ([`parse_rate`], units of 10⁻¹⁸) as its shortest exact decimal string;
/// [`ABSENT`] displays as the empty string.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub i64);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == ABSENT {
            return Ok(());
        }
        write_places(
            f,
            self.0 < 0,
            u128::from(self.0.unsigned_abs()),
            RATE_DECIMALS,
        )
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Formats `v` with exactly `places` decimal places (truncating nothing: `places` must be at
/// least the number of significant decimals `v` has, otherwise digits are cut). Used where a venue
/// defines a canonical text form, e.g. Kraken's book checksums.
pub fn format_fixed_places(v: i64, places: u32) -> String {
    let neg = v < 0;
    let mag = v.unsigned_abs();
    let int = mag / SCALE as u64;
    let frac = mag % SCALE as u64;
    let mut out = String::with_capacity(24);
    if neg {
        out.push('-');
    }
    out.push_str(&int.to_string());
    if places > 0 {
        out.push('.');
        let full = format!("{frac:08}");
        let p = places as usize;
        if p <= full.len() {
            out.push_str(&full[..p]);
        } else {
            out.push_str(&full);
            out.extend(std::iter::repeat_n('0', p - full.len()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exchange_decimal_strings_exactly() {
        let cases: &[(&str, i64)] = &[
            ("2683.80000000", 268_380_000_000),
            ("0.00200000", 200_000),
            ("0.00000001", 1),
            ("42", 4_200_000_000),
            ("-12.5", -1_250_000_000),
            ("+3.0", 300_000_000),
            (".5", 50_000_000),
            ("5.", 500_000_000),
            ("0", 0),
            ("61837.63000000", 6_183_763_000_000),
            ("1.000000000000", 100_000_000), // trailing zeros beyond 8 places are exact
            ("1.5e-3", 150_000),
            ("2E+2", 20_000_000_000),
            ("92233720368.54775807", i64::MAX),
            ("-92233720368.54775807", -i64::MAX),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s), Ok(*want), "{s}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_represent() {
        let cases: &[(&str, FixedError)] = &[
            ("", FixedError::Syntax),
            ("-", FixedError::Syntax),
            (".", FixedError::Syntax),
            ("1.2.3", FixedError::Syntax),
            ("abc", FixedError::Syntax),
            ("1e", FixedError::Syntax),
            (" 1", FixedError::Syntax),
            ("0.000000001", FixedError::Precision),
            ("1.23456789012345678901", FixedError::Precision),
            ("92233720368.54775808", FixedError::OutOfRange),
            ("100000000000", FixedError::OutOfRange),
            ("1e400", FixedError::OutOfRange),
            ("99999999999999999999999", FixedError::OutOfRange),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s), Err(*want), "{s}");
        }
    }

    #[test]
    fn formats_shortest_exact_decimal() {
        assert_eq!(Decimal(268_380_000_000).to_string(), "2683.8");
        assert_eq!(Decimal(200_000).to_string(), "0.002");
        assert_eq!(Decimal(1).to_string(), "0.00000001");
        assert_eq!(Decimal(-1_250_000_000).to_string(), "-12.5");
        assert_eq!(Decimal(0).to_string(), "0");
        assert_eq!(Decimal(4_200_000_000).to_string(), "42");
        assert_eq!(Decimal(ABSENT).to_string(), "");
        assert_eq!(Decimal(i64::MAX).to_string(), "92233720368.54775807");
    }

    #[test]
    fn fixed_places_pads_and_cuts() {
        assert_eq!(format_fixed_places(268_380_000_000, 2), "2683.80");
        assert_eq!(format_fixed_places(1, 10), "0.0000000100");
        assert_eq!(format_fixed_places(4_200_000_000, 0), "42");
    }

    #[test]
    fn u64_parse() {
        assert_eq!(parse_u64("3735683259"), Some(3_735_683_259));
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("12a"), None);
        assert_eq!(parse_u64("18446744073709551616"), None);
    }

    #[test]
    fn rates_keep_sixteen_decimals() {
        assert_eq!(parse_rate("0.0000597393178553"), Ok(59_739_317_855_300));
        assert_eq!(parse_rate("-0.00010000"), Ok(-100_000_000_000_000));
        assert_eq!(
            parse_rate("0.0000000000000000001"),
            Err(FixedError::Precision)
        );
        assert_eq!(parse_rate("10"), Err(FixedError::OutOfRange));
        assert_eq!(Rate(59_739_317_855_300).to_string(), "0.0000597393178553");
        assert_eq!(Rate(-100_000_000_000_000).to_string(), "-0.0001");
        assert_eq!(Rate(ABSENT).to_string(), "");
    }

    proptest::proptest! {
        #[test]
        fn rate_display_then_parse_round_trips(v in (i64::MIN + 1)..=i64::MAX) {
            proptest::prop_assert_eq!(parse_rate(&Rate(v).to_string()), Ok(v));
        }

        #[test]
        fn display_then_parse_round_trips(v in (i64::MIN + 1)..=i64::MAX) {
            proptest::prop_assert_eq!(parse(&Decimal(v).to_string()), Ok(v));
        }
    }
}
