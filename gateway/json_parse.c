/* modelgate — a strict JSON parser that builds cJSON trees.
 *
 * cJSON's own parser spent ~50 instructions per byte on our request bodies
 * and replies (a locale lookup and strtod for every number, two passes and
 * a copy for every string); it was the largest single cost of the full
 * request path. This one reads RFC 8259 JSON in one pass and builds the
 * very same tree (same node types, valueint/valuedouble, child->prev
 * pointing at the last child as cJSON 1.7 keeps it), allocated with the
 * allocator cJSON_Delete frees with, so every other piece of code keeps
 * using the cJSON API on it.
 *
 * Where it differs from cJSON, it is stricter: numbers must follow the
 * JSON grammar ("01", "1." and "-" are refused), only the four JSON
 * whitespace bytes separate tokens, and a string may not contain \u0000
 * (nor the document a raw NUL byte): cJSON would cut the string there, so
 * a policy filter reading the tree would see less than an upstream reading
 * the same bytes.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "json.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_DEPTH 1000   /* cJSON's CJSON_NESTING_LIMIT: the same documents nest */

typedef struct {
    const unsigned char *p, *end;
    const unsigned char *start;   /* the document: all of [start, end) may be read */
    int depth;
    bool allow_nul;   /* upstream data: cut the string there, as cJSON does */
    const char *why;
    /* mg_json_each_string: nothing is built (item is NULL) */
    mg_json_string_fn each;
    void *arg;
    mg_buf *scratch;
} jp;

static void skip_ws_run(jp *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* Most calls stop at once on a byte above ' ': one compare, inlined, for those. */
static inline void skip_ws(jp *s)
{
    if (s->p < s->end && *s->p <= ' ')
        skip_ws_run(s);
}

static bool fail(jp *s, const char *why)
{
    if (s->why == NULL)
        s->why = why;
    return false;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    return v;
}

static size_t put_utf8(unsigned char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

#if defined(__SSE2__)
/* Bit i set where p[i] is '"' or '\\', for the 16 bytes at p. */
static inline unsigned special16(const unsigned char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i m = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
    return (unsigned)_mm_movemask_epi8(m);
}

/* The first '"' or '\\' in [p, end), or end. Prompts are long runs of
 * plain text, so 32 bytes per step; a tail shorter than 16 bytes is read
 * with one load that stays inside the document [s->start, s->end) (from p
 * forward when the document goes on, else ending at end) and masked to
 * [p, end), so short keys cost no byte loop either. */
static const unsigned char *find_special(const jp *s, const unsigned char *p, const unsigned char *end)
{
    while (end - p >= 32) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
        __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
        __m128i ma = _mm_or_si128(_mm_cmpeq_epi8(a, q), _mm_cmpeq_epi8(a, bs));
        __m128i mb = _mm_or_si128(_mm_cmpeq_epi8(b, q), _mm_cmpeq_epi8(b, bs));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(ma, mb));
        if (m) {
            m = (unsigned)_mm_movemask_epi8(ma) | (unsigned)_mm_movemask_epi8(mb) << 16;
            return p + __builtin_ctz(m);
        }
        p += 32;
    }
    if (end - p >= 16) {
        unsigned m = special16(p);
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
    size_t n = (size_t)(end - p);   /* 0..15 */
    unsigned m;
    if (n == 0)
        return end;
    if (s->end - p >= 16)
        m = special16(p) & ((1u << n) - 1);
    else if (end - s->start >= 16)
        m = special16(end - 16) >> (16 - n);
    else {
        while (p < end && *p != '"' && *p != '\\')
            p++;
        return p;
    }
    return m ? p + __builtin_ctz(m) : end;
}
#else
/* The first '"' or '\\' in [p, end), or end: eight bytes per step, as
 * prompts are long runs of plain text. (A byte is flagged exactly when it
 * is the first match; later flags may be false, so only the lowest counts.) */
static const unsigned char *find_special(const jp *s, const unsigned char *p, const unsigned char *end)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t v, q, b;
        memcpy(&v, p, 8);
        q = v ^ 0x2222222222222222ull;
        b = v ^ 0x5c5c5c5c5c5c5c5cull;
        uint64_t t = (((q - ones) & ~q) | ((b - ones) & ~b)) & highs;
        if (t)
            return p + (__builtin_ctzll(t) >> 3);
        p += 8;
    }
    while (p < end && *p != '"' && *p != '\\')
        p++;
    return p;
}
#endif

/* At the opening quote: finds the closing one; *escapes tells whether
 * anything between needs decoding. */
static bool string_bounds(jp *s, const unsigned char **b, const unsigned char **close, bool *escapes)
{
    const unsigned char *q = find_special(s, *b = ++s->p, s->end);
    *escapes = false;
    while (q < s->end && *q == '\\') {
        *escapes = true;
        if (s->end - q < 2)
            break;
        q = find_special(s, q + 2, s->end);
    }
    *close = q;
    if (q >= s->end || *q != '"')
        return fail(s, "unterminated string");
    return true;
}

