/* modelgate — the Anthropic Messages API surface (POST /v1/messages).
 *
 * Anthropic SDK clients talk to any configured model through the canonical
 * OpenAI chat form: the request is translated strictly (a field or block
 * that has no canonical equivalent is refused with a message naming it,
 * never dropped), replies and stream events are translated back. Only
 * `cache_control` markers are accepted and dropped: they are caching hints
 * that do not change what the model is asked.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "surface.h"
#include "json.h"

#include "adapters/translate.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ================================================================ request */

typedef struct xlate {
    char *err;
    size_t errsz;
    mg_rc rc;         /* first failure; MG_ENOMEM is reported as such */
} xlate;

static mg_rc fail(xlate *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static mg_rc fail(xlate *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->err, x->errsz, fmt, ap);
    va_end(ap);
    x->rc = MG_ERR;
    return MG_ERR;
}

static mg_rc oom(xlate *x)
{
    snprintf(x->err, x->errsz, "out of memory");
    x->rc = MG_ENOMEM;
    return MG_ENOMEM;
}

static bool is_key(const cJSON *it, const char *k) { return strcmp(it->string, k) == 0; }

/* Every member of a block/object must be one we translate; `where` names
 * the object in the message. cache_control is always allowed. */
static mg_rc check_keys(xlate *x, const cJSON *obj, const char *where, const char *const *allowed)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (is_key(it, "cache_control"))
            continue;
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = is_key(it, *a);
        if (!ok)
            return fail(x, "%s: field \"%.64s\" is not supported by this gateway", where, it->string);
    }
    return MG_OK;
}

static const char *get_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *block_type(const cJSON *b)
{
    const char *t = get_str(b, "type");
    return t ? t : "";
}

/* Joins the text of a string or an array of text blocks (system prompts,
 * tool results) into one string; the canonical form has no parts there that
 * every provider accepts. Returns a malloc'd string or NULL (err set). */
static char *join_text(xlate *x, const cJSON *v, const char *where)
{
    if (cJSON_IsString(v)) {
        char *s = strdup(v->valuestring);
        if (s == NULL)
            oom(x);
        return s;
    }
    if (!cJSON_IsArray(v)) {
        fail(x, "%s must be a string or an array of text blocks", where);
        return NULL;
    }
    static const char *const text_keys[] = {"type", "text", NULL};
    mg_buf b = {0};
    const cJSON *blk;
    int i = 0;
    cJSON_ArrayForEach(blk, v) {
        char w[112];
        snprintf(w, sizeof(w), "%s[%d]", where, i);
        const char *t = block_type(blk);
        if (strcmp(t, "text") != 0) {
            fail(x, "%s: content block type \"%.32s\" is not supported here (only text)", w, t);
            goto bad;
        }
        if (check_keys(x, blk, w, text_keys) != MG_OK)
            goto bad;
        const char *text = get_str(blk, "text");
        if (text == NULL) {
            fail(x, "%s.text must be a string", w);
            goto bad;
        }
        if ((i > 0 && mg_buf_append(&b, "\n", 1) != MG_OK) || mg_buf_append_str(&b, text) != MG_OK) {
            oom(x);
            goto bad;
        }
        i++;
    }
    if (mg_buf_append(&b, "", 1) != MG_OK) {
        oom(x);
        goto bad;
    }
    return b.p;
bad:
    mg_buf_free(&b);
    return NULL;
}

static bool text_part(cJSON *parts, const char *text)
{
    cJSON *p = cJSON_CreateObject();
    return mg_adapter_put(parts, NULL, p) && cJSON_AddStringToObject(p, "type", "text") &&
           cJSON_AddStringToObject(p, "text", text);
}

/* image block -> {"type":"image_url","image_url":{"url":...}} */
static mg_rc image_part(xlate *x, const cJSON *blk, const char *where, cJSON *parts)
{
    static const char *const image_keys[] = {"type", "source", NULL};
    if (check_keys(x, blk, where, image_keys) != MG_OK)
        return MG_ERR;
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(blk, "source");
    const char *st = get_str(src, "type");
    mg_buf url = {0};
    if (st && strcmp(st, "base64") == 0) {
        static const char *const b64_keys[] = {"type", "media_type", "data", NULL};
        const char *mt = get_str(src, "media_type"), *data = get_str(src, "data");
        if (check_keys(x, src, where, b64_keys) != MG_OK)
            return MG_ERR;
        if (mt == NULL || data == NULL)
            return fail(x, "%s: a base64 image source needs string media_type and data", where);
        if (mg_buf_printf(&url, "data:%s;base64,", mt) != MG_OK || mg_buf_append_str(&url, data) != MG_OK ||
            mg_buf_append(&url, "", 1) != MG_OK) {
            mg_buf_free(&url);
            return oom(x);
        }
    } else if (st && strcmp(st, "url") == 0) {
        static const char *const url_keys[] = {"type", "url", NULL};
        const char *u = get_str(src, "url");
        if (check_keys(x, src, where, url_keys) != MG_OK)
            return MG_ERR;
        if (u == NULL)
            return fail(x, "%s: a url image source needs a string url", where);
        if (mg_buf_append(&url, u, strlen(u) + 1) != MG_OK)
            return oom(x);
    } else {
        return fail(x, "%s: image source type \"%.32s\" is not supported (base64 or url)", where, st ? st : "");
    }
    cJSON *p = cJSON_CreateObject();
    bool ok = mg_adapter_put(parts, NULL, p) && cJSON_AddStringToObject(p, "type", "image_url") &&
              cJSON_AddStringToObject(cJSON_AddObjectToObject(p, "image_url"), "url", url.p);
    mg_buf_free(&url);
    return ok ? MG_OK : oom(x);
}

