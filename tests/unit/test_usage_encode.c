/* modelgate — unit tests: the hand-written journal encoder and the shipper's
 * direct record reader against the printf/cJSON versions they replaced.
 * The reference encoder below is the previous mg_usage_encode, kept only
 * here: every record the new one writes must be byte-identical to it, and
 * every COPY line the fast reader builds must equal the cJSON path's.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "usage/usage_int.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

/* ---- reference: the printf encoder ---------------------------------------- */

static size_t ref_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

static void ref_str(mg_buf *b, const char *key, const char *s)
{
    mg_buf_printf(b, ",\"%s\":", key);
    if (s == NULL) { mg_buf_append_str(b, "null"); return; }
    size_t n = strlen(s), run = 0;
    const unsigned char *u = (const unsigned char *)s;
    mg_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        size_t l = c < 0x80 ? 1 : ref_utf8_len(u + i, n - i);
        if (l > 0 && c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) { i += l; continue; }
        mg_buf_append(b, s + run, i - run);
        if (l == 0) mg_buf_append_str(b, "\\ufffd");
        else if (c == '"' || c == '\\') mg_buf_printf(b, "\\%c", c);
        else mg_buf_printf(b, "\\u%04x", c);
        i += l ? l : 1;
        run = i;
    }
    mg_buf_append(b, s + run, n - run);
    mg_buf_append(b, "\"", 1);
}

static void ref_num(mg_buf *b, const char *key, double v)
{
    if (!isfinite(v)) mg_buf_printf(b, ",\"%s\":null", key);
    else mg_buf_printf(b, ",\"%s\":%.10f", key, v);
}

