/* modelgate — built-in content detectors and the regex runner.
 *
 * Each detector is a short list of PCRE2 patterns (byte mode, JIT) that find
 * candidates cheaply, each with an optional C validator that decides what a
 * regex cannot: Luhn for cards, mod-97 and per-country length for IBANs, the
 * SSA's never-issued ranges for SSNs, "looks random" for generic secrets.
 * Patterns anchor on non-alphanumeric neighbours so parts of longer numbers
 * and identifiers are not reported.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/policy_int.h"

#include <hs.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---- regex runner ---- */

/* JIT matching honours the match limit; a hostile custom pattern gets an
 * error (callers fail closed) instead of burning a core. */
#define MATCH_LIMIT 200000

typedef struct re_tls {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
} re_tls;

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static __thread re_tls *tls_cache;

static void tls_free(void *p)
{
    re_tls *t = p;
    pcre2_match_data_free(t->md);
    pcre2_match_context_free(t->mctx);
    free(t);
}

static void tls_init_key(void) { pthread_key_create(&tls_key, tls_free); }

static re_tls *tls_get(void)
{
    if (tls_cache != NULL)
        return tls_cache;
    pthread_once(&tls_once, tls_init_key);
    re_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    /* one ovector pair is all we read; a pattern with groups still reports
     * its whole match (rc 0 = "ovector too small") */
    t->md = pcre2_match_data_create(1, NULL);
    t->mctx = pcre2_match_context_create(NULL);
    if (t->md == NULL || t->mctx == NULL) {
        tls_free(t);
        return NULL;
    }
    pcre2_set_match_limit(t->mctx, MATCH_LIMIT);
    pcre2_set_depth_limit(t->mctx, MATCH_LIMIT);
    pthread_setspecific(tls_key, t);
    tls_cache = t;
    return t;
}

pcre2_code *mg_policy_re_compile(const char *pattern, bool utf)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   utf ? PCRE2_UTF | PCRE2_UCP : 0, &code, &off, NULL);
    if (re != NULL)
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
    return re;
}

int mg_policy_re_next(const pcre2_code *re, const char *text, size_t len, size_t from,
                      bool utf_checked, size_t *s, size_t *e)
{
    re_tls *t = tls_get();
    if (t == NULL)
        return PCRE2_ERROR_NOMEMORY;
    if (from > len)
        return 0;
    /* pcre2_jit_match skips pcre2_match's option checks and dispatch
     * (~5 k instructions per 2 KB request); it never checks UTF, so it is only
     * used when no check is wanted. A pattern the JIT could not compile
     * answers BADOPTION and goes through the interpreter. */
    int rc = PCRE2_ERROR_JIT_BADOPTION;
    if (utf_checked)
        rc = pcre2_jit_match(re, (PCRE2_SPTR)text, len, from, 0, t->md, t->mctx);
    if (rc == PCRE2_ERROR_JIT_BADOPTION)
        rc = pcre2_match(re, (PCRE2_SPTR)text, len, from, utf_checked ? PCRE2_NO_UTF_CHECK : 0,
                         t->md, t->mctx);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0)
        return rc;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
    *s = ov[0];
    *e = ov[1];
    /* \K can put the start after the end in odd patterns; normalise */
    if (*s > *e)
        *s = *e;
    return 1;
}

void mg_policy_textinfo_init(mg_policy_textinfo *ti)
{
    ti->clusters_done = false;
    ti->overflow = false;
    ti->n_clusters = 0;
    ti->iban_full = true;
    ti->n_iban = 0;
    ti->assignment = -1;
    ti->lit_known = 0;
    ti->lit = 0;
    ti->lit_scanned = false;
}

/* ---- hit lists ---- */

void mg_policy_hits_init(mg_policy_hits *h)
{
    h->v = h->local;
    h->n = 0;
    h->cap = MG_ARRAY_LEN(h->local);
}

mg_rc mg_policy_hits_add(mg_policy_hits *h, size_t s, size_t e, const char *placeholder)
{
    if (h->n == h->cap) {
        size_t cap = h->cap * 2;
        mg_policy_hit *nv;
        if (h->v == h->local) {
            nv = malloc(cap * sizeof(*nv));
            if (nv != NULL)
                memcpy(nv, h->local, sizeof(h->local));
        } else {
            nv = realloc(h->v, cap * sizeof(*nv));
        }
        if (nv == NULL)
            return MG_ENOMEM;
        h->v = nv;
        h->cap = cap;
    }
    h->v[h->n++] = (mg_policy_hit){ s, e, placeholder };
    return MG_OK;
}

static int cmp_hit(const void *a, const void *b)
{
    const mg_policy_hit *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->end > y->end ? -1 : x->end < y->end; /* longer first */
}

void mg_policy_hits_normalize(mg_policy_hits *h)
{
    if (h->n < 2)
        return;
    qsort(h->v, h->n, sizeof(*h->v), cmp_hit);
    size_t k = 0;
    for (size_t i = 1; i < h->n; i++) {
        if (h->v[i].start <= h->v[k].end) {
            if (h->v[i].end > h->v[k].end)
                h->v[k].end = h->v[i].end;
        } else {
            h->v[++k] = h->v[i];
        }
    }
    h->n = k + 1;
}

