#!/usr/bin/env python3
"""mdrelay wire protocol v1: a subscriber client in Python (3.11, standard library only).

Written from docs/PROTOCOL.md alone, as a check that the document is enough to build a client.
Section numbers in comments (§N) refer to that document.

Library use::

    from mdrelay_client import RelayClient, Trade
    with RelayClient("/run/user/1000/mdrelay/relay.sock") as client:
        for msg in client:
            if isinstance(msg, Trade):
                print(client.name_of(msg.header.instrument_id), msg.price, msg.size)

Command line::

    python3 mdrelay_client.py --socket PATH [--count N] [--json] [--summary] [--quiet]
                              [--timeout SECS]
    python3 mdrelay_client.py --selftest

``--count N`` stops after N market-data events (Trade, Quote, BookSnapshot, BookDelta, cached ones
included). ``--summary`` prints, as the last line of standard output, one JSON object with what
was received (counts per type, per-instrument sequences, gaps, ``dropped`` reports, instrument-id
checks). Exit status: 0 clean end (EOF at a frame boundary, or --count reached), 1 protocol error
or connection cut or a violated stream rule, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterator, Optional, Union

# --------------------------------------------------------------------------------------------
# Constants (§2, §4, §5, §7)
# --------------------------------------------------------------------------------------------

MAGIC = b"MDRL"
VERSION = 1
HEADER_LEN = 40
TRAILER_LEN = 4
MAX_PAYLOAD = 1_048_576
ABSENT = -(1 << 63)  # i64::MIN: "no value" (§7.2)
DEFAULT_PRICE_EXPONENT = -8  # §7.1
RATE_EXPONENT = -18  # funding rates (§7.1)

HEADER = struct.Struct("<4sBBHIIQQQ")  # magic ver type flags len id seq exch_ts recv_ts
assert HEADER.size == HEADER_LEN
CRC = struct.Struct("<I")

# Message types (§4)
INSTRUMENT_DEF = 1
TRADE = 2
QUOTE = 3
STATUS = 4
HEARTBEAT = 5
BOOK_SNAPSHOT = 6
BOOK_DELTA = 7
BAR = 8
MARK = 9
LIQUIDATION = 10
OPEN_INTEREST = 11
TYPE_NAMES = {
    INSTRUMENT_DEF: "InstrumentDef",
    TRADE: "Trade",
    QUOTE: "Quote",
    STATUS: "Status",
    HEARTBEAT: "Heartbeat",
    BOOK_SNAPSHOT: "BookSnapshot",
    BOOK_DELTA: "BookDelta",
    BAR: "Bar",
    MARK: "Mark",
    LIQUIDATION: "Liquidation",
    OPEN_INTEREST: "OpenInterest",
}
MARKET_DATA_TYPES = (TRADE, QUOTE, BOOK_SNAPSHOT, BOOK_DELTA)

# Flags (§5)
FLAG_SNAPSHOT = 0x0001
FLAG_LAST_IN_EVENT = 0x0002
FLAG_BOOK_MAY_BE_BAD = 0x0004
FLAG_CACHED = 0x0008

# Trade side (§7.3); any other value reads as unknown.
SIDES = {0: "unknown", 1: "buy", 2: "sell"}

# Liquidation status (§7.5); any other value reads as unknown.
LIQUIDATION_STATUSES = {0: "unknown", 1: "new", 2: "partially_filled", 3: "filled",
                        4: "canceled"}

# Status codes (§7.4)
STATUS_CODES = {
    1: "connected",
    2: "subscribed",
    3: "disconnected",
    4: "reconnecting",
    5: "gap",
    6: "stale",
    7: "resync",
    8: "checksum_mismatch",
    9: "crossed_book",
    10: "dropped",
    11: "not_persisted",
    12: "request_ok",
    13: "request_error",
    14: "too_slow",
}

# Subscription requests (§6.5): client -> relay.
SUBSCRIBE = 64
UNSUBSCRIBE = 65
KIND_BITS = {"trade": 1, "quote": 2, "book": 4, "bar": 8, "status": 16, "mark": 32,
             "liquidation": 64, "open_interest": 128}


def encode_request(venue: str = "", symbol: str = "", kinds: int = 0,
                   subscribe: bool = True) -> bytes:
    """A Subscribe (or Unsubscribe) frame (§6.5): empty venue/symbol = any, kinds 0 = all."""
    v, s = venue.encode("utf-8"), symbol.encode("utf-8")
    payload = struct.pack("<BBHHH", kinds, 0, len(v), len(s), 0) + v + s
    body = HEADER.pack(MAGIC, VERSION, SUBSCRIBE if subscribe else UNSUBSCRIBE, 0,
                       len(payload), 0, 0, 0, 0) + payload
    return body + CRC.pack(zlib.crc32(body))
STATUS_DROPPED = 10


# --------------------------------------------------------------------------------------------
# Errors (§9)
# --------------------------------------------------------------------------------------------


class ProtocolError(Exception):
    """Any failure to read the stream as mdrelay protocol v1."""


class FatalProtocolError(ProtocolError):
    """The stream cannot be resynchronized: close the socket (§9)."""


class BadMagic(FatalProtocolError):
    """Frame bytes 0-3 are not ``MDRL`` (§9 step 1)."""


class UnsupportedVersion(FatalProtocolError):
    """Header byte 4 is not 1 (§9 step 3)."""


class BadLength(FatalProtocolError):
    """``payload_len`` is above 1 MiB (§9 step 4)."""


class BadCrc(FatalProtocolError):
    """The CRC trailer does not match the header and payload (§9 step 6)."""


class Truncated(ProtocolError):
    """EOF in the middle of a frame: the connection was cut (§1 Shutdown, §9 steps 2 and 5)."""


class MalformedPayload(ProtocolError):
    """A valid frame whose payload does not decode (§9 step 8). Framing is intact: skip it."""


class StreamRuleViolation(ProtocolError):
    """The relay broke a rule of §6/§8 (e.g. two names for one id)."""


class NameConflict(StreamRuleViolation):
    """A second InstrumentDef with a different name for a known id (§8.3)."""


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def fixed(raw: int, exponent: int = DEFAULT_PRICE_EXPONENT) -> Optional[Decimal]:
    """Fixed-point i64 to an exact Decimal: raw × 10^exponent (§7.1); ABSENT → None (§7.2)."""
    if raw == ABSENT:
        return None
    return Decimal(raw).scaleb(exponent)


def fmt_decimal(d: Optional[Decimal]) -> Optional[str]:
    """Plain decimal text without exponent or trailing zeros ('2683.8', '2', '100')."""
    if d is None:
        return None
    s = format(d.normalize(), "f")
    return "0" if s in ("-0", "0") else s


def instrument_id(venue: str, symbol: str) -> int:
    """Instrument id: FNV-1a 32 of UTF-8 ``venue + ":" + symbol``, 0 mapped to 1 (§8.1)."""
    h = fnv1a32((venue + ":" + symbol).encode("utf-8"))
    return h if h != 0 else 1


def fnv1a32(data: bytes) -> int:
    """Plain FNV-1a 32-bit hash."""
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


# --------------------------------------------------------------------------------------------
# Frames and messages
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """The 40-byte frame header (§2), plus the CRC trailer."""

    version: int
    msg_type: int
    flags: int
    payload_len: int
    instrument_id: int
    sequence: int
    exchange_ts_ns: int  # 0 = absent
    recv_ts_ns: int
    crc32: int

    @property
    def cached(self) -> bool:
        return bool(self.flags & FLAG_CACHED)

    @property
    def snapshot(self) -> bool:
        return bool(self.flags & FLAG_SNAPSHOT)

    @property
    def book_may_be_bad(self) -> bool:
        return bool(self.flags & FLAG_BOOK_MAY_BE_BAD)

    @property
    def last_in_event(self) -> bool:
        return bool(self.flags & FLAG_LAST_IN_EVENT)

    @property
    def exchange_ts(self) -> Optional[int]:
        """The venue timestamp in ns, or None when absent."""
        return self.exchange_ts_ns or None

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.msg_type, "Unknown")


@dataclass(frozen=True, slots=True)
class InstrumentDef:
    header: Header
    venue: str
    symbol: str
    price_exponent: int


@dataclass(frozen=True, slots=True)
class Trade:
    header: Header
    price: Optional[Decimal]
    size: Optional[Decimal]
    trade_id: Optional[int]  # None when the venue gives no numeric id (raw 0)
    side: str  # "buy" | "sell" | "unknown" (aggressor)
    side_code: int


@dataclass(frozen=True, slots=True)
class Quote:
    header: Header
    bid_price: Optional[Decimal]
    bid_size: Optional[Decimal]
    ask_price: Optional[Decimal]
    ask_size: Optional[Decimal]


@dataclass(frozen=True, slots=True)
class Status:
    header: Header
    code: int
    name: str
    count: int
    venue: str
    detail: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    header: Header


@dataclass(frozen=True, slots=True)
class Level:
    price: Optional[Decimal]
    size: Optional[Decimal]


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    header: Header
    venue_sequence: Optional[int]  # None when the venue has none (raw 0)
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class BookDelta:
    header: Header
    venue_sequence: Optional[int]
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class Bar:
    """A closed OHLCV bar derived by the relay from trades (§4.7)."""

    header: Header
    interval_ns: int
    start_ns: int
    open: Optional[Decimal]
    high: Optional[Decimal]
    low: Optional[Decimal]
    close: Optional[Decimal]
    volume: Decimal
    vwap: Optional[Decimal]  # None when the relay's notional overflowed (ABSENT)
    trade_count: int
    first_trade_ns: int
    last_trade_ns: int


@dataclass(frozen=True, slots=True)
class Mark:
    """Mark price, index price and funding of a derivative (§4.9). Not a market-data event: it
    carries the instrument's current ``sequence`` and numbers itself in ``kind_sequence``."""

    header: Header
    mark_price: Optional[Decimal]
    index_price: Optional[Decimal]
    settle_price: Optional[Decimal]
    funding_rate: Optional[Decimal]  # exact, 18 decimal places at most; None when ABSENT
    next_funding_ns: Optional[int]  # None when the venue gives none (raw 0)
    kind_sequence: int


