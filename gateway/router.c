/* modelgate — request objects, routing, and the operations endpoints.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "router.h"

#include "auth/auth.h"
#include "auth/sso.h"   /* handlers of the /auth/ routes */
#include "policy/store.h"
#include "usage/usage.h"
#include "console.h"     /* the admin web console */

#include "json.h"
#include "surface.h"

#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "route.h"
#include "server.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct mg_route {
    mg_http_method method;
    const char *path;                /* exact, or a prefix ending in '/' when prefix is set */
    const char *label;
    mg_api api;                      /* MG_API_NONE: answered locally or by admin */
    void (*local)(mg_req *req);      /* unauthenticated operations endpoints */
    bool admin;                      /* authenticate, then the admin handler */
    bool prefix;
    bool any_method;                 /* the handler checks the method itself */
} mg_route;

static void route_healthz(mg_req *req);
static void route_readyz(mg_req *req);
static void route_metrics(mg_req *req);

static const mg_route routes[] = {
    {.method = MG_HTTP_POST, .path = "/v1/chat/completions", .label = "chat", .api = MG_API_CHAT},
    {.method = MG_HTTP_POST, .path = "/v1/embeddings", .label = "embeddings", .api = MG_API_EMBEDDINGS},
    {.method = MG_HTTP_POST, .path = "/v1/messages", .label = "messages", .api = MG_API_MESSAGES},
    {.method = MG_HTTP_GET, .path = "/v1/models", .label = "models", .api = MG_API_MODELS},
    {.method = MG_HTTP_GET, .path = "/healthz", .label = "healthz", .local = route_healthz},
    {.method = MG_HTTP_GET, .path = "/readyz", .label = "readyz", .local = route_readyz},
    {.method = MG_HTTP_GET, .path = "/metrics", .label = "metrics", .local = route_metrics},
    {.method = MG_HTTP_GET, .path = "/admin/v1/usage", .label = "admin_usage", .admin = true},
    {.path = "/admin/v1/policy", .label = "admin_policy", .admin = true, .any_method = true},
    {.path = "/admin/v1/roles/", .label = "admin_policy", .admin = true, .any_method = true, .prefix = true},
    {.path = "/admin/v1/filters/", .label = "admin_policy", .admin = true, .any_method = true, .prefix = true},
    {.path = "/admin/v1/role-mappings", .label = "admin_policy", .admin = true, .any_method = true},
    {.path = "/admin/v1/audit", .label = "admin_policy", .admin = true, .any_method = true},
    {.path = "/admin/v1/keys", .label = "admin_policy", .admin = true, .any_method = true},
    {.path = "/admin/v1/keys/", .label = "admin_policy", .admin = true, .any_method = true, .prefix = true},
    {.method = MG_HTTP_GET, .path = "/auth/login", .label = "auth_login", .local = mg_auth_sso_login},
    {.method = MG_HTTP_GET, .path = "/auth/callback", .label = "auth_callback", .local = mg_auth_sso_callback},
    {.method = MG_HTTP_GET, .path = "/auth/logout", .label = "auth_logout", .local = mg_auth_sso_logout},
    {.method = MG_HTTP_POST, .path = "/auth/logout", .label = "auth_logout", .local = mg_auth_sso_logout},
    {.method = MG_HTTP_GET, .path = "/auth/me", .label = "auth_me", .admin = true},
    /* The web console: after every /admin/v1/ route, so its prefix only
     * catches what they do not. Its handlers authenticate themselves. */
    {.method = MG_HTTP_GET, .path = "/admin/v1/console", .label = "console", .local = mg_console_context},
    {.method = MG_HTTP_GET, .path = "/admin", .label = "console", .local = mg_console_serve},
    {.method = MG_HTTP_GET, .path = "/admin/", .label = "console", .local = mg_console_serve, .prefix = true},
};

static _Thread_local mg_http_request scratch_head;

mg_http_request *mg_router_scratch_head(mg_worker *w)
{
    MG_UNUSED(w);
    return &scratch_head;
}

static uint64_t rng_next(uint64_t s[2])
{
    /* xorshift128+: request ids need uniqueness, not secrecy. */
    uint64_t x = s[0], y = s[1];
    s[0] = y;
    x ^= x << 23;
    s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
    return s[1] + y;
}

