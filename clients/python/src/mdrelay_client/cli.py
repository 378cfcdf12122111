"""The command line: ``mdrelay-client`` and ``python -m mdrelay_client``.

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
import sys
from typing import Optional

from .client import RelayClient, default_socket_path
from .protocol import KIND_BITS, MARKET_DATA_TYPES, Heartbeat, ProtocolError
from .render import to_json, to_text
from .selftest import selftest

# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="mdrelay-client",
                                 description="mdrelay protocol v1 subscriber (Python)")
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
        print(f"mdrelay-client: cannot connect to {path}: {e}", file=sys.stderr)
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
        print(f"mdrelay-client: {error}", file=sys.stderr)
    if args.summary:
        summ = {"end": end, "error": error, "market_data_events": events,
                "first_types": first_types, **summ}
        out.write(json.dumps(summ, sort_keys=True) + "\n")
    out.flush()
    return status


def run() -> None:
    """Entry point of the ``mdrelay-client`` console script and of ``python -m mdrelay_client``."""
    try:
        sys.exit(main())
    except BrokenPipeError:
        # e.g. piped into `head`: stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)

