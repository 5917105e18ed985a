/* modelgate — JWT pre-parser, OpenSSL signature check and claim rules.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <stdlib.h>

/* ------------------------------------------------------------ base64url */

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

long mg_auth_b64url_decode(const char *in, size_t n, unsigned char *out)
{
    while (n > 0 && in[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

size_t mg_auth_b64url_encode(const unsigned char *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = tbl[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = tbl[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return o;
}

/* ------------------------------------------------------------ parsing */

static const char *const alg_names[] = {
    [MG_JWT_RS256] = "RS256", [MG_JWT_RS384] = "RS384", [MG_JWT_RS512] = "RS512",
    [MG_JWT_PS256] = "PS256", [MG_JWT_PS384] = "PS384", [MG_JWT_PS512] = "PS512",
    [MG_JWT_ES256] = "ES256", [MG_JWT_ES384] = "ES384", [MG_JWT_EDDSA] = "EdDSA",
};

const char *mg_auth_jwt_alg_name(mg_auth_jwt_alg a) { return alg_names[a]; }

int mg_auth_jwt_alg_from_name(const char *name)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(alg_names); i++)
        if (strcmp(alg_names[i], name) == 0)
            return (int)i;
    return -1;
}

bool mg_auth_jwt_looks_like(const char *s, size_t n)
{
    if (n < 5 || n > MG_JWT_MAX_LEN)
        return false;
    int dots = 0;
    size_t part = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (part == 0)
                return false;
            dots++;
            part = 0;
        } else if (b64_val((unsigned char)s[i]) < 0) {
            return false;
        } else {
            part++;
        }
    }
    return dots == 2 && part > 0;
}

/* Decodes one base64url part into a JSON object. */
static cJSON *decode_json(const char *p, size_t n)
{
    unsigned char *buf = malloc(n * 3 / 4 + 3);
    if (buf == NULL)
        return NULL;
    long len = mg_auth_b64url_decode(p, n, buf);
    cJSON *j = NULL;
    if (len > 0) {
        const char *end = NULL;
        j = cJSON_ParseWithLengthOpts((const char *)buf, (size_t)len, &end, false);
        if (j && (!cJSON_IsObject(j) || end != (const char *)buf + len)) {
            cJSON_Delete(j);
            j = NULL;
        }
    }
    free(buf);
    return j;
}

static void copy_lower(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++)
        dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] + 32) : src[i];
    dst[i] = '\0';
}

void mg_auth_jwt_free(mg_auth_jwt *jwt)
{
    cJSON_Delete(jwt->header);
    cJSON_Delete(jwt->claims);
    free(jwt->sig);
    memset(jwt, 0, sizeof(*jwt));
}

mg_rc mg_auth_jwt_parse(const char *tok, size_t n, mg_auth_jwt *jwt, const char **why)
{
    memset(jwt, 0, sizeof(*jwt));
    if (!mg_auth_jwt_looks_like(tok, n)) {
        *why = "not a compact JWT";
        return MG_ERR;
    }
    const char *d1 = memchr(tok, '.', n);
    const char *d2 = memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - tok));
    jwt->header = decode_json(tok, (size_t)(d1 - tok));
    if (jwt->header == NULL) {
        *why = "JWT header is not a JSON object";
        goto fail;
    }
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(jwt->header, "alg");
    if (!cJSON_IsString(alg)) {
        *why = "JWT header has no alg";
        goto fail;
    }
    int a = mg_auth_jwt_alg_from_name(alg->valuestring);
    if (a < 0) {
        *why = strcmp(alg->valuestring, "none") == 0 ? "alg none is not accepted"
               : alg->valuestring[0] == 'H' ? "HMAC-signed tokens are not accepted"
                                            : "JWT algorithm is not accepted";
        goto fail;
    }
    jwt->alg = (mg_auth_jwt_alg)a;
    /* `crit` names extensions the verifier must understand; we know none. */
    if (cJSON_GetObjectItemCaseSensitive(jwt->header, "crit")) {
        *why = "JWT header has unsupported crit extensions";
        goto fail;
    }
    const cJSON *kid = cJSON_GetObjectItemCaseSensitive(jwt->header, "kid");
    if (kid) {
        if (!cJSON_IsString(kid) || strlen(kid->valuestring) >= sizeof(jwt->kid)) {
            *why = "JWT kid is not acceptable";
            goto fail;
        }
        memcpy(jwt->kid, kid->valuestring, strlen(kid->valuestring) + 1);
    }
    const cJSON *typ = cJSON_GetObjectItemCaseSensitive(jwt->header, "typ");
    if (cJSON_IsString(typ))
        copy_lower(jwt->typ, sizeof(jwt->typ), typ->valuestring);
    jwt->claims = decode_json(d1 + 1, (size_t)(d2 - d1 - 1));
    if (jwt->claims == NULL) {
        *why = "JWT payload is not a JSON object";
        goto fail;
    }
    size_t slen = n - (size_t)(d2 + 1 - tok);
    jwt->sig = malloc(slen * 3 / 4 + 3);
    if (jwt->sig == NULL) {
        *why = "out of memory";
        goto fail;
    }
    long sl = mg_auth_b64url_decode(d2 + 1, slen, jwt->sig);
    if (sl <= 0) {
        *why = "JWT signature is not base64url";
        goto fail;
    }
    jwt->siglen = (size_t)sl;
    jwt->signed_len = (size_t)(d2 - tok);
    return MG_OK;
