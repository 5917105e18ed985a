/* modelgate — usage journal: per-worker append-only segment files.
 *
 * Why a local journal: the request path must never wait for PostgreSQL, and
 * a SIGKILL right after the answer must not lose the bill. A record is
 * durable against process death as soon as write() returns (the page cache
 * belongs to the kernel); the sync thread fdatasyncs every segment that grew
 * every 100 ms, so a power loss or kernel crash can lose at most the last
 * ~100 ms of records. Each worker owns its own segment, so the hot path takes
 * an uncontended mutex, encodes into a reused buffer and makes one write().
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "usage/usage_int.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEGMENT_MAX_DEFAULT (16u << 20)
#define SYNC_TICK_MS 100
#define PROBE_BYTES (1u << 20)
#define DRAIN_MS 5000

static mg_usage_ledger *g_ledger;

static void free_prices(mg_usage_price *p, size_t n);

/* ---- codec ---------------------------------------------------------------- */

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, init and final xor
 * 0xFFFFFFFF: the same as zlib's crc32). The values never change (old
 * journals must replay); only the way they are computed does:
 *   - with PCLMULQDQ (checked at run time), 64 bytes a step by carry-less
 *     multiplication ("folding"), ~0.3 instructions a byte instead of ~2.9;
 *   - otherwise, and for the last < 16 bytes, slice-by-8 tables.
 * tests/unit/test_usage_fast.c compares both with the bytewise definition
 * at every length 0..2048 and several alignments. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_use_clmul;

/* The raw table update: state c (no init/final xor) over s[0..n). */
static uint32_t crc_tables(uint32_t c, const uint8_t *s, size_t n)
{
    while (n >= 8) {
        /* byte loads, so neither alignment nor host byte order matters */
        uint32_t lo = c ^ ((uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24);
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
            crc_table[4][lo >> 24] ^ crc_table[3][s[4]] ^ crc_table[2][s[5]] ^ crc_table[1][s[6]] ^
            crc_table[0][s[7]];
        s += 8;
        n -= 8;
    }
    while (n--)
        c = crc_table[0][(c ^ *s++) & 0xFF] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <wmmintrin.h>
#define MG_CRC_CLMUL 1

/* The folding, from the algebra (all polynomials over GF(2), P the CRC-32
 * polynomial x^32 + ... + 1, 0x104C11DB7):
 * The reflected CRC reads bit 0 of byte 0 as the highest power, so 16
 * message bytes loaded little-endian into a 128-bit register X hold the
 * polynomial sum X[i] x^(127-i); its low qword h and high qword l are
 * 64-bit reflected values with X = h x^64 + l. A block X followed by D more
 * message bits contributes X x^D = h x^(D+64) + l x^D, and modulo P that is
 * h (x^(D+64) mod P) + l (x^D mod P): two 64 x 32-bit products of at most
 * 95 bits, which fit the 128-bit register the next block is xored into.
 * PCLMULQDQ of two reflected 64-bit values a, b yields the reflected
 * 128-bit value of x a b (bit k of the product is the power 126 - k, where
 * the register reads 127 - k), so the constants are x^(D+63) mod P and
 * x^(D-1) mod P, reflected into a 64-bit lane (power e at bit 63 - e).
 * Folding keeps the message congruent mod P, and never shortens it below
 * the 128 bits of the register, so at the end the register's 16 bytes plus
 * the unfolded tail are a message with the same CRC remainder: the tables
 * finish from state 0. The initial 0xFFFFFFFF is xored into the first four
 * message bytes, which is what the init value means. */
static __m128i crc_k512, crc_k128;   /* fold by 4 x 128 bits, by 128 bits */

static uint64_t crc_xpow_refl(unsigned k)   /* x^k mod P, reflected into 64 bits */
{
    uint64_t r = 1;   /* bit e: x^e, degree < 32 */
    for (unsigned i = 0; i < k; i++) {
        r <<= 1;
        if (r & (1ull << 32))
            r ^= 0x104C11DB7ull;
    }
    uint64_t out = 0;
    for (int e = 0; e < 32; e++)
        if (r >> e & 1)
            out |= 1ull << (63 - e);
    return out;
}

__attribute__((target("pclmul,sse2"))) static inline __m128i crc_fold(__m128i x, __m128i k)
{
    return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

/* n >= 64 */
__attribute__((target("pclmul,sse2"))) static uint32_t crc_clmul(const uint8_t *s, size_t n)
{
    const __m128i k512 = crc_k512, k128 = crc_k128;
    __m128i a0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)s), _mm_cvtsi32_si128(-1));
    __m128i a1 = _mm_loadu_si128((const __m128i *)(s + 16));
    __m128i a2 = _mm_loadu_si128((const __m128i *)(s + 32));
    __m128i a3 = _mm_loadu_si128((const __m128i *)(s + 48));
    s += 64;
    n -= 64;
    while (n >= 64) {
        a0 = _mm_xor_si128(crc_fold(a0, k512), _mm_loadu_si128((const __m128i *)s));
        a1 = _mm_xor_si128(crc_fold(a1, k512), _mm_loadu_si128((const __m128i *)(s + 16)));
        a2 = _mm_xor_si128(crc_fold(a2, k512), _mm_loadu_si128((const __m128i *)(s + 32)));
        a3 = _mm_xor_si128(crc_fold(a3, k512), _mm_loadu_si128((const __m128i *)(s + 48)));
        s += 64;
        n -= 64;
    }
    __m128i a = _mm_xor_si128(crc_fold(a0, k128), a1);
    a = _mm_xor_si128(crc_fold(a, k128), a2);
    a = _mm_xor_si128(crc_fold(a, k128), a3);
    while (n >= 16) {
        a = _mm_xor_si128(crc_fold(a, k128), _mm_loadu_si128((const __m128i *)s));
        s += 16;
        n -= 16;
    }
    uint8_t last[16];
    _mm_storeu_si128((__m128i *)last, a);
    return crc_tables(crc_tables(0, last, 16), s, n) ^ 0xFFFFFFFFu;
}
#endif

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = crc_table[0][crc_table[t - 1][i] & 0xFF] ^ (crc_table[t - 1][i] >> 8);
#ifdef MG_CRC_CLMUL
    /* lane 0 multiplies the low qword h (x^(D+63)), lane 1 the high one l (x^(D-1)) */
    crc_k512 = _mm_set_epi64x((long long)crc_xpow_refl(511), (long long)crc_xpow_refl(575));
    crc_k128 = _mm_set_epi64x((long long)crc_xpow_refl(127), (long long)crc_xpow_refl(191));
    __builtin_cpu_init();
    crc_use_clmul = __builtin_cpu_supports("pclmul");
