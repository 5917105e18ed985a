/* Unit tests: gateway/surface_anthropic.c (Anthropic Messages API <-> the
 * canonical chat form). Golden files live in tests/golden/anthropic_surface/;
 * JSON is compared structurally, streams event by event.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "surface.h"
#include "t.h"

#ifndef GOLDEN
#define GOLDEN "tests/golden/anthropic_surface/"
#endif

static void free_json(void *p) { cJSON_Delete(p); }

/* A request as the router leaves it: body parsed, tree owned by the pool. */
static void req_init(mg_req *req, const char *body)
{
    memset(req, 0, sizeof(*req));
    req->pool = mg_pool_new(4096);
    req->api = MG_API_MESSAGES;
    req->json = cJSON_Parse(body);
    if (req->json)
        mg_pool_cleanup_add(req->pool, free_json, req->json);
    req->model_name = "claude-test";
    req->usage.prompt_tokens = req->usage.completion_tokens = -1;
    req->surface = &mg_surface_anthropic;
}

static char *slurp(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof(path), GOLDEN "%s", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "  cannot open %s (run from the repository root)\n", path);
        return NULL;
    }
    char *p = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 8192;
            char *q = realloc(p, cap);
            if (q == NULL)
                break;
            p = q;
        }
        size_t r = fread(p + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    if (p)
        p[n] = '\0';
    if (len)
        *len = n;
    return p;
}

static cJSON *golden_json(const char *name)
{
    char *s = slurp(name, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

static bool same_json(const cJSON *got, const cJSON *want)
{
    if (got && want && cJSON_Compare(got, want, true))
        return true;
    char *g = got ? cJSON_Print(got) : NULL, *w = want ? cJSON_Print(want) : NULL;
    fprintf(stderr, "  JSON differs\n  got:  %s\n  want: %s\n", g ? g : "(null)", w ? w : "(null)");
    free(g);
    free(w);
    return false;
}

/* ------------------------------------------------------------- requests */

static void check_request_golden(const char *stem, bool stream)
{
    char in[96], want[96], err[200] = "";
    snprintf(in, sizeof(in), "%s.anthropic.json", stem);
    snprintf(want, sizeof(want), "%s.canonical.json", stem);
    char *body = slurp(in, NULL);
    T_CHECK(body != NULL);
    if (body == NULL)
        return;
    mg_req req;
    req_init(&req, body);
    free(body);
    cJSON *root = req.json;
    T_EQ_INT(mg_surface_anthropic.request(&req, err, sizeof(err)), MG_OK);
    T_EQ_STR(err, "");
    cJSON *expected = golden_json(want);
    T_CHECK(same_json(req.json, expected));
    cJSON_Delete(expected);
    T_CHECK(req.json == root); /* rewritten in place: one owner for the tree */
    T_EQ_INT(req.stream, stream);
    T_CHECK(req.client_wants_usage);
    T_EQ_STR(req.model_name, "claude-test");
    mg_pool_free(req.pool);
}

T_TEST(request_text_golden) { check_request_golden("req_text", false); }
T_TEST(request_blocks_tools_stream_golden) { check_request_golden("req_blocks", true); }

static cJSON *translate_ok(mg_req *req, const char *body)
{
    char err[200] = "";
    req_init(req, body);
    mg_rc rc = mg_surface_anthropic.request(req, err, sizeof(err));
    T_EQ_INT(rc, MG_OK);
    if (rc != MG_OK)
        fprintf(stderr, "  error: %s\n", err);
    return req->json;
}

T_TEST(request_tool_choice_variants)
{
    static const struct { const char *in, *want; } cases[] = {
        {"{\"type\":\"auto\"}", "\"auto\""},
        {"{\"type\":\"any\"}", "\"required\""},
        {"{\"type\":\"none\"}", "\"none\""},
        {"{\"type\":\"tool\",\"name\":\"f\"}", "{\"type\":\"function\",\"function\":{\"name\":\"f\"}}"},
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                 "\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}],\"tool_choice\":%s}",
                 cases[i].in);
        mg_req req;
        cJSON *j = translate_ok(&req, body);
        cJSON *want = cJSON_Parse(cases[i].want);
        T_CHECK(same_json(cJSON_GetObjectItem(j, "tool_choice"), want));
        T_CHECK(cJSON_GetObjectItem(j, "parallel_tool_calls") == NULL);
        cJSON_Delete(want);
        mg_pool_free(req.pool);
    }
}

T_TEST(request_stream_false_and_null_metadata)
{
    mg_req req;
    cJSON *j = translate_ok(&req, "{\"model\":\"m\",\"max_tokens\":5,\"stream\":false,\"metadata\":{\"user_id\":null},"
                                  "\"system\":[],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    T_CHECK(!req.stream);
    T_CHECK(req.client_wants_usage);
    T_CHECK(cJSON_GetObjectItem(j, "stream") == NULL);
    T_CHECK(cJSON_GetObjectItem(j, "stream_options") == NULL);
    T_CHECK(cJSON_GetObjectItem(j, "user") == NULL);
    /* an empty system block list is still the (empty) system prompt */
    cJSON *sys = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0);
    T_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(sys, "role")), "system");
    T_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(sys, "content")), "");
    mg_pool_free(req.pool);
}