fail:
    mg_auth_jwt_free(jwt);
    return MG_ERR;
}

/* ------------------------------------------------------------ signatures */

static const EVP_MD *alg_md(mg_auth_jwt_alg a)
{
    switch (a) {
    case MG_JWT_RS256: case MG_JWT_PS256: case MG_JWT_ES256: return EVP_sha256();
    case MG_JWT_RS384: case MG_JWT_PS384: case MG_JWT_ES384: return EVP_sha384();
    case MG_JWT_RS512: case MG_JWT_PS512: return EVP_sha512();
    case MG_JWT_EDDSA: return NULL;
    }
    return NULL;
}

static bool key_fits(mg_auth_jwt_alg a, EVP_PKEY *key)
{
    switch (a) {
    case MG_JWT_RS256: case MG_JWT_RS384: case MG_JWT_RS512:
    case MG_JWT_PS256: case MG_JWT_PS384: case MG_JWT_PS512:
        return EVP_PKEY_is_a(key, "RSA") && EVP_PKEY_get_bits(key) >= 2048;
    case MG_JWT_ES256:
    case MG_JWT_ES384: {
        char group[64];
        size_t glen = 0;
        if (!EVP_PKEY_is_a(key, "EC") ||
            !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &glen))
            return false;
        return strcmp(group, a == MG_JWT_ES256 ? "prime256v1" : "secp384r1") == 0;
    }
    case MG_JWT_EDDSA:
        return EVP_PKEY_is_a(key, "ED25519");
    }
    return false;
}

/* JWS carries ECDSA signatures as raw r||s; OpenSSL wants DER. */
static unsigned char *ecdsa_raw_to_der(const unsigned char *sig, size_t n, size_t half, int *derlen)
{
    if (n != 2 * half)
        return NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)half, NULL), *s = BN_bin2bn(sig + half, (int)half, NULL);
    unsigned char *der = NULL;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL;
        *derlen = i2d_ECDSA_SIG(es, &der);
        if (*derlen <= 0)
            der = NULL;
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return der;
}

bool mg_auth_jwt_verify(const mg_auth_jwt *jwt, const char *tok, EVP_PKEY *key)
{
    if (key == NULL || !key_fits(jwt->alg, key))
        return false;
    const unsigned char *sig = jwt->sig;
    size_t siglen = jwt->siglen;
    unsigned char *der = NULL;
    if (jwt->alg == MG_JWT_ES256 || jwt->alg == MG_JWT_ES384) {
        int dl = 0;
        der = ecdsa_raw_to_der(jwt->sig, jwt->siglen, jwt->alg == MG_JWT_ES256 ? 32 : 48, &dl);
        if (der == NULL)
            return false;
        sig = der;
        siglen = (size_t)dl;
    }
    bool ok = false;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (ctx && EVP_DigestVerifyInit(ctx, &pctx, alg_md(jwt->alg), NULL, key) == 1) {
        bool pss = jwt->alg == MG_JWT_PS256 || jwt->alg == MG_JWT_PS384 || jwt->alg == MG_JWT_PS512;
        if (!pss || (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1))
            ok = EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)tok, jwt->signed_len) == 1;
    }
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return ok;
}

