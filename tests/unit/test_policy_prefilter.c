/* modelgate — unit tests: the Hyperscan prefilter of custom patterns.
 *
 * Differential: every text is filtered with the prefilter on and off and the
 * output, verdict and return code must be identical (bench patterns plus
 * tricky ones: \K, look-around, back references, (?i), \b, \p{L}, anchors,
 * patterns Hyperscan refuses, non-ASCII text). Work: the prefilter must
 * actually save PCRE2 runs. Threads: several threads, shared and different
 * policies, more databases than a thread's scratch cache remembers.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "policy/policy.h"
#include "policy/prefilter.h"

#include <cjson/cJSON.h>
#include <hs.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

static const char *const BENCH[] = {
    "(?i)\\bproject\\s+kestrel\\b", "(?i)\\bproject\\s+juniper\\b", "\\bORD-[0-9]{8}\\b",
    "(?i)\\bconfidential\\s+draft\\b", "(?i)\\bnot\\s+for\\s+release\\b", "\\bSTAFF[0-9]{6}\\b",
    "(?i)\\bacquisition\\s+of\\s+\\w+", "\\bFY20[0-9]{2}-budget\\b", "(?i)\\bcodename\\s*=\\s*\\w+",
    "\\bINC-[A-Z]{3}-[0-9]{4}\\b",
};

static const char *const TRICKY[] = {
    "price:\\s*\\Kd+",              /* \K: Hyperscan refuses it */
    "\\Gzq",                        /* refused too */
    "(?<=\\$)\\d{2,}",              /* look-behind */
    "ab(?=cd)", "x(?!y)z",          /* look-ahead */
    "(\\w{3})-\\1\\b",              /* back reference */
    "(?i)stra\xc3\x9f" "e",         /* non-ASCII literal, caseless */
    "(?i)\\x{212a}elvin",           /* Kelvin sign folds to k */
    "\\bid\\b", "zz\\w", "q\\d\\d", "\\p{L}{3}\\d", "[[:alpha:]]+_[[:digit:]]{2}",
    "^hello", "world$", "(?m)^line\\d$", "(?s)begin.{0,4}end", "end\\Rstart",
    "\\w+@\\w+\\.\\w+", "\\d{3}\\D\\d{2}", "(?x) s p a c e d",
    "\xd5\xa0+",                    /* U+0560, newer than Hyperscan's tables */
};

#define N_ARR(a) (sizeof(a) / sizeof((a)[0]))

/* A policy with roles r (redact), f (flag), b (block), each over one filter
 * holding the given patterns, plus "many" (80 patterns: past one bitmap word). */
static mg_policy *make_policy(const char *const *pats, size_t n)
{
    cJSON *doc = cJSON_CreateObject(), *roles = cJSON_AddObjectToObject(doc, "roles");
    cJSON *filters = cJSON_AddObjectToObject(doc, "filters");
    static const char *const acts[][2] = { {"r", "redact"}, {"f", "flag"}, {"b", "block"}, {"many", "redact"} };
    for (size_t a = 0; a < N_ARR(acts); a++) {
        char fname[16];
        snprintf(fname, sizeof(fname), "pf_%s", acts[a][0]);
        cJSON *role = cJSON_AddObjectToObject(roles, acts[a][0]);
        cJSON *models = cJSON_AddArrayToObject(role, "models");
        cJSON_AddItemToArray(models, cJSON_CreateString("*"));
        cJSON *rf = cJSON_AddArrayToObject(role, "filters");
        cJSON_AddItemToArray(rf, cJSON_CreateString(fname));
        cJSON *f = cJSON_AddObjectToObject(filters, fname);
        cJSON *p = cJSON_AddArrayToObject(f, "patterns");
        if (a == 3) {
            for (int i = 0; i < 80; i++) {
                char pat[32];
                snprintf(pat, sizeof(pat), "\\btok%02d[a-c]\\b", i);
                cJSON_AddItemToArray(p, cJSON_CreateString(pat));
            }
        } else {
            for (size_t i = 0; i < n; i++)
                cJSON_AddItemToArray(p, cJSON_CreateString(pats[i]));
        }
        cJSON_AddStringToObject(f, "action", acts[a][1]);
        cJSON_AddStringToObject(f, "direction", "both");
    }
    char *json = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    mg_buf errs = {0};
    mg_policy *pol = json ? mg_policy_load(json, strlen(json), &errs) : NULL;
    if (pol)
        mg_policy_prefilter_attach(pol);
    if (pol == NULL)
        fprintf(stderr, "policy: %.*s\n", (int)errs.len, errs.p ? errs.p : "");
    mg_buf_free(&errs);
    cJSON_free(json);
    return pol;
}

