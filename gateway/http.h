/* modelgate — strict HTTP/1.1 request parsing (RFC 9112) and chunked decoding.
 *
 * The parser never allocates: it fills an mg_http_request with slices into the
 * caller's buffer, which must stay unchanged while the request is used. It is
 * deliberately strict (TESTING.md "HTTP front"): whatever could be read two
 * ways by two HTTP implementations is refused, with a status and a short
 * reason, and the connection is then closed by the caller.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_HTTP_H
#define MG_HTTP_H

#include "core.h"

#define MG_HTTP_MAX_HEADERS_HARD 256   /* array size; config may lower it */
#define MG_HTTP_MAX_CONN_TOKENS 16

typedef struct mg_http_limits {
    size_t max_request_line;   /* bytes incl. CRLF; longer -> 414 */
    size_t max_header_bytes;   /* whole head incl. request line; larger -> 431 */
    size_t max_headers;        /* count; more -> 431 (<= MG_HTTP_MAX_HEADERS_HARD) */
    size_t max_body;           /* Content-Length above -> 413; chunked total above -> 413 */
} mg_http_limits;

typedef struct mg_http_header {
    mg_str name;
    mg_str value;              /* leading/trailing OWS trimmed */
} mg_http_header;

typedef enum mg_http_method {
    MG_HTTP_OTHER = 0, MG_HTTP_GET, MG_HTTP_HEAD, MG_HTTP_POST, MG_HTTP_PUT,
    MG_HTTP_DELETE, MG_HTTP_OPTIONS, MG_HTTP_PATCH,
} mg_http_method;

typedef struct mg_http_request {
    mg_http_method method;
    mg_str method_str;
    mg_str target;             /* raw request-target (origin-form) */
    mg_str path;               /* target up to the first '?' (raw, not normalised) */
    mg_str query;              /* after the first '?', without it; empty if none */
    int minor;                 /* HTTP/1.<minor>: 0 or 1 */

    mg_http_header headers[MG_HTTP_MAX_HEADERS_HARD];
    size_t nheaders;

    mg_str host;               /* the single Host value (required on 1.1) */
    int64_t content_length;    /* -1 when absent */
    bool chunked;              /* Transfer-Encoding: chunked */
    bool keep_alive;           /* after Connection tokens and version defaults */
    bool expect_continue;      /* Expect: 100-continue on HTTP/1.1 (other values -> 417) */
    bool upgrade;              /* an Upgrade header was present */
    mg_str conn_tokens[MG_HTTP_MAX_CONN_TOKENS];   /* Connection: option names, all lines;
                                                       more -> 400 */
    size_t nconn_tokens;

    /* on error */
    int error_status;          /* 400, 405 (CONNECT), 413, 414, 417, 431, 501, 505 */
    const char *error_reason;  /* static string, safe to show to the client */
} mg_http_request;

enum {
    MG_HTTP_INCOMPLETE = -1,   /* need more bytes */
    MG_HTTP_ERROR = -2,        /* req->error_status / error_reason are set */
};

/* Parses one request head from buf[0..len).
 * Returns the head's length in bytes (> 0) when the head is complete and valid,
 * MG_HTTP_INCOMPLETE when more bytes are needed (it already answers 414/431
 * while incomplete if the limits are exceeded — the caller does not need to
 * read the rest), or MG_HTTP_ERROR with req->error_status set.
 * Leading empty lines (CRLF) before the request line are tolerated (RFC 9112 §2.2)
 * but count against the limits, and are part of the returned length. Only
 * origin-form targets are accepted (absolute-, authority- and asterisk-form
 * -> 400; the CONNECT method -> 405). Every line must end in CRLF.
 * The request struct is reset by the call; on MG_HTTP_INCOMPLETE its fields
 * are meaningless. Calling again from the start with more bytes is expected. */
int mg_http_parse_request(const char *buf, size_t len, const mg_http_limits *lim,
                          mg_http_request *req);

/* Looks up a header by name (case-insensitive); first match or NULL. */
const mg_http_header *mg_http_header_get(const mg_http_request *req, const char *name);

/* Incremental chunked-body decoder (RFC 9112 §7.1). Extensions are skipped
 * (bounded), trailers are read and discarded (bounded). */
typedef struct mg_http_chunked {
    int state;
    uint64_t remaining;        /* bytes left in the current chunk */
    size_t aux;                /* bytes counted in extension/trailer/size line */
    uint64_t total;            /* decoded body bytes so far */
    int error_status;
    const char *error_reason;
} mg_http_chunked;

void mg_http_chunked_init(mg_http_chunked *d);

/* Feeds in[0..len) to the decoder; decoded body bytes are appended to out
 * (out may be NULL to discard them). *consumed is set to the bytes of `in`
 * used; the caller passes the unconsumed rest (and new bytes) next time.
 * Returns:
 *   MG_OK    the final chunk and trailer section were consumed (body complete;
 *            bytes after *consumed belong to the next request); a further call
 *            consumes nothing and returns MG_OK again,
 *   MG_AGAIN all of `in` was consumed, more is needed,
 *   MG_ERR   bad framing (d->error_status 400), body over max_body (413,
 *            detected from the chunk size before its data arrives) or out of
 *            memory appending to out (500); sticky.
 * Strict: hex digits only (at most 16), no whitespace in the size line, size
 * line with extensions <= 4096 bytes, trailer section <= 8192 bytes. */
mg_rc mg_http_chunked_feed(mg_http_chunked *d, const char *in, size_t len,
                           size_t *consumed, mg_buf *out, size_t max_body);

/* Normalises an origin-form path once, for routing, policy and billing alike.
 * Decodes percent-escapes of unreserved characters only and writes other
 * escapes with uppercase hex; rejects (returns MG_ERR) paths that do not
 * start with '/', contain "//", a "." or ".." segment (literal or
 * percent-encoded, also followed by ";params"), "%2f"/"%2F", "%5c", "%00" or
 * another escaped control byte, a backslash, control bytes, bytes >= 0x80,
 * bytes that are not pchar or '/', or malformed escapes. A trailing '/' is kept.
 * Writes a NUL-terminated result into out[0..outsz); the result is never longer
 * than the input, so outsz = path.n + 1 always suffices. */
mg_rc mg_http_normalize_path(mg_str path, char *out, size_t outsz);

/* Reason phrase for a status code ("OK", "Not Found", ...). */
const char *mg_http_status_text(int status);

#endif