/* Decodes a base64url JWK member into a fresh buffer. */
static unsigned char *jwk_bytes(const cJSON *jwk, const char *name, size_t *n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(jwk, name);
    if (!cJSON_IsString(v))
        return NULL;
    size_t len = strlen(v->valuestring);
    if (len == 0 || len > 2048)
        return NULL;
    unsigned char *buf = malloc(len * 3 / 4 + 3);
    long dl = buf ? mg_auth_b64url_decode(v->valuestring, len, buf) : -1;
    if (dl <= 0) {
        free(buf);
        return NULL;
    }
    *n = (size_t)dl;
    return buf;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *key = NULL;
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return key;
}

static EVP_PKEY *jwk_rsa(const cJSON *jwk)
{
    size_t nl = 0, el = 0;
    unsigned char *n = jwk_bytes(jwk, "n", &nl), *e = jwk_bytes(jwk, "e", &el);
    BIGNUM *bn_n = n ? BN_bin2bn(n, (int)nl, NULL) : NULL;
    BIGNUM *bn_e = e ? BN_bin2bn(e, (int)el, NULL) : NULL;
    EVP_PKEY *key = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bn_n && bn_e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1)
        key = pkey_fromdata("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);
    return key;
}

static EVP_PKEY *jwk_ec(const cJSON *jwk)
{
    const cJSON *crv = cJSON_GetObjectItemCaseSensitive(jwk, "crv");
    if (!cJSON_IsString(crv))
        return NULL;
    const char *group;
    size_t coord;
    if (strcmp(crv->valuestring, "P-256") == 0) {
        group = "prime256v1";
        coord = 32;
    } else if (strcmp(crv->valuestring, "P-384") == 0) {
        group = "secp384r1";
        coord = 48;
    } else {
        return NULL;
    }
    size_t xl = 0, yl = 0;
    unsigned char *x = jwk_bytes(jwk, "x", &xl), *y = jwk_bytes(jwk, "y", &yl);
    EVP_PKEY *key = NULL;
    if (x && y && xl == coord && yl == coord) {
        unsigned char pt[1 + 2 * 48];
        pt[0] = 0x04;  /* uncompressed point */
        memcpy(pt + 1, x, coord);
        memcpy(pt + 1 + coord, y, coord);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) == 1 &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * coord) == 1)
            key = pkey_fromdata("EC", bld);
        OSSL_PARAM_BLD_free(bld);
    }
    free(x);
    free(y);
    return key;
}

static EVP_PKEY *jwk_okp(const cJSON *jwk)
{
    const cJSON *crv = cJSON_GetObjectItemCaseSensitive(jwk, "crv");
    if (!cJSON_IsString(crv) || strcmp(crv->valuestring, "Ed25519") != 0)
        return NULL;
    size_t xl = 0;
    unsigned char *x = jwk_bytes(jwk, "x", &xl);
    EVP_PKEY *key = (x && xl == 32) ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, xl) : NULL;
    free(x);
    return key;
}

EVP_PKEY *mg_auth_jwk_to_pkey(const cJSON *jwk)
{
    if (!cJSON_IsObject(jwk))
        return NULL;
    const cJSON *use = cJSON_GetObjectItemCaseSensitive(jwk, "use");
    if (cJSON_IsString(use) && strcmp(use->valuestring, "sig") != 0)
        return NULL;
    const cJSON *kty = cJSON_GetObjectItemCaseSensitive(jwk, "kty");
    if (!cJSON_IsString(kty))
        return NULL;
    if (strcmp(kty->valuestring, "RSA") == 0)
        return jwk_rsa(jwk);
    if (strcmp(kty->valuestring, "EC") == 0)
        return jwk_ec(jwk);
    if (strcmp(kty->valuestring, "OKP") == 0)
        return jwk_okp(jwk);
    return NULL;
}