void mg_request_id_new(mg_worker *w, char *out)
{
    /* 32 lowercase hex digits: the wall-clock millisecond (48 bits, most
     * significant first) then 80 random bits. Ids sort by time, so the
     * ledger's B-tree indexes on request_id (usage_events, usage_request_ids)
     * grow at their right edge instead of at random pages; the random part
     * keeps them unguessable and unique across workers and instances. */
    static const char hex[] = "0123456789abcdef";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    uint64_t a = rng_next(w->rng), b = rng_next(w->rng);
    for (int i = 0; i < 12; i++)
        out[i] = hex[(ms >> ((11 - i) * 4)) & 15];
    for (int i = 0; i < 16; i++)
        out[12 + i] = hex[(a >> (i * 4)) & 15];
    for (int i = 0; i < 4; i++)
        out[28 + i] = hex[(b >> (i * 4)) & 15];
    out[32] = '\0';
}

static bool request_id_ok(mg_str v)
{
    if (v.n == 0 || v.n > 36)   /* fits req->request_id */
        return false;
    for (size_t i = 0; i < v.n; i++) {
        char ch = v.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

static bool ip_parse(const char *s, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, s, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

/* The client address: the peer, or — only when the peer is a trusted proxy —
 * the right-most X-Forwarded-For entry that is not itself a trusted proxy. */
static void client_ip(mg_req *req)
{
    snprintf(req->client_ip, sizeof(req->client_ip), "%s", mg_conn_peer_ip(req->conn));
    if (!mg_conn_peer_trusted(req->conn))
        return;
    const mg_http_header *xff = mg_http_header_get(req->http, "x-forwarded-for");
    if (xff == NULL)
        return;
    const mg_config *cfg = req->snap->cfg;
    size_t end = xff->value.n;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff->value.p[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && (xff->value.p[a] == ' ' || xff->value.p[a] == '\t'))
            a++;
        while (b > a && (xff->value.p[b - 1] == ' ' || xff->value.p[b - 1] == '\t'))
            b--;
        char ip[64];
        struct sockaddr_storage ss;
        if (b - a == 0 || b - a >= sizeof(ip))
            return;
        memcpy(ip, xff->value.p + a, b - a);
        ip[b - a] = '\0';
        if (!ip_parse(ip, &ss))
            return;
        bool trusted = false;
        for (size_t i = 0; i < cfg->ntrusted_proxies && !trusted; i++)
            trusted = mg_cidr_match(&cfg->trusted_proxies[i], (struct sockaddr *)&ss);
        memcpy(req->client_ip, ip, b - a + 1);
        if (!trusted)
            return;
        end = start > 0 ? start - 1 : 0;
    }
}

static void free_json(void *p) { cJSON_Delete(p); }

/* Points s at the same bytes inside copy when it pointed into raw. */
static void rebase(mg_str *s, const char *raw, size_t raw_len, const char *copy)
{
    if (s->p >= raw && s->p + s->n <= raw + raw_len)
        s->p = copy + (s->p - raw);
}

mg_req *mg_router_request_new(mg_worker *w, mg_conn *c, mg_snapshot *snap,
                              const mg_http_request *head, const char *raw, size_t raw_len)
{
    mg_pool *pool = mg_pool_new(16384);   /* request + head copy in one block */
    if (pool == NULL)
        return NULL;
    mg_req *req = mg_pool_calloc(pool, sizeof(*req));
    mg_http_request *h = mg_pool_alloc(pool, sizeof(*h));
    char *copy = mg_pool_alloc(pool, raw_len ? raw_len : 1);
    if (req == NULL || h == NULL || copy == NULL) {
        mg_pool_free(pool);
        return NULL;
    }
    /* Copy only the used part of the header array. */
    memcpy(h, head, offsetof(mg_http_request, headers));
    memcpy(h->headers, head->headers, head->nheaders * sizeof(head->headers[0]));
    memcpy(&h->nheaders, &head->nheaders, sizeof(*h) - offsetof(mg_http_request, nheaders));
    /* The parser's strings point into the connection's read buffer, which a
     * body arriving in later reads may move: point them at our own copy. */
    memcpy(copy, raw, raw_len);
    rebase(&h->method_str, raw, raw_len, copy);
    rebase(&h->target, raw, raw_len, copy);
    rebase(&h->path, raw, raw_len, copy);
    rebase(&h->query, raw, raw_len, copy);
    rebase(&h->host, raw, raw_len, copy);
    for (size_t i = 0; i < h->nheaders; i++) {
        rebase(&h->headers[i].name, raw, raw_len, copy);
        rebase(&h->headers[i].value, raw, raw_len, copy);
    }
    for (size_t i = 0; i < h->nconn_tokens; i++)
        rebase(&h->conn_tokens[i], raw, raw_len, copy);
    req->pool = pool;
    req->conn = c;
    req->worker = w;
    req->snap = mg_snapshot_ref(snap);
    req->http = h;
    req->t_start_us = mg_now_us();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    req->t_start_wall_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
    req->usage.prompt_tokens = -1;
    req->usage.completion_tokens = -1;
    const mg_http_header *rid = mg_http_header_get(h, "x-request-id");
    if (rid && request_id_ok(rid->value) && mg_conn_peer_trusted(c)) {
        memcpy(req->request_id, rid->value.p, rid->value.n);
        req->request_id[rid->value.n] = '\0';
    } else {
        mg_request_id_new(w, req->request_id);
    }
    client_ip(req);
    return req;
}

void mg_router_request_abort(mg_req *req)
{
    if (req->up)
        mg_proxy_cancel(req);
    if (req->job) {
        /* The pool thread keeps running; its completion sees no request. */
        req->job_orphan(req->job);
        req->job = NULL;
    }
}

void mg_router_request_free(mg_req *req)
{
    if (req->route)
        mg_pipeline_record(req);
    mg_router_request_abort(req);
    mg_snapshot_unref(req->snap);
    mg_pool_free(req->pool);
}

void mg_router_fail(mg_conn *c, mg_snapshot *snap, int status, const char *reason)
{
    char rid[40], ts[40];
    mg_buf b = {0};
    mg_request_id_new(mg_conn_worker(c), rid);
    mg_buf_printf(&b, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                      "X-Request-Id: %s\r\nConnection: close\r\n",
                  status, mg_http_status_text(status), rid);
    mg_buf body = {0};
    mg_buf_append_str(&body, "{\"error\":{\"message\":");
    mg_buf_append_json_str(&body, reason, strlen(reason));
    mg_buf_printf(&body, ",\"type\":\"invalid_request_error\",\"code\":\"%s\"}}",
                  status == 408 ? "request_timeout" : status == 413 ? "body_too_large"
                  : status == 414 ? "uri_too_long" : status == 431 ? "headers_too_large"
                  : status == 501 ? "not_implemented" : status == 505 ? "http_version_not_supported"
                  : "bad_request");
    mg_buf_printf(&b, "Content-Length: %zu\r\n\r\n", body.len);
    mg_buf_append(&b, body.p, body.len);
    if (b.p)
        mg_conn_send(c, b.p, b.len);
    mg_conn_close_after_write(c);
    if (mg_access_log_enabled()) {
        mg_buf line = {0};
        mg_log_timestamp(ts, sizeof(ts));
        mg_buf_printf(&line, "{\"ts\":\"%s\",\"request_id\":\"%s\",\"client\":\"%s\",\"status\":%d,"
                             "\"route\":\"invalid\",\"error\":",
                      ts, rid, mg_conn_peer_ip(c), status);
        mg_buf_append_json_str(&line, reason, strlen(reason));
        mg_buf_append(&line, "}", 1);
        if (line.p)
            mg_access_log_line(line.p, line.len);
        mg_buf_free(&line);
    }
    MG_UNUSED(snap);
    mg_buf_free(&body);
    mg_buf_free(&b);
}

/* ---------------------------------------------------------------- body */

static bool parse_body(mg_req *req)
{
    const mg_http_header *ct = mg_http_header_get(req->http, "content-type");
    if (ct == NULL || ct->value.n < 16 || !mg_str_ieq(mg_str_make(ct->value.p, 16), MG_STR_LIT("application/json")) ||
        (ct->value.n > 16 && ct->value.p[16] != ';' && ct->value.p[16] != ' ')) {
        mg_req_respond_error(req, 415, "invalid_request_error", "unsupported_media_type",
                             "Content-Type must be application/json", 0);
        return false;
    }
    if (!mg_utf8_valid(req->body.p, req->body.n)) {
        mg_req_respond_error(req, 400, "invalid_request_error", "invalid_json",
                             "request body is not valid UTF-8", 0);
        return false;
    }
    const char *why = NULL;
    cJSON *json = mg_json_parse(req->body.p, req->body.n, &why);
    if (json == NULL && why && strcmp(why, "out of memory") == 0) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return false;
    }
    if (json == NULL) {
        char msg[160];
        snprintf(msg, sizeof(msg), "request body is not valid JSON: %s", why ? why : "empty");
        mg_req_respond_error(req, 400, "invalid_request_error", "invalid_json", msg, 0);
        return false;
    }
    mg_pool_cleanup_add(req->pool, free_json, json);
    req->json = json;
    if (!cJSON_IsObject(json)) {
        mg_req_respond_error(req, 400, "invalid_request_error", "invalid_json",
                             "request body must be a JSON object", 0);
        return false;
    }
    const char *dup = mg_json_find_duplicate(json);
    if (dup) {
        char msg[160];
        snprintf(msg, sizeof(msg), "duplicate JSON member \"%.64s\"", dup);
        mg_req_respond_error(req, 400, "invalid_request_error", "invalid_json", msg, 0);
        return false;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(json, "model");
    if (!cJSON_IsString(model) || model->valuestring[0] == '\0') {
        mg_req_respond_error(req, 400, "invalid_request_error", "missing_model",
                             "\"model\" must be a non-empty string", 0);
        return false;
    }
    /* Our own copy: adapters rewrite "model" in the tree for the upstream. */
    req->model_name = mg_pool_strndup(req->pool, model->valuestring, strlen(model->valuestring));
    if (req->model_name == NULL) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return false;
    }
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(json, "stream");
    if (stream && !cJSON_IsBool(stream) && !cJSON_IsNull(stream)) {
        mg_req_respond_error(req, 400, "invalid_request_error", "invalid_value",
                             "\"stream\" must be a boolean", 0);
        return false;
    }
    req->stream = cJSON_IsTrue(stream);
    if (req->stream && req->api != MG_API_CHAT && req->api != MG_API_MESSAGES) {
        mg_req_respond_error(req, 400, "invalid_request_error", "invalid_value",
                             "\"stream\" is not supported on this endpoint", 0);
        return false;
    }
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(json, "stream_options");
    req->client_wants_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    return true;
}

/* ---------------------------------------------------------------- routes */

void mg_router_dispatch(mg_req *req)
{
    const mg_http_request *h = req->http;
    if (h->upgrade) {
        /* Never switch protocols: the gateway is not a tunnel. */
        const mg_http_header *up = mg_http_header_get(h, "upgrade");
        if (up == NULL || !mg_str_ieq_c(up->value, "h2c")) {
            req->route = "invalid";
            mg_conn_close_after_write(req->conn);
            mg_req_respond_error(req, 400, "invalid_request_error", "upgrade_not_supported",
                                 "protocol upgrades are not supported", 0);
            return;
        }
    }
    char *path = mg_pool_alloc(req->pool, h->path.n + 1);
    if (path == NULL || mg_http_normalize_path(h->path, path, h->path.n + 1) != MG_OK) {
        req->route = "invalid";
        mg_conn_close_after_write(req->conn);
        mg_req_respond_error(req, 400, "invalid_request_error", "invalid_path",
                             "request path is not acceptable", 0);
        return;
    }
    req->path = path;
    const mg_route *found = NULL;
    bool path_known = false;
    for (size_t i = 0; i < MG_ARRAY_LEN(routes); i++) {
        if (routes[i].prefix ? strncmp(routes[i].path, path, strlen(routes[i].path)) != 0
                             : strcmp(routes[i].path, path) != 0)
            continue;
        path_known = true;
        if (routes[i].any_method || routes[i].method == h->method ||
            (routes[i].method == MG_HTTP_GET && h->method == MG_HTTP_HEAD && routes[i].local)) {
            found = &routes[i];
            break;
        }
    }
    if (found && req->conn && mg_conn_ops(req->conn) && found->local != route_healthz &&
        found->local != route_readyz && found->local != route_metrics) {
        req->route = "not_found";
        mg_req_respond_error(req, 404, "invalid_request_error", "not_found",
                             "this listener serves only /healthz, /readyz and /metrics", 0);
        return;
    }
    if (found == NULL) {
        req->route = path_known ? "method_not_allowed" : "not_found";
        if (path_known)
            mg_req_respond_error(req, 405, "invalid_request_error", "method_not_allowed",
                                 "method not allowed on this path", 0);
        else
            mg_req_respond_error(req, 404, "invalid_request_error", "not_found",
                                 "no such endpoint", 0);
        return;
    }
    req->route = found->label;
    req->api = found->api;
    if (found->local) {
        found->local(req);
        return;
    }
    if (found->api == MG_API_MESSAGES)
        req->surface = &mg_surface_anthropic;   /* errors from here on in its shape */
    req->stages = found->admin ? mg_pipeline_admin : mg_pipeline_api;
    req->nstages = found->admin ? mg_pipeline_admin_len : mg_pipeline_api_len;
    req->next_stage = 0;
    mg_pipeline_run(req);
}

/* The parse stage: runs after authentication, so an unauthenticated caller
 * never makes the gateway parse a large body. */
mg_stage_rc mg_router_parse_stage(mg_req *req)
{
    if (req->http->method != MG_HTTP_POST)
        return MG_STAGE_NEXT;
    if (!parse_body(req))
        return MG_STAGE_RESPONDED;
    if (req->surface) {
        /* Policy and adapters see the canonical (OpenAI chat) form only. */
        char err[200] = "";
        mg_rc rc = req->surface->request(req, err, sizeof(err));
        if (rc == MG_ENOMEM) {
            mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
            return MG_STAGE_RESPONDED;
        }
        if (rc != MG_OK) {
            mg_req_respond_error(req, 400, "invalid_request_error", "unsupported_request",
                                 err[0] ? err : "the request cannot be translated", 0);
            return MG_STAGE_RESPONDED;
        }
        req->api = MG_API_CHAT;
        req->json_modified = true;
    }
    return MG_STAGE_NEXT;
}

static void route_healthz(mg_req *req)
{
    static const char body[] = "{\"status\":\"ok\"}";
    mg_req_respond(req, 200, "application/json", body, sizeof(body) - 1, NULL);
}

/* Ready = SPEC §4: the database reachable (when one is configured: the
 * policy store's connection), the IdP's metadata loaded (when `oidc` is
 * configured), at least one upstream usable (a breaker that would let a
 * request through), the usage journal writable (when the ledger is on),
 * and not draining. The body names each check, so an operator sees which
 * one failed. */
static void route_readyz(mg_req *req)
{
    const mg_config *cfg = req->snap->cfg;
    bool draining = mg_server_draining();
    bool upstream = mg_route_any_usable(req->snap);
    int db = cfg->database_url ? mg_policy_store_connected() : -1;   /* -1: not configured */
    int idp = cfg->oidc.present ? mg_auth_idp_ready() : -1;
    int journal = cfg->journal_dir ? mg_usage_healthy() : -1;
    bool ready = !draining && upstream && db != 0 && idp != 0 && journal != 0;
    static const char *const tri[] = {"false", "true", "null"};
    char body[256];
    int n = snprintf(body, sizeof(body),
                     "{\"status\":\"%s\",\"checks\":{\"upstream\":%s,\"database\":%s,\"idp\":%s,"
                     "\"usage_journal\":%s}}",
                     draining ? "draining" : ready ? "ready" : "not_ready", upstream ? "true" : "false",
                     tri[db < 0 ? 2 : db], tri[idp < 0 ? 2 : idp], tri[journal < 0 ? 2 : journal]);
    mg_req_respond(req, ready ? 200 : 503, "application/json", body,
                   n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0, NULL);
}

static void route_metrics(mg_req *req)
{
    mg_buf out = {0};
    if (mg_metrics_render(&out, req->snap->generation) != MG_OK) {
        mg_buf_free(&out);
        mg_req_respond_error(req, 500, "server_error", "internal_error", "metrics unavailable", 0);
        return;
    }
    mg_req_respond(req, 200, "text/plain; version=0.0.4", out.p, out.len, NULL);
    mg_buf_free(&out);
}
