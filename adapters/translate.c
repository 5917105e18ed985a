/* modelgate — translation helpers shared by the non-OpenAI adapters
 * (contracts in translate.h).
 * SPDX-License-Identifier: Apache-2.0
 */
#include "adapters/translate.h"

#include <math.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

mg_rc mg_adapter_check_fields(const cJSON *obj, const char *const *allowed, const char *what,
                              const char *provider, char *err, size_t errsz)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = it->string && strcmp(it->string, allowed[i]) == 0;
        if (!ok) {
            snprintf(err, errsz, "%s field \"%.60s\" is not supported by %s models", what,
                     it->string ? it->string : "", provider);
            return MG_ERR;
        }
    }
    return MG_OK;
}

mg_rc mg_adapter_check_n(const cJSON *json, const char *provider, char *err, size_t errsz)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(json, "n");
    if (n == NULL || cJSON_IsNull(n) || (cJSON_IsNumber(n) && n->valuedouble == 1))
        return MG_OK;
    snprintf(err, errsz, "n other than 1 is not supported by %s models", provider);
    return MG_ERR;
}

static bool positive_int(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1e9 ||
        v->valuedouble != floor(v->valuedouble))
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

mg_rc mg_adapter_max_tokens(const cJSON *json, int64_t def, int64_t *out, char *err, size_t errsz)
{
    static const char *const names[] = {"max_completion_tokens", "max_tokens"};
    for (size_t i = 0; i < MG_ARRAY_LEN(names); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, names[i]);
        if (v == NULL || cJSON_IsNull(v))
            continue;
        if (!positive_int(v, out)) {
            snprintf(err, errsz, "%s must be a positive integer", names[i]);
            return MG_ERR;
        }
        return MG_OK;
    }
    *out = def;
    return MG_OK;
}

mg_rc mg_adapter_stop_list(const cJSON *json, cJSON **out, char *err, size_t errsz)
{
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(json, "stop");
    *out = NULL;
    if (stop == NULL || cJSON_IsNull(stop))
        return MG_OK;
    if (cJSON_IsString(stop)) {
        *out = cJSON_CreateArray();
        if (*out == NULL || !cJSON_AddItemToArray(*out, cJSON_CreateString(stop->valuestring))) {
            cJSON_Delete(*out);
            *out = NULL;
            return MG_ENOMEM;
        }
        return MG_OK;
    }
    const cJSON *s;
    bool ok = cJSON_IsArray(stop);
    cJSON_ArrayForEach(s, stop) ok = ok && cJSON_IsString(s);
    if (!ok) {
        snprintf(err, errsz, "stop must be a string or an array of strings");
        return MG_ERR;
    }
    *out = cJSON_Duplicate(stop, true);
    return *out ? MG_OK : MG_ENOMEM;
}

mg_rc mg_adapter_copy_number(const cJSON *json, const char *name, cJSON *dst, const char *dst_name,
                             double lo, double hi, char *err, size_t errsz)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, name);
    if (v == NULL || cJSON_IsNull(v))
        return MG_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi)) {
        snprintf(err, errsz, "%s must be a number between %g and %g for this model", name, lo, hi);
        return MG_ERR;
    }
    return cJSON_AddNumberToObject(dst, dst_name, v->valuedouble) ? MG_OK : MG_ENOMEM;
}

bool mg_adapter_parse_data_url(const char *url, mg_str *media_type, mg_str *data)
{
    if (url == NULL || strncmp(url, "data:", 5) != 0)
        return false;
    const char *mt = url + 5;
    const char *semi = strstr(mt, ";base64,");
    const char *comma = strchr(mt, ',');
    if (semi == NULL || comma == NULL || comma < semi || semi == mt)
        return false;
    *media_type = mg_str_make(mt, (size_t)(semi - mt));
    *data = mg_str_c(semi + 8);
    return data->n > 0;
}

mg_rc mg_adapter_text_content(const cJSON *content, const char *role, mg_buf *out,
                              char *err, size_t errsz)
{
    mg_rc rc = MG_OK;
    if (content == NULL || cJSON_IsNull(content)) {
        rc = mg_buf_append(out, "", 0);
    } else if (cJSON_IsString(content)) {
        rc = mg_buf_append_str(out, content->valuestring);
    } else if (cJSON_IsArray(content)) {
        const cJSON *part;
        cJSON_ArrayForEach(part, content) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
            if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(text)) {
                snprintf(err, errsz, "%s messages may only contain text parts for this model", role);
                return MG_ERR;
            }
            rc = mg_buf_append_str(out, text->valuestring);
            if (rc != MG_OK)
                break;
        }
    } else {
        snprintf(err, errsz, "message content must be a string or an array of parts");
        return MG_ERR;
    }
    if (rc == MG_OK)
        rc = mg_buf_reserve(out, 1);
    if (rc == MG_OK)
        out->p[out->len] = '\0';
    return rc;
}

