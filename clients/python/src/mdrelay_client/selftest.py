"""``mdrelay-client --selftest``: the decoder against the golden vectors of docs/PROTOCOL.md."""

from __future__ import annotations

import json
import socket
import struct
import zlib
from decimal import Decimal
from typing import Callable, Optional

from .client import RelayClient
from .dataframe import PANDAS_MISSING, Messages
from .protocol import (
    ABSENT,
    BAR,
    BOOK_DELTA,
    BOOK_SNAPSHOT,
    CRC,
    FLAG_CACHED,
    FLAG_SNAPSHOT,
    HEADER,
    HEARTBEAT,
    INSTRUMENT_DEF,
    LIQUIDATION,
    MAGIC,
    MARK,
    MAX_PAYLOAD,
    OPEN_INTEREST,
    QUOTE,
    STATUS,
    TRADE,
    VERSION,
    BadCrc,
    BadLength,
    BadMagic,
    Bar,
    BookSnapshot,
    FrameDecoder,
    Heartbeat,
    InstrumentDef,
    Level,
    Liquidation,
    MalformedPayload,
    Mark,
    NameConflict,
    OpenInterest,
    Quote,
    Status,
    Trade,
    Truncated,
    UnsupportedVersion,
    decode_message,
    encode_request,
    fmt_decimal,
    fnv1a32,
    instrument_id,
    Header,
    Message,
)
from .render import to_json, to_text

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

    def raises(self, what: str, exc: type[BaseException], fn: Callable[[], object]) -> None:
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
    c.eq("10.1 price exact", m.price is not None and m.price * 10**8, D(268380000000))
    c.eq("10.1 size", m.size, D("0.002"))
    c.eq("10.1 size raw", m.size is not None and m.size * 10**8, D(200000))
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
    c.eq("10.10 funding raw", m.funding_rate is not None and m.funding_rate * 10**18, D(381670000000000))
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

    def mk(n: int, flags: int = 0) -> bytes:
        return make_frame(MARK, struct.pack("<qqqqQQ", 100, 99, ABSENT, 10**14, 0, n),
                          flags=flags, iid=USDM_BTC, seq=7)

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
    msgs = client.collect()
    table = Messages(msgs, msgs.names)  # every message type, for to_pandas()
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

    def lvl(price: int, size: int) -> bytes:
        return struct.pack("<qq", price, size)

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
    msgs = client.collect()
    table.extend(msgs)
    table.names.update(msgs.names)
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

    # collect(): a count of the selected types, the id table, and the rest where it stopped.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.sendall(b"".join(bytes.fromhex(GOLDEN[n]) for n in (
        "10.2 instrument_def", "10.7 trade_cached", "10.1 trade", "10.3 quote")))
    a.close()
    client = RelayClient(sock=b, timeout=10)
    got = client.collect(1, types=(Trade,))
    c.eq("collect count and types", [type(x).__name__ for x in got], ["Trade"])
    c.eq("collect names", got.names, {ETH: ("binance", "ETHUSDT")})
    c.eq("collect continues where it stopped", [type(x).__name__ for x in client.collect()],
         ["Trade", "Quote"])
    c.eq("collect 0", client.collect(0), Messages())

    for name in ("10.8 bar", "10.3 quote"):
        table.append(decode_message(*_decode_all(bytes.fromhex(GOLDEN[name]))[0]))
    skipped = _check_pandas(c, table)
    if skipped:
        print(f"selftest: to_pandas checks skipped: {skipped}")

    for f in c.failures:
        print("FAIL", f)
    print(f"selftest: {c.passed} checks passed, {len(c.failures)} failed")
    return 1 if c.failures else 0




