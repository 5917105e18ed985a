/* modelgate — built-in HTTP/1.1 keep-alive client (see h1client.h).
 *
 *   mg_h1_start -> pooled conn (writev now) or non-blocking connect
 *   conn readable -> rbuf -> mg_h1_parse -> header / body sinks
 *   body sink pauses -> drop EPOLLIN, keep rbuf; resume -> deliver from loop
 *   done -> conn back to the pool (clean keep-alive end) or closed -> done cb
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "h1client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/uio.h>
#include <unistd.h>

/* ================================================================ parser */

enum {
    ST_LINE, ST_HDR, ST_BODY_CL, ST_CHUNK_SIZE, ST_CHUNK_DATA, ST_CHUNK_CRLF, ST_TRAILER,
    ST_CLOSE, ST_DONE,
};

#define MAX_CHUNK_LINE 4096u
#define MAX_TRAILERS 8192u

/* Per-head flags live in the parser between the header lines; they are only
 * meaningful until the head ends. */
#define F_CLOSE 1u
#define F_KEEP 2u
#define F_TE_OTHER 4u

void mg_h1_parser_init(mg_h1_parser *p, bool head_request)
{
    memset(p, 0, sizeof(*p));
    p->state = ST_LINE;
    p->content_length = -1;
    p->no_body = head_request;
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static mg_str trim_ows(const char *p, size_t n)
{
    while (n && (*p == ' ' || *p == '\t'))
        p++, n--;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return mg_str_make(p, n);
}

/* Walks the comma-separated tokens of v; last_chunked says whether the last
 * one is "chunked" (the only transfer coding we decode). */
static void scan_tokens(mg_str v, bool connection, mg_h1_parser *p, unsigned *flags)
{
    const char *s = v.p, *end = v.p + v.n;
    bool last_chunked = false;
    while (s < end) {
        const char *c = memchr(s, ',', (size_t)(end - s));
        const char *e = c ? c : end;
        mg_str t = trim_ows(s, (size_t)(e - s));
        if (t.n) {
            if (connection) {
                if (mg_str_ieq_c(t, "close"))
                    *flags |= F_CLOSE;
                else if (mg_str_ieq_c(t, "keep-alive"))
                    *flags |= F_KEEP;
            } else {
                last_chunked = mg_str_ieq_c(t, "chunked");
                if (!last_chunked)
                    *flags |= F_TE_OTHER;
            }
        }
        s = c ? c + 1 : end;
    }
    if (!connection) {
        if (last_chunked)
            p->chunked = true;
        else
            *flags |= F_TE_OTHER;   /* a body only the close can delimit */
    }
}

/* A status line: "HTTP/1.x NNN[ reason]". */
static bool parse_status(const char *l, size_t n, int *status, int *minor)
{
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' && l[7] != '1') || l[8] != ' ')
        return false;
    for (int i = 9; i < 12; i++)
        if (l[i] < '0' || l[i] > '9')
            return false;
    if (n > 12 && l[12] != ' ')
        return false;
    for (size_t i = 12; i < n; i++)
        if ((unsigned char)l[i] < 0x20 && l[i] != '\t')
            return false;
    *minor = l[7] - '0';
    *status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    return *status >= 100;
}

static mg_h1_prc fail(mg_h1_parser *p, const char *why)
{
    p->error = why;
    return MG_H1_EPROTO;
}

/* One header line (without its line ending). */
static mg_h1_prc header_line(mg_h1_parser *p, const char *l, size_t n, unsigned *flags)
{
    const char *colon = memchr(l, ':', n);
    if (colon == NULL || colon == l)
        return fail(p, "malformed header line");
    for (const char *c = l; c < colon; c++)
        if (!is_tchar((unsigned char)*c))
            return fail(p, "malformed header name");   /* also obs-fold and "Name :" */
    mg_str name = mg_str_make(l, (size_t)(colon - l));
    mg_str v = trim_ows(colon + 1, n - name.n - 1);
    for (size_t i = 0; i < v.n; i++)
        if (((unsigned char)v.p[i] < 0x20 && v.p[i] != '\t') || v.p[i] == 0x7f)
            return fail(p, "control byte in a header value");
    if (mg_str_ieq_c(name, "content-length")) {
        if (v.n == 0 || v.n > 18)
            return fail(p, "bad Content-Length");
        int64_t cl = 0;
        for (size_t i = 0; i < v.n; i++) {
            if (v.p[i] < '0' || v.p[i] > '9')
                return fail(p, "bad Content-Length");
            cl = cl * 10 + (v.p[i] - '0');
        }
        if (p->content_length >= 0 && p->content_length != cl)
            return fail(p, "conflicting Content-Length");
        p->content_length = cl;
    } else if (mg_str_ieq_c(name, "transfer-encoding")) {
        scan_tokens(v, false, p, flags);
    } else if (mg_str_ieq_c(name, "connection")) {
        scan_tokens(v, true, p, flags);
    }
    return MG_H1_AGAIN;
}

/* The head ended: decides how the body is delimited. */
static void head_done(mg_h1_parser *p, int status, unsigned flags)
{
    p->status = status;
    p->keep_alive = p->minor == 1 ? !(flags & F_CLOSE) : false;
    if (p->no_body || status == 204 || status == 304) {
        p->state = ST_DONE;
    } else if (p->chunked && !(flags & F_TE_OTHER)) {
        if (p->content_length >= 0)
            p->keep_alive = false;   /* both framings: never trust the rest of the stream */
        p->state = ST_CHUNK_SIZE;
        p->aux = 0;
    } else if (flags & F_TE_OTHER) {
        p->chunked = false;
        p->keep_alive = false;
        p->state = ST_CLOSE;
    } else if (p->content_length >= 0) {
        p->remaining = (uint64_t)p->content_length;
        p->state = p->remaining ? ST_BODY_CL : ST_DONE;
    } else {
        p->keep_alive = false;
        p->state = ST_CLOSE;
    }
}

/* Hands body bytes to the sink: MG_H1_AGAIN when all were taken. */
static mg_h1_prc deliver(const mg_h1_sink *s, const char *b, size_t n)
{
    size_t r = s->body((char *)b, 1, n, s->arg);
    if (r == MG_H1_PAUSE)
        return MG_H1_PAUSED;
    return r == n ? MG_H1_AGAIN : MG_H1_EWRITE;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool parse_chunk_size(const char *l, size_t n, uint64_t *size)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < n && hexval(l[i]) >= 0) {
        if (i == 16)
            return false;
        v = v << 4 | (uint64_t)hexval(l[i]);
        i++;
    }
    if (i == 0)
        return false;
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;                         /* BWS before an extension */
    if (i < n && l[i] != ';')
        return false;
    *size = v;
    return true;
}