/* Decodes [b, close) into out (room for close - b + 1 bytes: a decoded
 * string is never longer than its source); *n gets the decoded length. */
static bool decode(jp *s, const unsigned char *b, const unsigned char *close, unsigned char *out, size_t *n)
{
    unsigned char *o = out;
    const unsigned char *p = b;
    for (;;) {
        const unsigned char *r = find_special(s, p, close);
        memcpy(o, p, (size_t)(r - p));
        o += r - p;
        if (r >= close)
            break;
        unsigned char e = r[1];   /* r < close and escapes come in pairs: r[1] < close */
        p = r + 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            int hi = close - p >= 4 ? hex4(p) : -1;
            if (hi < 0)
                return fail(s, "bad escape in a string");
            p += 4;
            uint32_t cp = (uint32_t)hi;
            if (cp == 0 && !s->allow_nul)
                return fail(s, "a string contains \\u0000");
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(s, "bad escape in a string");   /* a low surrogate on its own */
            if (cp >= 0xd800 && cp <= 0xdbff) {
                int lo = close - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return fail(s, "bad escape in a string");
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
            }
            o += put_utf8(o, cp);
            break;
        }
        default:
            return fail(s, "bad escape in a string");
        }
    }
    *o = '\0';
    *n = (size_t)(o - out);
    return true;
}

/* At the opening quote: the decoded string, malloc'd. */
static char *parse_string(jp *s)
{
    const unsigned char *b, *close;
    bool escapes;
    if (!string_bounds(s, &b, &close, &escapes))
        return NULL;
    unsigned char *out = malloc((size_t)(close - b) + 1);
    size_t n = 0;
    if (out == NULL) {
        fail(s, "out of memory");
        return NULL;
    }
    if (!escapes) {   /* the common case */
        memcpy(out, b, (size_t)(close - b));
        out[close - b] = '\0';
    } else if (!decode(s, b, close, out, &n)) {
        free(out);
        return NULL;
    }
    s->p = close + 1;
    return (char *)out;
}

/* At the opening quote, building nothing: checks the string and, for a
 * value (key == false) with a callback, hands it over decoded. */
static bool skip_string(jp *s, bool key)
{
    const unsigned char *b, *close;
    bool escapes;
    if (!string_bounds(s, &b, &close, &escapes))
        return false;
    const char *text = (const char *)b;
    size_t n = (size_t)(close - b);
    if (escapes) {
        mg_buf_reset(s->scratch);
        if (mg_buf_reserve(s->scratch, n + 1) != MG_OK)
            return fail(s, "out of memory");
        if (!decode(s, b, close, (unsigned char *)s->scratch->p, &n))
            return false;
        text = s->scratch->p;
    }
    s->p = close + 1;
    if (!key && s->each && !s->each(s->arg, text, n))
        return fail(s, "stopped");
    return true;
}

/* Powers of ten a double holds exactly: with a mantissa below 2^53, one
 * multiplication or division by one of them is correctly rounded. */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static bool parse_number(jp *s, cJSON *item)
{
    const unsigned char *b = s->p, *p = b;
    bool neg = false;
    if (p < s->end && *p == '-') { neg = true; p++; }
    if (p >= s->end || *p < '0' || *p > '9')
        return fail(s, "bad number");
    uint64_t m = 0;
    int digits = 0, exp10 = 0;
    if (*p == '0') {
        p++;
        if (p < s->end && *p >= '0' && *p <= '9')
            return fail(s, "bad number (leading zero)");
    } else {
        while (p < s->end && *p >= '0' && *p <= '9') {
            if (digits < 19) { m = m * 10 + (uint64_t)(*p - '0'); if (m) digits++; }
            else exp10++;
            p++;
        }
    }
    if (p < s->end && *p == '.') {
        p++;
        if (p >= s->end || *p < '0' || *p > '9')
            return fail(s, "bad number");
        while (p < s->end && *p >= '0' && *p <= '9') {
            if (digits < 19) { m = m * 10 + (uint64_t)(*p - '0'); if (m) digits++; exp10--; }
            p++;
        }
    }
    bool has_exp = false;
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        has_exp = true;
        p++;
        if (p < s->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= s->end || *p < '0' || *p > '9')
            return fail(s, "bad number");
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    double v;
    if (!has_exp && m < (1ull << 53) && exp10 >= -22 && exp10 <= 22) {
        v = (double)m;
        v = exp10 < 0 ? v / pow10_exact[-exp10] : v * pow10_exact[exp10];
    } else {
        /* Rare (long mantissas, exponents): the C library's correctly
         * rounded conversion. modelgate never changes LC_NUMERIC, so the
         * decimal point is '.'. */
        char tmp[64], *buf = tmp;
        size_t n = (size_t)(p - b);
        if (n >= sizeof tmp && (buf = malloc(n + 1)) == NULL)
            return fail(s, "out of memory");
        memcpy(buf, b, n);
        buf[n] = '\0';
        v = strtod(buf, NULL);
        if (buf != tmp)
            free(buf);
        neg = false;   /* the sign was part of the text */
    }
    if (neg)
        v = -v;
    s->p = p;
    if (item == NULL)
        return true;
    item->type = cJSON_Number;
    item->valuedouble = v;
    item->valueint = v >= INT_MAX ? INT_MAX : v <= (double)INT_MIN ? INT_MIN : (int)v;
    return true;
}

