/* modelgate — Google Gemini API (generativelanguage.googleapis.com, v1beta).
 *
 * Chat: POST {base_url}/v1beta/models/{model}:generateContent, or
 * :streamGenerateContent?alt=sse for streams (SSE, one
 * GenerateContentResponse per event, no terminal event: the chunk that
 * carries finishReason is the last). Embeddings:
 * :batchEmbedContents (one request per input string).
 *
 * Request: system/developer messages -> systemInstruction; user ->
 * role "user" with text / inlineData parts (base64 data: URLs only: Gemini
 * fetches no URLs); assistant -> role "model" with text and functionCall
 * parts; tool results -> functionResponse parts in a user turn, named after
 * the assistant tool call they answer (Gemini keys results by function
 * name). Consecutive turns of one role are merged. Sampling parameters ->
 * generationConfig; response_format json_object -> responseMimeType
 * application/json.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "gateway/json.h"
#include "adapters/translate.h"

#include <stdio.h>

/* `user` is accepted and not sent (Gemini has no end-user field). */
static const char *const chat_fields[] = {
    "model", "messages", "stream", "stream_options", "user", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "stop", "seed", "presence_penalty", "frequency_penalty", "response_format",
    "tools", "tool_choice", "n", NULL};

static mg_rc image_part(const char *url, cJSON **part, char *err, size_t errsz)
{
    mg_str mt, data;
    char media[64];
    if (url == NULL || !mg_adapter_parse_data_url(url, &mt, &data) || mt.n >= sizeof(media)) {
        snprintf(err, errsz, "gemini models take images only as base64 data: URLs");
        return MG_ERR;
    }
    memcpy(media, mt.p, mt.n);
    media[mt.n] = '\0';
    cJSON *p = cJSON_CreateObject();
    cJSON *in = p ? cJSON_AddObjectToObject(p, "inlineData") : NULL;
    if (in == NULL || !cJSON_AddStringToObject(in, "mimeType", media) || !cJSON_AddStringToObject(in, "data", data.p)) {
        cJSON_Delete(p);
        return MG_ENOMEM;
    }
    *part = p;
    return MG_OK;
}

static cJSON *function_call(const char *id, const char *name, cJSON *args)
{
    cJSON *p = cJSON_CreateObject();
    cJSON *fc = p ? cJSON_AddObjectToObject(p, "functionCall") : NULL;
    if (fc == NULL || !cJSON_AddStringToObject(fc, "name", name) || !cJSON_AddItemToObject(fc, "args", args)) {
        cJSON_Delete(args);
        cJSON_Delete(p);
        return NULL;
    }
    return p;
}

static cJSON *function_response(const char *name, const char *text)
{
    /* Gemini wants an object: a JSON object result is passed as is,
     * anything else is wrapped as {"content": text}. */
    cJSON *resp = cJSON_Parse(text);
    if (!cJSON_IsObject(resp)) {
        cJSON_Delete(resp);
        resp = cJSON_CreateObject();
        if (resp && !cJSON_AddStringToObject(resp, "content", text)) {
            cJSON_Delete(resp);
            resp = NULL;
        }
    }
    cJSON *p = cJSON_CreateObject();
    cJSON *fr = p ? cJSON_AddObjectToObject(p, "functionResponse") : NULL;
    if (resp == NULL || fr == NULL || !cJSON_AddStringToObject(fr, "name", name) ||
        !cJSON_AddItemToObject(fr, "response", resp)) {
        cJSON_Delete(resp);
        cJSON_Delete(p);
        return NULL;
    }
    return p;
}

/* Gemini keys tool results by function name and makes up no call ids. */
static const mg_adapter_dialect dialect = {
    .provider = "gemini",
    .turns_key = "contents",
    .blocks_key = "parts",
    .assistant_role = "model",
    .result_by_name = true,
    .text = mg_adapter_plain_text,
    .image = image_part,
    .tool_use = function_call,
    .tool_result = function_response,
};

