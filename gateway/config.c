/* modelgate — configuration loader (YAML via libyaml).
 *
 * The file is loaded into a libyaml node tree (which keeps a line:column
 * mark per node) and walked against tables of typed slots, one table per
 * mapping, in the style of nginx's ngx_command_t: each entry names a key,
 * its type, where the value lands in the target struct and whether it is
 * required. Every problem is reported with the node's location and the
 * walk goes on, so one run of `modelgate check` lists all of them.
 * References between sections (deployment -> provider, fallback -> model)
 * are recorded during the walk and resolved at the end, so section order
 * in the file does not matter.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define CF_MAX_ERRORS 100
#define CF_MAX_FILE (4u << 20)     /* a config file is small; refuse anything absurd */
#define CF_MS_DAY (24ull * 3600 * 1000)

/* ------------------------------------------------------------------------ */
/* Value parsers shared with tests                                           */

/* Parses a run of decimal digits; false on none or on overflow. */
static bool parse_u64(const char **s, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *s = p;
    *out = v;
    return true;
}

mg_rc mg_config_parse_size(const char *s, size_t *out)
{
    /* Binary multiples only: "MB" is left out on purpose because half the
     * world reads it as 10^6 and the other half as 2^20. */
    static const struct { const char *suffix; unsigned shift; } units[] = {
        {"", 0}, {"k", 10}, {"K", 10}, {"KiB", 10}, {"m", 20}, {"M", 20},
        {"MiB", 20}, {"g", 30}, {"G", 30}, {"GiB", 30},
    };
    uint64_t v;
    if (s == NULL || !parse_u64(&s, &v))
        return MG_ERR;
    for (size_t i = 0; i < MG_ARRAY_LEN(units); i++) {
        if (strcmp(s, units[i].suffix) != 0)
            continue;
        if (v > (UINT64_MAX >> units[i].shift) || (v << units[i].shift) > SIZE_MAX)
            return MG_ERR;
        *out = (size_t)(v << units[i].shift);
        return MG_OK;
    }
    return MG_ERR;
}

mg_rc mg_config_parse_duration_ms(const char *s, uint64_t *out)
{
    /* "1h30m" style compounds are accepted, as in Go's time.ParseDuration. A
     * bare number is refused (is "30" seconds or milliseconds?) except "0". */
    static const struct { const char *unit; uint64_t ms; } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", CF_MS_DAY},
    };
    if (s == NULL || *s == '\0')
        return MG_ERR;
    if (strcmp(s, "0") == 0) {
        *out = 0;
        return MG_OK;
    }
    uint64_t total = 0;
    while (*s) {
        uint64_t v;
        if (!parse_u64(&s, &v))
            return MG_ERR;
        size_t u = 0, ulen = 0;
        for (size_t i = 0; i < MG_ARRAY_LEN(units); i++) {
            size_t n = strlen(units[i].unit);
            if (strncmp(s, units[i].unit, n) == 0 && n > ulen) {
                u = i;
                ulen = n;
            }
        }
        if (ulen == 0)
            return MG_ERR;
        s += ulen;
        if (v > UINT64_MAX / units[u].ms || total > UINT64_MAX - v * units[u].ms)
            return MG_ERR;
        total += v * units[u].ms;
    }
    *out = total;
    return MG_OK;
}

enum { CIDR_OK, CIDR_SYNTAX, CIDR_HOST_BITS };

static int cidr_parse(const char *s, mg_cfg_cidr *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
    if (hlen == 0 || hlen >= sizeof(host))
        return CIDR_SYNTAX;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    mg_cfg_cidr c = {0};
    if (inet_pton(AF_INET, host, c.addr) == 1)
        c.family = AF_INET;
    else if (inet_pton(AF_INET6, host, c.addr) == 1)
        c.family = AF_INET6;
    else
        return CIDR_SYNTAX;
    int maxp = c.family == AF_INET ? 32 : 128;
    c.prefix = maxp;
    if (slash) {
        const char *p = slash + 1;
        uint64_t v;
        if (!parse_u64(&p, &v) || *p != '\0' || v > (uint64_t)maxp || p - (slash + 1) > 3)
            return CIDR_SYNTAX;
        c.prefix = (int)v;
    }
    /* "10.1.2.3/8" is almost always a typo for "10.0.0.0/8" or ".../32";
     * refusing it beats guessing which one was meant. */
    for (int bit = c.prefix; bit < maxp; bit++)
        if (c.addr[bit / 8] & (0x80 >> (bit % 8)))
            return CIDR_HOST_BITS;
    *out = c;
    return CIDR_OK;
}

mg_rc mg_config_parse_cidr(const char *s, mg_cfg_cidr *out)
{
    if (s == NULL || out == NULL)
        return MG_ERR;
    return cidr_parse(s, out) == CIDR_OK ? MG_OK : MG_ERR;
}

