//! Reading recordings: one venue message a line, either bare JSON or the capture layout
//! `<recv_ns> <raw message>` (the layout of `shared/fixtures` and of hftbacktest's collector),
//! optionally gzip-compressed (`.gz`).
//!
//! [`LineReader`] reads them a line at a time with a cap on line length, so no input (a gzip
//! bomb, `/dev/zero`) makes memory grow: `mdrelay decode` and `mdrelay replay` read through it,
//! and [`read_all`] (the replay exchange) too. Any thread; blocks on file reads only.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::market::fixed::parse_u64;

/// Opens `path` (`-` = standard input) for line reading, decompressing `.gz` files.
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let raw: Box<dyn Read + Send> = if path == Path::new("-") {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path)?)
    };
    let gz = path.extension().is_some_and(|e| e == "gz");
    Ok(if gz {
        Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(raw)))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, raw))
    })
}

/// Splits a recording line into its receive time (when it has the `<recv_ns> ` prefix) and the
/// raw message. Trailing `\r`/`\n` are removed.
pub fn split_line(line: &str) -> (Option<u64>, &str) {
    let line = line.trim_end_matches(['\n', '\r']);
    // The time has at most 20 digits, so its space is among the first 21 bytes.
    let head = line.as_bytes().get(..21).unwrap_or(line.as_bytes());
    if let Some(sp) = memchr::memchr(b' ', head) {
        // `sp` indexes an ASCII space: both sides are char boundaries.
        if let (Some(ns), Some(rest)) = (line.get(..sp).and_then(parse_u64), line.get(sp + 1..)) {
            return (Some(ns), rest);
        }
    }
    (None, line)
}

/// Nothing but whitespace (a message line to skip): one byte looked at for the usual `{…`.
#[inline]
pub fn is_blank(raw: &str) -> bool {
    raw.as_bytes().first().is_none_or(|c| !c.is_ascii_graphic()) && raw.trim().is_empty()
}

/// Longest line read by default, bytes (newline excluded): 8 MiB, far above any venue message
/// (a 5000-level Binance depth snapshot is about 200 KiB). `decode --max-line-bytes` changes it.
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 << 20;

/// Why a line cannot be used. Displayed as the reason after `file:line: ` (callers that skip
/// it add `, skipped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadLine {
    /// Longer than the cap (the cap, bytes).
    TooLong(usize),
    /// Not valid UTF-8.
    NotUtf8,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadLine::TooLong(max) => write!(f, "line longer than {max} bytes"),
            BadLine::NotUtf8 => f.write_str("invalid UTF-8"),
        }
    }
}

/// Reads lines with a cap on their length: a longer line is consumed in bounded chunks up to
/// its newline, never buffered whole, and reported as [`BadLine::TooLong`]. Memory: the cap
/// plus the 64 KiB read buffer.
pub struct LineReader {
    inner: Box<dyn BufRead + Send>,
    /// The line being read (at most `max` bytes).
    buf: Vec<u8>,
    max: usize,
    /// Lines returned so far (the number of the last one).
    line_no: u64,
    /// Set at the end of the input or after an error: nothing more to read.
    done: bool,
}

impl LineReader {
    /// Reads `path` (`-` = standard input, `.gz` decompressed; see [`open`]), lines of at most
    /// `max_line_bytes`.
    pub fn open(path: &Path, max_line_bytes: usize) -> io::Result<LineReader> {
        Ok(LineReader::new(open(path)?, max_line_bytes))
    }

    /// Reads `inner`, lines of at most `max_line_bytes`.
    pub fn new(inner: Box<dyn BufRead + Send>, max_line_bytes: usize) -> LineReader {
        LineReader {
            inner,
            buf: Vec::new(),
            max: max_line_bytes,
            line_no: 0,
            done: false,
        }
    }

    /// Lines returned so far: after an error, the complete lines before it.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// The next line, numbered from 1, without its `\n` (a `\r` stays: [`split_line`] removes
    /// it), or why it was skipped; `Ok(None)` at the end. A last line without a newline counts.
    /// An `Err` (an I/O error, a corrupt or truncated gzip stream) stops the input: every
    /// complete line before it was returned, a partial one is dropped, and `Ok(None)` follows.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Result<&str, BadLine>)>> {
        if self.done {
            return Ok(None);
        }
        self.buf.clear();
        let (mut any, mut too_long) = (false, false);
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            if chunk.is_empty() {
                self.done = true;
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (take, used, end) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, i + 1, true),
                None => (chunk.len(), chunk.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > self.max {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.inner.consume(used);
            if end {
                break;
            }
        }
        self.line_no += 1;
        let line = if too_long {
            Err(BadLine::TooLong(self.max))
        } else {
            std::str::from_utf8(&self.buf).map_err(|_| BadLine::NotUtf8)
        };
        Ok(Some((self.line_no, line)))
    }
}

/// One recorded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Receive time, ns since epoch, when the line carried one.
    pub recv_ns: Option<u64>,
    /// The message exactly as the venue sent it.
    pub raw: String,
}

