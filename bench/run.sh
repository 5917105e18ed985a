#!/usr/bin/env bash
# `make bench`: modelgate vs nginx proxy_pass vs the Portkey gateway, on this
# machine, all on 127.0.0.1, in front of one fixed nginx upstream.
# SPDX-License-Identifier: Apache-2.0
#
# For each target: start it, check that a request really reaches the upstream,
# warm up (wrk, 3 s), measure throughput and latency (wrk --latency, closed loop),
# then p99 at a fixed rate (bench/rateload, open loop), then stop it.
# Prints a table and writes the same as markdown to bench/last-run.md.
# Method and fairness choices: bench/README.md.
#
# Environment (defaults in brackets):
#   BENCH_DURATION [15s]        measured wrk run per target (whole seconds)
#   BENCH_ROUNDS [3]            each target is measured this many times, round-robin;
#                               every figure is the median of the rounds
#   BENCH_CONNECTIONS [64]      wrk connections (2 threads)
#   BENCH_RATE [5000]           fixed rate, requests/s, for the open-loop run
#   BENCH_RATE_DURATION [10]    seconds measured at the fixed rate (+1 s unmeasured warm-up)
#   BENCH_RATE_CONNECTIONS [32] keep-alive connections of the open-loop run
#   BENCH_TARGETS ["nginx nginx-2k modelgate modelgate-full portkey"]
#                               modelgate-full: API key + policy with filters + usage
#                               ledger, ~2 KB prompt (starts a throwaway PostgreSQL);
#                               nginx-2k: nginx proxy_pass sending that same prompt,
#                               the like-for-like baseline of the full path
#   BENCH_PORTKEY_WORKERS [2]   node:cluster workers for Portkey
#   BENCH_REQUIRE_ALL [0]       1: a target that cannot start is an error (exit 1)
#   BENCH_ENFORCE [0]           1: exit 1 when a goal (ratio, p99 delta, RSS) is missed
#   BENCH_KEEP [0]              1: keep the run directory (configs, raw wrk/rateload output, logs)
#   MODELGATE [build/modelgate]
set -euo pipefail
set +m # no job control: background children stay in our group, so setsid never forks
cd "$(dirname "$0")/.."

die() { echo "bench: $*" >&2; exit 2; }

seconds() { # "15s" or "15" -> 15
    local v=${1%s}
    [[ $v =~ ^[0-9]+$ && $v -gt 0 ]] || die "bad duration '$1' (whole seconds, e.g. 15s)"
    echo "$v"
}
posint() { [[ $2 =~ ^[0-9]+$ && $2 -gt 0 ]] || die "$1 must be a positive integer, got '$2'"; echo "$2"; }

DURATION=$(seconds "${BENCH_DURATION:-15s}")
CONNS=$(posint BENCH_CONNECTIONS "${BENCH_CONNECTIONS:-64}")
RATE=$(posint BENCH_RATE "${BENCH_RATE:-5000}")
RATE_DURATION=$(seconds "${BENCH_RATE_DURATION:-10}")
RATE_CONNS=$(posint BENCH_RATE_CONNECTIONS "${BENCH_RATE_CONNECTIONS:-32}")
PORTKEY_WORKERS=$(posint BENCH_PORTKEY_WORKERS "${BENCH_PORTKEY_WORKERS:-2}")
TARGETS=${BENCH_TARGETS:-"nginx nginx-2k modelgate modelgate-full portkey"}
REQUIRE_ALL=${BENCH_REQUIRE_ALL:-0}
ENFORCE=${BENCH_ENFORCE:-0}
MODELGATE=${MODELGATE:-build/modelgate}
THREADS=2
WARMUP=3
ROUNDS=$(posint BENCH_ROUNDS "${BENCH_ROUNDS:-3}")
BODY='{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}'
# The full-path row sends a ~2 KB multi-turn prompt (the same file chat_full.lua reads).
FULL_BODY=$(tr -d '\n' <bench/prompt-2k.json)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

