/* modelgate — compiled policies and a principal's effective policy.
 *
 * A compiled policy is immutable after mg_policy_compile and shared by
 * reference count, like configuration snapshots: a request keeps the policy
 * it started with while a new version is published. PCRE2 code is read-only
 * during matching, so every thread uses the same compiled patterns with its
 * own match data (see mg_policy_re_next). Each filter's custom patterns may
 * also get a Hyperscan prefilter database (prefilter.c), attached later by
 * mg_policy_prefilter_attach: building one can take far longer than the
 * PCRE2 compile (Unicode classes), so neither validation nor publishing a
 * new version waits for it. It lives as long as the compiled policy;
 * failing to build one changes nothing but speed.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/policy_int.h"

#include <stdio.h>
#include <stdlib.h>

static void free_filters(mg_policy_cfilter *f, size_t n)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < f[i].n_re; j++)
            pcre2_code_free(f[i].re[j]);
        free(f[i].re);
        free(f[i].re_min);
        free(f[i].placeholder);
        mg_policy_prefilter_free(atomic_load_explicit(&f[i].pf, memory_order_acquire));
    }
    free(f);
}

mg_policy *mg_policy_compile(mg_policy_doc *doc, mg_buf *errs)
{
    mg_policy *p = calloc(1, sizeof(*p));
    mg_policy_cfilter *cf = calloc(doc->n_filters + 1, sizeof(*cf));
    if (p == NULL || cf == NULL)
        goto oom;
    for (size_t i = 0; i < doc->n_filters; i++) {
        const mg_policy_filter_def *fd = &doc->filters[i];
        cf[i].def = fd;
        char ph[96];
        snprintf(ph, sizeof(ph), "[REDACTED:%s]", fd->name);
        cf[i].placeholder = strdup(ph);
        cf[i].re = calloc(fd->n_patterns + 1, sizeof(*cf[i].re));
        cf[i].re_min = calloc(fd->n_patterns + 1, sizeof(*cf[i].re_min));
        if (cf[i].placeholder == NULL || cf[i].re == NULL || cf[i].re_min == NULL)
            goto oom;
        for (size_t j = 0; j < fd->n_patterns; j++) {
            cf[i].re[j] = mg_policy_re_compile(fd->patterns[j], true);
            if (cf[i].re[j] == NULL) {
                mg_buf_printf(errs, "filters.%s.patterns[%zu]: does not compile\n", fd->name, j);
                free_filters(cf, doc->n_filters);
                free(p);
                return NULL;
            }
            if (pcre2_pattern_info(cf[i].re[j], PCRE2_INFO_MINLENGTH, &cf[i].re_min[j]) != 0)
                cf[i].re_min[j] = 0;
            cf[i].n_re++;
        }
    }
    atomic_init(&p->refs, 1);
    p->doc = doc;
    p->filters = cf;
    return p;
oom:
    mg_buf_append_str(errs, "(policy): out of memory\n");
    free_filters(cf, doc->n_filters);
    free(p);
    return NULL;
}

mg_policy *mg_policy_load(const char *json, size_t len, mg_buf *errs)
{
    mg_policy_doc *doc = mg_policy_doc_parse(json, len, errs);
    if (doc == NULL)
        return NULL;
    mg_policy *p = mg_policy_compile(doc, errs);
    if (p == NULL)
        mg_policy_doc_free(doc);
    return p;
}

mg_policy *mg_policy_ref(mg_policy *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void mg_policy_unref(mg_policy *p)
{
    if (p == NULL || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    free_filters(p->filters, p->doc->n_filters);
    mg_policy_doc_free(p->doc);
    free(p);
}

void mg_policy_prefilter_attach(mg_policy *p)
{
    mg_policy_detectors_prepare();
    for (size_t i = 0; i < p->doc->n_filters; i++) {
        mg_policy_cfilter *f = &p->filters[i];
        if (f->n_re == 0 || atomic_load_explicit(&f->pf, memory_order_acquire) != NULL)
            continue;
        mg_policy_prefilter *pf = mg_policy_prefilter_build((const char *const *)f->def->patterns, f->n_re);
        mg_policy_prefilter *none = NULL;
        /* release: a worker that sees the pointer sees the whole database */
        if (pf && !atomic_compare_exchange_strong_explicit(&f->pf, &none, pf, memory_order_acq_rel,
                                                           memory_order_acquire))
            mg_policy_prefilter_free(pf);   /* another caller attached one first */
    }
}

const mg_policy_doc *mg_policy_document(const mg_policy *p) { return p->doc; }