T_TEST(request_untranslatable_is_refused_with_a_reason)
{
#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
#define BASE "\"model\":\"m\",\"max_tokens\":10,"
    static const struct { const char *body, *msg; } cases[] = {
        {"{\"model\":\"m\"," MSGS "}", "max_tokens is required"},
        {"{" BASE "\"top_k\":5," MSGS "}", "top_k is not supported"},
        {"{" BASE "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1000}," MSGS "}", "\"thinking\""},
        {"{" BASE "\"service_tier\":\"auto\"," MSGS "}", "\"service_tier\""},
        {"{" BASE "\"stream_options\":{}," MSGS "}", "\"stream_options\""},
        {"{" BASE "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{}}]}]}",
         "messages[0].content[0]: content block type \"document\""},
        {"{" BASE "\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":"
         "[{\"type\":\"thinking\",\"thinking\":\"hm\",\"signature\":\"s\"}]}]}", "\"thinking\""},
        {"{" BASE "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"redacted_thinking\",\"data\":\"x\"}]}]}",
         "\"redacted_thinking\""},
        {"{" BASE "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"image\",\"source\":"
         "{\"type\":\"url\",\"url\":\"http://x\"}}]}]}", "\"image\" is not supported in assistant messages"},
        {"{" BASE "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"b\","
         "\"input\":{}}]}]}", "\"tool_use\" is not supported in user messages"},
        {"{" BASE "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"a\"}]}]}",
         "\"tool_result\" is not supported in assistant messages"},
        {"{" BASE "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"file\","
         "\"file_id\":\"f\"}}]}]}", "image source type \"file\""},
        {"{" BASE "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\","
         "\"data\":\"AA==\"}}]}]}", "media_type"},
        {"{" BASE "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\",\"citations\":[]}]}]}",
         "field \"citations\""},
        {"{" BASE "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"a\","
         "\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"http://x\"}}]}]}]}",
         "content[0].content[0]: content block type \"image\""},
        {"{" BASE "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"content\":\"x\"}]}]}",
         "tool_use_id"},
        {"{" BASE "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"b\","
         "\"input\":\"{}\"}]}]}", "object input"},
        {"{" BASE "\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", "messages[0].role"},
        {"{" BASE "\"messages\":[{\"role\":\"user\",\"content\":[]}]}", "non-empty array"},
        {"{" BASE "\"messages\":[{\"role\":\"user\",\"content\":[\"hi\"]}]}", "must be a content block object"},
        {"{" BASE "\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":\"bob\"}]}", "field \"name\""},
        {"{" BASE "\"messages\":[]}", "messages is required"},
        {"{\"model\":\"m\",\"max_tokens\":10}", "messages is required"},
        {"{\"max_tokens\":10," MSGS "}", "model is required"},
        {"{\"model\":\"m\",\"max_tokens\":0," MSGS "}", "max_tokens must be a positive integer"},
        {"{\"model\":\"m\",\"max_tokens\":1.5," MSGS "}", "max_tokens must be a positive integer"},
        {"{\"model\":\"m\",\"max_tokens\":\"10\"," MSGS "}", "max_tokens must be a positive integer"},
        {"{" BASE "\"temperature\":\"hot\"," MSGS "}", "temperature must be a number"},
        {"{" BASE "\"stream\":\"yes\"," MSGS "}", "stream must be a boolean"},
        {"{" BASE "\"stop_sequences\":[\"a\",1]," MSGS "}", "stop_sequences"},
        {"{" BASE "\"metadata\":{\"user_id\":\"u\",\"trace\":\"t\"}," MSGS "}", "metadata: field \"trace\""},
        {"{" BASE "\"system\":[{\"type\":\"image\"}]," MSGS "}", "system[0]: content block type \"image\""},
        {"{" BASE "\"system\":42," MSGS "}", "system must be a string"},
        {"{" BASE "\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}]," MSGS "}",
         "tools[0]: tool type \"web_search_20250305\""},
        {"{" BASE "\"tools\":[{\"name\":\"f\"}]," MSGS "}", "input_schema"},
        {"{" BASE "\"tools\":[{\"name\":\"f\",\"input_schema\":{},\"strict\":true}]," MSGS "}", "field \"strict\""},
        {"{" BASE "\"tool_choice\":{\"type\":\"bogus\"}," MSGS "}", "tool_choice type \"bogus\""},
        {"{" BASE "\"tool_choice\":{\"type\":\"tool\"}," MSGS "}", "needs a string name"},
    };
#undef MSGS
#undef BASE
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        mg_req req;
        req_init(&req, cases[i].body);
        T_CHECK(req.json != NULL);
        char *before = cJSON_PrintUnformatted(req.json);
        char err[200] = "";
        mg_rc rc = mg_surface_anthropic.request(&req, err, sizeof(err));
        T_EQ_INT(rc, MG_ERR);
        if (strstr(err, cases[i].msg) == NULL) {
            fprintf(stderr, "  case %zu: message \"%s\" lacks \"%s\"\n", i, err, cases[i].msg);
            t_checks_failed++;
        }
        /* a refused request is left exactly as the client sent it */
        char *after = cJSON_PrintUnformatted(req.json);
        T_EQ_STR(after, before);
        free(before);
        free(after);
        mg_pool_free(req.pool);
    }
}

