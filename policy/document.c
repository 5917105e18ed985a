/* modelgate — policy documents: parse, validate, export, diff.
 *
 * Validation walks the whole document and collects every error with the JSON
 * path it concerns, so an admin fixes a document in one round instead of one
 * error per try. Custom regexes are compiled here (and thrown away) so a bad
 * pattern is an import error, never a runtime surprise.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/policy_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- vocabulary ---- */

static const char *const detector_names[MG_POLICY_DET__COUNT] = {
    "email", "phone", "credit_card", "ssn", "iban", "api_key", "private_key",
};
static const char *const detector_placeholders[MG_POLICY_DET__COUNT] = {
    "[EMAIL]", "[PHONE]", "[CREDIT_CARD]", "[SSN]", "[IBAN]", "[SECRET]", "[PRIVATE_KEY]",
};
static const char *const limit_names[MG_POLICY_LIM__COUNT] = {
    "requests_per_minute", "tokens_per_minute", "tokens_per_day", "tokens_per_month",
    "usd_per_day", "usd_per_month", "max_tokens",
};
static const char *const permission_names[] = {
    "policy:write", "policy:read", "keys:write", "keys:read", "usage:read", "audit:read",
};
static const char *const action_names[] = { "block", "redact", "flag" };
static const char *const direction_names[] = { NULL, "input", "output", "both" };

const char *mg_policy_detector_name(mg_policy_detector d)
{
    return (unsigned)d < MG_POLICY_DET__COUNT ? detector_names[d] : "?";
}

const char *mg_policy_detector_placeholder(mg_policy_detector d)
{
    return (unsigned)d < MG_POLICY_DET__COUNT ? detector_placeholders[d] : "[REDACTED]";
}

int mg_policy_detector_from_name(const char *name)
{
    for (int i = 0; i < MG_POLICY_DET__COUNT; i++)
        if (strcmp(name, detector_names[i]) == 0)
            return i;
    return -1;
}

const char *mg_policy_limit_name(mg_policy_limit l)
{
    return (unsigned)l < MG_POLICY_LIM__COUNT ? limit_names[l] : "?";
}

const char *mg_policy_permission_name(unsigned bit)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(permission_names); i++)
        if (bit == 1u << i)
            return permission_names[i];
    return NULL;
}

unsigned mg_policy_permission_from_name(const char *name)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(permission_names); i++)
        if (strcmp(name, permission_names[i]) == 0)
            return 1u << i;
    return 0;
}

void mg_policy_limits_none(mg_policy_limits *l)
{
    for (int i = 0; i < MG_POLICY_LIM__COUNT; i++)
        l->v[i] = MG_POLICY_UNLIMITED;
}

/* ---- validation context: a JSON path stack and the error sink ---- */

typedef struct vctx {
    mg_buf *errs;
    int n_errs;
    bool oom;
    char path[512];
    size_t plen;
} vctx;

static size_t path_push(vctx *c, const char *fmt, const char *s, size_t idx)
{
    size_t saved = c->plen;
    int w;
    if (s != NULL)
        w = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, fmt, s);
    else
        w = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, fmt, idx);
    if (w > 0)
        c->plen += (size_t)w < sizeof(c->path) - c->plen ? (size_t)w : sizeof(c->path) - c->plen - 1;
    return saved;
}

static size_t push_key(vctx *c, const char *key)
{
    return path_push(c, c->plen ? ".%s" : "%s", key, 0);
}

static size_t push_idx(vctx *c, size_t i) { return path_push(c, "[%zu]", NULL, i); }

static void path_pop(vctx *c, size_t saved)
{
    c->plen = saved;
    c->path[saved] = '\0';
}