def _check_pandas(c: _Check, table: Messages) -> Optional[str]:
    """to_pandas() on every message type; returns why it was skipped (pandas missing)."""
    try:
        import pandas as pd
    except ImportError:
        c.raises("to_pandas without pandas", ImportError, table.to_pandas)
        try:
            table.to_pandas()
        except ImportError as e:
            c.eq("to_pandas ImportError names the fix", str(e), PANDAS_MISSING)
        return "pandas is not installed"
    c.raises("to_pandas decimals=float refused", ValueError,
             lambda: table.to_pandas(decimals="float"))
    df = table.to_pandas()
    types = [to_json(m, table.names)["type"] for m in table]
    c.eq("df rows", len(df), len(table))
    c.eq("df type column", list(df["type"]), types)
    c.eq("df common columns first", list(df.columns[:9]),
         ["type", "venue", "symbol", "instrument_id", "sequence", "flags", "cached",
          "exchange_ts", "recv_ts"])
    for col, dtype in (("recv_ts", "datetime64[ns, UTC]"), ("exchange_ts", "datetime64[ns, UTC]"),
                       ("start_ts", "datetime64[ns, UTC]"), ("interval", "timedelta64[ns]"),
                       ("next_funding_ts", "datetime64[ns, UTC]"), ("instrument_id", "uint64"),
                       ("sequence", "uint64"), ("cached", "bool"), ("trade_id", "UInt64"),
                       ("kind_sequence", "UInt64"), ("price_exponent", "Int64"),
                       ("price", "object"), ("snapshot", "boolean")):
        c.eq(f"df {col} dtype", str(df[col].dtype), dtype)
    c.eq("df recv_ts exact to the ns", [int(t.value) for t in df["recv_ts"]],
         [m.header.recv_ts_ns for m in table])
    c.eq("df exchange_ts NaT when absent", [bool(pd.isna(t)) for t in df["exchange_ts"]],
         [m.header.exchange_ts is None for m in table])
    c.eq("df exchange_ts exact", [int(t.value) for t in df["exchange_ts"] if not pd.isna(t)],
         [m.header.exchange_ts_ns for m in table if m.header.exchange_ts is not None])
    c.eq("df names", {(v, s) for v, s in zip(df["venue"], df["symbol"])},
         {("binance_usdm", "BTCUSDT"), ("binance", "ETHUSDT"), (None, None)})
    tr = df[df["type"] == "trade"].iloc[-1]
    c.eq("df trade price exact", tr["price"], Decimal("2683.8"))
    c.eq("df trade size exact", tr["size"], Decimal("0.002"))
    c.eq("df trade fields", (tr["side"], int(tr["trade_id"]), int(tr["sequence"])),
         ("sell", 1520538925, 14))
    q = df[df["type"] == "quote"].iloc[-1]
    c.eq("df quote, ABSENT ask is None", (q["bid_price"], q["bid_size"], q["ask_price"]),
         (Decimal("2683.79"), Decimal("1.5"), None))
    book = df[(df["type"] == "book") & df["snapshot"].fillna(False)].iloc[0]
    c.eq("df book levels", (book["bids"], book["asks"]),
         (((Decimal("2683.79"), Decimal("1.5")), (Decimal("2683.78"), Decimal("0.25"))),
          ((Decimal("2683.8"), Decimal("2")),)))
    c.eq("df book venue_sequence", int(book["venue_sequence"]), 48219375)
    liq = df[df["type"] == "liquidation"].iloc[0]
    c.eq("df liquidation", (liq["side"], liq["price"], liq["avg_price"], liq["status"],
                            int(liq["kind_sequence"])),
         ("sell", Decimal("9910"), Decimal("9910.12345678"), "filled", 1))
    oi = df[df["type"] == "open_interest"].iloc[0]
    c.eq("df open interest", (oi["open_interest"], oi["value"]),
         (Decimal("10659.749"), Decimal("101267615.5")))
    mark = df[df["type"] == "mark"].iloc[0]
    c.eq("df mark", (mark["funding_rate"], mark["settle_price"], bool(pd.isna(
        mark["next_funding_ts"])), bool(mark["cached"])), (Decimal("0.0001"), None, True, True))
    b = df[df["type"] == "bar"].iloc[0]
    c.eq("df bar", (b["interval"], int(b["start_ts"].value), b["volume"], int(b["trade_count"])),
         (pd.Timedelta(minutes=1), 1723161240000000000, Decimal("12.345"), 57))
    st = df[df["type"] == "status"].iloc[0]
    c.eq("df status", (st["event"], int(st["count"]), st["detail"]), ("dropped", 3, "left"))
    c.eq("df missing fields are NA", bool(pd.isna(df[df["type"] == "heartbeat"].iloc[0][
        "trade_id"])), True)
    text = table.to_pandas(decimals="str")
    c.eq("df str decimals", (text[text["type"] == "trade"].iloc[-1]["price"],
                             text[text["type"] == "liquidation"].iloc[0]["avg_price"]),
         ("2683.8", "9910.12345678"))
    c.eq("df str book levels", text[(text["type"] == "book")
                                    & text["snapshot"].fillna(False)].iloc[0]["asks"],
         (("2683.8", "2"),))
    empty = Messages().to_pandas()
    c.eq("df empty", (len(empty), list(empty.columns), str(empty["recv_ts"].dtype)),
         (0, ["type", "venue", "symbol", "instrument_id", "sequence", "flags", "cached",
              "exchange_ts", "recv_ts"], "datetime64[ns, UTC]"))
    return None
