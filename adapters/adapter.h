/* modelgate — provider adapters.
 *
 * One const ops table per provider API in its own file (curl's TLS backends,
 * HAProxy's flt_ops); adapters.c lists them in one array. Adding a provider
 * is one new file and one line there; the core never branches on a
 * provider's name.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_ADAPTER_H
#define MG_ADAPTER_H

#include "gateway/pipeline.h"

#include <curl/curl.h>

/* What the adapter builds for the proxy to send. */
typedef struct mg_upstream_request {
    mg_buf url;                    /* NUL-terminated */
    struct curl_slist *headers;    /* owned; freed by the proxy */
    mg_buf body;                   /* request body; empty for GET */
    const char *method;            /* "POST" or "GET" */
    bool stream;                   /* expect a streamed reply */
} mg_upstream_request;

typedef struct mg_adapter_ops {
    const char *type;              /* config `type:` */
    /* Builds the upstream request for req (req->api, req->json,
     * req->deployment, req->provider). On a request the provider cannot
     * take, returns MG_ERR with a client-safe message in err. */
    mg_rc (*build)(mg_req *req, mg_upstream_request *out, char *err, size_t errsz);
    /* Translates a complete 2xx reply into the client's API shape (appended
     * to out) and fills req->usage. MG_ERR if the reply is unusable. */
    mg_rc (*reply)(mg_req *req, const char *body, size_t len, mg_buf *out);
    /* One upstream stream event (the raw event text, without the blank line
     * that ends it). Appends zero or more complete client SSE events to
     * out and updates req->usage. Returns MG_DONE after the final event. */
    mg_rc (*stream_event)(mg_req *req, mg_str event, mg_buf *out);
    /* Content type of the upstream's stream ("text/event-stream",
     * "application/x-ndjson", "application/vnd.amazon.eventstream"). */
    const char *stream_content_type;
    /* Optional: finds the next complete event in buffered stream bytes.
     * Returns the bytes to consume (event plus its framing), 0 when the
     * event is not complete yet, or (size_t)-1 on broken framing; *ev is
     * set to the event the adapter's stream_event receives. NULL means
     * SSE framing (events end at a blank line). */
    size_t (*next_event)(const char *p, size_t n, mg_str *ev);
} mg_adapter_ops;

/* The default SSE splitter (and the newline splitter for NDJSON streams),
 * exposed so adapters can reuse them. */
size_t mg_adapter_next_sse_event(const char *p, size_t n, mg_str *ev);
size_t mg_adapter_next_line(const char *p, size_t n, mg_str *ev);

/* NULL if no adapter implements type. */
const mg_adapter_ops *mg_adapter_find(const char *type);

/* Helpers shared by adapters. */
/* Appends "data: <json>\n\n". */
mg_rc mg_adapter_sse_data(mg_buf *out, const char *json, size_t n);
/* Rough token estimate for text when a provider reports no usage:
 * ~4 bytes per token, at least 1 for non-empty text. */
int64_t mg_adapter_estimate_tokens(size_t bytes);

#endif
