/* modelgate — unit tests for the strict HTTP/1.1 parser, chunked decoder and
 * path normaliser (gateway/http.c).
 *
 * Inputs are copied into exactly-sized heap buffers so a sanitizer build
 * catches any read past the bytes the parser was given.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "http.h"
#include "t.h"

#include <stdlib.h>

static const mg_http_limits LIM = {8192, 16384, 100, 1048576};
static mg_http_request R;   /* 8 KiB of headers: keep it off the stack */

/* Parses s[0..n) from an exact-size copy; returns the parser's result. */
static int parse_n(const char *s, size_t n, const mg_http_limits *lim)
{
    char *copy = malloc(n ? n : 1);
    memcpy(copy, s, n);
    int r = mg_http_parse_request(copy, n, lim, &R);
    /* Slices point into the copy; re-point them at s so checks after free work. */
#define REBASE(x) do { if ((x).p) (x).p = s + ((x).p - copy); } while (0)
    REBASE(R.method_str); REBASE(R.target); REBASE(R.path); REBASE(R.query); REBASE(R.host);
    for (size_t i = 0; i < R.nheaders; i++) {
        REBASE(R.headers[i].name);
        REBASE(R.headers[i].value);
    }
    for (size_t i = 0; i < R.nconn_tokens; i++)
        REBASE(R.conn_tokens[i]);
#undef REBASE
    free(copy);
    return r;
}

static int parse(const char *s) { return parse_n(s, strlen(s), &LIM); }

/* 0 for a valid complete head, the status for an error, -1 for incomplete. */
static int status_n(const char *s, size_t n, const mg_http_limits *lim)
{
    int r = parse_n(s, n, lim);
    if (r > 0)
        return 0;
    return r == MG_HTTP_ERROR ? R.error_status : -1;
}

static bool str_is(mg_str s, const char *c) { return s.n == strlen(c) && memcmp(s.p, c, s.n) == 0; }

/* ------------------------------------------------------------ valid heads */

T_TEST(test_simple_get)
{
    const char *s = "GET /v1/models?limit=2&x=y HTTP/1.1\r\nHost: gw.example:8443\r\n"
                    "Accept: */*\r\n\r\n";
    T_EQ_INT(parse(s), strlen(s));
    T_EQ_INT(R.method, MG_HTTP_GET);
    T_CHECK(str_is(R.method_str, "GET"));
    T_CHECK(str_is(R.target, "/v1/models?limit=2&x=y"));
    T_CHECK(str_is(R.path, "/v1/models"));
    T_CHECK(str_is(R.query, "limit=2&x=y"));
    T_EQ_INT(R.minor, 1);
    T_CHECK(str_is(R.host, "gw.example:8443"));
    T_EQ_INT(R.nheaders, 2);
    T_CHECK(str_is(R.headers[1].name, "Accept"));
    T_CHECK(str_is(R.headers[1].value, "*/*"));
    T_EQ_INT(R.content_length, -1);
    T_CHECK(!R.chunked);
    T_CHECK(R.keep_alive);
    T_CHECK(!R.expect_continue);
    T_CHECK(!R.upgrade);
    T_EQ_INT(R.error_status, 0);
}

T_TEST(test_post_with_body_and_methods)
{
    const char *s = "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    T_EQ_INT(parse(s), strlen(s) - 5);
    T_EQ_INT(R.method, MG_HTTP_POST);
    T_EQ_INT(R.content_length, 5);
    T_CHECK(str_is(R.query, ""));

    static const struct { const char *m; mg_http_method e; } ms[] = {
        {"GET", MG_HTTP_GET}, {"HEAD", MG_HTTP_HEAD}, {"POST", MG_HTTP_POST},
        {"PUT", MG_HTTP_PUT}, {"DELETE", MG_HTTP_DELETE}, {"OPTIONS", MG_HTTP_OPTIONS},
        {"PATCH", MG_HTTP_PATCH}, {"get", MG_HTTP_OTHER}, {"PROPFIND", MG_HTTP_OTHER},
        {"X-Y!", MG_HTTP_OTHER},
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(ms); i++) {
        char b[128];
        int n = snprintf(b, sizeof(b), "%s / HTTP/1.1\r\nHost: a\r\n\r\n", ms[i].m);
        T_EQ_INT(parse(b), n);
        T_EQ_INT(R.method, ms[i].e);
        T_CHECK(str_is(R.method_str, ms[i].m));
    }
}

T_TEST(test_content_length_values)
{
    T_CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n") > 0);
    T_EQ_INT(R.content_length, 0);
    T_CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:007\r\n\r\n") > 0);
    T_EQ_INT(R.content_length, 7);
    T_CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t12 \t\r\n\r\n") > 0);
    T_EQ_INT(R.content_length, 12);
    T_CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n") > 0);
    T_EQ_INT(R.content_length, 1048576);
    T_CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 0000000000000000001\r\n\r\n") > 0);
    T_EQ_INT(R.content_length, 1);
}

