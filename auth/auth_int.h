/* modelgate — auth internals shared by the files of auth/ (not a public API).
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_AUTH_INT_H
#define MG_AUTH_INT_H

#include "auth.h"
#include "gateway/jobs.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>

/* ---- identities (identity.c) ---------------------------------------------
 * An authenticated identity, immutable once built and shared by reference:
 * cache entries hold one, each request using it holds one (released with the
 * request's arena), so req->principal's strings stay valid for the request. */
typedef struct mg_auth_identity {
    atomic_int refs;
    const char *kind;              /* "jwt", "session", "api_key" (static) */
    char *subject, *email, *name, *cost_center, *key_id;
    char **groups; size_t ngroups;
    char **roles; size_t nroles;
    int64_t exp;                   /* unix seconds the identity is valid until; 0: none */
} mg_auth_identity;

/* From verified claims, with the claim names of cfg->oidc. Groups may be an
 * array of strings or one string. NULL on OOM or when `sub` is missing. */
mg_auth_identity *mg_auth_identity_from_claims(const cJSON *claims, const mg_cfg_oidc *oidc,
                                               const char *kind);
mg_auth_identity *mg_auth_identity_new(const char *kind);
mg_rc mg_auth_identity_add_role(mg_auth_identity *id, const char *role);
mg_auth_identity *mg_auth_identity_ref(mg_auth_identity *id);
void mg_auth_identity_unref(mg_auth_identity *id);
/* Makes id the request's principal (takes a new reference, released when
 * the request ends). MG_ENOMEM if the cleanup could not be registered. */
mg_rc mg_auth_identity_apply(mg_req *req, mg_auth_identity *id);

/* ---- caches (cache.c) ------------------------------------------------------
 * Map from a 32-byte digest to a refcounted value with an absolute expiry
 * (wall-clock seconds). Striped locks; at most `max` entries (expired ones
 * are dropped first, then the oldest in the stripe). */
typedef struct mg_auth_cache mg_auth_cache;
typedef struct mg_auth_cache_ops {
    void *(*ref)(void *v);
    void (*unref)(void *v);
} mg_auth_cache_ops;

mg_auth_cache *mg_auth_cache_new(size_t max, const mg_auth_cache_ops *ops);
void mg_auth_cache_free(mg_auth_cache *c);
/* Returns a new reference to the value for key if it has not expired at
 * now, else NULL. */
void *mg_auth_cache_get(mg_auth_cache *c, const uint8_t key[32], int64_t now);
/* Stores a new reference to v (replacing any previous value). */
void mg_auth_cache_put(mg_auth_cache *c, const uint8_t key[32], void *v, int64_t expires_at);
void mg_auth_cache_del(mg_auth_cache *c, const uint8_t key[32]);
void mg_auth_cache_clear(mg_auth_cache *c);
size_t mg_auth_cache_size(mg_auth_cache *c);

extern const mg_auth_cache_ops mg_auth_identity_cache_ops;

void mg_auth_sha256(const void *p, size_t n, uint8_t out[32]);
int64_t mg_auth_wall_s(void);

/* ---- shared state (auth.c) ------------------------------------------------ */
mg_job_pool *mg_auth_idp_pool(void);   /* IdP traffic: discovery, JWKS, code exchange */
mg_job_pool *mg_auth_db_pool(void);    /* database lookups */

/* ---- OIDC provider metadata and keys (oidc.c) ------------------------------ */

/* Blocking HTTP GET for metadata (pool threads and start-up only): no
 * redirects, http/https only, timeout_ms for the whole transfer, at most
 * 1 MiB. Returns the HTTP status (0 on transport failure). */
int mg_auth_http_get(const char *url, mg_buf *out, long timeout_ms);

/* Current provider state for issuer; loads the discovery document and JWKS
 * when they are missing (blocking: pool threads only). */
typedef enum mg_auth_key_rc { MG_KEY_FOUND, MG_KEY_UNKNOWN, MG_KEY_UNAVAILABLE } mg_auth_key_rc;
/* Looks up the key for kid/alg in the cached JWKS without I/O (loop-safe).
 * MG_KEY_FOUND with *key (new reference); MG_KEY_UNKNOWN when the JWKS is
 * loaded but has no such key; MG_KEY_UNAVAILABLE when nothing is loaded. */