#endif
}

/* Exposed for the tests (usage_int.h): the table path alone. */
uint32_t mg_usage_crc32_tables(const void *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
    return crc_tables(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
}

bool mg_usage_crc32_accelerated(void)
{
    pthread_once(&crc_once, crc_init);
    return crc_use_clmul;
}

uint32_t mg_usage_crc32(const void *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
#ifdef MG_CRC_CLMUL
    if (crc_use_clmul && n >= 64)
        return crc_clmul(p, n);
#endif
    return crc_tables(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
}

static const uint8_t MAGIC[4] = {0xFF, 'M', 'G', 'J'};

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
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

/* The encoder writes straight into memory reserved up front (worst case
 * computed from the string lengths) instead of one printf per field: the
 * printf version cost ~28 k instructions a record on the request path. The
 * bytes written are exactly the printf version's (tests/unit/
 * test_usage_encode.c keeps that version as the reference). */

/* 0: copy as is; 1: \-escape as \" or \\; 2: \u00XX; 3: not ASCII (check UTF-8) */
static const uint8_t JSON_CLASS[256] = {
    [0x00 ... 0x1F] = 2, ['"'] = 1, ['\\'] = 1, [0x7F] = 2, [0x80 ... 0xFF] = 3,
};

#define LIT(d, s) (memcpy((d), (s), sizeof(s) - 1), (d) + sizeof(s) - 1)

static char *put_u64(char *d, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *d++ = tmp[--n];
    return d;
}

static char *put_i64(char *d, int64_t v)
{
    if (v < 0) {
        *d++ = '-';
        return put_u64(d, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(d, (uint64_t)v);
}

/* Length of the prefix of s[0..n) that put_json_chars copies as is: bytes
 * 0x20..0x7E except '"' and '\\' (JSON_CLASS 0). Non-ASCII bytes end it too
 * (the byte loop checks their UTF-8); a string that is all plain, nearly
 * every one, is then a single memcpy. 16 bytes a step with SSE2; the last
 * partial step re-reads the final 16 bytes of the string (never past it),
 * shorter strings go 8 or 4 bytes a step the same way. */
static inline bool plain_swar8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    /* a byte is zero in y  <=>  (y - 1) & ~y has its high bit set */
#define MG_HASZERO(y) ((((y) - ones) & ~(y) & high) != 0)
    uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\'), del = x ^ (ones * 0x7F);
    bool special = (x & high) || ((x - ones * 0x20) & ~x & high) || MG_HASZERO(q) || MG_HASZERO(bs) ||
                   MG_HASZERO(del);
#undef MG_HASZERO
    return !special;
}

#ifdef __SSE2__
#include <emmintrin.h>
static inline unsigned special16(const char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    /* signed: bytes 0x80..0xFF are negative, so one compare covers < 0x20 and >= 0x80 */
    __m128i m = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                             _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                          _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\')),
                                                       _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7F)))));
    return (unsigned)_mm_movemask_epi8(m);
}
#endif

