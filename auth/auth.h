/* modelgate — authentication: who is calling.
 *
 * The authenticate stage (mg_auth_stage, declared in gateway/pipeline.h)
 * accepts, in this order:
 *   1. the break-glass master key (auth.master_key), constant-time compare;
 *   2. modelgate API keys `mgk_<id>_<secret>` (Bearer or x-api-key),
 *      checked against the database through a short-lived cache;
 *   3. IdP-issued JWT access tokens (Bearer), verified against the issuer's
 *      JWKS, with iss/aud/azp/exp/nbf/iat/typ checked here;
 * Anything else is 401 (with WWW-Authenticate), or for a browser without a
 * session a redirect to /auth/login.
 *
 * Nothing here blocks a worker loop: database lookups, JWKS refetches and
 * the code exchange run on two small bounded job pools (gateway/jobs.h)
 * and the stage parks the request meanwhile. See docs/identity.md.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_AUTH_H
#define MG_AUTH_H

#include "gateway/pipeline.h"

/* The secret the client presented: `Authorization: Bearer <secret>` (scheme
 * case-insensitive), else `x-api-key: <secret>`. False when there is none or
 * Authorization uses another scheme. out points into the request head. */
/* Appends the authenticated principal of req as the JSON object GET /auth/me
 * starts with (kind, subject, email, name, cost center, key id, groups,
 * roles, permissions, the configured models it may use, expires_at when the
 * credential has an end). The policy resolve must have run for the model
 * list. MG_ENOMEM when out grew short. */
mg_rc mg_auth_principal_json(const mg_req *req, mg_buf *out);

bool mg_auth_credential(const mg_http_request *http, mg_str *out);

/* Starts the auth pools and, when cfg has an `oidc` section, fetches the
 * provider's discovery document and JWKS (blocking, bounded by a 5 s
 * timeout per fetch). Call once from the main thread before the workers
 * start. A failed IdP fetch is logged and appended to errs but is not
 * fatal (MG_OK): the gateway serves API keys meanwhile and retries the
 * fetch, throttled, when a token needs it. MG_ERR only if the pools could
 * not start. */
mg_rc mg_auth_start(const mg_config *cfg, mg_buf *errs);
/* SIGHUP: re-reads the provider metadata for the new config (blocking;
 * call from the thread that handles reloads, not a worker loop) and drops
 * cached identities, so changed claim mappings apply at once. */
mg_rc mg_auth_reload(const mg_config *cfg, mg_buf *errs);
/* Whether the IdP's discovery document and signing keys are loaded (for
 * /readyz when an `oidc` section is configured). */
bool mg_auth_idp_ready(void);
/* Stops the pools (after in-flight jobs) and frees the caches. */
void mg_auth_stop(void);

/* ---- role mappings ---------------------------------------------------------
 * The policy engine owns role mappings (SPEC §5); it hands them over in this
 * shape, or calls mg_policy_map_roles() with mg_auth_identity_claim as the
 * claim callback and an identity as ctx. Without a mapping source a
 * principal from the IdP has no roles and the authorize stage decides. */
typedef struct mg_auth_role_mapping {
    const char *claim;             /* "groups", "email", "sub", "cost_center" */
    const char *equals;
    const char *role;
} mg_auth_role_mapping;

struct mg_auth_identity;
/* Claim test for mg_policy_map_roles: whether the identity's claim `name`
 * equals (strings) or contains (groups) value. ctx is a mg_auth_identity. */
bool mg_auth_identity_claim(void *ctx, const char *name, const char *value);
/* Adds the roles of every matching mapping (each role once). Returns how
 * many were added. */
size_t mg_auth_map_roles(struct mg_auth_identity *id, const mg_auth_role_mapping *maps, size_t n);

/* ---- command line (auth/keys_cli.c) -------------------------------------- */

/* `modelgate keys create|list|revoke ...`; argv[0] is "keys"; -c FILE in
 * argv is skipped (main loads cfg). Exit code 0 ok, 1 user error, 2
 * database unreachable or failed. */
int mg_cli_keys(int argc, char **argv, const mg_config *cfg);

/* ---- return_to and cookies (auth/sso_util.c) ------------------------------ */

/* Whether a post-login/-logout target is a same-origin relative path: it
 * starts with one '/', the next byte is not '/' or '\', and it has no
 * control bytes, backslashes or percent-encoded control bytes / slashes /
 * backslashes that a browser would turn into another origin. */
bool mg_auth_return_to_ok(const char *s, size_t n);

/* Finds cookie `name` in a Cookie header value. Returns true and sets *out
 * (pointing into header) for the first match; false if absent. Tolerates
 * spaces around ';' and ignores malformed pairs. */
bool mg_auth_cookie_get(mg_str header, const char *name, mg_str *out);


/* ---- admin API (auth/keys_admin.c) ---------------------------------------- */
struct mg_policy_admin_reply;
/* GET/POST /admin/v1/keys, DELETE /admin/v1/keys/{id}; blocking (database):
 * run on a pool thread. out is zero-initialised by the caller. */
mg_rc mg_auth_keys_admin(const char *conninfo, const char *method, const char *path, const char *body,
                         size_t body_len, bool can_read, bool can_write, const char *actor,
                         struct mg_policy_admin_reply *out);

#endif
