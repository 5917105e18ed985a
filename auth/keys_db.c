/* modelgate — API keys on the request path: cache, database lookups, usage.
 *
 * A key is looked up by its id (never by its secret) and checked by
 * comparing SHA-256 digests in constant time. Lookups run on the database
 * pool; their result is cached per key id:
 *
 *   age < 2 s      used as is
 *   2 s .. 5 s     used, and refreshed in the background
 *   >= 5 s         the request waits for a fresh lookup
 *
 * so a revoked key stops working on every instance within 5 s while a busy
 * key almost never waits. When the database fails, lookups back off for
 * 2 s: cached keys keep working (whatever their age), unknown keys fail
 * closed with 503 — never 401, which would tell a client its valid key is
 * wrong. last_used_at is written in batches, at most every 10 s.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth_int.h"

#include "gateway/log.h"

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define SOFT_TTL_MS 2000
#define HARD_TTL_MS 5000
#define NEG_TTL_S 2
#define BACKOFF_MS 2000
#define QUERY_TIMEOUT_MS 3000
#define TOUCH_EVERY_MS 10000
#define TOUCH_MAX 4096

typedef struct keyrec {
    atomic_int refs;
    char id[MG_KEY_ID_LEN + 1];
    bool found;                    /* a live row exists (not revoked) */
    bool revoked;
    uint8_t hash[32];
    int64_t expires_at;            /* key expiry, unix s; 0 = never */
    mg_auth_identity *ident;
    uint64_t fetched_ms;
    atomic_bool refreshing;
    atomic_bool touched;
} keyrec;

static void *rec_ref(void *v)
{
    atomic_fetch_add(&((keyrec *)v)->refs, 1);
    return v;
}

