/* modelgate — OpenAI-compatible providers (OpenAI, vLLM, llama.cpp server,
 * LM Studio, Ollama's /v1).
 *
 * The client already speaks this API, so the request is forwarded as parsed
 * (the same tree the policy saw), with only the model name replaced by the
 * deployment's and, for streams, stream_options.include_usage set so every
 * stream reports its token counts. The usage-only chunk that this adds is
 * removed again when the client did not ask for it.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "gateway/json.h"
#include "adapters/openai_common.h"
#include "adapters/translate.h"

#include <stdio.h>

const char *mg_openai_path(const mg_req *req)
{
    return req->api == MG_API_CHAT ? "/chat/completions"
           : req->api == MG_API_EMBEDDINGS ? "/embeddings" : NULL;
}

mg_rc mg_openai_build_body(mg_req *req, mg_upstream_request *out, char *err, size_t errsz)
{
    if (mg_openai_path(req) == NULL) {
        snprintf(err, errsz, "this endpoint cannot be forwarded to an OpenAI-compatible provider");
        return MG_ERR;
    }
    cJSON *body = req->json;
    if (!cJSON_ReplaceItemInObjectCaseSensitive(body, "model",
                                                cJSON_CreateString(req->deployment->model)))
        return MG_ENOMEM;
    if (req->stream) {
        cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
        if (!cJSON_IsObject(so)) {
            cJSON_DeleteItemFromObjectCaseSensitive(body, "stream_options");
            so = cJSON_AddObjectToObject(body, "stream_options");
        }
        if (so == NULL)
            return MG_ENOMEM;
        cJSON_DeleteItemFromObjectCaseSensitive(so, "include_usage");
        if (cJSON_AddTrueToObject(so, "include_usage") == NULL)
            return MG_ENOMEM;
    }
    out->method = "POST";
    out->stream = req->stream;
    /* The common case: nothing changed but (maybe) the model name's value.
     * Forward the client's bytes as they are — the tree says exactly the
     * same (duplicate members were refused) — and skip re-serialising. */
    if (!req->json_modified && !req->stream && strcmp(req->deployment->model, req->model_name) == 0)
        return mg_buf_append(&out->body, req->body.p, req->body.n);
    return mg_adapter_set_body(out, body);
}

mg_rc mg_openai_common_headers(const mg_req *req, mg_upstream_request *out)
{
    mg_rc rc = mg_adapter_add_header(&out->headers, "Content-Type: application/json");
    if (rc == MG_OK)
        rc = mg_adapter_add_header(&out->headers,
                                   req->stream ? "Accept: text/event-stream" : "Accept: application/json");
    /* curl would add "Expect: 100-continue" for large bodies: one more round trip. */
    if (rc == MG_OK)
        rc = mg_adapter_add_header(&out->headers, "Expect:");
    return rc;
}

static mg_rc openai_build(mg_req *req, mg_upstream_request *out, char *err, size_t errsz)
{
    mg_rc rc = mg_openai_build_body(req, out, err, errsz);
    if (rc != MG_OK)
        return rc;
    const mg_cfg_provider *p = req->provider;
    if (mg_buf_printf(&out->url, "%s%s", p->base_url, mg_openai_path(req)) != MG_OK)
        return MG_ENOMEM;
    rc = mg_openai_common_headers(req, out);
    if (rc == MG_OK && p->api_key) {
        rc = mg_adapter_add_headerf(&out->headers, "Authorization: Bearer %s", p->api_key);
        if (rc == MG_ERR)
            snprintf(err, errsz, "provider credential too long");
    }
    return rc;
}

static void take_usage(mg_req *req, const cJSON *usage)
{
    int64_t pt = mg_adapter_num(usage, "prompt_tokens"), ct = mg_adapter_num(usage, "completion_tokens");
    if (pt >= 0)
        req->usage.prompt_tokens = pt;
    if (ct >= 0)
        req->usage.completion_tokens = ct;
    else if (pt >= 0 && req->api == MG_API_EMBEDDINGS)
        req->usage.completion_tokens = 0;
}

/* Finds the top-level "usage" object without parsing the whole reply.
 * Inside JSON strings a quote is always escaped, so the bytes "usage"
 * followed by ':' can only be a member name; the provider puts it last, so
 * search from the end. Returns false when it cannot be found this way. */
