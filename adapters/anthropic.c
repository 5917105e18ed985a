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
/* `name` is accepted and not sent: Anthropic has no per-message author. */
static const char *const message_fields[] = {"role", "content", "name", "tool_calls", "tool_call_id",
                                             "refusal", NULL};

/* Appends a block to the last turn if it has role, else starts a new turn:
 * Anthropic wants user and assistant turns to alternate. */
static cJSON *turn_for(cJSON *messages, const char *role)
{
    cJSON *last = cJSON_GetArrayItem(messages, cJSON_GetArraySize(messages) - 1);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(last, "role");
    if (last && cJSON_IsString(r) && strcmp(r->valuestring, role) == 0)
        return cJSON_GetObjectItemCaseSensitive(last, "content");
    cJSON *m = cJSON_CreateObject();
    if (m == NULL || !cJSON_AddItemToArray(messages, m)) {
        cJSON_Delete(m);
        return NULL;
    }
    if (cJSON_AddStringToObject(m, "role", role) == NULL)
        return NULL;
    return cJSON_AddArrayToObject(m, "content");
}

static cJSON *text_block(const char *text)
{
    cJSON *b = cJSON_CreateObject();
    if (b && cJSON_AddStringToObject(b, "type", "text") && cJSON_AddStringToObject(b, "text", text))
        return b;
    cJSON_Delete(b);
    return NULL;
}

static mg_rc add_block(cJSON *blocks, cJSON *b)
{
    if (blocks && b && cJSON_AddItemToArray(blocks, b))
        return MG_OK;
    cJSON_Delete(b);
    return MG_ENOMEM;
}

static cJSON *image_block(const cJSON *part, char *err, size_t errsz)
{
    const cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url");
    const cJSON *url = cJSON_IsString(iu) ? iu : cJSON_GetObjectItemCaseSensitive(iu, "url");
    if (!cJSON_IsString(url)) {
        snprintf(err, errsz, "image_url parts need a url");
        return NULL;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON *src = cJSON_CreateObject();
    bool ok = b && src && cJSON_AddStringToObject(b, "type", "image") && cJSON_AddItemToObject(b, "source", src);
    if (!ok) {
        cJSON_Delete(src);
        cJSON_Delete(b);
        return NULL;
    }
    mg_str mt, data;
    if (mg_adapter_parse_data_url(url->valuestring, &mt, &data)) {
        char media[64];
        if (mt.n >= sizeof(media)) {
            cJSON_Delete(b);
            snprintf(err, errsz, "image media type too long");
            return NULL;
        }
        memcpy(media, mt.p, mt.n);
        media[mt.n] = '\0';
        ok = cJSON_AddStringToObject(src, "type", "base64") && cJSON_AddStringToObject(src, "media_type", media) &&
             cJSON_AddStringToObject(src, "data", data.p);
    } else if (strncmp(url->valuestring, "https://", 8) == 0 || strncmp(url->valuestring, "http://", 7) == 0) {
        ok = cJSON_AddStringToObject(src, "type", "url") && cJSON_AddStringToObject(src, "url", url->valuestring);
    } else {
        cJSON_Delete(b);
        snprintf(err, errsz, "image urls must be http(s) or base64 data: URLs");
        return NULL;
    }
    if (!ok) {
        cJSON_Delete(b);
        return NULL;
    }
    return b;
}

/* User content: a string or text/image_url parts. */
static mg_rc user_blocks(const cJSON *content, cJSON *blocks, char *err, size_t errsz)
{
    if (cJSON_IsString(content))
        return add_block(blocks, text_block(content->valuestring));
    if (!cJSON_IsArray(content)) {
        snprintf(err, errsz, "user message content must be a string or an array of parts");
        return MG_ERR;
    }
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        mg_rc rc;
        if (cJSON_IsString(type) && strcmp(type->valuestring, "text") == 0 && cJSON_IsString(text)) {
            rc = add_block(blocks, text_block(text->valuestring));
        } else if (cJSON_IsString(type) && strcmp(type->valuestring, "image_url") == 0) {
            err[0] = '\0';
            cJSON *b = image_block(part, err, errsz);
            if (b == NULL)
                return err[0] ? MG_ERR : MG_ENOMEM;
            rc = add_block(blocks, b);
        } else {
            snprintf(err, errsz, "content part type \"%.40s\" is not supported by anthropic models",
                     cJSON_IsString(type) ? type->valuestring : "");
            return MG_ERR;
        }
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

static mg_rc assistant_blocks(const cJSON *m, cJSON *blocks, char *err, size_t errsz)
{
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    mg_buf text = {0};
    mg_rc rc = mg_adapter_text_content(content, "assistant", &text, err, errsz);
    if (rc == MG_OK && text.len > 0)
        rc = add_block(blocks, text_block(text.p));
    mg_buf_free(&text);
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    const cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        if (rc != MG_OK)
            break;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsString(id) || !cJSON_IsString(name) || !cJSON_IsString(args)) {
            snprintf(err, errsz, "tool_calls need id, function.name and function.arguments");
            return MG_ERR;
        }
        cJSON *input = args->valuestring[0] ? cJSON_Parse(args->valuestring) : cJSON_CreateObject();
        if (!cJSON_IsObject(input)) {
            cJSON_Delete(input);
            snprintf(err, errsz, "tool call arguments must be a JSON object for anthropic models");
            return MG_ERR;
        }
        cJSON *b = cJSON_CreateObject();
        if (b == NULL || !cJSON_AddStringToObject(b, "type", "tool_use") ||
            !cJSON_AddStringToObject(b, "id", id->valuestring) ||
            !cJSON_AddStringToObject(b, "name", name->valuestring) || !cJSON_AddItemToObject(b, "input", input)) {
            cJSON_Delete(input);
            cJSON_Delete(b);
            return MG_ENOMEM;
        }
        rc = add_block(blocks, b);
    }
    return rc;
}

