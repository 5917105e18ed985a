/* modelgate — request objects and routing.
 *
 * The router owns mg_req: it makes one per parsed head (in its own arena),
 * normalises the path once, picks the route (operations endpoints answered
 * here, API routes handed to the pipeline) and frees the request when the
 * connection is done with it.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_ROUTER_H
#define MG_ROUTER_H

#include "pipeline.h"

/* Per-worker scratch space the parser writes into before a head is
 * complete (keeps idle connections small). */
mg_http_request *mg_router_scratch_head(mg_worker *w);

/* Makes a request for a complete, valid head parsed from raw[0..raw_len)
 * (the connection's read buffer). The head and the bytes its strings point
 * at are copied into the request's arena: the read buffer may move while
 * the body arrives. Returns NULL on allocation failure. */
mg_req *mg_router_request_new(mg_worker *w, mg_conn *c, mg_snapshot *snap,
                              const mg_http_request *head, const char *raw, size_t raw_len);
/* Routes and runs a request whose body is complete. */
void mg_router_dispatch(mg_req *req);
/* The client went away (or the server stops) before the request finished:
 * cancel upstream work and record what happened. */
void mg_router_request_abort(mg_req *req);
void mg_router_request_free(mg_req *req);

/* Answers a request that could not even be parsed (or timed out) with an
 * error and marks the connection to close after it. */
void mg_router_fail(mg_conn *c, mg_snapshot *snap, int status, const char *reason);

/* Connection accessors for the modules above the server. */
const char *mg_conn_peer_ip(const mg_conn *c);
mg_worker *mg_conn_worker(const mg_conn *c);
bool mg_conn_is_tls(const mg_conn *c);
void mg_conn_close_after_write(mg_conn *c);
bool mg_conn_will_close(const mg_conn *c);
bool mg_conn_is_head_request(const mg_conn *c);

/* Fills out (33 bytes) with a new random request id (32 hex chars). */
void mg_request_id_new(mg_worker *w, char *out);

#endif
