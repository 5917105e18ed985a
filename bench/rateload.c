/* bench/rateload — open-loop, fixed-rate HTTP/1.1 load generator for `make bench`.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Why not wrk: wrk is closed-loop (a connection sends its next request only
 * after the previous answer), so a slow response silently delays the requests
 * behind it and they are never measured ("coordinated omission"). Debian 12
 * has no wrk2, and its h2load (1.52) has --rps but times each request from
 * the moment it was actually sent and prints no percentiles.
 *
 * Here request k is due at t0 + k/rate whatever happens. Due requests wait in
 * one queue until a keep-alive connection is free (no pipelining), and each
 * latency runs from the request's *scheduled* time to the last byte of its
 * response, so queueing caused by a slow server is counted. One thread, epoll,
 * a timerfd for the schedule.
 *
 * Output: one line of key=value pairs on stdout (see usage()). Exit 0 when the
 * run happened (even with errors), 2 on bad arguments or setup failure.
 * Targets must be loopback addresses: this is a local benchmark tool.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS 16
#define MAX_CONNS 4096
#define NS 1000000000LL

typedef struct {
    int fd;
    bool busy;       /* a request is in flight on it */
    bool want_out;   /* EPOLLOUT registered: the request was not written whole */
    bool until_close; /* response has neither length nor chunking: ends at EOF */
    int64_t k;       /* index of the in-flight request */
    size_t woff;     /* bytes of the request already written */
    char *rbuf;
    size_t rlen, rcap;
} conn;

typedef struct {
    /* options */
    struct sockaddr_in addr;
    const char *host;
    int port;
    double rate;
    double duration_s, warmup_s, drain_s;
    int nconns;
    const char *path;
    const char *body;
    const char *headers[MAX_HEADERS];
    int nheaders;
    /* state */
    char *req;
    size_t reqlen;
    int ep, tfd;
    conn *conns;
    int *idle;     /* stack of idle connection indices */
    int nidle;
    int inflight;
    int64_t t0, total, warm_k, next_k;
    /* results */
    int64_t *lat; /* latencies (ns) of measured, completed requests */
    int64_t *lag; /* send lag (ns): actual send time - scheduled time, measured requests */
    int64_t nlag;
    int64_t nlat, ok, non2xx, errors, reconnects;
} ctx;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static int64_t sched_ns(const ctx *c, int64_t k)
{
    return c->t0 + (int64_t)((double)k * 1e9 / c->rate);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: rateload -p PORT -r RATE [-a 127.0.0.1] [-d SECONDS] [-w WARMUP_SECONDS]\n"
            "                [-c CONNECTIONS] [-u PATH] [-b BODY] [-H 'Name: value']... [-D DRAIN_SECONDS]\n"
            "Sends RATE requests/s open-loop (POST when -b is given, else GET) and prints:\n"
            "rate= duration_s= scheduled= completed= ok= non2xx= errors= unsent= timeouts=\n"
            "achieved_rps= p50_us= p90_us= p99_us= p999_us= max_us= send_lag_p50_us= send_lag_p99_us=\n"
            "Latency is measured from each request's scheduled send time; the first\n"
            "WARMUP seconds of the schedule are sent but not measured.\n");
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

static bool parse_int(const char *s, long long lo, long long hi, int *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

/* Appends to a growable buffer; returns false on allocation failure. */
static bool buf_add(char **b, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + n + 1)
            nc *= 2;
        char *nb = realloc(*b, nc);
        if (!nb)
            return false;
        *b = nb;
        *cap = nc;
    }
    memcpy(*b + *len, s, n);
    *len += n;
    (*b)[*len] = '\0';
    return true;
}

