"""The subscriber: connection, id table, sequence checks (§6.2), local books (§4.6)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterator, Optional, Union

from .dataframe import Messages
from .protocol import (
    DEFAULT_PRICE_EXPONENT,
    MARKET_DATA_TYPES,
    STATUS_DROPPED,
    TYPE_NAMES,
    BookDelta,
    BookSnapshot,
    FrameDecoder,
    Header,
    InstrumentDef,
    Liquidation,
    MalformedPayload,
    Mark,
    Message,
    NameConflict,
    OpenInterest,
    ProtocolError,
    Status,
    Unknown,
    decode_message,
    encode_request,
    instrument_id,
)

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
        """Apply a book frame; returns False for a delta ignored before the first snapshot.
        A level without a price (ABSENT) is ignored; a size of zero or ABSENT removes it."""
        if isinstance(msg, BookSnapshot):
            self.bids = {lv.price: lv.size for lv in msg.bids if lv.price is not None and lv.size}
            self.asks = {lv.price: lv.size for lv in msg.asks if lv.price is not None and lv.size}
            self.have_snapshot = True
            self.may_be_bad = msg.header.book_may_be_bad
            return True
        if not self.have_snapshot:
            self.ignored_deltas += 1
            return False
        for side, levels in ((self.bids, msg.bids), (self.asks, msg.asks)):
            for lv in levels:
                if lv.price is None:
                    continue
                if not lv.size:
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

    def collect(self, count: Optional[int] = None, *,
                types: Optional[tuple[type, ...]] = None) -> Messages:
        """The next ``count`` messages (all of them until a clean EOF when None), keeping only
        instances of ``types`` when given (e.g. ``(Trade, Quote)``), as a Messages list that
        carries the id table: ``client.collect(1000, types=(Trade,)).to_pandas()``. Raises as
        iteration does; a timeout raises ``socket.timeout`` (TimeoutError)."""
        out = Messages()
        if count is None or count > 0:
            for msg in self.messages():
                if types is None or isinstance(msg, types):
                    out.append(msg)
                    if count is not None and len(out) >= count:
                        break
        out.names = dict(self.names)
        return out

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

    def summary(self) -> dict[str, Any]:
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


