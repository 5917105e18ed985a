/* modelgate — unit tests for the built-in HTTP/1.1 client's response parser
 * and URL eligibility (gateway/h1client.c).
 *
 * Every response is fed in two pieces split at each byte boundary, and one
 * byte at a time, from exactly-sized heap copies (a sanitizer build catches a
 * read past what the parser was given); unconsumed bytes are carried over
 * the way the connection layer does.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "h1client.h"
#include "t.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

typedef struct col {
    mg_buf hdr, body;
    int pause_every;      /* pause every n-th body call (0: never) */
    int calls;
    size_t refuse_over;   /* refuse body past this many bytes (0: never) */
    int pauses;
} col;

static size_t c_header(char *l, size_t size, size_t n, void *arg)
{
    col *c = arg;
    mg_buf_append(&c->hdr, l, size * n);
    return size * n;
}

static size_t c_body(char *p, size_t size, size_t n, void *arg)
{
    col *c = arg;
    c->calls++;
    if (c->pause_every && c->calls % c->pause_every == 0) {
        c->pauses++;
        return MG_H1_PAUSE;
    }
    if (c->refuse_over && c->body.len + n > c->refuse_over)
        return 0;
    mg_buf_append(&c->body, p, size * n);
    return size * n;
}

static void col_free(col *c)
{
    mg_buf_free(&c->hdr);
    mg_buf_free(&c->body);
}

static char *str0(const mg_buf *b)
{
    static char s[256 * 1024];
    size_t n = b->len < sizeof(s) - 1 ? b->len : sizeof(s) - 1;
    if (n)
        memcpy(s, b->p, n);
    s[n] = '\0';
    return s;
}

/* Feeds resp as pieces ending at the offsets in cuts (then the rest), with
 * eof after the last byte if `eof`. Returns the final result; *left is the
 * number of bytes not consumed at the end. */
static mg_h1_prc feed(const char *resp, size_t len, const size_t *cuts, size_t ncuts, bool eof,
                      col *c, mg_h1_parser *p, size_t *left)
{
    mg_buf pend = {0};
    size_t pos = 0, ci = 0;
    mg_h1_prc rc = MG_H1_AGAIN;
    mg_h1_sink sink = {c_header, c_body, c};
    mg_h1_parser_init(p, false);
    for (;;) {
        size_t to = ci < ncuts ? cuts[ci++] : len;
        if (to > len)
            to = len;
        if (to > pos)
            mg_buf_append(&pend, resp + pos, to - pos);
        pos = to;
        bool at_eof = eof && pos == len;
        for (;;) {
            char *copy = malloc(pend.len ? pend.len : 1);
            if (pend.len)
                memcpy(copy, pend.p, pend.len);
            size_t used = 0;
            rc = mg_h1_parse(p, copy, pend.len, at_eof, &used, &sink);
            free(copy);
            mg_buf_consume(&pend, used);
            if (rc != MG_H1_PAUSED)
                break;       /* paused: "resume" at once with the same bytes */
        }
        if (rc != MG_H1_AGAIN || pos == len)
            break;
    }
    *left = pend.len;
    mg_buf_free(&pend);
    return rc;
}

/* Runs resp split at every byte boundary and byte by byte; checks each run
 * gives want_rc, body and head text (NULL: not checked). */
static void every_split(const char *resp, bool eof, mg_h1_prc want_rc, const char *want_body,
                        const char *want_head, int want_status, int want_keep)
{
    size_t len = strlen(resp);
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    for (size_t k = 0; k <= len + 1; k++) {
        col c = {0};
        mg_h1_parser p;
        size_t left = 0, ncuts = 0;
        if (k <= len) {
            cuts[0] = k;
            ncuts = 1;
        } else {
            for (size_t i = 0; i < len; i++)
                cuts[i] = i + 1;      /* one byte at a time */
            ncuts = len;
        }
        mg_h1_prc rc = feed(resp, len, cuts, ncuts, eof, &c, &p, &left);
        if (rc != want_rc) {
            fprintf(stderr, "  split %zu: rc %d, want %d (%s)\n", k, (int)rc, (int)want_rc,
                    p.error ? p.error : "");
            t_checks_failed++;
        }
        if (want_body && strcmp(str0(&c.body), want_body) != 0) {
            fprintf(stderr, "  split %zu: body \"%s\"\n", k, str0(&c.body));
            t_checks_failed++;
        }
        if (want_head)
            T_EQ_STR(str0(&c.hdr), want_head);
        if (want_status)
            T_EQ_INT(p.status, want_status);
        if (want_keep >= 0 && rc == MG_H1_DONE)
            T_EQ_INT(p.keep_alive, want_keep);
        col_free(&c);
    }
    free(cuts);
}

