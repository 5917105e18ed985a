/* Unit tests: the translating adapters (anthropic, azure, gemini, ollama,
 * bedrock) against golden files in tests/golden/<type>/ (run from the
 * repository root, or set MG_GOLDEN_DIR).
 *
 * For a build case <name>:   <name>.request.json (canonical OpenAI request)
 *   -> <name>.upstream.json (provider body, compared as parsed JSON) and
 *   <name>.http (first line "METHOD URL", then header lines that must be
 *   sent; a line "!Header-Prefix" means no header may start with it).
 * For a reply case:  <name>.reply.json (provider reply) -> <name>.openai.json.
 * For a stream case: <name>.stream (raw upstream bytes, split with the
 *   adapter's framing) -> <name>.sse (client SSE events, each data: JSON
 *   compared as parsed JSON).
 * JSON comparison is structural; "created" only has to be a number on both
 * sides (it is the wall clock).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "adapters/adapter.h"
#include "adapters/bedrock.h"
#include "adapters/translate.h"
#include "t.h"

#include <math.h>

static mg_cfg_provider prov_anthropic = {.name = "a", .type = "anthropic", .base_url = "https://anthropic.test",
                                         .api_key = "sk-ant-secret"};
static mg_cfg_provider prov_azure = {.name = "az", .type = "azure", .base_url = "https://my.openai.azure.com",
                                     .api_key = "azure-secret", .api_version = "2024-10-21"};
static mg_cfg_provider prov_gemini = {.name = "g", .type = "gemini",
                                      .base_url = "https://generativelanguage.googleapis.com",
                                      .api_key = "gem-secret"};
static mg_cfg_provider prov_ollama = {.name = "o", .type = "ollama", .base_url = "http://127.0.0.1:11434"};
static mg_cfg_provider prov_bedrock = {.name = "b", .type = "bedrock", .base_url = "https://bedrock.test",
                                       .region = "us-east-1", .api_key = "bedrock-api-key"};

static const char *golden_dir(void)
{
    const char *d = getenv("MG_GOLDEN_DIR");
    return d ? d : "tests/golden";
}

static const mg_cfg_provider *provider_for(const char *type)
{
    if (strcmp(type, "anthropic") == 0)
        return &prov_anthropic;
    if (strcmp(type, "azure") == 0)
        return &prov_azure;
    if (strcmp(type, "gemini") == 0)
        return &prov_gemini;
    if (strcmp(type, "ollama") == 0)
        return &prov_ollama;
    return &prov_bedrock;
}

static mg_cfg_deployment dep;

/* Reads a golden file into a malloc'd NUL-terminated buffer; NULL if absent. */
static char *slurp(const char *type, const char *name, const char *ext, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/%s.%s", golden_dir(), type, name, ext);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    mg_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        mg_buf_append(&b, chunk, n);
    fclose(f);
    mg_buf_reserve(&b, 1);
    b.p[b.len] = '\0';
    if (len)
        *len = b.len;
    return b.p;
}

static void req_init(mg_req *req, const char *type, const char *model, const char *body, mg_api api)
{
    memset(req, 0, sizeof(*req));
    req->pool = mg_pool_new(4096);   /* holds the adapter's stream state */
    req->api = api;
    req->json = cJSON_Parse(body);
    req->body = mg_str_c(body);
    req->stream = cJSON_IsTrue(cJSON_GetObjectItem(req->json, "stream"));
    req->client_wants_usage = cJSON_IsTrue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(req->json, "stream_options"), "include_usage"));
    const cJSON *m = cJSON_GetObjectItem(req->json, "model");
    /* As the router does: our own copy (build rewrites "model" in the tree). */
    static char model_copy[128];
    snprintf(model_copy, sizeof(model_copy), "%s", cJSON_IsString(m) ? m->valuestring : "client-model");
    req->model_name = model_copy;
    req->provider = provider_for(type);
    dep = (mg_cfg_deployment){.provider = req->provider->name, .model = (char *)model, .weight = 1};
    req->deployment = &dep;
    snprintf(req->request_id, sizeof(req->request_id), "req123");
    req->usage.prompt_tokens = req->usage.completion_tokens = -1;
}