bool mg_cidr_match(const mg_cfg_cidr *c, const struct sockaddr *sa)
{
    uint8_t a[16];
    int fam;
    if (c == NULL || sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        fam = AF_INET;
    } else if (sa->sa_family == AF_INET6) {
        memcpy(a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        fam = AF_INET6;
    } else {
        return false;
    }
    /* A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; compare
     * them in whichever form the CIDR was written. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (fam == AF_INET6 && c->family == AF_INET && memcmp(a, mapped, 12) == 0) {
        memmove(a, a + 12, 4);
        fam = AF_INET;
    } else if (fam == AF_INET && c->family == AF_INET6) {
        memmove(a + 12, a, 4);
        memcpy(a, mapped, 12);
        fam = AF_INET6;
    }
    if (fam != c->family)
        return false;
    int full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(a, c->addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (c->addr[full] & mask);
}

const mg_cfg_provider *mg_config_provider(const mg_config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->nproviders; i++)
        if (cfg->providers[i].name && strcmp(cfg->providers[i].name, name) == 0)
            return &cfg->providers[i];
    return NULL;
}

const mg_cfg_model *mg_config_model(const mg_config *cfg, const char *name, size_t n)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const char *m = cfg->models[i].name;
        if (m && strlen(m) == n && memcmp(m, name, n) == 0)
            return &cfg->models[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Freeing                                                                   */

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void mg_config_free(mg_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    for (size_t i = 0; cfg->listen && i < cfg->nlisten; i++) {
        free(cfg->listen[i].address);
        free(cfg->listen[i].tls_cert);
        free(cfg->listen[i].serve);
        free(cfg->listen[i].tls_key);
    }
    free(cfg->listen);
    free(cfg->public_url);
    free(cfg->trusted_proxies);
    free(cfg->database_url);
    free(cfg->oidc.issuer);
    free(cfg->oidc.client_id);
    free(cfg->oidc.client_secret);
    free_strv(cfg->oidc.scopes, cfg->oidc.nscopes);
    free_strv(cfg->oidc.audiences, cfg->oidc.naudiences);
    free(cfg->oidc.claim_groups);
    free(cfg->oidc.claim_email);
    free(cfg->oidc.claim_name);
    free(cfg->oidc.claim_cost_center);
    free(cfg->session.secret);
    free(cfg->master_key);
    for (size_t i = 0; cfg->providers && i < cfg->nproviders; i++) {
        mg_cfg_provider *p = &cfg->providers[i];
        free(p->name);
        free(p->type);
        free(p->base_url);
        free(p->api_key);
        free(p->api_version);
        free(p->region);
        free(p->aws_access_key_id);
        free(p->aws_secret_access_key);
        free(p->aws_session_token);
        free(p->tls_ca);
        free(p->upstream_client);
    }
    free(cfg->providers);
    for (size_t i = 0; cfg->models && i < cfg->nmodels; i++) {
        mg_cfg_model *m = &cfg->models[i];
        free(m->name);
        for (size_t d = 0; m->deployments && d < m->ndeployments; d++) {
            free(m->deployments[d].provider);
            free(m->deployments[d].model);
        }
        free(m->deployments);
        free_strv(m->fallbacks, m->nfallbacks);
    }
    free(cfg->models);
    free(cfg->journal_dir);
    free(cfg->log.level);
    free(cfg->log.access_log);
    free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Loader context and error reporting                                        */

enum { REF_PROVIDER, REF_MODEL };

/* A name that must resolve once the whole file is read. */
typedef struct cf_ref {
    int kind;
    yaml_mark_t mark;
    const char *name;              /* owned by the config */
    char kpath[256];
} cf_ref;

/* One error, kept until the end so the report can be sorted by position
 * (the walk finds cross-references and missing keys out of file order). */
typedef struct cf_error {
    size_t line, col, seq;
    char *text;
} cf_error;

typedef struct cf_ctx {
    const char *file;
    char *dir;                     /* directory of the file, for relative paths */
    yaml_document_t *doc;
    mg_buf *errs;
    int nerrs;
    bool oom;
    cf_error errv[CF_MAX_ERRORS];
    mg_config *cfg;
    char kpath[256];               /* dotted path of the key being read */
    size_t kplen;
    cf_ref *refs;
    size_t nrefs, caprefs;
} cf_ctx;

static void cf_verr(cf_ctx *c, yaml_mark_t m, const char *kpath, const char *fmt, va_list ap)
{
    char msg[768];
    if (c->nerrs++ >= CF_MAX_ERRORS)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    mg_buf b = {0};
    if (mg_buf_printf(&b, "%s:%zu:%zu: %s%s%s\n", c->file, m.line + 1, m.column + 1,
                      kpath && *kpath ? kpath : "", kpath && *kpath ? ": " : "", msg) != MG_OK) {
        mg_buf_free(&b);
        c->oom = true;
        return;
    }
    c->errv[c->nerrs - 1] = (cf_error){m.line, m.column, (size_t)c->nerrs, b.p};
}

static int error_cmp(const void *a, const void *b)
{
    const cf_error *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void flush_errors(cf_ctx *c)
{
    size_t n = c->nerrs < CF_MAX_ERRORS ? (size_t)c->nerrs : CF_MAX_ERRORS;
    qsort(c->errv, n, sizeof(c->errv[0]), error_cmp);
    for (size_t i = 0; i < n; i++) {
        if (c->errs && c->errv[i].text)
            mg_buf_append_str(c->errs, c->errv[i].text);
        free(c->errv[i].text);
    }
    if (c->errs && c->nerrs > CF_MAX_ERRORS)
        mg_buf_printf(c->errs, "%s: %d more errors not shown\n", c->file, c->nerrs - CF_MAX_ERRORS);
    if (c->errs && c->oom)
        mg_buf_printf(c->errs, "%s: out of memory\n", c->file);
    if (c->errs && c->errs->len && mg_buf_reserve(c->errs, 1) == MG_OK)
        c->errs->p[c->errs->len] = '\0';
}

/* Reports at m, prefixed with the path of the key being read. */
__attribute__((format(printf, 3, 4)))
static void cf_err(cf_ctx *c, yaml_mark_t m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cf_verr(c, m, c->kpath, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 4, 5)))
static void cf_err_path(cf_ctx *c, yaml_mark_t m, const char *kpath, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cf_verr(c, m, kpath, fmt, ap);
    va_end(ap);
}

static void *cf_nomem(cf_ctx *c, void *p)
{
    if (p == NULL)
        c->oom = true;
    return p;
}

static char *cf_strdup(cf_ctx *c, const char *s)
{
    return s ? cf_nomem(c, strdup(s)) : NULL;
}

static size_t kp_push_key(cf_ctx *c, const char *name)
{
    size_t saved = c->kplen;
    int n = snprintf(c->kpath + c->kplen, sizeof(c->kpath) - c->kplen, "%s%s",
                     c->kplen ? "." : "", name);
    if (n > 0)
        c->kplen = strnlen(c->kpath, sizeof(c->kpath) - 1);
    return saved;
}

static size_t kp_push_index(cf_ctx *c, size_t i)
{
    size_t saved = c->kplen;
    int n = snprintf(c->kpath + c->kplen, sizeof(c->kpath) - c->kplen, "[%zu]", i);
    if (n > 0)
        c->kplen = strnlen(c->kpath, sizeof(c->kpath) - 1);
    return saved;
}

static void kp_pop(cf_ctx *c, size_t saved)
{
    c->kplen = saved;
    c->kpath[saved] = '\0';
}

static yaml_node_t *node_at(cf_ctx *c, int index)
{
    return yaml_document_get_node(c->doc, index);
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !strcmp(v, "") || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

static const char *node_kind(const yaml_node_t *n)
{
    if (is_null(n))
        return "an empty value";
    switch (n->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return "a scalar";
    }
}

/* The pair whose key is key in mapping map, or NULL. Check hooks use it to
 * put an error on the right line. */
static yaml_node_pair_t *find_pair(cf_ctx *c, yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(c, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
            return p;
    }
    return NULL;
}

static yaml_node_t *map_get(cf_ctx *c, yaml_node_t *map, const char *key)
{
    yaml_node_pair_t *p = find_pair(c, map, key);
    return p ? node_at(c, p->value) : NULL;
}

/* Where key itself is written in map (the map's start if absent). */
static yaml_mark_t key_mark_of(cf_ctx *c, yaml_node_t *map, const char *key)
{
    yaml_node_pair_t *p = find_pair(c, map, key);
    return p ? node_at(c, p->key)->start_mark : map->start_mark;
}

/* Where the value of key is written in map (the map's start if absent). */
static yaml_mark_t mark_of(cf_ctx *c, yaml_node_t *map, const char *key)
{
    yaml_node_t *v = map_get(c, map, key);
    return v ? v->start_mark : map->start_mark;
}

/* Reports at the value of key in map (or at map when key is absent),
 * with key appended to the current path; for checks across keys. */
__attribute__((format(printf, 4, 5)))
static void cf_err_key(cf_ctx *c, yaml_node_t *map, const char *key, const char *fmt, ...)
{
    size_t saved = kp_push_key(c, key);
    va_list ap;
    va_start(ap, fmt);
    cf_verr(c, mark_of(c, map, key), c->kpath, fmt, ap);
    va_end(ap);
    kp_pop(c, saved);
}

static bool dup_key(cf_ctx *c, yaml_node_t *map, yaml_node_pair_t *pair)
{
    yaml_node_t *k = node_at(c, pair->key);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < pair; p++) {
        yaml_node_t *q = node_at(c, p->key);
        if (q->type == YAML_SCALAR_NODE && strcmp((const char *)q->data.scalar.value,
                                                   (const char *)k->data.scalar.value) == 0) {
            cf_err(c, k->start_mark, "duplicate key \"%s\" (first at line %zu)",
                   (const char *)k->data.scalar.value, q->start_mark.line + 1);
            return true;
        }
    }
    return false;
}

static void add_ref(cf_ctx *c, int kind, yaml_mark_t mark, const char *name)
{
    if (name == NULL)
        return;
    if (c->nrefs == c->caprefs) {
        size_t cap = c->caprefs ? c->caprefs * 2 : 16;
        cf_ref *r = cf_nomem(c, realloc(c->refs, cap * sizeof(*r)));
        if (r == NULL)
            return;
        c->refs = r;
        c->caprefs = cap;
    }
    cf_ref *r = &c->refs[c->nrefs++];
    r->kind = kind;
    r->mark = mark;
    r->name = name;
    snprintf(r->kpath, sizeof(r->kpath), "%s", c->kpath);
}

/* Edit distance, for "did you mean" hints; short strings only. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Best close match of s among names, or NULL when nothing is close. */
static const char *closest(const char *s, const char *const *names, size_t n)
{
    const char *best = NULL;
    size_t bestd = SIZE_MAX, len = strlen(s);
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(s, names[i]);
        if (d < bestd) {
            bestd = d;
            best = names[i];
        }
    }
    return bestd <= 2 && bestd < len ? best : NULL;
}

/* ------------------------------------------------------------------------ */
/* Scalars: ${NAME} substitution and quoting for messages                    */

typedef struct cf_val {
    char *s;                       /* substituted value (malloc'd), NUL-terminated */
    bool env;                      /* came (partly) from the environment */
    char var[64];                  /* first variable used, for messages */
} cf_val;

static bool var_char(char ch, bool first)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_' ||
           (!first && ch >= '0' && ch <= '9');
}

/* Substitutes ${NAME} and $$ in n's value. Reports every problem at n's
 * location and returns false; the message names the variable but never
 * the value of any variable. */
static bool subst(cf_ctx *c, yaml_node_t *n, cf_val *out)
{
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    mg_buf b = {0};
    bool ok = true, oom = false;
    memset(out, 0, sizeof(*out));
    if (memchr(s, '\0', len)) {
        cf_err(c, n->start_mark, "value contains a NUL byte");
        return false;
    }
    for (size_t i = 0; i < len && !oom; i++) {
        /* `${NAME}` in the file reaches here as `$(NAME)` (braces_to_parens). */
        if (s[i] != '$' || i + 1 >= len || (s[i + 1] != '$' && s[i + 1] != '(' && s[i + 1] != '{')) {
            oom = mg_buf_append(&b, &s[i], 1) != MG_OK;
            continue;
        }
        if (s[i + 1] == '$') {
            oom = mg_buf_append(&b, "$", 1) != MG_OK;
            i++;
            continue;
        }
        size_t start = i + 2, end = start;
        while (end < len && var_char(s[end], end == start))
            end++;
        char close = s[i + 1] == '(' ? ')' : '}';
        if (end == start || end >= len || s[end] != close || end - start > 63) {
            cf_err(c, n->start_mark, "bad variable reference (write ${NAME}, or $$ for a literal '$')");
            ok = false;
            break;
        }
        char name[64];
        memcpy(name, s + start, end - start);
        name[end - start] = '\0';
        const char *v = getenv(name);
        if (v == NULL) {
            cf_err(c, n->start_mark, "environment variable \"%s\" is not set", name);
            ok = false;
        } else {
            if (!out->env)
                memcpy(out->var, name, end - start + 1);
            out->env = true;
            oom = mg_buf_append_str(&b, v) != MG_OK;
        }
        i = end;
    }
    oom = oom || mg_buf_append(&b, "", 1) != MG_OK;
    if (!ok || oom) {
        c->oom = c->oom || oom;
        mg_buf_free(&b);
        return false;
    }
    out->s = b.p;
    return true;
}

/* A printable rendering of a value for an error message: quoted and
 * shortened, or a pointer to the variable when it came from the
 * environment (whose value may be anything, including a secret pasted into
 * the wrong variable). */
static const char *shown(const cf_val *v, char *buf, size_t bufsz)
{
    if (v->env) {
        snprintf(buf, bufsz, "(the value of ${%s})", v->var);
        return buf;
    }
    /* Room for the quotes, "..." and the NUL. */
    size_t o = 0, room = bufsz - 6;
    const char *p = v->s;
    buf[o++] = '"';
    for (; *p && o < room; p++)
        buf[o++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    if (*p) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Value checks                                                              */

/* Validates an http(s) URL without credentials, query or fragment. On
 * success sets *https and the host span; returns NULL or a reason. */
static const char *url_check(const char *s, bool *https, const char **host, size_t *hostlen)
{
    size_t skip;
    if (strncasecmp(s, "https://", 8) == 0) {
        *https = true;
        skip = 8;
    } else if (strncasecmp(s, "http://", 7) == 0) {
        *https = false;
        skip = 7;
    } else {
        return "must start with http:// or https://";
    }
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return "must not contain spaces or control characters";
    if (strpbrk(s, "?#"))
        return "must not contain a query or fragment";
    const char *a = s + skip;
    size_t alen = strcspn(a, "/");
    if (memchr(a, '@', alen))
        return "must not contain credentials (user@host); use the api_key field";
    const char *h = a, *port = NULL;
    size_t hl;
    if (*a == '[') {
        const char *rb = memchr(a, ']', alen);
        if (rb == NULL)
            return "has an unterminated [IPv6] host";
        hl = (size_t)(rb - a) + 1;
        if (rb + 1 < a + alen) {
            if (rb[1] != ':')
                return "has a bad host";
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        hl = colon ? (size_t)(colon - a) : alen;
        port = colon ? colon + 1 : NULL;
    }
    if (hl == 0 || (*a == '[' && hl <= 2))
        return "has no host";
    if (port) {
        const char *p = port;
        uint64_t v;
        if (!parse_u64(&p, &v) || p != a + alen || v < 1 || v > 65535)
            return "has a bad port (1-65535)";
    }
    *host = h;
    *hostlen = hl;
    return NULL;
}

static bool host_is_loopback(const char *h, size_t n)
{
    return (n == 9 && strncmp(h, "127.0.0.1", 9) == 0) || (n == 5 && strncmp(h, "[::1]", 5) == 0) ||
           (n == 9 && strncasecmp(h, "localhost", 9) == 0);
}

/* Resolves a listen address without DNS: "IPv4:port", "[IPv6]:port" or
 * "localhost:port". Returns NULL or a reason. */
static const char *listen_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port;
    size_t hl;
    if (*s == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return "expected [IPv6]:port";
        hl = (size_t)(rb - s - 1);
        if (hl == 0 || hl >= sizeof(host))
            return "bad IPv6 address";
        memcpy(host, s + 1, hl);
        port = rb + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL)
            return "expected host:port, e.g. 0.0.0.0:8443";
        hl = (size_t)(colon - s);
        if (hl == 0)
            return "missing host (use 0.0.0.0:PORT for every interface)";
        if (memchr(s, ':', hl))
            return "IPv6 addresses need brackets, e.g. [::]:8443";
        if (hl >= sizeof(host))
            return "bad host";
        memcpy(host, s, hl);
        port = colon + 1;
    }
    host[hl] = '\0';
    uint64_t pv;
    const char *p = port;
    if (!parse_u64(&p, &pv) || *p != '\0' || pv < 1 || pv > 65535)
        return "port must be a number from 1 to 65535";
    memset(ss, 0, sizeof(*ss));
    if (*s == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return "bad IPv6 address";
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)pv);
        *len = sizeof(*a6);
        return NULL;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    if (strcasecmp(host, "localhost") == 0)
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
        return "host must be a numeric IPv4 address, [IPv6] or localhost (no DNS names)";
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)pv);
    *len = sizeof(*a4);
    return NULL;
}