static bool build_request(ctx *c)
{
    char line[512];
    size_t len = 0, cap = 0;
    char *b = NULL;
    size_t blen = c->body ? strlen(c->body) : 0;
    int n = snprintf(line, sizeof line, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n", c->body ? "POST" : "GET", c->path,
                     c->host, c->port);
    if (n < 0 || (size_t)n >= sizeof line || !buf_add(&b, &len, &cap, line, (size_t)n))
        goto fail;
    if (c->body) {
        n = snprintf(line, sizeof line, "Content-Length: %zu\r\n", blen);
        if (n < 0 || (size_t)n >= sizeof line || !buf_add(&b, &len, &cap, line, (size_t)n))
            goto fail;
    }
    for (int i = 0; i < c->nheaders; i++) {
        if (strpbrk(c->headers[i], "\r\n") || !strchr(c->headers[i], ':'))
            goto fail;
        if (!buf_add(&b, &len, &cap, c->headers[i], strlen(c->headers[i])) || !buf_add(&b, &len, &cap, "\r\n", 2))
            goto fail;
    }
    if (!buf_add(&b, &len, &cap, "\r\n", 2) || (blen && !buf_add(&b, &len, &cap, c->body, blen)))
        goto fail;
    c->req = b;
    c->reqlen = len;
    return true;
fail:
    free(b);
    return false;
}

static void close_conn(ctx *c, conn *cn)
{
    if (cn->fd >= 0) {
        epoll_ctl(c->ep, EPOLL_CTL_DEL, cn->fd, NULL);
        close(cn->fd);
    }
    cn->fd = -1;
    cn->busy = cn->want_out = cn->until_close = false;
    cn->rlen = 0;
}

/* Connects slot i and pushes it on the idle stack. Returns 0, or -1 on failure. */
static int open_conn(ctx *c, int i)
{
    conn *cn = &c->conns[i];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* Blocking connect: on loopback it completes at once, and keeps the loop simple. */
    if (connect(fd, (struct sockaddr *)&c->addr, sizeof c->addr) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int fl = fcntl(fd, F_GETFL);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return -1;
    }
    cn->fd = fd;
    cn->busy = cn->want_out = cn->until_close = false;
    cn->rlen = 0;
    c->idle[c->nidle++] = i;
    return 0;
}

static void set_out(ctx *c, conn *cn, int i, bool on)
{
    if (cn->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)i};
    epoll_ctl(c->ep, EPOLL_CTL_MOD, cn->fd, &ev);
    cn->want_out = on;
}

/* Writes what is left of the request. Returns false when the connection failed. */
static bool flush_req(ctx *c, conn *cn, int i)
{
    while (cn->woff < c->reqlen) {
        ssize_t n = write(cn->fd, c->req + cn->woff, c->reqlen - cn->woff);
        if (n > 0) {
            cn->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out(c, cn, i, true);
            return true;
        }
        return false;
    }
    set_out(c, cn, i, false);
    return true;
}

static void idle_remove(ctx *c, int i)
{
    for (int j = 0; j < c->nidle; j++)
        if (c->idle[j] == i) {
            c->idle[j] = c->idle[--c->nidle];
            return;
        }
}

/* A request failed on connection i: count it, drop the connection, reconnect. */
static void fail_conn(ctx *c, int i)
{
    conn *cn = &c->conns[i];
    if (cn->busy) {
        c->errors++;
        c->inflight--;
    } else {
        idle_remove(c, i);
    }
    close_conn(c, cn);
    c->reconnects++;
    if (open_conn(c, i) != 0)
        c->errors++; /* slot stays closed; the remaining connections carry on */
}

static void finish(ctx *c, int i, int status, bool keep)
{
    conn *cn = &c->conns[i];
    int64_t t = now_ns();
    if (cn->k >= c->warm_k) {
        c->lat[c->nlat++] = t - sched_ns(c, cn->k);
        if (status >= 200 && status < 300)
            c->ok++;
        else
            c->non2xx++;
    }
    cn->busy = false;
    cn->rlen = 0;
    c->inflight--;
    if (keep) {
        c->idle[c->nidle++] = i;
    } else {
        close_conn(c, cn);
        if (open_conn(c, i) != 0)
            c->errors++;
    }
}

static const char *find(const char *h, size_t hlen, const char *n)
{
    size_t nl = strlen(n);
    if (hlen < nl)
        return NULL;
    for (size_t i = 0; i + nl <= hlen; i++)
        if (memcmp(h + i, n, nl) == 0)
            return h + i;
    return NULL;
}