const char *mg_adapter_tool_name(const cJSON *messages, const cJSON *before, const char *tool_call_id)
{
    const cJSON *m;
    const char *name = NULL;
    cJSON_ArrayForEach(m, messages) {
        if (m == before)
            break;
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        const cJSON *c;
        cJSON_ArrayForEach(c, calls) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
            if (cJSON_IsString(id) && cJSON_IsString(nm) && strcmp(id->valuestring, tool_call_id) == 0)
                name = nm->valuestring;   /* the latest call with that id wins */
        }
    }
    return name;
}

mg_rc mg_adapter_append_path_segment(mg_buf *b, const char *seg)
{
    static const char hex[] = "0123456789ABCDEF";
    if (mg_buf_append(b, "/", 1) != MG_OK)
        return MG_ENOMEM;
    for (const unsigned char *s = (const unsigned char *)seg; *s; s++) {
        unsigned char c = *s;
        bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                          c == '-' || c == '.' || c == '_' || c == '~';
        char enc[3] = {'%', hex[c >> 4], hex[c & 15]};
        if (mg_buf_append(b, unreserved ? (const char *)s : enc, unreserved ? 1 : 3) != MG_OK)
            return MG_ENOMEM;
    }
    return mg_buf_reserve(b, 1) == MG_OK ? (b->p[b->len] = '\0', MG_OK) : MG_ENOMEM;
}

mg_rc mg_adapter_add_header(struct curl_slist **list, const char *h)
{
    struct curl_slist *n = curl_slist_append(*list, h);
    if (n == NULL)
        return MG_ENOMEM;
    *list = n;
    return MG_OK;
}

mg_rc mg_adapter_add_headerf(struct curl_slist **list, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line))
        return MG_ERR;
    return mg_adapter_add_header(list, line);
}

mg_rc mg_adapter_set_body(mg_upstream_request *out, const cJSON *body)
{
    char *json = cJSON_PrintUnformatted(body);
    if (json == NULL)
        return MG_ENOMEM;
    mg_rc rc = mg_buf_append(&out->body, json, strlen(json));
    cJSON_free(json);
    return rc;
}

mg_rc mg_adapter_build_json(mg_req *req, mg_upstream_request *out,
                            mg_rc (*fill)(mg_req *req, cJSON *body, char *err, size_t errsz), char *err,
                            size_t errsz)
{
    cJSON *body = cJSON_CreateObject();
    if (body == NULL)
        return MG_ENOMEM;
    mg_rc rc = fill(req, body, err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_set_body(out, body);
    cJSON_Delete(body);
    return rc;
}

mg_rc mg_adapter_add_credential(struct curl_slist **list, const char *fmt, const char *value, char *err,
                                size_t errsz)
{
    char line[4096];
    int n = snprintf(line, sizeof(line), fmt, value);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        snprintf(err, errsz, "provider credential too long");
        return MG_ERR;
    }
    return mg_adapter_add_header(list, line);
}

/* ------------------------------------------------------------ sampling */

static mg_rc put_stop(const cJSON *json, cJSON *dst, const char *name, char *err, size_t errsz)
{
    cJSON *stop = NULL;
    mg_rc rc = mg_adapter_stop_list(json, &stop, err, errsz);
    if (rc == MG_OK && stop && !cJSON_AddItemToObject(dst, name, stop)) {
        cJSON_Delete(stop);
        rc = MG_ENOMEM;
    }
    return rc;
}

mg_rc mg_adapter_put_sampling(const cJSON *json, cJSON *dst, const mg_adapter_sampling *s, char *err, size_t errsz)
{
    mg_rc rc = MG_OK;
    if (s->max_tokens) {
        int64_t max_tokens;
        rc = mg_adapter_max_tokens(json, -1, &max_tokens, err, errsz);
        if (rc == MG_OK && max_tokens > 0 && !cJSON_AddNumberToObject(dst, s->max_tokens, (double)max_tokens))
            rc = MG_ENOMEM;
    }
    for (const mg_adapter_number *n = s->numbers; rc == MG_OK && n < s->numbers + MG_ARRAY_LEN(s->numbers) && n->name;
         n++)
        rc = mg_adapter_copy_number(json, n->name, dst, n->to, n->lo, n->hi, err, errsz);
    if (rc == MG_OK && s->stop)
        rc = put_stop(json, dst, s->stop, err, errsz);
    return rc;
}