static mg_rc translate_messages(const cJSON *msgs, cJSON *body, char *err, size_t errsz)
{
    cJSON *system;
    mg_rc rc = mg_adapter_translate_messages(&dialect, msgs, body, &system, err, errsz);
    if (system == NULL)
        return rc;
    cJSON *si = cJSON_AddObjectToObject(body, "systemInstruction");
    return mg_adapter_put(si, "parts", system) ? MG_OK : MG_ENOMEM;
}

static mg_rc translate_tools(const cJSON *json, cJSON *body, char *err, size_t errsz)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(json, "tools");
    if (tools && !cJSON_IsNull(tools)) {
        cJSON *t0 = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(body, "tools");
        if (t0 == NULL || arr == NULL || !cJSON_AddItemToArray(arr, t0)) {
            cJSON_Delete(t0);
            return MG_ENOMEM;
        }
        cJSON *decls = cJSON_AddArrayToObject(t0, "functionDeclarations");
        if (decls == NULL)
            return MG_ENOMEM;
        const cJSON *t;
        cJSON_ArrayForEach(t, tools) {
            const char *name, *desc;
            const cJSON *params;
            mg_rc rc = mg_adapter_function_tool(t, "gemini", &name, &desc, &params, err, errsz);
            if (rc != MG_OK)
                return rc;
            cJSON *d = cJSON_CreateObject();
            if (d == NULL || !cJSON_AddItemToArray(decls, d) || !cJSON_AddStringToObject(d, "name", name) ||
                (desc && !cJSON_AddStringToObject(d, "description", desc)) ||
                (params && !mg_adapter_put(d, "parameters", cJSON_Duplicate(params, true))))
                return MG_ENOMEM;
        }
    }
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(json, "tool_choice");
    if (tc == NULL || cJSON_IsNull(tc))
        return MG_OK;
    const char *mode = NULL;
    const cJSON *fname = NULL;
    if (cJSON_IsString(tc)) {
        mode = strcmp(tc->valuestring, "auto") == 0 ? "AUTO"
               : strcmp(tc->valuestring, "none") == 0 ? "NONE"
               : strcmp(tc->valuestring, "required") == 0 ? "ANY" : NULL;
    } else if (cJSON_IsObject(tc)) {
        fname = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tc, "function"), "name");
        mode = cJSON_IsString(fname) ? "ANY" : NULL;
    }
    if (mode == NULL) {
        snprintf(err, errsz, "tool_choice must be auto, none, required or a function");
        return MG_ERR;
    }
    cJSON *cfg = cJSON_AddObjectToObject(body, "toolConfig");
    cJSON *fcc = cfg ? cJSON_AddObjectToObject(cfg, "functionCallingConfig") : NULL;
    if (fcc == NULL || !cJSON_AddStringToObject(fcc, "mode", mode))
        return MG_ENOMEM;
    if (fname) {
        cJSON *names = cJSON_AddArrayToObject(fcc, "allowedFunctionNames");
        if (names == NULL || !cJSON_AddItemToArray(names, cJSON_CreateString(fname->valuestring)))
            return MG_ENOMEM;
    }
    return MG_OK;
}

/* Sampling parameters go into generationConfig. */
static const mg_adapter_sampling sampling = {
    .max_tokens = "maxOutputTokens",
    .numbers = {{"temperature", "temperature", 0, 2},
                {"top_p", "topP", 0, 1},
                {"seed", "seed", -2147483648.0, 2147483647.0},
                {"presence_penalty", "presencePenalty", -2, 2},
                {"frequency_penalty", "frequencyPenalty", -2, 2}},
    .stop = "stopSequences",
};