mg_h1_prc mg_h1_parse(mg_h1_parser *p, const char *in, size_t len, bool eof, size_t *consumed,
                      const mg_h1_sink *s)
{
    size_t off = 0;
    mg_h1_prc rc = MG_H1_AGAIN;
    /* While in ST_HDR, p->aux holds the head's F_* flags across calls. */
    for (;;) {
        size_t avail = len - off;
        const char *at = in + off;
        switch (p->state) {
        case ST_LINE:
        case ST_HDR:
        case ST_CHUNK_SIZE:
        case ST_TRAILER: {
            const char *nl = memchr(at, '\n', avail);
            size_t ll = nl ? (size_t)(nl - at) + 1 : avail;
            size_t cap = p->state == ST_CHUNK_SIZE ? MAX_CHUNK_LINE
                         : p->state == ST_TRAILER   ? MAX_TRAILERS - p->aux
                                                    : MG_H1_MAX_HEAD - p->head_bytes;
            if (ll > cap) {
                rc = p->state == ST_LINE || p->state == ST_HDR ? MG_H1_EHEAD
                                                               : fail(p, "chunk framing too long");
                goto out;
            }
            if (nl == NULL) {
                if (eof)
                    rc = fail(p, off == 0 && len == 0 && p->state == ST_LINE && !p->got_byte
                                     ? "empty reply" : "reply cut off");
                goto out;
            }
            size_t n = ll - 1;       /* without "\n" */
            if (n && at[n - 1] == '\r')
                n--;
            if (p->state == ST_LINE) {
                int status = 0, minor = 0;
                if (!parse_status(at, n, &status, &minor)) {
                    rc = fail(p, "malformed status line");
                    goto out;
                }
                p->status = status;  /* provisional until the head ends */
                p->minor = minor;
                p->content_length = -1;
                p->chunked = false;
                p->aux = 0;          /* per-head flags while in ST_HDR */
                p->head_bytes = ll;
                p->state = ST_HDR;
                if (s->header((char *)at, 1, ll, s->arg) != ll) {
                    rc = MG_H1_EWRITE;
                    goto out;
                }
            } else if (p->state == ST_HDR) {
                p->head_bytes += ll;
                if (n == 0) {
                    if (s->header((char *)at, 1, ll, s->arg) != ll) {
                        rc = MG_H1_EWRITE;
                        goto out;
                    }
                    unsigned f = (unsigned)p->aux;
                    if (p->status == 101) {
                        off += ll;
                        rc = fail(p, "unexpected protocol switch");
                        goto out;
                    }
                    if (p->status < 200) {
                        p->state = ST_LINE;      /* interim reply: the real one follows */
                        p->head_bytes = 0;
                    } else {
                        head_done(p, p->status, f);
                    }
                } else {
                    unsigned f = (unsigned)p->aux;
                    rc = header_line(p, at, n, &f);
                    if (rc != MG_H1_AGAIN)
                        goto out;
                    p->aux = f;
                    if (s->header((char *)at, 1, ll, s->arg) != ll) {
                        rc = MG_H1_EWRITE;
                        goto out;
                    }
                }
            } else if (p->state == ST_CHUNK_SIZE) {
                uint64_t sz = 0;
                if (!parse_chunk_size(at, n, &sz)) {
                    rc = fail(p, "bad chunk size");
                    goto out;
                }
                p->remaining = sz;
                p->aux = 0;
                p->state = sz ? ST_CHUNK_DATA : ST_TRAILER;
            } else {                 /* ST_TRAILER: read and dropped */
                p->aux += ll;
                if (n == 0)
                    p->state = ST_DONE;
            }
            off += ll;
            p->got_byte = true;
            break;
        }
        case ST_BODY_CL:
        case ST_CHUNK_DATA: {
            if (avail == 0) {
                if (eof)
                    rc = fail(p, "reply cut off");
                goto out;
            }
            size_t n = avail < p->remaining ? avail : (size_t)p->remaining;
            rc = deliver(s, at, n);
            if (rc != MG_H1_AGAIN)
                goto out;
            off += n;
            p->remaining -= n;
            if (p->remaining == 0)
                p->state = p->state == ST_BODY_CL ? ST_DONE : ST_CHUNK_CRLF;
            break;
        }
        case ST_CHUNK_CRLF:
            if (avail == 0 || (at[0] == '\r' && avail < 2)) {
                if (eof)
                    rc = fail(p, "reply cut off");
                goto out;
            }
            if (at[0] == '\n') {
                off += 1;
            } else if (at[0] == '\r' && at[1] == '\n') {
                off += 2;
            } else {
                rc = fail(p, "chunk data longer than its size");
                goto out;
            }
            p->state = ST_CHUNK_SIZE;
            break;
        case ST_CLOSE:
            if (avail == 0) {
                if (eof)
                    p->state = ST_DONE;
                else
                    goto out;
                break;
            }
            rc = deliver(s, at, avail);
            if (rc != MG_H1_AGAIN)
                goto out;
            off += avail;
            break;
        case ST_DONE:
        default:
            rc = MG_H1_DONE;
            goto out;
        }
    }
out:
    *consumed = off;
    return rc;
}

