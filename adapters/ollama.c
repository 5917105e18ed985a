/* modelgate — Ollama's native API (POST {base_url}/api/chat, /api/embed).
 *
 * (Ollama's OpenAI-compatible /v1 works with type openai too; the native
 * API is for installations that want the native options and token counts.)
 * Sampling parameters go into `options` (num_predict = max tokens),
 * response_format json_object becomes format "json" and json_schema
 * format = the schema; images must be base64 data: URLs (Ollama takes a
 * list of base64 images per message, no URLs). Streams are NDJSON: one JSON
 * object per line, the last with "done": true and the token counts.
 * `stream` is always sent explicitly: Ollama streams by default.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "gateway/json.h"
#include "adapters/translate.h"

#include <stdio.h>

/* `user` is accepted and not sent (Ollama has no end-user field). */
static const char *const chat_fields[] = {
    "model", "messages", "stream", "stream_options", "user", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "stop", "seed", "presence_penalty", "frequency_penalty", "response_format",
    "tools", "tool_choice", "n", NULL};

/* A user message's parts: Ollama takes one string per message (text parts
 * joined by a newline) and a list of base64 images. */
typedef struct user_parts {
    mg_buf text;
    cJSON *images;
} user_parts;

static mg_rc part_text(void *ctx, const char *text)
{
    user_parts *u = ctx;
    if (u->text.len && mg_buf_append(&u->text, "\n", 1) != MG_OK)
        return MG_ENOMEM;
    return mg_buf_append_str(&u->text, text);
}

static mg_rc part_image(void *ctx, const char *url, char *err, size_t errsz)
{
    user_parts *u = ctx;
    mg_str mt, data;
    if (url == NULL || !mg_adapter_parse_data_url(url, &mt, &data)) {
        snprintf(err, errsz, "ollama models take images only as base64 data: URLs");
        return MG_ERR;
    }
    return mg_adapter_put(u->images, NULL, cJSON_CreateString(data.p)) ? MG_OK : MG_ENOMEM;
}

static mg_rc user_content(const cJSON *content, cJSON *msg, char *err, size_t errsz)
{
    if (cJSON_IsString(content) || content == NULL || cJSON_IsNull(content))
        return cJSON_AddStringToObject(msg, "content", mg_adapter_str(content, "")) ? MG_OK : MG_ENOMEM;
    if (!cJSON_IsArray(content)) {
        snprintf(err, errsz, "message content must be a string or an array of parts");
        return MG_ERR;
    }
    user_parts u = {.images = cJSON_CreateArray()};
    mg_rc rc = u.images ? mg_adapter_each_part(content, "ollama", part_text, part_image, &u, err, errsz) : MG_ENOMEM;
    if (rc == MG_OK && mg_buf_reserve(&u.text, 1) == MG_OK) {
        u.text.p[u.text.len] = '\0';
        if (!cJSON_AddStringToObject(msg, "content", u.text.p))
            rc = MG_ENOMEM;
    }
    rc = mg_adapter_put_nonempty(rc, msg, "images", u.images);
    mg_buf_free(&u.text);
    return rc;
}

/* Ollama takes OpenAI's tool call shape with the arguments as an object. */
static mg_rc assistant_tool_calls(const cJSON *calls, cJSON *msg, char *err, size_t errsz)
{
    if (calls == NULL || cJSON_IsNull(calls) || cJSON_GetArraySize(calls) == 0)
        return MG_OK;
    cJSON *out = cJSON_AddArrayToObject(msg, "tool_calls");
    if (out == NULL)
        return MG_ENOMEM;
    const cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        const char *id, *name;
        cJSON *a;
        mg_rc rc = mg_adapter_call_input(c, false, "ollama", &id, &name, &a, err, errsz);
        if (rc != MG_OK)
            return rc;
        cJSON *o = cJSON_CreateObject();
        cJSON *f = o ? cJSON_AddObjectToObject(o, "function") : NULL;
        if (f == NULL || !cJSON_AddItemToArray(out, o)) {
            cJSON_Delete(a);
            cJSON_Delete(o);
            return MG_ENOMEM;
        }
        if (!cJSON_AddStringToObject(f, "name", name) || !mg_adapter_put(f, "arguments", a))
            return MG_ENOMEM;
    }
    return MG_OK;
}

