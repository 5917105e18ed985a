#!/usr/bin/env bash
# modelgate — ledger report benchmark: a throwaway PostgreSQL, `migrate`,
# 10 million rows for one month (bench/ledger_gen.sql), then times the
# month's per-user report (and a few others) through the real report code
# (tests/usage/ledger_driver usage ...). Target: per-user month < 2 s.
# Month reports read the daily rollup (migration 0002); the script checks one
# against a scan of the events and times shipping with the rollup kept.
#   bench/ledger_bench.sh [ROWS]        (default 10000000)
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-10000000}
MONTH=2025-01
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
dir=$(mktemp -d /tmp/mgbench-pg-XXXXXX)
# Its own driver and scratch files: the test suites rebuild
# build/usage/ledger_driver, and a rebuild in the middle of a run would mix
# two versions of the report code.
DRIVER=$dir/ledger_driver
tests/usage/build.sh "$DRIVER" >/dev/null
OUT=$dir/out
asuser() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
cleanup() { asuser "$PGBIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
asuser "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C --no-sync >/dev/null
asuser "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w start \
    -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c shared_buffers=512MB -c work_mem=64MB -c max_wal_size=8GB -c fsync=off -c full_page_writes=off -c max_parallel_workers_per_gather=2" >/dev/null
psql() { command psql -X -q -h 127.0.0.1 -p "$port" -U postgres "$@"; }
psql -d postgres -c 'CREATE DATABASE mg'
export LEDGER_DB="postgresql://postgres@127.0.0.1:$port/mg"
"$DRIVER" migrate >/dev/null

echo "generating $ROWS rows for $MONTH ..."
t0=$(date +%s.%N)
psql -d mg -v rows="$ROWS" -v month="$MONTH" -f bench/ledger_gen.sql >/dev/null
t1=$(date +%s.%N)
printf 'generate + index + analyze: %.1f s\n' "$(echo "$t1 - $t0" | bc)"
psql -d mg -At -c "SELECT 'table size: ' || pg_size_pretty(pg_total_relation_size('usage_events_${MONTH/-/_}'))"

timeit() {   # label, args...: best of 3 wall-clock runs of the report
    local label=$1; shift
    local best=999999 t s e
    for _ in 1 2 3; do
        s=$(date +%s%N)
        "$DRIVER" usage "$@" >"$OUT"
        e=$(date +%s%N)
        t=$(( (e - s) / 1000000 ))
        [ "$t" -lt "$best" ] && best=$t
    done
    printf '%-44s %6d ms  (%d lines)\n' "$label" "$best" "$(wc -l <"$OUT")"
}
timeit "month by user (csv)" --from 2025-01-01 --to 2025-01-31 --group-by user --format csv
timeit "month by model,day (csv)" --from 2025-01-01 --to 2025-01-31 --group-by model,day --format csv
timeit "month by cost_center (table)" --from 2025-01-01 --to 2025-01-31 --group-by cost_center
timeit "one day by user (csv)" --from 2025-01-15 --to 2025-01-15 --group-by user --format csv
timeit "month, one user, by day (filter)" --from 2025-01-01 --to 2025-01-31 --group-by day --filter user=user7@example.com --format csv
timeit "month by model, status=429 (event scan)" --from 2025-01-01 --to 2025-01-31 --group-by model --filter status=429 --format csv

# The rollup must answer exactly what a scan of the events answers.
"$DRIVER" usage --from 2025-01-01 --to 2025-01-31 --group-by user,role,model --format csv >"$OUT.roll"
s=$(date +%s%N)
MODELGATE_USAGE_NO_ROLLUP=1 "$DRIVER" usage --from 2025-01-01 --to 2025-01-31 --group-by user,role,model --format csv >"$OUT.scan"
e=$(date +%s%N)
if cmp -s "$OUT.roll" "$OUT.scan"; then
    printf 'rollup == event scan for user,role,model (%d lines; the scan took %d ms)\n' \
        "$(wc -l <"$OUT.roll")" $(( (e - s) / 1000000 ))
else
    echo "MISMATCH: rollup and event scan differ for user,role,model:" >&2
    diff "$OUT.roll" "$OUT.scan" | head -20 >&2
    exit 1
fi
rm -f "$OUT.roll" "$OUT.scan"

# Shipping cost with the rollup maintained in the same transaction, on top
# of the 10M-row ledger: journal -> PostgreSQL for 200,000 records.
jdir=$(mktemp -d /tmp/mgbench-journal-XXXXXX)
s=$(date +%s%N)
LEDGER_JOURNAL=$jdir "$DRIVER" write 200000 --prefix shipbench --workers 2 --month 2025-02 --wait-ms 600000 >/dev/null
e=$(date +%s%N)
rm -rf "$jdir"
ms=$(( (e - s) / 1000000 ))
printf 'ship 200000 records (rollup kept in the same transaction): %d ms, %d records/s\n' "$ms" $(( 200000 * 1000 / ms ))