static mg_rc generation_config(const cJSON *json, cJSON *body, char *err, size_t errsz)
{
    cJSON *gc = cJSON_CreateObject();
    if (gc == NULL)
        return MG_ENOMEM;
    mg_rc rc = mg_adapter_put_sampling(json, gc, &sampling, err, errsz);
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(json, "response_format");
    const cJSON *rft = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (rc == MG_OK && rf && !cJSON_IsNull(rf)) {
        const char *t = cJSON_IsString(rft) ? rft->valuestring : "";
        if (strcmp(t, "json_object") == 0) {
            if (!cJSON_AddStringToObject(gc, "responseMimeType", "application/json"))
                rc = MG_ENOMEM;
        } else if (strcmp(t, "text") != 0) {
            /* json_schema would need a translation to Gemini's OpenAPI
             * schema subset; refusing beats enforcing a different schema. */
            snprintf(err, errsz, "response_format %.20s is not supported by gemini models (use json_object)", t);
            rc = MG_ERR;
        }
    }
    return mg_adapter_put_nonempty(rc, body, "generationConfig", gc);
}

/* "models/x" and "x" both name model x. */
static const char *model_id(const mg_req *req)
{
    const char *m = req->deployment->model;
    return strncmp(m, "models/", 7) == 0 ? m + 7 : m;
}

static mg_rc embed_body(mg_req *req, cJSON *body, char *err, size_t errsz)
{
    const cJSON *json = req->json;
    mg_rc rc = mg_adapter_check_embeddings(json, "gemini", err, errsz);
    if (rc != MG_OK)
        return rc;
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(json, "input");
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(json, "dimensions");
    char model[512];
    if ((size_t)snprintf(model, sizeof(model), "models/%s", model_id(req)) >= sizeof(model))
        return MG_ERR;
    cJSON *reqs = cJSON_AddArrayToObject(body, "requests");
    if (reqs == NULL)
        return MG_ENOMEM;
    for (int i = 0; i < (cJSON_IsArray(input) ? cJSON_GetArraySize(input) : 1); i++) {
        const cJSON *text = cJSON_IsArray(input) ? cJSON_GetArrayItem(input, i) : input;
        cJSON *r = cJSON_CreateObject();
        if (r == NULL || !cJSON_AddItemToArray(reqs, r) || !cJSON_AddStringToObject(r, "model", model))
            return MG_ENOMEM;
        cJSON *content = cJSON_AddObjectToObject(r, "content");
        cJSON *parts = content ? cJSON_AddArrayToObject(content, "parts") : NULL;
        if (mg_adapter_add_block(parts, mg_adapter_plain_text(text->valuestring)) != MG_OK)
            return MG_ENOMEM;
        if (dims && !cJSON_IsNull(dims)) {
            rc = mg_adapter_copy_number(json, "dimensions", r, "outputDimensionality", 1, 65536, err, errsz);
            if (rc != MG_OK)
                return rc;
        }
    }
    return MG_OK;
}

