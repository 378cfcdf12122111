#!/bin/sh
# Interop checks against other tools (`make interop`). Needs target/interop-venv with
# hftbacktest==2.4.4 (python3 -m venv target/interop-venv &&
# target/interop-venv/bin/pip install hftbacktest==2.4.4) and a built target/debug/mdrelay.
set -eu
cd "$(dirname "$0")/../.."
PY=target/interop-venv/bin/python
# (ii) mdrelay export .npz through hftbacktest's backtester.
"$PY" tests/interop/hft_export.py --mdrelay "${MDRELAY:-target/debug/mdrelay}"
