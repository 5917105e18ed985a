/* modelgate — strict HTTP/1.1 request heads, chunked bodies, path normalisation.
 *
 * The head parser walks the bytes once, line by line (memchr for LF), and
 * refuses anything two HTTP implementations could read differently
 * (TESTING.md "HTTP front"). On an incomplete head it returns and is called
 * again from the start: heads are small, and re-validating the finished lines
 * lets it refuse garbage (bare LF, limits) before the terminator ever arrives.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "http.h"

#include <limits.h>

/* ------------------------------------------------------------ byte classes */

enum {
    C_NAME = 1,     /* tchar except '_': header field names */
    C_TOKEN = 2,    /* tchar: methods, codings, Connection options */
    C_VALUE = 4,    /* field-vchar, SP, HTAB, obs-text */
    C_TARGET = 8,   /* origin-form bytes: pchar, '/', '?', '%' */
    C_PCHAR = 16,   /* unreserved, sub-delims, ':', '@' (path segment bytes) */
    C_HOST = 32,    /* unreserved, sub-delims, ':', '[', ']', '%' */
    C_UNRES = 64,   /* unreserved: decoded when percent-escaped in paths */
};

#define V_ C_VALUE
#define TK_ (C_NAME | C_TOKEN)
#define P_ (C_PCHAR | C_TARGET)
#define SD_ (P_ | C_HOST)
#define UN_ (C_UNRES | P_ | C_HOST)

/* One load per byte in the hot loops; ranges never overlap. */
static const uint8_t ctab[256] = {
    ['\t'] = V_,
    [' '] = V_,
    ['!'] = V_ | TK_ | SD_,
    ['"'] = V_,
    ['#'] = V_ | TK_,
    ['$'] = V_ | TK_ | SD_,
    ['%'] = V_ | TK_ | C_TARGET | C_HOST,
    ['&'] = V_ | TK_ | SD_,
    ['\''] = V_ | TK_ | SD_,
    ['('] = V_ | SD_,
    [')'] = V_ | SD_,
    ['*'] = V_ | TK_ | SD_,
    ['+'] = V_ | TK_ | SD_,
    [','] = V_ | P_,    /* not in Host: "a,b" reads as a list of hosts */
    ['-'] = V_ | TK_ | UN_,
    ['.'] = V_ | TK_ | UN_,
    ['/'] = V_ | C_TARGET,
    ['0' ... '9'] = V_ | TK_ | UN_,
    [':'] = V_ | P_ | C_HOST,
    [';'] = V_ | SD_,
    ['<'] = V_,
    ['='] = V_ | SD_,
    ['>'] = V_,
    ['?'] = V_ | C_TARGET,
    ['@'] = V_ | P_,
    ['A' ... 'Z'] = V_ | TK_ | UN_,
    ['['] = V_ | C_HOST,
    ['\\'] = V_,
    [']'] = V_ | C_HOST,
    ['^'] = V_ | TK_,
    ['_'] = V_ | C_TOKEN | UN_,
    ['`'] = V_ | TK_,
    ['a' ... 'z'] = V_ | TK_ | UN_,
    ['{'] = V_,
    ['|'] = V_ | TK_,
    ['}'] = V_,
    ['~'] = V_ | TK_ | UN_,
    [0x80 ... 0xFF] = V_,
};

static inline bool is_class(unsigned char c, int cls) { return (ctab[c] & cls) != 0; }

static inline int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Compares p[0..n) case-insensitively with a lowercase literal. */
static bool ieq_lit(const char *p, size_t n, const char *lit, size_t litn)
{
    if (n != litn)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if (c != (unsigned char)lit[i])
            return false;
    }
    return true;
}

#define IEQ(s, lit) ieq_lit((s).p, (s).n, lit, sizeof(lit) - 1)

static mg_str trim_ows(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    return mg_str_make(p, (size_t)(e - p));
}

static bool all_class(mg_str s, int cls)
{
    for (size_t i = 0; i < s.n; i++)
        if (!is_class((unsigned char)s.p[i], cls))
            return false;
    return true;
}

/* --------------------------------------------------------------- the head */

/* What the header lines said about framing, checked once the head is whole. */
typedef struct head_state {
    int n_cl, n_te;
    mg_str te;
    bool conn_close, conn_keep_alive;
    bool expect_other;
} head_state;

static int fail(mg_http_request *req, int status, const char *reason)
{
    req->error_status = status;
    req->error_reason = reason;
    return MG_HTTP_ERROR;
}

