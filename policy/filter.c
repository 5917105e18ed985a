/* modelgate — content filtering of requests, replies and streams.
 *
 * Every filter of the principal is evaluated on the original text (so a
 * redaction by one filter never hides text from a blocking one); blocking
 * filters run first and stop the scan. Redaction spans of all filters are
 * merged and replaced by their placeholders in one pass.
 *
 * The request walk covers everything the upstream is sent that carries
 * free text; see mg_policy_filter_request in policy.h for the list. It is
 * run on the canonical tree that is serialised for the upstream, so the
 * policy and the upstream read the same bytes.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/policy_int.h"
#include "gateway/json.h"

#include <stdlib.h>

/* ---- verdicts ---- */

void mg_policy_verdict_init(mg_policy_verdict *v) { memset(v, 0, sizeof(*v)); }

static void verdict_note(mg_policy_verdict *v, const char *rule, mg_policy_action a)
{
    for (size_t i = 0; i < v->n_rules; i++)
        if (v->rules[i].rule == rule && v->rules[i].action == a)
            return;
    if (v->n_rules == MG_POLICY_VERDICT_RULES) {
        v->rules_truncated = true;
        return;
    }
    v->rules[v->n_rules].rule = rule;
    v->rules[v->n_rules].action = a;
    v->n_rules++;
}

static void verdict_block(mg_policy_verdict *v, const char *rule, const char *reason)
{
    if (!v->blocked) {
        v->blocked = true;
        v->block_rule = rule;
        v->block_reason = reason;
    }
    verdict_note(v, rule, MG_POLICY_BLOCK);
}

mg_rc mg_policy_verdict_decision(const mg_policy_verdict *v, mg_buf *out)
{
    static const char *const verbs[] = { "blocked", "redacted", "flagged" };
    if (v->n_rules == 0)
        return mg_buf_append_str(out, "allowed");
    mg_rc rc = MG_OK;
    for (size_t i = 0; i < v->n_rules && rc == MG_OK; i++)
        rc = mg_buf_printf(out, "%s%s:%s", i ? " " : "", verbs[v->rules[i].action], v->rules[i].rule);
    if (rc == MG_OK && v->rules_truncated)
        rc = mg_buf_append_str(out, " ...");
    return rc;
}

/* ---- scanning one text ---- */

typedef struct scan_text {
    const char *t;
    size_t len;
    int utf;                    /* -1 not checked yet, 0 invalid, 1 valid */
    int pf_text;                /* mg_policy_pf_text once classified, else -1 */
    mg_policy_textinfo info;
} scan_text;

/* Runs one filter over the text; hits land in out (NULL: only whether
 * anything matched is wanted, stop at the first). Returns the number of
 * hits, or -1 when the regex engine failed. */
static long run_filter(const mg_policy_cfilter *f, scan_text *st, mg_policy_hits *out)
{
    mg_policy_hits local;
    mg_policy_hits *h = out;
    if (h == NULL) {
        mg_policy_hits_init(&local);
        h = &local;
    }
    size_t before = h->n;
    long rc = 0;
    for (int d = 0; d < MG_POLICY_DET__COUNT && rc == 0; d++) {
        if (!(f->def->detectors & (1u << d)))
            continue;
        if (mg_policy_detect_hits((mg_policy_detector)d, st->t, st->len, &st->info, h) != MG_OK)
            rc = -1;
        if (out == NULL && h->n > before)
            break;
    }
    if (rc == 0 && f->n_re > 0 && (out != NULL || h->n == before)) {
        /* custom patterns are UTF-8 aware; check the text once, not per call */
        if (st->utf < 0)
            st->utf = mg_utf8_valid(st->t, st->len) ? 1 : 0;
        if (st->utf == 0)
            rc = -1;
    }
    /* The prefilter (prefilter.c) scans the text at most once, when the first
     * pattern it covers would run; a pattern it rules out skips PCRE2. Any
     * failure of it just leaves every pattern to PCRE2. */
    const mg_policy_prefilter *pf = mg_policy_prefilter_enabled()
                                        ? atomic_load_explicit(&f->pf, memory_order_acquire) : NULL;
    uint64_t maybe[MG_POLICY_PF_WORDS];
    int pf_state = 0;           /* 0 not scanned, 1 maybe[] valid, -1 scan failed */
    for (size_t i = 0; i < f->n_re && rc == 0 && (out != NULL || h->n == before); i++) {
        if (f->re_min && st->len < f->re_min[i])
            continue;   /* shorter than any match of this pattern */
        if (pf != NULL && pf_state >= 0) {
            if (st->pf_text < 0)
                st->pf_text = (int)mg_policy_prefilter_classify(st->t, st->len);
            if (mg_policy_prefilter_covers(pf, i, (mg_policy_pf_text)st->pf_text)) {
                if (pf_state == 0) {
                    pf_state = mg_policy_prefilter_scan(pf, st->t, st->len, maybe) ? 1 : -1;
                    mg_policy_pf_scans++;
                }
                if (pf_state == 1 && !(maybe[i / 64] >> (i % 64) & 1))
                    continue;   /* cannot match: Hyperscan reports a superset */
            }
        }
        mg_policy_pf_pcre_runs++;
        size_t from = 0, s, e;
        int r;
        while ((r = mg_policy_re_next(f->re[i], st->t, st->len, from, true, &s, &e)) == 1) {
            if (e > s && mg_policy_hits_add(h, s, e, f->placeholder) != MG_OK) {
                r = -1;
                break;
            }
            from = e > s ? e : s + 1;
            if (out == NULL)
                break;
        }
        if (r < 0)
            rc = -1;
    }
    long n = rc < 0 ? -1 : (long)(h->n - before);
    if (out == NULL)
        mg_policy_hits_free(&local);
    return n;
}