/* Relative paths are taken from the config file's directory, so the
 * gateway behaves the same whatever directory it was started from. */
static char *resolve_path(cf_ctx *c, char *p)
{
    if (p == NULL || p[0] == '/' || c->dir == NULL)
        return p;
    mg_buf b = {0};
    if (mg_buf_printf(&b, "%s/%s", c->dir, p) != MG_OK) {
        c->oom = true;
        mg_buf_free(&b);
        return p;
    }
    free(p);
    return b.p;
}

static const char *file_readable(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return strerror(errno);
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) != 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    close(fd);
    return why;
}

/* ------------------------------------------------------------------------ */
/* Schema: tables of typed slots                                             */

typedef enum cf_type {
    CF_STR,                        /* char *; min = minimum length */
    CF_URL,                        /* char *; http(s) URL, trailing '/' removed */
    CF_FILE,                       /* char *; a readable file, path resolved */
    CF_PATH,                       /* char *; a path, resolved, not checked */
    CF_INT,                        /* int, uint32_t or size_t (width); min..max */
    CF_NUM,                        /* double; min..max */
    CF_SIZE,                       /* size_t bytes; min..max */
    CF_MS,                         /* uint32_t milliseconds; min..max in ms */
    CF_SEC,                        /* uint32_t seconds; min..max in ms */
    CF_STRLIST,                    /* char **, count at off2 */
    CF_CIDRLIST,                   /* mg_cfg_cidr *, count at off2 */
    CF_SECTION,                    /* nested mapping at off; presence bool at off2-1 */
    CF_LIST,                       /* list of mappings: array at off, count at off2 */
    CF_NAMED,                      /* mapping name -> mapping: like CF_LIST, name at nameoff */
} cf_type;

#define CF_REQ 0x1u
#define CF_SECRET 0x2u             /* never echo the value in a message */

typedef struct cf_section cf_section;

typedef struct cf_key {
    const char *name;
    cf_type type;
    unsigned flags;
    size_t off;
    size_t off2;
    int64_t min, max;
    unsigned width;
    const cf_section *sub;
    size_t elsize;
    size_t nameoff;
    const char *const *choices;    /* NULL-terminated allowed values for CF_STR */
} cf_key;

struct cf_section {
    const cf_key *keys;
    size_t nkeys;
    /* Checks across the keys of one mapping, once it has been read. */
    void (*check)(cf_ctx *c, yaml_node_t *map, void *base);
};

#define SEC(keys, check) { keys, MG_ARRAY_LEN(keys), check }
#define FLD(T, f) .off = offsetof(T, f)
#define INTW(T, f) FLD(T, f), .width = sizeof(((T *)0)->f)

static void walk_map(cf_ctx *c, yaml_node_t *map, const cf_section *sec, void *base);

