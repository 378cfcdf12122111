#!/bin/sh
# `make bench-instr`: instructions per message per stage, counted by valgrind's callgrind as
# (instructions for N messages - instructions for 1 message) / (N - 1), so process start, file
# loading and set-up cancel out (docs/BENCHMARKS.md, "Instructions per message").
#
# usage: benches/bench_instr.sh <mdrelay binary> <instr bench binary>
# env:   N (default 20000) messages; MDRELAY_INSTR_INPUT a Binance recording (default the bundled
#        spot capture); its first N trade + bookTicker lines are the input of every stage.
set -eu
MDRELAY=$1
INSTR=$2
N=${N:-20000}
INPUT=${MDRELAY_INSTR_INPUT:-data/binance/spot_ethusdt_20240808.txt.gz}
export MDRELAY_INSTR_INPUT="$INPUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

# The decode input: the first N trade + bookTicker lines, and the first one alone.
gzip -dcf "$INPUT" | grep -E '"stream":"[^"]*@(trade|bookTicker)"' | head -n "$N" > "$WORK/n.txt"
head -n 1 "$WORK/n.txt" > "$WORK/1.txt"
got=$(wc -l < "$WORK/n.txt")
[ "$got" -eq "$N" ] || { echo "$INPUT has only $got trade + bookTicker lines (N=$N)" >&2; exit 1; }

# Instructions callgrind collected over the whole run (every thread).
ir() {
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$@" 2>"$WORK/cg.err" >"$WORK/out" \
    || { cat "$WORK/cg.err" >&2; exit 1; }
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$WORK/cg.err" | tail -n 1
}
per() { echo "$1 $2" | awk -v n="$N" '{ printf "%.0f", ($1 - $2) / (n - 1) }'; }

echo "input: $INPUT, first $N trade + bookTicker lines; instructions per message (N - 1 method)"
hi=$(ir "$MDRELAY" decode --venue binance --summary "$WORK/n.txt")
summary=$(cat "$WORK/out")
lo=$(ir "$MDRELAY" decode --venue binance --summary "$WORK/1.txt")
decode=$(per "$hi" "$lo")
echo "  decode --summary: $summary"
printf '| %-44s | %8s |\n' "stage" "instr/msg"
printf '|%s|%s|\n' "----------------------------------------------" "----------"
printf '| %-44s | %8s |\n' "mdrelay decode --venue binance --summary" "$decode"
for stage in parse parse-general parse-serde parse-sonic encode hop fanout; do
  hi=$(ir "$INSTR" "$stage" "$N")
  lo=$(ir "$INSTR" "$stage" 1)
  v=$(per "$hi" "$lo")
  eval "s_$(echo "$stage" | tr '-' '_')=$v"
  printf '| %-44s | %8s |\n' "$stage (cumulative)" "$v"
done
printf '| %-44s | %8s |\n' "= encode (encode - parse)" "$((s_encode - s_parse))"
printf '| %-44s | %8s |\n' "= publisher + queue hop (hop - parse)" "$((s_hop - s_parse))"
printf '| %-44s | %8s |\n' "= consumer fan-out, 1 subscriber (fanout - hop)" "$((s_fanout - s_hop))"
