/* modelgate — `modelgate migrate`: numbered SQL files, applied once each.
 *
 * Files are NNNN_name.sql, applied in numeric order, each in its own
 * transaction together with its row in schema_migrations, so a failed file
 * leaves nothing half-applied. A session advisory lock serialises two
 * instances starting at once: the second waits, then finds nothing to do.
 * Where the files come from: --dir DIR, else $MODELGATE_MIGRATIONS, else
 * ./migrations, else migrations/ next to the binary's build directory
 * (<exe>/../migrations, i.e. the source tree for build/modelgate).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "usage/usage_int.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIGRATE_LOCK_KEY 0x6d676d69  /* "mgmi" */

typedef struct migration {
    long long version;
    char *name;       /* file name */
    char *sql;
    char crc[16];
} migration;

PGconn *mg_usage_cli_connect(const char *conninfo, char *err, size_t errsz)
{
    if (conninfo == NULL) {
        snprintf(err, errsz, "no database configured (database.url)");
        return NULL;
    }
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"10", "modelgate-cli", conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        const char *m = c ? PQerrorMessage(c) : "out of memory";
        snprintf(err, errsz, "cannot connect to the database: %.*s", (int)strcspn(m, "\n"), m);
        PQfinish(c);
        return NULL;
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

int mg_usage_cli_skip_config(int argc, char **argv, int i)
{
    if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0)
        return i + 1 < argc ? 2 : 1;
    return 0;
}

static bool dir_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static const char *find_dir(const char *arg, char *buf, size_t bufsz)
{
    if (arg) return arg;
    const char *env = getenv("MODELGATE_MIGRATIONS");
    if (env && *env) return env;
    if (dir_exists("migrations")) return "migrations";
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        snprintf(buf, bufsz, "%s/../migrations", dirname(exe));
        if (dir_exists(buf)) return buf;
    }
    return NULL;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    mg_buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (mg_buf_append(&b, chunk, n) != MG_OK) { fclose(f); mg_buf_free(&b); return NULL; }
    bool err = ferror(f);
    fclose(f);
    if (err || mg_buf_append(&b, "", 1) != MG_OK) { mg_buf_free(&b); return NULL; }
    return b.p;
}

static int cmp_mig(const void *a, const void *b)
{
    const migration *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

/* Loads every NNNN_*.sql in dir, sorted; 1 on a user error. */
static int load(const char *dir, migration **out, size_t *nout)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "modelgate migrate: cannot open %s: %s\n", dir, strerror(errno));
        return 2;
    }
    migration *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        if (len < 6 || strcmp(nm + len - 4, ".sql") != 0 || nm[0] < '0' || nm[0] > '9')
            continue;
        char *end;
        errno = 0;
        long long ver = strtoll(nm, &end, 10);
        if (errno || *end != '_' || ver <= 0) {
            fprintf(stderr, "modelgate migrate: %s/%s: name must be NNNN_description.sql\n", dir, nm);
            rc = 1;
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            migration *nv = realloc(v, cap * sizeof *nv);
            if (nv == NULL) { rc = 2; break; }
            v = nv;
        }
        char path[PATH_MAX + 512];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, nm) >= sizeof path) {
            rc = 1;
            break;
        }
        migration *m = &v[n];
        m->version = ver;
        m->name = strdup(nm);
        m->sql = read_file(path);
        if (m->name == NULL || m->sql == NULL) {
            fprintf(stderr, "modelgate migrate: cannot read %s\n", path);
            free(m->name);
            free(m->sql);
            rc = 2;
            break;
        }
        snprintf(m->crc, sizeof m->crc, "%08x", mg_usage_crc32(m->sql, strlen(m->sql)));
        n++;
    }
    closedir(d);
    if (n) qsort(v, n, sizeof *v, cmp_mig);
    for (size_t i = 1; rc == 0 && i < n; i++)
        if (v[i].version == v[i - 1].version) {
            fprintf(stderr, "modelgate migrate: %s and %s have the same version\n", v[i - 1].name, v[i].name);
            rc = 1;
        }
    *out = v;
    *nout = n;
    return rc;
}