static mg_rc translate_messages(const cJSON *msgs, cJSON *body, char *err, size_t errsz)
{
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        snprintf(err, errsz, "messages must be a non-empty array");
        return MG_ERR;
    }
    cJSON *out = cJSON_AddArrayToObject(body, "messages");
    if (out == NULL)
        return MG_ENOMEM;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        mg_rc rc = mg_adapter_check_fields(m, mg_adapter_message_fields, "message", "ollama", err, errsz);
        if (rc != MG_OK)
            return rc;
        const char *r = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(m, "role"), "");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || !cJSON_AddItemToArray(out, o))
            return MG_ENOMEM;
        if (strcmp(r, "developer") == 0)
            r = "system";
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0 &&
            strcmp(r, "tool") != 0) {
            snprintf(err, errsz, "message role \"%.20s\" is not supported by ollama models", r);
            return MG_ERR;
        }
        if (!cJSON_AddStringToObject(o, "role", r))
            return MG_ENOMEM;
        if (strcmp(r, "user") == 0) {
            rc = user_content(content, o, err, errsz);
        } else {
            mg_buf text = {0};
            rc = mg_adapter_text_content(content, r, &text, err, errsz);
            if (rc == MG_OK && !cJSON_AddStringToObject(o, "content", text.p))
                rc = MG_ENOMEM;
            mg_buf_free(&text);
        }
        if (rc == MG_OK && strcmp(r, "assistant") == 0)
            rc = assistant_tool_calls(cJSON_GetObjectItemCaseSensitive(m, "tool_calls"), o, err, errsz);
        if (rc == MG_OK && strcmp(r, "tool") == 0) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
            const char *name = cJSON_IsString(id) ? mg_adapter_tool_name(msgs, m, id->valuestring) : NULL;
            if (name && !cJSON_AddStringToObject(o, "tool_name", name))
                rc = MG_ENOMEM;
        }
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

static mg_rc translate_format(const cJSON *json, cJSON *body, char *err, size_t errsz)
{
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(json, "response_format");
    if (rf == NULL || cJSON_IsNull(rf))
        return MG_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (strcmp(t, "text") == 0)
        return MG_OK;
    if (strcmp(t, "json_object") == 0)
        return cJSON_AddStringToObject(body, "format", "json") ? MG_OK : MG_ENOMEM;
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rf, "json_schema"), "schema");
    if (strcmp(t, "json_schema") == 0 && cJSON_IsObject(schema)) {
        cJSON *s = cJSON_Duplicate(schema, true);
        if (s == NULL || !cJSON_AddItemToObject(body, "format", s)) {
            cJSON_Delete(s);
            return MG_ENOMEM;
        }
        return MG_OK;
    }
    snprintf(err, errsz, "response_format must be text, json_object or json_schema with a schema");
    return MG_ERR;
}

static mg_rc translate_tools(const cJSON *json, cJSON *body, char *err, size_t errsz)
{
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(json, "tool_choice");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(json, "tools");
    bool none = cJSON_IsString(tc) && strcmp(tc->valuestring, "none") == 0;
    if (tc && !cJSON_IsNull(tc) && !none && !(cJSON_IsString(tc) && strcmp(tc->valuestring, "auto") == 0)) {
        snprintf(err, errsz, "ollama models only support tool_choice auto or none");
        return MG_ERR;
    }
    /* tool_choice none: the model must not call tools, so it is not told
     * about them. */
    if (tools == NULL || cJSON_IsNull(tools) || none)
        return MG_OK;
    const cJSON *t;
    bool ok = cJSON_IsArray(tools);
    cJSON_ArrayForEach(t, tools) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        ok = ok && cJSON_IsString(type) && strcmp(type->valuestring, "function") == 0;
    }
    if (!ok) {
        snprintf(err, errsz, "only function tools are supported by ollama models");
        return MG_ERR;
    }
    /* Ollama takes OpenAI's tool shape as is. */
    cJSON *copy = cJSON_Duplicate(tools, true);
    if (copy == NULL || !cJSON_AddItemToObject(body, "tools", copy)) {
        cJSON_Delete(copy);
        return MG_ENOMEM;
    }
    return MG_OK;
}

