"""mdrelay wire protocol v1: constants, errors, typed messages, frame decoder (stdlib only).

Written from docs/PROTOCOL.md alone, as a check that the document is enough to build a client.
Section numbers in comments (§N) refer to that document. Everything here is pure: no sockets
(``client``), no output (``render``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
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
STATUS_DROPPED = 10

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


