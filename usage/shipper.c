/* modelgate — usage shipper: journal segments -> PostgreSQL, exactly once.
 *
 * One thread, one libpq connection, never touched by workers. Each round it
 * reads records from the checkpoint on (at most 5000 or 16 MiB), leaves out
 * start records whose final is in the same batch (mg_usage_coalesce), parses
 * the rest here and COPYs them as typed rows into a temp table (PostgreSQL parsing
 * the JSON cost more than the inserts), then one multi-statement round trip
 * dedups them against usage_request_ids (request_id unique), inserts the new
 * ones into usage_events, replaces a stored start record by its final one
 * (never the other way round), moves usage_rollup_daily by exactly the
 * difference, and commits; only then is the checkpoint file rewritten
 * (write tmp, fsync, rename, fsync dir). A crash between commit and
 * checkpoint replays the batch; the dedup table makes the replay a no-op, so
 * nothing is counted twice. A row the database rejects for its data
 * (SQLSTATE class 22/23, or a record that is not a JSON object) goes to
 * usage_dead_letter, row by row under savepoints, so the rest of the batch
 * still lands; any other error (DB down, disk full, missing migrations) just
 * retries the whole batch later with backoff.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "usage/usage_int.h"
#include "log.h"

#include <cjson/cJSON.h>

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

#define BATCH_RECORDS 5000
#define BATCH_BYTES (16u << 20)
#define IDLE_MS 200
#define BACKOFF_MAX_MS 5000

typedef struct ckpt_ent {
    char name[MG_JSEG_NAME_LEN];
    uint64_t seq, off;
} ckpt_ent;

typedef mg_usage_rec rec;   /* seq/off: where the record starts (dead-letter provenance); pos/len: payload in S->data */

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
    bool *drop;              /* per record: a start superseded in this batch (mg_usage_coalesce) */
    mg_usage_idset ids;
    prog *progs; size_t nprogs, capprogs;
    mg_buf data, copy;
    char months[64][8]; size_t nmonths;
    uint64_t prices_gen;     /* L->prices_gen recorded in `prices` (0: none yet) */
    uint64_t price_retry_ms; /* no traffic and prices to record: next try (monotonic) */
    uint64_t backoff_ms;
    long crash_after;        /* test hook: SIGKILL after N commits, before the checkpoint */
    long commits;
} shipper;

/* The staging table mirrors usage_events' columns in the journal record's
 * field order; FIELDS drives both the C parser and the COPY. */
typedef enum ftype { F_TEXT, F_INT, F_NUM, F_BOOL, F_JSON } ftype;
static const struct { const char *name; ftype t; } FIELDS[] = {
    {"request_id", F_TEXT}, {"ts", F_TEXT}, {"subject", F_TEXT}, {"email", F_TEXT},
    {"roles", F_TEXT}, {"key_id", F_TEXT}, {"cost_center", F_TEXT}, {"model", F_TEXT},
    {"served_model", F_TEXT}, {"provider", F_TEXT}, {"upstream_model", F_TEXT},
    {"status", F_INT}, {"prompt_tokens", F_INT}, {"completion_tokens", F_INT},
    {"cost_usd", F_NUM}, {"input_per_mtok", F_NUM}, {"output_per_mtok", F_NUM},
    {"latency_ms", F_INT}, {"stream", F_BOOL}, {"estimated", F_BOOL}, {"client_gone", F_BOOL},
    {"incomplete", F_BOOL}, {"decision", F_JSON}, {"error_code", F_TEXT},
};


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

/* Several statements in one round trip (simple query protocol). */
static bool db_multi(shipper *S, const char *sql, char state[6], mg_buf *errmsg)
{
    db_arm(S);
    PGresult *r = PQexec(S->conn, sql);
    db_disarm(S);
    return db_ok(S, r, PGRES_COMMAND_OK, state, errmsg);
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
    /* Typed like usage_events, so the values the rollup sums are the values
     * stored (cost rounded to numeric(20,10) the same way). */
    bool ok = db_multi(S,
        "CREATE TEMP TABLE mg_ship (seq int NOT NULL, request_id text, ts timestamptz, subject text,"
        " email text, roles text, key_id text, cost_center text, model text, served_model text,"
        " provider text, upstream_model text, status integer, prompt_tokens bigint,"
        " completion_tokens bigint, cost_usd numeric(20,10), input_per_mtok numeric(20,10),"
        " output_per_mtok numeric(20,10), latency_ms bigint, stream boolean, estimated boolean,"
        " client_gone boolean, incomplete boolean, decision jsonb, error_code text) ON COMMIT DELETE ROWS;"
        /* mg_ids: no primary key, DISTINCT ON makes its ids unique and no
         * plan reads an index on it; keeping one up was ~40% of its INSERT.
         * NOT NULL keeps a record without request_id a class-23 row error. */
        "CREATE TEMP TABLE mg_ids (request_id text NOT NULL, seq int NOT NULL, ts timestamptz,"
        " incomplete boolean, old_ts timestamptz, old_incomplete boolean) ON COMMIT DELETE ROWS;"
        "CREATE TEMP TABLE mg_old (day date, subject text, email text, roles text, key_id text,"
        " cost_center text, model text, provider text, prompt_tokens bigint, completion_tokens bigint,"
        " cost_usd numeric) ON COMMIT DELETE ROWS", NULL, &err);
    if (!ok) {
        mg_log_warn("usage shipper: %s", err.p ? err.p : "setup failed");
        db_close(S);
    } else {
        atomic_store(&S->L->db_connected, true);
    }
    mg_buf_free(&err);
    return ok;
}

static void free_prices_copy(mg_usage_price *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].model);
    free(v);
}

static _Atomic(mg_usage_audit_fn) g_audit;

void mg_usage_set_audit(mg_usage_audit_fn fn) { atomic_store(&g_audit, fn); }

/* Appends a price.change entry to the policy audit chain when its table
 * exists; otherwise the `prices` row itself (append-only, changed_by,
 * effective_from) is the record. False on a database error. */
static bool audit_price(shipper *S, const char *who, const mg_usage_price *p, const char *old_in,
                        const char *old_out, const char *eff, mg_buf *err)
{
    mg_usage_audit_fn append = atomic_load(&g_audit);
    if (append == NULL)
        return true;
    PGresult *r = db_params(S, "SELECT to_regclass('audit_log') IS NOT NULL", 0, NULL, NULL, NULL);
    bool have = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    if (!db_ok(S, r, PGRES_TUPLES_OK, NULL, err) && r == NULL)
        return false;
    if (!have)
        return true;
    char before[256] = "", after[256];
    if (old_in)
        snprintf(before, sizeof before, "{\"input_per_mtok\":%s,\"output_per_mtok\":%s}", old_in, old_out);
    snprintf(after, sizeof after, "{\"input_per_mtok\":%.10f,\"output_per_mtok\":%.10f,\"effective_from\":\"%s\"}",
             p->in, p->out, eff);
    db_arm(S);
    mg_rc rc = append(S->conn, who, "price.change", p->model, old_in ? before : NULL, after, -1, err);
    db_disarm(S);
    return rc == MG_OK;
}