/* Sampling parameters go into options (num_predict = max tokens). */
static const mg_adapter_sampling sampling = {
    .max_tokens = "num_predict",
    .numbers = {{"temperature", "temperature", 0, 2},
                {"top_p", "top_p", 0, 1},
                {"seed", "seed", -9.2e18, 9.2e18},
                {"presence_penalty", "presence_penalty", -2, 2},
                {"frequency_penalty", "frequency_penalty", -2, 2}},
    .stop = "stop",
};

static mg_rc chat_body(mg_req *req, cJSON *body, char *err, size_t errsz)
{
    const cJSON *json = req->json;
    mg_rc rc = mg_adapter_check_fields(json, chat_fields, "request", "ollama", err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_check_n(json, "ollama", err, errsz);
    if (rc != MG_OK)
        return rc;
    if (!cJSON_AddStringToObject(body, "model", req->deployment->model))
        return MG_ENOMEM;
    rc = translate_messages(cJSON_GetObjectItemCaseSensitive(json, "messages"), body, err, errsz);
    if (rc != MG_OK)
        return rc;
    if (!cJSON_AddBoolToObject(body, "stream", req->stream))
        return MG_ENOMEM;
    cJSON *opt = cJSON_CreateObject();
    if (opt == NULL)
        return MG_ENOMEM;
    rc = mg_adapter_put_nonempty(mg_adapter_put_sampling(json, opt, &sampling, err, errsz), body, "options", opt);
    if (rc == MG_OK)
        rc = translate_format(json, body, err, errsz);
    if (rc == MG_OK)
        rc = translate_tools(json, body, err, errsz);
    return rc;
}

static mg_rc embed_body(mg_req *req, cJSON *body, char *err, size_t errsz)
{
    const cJSON *json = req->json;
    mg_rc rc = mg_adapter_check_embeddings(json, "ollama", err, errsz);
    if (rc != MG_OK)
        return rc;
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(json, "input");
    cJSON *in = cJSON_Duplicate(input, true);
    if (!cJSON_AddStringToObject(body, "model", req->deployment->model) || in == NULL ||
        !cJSON_AddItemToObject(body, "input", in)) {
        cJSON_Delete(in);
        return MG_ENOMEM;
    }
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(json, "dimensions");
    if (dims && !cJSON_IsNull(dims))
        return mg_adapter_copy_number(json, "dimensions", body, "dimensions", 1, 65536, err, errsz);
    return MG_OK;
}

static mg_rc ollama_build(mg_req *req, mg_upstream_request *out, char *err, size_t errsz)
{
    const char *path = req->api == MG_API_CHAT ? "/api/chat" : req->api == MG_API_EMBEDDINGS ? "/api/embed" : NULL;
    if (path == NULL) {
        snprintf(err, errsz, "this endpoint cannot be forwarded to an ollama provider");
        return MG_ERR;
    }
    mg_rc rc = mg_adapter_build_json(req, out, req->api == MG_API_CHAT ? chat_body : embed_body, err, errsz);
    if (rc != MG_OK)
        return rc;
    const mg_cfg_provider *p = req->provider;
    if (mg_buf_printf(&out->url, "%s%s", p->base_url, path) != MG_OK)
        return MG_ENOMEM;
    out->method = "POST";
    out->stream = req->stream && req->api == MG_API_CHAT;
    rc = mg_adapter_add_header(&out->headers, "Content-Type: application/json");
    if (rc == MG_OK)
        rc = mg_adapter_add_header(&out->headers, "Expect:");
    /* Ollama itself has no auth; a key is for a proxy in front of it. */
    if (rc == MG_OK && p->api_key)
        rc = mg_adapter_add_credential(&out->headers, "Authorization: Bearer %s", p->api_key, err, errsz);
    return rc;
}

/* ------------------------------------------------------------ replies */

static void take_usage(mg_req *req, const cJSON *j)
{
    int64_t pt = mg_adapter_num(j, "prompt_eval_count"), ct = mg_adapter_num(j, "eval_count");
    if (pt >= 0)
        req->usage.prompt_tokens = pt;
    if (ct >= 0)
        req->usage.completion_tokens = ct;
}

/* OpenAI tool calls from Ollama's (which have no ids: the gateway makes
 * them up, unique within the request). first numbers them. */
static cJSON *tool_calls(mg_req *req, const cJSON *calls, int first, bool stream)
{
    mg_adapter_message m = {0};
    mg_rc rc = mg_adapter_message_init(&m);
    const cJSON *c;
    int i = first;
    cJSON_ArrayForEach(c, calls) {
        if (rc != MG_OK)
            break;
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        char id[80];
        snprintf(id, sizeof(id), "call_%s_%d", req->request_id, i);
        rc = mg_adapter_message_call(&m, stream ? i : -1, id,
                                     mg_adapter_str(cJSON_GetObjectItemCaseSensitive(fn, "name"), NULL),
                                     cJSON_GetObjectItemCaseSensitive(fn, "arguments"));
        i++;
    }
    cJSON *out = rc == MG_OK ? m.calls : NULL;
    if (out)
        m.calls = NULL;
    mg_adapter_message_free(&m);
    return out;
}

static const char *finish(const cJSON *j, bool tools)
{
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(j, "done_reason");
    if (cJSON_IsString(dr) && strcmp(dr->valuestring, "length") == 0)
        return MG_FINISH_LENGTH;
    return tools ? MG_FINISH_TOOLS : MG_FINISH_STOP;
}

static mg_rc ollama_reply(mg_req *req, const char *body, size_t len, mg_buf *out)
{
    cJSON *j = mg_json_parse_upstream(body, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    take_usage(req, j);
    mg_rc rc;
    if (req->api == MG_API_EMBEDDINGS) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "embeddings");
        if (req->usage.prompt_tokens >= 0)
            req->usage.completion_tokens = 0;
        rc = cJSON_IsArray(e) ? mg_adapter_embeddings_reply(req, e, out) : MG_ERR;
    } else {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "message");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
        if (!cJSON_IsObject(msg)) {
            cJSON_Delete(j);
            return MG_ERR;
        }
        bool has_tools = cJSON_GetArraySize(calls) > 0;
        cJSON *tc = has_tools ? tool_calls(req, calls, 0, false) : NULL;
        rc = has_tools && tc == NULL ? MG_ENOMEM
             : mg_adapter_chat_reply(req, cJSON_IsString(content) && (content->valuestring[0] || !has_tools)
                                              ? content->valuestring : NULL,
                                     tc, finish(j, has_tools), out);
    }
    cJSON_Delete(j);
    return rc;
}

