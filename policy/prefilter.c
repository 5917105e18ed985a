/* modelgate — Hyperscan prefilter in front of the custom patterns of a filter.
 *
 * A filter with custom patterns used to run every pattern through PCRE2 on
 * every scanned text, and almost always nothing matches. Each compiled
 * filter now also holds one Hyperscan block-mode database of its patterns,
 * compiled in prefilter mode (HS_FLAG_PREFILTER: constructs Hyperscan cannot
 * do exactly are widened, so it reports a superset of what matches). A text
 * is scanned once; PCRE2 then runs only for the patterns Hyperscan says may
 * match. PCRE2 stays the sole judge of whether and where a pattern matches,
 * so hits, redaction spans and verdicts are the same as without it.
 *
 * It is only an optimisation and never decides anything on its own:
 *  - a pattern Hyperscan refuses even in prefilter mode (\K, \G, \R,
 *    subroutine calls, control verbs ...) is left out and always runs;
 *  - no database at all (no platform support, nothing compiled, no memory),
 *    no scratch space, or a scan error: every pattern runs, as before.
 *
 * Flags mirror PCRE2's: custom patterns are PCRE2_UTF | PCRE2_UCP, so
 * HS_FLAG_UTF8 | HS_FLAG_UCP. Neither engine defaults to DOTALL or
 * MULTILINE, and inline (?s) (?m) (?i) are read by both. SINGLEMATCH: one
 * report per pattern is all we need. ALLOWEMPTY: documents only admit
 * patterns with a non-zero minimum length, but a widened prefilter form may
 * be able to match empty; allowing it just makes that pattern always run.
 *
 * Unicode tables. Hyperscan 5.4 classifies code points by an older Unicode
 * version than PCRE2 does: for \w and \p{L} some 29 000 code points differ
 * (letters added since, the first at U+0560), and PCRE2's \p{script} follows
 * script extensions. Prefilter mode gives a superset only of Hyperscan's own
 * idea of a match, so its "no" is trusted per pattern and per text:
 *  - tier 0, no table-dependent construct: trusted on any valid UTF-8 text;
 *  - tier 1, \w \W \d \D \b \B: trusted when every code point of the text is
 *    in ranges where the two engines' word and digit classes were checked
 *    to agree (tests/unit/test_policy_prefilter.c checks this exhaustively
 *    for the libraries it is built with): below U+0560, general punctuation,
 *    currency symbols, pictographs and emoji;
 *  - tier 2, \p \P [:class:] \X, non-ASCII literals, \x \o \N escapes,
 *    back references, \Q..\E: trusted on ASCII-only texts.
 * The classification reads the pattern text conservatively: anything that
 * merely looks like such a construct raises the tier.
 *
 * Match limits: a text on which Hyperscan proves a pattern cannot match no
 * longer reaches PCRE2, so it can no longer hit PCRE2's match limit there
 * (which failed the filter closed). Where a match is possible PCRE2 runs and
 * its limit applies as before.
 *
 * Scratch space. hs_scan needs a scratch that no other thread uses at the
 * same moment and that is large enough for the database. Each thread owns
 * one scratch (allocated on first use, freed by a pthread key destructor at
 * thread exit). hs_alloc_scratch grows a scratch in place so that it stays
 * valid for every database it was valid for before; a scratch never shrinks.
 * Every database gets a process-unique 64-bit id at build time (never
 * reused, so a freed policy's id cannot alias a new one), and the thread
 * remembers the ids of the last few databases its scratch was validated
 * for. A scan of a remembered database costs a handful of compares; a new
 * one (a reload, another filter) pays one hs_alloc_scratch. Old and new
 * policies in flight at once, several filters with a database each and any
 * number of worker threads are therefore all served by one scratch per
 * thread; the databases themselves are read-only and shared. The built-in
 * detectors' literal database (detectors.c) uses the same scratch through
 * mg_policy_hs_scratch: one allocation and one destructor per thread.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/prefilter.h"
#include "core.h"

#include <hs.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NOT_IN 0xFF     /* tier of a pattern left out of the database */

struct mg_policy_prefilter {
    hs_database_t *db;
    uint64_t id;
    size_t n;                   /* patterns considered: the first MG_POLICY_PF_MAX */
    unsigned char *tier;        /* per pattern: 0..2, or NOT_IN */
};

static atomic_bool pf_enabled = true;
static atomic_uint_fast64_t pf_next_id = 1;    /* 0 marks an empty cache slot */