/* tool_use block -> one entry of the assistant message's tool_calls. */
static mg_rc tool_call(xlate *x, const cJSON *blk, const char *where, cJSON *calls)
{
    static const char *const keys[] = {"type", "id", "name", "input", NULL};
    if (check_keys(x, blk, where, keys) != MG_OK)
        return MG_ERR;
    const char *id = get_str(blk, "id"), *name = get_str(blk, "name");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(blk, "input");
    if (id == NULL || name == NULL || !cJSON_IsObject(input))
        return fail(x, "%s: tool_use needs string id and name and an object input", where);
    return mg_adapter_put(calls, NULL, mg_adapter_tool_call_json(-1, id, name, input)) ? MG_OK : oom(x);
}

/* tool_result block -> {"role":"tool","tool_call_id","content"} */
static mg_rc tool_message(xlate *x, const cJSON *blk, const char *where, cJSON *msgs)
{
    static const char *const keys[] = {"type", "tool_use_id", "content", "is_error", NULL};
    if (check_keys(x, blk, where, keys) != MG_OK)
        return MG_ERR;
    const char *id = get_str(blk, "tool_use_id");
    if (id == NULL)
        return fail(x, "%s: tool_result needs a string tool_use_id", where);
    const cJSON *is_error = cJSON_GetObjectItemCaseSensitive(blk, "is_error");
    if (is_error && !cJSON_IsBool(is_error))
        return fail(x, "%s.is_error must be a boolean", where);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(blk, "content");
    char w[96];
    snprintf(w, sizeof(w), "%s.content", where);
    char *text = content ? join_text(x, content, w) : strdup("");
    if (text == NULL)
        return x->rc ? x->rc : oom(x);
    /* The canonical form has no error flag for tool output; the model still
     * has to learn that the call failed. */
    mg_buf b = {0};
    bool ok = (!cJSON_IsTrue(is_error) || mg_buf_append_str(&b, "Error: ") == MG_OK) &&
              mg_buf_append(&b, text, strlen(text) + 1) == MG_OK;
    free(text);
    cJSON *m = ok ? cJSON_CreateObject() : NULL;
    ok = mg_adapter_put(msgs, NULL, m) && cJSON_AddStringToObject(m, "role", "tool") &&
         cJSON_AddStringToObject(m, "tool_call_id", id) && cJSON_AddStringToObject(m, "content", b.p);
    mg_buf_free(&b);
    return ok ? MG_OK : oom(x);
}

/* Settles a translated message: a lone text part becomes a plain string, no
 * parts with tool calls becomes null content, empty tool_calls go away. */
static bool finish_message(cJSON *out, cJSON *parts, cJSON *calls)
{
    int nparts = cJSON_GetArraySize(parts);
    if (cJSON_GetArraySize(calls) == 0)
        cJSON_DeleteItemFromObjectCaseSensitive(out, "tool_calls");
    if (nparts == 0)
        return cJSON_ReplaceItemInObjectCaseSensitive(out, "content", cJSON_CreateNull());
    if (nparts == 1 && strcmp(block_type(parts->child), "text") == 0) /* replacing frees parts */
        return cJSON_ReplaceItemInObjectCaseSensitive(out, "content", cJSON_CreateString(get_str(parts->child, "text")));
    return true;
}