/* Config prices become rows in `prices` when they differ from the row in
 * force at the time they took effect (the start, or the reload that changed
 * them), so the table is the history of every change; rows are only ever
 * added. Each added row is audited (audit_price). */
static void seed_prices(shipper *S)
{
    mg_usage_ledger *L = S->L;
    pthread_mutex_lock(&L->mu);
    uint64_t gen = L->prices_gen;
    int64_t eff_ms = L->prices_eff_ms;
    size_t n = L->nprices;
    mg_usage_price *v = calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; v && i < n; i++) {
        v[i] = L->prices[i];
        v[i].model = strdup(L->prices[i].model);
        if (v[i].model == NULL) { n = i; gen = 0; break; }
    }
    pthread_mutex_unlock(&L->mu);
    if (v == NULL)
        return;
    mg_buf err = {0};
    char who[200], eff[64];
    snprintf(who, sizeof who, "config@%s", S->host);
    snprintf(eff, sizeof eff, "%lld", (long long)eff_ms);
    bool ok = gen != 0 && db_cmd(S, "BEGIN", NULL, &err) &&
              db_ok(S, db_params(S, "SELECT pg_advisory_xact_lock(hashtext('modelgate.prices'))", 0, NULL, NULL, NULL),
                    PGRES_TUPLES_OK, NULL, &err);
    for (size_t i = 0; ok && i < n; i++) {
        char in[64], out[64];
        snprintf(in, sizeof in, "%.10f", v[i].in);
        snprintf(out, sizeof out, "%.10f", v[i].out);
        const char *pv[5] = {v[i].model, in, out, who, eff};
        /* the row in force at eff, and whether ours differs from it */
        PGresult *r = db_params(S,
            "WITH cur AS (SELECT input_per_mtok i, output_per_mtok o FROM prices WHERE model = $1"
            "  AND effective_from <= to_timestamp($5::bigint / 1000.0) ORDER BY effective_from DESC LIMIT 1),"
            " ins AS (INSERT INTO prices (model, input_per_mtok, output_per_mtok, effective_from, changed_by)"
            "  SELECT $1, $2::numeric, $3::numeric, to_timestamp($5::bigint / 1000.0), $4"
            "  WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.i = $2::numeric AND cur.o = $3::numeric)"
            "  ON CONFLICT (model, effective_from) DO NOTHING"
            "  RETURNING to_char(effective_from AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))"
            " SELECT (SELECT i::text FROM cur), (SELECT o::text FROM cur), (SELECT * FROM ins)", 5, pv, NULL, NULL);
        if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            if (!PQgetisnull(r, 0, 2)) {
                bool had = !PQgetisnull(r, 0, 0);
                char oi[64], oo[64], when[64];
                snprintf(oi, sizeof oi, "%s", had ? PQgetvalue(r, 0, 0) : "");
                snprintf(oo, sizeof oo, "%s", had ? PQgetvalue(r, 0, 1) : "");
                snprintf(when, sizeof when, "%s", PQgetvalue(r, 0, 2));
                PQclear(r);
                ok = audit_price(S, who, &v[i], had ? oi : NULL, had ? oo : NULL, when, &err);
            } else {
                PQclear(r);
            }
        } else {
            ok = db_ok(S, r, PGRES_TUPLES_OK, NULL, &err);
            if (ok) ok = false;
        }
    }
    if (ok && db_cmd(S, "COMMIT", NULL, &err)) {
        S->prices_gen = gen;
    } else if (gen != 0) {
        mg_log_warn("usage shipper: cannot record prices: %s", err.p ? err.p : "?");
        db_cmd(S, "ROLLBACK", NULL, NULL);
    }
    free_prices_copy(v, n);
    mg_buf_free(&err);
}

static bool prices_pending(shipper *S)
{
    pthread_mutex_lock(&S->L->mu);
    bool p = S->prices_gen != S->L->prices_gen;
    pthread_mutex_unlock(&S->L->mu);
    return p;
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

/* ---- one batch: parse, COPY, move ------------------------------------------ */

/* COPY text escaping; the table marks the bytes that need it. */
static const char COPY_ESC[256] = {['\\'] = '\\', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};

static void copy_escape(mg_buf *b, const char *p, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        char e = COPY_ESC[(unsigned char)p[i]];
        if (e == 0)
            continue;
        mg_buf_append(b, p + run, i - run);
        char two[2] = {'\\', e};
        mg_buf_append(b, two, 2);
        run = i + 1;
    }
    mg_buf_append(b, p + run, n - run);
}

bool mg_usage_copy_line_slow(mg_buf *b, size_t seq, const char *raw, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(raw, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return false;
    }
    mg_buf_printf(b, "%zu", seq);
    for (size_t f = 0; f < MG_ARRAY_LEN(FIELDS); f++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, FIELDS[f].name);
        mg_buf_append(b, "\t", 1);
        if (v == NULL || cJSON_IsNull(v)) {
            if (strcmp(FIELDS[f].name, "incomplete") == 0)
                mg_buf_append(b, "f", 1);    /* records from before start records existed */
            else
                mg_buf_append(b, "\\N", 2);
        } else if (FIELDS[f].t == F_JSON) {
            char *t = cJSON_PrintUnformatted(v);
            if (t) copy_escape(b, t, strlen(t));
            free(t);
        } else if (cJSON_IsString(v)) {
            copy_escape(b, v->valuestring, strlen(v->valuestring));
        } else if (cJSON_IsBool(v)) {
            mg_buf_append(b, cJSON_IsTrue(v) ? "t" : "f", 1);
        } else if (cJSON_IsNumber(v) && FIELDS[f].t == F_INT && v->valuedouble == (double)(long long)v->valuedouble) {
            mg_buf_printf(b, "%lld", (long long)v->valuedouble);
        } else if (cJSON_IsNumber(v)) {
            mg_buf_printf(b, "%.17g", v->valuedouble);
        } else {
            char *t = cJSON_PrintUnformatted(v);   /* an object or array where a scalar belongs */
            if (t) copy_escape(b, t, strlen(t));
            free(t);
        }
    }
    mg_buf_append(b, "\n", 1);
    cJSON_Delete(j);
    return true;
}

/* ---- the fast path: the records our encoder writes, without cJSON ---------
 * A record is scanned once: each known key's value is located and checked
 * to be a form whose COPY text is obviously the same as the cJSON path's
 * (plain strings with simple escapes, integers of at most 15 digits,
 * decimals with at most 5 integer digits -- after numeric(20,10) rounding
 * the literal and cJSON's %.17g store the same value --, true/false/null,
 * a decision in cJSON's compact print form). Anything else (whitespace,
 * unknown or repeated keys, surrogate escapes, other shapes, old or foreign
 * records) makes the whole record take the cJSON path, so the rows are
 * identical either way; tests/unit/test_usage_encode.c compares the two. */