/* Structural equality; reports the first difference with its path. */
static bool json_equal(const cJSON *a, const cJSON *b, char *path, size_t pathsz)
{
    if (a == NULL || b == NULL)
        return a == b;
    if (a->string && strcmp(a->string, "created") == 0 && cJSON_IsNumber(a) && cJSON_IsNumber(b))
        return true;
    if ((a->type & 0xff) != (b->type & 0xff))
        return false;
    if (cJSON_IsNumber(a))
        return fabs(a->valuedouble - b->valuedouble) < 1e-9;
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsArray(a)) {
        if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
            return false;
        for (int i = 0; i < cJSON_GetArraySize(a); i++) {
            size_t l = strlen(path);
            snprintf(path + l, pathsz - l, "[%d]", i);
            if (!json_equal(cJSON_GetArrayItem(a, i), cJSON_GetArrayItem(b, i), path, pathsz))
                return false;
            path[l] = '\0';
        }
        return true;
    }
    if (cJSON_IsObject(a)) {
        if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b)) {
            size_t l = strlen(path);
            snprintf(path + l, pathsz - l, " (member count)");
            return false;
        }
        const cJSON *x;
        cJSON_ArrayForEach(x, a) {
            size_t l = strlen(path);
            snprintf(path + l, pathsz - l, ".%s", x->string);
            if (!json_equal(x, cJSON_GetObjectItemCaseSensitive(b, x->string), path, pathsz))
                return false;
            path[l] = '\0';
        }
        return true;
    }
    return true;   /* null, true, false: the type said it all */
}

static bool check_json(const char *what, const char *got, size_t gotlen, const char *want)
{
    cJSON *g = cJSON_ParseWithLength(got, gotlen);
    cJSON *w = cJSON_Parse(want);
    char path[512] = "$";
    bool ok = g && w && json_equal(g, w, path, sizeof(path));
    if (!ok) {
        fprintf(stderr, "  %s: JSON differs at %s\n    got:  %.*s\n    want: %s\n", what, path,
                (int)gotlen, got, want);
    }
    cJSON_Delete(g);
    cJSON_Delete(w);
    return ok;
}

static bool has_header(struct curl_slist *h, const char *want)
{
    for (; h; h = h->next)
        if (strcmp(h->data, want) == 0)
            return true;
    return false;
}