static void verr(vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void verr(vctx *c, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->n_errs++;
    if (mg_buf_printf(c->errs, "%s: %s\n", c->plen ? c->path : "(document)", msg) != MG_OK)
        c->oom = true;
}

static char *dupstr(vctx *c, const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        c->oom = true;
    return d;
}

/* Names become JSON path segments and log labels: keep them plain. */
static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* cJSON keeps both members of a duplicated key; a document must have one
 * reading, so duplicates are errors. Also rejects keys not in `allowed`. */
static void check_keys(vctx *c, const cJSON *obj, const char *const *allowed, size_t n)
{
    for (const cJSON *m = obj->child; m != NULL; m = m->next) {
        bool known = false;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(m->string, allowed[i]) == 0;
        size_t saved = push_key(c, m->string);
        if (!known)
            verr(c, "unknown key");
        for (const cJSON *o = obj->child; o != m; o = o->next)
            if (strcmp(o->string, m->string) == 0) {
                verr(c, "duplicate key");
                break;
            }
        path_pop(c, saved);
    }
}

/* An array of distinct strings; NULL/0 on error (reported). */
static char **string_array(vctx *c, const cJSON *arr, size_t *n_out)
{
    *n_out = 0;
    if (!cJSON_IsArray(arr)) {
        verr(c, "must be an array of strings");
        return NULL;
    }
    int n = cJSON_GetArraySize(arr);
    char **out = calloc((size_t)n + 1, sizeof(*out));
    if (out == NULL) {
        c->oom = true;
        return NULL;
    }
    size_t k = 0, i = 0;
    for (const cJSON *it = arr->child; it != NULL; it = it->next, i++) {
        size_t saved = push_idx(c, i);
        if (!cJSON_IsString(it)) {
            verr(c, "must be a string");
        } else {
            bool dup = false;
            for (size_t j = 0; j < k && !dup; j++)
                dup = strcmp(out[j], it->valuestring) == 0;
            if (dup)
                verr(c, "duplicate entry \"%.80s\"", it->valuestring);
            else if ((out[k] = dupstr(c, it->valuestring)) != NULL)
                k++;
        }
        path_pop(c, saved);
    }
    *n_out = k;
    return out;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- limits ---- */

#define MAX_COUNT 9007199254740992.0 /* 2^53: exact in a double */
#define MAX_USD 1e12

static void parse_limits(vctx *c, const cJSON *obj, mg_policy_limits *out, bool team)
{
    mg_policy_limits_none(out);
    if (!cJSON_IsObject(obj)) {
        verr(c, "must be an object");
        return;
    }
    for (const cJSON *m = obj->child; m != NULL; m = m->next) {
        size_t saved = push_key(c, m->string);
        int slot = -1;
        for (int i = 0; i < MG_POLICY_LIM__COUNT; i++)
            if (strcmp(m->string, limit_names[i]) == 0)
                slot = i;
        if (slot < 0 || (team && slot == MG_POLICY_LIM_MAX_TOKENS)) {
            verr(c, slot < 0 ? "unknown key" : "unknown key (max_tokens is a per-user limit)");
        } else if (out->v[slot] != MG_POLICY_UNLIMITED) {
            verr(c, "duplicate key");
        } else if (!cJSON_IsNumber(m) || !isfinite(m->valuedouble)) {
            verr(c, "must be a number");
        } else if (m->valuedouble < 0) {
            verr(c, "must not be negative");
        } else if (slot == MG_POLICY_LIM_USD_DAY || slot == MG_POLICY_LIM_USD_MONTH) {
            if (m->valuedouble > MAX_USD)
                verr(c, "must be at most %.0f", MAX_USD);
            else
                out->v[slot] = (int64_t)llround(m->valuedouble * 1e6);
        } else if (m->valuedouble != floor(m->valuedouble) || m->valuedouble > MAX_COUNT) {
            verr(c, "must be a whole number");
        } else if (slot == MG_POLICY_LIM_MAX_TOKENS && m->valuedouble < 1) {
            verr(c, "must be at least 1");
        } else {
            out->v[slot] = (int64_t)m->valuedouble;
        }
        path_pop(c, saved);
    }
}

/* ---- filters ---- */

static void check_regex(vctx *c, const char *pat)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof(msg));
        verr(c, "invalid regex at offset %zu: %s", (size_t)off, (const char *)msg);
        return;
    }
    uint32_t cap;
    /* A pattern that can match the empty string would "match" everywhere:
     * redaction would loop on nothing and block would fire on every text. */
    if (pcre2_pattern_info(re, PCRE2_INFO_MINLENGTH, &cap) == 0 && cap == 0)
        verr(c, "regex can match the empty string");
    pcre2_code_free(re);
}

