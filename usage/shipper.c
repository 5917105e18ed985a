/* modelgate — usage shipper: journal segments -> PostgreSQL, exactly once.
 *
 * One thread, one libpq connection, never touched by workers. Each round it
 * reads records from the checkpoint on (at most 1000 or 8 MiB), COPYs them
 * into a temp table and moves them into usage_events in one statement whose
 * dedup key is usage_request_ids.request_id (ON CONFLICT DO NOTHING) and
 * which adds exactly the inserted rows to usage_rollup_daily, commits,
 * and only then rewrites the checkpoint file (write tmp, fsync, rename, fsync
 * dir). A crash between commit and checkpoint replays the batch; the dedup
 * table makes the replay a no-op, so nothing is counted twice. A row the
 * database rejects for its data (SQLSTATE class 22/23) goes to
 * usage_dead_letter, row by row under savepoints, so the rest of the batch
 * still lands; any other error (DB down, disk full, missing migrations) just
 * retries the whole batch later with backoff.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "usage/usage_int.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BATCH_RECORDS 1000
#define BATCH_BYTES (8u << 20)
#define IDLE_MS 200
#define BACKOFF_MAX_MS 5000

typedef struct ckpt_ent {
    char name[MG_JSEG_NAME_LEN];
    uint64_t seq, off;
} ckpt_ent;

typedef struct rec {
    uint64_t seq, off;       /* where the record starts, for dead-letter provenance */
    size_t pos, len;         /* payload in S->data */
} rec;

typedef struct prog {        /* how far this batch consumed a segment */
    size_t ent;              /* index into S->ck */
    uint64_t off;
} prog;

typedef struct shipper {
    mg_usage_ledger *L;
    PGconn *conn;
    char host[128];
    ckpt_ent *ck; size_t nck, capck;
    bool ck_dirty;
    rec *recs; size_t nrecs;
    prog *progs; size_t nprogs, capprogs;
    mg_buf data, copy;
    char months[64][8]; size_t nmonths;
    bool prices_done;
    uint64_t backoff_ms;
    long crash_after;        /* test hook: SIGKILL after N commits, before the checkpoint */
    long commits;
} shipper;

static const char COLS[] =
    "request_id, ts, subject, email, roles, key_id, cost_center, model, served_model, provider, "
    "upstream_model, status, prompt_tokens, completion_tokens, cost_usd, input_per_mtok, "
    "output_per_mtok, latency_ms, stream, estimated, client_gone, decision, error_code";

/* ---- checkpoint file ------------------------------------------------------ */

static ckpt_ent *ck_find(shipper *S, const char *name, bool create)
{
    for (size_t i = 0; i < S->nck; i++)
        if (strcmp(S->ck[i].name, name) == 0)
            return &S->ck[i];
    if (!create)
        return NULL;
    if (S->nck == S->capck) {
        size_t cap = S->capck ? S->capck * 2 : 16;
        ckpt_ent *n = realloc(S->ck, cap * sizeof *n);
        if (n == NULL) return NULL;
        S->ck = n;
        S->capck = cap;
    }
    ckpt_ent *e = &S->ck[S->nck++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->seq = mg_usage_seg_seq(name);
    return e;
}

static void ck_load(shipper *S)
{
    int fd = openat(S->L->dirfd, "checkpoint", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    FILE *f = fdopen(fd, "r");
    if (f == NULL) { close(fd); return; }
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' ');
        if (sp == NULL) continue;
        *sp = '\0';
        char *end;
        errno = 0;
        unsigned long long off = strtoull(sp + 1, &end, 10);
        if (errno || (*end != '\n' && *end != '\0') || mg_usage_seg_seq(line) == 0)
            continue;
        ckpt_ent *e = ck_find(S, line, true);
        if (e) e->off = off;
    }
    fclose(f);
}