void mg_policy_hits_free(mg_policy_hits *h)
{
    if (h->v != h->local)
        free(h->v);
    mg_policy_hits_init(h);
}

/* ---- validators ---- */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }

bool mg_policy_luhn_ok(const char *s, size_t n)
{
    int sum = 0, k = 0;
    for (size_t i = n; i-- > 0;) {
        if (s[i] == ' ' || s[i] == '-')
            continue;
        if (!is_digit(s[i]))
            return false;
        int d = s[i] - '0';
        if (k++ & 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return k > 0 && sum % 10 == 0;
}

/* Card: 13-19 digits, an issuer's first digit (2-6: Mastercard 2-series,
 * Amex/Diners/JCB, Visa, Mastercard, Discover/UnionPay), one kind of
 * separator, groups of at least 3 digits, Luhn. */
static bool card_ok(const char *t, size_t len, size_t *s, size_t *e)
{
    const char *p = t + *s;
    size_t n = *e - *s, digits = 0, group = 0;
    char sep = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_digit(p[i])) {
            digits++;
            group++;
            continue;
        }
        if ((sep && p[i] != sep) || group < 3)
            return false;
        sep = p[i];
        group = 0;
    }
    if (digits < 13 || digits > 19 || group < 3 || p[0] < '2' || p[0] > '6')
        return false;
    return mg_policy_luhn_ok(p, n);
}

/* SSA rules: area 000, 666 and 900-999 never issued; group 00 and serial
 * 0000 never issued; and the numbers famous from advertising (and the
 * SSA's own "123-45-6789" example) are not anyone's. */
bool mg_policy_ssn_ok(const char *p, size_t n)
{
    if (n != 11 || (p[3] != '-' && p[3] != ' ') || p[6] != p[3])
        return false;
    for (size_t i = 0; i < n; i++)
        if (i != 3 && i != 6 && !is_digit(p[i]))
            return false;
    int area = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    int group = (p[4] - '0') * 10 + (p[5] - '0');
    bool serial0 = p[7] == '0' && p[8] == '0' && p[9] == '0' && p[10] == '0';
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial0)
        return false;
    static const char *const famous[] = { "078051120", "219099999", "123456789" };
    char d[9] = { p[0], p[1], p[2], p[4], p[5], p[7], p[8], p[9], p[10] };
    for (size_t i = 0; i < MG_ARRAY_LEN(famous); i++)
        if (memcmp(d, famous[i], 9) == 0)
            return false;
    return true;
}

static bool ssn_ok(const char *t, size_t len, size_t *s, size_t *e)
{
    return mg_policy_ssn_ok(t + *s, *e - *s);
}

/* IBAN lengths by country (SWIFT registry). Unknown countries are not
 * IBANs: the table is what keeps "AB12 ..." product codes out. */