# ---------------------------------------------------------------- dependencies
PKGS=(nginx-light wrk curl gcc libc6-dev procps iproute2 nodejs npm)
[[ " $TARGETS " == *" modelgate-full "* ]] && PKGS+=(postgresql)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if command -v node >/dev/null && command -v npm >/dev/null; then # node may come from outside Debian
    tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
    missing=("${tmp[@]}")
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx not found"

if [[ " $TARGETS " == *" portkey "* && ! -d bench/node_modules/@portkey-ai/gateway ]]; then
    echo "bench: npm ci --prefix bench (Portkey gateway, pinned in bench/package-lock.json)" >&2
    npm ci --prefix bench --no-audit --no-fund >/dev/null
fi

# ---------------------------------------------------------------- processes
RUN=$(mktemp -d /tmp/modelgate-bench.XXXXXX)
PIDS=()
LOAD_PID=""
cleanup() {
    local rc=$?
    local pid
    if [ -n "$LOAD_PID" ]; then kill "$LOAD_PID" 2>/dev/null || true; wait "$LOAD_PID" 2>/dev/null || true; fi
    for pid in "${PIDS[@]}"; do stop_group "$pid"; done
    stop_pg
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: raw outputs kept in $RUN" >&2; else rm -rf "$RUN"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Each service runs in its own session (setsid), so its pid is also its process
# group and stopping it stops its workers too.
start_group() { # name cmd...  -> sets STARTED_PID
    local name=$1; shift
    setsid "$@" >"$RUN/$name.out" 2>&1 </dev/null &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}
stop_group() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 30); do
        pgrep -g "$pid" >/dev/null 2>&1 || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# Runs a load generator in the background and waits for it, so that a signal
# reaches our trap at once instead of after the whole run; returns its status.
run_load() {
    local rc=0
    "$@" &
    LOAD_PID=$!
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=""
    return "$rc"
}
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------- full path
# A throwaway PostgreSQL (like bench/ledger_bench.sh and `make demo`) holding the
# API key, the policy of bench/policy-full.json and the usage ledger. Started
# once, on the first use of the modelgate-full target; stopped by the exit trap.
. bench/full_path_db.sh
port() { free_port; }
stop_pg() { full_path_db_stop "$RUN"; }
setup_full_path() { # sets DB_URL, API_KEY; returns 1 (with ROW_NOTE) on failure
    [ -n "${API_KEY:-}" ] && return 0
    full_path_db "$RUN" "$MODELGATE" || { ROW_NOTE[modelgate-full]=$FULL_PATH_ERR; return 1; }
    API_KEY=$FULL_KEY
}

USED_PORTS=" "
# Listening ports come from below the ephemeral range, so the many client
# connections of a run cannot be holding the port we pick.
EPH_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[[ $EPH_LOW =~ ^[0-9]+$ && $EPH_LOW -gt 12000 ]] || EPH_LOW=32768
free_port() { # a loopback TCP port nobody listens on (checked just before use)
    local p i
    for i in $(seq 1 200); do
        p=$(( 10000 + RANDOM % (EPH_LOW - 10000) ))
        [[ $USED_PORTS == *" $p "* ]] && continue
        ss -Htln "sport = :$p" 2>/dev/null | grep -q . && continue
        USED_PORTS+="$p "
        echo "$p"; return 0
    done
    die "no free port found"
}

rss_kib() { # total VmRSS (KiB) of every process in the group of pid $1
    local total=0 p v
    for p in $(pgrep -g "$1" 2>/dev/null || true); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        total=$(( total + ${v:-0} ))
    done
    echo "$total"
}