static void request_reset(mg_http_request *req)
{
    /* The header array is 8 KiB; only nheaders says what in it is valid. */
    req->method = MG_HTTP_OTHER;
    req->method_str = req->target = req->path = req->query = req->host = MG_STR_NULL;
    req->minor = 0;
    req->nheaders = 0;
    req->content_length = -1;
    req->chunked = req->keep_alive = req->expect_continue = req->upgrade = false;
    req->nconn_tokens = 0;
    req->error_status = 0;
    req->error_reason = NULL;
}

static mg_http_method method_of(mg_str m)
{
    switch (m.n) {
    case 3:
        if (memcmp(m.p, "GET", 3) == 0) return MG_HTTP_GET;
        if (memcmp(m.p, "PUT", 3) == 0) return MG_HTTP_PUT;
        break;
    case 4:
        if (memcmp(m.p, "POST", 4) == 0) return MG_HTTP_POST;
        if (memcmp(m.p, "HEAD", 4) == 0) return MG_HTTP_HEAD;
        break;
    case 5:
        if (memcmp(m.p, "PATCH", 5) == 0) return MG_HTTP_PATCH;
        break;
    case 6:
        if (memcmp(m.p, "DELETE", 6) == 0) return MG_HTTP_DELETE;
        break;
    case 7:
        if (memcmp(m.p, "OPTIONS", 7) == 0) return MG_HTTP_OPTIONS;
        break;
    }
    return MG_HTTP_OTHER;
}

/* method SP request-target SP HTTP-version; eol points at the line's CR. */
static int parse_request_line(const char *p, const char *eol, mg_http_request *req)
{
    const char *m = p;
    while (p < eol && is_class((unsigned char)*p, C_TOKEN))
        p++;
    if (p == m || p == eol || *p != ' ')
        return fail(req, 400, "invalid method");
    req->method_str = mg_str_make(m, (size_t)(p - m));
    req->method = method_of(req->method_str);

    const char *t = ++p;
    while (is_class((unsigned char)*p, C_TARGET))   /* stops at the CR at eol */
        p++;
    if (p == t || p == eol || *p != ' ')
        return fail(req, 400, "invalid request-target");
    req->target = mg_str_make(t, (size_t)(p - t));

    p++;
    if (eol - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' ||
        p[7] < '0' || p[7] > '9')
        return fail(req, 400, "invalid HTTP version");
    if (p[5] != '1' || p[7] > '1')
        return fail(req, 505, "HTTP version not supported");
    req->minor = p[7] - '0';

    if (mg_str_eq(req->method_str, MG_STR_LIT("CONNECT")))
        return fail(req, 405, "CONNECT not supported");
    if (t[0] != '/') {
        if (req->target.n == 1 && t[0] == '*')
            return fail(req, 400, "asterisk-form not supported");
        if (memchr(t, ':', req->target.n) != NULL)
            return fail(req, 400, "absolute-form not supported");
        return fail(req, 400, "invalid request-target");
    }
    const char *q = memchr(t, '?', req->target.n);
    if (q == NULL) {
        req->path = req->target;
        req->query = mg_str_make(t + req->target.n, 0);
    } else {
        req->path = mg_str_make(t, (size_t)(q - t));
        req->query = mg_str_make(q + 1, (size_t)(t + req->target.n - q - 1));
    }
    return 0;
}

