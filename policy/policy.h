/* modelgate — the policy engine: documents, compiled policies, model
 * allowlists, content detectors and filters, limits arithmetic.
 *
 * Life of a policy:
 *
 *   JSON text ──mg_policy_doc_parse──▶ mg_policy_doc (validated, plain C)
 *        ▲                                 │           │
 *        └──────mg_policy_doc_export───────┘   mg_policy_compile
 *                                                      ▼
 *                 mg_policy (immutable, refcounted, PCRE2 JIT patterns)
 *                                                      │ mg_policy_effective_new(role names)
 *                                                      ▼
 *        mg_policy_effective (one principal: models, filters, permissions, limits)
 *             │ model allowed?   │ filter request / reply / stream   │ limits
 *
 * Everything here is pure C over memory: no database, no globals except the
 * built-in detector patterns (compiled once, read-only). A compiled policy and
 * an effective policy are safe to use from several threads at once; PCRE2
 * match data is per thread.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_POLICY_H
#define MG_POLICY_H

#include "gateway/core.h"
#include "gateway/pipeline.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>

/* ------------------------------------------------------------------ */
/* Vocabulary                                                          */

typedef enum mg_policy_action {
    MG_POLICY_BLOCK,
    MG_POLICY_REDACT,
    MG_POLICY_FLAG,
} mg_policy_action;

typedef enum mg_policy_direction {
    MG_POLICY_INPUT = 1,
    MG_POLICY_OUTPUT = 2,
    MG_POLICY_BOTH = 3,
} mg_policy_direction;

/* Built-in detectors; names as in the document. */
typedef enum mg_policy_detector {
    MG_POLICY_DET_EMAIL,        /* "email"        [EMAIL] */
    MG_POLICY_DET_PHONE,        /* "phone"        [PHONE] */
    MG_POLICY_DET_CREDIT_CARD,  /* "credit_card"  [CREDIT_CARD] */
    MG_POLICY_DET_SSN,          /* "ssn"          [SSN] */
    MG_POLICY_DET_IBAN,         /* "iban"         [IBAN] */
    MG_POLICY_DET_API_KEY,      /* "api_key"      [SECRET] */
    MG_POLICY_DET_PRIVATE_KEY,  /* "private_key"  [PRIVATE_KEY] */
    MG_POLICY_DET__COUNT
} mg_policy_detector;

/* Admin permissions (bit flags). */
enum {
    MG_POLICY_PERM_POLICY_WRITE = 1u << 0, /* "policy:write" */
    MG_POLICY_PERM_POLICY_READ = 1u << 1,  /* "policy:read" */
    MG_POLICY_PERM_KEYS_WRITE = 1u << 2,   /* "keys:write" */
    MG_POLICY_PERM_KEYS_READ = 1u << 3,    /* "keys:read" */
    MG_POLICY_PERM_USAGE_READ = 1u << 4,   /* "usage:read" */
    MG_POLICY_PERM_AUDIT_READ = 1u << 5,   /* "audit:read" */
};

/* Limit slots. Values are int64; MG_POLICY_UNLIMITED (-1) means the role sets
 * no limit there. USD amounts are kept in micro-dollars (1 USD = 1,000,000)
 * so counters stay integer and atomic; the document speaks dollars. */
typedef enum mg_policy_limit {
    MG_POLICY_LIM_RPM,          /* "requests_per_minute" */
    MG_POLICY_LIM_TPM,          /* "tokens_per_minute" */
    MG_POLICY_LIM_TOKENS_DAY,   /* "tokens_per_day" */
    MG_POLICY_LIM_TOKENS_MONTH, /* "tokens_per_month" */
    MG_POLICY_LIM_USD_DAY,      /* "usd_per_day" (micro-USD) */
    MG_POLICY_LIM_USD_MONTH,    /* "usd_per_month" (micro-USD) */
    MG_POLICY_LIM_MAX_TOKENS,   /* "max_tokens" (not valid in team_limits) */
    MG_POLICY_LIM__COUNT
} mg_policy_limit;

#define MG_POLICY_UNLIMITED ((int64_t)-1)

typedef struct mg_policy_limits {
    int64_t v[MG_POLICY_LIM__COUNT];
} mg_policy_limits;

const char *mg_policy_detector_name(mg_policy_detector d);
const char *mg_policy_detector_placeholder(mg_policy_detector d);
int mg_policy_detector_from_name(const char *name);   /* -1 if unknown */
const char *mg_policy_limit_name(mg_policy_limit l);
const char *mg_policy_permission_name(unsigned bit);  /* NULL if not one bit we know */
unsigned mg_policy_permission_from_name(const char *name); /* 0 if unknown */
void mg_policy_limits_none(mg_policy_limits *l);      /* every slot unlimited */