static bool fast_usage(mg_req *req, const char *body, size_t len)
{
    static const char key[] = "\"usage\"";
    const size_t klen = sizeof(key) - 1;
    size_t b = 0, e = len;
    while (b < e && (body[b] == ' ' || body[b] == '\n' || body[b] == '\r' || body[b] == '\t'))
        b++;
    while (e > b && (body[e - 1] == ' ' || body[e - 1] == '\n' || body[e - 1] == '\r' || body[e - 1] == '\t'))
        e--;
    if (e - b < 2 || body[b] != '{' || body[e - 1] != '}')
        return false;
    for (size_t i = e - 1; i-- > b + klen;) {
        if (body[i - klen + 1] != '"' || memcmp(body + i - klen + 1, key, klen) != 0)
            continue;
        size_t j = i + 1;
        while (j < e && (body[j] == ' ' || body[j] == '\n' || body[j] == '\r' || body[j] == '\t'))
            j++;
        if (j >= e || body[j] != ':')
            return false;
        j++;
        while (j < e && (body[j] == ' ' || body[j] == '\n' || body[j] == '\r' || body[j] == '\t'))
            j++;
        if (j >= e || body[j] != '{')
            return false;
        cJSON *u = mg_json_parse_prefix(body + j, e - j, NULL);
        bool ok = cJSON_IsObject(u);
        if (ok)
            take_usage(req, u);
        cJSON_Delete(u);
        return ok && req->usage.completion_tokens >= 0;
    }
    return false;
}

mg_rc mg_openai_reply(mg_req *req, const char *body, size_t len, mg_buf *out)
{
    if (!req->reply_needs_parse && fast_usage(req, body, len))
        return mg_buf_append(out, body, len);
    cJSON *j = mg_json_parse_upstream(body, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (cJSON_IsObject(usage))
        take_usage(req, usage);
    if (req->usage.completion_tokens < 0) {
        /* No usage from the provider: estimate from the generated text. */
        const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
        const cJSON *ch;
        cJSON_ArrayForEach(ch, choices) {
            const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ch, "message");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
            if (cJSON_IsString(content))
                req->usage.output_chars += strlen(content->valuestring);
        }
    }
    cJSON_Delete(j);
    /* The reply is relayed byte for byte: what the provider said is what
     * the client gets (output filters may still rewrite it). */
    return mg_buf_append(out, body, len);
}

mg_rc mg_openai_stream_event(mg_req *req, mg_str ev, mg_buf *out)
{
    /* Join the event's data: lines; ignore comments, ids and event names. */
    mg_buf data = {0};
    size_t i = 0;
    mg_rc rc = MG_OK;
    while (i < ev.n) {
        size_t j = i;
        while (j < ev.n && ev.p[j] != '\n' && ev.p[j] != '\r')
            j++;
        mg_str line = mg_str_make(ev.p + i, j - i);
        if (line.n >= 5 && memcmp(line.p, "data:", 5) == 0) {
            size_t k = 5;
            if (k < line.n && line.p[k] == ' ')
                k++;
            if (data.len)
                mg_buf_append(&data, "\n", 1);
            mg_buf_append(&data, line.p + k, line.n - k);
        }
        i = j;
        while (i < ev.n && (ev.p[i] == '\n' || ev.p[i] == '\r'))
            i++;
    }
    if (data.len == 0) {
        mg_buf_free(&data);
        return MG_OK;
    }
    if (data.len == 6 && memcmp(data.p, "[DONE]", 6) == 0) {
        rc = mg_adapter_sse_data(out, "[DONE]", 6);
        mg_buf_free(&data);
        return rc == MG_OK ? MG_DONE : rc;
    }
    cJSON *j = mg_json_parse_upstream(data.p, data.len);
    if (j == NULL) {
        mg_buf_free(&data);
        return MG_ERR;
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    bool usage_only = cJSON_IsObject(usage) && cJSON_IsArray(choices) && cJSON_GetArraySize(choices) == 0;
    if (cJSON_IsObject(usage))
        take_usage(req, usage);
    const cJSON *ch;
    cJSON_ArrayForEach(ch, choices) {
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(delta, "content");
        if (cJSON_IsString(content))
            req->usage.output_chars += strlen(content->valuestring);
    }
    if (!(usage_only && !req->client_wants_usage)) {
        /* Data split over several data: lines was joined with "\n"; sent
         * as is, the lines after the first would reach the client without
         * their "data: " and cut the JSON text. Such a payload goes out
         * re-serialised on one line. */
        if (memchr(data.p, '\n', data.len)) {
            char *s = cJSON_PrintUnformatted(j);
            rc = s ? mg_adapter_sse_data(out, s, strlen(s)) : MG_ENOMEM;
            cJSON_free(s);
        } else {
            rc = mg_adapter_sse_data(out, data.p, data.len);
        }
    }
    cJSON_Delete(j);
    mg_buf_free(&data);
    return rc;
}

const mg_adapter_ops mg_adapter_openai = {
    .type = "openai",
    .build = openai_build,
    .reply = mg_openai_reply,
    .stream_event = mg_openai_stream_event,
    .stream_content_type = "text/event-stream",
};
