//! `mdrelay export --format hftbacktest FILE… -o OUT.npz`: recordings of any venue mdrelay
//! parses → hftbacktest's normalized event array ([`crate::export::hftbacktest`]), one
//! instrument per file.
//!
//! Reading and parsing are `mdrelay decode`'s ([`super::decode::Messages`], the venue parser
//! with its book synchronisation): the files are read in the order given, as one continuous
//! recording, through one parser. A line without a receive time takes the previous line's.
//! Bad lines and lines the parser refuses are reported on stderr as `file:line: reason` and
//! skipped, as `decode` does; an error that stops a file (I/O, corrupt gzip) stops the export
//! (exit 1, nothing written).
//!
//! The venue is `--venue`, or every file's directory name (`data/okx/…`). The instrument is
//! `--symbol`, or the only one with book or trade events; a recording of several needs
//! `--symbol` (exit 2 listing them).
//!
//! Report: one summary line on stderr, `export: …`, with the rows written (`split`: rows
//! written twice, once per timeline, because exchange times run backwards there) and by kind, what was
//! skipped (quotes, other kinds, filtered messages), what the parser reported about the book
//! (gaps, resyncs, checksum mismatches, crossed books, diffs written while the book may be bad),
//! parse errors and bad lines, and the price and size steps to give hftbacktest as `tick_size`
//! and `lot_size`. Exit 0. With `--strict`, any bad line, parse error, gap, resync, checksum
//! mismatch or may-be-bad diff exits 1 instead and writes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::args::parse_venue;
use super::decode::{Message, Messages};
use crate::config::ConfigError;
use crate::export::hftbacktest::{self, Converter, Counts};
use crate::feed::replay::venue_from_path;
use crate::feed::venue::{self, Parsed};
use crate::market::instrument::Venue;
use crate::persist::recording::DEFAULT_MAX_LINE_BYTES;

/// What `mdrelay export` was asked for.
pub struct Request<'a> {
    /// Output format (only `hftbacktest`, checked by the argument parser).
    pub format: &'a str,
    /// Recordings, read in this order.
    pub files: &'a [PathBuf],
    /// The `.npz` to write.
    pub output: &'a Path,
    /// Venue protocol (default: from the files' directory).
    pub venue: Option<&'a str>,
    /// Instrument (default: the only one).
    pub symbol: Option<&'a str>,
    /// Refuse a recording with bad lines, parse errors or book problems.
    pub strict: bool,
}

/// What reading and parsing counted, across files.
#[derive(Debug, Default)]
struct Read {
    messages: u64,
    bad_lines: u64,
    parse_errors: u64,
    filtered: u64,
}

/// A usage error (exit 2) about `flag`.
fn usage(flag: &str, message: String) -> anyhow::Error {
    ConfigError::Invalid {
        key: flag.to_owned(),
        message,
    }
    .into()
}

/// The venue of `req`: `--venue`, or the one every file's directory names.
fn venue_of(req: &Request<'_>) -> anyhow::Result<Venue> {
    if let Some(name) = req.venue {
        return parse_venue(name).map_err(|e| usage("--venue", e.to_string()));
    }
    let mut found: Option<Venue> = None;
    for f in req.files {
        let v = venue_from_path(f).ok_or_else(|| {
            usage(
                "--venue",
                format!(
                    "{}: its directory names no venue; give --venue",
                    f.display()
                ),
            )
        })?;
        if found.is_some_and(|w| w != v) {
            return Err(usage(
                "--venue",
                "the files' directories name different venues; export one venue at a time"
                    .to_owned(),
            ));
        }
        found = Some(v);
    }
    found.ok_or_else(|| usage("FILE", "no recording given".to_owned()))
}