/* Built once (Hyperscan compiles Unicode classes slowly); released by
 * differential_random_texts, its last user. */
static mg_policy *all_cached;

static mg_policy *all_policy(void)
{
    if (all_cached != NULL)
        return mg_policy_ref(all_cached);
    const char *pats[N_ARR(BENCH) + N_ARR(TRICKY)];
    for (size_t i = 0; i < N_ARR(BENCH); i++)
        pats[i] = BENCH[i];
    for (size_t i = 0; i < N_ARR(TRICKY); i++)
        pats[N_ARR(BENCH) + i] = TRICKY[i];
    all_cached = make_policy(pats, N_ARR(pats));
    return all_cached ? mg_policy_ref(all_cached) : NULL;
}

/* "rc|decision|output" of filtering text for a role, into out. */
static void outcome(mg_policy *pol, const char *role, const char *t, size_t len, mg_buf *out)
{
    const char *roles[] = { role };
    mg_policy_effective *e = mg_policy_effective_new(pol, roles, 1, NULL);
    mg_policy_verdict v;
    mg_policy_verdict_init(&v);
    mg_buf text = {0};
    out->len = 0;
    if (e == NULL) {
        mg_buf_append_str(out, "(no effective)");
        return;
    }
    mg_rc rc = mg_policy_filter_text(e, MG_POLICY_INPUT, t, len, &text, &v);
    mg_buf_printf(out, "%d|%zu|", (int)rc, v.redactions);
    mg_policy_verdict_decision(&v, out);
    mg_buf_append_str(out, "|");
    mg_buf_append(out, text.p ? text.p : "", text.len);
    mg_buf_append(out, "", 1);
    mg_buf_free(&text);
    mg_policy_effective_free(e);
}

/* Compares prefilter on and off; returns the number of differences. */
static int diff_one(mg_policy *pol, const char *t, size_t len)
{
    static const char *const roles[] = { "r", "f", "b", "many" };
    int bad = 0;
    mg_buf on = {0}, off = {0};
    for (size_t r = 0; r < N_ARR(roles); r++) {
        mg_policy_prefilter_set_enabled(false);
        outcome(pol, roles[r], t, len, &off);
        mg_policy_prefilter_set_enabled(true);
        outcome(pol, roles[r], t, len, &on);
        if (on.len != off.len || memcmp(on.p, off.p, on.len) != 0) {
            if (bad++ < 3)
                fprintf(stderr, "  role %s text \"%.*s\":\n    on:  %s\n    off: %s\n", roles[r], (int)len, t,
                        on.p, off.p);
        }
    }
    mg_buf_free(&on);
    mg_buf_free(&off);
    return bad;
}

static const char *const FIXED[] = {
    "nothing to see here", "Project Kestrel ships", "project\xc2\xa0juniper", "projectkestrel",
    "ORD-12345678", "ORD-1234567", "xORD-12345678", "CONFIDENTIAL   draft", "not for release!",
    "STAFF123456", "STAFF1234567", "acquisition of Acme", "acquisition of \xd5\xa0\xd5\xa1",
    "acquisition of \xe4\xb8\xad\xe6\x96\x87", "FY2024-budget", "codename=falcon", "codename = \xc3\xa9t\xc3\xa9",
    "INC-ABC-1234", "INC-AB-1234", "price: dd", "price:   ddd", "zq", "$123", "$1", "abcd", "abce", "xz",
    "xyz", "abc-abc", "abc-abd", "STRASSE", "stra\xc3\x9f" "e", "Stra\xe1\xba\x9e" "e", "\xe2\x84\xaa" "elvin",
    "KELVIN", "an id here", "idx", "zz\xd5\xa0", "zz\xe4\xb8\xad", "zz!", "q12", "q\xd9\xa1\xd9\xa2",
    "q\xf0\x90\xb4\xb0\xf0\x90\xb4\xb1", "abc1", "\xd5\xa0\xd5\xa1\xd5\xa2" "1", "\xce\xb1\xce\xb2\xce\xb3" "1",
    "abc_12", "hello world", "say hello", "world peace", "the world\n", "line1\nline2", "xline1",
    "begin--end", "begin\n\nend", "begin12345end", "end\nstart", "end\r\nstart", "endstart", "a@b.c",
    "\xd5\xa0@x.y", "123x45", "123\xd5\xa0" "45", "spaced", "s p a c e d", "\xd5\xa0", "tok05a", "tok79c",
    "tok80a", "xtok05a", "\xe2\x80\x9cproject kestrel\xe2\x80\x9d \xf0\x9f\x99\x82", "",
};

