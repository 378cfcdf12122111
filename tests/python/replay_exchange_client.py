"""A third-party client of `mdrelay replay-exchange`, driven by tests/it/replay_exchange.rs.

Uses the `websockets` package (PyPI, not mdrelay code) and urllib for REST, the way a user's
own exchange client would. Takes one JSON argument, a list of sessions run concurrently, and
prints one JSON line per session, in the order given. Session kinds:

- "binance": subscribe to a depth stream, buffer diffs, fetch the REST depth snapshot, sync by
  Binance's rules (spot, or USD-M futures with "futures": true), keep applying diffs and check
  after each one that the book is not crossed; report the final book. A session may wait until
  other sessions have buffered before connecting ("start_after") and before fetching
  ("fetch_after"), so that sessions at different positions fetch while all are live.
- "close": subscribe, read some messages, send a Close with a code and time the close handshake.
- "collect": subscribe and read every message until the server closes.

Every session ends with a client Close (except "collect") and reports how long the server took
to answer it and with which code.
"""

import asyncio
import json
import sys
import time
import urllib.request
from decimal import Decimal

try:
    import websockets
    from websockets.asyncio.client import connect
except ImportError:  # pragma: no cover - reported to the Rust harness
    print("websockets is not installed: run `make pyenv`", file=sys.stderr)
    sys.exit(3)

CLOSE_TIMEOUT_S = 5.0


def norm(x):
    """A decimal string in a canonical form ("2683.80000000" and "2683.8" are equal)."""
    d = Decimal(x).normalize()
    return "{:f}".format(d)


class Book:
    def __init__(self):
        self.bids = {}
        self.asks = {}

    def set_levels(self, side, levels):
        for price, size in levels:
            p = Decimal(price)
            if Decimal(size) == 0:
                side.pop(p, None)
            else:
                side[p] = Decimal(size)

    def crossed(self):
        return bool(self.bids) and bool(self.asks) and max(self.bids) >= min(self.asks)

    def dump(self):
        return {
            "bids": [[norm(p), norm(s)] for p, s in sorted(self.bids.items(), reverse=True)],
            "asks": [[norm(p), norm(s)] for p, s in sorted(self.asks.items())],
        }


async def close_timed(ws, code, out):
    """Sends a Close with `code`; records how long until the server's Close and the TCP close."""
    t = time.monotonic()
    await ws.close(code=code, reason="client done")
    out["close_ms"] = (time.monotonic() - t) * 1000.0
    out["close_code"] = ws.close_code
    out["close_reason"] = ws.close_reason


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


