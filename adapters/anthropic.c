/* modelgate — Anthropic Messages API (POST {base_url}/v1/messages).
 *
 * Request: system (and developer) messages become the top-level `system`
 * blocks; user/assistant/tool messages become alternating user/assistant
 * turns of content blocks (consecutive turns of one role are merged, tool
 * results go into a user turn as tool_result blocks, assistant tool_calls
 * become tool_use blocks). max_tokens is mandatory for Anthropic: when the
 * client sends neither max_tokens nor max_completion_tokens, 4096 is used.
 * OpenAI features with no Anthropic equivalent (n > 1, logprobs, seed,
 * penalties, response_format json) are refused with a 400, never dropped.
 *
 * Reply/stream: text blocks become message.content, tool_use blocks
 * tool_calls; the stream's content_block_* events become chunk deltas with
 * tool calls numbered 0.. in order of appearance.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "gateway/json.h"
#include "adapters/translate.h"

#include <stdio.h>

#define ANTHROPIC_DEFAULT_MAX_TOKENS 4096
#define ANTHROPIC_VERSION "2023-06-01"

/* `user` becomes metadata.user_id; stream_options only decides whether the
 * client gets a usage chunk, which the gateway produces itself. */
static const char *const chat_fields[] = {
    "model", "messages", "stream", "stream_options", "user", "temperature", "top_p",
    "max_tokens", "max_completion_tokens", "stop", "tools", "tool_choice", "parallel_tool_calls",
    "n", "response_format", NULL};
static cJSON *text_block(const char *text)
{
    cJSON *b = cJSON_CreateObject();
    if (b && cJSON_AddStringToObject(b, "type", "text") && cJSON_AddStringToObject(b, "text", text))
        return b;
    cJSON_Delete(b);
    return NULL;
}

static mg_rc image_block(const char *url, cJSON **block, char *err, size_t errsz)
{
    if (url == NULL) {
        snprintf(err, errsz, "image_url parts need a url");
        return MG_ERR;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON *src = cJSON_CreateObject();
    bool ok = b && src && cJSON_AddStringToObject(b, "type", "image") && cJSON_AddItemToObject(b, "source", src);
    if (!ok) {
        cJSON_Delete(src);
        cJSON_Delete(b);
        return MG_ENOMEM;
    }
    mg_str mt, data;
    if (mg_adapter_parse_data_url(url, &mt, &data)) {
        char media[64];
        if (mt.n >= sizeof(media)) {
            cJSON_Delete(b);
            snprintf(err, errsz, "image media type too long");
            return MG_ERR;
        }
        memcpy(media, mt.p, mt.n);
        media[mt.n] = '\0';
        ok = cJSON_AddStringToObject(src, "type", "base64") && cJSON_AddStringToObject(src, "media_type", media) &&
             cJSON_AddStringToObject(src, "data", data.p);
    } else if (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0) {
        ok = cJSON_AddStringToObject(src, "type", "url") && cJSON_AddStringToObject(src, "url", url);
    } else {
        cJSON_Delete(b);
        snprintf(err, errsz, "image urls must be http(s) or base64 data: URLs");
        return MG_ERR;
    }
    if (!ok) {
        cJSON_Delete(b);
        return MG_ENOMEM;
    }
    *block = b;
    return MG_OK;
}

static cJSON *tool_use_block(const char *id, const char *name, cJSON *input)
{
    cJSON *b = cJSON_CreateObject();
    if (b == NULL || !cJSON_AddStringToObject(b, "type", "tool_use") || !cJSON_AddStringToObject(b, "id", id) ||
        !cJSON_AddStringToObject(b, "name", name) || !cJSON_AddItemToObject(b, "input", input)) {
        cJSON_Delete(input);
        cJSON_Delete(b);
        return NULL;
    }
    return b;
}

static cJSON *tool_result_block(const char *id, const char *text)
{
    cJSON *b = cJSON_CreateObject();
    if (b && cJSON_AddStringToObject(b, "type", "tool_result") && cJSON_AddStringToObject(b, "tool_use_id", id) &&
        cJSON_AddStringToObject(b, "content", text))
        return b;
    cJSON_Delete(b);
    return NULL;
}

/* System messages anywhere in the conversation are hoisted into the one
 * top-level system prompt, in order. */
static const mg_adapter_dialect dialect = {
    .provider = "anthropic",
    .turns_key = "messages",
    .blocks_key = "content",
    .assistant_role = "assistant",
    .call_ids = true,
    .text = text_block,
    .image = image_block,
    .tool_use = tool_use_block,
    .tool_result = tool_result_block,
};

static mg_rc translate_messages(const cJSON *msgs, cJSON *body, char *err, size_t errsz)
{
    cJSON *system;
    mg_rc rc = mg_adapter_translate_messages(&dialect, msgs, body, &system, err, errsz);
    if (rc == MG_OK && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(body, "messages")) == 0) {
        snprintf(err, errsz, "anthropic models need at least one user or assistant message");
        rc = MG_ERR;
    }
    return system ? mg_adapter_put_nonempty(rc, body, "system", system) : rc;
}