/* Where each field's value is in one record: raw[off, off + n), and its
 * kind: 's' string with escapes, 'p' string without any backslash, 'n'
 * number, 't' true, 'f' false, 'z' null, 'j' compact JSON; 0 absent.
 * Offsets fit 32 bits: a payload is at most MG_JREC_MAX. */
#define NFIELDS 24
struct mg_usage_walk {
    uint32_t off[NFIELDS], n[NFIELDS];
    char kind[NFIELDS];
};
_Static_assert(NFIELDS == sizeof FIELDS / sizeof FIELDS[0], "NFIELDS");
enum { F_REQUEST_ID = 0, F_TS = 1, F_INCOMPLETE = 21 };

static bool field_is(int f, const char *k, size_t n)
{
    return f >= 0 && (size_t)f < MG_ARRAY_LEN(FIELDS) && strlen(FIELDS[f].name) == n &&
           memcmp(FIELDS[f].name, k, n) == 0;
}

/* prev: the previous key's field. The encoder writes ts, request_id, then
 * FIELDS' order, so the guess is nearly always right. */
static int field_index(const char *k, size_t n, int prev)
{
    int guess = prev < 0 ? 1 : prev == 1 ? 0 : prev == 0 ? 2 : prev + 1;
    if (field_is(guess, k, n))
        return guess;
    for (int f = 0; f < (int)MG_ARRAY_LEN(FIELDS); f++)
        if (field_is(f, k, n))
            return f;
    return -1;
}

/* bytes that end a run of plain string bytes: quote, backslash, controls */
static const uint8_t STR_STOP[256] = {[0x00 ... 0x1F] = 1, ['"'] = 1, ['\\'] = 1};

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* The first byte of s[0..end) that is a quote, a backslash or a control
 * byte, or end. 16 bytes a step while 16 remain (never reads past end). */
static inline const char *skip_plain(const char *s, const char *end)
{
#ifdef __SSE2__
    const __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1F);
    while (end - s >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)s);
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)),
                                 _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v));   /* v <= 0x1F unsigned */
        unsigned bits = (unsigned)_mm_movemask_epi8(m);
        if (bits)
            return s + __builtin_ctz(bits);
        s += 16;
    }
#endif
    while (s < end && !STR_STOP[(unsigned char)*s])
        s++;
    return s;
}

/* A JSON string at s[0] == '"' whose unescaping is simple (no \u0000, no
 * surrogates, no raw control bytes); returns its end (after the closing
 * quote) or NULL. *esc: whether it has any backslash escape. */
static const char *scan_str(const char *s, const char *end, bool *esc)
{
    *esc = false;
    for (s++; s < end; s++) {
        s = skip_plain(s, end);
        if (s >= end)
            return NULL;
        unsigned char c = (unsigned char)*s;
        if (c == '"')
            return s + 1;
        if (c < 0x20)
            return NULL;
        *esc = true;   /* c == '\\' */
        if (++s >= end)
            return NULL;
        switch (*s) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            break;
        case 'u': {
            if (end - s < 5)
                return NULL;
            unsigned v = 0;
            for (int i = 1; i <= 4; i++) {
                char h = s[i];
                v = v << 4 | (unsigned)(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                        : h >= 'A' && h <= 'F' ? h - 'A' + 10 : 99);
                if (v > 0xFFFF) return NULL;
            }
            if (v == 0 || (v >= 0xD800 && v <= 0xDFFF))
                return NULL;
            s += 4;
            break;
        }
        default:
            return NULL;
        }
    }
    return NULL;
}

/* A string without any backslash, as cJSON prints it back. */
static const char *scan_plain_str(const char *s, const char *end)
{
    for (s++; s < end; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"') return s + 1;
        if (c < 0x20 || c == '\\') return NULL;
    }
    return NULL;
}

/* -?digits[.digits]; *intd / *fracd get the digit counts (fracd -1: no
 * fraction). Leading zeros and "-0" are refused (cJSON prints them back
 * differently). */
static const char *scan_num(const char *s, const char *end, int *intd, int *fracd)
{
    const char *p = s;
    if (p < end && *p == '-') p++;
    const char *d0 = p;
    while (p < end && *p >= '0' && *p <= '9') p++;
    *intd = (int)(p - d0);
    if (*intd == 0 || (*intd > 1 && *d0 == '0'))
        return NULL;
    if (*s == '-' && *intd == 1 && *d0 == '0' && !(p < end && *p == '.'))
        return NULL;
    *fracd = -1;
    if (p < end && *p == '.') {
        const char *f0 = ++p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        *fracd = (int)(p - f0);
        if (*fracd == 0) return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E'))
        return NULL;
    return p;
}

/* A value in the form cJSON_PrintUnformatted would print it back: compact,
 * plain strings, small integers. depth bounds the recursion. */
static const char *scan_canon(const char *s, const char *end, int depth)
{
    if (s >= end || depth > 16)
        return NULL;
    switch (*s) {
    case '"':
        return scan_plain_str(s, end);
    case 't': return end - s >= 4 && memcmp(s, "true", 4) == 0 ? s + 4 : NULL;
    case 'f': return end - s >= 5 && memcmp(s, "false", 5) == 0 ? s + 5 : NULL;
    case 'n': return end - s >= 4 && memcmp(s, "null", 4) == 0 ? s + 4 : NULL;
    case '[': case '{': {
        char close = *s == '[' ? ']' : '}';
        bool obj = *s == '{';
        s++;
        if (s < end && *s == close)
            return s + 1;
        for (;;) {
            if (obj) {
                if (s >= end || *s != '"' || (s = scan_plain_str(s, end)) == NULL || s >= end || *s != ':')
                    return NULL;
                s++;
            }
            if ((s = scan_canon(s, end, depth + 1)) == NULL || s >= end)
                return NULL;
            if (*s == close)
                return s + 1;
            if (*s++ != ',')
                return NULL;
        }
    }
    default: {
        int id, fd;
        const char *e = scan_num(s, end, &id, &fd);
        return e && fd < 0 && id <= 9 ? e : NULL;   /* cJSON prints these with %d */
    }
    }
}

static char hexv(char h)
{
    return (char)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
}

/* The emitters below write into room reserved beforehand: at most two
 * bytes out per byte of the record (COPY escaping doubles a byte; a \uXXXX
 * escape is six bytes in, at most three out). */
static char *put_copy_escaped(char *d, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char e = COPY_ESC[(unsigned char)p[i]];
        if (e) { *d++ = '\\'; *d++ = e; }
        else *d++ = p[i];
    }
    return d;
}

/* bytes that end a run copied as is: backslash and what COPY escapes */
static const uint8_t UNESC_STOP[256] = {['\\'] = 1, ['\n'] = 1, ['\r'] = 1, ['\t'] = 1};