static bool parse_value(jp *s, cJSON *item);

static bool lit(jp *s, const char *w, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0)
        return fail(s, "unexpected token");
    s->p += n;
    return true;
}

/* Appends in order and keeps head->prev at the tail, as cJSON does. */
static void append(cJSON *parent, cJSON **tail, cJSON *it)
{
    if (*tail == NULL) {
        parent->child = it;
    } else {
        (*tail)->next = it;
        it->prev = *tail;
    }
    *tail = it;
    parent->child->prev = it;
}

static bool parse_container(jp *s, cJSON *item, bool object)
{
    if (++s->depth > MAX_DEPTH)
        return fail(s, "nested too deeply");
    if (item)
        item->type = object ? cJSON_Object : cJSON_Array;
    unsigned char close = object ? '}' : ']';
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return true;
    }
    cJSON *tail = NULL;
    for (;;) {
        cJSON *it = NULL;
        if (item) {
            if ((it = calloc(1, sizeof(*it))) == NULL)
                return fail(s, "out of memory");
            append(item, &tail, it);
        }
        if (object) {
            if (s->p >= s->end || *s->p != '"')
                return fail(s, "expected a member name");
            if (it ? (it->string = parse_string(s)) == NULL : !skip_string(s, true))
                return false;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return fail(s, "expected ':'");
            s->p++;
            skip_ws(s);
        }
        if (!parse_value(s, it))
            return false;
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            skip_ws(s);
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            s->depth--;
            return true;
        }
        return fail(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

/* item NULL: check the value and build nothing (mg_json_each_string). */
static bool parse_value(jp *s, cJSON *item)
{
    if (s->p >= s->end)
        return fail(s, "unexpected end of input");
    cJSON dummy;
    if (item == NULL && *s->p != '{' && *s->p != '[') {
        if (*s->p == '"')
            return skip_string(s, false);
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return parse_number(s, NULL);
        item = &dummy;   /* literals: nothing allocated */
    }
    switch (*s->p) {
    case '{': return parse_container(s, item, true);
    case '[': return parse_container(s, item, false);
    case '"':
        item->type = cJSON_String;
        return (item->valuestring = parse_string(s)) != NULL;
    case 't':
        item->type = cJSON_True;
        item->valueint = 1;
        return lit(s, "true", 4);
    case 'f':
        item->type = cJSON_False;
        return lit(s, "false", 5);
    case 'n':
        item->type = cJSON_NULL;
        return lit(s, "null", 4);
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return parse_number(s, item);
        return fail(s, "unexpected token");
    }
}

static cJSON *parse(const char *text, size_t n, const char **why, bool prefix, const char **end, bool allow_nul)
{
    jp s = {.p = (const unsigned char *)text, .end = (const unsigned char *)text + n,
            .start = (const unsigned char *)text, .allow_nul = allow_nul};
    if (why)
        *why = NULL;
    if (text == NULL) {
        if (why) *why = "no input";
        return NULL;
    }
    /* A raw NUL would end a tree's string early just like \u0000; outside
     * strings it is not JSON anyway. memchr is cheap next to parsing. */
    if (!allow_nul && memchr(text, '\0', n) != NULL) {
        if (why) *why = "a NUL byte in the document";
        return NULL;
    }
    skip_ws(&s);
    cJSON *root = calloc(1, sizeof(*root));
    if (root == NULL) {
        if (why) *why = "out of memory";
        return NULL;
    }
    bool ok = parse_value(&s, root);
    if (ok && prefix) {
        if (end)
            *end = (const char *)s.p;
    } else if (ok) {
        skip_ws(&s);
        if (s.p != s.end)
            ok = fail(&s, "unexpected data after the JSON document");
    }
    if (!ok) {
        cJSON_Delete(root);
        if (why)
            *why = s.why ? s.why : "not valid JSON";
        return NULL;
    }
    return root;
}

cJSON *mg_json_parse(const char *text, size_t n, const char **why) { return parse(text, n, why, false, NULL, false); }

cJSON *mg_json_parse_prefix(const char *text, size_t n, const char **end) { return parse(text, n, NULL, true, end, true); }

cJSON *mg_json_parse_upstream(const char *text, size_t n) { return parse(text, n, NULL, false, NULL, true); }

bool mg_json_each_string(const char *text, size_t n, mg_buf *scratch, mg_json_string_fn fn, void *arg)
{
    if (text == NULL)
        return false;
    jp s = {.p = (const unsigned char *)text, .end = (const unsigned char *)text + n,
            .start = (const unsigned char *)text, .each = fn, .arg = arg, .scratch = scratch};
    if (memchr(text, '\0', n) != NULL)
        return false;   /* as mg_json_parse */
    skip_ws(&s);
    if (!parse_value(&s, NULL))
        return false;
    skip_ws(&s);
    return s.p == s.end;
}
