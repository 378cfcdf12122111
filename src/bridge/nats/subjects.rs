//! NATS subjects: `<prefix>.<venue>.<symbol>.<kind>` and `<prefix>.<venue>._feed.status`, with
//! the reversible escaping that makes any venue name or symbol one subject token.

/// The last subject token: what a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// InstrumentDef (type 1): remote frame decoders map ids to names with it.
    Def,
    /// Trade (2).
    Trade,
    /// Quote (3).
    Quote,
    /// BookSnapshot (6) or BookDelta (7); the SNAPSHOT flag / `snapshot` field tells them apart.
    Book,
    /// Status (4); feed-wide ones (instrument 0) on `<prefix>.<venue>._feed.status`.
    Status,
    /// Bar (8).
    Bar,
    /// Mark (9): mark price and funding of a derivative.
    Mark,
    /// Liquidation (10).
    Liquidation,
    /// OpenInterest (11).
    OpenInterest,
    /// A type this build does not know (frame payload only).
    Other,
}

impl Kind {
    /// Every kind, in subject-table order.
    pub const ALL: [Kind; 10] = [
        Kind::Def,
        Kind::Trade,
        Kind::Quote,
        Kind::Book,
        Kind::Status,
        Kind::Bar,
        Kind::Mark,
        Kind::Liquidation,
        Kind::OpenInterest,
        Kind::Other,
    ];

    /// The kind of a frame by its header type code; `None` for heartbeats (not forwarded).
    pub fn of(msg_type: u8) -> Option<Kind> {
        Some(match msg_type {
            1 => Kind::Def,
            2 => Kind::Trade,
            3 => Kind::Quote,
            4 => Kind::Status,
            5 => return None,
            6 | 7 => Kind::Book,
            8 => Kind::Bar,
            9 => Kind::Mark,
            10 => Kind::Liquidation,
            11 => Kind::OpenInterest,
            _ => Kind::Other,
        })
    }

    /// Its position in [`Kind::ALL`].
    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// The subject token.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Def => "def",
            Kind::Trade => "trade",
            Kind::Quote => "quote",
            Kind::Book => "book",
            Kind::Status => "status",
            Kind::Bar => "bar",
            Kind::Mark => "mark",
            Kind::Liquidation => "liquidation",
            Kind::OpenInterest => "open_interest",
            Kind::Other => "other",
        }
    }

    /// Frames of this kind advance the instrument's sequence or report on it: their loss is
    /// counted in `dropped` reports. A lost definition is re-sent instead.
    pub(super) fn counted(self) -> bool {
        self != Kind::Def
    }
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('~');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// A venue symbol as one NATS subject token, reversibly ([`symbol_from_token`]):
/// printable ASCII stays, except that `/` becomes `_` (`XBT/USD` → `XBT_USD`), and `.`, `*`,
/// `>`, `_`, `~`, a leading `/`, whitespace, control and non-ASCII bytes become `~XX` (the UTF-8
/// byte in upper-case hex: `BTC.X` → `BTC~2EX`, `A_B` → `A~5FB`). A token never starts with `_`,
/// so the bridge's own tokens (`_feed`, `_relay`) cannot clash with a symbol; the empty symbol
/// is `~`.
pub fn symbol_token(symbol: &str) -> String {
    if symbol.is_empty() {
        return "~".to_owned();
    }
    let mut out = String::with_capacity(symbol.len());
    for (i, b) in symbol.bytes().enumerate() {
        match b {
            b'/' if i > 0 => out.push('_'),
            b'.' | b'*' | b'>' | b'_' | b'~' | b'/' => push_escaped(&mut out, b),
            0x21..=0x7e => out.push(b as char),
            _ => push_escaped(&mut out, b),
        }
    }
    out
}

/// The inverse of [`symbol_token`]; `None` for a token it cannot produce.
pub fn symbol_from_token(token: &str) -> Option<String> {
    if token == "~" {
        return Some(String::new());
    }
    let b = token.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b'/'),
            b'~' => {
                let hex = token.get(i + 1..i + 3)?;
                if !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F')) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A venue name as a subject token: letters, digits, `_` and `-` stay (every built-in venue
/// name), anything else becomes `~XX` as in [`symbol_token`].
pub fn venue_token(venue: &str) -> String {
    if venue.is_empty() {
        return "~".to_owned();
    }
    let mut out = String::with_capacity(venue.len());
    for b in venue.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => out.push(b as char),
            _ => push_escaped(&mut out, b),
        }
    }
    out
}

/// The subject of `kind` for an instrument: `<prefix>.<venue>.<symbol>.<kind>`.
pub fn subject(prefix: &str, venue: &str, symbol: &str, kind: Kind) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        venue_token(venue),
        symbol_token(symbol),
        kind.name()
    )
}

/// The subject of feed-wide status frames (instrument 0): `<prefix>.<venue>._feed.status`.
pub fn feed_status_subject(prefix: &str, venue: &str) -> String {
    format!("{prefix}.{}._feed.status", venue_token(venue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_become_single_reversible_tokens() {
        let cases = [
            ("ETHUSDT", "ETHUSDT"),
            ("BTC-USD", "BTC-USD"),
            ("XBT/USD", "XBT_USD"),
            ("BTC.X", "BTC~2EX"),
            ("A_B", "A~5FB"),
            ("a*b>c", "a~2Ab~3Ec"),
            ("x y\tz", "x~20y~09z"),
            ("/USD", "~2FUSD"),
            ("~1", "~7E1"),
            ("€", "~E2~82~AC"),
            ("", "~"),
        ];
        for (sym, tok) in cases {
            assert_eq!(symbol_token(sym), tok, "{sym}");
            assert_eq!(symbol_from_token(tok).as_deref(), Some(sym), "{tok}");
            assert!(!tok.starts_with('_'));
            assert!(!tok.contains(['.', '*', '>', ' ']));
        }
        assert_eq!(symbol_from_token("~G1"), None);
        assert_eq!(symbol_from_token("~2"), None);
        assert_eq!(venue_token("kraken_v1"), "kraken_v1");
        assert_eq!(venue_token("a.b"), "a~2Eb");
        assert_eq!(
            subject("mdrelay", "kraken_v1", "XBT/EUR", Kind::Book),
            "mdrelay.kraken_v1.XBT_EUR.book"
        );
        assert_eq!(
            feed_status_subject("p.q", "binance"),
            "p.q.binance._feed.status"
        );
    }

    #[test]
    fn every_type_code_has_a_kind() {
        let names: Vec<_> = (1u8..=12).map(|c| Kind::of(c).map(Kind::name)).collect();
        assert_eq!(
            names,
            [
                Some("def"),
                Some("trade"),
                Some("quote"),
                Some("status"),
                None,
                Some("book"),
                Some("book"),
                Some("bar"),
                Some("mark"),
                Some("liquidation"),
                Some("open_interest"),
                Some("other")
            ]
        );
    }

    #[test]
    fn a_kind_indexes_its_place_in_the_table() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
        }
    }
}
