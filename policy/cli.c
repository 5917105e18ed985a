/* modelgate — `modelgate policy export|import` and `modelgate audit verify|list`.
 *
 * import shows the diff against the version in force, then stores the file
 * as one new version with If-Match set to the version it diffed against, so
 * what was shown is exactly what gets replaced (a concurrent change makes
 * the import fail instead of silently overwriting it).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/store_int.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char policy_help[] =
    "usage: modelgate policy export [-c FILE] [-o OUT]\n"
    "       modelgate policy import [-c FILE] DOC.json [--dry-run]\n"
    "export writes the policy in force (canonical JSON) to OUT or stdout;\n"
    "import validates DOC.json (\"-\" = stdin), prints the diff against the policy\n"
    "in force and stores it as one new version (audit actor cli:<unix user>);\n"
    "--dry-run prints the diff and changes nothing.\n";

static const char audit_help[] =
    "usage: modelgate audit verify [-c FILE]\n"
    "       modelgate audit list [-c FILE] [--from TS] [--to TS] [--limit N]\n"
    "verify recomputes the audit log's hash chain; exit 1 names the first bad row.\n"
    "list prints the entries as JSON (from <= ts < to; a bare date as --to\n"
    "includes that day).\n";

static char *slurp(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        return NULL;
    mg_buf b = {0};
    char chunk[8192];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ok = mg_buf_append(&b, chunk, n) == MG_OK;
    ok = ok && !ferror(f) && mg_buf_append(&b, "", 1) == MG_OK;
    if (f != stdin)
        fclose(f);
    if (!ok) {
        mg_buf_free(&b);
        return NULL;
    }
    *len = b.len - 1;
    return b.p;
}

/* Writes data to path through a temporary file and rename, so a reader
 * never sees half a policy. */
static bool write_file(const char *path, const char *data, size_t len)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
        return false;
    FILE *f = fopen(tmp, "wb");
    if (f == NULL)
        return false;
    bool ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (ok && rename(tmp, path) != 0)
        ok = false;
    if (!ok)
        unlink(tmp);
    return ok;
}

static void actor_name(char *out, size_t outsz)
{
    struct passwd *pw = getpwuid(geteuid());
    const char *user = pw && pw->pw_name ? pw->pw_name : getenv("USER");
    if (user && *user)
        snprintf(out, outsz, "cli:%s", user);
    else
        snprintf(out, outsz, "cli:uid%ld", (long)geteuid());
}

static void print_errs(const char *prefix, const mg_buf *errs)
{
    const char *p = errs->p ? errs->p : "";
    size_t i = 0;
    while (i < errs->len) {
        size_t n = strcspn(p + i, "\n");
        fprintf(stderr, "%s%.*s\n", prefix, (int)n, p + i);
        i += n + 1;
    }
}

static int cmd_export(int argc, char **argv, const mg_config *cfg)
{
    const char *outpath = NULL;
    for (int i = 2; i < argc; i++) {
        if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc) {
            outpath = argv[++i];
        } else {
            fprintf(stderr, "modelgate policy export: unexpected argument \"%s\"\n", argv[i]);
            return 1;
        }
    }
    mg_buf doc = {0}, errs = {0};
    char etag[MG_POLICY_ETAG_LEN];
    int64_t version = 0;
    mg_rc rc = mg_policy_store_get(cfg ? cfg->database_url : NULL, &doc, etag, &version, &errs);
    int ex = 0;
    if (rc != MG_OK) {
        print_errs("modelgate policy export: ", &errs);
        ex = rc == MG_AGAIN ? 2 : 1;
    } else if (outpath) {
        if (!write_file(outpath, doc.p, doc.len)) {
            fprintf(stderr, "modelgate policy export: cannot write %s: %s\n", outpath, strerror(errno));
            ex = 2;
        } else {
            fprintf(stderr, "exported version %lld (etag %s) to %s\n", (long long)version, etag, outpath);
        }
    } else if (fwrite(doc.p, 1, doc.len, stdout) != doc.len || fflush(stdout) != 0) {
        ex = 2;
    }
    mg_buf_free(&doc);
    mg_buf_free(&errs);
    return ex;
}

