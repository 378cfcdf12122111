//! Exact conversions between RFC 3339 / ISO-8601 UTC timestamps and ns since the Unix epoch.
//!
//! Venues send times as text (`2021-04-17T00:00:03.421882Z`, `2023-10-06T17:35:55.440295Z`);
//! CSV output writes them back. Integer arithmetic only (Howard Hinnant's `days_from_civil` /
//! `civil_from_days`), so a timestamp round-trips to the nanosecond. Pure; any thread.

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn num(b: &[u8], from: usize, len: usize) -> Option<u32> {
    let s = b.get(from..from + len)?;
    s.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to ns since the epoch.
/// Fractions beyond nanoseconds are refused rather than rounded. Returns `None` on any error,
/// including dates before 1970.
pub fn parse_rfc3339_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(b, 0, 4)?, num(b, 5, 2)?, num(b, 8, 2)?);
    let (h, mi, se) = (num(b, 11, 2)?, num(b, 14, 2)?, num(b, 17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start >= 9 {
                if b[i] != b'0' {
                    return None;
                }
            } else {
                nanos = nanos * 10 + u64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = (i - start).min(9);
        if i == start {
            return None;
        }
        nanos *= 10u64.pow(9 - digits as u32);
    }
    let offset_s: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let off = i64::from(num(b, i + 1, 2)? * 3600 + num(b, i + 4, 2)? * 60);
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + se) - offset_s;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

/// Formats ns since the epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (always 9 fraction digits).
pub fn format_rfc3339_ns(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let frac = ns % 1_000_000_000;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `YYYY-MM-DD` of the UTC day containing `ns`.
pub fn utc_date(ns: u64) -> String {
    let (y, m, d) = civil_from_days((ns / 1_000_000_000 / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_venue_timestamps_exactly() {
        let cases: &[(&str, u64)] = &[
            ("1970-01-01T00:00:00Z", 0),
            ("2021-04-17T00:00:03.421882Z", 1_618_617_603_421_882_000),
            ("2023-10-06T17:35:55.440295Z", 1_696_613_755_440_295_000),
            ("2024-08-08T23:54:15.342Z", 1_723_161_255_342_000_000),
            ("2024-02-29T12:00:00.000000001Z", 1_709_208_000_000_000_001),
            ("2024-08-09T01:54:15.342+02:00", 1_723_161_255_342_000_000),
            ("2024-08-08T23:54:15.3420000000Z", 1_723_161_255_342_000_000),
        ];
        for (s, want) in cases {
            assert_eq!(parse_rfc3339_ns(s), Some(*want), "{s}");
        }
    }

    #[test]
    fn refuses_malformed_timestamps() {
        for s in [
            "",
            "2021-04-17",
            "2021-04-17T00:00:03",
            "2021-13-17T00:00:03Z",
            "2021-04-17T00:00:03.Z",
            "2021-04-17T00:00:03.1234567891Z",
            "1969-12-31T23:59:59Z",
            "2021-04-17T00:00:03Zjunk",
        ] {
            assert_eq!(parse_rfc3339_ns(s), None, "{s}");
        }
    }

    #[test]
    fn format_round_trips() {
        for ns in [
            0,
            1_618_617_603_421_882_000,
            1_709_208_000_000_000_001,
            4_102_444_800_000_000_000,
        ] {
            assert_eq!(parse_rfc3339_ns(&format_rfc3339_ns(ns)), Some(ns));
        }
        assert_eq!(
            format_rfc3339_ns(1_723_161_255_342_000_000),
            "2024-08-08T23:54:15.342000000Z"
        );
        assert_eq!(utc_date(1_723_161_255_342_000_000), "2024-08-08");
    }
}
