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
#include "adapters/translate.h"

#include <stdio.h>

/* `user` is accepted and not sent (Gemini has no end-user field). */
static const char *const chat_fields[] = {
    "model", "messages", "stream", "stream_options", "user", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "stop", "seed", "presence_penalty", "frequency_penalty", "response_format",
    "tools", "tool_choice", "n", NULL};
static const char *const message_fields[] = {"role", "content", "name", "tool_calls", "tool_call_id",
                                             "refusal", NULL};
static const char *const embed_fields[] = {"model", "input", "encoding_format", "dimensions", "user", NULL};

static cJSON *parts_for(cJSON *contents, const char *role)
{
    cJSON *last = cJSON_GetArrayItem(contents, cJSON_GetArraySize(contents) - 1);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(last, "role");
    if (last && cJSON_IsString(r) && strcmp(r->valuestring, role) == 0)
        return cJSON_GetObjectItemCaseSensitive(last, "parts");
    cJSON *m = cJSON_CreateObject();
    if (m == NULL || !cJSON_AddItemToArray(contents, m)) {
        cJSON_Delete(m);
        return NULL;
    }
    if (cJSON_AddStringToObject(m, "role", role) == NULL)
        return NULL;
    return cJSON_AddArrayToObject(m, "parts");
}

static mg_rc add_part(cJSON *parts, cJSON *p)
{
    if (parts && p && cJSON_AddItemToArray(parts, p))
        return MG_OK;
    cJSON_Delete(p);
    return MG_ENOMEM;
}

static mg_rc add_text(cJSON *parts, const char *text)
{
    cJSON *p = cJSON_CreateObject();
    if (p && !cJSON_AddStringToObject(p, "text", text)) {
        cJSON_Delete(p);
        p = NULL;
    }
    return add_part(parts, p);
}

static mg_rc user_parts(const cJSON *content, cJSON *parts, char *err, size_t errsz)
{
    if (cJSON_IsString(content))
        return add_text(parts, content->valuestring);
    if (!cJSON_IsArray(content)) {
        snprintf(err, errsz, "user message content must be a string or an array of parts");
        return MG_ERR;
    }
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        const cJSON *txt = cJSON_GetObjectItemCaseSensitive(part, "text");
        mg_rc rc;
        if (strcmp(t, "text") == 0 && cJSON_IsString(txt)) {
            rc = add_text(parts, txt->valuestring);
        } else if (strcmp(t, "image_url") == 0) {
            const cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url");
            const cJSON *url = cJSON_IsString(iu) ? iu : cJSON_GetObjectItemCaseSensitive(iu, "url");
            mg_str mt, data;
            char media[64];
            if (!cJSON_IsString(url) || !mg_adapter_parse_data_url(url->valuestring, &mt, &data) ||
                mt.n >= sizeof(media)) {
                snprintf(err, errsz, "gemini models take images only as base64 data: URLs");
                return MG_ERR;
            }
            memcpy(media, mt.p, mt.n);
            media[mt.n] = '\0';
            cJSON *p = cJSON_CreateObject();
            cJSON *in = p ? cJSON_AddObjectToObject(p, "inlineData") : NULL;
            if (in == NULL || !cJSON_AddStringToObject(in, "mimeType", media) ||
                !cJSON_AddStringToObject(in, "data", data.p)) {
                cJSON_Delete(p);
                return MG_ENOMEM;
            }
            rc = add_part(parts, p);
        } else {
            snprintf(err, errsz, "content part type \"%.40s\" is not supported by gemini models", t);
            return MG_ERR;
        }
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

static mg_rc model_parts(const cJSON *m, cJSON *parts, char *err, size_t errsz)
{
    mg_buf text = {0};
    mg_rc rc = mg_adapter_text_content(cJSON_GetObjectItemCaseSensitive(m, "content"), "assistant", &text, err, errsz);
    if (rc == MG_OK && text.len > 0)
        rc = add_text(parts, text.p);
    mg_buf_free(&text);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(m, "tool_calls")) {
        if (rc != MG_OK)
            return rc;
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsString(name) || !cJSON_IsString(args)) {
            snprintf(err, errsz, "tool_calls need function.name and function.arguments");
            return MG_ERR;
        }
        cJSON *a = args->valuestring[0] ? cJSON_Parse(args->valuestring) : cJSON_CreateObject();
        if (!cJSON_IsObject(a)) {
            cJSON_Delete(a);
            snprintf(err, errsz, "tool call arguments must be a JSON object for gemini models");
            return MG_ERR;
        }
        cJSON *p = cJSON_CreateObject();
        cJSON *fc = p ? cJSON_AddObjectToObject(p, "functionCall") : NULL;
        if (fc == NULL || !cJSON_AddStringToObject(fc, "name", name->valuestring) ||
            !cJSON_AddItemToObject(fc, "args", a)) {
            cJSON_Delete(a);
            cJSON_Delete(p);
            return MG_ENOMEM;
        }
        rc = add_part(parts, p);
    }
    return rc;
}