static bool has_header_prefix(struct curl_slist *h, const char *prefix)
{
    for (; h; h = h->next)
        if (strncasecmp(h->data, prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

static void free_up(mg_upstream_request *up)
{
    curl_slist_free_all(up->headers);
    mg_buf_free(&up->url);
    mg_buf_free(&up->body);
}

/* ---------------------------------------------------------------- cases */

typedef struct build_case {
    const char *type, *name, *model;
    mg_api api;
} build_case;

static const build_case build_cases[] = {
    {"anthropic", "chat_basic", "claude-sonnet-4", MG_API_CHAT},
    {"anthropic", "chat_tools", "claude-sonnet-4", MG_API_CHAT},
    {"anthropic", "chat_images_stream", "claude-sonnet-4", MG_API_CHAT},
    {"azure", "chat_stream", "gpt4o-eu", MG_API_CHAT},
    {"azure", "embeddings", "embed-deploy", MG_API_EMBEDDINGS},
    {"ollama", "chat_options", "llama3.1:8b", MG_API_CHAT},
    {"ollama", "chat_stream_json", "llama3.1:8b", MG_API_CHAT},
    {"ollama", "embed", "nomic-embed-text", MG_API_EMBEDDINGS},
    {"gemini", "chat_tools", "gemini-2.0-flash", MG_API_CHAT},
    {"gemini", "chat_stream", "models/gemini-2.0-flash", MG_API_CHAT},
    {"gemini", "embed", "gemini-2.0-flash", MG_API_EMBEDDINGS},
    {"bedrock", "chat_tools", "anthropic.claude-3-haiku-20240307-v1:0", MG_API_CHAT},
    {"bedrock", "chat_stream", "anthropic.claude-3-haiku-20240307-v1:0", MG_API_CHAT},
};

static void run_build_case(const build_case *c)
{
    char *reqj = slurp(c->type, c->name, "request.json", NULL);
    char *want = slurp(c->type, c->name, "upstream.json", NULL);
    char *http = slurp(c->type, c->name, "http", NULL);
    T_CHECK(reqj && want && http);
    if (!reqj || !want || !http) {
        fprintf(stderr, "  missing golden files for %s/%s\n", c->type, c->name);
        goto out;
    }
    const mg_adapter_ops *ops = mg_adapter_find(c->type);
    T_CHECK(ops != NULL);
    if (ops == NULL)
        goto out;
    mg_req req;
    req_init(&req, c->type, c->model, reqj, c->api);
    mg_upstream_request up = {0};
    char err[200] = "";
    mg_rc rc = ops->build(&req, &up, err, sizeof(err));
    if (rc != MG_OK)
        fprintf(stderr, "  %s/%s: build failed: %s\n", c->type, c->name, err);
    T_EQ_INT(rc, MG_OK);
    if (rc == MG_OK) {
        if (!check_json(c->name, up.body.p, up.body.len, want))
            T_CHECK(!"upstream body matches golden");
        T_EQ_INT(up.stream, req.stream);
        bool first = true;
        for (char *line = http, *nl; line && *line; line = nl ? nl + 1 : NULL, first = false) {
            nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            if (first) {
                char want_line[2048];
                snprintf(want_line, sizeof(want_line), "%s %s", up.method ? up.method : "?", up.url.p ? up.url.p : "");
                T_EQ_STR(want_line, line);
            } else if (line[0] == '!') {
                if (has_header_prefix(up.headers, line + 1)) {
                    fprintf(stderr, "  %s/%s: unexpected header %s\n", c->type, c->name, line + 1);
                    T_CHECK(!"header absent");
                }
            } else if (!has_header(up.headers, line)) {
                fprintf(stderr, "  %s/%s: missing header \"%s\"\n", c->type, c->name, line);
                T_CHECK(!"header present");
            }
        }
    }
    free_up(&up);
    cJSON_Delete(req.json);
    mg_pool_free(req.pool);
out:
    free(reqj);
    free(want);
    free(http);
}

T_TEST(build_golden)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(build_cases); i++)
        run_build_case(&build_cases[i]);
}

typedef struct reply_case {
    const char *type, *name;
    mg_api api;
    int64_t prompt, completion;
} reply_case;

static const reply_case reply_cases[] = {
    {"anthropic", "reply_text", MG_API_CHAT, 25, 9},
    {"anthropic", "reply_tool_use", MG_API_CHAT, 412, 57},
    {"ollama", "reply_text", MG_API_CHAT, 26, 7},
    {"ollama", "reply_tools", MG_API_CHAT, 100, 20},
    {"ollama", "reply_embed", MG_API_EMBEDDINGS, 4, 0},
    {"gemini", "reply_text", MG_API_CHAT, 8, 14},
    {"gemini", "reply_tools", MG_API_CHAT, 30, 12},
    {"gemini", "reply_safety", MG_API_CHAT, 5, -1},
    {"gemini", "reply_embed", MG_API_EMBEDDINGS, -1, -1},
    {"bedrock", "reply_tools", MG_API_CHAT, 120, 33},
    {"bedrock", "reply_text", MG_API_CHAT, 4, 1},
};

T_TEST(reply_golden)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(reply_cases); i++) {
        const reply_case *c = &reply_cases[i];
        size_t len;
        char *in = slurp(c->type, c->name, "reply.json", &len);
        char *want = slurp(c->type, c->name, "openai.json", NULL);
        T_CHECK(in && want);
        if (in && want) {
            mg_req req;
            req_init(&req, c->type, "m", "{\"model\":\"client-model\"}", c->api);
            mg_buf out = {0};
            T_EQ_INT(mg_adapter_find(c->type)->reply(&req, in, len, &out), MG_OK);
            if (!check_json(c->name, out.p, out.len, want))
                T_CHECK(!"reply matches golden");
            T_EQ_INT(req.usage.prompt_tokens, c->prompt);
            T_EQ_INT(req.usage.completion_tokens, c->completion);
            mg_buf_free(&out);
            cJSON_Delete(req.json);
            mg_pool_free(req.pool);
        }
        free(in);
        free(want);
    }
}

