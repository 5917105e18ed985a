/* modelgate — policy versions and the audit chain in PostgreSQL: writes
 * (one transaction each), reads, ETags, chain hashing and verification.
 *
 * Every write runs under one transaction-scoped advisory lock: it reads the
 * newest version, checks If-Match against it, builds the new document from
 * it, inserts the version, appends the audit row and notifies, then commits.
 * Holding the lock from the read to the commit is what makes If-Match and
 * part edits (one role, one filter) free of lost updates, and keeps the
 * audit chain linear (each row's prev_hash is the row committed before it).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/store_int.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ */
/* Pure parts: ETags, If-Match, the audit hash                          */

static void hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

void mg_policy_etag(const char *canonical, size_t len, char out[MG_POLICY_ETAG_LEN])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)canonical, len, md);
    out[0] = '"';
    hex(md, 16, out + 1);
    out[33] = '"';
    out[34] = '\0';
}

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

bool mg_policy_etag_matches(const char *if_match, const char *current)
{
    if (if_match == NULL)
        return true;
    const char *p = if_match;
    while (is_ows(*p))
        p++;
    if (*p == '\0')
        return true;
    size_t clen = strlen(current);
    while (*p != '\0') {
        while (is_ows(*p) || *p == ',')
            p++;
        if (*p == '\0')
            break;
        const char *start = p;
        if (*p == '*') {
            p++;
        } else {
            if (p[0] == 'W' && p[1] == '/')
                p += 2;
            if (*p != '"')
                return false;          /* malformed: never matches */
            p++;
            while (*p != '\0' && *p != '"')
                p++;
            if (*p != '"')
                return false;
            p++;
        }
        size_t n = (size_t)(p - start);
        while (is_ows(*p))
            p++;
        if (*p != '\0' && *p != ',')
            return false;
        if (n == 1 && *start == '*')
            return true;
        /* strong comparison: a weak tag (W/"...") never equals ours */
        if (n == clen && memcmp(start, current, n) == 0)
            return true;
    }
    return false;
}

static void hash_field(EVP_MD_CTX *h, const char *s)
{
    char len[32];
    if (s == NULL) {
        EVP_DigestUpdate(h, "-\n", 2);
        return;
    }
    size_t n = strlen(s);
    int k = snprintf(len, sizeof(len), "%zu:", n);
    EVP_DigestUpdate(h, len, (size_t)k);
    EVP_DigestUpdate(h, s, n);
    EVP_DigestUpdate(h, "\n", 1);
}

void mg_policy_audit_hash(const mg_policy_audit_row *r, char out[65])
{
    char id[32], ver[32];
    snprintf(id, sizeof(id), "%lld", (long long)r->id);
    snprintf(ver, sizeof(ver), "%lld", (long long)r->policy_version);
    unsigned char md[SHA256_DIGEST_LENGTH];
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    if (h == NULL || EVP_DigestInit_ex(h, EVP_sha256(), NULL) != 1) {
        /* cannot hash: a value no row can carry, so verification fails */
        EVP_MD_CTX_free(h);
        memset(out, 'x', 64);
        out[64] = '\0';
        return;
    }
    EVP_DigestUpdate(h, "mg-audit-v1\n", 12);
    hash_field(h, r->prev_hash);
    hash_field(h, id);
    hash_field(h, r->ts);
    hash_field(h, r->actor);
    hash_field(h, r->action);
    hash_field(h, r->target);
    hash_field(h, r->before);
    hash_field(h, r->after);
    hash_field(h, r->policy_version < 0 ? NULL : ver);
    EVP_DigestFinal_ex(h, md, NULL);
    EVP_MD_CTX_free(h);
    hex(md, sizeof(md), out);
}

/* ------------------------------------------------------------------ */
/* Connections and small query helpers                                  */

PGconn *mg_policy_db_connect(const char *conninfo, const char *app, char *err, size_t errsz)
{
    if (conninfo == NULL || conninfo[0] == '\0') {
        snprintf(err, errsz, "no database configured (database.url)");
        return NULL;
    }
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"5", app, conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        const char *m = c ? PQerrorMessage(c) : "out of memory";
        snprintf(err, errsz, "cannot connect to the database: %.*s", (int)strcspn(m, "\n"), m);
        PQfinish(c);
        return NULL;
    }
    /* a hung statement must not pin a pool thread forever */
    PQclear(PQexec(c, "SET client_min_messages = warning; SET statement_timeout = '15s'"));
    return c;
}