static size_t plain_prefix(const char *s, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    if (n >= 16) {
        for (; i + 16 <= n; i += 16) {
            unsigned m = special16(s + i);
            if (m) return i + (size_t)__builtin_ctz(m);
        }
        if (i == n) return n;
        unsigned m = special16(s + n - 16);   /* the bytes before i are plain */
        return m ? n - 16 + (size_t)__builtin_ctz(m) : n;
    }
#endif
    if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        if (plain_swar8(a) && plain_swar8(b)) return n;
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        if (plain_swar8((uint64_t)a << 32 | b)) return n;
    }
    while (i < n && JSON_CLASS[(unsigned char)s[i]] == 0) i++;
    return i;
}

/* JSON string body (no quotes); invalid UTF-8 bytes become U+FFFD so
 * PostgreSQL never rejects the row over an encoding error in, say, a subject
 * claim. Writes at most 6 bytes per input byte. */
static char *put_json_chars(char *d, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0;   /* start of the pending run of plain bytes */
    size_t i = plain_prefix(s, n);
    if (i == n) {
        memcpy(d, s, n);
        return d + n;
    }
    while (i < n) {
        uint8_t k = JSON_CLASS[u[i]];
        size_t l = 1;
        if (k == 0 || (k == 3 && (l = utf8_len(u + i, n - i)) > 0)) {
            i += l;
            continue;
        }
        memcpy(d, s + run, i - run);
        d += i - run;
        if (k == 1) {
            *d++ = '\\';
            *d++ = (char)u[i];
        } else if (k == 2) {
            d = LIT(d, "\\u00");
            *d++ = hex[u[i] >> 4];
            *d++ = hex[u[i] & 15];
        } else {
            d = LIT(d, "\\ufffd");
        }
        i++;
        run = i;
    }
    memcpy(d, s + run, n - run);
    return d + (n - run);
}

static char *put_strv(char *d, const char *s, size_t n)
{
    if (s == NULL)
        return LIT(d, "null");
    *d++ = '"';
    d = put_json_chars(d, s, n);
    *d++ = '"';
    return d;
}

/* "%.10f" without printf for the usual case: the value times 1e10 is
 * computed in double (1e10 is exact, so the product is within half an ulp
 * of the exact one); when that cannot straddle a rounding tie the digits
 * are the correctly rounded ones printf would print. Anything else (huge,
 * too close to a tie) goes through snprintf. At most 330 bytes. */
static char *put_fixed10(char *d, double v)
{
    double a = fabs(v);
    if (a < 1e5) {
        double s = a * 1e10, f = floor(s), frac = s - f;
        double margin = s * 0x1p-50 + 0x1p-60;
        if (fabs(frac - 0.5) > margin) {
            uint64_t r = (uint64_t)f + (frac > 0.5);
            if (signbit(v)) *d++ = '-';
            d = put_u64(d, r / 10000000000ull);
            *d++ = '.';
            uint64_t q = r % 10000000000ull;
            for (int i = 9; i >= 0; i--) {
                d[i] = (char)('0' + q % 10);
                q /= 10;
            }
            return d + 10;
        }
    }
    char tmp[400];
    int n = snprintf(tmp, sizeof tmp, "%.10f", v);
    if (n < 0 || (size_t)n >= sizeof tmp) n = 0;
    memcpy(d, tmp, (size_t)n);
    return d + n;
}

static char *put_num(char *d, double v)
{
    if (!isfinite(v)) return LIT(d, "null");
    return put_fixed10(d, v);
}

static char *put_bool(char *d, bool v)
{
    return v ? LIT(d, "true") : LIT(d, "false");
}

static void put2(char *d, int v) { d[0] = (char)('0' + v / 10); d[1] = (char)('0' + v % 10); }

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 bytes); civil date from days since the
 * epoch by Howard Hinnant's algorithm, no gmtime_r. Years outside 0..9999
 * (never a real request) take the snprintf path. */