mg_auth_key_rc mg_auth_oidc_key(const char *kid, int alg, EVP_PKEY **key);
/* Blocking: (re)fetches the JWKS unless one was fetched less than 30 s ago
 * (per issuer), then looks again. */
mg_auth_key_rc mg_auth_oidc_key_refresh(const char *kid, int alg, EVP_PKEY **key);
/* Blocking: fetches discovery + JWKS for cfg->oidc now. MG_ERR with a line in
 * errs when it failed (the gateway still starts; bearer JWTs and logins then
 * retry the fetch, throttled). */
mg_rc mg_auth_oidc_load(const mg_config *cfg, mg_buf *errs);
/* A string from the discovery document ("end_session_endpoint", ...), copied
 * into out; false when absent or nothing loaded. */
bool mg_auth_oidc_meta(const char *name, char *out, size_t outsz);
/* The raw discovery JSON (new malloc'd string) or NULL. */
char *mg_auth_oidc_discovery_json(void);
uint64_t mg_auth_oidc_jwks_fetches(void);
/* Makes issuer the current one (cheap when it already is; a different one
 * drops the loaded keys and metadata). */
void mg_auth_oidc_ensure_issuer(const char *issuer);
void mg_auth_oidc_reset(void);

/* ---- API keys (keys.c, keys_db.c) ------------------------------------------ */
#define MG_KEY_PREFIX "mgk_"
#define MG_KEY_ID_LEN 16           /* hex chars */
#define MG_KEY_SECRET_LEN 43       /* base64url of 32 random bytes */
#define MG_KEY_LEN (4 + MG_KEY_ID_LEN + 1 + MG_KEY_SECRET_LEN)

/* Makes a new key: out (MG_KEY_LEN + 1 bytes) "mgk_<16 hex id>_<43 b64url>",
 * id_out (MG_KEY_ID_LEN + 1) its id. MG_ERR if the RNG failed. */
mg_rc mg_auth_key_generate(char *out, char *id_out);
/* Splits a presented key; false unless it has exactly the format above. */
bool mg_auth_key_parse(const char *s, size_t n, char id_out[MG_KEY_ID_LEN + 1]);
/* The stored form: lower-case hex SHA-256 of the whole key (65 bytes). */
void mg_auth_key_hash_hex(const char *key, size_t n, char out[65]);

/* Stage part for API keys (auth.c calls it with a parsed id). */
mg_stage_rc mg_auth_keys_stage(mg_req *req, mg_str key, const char *id);
void mg_auth_keys_shutdown(void);

/* libpq helpers with a deadline (keys_db.c). */
typedef struct pg_conn PGconn;
PGconn *mg_auth_db_connect(const char *url, char *err, size_t errsz);
/* A pool thread's own database connections, closed when the thread ends. */
void mg_auth_keys_thread_done(void);
void mg_auth_sso_thread_done(void);


/* ---- API keys in the database (keys_store.c; blocking) -------------------- */
#include <libpq-fe.h>
bool mg_auth_keys_role_ok(const char *s);
bool mg_auth_keys_text_ok(const char *s, size_t max);
/* Accepts an id or the printed "mgk_<id>" (moves *id past the prefix). */
bool mg_auth_keys_id_ok(const char **id);
/* Whether the stored policy defines role: 1 yes, 0 no (a key for it could do
 * nothing), -1 no policy is stored yet (keys may come first, for a policy
 * imported later), -2 database error (err filled). */
int mg_auth_keys_role_defined(PGconn *c, const char *role, char *err, size_t errsz);
/* Creates a key (expires_ms 0 = never); key/id/expires_at filled on MG_OK.
 * MG_ERR: generator failure; MG_AGAIN: database error (message in err). */
mg_rc mg_auth_keys_create(PGconn *c, const char *user, const char *role, const char *name,
                          uint64_t expires_ms, char key[MG_KEY_LEN + 1], char id[MG_KEY_ID_LEN + 1],
                          char *expires_at, size_t expires_sz, char *err, size_t errsz);
/* Columns: id, prefix, owner, role, name, created, expires ('' never),
 * state (active|expired|revoked), last used ('' never). NULL on error. */
PGresult *mg_auth_keys_list(PGconn *c);
/* 1 revoked now, 2 already revoked, 0 no such key, -1 database error. */
int mg_auth_keys_revoke(PGconn *c, const char *id);

#endif