T_TEST(differential_fixed_texts)
{
    mg_policy *pol = all_policy();
    T_CHECK(pol != NULL);
    if (pol == NULL)
        return;
    for (size_t i = 0; i < N_ARR(FIXED); i++)
        T_EQ_INT(diff_one(pol, FIXED[i], strlen(FIXED[i])), 0);
    /* invalid UTF-8 still fails closed, prefilter or not */
    T_EQ_INT(diff_one(pol, "project \xff kestrel", 16), 0);
    mg_policy_unref(pol);
}

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static const char *const PIECES[] = {
    "project", "kestrel", "juniper", "ORD-", "STAFF", "confidential", "draft", "not", "for", "release",
    "acquisition", "of", "FY20", "-budget", "codename", "=", "INC-", "ABC", "Abc", "price:", "$", "ab", "cd",
    "x", "y", "z", "zz", "q", "id", "hello", "world", "line", "begin", "end", "start", "@", ".", "_", "-",
    "stra\xc3\x9f" "e", "STRASSE", "\xe2\x84\xaa", "elvin", "\xd5\xa0", "\xe4\xb8\xad", "\xc3\xa9", "\xce\xb1",
    "\xe2\x80\x9c", "\xf0\x9f\x99\x82", "\xc2\xa0", "\xd9\xa1", "\xf0\x90\xb4\xb0", "tok", "s p a c e d",
    " ", " ", " ", "\n", "\r\n", "\t", "!", ",", "KESTREL", "Juniper",
};

T_TEST(differential_random_texts)
{
    mg_policy *pol = all_policy();
    T_CHECK(pol != NULL);
    if (pol == NULL)
        return;
    rng_state = 0x9E3779B97F4A7C15ull;
    char t[512];
    int bad = 0;
    unsigned long runs_on = 0, runs_off = 0;
    for (int k = 0; k < 3000; k++) {
        size_t len = 0, pieces = 1 + rnd() % 24;
        for (size_t p = 0; p < pieces; p++) {
            char piece[16];
            const char *s = piece;
            uint64_t r = rnd() % 10;
            if (r < 2) {
                snprintf(piece, sizeof(piece), "%llu", (unsigned long long)(rnd() % 100000000));
            } else if (r < 3) {
                snprintf(piece, sizeof(piece), "%c%c", (char)('A' + rnd() % 26), (char)('a' + rnd() % 26));
            } else {
                s = PIECES[rnd() % N_ARR(PIECES)];
            }
            size_t n = strlen(s);
            if (len + n + 1 >= sizeof(t))
                break;
            memcpy(t + len, s, n);
            len += n;
        }
        t[len] = '\0';
        unsigned long before = mg_policy_pf_pcre_runs;
        mg_policy_prefilter_set_enabled(false);
        mg_buf o = {0};
        outcome(pol, "r", t, len, &o);
        runs_off += mg_policy_pf_pcre_runs - before;
        before = mg_policy_pf_pcre_runs;
        mg_policy_prefilter_set_enabled(true);
        outcome(pol, "r", t, len, &o);
        runs_on += mg_policy_pf_pcre_runs - before;
        mg_buf_free(&o);
        bad += diff_one(pol, t, len);
    }
    T_EQ_INT(bad, 0);
    /* the random texts mostly hold no match: most PCRE2 runs are skipped */
    T_CHECK(runs_on * 3 < runs_off * 2);
    printf("  random texts: %lu PCRE2 runs with the prefilter, %lu without\n", runs_on, runs_off);
    mg_policy_unref(pol);
    mg_policy_unref(all_cached);
    all_cached = NULL;
}

/* Every code point where the prefilter trusts \w \W \d \D must be classified
 * by Hyperscan as by PCRE2: checked through the filter, on and off. */