/* payload only (the header is checked through mg_usage_decode) */
static void ref_encode(mg_buf *b, const mg_usage_event *ev)
{
    int64_t ms = ev->ts_ms;
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int msec = (int)(ms - (int64_t)t * 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    mg_buf_printf(b, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, msec);
    ref_str(b, "request_id", ev->request_id);
    ref_str(b, "subject", ev->subject);
    ref_str(b, "email", ev->email);
    ref_str(b, "roles", ev->roles);
    ref_str(b, "key_id", ev->key_id);
    ref_str(b, "cost_center", ev->cost_center);
    ref_str(b, "model", ev->model);
    ref_str(b, "served_model", ev->served_model);
    ref_str(b, "provider", ev->provider);
    ref_str(b, "upstream_model", ev->upstream_model);
    mg_buf_printf(b, ",\"status\":%d,\"prompt_tokens\":%lld,\"completion_tokens\":%lld", ev->status,
                  (long long)ev->prompt_tokens, (long long)ev->completion_tokens);
    ref_num(b, "cost_usd", ev->cost_usd);
    ref_num(b, "input_per_mtok", ev->input_per_mtok);
    ref_num(b, "output_per_mtok", ev->output_per_mtok);
    mg_buf_printf(b, ",\"latency_ms\":%lld,\"stream\":%s,\"estimated\":%s,\"client_gone\":%s,\"incomplete\":%s",
                  (long long)ev->latency_ms, ev->stream ? "true" : "false", ev->estimated ? "true" : "false",
                  ev->client_gone ? "true" : "false", ev->incomplete ? "true" : "false");
    const char *d = ev->decision;
    size_t n = d ? strlen(d) : 0;
    bool raw = d && n >= 2 && d[0] == '[' && d[n - 1] == ']';
    for (size_t i = 0; raw && i < n; i++)
        if ((unsigned char)d[i] < 0x20 || (unsigned char)d[i] >= 0x80) raw = false;
    if (d == NULL) mg_buf_append_str(b, ",\"decision\":null");
    else if (raw) { mg_buf_append_str(b, ",\"decision\":"); mg_buf_append(b, d, n); }
    else ref_str(b, "decision", d);
    ref_str(b, "error_code", ev->error_code);
    mg_buf_append(b, "}", 1);
}

/* The fast reader passes the journal's decimal text (e.g. 0.0025600000)
 * where cJSON printed %.17g of the parsed double (0.0025600000000000002):
 * the staging columns are numeric(20,10), so both must round to the same
 * 10-decimal value. Every other column must be byte-identical. */
static bool same_columns(const mg_buf *a, const mg_buf *b)
{
    if (a->len == 0 || b->len == 0)
        return a->len == b->len;
    const char *pa = a->p, *ea = a->p + a->len, *pb = b->p, *eb = b->p + b->len;
    for (int col = 0;; col++) {
        const char *ta = memchr(pa, '\t', (size_t)(ea - pa)), *tb = memchr(pb, '\t', (size_t)(eb - pb));
        size_t na = (size_t)((ta ? ta : ea) - pa), nb = (size_t)((tb ? tb : eb) - pb);
        bool num = col >= 15 && col <= 17 && !(na == 2 && memcmp(pa, "\\N", 2) == 0);
        if (num) {
            char x[64], y[64];
            if (na >= sizeof x || nb >= sizeof y) return false;
            memcpy(x, pa, na); x[na] = '\0';
            memcpy(y, pb, nb); y[nb] = '\0';
            long double vx = strtold(x, NULL), vy = strtold(y, NULL);
            if (fabsl(vx) >= 1e9L || fabsl(vy) >= 1e9L) {
                if (na != nb || memcmp(pa, pb, na) != 0) return false;
            } else if (llroundl(vx * 1e10L) != llroundl(vy * 1e10L)) {
                return false;
            }
        } else if (na != nb || memcmp(pa, pb, na) != 0) {
            return false;
        }
        if (!ta || !tb) return !ta && !tb;
        pa = ta + 1;
        pb = tb + 1;
    }
}

/* Encodes with both; checks header, CRC, identical payload, valid JSON and
 * that the fast and cJSON COPY lines agree. Returns the number of failures. */
static int same_as_reference(const mg_usage_event *ev)
{
    int bad = 0;
    mg_buf nb = {0}, rb = {0}, fast = {0}, slow = {0};
    if (mg_usage_encode(&nb, ev) != MG_OK) { bad++; goto out; }
    ref_encode(&rb, ev);
    const uint8_t *pl;
    size_t plen, used;
    if (mg_usage_decode((const uint8_t *)nb.p, nb.len, true, &pl, &plen, &used) != MG_JDEC_OK || used != nb.len) {
        bad++;
        goto out;
    }
    if (plen != rb.len || memcmp(pl, rb.p, plen) != 0) {
        fprintf(stderr, "  encoder differs:\n   new %.*s\n   ref %.*s\n", (int)plen, (const char *)pl, (int)rb.len, rb.p);
        bad++;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)pl, plen);
    if (!cJSON_IsObject(j)) bad++;
    cJSON_Delete(j);
    bool a = mg_usage_copy_line(&fast, 7, (const char *)pl, plen);
    bool c = mg_usage_copy_line_slow(&slow, 7, (const char *)pl, plen);
    if (a != c || !same_columns(&fast, &slow)) {
        fprintf(stderr, "  copy line differs:\n   fast %.*s   slow %.*s", (int)fast.len, fast.p, (int)slow.len, slow.p);
        bad++;
    }
out:
    mg_buf_free(&nb); mg_buf_free(&rb); mg_buf_free(&fast); mg_buf_free(&slow);
    return bad;
}

static mg_usage_event typical(void)
{
    return (mg_usage_event){
        .request_id = "01JD8Z5M3K7Q2W9XK4T6Y0ABCD", .ts_ms = 1767225600123LL, .subject = "user-42",
        .email = "dev@example.com", .roles = "dev,admin", .key_id = "key_7f3a", .cost_center = "cc-eng",
        .model = "gpt-4o", .served_model = "gpt-4o", .provider = "openai", .upstream_model = "gpt-4o-2024-08-06",
        .status = 200, .prompt_tokens = 512, .completion_tokens = 128, .cost_usd = 0.00256,
        .input_per_mtok = 2.5, .output_per_mtok = 10, .latency_ms = 431, .stream = true,
        .decision = "[\"pii\",\"secrets\"]",
    };
}

