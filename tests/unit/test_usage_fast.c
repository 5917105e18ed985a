/* modelgate — unit tests: the ledger's fast paths give the same bytes as
 * their definitions: the CRC-32 (PCLMULQDQ folding or tables) against the
 * bytewise CRC at every length 0..2048 and 16 alignments; the encoder's
 * string escaping (bulk copy of plain runs) against a byte-at-a-time
 * reference for every byte value at every position of short strings; the
 * shipper's batch COPY lines (positions found once by mg_usage_coalesce)
 * against mg_usage_copy_line record by record and the cJSON path, and the
 * coalescing of records whose shape only the encoder walk accepts.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "usage/usage_int.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }

static uint32_t crc_bytewise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

T_TEST(crc32_every_length_and_alignment)
{
    static uint8_t buf[2048 + 16];
    int bad = 0;
    for (int fill = 0; fill < 3; fill++) {
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = fill == 0 ? (uint8_t)rnd() : fill == 1 ? 0x00 : 0xFF;
        for (size_t n = 0; n <= 2048; n++) {
            for (size_t off = 0; off < 16; off++) {
                uint32_t want = crc_bytewise(buf + off, n);
                if (mg_usage_crc32(buf + off, n) != want || mg_usage_crc32_tables(buf + off, n) != want)
                    bad++;
            }
        }
    }
    T_EQ_INT(bad, 0);
    T_EQ_INT(mg_usage_crc32("123456789", 9), 0xCBF43926u);
    T_EQ_INT(mg_usage_crc32_tables("123456789", 9), 0xCBF43926u);
    /* a known record-sized vector: 64 x "modelgate" + "!" (577 bytes) */
    char big[600];
    for (int i = 0; i < 64; i++) memcpy(big + 9 * i, "modelgate", 9);
    big[576] = '!';
    T_EQ_INT(mg_usage_crc32(big, 577), crc_bytewise((const uint8_t *)big, 577));
    printf("  (CRC-32 with PCLMULQDQ: %s)\n", mg_usage_crc32_accelerated() ? "yes" : "no, tables");
}

/* ---- string escaping ------------------------------------------------------ */

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

/* The definition, one byte at a time: "subject":"<escaped>" */
static void ref_subject(mg_buf *b, const char *s)
{
    size_t n = strlen(s);
    const unsigned char *u = (const unsigned char *)s;
    mg_buf_append_str(b, ",\"subject\":\"");
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        size_t l = ref_utf8_len(u + i, n - i);
        if (l == 0) { mg_buf_append_str(b, "\\ufffd"); i++; continue; }
        if (c == '"' || c == '\\') mg_buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7F) mg_buf_printf(b, "\\u%04x", c);
        else mg_buf_append(b, s + i, l);
        i += l;
    }
    mg_buf_append_str(b, "\",\"email\":");
}

static int subject_matches(const char *s)
{
    mg_usage_event ev = {.request_id = "r", .subject = s};
    mg_buf rec = {0}, want = {0};
    int bad = 0;
    ref_subject(&want, s);
    if (mg_usage_encode(&rec, &ev) != MG_OK) {
        bad = 1;
    } else {
        const char *p = memmem(rec.p, rec.len, ",\"subject\":", 11);
        if (p == NULL || (size_t)(rec.p + rec.len - p) < want.len || memcmp(p, want.p, want.len) != 0) {
            if (p) fprintf(stderr, "  subject %zu bytes: got %.*s\n  want %.*s\n", strlen(s), (int)want.len, p,
                           (int)want.len, want.p);
            bad = 1;
        }
    }
    mg_buf_free(&rec);
    mg_buf_free(&want);
    return bad;
}

T_TEST(escaping_every_byte_at_every_position)
{
    char s[48];
    int bad = 0;
    for (size_t len = 1; len <= 40; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (int c = 1; c < 256; c++) {
                for (size_t i = 0; i < len; i++) s[i] = (char)('a' + i % 26);
                s[len] = '\0';
                s[pos] = (char)c;
                bad += subject_matches(s);
                if (bad > 5) goto out;
            }
        }
    }
    /* multi-byte sequences (valid, cut, overlong, surrogate) at every position */
    static const char *const seq[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xc3", "\xe2\x82",
                                      "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"};
    for (size_t k = 0; k < MG_ARRAY_LEN(seq); k++) {
        size_t sl = strlen(seq[k]);
        for (size_t len = sl; len <= 36; len++) {
            for (size_t pos = 0; pos + sl <= len; pos++) {
                for (size_t i = 0; i < len; i++) s[i] = (char)('A' + i % 26);
                memcpy(s + pos, seq[k], sl);
                s[len] = '\0';
                bad += subject_matches(s);
            }
        }
    }
    /* random strings of random bytes */
    for (int it = 0; it < 20000 && bad <= 5; it++) {
        size_t len = rnd() % 47;
        for (size_t i = 0; i < len; i++)
            s[i] = (char)(rnd() % 8 ? 0x20 + rnd() % 0x5F : 1 + rnd() % 255);
        s[len] = '\0';
        bad += subject_matches(s);
    }