mg_rc mg_adapter_put_nonempty(mg_rc rc, cJSON *parent, const char *key, cJSON *obj)
{
    if (rc == MG_OK && cJSON_GetArraySize(obj) > 0) {
        if (cJSON_AddItemToObject(parent, key, obj))
            return MG_OK;
        rc = MG_ENOMEM;
    }
    cJSON_Delete(obj);
    return rc;
}

/* ------------------------------------------------------------ embeddings */

static const char *const embed_fields[] = {"model", "input", "encoding_format", "dimensions", "user", NULL};

mg_rc mg_adapter_check_embeddings(const cJSON *json, const char *provider, char *err, size_t errsz)
{
    mg_rc rc = mg_adapter_check_fields(json, embed_fields, "request", provider, err, errsz);
    if (rc != MG_OK)
        return rc;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(json, "encoding_format");
    if (fmt && !cJSON_IsNull(fmt) && !(cJSON_IsString(fmt) && strcmp(fmt->valuestring, "float") == 0)) {
        snprintf(err, errsz, "%s embeddings support encoding_format float only", provider);
        return MG_ERR;
    }
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(json, "input");
    bool ok = cJSON_IsString(input) || (cJSON_IsArray(input) && cJSON_GetArraySize(input) > 0);
    const cJSON *s;
    if (cJSON_IsArray(input))
        cJSON_ArrayForEach(s, input) ok = ok && cJSON_IsString(s);
    if (!ok) {
        snprintf(err, errsz, "%s embeddings take input as a string or an array of strings (no token arrays)", provider);
        return MG_ERR;
    }
    return MG_OK;
}

/* ------------------------------------------------------------ messages */

const char *const mg_adapter_message_fields[] = {"role", "content", "name", "tool_calls", "tool_call_id",
                                                 "refusal", NULL};

mg_rc mg_adapter_each_part(const cJSON *parts, const char *provider, mg_rc (*text)(void *ctx, const char *text),
                           mg_rc (*image)(void *ctx, const char *url, char *err, size_t errsz), void *ctx,
                           char *err, size_t errsz)
{
    const cJSON *part;
    cJSON_ArrayForEach(part, parts) {
        const char *t = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(part, "type"), "");
        const cJSON *txt = cJSON_GetObjectItemCaseSensitive(part, "text");
        mg_rc rc;
        if (strcmp(t, "text") == 0 && cJSON_IsString(txt)) {
            rc = text(ctx, txt->valuestring);
        } else if (strcmp(t, "image_url") == 0) {
            const cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url");
            const cJSON *url = cJSON_IsString(iu) ? iu : cJSON_GetObjectItemCaseSensitive(iu, "url");
            rc = image(ctx, mg_adapter_str(url, NULL), err, errsz);
        } else {
            snprintf(err, errsz, "content part type \"%.40s\" is not supported by %s models", t, provider);
            return MG_ERR;
        }
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

mg_rc mg_adapter_call_input(const cJSON *call, bool need_id, const char *provider, const char **id,
                            const char **name, cJSON **input, char *err, size_t errsz)
{
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
    *id = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(call, "id"), NULL);
    *name = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(fn, "name"), NULL);
    const char *args = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(fn, "arguments"), NULL);
    *input = NULL;
    if ((need_id && *id == NULL) || *name == NULL || args == NULL) {
        snprintf(err, errsz, need_id ? "tool_calls need id, function.name and function.arguments"
                                     : "tool_calls need function.name and function.arguments");
        return MG_ERR;
    }
    cJSON *in = args[0] ? cJSON_Parse(args) : cJSON_CreateObject();
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        snprintf(err, errsz, "tool call arguments must be a JSON object for %s models", provider);
        return MG_ERR;
    }
    *input = in;
    return MG_OK;
}

mg_rc mg_adapter_function_tool(const cJSON *tool, const char *provider, const char **name, const char **description,
                               const cJSON **parameters, char *err, size_t errsz)
{
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tool, "function");
    const char *type = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(tool, "type"), "");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    *name = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(fn, "name"), NULL);
    *description = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(fn, "description"), NULL);
    *parameters = cJSON_IsObject(params) ? params : NULL;
    if (strcmp(type, "function") != 0 || *name == NULL) {
        snprintf(err, errsz, "only function tools with a name are supported by %s models", provider);
        return MG_ERR;
    }
    return MG_OK;
}

cJSON *mg_adapter_tool_schema(const cJSON *parameters)
{
    return parameters ? cJSON_Duplicate(parameters, true) : cJSON_Parse("{\"type\":\"object\",\"properties\":{}}");
}