__thread unsigned long mg_policy_pf_pcre_runs;
__thread unsigned long mg_policy_pf_scans;

void mg_policy_prefilter_set_enabled(bool on) { atomic_store(&pf_enabled, on); }
bool mg_policy_prefilter_enabled(void) { return atomic_load_explicit(&pf_enabled, memory_order_relaxed); }

/* ---- classification ---- */

static unsigned char pattern_tier(const char *p)
{
    unsigned char tier = 0;
    for (size_t i = 0; p[i] != '\0'; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x80 || (c == '[' && p[i + 1] == ':'))
            return 2;
        if (c != '\\')
            continue;
        char n = p[++i];
        if (n == '\0')
            break;
        if (strchr("wWdDbB", n) != NULL)
            tier = 1;
        else if (strchr("pPXxoNuUQCgk0123456789", n) != NULL)
            return 2;
    }
    return tier;
}

/* Code points whose \w and \d classification the two engines agree on. */
static bool common_cp(uint32_t cp)
{
    return cp < 0x560 || (cp >= 0x2000 && cp < 0x2070) || (cp >= 0x20A0 && cp < 0x20D0) ||
           (cp >= 0x1F300 && cp < 0x1FB00);
}

mg_policy_pf_text mg_policy_prefilter_classify(const char *t, size_t len)
{
    const unsigned char *s = (const unsigned char *)t;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull)
            break;
    }
    while (i < len && s[i] < 0x80)
        i++;
    if (i == len)
        return MG_POLICY_PF_TEXT_ASCII;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (i + n > len)
            return MG_POLICY_PF_TEXT_OTHER;
        uint32_t cp = c & (n == 4 ? 0x07 : n == 3 ? 0x0F : 0x1F);
        for (size_t k = 1; k < n; k++)
            cp = cp << 6 | (s[i + k] & 0x3F);
        if (!common_cp(cp))
            return MG_POLICY_PF_TEXT_OTHER;
        i += n;
    }
    return MG_POLICY_PF_TEXT_COMMON;
}

bool mg_policy_prefilter_covers(const mg_policy_prefilter *pf, size_t i, mg_policy_pf_text tc)
{
    if (pf == NULL || i >= pf->n)
        return false;
    switch (pf->tier[i]) {
    case 0: return true;
    case 1: return tc != MG_POLICY_PF_TEXT_OTHER;
    case 2: return tc == MG_POLICY_PF_TEXT_ASCII;
    default: return false;
    }
}

/* ---- build ---- */

mg_policy_prefilter *mg_policy_prefilter_build(const char *const *patterns, size_t n)
{
    if (n == 0 || hs_valid_platform() != HS_SUCCESS)
        return NULL;
    if (n > MG_POLICY_PF_MAX)
        n = MG_POLICY_PF_MAX;
    mg_policy_prefilter *pf = calloc(1, sizeof(*pf));
    const char **exprs = calloc(n, sizeof(*exprs));
    unsigned *flags = calloc(n, sizeof(*flags));
    unsigned *ids = calloc(n, sizeof(*ids));
    if (pf == NULL || exprs == NULL || flags == NULL || ids == NULL || (pf->tier = calloc(n, 1)) == NULL)
        goto fail;
    pf->n = n;
    for (size_t i = 0; i < n; i++)
        pf->tier[i] = pattern_tier(patterns[i]);
    /* hs_compile_multi names the first expression it refuses; leave that
     * one out and try again, at most once per pattern */
    for (;;) {
        unsigned m = 0;
        for (size_t i = 0; i < n; i++) {
            if (pf->tier[i] == NOT_IN)
                continue;
            exprs[m] = patterns[i];
            flags[m] = HS_FLAG_UTF8 | HS_FLAG_UCP | HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH |
                       HS_FLAG_ALLOWEMPTY;
            ids[m] = (unsigned)i;
            m++;
        }
        if (m == 0)
            goto fail;
        int bad = -1;
        if (mg_policy_hs_compile(MG_POLICY_HSC_REGEX, exprs, flags, ids, NULL, m, &pf->db, &bad))
            break;
        pf->db = NULL;
        if (bad < 0 || (unsigned)bad >= m)
            goto fail;
        pf->tier[ids[bad]] = NOT_IN;
    }
    pf->id = atomic_fetch_add(&pf_next_id, 1);
    free(exprs);
    free(flags);
    free(ids);
    return pf;
fail:
    free(exprs);
    free(flags);
    free(ids);
    mg_policy_prefilter_free(pf);
    return NULL;
}