static const char *block_reason(const mg_policy_cfilter *f)
{
    for (int d = 0; d < MG_POLICY_DET__COUNT; d++)
        if (f->def->detectors & (1u << d))
            return f->def->detectors == (1u << d) ? mg_policy_detector_name((mg_policy_detector)d)
                                                   : "detector";
    return "pattern";
}

/* Evaluates every filter of direction dir. Redaction hits go to redact
 * (normalised). Returns MG_OK (verdict may say blocked), MG_ENOMEM, or
 * MG_ERR on a regex failure, which blocks: fail closed. */
static mg_rc scan(const mg_policy_effective *e, unsigned dir, const char *t, size_t len,
                  mg_policy_hits *redact, mg_policy_verdict *v)
{
    scan_text st = { .t = t, .len = len, .utf = -1, .pf_text = -1 };
    mg_policy_textinfo_init(&st.info);
    const mg_policy_cfilter *fs = e->p->filters;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < e->n_filters; i++) {
            const mg_policy_cfilter *f = &fs[e->filters[i]];
            if (!(f->def->direction & dir) || (f->def->action == MG_POLICY_BLOCK) != (pass == 0))
                continue;
            long n = run_filter(f, &st, f->def->action == MG_POLICY_REDACT ? redact : NULL);
            if (n < 0) {
                verdict_block(v, f->def->name, st.utf == 0 ? "invalid UTF-8" : "filter error");
                return MG_ERR;
            }
            if (n == 0)
                continue;
            if (f->def->action == MG_POLICY_BLOCK) {
                verdict_block(v, f->def->name, block_reason(f));
                return MG_OK;
            }
            verdict_note(v, f->def->name, f->def->action);
        }
    }
    mg_policy_hits_normalize(redact);
    return MG_OK;
}

/* Appends t[from, to) with the hits inside it replaced by placeholders. */
static mg_rc apply(const char *t, size_t from, size_t to, const mg_policy_hits *h,
                   mg_buf *out, size_t *n_applied)
{
    size_t at = from;
    for (size_t i = 0; i < h->n; i++) {
        size_t s = h->v[i].start < from ? from : h->v[i].start, e = h->v[i].end;
        if (e <= from || s >= to)
            continue;
        if (e > to)
            e = to;
        if (mg_buf_append(out, t + at, s - at) != MG_OK ||
            mg_buf_append_str(out, h->v[i].placeholder) != MG_OK)
            return MG_ENOMEM;
        at = e;
        (*n_applied)++;
    }
    return mg_buf_append(out, t + at, to - at);
}

bool mg_policy_text_clean(const mg_policy_effective *e, mg_policy_direction dir, const char *text, size_t len)
{
    mg_policy_verdict v;
    mg_policy_verdict_init(&v);
    mg_policy_hits h;
    mg_policy_hits_init(&h);
    bool clean = scan(e, dir, text, len, &h, &v) == MG_OK && !v.blocked && h.n == 0 && v.n_rules == 0 &&
                 !v.rules_truncated;
    mg_policy_hits_free(&h);
    return clean;
}

