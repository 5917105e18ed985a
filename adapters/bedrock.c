/* modelgate — Amazon Bedrock Converse API.
 *
 * POST {base_url}/model/{modelId}/converse (or /converse-stream), where
 * base_url is normally https://bedrock-runtime.{region}.amazonaws.com (it is
 * configurable so tests and VPC endpoints work). Credentials: SigV4 with
 * aws_access_key_id / aws_secret_access_key (/ aws_session_token), or a
 * Bedrock API key sent as a bearer token.
 *
 * Request: system -> system[{text}], user/assistant/tool -> messages with
 * content blocks {text} {image} {toolUse} {toolResult} (tool results in a
 * user turn, consecutive turns of one role merged), sampling parameters ->
 * inferenceConfig, tools -> toolConfig. The stream is binary
 * (application/vnd.amazon.eventstream): each message has a prelude (total
 * and header lengths, CRC), typed headers (":event-type",
 * ":message-type"), a JSON payload and a CRC over everything before it.
 * Usage arrives in the "metadata" event, after messageStop, so the finish
 * chunk is sent at messageStop and the stream ends at metadata.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "gateway/json.h"
#include "adapters/bedrock.h"
#include "adapters/translate.h"

#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <time.h>

#define EVENTSTREAM_MAX_MESSAGE (16u * 1024 * 1024)

/* `user` is accepted and not sent (Converse has no end-user field). */
static const char *const chat_fields[] = {
    "model", "messages", "stream", "stream_options", "user", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "stop", "tools", "tool_choice", "n", NULL};

/* ------------------------------------------------------------ SigV4 */

static void hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    return HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &len) != NULL;
}

/* The canonical URI of a non-S3 service: the path as sent, percent-encoded
 * once more (so "%3A" in a model id is signed as "%253A"). */
static mg_rc canonical_uri(mg_buf *b, const char *path)
{
    static const char digits[] = "0123456789ABCDEF";
    for (const unsigned char *s = (const unsigned char *)path; *s; s++) {
        unsigned char c = *s;
        bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
        char enc[3] = {'%', digits[c >> 4], digits[c & 15]};
        if (mg_buf_append(b, keep ? (const char *)s : enc, keep ? 1 : 3) != MG_OK)
            return MG_ENOMEM;
    }
    return MG_OK;
}

mg_rc mg_bedrock_sigv4(const mg_sigv4 *in, char *auth, size_t authsz, char payload_hash[65])
{
    unsigned char digest[32];
    SHA256(in->payload, in->payload_len, digest);
    hex(digest, 32, payload_hash);
    char date[9];
    if (strlen(in->amz_date) != 16)
        return MG_ERR;
    memcpy(date, in->amz_date, 8);
    date[8] = '\0';
    const char *signed_headers = in->session_token ? "host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
                                                   : "host;x-amz-content-sha256;x-amz-date";
    mg_buf creq = {0};
    mg_rc rc = mg_buf_printf(&creq, "%s\n", in->method);
    if (rc == MG_OK)
        rc = canonical_uri(&creq, in->path);
    if (rc == MG_OK)
        rc = mg_buf_printf(&creq, "\n\nhost:%s\nx-amz-content-sha256:%s\nx-amz-date:%s\n", in->host, payload_hash,
                           in->amz_date);
    if (rc == MG_OK && in->session_token)
        rc = mg_buf_printf(&creq, "x-amz-security-token:%s\n", in->session_token);
    if (rc == MG_OK)
        rc = mg_buf_printf(&creq, "\n%s\n%s", signed_headers, payload_hash);
    if (rc != MG_OK) {
        mg_buf_free(&creq);
        return rc;
    }
    char creq_hash[65];
    SHA256((const unsigned char *)creq.p, creq.len, digest);
    hex(digest, 32, creq_hash);
    mg_buf_free(&creq);

    char scope[128], sts[512], key0[256];
    if ((size_t)snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, in->region, in->service) >= sizeof(scope) ||
        (size_t)snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", in->amz_date, scope, creq_hash) >= sizeof(sts) ||
        (size_t)snprintf(key0, sizeof(key0), "AWS4%s", in->secret_access_key) >= sizeof(key0))
        return MG_ERR;
    unsigned char k[32], sig[32];
    bool ok = hmac(key0, strlen(key0), date, k) && hmac(k, 32, in->region, k) && hmac(k, 32, in->service, k) &&
              hmac(k, 32, "aws4_request", k) && hmac(k, 32, sts, sig);
    OPENSSL_cleanse(key0, sizeof(key0));
    OPENSSL_cleanse(k, sizeof(k));
    if (!ok)
        return MG_ERR;
    char sighex[65];
    hex(sig, 32, sighex);
    if ((size_t)snprintf(auth, authsz, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                         in->access_key_id, scope, signed_headers, sighex) >= authsz)
        return MG_ERR;
    return MG_OK;
}

