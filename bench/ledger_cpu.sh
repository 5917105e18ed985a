#!/usr/bin/env bash
# modelgate — instructions per ledger record (callgrind; independent of
# machine load): the journal encoder (request path) and the shipper's
# per-record work (record decode with its CRC + the COPY line), for the
# working tree and, with --before REV, for the usage/ files of REV too.
#   bench/ledger_cpu.sh [--before REV] [N]      (default N 100000)
# Results: bench/RESULTS.md "Ledger shipper throughput".
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
cd "$(dirname "$0")/.."
rev=
if [ "${1:-}" = --before ]; then rev=$2; shift 2; fi
N=${1:-100000}
dir=$(mktemp -d /tmp/mgcpu-XXXXXX)
trap 'rm -rf "$dir"' EXIT
CFL=(-std=gnu11 -O2 -g -Wall -Wextra -Wshadow -Wno-unused-parameter -D_GNU_SOURCE -Igateway -I.)
build() {   # out, usage-dir
    # shellcheck disable=SC2046
    cc -I"$2/.." "${CFL[@]}" $(pkg-config --cflags libpq libcjson) -o "$1" tests/usage/ledger_cpu.c \
       "$2"/*.c gateway/core.c gateway/log.c $(pkg-config --libs libpq libcjson) -lpthread -lm
}
count() {   # binary, mode, functions...
    local bin=$1 mode=$2; shift 2
    local t=()
    for f in "$@"; do t+=("--toggle-collect=$f"); done
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg" "${t[@]}" "$bin" "$mode" "$N" >/dev/null 2>"$dir/err"
    local ir
    ir=$(callgrind_annotate "$dir/cg" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo $(( ir / N ))
}
report() {   # label, binary
    printf '%-10s encode %6d instr/record   ship (decode+COPY line) %6d instr/record\n' "$1" \
        "$(count "$2" encode mg_usage_encode)" "$(count "$2" copy mg_usage_decode mg_usage_copy_line)"
}
if [ -n "$rev" ]; then
    mkdir -p "$dir/old/usage"
    for f in $(git ls-tree --name-only "$rev" usage/); do git show "$rev:$f" >"$dir/old/$f"; done
    # the old COPY-line builder was static: export it under the new name
    sed -i -e 's/\bcopy_line(/mg_usage_copy_line(/g' -e 's/^static bool mg_usage_copy_line(/bool mg_usage_copy_line(/' \
        "$dir/old/usage/shipper.c"
    grep -q mg_usage_copy_line "$dir/old/usage/usage_int.h" ||
        echo 'bool mg_usage_copy_line(mg_buf *b, size_t seq, const char *raw, size_t len);' >>"$dir/old/usage/usage_int.h"
    build "$dir/before" "$dir/old/usage"
    report "$rev" "$dir/before"
fi
build "$dir/after" usage
report "tree" "$dir/after"
