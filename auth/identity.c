/* modelgate — identities: claims to principal, shared by reference.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth_int.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_GROUPS 256   /* more than that is a misconfigured IdP, not a user */

/* SHA256() looks the algorithm up by name on every call (OpenSSL 3), which
 * cost more than the hashing itself on the per-request path (two digests
 * per API-key request). The algorithm is fetched once and each thread keeps
 * its own digest context; the key's destructor frees it when the thread ends. */
static struct {
    pthread_once_t once;
    EVP_MD *md;
    pthread_key_t ctx_key;
    bool have_key;
} sha = {.once = PTHREAD_ONCE_INIT};

static void sha_ctx_free(void *ctx) { EVP_MD_CTX_free(ctx); }

static void sha_init(void)
{
    sha.md = EVP_MD_fetch(NULL, "SHA256", NULL);
    sha.have_key = pthread_key_create(&sha.ctx_key, sha_ctx_free) == 0;
}

void mg_auth_sha256(const void *p, size_t n, uint8_t out[32])
{
    pthread_once(&sha.once, sha_init);
    EVP_MD_CTX *ctx = sha.have_key ? pthread_getspecific(sha.ctx_key) : NULL;
    if (ctx == NULL && sha.md && sha.have_key && (ctx = EVP_MD_CTX_new()) != NULL &&
        pthread_setspecific(sha.ctx_key, ctx) != 0) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    unsigned int len = 0;
    if (ctx && EVP_DigestInit_ex2(ctx, sha.md, NULL) == 1 && EVP_DigestUpdate(ctx, p, n) == 1 &&
        EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == 32)
        return;
    SHA256(p, n, out);   /* out of memory above: the slow path still gives the right digest */
}

int64_t mg_auth_wall_s(void) { return (int64_t)time(NULL); }

mg_auth_identity *mg_auth_identity_new(const char *kind)
{
    mg_auth_identity *id = calloc(1, sizeof(*id));
    if (id) {
        atomic_init(&id->refs, 1);
        id->kind = kind;
    }
    return id;
}

mg_auth_identity *mg_auth_identity_ref(mg_auth_identity *id)
{
    atomic_fetch_add(&id->refs, 1);
    return id;
}

void mg_auth_identity_unref(mg_auth_identity *id)
{
    if (id == NULL || atomic_fetch_sub(&id->refs, 1) != 1)
        return;
    free(id->subject);
    free(id->email);
    free(id->name);
    free(id->cost_center);
    free(id->key_id);
    for (size_t i = 0; i < id->ngroups; i++)
        free(id->groups[i]);
    free(id->groups);
    for (size_t i = 0; i < id->nroles; i++)
        free(id->roles[i]);
    free(id->roles);
    free(id);
}

static void *ident_ref(void *v) { return mg_auth_identity_ref(v); }
static void ident_unref(void *v) { mg_auth_identity_unref(v); }
const mg_auth_cache_ops mg_auth_identity_cache_ops = {ident_ref, ident_unref};

static bool push_str(char ***arr, size_t *n, const char *s)
{
    char **a = realloc(*arr, (*n + 1) * sizeof(char *));
    if (a == NULL)
        return false;
    *arr = a;
    if ((a[*n] = strdup(s)) == NULL)
        return false;
    (*n)++;
    return true;
}

mg_rc mg_auth_identity_add_role(mg_auth_identity *id, const char *role)
{
    for (size_t i = 0; i < id->nroles; i++)
        if (strcmp(id->roles[i], role) == 0)
            return MG_OK;
    return push_str(&id->roles, &id->nroles, role) ? MG_OK : MG_ENOMEM;
}

/* A claim as a string: strings as they are, numbers printed (cost centres
 * are often numeric). */
static char *claim_str(const cJSON *claims, const char *name)
{
    if (name == NULL)
        return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
    if (cJSON_IsString(v))
        return strdup(v->valuestring);
    if (cJSON_IsNumber(v)) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%.0f", v->valuedouble);
        return strdup(buf);
    }
    return NULL;
}

mg_auth_identity *mg_auth_identity_from_claims(const cJSON *claims, const mg_cfg_oidc *oidc,
                                               const char *kind)
{
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
    if (!cJSON_IsString(sub))
        return NULL;
    mg_auth_identity *id = mg_auth_identity_new(kind);
    if (id == NULL)
        return NULL;
    id->subject = strdup(sub->valuestring);
    id->email = claim_str(claims, oidc->claim_email ? oidc->claim_email : "email");
    id->name = claim_str(claims, oidc->claim_name ? oidc->claim_name : "name");
    id->cost_center = claim_str(claims, oidc->claim_cost_center);
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(claims, "exp");
    if (cJSON_IsNumber(exp))
        id->exp = (int64_t)exp->valuedouble;
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(claims, oidc->claim_groups ? oidc->claim_groups : "groups");
    bool ok = id->subject != NULL;
    if (cJSON_IsString(g)) {
        ok = ok && push_str(&id->groups, &id->ngroups, g->valuestring);
    } else if (cJSON_IsArray(g)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, g) {
            if (cJSON_IsString(e) && id->ngroups < MAX_GROUPS)
                ok = ok && push_str(&id->groups, &id->ngroups, e->valuestring);
        }
    }
    if (!ok) {
        mg_auth_identity_unref(id);
        return NULL;
    }
    return id;
}

