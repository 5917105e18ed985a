#!/usr/bin/env bash
# modelgate — where the CPU goes per request at saturation: wrk (as in
# `make bench`, 2 threads, 64 connections) drives the ~2 KB chat request of
# the full path through one proxy for DURATION seconds, and the CPU time
# (user and kernel, from /proc) of each party is divided by the requests
# served: the proxy, its PostgreSQL (full path only), the upstream nginx and
# wrk. On this 2-core machine they all share the same cores, so the sum is
# what one request costs the machine.
#   bench/cpu_split.sh [full|bare|nginx] [DURATION]   (defaults: full 10)
#     full:  modelgate with API key, bench/policy-full.json, usage ledger
#     bare:  modelgate with the master key, no policy, no ledger
#     nginx: nginx proxy_pass (bench/proxy.nginx.conf.in)
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/full_path_db.sh
MODE=${1:-full}
DUR=${2:-10}
[[ $MODE =~ ^(full|bare|nginx)$ ]] || { echo "cpu_split: mode is full, bare or nginx" >&2; exit 2; }
[[ $DUR =~ ^[0-9]+$ && $DUR -ge 2 ]] || { echo "cpu_split: DURATION must be a number of seconds >= 2" >&2; exit 2; }
MODELGATE=${MODELGATE:-build/modelgate}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
for c in wrk nginx ss python3; do
    command -v "$c" >/dev/null || { echo "cpu_split: $c not found (apt-get install wrk nginx-light iproute2 python3)" >&2; exit 2; }
done
RUN=$(mktemp -d /tmp/modelgate-cpu.XXXXXX)
UPP="" PXP=""
cleanup() {
    [ -n "$PXP" ] && kill -TERM -- "-$PXP" 2>/dev/null
    [ -n "$UPP" ] && kill -TERM -- "-$UPP" 2>/dev/null
    full_path_db_stop "$RUN"
    sleep 0.5
    rm -rf "$RUN"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listening() { local i; for i in $(seq 1 300); do ss -Htln "sport = :$1" | grep -q . && return 0; sleep 0.1; done; return 1; }
UP=$(port) PX=$(port)
MK="mg-cpu-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
KEY=$MK
sed -e "s#@DIR@#$RUN#g" -e "s#@UP_PORT@#$UP#g" bench/upstream.nginx.conf.in >"$RUN/up.conf"
setsid nginx -p "$RUN" -c "$RUN/up.conf" -e "$RUN/up-error.log" >/dev/null 2>&1 &
UPP=$!
case $MODE in
full)
    full_path_db "$RUN" "$MODELGATE" || { echo "$(basename "$0"): $FULL_PATH_ERR" >&2; exit 1; }
    KEY=$FULL_KEY
    setsid env BENCH_MG_PORT="$PX" BENCH_UP_PORT="$UP" BENCH_MASTER_KEY="$MK" BENCH_DB_URL="$DB_URL" \
        BENCH_JOURNAL="$RUN/journal" "$MODELGATE" serve -c bench/modelgate-full.yaml >"$RUN/px.out" 2>&1 &
    PXP=$!
    ;;
bare)
    setsid env BENCH_MG_PORT="$PX" BENCH_UP_PORT="$UP" BENCH_MASTER_KEY="$MK" \
        "$MODELGATE" serve -c bench/modelgate-bench.yaml >"$RUN/px.out" 2>&1 &
    PXP=$!
    ;;
nginx)
    sed -e "s#@DIR@#$RUN#g" -e "s#@UP_PORT@#$UP#g" -e "s#@PROXY_PORT@#$PX#g" bench/proxy.nginx.conf.in >"$RUN/px.conf"
    setsid nginx -p "$RUN" -c "$RUN/px.conf" -e "$RUN/px-error.log" >/dev/null 2>&1 &
    PXP=$!
    ;;
esac
listening "$UP" && listening "$PX" || { echo "cpu_split: the upstream or the proxy did not start" >&2; exit 1; }
ticks() { # user and system ticks of every process in group $1 (threads included), "u s"
    local u=0 s=0 p a b
    for p in $(pgrep -g "$1" 2>/dev/null || true); do
        read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo "0 0")
        u=$(( u + a )) s=$(( s + b ))
    done
    echo "$u $s"
}
pg_ticks() { # the cluster's postmaster and its children
    [ "$PG_STARTED" = 1 ] || { echo "0 0"; return; }
    local pm u=0 s=0 p a b
    pm=$(head -n1 "$RUN/pg/data/postmaster.pid")
    for p in "$pm" $(pgrep -P "$pm" 2>/dev/null || true); do
        read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo "0 0")
        u=$(( u + a )) s=$(( s + b ))
    done
    echo "$u $s"
}
export BENCH_HEADERS="Authorization: Bearer $KEY"
wrk -t2 -c64 -d2s -s bench/chat_full.lua "http://127.0.0.1:$PX/v1/chat/completions" >/dev/null   # warm-up
read -r pxu0 pxs0 < <(ticks "$PXP"); read -r pgu0 pgs0 < <(pg_ticks); read -r upu0 ups0 < <(ticks "$UPP")
/usr/bin/time -f "%U %S" -o "$RUN/wrk.time" wrk -t2 -c64 -d"${DUR}s" -s bench/chat_full.lua \
    "http://127.0.0.1:$PX/v1/chat/completions" >"$RUN/wrk.out"
sleep 1   # the shipper's last batch of the run
read -r pxu1 pxs1 < <(ticks "$PXP"); read -r pgu1 pgs1 < <(pg_ticks); read -r upu1 ups1 < <(ticks "$UPP")
N=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^requests=/) print substr($i, 10)}' "$RUN/wrk.out")
NON2XX=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^non2xx=/) print substr($i, 8)}' "$RUN/wrk.out")
[ "${N:-0}" -gt 0 ] || { echo "cpu_split: no requests: $(cat "$RUN/wrk.out")" >&2; exit 1; }
HZ=$(getconf CLK_TCK)
us() { awk -v t="$1" -v hz="$HZ" -v n="$N" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }'; }
read -r wu ws <"$RUN/wrk.time"
WU=$(awk -v s="$wu" -v n="$N" 'BEGIN { printf "%.1f", s * 1e6 / n }')
WS=$(awk -v s="$ws" -v n="$N" 'BEGIN { printf "%.1f", s * 1e6 / n }')
echo "cpu_split $MODE: $N requests in ${DUR}s ($(awk -v n="$N" -v d="$DUR" 'BEGIN { printf "%.0f", n / d }') req/s, non-2xx ${NON2XX:-?}); CPU microseconds per request, user + kernel:"
printf '  %-16s %7s + %7s\n' "proxy ($MODE)" "$(us $(( pxu1 - pxu0 )))" "$(us $(( pxs1 - pxs0 )))"
[ "$PG_STARTED" = 1 ] && printf '  %-16s %7s + %7s\n' "PostgreSQL" "$(us $(( pgu1 - pgu0 )))" "$(us $(( pgs1 - pgs0 )))"
printf '  %-16s %7s + %7s\n' "upstream nginx" "$(us $(( upu1 - upu0 )))" "$(us $(( ups1 - ups0 )))"
printf '  %-16s %7s + %7s\n' "wrk" "$WU" "$WS"
