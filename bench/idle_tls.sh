#!/usr/bin/env bash
# modelgate — SPEC §7: memory with 10,000 idle keep-alive TLS connections
# (goal <= 300 MiB). Starts modelgate (bench configuration plus a TLS
# listener with a throwaway self-signed certificate, idle_timeout long
# enough to hold the connections), opens N connections with one finished
# keep-alive request each (bench/idle_tls.mjs) and prints modelgate's RSS
# before and with them, and per connection.
#   bench/idle_tls.sh [N]     (default 10000; needs `ulimit -n` > N + 100)
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
[[ $N =~ ^[0-9]+$ && $N -ge 1 ]] || { echo "idle_tls: N must be a number" >&2; exit 2; }
MODELGATE=${MODELGATE:-build/modelgate}
for c in node openssl ss python3; do command -v "$c" >/dev/null || { echo "idle_tls: $c not found" >&2; exit 2; }; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $(( N + 100 )) ] || { echo "idle_tls: ulimit -n is $(ulimit -n), need more than $(( N + 100 ))" >&2; exit 2; }
RUN=$(mktemp -d /tmp/modelgate-idle.XXXXXX)
MGP="" CLP=""
cleanup() {
    [ -n "$CLP" ] && kill "$CLP" 2>/dev/null
    [ -n "$MGP" ] && kill "$MGP" 2>/dev/null && wait "$MGP" 2>/dev/null
    rm -rf "$RUN"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -keyout "$RUN/key.pem" -out "$RUN/cert.pem" >/dev/null 2>&1
P=$(port)
cat >"$RUN/mg.yaml" <<YAML
listen:
  - address: "127.0.0.1:$P"
    tls: { cert: "$RUN/cert.pem", key: "$RUN/key.pem" }
auth: { master_key: "mg-idle-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" }
providers:
  up: { type: openai, base_url: "http://127.0.0.1:9/v1" }
models:
  - name: bench-model
    deployments: [ { provider: up, model: bench-model } ]
limits: { idle_timeout: 600s, max_connections: $(( N + 1000 )) }
log: { access_log: "off" }
workers: 2
YAML
"$MODELGATE" serve -c "$RUN/mg.yaml" >"$RUN/mg.out" 2>&1 &
MGP=$!
for _ in $(seq 1 100); do ss -Htln "sport = :$P" | grep -q . && break; sleep 0.1; done
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$MGP/status"; }
sleep 0.5
R0=$(rss)
mkfifo "$RUN/hold"
node bench/idle_tls.mjs "$P" "$N" <"$RUN/hold" >"$RUN/client.out" 2>&1 &
CLP=$!
exec 3>"$RUN/hold"      # keeps the client's stdin open until we are done
for _ in $(seq 1 1200); do grep -q '"open"' "$RUN/client.out" 2>/dev/null && break; sleep 0.1; done
sleep 1
R1=$(rss)
CONNS=$(ss -Htn state established "sport = :$P" | wc -l)
echo "idle_tls: $(cat "$RUN/client.out")"
echo "idle_tls: $CONNS established TLS connections to modelgate; RSS $(( R0 / 1024 )) MiB idle -> $(( R1 / 1024 )) MiB with them ($(( (R1 - R0) / (CONNS > 0 ? CONNS : 1) )) KiB per connection); goal <= 300 MiB"
exec 3>&-
