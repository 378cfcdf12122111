"""Decoded messages as a pandas DataFrame. pandas is optional: only ``to_pandas()`` imports it.

One row per message, in order. Columns, always present: ``type`` (the JSON type name: "trade",
"quote", "book", ...), ``venue``, ``symbol`` (from the connection's InstrumentDefs; None when
unknown), ``instrument_id`` and ``sequence`` (uint64), ``flags``, ``cached`` (bool),
``exchange_ts`` and ``recv_ts`` (datetime64[ns, UTC]; an absent exchange time is NaT). Then the
fields of each type present, named as in the JSON lines (README "JSON schema") except that
times are datetime64[ns, UTC] without the ``_ns`` suffix (``start_ts``, ``first_trade_ts``,
``last_trade_ts``, ``next_funding_ts``) and a bar's ``interval`` is timedelta64[ns]. A column that
a row's type lacks is missing there (None, NA or NaT).

Prices, sizes and rates stay exact: ``decimals="decimal"`` (default) gives ``decimal.Decimal``
objects (object columns; None when ABSENT), ``decimals="str"`` the plain decimal text of the JSON
lines ("2683.8"). Convert to float yourself if you accept the rounding. Integer fields are
pandas nullable integers (``UInt64``, ``Int64`` for ``price_exponent``); book ``bids``/``asks``
are tuples of (price, size) pairs. datetime64[ns] ends in 2262: a later time reads as NaT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from .protocol import (
    Bar,
    BookDelta,
    BookSnapshot,
    Heartbeat,
    InstrumentDef,
    Liquidation,
    Mark,
    Message,
    OpenInterest,
    Quote,
    Status,
    Trade,
    Unknown,
    fmt_decimal,
)

if TYPE_CHECKING:
    import pandas

PANDAS_MISSING = (
    "to_pandas() needs pandas, which is not installed in this environment: "
    "pip install 'mdrelay-client[pandas]' (or pip install pandas). "
    "The rest of mdrelay_client needs only the standard library."
)

# Column kinds, for the dtypes (every other column is an object column: text, tuples).
_TIME = ("exchange_ts", "recv_ts", "start_ts", "first_trade_ts", "last_trade_ts",
         "next_funding_ts")
_DECIMAL = ("price", "size", "bid_price", "bid_size", "ask_price", "ask_size", "open", "high",
            "low", "close", "volume", "vwap", "mark_price", "index_price", "settle_price",
            "funding_rate", "avg_price", "filled_size", "open_interest", "value")
_UINT = ("flags", "trade_id", "code", "count", "venue_sequence", "trade_count",
         "kind_sequence", "msg_type", "payload_len")
_BOOL = ("snapshot", "may_be_bad")
_I64_MAX = (1 << 63) - 1


def _record(msg: Message, names: Mapping[int, tuple[str, str]]) -> dict[str, Any]:
    """The row of one message: Decimals, raw nanosecond integers (converted per column later)."""
    h = msg.header
    n = names.get(h.instrument_id)
    row: dict[str, Any] = {
        "type": "unknown", "venue": n[0] if n else None, "symbol": n[1] if n else None,
        "instrument_id": h.instrument_id, "sequence": h.sequence, "flags": h.flags,
        "cached": h.cached, "exchange_ts": h.exchange_ts, "recv_ts": h.recv_ts_ns,
    }
    if isinstance(msg, InstrumentDef):
        row.update(type="instrument", venue=msg.venue, symbol=msg.symbol,
                   price_exponent=msg.price_exponent)
    elif isinstance(msg, Trade):
        row.update(type="trade", price=msg.price, size=msg.size, side=msg.side,
                   trade_id=msg.trade_id)
    elif isinstance(msg, Quote):
        row.update(type="quote", bid_price=msg.bid_price, bid_size=msg.bid_size,
                   ask_price=msg.ask_price, ask_size=msg.ask_size)
    elif isinstance(msg, Status):
        row.update(type="status", event=msg.name, code=msg.code, count=msg.count,
                   status_venue=msg.venue, detail=msg.detail)
    elif isinstance(msg, Heartbeat):
        row.update(type="heartbeat")
    elif isinstance(msg, (BookSnapshot, BookDelta)):
        row.update(type="book", snapshot=isinstance(msg, BookSnapshot),
                   bids=tuple((lv.price, lv.size) for lv in msg.bids),
                   asks=tuple((lv.price, lv.size) for lv in msg.asks),
                   venue_sequence=msg.venue_sequence, may_be_bad=h.book_may_be_bad)
    elif isinstance(msg, Bar):
        row.update(type="bar", interval=msg.interval_ns, start_ts=msg.start_ns, open=msg.open,
                   high=msg.high, low=msg.low, close=msg.close, volume=msg.volume,
                   vwap=msg.vwap, trade_count=msg.trade_count,
                   first_trade_ts=msg.first_trade_ns, last_trade_ts=msg.last_trade_ns)
    elif isinstance(msg, Mark):
        row.update(type="mark", mark_price=msg.mark_price, index_price=msg.index_price,
                   settle_price=msg.settle_price, funding_rate=msg.funding_rate,
                   next_funding_ts=msg.next_funding_ns, kind_sequence=msg.kind_sequence)
    elif isinstance(msg, Liquidation):
        row.update(type="liquidation", side=msg.side, price=msg.price, avg_price=msg.avg_price,
                   size=msg.size, filled_size=msg.filled_size, status=msg.status,
                   kind_sequence=msg.kind_sequence)
    elif isinstance(msg, OpenInterest):
        row.update(type="open_interest", open_interest=msg.open_interest, value=msg.value,
                   kind_sequence=msg.kind_sequence)
    elif isinstance(msg, Unknown):
        row.update(msg_type=h.msg_type, payload_len=h.payload_len)
    return row


def to_pandas(messages: Iterable[Message],
              names: Optional[Mapping[int, tuple[str, str]]] = None, *,
              decimals: str = "decimal") -> "pandas.DataFrame":
    """A DataFrame with one row per message (columns and dtypes: this module's docstring).

    ``names`` maps instrument ids to (venue, symbol), as ``RelayClient.names`` does; without it
    only InstrumentDef rows name their instrument. Raises ImportError (with the command that
    installs pandas) when pandas is missing, ValueError for another ``decimals``.
    """
    if decimals not in ("decimal", "str"):
        raise ValueError(f"decimals={decimals!r}: expected 'decimal' or 'str'")
    try:
        import numpy as np
        import pandas as pd
    except ImportError as e:
        raise ImportError(PANDAS_MISSING) from e
    names = names or {}
    rows = [_record(m, names) for m in messages]
    columns: dict[str, None] = dict.fromkeys(
        ("type", "venue", "symbol", "instrument_id", "sequence", "flags", "cached",
         "exchange_ts", "recv_ts"))
    for r in rows:
        columns.update(dict.fromkeys(r))
    data: dict[str, Any] = {}
    for col in columns:
        values = [r.get(col) for r in rows]
        if col in _TIME or col == "interval":
            nat = np.iinfo(np.int64).min  # numpy's NaT
            ns = np.array([nat if v is None or v > _I64_MAX else v for v in values],
                          dtype=np.int64)
            if col == "interval":
                data[col] = pd.Series(ns.view("m8[ns]"), dtype="timedelta64[ns]")
            else:
                data[col] = pd.Series(ns.view("M8[ns]")).dt.tz_localize("UTC")
        elif col in ("instrument_id", "sequence"):
            data[col] = pd.Series(values, dtype="uint64")
        elif col == "cached":
            data[col] = pd.Series(values, dtype="bool")
        elif col in _UINT:
            data[col] = pd.Series(pd.array(values, dtype="UInt64"))
        elif col == "price_exponent":
            data[col] = pd.Series(pd.array(values, dtype="Int64"))
        elif col in _BOOL:
            data[col] = pd.Series(pd.array(values, dtype="boolean"))
        elif col in _DECIMAL:
            if decimals == "str":
                values = [fmt_decimal(v) for v in values]
            data[col] = pd.Series(values, dtype=object)
        elif col in ("bids", "asks"):
            if decimals == "str":
                values = [None if v is None else tuple((fmt_decimal(p), fmt_decimal(s)) for p, s in v)
                          for v in values]
            data[col] = pd.Series(values, dtype=object)
        else:
            data[col] = pd.Series(values, dtype=object)
    return pd.DataFrame(data, columns=list(columns))


class Messages(list[Message]):
    """A list of decoded messages that remembers the connection's id → (venue, symbol) table;
    what ``RelayClient.collect()`` returns. ``to_pandas()`` turns it into a DataFrame."""

    def __init__(self, messages: Iterable[Message] = (),
                 names: Optional[Mapping[int, tuple[str, str]]] = None) -> None:
        super().__init__(messages)
        self.names: dict[int, tuple[str, str]] = dict(names or {})

    def to_pandas(self, *, decimals: str = "decimal") -> "pandas.DataFrame":
        """``to_pandas(self, self.names, decimals=...)``; ImportError when pandas is missing."""
        return to_pandas(self, self.names, decimals=decimals)