static mg_rc ck_save(shipper *S)
{
    mg_buf b = {0};
    for (size_t i = 0; i < S->nck; i++)
        mg_buf_printf(&b, "%s %llu\n", S->ck[i].name, (unsigned long long)S->ck[i].off);
    mg_rc rc = MG_ERR;
    int fd = openat(S->L->dirfd, "checkpoint.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto out;
    size_t off = 0;
    while (off < b.len) {
        ssize_t n = write(fd, b.p + off, b.len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    bool ok = off == b.len && fsync(fd) == 0;
    close(fd);
    if (ok && renameat(S->L->dirfd, "checkpoint.tmp", S->L->dirfd, "checkpoint") == 0 &&
        fsync(S->L->dirfd) == 0) {
        rc = MG_OK;
        S->ck_dirty = false;
    }
out:
    if (rc != MG_OK)
        mg_log_error("usage shipper: cannot write checkpoint in %s: %s", S->L->dir, strerror(errno));
    mg_buf_free(&b);
    return rc;
}

/* ---- database ------------------------------------------------------------- */

static void db_arm(shipper *S)
{
    mg_usage_ledger *L = S->L;
    uint64_t deadline = mg_now_ms() + L->db_timeout_ms;
    pthread_mutex_lock(&L->mu);
    if (L->stop_ship && L->drain_deadline_ms && L->drain_deadline_ms < deadline)
        deadline = L->drain_deadline_ms;
    pthread_mutex_unlock(&L->mu);
    pthread_mutex_lock(&L->db_mu);
    L->db_sock = PQsocket(S->conn);
    L->db_deadline_ms = deadline;
    pthread_mutex_unlock(&L->db_mu);
}

static void db_disarm(shipper *S)
{
    pthread_mutex_lock(&S->L->db_mu);
    S->L->db_sock = -1;
    S->L->db_deadline_ms = 0;
    pthread_mutex_unlock(&S->L->db_mu);
}

static void db_close(shipper *S)
{
    if (S->conn == NULL)
        return;
    db_disarm(S);
    PQfinish(S->conn);
    S->conn = NULL;
    S->nmonths = 0;
    atomic_store(&S->L->db_connected, false);
}

static PGresult *db_params(shipper *S, const char *sql, int n, const char *const *vals,
                           const int *lens, const int *fmts)
{
    db_arm(S);
    PGresult *r = PQexecParams(S->conn, sql, n, NULL, vals, lens, fmts, 0);
    db_disarm(S);
    return r;
}

/* Runs a statement expecting `want`; on failure copies SQLSTATE into state
 * (may be NULL) and returns false. */
static bool db_ok(shipper *S, PGresult *r, ExecStatusType want, char state[6], mg_buf *errmsg)
{
    bool ok = r && PQresultStatus(r) == want;
    if (!ok) {
        const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        if (state) snprintf(state, 6, "%s", st ? st : "08000");
        const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(S->conn);
        if (errmsg) {
            mg_buf_reset(errmsg);
            mg_buf_append_str(errmsg, m ? m : "unknown error");
            if (mg_buf_append(errmsg, "", 1) == MG_OK)   /* keep it a C string */
                errmsg->len--;
        }
    }
    PQclear(r);
    return ok;
}

static bool db_cmd(shipper *S, const char *sql, char state[6], mg_buf *errmsg)
{
    return db_ok(S, db_params(S, sql, 0, NULL, NULL, NULL), PGRES_COMMAND_OK, state, errmsg);
}

/* Rows fail for their data in classes 22 (data exception) and 23
 * (integrity); anything else is the database's problem, not the row's. */
static bool row_error(const char *state)
{
    return strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0;
}

static bool db_connect(shipper *S)
{
    const char *keys[] = {"connect_timeout", "application_name", "keepalives_idle", "dbname", NULL};
    const char *vals[] = {"5", "modelgate-ledger", "10", S->L->conninfo, NULL};
    S->conn = PQconnectdbParams(keys, vals, 1);
    if (S->conn == NULL || PQstatus(S->conn) != CONNECTION_OK) {
        mg_log_warn("usage shipper: cannot connect to the database: %s",
                    S->conn ? PQerrorMessage(S->conn) : "out of memory");
        db_close(S);
        return false;
    }
    mg_buf err = {0};
    bool ok = db_cmd(S, "CREATE TEMP TABLE mg_ship (seq int NOT NULL, raw text) ON COMMIT DELETE ROWS", NULL, &err);
    if (!ok) {
        mg_log_warn("usage shipper: %s", err.p ? err.p : "setup failed");
        db_close(S);
    } else {
        atomic_store(&S->L->db_connected, true);
    }
    mg_buf_free(&err);
    return ok;
}

/* Config prices become rows in `prices` when they differ from the price in
 * force, so the table is an audit trail of every change. */
static void seed_prices(shipper *S)
{
    mg_usage_ledger *L = S->L;
    mg_buf err = {0};
    char who[200];
    snprintf(who, sizeof who, "config@%s", S->host);
    bool ok = db_cmd(S, "BEGIN", NULL, &err) &&
              db_ok(S, db_params(S, "SELECT pg_advisory_xact_lock(hashtext('modelgate.prices'))", 0, NULL, NULL, NULL),
                    PGRES_TUPLES_OK, NULL, &err);
    for (size_t i = 0; ok && i < L->nprices; i++) {
        char in[64], out[64];
        snprintf(in, sizeof in, "%.10f", L->prices[i].in);
        snprintf(out, sizeof out, "%.10f", L->prices[i].out);
        const char *v[4] = {L->prices[i].model, in, out, who};
        ok = db_ok(S, db_params(S,
            "INSERT INTO prices (model, input_per_mtok, output_per_mtok, effective_from, changed_by) "
            "SELECT $1, $2::numeric, $3::numeric, now(), $4 WHERE NOT EXISTS ("
            " SELECT 1 FROM (SELECT input_per_mtok i, output_per_mtok o FROM prices"
            "  WHERE model = $1 AND effective_from <= now() ORDER BY effective_from DESC LIMIT 1) c"
            " WHERE c.i = $2::numeric AND c.o = $3::numeric)", 4, v, NULL, NULL),
            PGRES_COMMAND_OK, NULL, &err);
    }
    if (ok && db_cmd(S, "COMMIT", NULL, &err)) {
        S->prices_done = true;
    } else {
        mg_log_warn("usage shipper: cannot record prices: %s", err.p ? err.p : "?");
        db_cmd(S, "ROLLBACK", NULL, NULL);
    }
    mg_buf_free(&err);
}

static bool ensure_partitions(shipper *S)
{
    for (size_t i = 0; i < S->nrecs; i++) {
        const char *p = S->data.p + S->recs[i].pos;
        /* payload starts with {"ts":"YYYY-MM (mg_usage_encode) */
        if (S->recs[i].len < 15 || memcmp(p, "{\"ts\":\"", 7) != 0)
            continue;
        char month[8];
        memcpy(month, p + 7, 7);
        month[7] = '\0';
        bool known = false;
        for (size_t k = 0; k < S->nmonths && !known; k++)
            known = memcmp(S->months[k], month, 8) == 0;
        if (known)
            continue;
        char date[16];
        snprintf(date, sizeof date, "%s-01", month);
        const char *v[1] = {date};
        char state[6];
        mg_buf err = {0};
        bool ok = db_ok(S, db_params(S, "SELECT usage_ensure_partition($1::date)", 1, v, NULL, NULL),
                        PGRES_TUPLES_OK, state, &err);
        if (!ok && !row_error(state)) {
            mg_log_warn("usage shipper: cannot create partition for %s: %s", month, err.p ? err.p : "?");
            mg_buf_free(&err);
            return false;
        }
        mg_buf_free(&err);  /* a bad date is the row's problem: dead letter later */
        if (ok && S->nmonths < MG_ARRAY_LEN(S->months))
            memcpy(S->months[S->nmonths++], month, 8);
    }
    return true;
}

static const char MOVE_SQL_HEAD[] =
    "WITH src AS ("
    " SELECT DISTINCT ON (r.request_id) r.*"
    " FROM mg_ship s CROSS JOIN LATERAL jsonb_populate_record(NULL::usage_events, s.raw::jsonb) r"
    " ORDER BY r.request_id, s.seq),"
    " ids AS (INSERT INTO usage_request_ids (request_id, ts) SELECT request_id, ts FROM src"
    " ON CONFLICT DO NOTHING RETURNING request_id),"
    " ins AS (INSERT INTO usage_events (";

/* The rollup is fed from `ins`, i.e. only the rows this statement really
 * inserted, with their values as stored (cost already rounded to
 * numeric(20,10)): a replay inserts nothing and adds nothing, so
 * usage_rollup_daily always sums to exactly usage_events. Groups are
 * upserted in key order so two shippers updating the same rows cannot
 * deadlock each other. */
#define ROLLUP_KEYS "ts, subject, email, roles, key_id, cost_center, model, provider"
static const char MOVE_SQL_TAIL[] =
    ", roll AS (INSERT INTO usage_rollup_daily AS r (day, subject, email, roles, key_id, cost_center,"
    " model, provider, requests, prompt_tokens, completion_tokens, cost_usd)"
    " SELECT (ts AT TIME ZONE 'UTC')::date, subject, email, roles, key_id, cost_center, model, provider,"
    " count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)"
    " FROM ins GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
    " ON CONFLICT (day, subject, email, roles, key_id, cost_center, model, provider) DO UPDATE SET"
    " requests = r.requests + EXCLUDED.requests,"
    " prompt_tokens = r.prompt_tokens + EXCLUDED.prompt_tokens,"
    " completion_tokens = r.completion_tokens + EXCLUDED.completion_tokens,"
    " cost_usd = r.cost_usd + EXCLUDED.cost_usd RETURNING 1)"
    " SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM roll)";

static char move_sql[4096];

static void build_move_sql(void)
{
    /* SELECT list = the column list qualified with src. */
    char sel[1024];
    size_t n = 0;
    const char *p = COLS;
    sel[n++] = ' ';
    while (*p && n < sizeof sel - 8) {
        if (p == COLS || p[-1] == ' ') {
            memcpy(sel + n, "src.", 4);
            n += 4;
        }
        sel[n++] = *p++;
    }
    sel[n] = '\0';
    int len = snprintf(move_sql, sizeof move_sql,
                       "%s%s) SELECT%s FROM src JOIN ids USING (request_id) RETURNING %s)%s",
                       MOVE_SQL_HEAD, COLS, sel, ROLLUP_KEYS ", prompt_tokens, completion_tokens, cost_usd",
                       MOVE_SQL_TAIL);
    if (len < 0 || (size_t)len >= sizeof move_sql)
        abort();   /* a programming error: the constant SQL outgrew its buffer */
}

static void copy_escape(mg_buf *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\') mg_buf_append(b, "\\\\", 2);
        else if (c == '\n') mg_buf_append(b, "\\n", 2);
        else if (c == '\r') mg_buf_append(b, "\\r", 2);
        else if (c == '\t') mg_buf_append(b, "\\t", 2);
        else mg_buf_append(b, &c, 1);
    }
}

static bool move_rows(shipper *S, long long *inserted, char state[6], mg_buf *err)
{
    PGresult *r = db_params(S, move_sql, 0, NULL, NULL, NULL);
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *inserted = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        return true;
    }
    return db_ok(S, r, PGRES_TUPLES_OK, state, err);
}

/* Whole batch in one COPY + one statement: the common case. */
static int ship_bulk(shipper *S, long long *inserted, char state[6], mg_buf *err)
{
    mg_buf_reset(&S->copy);
    for (size_t i = 0; i < S->nrecs; i++) {
        mg_buf_printf(&S->copy, "%zu\t", i);
        copy_escape(&S->copy, S->data.p + S->recs[i].pos, S->recs[i].len);
        mg_buf_append(&S->copy, "\n", 1);
    }
    if (!db_cmd(S, "BEGIN", state, err))
        return -1;
    db_arm(S);
    PGresult *r = PQexec(S->conn, "COPY mg_ship (seq, raw) FROM STDIN");
    bool ok = r && PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    if (ok) {
        ok = PQputCopyData(S->conn, S->copy.p, (int)S->copy.len) == 1;
        ok = PQputCopyEnd(S->conn, ok ? NULL : "client error") == 1 && ok;
        r = PQgetResult(S->conn);
        db_disarm(S);
        ok = db_ok(S, r, PGRES_COMMAND_OK, state, err) && ok;
        while ((r = PQgetResult(S->conn)) != NULL)
            PQclear(r);
    } else {
        db_disarm(S);
        snprintf(state, 6, "08000");
    }
    if (ok)
        ok = move_rows(S, inserted, state, err) && db_cmd(S, "COMMIT", state, err);
    if (!ok) {
        db_cmd(S, "ROLLBACK", NULL, NULL);
        return row_error(state) ? 1 : -1;
    }
    return 0;
}

/* One row at a time under savepoints, so one bad row cannot sink the rest. */
static bool ship_rows(shipper *S, long long *inserted, long long *dead)
{
    char state[6];
    mg_buf err = {0};
    bool ok = db_cmd(S, "BEGIN", state, &err);
    for (size_t i = 0; ok && i < S->nrecs; i++) {
        rec *rc = &S->recs[i];
        char *raw = strndup(S->data.p + rc->pos, rc->len);
        if (raw == NULL) { ok = false; break; }
        const char *v[2] = {"0", raw};
        long long n = 0;
        ok = db_cmd(S, "SAVEPOINT mg_row", state, &err);
        bool row_ok = ok &&
            db_ok(S, db_params(S, "INSERT INTO mg_ship (seq, raw) VALUES ($1::int, $2)", 2, v, NULL, NULL),
                  PGRES_COMMAND_OK, state, &err) &&
            move_rows(S, &n, state, &err) &&
            db_cmd(S, "DELETE FROM mg_ship", state, &err);
        if (ok && row_ok) {
            ok = db_cmd(S, "RELEASE SAVEPOINT mg_row", state, &err);
            *inserted += n;
        } else if (ok && row_error(state)) {
            char src[512];
            snprintf(src, sizeof src, "%s:%s/seg-%016llu@%llu", S->host, S->L->dir,
                     (unsigned long long)rc->seq, (unsigned long long)rc->off);
            const char *dv[3] = {src, S->data.p + rc->pos, err.p ? err.p : "rejected"};
            int lens[3] = {0, (int)rc->len, 0};
            int fmts[3] = {0, 1, 0};
            mg_log_warn("usage shipper: row at %s rejected (%s), sent to usage_dead_letter", src, state);
            PGresult *r;
            ok = db_cmd(S, "ROLLBACK TO SAVEPOINT mg_row", state, &err) &&
                 (r = db_params(S, "INSERT INTO usage_dead_letter (source, raw, error) VALUES ($1, $2, $3) "
                                   "ON CONFLICT (source) DO NOTHING", 3, dv, lens, fmts)) != NULL;
            if (ok) {
                ok = PQresultStatus(r) == PGRES_COMMAND_OK;
                if (ok) *dead += strtoll(PQcmdTuples(r), NULL, 10);
                PQclear(r);
            }
        } else {
            ok = false;
        }
        free(raw);
    }
    ok = ok && db_cmd(S, "COMMIT", state, &err);
    if (!ok) {
        mg_log_warn("usage shipper: batch failed, will retry: %s", err.p ? err.p : "?");
        if (S->conn) db_cmd(S, "ROLLBACK", NULL, NULL);
    }
    mg_buf_free(&err);
    return ok;
}

/* ---- reading the journal -------------------------------------------------- */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **list_segments(shipper *S, size_t *n)
{
    *n = 0;
    int fd = openat(S->L->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0) close(fd);
        return NULL;
    }
    char **v = NULL;
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (mg_usage_seg_seq(de->d_name) == 0)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(v, cap * sizeof *nv);
            if (nv == NULL) break;
            v = nv;
        }
        if ((v[*n] = strdup(de->d_name)) != NULL)
            (*n)++;
    }
    closedir(d);
    if (*n) qsort(v, *n, sizeof *v, cmp_name);
    return v;
}