T_TEST(request_cache_control_is_accepted_everywhere)
{
    mg_req req;
    cJSON *j = translate_ok(&req,
        "{\"model\":\"m\",\"max_tokens\":5,"
        "\"tools\":[{\"name\":\"f\",\"input_schema\":{},\"cache_control\":{\"type\":\"ephemeral\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\","
        "\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":\"b\"}]}]}");
    char *s = cJSON_PrintUnformatted(j);
    T_CHECK(s && strstr(s, "cache_control") == NULL);
    /* two text blocks stay two parts */
    cJSON *content = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0), "content");
    T_EQ_INT(cJSON_GetArraySize(content), 2);
    free(s);
    mg_pool_free(req.pool);
}

/* ---------------------------------------------------------------- replies */

static void check_reply_golden(const char *stem)
{
    char in[96], want[96];
    snprintf(in, sizeof(in), "%s.canonical.json", stem);
    snprintf(want, sizeof(want), "%s.anthropic.json", stem);
    size_t len = 0;
    char *body = slurp(in, &len);
    T_CHECK(body != NULL);
    if (body == NULL)
        return;
    mg_req req;
    req_init(&req, "{}");
    /* what the adapter counted; used only where the body has no usage */
    req.usage.prompt_tokens = 20;
    req.usage.completion_tokens = 7;
    mg_buf out = {0};
    T_EQ_INT(mg_surface_anthropic.reply(&req, body, len, &out), MG_OK);
    cJSON *got = cJSON_ParseWithLength(out.p, out.len);
    cJSON *expected = golden_json(want);
    T_CHECK(same_json(got, expected));
    cJSON_Delete(got);
    cJSON_Delete(expected);
    mg_buf_free(&out);
    free(body);
    mg_pool_free(req.pool);
}