/* ------------------------------------------------------------ request */

static mg_rc image_block(const char *url, cJSON **block, char *err, size_t errsz)
{
    mg_str mt, data;
    static const char *const formats[] = {"png", "jpeg", "gif", "webp"};
    const char *format = NULL;
    if (url && mg_adapter_parse_data_url(url, &mt, &data) && mt.n > 6 && memcmp(mt.p, "image/", 6) == 0) {
        mg_str sub = mg_str_make(mt.p + 6, mt.n - 6);
        for (size_t i = 0; i < MG_ARRAY_LEN(formats) && !format; i++)
            if (mg_str_eq(sub, mg_str_c(formats[i])))
                format = formats[i];
        if (mg_str_eq(sub, MG_STR_LIT("jpg")))
            format = "jpeg";
    }
    if (format == NULL) {
        snprintf(err, errsz, "bedrock models take images only as base64 data: URLs of png, jpeg, gif or webp");
        return MG_ERR;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON *img = b ? cJSON_AddObjectToObject(b, "image") : NULL;
    cJSON *src = img ? cJSON_AddObjectToObject(img, "source") : NULL;
    if (src == NULL || !cJSON_AddStringToObject(img, "format", format) ||
        !cJSON_AddStringToObject(src, "bytes", data.p)) {
        cJSON_Delete(b);
        return MG_ENOMEM;
    }
    *block = b;
    return MG_OK;
}

static cJSON *tool_use_block(const char *id, const char *name, cJSON *input)
{
    cJSON *b = cJSON_CreateObject();
    cJSON *tu = b ? cJSON_AddObjectToObject(b, "toolUse") : NULL;
    if (tu == NULL || !cJSON_AddStringToObject(tu, "toolUseId", id) || !cJSON_AddStringToObject(tu, "name", name) ||
        !cJSON_AddItemToObject(tu, "input", input)) {
        cJSON_Delete(input);
        cJSON_Delete(b);
        return NULL;
    }
    return b;
}

static cJSON *tool_result_block(const char *id, const char *text)
{
    cJSON *b = cJSON_CreateObject();
    cJSON *tr = b ? cJSON_AddObjectToObject(b, "toolResult") : NULL;
    cJSON *content = tr ? cJSON_AddArrayToObject(tr, "content") : NULL;
    if (content && cJSON_AddStringToObject(tr, "toolUseId", id) &&
        mg_adapter_add_block(content, mg_adapter_plain_text(text)) == MG_OK)
        return b;
    cJSON_Delete(b);
    return NULL;
}

static const mg_adapter_dialect dialect = {
    .provider = "bedrock",
    .turns_key = "messages",
    .blocks_key = "content",
    .assistant_role = "assistant",
    .call_ids = true,
    .text = mg_adapter_plain_text,
    .image = image_block,
    .tool_use = tool_use_block,
    .tool_result = tool_result_block,
};

static mg_rc translate_tools(const cJSON *json, cJSON *body, char *err, size_t errsz)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(json, "tools");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(json, "tool_choice");
    if (tools == NULL || cJSON_IsNull(tools)) {
        if (tc && !cJSON_IsNull(tc)) {
            snprintf(err, errsz, "tool_choice needs tools");
            return MG_ERR;
        }
        return MG_OK;
    }
    cJSON *cfg = cJSON_AddObjectToObject(body, "toolConfig");
    cJSON *arr = cfg ? cJSON_AddArrayToObject(cfg, "tools") : NULL;
    if (arr == NULL)
        return MG_ENOMEM;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const char *name, *desc;
        const cJSON *params;
        mg_rc rc = mg_adapter_function_tool(t, "bedrock", &name, &desc, &params, err, errsz);
        if (rc != MG_OK)
            return rc;
        cJSON *o = cJSON_CreateObject();
        cJSON *spec = o ? cJSON_AddObjectToObject(o, "toolSpec") : NULL;
        if (spec == NULL || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            return MG_ENOMEM;
        }
        cJSON *is = cJSON_AddObjectToObject(spec, "inputSchema");
        if (!cJSON_AddStringToObject(spec, "name", name) ||
            (desc && !cJSON_AddStringToObject(spec, "description", desc)) ||
            !mg_adapter_put(is, "json", mg_adapter_tool_schema(params)))
            return MG_ENOMEM;
    }
    if (tc == NULL || cJSON_IsNull(tc))
        return MG_OK;
    cJSON *choice = cJSON_AddObjectToObject(cfg, "toolChoice");
    if (choice == NULL)
        return MG_ENOMEM;
    const cJSON *fname = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tc, "function"), "name");
    if (cJSON_IsString(tc) && strcmp(tc->valuestring, "auto") == 0)
        return cJSON_AddObjectToObject(choice, "auto") ? MG_OK : MG_ENOMEM;
    if (cJSON_IsString(tc) && strcmp(tc->valuestring, "required") == 0)
        return cJSON_AddObjectToObject(choice, "any") ? MG_OK : MG_ENOMEM;
    if (cJSON_IsObject(tc) && cJSON_IsString(fname)) {
        cJSON *tool = cJSON_AddObjectToObject(choice, "tool");
        return tool && cJSON_AddStringToObject(tool, "name", fname->valuestring) ? MG_OK : MG_ENOMEM;
    }
    /* Converse has no "none"; leaving the tools out is not an option
     * either when the history holds tool calls. */
    snprintf(err, errsz, "bedrock models support tool_choice auto, required or a function (not none)");
    return MG_ERR;
}

