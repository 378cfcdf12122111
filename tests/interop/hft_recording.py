"""hftbacktest reads mdrelay's raw recording (layout "hftbacktest") unchanged.

Usage: hft_recording.py RECORDING CAPTURE START_NS END_NS

RECORDING is the per-symbol file the relay wrote (<dir>/<venue>/<feed>/<symbol>_<YYYYMMDD>.gz)
while the replay exchange served CAPTURE (the bundled Binance USD-M capture, made with a
collector that writes hftbacktest's layout); START_NS..END_NS bound the relay's run (wall clock).
Both files go through hftbacktest's own converter, hftbacktest.data.utils.binancefutures.convert,
unmodified (with opt="t", so book tickers are events too). It turns each line into event rows (ev, exch_ts, local_ts, px, qty, order_id, ival,
fval), then `correct_event_order` splits them into two orderings flagged EXCH_EVENT (rows by
exchange time, what the exchange side of the backtest sees) and LOCAL_EVENT (rows by local
time, what the strategy sees), merged into one array.

What is compared, and why:
  * local_ts is left out everywhere: it is our receive time (this run's wall clock), not the
    capture's. Because it differs, the merged arrays differ in how exchange and local rows
    interleave, so they are not compared row by row; the two orderings are, each on its own,
    on every other field (event type without the EXCH/LOCAL flags, exch_ts, px, qty, order_id,
    ival, fval).
  * The REST snapshot (its DEPTH_CLEAR and DEPTH_SNAPSHOT rows) is received at another moment:
    our collector fetched it right after the first depth update, the capture's collector a few
    lines later. So its place differs in receive order, and among the rows that share its
    exchange time in exchange order (mergesort keeps file order on ties). Hence:
      - every other row (trades, depth updates) must be equal, in order, in both orderings;
      - the snapshot rows must be equal, in order;
      - all rows must be equal as a multiset.
  * local_ts itself: the recording's receive times must be 19-digit nanoseconds (the converter
    slices 19 characters), non-decreasing in file order, and within the run; the converted
    local ordering's local_ts must be non-decreasing.
Prints counts and PASS; exits 1 on any mismatch.
"""

import gzip
import sys

import numpy as np
from hftbacktest.data.utils import binancefutures
from hftbacktest.types import (
    DEPTH_CLEAR_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    LOCAL_EVENT,
)

FIELDS = ["ev", "exch_ts", "px", "qty", "order_id", "ival", "fval"]
FLAGS = np.uint64(EXCH_EVENT | LOCAL_EVENT)
KIND = np.uint64(0xFF)  # the event kind, below the side and exch/local flags


def view(data, flag):
    """The rows carrying `flag`, in order, without local_ts and without the EXCH/LOCAL flags."""
    rows = data[(data["ev"] & np.uint64(flag)) != 0]
    out = np.empty(len(rows), dtype=[(f, rows.dtype[f]) for f in FIELDS])
    for f in FIELDS:
        out[f] = rows[f]
    out["ev"] = rows["ev"] & ~FLAGS
    return out


def first_difference(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def main():
    recording, capture, start_ns, end_ns = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    failures = []

    # Receive times as written, before the converter's latency correction shifts them.
    stamps = []
    with gzip.open(recording, "rt") as f:
        for line in f:
            ts = line.split(" ", 1)[0]
            if len(ts) != 19 or not ts.isdigit():
                failures.append(f"line {len(stamps) + 1}: receive time {ts!r} is not 19 digits")
                break
            stamps.append(int(ts))
    stamps = np.array(stamps, dtype=np.int64)
    if len(stamps) == 0:
        failures.append("the recording is empty")
    else:
        if np.any(np.diff(stamps) < 0):
            failures.append("receive times go backwards")
        if stamps[0] < start_ns or stamps[-1] > end_ns:
            failures.append(
                f"receive times {stamps[0]}..{stamps[-1]} outside the run {start_ns}..{end_ns}"
            )

    # opt "t": bookTicker messages become events too (ids 103/104), so every stream message of
    # the capture (trades, depth updates, book tickers) yields rows and none can go missing
    # unnoticed; the default conversion (trades and depth only) reads the file the same way.
    ours = binancefutures.convert(recording, opt="t")
    theirs = binancefutures.convert(capture, opt="t")

    def stream_lines(path):
        with gzip.open(path, "rt") as f:
            return sum(1 for line in f if line.split(" ", 1)[1].startswith('{"stream"'))

    n_ours, n_theirs = stream_lines(recording), stream_lines(capture)
    print(f"stream messages: recording {n_ours}, capture {n_theirs}")
    if n_ours != n_theirs:
        failures.append(f"{n_ours} stream messages in the recording, {n_theirs} in the capture")

    ex_o, ex_t = view(ours, EXCH_EVENT), view(theirs, EXCH_EVENT)
    lo_o, lo_t = view(ours, LOCAL_EVENT), view(theirs, LOCAL_EVENT)
    print(f"recording: {len(stamps)} lines, {len(ex_o)} events ({len(ours)} rows after order correction)")
    print(f"capture:   {len(ex_t)} events ({len(theirs)} rows after order correction)")

    def is_snapshot(v):
        kind = v["ev"] & KIND
        return (kind == np.uint64(DEPTH_CLEAR_EVENT)) | (kind == np.uint64(DEPTH_SNAPSHOT_EVENT))

    def same(what, a, b):
        if len(a) != len(b) or np.any(a != b):
            i = first_difference(a, b)
            failures.append(
                f"{what} differ ({len(a)} vs {len(b)} rows), first at row {i}: "
                f"{a[i] if i < len(a) else None} vs {b[i] if i < len(b) else None}"
            )

    if len(ex_o) == 0:
        failures.append("no events in the recording")
    same("exchange-ordered events other than the snapshot",
         ex_o[~is_snapshot(ex_o)], ex_t[~is_snapshot(ex_t)])
    same("locally ordered events other than the snapshot",
         lo_o[~is_snapshot(lo_o)], lo_t[~is_snapshot(lo_t)])
    same("REST snapshot rows", ex_o[is_snapshot(ex_o)], ex_t[is_snapshot(ex_t)])
    same("all events as a multiset", np.sort(ex_o), np.sort(ex_t))
    snap_o, snap_t = int(is_snapshot(ex_o).sum()), int(is_snapshot(ex_t).sum())
    print(f"REST snapshot rows: {snap_o} (capture {snap_t})")
    if snap_o == 0:
        failures.append("no REST snapshot in the recording")

    lts = ours["local_ts"][(ours["ev"] & np.uint64(LOCAL_EVENT)) != 0]
    if np.any(np.diff(lts) < 0):
        failures.append("converted local_ts goes backwards in the local ordering")

    if failures:
        for f in failures:
            print("FAIL:", f)
        sys.exit(1)
    print(f"PASS: hftbacktest reads the recording: {len(ex_o)} events equal to the capture's")


if __name__ == "__main__":
    main()