/* Reads a string slot (any scalar, after substitution). NULL on error. */
static char *read_string(cf_ctx *c, const cf_key *k, yaml_node_t *v, cf_val *val)
{
    char q[96];
    if (v->type != YAML_SCALAR_NODE || is_null(v)) {
        cf_err(c, v->start_mark, "expected a string, got %s", node_kind(v));
        return NULL;
    }
    if (!subst(c, v, val))
        return NULL;
    char *s = val->s;
    if (*s == '\0') {
        cf_err(c, v->start_mark, "must not be empty");
        goto bad;
    }
    if (k->min > 0 && strlen(s) < (size_t)k->min) {
        cf_err(c, v->start_mark, "must be at least %lld bytes long", (long long)k->min);
        goto bad;
    }
    if (k->choices) {
        size_t i = 0;
        while (k->choices[i] && strcmp(k->choices[i], s) != 0)
            i++;
        if (k->choices[i] == NULL) {
            char list[256] = "";
            size_t o = 0;
            for (size_t j = 0; k->choices[j] && o < sizeof(list); j++) {
                int n = snprintf(list + o, sizeof(list) - o, "%s%s", j ? ", " : "", k->choices[j]);
                if (n < 0)
                    break;
                o += (size_t)n;
            }
            cf_err(c, v->start_mark, "%s is not one of: %s", shown(val, q, sizeof(q)), list);
            goto bad;
        }
    }
    return s;
bad:
    free(s);
    val->s = NULL;
    return NULL;
}

static bool read_scalar_text(cf_ctx *c, yaml_node_t *v, const char *want, cf_val *val)
{
    if (v->type != YAML_SCALAR_NODE || is_null(v)) {
        cf_err(c, v->start_mark, "expected %s, got %s", want, node_kind(v));
        return false;
    }
    return subst(c, v, val);
}

static void fmt_ms(uint64_t ms, char *buf, size_t n)
{
    if (ms >= CF_MS_DAY && ms % CF_MS_DAY == 0)
        snprintf(buf, n, "%llud", (unsigned long long)(ms / CF_MS_DAY));
    else if (ms >= 3600000 && ms % 3600000 == 0)
        snprintf(buf, n, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms >= 60000 && ms % 60000 == 0)
        snprintf(buf, n, "%llum", (unsigned long long)(ms / 60000));
    else if (ms >= 1000 && ms % 1000 == 0)
        snprintf(buf, n, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, n, "%llums", (unsigned long long)ms);
}

static void fmt_size(uint64_t b, char *buf, size_t n)
{
    if (b >= (1u << 30) && b % (1u << 30) == 0)
        snprintf(buf, n, "%lluGiB", (unsigned long long)(b >> 30));
    else if (b >= (1u << 20) && b % (1u << 20) == 0)
        snprintf(buf, n, "%lluMiB", (unsigned long long)(b >> 20));
    else if (b >= 1024 && b % 1024 == 0)
        snprintf(buf, n, "%lluKiB", (unsigned long long)(b >> 10));
    else
        snprintf(buf, n, "%llu", (unsigned long long)b);
}

/* Integer slots are int, uint32_t or size_t; every value stored has passed
 * the slot's bounds, so it fits whichever of them this is. */
static void store_int(void *slot, unsigned width, int64_t v)
{
    if (width == sizeof(int32_t)) {
        int32_t x = (int32_t)v;
        memcpy(slot, &x, sizeof(x));
    } else if (width == sizeof(int64_t)) {
        memcpy(slot, &v, sizeof(v));
    }
}

static void read_number(cf_ctx *c, const cf_key *k, yaml_node_t *v, char *base)
{
    cf_val val;
    char q[96], lo[32], hi[32];
    const char *want = k->type == CF_INT ? "an integer" : k->type == CF_NUM ? "a number"
                     : k->type == CF_SIZE ? "a size" : "a duration";
    if (!read_scalar_text(c, v, want, &val))
        return;
    const char *s = val.s;
    void *slot = base + k->off;
    if (k->type == CF_INT) {
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (errno || end == s || *end || s[0] == ' ' || s[0] == '+')
            cf_err(c, v->start_mark, "expected an integer, got %s", shown(&val, q, sizeof(q)));
        else if (x < k->min || x > k->max)
            cf_err(c, v->start_mark, "must be from %lld to %lld", (long long)k->min, (long long)k->max);
        else
            store_int(slot, k->width, x);
    } else if (k->type == CF_NUM) {
        char *end;
        errno = 0;
        double x = strtod(s, &end);
        if (errno || end == s || *end || strspn(s, "0123456789.eE+-") != strlen(s) || !isfinite(x))
            cf_err(c, v->start_mark, "expected a number, got %s", shown(&val, q, sizeof(q)));
        else if (x < (double)k->min || x > (double)k->max)
            cf_err(c, v->start_mark, "must be from %lld to %lld", (long long)k->min, (long long)k->max);
        else
            *(double *)slot = x;
    } else if (k->type == CF_SIZE) {
        size_t x;
        if (mg_config_parse_size(s, &x) != MG_OK) {
            cf_err(c, v->start_mark, "invalid size %s (write e.g. 8MiB, 512KiB, 16k or 1024)",
                   shown(&val, q, sizeof(q)));
        } else if ((int64_t)x < k->min || (uint64_t)x > (uint64_t)k->max) {
            fmt_size((uint64_t)k->min, lo, sizeof(lo));
            fmt_size((uint64_t)k->max, hi, sizeof(hi));
            cf_err(c, v->start_mark, "must be from %s to %s", lo, hi);
        } else {
            store_int(slot, k->width, (int64_t)x);
        }
    } else {
        uint64_t ms;
        if (mg_config_parse_duration_ms(s, &ms) != MG_OK) {
            cf_err(c, v->start_mark, "invalid duration %s (write e.g. 250ms, 10s, 5m, 8h, 90d)",
                   shown(&val, q, sizeof(q)));
        } else if (ms < (uint64_t)k->min || ms > (uint64_t)k->max) {
            fmt_ms((uint64_t)k->min, lo, sizeof(lo));
            fmt_ms((uint64_t)k->max, hi, sizeof(hi));
            cf_err(c, v->start_mark, "must be from %s to %s", lo, hi);
        } else {
            *(uint32_t *)slot = (uint32_t)(k->type == CF_SEC ? ms / 1000 : ms);
        }
    }
    free(val.s);
}

/* Allocates n zeroed elements and publishes them (and the count) at once,
 * so mg_config_free sees every element whatever happens next. */
static char *alloc_array(cf_ctx *c, const cf_key *k, char *base, size_t n, size_t elsize)
{
    char *arr = cf_nomem(c, calloc(n ? n : 1, elsize));
    if (arr == NULL)
        return NULL;
    *(void **)(base + k->off) = arr;
    *(size_t *)(base + k->off2) = n;
    return arr;
}

static bool expect_seq(cf_ctx *c, const cf_key *k, yaml_node_t *v, size_t *n)
{
    if (v->type != YAML_SEQUENCE_NODE) {
        cf_err(c, v->start_mark, "expected a list, got %s", node_kind(v));
        return false;
    }
    *n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (*n < (size_t)k->min) {
        cf_err(c, v->start_mark, "needs at least %lld %s", (long long)k->min,
               k->min == 1 ? "entry" : "entries");
        return false;
    }
    return true;
}

static void read_strlist(cf_ctx *c, const cf_key *k, yaml_node_t *v, char *base)
{
    size_t n;
    if (!expect_seq(c, k, v, &n))
        return;
    char **arr = (char **)alloc_array(c, k, base, n, sizeof(char *));
    for (size_t i = 0; arr && i < n; i++) {
        size_t saved = kp_push_index(c, i);
        cf_val val;
        arr[i] = read_string(c, k, node_at(c, v->data.sequence.items.start[i]), &val);
        kp_pop(c, saved);
    }
}

static void read_cidrlist(cf_ctx *c, const cf_key *k, yaml_node_t *v, char *base)
{
    size_t n;
    if (!expect_seq(c, k, v, &n))
        return;
    mg_cfg_cidr *arr = (mg_cfg_cidr *)alloc_array(c, k, base, n, sizeof(mg_cfg_cidr));
    for (size_t i = 0; arr && i < n; i++) {
        yaml_node_t *item = node_at(c, v->data.sequence.items.start[i]);
        size_t saved = kp_push_index(c, i);
        cf_val val;
        char q[96];
        char *s = read_string(c, k, item, &val);
        if (s) {
            int rc = cidr_parse(s, &arr[i]);
            if (rc == CIDR_SYNTAX)
                cf_err(c, item->start_mark, "invalid CIDR %s (write e.g. 10.0.0.0/8, fd00::/8 or 192.0.2.7)",
                       shown(&val, q, sizeof(q)));
            else if (rc == CIDR_HOST_BITS)
                cf_err(c, item->start_mark, "%s has bits set after the /prefix (write the network address)",
                       shown(&val, q, sizeof(q)));
        }
        free(s);
        kp_pop(c, saved);
    }
}

