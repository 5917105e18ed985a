/* modelgate — test driver for the usage ledger (journal + shipper + CLI)
 * without the gateway: tests/integration/ledger.test.js runs it.
 *
 *   ledger_driver write N [--prefix P] [--workers W] [--month YYYY-MM]
 *                 [--bad-every K] [--exit-now] [--wait-ms T]
 *                 [--step-ms S] [--varied] [--starts] [--finals-every K]
 *       (records S ms apart, default 1000; --varied adds NULL e-mails and
 *       cost centers and a second provider, for the report tests; --starts
 *       writes N/2 requests as a start record each, followed 200 requests
 *       later by its final record, like the gateway; --finals-every K then
 *       leaves out the final of every K-th request, as if the process died
 *       in the middle of it)
 *   ledger_driver ship [--wait-ms T]        ship what the journal holds, then stop
 *   ledger_driver migrate ARGS...           mg_cli_migrate
 *   ledger_driver usage ARGS...             mg_cli_usage
 *
 * Environment: LEDGER_DB (database URL; empty = journal only, no shipping),
 * LEDGER_JOURNAL (journal_dir).
 * write/ship print the ledger counters as one JSON line and exit 0 when
 * everything written reached the database, 3 when the wait timed out.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "usage/usage_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long num(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0') {
        fprintf(stderr, "ledger_driver: bad number %s\n", s);
        exit(1);
    }
    return v;
}

static void print_stats(void)
{
    struct mg_usage_stats st;
    mg_usage_stats(&st);
    printf("{\"written\":%llu,\"pending\":%llu,\"pending_bytes\":%llu,\"shipped\":%llu,\"duplicate\":%llu,"
           "\"dead\":%llu,\"corrupt\":%llu,\"write_errors\":%llu,\"healthy\":%s}\n",
           (unsigned long long)st.records_written, (unsigned long long)st.records_pending,
           (unsigned long long)st.pending_bytes, (unsigned long long)st.records_shipped,
           (unsigned long long)st.records_duplicate, (unsigned long long)st.dead_letters,
           (unsigned long long)st.corrupt_bytes, (unsigned long long)st.write_errors,
           st.healthy ? "true" : "false");
    fflush(stdout);
}

static bool wait_drained(long long wait_ms)
{
    uint64_t start = mg_now_ms();
    for (;;) {
        struct mg_usage_stats st;
        mg_usage_stats(&st);
        if (mg_now_ms() - start > 300 && st.records_pending == 0 && st.pending_bytes == 0)
            return true;
        if ((long long)(mg_now_ms() - start) > wait_ms)
            return false;
        usleep(20000);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ledger_driver write|ship|migrate|usage ...\n");
        return 1;
    }
    mg_cfg_model model = {.name = "gpt-test", .has_price = true, .input_per_mtok = 2.5, .output_per_mtok = 10};
    const char *db = getenv("LEDGER_DB");
    mg_config cfg = {
        .database_url = db && *db ? (char *)db : NULL,   /* empty: journal only, nothing shipped */
        .journal_dir = getenv("LEDGER_JOURNAL"),
        .models = &model,
        .nmodels = 1,
    };
    if (strcmp(argv[1], "migrate") == 0)
        return mg_cli_migrate(argc - 1, argv + 1, &cfg);
    if (strcmp(argv[1], "usage") == 0)
        return mg_cli_usage(argc - 1, argv + 1, &cfg);

    bool writing = strcmp(argv[1], "write") == 0;
    if (!writing && strcmp(argv[1], "ship") != 0) {
        fprintf(stderr, "ledger_driver: unknown command %s\n", argv[1]);
        return 1;
    }
    long long count = 0, workers = 2, bad_every = 0, wait_ms = 30000, step_ms = 1000;
    bool varied = false, starts = false;
    long long finals_every = 0;
    const char *prefix = "req", *month = NULL;
    bool exit_now = false;
    int i = 2;
    if (writing) {
        if (argc < 3) return 1;
        count = num(argv[2]);
        i = 3;
    }
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(a, "--prefix") == 0) { prefix = v; i++; }
        else if (strcmp(a, "--workers") == 0) { workers = num(v); i++; }
        else if (strcmp(a, "--month") == 0) { month = v; i++; }
        else if (strcmp(a, "--bad-every") == 0) { bad_every = num(v); i++; }
        else if (strcmp(a, "--wait-ms") == 0) { wait_ms = num(v); i++; }
        else if (strcmp(a, "--step-ms") == 0) { step_ms = num(v); i++; }
        else if (strcmp(a, "--varied") == 0) varied = true;
        else if (strcmp(a, "--starts") == 0) starts = true;
        else if (strcmp(a, "--finals-every") == 0) { finals_every = num(v); i++; }
        else if (strcmp(a, "--exit-now") == 0) exit_now = true;
        else { fprintf(stderr, "ledger_driver: unexpected %s\n", a); return 1; }
    }
    int64_t base_ms = mg_usage_wall_ms();
    if (month) {
        char d[16];
        snprintf(d, sizeof d, "%.7s-01", month);
        int64_t days;
        if (mg_usage_parse_date(d, &days) != MG_OK) { fprintf(stderr, "bad --month\n"); return 1; }
        base_ms = days * 86400000LL;
    }
    mg_buf errs = {0};
    if (mg_usage_start(&cfg, (size_t)workers, &errs) != MG_OK) {
        fprintf(stderr, "%.*s", (int)errs.len, errs.p);
        return 2;
    }
    static const char *const users[] = {"alice@example.com", "bob@example.com", "carol@example.com"};
    static const char *const models[] = {"gpt-test", "claude-test"};
    static const char *const roles[] = {"dev", "dev,admin", "finance"};
    /* With --starts, slot k of the loop writes request k's start and request
     * k - LAG's final (so most finals land in a later batch than their
     * start, as they do for real requests). */
    const long long LAG = 200;
    long long nreq = starts ? count / 2 : count;
    for (long long k = 0; k < (starts ? nreq + LAG : count); k++) {
      for (int pass = 0; pass < (starts ? 2 : 1); pass++) {
        long long n = starts && pass == 1 ? k - LAG : k;
        bool start_rec = starts && pass == 0;
        if (n < 0 || n >= nreq)
            continue;
        if (starts && !start_rec && finals_every && n % finals_every == finals_every - 1)
            continue;   /* this request's final never came */
        char id[128];
        snprintf(id, sizeof id, "%s-%lld", prefix, n);
        mg_usage_event ev = {
            .request_id = id,
            .ts_ms = base_ms + n * step_ms,   /* default 1 s apart: within a month for < 2.5M records */
            .subject = users[n % 3],
            .email = users[n % 3],
            .roles = roles[n % 3],
            .key_id = n % 2 ? "key-1" : NULL,
            .cost_center = n % 4 == 0 ? "cc-1" : "cc-2",
            .model = models[n % 2],
            .served_model = models[n % 2],
            .provider = "mock",
            .upstream_model = "upstream-x",
            .status = 200,
            .prompt_tokens = 10 + n % 17,
            .completion_tokens = 5 + n % 11,
            .input_per_mtok = 2.5,
            .output_per_mtok = 10,
            .latency_ms = 3,
            .stream = n % 5 == 0,
            .decision = "[\"allow\"]",
        };
        if (varied) {
            if (n % 7 == 6) ev.email = NULL;        /* user falls back to the subject */
            if (n % 5 == 4) ev.cost_center = NULL;
            if (n % 3 == 1) ev.provider = "other";
            ev.prompt_tokens += n % 1013;           /* many distinct costs */
        }
        if (start_rec) {
            ev.status = 0;
            ev.incomplete = true;
            ev.estimated = true;
            ev.prompt_tokens = 12;                  /* the estimate */
            ev.completion_tokens = 0;
            ev.latency_ms = 0;
            if (n % 4 == 3) ev.provider = "first-try";  /* the final came from a fallback */
        }
        ev.cost_usd = ((double)ev.prompt_tokens * 2.5 + (double)ev.completion_tokens * 10) / 1e6;
        if (bad_every && n % bad_every == bad_every - 1)
            ev.prompt_tokens = -1;   /* violates a CHECK: PostgreSQL rejects this row */
        if (mg_usage_record((size_t)(n % workers), &ev) != MG_OK) {
            fprintf(stderr, "ledger_driver: record %lld failed\n", n);
            print_stats();
            _exit(4);
        }
      }
    }
    if (exit_now)
        _exit(0);   /* like a SIGKILL right after answering: no drain, no fsync */
    bool ok = wait_drained(wait_ms);
    print_stats();
    mg_usage_stop();
    mg_buf_free(&errs);
    return ok ? 0 : 3;
}