T_TEST(reply_text_golden) { check_reply_golden("reply_text"); }
T_TEST(reply_tool_calls_golden) { check_reply_golden("reply_tools"); }
T_TEST(reply_length_golden) { check_reply_golden("reply_length"); }

T_TEST(reply_unusable_is_refused)
{
    static const char *const bodies[] = {
        "not json",
        "{\"id\":\"x\"}",
        "{\"choices\":[]}",
        ("{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
         "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]},\"finish_reason\":\"length\"}]}"),
        "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}",
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(bodies); i++) {
        mg_req req;
        req_init(&req, "{}");
        mg_buf out = {0};
        T_EQ_INT(mg_surface_anthropic.reply(&req, bodies[i], strlen(bodies[i]), &out), MG_ERR);
        T_EQ_INT(out.len, 0);
        mg_buf_free(&out);
        mg_pool_free(req.pool);
    }
}

T_TEST(reply_content_filter_and_missing_usage)
{
    mg_req req;
    req_init(&req, "{}");
    const char body[] = "{\"choices\":[{\"message\":{\"content\":\"\"},\"finish_reason\":\"content_filter\"}]}";
    mg_buf out = {0};
    T_EQ_INT(mg_surface_anthropic.reply(&req, body, sizeof(body) - 1, &out), MG_OK);
    cJSON *got = cJSON_ParseWithLength(out.p, out.len);
    T_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(got, "stop_reason")), "end_turn");
    T_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(got, "content")), 0);
    T_EQ_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(got, "usage"), "output_tokens")->valueint, 0);
    T_CHECK(strncmp(cJSON_GetStringValue(cJSON_GetObjectItem(got, "id")), "msg_", 4) == 0);
    cJSON_Delete(got);
    mg_buf_free(&out);
    mg_pool_free(req.pool);
}

/* ---------------------------------------------------------------- streams */

typedef struct { int n; char name[64][32]; cJSON *data[64]; } events;

/* Strict reader for the surface's output: every event is exactly
 * "event: <name>\ndata: <json>\n\n". */
static bool parse_events(const char *p, size_t n, events *ev)
{
    memset(ev, 0, sizeof(*ev));
    size_t i = 0;
    while (i < n) {
        if (ev->n == 64 || n - i < 7 || memcmp(p + i, "event: ", 7) != 0)
            return false;
        const char *nl = memchr(p + i + 7, '\n', n - i - 7);
        if (nl == NULL || (size_t)(nl - (p + i + 7)) >= sizeof(ev->name[0]))
            return false;
        memcpy(ev->name[ev->n], p + i + 7, (size_t)(nl - (p + i + 7)));
        i = (size_t)(nl - p) + 1;
        if (n - i < 6 || memcmp(p + i, "data: ", 6) != 0)
            return false;
        const char *end = memchr(p + i + 6, '\n', n - i - 6);
        if (end == NULL || (size_t)(end - p) + 1 >= n || end[1] != '\n')
            return false;
        ev->data[ev->n] = cJSON_ParseWithLength(p + i + 6, (size_t)(end - (p + i + 6)));
        if (ev->data[ev->n] == NULL)
            return false;
        ev->n++;
        i = (size_t)(end - p) + 2;
    }
    return true;
}

static void events_free(events *ev)
{
    for (int i = 0; i < ev->n; i++)
        cJSON_Delete(ev->data[i]);
    ev->n = 0;
}

