/* modelgate — the authenticate stage and bearer JWTs.
 *
 * Order of checks, cheapest first: master key, API key (by prefix), JWT (by
 * shape), SSO session cookie. A JWT is first looked up in the principal
 * cache (SHA-256 of the token -> identity, expiring at the token's exp), so
 * a client reusing its token costs one hash and one cache probe. On a miss
 * the header is pre-parsed (alg allowlist) and the claims checked before
 * any key is touched; with the issuer's key already loaded the signature is
 * checked right here (CPU only, ~50 µs for RS256); an unknown kid parks the
 * request while the IdP pool refetches the JWKS (throttled to one per 30 s).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth_int.h"
#include "jwt.h"
#include "sso.h"

#include "gateway/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define IDP_THREADS 2
#define DB_THREADS 2
#define POOL_QUEUE 512

static struct {
    pthread_once_t once;
    mg_job_pool *idp, *db;
    mg_auth_cache *jwt_cache;
} g = {.once = PTHREAD_ONCE_INIT};

/* A pool thread may hold database connections of the key store and of
 * the session store; they close with it. */
static void auth_thread_exit(void)
{
    mg_auth_keys_thread_done();
    mg_auth_sso_thread_done();
}

static void init_once(void)
{
    g.idp = mg_job_pool_new("idp", IDP_THREADS, POOL_QUEUE, auth_thread_exit);
    g.db = mg_job_pool_new("authdb", DB_THREADS, POOL_QUEUE, auth_thread_exit);
    g.jwt_cache = mg_auth_cache_new(100000, &mg_auth_identity_cache_ops);
}

/* The workers may start before (or without) mg_auth_start in tests and
 * tools; everything is created on first use as well. */
static bool ready(void)
{
    pthread_once(&g.once, init_once);
    return g.idp && g.db && g.jwt_cache;
}

mg_job_pool *mg_auth_idp_pool(void) { return ready() ? g.idp : NULL; }
mg_job_pool *mg_auth_db_pool(void) { return ready() ? g.db : NULL; }

mg_rc mg_auth_start(const mg_config *cfg, mg_buf *errs)
{
    if (!ready()) {
        mg_buf_append_str(errs, "auth: cannot start the auth thread pools\n");
        return MG_ERR;
    }
    if (cfg->oidc.present)
        mg_auth_oidc_load(cfg, errs);
    /* liboauth2 is configured here, in the main thread, before any worker
     * or pool thread can use it. */
    return mg_auth_sso_setup(cfg, errs) == MG_ENOMEM ? MG_ERR : MG_OK;
}

mg_rc mg_auth_reload(const mg_config *cfg, mg_buf *errs)
{
    if (ready())
        mg_auth_cache_clear(g.jwt_cache);
    if (!cfg->oidc.present)
        mg_auth_oidc_reset();
    else
        mg_auth_oidc_load(cfg, errs);
    mg_auth_sso_setup(cfg, errs);
    return MG_OK;
}

void mg_auth_stop(void)
{
    if (!ready())
        return;
    mg_job_pool_free(g.idp);
    mg_job_pool_free(g.db);
    g.idp = g.db = NULL;
    mg_auth_keys_shutdown();
    mg_auth_sso_teardown();
    mg_auth_cache_free(g.jwt_cache);
    g.jwt_cache = NULL;
    mg_auth_oidc_reset();
}

bool mg_auth_credential(const mg_http_request *http, mg_str *out)
{
    const mg_http_header *h = mg_http_header_get(http, "authorization");
    if (h) {
        mg_str v = h->value;
        if (v.n > 7 && mg_str_ieq(mg_str_make(v.p, 7), MG_STR_LIT("bearer "))) {
            size_t i = 7;
            while (i < v.n && v.p[i] == ' ')
                i++;
            *out = mg_str_make(v.p + i, v.n - i);
            return out->n > 0;
        }
        return false;
    }
    h = mg_http_header_get(http, "x-api-key");
    if (h && h->value.n > 0) {
        *out = h->value;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------ JWT */

static void jwt_reject(mg_req *req, const char *why)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "the bearer token is not valid: %s", why);
    mg_req_respond_error(req, 401, "authentication_error", "invalid_token", msg, 0);
}