cJSON *mg_adapter_plain_text(const char *text)
{
    cJSON *b = cJSON_CreateObject();
    if (b && !cJSON_AddStringToObject(b, "text", text)) {
        cJSON_Delete(b);
        b = NULL;
    }
    return b;
}

bool mg_adapter_put(cJSON *obj, const char *key, cJSON *item)
{
    if (obj && item && (key ? cJSON_AddItemToObject(obj, key, item) : cJSON_AddItemToArray(obj, item)))
        return true;
    cJSON_Delete(item);
    return false;
}

mg_rc mg_adapter_add_block(cJSON *blocks, cJSON *block)
{
    return mg_adapter_put(blocks, NULL, block) ? MG_OK : MG_ENOMEM;
}

/* The blocks of the last turn if it has role, else of a new turn. */
static cJSON *turn_for(const mg_adapter_dialect *d, cJSON *turns, const char *role)
{
    cJSON *last = cJSON_GetArrayItem(turns, cJSON_GetArraySize(turns) - 1);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(last, "role");
    if (last && cJSON_IsString(r) && strcmp(r->valuestring, role) == 0)
        return cJSON_GetObjectItemCaseSensitive(last, d->blocks_key);
    cJSON *m = cJSON_CreateObject();
    if (m == NULL || !cJSON_AddItemToArray(turns, m)) {
        cJSON_Delete(m);
        return NULL;
    }
    if (cJSON_AddStringToObject(m, "role", role) == NULL)
        return NULL;
    return cJSON_AddArrayToObject(m, d->blocks_key);
}

typedef struct block_sink {
    const mg_adapter_dialect *d;
    cJSON *blocks;
} block_sink;

static mg_rc sink_text(void *ctx, const char *text)
{
    block_sink *s = ctx;
    return mg_adapter_add_block(s->blocks, s->d->text(text));
}

static mg_rc sink_image(void *ctx, const char *url, char *err, size_t errsz)
{
    block_sink *s = ctx;
    cJSON *b = NULL;
    mg_rc rc = s->d->image(url, &b, err, errsz);
    return rc == MG_OK ? mg_adapter_add_block(s->blocks, b) : rc;
}

static mg_rc user_blocks(const mg_adapter_dialect *d, const cJSON *content, cJSON *blocks, char *err, size_t errsz)
{
    block_sink s = {d, blocks};
    if (cJSON_IsString(content))
        return sink_text(&s, content->valuestring);
    if (!cJSON_IsArray(content)) {
        snprintf(err, errsz, "user message content must be a string or an array of parts");
        return MG_ERR;
    }
    return mg_adapter_each_part(content, d->provider, sink_text, sink_image, &s, err, errsz);
}

static mg_rc assistant_blocks(const mg_adapter_dialect *d, const cJSON *m, cJSON *blocks, char *err, size_t errsz)
{
    mg_buf text = {0};
    mg_rc rc = mg_adapter_text_content(cJSON_GetObjectItemCaseSensitive(m, "content"), "assistant", &text, err, errsz);
    if (rc == MG_OK && text.len > 0)
        rc = mg_adapter_add_block(blocks, d->text(text.p));
    mg_buf_free(&text);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(m, "tool_calls")) {
        if (rc != MG_OK)
            break;
        const char *id, *name;
        cJSON *input;
        rc = mg_adapter_call_input(c, d->call_ids, d->provider, &id, &name, &input, err, errsz);
        if (rc == MG_OK)
            rc = mg_adapter_add_block(blocks, d->tool_use(id, name, input));
    }
    return rc;
}

static mg_rc tool_result(const mg_adapter_dialect *d, const cJSON *msgs, const cJSON *m, cJSON *blocks, char *err,
                         size_t errsz)
{
    const char *id = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(m, "tool_call_id"), NULL);
    const char *ref = d->result_by_name && id ? mg_adapter_tool_name(msgs, m, id) : id;
    if (ref == NULL) {
        snprintf(err, errsz, d->result_by_name ? "tool messages must answer a tool call of an earlier assistant message"
                                               : "tool messages need a tool_call_id");
        return MG_ERR;
    }
    mg_buf text = {0};
    mg_rc rc = mg_adapter_text_content(cJSON_GetObjectItemCaseSensitive(m, "content"), "tool", &text, err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_add_block(blocks, d->tool_result(ref, text.p));
    mg_buf_free(&text);
    return rc;
}

