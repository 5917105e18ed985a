/* modelgate — writing responses to the client connection.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "router.h"
#include "server.h"
#include "surface.h"

#include <stdio.h>

static void finish(mg_req *req)
{
    req->finished = true;
    mg_conn_request_finished(req->conn);
}

/* Queues the status line and headers. body_len < 0 means chunked (or
 * close-delimited for HTTP/1.0 clients). */
static void append_uint(mg_buf *b, unsigned long long v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    mg_buf_append(b, tmp + i, sizeof(tmp) - i);
}

#define APPEND_LIT(b, s) mg_buf_append((b), (s), sizeof(s) - 1)

/* Queues the status line and headers. body_len < 0 means chunked (or
 * close-delimited for HTTP/1.0 clients). Built with appends rather than
 * printf: this runs for every response. */
static void send_head(mg_req *req, int status, const char *content_type, long long body_len,
                      const char *extra_headers)
{
    mg_buf h = {0};
    bool http10 = req->http->minor == 0;
    bool close = !req->http->keep_alive || mg_conn_will_close(req->conn);
    req->status = status;
    req->head_sent = true;
    mg_buf_reserve(&h, 256);
    APPEND_LIT(&h, "HTTP/1.1 ");
    append_uint(&h, (unsigned)status);
    mg_buf_append(&h, " ", 1);
    mg_buf_append_str(&h, mg_http_status_text(status));
    APPEND_LIT(&h, "\r\n");
    if (content_type) {
        APPEND_LIT(&h, "Content-Type: ");
        mg_buf_append_str(&h, content_type);
        APPEND_LIT(&h, "\r\n");
    }
    if (body_len >= 0) {
        APPEND_LIT(&h, "Content-Length: ");
        append_uint(&h, (unsigned long long)body_len);
        APPEND_LIT(&h, "\r\n");
    } else if (!http10) {
        APPEND_LIT(&h, "Transfer-Encoding: chunked\r\n");
        req->chunked = true;
    } else {
        close = true;   /* HTTP/1.0 has no chunked framing: the close ends the body */
    }
    APPEND_LIT(&h, "X-Request-Id: ");
    mg_buf_append_str(&h, req->request_id);
    APPEND_LIT(&h, "\r\nCache-Control: no-store\r\n");
    if (close) {
        APPEND_LIT(&h, "Connection: close\r\n");
        mg_conn_close_after_write(req->conn);
    } else if (http10) {
        APPEND_LIT(&h, "Connection: keep-alive\r\n");
    }
    if (extra_headers)
        mg_buf_append_str(&h, extra_headers);
    if (req->extra_headers)
        mg_buf_append_str(&h, req->extra_headers);
    APPEND_LIT(&h, "\r\n");
    if (h.p)
        mg_conn_send(req->conn, h.p, h.len);
    mg_buf_free(&h);
}

void mg_req_respond(mg_req *req, int status, const char *content_type, const char *body,
                    size_t len, const char *extra_headers)
{
    if (req->finished)
        return;
    if (req->head_sent) {
        /* A stream is already under way: end it instead. */
        mg_req_stream_end(req);
        return;
    }
    send_head(req, status, content_type, (long long)len, extra_headers);
    if (len > 0 && req->http->method != MG_HTTP_HEAD)
        mg_conn_send(req->conn, body, len);
    finish(req);
}

void mg_req_respond_error(mg_req *req, int status, const char *type, const char *code,
                          const char *message, int retry_after_s)
{
    mg_buf b = {0};
    char extra[64] = "";
    req->error_code = code;
    if (req->surface) {
        req->surface->error(&b, status, type, code, message);
        goto send;
    }
    mg_buf_append_str(&b, "{\"error\":{\"message\":");
    mg_buf_append_json_str(&b, message, strlen(message));
    mg_buf_append_str(&b, ",\"type\":");
    mg_buf_append_json_str(&b, type, strlen(type));
    mg_buf_append_str(&b, ",\"code\":");
    if (code)
        mg_buf_append_json_str(&b, code, strlen(code));
    else
        mg_buf_append_str(&b, "null");
    mg_buf_append_str(&b, "}}");
send:
    if (retry_after_s > 0)
        snprintf(extra, sizeof(extra), "Retry-After: %d\r\n", retry_after_s);
    const char *more = extra;
    /* RFC 6750 §3.1: credentials that were sent but are not good get
     * error="invalid_token" (clients then know a refresh may help); a
     * request without any gets the bare challenge. */
    if (status == 401)
        more = code && strcmp(code, "missing_credentials") != 0
                   ? "WWW-Authenticate: Bearer realm=\"modelgate\", error=\"invalid_token\"\r\n"
                   : "WWW-Authenticate: Bearer realm=\"modelgate\"\r\n";
    mg_req_respond(req, status, "application/json", b.p ? b.p : "", b.len, more[0] ? more : NULL);
    mg_buf_free(&b);
}

void mg_req_stream_begin(mg_req *req, int status, const char *content_type)
{
    if (req->head_sent || req->finished)
        return;
    send_head(req, status, content_type, -1, "X-Accel-Buffering: no\r\n");
}

void mg_req_stream_write(mg_req *req, const char *data, size_t len)
{
    if (len == 0 || req->finished || req->http->method == MG_HTTP_HEAD)
        return;
    if (req->chunked) {
        char size[24];
        int n = snprintf(size, sizeof(size), "%zx\r\n", len);
        mg_conn_send(req->conn, size, (size_t)n);
        mg_conn_send(req->conn, data, len);
        mg_conn_send(req->conn, "\r\n", 2);
    } else {
        mg_conn_send(req->conn, data, len);
    }
}

void mg_req_stream_end(mg_req *req)
{
    if (req->finished)
        return;
    if (req->chunked && req->http->method != MG_HTTP_HEAD)
        mg_conn_send(req->conn, "0\r\n\r\n", 5);
    finish(req);
}

size_t mg_req_pending_out(const mg_req *req) { return mg_conn_pending(req->conn); }
