/* modelgate — workers, listeners, TLS and client connections.
 *
 * Connection life:  accept -> [TLS handshake] -> HEAD -> [BODY] -> BUSY
 *                   -> (response queued) -> HEAD (keep-alive) ... -> close
 * A connection reads only while it waits for a request; while a request is
 * being served it watches for the peer hanging up (EPOLLRDHUP) and writes.
 * Every entry point (I/O event, timer, upstream completion) ends with
 * conn_settle(), the one place that closes a dead connection or updates its
 * epoll interest, so no callback ever frees a connection under a caller.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "server.h"

#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "router.h"
#include "jobs.h"
#include "usage/usage.h"
#include "policy/store_int.h"
#include "auth/auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

enum conn_state { C_HANDSHAKE, C_HEAD, C_BODY, C_BUSY, C_LINGER };

struct mg_conn {
    mg_io io;
    mg_worker *w;
    mg_conn *prev, *next;
    SSL *ssl;
    mg_snapshot *snap;             /* snapshot at accept time (limits, TLS) */
    enum conn_state state;
    bool dead;                     /* close at the next settle */
    bool closed;
    bool in_process;               /* conn_process is on the stack */
    bool close_after_write;
    bool peer_shut;                /* peer half-closed (EPOLLRDHUP / EOF) */
    bool ops;                      /* accepted on a `serve: ops` listener */
    bool ssl_want_write;           /* TLS needs the socket writable to go on */
    bool ssl_want_read;
    bool head_timer_armed;
    bool busy_quiet;               /* stopped watching EPOLLIN while busy */
    mg_buf in;
    mg_buf out;
    size_t out_off;
    mg_timer timer;                /* handshake / idle / head / body / linger */
    mg_timer wtimer;               /* client makes no progress reading */
    mg_req *req;
    mg_http_request *http;         /* head of the current request (pool) */
    size_t head_len;
    size_t raw_len;                /* head + body bytes as received */
    mg_http_chunked chunked;
    size_t chunked_in;             /* body bytes fed to the decoder so far */
    mg_buf chunked_body;
    bool sent_continue;
    void (*drain_hook)(mg_req *);
    mg_req *drain_req;
    struct sockaddr_storage peer;
    char peer_ip[INET6_ADDRSTRLEN];
    unsigned nrequests;
};

static mg_worker *g_workers;
static mg_job_pool *g_admin_jobs;  /* admin API calls and usage reports */
static size_t g_nworkers;
static atomic_size_t g_open_conns;
/* Connections of `serve: ops` listeners count apart, with a cap of their
 * own, so a flood that fills max_connections never shuts out the health
 * checks and the metrics scraper. */
#define OPS_MAX_CONNECTIONS 256
static atomic_size_t g_open_ops_conns;
static atomic_bool g_draining;

static void conn_settle(mg_conn *c);
static void conn_process(mg_conn *c);
static void conn_free_request(mg_conn *c);
static void conn_on_io(mg_io *io, uint32_t events);

size_t mg_server_open_connections(void) { return atomic_load(&g_open_conns); }
mg_worker *mg_server_worker(size_t i) { return i < g_nworkers ? &g_workers[i] : NULL; }
size_t mg_server_nworkers(void) { return g_nworkers; }
bool mg_server_draining(void) { return atomic_load(&g_draining); }
mg_job_pool *mg_server_admin_jobs(void) { return g_admin_jobs; }

/* ---------------------------------------------------------------- I/O */

/* Returns bytes read, 0 on EOF, -1 on would-block, -2 on error. */
static ssize_t conn_recv(mg_conn *c, char *buf, size_t len)
{
    if (c->ssl) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, (int)len);
        if (n > 0)
            return n;
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ)
            return -1;
        if (err == SSL_ERROR_WANT_WRITE) {
            c->ssl_want_write = true;
            return -1;
        }
        if (err == SSL_ERROR_ZERO_RETURN)
            return 0;
        return -2;
    }
    for (;;) {
        ssize_t n = recv(c->io.fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    }
}