# POSTs one chat completion; succeeds when the answer is a 200 that carries the
# upstream's marker ("chatcmpl-bench"), i.e. the request really went through.
probe() { # port header...
    local port=$1; shift
    local args=() h
    for h in "$@"; do args+=(-H "$h"); done
    local out
    out=$(curl -s -m 3 -o - -w '\n%{http_code}' "http://127.0.0.1:$port/v1/chat/completions" \
        -H 'Content-Type: application/json' "${args[@]}" -d "${PROBE_BODY:-$BODY}" 2>/dev/null) || return 1
    [[ ${out##*$'\n'} == 200 && $out == *chatcmpl-bench* ]]
}

wait_ready() { # pid port header...  (gives up after 15 s)
    local pid=$1; shift
    local until=$(( SECONDS + 15 ))
    while [ "$SECONDS" -lt "$until" ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        probe "$@" && return 0
        sleep 0.1
    done
    return 1
}

# key=value lookup in a line produced by chat.lua or rateload
kv() { awk -v k="$2" '{for (i = 1; i <= NF; i++) { n = index($i, "="); if (n && substr($i, 1, n - 1) == k) print substr($i, n + 1) }}' <<<"$1" | tail -n1; }
calc() { awk "BEGIN { printf \"%s\", ($1) }"; }

# Other work on the machine skews every number: sample how idle the CPUs are.
cpu_idle_pct() {
    local a b
    a=$(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 100) }'
}
IDLE_PCT=$(cpu_idle_pct)
BUSY_NOTE=""
if [ "$IDLE_PCT" -lt 90 ]; then
    BUSY_NOTE="WARNING: the machine was only ${IDLE_PCT}% idle before the run (other processes were using the CPUs); these numbers are not representative."
    echo "bench: $BUSY_NOTE" >&2
fi

# ---------------------------------------------------------------- load tools
RATELOAD=$RUN/rateload
gcc -O2 -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -D_GNU_SOURCE \
    -o "$RATELOAD" bench/rateload.c || die "cannot build bench/rateload.c"

# ---------------------------------------------------------------- upstream
UP_PORT=$(free_port)
sed -e "s#@DIR@#$RUN#g" -e "s#@UP_PORT@#$UP_PORT#g" bench/upstream.nginx.conf.in >"$RUN/upstream.conf"
start_group upstream "$NGINX" -p "$RUN" -c "$RUN/upstream.conf" -e "$RUN/upstream-error.log"
UP_PID=$STARTED_PID
wait_ready "$UP_PID" "$UP_PORT" || { cat "$RUN"/upstream*.out "$RUN"/upstream-error.log >&2 2>/dev/null; die "the upstream nginx did not start"; }

MASTER_KEY="mg-bench-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"

declare -A ROW_ROUNDS ROW_LAG ROW_STATUS ROW_RPS ROW_P50 ROW_P99 ROW_ERR ROW_FIXED_US ROW_FIXED_NOTE ROW_RSS0 ROW_RSS1 ROW_NOTE
UNAVAILABLE=()

# Idle RSS is taken as soon as the target listens (before any request), so it
# is the footprint of a freshly started process; 0.5 s lets workers settle.
wait_listening() { # pid port  (gives up after 15 s)
    local until=$(( SECONDS + 15 ))
    while [ "$SECONDS" -lt "$until" ]; do
        kill -0 "$1" 2>/dev/null || return 1
        ss -Htln "sport = :$2" 2>/dev/null | grep -q . && return 0
        sleep 0.05
    done
    return 1
}

# Starts target $1; sets T_PID, T_PORT, T_HEADERS (array), T_BODY and T_LUA.
# Returns 1 if it cannot start.
start_target() {
    local t=$1 conf
    T_PORT=$(free_port) || return 1
    T_BODY=$BODY
    T_LUA=bench/chat.lua
    case $t in
    nginx | nginx-2k)
        T_HEADERS=("Authorization: Bearer $MASTER_KEY")
        if [ "$t" = nginx-2k ]; then
            T_BODY=$FULL_BODY
            T_LUA=bench/chat_full.lua
        fi
        sed -e "s#@DIR@#$RUN#g" -e "s#@UP_PORT@#$UP_PORT#g" -e "s#@PROXY_PORT@#$T_PORT#g" \
            bench/proxy.nginx.conf.in >"$RUN/proxy.conf"
        start_group nginx "$NGINX" -p "$RUN" -c "$RUN/proxy.conf" -e "$RUN/proxy-error.log"
        ;;
    modelgate)
        T_HEADERS=("Authorization: Bearer $MASTER_KEY")
        if [ ! -x "$MODELGATE" ]; then
            ROW_NOTE[$t]="$MODELGATE not built"
            return 1
        fi
        start_group modelgate env BENCH_MG_PORT="$T_PORT" BENCH_UP_PORT="$UP_PORT" \
            BENCH_MASTER_KEY="$MASTER_KEY" "$MODELGATE" serve -c bench/modelgate-bench.yaml
        ;;
    modelgate-full)
        if [ ! -x "$MODELGATE" ]; then
            ROW_NOTE[$t]="$MODELGATE not built"
            return 1
        fi
        echo "bench: $t: throwaway PostgreSQL, migrate, policy import, API key" >&2
        setup_full_path || return 1
        T_HEADERS=("Authorization: Bearer $API_KEY")
        T_BODY=$FULL_BODY
        T_LUA=bench/chat_full.lua
        start_group "$t" env BENCH_MG_PORT="$T_PORT" BENCH_UP_PORT="$UP_PORT" \
            BENCH_MASTER_KEY="$MASTER_KEY" BENCH_DB_URL="$DB_URL" BENCH_JOURNAL="$RUN/journal" \
            "$MODELGATE" serve -c bench/modelgate-full.yaml
        ;;
    portkey)
        # The provider key is never checked by the mock upstream; custom-host points
        # the openai provider at it (Portkey trusts loopback custom hosts by default).
        T_HEADERS=("Authorization: Bearer sk-bench-unused" "x-portkey-provider: openai"
                   "x-portkey-custom-host: http://127.0.0.1:$UP_PORT/v1")
        [ -f bench/node_modules/@portkey-ai/gateway/build/start-server.js ] || {
            ROW_NOTE[$t]="bench/node_modules missing"; return 1; }
        start_group portkey env NODE_ENV=production BENCH_PORTKEY_WORKERS="$PORTKEY_WORKERS" \
            node bench/portkey-cluster.mjs --port="$T_PORT" --headless
        ;;
    *) die "unknown target '$t' (nginx, nginx-2k, modelgate, modelgate-full, portkey)" ;;
    esac
    T_PID=$STARTED_PID
    ROW_RSS0[$t]=""
    if wait_listening "$T_PID" "$T_PORT"; then
        sleep 0.5
        ROW_RSS0[$t]=$(rss_kib "$T_PID")
    fi
    if ! PROBE_BODY=$T_BODY wait_ready "$T_PID" "$T_PORT" "${T_HEADERS[@]}"; then
        local why="did not answer through to the upstream within 15 s" rc=0
        if ! kill -0 "$T_PID" 2>/dev/null; then
            wait "$T_PID" 2>/dev/null || rc=$?
            why="exited with status $rc"
        fi
        ROW_NOTE[$t]="$why; output: $(tail -n 3 "$RUN/$t.out" 2>/dev/null | tr '\n' ' ' | cut -c1-200)"
        stop_group "$T_PID"; forget_pid "$T_PID"
        return 1
    fi
}

