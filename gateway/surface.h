/* modelgate — client API surfaces.
 *
 * The gateway's canonical form is the OpenAI chat-completions API: policy
 * reads it, adapters translate it to providers and back. A surface is a
 * client-facing API with another shape (Anthropic's Messages API); it turns
 * the client's body into the canonical tree before the pipeline runs, and the
 * canonical reply, stream events and errors back into its own shape. The
 * OpenAI surfaces need no translation (req->surface is NULL).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_SURFACE_H
#define MG_SURFACE_H

#include "pipeline.h"

typedef struct mg_surface_ops {
    const char *name;
    /* Rewrites req->json (the client's parsed body) in place into the
     * canonical OpenAI chat tree (same root, same single owner). Sets
     * req->stream and
     * req->client_wants_usage for the canonical request (a surface that needs
     * token counts in its stream sets client_wants_usage = true). MG_ERR with
     * a client-safe message in err when something cannot be translated. */
    mg_rc (*request)(mg_req *req, char *err, size_t errsz);
    /* A canonical chat.completion JSON document -> the client's reply. */
    mg_rc (*reply)(mg_req *req, const char *body, size_t len, mg_buf *out);
    /* Canonical SSE bytes (zero or more complete "data: ...\n\n" events,
     * including the final "data: [DONE]") -> the client's stream bytes.
     * Keeps its state in req->surface_state (allocate from req->pool). */
    mg_rc (*stream)(mg_req *req, const char *sse, size_t len, mg_buf *out);
    /* An error body in the surface's shape; type/code/message as given to
     * mg_req_respond_error (OpenAI vocabulary). */
    mg_rc (*error)(mg_buf *out, int status, const char *type, const char *code, const char *message);
    /* For a stream that breaks after it started: a final error event. */
    mg_rc (*stream_error)(mg_req *req, const char *code, const char *message, mg_buf *out);
} mg_surface_ops;

extern const mg_surface_ops mg_surface_anthropic;

#endif