static ssize_t conn_xmit(mg_conn *c, const char *buf, size_t len)
{
    if (c->ssl) {
        ERR_clear_error();
        int n = SSL_write(c->ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len));
        if (n > 0)
            return n;
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_WRITE)
            return -1;
        if (err == SSL_ERROR_WANT_READ) {
            c->ssl_want_read = true;
            return -1;
        }
        return -2;
    }
    for (;;) {
        ssize_t n = send(c->io.fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    }
}

size_t mg_conn_pending(const mg_conn *c) { return c->out.len - c->out_off; }

static void conn_flush(mg_conn *c)
{
    bool progress = false;
    while (c->out_off < c->out.len && !c->dead) {
        ssize_t n = conn_xmit(c, c->out.p + c->out_off, c->out.len - c->out_off);
        if (n == -1)
            break;
        if (n < 0) {
            c->dead = true;
            break;
        }
        c->out_off += (size_t)n;
        progress = true;
        mg_metrics_bytes_out(c->w->metrics, (uint64_t)n);
    }
    if (c->out_off == c->out.len) {
        c->out_off = 0;
        c->out.len = 0;
        if (c->out.cap > 64 * 1024)
            mg_buf_free(&c->out);
        mg_timer_disarm(c->w->loop, &c->wtimer);
    } else if (progress || !mg_timer_armed(&c->wtimer)) {
        mg_timer_arm(c->w->loop, &c->wtimer, c->snap->cfg->limits.write_timeout_ms);
    }
    if (progress && c->drain_hook && mg_conn_pending(c) < MG_OUT_LOW_WATER) {
        void (*fn)(mg_req *) = c->drain_hook;
        mg_req *r = c->drain_req;
        fn(r);
    }
}

void mg_conn_send(mg_conn *c, const char *p, size_t n)
{
    if (c->dead)
        return;
    if (c->req)
        c->req->bytes_out += n;   /* queued for the client, counted once */
    if (mg_buf_append(&c->out, p, n) != MG_OK) {
        mg_log_error("out of memory queueing %zu bytes for a client", n);
        c->dead = true;
    }
}

void mg_conn_set_drain_hook(mg_conn *c, void (*fn)(mg_req *), mg_req *req)
{
    c->drain_hook = fn;
    c->drain_req = req;
}

bool mg_conn_ops(const mg_conn *c) { return c->ops; }

bool mg_conn_peer_trusted(const mg_conn *c)
{
    const mg_config *cfg = c->snap->cfg;
    for (size_t i = 0; i < cfg->ntrusted_proxies; i++)
        if (mg_cidr_match(&cfg->trusted_proxies[i], (const struct sockaddr *)&c->peer))
            return true;
    return false;
}

/* ---------------------------------------------------------------- life */

static void conn_timeout(mg_timer *t)
{
    mg_conn *c = t->data;
    switch (c->state) {
    case C_HEAD:
        if (c->in.len > 0 && c->req == NULL) {
            /* A head that never completes (slowloris): say so, then close. */
            mg_router_fail(c, c->snap, 408, "request head not received in time");
        } else {
            c->dead = true;
        }
        break;
    case C_BODY:
        conn_free_request(c);
        mg_router_fail(c, c->snap, 408, "request body not received in time");
        break;
    default:
        c->dead = true;
        break;
    }
    conn_settle(c);
}

static void conn_wtimeout(mg_timer *t)
{
    mg_conn *c = t->data;
    /* The client stopped reading what we send: give up on it. */
    c->dead = true;
    conn_settle(c);
}

static void conn_free_request(mg_conn *c)
{
    mg_req *req = c->req;
    if (req == NULL)
        return;
    c->req = NULL;
    c->drain_hook = NULL;
    c->drain_req = NULL;
    mg_router_request_free(req);
    c->http = NULL;
    mg_buf_free(&c->chunked_body);
}

static void conn_close(mg_conn *c)
{
    mg_worker *w = c->w;
    c->closed = true;
    c->dead = true;
    if (c->req) {
        c->req->client_gone = true;
        mg_router_request_abort(c->req);
        conn_free_request(c);
    }
    mg_timer_disarm(w->loop, &c->timer);
    mg_timer_disarm(w->loop, &c->wtimer);
    mg_loop_io_set(w->loop, &c->io, 0);
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    close(c->io.fd);
    mg_buf_free(&c->in);
    mg_buf_free(&c->out);
    mg_snapshot_unref(c->snap);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    atomic_fetch_sub(c->ops ? &g_open_ops_conns : &g_open_conns, 1);
    mg_metrics_conn_closed(w->metrics);
    mg_loop_defer_free(w->loop, c);
    if (w->draining && w->nconns == 0)
        mg_loop_stop(w->loop);
}