static mg_rc message(xlate *x, const cJSON *m, int mi, cJSON *msgs)
{
    char where[32];
    snprintf(where, sizeof(where), "messages[%d]", mi);
    static const char *const keys[] = {"role", "content", NULL};
    if (!cJSON_IsObject(m))
        return fail(x, "%s must be an object", where);
    if (check_keys(x, m, where, keys) != MG_OK)
        return MG_ERR;
    const char *role = get_str(m, "role");
    if (role == NULL || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0))
        return fail(x, "%s.role must be \"user\" or \"assistant\"", where);
    bool user = role[0] == 'u';
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (cJSON_IsString(content)) {
        cJSON *out = cJSON_CreateObject();
        bool ok = mg_adapter_put(msgs, NULL, out) && cJSON_AddStringToObject(out, "role", role) &&
                  cJSON_AddStringToObject(out, "content", content->valuestring);
        return ok ? MG_OK : oom(x);
    }
    if (!cJSON_IsArray(content) || cJSON_GetArraySize(content) == 0)
        return fail(x, "%s.content must be a string or a non-empty array of content blocks", where);

    /* Built detached: the tool messages of this turn go into msgs first. */
    cJSON *out = cJSON_CreateObject(), *parts = NULL, *calls = NULL;
    if (!cJSON_AddStringToObject(out, "role", role) || !(parts = cJSON_AddArrayToObject(out, "content")) ||
        !(calls = cJSON_AddArrayToObject(out, "tool_calls"))) {
        cJSON_Delete(out);
        return oom(x);
    }
    static const char *const text_keys[] = {"type", "text", NULL};
    const cJSON *blk;
    int bi = 0;
    mg_rc rc = MG_OK;
    cJSON_ArrayForEach(blk, content) {
        char w[64];
        snprintf(w, sizeof(w), "%s.content[%d]", where, bi++);
        const char *t = block_type(blk);
        if (strcmp(t, "text") == 0) {
            const char *text = get_str(blk, "text");
            rc = check_keys(x, blk, w, text_keys);
            if (rc == MG_OK && text == NULL)
                rc = fail(x, "%s.text must be a string", w);
            if (rc == MG_OK && !text_part(parts, text))
                rc = oom(x);
        } else if (strcmp(t, "image") == 0 && user) {
            rc = image_part(x, blk, w, parts);
        } else if (strcmp(t, "tool_result") == 0 && user) {
            /* Tool outputs must directly follow the assistant's tool_calls in
             * the canonical form, so they go before this turn's other parts. */
            rc = tool_message(x, blk, w, msgs);
        } else if (strcmp(t, "tool_use") == 0 && !user) {
            rc = tool_call(x, blk, w, calls);
        } else if (!cJSON_IsObject(blk)) {
            rc = fail(x, "%s must be a content block object", w);
        } else {
            rc = fail(x, "%s: content block type \"%.32s\" is not supported in %s messages", w, t, role);
        }
        if (rc != MG_OK) {
            cJSON_Delete(out);
            return rc;
        }
    }
    if (cJSON_GetArraySize(parts) == 0 && cJSON_GetArraySize(calls) == 0) {
        cJSON_Delete(out); /* only tool results: they are the whole turn */
        return MG_OK;
    }
    if (!finish_message(out, parts, calls) || !mg_adapter_put(msgs, NULL, out)) {
        cJSON_Delete(out);
        return oom(x);
    }
    return MG_OK;
}

static mg_rc tools(xlate *x, const cJSON *v, cJSON *req)
{
    if (!cJSON_IsArray(v))
        return fail(x, "tools must be an array");
    static const char *const keys[] = {"type", "name", "description", "input_schema", NULL};
    cJSON *arr = cJSON_CreateArray();
    if (!mg_adapter_put(req, "tools", arr))
        return oom(x);
    const cJSON *t;
    int i = 0;
    cJSON_ArrayForEach(t, v) {
        char w[48];
        snprintf(w, sizeof(w), "tools[%d]", i++);
        if (!cJSON_IsObject(t))
            return fail(x, "%s must be an object", w);
        const char *type = get_str(t, "type");
        /* Anthropic's server-side tools (web search, code execution, ...)
         * run at Anthropic; no other provider can run them. */
        if (cJSON_GetObjectItemCaseSensitive(t, "type") && (type == NULL || strcmp(type, "custom") != 0))
            return fail(x, "%s: tool type \"%.48s\" is not supported (only custom tools)", w, type ? type : "");
        if (check_keys(x, t, w, keys) != MG_OK)
            return MG_ERR;
        const char *name = get_str(t, "name");
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(t, "description");
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(t, "input_schema");
        if (name == NULL || !cJSON_IsObject(schema) || (desc && !cJSON_IsString(desc)))
            return fail(x, "%s needs a string name, an object input_schema and an optional string description", w);
        cJSON *tool = cJSON_CreateObject(), *fn = NULL;
        if (!mg_adapter_put(arr, NULL, tool) || !cJSON_AddStringToObject(tool, "type", "function") ||
            !(fn = cJSON_AddObjectToObject(tool, "function")) || !cJSON_AddStringToObject(fn, "name", name) ||
            (desc && !cJSON_AddStringToObject(fn, "description", desc->valuestring)) ||
            !mg_adapter_put(fn, "parameters", cJSON_Duplicate(schema, true)))
            return oom(x);
    }
    return MG_OK;
}