static void add_prog(shipper *S, size_t ent, uint64_t off)
{
    if (S->nprogs && S->progs[S->nprogs - 1].ent == ent) {
        S->progs[S->nprogs - 1].off = off;
        return;
    }
    if (S->nprogs == S->capprogs) {
        size_t cap = S->capprogs ? S->capprogs * 2 : 16;
        prog *p = realloc(S->progs, cap * sizeof *p);
        if (p == NULL) return;
        S->progs = p;
        S->capprogs = cap;
    }
    S->progs[S->nprogs++] = (prog){ent, off};
}

/* Reads one segment from its checkpoint into the batch; false when the
 * batch is full. */
static bool read_segment(shipper *S, ckpt_ent *e, uint64_t limit, bool closed, uint64_t *pending)
{
    if (limit <= e->off)
        return true;
    *pending += limit - e->off;
    if (S->L->conninfo == NULL)
        return true;   /* journal only: nothing to ship to, just account */
    if (S->nrecs >= BATCH_RECORDS || S->data.len >= BATCH_BYTES)
        return false;
    size_t want = (size_t)(limit - e->off);
    if (want > BATCH_BYTES - S->data.len)
        want = BATCH_BYTES - S->data.len;
    bool at_eof = closed && e->off + want == limit;
    int fd = openat(S->L->dirfd, e->name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true;
    uint8_t *buf = malloc(want ? want : 1);
    ssize_t got = buf ? pread(fd, buf, want, (off_t)e->off) : -1;
    close(fd);
    if (got != (ssize_t)want) {
        free(buf);
        return true;
    }
    size_t ent = (size_t)(e - S->ck);
    size_t pos = 0;
    uint64_t skipped = 0;
    bool room = true;
    while (pos < want) {
        if (S->nrecs >= BATCH_RECORDS) { room = false; break; }
        const uint8_t *pl;
        size_t plen, used;
        mg_jdec d = mg_usage_decode(buf + pos, want - pos, at_eof, &pl, &plen, &used);
        if (d == MG_JDEC_NEED_MORE)
            break;
        if (d == MG_JDEC_CORRUPT) {
            skipped += used;
            pos += used;
            add_prog(S, ent, e->off + pos);
            continue;
        }
        S->recs[S->nrecs++] = (rec){e->seq, e->off + pos, S->data.len, plen};
        mg_buf_append(&S->data, pl, plen);
        pos += used;
        add_prog(S, ent, e->off + pos);
    }
    free(buf);
    if (skipped) {
        atomic_fetch_add(&S->L->corrupt, skipped);
        mg_log_warn("usage shipper: skipped %llu corrupt bytes in %s", (unsigned long long)skipped, e->name);
    }
    return room && want == (size_t)(limit - e->off);
}

/* Collects a batch; deletes closed segments already fully shipped. */
static void collect(shipper *S)
{
    mg_usage_ledger *L = S->L;
    S->nrecs = 0;
    S->nprogs = 0;
    mg_buf_reset(&S->data);
    size_t n;
    char **names = list_segments(S, &n);
    /* 1. forget checkpoint entries whose file is gone */
    for (size_t i = 0; i < S->nck;) {
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++)
            seen = strcmp(names[k], S->ck[i].name) == 0;
        if (!seen) {
            S->ck[i] = S->ck[--S->nck];
            S->ck_dirty = true;
        } else {
            i++;
        }
    }
    /* 2. sizes; delete closed segments that are fully shipped. Entries move
     * only here, before any batch progress points at them. */
    uint64_t *limits = calloc(n ? n : 1, sizeof *limits);
    bool *closed = calloc(n ? n : 1, sizeof *closed);
    uint64_t total = 0, pending = 0;
    for (size_t i = 0; limits && closed && i < n; i++) {
        ckpt_ent *e = ck_find(S, names[i], true);
        if (e == NULL) continue;
        uint64_t limit = 0;
        bool active = mg_usage_seg_active(L, e->seq, &limit);
        struct stat st;
        if (fstatat(L->dirfd, e->name, &st, 0) != 0)
            continue;
        if (!active && e->off >= (uint64_t)st.st_size && unlinkat(L->dirfd, e->name, 0) == 0) {
            *e = S->ck[--S->nck];
            S->ck_dirty = true;
            free(names[i]);
            names[i] = NULL;
            continue;
        }
        total += (uint64_t)st.st_size;
        limits[i] = active ? limit : (uint64_t)st.st_size;
        closed[i] = !active;
    }
    /* 3. read from the checkpoints, oldest segment first */
    bool room = true;
    for (size_t i = 0; limits && closed && i < n; i++) {
        ckpt_ent *e = names[i] ? ck_find(S, names[i], false) : NULL;
        if (e == NULL)
            continue;
        if (room)
            room = read_segment(S, e, limits[i], closed[i], &pending);
        else if (limits[i] > e->off)
            pending += limits[i] - e->off;
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    free(limits);
    free(closed);
    atomic_store(&L->pending_bytes, pending);
    atomic_store(&L->journal_bytes, total);
}

static void commit_progress(shipper *S)
{
    for (size_t i = 0; i < S->nprogs; i++)
        if (S->progs[i].ent < S->nck)
            S->ck[S->progs[i].ent].off = S->progs[i].off;
    if (S->nprogs)
        S->ck_dirty = true;
    uint64_t ours = 0;
    for (size_t i = 0; i < S->nrecs; i++)
        if (S->recs[i].seq >= S->L->first_seq) ours++;
    atomic_fetch_add(&S->L->acked_ours, ours);
}

/* ---- thread --------------------------------------------------------------- */

static bool wait_ms(mg_usage_ledger *L, uint64_t ms)
{
    pthread_mutex_lock(&L->mu);
    if (!L->stop_ship) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)(ms / 1000);
        ts.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&L->cv, &L->mu, &ts);
    }
    bool stop = L->stop_ship;
    pthread_mutex_unlock(&L->mu);
    return stop;
}