/* ------------------------------------------------------------------ */
/* Document (policy/document.c)                                        */

typedef struct mg_policy_filter_def {
    char *name;
    unsigned detectors;        /* bit (1u << mg_policy_detector) */
    char **patterns;           /* custom PCRE2 regexes, as written */
    size_t n_patterns;
    mg_policy_action action;
    mg_policy_direction direction;
} mg_policy_filter_def;

typedef struct mg_policy_role_def {
    char *name;
    char **models;             /* allowlist entries, `*` globs */
    size_t n_models;
    char **filters;            /* names of filters (all defined) */
    size_t n_filters;
    mg_policy_limits limits;       /* per user holding the role */
    mg_policy_limits team_limits;  /* all users of the role together */
    unsigned permissions;
} mg_policy_role_def;

typedef struct mg_policy_mapping_def {
    char *claim;
    char *equals;
    char *role;
} mg_policy_mapping_def;

/* A validated policy document. Roles and filters are kept sorted by name
 * (the canonical order), role mappings in document order. */
typedef struct mg_policy_doc {
    mg_policy_role_def *roles;
    size_t n_roles;
    mg_policy_filter_def *filters;
    size_t n_filters;
    mg_policy_mapping_def *mappings;
    size_t n_mappings;
} mg_policy_doc;

/* Parses and validates a policy document. Collects every error, one line
 * each, "json.path: message\n", appended to errs. Returns a new document
 * (free with mg_policy_doc_free) or NULL when there was any error. */
mg_policy_doc *mg_policy_doc_parse(const char *json, size_t len, mg_buf *errs);
mg_policy_doc *mg_policy_doc_from_json(const cJSON *root, mg_buf *errs);
void mg_policy_doc_free(mg_policy_doc *doc);

/* Canonical JSON (2-space indent, keys in a fixed order, roles and filters
 * sorted by name, unlimited slots omitted), newline-terminated. Two
 * documents with the same meaning export to the same bytes. */
mg_rc mg_policy_doc_export(const mg_policy_doc *doc, mg_buf *out);

/* A readable diff from a to b: one line per changed leaf path, sorted by
 * path: "+ path: value" (added), "- path: value" (removed),
 * "~ path: old -> new" (changed). Arrays are compared as a whole, role
 * mappings as a set. Nothing is appended when they are equal. */
mg_rc mg_policy_diff(const mg_policy_doc *a, const mg_policy_doc *b, mg_buf *out);

/* ------------------------------------------------------------------ */
/* Compiled policy (policy/compile.c)                                  */

typedef struct mg_policy mg_policy;

/* Compiles a validated document (PCRE2 JIT). Takes ownership of doc on
 * success only; on failure returns NULL with a message in errs (only if the
 * machine is out of memory or a pattern that validated fails to JIT).
 * refs starts at 1. */
mg_policy *mg_policy_compile(mg_policy_doc *doc, mg_buf *errs);
/* Parse + validate + compile in one step. */
mg_policy *mg_policy_load(const char *json, size_t len, mg_buf *errs);
mg_policy *mg_policy_ref(mg_policy *p);
void mg_policy_unref(mg_policy *p);
const mg_policy_doc *mg_policy_document(const mg_policy *p);
/* Builds the Hyperscan prefilter of every filter's custom patterns and
 * publishes each to the (possibly already shared) policy; workers pick them
 * up with their next scan. Slow (tens of ms per pattern, more for Unicode
 * classes) and only an optimisation, so it runs after the policy is in
 * force, on the thread that published it. The caller holds a reference. */
void mg_policy_prefilter_attach(mg_policy *p);

/* Roles granted by an identity's claims via the role mappings. claim(ctx,
 * name, value) says whether the claim `name` equals or (for arrays)
 * contains value. Appends distinct role names (pointers into the policy,
 * valid while a reference is held) to out, up to cap; returns the count. */
size_t mg_policy_map_roles(const mg_policy *p,
                           bool (*claim)(void *ctx, const char *name, const char *value),
                           void *ctx, const char **out, size_t cap);

/* One principal's view of a policy.
 *
 * Models and permissions are the union over its roles; filters the union
 * (each filter once). Limits: "the most generous role applies", slot by
 * slot, among the roles that grant the model in question (a role that does
 * not grant a model does not loosen its limits, so a permissions-only role
 * such as "finance" never lifts an engineer's budget). In a slot, a role with
 * no limit there (unlimited) beats any number; otherwise the largest number
 * wins. So {rpm 60} + {rpm 600} → 600; {rpm 60} + {no rpm} → unlimited. */