static int enum_from(vctx *c, const cJSON *v, const char *const *names, size_t n, const char *what)
{
    if (!cJSON_IsString(v)) {
        verr(c, "must be a string");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (names[i] != NULL && strcmp(v->valuestring, names[i]) == 0)
            return (int)i;
    verr(c, "unknown %s \"%.60s\"", what, v->valuestring);
    return -1;
}

static void parse_filter(vctx *c, const cJSON *obj, mg_policy_filter_def *f)
{
    static const char *const keys[] = { "detectors", "patterns", "action", "direction" };
    if (!cJSON_IsObject(obj)) {
        verr(c, "must be an object");
        return;
    }
    check_keys(c, obj, keys, MG_ARRAY_LEN(keys));
    const cJSON *det = cJSON_GetObjectItemCaseSensitive(obj, "detectors");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(obj, "patterns");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(obj, "action");
    const cJSON *dir = cJSON_GetObjectItemCaseSensitive(obj, "direction");
    size_t saved;
    if (det != NULL) {
        saved = push_key(c, "detectors");
        size_t n = 0;
        char **names = string_array(c, det, &n);
        for (size_t i = 0; i < n; i++) {
            int d = mg_policy_detector_from_name(names[i]);
            if (d < 0) {
                size_t s2 = push_idx(c, i);
                verr(c, "unknown detector \"%.60s\" (email, phone, credit_card, ssn, iban, api_key, private_key)",
                     names[i]);
                path_pop(c, s2);
            } else {
                f->detectors |= 1u << d;
            }
        }
        free_strings(names, n);
        path_pop(c, saved);
    }
    if (pat != NULL) {
        saved = push_key(c, "patterns");
        f->patterns = string_array(c, pat, &f->n_patterns);
        for (size_t i = 0; i < f->n_patterns; i++) {
            size_t s2 = push_idx(c, i);
            check_regex(c, f->patterns[i]);
            path_pop(c, s2);
        }
        path_pop(c, saved);
    }
    if (f->detectors == 0 && f->n_patterns == 0 && det == NULL && pat == NULL)
        verr(c, "needs \"detectors\" or \"patterns\"");
    else if (f->detectors == 0 && f->n_patterns == 0 && (cJSON_IsArray(det) || cJSON_IsArray(pat)))
        verr(c, "has no detector and no pattern");
    saved = push_key(c, "action");
    if (act == NULL)
        verr(c, "required (block, redact or flag)");
    else {
        int a = enum_from(c, act, action_names, MG_ARRAY_LEN(action_names), "action");
        if (a >= 0)
            f->action = (mg_policy_action)a;
    }
    path_pop(c, saved);
    saved = push_key(c, "direction");
    if (dir == NULL)
        verr(c, "required (input, output or both)");
    else {
        int d = enum_from(c, dir, direction_names, MG_ARRAY_LEN(direction_names), "direction");
        if (d > 0)
            f->direction = (mg_policy_direction)d;
    }
    path_pop(c, saved);
}

/* ---- roles ---- */

static const mg_policy_filter_def *find_filter(const mg_policy_doc *d, const char *name)
{
    for (size_t i = 0; i < d->n_filters; i++)
        if (strcmp(d->filters[i].name, name) == 0)
            return &d->filters[i];
    return NULL;
}

static const mg_policy_role_def *find_role(const mg_policy_doc *d, const char *name)
{
    for (size_t i = 0; i < d->n_roles; i++)
        if (strcmp(d->roles[i].name, name) == 0)
            return &d->roles[i];
    return NULL;
}

static void parse_role(vctx *c, const mg_policy_doc *doc, const cJSON *obj, mg_policy_role_def *r)
{
    static const char *const keys[] = { "models", "filters", "limits", "team_limits", "permissions" };
    mg_policy_limits_none(&r->limits);
    mg_policy_limits_none(&r->team_limits);
    if (!cJSON_IsObject(obj)) {
        verr(c, "must be an object");
        return;
    }
    check_keys(c, obj, keys, MG_ARRAY_LEN(keys));
    const cJSON *v;
    size_t saved;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "models")) != NULL) {
        saved = push_key(c, "models");
        r->models = string_array(c, v, &r->n_models);
        for (size_t i = 0; i < r->n_models; i++)
            if (r->models[i][0] == '\0') {
                size_t s2 = push_idx(c, i);
                verr(c, "must not be empty");
                path_pop(c, s2);
            }
        path_pop(c, saved);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "filters")) != NULL) {
        saved = push_key(c, "filters");
        r->filters = string_array(c, v, &r->n_filters);
        for (size_t i = 0; i < r->n_filters; i++)
            if (find_filter(doc, r->filters[i]) == NULL) {
                size_t s2 = push_idx(c, i);
                verr(c, "filter \"%.64s\" is not defined", r->filters[i]);
                path_pop(c, s2);
            }
        path_pop(c, saved);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "limits")) != NULL) {
        saved = push_key(c, "limits");
        parse_limits(c, v, &r->limits, false);
        path_pop(c, saved);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "team_limits")) != NULL) {
        saved = push_key(c, "team_limits");
        parse_limits(c, v, &r->team_limits, true);
        path_pop(c, saved);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "permissions")) != NULL) {
        saved = push_key(c, "permissions");
        size_t n = 0;
        char **perms = string_array(c, v, &n);
        for (size_t i = 0; i < n; i++) {
            unsigned bit = mg_policy_permission_from_name(perms[i]);
            if (bit == 0) {
                size_t s2 = push_idx(c, i);
                verr(c, "unknown permission \"%.60s\" (policy:write, policy:read, keys:write, "
                     "keys:read, usage:read, audit:read)", perms[i]);
                path_pop(c, s2);
            }
            r->permissions |= bit;
        }
        free_strings(perms, n);
        path_pop(c, saved);
    }
}