/* ================================================================ connections */

#define H1_IDLE_MS 30000u         /* below common server keep-alive timeouts (nginx 75 s) */
#define H1_IDLE_PER_HOST 64u
#define H1_IDLE_TOTAL 512u
#define H1_READ_CHUNK 16384u

typedef struct h1_conn h1_conn;

typedef struct h1_host {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    h1_conn *idle;                 /* most recently used first */
    size_t nidle;
    struct h1_host *next;
} h1_host;

struct h1_conn {
    mg_io io;
    mg_h1_pool *pool;
    h1_host *host;
    h1_conn *prev, *next;          /* in host->idle */
    mg_h1_xfer *x;                 /* active transfer, NULL while idle */
    mg_timer idle_timer;
    bool connecting;
    bool closed;
};

struct mg_h1_pool {
    mg_loop *loop;
    h1_host *hosts;
    size_t nidle;
};

struct mg_h1_xfer {
    mg_h1_pool *pool;
    h1_host *host;
    h1_conn *c;
    mg_h1_sink sink;
    mg_h1_done_cb done;
    mg_buf head;                   /* request head */
    const char *body;              /* the caller's, valid until mg_h1_free */
    size_t body_len;
    size_t sent;                   /* of head + body */
    mg_buf rbuf;                   /* received, not yet consumed by the parser */
    mg_h1_parser parser;
    uint32_t connect_timeout_ms, timeout_ms;
    uint64_t t0_ms;
    bool paused, eof, got_byte, reused, retried, finished;
    bool in_start;                 /* inside mg_h1_start: no callbacks yet */
    CURLcode pending;              /* a failure to report from the loop */
    bool has_pending;
    mg_timer kick;                 /* deferred delivery (resume, early failure) */
    mg_timer deadline;             /* connect timeout, then the whole exchange */
};