static mg_rc function_response(const cJSON *msgs, const cJSON *m, cJSON *parts, char *err, size_t errsz)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
    const char *name = cJSON_IsString(id) ? mg_adapter_tool_name(msgs, m, id->valuestring) : NULL;
    if (name == NULL) {
        snprintf(err, errsz, "tool messages must answer a tool call of an earlier assistant message");
        return MG_ERR;
    }
    mg_buf text = {0};
    mg_rc rc = mg_adapter_text_content(cJSON_GetObjectItemCaseSensitive(m, "content"), "tool", &text, err, errsz);
    if (rc != MG_OK) {
        mg_buf_free(&text);
        return rc;
    }
    /* Gemini wants an object: a JSON object result is passed as is,
     * anything else is wrapped as {"content": text}. */
    cJSON *resp = cJSON_Parse(text.p);
    if (!cJSON_IsObject(resp)) {
        cJSON_Delete(resp);
        resp = cJSON_CreateObject();
        if (resp && !cJSON_AddStringToObject(resp, "content", text.p)) {
            cJSON_Delete(resp);
            resp = NULL;
        }
    }
    mg_buf_free(&text);
    cJSON *p = cJSON_CreateObject();
    cJSON *fr = p ? cJSON_AddObjectToObject(p, "functionResponse") : NULL;
    if (resp == NULL || fr == NULL || !cJSON_AddStringToObject(fr, "name", name) ||
        !cJSON_AddItemToObject(fr, "response", resp)) {
        cJSON_Delete(resp);
        cJSON_Delete(p);
        return MG_ENOMEM;
    }
    return add_part(parts, p);
}

static mg_rc translate_messages(const cJSON *msgs, cJSON *body, char *err, size_t errsz)
{
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        snprintf(err, errsz, "messages must be a non-empty array");
        return MG_ERR;
    }
    cJSON *sys = cJSON_CreateArray();
    cJSON *contents = cJSON_AddArrayToObject(body, "contents");
    if (sys == NULL || contents == NULL) {
        cJSON_Delete(sys);
        return MG_ENOMEM;
    }
    mg_rc rc = MG_OK;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        rc = mg_adapter_check_fields(m, message_fields, "message", "gemini", err, errsz);
        if (rc != MG_OK)
            break;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const char *r = cJSON_IsString(role) ? role->valuestring : "";
        if (strcmp(r, "system") == 0 || strcmp(r, "developer") == 0) {
            mg_buf text = {0};
            rc = mg_adapter_text_content(cJSON_GetObjectItemCaseSensitive(m, "content"), r, &text, err, errsz);
            if (rc == MG_OK)
                rc = add_text(sys, text.p);
            mg_buf_free(&text);
        } else if (strcmp(r, "user") == 0) {
            rc = user_parts(cJSON_GetObjectItemCaseSensitive(m, "content"), parts_for(contents, "user"), err, errsz);
        } else if (strcmp(r, "assistant") == 0) {
            rc = model_parts(m, parts_for(contents, "model"), err, errsz);
        } else if (strcmp(r, "tool") == 0) {
            rc = function_response(msgs, m, parts_for(contents, "user"), err, errsz);
        } else {
            snprintf(err, errsz, "message role \"%.20s\" is not supported by gemini models", r);
            rc = MG_ERR;
        }
        if (rc != MG_OK)
            break;
    }
    if (rc == MG_OK && cJSON_GetArraySize(sys) > 0) {
        cJSON *si = cJSON_AddObjectToObject(body, "systemInstruction");
        if (si == NULL || !cJSON_AddItemToObject(si, "parts", sys))
            rc = MG_ENOMEM;
        else
            sys = NULL;
    }
    cJSON_Delete(sys);
    return rc;
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
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
            const cJSON *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
            const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
            if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0 || !cJSON_IsString(name)) {
                snprintf(err, errsz, "only function tools with a name are supported by gemini models");
                return MG_ERR;
            }
            cJSON *d = cJSON_CreateObject();
            if (d == NULL || !cJSON_AddItemToArray(decls, d) || !cJSON_AddStringToObject(d, "name", name->valuestring) ||
                (cJSON_IsString(desc) && !cJSON_AddStringToObject(d, "description", desc->valuestring)))
                return MG_ENOMEM;
            if (cJSON_IsObject(params)) {
                cJSON *p = cJSON_Duplicate(params, true);
                if (p == NULL || !cJSON_AddItemToObject(d, "parameters", p)) {
                    cJSON_Delete(p);
                    return MG_ENOMEM;
                }
            }
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