static bool exec_ok(PGconn *c, const char *sql, ExecStatusType want, const char *what)
{
    PGresult *r = PQexec(c, sql);
    bool ok = r && PQresultStatus(r) == want;
    if (!ok)
        fprintf(stderr, "modelgate migrate: %s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    return ok;
}

/* A file is many statements; PQexec reports the last one's result. */
static bool exec_script(PGconn *c, const char *sql, const char *what)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
    if (!ok)
        fprintf(stderr, "modelgate migrate: %s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    return ok;
}

static int apply(PGconn *c, migration *v, size_t n)
{
    if (!exec_ok(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version bigint PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())", PGRES_COMMAND_OK, "schema_migrations"))
        return 2;
    PGresult *r = PQexec(c, "SELECT version, checksum FROM schema_migrations");
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "modelgate migrate: %s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
        PQclear(r);
        return 2;
    }
    int applied = 0;
    for (size_t i = 0; i < n; i++) {
        const char *have = NULL;
        for (int k = 0; k < PQntuples(r) && !have; k++)
            if (strtoll(PQgetvalue(r, k, 0), NULL, 10) == v[i].version)
                have = PQgetvalue(r, k, 1);
        if (have) {
            if (strcmp(have, v[i].crc) != 0)
                fprintf(stderr, "modelgate migrate: warning: %s changed after it was applied (ignored)\n", v[i].name);
            continue;
        }
        char ver[32];
        snprintf(ver, sizeof ver, "%lld", v[i].version);
        const char *pv[3] = {ver, v[i].name, v[i].crc};
        PGresult *ins;
        bool ok = exec_ok(c, "BEGIN", PGRES_COMMAND_OK, "begin") && exec_script(c, v[i].sql, v[i].name);
        if (ok) {
            ins = PQexecParams(c, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                               3, NULL, pv, NULL, NULL, 0);
            ok = ins && PQresultStatus(ins) == PGRES_COMMAND_OK;
            if (!ok) fprintf(stderr, "modelgate migrate: %s", PQresultErrorMessage(ins));
            PQclear(ins);
        }
        ok = ok && exec_ok(c, "COMMIT", PGRES_COMMAND_OK, "commit");
        if (!ok) {
            PQclear(PQexec(c, "ROLLBACK"));
            PQclear(r);
            fprintf(stderr, "modelgate migrate: %s not applied\n", v[i].name);
            return PQstatus(c) == CONNECTION_OK ? 1 : 2;
        }
        printf("applied %s\n", v[i].name);
        applied++;
    }
    PQclear(r);
    if (applied == 0)
        printf("schema up to date (%zu migrations)\n", n);
    return 0;
}

int mg_cli_migrate(int argc, char **argv, const mg_config *cfg)
{
    const char *dirarg = NULL;
    for (int i = 1; i < argc; i++) {
        int skip = mg_usage_cli_skip_config(argc, argv, i);
        if (skip) { i += skip - 1; continue; }
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dirarg = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: modelgate migrate [-c FILE] [--dir DIR]\n"
                   "applies migrations/NNNN_*.sql in order, each once (schema_migrations);\n"
                   "DIR defaults to $MODELGATE_MIGRATIONS, ./migrations, then <binary>/../migrations\n");
            return 0;
        } else {
            fprintf(stderr, "modelgate migrate: unexpected argument \"%s\"\n", argv[i]);
            return 1;
        }
    }
    char buf[PATH_MAX];
    const char *dir = find_dir(dirarg, buf, sizeof buf);
    if (dir == NULL) {
        fprintf(stderr, "modelgate migrate: no migrations directory (use --dir or MODELGATE_MIGRATIONS)\n");
        return 2;
    }
    migration *v = NULL;
    size_t n = 0;
    int rc = load(dir, &v, &n);
    char err[512];
    PGconn *c = NULL;
    if (rc == 0 && (c = mg_usage_cli_connect(cfg ? cfg->database_url : NULL, err, sizeof err)) == NULL) {
        fprintf(stderr, "modelgate migrate: %s\n", err);
        rc = cfg && cfg->database_url ? 2 : 1;
    }
    if (rc == 0) {
        char lock[64];
        snprintf(lock, sizeof lock, "SELECT pg_advisory_lock(%d)", MIGRATE_LOCK_KEY);
        rc = exec_ok(c, lock, PGRES_TUPLES_OK, "lock") ? apply(c, v, n) : 2;
    }
    PQfinish(c);  /* ends the session: releases the advisory lock */
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].sql);
    }
    free(v);
    return rc;
}