/* Sampling parameters go into inferenceConfig. */
static const mg_adapter_sampling sampling = {
    .max_tokens = "maxTokens",
    .numbers = {{"temperature", "temperature", 0, 1}, {"top_p", "topP", 0, 1}},
    .stop = "stopSequences",
};

static mg_rc chat_body(mg_req *req, cJSON *body, char *err, size_t errsz)
{
    const cJSON *json = req->json;
    mg_rc rc = mg_adapter_check_fields(json, chat_fields, "request", "bedrock", err, errsz);
    if (rc == MG_OK)
        rc = mg_adapter_check_n(json, "bedrock", err, errsz);
    cJSON *system = NULL;
    if (rc == MG_OK)
        rc = mg_adapter_translate_messages(&dialect, cJSON_GetObjectItemCaseSensitive(json, "messages"), body, &system,
                                           err, errsz);
    if (system)
        rc = mg_adapter_put_nonempty(rc, body, "system", system);
    if (rc != MG_OK)
        return rc;
    cJSON *ic = cJSON_CreateObject();
    if (ic == NULL)
        return MG_ENOMEM;
    rc = mg_adapter_put_nonempty(mg_adapter_put_sampling(json, ic, &sampling, err, errsz), body, "inferenceConfig", ic);
    if (rc == MG_OK)
        rc = translate_tools(json, body, err, errsz);
    return rc;
}

/* Host (with port, as curl sends it) and path of a URL. */
static bool split_url(const char *url, char *host, size_t hostsz, const char **path)
{
    const char *h = strstr(url, "://");
    if (h == NULL)
        return false;
    h += 3;
    const char *slash = strchr(h, '/');
    size_t n = slash ? (size_t)(slash - h) : strlen(h);
    if (n == 0 || n >= hostsz)
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    *path = slash ? slash : "/";
    return true;
}

