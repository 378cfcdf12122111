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
//!
//! [`Messages`] is that reading, shared with `mdrelay export` (`super::export`).
//!
//! `--summary` ([`summary`]) runs the same reading and parsing with no output per event and
//! prints one line at the end: the parser's cost, measurable with any profiler (`make
//! bench-instr` counts its instructions under callgrind).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use super::args::parse_venue;
use crate::feed::venue;
use crate::market::event::Event;
use crate::persist::recording::{self, BadLine, LineReader};
use crate::wire::json::{self, Origin};

/// Decodes `file` (or standard input for `-`) as `venue_name` messages, lines of at most
/// `max_line_bytes`.
pub fn run(venue_name: &str, file: &Path, max_line_bytes: u64) -> anyhow::Result<ExitCode> {
    let v = parse_venue(venue_name)?;
    let mut parser = venue::parser_for(v);
    let mut messages = Messages::open(file, max_line_bytes)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    // One line's JSON is built first: a control message (ack, heartbeat) prints nothing, even
    // if the parser reported it as a status event for the relay's subscribers.
    let mut line_out: Vec<u8> = Vec::with_capacity(4096);
    let mut filtered: u64 = 0;
    loop {
        let (no, recv_ns, raw) = match messages.next_message() {
            Ok(Some(Message::Line { no, recv_ns, raw })) => (no, recv_ns, raw),
            Ok(Some(Message::Bad { no, why })) => {
                eprintln!("{}:{no}: {why}, skipped", file.display());
                continue;
            }
            Ok(Some(Message::Blank)) => continue,
            Ok(None) => break,
            Err(e) => {
                return match out.flush() {
                    Err(f) if f.kind() != io::ErrorKind::BrokenPipe => Err(f.into()),
                    _ => Err(e),
                };
            }
        };
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

/// One item of a recording as [`Messages::next_message`] reads it.
#[derive(Debug)]
pub enum Message<'a> {
    /// A non-empty line: its number, its receive time when it has one (`<recv_ns> <message>`),
    /// and the message.
    Line {
        /// Line number, from 1.
        no: u64,
        /// Receive time, ns since epoch; `None` for a bare message.
        recv_ns: Option<u64>,
        /// The venue message.
        raw: &'a str,
    },
    /// A line skipped before parsing (not UTF-8, longer than the cap); callers report it as
    /// `file:line: reason, skipped`.
    Bad {
        /// Line number, from 1.
        no: u64,
        /// Why it was skipped.
        why: BadLine,
    },
    /// An empty or blank line: nothing to parse.
    Blank,
}

/// The messages of one recording (`<recv_ns> <message>` or bare lines, .gz or plain, `-` for
/// standard input): what `decode`, `decode --summary` and `export`
/// read.
pub struct Messages {
    path: PathBuf,
    reader: LineReader,
}

impl Messages {
    /// Opens `path` for lines of at most `max_line_bytes`; the error names the file.
    pub fn open(path: &Path, max_line_bytes: u64) -> anyhow::Result<Messages> {
        let max = usize::try_from(max_line_bytes).unwrap_or(usize::MAX);
        let reader =
            LineReader::open(path, max).with_context(|| format!("opening {}", path.display()))?;
        Ok(Messages {
            path: path.to_path_buf(),
            reader,
        })
    }

    /// The next message or skipped line, `None` at the end. An error stops the file (I/O, a
    /// corrupt or truncated gzip) and says after which line.
    pub fn next_message(&mut self) -> anyhow::Result<Option<Message<'_>>> {
        // Lines complete before an error: `next_line` counts a line only once it has it all.
        let at = self.reader.line_no();
        let (no, line) = match self.reader.next_line() {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "reading {}: stopped after line {at}",
                    self.path.display()
                )));
            }
        };
        Ok(Some(match line {
            Err(why) => Message::Bad { no, why },
            Ok(line) => match recording::split_line(line) {
                (_, raw) if recording::is_blank(raw) => Message::Blank,
                (recv_ns, raw) => Message::Line { no, recv_ns, raw },
            },
        }))
    }
}

/// What `decode --summary` counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Non-empty lines handed to the parser.
    pub messages: u64,
    /// Trade events.
    pub trades: u64,
    /// Quote (best bid/offer) events.
    pub quotes: u64,
    /// Book events (snapshots and diffs).
    pub books: u64,
    /// Status events (acks, gaps, resyncs).
    pub status: u64,
    /// Events of any other kind.
    pub other: u64,
    /// Lines the parser refused (each also reported on stderr as `file:line: reason`).
    pub parse_errors: u64,
    /// Lines skipped before parsing: not UTF-8, or longer than the line cap.
    pub bad_lines: u64,
    /// Messages the venue's fast path handed to its general parser ([`venue::VenueParser::fast_path_fallbacks`]).
    pub fast_path_fallbacks: u64,
}

impl Summary {
    fn count(&mut self, ev: &Event<'_>) {
        match ev {
            Event::Trade(_) => self.trades += 1,
            Event::Quote(_) => self.quotes += 1,
            Event::Book(_) => self.books += 1,
            Event::Status(_) => self.status += 1,
            #[allow(unreachable_patterns)]
            _ => self.other += 1,
        }
    }

    /// The one summary line; `elapsed_ns` covers reading and parsing every line.
    pub fn line(&self, elapsed_ns: u128) -> String {
        let per = elapsed_ns
            .checked_div(u128::from(self.messages))
            .unwrap_or(0);
        format!(
            "messages={} trades={} quotes={} books={} status={} other={} parse_errors={} \
             bad_lines={} fast_path_fallbacks={} ns_per_message={per}",
            self.messages,
            self.trades,
            self.quotes,
            self.books,
            self.status,
            self.other,
            self.parse_errors,
            self.bad_lines,
            self.fast_path_fallbacks,
        )
    }
}

/// `decode --summary`: reads and parses `file` like [`run`], prints no event, and ends with one
/// [`Summary`] line on stdout. Parse errors are still reported on stderr.
pub fn summary(venue_name: &str, file: &Path, max_line_bytes: u64) -> anyhow::Result<ExitCode> {
    let v = parse_venue(venue_name)?;
    let mut parser = venue::parser_for(v);
    let mut messages = Messages::open(file, max_line_bytes)?;
    let mut s = Summary::default();
    let start = Instant::now();
    while let Some(m) = messages.next_message()? {
        let (no, recv_ns, raw) = match m {
            Message::Line { no, recv_ns, raw } => (no, recv_ns, raw),
            Message::Bad { no, why } => {
                s.bad_lines += 1;
                eprintln!("{}:{no}: {why}, skipped", file.display());
                continue;
            }
            Message::Blank => continue,
        };
        s.messages += 1;
        let r = parser.parse(raw, recv_ns.unwrap_or(0), &mut |_, ev| s.count(ev));
        if let Err(e) = r {
            s.parse_errors += 1;
            eprintln!("{}:{no}: {e}", file.display());
        }
    }
    let elapsed_ns = start.elapsed().as_nanos();
    s.fast_path_fallbacks = parser.fast_path_fallbacks();
    let mut out = io::stdout().lock();
    match writeln!(out, "{}", s.line(elapsed_ns)).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