mg_rc mg_adapter_translate_messages(const mg_adapter_dialect *d, const cJSON *msgs, cJSON *body, cJSON **system,
                                    char *err, size_t errsz)
{
    *system = NULL;
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        snprintf(err, errsz, "messages must be a non-empty array");
        return MG_ERR;
    }
    cJSON *sys = cJSON_CreateArray();
    cJSON *turns = cJSON_AddArrayToObject(body, d->turns_key);
    if (sys == NULL || turns == NULL) {
        cJSON_Delete(sys);
        return MG_ENOMEM;
    }
    mg_rc rc = MG_OK;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        rc = mg_adapter_check_fields(m, mg_adapter_message_fields, "message", d->provider, err, errsz);
        if (rc != MG_OK)
            break;
        const char *r = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(m, "role"), "");
        if (strcmp(r, "system") == 0 || strcmp(r, "developer") == 0) {
            mg_buf text = {0};
            rc = mg_adapter_text_content(cJSON_GetObjectItemCaseSensitive(m, "content"), r, &text, err, errsz);
            if (rc == MG_OK)
                rc = mg_adapter_add_block(sys, d->text(text.p));
            mg_buf_free(&text);
        } else if (strcmp(r, "user") == 0) {
            rc = user_blocks(d, cJSON_GetObjectItemCaseSensitive(m, "content"), turn_for(d, turns, "user"), err, errsz);
        } else if (strcmp(r, "assistant") == 0) {
            rc = assistant_blocks(d, m, turn_for(d, turns, d->assistant_role), err, errsz);
        } else if (strcmp(r, "tool") == 0) {
            rc = tool_result(d, msgs, m, turn_for(d, turns, "user"), err, errsz);
        } else {
            snprintf(err, errsz, "message role \"%.20s\" is not supported by %s models", r, d->provider);
            rc = MG_ERR;
        }
        if (rc != MG_OK)
            break;
    }
    if (rc == MG_OK && cJSON_GetArraySize(sys) > 0)
        *system = sys;
    else
        cJSON_Delete(sys);
    return rc;
}

/* ------------------------------------------------------------ replies */

cJSON *mg_adapter_tool_call_json(int index, const char *id, const char *name, const cJSON *args)
{
    char *a = args ? cJSON_PrintUnformatted(args) : NULL;
    cJSON *tc = mg_adapter_tool_call(index, id ? id : "", name ? name : "", a ? a : "{}");
    cJSON_free(a);
    return tc;
}

const char *mg_adapter_str(const cJSON *v, const char *def)
{
    return cJSON_IsString(v) ? v->valuestring : def;
}

int64_t mg_adapter_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    /* Counts from the provider: a negative, huge or non-finite number is
     * no count (and converting one out of int64_t range is undefined). */
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9e15 ? (int64_t)v->valuedouble : -1;
}

mg_rc mg_adapter_message_init(mg_adapter_message *m)
{
    m->calls = cJSON_CreateArray();
    return m->calls ? MG_OK : MG_ENOMEM;
}

mg_rc mg_adapter_message_text(mg_adapter_message *m, const char *text)
{
    m->any_text = true;
    return mg_buf_append_str(&m->text, text);
}

mg_rc mg_adapter_message_call(mg_adapter_message *m, int index, const char *id, const char *name, const cJSON *args)
{
    cJSON *tc = mg_adapter_tool_call_json(index, id, name, args);
    if (tc == NULL || !cJSON_AddItemToArray(m->calls, tc)) {
        cJSON_Delete(tc);
        return MG_ENOMEM;
    }
    return MG_OK;
}

const char *mg_adapter_message_cstr(mg_adapter_message *m)
{
    if (mg_buf_reserve(&m->text, 1) != MG_OK)
        return NULL;
    m->text.p[m->text.len] = '\0';
    return m->text.p;
}

mg_rc mg_adapter_message_reply(mg_req *req, mg_adapter_message *m, const char *finish_reason, mg_buf *out)
{
    const char *text = mg_adapter_message_cstr(m);
    if (text == NULL)
        return MG_ENOMEM;
    cJSON *calls = m->calls;
    m->calls = NULL;
    return mg_adapter_chat_reply(req, m->any_text ? text : NULL, calls, finish_reason, out);
}

void mg_adapter_message_free(mg_adapter_message *m)
{
    mg_buf_free(&m->text);
    cJSON_Delete(m->calls);
    m->calls = NULL;
}

cJSON *mg_adapter_tool_call(int index, const char *id, const char *name, const char *arguments)
{
    cJSON *tc = cJSON_CreateObject();
    cJSON *fn = cJSON_CreateObject();
    bool ok = tc && fn;
    if (ok && index >= 0)
        ok = cJSON_AddNumberToObject(tc, "index", index) != NULL;
    if (ok && id)
        ok = cJSON_AddStringToObject(tc, "id", id) && cJSON_AddStringToObject(tc, "type", "function");
    if (ok && name)
        ok = cJSON_AddStringToObject(fn, "name", name) != NULL;
    if (ok && arguments)
        ok = cJSON_AddStringToObject(fn, "arguments", arguments) != NULL;
    if (ok && cJSON_AddItemToObject(tc, "function", fn))
        return tc;
    cJSON_Delete(fn);
    cJSON_Delete(tc);
    return NULL;
}