static mg_rc translate_tools(const cJSON *json, cJSON *body, char *err, size_t errsz)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(json, "tools");
    if (tools && !cJSON_IsNull(tools)) {
        cJSON *out = cJSON_AddArrayToObject(body, "tools");
        if (!cJSON_IsArray(tools) || out == NULL) {
            snprintf(err, errsz, "tools must be an array");
            return out ? MG_ERR : MG_ENOMEM;
        }
        const cJSON *t;
        cJSON_ArrayForEach(t, tools) {
            const char *name, *desc;
            const cJSON *params;
            mg_rc rc = mg_adapter_function_tool(t, "anthropic", &name, &desc, &params, err, errsz);
            if (rc != MG_OK)
                return rc;
            cJSON *o = cJSON_CreateObject();
            if (o == NULL || !cJSON_AddItemToArray(out, o) || !cJSON_AddStringToObject(o, "name", name) ||
                (desc && !cJSON_AddStringToObject(o, "description", desc)) ||
                !mg_adapter_put(o, "input_schema", mg_adapter_tool_schema(params)))
                return MG_ENOMEM;
        }
    }
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(json, "tool_choice");
    const cJSON *ptc = cJSON_GetObjectItemCaseSensitive(json, "parallel_tool_calls");
    if ((tc == NULL || cJSON_IsNull(tc)) && !cJSON_IsFalse(ptc))
        return MG_OK;
    cJSON *choice = cJSON_AddObjectToObject(body, "tool_choice");
    if (choice == NULL)
        return MG_ENOMEM;
    const char *type = "auto";
    const cJSON *fname = NULL;
    if (cJSON_IsString(tc)) {
        if (strcmp(tc->valuestring, "auto") == 0)
            type = "auto";
        else if (strcmp(tc->valuestring, "none") == 0)
            type = "none";
        else if (strcmp(tc->valuestring, "required") == 0)
            type = "any";
        else
            type = NULL;
    } else if (cJSON_IsObject(tc)) {
        fname = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tc, "function"), "name");
        type = cJSON_IsString(fname) ? "tool" : NULL;
    } else if (tc && !cJSON_IsNull(tc)) {
        type = NULL;
    }
    if (type == NULL) {
        snprintf(err, errsz, "tool_choice must be auto, none, required or a function");
        return MG_ERR;
    }
    if (!cJSON_AddStringToObject(choice, "type", type) ||
        (fname && !cJSON_AddStringToObject(choice, "name", fname->valuestring)))
        return MG_ENOMEM;
    if (cJSON_IsFalse(ptc) && strcmp(type, "none") != 0 && !cJSON_AddTrueToObject(choice, "disable_parallel_tool_use"))
        return MG_ENOMEM;
    return MG_OK;
}

/* max_tokens goes first, with a default: Anthropic requires it. */
static const mg_adapter_sampling sampling = {
    .numbers = {{"temperature", "temperature", 0, 1}, {"top_p", "top_p", 0, 1}},
    .stop = "stop_sequences",
};