out:
    T_EQ_INT(bad, 0);
}

/* ---- batch COPY lines ----------------------------------------------------- */

#define MAXR 64

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

static const char *pick(const char *const *pool, size_t n) { return pool[rnd() % n]; }

static void add_random_event(batch *b, const char *id)
{
    static const char *const strs[] = {NULL, "", "a", "alice@example.com", "x\"y", "back\\slash", "t\tab",
                                       "n\nl", "\x01\x1f\x7f", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                       "bad\xff", "[\"x\"]", "0123456789abcdef0123456789abcdef-long"};
    static const char *const dec[] = {NULL, "[\"pii\"]", "[]", "[\"a\",\"b\"]", "not json", "[\"t\tab\"]",
                                      "[1,2]", "allowed"};
    static const double nums[] = {0, 0.15, 2.5, 0.0000739500, 1e-11, 99999.5, 123456.78, -0.5, 1e300};
    const size_t ns = MG_ARRAY_LEN(strs);
    mg_usage_event ev = {
        .request_id = id, .ts_ms = (int64_t)(rnd() % 4000000000000ull), .subject = pick(strs, ns),
        .email = pick(strs, ns), .roles = pick(strs, ns), .key_id = pick(strs, ns), .cost_center = pick(strs, ns),
        .model = pick(strs, ns), .served_model = pick(strs, ns), .provider = pick(strs, ns),
        .upstream_model = pick(strs, ns), .status = (int)(rnd() % 600),
        .prompt_tokens = (int64_t)(rnd() % 100000) - (rnd() % 8 == 0 ? 4000000000000000LL : 0),
        .completion_tokens = (int64_t)(rnd() % 1000), .cost_usd = nums[rnd() % MG_ARRAY_LEN(nums)],
        .input_per_mtok = nums[rnd() % MG_ARRAY_LEN(nums)], .output_per_mtok = nums[rnd() % MG_ARRAY_LEN(nums)],
        .latency_ms = (int64_t)(rnd() % 100000), .stream = rnd() & 1, .estimated = rnd() & 1,
        .client_gone = rnd() & 1, .incomplete = rnd() & 1, .decision = pick(dec, MG_ARRAY_LEN(dec)),
        .error_code = pick(strs, ns),
    };
    mg_buf rec = {0};
    if (mg_usage_encode(&rec, &ev) == MG_OK)
        add_raw(b, rec.p + MG_JREC_HDR, rec.len - MG_JREC_HDR);
    mg_buf_free(&rec);
}

/* The batch path equals mg_usage_copy_line record by record (byte for
 * byte) and the cJSON path column by column. */
static int check_batch(batch *b)
{
    mg_usage_idset set = {0};
    mg_usage_coalesce(b->data.p, b->recs, b->n, b->drop, &set);
    mg_buf fast = {0}, each = {0};
    int bad = 0;
    bool ok = mg_usage_copy_batch(&fast, b->data.p, b->recs, b->n, b->drop, &set);
    bool all = true;
    for (size_t i = 0; i < b->n && all; i++)
        if (!b->drop[i])
            all = mg_usage_copy_line(&each, i, b->data.p + b->recs[i].pos, b->recs[i].len);
    if (ok != all || fast.len != each.len || (fast.len && memcmp(fast.p, each.p, fast.len) != 0)) {
        fprintf(stderr, "  batch:\n%.*s  record by record:\n%.*s", (int)fast.len, fast.p, (int)each.len, each.p);
        bad++;
    }
    for (size_t i = 0; i < b->n; i++) {
        if (b->drop[i]) continue;
        mg_buf f = {0}, s = {0};
        bool a = mg_usage_copy_line(&f, i, b->data.p + b->recs[i].pos, b->recs[i].len);
        bool c = mg_usage_copy_line_slow(&s, i, b->data.p + b->recs[i].pos, b->recs[i].len);
        /* columns 15-17 are decimals: the journal's text vs %.17g, equal after numeric(20,10) */
        if (a != c) bad++;
        else if (a) {
            const char *pf = f.p, *ps = s.p;
            for (int col = 0; col < 25; col++) {
                const char *tf = memchr(pf, col == 24 ? '\n' : '\t', (size_t)(f.p + f.len - pf));
                const char *ts = memchr(ps, col == 24 ? '\n' : '\t', (size_t)(s.p + s.len - ps));
                if (!tf || !ts) { bad++; break; }
                if ((col < 15 || col > 17) && (tf - pf != ts - ps || memcmp(pf, ps, (size_t)(tf - pf)) != 0)) {
                    fprintf(stderr, "  column %d: %.*s vs %.*s\n", col, (int)(tf - pf), pf, (int)(ts - ps), ps);
                    bad++;
                }
                pf = tf + 1;
                ps = ts + 1;
            }
        }
        mg_buf_free(&f);
        mg_buf_free(&s);
    }
    mg_buf_free(&fast);
    mg_buf_free(&each);
    mg_usage_idset_free(&set);
    return bad;
}

