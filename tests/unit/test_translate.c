/* Unit tests: the shared translation helpers of adapters/translate.c — the
 * message walk with a made-up dialect (so the walk is checked apart from
 * any real provider), sampling options, tool-call reading, reply
 * collection and the stream helpers.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "adapters/translate.h"
#include "t.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- helpers */

/* body serialised, for comparing whole trees as text. */
static char *print(const cJSON *j)
{
    return j ? cJSON_PrintUnformatted(j) : NULL;
}

static cJSON *parse(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    T_CHECK(j != NULL);
    return j;
}

/* A test dialect whose blocks say what the walk handed them. */
static cJSON *t_text(const char *text)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "t", text);
    return b;
}

static cJSON *t_tool_use(const char *id, const char *name, cJSON *input)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "use", name);
    if (id)
        cJSON_AddStringToObject(b, "id", id);
    cJSON_AddItemToObject(b, "in", input);
    return b;
}

static cJSON *t_tool_result(const char *ref, const char *text)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "res", ref);
    cJSON_AddStringToObject(b, "t", text);
    return b;
}

static mg_rc t_image(const char *url, cJSON **block, char *err, size_t errsz)
{
    if (url == NULL || strncmp(url, "ok:", 3) != 0) {
        snprintf(err, errsz, "bad image %s", url ? url : "(none)");
        return MG_ERR;
    }
    *block = cJSON_CreateObject();
    cJSON_AddStringToObject(*block, "img", url + 3);
    return MG_OK;
}

static const mg_adapter_dialect by_id = {
    .provider = "testp", .turns_key = "turns", .blocks_key = "blocks", .assistant_role = "bot",
    .call_ids = true, .text = t_text, .image = t_image, .tool_use = t_tool_use, .tool_result = t_tool_result,
};

static const mg_adapter_dialect by_name = {
    .provider = "testn", .turns_key = "turns", .blocks_key = "blocks", .assistant_role = "bot",
    .result_by_name = true, .text = t_text, .image = t_image, .tool_use = t_tool_use, .tool_result = t_tool_result,
};

/* Runs the walk on msgs; returns rc, the body text in *body_out and the
 * system blocks text in *sys_out (both malloc'd, NULL when none). */
static mg_rc walk(const mg_adapter_dialect *d, const char *msgs, char **body_out, char **sys_out, char *err,
                  size_t errsz)
{
    cJSON *m = parse(msgs);
    cJSON *body = cJSON_CreateObject();
    cJSON *sys = (cJSON *)1;
    err[0] = '\0';
    mg_rc rc = mg_adapter_translate_messages(d, m, body, &sys, err, errsz);
    *body_out = print(body);
    *sys_out = print(sys);
    cJSON_Delete(sys);
    cJSON_Delete(body);
    cJSON_Delete(m);
    return rc;
}

/* ---------------------------------------------------------------- the walk */

T_TEST(walk_merges_turns_and_hoists_system)
{
    char err[160], *body, *sys;
    mg_rc rc = walk(&by_id,
                    "[{\"role\":\"system\",\"content\":\"s1\"},"
                    "{\"role\":\"user\",\"content\":\"u1\"},"
                    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"u2\"},"
                    "{\"type\":\"image_url\",\"image_url\":{\"url\":\"ok:pic\"}}]},"
                    "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"d\"}]},"
                    "{\"role\":\"assistant\",\"content\":\"a\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
                    "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}}]},"
                    "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r\"},"
                    "{\"role\":\"user\",\"content\":\"u3\"}]",
                    &body, &sys, err, sizeof(err));
    T_EQ_INT(rc, MG_OK);
    /* user turns merge (the tool result joins the next user turn), the
     * assistant turn is named by the dialect, system messages are hoisted
     * in order. */
    T_EQ_STR(body, "{\"turns\":[{\"role\":\"user\",\"blocks\":[{\"t\":\"u1\"},{\"t\":\"u2\"},{\"img\":\"pic\"}]},"
                   "{\"role\":\"bot\",\"blocks\":[{\"t\":\"a\"},{\"use\":\"f\",\"id\":\"c1\",\"in\":{\"x\":1}}]},"
                   "{\"role\":\"user\",\"blocks\":[{\"res\":\"c1\",\"t\":\"r\"},{\"t\":\"u3\"}]}]}");
    T_EQ_STR(sys, "[{\"t\":\"s1\"},{\"t\":\"d\"}]");
    free(body);
    free(sys);
}

