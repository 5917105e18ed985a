/* modelgate — forwarding to model providers (libcurl multi on the worker loop,
 * or the built-in HTTP/1.1 client for plain-http IP/localhost upstreams).
 *
 *   forward stage -> adapter builds request -> h1client (eligible, see
 *                    docs/routing.md) or curl_multi_add_handle
 *   header callback: status, content type -> decide stream or whole reply
 *   write callback:  stream  -> split events -> adapter -> filter -> client
 *                    whole   -> collect (bounded)
 *   done / timeout:  translate + answer, or end the stream (with an SSE
 *                    error event if it was cut)
 * Both clients feed the same header/write callbacks and upstream_finish, so
 * retries, breakers, relay and usage are one code path.
 * Callbacks never touch the client connection directly; they queue bytes
 * and mark the upstream dirty; the worker flushes dirty connections before
 * it sleeps. A client that reads slowly pauses the transfer (backpressure).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "proxy.h"

#include "adapters/adapter.h"
#include "h1client.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "router.h"
#include "surface.h"
#include "usage/usage.h"

#include <stdio.h>
#include <stdlib.h>

#define MG_MAX_UPSTREAM_REPLY (64u * 1024 * 1024)
#define MG_MAX_STREAM_EVENT (4u * 1024 * 1024)

struct mg_upstream {
    mg_req *req;
    mg_worker *w;
    CURL *easy;              /* the transfer, on libcurl ... */
    mg_h1_xfer *h1;          /* ... or on the built-in client (h1client.h) */
    bool custom_ca;          /* easy has CURLOPT_CAINFO set */
    long head_code;          /* status of the head being received (1xx too) */
    const mg_adapter_ops *ops;
    mg_upstream_request ureq;
    long status;
    bool headers_done;
    bool is_stream;          /* the reply is a stream we relay */
    bool ndjson;             /* events end at "\n" rather than a blank line */
    bool stream_done;
    bool paused;
    bool timed_out;
    bool too_large;
    bool dirty;
    mg_upstream *dirty_prev, *dirty_next;
    char content_type[128];
    char retry_after[16];
    mg_buf resp;             /* whole reply, when not streaming */
    mg_buf events;           /* stream bytes not yet split into events */
    mg_buf out;              /* translated client bytes (scratch) */
    mg_timer timer;          /* first byte, between chunks, or backoff */

    /* routing across attempts (retries, then fallback models) */
    const mg_cfg_model *requested; /* the model the client asked for */
    const mg_cfg_model *model;   /* model being tried: requested or a fallback */
    size_t chain_pos;            /* 0 = the requested model, k = fallbacks[k-1] */
    uint64_t tried;              /* deployments of `model` already tried */
    unsigned attempts;           /* attempts on `model` */
    unsigned total_attempts;
    size_t dep_idx;
    bool has_slot;               /* holds a routing slot for dep_idx */
    bool backoff;                /* waiting before the next attempt */
    /* the last failed attempt, answered if no attempt is left */
    CURLcode last_result;
    long last_status;
    bool last_timed_out, last_connect_failed, last_too_large;
    char last_retry_after[16];
};

typedef struct mg_curl_sock {
    mg_io io;
    mg_worker *w;
} mg_curl_sock;

static void check_done(mg_worker *w);

static size_t on_header(char *buf, size_t size, size_t n, void *arg);
static size_t on_body(char *buf, size_t size, size_t n, void *arg);

/* The options every transfer shares. They are set once per easy handle, not
 * per transfer: curl_easy_reset plus ~20 setopts per request was a
 * measurable share of the per-request cost (bench/RESULTS.md, profile). */
static void easy_defaults(CURL *e)
{
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
}

/* Idle easy handles, reused with their shared options in place:
 * curl_easy_init/cleanup per request is measurable at full load.
 * Connections live in the multi handle's cache either way. */
static CURL *easy_get(mg_worker *w)
{
    if (w->neasy > 0)
        return w->easy_pool[--w->neasy];
    CURL *e = curl_easy_init();
    if (e)
        easy_defaults(e);
    return e;
}

/* `needs_reset`: the handle carries state a later transfer must not
 * inherit: a CURLOPT_CAINFO (setting it back to NULL would drop the system
 * bundle rather than restore it) or a pause left by a transfer removed
 * while paused. Such a handle goes back to libcurl's defaults first. */