typedef struct stream_case {
    const char *type, *name;
    bool wants_usage;
    int64_t prompt, completion;
} stream_case;

static const stream_case stream_cases[] = {
    {"anthropic", "stream_text", true, 25, 15},
    {"anthropic", "stream_tools", false, 380, 61},
    {"anthropic", "stream_error", false, 10, -1},
    {"azure", "stream_usage", false, 9, 2},
    {"ollama", "stream_text", true, 12, 2},
    {"ollama", "stream_tools", false, 50, 30},
    {"ollama", "stream_error", false, -1, -1},
    {"gemini", "stream_text", true, 6, 5},
    {"gemini", "stream_tools", false, 20, 3},
    {"bedrock", "stream_text", true, 11, 3},
    {"bedrock", "stream_tools", false, 200, 40},
    {"bedrock", "stream_exception", false, -1, -1},
};

/* Feeds raw stream bytes through the adapter the way the proxy does:
 * split with next_event (or SSE / line framing), one call per event. */
static mg_rc run_stream(const mg_adapter_ops *ops, mg_req *req, const char *raw, size_t n, mg_buf *client)
{
    size_t (*next)(const char *, size_t, mg_str *) =
        ops->next_event ? ops->next_event
                        : strstr(ops->stream_content_type, "ndjson") ? mg_adapter_next_line : mg_adapter_next_sse_event;
    size_t off = 0;
    mg_buf out = {0};
    mg_rc last = MG_OK;
    while (off < n && last == MG_OK) {
        mg_str ev;
        size_t used = next(raw + off, n - off, &ev);
        if (used == (size_t)-1) {
            last = MG_ERR;
            break;
        }
        if (used == 0)
            break;
        off += used;
        mg_buf_reset(&out);
        last = ops->stream_event(req, ev, &out);
        if (last >= 0)
            mg_buf_append(client, out.p, out.len);
    }
    mg_buf_free(&out);
    return last;
}

/* Compares two SSE texts event by event. */
static bool check_sse(const char *what, const mg_buf *got, const char *want)
{
    mg_str g = mg_str_make(got->p ? got->p : "", got->len), w = mg_str_c(want);
    int i = 0;
    for (;; i++) {
        mg_str ge = MG_STR_NULL, we = MG_STR_NULL;
        size_t gu = mg_adapter_next_sse_event(g.p, g.n, &ge);
        size_t wu = mg_adapter_next_sse_event(w.p, w.n, &we);
        if (gu == 0 && wu == 0)
            return true;
        if (gu == 0 || wu == 0) {
            fprintf(stderr, "  %s: event %d: %s has fewer events\n    got:  %.*s\n", what, i,
                    gu == 0 ? "output" : "golden", (int)g.n, g.p);
            return false;
        }
        bool ok = ge.n > 6 && we.n > 6 && memcmp(ge.p, "data: ", 6) == 0 && memcmp(we.p, "data: ", 6) == 0;
        if (ok && we.p[6] != '{') {
            ok = mg_str_eq(ge, we);
        } else if (ok) {
            char *ws = strndup(we.p + 6, we.n - 6);
            char label[128];
            snprintf(label, sizeof(label), "%s event %d", what, i);
            ok = check_json(label, ge.p + 6, ge.n - 6, ws);
            free(ws);
        }
        if (!ok) {
            fprintf(stderr, "  %s: event %d differs: %.*s\n", what, i, (int)ge.n, ge.p);
            return false;
        }
        g.p += gu, g.n -= gu;
        w.p += wu, w.n -= wu;
    }
}