T_TEST(walk_without_system_returns_null_and_skips_empty_assistant_text)
{
    char err[160], *body, *sys;
    mg_rc rc = walk(&by_id,
                    "[{\"role\":\"user\",\"content\":\"q\"},"
                    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
                    "\"function\":{\"name\":\"g\",\"arguments\":\"\"}}]}]",
                    &body, &sys, err, sizeof(err));
    T_EQ_INT(rc, MG_OK);
    T_CHECK(sys == NULL);
    /* "" arguments are an empty object; null content adds no text block. */
    T_EQ_STR(body, "{\"turns\":[{\"role\":\"user\",\"blocks\":[{\"t\":\"q\"}]},"
                   "{\"role\":\"bot\",\"blocks\":[{\"use\":\"g\",\"id\":\"c\",\"in\":{}}]}]}");
    free(body);
    free(sys);
}

T_TEST(walk_tool_results_by_name)
{
    char err[160], *body, *sys;
    const char *msgs = "[{\"role\":\"user\",\"content\":\"q\"},"
                       "{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"function\",\"id\":\"c9\","
                       "\"function\":{\"name\":\"lookup\",\"arguments\":\"{}\"}}]},"
                       "{\"role\":\"tool\",\"tool_call_id\":\"c9\",\"content\":\"r\"}]";
    T_EQ_INT(walk(&by_name, msgs, &body, &sys, err, sizeof(err)), MG_OK);
    T_CHECK(strstr(body, "{\"res\":\"lookup\",\"t\":\"r\"}") != NULL);
    free(body);
    free(sys);
    /* An unknown call id: by name it cannot be answered, by id it can. */
    const char *orphan = "[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"tool\",\"tool_call_id\":\"zz\",\"content\":\"r\"}]";
    T_EQ_INT(walk(&by_name, orphan, &body, &sys, err, sizeof(err)), MG_ERR);
    T_EQ_STR(err, "tool messages must answer a tool call of an earlier assistant message");
    free(body);
    free(sys);
    T_EQ_INT(walk(&by_id, orphan, &body, &sys, err, sizeof(err)), MG_OK);
    free(body);
    free(sys);
}

typedef struct walk_error {
    const mg_adapter_dialect *d;
    const char *msgs, *err;
} walk_error;

T_TEST(walk_refuses_with_client_safe_messages)
{
    static const walk_error cases[] = {
        {&by_id, "[]", "messages must be a non-empty array"},
        {&by_id, "{}", "messages must be a non-empty array"},
        {&by_id, "[{\"role\":\"user\",\"content\":\"x\",\"audio\":1}]",
         "message field \"audio\" is not supported by testp models"},
        {&by_id, "[{\"role\":\"function\",\"content\":\"x\"}]", "message role \"function\" is not supported by testp models"},
        {&by_id, "[{\"role\":\"user\",\"content\":7}]", "user message content must be a string or an array of parts"},
        {&by_id, "[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]",
         "content part type \"input_audio\" is not supported by testp models"},
        {&by_id, "[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]", "bad image (none)"},
        {&by_id, "[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"nope\"}]}]", "bad image nope"},
        {&by_id, "[{\"role\":\"system\",\"content\":[{\"type\":\"image_url\"}]}]",
         "system messages may only contain text parts for this model"},
        {&by_id, "[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]",
         "tool_calls need id, function.name and function.arguments"},
        {&by_name, "[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}]",
         "tool_calls need function.name and function.arguments"},
        {&by_name, "[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]}]",
         "tool call arguments must be a JSON object for testn models"},
        {&by_id, "[{\"role\":\"tool\",\"content\":\"r\"}]", "tool messages need a tool_call_id"},
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        char err[160], *body, *sys;
        T_EQ_INT(walk(cases[i].d, cases[i].msgs, &body, &sys, err, sizeof(err)), MG_ERR);
        T_EQ_STR(err, cases[i].err);
        T_CHECK(sys == NULL);   /* nothing to place or free after a failure */
        free(body);
        free(sys);
    }
}