static char *put_ts(char *d, int64_t ms)
{
    int64_t sec = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    int msec = (int)(ms - sec * 1000);
    int64_t days = sec >= 0 ? sec / 86400 : (sec - 86399) / 86400;
    int64_t sod = sec - days * 86400;
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int mday = (int)(doy - (153 * mp + 2) / 5 + 1);
    int mon = (int)(mp < 10 ? mp + 3 : mp - 9);
    int64_t year = yoe + era * 400 + (mon <= 2);
    if (year < 0 || year > 9999) {
        time_t t = (time_t)sec;
        struct tm tm;
        char tmp[96];
        gmtime_r(&t, &tm);
        int n = snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, msec);
        if (n < 0 || (size_t)n >= sizeof tmp) n = 0;
        memcpy(d, tmp, (size_t)n);
        return d + n;
    }
    put2(d, (int)(year / 100)); put2(d + 2, (int)(year % 100));
    d[4] = '-'; put2(d + 5, mon); d[7] = '-'; put2(d + 8, mday); d[10] = 'T';
    put2(d + 11, (int)(sod / 3600)); d[13] = ':'; put2(d + 14, (int)(sod / 60 % 60)); d[16] = ':';
    put2(d + 17, (int)(sod % 60)); d[19] = '.';
    d[20] = (char)('0' + msec / 100); put2(d + 21, msec % 100); d[23] = 'Z';
    return d + 24;
}

/* decision is documented as a JSON array; anything else is kept as text so
 * a caller bug cannot turn the whole record into a dead letter. */
static bool decision_raw(const char *d, size_t n)
{
    if (n < 2 || d[0] != '[' || d[n - 1] != ']')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)d[i] < 0x20 || (unsigned char)d[i] >= 0x80)
            return false;
    return true;
}

mg_rc mg_usage_encode(mg_buf *b, const mg_usage_event *ev)
{
    if (ev == NULL || ev->request_id == NULL || ev->request_id[0] == '\0')
        return MG_ERR;
    const char *sv[10] = {ev->request_id, ev->subject, ev->email, ev->roles, ev->key_id,
                          ev->cost_center, ev->model, ev->served_model, ev->provider, ev->upstream_model};
    size_t sl[10], total = 0;
    for (int i = 0; i < 10; i++) {
        sl[i] = sv[i] ? strlen(sv[i]) : 0;
        total += sl[i];
    }
    size_t dl = ev->decision ? strlen(ev->decision) : 0;
    size_t el = ev->error_code ? strlen(ev->error_code) : 0;
    total += dl + el;
    /* 6 bytes out per byte in at worst, + keys, numbers, three doubles */
    if (total > MG_JREC_MAX)
        return MG_ERR;
    size_t start = b->len;
    if (mg_buf_reserve(b, MG_JREC_HDR + 6 * total + 2048) != MG_OK)
        return MG_ENOMEM;
    char *d0 = b->p + start, *d = d0 + MG_JREC_HDR;
    static const char *const keys[10] = {",\"request_id\":", ",\"subject\":", ",\"email\":", ",\"roles\":",
                                         ",\"key_id\":", ",\"cost_center\":", ",\"model\":",
                                         ",\"served_model\":", ",\"provider\":", ",\"upstream_model\":"};
    d = LIT(d, "{\"ts\":\"");
    d = put_ts(d, ev->ts_ms);
    *d++ = '"';
    for (int i = 0; i < 10; i++) {
        size_t kl = strlen(keys[i]);
        memcpy(d, keys[i], kl);
        d = put_strv(d + kl, sv[i], sl[i]);
    }
    d = LIT(d, ",\"status\":");
    d = put_i64(d, ev->status);
    d = LIT(d, ",\"prompt_tokens\":");
    d = put_i64(d, ev->prompt_tokens);
    d = LIT(d, ",\"completion_tokens\":");
    d = put_i64(d, ev->completion_tokens);
    d = LIT(d, ",\"cost_usd\":");
    d = put_num(d, ev->cost_usd);
    d = LIT(d, ",\"input_per_mtok\":");
    d = put_num(d, ev->input_per_mtok);
    d = LIT(d, ",\"output_per_mtok\":");
    d = put_num(d, ev->output_per_mtok);
    d = LIT(d, ",\"latency_ms\":");
    d = put_i64(d, ev->latency_ms);
    d = LIT(d, ",\"stream\":");
    d = put_bool(d, ev->stream);
    d = LIT(d, ",\"estimated\":");
    d = put_bool(d, ev->estimated);
    d = LIT(d, ",\"client_gone\":");
    d = put_bool(d, ev->client_gone);
    d = LIT(d, ",\"incomplete\":");
    d = put_bool(d, ev->incomplete);
    d = LIT(d, ",\"decision\":");
    if (ev->decision && decision_raw(ev->decision, dl)) {
        memcpy(d, ev->decision, dl);
        d += dl;
    } else {
        d = put_strv(d, ev->decision, dl);
    }
    d = LIT(d, ",\"error_code\":");
    d = put_strv(d, ev->error_code, el);
    *d++ = '}';
    size_t plen = (size_t)(d - d0) - MG_JREC_HDR;
    if (plen > MG_JREC_MAX)
        return MG_ERR;
    uint8_t *h = (uint8_t *)d0;
    memcpy(h, MAGIC, 4);
    put32(h + 4, (uint32_t)plen);
    put32(h + 8, mg_usage_crc32(h + MG_JREC_HDR, plen));
    b->len = start + MG_JREC_HDR + plen;
    return MG_OK;
}