/* Unescapes the string scan_str accepted (quotes included in s[0..n)) and
 * writes it COPY-escaped. */
static char *put_json_str(char *d, const char *s, size_t n)
{
    const char *p = s + 1, *end = s + n - 1;
    while (p < end) {
        const char *run = p;
        while (p < end && !UNESC_STOP[(unsigned char)*p])
            p++;
        memcpy(d, run, (size_t)(p - run));
        d += p - run;
        if (p >= end)
            break;
        char c = *p;
        if (c != '\\') {   /* a raw tab (cannot happen: scan_str refuses control bytes) */
            d = put_copy_escaped(d, p, 1);
            p++;
            continue;
        }
        char e = p[1], out[3];
        size_t on = 1;
        switch (e) {
        case 'b': out[0] = '\b'; break;
        case 'f': out[0] = '\f'; break;
        case 'n': out[0] = '\n'; break;
        case 'r': out[0] = '\r'; break;
        case 't': out[0] = '\t'; break;
        case 'u': {
            unsigned v = (unsigned)hexv(p[2]) << 12 | (unsigned)hexv(p[3]) << 8 | (unsigned)hexv(p[4]) << 4 |
                         (unsigned)hexv(p[5]);
            if (v < 0x80) { out[0] = (char)v; }
            else if (v < 0x800) { out[0] = (char)(0xC0 | v >> 6); out[1] = (char)(0x80 | (v & 0x3F)); on = 2; }
            else {
                out[0] = (char)(0xE0 | v >> 12); out[1] = (char)(0x80 | ((v >> 6) & 0x3F));
                out[2] = (char)(0x80 | (v & 0x3F)); on = 3;
            }
            p += 4;
            break;
        }
        default: out[0] = e; break;   /* " \ / */
        }
        p += 2;
        d = put_copy_escaped(d, out, on);
    }
    return d;
}

/* One value of field f at s (a key's colon behind it): its end and kind,
 * or NULL if it is not a form the fast path takes. */
static const char *scan_value(int f, const char *s, const char *end, char *kind)
{
    ftype t = FIELDS[f].t;
    if (*s == 'n' && end - s >= 4 && memcmp(s, "null", 4) == 0) {
        *kind = 'z';
        return s + 4;
    }
    if (t == F_JSON) {
        *kind = 'j';
        return scan_canon(s, end, 0);
    }
    if (*s == '"') {
        bool esc;
        const char *e = t == F_TEXT ? scan_str(s, end, &esc) : NULL;
        *kind = e && !esc ? 'p' : 's';
        return e;
    }
    if (*s == 't' && t == F_BOOL && end - s >= 4 && memcmp(s, "true", 4) == 0) {
        *kind = 't';
        return s + 4;
    }
    if (*s == 'f' && t == F_BOOL && end - s >= 5 && memcmp(s, "false", 5) == 0) {
        *kind = 'f';
        return s + 5;
    }
    if (t == F_INT || t == F_NUM) {
        int id, fd;
        const char *e = scan_num(s, end, &id, &fd);
        /* integers of <= 15 digits are exact in a double; decimals only for numeric(20,10) */
        if (e && !(fd < 0 ? id <= 15 : t == F_NUM && id <= 5 && fd <= 10))
            e = NULL;
        *kind = 'n';
        return e;
    }
    return NULL;
}

/* The general fast walk: any key order, keys absent. False: cJSON path. */
static bool walk_any(const char *raw, size_t len, struct mg_usage_walk *w)
{
    memset(w->kind, 0, sizeof w->kind);
    const char *s = raw, *end = raw + len;
    int f = -1;
    if (len < 2 || *s != '{')
        return false;
    s++;
    if (*s != '}') {
        for (;;) {
            if (s >= end || *s != '"')
                return false;
            const char *k = s + 1;
            const char *ke = memchr(k, '"', (size_t)(end - k));
            if (ke == NULL || ke + 1 >= end || ke[1] != ':')
                return false;
            f = field_index(k, (size_t)(ke - k), f);
            if (f < 0 || w->kind[f] || memchr(k, '\\', (size_t)(ke - k)) != NULL)
                return false;
            s = ke + 2;
            if (s >= end)
                return false;
            char kind;
            const char *e = scan_value(f, s, end, &kind);
            if (e == NULL)
                return false;
            w->off[f] = (uint32_t)(s - raw);
            w->n[f] = (uint32_t)(e - s);
            w->kind[f] = kind;
            s = e;
            if (s < end && *s == ',') { s++; continue; }
            if (s < end && *s == '}') break;
            return false;
        }
    }
    return s + 1 == end;   /* anything after the object (cJSON would ignore it): keep its verdict */
}

/* The encoder's own form: {"ts": then ,"request_id": and the other keys in
 * FIELDS order, each exactly once, nothing else. For such a record it gives
 * exactly walk_any's answer (same values through scan_value), comparing
 * each key as a whole instead of finding and looking it up; anything else
 * is false and the caller takes walk_any. Keys are compared in 8-byte words:
 * the first 8, the last 8 and, if longer than 16, bytes 8..15. */
static struct {
    uint64_t w0, w1, w2;
    uint8_t n, o1;
} KEYW[NFIELDS];
static pthread_once_t keyw_once = PTHREAD_ONCE_INIT;
static const uint8_t ENC_ORDER[NFIELDS] = {1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                           12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23};

static void keyw_init(void)
{
    if (strcmp(FIELDS[F_REQUEST_ID].name, "request_id") || strcmp(FIELDS[F_TS].name, "ts") ||
        strcmp(FIELDS[F_INCOMPLETE].name, "incomplete"))
        abort();   /* the F_ indexes must follow FIELDS */
    for (int f = 0; f < NFIELDS; f++) {
        char k[40];
        int n = snprintf(k, sizeof k, ",\"%s\":", FIELDS[f].name);
        if (f == F_TS)
            continue;   /* first, as {"ts": */
        if (n < 8 || n > 24)
            abort();   /* cannot happen: the other names are 5..17 bytes */
        KEYW[f].n = (uint8_t)n;
        KEYW[f].o1 = n > 16 ? 8 : 0;
        memcpy(&KEYW[f].w0, k, 8);
        memcpy(&KEYW[f].w1, k + KEYW[f].o1, 8);
        memcpy(&KEYW[f].w2, k + n - 8, 8);
    }
}

static inline uint64_t load8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static bool walk_encoder(const char *raw, size_t len, struct mg_usage_walk *w)
{
    const char *s = raw, *end = raw + len;
    if (len < 8 || memcmp(s, "{\"ts\":", 6) != 0)
        return false;
    s += 6;
    for (int i = 0; i < NFIELDS; i++) {
        int f = ENC_ORDER[i];
        if (i > 0) {
            size_t kn = KEYW[f].n;
            if ((size_t)(end - s) < kn || load8(s) != KEYW[f].w0 || load8(s + KEYW[f].o1) != KEYW[f].w1 ||
                load8(s + kn - 8) != KEYW[f].w2)
                return false;
            s += kn;
        }
        if (s >= end)
            return false;
        char kind;
        const char *e = scan_value(f, s, end, &kind);
        if (e == NULL)
            return false;
        w->off[f] = (uint32_t)(s - raw);
        w->n[f] = (uint32_t)(e - s);
        w->kind[f] = kind;
        s = e;
    }
    return end - s == 1 && *s == '}';
}

