/* Unit tests: auth/jwt.c (pre-parser, claim rules, signatures), auth/keys.c
 * (key format and hash), auth/sso_util.c (return_to, cookies), auth/cache.c.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth/auth_int.h"
#include "auth/jwt.h"
#include "t.h"

#include <openssl/core_names.h>
#include <openssl/rsa.h>
#include <stdio.h>

static const int64_t NOW = 1700000000;

/* Builds an unsigned-looking compact JWT from JSON header and payload. */
static char *mk(const char *hdr, const char *payload, const char *sig)
{
    static char out[8192];
    char h[2048], p[4096];
    mg_auth_b64url_encode((const unsigned char *)hdr, strlen(hdr), h);
    mg_auth_b64url_encode((const unsigned char *)payload, strlen(payload), p);
    snprintf(out, sizeof(out), "%s.%s.%s", h, p, sig);
    return out;
}

static const char *parse_why(const char *hdr, const char *payload)
{
    mg_auth_jwt jwt;
    const char *why = NULL;
    char *t = mk(hdr, payload, "c2ln");
    if (mg_auth_jwt_parse(t, strlen(t), &jwt, &why) == MG_OK) {
        mg_auth_jwt_free(&jwt);
        return NULL;
    }
    return why;
}

T_TEST(jwt_preparse_alg_allowlist)
{
    T_CHECK(parse_why("{\"alg\":\"RS256\",\"kid\":\"k\"}", "{}") == NULL);
    T_CHECK(parse_why("{\"alg\":\"EdDSA\"}", "{}") == NULL);
    T_CHECK(parse_why("{\"alg\":\"ES384\"}", "{}") == NULL);
    T_EQ_STR(parse_why("{\"alg\":\"none\"}", "{}"), "alg none is not accepted");
    T_EQ_STR(parse_why("{\"alg\":\"HS256\"}", "{}"), "HMAC-signed tokens are not accepted");
    T_EQ_STR(parse_why("{\"alg\":\"HS512\"}", "{}"), "HMAC-signed tokens are not accepted");
    T_EQ_STR(parse_why("{\"alg\":\"rs256\"}", "{}"), "JWT algorithm is not accepted");
    T_EQ_STR(parse_why("{\"alg\":\"RS256\",\"crit\":[\"b64\"]}", "{}"), "JWT header has unsupported crit extensions");
    T_EQ_STR(parse_why("{\"kid\":\"k\"}", "{}"), "JWT header has no alg");
    T_EQ_STR(parse_why("[1]", "{}"), "JWT header is not a JSON object");
    T_EQ_STR(parse_why("{\"alg\":\"RS256\"}", "[]"), "JWT payload is not a JSON object");
    T_EQ_STR(parse_why("{\"alg\":\"RS256\"} x", "{}"), "JWT header is not a JSON object");
    T_EQ_STR(parse_why("{\"alg\":\"RS256\",\"kid\":7}", "{}"), "JWT kid is not acceptable");
}

T_TEST(jwt_shape)
{
    T_CHECK(mg_auth_jwt_looks_like("a.b.c", 5));
    T_CHECK(!mg_auth_jwt_looks_like("a.b.", 4));
    T_CHECK(!mg_auth_jwt_looks_like(".b.c", 4));
    T_CHECK(!mg_auth_jwt_looks_like("a.b.c.d", 7));
    T_CHECK(!mg_auth_jwt_looks_like("a.b+.c", 6));
    T_CHECK(!mg_auth_jwt_looks_like("mgk_0123", 8));
    unsigned char out[16];
    T_EQ_INT(mg_auth_b64url_decode("aGk", 3, out), 2);
    T_CHECK(memcmp(out, "hi", 2) == 0);
    T_EQ_INT(mg_auth_b64url_decode("aGk=", 4, out), 2);
    T_EQ_INT(mg_auth_b64url_decode("a", 1, out), -1);
    T_EQ_INT(mg_auth_b64url_decode("a/b+", 4, out), -1);
}

static const char *aud1[] = {"modelgate"};

static const char *check(const char *hdr, const char *payload)
{
    mg_auth_jwt jwt;
    const char *why = NULL;
    char *t = mk(hdr, payload, "c2ln");
    if (mg_auth_jwt_parse(t, strlen(t), &jwt, &why) != MG_OK)
        return why;
    mg_auth_jwt_rules r = {"https://idp.example/", aud1, 1, "modelgate", true};
    bool ok = mg_auth_jwt_check(&jwt, &r, NOW, &why);
    mg_auth_jwt_free(&jwt);
    return ok ? NULL : why;
}