static void conn_start_linger(mg_conn *c)
{
    /* Half-close and read what the client still sends (its unread body) for
     * a moment: closing with unread data makes the kernel send RST, which can
     * destroy the error response before the client reads it. */
    if (c->ssl) {
        SSL_shutdown(c->ssl);
    }
    shutdown(c->io.fd, SHUT_WR);
    c->state = C_LINGER;
    mg_timer_arm(c->w->loop, &c->timer, 2000);
}

static void conn_settle(mg_conn *c)
{
    if (c->in_process || c->closed)
        return;
    if (!c->dead && mg_conn_pending(c) > 0)
        conn_flush(c);
    if (!c->dead && c->close_after_write && mg_conn_pending(c) == 0 && c->req == NULL &&
        c->state != C_LINGER)
        conn_start_linger(c);
    if (c->dead) {
        conn_close(c);
        return;
    }
    uint32_t ev = 0;
    switch (c->state) {
    case C_HANDSHAKE:
        ev = c->ssl_want_write ? EPOLLOUT : EPOLLIN;
        break;
    case C_HEAD:
    case C_BODY:
        ev = EPOLLIN | EPOLLRDHUP;
        break;
    case C_BUSY:
        /* Keep the HEAD mask while busy (saves two epoll_ctl per request);
         * only if the client sends ahead (pipelining) do we stop watching
         * EPOLLIN, since level-triggered epoll would report it forever. A
         * half-close is likewise reported once. */
        ev = c->peer_shut ? 0 : c->busy_quiet ? EPOLLRDHUP : EPOLLIN | EPOLLRDHUP;
        break;
    case C_LINGER:
        ev = EPOLLIN;
        break;
    }
    if (mg_conn_pending(c) > 0)
        ev = (ev & ~(uint32_t)EPOLLIN) | EPOLLOUT | (c->ssl_want_read ? EPOLLIN : 0);
    if (c->ssl_want_write)
        ev |= EPOLLOUT;
    if (mg_loop_io_set(c->w->loop, &c->io, ev) != MG_OK) {
        c->dead = true;
        conn_close(c);
    }
}

/* The request on c has queued its whole response. */
void mg_conn_request_finished(mg_conn *c)
{
    mg_req *req = c->req;
    if (req == NULL)
        return;
    bool keep = c->http->keep_alive && !c->w->draining && !c->close_after_write && !c->peer_shut;
    size_t raw = c->raw_len;
    conn_free_request(c);
    mg_buf_consume(&c->in, raw);
    c->raw_len = 0;
    c->head_len = 0;
    c->sent_continue = false;
    c->busy_quiet = false;
    if (!keep) {
        c->close_after_write = true;
        c->state = C_HEAD;
        conn_settle(c);
        return;
    }
    c->state = C_HEAD;
    c->head_timer_armed = false;
    mg_timer_arm(c->w->loop, &c->timer, c->snap->cfg->limits.idle_timeout_ms);
    if (c->in.len == 0)
        mg_buf_free(&c->in);   /* idle keep-alive connections hold no buffer */
    if (!c->in_process) {
        /* Completed asynchronously: serve whatever is already pipelined. */
        conn_process(c);
        if (!c->dead && c->ssl && SSL_pending(c->ssl) > 0)
            conn_on_io(&c->io, EPOLLIN);
        else
            conn_settle(c);
    }
}

