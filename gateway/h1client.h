/* modelgate — built-in HTTP/1.1 keep-alive client for plain-http upstreams.
 *
 * libcurl costs about two thirds of the proxy's per-request instructions
 * (bench/RESULTS.md). For `http://` upstreams addressed by IP literal or
 * localhost this client does the same job on the worker's epoll loop: a
 * per-worker pool of idle keep-alive connections keyed by (ip, port), the
 * request head and body in one writev, and an incremental response parser
 * that feeds the proxy's curl-style header and write callbacks, so the rest
 * of proxy.c (retries, breakers, relay, usage) is one code path.
 *
 * Everything here runs on one worker thread; nothing is shared between pools.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_H1CLIENT_H
#define MG_H1CLIENT_H

#include "loop.h"

#include <curl/curl.h>
#include <sys/socket.h>

/* ------------------------------------------------------- response parser */

#define MG_H1_MAX_HEAD (64u * 1024)   /* status line + headers of one response */

/* Returned by a body sink to stop delivery; the same bytes are offered
 * again after the transfer is resumed (curl's CURL_WRITEFUNC_PAUSE). */
#define MG_H1_PAUSE CURL_WRITEFUNC_PAUSE

typedef struct mg_h1_sink {
    /* One head line with its line ending, exactly as curl hands them out:
     * "HTTP/1.1 200 OK\r\n", "Name: value\r\n", and "\r\n" to end a head
     * (1xx heads included). Must return n; anything else aborts. */
    size_t (*header)(char *line, size_t size, size_t n, void *arg);
    /* Decoded body bytes. Returns n, MG_H1_PAUSE, or anything else to abort. */
    size_t (*body)(char *p, size_t size, size_t n, void *arg);
    void *arg;
} mg_h1_sink;

typedef enum mg_h1_prc {
    MG_H1_AGAIN = 0,      /* all usable input consumed; more is needed */
    MG_H1_DONE,           /* the response is complete */
    MG_H1_PAUSED,         /* the body sink paused; unconsumed bytes must be kept */
    MG_H1_EPROTO,         /* malformed response (p->error says why) */
    MG_H1_EHEAD,          /* head larger than MG_H1_MAX_HEAD */
    MG_H1_EWRITE,         /* a sink refused the data */
} mg_h1_prc;

typedef struct mg_h1_parser {
    int state;
    int status;               /* final (>= 200) status once its head is done */
    int minor;                /* HTTP/1.<minor> of the final response */
    bool no_body;             /* the request was HEAD (no body in any reply) */
    bool chunked;
    bool keep_alive;          /* the connection may carry another request */
    bool got_byte;            /* any response byte was consumed */
    int64_t content_length;   /* -1 when absent */
    uint64_t remaining;       /* body / chunk bytes left */
    size_t head_bytes;        /* bytes of the current head so far */
    size_t aux;               /* bytes of the current trailer section */
    const char *error;        /* static text on MG_H1_EPROTO */
} mg_h1_parser;

void mg_h1_parser_init(mg_h1_parser *p, bool head_request);

/* Feeds in[0..len). *consumed is set to the bytes used; the caller keeps the
 * rest and passes it (plus new bytes) next time. `eof`: the peer closed, so
 * a body delimited by the close is complete and anything else incomplete is
 * an error (EPROTO). Errors are sticky only by the caller not calling again.
 * After MG_H1_DONE, p->keep_alive says whether the connection is reusable
 * and bytes after *consumed are not part of this response. */
mg_h1_prc mg_h1_parse(mg_h1_parser *p, const char *in, size_t len, bool eof, size_t *consumed,
                      const mg_h1_sink *s);

/* ------------------------------------------------------- connections */

typedef struct mg_h1_pool mg_h1_pool;
typedef struct mg_h1_xfer mg_h1_xfer;

/* One pool per worker loop. The pool must outlive its transfers. */
mg_h1_pool *mg_h1_pool_new(mg_loop *loop);
/* Closes the idle connections and frees the pool (no transfer may be left). */
void mg_h1_pool_free(mg_h1_pool *pool);
size_t mg_h1_pool_idle(const mg_h1_pool *pool);

/* Parses an "http://host[:port]/path" URL whose host is an IP literal or
 * "localhost" into addr and the origin-form path (a slice of url). False for
 * anything else (https, names needing DNS, userinfo, malformed). */
bool mg_h1_eligible_url(const char *url, struct sockaddr_storage *addr, socklen_t *addrlen,
                        mg_str *authority, mg_str *path);

typedef struct mg_h1_request {
    const char *url;                 /* NUL-terminated, must pass mg_h1_eligible_url */
    const char *method;              /* "POST" or "GET" */
    const struct curl_slist *headers;   /* sent as given; curl's "Name:" (remove)
                                          * entries are skipped, "Name;" sends empty */
    const char *body;                /* borrowed until mg_h1_free; NULL if body_len is 0 */
    size_t body_len;
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;             /* whole exchange; 0 = none */
} mg_h1_request;

/* Called once per transfer when it ends, with a CURLcode-equivalent result
 * (CURLE_OK, CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT,
 * CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_WRITE_ERROR,
 * CURLE_WEIRD_SERVER_REPLY, CURLE_OUT_OF_MEMORY). The connection is already
 * back in the pool or closed; the callback may (and should) free x. */
typedef void (*mg_h1_done_cb)(void *arg, CURLcode result);

/* Starts a transfer. The URL and headers are copied into the request head
 * at once; the body is not: it must stay valid and unchanged until
 * mg_h1_free(x). Never calls back synchronously (even a refused connect is
 * reported from the loop). NULL if the URL is not eligible or on allocation
 * failure (or a header containing CR/LF). */
mg_h1_xfer *mg_h1_start(mg_h1_pool *pool, const mg_h1_request *r, const mg_h1_sink *sink,
                        mg_h1_done_cb done);
/* Continues a transfer paused by its body sink; buffered bytes are
 * delivered from the loop, not from inside this call. */
void mg_h1_resume(mg_h1_xfer *x);
/* Frees x. A transfer still running is cancelled and its connection closed
 * (never pooled). No callback runs. NULL is a no-op. */
void mg_h1_free(mg_h1_xfer *x);

#endif