@dataclass(frozen=True, slots=True)
class Liquidation:
    """A liquidation (forced) order (§4.10)."""

    header: Header
    price: Optional[Decimal]
    avg_price: Optional[Decimal]
    size: Optional[Decimal]
    filled_size: Optional[Decimal]
    side: str  # side of the liquidation order: "sell" closed a long position
    side_code: int
    status: str  # LIQUIDATION_STATUSES
    status_code: int
    kind_sequence: int


@dataclass(frozen=True, slots=True)
class OpenInterest:
    """Open interest of a derivative (§4.11)."""

    header: Header
    open_interest: Optional[Decimal]
    value: Optional[Decimal]
    kind_sequence: int


DERIVATIVE_TYPES = (MARK, LIQUIDATION, OPEN_INTEREST)


@dataclass(frozen=True, slots=True)
class Unknown:
    """A frame of a type this reader does not know; skipped by length (§4)."""

    header: Header
    payload: bytes


Message = Union[InstrumentDef, Trade, Quote, Status, Heartbeat, BookSnapshot, BookDelta, Bar,
                Mark, Liquidation, OpenInterest, Unknown]


def _need(payload: bytes, n: int, what: str) -> None:
    if len(payload) < n:
        raise MalformedPayload(f"{what}: payload {len(payload)} bytes, needs at least {n}")


def _utf8(b: bytes, what: str) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedPayload(f"{what} is not valid UTF-8: {e}") from None


def decode_message(header: Header, payload: bytes,
                   exponent: int = DEFAULT_PRICE_EXPONENT) -> Message:
    """Decode a valid frame's payload by type (§4, §9 step 8). Raises MalformedPayload."""
    t = header.msg_type
    if t == INSTRUMENT_DEF:
        _need(payload, 8, "InstrumentDef")
        vl, sl, exp = struct.unpack_from("<HHb", payload)
        _need(payload, 8 + vl + sl, "InstrumentDef strings")
        venue = _utf8(payload[8 : 8 + vl], "venue")
        symbol = _utf8(payload[8 + vl : 8 + vl + sl], "symbol")
        return InstrumentDef(header, venue, symbol, exp)
    if t == TRADE:
        _need(payload, 32, "Trade")
        price, size, tid, side = struct.unpack_from("<qqQB", payload)
        return Trade(header, fixed(price, exponent), fixed(size, exponent), tid or None,
                     SIDES.get(side, "unknown"), side)
    if t == QUOTE:
        _need(payload, 32, "Quote")
        bp, bs, ap, asz = struct.unpack_from("<qqqq", payload)
        return Quote(header, fixed(bp, exponent), fixed(bs, exponent), fixed(ap, exponent),
                     fixed(asz, exponent))
    if t == STATUS:
        _need(payload, 16, "Status")
        code, vl, dl, count = struct.unpack_from("<HHH2xQ", payload)
        if code not in STATUS_CODES:
            raise MalformedPayload(f"Status: unknown code {code}")
        _need(payload, 16 + vl + dl, "Status strings")
        venue = _utf8(payload[16 : 16 + vl], "venue")
        detail = _utf8(payload[16 + vl : 16 + vl + dl], "detail")
        return Status(header, code, STATUS_CODES[code], count, venue, detail)
    if t == HEARTBEAT:
        return Heartbeat(header)  # payload bytes, if any, are ignored (§4.5)
    if t in (BOOK_SNAPSHOT, BOOK_DELTA):
        _need(payload, 16, "book")
        vseq, nb, na = struct.unpack_from("<QII", payload)
        want = 16 + 16 * (nb + na)
        if len(payload) != want:
            raise MalformedPayload(f"book: payload {len(payload)} bytes, must be exactly {want}")
        levels = tuple(
            Level(fixed(p, exponent), fixed(s, exponent))
            for p, s in struct.iter_unpack("<qq", payload[16:])
        )
        cls = BookSnapshot if t == BOOK_SNAPSHOT else BookDelta
        return cls(header, vseq or None, levels[:nb], levels[nb:])
    if t == BAR:
        _need(payload, 96, "Bar")
        interval, start, o, hi, lo, c = struct.unpack_from("<QQqqqq", payload)
        volume = int.from_bytes(payload[48:64], "little", signed=True)
        vwap, n, first, last = struct.unpack_from("<qQQQ", payload, 64)
        return Bar(header, interval, start, fixed(o, exponent), fixed(hi, exponent),
                   fixed(lo, exponent), fixed(c, exponent), Decimal(volume).scaleb(exponent),
                   fixed(vwap, exponent), n, first, last)
    if t == MARK:
        _need(payload, 48, "Mark")
        mp, ip, sp, fr, nxt, kseq = struct.unpack_from("<qqqqQQ", payload)
        return Mark(header, fixed(mp, exponent), fixed(ip, exponent), fixed(sp, exponent),
                    fixed(fr, RATE_EXPONENT), nxt or None, kseq)
    if t == LIQUIDATION:
        _need(payload, 48, "Liquidation")
        px, ap, sz, fs, side, st, kseq = struct.unpack_from("<qqqqBB6xQ", payload)
        return Liquidation(header, fixed(px, exponent), fixed(ap, exponent), fixed(sz, exponent),
                           fixed(fs, exponent), SIDES.get(side, "unknown"), side,
                           LIQUIDATION_STATUSES.get(st, "unknown"), st, kseq)
    if t == OPEN_INTEREST:
        _need(payload, 24, "OpenInterest")
        oi, val, kseq = struct.unpack_from("<qqQ", payload)
        return OpenInterest(header, fixed(oi, exponent), fixed(val, exponent), kseq)
    return Unknown(header, bytes(payload))