mg_h1_pool *mg_h1_pool_new(mg_loop *loop)
{
    mg_h1_pool *pool = calloc(1, sizeof(*pool));
    if (pool)
        pool->loop = loop;
    return pool;
}

size_t mg_h1_pool_idle(const mg_h1_pool *pool) { return pool ? pool->nidle : 0; }

static void idle_unlink(h1_conn *c)
{
    h1_host *h = c->host;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->idle = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    h->nidle--;
    c->pool->nidle--;
    mg_timer_disarm(c->pool->loop, &c->idle_timer);
}

/* `now`: free immediately (pool teardown, outside the loop's dispatch). */
static void conn_close(h1_conn *c, bool now)
{
    if (c->closed)
        return;
    if (c->x == NULL && (c->prev || c->host->idle == c))
        idle_unlink(c);
    mg_timer_disarm(c->pool->loop, &c->idle_timer);
    mg_loop_io_set(c->pool->loop, &c->io, 0);
    close(c->io.fd);
    c->io.fd = -1;
    c->closed = true;
    if (c->x)
        c->x->c = NULL;
    c->x = NULL;
    if (now)
        free(c);
    else
        mg_loop_defer_free(c->pool->loop, c);   /* a late event in this batch may name it */
}

void mg_h1_pool_free(mg_h1_pool *pool)
{
    if (pool == NULL)
        return;
    h1_host *h = pool->hosts;
    while (h) {
        while (h->idle)
            conn_close(h->idle, true);
        h1_host *next = h->next;
        free(h);
        h = next;
    }
    free(pool);
}

static void conn_idle_timeout(mg_timer *t)
{
    conn_close(t->data, false);
}

static void conn_on_io(mg_io *io, uint32_t events);

static void pool_put(h1_conn *c)
{
    mg_h1_pool *pool = c->pool;
    h1_host *h = c->host;
    c->x = NULL;
    if (h->nidle >= H1_IDLE_PER_HOST || pool->nidle >= H1_IDLE_TOTAL ||
        mg_loop_io_set(pool->loop, &c->io, EPOLLIN) != MG_OK) {
        conn_close(c, false);
        return;
    }
    /* Watching idle connections for EPOLLIN notices a server-side close
     * when it happens, rather than on the next request. */
    c->prev = NULL;
    c->next = h->idle;
    if (h->idle)
        h->idle->prev = c;
    h->idle = c;
    h->nidle++;
    pool->nidle++;
    mg_timer_arm(pool->loop, &c->idle_timer, H1_IDLE_MS);
}

