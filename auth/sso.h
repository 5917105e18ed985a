/* modelgate — browser single sign-on (auth/sso.c).
 *
 * liboauth2 1.4.5.4 runs the OpenID Connect authorization-code flow (PKCE,
 * state cookie, code exchange, id_token signature); everything around it —
 * the request object, the nonce, the claim checks, the session, logout —
 * is modelgate's. See docs/identity.md "Browser SSO".
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_AUTH_SSO_H
#define MG_AUTH_SSO_H

#include "gateway/pipeline.h"

/* The session cookie modelgate issues after a login. */
#define MG_SSO_COOKIE "__Host-mg_session"
/* Prefix of liboauth2's per-login state cookies (one per login in flight). */
#define MG_SSO_STATE_PREFIX "__Host-mg_state_"

/* Main thread only (start-up and SIGHUP), before/while workers run: builds
 * the liboauth2 configuration for cfg from the discovery document that
 * auth/oidc.c fetched. Without an oidc section SSO is off. Problems (no
 * public_url, IdP unreachable) are appended to errs and SSO stays off until
 * the next successful setup (login answers 503 meanwhile); never fatal:
 * returns MG_OK unless out of memory. */
mg_rc mg_auth_sso_setup(const mg_config *cfg, mg_buf *errs);
/* Drops the configuration and the session cache (after the pools stopped). */
void mg_auth_sso_teardown(void);

/* Authenticate stage part. If the request carries the session cookie,
 * handles it and returns true with *rc: NEXT (principal set), PARKED (a
 * database lookup runs; the pipeline is resumed or answered later) or
 * RESPONDED (unknown/expired/revoked session: browsers are sent to sign in
 * again, API clients get 401; either way the cookie is cleared). False
 * when there is no session cookie. */
bool mg_auth_sso_session_stage(mg_req *req, mg_stage_rc *rc);

/* Whether an unauthenticated request should be redirected to sign in rather
 * than get 401: SSO is configured, GET or HEAD, and Accept names text/html. */
bool mg_auth_sso_wants_redirect(const mg_req *req);
/* Answers a browser without a session: 302 to /auth/login?return_to=<path>
 * (the request's own target when it is a safe relative path, else "/"). */
void mg_auth_sso_redirect_login(mg_req *req);

/* Route handlers (gateway/router.c, unauthenticated "local" routes). Each
 * answers the request, possibly later from an auth pool completion. */
void mg_auth_sso_login(mg_req *req);     /* GET /auth/login?return_to= */
void mg_auth_sso_callback(mg_req *req);  /* GET /auth/callback */
void mg_auth_sso_logout(mg_req *req);    /* GET|POST /auth/logout */

/* ---- pieces exposed for unit tests ---------------------------------------- */

/* The nonce modelgate binds to a login's state: base64url(HMAC-SHA256(key,
 * state)), 43 chars + NUL. liboauth2 does not keep its own nonce, so this
 * is what makes the id_token's nonce checkable. */
void mg_auth_sso_nonce(const uint8_t key[32], const char *state, size_t n, char out[44]);

/* The id_token checks liboauth2 1.4.5.4 does not make: iss exact, aud
 * contains client_id (several audiences need azp == client_id), nonce, exp
 * required, exp/nbf/iat with 60 s skew at now, sub present. NULL when ok,
 * else a static reason. */
const char *mg_auth_sso_check_id_token(const struct cJSON *claims, const char *issuer,
                                       const char *client_id, const char *nonce, int64_t now);

/* Percent-decodes s into out (NUL-terminated; '+' stays '+'). False on a bad
 * escape, a decoded control byte, or when out is too small. */
bool mg_auth_sso_url_decode(const char *s, size_t n, char *out, size_t outsz);

/* Finds query parameter name in a raw query string (no '?'); *out points
 * into q, still encoded. */
bool mg_auth_sso_query_param(mg_str q, const char *name, mg_str *out);

#endif
