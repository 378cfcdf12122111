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

/// [`parse`] into units of 10^-`D` (`D` ≤ 18): the common shape without overflow checks
/// ([`parse_plain`]), anything else through the full grammar ([`parse_any`]).
#[inline(always)]
fn parse_scaled<const D: u32>(s: &str) -> Result<i64, FixedError> {
    match parse_plain::<D>(s.as_bytes()) {
        Some(v) => Ok(v),
        None => parse_any::<D>(s),
    }
}

/// The shape venues send almost always, `digits` or `digits.digits`, unsigned, with at most `D`
/// fraction digits and an integer part below 10^(18 − D), so that no step can overflow and no
/// check is needed per digit. `None` for anything else, which [`parse_any`] then parses (or
/// refuses) by the full rules: where this accepts, both give the same value (a property test
/// checks it).
#[inline(always)]
fn parse_plain<const D: u32>(b: &[u8]) -> Option<i64> {
    match parse_plain_prefix::<D>(b) {
        Some((v, n)) if n == b.len() => Some(v),
        _ => None,
    }
}

/// The plain shape of [`parse`] (`digits` or `digits.digits`, unsigned, at most 8 fraction
/// digits, below 10¹⁰) at the start of `b`, as units of 10⁻⁸: the value and the number of bytes
/// it took. What follows is the caller's to check (a closing quote, say): a fast path reads a
/// quoted price in one pass with it. `None` where the shape does not apply; [`parse`] of the
/// text is then the authority.
#[inline(always)]
pub fn parse_price_prefix(b: &[u8]) -> Option<(i64, usize)> {
    parse_plain_prefix::<DECIMALS>(b)
}

#[inline(always)]
fn parse_plain_prefix<const D: u32>(b: &[u8]) -> Option<(i64, usize)> {
    let mut i = 0;
    let mut int: u64 = 0;
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        // At most 19 digits reach here (< 10^19 < u64::MAX): no overflow.
        int = int * 10 + u64::from(d);
        i += 1;
        if i > 18 {
            return None;
        }
    }
    if i == 0 || int >= 10u64.pow(18 - D) {
        return None;
    }
    // int < 10^(18-D), so int * 10^D < 10^18 and the fraction (< 10^D) added keeps it in i64.
    let whole = int * 10u64.pow(D);
    if b.get(i) != Some(&b'.') {
        return Some((i64::try_from(whole).ok()?, i));
    }
    let f0 = i + 1;
    let (mut frac, mut n) = (0u64, 0usize);
    // Eight fraction digits at once (Binance sends exactly eight), then one at a time.
    let eight = b.get(f0..f0 + 8).and_then(|w| <[u8; 8]>::try_from(w).ok());
    if let Some(v) = eight.and_then(|w| eight_digits(u64::from_le_bytes(w))) {
        (frac, n) = (v, 8);
    }
    while let Some(&c) = b.get(f0 + n) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        if n >= D as usize {
            return None;
        }
        // At most D ≤ 18 digits: no overflow.
        frac = frac * 10 + u64::from(d);
        n += 1;
    }
    if n == 0 || n > D as usize {
        return None;
    }
    let scaled = frac * 10u64.pow(D - n as u32);
    Some((i64::try_from(whole + scaled).ok()?, f0 + n))
}

/// Eight ASCII digits, the first in the lowest byte (as read little-endian from the text), as
/// their value; `None` unless all eight are digits. Three multiply-add steps combine neighbours
/// into 2-, 4- and 8-digit values: each lane's result fits its lane, so nothing carries across.
#[inline(always)]
fn eight_digits(w: u64) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // Every byte is 0x30..=0x39: its high nibble is 3, and adding 6 does not carry out of it.
    let high = 0xF0F0_F0F0_F0F0_F0F0;
    if w & high != ZEROS || (w.wrapping_add(0x0606_0606_0606_0606) & high) != ZEROS {
        return None;
    }
    let d = w - ZEROS;
    // Byte pairs: first × 10 + second, in the low byte of each 16-bit lane (≤ 99).
    let pairs = (d * 10 + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    // 16-bit pairs: first × 100 + second, in the low half of each 32-bit lane (≤ 9 999).
    let quads = (pairs * 100 + (pairs >> 16)) & 0x0000_FFFF_0000_FFFF;
    // 32-bit halves: first × 10 000 + second (≤ 99 999 999).
    Some((quads * 10_000 + (quads >> 32)) & 0xFFFF_FFFF)
}