static mg_rc generation_config(const cJSON *json, cJSON *body, char *err, size_t errsz)
{
    cJSON *gc = cJSON_CreateObject();
    if (gc == NULL)
        return MG_ENOMEM;
    int64_t max_tokens;
    mg_rc rc = mg_adapter_max_tokens(json, -1, &max_tokens, err, errsz);
    if (rc == MG_OK && max_tokens > 0 && !cJSON_AddNumberToObject(gc, "maxOutputTokens", (double)max_tokens))
        rc = MG_ENOMEM;
    if (rc == MG_OK)
        rc = mg_adapter_copy_number(json, "temperature", gc, "temperature", 0, 2, err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_copy_number(json, "top_p", gc, "topP", 0, 1, err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_copy_number(json, "seed", gc, "seed", -2147483648.0, 2147483647.0, err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_copy_number(json, "presence_penalty", gc, "presencePenalty", -2, 2, err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_copy_number(json, "frequency_penalty", gc, "frequencyPenalty", -2, 2, err, errsz);
    cJSON *stop = NULL;
    if (rc == MG_OK)
        rc = mg_adapter_stop_list(json, &stop, err, errsz);
    if (rc == MG_OK && stop && !cJSON_AddItemToObject(gc, "stopSequences", stop)) {
        cJSON_Delete(stop);
        rc = MG_ENOMEM;
    }
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
    if (rc == MG_OK && cJSON_GetArraySize(gc) > 0) {
        if (!cJSON_AddItemToObject(body, "generationConfig", gc))
            rc = MG_ENOMEM;
        else
            gc = NULL;
    }
    cJSON_Delete(gc);
    return rc;
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
    mg_rc rc = mg_adapter_check_fields(json, embed_fields, "request", "gemini", err, errsz);
    if (rc != MG_OK)
        return rc;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(json, "encoding_format");
    if (fmt && !cJSON_IsNull(fmt) && !(cJSON_IsString(fmt) && strcmp(fmt->valuestring, "float") == 0)) {
        snprintf(err, errsz, "gemini embeddings support encoding_format float only");
        return MG_ERR;
    }
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(json, "input");
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(json, "dimensions");
    bool ok = cJSON_IsString(input) || (cJSON_IsArray(input) && cJSON_GetArraySize(input) > 0);
    const cJSON *s;
    if (cJSON_IsArray(input))
        cJSON_ArrayForEach(s, input) ok = ok && cJSON_IsString(s);
    if (!ok) {
        snprintf(err, errsz, "gemini embeddings take input as a string or an array of strings (no token arrays)");
        return MG_ERR;
    }
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
        if (parts == NULL || add_text(parts, text->valuestring) != MG_OK)
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
    cJSON *body = cJSON_CreateObject();
    if (body == NULL)
        return MG_ENOMEM;
    mg_rc rc = req->api == MG_API_CHAT ? chat_body(req, body, err, errsz) : embed_body(req, body, err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_set_body(out, body);
    cJSON_Delete(body);
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
    if (rc == MG_OK && p->api_key) {
        rc = mg_adapter_add_headerf(&out->headers, "x-goog-api-key: %s", p->api_key);
        if (rc == MG_ERR)
            snprintf(err, errsz, "provider credential too long");
    }
    return rc;
}

/* ------------------------------------------------------------ replies */

static void take_usage(mg_req *req, const cJSON *j)
{
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usageMetadata");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(u, "promptTokenCount");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(u, "candidatesTokenCount");
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(u, "thoughtsTokenCount");
    if (cJSON_IsNumber(pt))
        req->usage.prompt_tokens = (int64_t)pt->valuedouble;
    /* Thinking tokens are billed as output. */
    if (cJSON_IsNumber(ct) || cJSON_IsNumber(tt))
        req->usage.completion_tokens = (cJSON_IsNumber(ct) ? (int64_t)ct->valuedouble : 0) +
                                       (cJSON_IsNumber(tt) ? (int64_t)tt->valuedouble : 0);
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

/* Text of candidates[0] into text (thought parts skipped) and its
 * function calls into calls (numbered from first; ids made up when Gemini
 * sends none). */
static mg_rc candidate_parts(mg_req *req, const cJSON *cand, mg_buf *text, bool *any_text, cJSON *calls,
                             int first, bool stream)
{
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cand, "content"), "parts");
    const cJSON *p;
    int i = first;
    cJSON_ArrayForEach(p, parts) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
        const cJSON *fc = cJSON_GetObjectItemCaseSensitive(p, "functionCall");
        if (cJSON_IsString(t) && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "thought"))) {
            if (mg_buf_append_str(text, t->valuestring) != MG_OK)
                return MG_ENOMEM;
            *any_text = true;
        } else if (cJSON_IsObject(fc)) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(fc, "name");
            const cJSON *args = cJSON_GetObjectItemCaseSensitive(fc, "args");
            const cJSON *gid = cJSON_GetObjectItemCaseSensitive(fc, "id");
            char id[80];
            if (cJSON_IsString(gid))
                snprintf(id, sizeof(id), "%s", gid->valuestring);
            else
                snprintf(id, sizeof(id), "call_%s_%d", req->request_id, i);
            char *a = args ? cJSON_PrintUnformatted(args) : NULL;
            cJSON *tc = mg_adapter_tool_call(stream ? i : -1, id, cJSON_IsString(name) ? name->valuestring : "",
                                             a ? a : "{}");
            cJSON_free(a);
            if (tc == NULL || !cJSON_AddItemToArray(calls, tc)) {
                cJSON_Delete(tc);
                return MG_ENOMEM;
            }
            i++;
        }
    }
    if (mg_buf_reserve(text, 1) != MG_OK)
        return MG_ENOMEM;
    text->p[text->len] = '\0';
    return MG_OK;
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
    cJSON *j = cJSON_ParseWithLength(body, len);
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
    mg_buf text = {0};
    bool any_text = false;
    cJSON *calls = cJSON_CreateArray();
    mg_rc rc = calls ? candidate_parts(req, cand, &text, &any_text, calls, 0, false) : MG_ENOMEM;
    const char *fr = NULL;
    if (cand == NULL) {
        /* No candidate at all: the prompt itself was blocked. */
        const cJSON *block = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "promptFeedback"),
                                                              "blockReason");
        if (!cJSON_IsString(block))
            rc = rc == MG_OK ? MG_ERR : rc;
        fr = MG_FINISH_FILTER;
    } else {
        fr = finish_reason(cJSON_GetObjectItemCaseSensitive(cand, "finishReason"), cJSON_GetArraySize(calls) > 0);
    }
    if (rc == MG_OK) {
        rc = mg_adapter_chat_reply(req, any_text ? text.p : NULL, calls, fr, out);
        calls = NULL;
    }
    cJSON_Delete(calls);
    mg_buf_free(&text);
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
    cJSON *j = cJSON_ParseWithLength(data.p, data.len);
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
    if (mg_adapter_state_int(req, "started", 0) == 0) {
        cJSON *d = cJSON_CreateObject();
        if (d == NULL || !cJSON_AddStringToObject(d, "role", "assistant") || !cJSON_AddStringToObject(d, "content", "") ||
            mg_adapter_state_set_int(req, "started", 1) != MG_OK) {
            cJSON_Delete(d);
            cJSON_Delete(j);
            return MG_ENOMEM;
        }
        rc = mg_adapter_chunk(req, d, NULL, out);
    }
    const cJSON *cand = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "candidates"), 0);
    mg_buf text = {0};
    bool any_text = false;
    int64_t first = mg_adapter_state_int(req, "tools", 0);
    cJSON *calls = cJSON_CreateArray();
    if (rc == MG_OK)
        rc = calls ? candidate_parts(req, cand, &text, &any_text, calls, (int)first, true) : MG_ENOMEM;
    if (rc == MG_OK && any_text && text.len > 0)
        rc = mg_adapter_chunk_text(req, text.p, text.len, out);
    int ncalls = cJSON_GetArraySize(calls);
    if (rc == MG_OK && ncalls > 0) {
        cJSON *d = cJSON_CreateObject();
        if (d == NULL || !cJSON_AddItemToObject(d, "tool_calls", calls)) {
            cJSON_Delete(d);
            rc = MG_ENOMEM;
        } else {
            calls = NULL;
            rc = mg_adapter_state_set_int(req, "tools", first + ncalls);
            if (rc == MG_OK)
                rc = mg_adapter_chunk(req, d, NULL, out);
            else
                cJSON_Delete(d);
        }
    }
    cJSON_Delete(calls);
    mg_buf_free(&text);
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