T_TEST(test_pipelined_and_leading_crlf)
{
    const char *a = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *b = "GET /b HTTP/1.1\r\nHost: y\r\n\r\n";
    char both[256];
    snprintf(both, sizeof(both), "%s%s", a, b);
    int r = parse_n(both, strlen(both), &LIM);
    T_EQ_INT(r, strlen(a));
    T_CHECK(str_is(R.path, "/a"));
    r = parse_n(both + r, strlen(both) - (size_t)r, &LIM);
    T_EQ_INT(r, strlen(b));
    T_CHECK(str_is(R.path, "/b"));
    T_CHECK(str_is(R.host, "y"));

    /* Leading empty lines are skipped but part of the consumed length. */
    const char *c = "\r\n\r\nGET /c HTTP/1.1\r\nHost: z\r\n\r\nGET";
    T_EQ_INT(parse(c), strlen(c) - 3);
    T_CHECK(str_is(R.path, "/c"));
    T_EQ_INT(parse("\r\n"), MG_HTTP_INCOMPLETE);
    T_EQ_INT(parse("\r"), MG_HTTP_INCOMPLETE);
    T_EQ_INT(parse(""), MG_HTTP_INCOMPLETE);
}

T_TEST(test_header_trimming_and_lookup)
{
    const char *s = "GET / HTTP/1.1\r\nHost:a\r\nX-Pad: \t  v a\tl \t \r\nX-Empty:\r\n"
                    "X-Spaces:    \r\nX-Obs: caf\xc3\xa9\r\nx-request-id: r1\r\n\r\n";
    T_EQ_INT(parse(s), strlen(s));
    T_EQ_INT(R.nheaders, 6);
    T_CHECK(str_is(R.host, "a"));
    const mg_http_header *h = mg_http_header_get(&R, "x-pad");
    T_CHECK(h != NULL && str_is(h->value, "v a\tl"));
    h = mg_http_header_get(&R, "X-EMPTY");
    T_CHECK(h != NULL && h->value.n == 0);
    h = mg_http_header_get(&R, "x-spaces");
    T_CHECK(h != NULL && h->value.n == 0);
    h = mg_http_header_get(&R, "X-Obs");
    T_CHECK(h != NULL && str_is(h->value, "caf\xc3\xa9"));
    h = mg_http_header_get(&R, "X-Request-Id");
    T_CHECK(h != NULL && str_is(h->name, "x-request-id") && str_is(h->value, "r1"));
    T_CHECK(mg_http_header_get(&R, "x-request") == NULL);
    T_CHECK(mg_http_header_get(&R, "missing") == NULL);
}

T_TEST(test_duplicate_header_first_wins)
{
    T_CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-A: 2\r\n\r\n") > 0);
    const mg_http_header *h = mg_http_header_get(&R, "x-a");
    T_CHECK(h != NULL && str_is(h->value, "1"));
}