bench_target() {
    local t=$1 headers line rl
    headers=$(IFS='|'; echo "${T_HEADERS[*]}")
    echo "bench: $t: warm-up ${WARMUP}s" >&2
    BENCH_HEADERS=$headers BENCH_BODY=$T_BODY run_load wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" \
        -s "$T_LUA" "http://127.0.0.1:$T_PORT/v1/chat/completions" >"$RUN/$t.warmup.txt" 2>&1 || true
    echo "bench: $t: measuring ${DURATION}s, $CONNS connections" >&2
    BENCH_HEADERS=$headers BENCH_BODY=$T_BODY run_load wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency \
        -s "$T_LUA" "http://127.0.0.1:$T_PORT/v1/chat/completions" >"$RUN/$t.wrk.txt" 2>&1 || true
    line=$(grep '^BENCH_RESULT' "$RUN/$t.wrk.txt" | tail -n1 || true)
    if [ -z "$line" ]; then
        cat "$RUN/$t.wrk.txt" >&2
        ROW_STATUS[$t]=failed; ROW_NOTE[$t]="wrk produced no result"
        return 0
    fi
    ROW_RPS[$t]=$(kv "$line" rps)
    ROW_P50[$t]=$(kv "$line" p50_us)
    ROW_P99[$t]=$(kv "$line" p99_us)
    ROW_ERR[$t]=$(( $(kv "$line" non2xx) + $(kv "$line" connect_err) + $(kv "$line" read_err) \
                    + $(kv "$line" write_err) + $(kv "$line" timeouts) ))

    ROW_RSS1[$t]=$(rss_kib "$T_PID")
    ROW_STATUS[$t]=ok
    # An open-loop run above a target's capacity only measures an ever-growing
    # queue (and would take minutes to drain), so it is skipped.
    if [ "$(calc "(${ROW_RPS[$t]} < $RATE) ? 1 : 0")" = 1 ]; then
        ROW_FIXED_NOTE[$t]="skipped: capacity below the rate"
        echo "bench: $t: fixed-rate run skipped, $(calc "int(${ROW_RPS[$t]})") req/s < $RATE req/s" >&2
        return 0
    fi
    echo "bench: $t: fixed rate $RATE req/s for ${RATE_DURATION}s (+1s warm-up)" >&2
    local rargs=(-a 127.0.0.1 -p "$T_PORT" -r "$RATE" -d "$RATE_DURATION" -w 1 -c "$RATE_CONNS"
                 -u /v1/chat/completions -b "$T_BODY" -H "Content-Type: application/json")
    local h
    for h in "${T_HEADERS[@]}"; do rargs+=(-H "$h"); done
    run_load "$RATELOAD" "${rargs[@]}" >"$RUN/$t.rateload.txt" 2>"$RUN/$t.rateload.err" || true
    rl=$(tail -n1 "$RUN/$t.rateload.txt")
    if [ -z "$rl" ] || [ "$(kv "$rl" completed)" = 0 ]; then
        ROW_FIXED_NOTE[$t]="no answer measured: $(head -c 200 "$RUN/$t.rateload.err")$rl"
    else
        ROW_FIXED_US[$t]=$(kv "$rl" p99_us)
        ROW_LAG[$t]=$(kv "$rl" send_lag_p99_us)
        local achieved lost rerr
        achieved=$(kv "$rl" achieved_rps)
        lost=$(( $(kv "$rl" unsent) + $(kv "$rl" timeouts) ))
        rerr=$(( $(kv "$rl" errors) + $(kv "$rl" non2xx) ))
        ROW_FIXED_NOTE[$t]=""
        if [ "$(calc "($achieved < 0.95 * $RATE || $lost > 0) ? 1 : 0")" = 1 ]; then
            ROW_FIXED_NOTE[$t]="saturated: $(calc "int($achieved + 0.5)") req/s achieved"
        fi
        [ "$rerr" -gt 0 ] && ROW_FIXED_NOTE[$t]="${ROW_FIXED_NOTE[$t]:+${ROW_FIXED_NOTE[$t]}; }$rerr errors"
    fi
    ROW_RSS1[$t]=$(rss_kib "$T_PID")
}