static void read_list(cf_ctx *c, const cf_key *k, yaml_node_t *v, char *base)
{
    size_t n;
    if (!expect_seq(c, k, v, &n))
        return;
    char *arr = alloc_array(c, k, base, n, k->elsize);
    for (size_t i = 0; arr && i < n; i++) {
        size_t saved = kp_push_index(c, i);
        walk_map(c, node_at(c, v->data.sequence.items.start[i]), k->sub, arr + i * k->elsize);
        kp_pop(c, saved);
    }
}

static bool name_ok(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!var_char(*s, false) && *s != '-' && *s != '.')
            return false;
    return true;
}

static void read_named(cf_ctx *c, const cf_key *k, yaml_node_t *v, char *base)
{
    if (v->type != YAML_MAPPING_NODE) {
        cf_err(c, v->start_mark, "expected a mapping of names to entries, got %s", node_kind(v));
        return;
    }
    size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    char *arr = alloc_array(c, k, base, n, k->elsize);
    for (size_t i = 0; arr && i < n; i++) {
        yaml_node_pair_t *p = &v->data.mapping.pairs.start[i];
        yaml_node_t *key = node_at(c, p->key);
        if (key->type != YAML_SCALAR_NODE) {
            cf_err(c, key->start_mark, "expected a name, got %s", node_kind(key));
            continue;
        }
        const char *name = (const char *)key->data.scalar.value;
        if (dup_key(c, v, p))
            continue;
        if (!name_ok(name) || strlen(name) != key->data.scalar.length) {
            cf_err(c, key->start_mark, "name \"%s\" must be letters, digits, '_', '-' or '.'", name);
            continue;
        }
        char *el = arr + i * k->elsize;
        *(char **)(el + k->nameoff) = cf_strdup(c, name);
        size_t saved = kp_push_key(c, name);
        walk_map(c, node_at(c, p->value), k->sub, el);
        kp_pop(c, saved);
    }
}

static void read_slot(cf_ctx *c, const cf_key *k, yaml_node_t *v, char *base)
{
    cf_val val;
    char q[96];
    char **sp = (char **)(base + k->off);
    switch (k->type) {
    case CF_STR:
    case CF_URL:
    case CF_FILE:
    case CF_PATH: {
        char *s = read_string(c, k, v, &val);
        if (s == NULL)
            return;
        if (k->type == CF_URL) {
            bool https;
            const char *h;
            size_t hl;
            const char *why = url_check(s, &https, &h, &hl);
            if (why) {
                /* URLs may carry tokens; do not echo a secret one. */
                if (k->flags & CF_SECRET)
                    cf_err(c, v->start_mark, "URL %s", why);
                else
                    cf_err(c, v->start_mark, "URL %s %s", shown(&val, q, sizeof(q)), why);
                free(s);
                return;
            }
            size_t len = strlen(s);
            while (len > 0 && s[len - 1] == '/')
                s[--len] = '\0';
        } else if (k->type == CF_FILE || k->type == CF_PATH) {
            s = val.s = resolve_path(c, s);
            const char *why = k->type == CF_FILE ? file_readable(s) : NULL;
            if (why) {
                cf_err(c, v->start_mark, "cannot read file %s: %s", shown(&val, q, sizeof(q)), why);
                free(s);
                return;
            }
        }
        free(*sp);
        *sp = s;
        return;
    }
    case CF_INT:
    case CF_NUM:
    case CF_SIZE:
    case CF_MS:
    case CF_SEC:
        read_number(c, k, v, base);
        return;
    case CF_STRLIST:
        read_strlist(c, k, v, base);
        return;
    case CF_CIDRLIST:
        read_cidrlist(c, k, v, base);
        return;
    case CF_SECTION:
        if (v->type != YAML_MAPPING_NODE) {
            cf_err(c, v->start_mark, "expected a mapping, got %s", node_kind(v));
            return;
        }
        if (k->off2)
            *(bool *)(base + k->off + k->off2 - 1) = true;
        walk_map(c, v, k->sub, base + k->off);
        return;
    case CF_LIST:
        read_list(c, k, v, base);
        return;
    case CF_NAMED:
        read_named(c, k, v, base);
        return;
    }
}

static void unknown_key(cf_ctx *c, yaml_node_t *key, const cf_section *sec)
{
    const char *names[32] = {0};
    size_t n = 0;
    for (size_t i = 0; i < sec->nkeys && n < MG_ARRAY_LEN(names); i++)
        names[n++] = sec->keys[i].name;
    const char *name = (const char *)key->data.scalar.value;
    const char *hint = closest(name, names, n);
    if (hint) {
        cf_err(c, key->start_mark, "unknown key \"%s\" (did you mean \"%s\"?)", name, hint);
        return;
    }
    char list[512] = "";
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof(list); i++) {
        int w = snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", names[i]);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    cf_err(c, key->start_mark, "unknown key \"%s\" (known keys: %s)", name, list);
}

/* Reads mapping map into base following sec: unknown and duplicate keys,
 * wrong types and missing required keys are all reported. */
static void walk_map(cf_ctx *c, yaml_node_t *map, const cf_section *sec, void *base)
{
    if (map->type != YAML_MAPPING_NODE) {
        cf_err(c, map->start_mark, "expected a mapping, got %s", node_kind(map));
        return;
    }
    uint64_t seen = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *key = node_at(c, p->key);
        if (key->type != YAML_SCALAR_NODE) {
            cf_err(c, key->start_mark, "expected a key name, got %s", node_kind(key));
            continue;
        }
        if (dup_key(c, map, p))
            continue;
        size_t i = 0;
        while (i < sec->nkeys && strcmp(sec->keys[i].name, (const char *)key->data.scalar.value) != 0)
            i++;
        if (i == sec->nkeys) {
            unknown_key(c, key, sec);
            continue;
        }
        seen |= 1ull << i;
        size_t saved = kp_push_key(c, sec->keys[i].name);
        read_slot(c, &sec->keys[i], node_at(c, p->value), base);
        kp_pop(c, saved);
    }
    for (size_t i = 0; i < sec->nkeys; i++)
        if ((sec->keys[i].flags & CF_REQ) && !(seen & (1ull << i)))
            cf_err(c, map->start_mark, "missing required key \"%s\"", sec->keys[i].name);
    if (sec->check)
        sec->check(c, map, base);
}

/* ------------------------------------------------------------------------ */
/* Checks across keys                                                        */

static void check_listen(cf_ctx *c, yaml_node_t *map, void *base)
{
    mg_cfg_listen *l = base;
    if (l->address == NULL)
        return;
    const char *why = listen_parse(l->address, &l->addr, &l->addrlen);
    if (why) {
        cf_err_key(c, map, "address", "\"%s\": %s", l->address, why);
        return;
    }
    for (mg_cfg_listen *o = c->cfg->listen; o < l; o++)
        if (o->addrlen == l->addrlen && memcmp(&o->addr, &l->addr, l->addrlen) == 0)
            cf_err_key(c, map, "address", "\"%s\" is already listed", l->address);
    if (l->serve && strcmp(l->serve, "all") != 0 && strcmp(l->serve, "ops") != 0)
        cf_err_key(c, map, "serve", "must be \"all\" or \"ops\", not \"%s\"", l->serve);
    l->ops = l->serve && strcmp(l->serve, "ops") == 0;
}

static void check_oidc(cf_ctx *c, yaml_node_t *map, void *base)
{
    mg_cfg_oidc *o = base;
    if (o->issuer) {
        bool https;
        const char *h;
        size_t hl;
        const char *why = url_check(o->issuer, &https, &h, &hl);
        if (why)
            cf_err_key(c, map, "issuer", "URL \"%s\" %s", o->issuer, why);
        else if (!https && !host_is_loopback(h, hl))
            cf_err_key(c, map, "issuer",
                   "must be https:// (http:// is accepted only for 127.0.0.1, [::1] and localhost)");
    }
    bool openid = o->nscopes == 0;
    for (size_t i = 0; i < o->nscopes; i++)
        openid = openid || (o->scopes[i] && strcmp(o->scopes[i], "openid") == 0);
    if (!openid)
        cf_err_key(c, map, "scopes", "must include \"openid\"");
}