static int cmd_import(int argc, char **argv, const mg_config *cfg)
{
    const char *file = NULL;
    bool dry = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0 || strcmp(argv[i], "-n") == 0) {
            dry = true;
        } else if (file == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
            file = argv[i];
        } else {
            fprintf(stderr, "modelgate policy import: unexpected argument \"%s\"\n", argv[i]);
            return 1;
        }
    }
    if (file == NULL) {
        fputs(policy_help, stderr);
        return 1;
    }
    size_t len = 0;
    char *text = slurp(file, &len);
    if (text == NULL) {
        fprintf(stderr, "modelgate policy import: cannot read %s: %s\n", file, strerror(errno));
        return 1;
    }
    const char *db = cfg ? cfg->database_url : NULL;
    mg_buf canon = {0}, errs = {0}, cur = {0}, diff = {0};
    mg_policy_doc *doc = NULL, *old = NULL;
    int status, ex = 0;
    char etag[MG_POLICY_ETAG_LEN], prefix[4200];
    int64_t version = 0;
    snprintf(prefix, sizeof(prefix), "%s: ", file);

    if ((doc = mg_policy_canonicalize(text, len, &canon, &errs, &status)) == NULL) {
        print_errs(prefix, &errs);
        ex = 1;
        goto out;
    }
    mg_rc rc = mg_policy_store_get(db, &cur, etag, &version, &errs);
    if (rc != MG_OK) {
        print_errs("modelgate policy import: ", &errs);
        ex = rc == MG_AGAIN ? 2 : 1;
        goto out;
    }
    old = mg_policy_doc_parse(cur.p, cur.len, &errs);
    if (old == NULL || mg_policy_diff(old, doc, &diff) != MG_OK) {
        fprintf(stderr, "modelgate policy import: cannot diff against version %lld\n", (long long)version);
        ex = 2;
        goto out;
    }
    if (diff.len == 0) {
        printf("no changes (version %lld is the same document)\n", (long long)version);
        goto out;
    }
    fwrite(diff.p, 1, diff.len, stdout);
    if (dry) {
        printf("dry run: nothing changed (version %lld in force)\n", (long long)version);
        goto out;
    }
    char actor[300];
    actor_name(actor, sizeof(actor));
    mg_policy_write_result res;
    rc = mg_policy_store_write(db, -1, NULL, text, len, actor, "policy.import", etag, &res, &errs, &status);
    if (rc != MG_OK) {
        print_errs("modelgate policy import: ", &errs);
        if (status == 412)
            fprintf(stderr, "modelgate policy import: the policy changed while importing; run it again\n");
        ex = status == 503 ? 2 : 1;
        goto out;
    }
    printf("imported as version %lld (etag %s)\n", (long long)res.version, res.etag);
out:
    fflush(stdout);
    mg_policy_doc_free(doc);
    mg_policy_doc_free(old);
    mg_buf_free(&canon);
    mg_buf_free(&errs);
    mg_buf_free(&cur);
    mg_buf_free(&diff);
    free(text);
    return ex;
}

int mg_cli_policy(int argc, char **argv, const mg_config *cfg)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(policy_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(policy_help, stdout);
            return 0;
        }
    if (strcmp(argv[1], "export") == 0)
        return cmd_export(argc, argv, cfg);
    if (strcmp(argv[1], "import") == 0)
        return cmd_import(argc, argv, cfg);
    fprintf(stderr, "modelgate policy: unknown subcommand \"%s\" (export or import)\n", argv[1]);
    return 1;
}

static int cmd_verify(const mg_config *cfg)
{
    int64_t n = 0, bad = 0;
    char head[65];
    mg_buf errs = {0};
    mg_rc rc = mg_policy_audit_verify(cfg ? cfg->database_url : NULL, &n, &bad, head, &errs);
    int ex = 0;
    if (rc == MG_OK) {
        printf("audit log intact: %lld entries, head %s\n", (long long)n, head);
    } else {
        print_errs("modelgate audit verify: ", &errs);
        if (rc == MG_ERR)
            fprintf(stderr, "modelgate audit verify: %lld entries before row %lld are intact\n", (long long)n,
                    (long long)bad);
        ex = rc == MG_ERR ? 1 : 2;
    }
    mg_buf_free(&errs);
    return ex;
}

static int cmd_list(int argc, char **argv, const mg_config *cfg)
{
    const char *from = NULL, *to = NULL;
    long limit = 1000;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            from = argv[++i];
        } else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
            to = argv[++i];
        } else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            limit = strtol(argv[++i], &end, 10);
            if (errno || *end != '\0' || end == argv[i]) {
                fprintf(stderr, "modelgate audit list: --limit needs a number\n");
                return 1;
            }
        } else {
            fprintf(stderr, "modelgate audit list: unexpected argument \"%s\"\n", argv[i]);
            return 1;
        }
    }
    mg_buf out = {0}, errs = {0};
    mg_rc rc = mg_policy_audit_list(cfg ? cfg->database_url : NULL, from, to, limit, &out, &errs);
    int ex = 0;
    if (rc == MG_OK) {
        fwrite(out.p, 1, out.len, stdout);
    } else {
        print_errs("modelgate audit list: ", &errs);
        ex = rc == MG_ERR ? 1 : 2;
    }
    mg_buf_free(&out);
    mg_buf_free(&errs);
    return ex;
}

int mg_cli_audit(int argc, char **argv, const mg_config *cfg)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(audit_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(audit_help, stdout);
            return 0;
        }
    if (strcmp(argv[1], "verify") == 0) {
        if (argc > 2) {
            fprintf(stderr, "modelgate audit verify: unexpected argument \"%s\"\n", argv[2]);
            return 1;
        }
        return cmd_verify(cfg);
    }
    if (strcmp(argv[1], "list") == 0)
        return cmd_list(argc, argv, cfg);
    fprintf(stderr, "modelgate audit: unknown subcommand \"%s\" (verify or list)\n", argv[1]);
    return 1;
}