# Rounds: every target is measured ROUNDS times, round-robin, so a burst of
# load from elsewhere on the machine hits all targets alike instead of one;
# each figure reported is the median of the rounds (the per-round throughput
# is printed too).
declare -A L_RPS L_P50 L_P99 L_ERR L_FIXED L_LAG RSS0_FIRST OK_ROUNDS FIXED_NOTE_LAST
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit; print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for round in $(seq 1 "$ROUNDS"); do
    for t in $TARGETS; do
        [ "${ROW_STATUS[$t]:-}" = unavailable ] && continue
        echo "bench: round $round/$ROUNDS: starting $t" >&2
        if start_target "$t"; then
            bench_target "$t"
            stop_group "$T_PID"; forget_pid "$T_PID"
            if [ "${ROW_STATUS[$t]}" = ok ]; then
                OK_ROUNDS[$t]=$(( ${OK_ROUNDS[$t]:-0} + 1 ))
                L_RPS[$t]+=" ${ROW_RPS[$t]}"; L_P50[$t]+=" ${ROW_P50[$t]}"; L_P99[$t]+=" ${ROW_P99[$t]}"
                L_ERR[$t]+=" ${ROW_ERR[$t]}"
                [ -n "${ROW_FIXED_US[$t]:-}" ] && L_FIXED[$t]+=" ${ROW_FIXED_US[$t]}"
                [ -n "${ROW_LAG[$t]:-}" ] && L_LAG[$t]+=" ${ROW_LAG[$t]}"
                [ -n "${RSS0_FIRST[$t]:-}" ] || RSS0_FIRST[$t]=${ROW_RSS0[$t]:-}
                FIXED_NOTE_LAST[$t]=${ROW_FIXED_NOTE[$t]:-}
                unset "ROW_FIXED_US[$t]" "ROW_LAG[$t]"
            fi
        else
            echo "bench: $t unavailable: ${ROW_NOTE[$t]}" >&2
            ROW_STATUS[$t]=unavailable
        fi
    done