/* Looks for one complete response in cn->rbuf.
 * Returns 1 complete (status, keep set), 0 need more bytes, -1 malformed. */
static int parse_resp(conn *cn, int *status, bool *keep)
{
    const char *b = cn->rbuf;
    size_t n = cn->rlen;
    const char *he = find(b, n, "\r\n\r\n");
    if (!he)
        return n > 65536 ? -1 : 0;
    size_t hend = (size_t)(he - b) + 4;
    if (n < 12 || memcmp(b, "HTTP/1.", 7) != 0 || b[8] != ' ')
        return -1;
    int st = 0;
    for (int j = 9; j < 12; j++) {
        if (b[j] < '0' || b[j] > '9')
            return -1;
        st = st * 10 + (b[j] - '0');
    }
    long long clen = -1;
    bool chunked = false;
    *keep = b[7] == '1';
    /* Header lines: from the end of the status line to the blank line. */
    const char *p = memchr(b, '\n', hend);
    while (p && (size_t)(p + 1 - b) < hend - 2) {
        const char *ls = p + 1;
        const char *le = memchr(ls, '\n', hend - (size_t)(ls - b));
        if (!le)
            break;
        size_t ll = (size_t)(le - ls);
        if (ll >= 15 && strncasecmp(ls, "content-length:", 15) == 0) {
            char tmp[32];
            size_t vl = ll - 15;
            if (vl >= sizeof tmp)
                return -1;
            memcpy(tmp, ls + 15, vl);
            tmp[vl] = '\0';
            char *end = NULL;
            errno = 0;
            clen = strtoll(tmp, &end, 10);
            while (end && (*end == ' ' || *end == '\r'))
                end++;
            if (errno != 0 || clen < 0 || !end || *end != '\0')
                return -1;
        } else if (ll >= 18 && strncasecmp(ls, "transfer-encoding:", 18) == 0) {
            chunked = find(ls, ll, "chunked") != NULL;
        } else if (ll >= 11 && strncasecmp(ls, "connection:", 11) == 0) {
            if (find(ls, ll, "close"))
                *keep = false;
            else if (find(ls, ll, "keep-alive"))
                *keep = true;
        }
        p = le;
    }
    *status = st;
    cn->until_close = false;
    if (st == 204 || st == 304 || (st >= 100 && st < 200))
        return 1;
    if (chunked) {
        size_t pos = hend;
        for (;;) {
            const char *cr = find(b + pos, n - pos, "\r\n");
            if (!cr)
                return 0;
            char *end = NULL;
            errno = 0;
            long long sz = strtoll(b + pos, &end, 16);
            if (errno != 0 || sz < 0 || end == b + pos)
                return -1;
            pos = (size_t)(cr - b) + 2;
            if (sz == 0) {
                if (n - pos >= 2 && memcmp(b + pos, "\r\n", 2) == 0)
                    return 1;
                return find(b + pos, n - pos, "\r\n\r\n") ? 1 : 0; /* trailers */
            }
            if ((unsigned long long)sz + 2 > n - pos)
                return 0;
            pos += (size_t)sz + 2;
        }
    }
    if (clen >= 0)
        return n - hend >= (unsigned long long)clen ? 1 : 0;
    cn->until_close = true;
    *keep = false;
    return 0;
}

static void on_readable(ctx *c, int i)
{
    conn *cn = &c->conns[i];
    for (;;) {
        if (cn->rcap - cn->rlen < 4096) {
            size_t nc = cn->rcap ? cn->rcap * 2 : 16384;
            char *nb = realloc(cn->rbuf, nc);
            if (!nb) {
                fail_conn(c, i);
                return;
            }
            cn->rbuf = nb;
            cn->rcap = nc;
        }
        ssize_t n = read(cn->fd, cn->rbuf + cn->rlen, cn->rcap - cn->rlen - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            if (n == 0 && cn->busy && cn->until_close) {
                int st = 0;
                bool keep = false;
                parse_resp(cn, &st, &keep);
                finish(c, i, st, false);
                return;
            }
            if (!cn->busy) { /* the server closed an idle keep-alive connection */
                idle_remove(c, i);
                close_conn(c, cn);
                c->reconnects++;
                if (open_conn(c, i) != 0)
                    c->errors++;
                return;
            }
            fail_conn(c, i);
            return;
        }
        cn->rlen += (size_t)n;
        if (!cn->busy) { /* bytes nobody asked for */
            fail_conn(c, i);
            return;
        }
        int st = 0;
        bool keep = true;
        int r = parse_resp(cn, &st, &keep);
        if (r < 0) {
            fail_conn(c, i);
            return;
        }
        if (r > 0) {
            finish(c, i, st, keep);
            return;
        }
    }
}

