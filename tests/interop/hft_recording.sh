#!/usr/bin/env bash
# Interop check (i): the relay records the bundled Binance USD-M capture, served by the replay
# exchange, in the `hftbacktest` layout; hftbacktest's own converter then reads our per-symbol
# file and the capture, and hft_recording.py compares the events. Run by tests/interop/run.sh
# (needs INTEROP_PY and MDRELAY_BIN). INTEROP_SPEED (default 4) paces the replay: the capture
# spans 345 s, so about 90 s at 4x. Faster risks the collector's REST snapshot being taken after
# the replay passed the capture's own snapshot (306 ms of capture time after the first line):
# then the snapshot rows differ from the capture's and the check fails saying so.
set -euo pipefail
CAPTURE=data/binance_usdm/ethusdt_20240808.txt.gz
SPEED=${INTEROP_SPEED:-4}
TIMEOUT_S=${INTEROP_TIMEOUT_S:-900}

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/relay.toml" <<TOML
[relay]
socket_path = "$work/relay.sock"
[http]
listen = "127.0.0.1:0"
[writer]
enabled = false
[recording]
dir = "$work/raw"
layout = "hftbacktest"
[replay]
speed = $SPEED
loop = false
[replay.sources]
binance_usdm = "$CAPTURE"
[feeds.binance_usdm]
venue = "binance_usdm"
url = "ws://{replay}/binance_usdm/stream"
rest_url = "http://{replay}/binance_usdm"
symbols = ["ETHUSDT"]
channels = ["trade", "bookTicker", "depth@0ms"]
record = true
# The replay stays idle at its end (loop = false): no stale reconnect, which would replay it again.
stale_after_ms = 86400000
TOML

# Stream messages the collector must receive (the capture's other line is its REST snapshot).
expected=$(zcat "$CAPTURE" | grep -c '^[0-9]* {"stream"')
start_ns=$(date +%s%N)
"$MDRELAY_BIN" run --config "$work/relay.toml" >"$work/relay.log" 2>&1 &
pid=$!
addr=
for _ in $(seq 600); do
  addr=$(sed -n 's/.*http listening addr=\([0-9.:]*\).*/\1/p' "$work/relay.log" | head -1)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/relay.log"; echo "FAIL: relay exited at start"; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/relay.log"; echo "FAIL: relay did not start"; exit 1; }
echo "relay pid $pid, metrics http://$addr/metrics; replaying $expected stream messages at ${SPEED}x"

metric() { # sum of a feed counter
  curl -sf "http://$addr/metrics" | awk -v m="$1" '$1 ~ "^"m"[{ ]" || $1 == m {s += $2} END {print s + 0}'
}
deadline=$((SECONDS + TIMEOUT_S))
while :; do
  data=$(( $(metric mdrelay_feed_frames_total) - $(metric mdrelay_feed_control_messages_total) ))
  [ "$data" -ge "$expected" ] && break
  [ $SECONDS -lt $deadline ] || { tail -20 "$work/relay.log"; echo "FAIL: $data of $expected messages after ${TIMEOUT_S} s"; exit 1; }
  kill -0 "$pid" 2>/dev/null || { tail -20 "$work/relay.log"; echo "FAIL: relay exited"; exit 1; }
  sleep 1
done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
end_ns=$(date +%s%N)
[ "$rc" -eq 0 ] || { tail -20 "$work/relay.log"; echo "FAIL: relay exited with $rc after SIGTERM"; exit 1; }
grep -E "raw recorded|skipped" "$work/relay.log" || true

feed_dir="$work/raw/binance_usdm/binance_usdm"
files=$(ls "$feed_dir")
echo "recording files: $files"
if [ "$(echo "$files" | wc -l)" -ne 1 ] || ! echo "$files" | grep -qE '^ethusdt_[0-9]{8}\.gz$'; then
  echo "FAIL: expected one file ethusdt_<YYYYMMDD>.gz (a run across midnight UTC makes two: run again)"
  exit 1
fi
"$INTEROP_PY" tests/interop/hft_recording.py "$feed_dir/$files" "$CAPTURE" "$start_ns" "$end_ns"