static bool ship_batch(shipper *S)
{
    if (S->conn == NULL && !db_connect(S))
        return false;
    if (!S->prices_done)
        seed_prices(S);
    if (!ensure_partitions(S))
        goto fail;
    long long inserted = 0, dead = 0;
    char state[6] = "";
    mg_buf err = {0};
    int rc = ship_bulk(S, &inserted, state, &err);
    if (rc < 0)
        mg_log_warn("usage shipper: batch failed (%s), will retry: %s%s", state, err.p ? err.p : "?",
                    strcmp(state, "42P01") == 0 ? " (schema out of date: run `modelgate migrate`)" : "");
    mg_buf_free(&err);
    if (rc < 0)
        goto fail;
    if (rc > 0) {
        inserted = 0;
        if (!ship_rows(S, &inserted, &dead))
            goto fail;
    }
    S->commits++;
    if (S->crash_after > 0 && S->commits >= S->crash_after)
        raise(SIGKILL);  /* test hook: die between the commit and the checkpoint */
    commit_progress(S);
    ck_save(S);
    atomic_fetch_add(&S->L->shipped, (uint64_t)inserted);
    atomic_fetch_add(&S->L->dead, (uint64_t)dead);
    uint64_t dup = S->nrecs - (uint64_t)inserted - (uint64_t)dead;
    atomic_fetch_add(&S->L->duplicate, dup);
    atomic_store(&S->L->last_ship_ms, mg_usage_wall_ms());
    S->backoff_ms = 0;
    return true;
fail:
    db_close(S);  /* a fresh session: no half-done transaction survives */
    return false;
}