static mg_rc tool_result_block(const cJSON *m, cJSON *blocks, char *err, size_t errsz)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
    if (!cJSON_IsString(id)) {
        snprintf(err, errsz, "tool messages need a tool_call_id");
        return MG_ERR;
    }
    mg_buf text = {0};
    mg_rc rc = mg_adapter_text_content(cJSON_GetObjectItemCaseSensitive(m, "content"), "tool", &text, err, errsz);
    cJSON *b = rc == MG_OK ? cJSON_CreateObject() : NULL;
    if (rc == MG_OK) {
        if (b && cJSON_AddStringToObject(b, "type", "tool_result") &&
            cJSON_AddStringToObject(b, "tool_use_id", id->valuestring) &&
            cJSON_AddStringToObject(b, "content", text.p)) {
            rc = add_block(blocks, b);
        } else {
            cJSON_Delete(b);
            rc = MG_ENOMEM;
        }
    }
    mg_buf_free(&text);
    return rc;
}

static mg_rc translate_messages(const cJSON *msgs, cJSON *body, char *err, size_t errsz)
{
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        snprintf(err, errsz, "messages must be a non-empty array");
        return MG_ERR;
    }
    cJSON *system = cJSON_CreateArray();
    cJSON *out = cJSON_AddArrayToObject(body, "messages");
    if (system == NULL || out == NULL) {
        cJSON_Delete(system);
        return MG_ENOMEM;
    }
    mg_rc rc = MG_OK;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        rc = mg_adapter_check_fields(m, message_fields, "message", "anthropic", err, errsz);
        if (rc != MG_OK)
            break;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const char *r = cJSON_IsString(role) ? role->valuestring : "";
        if (strcmp(r, "system") == 0 || strcmp(r, "developer") == 0) {
            /* Anthropic has one system prompt; system messages anywhere in
             * the conversation are hoisted into it, in order. */
            mg_buf text = {0};
            rc = mg_adapter_text_content(cJSON_GetObjectItemCaseSensitive(m, "content"), r, &text, err, errsz);
            if (rc == MG_OK)
                rc = add_block(system, text_block(text.p));
            mg_buf_free(&text);
        } else if (strcmp(r, "user") == 0) {
            rc = user_blocks(cJSON_GetObjectItemCaseSensitive(m, "content"), turn_for(out, "user"), err, errsz);
        } else if (strcmp(r, "assistant") == 0) {
            rc = assistant_blocks(m, turn_for(out, "assistant"), err, errsz);
        } else if (strcmp(r, "tool") == 0) {
            rc = tool_result_block(m, turn_for(out, "user"), err, errsz);
        } else {
            snprintf(err, errsz, "message role \"%.20s\" is not supported by anthropic models", r);
            rc = MG_ERR;
        }
        if (rc != MG_OK)
            break;
    }
    if (rc == MG_OK && cJSON_GetArraySize(out) == 0) {
        snprintf(err, errsz, "anthropic models need at least one user or assistant message");
        rc = MG_ERR;
    }
    if (rc == MG_OK && cJSON_GetArraySize(system) > 0) {
        if (!cJSON_AddItemToObject(body, "system", system))
            rc = MG_ENOMEM;
        else
            system = NULL;
    }
    cJSON_Delete(system);
    return rc;
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
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
            const cJSON *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
            const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
            if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0 || !cJSON_IsString(name)) {
                snprintf(err, errsz, "only function tools with a name are supported by anthropic models");
                return MG_ERR;
            }
            cJSON *o = cJSON_CreateObject();
            if (o == NULL || !cJSON_AddItemToArray(out, o) || !cJSON_AddStringToObject(o, "name", name->valuestring))
                return MG_ENOMEM;
            if (cJSON_IsString(desc) && !cJSON_AddStringToObject(o, "description", desc->valuestring))
                return MG_ENOMEM;
            cJSON *schema = cJSON_IsObject(params) ? cJSON_Duplicate(params, true)
                                                   : cJSON_Parse("{\"type\":\"object\",\"properties\":{}}");
            if (schema == NULL || !cJSON_AddItemToObject(o, "input_schema", schema)) {
                cJSON_Delete(schema);
                return MG_ENOMEM;
            }
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
        rc = mg_adapter_copy_number(json, "temperature", body, "temperature", 0, 1, err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_copy_number(json, "top_p", body, "top_p", 0, 1, err, errsz);
    cJSON *stop = NULL;
    if (rc == MG_OK)
        rc = mg_adapter_stop_list(json, &stop, err, errsz);
    if (rc == MG_OK && stop && !cJSON_AddItemToObject(body, "stop_sequences", stop)) {
        cJSON_Delete(stop);
        rc = MG_ENOMEM;
    }
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
    cJSON *body = cJSON_CreateObject();
    if (body == NULL)
        return MG_ENOMEM;
    mg_rc rc = build_body(req, body, err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_set_body(out, body);
    cJSON_Delete(body);
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
    if (rc == MG_OK && p->api_key) {
        rc = mg_adapter_add_headerf(&out->headers, "x-api-key: %s", p->api_key);
        if (rc == MG_ERR)
            snprintf(err, errsz, "provider credential too long");
    }
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

static int64_t num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* Cached prompt tokens are billed input too, so they count as prompt. */
static void take_usage(mg_req *req, const cJSON *usage)
{
    int64_t in = num(usage, "input_tokens");
    if (in >= 0) {
        int64_t cc = num(usage, "cache_creation_input_tokens"), cr = num(usage, "cache_read_input_tokens");
        req->usage.prompt_tokens = in + (cc > 0 ? cc : 0) + (cr > 0 ? cr : 0);
    }
    int64_t outt = num(usage, "output_tokens");
    if (outt >= 0)
        req->usage.completion_tokens = outt;
}

static mg_rc anthropic_reply(mg_req *req, const char *body, size_t len, mg_buf *out)
{
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(j, "content");
    if (!cJSON_IsObject(j) || !cJSON_IsArray(content)) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    take_usage(req, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    mg_buf text = {0};
    bool any_text = false;
    cJSON *calls = cJSON_CreateArray();
    mg_rc rc = calls ? MG_OK : MG_ENOMEM;
    const cJSON *b;
    cJSON_ArrayForEach(b, content) {
        if (rc != MG_OK)
            break;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(b, "type");
        if (!cJSON_IsString(type))
            continue;
        if (strcmp(type->valuestring, "text") == 0) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "text");
            if (cJSON_IsString(t)) {
                rc = mg_buf_append_str(&text, t->valuestring);
                any_text = true;
            }
        } else if (strcmp(type->valuestring, "tool_use") == 0) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(b, "id");
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(b, "name");
            const cJSON *input = cJSON_GetObjectItemCaseSensitive(b, "input");
            char *args = input ? cJSON_PrintUnformatted(input) : NULL;
            cJSON *tc = mg_adapter_tool_call(-1, cJSON_IsString(id) ? id->valuestring : "",
                                             cJSON_IsString(name) ? name->valuestring : "", args ? args : "{}");
            cJSON_free(args);
            if (tc == NULL || !cJSON_AddItemToArray(calls, tc)) {
                cJSON_Delete(tc);
                rc = MG_ENOMEM;
            }
        }
        /* thinking and redacted_thinking blocks are not part of the
         * OpenAI message. */
    }
    if (rc == MG_OK && mg_buf_reserve(&text, 1) == MG_OK)
        text.p[text.len] = '\0';
    if (rc == MG_OK)
        rc = mg_adapter_chat_reply(req, any_text ? text.p : NULL, calls,
                                   finish_reason(cJSON_GetObjectItemCaseSensitive(j, "stop_reason")), out);
    else
        cJSON_Delete(calls);
    mg_buf_free(&text);
    cJSON_Delete(j);
    return rc;
}

