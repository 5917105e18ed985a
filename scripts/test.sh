#!/usr/bin/env bash
# Runs the whole test suite: unit tests, fuzz-corpus replay, mock-upstream
# self-test, integration tests (real binary, real TLS, mock upstream) — first
# with the release build, then everything again built with ASan+UBSan.
# Ends with one line "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

JOBS=$(nproc 2>/dev/null || echo 2)
passed=0
failed=0
failures=()

count() {   # sums "N passed, N failed" lines of a step's output
    local out="$1" name="$2" rc="$3"
    local p f
    p=$(grep -Eo '[0-9]+ passed' <<<"$out" | awk '{s+=$1} END {print s+0}')
    f=$(grep -Eo '[0-9]+ failed' <<<"$out" | awk '{s+=$1} END {print s+0}')
    # node --test prints "# pass N" / "# fail N"
    p=$((p + $(grep -Eo '^# pass [0-9]+' <<<"$out" | awk '{s+=$3} END {print s+0}')))
    f=$((f + $(grep -Eo '^# fail [0-9]+' <<<"$out" | awk '{s+=$3} END {print s+0}')))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p))
    failed=$((failed + f))
    [ "$rc" -ne 0 ] && failures+=("$name")
    echo "== $name: $p passed, $f failed (exit $rc)"
}

run_suite() {   # $1 = build dir, $2 = extra CFLAGS, $3 = label
    local B="$1" extra="$2" label="$3" out rc
    echo "== building ($label)"
    if ! make -j"$JOBS" B="$B" CFLAGS="-O1 -g" SAN="$extra" "$B/modelgate" \
            $(ls tests/unit/test_*.c 2>/dev/null | sed "s#tests/unit/\(.*\)\.c#$B/unit/\1#") \
            $(ls tests/fuzz/fuzz_*.c 2>/dev/null | sed "s#tests/fuzz/fuzz_\(.*\)\.c#$B/fuzz-replay-\1#") >"$B.build.log" 2>&1; then
        cat "$B.build.log"
        count "" "build ($label)" 1
        return
    fi
    for t in "$B"/unit/test_*; do
        [ -x "$t" ] || continue
        out=$(MG_BIN="$PWD/$B/modelgate" "$t" 2>&1); rc=$?
        echo "$out" | tail -n 20
        count "$out" "unit $(basename "$t") ($label)" $rc
    done
    for r in "$B"/fuzz-replay-*; do
        [ -x "$r" ] || continue
        name=${r##*/fuzz-replay-}
        out=$("$r" "tests/fuzz/corpus/$name" 2>&1); rc=$?
        echo "$out" | tail -n 5
        count "$out" "fuzz replay $name ($label)" $rc
    done
    out=$(MG_BIN="$PWD/$B/modelgate" node --test --test-concurrency=1 --test-timeout=600000 tests/integration/ 2>&1); rc=$?
    echo "$out" | grep -vE '^# (Subtest|tests|suites|cancelled|skipped|todo|duration_ms)' | grep -E '^(not ok|ok|#)|ERROR|runtime error' | tail -n 200
    # For failures, the failing subtests with their messages.
    echo "$out" | grep -E '^\s+not ok|^\s+(error|expected|actual|message):|^\s+location:' | head -n 80
    count "$(grep -E '^# (pass|fail) ' <<<"$out")" "integration ($label)" $rc
}

mkdir -p build
# npm packages of the test identity provider and the browser driver (lock file committed).
sh tests/idp/ensure.sh
if [ -f tests/mock/selftest.sh ]; then
    out=$(bash tests/mock/selftest.sh 2>&1); rc=$?
    echo "$out" | tail -n 5
    count "$out" "mock upstream self-test" $rc
fi

if [ "${MG_SANITIZE:-0}" != 1 ]; then
    run_suite build/release "" "release"
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_suite build/asan "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" "asan+ubsan"

echo
[ ${#failures[@]} -gt 0 ] && printf 'failed step: %s\n' "${failures[@]}"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
