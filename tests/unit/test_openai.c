/* Unit tests: adapters/openai.c (request building, usage, stream events).
 * SPDX-License-Identifier: Apache-2.0
 */
#include "adapters/adapter.h"
#include "t.h"

static mg_cfg_provider prov = {.name = "p", .type = "openai", .base_url = "http://127.0.0.1:9/v1",
                               .api_key = "sk-upstream"};
static mg_cfg_deployment dep = {.provider = "p", .model = "upstream-model", .weight = 1};

static void req_init(mg_req *req, const char *body, mg_api api)
{
    memset(req, 0, sizeof(*req));
    req->api = api;
    req->json = cJSON_Parse(body);
    req->body = mg_str_c(body);
    /* As the router does: our own copy (build rewrites "model" in the tree). */
    static char model_copy[64];
    snprintf(model_copy, sizeof(model_copy), "%s", cJSON_GetObjectItem(req->json, "model")->valuestring);
    req->model_name = model_copy;
    req->stream = cJSON_IsTrue(cJSON_GetObjectItem(req->json, "stream"));
    req->client_wants_usage = cJSON_IsTrue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(req->json, "stream_options"), "include_usage"));
    req->provider = &prov;
    req->deployment = &dep;
    req->usage.prompt_tokens = req->usage.completion_tokens = -1;
}

static bool has_header(struct curl_slist *h, const char *want)
{
    for (; h; h = h->next)
        if (strcmp(h->data, want) == 0)
            return true;
    return false;
}

T_TEST(build_chat_replaces_model_and_sets_credential)
{
    const mg_adapter_ops *ops = mg_adapter_find("openai");
    T_CHECK(ops != NULL);
    mg_req req;
    req_init(&req, "{\"model\":\"gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", MG_API_CHAT);
    mg_upstream_request up = {0};
    char err[100];
    T_EQ_INT(ops->build(&req, &up, err, sizeof(err)), MG_OK);
    T_EQ_STR(up.url.p, "http://127.0.0.1:9/v1/chat/completions");
    cJSON *sent = cJSON_ParseWithLength(up.body.p, up.body.len);
    T_EQ_STR(cJSON_GetObjectItem(sent, "model")->valuestring, "upstream-model");
    T_CHECK(cJSON_GetObjectItem(sent, "stream_options") == NULL);
    T_CHECK(has_header(up.headers, "Authorization: Bearer sk-upstream"));
    T_CHECK(has_header(up.headers, "Content-Type: application/json"));
    cJSON_Delete(sent);
    curl_slist_free_all(up.headers);
    mg_buf_free(&up.url);
    mg_buf_free(&up.body);
    cJSON_Delete(req.json);
}

T_TEST(build_stream_requests_usage)
{
    const mg_adapter_ops *ops = mg_adapter_find("openai");
    mg_req req;
    req_init(&req, "{\"model\":\"gpt\",\"stream\":true,\"stream_options\":{\"include_usage\":false},\"messages\":[]}",
             MG_API_CHAT);
    mg_upstream_request up = {0};
    char err[100];
    T_EQ_INT(ops->build(&req, &up, err, sizeof(err)), MG_OK);
    cJSON *sent = cJSON_ParseWithLength(up.body.p, up.body.len);
    T_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(sent, "stream_options"), "include_usage")));
    T_CHECK(has_header(up.headers, "Accept: text/event-stream"));
    cJSON_Delete(sent);
    curl_slist_free_all(up.headers);
    mg_buf_free(&up.url);
    mg_buf_free(&up.body);
    cJSON_Delete(req.json);
}

T_TEST(build_forwards_client_bytes_when_nothing_changes)
{
    const mg_adapter_ops *ops = mg_adapter_find("openai");
    mg_req req;
    const char body[] = "{ \"model\" : \"upstream-model\", \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}] }";
    req_init(&req, body, MG_API_CHAT);
    mg_upstream_request up = {0};
    char err[100];
    T_EQ_INT(ops->build(&req, &up, err, sizeof(err)), MG_OK);
    T_EQ_INT(up.body.len, sizeof(body) - 1);
    T_CHECK(up.body.p && memcmp(up.body.p, body, sizeof(body) - 1) == 0);
    mg_buf_free(&up.body);
    mg_buf_free(&up.url);
    curl_slist_free_all(up.headers);
    /* Once something rewrote the tree, the tree is what goes out. */
    req.json_modified = true;
    mg_upstream_request up2 = {0};
    T_EQ_INT(ops->build(&req, &up2, err, sizeof(err)), MG_OK);
    T_CHECK(up2.body.len != sizeof(body) - 1);
    mg_buf_free(&up2.body);
    mg_buf_free(&up2.url);
    curl_slist_free_all(up2.headers);
    cJSON_Delete(req.json);
}

