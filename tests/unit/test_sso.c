/* modelgate — unit tests for the browser SSO checks liboauth2 1.4.5.4 does
 * not make (auth/sso.c): id_token iss/aud/azp/nonce/exp/nbf/iat, the
 * state-bound nonce, query parsing and decoding (%2B).
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"

#include "auth/sso.h"

#include <cjson/cJSON.h>

#define NOW 1700000000

static cJSON *claims(const char *json)
{
    cJSON *c = cJSON_Parse(json);
    T_CHECK(c != NULL);
    return c;
}

static const char *check(const char *json, const char *nonce)
{
    cJSON *c = claims(json);
    const char *why = mg_auth_sso_check_id_token(c, "https://idp.example", "modelgate", nonce, NOW);
    cJSON_Delete(c);
    return why;
}

#define OKC "\"iss\":\"https://idp.example\",\"sub\":\"alice\",\"nonce\":\"n1\""

T_TEST(id_token_ok)
{
    T_CHECK(check("{" OKC ",\"aud\":\"modelgate\",\"exp\":1700000100,\"iat\":1700000000}", "n1") == NULL);
    T_CHECK(check("{" OKC ",\"aud\":[\"modelgate\"],\"exp\":1700000100}", "n1") == NULL);
    T_CHECK(check("{" OKC ",\"aud\":[\"modelgate\",\"x\"],\"azp\":\"modelgate\",\"exp\":1700000100}", "n1") == NULL);
    /* skew: expired 59 s ago still passes, nbf 60 s ahead passes */
    T_CHECK(check("{" OKC ",\"aud\":\"modelgate\",\"exp\":1699999941,\"nbf\":1700000060}", "n1") == NULL);
}

T_TEST(id_token_refused)
{
    T_CHECK(check("{\"iss\":\"https://idp.example/\",\"sub\":\"a\",\"nonce\":\"n1\",\"aud\":\"modelgate\",\"exp\":1700000100}", "n1") != NULL);
    T_CHECK(check("{" OKC ",\"aud\":\"other\",\"exp\":1700000100}", "n1") != NULL);
    T_CHECK(check("{" OKC ",\"aud\":[\"modelgate\",\"x\"],\"exp\":1700000100}", "n1") != NULL);
    T_CHECK(check("{" OKC ",\"aud\":[\"modelgate\",\"x\"],\"azp\":\"x\",\"exp\":1700000100}", "n1") != NULL);
    T_CHECK(check("{" OKC ",\"aud\":\"modelgate\",\"exp\":1700000100}", "n2") != NULL);     /* nonce */
    T_CHECK(check("{" OKC ",\"aud\":\"modelgate\",\"exp\":1700000100}", NULL) != NULL);
    T_CHECK(check("{\"iss\":\"https://idp.example\",\"sub\":\"a\",\"aud\":\"modelgate\",\"exp\":1700000100}", "n1") != NULL);
    T_CHECK(check("{" OKC ",\"aud\":\"modelgate\"}", "n1") != NULL);                        /* no exp */
    T_CHECK(check("{" OKC ",\"aud\":\"modelgate\",\"exp\":1699999940}", "n1") != NULL);     /* expired */
    T_CHECK(check("{" OKC ",\"aud\":\"modelgate\",\"exp\":1700000100,\"nbf\":1700000061}", "n1") != NULL);
    T_CHECK(check("{" OKC ",\"aud\":\"modelgate\",\"exp\":1700000100,\"iat\":1700000061}", "n1") != NULL);
    T_CHECK(check("{\"iss\":\"https://idp.example\",\"nonce\":\"n1\",\"aud\":\"modelgate\",\"exp\":1700000100}", "n1") != NULL);
    T_CHECK(mg_auth_sso_check_id_token(NULL, "https://idp.example", "modelgate", "n1", NOW) != NULL);
}

T_TEST(nonce_bound_to_state)
{
    uint8_t k1[32] = {1}, k2[32] = {2};
    char a[44], b[44], c[44];
    mg_auth_sso_nonce(k1, "state-a", 7, a);
    mg_auth_sso_nonce(k1, "state-b", 7, b);
    mg_auth_sso_nonce(k2, "state-a", 7, c);
    T_EQ_INT((int)strlen(a), 43);
    T_CHECK(strcmp(a, b) != 0);
    T_CHECK(strcmp(a, c) != 0);
    mg_auth_sso_nonce(k1, "state-a", 7, b);
    T_EQ_STR(a, b);
}

T_TEST(query_and_decode)
{
    mg_str q = MG_STR_LIT("state=abc&code=x%2By&codex=1"), v;
    T_CHECK(mg_auth_sso_query_param(q, "code", &v));
    T_EQ_INT((int)v.n, 5);
    char out[16];
    T_CHECK(mg_auth_sso_url_decode(v.p, v.n, out, sizeof(out)));
    T_EQ_STR(out, "x+y");
    T_CHECK(!mg_auth_sso_query_param(q, "cod", &v));
    T_CHECK(!mg_auth_sso_url_decode("%0a", 3, out, sizeof(out)));   /* control byte */
    T_CHECK(!mg_auth_sso_url_decode("%2", 2, out, sizeof(out)));     /* truncated */
    T_CHECK(!mg_auth_sso_url_decode("%zz", 3, out, sizeof(out)));
    T_CHECK(!mg_auth_sso_url_decode("abcdef", 6, out, 4));            /* too long */
}

T_MAIN("sso", T_CASE(id_token_ok), T_CASE(id_token_refused), T_CASE(nonce_bound_to_state), T_CASE(query_and_decode))