/* ---------------------------------------------------------------- request helpers */

T_TEST(sampling_copies_in_order_and_stops_at_the_first_error)
{
    static const mg_adapter_sampling s = {
        .max_tokens = "maxT",
        .numbers = {{"temperature", "temp", 0, 2}, {"top_p", "topP", 0, 1}},
        .stop = "stops",
    };
    char err[160] = "";
    cJSON *json = parse("{\"max_tokens\":9,\"top_p\":0.5,\"temperature\":1,\"stop\":\"END\"}");
    cJSON *dst = cJSON_CreateObject();
    T_EQ_INT(mg_adapter_put_sampling(json, dst, &s, err, sizeof(err)), MG_OK);
    char *got = print(dst);
    T_EQ_STR(got, "{\"maxT\":9,\"temp\":1,\"topP\":0.5,\"stops\":[\"END\"]}");
    free(got);
    cJSON_Delete(dst);
    cJSON_Delete(json);

    json = parse("{\"temperature\":3,\"stop\":5}");
    dst = cJSON_CreateObject();
    T_EQ_INT(mg_adapter_put_sampling(json, dst, &s, err, sizeof(err)), MG_ERR);
    T_EQ_STR(err, "temperature must be a number between 0 and 2 for this model");
    cJSON_Delete(dst);
    cJSON_Delete(json);

    /* Nothing set: the object stays empty and put_nonempty drops it. */
    json = parse("{}");
    dst = cJSON_CreateObject();
    cJSON *body = cJSON_CreateObject();
    T_EQ_INT(mg_adapter_put_nonempty(mg_adapter_put_sampling(json, dst, &s, err, sizeof(err)), body, "cfg", dst), MG_OK);
    T_CHECK(cJSON_GetArraySize(body) == 0);
    /* A failure passes through and frees the object. */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "x", 1);
    T_EQ_INT(mg_adapter_put_nonempty(MG_ERR, body, "cfg", o), MG_ERR);
    T_CHECK(cJSON_GetArraySize(body) == 0);
    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "x", 1);
    T_EQ_INT(mg_adapter_put_nonempty(MG_OK, body, "cfg", o), MG_OK);
    T_CHECK(cJSON_GetObjectItem(body, "cfg") == o);
    cJSON_Delete(body);
    cJSON_Delete(json);
}

T_TEST(embeddings_and_tools_are_checked)
{
    char err[160] = "";
    cJSON *j = parse("{\"model\":\"m\",\"input\":[\"a\",1]}");
    T_EQ_INT(mg_adapter_check_embeddings(j, "p", err, sizeof(err)), MG_ERR);
    T_EQ_STR(err, "p embeddings take input as a string or an array of strings (no token arrays)");
    cJSON_Delete(j);
    j = parse("{\"model\":\"m\",\"input\":\"a\",\"encoding_format\":\"base64\"}");
    T_EQ_INT(mg_adapter_check_embeddings(j, "p", err, sizeof(err)), MG_ERR);
    T_EQ_STR(err, "p embeddings support encoding_format float only");
    cJSON_Delete(j);
    j = parse("{\"model\":\"m\",\"input\":[\"a\"],\"dimensions\":3,\"user\":\"u\"}");
    T_EQ_INT(mg_adapter_check_embeddings(j, "p", err, sizeof(err)), MG_OK);
    cJSON_Delete(j);

    const char *name, *desc;
    const cJSON *params;
    j = parse("{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}");
    T_EQ_INT(mg_adapter_function_tool(j, "p", &name, &desc, &params, err, sizeof(err)), MG_OK);
    T_EQ_STR(name, "f");
    T_CHECK(desc == NULL && cJSON_IsObject(params));
    cJSON_Delete(j);
    j = parse("{\"type\":\"code_interpreter\"}");
    T_EQ_INT(mg_adapter_function_tool(j, "p", &name, &desc, &params, err, sizeof(err)), MG_ERR);
    T_EQ_STR(err, "only function tools with a name are supported by p models");
    cJSON_Delete(j);
    cJSON *schema = mg_adapter_tool_schema(NULL);
    char *s = print(schema);
    T_EQ_STR(s, "{\"type\":\"object\",\"properties\":{}}");
    free(s);
    cJSON_Delete(schema);
}