typedef struct mg_policy_effective mg_policy_effective;

/* Role names the policy does not define are ignored (e.g. an API key issued
 * for a role since deleted grants nothing); *n_unknown tells how many
 * (may be NULL). Holds a reference to p. NULL on OOM. */
mg_policy_effective *mg_policy_effective_new(mg_policy *p, const char *const *roles,
                                             size_t n_roles, size_t *n_unknown);
void mg_policy_effective_free(mg_policy_effective *e);

bool mg_policy_effective_model_allowed(const mg_policy_effective *e, const char *model);
unsigned mg_policy_effective_permissions(const mg_policy_effective *e);
/* Limits for a request to model (NULL: over every role granting any model).
 * When no role grants the model every slot is 0 (nothing allowed). */
void mg_policy_effective_limits(const mg_policy_effective *e, const char *model,
                                mg_policy_limits *out);
size_t mg_policy_effective_n_roles(const mg_policy_effective *e);
const mg_policy_role_def *mg_policy_effective_role(const mg_policy_effective *e, size_t i);

/* ------------------------------------------------------------------ */
/* Globs (policy/match.c)                                              */

/* `*` matches any run of bytes (also none); everything else matches itself,
 * case-sensitively. */
bool mg_policy_glob_match(const char *pattern, const char *s);

/* ------------------------------------------------------------------ */
/* Detectors (policy/detectors.c)                                      */

typedef struct mg_policy_span {
    size_t start, end;          /* byte offsets, end exclusive */
} mg_policy_span;

/* Called for each match, in text order; return false to stop early. */
typedef bool (*mg_policy_span_cb)(void *ctx, mg_policy_span s);

/* Finds every match of a built-in detector in text. Candidates come from
 * PCRE2 patterns; C validators (Luhn, mod-97, SSN rules, boundary checks)
 * drop false positives. MG_ERR if the regex engine failed (match limit). */
mg_rc mg_policy_detect(mg_policy_detector d, const char *text, size_t len,
                       mg_policy_span_cb cb, void *ctx);

/* The validators, exported for tests and reuse. Digits may contain spaces
 * and dashes, which are skipped. */
bool mg_policy_luhn_ok(const char *digits, size_t n);
bool mg_policy_iban_ok(const char *s, size_t n);   /* spaces skipped */
bool mg_policy_ssn_ok(const char *s, size_t n);    /* "AAA-GG-SSSS" or "AAA GG SSSS" */

/* ------------------------------------------------------------------ */
/* Filtering (policy/filter.c)                                         */

#define MG_POLICY_VERDICT_RULES 16

typedef struct mg_policy_verdict {
    bool blocked;
    const char *block_rule;     /* filter name that blocked (policy-owned) */
    const char *block_reason;   /* detector name, "pattern", or "unfilterable input" */
    size_t redactions;          /* spans replaced */
    struct {
        const char *rule;       /* filter name (policy-owned) */
        mg_policy_action action;
    } rules[MG_POLICY_VERDICT_RULES];  /* each rule that acted, once */
    size_t n_rules;
    bool rules_truncated;
} mg_policy_verdict;

void mg_policy_verdict_init(mg_policy_verdict *v);
/* "redacted:pii flagged:audit blocked:secrets" — for the ledger's decision
 * column; "allowed" when nothing acted. Never contains content. */
mg_rc mg_policy_verdict_decision(const mg_policy_verdict *v, mg_buf *out);

/* Applies every input-direction filter of the principal to every string
 * the upstream will receive in a canonical (OpenAI-shaped) body: all
 * messages of every role and every member of them (content strings and
 * parts, names, tool-call arguments, tool results), tools, system, prompt,
 * response_format, prediction, stop, metadata, user, and members no one
 * knows yet — everything except structural members (model, role, type,
 * ids, format enums) and binary parts (images, audio). Redactions are
 * written into the tree in place. A block stops at the first blocking rule.
 * Token-id embeddings input cannot be read, so with any input filter it is
 * blocked ("unfilterable input") rather than forwarded unseen.
 * MG_OK with the verdict filled; MG_ENOMEM; MG_ERR when a pattern hit the
 * PCRE2 match limit (the verdict is then set to blocked: fail closed). */
mg_rc mg_policy_filter_request(const mg_policy_effective *e, cJSON *body, mg_api api,
                               mg_policy_verdict *v);

