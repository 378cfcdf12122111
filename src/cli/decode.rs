//! `mdrelay decode`: raw venue messages (one a line; bare JSON or `<recv_ns> <json>`; .gz ok)
//! through the collectors' parser, printed as the documented JSON lines. Parse errors go to
//! stderr with file and line; control messages (acks, heartbeats) print nothing.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::args::parse_venue;
use crate::feed::venue;
use crate::persist::recording;
use crate::wire::json::{self, Origin};

/// Decodes `file` (or standard input for `-`) as `venue_name` messages.
pub fn run(venue_name: &str, file: &Path) -> anyhow::Result<ExitCode> {
    let v = parse_venue(venue_name)?;
    let mut parser = venue::parser_for(v);
    let reader = recording::open(file).with_context(|| format!("opening {}", file.display()))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    // One line's JSON is built first: a control message (ack, heartbeat) prints nothing, even
    // if the parser reported it as a status event for the relay's subscribers.
    let mut line_out: Vec<u8> = Vec::with_capacity(4096);
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        let (recv_ns, raw) = recording::split_line(&line);
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
            Err(e) => eprintln!("{}:{}: {e}", file.display(), i + 1),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
