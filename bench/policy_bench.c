/* modelgate — micro-benchmark of the policy engine's hot path.
 *
 * A typical policy (PII redaction, secrets blocking, a filter with ten custom
 * patterns) over a ~2 KB chat request: prints microseconds per request for
 * the input filter, for the same with redactions happening, for the model
 * allowlist and limits lookups, and per token for the output stream filter.
 *
 * Build and run (from the repository root):
 *   cc -O2 -D_GNU_SOURCE -Igateway -I. -o build/policy_bench bench/policy_bench.c \
 *      policy/document.c policy/compile.c policy/match.c policy/detectors.c \
 *      policy/filter.c policy/limits.c gateway/core.c gateway/json.c \
 *      -lpcre2-8 -lcjson -lpthread -lm && build/policy_bench
 *
 * With a policy file and a request body it measures those instead (the
 * full-path bench's: bench/policy-full.json bench/prompt-2k.json; the first
 * role of the policy is used, the output filter runs on the bench
 * upstream's reply text):
 *   build/policy_bench bench/policy-full.json bench/prompt-2k.json
 *
 * Load-independent figures: `--count N` runs each stage N times untimed, for
 * callgrind to count instructions (inclusive cost of mg_policy_filter_request,
 * mg_policy_filter_text and mg_policy_stream_push/flush, divided by N):
 *   valgrind --tool=callgrind --callgrind-out-file=/tmp/pb.cg \
 *      build/policy_bench --count 2000 bench/policy-full.json bench/prompt-2k.json
 *   callgrind_annotate --inclusive=yes /tmp/pb.cg | grep mg_policy_
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static const char *POLICY =
    "{\"roles\":{\"engineer\":{\"models\":[\"gpt-4o-mini\",\"llama3*\"],"
    "\"filters\":[\"pii\",\"secrets\",\"codenames\"],"
    "\"limits\":{\"requests_per_minute\":60,\"tokens_per_minute\":200000,\"usd_per_day\":20,\"max_tokens\":4096}}},"
    "\"filters\":{"
    "\"pii\":{\"detectors\":[\"email\",\"phone\",\"credit_card\",\"ssn\",\"iban\"],\"action\":\"redact\",\"direction\":\"input\"},"
    "\"secrets\":{\"detectors\":[\"api_key\",\"private_key\"],\"action\":\"block\",\"direction\":\"both\"},"
    "\"codenames\":{\"patterns\":[\"(?i)\\\\bproject\\\\s+bluebird\\\\b\",\"(?i)\\\\bproject\\\\s+redwood\\\\b\","
    "\"\\\\bACME-[0-9]{6}\\\\b\",\"(?i)\\\\binternal\\\\s+only\\\\b\",\"(?i)\\\\bdo\\\\s+not\\\\s+distribute\\\\b\","
    "\"\\\\bEMP[0-9]{7}\\\\b\",\"(?i)\\\\bmerger\\\\s+with\\\\s+\\\\w+\",\"\\\\bQ[1-4]-20[0-9]{2}-forecast\\\\b\","
    "\"(?i)\\\\bcodename\\\\s*:\\\\s*\\\\w+\",\"\\\\bTICKET-[A-Z]{2}-[0-9]{5}\\\\b\"],"
    "\"action\":\"flag\",\"direction\":\"input\"}}}";

/* ~2 KB of ordinary prose and code across a conversation. */
static const char *PARA =
    "We are migrating the billing service from the old cron-based batch jobs to an event-driven design. "
    "Each invoice event carries the customer id, the amount in cents, the currency and a timestamp, and "
    "the consumer writes it to the ledger table in one transaction. Can you review the following function "
    "and point out race conditions? def apply(event): row = db.get(event.id); row.total += event.amount; "
    "db.save(row). Also suggest how to make retries idempotent across 3 replicas on version 2.4.1. ";

static cJSON *make_body(const char *extra)
{
    char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"model\":\"gpt-4o-mini\",\"messages\":["
             "{\"role\":\"system\",\"content\":\"You are a careful senior engineer. Answer briefly.\"},"
             "{\"role\":\"user\",\"content\":\"%s\"},"
             "{\"role\":\"assistant\",\"content\":\"%s\"},"
             "{\"role\":\"user\",\"content\":\"%s%s\"}],\"max_tokens\":512}",
             PARA, PARA, PARA, extra);
    return cJSON_Parse(buf);
}