static void parse_mapping(vctx *c, const mg_policy_doc *doc, const cJSON *obj, mg_policy_mapping_def *m)
{
    static const char *const keys[] = { "claim", "equals", "role" };
    if (!cJSON_IsObject(obj)) {
        verr(c, "must be an object");
        return;
    }
    check_keys(c, obj, keys, MG_ARRAY_LEN(keys));
    char **slots[3] = { &m->claim, &m->equals, &m->role };
    for (size_t i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, keys[i]);
        size_t saved = push_key(c, keys[i]);
        if (v == NULL)
            verr(c, "required");
        else if (!cJSON_IsString(v))
            verr(c, "must be a string");
        else if (i != 1 && v->valuestring[0] == '\0')
            verr(c, "must not be empty");
        else if (i == 2 && find_role(doc, v->valuestring) == NULL)
            verr(c, "role \"%.64s\" is not defined", v->valuestring);
        else
            *slots[i] = dupstr(c, v->valuestring);
        path_pop(c, saved);
    }
}

/* ---- document ---- */

static int cmp_role(const void *a, const void *b)
{
    return strcmp(((const mg_policy_role_def *)a)->name, ((const mg_policy_role_def *)b)->name);
}

static int cmp_filter(const void *a, const void *b)
{
    return strcmp(((const mg_policy_filter_def *)a)->name, ((const mg_policy_filter_def *)b)->name);
}

/* Parses the members of a name → object map with per-entry parsing. */
static void *named_map(vctx *c, const cJSON *obj, size_t elem, size_t *n_out)
{
    *n_out = 0;
    if (!cJSON_IsObject(obj)) {
        verr(c, "must be an object");
        return NULL;
    }
    size_t n = (size_t)cJSON_GetArraySize(obj);
    char *arr = calloc(n + 1, elem);
    if (arr == NULL) {
        c->oom = true;
        return NULL;
    }
    for (const cJSON *m = obj->child; m != NULL; m = m->next) {
        size_t saved = push_key(c, m->string);
        bool dup = false;
        for (const cJSON *o = obj->child; o != m && !dup; o = o->next)
            dup = strcmp(o->string, m->string) == 0;
        if (dup)
            verr(c, "duplicate key");
        else if (!name_ok(m->string))
            verr(c, "invalid name (1-64 letters, digits, '_' or '-')");
        else if ((*(char **)(arr + *n_out * elem) = dupstr(c, m->string)) != NULL)
            (*n_out)++;
        path_pop(c, saved);
    }
    return arr;
}