class FrameDecoder:
    """Push decoder: feed bytes as they arrive, take complete frames out (§9 steps 1-7).

    Fatal errors (BadMagic, UnsupportedVersion, BadLength, BadCrc) are raised from ``frames()``;
    after one the decoder must not be used again. ``eof()`` raises Truncated when EOF comes
    mid-frame.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.frames_ok = 0
        self.crc_failures = 0
        self.bytes_in = 0

    def feed(self, data: bytes) -> None:
        self._buf += data
        self.bytes_in += len(data)

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def frames(self) -> Iterator[tuple[Header, bytes]]:
        buf = self._buf
        while True:
            pos = self._pos
            avail = len(buf) - pos
            # Step 1: magic, as soon as 4 bytes are there.
            if avail >= 4 and buf[pos : pos + 4] != MAGIC:
                raise BadMagic(f"bad magic {bytes(buf[pos:pos + 4]).hex()}")
            # Step 2: a whole header.
            if avail < HEADER_LEN:
                break
            magic, ver, mtype, flags, plen, iid, seq, xts, rts = HEADER.unpack_from(buf, pos)
            # Step 3: version.
            if ver != VERSION:
                raise UnsupportedVersion(f"protocol version {ver}, this reader speaks {VERSION}")
            # Step 4: length bound.
            if plen > MAX_PAYLOAD:
                raise BadLength(f"payload_len {plen} > {MAX_PAYLOAD}")
            # Step 5: the whole frame.
            end = pos + HEADER_LEN + plen
            if len(buf) < end + TRAILER_LEN:
                break
            # Step 6: CRC of header + payload.
            (crc,) = CRC.unpack_from(buf, end)
            actual = zlib.crc32(memoryview(buf)[pos:end])
            if crc != actual:
                self.crc_failures += 1
                raise BadCrc(f"crc32 trailer {crc:#010x}, computed {actual:#010x}")
            # Step 7: consume.
            payload = bytes(buf[pos + HEADER_LEN : end])
            self._pos = end + TRAILER_LEN
            self.frames_ok += 1
            yield Header(ver, mtype, flags, plen, iid, seq, xts, rts, crc), payload
        # Compact the buffer now and then.
        if self._pos and (self._pos > 65536 or self._pos == len(buf)):
            del buf[: self._pos]
            self._pos = 0

    def eof(self) -> None:
        """Call at EOF: a clean end needs 0 bytes buffered (§9 step 2)."""
        n = self.buffered()
        if n:
            raise Truncated(f"connection cut mid-frame: EOF with {n} bytes of a frame buffered")


# --------------------------------------------------------------------------------------------
# Sequence checking (§6.2) and book state (§4.6)
# --------------------------------------------------------------------------------------------


@dataclass
class InstrumentSeq:
    last_live: Optional[int] = None
    max_cached: Optional[int] = None
    live_events: int = 0
    cached_events: int = 0
    gaps: int = 0
    missing: int = 0
    dropped: int = 0  # sum of `count` of Status dropped reports
    dropped_reports: int = 0


@dataclass(frozen=True)
class Gap:
    instrument_id: int
    previous: int
    sequence: int

    @property
    def missing(self) -> int:
        return self.sequence - self.previous - 1


class SequenceChecker:
    """Per instrument: the last live (non-CACHED) market-data sequence; a jump is loss inside the
    relay, reported later by Status `dropped` (§6.2, §11)."""

    def __init__(self) -> None:
        self.instruments: dict[int, InstrumentSeq] = {}
        self.gaps: list[Gap] = []
        self.violations: list[str] = []

    def _get(self, iid: int) -> InstrumentSeq:
        s = self.instruments.get(iid)
        if s is None:
            s = self.instruments[iid] = InstrumentSeq()
        return s

    def market_data(self, h: Header) -> Optional[Gap]:
        """Observe a Trade/Quote/BookSnapshot/BookDelta header; returns the gap it reveals."""
        s = self._get(h.instrument_id)
        if h.cached:
            s.cached_events += 1
            if s.last_live is not None:
                self.violations.append(
                    f"id {h.instrument_id:#x}: CACHED frame seq {h.sequence} after live frames")
            s.max_cached = h.sequence if s.max_cached is None else max(s.max_cached, h.sequence)
            return None
        s.live_events += 1
        gap = None
        if s.last_live is None:
            if s.max_cached is not None and h.sequence <= s.max_cached:
                self.violations.append(f"id {h.instrument_id:#x}: first live seq {h.sequence}"
                                       f" <= cached {s.max_cached}")
        elif h.sequence <= s.last_live:
            self.violations.append(
                f"id {h.instrument_id:#x}: live seq {h.sequence} after {s.last_live}")
        elif h.sequence != s.last_live + 1:
            gap = Gap(h.instrument_id, s.last_live, h.sequence)
            s.gaps += 1
            s.missing += gap.missing
            self.gaps.append(gap)
        s.last_live = h.sequence
        return gap

    def status(self, st: Status) -> None:
        if st.code == STATUS_DROPPED and st.header.instrument_id != 0:
            s = self._get(st.header.instrument_id)
            s.dropped += st.count
            s.dropped_reports += 1

    @property
    def missing_total(self) -> int:
        return sum(s.missing for s in self.instruments.values())

    @property
    def dropped_total(self) -> int:
        return sum(s.dropped for s in self.instruments.values())


@dataclass
class Book:
    """Local order book of one instrument, keyed by price (§4.6)."""

    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    have_snapshot: bool = False
    may_be_bad: bool = False
    ignored_deltas: int = 0

    def apply(self, msg: Union[BookSnapshot, BookDelta]) -> bool:
        """Apply a book frame; returns False for a delta ignored before the first snapshot."""
        if isinstance(msg, BookSnapshot):
            self.bids = {lv.price: lv.size for lv in msg.bids if lv.size}
            self.asks = {lv.price: lv.size for lv in msg.asks if lv.size}
            self.have_snapshot = True
            self.may_be_bad = msg.header.book_may_be_bad
            return True
        if not self.have_snapshot:
            self.ignored_deltas += 1
            return False
        for side, levels in ((self.bids, msg.bids), (self.asks, msg.asks)):
            for lv in levels:
                if lv.size == 0:
                    side.pop(lv.price, None)
                else:
                    side[lv.price] = lv.size
        if msg.header.book_may_be_bad:
            self.may_be_bad = True
        return True

    def best(self) -> tuple[Optional[Decimal], Optional[Decimal]]:
        return (max(self.bids) if self.bids else None, min(self.asks) if self.asks else None)


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


def default_socket_path() -> str:
    """§1: $XDG_RUNTIME_DIR/mdrelay/relay.sock, else /tmp/mdrelay-<uid>/relay.sock."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg:
        return os.path.join(xdg, "mdrelay", "relay.sock")
    return f"/tmp/mdrelay-{os.getuid()}/relay.sock"


class RelayClient:
    """A subscriber: connects, never writes, cuts and verifies frames, decodes messages, keeps
    the id → (venue, symbol) table, checks instrument ids and sequences, and keeps books.

    Iterate it for messages (unknown types are skipped; malformed payloads are skipped and
    counted unless ``strict``). Iteration ends at a clean EOF (the socket is then closed); a cut
    connection raises Truncated, a broken stream a FatalProtocolError (the socket is closed
    first).
    """

    def subscribe(self, venue: str = "", symbol: str = "", kinds: int = 0) -> None:
        """Send a Subscribe request (§6.5); the answer arrives in the stream as a Status."""
        if self.sock is None:
            raise ValueError("connection closed")
        self.sock.sendall(encode_request(venue, symbol, kinds))

    def __init__(self, path: Optional[str] = None, *, sock: Optional[socket.socket] = None,
                 timeout: Optional[float] = None, strict: bool = False,
                 recv_size: int = 1 << 16) -> None:
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(path or default_socket_path())
            except BaseException:
                sock.close()
                raise
        else:
            sock.settimeout(timeout)
        self.sock: Optional[socket.socket] = sock
        self.strict = strict
        self.recv_size = recv_size
        self.decoder = FrameDecoder()
        self.names: dict[int, tuple[str, str]] = {}
        self.exponents: dict[int, int] = {}
        self.def_sequence: dict[int, int] = {}
        self.id_verified: dict[int, bool] = {}
        self.seq = SequenceChecker()
        self.books: dict[int, Book] = {}
        self.counts: dict[str, int] = {n: 0 for n in TYPE_NAMES.values()}
        self.counts["Unknown"] = 0
        self.cached_counts: dict[str, int] = {"Trade": 0, "Quote": 0, "Mark": 0,
                                              "OpenInterest": 0}
        # Derivatives (§4.8): the last live kind_sequence per (instrument, type), and the holes.
        self.kind_last: dict[tuple[int, int], int] = {}
        self.kind_gaps = 0
        self.kind_missing = 0
        self.status_codes: dict[str, int] = {}
        self.malformed = 0
        self.last_malformed: Optional[str] = None
        self.undefined_id_frames = 0
        self.violations: list[str] = []
        self.eof = False

    # context manager
    def __enter__(self) -> "RelayClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def name_of(self, iid: int) -> Optional[tuple[str, str]]:
        return self.names.get(iid)

    def label(self, iid: int) -> str:
        n = self.names.get(iid)
        return f"{n[0]}:{n[1]}" if n else f"{iid:#010x}"

    def frames(self) -> Iterator[tuple[Header, bytes]]:
        """Valid frames (every type), until a clean EOF."""
        if self.sock is None:
            raise ValueError("client is closed")
        try:
            while True:
                yield from self.decoder.frames()
                data = self.sock.recv(self.recv_size)
                if not data:
                    self.eof = True
                    self.decoder.eof()
                    self.close()  # clean end of stream
                    return
                self.decoder.feed(data)
        except ProtocolError:
            self.close()  # the stream cannot be resynchronized (§9)
            raise

    def __iter__(self) -> Iterator[Message]:
        return self.messages()

    def messages(self, include_unknown: bool = False) -> Iterator[Message]:
        for header, payload in self.frames():
            try:
                msg = self.handle_frame(header, payload)
            except ProtocolError:
                self.close()
                raise
            if msg is None or (isinstance(msg, Unknown) and not include_unknown):
                continue
            yield msg

    def handle_frame(self, h: Header, payload: bytes) -> Optional[Message]:
        """Decode one valid frame and update the client state. None = malformed, skipped."""
        try:
            msg = decode_message(h, payload, self.exponents.get(h.instrument_id,
                                                                DEFAULT_PRICE_EXPONENT))
        except MalformedPayload as e:
            self.malformed += 1
            self.last_malformed = f"{h.type_name} seq {h.sequence}: {e}"
            if self.strict:
                raise
            return None
        if isinstance(msg, Unknown):
            self.counts["Unknown"] += 1
            return msg
        self.counts[h.type_name] += 1
        iid = h.instrument_id
        if isinstance(msg, InstrumentDef):
            self._define(msg)
        elif iid != 0 and iid not in self.names:
            # §6.1: an instrument's InstrumentDef always precedes its other frames.
            self.undefined_id_frames += 1
            self.violations.append(f"{h.type_name} for undefined id {iid:#x}")
        if h.msg_type in MARKET_DATA_TYPES:
            if iid == 0:
                self.violations.append(f"{h.type_name} with instrument_id 0")
            if h.cached and h.type_name in self.cached_counts:
                self.cached_counts[h.type_name] += 1
            self.seq.market_data(h)
            if isinstance(msg, (BookSnapshot, BookDelta)):
                self.books.setdefault(iid, Book()).apply(msg)
        elif isinstance(msg, Status):
            self.status_codes[msg.name] = self.status_codes.get(msg.name, 0) + 1
            self.seq.status(msg)
        elif isinstance(msg, (Mark, Liquidation, OpenInterest)):
            if h.cached:
                self.cached_counts[h.type_name] = self.cached_counts.get(h.type_name, 0) + 1
            else:
                # Their own numbering (§4.8); the market-data sequence is not advanced.
                key = (iid, h.msg_type)
                prev = self.kind_last.get(key)
                if prev is not None and msg.kind_sequence != prev + 1:
                    self.kind_gaps += 1
                    self.kind_missing += max(0, msg.kind_sequence - prev - 1)
                self.kind_last[key] = msg.kind_sequence
        return msg

    def _define(self, d: InstrumentDef) -> None:
        iid = d.header.instrument_id
        name = (d.venue, d.symbol)
        known = self.names.get(iid)
        if known is not None and known != name:
            raise NameConflict(f"id {iid:#x} defined as {known} and again as {name}")
        if known is not None:
            self.violations.append(f"id {iid:#x} defined twice in one connection")
        self.names[iid] = name
        self.exponents[iid] = d.price_exponent
        self.def_sequence[iid] = d.header.sequence
        ok = instrument_id(d.venue, d.symbol) == iid
        self.id_verified[iid] = ok
        if not ok:
            self.violations.append(
                f"id {iid:#x} != FNV-1a of {d.venue}:{d.symbol} "
                f"({instrument_id(d.venue, d.symbol):#x})")

    def summary(self) -> dict:
        """Machine-readable state of the connection so far."""
        instruments = {}
        ids = set(self.names) | set(self.seq.instruments)
        for iid in sorted(ids):
            s = self.seq.instruments.get(iid, InstrumentSeq())
            n = self.names.get(iid)
            book = self.books.get(iid)
            instruments[self.label(iid)] = {
                "id": iid,
                "id_hex": f"{iid:#010x}",
                "venue": n[0] if n else None,
                "symbol": n[1] if n else None,
                "id_verified": self.id_verified.get(iid, False),
                "def_sequence": self.def_sequence.get(iid),
                "last_sequence": s.last_live,
                "max_cached_sequence": s.max_cached,
                "live_events": s.live_events,
                "cached_events": s.cached_events,
                "gaps": s.gaps,
                "missing": s.missing,
                "dropped": s.dropped,
                "dropped_reports": s.dropped_reports,
                "book_levels": ([len(book.bids), len(book.asks)] if book else None),
                "book_ignored_deltas": book.ignored_deltas if book else 0,
            }
        return {
            "frames": self.decoder.frames_ok,
            "bytes": self.decoder.bytes_in,
            "counts": dict(self.counts),
            "cached": dict(self.cached_counts),
            "status_codes": dict(self.status_codes),
            "malformed": self.malformed,
            "crc_failures": self.decoder.crc_failures,
            "instruments": instruments,
            "last_sequence": {k: v["last_sequence"] for k, v in instruments.items()},
            "gap_count": len(self.seq.gaps),
            "gaps": [
                {"instrument": self.label(g.instrument_id), "previous": g.previous,
                 "sequence": g.sequence, "missing": g.missing}
                for g in self.seq.gaps[:100]
            ],
            "missing_total": self.seq.missing_total,
            "kind_gaps": self.kind_gaps,
            "kind_missing": self.kind_missing,
            "dropped": {k: v["dropped"] for k, v in instruments.items()},
            "dropped_total": self.seq.dropped_total,
            "ids_verified": sum(1 for v in self.id_verified.values() if v),
            "id_mismatches": sum(1 for v in self.id_verified.values() if not v),
            "undefined_id_frames": self.undefined_id_frames,
            "def_before_events": self.undefined_id_frames == 0,
            "violations": (self.violations + self.seq.violations)[:100],
        }


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _levels(levels: tuple[Level, ...]) -> list[list[Optional[str]]]:
    return [[fmt_decimal(lv.price), fmt_decimal(lv.size)] for lv in levels]