static h1_host *host_get(mg_h1_pool *pool, const struct sockaddr_storage *a, socklen_t alen)
{
    for (h1_host *h = pool->hosts; h; h = h->next)
        if (h->addrlen == alen && memcmp(&h->addr, a, alen) == 0)
            return h;
    h1_host *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    memcpy(&h->addr, a, alen);
    h->addrlen = alen;
    h->next = pool->hosts;
    pool->hosts = h;
    return h;
}

/* ---------------------------------------------------------------- URLs */

bool mg_h1_eligible_url(const char *url, struct sockaddr_storage *addr, socklen_t *addrlen,
                        mg_str *authority, mg_str *path)
{
    if (strncasecmp(url, "http://", 7) != 0)
        return false;
    const char *a = url + 7;
    size_t alen = strcspn(a, "/?#");
    if (alen == 0 || memchr(a, '@', alen))
        return false;
    const char *rest = a + alen;
    if (*rest != '\0' && *rest != '/')
        return false;
    *authority = mg_str_make(a, alen);
    *path = *rest ? mg_str_c(rest) : MG_STR_LIT("/");
    const char *hs = a, *he;
    const char *portp = NULL;
    bool v6 = false;
    if (*a == '[') {
        const char *rb = memchr(a, ']', alen);
        if (rb == NULL)
            return false;
        hs = a + 1;
        he = rb;
        v6 = true;
        if (rb + 1 < a + alen) {
            if (rb[1] != ':')
                return false;
            portp = rb + 2;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        he = colon ? colon : a + alen;
        portp = colon ? colon + 1 : NULL;
    }
    long port = 80;
    if (portp) {
        size_t pn = (size_t)(a + alen - portp);
        if (pn == 0 || pn > 5)
            return false;
        port = 0;
        for (size_t i = 0; i < pn; i++) {
            if (portp[i] < '0' || portp[i] > '9')
                return false;
            port = port * 10 + (portp[i] - '0');
        }
        if (port < 1 || port > 65535)
            return false;
    }
    char host[64];
    size_t hn = (size_t)(he - hs);
    if (hn == 0 || hn >= sizeof(host))
        return false;
    memcpy(host, hs, hn);
    host[hn] = '\0';
    memset(addr, 0, sizeof(*addr));
    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)addr;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return false;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *addrlen = sizeof(*s6);
        return true;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)addr;
    if (strcasecmp(host, "localhost") == 0)
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
        return false;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *addrlen = sizeof(*s4);
    return true;
}

/* ---------------------------------------------------------------- transfers */

static void xfer_fail_later(mg_h1_xfer *x, CURLcode result);

static void xfer_finish(mg_h1_xfer *x, CURLcode result, bool keep)
{
    mg_h1_pool *pool = x->pool;
    if (x->in_start) {
        xfer_fail_later(x, result);
        return;
    }
    x->finished = true;
    mg_timer_disarm(pool->loop, &x->kick);
    mg_timer_disarm(pool->loop, &x->deadline);
    h1_conn *c = x->c;
    x->c = NULL;
    if (c) {
        if (keep)
            pool_put(c);
        else
            conn_close(c, false);
    }
    x->done(x->sink.arg, result);   /* may free x */
}

/* Reports a failure from the loop rather than from inside the caller. */
static void xfer_fail_later(mg_h1_xfer *x, CURLcode result)
{
    x->has_pending = true;
    x->pending = result;
    mg_timer_arm(x->pool->loop, &x->kick, 0);
}

static uint32_t want_events(const mg_h1_xfer *x)
{
    if (x->c == NULL || x->paused)
        return 0;
    uint32_t ev = EPOLLIN;
    if (x->c->connecting || x->sent < x->head.len + x->body_len)
        ev |= EPOLLOUT;
    return ev;
}

static bool xfer_connect(mg_h1_xfer *x);
static bool xfer_send(mg_h1_xfer *x);

/* A pooled connection the server had already closed: the request cannot
 * have been processed (no response byte), so it goes once more on a fresh
 * connection, as curl does. True if it did (x stays alive: the send happens
 * from the loop, and a failed connect is reported from there too). */
