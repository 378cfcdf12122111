//! A forward-only JSON scanner over a borrowed message, for the venue parsers' fast paths: one
//! pass over the bytes, no allocation, strings and numbers handed out as slices of the input.
//!
//! It accepts a strict subset of JSON (RFC 8259) and refuses everything else with `None`, which a
//! fast path answers by handing the whole message to its general (serde) parser: a string with an
//! escape or a control character, a number with a sign, fraction or exponent where an unsigned
//! integer is read, a literal other than `true`/`false` where a boolean is read, nesting deeper
//! than [`MAX_DEPTH`]. Values that are skipped are still checked against the JSON grammar, so a
//! message the scanner accepts is one serde_json accepts too; what it reads, it reads exactly as
//! serde_json would. Never panics: every index is checked.
//!
//! Runs inside one `parse` call on a collector thread (or in `mdrelay decode`); nothing blocks.

/// Deepest nesting [`Scanner::skip_value`] follows before giving up (serde_json's limit is 128).
pub(super) const MAX_DEPTH: u32 = 32;

/// `true` for the bytes that end the fast scan of a string's content: `"`, `\` and the control
/// characters JSON forbids unescaped.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// A cursor over one JSON text.
#[derive(Debug, Clone)]
pub(super) struct Scanner<'a> {
    /// The whole message; every slice handed out borrows from it.
    text: &'a str,
    /// Next byte to read; always ≤ `text.len()`.
    pos: usize,
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `text`.
    #[inline]
    pub(super) fn new(text: &'a str) -> Self {
        Scanner { text, pos: 0 }
    }

    #[inline]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte after any whitespace, not consumed.
    #[inline]
    pub(super) fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.pos).copied()
    }

    /// Skips JSON whitespace (space, tab, line feed, carriage return).
    #[inline]
    pub(super) fn ws(&mut self) {
        let b = self.bytes();
        while let Some(&c) = b.get(self.pos) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
    }

    /// Consumes `c` after any whitespace.
    #[inline]
    pub(super) fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.bytes().get(self.pos) == Some(&c) {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// Only whitespace is left.
    #[inline]
    pub(super) fn at_end(&mut self) -> bool {
        self.ws();
        self.pos == self.text.len()
    }

    /// A string without escapes, after any whitespace: its content, borrowed.
    #[inline]
    pub(super) fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let b = self.bytes();
        let start = self.pos;
        let mut i = start;
        // Eight bytes at a time while none of them ends the scan, then byte by byte.
        while let Some(chunk) = b.get(i..i + 8) {
            let Ok(word) = <[u8; 8]>::try_from(chunk) else {
                break;
            };
            if has_string_stop(u64::from_le_bytes(word)) {
                break;
            }
            i += 8;
        }
        loop {
            let c = *b.get(i)?;
            if STRING_STOP[usize::from(c)] {
                if c != b'"' {
                    return None;
                }
                self.pos = i + 1;
                // `start` and `i` sit next to ASCII quotes, so both are char boundaries.
                return self.text.get(start..i);
            }
            i += 1;
        }
    }

    /// Consumes `text` exactly as given, with no whitespace skipped: the literal parts of a
    /// message whose layout is known (`,"s":"`).
    #[inline(always)]
    pub(super) fn lit(&mut self, text: &[u8]) -> Option<()> {
        if self.bytes().get(self.pos..)?.starts_with(text) {
            self.pos += text.len();
            Some(())
        } else {
            None
        }
    }

    /// The content of a string that must be a plain decimal (`2683.80000000`, read as
    /// [`fixed::parse_price_prefix`](crate::market::fixed::parse_price_prefix)), the opening
    /// quote already consumed, through its closing quote: one pass, straight to fixed point.
    /// `None` (nothing consumed) when the content is anything else, even a valid decimal in
    /// another shape: the caller then takes its general path.
    #[inline(always)]
    pub(super) fn price_content(&mut self) -> Option<i64> {
        let rest = self.bytes().get(self.pos..)?;
        let (v, n) = crate::market::fixed::parse_price_prefix(rest)?;
        if rest.get(n) != Some(&b'"') {
            return None;
        }
        self.pos += n + 1;
        Some(v)
    }

    /// An unsigned integer written as a plain JSON number (no sign, fraction or exponent, no
    /// leading zero), that fits a `u64`.
    #[inline]
    pub(super) fn u64(&mut self) -> Option<u64> {
        self.ws();
        let b = self.bytes();
        let start = self.pos;
        let mut v: u64 = 0;
        let mut i = start;
        while let Some(&c) = b.get(i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            v = if i - start < 19 {
                // Nineteen digits are below 10^19 < u64::MAX: no overflow.
                v * 10 + u64::from(d)
            } else {
                v.checked_mul(10)?.checked_add(u64::from(d))?
            };
            i += 1;
        }
        // At least one digit, no leading zero (JSON), not a fraction or an exponent.
        let n = i - start;
        if n == 0
            || (n > 1 && b.get(start) == Some(&b'0'))
            || matches!(b.get(i), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        self.pos = i;
        Some(v)
    }

    /// `true` or `false`.
    #[inline]
    pub(super) fn bool(&mut self) -> Option<bool> {
        self.ws();
        let rest = self.bytes().get(self.pos..)?;
        if rest.starts_with(b"true") {
            self.pos += 4;
            Some(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Some(false)
        } else {
            None
        }
    }

    /// The next key of an object whose `{` was consumed: `Some(None)` at its `}`. `first` is true
    /// until the first key has been read (it decides whether a `,` must come first).
    #[inline]
    pub(super) fn key(&mut self, first: &mut bool) -> Option<Option<&'a str>> {
        // Compact JSON's one-byte keys (`,"s":`, or `"s":` first) in one look.
        let at = self.pos + usize::from(!*first);
        if let Some(&[q, k, q2, b':']) = self.bytes().get(at..at + 4) {
            let comma = *first || self.bytes().get(self.pos) == Some(&b',');
            if comma && q == b'"' && q2 == b'"' && k.is_ascii() && !STRING_STOP[usize::from(k)] {
                *first = false;
                self.pos = at + 4;
                // An ASCII byte between two ASCII quotes: a char boundary on each side.
                return self.text.get(at + 1..at + 2).map(Some);
            }
        }
        match self.peek()? {
            b'}' => {
                self.pos += 1;
                return Some(None);
            }
            b',' if !*first => self.pos += 1,
            b'"' if *first => {}
            _ => return None,
        }
        *first = false;
        let k = self.string()?;
        self.eat(b':')?;
        Some(Some(k))
    }

    /// The next element of an array whose `[` was consumed: `Some(false)` at its `]` (consumed),
    /// `Some(true)` when an element follows. `first` as in [`key`](Self::key).
    #[inline]
    pub(super) fn element(&mut self, first: &mut bool) -> Option<bool> {
        match self.peek()? {
            b']' => {
                self.pos += 1;
                return Some(false);
            }
            b',' if !*first => self.pos += 1,
            _ if *first => {}
            _ => return None,
        }
        *first = false;
        Some(true)
    }

    /// Skips one value of any type, checking it against the JSON grammar.
    pub(super) fn skip_value(&mut self) -> Option<()> {
        self.skip_nested(0)
    }

    fn skip_nested(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.pos += 1;
                let mut first = true;
                while self.key(&mut first)?.is_some() {
                    self.skip_nested(depth + 1)?;
                }
                Some(())
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.pos += 1;
                let mut first = true;
                while self.element(&mut first)? {
                    self.skip_nested(depth + 1)?;
                }
                Some(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let rest = self.bytes().get(self.pos..)?;
        if rest.starts_with(word) {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    /// Any JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        let b = self.bytes();
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(b, i + 1),
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            let end = digits(b, i + 1);
            if end == i + 1 {
                return None;
            }
            i = end;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let end = digits(b, i);
            if end == i {
                return None;
            }
            i = end;
        }
        self.pos = i;
        Some(())
    }
}

/// `0x01` in every byte.
const ONES: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte.
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// True when a byte of `w` is a [`STRING_STOP`] byte (`"`, `\`, or below 0x20): the classic
/// "has a zero byte" / "has a byte less than n" bit tricks (Anderson's *Bit Twiddling Hacks*),
/// exact as a yes/no answer; bytes ≥ 0x80 (UTF-8) never match.
#[inline]
fn has_string_stop(w: u64) -> bool {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let backslash = zero(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    quote | backslash | control != 0
}

/// The index of the first non-digit at or after `i`.
#[inline]
fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Skips `text` as one value: `Some` when the scanner accepts all of it.
    fn skips(text: &str) -> bool {
        let mut s = Scanner::new(text);
        s.skip_value().is_some() && s.at_end()
    }

    #[test]
    fn accepted_values_are_json_and_refused_ones_are_left_to_serde() {
        let cases = [
            r#"{"a":[1,-2.5e+3,0,0.0,true,false,null,"x",{}],"b":{"c":[]}}"#,
            " [ 1 , 2 ] ",
            r#""é ü""#,
            "-0",
            "1E9",
            r#"{"":""}"#,
        ];
        for c in cases {
            assert!(skips(c), "{c}");
            serde_json::from_str::<serde::de::IgnoredAny>(c).expect(c);
        }
        // Each refused: invalid JSON, or valid JSON the scanner leaves to the general path.
        let refused = [
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "tru",
            "nul",
            "[1,]",
            r#"{"a":1,}"#,
            "[,1]",
            r#"{"a"1}"#,
            r#"{"a":}"#,
            r#""a\"b""#,
            "\"a\tb\"",
            r#""abc"#,
            "{",
            "[1 2]",
            "",
        ];
        for c in refused {
            assert!(!skips(c), "{c}");
        }
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(!skips(&deep));
    }

    #[test]
    fn the_word_test_finds_every_stop_byte_at_every_position() {
        for pos in 0..8 {
            for stop in (0u8..0x20).chain([b'"', b'\\']) {
                let mut w = *b"abcd9.01";
                w[pos] = stop;
                assert!(has_string_stop(u64::from_le_bytes(w)), "{stop:#x} at {pos}");
            }
        }
        for w in [
            *b"abcd9.01",
            *b"\xc3\xa9\xc3\xbc  ~\x7f",
            [0x20; 8],
            [0xff; 8],
        ] {
            assert!(!has_string_stop(u64::from_le_bytes(w)), "{w:?}");
        }
        let long = r#""0123456789abcdef\"x""#;
        assert_eq!(
            Scanner::new(long).string(),
            None,
            "an escape after 16 plain bytes"
        );
        let long = "\"0123456789abcdefg\"";
        assert_eq!(Scanner::new(long).string(), Some("0123456789abcdefg"));
    }

    #[test]
    fn integers_are_exact_or_refused() {
        let read = |t: &str| Scanner::new(t).u64();
        assert_eq!(read("0"), Some(0));
        assert_eq!(read(" 1723161255342,"), Some(1_723_161_255_342));
        assert_eq!(read("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "18446744073709551616",
            "-1",
            "01",
            "1.0",
            "1e3",
            "\"1\"",
            "",
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_and_elements_walk_objects_and_arrays() {
        let mut s = Scanner::new(r#" { "a" : "x" , "b":[ "1" ,"2"] } "#);
        s.eat(b'{').unwrap();
        let mut first = true;
        assert_eq!(s.key(&mut first), Some(Some("a")));
        assert_eq!(s.string(), Some("x"));
        assert_eq!(s.key(&mut first), Some(Some("b")));
        s.eat(b'[').unwrap();
        let mut f = true;
        let mut got = Vec::new();
        while s.element(&mut f).unwrap() {
            got.push(s.string().unwrap());
        }
        assert_eq!(got, ["1", "2"]);
        assert_eq!(s.key(&mut first), Some(None));
        assert!(s.at_end());
        // One-byte keys, compact and not, first and after a comma; a comma is required.
        let mut s = Scanner::new(r#"{"a":1,"b":2, "c" :3,"d":4"e":5}"#);
        s.eat(b'{').unwrap();
        let mut first = true;
        for want in ["a", "b", "c", "d"] {
            assert_eq!(s.key(&mut first), Some(Some(want)));
            s.skip_value().unwrap();
        }
        assert_eq!(s.key(&mut first), None, "no comma before \"e\"");
        let mut s = Scanner::new(r#"{"\":1}"#);
        s.eat(b'{').unwrap();
        assert_eq!(s.key(&mut true), None, "an escape is refused");
        assert_eq!(
            Scanner::new("truex").bool(),
            Some(true),
            "the caller checks what follows"
        );
        assert_eq!(Scanner::new("fals").bool(), None);
    }
}
