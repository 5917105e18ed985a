# modelgate — sourced by bench/profile.sh and bench/cpu_split.sh: the full
# path's throwaway PostgreSQL (fsync off, as in `make bench`), migrated, with
# bench/policy-full.json imported and one API key for its "bench" role.
#   full_path_db RUN MODELGATE   sets DB_URL and FULL_KEY; PG_STARTED=1 once
#                                the cluster runs (stop it with full_path_db_stop RUN)
# Needs PGBIN and a port() function from the caller.
# SPDX-License-Identifier: Apache-2.0
PG_STARTED=0
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
full_path_db() {
    local run=$1 mg=$2 pgp
    [ -x "$PGBIN/initdb" ] || { echo "PostgreSQL not found in $PGBIN (set PGBIN)" >&2; return 2; }
    mkdir -p "$run/pg" "$run/journal"
    if [ "$(id -u)" -eq 0 ]; then chmod 711 "$run"; chown postgres "$run/pg"; fi
    pgp=$(port)
    as_pg "$PGBIN/initdb" -D "$run/pg/data" -A trust -U postgres -E UTF8 --locale=C --no-sync >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$run/pg/data" -l "$run/pg/log" -w -t 30 start \
        -o "-k $run/pg -p $pgp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" >/dev/null
    PG_STARTED=1
    psql -X -q -h 127.0.0.1 -p "$pgp" -U postgres -d postgres -c "CREATE DATABASE modelgate"
    DB_URL="postgresql://postgres@127.0.0.1:$pgp/modelgate"
    printf 'listen: [ { address: "127.0.0.1:1" } ]\ndatabase: { url: "%s" }\nusage: { journal_dir: "%s" }\n' \
        "$DB_URL" "$run/journal" >"$run/cli.yaml"
    "$mg" migrate -c "$run/cli.yaml" >/dev/null
    "$mg" policy import bench/policy-full.json -c "$run/cli.yaml" >/dev/null
    FULL_KEY=$("$mg" keys create --user bench@example.com --role bench --name bench -c "$run/cli.yaml" 2>/dev/null)
    [ -n "$FULL_KEY" ] || { echo "keys create printed no key" >&2; return 1; }
}
full_path_db_stop() {
    [ "$PG_STARTED" = 1 ] || return 0
    as_pg "$PGBIN/pg_ctl" -D "$1/pg/data" -m immediate stop >/dev/null 2>&1 || true
    PG_STARTED=0
}