done
for t in $TARGETS; do
    if [ "${OK_ROUNDS[$t]:-0}" -gt 0 ]; then
        ROW_STATUS[$t]=ok
        ROW_RPS[$t]=$(median <<<"${L_RPS[$t]}")
        ROW_P50[$t]=$(median <<<"${L_P50[$t]}")
        ROW_P99[$t]=$(median <<<"${L_P99[$t]}")
        ROW_ERR[$t]=$(tr ' ' '\n' <<<"${L_ERR[$t]}" | awk '{ s += $1 } END { print s + 0 }')
        [ -n "${L_FIXED[$t]:-}" ] && ROW_FIXED_US[$t]=$(median <<<"${L_FIXED[$t]}")
        [ -n "${L_LAG[$t]:-}" ] && ROW_LAG[$t]=$(median <<<"${L_LAG[$t]}")
        ROW_RSS0[$t]=${RSS0_FIRST[$t]:-}
        ROW_FIXED_NOTE[$t]=${FIXED_NOTE_LAST[$t]:-}
        ROW_ROUNDS[$t]=$(for v in ${L_RPS[$t]}; do calc "sprintf(\"%.0f\", $v)"; printf ' '; done | sed 's/ $//; s/ /, /g')
    else
        [ "${ROW_STATUS[$t]:-}" = unavailable ] || ROW_STATUS[$t]=failed
        UNAVAILABLE+=("$t")
    fi
done

# ---------------------------------------------------------------- report
ms() { [ -n "${1:-}" ] && calc "sprintf(\"%.2f ms\", $1 / 1000)" || echo "-"; }
mib() { [ -n "${1:-}" ] && [ "$1" -gt 0 ] && calc "sprintf(\"%.1f MiB\", $1 / 1024)" || echo "-"; }