static mg_rc chat_body(mg_req *req, cJSON *body, char *err, size_t errsz)
{
    const cJSON *json = req->json;
    mg_rc rc = mg_adapter_check_fields(json, chat_fields, "request", "gemini", err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_check_n(json, "gemini", err, errsz);
    if (rc == MG_OK)
        rc = translate_messages(cJSON_GetObjectItemCaseSensitive(json, "messages"), body, err, errsz);
    if (rc == MG_OK)
        rc = generation_config(json, body, err, errsz);
    if (rc == MG_OK)
        rc = translate_tools(json, body, err, errsz);
    return rc;
}

static mg_rc gemini_build(mg_req *req, mg_upstream_request *out, char *err, size_t errsz)
{
    const char *verb = req->api == MG_API_EMBEDDINGS ? ":batchEmbedContents"
                       : req->api != MG_API_CHAT ? NULL
                       : req->stream ? ":streamGenerateContent?alt=sse" : ":generateContent";
    if (verb == NULL) {
        snprintf(err, errsz, "this endpoint cannot be forwarded to a gemini provider");
        return MG_ERR;
    }
    mg_rc rc = mg_adapter_build_json(req, out, req->api == MG_API_CHAT ? chat_body : embed_body, err, errsz);
    if (rc != MG_OK)
        return rc;
    const mg_cfg_provider *p = req->provider;
    if (mg_buf_printf(&out->url, "%s/v1beta/models", p->base_url) != MG_OK ||
        mg_adapter_append_path_segment(&out->url, model_id(req)) != MG_OK ||
        mg_buf_printf(&out->url, "%s", verb) != MG_OK)
        return MG_ENOMEM;
    out->method = "POST";
    out->stream = req->stream && req->api == MG_API_CHAT;
    rc = mg_adapter_add_header(&out->headers, "Content-Type: application/json");
    if (rc == MG_OK)
        rc = mg_adapter_add_header(&out->headers, out->stream ? "Accept: text/event-stream" : "Accept: application/json");
    if (rc == MG_OK)
        rc = mg_adapter_add_header(&out->headers, "Expect:");
    if (rc == MG_OK && p->api_key)
        rc = mg_adapter_add_credential(&out->headers, "x-goog-api-key: %s", p->api_key, err, errsz);
    return rc;
}

/* ------------------------------------------------------------ replies */

static void take_usage(mg_req *req, const cJSON *j)
{
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usageMetadata");
    int64_t pt = mg_adapter_num(u, "promptTokenCount");
    int64_t ct = mg_adapter_num(u, "candidatesTokenCount"), tt = mg_adapter_num(u, "thoughtsTokenCount");
    if (pt >= 0)
        req->usage.prompt_tokens = pt;
    /* Thinking tokens are billed as output. */
    if (ct >= 0 || tt >= 0)
        req->usage.completion_tokens = (ct >= 0 ? ct : 0) + (tt >= 0 ? tt : 0);
}

static const char *finish_reason(const cJSON *fr, bool tools)
{
    if (!cJSON_IsString(fr))
        return NULL;
    const char *s = fr->valuestring;
    if (strcmp(s, "MAX_TOKENS") == 0)
        return MG_FINISH_LENGTH;
    if (strcmp(s, "SAFETY") == 0 || strcmp(s, "RECITATION") == 0 || strcmp(s, "BLOCKLIST") == 0 ||
        strcmp(s, "PROHIBITED_CONTENT") == 0 || strcmp(s, "SPII") == 0 || strcmp(s, "IMAGE_SAFETY") == 0)
        return MG_FINISH_FILTER;
    return tools ? MG_FINISH_TOOLS : MG_FINISH_STOP;
}

/* The parts of candidates[0] into m: text (thought parts skipped) and
 * function calls, numbered from first (ids made up when Gemini sends
 * none). */
static mg_rc candidate_parts(mg_req *req, const cJSON *cand, mg_adapter_message *m, int first, bool stream)
{
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cand, "content"), "parts");
    const cJSON *p;
    int i = first;
    cJSON_ArrayForEach(p, parts) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
        const cJSON *fc = cJSON_GetObjectItemCaseSensitive(p, "functionCall");
        mg_rc rc = MG_OK;
        if (cJSON_IsString(t) && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "thought"))) {
            rc = mg_adapter_message_text(m, t->valuestring);
        } else if (cJSON_IsObject(fc)) {
            const cJSON *gid = cJSON_GetObjectItemCaseSensitive(fc, "id");
            char id[80];
            if (cJSON_IsString(gid))
                snprintf(id, sizeof(id), "%s", gid->valuestring);
            else
                snprintf(id, sizeof(id), "call_%s_%d", req->request_id, i);
            rc = mg_adapter_message_call(m, stream ? i : -1, id,
                                         mg_adapter_str(cJSON_GetObjectItemCaseSensitive(fc, "name"), NULL),
                                         cJSON_GetObjectItemCaseSensitive(fc, "args"));
            i++;
        }
        if (rc != MG_OK)
            return rc;
    }
    return mg_adapter_message_cstr(m) ? MG_OK : MG_ENOMEM;
}