def to_json(msg: Message, names: dict[int, tuple[str, str]]) -> dict:
    """One JSON object per message (README schema, plus header fields)."""
    h = msg.header
    n = names.get(h.instrument_id)
    base: dict = {
        "venue": n[0] if n else None,
        "symbol": n[1] if n else None,
        "instrument_id": h.instrument_id,
        "sequence": h.sequence,
        "flags": h.flags,
        "cached": h.cached,
        "exchange_ts_ns": h.exchange_ts,
        "recv_ts_ns": h.recv_ts_ns,
    }
    if isinstance(msg, InstrumentDef):
        out = {"type": "instrument", **base, "venue": msg.venue, "symbol": msg.symbol,
               "price_exponent": msg.price_exponent,
               "id_verified": instrument_id(msg.venue, msg.symbol) == h.instrument_id}
    elif isinstance(msg, Trade):
        out = {"type": "trade", **base, "price": fmt_decimal(msg.price),
               "size": fmt_decimal(msg.size), "side": msg.side,
               "trade_id": None if msg.trade_id is None else str(msg.trade_id)}
    elif isinstance(msg, Quote):
        out = {"type": "quote", **base, "bid_price": fmt_decimal(msg.bid_price),
               "bid_size": fmt_decimal(msg.bid_size), "ask_price": fmt_decimal(msg.ask_price),
               "ask_size": fmt_decimal(msg.ask_size)}
    elif isinstance(msg, Status):
        out = {"type": "status", **base, "event": msg.name, "code": msg.code,
               "count": msg.count, "status_venue": msg.venue, "detail": msg.detail}
    elif isinstance(msg, Heartbeat):
        out = {"type": "heartbeat", **base}
    elif isinstance(msg, (BookSnapshot, BookDelta)):
        out = {"type": "book", **base, "snapshot": isinstance(msg, BookSnapshot),
               "bids": _levels(msg.bids), "asks": _levels(msg.asks),
               "venue_sequence": msg.venue_sequence, "may_be_bad": h.book_may_be_bad}
    elif isinstance(msg, Bar):
        out = {"type": "bar", **base, "interval_ns": msg.interval_ns, "start_ns": msg.start_ns,
               "open": fmt_decimal(msg.open), "high": fmt_decimal(msg.high),
               "low": fmt_decimal(msg.low), "close": fmt_decimal(msg.close),
               "volume": fmt_decimal(msg.volume), "vwap": fmt_decimal(msg.vwap),
               "trade_count": msg.trade_count, "first_trade_ns": msg.first_trade_ns,
               "last_trade_ns": msg.last_trade_ns}
    elif isinstance(msg, Mark):
        out = {"type": "mark", **base, "mark_price": fmt_decimal(msg.mark_price),
               "index_price": fmt_decimal(msg.index_price),
               "settle_price": fmt_decimal(msg.settle_price),
               "funding_rate": fmt_decimal(msg.funding_rate),
               "next_funding_ns": msg.next_funding_ns, "kind_sequence": msg.kind_sequence}
    elif isinstance(msg, Liquidation):
        out = {"type": "liquidation", **base, "side": msg.side, "price": fmt_decimal(msg.price),
               "avg_price": fmt_decimal(msg.avg_price), "size": fmt_decimal(msg.size),
               "filled_size": fmt_decimal(msg.filled_size), "status": msg.status,
               "kind_sequence": msg.kind_sequence}
    elif isinstance(msg, OpenInterest):
        out = {"type": "open_interest", **base, "open_interest": fmt_decimal(msg.open_interest),
               "value": fmt_decimal(msg.value), "kind_sequence": msg.kind_sequence}
    else:
        out = {"type": "unknown", **base, "msg_type": h.msg_type, "payload_len": h.payload_len}
    return out