mg_policy_doc *mg_policy_doc_from_json(const cJSON *root, mg_buf *errs)
{
    static const char *const keys[] = { "roles", "role_mappings", "filters" };
    vctx c = { .errs = errs };
    mg_policy_doc *doc = calloc(1, sizeof(*doc));
    if (doc == NULL)
        return NULL;
    if (!cJSON_IsObject(root)) {
        verr(&c, "the policy document must be a JSON object");
        goto out;
    }
    check_keys(&c, root, keys, MG_ARRAY_LEN(keys));
    const cJSON *filters = cJSON_GetObjectItemCaseSensitive(root, "filters");
    const cJSON *roles = cJSON_GetObjectItemCaseSensitive(root, "roles");
    const cJSON *maps = cJSON_GetObjectItemCaseSensitive(root, "role_mappings");
    size_t saved;

    /* filters first: roles refer to them, mappings refer to roles */
    if (filters != NULL) {
        saved = push_key(&c, "filters");
        doc->filters = named_map(&c, filters, sizeof(*doc->filters), &doc->n_filters);
        for (size_t i = 0; i < doc->n_filters; i++) {
            size_t s2 = push_key(&c, doc->filters[i].name);
            parse_filter(&c, cJSON_GetObjectItemCaseSensitive(filters, doc->filters[i].name),
                         &doc->filters[i]);
            path_pop(&c, s2);
        }
        path_pop(&c, saved);
    }
    if (roles != NULL) {
        saved = push_key(&c, "roles");
        doc->roles = named_map(&c, roles, sizeof(*doc->roles), &doc->n_roles);
        for (size_t i = 0; i < doc->n_roles; i++) {
            size_t s2 = push_key(&c, doc->roles[i].name);
            parse_role(&c, doc, cJSON_GetObjectItemCaseSensitive(roles, doc->roles[i].name),
                       &doc->roles[i]);
            path_pop(&c, s2);
        }
        path_pop(&c, saved);
    }
    if (maps != NULL) {
        saved = push_key(&c, "role_mappings");
        if (!cJSON_IsArray(maps)) {
            verr(&c, "must be an array");
        } else {
            size_t n = (size_t)cJSON_GetArraySize(maps), i = 0;
            doc->mappings = calloc(n + 1, sizeof(*doc->mappings));
            if (doc->mappings == NULL)
                c.oom = true;
            for (const cJSON *m = maps->child; m != NULL && doc->mappings != NULL; m = m->next, i++) {
                size_t s2 = push_idx(&c, i);
                parse_mapping(&c, doc, m, &doc->mappings[doc->n_mappings++]);
                path_pop(&c, s2);
            }
        }
        path_pop(&c, saved);
    }
out:
    if (c.oom && c.n_errs == 0)
        verr(&c, "out of memory");
    if (c.n_errs > 0 || c.oom) {
        mg_policy_doc_free(doc);
        return NULL;
    }
    if (doc->n_roles > 1)
        qsort(doc->roles, doc->n_roles, sizeof(*doc->roles), cmp_role);
    if (doc->n_filters > 1)
        qsort(doc->filters, doc->n_filters, sizeof(*doc->filters), cmp_filter);
    return doc;
}

mg_policy_doc *mg_policy_doc_parse(const char *json, size_t len, mg_buf *errs)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (root == NULL) {
        size_t off = end != NULL && end >= json ? (size_t)(end - json) : 0;
        mg_buf_printf(errs, "(document): invalid JSON near byte %zu\n", off);
        return NULL;
    }
    /* trailing garbage after the value */
    while (end != NULL && end < json + len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (end != NULL && end < json + len) {
        mg_buf_printf(errs, "(document): unexpected data after the JSON value at byte %zu\n",
                      (size_t)(end - json));
        cJSON_Delete(root);
        return NULL;
    }
    mg_policy_doc *doc = mg_policy_doc_from_json(root, errs);
    cJSON_Delete(root);
    return doc;
}

