#!/usr/bin/env bash
# Latency (frame read → subscriber write, the relay's own HDR histogram, from its shutdown summary)
# per consumer idle strategy: Binance trade + bookTicker replayed by the embedded exchange at
# speed 10 and 100 (~870 and ~8.7k events/s), one subscriber reading raw bytes, 12 s per run.
# Usage: benches/idle_latency.sh [seconds-per-run]   (run `cargo build --release` first)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-12}"
bin=target/release/mdrelay
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sock="$dir/relay.sock"
printf '%-6s %-10s %10s %10s %10s %10s\n' speed idle events p50_us p99_us max_us
for speed in 10 100; do
  for idle in busy_spin yield backoff park; do
    "$bin" run --set "relay.socket_path=\"$sock\"" --set http.enabled=false \
      --set "replay.speed=$speed" --set "consumer.idle=\"$idle\"" \
      --set 'feeds.binance.channels=["trade","bookTicker"]' \
      --set feeds.coinbase.enabled=false --set feeds.kraken_v1.enabled=false --set feeds.binance_usdm.enabled=false \
      > "$dir/run.out" 2>&1 &
    relay=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
while s.recv(1 << 20): pass' "$sock" &
    sub=$!
    sleep "$secs"
    kill -INT "$relay"; wait "$relay" || true; wait "$sub" || true
    # summary row: feed frames control errors range events relayed dropped refused reconn p50 p99 max hwm
    awk -v s="$speed" -v i="$idle" '$1 == "binance" && NF == 14 { printf "%-6s %-10s %10s %10s %10s %10s\n", s, i, $6, $11, $12, $13 }' "$dir/run.out"
  done
done
