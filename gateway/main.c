/* modelgate — command line entry point.
 *
 *   modelgate serve -c FILE     run the gateway
 *   modelgate check -c FILE     validate the configuration
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "config.h"
#include "log.h"
#include "console.h"
#include "server.h"
#include "snapshot.h"
#include "usage/usage.h"
#include "auth/auth.h"
#include "policy/store.h"
#include "policy/prefilter.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: modelgate <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve   -c FILE    run the gateway in the foreground\n"
    "                     (SIGHUP reloads config and certificates, SIGTERM drains and exits)\n"
    "  check   -c FILE    validate the configuration; errors as file:line:col: message\n"
    "  migrate -c FILE    apply migrations/ to the database (idempotent, safe with two instances)\n"
    "  keys create --user EMAIL --role ROLE [--name NAME] [--expires 90d]   prints the new key once\n"
    "  keys list | keys revoke ID\n"
    "  policy export [-o FILE] | policy import FILE [--dry-run]   role policies in the database\n"
    "  audit verify       check the audit log's hash chain\n"
    "  usage   -c FILE --from DATE --to DATE [--group-by user,role,model,provider,day,month,cost_center,key]\n"
    "                     [--format table|csv|json]     usage and cost report from the ledger\n"
    "  usage reconcile | usage export --month YYYY-MM -o FILE | usage drop --month YYYY-MM --confirm\n"
    "\n"
    "options:\n"
    "  -c, --config FILE  configuration file (default: $MODELGATE_CONFIG, then ./modelgate.yaml)\n"
    "  -h, --help         show help for a command\n"
    "  --version          print the version\n"
    "\n"
    "exit codes: 0 ok, 1 user error (bad input, invalid configuration), 2 environment error\n";

static const char *config_path(int argc, char **argv, int *bad)
{
    const char *path = NULL;
    *bad = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "modelgate: %s needs a file name\n", argv[i]);
                *bad = 1;
                return NULL;
            }
            path = argv[++i];
        } else {
            fprintf(stderr, "modelgate: unexpected argument \"%s\" (see modelgate --help)\n", argv[i]);
            *bad = 1;
            return NULL;
        }
    }
    if (path == NULL)
        path = getenv("MODELGATE_CONFIG");
    return path && path[0] ? path : "modelgate.yaml";
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return true;
    return false;
}

/* Loads and compiles the configuration; prints every error. */
static mg_snapshot *load(const char *path)
{
    mg_buf errs = {0};
    mg_config *cfg = mg_config_load(path, &errs);
    mg_snapshot *snap = cfg ? mg_snapshot_build(cfg, &errs) : NULL;
    if (snap == NULL) {
        if (cfg)
            mg_config_free(cfg);
        if (errs.len)
            fwrite(errs.p, 1, errs.len, stderr);
        else
            fprintf(stderr, "%s: cannot load configuration\n", path);
    }
    mg_buf_free(&errs);
    return snap;
}

static int cmd_check(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: modelgate check [-c FILE]\n"
               "Validates the configuration (syntax, every value, referenced files, TLS\n"
               "certificates and keys). Prints each problem as file:line:col: message.\n"
               "Exit 0 if valid, 1 if not.\n");
        return 0;
    }
    int bad;
    const char *path = config_path(argc, argv, &bad);
    if (bad)
        return 1;
    mg_snapshot *snap = load(path);
    if (snap == NULL)
        return 1;
    printf("%s: configuration ok (%zu listener(s), %zu provider(s), %zu model(s))\n", path,
           snap->cfg->nlisten, snap->cfg->nproviders, snap->cfg->nmodels);
    mg_snapshot_unref(snap);
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: modelgate serve [-c FILE]\n"
               "Runs the gateway in the foreground. Logs are JSON lines on stderr; the access\n"
               "log goes where log.access_log says (default stdout).\n"
               "Signals: SIGHUP reloads the configuration and certificates without dropping\n"
               "connections; SIGTERM/SIGINT stop accepting, drain in-flight requests up to\n"
               "limits.drain_timeout, then exit 0.\n");
        return 0;
    }
    /* Hyperscan databases are compiled in a child run of this executable,
     * keeping the compiler's memory and any runaway compile out of the
     * gateway (policy/prefilter.c) */
    static char self_exe[4096];
    ssize_t self_len = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    if (self_len > 0) {   /* the path, not /proc/self/exe: valgrind runs us as its own binary */
        self_exe[self_len] = '\0';
        mg_policy_hs_set_compiler(self_exe);
    }
    int bad;
    const char *path = config_path(argc, argv, &bad);
    if (bad)
        return 1;
    mg_snapshot *snap = load(path);
    if (snap == NULL)
        return 1;
    mg_buf errs = {0};
    if (mg_auth_start(snap->cfg, &errs) != MG_OK) {
        fprintf(stderr, "modelgate: cannot start authentication: %.*s\n", (int)errs.len, errs.p ? errs.p : "");
        mg_buf_free(&errs);
        mg_snapshot_unref(snap);
        return 2;
    }
    mg_buf_free(&errs);   /* an unreachable IdP was logged; it is retried when needed */
    if (mg_policy_store_start(snap->cfg, &errs) != MG_OK) {
        fprintf(stderr, "modelgate: cannot start the policy store: %.*s\n", (int)errs.len, errs.p ? errs.p : "");
        mg_buf_free(&errs);
        mg_auth_stop();
        mg_snapshot_unref(snap);
        return 2;
    }
    mg_buf_free(&errs);
    if (mg_console_load(&errs) != MG_OK) {
        fprintf(stderr, "modelgate: cannot load the web console: %.*s", (int)errs.len, errs.p ? errs.p : "");
        mg_buf_free(&errs);
        mg_policy_store_stop();
        mg_auth_stop();
        mg_snapshot_unref(snap);
        return 2;
    }
    if (errs.len)
        mg_log(MG_LOG_INFO, "%.*s", (int)errs.len - 1, errs.p);
    mg_buf_free(&errs);
    int rc = mg_server_run(path, snap);
    mg_console_unload();
    mg_policy_store_stop();
    mg_auth_stop();
    return rc;
}