static void easy_put(mg_worker *w, CURL *e, bool needs_reset)
{
    if (w->neasy < MG_ARRAY_LEN(w->easy_pool)) {
        if (needs_reset) {
            curl_easy_reset(e);
            easy_defaults(e);
        }
        w->easy_pool[w->neasy++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

/* ---------------------------------------------------------------- curl glue */

static void curl_sock_on_io(mg_io *io, uint32_t events)
{
    mg_curl_sock *cs = io->data;
    int flags = 0, running = 0;
    if (events & (EPOLLIN | EPOLLHUP))
        flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (events & EPOLLERR)
        flags |= CURL_CSELECT_ERR;
    mg_worker *w = cs->w;
    curl_multi_socket_action(w->multi, io->fd, flags, &running);
    check_done(w);
}

static int curl_sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    mg_worker *w = userp;
    mg_curl_sock *cs = socketp;
    MG_UNUSED(e);
    if (what == CURL_POLL_REMOVE) {
        if (cs) {
            mg_loop_io_set(w->loop, &cs->io, 0);
            curl_multi_assign(w->multi, s, NULL);
            mg_loop_defer_free(w->loop, cs);
        }
        return 0;
    }
    if (cs == NULL) {
        cs = calloc(1, sizeof(*cs));
        if (cs == NULL)
            return -1;
        cs->io.fd = s;
        cs->io.cb = curl_sock_on_io;
        cs->io.data = cs;
        cs->w = w;
        curl_multi_assign(w->multi, s, cs);
    }
    uint32_t ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev |= EPOLLOUT;
    return mg_loop_io_set(w->loop, &cs->io, ev) == MG_OK ? 0 : -1;
}

static void curl_timer_fire(mg_timer *t)
{
    mg_worker *w = t->data;
    int running = 0;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(w);
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    mg_worker *w = userp;
    MG_UNUSED(multi);
    if (timeout_ms < 0)
        mg_timer_disarm(w->loop, &w->curl_timer);
    else
        mg_timer_arm(w->loop, &w->curl_timer, (uint64_t)timeout_ms);
    return 0;
}

static mg_h1_pool *h1_pool(const mg_worker *w) { return w->h1; }

mg_rc mg_proxy_worker_init(mg_worker *w)
{
    if (w->h1 == NULL)
        w->h1 = mg_h1_pool_new(w->loop);   /* NULL: libcurl for everything */
    w->multi = curl_multi_init();
    if (w->multi == NULL)
        return MG_ERR;
    mg_timer_init(&w->curl_timer, curl_timer_fire, w);
    w->retry_bank = 10.0;   /* start with a full retry budget */
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, 512L);
    return MG_OK;
}

void mg_proxy_worker_free(mg_worker *w)
{
    mg_h1_pool_free(w->h1);
    w->h1 = NULL;
    while (w->neasy > 0)
        curl_easy_cleanup(w->easy_pool[--w->neasy]);
    if (w->multi)
        curl_multi_cleanup(w->multi);
    w->multi = NULL;
}

/* ---------------------------------------------------------------- lifecycle */

static void dirty_mark(mg_upstream *up)
{
    if (up->dirty)
        return;
    up->dirty = true;
    up->dirty_prev = NULL;
    up->dirty_next = up->w->dirty;
    if (up->w->dirty)
        up->w->dirty->dirty_prev = up;
    up->w->dirty = up;
}

static void dirty_unlink(mg_upstream *up)
{
    if (!up->dirty)
        return;
    if (up->dirty_prev)
        up->dirty_prev->dirty_next = up->dirty_next;
    else
        up->w->dirty = up->dirty_next;
    if (up->dirty_next)
        up->dirty_next->dirty_prev = up->dirty_prev;
    up->dirty = false;
}

void mg_proxy_flush_dirty(mg_worker *w)
{
    while (w->dirty) {
        mg_upstream *up = w->dirty;
        dirty_unlink(up);
        mg_conn_kick(up->req->conn);   /* may cancel and free up */
    }
}

static void attempt_release(mg_upstream *up, mg_route_outcome o)
{
    if (up->has_slot) {
        mg_route_done(up->req->snap, up->model, up->dep_idx, o);
        up->has_slot = false;
    }
}

/* Drops everything of the current attempt (transfer, buffers, flags). */
static void attempt_reset(mg_upstream *up)
{
    mg_worker *w = up->w;
    dirty_unlink(up);
    mg_timer_disarm(w->loop, &up->timer);
    mg_h1_free(up->h1);   /* before the request body it points at */
    up->h1 = NULL;
    if (up->easy) {
        curl_multi_remove_handle(w->multi, up->easy);
        easy_put(w, up->easy, up->custom_ca || up->paused);
        up->easy = NULL;
        up->custom_ca = false;
    }
    curl_slist_free_all(up->ureq.headers);
    up->ureq.headers = NULL;
    mg_buf_free(&up->ureq.url);
    mg_buf_free(&up->ureq.body);
    mg_buf_free(&up->resp);
    mg_buf_free(&up->events);
    mg_buf_free(&up->out);
    if (up->req)
        up->req->adapter_state = NULL;   /* a new attempt streams from scratch */
    up->status = up->head_code = 0;
    up->headers_done = up->is_stream = up->ndjson = up->stream_done = false;
    up->paused = up->timed_out = up->too_large = up->backoff = false;
    up->content_type[0] = up->retry_after[0] = '\0';
}

/* Detaches the transfer from curl and the request; frees everything but
 * leaves the request itself alone. */
static void upstream_free(mg_upstream *up)
{
    attempt_reset(up);
    attempt_release(up, MG_ROUTE_NEUTRAL);
    if (up->req) {
        up->req->up = NULL;
        mg_conn_set_drain_hook(up->req->conn, NULL, NULL);
    }
    free(up);
}

/* Unhooks up from its request so the request can be answered (and freed)
 * while up's buffers are still read; free up with upstream_free after. */
static mg_req *upstream_detach(mg_upstream *up)
{
    mg_req *req = up->req;
    attempt_release(up, MG_ROUTE_NEUTRAL);
    req->up = NULL;
    mg_conn_set_drain_hook(req->conn, NULL, NULL);
    up->req = NULL;
    return req;
}

void mg_proxy_cancel(mg_req *req)
{
    mg_upstream *up = req->up;
    if (up == NULL)
        return;
    /* Whatever was generated before the cut is billed (estimated if the
     * provider did not report it yet). */
    if (up->headers_done && up->status >= 200 && up->status < 300)
        mg_pipeline_estimate_usage(req);
    upstream_free(up);
}

/* ---------------------------------------------------------------- streams */

static void stream_error_event(mg_upstream *up, const char *code, const char *message)
{
    mg_buf b = {0};
    if (up->req->surface) {
        up->req->surface->stream_error(up->req, code, message, &b);
    } else {
        mg_buf_append_str(&b, "data: {\"error\":{\"message\":");
        mg_buf_append_json_str(&b, message, strlen(message));
        mg_buf_printf(&b, ",\"type\":\"upstream_error\",\"code\":\"%s\"}}\n\n", code);
    }
    if (b.p)
        mg_req_stream_write(up->req, b.p, b.len);
    mg_buf_free(&b);
    up->req->error_code = code;
}

/* Writes canonical bytes to the client, through the surface if there is
 * one. False if the surface could not translate them. */
static bool relay_out(mg_upstream *up, const char *p, size_t n)
{
    mg_req *req = up->req;
    if (req->surface == NULL) {
        mg_req_stream_write(req, p, n);
        return true;
    }
    mg_buf client = {0};
    bool ok = req->surface->stream(req, p, n, &client) == MG_OK;
    if (ok)
        mg_req_stream_write(req, client.p, client.len);
    mg_buf_free(&client);
    return ok;
}

/* The provider closed the stream cleanly but never sent its final event:
 * end the canonical stream so clients see a proper end. */
static void stream_terminate(mg_upstream *up)
{
    static const char done[] = "data: [DONE]\n\n";
    relay_out(up, done, sizeof(done) - 1);
    up->stream_done = true;
}

/* Splits buffered stream bytes into events and relays each one. At the end
 * of the stream, a last event without its terminator is relayed too. */
static void relay_events(mg_upstream *up, bool at_end)
{
    mg_req *req = up->req;
    size_t (*next)(const char *, size_t, mg_str *) =
        up->ops->next_event ? up->ops->next_event
                            : up->ndjson ? mg_adapter_next_line : mg_adapter_next_sse_event;
    size_t off = 0;
    while (!up->stream_done && off < up->events.len) {
        mg_str ev;
        size_t used = next(up->events.p + off, up->events.len - off, &ev);
        if (used == (size_t)-1) {
            stream_error_event(up, "upstream_error", "the upstream stream has broken framing");
            up->stream_done = true;
            break;
        }
        if (used == 0) {
            /* A text event cut off by the end of the stream is still an
             * event; a partial binary frame is not. */
            if (!at_end || (next != mg_adapter_next_line && next != mg_adapter_next_sse_event))
                break;
            ev = mg_str_make(up->events.p + off, up->events.len - off);
            used = ev.n;
        }
        off += used;
        mg_buf_reset(&up->out);
        mg_rc rc = up->ops->stream_event(req, ev, &up->out);
        if (rc == MG_ERR) {
            stream_error_event(up, "upstream_error", "the upstream sent an unreadable stream event");
            up->stream_done = true;
            break;
        }
        if (up->out.len && mg_pipeline_filter_output(req, &up->out, true) != MG_OK) {
            stream_error_event(up, req->error_code ? req->error_code : "content_blocked",
                               "the reply was stopped by a content filter");
            up->stream_done = true;
            break;
        }
        if (rc == MG_DONE && mg_pipeline_record_final(req, req->status ? req->status : 200) != MG_OK) {
            /* ledger: the final record before the stream's end, or no end */
            stream_error_event(up, "usage_journal_unavailable", "usage recording is unavailable");
            up->stream_done = true;
            break;
        }
        if (up->out.len && !relay_out(up, up->out.p, up->out.len)) {
            stream_error_event(up, "upstream_error", "the stream could not be translated");
            up->stream_done = true;
            break;
        }
        if (rc == MG_DONE)
            up->stream_done = true;
    }
    mg_buf_consume(&up->events, off);
    dirty_mark(up);
}

static void on_client_drained(mg_req *req)
{
    mg_upstream *up = req->up;
    if (up == NULL || !up->paused)
        return;
    up->paused = false;
    mg_timer_arm(up->w->loop, &up->timer, req->snap->cfg->limits.upstream_idle_timeout_ms);
    if (up->h1)
        mg_h1_resume(up->h1);
    else
        curl_easy_pause(up->easy, CURLPAUSE_CONT);
}

/* ---------------------------------------------------------------- callbacks */

static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
    mg_upstream *up = arg;
    size_t len = size * n;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* "HTTP/1.1 200 OK", "HTTP/2 200": the code after the first space,
         * read here so both clients feed the same callback. */
        const char *sp = memchr(buf, ' ', len);
        long code = 0;
        for (const char *d = sp ? sp + 1 : buf + len; d < buf + len && d < sp + 4 && *d >= '0' && *d <= '9'; d++)
            code = code * 10 + (*d - '0');
        up->head_code = code;
        up->content_type[0] = '\0';
        up->retry_after[0] = '\0';
        return len;
    }
    if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        long code = up->head_code;
        if (code >= 200 && !up->headers_done) {
            mg_req *req = up->req;
            up->headers_done = true;
            up->status = code;
            req->t_first_byte_us = mg_now_us();
            const char *sct = up->ops->stream_content_type;
            up->is_stream = req->stream && code >= 200 && code < 300 && sct &&
                            strncasecmp(up->content_type, sct, strlen(sct)) == 0;
            up->ndjson = up->is_stream && strstr(sct, "ndjson") != NULL;
            mg_timer_arm(up->w->loop, &up->timer, req->snap->cfg->limits.upstream_idle_timeout_ms);
        }
        return len;
    }
    const char *colon = memchr(buf, ':', len);
    if (colon == NULL)
        return len;
    size_t nlen = (size_t)(colon - buf);
    const char *v = colon + 1, *end = buf + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t vlen = (size_t)(end - v);
    if (nlen == 12 && strncasecmp(buf, "content-type", 12) == 0 && vlen < sizeof(up->content_type)) {
        memcpy(up->content_type, v, vlen);
        up->content_type[vlen] = '\0';
    } else if (nlen == 11 && strncasecmp(buf, "retry-after", 11) == 0 && vlen < sizeof(up->retry_after)) {
        memcpy(up->retry_after, v, vlen);
        up->retry_after[vlen] = '\0';
    }
    return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *arg)
{
    mg_upstream *up = arg;
    mg_req *req = up->req;
    size_t len = size * n;
    if (!up->is_stream) {
        if (up->resp.len + len > MG_MAX_UPSTREAM_REPLY) {
            up->too_large = true;
            return 0;
        }
        return mg_buf_append(&up->resp, buf, len) == MG_OK ? len : 0;
    }
    if (mg_req_pending_out(req) > MG_OUT_HIGH_WATER) {
        /* The client reads slower than the model writes: stop reading the
         * upstream until the client catches up (curl keeps this chunk). */
        up->paused = true;
        mg_timer_disarm(up->w->loop, &up->timer);
        dirty_mark(up);
        return CURL_WRITEFUNC_PAUSE;
    }
    if (!req->head_sent) {
        mg_req_stream_begin(req, 200, "text/event-stream");
        mg_conn_set_drain_hook(req->conn, on_client_drained, req);
    }
    mg_timer_arm(up->w->loop, &up->timer, req->snap->cfg->limits.upstream_idle_timeout_ms);
    if (up->stream_done)
        return len;   /* ignore anything after the final event */
    if (up->events.len + len > MG_MAX_STREAM_EVENT) {
        up->too_large = true;
        return 0;
    }
    if (mg_buf_append(&up->events, buf, len) != MG_OK)
        return 0;
    relay_events(up, false);
    return len;
}