bool mg_auth_identity_claim(void *ctx, const char *name, const char *value)
{
    const mg_auth_identity *id = ctx;
    if (strcmp(name, "groups") == 0) {
        for (size_t i = 0; i < id->ngroups; i++)
            if (strcmp(id->groups[i], value) == 0)
                return true;
        return false;
    }
    const char *v = strcmp(name, "sub") == 0 ? id->subject
                    : strcmp(name, "email") == 0 ? id->email
                    : strcmp(name, "cost_center") == 0 ? id->cost_center : NULL;
    return v && strcmp(v, value) == 0;
}

size_t mg_auth_map_roles(mg_auth_identity *id, const mg_auth_role_mapping *maps, size_t n)
{
    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        if (maps[i].claim == NULL || maps[i].equals == NULL || maps[i].role == NULL)
            continue;
        if (!mg_auth_identity_claim(id, maps[i].claim, maps[i].equals))
            continue;
        size_t before = id->nroles;
        if (mg_auth_identity_add_role(id, maps[i].role) == MG_OK && id->nroles > before)
            added++;
    }
    return added;
}

static void ident_release(void *v) { mg_auth_identity_unref(v); }

mg_rc mg_auth_identity_apply(mg_req *req, mg_auth_identity *id)
{
    if (mg_pool_cleanup_add(req->pool, ident_release, mg_auth_identity_ref(id)) != MG_OK) {
        mg_auth_identity_unref(id);
        return MG_ENOMEM;
    }
    mg_principal *p = &req->principal;
    p->authenticated = true;
    p->master = false;
    p->kind = id->kind;
    p->subject = id->subject;
    p->email = id->email;
    p->cost_center = id->cost_center;
    p->key_id = id->key_id;
    p->name = id->name;
    p->expires_at = id->exp;
    p->groups = (const char *const *)id->groups;
    p->ngroups = id->ngroups;
    p->role_list = (const char *const *)id->roles;
    p->nroles = id->nroles;
    p->roles = NULL;
    if (id->nroles > 0) {
        /* The comma-joined form the ledger records, in the request's arena. */
        size_t len = 0;
        for (size_t i = 0; i < id->nroles; i++)
            len += strlen(id->roles[i]) + 1;
        char *s = mg_pool_alloc(req->pool, len);
        if (s == NULL)
            return MG_ENOMEM;
        size_t o = 0;
        for (size_t i = 0; i < id->nroles; i++) {
            size_t n = strlen(id->roles[i]);
            if (i)
                s[o++] = ',';
            memcpy(s + o, id->roles[i], n);
            o += n;
        }
        s[o] = '\0';
        p->roles = s;
    }
    return MG_OK;
}

static void json_strs(mg_buf *b, const char *const *v, size_t n)
{
    mg_buf_append(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            mg_buf_append(b, ",", 1);
        mg_buf_append_json_str(b, v[i], strlen(v[i]));
    }
    mg_buf_append(b, "]", 1);
}

static void json_field(mg_buf *b, const char *name, const char *v)
{
    mg_buf_printf(b, ",\"%s\":", name);
    if (v)
        mg_buf_append_json_str(b, v, strlen(v));
    else
        mg_buf_append_str(b, "null");
}

mg_rc mg_auth_principal_json(const mg_req *req, mg_buf *out)
{
    const mg_principal *p = &req->principal;
    const char *kind = p->kind ? p->kind : "unknown";
    mg_buf_append_str(out, "{\"kind\":");
    mg_buf_append_json_str(out, kind, strlen(kind));
    json_field(out, "subject", p->subject);
    json_field(out, "email", p->email);
    json_field(out, "name", p->name);
    json_field(out, "cost_center", p->cost_center);
    if (p->key_id)
        json_field(out, "key_id", p->key_id);
    mg_buf_append_str(out, ",\"groups\":");
    json_strs(out, p->groups, p->ngroups);
    mg_buf_append_str(out, ",\"roles\":");
    json_strs(out, p->role_list, p->nroles);
    mg_buf_append_str(out, ",\"permissions\":");
    json_strs(out, p->permissions, p->npermissions);
    /* The models of this gateway's config the policy lets this principal use
     * (concrete names, what /v1/models lists); the policy member that
     * mg_policy_describe adds has the patterns and the limits. */
    mg_buf_append_str(out, ",\"allowed_models\":[");
    const mg_config *cfg = req->snap->cfg;
    size_t k = 0;
    for (size_t i = 0; i < cfg->nmodels; i++) {
        if (!mg_policy_model_allowed(req, &cfg->models[i]))
            continue;
        if (k++)
            mg_buf_append(out, ",", 1);
        mg_buf_append_json_str(out, cfg->models[i].name, strlen(cfg->models[i].name));
    }
    mg_buf_append_str(out, "]");
    if (p->expires_at)
        mg_buf_printf(out, ",\"expires_at\":%lld", (long long)p->expires_at);
    return mg_buf_append_str(out, "}");
}