#define AT "{\"alg\":\"RS256\",\"typ\":\"at+jwt\"}"
#define ISS "\"iss\":\"https://idp.example/\",\"sub\":\"u1\""

T_TEST(jwt_claim_rules_fixed_clock)
{
    T_CHECK(check(AT, "{" ISS ",\"aud\":\"modelgate\",\"exp\":1700000100}") == NULL);
    T_EQ_STR(check(AT, "{\"iss\":\"https://idp.example\",\"sub\":\"u\",\"aud\":\"modelgate\",\"exp\":1700000100}"),
             "token issuer is not accepted");
    T_EQ_STR(check(AT, "{" ISS ",\"aud\":\"other\",\"exp\":1700000100}"), "token audience is not accepted");
    T_EQ_STR(check(AT, "{" ISS ",\"exp\":1700000100}"), "token audience is not accepted");
    T_CHECK(check(AT, "{" ISS ",\"aud\":[\"modelgate\"],\"exp\":1700000100}") == NULL);
    T_EQ_STR(check(AT, "{" ISS ",\"aud\":[\"modelgate\",\"x\"],\"exp\":1700000100}"),
             "token has several audiences and azp is not this gateway");
    T_CHECK(check(AT, "{" ISS ",\"aud\":[\"modelgate\",\"x\"],\"azp\":\"modelgate\",\"exp\":1700000100}") == NULL);
    T_EQ_STR(check(AT, "{" ISS ",\"aud\":\"modelgate\"}"), "token has no valid exp");
    T_EQ_STR(check(AT, "{" ISS ",\"aud\":\"modelgate\",\"exp\":\"1700000100\"}"), "token has no valid exp");
    /* skew: 60 s after exp is the first refused second */
    T_CHECK(check(AT, "{" ISS ",\"aud\":\"modelgate\",\"exp\":1699999941}") == NULL);
    T_EQ_STR(check(AT, "{" ISS ",\"aud\":\"modelgate\",\"exp\":1699999940}"), "token has expired");
    T_CHECK(check(AT, "{" ISS ",\"aud\":\"modelgate\",\"exp\":1700000100,\"nbf\":1700000060}") == NULL);
    T_EQ_STR(check(AT, "{" ISS ",\"aud\":\"modelgate\",\"exp\":1700000100,\"nbf\":1700000061}"), "token is not valid yet");
    T_EQ_STR(check(AT, "{" ISS ",\"aud\":\"modelgate\",\"exp\":1700000100,\"iat\":1700000061}"),
             "token was issued in the future");
    T_EQ_STR(check(AT, "{" ISS ",\"aud\":\"modelgate\",\"exp\":1700000100,\"nbf\":null}"), "token nbf is malformed");
    T_EQ_STR(check(AT, "{\"iss\":\"https://idp.example/\",\"aud\":\"modelgate\",\"exp\":1700000100}"),
             "token has no subject");
}

T_TEST(jwt_id_token_is_not_an_access_token)
{
    const char *p = "{" ISS ",\"aud\":\"modelgate\",\"exp\":1700000100,\"nonce\":\"n\"}";
    /* typ at+jwt wins (RFC 9068) even with a nonce claim */
    T_CHECK(check(AT, p) == NULL);
    T_EQ_STR(check("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", p), "an id_token is not an access token");
    T_EQ_STR(check("{\"alg\":\"RS256\"}", "{" ISS ",\"aud\":\"modelgate\",\"exp\":1700000100,\"at_hash\":\"x\"}"),
             "an id_token is not an access token");
    T_EQ_STR(check("{\"alg\":\"RS256\"}", "{" ISS ",\"aud\":\"modelgate\",\"exp\":1700000100,\"token_use\":\"id\"}"),
             "an id_token is not an access token");
    T_CHECK(check("{\"alg\":\"RS256\"}", "{" ISS ",\"aud\":\"modelgate\",\"exp\":1700000100,\"token_use\":\"access\"}") == NULL);
    T_CHECK(check("{\"alg\":\"RS256\",\"typ\":\"application/AT+JWT\"}", p) == NULL);
}

/* Signs header.payload with key (RS256) and returns the token. */
static char *sign_rs256(EVP_PKEY *key, const char *hdr, const char *payload)
{
    char *t = mk(hdr, payload, "");
    size_t n = strlen(t) - 1;     /* without the trailing '.' */
    unsigned char sig[512];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key);
    EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)t, n);
    EVP_MD_CTX_free(ctx);
    mg_auth_b64url_encode(sig, siglen, t + n + 1);
    return t;
}