/* Best of 5 rounds: the figure a quiet machine gives, not the noise of
 * whatever else runs on it. */
static double bench_filter(mg_policy_effective *e, const cJSON *tmpl, int iters, bool dup_only)
{
    double best = 1e30;
    for (int round = 0; round < 5; round++) {
        uint64_t t0 = mg_now_us();
        for (int i = 0; i < iters; i++) {
            cJSON *b = cJSON_Duplicate(tmpl, 1);
            if (!dup_only) {
                mg_policy_verdict v;
                mg_policy_verdict_init(&v);
                mg_policy_filter_request(e, b, MG_API_CHAT, &v);
            }
            cJSON_Delete(b);
        }
        double t = (double)(mg_now_us() - t0) / iters;
        if (t < best)
            best = t;
    }
    return best;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    mg_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (mg_buf_append(&b, chunk, n) != MG_OK)
            break;
    fclose(f);
    if (mg_buf_append(&b, "", 1) != MG_OK) {
        mg_buf_free(&b);
        return NULL;
    }
    *len = b.len - 1;
    return b.p;
}

/* The bench upstream's fixed reply (bench/upstream.nginx.conf.in). */
static const char *REPLY = "Hello! This is a fixed benchmark reply.";

static int file_mode(long count, const char *policy_path, const char *body_path)
{
    size_t plen = 0, blen = 0;
    char *pj = slurp(policy_path, &plen), *bj = slurp(body_path, &blen);
    if (pj == NULL || bj == NULL) {
        fprintf(stderr, "policy_bench: cannot read %s\n", pj == NULL ? policy_path : body_path);
        return 1;
    }
    mg_buf errs = {0};
    mg_policy *p = mg_policy_load(pj, plen, &errs);
    cJSON *body = cJSON_ParseWithLength(bj, blen);
    if (p == NULL || body == NULL || mg_policy_document(p)->n_roles == 0) {
        fprintf(stderr, "policy_bench: bad policy or body: %.*s\n", (int)errs.len, errs.p ? errs.p : "");
        return 1;
    }
    const char *roles[] = { mg_policy_document(p)->roles[0].name };
    mg_policy_effective *e = mg_policy_effective_new(p, roles, 1, NULL);
    mg_buf out = {0};
    int rc = 0;
    if (count > 0) {
        /* untimed, for callgrind: verdicts are checked so a broken build
         * cannot pass for a fast one */
        size_t flagged = 0;
        for (long i = 0; i < count; i++) {
            cJSON *b = cJSON_Duplicate(body, 1);
            mg_policy_verdict v;
            mg_policy_verdict_init(&v);
            if (mg_policy_filter_request(e, b, MG_API_CHAT, &v) != MG_OK || v.blocked)
                rc = 1;
            flagged += v.n_rules;
            cJSON_Delete(b);
        }
        for (long i = 0; i < count; i++) {
            mg_policy_verdict v;
            mg_policy_verdict_init(&v);
            mg_buf_reset(&out);
            if (mg_policy_filter_text(e, MG_POLICY_OUTPUT, REPLY, strlen(REPLY), &out, &v) != MG_OK ||
                v.blocked || out.len != strlen(REPLY))
                rc = 1;
        }
        for (long i = 0; i < count; i++) {
            mg_policy_stream *st = mg_policy_stream_new(e, 0);
            mg_policy_verdict v;
            mg_policy_verdict_init(&v);
            mg_buf_reset(&out);
            if (st == NULL || mg_policy_stream_push(st, REPLY, strlen(REPLY), &out, &v) != MG_OK ||
                mg_policy_stream_flush(st, &out, &v) != MG_OK || out.len != strlen(REPLY))
                rc = 1;
            mg_policy_stream_free(st);
        }
        printf("policy_bench: %ld x (input filter on %s, output filter and stream on the %zu-byte reply), "
               "%zu rules fired in all%s\n", count, body_path, strlen(REPLY), flagged, rc ? ", ERRORS" : "");
    } else {
        bench_filter(e, body, 2000, false);
        double dup = bench_filter(e, body, 4000, true);
        double t_in = bench_filter(e, body, 4000, false) - dup;
        double best = 1e30;
        for (int round = 0; round < 5; round++) {
            uint64_t t0 = mg_now_us();
            for (int i = 0; i < 20000; i++) {
                mg_policy_verdict v;
                mg_policy_verdict_init(&v);
                mg_buf_reset(&out);
                mg_policy_filter_text(e, MG_POLICY_OUTPUT, REPLY, strlen(REPLY), &out, &v);
            }
            double t = (double)(mg_now_us() - t0) / 20000;
            if (t < best)
                best = t;
        }
        printf("policy_bench: %s on %s (%zu bytes)\n", policy_path, body_path, blen);
        printf("  input filter:                       %7.2f us/request\n", t_in);
        printf("  output filter (%zu-byte reply):     %7.3f us/reply\n", strlen(REPLY), best);
    }
    mg_buf_free(&out);
    mg_buf_free(&errs);
    cJSON_Delete(body);
    mg_policy_effective_free(e);
    mg_policy_unref(p);
    free(pj);
    free(bj);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3)
        return file_mode(0, argv[1], argv[2]);
    if (argc == 5 && strcmp(argv[1], "--count") == 0) {
        char *end;
        errno = 0;
        long n = strtol(argv[2], &end, 10);
        if (errno != 0 || end == argv[2] || *end != '\0' || n <= 0 || n > 100000000) {
            fprintf(stderr, "policy_bench: --count wants a positive number\n");
            return 2;
        }
        return file_mode(n, argv[3], argv[4]);
    }
    if (argc != 1) {
        fprintf(stderr, "usage: policy_bench [[--count N] POLICY.json BODY.json]\n");
        return 2;
    }

    mg_buf errs = {0};
    mg_policy *p = mg_policy_load(POLICY, strlen(POLICY), &errs);
    if (p == NULL) {
        fprintf(stderr, "%.*s", (int)errs.len, errs.p);
        return 1;
    }
    const char *roles[] = { "engineer" };
    mg_policy_effective *e = mg_policy_effective_new(p, roles, 1, NULL);
    cJSON *clean = make_body("");
    cJSON *dirty = make_body(" Mail me at jane.doe@example.com or call +1 (415) 555-2671, project bluebird.");
    char *s = cJSON_PrintUnformatted(clean);
    size_t body_len = strlen(s);
    cJSON_free(s);

    const int N = 4000;
    bench_filter(e, clean, 2000, false);        /* warm up: JIT, caches, TLS match data */
    double dup = bench_filter(e, clean, N, true);
    double t_clean = bench_filter(e, clean, N, false) - dup;
    double t_dirty = bench_filter(e, dirty, N, false) - dup;

    uint64_t t0 = mg_now_us();
    volatile int allowed = 0;
    mg_policy_limits lim;
    for (int i = 0; i < N; i++) {
        allowed += mg_policy_effective_model_allowed(e, "llama3.1:8b");
        mg_policy_effective_limits(e, "llama3.1:8b", &lim);
    }
    double t_lookup = (double)(mg_now_us() - t0) / N;

    /* output stream: a 2 KB reply arriving in 4-byte token deltas */
    char reply[2048];
    size_t rl = 0;
    while (rl + strlen(PARA) < sizeof(reply)) {
        memcpy(reply + rl, PARA, strlen(PARA));
        rl += strlen(PARA);
    }
    int rounds = 200;
    size_t deltas = 0;
    mg_buf out = {0};
    t0 = mg_now_us();
    for (int r = 0; r < rounds; r++) {
        mg_policy_stream *st = mg_policy_stream_new(e, 0);
        mg_policy_verdict v;
        mg_policy_verdict_init(&v);
        for (size_t at = 0; at < rl; at += 4, deltas++)
            mg_policy_stream_push(st, reply + at, rl - at < 4 ? rl - at : 4, &out, &v);
        mg_policy_stream_flush(st, &out, &v);
        mg_policy_stream_free(st);
        mg_buf_reset(&out);
    }
    double t_stream = (double)(mg_now_us() - t0) / (double)deltas;

    printf("policy_bench: body %zu bytes, 3 filters (7 detectors, 10 custom patterns)\n", body_len);
    printf("  input filter, nothing found:        %7.2f us/request\n", t_clean);
    printf("  input filter, 2 redactions + flag:  %7.2f us/request\n", t_dirty);
    printf("  model allowlist + limits lookup:    %7.3f us/request\n", t_lookup);
    printf("  output stream filter:               %7.2f us/delta (4-byte deltas, %zu-byte reply)\n", t_stream, rl);
    mg_buf_free(&out);
    cJSON_Delete(clean);
    cJSON_Delete(dirty);
    mg_policy_effective_free(e);
    mg_policy_unref(p);
    mg_buf_free(&errs);
    return 0;
}