have() { [ "${ROW_STATUS[$1]:-}" = ok ] && [ -n "${ROW_RPS[$1]:-}" ]; }
GOALS_MISSED=0
goal() { # description value met(1/0) -> one row; a missed goal is marked MISSED
    local verdict=MISSED
    [ "$3" = 1 ] && verdict=met
    printf '%s|%s|%s\n' "$1" "$2" "$verdict"
}
RATIOS=()
# Goals for one modelgate target ($1: target, $2: label, $3: minimum share of
# nginx's throughput in percent). Only targets that were asked for get rows.
target_goals() {
    local t=$1 label=$2 pct=$3 d
    [[ " $TARGETS " == *" $t "* ]] || return 0
    if have "$t" && have nginx; then
        RATIOS+=("$(goal "$label / nginx throughput (goal >= $pct%)" \
            "$(calc "sprintf(\"%.1f%%\", 100 * ${ROW_RPS[$t]} / ${ROW_RPS[nginx]})")" \
            "$(calc "(${ROW_RPS[$t]} >= $pct / 100 * ${ROW_RPS[nginx]}) ? 1 : 0")")")
        if [ -n "${ROW_FIXED_US[$t]:-}" ] && [ -n "${ROW_FIXED_US[nginx]:-}" ]; then
            d=$(calc "(${ROW_FIXED_US[$t]} - ${ROW_FIXED_US[nginx]}) / 1000")
            RATIOS+=("$(goal "$label p99 added vs nginx at $RATE req/s (goal <= +1 ms)" \
                "$(calc "sprintf(\"%+.2f ms\", $d)")" "$(calc "($d <= 1) ? 1 : 0")")")
        else
            RATIOS+=("$label p99 added vs nginx at $RATE req/s (goal <= +1 ms)|n/a (no fixed-rate result)|-")
        fi
    else
        RATIOS+=("$label / nginx throughput (goal >= $pct%)|n/a|-")
        RATIOS+=("$label p99 added vs nginx at $RATE req/s (goal <= +1 ms)|n/a|-")
    fi
    if have "$t" && have portkey; then
        RATIOS+=("$(goal "$label / Portkey throughput (goal >= 20x)" \
            "$(calc "sprintf(\"%.1fx\", ${ROW_RPS[$t]} / ${ROW_RPS[portkey]})")" \
            "$(calc "(${ROW_RPS[$t]} >= 20 * ${ROW_RPS[portkey]}) ? 1 : 0")")")
    else
        RATIOS+=("$label / Portkey throughput (goal >= 20x)|n/a|-")
    fi
    if [ -n "${ROW_RSS0[$t]:-}" ]; then
        RATIOS+=("$(goal "$label idle RSS (goal <= 20 MiB)" "$(mib "${ROW_RSS0[$t]}")" \
            "$(calc "(${ROW_RSS0[$t]} <= 20 * 1024) ? 1 : 0")")")
        RATIOS+=("$label RSS after the runs|$(mib "${ROW_RSS1[$t]:-0}")|-")
    else
        RATIOS+=("$label idle RSS (goal <= 20 MiB)|n/a|-")
    fi
}
# Bare path (master key, no filters, no ledger): issue 2's goals. Full path (API
# key, policy with filters, usage ledger, ~2 KB prompt): SPEC section 7.
target_goals modelgate "modelgate" 80
target_goals modelgate-full "modelgate full path" 70
# The same goals against nginx sending the full path's own ~2 KB prompt: the
# same request on both sides (the rows above compare with nginx's 113 bytes).
if [[ " $TARGETS " == *" modelgate-full "* ]] && have modelgate-full && have nginx-2k; then
    RATIOS+=("$(goal "modelgate full path / nginx-2k throughput, same 2 KB request (goal >= 70%)" \
        "$(calc "sprintf(\"%.1f%%\", 100 * ${ROW_RPS[modelgate-full]} / ${ROW_RPS[nginx-2k]})")" \
        "$(calc "(${ROW_RPS[modelgate-full]} >= 0.7 * ${ROW_RPS[nginx-2k]}) ? 1 : 0")")")
    if [ -n "${ROW_FIXED_US[modelgate-full]:-}" ] && [ -n "${ROW_FIXED_US[nginx-2k]:-}" ]; then
        d2=$(calc "(${ROW_FIXED_US[modelgate-full]} - ${ROW_FIXED_US[nginx-2k]}) / 1000")
        RATIOS+=("$(goal "modelgate full path p99 added vs nginx-2k at $RATE req/s (goal <= +1 ms)" \
            "$(calc "sprintf(\"%+.2f ms\", $d2)")" "$(calc "($d2 <= 1) ? 1 : 0")")")
    fi
fi

for r in "${RATIOS[@]}"; do if [[ $r == *"|MISSED" ]]; then GOALS_MISSED=1; fi; done

ROWS=()
for t in $TARGETS; do
    case ${ROW_STATUS[$t]:-unavailable} in
    ok)
        fixed=$(ms "${ROW_FIXED_US[$t]:-}")
        if [ -n "${ROW_FIXED_NOTE[$t]:-}" ]; then
            if [ "$fixed" = - ]; then fixed=${ROW_FIXED_NOTE[$t]}; else fixed="$fixed (${ROW_FIXED_NOTE[$t]})"; fi
        fi
        ROWS+=("$t|$(calc "sprintf(\"%.0f\", ${ROW_RPS[$t]})") (${ROW_ROUNDS[$t]:-})|$(ms "${ROW_P50[$t]}")|$(ms "${ROW_P99[$t]}")|${ROW_ERR[$t]}|$fixed|$(ms "${ROW_LAG[$t]:-}")|$(mib "${ROW_RSS0[$t]}") / $(mib "${ROW_RSS1[$t]}")")
        ;;
    *) ROWS+=("$t|${ROW_STATUS[$t]:-unavailable}|-|-|-|-|-|- (${ROW_NOTE[$t]:-})") ;;
    esac