void mg_policy_doc_free(mg_policy_doc *doc)
{
    if (doc == NULL)
        return;
    for (size_t i = 0; i < doc->n_roles; i++) {
        mg_policy_role_def *r = &doc->roles[i];
        free(r->name);
        free_strings(r->models, r->n_models);
        free_strings(r->filters, r->n_filters);
    }
    free(doc->roles);
    for (size_t i = 0; i < doc->n_filters; i++) {
        free(doc->filters[i].name);
        free_strings(doc->filters[i].patterns, doc->filters[i].n_patterns);
    }
    free(doc->filters);
    for (size_t i = 0; i < doc->n_mappings; i++) {
        free(doc->mappings[i].claim);
        free(doc->mappings[i].equals);
        free(doc->mappings[i].role);
    }
    free(doc->mappings);
    free(doc);
}

/* ---- export ---- */

/* Micro-dollars as a decimal with no float rounding: 20000000 → 20,
 * 1500000 → 1.5. */
static mg_rc put_usd(mg_buf *out, int64_t micro)
{
    int64_t whole = micro / 1000000, frac = micro % 1000000;
    if (frac == 0)
        return mg_buf_printf(out, "%lld", (long long)whole);
    char f[8];
    snprintf(f, sizeof(f), "%06lld", (long long)frac);
    size_t n = 6;
    while (n > 0 && f[n - 1] == '0')
        n--;
    f[n] = '\0';
    return mg_buf_printf(out, "%lld.%s", (long long)whole, f);
}

static mg_rc put_strings(mg_buf *out, char *const *v, size_t n)
{
    mg_rc rc = mg_buf_append_str(out, "[");
    for (size_t i = 0; i < n && rc == MG_OK; i++) {
        if (i > 0)
            rc = mg_buf_append_str(out, ", ");
        if (rc == MG_OK)
            rc = mg_buf_append_json_str(out, v[i], strlen(v[i]));
    }
    return rc == MG_OK ? mg_buf_append_str(out, "]") : rc;
}

static bool limits_empty(const mg_policy_limits *l)
{
    for (int i = 0; i < MG_POLICY_LIM__COUNT; i++)
        if (l->v[i] != MG_POLICY_UNLIMITED)
            return false;
    return true;
}

static mg_rc put_limits(mg_buf *out, const mg_policy_limits *l)
{
    mg_rc rc = mg_buf_append_str(out, "{");
    bool first = true;
    for (int i = 0; i < MG_POLICY_LIM__COUNT && rc == MG_OK; i++) {
        if (l->v[i] == MG_POLICY_UNLIMITED)
            continue;
        rc = mg_buf_printf(out, "%s\"%s\": ", first ? " " : ", ", limit_names[i]);
        first = false;
        if (rc == MG_OK)
            rc = (i == MG_POLICY_LIM_USD_DAY || i == MG_POLICY_LIM_USD_MONTH)
                     ? put_usd(out, l->v[i])
                     : mg_buf_printf(out, "%lld", (long long)l->v[i]);
    }
    return rc == MG_OK ? mg_buf_append_str(out, " }") : rc;
}

static mg_rc put_role(mg_buf *out, const mg_policy_role_def *r)
{
    mg_rc rc = mg_buf_append_str(out, "    ");
    if (rc == MG_OK) rc = mg_buf_append_json_str(out, r->name, strlen(r->name));
    if (rc == MG_OK) rc = mg_buf_append_str(out, ": {\n      \"models\": ");
    if (rc == MG_OK) rc = put_strings(out, r->models, r->n_models);
    if (rc == MG_OK) rc = mg_buf_append_str(out, ",\n      \"filters\": ");
    if (rc == MG_OK) rc = put_strings(out, r->filters, r->n_filters);
    if (rc == MG_OK && !limits_empty(&r->limits)) {
        rc = mg_buf_append_str(out, ",\n      \"limits\": ");
        if (rc == MG_OK) rc = put_limits(out, &r->limits);
    }
    if (rc == MG_OK && !limits_empty(&r->team_limits)) {
        rc = mg_buf_append_str(out, ",\n      \"team_limits\": ");
        if (rc == MG_OK) rc = put_limits(out, &r->team_limits);
    }
    if (rc == MG_OK) rc = mg_buf_append_str(out, ",\n      \"permissions\": [");
    bool first = true;
    for (size_t i = 0; i < MG_ARRAY_LEN(permission_names) && rc == MG_OK; i++)
        if (r->permissions & (1u << i)) {
            rc = mg_buf_printf(out, "%s\"%s\"", first ? "" : ", ", permission_names[i]);
            first = false;
        }
    return rc == MG_OK ? mg_buf_append_str(out, "]\n    }") : rc;
}