/* ---------------------------------------------------------------- finishing */

static void answer_upstream_error(mg_req *req, mg_upstream *up)
{
    long st = up->status;
    char msg[200];
    if (st == 429) {
        int retry = up->retry_after[0] ? (int)strtol(up->retry_after, NULL, 10) : 1;
        if (retry <= 0 || retry > 3600)
            retry = 1;
        mg_req_respond_error(req, 429, "rate_limit_error", "upstream_rate_limited",
                             "the model provider is rate limiting requests", retry);
        return;
    }
    if (st >= 400 && st < 500) {
        /* The provider refused the request itself: pass its message on (it
         * concerns the caller's own request), in our error shape. */
        const char *pmsg = NULL;
        cJSON *j = up->resp.len ? cJSON_ParseWithLength(up->resp.p, up->resp.len) : NULL;
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        if (cJSON_IsString(m))
            pmsg = m->valuestring;                 /* OpenAI, Anthropic, Gemini */
        else if (cJSON_IsString(e))
            pmsg = e->valuestring;                 /* Ollama: {"error": "..."} */
        else if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "message")))
            pmsg = cJSON_GetObjectItemCaseSensitive(j, "message")->valuestring;   /* Bedrock */
        snprintf(msg, sizeof(msg), "the model provider refused the request (HTTP %ld)%s%.120s", st,
                 pmsg ? ": " : "", pmsg ? pmsg : "");
        cJSON_Delete(j);
        int status = st == 401 || st == 403 || st == 404 ? 502 : (int)st;
        mg_req_respond_error(req, status, status == 502 ? "upstream_error" : "invalid_request_error",
                             status == 502 ? "upstream_auth_error" : "upstream_bad_request", msg, 0);
        return;
    }
    snprintf(msg, sizeof(msg), "the model provider failed (HTTP %ld)", st);
    mg_req_respond_error(req, 502, "upstream_error", "upstream_error", msg, 0);
}