mg_rc mg_policy_filter_text(const mg_policy_effective *e, mg_policy_direction dir,
                            const char *text, size_t len, mg_buf *out, mg_policy_verdict *v)
{
    mg_policy_hits h;
    mg_policy_hits_init(&h);
    mg_rc rc = scan(e, dir, text, len, &h, v);
    if (rc == MG_OK && !v->blocked)
        rc = apply(text, 0, len, &h, out, &v->redactions);
    mg_policy_hits_free(&h);
    return rc;
}

/* ---- requests ---- */

typedef struct walk {
    const mg_policy_effective *e;
    mg_policy_verdict *v;
    mg_buf tmp;
    mg_rc rc;
} walk;

static bool walk_stop(const walk *w) { return w->rc != MG_OK || w->v->blocked; }

static void walk_string(walk *w, cJSON *node)
{
    if (walk_stop(w) || !cJSON_IsString(node) || node->valuestring == NULL)
        return;
    const char *t = node->valuestring;
    size_t len = strlen(t);
    mg_policy_hits h;
    mg_policy_hits_init(&h);
    w->rc = scan(w->e, MG_POLICY_INPUT, t, len, &h, w->v);
    if (w->rc == MG_OK && !w->v->blocked && h.n > 0) {
        w->tmp.len = 0;
        w->rc = apply(t, 0, len, &h, &w->tmp, &w->v->redactions);
        if (w->rc == MG_OK)
            w->rc = mg_buf_append(&w->tmp, "", 1);
        if (w->rc == MG_OK && cJSON_SetValuestring(node, w->tmp.p) == NULL)
            w->rc = MG_ENOMEM;
    }
    mg_policy_hits_free(&h);
}

/* Members whose string values are structure, not text for the model: the
 * model and routing names, message roles, part types, ids that refer to
 * other parts of the request, and format enums. Everything else that is a
 * string is forwarded and may reach the model or the provider's logs, so
 * it is scanned (message names, response_format schemas, prediction
 * content, stop sequences, metadata, the `user` field, ...). */
static bool structural_key(const char *k)
{
    static const char *const keys[] = {"model", "role", "type", "id", "tool_call_id", "detail",
                                       "encoding_format", "format", "media_type", "mime_type",
                                       "service_tier", "reasoning_effort", "modalities"};
    if (k == NULL)
        return false;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(k, keys[i]) == 0)
            return true;
    return false;
}

/* Content parts that carry binary payloads (images, audio: URLs or base64)
 * rather than text; a text filter would only find noise in them. */
static bool binary_part(const cJSON *obj)
{
    const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "type"));
    return t && (strcmp(t, "image_url") == 0 || strcmp(t, "input_audio") == 0 || strcmp(t, "image") == 0 ||
                 strcmp(t, "audio") == 0 || strcmp(t, "file") == 0);
}

/* Every string anywhere under node (the members of one object or array),
 * except structural members and binary parts. */
static void walk_all(walk *w, cJSON *node)
{
    for (; node != NULL && !walk_stop(w); node = node->next) {
        if (structural_key(node->string))
            continue;
        if (cJSON_IsString(node))
            walk_string(w, node);
        else if (cJSON_IsArray(node) || (cJSON_IsObject(node) && !binary_part(node)))
            walk_all(w, node->child);
    }
}

/* Embeddings input: a string, an array of strings, or token ids. Token ids
 * cannot be read by a text filter; forwarding them unseen would let anyone
 * bypass the filters by tokenising first, so they are refused. */
static void walk_input(walk *w, cJSON *input)
{
    if (cJSON_IsString(input)) {
        walk_string(w, input);
        return;
    }
    if (!cJSON_IsArray(input))
        return;
    for (cJSON *it = input->child; it != NULL && !walk_stop(w); it = it->next) {
        if (cJSON_IsString(it)) {
            walk_string(w, it);
        } else {
            /* named after the first input filter: the rule that could not run */
            for (size_t i = 0; i < w->e->n_filters; i++) {
                const mg_policy_filter_def *f = w->e->p->filters[w->e->filters[i]].def;
                if (f->direction & MG_POLICY_INPUT) {
                    verdict_block(w->v, f->name, "unfilterable input");
                    break;
                }
            }
            return;
        }
    }
}

