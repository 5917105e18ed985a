#!/usr/bin/env bash
# modelgate — builds every tests/fuzz/fuzz_<name>.c with libFuzzer + ASan/UBSan
# and runs each for FUZZ_SECONDS (default 60) over a scratch copy of its seed
# corpus tests/fuzz/corpus/<name>/ (the committed seeds are never modified).
# New crashes land in build/fuzz/<name>/artifacts/; copy the reproducer into
# the seed corpus once fixed. FUZZ_TARGETS="http ..." limits the targets.
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
CC_FUZZ=${CC_FUZZ:-clang}
OUT=build/fuzz
PKGS="openssl libcurl libcjson yaml-0.1 libpcre2-8 libhs libpq liboauth2"

command -v "$CC_FUZZ" >/dev/null || { echo "fuzz: $CC_FUZZ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }

lib_src=()
for f in gateway/*.c auth/*.c policy/*.c adapters/*.c usage/*.c; do
    [ -e "$f" ] && [ "$f" != gateway/main.c ] && lib_src+=("$f")
done

CFLAGS=(-std=gnu11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -Igateway -I.
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
# shellcheck disable=SC2207
pkg_flags=($(pkg-config --cflags --libs $PKGS))

targets=()
if [ -n "${FUZZ_TARGETS:-}" ]; then
    for t in $FUZZ_TARGETS; do targets+=("tests/fuzz/fuzz_$t.c"); done
else
    targets=(tests/fuzz/fuzz_*.c)
fi

status=0
for src in "${targets[@]}"; do
    name=$(basename "$src" .c); name=${name#fuzz_}
    dir=$OUT/$name
    mkdir -p "$dir/artifacts"
    echo "fuzz: building $name" >&2
    "$CC_FUZZ" "${CFLAGS[@]}" -o "$dir/fuzz_$name" "$src" "${lib_src[@]}" "${pkg_flags[@]}" -lpthread -lm

    # Work on a copy: libFuzzer adds what it finds to its first corpus dir.
    rm -rf "$dir/corpus"
    mkdir -p "$dir/corpus"
    if [ -d "tests/fuzz/corpus/$name" ]; then
        cp -r "tests/fuzz/corpus/$name/." "$dir/corpus/"
    fi
    dict=()
    [ -f "tests/fuzz/fuzz_$name.dict" ] && dict=(-dict="tests/fuzz/fuzz_$name.dict")

    echo "fuzz: running $name for ${SECONDS_PER_TARGET}s" >&2
    if ! "$dir/fuzz_$name" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 \
            -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$dir/artifacts/" "$dir/corpus" 2>"$dir/log"; then
        echo "fuzz: $name FAILED, see $dir/log and $dir/artifacts/" >&2
        tail -40 "$dir/log" >&2
        status=1
    else
        grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$dir/log" | sed "s/^/fuzz: $name /" >&2 || true
    fi
done
exit $status
