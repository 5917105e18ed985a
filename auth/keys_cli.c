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
    if (user == NULL || !mg_auth_keys_text_ok(user, 320)) {
        fprintf(stderr, "modelgate keys create: --user EMAIL is required\n");
        return 1;
    }
    if (role == NULL || !mg_auth_keys_role_ok(role)) {
        fprintf(stderr, "modelgate keys create: --role ROLE is required (letters, digits, _ - . :)\n");
        return 1;
    }
    if (name && !mg_auth_keys_text_ok(name, 200)) {
        fprintf(stderr, "modelgate keys create: --name must be 1-200 printable characters\n");
        return 1;
    }
    uint64_t exp_ms = 0;
    if (expires && (mg_config_parse_duration_ms(expires, &exp_ms) != MG_OK || exp_ms < 1000 ||
                    exp_ms > 20ULL * 366 * 86400 * 1000)) {
        fprintf(stderr, "modelgate keys create: --expires \"%s\" is not a duration like 90d or 12h\n", expires);
        return 1;
    }
    int rc = 0;
    PGconn *c = connect_or_report(cfg, &rc);
    if (c == NULL)
        return rc;
    char key[MG_KEY_LEN + 1], id[MG_KEY_ID_LEN + 1], exp_at[40], err[300];
    int known = mg_auth_keys_role_defined(c, role, err, sizeof(err));
    if (known == 0) {
        PQfinish(c);
        fprintf(stderr, "modelgate keys create: the policy in force has no role \"%s\" (a key for it could do "
                        "nothing); define the role first or pick one it has\n", role);
        return 1;
    }
    if (known == -1)
        fprintf(stderr, "modelgate keys create: warning: no policy is stored yet; the key can do nothing until "
                        "a policy defines role \"%s\"\n", role);
    if (known == -2) {
        PQfinish(c);
        fprintf(stderr, "modelgate keys create: %s\n", err);
        return 2;
    }
    mg_rc r = mg_auth_keys_create(c, user, role, name, exp_ms, key, id, exp_at, sizeof(exp_at), err, sizeof(err));
    PQfinish(c);
    if (r != MG_OK) {
        fprintf(stderr, "modelgate keys create: %s\n", err);
        return 2;
    }
    printf("%s\n", key);
    fflush(stdout);
    fprintf(stderr, "created API key id=%s prefix=" MG_KEY_PREFIX "%s user=%s role=%s%s%s expires=%s\n"
                    "the key is shown only once; store it now\n",
            id, id, user, role, name ? " name=" : "", name ? name : "", exp_at[0] ? exp_at : "never");
    OPENSSL_cleanse(key, sizeof(key));
    return 0;
}

static int cmd_list(const mg_config *cfg)
{
    int rc = 0;
    PGconn *c = connect_or_report(cfg, &rc);
    if (c == NULL)
        return rc;
    PGresult *r = mg_auth_keys_list(c);
    if (r == NULL) {
        fprintf(stderr, "modelgate keys list: %s", PQerrorMessage(c));
        PQfinish(c);
        return 2;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        for (int f = 0; f < 9; f++) {
            const char *v = PQgetvalue(r, i, f);
            printf("%s%s", f ? "\t" : "", v[0] ? v : (f == 4 ? "-" : "never"));
        }
        printf("\n");
    }
    PQclear(r);
    PQfinish(c);
    return 0;
}

static int cmd_revoke(const char *id, const mg_config *cfg)
{
    if (!mg_auth_keys_id_ok(&id)) {
        fprintf(stderr, "modelgate keys revoke: \"%s\" is not a key id (16 hex digits)\n", id);
        return 1;
    }
    int rc = 0;
    PGconn *c = connect_or_report(cfg, &rc);
    if (c == NULL)
        return rc;
    int r = mg_auth_keys_revoke(c, id);
    if (r < 0) {
        fprintf(stderr, "modelgate keys revoke: %s", PQerrorMessage(c));
        rc = 2;
    } else if (r == 0) {
        fprintf(stderr, "modelgate keys revoke: no key with id %s\n", id);
        rc = 1;
    } else {
        fprintf(stderr, "%s key %s\n", r == 1 ? "revoked" : "already revoked:", id);
    }
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