static size_t next_magic(const uint8_t *buf, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (buf[i] != MAGIC[0]) continue;
        size_t k = 1;
        while (k < 4 && i + k < n && buf[i + k] == MAGIC[k]) k++;
        if (k == 4 || i + k == n)  /* full magic, or a prefix cut by the buffer end */
            return i;
    }
    return n;
}

mg_jdec mg_usage_decode(const uint8_t *buf, size_t n, bool at_eof,
                        const uint8_t **payload, size_t *plen, size_t *used)
{
    *used = 0;
    size_t have = n < 4 ? n : 4;
    if (memcmp(buf, MAGIC, have) != 0)
        goto corrupt;
    if (n < MG_JREC_HDR)
        goto incomplete;
    uint32_t len = get32(buf + 4);
    if (len < 2 || len > MG_JREC_MAX)
        goto corrupt;
    if (n - MG_JREC_HDR < len)
        goto incomplete;
    if (mg_usage_crc32(buf + MG_JREC_HDR, len) != get32(buf + 8))
        goto corrupt;
    *payload = buf + MG_JREC_HDR;
    *plen = len;
    *used = MG_JREC_HDR + len;
    return MG_JDEC_OK;
incomplete:
    if (!at_eof)
        return MG_JDEC_NEED_MORE;
corrupt:
    /* At EOF a record cut short is garbage; a later magic may still start a
     * good record (a torn write followed by appends in another life). */
    *used = next_magic(buf, n);
    return MG_JDEC_CORRUPT;
}

uint64_t mg_usage_seg_seq(const char *name)
{
    if (strncmp(name, "seg-", 4) != 0 || strlen(name) < 4 + 16 + 2 + 4)
        return 0;
    uint64_t seq = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[4 + i];
        if (c < '0' || c > '9') return 0;
        seq = seq * 10 + (uint64_t)(c - '0');
    }
    const char *rest = name + 20;
    size_t rl = strlen(rest);
    if (strncmp(rest, "-w", 2) != 0 || rl < 6 || strcmp(rest + rl - 4, ".mgj") != 0)
        return 0;
    return seq;
}

void mg_usage_seg_name(char out[MG_JSEG_NAME_LEN], uint64_t seq, size_t worker)
{
    snprintf(out, MG_JSEG_NAME_LEN, "seg-%016llu-w%03u.mgj", (unsigned long long)seq,
             (unsigned)(worker % 1000));
}

mg_rc mg_usage_parse_date(const char *s, int64_t *days)
{
    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return MG_ERR;
    int v[3] = {0, 0, 0};
    const int pos[3] = {0, 5, 8}, len[3] = {4, 2, 2};
    for (int f = 0; f < 3; f++)
        for (int i = 0; i < len[f]; i++) {
            char c = s[pos[f] + i];
            if (c < '0' || c > '9') return MG_ERR;
            v[f] = v[f] * 10 + (c - '0');
        }
    int y = v[0], m = v[1], d = v[2];
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] + (m == 2 && leap))
        return MG_ERR;
    /* days from civil (Howard Hinnant's algorithm) */
    int64_t yy = y - (m <= 2);
    int64_t era = yy / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    *days = era * 146097 + doe - 719468;
    return MG_OK;
}

int64_t mg_usage_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- segments ------------------------------------------------------------- */

static int open_segment(mg_usage_ledger *L, size_t worker, uint64_t *seq)
{
    char name[MG_JSEG_NAME_LEN];
    *seq = atomic_fetch_add(&L->next_seq, 1);
    mg_usage_seg_name(name, *seq, worker);
    int fd = openat(L->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0)
        atomic_store(&L->dir_dirty, true);
    return fd;
}

/* Called with w->mu held. The old segment is handed to the sync thread for
 * its last fdatasync so the hot path never waits for the disk. */
static mg_rc rotate(mg_usage_ledger *L, size_t idx)
{
    mg_usage_worker *w = &L->w[idx];
    uint64_t seq;
    int fd = open_segment(L, idx, &seq);
    if (fd < 0)
        return MG_ERR;
    if (w->retired_fd >= 0) {  /* the sync thread has not caught up: rare */
        fdatasync(w->retired_fd);
        close(w->retired_fd);
    }
    w->retired_fd = w->fd;
    w->fd = fd;
    w->seq = seq;
    w->size = 0;
    w->synced = 0;
    w->broken = false;
    return MG_OK;
}