T_TEST(test_keep_alive_rules)
{
    T_CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
    T_CHECK(R.keep_alive);
    T_CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") > 0);
    T_CHECK(!R.keep_alive);
    T_CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n") > 0);
    T_CHECK(!R.keep_alive);
    T_CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n") > 0);
    T_CHECK(!R.keep_alive);
    T_CHECK(parse("GET / HTTP/1.0\r\n\r\n") > 0);
    T_EQ_INT(R.minor, 0);
    T_CHECK(!R.keep_alive);
    T_CHECK(R.host.p == NULL);
    T_CHECK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") > 0);
    T_CHECK(R.keep_alive);
    T_CHECK(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n") > 0);
    T_CHECK(!R.keep_alive);
}

T_TEST(test_connection_tokens)
{
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo , ,Upgrade\r\n"
                    "Connection:\r\nConnection: te\r\nUpgrade: h2c\r\n\r\n";
    T_EQ_INT(parse(s), strlen(s));
    T_EQ_INT(R.nconn_tokens, 3);
    T_CHECK(str_is(R.conn_tokens[0], "X-Foo"));
    T_CHECK(str_is(R.conn_tokens[1], "Upgrade"));
    T_CHECK(str_is(R.conn_tokens[2], "te"));
    T_CHECK(R.keep_alive);
    T_CHECK(R.upgrade);

    char b[512];
    int n = snprintf(b, sizeof(b), "GET / HTTP/1.1\r\nHost: a\r\nConnection: ");
    for (int i = 0; i < MG_HTTP_MAX_CONN_TOKENS; i++)
        n += snprintf(b + n, sizeof(b) - (size_t)n, "t%d,", i);
    snprintf(b + n, sizeof(b) - (size_t)n, "\r\n\r\n");
    T_CHECK(parse(b) > 0);
    T_EQ_INT(R.nconn_tokens, MG_HTTP_MAX_CONN_TOKENS);
    snprintf(b + n, sizeof(b) - (size_t)n, "one-more\r\n\r\n");
    T_EQ_INT(parse(b), MG_HTTP_ERROR);
    T_EQ_INT(R.error_status, 400);
    T_EQ_INT(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n"), MG_HTTP_ERROR);
    T_EQ_INT(R.error_status, 400);
    T_EQ_INT(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: a;b\r\n\r\n"), MG_HTTP_ERROR);
}

T_TEST(test_expect_and_upgrade)
{
    T_CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n") > 0);
    T_CHECK(R.expect_continue);
    T_CHECK(parse("POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n") > 0);
    T_CHECK(!R.expect_continue);
    T_EQ_INT(parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"), MG_HTTP_ERROR);
    T_EQ_INT(R.error_status, 417);
    T_EQ_INT(parse("POST / HTTP/1.1\r\nHost: a\r\nExpect:\r\n\r\n"), MG_HTTP_ERROR);
    T_EQ_INT(R.error_status, 417);
    T_CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nupgrade: websocket\r\n\r\n") > 0);
    T_CHECK(R.upgrade);
}

T_TEST(test_chunked_flag)
{
    T_CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n") > 0);
    T_CHECK(R.chunked);
    T_EQ_INT(R.content_length, -1);
    T_CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  ChUnKeD \r\n\r\n") > 0);
    T_CHECK(R.chunked);
}

/* ---------------------------------------------------------- hostile heads */

typedef struct bad_case {
    const char *in;
    size_t n;     /* 0: strlen */
    int status;
} bad_case;

#define H "GET / HTTP/1.1\r\nHost: a\r\n"
#define P "POST / HTTP/1.1\r\nHost: a\r\n"
#define BIN(s, st) {s, sizeof(s) - 1, st}

static const bad_case bad_cases[] = {
    /* framing: Content-Length */
    {P "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n", 0, 400},
    {P "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 0, 400},
    {P "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 0, 400},
    {P "Content-Length: 5, 6\r\n\r\n", 0, 400},
    {P "Content-Length: 5,5\r\n\r\n", 0, 400},
    {P "Content-Length: +5\r\n\r\n", 0, 400},
    {P "Content-Length: 0x10\r\n\r\n", 0, 400},
    {P "Content-Length: -1\r\n\r\n", 0, 400},
    {P "Content-Length:\r\n\r\n", 0, 400},
    {P "Content-Length:   \r\n\r\n", 0, 400},
    {P "Content-Length: 5 6\r\n\r\n", 0, 400},
    {P "Content-Length: 1e3\r\n\r\n", 0, 400},
    {P "Content-Length: 5.0\r\n\r\n", 0, 400},
    {P "Content-Length: 9223372036854775808\r\n\r\n", 0, 400},
    {P "Content-Length: 99999999999999999999\r\n\r\n", 0, 400},
    {P "Content-Length: 00000000000000000001\r\n\r\n", 0, 400},
    {P "Content-Length: 9223372036854775807\r\n\r\n", 0, 413},
    {P "Content-Length: 1048577\r\n\r\n", 0, 413},
    /* framing: Transfer-Encoding */
    {P "Transfer-Encoding: chunked, chunked\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: ,chunked\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: chunked,\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: gzip,,chunked\r\n\r\n", 0, 400},
    {P "Transfer-Encoding:\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: xchunked\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: chunkedx\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: chunked;q=1\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: \"chunked\"\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: chunked, gzip\r\n\r\n", 0, 400},
    {P "Transfer-Encoding:\tchunked\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: chunked\t\r\n\r\n", 0, 400},
    {P "Transfer-Encoding : chunked\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
    {P "Transfer-Encoding: gzip\r\n\r\n", 0, 501},
    {P "Transfer-Encoding: gzip, chunked\r\n\r\n", 0, 501},
    {P "Transfer-Encoding: deflate , chunked\r\n\r\n", 0, 501},
    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
    /* field syntax */
    {H "X-A: 1\r\n folded\r\n\r\n", 0, 400},
    {H "X-A: 1\r\n\tfolded\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 0, 400},
    {H "X-A: a\rb\r\n\r\n", 0, 400},
    {H "X-A: a\r\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\nHost: a\n\n", 0, 400},
    {H "X-A: 1\n\r\n", 0, 400},
    {H "\n", 0, 400},
    BIN(H "X-A: a\0b\r\n\r\n", 400),
    {H "X-A: a\x01" "b\r\n\r\n", 0, 400},
    {H "X-A: a\x1f\r\n\r\n", 0, 400},
    {H "X-A: a\x7f\r\n\r\n", 0, 400},
    {H "X(A): b\r\n\r\n", 0, 400},
    {H "X@A: b\r\n\r\n", 0, 400},
    {H "X\x80: b\r\n\r\n", 0, 400},
    {H "X/A: b\r\n\r\n", 0, 400},
    {H "X_A: b\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, 400},
    {H "X-A\t: b\r\n\r\n", 0, 400},
    {H ": b\r\n\r\n", 0, 400},
    {H "X-A b\r\n\r\n", 0, 400},
    {H "NoColon\r\n\r\n", 0, 400},
    /* request line */
    {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 0, 400},
    {" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET / \r\nHost: a\r\n\r\n", 0, 400},
    {"GET /\r\n\r\n", 0, 400},
    {"GET\r\n\r\n", 0, 400},
    {"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET https://evil.example/x HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET a HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 0, 405},
    {"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 405},
    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, 505},
    {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0, 505},
    {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 0, 505},
    {"GET / HTTP/1.x\r\nHost: a\r\n\r\n", 0, 400},
    {"GET / http/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 0, 400},
    {"GET / HTTP/11\r\nHost: a\r\n\r\n", 0, 400},
    {"GET / FOO\r\nHost: a\r\n\r\n", 0, 400},
    {"GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    BIN("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    {"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET /a{b} HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\rHost: a\r\n\r\n", 0, 400},
    {"\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    /* Host */
    {"GET / HTTP/1.1\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 0, 400},
    {H "Host: a\r\n\r\n", 0, 400},
    {H "host: b\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nHost: a\x80\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nHost:\r\n\r\n", 0, 400},
    {"GET / HTTP/1.0\r\nHost: a,b\r\n\r\n", 0, 400},
    /* Expect */
    {P "Expect: 100-continue, foo\r\n\r\n", 0, 417},
};

T_TEST(test_hostile_heads)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(bad_cases); i++) {
        const bad_case *c = &bad_cases[i];
        size_t n = c->n ? c->n : strlen(c->in);
        int r = parse_n(c->in, n, &LIM);
        int st = r == MG_HTTP_ERROR ? R.error_status : r;
        if (st != c->status) {
            fprintf(stderr, "  case %zu: got %d (%s), want %d: %.*s\n", i, st,
                    R.error_reason ? R.error_reason : "-", c->status, (int)n, c->in);
        }
        T_EQ_INT(st, c->status);
        if (r == MG_HTTP_ERROR)
            T_CHECK(R.error_reason != NULL && R.error_reason[0] != '\0');
    }
}

/* -------------------------------------------------------------- limits */

T_TEST(test_request_line_limit)
{
    static const mg_http_limits lim = {64, 1024, 10, 100};
    char b[256];
    /* "GET /" + pad + " HTTP/1.1\r\n": 5 + pad + 11 bytes. */
    size_t pad = 64 - 16;
    int n = snprintf(b, sizeof(b), "GET /%.*s HTTP/1.1\r\nHost: a\r\n\r\n", (int)pad,
                     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    T_EQ_INT(status_n(b, (size_t)n, &lim), 0);
    n = snprintf(b, sizeof(b), "GET /%.*s HTTP/1.1\r\nHost: a\r\n\r\n", (int)pad + 1,
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    T_EQ_INT(status_n(b, (size_t)n, &lim), 414);

    /* Streaming an endless request line: 414 as soon as no completion can fit. */
    memset(b, 'a', sizeof(b));
    memcpy(b, "GET /", 5);
    for (size_t k = 1; k <= 100; k++) {
        int st = status_n(b, k, &lim);
        /* k bytes + CRLF still to come: refuse once k + 2 > 64. */
        T_EQ_INT(st, k + 2 > 64 ? 414 : -1);
    }
    /* A CR at the end: only the LF is still missing. */
    memcpy(b + 62, "\r", 1);
    T_EQ_INT(status_n(b, 63, &lim), -1);
}

T_TEST(test_header_bytes_limit)
{
    static const mg_http_limits lim = {64, 128, 50, 100};
    char b[512];
    const char *pre = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
    size_t pl = strlen(pre);
    /* A head of exactly 128 bytes is fine, 129 is not. */
    memcpy(b, pre, pl);
    memset(b + pl, 'v', 128 - pl - 4);
    memcpy(b + 124, "\r\n\r\n", 4);
    T_EQ_INT(status_n(b, 128, &lim), 0);
    memcpy(b, pre, pl);
    memset(b + pl, 'v', 129 - pl - 4);
    memcpy(b + 125, "\r\n\r\n", 4);
    T_EQ_INT(status_n(b, 129, &lim), 431);

    /* An endless header value: 431 while incomplete, never waiting for CRLFCRLF. */
    memcpy(b, pre, pl);
    memset(b + pl, 'v', sizeof(b) - pl);
    for (size_t k = pl; k <= 300; k++)
        T_EQ_INT(status_n(b, k, &lim), k >= 128 ? 431 : -1);

    /* Endless leading empty lines count too. */
    for (size_t k = 0; k < sizeof(b); k += 2)
        memcpy(b + k, "\r\n", 2);
    T_EQ_INT(status_n(b, 126, &lim), -1);
    T_EQ_INT(status_n(b, 300, &lim), 431);
}

T_TEST(test_header_count_limit)
{
    static const mg_http_limits lim = {64, 4096, 5, 100};
    const char *ok = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    T_EQ_INT(status_n(ok, strlen(ok), &lim), 0);
    T_EQ_INT(R.nheaders, 5);
    const char *bad = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
    T_EQ_INT(status_n(bad, strlen(bad), &lim), 431);
    /* Detected as soon as a sixth field starts, before the head is complete. */
    size_t sixth = strlen(ok) - 2;
    T_EQ_INT(status_n(bad, sixth, &lim), -1);
    T_EQ_INT(status_n(bad, sixth + 1, &lim), 431);

    /* Configured above the hard array size: the array size wins. */
    static const mg_http_limits big = {64, 1 << 20, 100000, 100};
    static char many[64 * 1024];
    size_t n = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < MG_HTTP_MAX_HEADERS_HARD; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "X%d: v\r\n", i);
    n += (size_t)snprintf(many + n, sizeof(many) - n, "\r\n");
    T_EQ_INT(status_n(many, n, &big), 431);
}

T_TEST(test_early_errors_while_incomplete)
{
    /* Bare LF line ends are refused without waiting for a terminator that never comes. */
    const char *s = "GET / HTTP/1.1\nHost: a\n";
    T_EQ_INT(status_n(s, strlen(s), &LIM), 400);
    s = "GET / HTTP/1.1\r\nHost: a\nX";
    T_EQ_INT(status_n(s, strlen(s), &LIM), 400);
    s = "GET / HTTP/1.1\r\nX_Y: a\r\n";
    T_EQ_INT(status_n(s, strlen(s), &LIM), 400);
    s = "GET / HTTP/1.1\r\nX: a\rb";
    T_EQ_INT(status_n(s, strlen(s), &LIM), 400);
    s = "GET / HTTP/1.1\r\nX: a\r";
    T_EQ_INT(status_n(s, strlen(s), &LIM), -1);
}

T_TEST(test_incremental_prefixes)
{
    static const char *const heads[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\nPOST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n"
        "Content-Type: application/json\r\nX-Empty:\r\nConnection: keep-alive\r\n\r\n",
        "POST /v1/embeddings HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
        "Expect: 100-continue\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
    };
    for (size_t h = 0; h < MG_ARRAY_LEN(heads); h++) {
        size_t n = strlen(heads[h]);
        for (size_t k = 0; k < n; k++) {
            int r = parse_n(heads[h], k, &LIM);
            if (r != MG_HTTP_INCOMPLETE)
                fprintf(stderr, "  head %zu prefix %zu: %d (%s)\n", h, k, r,
                        R.error_reason ? R.error_reason : "-");
            T_EQ_INT(r, MG_HTTP_INCOMPLETE);
        }
        T_EQ_INT(parse_n(heads[h], n, &LIM), n);
    }
}

/* ---------------------------------------------------------------- chunked */

typedef struct chunk_result {
    mg_rc rc;
    size_t consumed;
    int status;
    mg_buf out;
} chunk_result;

/* Feeds s[0..n) in pieces of `step` bytes (0: all at once), each piece an
 * exact-size copy, passing unconsumed bytes on like a server would. */
static chunk_result chunked_run(const char *s, size_t n, size_t step, size_t max_body)
{
    chunk_result res = {MG_AGAIN, 0, 0, {0}};
    mg_http_chunked d;
    mg_http_chunked_init(&d);
    size_t have = 0;
    while (res.rc == MG_AGAIN) {
        size_t avail = step == 0 ? n : (have + step < n ? have + step : n);
        size_t len = avail - res.consumed;
        char *copy = malloc(len ? len : 1);
        memcpy(copy, s + res.consumed, len);
        size_t used = 99999;
        res.rc = mg_http_chunked_feed(&d, copy, len, &used, &res.out, max_body);
        free(copy);
        if (used > len) {
            res.rc = MG_ERR;   /* impossible: flag it */
            res.status = -1;
            break;
        }
        res.consumed += used;
        if (res.rc == MG_AGAIN && used != len)
            res.status = -2;   /* MG_AGAIN must consume everything */
        if (res.rc == MG_AGAIN && avail == n)
            break;
        have = avail;
    }
    if (res.rc == MG_ERR && res.status == 0)
        res.status = d.error_status;
    return res;
}

T_TEST(test_chunked_decode)
{
    const char body[] = "5\r\nhello\r\n6;name=val;x=\"q s\"\r\n world\r\nA\r\n0123456789\r\n"
                        "000\r\nX-Trailer: t\r\nY: \r\n\r\nGET / HTTP/1.1\r\n";
    size_t n = sizeof(body) - 1;
    size_t body_len = n - strlen("GET / HTTP/1.1\r\n");
    chunk_result all = chunked_run(body, n, 0, 1000);
    T_EQ_INT(all.rc, MG_OK);
    T_EQ_INT(all.consumed, body_len);
    T_EQ_INT(all.out.len, 21);
    T_CHECK(all.out.len == 21 && memcmp(all.out.p, "hello world0123456789", 21) == 0);
    for (size_t step = 1; step <= 9; step++) {
        chunk_result r = chunked_run(body, n, step, 1000);
        T_EQ_INT(r.rc, MG_OK);
        T_EQ_INT(r.status, 0);
        T_EQ_INT(r.consumed, body_len);
        T_CHECK(r.out.len == all.out.len && memcmp(r.out.p, all.out.p, r.out.len) == 0);
        mg_buf_free(&r.out);
    }
    /* Every prefix of the body needs more; the whole body is complete. */
    for (size_t k = 0; k < body_len; k++) {
        chunk_result r = chunked_run(body, k, 0, 1000);
        T_EQ_INT(r.rc, MG_AGAIN);
        T_EQ_INT(r.consumed, k);
        mg_buf_free(&r.out);
    }
    mg_buf_free(&all.out);

    chunk_result r = chunked_run("0\r\n\r\n", 5, 0, 0);
    T_EQ_INT(r.rc, MG_OK);
    T_EQ_INT(r.out.len, 0);
    mg_buf_free(&r.out);
    /* Body of exactly max_body is fine. */
    r = chunked_run("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 20, 1, 5);
    T_EQ_INT(r.rc, MG_OK);
    T_EQ_INT(r.out.len, 5);
    mg_buf_free(&r.out);
    r = chunked_run("fF\r\n", 4, 0, 1000);
    T_EQ_INT(r.rc, MG_AGAIN);
    mg_buf_free(&r.out);
}

T_TEST(test_chunked_done_and_sticky_error)
{
    mg_http_chunked d;
    mg_http_chunked_init(&d);
    size_t used = 7;
    T_EQ_INT(mg_http_chunked_feed(&d, "0\r\n\r\nXY", 7, &used, NULL, 10), MG_OK);
    T_EQ_INT(used, 5);
    T_EQ_INT(mg_http_chunked_feed(&d, "XY", 2, &used, NULL, 10), MG_OK);
    T_EQ_INT(used, 0);

    mg_http_chunked_init(&d);
    T_EQ_INT(mg_http_chunked_feed(&d, "2\r\nabX", 6, &used, NULL, 10), MG_ERR);
    T_EQ_INT(d.error_status, 400);
    T_CHECK(d.error_reason != NULL);
    T_EQ_INT(mg_http_chunked_feed(&d, "\r\n0\r\n\r\n", 7, &used, NULL, 10), MG_ERR);
    T_EQ_INT(used, 0);

    /* out == NULL discards data but still counts it. */
    mg_http_chunked_init(&d);
    T_EQ_INT(mg_http_chunked_feed(&d, "4\r\nabcd\r\n", 9, &used, NULL, 10), MG_AGAIN);
    T_EQ_INT(d.total, 4);
}

static char big_ext[5000], big_trailer[9000], long_size[64];

T_TEST(test_chunked_errors)
{
    /* Size line of 4096 bytes is accepted; one more byte of extension is not. */
    size_t n = (size_t)snprintf(big_ext, sizeof(big_ext), "1;");
    memset(big_ext + n, 'e', 4096 - n - 2);
    memcpy(big_ext + 4094, "\r\nZ\r\n0\r\n\r\n", 10);
    chunk_result r = chunked_run(big_ext, 4104, 0, 100);
    T_EQ_INT(r.rc, MG_OK);
    mg_buf_free(&r.out);
    memset(big_ext + n, 'e', 4097 - n - 2);
    memcpy(big_ext + 4095, "\r\nZ\r\n0\r\n\r\n", 10);
    r = chunked_run(big_ext, 4105, 0, 100);
    T_EQ_INT(r.status, 400);
    mg_buf_free(&r.out);

    /* Trailer section bounded at 8192 bytes. */
    n = (size_t)snprintf(big_trailer, sizeof(big_trailer), "0\r\nX: ");
    memset(big_trailer + n, 'v', 8190 - n);
    memcpy(big_trailer + 8190, "\r\n\r\n", 4);
    /* 8194 - 3 ("0\r\n") = 8191 trailer bytes: fine. */
    r = chunked_run(big_trailer, 8194, 7, 100);
    T_EQ_INT(r.rc, MG_OK);
    mg_buf_free(&r.out);
    memset(big_trailer + n, 'v', sizeof(big_trailer) - n);
    r = chunked_run(big_trailer, sizeof(big_trailer), 0, 100);
    T_EQ_INT(r.status, 400);
    mg_buf_free(&r.out);

    /* 16 hex digits is the most a size may have, even with leading zeros. */
    memset(long_size, '0', 16);
    memcpy(long_size + 16, "\r\n\r\n", 4);
    r = chunked_run(long_size, 20, 0, 100);
    T_EQ_INT(r.rc, MG_OK);
    memset(long_size, '0', 17);
    memcpy(long_size + 17, "\r\n\r\n", 4);
    r = chunked_run(long_size, 21, 0, 100);
    T_EQ_INT(r.status, 400);

    static const struct { const char *in; int status; } cases[] = {
        {"\r\n", 400},
        {"x\r\n", 400},
        {"0x5\r\nhello\r\n0\r\n\r\n", 400},
        {"+5\r\nhello\r\n0\r\n\r\n", 400},
        {"-5\r\nhello\r\n0\r\n\r\n", 400},
        {" 5\r\nhello\r\n0\r\n\r\n", 400},
        {"5 \r\nhello\r\n0\r\n\r\n", 400},
        {"5\t\r\nhello\r\n0\r\n\r\n", 400},
        {"5 ;a=b\r\nhello\r\n0\r\n\r\n", 400},
        {"5\nhello\r\n0\r\n\r\n", 400},
        {"5\rhello\r\n0\r\n\r\n", 400},
        {"5g\r\nhello\r\n0\r\n\r\n", 400},
        {";a\r\nhello\r\n0\r\n\r\n", 400},
        {"5;a\x01\r\nhello\r\n0\r\n\r\n", 400},
        {"5;a\nhello\r\n0\r\n\r\n", 400},
        {"5\r\nhelloX\r\n0\r\n\r\n", 400},
        {"5\r\nhello\n0\r\n\r\n", 400},
        {"5\r\nhello\r0\r\n\r\n", 400},
        {"5\r\nhell\r\n0\r\n\r\n", 400},
        {"5\r\nhello\r\n0\r\nX\r\n\r\n", 400},
        {"5\r\nhello\r\n0\r\n X: a\r\n\r\n", 400},
        {"5\r\nhello\r\n0\r\nX : a\r\n\r\n", 400},
        {"5\r\nhello\r\n0\r\nX: a\x01\r\n\r\n", 400},
        {"5\r\nhello\r\n0\r\nX: a\n\r\n", 400},
        {"5\r\nhello\r\n0\r\n\rX", 400},
        {"5\r\nhello\r\n0\r\n\n", 400},
        {"FFFFFFFFFFFFFFFF\r\n", 413},
        {"65\r\n", 413},
        {"64\r\n", -3},   /* exactly max_body (100): needs more, no error */
        {"32\r\n", -3},
        {"32\r\n0123456789012345678901234567890123456789012345678901\r\n", 400},
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        for (size_t step = 0; step <= 1; step++) {
            r = chunked_run(cases[i].in, strlen(cases[i].in), step, 100);
            int st = r.rc == MG_AGAIN ? -3 : r.rc == MG_OK ? 0 : r.status;
            if (st != cases[i].status)
                fprintf(stderr, "  chunked case %zu step %zu: got %d want %d\n", i, step, st,
                        cases[i].status);
            T_EQ_INT(st, cases[i].status);
            mg_buf_free(&r.out);
        }
    }

    /* Total over several chunks beyond max_body, refused at the size line. */
    r = chunked_run("32\r\n01234567890123456789012345678901234567890123456789\r\n"
                    "33\r\n", 60, 1, 100);
    T_EQ_INT(r.status, 413);
    T_EQ_INT(r.out.len, 50);
    mg_buf_free(&r.out);
}

/* ------------------------------------------------------------------ paths */

T_TEST(test_normalize_accept)
{
    static const struct { const char *in, *out; } ok[] = {
        {"/", "/"},
        {"/v1/chat/completions", "/v1/chat/completions"},
        {"/v1/models/", "/v1/models/"},
        {"/v1/models/gpt-4o-mini", "/v1/models/gpt-4o-mini"},
        {"/a%41%42", "/aAB"},
        {"/%7euser", "/~user"},
        {"/a%2Db%5F%2e", "/a-b_."},
        {"/a%3a", "/a%3A"},
        {"/a%3Ab", "/a%3Ab"},
        {"/%e2%82%ac", "/%E2%82%AC"},
        {"/a.b/c..d/.e/f.", "/a.b/c..d/.e/f."},
        {"/.../x", "/.../x"},
        {"/a;b=c/d", "/a;b=c/d"},
        {"/a@b:c!$&'()*+,=", "/a@b:c!$&'()*+,="},
        {"/a%20b", "/a%20b"},
        {"/%25", "/%25"},
    };
    char out[128];
    for (size_t i = 0; i < MG_ARRAY_LEN(ok); i++) {
        mg_rc rc = mg_http_normalize_path(mg_str_c(ok[i].in), out, sizeof(out));
        if (rc != MG_OK)
            fprintf(stderr, "  path %s refused\n", ok[i].in);
        T_EQ_INT(rc, MG_OK);
        T_EQ_STR(out, ok[i].out);
        /* path.n + 1 is always enough room. */
        size_t n = strlen(ok[i].in);
        char *exact = malloc(n + 1);
        T_EQ_INT(mg_http_normalize_path(mg_str_c(ok[i].in), exact, n + 1), MG_OK);
        T_EQ_STR(exact, ok[i].out);
        free(exact);
    }
    /* Not NUL-terminated input: only path.n bytes are read. */
    T_EQ_INT(mg_http_normalize_path(mg_str_make("/abc/..", 4), out, sizeof(out)), MG_OK);
    T_EQ_STR(out, "/abc");
}

T_TEST(test_normalize_reject)
{
    static const char *const bad[] = {
        "", "a", "a/b", "*", "//", "//evil", "/a//b", "/a/b//",
        "/.", "/./a", "/..", "/../a", "/a/..", "/a/../b", "/a/.", "/a/./b",
        "/%2e", "/%2E%2E", "/%2e%2e/a", "/.%2e/a", "/%2e./a", "/a/%2e%2E",
        "/..;/admin", "/a/.;x/b", "/a/..;",
        "/a%2fb", "/a%2Fb", "/%2f", "/a%5cb", "/a%5Cb", "/a%00b", "/a%0ab", "/a%0D%0A",
        "/a%09", "/a%7f", "/a%1F",
        "/a\\b", "/\\evil", "/a\x01", "/a\t", "/a b", "/a\x7f", "/a\x80", "/caf\xc3\xa9",
        "/a%", "/a%4", "/a%zz", "/a%g0", "/a%%41",
        "/a#b", "/a?b", "/a[b]", "/a\"b", "/a<b>", "/a{b}", "/a|b", "/a^b", "/a`b",
    };
    char out[128];
    for (size_t i = 0; i < MG_ARRAY_LEN(bad); i++) {
        mg_rc rc = mg_http_normalize_path(mg_str_c(bad[i]), out, sizeof(out));
        if (rc != MG_ERR)
            fprintf(stderr, "  path %s accepted as %s\n", bad[i], out);
        T_EQ_INT(rc, MG_ERR);
    }
    T_EQ_INT(mg_http_normalize_path(mg_str_make("/a\0b", 4), out, sizeof(out)), MG_ERR);
    /* Too small an output buffer is an error, never a truncation. */
    T_EQ_INT(mg_http_normalize_path(mg_str_c("/abc"), out, 4), MG_ERR);
    T_EQ_INT(mg_http_normalize_path(mg_str_c("/a%3A"), out, 5), MG_ERR);
    T_EQ_INT(mg_http_normalize_path(mg_str_c("/"), out, 0), MG_ERR);
}

T_TEST(test_status_text)
{
    static const struct { int code; const char *text; } st[] = {
        {100, "Continue"}, {200, "OK"}, {201, "Created"}, {204, "No Content"},
        {301, "Moved Permanently"}, {302, "Found"}, {303, "See Other"},
        {304, "Not Modified"}, {307, "Temporary Redirect"}, {400, "Bad Request"},
        {401, "Unauthorized"}, {403, "Forbidden"}, {404, "Not Found"},
        {405, "Method Not Allowed"}, {408, "Request Timeout"}, {409, "Conflict"},
        {412, "Precondition Failed"}, {413, "Content Too Large"}, {414, "URI Too Long"},
        {415, "Unsupported Media Type"}, {417, "Expectation Failed"},
        {422, "Unprocessable Content"}, {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"}, {499, "Client Closed Request"},
        {500, "Internal Server Error"}, {501, "Not Implemented"}, {502, "Bad Gateway"},
        {503, "Service Unavailable"}, {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(st); i++)
        T_EQ_STR(mg_http_status_text(st[i].code), st[i].text);
    T_EQ_STR(mg_http_status_text(418), "Client Error");
    T_EQ_STR(mg_http_status_text(599), "Server Error");
    T_EQ_STR(mg_http_status_text(42), "Unknown");
    T_EQ_STR(mg_http_status_text(-1), "Unknown");
}

T_MAIN("http",
       T_CASE(test_simple_get), T_CASE(test_post_with_body_and_methods),
       T_CASE(test_content_length_values), T_CASE(test_pipelined_and_leading_crlf),
       T_CASE(test_header_trimming_and_lookup), T_CASE(test_duplicate_header_first_wins),
       T_CASE(test_keep_alive_rules), T_CASE(test_connection_tokens),
       T_CASE(test_expect_and_upgrade), T_CASE(test_chunked_flag), T_CASE(test_hostile_heads),
       T_CASE(test_request_line_limit), T_CASE(test_header_bytes_limit),
       T_CASE(test_header_count_limit), T_CASE(test_early_errors_while_incomplete),
       T_CASE(test_incremental_prefixes), T_CASE(test_chunked_decode),
       T_CASE(test_chunked_done_and_sticky_error), T_CASE(test_chunked_errors),
       T_CASE(test_normalize_accept), T_CASE(test_normalize_reject), T_CASE(test_status_text))