static mg_rc embed_reply(mg_req *req, const cJSON *j, mg_buf *out)
{
    const cJSON *embs = cJSON_GetObjectItemCaseSensitive(j, "embeddings");
    if (!cJSON_IsArray(embs))
        return MG_ERR;
    cJSON *vectors = cJSON_CreateArray();
    const cJSON *e;
    cJSON_ArrayForEach(e, embs) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "values");
        if (vectors == NULL || !cJSON_IsArray(v) || !cJSON_AddItemReferenceToArray(vectors, (cJSON *)v)) {
            cJSON_Delete(vectors);
            return vectors ? MG_ERR : MG_ENOMEM;
        }
    }
    mg_rc rc = mg_adapter_embeddings_reply(req, vectors, out);
    cJSON_Delete(vectors);
    return rc;
}

static mg_rc gemini_reply(mg_req *req, const char *body, size_t len, mg_buf *out)
{
    cJSON *j = mg_json_parse_upstream(body, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    if (req->api == MG_API_EMBEDDINGS) {
        mg_rc rc = embed_reply(req, j, out);
        cJSON_Delete(j);
        return rc;
    }
    take_usage(req, j);
    const cJSON *cand = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "candidates"), 0);
    mg_adapter_message m = {0};
    mg_rc rc = mg_adapter_message_init(&m);
    if (rc == MG_OK)
        rc = candidate_parts(req, cand, &m, 0, false);
    const char *fr = NULL;
    if (cand == NULL) {
        /* No candidate at all: the prompt itself was blocked. */
        const cJSON *block = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "promptFeedback"),
                                                              "blockReason");
        if (!cJSON_IsString(block))
            rc = rc == MG_OK ? MG_ERR : rc;
        fr = MG_FINISH_FILTER;
    } else {
        fr = finish_reason(cJSON_GetObjectItemCaseSensitive(cand, "finishReason"), cJSON_GetArraySize(m.calls) > 0);
    }
    if (rc == MG_OK)
        rc = mg_adapter_message_reply(req, &m, fr, out);
    mg_adapter_message_free(&m);
    cJSON_Delete(j);
    return rc;
}

static mg_rc gemini_stream_event(mg_req *req, mg_str ev, mg_buf *out)
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
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    if (cJSON_GetObjectItemCaseSensitive(j, "error")) {
        rc = mg_adapter_stream_error(req, "the model provider reported an error", out);
        cJSON_Delete(j);
        return rc;
    }
    take_usage(req, j);
    rc = mg_adapter_chunk_role_once(req, out);
    const cJSON *cand = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "candidates"), 0);
    int64_t first = mg_adapter_state_int(req, "tools", 0);
    mg_adapter_message m = {0};
    if (rc == MG_OK)
        rc = mg_adapter_message_init(&m);
    if (rc == MG_OK)
        rc = candidate_parts(req, cand, &m, (int)first, true);
    if (rc == MG_OK && m.any_text && m.text.len > 0)
        rc = mg_adapter_chunk_text(req, m.text.p, m.text.len, out);
    int ncalls = cJSON_GetArraySize(m.calls);
    if (rc == MG_OK && ncalls > 0) {
        rc = mg_adapter_state_set_int(req, "tools", first + ncalls);
        if (rc == MG_OK) {
            rc = mg_adapter_chunk_tool_calls(req, m.calls, out);
            m.calls = NULL;
        }
    }
    mg_adapter_message_free(&m);
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(cand, "finishReason");
    const cJSON *block = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "promptFeedback"),
                                                          "blockReason");
    /* The chunk with finishReason is Gemini's last (it also carries the
     * final usageMetadata); a blocked prompt ends the stream at once. */
    if (rc == MG_OK && (cJSON_IsString(fr) || (cand == NULL && cJSON_IsString(block)))) {
        const char *f = cand ? finish_reason(fr, mg_adapter_state_int(req, "tools", 0) > 0) : MG_FINISH_FILTER;
        rc = mg_adapter_chunk(req, NULL, f, out);
        if (rc == MG_OK)
            rc = mg_adapter_stream_end(req, out);
    }
    cJSON_Delete(j);
    return rc;
}

const mg_adapter_ops mg_adapter_gemini = {
    .type = "gemini",
    .build = gemini_build,
    .reply = gemini_reply,
    .stream_event = gemini_stream_event,
    .stream_content_type = "text/event-stream",
};