static mg_rc sign(mg_req *req, mg_upstream_request *out, char *err, size_t errsz)
{
    const mg_cfg_provider *p = req->provider;
    char host[256], amz_date[17], auth[1024], payload_hash[65];
    const char *path;
    time_t now = time(NULL);
    struct tm tm;
    if (!split_url(out->url.p, host, sizeof(host), &path) || gmtime_r(&now, &tm) == NULL ||
        strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16) {
        snprintf(err, errsz, "cannot sign the bedrock request");
        return MG_ERR;
    }
    mg_sigv4 s = {.method = "POST", .host = host, .path = path, .region = p->region ? p->region : "us-east-1",
                  .service = "bedrock", .access_key_id = p->aws_access_key_id,
                  .secret_access_key = p->aws_secret_access_key, .session_token = p->aws_session_token,
                  .amz_date = amz_date, .payload = out->body.p ? out->body.p : "", .payload_len = out->body.len};
    if (mg_bedrock_sigv4(&s, auth, sizeof(auth), payload_hash) != MG_OK) {
        snprintf(err, errsz, "cannot sign the bedrock request (credential too long?)");
        return MG_ERR;
    }
    mg_rc rc = mg_adapter_add_headerf(&out->headers, "X-Amz-Date: %s", amz_date);
    if (rc == MG_OK)
        rc = mg_adapter_add_headerf(&out->headers, "X-Amz-Content-Sha256: %s", payload_hash);
    if (rc == MG_OK && p->aws_session_token)
        rc = mg_adapter_add_headerf(&out->headers, "X-Amz-Security-Token: %s", p->aws_session_token);
    if (rc == MG_OK)
        rc = mg_adapter_add_headerf(&out->headers, "Authorization: %s", auth);
    if (rc == MG_ERR)
        snprintf(err, errsz, "provider credential too long");
    return rc;
}

static mg_rc bedrock_build(mg_req *req, mg_upstream_request *out, char *err, size_t errsz)
{
    if (req->api != MG_API_CHAT) {
        snprintf(err, errsz, "bedrock models only serve chat completions here (no embeddings)");
        return MG_ERR;
    }
    const mg_cfg_provider *p = req->provider;
    bool sigv4 = p->aws_access_key_id && p->aws_secret_access_key;
    if (!sigv4 && p->api_key == NULL) {
        snprintf(err, errsz, "the bedrock provider has no credentials configured");
        return MG_ERR;
    }
    mg_rc rc = mg_adapter_build_json(req, out, chat_body, err, errsz);
    if (rc != MG_OK)
        return rc;
    if (mg_buf_printf(&out->url, "%s/model", p->base_url) != MG_OK ||
        mg_adapter_append_path_segment(&out->url, req->deployment->model) != MG_OK ||
        mg_buf_printf(&out->url, "%s", req->stream ? "/converse-stream" : "/converse") != MG_OK)
        return MG_ENOMEM;
    out->method = "POST";
    out->stream = req->stream;
    rc = mg_adapter_add_header(&out->headers, "Content-Type: application/json");
    if (rc == MG_OK)
        rc = mg_adapter_add_header(&out->headers, req->stream ? "Accept: application/vnd.amazon.eventstream"
                                                              : "Accept: application/json");
    if (rc == MG_OK)
        rc = mg_adapter_add_header(&out->headers, "Expect:");
    if (rc != MG_OK)
        return rc;
    if (sigv4)
        return sign(req, out, err, errsz);
    return mg_adapter_add_credential(&out->headers, "Authorization: Bearer %s", p->api_key, err, errsz);
}

/* ------------------------------------------------------------ replies */