async def binance(s, events):
    out = {"name": s["name"]}
    futures = s.get("futures", False)
    # A later session: connect once the named sessions have buffered.
    for n in s.get("start_after", []):
        await events[n].wait()
    # No flow control: the client reads (and buffers) everything, also while it closes.
    async with connect(s["url"], close_timeout=CLOSE_TIMEOUT_S, max_size=None,
                       max_queue=None) as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [s["stream"]], "id": 1}))
        buffered = []

        async def next_diff():
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("stream") == s["stream"]:
                    return msg["data"]

        while len(buffered) < s["buffer_diffs"]:
            buffered.append(await next_diff())
        events[s["name"]].set()
        # Keep reading (buffering) while waiting for the others: a real client never stops.
        waits = [events[n].wait() for n in s.get("fetch_after", [])]
        gate = asyncio.ensure_future(asyncio.gather(*waits))
        while not gate.done():
            try:
                buffered.append(await asyncio.wait_for(next_diff(), timeout=0.05))
            except asyncio.TimeoutError:
                pass
        fetch_task = asyncio.ensure_future(asyncio.to_thread(fetch, s["rest"]))
        while not fetch_task.done():
            try:
                buffered.append(await asyncio.wait_for(next_diff(), timeout=0.02))
            except asyncio.TimeoutError:
                pass
        snap = fetch_task.result()
        last_id = snap["lastUpdateId"]
        out["snapshot_id"] = last_id
        out["first_buffered_U"] = buffered[0]["U"]
        out["position_at_fetch_u"] = buffered[-1]["u"]
        if last_id < buffered[0]["U"] - (0 if futures else 1):
            out["error"] = "snapshot older than the first buffered diff"
            await close_timed(ws, 1000, out)
            return out
        book = Book()
        book.set_levels(book.bids, snap["bids"])
        book.set_levels(book.asks, snap["asks"])
        out["snapshot_crossed"] = book.crossed()
        synced = False
        prev_u = None
        applied = 0
        crossed = 0
        pending = list(buffered)
        while applied < s["after_diffs"]:
            d = pending.pop(0) if pending else await next_diff()
            if not synced:
                if futures:
                    if d["u"] < last_id:
                        continue
                    if not (d["U"] <= last_id <= d["u"]):
                        out["error"] = "no bridging diff (futures rule): U=%d u=%d id=%d" % (
                            d["U"], d["u"], last_id)
                        break
                else:
                    if d["u"] <= last_id:
                        continue
                    if not (d["U"] <= last_id + 1 <= d["u"]):
                        out["error"] = "no bridging diff (spot rule): U=%d u=%d id=%d" % (
                            d["U"], d["u"], last_id)
                        break
                synced = True
            elif futures and d["pu"] != prev_u:
                out["error"] = "pu %d != previous u %d" % (d["pu"], prev_u)
                break
            elif not futures and d["U"] != prev_u + 1:
                out["error"] = "U %d != previous u + 1 (%d)" % (d["U"], prev_u + 1)
                break
            book.set_levels(book.bids, d["b"])
            book.set_levels(book.asks, d["a"])
            prev_u = d["u"]
            applied += 1
            if book.crossed():
                crossed += 1
        out["applied"] = applied
        out["crossed_after_diffs"] = crossed
        out["final_u"] = prev_u
        out.update(book.dump())
        await close_timed(ws, s.get("close_code", 1000), out)
    return out


async def close_session(s, events):
    out = {"name": s["name"]}
    # By default no flow control (max_queue=None): the client keeps reading while it closes, so
    # the server's Close is not stuck behind data the client would not read. With "max_queue"
    # the client stops reading once that many messages wait, and "idle_s" lets it sit there.
    max_queue = s.get("max_queue")
    async with connect(s["url"], close_timeout=CLOSE_TIMEOUT_S, max_size=None,
                       max_queue=max_queue) as ws:
        await ws.send(json.dumps(s["subscribe"]))
        for _ in range(s["messages"]):
            await ws.recv()
        await asyncio.sleep(s.get("idle_s", 0))
        await close_timed(ws, s["close_code"], out)
    return out


async def collect(s, events):
    out = {"name": s["name"], "count": 0, "first": None, "last": None}
    async with connect(s["url"], close_timeout=CLOSE_TIMEOUT_S, max_size=None,
                       max_queue=None) as ws:
        await ws.send(json.dumps(s["subscribe"]))
        try:
            async for msg in ws:
                if s.get("skip_prefix") and msg.startswith(s["skip_prefix"]):
                    continue
                if out["first"] is None:
                    out["first"] = msg
                out["last"] = msg
                out["count"] += 1
        except websockets.ConnectionClosed:
            pass
        out["close_code"] = ws.close_code
    return out


KINDS = {"binance": binance, "close": close_session, "collect": collect}


async def run_one(s, events):
    try:
        return await asyncio.wait_for(KINDS[s["kind"]](s, events), timeout=s.get("timeout_s", 60))
    except (Exception, asyncio.TimeoutError) as e:  # reported, the harness fails the test
        events[s["name"]].set()
        return {"name": s["name"], "error": "%s: %s" % (type(e).__name__, e)}


async def main(sessions):
    events = {s["name"]: asyncio.Event() for s in sessions}
    results = await asyncio.gather(*[run_one(s, events) for s in sessions])
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