static mg_rc put_filter(mg_buf *out, const mg_policy_filter_def *f)
{
    mg_rc rc = mg_buf_append_str(out, "    ");
    if (rc == MG_OK) rc = mg_buf_append_json_str(out, f->name, strlen(f->name));
    if (rc == MG_OK) rc = mg_buf_append_str(out, ": {");
    const char *sep = " ";
    if (rc == MG_OK && f->detectors) {
        rc = mg_buf_append_str(out, " \"detectors\": [");
        bool first = true;
        for (int d = 0; d < MG_POLICY_DET__COUNT && rc == MG_OK; d++)
            if (f->detectors & (1u << d)) {
                rc = mg_buf_printf(out, "%s\"%s\"", first ? "" : ", ", detector_names[d]);
                first = false;
            }
        if (rc == MG_OK) rc = mg_buf_append_str(out, "]");
        sep = ", ";
    }
    if (rc == MG_OK && f->n_patterns) {
        rc = mg_buf_printf(out, "%s\"patterns\": ", sep);
        if (rc == MG_OK) rc = put_strings(out, f->patterns, f->n_patterns);
        sep = ", ";
    }
    if (rc == MG_OK)
        rc = mg_buf_printf(out, "%s\"action\": \"%s\", \"direction\": \"%s\" }", sep,
                           action_names[f->action], direction_names[f->direction]);
    return rc;
}

mg_rc mg_policy_doc_export(const mg_policy_doc *doc, mg_buf *out)
{
    mg_rc rc = mg_buf_append_str(out, "{\n  \"roles\": {");
    for (size_t i = 0; i < doc->n_roles && rc == MG_OK; i++) {
        rc = mg_buf_append_str(out, i ? ",\n" : "\n");
        if (rc == MG_OK) rc = put_role(out, &doc->roles[i]);
    }
    if (rc == MG_OK) rc = mg_buf_append_str(out, doc->n_roles ? "\n  },\n" : "},\n");
    if (rc == MG_OK) rc = mg_buf_append_str(out, "  \"role_mappings\": [");
    for (size_t i = 0; i < doc->n_mappings && rc == MG_OK; i++) {
        const mg_policy_mapping_def *m = &doc->mappings[i];
        rc = mg_buf_append_str(out, i ? ",\n    { \"claim\": " : "\n    { \"claim\": ");
        if (rc == MG_OK) rc = mg_buf_append_json_str(out, m->claim, strlen(m->claim));
        if (rc == MG_OK) rc = mg_buf_append_str(out, ", \"equals\": ");
        if (rc == MG_OK) rc = mg_buf_append_json_str(out, m->equals, strlen(m->equals));
        if (rc == MG_OK) rc = mg_buf_append_str(out, ", \"role\": ");
        if (rc == MG_OK) rc = mg_buf_append_json_str(out, m->role, strlen(m->role));
        if (rc == MG_OK) rc = mg_buf_append_str(out, " }");
    }
    if (rc == MG_OK) rc = mg_buf_append_str(out, doc->n_mappings ? "\n  ],\n" : "],\n");
    if (rc == MG_OK) rc = mg_buf_append_str(out, "  \"filters\": {");
    for (size_t i = 0; i < doc->n_filters && rc == MG_OK; i++) {
        rc = mg_buf_append_str(out, i ? ",\n" : "\n");
        if (rc == MG_OK) rc = put_filter(out, &doc->filters[i]);
    }
    if (rc == MG_OK) rc = mg_buf_append_str(out, doc->n_filters ? "\n  }\n}\n" : "}\n}\n");
    return rc;
}

/* ---- diff ---- */

/* Leaves of the canonical export: objects are descended, arrays are one
 * leaf, role_mappings is a set of leaves keyed by the mapping itself. */
typedef struct leaf {
    char *path;
    char *value;
} leaf;