static const char *finish_reason(const cJSON *sr)
{
    if (!cJSON_IsString(sr))
        return MG_FINISH_STOP;
    const char *s = sr->valuestring;
    if (strcmp(s, "max_tokens") == 0 || strcmp(s, "model_context_window_exceeded") == 0)
        return MG_FINISH_LENGTH;
    if (strcmp(s, "tool_use") == 0)
        return MG_FINISH_TOOLS;
    if (strcmp(s, "guardrail_intervened") == 0 || strcmp(s, "content_filtered") == 0)
        return MG_FINISH_FILTER;
    return MG_FINISH_STOP;
}

static void take_usage(mg_req *req, const cJSON *usage)
{
    int64_t in = mg_adapter_num(usage, "inputTokens"), outt = mg_adapter_num(usage, "outputTokens");
    if (in >= 0)
        req->usage.prompt_tokens = in;
    if (outt >= 0)
        req->usage.completion_tokens = outt;
}

static mg_rc bedrock_reply(mg_req *req, const char *body, size_t len, mg_buf *out)
{
    cJSON *j = mg_json_parse_upstream(body, len);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "output"), "message");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    if (!cJSON_IsArray(content)) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    take_usage(req, cJSON_GetObjectItemCaseSensitive(j, "usage"));
    mg_adapter_message m = {0};
    mg_rc rc = mg_adapter_message_init(&m);
    const cJSON *b;
    cJSON_ArrayForEach(b, content) {
        if (rc != MG_OK)
            break;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "text");
        const cJSON *tu = cJSON_GetObjectItemCaseSensitive(b, "toolUse");
        if (cJSON_IsString(t))
            rc = mg_adapter_message_text(&m, t->valuestring);
        else if (cJSON_IsObject(tu))
            rc = mg_adapter_message_call(&m, -1, mg_adapter_str(cJSON_GetObjectItemCaseSensitive(tu, "toolUseId"), ""),
                                         mg_adapter_str(cJSON_GetObjectItemCaseSensitive(tu, "name"), ""),
                                         cJSON_GetObjectItemCaseSensitive(tu, "input"));
        /* reasoningContent blocks are not part of the OpenAI message. */
    }
    if (rc == MG_OK)
        rc = mg_adapter_message_reply(req, &m, finish_reason(cJSON_GetObjectItemCaseSensitive(j, "stopReason")), out);
    mg_adapter_message_free(&m);
    cJSON_Delete(j);
    return rc;
}

/* ------------------------------------------------------------ eventstream */

