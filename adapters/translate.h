/* modelgate — helpers for adapters that translate the canonical OpenAI
 * chat-completions shape to another provider API and back.
 *
 * Request side: field allow-lists (a field an adapter does not know is a
 * 400, never silently dropped), the few OpenAI fields every translation
 * reads the same way (n, max tokens, stop, sampling numbers, data: URLs,
 * tool definitions, tool names), and the message walk that turns the
 * OpenAI conversation into provider turns of content blocks (see
 * mg_adapter_dialect below); an adapter supplies only the shapes of its
 * blocks.
 * Reply side: building OpenAI `chat.completion` documents and
 * `chat.completion.chunk` SSE events from parts, so every adapter answers in
 * exactly the same shape (id "chatcmpl-<request id>", model = what the
 * client asked for).
 *
 * Ownership: functions never keep a pointer to their arguments; a cJSON
 * item passed "taken over" is owned (and on failure freed) by the callee;
 * a returned cJSON item or one stored through an out-parameter belongs to
 * the caller. Strings handed to callbacks (text, urls, ids, names) are
 * borrowed from the request tree for the duration of the call.
 *
 * Error messages written to err are client-safe: they name fields and
 * limits, never credentials or prompt text. MG_ERR means a request the
 * provider cannot take (err set); MG_ENOMEM leaves err alone.
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

/* A number member to copy with mg_adapter_copy_number. */
typedef struct mg_adapter_number {
    const char *name, *to;       /* OpenAI member, provider member */
    double lo, hi;
} mg_adapter_number;

/* The sampling options of a chat request (Bedrock's inferenceConfig,
 * Gemini's generationConfig, Ollama's options, Anthropic's top level),
 * checked and added to dst in this order: max tokens (mg_adapter_max_tokens
 * without a default: added only when the client set it), the numbers (a
 * NULL name ends the list), the stop list (mg_adapter_stop_list, when
 * present). Stops at the first failure. */
typedef struct mg_adapter_sampling {
    const char *max_tokens;      /* member for max tokens; NULL: not copied */
    mg_adapter_number numbers[6];
    const char *stop;            /* member for the stop list */
} mg_adapter_sampling;
mg_rc mg_adapter_put_sampling(const cJSON *json, cJSON *dst, const mg_adapter_sampling *s, char *err, size_t errsz);
/* Finishes an optional member built on the side (system blocks, a sampling
 * object): when rc is MG_OK and obj has members, obj becomes parent[key];
 * otherwise obj is freed. obj is always taken over. Returns rc, or
 * MG_ENOMEM if the member could not be added. */
mg_rc mg_adapter_put_nonempty(mg_rc rc, cJSON *parent, const char *key, cJSON *obj);

/* The message members every translation accepts ("role", "content", "name",
 * "tool_calls", "tool_call_id", "refusal"; name and refusal are not sent). */
extern const char *const mg_adapter_message_fields[];

/* Checks an embeddings request: only model, input, encoding_format (float),
 * dimensions and user; input a string or a non-empty array of strings. */
mg_rc mg_adapter_check_embeddings(const cJSON *json, const char *provider, char *err, size_t errsz);

/* Walks the parts of an array content (a user message): each
 * {type:"text",text} part goes to text(ctx, text); each {type:"image_url"}
 * part to image(ctx, url, err, errsz), url being image_url.url (or
 * image_url itself) when it is a string, else NULL; any other part is
 * MG_ERR "content part type ... is not supported by <provider> models".
 * Stops at the first callback failure and returns it. */
mg_rc mg_adapter_each_part(const cJSON *parts, const char *provider, mg_rc (*text)(void *ctx, const char *text),
                           mg_rc (*image)(void *ctx, const char *url, char *err, size_t errsz), void *ctx,
                           char *err, size_t errsz);

/* One assistant tool call {id, function:{name, arguments}}: name and
 * arguments must be strings (and id too when need_id), arguments a JSON
 * object text ("" counts as {}). On MG_OK, *input is a new object owned by
 * the caller and *id (NULL when absent), *name point into call. */
