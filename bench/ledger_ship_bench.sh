#!/usr/bin/env bash
# modelgate — ledger shipper throughput: a throwaway PostgreSQL with the
# production durability settings (fsync on, synchronous_commit on), `migrate`,
# then N journal records written with no database configured (so they only
# pile up in the journal), then one shipper run timed from start until the
# journal is drained: records/s = N / wall time. The same records are then
# shipped a second time into a fresh journal copy to time a full replay (every
# row a duplicate), and a start+final mix (what the gateway writes: one start
# record per forwarded request, superseded by its final) is timed too.
#   bench/ledger_ship_bench.sh [N]          (default 200000)
# With MG_SHIP_CALLGRIND=1 it instead counts the shipper's instructions per
# shipped record under callgrind (all threads of the driver's process; the
# PostgreSQL server is not counted): N start+final records shipped, minus a
# run with an empty journal (connect, settle wait), divided by N; with
# MG_SHIP_BEFORE=REV also for a driver built from REV's usage/ files.
# Prints one line per run; results go to bench/RESULTS.md "Ledger shipper
# throughput".
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
dir=$(mktemp -d /tmp/mgship-XXXXXX)
DRIVER=$dir/ledger_driver
tests/usage/build.sh "$DRIVER" >/dev/null
asuser() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
cleanup() { asuser "$PGBIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
asuser "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C >/dev/null
asuser "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w start \
    -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_wal_size=4GB" >/dev/null
command psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c 'CREATE DATABASE mg'
DB="postgresql://postgres@127.0.0.1:$port/mg"
LEDGER_DB=$DB "$DRIVER" migrate >/dev/null

if [ -n "${MG_SHIP_CALLGRIND:-}" ]; then
    cg_ir() {   # driver, journal dir -> total instructions of one `ship`
        LEDGER_DB=$DB LEDGER_JOURNAL=$2 valgrind --tool=callgrind --callgrind-out-file="$dir/cg" \
            "$1" ship --wait-ms 900000 >/dev/null 2>"$dir/cg.err"
        callgrind_annotate "$dir/cg" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
    }
    cg_run() {   # label, driver
        local j=$dir/cg-$RANDOM e=$dir/cg-empty-$RANDOM
        mkdir -p "$j" "$e"
        LEDGER_DB= LEDGER_JOURNAL=$j "$2" write "$N" --workers 2 --wait-ms 1 --prefix "cg$RANDOM" --starts >/dev/null || true
        local full empty
        full=$(cg_ir "$2" "$j")
        empty=$(cg_ir "$2" "$e")
        printf '%-10s shipper: %d instructions per shipped record (%d records; %d with them, %d with an empty journal)\n' "$1" $(( (full - empty) / N )) "$N" "$full" "$empty"
        rm -rf "$j" "$e"
    }
    if [ -n "${MG_SHIP_BEFORE:-}" ]; then
        mkdir -p "$dir/old/usage" "$dir/old/tests/usage"
        for f in $(git ls-tree --name-only "$MG_SHIP_BEFORE" usage/); do git show "$MG_SHIP_BEFORE:$f" >"$dir/old/$f"; done
        git show "$MG_SHIP_BEFORE:tests/usage/ledger_driver.c" >"$dir/old/tests/usage/ledger_driver.c"
        # shellcheck disable=SC2046
        cc -std=gnu11 -O1 -g -D_GNU_SOURCE -I"$dir/old" -Igateway -I. $(pkg-config --cflags libpq libcjson) \
           -o "$dir/driver_before" "$dir/old/tests/usage/ledger_driver.c" "$dir"/old/usage/*.c gateway/core.c \
           gateway/log.c $(pkg-config --libs libpq libcjson) -lpthread -lm
        cg_run "$MG_SHIP_BEFORE" "$dir/driver_before"
    fi
    cg_run tree "$DRIVER"
    exit 0
fi

run() {   # label, write args...
    local label=$1; shift
    local j=$dir/j-$RANDOM
    mkdir -p "$j"
    LEDGER_DB= LEDGER_JOURNAL=$j "$DRIVER" write "$N" --workers 2 --wait-ms 1 "$@" >/dev/null || true
    cp -a "$j" "$j.copy"
    local s e ms
    s=$(date +%s%N)
    LEDGER_DB=$DB LEDGER_JOURNAL=$j "$DRIVER" ship --wait-ms 900000 >"$dir/out"
    e=$(date +%s%N)
    ms=$(( (e - s) / 1000000 ))
    printf '%-46s %7d ms  %7d records/s  %s\n' "$label" "$ms" $(( N * 1000 / ms )) "$(cat "$dir/out")"
    # replay: the same journal again (checkpoint gone): every record a duplicate
    rm -f "$j.copy/checkpoint"
    s=$(date +%s%N)
    LEDGER_DB=$DB LEDGER_JOURNAL=$j.copy "$DRIVER" ship --wait-ms 900000 >"$dir/out"
    e=$(date +%s%N)
    ms=$(( (e - s) / 1000000 ))
    printf '%-46s %7d ms  %7d records/s  %s\n' "  replay of the same journal" "$ms" $(( N * 1000 / ms )) "$(cat "$dir/out")"
    rm -rf "$j" "$j.copy"
}
run "finals only ($N records)" --prefix fin
run "start+final pairs ($N records)" --prefix pair --starts
command psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d mg -At -c \
  "SELECT 'rollup == events: ' || ((SELECT sum(requests) || '/' || sum(prompt_tokens) || '/' || sum(cost_usd) FROM usage_rollup_daily)
          = (SELECT count(*) || '/' || sum(prompt_tokens) || '/' || sum(cost_usd) FROM usage_events))"