T_TEST(stream_golden)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(stream_cases); i++) {
        const stream_case *c = &stream_cases[i];
        size_t len;
        char *raw = slurp(c->type, c->name, "stream", &len);
        char *want = slurp(c->type, c->name, "sse", NULL);
        T_CHECK(raw && want);
        if (raw && want) {
            mg_req req;
            req_init(&req, c->type, "m",
                     c->wants_usage ? "{\"model\":\"client-model\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
                                    : "{\"model\":\"client-model\",\"stream\":true}",
                     MG_API_CHAT);
            mg_buf client = {0};
            mg_rc rc = run_stream(mg_adapter_find(c->type), &req, raw, len, &client);
            T_EQ_INT(rc, MG_DONE);
            if (!check_sse(c->name, &client, want))
                T_CHECK(!"stream matches golden");
            T_EQ_INT(req.usage.prompt_tokens, c->prompt);
            T_EQ_INT(req.usage.completion_tokens, c->completion);
            mg_buf_free(&client);
            cJSON_Delete(req.json);
            mg_pool_free(req.pool);
        }
        free(raw);
        free(want);
    }
}

typedef struct error_case {
    const char *type;
    mg_api api;
    const char *body;
    const char *message_part;   /* must occur in err */
} error_case;

static const error_case error_cases[] = {
    {"anthropic", MG_API_CHAT, "{\"model\":\"x\",\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "n other than 1"},
    {"anthropic", MG_API_CHAT, "{\"model\":\"x\",\"logprobs\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "\"logprobs\""},
    {"anthropic", MG_API_CHAT, "{\"model\":\"x\",\"seed\":3,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "\"seed\""},
    {"anthropic", MG_API_CHAT, "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{}}]}]}", "input_audio"},
    {"anthropic", MG_API_CHAT, "{\"model\":\"x\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "response_format"},
    {"anthropic", MG_API_CHAT, "{\"model\":\"x\",\"temperature\":1.5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "temperature"},
    {"anthropic", MG_API_CHAT, "{\"model\":\"x\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "max_tokens"},
    {"anthropic", MG_API_CHAT, "{\"model\":\"x\",\"messages\":[{\"role\":\"function\",\"content\":\"hi\"}]}", "role"},
    {"anthropic", MG_API_CHAT, "{\"model\":\"x\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]}]}", "arguments"},
    {"anthropic", MG_API_CHAT, "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"ftp://x/y.png\"}}]}]}", "image urls"},
    {"anthropic", MG_API_EMBEDDINGS, "{\"model\":\"x\",\"input\":\"hi\"}", "embeddings"},
    {"ollama", MG_API_CHAT, "{\"model\":\"x\",\"logprobs\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "\"logprobs\""},
    {"ollama", MG_API_CHAT, "{\"model\":\"x\",\"n\":3,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "n other than 1"},
    {"ollama", MG_API_CHAT, "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}]}]}", "data: URLs"},
    {"ollama", MG_API_CHAT, "{\"model\":\"x\",\"tool_choice\":\"required\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "tool_choice"},
    {"ollama", MG_API_CHAT, "{\"model\":\"x\",\"response_format\":{\"type\":\"json_schema\"},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "response_format"},
    {"ollama", MG_API_EMBEDDINGS, "{\"model\":\"x\",\"input\":[[1,2,3]]}", "token arrays"},
    {"gemini", MG_API_CHAT, "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"tool\",\"tool_call_id\":\"nope\",\"content\":\"x\"}]}", "tool call"},
    {"gemini", MG_API_CHAT, "{\"model\":\"x\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "json_schema"},
    {"gemini", MG_API_CHAT, "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}]}]}", "data: URLs"},
    {"gemini", MG_API_CHAT, "{\"model\":\"x\",\"top_logprobs\":2,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "\"top_logprobs\""},
    {"bedrock", MG_API_CHAT, "{\"model\":\"x\",\"seed\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "\"seed\""},
    {"bedrock", MG_API_CHAT, "{\"model\":\"x\",\"response_format\":{\"type\":\"json_object\"},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "\"response_format\""},
    {"bedrock", MG_API_CHAT, "{\"model\":\"x\",\"tool_choice\":\"none\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "not none"},
    {"bedrock", MG_API_CHAT, "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}]}]}", "data: URLs"},
    {"bedrock", MG_API_EMBEDDINGS, "{\"model\":\"x\",\"input\":\"hi\"}", "embeddings"},
    {"gemini", MG_API_CHAT, "{\"model\":\"x\",\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "n other than 1"},
    {"ollama", MG_API_EMBEDDINGS, "{\"model\":\"x\",\"input\":\"a\",\"encoding_format\":\"base64\"}", "encoding_format"},
};

T_TEST(untranslatable_requests_are_refused)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(error_cases); i++) {
        const error_case *c = &error_cases[i];
        mg_req req;
        req_init(&req, c->type, "m", c->body, c->api);
        T_CHECK(req.json != NULL);
        mg_upstream_request up = {0};
        char err[200] = "";
        mg_rc rc = mg_adapter_find(c->type)->build(&req, &up, err, sizeof(err));
        if (rc != MG_ERR || strstr(err, c->message_part) == NULL) {
            fprintf(stderr, "  case %zu (%s): rc %d, err \"%s\", want \"%s\"\n", i, c->type, rc, err, c->message_part);
            T_CHECK(!"refused with message");
        }
        /* Never the credential in a client-facing message. */
        T_CHECK(strstr(err, req.provider->api_key ? req.provider->api_key : "\x01") == NULL);
        free_up(&up);
        cJSON_Delete(req.json);
        mg_pool_free(req.pool);
    }
}

T_TEST(registry_knows_every_type)
{
    static const char *const types[] = {"openai", "azure", "anthropic", "ollama", "gemini", "bedrock"};
    for (size_t i = 0; i < MG_ARRAY_LEN(types); i++) {
        const mg_adapter_ops *ops = mg_adapter_find(types[i]);
        T_CHECK(ops != NULL && strcmp(ops->type, types[i]) == 0);
    }
    T_CHECK(mg_adapter_find("nope") == NULL);
}

/* Expected values derived by hand with the openssl CLI:
 * tests/golden/bedrock/sigv4_vector.sh (see the script for each step). */
T_TEST(sigv4_known_vector)
{
    static const char payload[] = "{\"messages\":[]}";
    mg_sigv4 s = {.method = "POST", .host = "bedrock-runtime.us-east-1.amazonaws.com",
                  .path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", .region = "us-east-1",
                  .service = "bedrock", .access_key_id = "AKIDEXAMPLE",
                  .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", .amz_date = "20240115T120000Z",
                  .payload = payload, .payload_len = sizeof(payload) - 1};
    char auth[512], hash[65];
    T_EQ_INT(mg_bedrock_sigv4(&s, auth, sizeof(auth), hash), MG_OK);
    T_EQ_STR(hash, "5e4ce7b36ba37b78a5d5f9fd08e6b7b54ba6879d651aa46ec9e1d6fa24ebe30a");
    T_EQ_STR(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-east-1/bedrock/aws4_request, "
                   "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                   "Signature=1742403a77dba0363387e18451043b8fd8df149ae20027147853b59107189201");
    s.session_token = "FQoGZXIvYXdzEXAMPLETOKEN";
    T_EQ_INT(mg_bedrock_sigv4(&s, auth, sizeof(auth), hash), MG_OK);
    T_EQ_STR(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-east-1/bedrock/aws4_request, "
                   "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "
                   "Signature=44049d7e9447076f5562724a496003ddc60233f3021ec48809731d4c036f9c46");
    /* A different secret must give a different signature. */
    s.secret_access_key = "other";
    T_EQ_INT(mg_bedrock_sigv4(&s, auth, sizeof(auth), hash), MG_OK);
    T_CHECK(strstr(auth, "44049d7e9447") == NULL);
}

T_TEST(bedrock_build_signs_with_aws_credentials)
{
    static mg_cfg_provider p = {.name = "b", .type = "bedrock", .base_url = "http://127.0.0.1:9999/bedrock",
                                .region = "eu-west-1", .aws_access_key_id = "AKIDEXAMPLE",
                                .aws_secret_access_key = "topsecret", .aws_session_token = "tok"};
    mg_req req;
    req_init(&req, "bedrock", "amazon.nova-lite-v1:0",
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", MG_API_CHAT);
    req.provider = &p;
    mg_upstream_request up = {0};
    char err[200] = "";
    T_EQ_INT(mg_adapter_find("bedrock")->build(&req, &up, err, sizeof(err)), MG_OK);
    T_EQ_STR(up.url.p, "http://127.0.0.1:9999/bedrock/model/amazon.nova-lite-v1%3A0/converse");
    T_CHECK(has_header_prefix(up.headers, "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
    T_CHECK(has_header_prefix(up.headers, "X-Amz-Date: 20"));
    T_CHECK(has_header_prefix(up.headers, "X-Amz-Content-Sha256: "));
    T_CHECK(has_header(up.headers, "X-Amz-Security-Token: tok"));
    for (struct curl_slist *h = up.headers; h; h = h->next)
        T_CHECK(strstr(h->data, "topsecret") == NULL);
    bool scoped = false;
    for (struct curl_slist *h = up.headers; h; h = h->next)
        scoped = scoped || strstr(h->data, "/eu-west-1/bedrock/aws4_request") != NULL;
    T_CHECK(scoped);
    free_up(&up);
    cJSON_Delete(req.json);
    mg_pool_free(req.pool);

    /* No credentials at all: refused without a request. */
    static mg_cfg_provider none = {.name = "b", .type = "bedrock", .base_url = "http://h", .region = "us-east-1"};
    req_init(&req, "bedrock", "m", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
             MG_API_CHAT);
    req.provider = &none;
    up = (mg_upstream_request){0};
    T_EQ_INT(mg_adapter_find("bedrock")->build(&req, &up, err, sizeof(err)), MG_ERR);
    T_CHECK(strstr(err, "credentials") != NULL);
    free_up(&up);
    cJSON_Delete(req.json);
    mg_pool_free(req.pool);
}

T_TEST(eventstream_framing)
{
    T_EQ_INT(mg_bedrock_crc32(0, "123456789", 9), 0xCBF43926u);   /* the CRC-32 check value */
    size_t len;
    char *raw = slurp("bedrock", "stream_text", "stream", &len);
    T_CHECK(raw != NULL && len > 16);
    if (raw == NULL)
        return;
    mg_str ev;
    size_t first = mg_bedrock_next_event(raw, len, &ev);
    T_CHECK(first > 16 && first < len && ev.n == first && ev.p == raw);
    /* Incomplete: prelude only, or one byte short. */
    T_EQ_INT(mg_bedrock_next_event(raw, 11, &ev), 0);
    T_EQ_INT(mg_bedrock_next_event(raw, first - 1, &ev), 0);
    /* A flipped payload byte breaks the message CRC. */
    raw[first - 6] ^= 1;
    T_EQ_INT(mg_bedrock_next_event(raw, len, &ev), (size_t)-1);
    raw[first - 6] ^= 1;
    /* A flipped length breaks the prelude CRC. */
    raw[3] ^= 1;
    T_EQ_INT(mg_bedrock_next_event(raw, len, &ev), (size_t)-1);
    raw[3] ^= 1;
    T_EQ_INT(mg_bedrock_next_event(raw, len, &ev), first);
    free(raw);
}

T_MAIN("adapters", T_CASE(sigv4_known_vector), T_CASE(bedrock_build_signs_with_aws_credentials),
       T_CASE(eventstream_framing), T_CASE(build_golden), T_CASE(reply_golden), T_CASE(stream_golden),
       T_CASE(untranslatable_requests_are_refused), T_CASE(registry_knows_every_type))