static void check_provider(cf_ctx *c, yaml_node_t *map, void *base)
{
    mg_cfg_provider *p = base;
    if (p->type && strcmp(p->type, "azure") == 0 && p->api_version == NULL)
        cf_err_key(c, map, "type", "azure needs api_version (e.g. 2024-10-21)");
    if (p->type && strcmp(p->type, "bedrock") == 0 && p->region == NULL)
        cf_err_key(c, map, "type", "bedrock needs region (e.g. us-east-1)");
    if ((p->aws_access_key_id == NULL) != (p->aws_secret_access_key == NULL))
        cf_err_key(c, map, p->aws_access_key_id ? "aws_access_key_id" : "aws_secret_access_key",
                   "aws_access_key_id and aws_secret_access_key go together");
    if (p->aws_session_token && p->aws_access_key_id == NULL)
        cf_err_key(c, map, "aws_session_token", "needs aws_access_key_id and aws_secret_access_key");
    if ((p->aws_access_key_id || p->aws_session_token) && p->type && strcmp(p->type, "bedrock") != 0)
        cf_err_key(c, map, "type", "aws_* credentials are only used by bedrock providers");
    if (p->type && strcmp(p->type, "bedrock") == 0 && p->api_key == NULL && p->aws_access_key_id == NULL)
        cf_err_key(c, map, "type", "bedrock needs aws_access_key_id and aws_secret_access_key, or api_key "
                                   "(a Bedrock API key)");
}

static void check_deployment(cf_ctx *c, yaml_node_t *map, void *base)
{
    mg_cfg_deployment *d = base;
    if (d->weight == 0)
        d->weight = 1;
    yaml_node_t *pv = map_get(c, map, "provider");
    if (d->provider && pv) {
        size_t saved = kp_push_key(c, "provider");
        add_ref(c, REF_PROVIDER, pv->start_mark, d->provider);
        kp_pop(c, saved);
    }
}

static void check_model(cf_ctx *c, yaml_node_t *map, void *base)
{
    mg_cfg_model *m = base;
    if (m->name == NULL)
        return;
    for (mg_cfg_model *o = c->cfg->models; o < m; o++)
        if (o->name && strcmp(o->name, m->name) == 0)
            cf_err_key(c, map, "name", "model \"%s\" is already defined", m->name);
    /* The upstream model name defaults to the name clients ask for. */
    for (size_t d = 0; m->deployments && d < m->ndeployments; d++)
        if (m->deployments[d].model == NULL && m->deployments[d].provider)
            m->deployments[d].model = cf_strdup(c, m->name);
    yaml_node_t *fb = map_get(c, map, "fallbacks");
    for (size_t i = 0; fb && fb->type == YAML_SEQUENCE_NODE && i < m->nfallbacks; i++) {
        const char *f = m->fallbacks[i];
        yaml_node_t *item = node_at(c, fb->data.sequence.items.start[i]);
        if (f == NULL)
            continue;
        size_t saved = kp_push_key(c, "fallbacks");
        kp_push_index(c, i);
        if (strcmp(f, m->name) == 0)
            cf_err(c, item->start_mark, "a model cannot fall back to itself");
        else
            add_ref(c, REF_MODEL, item->start_mark, f);
        for (size_t j = 0; j < i; j++)
            if (m->fallbacks[j] && strcmp(m->fallbacks[j], f) == 0)
                cf_err(c, item->start_mark, "\"%s\" is listed twice", f);
        kp_pop(c, saved);
    }
}

static void check_log(cf_ctx *c, yaml_node_t *map, void *base)
{
    mg_cfg_log *l = base;
    MG_UNUSED(map);
    const char *a = l->access_log;
    if (a && strcmp(a, "stdout") && strcmp(a, "stderr") && strcmp(a, "off"))
        l->access_log = resolve_path(c, l->access_log);
}

static void check_root(cf_ctx *c, yaml_node_t *map, void *base)
{
    mg_config *cfg = base;
    if (cfg->oidc.present && !cfg->session.present)
        cf_err_path(c, key_mark_of(c, map, "oidc"), "oidc",
                    "a session section (secret, lifetime) is required when oidc is configured");
}

/* ------------------------------------------------------------------------ */
/* The tables                                                                */

static const cf_key tls_keys[] = {
    {.name = "cert", .type = CF_FILE, .flags = CF_REQ, FLD(mg_cfg_listen, tls_cert)},
    {.name = "key", .type = CF_FILE, .flags = CF_REQ, FLD(mg_cfg_listen, tls_key)},
};
static const cf_section tls_sec = SEC(tls_keys, NULL);

static const cf_key listen_keys[] = {
    {.name = "address", .type = CF_STR, .flags = CF_REQ, FLD(mg_cfg_listen, address)},
    {.name = "tls", .type = CF_SECTION, .off = 0, .sub = &tls_sec},
    {.name = "serve", .type = CF_STR, FLD(mg_cfg_listen, serve)},
};
static const cf_section listen_sec = SEC(listen_keys, check_listen);

static const cf_key database_keys[] = {
    /* A database URL may embed a password. */
    {.name = "url", .type = CF_STR, .flags = CF_REQ | CF_SECRET, FLD(mg_config, database_url)},
};
static const cf_section database_sec = SEC(database_keys, NULL);

static const cf_key claims_keys[] = {
    {.name = "groups", .type = CF_STR, FLD(mg_cfg_oidc, claim_groups)},
    {.name = "email", .type = CF_STR, FLD(mg_cfg_oidc, claim_email)},
    {.name = "name", .type = CF_STR, FLD(mg_cfg_oidc, claim_name)},
    {.name = "cost_center", .type = CF_STR, FLD(mg_cfg_oidc, claim_cost_center)},
};
static const cf_section claims_sec = SEC(claims_keys, NULL);

static const cf_key oidc_keys[] = {
    {.name = "issuer", .type = CF_STR, .flags = CF_REQ, FLD(mg_cfg_oidc, issuer)},
    {.name = "client_id", .type = CF_STR, .flags = CF_REQ, FLD(mg_cfg_oidc, client_id)},
    {.name = "client_secret", .type = CF_STR, .flags = CF_SECRET, FLD(mg_cfg_oidc, client_secret)},
    {.name = "scopes", .type = CF_STRLIST, FLD(mg_cfg_oidc, scopes), .off2 = offsetof(mg_cfg_oidc, nscopes),
     .min = 1},
    {.name = "audiences", .type = CF_STRLIST, FLD(mg_cfg_oidc, audiences),
     .off2 = offsetof(mg_cfg_oidc, naudiences), .min = 1},
    {.name = "claims", .type = CF_SECTION, .off = 0, .sub = &claims_sec},
};
static const cf_section oidc_sec = SEC(oidc_keys, check_oidc);

static const cf_key session_keys[] = {
    {.name = "secret", .type = CF_STR, .flags = CF_REQ | CF_SECRET, FLD(mg_cfg_session, secret), .min = 32},
    {.name = "lifetime", .type = CF_SEC, FLD(mg_cfg_session, lifetime_s), .min = 60000,
     .max = 365 * CF_MS_DAY},
    /* Down to 2 s only so that tests can see a login expire. */
    {.name = "login_timeout", .type = CF_SEC, FLD(mg_cfg_session, login_timeout_s), .min = 2000,
     .max = 3600000},
};
static const cf_section session_sec = SEC(session_keys, NULL);

static const cf_key auth_keys[] = {
    {.name = "master_key", .type = CF_STR, .flags = CF_SECRET, FLD(mg_config, master_key), .min = 16},
};
static const cf_section auth_sec = SEC(auth_keys, NULL);

static const char *const upstream_clients[] = {"auto", "curl", NULL};
static const char *const provider_types[] = {"openai", "azure", "anthropic", "gemini", "bedrock", "ollama", NULL};