/* Answers with the last failed attempt (the request's upstream is freed). */
static void answer_last_failure(mg_upstream *up)
{
    mg_req *req = up->req;
    if (up->last_status == 429 || up->last_status >= 500) {
        up->status = up->last_status;
        memcpy(up->retry_after, up->last_retry_after, sizeof(up->retry_after));
        upstream_detach(up);
        answer_upstream_error(req, up);
        upstream_free(up);
        return;
    }
    bool timeout = up->last_timed_out;
    int status = timeout ? 504 : 502;
    const char *code = timeout ? "upstream_timeout" : up->last_too_large ? "upstream_reply_too_large"
                       : up->last_connect_failed ? "upstream_unreachable" : "upstream_error";
    const char *msg = timeout ? "the model provider did not answer in time"
                      : up->last_too_large ? "the model provider's reply is too large"
                      : up->last_connect_failed ? "the model provider cannot be reached"
                      : "the model provider sent an invalid response";
    upstream_free(up);
    mg_req_respond_error(req, status, "upstream_error", code, msg, 0);
}

static bool start_attempt(mg_upstream *up);

/* Moves on to the requested model's next fallback that the caller may use. */
static bool next_in_chain(mg_upstream *up)
{
    const mg_cfg_model *r = up->requested;
    while (up->chain_pos < r->nfallbacks) {
        const char *name = r->fallbacks[up->chain_pos++];
        const mg_cfg_model *m = mg_config_model(up->req->snap->cfg, name, strlen(name));
        if (m && mg_policy_model_allowed(up->req, m)) {
            up->model = m;
            up->tried = 0;
            up->attempts = 0;
            return true;
        }
    }
    return false;
}