/* The COPY line for a walked record. Writes into room reserved
 * beforehand: at most two bytes out per byte of the record (COPY escaping
 * doubles a byte; a \uXXXX escape is six bytes in, at most three out). */
static bool emit_line(mg_buf *b, size_t seq, const char *raw, size_t len, const struct mg_usage_walk *w)
{
    if (mg_buf_reserve(b, 2 * len + 3 * NFIELDS + 24) != MG_OK)
        return mg_usage_copy_line_slow(b, seq, raw, len);   /* it reports the failure its own way */
    char *d = b->p + b->len, tmp[20];
    size_t tn = sizeof tmp;
    uint64_t sv = seq;
    do { tmp[--tn] = (char)('0' + sv % 10); sv /= 10; } while (sv);
    memcpy(d, tmp + tn, sizeof tmp - tn);
    d += sizeof tmp - tn;
    for (int f = 0; f < NFIELDS; f++) {
        *d++ = '\t';
        const char *v = raw + w->off[f];
        switch (w->kind[f] ? w->kind[f] : 'z') {
        case 'z':
            if (f == F_INCOMPLETE) {
                *d++ = 'f';    /* records from before start records existed */
            } else {
                *d++ = '\\';
                *d++ = 'N';
            }
            break;
        case 's': d = put_json_str(d, v, w->n[f]); break;
        case 't': *d++ = 't'; break;
        case 'f': *d++ = 'f'; break;
        /* A string without backslashes has no control bytes either (scan_str),
         * a number is -, digits and '.', compact JSON has neither backslashes
         * nor control bytes (scan_canon): nothing for COPY to escape. */
        case 'p': memcpy(d, v + 1, w->n[f] - 2); d += w->n[f] - 2; break;
        default: memcpy(d, v, w->n[f]); d += w->n[f]; break;   /* numbers, compact JSON */
        }
    }
    *d++ = '\n';
    b->len = (size_t)(d - b->p);
    return true;
}

bool mg_usage_copy_line(mg_buf *b, size_t seq, const char *raw, size_t len)
{
    struct mg_usage_walk w;
    pthread_once(&keyw_once, keyw_init);
    if (len <= MG_JREC_MAX && (walk_encoder(raw, len, &w) || walk_any(raw, len, &w)))
        return emit_line(b, seq, raw, len, &w);
    return mg_usage_copy_line_slow(b, seq, raw, len);
}

/* ---- start records superseded in the same batch ----------------------------
 * Under load a request's start and final records nearly always arrive in the
 * same batch; MOVE_SQL would keep the final anyway (DISTINCT ON, the final
 * first), so COPYing the start only costs its COPY line here and its
 * parsing, storage and sort in PostgreSQL. mg_usage_coalesce finds them with
 * a walk over the record's first keys, never a full parse: the encoder
 * writes ts, request_id, then a fixed order of keys whose values before
 * "incomplete" are strings, numbers, booleans or null. The walk demands
 * exactly that shape, so the "incomplete" it finds is the top-level one
 * (and the first, as cJSON reads it); anything else is "other": kept, and
 * never the reason to drop a start. */

enum { REC_OTHER, REC_START, REC_FINAL };

struct mg_usage_idref {
    uint32_t off, len;       /* the id's raw JSON bytes (no quotes), from the payload start */
    uint32_t hash;
    uint8_t kind;
    bool walked;             /* set->walk[i] holds the record's fields (walk_encoder) */
};

#define KEYLIT(k) {",\"" k "\":", sizeof(",\"" k "\":") - 1}
/* the encoder's keys between request_id and incomplete, in its order */
static const struct { const char *s; size_t n; } WALK_KEYS[] = {
    KEYLIT("subject"), KEYLIT("email"), KEYLIT("roles"), KEYLIT("key_id"), KEYLIT("cost_center"),
    KEYLIT("model"), KEYLIT("served_model"), KEYLIT("provider"), KEYLIT("upstream_model"),
    KEYLIT("status"), KEYLIT("prompt_tokens"), KEYLIT("completion_tokens"), KEYLIT("cost_usd"),
    KEYLIT("input_per_mtok"), KEYLIT("output_per_mtok"), KEYLIT("latency_ms"), KEYLIT("stream"),
    KEYLIT("estimated"), KEYLIT("client_gone"),
};
#undef KEYLIT

/* bytes of a number, true, false or null */
static const uint8_t TOKEN[256] = {
    ['0' ... '9'] = 1, ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1, ['-'] = 1, ['+'] = 1, ['.'] = 1,
};

/* s at an opening quote: the closing quote's position, or NULL */
static const char *skip_str(const char *s, const char *end)
{
    for (s++; s < end; s++) {
        if (*s == '"')
            return s;
        if (*s == '\\' && ++s >= end)
            return NULL;
    }
    return NULL;
}

static bool expect(const char **s, const char *end, const char *lit, size_t n)
{
    if ((size_t)(end - *s) < n || memcmp(*s, lit, n) != 0)
        return false;
    *s += n;
    return true;
}

static int rec_kind(const char *p, size_t n, struct mg_usage_idref *r)
{
    const char *s = p, *end = p + n, *e;
    if (!expect(&s, end, "{\"ts\":\"", 7) || (e = skip_str(s - 1, end)) == NULL)
        return REC_OTHER;
    s = e + 1;
    if (!expect(&s, end, ",\"request_id\":\"", 15) || (e = skip_str(s - 1, end)) == NULL)
        return REC_OTHER;
    r->off = (uint32_t)(s - p);
    r->len = (uint32_t)(e - s);
    s = e + 1;
    for (size_t k = 0; k < MG_ARRAY_LEN(WALK_KEYS); k++) {
        if (!expect(&s, end, WALK_KEYS[k].s, WALK_KEYS[k].n) || s >= end)
            return REC_OTHER;
        if (*s == '"') {
            if ((e = skip_str(s, end)) == NULL)
                return REC_OTHER;
            s = e + 1;
        } else {
            const char *v = s;
            while (s < end && TOKEN[(unsigned char)*s])
                s++;
            if (s == v)
                return REC_OTHER;
        }
    }
    int kind;
    if (expect(&s, end, ",\"incomplete\":true", 18))
        kind = REC_START;
    else if (expect(&s, end, ",\"incomplete\":false", 19))
        kind = REC_FINAL;
    else
        return REC_OTHER;
    return s < end && (*s == ',' || *s == '}') ? kind : REC_OTHER;
}