uint32_t mg_bedrock_crc32(uint32_t crc, const void *p, size_t n)
{
    static uint32_t table[256];
    static bool ready;
    if (!ready) {
        /* Idempotent: racing threads compute the same table. */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        __atomic_store_n(&ready, true, __ATOMIC_RELEASE);
    }
    const unsigned char *s = p;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ s[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t be32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

size_t mg_bedrock_next_event(const char *p, size_t n, mg_str *ev)
{
    if (n < 12)
        return 0;
    uint32_t total = be32(p), hlen = be32(p + 4);
    if (total < 16 || total > EVENTSTREAM_MAX_MESSAGE || hlen > total - 16 ||
        mg_bedrock_crc32(0, p, 8) != be32(p + 8))
        return (size_t)-1;
    if (n < total)
        return 0;
    if (mg_bedrock_crc32(0, p, total - 4) != be32(p + total - 4))
        return (size_t)-1;
    *ev = mg_str_make(p, total);
    return total;
}

/* Reads the string headers of a message we care about and its payload.
 * False on malformed headers. */
static bool parse_message(mg_str ev, mg_str *event_type, mg_str *message_type, mg_str *exception_type,
                          mg_str *payload)
{
    if (ev.n < 16)
        return false;
    uint32_t hlen = be32(ev.p + 4);
    const char *h = ev.p + 12, *end = h + hlen;
    *event_type = *message_type = *exception_type = MG_STR_NULL;
    while (h < end) {
        size_t nlen = (unsigned char)*h++;
        if ((size_t)(end - h) < nlen + 1)
            return false;
        mg_str name = mg_str_make(h, nlen);
        h += nlen;
        unsigned char type = (unsigned char)*h++;
        size_t vlen;
        static const size_t fixed[] = {0, 0, 1, 2, 4, 8, 0, 0, 8, 16};
        if (type == 6 || type == 7) {
            if (end - h < 2)
                return false;
            vlen = (size_t)((unsigned char)h[0] << 8 | (unsigned char)h[1]);
            h += 2;
        } else if (type < MG_ARRAY_LEN(fixed)) {
            vlen = fixed[type];
        } else {
            return false;
        }
        if ((size_t)(end - h) < vlen)
            return false;
        mg_str value = mg_str_make(h, vlen);
        h += vlen;
        if (type != 7)
            continue;
        if (mg_str_eq(name, MG_STR_LIT(":event-type")))
            *event_type = value;
        else if (mg_str_eq(name, MG_STR_LIT(":message-type")))
            *message_type = value;
        else if (mg_str_eq(name, MG_STR_LIT(":exception-type")))
            *exception_type = value;
    }
    *payload = mg_str_make(end, ev.n - 16 - hlen);
    return true;
}

static mg_rc bedrock_stream_event(mg_req *req, mg_str ev, mg_buf *out)
{
    mg_str et, mt, xt, payload;
    if (!parse_message(ev, &et, &mt, &xt, &payload))
        return MG_ERR;
    if (!mg_str_eq(mt, MG_STR_LIT("event"))) {
        return mg_adapter_stream_error_type(req, xt.n ? xt.p : "", xt.n, out);
    }
    cJSON *j = mg_json_parse_upstream(payload.p, payload.n);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    mg_rc rc = MG_OK;
    const cJSON *block = cJSON_GetObjectItemCaseSensitive(j, "contentBlockIndex");
    if (mg_str_eq(et, MG_STR_LIT("messageStart"))) {
        rc = mg_adapter_chunk_role(req, out);
    } else if (mg_str_eq(et, MG_STR_LIT("contentBlockStart"))) {
        const cJSON *tu = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "start"), "toolUse");
        if (cJSON_IsObject(tu)) {
            /* Converse numbers content blocks across text and tool use. */
            int64_t idx;
            const char *id = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(tu, "toolUseId"), "");
            const char *nm = mg_adapter_str(cJSON_GetObjectItemCaseSensitive(tu, "name"), "");
            rc = mg_adapter_stream_tool_index(req, block, true, &idx);
            if (rc == MG_OK)
                rc = mg_adapter_chunk_tool_calls(req, mg_adapter_tool_call((int)idx, id, nm, ""), out);
        }
    } else if (mg_str_eq(et, MG_STR_LIT("contentBlockDelta"))) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "delta");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(d, "text");
        const cJSON *input = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "toolUse"), "input");
        if (cJSON_IsString(text)) {
            rc = mg_adapter_chunk_text(req, text->valuestring, strlen(text->valuestring), out);
        } else if (cJSON_IsString(input)) {
            int64_t idx;
            rc = mg_adapter_stream_tool_index(req, block, false, &idx);
            if (rc == MG_OK && idx < 0)
                rc = MG_ERR;
            if (rc == MG_OK && input->valuestring[0])
                rc = mg_adapter_chunk_tool_calls(req, mg_adapter_tool_call((int)idx, NULL, NULL, input->valuestring),
                                                 out);
        }
    } else if (mg_str_eq(et, MG_STR_LIT("messageStop"))) {
        rc = mg_adapter_chunk(req, NULL, finish_reason(cJSON_GetObjectItemCaseSensitive(j, "stopReason")), out);
    } else if (mg_str_eq(et, MG_STR_LIT("metadata"))) {
        take_usage(req, cJSON_GetObjectItemCaseSensitive(j, "usage"));
        rc = mg_adapter_stream_end(req, out);
    }
    /* contentBlockStop and newer event types: nothing to say. */
    cJSON_Delete(j);
    return rc;
}

const mg_adapter_ops mg_adapter_bedrock = {
    .type = "bedrock",
    .build = bedrock_build,
    .reply = bedrock_reply,
    .stream_event = bedrock_stream_event,
    .stream_content_type = "application/vnd.amazon.eventstream",
    .next_event = mg_bedrock_next_event,
};