/* Each event's "type" must repeat its SSE event name. */
static bool same_events(const events *got, const events *want)
{
    bool ok = got->n == want->n;
    for (int i = 0; ok && i < got->n; i++) {
        ok = strcmp(got->name[i], want->name[i]) == 0 &&
             strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(got->data[i], "type")), got->name[i]) == 0 &&
             same_json(got->data[i], want->data[i]);
        if (!ok)
            fprintf(stderr, "  event %d: got %s, want %s\n", i, got->name[i], want->name[i]);
    }
    if (got->n != want->n)
        fprintf(stderr, "  %d events, want %d\n", got->n, want->n);
    return ok;
}

/* Offsets of the event boundaries in canonical SSE bytes. */
static int boundaries(const char *p, size_t n, size_t *at, int max)
{
    int k = 0;
    for (size_t i = 0; i + 1 < n && k < max; i++)
        if (p[i] == '\n' && p[i + 1] == '\n')
            at[k++] = i + 2;
    return k;
}

/* Feeds the canonical stream in pieces ending at the given boundaries. */
static mg_rc feed(mg_req *req, const char *p, size_t n, const size_t *cuts, int ncuts, mg_buf *out)
{
    size_t from = 0;
    for (int i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        if (to > from) {
            mg_rc rc = mg_surface_anthropic.stream(req, p + from, to - from, out);
            if (rc != MG_OK)
                return rc;
        }
        from = to;
    }
    return MG_OK;
}

static void check_stream_golden(const char *stem)
{
    char in[96], want[96];
    snprintf(in, sizeof(in), "%s.canonical.sse", stem);
    snprintf(want, sizeof(want), "%s.anthropic.sse", stem);
    size_t len = 0, wlen = 0;
    char *sse = slurp(in, &len), *wsse = slurp(want, &wlen);
    T_CHECK(sse != NULL && wsse != NULL);
    if (sse == NULL || wsse == NULL) {
        free(sse);
        free(wsse);
        return;
    }
    events expected;
    T_CHECK(parse_events(wsse, wlen, &expected));

    size_t at[64];
    int nb = boundaries(sse, len, at, 64);
    T_CHECK(nb >= 4);
    size_t some[2] = {at[0], at[nb / 2]};
    struct { const char *how; const size_t *cuts; int n; } splits[] = {
        {"whole", NULL, 0},
        {"one event per call", at, nb},
        {"three calls", some, 2},
    };
    mg_buf first = {0};
    for (size_t s = 0; s < MG_ARRAY_LEN(splits); s++) {
        mg_req req;
        req_init(&req, "{}");
        mg_buf out = {0};
        T_EQ_INT(feed(&req, sse, len, splits[s].cuts, splits[s].n, &out), MG_OK);
        events got;
        bool parsed = parse_events(out.p, out.len, &got);
        T_CHECK(parsed);
        if (!parsed || !same_events(&got, &expected)) {
            fprintf(stderr, "  %s (%s) got:\n%.*s\n", stem, splits[s].how, (int)out.len, out.p ? out.p : "");
            t_checks_failed++;
        }
        if (s == 0) {
            first = out;
        } else {
            /* the split changes nothing, byte for byte */
            T_CHECK(out.len == first.len && memcmp(out.p, first.p, out.len) == 0);
            mg_buf_free(&out);
        }
        events_free(&got);
        mg_pool_free(req.pool);
    }
    mg_buf_free(&first);
    events_free(&expected);
    free(sse);
    free(wsse);
}

T_TEST(stream_text_golden) { check_stream_golden("stream_text"); }
T_TEST(stream_tool_calls_golden) { check_stream_golden("stream_tools"); }

static int count_named(const events *ev, const char *name)
{
    int c = 0;
    for (int i = 0; i < ev->n; i++)
        c += strcmp(ev->name[i], name) == 0;
    return c;
}