def to_text(msg: Message, names: dict[int, tuple[str, str]]) -> str:
    h = msg.header
    n = names.get(h.instrument_id)
    who = f"{n[0]}:{n[1]}" if n else ("-" if h.instrument_id == 0 else f"{h.instrument_id:#010x}")
    tags = "".join(
        f" [{t}]" for t, on in (("CACHED", h.cached), ("SNAPSHOT", h.snapshot),
                                ("BOOK_MAY_BE_BAD", h.book_may_be_bad)) if on)
    ts = f"exch={h.exchange_ts or '-'} recv={h.recv_ts_ns}"
    d = fmt_decimal
    if isinstance(msg, InstrumentDef):
        body = (f"instrument {msg.venue}:{msg.symbol} id={h.instrument_id:#010x} "
                f"exp={msg.price_exponent} seq={h.sequence}")
    elif isinstance(msg, Trade):
        body = (f"trade {who} seq={h.sequence} {msg.side} {d(msg.size)} @ {d(msg.price)} "
                f"id={msg.trade_id if msg.trade_id is not None else '-'} {ts}")
    elif isinstance(msg, Quote):
        body = (f"quote {who} seq={h.sequence} bid {d(msg.bid_size) or '-'} @ "
                f"{d(msg.bid_price) or '-'} ask {d(msg.ask_size) or '-'} @ "
                f"{d(msg.ask_price) or '-'} {ts}")
    elif isinstance(msg, Status):
        body = (f"status {who} venue={msg.venue} {msg.name} count={msg.count} "
                f"seq={h.sequence} detail={msg.detail!r} recv={h.recv_ts_ns}")
    elif isinstance(msg, Heartbeat):
        body = f"heartbeat recv={h.recv_ts_ns}"
    elif isinstance(msg, (BookSnapshot, BookDelta)):
        kind = "snapshot" if isinstance(msg, BookSnapshot) else "delta"
        fl = lambda lv: " ".join(f"{d(x.size)}@{d(x.price)}" for x in lv) or "-"  # noqa: E731
        body = (f"book-{kind} {who} seq={h.sequence} vseq={msg.venue_sequence or '-'} "
                f"bids [{fl(msg.bids)}] asks [{fl(msg.asks)}] {ts}")
    elif isinstance(msg, Bar):
        body = (f"bar {who} {msg.interval_ns // 1_000_000}ms start={msg.start_ns} "
                f"o={d(msg.open)} h={d(msg.high)} l={d(msg.low)} c={d(msg.close)} "
                f"v={d(msg.volume)} vwap={d(msg.vwap) or '-'} n={msg.trade_count}")
    elif isinstance(msg, Mark):
        body = (f"mark {who} {d(msg.mark_price) or '-'} index={d(msg.index_price) or '-'} "
                f"funding={d(msg.funding_rate) or '-'} next={msg.next_funding_ns or '-'} "
                f"n={msg.kind_sequence} {ts}")
    elif isinstance(msg, Liquidation):
        body = (f"liquidation {who} {msg.side} {d(msg.size)} @ {d(msg.price)} "
                f"avg={d(msg.avg_price) or '-'} filled={d(msg.filled_size) or '-'} {msg.status} "
                f"n={msg.kind_sequence} {ts}")
    elif isinstance(msg, OpenInterest):
        body = (f"open_interest {who} {d(msg.open_interest)} value={d(msg.value) or '-'} "
                f"n={msg.kind_sequence} {ts}")
    else:
        body = f"unknown type={h.msg_type} len={h.payload_len}"
    return body + tags


# --------------------------------------------------------------------------------------------
# Self-test: the golden vectors of §10 and §8.1, and the error rules of §9
# --------------------------------------------------------------------------------------------

ETH = 0xA4F6C29C

GOLDEN = {
    "10.1 trade": "4d44524c01020000200000009cc2f6a40700000000000000c0e4684308e6e917f82da0e807e6e91700cfb17c3e000000400d0300000000002d95a15a000000000200000000000000dde8e06a",
    "10.2 instrument_def": "4d44524c01010000160000009cc2f6a40100000000000000000000000000000000fc62e307e6e91707000700f800000062696e616e6365455448555344543342c014",
    "10.3 quote": "4d44524c01030000200000009cc2f6a40800000000000000000000000000000000edb64808e6e917c08ca27c3e00000080d1f0080000000000000000000000800000000000000080064e3977",
    "10.4 status": "4d44524c01040000210000009cc2f6a4140000000000000000000000000000000090985a08e6e9170a0007000a0000000c0000000000000062696e616e636571756575652066756c6c403de1eb",
    "10.5 heartbeat": "4d44524c01050000000000000000000000000000000000000000000000000000005a339608e6e917d0749964",
    "10.6 book_snapshot": "4d44524c01060100400000009cc2f6a4090000000000000000ceac4e08e6e9174010bc4e08e6e917efc4df02000000000200000001000000c08ca27c3e00000080d1f00800000000804a937c3e00000040787d010000000000cfb17c3e00000000c2eb0b00000000006766b5",
    "10.7 trade_cached": "4d44524c01020800200000009cc2f6a40700000000000000c0e4684308e6e917f82da0e807e6e91700cfb17c3e000000400d0300000000002d95a15a000000000200000000000000e68a3e48",
    "10.8 bar": "4d44524c01080000600000009cc2f6a407000000000000000000000000000000408a429912e6e917005847f80d00000000f0eba004e6e91700cfb17c3e00000000fce27d3e000000800be87a3e00000080654a7d3e000000a0f9944900000000000000000000000088a5c47c3e0000003900000000000000c0c440a804e6e9170031cf9112e6e917edc99b06",
    "10.10 mark": "4d44524c0109000030000000f455936a070000000000000000e89435776cae154e495136776cae15c0b39c9a120100001322d961120100003149a45f12010000007cc578205b010000c051b2646dae15010000000000000063319179",
    "10.11 liquidation": "4d44524c010a000030000000f455936a070000000000000040f13330d8b4c21500c19e30d8b4c21500f633bce60000004e57f0bce6000000c05c150000000000c05c1500000000000203000000000000010000000000000044d7d2e9",
    "10.12 open_interest": "4d44524c010b000018000000f455936a0700000000000000c0dcfa2803d10e160031842903d10e1620250e31f800000080afe9683cfa230001000000000000003ac3ba14",
    "10.13 mark_cached": "4d44524c0109080030000000f455936a070000000000000000e89435776cae154e495136776cae15c0b39c9a120100001322d961120100003149a45f12010000007cc578205b010000c051b2646dae1501000000000000000e242b84",
}
USDM_BTC = 0x6A9355F4  # binance_usdm:BTCUSDT (§8.1)

FNV_GOLDEN = [
    ("binance", "ETHUSDT", 0xA4F6C29C, 2767635100),
    ("binance", "BTCUSDT", 0x1DF4B640, 502576704),
    ("coinbase", "BTC-USD", 0x1CC4BF3D, 482656061),
    ("coinbase", "BTC-EUR", 0x61F4372D, 1643394861),
    ("kraken", "BTC/USD", 0xC10B3C39, 3238739001),
    ("kraken_v1", "XBT/USD", 0x317E8892, 830376082),
    ("binance_usdm", "BTCUSDT", 0x6A9355F4, 1788040692),
]


def make_frame(msg_type: int, payload: bytes = b"", *, flags: int = 0, iid: int = 0,
               seq: int = 0, xts: int = 0, rts: int = 0, version: int = VERSION,
               magic: bytes = MAGIC, plen: Optional[int] = None) -> bytes:
    """Encode a frame (for tests)."""
    body = HEADER.pack(magic, version, msg_type, flags,
                       len(payload) if plen is None else plen, iid, seq, xts, rts) + payload
    return body + CRC.pack(zlib.crc32(body))


def _decode_all(data: bytes, chunk: Optional[int] = None) -> list[tuple[Header, bytes]]:
    dec = FrameDecoder()
    out: list[tuple[Header, bytes]] = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        dec.feed(data[i : i + step])
        out.extend(dec.frames())
    dec.eof()
    return out


class _Check:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def eq(self, what: str, got: object, want: object) -> None:
        if got == want and type(got) is type(want) or (
                isinstance(got, Decimal) and isinstance(want, Decimal) and got == want):
            self.passed += 1
        else:
            self.failures.append(f"{what}: got {got!r}, want {want!r}")

    def raises(self, what: str, exc: type, fn) -> None:  # type: ignore[no-untyped-def]
        try:
            fn()
        except exc:
            self.passed += 1
            return
        except Exception as e:  # noqa: BLE001
            self.failures.append(f"{what}: raised {type(e).__name__}: {e}, want {exc.__name__}")
            return
        self.failures.append(f"{what}: no exception, want {exc.__name__}")


def _one(c: _Check, name: str) -> tuple[Header, Message]:
    raw = bytes.fromhex(GOLDEN[name])
    frames = _decode_all(raw)
    c.eq(f"{name}: one frame", len(frames), 1)
    h, p = frames[0]
    return h, decode_message(h, p)


