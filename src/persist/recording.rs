//! Reading recordings: one venue message a line, either bare JSON or the capture layout
//! `<recv_ns> <raw message>` (the layout of `shared/fixtures` and of hftbacktest's collector),
//! optionally gzip-compressed (`.gz`).
//!
//! Used by `mdrelay decode` and the replay exchange; any thread; blocks on file reads only.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

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
    if let Some((ts, rest)) = line.split_once(' ') {
        if !ts.is_empty() && ts.len() <= 20 && ts.bytes().all(|b| b.is_ascii_digit()) {
            if let Some(ns) = crate::market::fixed::parse_u64(ts) {
                return (Some(ns), rest);
            }
        }
    }
    (None, line)
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
/// Empty lines are skipped.
pub fn read_all(path: &Path) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut reader = open(path)?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let (recv_ns, raw) = split_line(&line);
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
    }

    #[test]
    fn reads_the_bundled_capture() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/binance/spot_ethusdt_20240808.txt.gz");
        let recs = read_all(&path).unwrap();
        assert_eq!(recs.len(), 33_618);
        assert!(recs.iter().all(|r| r.recv_ns.is_some()));
    }
}
