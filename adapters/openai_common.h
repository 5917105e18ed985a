/* modelgate — the OpenAI wire format, shared by the adapters that speak it
 * (openai.c for OpenAI-compatible servers, azure.c for Azure OpenAI). They
 * differ only in URL and credential header; bodies, replies and streams are
 * the same, so the code for them lives once, in openai.c.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_ADAPTERS_OPENAI_COMMON_H
#define MG_ADAPTERS_OPENAI_COMMON_H

#include "adapters/adapter.h"

/* Writes the request body for req into out->body: the client's tree with
 * model set to the deployment's model and, for streams,
 * stream_options.include_usage forced on. Sets out->method and out->stream.
 * Mutates req->json (idempotently, so a retry rebuilds the same body). */
mg_rc mg_openai_build_body(mg_req *req, mg_upstream_request *out, char *err, size_t errsz);
/* "/chat/completions" or "/embeddings" for req->api, NULL otherwise. */
const char *mg_openai_path(const mg_req *req);
/* Adds Content-Type, Accept and "Expect:" (no 100-continue round trip). */
mg_rc mg_openai_common_headers(const mg_req *req, mg_upstream_request *out);
/* The reply and stream_event ops of the OpenAI adapter (see adapter.h). */
mg_rc mg_openai_reply(mg_req *req, const char *body, size_t len, mg_buf *out);
mg_rc mg_openai_stream_event(mg_req *req, mg_str ev, mg_buf *out);

#endif