static mg_rc db_fail(PGconn *c, PGresult *r, mg_buf *errs, const char *what)
{
    const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
    if (m == NULL || *m == '\0')
        m = "unknown error";
    mg_buf_printf(errs, "database error (%s): %.*s\n", what, (int)strcspn(m, "\n"), m);
    PQclear(r);
    return MG_AGAIN;
}

static mg_rc exec_cmd(PGconn *c, const char *sql, mg_buf *errs)
{
    PGresult *r = PQexec(c, sql);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK)
        return db_fail(c, r, errs, sql);
    PQclear(r);
    return MG_OK;
}

static void rollback(PGconn *c)
{
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        PQclear(PQexec(c, "ROLLBACK"));
}

/* ------------------------------------------------------------------ */
/* Reading the newest version                                          */

mg_policy_doc *mg_policy_canonicalize(const char *json, size_t len, mg_buf *canon,
                                      mg_buf *errs, int *status)
{
    size_t before = errs->len;
    mg_policy_doc *doc = mg_policy_doc_parse(json, len, errs);
    if (doc == NULL) {
        /* the parser reports syntax errors against "(document)" */
        bool syntax = errs->len > before && strncmp(errs->p + before, "(document): invalid JSON", 24) == 0;
        *status = syntax ? 400 : 422;
        return NULL;
    }
    if (mg_policy_doc_export(doc, canon) != MG_OK) {
        mg_policy_doc_free(doc);
        mg_buf_append_str(errs, "out of memory\n");
        *status = 500;
        return NULL;
    }
    return doc;
}

void mg_policy_stored_free(mg_policy_stored *st)
{
    mg_buf_free(&st->canon);
    mg_policy_doc_free(st->doc);
    memset(st, 0, sizeof(*st));
}

mg_rc mg_policy_stored_load(PGconn *c, mg_policy_stored *st, mg_buf *errs)
{
    memset(st, 0, sizeof(*st));
    PGresult *r = PQexec(c, "SELECT version, doc::text FROM policy_versions ORDER BY version DESC LIMIT 1");
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_fail(c, r, errs, "read policy");
    const char *json = "{}";
    size_t len = 2;
    if (PQntuples(r) == 1) {
        st->version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        json = PQgetvalue(r, 0, 1);
        len = (size_t)PQgetlength(r, 0, 1);
    }
    int status;
    mg_buf why = {0};
    st->doc = mg_policy_canonicalize(json, len, &st->canon, &why, &status);
    PQclear(r);
    if (st->doc == NULL) {
        mg_buf_printf(errs, "stored policy version %lld does not validate: %.*s", (long long)st->version,
                      (int)why.len, why.p ? why.p : "");
        mg_buf_free(&why);
        mg_policy_stored_free(st);
        return MG_ERR;
    }
    mg_policy_etag(st->canon.p, st->canon.len, st->etag);
    return MG_OK;
}

