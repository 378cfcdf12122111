#!/usr/bin/env bash
# `make interop`: other tools read what mdrelay writes, unchanged. Sets up target/interop-venv
# (Python venv with the pinned packages below, from PyPI), builds mdrelay (debug; MDRELAY_BIN
# picks another binary, e.g. target/release/mdrelay), then runs each check below in order and
# stops at the first failure. One check = one `step` line; its script prints PASS/FAIL itself.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=target/interop-venv
PY="$VENV/bin/python"
# Pinned: the checks read these versions' converters.
PACKAGES=(hftbacktest==2.4.4)

installed() { # every pinned package at its pinned version
  "$PY" - "${PACKAGES[@]}" <<'PYEOF' 2>/dev/null
import importlib.metadata as m, sys
sys.exit(any(m.version(p.split("==")[0]) != p.split("==")[1] for p in sys.argv[1:]))
PYEOF
}
if [ ! -x "$PY" ] || ! installed; then
  echo "interop: setting up $VENV (${PACKAGES[*]} from PyPI; about 1.5 minutes the first time)"
  python3 -m venv "$VENV"
  "$PY" -m pip install -q "${PACKAGES[@]}"
fi
export INTEROP_PY="$PY"

if [ -z "${MDRELAY_BIN:-}" ]; then
  ${CARGO:-cargo} build --locked --features nats --bin mdrelay
  export MDRELAY_BIN=target/debug/mdrelay
fi

step() {
  local name=$1 start=$SECONDS
  shift
  echo "== interop: $name"
  "$@"
  echo "== interop: $name passed in $((SECONDS - start)) s"
}

# (i) hftbacktest's Binance futures converter reads our raw recording (layout "hftbacktest")
#     of the bundled USD-M capture: events equal to its conversion of the capture.
step hft_recording tests/interop/hft_recording.sh

# (ii) hftbacktest's backtester reads `mdrelay export --format hftbacktest` of every bundled
#      capture: best bid/ask at checkpoints equal to mdrelay's book.
step hft_export "$PY" tests/interop/hft_export.py --mdrelay "$MDRELAY_BIN"

echo "interop: all checks passed"