/* Parses and dispatches as many complete requests as the buffer holds. */
static void conn_process(mg_conn *c)
{
    const mg_cfg_limits *lim = &c->snap->cfg->limits;
    mg_http_limits hl = {lim->max_request_line, lim->max_header_bytes, lim->max_headers,
                         lim->max_body};
    c->in_process = true;
    while (!c->dead && !c->close_after_write && (c->state == C_HEAD || c->state == C_BODY)) {
        if (c->state == C_HEAD) {
            if (c->in.len == 0)
                break;
            if (!c->head_timer_armed) {
                mg_timer_arm(c->w->loop, &c->timer, lim->header_timeout_ms);
                c->head_timer_armed = true;
            }
            mg_http_request *h = mg_router_scratch_head(c->w);
            int r = mg_http_parse_request(c->in.p, c->in.len, &hl, h);
            if (r == MG_HTTP_INCOMPLETE)
                break;
            if (r == MG_HTTP_ERROR) {
                mg_router_fail(c, c->snap, h->error_status, h->error_reason);
                break;
            }
            c->req = mg_router_request_new(c->w, c, c->snap, h, c->in.p, (size_t)r);
            if (c->req == NULL) {
                mg_router_fail(c, c->snap, 503, "out of memory");
                break;
            }
            c->http = (mg_http_request *)c->req->http;
            c->head_len = (size_t)r;
            c->state = C_BODY;
            c->chunked_in = 0;
            mg_http_chunked_init(&c->chunked);
            mg_timer_arm(c->w->loop, &c->timer, lim->body_timeout_ms);
        }
        /* C_BODY */
        const mg_http_request *h = c->http;
        const char *body_start = c->in.p + c->head_len;
        size_t avail = c->in.len - c->head_len;
        if (h->chunked) {
            size_t used = 0;
            mg_rc rc = mg_http_chunked_feed(&c->chunked, body_start + c->chunked_in,
                                            avail - c->chunked_in, &used, &c->chunked_body,
                                            lim->max_body);
            c->chunked_in += used;
            if (rc == MG_ERR) {
                conn_free_request(c);
                mg_router_fail(c, c->snap, c->chunked.error_status, c->chunked.error_reason);
                break;
            }
            if (rc == MG_AGAIN) {
                if (h->expect_continue && !c->sent_continue) {
                    mg_conn_send(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
                    c->sent_continue = true;
                }
                break;
            }
            c->raw_len = c->head_len + c->chunked_in;
            c->req->body = mg_str_make(c->chunked_body.p ? c->chunked_body.p : "",
                                       c->chunked_body.len);
        } else {
            size_t cl = h->content_length > 0 ? (size_t)h->content_length : 0;
            if (avail < cl) {
                if (h->expect_continue && !c->sent_continue) {
                    mg_conn_send(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
                    c->sent_continue = true;
                }
                break;
            }
            c->raw_len = c->head_len + cl;
            c->req->body = mg_str_make(body_start, cl);
        }
        c->req->bytes_in = c->raw_len;
        mg_metrics_bytes_in(c->w->metrics, c->raw_len);
        c->state = C_BUSY;
        c->nrequests++;
        mg_timer_disarm(c->w->loop, &c->timer);
        mg_router_dispatch(c->req);
        /* The request may have finished synchronously (state back to HEAD). */
    }
    c->in_process = false;
}

static void conn_do_handshake(mg_conn *c)
{
    ERR_clear_error();
    c->ssl_want_write = false;
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->state = C_HEAD;
        mg_timer_arm(c->w->loop, &c->timer, c->snap->cfg->limits.idle_timeout_ms);
        return;
    }
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ)
        return;
    if (err == SSL_ERROR_WANT_WRITE) {
        c->ssl_want_write = true;
        return;
    }
    unsigned long e = ERR_peek_error();
    mg_log_debug("TLS handshake with %s failed: %s", c->peer_ip,
                 e ? ERR_reason_error_string(e) : "connection closed");
    mg_metrics_tls_failure(c->w->metrics);
    c->dead = true;
}