static void rec_unref(void *v)
{
    keyrec *r = v;
    if (r == NULL || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    mg_auth_identity_unref(r->ident);
    free(r);
}

static const mg_auth_cache_ops rec_ops = {rec_ref, rec_unref};

static struct {
    pthread_once_t once;
    mg_auth_cache *cache;
    _Atomic uint64_t backoff_until_ms;
    pthread_mutex_t touch_mu;
    char (*touch)[MG_KEY_ID_LEN + 1];
    size_t ntouch;
    _Atomic uint64_t last_touch_ms;
} g = {.once = PTHREAD_ONCE_INIT, .touch_mu = PTHREAD_MUTEX_INITIALIZER};

static void init_once(void) { g.cache = mg_auth_cache_new(65536, &rec_ops); }

/* The cache wants uniform bytes: a key id is random lowercase hex (checked
 * by mg_auth_key_parse before any lookup), so its decoded bytes are that
 * already, with no digest per request. */
static void cache_key(const char *id, uint8_t out[32])
{
    memset(out, 0, 32);
    for (size_t i = 0; i < MG_KEY_ID_LEN; i++) {
        char c = id[i];
        out[i / 2] |= (uint8_t)((c <= '9' ? c - '0' : c - 'a' + 10) << (i % 2 ? 0 : 4));
    }
}

static bool db_backing_off(void) { return mg_now_ms() < atomic_load(&g.backoff_until_ms); }

/* ------------------------------------------------------------ libpq */

PGconn *mg_auth_db_connect(const char *url, char *err, size_t errsz)
{
    const char *kw[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *val[] = {url, "3", "modelgate-auth", NULL};
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        if (err)
            snprintf(err, errsz, "%s", c ? PQerrorMessage(c) : "out of memory");
        if (err && err[0] && err[strlen(err) - 1] == '\n')
            err[strlen(err) - 1] = '\0';
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* One connection per database-pool thread, reopened after any failure. */
static _Thread_local PGconn *tl_conn;

static void conn_drop(void)
{
    PQfinish(tl_conn);
    tl_conn = NULL;
}

void mg_auth_keys_thread_done(void) { conn_drop(); }

/* Runs one parameterised statement with a deadline. A hung server (SIGSTOP,
 * lost network) costs at most QUERY_TIMEOUT_MS, then the connection is
 * dropped. NULL on any failure. */
static PGresult *query(const char *url, const char *sql, int n, const char *const *params)
{
    if (tl_conn == NULL && (tl_conn = mg_auth_db_connect(url, NULL, 0)) == NULL)
        return NULL;
    if (!PQsendQueryParams(tl_conn, sql, n, NULL, params, NULL, NULL, 0)) {
        conn_drop();
        return NULL;
    }
    uint64_t deadline = mg_now_ms() + QUERY_TIMEOUT_MS;
    PGresult *res = NULL, *r;
    for (;;) {
        if (PQconsumeInput(tl_conn) == 0)
            goto fail;
        if (!PQisBusy(tl_conn))
            break;
        uint64_t now = mg_now_ms();
        if (now >= deadline)
            goto fail;
        struct pollfd pfd = {PQsocket(tl_conn), POLLIN, 0};
        if (poll(&pfd, 1, (int)(deadline - now)) < 0)
            goto fail;
    }
    while ((r = PQgetResult(tl_conn)) != NULL) {
        if (res == NULL)
            res = r;
        else
            PQclear(r);
    }
    if (res == NULL || (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)) {
        PQclear(res);
        if (PQstatus(tl_conn) != CONNECTION_OK)
            conn_drop();
        return NULL;
    }
    return res;
fail:
    PQclear(res);
    conn_drop();
    return NULL;
}

static void hex_to_bytes(const char *hex, uint8_t out[32])
{
    for (int i = 0; i < 32; i++) {
        int hi = hex[2 * i], lo = hex[2 * i + 1];
        hi = hi <= '9' ? hi - '0' : hi - 'a' + 10;
        lo = lo <= '9' ? lo - '0' : lo - 'a' + 10;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
}

/* Blocking lookup (pool thread). NULL when the database failed. */
static keyrec *lookup(const char *url, const char *id)
{
    const char *params[] = {id};
    PGresult *r = query(url,
        "SELECT hash, owner_subject, owner_email, role,"
        " COALESCE(EXTRACT(EPOCH FROM expires_at)::bigint, 0), revoked_at IS NOT NULL"
        " FROM api_keys WHERE id = $1", 1, params);
    if (r == NULL)
        return NULL;
    keyrec *rec = calloc(1, sizeof(*rec));
    if (rec == NULL) {
        PQclear(r);
        return NULL;
    }
    atomic_init(&rec->refs, 1);
    memcpy(rec->id, id, MG_KEY_ID_LEN + 1);
    rec->fetched_ms = mg_now_ms();
    if (PQntuples(r) == 1 && strlen(PQgetvalue(r, 0, 0)) == 64) {
        rec->revoked = PQgetvalue(r, 0, 5)[0] == 't';
        rec->found = !rec->revoked;
        hex_to_bytes(PQgetvalue(r, 0, 0), rec->hash);
        rec->expires_at = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
        mg_auth_identity *ident = mg_auth_identity_new("api_key");
        if (ident) {
            ident->subject = strdup(PQgetvalue(r, 0, 1));
            ident->email = PQgetisnull(r, 0, 2) ? NULL : strdup(PQgetvalue(r, 0, 2));
            ident->key_id = strdup(id);
            ident->exp = rec->expires_at;
            if (ident->subject == NULL || ident->key_id == NULL ||
                mg_auth_identity_add_role(ident, PQgetvalue(r, 0, 3)) != MG_OK) {
                mg_auth_identity_unref(ident);
                ident = NULL;
            }
        }
        if (ident == NULL) {
            PQclear(r);
            rec_unref(rec);
            return NULL;
        }
        rec->ident = ident;
    }
    PQclear(r);
    return rec;
}

/* ------------------------------------------------------------ jobs */

typedef struct key_job {
    mg_job job;
    char id[MG_KEY_ID_LEN + 1];
    char *key;                     /* the presented key (for the hash check) */
    size_t keylen;
    keyrec *stale;                 /* cached record to fall back on */
    keyrec *fresh;                 /* lookup result; NULL: database failed */
} key_job;

static void key_job_destroy(mg_job *j)
{
    key_job *kj = (key_job *)j;
    if (kj->key) {
        OPENSSL_cleanse(kj->key, kj->keylen);
        free(kj->key);
    }
    rec_unref(kj->stale);
    rec_unref(kj->fresh);
    free(kj);
}

static void key_job_run(mg_job *j)
{
    key_job *kj = (key_job *)j;
    kj->fresh = lookup(j->snap->cfg->database_url, kj->id);
    if (kj->fresh == NULL) {
        atomic_store(&g.backoff_until_ms, mg_now_ms() + BACKOFF_MS);
        mg_log_warn("auth: API key lookup failed: database unavailable");
        return;
    }
    uint8_t ck[32];
    cache_key(kj->id, ck);
    mg_auth_cache_put(g.cache, ck, kj->fresh,
                      mg_auth_wall_s() + (kj->fresh->found ? 3600 : NEG_TTL_S));
}

static void touch(keyrec *rec)
{
    if (atomic_exchange(&rec->touched, true))
        return;
    pthread_mutex_lock(&g.touch_mu);
    if (g.touch == NULL)
        g.touch = calloc(TOUCH_MAX, sizeof(*g.touch));
    if (g.touch && g.ntouch < TOUCH_MAX)
        memcpy(g.touch[g.ntouch++], rec->id, MG_KEY_ID_LEN + 1);
    pthread_mutex_unlock(&g.touch_mu);
}

/* Decides on a request with a record in hand (loop thread). */
static mg_stage_rc decide(mg_req *req, keyrec *rec, const char *key, size_t keylen)
{
    uint8_t h[32];
    mg_auth_sha256(key, keylen, h);
    bool match = rec->found && mg_ct_equal(h, 32, rec->hash, 32);
    if (!match) {
        mg_req_respond_error(req, 401, "authentication_error", "invalid_api_key",
                             rec->revoked ? "the API key has been revoked" : "the API key is not valid", 0);
        return MG_STAGE_RESPONDED;
    }
    if (rec->expires_at && mg_auth_wall_s() >= rec->expires_at) {
        mg_req_respond_error(req, 401, "authentication_error", "expired_api_key",
                             "the API key has expired", 0);
        return MG_STAGE_RESPONDED;
    }
    if (mg_auth_identity_apply(req, rec->ident) != MG_OK) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    touch(rec);
    return MG_STAGE_NEXT;
}

static void unavailable(mg_req *req)
{
    mg_req_respond_error(req, 503, "server_error", "credential_store_unavailable",
                         "API keys cannot be checked right now; try again shortly", 2);
}

static void key_job_done(mg_job *j, mg_req *req)
{
    key_job *kj = (key_job *)j;
    keyrec *rec = kj->fresh ? kj->fresh : kj->stale;
    if (rec == NULL) {
        unavailable(req);
        return;
    }
    if (decide(req, rec, kj->key, kj->keylen) == MG_STAGE_NEXT)
        mg_pipeline_resume(req);
}

static key_job *key_job_new(mg_req *req, mg_snapshot *snap, const char *id, mg_str key, keyrec *stale)
{
    key_job *kj = calloc(1, sizeof(*kj));
    if (kj == NULL)
        return NULL;
    mg_job_init(&kj->job, req, snap);
    kj->job.run = key_job_run;
    kj->job.done = key_job_done;
    kj->job.destroy = key_job_destroy;
    memcpy(kj->id, id, MG_KEY_ID_LEN + 1);
    kj->stale = stale ? rec_ref(stale) : NULL;
    if (key.n) {
        kj->key = malloc(key.n);
        if (kj->key == NULL) {
            mg_job_release(&kj->job);
            return NULL;
        }
        memcpy(kj->key, key.p, key.n);
        kj->keylen = key.n;
    }
    return kj;
}

/* Background refresh: no request waits for it. */
static void refresh_async(mg_snapshot *snap, keyrec *rec)
{
    if (atomic_exchange(&rec->refreshing, true))
        return;
    key_job *kj = key_job_new(NULL, snap, rec->id, MG_STR_NULL, NULL);
    if (kj && mg_job_pool_submit(mg_auth_db_pool(), &kj->job) != MG_OK)
        mg_job_release(&kj->job);
}

typedef struct touch_job {
    mg_job job;
    mg_buf ids;                    /* "{id,id,...}" array literal */
} touch_job;

static void touch_destroy(mg_job *j)
{
    mg_buf_free(&((touch_job *)j)->ids);
    free(j);
}

static void touch_run(mg_job *j)
{
    touch_job *tj = (touch_job *)j;
    const char *params[] = {tj->ids.p};
    PGresult *r = query(j->snap->cfg->database_url,
                        "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::text[])", 1, params);
    PQclear(r);
}

static void maybe_flush_touches(mg_snapshot *snap)
{
    uint64_t now = mg_now_ms(), last = atomic_load(&g.last_touch_ms);
    if (now - last < TOUCH_EVERY_MS || !atomic_compare_exchange_strong(&g.last_touch_ms, &last, now))
        return;
    touch_job *tj = calloc(1, sizeof(*tj));
    if (tj == NULL)
        return;
    mg_job_init(&tj->job, NULL, snap);
    tj->job.run = touch_run;
    tj->job.destroy = touch_destroy;
    pthread_mutex_lock(&g.touch_mu);
    mg_buf_append(&tj->ids, "{", 1);
    for (size_t i = 0; i < g.ntouch; i++) {
        if (i)
            mg_buf_append(&tj->ids, ",", 1);
        mg_buf_append(&tj->ids, g.touch[i], MG_KEY_ID_LEN);
    }
    size_t n = g.ntouch;
    g.ntouch = 0;
    pthread_mutex_unlock(&g.touch_mu);
    if (mg_buf_append(&tj->ids, "}", 2) != MG_OK || n == 0 ||
        mg_job_pool_submit(mg_auth_db_pool(), &tj->job) != MG_OK)
        mg_job_release(&tj->job);
}

/* ------------------------------------------------------------ stage */

mg_stage_rc mg_auth_keys_stage(mg_req *req, mg_str key, const char *id)
{
    pthread_once(&g.once, init_once);
    if (req->snap->cfg->database_url == NULL || g.cache == NULL) {
        mg_req_respond_error(req, 401, "authentication_error", "invalid_api_key",
                             "API keys are not enabled on this gateway (no database configured)", 0);
        return MG_STAGE_RESPONDED;
    }
    maybe_flush_touches(req->snap);
    uint8_t ck[32];
    cache_key(id, ck);
    keyrec *rec = mg_auth_cache_get(g.cache, ck, mg_auth_wall_s());
    bool backoff = db_backing_off();
    if (rec) {
        uint64_t age = mg_now_ms() - rec->fetched_ms;
        if (age < HARD_TTL_MS || backoff) {
            if (age >= SOFT_TTL_MS && !backoff)
                refresh_async(req->snap, rec);
            mg_stage_rc rc = decide(req, rec, key.p, key.n);
            rec_unref(rec);
            return rc;
        }
    } else if (backoff) {
        unavailable(req);
        return MG_STAGE_RESPONDED;
    }
    key_job *kj = key_job_new(req, req->snap, id, key, rec);
    rec_unref(rec);
    if (kj == NULL || mg_job_attach(&kj->job, req) != MG_OK) {
        if (kj)
            mg_job_release(&kj->job);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    if (mg_job_pool_submit(mg_auth_db_pool(), &kj->job) != MG_OK) {
        /* The attach reference is released with the request; this drops
         * the pool's. */
        mg_job_release(&kj->job);
        mg_req_respond_error(req, 503, "server_error", "overloaded",
                             "too many credential lookups in flight; try again shortly", 1);
        return MG_STAGE_RESPONDED;
    }
    return MG_STAGE_PARKED;
}

void mg_auth_keys_shutdown(void)
{
    if (g.cache)
        mg_auth_cache_clear(g.cache);
}
