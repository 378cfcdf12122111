"""One message as a JSON object (the README schema, plus header fields) or as a text line."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from .protocol import (
    Bar,
    BookDelta,
    BookSnapshot,
    Heartbeat,
    InstrumentDef,
    Level,
    Liquidation,
    Mark,
    Message,
    OpenInterest,
    Quote,
    Status,
    Trade,
    fmt_decimal,
    instrument_id,
)

# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _levels(levels: tuple[Level, ...]) -> list[list[Optional[str]]]:
    return [[fmt_decimal(lv.price), fmt_decimal(lv.size)] for lv in levels]


def to_json(msg: Message, names: Mapping[int, tuple[str, str]]) -> dict[str, Any]:
    """One JSON object per message (README schema, plus header fields)."""
    h = msg.header
    n = names.get(h.instrument_id)
    base: dict[str, Any] = {
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


def _text_levels(levels: tuple[Level, ...]) -> str:
    return " ".join(f"{fmt_decimal(x.size)}@{fmt_decimal(x.price)}" for x in levels) or "-"


def to_text(msg: Message, names: Mapping[int, tuple[str, str]]) -> str:
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
        body = (f"book-{kind} {who} seq={h.sequence} vseq={msg.venue_sequence or '-'} "
                f"bids [{_text_levels(msg.bids)}] asks [{_text_levels(msg.asks)}] {ts}")
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


