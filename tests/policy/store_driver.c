/* modelgate — test driver for policy storage without the gateway:
 * tests/integration/policy_store.test.js runs it.
 *
 *   store_driver migrate ARGS...      mg_cli_migrate
 *   store_driver policy ARGS...       mg_cli_policy
 *   store_driver audit ARGS...        mg_cli_audit
 *   store_driver admin METHOD PATH [--query Q] [--if-match E] [--actor A]
 *                [--perm P]... [--body TEXT]
 *       one mg_policy_admin_handle call; prints
 *       {"status":N,"etag":"...","allow":"...","body":"<body text>"}
 *   store_driver watch [--ms T]
 *       runs the store thread; prints {"version":N,"roles":[...],"t":<unix ms>}
 *       each time the policy in force changes (and once at start), until T ms
 *       passed or stdin closes.
 *
 * Environment: POLICY_DB (database URL; empty = none).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/store.h"
#include "usage/usage.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <unistd.h>

static long long wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int admin(int argc, char **argv, const char *db)
{
    if (argc < 4) {
        fprintf(stderr, "store_driver admin METHOD PATH ...\n");
        return 1;
    }
    const char *query = NULL, *if_match = NULL, *actor = "test:admin", *body = NULL;
    const char *perms[16];
    size_t nperms = 0;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--query") == 0) query = argv[i + 1];
        else if (strcmp(argv[i], "--if-match") == 0) if_match = argv[i + 1];
        else if (strcmp(argv[i], "--actor") == 0) actor = argv[i + 1];
        else if (strcmp(argv[i], "--body") == 0) body = argv[i + 1];
        else if (strcmp(argv[i], "--perm") == 0 && nperms < 16) perms[nperms++] = argv[i + 1];
        else {
            fprintf(stderr, "store_driver: bad option %s\n", argv[i]);
            return 1;
        }
    }
    mg_policy_admin_reply out = {0};
    mg_rc rc = mg_policy_admin_handle(db, argv[2], argv[3], query, body, body ? strlen(body) : 0, if_match,
                                      actor, perms, nperms, &out);
    if (rc != MG_OK) {
        fprintf(stderr, "store_driver: handler failed (%d)\n", rc);
        mg_buf_free(&out.body);
        return 2;
    }
    mg_buf line = {0};
    mg_buf_printf(&line, "{\"status\":%d,\"etag\":", out.status);
    mg_buf_append_json_str(&line, out.etag, strlen(out.etag));
    mg_buf_append_str(&line, ",\"allow\":");
    mg_buf_append_json_str(&line, out.allow ? out.allow : "", out.allow ? strlen(out.allow) : 0);
    mg_buf_append_str(&line, ",\"body\":");
    mg_buf_append_json_str(&line, out.body.p ? out.body.p : "", out.body.len);
    mg_buf_append_str(&line, "}\n");
    fwrite(line.p, 1, line.len, stdout);
    mg_buf_free(&line);
    mg_buf_free(&out.body);
    return 0;
}

static void print_state(void)
{
    mg_policy *p = mg_policy_current();
    const mg_policy_doc *d = mg_policy_document(p);
    printf("{\"version\":%lld,\"t\":%lld,\"roles\":[", (long long)mg_policy_store_version(), wall_ms());
    for (size_t i = 0; i < d->n_roles; i++)
        printf("%s\"%s\"", i ? "," : "", d->roles[i].name);
    printf("]}\n");
    fflush(stdout);
    mg_policy_unref(p);
}

static int watch(int argc, char **argv, const mg_config *cfg)
{
    long long ms = 30000;
    if (argc >= 4 && strcmp(argv[2], "--ms") == 0) {
        char *end;
        ms = strtoll(argv[3], &end, 10);
        if (*end != '\0')
            return 1;
    }
    mg_buf errs = {0};
    if (mg_policy_store_start(cfg, &errs) != MG_OK) {
        fprintf(stderr, "store_driver: %.*s", (int)errs.len, errs.p);
        return 2;
    }
    mg_buf_free(&errs);
    int64_t seen = -1;
    long long end = wall_ms() + ms;
    while (wall_ms() < end) {
        if (mg_policy_store_version() != seen) {
            seen = mg_policy_store_version();
            print_state();
        }
        struct pollfd pf = {.fd = 0, .events = POLLIN};
        if (poll(&pf, 1, 5) > 0) {
            char b[64];
            if (read(0, b, sizeof(b)) <= 0)
                break;
        }
    }
    mg_policy_store_stop();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: store_driver migrate|policy|audit|admin|watch ...\n");
        return 1;
    }
    const char *db = getenv("POLICY_DB");
    mg_config cfg = {.database_url = db && *db ? (char *)db : NULL};
    if (strcmp(argv[1], "migrate") == 0)
        return mg_cli_migrate(argc - 1, argv + 1, &cfg);
    if (strcmp(argv[1], "policy") == 0)
        return mg_cli_policy(argc - 1, argv + 1, &cfg);
    if (strcmp(argv[1], "audit") == 0)
        return mg_cli_audit(argc - 1, argv + 1, &cfg);
    if (strcmp(argv[1], "admin") == 0)
        return admin(argc, argv, cfg.database_url);
    if (strcmp(argv[1], "watch") == 0)
        return watch(argc, argv, &cfg);
    fprintf(stderr, "store_driver: unknown command %s\n", argv[1]);
    return 1;
}