static mg_rc ollama_stream_event(mg_req *req, mg_str ev, mg_buf *out)
{
    if (ev.n == 0)
        return MG_OK;
    cJSON *j = mg_json_parse_upstream(ev.p, ev.n);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    mg_rc rc = MG_OK;
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (error) {
        rc = mg_adapter_stream_error(req, "the model provider reported an error", out);
        cJSON_Delete(j);
        return rc;
    }
    rc = mg_adapter_chunk_role_once(req, out);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "message");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    if (rc == MG_OK && cJSON_IsString(content) && content->valuestring[0])
        rc = mg_adapter_chunk_text(req, content->valuestring, strlen(content->valuestring), out);
    if (rc == MG_OK && cJSON_GetArraySize(calls) > 0) {
        int64_t first = mg_adapter_state_int(req, "tools", 0);
        rc = mg_adapter_state_set_int(req, "tools", first + cJSON_GetArraySize(calls));
        if (rc == MG_OK)
            rc = mg_adapter_chunk_tool_calls(req, tool_calls(req, calls, (int)first, true), out);
    }
    if (rc == MG_OK && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "done"))) {
        take_usage(req, j);
        rc = mg_adapter_chunk(req, NULL, finish(j, mg_adapter_state_int(req, "tools", 0) > 0), out);
        if (rc == MG_OK)
            rc = mg_adapter_stream_end(req, out);
    }
    cJSON_Delete(j);
    return rc;
}

const mg_adapter_ops mg_adapter_ollama = {
    .type = "ollama",
    .build = ollama_build,
    .reply = ollama_reply,
    .stream_event = ollama_stream_event,
    .stream_content_type = "application/x-ndjson",
    .next_event = mg_adapter_next_line,
};
