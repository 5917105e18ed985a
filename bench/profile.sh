#!/usr/bin/env bash
# modelgate — per-request cost of the bare proxy path, independent of machine
# load: user-space instructions per request counted by callgrind (valgrind),
# one worker, a fixed number of requests at a low fixed rate after a warm-up,
# in front of the same nginx upstream as `make bench`.
#   bench/profile.sh [REQUESTS]     (default 2000; prints one line)
#   BENCH_PROFILE=full bench/profile.sh [REQUESTS]
#                                   the full path instead: API key, the policy of
#                                   bench/policy-full.json, the usage ledger to a
#                                   throwaway PostgreSQL, the ~2 KB prompt (the
#                                   count includes the ledger's shipper thread)
#   BENCH_KEEP=1 keeps the callgrind file for callgrind_annotate --inclusive=yes
# Wall-clock numbers on this shared 2-core machine move by tens of percent with
# other people's jobs; an instruction count moves by well under 1 %.
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/full_path_db.sh
N=${1:-2000}
MODE=${BENCH_PROFILE:-bare}
[[ $MODE =~ ^(bare|full)$ ]] || { echo "profile: BENCH_PROFILE is bare or full" >&2; exit 2; }
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
[[ $N =~ ^[0-9]+$ && $N -ge 200 ]] || { echo "profile: REQUESTS must be a number >= 200" >&2; exit 2; }
MODELGATE=${MODELGATE:-build/modelgate}
for c in valgrind callgrind_control callgrind_annotate nginx gcc ss; do
    command -v "$c" >/dev/null || { echo "profile: $c not found (apt-get install valgrind nginx-light gcc iproute2)" >&2; exit 2; }
done
RUN=$(mktemp -d /tmp/modelgate-profile.XXXXXX)
UPP="" MGP=""
cleanup() {
    [ -n "$MGP" ] && kill "$MGP" 2>/dev/null && wait "$MGP" 2>/dev/null
    [ -n "$UPP" ] && kill -TERM -- "-$UPP" 2>/dev/null
    full_path_db_stop "$RUN"
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "profile: kept $RUN" >&2; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listening() { local i; for i in $(seq 1 600); do ss -Htln "sport = :$1" | grep -q . && return 0; sleep 0.1; done; return 1; }
UP=$(port) MG=$(port)
KEY="mg-profile-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
gcc -O2 -std=gnu11 -D_GNU_SOURCE -o "$RUN/rateload" bench/rateload.c
sed -e "s#@DIR@#$RUN#g" -e "s#@UP_PORT@#$UP#g" bench/upstream.nginx.conf.in >"$RUN/up.conf"
setsid nginx -p "$RUN" -c "$RUN/up.conf" -e "$RUN/up-error.log" >/dev/null 2>&1 &
UPP=$!
AUTH=$KEY DB_URL=""
if [ "$MODE" = full ]; then
    full_path_db "$RUN" "$MODELGATE" || { echo "$(basename "$0"): $FULL_PATH_ERR" >&2; exit 1; }
    AUTH=$FULL_KEY
    sed 's/^workers: 2$/workers: 1/' bench/modelgate-full.yaml >"$RUN/mg.yaml"
    BODY=$(tr -d '\n' <bench/prompt-2k.json)
else
    sed 's/^workers: 2$/workers: 1/' bench/modelgate-bench.yaml >"$RUN/mg.yaml"
    BODY='{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}'
fi
BENCH_MG_PORT=$MG BENCH_UP_PORT=$UP BENCH_MASTER_KEY=$KEY BENCH_DB_URL=$DB_URL BENCH_JOURNAL=$RUN/journal \
    valgrind --tool=callgrind --callgrind-out-file="$RUN/callgrind.out.%p" \
    "$MODELGATE" serve -c "$RUN/mg.yaml" >"$RUN/modelgate.out" 2>&1 &
MGP=$!
listening "$UP" && listening "$MG" || { echo "profile: the upstream or modelgate did not start" >&2; exit 1; }
load() { # rate seconds
    "$RUN/rateload" -a 127.0.0.1 -p "$MG" -r "$1" -d "$2" -w 0 -c 8 -u /v1/chat/completions -b "$BODY" \
        -H 'Content-Type: application/json' -H "Authorization: Bearer $AUTH"
}
load 200 2 >/dev/null            # warm-up: connection pools, first-use allocations
callgrind_control -z "$MGP" >/dev/null 2>&1
RES=$(load 200 $(( N / 200 )) | tail -n1)
sleep $([ "$MODE" = full ] && echo 1.5 || echo 0.5)   # full: the shipper's last batch
callgrind_control -d "$MGP" >/dev/null 2>&1
N=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^ok=/) print substr($i, 4)}' <<<"$RES")
[ "${N:-0}" -gt 0 ] || { echo "profile: no request succeeded: $RES" >&2; exit 1; }
F=$(ls "$RUN"/callgrind.out.*.1 2>/dev/null | head -n1)
TOTAL=$(callgrind_annotate "$F" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "profile ($MODE path): $N requests, $TOTAL instructions, $(( TOTAL / N )) instructions per request (user space, all threads)"