bool mg_usage_seg_active(mg_usage_ledger *L, uint64_t seq, uint64_t *limit)
{
    for (size_t i = 0; i < L->nworkers; i++) {
        mg_usage_worker *w = &L->w[i];
        pthread_mutex_lock(&w->mu);
        bool hit = w->seq == seq;
        if (hit) *limit = w->size;
        pthread_mutex_unlock(&w->mu);
        if (hit) return true;
    }
    return false;
}

mg_rc mg_usage_record(size_t worker, const mg_usage_event *ev)
{
    mg_usage_ledger *L = g_ledger;
    if (L == NULL)
        return MG_OK;
    if (worker >= L->nworkers)
        return MG_ERR;
    mg_usage_worker *w = &L->w[worker];
    mg_rc rc = MG_ERR;
    pthread_mutex_lock(&w->mu);
    mg_buf_reset(&w->buf);
    if (mg_usage_encode(&w->buf, ev) != MG_OK)
        goto out;
    if ((w->broken || w->size >= L->segment_max) && rotate(L, worker) != MG_OK)
        goto fail;
    size_t off = 0;
    while (off < w->buf.len) {
        ssize_t n = write(w->fd, w->buf.p + off, w->buf.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    if (off == w->buf.len) {
        w->size += off;
        atomic_fetch_add(&L->written, 1);
        atomic_fetch_add(&L->journal_bytes, off);
        rc = MG_OK;
        goto out;
    }
    /* Torn write (disk full): cut it off so later appends stay readable; if
     * that fails too, the next record starts a fresh segment and replay
     * skips the torn tail by its length/CRC. */
    if (off > 0 && ftruncate(w->fd, (off_t)w->size) != 0)
        w->broken = true;
fail:
    atomic_fetch_add(&L->write_errors, 1);
    if (atomic_exchange(&L->healthy, false))
        mg_log_error("usage journal write failed in %s: %s; failing closed", L->dir, strerror(errno ? errno : EIO));
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

bool mg_usage_healthy(void)
{
    mg_usage_ledger *L = g_ledger;
    return L == NULL || atomic_load(&L->healthy);
}

void mg_usage_stats(struct mg_usage_stats *o)
{
    memset(o, 0, sizeof *o);
    mg_usage_ledger *L = g_ledger;
    if (L == NULL) {
        o->healthy = true;
        return;
    }
    o->journal_bytes = atomic_load(&L->journal_bytes);
    o->pending_bytes = atomic_load(&L->pending_bytes);
    o->records_written = atomic_load(&L->written);
    uint64_t acked = atomic_load(&L->acked_ours);
    o->records_pending = o->records_written > acked ? o->records_written - acked : 0;
    o->records_shipped = atomic_load(&L->shipped);
    o->records_duplicate = atomic_load(&L->duplicate);
    o->dead_letters = atomic_load(&L->dead);
    o->corrupt_bytes = atomic_load(&L->corrupt);
    o->write_errors = atomic_load(&L->write_errors);
    o->last_ship_ms = atomic_load(&L->last_ship_ms);
    o->db_connected = atomic_load(&L->db_connected);
    o->healthy = atomic_load(&L->healthy);
}

/* ---- sync thread: group fsync, DB watchdog, disk probe ------------------- */

static void sync_workers(mg_usage_ledger *L)
{
    for (size_t i = 0; i < L->nworkers; i++) {
        mg_usage_worker *w = &L->w[i];
        int fd = -1, retired;
        pthread_mutex_lock(&w->mu);
        retired = w->retired_fd;
        w->retired_fd = -1;
        uint64_t size = w->size;
        if (size != w->synced)
            fd = dup(w->fd);
        pthread_mutex_unlock(&w->mu);
        if (retired >= 0) {
            fdatasync(retired);
            close(retired);
        }
        if (fd >= 0) {
            fdatasync(fd);
            close(fd);
            pthread_mutex_lock(&w->mu);
            if (w->size >= size) w->synced = size;
            pthread_mutex_unlock(&w->mu);
        }
    }
    if (atomic_exchange(&L->dir_dirty, false))
        fsync(L->dirfd);
}

/* After a failed write the gateway stops sending traffic, so no write will
 * tell us the disk is back: reserve real blocks in a probe file instead. */
static void probe_disk(mg_usage_ledger *L)
{
    int fd = openat(L->dirfd, ".probe", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    int err = posix_fallocate(fd, 0, PROBE_BYTES);
    close(fd);
    unlinkat(L->dirfd, ".probe", 0);
    if (err == 0) {
        atomic_store(&L->healthy, true);
        mg_log_warn("usage journal in %s is writable again", L->dir);
    }
}

static void watchdog(mg_usage_ledger *L)
{
    uint64_t now = mg_now_ms();
    pthread_mutex_lock(&L->db_mu);
    if (L->db_sock >= 0 && L->db_deadline_ms && now > L->db_deadline_ms) {
        /* A hung backend (SIGSTOP, dead network) would block libpq forever;
         * shutting the socket makes the call fail so the shipper reconnects. */
        mg_log_warn("usage shipper: database call overdue, dropping the connection");
        shutdown(L->db_sock, SHUT_RDWR);
        L->db_deadline_ms = 0;
    }
    pthread_mutex_unlock(&L->db_mu);
}

static void *sync_main(void *arg)
{
    mg_usage_ledger *L = arg;
    uint64_t last_probe = 0;
    for (;;) {
        pthread_mutex_lock(&L->mu);
        bool stop = L->stop_sync;
        if (!stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += SYNC_TICK_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&L->cv, &L->mu, &ts);
            stop = L->stop_sync;
        }
        pthread_mutex_unlock(&L->mu);
        sync_workers(L);
        watchdog(L);
        if (!atomic_load(&L->healthy) && mg_now_ms() - last_probe >= 1000) {
            last_probe = mg_now_ms();
            probe_disk(L);
        }
        if (stop)
            return NULL;
    }
}

/* ---- start / stop --------------------------------------------------------- */

static mg_rc mkdir_p(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return MG_ERR;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return MG_ERR;
        tmp[i] = c;
    }
    return MG_OK;
}

static void ledger_free(mg_usage_ledger *L)
{
    if (L == NULL)
        return;
    for (size_t i = 0; L->w && i < L->nworkers; i++) {
        mg_usage_worker *w = &L->w[i];
        if (w->retired_fd >= 0) { fdatasync(w->retired_fd); close(w->retired_fd); }
        if (w->fd >= 0) { fdatasync(w->fd); close(w->fd); }
        mg_buf_free(&w->buf);
        pthread_mutex_destroy(&w->mu);
    }
    if (L->dirfd >= 0) { fsync(L->dirfd); close(L->dirfd); }
    if (L->lockfd >= 0) close(L->lockfd);
    free_prices(L->prices, L->nprices);
    free(L->w);
    free(L->dir);
    free(L->conninfo);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv);
    pthread_mutex_destroy(&L->db_mu);
    free(L);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return dflt;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    return (errno || *end || v == 0) ? dflt : (uint64_t)v;
}

static void free_prices(mg_usage_price *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].model);
    free(p);
}