static char *b64_bn(EVP_PKEY *key, const char *name)
{
    BIGNUM *bn = NULL;
    EVP_PKEY_get_bn_param(key, name, &bn);
    unsigned char buf[512];
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    static char out[2][800];
    static int k;
    char *o = out[k++ & 1];
    mg_auth_b64url_encode(buf, (size_t)n, o);
    return o;
}

T_TEST(jwt_rs256_signature_via_jwk)
{
    EVP_PKEY *priv = EVP_RSA_gen(2048);
    T_CHECK(priv != NULL);
    char jwk[2048];
    const char *nn = b64_bn(priv, OSSL_PKEY_PARAM_RSA_N), *ee = b64_bn(priv, OSSL_PKEY_PARAM_RSA_E);
    snprintf(jwk, sizeof(jwk), "{\"kty\":\"RSA\",\"kid\":\"k1\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"}", nn, ee);
    cJSON *j = cJSON_Parse(jwk);
    EVP_PKEY *pub = mg_auth_jwk_to_pkey(j);
    T_CHECK(pub != NULL);
    char *tok = sign_rs256(priv, "{\"alg\":\"RS256\",\"kid\":\"k1\"}", "{\"sub\":\"a\"}");
    mg_auth_jwt jwt;
    const char *why;
    T_EQ_INT(mg_auth_jwt_parse(tok, strlen(tok), &jwt, &why), MG_OK);
    T_CHECK(mg_auth_jwt_verify(&jwt, tok, pub));
    /* the same bytes under another algorithm name must not verify */
    jwt.alg = MG_JWT_PS256;
    T_CHECK(!mg_auth_jwt_verify(&jwt, tok, pub));
    jwt.alg = MG_JWT_ES256;
    T_CHECK(!mg_auth_jwt_verify(&jwt, tok, pub));
    jwt.alg = MG_JWT_RS256;
    jwt.sig[10] ^= 1;
    T_CHECK(!mg_auth_jwt_verify(&jwt, tok, pub));
    mg_auth_jwt_free(&jwt);
    /* an encryption key is not a signing key */
    cJSON_ReplaceItemInObject(j, "use", cJSON_CreateString("enc"));
    T_CHECK(mg_auth_jwk_to_pkey(j) == NULL);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}");
    T_CHECK(mg_auth_jwk_to_pkey(j) == NULL);
    cJSON_Delete(j);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(priv);
}