static bool xfer_retry_fresh(mg_h1_xfer *x)
{
    if (!x->reused || x->retried || x->got_byte)
        return false;
    x->retried = true;
    if (x->c)
        conn_close(x->c, false);
    x->sent = 0;
    x->eof = false;
    mg_buf_reset(&x->rbuf);
    mg_h1_parser_init(&x->parser, false);
    xfer_connect(x);                 /* registers EPOLLOUT: the send follows */
    return true;
}

/* Runs the parser over rbuf. False if the transfer finished (x may be
 * freed by then). */
static bool xfer_process(mg_h1_xfer *x)
{
    size_t used = 0;
    mg_h1_prc rc = mg_h1_parse(&x->parser, x->rbuf.p ? x->rbuf.p : "", x->rbuf.len, x->eof, &used,
                               &x->sink);
    mg_buf_consume(&x->rbuf, used);
    switch (rc) {
    case MG_H1_AGAIN:
        return true;
    case MG_H1_PAUSED:
        x->paused = true;
        if (x->c)
            mg_loop_io_set(x->pool->loop, &x->c->io, 0);
        return true;
    case MG_H1_DONE: {
        bool keep = x->parser.keep_alive && x->rbuf.len == 0 && !x->eof &&
                    x->sent == x->head.len + x->body_len;
        xfer_finish(x, CURLE_OK, keep);
        return false;
    }
    case MG_H1_EWRITE:
        xfer_finish(x, CURLE_WRITE_ERROR, false);
        return false;
    case MG_H1_EHEAD:
        xfer_finish(x, CURLE_RECV_ERROR, false);
        return false;
    case MG_H1_EPROTO:
    default:
        if (!x->got_byte && x->eof) {
            if (xfer_retry_fresh(x))
                return true;
            xfer_finish(x, CURLE_GOT_NOTHING, false);
            return false;
        }
        xfer_finish(x, x->eof ? CURLE_PARTIAL_FILE : CURLE_WEIRD_SERVER_REPLY, false);
        return false;
    }
}

/* Writes what is left of the request. False if x finished or moved to a
 * fresh connection (the caller's connection is no longer x's). */
static bool xfer_send(mg_h1_xfer *x)
{
    size_t total = x->head.len + x->body_len;
    while (x->sent < total) {
        struct iovec iov[2];
        int n = 0;
        if (x->sent < x->head.len) {
            iov[n].iov_base = x->head.p + x->sent;
            iov[n++].iov_len = x->head.len - x->sent;
            if (x->body_len) {
                iov[n].iov_base = (void *)x->body;
                iov[n++].iov_len = x->body_len;
            }
        } else {
            size_t bo = x->sent - x->head.len;
            iov[n].iov_base = (void *)(x->body + bo);
            iov[n++].iov_len = x->body_len - bo;
        }
        ssize_t w = writev(x->c->io.fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (!xfer_retry_fresh(x))
                xfer_finish(x, CURLE_SEND_ERROR, false);
            return false;
        }
        x->sent += (size_t)w;
    }
    mg_loop_io_set(x->pool->loop, &x->c->io, want_events(x));
    return true;
}

/* Reads and parses until the socket is drained, the sink pauses or the
 * transfer ends; parsing after every read keeps rbuf to about one read. */
static void xfer_read(mg_h1_xfer *x)
{
    while (!x->eof && !x->paused) {
        if (mg_buf_reserve(&x->rbuf, H1_READ_CHUNK) != MG_OK) {
            xfer_finish(x, CURLE_OUT_OF_MEMORY, false);
            return;
        }
        size_t room = x->rbuf.cap - x->rbuf.len;
        ssize_t r = read(x->c->io.fd, x->rbuf.p + x->rbuf.len, room);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (!xfer_retry_fresh(x))
                xfer_finish(x, x->got_byte ? CURLE_RECV_ERROR : CURLE_GOT_NOTHING, false);
            return;
        }
        if (r == 0)
            x->eof = true;
        x->rbuf.len += (size_t)r;
        x->got_byte |= r > 0;
        if (!xfer_process(x) || (size_t)r < room)
            return;                  /* finished, or a short read drained the socket */
    }
}