T_TEST(encoder_matches_reference_on_tricky_values)
{
    mg_usage_event ev = typical();
    T_EQ_INT(same_as_reference(&ev), 0);
    /* control characters, quotes, backslash, DEL */
    ev.subject = "a\"b\\c\x01\x1f\t\n\r\x7f" "end";
    /* invalid UTF-8: lone continuation, overlong, surrogate, truncated, > U+10FFFF */
    ev.email = "\x80x\xC0\xAFy\xED\xA0\x80z\xF4\x90\x80\x80w\xE2\x82";
    /* valid multi-byte */
    ev.roles = "r\xC3\xA9le,\xE2\x82\xAC,\xF0\x9F\x98\x80";
    ev.key_id = "";
    ev.cost_center = NULL;
    ev.model = NULL; ev.served_model = NULL; ev.provider = NULL; ev.upstream_model = NULL;
    ev.error_code = "upstream_\"timeout\"";
    T_EQ_INT(same_as_reference(&ev), 0);
    /* big and negative numbers, NULL-ish doubles */
    ev = typical();
    ev.prompt_tokens = INT64_MAX; ev.completion_tokens = INT64_MIN; ev.latency_ms = -1;
    ev.status = -2147483647 - 1;
    ev.cost_usd = NAN; ev.input_per_mtok = INFINITY; ev.output_per_mtok = -0.0;
    T_EQ_INT(same_as_reference(&ev), 0);
    ev.cost_usd = 1e300; ev.input_per_mtok = -123456.00000000005; ev.output_per_mtok = 0.00000000005;
    T_EQ_INT(same_as_reference(&ev), 0);
    ev.cost_usd = 99999.99999999999; ev.input_per_mtok = 1e-300; ev.output_per_mtok = 5e-11;
    T_EQ_INT(same_as_reference(&ev), 0);
    /* decisions: raw array, array with a control byte or non-ASCII (text), not an array */
    ev = typical();
    ev.decision = "[]";
    T_EQ_INT(same_as_reference(&ev), 0);
    ev.decision = "[\"a\tb\"]";
    T_EQ_INT(same_as_reference(&ev), 0);
    ev.decision = "[\"caf\xC3\xA9\"]";
    T_EQ_INT(same_as_reference(&ev), 0);
    ev.decision = "not json \"at all\"";
    T_EQ_INT(same_as_reference(&ev), 0);
    ev.decision = "[{\"rule\":\"pii\",\"n\":3,\"x\":[true,false,null,-12]}]";
    T_EQ_INT(same_as_reference(&ev), 0);
    ev.decision = NULL;
    T_EQ_INT(same_as_reference(&ev), 0);
    /* a start record */
    ev = typical();
    ev.incomplete = true; ev.status = 0; ev.completion_tokens = 0; ev.latency_ms = 0; ev.estimated = true;
    T_EQ_INT(same_as_reference(&ev), 0);
    /* timestamps: epoch, before it, leap day, end of a year, far future, year > 9999 */
    const int64_t ts[] = {0, -1, -86400001, 951782400999LL, 1735689599999LL, 253402300799999LL,
                          253402300800000LL, 4102444800000LL, 1709164800000LL};
    for (size_t i = 0; i < MG_ARRAY_LEN(ts); i++) {
        ev.ts_ms = ts[i];
        T_EQ_INT(same_as_reference(&ev), 0);
    }
}

T_TEST(encoder_decodes_back_to_the_values)
{
    mg_usage_event ev = typical();
    ev.subject = "q\"\\\x01\xFFz";
    ev.prompt_tokens = 999999999999999LL;
    mg_buf b = {0};
    T_EQ_INT(mg_usage_encode(&b, &ev), MG_OK);
    const uint8_t *pl;
    size_t plen, used;
    T_EQ_INT(mg_usage_decode((const uint8_t *)b.p, b.len, true, &pl, &plen, &used), MG_JDEC_OK);
    cJSON *j = cJSON_ParseWithLength((const char *)pl, plen);
    T_CHECK(j != NULL);
    if (j) {
        T_EQ_STR(cJSON_GetObjectItem(j, "subject")->valuestring, "q\"\\\x01\xEF\xBF\xBDz");
        T_EQ_STR(cJSON_GetObjectItem(j, "ts")->valuestring, "2026-01-01T00:00:00.123Z");
        T_CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "error_code")));
        T_CHECK(fabs(cJSON_GetObjectItem(j, "cost_usd")->valuedouble - 0.00256) < 1e-12);
    }
    cJSON_Delete(j);
    /* the largest integer the fast reader passes through verbatim */
    mg_buf line = {0};
    T_CHECK(mg_usage_copy_line(&line, 1, (const char *)pl, plen));
    T_CHECK(line.len > 0 && memmem(line.p, line.len, "\t999999999999999\t", 17) != NULL);
    T_CHECK(line.len > 0 && memmem(line.p, line.len, "\tq\"\\\\\x01\xEF\xBF\xBDz\t", 11) != NULL);
    mg_buf_free(&line);
    mg_buf_free(&b);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static char *rnd_str(char *buf, size_t cap)
{
    static const char alpha[] = "abc\"\\\x01\x1f\x7f\t\n\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xFF\x80\xED\xA0\x80 /{}[]:,";
    size_t n = rnd() % cap;
    for (size_t i = 0; i < n; i++) buf[i] = alpha[rnd() % (sizeof alpha - 1)];
    buf[n] = '\0';
    return rnd() % 8 == 0 ? NULL : buf;
}