void mg_policy_prefilter_free(mg_policy_prefilter *pf)
{
    if (pf == NULL)
        return;
    hs_free_database(pf->db);
    free(pf->tier);
    free(pf);
}

/* ---- per-thread scratch ---- */

#define SEEN_SLOTS 8

typedef struct pf_tls {
    hs_scratch_t *scratch;
    uint64_t seen[SEEN_SLOTS];  /* ids of databases the scratch is valid for */
    unsigned next;              /* slot to overwrite next */
} pf_tls;

static pthread_key_t pf_key;
static pthread_once_t pf_once = PTHREAD_ONCE_INIT;
static bool pf_key_ok;
static __thread pf_tls *pf_cache;

static void pf_tls_free(void *p)
{
    pf_tls *t = p;
    hs_free_scratch(t->scratch);
    free(t);
}

static void pf_key_init(void) { pf_key_ok = pthread_key_create(&pf_key, pf_tls_free) == 0; }

hs_scratch_t *mg_policy_hs_scratch(const hs_database_t *db, uint64_t id)
{
    pf_tls *t = pf_cache;
    if (t == NULL) {
        pthread_once(&pf_once, pf_key_init);
        /* without a destructor the scratch would leak at thread exit */
        if (!pf_key_ok || (t = calloc(1, sizeof(*t))) == NULL)
            return NULL;
        if (pthread_setspecific(pf_key, t) != 0) {
            free(t);
            return NULL;
        }
        pf_cache = t;
    }
    for (unsigned i = 0; i < SEEN_SLOTS; i++)
        if (t->seen[i] == id)
            return t->scratch;
    if (hs_alloc_scratch(db, &t->scratch) != HS_SUCCESS) {
        /* the old scratch is either kept or freed and NULLed: either way
         * nothing it was validated for can be trusted any more */
        memset(t->seen, 0, sizeof(t->seen));
        return NULL;
    }
    t->seen[t->next] = id;
    t->next = (t->next + 1) % SEEN_SLOTS;
    return t->scratch;
}

uint64_t mg_policy_hs_new_id(void) { return atomic_fetch_add(&pf_next_id, 1); }

/* ---- scan ---- */

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                    void *ctx)
{
    uint64_t *maybe = ctx;
    maybe[id / 64] |= 1ull << (id % 64);
    return 0;
}

bool mg_policy_prefilter_scan(const mg_policy_prefilter *pf, const char *t, size_t len,
                              uint64_t maybe[MG_POLICY_PF_WORDS])
{
    memset(maybe, 0, MG_POLICY_PF_WORDS * sizeof(uint64_t));
    if (pf == NULL || len > UINT_MAX)
        return false;
    hs_scratch_t *s = mg_policy_hs_scratch(pf->db, pf->id);
    if (s == NULL)
        return false;
    return hs_scan(pf->db, t, (unsigned)len, 0, s, on_match, maybe) == HS_SUCCESS;
}

/* ---- compiling in a child process ----
 *
 * Hyperscan's compiler is large: compiling even ten patterns touches ~4 MB
 * of its code and leaves ~6 MB of freed heap behind, which took the
 * gateway's idle RSS from ~15 to ~27 MiB, while a database is ~170 KB and a
 * scan touches little code. A pathological pattern can also make it run
 * for a long time or allocate a lot. So `serve` compiles in a child: the
 * same executable run as `modelgate __hs-compile`, fed the expressions on
 * stdin, answering with the serialised database on stdout, which the
 * gateway deserialises. The child gets HSC_TIMEOUT_MS, then SIGKILL.
 * If the child cannot be started at all, the compile happens here as
 * before; if it starts but fails, times out or answers garbage, there is
 * no database (PCRE2 and the memchr gates do the work, as without
 * Hyperscan): a crash or a runaway compile stays in the child.
 *
 * Wire format, little-endian u32s: request MAGIC, kind, count, then per
 * expression flags, id, length, bytes; answer MAGIC, status (0 compiled,
 * 1 refused, 2 error), refused expression index (or -1), size, then size
 * bytes of serialised database. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define HSC_MAGIC 0x3153484du           /* "MHS1" */
#define HSC_TIMEOUT_MS 60000
#define HSC_MAX_REQUEST (64u << 20)
#define HSC_MAX_DB (512u << 20)