static const char *model_name(const mg_req *req)
{
    if (req->model_name)
        return req->model_name;
    return req->deployment && req->deployment->model ? req->deployment->model : "";
}

/* id, object, created, model: the head every reply and chunk shares. */
static cJSON *reply_head(const mg_req *req, const char *object)
{
    char id[64];
    snprintf(id, sizeof(id), "chatcmpl-%s", req->request_id);
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddStringToObject(o, "id", id) && cJSON_AddStringToObject(o, "object", object) &&
        cJSON_AddNumberToObject(o, "created", (double)time(NULL)) &&
        cJSON_AddStringToObject(o, "model", model_name(req)))
        return o;
    cJSON_Delete(o);
    return NULL;
}

static bool add_usage(const mg_req *req, cJSON *o)
{
    if (req->usage.prompt_tokens < 0 && req->usage.completion_tokens < 0)
        return true;
    int64_t pt = req->usage.prompt_tokens < 0 ? 0 : req->usage.prompt_tokens;
    int64_t ct = req->usage.completion_tokens < 0 ? 0 : req->usage.completion_tokens;
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    return u && cJSON_AddNumberToObject(u, "prompt_tokens", (double)pt) &&
           cJSON_AddNumberToObject(u, "completion_tokens", (double)ct) &&
           cJSON_AddNumberToObject(u, "total_tokens", (double)(pt + ct));
}

static mg_rc emit(cJSON *o, mg_buf *out, bool sse)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (s == NULL)
        return MG_ENOMEM;
    mg_rc rc = sse ? mg_adapter_sse_data(out, s, strlen(s)) : mg_buf_append(out, s, strlen(s));
    cJSON_free(s);
    return rc;
}

mg_rc mg_adapter_chat_reply(mg_req *req, const char *content, cJSON *tool_calls,
                            const char *finish_reason, mg_buf *out)
{
    cJSON *o = reply_head(req, "chat.completion");
    cJSON *choices = o ? cJSON_AddArrayToObject(o, "choices") : NULL;
    cJSON *ch = cJSON_CreateObject();
    cJSON *msg = ch ? cJSON_AddObjectToObject(ch, "message") : NULL;
    bool ok = choices && ch && msg && cJSON_AddItemToArray(choices, ch);
    if (!ok)
        cJSON_Delete(ch);
    ok = ok && cJSON_AddNumberToObject(ch, "index", 0) && cJSON_AddStringToObject(msg, "role", "assistant");
    if (ok)
        ok = content ? cJSON_AddStringToObject(msg, "content", content) != NULL
                     : cJSON_AddNullToObject(msg, "content") != NULL;
    if (ok && tool_calls && cJSON_GetArraySize(tool_calls) > 0) {
        ok = cJSON_AddItemToObject(msg, "tool_calls", tool_calls);
        tool_calls = NULL;
    }
    ok = ok && cJSON_AddNullToObject(ch, "logprobs") &&
         cJSON_AddStringToObject(ch, "finish_reason", finish_reason ? finish_reason : MG_FINISH_STOP) &&
         add_usage(req, o);
    cJSON_Delete(tool_calls);
    if (!ok) {
        cJSON_Delete(o);
        return MG_ENOMEM;
    }
    if (content)
        req->usage.output_chars += strlen(content);
    return emit(o, out, false);
}

mg_rc mg_adapter_chunk(mg_req *req, cJSON *delta, const char *finish_reason, mg_buf *out)
{
    if (delta == NULL)
        delta = cJSON_CreateObject();
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(delta, "content");
    if (cJSON_IsString(content))
        req->usage.output_chars += strlen(content->valuestring);
    cJSON *o = reply_head(req, "chat.completion.chunk");
    cJSON *choices = o ? cJSON_AddArrayToObject(o, "choices") : NULL;
    cJSON *ch = cJSON_CreateObject();
    bool ok = choices && ch && delta && cJSON_AddItemToArray(choices, ch);
    if (!ok) {
        cJSON_Delete(ch);
        cJSON_Delete(delta);
        cJSON_Delete(o);
        return MG_ENOMEM;
    }
    ok = cJSON_AddNumberToObject(ch, "index", 0) && cJSON_AddItemToObject(ch, "delta", delta);
    if (!ok)
        cJSON_Delete(delta);
    ok = ok && cJSON_AddNullToObject(ch, "logprobs") &&
         (finish_reason ? cJSON_AddStringToObject(ch, "finish_reason", finish_reason) != NULL
                        : cJSON_AddNullToObject(ch, "finish_reason") != NULL);
    if (!ok) {
        cJSON_Delete(o);
        return MG_ENOMEM;
    }
    return emit(o, out, true);
}

