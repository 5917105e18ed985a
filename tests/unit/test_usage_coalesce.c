/* modelgate — unit tests: the shipper's start-record coalescing
 * (mg_usage_coalesce): a start record is left out of a batch exactly when
 * a final record of the same request id is in the batch; records of any
 * other shape are kept and never cause a drop.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "usage/usage_int.h"

#include <stdlib.h>

#define MAXR 6000

typedef struct batch {
    mg_buf data;
    mg_usage_rec recs[MAXR];
    bool drop[MAXR];
    size_t n;
} batch;

static void add_raw(batch *b, const char *p, size_t n)
{
    b->recs[b->n++] = (mg_usage_rec){.seq = 1, .off = b->data.len, .pos = b->data.len, .len = n};
    mg_buf_append(&b->data, p, n);
}

static void add_str(batch *b, const char *json) { add_raw(b, json, strlen(json)); }

/* One record as the journal holds it: mg_usage_encode, then the payload. */
static void add_ev(batch *b, const char *id, bool start, const char *subject)
{
    mg_usage_event ev = {
        .request_id = id, .ts_ms = 1767225600123LL, .subject = subject, .email = "a@example.com",
        .roles = "dev,admin", .cost_center = "cc-1", .model = "gpt-test", .served_model = "gpt-test",
        .provider = start ? "first-try" : "mock", .upstream_model = "up", .status = start ? 0 : 200,
        .prompt_tokens = 12, .completion_tokens = start ? 0 : 7, .cost_usd = 0.0000415,
        .input_per_mtok = 2.5, .output_per_mtok = 10, .latency_ms = start ? 0 : 31, .stream = true,
        .estimated = start, .incomplete = start, .decision = "[\"allow\",{\"incomplete\":false}]",
        .error_code = start ? NULL : "x\"y",
    };
    mg_buf rec = {0};
    T_CHECK(mg_usage_encode(&rec, &ev) == MG_OK);
    const uint8_t *pl;
    size_t plen, used;
    T_CHECK(mg_usage_decode((const uint8_t *)rec.p, rec.len, true, &pl, &plen, &used) == MG_JDEC_OK);
    add_raw(b, (const char *)pl, plen);
    mg_buf_free(&rec);
}

static batch *new_batch(void)
{
    batch *b = calloc(1, sizeof *b);
    if (b == NULL) abort();
    return b;
}

static void free_batch(batch *b)
{
    mg_buf_free(&b->data);
    free(b);
}

/* Runs the coalescing with a fresh set; returns the count, drop[] filled. */
static size_t run(batch *b)
{
    mg_usage_idset set = {0};
    for (size_t i = 0; i < b->n; i++)
        b->drop[i] = true;   /* must be overwritten */
    size_t n = mg_usage_coalesce(b->data.p, b->recs, b->n, b->drop, &set);
    mg_usage_idset_free(&set);
    return n;
}

T_TEST(start_and_final_in_one_batch_drops_the_start)
{
    batch *b = new_batch();
    add_ev(b, "req-1", true, "alice");
    add_ev(b, "req-1", false, "alice");
    T_EQ_INT(run(b), 1);
    T_CHECK(b->drop[0]);
    T_CHECK(!b->drop[1]);
    free_batch(b);
}

T_TEST(start_alone_is_kept)
{
    batch *b = new_batch();
    add_ev(b, "req-1", true, "alice");
    add_ev(b, "req-2", true, "bob");
    T_EQ_INT(run(b), 0);
    T_CHECK(!b->drop[0]);
    T_CHECK(!b->drop[1]);
    free_batch(b);
}

T_TEST(final_alone_is_kept)
{
    batch *b = new_batch();
    add_ev(b, "req-1", false, "alice");
    add_ev(b, "req-2", false, "bob");
    T_EQ_INT(run(b), 0);
    T_CHECK(!b->drop[0]);
    T_CHECK(!b->drop[1]);
    free_batch(b);
}

T_TEST(final_before_its_start_still_drops_the_start)
{
    /* a replay, or a start read from a later segment than its final */
    batch *b = new_batch();
    add_ev(b, "req-1", false, "alice");
    add_ev(b, "req-9", true, "bob");
    add_ev(b, "req-1", true, "alice");
    T_EQ_INT(run(b), 1);
    T_CHECK(!b->drop[0]);
    T_CHECK(!b->drop[1]);
    T_CHECK(b->drop[2]);
    free_batch(b);
}