def selftest() -> int:
    c = _Check()
    D = Decimal

    # §3 CRC check value; §8.1 FNV values.
    c.eq("crc32('123456789')", zlib.crc32(b"123456789"), 0xCBF43926)
    c.eq("fnv1a32('a')", fnv1a32(b"a"), 0xE40C292C)
    for venue, symbol, hx, dec in FNV_GOLDEN:
        c.eq(f"id {venue}:{symbol}", instrument_id(venue, symbol), hx)
        c.eq(f"id {venue}:{symbol} decimal", instrument_id(venue, symbol), dec)
    c.eq("id wire bytes", struct.pack("<I", ETH).hex(), "9cc2f6a4")

    # Stated lengths.
    for name, n in (("10.1 trade", 76), ("10.2 instrument_def", 66), ("10.3 quote", 76),
                    ("10.4 status", 77), ("10.5 heartbeat", 44), ("10.6 book_snapshot", 108),
                    ("10.7 trade_cached", 76), ("10.8 bar", 140), ("10.10 mark", 92),
                    ("10.11 liquidation", 92), ("10.12 open_interest", 68),
                    ("10.13 mark_cached", 92)):
        c.eq(f"{name}: length", len(bytes.fromhex(GOLDEN[name])), n)

    # 10.1 Trade
    h, m = _one(c, "10.1 trade")
    c.eq("10.1 type", h.msg_type, TRADE)
    c.eq("10.1 version", h.version, 1)
    c.eq("10.1 flags", h.flags, 0)
    c.eq("10.1 payload_len", h.payload_len, 32)
    c.eq("10.1 instrument_id", h.instrument_id, ETH)
    c.eq("10.1 sequence", h.sequence, 7)
    c.eq("10.1 exchange_ts_ns", h.exchange_ts_ns, 1723161255611000000)
    c.eq("10.1 recv_ts_ns", h.recv_ts_ns, 1723161254087896568)
    c.eq("10.1 crc", h.crc32, 0x6AE0E8DD)
    c.eq("10.1 cached", h.cached, False)
    assert isinstance(m, Trade)
    c.eq("10.1 price", m.price, D("2683.8"))
    c.eq("10.1 price exact", m.price * 10**8, D(268380000000))
    c.eq("10.1 size", m.size, D("0.002"))
    c.eq("10.1 size raw", m.size * 10**8, D(200000))
    c.eq("10.1 trade_id", m.trade_id, 1520538925)
    c.eq("10.1 side", m.side, "sell")
    c.eq("10.1 side code", m.side_code, 2)

    # 10.2 InstrumentDef
    h, m = _one(c, "10.2 instrument_def")
    c.eq("10.2 type", h.msg_type, INSTRUMENT_DEF)
    c.eq("10.2 flags", h.flags, 0)
    c.eq("10.2 payload_len", h.payload_len, 22)
    c.eq("10.2 instrument_id", h.instrument_id, ETH)
    c.eq("10.2 sequence", h.sequence, 1)
    c.eq("10.2 exchange_ts_ns", h.exchange_ts_ns, 0)
    c.eq("10.2 recv_ts_ns", h.recv_ts_ns, 1723161254000000000)
    c.eq("10.2 crc", h.crc32, 0x14C04233)
    assert isinstance(m, InstrumentDef)
    c.eq("10.2 venue", m.venue, "binance")
    c.eq("10.2 symbol", m.symbol, "ETHUSDT")
    c.eq("10.2 price_exponent", m.price_exponent, -8)
    c.eq("10.2 id verified", instrument_id(m.venue, m.symbol), h.instrument_id)

    # 10.3 Quote with ABSENT ask
    h, m = _one(c, "10.3 quote")
    c.eq("10.3 type", h.msg_type, QUOTE)
    c.eq("10.3 sequence", h.sequence, 8)
    c.eq("10.3 exchange_ts absent", h.exchange_ts, None)
    c.eq("10.3 recv_ts_ns", h.recv_ts_ns, 1723161255700000000)
    c.eq("10.3 crc", h.crc32, 0x77394E06)
    assert isinstance(m, Quote)
    c.eq("10.3 bid_price", m.bid_price, D("2683.79"))
    c.eq("10.3 bid_size", m.bid_size, D("1.5"))
    c.eq("10.3 ask_price", m.ask_price, None)
    c.eq("10.3 ask_size", m.ask_size, None)
    raw = bytes.fromhex(GOLDEN["10.3 quote"])
    c.eq("10.3 ABSENT raw", struct.unpack_from("<q", raw, 56)[0], -9223372036854775808)

    # 10.4 Status dropped
    h, m = _one(c, "10.4 status")
    c.eq("10.4 type", h.msg_type, STATUS)
    c.eq("10.4 payload_len", h.payload_len, 33)
    c.eq("10.4 instrument_id", h.instrument_id, ETH)
    c.eq("10.4 sequence", h.sequence, 20)
    c.eq("10.4 exchange_ts_ns", h.exchange_ts_ns, 0)
    c.eq("10.4 recv_ts_ns", h.recv_ts_ns, 1723161256000000000)
    c.eq("10.4 crc", h.crc32, 0xEBE13D40)
    assert isinstance(m, Status)
    c.eq("10.4 code", m.code, 10)
    c.eq("10.4 name", m.name, "dropped")
    c.eq("10.4 count", m.count, 12)
    c.eq("10.4 venue", m.venue, "binance")
    c.eq("10.4 detail", m.detail, "queue full")

    # 10.5 Heartbeat
    h, m = _one(c, "10.5 heartbeat")
    c.eq("10.5 type", h.msg_type, HEARTBEAT)
    c.eq("10.5 payload_len", h.payload_len, 0)
    c.eq("10.5 instrument_id", h.instrument_id, 0)
    c.eq("10.5 sequence", h.sequence, 0)
    c.eq("10.5 flags", h.flags, 0)
    c.eq("10.5 exchange_ts_ns", h.exchange_ts_ns, 0)
    c.eq("10.5 recv_ts_ns", h.recv_ts_ns, 1723161257000000000)
    c.eq("10.5 crc", h.crc32, 0x649974D0)
    c.eq("10.5 is heartbeat", isinstance(m, Heartbeat), True)

    # 10.6 BookSnapshot
    h, m = _one(c, "10.6 book_snapshot")
    c.eq("10.6 type", h.msg_type, BOOK_SNAPSHOT)
    c.eq("10.6 flags", h.flags, FLAG_SNAPSHOT)
    c.eq("10.6 snapshot flag", h.snapshot, True)
    c.eq("10.6 payload_len", h.payload_len, 64)
    c.eq("10.6 sequence", h.sequence, 9)
    c.eq("10.6 exchange_ts_ns", h.exchange_ts_ns, 1723161255800000000)
    c.eq("10.6 recv_ts_ns", h.recv_ts_ns, 1723161255801000000)
    c.eq("10.6 crc", h.crc32, 0xB5666700)
    assert isinstance(m, BookSnapshot)
    c.eq("10.6 venue_sequence", m.venue_sequence, 48219375)
    c.eq("10.6 bids", m.bids, (Level(D("2683.79"), D("1.5")), Level(D("2683.78"), D("0.25"))))
    c.eq("10.6 asks", m.asks, (Level(D("2683.8"), D("2")),))

    # 10.7 CACHED copy of 10.1
    h7, m7 = _one(c, "10.7 trade_cached")
    h1, m1 = _one(c, "10.1 trade")
    c.eq("10.7 flags", h7.flags, FLAG_CACHED)
    c.eq("10.7 cached", h7.cached, True)
    c.eq("10.7 crc", h7.crc32, 0x483E8AE6)
    c.eq("10.7 same header otherwise", (h7.sequence, h7.exchange_ts_ns, h7.recv_ts_ns,
                                        h7.instrument_id), (h1.sequence, h1.exchange_ts_ns,
                                                            h1.recv_ts_ns, h1.instrument_id))
    assert isinstance(m7, Trade) and isinstance(m1, Trade)
    c.eq("10.7 same payload", (m7.price, m7.size, m7.trade_id, m7.side),
         (m1.price, m1.size, m1.trade_id, m1.side))
    r1, r7 = bytes.fromhex(GOLDEN["10.1 trade"]), bytes.fromhex(GOLDEN["10.7 trade_cached"])
    c.eq("10.7 differs only in flags and CRC",
         [i for i in range(len(r1)) if r1[i] != r7[i]], [6, 72, 73, 74, 75])

    # 10.9 Subscribe request (client -> relay), encoded here and compared with the document.
    c.eq("10.9 subscribe request", encode_request("binance", "ETH*", 0x09).hex(),
         "4d44524c014000001300000000000000000000000000000000000000000000000000000000000000"
         "090007000400000062696e616e63654554482a41cbdb1e")

    # 10.8 Bar
    h, m = _one(c, "10.8 bar")
    c.eq("10.8 type", h.msg_type, BAR)
    c.eq("10.8 payload_len", h.payload_len, 96)
    c.eq("10.8 sequence", h.sequence, 7)
    c.eq("10.8 recv_ts_ns", h.recv_ts_ns, 1723161300001000000)
    c.eq("10.8 crc", h.crc32, 0x069BC9ED)
    assert isinstance(m, Bar)
    c.eq("10.8 interval", m.interval_ns, 60_000_000_000)
    c.eq("10.8 start", m.start_ns, 1723161240000000000)
    c.eq("10.8 ohlc", (m.open, m.high, m.low, m.close),
         (D("2683.8"), D("2684"), D("2683.5"), D("2683.9")))
    c.eq("10.8 volume", m.volume, D("12.345"))
    c.eq("10.8 vwap", m.vwap, D("2683.81234568"))
    c.eq("10.8 trades", m.trade_count, 57)
    c.eq("10.8 first/last", (m.first_trade_ns, m.last_trade_ns),
         (1723161240123000000, 1723161299876000000))

    # 10.10-10.13 Derivatives (binance_usdm:BTCUSDT, Binance documentation samples)
    h, m = _one(c, "10.10 mark")
    c.eq("10.10 type", (h.msg_type, h.type_name), (MARK, "Mark"))
    c.eq("10.10 header", (h.flags, h.payload_len, h.instrument_id, h.sequence),
         (0, 48, USDM_BTC, 7))
    c.eq("10.10 times", (h.exchange_ts_ns, h.recv_ts_ns),
         (1562305380000000000, 1562305380012345678))
    c.eq("10.10 crc", h.crc32, 0x79913163)
    assert isinstance(m, Mark)
    c.eq("10.10 prices", (m.mark_price, m.index_price, m.settle_price),
         (D("11794.15"), D("11784.62659091"), D("11784.25641265")))
    c.eq("10.10 funding", m.funding_rate, D("0.00038167"))
    c.eq("10.10 funding text", fmt_decimal(m.funding_rate), "0.00038167")
    c.eq("10.10 funding raw", m.funding_rate * 10**18, D(381670000000000))
    c.eq("10.10 next funding", m.next_funding_ns, 1562306400000000000)
    c.eq("10.10 kind_sequence", m.kind_sequence, 1)
    h13, m13 = _one(c, "10.13 mark_cached")
    c.eq("10.13 flags", (h13.flags, h13.cached), (FLAG_CACHED, True))
    c.eq("10.13 crc", h13.crc32, 0x842B240E)
    c.eq("10.13 same mark", isinstance(m13, Mark) and m13.mark_price == m.mark_price
         and m13.funding_rate == m.funding_rate, True)

    h, m = _one(c, "10.11 liquidation")
    c.eq("10.11 type", h.msg_type, LIQUIDATION)
    c.eq("10.11 header", (h.payload_len, h.sequence, h.exchange_ts_ns, h.recv_ts_ns),
         (48, 7, 1568014460893000000, 1568014460900000000))
    c.eq("10.11 crc", h.crc32, 0xE9D2D744)
    assert isinstance(m, Liquidation)
    c.eq("10.11 order", (m.side, m.price, m.avg_price, m.size, m.filled_size, m.status),
         ("sell", D("9910"), D("9910.12345678"), D("0.014"), D("0.014"), "filled"))
    c.eq("10.11 codes", (m.side_code, m.status_code, m.kind_sequence), (2, 3, 1))

    h, m = _one(c, "10.12 open_interest")
    c.eq("10.12 type", h.msg_type, OPEN_INTEREST)
    c.eq("10.12 header", (h.payload_len, h.sequence, h.exchange_ts_ns, h.recv_ts_ns),
         (24, 7, 1589437530011000000, 1589437530020000000))
    c.eq("10.12 crc", h.crc32, 0x14BAC33A)
    assert isinstance(m, OpenInterest)
    c.eq("10.12 values", (m.open_interest, m.value, m.kind_sequence),
         (D("10659.749"), D("101267615.5"), 1))
    absent_mark = make_frame(MARK, struct.pack("<qqqqQQ", 100, ABSENT, ABSENT, ABSENT, 0, 2),
                             iid=USDM_BTC)
    m = decode_message(*_decode_all(absent_mark)[0])
    c.eq("mark ABSENT fields are None", isinstance(m, Mark) and (
        m.index_price, m.settle_price, m.funding_rate, m.next_funding_ns), (None, None, None, None))

    # The stream: all vectors back to back, whole and byte by byte.
    order = ["10.2 instrument_def", "10.7 trade_cached", "10.1 trade", "10.3 quote",
             "10.6 book_snapshot", "10.4 status", "10.8 bar", "10.5 heartbeat",
             "10.10 mark", "10.11 liquidation", "10.12 open_interest", "10.13 mark_cached"]
    stream = b"".join(bytes.fromhex(GOLDEN[n]) for n in order)
    whole = _decode_all(stream)
    c.eq("stream frames", len(whole), len(order))
    c.eq("stream byte by byte", _decode_all(stream, 1), whole)
    c.eq("stream in 7-byte chunks", _decode_all(stream, 7), whole)

    # §9 errors.
    trade = bytearray(bytes.fromhex(GOLDEN["10.1 trade"]))
    bad = bytearray(trade)
    bad[0] = ord("X")
    c.raises("bad magic", BadMagic, lambda: _decode_all(bytes(bad)))
    c.raises("bad magic with only 4 bytes", BadMagic, lambda: _decode_all(b"MDRX"))
    c.raises("bad magic after a good frame", BadMagic, lambda: _decode_all(bytes(trade) + b"GET /"))
    c.raises("unsupported version", UnsupportedVersion,
             lambda: _decode_all(make_frame(TRADE, bytes(32), version=2)))
    c.raises("bad length", BadLength,
             lambda: _decode_all(make_frame(TRADE, b"", plen=MAX_PAYLOAD + 1)))
    bad = bytearray(trade)
    bad[50] ^= 1
    c.raises("bad crc (payload)", BadCrc, lambda: _decode_all(bytes(bad)))
    bad = bytearray(trade)
    bad[6] = 8  # CACHED set, CRC not recomputed: the header is covered
    c.raises("bad crc (flags)", BadCrc, lambda: _decode_all(bytes(bad)))
    c.raises("truncated header", Truncated, lambda: _decode_all(bytes(trade[:20])))
    c.raises("truncated payload", Truncated, lambda: _decode_all(bytes(trade[:-1])))
    c.eq("empty stream is clean", _decode_all(b""), [])
    c.eq("max length accepted",
         len(_decode_all(make_frame(99, bytes(MAX_PAYLOAD)))), 1)

    # Unknown type skipped by length; payloads longer than the minimum for types 1-5 accepted.
    unk = make_frame(200, b"MDRL" * 5, iid=ETH, seq=3)
    fr = _decode_all(unk + bytes(trade))
    c.eq("unknown then trade", [h.msg_type for h, _ in fr], [200, TRADE])
    c.eq("unknown decodes to Unknown", type(decode_message(*fr[0])).__name__, "Unknown")
    long_trade = make_frame(TRADE, bytes(trade[40:72]) + b"\x01\x02", iid=ETH, seq=7)
    (h, p), = _decode_all(long_trade)
    m = decode_message(h, p)
    c.eq("longer trade payload accepted", isinstance(m, Trade) and m.price == D("2683.8"), True)
    c.eq("heartbeat payload ignored", isinstance(decode_message(*_decode_all(
        make_frame(HEARTBEAT, b"xyz"))[0]), Heartbeat), True)
    side9 = bytes(trade[40:64]) + b"\x09" + bytes(7)
    m = decode_message(*_decode_all(make_frame(TRADE, side9, iid=ETH, seq=1))[0])
    c.eq("other side code is unknown", isinstance(m, Trade) and m.side, "unknown")

    # §9 step 8: malformed payloads.
    def malformed(what: str, frame: bytes) -> None:
        (hh, pp), = _decode_all(frame)
        c.raises(what, MalformedPayload, lambda: decode_message(hh, pp))

    malformed("short trade", make_frame(TRADE, bytes(31), iid=ETH))
    malformed("short quote", make_frame(QUOTE, bytes(16), iid=ETH))
    malformed("status unknown code", make_frame(STATUS, struct.pack("<HHH2xQ", 99, 0, 0, 0)))
    malformed("status strings past payload",
              make_frame(STATUS, struct.pack("<HHH2xQ", 1, 7, 0, 0) + b"bin"))
    malformed("def bad utf-8", make_frame(INSTRUMENT_DEF, struct.pack("<HHb3x", 1, 1, -8)
                                          + b"\xff" + b"X", iid=1))
    malformed("book longer than counts", make_frame(
        BOOK_DELTA, struct.pack("<QII", 0, 1, 0) + bytes(32), iid=ETH))
    malformed("book shorter than counts", make_frame(
        BOOK_DELTA, struct.pack("<QII", 0, 1, 1) + bytes(16), iid=ETH))
    malformed("short mark", make_frame(MARK, bytes(47), iid=USDM_BTC))
    malformed("short liquidation", make_frame(LIQUIDATION, bytes(40), iid=USDM_BTC))
    malformed("short open interest", make_frame(OPEN_INTEREST, bytes(16), iid=USDM_BTC))

    # Derivatives over a socket pair: typed messages, their own numbering checked (a hole in
    # kind_sequence), cached ones counted apart, and no market-data gap (they do not advance
    # the instrument's sequence).
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    mk = lambda n, flags=0: make_frame(  # noqa: E731
        MARK, struct.pack("<qqqqQQ", 100, 99, ABSENT, 10**14, 0, n), flags=flags,
        iid=USDM_BTC, seq=7)
    a.sendall(b"".join([
        make_frame(INSTRUMENT_DEF, struct.pack("<HHb3x", 12, 7, -8) + b"binance_usdmBTCUSDT",
                   iid=USDM_BTC, seq=7),
        mk(4, FLAG_CACHED),
        make_frame(TRADE, struct.pack("<qqQB7x", 100, 1, 5, 1), iid=USDM_BTC, seq=8),
        mk(5),
        bytes.fromhex(GOLDEN["10.11 liquidation"]),
        mk(7),  # mark 6 lost
        bytes.fromhex(GOLDEN["10.12 open_interest"]),
        make_frame(TRADE, struct.pack("<qqQB7x", 100, 1, 6, 1), iid=USDM_BTC, seq=9),
    ]))
    a.close()
    client = RelayClient(sock=b, timeout=10)
    msgs = list(client)
    c.eq("derivatives message types", [type(x).__name__ for x in msgs],
         ["InstrumentDef", "Mark", "Trade", "Mark", "Liquidation", "Mark", "OpenInterest",
          "Trade"])
    c.eq("derivatives id verified", client.id_verified, {USDM_BTC: True})
    c.eq("derivatives kind gaps", (client.kind_gaps, client.kind_missing), (1, 1))
    c.eq("derivatives cached mark", client.cached_counts["Mark"], 1)
    c.eq("derivatives no market-data gap", client.seq.instruments[USDM_BTC].gaps, 0)
    c.eq("derivatives counts", (client.counts["Mark"], client.counts["Liquidation"],
                                client.counts["OpenInterest"]), (3, 1, 1))
    for x in msgs:
        to_text(x, client.names)
        json.dumps(to_json(x, client.names))
    j = to_json(msgs[3], client.names)
    c.eq("mark json", (j["type"], j["mark_price"], j["index_price"], j["settle_price"],
                       j["funding_rate"], j["next_funding_ns"]),
         ("mark", "0.000001", "0.00000099", None, "0.0001", None))

    # The client over a socket pair: state, id checks, sequence checker, books, clean EOF.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    lvl = lambda p, s: struct.pack("<qq", p, s)  # noqa: E731
    frames = [
        bytes.fromhex(GOLDEN["10.2 instrument_def"]),
        make_frame(QUOTE, struct.pack("<qqqq", 1, 2, 3, 4), flags=FLAG_CACHED, iid=ETH, seq=5),
        bytes.fromhex(GOLDEN["10.7 trade_cached"]),
        make_frame(BOOK_DELTA, struct.pack("<QII", 0, 1, 0) + lvl(100, 5), iid=ETH, seq=8),
        bytes.fromhex(GOLDEN["10.6 book_snapshot"]),
        make_frame(BOOK_DELTA, struct.pack("<QII", 0, 1, 1) + lvl(268379000000, 0)
                   + lvl(268381000000, 7), iid=ETH, seq=10),
        make_frame(TRADE, bytes(trade[40:72]), iid=ETH, seq=14),  # 11..13 lost
        bytes.fromhex(GOLDEN["10.5 heartbeat"]),
        make_frame(77, b"future", iid=0),
        make_frame(STATUS, struct.pack("<HHH2xQ", 99, 0, 0, 0)),  # malformed: skipped
        make_frame(STATUS, struct.pack("<HHH2xQ", 10, 7, 4, 3) + b"binanceleft", iid=ETH,
                   seq=14),
    ]
    a.sendall(b"".join(frames))
    a.close()
    client = RelayClient(sock=b, timeout=10)
    msgs = list(client)
    c.eq("client message types", [type(x).__name__ for x in msgs],
         ["InstrumentDef", "Quote", "Trade", "BookDelta", "BookSnapshot", "BookDelta", "Trade",
          "Heartbeat", "Status"])
    c.eq("client eof", client.eof, True)
    c.eq("client names", client.names, {ETH: ("binance", "ETHUSDT")})
    c.eq("client id verified", client.id_verified, {ETH: True})
    c.eq("client cached counts", client.cached_counts,
         {"Trade": 1, "Quote": 1, "Mark": 0, "OpenInterest": 0})
    s = client.seq.instruments[ETH]
    c.eq("seq last live", s.last_live, 14)
    c.eq("seq max cached", s.max_cached, 7)
    c.eq("seq gaps", (s.gaps, s.missing, s.dropped), (1, 3, 3))
    c.eq("malformed counted", client.malformed, 1)
    c.eq("unknown counted", client.counts["Unknown"], 1)
    book = client.books[ETH]
    c.eq("book delta ignored before snapshot", book.ignored_deltas, 1)
    c.eq("book state", (book.bids, book.asks),
         ({D("2683.78"): D("0.25")}, {D("2683.8"): D("2"), D("2683.81"): D("0.00000007")}))
    summ = client.summary()
    c.eq("summary json-able", isinstance(json.dumps(summ), str), True)
    c.eq("summary violations", summ["violations"], [])
    c.eq("summary crc", summ["crc_failures"], 0)
    for x in msgs:  # every renderer works on every type
        to_text(x, client.names)
        json.dumps(to_json(x, client.names))

    # A frame for an id never defined, and a second definition with another name.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.sendall(bytes.fromhex(GOLDEN["10.1 trade"]))
    a.close()
    client = RelayClient(sock=b, timeout=10)
    list(client)
    c.eq("undefined id noticed", client.undefined_id_frames, 1)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.sendall(bytes.fromhex(GOLDEN["10.2 instrument_def"]) + make_frame(
        INSTRUMENT_DEF, struct.pack("<HHb3x", 7, 7, -8) + b"binanceBTCUSDT", iid=ETH))
    a.close()
    c.raises("name conflict", NameConflict, lambda: list(RelayClient(sock=b, timeout=10)))
    # A cut connection raises Truncated; a bad CRC closes the client.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.sendall(bytes.fromhex(GOLDEN["10.2 instrument_def"])[:50])
    a.close()
    c.raises("cut mid-frame", Truncated, lambda: list(RelayClient(sock=b, timeout=10)))
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    bad = bytearray(trade)
    bad[-1] ^= 0xFF
    a.sendall(bytes.fromhex(GOLDEN["10.2 instrument_def"]) + bytes(bad))
    a.close()
    client = RelayClient(sock=b, timeout=10)
    c.raises("bad crc from client", BadCrc, lambda: list(client))
    c.eq("client closed after fatal error", client.sock, None)
    c.eq("crc failure counted", client.summary()["crc_failures"], 1)

    for f in c.failures:
        print("FAIL", f)
    print(f"selftest: {c.passed} checks passed, {len(c.failures)} failed")
    return 1 if c.failures else 0


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="mdrelay protocol v1 subscriber (Python)")
    ap.add_argument("--socket", help="relay socket path (default: as in PROTOCOL.md §1)")
    ap.add_argument("--count", type=int, default=None,
                    help="stop after N market-data events (trade, quote, book; cached included)")
    ap.add_argument("--json", action="store_true", help="JSON lines instead of text")
    ap.add_argument("--summary", action="store_true",
                    help="print a JSON summary as the last line of stdout")
    ap.add_argument("--quiet", action="store_true", help="do not print one line per event")
    ap.add_argument("--timeout", type=float, default=None,
                    help="give up when no byte arrives for this many seconds")
    ap.add_argument("--venue", default="", help="subscribe to this venue only (§6.5)")
    ap.add_argument("--symbol", default="", help="subscribe to symbols matching this glob")
    ap.add_argument("--kind", default="",
                    help="comma-separated kinds to subscribe to: trade,quote,book,bar,status,"
                         "mark,liquidation,open_interest")
    ap.add_argument("--selftest", action="store_true",
                    help="check the decoder against the golden vectors of PROTOCOL.md")
    args = ap.parse_args(argv)
    if args.selftest:
        try:
            return selftest()
        except Exception as e:  # noqa: BLE001  (any crash is a failed self-test)
            import traceback
            traceback.print_exc()
            print(f"selftest: FAILED with {type(e).__name__}: {e}")
            return 1
    if args.count is not None and args.count < 0:
        ap.error("--count must be >= 0")

    # SIGINT and SIGTERM end the run with a summary (a shell may start us with SIGINT ignored).
    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    out = sys.stdout
    path = args.socket or default_socket_path()
    kinds = 0
    for k in filter(None, args.kind.split(",")):
        if k not in KIND_BITS:
            ap.error(f"--kind {k}: expected one of {', '.join(KIND_BITS)}")
        kinds |= KIND_BITS[k]
    try:
        client = RelayClient(path, timeout=args.timeout)
        if args.venue or args.symbol or kinds:
            client.subscribe(args.venue, args.symbol, kinds)
    except OSError as e:
        print(f"mdrelay_client: cannot connect to {path}: {e}", file=sys.stderr)
        return 1
    end, error, status = "eof", None, 0
    events = 0
    first_types: list[str] = []
    try:
        if args.count == 0:
            end = "count"
        else:
            for msg in client:
                if len(first_types) < 16 and not isinstance(msg, Heartbeat):
                    first_types.append(msg.header.type_name)
                if not args.quiet:
                    if args.json:
                        out.write(json.dumps(to_json(msg, client.names)) + "\n")
                    else:
                        out.write(to_text(msg, client.names) + "\n")
                if msg.header.msg_type in MARKET_DATA_TYPES:
                    events += 1
                    if args.count is not None and events >= args.count:
                        end = "count"
                        break
    except socket.timeout:
        end, error, status = "timeout", f"no data for {args.timeout} s", 1
    except ProtocolError as e:
        end, error, status = "error", f"{type(e).__name__}: {e}", 1
    except OSError as e:
        end, error, status = "error", f"{type(e).__name__}: {e}", 1
    except KeyboardInterrupt:
        end, status = "interrupted", 130
    finally:
        client.close()
    summ = client.summary()
    if summ["violations"] and status == 0:
        status = 1
    if error:
        print(f"mdrelay_client: {error}", file=sys.stderr)
    if args.summary:
        summ = {"end": end, "error": error, "market_data_events": events,
                "first_types": first_types, **summ}
        out.write(json.dumps(summ, sort_keys=True) + "\n")
    out.flush()
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        # e.g. piped into `head`: stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