static void conn_on_io(mg_io *io, uint32_t events)
{
    h1_conn *c = io->data;
    if (c->closed)
        return;                      /* closed earlier in this batch */
    mg_h1_xfer *x = c->x;
    if (x == NULL) {
        /* Idle: the server closed it (or sent bytes nobody asked for). */
        conn_close(c, false);
        return;
    }
    if (x->has_pending)
        return;                      /* a failure is being reported from the loop */
    if (c->connecting) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
            err = errno;
        if (err == 0 && !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
            xfer_finish(x, CURLE_COULDNT_CONNECT, false);
            return;
        }
        c->connecting = false;
        mg_timer_disarm(x->pool->loop, &x->deadline);
        if (x->timeout_ms) {
            uint64_t spent = mg_now_ms() - x->t0_ms;
            mg_timer_arm(x->pool->loop, &x->deadline, spent >= x->timeout_ms ? 0 : x->timeout_ms - spent);
        }
    }
    if (x->paused)
        return;
    if (x->sent < x->head.len + x->body_len) {
        if (!xfer_send(x))
            return;                  /* failed, or moved to a fresh connection */
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        xfer_read(x);
}

static void xfer_kick(mg_timer *t)
{
    mg_h1_xfer *x = t->data;
    if (x->has_pending) {
        x->has_pending = false;
        xfer_finish(x, x->pending, false);
        return;
    }
    if (x->paused || x->finished)
        return;
    if (xfer_process(x) && !x->paused && x->c)
        mg_loop_io_set(x->pool->loop, &x->c->io, want_events(x));
}

static void xfer_deadline(mg_timer *t)
{
    mg_h1_xfer *x = t->data;
    bool connecting = x->c && x->c->connecting;
    xfer_finish(x, connecting ? CURLE_COULDNT_CONNECT : CURLE_OPERATION_TIMEDOUT, false);
}

/* Opens a fresh connection for x. False if it failed (reported later). */
static bool xfer_connect(mg_h1_xfer *x)
{
    mg_h1_pool *pool = x->pool;
    x->reused = false;
    int fd = socket(x->host->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        xfer_fail_later(x, CURLE_COULDNT_CONNECT);
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    h1_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        xfer_fail_later(x, CURLE_OUT_OF_MEMORY);
        return false;
    }
    c->io.fd = fd;
    c->io.cb = conn_on_io;
    c->io.data = c;
    c->pool = pool;
    c->host = x->host;
    c->x = x;
    mg_timer_init(&c->idle_timer, conn_idle_timeout, c);
    x->c = c;
    int r = connect(fd, (const struct sockaddr *)&x->host->addr, x->host->addrlen);
    if (r != 0 && errno != EINPROGRESS) {
        conn_close(c, false);
        xfer_fail_later(x, CURLE_COULDNT_CONNECT);
        return false;
    }
    c->connecting = r != 0;
    mg_timer_disarm(pool->loop, &x->deadline);
    uint32_t limit = c->connecting ? x->connect_timeout_ms : x->timeout_ms;
    if (c->connecting && x->timeout_ms && x->timeout_ms < limit)
        limit = x->timeout_ms;
    if (limit) {
        uint64_t spent = mg_now_ms() - x->t0_ms;
        mg_timer_arm(pool->loop, &x->deadline, spent >= limit ? 0 : limit - spent);
    }
    if (mg_loop_io_set(pool->loop, &c->io, want_events(x)) != MG_OK) {
        conn_close(c, false);
        xfer_fail_later(x, CURLE_COULDNT_CONNECT);
        return false;
    }
    return true;
}

/* "Name:" with nothing after it is curl's "remove this header". */
static bool curl_removal(const char *h)
{
    const char *colon = strchr(h, ':');
    if (colon == NULL)
        return false;
    for (const char *v = colon + 1; *v; v++)
        if (*v != ' ' && *v != '\t')
            return false;
    return true;
}