T_TEST(different_ids_do_not_match)
{
    batch *b = new_batch();
    add_ev(b, "req-1", true, "alice");
    add_ev(b, "req-2", false, "alice");
    add_ev(b, "req-10", true, "alice");     /* a prefix / an extension of another id */
    add_ev(b, "req-", false, "alice");
    add_ev(b, "req-3", true, "alice");
    add_ev(b, "req-3", false, "alice");
    add_ev(b, "req-2", true, "alice");
    T_EQ_INT(run(b), 2);
    bool want[] = {false, false, false, false, true, false, true};
    for (size_t i = 0; i < MG_ARRAY_LEN(want); i++)
        T_EQ_INT(b->drop[i], want[i]);
    free_batch(b);
}

T_TEST(equal_hash_is_not_equal_id)
{
    /* "c-308475" and "c-1293310" have the same 32-bit FNV-1a hash */
    batch *b = new_batch();
    add_ev(b, "c-308475", false, "alice");
    add_ev(b, "c-1293310", true, "alice");
    T_EQ_INT(run(b), 0);
    T_CHECK(!b->drop[1]);
    add_ev(b, "c-1293310", false, "alice");
    T_EQ_INT(run(b), 1);
    T_CHECK(b->drop[1]);
    free_batch(b);
}

T_TEST(two_finals_or_two_starts_of_one_id)
{
    batch *b = new_batch();
    add_ev(b, "r", true, "alice");
    add_ev(b, "r", true, "alice");     /* a replayed start */
    add_ev(b, "r", false, "alice");
    add_ev(b, "r", false, "alice");    /* a replayed final: finals are never dropped */
    T_EQ_INT(run(b), 2);
    T_CHECK(b->drop[0] && b->drop[1] && !b->drop[2] && !b->drop[3]);
    free_batch(b);
}

T_TEST(ids_and_values_with_escapes)
{
    batch *b = new_batch();
    /* the subject holds what looks like the key, escaped by the encoder */
    add_ev(b, "id \"q\" \\ \t", true, ",\"incomplete\":false,\"x\":\"");
    add_ev(b, "id \"q\" \\ \t", false, "\\");
    add_ev(b, "id \"q\" \\", true, "s");   /* differs only after an escape */
    T_EQ_INT(run(b), 1);
    T_CHECK(b->drop[0]);
    T_CHECK(!b->drop[1]);
    T_CHECK(!b->drop[2]);
    free_batch(b);
}

T_TEST(malformed_or_foreign_records_are_kept_and_never_cause_a_drop)
{
    static const char *const starts[] = {
        /* truncated after the id */
        "{\"ts\":\"2026-01-01T00:00:00.000Z\",\"request_id\":\"x\"",
        /* whitespace */
        "{\"ts\": \"2026-01-01T00:00:00.000Z\",\"request_id\":\"x\"}",
        /* keys in another order, incomplete first */
        "{\"ts\":\"2026-01-01T00:00:00.000Z\",\"request_id\":\"x\",\"incomplete\":true}",
        "{\"request_id\":\"x\",\"ts\":\"2026-01-01T00:00:00.000Z\"}",
        "not json",
        "",
        "{",
        "{\"ts\":\"",
        "{\"ts\":\"2026\",\"request_id\":\"x\\",
    };
    /* a foreign final for x: not in the encoder's form, so it drops nothing */
    static const char foreign_final[] =
        "{\"request_id\":\"x\",\"ts\":\"2026-01-01T00:00:00.000Z\",\"incomplete\":false}";
    batch *b = new_batch();
    for (size_t i = 0; i < MG_ARRAY_LEN(starts); i++)
        add_str(b, starts[i]);
    add_str(b, foreign_final);
    add_ev(b, "y", true, "s");
    T_EQ_INT(run(b), 0);
    for (size_t i = 0; i < b->n; i++)
        T_CHECK(!b->drop[i]);
    /* an encoder-form final for x: the malformed "starts" are still kept */
    add_ev(b, "x", false, "s");
    add_ev(b, "x", true, "s");
    T_EQ_INT(run(b), 1);
    for (size_t i = 0; i + 1 < b->n; i++)
        T_CHECK(!b->drop[i]);
    T_CHECK(b->drop[b->n - 1]);
    free_batch(b);
}

