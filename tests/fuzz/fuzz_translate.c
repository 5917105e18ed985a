/* modelgate — fuzz target: request and reply translation.
 *
 * The input is a client request body. If it passes the router's parse
 * checks (gateway/router.c parse_body: valid UTF-8, one JSON object, no
 * duplicate member, "model" a non-empty string, "stream" a boolean or
 * null), it goes, as a chat and as an embeddings request, through every
 * adapter's build (canonical OpenAI body -> provider request; bedrock with
 * an API key and with SigV4 credentials), and through the Anthropic
 * surface's request translator (/v1/messages body -> canonical); a
 * canonical tree the surface produces goes through every adapter's build
 * again, as the pipeline does. The same bytes are also handed, as a
 * provider's complete reply, to every adapter's reply translator and, as a
 * canonical reply, to the surface's.
 *
 * Invariants (abort() on violation):
 *  - results are MG_OK, MG_ERR (with a non-empty message) or MG_ENOMEM;
 *  - an error message never contains a provider credential (unless the
 *    client sent that text itself);
 *  - a built request has a URL and a method, and its body (when not empty)
 *    is exactly one JSON object;
 *  - the surface's canonical tree has a string "model", a non-empty
 *    "messages" array, no duplicate member, and req->stream says what its
 *    "stream" says;
 *  - a translated reply is exactly one JSON object;
 *  - no crash, leak or undefined behaviour (ASan/UBSan).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "adapters/adapter.h"
#include "adapters/translate.h"
#include "gateway/json.h"
#include "gateway/surface.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET_KEY "sk-SECRET-provider-key"
#define SECRET_AWS "AWS-SECRET-access-key"

static mg_cfg_provider providers[] = {
    {.name = "p", .type = "openai", .base_url = "https://api.openai.test/v1", .api_key = SECRET_KEY},
    {.name = "p", .type = "azure", .base_url = "https://r.openai.azure.test", .api_key = SECRET_KEY,
     .api_version = "2024-10-21"},
    {.name = "p", .type = "anthropic", .base_url = "https://api.anthropic.test", .api_key = SECRET_KEY},
    {.name = "p", .type = "ollama", .base_url = "http://127.0.0.1:11434"},
    {.name = "p", .type = "gemini", .base_url = "https://gemini.test", .api_key = SECRET_KEY},
    {.name = "p", .type = "bedrock", .base_url = "https://bedrock.test", .region = "us-east-1",
     .api_key = SECRET_KEY},
    {.name = "p", .type = "bedrock", .base_url = "https://bedrock.test:8443/x", .region = "eu-west-1",
     .aws_access_key_id = "AKIDEXAMPLE", .aws_secret_access_key = SECRET_AWS, .aws_session_token = "tok"},
};

static bool ws_only(const char *p, const char *end)
{
    for (; p && p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return false;
    return true;
}

/* Exactly one JSON object in p[0..n). */
static bool one_object(const char *p, size_t n)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(p, n, &end, false);
    bool ok = cJSON_IsObject(j) && ws_only(end, p + n);
    cJSON_Delete(j);
    return ok;
}

/* The input being run: a message may quote the client's own text (a field
 * name), so a secret counts as leaked only if the input does not hold it. */
static mg_str input;

static bool leaks(const char *err, const char *secret)
{
    return strstr(err, secret) && !memmem(input.p, input.n, secret, strlen(secret));
}

static void check_rc(mg_rc rc, const char *err)
{
    if (rc != MG_OK && rc != MG_ERR && rc != MG_ENOMEM)
        abort();
    if (rc == MG_ERR && (err[0] == '\0' || leaks(err, SECRET_KEY) || leaks(err, SECRET_AWS)))
        abort();
}

/* The router's parse checks; the tree of an accepted body, or NULL. */
static cJSON *router_accepts(const char *body, size_t n)
{
    if (n == 0 || !mg_utf8_valid(body, n))
        return NULL;
    cJSON *json = mg_json_parse(body, n, NULL);   /* as the router parses */
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(json, "model");
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(json, "stream");
    if (!cJSON_IsObject(json) || mg_json_find_duplicate(json) ||
        !cJSON_IsString(model) || model->valuestring[0] == '\0' ||
        (stream && !cJSON_IsBool(stream) && !cJSON_IsNull(stream))) {
        cJSON_Delete(json);
        return NULL;
    }
    return json;
}

static void req_init(mg_req *req, mg_str body, mg_api api)
{
    memset(req, 0, sizeof(*req));
    req->pool = mg_pool_new(4096);
    if (req->pool == NULL)
        abort();
    req->body = body;
    req->api = api;
    req->model_name = "client-model";
    snprintf(req->request_id, sizeof(req->request_id), "req-fuzz");
    req->usage.prompt_tokens = req->usage.completion_tokens = -1;
}