/* Schedules the next attempt after a backoff, if the failure allows one. */
static bool retry_later(mg_upstream *up)
{
    mg_req *req = up->req;
    if (req->head_sent || !mg_route_retry_budget_take(&up->w->retry_bank))
        return false;
    up->tried |= 1ull << up->dep_idx;
    attempt_reset(up);
    up->backoff = true;
    uint64_t delay = (uint64_t)MG_ROUTE_BACKOFF_MS << (up->total_attempts > 4 ? 4 : up->total_attempts - 1);
    delay += mg_now_us() % (delay / 2 + 1);   /* jitter: no synchronized retry waves */
    mg_timer_arm(up->w->loop, &up->timer, delay);
    return true;
}

static void upstream_finish(mg_upstream *up, CURLcode result)
{
    mg_req *req = up->req;
    mg_metrics_upstream(up->w->metrics, req->provider->name, (int)up->status,
                        req->t_first_byte_us ? req->t_first_byte_us - req->t_upstream_us : 0);
    bool connect_failed = result == CURLE_COULDNT_CONNECT || result == CURLE_COULDNT_RESOLVE_HOST ||
                          result == CURLE_SSL_CONNECT_ERROR || result == CURLE_PEER_FAILED_VERIFICATION ||
                          (result == CURLE_OPERATION_TIMEDOUT && !up->headers_done && !up->timed_out);
    bool timeout = up->timed_out || (result == CURLE_OPERATION_TIMEDOUT && !connect_failed);
    bool failed = connect_failed || timeout || result != CURLE_OK || up->status == 429 ||
                  up->status >= 500;
    attempt_release(up, failed ? MG_ROUTE_FAILED : MG_ROUTE_HEALTHY);
    if (up->is_stream && req->head_sent) {
        if (!up->stream_done)
            relay_events(up, result == CURLE_OK && !up->timed_out);
        if (!up->stream_done) {
            if (timeout)
                stream_error_event(up, "upstream_timeout", "the model provider stopped responding");
            else if (result != CURLE_OK)
                stream_error_event(up, "upstream_error", "the model provider's stream broke off");
            else
                stream_terminate(up);   /* ended cleanly but without its final event */
        }
        mg_pipeline_estimate_usage(req);
        upstream_free(up);
        mg_pipeline_record_final(req, req->status ? req->status : 200);   /* ledger, before the end chunk */
        mg_req_stream_end(req);
        return;
    }
    /* Retry only what cannot have been half-done for the client: connect
     * errors, 429 and 5xx, before any byte went out. */
    bool retryable = connect_failed || (result == CURLE_OK && (up->status == 429 || up->status >= 500));
    if (failed) {
        up->last_result = result;
        up->last_status = result == CURLE_OK ? up->status : 0;
        up->last_timed_out = timeout;
        up->last_connect_failed = connect_failed;
        up->last_too_large = up->too_large;
        memcpy(up->last_retry_after, up->retry_after, sizeof(up->retry_after));
    }
    if (retryable && retry_later(up))
        return;
    if (failed) {
        answer_last_failure(up);
        return;
    }
    if (up->status < 200 || up->status >= 300) {
        upstream_detach(up);
        answer_upstream_error(req, up);
        upstream_free(up);
        return;
    }
    mg_buf out = {0};
    if (up->ops->reply(req, up->resp.p ? up->resp.p : "", up->resp.len, &out) != MG_OK) {
        mg_buf_free(&out);
        upstream_free(up);
        mg_req_respond_error(req, 502, "upstream_error", "upstream_error",
                             "the model provider sent an unreadable reply", 0);
        return;
    }
    upstream_free(up);
    mg_pipeline_estimate_usage(req);   /* a provider that reported no usage is still billed (estimated) */
    if (mg_pipeline_filter_output(req, &out, false) != MG_OK) {
        mg_buf_free(&out);
        mg_req_respond_error(req, 403, "permission_error",
                             req->error_code ? req->error_code : "content_blocked",
                             "the reply was stopped by a content filter", 0);
        return;
    }
    if (req->surface) {
        mg_buf client = {0};
        if (req->surface->reply(req, out.p ? out.p : "", out.len, &client) != MG_OK) {
            mg_buf_free(&client);
            mg_buf_free(&out);
            mg_req_respond_error(req, 502, "upstream_error", "upstream_error",
                                 "the reply could not be translated", 0);
            return;
        }
        mg_buf_free(&out);
        out = client;
    }
    if (mg_pipeline_record_final(req, 200) != MG_OK) {   /* ledger: recorded before the body, or refused */
        mg_buf_free(&out);
        mg_req_respond_error(req, 503, "server_error", "usage_journal_unavailable",
                             "usage recording is unavailable; try again later", 5);
        return;
    }
    mg_req_respond(req, 200, "application/json", out.p ? out.p : "", out.len, NULL);
    mg_buf_free(&out);
}

