//! `RelayClient`: a synchronous subscriber of the relay socket (used by `mdrelay tail`, tests and
//! benchmarks; the reference for clients in other languages is docs/PROTOCOL.md).
//!
//! Reads the byte stream into a buffer, cuts it into frames by their header length, verifies
//! each frame's CRC and hands it out borrowed from the buffer. It keeps the id → name table from
//! the InstrumentDefs it has seen. Blocks in `read(2)` (optionally with a timeout); one thread.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::market::instrument::{InstrumentId, InstrumentName};
use crate::wire::protocol::{self, DecodeError, FrameRef, Message};
use crate::wire::subscription::{self, Filter};

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or reading failed (a read timeout shows as `WouldBlock`/`TimedOut`).
    #[error("relay socket: {0}")]
    Io(io::Error),
    /// The bytes are not a valid frame: the stream cannot be trusted past this point.
    #[error("bad frame from relay: {0}")]
    Decode(DecodeError),
    /// The relay closed the connection in the middle of a frame.
    #[error("relay closed the connection mid-frame ({0} bytes of a partial frame)")]
    Truncated(usize),
}

// The causes are in the messages, not `source()`s, so each text is printed once; hence `From` by
// hand rather than `#[from]`.
impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<DecodeError> for ClientError {
    fn from(e: DecodeError) -> Self {
        ClientError::Decode(e)
    }
}

/// A frame as handed out by [`RelayClient::next_frame`], with the name of its instrument when
/// its definition has been received.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The verified frame.
    pub frame: FrameRef<'a>,
    /// Venue and symbol of `frame.header.instrument_id`.
    pub instrument: Option<&'a InstrumentName>,
    /// The whole frame as received (header, payload, CRC): what a bridge forwards unchanged.
    pub raw: &'a [u8],
}

/// A connected subscriber.
#[derive(Debug)]
pub struct RelayClient {
    stream: UnixStream,
    /// Received bytes; `buf[start..end]` is not yet handed out.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    names: FxHashMap<InstrumentId, InstrumentName>,
}

impl RelayClient {
    /// Connects to the relay socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        Ok(Self::from_stream(UnixStream::connect(path)?))
    }

    /// Connects and subscribes (docs/PROTOCOL.md §6.5): the requests go out at once, within the
    /// relay's hello window, so the join snapshot already follows them. No filter: everything.
    pub fn connect_filtered(path: &Path, filters: &[Filter]) -> Result<Self, ClientError> {
        let c = Self::connect(path)?;
        for f in filters {
            c.subscribe(f)?;
        }
        Ok(c)
    }

    /// Sends a subscribe request; the relay answers with a `request_ok` (or `request_error`)
    /// status frame in the stream.
    pub fn subscribe(&self, f: &Filter) -> Result<(), ClientError> {
        self.request(true, f)
    }

    /// Sends an unsubscribe request for a subscription equal to `f`.
    pub fn unsubscribe(&self, f: &Filter) -> Result<(), ClientError> {
        self.request(false, f)
    }

    fn request(&self, subscribe: bool, f: &Filter) -> Result<(), ClientError> {
        let mut buf = protocol::FrameBuf::new();
        subscription::encode_request(&mut buf, subscribe, f);
        (&self.stream).write_all(&buf)?;
        Ok(())
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: UnixStream) -> Self {
        RelayClient {
            stream,
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
            names: FxHashMap::default(),
        }
    }

    /// Read timeout for [`next_frame`](Self::next_frame); `None` blocks.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> Result<(), ClientError> {
        Ok(self.stream.set_read_timeout(t)?)
    }

    /// The name of an instrument whose definition has been received.
    pub fn instrument(&self, id: InstrumentId) -> Option<&InstrumentName> {
        self.names.get(&id)
    }

    /// The underlying socket (e.g. to shut it down from another thread via `try_clone`).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Reads more bytes so that at least `needed` are buffered. Ok(false) on EOF.
    fn fill(&mut self, needed: usize) -> Result<bool, ClientError> {
        if self.start > 0 && self.start + needed > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if needed > self.buf.len() {
            self.buf.resize(needed.next_power_of_two(), 0);
        }
        while self.end - self.start < needed {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Bytes received but not yet handed out as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next frame, or `None` when the relay closed the connection at a frame boundary.
    pub fn next_frame(&mut self) -> Result<Option<Received<'_>>, ClientError> {
        loop {
            match protocol::frame_len(&self.buf[self.start..self.end]) {
                Ok(total) if self.end - self.start >= total => break,
                Ok(total) => {
                    if !self.fill(total)? {
                        return Err(ClientError::Truncated(self.end - self.start));
                    }
                }
                Err(DecodeError::Incomplete { needed }) => {
                    if !self.fill(needed)? {
                        return match self.end - self.start {
                            0 => Ok(None),
                            n => Err(ClientError::Truncated(n)),
                        };
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let at = self.start;
        let (frame, n) = protocol::decode_frame(&self.buf[at..self.end])?;
        let raw = &self.buf[at..at + n];
        self.start += n;
        if self.start == self.end {
            // The next read starts at the front again; this frame's bytes stay untouched until
            // then (the borrow of `self` below outlives any read).
            self.start = 0;
            self.end = 0;
        }
        if let Ok(Message::InstrumentDef { venue, symbol, .. }) = frame.message() {
            self.names.insert(
                frame.header.instrument_id,
                InstrumentName {
                    venue: venue.to_owned(),
                    symbol: symbol.to_owned(),
                },
            );
        }
        Ok(Some(Received {
            frame,
            instrument: self.names.get(&frame.header.instrument_id),
            raw,
        }))
    }
}