/* Applies the output (or input) filters to one complete text. The text with
 * redactions applied is appended to out (also when nothing matched, so the
 * caller can always send out). Same return convention as above. */
mg_rc mg_policy_filter_text(const mg_policy_effective *e, mg_policy_direction dir,
                            const char *text, size_t len, mg_buf *out,
                            mg_policy_verdict *v);
/* True when no filter of direction dir would act on text (block, redact
 * or flag); false when one would, or on an error. Nothing is recorded. */
bool mg_policy_text_clean(const mg_policy_effective *e, mg_policy_direction dir, const char *text, size_t len);

/* Stream filter: output filtering for text that arrives in deltas.
 *
 * Each push appends the delta to a pending buffer and scans it. Everything
 * but the last `holdback` bytes is emitted (redacted) at once; the tail is
 * held because a match may continue in the next delta. Any match of up to
 * `holdback` bytes is therefore caught however the stream is cut. A match
 * that is still growing at the cut is held back from its start, up to
 * MG_POLICY_STREAM_MAX_HOLD bytes (covers PEM private keys); past that its
 * text so far is replaced by the placeholder and emitted.
 *
 * Latency: the client sees each byte once `holdback` more bytes have
 * arrived (default 256 bytes, about 50-60 tokens, i.e. well under a second
 * at usual generation speeds), and the last `holdback` bytes at flush. A
 * principal without output filters gets no stream filter at all (pass
 * mg_policy_effective_has_filters() first) and no added latency. */
#define MG_POLICY_STREAM_HOLDBACK 256
#define MG_POLICY_STREAM_MAX_HOLD (16 * 1024)

typedef struct mg_policy_stream mg_policy_stream;

bool mg_policy_effective_has_filters(const mg_policy_effective *e, mg_policy_direction dir);
/* holdback 0 = MG_POLICY_STREAM_HOLDBACK. Holds a pointer to e (the caller
 * keeps e alive until mg_policy_stream_free). NULL on OOM. */
mg_policy_stream *mg_policy_stream_new(const mg_policy_effective *e, size_t holdback);
/* Appends safe text to out. After a block (v->blocked) nothing more is ever
 * emitted; the caller ends the stream with an error event. */
mg_rc mg_policy_stream_push(mg_policy_stream *s, const char *delta, size_t len,
                            mg_buf *out, mg_policy_verdict *v);
/* End of stream: emits the held tail (redacted). */
mg_rc mg_policy_stream_flush(mg_policy_stream *s, mg_buf *out, mg_policy_verdict *v);
void mg_policy_stream_free(mg_policy_stream *s);

/* ------------------------------------------------------------------ */
/* Limits arithmetic (policy/limits.c)                                 */

/* Sliding one-minute window of 60 one-second buckets. Each bucket is one
 * 64-bit atomic (second << 32 | count), so add and sum are lock-free and
 * constant time (60 loads). Check-then-add is not one atomic step: N
 * threads racing at the limit may overshoot by at most N-1 requests. */
#define MG_POLICY_WINDOW_SECONDS 60
typedef struct mg_policy_window {
    _Atomic uint64_t bucket[MG_POLICY_WINDOW_SECONDS];
} mg_policy_window;

/* Sum of the window as of second now_s (a monotonic second count). */
int64_t mg_policy_window_sum(const mg_policy_window *w, uint64_t now_s);
/* Adds delta (may be negative, for settling an estimate) at now_s. */
void mg_policy_window_add(mg_policy_window *w, uint64_t now_s, int64_t delta);
/* Admits n more if sum + n <= limit (then adds n) and returns 0; otherwise
 * adds nothing and returns the seconds until enough expires (>= 1; 60 when
 * n alone exceeds the limit). limit < 0: always admitted. */
int mg_policy_window_admit(mg_policy_window *w, uint64_t now_s, int64_t n, int64_t limit);

/* Budget counter for one period (a day or a month) — hard cap.
 * `committed` = settled use + outstanding reservations; a reservation is
 * admitted only if committed + amount <= limit, by compare-and-swap, so in
 * one process the cap holds exactly under any concurrency. It can only be
 * exceeded when a request's real usage exceeds its reservation (prompt
 * underestimated); the overshoot is bounded by that difference summed over
 * requests in flight. */
typedef struct mg_policy_budget {
    _Atomic int64_t committed;
    _Atomic int64_t used;
    _Atomic int64_t period;     /* period id: day or month number; a new id resets */
} mg_policy_budget;

typedef struct mg_policy_reservation {
    int64_t amount;
    int64_t period;
    bool held;
} mg_policy_reservation;

