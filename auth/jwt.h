/* modelgate — JSON Web Tokens: pre-parser, signature check, claim rules.
 *
 * Bearer JWTs are verified here with OpenSSL rather than with liboauth2's
 * oauth2_token_verify: 1.4.5.4 refetches the JWKS for every bad token, never
 * checks `aud`, treats `exp` as optional and caches results past `exp`
 * (docs/identity.md). Everything in this header is pure: no I/O, no globals,
 * the clock is a parameter, so the unit tests and the fuzz target drive it
 * directly.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_AUTH_JWT_H
#define MG_AUTH_JWT_H

#include "gateway/core.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>

/* The only algorithms a bearer token may use. `none` and every HMAC
 * algorithm are refused before any key is looked at: with HS256 an attacker
 * could sign with the (public) RSA key as the HMAC secret. */
typedef enum mg_auth_jwt_alg {
    MG_JWT_RS256, MG_JWT_RS384, MG_JWT_RS512,
    MG_JWT_PS256, MG_JWT_PS384, MG_JWT_PS512,
    MG_JWT_ES256, MG_JWT_ES384,
    MG_JWT_EDDSA,
} mg_auth_jwt_alg;

#define MG_JWT_MAX_LEN 16384      /* longer Authorization values are not JWTs we accept */
#define MG_JWT_SKEW_S 60          /* allowed clock skew for exp/nbf/iat */

typedef struct mg_auth_jwt {
    mg_auth_jwt_alg alg;
    char kid[128];                /* "" when the header has none */
    char typ[32];                 /* header typ, lower-cased; "" when absent */
    cJSON *header;                /* owned */
    cJSON *claims;                /* owned: the payload object */
    unsigned char *sig;           /* owned: decoded signature */
    size_t siglen;
    size_t signed_len;            /* bytes of "header.payload" at the token start */
} mg_auth_jwt;

/* Whether s (n bytes) has the shape of a compact JWS: three non-empty
 * base64url parts. Cheap; used to pick the JWT path for a credential. */
bool mg_auth_jwt_looks_like(const char *s, size_t n);

/* Parses a compact JWS. On success fills jwt (free with mg_auth_jwt_free)
 * and returns MG_OK; on failure returns MG_ERR with *why set to a static,
 * secret-free reason ("alg none is not accepted", ...) and nothing to free. */
mg_rc mg_auth_jwt_parse(const char *tok, size_t n, mg_auth_jwt *jwt, const char **why);
void mg_auth_jwt_free(mg_auth_jwt *jwt);

const char *mg_auth_jwt_alg_name(mg_auth_jwt_alg a);
/* -1 for names not on the allowlist (including "none", "HS256"). */
int mg_auth_jwt_alg_from_name(const char *name);

/* Verifies the signature of tok (the same bytes given to parse) with key.
 * The key type must fit the algorithm (RSA for RS / PS, P-256 for ES256,
 * P-384 for ES384, Ed25519 for EdDSA); any mismatch is a failure. */
bool mg_auth_jwt_verify(const mg_auth_jwt *jwt, const char *tok, EVP_PKEY *key);

/* Builds a public key from one JWK (kty RSA / EC / OKP). NULL when the JWK
 * is not a usable signing key (private parts are ignored; `use: enc` keys
 * are refused). Caller frees with EVP_PKEY_free. */
EVP_PKEY *mg_auth_jwk_to_pkey(const cJSON *jwk);

/* What a bearer token must satisfy beyond its signature. */
typedef struct mg_auth_jwt_rules {
    const char *issuer;            /* exact match of `iss` */
    const char *const *audiences;  /* `aud` must contain one of these */
    size_t naudiences;
    const char *client_id;         /* with several `aud`, `azp` must equal this (may be NULL) */
    bool access_token;             /* refuse id_tokens (see mg_auth_jwt_check) */
} mg_auth_jwt_rules;

/* Checks the claims against rules at wall-clock time now (seconds):
 * iss exact; aud (string or array) contains a configured audience; with
 * more than one aud, azp present and equal to client_id; exp required,
 * now < exp + skew; nbf and iat, when present, <= now + skew.
 * With access_token set, an id_token is refused where the IdP marks the
 * difference: header typ "at+jwt" is an access token (RFC 9068); else a
 * `token_use` claim must say "access" (Cognito); else a token carrying
 * `nonce`, `at_hash` or `c_hash` (claims only id_tokens have) is refused.
 * Returns true, or false with *why set (static string). */
bool mg_auth_jwt_check(const mg_auth_jwt *jwt, const mg_auth_jwt_rules *rules, int64_t now,
                       const char **why);

/* base64url without padding (padding tolerated on input). decode returns
 * the decoded length, or -1 on a bad character / impossible length; out
 * must hold n * 3 / 4 + 3 bytes. encode writes NUL-terminated output (out
 * must hold n * 4 / 3 + 4 bytes) and returns its length. */
long mg_auth_b64url_decode(const char *in, size_t n, unsigned char *out);
size_t mg_auth_b64url_encode(const unsigned char *in, size_t n, char *out);

#endif