/* ------------------------------------------------------------ claims */

/* A NumericDate claim: absent (false, *present=false), a finite number
 * (true), or anything else (false with *present=true: malformed). */
static bool num_claim(const cJSON *claims, const char *name, int64_t *out, bool *present)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
    *present = v != NULL;
    if (!cJSON_IsNumber(v) || !(v->valuedouble > -1e15 && v->valuedouble < 1e15))
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

static bool aud_ok(const cJSON *aud, const mg_auth_jwt_rules *r, size_t *count)
{
    bool match = false;
    *count = 0;
    if (cJSON_IsString(aud)) {
        *count = 1;
        for (size_t i = 0; i < r->naudiences; i++)
            match |= strcmp(aud->valuestring, r->audiences[i]) == 0;
        return match;
    }
    if (!cJSON_IsArray(aud))
        return false;
    const cJSON *a;
    cJSON_ArrayForEach(a, aud) {
        if (!cJSON_IsString(a))
            return false;
        (*count)++;
        for (size_t i = 0; i < r->naudiences; i++)
            match |= strcmp(a->valuestring, r->audiences[i]) == 0;
    }
    return match;
}

static bool is_id_token(const mg_auth_jwt *jwt)
{
    if (strcmp(jwt->typ, "at+jwt") == 0 || strcmp(jwt->typ, "application/at+jwt") == 0)
        return false;
    const cJSON *use = cJSON_GetObjectItemCaseSensitive(jwt->claims, "token_use");
    if (use)
        return !cJSON_IsString(use) || strcmp(use->valuestring, "access") != 0;
    return cJSON_GetObjectItemCaseSensitive(jwt->claims, "nonce") ||
           cJSON_GetObjectItemCaseSensitive(jwt->claims, "at_hash") ||
           cJSON_GetObjectItemCaseSensitive(jwt->claims, "c_hash");
}

bool mg_auth_jwt_check(const mg_auth_jwt *jwt, const mg_auth_jwt_rules *r, int64_t now,
                       const char **why)
{
    const cJSON *c = jwt->claims;
    const cJSON *iss = cJSON_GetObjectItemCaseSensitive(c, "iss");
    if (!cJSON_IsString(iss) || r->issuer == NULL || strcmp(iss->valuestring, r->issuer) != 0) {
        *why = "token issuer is not accepted";
        return false;
    }
    size_t naud;
    if (!aud_ok(cJSON_GetObjectItemCaseSensitive(c, "aud"), r, &naud)) {
        *why = "token audience is not accepted";
        return false;
    }
    if (naud > 1) {
        const cJSON *azp = cJSON_GetObjectItemCaseSensitive(c, "azp");
        if (!cJSON_IsString(azp) || r->client_id == NULL || strcmp(azp->valuestring, r->client_id) != 0) {
            *why = "token has several audiences and azp is not this gateway";
            return false;
        }
    }
    int64_t exp, nbf, iat;
    bool present;
    if (!num_claim(c, "exp", &exp, &present)) {
        *why = "token has no valid exp";
        return false;
    }
    if (now >= exp + MG_JWT_SKEW_S) {
        *why = "token has expired";
        return false;
    }
    if (!num_claim(c, "nbf", &nbf, &present) && present) {
        *why = "token nbf is malformed";
        return false;
    }
    if (present && nbf > now + MG_JWT_SKEW_S) {
        *why = "token is not valid yet";
        return false;
    }
    if (!num_claim(c, "iat", &iat, &present) && present) {
        *why = "token iat is malformed";
        return false;
    }
    if (present && iat > now + MG_JWT_SKEW_S) {
        *why = "token was issued in the future";
        return false;
    }
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(c, "sub");
    if (!cJSON_IsString(sub) || sub->valuestring[0] == '\0') {
        *why = "token has no subject";
        return false;
    }
    if (r->access_token && is_id_token(jwt)) {
        *why = "an id_token is not an access token";
        return false;
    }
    return true;
}