static const cf_key provider_keys[] = {
    {.name = "type", .type = CF_STR, .flags = CF_REQ, FLD(mg_cfg_provider, type), .choices = provider_types},
    {.name = "base_url", .type = CF_URL, .flags = CF_REQ, FLD(mg_cfg_provider, base_url)},
    {.name = "api_key", .type = CF_STR, .flags = CF_SECRET, FLD(mg_cfg_provider, api_key)},
    {.name = "api_version", .type = CF_STR, FLD(mg_cfg_provider, api_version)},
    {.name = "region", .type = CF_STR, FLD(mg_cfg_provider, region)},
    {.name = "aws_access_key_id", .type = CF_STR, .flags = CF_SECRET, FLD(mg_cfg_provider, aws_access_key_id)},
    {.name = "aws_secret_access_key", .type = CF_STR, .flags = CF_SECRET, FLD(mg_cfg_provider, aws_secret_access_key)},
    {.name = "aws_session_token", .type = CF_STR, .flags = CF_SECRET, FLD(mg_cfg_provider, aws_session_token)},
    {.name = "tls_ca", .type = CF_FILE, FLD(mg_cfg_provider, tls_ca)},
    {.name = "upstream_client", .type = CF_STR, FLD(mg_cfg_provider, upstream_client), .choices = upstream_clients},
    {.name = "max_concurrency", .type = CF_INT, INTW(mg_cfg_provider, max_concurrency), .min = 0,
     .max = 1000000},
};
static const cf_section provider_sec = SEC(provider_keys, check_provider);

static const cf_key deployment_keys[] = {
    {.name = "provider", .type = CF_STR, .flags = CF_REQ, FLD(mg_cfg_deployment, provider)},
    {.name = "model", .type = CF_STR, FLD(mg_cfg_deployment, model)},
    {.name = "weight", .type = CF_INT, INTW(mg_cfg_deployment, weight), .min = 1, .max = 10000},
};
static const cf_section deployment_sec = SEC(deployment_keys, check_deployment);

static const cf_key price_keys[] = {
    {.name = "input_per_mtok", .type = CF_NUM, .flags = CF_REQ, FLD(mg_cfg_model, input_per_mtok), .min = 0,
     .max = 1000000},
    {.name = "output_per_mtok", .type = CF_NUM, .flags = CF_REQ, FLD(mg_cfg_model, output_per_mtok), .min = 0,
     .max = 1000000},
};
static const cf_section price_sec = SEC(price_keys, NULL);

static const cf_key model_keys[] = {
    {.name = "name", .type = CF_STR, .flags = CF_REQ, FLD(mg_cfg_model, name)},
    {.name = "deployments", .type = CF_LIST, .flags = CF_REQ, FLD(mg_cfg_model, deployments),
     .off2 = offsetof(mg_cfg_model, ndeployments), .min = 1, .sub = &deployment_sec,
     .elsize = sizeof(mg_cfg_deployment)},
    {.name = "fallbacks", .type = CF_STRLIST, FLD(mg_cfg_model, fallbacks), .off2 = offsetof(mg_cfg_model, nfallbacks)},
    {.name = "price", .type = CF_SECTION, .off = 0, .off2 = offsetof(mg_cfg_model, has_price) + 1, .sub = &price_sec},
};
static const cf_section model_sec = SEC(model_keys, check_model);

#define MS(x) ((int64_t)(x))
#define LIM_MS(n, f, lo, hi) \
    {.name = n, .type = CF_MS, FLD(mg_cfg_limits, f), .min = MS(lo), .max = MS(hi)}
static const cf_key limits_keys[] = {
    {.name = "max_body", .type = CF_SIZE, INTW(mg_cfg_limits, max_body), .min = 1024, .max = 1ll << 30},
    {.name = "max_header_bytes", .type = CF_SIZE, INTW(mg_cfg_limits, max_header_bytes), .min = 1024,
     .max = 1 << 20},
    {.name = "max_headers", .type = CF_INT, INTW(mg_cfg_limits, max_headers), .min = 8, .max = 1000},
    {.name = "max_request_line", .type = CF_SIZE, INTW(mg_cfg_limits, max_request_line), .min = 256,
     .max = 1 << 20},
    LIM_MS("header_timeout", header_timeout_ms, 1, CF_MS_DAY),
    LIM_MS("body_timeout", body_timeout_ms, 1, CF_MS_DAY),
    LIM_MS("idle_timeout", idle_timeout_ms, 1, CF_MS_DAY),
    LIM_MS("write_timeout", write_timeout_ms, 1, CF_MS_DAY),
    LIM_MS("tls_handshake_timeout", tls_handshake_timeout_ms, 1, CF_MS_DAY),
    LIM_MS("upstream_connect_timeout", upstream_connect_timeout_ms, 1, CF_MS_DAY),
    LIM_MS("upstream_first_byte_timeout", upstream_first_byte_timeout_ms, 1, CF_MS_DAY),
    LIM_MS("upstream_idle_timeout", upstream_idle_timeout_ms, 1, CF_MS_DAY),
    LIM_MS("upstream_timeout", upstream_timeout_ms, 1, CF_MS_DAY),
    LIM_MS("drain_timeout", drain_timeout_ms, 0, CF_MS_DAY),
    {.name = "max_connections", .type = CF_INT, INTW(mg_cfg_limits, max_connections), .min = 1,
     .max = 10000000},
};
static const cf_section limits_sec = SEC(limits_keys, NULL);

static const cf_key usage_keys[] = {
    {.name = "journal_dir", .type = CF_PATH, .flags = CF_REQ, FLD(mg_config, journal_dir)},
};
static const cf_section usage_sec = SEC(usage_keys, NULL);

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const cf_key log_keys[] = {
    {.name = "level", .type = CF_STR, FLD(mg_cfg_log, level), .choices = log_levels},
    {.name = "access_log", .type = CF_STR, FLD(mg_cfg_log, access_log)},
};
static const cf_section log_sec = SEC(log_keys, check_log);

static const cf_key root_keys[] = {
    {.name = "listen", .type = CF_LIST, .flags = CF_REQ, FLD(mg_config, listen), .off2 = offsetof(mg_config, nlisten),
     .min = 1, .sub = &listen_sec, .elsize = sizeof(mg_cfg_listen)},
    {.name = "public_url", .type = CF_URL, FLD(mg_config, public_url)},
    {.name = "trusted_proxies", .type = CF_CIDRLIST, FLD(mg_config, trusted_proxies),
     .off2 = offsetof(mg_config, ntrusted_proxies)},
    {.name = "database", .type = CF_SECTION, .off = 0, .sub = &database_sec},
    {.name = "oidc", .type = CF_SECTION, FLD(mg_config, oidc), .off2 = offsetof(mg_cfg_oidc, present) + 1,
     .sub = &oidc_sec},
    {.name = "session", .type = CF_SECTION, FLD(mg_config, session), .off2 = offsetof(mg_cfg_session, present) + 1,
     .sub = &session_sec},
    {.name = "auth", .type = CF_SECTION, .off = 0, .sub = &auth_sec},
    {.name = "providers", .type = CF_NAMED, FLD(mg_config, providers), .off2 = offsetof(mg_config, nproviders),
     .sub = &provider_sec, .elsize = sizeof(mg_cfg_provider), .nameoff = offsetof(mg_cfg_provider, name)},
    {.name = "models", .type = CF_LIST, FLD(mg_config, models), .off2 = offsetof(mg_config, nmodels),
     .sub = &model_sec, .elsize = sizeof(mg_cfg_model)},
    {.name = "limits", .type = CF_SECTION, FLD(mg_config, limits), .sub = &limits_sec},
    {.name = "usage", .type = CF_SECTION, .off = 0, .sub = &usage_sec},
    {.name = "workers", .type = CF_INT, INTW(mg_config, workers), .min = 0, .max = 256},
    {.name = "log", .type = CF_SECTION, FLD(mg_config, log), .sub = &log_sec},
};
static const cf_section root_sec = SEC(root_keys, check_root);

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */

static void set_defaults(mg_config *cfg)
{
    cfg->limits = (mg_cfg_limits){
        .max_body = 8u << 20,
        .max_header_bytes = 16u << 10,
        .max_headers = 100,
        .max_request_line = 8u << 10,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 30000,
        .idle_timeout_ms = 60000,
        .write_timeout_ms = 60000,
        .tls_handshake_timeout_ms = 10000,
        .upstream_connect_timeout_ms = 10000,
        .upstream_first_byte_timeout_ms = 120000,
        .upstream_idle_timeout_ms = 60000,
        .upstream_timeout_ms = 300000,
        .drain_timeout_ms = 30000,
        .max_connections = 20000,
    };
    cfg->session.lifetime_s = 8 * 3600;
    cfg->session.login_timeout_s = 300;
}