static void check_done(mg_worker *w)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        mg_upstream *up = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&up);
        if (up)
            upstream_finish(up, msg->data.result);
    }
}

static void upstream_timeout(mg_timer *t)
{
    mg_upstream *up = t->data;
    if (up->backoff) {
        up->backoff = false;
        start_attempt(up);
        return;
    }
    up->timed_out = true;
    upstream_finish(up, CURLE_OPERATION_TIMEDOUT);
}

static mg_stage_rc answer_models(mg_req *req)
{
    const mg_config *cfg = req->snap->cfg;
    mg_buf b = {0};
    mg_buf_append_str(&b, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    for (size_t i = 0; i < cfg->nmodels; i++) {
        if (!mg_policy_model_allowed(req, &cfg->models[i]))
            continue;   /* only the models the caller's roles allow */
        if (!first)
            mg_buf_append(&b, ",", 1);
        first = false;
        mg_buf_append_str(&b, "{\"id\":");
        mg_buf_append_json_str(&b, cfg->models[i].name, strlen(cfg->models[i].name));
        mg_buf_append_str(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"modelgate\"}");
    }
    mg_buf_append_str(&b, "]}");
    mg_req_respond(req, 200, "application/json", b.p, b.len, NULL);
    mg_buf_free(&b);
    return MG_STAGE_RESPONDED;
}

static void h1_done(void *arg, CURLcode result)
{
    upstream_finish(arg, result);
}

/* The built-in client takes plain-http upstreams it can reach without DNS
 * (docs/routing.md), unless the provider says `upstream_client: curl`.
 * 0: not eligible, use libcurl; 1: the transfer started; -1: the request
 * was answered instead (up is freed). */
static int h1_launch(mg_upstream *up)
{
    mg_req *req = up->req;
    mg_h1_pool *pool = h1_pool(req->worker);
    const char *client = req->provider->upstream_client;
    if (pool == NULL || (client && strcmp(client, "curl") == 0) ||
        strncmp(up->ureq.url.p, "http://", 7) != 0)
        return 0;
    struct sockaddr_storage addr;
    socklen_t alen;
    mg_str auth, path;
    if (!mg_h1_eligible_url(up->ureq.url.p, &addr, &alen, &auth, &path))
        return 0;
    const mg_cfg_limits *lim = &req->snap->cfg->limits;
    if (mg_pipeline_forward_started(req) != MG_OK) {   /* ledger start record: docs/ledger.md */
        upstream_free(up);
        mg_req_respond_error(req, 503, "server_error", "usage_journal_unavailable",
                             "usage recording is unavailable; try again later", 5);
        return -1;
    }
    req->t_upstream_us = mg_now_us();
    req->t_first_byte_us = 0;
    mg_h1_request r = {
        .url = up->ureq.url.p,
        .method = up->ureq.method,
        .headers = up->ureq.headers,
        .body = up->ureq.body.p,
        .body_len = strcmp(up->ureq.method, "POST") == 0 ? up->ureq.body.len : 0,
        .connect_timeout_ms = lim->upstream_connect_timeout_ms,
        .timeout_ms = lim->upstream_timeout_ms,
    };
    const mg_h1_sink sink = {.header = on_header, .body = on_body, .arg = up};
    up->h1 = mg_h1_start(pool, &r, &sink, h1_done);
    if (up->h1 == NULL) {
        upstream_free(up);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "cannot forward right now", 0);
        return -1;
    }
    mg_timer_arm(req->worker->loop, &up->timer, lim->upstream_first_byte_timeout_ms);
    return 1;
}

