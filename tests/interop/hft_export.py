#!/usr/bin/env python3
"""Interop check (ii): `mdrelay export --format hftbacktest` through hftbacktest's own backtester.

For each bundled capture (data/<venue>/…) and each instrument in it with book events:
  1. `mdrelay decode` gives mdrelay's events (JSON lines); replaying their book events gives
     mdrelay's book at any receive time.
  2. `mdrelay export --format hftbacktest --symbol S` writes an .npz; hftbacktest's
     `validate_event_order` must accept it, and its row counts must match decode's events
     (every trade, snapshot level and diff level once per timeline, one clear per snapshot).
  3. `BacktestAsset().data([npz])` in a `HashMapMarketDepthBacktest` elapses through the data;
     at checkpoints (about 200 receive times spread over the recording, and the last one) the
     backtester's best bid and ask (price in ticks and quantity) must equal mdrelay's book at
     that same time.

Prints one line per instrument and PASS, or the first mismatches and FAIL (exit 1).

Usage: hft_export.py [--mdrelay PATH] [CAPTURE…]   (run from the repository root; needs
hftbacktest==2.4.4, e.g. the venv `make interop` builds in target/interop-venv).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest.data import validate_event_order

EXCH_EVENT = 1 << 31
LOCAL_EVENT = 1 << 30
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28
DEPTH_EVENT, TRADE_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT = 1, 2, 3, 4

# hftbacktest's empty-side sentinels for best_bid_tick / best_ask_tick.
INVALID_MIN = -(2**63)
INVALID_MAX = 2**63 - 1

DEFAULT_CAPTURES = [
    "data/binance_usdm/ethusdt_20240808.txt.gz",
    "data/okx/books_trades_tickers_20220513.txt.gz",
    "data/coinbase/level2_ticker_matches_20210417.txt.gz",
    "data/gemini/l2_trades_20210624.txt.gz",
    "data/kraken_v1/book1000_20210417.txt.gz",
    "data/hyperliquid/btc_20250126.txt.gz",
]

CHECKPOINTS = 200


def decode(mdrelay, venue, path):
    out = subprocess.run(
        [mdrelay, "decode", "--venue", venue, path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line]


def export(mdrelay, path, symbol, npz):
    p = subprocess.run(
        [mdrelay, "export", "--format", "hftbacktest", "--symbol", symbol, path, "-o", npz],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise RuntimeError(f"export failed ({p.returncode}): {p.stderr.strip()}")
    summary = [l for l in p.stderr.splitlines() if l.startswith("export: ")]
    if len(summary) != 1:
        raise RuntimeError(f"no summary line: {p.stderr.strip()}")
    fields = dict(re.findall(r"(\w+)=(\S+)", summary[0]))
    return fields, summary[0]


class Book:
    """mdrelay's book as decode's JSON lines describe it: exact decimals kept as text."""

    def __init__(self):
        self.bids = {}
        self.asks = {}

    def apply(self, ev):
        if ev["snapshot"]:
            self.bids.clear()
            self.asks.clear()
        for side, levels in ((self.bids, ev["bids"]), (self.asks, ev["asks"])):
            for px, qty in levels:
                key = float(px)
                if float(qty) == 0.0:
                    side.pop(key, None)
                else:
                    side[key] = float(qty)

    def best(self, tick):
        """(bid tick, bid qty, ask tick, ask qty), hftbacktest's sentinels for an empty side."""
        if self.bids:
            b = max(self.bids)
            bid = (round(b / tick), self.bids[b])
        else:
            bid = (INVALID_MIN, 0.0)
        if self.asks:
            a = min(self.asks)
            ask = (round(a / tick), self.asks[a])
        else:
            ask = (INVALID_MAX, 0.0)
        return bid + ask


def check_rows(data, events):
    """Row counts per timeline against decode's events; returns a list of problems."""
    problems = []
    kind = data["ev"] & 0xFF
    trades = [e for e in events if e["type"] == "trade"]
    books = [e for e in events if e["type"] == "book"]
    snaps = [e for e in books if e["snapshot"]]
    diffs = [e for e in books if not e["snapshot"]]
    want = {
        TRADE_EVENT: len(trades),
        DEPTH_CLEAR_EVENT: len(snaps),
        DEPTH_SNAPSHOT_EVENT: sum(len(e["bids"]) + len(e["asks"]) for e in snaps),
        DEPTH_EVENT: sum(len(e["bids"]) + len(e["asks"]) for e in diffs),
    }
    for flag, name in ((EXCH_EVENT, "exchange"), (LOCAL_EVENT, "local")):
        on = (data["ev"] & flag) != 0
        for k, n in want.items():
            got = int(np.sum(on & (kind == k)))
            if got != n:
                problems.append(f"{name} rows of kind {k}: {got}, decode says {n}")
    return problems, want