/* The config's priced models as a new array (caller frees with free_prices). */
static mg_rc copy_prices(const mg_config *cfg, mg_usage_price **out, size_t *nout)
{
    mg_usage_price *v = calloc(cfg->nmodels ? cfg->nmodels : 1, sizeof *v);
    size_t n = 0;
    if (v == NULL)
        return MG_ENOMEM;
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const mg_cfg_model *m = &cfg->models[i];
        if (!m->has_price)
            continue;
        mg_usage_price *p = &v[n];
        if ((p->model = strdup(m->name)) == NULL) {
            free_prices(v, n);
            return MG_ENOMEM;
        }
        p->in = m->input_per_mtok;
        p->out = m->output_per_mtok;
        n++;
    }
    *out = v;
    *nout = n;
    return MG_OK;
}

static bool same_prices(const mg_usage_price *a, size_t na, const mg_usage_price *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].model, b[i].model) != 0 || a[i].in != b[i].in || a[i].out != b[i].out)
            return false;
    return true;
}

void mg_usage_prices_update(const mg_config *cfg, uint64_t generation, int64_t effective_ms)
{
    mg_usage_ledger *L = g_ledger;
    if (L == NULL)
        return;
    mg_usage_price *v;
    size_t n;
    if (copy_prices(cfg, &v, &n) != MG_OK) {
        mg_log_error("usage ledger: out of memory recording new prices");
        return;
    }
    pthread_mutex_lock(&L->mu);
    bool changed = false;
    if (generation > L->cfg_gen) {
        L->cfg_gen = generation;
        if (!same_prices(L->prices, L->nprices, v, n)) {
            mg_usage_price *old = L->prices;
            size_t nold = L->nprices;
            L->prices = v;
            L->nprices = n;
            v = old;
            n = nold;
            L->prices_eff_ms = effective_ms;
            L->prices_gen++;
            changed = true;
            pthread_cond_broadcast(&L->cv);   /* the shipper records them now, not at its next batch */
        }
    }
    pthread_mutex_unlock(&L->mu);
    free_prices(v, n);
    if (changed)
        mg_log_info("usage ledger: prices changed (config generation %llu)", (unsigned long long)generation);
}