mg_rc mg_adapter_chunk_text(mg_req *req, const char *text, size_t n, mg_buf *out)
{
    cJSON *d = cJSON_CreateObject();
    char *s = malloc(n + 1);
    bool ok = d && s;
    if (ok) {
        memcpy(s, text, n);
        s[n] = '\0';
        ok = cJSON_AddStringToObject(d, "content", s) != NULL;
    }
    free(s);
    if (!ok) {
        cJSON_Delete(d);
        return MG_ENOMEM;
    }
    return mg_adapter_chunk(req, d, NULL, out);
}

mg_rc mg_adapter_chunk_role(mg_req *req, mg_buf *out)
{
    cJSON *d = cJSON_CreateObject();
    if (d == NULL || !cJSON_AddStringToObject(d, "role", "assistant") || !cJSON_AddStringToObject(d, "content", "")) {
        cJSON_Delete(d);
        return MG_ENOMEM;
    }
    return mg_adapter_chunk(req, d, NULL, out);
}

mg_rc mg_adapter_chunk_role_once(mg_req *req, mg_buf *out)
{
    if (mg_adapter_state_int(req, "started", 0) != 0)
        return MG_OK;
    if (mg_adapter_state_set_int(req, "started", 1) != MG_OK)
        return MG_ENOMEM;
    return mg_adapter_chunk_role(req, out);
}

mg_rc mg_adapter_chunk_tool_calls(mg_req *req, cJSON *calls, mg_buf *out)
{
    cJSON *arr = cJSON_IsArray(calls) ? calls : cJSON_CreateArray();
    if (calls && arr != calls && (arr == NULL || !cJSON_AddItemToArray(arr, calls))) {
        cJSON_Delete(calls);
        calls = NULL;
    }
    cJSON *d = cJSON_CreateObject();
    if (calls == NULL || arr == NULL || d == NULL || !cJSON_AddItemToObject(d, "tool_calls", arr)) {
        cJSON_Delete(arr);
        cJSON_Delete(d);
        return MG_ENOMEM;
    }
    return mg_adapter_chunk(req, d, NULL, out);
}

mg_rc mg_adapter_stream_tool_index(mg_req *req, const cJSON *block_index, bool create, int64_t *out)
{
    char key[32];
    bool known = cJSON_IsNumber(block_index) && block_index->valuedouble >= 0 && block_index->valuedouble < 1e9;
    snprintf(key, sizeof(key), "b%lld", known ? (long long)block_index->valuedouble : -1LL);
    *out = mg_adapter_state_int(req, key, -1);
    if (*out >= 0 || !create)
        return MG_OK;
    *out = mg_adapter_state_int(req, "tools", 0);
    if (mg_adapter_state_set_int(req, "tools", *out + 1) != MG_OK)
        return MG_ENOMEM;
    return mg_adapter_state_set_int(req, key, *out);
}

mg_rc mg_adapter_stream_error_type(mg_req *req, const char *type, size_t n, mg_buf *out)
{
    char msg[160];
    if (type == NULL)
        type = "unknown", n = 7;
    snprintf(msg, sizeof(msg), "the model provider reported an error: %.*s", (int)(n > 60 ? 60 : n), type);
    return mg_adapter_stream_error(req, msg, out);
}

mg_rc mg_adapter_stream_end(mg_req *req, mg_buf *out)
{
    if (req->client_wants_usage) {
        cJSON *o = reply_head(req, "chat.completion.chunk");
        bool ok = o && cJSON_AddArrayToObject(o, "choices");
        if (ok && req->usage.prompt_tokens < 0 && req->usage.completion_tokens < 0) {
            /* The client asked for usage and the provider sent none: say
             * what the gateway will bill. */
            req->usage.prompt_tokens = mg_adapter_estimate_tokens(req->body.n);
            req->usage.completion_tokens = mg_adapter_estimate_tokens(req->usage.output_chars);
            req->usage.estimated = true;
        }
        if (!ok || !add_usage(req, o)) {
            cJSON_Delete(o);
            return MG_ENOMEM;
        }
        mg_rc rc = emit(o, out, true);
        if (rc != MG_OK)
            return rc;
    }
    mg_rc rc = mg_adapter_sse_data(out, "[DONE]", 6);
    return rc == MG_OK ? MG_DONE : rc;
}