def run_case(mdrelay, path, symbol, events, tmp):
    npz = os.path.join(tmp, f"{symbol.replace('/', '_')}.npz")
    fields, summary = export(mdrelay, path, symbol, npz)
    tick, lot = float(fields["tick_size"]), float(fields["lot_size"])
    data = np.load(npz)["data"]
    validate_event_order(data)  # hftbacktest's own check: raises ValueError
    problems, want = check_rows(data, events)

    asset = (
        BacktestAsset()
        .data([npz])
        .linear_asset(1.0)
        .constant_order_latency(0, 0)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(0.0, 0.0)
        .tick_size(tick)
        .lot_size(lot)
        .last_trades_capacity(0)
    )
    hbt = HashMapMarketDepthBacktest([asset])
    # The clock starts at i64::MAX until the first elapse sets it to the data's first time.
    if hbt.elapse(0) not in (0, 1):
        raise RuntimeError("the first elapse failed")

    # Checkpoints: receive times after which no event of the same time is left.
    times = [e["recv_ts_ns"] for e in events]
    if any(b < a for a, b in zip(times, times[1:])):
        raise RuntimeError(f"{path}: receive times go backwards; checkpoints need them sorted")
    step = max(1, len(events) // CHECKPOINTS)
    book = Book()
    checked = 0
    for i, ev in enumerate(events):
        if ev["type"] == "book":
            book.apply(ev)
        last = i + 1 == len(events)
        if not (i % step == step - 1 or last):
            continue
        if not last and times[i + 1] == times[i]:
            continue
        t = times[i]
        rc = hbt.elapse(t - hbt.current_timestamp)
        if rc not in (0, 1):
            raise RuntimeError(f"elapse returned {rc}")
        if hbt.current_timestamp != t and rc == 0:
            raise RuntimeError(f"elapse reached {hbt.current_timestamp}, wanted {t}")
        d = hbt.depth(0)
        got = (d.best_bid_tick, d.best_bid_qty, d.best_ask_tick, d.best_ask_qty)
        want_bbo = book.best(tick)
        same = (
            got[0] == want_bbo[0]
            and got[2] == want_bbo[2]
            and (got[0] == INVALID_MIN or abs(got[1] - want_bbo[1]) <= 1e-9 * max(1.0, want_bbo[1]))
            and (got[2] == INVALID_MAX or abs(got[3] - want_bbo[3]) <= 1e-9 * max(1.0, want_bbo[3]))
        )
        if not same and len(problems) < 5:
            problems.append(f"at {t}: hftbacktest {got}, mdrelay {want_bbo}")
        elif not same:
            problems.append("…")
        checked += 1
    hbt.close()
    line = (
        f"{path} {symbol}: rows={len(data)} trades={want[TRADE_EVENT]} "
        f"snapshots={want[DEPTH_CLEAR_EVENT]} snapshot_levels={want[DEPTH_SNAPSHOT_EVENT]} "
        f"diff_levels={want[DEPTH_EVENT]} checkpoints={checked} tick_size={fields['tick_size']} "
        f"gaps={fields['gaps']} checksum_mismatches={fields['checksum_mismatches']}"
    )
    return problems, line


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mdrelay", default=os.environ.get("MDRELAY", "target/debug/mdrelay"))
    ap.add_argument("captures", nargs="*", default=DEFAULT_CAPTURES)
    args = ap.parse_args()
    failed = 0
    cases = 0
    with tempfile.TemporaryDirectory(prefix="mdrelay-hft-") as tmp:
        for path in args.captures:
            venue = os.path.basename(os.path.dirname(path))
            all_events = decode(args.mdrelay, venue, path)
            symbols = sorted({e["symbol"] for e in all_events if e["type"] == "book"})
            if not symbols:
                print(f"{path}: no book events, skipped")
                continue
            for symbol in symbols:
                events = [
                    e
                    for e in all_events
                    if e.get("symbol") == symbol and e["type"] in ("book", "trade")
                ]
                cases += 1
                try:
                    problems, line = run_case(args.mdrelay, path, symbol, events, tmp)
                except (RuntimeError, ValueError) as e:
                    problems, line = [str(e)], f"{path} {symbol}"
                print(line)
                for p in problems:
                    print(f"  MISMATCH {p}")
                failed += bool(problems)
    if cases == 0 or failed:
        print(f"FAIL: {failed} of {cases} instrument(s)")
        return 1
    print(f"PASS: {cases} instrument(s), hftbacktest's book equals mdrelay's at every checkpoint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