static uint64_t max_seq_in_dir(int dirfd)
{
    uint64_t max = 0;
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0) close(fd);
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t s = mg_usage_seg_seq(de->d_name);
        if (s > max) max = s;
    }
    closedir(d);
    return max;
}

mg_rc mg_usage_start(const mg_config *cfg, size_t nworkers, mg_buf *errs)
{
    if (g_ledger != NULL) {
        mg_buf_printf(errs, "usage ledger already started\n");
        return MG_ERR;
    }
    if (cfg->journal_dir == NULL || nworkers == 0) {
        mg_buf_printf(errs, "usage ledger: usage.journal_dir is not set\n");
        return MG_ERR;
    }
    mg_usage_ledger *L = calloc(1, sizeof *L);
    if (L == NULL)
        return MG_ENOMEM;
    L->dirfd = L->lockfd = L->db_sock = -1;
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv, NULL);
    pthread_mutex_init(&L->db_mu, NULL);
    atomic_store(&L->healthy, true);
    L->segment_max = env_u64("MODELGATE_JOURNAL_SEGMENT_BYTES", SEGMENT_MAX_DEFAULT);
    L->db_timeout_ms = (uint32_t)env_u64("MODELGATE_LEDGER_DB_TIMEOUT_MS", 30000);
    L->dir = strdup(cfg->journal_dir);
    L->conninfo = cfg->database_url ? strdup(cfg->database_url) : NULL;
    L->w = calloc(nworkers, sizeof *L->w);
    L->prices_gen = 1;
    L->cfg_gen = 0;
    L->prices_eff_ms = mg_usage_wall_ms();
    if (L->dir == NULL || (cfg->database_url && L->conninfo == NULL) || L->w == NULL ||
        copy_prices(cfg, &L->prices, &L->nprices) != MG_OK) {
        ledger_free(L);
        return MG_ENOMEM;
    }
    L->nworkers = nworkers;
    for (size_t i = 0; i < nworkers; i++) {
        L->w[i].fd = L->w[i].retired_fd = -1;
        pthread_mutex_init(&L->w[i].mu, NULL);
    }
    if (mkdir_p(L->dir) != MG_OK ||
        (L->dirfd = open(L->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        mg_buf_printf(errs, "usage ledger: cannot create journal_dir %s: %s\n", L->dir, strerror(errno));
        goto fail;
    }
    L->lockfd = openat(L->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (L->lockfd < 0 || flock(L->lockfd, LOCK_EX | LOCK_NB) != 0) {
        mg_buf_printf(errs, "usage ledger: journal_dir %s is in use by another process\n", L->dir);
        goto fail;
    }
    /* New segments after a restart: a torn tail from a crash stays at the
     * end of a closed segment, where replay can skip it safely. */
    L->first_seq = max_seq_in_dir(L->dirfd) + 1;
    atomic_store(&L->next_seq, L->first_seq);
    for (size_t i = 0; i < nworkers; i++) {
        if ((L->w[i].fd = open_segment(L, i, &L->w[i].seq)) < 0) {
            mg_buf_printf(errs, "usage ledger: cannot create a segment in %s: %s\n", L->dir, strerror(errno));
            goto fail;
        }
    }
    fsync(L->dirfd);
    if (pthread_create(&L->sync_thr, NULL, sync_main, L) != 0)
        goto fail_thread;
    L->sync_started = true;
    if (pthread_create(&L->ship_thr, NULL, mg_usage_ship_main, L) != 0)
        goto fail_thread;
    L->ship_started = true;
    g_ledger = L;
    return MG_OK;
fail_thread:
    mg_buf_printf(errs, "usage ledger: cannot start threads\n");
fail:
    if (L->sync_started) {
        pthread_mutex_lock(&L->mu);
        L->stop_sync = true;
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
        pthread_join(L->sync_thr, NULL);
    }
    ledger_free(L);
    return MG_ERR;
}

void mg_usage_stop(void)
{
    mg_usage_ledger *L = g_ledger;
    if (L == NULL)
        return;
    pthread_mutex_lock(&L->mu);
    L->drain_deadline_ms = mg_now_ms() + DRAIN_MS;
    L->stop_ship = true;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    if (L->ship_started)
        pthread_join(L->ship_thr, NULL);
    pthread_mutex_lock(&L->mu);
    L->stop_sync = true;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    if (L->sync_started)
        pthread_join(L->sync_thr, NULL);
    g_ledger = NULL;
    ledger_free(L);
}