static double rnd_double(void)
{
    switch (rnd() % 6) {
    case 0: return (double)(rnd() % 100000) / 1000.0;
    case 1: return (double)(rnd() % 1000000007) * 1e-9;
    case 2: return ldexp((double)(rnd() >> 11), (int)(rnd() % 80) - 70);
    case 3: return (double)(rnd() % 1000) / 8.0;
    case 4: { double v; uint64_t u = rnd(); memcpy(&v, &u, sizeof v); return v; }   /* any bit pattern */
    default: return (double)(rnd() % 100000) + 0.5e-10 * (double)(rnd() % 3);
    }
}

T_TEST(encoder_matches_reference_on_random_events)
{
    char s[10][40];
    int bad = 0;
    for (int it = 0; it < 20000; it++) {
        mg_usage_event ev = {
            .request_id = "r", .ts_ms = (int64_t)(rnd() % 4102444800000ull) - (it % 7 == 0 ? 100000000000LL : 0),
            .subject = rnd_str(s[0], 40), .email = rnd_str(s[1], 40), .roles = rnd_str(s[2], 40),
            .key_id = rnd_str(s[3], 40), .cost_center = rnd_str(s[4], 40), .model = rnd_str(s[5], 40),
            .provider = rnd_str(s[6], 40), .upstream_model = rnd_str(s[7], 40), .decision = rnd_str(s[8], 40),
            .error_code = rnd_str(s[9], 40), .status = (int)(rnd() % 600) - 50,
            .prompt_tokens = (int64_t)rnd(), .completion_tokens = (int64_t)(rnd() % 100000),
            .cost_usd = rnd_double(), .input_per_mtok = rnd_double(), .output_per_mtok = rnd_double(),
            .latency_ms = (int64_t)(rnd() % 100000), .stream = rnd() & 1, .estimated = rnd() & 1,
            .client_gone = rnd() & 1, .incomplete = rnd() & 1,
        };
        if (it % 3 == 0) ev.decision = "[\"pii\"]";
        bad += same_as_reference(&ev);
        if (bad > 5) break;
    }
    T_EQ_INT(bad, 0);
}

/* Payloads the encoder never writes: the fast reader must give exactly the
 * cJSON path's answer (by falling back, or by agreeing). */