mg_rc mg_adapter_stream_error(mg_req *req, const char *message, mg_buf *out)
{
    mg_buf b = {0};
    mg_buf_append_str(&b, "{\"error\":{\"message\":");
    mg_buf_append_json_str(&b, message, strlen(message));
    mg_rc rc = mg_buf_append_str(&b, ",\"type\":\"upstream_error\",\"code\":\"upstream_error\"}}");
    if (rc == MG_OK && b.p)
        rc = mg_adapter_sse_data(out, b.p, b.len);
    mg_buf_free(&b);
    req->error_code = "upstream_error";
    return rc == MG_OK ? MG_DONE : rc;
}

mg_rc mg_adapter_embeddings_reply(mg_req *req, const cJSON *vectors, mg_buf *out)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *data = o ? cJSON_AddArrayToObject(o, "data") : NULL;
    bool ok = o && cJSON_AddStringToObject(o, "object", "list") && data;
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, vectors) {
        if (!ok)
            break;
        cJSON *e = cJSON_CreateObject();
        cJSON *vec = cJSON_Duplicate(v, true);
        ok = e && vec && cJSON_AddItemToArray(data, e);
        if (!ok) {
            cJSON_Delete(e);
            cJSON_Delete(vec);
            break;
        }
        ok = cJSON_AddStringToObject(e, "object", "embedding") && cJSON_AddNumberToObject(e, "index", i++);
        if (ok && !cJSON_AddItemToObject(e, "embedding", vec)) {
            cJSON_Delete(vec);
            ok = false;
        }
    }
    ok = ok && cJSON_AddStringToObject(o, "model", model_name(req));
    if (ok && req->usage.prompt_tokens >= 0) {
        cJSON *u = cJSON_AddObjectToObject(o, "usage");
        ok = u && cJSON_AddNumberToObject(u, "prompt_tokens", (double)req->usage.prompt_tokens) &&
             cJSON_AddNumberToObject(u, "total_tokens", (double)req->usage.prompt_tokens);
    }
    if (!ok) {
        cJSON_Delete(o);
        return MG_ENOMEM;
    }
    return emit(o, out, false);
}

mg_rc mg_adapter_sse_payload(mg_str ev, mg_buf *out, mg_str *event_name)
{
    size_t i = 0;
    bool first = true;
    *event_name = MG_STR_NULL;
    while (i < ev.n) {
        size_t j = i;
        while (j < ev.n && ev.p[j] != '\n' && ev.p[j] != '\r')
            j++;
        mg_str line = mg_str_make(ev.p + i, j - i);
        if (line.n >= 5 && memcmp(line.p, "data:", 5) == 0) {
            size_t k = 5 + (line.n > 5 && line.p[5] == ' ');
            if ((!first && mg_buf_append(out, "\n", 1) != MG_OK) ||
                mg_buf_append(out, line.p + k, line.n - k) != MG_OK)
                return MG_ENOMEM;
            first = false;
        } else if (line.n >= 6 && memcmp(line.p, "event:", 6) == 0) {
            size_t k = 6 + (line.n > 6 && line.p[6] == ' ');
            *event_name = mg_str_make(line.p + k, line.n - k);
        }
        i = j;
        while (i < ev.n && (ev.p[i] == '\n' || ev.p[i] == '\r'))
            i++;
    }
    if (mg_buf_reserve(out, 1) != MG_OK)
        return MG_ENOMEM;
    out->p[out->len] = '\0';
    return MG_OK;
}

/* Adapter stream state (tool-call numbering, "role chunk sent") lives in
 * req->adapter_state: a JSON object freed with the request's pool and reset
 * by the proxy for every attempt. */
static void state_free(void *p) { cJSON_Delete(p); }

cJSON *mg_adapter_stream_state(mg_req *req)
{
    if (req->adapter_state)
        return req->adapter_state;
    cJSON *s = cJSON_CreateObject();
    if (s == NULL)
        return NULL;
    if (req->pool == NULL || mg_pool_cleanup_add(req->pool, state_free, s) != MG_OK) {
        cJSON_Delete(s);
        return NULL;
    }
    req->adapter_state = s;
    return s;
}

int64_t mg_adapter_state_int(mg_req *req, const char *key, int64_t def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->adapter_state, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : def;
}

mg_rc mg_adapter_state_set_int(mg_req *req, const char *key, int64_t v)
{
    cJSON *s = mg_adapter_stream_state(req);
    if (s == NULL)
        return MG_ENOMEM;
    cJSON_DeleteItemFromObjectCaseSensitive(s, key);
    return cJSON_AddNumberToObject(s, key, (double)v) ? MG_OK : MG_ENOMEM;
}