mg_rc mg_adapter_call_input(const cJSON *call, bool need_id, const char *provider, const char **id,
                            const char **name, cJSON **input, char *err, size_t errsz);

/* One entry of `tools`: must be {type:"function", function:{name}}. On
 * MG_OK *name, *description (NULL when absent) and *parameters (NULL
 * unless an object) point into tool. */
mg_rc mg_adapter_function_tool(const cJSON *tool, const char *provider, const char **name, const char **description,
                               const cJSON **parameters, char *err, size_t errsz);
/* A copy of a tool's parameters, or the empty object schema
 * {"type":"object","properties":{}} when it has none. NULL on ENOMEM. */
cJSON *mg_adapter_tool_schema(const cJSON *parameters);

/* ---- request side: the message walk ----
 *
 * Providers that take turns of content blocks (Anthropic, Bedrock, Gemini)
 * share one walk over the OpenAI messages; a dialect says how the provider
 * spells each block. For each message, after the member check
 * (mg_adapter_message_fields):
 *   system, developer  text only (mg_adapter_text_content): one text block
 *                      appended to the system blocks, in order, wherever
 *                      the message stands.
 *   user               a user turn: a string is one text block; an array is
 *                      walked with mg_adapter_each_part (text -> text block,
 *                      image_url -> the dialect's image block).
 *   assistant          an assistant_role turn: its text (if not empty) as a
 *                      text block, then one tool_use block per tool call
 *                      (mg_adapter_call_input, ids required when call_ids).
 *   tool               a user turn with one tool_result block holding the
 *                      message's text; the block refers to the call by
 *                      tool_call_id, or (result_by_name) by the function
 *                      name of that call in an earlier assistant message.
 *   anything else      MG_ERR naming the role.
 * A block for a turn of the same role as the last one is appended to it
 * (the providers want user and assistant turns to alternate). */
typedef struct mg_adapter_dialect {
    const char *provider;        /* in error messages: "... by <provider> models" */
    const char *turns_key;       /* body member of the turns: "messages", "contents" */
    const char *blocks_key;      /* a turn's member of blocks: "content", "parts" */
    const char *assistant_role;  /* "assistant" (Gemini: "model") */
    bool call_ids;               /* tool calls must carry an id */
    bool result_by_name;         /* tool results name the function, not the call id */
    /* Block builders: return a new block or NULL on ENOMEM. */
    cJSON *(*text)(const char *text);
    /* input is taken over (freed on failure). */
    cJSON *(*tool_use)(const char *id, const char *name, cJSON *input);
    /* ref: the call id, or the function name when result_by_name. */
    cJSON *(*tool_result)(const char *ref, const char *text);
    /* url as mg_adapter_each_part gives it (may be NULL). On MG_OK *block is
     * a new block; MG_ERR with err set for an image the provider refuses. */
    mg_rc (*image)(const char *url, cJSON **block, char *err, size_t errsz);
} mg_adapter_dialect;

/* Translates msgs (the request's `messages`, a non-empty array) into
 * body[d->turns_key]. The system blocks are returned in *system (a new
 * array the caller places and owns; NULL when there are none). */
mg_rc mg_adapter_translate_messages(const mg_adapter_dialect *d, const cJSON *msgs, cJSON *body, cJSON **system,
                                    char *err, size_t errsz);
/* {"text": text}: the text block of Bedrock and Gemini. */
cJSON *mg_adapter_plain_text(const char *text);
/* Adds item to obj under key (to an array when key is NULL); item is taken
 * over (freed when it cannot be added). False on failure or a NULL item. */
bool mg_adapter_put(cJSON *obj, const char *key, cJSON *item);
/* Appends block to blocks; block is taken over. MG_ENOMEM if either is NULL. */
mg_rc mg_adapter_add_block(cJSON *blocks, cJSON *block);