/* rec_kind's answer for a record walk_encoder accepted, without walking it
 * again, or -1 when only rec_kind can tell. Such a record has rec_kind's
 * shape -- ts and request_id, then the same keys, each value null, true,
 * false, a number (one TOKEN run) or a string -- so the answers agree as
 * long as ts and request_id are strings, incomplete is a boolean and every
 * string up to incomplete ends where skip_str says it does. That is sure
 * for strings without a backslash ('p'); with escapes ('s') scan_str and
 * skip_str can disagree on a malformed \u escape (scan_str reads
 * "\u001\"" as one escape), so those records are left to rec_kind. */
static int walk_kind(const struct mg_usage_walk *w, struct mg_usage_idref *r)
{
    char t = w->kind[F_TS], id = w->kind[F_REQUEST_ID], inc = w->kind[F_INCOMPLETE];
    for (int f = 0; f <= F_INCOMPLETE; f++)
        if (w->kind[f] == 's')
            return -1;
    if (t != 'p' || id != 'p' || (inc != 't' && inc != 'f'))
        return REC_OTHER;
    r->off = w->off[F_REQUEST_ID] + 1;
    r->len = w->n[F_REQUEST_ID] - 2;
    return inc == 't' ? REC_START : REC_FINAL;
}

static uint32_t id_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;   /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

void mg_usage_idset_free(mg_usage_idset *set)
{
    free(set->slot);
    free(set->ref);
    free(set->walk);
    memset(set, 0, sizeof *set);
}

size_t mg_usage_coalesce(const char *data, const mg_usage_rec *recs, size_t n, bool *drop, mg_usage_idset *set)
{
    set->walked = 0;
    if (n == 0)
        return 0;
    memset(drop, 0, n * sizeof *drop);
    if (n < 2 || n >= (1u << 30))
        return 0;
    pthread_once(&keyw_once, keyw_init);
    size_t cap = 16;
    while (cap < 2 * n)   /* load factor <= 1/2 */
        cap <<= 1;
    if (set->cap < cap) {
        uint32_t *sl = realloc(set->slot, cap * sizeof *sl);
        if (sl == NULL)
            return 0;
        set->slot = sl;
        set->cap = cap;
    }
    if (set->nref < n) {
        struct mg_usage_idref *r = realloc(set->ref, n * sizeof *r);
        if (r == NULL)
            return 0;
        set->ref = r;
        set->nref = n;
    }
    if (set->nwalk < n) {   /* without it (no memory) every record takes rec_kind */
        struct mg_usage_walk *w = realloc(set->walk, n * sizeof *w);
        if (w != NULL) {
            set->walk = w;
            set->nwalk = n;
        }
    }
    struct mg_usage_walk *walk = set->nwalk >= n ? set->walk : NULL;
    memset(set->slot, 0, cap * sizeof *set->slot);
    size_t mask = cap - 1, starts = 0;
    struct mg_usage_idref *ref = set->ref;
    for (size_t i = 0; i < n; i++) {
        const char *p = data + recs[i].pos;
        int kind = -1;
        ref[i].walked = false;
        if (recs[i].len > MG_JREC_MAX)
            kind = REC_OTHER;
        else if (walk && walk_encoder(p, recs[i].len, &walk[i])) {
            ref[i].walked = true;
            kind = walk_kind(&walk[i], &ref[i]);
        }
        ref[i].kind = (uint8_t)(kind >= 0 ? kind : rec_kind(p, recs[i].len, &ref[i]));
        if (ref[i].kind == REC_START)
            starts++;
        if (ref[i].kind != REC_FINAL)
            continue;
        ref[i].hash = id_hash(p + ref[i].off, ref[i].len);
        for (size_t h = ref[i].hash & mask;; h = (h + 1) & mask) {
            uint32_t k = set->slot[h];
            if (k == 0) {
                set->slot[h] = (uint32_t)i + 1;
                break;
            }
            const struct mg_usage_idref *o = &ref[k - 1];
            if (o->hash == ref[i].hash && o->len == ref[i].len &&
                memcmp(data + recs[k - 1].pos + o->off, p + ref[i].off, o->len) == 0)
                break;   /* this id already has a final in the set */
        }
    }
    size_t dropped = 0;
    for (size_t i = 0; i < n && starts; i++) {
        if (ref[i].kind != REC_START)
            continue;
        starts--;
        const char *id = data + recs[i].pos + ref[i].off;
        uint32_t hash = id_hash(id, ref[i].len);
        for (size_t h = hash & mask;; h = (h + 1) & mask) {
            uint32_t k = set->slot[h];
            if (k == 0)
                break;
            const struct mg_usage_idref *o = &ref[k - 1];
            if (o->hash == hash && o->len == ref[i].len && memcmp(data + recs[k - 1].pos + o->off, id, o->len) == 0) {
                drop[i] = true;
                dropped++;
                break;
            }
        }
    }
    set->walked = walk ? n : 0;
    return dropped;
}

bool mg_usage_copy_batch(mg_buf *b, const char *data, const mg_usage_rec *recs, size_t n, const bool *drop,
                         const mg_usage_idset *set)
{
    bool walked = set->walked == n && n > 0;
    for (size_t i = 0; i < n; i++) {
        if (drop[i])
            continue;
        const char *raw = data + recs[i].pos;
        bool ok = walked && set->ref[i].walked ? emit_line(b, i, raw, recs[i].len, &set->walk[i])
                                               : mg_usage_copy_line(b, i, raw, recs[i].len);
        if (!ok)
            return false;
    }
    return true;
}