static mg_rc tool_choice(xlate *x, const cJSON *v, cJSON *req)
{
    static const char *const keys[] = {"type", "name", "disable_parallel_tool_use", NULL};
    const char *type = get_str(v, "type");
    if (!cJSON_IsObject(v) || type == NULL)
        return fail(x, "tool_choice must be an object with a type");
    if (check_keys(x, v, "tool_choice", keys) != MG_OK)
        return MG_ERR;
    const cJSON *dp = cJSON_GetObjectItemCaseSensitive(v, "disable_parallel_tool_use");
    if (dp && !cJSON_IsBool(dp))
        return fail(x, "tool_choice.disable_parallel_tool_use must be a boolean");
    cJSON *choice;
    if (strcmp(type, "auto") == 0 || strcmp(type, "none") == 0) {
        choice = cJSON_CreateString(type);
    } else if (strcmp(type, "any") == 0) {
        choice = cJSON_CreateString("required");
    } else if (strcmp(type, "tool") == 0) {
        const char *name = get_str(v, "name");
        if (name == NULL)
            return fail(x, "tool_choice of type \"tool\" needs a string name");
        choice = cJSON_CreateObject();
        if (!cJSON_AddStringToObject(choice, "type", "function") ||
            !cJSON_AddStringToObject(cJSON_AddObjectToObject(choice, "function"), "name", name)) {
            cJSON_Delete(choice);
            return oom(x);
        }
    } else {
        return fail(x, "tool_choice type \"%.32s\" is not supported (auto, any, tool, none)", type);
    }
    if (!mg_adapter_put(req, "tool_choice", choice))
        return oom(x);
    if (cJSON_IsTrue(dp) && !mg_adapter_put(req, "parallel_tool_calls", cJSON_CreateFalse()))
        return oom(x);
    return MG_OK;
}

static mg_rc number_field(xlate *x, const cJSON *v, cJSON *req, const char *to)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fail(x, "%s must be a number", v->string);
    return mg_adapter_put(req, to, cJSON_CreateNumber(v->valuedouble)) ? MG_OK : oom(x);
}

static mg_rc top_field(xlate *x, const cJSON *v, cJSON *req, bool *stream)
{
    const char *k = v->string;
    if (strcmp(k, "model") == 0) {
        if (!cJSON_IsString(v) || v->valuestring[0] == '\0')
            return fail(x, "model must be a non-empty string");
        return mg_adapter_put(req, "model", cJSON_CreateString(v->valuestring)) ? MG_OK : oom(x);
    }
    if (strcmp(k, "max_tokens") == 0) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1e9 ||
            v->valuedouble != floor(v->valuedouble))
            return fail(x, "max_tokens must be a positive integer");
        return number_field(x, v, req, "max_tokens");
    }
    if (strcmp(k, "temperature") == 0 || strcmp(k, "top_p") == 0)
        return number_field(x, v, req, k);
    if (strcmp(k, "stream") == 0) {
        if (!cJSON_IsBool(v) && !cJSON_IsNull(v))
            return fail(x, "stream must be a boolean");
        *stream = cJSON_IsTrue(v);
        return MG_OK;
    }
    if (strcmp(k, "stop_sequences") == 0) {
        const cJSON *s;
        if (!cJSON_IsArray(v))
            return fail(x, "stop_sequences must be an array of strings");
        cJSON_ArrayForEach(s, v) {
            if (!cJSON_IsString(s))
                return fail(x, "stop_sequences must be an array of strings");
        }
        return mg_adapter_put(req, "stop", cJSON_Duplicate(v, true)) ? MG_OK : oom(x);
    }
    if (strcmp(k, "metadata") == 0) {
        static const char *const keys[] = {"user_id", NULL};
        if (!cJSON_IsObject(v))
            return fail(x, "metadata must be an object");
        if (check_keys(x, v, "metadata", keys) != MG_OK)
            return MG_ERR;
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(v, "user_id");
        if (u && !cJSON_IsString(u) && !cJSON_IsNull(u))
            return fail(x, "metadata.user_id must be a string");
        if (cJSON_IsString(u) && !mg_adapter_put(req, "user", cJSON_CreateString(u->valuestring)))
            return oom(x);
        return MG_OK;
    }
    if (strcmp(k, "tools") == 0)
        return tools(x, v, req);
    if (strcmp(k, "tool_choice") == 0)
        return tool_choice(x, v, req);
    if (strcmp(k, "system") == 0 || strcmp(k, "messages") == 0)
        return MG_OK; /* placed by the caller: the system prompt comes first */
    if (strcmp(k, "top_k") == 0)
        return fail(x, "top_k is not supported: the gateway's canonical API has no top-k sampling");
    return fail(x, "field \"%.64s\" is not supported by this gateway's /v1/messages", k);
}

/* Builds the canonical tree from the Anthropic body, or NULL with err set. */
static cJSON *translate_request(const cJSON *in, bool *stream, xlate *x)
{
    cJSON *req = cJSON_CreateObject(), *msgs = cJSON_CreateArray();
    if (req == NULL || msgs == NULL) {
        cJSON_Delete(msgs);
        goto nomem;
    }
    /* Canonical keys follow the client's order, messages last (the system
     * prompt becomes the first message). */
    const cJSON *v;
    cJSON_ArrayForEach(v, in) {
        if (top_field(x, v, req, stream) != MG_OK) {
            cJSON_Delete(msgs);
            goto out;
        }
    }
    if (!mg_adapter_put(req, "messages", msgs))
        goto nomem;
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(in, "model"))) {
        fail(x, "model is required");
        goto out;
    }
    if (cJSON_GetObjectItemCaseSensitive(in, "max_tokens") == NULL) {
        fail(x, "max_tokens is required");
        goto out;
    }
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(in, "system");
    if (sys && !cJSON_IsNull(sys)) {
        char *text = join_text(x, sys, "system");
        if (text == NULL)
            goto out;
        cJSON *m = cJSON_CreateObject();
        bool ok = mg_adapter_put(msgs, NULL, m) && cJSON_AddStringToObject(m, "role", "system") &&
                  cJSON_AddStringToObject(m, "content", text);
        free(text);
        if (!ok)
            goto nomem;
    }
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(in, "messages");
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0) {
        fail(x, "messages is required and must be a non-empty array");
        goto out;
    }
    int mi = 0;
    cJSON_ArrayForEach(v, messages) {
        if (message(x, v, mi++, msgs) != MG_OK)
            goto out;
    }
    if (*stream && (!cJSON_AddTrueToObject(req, "stream") ||
                    !cJSON_AddTrueToObject(cJSON_AddObjectToObject(req, "stream_options"), "include_usage")))
        goto nomem;
    return req;