void *mg_usage_ship_main(void *arg)
{
    mg_usage_ledger *L = arg;
    shipper S = {.L = L};
    if (gethostname(S.host, sizeof S.host) != 0)
        snprintf(S.host, sizeof S.host, "localhost");
    S.host[sizeof S.host - 1] = '\0';
    const char *crash = getenv("MODELGATE_TEST_CRASH_AFTER_COMMITS");
    S.crash_after = crash ? strtol(crash, NULL, 10) : 0;
    S.recs = calloc(BATCH_RECORDS, sizeof *S.recs);
    build_move_sql();
    ck_load(&S);
    bool stop = false;
    while (S.recs) {
        collect(&S);
        bool drained = S.nrecs == 0 && S.nprogs == 0;
        if (S.nprogs && S.nrecs == 0) {   /* only corrupt bytes: just checkpoint */
            commit_progress(&S);
            ck_save(&S);
        }
        if (S.ck_dirty && S.nrecs == 0)
            ck_save(&S);
        if (stop && (drained || mg_now_ms() >= L->drain_deadline_ms || L->conninfo == NULL))
            break;
        if (S.nrecs == 0 || L->conninfo == NULL) {
            stop = wait_ms(L, IDLE_MS) || stop;
            continue;
        }
        bool full = S.nrecs >= BATCH_RECORDS;
        if (ship_batch(&S)) {
            if (!full)
                stop = wait_ms(L, IDLE_MS) || stop;
            else {
                pthread_mutex_lock(&L->mu);
                stop = L->stop_ship;
                pthread_mutex_unlock(&L->mu);
            }
            continue;
        }
        S.backoff_ms = S.backoff_ms ? S.backoff_ms * 2 : 100;
        if (S.backoff_ms > BACKOFF_MAX_MS) S.backoff_ms = BACKOFF_MAX_MS;
        if (stop)
            break;   /* draining and the database is not taking rows: the journal keeps them */
        stop = wait_ms(L, S.backoff_ms);
    }
    if (S.ck_dirty)
        ck_save(&S);
    db_close(&S);
    free(S.recs);
    free(S.ck);
    free(S.progs);
    mg_buf_free(&S.data);
    mg_buf_free(&S.copy);
    return NULL;
}
