/* modelgate — `modelgate keys create | list | revoke`.
 *
 * The new key is printed once, alone on stdout, so `KEY=$(modelgate keys
 * create ...)` captures exactly the key; everything else goes to stderr.
 * Exit codes as everywhere: 0 ok, 1 user error, 2 environment (database).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth_int.h"

#include "gateway/config.h"

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>

static const char keys_help[] =
    "usage: modelgate keys create --user EMAIL --role ROLE [--name NAME] [--expires 90d] [-c FILE]\n"
    "       modelgate keys list [-c FILE]\n"
    "       modelgate keys revoke ID [-c FILE]\n"
    "\n"
    "create  makes a new API key for EMAIL (or a service account name) with ROLE and\n"
    "        prints it once, alone on stdout; it is stored only as a SHA-256 hash.\n"
    "        --expires takes a duration (30d, 12h); default: no expiry.\n"
    "list    one key per line, tab-separated: id, prefix, owner, role, name, created,\n"
    "        expires, status (active|revoked|expired), last used.\n"
    "revoke  stops key ID; every gateway instance refuses it within 5 seconds.\n";

static bool name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static bool role_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

static PGconn *connect_or_report(const mg_config *cfg, int *rc)
{
    if (cfg == NULL || cfg->database_url == NULL) {
        fprintf(stderr, "modelgate keys: the configuration has no database section\n");
        *rc = 1;
        return NULL;
    }
    char err[512] = "";
    PGconn *c = mg_auth_db_connect(cfg->database_url, err, sizeof(err));
    if (c == NULL) {
        fprintf(stderr, "modelgate keys: cannot connect to the database: %s\n", err);
        *rc = 2;
    }
    return c;
}

static int db_error(PGconn *c, PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    fprintf(stderr, "modelgate keys: %s failed: %s", what, PQerrorMessage(c));
    if (state && strcmp(state, "42P01") == 0)
        fprintf(stderr, "modelgate keys: the api_keys table is missing; run `modelgate migrate` first\n");
    PQclear(r);
    return 2;
}

static int cmd_create(int argc, char **argv, int i, const mg_config *cfg)
{
    const char *user = NULL, *role = NULL, *name = NULL, *expires = NULL;
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = strcmp(a, "--user") == 0 ? &user : strcmp(a, "--role") == 0 ? &role
                            : strcmp(a, "--name") == 0 ? &name : strcmp(a, "--expires") == 0 ? &expires : NULL;
        if (slot == NULL || i + 1 >= argc) {
            fprintf(stderr, "modelgate keys create: %s \"%s\" (see modelgate keys --help)\n",
                    slot ? "missing value for" : "unexpected argument", a);
            return 1;
        }
        *slot = argv[++i];
    }
    if (user == NULL || !name_ok(user, 320)) {
        fprintf(stderr, "modelgate keys create: --user EMAIL is required\n");
        return 1;
    }
    if (role == NULL || !role_ok(role)) {
        fprintf(stderr, "modelgate keys create: --role ROLE is required (letters, digits, _ - . :)\n");
        return 1;
    }
    if (name && !name_ok(name, 200)) {
        fprintf(stderr, "modelgate keys create: --name must be 1-200 printable characters\n");
        return 1;
    }
    uint64_t exp_ms = 0;
    char interval[48] = "";
    if (expires) {
        if (mg_config_parse_duration_ms(expires, &exp_ms) != MG_OK || exp_ms < 1000 ||
            exp_ms > 20ULL * 366 * 86400 * 1000) {
            fprintf(stderr, "modelgate keys create: --expires \"%s\" is not a duration like 90d or 12h\n", expires);
            return 1;
        }
        snprintf(interval, sizeof(interval), "%llu milliseconds", (unsigned long long)exp_ms);
    }
    int rc = 0;
    PGconn *c = connect_or_report(cfg, &rc);
    if (c == NULL)
        return rc;
    char key[MG_KEY_LEN + 1], id[MG_KEY_ID_LEN + 1], hash[65], prefix[4 + MG_KEY_ID_LEN + 1];
    if (mg_auth_key_generate(key, id) != MG_OK) {
        fprintf(stderr, "modelgate keys create: the random number generator failed\n");
        PQfinish(c);
        return 2;
    }
    mg_auth_key_hash_hex(key, strlen(key), hash);
    snprintf(prefix, sizeof(prefix), "mgk_%s", id);
    const char *email = strchr(user, '@') ? user : NULL;
    const char *params[] = {id, prefix, hash, user, email, role, name, expires ? interval : NULL};
    PGresult *r = PQexecParams(c,
        "INSERT INTO api_keys (id, prefix, hash, owner_subject, owner_email, role, name, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8::interval)"
        " RETURNING to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        8, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        OPENSSL_cleanse(key, sizeof(key));
        rc = db_error(c, r, "creating the key");
        PQfinish(c);
        return rc;
    }
    printf("%s\n", key);
    fflush(stdout);
    fprintf(stderr, "created API key id=%s prefix=%s user=%s role=%s%s%s expires=%s\n"
                    "the key is shown only once; store it now\n",
            id, prefix, user, role, name ? " name=" : "", name ? name : "",
            PQgetisnull(r, 0, 0) ? "never" : PQgetvalue(r, 0, 0));
    OPENSSL_cleanse(key, sizeof(key));
    PQclear(r);
    PQfinish(c);
    return 0;
}

static int cmd_list(const mg_config *cfg)
{
    int rc = 0;
    PGconn *c = connect_or_report(cfg, &rc);
    if (c == NULL)
        return rc;
    PGresult *r = PQexec(c,
        "SELECT id, prefix, owner_subject, role, COALESCE(name, '-'),"
        " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
        " COALESCE(to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'never'),"
        " CASE WHEN revoked_at IS NOT NULL THEN 'revoked'"
        "      WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired' ELSE 'active' END,"
        " COALESCE(to_char(last_used_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'never')"
        " FROM api_keys ORDER BY created_at, id");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = db_error(c, r, "listing keys");
        PQfinish(c);
        return rc;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        for (int f = 0; f < 9; f++)
            printf("%s%s", f ? "\t" : "", PQgetvalue(r, i, f));
        printf("\n");
    }
    PQclear(r);
    PQfinish(c);
    return 0;
}

static int cmd_revoke(const char *id, const mg_config *cfg)
{
    size_t n = strlen(id);
    /* Accept the id or the printed prefix "mgk_<id>". */
    if (n == 4 + MG_KEY_ID_LEN && memcmp(id, MG_KEY_PREFIX, 4) == 0) {
        id += 4;
        n -= 4;
    }
    bool hex = n == MG_KEY_ID_LEN;
    for (size_t i = 0; hex && i < n; i++)
        hex = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f');
    if (!hex) {
        fprintf(stderr, "modelgate keys revoke: \"%s\" is not a key id (16 hex digits)\n", id);
        return 1;
    }
    int rc = 0;
    PGconn *c = connect_or_report(cfg, &rc);
    if (c == NULL)
        return rc;
    const char *params[] = {id};
    PGresult *r = PQexecParams(c,
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1"
        " RETURNING revoked_at = now()", 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = db_error(c, r, "revoking the key");
        PQfinish(c);
        return rc;
    }
    if (PQntuples(r) == 0) {
        fprintf(stderr, "modelgate keys revoke: no key with id %s\n", id);
        rc = 1;
    } else {
        fprintf(stderr, "%s key %s\n", PQgetvalue(r, 0, 0)[0] == 't' ? "revoked" : "already revoked:", id);
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

int mg_cli_keys(int argc, char **argv, const mg_config *cfg)
{
    /* -c FILE was consumed by main to load cfg; drop it from our view. */
    char **args = calloc((size_t)argc + 1, sizeof(char *));
    if (args == NULL)
        return 2;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            i++;
            continue;
        }
        args[n++] = argv[i];
    }
    int rc;
    if (n == 0) {
        fputs(keys_help, stderr);
        rc = 1;
    } else if (strcmp(args[0], "-h") == 0 || strcmp(args[0], "--help") == 0 ||
               (n > 1 && (strcmp(args[1], "-h") == 0 || strcmp(args[1], "--help") == 0))) {
        fputs(keys_help, stdout);
        rc = 0;
    } else if (strcmp(args[0], "create") == 0) {
        rc = cmd_create(n, args, 1, cfg);
    } else if (strcmp(args[0], "list") == 0 && n == 1) {
        rc = cmd_list(cfg);
    } else if (strcmp(args[0], "revoke") == 0 && n == 2) {
        rc = cmd_revoke(args[1], cfg);
    } else {
        fprintf(stderr, "modelgate keys: unexpected arguments (see modelgate keys --help)\n");
        rc = 1;
    }
    free(args);
    return rc;
}