T_TEST(credential_headers_refuse_oversized_values)
{
    struct curl_slist *h = NULL;
    char err[160] = "";
    T_EQ_INT(mg_adapter_add_credential(&h, "x-key: %s", "abc", err, sizeof(err)), MG_OK);
    T_EQ_STR(h->data, "x-key: abc");
    char *big = malloc(5000);
    memset(big, 'k', 4999);
    big[4999] = '\0';
    T_EQ_INT(mg_adapter_add_credential(&h, "x-key: %s", big, err, sizeof(err)), MG_ERR);
    T_EQ_STR(err, "provider credential too long");
    T_CHECK(h->next == NULL);
    free(big);
    curl_slist_free_all(h);
}

/* ---------------------------------------------------------------- replies and streams */

static void req_init(mg_req *req, bool wants_usage)
{
    memset(req, 0, sizeof(*req));
    req->pool = mg_pool_new(4096);
    req->model_name = "client-model";
    snprintf(req->request_id, sizeof(req->request_id), "r1");
    req->usage.prompt_tokens = req->usage.completion_tokens = -1;
    req->client_wants_usage = wants_usage;
}

T_TEST(message_collects_text_and_calls)
{
    mg_req req;
    req_init(&req, false);
    mg_adapter_message m = {0};
    T_EQ_INT(mg_adapter_message_init(&m), MG_OK);
    T_EQ_INT(mg_adapter_message_text(&m, "he"), MG_OK);
    T_EQ_INT(mg_adapter_message_text(&m, "llo"), MG_OK);
    cJSON *args = parse("{\"q\":1}");
    T_EQ_INT(mg_adapter_message_call(&m, -1, "id1", NULL, args), MG_OK);
    T_EQ_INT(mg_adapter_message_call(&m, -1, NULL, "g", NULL), MG_OK);
    cJSON_Delete(args);
    mg_buf out = {0};
    T_EQ_INT(mg_adapter_message_reply(&req, &m, MG_FINISH_TOOLS, &out), MG_OK);
    mg_adapter_message_free(&m);
    cJSON *o = cJSON_ParseWithLength(out.p, out.len);
    const cJSON *msg = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "message");
    T_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(msg, "content")), "hello");
    char *calls = print(cJSON_GetObjectItem(msg, "tool_calls"));
    /* NULL id/name become "", absent arguments "{}". */
    T_EQ_STR(calls, "[{\"id\":\"id1\",\"type\":\"function\",\"function\":{\"name\":\"\",\"arguments\":\"{\\\"q\\\":1}\"}},"
                    "{\"id\":\"\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]");
    T_EQ_INT((int)req.usage.output_chars, 5);
    free(calls);
    cJSON_Delete(o);
    mg_buf_free(&out);

    /* No text part at all: content is null, not "". */
    mg_buf_reset(&out);
    mg_adapter_message e = {0};
    T_EQ_INT(mg_adapter_message_init(&e), MG_OK);
    T_EQ_INT(mg_adapter_message_reply(&req, &e, NULL, &out), MG_OK);
    mg_adapter_message_free(&e);
    T_CHECK(strstr(out.p, "\"content\":null") != NULL);
    mg_buf_free(&out);
    mg_pool_free(req.pool);
}

