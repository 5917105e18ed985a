/* modelgate — Hyperscan prefilter for the custom patterns of a content filter
 * (internal to policy/; the design is described at the top of prefilter.c).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_POLICY_PREFILTER_H
#define MG_POLICY_PREFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Patterns past this index of a filter are never put in the database: they
 * always run through PCRE2. Bounds the per-scan bitmap on the stack. */
#define MG_POLICY_PF_MAX 1024
#define MG_POLICY_PF_WORDS (MG_POLICY_PF_MAX / 64)

/* How far a "cannot match" from Hyperscan may be trusted for one pattern,
 * given what the text holds (see "Unicode tables" in prefilter.c). */
typedef enum {
    MG_POLICY_PF_TEXT_ASCII = 0,    /* only ASCII */
    MG_POLICY_PF_TEXT_COMMON = 1,   /* only code points both engines classify alike */
    MG_POLICY_PF_TEXT_OTHER = 2,    /* anything else */
} mg_policy_pf_text;

typedef struct mg_policy_prefilter mg_policy_prefilter;

/* Builds the database of patterns[0..n) (UTF-8 + UCP, prefilter mode).
 * Patterns Hyperscan refuses are left out. Returns NULL when nothing could
 * be built (no platform support, every pattern refused, out of memory):
 * then every pattern runs through PCRE2. Never fails the policy. */
mg_policy_prefilter *mg_policy_prefilter_build(const char *const *patterns, size_t n);
void mg_policy_prefilter_free(mg_policy_prefilter *pf);

/* Whether Hyperscan's "no" for pattern i can skip PCRE2 on a text of class
 * tc: the pattern is in the database and its verdict does not depend on
 * Unicode tables the two engines disagree on for such a text. */
bool mg_policy_prefilter_covers(const mg_policy_prefilter *pf, size_t i, mg_policy_pf_text tc);

/* Classifies a valid UTF-8 text (what mg_policy_prefilter_covers needs). */
mg_policy_pf_text mg_policy_prefilter_classify(const char *t, size_t len);

/* Scans a valid UTF-8 text once (the caller checked it: Hyperscan's UTF-8
 * mode must not see invalid input). Sets bit i of maybe (MG_POLICY_PF_WORDS
 * words, cleared here) for every pattern i in the database that may match.
 * Returns false when the scan could not run (no scratch, engine error): the
 * caller then runs every pattern through PCRE2. Thread-safe. */
bool mg_policy_prefilter_scan(const mg_policy_prefilter *pf, const char *t, size_t len,
                              uint64_t maybe[MG_POLICY_PF_WORDS]);

/* The per-thread scratch machinery, for the other Hyperscan databases of
 * policy/ (the built-in detectors' literal database). A database gets an id
 * from mg_policy_hs_new_id once (process-unique, never reused); then
 * mg_policy_hs_scratch returns the calling thread's one scratch, made valid
 * for that database (owned by the thread, freed at its exit; do not free),
 * or NULL when none could be allocated. The scratch is shared with the
 * prefilters, so it must not be used across a call into them. */
struct hs_database;
struct hs_scratch;
uint64_t mg_policy_hs_new_id(void);
struct hs_scratch *mg_policy_hs_scratch(const struct hs_database *db, uint64_t id);

/* Whether run_filter consults prefilters at all (default on). For tests,
 * which compare verdicts with and without it; not for production use. */
void mg_policy_prefilter_set_enabled(bool on);
bool mg_policy_prefilter_enabled(void);

/* For tests: custom patterns run through PCRE2 and prefilter scans done by
 * the calling thread since it started (run_filter counts them). */
extern __thread unsigned long mg_policy_pf_pcre_runs;
extern __thread unsigned long mg_policy_pf_scans;

/* Compiling a Hyperscan database, in a child process when a compiler
 * executable was set (see "compiling in a child process" in prefilter.c),
 * else here. kind: MG_POLICY_HSC_REGEX (hs_compile_multi; lens unused) or
 * MG_POLICY_HSC_LITERAL (hs_compile_lit_multi). Returns true with *db set;
 * false with *bad the index of the expression Hyperscan refused, or -1 for
 * any other failure. */
enum { MG_POLICY_HSC_REGEX = 0, MG_POLICY_HSC_LITERAL = 1 };
struct hs_database;
bool mg_policy_hs_compile(int kind, const char *const *exprs, const unsigned *flags, const unsigned *ids,
                          const size_t *lens, unsigned n, struct hs_database **db, int *bad);
/* exe answers `exe __hs-compile` (modelgate's main does); NULL: compile in
 * process. `serve` sets it to /proc/self/exe before anything compiles. */
void mg_policy_hs_set_compiler(const char *exe);
/* The `__hs-compile` side: reads a request on stdin, answers on stdout.
 * Returns the process exit code. */
int mg_policy_hs_compile_main(void);

#endif