/* Every adapter's build on a copy of tree (builds may edit the tree). */
static void build_all(const cJSON *tree, mg_str body, mg_api api, bool modified)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tree, "model");
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(tree, "stream_options");
    for (size_t i = 0; i < MG_ARRAY_LEN(providers); i++) {
        const mg_adapter_ops *ops = mg_adapter_find(providers[i].type);
        if (ops == NULL)
            abort();
        mg_req req;
        req_init(&req, body, api);
        req.json = cJSON_Duplicate(tree, true);
        if (req.json == NULL) {
            mg_pool_free(req.pool);
            return;
        }
        req.json_modified = modified;
        req.model_name = model->valuestring;
        req.stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tree, "stream"));
        req.client_wants_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
        req.provider = &providers[i];
        /* Half the time the deployment's model is the client's, which
         * lets the OpenAI adapter forward the client's bytes. */
        mg_cfg_deployment dep = {.provider = "p", .model = (body.n & 1) ? model->valuestring : "up/model:1 \xc3\xbc",
                                 .weight = 1};
        req.deployment = &dep;
        mg_upstream_request up = {0};
        char err[200] = "";
        mg_rc rc = ops->build(&req, &up, err, sizeof(err));
        check_rc(rc, err);
        if (rc == MG_OK) {
            if (up.url.p == NULL || up.url.len == 0 || up.url.p[up.url.len] != '\0' || up.method == NULL)
                abort();
            if (up.body.len && !one_object(up.body.p, up.body.len))
                abort();
        }
        curl_slist_free_all(up.headers);
        mg_buf_free(&up.url);
        mg_buf_free(&up.body);
        cJSON_Delete(req.json);
        mg_pool_free(req.pool);
    }
}

/* The Anthropic surface's request translation, then the adapters. */
static void surface_request(const cJSON *tree, mg_str body)
{
    mg_req req;
    req_init(&req, body, MG_API_MESSAGES);
    req.json = cJSON_Duplicate(tree, true);
    if (req.json == NULL) {
        mg_pool_free(req.pool);
        return;
    }
    req.surface = &mg_surface_anthropic;
    req.model_name = cJSON_GetObjectItemCaseSensitive(tree, "model")->valuestring;
    req.stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tree, "stream"));
    char err[200] = "";
    mg_rc rc = mg_surface_anthropic.request(&req, err, sizeof(err));
    check_rc(rc, err);
    if (rc == MG_OK) {
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(req.json, "model");
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(req.json, "messages");
        if (!cJSON_IsObject(req.json) || !cJSON_IsString(model) || !cJSON_IsArray(msgs) ||
            cJSON_GetArraySize(msgs) == 0 || mg_json_find_duplicate(req.json) != NULL ||
            req.stream != cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req.json, "stream")))
            abort();
        build_all(req.json, body, MG_API_CHAT, true);
    }
    cJSON_Delete(req.json);
    mg_pool_free(req.pool);
}

/* The bytes as a provider's reply and as a canonical reply. */
static void replies(const char *p, size_t n)
{
    for (size_t i = 0; i < 6; i++) {
        for (int api = 0; api < 2; api++) {
            mg_req req;
            req_init(&req, mg_str_make("{}", 2), api ? MG_API_EMBEDDINGS : MG_API_CHAT);
            req.provider = &providers[i];
            req.reply_needs_parse = n & 2;
            mg_buf out = {0};
            mg_rc rc = mg_adapter_find(providers[i].type)->reply(&req, p, n, &out);
            if (rc != MG_OK && rc != MG_ERR && rc != MG_ENOMEM)
                abort();
            /* The OpenAI adapter may pass the provider's bytes through. */
            if (rc == MG_OK && i > 1 && !one_object(out.p, out.len))
                abort();
            mg_buf_free(&out);
            mg_pool_free(req.pool);
        }
    }
    mg_req req;
    req_init(&req, mg_str_make("{}", 2), MG_API_MESSAGES);
    mg_buf out = {0};
    mg_rc rc = mg_surface_anthropic.reply(&req, p, n, &out);
    if (rc != MG_OK && rc != MG_ERR && rc != MG_ENOMEM)
        abort();
    if (rc == MG_OK && !one_object(out.p, out.len))
        abort();
    mg_buf_free(&out);
    mg_pool_free(req.pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    input = mg_str_make(p, size);
    replies(p, size);
    cJSON *tree = router_accepts(p, size);
    if (tree == NULL)
        return 0;
    mg_str body = mg_str_make(p, size);
    build_all(tree, body, MG_API_CHAT, false);
    build_all(tree, body, MG_API_EMBEDDINGS, false);
    surface_request(tree, body);
    cJSON_Delete(tree);
    return 0;
}