T_TEST(reply_usage_found_without_full_parse_and_not_fooled_by_content)
{
    const mg_adapter_ops *ops = mg_adapter_find("openai");
    mg_req req;
    req_init(&req, "{\"model\":\"gpt\"}", MG_API_CHAT);
    /* The reply text itself mentions a usage object (escaped quotes). */
    const char body[] = "{\"choices\":[{\"message\":{\"content\":\"say \\\"usage\\\": {\\\"completion_tokens\\\": 999}\"}}],"
                        "\"usage\" : {\"prompt_tokens\":4,\"completion_tokens\":9}}\n";
    mg_buf out = {0};
    T_EQ_INT(ops->reply(&req, body, sizeof(body) - 1, &out), MG_OK);
    T_EQ_INT(req.usage.prompt_tokens, 4);
    T_EQ_INT(req.usage.completion_tokens, 9);
    T_EQ_INT(out.len, sizeof(body) - 1);
    mg_buf_free(&out);
    /* No usage at all: estimated from the text by the full parse. */
    req.usage.prompt_tokens = req.usage.completion_tokens = -1;
    const char nousage[] = "{\"choices\":[{\"message\":{\"content\":\"abcdefgh\"}}]}";
    T_EQ_INT(ops->reply(&req, nousage, sizeof(nousage) - 1, &out), MG_OK);
    T_EQ_INT(req.usage.completion_tokens, -1);
    T_EQ_INT(req.usage.output_chars, 8);
    mg_buf_free(&out);
    cJSON_Delete(req.json);
}

T_TEST(reply_takes_usage_and_relays_bytes)
{
    const mg_adapter_ops *ops = mg_adapter_find("openai");
    mg_req req;
    req_init(&req, "{\"model\":\"gpt\"}", MG_API_CHAT);
    const char body[] = "{\"choices\":[{\"message\":{\"content\":\"hello\"}}],"
                        "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}";
    mg_buf out = {0};
    T_EQ_INT(ops->reply(&req, body, sizeof(body) - 1, &out), MG_OK);
    T_EQ_INT(out.len, sizeof(body) - 1);
    T_CHECK(memcmp(out.p, body, out.len) == 0);
    T_EQ_INT(req.usage.prompt_tokens, 12);
    T_EQ_INT(req.usage.completion_tokens, 3);
    T_EQ_INT(ops->reply(&req, "not json", 8, &out), MG_ERR);
    mg_buf_free(&out);
    cJSON_Delete(req.json);
}

static mg_rc event(const mg_adapter_ops *ops, mg_req *req, const char *ev, mg_buf *out)
{
    mg_buf_reset(out);
    return ops->stream_event(req, mg_str_c(ev), out);
}

T_TEST(stream_events_strip_usage_chunk_unless_asked)
{
    const mg_adapter_ops *ops = mg_adapter_find("openai");
    mg_req req;
    mg_buf out = {0};
    req_init(&req, "{\"model\":\"gpt\",\"stream\":true}", MG_API_CHAT);
    T_EQ_INT(event(ops, &req, "data: {\"choices\":[{\"delta\":{\"content\":\"abcd\"}}],\"usage\":null}", &out), MG_OK);
    T_CHECK(out.len > 0 && memcmp(out.p, "data: {", 7) == 0);
    T_EQ_INT(req.usage.output_chars, 4);
    T_EQ_INT(event(ops, &req, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}", &out), MG_OK);
    T_EQ_INT(out.len, 0);                 /* client did not ask: removed */
    T_EQ_INT(req.usage.prompt_tokens, 7);
    T_EQ_INT(req.usage.completion_tokens, 2);
    T_EQ_INT(event(ops, &req, ": keep-alive comment", &out), MG_OK);
    T_EQ_INT(out.len, 0);
    T_EQ_INT(event(ops, &req, "data: [DONE]", &out), MG_DONE);
    T_CHECK(out.len == 14 && memcmp(out.p, "data: [DONE]\n\n", 14) == 0);
    T_EQ_INT(event(ops, &req, "data: {broken", &out), MG_ERR);
    cJSON_Delete(req.json);

    req_init(&req, "{\"model\":\"gpt\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}", MG_API_CHAT);
    T_EQ_INT(event(ops, &req, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}", &out), MG_OK);
    T_CHECK(out.len > 0);                 /* client asked: kept */
    cJSON_Delete(req.json);
    mg_buf_free(&out);
}

T_TEST(registry_and_estimates)
{
    T_CHECK(mg_adapter_find("openai") != NULL);
    T_CHECK(mg_adapter_find("no-such-type") == NULL);
    T_EQ_INT(mg_adapter_estimate_tokens(0), 0);
    T_EQ_INT(mg_adapter_estimate_tokens(1), 1);
    T_EQ_INT(mg_adapter_estimate_tokens(400), 100);
}

T_MAIN("openai", T_CASE(build_chat_replaces_model_and_sets_credential), T_CASE(build_stream_requests_usage),
       T_CASE(build_forwards_client_bytes_when_nothing_changes),
       T_CASE(reply_usage_found_without_full_parse_and_not_fooled_by_content),
       T_CASE(reply_takes_usage_and_relays_bytes), T_CASE(stream_events_strip_usage_chunk_unless_asked),
       T_CASE(registry_and_estimates))