static mg_h1_prc once(const char *resp, bool eof, col *c, mg_h1_parser *p, size_t *left)
{
    return feed(resp, strlen(resp), NULL, 0, eof, c, p, left);
}

T_TEST(content_length)
{
    const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n";
    char resp[256];
    snprintf(resp, sizeof(resp), "%shello world", head);
    every_split(resp, false, MG_H1_DONE, "hello world", head, 200, 1);
    /* the next response's bytes are left alone */
    snprintf(resp, sizeof(resp), "%shello worldHTTP/1.1", head);
    col c = {0};
    mg_h1_parser p;
    size_t left = 0;
    T_EQ_INT(once(resp, false, &c, &p, &left), MG_H1_DONE);
    T_EQ_INT(left, 8);
    T_EQ_STR(str0(&c.body), "hello world");
    col_free(&c);
    /* a zero-length body is complete with the head */
    every_split("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, MG_H1_DONE, "", NULL, 200, 1);
    /* not complete yet without eof; cut off with it */
    every_split("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nshort", false, MG_H1_AGAIN, "short", NULL, 0, -1);
    every_split("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nshort", true, MG_H1_EPROTO, "short", NULL, 0, -1);
}

T_TEST(chunked_with_extensions_and_trailers)
{
    const char *resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5;foo=bar\r\nhello\r\n"
                       "6 ; ext=\"q\"\r\n world\r\n"
                       "A\r\n0123456789\r\n"
                       "0\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\n";
    every_split(resp, false, MG_H1_DONE, "hello world0123456789",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, 1);
    /* uppercase hex, no trailers */
    every_split("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n",
                false, MG_H1_AGAIN, NULL, NULL, 0, -1);   /* gzip then chunked: body until close */
    every_split("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n",
                false, MG_H1_DONE, "0123456789012345678901234567890", NULL, 200, 1);
    /* cut inside a chunk */
    every_split("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", true, MG_H1_EPROTO, "hel", NULL, 0, -1);
    /* both framings: chunked wins, but the connection is not reused */
    every_split("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                false, MG_H1_DONE, "ok", NULL, 200, 0);
}

T_TEST(bad_chunk_sizes)
{
    static const char *const bad[] = {
        "zz\r\n", "\r\n", "-1\r\n", "+5\r\n", "0x5\r\n", "5 x\r\n", "12345678901234567\r\n",
        "5\r\nhelloXX\r\n0\r\n\r\n",      /* data longer than the size */
        "5\r\nhello\r\n2\r\nok",            /* missing CRLF after data, then more */
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(bad); i++) {
        char resp[512];
        snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s%s", bad[i],
                 i == MG_ARRAY_LEN(bad) - 1 ? "\r\n0\r\n\r\n" : "");
        if (i == MG_ARRAY_LEN(bad) - 1)
            continue;   /* that one is well-formed once completed; covered below */
        every_split(resp, true, MG_H1_EPROTO, NULL, NULL, 0, -1);
    }
    every_split("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n", false, MG_H1_EPROTO,
                NULL, NULL, 0, -1);
    /* an endless chunk-size line is refused, not buffered */
    static char big[8192];
    int n = snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;");
    memset(big + n, 'a', sizeof(big) - (size_t)n - 1);
    col c = {0};
    mg_h1_parser p;
    size_t left;
    T_EQ_INT(once(big, false, &c, &p, &left), MG_H1_EPROTO);
    col_free(&c);
}

T_TEST(until_close)
{
    every_split("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this", true, MG_H1_DONE, "all of this",
                NULL, 200, 0);
    every_split("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this", false, MG_H1_AGAIN, "all of this",
                NULL, 0, -1);
    /* HTTP/1.0 with a length: complete, but never reused */
    every_split("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, MG_H1_DONE, "ok", NULL, 200, 0);
    /* Connection: close honoured */
    every_split("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok", false,
                MG_H1_DONE, "ok", NULL, 200, 0);
}

T_TEST(oversized_and_malformed_heads)
{
    size_t n = MG_H1_MAX_HEAD + 100;
    char *big = malloc(n + 64);
    int k = snprintf(big, n + 64, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(big + k, 'a', n - (size_t)k);
    big[n] = '\0';
    col c = {0};
    mg_h1_parser p;
    size_t left;
    T_EQ_INT(once(big, false, &c, &p, &left), MG_H1_EHEAD);   /* no line end: refused anyway */
    memcpy(big + n - 4, "\r\n\r\n", 4);
    T_EQ_INT(once(big, false, &c, &p, &left), MG_H1_EHEAD);
    col_free(&c);
    /* many small header lines add up too */
    mg_buf b = {0};
    mg_buf_append_str(&b, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 4000; i++)
        mg_buf_printf(&b, "X-H%d: 0123456789\r\n", i);
    mg_buf_append_str(&b, "\r\n");
    mg_buf_append(&b, "", 1);
    T_EQ_INT(once(b.p, false, &c, &p, &left), MG_H1_EHEAD);
    col_free(&c);
    mg_buf_free(&b);
    free(big);

    static const char *const bad[] = {
        "HTTP/1.1 20 OK\r\n\r\n", "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n", "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nName : x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(bad); i++) {
        col cc = {0};
        mg_h1_parser pp;
        mg_h1_prc rc = once(bad[i], true, &cc, &pp, &left);
        if (rc != MG_H1_EPROTO) {
            fprintf(stderr, "  bad[%zu] gave %d\n", i, (int)rc);
            t_checks_failed++;
        }
        col_free(&cc);
    }
    /* equal duplicate lengths are fine */
    every_split("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false, MG_H1_DONE, "ok",
                NULL, 200, 1);
    /* an empty reply and a cut head */
    col cc = {0};
    mg_h1_parser pp;
    T_EQ_INT(once("", true, &cc, &pp, &left), MG_H1_EPROTO);
    T_EQ_STR(pp.error, "empty reply");
    T_EQ_INT(once("HTTP/1.1 200 OK\r\nContent-", true, &cc, &pp, &left), MG_H1_EPROTO);
    T_EQ_STR(pp.error, "reply cut off");
    col_free(&cc);
}

T_TEST(interim_responses_skipped)
{
    const char *resp = "HTTP/1.1 100 Continue\r\n\r\n"
                       "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
                       "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\n{}";
    /* every head line reaches the header sink, as curl hands them out */
    every_split(resp, false, MG_H1_DONE, "{}",
                "HTTP/1.1 100 Continue\r\n\r\n"
                "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\n",
                429, 1);
}

T_TEST(no_body_statuses)
{
    /* 204 and 304 end with their head whatever they claim */
    col c = {0};
    mg_h1_parser p;
    size_t left;
    T_EQ_INT(once("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200", false, &c, &p, &left),
             MG_H1_DONE);
    T_EQ_INT(left, 12);
    T_EQ_INT(c.body.len, 0);
    T_EQ_INT(p.keep_alive, 1);
    every_split("HTTP/1.1 204 No Content\r\n\r\n", false, MG_H1_DONE, "", NULL, 204, 1);
    every_split("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", false, MG_H1_DONE, "", NULL, 204, 1);
    /* a HEAD request: no body in any reply */
    mg_h1_sink sink = {c_header, c_body, &c};
    mg_h1_parser_init(&p, true);
    size_t used = 0;
    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
    T_EQ_INT(mg_h1_parse(&p, r, strlen(r), false, &used, &sink), MG_H1_DONE);
    T_EQ_INT(used, strlen(r));
    col_free(&c);
}

T_TEST(pause_redelivers_the_same_bytes)
{
    const char *cl = "HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\nabcdefghijklmnopqrstuvwxyz";
    const char *ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n17\r\ndefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
    const char *resps[] = {cl, ch};
    for (size_t r = 0; r < 2; r++) {
        for (size_t step = 1; step <= 7; step++) {
            size_t len = strlen(resps[r]);
            size_t cuts[256], nc = 0;
            for (size_t i = step; i < len && nc < MG_ARRAY_LEN(cuts); i += step)
                cuts[nc++] = i;
            col c = {.pause_every = 2};
            mg_h1_parser p;
            size_t left = 0;
            T_EQ_INT(feed(resps[r], len, cuts, nc, false, &c, &p, &left), MG_H1_DONE);
            T_EQ_STR(str0(&c.body), "abcdefghijklmnopqrstuvwxyz");
            T_CHECK(c.pauses > 0);
            T_EQ_INT(left, 0);
            col_free(&c);
        }
    }
    /* paused: nothing of the offered slice is consumed */
    col c = {.pause_every = 1};
    mg_h1_parser p;
    mg_h1_parser_init(&p, false);
    mg_h1_sink sink = {c_header, c_body, &c};
    size_t used = 0;
    const char *head_len = "HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\n";
    T_EQ_INT(mg_h1_parse(&p, cl, strlen(cl), false, &used, &sink), MG_H1_PAUSED);
    T_EQ_INT(used, strlen(head_len));
    T_EQ_INT(c.body.len, 0);
    c.pause_every = 0;
    T_EQ_INT(mg_h1_parse(&p, cl + used, strlen(cl) - used, false, &used, &sink), MG_H1_DONE);
    T_EQ_STR(str0(&c.body), "abcdefghijklmnopqrstuvwxyz");
    col_free(&c);
}

T_TEST(sink_refusal_stops)
{
    col c = {.refuse_over = 4};
    mg_h1_parser p;
    size_t left;
    T_EQ_INT(once("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", false, &c, &p, &left), MG_H1_EWRITE);
    T_EQ_INT(c.body.len, 0);
    col_free(&c);
}

T_TEST(eligible_urls)
{
    struct sockaddr_storage a;
    socklen_t al;
    mg_str auth, path;
    T_CHECK(mg_h1_eligible_url("http://127.0.0.1:8080/v1/chat/completions", &a, &al, &auth, &path));
    T_EQ_INT(a.ss_family, AF_INET);
    T_EQ_INT(ntohs(((struct sockaddr_in *)&a)->sin_port), 8080);
    T_CHECK(mg_str_eq(auth, mg_str_c("127.0.0.1:8080")));
    T_CHECK(mg_str_eq(path, mg_str_c("/v1/chat/completions")));
    T_CHECK(mg_h1_eligible_url("http://localhost/x?y=1", &a, &al, &auth, &path));
    T_EQ_INT(ntohs(((struct sockaddr_in *)&a)->sin_port), 80);
    T_CHECK(mg_str_eq(path, mg_str_c("/x?y=1")));
    T_CHECK(mg_h1_eligible_url("http://[::1]:9000/v1", &a, &al, &auth, &path));
    T_EQ_INT(a.ss_family, AF_INET6);
    T_CHECK(mg_h1_eligible_url("http://10.1.2.3", &a, &al, &auth, &path));
    T_CHECK(mg_str_eq(path, mg_str_c("/")));
    static const char *const no[] = {
        "https://127.0.0.1/v1", "http://api.example.com/v1", "http://user@127.0.0.1/", "http://127.0.0.1:0/",
        "http://127.0.0.1:65536/", "http://127.0.0.1:/", "http://127.0.0.1:80x/", "http:///v1",
        "http://[::1/v1", "http://[::1]x/", "http://127.0.0.1?q", "ftp://127.0.0.1/", "http://1.2.3/",
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(no); i++) {
        if (mg_h1_eligible_url(no[i], &a, &al, &auth, &path)) {
            fprintf(stderr, "  accepted %s\n", no[i]);
            t_checks_failed++;
        }
    }
}

T_MAIN("h1client", T_CASE(content_length), T_CASE(chunked_with_extensions_and_trailers), T_CASE(bad_chunk_sizes),
       T_CASE(until_close), T_CASE(oversized_and_malformed_heads), T_CASE(interim_responses_skipped),
       T_CASE(no_body_statuses), T_CASE(pause_redelivers_the_same_bytes), T_CASE(sink_refusal_stops),
       T_CASE(eligible_urls))