static const struct { char cc[3]; unsigned char len; } iban_len[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16},
    {"BG", 22}, {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28},
    {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24},
    {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18},
    {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23},
    {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32},
    {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24}, {"ME", 22},
    {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24},
    {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24},
    {"SC", 31}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28},
    {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

static int iban_country_len(char a, char b)
{
    a = (char)(a & ~0x20);
    b = (char)(b & ~0x20);
    for (size_t i = 0; i < MG_ARRAY_LEN(iban_len); i++)
        if (iban_len[i].cc[0] == a && iban_len[i].cc[1] == b)
            return iban_len[i].len;
    return -1;
}

/* Mod-97 over the rearranged IBAN (first four characters moved to the end,
 * letters as 10..35), digit by digit so no big integers are needed. */
static bool iban_mod97(const char *c, size_t n)
{
    unsigned r = 0;
    for (size_t k = 0; k < n; k++) {
        char ch = c[(k + 4) % n];
        if (is_digit(ch)) {
            r = (r * 10 + (unsigned)(ch - '0')) % 97;
        } else if (is_alpha(ch)) {
            unsigned v = (unsigned)((ch & ~0x20) - 'A') + 10;
            r = (r * 100 + v) % 97;
        } else {
            return false;
        }
    }
    return r == 1;
}

/* Collects the IBAN's characters from p (single spaces between them
 * allowed); returns bytes consumed or 0 when it is not one. */
static size_t iban_take(const char *p, size_t avail, char *out, size_t *n_out)
{
    if (avail < 4 || !is_alpha(p[0]) || !is_alpha(p[1]) || !is_digit(p[2]) || !is_digit(p[3]))
        return 0;
    int want = iban_country_len(p[0], p[1]);
    if (want < 0)
        return 0;
    size_t i = 0, n = 0;
    while (n < (size_t)want && i < avail) {
        if (p[i] == ' ' && n > 0 && i + 1 < avail && p[i - 1] != ' ') {
            i++;
            continue;
        }
        if (!is_alnum(p[i]))
            return 0;
        out[n++] = p[i++];
    }
    if (n != (size_t)want || (i < avail && is_alnum(p[i])))
        return 0;
    *n_out = n;
    return i;
}

bool mg_policy_iban_ok(const char *s, size_t n)
{
    char c[40];
    size_t cn = 0;
    size_t used = iban_take(s, n, c, &cn);
    return used == n && iban_mod97(c, cn);
}

static bool iban_ok(const char *t, size_t len, size_t *s, size_t *e)
{
    char c[40];
    size_t cn = 0;
    size_t used = iban_take(t + *s, len - *s, c, &cn);
    if (used == 0 || !iban_mod97(c, cn))
        return false;
    *e = *s + used;
    return true;
}

/* Phone: 8-15 digits in all (E.164 allows 15), parentheses balanced. */
static bool phone_intl_ok(const char *t, size_t len, size_t *s, size_t *e)
{
    int digits = 0, open = 0;
    for (size_t i = *s; i < *e; i++) {
        if (is_digit(t[i]))
            digits++;
        else if (t[i] == '(')
            open++;
        else if (t[i] == ')' && --open < 0)
            return false;
    }
    /* a trailing separator is not part of the number */
    while (*e > *s && !is_digit(t[*e - 1]) && t[*e - 1] != ')')
        (*e)--;
    return open == 0 && digits >= 8 && digits <= 15;
}

/* NANP: area code and exchange start with 2-9. */
static bool phone_us_ok(const char *t, size_t len, size_t *s, size_t *e)
{
    char d[11];
    int n = 0;
    for (size_t i = *s; i < *e && n < 11; i++)
        if (is_digit(t[i]))
            d[n++] = t[i];
    if (n == 11) {
        if (d[0] != '1')
            return false;
        memmove(d, d + 1, 10);
        n = 10;
    }
    return n == 10 && d[0] >= '2' && d[3] >= '2';
}

/* Generic "name = value" secrets: the value must look random (letters and
 * digits), not like an identifier or a call ("token = tokenizer.encode(x)"). */
static bool randomish_ok(const char *t, size_t len, size_t *s, size_t *e)
{
    bool digit = false, alpha = false;
    for (size_t i = *s; i < *e; i++) {
        digit |= is_digit(t[i]);
        alpha |= is_alpha(t[i]);
    }
    if (*e < len && t[*e] == '(')
        return false;
    return digit && alpha;
}

/* ---- detector table ---- */

typedef bool (*validator_fn)(const char *t, size_t len, size_t *s, size_t *e);

/* How a pattern is gated before PCRE2 runs. PCRE2's JIT costs about 3 ns
 * per byte for a pattern that starts with a character class; seven
 * detectors over every prompt would cost tens of microseconds. So a cheap C
 * pre-pass decides where (or whether) a regex runs at all:
 *   min_digits: only over clusters of digits (with short separators
 *               between them) holding at least that many digits;
 *   needles:    only if one of these literals occurs in the text;
 *   assignment: only if a secret-ish word is followed by ':' or '='.
 * Needles are found by one Hyperscan scan per text (see "literal gate"
 * below), or by memchr on short texts and when Hyperscan cannot run. */
typedef struct det_pattern {
    const char *re;
    validator_fn ok;
    unsigned min_digits;
    const char *const *needles;
    bool assignment;
} det_pattern;

#define NOT_AFTER_NUM "(?<![A-Za-z0-9_.+-])"
#define NOT_BEFORE_NUM "(?![A-Za-z0-9_]|[.-][0-9])"

static const char *const n_at[] = { "@", NULL };
static const char *const n_aws_id[] = { "AKIA", "ASIA", NULL };
static const char *const n_sk[] = { "sk-", NULL };
static const char *const n_gh[] = { "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", NULL };
static const char *const n_slack[] = { "xox", NULL };
static const char *const n_google[] = { "AIza", NULL };
static const char *const n_stripe[] = { "k_live_", "k_test_", NULL };
static const char *const n_jwt[] = { "eyJ", NULL };
static const char *const n_pem[] = { "-----BEGIN", NULL };

static const det_pattern p_email[] = {
    { "(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
      "[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*"
      "\\.[A-Za-z]{2,24}(?![A-Za-z0-9-])", NULL, 0, n_at, false },
};
static const det_pattern p_phone[] = {
    /* international: +CC then groups, optional parenthesised area code */
    { "(?<![A-Za-z0-9_+])\\+[1-9][0-9]{0,2}(?:[ .-]?\\(?[0-9]{1,5}\\)?){1,5}" NOT_BEFORE_NUM, phone_intl_ok,
      8, NULL, false },
    /* North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-555-123-4567;
     * a separator before the last four digits is required so plain long
     * numbers are not phones */
    { NOT_AFTER_NUM "(?:1[ .-]?)?(?:\\([0-9]{3}\\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}" NOT_BEFORE_NUM,
      phone_us_ok, 10, NULL, false },
};
static const det_pattern p_card[] = {
    { NOT_AFTER_NUM "[0-9](?:[ -]?[0-9]){12,18}" NOT_BEFORE_NUM, card_ok, 13, NULL, false },
};
static const det_pattern p_ssn[] = {
    { NOT_AFTER_NUM "[0-9]{3}([- ])[0-9]{2}\\1[0-9]{4}" NOT_BEFORE_NUM, ssn_ok, 9, NULL, false },
};
static const det_pattern p_secret[] = {
    { "\\b(?:AKIA|ASIA)[A-Z0-9]{16}\\b", NULL, 0, n_aws_id, false },
    { "(?i:aws)[A-Za-z0-9_ .-]{0,20}(?i:secret)[A-Za-z0-9_ .-]{0,20}[\"']?\\s*[:=]\\s*[\"']?"
      "\\K[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])", NULL, 0, NULL, true },
    /* OpenAI (sk-..., sk-proj-...) and Anthropic (sk-ant-...) */
    { "\\bsk-[A-Za-z0-9_-]{20,}", randomish_ok, 0, n_sk, false },
    { "\\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\\b|\\bgithub_pat_[A-Za-z0-9_]{22,}", NULL, 0, n_gh, false },
    { "\\bxox[bpoars]-[A-Za-z0-9-]{10,}", NULL, 0, n_slack, false },
    { "\\bAIza[0-9A-Za-z_-]{35}", NULL, 0, n_google, false },
    { "\\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}", NULL, 0, n_stripe, false },
    { "\\beyJ[A-Za-z0-9_-]{8,}\\.eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]*", NULL, 0, n_jwt, false },
    { "(?i)\\b(?:api[_-]?key|api[_-]?token|access[_-]?token|auth[_-]?token|secret[_-]?key|"
      "client[_-]?secret|private[_-]?token|password|passwd|secret|token)\\b[\"']?\\s*[:=]\\s*[\"']?"
      "\\K[A-Za-z0-9_\\-./+=~]{8,}", randomish_ok, 0, NULL, true },
};
static const det_pattern p_pem[] = {
    { "-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)"
      "(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\\z)", NULL, 0, n_pem, false },
};

static const struct {
    const det_pattern *p;
    size_t n;
} detectors[MG_POLICY_DET__COUNT] = {
    [MG_POLICY_DET_EMAIL] = { p_email, MG_ARRAY_LEN(p_email) },
    [MG_POLICY_DET_PHONE] = { p_phone, MG_ARRAY_LEN(p_phone) },
    [MG_POLICY_DET_CREDIT_CARD] = { p_card, MG_ARRAY_LEN(p_card) },
    [MG_POLICY_DET_SSN] = { p_ssn, MG_ARRAY_LEN(p_ssn) },
    [MG_POLICY_DET_IBAN] = { NULL, 0 },       /* scanned in C, see iban_scan */
    [MG_POLICY_DET_API_KEY] = { p_secret, MG_ARRAY_LEN(p_secret) },
    [MG_POLICY_DET_PRIVATE_KEY] = { p_pem, MG_ARRAY_LEN(p_pem) },
};

#define MAX_DET_PATTERNS 16
static pcre2_code *compiled[MG_POLICY_DET__COUNT][MAX_DET_PATTERNS];
/* The shortest subject each pattern can match (PCRE2_INFO_MINLENGTH, a
 * lower bound): most strings of a reply ("assistant", "stop", ids) are
 * shorter than any secret, and skipping them saves the needle searches. */
static uint32_t min_len[MG_POLICY_DET__COUNT][MAX_DET_PATTERNS];
/* Each pattern's needles as a set of literal ids (see "literal gate"). */
static uint64_t pat_lits[MG_POLICY_DET__COUNT][MAX_DET_PATTERNS];
static const char *placeholder[MG_POLICY_DET__COUNT];
static pthread_once_t compile_once = PTHREAD_ONCE_INIT;
/* Set (release) once compile_detectors is done: the per-call check is one
 * load instead of a pthread_once call. */
static atomic_bool compile_done;
static bool compile_failed;

/* memchr is vectorised; glibc's memmem is not for short needles. Search
 * for the needle's rarest byte (punctuation, then capitals, then the
 * rest), since memchr for 'e' in English stops every few bytes. The key
 * byte and length of every needle are worked out once, with the patterns
 * (see compile_detectors), not per text. */
static int rarity(char c)
{
    if (is_alpha(c))
        return (c >= 'A' && c <= 'Z') || c == 'x' || c == 'z' || c == 'J' || c == 'q' ? 1 : 2;
    return 0;
}

typedef struct needle_meta {
    unsigned char n, k;         /* length, index of the byte memchr looks for */
} needle_meta;

static needle_meta needle_prepare(const char *needle)
{
    size_t n = strlen(needle), k = 0;
    for (size_t i = 1; i < n; i++)
        if (rarity(needle[i]) < rarity(needle[k]))
            k = i;
    return (needle_meta){ (unsigned char)n, (unsigned char)k };
}

static bool has_needle(const char *t, size_t len, const char *needle, needle_meta m)
{
    size_t n = m.n, k = m.k;
    if (len < n)
        return false;
    const char *p = t + k, *end = t + len - (n - k - 1); /* last position the key byte can take */
    while (p < end && (p = memchr(p, needle[k], (size_t)(end - p))) != NULL) {
        if (memcmp(p - k, needle, n) == 0)
            return true;
        p++;
    }
    return false;
}

/* ---- literal gate ----
 *
 * Every distinct needle of every pattern gets an id (bit) once, at compile
 * time. The first detector that needs to know whether a needle occurs in a
 * text runs one Hyperscan block-mode scan over a literal database of all
 * needles (case-sensitive bytes, one report per needle), and the answers
 * for all needles land in the text's textinfo. Literal matching is exact,
 * so the bits are has_needle's answers: the same patterns run, and hits are
 * the same, as with the memchr gate.
 *
 * A scan costs some 430 instructions before it reads a byte, then about two
 * per byte; has_needle costs a memchr call per needle. Under LIT_SCAN_MIN
 * bytes the patterns' minimum lengths leave only "@" and "xox" to look for
 * (every other needle-gated pattern needs 20 bytes or more), and two memchr
 * calls are cheaper than a scan, so such texts stay on memchr. ':' and '='
 * (has_assignment) are not in the database: every occurrence would have to
 * be reported, which cost more per byte than the two memchr calls it saves.
 *
 * Hyperscan is only an optimisation: no platform support, a database that
 * did not compile, no scratch, a scan error, or the test switch off all
 * leave ti->lit_known empty, and has_needle answers as before (each answer
 * cached in the textinfo). Nothing fails because of it. The scratch is the
 * per-thread one the prefilters use (prefilter.h). */

#define MAX_LITS 64
#define LIT_SCAN_MIN 24

static const char *lit_str[MAX_LITS];
static needle_meta lit_meta[MAX_LITS];
static size_t n_lits;
static uint64_t lit_all;        /* bits of every needle */
static hs_database_t *lit_db;   /* process lifetime; NULL: the memchr gate only */
static uint64_t lit_db_id;
static atomic_bool lit_gate_on = true;

__thread unsigned long mg_policy_det_lit_scans;
__thread unsigned long mg_policy_det_needle_searches;

void mg_policy_detect_set_literal_gate(bool on) { atomic_store(&lit_gate_on, on); }

/* Id of needle, added if new; -1 when the table is full. */
static int lit_id(const char *needle)
{
    for (size_t i = 0; i < n_lits; i++)
        if (strcmp(lit_str[i], needle) == 0)
            return (int)i;
    if (n_lits == MAX_LITS || strlen(needle) > UCHAR_MAX || needle[0] == '\0')
        return -1;
    lit_str[n_lits] = needle;
    lit_meta[n_lits] = needle_prepare(needle);
    lit_all |= 1ull << n_lits;
    return (int)n_lits++;
}

static void lit_db_build(void)
{
    if (n_lits == 0 || hs_valid_platform() != HS_SUCCESS)
        return;
    unsigned flags[MAX_LITS], ids[MAX_LITS];
    size_t lens[MAX_LITS];
    for (size_t i = 0; i < n_lits; i++) {
        lens[i] = strlen(lit_str[i]);
        flags[i] = HS_FLAG_SINGLEMATCH;
        ids[i] = (unsigned)i;
    }
    int bad;
    if (!mg_policy_hs_compile(MG_POLICY_HSC_LITERAL, lit_str, flags, ids, lens, (unsigned)n_lits, &lit_db, &bad)) {
        lit_db = NULL;
        return;
    }
    lit_db_id = mg_policy_hs_new_id();
}

static void compile_detectors(void)
{
    for (int d = 0; d < MG_POLICY_DET__COUNT; d++) {
        placeholder[d] = mg_policy_detector_placeholder((mg_policy_detector)d);
        for (size_t i = 0; i < detectors[d].n; i++) {
            const det_pattern *dp = &detectors[d].p[i];
            if ((compiled[d][i] = mg_policy_re_compile(dp->re, false)) == NULL)
                compile_failed = true;
            else if (pcre2_pattern_info(compiled[d][i], PCRE2_INFO_MINLENGTH, &min_len[d][i]) != 0)
                min_len[d][i] = 0;
            for (size_t k = 0; dp->needles != NULL && dp->needles[k] != NULL; k++) {
                int id = lit_id(dp->needles[k]);
                if (id < 0) {
                    compile_failed = true;  /* table too small: fail closed */
                    break;
                }
                pat_lits[d][i] |= 1ull << id;
            }
        }
    }
    lit_db_build();
    atomic_store_explicit(&compile_done, true, memory_order_release);
}

static void ensure_compiled(void)
{
    if (!atomic_load_explicit(&compile_done, memory_order_acquire))
        pthread_once(&compile_once, compile_detectors);
}

void mg_policy_detectors_prepare(void) { ensure_compiled(); }

static bool word_ends_with(const char *w, size_t wn, const char *suffix, size_t n)
{
    if (wn < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((w[wn - n + i] | 0x20) != suffix[i])
            return false;
    return true;
}

/* Is there a `<word ending in key/token/secret/password/passwd> [:=]`? */
static bool assignment_at(const char *t, size_t i)
{
    static const struct { char w[9]; unsigned char n; } words[] = {
        { "key", 3 }, { "token", 5 }, { "secret", 6 }, { "password", 8 }, { "passwd", 6 },
    };
    size_t e = i;
    while (e > 0 && (t[e - 1] == ' ' || t[e - 1] == '"' || t[e - 1] == '\'' || t[e - 1] == '\t'))
        e--;
    size_t b = e;
    while (b > 0 && e - b < 64 && (is_alnum(t[b - 1]) || t[b - 1] == '_' || t[b - 1] == '-'))
        b--;
    if (e - b < 3)
        return false;   /* shorter than every word ("f(x): ...", "a = b") */
    for (size_t k = 0; k < MG_ARRAY_LEN(words); k++)
        if (word_ends_with(t + b, e - b, words[k].w, words[k].n))
            return true;
    return false;
}

static bool has_assignment(const char *t, size_t len)
{
    for (int pass = 0; pass < 2; pass++) {
        char c = pass ? '=' : ':';
        for (const char *p = t; (p = memchr(p, c, (size_t)(t + len - p))) != NULL; p++)
            if (assignment_at(t, (size_t)(p - t)))
                return true;
    }
    return false;
}

static int on_lit(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                  void *ctx)
{
    uint64_t *lit = ctx;
    *lit |= 1ull << (id % MAX_LITS);
    /* every needle seen: stop (hs_scan then answers HS_SCAN_TERMINATED) */
    return *lit == lit_all;
}

/* The one Hyperscan scan of a text (tried at most once per textinfo). */
static bool lit_scan(const char *t, size_t len, mg_policy_textinfo *ti)
{
    ti->lit_scanned = true;
    if (lit_db == NULL || len > UINT_MAX || !atomic_load_explicit(&lit_gate_on, memory_order_relaxed))
        return false;
    hs_scratch_t *s = mg_policy_hs_scratch(lit_db, lit_db_id);
    if (s == NULL)
        return false;
    mg_policy_det_lit_scans++;
    uint64_t lit = 0;
    hs_error_t rc = hs_scan(lit_db, t, (unsigned)len, 0, s, on_lit, &lit);
    if (rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED)
        return false;
    ti->lit_known = lit_all;
    ti->lit = lit;
    return true;
}

/* Whether any needle of mask occurs in the text (has_needle's answer). */
static bool needles_present(const char *t, size_t len, mg_policy_textinfo *ti, uint64_t mask)
{
    if ((ti->lit_known & mask) != mask && !ti->lit_scanned && len >= LIT_SCAN_MIN)
        lit_scan(t, len, ti);
    if ((ti->lit & mask) != 0)
        return true;
    for (uint64_t m = mask & ~ti->lit_known; m != 0; m &= m - 1) {
        unsigned i = (unsigned)__builtin_ctzll(m);
        mg_policy_det_needle_searches++;
        ti->lit_known |= 1ull << i;
        if (has_needle(t, len, lit_str[i], lit_meta[i])) {
            ti->lit |= 1ull << i;
            return true;
        }
    }
    return false;
}

static mg_rc run_pattern(const pcre2_code *re, validator_fn ok, const char *text, size_t len,
                         size_t from, const char *ph, mg_policy_hits *out)
{
    size_t s, e;
    int rc;
    /* byte-mode patterns: no UTF check to skip or to keep */
    while ((rc = mg_policy_re_next(re, text, len, from, true, &s, &e)) == 1) {
        size_t cs = s;
        if (ok == NULL || ok(text, len, &s, &e)) {
            if (e > s && mg_policy_hits_add(out, s, e, ph) != MG_OK)
                return MG_ENOMEM;
            from = e > cs ? e : cs + 1;
        } else {
            /* a rejected candidate may hide a valid one inside it */
            from = cs + 1;
        }
    }
    return rc < 0 ? MG_ERR : MG_OK;
}

#if defined(__SSE2__)
/* Bit k set where p[k] is an ASCII digit, for the 16 bytes at p: adding
 * 0x80 - '0' moves '0'..'9' to the 10 smallest signed bytes. */
static inline unsigned digit16(const char *p)
{
    __m128i v = _mm_add_epi8(_mm_loadu_si128((const __m128i *)(const void *)p), _mm_set1_epi8((char)(0x80 - '0')));
    return (unsigned)_mm_movemask_epi8(_mm_cmplt_epi8(v, _mm_set1_epi8((char)(0x80 + 10))));
}

/* Index of the first ASCII digit at or after i (len when none). Prose has
 * few digits, so the digit detectors' pre-passes mostly skip: 32 bytes per
 * step, and a tail under 16 bytes read with one load ending at t + len
 * (never past it) whose bits before i are shifted out. */
static size_t next_digit(const char *t, size_t i, size_t len)
{
    if (i >= len)
        return i;   /* as the byte loop would: callers may pass len + 1 */
    for (; len - i >= 32; i += 32) {
        __m128i off = _mm_set1_epi8((char)(0x80 - '0')), lim = _mm_set1_epi8((char)(0x80 + 10));
        __m128i a = _mm_add_epi8(_mm_loadu_si128((const __m128i *)(const void *)(t + i)), off);
        __m128i b = _mm_add_epi8(_mm_loadu_si128((const __m128i *)(const void *)(t + i + 16)), off);
        __m128i da = _mm_cmplt_epi8(a, lim), db = _mm_cmplt_epi8(b, lim);
        if (_mm_movemask_epi8(_mm_or_si128(da, db)) != 0) {
            unsigned m = (unsigned)_mm_movemask_epi8(da) | (unsigned)_mm_movemask_epi8(db) << 16;
            return i + (size_t)__builtin_ctz(m);
        }
    }
    if (i == len)
        return len;
    if (len - i >= 16) {
        unsigned m = digit16(t + i);
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
        i += 16;
        if (i == len)
            return len;
    }
    size_t n = len - i;   /* 1..15 */
    if (len >= 16) {
        unsigned m = digit16(t + len - 16) >> (16 - n);
        return m != 0 ? i + (size_t)__builtin_ctz(m) : len;
    }
    while (i < len && (unsigned char)(t[i] - '0') > 9)
        i++;
    return i;
}
#else
/* Index of the first ASCII digit at or after i (len when none). Prose has
 * few digits, so the digit detectors' pre-passes mostly skip: eight bytes
 * per step, the high bit of each byte of ge0 & ~gt9 set where that byte is
 * '0'..'9' (bytes >= 0x80 are masked to 7 bits first so no sum carries into
 * its neighbour, and excluded afterwards). A false alarm only stops the
 * word loop early; the byte loop after it decides. */
static size_t next_digit(const char *t, size_t i, size_t len)
{
    const uint64_t lo7 = 0x7F7F7F7F7F7F7F7FULL, hi = 0x8080808080808080ULL;
    for (; i + 8 <= len; i += 8) {
        uint64_t x;
        memcpy(&x, t + i, 8);
        uint64_t y = x & lo7;
        uint64_t ge0 = y + 0x5050505050505050ULL;      /* high bit: byte >= '0' */
        uint64_t gt9 = y + 0x4646464646464646ULL;      /* high bit: byte >  '9' */
        if ((ge0 & ~gt9 & ~x & hi) != 0)
            break;
    }
    while (i < len && (unsigned char)(t[i] - '0') > 9)
        i++;
    return i;
}
#endif

static bool is_sep(char c) { return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '/'; }

/* IBAN candidates are noted while find_clusters walks the digits, so
 * iban_scan need not walk the text again: an IBAN candidate starts a run
 * of digits right after a letter, and every such digit is where one of
 * find_clusters' clusters starts (a cluster only grows over digits and
 * separators), so that walk sees them all, in order. */
/* Is the digit at i where an IBAN's first digit can be (see iban_scan)? */
static bool iban_candidate(const char *t, size_t len, size_t i)
{
    return i >= 2 && i + 1 < len && is_digit(t[i + 1]) && is_alpha(t[i - 1]) && is_alpha(t[i - 2]) &&
           (i < 3 || !is_alnum(t[i - 3]));
}

/* Finds the digit clusters (digits with at most two separator bytes
 * between them) holding at least MIN_CLUSTER_DIGITS digits. */
#define MIN_CLUSTER_DIGITS 8

static void find_clusters(const char *t, size_t len, mg_policy_textinfo *ti)
{
    ti->clusters_done = true;
    ti->n_clusters = 0;
    ti->n_iban = 0;
    ti->iban_full = true;   /* until the walk is complete */
    bool full = false;
    size_t i = 0;
    while ((i = next_digit(t, i, len)) < len) {
        if (iban_candidate(t, len, i)) {
            if (ti->n_iban < MG_ARRAY_LEN(ti->iban_at))
                ti->iban_at[ti->n_iban++] = i;
            else
                full = true;
        }
        size_t start = i, last = i, digits = 0, j = i;
        while (j < len) {
            if (is_digit(t[j])) {
                digits++;
                last = ++j;
                continue;
            }
            size_t k = j;
            while (k < len && k - j < 2 && is_sep(t[k]))
                k++;
            if (k > j && k < len && is_digit(t[k]))
                j = k;
            else
                break;
        }
        if (digits >= MIN_CLUSTER_DIGITS) {
            if (ti->n_clusters == MG_ARRAY_LEN(ti->clusters)) {
                ti->overflow = true;    /* callers then scan the whole text */
                return;
            }
            ti->clusters[ti->n_clusters].start = start;
            ti->clusters[ti->n_clusters].end = last;
            ti->clusters[ti->n_clusters].digits = digits;
            ti->n_clusters++;
        }
        i = last;
    }
    ti->iban_full = full;
}

/* Runs a digit pattern over each cluster with enough digits. The subject
 * is cut two bytes after the cluster (all the look-ahead the patterns
 * use); the look-behind sees the real text before it. */
static mg_rc run_on_clusters(const pcre2_code *re, const det_pattern *dp, const char *t, size_t len,
                             mg_policy_textinfo *ti, const char *ph, mg_policy_hits *out)
{
    if (!ti->clusters_done)
        find_clusters(t, len, ti);
    if (ti->overflow)
        return run_pattern(re, dp->ok, t, len, 0, ph, out);
    for (size_t c = 0; c < ti->n_clusters; c++) {
        if (ti->clusters[c].digits < dp->min_digits)
            continue;
        size_t start = ti->clusters[c].start, last = ti->clusters[c].end;
        size_t end = last + 2 < len ? last + 2 : len;
        mg_rc rc = run_pattern(re, dp->ok, t, end, start > 0 ? start - 1 : 0, ph, out);
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

/* IBAN candidates: two letters and two digits at a word start. The first
 * of those digits follows a letter, so only the first digit of each run
 * of digits can start one. */
static mg_rc iban_try(const char *t, size_t len, size_t *i, mg_policy_hits *out)
{
    size_t s = *i - 2, e = len;
    if (iban_ok(t, len, &s, &e)) {
        if (mg_policy_hits_add(out, s, e, "[IBAN]") != MG_OK)
            return MG_ENOMEM;
        *i = e;
    }
    return MG_OK;
}

static mg_rc iban_scan(const char *t, size_t len, const mg_policy_textinfo *ti, mg_policy_hits *out)
{
    if (ti != NULL && ti->clusters_done && !ti->overflow && !ti->iban_full) {
        size_t next = 0;   /* candidates inside an IBAN just taken are skipped */
        for (size_t k = 0; k < ti->n_iban; k++) {
            size_t i = ti->iban_at[k];
            if (i < next)
                continue;
            if (iban_try(t, len, &i, out) != MG_OK)
                return MG_ENOMEM;
            next = i + 1;
        }
        return MG_OK;
    }
    for (size_t i = 2; (i = next_digit(t, i, len)) + 1 < len; i++) {
        if (!iban_candidate(t, len, i))
            continue;
        if (iban_try(t, len, &i, out) != MG_OK)
            return MG_ENOMEM;
    }
    return MG_OK;
}

mg_rc mg_policy_detect_hits(mg_policy_detector d, const char *text, size_t len,
                            mg_policy_textinfo *ti, mg_policy_hits *out)
{
    mg_policy_textinfo local;
    if (ti == NULL) {
        mg_policy_textinfo_init(&local);
        ti = &local;
    }
    if ((unsigned)d >= MG_POLICY_DET__COUNT)
        return MG_ERR;
    if (d == MG_POLICY_DET_IBAN)
        return iban_scan(text, len, ti, out);
    ensure_compiled();
    if (compile_failed)
        return MG_ERR;
    const char *ph = placeholder[d];
    const det_pattern *p = detectors[d].p;
    for (size_t i = 0, n = detectors[d].n; i < n; i++) {
        const det_pattern *dp = &p[i];
        mg_rc rc;
        if (dp->min_digits) {
            rc = run_on_clusters(compiled[d][i], dp, text, len, ti, ph, out);
        } else {
            if (len < min_len[d][i])
                continue;   /* too short for any match of this pattern */
            bool run;
            if (dp->assignment) {
                if (ti->assignment < 0)
                    ti->assignment = has_assignment(text, len);
                run = ti->assignment == 1;
            } else {
                run = pat_lits[d][i] == 0 || needles_present(text, len, ti, pat_lits[d][i]);
            }
            rc = run ? run_pattern(compiled[d][i], dp->ok, text, len, 0, ph, out) : MG_OK;
        }
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

mg_rc mg_policy_detect(mg_policy_detector d, const char *text, size_t len,
                       mg_policy_span_cb cb, void *ctx)
{
    mg_policy_hits h;
    mg_policy_hits_init(&h);
    mg_rc rc = mg_policy_detect_hits(d, text, len, NULL, &h);
    if (rc == MG_OK) {
        mg_policy_hits_normalize(&h);
        for (size_t i = 0; i < h.n; i++)
            if (!cb(ctx, (mg_policy_span){ h.v[i].start, h.v[i].end }))
                break;
    }
    mg_policy_hits_free(&h);
    return rc;
}

/* ---- test hooks (policy_int.h) ---- */

size_t mg_policy_detect_needle_count(void)
{
    ensure_compiled();
    return n_lits;
}

const char *mg_policy_detect_needle(size_t i)
{
    ensure_compiled();
    return i < n_lits ? lit_str[i] : NULL;
}

bool mg_policy_detect_needle_memchr(const char *text, size_t len, size_t i)
{
    ensure_compiled();
    return i < n_lits && has_needle(text, len, lit_str[i], lit_meta[i]);
}

bool mg_policy_detect_literal_scan(const char *text, size_t len, mg_policy_textinfo *ti)
{
    ensure_compiled();
    mg_policy_textinfo_init(ti);
    return lit_scan(text, len, ti);
}
