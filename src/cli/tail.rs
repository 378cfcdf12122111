//! `mdrelay tail`: subscribe to a running relay and print one line per event, as text or as the
//! documented JSON lines (docs/PROTOCOL.md); a closed pipe ends it quietly.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::args::{load_config, ConfigArgs};
use crate::market::event::{Level, StatusCode};
use crate::relay::client::RelayClient;
use crate::wire::json::{self, Human, Origin};
use crate::wire::protocol::{self, Message};
use crate::wire::subscription::{self, Filter};

/// Writes one line to stdout; a closed pipe (`| head`) ends the command quietly.
fn emit(out: &mut impl Write, line: impl std::fmt::Display) -> io::Result<bool> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

/// The subscription `tail`'s filter flags ask for; `None` without any (everything).
pub fn filter(
    venue: Option<String>,
    symbol: Option<String>,
    kind: &[String],
) -> anyhow::Result<Option<Filter>> {
    if venue.is_none() && symbol.is_none() && kind.is_empty() {
        return Ok(None);
    }
    let mut kinds = 0u8;
    for k in kind {
        match subscription::KIND_NAMES.iter().find(|(_, n)| n == k) {
            Some((bit, _)) => kinds |= bit,
            None => anyhow::bail!("--kind {k}: expected trade, quote, book, bar or status"),
        }
    }
    Ok(Some(Filter {
        venue: venue.unwrap_or_default(),
        symbol: symbol.unwrap_or_default(),
        kinds: if kinds == 0 {
            subscription::kinds::ALL
        } else {
            kinds
        },
        lossy: false,
    }))
}

pub fn run(
    socket: Option<PathBuf>,
    as_json: bool,
    count: Option<u64>,
    filter: Option<Filter>,
    cfg: &ConfigArgs,
) -> anyhow::Result<ExitCode> {
    let path = match socket {
        Some(p) => p,
        None => load_config(cfg)?.relay.socket_path,
    };
    let mut client = RelayClient::connect_filtered(&path, filter.as_slice())
        .with_context(|| format!("connecting to {}", path.display()))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut levels: Vec<Level> = Vec::new();
    let mut asks: Vec<Level> = Vec::new();
    let mut n = 0u64;
    while let Some(rx) = client.next_frame()? {
        let frame = rx.frame;
        let h = frame.header;
        let msg = match frame.message() {
            Ok(m) => m,
            Err(e) => {
                eprintln!("mdrelay tail: skipping frame: {e}");
                continue;
            }
        };
        let (venue, symbol) = match (&msg, rx.instrument) {
            (_, Some(name)) => (name.venue.as_str(), Some(name.symbol.as_str())),
            (Message::Status { venue, .. }, None) => (*venue, None),
            _ => ("?", None),
        };
        let origin = Origin {
            venue,
            symbol,
            recv_ts_ns: Some(h.recv_ts_ns),
        };
        let ev = match msg {
            Message::Bar(bar) => {
                let ok = if as_json {
                    match json::write_bar(&mut out, &origin, &bar) {
                        Ok(()) => true,
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => false,
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    emit(&mut out, json::HumanBar { origin, bar: &bar })?
                };
                if !ok {
                    return Ok(ExitCode::SUCCESS);
                }
                n += 1;
                if count.is_some_and(|c| n >= c) {
                    break;
                }
                continue;
            }
            // The relay's answer to tail's own subscription is not part of the stream shown.
            Message::Status { status, .. } if status.code == StatusCode::RequestOk => continue,
            m => match protocol::event_of(&h, m, &mut levels, &mut asks) {
                Some(ev) => ev,
                None => continue,
            },
        };
        let ok = if as_json {
            match json::write_event(&mut out, &origin, &ev) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => false,
                Err(e) => return Err(e.into()),
            }
        } else {
            let seq = (h.sequence != 0).then_some(h.sequence);
            emit(
                &mut out,
                Human {
                    origin,
                    event: &ev,
                    sequence: seq,
                },
            )?
        };
        if !ok {
            return Ok(ExitCode::SUCCESS);
        }
        n += 1;
        if count.is_some_and(|c| n >= c) {
            break;
        }
        // Flush when nothing more is buffered from the relay: lines appear as events arrive,
        // and a burst still costs one write.
        if client.buffered() == 0 {
            match out.flush() {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
                r => r?,
            }
        }
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}