static bool copy_data(shipper *S, const mg_buf *data, char state[6], mg_buf *err)
{
    db_arm(S);
    PGresult *r = PQexec(S->conn, "COPY mg_ship (seq, " "request_id, ts, subject, email, roles, key_id, cost_center,"
                         " model, served_model, provider, upstream_model, status, prompt_tokens, completion_tokens,"
                         " cost_usd, input_per_mtok, output_per_mtok, latency_ms, stream, estimated, client_gone,"
                         " incomplete, decision, error_code) FROM STDIN");
    bool ok = r && PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    if (ok) {
        ok = data->len == 0 || PQputCopyData(S->conn, data->p, (int)data->len) == 1;
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
    return ok;
}

/* Runs after mg_ship holds the batch, inside the caller's transaction.
 * Temp tables with real row counts rather than CTEs: with CTEs the planner
 * guessed one row and joined 1000 x 1000 rows in a nested loop (200 ms a
 * batch, most of the old shipper's time).
 *   mg_ids: one row per request id in the batch (its final record if the
 *           batch has one, else its first record) with what is stored now;
 *   new ids: inserted into usage_request_ids and usage_events;
 *   a final over a stored start: both tables updated, the start's values
 *           saved in mg_old;
 *   anything else (a replay, a start after its final): nothing;
 *   rollup += the new rows and the finals, -= mg_old; groups left at zero
 *           requests (a final whose provider differs from its start's)
 *           are deleted so the rollup has the same groups as the events.
 * The two lookups in usage_request_ids are written so that they can only
 * be index probes: the planner, not knowing how many mg_ids rows match
 * (temp tables have no statistics), hash-joined the whole table instead,
 * a sequential scan of every request id ever stored per batch (~30 ms each
 * at 100,000 ids, growing with the table; docs/ledger.md, "Shipper throughput").
 * LATERAL ... LIMIT 1 (request_id is the key: at most one row) is a
 * parameterised index scan per batch id; the redundant `= ANY (ARRAY(...))`
 * gives the upgrade its few keys as an index condition. The replaced
 * starts are read from and deleted in usage_events the same way, in one
 * DELETE ... RETURNING: as two joins they were sequential scans of every
 * partition per batch (~25-33 ms each at 60,000 rows, growing with the
 * table). */
static const char MOVE_SQL[] =
    "INSERT INTO mg_ids (request_id, seq, ts, incomplete, old_ts, old_incomplete)"
    " SELECT d.request_id, d.seq, d.ts, d.incomplete, r.ts, r.incomplete"
    " FROM (SELECT DISTINCT ON (request_id) request_id, seq, ts, incomplete FROM mg_ship"
    "  ORDER BY request_id, incomplete, seq) d"
    " LEFT JOIN LATERAL (SELECT ts, incomplete FROM usage_request_ids WHERE request_id = d.request_id LIMIT 1) r"
    " ON true;"
    "INSERT INTO usage_request_ids (request_id, ts, incomplete)"
    " SELECT request_id, ts, incomplete FROM mg_ids WHERE old_ts IS NULL;"
    "UPDATE usage_request_ids r SET ts = i.ts, incomplete = false FROM mg_ids i"
    " WHERE r.request_id = i.request_id AND i.old_incomplete AND NOT i.incomplete"
    " AND r.request_id = ANY (ARRAY(SELECT request_id FROM mg_ids WHERE old_incomplete AND NOT incomplete));"
    "WITH d AS (DELETE FROM usage_events e USING mg_ids i WHERE e.request_id = i.request_id AND e.ts = i.old_ts"
    "  AND i.old_incomplete AND NOT i.incomplete"
    "  AND e.request_id = ANY (ARRAY(SELECT request_id FROM mg_ids WHERE old_incomplete AND NOT incomplete))"
    "  RETURNING e.ts, e.subject, e.email, e.roles, e.key_id, e.cost_center, e.model, e.provider,"
    "  e.prompt_tokens, e.completion_tokens, e.cost_usd)"
    " INSERT INTO mg_old SELECT (ts AT TIME ZONE 'UTC')::date, subject, email, roles, key_id, cost_center,"
    " model, provider, prompt_tokens, completion_tokens, cost_usd FROM d;"
    "INSERT INTO usage_events (" "request_id, ts, subject, email, roles, key_id, cost_center, model, served_model,"
    " provider, upstream_model, status, prompt_tokens, completion_tokens, cost_usd, input_per_mtok,"
    " output_per_mtok, latency_ms, stream, estimated, client_gone, incomplete, decision, error_code)"
    " SELECT s.request_id, s.ts, s.subject, s.email, s.roles, s.key_id, s.cost_center, s.model, s.served_model,"
    " s.provider, s.upstream_model, s.status, s.prompt_tokens, s.completion_tokens, s.cost_usd, s.input_per_mtok,"
    " s.output_per_mtok, s.latency_ms, s.stream, s.estimated, s.client_gone, s.incomplete, s.decision, s.error_code"
    " FROM mg_ship s JOIN mg_ids i ON s.seq = i.seq"
    " WHERE i.old_ts IS NULL OR (i.old_incomplete AND NOT i.incomplete);"
    "INSERT INTO usage_rollup_daily AS r (day, subject, email, roles, key_id, cost_center, model, provider,"
    " requests, prompt_tokens, completion_tokens, cost_usd)"
    " SELECT day, subject, email, roles, key_id, cost_center, model, provider, sum(n), sum(pt), sum(ct), sum(cost)"
    " FROM (SELECT (s.ts AT TIME ZONE 'UTC')::date AS day, s.subject, s.email, s.roles, s.key_id, s.cost_center,"
    "  s.model, s.provider, 1 AS n, s.prompt_tokens AS pt, s.completion_tokens AS ct, s.cost_usd AS cost"
    "  FROM mg_ship s JOIN mg_ids i ON s.seq = i.seq WHERE i.old_ts IS NULL OR (i.old_incomplete AND NOT i.incomplete)"
    "  UNION ALL SELECT day, subject, email, roles, key_id, cost_center, model, provider, -1,"
    "  -prompt_tokens, -completion_tokens, -cost_usd FROM mg_old) d"
    " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
    " ON CONFLICT (day, subject, email, roles, key_id, cost_center, model, provider) DO UPDATE SET"
    " requests = r.requests + EXCLUDED.requests,"
    " prompt_tokens = r.prompt_tokens + EXCLUDED.prompt_tokens,"
    " completion_tokens = r.completion_tokens + EXCLUDED.completion_tokens,"
    " cost_usd = r.cost_usd + EXCLUDED.cost_usd;"
    "DELETE FROM usage_rollup_daily r USING (SELECT DISTINCT day FROM mg_old) o"
    " WHERE r.day = o.day AND r.requests = 0;"
    "SELECT count(*) FILTER (WHERE old_ts IS NULL), count(*) FILTER (WHERE old_incomplete AND NOT incomplete)"
    " FROM mg_ids";

/* The batch's counts: new rows, finals that replaced a start. */
static bool move_rows(shipper *S, long long *inserted, long long *upgraded, char state[6], mg_buf *err)
{
    db_arm(S);
    PGresult *r = PQexec(S->conn, MOVE_SQL);
    db_disarm(S);
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *inserted += strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        *upgraded += strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        PQclear(r);
        return true;
    }
    return db_ok(S, r, PGRES_TUPLES_OK, state, err);
}

/* Whole batch in one COPY + one round trip of statements: the common case.
 * Starts whose final is in the batch are left out (mg_usage_coalesce):
 * MOVE_SQL would have picked the final anyway, and its DISTINCT ON still
 * covers whatever the coalescing keeps. That is only safe while every row
 * sent lands, which is what this path guarantees: if any row is bad, the
 * batch goes row by row (ship_rows) with every record, starts included, so
 * a final that becomes a dead letter leaves its start as the request's row
 * exactly as before. (A bad start whose final is good is left out here
 * rather than dead-lettered: it could never have been the request's row.)
 * 0 ok, 1 some row is bad (go row by row), -1 database trouble. */
