/* modelgate — unit tests: the built-in detectors' literal gate.
 *
 * The detectors decide whether a needle-gated pattern can match at all from
 * one Hyperscan literal scan per text (policy/detectors.c, "literal gate").
 * Its answers must be exactly the memchr gate's: per needle, and in the
 * end for every detector's hit list. Random texts are built from fragments
 * of the needles (whole, cut short, at the very start or end, overlapping
 * prefixes), secrets that really match, assignment words, digits and bytes
 * >= 0x80; each is compared both ways.
 * Counters show the scan really runs (and the memchr gate does not), and
 * several threads scan at once while sharing the scratch with a filter
 * prefilter.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "policy/policy_int.h"

#include <hs.h>
#include <pthread.h>
#include <stdint.h>

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static size_t rng_below(uint64_t *s, size_t n) { return (size_t)(rng_next(s) % n); }

static const char *const fixed_frags[] = {
    "ghp", "gh", "ghp-", "github_pat", "github_", "-----BEGI", "----BEGIN", "-----begin",
    "k_live", "k_tes", "sk_live_", "rk_test_", "sk", "sk_", "xo", "xoxb-", "xoxp-1234567890-abc",
    "AIz", "AKI", "ASI", "eyJ", "ey", "eyj", ".eyJ", "@", "@@", "alice@example.com",
    "bob.smith+tag@mail.example.co.uk", "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n",
    "-----END RSA PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----", "api_key", "API-KEY",
    "password", "passwd", "token", "secret", "client_secret", "aws_secret_access_key", "AWS Secret",
    " = ", ": ", "=", ":", "\"", "'", " ", "\t", "\n", ".", "-", "_", "(", ")",
    "4111 1111 1111 1111", "+1 (415) 555-2671", "415-555-2671", "123-45-6788",
    "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "\xc3\xa9", "\xe2\x82\xac", "\xff",
    "\x80\x81", "\xf0\x9f\x98\x80", "key", "Key:", "token=", "x=", "a:b",
};

/* Appends a random [A-Za-z0-9] run of n bytes. */
static size_t put_alnum(char *b, size_t cap, size_t at, size_t n, uint64_t *s)
{
    static const char an[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (size_t i = 0; i < n && at < cap; i++)
        b[at++] = an[rng_below(s, sizeof(an) - 1)];
    return at;
}

static size_t put(char *b, size_t cap, size_t at, const char *p, size_t n)
{
    if (n > cap - at)
        n = cap - at;
    memcpy(b + at, p, n);
    return at + n;
}

/* A NUL-free text of up to cap bytes from random fragments. */
static size_t make_text(char *b, size_t cap, uint64_t *s)
{
    size_t n_frags = rng_below(s, 14), at = 0;
    size_t nn = mg_policy_detect_needle_count();
    for (size_t f = 0; f < n_frags && at < cap; f++) {
        switch (rng_below(s, 9)) {
        case 0: case 1: {       /* a whole needle */
            const char *nd = mg_policy_detect_needle(rng_below(s, nn));
            at = put(b, cap, at, nd, strlen(nd));
            break;
        }
        case 2: {               /* a needle cut short at either end */
            const char *nd = mg_policy_detect_needle(rng_below(s, nn));
            size_t n = strlen(nd), cut = 1 + rng_below(s, n);
            if (rng_below(s, 2))
                at = put(b, cap, at, nd, n - cut);
            else
                at = put(b, cap, at, nd + cut, n - cut);
            break;
        }
        case 3: case 4: {
            const char *fr = fixed_frags[rng_below(s, MG_ARRAY_LEN(fixed_frags))];
            at = put(b, cap, at, fr, strlen(fr));
            break;
        }
        case 5:                 /* something that may complete a secret */
            at = put_alnum(b, cap, at, 1 + rng_below(s, 45), s);
            break;
        case 6:                 /* a real-looking secret */
            switch (rng_below(s, 6)) {
            case 0: at = put(b, cap, at, "AKIA", 4); at = put_alnum(b, cap, at, 16, s); break;
            case 1: at = put(b, cap, at, "ghp_", 4); at = put_alnum(b, cap, at, 36, s); break;
            case 2: at = put(b, cap, at, "sk-proj-", 8); at = put_alnum(b, cap, at, 24, s); break;
            case 3: at = put(b, cap, at, "password = ", 11); at = put_alnum(b, cap, at, 12, s); break;
            case 4: at = put(b, cap, at, "sk_live_", 8); at = put_alnum(b, cap, at, 20, s); break;
            default: at = put(b, cap, at, "eyJabcdefghij.eyJklmnopqrst.", 28); at = put_alnum(b, cap, at, 10, s); break;
            }
            break;
        case 7: {               /* random bytes, any but NUL */
            size_t n = 1 + rng_below(s, 6);
            for (size_t i = 0; i < n && at < cap; i++)
                b[at++] = (char)(1 + rng_below(s, 255));
            break;
        }
        default:                /* digits and separators */
            for (size_t i = 0, n = 1 + rng_below(s, 12); i < n && at < cap; i++)
                b[at++] = "0123456789 -."[rng_below(s, 13)];
            break;
        }
    }
    return at;
}

/* Exactly len bytes on the heap, so ASan sees any read past the text. */
static char *heap_copy(const char *b, size_t len)
{
    char *t = malloc(len ? len : 1);
    if (t != NULL)
        memcpy(t, b, len);
    return t;
}

/* Every detector over one text with one shared textinfo; the hit list as
 * "detector:start-end;..." into out. Returns false on a detector error. */
static bool all_hits(const char *t, size_t len, char *out, size_t cap, size_t *n_hits)
{
    mg_policy_textinfo ti;
    mg_policy_textinfo_init(&ti);
    mg_policy_hits h;
    mg_policy_hits_init(&h);
    size_t at = 0;
    bool ok = true;
    out[0] = '\0';
    *n_hits = 0;
    for (int d = 0; d < MG_POLICY_DET__COUNT && ok; d++) {
        size_t before = h.n;
        ok = mg_policy_detect_hits((mg_policy_detector)d, t, len, &ti, &h) == MG_OK;
        for (size_t i = before; ok && i < h.n && at < cap; i++) {
            int w = snprintf(out + at, cap - at, "%d:%zu-%zu%s;", d, h.v[i].start, h.v[i].end,
                             h.v[i].placeholder);
            at += w > 0 ? (size_t)w : 0;
        }
    }
    *n_hits = h.n;
    mg_policy_hits_free(&h);
    return ok;
}

static bool hs_ok(void) { return hs_valid_platform() == HS_SUCCESS; }

T_TEST(needle_table)
{
    /* the gate knows every needle of the detector table, each once */
    size_t n = mg_policy_detect_needle_count();
    T_EQ_INT(n, 16);
    const char *want[] = { "@", "AKIA", "ASIA", "sk-", "ghp_", "github_pat_", "xox", "AIza",
                           "k_live_", "k_test_", "eyJ", "-----BEGIN" };
    for (size_t w = 0; w < MG_ARRAY_LEN(want); w++) {
        int seen = 0;
        for (size_t i = 0; i < n; i++)
            seen += strcmp(mg_policy_detect_needle(i), want[w]) == 0;
        T_EQ_INT(seen, 1);
    }
    T_CHECK(mg_policy_detect_needle(n) == NULL);
}

T_TEST(needles_at_edges)
{
    if (!hs_ok())
        return;
    size_t n = mg_policy_detect_needle_count();
    char b[64];
    for (size_t i = 0; i < n; i++) {
        const char *nd = mg_policy_detect_needle(i);
        size_t nl = strlen(nd);
        /* whole text, at the start, at the end, cut one short at the end */
        const size_t cases[][2] = { { 0, nl }, { 0, nl + 1 }, { 1, nl + 1 }, { 0, nl - 1 } };
        for (size_t c = 0; c < MG_ARRAY_LEN(cases); c++) {
            memset(b, 'q', sizeof(b));
            memcpy(b + cases[c][0], nd, nl);
            size_t len = cases[c][1];
            char *t = heap_copy(b, len);
            mg_policy_textinfo ti;
            T_CHECK(mg_policy_detect_literal_scan(t, len, &ti));
            bool want = c < 3;
            T_EQ_INT(mg_policy_detect_needle_memchr(t, len, i), want);
            T_EQ_INT((ti.lit >> i) & 1, want);
            free(t);
        }
    }
    mg_policy_textinfo ti;
    T_CHECK(mg_policy_detect_literal_scan("", 0, &ti));
    T_EQ_INT(ti.lit, 0);
    /* overlapping and repeated needles: each reported, each once */
    const char *many = "-----BEGIN-----BEGINghp_ghp_k_live_k_test_@@eyJxoxAIzaASIAKIAgithub_pat_sk-gho_ghu_ghs_ghr_";
    T_CHECK(mg_policy_detect_literal_scan(many, strlen(many), &ti));
    T_EQ_INT(ti.lit, (1ull << mg_policy_detect_needle_count()) - 1);
}

/* The scan's bits equal the memchr gate's. */
T_TEST(differential_needles)
{
    if (!hs_ok())
        return;
    size_t n = mg_policy_detect_needle_count();
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    char b[400];
    unsigned long present[64] = { 0 }, mismatches = 0;
    for (int it = 0; it < 6000; it++) {
        size_t len = make_text(b, sizeof(b), &seed);
        char *t = heap_copy(b, len);
        mg_policy_textinfo ti;
        T_CHECK(mg_policy_detect_literal_scan(t, len, &ti));
        for (size_t i = 0; i < n; i++) {
            bool want = mg_policy_detect_needle_memchr(t, len, i);
            if (((ti.lit >> i) & 1) != want)
                mismatches++;
            present[i] += want;
        }
        free(t);
    }
    T_EQ_INT(mismatches, 0);
    /* the texts exercise both answers for every needle */
    for (size_t i = 0; i < n; i++)
        T_CHECK(present[i] > 50 && present[i] < 5950);
}

/* Full hit lists with the Hyperscan gate equal those with memchr alone. */
T_TEST(differential_hits)
{
    uint64_t seed = 0xD1B54A32D192ED03ull;
    char b[400], on[4096], off[4096];
    unsigned long mismatches = 0, with_hits = 0, errors = 0;
    for (int it = 0; it < 4000; it++) {
        size_t len = make_text(b, sizeof(b), &seed);
        char *t = heap_copy(b, len);
        size_t n_on, n_off;
        mg_policy_detect_set_literal_gate(true);
        errors += !all_hits(t, len, on, sizeof(on), &n_on);
        mg_policy_detect_set_literal_gate(false);
        errors += !all_hits(t, len, off, sizeof(off), &n_off);
        if (n_on != n_off || strcmp(on, off) != 0) {
            if (mismatches++ < 3)
                fprintf(stderr, "  mismatch on %zu bytes:\n   on  %s\n   off %s\n", len, on, off);
        }
        with_hits += n_on > 0;
        free(t);
    }
    mg_policy_detect_set_literal_gate(true);
    T_EQ_INT(errors, 0);
    T_EQ_INT(mismatches, 0);
    T_CHECK(with_hits > 500);   /* the comparison is not of empty lists */
}

static bool count_span(void *ctx, mg_policy_span s)
{
    (*(size_t *)ctx)++;
    return true;
}

/* The fast path really runs: one scan per text for all detectors, no
 * memchr searches; with the switch off, memchr and no scan. */
T_TEST(gate_is_used)
{
    const char *t = "please mail alice@example.com the key AKIAABCDEFGHIJKLMNOP and ghp_ nothing else here";
    size_t len = strlen(t);
    unsigned long scans = mg_policy_det_lit_scans, searches = mg_policy_det_needle_searches;
    char out[1024];
    size_t n_hits;
    T_CHECK(all_hits(t, len, out, sizeof(out), &n_hits));
    T_EQ_INT(n_hits, 2);
    if (hs_ok()) {
        T_EQ_INT(mg_policy_det_lit_scans - scans, 1);
        T_EQ_INT(mg_policy_det_needle_searches - searches, 0);
    }
    mg_policy_detect_set_literal_gate(false);
    scans = mg_policy_det_lit_scans;
    searches = mg_policy_det_needle_searches;
    char out2[1024];
    T_CHECK(all_hits(t, len, out2, sizeof(out2), &n_hits));
    T_EQ_INT(n_hits, 2);
    T_EQ_STR(out2, out);
    T_EQ_INT(mg_policy_det_lit_scans - scans, 0);
    T_CHECK(mg_policy_det_needle_searches - searches >= 10);
    mg_policy_detect_set_literal_gate(true);

    /* texts shorter than every needle-gated pattern are never scanned */
    scans = mg_policy_det_lit_scans;
    T_CHECK(all_hits("a@b", 3, out, sizeof(out), &n_hits));
    T_EQ_INT(mg_policy_det_lit_scans - scans, 0);

    /* mg_policy_detect (no textinfo) scans too */
    if (hs_ok()) {
        scans = mg_policy_det_lit_scans;
        T_EQ_INT(mg_policy_detect(MG_POLICY_DET_PRIVATE_KEY, t, len, count_span, &n_hits), MG_OK);
        T_EQ_INT(mg_policy_det_lit_scans - scans, 1);
    }
}

/* ---- threads ---- */

#define N_TEXTS 600

typedef struct job {
    char *text[N_TEXTS];
    size_t len[N_TEXTS];
    char *want[N_TEXTS];        /* hit lists found with the memchr gate */
    mg_policy_prefilter *pf;    /* shares the thread's scratch */
} job;

typedef struct worker_arg {
    job *j;
    unsigned start;
    unsigned long mismatches, scans, pf_fail;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    char out[4096];
    for (int round = 0; round < 3; round++)
        for (size_t k = 0; k < N_TEXTS; k++) {
            size_t i = (k * 7 + a->start) % N_TEXTS;
            size_t n;
            if (!all_hits(a->j->text[i], a->j->len[i], out, sizeof(out), &n) ||
                strcmp(out, a->j->want[i]) != 0)
                a->mismatches++;
            if (k % 5 == 0 && a->j->pf != NULL) {
                uint64_t maybe[MG_POLICY_PF_WORDS];
                static const char probe[] = "the ORD-12345678 shipped";
                if (!mg_policy_prefilter_scan(a->j->pf, probe, sizeof(probe) - 1, maybe) ||
                    (maybe[0] & 1) == 0)
                    a->pf_fail++;
            }
        }
    a->scans = mg_policy_det_lit_scans;
    return NULL;
}

T_TEST(threads)
{
    static job j;
    uint64_t seed = 0x243F6A8885A308D3ull;
    char b[400], out[4096];
    mg_policy_detect_set_literal_gate(false);
    for (size_t i = 0; i < N_TEXTS; i++) {
        j.len[i] = make_text(b, sizeof(b), &seed);
        j.text[i] = heap_copy(b, j.len[i]);
        size_t n;
        T_CHECK(all_hits(j.text[i], j.len[i], out, sizeof(out), &n));
        j.want[i] = strdup(out);
    }
    mg_policy_detect_set_literal_gate(true);
    const char *pats[] = { "\\bORD-[0-9]{8}\\b", "(?i)project\\s+kestrel" };
    j.pf = mg_policy_prefilter_build(pats, 2);
    worker_arg a[4];
    pthread_t th[4];
    for (unsigned i = 0; i < 4; i++) {
        a[i] = (worker_arg){ .j = &j, .start = i * 101 };
        T_EQ_INT(pthread_create(&th[i], NULL, worker, &a[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        T_EQ_INT(a[i].mismatches, 0);
        T_EQ_INT(a[i].pf_fail, 0);
        if (hs_ok())
            T_CHECK(a[i].scans > N_TEXTS);  /* each thread used the fast path itself */
    }
    mg_policy_prefilter_free(j.pf);
    for (size_t i = 0; i < N_TEXTS; i++) {
        free(j.text[i]);
        free(j.want[i]);
    }
}

T_MAIN("policy_needles",
       T_CASE(needle_table),
       T_CASE(needles_at_edges),
       T_CASE(differential_needles),
       T_CASE(differential_hits),
       T_CASE(gate_is_used),
       T_CASE(threads))