static _Atomic(const char *) hs_compiler;

void mg_policy_hs_set_compiler(const char *exe) { atomic_store(&hs_compiler, exe); }

static hs_error_t compile_here(int kind, const char *const *exprs, const unsigned *flags, const unsigned *ids,
                               const size_t *lens, unsigned n, hs_database_t **db, int *bad)
{
    hs_compile_error_t *err = NULL;
    hs_error_t rc = kind == MG_POLICY_HSC_LITERAL
                        ? hs_compile_lit_multi(exprs, flags, ids, lens, n, HS_MODE_BLOCK, NULL, db, &err)
                        : hs_compile_multi(exprs, flags, ids, n, HS_MODE_BLOCK, NULL, db, &err);
    *bad = rc == HS_COMPILER_ERROR && err != NULL ? err->expression : -1;
    hs_free_compile_error(err);
    if (rc != HS_SUCCESS)
        *db = NULL;
    return rc;
}

static void put_u32(mg_buf *b, uint32_t v)
{
    unsigned char p[4] = { (unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 24) };
    mg_buf_append(b, p, 4);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads (out false) or writes exactly n bytes before the deadline; false on
 * EOF, error, a closed peer or time. */
static bool io_full(int fd, bool out, unsigned char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        int64_t left = deadline - ms_now();
        if (left <= 0)
            return false;
        struct pollfd pfd = { .fd = fd, .events = out ? POLLOUT : POLLIN };
        int r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || (out && (pfd.revents & (POLLERR | POLLHUP))))
            return false;
        ssize_t k = out ? write(fd, p, n) : read(fd, p, n);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* 1 compiled (*db set), 0 refused or failed (*bad: refused index or -1),
 * -1 the child could not be started. */
static int compile_in_child(const char *exe, int kind, const char *const *exprs, const unsigned *flags,
                            const unsigned *ids, const size_t *lens, unsigned n, hs_database_t **db, int *bad)
{
    *db = NULL;
    *bad = -1;
    mg_buf req = {0};
    put_u32(&req, HSC_MAGIC);
    put_u32(&req, (uint32_t)kind);
    put_u32(&req, n);
    for (unsigned i = 0; i < n; i++) {
        size_t len = kind == MG_POLICY_HSC_LITERAL ? lens[i] : strlen(exprs[i]);
        put_u32(&req, flags[i]);
        put_u32(&req, ids[i]);
        put_u32(&req, (uint32_t)len);
        mg_buf_append(&req, exprs[i], len);
    }
    if (req.p == NULL || req.len > HSC_MAX_REQUEST) {
        mg_buf_free(&req);
        return 0;
    }
    int in[2] = { -1, -1 }, out[2] = { -1, -1 };
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        for (int i = 0; i < 2; i++) {
            if (in[i] >= 0) close(in[i]);
            if (out[i] >= 0) close(out[i]);
        }
        mg_buf_free(&req);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawnattr_init(&attr);
    /* the gateway's threads block SIGHUP/SIGTERM for sigwait: the child
     * starts with a clean mask and default handlers */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = { (char *)exe, (char *)"__hs-compile", NULL };
    pid_t pid;
    int sp = posix_spawn(&pid, exe, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    close(out[1]);
    if (sp != 0) {
        close(in[1]);
        close(out[0]);
        mg_buf_free(&req);
        return -1;
    }
    int64_t deadline = ms_now() + HSC_TIMEOUT_MS;
    /* non-blocking, and SIGPIPE is ignored in `serve` (server.c); a child
     * that dies early just fails the write */
    fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK);
    bool ok = io_full(in[1], true, (unsigned char *)req.p, req.len, deadline);
    close(in[1]);
    mg_buf_free(&req);
    unsigned char head[16];
    char *ser = NULL;
    uint32_t status = 2, size = 0;
    if (ok && io_full(out[0], false, head, sizeof(head), deadline) && get_u32(head) == HSC_MAGIC) {
        status = get_u32(head + 4);
        *bad = (int)get_u32(head + 8);
        size = get_u32(head + 12);
        if (status == 0 && (size == 0 || size > HSC_MAX_DB || (ser = malloc(size)) == NULL ||
                            !io_full(out[0], false, (unsigned char *)ser, size, deadline)))
            status = 2;
    }
    close(out[0]);
    if (waitpid(pid, NULL, WNOHANG) == 0) {
        /* answered (or gave up) but still there: it has nothing more to say */
        struct timespec brief = { 0, 20 * 1000000L };
        nanosleep(&brief, NULL);
        if (waitpid(pid, NULL, WNOHANG) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    int rc = 0;
    if (status == 0 && ser != NULL && hs_deserialize_database(ser, size, db) == HS_SUCCESS)
        rc = 1;
    else
        *db = NULL;
    if (status != 1)
        *bad = -1;
    free(ser);
    return rc;
}

bool mg_policy_hs_compile(int kind, const char *const *exprs, const unsigned *flags, const unsigned *ids,
                          const size_t *lens, unsigned n, hs_database_t **db, int *bad)
{
    const char *exe = atomic_load(&hs_compiler);
    if (exe != NULL) {
        int r = compile_in_child(exe, kind, exprs, flags, ids, lens, n, db, bad);
        if (r >= 0)
            return r == 1;
    }
    return compile_here(kind, exprs, flags, ids, lens, n, db, bad) == HS_SUCCESS;
}

int mg_policy_hs_compile_main(void)
{
    /* the request is read whole (it is small), then answered whole */
    size_t cap = 1 << 16, len = 0;
    unsigned char *in = malloc(cap);
    for (;;) {
        if (in == NULL)
            return 2;
        ssize_t k = read(0, in + len, cap - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return 2;
        if (k == 0)
            break;
        len += (size_t)k;
        if (len == cap) {
            if (cap >= HSC_MAX_REQUEST) {
                free(in);
                return 2;
            }
            unsigned char *bigger = realloc(in, cap * 2);
            if (bigger == NULL)
                free(in);
            in = bigger;
            cap *= 2;
        }
    }
    uint32_t status = 2, bad = UINT32_MAX;
    char *ser = NULL;
    size_t ser_len = 0;
    unsigned n = len >= 12 && get_u32(in) == HSC_MAGIC ? get_u32(in + 8) : 0;
    int kind = len >= 12 ? (int)get_u32(in + 4) : -1;
    char **exprs = n && n <= (1u << 20) ? calloc(n, sizeof(*exprs)) : NULL;
    unsigned *flags = exprs ? calloc(n, sizeof(*flags)) : NULL;
    unsigned *ids = exprs ? calloc(n, sizeof(*ids)) : NULL;
    size_t *lens = exprs ? calloc(n, sizeof(*lens)) : NULL;
    bool parsed = lens != NULL && (kind == MG_POLICY_HSC_REGEX || kind == MG_POLICY_HSC_LITERAL);
    size_t at = 12;
    for (unsigned i = 0; parsed && i < n; i++) {
        if (len - at < 12) {
            parsed = false;
            break;
        }
        flags[i] = get_u32(in + at);
        ids[i] = get_u32(in + at + 4);
        lens[i] = get_u32(in + at + 8);
        at += 12;
        if (len - at < lens[i] || (exprs[i] = malloc(lens[i] + 1)) == NULL) {
            parsed = false;
            break;
        }
        memcpy(exprs[i], in + at, lens[i]);
        exprs[i][lens[i]] = '\0';
        at += lens[i];
    }
    if (parsed && at == len) {
        hs_database_t *db = NULL;
        int b = -1;
        if (compile_here(kind, (const char *const *)exprs, flags, ids, lens, n, &db, &b) == HS_SUCCESS) {
            if (hs_serialize_database(db, &ser, &ser_len) == HS_SUCCESS && ser_len <= HSC_MAX_DB)
                status = 0;
            hs_free_database(db);
        } else if (b >= 0) {
            status = 1;
            bad = (uint32_t)b;
        }
    }
    for (unsigned i = 0; exprs && i < n; i++)
        free(exprs[i]);
    free(exprs);
    free(flags);
    free(ids);
    free(lens);
    free(in);
    mg_buf out = {0};
    put_u32(&out, HSC_MAGIC);
    put_u32(&out, status);
    put_u32(&out, bad);
    put_u32(&out, status == 0 ? (uint32_t)ser_len : 0);
    if (status == 0)
        mg_buf_append(&out, ser, ser_len);
    free(ser);
    bool ok = out.p != NULL;
    for (size_t off = 0; ok && off < out.len;) {
        ssize_t k = write(1, out.p + off, out.len - off);
        if (k < 0 && errno == EINTR)
            continue;
        ok = k > 0;
        off += ok ? (size_t)k : 0;
    }
    mg_buf_free(&out);
    return ok && status != 2 ? 0 : 2;
}