static void conn_do_read(mg_conn *c)
{
    char buf[16384];
    const mg_cfg_limits *lim = &c->snap->cfg->limits;
    size_t cap = lim->max_header_bytes + lim->max_body + 65536;
    for (;;) {
        if (c->state == C_LINGER) {
            ssize_t n = conn_recv(c, buf, sizeof(buf));
            if (n == -1)
                return;
            if (n <= 0) {
                c->dead = true;
                return;
            }
            continue;
        }
        if (c->state != C_HEAD && c->state != C_BODY)
            return;
        if (c->in.len >= cap) {
            /* Unreachable with sane limits (the parser answers first), but
             * never spin on a socket we refuse to read. */
            conn_free_request(c);
            mg_router_fail(c, c->snap, 413, "request too large");
            return;
        }
        ssize_t n = conn_recv(c, buf, sizeof(buf));
        if (n == -1)
            return;
        if (n == 0 || n == -2) {
            /* Peer closed. A partial request is lost with it; nothing to answer. */
            c->dead = true;
            return;
        }
        if (mg_buf_append(&c->in, buf, (size_t)n) != MG_OK) {
            c->dead = true;
            return;
        }
        conn_process(c);
        if (c->dead || c->close_after_write)
            return;
    }
}

static void conn_on_io(mg_io *io, uint32_t events)
{
    mg_conn *c = io->data;
    if (c->dead)
        return;
    if (c->state == C_HANDSHAKE) {
        conn_do_handshake(c);
        if (!c->dead && c->state == C_HEAD)
            conn_do_read(c);
        conn_settle(c);
        return;
    }
    if (events & EPOLLOUT) {
        c->ssl_want_write = false;
        conn_flush(c);
    }
    if (c->dead) {
        conn_settle(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        c->ssl_want_read = false;
        if (c->state == C_BUSY) {
            if (events & (EPOLLERR | EPOLLHUP))
                c->dead = true;
            else if (mg_conn_pending(c) > 0)
                conn_flush(c);
            if (events & EPOLLIN)
                c->busy_quiet = true;
        } else {
            conn_do_read(c);
        }
    }
    if ((events & EPOLLRDHUP) && c->state == C_BUSY && !c->dead) {
        /* The client hung up while we serve it. A streaming client never
         * half-closes, so treat a stream as abandoned; a plain request may
         * still be answered to a half-closed socket. */
        c->peer_shut = true;
        if (c->req && c->req->stream)
            c->dead = true;
    }
    conn_settle(c);
}

static void conn_accept(mg_listener *l, int fd, const struct sockaddr_storage *ss)
{
    mg_worker *w = l->worker;
    mg_snapshot *snap = w->snap;
    bool ops = l->index < snap->cfg->nlisten && snap->cfg->listen[l->index].ops;
    if ((ops ? atomic_load(&g_open_ops_conns) >= OPS_MAX_CONNECTIONS
             : atomic_load(&g_open_conns) >= snap->cfg->limits.max_connections) || w->draining) {
        mg_metrics_conn_refused(w->metrics);
        close(fd);
        return;
    }
    mg_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->io.fd = fd;
    c->io.cb = conn_on_io;
    c->io.data = c;
    c->w = w;
    c->snap = mg_snapshot_ref(snap);
    c->peer = *ss;
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, c->peer_ip, sizeof(c->peer_ip));
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, c->peer_ip, sizeof(c->peer_ip));
    mg_timer_init(&c->timer, conn_timeout, c);
    mg_timer_init(&c->wtimer, conn_wtimeout, c);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    c->ops = ops;
    atomic_fetch_add(ops ? &g_open_ops_conns : &g_open_conns, 1);
    mg_metrics_conn_opened(w->metrics);
    if (l->tls && snap->tls[l->index]) {
        c->ssl = SSL_new(snap->tls[l->index]);
        if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
            c->dead = true;
            conn_settle(c);
            return;
        }
        SSL_set_accept_state(c->ssl);
        c->state = C_HANDSHAKE;
        mg_timer_arm(w->loop, &c->timer, snap->cfg->limits.tls_handshake_timeout_ms);
    } else {
        c->state = C_HEAD;
        mg_timer_arm(w->loop, &c->timer, snap->cfg->limits.idle_timeout_ms);
    }
    conn_settle(c);
}

const char *mg_conn_peer_ip(const mg_conn *c) { return c->peer_ip; }
mg_worker *mg_conn_worker(const mg_conn *c) { return c->w; }
bool mg_conn_is_tls(const mg_conn *c) { return c->ssl != NULL; }
void mg_conn_close_after_write(mg_conn *c) { c->close_after_write = true; }
bool mg_conn_will_close(const mg_conn *c) { return c->close_after_write || c->w->draining; }
bool mg_conn_is_head_request(const mg_conn *c) { return c->http && c->http->method == MG_HTTP_HEAD; }