T_TEST(api_key_format_and_hash)
{
    char key[MG_KEY_LEN + 1], id[MG_KEY_ID_LEN + 1], id2[MG_KEY_ID_LEN + 1];
    T_EQ_INT(mg_auth_key_generate(key, id), MG_OK);
    T_EQ_INT((long)strlen(key), MG_KEY_LEN);
    T_CHECK(memcmp(key, "mgk_", 4) == 0);
    T_CHECK(mg_auth_key_parse(key, strlen(key), id2));
    T_EQ_STR(id2, id);
    char other[MG_KEY_LEN + 1];
    T_EQ_INT(mg_auth_key_generate(other, id2), MG_OK);
    T_CHECK(strcmp(key, other) != 0);
    T_CHECK(!mg_auth_key_parse(key, strlen(key) - 1, id2));
    key[5] = 'G';
    T_CHECK(!mg_auth_key_parse(key, strlen(key), id2));
    T_CHECK(!mg_auth_key_parse("mgk_0123456789abcdef_+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", MG_KEY_LEN, id2));
    T_CHECK(mg_auth_key_parse("mgk_0123456789abcdef_-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", MG_KEY_LEN, id2));
    char hex[65];
    mg_auth_key_hash_hex("abc", 3, hex);
    T_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

T_TEST(return_to_same_origin_only)
{
#define RT(s) mg_auth_return_to_ok(s, strlen(s))
    T_CHECK(RT("/"));
    T_CHECK(RT("/v1/models?x=1"));
    T_CHECK(RT("/chat#frag"));
    T_CHECK(RT("/a%20b"));
    T_CHECK(!RT(""));
    T_CHECK(!RT("//evil.example"));
    T_CHECK(!RT("/\\evil.example"));
    T_CHECK(!RT("/%09/evil.example"));
    T_CHECK(!RT("/%2F/evil.example"));
    T_CHECK(!RT("/%5Cevil.example"));
    T_CHECK(!RT("/\t/evil.example"));
    T_CHECK(!RT("https:evil.example"));
    T_CHECK(!RT("https://evil.example/"));
    T_CHECK(!RT("javascript:alert(1)"));
    T_CHECK(!RT("evil.example"));
    T_CHECK(!RT("/a%"));
    T_CHECK(!RT("/a%zz"));
    T_CHECK(!RT("/a%252F"));
#undef RT
}

T_TEST(cookie_parsing)
{
    mg_str v;
    mg_str h = MG_STR_LIT("a=1; __Host-mg_session=abc ;b=\"q\"; bad; c = 3");
    T_CHECK(mg_auth_cookie_get(h, "__Host-mg_session", &v));
    T_CHECK(mg_str_eq(v, MG_STR_LIT("abc")));
    T_CHECK(mg_auth_cookie_get(h, "b", &v));
    T_CHECK(mg_str_eq(v, MG_STR_LIT("q")));
    T_CHECK(mg_auth_cookie_get(h, "c", &v));
    T_CHECK(mg_str_eq(v, MG_STR_LIT("3")));
    T_CHECK(!mg_auth_cookie_get(h, "bad", &v));
    T_CHECK(!mg_auth_cookie_get(h, "mg_session", &v));
    T_CHECK(!mg_auth_cookie_get(MG_STR_LIT(""), "a", &v));
    T_CHECK(mg_auth_cookie_get(MG_STR_LIT("a=;"), "a", &v));
    T_EQ_INT((long)v.n, 0);
}

T_TEST(claims_to_identity_and_role_mapping)
{
    mg_cfg_oidc oidc = {0};
    oidc.claim_cost_center = "department";
    cJSON *c = cJSON_Parse("{\"sub\":\"u1\",\"email\":\"a@x\",\"groups\":[\"ai-users\",7,\"admins\"],"
                           "\"department\":4711,\"exp\":1700000100}");
    mg_auth_identity *id = mg_auth_identity_from_claims(c, &oidc, "jwt");
    T_CHECK(id != NULL);
    T_EQ_STR(id->subject, "u1");
    T_EQ_STR(id->email, "a@x");
    T_EQ_STR(id->cost_center, "4711");
    T_EQ_INT((long)id->ngroups, 2);
    T_EQ_INT((long)id->nroles, 0);
    mg_auth_role_mapping maps[] = {{"groups", "ai-users", "engineer"}, {"groups", "nope", "x"},
                                   {"groups", "admins", "admin"}, {"email", "a@x", "engineer"}};
    T_EQ_INT((long)mg_auth_map_roles(id, maps, 4), 2);
    T_EQ_INT((long)id->nroles, 2);
    T_EQ_STR(id->roles[0], "engineer");
    T_EQ_STR(id->roles[1], "admin");
    mg_auth_identity_unref(id);
    cJSON_Delete(c);
    c = cJSON_Parse("{\"email\":\"a@x\"}");
    T_CHECK(mg_auth_identity_from_claims(c, &oidc, "jwt") == NULL);
    cJSON_Delete(c);
}

T_TEST(cache_expiry_and_replace)
{
    mg_auth_cache *c = mg_auth_cache_new(1000, &mg_auth_identity_cache_ops);
    uint8_t k[32];
    mg_auth_sha256("tok", 3, k);
    mg_auth_identity *id = mg_auth_identity_new("jwt");
    mg_auth_cache_put(c, k, id, NOW + 10);
    mg_auth_identity *got = mg_auth_cache_get(c, k, NOW + 9);
    T_CHECK(got == id);
    mg_auth_identity_unref(got);
    T_CHECK(mg_auth_cache_get(c, k, NOW + 10) == NULL);   /* expired at exp */
    T_EQ_INT((long)mg_auth_cache_size(c), 0);
    mg_auth_cache_put(c, k, id, NOW + 10);
    mg_auth_cache_put(c, k, id, NOW + 20);
    T_EQ_INT((long)mg_auth_cache_size(c), 1);
    mg_auth_identity_unref(id);
    mg_auth_cache_free(c);
}

T_MAIN("auth_identity", T_CASE(jwt_preparse_alg_allowlist), T_CASE(jwt_shape),
       T_CASE(jwt_claim_rules_fixed_clock), T_CASE(jwt_id_token_is_not_an_access_token),
       T_CASE(jwt_rs256_signature_via_jwk), T_CASE(api_key_format_and_hash),
       T_CASE(return_to_same_origin_only), T_CASE(cookie_parsing),
       T_CASE(claims_to_identity_and_role_mapping), T_CASE(cache_expiry_and_replace))