done

HEAD="target|req/s median (rounds)|p50|p99|errors|p99 at $RATE req/s|send lag p99|RSS idle / after"
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
PK_VER=$(awk -F'"' '/"version"/ {print $4; exit}' bench/node_modules/@portkey-ai/gateway/package.json 2>/dev/null || echo "?")
SETUP="$(nproc) cores ($CPU), $(uname -sr); $("$NGINX" -v 2>&1 | sed 's/.*: //'); $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}'); node $(node --version 2>/dev/null || echo '?'); Portkey gateway $PK_VER ($PORTKEY_WORKERS workers)"
LOAD="$ROUNDS rounds, round-robin over the targets, medians reported; each: wrk -t$THREADS -c$CONNS, ${WARMUP}s warm-up + ${DURATION}s measured; fixed rate: bench/rateload, $RATE req/s open loop over $RATE_CONNS connections, ${RATE_DURATION}s measured (latency from scheduled send time)"

print_table() { # '|'-separated rows on stdin -> aligned columns
    awk -F'|' '{ rows[NR] = $0; for (i = 1; i <= NF; i++) if (length($i) > w[i]) w[i] = length($i) }
        END { for (r = 1; r <= NR; r++) { n = split(rows[r], f, "|"); line = ""
                for (i = 1; i <= n; i++) line = line (i < n ? sprintf("%-" w[i] + 2 "s", f[i]) : f[i])
                print line } }'
}
{
    echo
    echo "modelgate bench — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "$SETUP"
    echo "$LOAD"
    [ -z "$BUSY_NOTE" ] || echo "$BUSY_NOTE"
    echo
    { echo "$HEAD"; printf '%s\n' "${ROWS[@]}"; } | print_table
    echo
    { echo "measure|value|goal"; printf '%s\n' "${RATIOS[@]}"; } | print_table
    echo
}

md_table() { # header rows...
    local h=$1; shift
    local sep="|" n
    for n in $(seq 1 "$(awk -F'|' '{print NF}' <<<"$h")"); do sep+=" --- |"; done
    echo "| ${h//|/ | } |"
    echo "$sep"
    local r
    for r in "$@"; do echo "| ${r//|/ | } |"; done
}
{
    echo "# make bench — last run"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'). $SETUP."
    echo
    echo "Load: $LOAD. Upstream: one nginx worker returning a fixed chat.completion."
    echo
    [ -z "$BUSY_NOTE" ] || { echo "**$BUSY_NOTE**"; echo; }
    md_table "$HEAD" "${ROWS[@]}"
    echo
    md_table "measure|value|goal" "${RATIOS[@]}"
    echo
    echo "Errors are non-2xx answers plus socket errors during the measured wrk run."
    echo "\"saturated\" means the target could not sustain the fixed rate, so its p99 there is queueing time."
    echo "\"send lag p99\" is how late the load generator itself sent requests (CPU contention on this machine); it is part of the fixed-rate p99 of every target."
    if [[ " $TARGETS " == *" modelgate-full "* ]]; then
        echo "modelgate-full is the full path (API key, policy bench/policy-full.json with 3 filters and 10 custom patterns, usage ledger to PostgreSQL) sending the ~2 KB bench/prompt-2k.json, as does nginx-2k; the other targets get the 113-byte request."
    fi
} >bench/last-run.md
echo "bench: wrote bench/last-run.md" >&2

if [ "$REQUIRE_ALL" = 1 ] && [ ${#UNAVAILABLE[@]} -gt 0 ]; then
    echo "bench: BENCH_REQUIRE_ALL=1 and unavailable: ${UNAVAILABLE[*]}" >&2
    exit 1
fi
if [ "$ENFORCE" = 1 ] && [ "$GOALS_MISSED" = 1 ]; then
    echo "bench: BENCH_ENFORCE=1 and a goal was missed" >&2
    exit 1
fi
exit 0