/// Runs `mdrelay export`.
pub fn run(req: &Request<'_>) -> anyhow::Result<ExitCode> {
    debug_assert_eq!(req.format, "hftbacktest");
    let v = venue_of(req)?;
    let mut parser = venue::parser_for(v);
    let mut books: HashMap<String, Converter> = HashMap::new();
    // Feed-wide status (events without a symbol).
    let mut feed = Converter::new();
    let mut read = Read::default();
    let mut last_ns: u64 = 0;
    for file in req.files {
        let mut messages = Messages::open(file, DEFAULT_MAX_LINE_BYTES as u64)?;
        while let Some(m) = messages.next_message()? {
            let (no, recv_ns, raw) = match m {
                Message::Line { no, recv_ns, raw } => (no, recv_ns, raw),
                Message::Bad { no, why } => {
                    read.bad_lines += 1;
                    eprintln!("{}:{no}: {why}, skipped", file.display());
                    continue;
                }
                Message::Blank => continue,
            };
            read.messages += 1;
            let local_ns = recv_ns.unwrap_or(last_ns);
            last_ns = local_ns;
            let r = parser.parse(raw, local_ns, &mut |sym, ev| match sym {
                None => feed.push(ev, local_ns),
                Some(s) if req.symbol.is_none_or(|w| w == s) => match books.get_mut(s) {
                    Some(c) => c.push(ev, local_ns),
                    None => books.entry(s.to_owned()).or_default().push(ev, local_ns),
                },
                Some(_) => {}
            });
            match r {
                Ok(Parsed::Data | Parsed::Control) => {}
                Ok(Parsed::Filtered) => read.filtered += 1,
                Err(e) => {
                    read.parse_errors += 1;
                    eprintln!("{}:{no}: {e}", file.display());
                }
            }
        }
    }
    let (symbol, conv) = pick(req, v, books)?;
    let mut c = *conv.counts();
    // Feed-wide reports (a disconnect resets every book) count against the export too.
    let f = feed.counts();
    c.gaps += f.gaps;
    c.resyncs += f.resyncs;
    c.checksum_mismatches += f.checksum_mismatches;
    let rows = conv.ordered();
    debug_assert!(crate::export::order::is_valid(&rows));
    let problems = read.bad_lines + read.parse_errors + c.book_problems();
    let refused = req.strict && problems > 0;
    if !refused {
        hftbacktest::write_npz(req.output, &rows)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", req.output.display()))?;
    }
    eprintln!(
        "{}",
        summary(&symbol, v, &c, &read, rows.len(), req, refused)
    );
    Ok(if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The instrument to export: `--symbol`, or the only one with rows.
fn pick(
    req: &Request<'_>,
    v: Venue,
    books: HashMap<String, Converter>,
) -> anyhow::Result<(String, Converter)> {
    let mut with_rows: Vec<(String, Converter)> = books
        .into_iter()
        .filter(|(_, c)| c.counts().rows() > 0)
        .collect();
    with_rows.sort_by(|a, b| a.0.cmp(&b.0));
    match (with_rows.len(), req.symbol) {
        (1, _) => Ok(with_rows.remove(0)),
        (0, Some(s)) => Err(anyhow::anyhow!(
            "no book or trade events of {s} in the recording(s) ({} protocol)",
            v.name()
        )),
        (0, None) => Err(anyhow::anyhow!(
            "no book or trade events in the recording(s) ({} protocol)",
            v.name()
        )),
        _ => Err(usage(
            "--symbol",
            format!(
                "the recording(s) hold several instruments; export one with --symbol: {}",
                with_rows
                    .iter()
                    .map(|(s, c)| format!("{s} ({} rows)", c.counts().rows()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The one summary line.
fn summary(
    symbol: &str,
    v: Venue,
    c: &Counts,
    read: &Read,
    rows: usize,
    req: &Request<'_>,
    refused: bool,
) -> String {
    let outcome = if refused {
        format!(
            "none (--strict: {} problem(s))",
            read.bad_lines + read.parse_errors + c.book_problems()
        )
    } else {
        req.output.display().to_string()
    };
    format!(
        "export: {symbol} ({venue}) rows={rows} split={split} trades={trades} \
         snapshots={snapshots} snapshot_levels={sl} diffs={diffs} diff_levels={dl} \
         trades_no_side={ns} skipped_quotes={q} skipped_other={o} filtered={filtered} \
         gaps={gaps} resyncs={resyncs} checksum_mismatches={cm} crossed={crossed} \
         may_be_bad_diffs={mbb} parse_errors={pe} bad_lines={bl} messages={m} \
         tick_size={tick} lot_size={lot} output={outcome}",
        venue = v.name(),
        split = (rows as u64).saturating_sub(c.rows()),
        trades = c.trades,
        snapshots = c.snapshots,
        sl = c.snapshot_levels,
        diffs = c.diffs,
        dl = c.diff_levels,
        ns = c.trades_no_side,
        q = c.quotes_skipped,
        o = c.other_skipped,
        filtered = read.filtered,
        gaps = c.gaps,
        resyncs = c.resyncs,
        cm = c.checksum_mismatches,
        crossed = c.crossed,
        mbb = c.may_be_bad,
        pe = read.parse_errors,
        bl = read.bad_lines,
        m = read.messages,
        tick = c.price_step(),
        lot = c.size_step(),
    )
}