T_TEST(stream_helpers)
{
    mg_req req;
    req_init(&req, false);
    mg_buf out = {0};
    /* The role chunk comes once per request. */
    T_EQ_INT(mg_adapter_chunk_role_once(&req, &out), MG_OK);
    T_CHECK(strstr(out.p, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}") != NULL);
    size_t len = out.len;
    T_EQ_INT(mg_adapter_chunk_role_once(&req, &out), MG_OK);
    T_EQ_INT((int)out.len, (int)len);

    /* Block numbers map to tool call numbers 0.. in order of appearance. */
    cJSON *b3 = cJSON_CreateNumber(3), *b7 = cJSON_CreateNumber(7), *b9 = cJSON_CreateNumber(9);
    int64_t idx;
    T_EQ_INT(mg_adapter_stream_tool_index(&req, b3, true, &idx), MG_OK);
    T_EQ_INT((int)idx, 0);
    T_EQ_INT(mg_adapter_stream_tool_index(&req, b7, true, &idx), MG_OK);
    T_EQ_INT((int)idx, 1);
    T_EQ_INT(mg_adapter_stream_tool_index(&req, b3, false, &idx), MG_OK);
    T_EQ_INT((int)idx, 0);
    T_EQ_INT(mg_adapter_stream_tool_index(&req, b9, false, &idx), MG_OK);
    T_EQ_INT((int)idx, -1);
    cJSON_Delete(b3);
    cJSON_Delete(b7);
    cJSON_Delete(b9);

    /* One call or an array of calls: both become delta.tool_calls = [...]. */
    mg_buf_reset(&out);
    T_EQ_INT(mg_adapter_chunk_tool_calls(&req, mg_adapter_tool_call(1, NULL, NULL, "{\"a\""), &out), MG_OK);
    T_CHECK(strstr(out.p, "\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]}") !=
            NULL);
    mg_buf_reset(&out);
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, mg_adapter_tool_call(0, "x", "f", ""));
    T_EQ_INT(mg_adapter_chunk_tool_calls(&req, arr, &out), MG_OK);
    T_CHECK(strstr(out.p, "\"tool_calls\":[{\"index\":0,\"id\":\"x\"") != NULL);
    T_EQ_INT(mg_adapter_chunk_tool_calls(&req, NULL, &out), MG_ENOMEM);

    /* Provider error types are cut at 60 bytes; none at all is "unknown". */
    mg_buf_reset(&out);
    T_EQ_INT(mg_adapter_stream_error_type(&req, NULL, 0, &out), MG_DONE);
    T_CHECK(strstr(out.p, "reported an error: unknown\"") != NULL);
    T_EQ_STR(req.error_code, "upstream_error");
    mg_buf_reset(&out);
    char longtype[100];
    memset(longtype, 'e', sizeof(longtype));
    T_EQ_INT(mg_adapter_stream_error_type(&req, longtype, sizeof(longtype), &out), MG_DONE);
    T_CHECK(strstr(out.p, "error: eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\"") != NULL);
    mg_buf_free(&out);
    mg_pool_free(req.pool);
}

T_MAIN("translate", T_CASE(walk_merges_turns_and_hoists_system),
       T_CASE(walk_without_system_returns_null_and_skips_empty_assistant_text), T_CASE(walk_tool_results_by_name),
       T_CASE(walk_refuses_with_client_safe_messages), T_CASE(sampling_copies_in_order_and_stops_at_the_first_error),
       T_CASE(embeddings_and_tools_are_checked), T_CASE(credential_headers_refuse_oversized_values),
       T_CASE(message_collects_text_and_calls), T_CASE(stream_helpers))