mg_rc mg_policy_store_get(const char *conninfo, mg_buf *out, char etag[MG_POLICY_ETAG_LEN],
                          int64_t *version, mg_buf *errs)
{
    char err[300];
    PGconn *c = mg_policy_db_connect(conninfo, "modelgate-admin", err, sizeof(err));
    if (c == NULL) {
        mg_buf_printf(errs, "%s\n", err);
        return MG_AGAIN;
    }
    mg_policy_stored st;
    mg_rc rc = mg_policy_stored_load(c, &st, errs);
    PQfinish(c);
    if (rc != MG_OK)
        return rc;
    rc = mg_buf_append(out, st.canon.p, st.canon.len);
    memcpy(etag, st.etag, MG_POLICY_ETAG_LEN);
    if (version)
        *version = st.version;
    mg_policy_stored_free(&st);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The audit chain                                                      */

#define TS_FMT "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"

mg_rc mg_policy_audit_append(PGconn *c, const char *actor, const char *action,
                             const char *target, const char *before, const char *after,
                             int64_t policy_version, mg_buf *errs)
{
    char lock[64];
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%lld)", MG_POLICY_LOCK_KEY);
    PGresult *r = PQexec(c, lock);
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_fail(c, r, errs, "audit lock");
    PQclear(r);
    /* The hash covers the values exactly as PostgreSQL will give them back
     * (jsonb's own text form, the timestamp in UTC to the microsecond), so
     * verification can recompute it from a plain SELECT. */
    const char *p1[2] = {before, after};
    r = PQexecParams(c,
                     "SELECT nextval('audit_log_id_seq'), to_char(now() AT TIME ZONE 'UTC', " TS_FMT "),"
                     " $1::jsonb::text, $2::jsonb::text,"
                     " (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1)",
                     2, NULL, p1, NULL, NULL, 0);
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        return db_fail(c, r, errs, "audit prepare");
    mg_policy_audit_row row = {
        .id = strtoll(PQgetvalue(r, 0, 0), NULL, 10),
        .ts = PQgetvalue(r, 0, 1),
        .actor = actor,
        .action = action,
        .target = target,
        .before = PQgetisnull(r, 0, 2) ? NULL : PQgetvalue(r, 0, 2),
        .after = PQgetisnull(r, 0, 3) ? NULL : PQgetvalue(r, 0, 3),
        .policy_version = policy_version,
        .prev_hash = PQgetisnull(r, 0, 4) ? MG_POLICY_AUDIT_GENESIS : PQgetvalue(r, 0, 4),
    };
    char hash[65], id[32], ver[32];
    mg_policy_audit_hash(&row, hash);
    snprintf(id, sizeof(id), "%lld", (long long)row.id);
    snprintf(ver, sizeof(ver), "%lld", (long long)policy_version);
    const char *p2[10] = {id, row.ts, actor, action, target, row.before, row.after,
                          policy_version < 0 ? NULL : ver, row.prev_hash, hash};
    PGresult *ins = PQexecParams(c,
                                 "INSERT INTO audit_log (id, ts, actor, action, target, before, after,"
                                 " policy_version, prev_hash, hash) VALUES ($1, $2::timestamptz, $3, $4, $5,"
                                 " $6::jsonb, $7::jsonb, $8, $9, $10)",
                                 10, NULL, p2, NULL, NULL, 0);
    PQclear(r);
    if (ins == NULL || PQresultStatus(ins) != PGRES_COMMAND_OK)
        return db_fail(c, ins, errs, "audit insert");
    PQclear(ins);
    return MG_OK;
}

static mg_rc verify_rows(PGresult *r, int64_t *n_rows, int64_t *bad_id, char prev[65], mg_buf *errs)
{
    for (int i = 0; i < PQntuples(r); i++) {
        mg_policy_audit_row row = {
            .id = strtoll(PQgetvalue(r, i, 0), NULL, 10),
            .ts = PQgetvalue(r, i, 1),
            .actor = PQgetvalue(r, i, 2),
            .action = PQgetvalue(r, i, 3),
            .target = PQgetvalue(r, i, 4),
            .before = PQgetisnull(r, i, 5) ? NULL : PQgetvalue(r, i, 5),
            .after = PQgetisnull(r, i, 6) ? NULL : PQgetvalue(r, i, 6),
            .policy_version = PQgetisnull(r, i, 7) ? -1 : strtoll(PQgetvalue(r, i, 7), NULL, 10),
            .prev_hash = PQgetvalue(r, i, 8),
        };
        const char *stored = PQgetvalue(r, i, 9);
        if (strcmp(row.prev_hash, prev) != 0) {
            *bad_id = row.id;
            mg_buf_printf(errs, "audit row %lld: prev_hash does not match the hash of the row before it "
                          "(a row before it was removed, or altered and rehashed)\n", (long long)row.id);
            return MG_ERR;
        }
        char want[65];
        mg_policy_audit_hash(&row, want);
        if (strcmp(want, stored) != 0) {
            *bad_id = row.id;
            mg_buf_printf(errs, "audit row %lld: content does not match its hash (the row was altered)\n",
                          (long long)row.id);
            return MG_ERR;
        }
        memcpy(prev, stored, 65);
        (*n_rows)++;
    }
    return MG_OK;
}