T_TEST(stream_without_usage_chunk_ends_at_done)
{
    mg_req req;
    req_init(&req, "{}");
    const char a[] = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n"
                     "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n";
    mg_buf out = {0};
    T_EQ_INT(mg_surface_anthropic.stream(&req, a, sizeof(a) - 1, &out), MG_OK);
    events ev;
    T_CHECK(parse_events(out.p, out.len, &ev));
    /* the finish reason alone is not enough: usage may still come */
    T_EQ_INT(count_named(&ev, "message_delta"), 0);
    T_EQ_INT(count_named(&ev, "content_block_stop"), 1);
    events_free(&ev);
    mg_buf_reset(&out);
    req.usage.completion_tokens = 6; /* the adapter's estimate */
    T_EQ_INT(mg_surface_anthropic.stream(&req, "data: [DONE]\n\n", 14, &out), MG_OK);
    T_CHECK(parse_events(out.p, out.len, &ev));
    T_EQ_INT(ev.n, 2);
    T_EQ_STR(ev.name[0], "message_delta");
    T_EQ_STR(ev.name[1], "message_stop");
    cJSON *d = ev.data[0];
    T_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "delta"), "stop_reason")), "max_tokens");
    T_EQ_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "usage"), "output_tokens")->valueint, 6);
    T_CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "usage"), "input_tokens") == NULL);
    events_free(&ev);
    /* anything after [DONE] is ignored */
    mg_buf_reset(&out);
    T_EQ_INT(mg_surface_anthropic.stream(&req, "data: [DONE]\n\n", 14, &out), MG_OK);
    T_EQ_INT(out.len, 0);
    mg_buf_free(&out);
    mg_pool_free(req.pool);
}

T_TEST(stream_usage_in_finish_chunk_gives_one_message_delta)
{
    mg_req req;
    req_init(&req, "{}");
    const char s[] = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}],"
                     "\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}\r\n\r\n"
                     ": keep-alive comment\n\n"
                     "data: [DONE]\n\n";
    mg_buf out = {0};
    T_EQ_INT(mg_surface_anthropic.stream(&req, s, sizeof(s) - 1, &out), MG_OK);
    events ev;
    T_CHECK(parse_events(out.p, out.len, &ev));
    static const char *const want[] = {"message_start", "content_block_start", "content_block_delta",
                                       "content_block_stop", "message_delta", "message_stop"};
    T_EQ_INT(ev.n, 6);
    for (int i = 0; i < ev.n && i < 6; i++)
        T_EQ_STR(ev.name[i], want[i]);
    events_free(&ev);
    mg_buf_free(&out);
    mg_pool_free(req.pool);
}

T_TEST(stream_done_only_is_a_complete_empty_message)
{
    mg_req req;
    req_init(&req, "{}");
    mg_buf out = {0};
    T_EQ_INT(mg_surface_anthropic.stream(&req, "data: [DONE]\n\n", 14, &out), MG_OK);
    events ev;
    T_CHECK(parse_events(out.p, out.len, &ev));
    T_EQ_INT(ev.n, 3);
    T_EQ_STR(ev.name[0], "message_start");
    T_EQ_STR(ev.name[1], "message_delta");
    T_EQ_STR(ev.name[2], "message_stop");
    events_free(&ev);
    mg_buf_free(&out);
    mg_pool_free(req.pool);
}

T_TEST(stream_reopening_a_finished_tool_call_is_an_error)
{
    mg_req req;
    req_init(&req, "{}");
    const char s[] =
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"b\",\"function\":{\"name\":\"g\",\"arguments\":\"{\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"}\"}}]}}]}\n\n";
    mg_buf out = {0};
    T_EQ_INT(mg_surface_anthropic.stream(&req, s, sizeof(s) - 1, &out), MG_ERR);
    /* what came before the bad event is kept, complete; nothing of it */
    events ev;
    T_CHECK(parse_events(out.p, out.len, &ev));
    T_EQ_INT(ev.n, 6);
    T_EQ_STR(ev.name[ev.n > 0 ? ev.n - 1 : 0], "content_block_delta");
    events_free(&ev);
    mg_buf_free(&out);
    mg_pool_free(req.pool);
}

T_TEST(stream_bad_chunk_is_an_error)
{
    mg_req req;
    req_init(&req, "{}");
    mg_buf out = {0};
    T_EQ_INT(mg_surface_anthropic.stream(&req, "data: {not json\n\n", 17, &out), MG_ERR);
    mg_buf_free(&out);
    mg_pool_free(req.pool);
}