/* Starts the transfer for one deployment. False if the request was
 * answered instead (bad request for this provider, no capacity). */
static bool launch(mg_upstream *up)
{
    mg_req *req = up->req;
    const mg_cfg_limits *lim = &req->snap->cfg->limits;
    char err[200] = "";
    if (up->ops->build(req, &up->ureq, err, sizeof(err)) != MG_OK) {
        upstream_free(up);
        mg_req_respond_error(req, 400, "invalid_request_error", "unsupported_request",
                             err[0] ? err : "the request cannot be sent to this model", 0);
        return false;
    }
    int h1 = h1_launch(up);
    if (h1 != 0)
        return h1 > 0;
    CURL *e = easy_get(req->worker);
    if (e == NULL) {
        upstream_free(up);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "cannot forward right now", 0);
        return false;
    }
    up->easy = e;
    /* Only what changes from one transfer to the next; the shared options
     * are already on the handle (easy_defaults). */
    curl_easy_setopt(e, CURLOPT_URL, up->ureq.url.p);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, up->ureq.headers);
    if (strcmp(up->ureq.method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)up->ureq.body.len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, up->ureq.body.p ? up->ureq.body.p : "");
    } else {
        /* a pooled handle may still point at an earlier transfer's body */
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(e, CURLOPT_PRIVATE, up);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, up);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, up);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)lim->upstream_connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)lim->upstream_timeout_ms);
    if (req->provider->tls_ca) {
        curl_easy_setopt(e, CURLOPT_CAINFO, req->provider->tls_ca);
        up->custom_ca = true;
    }
    if (mg_pipeline_forward_started(req) != MG_OK) {   /* ledger start record: docs/ledger.md */
        upstream_free(up);
        mg_req_respond_error(req, 503, "server_error", "usage_journal_unavailable",
                             "usage recording is unavailable; try again later", 5);
        return false;
    }
    req->t_upstream_us = mg_now_us();
    req->t_first_byte_us = 0;
    if (curl_multi_add_handle(req->worker->multi, e) != CURLM_OK) {
        upstream_free(up);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "cannot forward right now", 0);
        return false;
    }
    mg_timer_arm(req->worker->loop, &up->timer, lim->upstream_first_byte_timeout_ms);
    return true;
}