static void rules_for(const mg_config *cfg, mg_auth_jwt_rules *r)
{
    r->issuer = cfg->oidc.issuer;
    /* Without configured audiences only tokens issued for our client id. */
    r->audiences = cfg->oidc.naudiences ? (const char *const *)cfg->oidc.audiences
                                        : (const char *const *)&cfg->oidc.client_id;
    r->naudiences = cfg->oidc.naudiences ? cfg->oidc.naudiences : 1;
    r->client_id = cfg->oidc.client_id;
    r->access_token = true;
}

/* A verified token becomes a cached identity. NULL on OOM. */
static mg_auth_identity *jwt_identity(const mg_config *cfg, const mg_auth_jwt *jwt, const uint8_t hash[32])
{
    mg_auth_identity *id = mg_auth_identity_from_claims(jwt->claims, &cfg->oidc, "jwt");
    if (id == NULL)
        return NULL;
    /* Role mappings come from the policy engine (mg_auth_map_roles); until
     * it provides them the identity has no roles. */
    if (id->exp > 0)
        mg_auth_cache_put(g.jwt_cache, hash, id, id->exp);
    return id;
}

typedef struct jwt_job {
    mg_job job;
    char *token;
    size_t len;
    uint8_t hash[32];
    mg_auth_identity *ident;       /* result */
    const char *why;               /* failure (static) */
    bool unavailable;              /* the IdP could not be reached */
} jwt_job;

static void jwt_job_destroy(mg_job *j)
{
    jwt_job *jj = (jwt_job *)j;
    free(jj->token);
    mg_auth_identity_unref(jj->ident);
    free(jj);
}

static void jwt_job_run(mg_job *j)
{
    jwt_job *jj = (jwt_job *)j;
    const mg_config *cfg = j->snap->cfg;
    mg_auth_jwt jwt;
    if (mg_auth_jwt_parse(jj->token, jj->len, &jwt, &jj->why) != MG_OK)
        return;
    EVP_PKEY *key = NULL;
    mg_auth_oidc_ensure_issuer(cfg->oidc.issuer);
    mg_auth_key_rc krc = mg_auth_oidc_key_refresh(jwt.kid, (int)jwt.alg, &key);
    if (krc == MG_KEY_FOUND) {
        if (mg_auth_jwt_verify(&jwt, jj->token, key))
            jj->ident = jwt_identity(cfg, &jwt, jj->hash);
        else
            jj->why = "signature does not verify";
        EVP_PKEY_free(key);
        if (jj->ident == NULL && jj->why == NULL)
            jj->why = "out of memory";
    } else if (krc == MG_KEY_UNKNOWN) {
        jj->why = "signing key is unknown";
    } else {
        jj->unavailable = true;
    }
    mg_auth_jwt_free(&jwt);
}

static void jwt_job_done(mg_job *j, mg_req *req)
{
    jwt_job *jj = (jwt_job *)j;
    if (jj->ident) {
        if (mg_auth_identity_apply(req, jj->ident) == MG_OK) {
            mg_pipeline_resume(req);
            return;
        }
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return;
    }
    if (jj->unavailable) {
        mg_req_respond_error(req, 503, "server_error", "idp_unavailable",
                             "the identity provider's keys cannot be loaded; try again shortly", 5);
        return;
    }
    jwt_reject(req, jj->why ? jj->why : "rejected");
}