/* Appends "<base>/<seg>" pieces: seg percent-encoded as one path segment. */
mg_rc mg_adapter_append_path_segment(mg_buf *b, const char *seg);
/* Appends a header line to *list. */
mg_rc mg_adapter_add_header(struct curl_slist **list, const char *h);
/* Appends "Name: value" built with snprintf; MG_ERR if over 4 KiB. */
mg_rc mg_adapter_add_headerf(struct curl_slist **list, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Serialises body into out->body (unformatted) and frees nothing. */
mg_rc mg_adapter_set_body(mg_upstream_request *out, const cJSON *body);
/* Builds a JSON request body: fill(req, body, err, errsz) fills a new
 * object, which is then serialised into out->body and freed. */
mg_rc mg_adapter_build_json(mg_req *req, mg_upstream_request *out,
                            mg_rc (*fill)(mg_req *req, cJSON *body, char *err, size_t errsz), char *err,
                            size_t errsz);
/* Adds a header carrying a credential (fmt has one %s for value); one too
 * long for a header line is MG_ERR "provider credential too long". */
mg_rc mg_adapter_add_credential(struct curl_slist **list, const char *fmt, const char *value, char *err,
                                size_t errsz);

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
/* A tool call as mg_adapter_tool_call, from a provider's JSON: id and name
 * NULL become "", args is serialised (absent: "{}"). */
cJSON *mg_adapter_tool_call_json(int index, const char *id, const char *name, const cJSON *args);
/* The string value of v, or def when v is not a string. */
const char *mg_adapter_str(const cJSON *v, const char *def);
/* The number member k of o as a count: -1 when absent, not a number, or not
 * in [0, 9e15] (a provider's token count beyond that is not a count). */
int64_t mg_adapter_num(const cJSON *o, const char *k);

/* An assistant message collected from a provider's reply parts: text
 * parts joined, tool calls in order. Zero-initialise, then init. */
typedef struct mg_adapter_message {
    mg_buf text;
    bool any_text;   /* a text part was seen: content is a string, not null */
    cJSON *calls;    /* OpenAI tool_calls */
} mg_adapter_message;
mg_rc mg_adapter_message_init(mg_adapter_message *m);
mg_rc mg_adapter_message_text(mg_adapter_message *m, const char *text);
/* Appends mg_adapter_tool_call_json(index, id, name, args). */
mg_rc mg_adapter_message_call(mg_adapter_message *m, int index, const char *id, const char *name, const cJSON *args);
/* The joined text, NUL-terminated (never NULL unless ENOMEM). */
const char *mg_adapter_message_cstr(mg_adapter_message *m);
/* mg_adapter_chat_reply with the message (content null when no text part
 * was seen); hands m->calls over. m must still be freed. */
mg_rc mg_adapter_message_reply(mg_req *req, mg_adapter_message *m, const char *finish_reason, mg_buf *out);
void mg_adapter_message_free(mg_adapter_message *m);

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
/* The opening chunk, delta {"role":"assistant","content":""}. */
mg_rc mg_adapter_chunk_role(mg_req *req, mg_buf *out);
/* For providers without a start event: the opening chunk on the first call
 * of a request (remembered in the stream state), nothing later. */
mg_rc mg_adapter_chunk_role_once(mg_req *req, mg_buf *out);
/* A chunk whose delta is {"tool_calls": calls}; calls (one tool call, or
 * an array of them) is taken over. */
mg_rc mg_adapter_chunk_tool_calls(mg_req *req, cJSON *calls, mg_buf *out);
/* Tool-call numbering for providers that number content blocks across
 * text and tool use (OpenAI numbers tool calls alone, from 0): the tool
 * call index of the block with index block_index (a number item); with
 * create, a block not seen yet gets the next index, else *out is -1. */
mg_rc mg_adapter_stream_tool_index(mg_req *req, const cJSON *block_index, bool create, int64_t *out);
/* mg_adapter_stream_error with "the model provider reported an error: "
 * and the first n (at most 60) bytes of the provider's error type
 * ("unknown" when type is NULL). */
mg_rc mg_adapter_stream_error_type(mg_req *req, const char *type, size_t n, mg_buf *out);
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