/// Reads a whole recording into memory (the replay exchange serves it from there).
/// Empty lines are skipped; a bad line (not UTF-8, over [`DEFAULT_MAX_LINE_BYTES`]) is an
/// `InvalidData` error naming its line.
pub fn read_all(path: &Path) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut reader = LineReader::open(path, DEFAULT_MAX_LINE_BYTES)?;
    while let Some((no, line)) = reader.next_line()? {
        let line = line.map_err(|bad| {
            io::Error::new(io::ErrorKind::InvalidData, format!("line {no}: {bad}"))
        })?;
        let (recv_ns, raw) = split_line(line);
        if raw.is_empty() {
            continue;
        }
        out.push(Record {
            recv_ns,
            raw: raw.to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_both_layouts() {
        assert_eq!(
            split_line("1723161254024619568 {\"a\":1}\n"),
            (Some(1_723_161_254_024_619_568), "{\"a\":1}")
        );
        assert_eq!(split_line("{\"a\": 1}"), (None, "{\"a\": 1}"));
        assert_eq!(split_line("[1, {\"a\"}]\r\n"), (None, "[1, {\"a\"}]"));
        assert_eq!(
            split_line("99999999999999999999999 x"),
            (None, "99999999999999999999999 x")
        );
        assert_eq!(split_line("18446744073709551615 x"), (Some(u64::MAX), "x"));
        for no_time in [
            "18446744073709551616 x",
            " x",
            "12a x",
            "42",
            "000000000000000000001 x",
        ] {
            assert_eq!(split_line(no_time), (None, no_time), "{no_time}");
        }
        assert_eq!(split_line("00000000000000000001 x"), (Some(1), "x"));
        for (raw, blank) in [
            ("", true),
            (" \t\u{a0}", true),
            ("{}", false),
            (" {}", false),
            ("\u{e9}", false),
        ] {
            assert_eq!(is_blank(raw), blank, "{raw:?}");
        }
    }

    #[test]
    fn reads_the_bundled_capture() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/binance/spot_ethusdt_20240808.txt.gz");
        let recs = read_all(&path).unwrap();
        assert_eq!(recs.len(), 33_618);
        assert!(recs.iter().all(|r| r.recv_ns.is_some()));
    }

    /// Lines read: number and text, or why skipped.
    type Lines = Vec<(u64, Result<String, BadLine>)>;

    /// Every line of `input` read with a cap of `max`, then the end or the error.
    fn read_lines(input: Vec<u8>, max: usize) -> (Lines, Option<io::Error>) {
        let reader: Box<dyn BufRead + Send> =
            Box::new(BufReader::with_capacity(16, io::Cursor::new(input)));
        let mut r = LineReader::new(reader, max);
        let mut lines = Vec::new();
        loop {
            match r.next_line() {
                Ok(Some((no, l))) => lines.push((no, l.map(str::to_owned))),
                Ok(None) => return (lines, None),
                Err(e) => {
                    assert_eq!(r.line_no(), lines.len() as u64);
                    assert!(r.next_line().unwrap().is_none(), "nothing after an error");
                    return (lines, Some(e));
                }
            }
        }
    }

    #[test]
    fn line_reader_numbers_lines_and_reports_bad_ones_in_place() {
        let mut input = b"a b\r\n\n".to_vec();
        input.extend_from_slice(b"\xff\xfe\n");
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend_from_slice(b"\nlast without newline");
        let (lines, err) = read_lines(input, 40);
        assert!(err.is_none());
        let ok = |s: &str| Ok(s.to_owned());
        assert_eq!(
            lines,
            vec![
                (1, ok("a b\r")),
                (2, ok("")),
                (3, Err(BadLine::NotUtf8)),
                (4, Err(BadLine::TooLong(40))),
                (5, ok("last without newline")),
            ]
        );
        assert_eq!(
            BadLine::TooLong(40).to_string(),
            "line longer than 40 bytes"
        );
        assert_eq!(read_lines(Vec::new(), 40).0, vec![]);
    }

    #[test]
    fn line_reader_skips_a_long_line_without_buffering_it() {
        let mut input = vec![b'y'; 1 << 20];
        input.extend_from_slice(b"\nok\n");
        let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(input));
        let mut r = LineReader::new(reader, 1000);
        assert_eq!(
            r.next_line().unwrap(),
            Some((1, Err(BadLine::TooLong(1000))))
        );
        assert!(r.buf.capacity() <= 1000, "{}", r.buf.capacity());
        assert_eq!(r.next_line().unwrap(), Some((2, Ok("ok"))));
        // Exactly the cap is allowed.
        let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(b"12345\n".to_vec()));
        assert_eq!(
            LineReader::new(reader, 5).next_line().unwrap(),
            Some((1, Ok("12345")))
        );
    }

    #[test]
    fn line_reader_returns_every_complete_line_before_a_truncated_gzip() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for i in 0..10_000 {
            std::io::Write::write_all(&mut gz, format!("{i} line {i}\n").as_bytes()).unwrap();
        }
        let mut bytes = gz.finish().unwrap();
        bytes.truncate(bytes.len() / 2);
        let reader: Box<dyn BufRead + Send> =
            Box::new(BufReader::new(MultiGzDecoder::new(io::Cursor::new(bytes))));
        let mut r = LineReader::new(reader, 1000);
        let mut n = 0u64;
        let err = loop {
            match r.next_line() {
                Ok(Some((no, l))) => {
                    n += 1;
                    assert_eq!(no, n);
                    assert_eq!(l.unwrap(), format!("{} line {}", n - 1, n - 1));
                }
                Ok(None) => panic!("a truncated stream is an error"),
                Err(e) => break e,
            }
        };
        assert!(n > 1000 && n < 10_000, "{n} lines before the cut");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        let (lines, err) = read_lines(b"x\n".to_vec(), 1);
        assert_eq!(
            (lines, err.is_none()),
            (vec![(1, Ok("x".to_owned()))], true)
        );
    }
}