/* Anthropic numbers content blocks across text and tool_use; OpenAI
 * numbers tool calls alone, from 0. The mapping lives in the stream state
 * as "b<block index>" -> tool call index. */
static mg_rc tool_index(mg_req *req, const cJSON *block_index, bool create, int64_t *out)
{
    char key[32];
    snprintf(key, sizeof(key), "b%lld", cJSON_IsNumber(block_index) ? (long long)block_index->valuedouble : -1LL);
    *out = mg_adapter_state_int(req, key, -1);
    if (*out >= 0 || !create)
        return MG_OK;
    *out = mg_adapter_state_int(req, "tools", 0);
    if (mg_adapter_state_set_int(req, "tools", *out + 1) != MG_OK)
        return MG_ENOMEM;
    return mg_adapter_state_set_int(req, key, *out);
}

static mg_rc tools_delta(mg_req *req, cJSON *tc, mg_buf *out)
{
    cJSON *d = cJSON_CreateObject();
    cJSON *arr = d ? cJSON_AddArrayToObject(d, "tool_calls") : NULL;
    if (tc == NULL || arr == NULL || !cJSON_AddItemToArray(arr, tc)) {
        cJSON_Delete(tc);
        cJSON_Delete(d);
        return MG_ENOMEM;
    }
    return mg_adapter_chunk(req, d, NULL, out);
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
    cJSON *j = cJSON_ParseWithLength(data.p, data.len);
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
        cJSON *d = cJSON_CreateObject();
        if (d && cJSON_AddStringToObject(d, "role", "assistant") && cJSON_AddStringToObject(d, "content", "")) {
            rc = mg_adapter_chunk(req, d, NULL, out);
        } else {
            cJSON_Delete(d);
            rc = MG_ENOMEM;
        }
    } else if (strcmp(t, "content_block_start") == 0) {
        const cJSON *cb = cJSON_GetObjectItemCaseSensitive(j, "content_block");
        const cJSON *cbt = cJSON_GetObjectItemCaseSensitive(cb, "type");
        if (cJSON_IsString(cbt) && strcmp(cbt->valuestring, "tool_use") == 0) {
            int64_t idx;
            rc = tool_index(req, cJSON_GetObjectItemCaseSensitive(j, "index"), true, &idx);
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(cb, "id");
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(cb, "name");
            if (rc == MG_OK)
                rc = tools_delta(req, mg_adapter_tool_call((int)idx, cJSON_IsString(id) ? id->valuestring : "",
                                                           cJSON_IsString(nm) ? nm->valuestring : "", ""), out);
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
            rc = tool_index(req, cJSON_GetObjectItemCaseSensitive(j, "index"), false, &idx);
            if (rc == MG_OK && idx < 0)
                rc = MG_ERR;   /* arguments for a tool call that never started */
            if (rc == MG_OK && pj->valuestring[0])
                rc = tools_delta(req, mg_adapter_tool_call((int)idx, NULL, NULL, pj->valuestring), out);
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
        char msg[160];
        snprintf(msg, sizeof(msg), "the model provider reported an error: %.60s",
                 cJSON_IsString(et) ? et->valuestring : "unknown");
        rc = mg_adapter_stream_error(req, msg, out);
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