static mg_rc build_body(mg_req *req, cJSON *body, char *err, size_t errsz)
{
    const cJSON *json = req->json;
    mg_rc rc = mg_adapter_check_fields(json, chat_fields, "request", "anthropic", err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_check_n(json, "anthropic", err, errsz);
    if (rc != MG_OK)
        return rc;
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(json, "response_format");
    const cJSON *rft = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (rf && !cJSON_IsNull(rf) && !(cJSON_IsString(rft) && strcmp(rft->valuestring, "text") == 0)) {
        snprintf(err, errsz, "response_format json_object/json_schema is not supported by anthropic models");
        return MG_ERR;
    }
    int64_t max_tokens;
    rc = mg_adapter_max_tokens(json, ANTHROPIC_DEFAULT_MAX_TOKENS, &max_tokens, err, errsz);
    if (rc != MG_OK)
        return rc;
    if (!cJSON_AddStringToObject(body, "model", req->deployment->model) ||
        !cJSON_AddNumberToObject(body, "max_tokens", (double)max_tokens))
        return MG_ENOMEM;
    rc = translate_messages(cJSON_GetObjectItemCaseSensitive(json, "messages"), body, err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_put_sampling(json, body, &sampling, err, errsz);
    if (rc == MG_OK)
        rc = translate_tools(json, body, err, errsz);
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(json, "user");
    if (rc == MG_OK && cJSON_IsString(user)) {
        cJSON *md = cJSON_AddObjectToObject(body, "metadata");
        if (md == NULL || !cJSON_AddStringToObject(md, "user_id", user->valuestring))
            rc = MG_ENOMEM;
    }
    if (rc == MG_OK && req->stream && !cJSON_AddTrueToObject(body, "stream"))
        rc = MG_ENOMEM;
    return rc;
}

static mg_rc anthropic_build(mg_req *req, mg_upstream_request *out, char *err, size_t errsz)
{
    if (req->api != MG_API_CHAT) {
        snprintf(err, errsz, "anthropic models only serve chat completions (no embeddings)");
        return MG_ERR;
    }
    mg_rc rc = mg_adapter_build_json(req, out, build_body, err, errsz);
    if (rc != MG_OK)
        return rc;
    const mg_cfg_provider *p = req->provider;
    if (mg_buf_printf(&out->url, "%s/v1/messages", p->base_url) != MG_OK)
        return MG_ENOMEM;
    out->method = "POST";
    out->stream = req->stream;
    rc = mg_adapter_add_header(&out->headers, "content-type: application/json");
    if (rc == MG_OK)
        rc = mg_adapter_add_header(&out->headers, "anthropic-version: " ANTHROPIC_VERSION);
    if (rc == MG_OK)
        rc = mg_adapter_add_header(&out->headers,
                                   req->stream ? "accept: text/event-stream" : "accept: application/json");
    if (rc == MG_OK)
        rc = mg_adapter_add_header(&out->headers, "Expect:");
    if (rc == MG_OK && p->api_key)
        rc = mg_adapter_add_credential(&out->headers, "x-api-key: %s", p->api_key, err, errsz);
    return rc;
}

/* ------------------------------------------------------------ replies */

static const char *finish_reason(const cJSON *stop_reason)
{
    if (!cJSON_IsString(stop_reason))
        return MG_FINISH_STOP;
    const char *s = stop_reason->valuestring;
    if (strcmp(s, "max_tokens") == 0 || strcmp(s, "model_context_window_exceeded") == 0)
        return MG_FINISH_LENGTH;
    if (strcmp(s, "tool_use") == 0)
        return MG_FINISH_TOOLS;
    if (strcmp(s, "refusal") == 0)
        return MG_FINISH_FILTER;
    return MG_FINISH_STOP;   /* end_turn, stop_sequence, pause_turn */
}

/* Cached prompt tokens are billed input too, so they count as prompt. */
static void take_usage(mg_req *req, const cJSON *usage)
{
    int64_t in = mg_adapter_num(usage, "input_tokens");
    if (in >= 0) {
        int64_t cc = mg_adapter_num(usage, "cache_creation_input_tokens");
        int64_t cr = mg_adapter_num(usage, "cache_read_input_tokens");
        req->usage.prompt_tokens = in + (cc > 0 ? cc : 0) + (cr > 0 ? cr : 0);
    }
    int64_t outt = mg_adapter_num(usage, "output_tokens");
    if (outt >= 0)
        req->usage.completion_tokens = outt;
}

static mg_rc anthropic_reply(mg_req *req, const char *body, size_t len, mg_buf *out)
{
    cJSON *j = mg_json_parse_upstream(body, len);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(j, "content");
    if (!cJSON_IsObject(j) || !cJSON_IsArray(content)) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    take_usage(req, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    mg_adapter_message msg = {0};
    mg_rc rc = mg_adapter_message_init(&msg);
    const cJSON *b;
    cJSON_ArrayForEach(b, content) {
        if (rc != MG_OK)
            break;
        const char *type = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(b, "type"), "");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "text");
        if (strcmp(type, "text") == 0 && cJSON_IsString(t))
            rc = mg_adapter_message_text(&msg, t->valuestring);
        else if (strcmp(type, "tool_use") == 0)
            rc = mg_adapter_message_call(&msg, -1, mg_adapter_str(cJSON_GetObjectItemCaseSensitive(b, "id"), NULL),
                                         mg_adapter_str(cJSON_GetObjectItemCaseSensitive(b, "name"), NULL),
                                         cJSON_GetObjectItemCaseSensitive(b, "input"));
        /* thinking and redacted_thinking blocks are not part of the
         * OpenAI message. */
    }
    const char *fr = finish_reason(cJSON_GetObjectItemCaseSensitive(j, "stop_reason"));
    if (rc == MG_OK)
        rc = mg_adapter_message_reply(req, &msg, fr, out);
    mg_adapter_message_free(&msg);
    cJSON_Delete(j);
    return rc;
}

static mg_rc anthropic_stream_event(mg_req *req, mg_str ev, mg_buf *out)
{
    mg_buf data = {0};
    mg_str name;
    mg_rc rc = mg_adapter_sse_payload(ev, &data, &name);
    if (rc != MG_OK || data.len == 0) {
        mg_buf_free(&data);
        return rc;
    }
    cJSON *j = mg_json_parse_upstream(data.p, data.len);
    mg_buf_free(&data);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsObject(j) || !cJSON_IsString(type)) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    const char *t = type->valuestring;
    if (strcmp(t, "message_start") == 0) {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "message");
        take_usage(req, cJSON_GetObjectItemCaseSensitive(msg, "usage"));
        rc = mg_adapter_chunk_role(req, out);
    } else if (strcmp(t, "content_block_start") == 0) {
        const cJSON *cb = cJSON_GetObjectItemCaseSensitive(j, "content_block");
        const cJSON *cbt = cJSON_GetObjectItemCaseSensitive(cb, "type");
        if (cJSON_IsString(cbt) && strcmp(cbt->valuestring, "tool_use") == 0) {
            /* Anthropic numbers content blocks across text and tool_use. */
            int64_t idx;
            rc = mg_adapter_stream_tool_index(req, cJSON_GetObjectItemCaseSensitive(j, "index"), true, &idx);
            const char *id = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(cb, "id"), "");
            const char *nm = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(cb, "name"), "");
            if (rc == MG_OK)
                rc = mg_adapter_chunk_tool_calls(req, mg_adapter_tool_call((int)idx, id, nm, ""), out);
        } else if (cJSON_IsString(cbt) && strcmp(cbt->valuestring, "text") == 0) {
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(cb, "text");
            if (cJSON_IsString(text) && text->valuestring[0])
                rc = mg_adapter_chunk_text(req, text->valuestring, strlen(text->valuestring), out);
        }
    } else if (strcmp(t, "content_block_delta") == 0) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "delta");
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(d, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(d, "text");
        const cJSON *pj = cJSON_GetObjectItemCaseSensitive(d, "partial_json");
        if (cJSON_IsString(dt) && strcmp(dt->valuestring, "text_delta") == 0 && cJSON_IsString(text)) {
            rc = mg_adapter_chunk_text(req, text->valuestring, strlen(text->valuestring), out);
        } else if (cJSON_IsString(dt) && strcmp(dt->valuestring, "input_json_delta") == 0 && cJSON_IsString(pj)) {
            int64_t idx;
            rc = mg_adapter_stream_tool_index(req, cJSON_GetObjectItemCaseSensitive(j, "index"), false, &idx);
            if (rc == MG_OK && idx < 0)
                rc = MG_ERR;   /* arguments for a tool call that never started */
            if (rc == MG_OK && pj->valuestring[0])
                rc = mg_adapter_chunk_tool_calls(req, mg_adapter_tool_call((int)idx, NULL, NULL, pj->valuestring), out);
        }
        /* thinking_delta / signature_delta: not part of the OpenAI stream. */
    } else if (strcmp(t, "message_delta") == 0) {
        take_usage(req, cJSON_GetObjectItemCaseSensitive(j, "usage"));
        const cJSON *sr = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "delta"), "stop_reason");
        if (cJSON_IsString(sr))
            rc = mg_adapter_chunk(req, NULL, finish_reason(sr), out);
    } else if (strcmp(t, "message_stop") == 0) {
        rc = mg_adapter_stream_end(req, out);
    } else if (strcmp(t, "error") == 0) {
        const cJSON *et = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "type");
        const char *etype = mg_adapter_str(et, NULL);
        rc = mg_adapter_stream_error_type(req, etype, etype ? strlen(etype) : 0, out);
    }
    /* ping, content_block_stop and event types added later: nothing to say. */
    cJSON_Delete(j);
    return rc;
}

const mg_adapter_ops mg_adapter_anthropic = {
    .type = "anthropic",
    .build = anthropic_build,
    .reply = anthropic_reply,
    .stream_event = anthropic_stream_event,
    .stream_content_type = "text/event-stream",
};