nomem:
    oom(x);
out:
    cJSON_Delete(req);
    return NULL;
}

static mg_rc anthropic_request(mg_req *req, char *err, size_t errsz)
{
    xlate x = {.err = err, .errsz = errsz, .rc = MG_OK};
    if (!cJSON_IsObject(req->json)) {
        snprintf(err, errsz, "request body must be a JSON object");
        return MG_ERR;
    }
    bool stream = false;
    cJSON *canon = translate_request(req->json, &stream, &x);
    if (canon == NULL)
        return x.rc ? x.rc : MG_ERR;
    /* Swap the members rather than the root: req->json stays the object
     * the router registered for deletion with the pool, so the tree has one
     * owner whichever way it was parsed; the client's members go with the
     * scratch root. */
    cJSON *old = req->json->child;
    req->json->child = canon->child;
    canon->child = old;
    cJSON_Delete(canon);
    req->stream = stream;
    req->client_wants_usage = true;
    return MG_OK;
}

/* ================================================================ replies */

static const char *stop_reason(const char *finish)
{
    if (finish == NULL)
        return NULL;
    if (strcmp(finish, "length") == 0)
        return "max_tokens";
    if (strcmp(finish, "tool_calls") == 0 || strcmp(finish, "function_call") == 0)
        return "tool_use";
    /* "stop", "content_filter" and anything unknown: the canonical reply
     * does not say which stop sequence matched, nor is there a refusal
     * reason every Anthropic SDK version knows. */
    return "end_turn";
}

static int64_t usage_num(const cJSON *usage, const char *key, int64_t fallback)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(usage, key);
    if (cJSON_IsNumber(n) && n->valuedouble >= 0 && n->valuedouble < 9e15)
        return (int64_t)n->valuedouble;
    return fallback >= 0 ? fallback : 0;
}

/* "msg_" + the canonical id, unless it already is an Anthropic id. */
static char *message_id(mg_req *req, const char *id)
{
    if (id == NULL || id[0] == '\0')
        id = req->request_id[0] ? req->request_id : "modelgate";
    size_t n = strlen(id) + 5;
    char *s = mg_pool_alloc(req->pool, n);
    if (s != NULL)
        snprintf(s, n, "%s%s", strncmp(id, "msg_", 4) == 0 ? "" : "msg_", id);
    return s;
}

/* A tool call's arguments must be a JSON object for the client: a reply
 * whose arguments are not is refused rather than altered. */
static mg_rc add_tool_block(cJSON *content, const cJSON *call)
{
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
    const char *id = get_str(call, "id"), *name = get_str(fn, "name"), *args = get_str(fn, "arguments");
    if (id == NULL || name == NULL)
        return MG_ERR;
    cJSON *input = args && args[0] ? cJSON_Parse(args) : cJSON_CreateObject();
    if (!cJSON_IsObject(input)) {
        cJSON_Delete(input);
        return MG_ERR;
    }
    cJSON *b = cJSON_CreateObject();
    if (!mg_adapter_put(content, NULL, b) || !cJSON_AddStringToObject(b, "type", "tool_use") ||
        !cJSON_AddStringToObject(b, "id", id) || !cJSON_AddStringToObject(b, "name", name)) {
        cJSON_Delete(input);
        return MG_ENOMEM;
    }
    return mg_adapter_put(b, "input", input) ? MG_OK : MG_ENOMEM;
}