static int role_index(const mg_policy_doc *d, const char *name)
{
    /* roles are sorted by name */
    size_t lo = 0, hi = d->n_roles;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, d->roles[mid].name);
        if (c == 0)
            return (int)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

size_t mg_policy_map_roles(const mg_policy *p,
                           bool (*claim)(void *ctx, const char *name, const char *value),
                           void *ctx, const char **out, size_t cap)
{
    size_t n = 0;
    const mg_policy_doc *d = p->doc;
    for (size_t i = 0; i < d->n_mappings && n < cap; i++) {
        const mg_policy_mapping_def *m = &d->mappings[i];
        if (!claim(ctx, m->claim, m->equals))
            continue;
        int r = role_index(d, m->role);
        if (r < 0)
            continue;
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++)
            seen = out[j] == d->roles[r].name;
        if (!seen)
            out[n++] = d->roles[r].name;
    }
    return n;
}

mg_policy_effective *mg_policy_effective_new(mg_policy *p, const char *const *roles,
                                             size_t n_roles, size_t *n_unknown)
{
    const mg_policy_doc *d = p->doc;
    mg_policy_effective *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->roles = calloc(n_roles + 1, sizeof(*e->roles));
    e->filters = calloc(d->n_filters + 1, sizeof(*e->filters));
    if (e->roles == NULL || e->filters == NULL) {
        free(e->roles);
        free(e->filters);
        free(e);
        return NULL;
    }
    size_t unknown = 0;
    bool *has_filter = calloc(d->n_filters + 1, sizeof(bool));
    if (has_filter == NULL) {
        /* never hand out a view with filters silently missing */
        free(e->roles);
        free(e->filters);
        free(e);
        return NULL;
    }
    for (size_t i = 0; i < n_roles; i++) {
        int r = roles[i] != NULL ? role_index(d, roles[i]) : -1;
        if (r < 0) {
            unknown++;
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < e->n_roles && !dup; j++)
            dup = e->roles[j] == (size_t)r;
        if (dup)
            continue;
        e->roles[e->n_roles++] = (size_t)r;
        const mg_policy_role_def *rd = &d->roles[r];
        e->permissions |= rd->permissions;
        for (size_t k = 0; k < rd->n_filters; k++) {
            /* filters are sorted by name as well */
            size_t lo = 0, hi = d->n_filters;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(rd->filters[k], d->filters[mid].name);
                if (c == 0) {
                    lo = mid;
                    break;
                }
                if (c < 0)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            if (lo < d->n_filters && !has_filter[lo]) {
                has_filter[lo] = true;
                e->filters[e->n_filters++] = lo;
                e->directions |= d->filters[lo].direction;
            }
        }
    }
    free(has_filter);
    if (n_unknown != NULL)
        *n_unknown = unknown;
    e->p = mg_policy_ref(p);
    return e;
}

void mg_policy_effective_free(mg_policy_effective *e)
{
    if (e == NULL)
        return;
    mg_policy_unref(e->p);
    free(e->roles);
    free(e->filters);
    free(e);
}

unsigned mg_policy_effective_permissions(const mg_policy_effective *e) { return e->permissions; }
size_t mg_policy_effective_n_roles(const mg_policy_effective *e) { return e->n_roles; }

const mg_policy_role_def *mg_policy_effective_role(const mg_policy_effective *e, size_t i)
{
    return i < e->n_roles ? &e->p->doc->roles[e->roles[i]] : NULL;
}

bool mg_policy_effective_has_filters(const mg_policy_effective *e, mg_policy_direction dir)
{
    return (e->directions & dir) != 0;
}

static bool role_grants(const mg_policy_role_def *r, const char *model)
{
    for (size_t j = 0; j < r->n_models; j++)
        if (model == NULL || mg_policy_glob_match(r->models[j], model))
            return true;
    return false;
}

/* Most generous wins, slot by slot: unlimited beats any number, else the
 * larger number. Only roles granting the model take part. */
void mg_policy_effective_limits(const mg_policy_effective *e, const char *model,
                                mg_policy_limits *out)
{
    bool any = false;
    for (int s = 0; s < MG_POLICY_LIM__COUNT; s++)
        out->v[s] = 0;
    for (size_t i = 0; i < e->n_roles; i++) {
        const mg_policy_role_def *r = &e->p->doc->roles[e->roles[i]];
        if (!role_grants(r, model))
            continue;
        for (int s = 0; s < MG_POLICY_LIM__COUNT; s++) {
            int64_t v = r->limits.v[s];
            if (!any)
                out->v[s] = v;
            else if (out->v[s] != MG_POLICY_UNLIMITED && (v == MG_POLICY_UNLIMITED || v > out->v[s]))
                out->v[s] = v;
        }
        any = true;
    }
}