/// [`parse_scaled`] by the full grammar: sign, exponent, excess zeros, range checks.
#[cold]
fn parse_any<const D: u32>(s: &str) -> Result<i64, FixedError> {
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
    let b = s.as_bytes();
    let n = b.len();
    if n == 0 || n > 20 {
        return None;
    }
    let mut acc: u64 = 0;
    let mut i = 0;
    // Eight digits at a time while eight remain: at most twice (20 digits), acc < 10^16 after.
    while let Some(chunk) = b.get(i..i + 8) {
        let eight = <[u8; 8]>::try_from(chunk).ok()?;
        acc = acc * 100_000_000 + eight_digits(u64::from_le_bytes(eight))?;
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_add(u64::from(d))?;
        i += 1;
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
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("99999999999999999999"), None);
        assert_eq!(parse_u64("00000000000000000001"), Some(1));
        assert_eq!(parse_u64("1234567890123456"), Some(1_234_567_890_123_456));
        assert_eq!(parse_u64("12345678901234a6"), None);
        assert_eq!(parse_u64("1234567a"), None);
        assert_eq!(parse_u64("123456789012345678901"), None);
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

    #[test]
    fn eight_digits_at_a_time() {
        for text in ["00000000", "12345678", "99999999", "00000001", "80000000"] {
            let want: u64 = text.parse().unwrap();
            let w = u64::from_le_bytes(text.as_bytes().try_into().unwrap());
            assert_eq!(eight_digits(w), Some(want), "{text}");
        }
        for bad in [
            *b"1234567a",
            *b"/2345678",
            *b":2345678",
            *b"1234 678",
            [0xb1; 8],
            [0x39 + 0x80; 8],
        ] {
            assert_eq!(eight_digits(u64::from_le_bytes(bad)), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// The unchecked shape and the full grammar agree wherever the shape accepts, on any
        /// text made of the characters a decimal can have.
        #[test]
        fn plain_shape_agrees_with_the_full_grammar(s in "[0-9.+eE-]{0,24}") {
            if let Some(v) = parse_plain::<DECIMALS>(s.as_bytes()) {
                proptest::prop_assert_eq!(parse_any::<DECIMALS>(&s), Ok(v), "{}", s);
            }
            if let Some(v) = parse_plain::<RATE_DECIMALS>(s.as_bytes()) {
                proptest::prop_assert_eq!(parse_any::<RATE_DECIMALS>(&s), Ok(v), "{}", s);
            }
        }

        #[test]
        fn a_price_prefix_stops_where_the_shape_ends(s in "[0-9.]{0,24}", tail in "[\"},a-z]{0,2}") {
            let text = format!("{s}{tail}");
            if let Some((v, n)) = parse_price_prefix(text.as_bytes()) {
                proptest::prop_assert_eq!(parse(&text[..n]), Ok(v), "{}", text);
                let next = text.as_bytes().get(n).copied();
                proptest::prop_assert!(next.is_none_or(|c| !c.is_ascii_digit()), "{}", text);
            }
        }

        #[test]
        fn u64_parse_agrees_with_std(s in "[0-9]{1,20}|[0-9a ]{0,21}") {
            proptest::prop_assert_eq!(parse_u64(&s), s.parse::<u64>().ok().filter(|_| s.len() <= 20 && !s.starts_with('+')), "{}", s);
        }

        #[test]
        fn plain_shape_takes_typical_venue_decimals(int in 0u64..10_000_000_000, frac in 0u64..100_000_000, places in 1usize..=8) {
            let f = format!("{frac:08}");
            let s = format!("{int}.{}", &f[..places]);
            let got = parse_plain::<DECIMALS>(s.as_bytes());
            proptest::prop_assert!(got.is_some(), "{}", s);
            proptest::prop_assert_eq!(parse_any::<DECIMALS>(&s), Ok(got.unwrap_or(0)), "{}", s);
        }

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
