/* modelgate — helpers for adapters that translate the canonical OpenAI
 * chat-completions shape to another provider API and back.
 *
 * Request side: field allow-lists (a field an adapter does not know is a
 * 400, never silently dropped), the few OpenAI fields every translation
 * reads the same way (n, max tokens, stop, data: URLs, tool names).
 * Reply side: building OpenAI `chat.completion` documents and
 * `chat.completion.chunk` SSE events from parts, so every adapter answers in
 * exactly the same shape (id "chatcmpl-<request id>", model = what the
 * client asked for).
 *
 * Error messages written to err are client-safe: they name fields and
 * limits, never credentials or prompt text.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_ADAPTERS_TRANSLATE_H
#define MG_ADAPTERS_TRANSLATE_H

#include "adapters/adapter.h"

/* ---- request side ---- */

/* MG_ERR (with a message naming the first offending key) if obj has a
 * member not in allowed (NULL-terminated). what names the object in the
 * message, e.g. "request" or "message". */
mg_rc mg_adapter_check_fields(const cJSON *obj, const char *const *allowed, const char *what,
                              const char *provider, char *err, size_t errsz);
/* n must be absent, null or 1. */
mg_rc mg_adapter_check_n(const cJSON *json, const char *provider, char *err, size_t errsz);
/* max_completion_tokens, else max_tokens, else def. MG_ERR unless a
 * positive integer. */
mg_rc mg_adapter_max_tokens(const cJSON *json, int64_t def, int64_t *out, char *err, size_t errsz);
/* `stop` (string or array of strings) as a new array in *out, or NULL when
 * absent/null. */
mg_rc mg_adapter_stop_list(const cJSON *json, cJSON **out, char *err, size_t errsz);
/* Copies a number field (temperature, top_p, ...) from json to dst under
 * dst_name, checking lo <= value <= hi. Absent/null: nothing. */
mg_rc mg_adapter_copy_number(const cJSON *json, const char *name, cJSON *dst, const char *dst_name,
                             double lo, double hi, char *err, size_t errsz);
/* "data:<media type>;base64,<data>" -> the two parts (slices of url).
 * False if url is not a base64 data URL. */
bool mg_adapter_parse_data_url(const char *url, mg_str *media_type, mg_str *data);
/* A message's text: a string, or an array of {type:text} parts joined
 * (other part types are an error: system and tool messages carry text only).
 * null content yields "". Appends to out (NUL-terminated). */
mg_rc mg_adapter_text_content(const cJSON *content, const char *role, mg_buf *out,
                              char *err, size_t errsz);
/* The function name of the assistant tool call with id tool_call_id in the
 * messages before `before`, or NULL. Needed by providers whose tool results
 * name the function instead of the call. */
const char *mg_adapter_tool_name(const cJSON *messages, const cJSON *before, const char *tool_call_id);
/* Appends "<base>/<seg>" pieces: seg percent-encoded as one path segment. */
mg_rc mg_adapter_append_path_segment(mg_buf *b, const char *seg);
/* Appends a header line to *list. */
mg_rc mg_adapter_add_header(struct curl_slist **list, const char *h);
/* Appends "Name: value" built with snprintf; MG_ERR if over 4 KiB. */
mg_rc mg_adapter_add_headerf(struct curl_slist **list, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Serialises body into out->body (unformatted) and frees nothing. */
mg_rc mg_adapter_set_body(mg_upstream_request *out, const cJSON *body);

/* ---- reply side ---- */

/* OpenAI finish_reason strings. */
#define MG_FINISH_STOP "stop"
#define MG_FINISH_LENGTH "length"
#define MG_FINISH_TOOLS "tool_calls"
#define MG_FINISH_FILTER "content_filter"

/* A tool call object {id,type:function,function:{name,arguments}}; index
 * >= 0 adds "index" (stream deltas). name/arguments may be NULL (omitted).
 * Returns a new item or NULL. */
cJSON *mg_adapter_tool_call(int index, const char *id, const char *name, const char *arguments);
/* Appends a complete chat.completion document to out. content may be NULL
 * (JSON null); tool_calls (array, may be NULL or empty) is taken over and
 * freed. Counts content into req->usage.output_chars. */
mg_rc mg_adapter_chat_reply(mg_req *req, const char *content, cJSON *tool_calls,
                            const char *finish_reason, mg_buf *out);
/* Appends one "data: {chat.completion.chunk}\n\n" event with choices[0] =
 * {index:0, delta, finish_reason}. delta is taken over and freed (NULL =
 * {}). finish_reason NULL = JSON null. Counts delta.content into
 * req->usage.output_chars. */
mg_rc mg_adapter_chunk(mg_req *req, cJSON *delta, const char *finish_reason, mg_buf *out);
/* Shortcut: a chunk whose delta is {"content": text}. */
mg_rc mg_adapter_chunk_text(mg_req *req, const char *text, size_t n, mg_buf *out);
/* Ends a stream: the usage chunk (choices: [], usage) when the client asked
 * for it, then "data: [DONE]". Returns MG_DONE (or an error). */
mg_rc mg_adapter_stream_end(mg_req *req, mg_buf *out);
/* An error event {"error":{message,type:"upstream_error",code}} for a
 * provider-reported stream failure; sets req->error_code. Returns MG_DONE
 * (the stream is over) or an error. */
mg_rc mg_adapter_stream_error(mg_req *req, const char *message, mg_buf *out);
/* Appends the OpenAI embeddings list built from vectors (array of arrays of
 * numbers; borrowed). */
mg_rc mg_adapter_embeddings_reply(mg_req *req, const cJSON *vectors, mg_buf *out);
/* Joins the data: lines of one SSE event into out (NUL-terminated); the
 * event: name, if any, into *event_name (a slice of ev). */
mg_rc mg_adapter_sse_payload(mg_str ev, mg_buf *out, mg_str *event_name);

/* Per-request stream state: a small JSON object the adapter may keep
 * counters in across stream events (e.g. tool-call numbering). It lives
 * until the request ends. NULL on allocation failure. */
cJSON *mg_adapter_stream_state(mg_req *req);
int64_t mg_adapter_state_int(mg_req *req, const char *key, int64_t def);
mg_rc mg_adapter_state_set_int(mg_req *req, const char *key, int64_t v);

#endif