static int parse_connection(mg_str v, mg_http_request *req, head_state *st)
{
    const char *p = v.p, *end = v.p + v.n;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        mg_str tok = trim_ows(p, e);
        /* RFC 9110 §5.6.1: empty list elements are ignored. */
        if (tok.n > 0) {
            if (!all_class(tok, C_TOKEN))
                return fail(req, 400, "invalid Connection header");
            if (req->nconn_tokens >= MG_HTTP_MAX_CONN_TOKENS)
                return fail(req, 400, "too many Connection options");
            req->conn_tokens[req->nconn_tokens++] = tok;
            if (IEQ(tok, "close"))
                st->conn_close = true;
            else if (IEQ(tok, "keep-alive"))
                st->conn_keep_alive = true;
        }
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

/* Interprets the fields whose meaning the parser itself depends on. */
static int header_semantics(const mg_http_header *h, const char *raw, const char *eol,
                            mg_http_request *req, head_state *st)
{
    mg_str n = h->name, v = h->value;
    switch (n.n) {
    case 4:
        if (!IEQ(n, "host"))
            break;
        if (req->host.p != NULL)
            return fail(req, 400, "duplicate Host header");
        if (v.n == 0 || !all_class(v, C_HOST))
            return fail(req, 400, "invalid Host header");
        req->host = v;
        break;
    case 6:
        if (!IEQ(n, "expect"))
            break;
        if (IEQ(v, "100-continue"))
            req->expect_continue = req->minor >= 1;   /* ignored on 1.0 (RFC 9110 §10.1.1) */
        else
            st->expect_other = true;
        break;
    case 7:
        if (IEQ(n, "upgrade"))
            req->upgrade = true;
        break;
    case 10:
        if (IEQ(n, "connection"))
            return parse_connection(v, req, st);
        break;
    case 14: {
        if (!IEQ(n, "content-length"))
            break;
        if (st->n_cl++ > 0)
            return fail(req, 400, "duplicate Content-Length");
        /* 1*DIGIT, at most 19 of them: no sign, list, hex or inner space. */
        if (v.n == 0 || v.n > 19)
            return fail(req, 400, "invalid Content-Length");
        uint64_t x = 0;
        for (size_t i = 0; i < v.n; i++) {
            unsigned char c = (unsigned char)v.p[i];
            if (c < '0' || c > '9')
                return fail(req, 400, "invalid Content-Length");
            x = x * 10 + (c - '0');   /* 19 digits cannot overflow uint64 */
        }
        if (x > (uint64_t)INT64_MAX)
            return fail(req, 400, "invalid Content-Length");
        req->content_length = (int64_t)x;
        break;
    }
    case 17:
        if (!IEQ(n, "transfer-encoding"))
            break;
        if (st->n_te++ > 0)
            return fail(req, 400, "multiple Transfer-Encoding headers");
        /* Tabs around codings are a classic desync vector: refuse them all. */
        if (memchr(raw, '\t', (size_t)(eol - raw)) != NULL)
            return fail(req, 400, "invalid Transfer-Encoding");
        st->te = v;
        break;
    }
    return 0;
}

/* name ":" OWS value OWS; eol points at the line's CR (the line is not empty). */
static int parse_header_line(const char *p, const char *eol, mg_http_request *req,
                             head_state *st)
{
    if (*p == ' ' || *p == '\t')
        return fail(req, 400, "obsolete line folding");
    /* *eol is the CR, outside every class scanned here: it ends the loops. */
    const char *n = p;
    while (is_class((unsigned char)*p, C_NAME))
        p++;
    if (p == eol || *p != ':') {
        if (p == eol)
            return fail(req, 400, "header line without colon");
        if (*p == '_')
            return fail(req, 400, "underscore in header name");
        if (*p == ' ' || *p == '\t')
            return fail(req, 400, "whitespace before colon");
        return fail(req, 400, "invalid header name");
    }
    if (p == n)
        return fail(req, 400, "empty header name");
    mg_http_header *h = &req->headers[req->nheaders];
    h->name = mg_str_make(n, (size_t)(p - n));

    const char *raw = ++p;
    while (p < eol && (*p == ' ' || *p == '\t'))
        p++;
    const char *v = p;
    while (is_class((unsigned char)*p, C_VALUE))
        p++;
    if (p != eol)
        return fail(req, 400, "invalid byte in header value");
    while (p > v && (p[-1] == ' ' || p[-1] == '\t'))
        p--;
    h->value = mg_str_make(v, (size_t)(p - v));
    req->nheaders++;
    return header_semantics(h, raw, eol, req, st);
}

static bool known_coding(mg_str c)
{
    return IEQ(c, "gzip") || IEQ(c, "deflate") || IEQ(c, "compress") || IEQ(c, "x-gzip") ||
           IEQ(c, "x-compress");
}

/* Accepts exactly "chunked"; 501 for a well-formed list of codings we do not
 * implement, 400 for anything malformed or ambiguous. */
static int check_transfer_encoding(mg_str v, mg_http_request *req)
{
    const char *p = v.p, *end = v.p + v.n;
    int nchunked = 0;
    bool chunked_last = false, unsupported = false;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        mg_str c = trim_ows(p, e);
        if (c.n == 0)
            return fail(req, 400, "empty transfer-coding");
        if (!all_class(c, C_TOKEN))
            return fail(req, 400, "invalid transfer-coding");
        chunked_last = IEQ(c, "chunked");
        if (chunked_last)
            nchunked++;
        else if (known_coding(c))
            unsupported = true;
        else
            return fail(req, 400, "unknown transfer-coding");
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (nchunked > 1)
        return fail(req, 400, "chunked applied more than once");
    if (nchunked == 1 && !chunked_last)
        return fail(req, 400, "chunked is not the final transfer-coding");
    if (unsupported)
        return fail(req, 501, "transfer-coding not implemented");
    req->chunked = true;
    return 0;
}

/* Checks that need the whole head, most fundamental (framing) first. */
static int finish_head(const mg_http_limits *lim, mg_http_request *req, head_state *st)
{
    if (st->n_te > 0) {
        if (st->n_cl > 0)
            return fail(req, 400, "both Content-Length and Transfer-Encoding");
        if (req->minor == 0)
            return fail(req, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (check_transfer_encoding(st->te, req) != 0)
            return MG_HTTP_ERROR;
    }
    if (req->minor >= 1 && req->host.p == NULL)
        return fail(req, 400, "missing Host header");
    if (st->expect_other)
        return fail(req, 417, "unsupported expectation");
    if (req->content_length > 0 && (uint64_t)req->content_length > (uint64_t)lim->max_body)
        return fail(req, 413, "request body too large");
    if (st->conn_close)
        req->keep_alive = false;
    else
        req->keep_alive = req->minor >= 1 || st->conn_keep_alive;
    return 0;
}

/* Nothing wrong in the finished lines and no terminator yet: refuse now if
 * no continuation can fit the limits, so a client streaming an endless head
 * is answered without waiting for it. `line` starts the unfinished line. */
static int head_incomplete(const char *buf, size_t len, const char *line, bool request_line,
                           size_t max_head, size_t max_headers, const mg_http_limits *lim,
                           mg_http_request *req)
{
    size_t partial = (size_t)(buf + len - line);
    if (request_line) {
        /* The shortest completion adds the LF, or CRLF. */
        size_t least = partial + (partial > 0 && line[partial - 1] == '\r' ? 1 : 2);
        if (least > lim->max_request_line)
            return fail(req, 414, "request line too long");
    }
    /* Unfinished lines only ever grow, so the head will be longer than len. */
    if (len >= max_head)
        return fail(req, 431, "request header section too large");
    if (!request_line && req->nheaders >= max_headers && partial > 0 && line[0] != '\r')
        return fail(req, 431, "too many header fields");
    const char *cr = partial > 1 ? memchr(line, '\r', partial - 1) : NULL;
    if (cr != NULL)
        return fail(req, 400, "bare CR");
    return MG_HTTP_INCOMPLETE;
}

int mg_http_parse_request(const char *buf, size_t len, const mg_http_limits *lim,
                          mg_http_request *req)
{
    request_reset(req);
    size_t max_head = lim->max_header_bytes < (size_t)INT_MAX ? lim->max_header_bytes
                                                              : (size_t)INT_MAX;
    size_t max_headers = lim->max_headers < MG_HTTP_MAX_HEADERS_HARD ? lim->max_headers
                                                                      : MG_HTTP_MAX_HEADERS_HARD;
    const char *p = buf, *end = buf + len;

    /* RFC 9112 §2.2: empty lines before the request line are ignored. */
    while (p < end && (*p == '\r' || *p == '\n')) {
        if (*p == '\n')
            return fail(req, 400, "bare LF");
        if (end - p < 2)
            break;
        if (p[1] != '\n')
            return fail(req, 400, "bare CR");
        p += 2;
        if ((size_t)(p - buf) > max_head)
            return fail(req, 431, "request header section too large");
    }

    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (lf == NULL)
        return head_incomplete(buf, len, p, true, max_head, max_headers, lim, req);
    if ((size_t)(lf + 1 - p) > lim->max_request_line)
        return fail(req, 414, "request line too long");
    if ((size_t)(lf + 1 - buf) > max_head)
        return fail(req, 431, "request header section too large");
    if (lf == p || lf[-1] != '\r')
        return fail(req, 400, "bare LF");
    if (parse_request_line(p, lf - 1, req) != 0)
        return MG_HTTP_ERROR;
    p = lf + 1;

    head_state st = {0};
    for (;;) {
        lf = memchr(p, '\n', (size_t)(end - p));
        if (lf == NULL)
            return head_incomplete(buf, len, p, false, max_head, max_headers, lim, req);
        if ((size_t)(lf + 1 - buf) > max_head)
            return fail(req, 431, "request header section too large");
        if (lf == p || lf[-1] != '\r')
            return fail(req, 400, "bare LF");
        const char *eol = lf - 1;
        if (eol == p)
            break;
        if (req->nheaders >= max_headers)
            return fail(req, 431, "too many header fields");
        if (parse_header_line(p, eol, req, &st) != 0)
            return MG_HTTP_ERROR;
        p = lf + 1;
    }
    if (finish_head(lim, req, &st) != 0)
        return MG_HTTP_ERROR;
    return (int)(lf + 1 - buf);
}

const mg_http_header *mg_http_header_get(const mg_http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const mg_http_header *h = &req->headers[i];
        if (h->name.n == n && mg_str_ieq(h->name, mg_str_make(name, n)))
            return h;
    }
    return NULL;
}

/* ---------------------------------------------------------- chunked bodies */

enum {
    CH_SIZE0 = 0,      /* first hex digit of a chunk size */
    CH_SIZE,           /* further hex digits, ';' or CR */
    CH_EXT,            /* chunk extensions up to CR */
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_START,  /* start of a trailer line or the final CRLF */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF,
    CH_DONE,
    CH_FAILED,
};

#define CH_MAX_SIZE_DIGITS 16
#define CH_MAX_SIZE_LINE 4096   /* size, extensions and CRLF */
#define CH_MAX_TRAILER 8192     /* the whole trailer section incl. final CRLF */

void mg_http_chunked_init(mg_http_chunked *d)
{
    memset(d, 0, sizeof(*d));
    d->state = CH_SIZE0;
}

static mg_rc ch_fail(mg_http_chunked *d, int status, const char *reason)
{
    d->state = CH_FAILED;
    d->error_status = status;
    d->error_reason = reason;
    return MG_ERR;
}

/* One framing byte (everything but chunk data). */
static mg_rc ch_byte(mg_http_chunked *d, unsigned char c, size_t max_body)
{
    switch (d->state) {
    case CH_SIZE0:
    case CH_SIZE: {
        int h = hex_val(c);
        if (h >= 0) {
            if (d->aux >= CH_MAX_SIZE_DIGITS)
                return ch_fail(d, 400, "chunk size too long");
            d->aux++;
            d->remaining = d->remaining * 16 + (uint64_t)h;
            /* The first test keeps the subtraction from wrapping should a
             * caller lower max_body between calls. */
            if (d->total > (uint64_t)max_body || d->remaining > (uint64_t)max_body - d->total)
                return ch_fail(d, 413, "request body too large");
            d->state = CH_SIZE;
            return MG_OK;
        }
        if (d->state == CH_SIZE0)
            return ch_fail(d, 400, "invalid chunk size");
        d->aux++;
        if (c == ';')
            d->state = CH_EXT;
        else if (c == '\r')
            d->state = CH_SIZE_LF;
        else
            return ch_fail(d, 400, "invalid chunk size");
        return MG_OK;
    }
    case CH_EXT:
        /* aux stops at CR; the LF still to come must fit as well. */
        if (++d->aux > CH_MAX_SIZE_LINE - 1)
            return ch_fail(d, 400, "chunk extension too long");
        if (c == '\r')
            d->state = CH_SIZE_LF;
        else if (c != '\t' && (c < 0x20 || c == 0x7f))
            return ch_fail(d, 400, "invalid chunk extension");
        return MG_OK;
    case CH_SIZE_LF:
        if (c != '\n')
            return ch_fail(d, 400, "bare CR in chunk size line");
        d->aux = 0;
        d->state = d->remaining == 0 ? CH_TRAILER_START : CH_DATA;
        return MG_OK;
    case CH_DATA_CR:
        if (c != '\r')
            return ch_fail(d, 400, "missing CRLF after chunk data");
        d->state = CH_DATA_LF;
        return MG_OK;
    case CH_DATA_LF:
        if (c != '\n')
            return ch_fail(d, 400, "missing CRLF after chunk data");
        d->state = CH_SIZE0;
        return MG_OK;
    default:
        break;
    }

    /* Trailer section: fields are checked for shape and dropped. */
    if (++d->aux > CH_MAX_TRAILER)
        return ch_fail(d, 400, "trailer section too large");
    switch (d->state) {
    case CH_TRAILER_START:
        if (c == '\r')
            d->state = CH_END_LF;
        else if (is_class(c, C_NAME))
            d->state = CH_TRAILER_NAME;
        else
            return ch_fail(d, 400, "invalid trailer field");
        return MG_OK;
    case CH_TRAILER_NAME:
        if (c == ':')
            d->state = CH_TRAILER_VALUE;
        else if (!is_class(c, C_NAME))
            return ch_fail(d, 400, "invalid trailer field");
        return MG_OK;
    case CH_TRAILER_VALUE:
        if (c == '\r')
            d->state = CH_TRAILER_LF;
        else if (!is_class(c, C_VALUE))
            return ch_fail(d, 400, "invalid trailer field");
        return MG_OK;
    case CH_TRAILER_LF:
        if (c != '\n')
            return ch_fail(d, 400, "bare CR in trailer");
        d->state = CH_TRAILER_START;
        return MG_OK;
    case CH_END_LF:
        if (c != '\n')
            return ch_fail(d, 400, "bare CR after trailer");
        d->state = CH_DONE;
        return MG_OK;
    }
    return ch_fail(d, 400, "invalid chunked state");
}

mg_rc mg_http_chunked_feed(mg_http_chunked *d, const char *in, size_t len, size_t *consumed,
                           mg_buf *out, size_t max_body)
{
    size_t i = 0;
    *consumed = 0;
    if (d->state == CH_FAILED)
        return MG_ERR;
    while (i < len && d->state != CH_DONE) {
        if (d->state == CH_DATA) {
            size_t take = len - i;
            if ((uint64_t)take > d->remaining)
                take = (size_t)d->remaining;
            if (out != NULL && mg_buf_append(out, in + i, take) != MG_OK) {
                *consumed = i;
                return ch_fail(d, 500, "out of memory");
            }
            i += take;
            d->remaining -= take;
            d->total += take;
            if (d->remaining == 0)
                d->state = CH_DATA_CR;
            continue;
        }
        if (ch_byte(d, (unsigned char)in[i++], max_body) != MG_OK) {
            *consumed = i;
            return MG_ERR;
        }
    }
    *consumed = i;
    return d->state == CH_DONE ? MG_OK : MG_AGAIN;
}

/* ------------------------------------------------------------------ paths */

/* A segment is refused when it is "." or "..", also with ";params" after it,
 * which some servers strip before resolving dot-segments. */
static bool dot_segment(const char *s, size_t n)
{
    const char *semi = memchr(s, ';', n);
    if (semi != NULL)
        n = (size_t)(semi - s);
    return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

mg_rc mg_http_normalize_path(mg_str path, char *out, size_t outsz)
{
    static const char hexu[] = "0123456789ABCDEF";
    if (outsz == 0)
        return MG_ERR;
    out[0] = '\0';
    if (path.n == 0 || path.p[0] != '/')
        return MG_ERR;
    size_t o = 0, seg = 0;   /* seg: where the current segment starts in out */
    for (size_t i = 0; i < path.n; i++) {
        unsigned char c = (unsigned char)path.p[i];
        if (c == '/') {
            if (i > 0 && (o == seg || dot_segment(out + seg, o - seg)))
                return MG_ERR;
            if (o + 1 >= outsz)
                return MG_ERR;
            out[o++] = '/';
            seg = o;
            continue;
        }
        if (c == '%') {
            if (path.n - i < 3)
                return MG_ERR;
            int hi = hex_val((unsigned char)path.p[i + 1]);
            int lo = hex_val((unsigned char)path.p[i + 2]);
            if (hi < 0 || lo < 0)
                return MG_ERR;
            unsigned char v = (unsigned char)(hi * 16 + lo);
            i += 2;
            if (is_class(v, C_UNRES)) {
                if (o + 1 >= outsz)
                    return MG_ERR;
                out[o++] = (char)v;
                continue;
            }
            if (v < 0x20 || v == 0x7f || v == '/' || v == '\\')
                return MG_ERR;
            /* Kept encoded, in one spelling, so every stage compares equal. */
            if (o + 3 >= outsz)
                return MG_ERR;
            out[o++] = '%';
            out[o++] = hexu[hi];
            out[o++] = hexu[lo];
            continue;
        }
        if (!is_class(c, C_PCHAR))
            return MG_ERR;
        if (o + 1 >= outsz)
            return MG_ERR;
        out[o++] = (char)c;
    }
    if (dot_segment(out + seg, o - seg))
        return MG_ERR;
    out[o] = '\0';
    return MG_OK;
}

/* ----------------------------------------------------------------- status */

const char *mg_http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    }
    if (status >= 100 && status < 600) {
        static const char *const generic[] = {"Informational", "Success", "Redirection",
                                              "Client Error", "Server Error"};
        return generic[status / 100 - 1];
    }
    return "Unknown";
}