/* limit < 0: unlimited (nothing reserved, res->held false, returns true). */
bool mg_policy_budget_reserve(mg_policy_budget *b, int64_t period, int64_t limit,
                              int64_t amount, mg_policy_reservation *res);
/* Replaces the reservation with the real amount (usage may be larger). A
 * reservation from a period since rolled over is dropped (that period's
 * counter was reset; the ledger has the real numbers). */
void mg_policy_budget_settle(mg_policy_budget *b, mg_policy_reservation *res, int64_t actual);
/* Gives the reservation back (request failed before any usage). */
void mg_policy_budget_release(mg_policy_budget *b, mg_policy_reservation *res);
int64_t mg_policy_budget_used(const mg_policy_budget *b, int64_t period);

/* Period ids and Retry-After for budgets, UTC. */
int64_t mg_policy_day_id(int64_t unix_s);      /* days since 1970-01-01 */
int64_t mg_policy_month_id(int64_t unix_s);    /* year * 12 + month0 */
int64_t mg_policy_seconds_to_next_day(int64_t unix_s);
int64_t mg_policy_seconds_to_next_month(int64_t unix_s);

/* All budgets of one principal (or team) key: tokens and USD, per day and
 * per month. */
typedef struct mg_policy_budgets {
    mg_policy_budget tokens_day, tokens_month, usd_day, usd_month;
} mg_policy_budgets;

typedef struct mg_policy_budget_hold {
    mg_policy_reservation tokens_day, tokens_month, usd_day, usd_month;
} mg_policy_budget_hold;

/* Reserves tokens and micro-USD in all four budgets against the limits, all
 * or nothing. On refusal returns false, *which = the limit that refused and
 * *retry_after_s = seconds until its period rolls over. */
bool mg_policy_budgets_reserve(mg_policy_budgets *b, const mg_policy_limits *lim,
                               int64_t unix_s, int64_t tokens, int64_t micro_usd,
                               mg_policy_budget_hold *h, mg_policy_limit *which,
                               int64_t *retry_after_s);
void mg_policy_budgets_settle(mg_policy_budgets *b, mg_policy_budget_hold *h,
                              int64_t tokens, int64_t micro_usd);
void mg_policy_budgets_release(mg_policy_budgets *b, mg_policy_budget_hold *h);

/* Price arithmetic: price per million tokens in USD is exactly micro-USD per
 * token. Rounds up, so a reservation never undercounts. */
int64_t mg_policy_cost_micro_usd(int64_t prompt_tokens, int64_t completion_tokens,
                                 double input_per_mtok, double output_per_mtok);

/* Worst-case prompt size: text bytes / 2 plus 8 per message and the tools
 * definitions — deliberately above real tokenizers (~4 bytes per token for
 * English) so reservations overestimate. */
int64_t mg_policy_estimate_prompt_tokens(const cJSON *body, mg_api api);

/* How many completions the request asks for (`n`): each may run to
 * max_tokens, so the worst case multiplies. 1 when absent or not above 1;
 * -1 when above MG_POLICY_MAX_CHOICES (the caller refuses with 400). */
#define MG_POLICY_MAX_CHOICES 128
int64_t mg_policy_completions(const cJSON *body);

/* max_tokens cap: clamps rather than rejects. When the client asks for more
 * than cap, or sets nothing, the body's limit is set to cap (the field the
 * client used: max_completion_tokens or max_tokens; `max_tokens` when none)
 * and *clamped is true, so the gateway can say so in a response header
 * (X-Modelgate-Max-Tokens: <cap>; clamped). cap < 0: nothing changes.
 * *effective = the limit the upstream will work under, or -1 when neither
 * the client nor the policy set one (the caller then reserves a default).
 * MG_ENOMEM if the tree could not be changed. */
mg_rc mg_policy_clamp_max_tokens(cJSON *body, int64_t cap, int64_t *effective, bool *clamped);

/* ------------------------------------------------------------------ */
/* Explaining (policy/policy.c)                                        */

/* For /auth/me: adds a member "policy" to the JSON object that out ends
 * with (its closing brace is moved after it): the roles, allowed model
 * patterns, filters (name, action, direction) and every limit that applies
 * to the request's principal, per user and per role (team), each with its
 * value, what is used and reserved, what is left and when it resets
 * (docs/policy.md shows the shape). req->policy must have been resolved
 * (mg_policy_resolve); without it "policy" is null. MG_ERR if out does not
 * end with '}', MG_ENOMEM. */
mg_rc mg_policy_describe(const mg_req *req, mg_buf *out);

#endif
