/* modelgate — unit tests: the vector byte scanners of json_parse.c and
 * detectors.c against naive byte-by-byte references.
 *
 * The scanners read 16 or 32 bytes per step and finish a tail with one
 * masked load, so every off-by-one hides at some length or offset: each
 * case is tried for every text length 0..80 and every position of the
 * special byte (or digit) in it, with fillers that sit one bit away from
 * what is searched for (0xa2 = '"' | 0x80, 0xdc = '\\' | 0x80, 0xb0-0xb9 =
 * digits | 0x80, '/' and ':' around '0'..'9'). Every text lives in a heap
 * block of exactly its length, so a read past it trips ASan.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "json.h"
#include "policy/policy_int.h"

#include <stdbool.h>

#define MAX_LEN 80

static const unsigned char json_fill[] = {
    'a', 'Z', ' ', 0x80, 0xa2, 0xdc, 0xff, 0x01, 0x1f, '!', '#', '[', ']', 0x7f, '0', 0x9c, 0xc3, 'u',
};

static unsigned char filler(size_t i, unsigned seed)
{
    return json_fill[(i * 7 + seed) % sizeof json_fill];
}

/* The reference: a string body read one byte at a time from p (just after
 * the opening quote). Returns the bytes consumed including the closing
 * quote, or 0 when unterminated; out gets the decoded text. Only the
 * escapes the tests write are known. */
static size_t naive_string(const unsigned char *p, size_t n, unsigned char *out, size_t *out_n)
{
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c == '"') {
            *out_n = o;
            return i + 1;
        }
        if (c == '\\') {
            if (i + 1 >= n)
                return 0;
            unsigned char e = p[i + 1];
            out[o++] = e == 'n' ? '\n' : e == 't' ? '\t' : e;   /* '"', '\\', '/' stand for themselves */
            i += 2;
            continue;
        }
        out[o++] = c;
        i++;
    }
    return 0;
}

/* What is injected at position k of a string body. */
enum { INJ_NONE, INJ_QUOTE, INJ_ESC_QUOTE, INJ_ESC_BS, INJ_ESC_N, INJ_TWO_ESC, INJ__COUNT };

/* Body of length len with the injection at k; returns its length (an
 * escape may not fit: then the body ends with a lone backslash). */
static size_t make_body(unsigned char *b, size_t len, size_t k, int inj, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        b[i] = filler(i, seed);
    if (inj == INJ_NONE || k >= len)
        return len;
    switch (inj) {
    case INJ_QUOTE: b[k] = '"'; break;
    case INJ_ESC_QUOTE: b[k] = '\\'; if (k + 1 < len) b[k + 1] = '"'; break;
    case INJ_ESC_BS: b[k] = '\\'; if (k + 1 < len) b[k + 1] = '\\'; break;
    case INJ_ESC_N: b[k] = '\\'; if (k + 1 < len) b[k + 1] = 'n'; break;
    case INJ_TWO_ESC:
        b[k] = '\\';
        if (k + 1 < len) b[k + 1] = '/';
        if (k + 5 < len) { b[k + 4] = '\\'; b[k + 5] = 't'; }
        break;
    }
    return len;
}

typedef struct {
    unsigned char got[MAX_LEN + 8];
    size_t got_n;
    int calls;
} first_string;

static bool keep_first(void *arg, const char *s, size_t n)
{
    first_string *f = arg;
    if (f->calls++ == 0 && n <= sizeof f->got) {
        memcpy(f->got, s, n);
        f->got_n = n;
    }
    return true;
}

static int json_failures;

static void json_check(bool ok, const char *what, size_t len, size_t k, int inj, size_t pad)
{
    if (ok)
        return;
    if (json_failures++ < 10)
        fprintf(stderr, "  %s: len %zu, at %zu, injection %d, pad %zu\n", what, len, k, inj, pad);
    T_CHECK(ok);
}

/* One body at one document offset, three ways:
 *  - pad + '"' body '"' through mg_json_parse_prefix (string at the very
 *    end of the document: tail loads must end at it);
 *  - pad + '[' '"' body '"' ",1]" through mg_json_parse (the document goes
 *    on after the string, and decode runs on bounds inside it);
 *  - the same through mg_json_each_string (nothing built). */