mg_rc mg_policy_filter_request(const mg_policy_effective *e, cJSON *body, mg_api api,
                               mg_policy_verdict *v)
{
    if (!mg_policy_effective_has_filters(e, MG_POLICY_INPUT) || !cJSON_IsObject(body))
        return MG_OK;
    walk w = { .e = e, .v = v, .rc = MG_OK };
    /* Every string the upstream will receive (messages of every role, the
     * whole history, tools, system, prompt, response_format, metadata, ...)
     * except structural members; embeddings input on its own because token
     * ids there cannot be read. */
    for (cJSON *m = body->child; m != NULL && !walk_stop(&w); m = m->next) {
        if (m->string && strcmp(m->string, "input") == 0) {
            walk_input(&w, m);
            continue;
        }
        if (structural_key(m->string))
            continue;
        if (cJSON_IsString(m))
            walk_string(&w, m);
        else if (cJSON_IsArray(m) || cJSON_IsObject(m))
            walk_all(&w, m->child);
    }
    MG_UNUSED(api);
    mg_buf_free(&w.tmp);
    return w.rc;
}

/* ---- streams ---- */

/* Bytes of already-emitted text kept in front of the pending text so
 * look-behinds (word boundaries, "not after a digit") see the same
 * neighbours as in a complete reply. */
#define STREAM_CONTEXT 32

struct mg_policy_stream {
    const mg_policy_effective *e;
    size_t holdback;
    mg_buf pend;                /* [0, ctx) emitted context, [ctx, len) not yet emitted */
    size_t ctx;
    bool blocked;
};

mg_policy_stream *mg_policy_stream_new(const mg_policy_effective *e, size_t holdback)
{
    mg_policy_stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->e = e;
    s->holdback = holdback ? holdback : MG_POLICY_STREAM_HOLDBACK;
    return s;
}

void mg_policy_stream_free(mg_policy_stream *s)
{
    if (s == NULL)
        return;
    mg_buf_free(&s->pend);
    free(s);
}

static bool utf8_cont(const mg_buf *b, size_t i) { return i < b->len && ((unsigned char)b->p[i] & 0xC0) == 0x80; }

/* Length of the prefix of b that ends on a character boundary. */
static size_t utf8_complete(const mg_buf *b)
{
    size_t i = b->len, back = 0;
    while (i > 0 && back < 4 && utf8_cont(b, i - 1)) {
        i--;
        back++;
    }
    if (i == 0)
        return b->len;
    unsigned char lead = (unsigned char)b->p[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return back + 1 < need ? i - 1 : b->len;
}

static mg_rc stream_process(mg_policy_stream *s, bool final, mg_buf *out, mg_policy_verdict *v)
{
    mg_buf *p = &s->pend;
    if (s->blocked)
        return MG_OK;
    if (!final && p->len - s->ctx <= s->holdback)
        return MG_OK;               /* nothing could be emitted yet */
    /* a delta may end inside a UTF-8 sequence: scan complete characters */
    size_t avail = final ? p->len : utf8_complete(p);
    mg_policy_hits h;
    mg_policy_hits_init(&h);
    mg_rc rc = scan(s->e, MG_POLICY_OUTPUT, p->p, avail, &h, v);
    if (rc != MG_OK || v->blocked) {
        s->blocked = true;
        mg_policy_hits_free(&h);
        return rc;
    }
    size_t cut = final ? p->len : avail > s->ctx + s->holdback ? avail - s->holdback : s->ctx;
    while (cut > s->ctx && utf8_cont(p, cut))
        cut--;
    /* a match still open at the cut is held back from its start */
    for (size_t i = 0; i < h.n && !final; i++)
        if (h.v[i].start < cut && (h.v[i].end > cut || h.v[i].end == avail) && h.v[i].end > s->ctx)
            cut = h.v[i].start > s->ctx ? h.v[i].start : s->ctx;
    if (!final && p->len - cut > MG_POLICY_STREAM_MAX_HOLD)
        cut = p->len;               /* give up holding: redact what is there */
    rc = apply(p->p, s->ctx, cut, &h, out, &v->redactions);
    mg_policy_hits_free(&h);
    if (rc != MG_OK)
        return rc;
    size_t keep_from = cut > STREAM_CONTEXT ? cut - STREAM_CONTEXT : 0;
    while (keep_from < cut && utf8_cont(p, keep_from))
        keep_from++;
    mg_buf_consume(p, keep_from);
    s->ctx = cut - keep_from;
    return MG_OK;
}

mg_rc mg_policy_stream_push(mg_policy_stream *s, const char *delta, size_t len,
                            mg_buf *out, mg_policy_verdict *v)
{
    if (s->blocked)
        return MG_OK;
    if (mg_buf_append(&s->pend, delta, len) != MG_OK)
        return MG_ENOMEM;
    return stream_process(s, false, out, v);
}

mg_rc mg_policy_stream_flush(mg_policy_stream *s, mg_buf *out, mg_policy_verdict *v)
{
    return stream_process(s, true, out, v);
}