static void listener_on_io(mg_io *io, uint32_t events)
{
    mg_listener *l = io->data;
    MG_UNUSED(events);
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                mg_log_warn("accept: %s", strerror(errno));
            return;
        }
        conn_accept(l, fd, &ss);
    }
}

/* ---------------------------------------------------------------- workers */

static int listen_socket(const mg_cfg_listen *lc)
{
    int fd = socket(lc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (lc->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&lc->addr, lc->addrlen) != 0 || listen(fd, 4096) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

typedef struct mg_post {
    struct mg_post *next;
    void (*fn)(void *);
    void *arg;
} mg_post;

mg_rc mg_worker_post(mg_worker *w, void (*fn)(void *), void *arg)
{
    mg_post *p = malloc(sizeof(*p));
    if (p == NULL)
        return MG_ENOMEM;
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&w->mu);
    *w->posts_tail = p;
    w->posts_tail = &p->next;
    pthread_mutex_unlock(&w->mu);
    mg_loop_wake(w->loop);
    return MG_OK;
}

static void worker_apply_mailbox(void *arg)
{
    mg_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    mg_snapshot *snap = w->pending_snap;
    w->pending_snap = NULL;
    bool drain = w->drain_requested, stop = w->stop_requested;
    mg_post *posts = w->posts;
    w->posts = NULL;
    w->posts_tail = &w->posts;
    pthread_mutex_unlock(&w->mu);

    while (posts) {
        mg_post *next = posts->next;
        posts->fn(posts->arg);
        free(posts);
        posts = next;
    }

    if (snap) {
        mg_snapshot_unref(w->snap);
        w->snap = snap;
    }
    if ((drain || stop) && !w->draining) {
        w->draining = true;
        for (size_t i = 0; i < w->nlisteners; i++) {
            mg_loop_io_set(w->loop, &w->listeners[i].io, 0);
            close(w->listeners[i].io.fd);
        }
        w->nlisteners = 0;
        /* Idle keep-alive connections go now; busy ones close after their
         * current response (keep-alive is off while draining). */
        for (mg_conn *c = w->conns, *next; c; c = next) {
            next = c->next;
            if (c->req == NULL && c->in.len == 0 && mg_conn_pending(c) == 0) {
                c->dead = true;
                conn_settle(c);
            }
        }
    }
    if (stop) {
        for (mg_conn *c = w->conns, *next; c; c = next) {
            next = c->next;
            c->dead = true;
            conn_settle(c);
        }
    }
    if (w->draining && w->nconns == 0)
        mg_loop_stop(w->loop);
}

void mg_conn_kick(mg_conn *c) { conn_settle(c); }

static void worker_idle(void *arg)
{
    mg_proxy_flush_dirty(arg);
    mg_access_log_flush();
}

static void *worker_main(void *arg)
{
    mg_worker *w = arg;
    mg_loop_run(w->loop, worker_idle, worker_apply_mailbox, w);
    mg_access_log_thread_done();
    return NULL;
}

static mg_rc worker_init(mg_worker *w, int id, mg_snapshot *snap)
{
    w->id = id;
    pthread_mutex_init(&w->mu, NULL);
    w->posts = NULL;
    w->posts_tail = &w->posts;
    w->loop = mg_loop_new();
    w->snap = mg_snapshot_ref(snap);
    w->metrics = mg_metrics_new();
    if (getrandom(w->rng, sizeof(w->rng), 0) != (ssize_t)sizeof(w->rng))
        w->rng[0] = mg_now_us() ^ (uint64_t)id, w->rng[1] = 0x9e3779b97f4a7c15ull;
    if (w->loop == NULL || w->metrics == NULL)
        return MG_ENOMEM;
    const mg_config *cfg = snap->cfg;
    w->listeners = calloc(cfg->nlisten, sizeof(*w->listeners));
    if (w->listeners == NULL)
        return MG_ENOMEM;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        mg_listener *l = &w->listeners[i];
        l->io.fd = listen_socket(&cfg->listen[i]);
        if (l->io.fd < 0) {
            mg_log_error("cannot listen on %s: %s", cfg->listen[i].address, strerror(errno));
            return MG_ERR;
        }
        w->nlisteners++;
        l->io.cb = listener_on_io;
        l->io.data = l;
        l->worker = w;
        l->index = i;
        l->tls = cfg->listen[i].tls_cert != NULL;
        if (mg_loop_io_set(w->loop, &l->io, EPOLLIN) != MG_OK)
            return MG_ERR;
    }
    return mg_proxy_worker_init(w);
}