static char **strv_of(cf_ctx *c, const char *const *v, size_t n)
{
    char **out = cf_nomem(c, calloc(n, sizeof(char *)));
    for (size_t i = 0; out && i < n; i++)
        out[i] = cf_strdup(c, v[i]);
    return out;
}

/* Defaults that are strings, filled in after the walk so a value from the
 * file is never overwritten. */
static void set_string_defaults(cf_ctx *c, mg_config *cfg)
{
    if (cfg->log.level == NULL)
        cfg->log.level = cf_strdup(c, "info");
    if (cfg->log.access_log == NULL)
        cfg->log.access_log = cf_strdup(c, "stdout");
    if (!cfg->oidc.present)
        return;
    mg_cfg_oidc *o = &cfg->oidc;
    if (o->claim_groups == NULL)
        o->claim_groups = cf_strdup(c, "groups");
    if (o->claim_email == NULL)
        o->claim_email = cf_strdup(c, "email");
    if (o->claim_name == NULL)
        o->claim_name = cf_strdup(c, "name");
    if (o->scopes == NULL) {
        static const char *const def[] = {"openid", "email", "profile"};
        o->scopes = strv_of(c, def, MG_ARRAY_LEN(def));
        o->nscopes = o->scopes ? MG_ARRAY_LEN(def) : 0;
    }
    /* A JWT minted for us carries our client_id as its audience. */
    if (o->audiences == NULL && o->client_id) {
        const char *def[] = {o->client_id};
        o->audiences = strv_of(c, def, 1);
        o->naudiences = o->audiences ? 1 : 0;
    }
}

static void resolve_refs(cf_ctx *c)
{
    mg_config *cfg = c->cfg;
    for (size_t i = 0; i < c->nrefs; i++) {
        cf_ref *r = &c->refs[i];
        const char *names[64] = {0};
        size_t n = 0;
        if (r->kind == REF_PROVIDER) {
            if (mg_config_provider(cfg, r->name))
                continue;
            for (size_t j = 0; j < cfg->nproviders && n < MG_ARRAY_LEN(names); j++)
                if (cfg->providers[j].name)
                    names[n++] = cfg->providers[j].name;
        } else {
            if (mg_config_model(cfg, r->name, strlen(r->name)))
                continue;
            for (size_t j = 0; j < cfg->nmodels && n < MG_ARRAY_LEN(names); j++)
                if (cfg->models[j].name)
                    names[n++] = cfg->models[j].name;
        }
        const char *what = r->kind == REF_PROVIDER ? "provider" : "model";
        const char *hint = closest(r->name, names, n);
        if (hint)
            cf_err_path(c, r->mark, r->kpath, "unknown %s \"%s\" (did you mean \"%s\"?)", what, r->name, hint);
        else
            cf_err_path(c, r->mark, r->kpath, "unknown %s \"%s\" (not defined under %ss)", what, r->name, what);
    }
}

static char *read_file(const char *path, size_t *len, const char **why)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        *why = strerror(errno);
        return NULL;
    }
    mg_buf b = {0};
    char chunk[8192];
    size_t n;
    *why = NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > CF_MAX_FILE) {
            *why = "file too large";
            break;
        }
        if (mg_buf_append(&b, chunk, n) != MG_OK) {
            *why = "out of memory";
            break;
        }
    }
    if (*why == NULL && ferror(f))
        *why = strerror(errno ? errno : EIO);
    fclose(f);
    if (*why) {
        mg_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return b.p ? b.p : strdup("");
}

/* libyaml's reader errors carry a byte offset rather than a mark. */
static yaml_mark_t mark_from_offset(const char *text, size_t len, size_t off)
{
    yaml_mark_t m = {0};
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            m.line++;
            m.column = 0;
        } else {
            m.column++;
        }
    }
    return m;
}

/* YAML's flow style reserves `{` and `}`, so `session: { secret: ${S} }` (the
 * shape the configuration sketch uses) would not parse. Before parsing,
 * every `${NAME}` becomes `$(NAME)` — same length, so every line:col the
 * parser reports still points at the file — and subst() reads that form.
 * A literal `$(` in the file is escaped to `$$(` so it stays literal (its
 * line's later columns then shift by one; such text is rare). `$$` pairs are
 * copied whole. Returns a new malloc'd text (*len updated), or NULL. */
static char *braces_to_parens(const char *text, size_t *len)
{
    size_t n = *len, extra = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (text[i] == '$' && text[i + 1] == '(')
            extra++;
    char *out = malloc(n + extra + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] != '$' || i + 1 >= n) {
            out[o++] = text[i];
            continue;
        }
        if (text[i + 1] == '$') {
            out[o++] = '$';
            out[o++] = '$';
            i++;
            continue;
        }
        if (text[i + 1] == '(') {
            out[o++] = '$';
            out[o++] = '$';
            continue;   /* the '(' is copied next */
        }
        size_t end = i + 2;
        while (text[i + 1] == '{' && end < n && var_char(text[end], end == i + 2))
            end++;
        if (text[i + 1] == '{' && end > i + 2 && end < n && text[end] == '}') {
            out[o++] = '$';
            out[o++] = '(';
            memcpy(out + o, text + i + 2, end - i - 2);
            o += end - i - 2;
            out[o++] = ')';
            i = end;
            continue;
        }
        out[o++] = '$';   /* anything else: subst() judges it as written */
    }
    out[o] = '\0';
    *len = o;
    return out;
}

static void syntax_error(cf_ctx *c, yaml_parser_t *p, const char *text, size_t len)
{
    yaml_mark_t m = p->problem_mark;
    if (p->error == YAML_READER_ERROR)
        m = mark_from_offset(text, len, p->problem_offset);
    const char *problem = p->problem ? p->problem : "cannot parse";
    if (p->context && p->context_mark.line != m.line)
        cf_err_path(c, m, "", "YAML syntax error: %s %s started at line %zu", problem, p->context,
                    p->context_mark.line + 1);
    else if (p->context)
        cf_err_path(c, m, "", "YAML syntax error: %s %s", problem, p->context);
    else
        cf_err_path(c, m, "", "YAML syntax error: %s", problem);
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return NULL;
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

mg_config *mg_config_load(const char *path, mg_buf *errs)
{
    cf_ctx c = {.file = path, .errs = errs};
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    bool have_doc = false;
    size_t len = 0;
    const char *why;
    char *text = read_file(path, &len, &why);
    if (text == NULL) {
        if (errs)
            mg_buf_printf(errs, "%s: cannot read configuration: %s\n", path, why ? why : "out of memory");
        return NULL;
    }
    char *raw = text;
    text = braces_to_parens(raw, &len);
    free(raw);
    if (text == NULL) {
        if (errs)
            mg_buf_printf(errs, "%s: out of memory\n", path);
        return NULL;
    }
    c.cfg = cf_nomem(&c, calloc(1, sizeof(mg_config)));
    if (c.cfg == NULL || !yaml_parser_initialize(&parser)) {
        if (errs)
            mg_buf_printf(errs, "%s: out of memory\n", path);
        free(c.cfg);
        free(text);
        return NULL;
    }
    c.cfg->path = cf_strdup(&c, path);
    c.dir = dir_of(path);
    set_defaults(c.cfg);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        syntax_error(&c, &parser, text, len);
        goto out;
    }
    have_doc = true;
    c.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        cf_err_path(&c, doc.start_mark, "", "the file is empty (at least one listen entry is required)");
        goto out;
    }
    /* A second document would be silently ignored otherwise. */
    if (!yaml_parser_load(&parser, &extra)) {
        syntax_error(&c, &parser, text, len);
    } else {
        if (yaml_document_get_root_node(&extra))
            cf_err_path(&c, extra.start_mark, "", "only one YAML document is allowed");
        yaml_document_delete(&extra);
    }
    if (root->type != YAML_MAPPING_NODE || is_null(root)) {
        cf_err_path(&c, root->start_mark, "", "the top level must be a mapping of keys, got %s", node_kind(root));
        goto out;
    }
    walk_map(&c, root, &root_sec, c.cfg);
    resolve_refs(&c);
    set_string_defaults(&c, c.cfg);
out:
    flush_errors(&c);
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(c.refs);
    free(c.dir);
    free(text);
    if (c.nerrs > 0 || c.oom) {
        mg_config_free(c.cfg);
        return NULL;
    }
    return c.cfg;
}