static void json_case(const unsigned char *body, size_t len, size_t k, int inj, size_t pad)
{
    unsigned char dec[MAX_LEN + 8];
    size_t dec_n = 0;
    size_t used = naive_string(body, len, dec, &dec_n);   /* 0: no quote inside the body */

    /* the bare string at the end: the closing quote follows the body */
    size_t n1 = pad + 1 + len + 1;
    unsigned char *d1 = malloc(n1);
    memset(d1, ' ', pad);
    d1[pad] = '"';
    memcpy(d1 + pad + 1, body, len);
    d1[n1 - 1] = '"';
    size_t used1 = naive_string(d1 + pad + 1, len + 1, dec, &dec_n);
    const char *end = NULL;
    cJSON *j = mg_json_parse_prefix((const char *)d1, n1, &end);
    if (used1 == 0) {
        json_check(j == NULL, "prefix: unterminated accepted", len, k, inj, pad);
    } else {
        json_check(j != NULL && cJSON_IsString(j), "prefix: refused", len, k, inj, pad);
        if (j != NULL && cJSON_IsString(j)) {
            json_check(end == (const char *)d1 + pad + 1 + used1, "prefix: wrong end", len, k, inj, pad);
            json_check(strlen(j->valuestring) == dec_n && memcmp(j->valuestring, dec, dec_n) == 0,
                       "prefix: wrong text", len, k, inj, pad);
        }
    }
    cJSON_Delete(j);
    free(d1);

    /* in an array: valid exactly when the body holds no quote of its own */
    size_t n2 = pad + 2 + len + 4;
    unsigned char *d2 = malloc(n2);
    memset(d2, '\n', pad);
    memcpy(d2 + pad, "[\"", 2);
    memcpy(d2 + pad + 2, body, len);
    memcpy(d2 + pad + 2 + len, "\",1]", 4);
    size_t used2 = naive_string(d2 + pad + 2, len + 1, dec, &dec_n);
    bool valid = used2 == len + 1 && used == 0;
    j = mg_json_parse((const char *)d2, n2, NULL);
    json_check((j != NULL) == valid, "parse: wrong verdict", len, k, inj, pad);
    if (j != NULL && valid) {
        const cJSON *s = cJSON_GetArrayItem(j, 0);
        json_check(cJSON_IsString(s) && strlen(s->valuestring) == dec_n && memcmp(s->valuestring, dec, dec_n) == 0,
                   "parse: wrong text", len, k, inj, pad);
    }
    cJSON_Delete(j);

    mg_buf scratch = {0};
    first_string f = {.calls = 0};
    bool ok = mg_json_each_string((const char *)d2, n2, &scratch, keep_first, &f);
    json_check(ok == valid, "each_string: wrong verdict", len, k, inj, pad);
    if (ok && valid)
        json_check(f.calls == 1 && f.got_n == dec_n && memcmp(f.got, dec, dec_n) == 0, "each_string: wrong text",
                   len, k, inj, pad);
    mg_buf_free(&scratch);
    free(d2);
}

T_TEST(json_string_scan_every_length_and_position)
{
    static const size_t pads[] = {0, 1, 3, 14, 15, 16, 17, 31};
    unsigned char body[MAX_LEN];
    json_failures = 0;
    for (size_t len = 0; len <= MAX_LEN; len++)
        for (size_t k = 0; k <= len; k++)
            for (int inj = 0; inj < INJ__COUNT; inj++) {
                if (inj == INJ_NONE && k != len)
                    continue;   /* one plain body per length */
                for (size_t pi = 0; pi < MG_ARRAY_LEN(pads); pi++) {
                    size_t n = make_body(body, len, k, inj, (unsigned)(len + pi));
                    json_case(body, n, k, inj, pads[pi]);
                }
            }
    T_EQ_INT(json_failures, 0);
}

/* ---- digits ---- */

/* Fillers that are not ASCII digits, letters or detector separators, but
 * sit next to them: ':' follows '9', 0xb0-0xb9 are digits with the high
 * bit, 0xaf/0xba around those. ('/' is a cluster separator, so it only
 * appears where no digit is near: see digit_text.) */
static const unsigned char digit_fill[] = {':', 0xb0, 0xb5, 0xb9, 0x80, 0xff, ',', ';', '!', 0x10, 0xaf, 0xba, '^'};

static void digit_text(unsigned char *t, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        t[i] = digit_fill[(i * 5 + seed) % sizeof digit_fill];
}

/* The spans a detector reports, as "s-e,s-e", with or without a textinfo
 * shared with other detectors (which is how filter.c runs them). */
static void spans(mg_policy_detector d, const unsigned char *t, size_t len, mg_policy_textinfo *ti, char *out,
                  size_t cap)
{
    mg_policy_hits h;
    mg_policy_hits_init(&h);
    out[0] = '\0';
    if (mg_policy_detect_hits(d, (const char *)t, len, ti, &h) != MG_OK) {
        snprintf(out, cap, "(error)");
    } else {
        mg_policy_hits_normalize(&h);
        size_t o = 0;
        for (size_t i = 0; i < h.n && o < cap; i++)
            o += (size_t)snprintf(out + o, cap - o, "%s%zu-%zu", i ? "," : "", h.v[i].start, h.v[i].end);
    }
    mg_policy_hits_free(&h);
}

static int digit_failures;

static void digit_check(const char *got, const char *want, const char *what, size_t len, size_t k)
{
    if (strcmp(got, want) == 0)
        return;
    if (digit_failures++ < 10)
        fprintf(stderr, "  %s: len %zu, at %zu: got \"%s\", want \"%s\"\n", what, len, k, got, want);
    T_CHECK(strcmp(got, want) == 0);
}