T_TEST(record_cut_inside_the_keys_walk_is_kept)
{
    /* every prefix of an encoder start record: only prefixes that reach past
     * "incomplete":true and its following comma are classified (as a start) */
    batch *whole = new_batch();
    add_ev(whole, "cut", true, "alice");
    const char *p = whole->data.p;
    size_t len = whole->recs[0].len;
    const char *at = strstr(p, ",\"incomplete\":true");
    T_CHECK(at != NULL);
    size_t need = (size_t)(at - p) + strlen(",\"incomplete\":true") + 1;
    for (size_t k = 0; k <= len; k++) {
        batch *b = new_batch();
        add_raw(b, p, k);
        add_ev(b, "cut", false, "alice");
        size_t n = run(b);
        if (n != (k >= need ? 1u : 0u))
            fprintf(stderr, "  prefix of %zu bytes: %zu dropped\n", k, n);
        T_EQ_INT(n, k >= need ? 1 : 0);
        free_batch(b);
    }
    free_batch(whole);
}

T_TEST(random_batches_match_the_definition)
{
    /* many ids per batch, ids from a small pool (collisions in the hash
     * table and repeated ids), the set reused across batches of changing size */
    mg_usage_idset set = {0};
    unsigned seed = 12345;
    for (int round = 0; round < 12; round++) {
        batch *b = new_batch();
        size_t n = round == 0 ? 1 : (size_t)(round * 487) % MAXR + 2;
        int pool = round % 3 == 0 ? 7 : (int)n;
        int kind[MAXR], id[MAXR];
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            id[i] = (int)((seed >> 8) % (unsigned)pool);
            kind[i] = (int)((seed >> 20) % 5);   /* 0-1 start, 2-3 final, 4 foreign */
            char ids[32];
            snprintf(ids, sizeof ids, "id-%d", id[i]);
            if (kind[i] == 4) {
                char raw[128];
                snprintf(raw, sizeof raw, "{\"request_id\":\"%s\",\"incomplete\":false}", ids);
                add_str(b, raw);
            } else {
                add_ev(b, ids, kind[i] < 2, "s");
            }
        }
        for (size_t i = 0; i < n; i++)
            b->drop[i] = true;
        size_t got = mg_usage_coalesce(b->data.p, b->recs, b->n, b->drop, &set);
        size_t want = 0;
        for (size_t i = 0; i < n; i++) {
            bool d = false;
            for (size_t k = 0; k < n && kind[i] < 2 && n > 1 && !d; k++)
                d = id[k] == id[i] && (kind[k] == 2 || kind[k] == 3);
            want += d;
            if (b->drop[i] != d) {
                fprintf(stderr, "  round %d record %zu (id %d kind %d): drop %d, want %d\n", round, i, id[i],
                        kind[i], b->drop[i], d);
                T_CHECK(0);
                break;
            }
        }
        T_EQ_INT(got, want);
        free_batch(b);
    }
    mg_usage_idset_free(&set);
}

T_TEST(empty_batch)
{
    mg_usage_idset set = {0};
    bool drop[1] = {true};
    T_EQ_INT(mg_usage_coalesce("", NULL, 0, drop, &set), 0);
    mg_usage_idset_free(&set);
}

T_MAIN("usage_coalesce",
       T_CASE(start_and_final_in_one_batch_drops_the_start), T_CASE(start_alone_is_kept),
       T_CASE(final_alone_is_kept), T_CASE(final_before_its_start_still_drops_the_start),
       T_CASE(different_ids_do_not_match), T_CASE(equal_hash_is_not_equal_id),
       T_CASE(two_finals_or_two_starts_of_one_id),
       T_CASE(ids_and_values_with_escapes), T_CASE(malformed_or_foreign_records_are_kept_and_never_cause_a_drop),
       T_CASE(record_cut_inside_the_keys_walk_is_kept), T_CASE(random_batches_match_the_definition),
       T_CASE(empty_batch))