static mg_rc build_head(mg_h1_xfer *x, const mg_h1_request *r, mg_str authority, mg_str path)
{
    mg_buf *b = &x->head;
    bool own_host = false;
    for (const struct curl_slist *h = r->headers; h; h = h->next)
        if (strncasecmp(h->data, "host:", 5) == 0 && !curl_removal(h->data))
            own_host = true;
    mg_rc rc = mg_buf_reserve(b, 256 + path.n);
    if (rc == MG_OK) {
        mg_buf_append_str(b, r->method);
        mg_buf_append(b, " ", 1);
        mg_buf_append(b, path.p, path.n);
        mg_buf_append_str(b, " HTTP/1.1\r\n");
        if (!own_host) {
            mg_buf_append_str(b, "Host: ");
            mg_buf_append(b, authority.p, authority.n);
            mg_buf_append(b, "\r\n", 2);
        }
    }
    for (const struct curl_slist *h = r->headers; rc == MG_OK && h; h = h->next) {
        const char *d = h->data;
        size_t n = strlen(d);
        if (curl_removal(d))
            continue;
        if (n && d[n - 1] == ';' && strchr(d, ':') == NULL) {   /* "Name;" = empty value */
            rc = mg_buf_append(b, d, n - 1);
            if (rc == MG_OK)
                rc = mg_buf_append(b, ":\r\n", 3);
            continue;
        }
        if (strcspn(d, "\r\n") != n)
            return MG_ERR;           /* no header injection through a value */
        rc = mg_buf_append(b, d, n);
        if (rc == MG_OK)
            rc = mg_buf_append(b, "\r\n", 2);
    }
    if (rc == MG_OK && strcmp(r->method, "GET") != 0)
        rc = mg_buf_printf(b, "Content-Length: %zu\r\n", r->body_len);
    if (rc == MG_OK)
        rc = mg_buf_append(b, "\r\n", 2);
    return rc;
}

mg_h1_xfer *mg_h1_start(mg_h1_pool *pool, const mg_h1_request *r, const mg_h1_sink *sink,
                        mg_h1_done_cb done)
{
    struct sockaddr_storage addr;
    socklen_t alen = 0;
    mg_str authority, path;
    if (!mg_h1_eligible_url(r->url, &addr, &alen, &authority, &path))
        return NULL;
    mg_h1_xfer *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->pool = pool;
    x->sink = *sink;
    x->done = done;
    x->body = r->body_len ? r->body : "";
    x->body_len = r->body_len;
    x->connect_timeout_ms = r->connect_timeout_ms;
    x->timeout_ms = r->timeout_ms;
    x->t0_ms = mg_now_ms();
    mg_timer_init(&x->kick, xfer_kick, x);
    mg_timer_init(&x->deadline, xfer_deadline, x);
    mg_h1_parser_init(&x->parser, false);
    x->host = host_get(pool, &addr, alen);
    if (x->host == NULL || build_head(x, r, authority, path) != MG_OK) {
        mg_buf_free(&x->head);
        free(x);
        return NULL;
    }
    x->in_start = true;
    h1_conn *c = x->host->idle;
    if (c) {
        idle_unlink(c);
        c->x = x;
        x->c = c;
        x->reused = true;
        if (x->timeout_ms)
            mg_timer_arm(pool->loop, &x->deadline, x->timeout_ms);
        xfer_send(x);                /* usually the whole request in one writev */
    } else if (xfer_connect(x) && !x->c->connecting) {
        xfer_send(x);
    }
    x->in_start = false;
    return x;
}

void mg_h1_resume(mg_h1_xfer *x)
{
    if (x == NULL || !x->paused || x->finished)
        return;
    x->paused = false;
    /* From the loop: delivering now could finish the transfer inside the
     * caller's own callback. */
    mg_timer_arm(x->pool->loop, &x->kick, 0);
}

void mg_h1_free(mg_h1_xfer *x)
{
    if (x == NULL)
        return;
    mg_timer_disarm(x->pool->loop, &x->kick);
    mg_timer_disarm(x->pool->loop, &x->deadline);
    if (x->c)
        conn_close(x->c, false);     /* mid-exchange: the connection state is unknown */
    mg_buf_free(&x->head);
    mg_buf_free(&x->rbuf);
    free(x);
}