/* Plants tok at k in a filler text of length len (the block is exactly
 * len bytes) and checks detector d finds exactly it, alone and after the
 * cluster detectors have shared the textinfo; a lone digit earlier in
 * the text (when there is room) must not disturb it. */
static void digit_case(mg_policy_detector d, const char *tok, size_t len, size_t k, bool distractor)
{
    size_t tn = strlen(tok);
    unsigned char *t = malloc(len ? len : 1);
    digit_text(t, len, (unsigned)(len + k));
    if (distractor) {
        if (k < 4)
            goto out;
        t[k - 4] = '7';   /* the filler around it is no separator: a cluster of its own */
    }
    if (k + tn > len)
        goto out;
    memcpy(t + k, tok, tn);
    char want[32], got[256];
    snprintf(want, sizeof want, "%zu-%zu", k, k + tn);
    spans(d, t, len, NULL, got, sizeof got);
    digit_check(got, want, "alone", len, k);
    mg_policy_textinfo ti;
    mg_policy_textinfo_init(&ti);
    char skip[256];
    spans(MG_POLICY_DET_PHONE, t, len, &ti, skip, sizeof skip);
    spans(MG_POLICY_DET_CREDIT_CARD, t, len, &ti, skip, sizeof skip);
    spans(d, t, len, &ti, got, sizeof got);
    digit_check(got, want, "shared textinfo", len, k);
out:
    free(t);
}

T_TEST(digit_scan_every_length_and_position)
{
    digit_failures = 0;
    for (size_t len = 0; len <= MAX_LEN; len++)
        for (size_t k = 0; k <= len; k++)
            for (int dis = 0; dis < 2; dis++) {
                digit_case(MG_POLICY_DET_IBAN, "GB82WEST12345698765432", len, k, dis);
                digit_case(MG_POLICY_DET_IBAN, "DE89 3704 0044 0532 0130 00", len, k, dis);
                digit_case(MG_POLICY_DET_SSN, "123-45-6780", len, k, dis);
            }
    T_EQ_INT(digit_failures, 0);
}

/* No digit at all, or only high-bit look-alikes and neighbours: nothing. */
T_TEST(digit_scan_finds_nothing_in_lookalikes)
{
    unsigned char *t = malloc(MAX_LEN);
    for (size_t len = 0; len <= MAX_LEN; len++) {
        digit_text(t, len, (unsigned)len);
        char got[64];
        spans(MG_POLICY_DET_IBAN, t, len, NULL, got, sizeof got);
        T_EQ_STR(got, "");
        spans(MG_POLICY_DET_SSN, t, len, NULL, got, sizeof got);
        T_EQ_STR(got, "");
    }
    free(t);
}

/* Many IBAN starts: more candidates (and more clusters) than the cluster
 * walk keeps aside, so iban_scan must fall back to its own walk and still
 * find every real IBAN, the same with a shared textinfo as without. */
static void many(const char *unit, size_t reps, const char *tail, size_t want_hits)
{
    size_t un = strlen(unit), tn = strlen(tail), len = un * reps + tn;
    unsigned char *t = malloc(len);
    for (size_t i = 0; i < reps; i++)
        memcpy(t + i * un, unit, un);
    memcpy(t + un * reps, tail, tn);
    char *alone = malloc(8192), *shared = malloc(8192), *skip = malloc(8192);
    spans(MG_POLICY_DET_IBAN, t, len, NULL, alone, 8192);
    mg_policy_textinfo ti;
    mg_policy_textinfo_init(&ti);
    spans(MG_POLICY_DET_PHONE, t, len, &ti, skip, 8192);
    spans(MG_POLICY_DET_IBAN, t, len, &ti, shared, 8192);
    T_EQ_STR(shared, alone);
    size_t hits = alone[0] ? 1 : 0;
    for (const char *p = alone; *p; p++)
        hits += *p == ',';
    T_EQ_INT(hits, want_hits);
    free(alone);
    free(shared);
    free(skip);
    free(t);
}

T_TEST(iban_candidates_beyond_the_memo)
{
    many("GB82WEST12345698765432 ", 10, "", 10);
    many("GB82WEST12345698765432 ", 31, "", 31);
    many("GB82WEST12345698765432 ", 32, "", 32);
    many("GB82WEST12345698765432 ", 33, "", 33);
    many("GB82WEST12345698765432 ", 50, "", 50);
    many("AB12 ", 40, "DE89 3704 0044 0532 0130 00", 1);
    many("call 555 0100 2000 ", 40, " GB82WEST12345698765432", 1);   /* clusters overflow */
    many("xx GB82WEST12345698765433 ", 40, "GB82WEST12345698765432", 1);   /* bad check digits */
}

T_MAIN("scan_simd",
       T_CASE(json_string_scan_every_length_and_position),
       T_CASE(digit_scan_every_length_and_position),
       T_CASE(digit_scan_finds_nothing_in_lookalikes),
       T_CASE(iban_candidates_beyond_the_memo))