T_TEST(copy_line_fast_equals_cjson_on_foreign_records)
{
    static const char *const cases[] = {
        "{}",
        "{\"ts\":\"2026-01-01T00:00:00.000Z\",\"request_id\":\"x\"}",
        " {\"request_id\":\"x\"}",
        "{\"request_id\":\"x\"} trailing",
        "{\"request_id\": \"x\"}",
        "{\"request_id\":\"x\",\"request_id\":\"y\"}",
        "{\"request_id\":\"x\",\"other\":1}",
        "{\"request_id\":\"a\\u00e9\\u20ac\\/\\b\\f\\n\\r\\t\\\"\\\\z\"}",
        "{\"request_id\":\"\\u0000x\"}",
        "{\"request_id\":\"\\ud83d\\ude00\"}",
        "{\"request_id\":\"\\ud83d\"}",
        "{\"request_id\":\"\\u0009\\u0001\"}",
        "{\"request_id\":\"raw\ttab\"}",
        "{\"request_id\":12}",
        "{\"request_id\":true}",
        "{\"request_id\":[1]}",
        "{\"status\":200.5,\"prompt_tokens\":1e3,\"completion_tokens\":-0,\"latency_ms\":007}",
        "{\"prompt_tokens\":123456789012345678,\"completion_tokens\":-9007199254740993}",
        "{\"cost_usd\":123456.1234567890,\"input_per_mtok\":-0.0000000000,\"output_per_mtok\":12}",
        "{\"cost_usd\":0.00000000001,\"input_per_mtok\":1.5E2,\"output_per_mtok\":\"3\"}",
        "{\"stream\":1,\"estimated\":\"true\",\"client_gone\":null,\"incomplete\":null}",
        "{\"incomplete\":true}",
        "{\"decision\":[\"a\",\"b\\\"c\"]}",
        "{\"decision\":[ \"a\" ]}",
        "{\"decision\":[1.0,2,-0,1234567890]}",
        "{\"decision\":{\"k\":[{}],\"j\":\"\\u00e9\"}}",
        "{\"decision\":\"text\"}",
        "{\"decision\":[\"a\",]}",
        "{\"decision\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
        "{\"error_code\":\"e\",}",
        "[1,2]",
        "\"s\"",
        "{\"request_id\"",
        "{\"request_id\":\"x",
        "not json",
        "{\"ts\\u0000\":\"x\"}",
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        mg_buf fast = {0}, slow = {0};
        size_t n = strlen(cases[i]);
        bool a = mg_usage_copy_line(&fast, i, cases[i], n);
        bool c = mg_usage_copy_line_slow(&slow, i, cases[i], n);
        T_EQ_INT(a, c);
        if (!same_columns(&fast, &slow)) {
            fprintf(stderr, "  case %zu: %s\n   fast %.*s   slow %.*s", i, cases[i], (int)fast.len, fast.p,
                    (int)slow.len, slow.p);
            T_CHECK(!"fast and cJSON COPY lines differ");
        }
        mg_buf_free(&fast);
        mg_buf_free(&slow);
    }
    /* and what the fast path itself writes for a start record of ours */
    mg_buf b = {0}, line = {0};
    mg_usage_event ev = {.request_id = "r-9", .ts_ms = 0, .subject = "s\tx", .status = 0, .prompt_tokens = 40,
                         .cost_usd = 0.0001, .input_per_mtok = 2.5, .output_per_mtok = 10, .incomplete = true,
                         .estimated = true};
    T_EQ_INT(mg_usage_encode(&b, &ev), MG_OK);
    T_CHECK(mg_usage_copy_line(&line, 3, b.p + MG_JREC_HDR, b.len - MG_JREC_HDR));
    mg_buf_append(&line, "", 1);
    T_EQ_STR(line.p, "3\tr-9\t1970-01-01T00:00:00.000Z\ts\\tx\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t0\t40\t0"
                     "\t0.0001000000\t2.5000000000\t10.0000000000\t0\tf\tt\tf\tt\t\\N\t\\N\n");
    mg_buf_free(&b);
    mg_buf_free(&line);
}

T_TEST(crc32_slice_by_8_matches_bytewise)
{
    uint8_t buf[1031];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rnd();
    for (size_t n = 0; n <= sizeof buf; n += (n < 40 ? 1 : 97)) {
        for (size_t off = 0; off < 3 && off <= n; off++) {
            uint32_t c = 0xFFFFFFFFu;
            for (size_t i = off; i < n; i++) {
                c ^= buf[i];
                for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }
            T_EQ_INT(mg_usage_crc32(buf + off, n - off), c ^ 0xFFFFFFFFu);
        }
    }
    T_EQ_INT(mg_usage_crc32("123456789", 9), 0xCBF43926u);
}

T_MAIN("usage_encode",
       T_CASE(encoder_matches_reference_on_tricky_values), T_CASE(encoder_decodes_back_to_the_values),
       T_CASE(encoder_matches_reference_on_random_events), T_CASE(copy_line_fast_equals_cjson_on_foreign_records),
       T_CASE(crc32_slice_by_8_matches_bytewise))
