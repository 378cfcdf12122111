#!/bin/sh
# Coverage-guided fuzzing of mdrelay (cargo-fuzz, libFuzzer, nightly): `make fuzz`, `make fuzz-cmin`.
#
#   fuzz/run.sh run SECS TARGET...   runs each target for SECS seconds, one after the other (one
#                                    process each: the machine is shared), then prints per target
#                                    executions, executions/s, edges covered, features and crashes;
#                                    with FUZZ_RUNS=N in the environment a target also stops after
#                                    N executions (whichever comes first)
#   fuzz/run.sh cmin TARGET...       merges the committed corpus and the working corpus into a
#                                    small one and replaces fuzz/corpus/TARGET: libFuzzer's set-cover
#                                    merge over edges only (-use_counters=0), so the committed corpus
#                                    reaches every edge the fuzzer reached in far fewer inputs (hit
#                                    counts are not kept: the working corpus keeps those)
#
# Inputs the fuzzer finds go to the working corpus fuzz/target/corpus/TARGET (not committed; it
# carries progress from one run to the next); the committed fuzz/corpus/TARGET is read as seeds.
# Crashes land in fuzz/artifacts/TARGET/. Logs: fuzz/target/logs/TARGET.log.
# Built with debug assertions and overflow checks, without a sanitizer (mdrelay forbids `unsafe`):
# libFuzzer reports panics, timeouts (-timeout) and memory growth (-rss_limit_mb, -malloc_limit_mb).
set -u
cd "$(dirname "$0")" || exit 2
FUZZ="cargo +nightly fuzz"
SANITIZER="${FUZZ_SANITIZER:-none}"

# Longest input per target, bytes: room for a few messages or frames, small enough to stay fast.
max_len() {
    case "$1" in
        subscription) echo 2048 ;;
        frame_decoder) echo 4096 ;;
        http_request) echo 9000 ;;
        config_loader) echo 16384 ;;
        *) echo 8192 ;;
    esac
}

opts() {
    echo "-max_len=$(max_len "$1") -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256"
}

# libFuzzer's -runs=N when FUZZ_RUNS is set (-1, its default, runs until the time is up).
runs() {
    echo "-runs=${FUZZ_RUNS:--1}"
}

# The last value of `key: N` on libFuzzer's status lines (`#N DONE cov: 1234 ft: 5678 …`).
last_stat() {
    grep -E "^#[0-9]+" "$2" | sed -n "s/.* $1: \([0-9]*\).*/\1/p" | tail -1
}

# A final statistic (`stat::number_of_executed_units: N`, printed by -print_final_stats=1).
final_stat() {
    sed -n "s/^stat::$1: *\([0-9]*\).*/\1/p" "$2" | tail -1
}

findings() {
    ls "artifacts/$1" 2>/dev/null | grep -cE '^(crash|oom|timeout|leak|slow-unit)-'
}

run() {
    secs="$1"
    shift
    mkdir -p target/logs
    $FUZZ build -s "$SANITIZER" || exit 2
    rows=""
    failed=0
    for t in "$@"; do
        mkdir -p "target/corpus/$t" "artifacts/$t" "corpus/$t"
        before=$(findings "$t")
        log="target/logs/$t.log"
        echo "fuzz: $t for ${secs}s (log: fuzz/$log)"
        # shellcheck disable=SC2046
        $FUZZ run -s "$SANITIZER" "$t" "target/corpus/$t" "corpus/$t" -- \
            -max_total_time="$secs" $(runs) -print_final_stats=1 $(opts "$t") >"$log" 2>&1
        status=$?
        execs=$(final_stat number_of_executed_units "$log")
        rate=$(final_stat average_exec_per_sec "$log")
        cov=$(last_stat cov "$log")
        ft=$(last_stat ft "$log")
        crashes=$(($(findings "$t") - before))
        if [ "$status" -ne 0 ]; then
            failed=1
            [ "$crashes" -gt 0 ] || crashes="exit $status"
            grep -E "panicked at|ERROR: libFuzzer|Test unit written" "$log" | head -5
        fi
        rows="$rows$(printf '%-16s %12s %10s %8s %8s %8s' "$t" "${execs:-?}" "${rate:-?}" \
            "${cov:-?}" "${ft:-?}" "$crashes")
"
    done
    echo
    printf '%-16s %12s %10s %8s %8s %8s\n' target executions execs/s edges features crashes
    printf '%s' "$rows"
    echo "(edges: libFuzzer 'cov', coverage points reached; features: 'ft'; crashes in fuzz/artifacts/)"
    return $failed
}

cmin() {
    $FUZZ build -s "$SANITIZER" || exit 2
    for t in "$@"; do
        mkdir -p "target/corpus/$t" "corpus/$t"
        new="target/cmin/$t"
        rm -rf "$new"
        mkdir -p "$new"
        # shellcheck disable=SC2046
        $FUZZ run -s "$SANITIZER" "$t" "$new" "corpus/$t" "target/corpus/$t" -- \
            -set_cover_merge=1 -use_counters=0 $(opts "$t") >"target/logs/$t.cmin.log" 2>&1 || {
            echo "fuzz-cmin: $t failed (fuzz/target/logs/$t.cmin.log)"
            exit 1
        }
        rm -rf "corpus/$t"
        mv "$new" "corpus/$t"
        echo "fuzz-cmin: $t: $(ls "corpus/$t" | wc -l) inputs, $(du -sk "corpus/$t" | cut -f1) KiB"
    done
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    run) run "$@" ;;
    cmin) cmin "$@" ;;
    *)
        echo "usage: fuzz/run.sh run SECS TARGET... | cmin TARGET..." >&2
        exit 2
        ;;
esac