mg_rc mg_policy_audit_verify(const char *conninfo, int64_t *n_rows, int64_t *bad_id,
                             char head[65], mg_buf *errs)
{
    *n_rows = 0;
    *bad_id = 0;
    char err[300];
    PGconn *c = mg_policy_db_connect(conninfo, "modelgate-cli", err, sizeof(err));
    if (c == NULL) {
        mg_buf_printf(errs, "%s\n", err);
        return MG_AGAIN;
    }
    char prev[65];
    memcpy(prev, MG_POLICY_AUDIT_GENESIS, 65);
    /* one consistent snapshot, read in batches so memory stays flat */
    mg_rc rc = exec_cmd(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", errs);
    if (rc == MG_OK)
        rc = exec_cmd(c, "DECLARE audit_cur NO SCROLL CURSOR FOR SELECT id, to_char(ts AT TIME ZONE 'UTC', "
                         TS_FMT "), actor, action, target, before::text, after::text, policy_version,"
                         " prev_hash, hash FROM audit_log ORDER BY id", errs);
    while (rc == MG_OK) {
        PGresult *r = PQexec(c, "FETCH 1000 FROM audit_cur");
        if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = db_fail(c, r, errs, "read audit log");
            break;
        }
        int n = PQntuples(r);
        rc = verify_rows(r, n_rows, bad_id, prev, errs);
        PQclear(r);
        if (n == 0)
            break;
    }
    rollback(c);
    PQfinish(c);
    if (rc == MG_OK && head)
        memcpy(head, prev, 65);
    return rc;
}