T_TEST(differential_common_code_points)
{
    static const char *const pats[] = { "q\\w", "q\\W", "q\\d", "q\\D", "(?i)q\\b", "\\w\\bq" };
    mg_policy *pol = make_policy(pats, N_ARR(pats));
    T_CHECK(pol != NULL);
    if (pol == NULL)
        return;
    static const uint32_t ranges[][2] = { {1, 0x560}, {0x2000, 0x2070}, {0x20A0, 0x20D0}, {0x1F300, 0x1FB00},
                                          {0x560, 0x600}, {0x10D30, 0x10D3A} };
    int bad = 0;
    for (size_t r = 0; r < N_ARR(ranges); r++) {
        for (uint32_t cp = ranges[r][0]; cp < ranges[r][1]; cp++) {
            char t[16];
            size_t n = 0;
            t[n++] = 'q';
            if (cp < 0x80) {
                t[n++] = (char)cp;
            } else if (cp < 0x800) {
                t[n++] = (char)(0xC0 | cp >> 6);
                t[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                t[n++] = (char)(0xE0 | cp >> 12);
                t[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                t[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                t[n++] = (char)(0xF0 | cp >> 18);
                t[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                t[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                t[n++] = (char)(0x80 | (cp & 0x3F));
            }
            t[n++] = 'q';
            bad += diff_one(pol, t, n);
        }
    }
    T_EQ_INT(bad, 0);
    mg_policy_unref(pol);
}

static unsigned long runs_for(mg_policy *pol, const char *role, const char *t, unsigned long *scans)
{
    mg_buf o = {0};
    unsigned long r0 = mg_policy_pf_pcre_runs, s0 = mg_policy_pf_scans;
    outcome(pol, role, t, strlen(t), &o);
    mg_buf_free(&o);
    if (scans)
        *scans = mg_policy_pf_scans - s0;
    return mg_policy_pf_pcre_runs - r0;
}

T_TEST(prefilter_skips_pcre2)
{
    mg_policy *pol = make_policy(BENCH, N_ARR(BENCH));
    T_CHECK(pol != NULL);
    if (pol == NULL)
        return;
    const char *clean = "Please review the order service handler and explain the race between workers.";
    unsigned long scans;
    mg_policy_prefilter_set_enabled(false);
    T_EQ_INT(runs_for(pol, "r", clean, &scans), 10);
    T_EQ_INT(scans, 0);
    mg_policy_prefilter_set_enabled(true);
    T_EQ_INT(runs_for(pol, "r", clean, &scans), 0);
    T_EQ_INT(scans, 1);
    /* one match: only the patterns Hyperscan cannot rule out run */
    unsigned long n = runs_for(pol, "r", "this is about Project Kestrel, nothing else", &scans);
    T_CHECK(n >= 1 && n < 10);
    T_EQ_INT(scans, 1);
    /* text beyond the code points both engines agree on: \w-dependent
     * patterns (all ten here use \b or \w) go back to PCRE2 */
    T_EQ_INT(runs_for(pol, "r", "acquisition of \xd5\xa0\xd5\xa1 for a project", NULL), 10);
    /* curly quotes and emoji keep the prefilter */
    T_EQ_INT(runs_for(pol, "r", "\xe2\x80\x9cplain\xe2\x80\x9d text \xf0\x9f\x99\x82 and caf\xc3\xa9", NULL), 0);
    mg_policy_unref(pol);

    /* a pattern Hyperscan refuses always runs; its neighbours are still skipped */
    static const char *const mixed[] = { "price:\\s*\\Kd+", "plainword", "\\bother\\b" };
    pol = make_policy(mixed, N_ARR(mixed));
    T_CHECK(pol != NULL);
    if (pol == NULL)
        return;
    T_EQ_INT(runs_for(pol, "r", "a text without any of them", &scans), 1);
    T_EQ_INT(scans, 1);
    mg_buf o = {0};
    outcome(pol, "r", "price:  dd", 10, &o);
    T_EQ_STR(o.p, "0|1|redacted:pf_r|price:  [REDACTED:pf_r]");
    mg_buf_free(&o);
    /* the flag filter stops at its first hit, the block filter too */
    outcome(pol, "f", "a plainword and other", 21, &o);
    T_EQ_STR(o.p, "0|0|flagged:pf_f|a plainword and other");
    outcome(pol, "b", "other", 5, &o);
    T_EQ_STR(o.p, "0|0|blocked:pf_b|");
    mg_buf_free(&o);
    mg_policy_unref(pol);
}

/* A compiled policy is in force at once; its prefilters come with
 * mg_policy_prefilter_attach (the store calls it after publishing), and
 * attaching again changes nothing. */
T_TEST(prefilter_attached_after_compile)
{
    mg_buf errs = {0};
    const char *json = "{\"roles\":{\"r\":{\"models\":[\"*\"],\"filters\":[\"pf_r\"]}},"
                       "\"filters\":{\"pf_r\":{\"patterns\":[\"\\\\bORD-[0-9]{8}\\\\b\",\"(?i)\\\\bproject\\\\s+kestrel\\\\b\"],"
                       "\"action\":\"redact\",\"direction\":\"both\"}}}";
    mg_policy *pol = mg_policy_load(json, strlen(json), &errs);
    if (pol == NULL)
        fprintf(stderr, "policy: %.*s\n", (int)errs.len, errs.p ? errs.p : "");
    mg_buf_free(&errs);
    T_CHECK(pol != NULL);
    if (pol == NULL)
        return;
    const char *clean = "nothing to see in this text at all";
    unsigned long scans;
    mg_policy_prefilter_set_enabled(true);
    T_EQ_INT(runs_for(pol, "r", clean, &scans), 2);   /* no prefilter yet: PCRE2 decides alone */
    T_EQ_INT(scans, 0);
    mg_policy_prefilter_attach(pol);
    T_EQ_INT(runs_for(pol, "r", clean, &scans), 0);
    T_EQ_INT(scans, 1);
    mg_policy_prefilter_attach(pol);
    T_EQ_INT(runs_for(pol, "r", clean, &scans), 0);
    T_EQ_INT(scans, 1);
    mg_buf o = {0};
    outcome(pol, "r", "see ORD-12345678 now", 20, &o);
    T_EQ_STR(o.p, "0|1|redacted:pf_r|see [REDACTED:pf_r] now");
    mg_buf_free(&o);
    mg_policy_unref(pol);
}

/* `serve` compiles in a child (`modelgate __hs-compile`): the database that
 * comes back works like one compiled here; a child that answers nothing
 * (/bin/true) leaves no database (PCRE2 alone), and one that cannot be
 * started at all falls back to compiling in process. The gateway binary is
 * $MG_BIN (scripts/test.sh sets it) or build/modelgate. */
T_TEST(compile_in_child_process)
{
    signal(SIGPIPE, SIG_IGN);   /* as in serve: a child that exits early fails the write */
    const char *bin = getenv("MG_BIN") ? getenv("MG_BIN") : "build/modelgate";
    T_CHECK(access(bin, X_OK) == 0);
    static const char *const pats[] = { "(?i)\\bproject\\s+kestrel\\b", "\\bORD-[0-9]{8}\\b", "price:\\s*\\Kd+" };
    unsigned flags[3], ids[3] = { 0, 1, 2 };
    for (int i = 0; i < 3; i++)
        flags[i] = HS_FLAG_UTF8 | HS_FLAG_UCP | HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY;
    hs_database_t *db = NULL;
    int bad = -2;
    mg_policy_hs_set_compiler(bin);
    /* \K is refused: the child names it */
    T_CHECK(!mg_policy_hs_compile(MG_POLICY_HSC_REGEX, pats, flags, ids, NULL, 3, &db, &bad));
    T_EQ_INT(bad, 2);
    T_CHECK(mg_policy_hs_compile(MG_POLICY_HSC_REGEX, pats, flags, ids, NULL, 2, &db, &bad));
    T_CHECK(db != NULL);
    hs_free_database(db);
    static const char *const lits[] = { "AKIA", "sk-" };
    size_t lens[2] = { 4, 3 };
    unsigned lflags[2] = { HS_FLAG_SINGLEMATCH, HS_FLAG_SINGLEMATCH };
    T_CHECK(mg_policy_hs_compile(MG_POLICY_HSC_LITERAL, lits, lflags, ids, lens, 2, &db, &bad));
    T_CHECK(db != NULL);
    hs_free_database(db);
    /* a whole policy through the child: same answers, the prefilter in use */
    mg_policy *pol = make_policy(BENCH, N_ARR(BENCH));
    T_CHECK(pol != NULL);
    if (pol != NULL) {
        unsigned long scans;
        T_EQ_INT(runs_for(pol, "r", "Please review the order service handler.", &scans), 0);
        T_EQ_INT(scans, 1);
        mg_buf o = {0};
        outcome(pol, "r", "see ORD-12345678 now", 20, &o);
        T_EQ_STR(o.p, "0|1|redacted:pf_r|see [REDACTED:pf_r] now");
        mg_buf_free(&o);
        mg_policy_unref(pol);
    }
    /* a child that says nothing: no database, and no crash */
    mg_policy_hs_set_compiler("/bin/true");
    db = NULL;
    T_CHECK(!mg_policy_hs_compile(MG_POLICY_HSC_REGEX, pats, flags, ids, NULL, 2, &db, &bad));
    T_CHECK(db == NULL);
    T_EQ_INT(bad, -1);
    /* no child at all: compiled here */
    mg_policy_hs_set_compiler("/nonexistent/modelgate");
    T_CHECK(mg_policy_hs_compile(MG_POLICY_HSC_REGEX, pats, flags, ids, NULL, 2, &db, &bad));
    T_CHECK(db != NULL);
    hs_free_database(db);
    mg_policy_hs_set_compiler(NULL);
}

/* ---- threads ---- */

#define N_TEXTS 64
#define N_POL 10

typedef struct job {
    mg_policy *pols[N_POL];
    size_t n_pols;
    char texts[N_TEXTS][96];
    char *expect[N_POL][N_TEXTS];    /* outcome for role r, computed up front */
    int bad;
    unsigned long scans;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    mg_buf o = {0};
    unsigned long s0 = mg_policy_pf_scans;
    for (int round = 0; round < 40; round++) {
        for (size_t p = 0; p < j->n_pols; p++) {
            for (int k = 0; k < N_TEXTS; k++) {
                const char *t = j->texts[k];
                outcome(j->pols[p], "r", t, strlen(t), &o);
                if (strcmp(o.p, j->expect[p][k]) != 0)
                    j->bad++;
            }
        }
    }
    j->scans = mg_policy_pf_scans - s0;
    mg_buf_free(&o);
    return NULL;
}

static void job_init(job *j, mg_policy *const *pols, size_t n, uint64_t seed)
{
    memset(j, 0, sizeof(*j));
    j->n_pols = n;
    rng_state = seed;
    for (int k = 0; k < N_TEXTS; k++) {
        size_t len = 0;
        for (int p = 0; p < 8; p++) {
            const char *s = PIECES[rnd() % N_ARR(PIECES)];
            size_t l = strlen(s);
            if (len + l + 1 >= sizeof(j->texts[k]))
                break;
            memcpy(j->texts[k] + len, s, l);
            len += l;
        }
        j->texts[k][len] = '\0';
    }
    mg_policy_prefilter_set_enabled(false);
    for (size_t p = 0; p < n; p++) {
        j->pols[p] = mg_policy_ref(pols[p]);
        for (int k = 0; k < N_TEXTS; k++) {
            mg_buf o = {0};
            outcome(pols[p], "r", j->texts[k], strlen(j->texts[k]), &o);
            j->expect[p][k] = strdup(o.p);
            mg_buf_free(&o);
        }
    }
    mg_policy_prefilter_set_enabled(true);
}

static void job_free(job *j)
{
    for (size_t p = 0; p < j->n_pols; p++) {
        mg_policy_unref(j->pols[p]);
        for (int k = 0; k < N_TEXTS; k++)
            free(j->expect[p][k]);
    }
}

T_TEST(threads_share_and_mix_policies)
{
    /* ten policies, each with its own database: more than a thread's scratch
     * remembers, and databases of different sizes */
    mg_policy *pols[N_POL];
    for (size_t p = 0; p < N_POL; p++) {
        pols[p] = make_policy(BENCH + p, N_ARR(BENCH) - p);
        T_CHECK(pols[p] != NULL);
        if (pols[p] == NULL)
            return;
    }
    static job jobs[4];
    mg_policy *a = pols[0], *b = pols[5];
    job_init(&jobs[0], &a, 1, 11);          /* two threads on the same policy */
    job_init(&jobs[1], &a, 1, 12);
    job_init(&jobs[2], &b, 1, 13);          /* another policy at the same time */
    job_init(&jobs[3], pols, N_POL, 14);    /* cycling through all ten */
    for (size_t p = 0; p < N_POL; p++)
        mg_policy_unref(pols[p]);           /* the jobs hold the references now */
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        T_EQ_INT(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        T_EQ_INT(jobs[i].bad, 0);
        T_CHECK(jobs[i].scans > 0);         /* the prefilter was in use in every thread */
        job_free(&jobs[i]);
    }
}

T_MAIN("policy_prefilter",
       T_CASE(differential_fixed_texts),
       T_CASE(differential_random_texts),
       T_CASE(differential_common_code_points),
       T_CASE(prefilter_skips_pcre2),
       T_CASE(prefilter_attached_after_compile),
       T_CASE(compile_in_child_process),
       T_CASE(threads_share_and_mix_policies))