static int ship_bulk(shipper *S, long long *inserted, long long *upgraded, char state[6], mg_buf *err)
{
    mg_buf_reset(&S->copy);
    mg_usage_coalesce(S->data.p, S->recs, S->nrecs, S->drop, &S->ids);
    if (!mg_usage_copy_batch(&S->copy, S->data.p, S->recs, S->nrecs, S->drop, &S->ids))
        return 1;
    if (!db_cmd(S, "BEGIN", state, err))
        return -1;
    bool ok = copy_data(S, &S->copy, state, err) && move_rows(S, inserted, upgraded, state, err) &&
              db_cmd(S, "COMMIT", state, err);
    if (!ok) {
        db_cmd(S, "ROLLBACK", NULL, NULL);
        return row_error(state) ? 1 : -1;
    }
    return 0;
}

static bool dead_letter(shipper *S, const rec *rc, const char *state, const char *why, long long *dead, mg_buf *err)
{
    char src[512];
    snprintf(src, sizeof src, "%s:%s/seg-%016llu@%llu", S->host, S->L->dir,
             (unsigned long long)rc->seq, (unsigned long long)rc->off);
    const char *dv[3] = {src, S->data.p + rc->pos, why};
    int lens[3] = {0, (int)rc->len, 0};
    int fmts[3] = {0, 1, 0};
    mg_log_warn("usage shipper: row at %s rejected (%s), sent to usage_dead_letter", src, state);
    PGresult *r = db_params(S, "INSERT INTO usage_dead_letter (source, raw, error) VALUES ($1, $2, $3) "
                               "ON CONFLICT (source) DO NOTHING", 3, dv, lens, fmts);
    if (r && PQresultStatus(r) == PGRES_COMMAND_OK)
        *dead += strtoll(PQcmdTuples(r), NULL, 10);
    return db_ok(S, r, PGRES_COMMAND_OK, NULL, err);
}

/* Records [lo, hi) under a savepoint; a range with a bad row is split in
 * two until the bad row is alone and becomes a dead letter, so one bad row
 * costs ~2 log2(batch) tries instead of a statement per row. False on a
 * database error (the caller rolls the whole batch back). */
static bool ship_range(shipper *S, size_t lo, size_t hi, long long *inserted, long long *upgraded,
                       long long *dead, mg_buf *line, mg_buf *err)
{
    char state[6] = "";
    mg_buf_reset(line);
    bool parsed = true;
    for (size_t i = lo; i < hi && parsed; i++)
        parsed = mg_usage_copy_line(line, i, S->data.p + S->recs[i].pos, S->recs[i].len);
    if (!parsed && hi - lo == 1)
        return dead_letter(S, &S->recs[lo], "not JSON", "the record is not a JSON object", dead, err);
    long long n = 0, u = 0;
    bool ok = true, row_ok = false;
    if (parsed) {
        ok = db_cmd(S, "SAVEPOINT mg_row", state, err);
        row_ok = ok && copy_data(S, line, state, err) && move_rows(S, &n, &u, state, err) &&
                 db_multi(S, "DELETE FROM mg_ship; DELETE FROM mg_ids; DELETE FROM mg_old", state, err);
        if (ok && row_ok) {
            *inserted += n;
            *upgraded += u;
            return db_cmd(S, "RELEASE SAVEPOINT mg_row", state, err);
        }
        if (!ok || !row_error(state))
            return false;
        if (!db_cmd(S, "ROLLBACK TO SAVEPOINT mg_row", NULL, err))
            return false;
        if (hi - lo == 1) {
            char why[1024];
            snprintf(why, sizeof why, "%s", err->p ? err->p : "rejected");
            return dead_letter(S, &S->recs[lo], state, why, dead, err);
        }
    }
    size_t mid = lo + (hi - lo) / 2;
    return ship_range(S, lo, mid, inserted, upgraded, dead, line, err) &&
           ship_range(S, mid, hi, inserted, upgraded, dead, line, err);
}

static bool ship_rows(shipper *S, long long *inserted, long long *upgraded, long long *dead)
{
    char state[6];
    mg_buf err = {0}, line = {0};
    bool ok = db_cmd(S, "BEGIN", state, &err) &&
              ship_range(S, 0, S->nrecs, inserted, upgraded, dead, &line, &err) &&
              db_cmd(S, "COMMIT", state, &err);
    if (!ok) {
        mg_log_warn("usage shipper: batch failed, will retry: %s", err.p ? err.p : "?");
        if (S->conn) db_cmd(S, "ROLLBACK", NULL, NULL);
    }
    mg_buf_free(&err);
    mg_buf_free(&line);
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
    if (prices_pending(S))
        seed_prices(S);
    if (!ensure_partitions(S))
        goto fail;
    long long inserted = 0, upgraded = 0, dead = 0;
    char state[6] = "";
    mg_buf err = {0};
    int rc = ship_bulk(S, &inserted, &upgraded, state, &err);
    if (rc < 0)
        mg_log_warn("usage shipper: batch failed (%s), will retry: %s%s", state, err.p ? err.p : "?",
                    strcmp(state, "42P01") == 0 || strcmp(state, "42703") == 0
                        ? " (schema out of date: run `modelgate migrate`)" : "");
    mg_buf_free(&err);
    if (rc < 0)
        goto fail;
    if (rc > 0) {
        inserted = upgraded = 0;
        if (!ship_rows(S, &inserted, &upgraded, &dead))
            goto fail;
    }
    S->commits++;
    if (S->crash_after > 0 && S->commits >= S->crash_after)
        raise(SIGKILL);  /* test hook: die between the commit and the checkpoint */
    commit_progress(S);
    ck_save(S);
    /* Every record of the batch is consumed here, including the starts
     * ship_bulk left out: commit_progress acks them (records_pending) and the
     * checkpoint moves past them. They count as duplicates, as they did when
     * they were COPYed and collapsed by MOVE_SQL: "start records superseded
     * in the same batch" (docs/ledger.md, Metrics), so the counters are the
     * same with or without the coalescing. */
    uint64_t applied = (uint64_t)inserted + (uint64_t)upgraded;
    atomic_fetch_add(&S->L->shipped, applied);
    atomic_fetch_add(&S->L->dead, (uint64_t)dead);
    uint64_t dup = S->nrecs > applied + (uint64_t)dead ? S->nrecs - applied - (uint64_t)dead : 0;
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
    S.drop = calloc(BATCH_RECORDS, sizeof *S.drop);
    ck_load(&S);
    bool stop = false;
    while (S.recs && S.drop) {
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
            /* a reload's new prices are recorded now, not with the next request's batch */
            if (L->conninfo && !stop && mg_now_ms() >= S.price_retry_ms && prices_pending(&S)) {
                if (S.conn || db_connect(&S))
                    seed_prices(&S);
                if (prices_pending(&S))
                    S.price_retry_ms = mg_now_ms() + BACKOFF_MAX_MS;
            }
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
    free(S.drop);
    mg_usage_idset_free(&S.ids);
    free(S.ck);
    free(S.progs);
    mg_buf_free(&S.data);
    mg_buf_free(&S.copy);
    return NULL;
}