/* Commands that work on the configuration's resources (database, journal):
 * takes -c FILE out of argv, loads the file (without TLS or listeners being
 * touched) and hands the rest to fn, argv[0] being the command's name. */
static int cmd_with_config(int argc, char **argv, int (*fn)(int, char **, const mg_config *))
{
    const char *path = NULL;
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    int n = 0;
    if (rest == NULL)
        return 2;
    rest[n++] = argv[1];
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "modelgate: %s needs a file name\n", argv[i]);
                free(rest);
                return 1;
            }
            path = argv[++i];
        } else {
            rest[n++] = argv[i];
        }
    }
    for (int i = 1; i < n; i++) {
        if (strcmp(rest[i], "-h") == 0 || strcmp(rest[i], "--help") == 0) {
            /* Help needs no configuration. */
            static const mg_config none;
            int rc = fn(n, rest, &none);
            free(rest);
            return rc;
        }
    }
    if (path == NULL)
        path = getenv("MODELGATE_CONFIG");
    if (path == NULL || path[0] == '\0')
        path = "modelgate.yaml";
    mg_buf errs = {0};
    mg_config *cfg = mg_config_load(path, &errs);
    if (cfg == NULL) {
        if (errs.len)
            fwrite(errs.p, 1, errs.len, stderr);
        mg_buf_free(&errs);
        free(rest);
        return 1;
    }
    mg_buf_free(&errs);
    int rc = fn(n, rest, cfg);
    mg_config_free(cfg);
    free(rest);
    return rc;
}

int main(int argc, char **argv)
{
    /* internal: Hyperscan compiles for `serve`, in a child (policy/prefilter.c) */
    if (argc == 2 && strcmp(argv[1], "__hs-compile") == 0)
        return mg_policy_hs_compile_main();
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("modelgate %s\n", MG_VERSION);
        return 0;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "modelgate: libcurl initialisation failed\n");
        return 2;
    }
    int rc;
    if (strcmp(argv[1], "serve") == 0)
        rc = cmd_serve(argc, argv);
    else if (strcmp(argv[1], "check") == 0)
        rc = cmd_check(argc, argv);
    else if (strcmp(argv[1], "migrate") == 0)
        rc = cmd_with_config(argc, argv, mg_cli_migrate);
    else if (strcmp(argv[1], "usage") == 0)
        rc = cmd_with_config(argc, argv, mg_cli_usage);
    else if (strcmp(argv[1], "keys") == 0)
        rc = cmd_with_config(argc, argv, mg_cli_keys);
    else if (strcmp(argv[1], "policy") == 0)
        rc = cmd_with_config(argc, argv, mg_cli_policy);
    else if (strcmp(argv[1], "audit") == 0)
        rc = cmd_with_config(argc, argv, mg_cli_audit);
    else {
        fprintf(stderr, "modelgate: unknown command \"%s\" (see modelgate --help)\n", argv[1]);
        rc = 1;
    }
    curl_global_cleanup();
    return rc;
}
