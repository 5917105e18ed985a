/* Unit tests: auth/auth.c (where credentials are taken from).
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth/auth.h"
#include "t.h"

static bool cred(const char *head, char *out, size_t outsz)
{
    static mg_http_request req;
    mg_http_limits lim = {8192, 16384, 100, 1 << 20};
    int r = mg_http_parse_request(head, strlen(head), &lim, &req);
    if (r <= 0)
        return false;
    mg_str s;
    if (!mg_auth_credential(&req, &s))
        return false;
    snprintf(out, outsz, "%.*s", (int)s.n, s.p);
    return true;
}

T_TEST(bearer_and_x_api_key)
{
    char v[128];
    T_CHECK(cred("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer sk-123\r\n\r\n", v, sizeof(v)));
    T_EQ_STR(v, "sk-123");
    T_CHECK(cred("GET / HTTP/1.1\r\nHost: a\r\nauthorization: bearer   sk-456\r\n\r\n", v, sizeof(v)));
    T_EQ_STR(v, "sk-456");
    T_CHECK(cred("GET / HTTP/1.1\r\nHost: a\r\nx-api-key: ak-789\r\n\r\n", v, sizeof(v)));
    T_EQ_STR(v, "ak-789");
}

T_TEST(no_or_foreign_credentials)
{
    char v[128];
    T_CHECK(!cred("GET / HTTP/1.1\r\nHost: a\r\n\r\n", v, sizeof(v)));
    T_CHECK(!cred("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n", v, sizeof(v)));
    T_CHECK(!cred("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer\r\n\r\n", v, sizeof(v)));
    T_CHECK(!cred("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer    \r\n\r\n", v, sizeof(v)));
    /* An Authorization header of another scheme is not silently replaced by x-api-key. */
    T_CHECK(!cred("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic x\r\nx-api-key: k\r\n\r\n", v, sizeof(v)));
}

T_MAIN("auth", T_CASE(bearer_and_x_api_key), T_CASE(no_or_foreign_credentials))