T_TEST(batch_copy_lines_equal_record_by_record_for_every_field_shape)
{
    static batch b;
    int bad = 0;
    char id[32];
    for (int it = 0; it < 400 && bad <= 3; it++) {
        mg_buf_reset(&b.data);
        b.n = 0;
        size_t n = 1 + rnd() % 40;
        for (size_t i = 0; i < n; i++) {
            snprintf(id, sizeof id, rnd() % 10 ? "id-%u" : "i\\\"d-%u", (unsigned)(rnd() % 8));
            add_random_event(&b, id);
        }
        if (it % 4 == 0) {   /* foreign records among them */
            add_raw(&b, "{\"request_id\":\"x\"}", 18);
            add_raw(&b, "{\"request_id\": \"x\"}", 19);
            add_raw(&b, "not json", 8);
        }
        bad += check_batch(&b);
    }
    mg_buf_free(&b.data);
    T_EQ_INT(bad, 0);
}

/* A start whose final's record is in the encoder's key order but has a
 * value only the general walk sees as a non-string: ts, request_id or
 * incomplete null, or an id with escapes -- the coalescing still follows
 * its definition (only a string id and a boolean incomplete classify). */
T_TEST(coalesce_on_encoder_shaped_records_with_odd_values)
{
    static batch b;
    const char *tail = ",\"subject\":null,\"email\":null,\"roles\":null,\"key_id\":null,\"cost_center\":null,"
                       "\"model\":null,\"served_model\":null,\"provider\":null,\"upstream_model\":null,\"status\":0,"
                       "\"prompt_tokens\":1,\"completion_tokens\":0,\"cost_usd\":0.0000000000,"
                       "\"input_per_mtok\":0.0000000000,\"output_per_mtok\":0.0000000000,\"latency_ms\":0,"
                       "\"stream\":false,\"estimated\":false,\"client_gone\":false,\"incomplete\":";
    char rec[1024];
    struct { const char *ts, *id, *inc_start, *inc_final; int drops; } cases[] = {
        {"\"2026-01-01T00:00:00.000Z\"", "\"r\"", "true", "false", 1},
        {"null", "\"r\"", "true", "false", 0},
        {"\"2026-01-01T00:00:00.000Z\"", "null", "true", "false", 0},
        {"\"2026-01-01T00:00:00.000Z\"", "\"r\"", "true", "null", 0},
        {"\"2026-01-01T00:00:00.000Z\"", "\"r\"", "null", "false", 0},
        {"\"2026-01-01T00:00:00.000Z\"", "\"r\\\"q\"", "true", "false", 1},
        {"\"2026-01-01T00:00:00.000Z\"", "\"r\\u0041\"", "true", "false", 1},
        {"\"2026-01-01T00:00:00\\u002e000Z\"", "\"r\"", "true", "false", 1},
    };
    for (size_t k = 0; k < MG_ARRAY_LEN(cases); k++) {
        mg_buf_reset(&b.data);
        b.n = 0;
        for (int fin = 0; fin < 2; fin++) {
            int n = snprintf(rec, sizeof rec, "{\"ts\":%s,\"request_id\":%s%s%s,\"decision\":null,\"error_code\":null}",
                             cases[k].ts, cases[k].id, tail, fin ? cases[k].inc_final : cases[k].inc_start);
            add_raw(&b, rec, (size_t)n);
        }
        mg_usage_idset set = {0};
        T_EQ_INT(mg_usage_coalesce(b.data.p, b.recs, b.n, b.drop, &set), cases[k].drops);
        T_EQ_INT(b.drop[0], cases[k].drops);
        T_CHECK(!b.drop[1]);
        mg_usage_idset_free(&set);
        T_EQ_INT(check_batch(&b), 0);
    }
    mg_buf_free(&b.data);
}

T_MAIN("usage_fast",
       T_CASE(crc32_every_length_and_alignment), T_CASE(escaping_every_byte_at_every_position),
       T_CASE(batch_copy_lines_equal_record_by_record_for_every_field_shape),
       T_CASE(coalesce_on_encoder_shaped_records_with_odd_values))