static bool is_bare_date(const char *s)
{
    static const char shape[] = "dddd-dd-dd";
    if (strlen(s) != sizeof(shape) - 1)
        return false;
    for (size_t i = 0; shape[i]; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return false;
    return true;
}

static mg_rc append_entries(PGresult *r, mg_buf *out)
{
    mg_rc rc = mg_buf_append_str(out, "{\"entries\":[");
    for (int i = 0; i < PQntuples(r) && rc == MG_OK; i++) {
        static const char *const names[] = {"actor", "action", "target"};
        rc = mg_buf_printf(out, "%s{\"id\":%s,\"ts\":\"%s\"", i ? "," : "", PQgetvalue(r, i, 0),
                           PQgetvalue(r, i, 1));
        for (int k = 0; k < 3 && rc == MG_OK; k++) {
            rc = mg_buf_printf(out, ",\"%s\":", names[k]);
            if (rc == MG_OK)
                rc = mg_buf_append_json_str(out, PQgetvalue(r, i, 2 + k), (size_t)PQgetlength(r, i, 2 + k));
        }
        /* before/after are jsonb's own text: valid JSON to embed as is */
        if (rc == MG_OK)
            rc = mg_buf_printf(out, ",\"policy_version\":%s,\"before\":%s,\"after\":%s,"
                               "\"prev_hash\":\"%s\",\"hash\":\"%s\"}",
                               PQgetisnull(r, i, 7) ? "null" : PQgetvalue(r, i, 7),
                               PQgetisnull(r, i, 5) ? "null" : PQgetvalue(r, i, 5),
                               PQgetisnull(r, i, 6) ? "null" : PQgetvalue(r, i, 6),
                               PQgetvalue(r, i, 8), PQgetvalue(r, i, 9));
    }
    if (rc == MG_OK)
        rc = mg_buf_append_str(out, "]}\n");
    return rc;
}

mg_rc mg_policy_audit_list(const char *conninfo, const char *from, const char *to,
                           long limit, mg_buf *out, mg_buf *errs)
{
    if (limit < 1 || limit > 10000) {
        mg_buf_append_str(errs, "limit: must be between 1 and 10000\n");
        return MG_ERR;
    }
    if (from && !*from)
        from = NULL;
    if (to && !*to)
        to = NULL;
    char err[300], lim[24];
    snprintf(lim, sizeof(lim), "%ld", limit);
    PGconn *c = mg_policy_db_connect(conninfo, "modelgate-admin", err, sizeof(err));
    if (c == NULL) {
        mg_buf_printf(errs, "%s\n", err);
        return MG_AGAIN;
    }
    /* a bare date as the upper bound means "through the end of that day" */
    const char *sql = to && is_bare_date(to)
        ? "SELECT id, to_char(ts AT TIME ZONE 'UTC', " TS_FMT "), actor, action, target, before::text,"
          " after::text, policy_version, prev_hash, hash FROM audit_log"
          " WHERE ($1::text IS NULL OR ts >= $1::timestamptz) AND ts < ($2::date + 1)::timestamptz"
          " ORDER BY id LIMIT $3::int"
        : "SELECT id, to_char(ts AT TIME ZONE 'UTC', " TS_FMT "), actor, action, target, before::text,"
          " after::text, policy_version, prev_hash, hash FROM audit_log"
          " WHERE ($1::text IS NULL OR ts >= $1::timestamptz) AND ($2::text IS NULL OR ts < $2::timestamptz)"
          " ORDER BY id LIMIT $3::int";
    const char *pv[3] = {from, to, lim};
    PQclear(PQexec(c, "SET TIME ZONE 'UTC'"));   /* zone-less bounds are UTC */
    PGresult *r = PQexecParams(c, sql, 3, NULL, pv, NULL, NULL, 0);
    mg_rc rc;
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        if (state && strncmp(state, "22", 2) == 0) {   /* data exception: a bad bound */
            mg_buf_append_str(errs, "from/to: not a date or timestamp\n");
            PQclear(r);
            rc = MG_ERR;
        } else {
            rc = db_fail(c, r, errs, "read audit log");
        }
    } else {
        rc = append_entries(r, out);
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Writes                                                               */

typedef struct write_req {
    /* whole document (kind < 0) or one part */
    int kind;
    const char *name;
    const char *json;            /* NULL: delete the part */
    size_t len;
    const char *actor, *action, *if_match;
} write_req;

static const char *part_key(int kind)
{
    return kind == MG_POLICY_PART_ROLE ? "roles" : kind == MG_POLICY_PART_FILTER ? "filters" : "role_mappings";
}

static char *print_or_null(const cJSON *j)
{
    return j ? cJSON_PrintUnformatted(j) : NULL;
}

/* The part's JSON in a canonical export, or NULL when absent. malloc'd. */
static char *part_of(const mg_buf *canon, const write_req *w)
{
    cJSON *root = cJSON_ParseWithLength(canon->p, canon->len);
    const cJSON *sect = cJSON_GetObjectItemCaseSensitive(root, part_key(w->kind));
    const cJSON *item = w->kind == MG_POLICY_PART_MAPPINGS ? sect : cJSON_GetObjectItemCaseSensitive(sect, w->name);
    char *s = print_or_null(item);
    cJSON_Delete(root);
    return s;
}

/* New document text: the current export with one part replaced or removed.
 * NULL with *status set (400 bad JSON, 404 nothing to delete, 500 OOM). */
static char *edit_part(const mg_buf *canon, const write_req *w, mg_buf *errs, int *status)
{
    cJSON *root = cJSON_ParseWithLength(canon->p, canon->len);
    cJSON *part = NULL;
    char *out = NULL;
    if (root == NULL) {
        *status = 500;
        mg_buf_append_str(errs, "out of memory\n");
        return NULL;
    }
    if (w->json != NULL) {
        part = cJSON_ParseWithLength(w->json, w->len);
        if (part == NULL) {
            *status = 400;
            mg_buf_printf(errs, "(body): invalid JSON\n");
            goto out;
        }
    }
    const char *key = part_key(w->kind);
    if (w->kind == MG_POLICY_PART_MAPPINGS) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, key);
        cJSON_AddItemToObject(root, key, part);
    } else {
        cJSON *sect = cJSON_GetObjectItemCaseSensitive(root, key);
        if (!cJSON_IsObject(sect)) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, key);
            sect = cJSON_AddObjectToObject(root, key);
        }
        if (part == NULL && cJSON_GetObjectItemCaseSensitive(sect, w->name) == NULL) {
            *status = 404;
            mg_buf_printf(errs, "%s.%s: no such %s\n", key, w->name, w->kind == MG_POLICY_PART_ROLE ? "role" : "filter");
            goto out;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(sect, w->name);
        if (part != NULL)
            cJSON_AddItemToObject(sect, w->name, part);
    }
    part = NULL;                 /* owned by root now */
    out = cJSON_PrintUnformatted(root);
    if (out == NULL) {
        *status = 500;
        mg_buf_append_str(errs, "out of memory\n");
    }
