/* modelgate — API keys in PostgreSQL: create, list, revoke.
 *
 * Shared by `modelgate keys` (auth/keys_cli.c) and the admin API
 * (/admin/v1/keys, auth/keys_admin.c) so both write the same rows the same
 * way. All blocking: CLI or pool threads only. Only the SHA-256 of a key is
 * ever stored; the key itself exists in memory just long enough to be shown
 * once.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth_int.h"

#include <openssl/crypto.h>
#include <stdio.h>

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

bool mg_auth_keys_role_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 100)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

bool mg_auth_keys_text_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

int mg_auth_keys_role_defined(PGconn *c, const char *role, char *err, size_t errsz)
{
    const char *params[] = {role};
    PGresult *r = PQexecParams(c,
        "SELECT (SELECT doc->'roles' ? $1 FROM policy_versions ORDER BY version DESC LIMIT 1)",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        snprintf(err, errsz, "reading the policy: %s", PQerrorMessage(c));
        PQclear(r);
        return -2;
    }
    int known = PQgetisnull(r, 0, 0) ? -1 : PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return known;
}

mg_rc mg_auth_keys_create(PGconn *c, const char *user, const char *role, const char *name,
                          uint64_t expires_ms, char key[MG_KEY_LEN + 1], char id[MG_KEY_ID_LEN + 1],
                          char *expires_at, size_t expires_sz, char *err, size_t errsz)
{
    char hash[65], prefix[4 + MG_KEY_ID_LEN + 1], interval[48];
    if (mg_auth_key_generate(key, id) != MG_OK) {
        snprintf(err, errsz, "the random number generator failed");
        return MG_ERR;
    }
    mg_auth_key_hash_hex(key, strlen(key), hash);
    snprintf(prefix, sizeof(prefix), MG_KEY_PREFIX "%s", id);
    snprintf(interval, sizeof(interval), "%llu milliseconds", (unsigned long long)expires_ms);
    const char *email = strchr(user, '@') ? user : NULL;
    const char *params[] = {id, prefix, hash, user, email, role, name, expires_ms ? interval : NULL};
    PGresult *r = PQexecParams(c,
        "INSERT INTO api_keys (id, prefix, hash, owner_subject, owner_email, role, name, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8::interval) RETURNING " TS("expires_at"),
        8, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errsz, "creating the key: %s", PQerrorMessage(c));
        PQclear(r);
        OPENSSL_cleanse(key, MG_KEY_LEN + 1);
        return MG_AGAIN;
    }
    snprintf(expires_at, expires_sz, "%s", PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return MG_OK;
}

PGresult *mg_auth_keys_list(PGconn *c)
{
    PGresult *r = PQexec(c,
        "SELECT id, prefix, owner_subject, role, COALESCE(name, ''), " TS("created_at") ","
        " COALESCE(" TS("expires_at") ", ''),"
        " CASE WHEN revoked_at IS NOT NULL THEN 'revoked'"
        "      WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired' ELSE 'active' END,"
        " COALESCE(" TS("last_used_at") ", '')"
        " FROM api_keys ORDER BY created_at, id");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return NULL;
    }
    return r;
}

bool mg_auth_keys_id_ok(const char **id)
{
    const char *s = *id;
    size_t n = strlen(s);
    if (n == 4 + MG_KEY_ID_LEN && memcmp(s, MG_KEY_PREFIX, 4) == 0) {   /* the printed prefix */
        s += 4;
        n -= 4;
    }
    bool hex = n == MG_KEY_ID_LEN;
    for (size_t i = 0; hex && i < n; i++)
        hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
    *id = s;
    return hex;
}

int mg_auth_keys_revoke(PGconn *c, const char *id)
{
    const char *params[] = {id};
    PGresult *r = PQexecParams(c,
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1"
        " RETURNING revoked_at = now()", 1, NULL, params, NULL, NULL, 0);
    int rc;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = -1;
    else if (PQntuples(r) == 0)
        rc = 0;
    else
        rc = PQgetvalue(r, 0, 0)[0] == 't' ? 1 : 2;
    PQclear(r);
    return rc;
}