static mg_stage_rc jwt_park(mg_req *req, mg_str tok, const uint8_t hash[32])
{
    jwt_job *jj = calloc(1, sizeof(*jj));
    if (jj == NULL || (jj->token = malloc(tok.n)) == NULL) {
        free(jj);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    memcpy(jj->token, tok.p, tok.n);
    jj->len = tok.n;
    memcpy(jj->hash, hash, 32);
    mg_job_init(&jj->job, req, req->snap);
    jj->job.run = jwt_job_run;
    jj->job.done = jwt_job_done;
    jj->job.destroy = jwt_job_destroy;
    if (mg_job_attach(&jj->job, req) != MG_OK) {
        mg_job_release(&jj->job);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    if (mg_job_pool_submit(g.idp, &jj->job) != MG_OK) {
        mg_job_release(&jj->job);
        mg_req_respond_error(req, 503, "server_error", "idp_unavailable",
                             "too many token checks in flight; try again shortly", 1);
        return MG_STAGE_RESPONDED;
    }
    return MG_STAGE_PARKED;
}

static mg_stage_rc jwt_stage(mg_req *req, mg_str tok)
{
    const mg_config *cfg = req->snap->cfg;
    uint8_t hash[32];
    mg_auth_sha256(tok.p, tok.n, hash);
    int64_t now = mg_auth_wall_s();
    mg_auth_identity *id = mg_auth_cache_get(g.jwt_cache, hash, now);
    if (id) {
        mg_rc rc = mg_auth_identity_apply(req, id);
        mg_auth_identity_unref(id);
        if (rc == MG_OK)
            return MG_STAGE_NEXT;
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    mg_auth_jwt jwt;
    const char *why = NULL;
    if (mg_auth_jwt_parse(tok.p, tok.n, &jwt, &why) != MG_OK) {
        jwt_reject(req, why);
        return MG_STAGE_RESPONDED;
    }
    mg_auth_jwt_rules rules;
    rules_for(cfg, &rules);
    if (!mg_auth_jwt_check(&jwt, &rules, now, &why)) {
        mg_auth_jwt_free(&jwt);
        jwt_reject(req, why);
        return MG_STAGE_RESPONDED;
    }
    EVP_PKEY *key = NULL;
    mg_auth_oidc_ensure_issuer(cfg->oidc.issuer);
    if (mg_auth_oidc_key(jwt.kid, (int)jwt.alg, &key) != MG_KEY_FOUND) {
        mg_auth_jwt_free(&jwt);
        return jwt_park(req, tok, hash);
    }
    bool ok = mg_auth_jwt_verify(&jwt, tok.p, key);
    EVP_PKEY_free(key);
    if (!ok) {
        mg_auth_jwt_free(&jwt);
        jwt_reject(req, "signature does not verify");
        return MG_STAGE_RESPONDED;
    }
    id = jwt_identity(cfg, &jwt, hash);
    mg_auth_jwt_free(&jwt);
    mg_rc rc = id ? mg_auth_identity_apply(req, id) : MG_ENOMEM;
    mg_auth_identity_unref(id);
    if (rc != MG_OK) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    return MG_STAGE_NEXT;
}

/* ------------------------------------------------------------ the stage */

mg_stage_rc mg_auth_stage(mg_req *req)
{
    if (!ready()) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "authentication is unavailable", 1);
        return MG_STAGE_RESPONDED;
    }
    const mg_config *cfg = req->snap->cfg;
    mg_str secret;
    if (mg_auth_credential(req->http, &secret)) {
        const char *master = cfg->master_key;
        if (master && mg_ct_equal(secret.p, secret.n, master, strlen(master))) {
            req->principal.authenticated = true;
            req->principal.master = true;
            req->principal.kind = "master_key";
            req->principal.subject = "master";
            return MG_STAGE_NEXT;
        }
        char id[MG_KEY_ID_LEN + 1];
        if (mg_auth_key_parse(secret.p, secret.n, id))
            return mg_auth_keys_stage(req, secret, id);
        if (cfg->oidc.present && mg_auth_jwt_looks_like(secret.p, secret.n))
            return jwt_stage(req, secret);
        mg_req_respond_error(req, 401, "authentication_error", "invalid_credentials",
                             "the credentials are not valid", 0);
        return MG_STAGE_RESPONDED;
    }
    /* The SSO session cookie (a browser that signed in at /auth/login). */
    mg_stage_rc rc;
    if (mg_auth_sso_session_stage(req, &rc))
        return rc;
    if (mg_auth_sso_wants_redirect(req)) {
        mg_auth_sso_redirect_login(req);
        return MG_STAGE_RESPONDED;
    }
    mg_req_respond_error(req, 401, "authentication_error", "missing_credentials",
                         "no credentials: send Authorization: Bearer <key>", 0);
    return MG_STAGE_RESPONDED;
}