static void worker_free(mg_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        close(w->listeners[i].io.fd);
    free(w->listeners);
    mg_proxy_worker_free(w);
    mg_metrics_free(w->metrics);
    mg_snapshot_unref(w->snap);
    mg_snapshot_unref(w->pending_snap);
    while (w->posts) {   /* completions that came after the loop stopped */
        mg_post *next = w->posts->next;
        w->posts->fn(w->posts->arg);   /* their requests are gone: they just clean up */
        free(w->posts);
        w->posts = next;
    }
    mg_loop_free(w->loop);
    pthread_mutex_destroy(&w->mu);
}

static void workers_post(mg_snapshot *snap, bool drain, bool stop)
{
    for (size_t i = 0; i < g_nworkers; i++) {
        mg_worker *w = &g_workers[i];
        pthread_mutex_lock(&w->mu);
        if (snap) {
            mg_snapshot_unref(w->pending_snap);
            w->pending_snap = mg_snapshot_ref(snap);
        }
        w->drain_requested |= drain;
        w->stop_requested |= stop;
        pthread_mutex_unlock(&w->mu);
        mg_loop_wake(w->loop);
    }
}

static bool listeners_equal(const mg_config *a, const mg_config *b)
{
    if (a->nlisten != b->nlisten)
        return false;
    for (size_t i = 0; i < a->nlisten; i++) {
        if (a->listen[i].addrlen != b->listen[i].addrlen ||
            memcmp(&a->listen[i].addr, &b->listen[i].addr, a->listen[i].addrlen) != 0 ||
            (a->listen[i].tls_cert == NULL) != (b->listen[i].tls_cert == NULL))
            return false;
    }
    return true;
}

static mg_snapshot *reload(const char *cfg_path, mg_snapshot *cur)
{
    mg_buf errs = {0};
    mg_config *cfg = mg_config_load(cfg_path, &errs);
    mg_snapshot *snap = cfg ? mg_snapshot_build(cfg, &errs) : NULL;
    if (snap == NULL) {
        if (cfg)
            mg_config_free(cfg);
        mg_log_error("reload failed, keeping generation %llu: %.*s",
                     (unsigned long long)cur->generation, (int)errs.len, errs.p ? errs.p : "");
        mg_buf_free(&errs);
        return NULL;
    }
    mg_buf_free(&errs);
    snap->generation = cur->generation + 1;
    if (!listeners_equal(cur->cfg, snap->cfg))
        mg_log_warn("reload: listen addresses changed; they take effect on restart "
                    "(certificates and everything else apply now)");
    return snap;
}

static void apply_logging(const mg_config *cfg)
{
    mg_log_level lvl = MG_LOG_INFO;
    if (cfg->log.level && mg_log_level_parse(cfg->log.level, &lvl) == MG_OK)
        mg_log_set_level(lvl);
    mg_access_log_open(cfg->log.access_log);
}

