//! `mdrelay decode`: raw venue messages (one a line; bare JSON or `<recv_ns> <json>`; .gz ok)
//! through the collectors' parser, printed as the documented JSON lines. Control messages
//! (acks, heartbeats) print nothing. Messages the parser deliberately does not relay (Binance
//! futures trades whose `X` is not `MARKET`) print nothing either; their count goes to stderr at
//! the end (`N message(s) filtered: …`) when there are any.
//!
//! Bad input: a line that does not parse, is not UTF-8 or is longer than `--max-line-bytes` is
//! reported on stderr as `file:line: reason` and skipped. An error that stops the file (I/O, a
//! corrupt or truncated gzip) comes after everything decoded before it, names the file, and
//! exits 1.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::args::parse_venue;
use crate::feed::venue;
use crate::persist::recording::{self, LineReader};
use crate::wire::json::{self, Origin};

/// Decodes `file` (or standard input for `-`) as `venue_name` messages, lines of at most
/// `max_line_bytes`.
pub fn run(venue_name: &str, file: &Path, max_line_bytes: u64) -> anyhow::Result<ExitCode> {
    let v = parse_venue(venue_name)?;
    let mut parser = venue::parser_for(v);
    let max = usize::try_from(max_line_bytes).unwrap_or(usize::MAX);
    let mut reader =
        LineReader::open(file, max).with_context(|| format!("opening {}", file.display()))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    // One line's JSON is built first: a control message (ack, heartbeat) prints nothing, even
    // if the parser reported it as a status event for the relay's subscribers.
    let mut line_out: Vec<u8> = Vec::with_capacity(4096);
    let mut filtered: u64 = 0;
    loop {
        let (no, line) = match reader.next_line() {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => {
                let at = reader.line_no();
                return match out.flush() {
                    Err(f) if f.kind() != io::ErrorKind::BrokenPipe => Err(f.into()),
                    _ => Err(anyhow::Error::new(e).context(format!(
                        "reading {}: stopped after line {at}",
                        file.display()
                    ))),
                };
            }
        };
        let line = match line {
            Ok(l) => l,
            Err(bad) => {
                eprintln!("{}:{no}: {bad}, skipped", file.display());
                continue;
            }
        };
        let (recv_ns, raw) = recording::split_line(line);
        if raw.trim().is_empty() {
            continue;
        }
        line_out.clear();
        let r = parser.parse(raw, recv_ns.unwrap_or(0), &mut |sym, ev| {
            let o = Origin {
                venue: v.name(),
                symbol: sym,
                recv_ts_ns: recv_ns,
            };
            // Writing into a Vec cannot fail.
            let _ = json::write_event(&mut line_out, &o, ev);
        });
        match r {
            Ok(venue::Parsed::Data) => match out.write_all(&line_out) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
                r => r?,
            },
            Ok(venue::Parsed::Control) => {}
            Ok(venue::Parsed::Filtered) => filtered += 1,
            Err(e) => eprintln!("{}:{no}: {e}", file.display()),
        }
    }
    if filtered > 0 {
        eprintln!(
            "{}: {filtered} message(s) filtered: trades that are not market executions (Binance futures X other than MARKET)",
            file.display()
        );
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