typedef struct leaves {
    leaf *v;
    size_t n, cap;
    bool oom;
} leaves;

static void leaf_add(leaves *L, const char *path, char *value)
{
    if (value == NULL) {
        L->oom = true;
        return;
    }
    if (L->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 32;
        leaf *nv = realloc(L->v, cap * sizeof(*nv));
        if (nv == NULL) {
            L->oom = true;
            free(value);
            return;
        }
        L->v = nv;
        L->cap = cap;
    }
    L->v[L->n].path = strdup(path);
    L->v[L->n].value = value;
    if (L->v[L->n].path == NULL) {
        L->oom = true;
        free(value);
        return;
    }
    L->n++;
}

static void flatten(leaves *L, const cJSON *node, char *path, size_t plen, size_t cap)
{
    if (cJSON_IsObject(node) && node->child != NULL) {
        for (const cJSON *m = node->child; m != NULL; m = m->next) {
            int w = snprintf(path + plen, cap - plen, plen ? ".%s" : "%s", m->string);
            size_t nl = w > 0 && (size_t)w < cap - plen ? plen + (size_t)w : cap - 1;
            if (plen == 0 && strcmp(m->string, "role_mappings") == 0 && cJSON_IsArray(m)) {
                for (const cJSON *it = m->child; it != NULL; it = it->next)
                    leaf_add(L, "role_mappings", cJSON_PrintUnformatted(it));
            } else {
                flatten(L, m, path, nl, cap);
            }
            path[plen] = '\0';
        }
        return;
    }
    leaf_add(L, path, cJSON_PrintUnformatted(node));
}

static int cmp_leaf(const void *a, const void *b)
{
    const leaf *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    return c ? c : strcmp(x->value, y->value);
}

static mg_rc doc_leaves(const mg_policy_doc *d, leaves *L)
{
    mg_buf json = {0};
    mg_rc rc = mg_policy_doc_export(d, &json);
    cJSON *root = rc == MG_OK ? cJSON_ParseWithLength(json.p, json.len) : NULL;
    mg_buf_free(&json);
    if (root == NULL)
        return MG_ENOMEM;
    char path[512] = "";
    flatten(L, root, path, 0, sizeof(path));
    cJSON_Delete(root);
    if (L->n > 1)
        qsort(L->v, L->n, sizeof(*L->v), cmp_leaf);
    return L->oom ? MG_ENOMEM : MG_OK;
}

static void leaves_free(leaves *L)
{
    for (size_t i = 0; i < L->n; i++) {
        free(L->v[i].path);
        free(L->v[i].value);
    }
    free(L->v);
}

mg_rc mg_policy_diff(const mg_policy_doc *a, const mg_policy_doc *b, mg_buf *out)
{
    leaves A = {0}, B = {0};
    mg_rc rc = doc_leaves(a, &A);
    if (rc == MG_OK)
        rc = doc_leaves(b, &B);
    size_t i = 0, j = 0;
    /* role_mappings is a set: equal path and value means "same"; at other
     * paths one value per path, so equal path with another value is "~" */
    while (rc == MG_OK && (i < A.n || j < B.n)) {
        int c = i >= A.n ? 1 : j >= B.n ? -1 : strcmp(A.v[i].path, B.v[j].path);
        bool set = (i < A.n && strcmp(A.v[i].path, "role_mappings") == 0) ||
                   (j < B.n && strcmp(B.v[j].path, "role_mappings") == 0);
        if (c == 0 && set)
            c = strcmp(A.v[i].value, B.v[j].value);
        if (c < 0) {
            rc = mg_buf_printf(out, "- %s: %s\n", A.v[i].path, A.v[i].value);
            i++;
        } else if (c > 0) {
            rc = mg_buf_printf(out, "+ %s: %s\n", B.v[j].path, B.v[j].value);
            j++;
        } else {
            if (strcmp(A.v[i].value, B.v[j].value) != 0)
                rc = mg_buf_printf(out, "~ %s: %s -> %s\n", A.v[i].path, A.v[i].value, B.v[j].value);
            i++;
            j++;
        }
    }
    leaves_free(&A);
    leaves_free(&B);
    return rc;
}