int mg_server_run(const char *cfg_path, mg_snapshot *snap)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);   /* inherited by the workers */
    signal(SIGPIPE, SIG_IGN);
    apply_logging(snap->cfg);

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    g_nworkers = snap->cfg->workers > 0 ? (size_t)snap->cfg->workers : (size_t)(ncpu > 0 ? ncpu : 1);
    g_workers = calloc(g_nworkers, sizeof(*g_workers));
    g_admin_jobs = mg_job_pool_new("admin", 4, 256, NULL);
    if (g_workers == NULL || g_admin_jobs == NULL) {
        free(g_workers);
        mg_job_pool_free(g_admin_jobs);
        return 2;
    }
    int rc = 0;
    bool ledger = snap->cfg->journal_dir != NULL;
    if (ledger) {
        mg_buf errs = {0};
        mg_usage_set_audit(mg_policy_audit_append);   /* price changes join the audit chain */
        if (mg_usage_start(snap->cfg, g_nworkers, &errs) != MG_OK) {
            mg_log_error("usage ledger: %.*s", (int)errs.len, errs.p ? errs.p : "cannot start");
            rc = 2;
            ledger = false;
        }
        mg_buf_free(&errs);
    }
    for (size_t i = 0; rc == 0 && i < g_nworkers; i++) {
        if (worker_init(&g_workers[i], (int)i, snap) != MG_OK) {
            rc = 2;
            break;
        }
    }
    size_t started = 0;
    if (rc == 0) {
        for (; started < g_nworkers; started++)
            if (pthread_create(&g_workers[started].thread, NULL, worker_main, &g_workers[started]) != 0) {
                rc = 2;
                break;
            }
    }
    if (rc == 0) {
        mg_log_info("modelgate %s serving: %zu listener(s), %zu worker(s), %zu model(s), generation %llu",
                    MG_VERSION, snap->cfg->nlisten, g_nworkers, snap->cfg->nmodels,
                    (unsigned long long)snap->generation);
        for (;;) {
            int sig = 0;
            if (sigwait(&set, &sig) != 0)
                continue;
            if (sig == SIGHUP) {
                mg_snapshot *next = reload(cfg_path, snap);
                if (next) {
                    mg_buf aerrs = {0};
                    /* Blocking IdP metadata fetch: this thread, never a worker loop. */
                    if (mg_auth_reload(next->cfg, &aerrs) != MG_OK || aerrs.len)
                        mg_log_warn("reload: identity provider: %.*s", (int)aerrs.len, aerrs.p ? aerrs.p : "");
                    mg_buf_free(&aerrs);
                    apply_logging(next->cfg);
                    /* New prices are in force from now: the ledger records them. */
                    struct timespec wall;
                    clock_gettime(CLOCK_REALTIME, &wall);
                    mg_usage_prices_update(next->cfg, next->generation,
                                           (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000);
                    workers_post(next, false, false);
                    mg_snapshot_unref(snap);
                    snap = next;
                    mg_log_info("configuration reloaded: generation %llu",
                                (unsigned long long)snap->generation);
                }
                continue;
            }
            break;
        }
        mg_log_info("draining: no new connections; in-flight requests have %u ms",
                    snap->cfg->limits.drain_timeout_ms);
        atomic_store(&g_draining, true);
        workers_post(NULL, true, false);
    } else {
        workers_post(NULL, true, true);
    }
    /* Wait for the workers to empty, up to the drain deadline, then stop
     * whatever is left (those requests are cut and recorded as such). */
    uint64_t deadline = mg_now_ms() + snap->cfg->limits.drain_timeout_ms;
    for (size_t i = 0; i < started; i++) {
        for (;;) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t now = mg_now_ms();
            uint64_t left = deadline > now ? deadline - now : 0;
            ts.tv_sec += (time_t)(left / 1000);
            ts.tv_nsec += (long)(left % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            if (pthread_timedjoin_np(g_workers[i].thread, NULL, &ts) == 0)
                break;
            mg_log_warn("drain deadline reached; closing remaining connections");
            workers_post(NULL, true, true);
            pthread_join(g_workers[i].thread, NULL);
            break;
        }
    }
    /* Blocking jobs finish first; their completions land in the mailboxes,
     * which worker_free runs (their requests are gone, so they clean up). */
    mg_job_pool_free(g_admin_jobs);
    g_admin_jobs = NULL;
    for (size_t i = 0; i < g_nworkers; i++)
        worker_free(&g_workers[i]);
    if (ledger)
        mg_usage_stop();   /* every request is recorded by now: ship, fsync, stop */
    free(g_workers);
    g_workers = NULL;
    g_nworkers = 0;
    mg_snapshot_unref(snap);
    mg_access_log_thread_done();
    if (rc == 0)
        mg_log_info("stopped");
    return rc;
}
