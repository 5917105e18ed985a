/* modelgate — fuzz target for the HTTP request parser, chunked decoder and
 * path normaliser (gateway/http.c).
 *
 * Besides "no crash", it checks properties a caller relies on: results for a
 * prefix of the input never contradict the result for the whole input, slices
 * stay inside the buffer, and the chunked decoder gives the same bytes
 * whether fed all at once or in small pieces. Built with libFuzzer by
 * scripts/fuzz.sh, or with tests/fuzz/replay.c to replay the corpus.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small limits so the fuzzer reaches every 414/431/413 edge quickly. */
static const mg_http_limits lim = {128, 512, 12, 256};

static mg_http_request req;
static mg_http_request preq;

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_http: %s:%d: %s\n", __FILE__, __LINE__, #c); abort(); } } while (0)

static void check_slice(mg_str s, const char *buf, size_t len)
{
    if (s.p == NULL) {
        CHECK(s.n == 0);
        return;
    }
    CHECK(s.p >= buf && s.n <= len && (size_t)(s.p - buf) <= len - s.n);
}

static void check_request(const char *buf, size_t len, int r)
{
    CHECK(r == MG_HTTP_INCOMPLETE || r == MG_HTTP_ERROR || (r > 0 && (size_t)r <= len));
    if (r == MG_HTTP_ERROR) {
        int st = req.error_status;
        CHECK(st == 400 || st == 405 || st == 413 || st == 414 || st == 417 || st == 431 ||
              st == 501 || st == 505);
        CHECK(req.error_reason != NULL);
        return;
    }
    if (r < 0)
        return;
    CHECK(req.nheaders <= lim.max_headers && req.nconn_tokens <= MG_HTTP_MAX_CONN_TOKENS);
    CHECK(buf[r - 1] == '\n' && buf[r - 2] == '\r');
    check_slice(req.method_str, buf, (size_t)r);
    check_slice(req.target, buf, (size_t)r);
    check_slice(req.path, buf, (size_t)r);
    check_slice(req.query, buf, (size_t)r);
    check_slice(req.host, buf, (size_t)r);
    for (size_t i = 0; i < req.nheaders; i++) {
        check_slice(req.headers[i].name, buf, (size_t)r);
        check_slice(req.headers[i].value, buf, (size_t)r);
        CHECK(req.headers[i].name.n > 0);
    }
    for (size_t i = 0; i < req.nconn_tokens; i++)
        check_slice(req.conn_tokens[i], buf, (size_t)r);
    CHECK(req.path.n > 0 && req.path.p[0] == '/');
    CHECK(req.minor == 0 || req.minor == 1);
    CHECK(!(req.chunked && req.content_length >= 0));
    CHECK(req.content_length <= (int64_t)lim.max_body);
    CHECK(req.minor == 0 || req.host.p != NULL);
}

/* A prefix that already has an answer must get the same kind of answer
 * from the whole input: a complete head keeps its length, an error stays an
 * error (the status may differ: more bytes can reveal an earlier limit). */
static void check_prefix(const char *buf, size_t k, int full)
{
    char *copy = malloc(k ? k : 1);
    CHECK(copy != NULL);
    memcpy(copy, buf, k);
    int r = mg_http_parse_request(copy, k, &lim, &preq);
    free(copy);
    if (r > 0)
        CHECK(full == r);
    else if (r == MG_HTTP_ERROR)
        CHECK(full == MG_HTTP_ERROR);
}

static void fuzz_chunked(const char *body, size_t n, size_t step)
{
    mg_http_chunked a, b;
    mg_buf out_a = {0}, out_b = {0};
    size_t used_a = 0;
    mg_http_chunked_init(&a);
    mg_rc rc_a = mg_http_chunked_feed(&a, body, n, &used_a, &out_a, lim.max_body);
    CHECK(used_a <= n);
    CHECK(rc_a != MG_AGAIN || used_a == n);
    CHECK(a.total <= lim.max_body && out_a.len == a.total);

    /* The same bytes in pieces of `step`, unconsumed bytes offered again. */
    mg_http_chunked_init(&b);
    size_t done = 0, have = 0;
    mg_rc rc_b = MG_AGAIN;
    while (rc_b == MG_AGAIN && have < n) {
        have = have + step < n ? have + step : n;
        size_t used = 0;
        rc_b = mg_http_chunked_feed(&b, body + done, have - done, &used, &out_b, lim.max_body);
        CHECK(used <= have - done);
        done += used;
    }
    CHECK(rc_a == rc_b);
    if (rc_a != MG_ERR) {
        CHECK(done == used_a);
        CHECK(out_a.len == out_b.len && (out_a.len == 0 || memcmp(out_a.p, out_b.p, out_a.len) == 0));
    } else {
        CHECK(a.error_status == b.error_status);
        CHECK(a.error_status == 400 || a.error_status == 413);
    }
    mg_buf_free(&out_a);
    mg_buf_free(&out_b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    int r = mg_http_parse_request(buf, size, &lim, &req);
    check_request(buf, size, r);

    static const size_t cuts[] = {1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]) && cuts[i] < size; i++)
        check_prefix(buf, size - cuts[i], r);
    if (size > 0)
        check_prefix(buf, size / 2, r);

    if (r > 0) {
        (void)mg_http_header_get(&req, "content-type");
        size_t plen = req.path.n;
        char *out = malloc(plen + 1);
        CHECK(out != NULL);
        if (mg_http_normalize_path(req.path, out, plen + 1) == MG_OK) {
            size_t on = strlen(out);
            CHECK(on <= plen && out[0] == '/');
            CHECK(strstr(out, "//") == NULL && strstr(out, "/../") == NULL &&
                  strstr(out, "/./") == NULL && strchr(out, '\\') == NULL);
            /* Normalising twice changes nothing. */
            char *again = malloc(on + 1);
            CHECK(again != NULL);
            CHECK(mg_http_normalize_path(mg_str_make(out, on), again, on + 1) == MG_OK);
            CHECK(strcmp(out, again) == 0);
            free(again);
        }
        free(out);
        if (req.chunked) {
            size_t step = 1 + (size > 0 ? data[size - 1] % 7 : 0);
            fuzz_chunked(buf + r, size - (size_t)r, step);
        }
    }
    return 0;
}
