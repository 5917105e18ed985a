# modelgate — sourced by bench/run.sh, bench/profile.sh and bench/cpu_split.sh:
# the full path's throwaway PostgreSQL (fsync off), migrated, with
# bench/policy-full.json imported and one API key for its "bench" role.
#   full_path_db RUN MODELGATE   sets DB_URL and FULL_KEY; PG_STARTED=1 once
#                                the cluster runs (stop it with full_path_db_stop RUN);
#                                on failure returns 1 with the reason in FULL_PATH_ERR
#                                (the tools' output is kept in RUN)
# Needs PGBIN and a port() function (a free loopback port) from the caller.
# SPDX-License-Identifier: Apache-2.0
PG_STARTED=0
FULL_PATH_ERR=""
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
full_path_db() {
    local run=$1 mg=$2 pgp
    [ -x "$PGBIN/initdb" ] || { FULL_PATH_ERR="PostgreSQL not found in $PGBIN (set PGBIN)"; return 1; }
    mkdir -p "$run/pg" "$run/journal"
    if [ "$(id -u)" -eq 0 ]; then
        chmod 711 "$run"   # the postgres user must reach its data directory inside
        chown postgres "$run/pg"
    fi
    pgp=$(port) || { FULL_PATH_ERR="no free port"; return 1; }
    as_pg "$PGBIN/initdb" -D "$run/pg/data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
        >"$run/pg-initdb.out" 2>&1 || { FULL_PATH_ERR="initdb failed"; return 1; }
    as_pg "$PGBIN/pg_ctl" -D "$run/pg/data" -l "$run/pg/log" -w -t 30 start \
        -o "-k $run/pg -p $pgp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" \
        >/dev/null 2>&1 || { FULL_PATH_ERR="PostgreSQL did not start: $(tail -n 2 "$run/pg/log" 2>/dev/null | tr '\n' ' ')"; return 1; }
    PG_STARTED=1
    psql -X -q -h 127.0.0.1 -p "$pgp" -U postgres -d postgres -c "CREATE DATABASE modelgate" >/dev/null 2>&1 ||
        { FULL_PATH_ERR="CREATE DATABASE failed"; return 1; }
    DB_URL="postgresql://postgres@127.0.0.1:$pgp/modelgate"
    printf 'listen: [ { address: "127.0.0.1:1" } ]\ndatabase: { url: "%s" }\nusage: { journal_dir: "%s" }\n' \
        "$DB_URL" "$run/journal" >"$run/cli.yaml"
    "$mg" migrate -c "$run/cli.yaml" >"$run/migrate.out" 2>&1 ||
        { FULL_PATH_ERR="migrate failed: $(tail -n 2 "$run/migrate.out" | tr '\n' ' ')"; return 1; }
    "$mg" policy import bench/policy-full.json -c "$run/cli.yaml" >"$run/policy.out" 2>&1 ||
        { FULL_PATH_ERR="policy import failed: $(tail -n 2 "$run/policy.out" | tr '\n' ' ')"; return 1; }
    FULL_KEY=$("$mg" keys create --user bench@example.com --role bench --name bench \
        -c "$run/cli.yaml" 2>"$run/keys.err") || { FULL_PATH_ERR="keys create failed: $(head -c 200 "$run/keys.err")"; FULL_KEY=""; return 1; }
    [ -n "$FULL_KEY" ] || { FULL_PATH_ERR="keys create printed no key"; return 1; }
}
full_path_db_stop() {
    [ "$PG_STARTED" = 1 ] || return 0
    as_pg "$PGBIN/pg_ctl" -D "$1/pg/data" -m immediate stop >/dev/null 2>&1 || true
    PG_STARTED=0
}
