/* modelgate — policy engine internals shared by the policy/ sources (not a public
 * contract: layouts of compiled policies, the regex runner, span lists).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_POLICY_INT_H
#define MG_POLICY_INT_H

#include "policy/policy.h"
#include "policy/prefilter.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* A compiled filter: its definition plus JIT-compiled custom patterns. */
typedef struct mg_policy_cfilter {
    const mg_policy_filter_def *def;
    pcre2_code **re;
    uint32_t *re_min;           /* each pattern's shortest possible match (bytes) */
    size_t n_re;
    char *placeholder;          /* "[REDACTED:<name>]" for custom patterns */
    /* Hyperscan prefilter of the patterns (prefilter.h), or NULL: none yet
     * (mg_policy_prefilter_attach publishes it later) or none possible */
    _Atomic(mg_policy_prefilter *) pf;
} mg_policy_cfilter;

struct mg_policy {
    atomic_int refs;
    mg_policy_doc *doc;         /* owned */
    mg_policy_cfilter *filters; /* parallel to doc->filters */
};

struct mg_policy_effective {
    mg_policy *p;               /* reference held */
    size_t *roles;              /* indices into doc->roles */
    size_t n_roles;
    size_t *filters;            /* indices into p->filters, each once */
    size_t n_filters;
    unsigned permissions;
    unsigned directions;        /* union of the filters' directions */
};

/* Regex runner. Match data and match context are per thread (created on
 * first use, freed at thread exit), so one compiled pattern serves every
 * thread at once. Finds the next match at or after `from`:
 * 1 found (*s, *e set), 0 none, < 0 PCRE2 error (match limit ...).
 * utf_checked: no UTF check is wanted, because the pattern is byte mode
 * or because the text was checked already (mg_utf8_valid). */
int mg_policy_re_next(const pcre2_code *re, const char *text, size_t len, size_t from,
                      bool utf_checked, size_t *s, size_t *e);
/* Compiles (byte mode unless utf) and JIT-compiles; NULL on error. */
pcre2_code *mg_policy_re_compile(const char *pattern, bool utf);

/* Growable list of tagged spans. */
typedef struct mg_policy_hit {
    size_t start, end;
    const char *placeholder;
} mg_policy_hit;

typedef struct mg_policy_hits {
    mg_policy_hit *v;
    size_t n, cap;
    mg_policy_hit local[16];    /* no allocation for the common few */
} mg_policy_hits;

void mg_policy_hits_init(mg_policy_hits *h);
mg_rc mg_policy_hits_add(mg_policy_hits *h, size_t s, size_t e, const char *placeholder);
/* Sorts by start and merges overlapping or touching spans (the earlier
 * span's placeholder names the merged one). */
void mg_policy_hits_normalize(mg_policy_hits *h);
void mg_policy_hits_free(mg_policy_hits *h);

/* What the detectors' C pre-passes learned about one text, computed once
 * and shared by every detector run over that text. */
typedef struct mg_policy_textinfo {
    bool clusters_done, overflow;
    size_t n_clusters;
    struct { size_t start, end; unsigned digits; } clusters[32];
    /* Where an IBAN can start (a digit run right after two letters at a
     * word start), noted by the same digit walk; iban_full: more than fit,
     * or the walk stopped early, so the IBAN scan walks the text itself. */
    bool iban_full;
    size_t n_iban;
    size_t iban_at[32];
    int assignment;             /* -1 not checked, 0/1 */
    /* The literal needles the detectors gate on (detectors.c): bit i of
     * lit_known says whether needle i was looked for, bit i of lit whether
     * it occurs. One Hyperscan scan fills them all at once; without it,
     * has_needle fills the bits one at a time as needed. */
    uint64_t lit_known, lit;
    bool lit_scanned;           /* the Hyperscan scan was tried (it is not retried) */
} mg_policy_textinfo;

void mg_policy_textinfo_init(mg_policy_textinfo *ti);

/* Detector runner into a hit list (what mg_policy_detect wraps). ti may be
 * NULL; when given it must belong to this very text. */
mg_rc mg_policy_detect_hits(mg_policy_detector d, const char *text, size_t len,
                            mg_policy_textinfo *ti, mg_policy_hits *out);

/* Test hooks for the detectors' literal gate (tests/unit/test_policy_needles.c);
 * not for production use. */
/* Whether the Hyperscan literal scan is used at all (default on; off: the
 * memchr gate alone, as when Hyperscan is unavailable). Process-wide. */
void mg_policy_detect_set_literal_gate(bool on);
/* Compiles the detectors (PCRE2 and the needles' Hyperscan database) now
 * rather than on the first scan; mg_policy_prefilter_attach calls it so a
 * worker never waits for it. */
void mg_policy_detectors_prepare(void);
/* The gate's needles: how many, and needle i (NUL-terminated). */
size_t mg_policy_detect_needle_count(void);
const char *mg_policy_detect_needle(size_t i);
/* Whether needle i occurs in the text, by the memchr gate alone. */
bool mg_policy_detect_needle_memchr(const char *text, size_t len, size_t i);
/* Runs the Hyperscan scan into a fresh ti (initialised here), whatever the
 * text's length; false when it could not run (no platform support, no
 * database or scratch, error, the switch above off). */
bool mg_policy_detect_literal_scan(const char *text, size_t len, mg_policy_textinfo *ti);
/* Per thread, since it started: Hyperscan literal scans run, and has_needle
 * searches (one per needle looked for in one text). */
extern __thread unsigned long mg_policy_det_lit_scans;
extern __thread unsigned long mg_policy_det_needle_searches;

#endif