static mg_rc reply_content(cJSON *content, const cJSON *msg)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(msg, "content");
    const char *refusal = get_str(msg, "refusal");
    if (cJSON_IsString(c) && c->valuestring[0] && !text_part(content, c->valuestring))
        return MG_ENOMEM;
    if (cJSON_IsArray(c)) {
        const cJSON *part;
        cJSON_ArrayForEach(part, c) {
            const char *text = get_str(part, "text");
            if (text == NULL)
                return MG_ERR;
            if (!text_part(content, text))
                return MG_ENOMEM;
        }
    }
    if (refusal && refusal[0] && !text_part(content, refusal))
        return MG_ENOMEM;
    const cJSON *call;
    cJSON_ArrayForEach(call, cJSON_GetObjectItemCaseSensitive(msg, "tool_calls")) {
        mg_rc rc = add_tool_block(content, call);
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

static mg_rc anthropic_reply(mg_req *req, const char *body, size_t len, mg_buf *out)
{
    cJSON *in = mg_json_parse_upstream(body, len);
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(in, "choices"), 0);
    if (!cJSON_IsObject(choice)) {
        cJSON_Delete(in);
        return MG_ERR;
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(in, "usage");
    const char *id = message_id(req, get_str(in, "id"));
    const char *reason = stop_reason(get_str(choice, "finish_reason"));
    cJSON *o = cJSON_CreateObject(), *content = NULL, *u = NULL;
    mg_rc rc = MG_ENOMEM;
    if (id == NULL || !cJSON_AddStringToObject(o, "id", id) || !cJSON_AddStringToObject(o, "type", "message") ||
        !cJSON_AddStringToObject(o, "role", "assistant") ||
        !cJSON_AddStringToObject(o, "model", req->model_name ? req->model_name : "") ||
        !(content = cJSON_AddArrayToObject(o, "content")))
        goto out;
    rc = reply_content(content, cJSON_GetObjectItemCaseSensitive(choice, "message"));
    if (rc != MG_OK)
        goto out;
    rc = MG_ENOMEM;
    if (!cJSON_AddStringToObject(o, "stop_reason", reason ? reason : "end_turn") ||
        !cJSON_AddNullToObject(o, "stop_sequence") || !(u = cJSON_AddObjectToObject(o, "usage")) ||
        !cJSON_AddNumberToObject(u, "input_tokens", (double)usage_num(usage, "prompt_tokens", req->usage.prompt_tokens)) ||
        !cJSON_AddNumberToObject(u, "output_tokens",
                                 (double)usage_num(usage, "completion_tokens", req->usage.completion_tokens)))
        goto out;
    char *s = cJSON_PrintUnformatted(o);
    if (s == NULL)
        goto out;
    rc = mg_buf_append(out, s, strlen(s));
    cJSON_free(s);
out:
    cJSON_Delete(o);
    cJSON_Delete(in);
    return rc;
}

/* ================================================================ streams */

typedef enum { BLOCK_NONE, BLOCK_TEXT, BLOCK_TOOL } block_kind;

typedef struct stream_state {
    bool started, delta_sent, stopped;
    block_kind open;            /* the block being streamed */
    int open_index;             /* its Anthropic content index */
    int next_index;
    int open_tool;              /* canonical tool_calls index of the open tool block */
    int max_tool;               /* highest canonical tool index started, -1 none */
    const char *stop_reason;    /* NULL until a finish_reason arrived */
    int64_t input_tokens, output_tokens; /* -1 until a usage chunk arrived */
} stream_state;

static mg_rc ev_begin(mg_buf *out, const char *name)
{
    return mg_buf_printf(out, "event: %s\ndata: {\"type\":\"%s\"", name, name);
}

static mg_rc ev_end(mg_buf *out) { return mg_buf_append(out, "}\n\n", 3); }

static int64_t known(int64_t a, int64_t b) { return a >= 0 ? a : b >= 0 ? b : 0; }

static mg_rc emit_start(mg_req *req, stream_state *st, const char *id, mg_buf *out)
{
    const char *mid = message_id(req, id);
    const char *model = req->model_name ? req->model_name : "";
    if (mid == NULL)
        return MG_ENOMEM;
    st->started = true;
    if (ev_begin(out, "message_start") != MG_OK || mg_buf_append_str(out, ",\"message\":{\"id\":") != MG_OK ||
        mg_buf_append_json_str(out, mid, strlen(mid)) != MG_OK ||
        mg_buf_append_str(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":") != MG_OK ||
        mg_buf_append_json_str(out, model, strlen(model)) != MG_OK ||
        mg_buf_printf(out, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                           "\"usage\":{\"input_tokens\":%lld,\"output_tokens\":0}}",
                      (long long)known(st->input_tokens, req->usage.prompt_tokens)) != MG_OK)
        return MG_ENOMEM;
    return ev_end(out);
}

static mg_rc close_block(stream_state *st, mg_buf *out)
{
    if (st->open == BLOCK_NONE)
        return MG_OK;
    st->open = BLOCK_NONE;
    if (ev_begin(out, "content_block_stop") != MG_OK || mg_buf_printf(out, ",\"index\":%d", st->open_index) != MG_OK)
        return MG_ENOMEM;
    return ev_end(out);
}

static mg_rc open_text(stream_state *st, mg_buf *out)
{
    if (close_block(st, out) != MG_OK)
        return MG_ENOMEM;
    st->open = BLOCK_TEXT;
    st->open_index = st->next_index++;
    if (ev_begin(out, "content_block_start") != MG_OK ||
        mg_buf_printf(out, ",\"index\":%d,\"content_block\":{\"type\":\"text\",\"text\":\"\"}", st->open_index) != MG_OK)
        return MG_ENOMEM;
    return ev_end(out);
}

static mg_rc text_delta(stream_state *st, const char *text, mg_buf *out)
{
    if (st->open != BLOCK_TEXT && open_text(st, out) != MG_OK)
        return MG_ENOMEM;
    if (ev_begin(out, "content_block_delta") != MG_OK ||
        mg_buf_printf(out, ",\"index\":%d,\"delta\":{\"type\":\"text_delta\",\"text\":", st->open_index) != MG_OK ||
        mg_buf_append_json_str(out, text, strlen(text)) != MG_OK || mg_buf_append(out, "}", 1) != MG_OK)
        return MG_ENOMEM;
    return ev_end(out);
}

static mg_rc open_tool(stream_state *st, int tool, const char *id, const char *name, mg_buf *out)
{
    if (close_block(st, out) != MG_OK)
        return MG_ENOMEM;
    st->open = BLOCK_TOOL;
    st->open_tool = st->max_tool = tool;
    st->open_index = st->next_index++;
    char gen[32];
    if (id == NULL) {
        snprintf(gen, sizeof(gen), "toolu_%d", st->open_index);
        id = gen;
    }
    if (name == NULL)
        name = "";
    if (ev_begin(out, "content_block_start") != MG_OK ||
        mg_buf_printf(out, ",\"index\":%d,\"content_block\":{\"type\":\"tool_use\",\"id\":", st->open_index) != MG_OK ||
        mg_buf_append_json_str(out, id, strlen(id)) != MG_OK || mg_buf_append_str(out, ",\"name\":") != MG_OK ||
        mg_buf_append_json_str(out, name, strlen(name)) != MG_OK ||
        mg_buf_append_str(out, ",\"input\":{}}") != MG_OK)
        return MG_ENOMEM;
    return ev_end(out);
}

static mg_rc tool_delta(stream_state *st, const cJSON *call, mg_buf *out)
{
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(call, "index");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
    const char *id = get_str(call, "id"), *args = get_str(fn, "arguments");
    int tool;
    if (cJSON_IsNumber(idx) && idx->valuedouble >= 0 && idx->valuedouble < 1e6)
        tool = (int)idx->valuedouble;
    else /* providers that omit the index: a new id starts a new call */
        tool = id || st->max_tool < 0 ? st->max_tool + 1 : st->max_tool;
    if (tool > st->max_tool) {
        mg_rc rc = open_tool(st, tool, id, get_str(fn, "name"), out);
        if (rc != MG_OK)
            return rc;
    } else if (st->open != BLOCK_TOOL || tool != st->open_tool) {
        /* Anthropic blocks cannot be reopened once stopped. */
        return MG_ERR;
    }
    if (args == NULL || args[0] == '\0')
        return MG_OK;
    if (ev_begin(out, "content_block_delta") != MG_OK ||
        mg_buf_printf(out, ",\"index\":%d,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":",
                      st->open_index) != MG_OK ||
        mg_buf_append_json_str(out, args, strlen(args)) != MG_OK || mg_buf_append(out, "}", 1) != MG_OK)
        return MG_ENOMEM;
    return ev_end(out);
}

static mg_rc emit_delta(mg_req *req, stream_state *st, mg_buf *out)
{
    st->delta_sent = true;
    if (ev_begin(out, "message_delta") != MG_OK ||
        mg_buf_printf(out, ",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":null},\"usage\":{",
                      st->stop_reason ? st->stop_reason : "end_turn") != MG_OK)
        return MG_ENOMEM;
    int64_t in = known(st->input_tokens, req->usage.prompt_tokens);
    if ((st->input_tokens >= 0 || req->usage.prompt_tokens >= 0) &&
        mg_buf_printf(out, "\"input_tokens\":%lld,", (long long)in) != MG_OK)
        return MG_ENOMEM;
    if (mg_buf_printf(out, "\"output_tokens\":%lld}",
                      (long long)known(st->output_tokens, req->usage.completion_tokens)) != MG_OK)
        return MG_ENOMEM;
    return ev_end(out);
}