T_TEST(stream_upstream_error_chunk_and_stream_error)
{
    mg_req req;
    req_init(&req, "{}");
    mg_buf out = {0};
    const char s[] = "data: {\"error\":{\"message\":\"model crashed\",\"type\":\"server_error\"}}\n\n";
    T_EQ_INT(mg_surface_anthropic.stream(&req, s, sizeof(s) - 1, &out), MG_OK);
    events ev;
    T_CHECK(parse_events(out.p, out.len, &ev));
    T_EQ_INT(ev.n, 1);
    T_EQ_STR(ev.name[0], "error");
    cJSON *want = cJSON_Parse("{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"model crashed\"}}");
    T_CHECK(ev.n == 1 && same_json(ev.data[0], want));
    cJSON_Delete(want);
    events_free(&ev);

    mg_buf_reset(&out);
    T_EQ_INT(mg_surface_anthropic.stream_error(&req, "upstream_timeout", "upstream \"timed\" out", &out), MG_OK);
    T_EQ_INT(mg_buf_append(&out, "", 1), MG_OK);
    T_EQ_STR(out.p,
             "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\","
             "\"message\":\"upstream \\\"timed\\\" out\"}}\n\n");
    mg_buf_free(&out);
    mg_pool_free(req.pool);
}

/* ----------------------------------------------------------------- errors */

T_TEST(error_shape_and_type_mapping)
{
    static const struct { int status; const char *type, *want; } cases[] = {
        {400, "invalid_request_error", "invalid_request_error"},
        {401, "authentication_error", "authentication_error"},
        {403, "permission_error", "permission_error"},
        {404, "invalid_request_error", "not_found_error"},
        {413, "invalid_request_error", "request_too_large"},
        {415, "invalid_request_error", "invalid_request_error"},
        {429, "rate_limit_error", "rate_limit_error"},
        {500, "server_error", "api_error"},
        {502, "server_error", "api_error"},
        {503, "server_error", "overloaded_error"},
        {504, "server_error", "api_error"},
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        mg_buf out = {0};
        T_EQ_INT(mg_surface_anthropic.error(&out, cases[i].status, cases[i].type, "some_code", "why \"it\" failed"),
                 MG_OK);
        cJSON *got = cJSON_ParseWithLength(out.p, out.len);
        char want[200];
        snprintf(want, sizeof(want),
                 "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"why \\\"it\\\" failed\"}}", cases[i].want);
        cJSON *w = cJSON_Parse(want);
        if (!same_json(got, w)) {
            fprintf(stderr, "  status %d\n", cases[i].status);
            t_checks_failed++;
        }
        cJSON_Delete(got);
        cJSON_Delete(w);
        mg_buf_free(&out);
    }
}

T_MAIN("surface_anthropic",
       T_CASE(request_text_golden),
       T_CASE(request_blocks_tools_stream_golden),
       T_CASE(request_tool_choice_variants),
       T_CASE(request_stream_false_and_null_metadata),
       T_CASE(request_untranslatable_is_refused_with_a_reason),
       T_CASE(request_cache_control_is_accepted_everywhere),
       T_CASE(reply_text_golden),
       T_CASE(reply_tool_calls_golden),
       T_CASE(reply_length_golden),
       T_CASE(reply_unusable_is_refused),
       T_CASE(reply_content_filter_and_missing_usage),
       T_CASE(stream_text_golden),
       T_CASE(stream_tool_calls_golden),
       T_CASE(stream_without_usage_chunk_ends_at_done),
       T_CASE(stream_usage_in_finish_chunk_gives_one_message_delta),
       T_CASE(stream_done_only_is_a_complete_empty_message),
       T_CASE(stream_reopening_a_finished_tool_call_is_an_error),
       T_CASE(stream_bad_chunk_is_an_error),
       T_CASE(stream_upstream_error_chunk_and_stream_error),
       T_CASE(error_shape_and_type_mapping))