static void dispatch(ctx *c, int64_t now)
{
    int64_t due = 0;
    if (now >= c->t0) {
        due = (int64_t)((double)(now - c->t0) * c->rate / 1e9) + 1;
        if (due > c->total)
            due = c->total;
    }
    while (c->next_k < due && c->nidle > 0) {
        int i = c->idle[--c->nidle];
        conn *cn = &c->conns[i];
        cn->busy = true;
        cn->k = c->next_k++;
        if (cn->k >= c->warm_k)
            c->lag[c->nlag++] = now - sched_ns(c, cn->k);
        cn->woff = 0;
        cn->rlen = 0;
        c->inflight++;
        if (!flush_req(c, cn, i))
            fail_conn(c, i);
    }
}

static void arm_timer(ctx *c)
{
    struct itimerspec its = {0};
    if (c->next_k < c->total && c->nidle > 0) {
        int64_t t = sched_ns(c, c->next_k);
        its.it_value.tv_sec = t / NS;
        its.it_value.tv_nsec = t % NS;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(c->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(const int64_t *v, int64_t n, double q)
{
    if (n == 0)
        return 0;
    int64_t idx = (int64_t)(q * (double)n);
    if (idx >= n)
        idx = n - 1;
    return (double)v[idx] / 1000.0;
}

int main(int argc, char **argv)
{
    ctx c = {.host = "127.0.0.1", .rate = 0, .duration_s = 10, .warmup_s = 1, .drain_s = 2, .nconns = 32,
             .path = "/", .ep = -1, .tfd = -1};
    int opt;
    signal(SIGPIPE, SIG_IGN);
    while ((opt = getopt(argc, argv, "a:p:r:d:w:c:u:b:H:D:h")) != -1) {
        bool okarg = true;
        switch (opt) {
        case 'a': c.host = optarg; break;
        case 'p': okarg = parse_int(optarg, 1, 65535, &c.port); break;
        case 'r': okarg = parse_num(optarg, 1, 10000000, &c.rate); break;
        case 'd': okarg = parse_num(optarg, 0.1, 3600, &c.duration_s); break;
        case 'w': okarg = parse_num(optarg, 0, 3600, &c.warmup_s); break;
        case 'D': okarg = parse_num(optarg, 0, 3600, &c.drain_s); break;
        case 'c': okarg = parse_int(optarg, 1, MAX_CONNS, &c.nconns); break;
        case 'u': okarg = optarg[0] == '/'; c.path = optarg; break;
        case 'b': c.body = optarg; break;
        case 'H':
            okarg = c.nheaders < MAX_HEADERS;
            if (okarg)
                c.headers[c.nheaders++] = optarg;
            break;
        default: usage(); return opt == 'h' ? 0 : 2;
        }
        if (!okarg) {
            fprintf(stderr, "rateload: bad value for -%c: %s\n", opt, optarg);
            return 2;
        }
    }
    if (c.port == 0 || c.rate == 0 || optind != argc) {
        usage();
        return 2;
    }
    c.addr.sin_family = AF_INET;
    c.addr.sin_port = htons((uint16_t)c.port);
    if (inet_pton(AF_INET, c.host, &c.addr.sin_addr) != 1 || (ntohl(c.addr.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "rateload: -a must be an IPv4 loopback address (127.x.x.x)\n");
        return 2;
    }
    if (!build_request(&c)) {
        fprintf(stderr, "rateload: cannot build the request (bad -H header?)\n");
        return 2;
    }
    c.total = (int64_t)((c.warmup_s + c.duration_s) * c.rate);
    c.warm_k = (int64_t)(c.warmup_s * c.rate);
    c.conns = calloc((size_t)c.nconns, sizeof *c.conns);
    c.idle = calloc((size_t)c.nconns, sizeof *c.idle);
    c.lat = calloc((size_t)(c.total - c.warm_k) + 1, sizeof *c.lat);
    c.lag = calloc((size_t)(c.total - c.warm_k) + 1, sizeof *c.lag);
    c.ep = epoll_create1(EPOLL_CLOEXEC);
    c.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!c.conns || !c.idle || !c.lat || !c.lag || c.ep < 0 || c.tfd < 0) {
        fprintf(stderr, "rateload: setup failed: %s\n", strerror(errno));
        return 2;
    }
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(c.ep, EPOLL_CTL_ADD, c.tfd, &tev);
    for (int i = 0; i < c.nconns; i++) {
        c.conns[i].fd = -1;
        if (open_conn(&c, i) != 0) {
            fprintf(stderr, "rateload: cannot connect to %s:%d: %s\n", c.host, c.port, strerror(errno));
            return 2;
        }
    }

    c.t0 = now_ns() + NS / 100;
    int64_t t_end = sched_ns(&c, c.total);
    int64_t deadline = t_end + (int64_t)(c.drain_s * 1e9);
    struct epoll_event evs[256];
    for (;;) {
        int64_t now = now_ns();
        dispatch(&c, now);
        if ((c.next_k >= c.total && c.inflight == 0) || now >= deadline)
            break;
        arm_timer(&c);
        int n = epoll_wait(c.ep, evs, 256, 10);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "rateload: epoll_wait: %s\n", strerror(errno));
            return 2;
        }
        for (int j = 0; j < n; j++) {
            uint32_t id = evs[j].data.u32;
            if (id == UINT32_MAX) {
                uint64_t exp;
                ssize_t rn = read(c.tfd, &exp, sizeof exp);
                (void)rn;
                continue;
            }
            conn *cn = &c.conns[id];
            if (cn->fd < 0)
                continue;
            if ((evs[j].events & EPOLLOUT) && cn->busy && !flush_req(&c, cn, (int)id)) {
                fail_conn(&c, (int)id);
                continue;
            }
            if (evs[j].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(&c, (int)id);
        }
    }
    int64_t elapsed = now_ns() - sched_ns(&c, c.warm_k);
    int64_t measured_total = c.total - c.warm_k;
    int64_t unsent = c.total - c.next_k;
    if (unsent > measured_total)
        unsent = measured_total;
    qsort(c.lat, (size_t)c.nlat, sizeof *c.lat, cmp64);
    qsort(c.lag, (size_t)c.nlag, sizeof *c.lag, cmp64);
    printf("rate=%.0f duration_s=%.1f scheduled=%lld completed=%lld ok=%lld non2xx=%lld errors=%lld unsent=%lld "
           "timeouts=%d reconnects=%lld achieved_rps=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f "
           "max_us=%.1f send_lag_p50_us=%.1f send_lag_p99_us=%.1f\n",
           c.rate, c.duration_s, (long long)measured_total, (long long)c.nlat, (long long)c.ok,
           (long long)c.non2xx, (long long)c.errors, (long long)unsent, c.inflight, (long long)c.reconnects,
           elapsed > 0 ? (double)c.nlat * 1e9 / (double)elapsed : 0.0, pct_us(c.lat, c.nlat, 0.50),
           pct_us(c.lat, c.nlat, 0.90), pct_us(c.lat, c.nlat, 0.99), pct_us(c.lat, c.nlat, 0.999),
           c.nlat ? (double)c.lat[c.nlat - 1] / 1000.0 : 0.0, pct_us(c.lag, c.nlag, 0.50),
           pct_us(c.lag, c.nlag, 0.99));
    for (int i = 0; i < c.nconns; i++) {
        close_conn(&c, &c.conns[i]);
        free(c.conns[i].rbuf);
    }
    free(c.conns);
    free(c.idle);
    free(c.lat);
    free(c.lag);
    free(c.req);
    close(c.tfd);
    close(c.ep);
    return 0;
}