/* Picks the next deployment (the requested model first, then its
 * fallbacks in order) and launches it. False if the request was answered
 * instead. */
static bool start_attempt(mg_upstream *up)
{
    mg_req *req = up->req;
    const mg_snapshot *snap = req->snap;
    mg_route_pick_rc why = MG_ROUTE_NONE_LEFT;
    for (;;) {
        size_t idx;
        mg_route_pick_rc rc = MG_ROUTE_NONE_LEFT;
        if (up->attempts <= MG_ROUTE_RETRIES) {
            uint64_t rnd = req->worker->rng[0] ^ (req->worker->rng[1] << 7) ^ mg_now_us();
            req->worker->rng[0] = rnd * 6364136223846793005ull + 1442695040888963407ull;
            rc = mg_route_pick(snap, up->model, up->tried, rnd, &idx);
        }
        if (rc == MG_ROUTE_NONE_LEFT && up->attempts <= MG_ROUTE_RETRIES && up->tried != 0) {
            up->tried = 0;   /* every deployment had a go: retry them again */
            continue;
        }
        if (rc == MG_ROUTE_OK) {
            up->dep_idx = idx;
            up->has_slot = true;
            up->attempts++;
            up->total_attempts++;
            req->model = up->model;
            req->deployment = &up->model->deployments[idx];
            req->provider = mg_config_provider(snap->cfg, req->deployment->provider);
            up->ops = mg_snapshot_provider_ops(snap, req->provider);
            return launch(up);
        }
        if (rc != MG_ROUTE_NONE_LEFT)
            why = rc;
        if (!next_in_chain(up))
            break;
    }
    if (up->total_attempts > 0) {
        answer_last_failure(up);
        return false;
    }
    upstream_free(up);
    if (why == MG_ROUTE_BUSY)
        mg_req_respond_error(req, 503, "server_error", "upstream_busy",
                             "every deployment of this model is at its concurrency limit", 1);
    else
        mg_req_respond_error(req, 503, "server_error", "upstream_unavailable",
                             "every deployment of this model is failing (circuit open)",
                             MG_ROUTE_BREAKER_COOLDOWN_MS / 1000);
    return false;
}

mg_stage_rc mg_proxy_forward_stage(mg_req *req)
{
    if (req->api == MG_API_MODELS)
        return answer_models(req);
    if (!mg_usage_healthy()) {
        /* Fail closed: what cannot be recorded is not served. */
        mg_req_respond_error(req, 503, "server_error", "usage_journal_unavailable",
                             "usage recording is unavailable; try again later", 5);
        return MG_STAGE_RESPONDED;
    }
    mg_upstream *up = calloc(1, sizeof(*up));
    if (up == NULL) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "cannot forward right now", 0);
        return MG_STAGE_RESPONDED;
    }
    up->req = req;
    up->w = req->worker;
    up->model = req->model;
    up->requested = req->model;
    mg_timer_init(&up->timer, upstream_timeout, up);
    req->up = up;
    mg_route_retry_budget_earn(&req->worker->retry_bank);
    return start_attempt(up) ? MG_STAGE_PARKED : MG_STAGE_RESPONDED;
}