static mg_rc error_event(const char *type, const char *message, mg_buf *out)
{
    if (mg_buf_printf(out, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":", type) !=
            MG_OK ||
        mg_buf_append_json_str(out, message, strlen(message)) != MG_OK || mg_buf_append_str(out, "}}\n\n") != MG_OK)
        return MG_ENOMEM;
    return MG_OK;
}

static mg_rc on_done(mg_req *req, stream_state *st, mg_buf *out)
{
    mg_rc rc = MG_OK;
    if (!st->started)
        rc = emit_start(req, st, NULL, out);
    if (rc == MG_OK)
        rc = close_block(st, out);
    if (rc == MG_OK && !st->delta_sent)
        rc = emit_delta(req, st, out);
    st->stopped = true;
    if (rc == MG_OK && (ev_begin(out, "message_stop") != MG_OK || ev_end(out) != MG_OK))
        rc = MG_ENOMEM;
    return rc;
}

static mg_rc on_chunk(mg_req *req, stream_state *st, const cJSON *j, mg_buf *out)
{
    mg_rc rc = MG_OK;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (cJSON_IsObject(e)) {
        const char *m = get_str(e, "message");
        st->stopped = true;
        return error_event("api_error", m ? m : "upstream error", out);
    }
    if (!st->started && (rc = emit_start(req, st, get_str(j, "id"), out)) != MG_OK)
        return rc;
    const cJSON *ch;
    cJSON_ArrayForEach(ch, cJSON_GetObjectItemCaseSensitive(j, "choices")) {
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
        const char *text = get_str(delta, "content");
        const char *refusal = get_str(delta, "refusal");
        if (text && text[0] && (rc = text_delta(st, text, out)) != MG_OK)
            return rc;
        if (refusal && refusal[0] && (rc = text_delta(st, refusal, out)) != MG_OK)
            return rc;
        const cJSON *call;
        cJSON_ArrayForEach(call, cJSON_GetObjectItemCaseSensitive(delta, "tool_calls")) {
            if ((rc = tool_delta(st, call, out)) != MG_OK)
                return rc;
        }
        const char *finish = get_str(ch, "finish_reason");
        if (finish) {
            st->stop_reason = stop_reason(finish);
            if ((rc = close_block(st, out)) != MG_OK)
                return rc;
        }
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (cJSON_IsObject(usage)) {
        st->input_tokens = usage_num(usage, "prompt_tokens", st->input_tokens);
        st->output_tokens = usage_num(usage, "completion_tokens", st->output_tokens);
    }
    if (st->stop_reason && st->output_tokens >= 0 && !st->delta_sent)
        rc = emit_delta(req, st, out);
    return rc;
}

/* One canonical event's joined data: payload. */
static mg_rc on_event(mg_req *req, stream_state *st, mg_str data, mg_buf *out)
{
    if (st->stopped || data.n == 0)
        return MG_OK;
    if (data.n == 6 && memcmp(data.p, "[DONE]", 6) == 0)
        return on_done(req, st, out);
    cJSON *j = mg_json_parse_upstream(data.p, data.n);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    mg_rc rc = on_chunk(req, st, j, out);
    cJSON_Delete(j);
    return rc;
}

static mg_rc anthropic_stream(mg_req *req, const char *sse, size_t len, mg_buf *out)
{
    stream_state *st = req->surface_state;
    if (st == NULL) {
        st = mg_pool_calloc(req->pool, sizeof(*st));
        if (st == NULL)
            return MG_ENOMEM;
        st->max_tool = -1;
        st->input_tokens = st->output_tokens = -1;
        req->surface_state = st;
    }
    mg_buf data = {0};
    mg_rc rc = MG_OK;
    size_t i = 0;
    while (i <= len && rc == MG_OK) {
        size_t j = i;
        while (j < len && sse[j] != '\n')
            j++;
        size_t n = j - i;
        if (n > 0 && sse[i + n - 1] == '\r')
            n--;
        if (n == 0) {
            /* A blank line (or the end of the input) ends an event. On
             * failure the event's partial output is taken back, so the
             * caller can end the stream with a well-formed error event. */
            size_t mark = out->len;
            rc = on_event(req, st, mg_str_make(data.p, data.len), out);
            if (rc != MG_OK)
                out->len = mark;
            mg_buf_reset(&data);
        } else if (n >= 5 && memcmp(sse + i, "data:", 5) == 0) {
            size_t k = 5 + (n > 5 && sse[i + 5] == ' ');
            if ((data.len && mg_buf_append(&data, "\n", 1) != MG_OK) || mg_buf_append(&data, sse + i + k, n - k) != MG_OK)
                rc = MG_ENOMEM;
        }
        i = j + 1;
    }
    mg_buf_free(&data);
    return rc;
}

static mg_rc anthropic_stream_error(mg_req *req, const char *code, const char *message, mg_buf *out)
{
    stream_state *st = req->surface_state;
    if (st)
        st->stopped = true;
    return error_event("api_error", message ? message : "stream failed", out);
}

/* ================================================================ errors */

/* By status, which every caller sets; the OpenAI type only decides where the
 * status alone does not. 503 is the gateway's "overloaded" answer
 * (shedding, circuit open), which Anthropic clients know as
 * overloaded_error; other upstream failures (502, 504) are api_error. */
static const char *error_type(int status, const char *type)
{
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "overloaded_error";
    default: break;
    }
    if (status >= 500)
        return "api_error";
    if (type && strcmp(type, "authentication_error") == 0)
        return "authentication_error";
    if (type && strcmp(type, "permission_error") == 0)
        return "permission_error";
    return "invalid_request_error";
}

static mg_rc anthropic_error(mg_buf *out, int status, const char *type, const char *code, const char *message)
{
    if (mg_buf_printf(out, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":", error_type(status, type)) !=
            MG_OK ||
        mg_buf_append_json_str(out, message ? message : "", message ? strlen(message) : 0) != MG_OK ||
        mg_buf_append_str(out, "}}") != MG_OK)
        return MG_ENOMEM;
    return MG_OK;
}

const mg_surface_ops mg_surface_anthropic = {
    .name = "anthropic",
    .request = anthropic_request,
    .reply = anthropic_reply,
    .stream = anthropic_stream,
    .error = anthropic_error,
    .stream_error = anthropic_stream_error,
};