out:
    cJSON_Delete(part);
    cJSON_Delete(root);
    return out;
}

static mg_rc store_write(const char *conninfo, const write_req *w, mg_policy_write_result *res,
                         mg_buf *errs, int *http_status)
{
    int status = 200;
    mg_rc rc = MG_ERR;
    mg_buf canon = {0};
    mg_policy_doc *doc = NULL;
    mg_policy_stored cur = {0};
    char *edited = NULL, *part_before = NULL, *part_after = NULL;
    char err[300], etag[MG_POLICY_ETAG_LEN];
    PGconn *c = NULL;
    PGresult *r;

    memset(res, 0, sizeof(*res));
    /* A whole document is checked before the database is touched. */
    if (w->kind < 0 && (doc = mg_policy_canonicalize(w->json, w->len, &canon, errs, &status)) == NULL)
        goto out;
    c = mg_policy_db_connect(conninfo, "modelgate-admin", err, sizeof(err));
    if (c == NULL) {
        mg_buf_printf(errs, "%s\n", err);
        status = 503;
        goto out;
    }
    char lock[64];
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%lld)", MG_POLICY_LOCK_KEY);
    if (exec_cmd(c, "BEGIN", errs) != MG_OK)
        goto db_error;
    r = PQexec(c, lock);
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
        db_fail(c, r, errs, "policy lock");
        goto db_error;
    }
    PQclear(r);
    mg_rc lrc = mg_policy_stored_load(c, &cur, errs);
    if (lrc == MG_AGAIN)
        goto db_error;
    if (lrc == MG_ERR) {
        /* A stored version the engine no longer accepts: a whole new
         * document may replace it, a part edit cannot build on it. */
        if (w->kind >= 0) {
            status = 409;
            goto done;
        }
        errs->len = 0;
        cur.version = -1;
        mg_policy_etag("", 0, cur.etag);
    }
    if (!mg_policy_etag_matches(w->if_match, cur.etag)) {
        status = 412;
        mg_buf_printf(errs, "If-Match: the policy changed since it was read (current ETag %s)\n", cur.etag);
        goto done;
    }
    if (w->kind >= 0) {
        if ((edited = edit_part(&cur.canon, w, errs, &status)) == NULL)
            goto done;
        if ((doc = mg_policy_canonicalize(edited, strlen(edited), &canon, errs, &status)) == NULL)
            goto done;
    }
    mg_policy_etag(canon.p, canon.len, etag);
    if (cur.version >= 0 && canon.len == cur.canon.len && memcmp(canon.p, cur.canon.p, canon.len) == 0) {
        rc = MG_OK;              /* nothing changed: no version, no audit row */
        res->version = cur.version;
        goto done;
    }

    const char *pv[3] = {NULL, etag, w->actor};
    if (mg_buf_append(&canon, "", 1) != MG_OK)   /* NUL for libpq; not part of the text */
        goto db_error;
    canon.len--;
    pv[0] = canon.p;
    r = PQexecParams(c, "INSERT INTO policy_versions (doc, etag, created_by) VALUES ($1::jsonb, $2, $3)"
                        " RETURNING version", 3, NULL, pv, NULL, NULL, 0);
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        db_fail(c, r, errs, "insert version");
        goto db_error;
    }
    char version[32];
    snprintf(version, sizeof(version), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);

    const char *before, *after;
    char target[160];
    if (w->kind < 0) {
        if (mg_buf_append(&cur.canon, "", 1) != MG_OK)
            goto db_error;
        before = cur.version > 0 ? cur.canon.p : NULL;
        after = canon.p;
        snprintf(target, sizeof(target), "policy");
    } else {
        part_before = cur.version >= 0 ? part_of(&cur.canon, w) : NULL;
        part_after = part_of(&canon, w);
        before = part_before;
        after = part_after;
        if (w->kind == MG_POLICY_PART_MAPPINGS)
            snprintf(target, sizeof(target), "role_mappings");
        else
            snprintf(target, sizeof(target), "%s.%s", part_key(w->kind), w->name);
    }
    if (mg_policy_audit_append(c, w->actor, w->action, target, before, after,
                               strtoll(version, NULL, 10), errs) != MG_OK)
        goto db_error;
    const char *nv[1] = {version};
    r = PQexecParams(c, "SELECT pg_notify('policy_changed', $1)", 1, NULL, nv, NULL, NULL, 0);
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
        db_fail(c, r, errs, "notify");
        goto db_error;
    }
    PQclear(r);
    if (exec_cmd(c, "COMMIT", errs) != MG_OK)
        goto db_error;
    rc = MG_OK;
    res->changed = true;
    res->version = strtoll(version, NULL, 10);
    goto done;

db_error:
    status = 503;
done:
    if (c)
        rollback(c);
    PQfinish(c);
    if (rc == MG_OK)
        memcpy(res->etag, etag, sizeof(etag));
out:
    if (rc != MG_OK && status == 200)
        status = 500;
    *http_status = status;
    mg_policy_doc_free(doc);
    mg_policy_stored_free(&cur);
    mg_buf_free(&canon);
    free(edited);
    cJSON_free(part_before);
    cJSON_free(part_after);
    return rc;
}

mg_rc mg_policy_store_write(const char *conninfo, int kind, const char *name, const char *json,
                            size_t len, const char *actor, const char *action, const char *if_match,
                            mg_policy_write_result *res, mg_buf *errs, int *http_status)
{
    static const char *const put_action[] = {"role.put", "filter.put", "role_mappings.put"};
    memset(res, 0, sizeof(*res));
    if (kind >= 0 && kind != MG_POLICY_PART_MAPPINGS && (name == NULL || *name == '\0')) {
        *http_status = 404;
        mg_buf_append_str(errs, "a name is required\n");
        return MG_ERR;
    }
    if (json == NULL && kind != MG_POLICY_PART_ROLE) {
        *http_status = 405;
        mg_buf_append_str(errs, "only roles can be deleted\n");
        return MG_ERR;
    }
    if (action == NULL)
        action = kind < 0 ? "policy.put" : json == NULL ? "role.delete" : put_action[kind];
    write_req w = {.kind = kind, .name = name, .json = json, .len = len, .actor = actor,
                   .action = action, .if_match = if_match};
    return store_write(conninfo, &w, res, errs, http_status);
}

static mg_rc dup_etag(mg_rc rc, const mg_policy_write_result *res, char **new_etag)
{
    if (new_etag)
        *new_etag = rc == MG_OK ? strdup(res->etag) : NULL;
    return rc;
}

mg_rc mg_policy_store_put_action(const char *conninfo, const char *doc_json, size_t len,
                                 const char *actor, const char *action, const char *if_match,
                                 char **new_etag, mg_buf *errs, int *http_status)
{
    mg_policy_write_result res;
    mg_rc rc = mg_policy_store_write(conninfo, -1, NULL, doc_json, len, actor, action, if_match,
                                     &res, errs, http_status);
    return dup_etag(rc, &res, new_etag);
}

mg_rc mg_policy_store_put(const char *conninfo, const char *doc_json, const char *actor,
                          const char *if_match, char **new_etag, mg_buf *errs, int *http_status)
{
    return mg_policy_store_put_action(conninfo, doc_json, strlen(doc_json), actor, NULL, if_match,
                                      new_etag, errs, http_status);
}

mg_rc mg_policy_store_put_part(const char *conninfo, mg_policy_part kind, const char *name,
                               const char *json, size_t len, const char *actor,
                               const char *if_match, char **new_etag, mg_buf *errs,
                               int *http_status)
{
    mg_policy_write_result res;
    mg_rc rc = mg_policy_store_write(conninfo, (int)kind, name, json, len, actor, NULL, if_match,
                                     &res, errs, http_status);
    return dup_etag(rc, &res, new_etag);
}
